//! The data partition: the content-addressed image store, block volume files, the
//! device keys and atomic file writes.
//!
//! Layout under the data directory (DESIGN §3):
//! - `state/`: the state file ([`crate::persist`]);
//! - `images/sha256/<hex>`: unikernel images by digest; `images/tmp/`: uploads in flight
//!   (emptied at start), renamed into place only after size, digest and manifest checks;
//! - `block/<owner>:<name>`: block volumes, the owner path's `/` written as `+` (a
//!   character neither names nor identities may contain), so every volume is one file;
//! - `keys/` (0700): `mac-secret`, the self-signed device certificate, a rotated trust
//!   anchor;
//! - `log/`: previous boots' logs (written by PID 1).
//!
//! Every file that must survive a power cut is written to a temporary file in the same
//! directory, fsynced, renamed over the old one, and the directory fsynced.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use hvt_abi::elf::Elf;
use hvt_abi::mft::{DeviceKind, Manifest};
use hvt_abi::note::check_hvt_abi;
use petrel_proto::msg::Sha256Digest;
use sha2::{Digest, Sha256};

/// The largest image accepted (uploads and autostart imports).
pub const MAX_IMAGE_BYTES: u64 = 256 << 20;
/// The largest block volume.
pub const MAX_BLOCK_BYTES: u64 = 1 << 40;
/// The length of the MAC derivation secret.
pub const MAC_SECRET_BYTES: usize = 32;

/// The data directory's paths.
#[derive(Clone, Debug)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// Creates the layout under `root` where missing (keys 0700) and empties
    /// `images/tmp/` of uploads a crash interrupted.
    pub fn prepare(root: &Path) -> io::Result<DataDir> {
        let d = DataDir {
            root: root.to_owned(),
        };
        for dir in [
            d.state(),
            d.images(),
            d.images_tmp(),
            d.blocks(),
            d.keys(),
            d.log(),
        ] {
            fs::create_dir_all(&dir)?;
        }
        fs::set_permissions(d.keys(), fs::Permissions::from_mode(0o700))?;
        for entry in fs::read_dir(d.images_tmp())? {
            let _ = fs::remove_file(entry?.path());
        }
        for entry in fs::read_dir(d.blocks())? {
            let entry = entry?;
            if entry.file_name().to_string_lossy().starts_with('.') {
                let _ = fs::remove_file(entry.path());
            }
        }
        Ok(d)
    }

    /// The data directory.
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// `state/`.
    pub fn state(&self) -> PathBuf {
        self.root.join("state")
    }
    /// `images/sha256/`.
    pub fn images(&self) -> PathBuf {
        self.root.join("images").join("sha256")
    }
    /// `images/tmp/`.
    pub fn images_tmp(&self) -> PathBuf {
        self.root.join("images").join("tmp")
    }
    /// `block/`.
    pub fn blocks(&self) -> PathBuf {
        self.root.join("block")
    }
    /// `keys/`.
    pub fn keys(&self) -> PathBuf {
        self.root.join("keys")
    }
    /// `log/`.
    pub fn log(&self) -> PathBuf {
        self.root.join("log")
    }

    /// The stored image with digest `hex`.
    pub fn image(&self, hex: &str) -> PathBuf {
        self.images().join(hex)
    }

    /// The file of block volume `full_name` (`ops/alice:disk`).
    pub fn block(&self, full_name: &str) -> PathBuf {
        self.blocks().join(full_name.replace('/', "+"))
    }
}

/// Lowercase hex of a digest.
pub fn hex(d: &Sha256Digest) -> String {
    d.to_string()
}

/// Parses 64 lowercase hex digits.
pub fn parse_hex(s: &str) -> Option<Sha256Digest> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        let pair = s.get(2 * i..2 * i + 2)?;
        if !pair.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return None;
        }
        *byte = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(Sha256Digest(out))
}

/// Fsyncs a directory (after a rename or unlink in it).
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// A unique temporary name in a directory (`.NAME.PID.SEQ.tmp`).
fn tmp_name(dir: &Path, name: &str) -> PathBuf {
    let seq = TMP_SEQ.fetch_add(1, Ordering::Relaxed);
    dir.join(format!(".{name}.{}.{seq}.tmp", std::process::id()))
}

/// Writes `path` atomically with `mode`: temporary file, fsync, rename, fsync the
/// directory.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map_or_else(|| "file".into(), |n| n.to_string_lossy());
    let tmp = tmp_name(dir, &name);
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// A file being written under a temporary name; removed on drop unless committed.
#[derive(Debug)]
pub struct TempFile {
    path: PathBuf,
    file: Option<File>,
    written_bytes: u64,
    hasher: Sha256,
}

impl TempFile {
    /// Creates a temporary file in `dir` (mode 0600).
    pub fn new(dir: &Path, tag: &str) -> io::Result<TempFile> {
        let path = tmp_name(dir, tag);
        let file = OpenOptions::new()
            .write(true)
            .read(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        Ok(TempFile {
            path,
            file: Some(file),
            written_bytes: 0,
            hasher: Sha256::new(),
        })
    }

    /// Appends `data`.
    pub fn write(&mut self, data: &[u8]) -> io::Result<()> {
        let f = self
            .file
            .as_mut()
            .ok_or_else(|| io::Error::other("closed"))?;
        f.write_all(data)?;
        self.hasher.update(data);
        self.written_bytes = self.written_bytes.saturating_add(data.len() as u64);
        Ok(())
    }

    /// Bytes written so far.
    pub fn written_bytes(&self) -> u64 {
        self.written_bytes
    }

    /// The digest of what was written.
    pub fn digest(&self) -> Sha256Digest {
        Sha256Digest(self.hasher.clone().finalize().into())
    }

    /// Its current path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Extends (or truncates) to `len_bytes` (zeros, sparse).
    pub fn set_len(&mut self, len_bytes: u64) -> io::Result<()> {
        self.file
            .as_ref()
            .ok_or_else(|| io::Error::other("closed"))?
            .set_len(len_bytes)
    }

    /// Fsyncs and renames to `dest`, then fsyncs the directory.
    pub fn commit(mut self, dest: &Path) -> io::Result<()> {
        if let Some(f) = self.file.take() {
            f.sync_all()?;
        }
        fs::rename(&self.path, dest)?;
        self.path = PathBuf::new();
        sync_dir(dest.parent().unwrap_or(Path::new(".")))
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Why an image's manifest does not fit the requested devices.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// Not a valid hvt executable, or no valid manifest.
    #[error("not a valid hvt unikernel: {0}")]
    Invalid(String),
    /// The devices differ.
    #[error("{0}")]
    Mismatch(String),
    /// Reading the file failed.
    #[error("reading the image: {0}")]
    Io(String),
}

/// The devices an image's manifest declares: `(name, kind)`.
pub fn manifest_devices(file: &[u8]) -> Result<Vec<(String, DeviceKind)>, ManifestError> {
    let bad = |e: &dyn std::fmt::Display| ManifestError::Invalid(e.to_string());
    let elf = Elf::parse(file).map_err(|e| bad(&e))?;
    check_hvt_abi(&elf.abi_info().map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
    let manifest =
        Manifest::parse(elf.manifest_note().map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
    Ok(manifest
        .devices()
        .map(|(_, name, kind)| (name.to_owned(), kind))
        .collect())
}

/// Checks that the image at `path` declares exactly the network devices `nets` and
/// the block devices `blocks`; the error names what is missing or extra.
pub fn check_manifest(path: &Path, nets: &[&str], blocks: &[&str]) -> Result<(), ManifestError> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|f| f.take(MAX_IMAGE_BYTES).read_to_end(&mut bytes))
        .map_err(|e| ManifestError::Io(e.to_string()))?;
    let declared = manifest_devices(&bytes)?;
    compare_devices(&declared, nets, blocks)
}

/// The comparison behind [`check_manifest`].
pub fn compare_devices(
    declared: &[(String, DeviceKind)],
    nets: &[&str],
    blocks: &[&str],
) -> Result<(), ManifestError> {
    let want: BTreeSet<(String, &str)> = nets
        .iter()
        .map(|n| ((*n).to_owned(), "net"))
        .chain(blocks.iter().map(|b| ((*b).to_owned(), "block")))
        .collect();
    let have: BTreeSet<(String, &str)> = declared
        .iter()
        .map(|(n, k)| {
            let kind = match k {
                DeviceKind::Block => "block",
                DeviceKind::Net => "net",
                _ => "unknown",
            };
            (n.clone(), kind)
        })
        .collect();
    let list = |set: Vec<&(String, &str)>| {
        set.iter()
            .map(|(n, k)| format!("{k} {n:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let missing: Vec<_> = want.difference(&have).collect();
    let extra: Vec<_> = have.difference(&want).collect();
    let mut parts = Vec::new();
    if !extra.is_empty() {
        parts.push(format!(
            "the image declares {} but the request does not attach it",
            list(extra)
        ));
    }
    if !missing.is_empty() {
        parts.push(format!(
            "the request attaches {} but the image does not declare it",
            list(missing)
        ));
    }
    if parts.is_empty() {
        Ok(())
    } else {
        Err(ManifestError::Mismatch(format!(
            "manifest mismatch: {}",
            parts.join("; ")
        )))
    }
}

/// Copies the file at `src` into the image store; returns its digest.
pub fn import_image(data: &DataDir, src: &Path) -> io::Result<Sha256Digest> {
    let mut input = File::open(src)?;
    let len = input.metadata()?.len();
    if len > MAX_IMAGE_BYTES {
        return Err(io::Error::other(format!(
            "{} is larger than {MAX_IMAGE_BYTES} bytes",
            src.display()
        )));
    }
    let mut tmp = TempFile::new(&data.images_tmp(), "import")?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = input.read(&mut buf)?;
        if n == 0 {
            break;
        }
        tmp.write(buf.get(..n).unwrap_or_default())?;
    }
    let digest = tmp.digest();
    let dest = data.image(&hex(&digest));
    if dest.is_file() {
        touch(&dest)?;
        return Ok(digest);
    }
    tmp.commit(&dest)?;
    Ok(digest)
}

/// Images stored (or reused by an upload) this recently are never collected: a
/// create may be between storing its image and its unikernel's creation.
pub const IMAGE_GC_GRACE: std::time::Duration = std::time::Duration::from_secs(600);

/// Marks a stored image as just used (so [`gc_images`] leaves it for a while).
pub fn touch(path: &Path) -> io::Result<()> {
    OpenOptions::new()
        .write(true)
        .open(path)?
        .set_modified(std::time::SystemTime::now())
}

/// Removes stored images whose digest is not in `keep` and that were not stored or
/// used within `grace`; returns how many.
pub fn gc_images(data: &DataDir, keep: &BTreeSet<String>, grace: std::time::Duration) -> usize {
    let Ok(entries) = fs::read_dir(data.images()) else {
        return 0;
    };
    let mut removed = 0;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let recent = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_none_or(|age| age < grace);
        if keep.contains(&name) || recent {
            continue;
        }
        if fs::remove_file(e.path()).is_ok() {
            removed += 1;
        }
    }
    if removed > 0 {
        let _ = sync_dir(&data.images());
    }
    removed
}

/// Reads the MAC secret, creating it (random, 0600) when missing or malformed.
pub fn mac_secret(data: &DataDir) -> io::Result<Vec<u8>> {
    let path = data.keys().join("mac-secret");
    match fs::read(&path) {
        Ok(b) if b.len() >= 16 => return Ok(b),
        Ok(_) => log::warn!("{}: too short; generating a new one", path.display()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut secret = vec![0u8; MAC_SECRET_BYTES];
    rustix::rand::getrandom(&mut secret, rustix::rand::GetRandomFlags::empty())
        .map_err(io::Error::from)?;
    write_atomic(&path, &secret, 0o600)?;
    Ok(secret)
}

/// Creates an empty (sparse) block volume file of `size_bytes`; refuses an existing one.
pub fn create_block_file(path: &Path, size_bytes: u64) -> io::Result<()> {
    let f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    let r = f.set_len(size_bytes).and_then(|()| f.sync_all());
    if r.is_err() {
        let _ = fs::remove_file(path);
    }
    r?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Removes a block volume file (a missing one is fine).
pub fn remove_block_file(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Ok(()) => sync_dir(path.parent().unwrap_or(Path::new("."))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let d = Sha256Digest::of(b"x");
        assert_eq!(parse_hex(&hex(&d)), Some(d));
        assert_eq!(parse_hex("AB"), None);
        assert_eq!(parse_hex(&"G".repeat(64)), None);
        assert_eq!(parse_hex(&"é".repeat(32)), None);
    }

    #[test]
    fn device_comparison_names_missing_and_extra() {
        let declared = vec![
            ("service".to_owned(), DeviceKind::Net),
            ("storage".to_owned(), DeviceKind::Block),
        ];
        assert_eq!(
            compare_devices(&declared, &["service"], &["storage"]),
            Ok(())
        );
        let e = compare_devices(&declared, &["service", "mgmt"], &[])
            .expect_err("mismatch")
            .to_string();
        assert!(e.contains("declares block \"storage\""), "{e}");
        assert!(e.contains("attaches net \"mgmt\""), "{e}");
        // Same name, other kind: both missing and extra.
        let e = compare_devices(&declared, &["service", "storage"], &[])
            .expect_err("kind differs")
            .to_string();
        assert!(
            e.contains("declares block") && e.contains("attaches net"),
            "{e}"
        );
    }

    #[test]
    fn garbage_image_is_invalid_not_a_panic() {
        for bytes in [&b""[..], b"\x7fELF", &[0xffu8; 4096]] {
            assert!(matches!(
                manifest_devices(bytes),
                Err(ManifestError::Invalid(_))
            ));
        }
    }

    #[test]
    fn block_paths_are_flat() {
        let d = DataDir {
            root: PathBuf::from("/d"),
        };
        assert_eq!(
            d.block("ops/alice:disk"),
            PathBuf::from("/d/block/ops+alice:disk")
        );
    }
}
