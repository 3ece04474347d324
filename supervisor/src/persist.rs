//! The state file: self-describing, versioned, checksummed, written atomically, two copies.
//!
//! One file is one JSON object, the envelope
//! `{"format":"petrel-state","version":1,"min_reader_version":1,"generation":N,
//! "body_sha256":"<hex>","body":{...}}` where the checksum covers the exact bytes of
//! `body` as they stand in the file. Fields are only ever added (with `#[serde(default)]`)
//! and unknown ones are ignored, so the previous firmware reads what a newer one wrote;
//! a writer that truly breaks compatibility raises `min_reader_version`.
//!
//! `state/` holds `state.json` and `state.json.bak`. [`Store::save`] writes the next
//! generation to the primary, then to the backup, each atomically (temp file in the same
//! directory, write, fsync, rename, fsync the directory). [`Store::open`] takes the
//! valid copy with the highest generation and reports any torn or corrupt copy as a
//! warning, so a crash or power cut at any instant leaves one good copy. Decoding never
//! panics on any input and refuses files over [`MAX_STATE_BYTES`].

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use std::collections::BTreeMap;

use crate::quota::Policy;
use crate::state::{ExitInfo, Spec};

/// The `format` of a state file.
pub const FORMAT: &str = "petrel-state";
/// The version this code writes.
pub const VERSION: u32 = 1;
/// The highest `min_reader_version` this code can read.
pub const READER_VERSION: u32 = 1;
/// The primary copy.
pub const PRIMARY: &str = "state.json";
/// The backup copy.
pub const BACKUP: &str = "state.json.bak";
/// The largest state file we read (checked before reading it all).
pub const MAX_STATE_BYTES: u64 = 64 << 20;

/// One persisted unikernel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// What the operator asked for.
    pub spec: Spec,
    /// Restarts by policy so far.
    #[serde(default)]
    pub restart_count: u32,
    /// The last exit.
    #[serde(default)]
    pub last_exit: Option<ExitInfo>,
}

/// A block volume: a file under the data partition's `block/`, owned by an identity.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockVolume {
    /// Full name in the owner's namespace: `ops/alice:disk`.
    pub name: String,
    /// Its size in bytes, a multiple of `sector_size`.
    pub size_bytes: u64,
    /// Its sector size in bytes (a power of two, at least 512).
    #[serde(default = "default_sector_size")]
    pub sector_size: u32,
}

fn default_sector_size() -> u32 {
    512
}

/// The body of a state file.
///
/// Fields after `unikernels` were added in the same firmware generation; each has a
/// serde default, so a body without them (or with fields of a newer firmware) reads.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Body {
    /// Every unikernel that exists (destroyed ones are never written).
    #[serde(default)]
    pub unikernels: Vec<Record>,
    /// Policies per identity path (DESIGN §5), set with `policy add`.
    #[serde(default)]
    pub policies: BTreeMap<String, Policy>,
    /// Every block volume that exists.
    #[serde(default)]
    pub blocks: Vec<BlockVolume>,
    /// Autostart unikernels imported from the device config: full name → digest of
    /// the config entry and its image. An entry is imported again only when it
    /// changes, so a destroyed autostart unikernel stays destroyed.
    #[serde(default)]
    pub autostart: BTreeMap<String, String>,
    /// When each unikernel last exited (milliseconds since the Unix epoch), saved with
    /// the next change.
    #[serde(default)]
    pub exit_times: BTreeMap<String, u64>,
}

/// A decoded state file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct State {
    /// Increases with every save; the newest valid copy wins.
    pub generation: u64,
    /// The content.
    pub body: Body,
}

#[derive(Serialize)]
struct EnvelopeOut<'a> {
    format: &'a str,
    version: u32,
    min_reader_version: u32,
    generation: u64,
    body_sha256: String,
    body: &'a RawValue,
}

#[derive(Deserialize)]
struct EnvelopeIn<'a> {
    format: String,
    #[serde(default)]
    min_reader_version: u32,
    generation: u64,
    body_sha256: String,
    #[serde(borrow)]
    body: &'a RawValue,
}

/// Why one copy of the state file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Not JSON, or not an envelope.
    #[error("not a state file envelope")]
    Envelope(#[source] serde_json::Error),
    /// Another format.
    #[error("format is {0:?}, not {FORMAT:?}")]
    Format(String),
    /// Written by a firmware that needs a newer reader.
    #[error("needs reader version {0}, this firmware reads {READER_VERSION}")]
    TooNew(u32),
    /// The body does not match its checksum (torn or corrupted).
    #[error("body checksum mismatch")]
    Checksum,
    /// The body does not parse.
    #[error("body does not parse")]
    Body(#[source] serde_json::Error),
}

/// Why the state could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Reading a copy failed (other than not existing).
    #[error("reading {0}")]
    Io(PathBuf, #[source] io::Error),
    /// A copy exists but no copy is valid.
    #[error("no valid state copy in {dir}: {primary}; {backup}")]
    NoValidCopy {
        /// The state directory.
        dir: PathBuf,
        /// What is wrong with the primary.
        primary: String,
        /// What is wrong with the backup.
        backup: String,
    },
}

/// Why saving failed.
#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    /// Encoding failed.
    #[error("encoding the state")]
    Encode(#[source] serde_json::Error),
    /// Writing a copy failed.
    #[error("writing {0}")]
    Io(PathBuf, #[source] io::Error),
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Encodes one copy of the state file.
pub fn encode(generation: u64, body: &Body) -> Result<Vec<u8>, serde_json::Error> {
    let body_json = serde_json::to_string(body)?;
    let raw = RawValue::from_string(body_json)?;
    encode_raw(generation, &raw)
}

/// Wraps an already encoded body in the envelope, with its checksum.
fn encode_raw(generation: u64, raw: &RawValue) -> Result<Vec<u8>, serde_json::Error> {
    let env = EnvelopeOut {
        format: FORMAT,
        version: VERSION,
        min_reader_version: 1,
        generation,
        body_sha256: sha256_hex(raw.get().as_bytes()),
        body: raw,
    };
    let mut out = serde_json::to_vec(&env)?;
    out.push(b'\n');
    Ok(out)
}

/// Decodes and verifies one copy of the state file. Never panics.
pub fn decode(bytes: &[u8]) -> Result<State, DecodeError> {
    let env: EnvelopeIn<'_> = serde_json::from_slice(bytes).map_err(DecodeError::Envelope)?;
    if env.format != FORMAT {
        return Err(DecodeError::Format(env.format));
    }
    if env.min_reader_version > READER_VERSION {
        return Err(DecodeError::TooNew(env.min_reader_version));
    }
    if sha256_hex(env.body.get().as_bytes()) != env.body_sha256.to_ascii_lowercase() {
        return Err(DecodeError::Checksum);
    }
    let body: Body = serde_json::from_str(env.body.get()).map_err(DecodeError::Body)?;
    Ok(State {
        generation: env.generation,
        body,
    })
}

/// The fuzzing entry point (the `state_decode` target in `fuzz/`), also used by
/// `tests/robust.rs` to replay the corpus on stable Rust.
///
/// It decodes `bytes` as a state file; every state that decodes must re-encode to a file
/// that decodes to the same state (and encodes to the same bytes again), the next
/// generation a save would write must decode as newer, and a torn copy (a prefix) must
/// decode to nothing or to the same state. Since random bytes rarely carry a matching
/// checksum, `bytes` is also tried as a body: wrapped in an envelope with the right
/// checksum, it must decode exactly when it parses as a [`Body`].
///
/// # Panics
///
/// When an invariant fails (that is its job).
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
pub fn fuzz_check(bytes: &[u8]) {
    fn check_decoded(file: &[u8], state: &State) {
        let again = encode(state.generation, &state.body).expect("a decoded body encodes");
        let decoded = decode(&again).unwrap_or_else(|e| panic!("re-encoded state: {e}"));
        assert_eq!(&decoded, state, "encode/decode round trip");
        assert_eq!(
            encode(decoded.generation, &decoded.body).expect("encodes"),
            again,
            "encoding is deterministic"
        );
        // The next save: a newer generation (saturating at the top), the same body.
        let next = state.generation.saturating_add(1);
        let saved = decode(&encode(next, &state.body).expect("encodes")).expect("decodes");
        assert!(saved.generation >= state.generation && saved.generation == next);
        assert_eq!(saved.body, state.body);
        // A torn write never decodes to something else.
        for cut in [file.len() / 2, file.len().saturating_sub(1)] {
            if cut < file.len() {
                if let Ok(torn) = decode(&file[..cut]) {
                    assert_eq!(&torn, state, "prefix of {cut} bytes decodes differently");
                }
            }
        }
    }

    if let Ok(state) = decode(bytes) {
        check_decoded(bytes, &state);
    }
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    let Ok(raw) = RawValue::from_string(text.to_owned()) else {
        return;
    };
    let generation = bytes
        .iter()
        .take(8)
        .fold(0u64, |g, b| (g << 8) | u64::from(*b));
    let file = encode_raw(generation, &raw).expect("a JSON value wraps");
    let as_body = serde_json::from_str::<Body>(raw.get());
    match (decode(&file), as_body) {
        (Ok(state), Ok(body)) => {
            assert_eq!(state.generation, generation);
            assert_eq!(state.body, body);
            check_decoded(&file, &state);
        }
        (Err(DecodeError::Body(_)), Err(_)) => {}
        (got, body) => panic!("wrapped body: decode {got:?}, body {body:?}"),
    }
}

/// The result of [`Store::open`].
#[derive(Debug, Default)]
pub struct Loaded {
    /// The newest valid state (empty on a fresh box).
    pub state: State,
    /// Copies that were ignored, and why (to log).
    pub warnings: Vec<String>,
}

/// The state directory.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    generation: u64,
}

fn read_capped(path: &Path) -> Result<Option<Vec<u8>>, io::Error> {
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut buf = Vec::new();
    f.take(MAX_STATE_BYTES.saturating_add(1))
        .read_to_end(&mut buf)?;
    Ok(Some(buf))
}

/// Decodes one copy read from disk, or explains why not (a missing copy is not valid).
fn check(bytes: Option<Vec<u8>>) -> Result<State, String> {
    match bytes {
        None => Err("missing".to_owned()),
        Some(b) if b.len() as u64 > MAX_STATE_BYTES => Err("too large".to_owned()),
        Some(b) => decode(&b).map_err(|e| {
            let mut msg = e.to_string();
            if let Some(src) = std::error::Error::source(&e) {
                msg = format!("{msg}: {src}");
            }
            msg
        }),
    }
}

impl Store {
    /// Loads the newest valid copy from `dir`. A fresh directory (no copy at all) gives
    /// an empty state; copies that exist but are all invalid give an error.
    pub fn open(dir: &Path) -> Result<(Store, Loaded), LoadError> {
        let read = |name: &str| {
            let p = dir.join(name);
            read_capped(&p).map_err(|e| LoadError::Io(p, e))
        };
        let (primary_bytes, backup_bytes) = (read(PRIMARY)?, read(BACKUP)?);
        let fresh = primary_bytes.is_none() && backup_bytes.is_none();
        let mut loaded = Loaded::default();
        if !fresh {
            let (p, b) = (check(primary_bytes), check(backup_bytes));
            let state = match (p, b) {
                (Ok(p), Ok(b)) => {
                    if b.generation > p.generation {
                        b
                    } else {
                        p
                    }
                }
                (Ok(p), Err(e)) => {
                    loaded.warnings.push(format!("{BACKUP} ignored: {e}"));
                    p
                }
                (Err(e), Ok(b)) => {
                    loaded.warnings.push(format!("{PRIMARY} ignored: {e}"));
                    b
                }
                (Err(primary), Err(backup)) => {
                    return Err(LoadError::NoValidCopy {
                        dir: dir.to_owned(),
                        primary,
                        backup,
                    });
                }
            };
            loaded.state = state;
        }
        let store = Store {
            dir: dir.to_owned(),
            generation: loaded.state.generation,
        };
        Ok((store, loaded))
    }

    /// The generation of the last save (or load).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Saves the next generation: primary, then backup, each atomically.
    pub fn save(&mut self, body: &Body) -> Result<(), SaveError> {
        let generation = self.generation.saturating_add(1);
        let bytes = encode(generation, body).map_err(SaveError::Encode)?;
        self.write_copy(PRIMARY, &bytes)?;
        self.generation = generation;
        self.write_copy(BACKUP, &bytes)
    }

    /// Writes one copy atomically: temp file, write, fsync, rename, fsync the directory.
    pub fn write_copy(&self, name: &str, bytes: &[u8]) -> Result<(), SaveError> {
        let path = self.dir.join(name);
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let io_err = |e| SaveError::Io(path.clone(), e);
        let mut f = File::create(&tmp).map_err(io_err)?;
        f.write_all(bytes).map_err(io_err)?;
        f.sync_all().map_err(io_err)?;
        drop(f);
        fs::rename(&tmp, &path).map_err(io_err)?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{ExitStatus, RestartPolicy};

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> Self {
            let p =
                std::env::temp_dir().join(format!("petreld-persist-{}-{tag}", std::process::id()));
            let _ = fs::remove_dir_all(&p);
            fs::create_dir_all(&p).expect("mkdir");
            TempDir(p)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn body(names: &[&str]) -> Body {
        Body {
            policies: BTreeMap::new(),
            blocks: Vec::new(),
            autostart: BTreeMap::new(),
            exit_times: BTreeMap::new(),
            unikernels: names
                .iter()
                .map(|n| Record {
                    spec: Spec {
                        name: (*n).to_owned(),
                        image_sha256: "ab".repeat(32),
                        args: vec!["--ipv4=10.0.0.2/24".into()],
                        memory_mib: 32,
                        cpus: vec![1],
                        net: vec![],
                        block: vec![],
                        restart: RestartPolicy::OnExit([1, 2].into_iter().collect()),
                        priority: 3,
                    },
                    restart_count: 4,
                    last_exit: Some(ExitInfo {
                        status: ExitStatus::Signal(9),
                        reason: "killed".into(),
                    }),
                })
                .collect(),
        }
    }

    #[test]
    fn encode_decode_round_trip() {
        let b = body(&["ops:a", "ops/alice:web"]);
        let bytes = encode(7, &b).expect("encodes");
        let s = decode(&bytes).expect("decodes");
        assert_eq!(
            s,
            State {
                generation: 7,
                body: b
            }
        );
        let text = String::from_utf8(bytes).expect("utf8");
        assert!(
            text.starts_with(r#"{"format":"petrel-state","version":1,"#),
            "{text}"
        );
    }

    #[test]
    fn unknown_fields_ignored_and_defaults_filled() {
        // As a newer firmware might write it: extra fields everywhere, optional ones missing.
        let body_json = r#"{"unikernels":[{"spec":{"name":"ops:a","image_sha256":"00","memory_mib":16,"gpu":true}, "flavour":"x"}],"quotas":{}}"#;
        let file = format!(
            r#"{{"format":"petrel-state","version":9,"min_reader_version":1,"generation":3,"body_sha256":"{}","body":{body_json},"signed_by":"x"}}"#,
            sha256_hex(body_json.as_bytes())
        );
        let s = decode(file.as_bytes()).expect("previous firmware reads it");
        assert_eq!(s.generation, 3);
        let r = &s.body.unikernels[0];
        assert_eq!(
            (
                r.spec.name.as_str(),
                r.restart_count,
                r.spec.restart.clone()
            ),
            ("ops:a", 0, RestartPolicy::Never)
        );
    }

    #[test]
    fn refuses_other_format_newer_reader_and_bad_checksum() {
        let good = String::from_utf8(encode(1, &body(&["ops:a"])).expect("encodes")).expect("utf8");
        let other = good.replace("petrel-state", "other");
        assert!(matches!(
            decode(other.as_bytes()),
            Err(DecodeError::Format(_))
        ));
        let newer = good.replace(r#""min_reader_version":1"#, r#""min_reader_version":2"#);
        assert!(matches!(
            decode(newer.as_bytes()),
            Err(DecodeError::TooNew(2))
        ));
        let flipped = good.replace("killed", "kilLed");
        assert!(matches!(
            decode(flipped.as_bytes()),
            Err(DecodeError::Checksum)
        ));
    }

    #[test]
    fn store_round_trip_and_generations() {
        let d = TempDir::new("roundtrip");
        let (mut st, loaded) = Store::open(&d.0).expect("fresh dir opens");
        assert_eq!(loaded.state, State::default());
        assert!(loaded.warnings.is_empty());
        st.save(&body(&["ops:a"])).expect("save 1");
        st.save(&body(&["ops:a", "ops:b"])).expect("save 2");
        let (st2, loaded) = Store::open(&d.0).expect("opens");
        assert_eq!(st2.generation(), 2);
        assert_eq!(loaded.state.body, body(&["ops:a", "ops:b"]));
        assert!(loaded.warnings.is_empty());
        // No temp file left behind.
        let names: Vec<_> = fs::read_dir(&d.0)
            .expect("ls")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn destroyed_never_comes_back() {
        let d = TempDir::new("destroyed");
        let (mut st, _) = Store::open(&d.0).expect("opens");
        st.save(&body(&["ops:a", "ops:b"])).expect("save");
        st.save(&body(&["ops:b"])).expect("save without a");
        let (_, loaded) = Store::open(&d.0).expect("opens");
        assert_eq!(loaded.state.body, body(&["ops:b"]));
    }

    #[test]
    fn corrupt_primary_uses_backup() {
        let d = TempDir::new("corrupt-primary");
        let (mut st, _) = Store::open(&d.0).expect("opens");
        st.save(&body(&["ops:a"])).expect("save");
        let p = d.0.join(PRIMARY);
        let mut bytes = fs::read(&p).expect("read");
        let len = bytes.len();
        bytes.truncate(len / 2);
        fs::write(&p, &bytes).expect("tear");
        let (st, loaded) = Store::open(&d.0).expect("backup saves the day");
        assert_eq!(loaded.state.body, body(&["ops:a"]));
        assert_eq!(st.generation(), 1);
        assert_eq!(loaded.warnings.len(), 1);
        assert!(
            loaded.warnings[0].starts_with(PRIMARY),
            "{:?}",
            loaded.warnings
        );
    }

    #[test]
    fn both_corrupt_is_a_clear_error() {
        let d = TempDir::new("both-corrupt");
        fs::write(d.0.join(PRIMARY), b"{\"format\":").expect("write");
        fs::write(d.0.join(BACKUP), b"garbage").expect("write");
        let err = Store::open(&d.0).expect_err("must refuse");
        let msg = err.to_string();
        assert!(matches!(err, LoadError::NoValidCopy { .. }));
        assert!(msg.contains("no valid state copy"), "{msg}");
    }

    #[test]
    fn only_backup_left_is_used_with_a_warning() {
        let d = TempDir::new("only-backup");
        let (mut st, _) = Store::open(&d.0).expect("opens");
        st.save(&body(&["ops:a"])).expect("save");
        fs::remove_file(d.0.join(PRIMARY)).expect("rm");
        let (_, loaded) = Store::open(&d.0).expect("opens");
        assert_eq!(loaded.state.body, body(&["ops:a"]));
        assert_eq!(loaded.warnings.len(), 1);
    }

    #[test]
    fn crash_between_the_two_writes() {
        let d = TempDir::new("crash-between");
        let (mut st, _) = Store::open(&d.0).expect("opens");
        st.save(&body(&["ops:a"])).expect("save 1");
        // Generation 2 reaches the primary only, then the power goes.
        let bytes = encode(2, &body(&["ops:a", "ops:new"])).expect("encodes");
        st.write_copy(PRIMARY, &bytes).expect("primary only");
        let (mut st, loaded) = Store::open(&d.0).expect("opens");
        assert_eq!(loaded.state.generation, 2);
        assert_eq!(loaded.state.body, body(&["ops:a", "ops:new"]));
        // The next save goes on from the newest generation.
        st.save(&body(&["ops:a"])).expect("save 3");
        assert_eq!(Store::open(&d.0).expect("opens").1.state.generation, 3);
        // And the newest wins even when it sits in the backup.
        let bytes = encode(9, &body(&["ops:z"])).expect("encodes");
        st.write_copy(BACKUP, &bytes).expect("backup only");
        assert_eq!(
            Store::open(&d.0).expect("opens").1.state.body,
            body(&["ops:z"])
        );
    }

    #[test]
    fn oversized_copy_is_ignored() {
        let d = TempDir::new("oversized");
        let (mut st, _) = Store::open(&d.0).expect("opens");
        st.save(&body(&["ops:a"])).expect("save");
        let f = File::create(d.0.join(PRIMARY)).expect("create");
        f.set_len(MAX_STATE_BYTES + 10).expect("sparse file");
        let (_, loaded) = Store::open(&d.0).expect("opens");
        assert_eq!(loaded.state.body, body(&["ops:a"]));
        assert!(loaded.warnings[0].contains("too large"));
    }

    /// Every truncation and a seeded set of byte corruptions: the decoder never panics,
    /// and a corrupted body is never accepted with different content.
    #[test]
    fn fuzzish_truncated_and_corrupted_input() {
        let b = body(&["ops:a", "ops:b"]);
        let good = encode(5, &b).expect("encodes");
        for len in 0..good.len() {
            let _ = decode(&good[..len]);
        }
        let mut seed: u64 = 0x0dd_ba11;
        println!("seed {seed:#x}");
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let mut bytes = good.clone();
            let i = usize::try_from(seed % bytes.len() as u64).unwrap_or(0);
            bytes[i] ^= u8::try_from((seed >> 32) & 0xff).unwrap_or(1).max(1);
            if let Ok(s) = decode(&bytes) {
                // Only a change outside the checksummed body can still decode (e.g. the
                // generation digits); the body is then exactly what was written.
                assert_eq!(s.body, b);
            }
        }
    }
}

#[cfg(test)]
mod body_tests {
    use super::*;

    #[test]
    fn policies_blocks_and_autostart_round_trip_and_default() {
        let mut body = Body::default();
        body.policies.insert(
            "ops".into(),
            Policy {
                max_unikernels: 2,
                ..Policy::default()
            },
        );
        body.blocks.push(BlockVolume {
            name: "ops:disk".into(),
            size_bytes: 4096,
            sector_size: 4096,
        });
        body.autostart.insert("ops:web".into(), "ab".into());
        let s = decode(&encode(1, &body).expect("encodes")).expect("decodes");
        assert_eq!(s.body, body);
        // A body of the first format (unikernels only) reads with empty extensions,
        // and a volume without a sector size gets 512.
        let old = r#"{"unikernels":[],"blocks":[{"name":"ops:d","size_bytes":512}]}"#;
        let b: Body = serde_json::from_str(old).expect("reads");
        assert!(b.policies.is_empty() && b.autostart.is_empty());
        assert_eq!(b.blocks[0].sector_size, 512);
    }
}
