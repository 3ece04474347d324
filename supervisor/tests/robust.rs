//! No bytes in `state/state.json` make petreld's state decoder panic, and a damaged copy
//! never decodes to a different body: the fuzz corpus in `fuzz/corpus/state_decode/`,
//! every truncation and many byte corruptions of the valid seeds, and hostile shapes
//! (deep nesting, huge numbers, long strings) all run through [`persist::fuzz_check`],
//! the `state_decode` fuzz target's entry point.
//!
//! The seeds (`valid-*` decode, `broken-*` do not) are generated with the real encoder by
//! `PETREL_WRITE_CORPUS=1 cargo test -p petreld --test robust -- --ignored write_corpus`.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::PathBuf;

use petreld::mac::Mac;
use petreld::persist::{BlockVolume, Body, DecodeError, Record, decode, encode, fuzz_check};
use petreld::quota::Policy;
use petreld::state::{BlockDevice, ExitInfo, ExitStatus, NetDevice, RestartPolicy, Spec};
use sha2::{Digest, Sha256};

fn corpus_dir() -> PathBuf {
    petrel_test_support::corpus_dir("state_decode")
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// An envelope around `body` (JSON text) with the right checksum: the shapes the encoder
/// never writes but a newer firmware or a damaged disk might leave.
fn envelope(extra: &str, min_reader_version: u32, generation: &str, body: &str) -> Vec<u8> {
    format!(
        r#"{{"format":"petrel-state","version":1,"min_reader_version":{min_reader_version},"generation":{generation},"body_sha256":"{}","body":{body}{extra}}}"#,
        sha256_hex(body.as_bytes())
    )
    .into_bytes()
}

fn spec(name: &str, restart: RestartPolicy) -> Spec {
    Spec {
        name: name.to_owned(),
        image_sha256: "5e".repeat(32),
        args: vec![
            "--ipv4=10.0.0.2/24".into(),
            "--ipv4-gateway=10.0.0.1".into(),
        ],
        memory_mib: 32,
        cpus: vec![1],
        net: vec![NetDevice {
            name: "service".into(),
            bridge: "br0".into(),
            mac: Mac([0x02, 0x50, 0x65, 0x74, 0x00, 0x01]),
        }],
        block: vec![],
        restart,
        priority: 0,
    }
}

fn small_body() -> Body {
    let mut body = Body::default();
    body.unikernels.push(Record {
        spec: spec("ops:web", RestartPolicy::Always),
        restart_count: 0,
        last_exit: None,
    });
    body.blocks.push(BlockVolume {
        name: "ops:disk".into(),
        size_bytes: 1 << 20,
        sector_size: 512,
    });
    body.policies.insert(
        "ops".into(),
        Policy {
            max_unikernels: 4,
            memory_mib: 256,
            ..Policy::default()
        },
    );
    body
}

fn full_body() -> Body {
    let mut body = small_body();
    let mut db = spec(
        "ops/alice:db",
        RestartPolicy::OnExit(BTreeSet::from([1, 2, 255])),
    );
    db.block.push(BlockDevice {
        name: "storage".into(),
        volume: "ops/alice:data".into(),
    });
    db.cpus = vec![0, 1];
    db.priority = 10;
    body.unikernels.push(Record {
        spec: db,
        restart_count: 3,
        last_exit: Some(ExitInfo {
            status: ExitStatus::Code(2),
            reason: "hvt: solo5_abort \"disk full\"".into(),
        }),
    });
    let mut dns = spec("ops/bob:dns", RestartPolicy::Never);
    dns.net.clear();
    dns.memory_mib = 16;
    dns.priority = -5;
    body.unikernels.push(Record {
        spec: dns,
        restart_count: u32::MAX,
        last_exit: Some(ExitInfo {
            status: ExitStatus::Signal(9),
            reason: String::new(),
        }),
    });
    body.unikernels.push(Record {
        spec: spec("ops:broken", RestartPolicy::Always),
        restart_count: 1,
        last_exit: Some(ExitInfo {
            status: ExitStatus::SpawnFailed,
            reason: "tap: no such bridge".into(),
        }),
    });
    body.blocks.push(BlockVolume {
        name: "ops/alice:data".into(),
        size_bytes: 64 << 20,
        sector_size: 4096,
    });
    body.policies.insert(
        "ops/alice".into(),
        Policy {
            max_unikernels: 2,
            memory_mib: 128,
            block_mib: 1024,
            cpus: BTreeSet::from([0, 1]),
            bridges: BTreeSet::from(["br0".to_owned()]),
        },
    );
    body.autostart.insert("ops:web".into(), "ab".repeat(32));
    body.exit_times
        .insert("ops/alice:db".into(), 1_795_000_000_000);
    body.exit_times.insert("ops/bob:dns".into(), u64::MAX);
    body
}

/// The seed corpus: name and contents. `valid-*` must decode, `broken-*` must not.
fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let small = encode(7, &small_body()).unwrap();
    let full = encode(1234, &full_body()).unwrap();
    let text = String::from_utf8(full.clone()).unwrap();
    let first_format =
        r#"{"unikernels":[{"spec":{"name":"ops:a","image_sha256":"00","memory_mib":16}}]}"#;
    let newer_body = r#"{"unikernels":[{"spec":{"name":"ops:a","image_sha256":"00","memory_mib":16,"gpu":true},"flavour":"x"}],"quotas":{"deep":[[[[[[[[{}]]]]]]]]}}"#;
    let deep_body = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let deep_unknown = format!(
        r#""nested":{}1{}"#,
        r#"{"a":["#.repeat(2000),
        "]}".repeat(2000)
    );
    let mut torn = small.clone();
    torn.truncate(small.len() / 2);
    vec![
        ("valid-empty", encode(1, &Body::default()).unwrap()),
        ("valid-small", small.clone()),
        ("valid-full", full.clone()),
        (
            "valid-max-generation",
            encode(u64::MAX, &full_body()).unwrap(),
        ),
        (
            "valid-first-format-body",
            envelope("", 1, "2", first_format),
        ),
        (
            "valid-newer-writer",
            envelope(r#","signed_by":"x""#, 1, "3", newer_body).map_version(9),
        ),
        (
            "valid-deep-unknown-field",
            envelope(&format!(",{deep_unknown}"), 1, "4", "{}"),
        ),
        ("broken-empty", Vec::new()),
        (
            "broken-garbage",
            vec![0xff, 0x00, 0x7b, 0x22, 0xfe, 0x80, 0x0a],
        ),
        ("broken-truncated", torn),
        (
            "broken-checksum",
            text.replace("disk full", "disk fulL").into_bytes(),
        ),
        (
            "broken-format",
            text.replace("petrel-state", "petrel-stat").into_bytes(),
        ),
        (
            "broken-newer-reader",
            text.replace(r#""min_reader_version":1"#, r#""min_reader_version":2"#)
                .into_bytes(),
        ),
        (
            "broken-huge-generation",
            envelope("", 1, "18446744073709551616", "{}"),
        ),
        ("broken-float-generation", envelope("", 1, "1e400", "{}")),
        ("broken-negative-generation", envelope("", 1, "-1", "{}")),
        (
            "broken-huge-memory",
            envelope(
                "",
                1,
                "5",
                r#"{"unikernels":[{"spec":{"name":"ops:a","image_sha256":"00","memory_mib":4294967296}}]}"#,
            ),
        ),
        (
            "broken-huge-reader-version",
            envelope("", 99_999_999, "5", "{}"),
        ),
        ("broken-deep-body", envelope("", 1, "6", &deep_body)),
        (
            "broken-deep-envelope",
            format!(r#"{{"format":{}"#, "[".repeat(5000)).into_bytes(),
        ),
        (
            "broken-duplicate-generation",
            envelope(r#","generation":9"#, 1, "8", "{}"),
        ),
        (
            "broken-body-not-utf8",
            envelope("", 1, "9", "\"\u{1}\"")
                .into_iter()
                .map(|b| if b == 1 { 0xc3 } else { b })
                .collect(),
        ),
    ]
}

/// Changes the `version` of an envelope made by [`envelope`] (outside the checksum).
trait MapVersion {
    fn map_version(self, version: u32) -> Vec<u8>;
}

impl MapVersion for Vec<u8> {
    fn map_version(self, version: u32) -> Vec<u8> {
        String::from_utf8(self)
            .unwrap()
            .replacen(r#""version":1"#, &format!(r#""version":{version}"#), 1)
            .into_bytes()
    }
}

fn corpus() -> Vec<(String, Vec<u8>)> {
    petrel_test_support::read_corpus(&corpus_dir())
}

fn check_verdict(name: &str, bytes: &[u8]) {
    fuzz_check(bytes);
    let verdict = decode(bytes);
    if name.starts_with("valid-") {
        assert!(verdict.is_ok(), "{name}: {verdict:?}");
    } else if name.starts_with("broken-") {
        assert!(verdict.is_err(), "{name}: accepted");
    }
}

#[test]
fn corpus_replays_and_seeds_are_what_their_names_say() {
    let files = corpus();
    for (name, _) in seeds() {
        assert!(
            files.iter().any(|(n, _)| n == name),
            "seed {name} missing from {}: regenerate with write_corpus",
            corpus_dir().display()
        );
    }
    for (name, bytes) in &files {
        check_verdict(name, bytes);
    }
    for (name, bytes) in seeds() {
        check_verdict(name, &bytes);
    }
}

#[test]
fn valid_seeds_decode_to_what_was_encoded() {
    let s = decode(&encode(1234, &full_body()).unwrap()).unwrap();
    assert_eq!((s.generation, s.body), (1234, full_body()));
    let s = decode(&envelope(
        "",
        1,
        "2",
        r#"{"blocks":[{"name":"ops:d","size_bytes":512}]}"#,
    ))
    .unwrap();
    assert_eq!(s.body.blocks[0].sector_size, 512);
    assert!(s.body.unikernels.is_empty() && s.body.policies.is_empty());
}

/// Every truncation of every valid seed (a torn write) and many byte corruptions (a bad
/// disk): no panic, and whatever still decodes has exactly the body that was written.
#[test]
fn truncations_and_corruptions_of_valid_files() {
    for (name, bytes) in seeds() {
        if !name.starts_with("valid-") || bytes.len() > 64 << 10 {
            continue;
        }
        let state = decode(&bytes).unwrap();
        for cut in 0..bytes.len() {
            if let Ok(torn) = decode(&bytes[..cut]) {
                assert_eq!(torn, state, "{name} cut at {cut}");
            }
        }
    }
    let good = encode(5, &full_body()).unwrap();
    for cut in 0..good.len() {
        fuzz_check(&good[..cut]);
    }
    let mut seed: u64 = 0x5eed_57a7e;
    for round in 0..30_000 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let mut bytes = good.clone();
        let i = usize::try_from(seed % bytes.len() as u64).unwrap();
        let flip = u8::try_from((seed >> 32) & 0xff).unwrap().max(1);
        bytes[i] ^= flip;
        if round % 16 == 0 {
            // A second byte, and sometimes a whole sector of zeros.
            let j = usize::try_from((seed >> 40) % bytes.len() as u64).unwrap();
            bytes[j] = b'"';
            if round % 64 == 0 {
                let end = (i + 512).min(bytes.len());
                bytes[i..end].fill(0);
            }
        }
        if round % 8 == 0 {
            fuzz_check(&bytes);
        }
        if let Ok(s) = decode(&bytes) {
            // Only a change outside the checksummed body can still decode (a digit of the
            // generation, the case of the checksum); the body is what was written.
            assert_eq!(s.body, full_body(), "round {round} (seed {seed:#x})");
        }
    }
}

/// serde_json stops at 128 levels of nesting (its default recursion limit, in force in
/// this build: no crate enables `unbounded_depth`), so nesting is an error and never a
/// stack overflow. The state types are only a few levels deep, so a nested body fails on
/// a type long before that; nesting in fields the decoder ignores (and in the raw body,
/// which is only checksummed first) is skipped without recursion.
#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let arrays = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let objects = |depth: usize| format!("{}1{}", r#"{"a":"#.repeat(depth), "}".repeat(depth));
    assert!(serde_json::from_str::<serde_json::Value>(&arrays(127)).is_ok());
    for deep in [arrays(129), objects(129), arrays(1_000_000)] {
        let e = serde_json::from_str::<serde_json::Value>(&deep).unwrap_err();
        assert!(e.to_string().contains("recursion limit exceeded"), "{e}");
    }
    for depth in [127, 129, 100_000, 1_000_000] {
        let (arrays, objects) = (arrays(depth), objects(depth));
        let unclosed = "[".repeat(depth);
        // As the body: never a Body (wrong types inside), never a crash.
        let file = envelope("", 1, "1", &arrays);
        assert!(
            matches!(decode(&file), Err(DecodeError::Body(_))),
            "{depth}"
        );
        // In every typed position of the body: an error.
        let on_exit = format!(
            r#"{{"unikernels":[{{"spec":{{"name":"a","image_sha256":"0","memory_mib":1,"restart":{{"on_exit":{arrays}}}}}}}]}}"#
        );
        let policy = format!(r#"{{"policies":{{"ops":{{"cpus":{arrays}}}}}}}"#);
        for body in [&on_exit, &policy] {
            let file = envelope("", 1, "1", body);
            assert!(
                matches!(decode(&file), Err(DecodeError::Body(_))),
                "{depth}"
            );
            fuzz_check(body.as_bytes());
        }
        // Where the decoder ignores it (unknown fields), it costs no recursion: decodes.
        for ignored in [&arrays, &objects] {
            let in_body = format!(r#"{{"newer":{ignored}}}"#);
            assert!(decode(&envelope("", 1, "1", &in_body)).is_ok(), "{depth}");
            let in_envelope = envelope(&format!(r#","newer":{ignored}"#), 1, "1", "{}");
            assert!(decode(&in_envelope).is_ok(), "{depth}");
            fuzz_check(ignored.as_bytes());
        }
        let err = decode(unclosed.as_bytes()).unwrap_err();
        assert!(matches!(err, DecodeError::Envelope(_)), "{err:?}");
        fuzz_check(unclosed.as_bytes());
        let in_field = format!(r#"{{"format":"petrel-state","generation":{unclosed}"#);
        fuzz_check(in_field.as_bytes());
    }
}

#[test]
fn hostile_shapes() {
    let long_name = format!(
        r#"{{"unikernels":[{{"spec":{{"name":"{}","image_sha256":"00","memory_mib":1}}}}]}}"#,
        "a".repeat(1 << 20)
    );
    let many_records = format!(
        r#"{{"unikernels":[{}]}}"#,
        vec![r#"{"spec":{"name":"ops:a","image_sha256":"00","memory_mib":1}}"#; 20_000].join(",")
    );
    let many_codes = format!(
        r#"{{"unikernels":[{{"spec":{{"name":"ops:a","image_sha256":"00","memory_mib":1,"restart":{{"on_exit":[{}]}}}}}}]}}"#,
        (0..50_000)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(",")
    );
    let huge_numbers = r#"{"exit_times":{"a":18446744073709551615},"blocks":[{"name":"b","size_bytes":18446744073709551615,"sector_size":4294967295}]}"#;
    let escapes = format!(
        r#"{{"autostart":{{"{}":"\ud800"}}}}"#,
        r"\u0000".repeat(10_000)
    );
    for body in [
        long_name.as_str(),
        many_records.as_str(),
        many_codes.as_str(),
        huge_numbers,
        escapes.as_str(),
    ] {
        fuzz_check(body.as_bytes());
        let file = envelope("", 1, "1", body);
        fuzz_check(&file);
    }
    let s = decode(&envelope("", 1, "1", &many_records)).unwrap();
    assert_eq!(s.body.unikernels.len(), 20_000);
    let s = decode(&envelope("", 1, "1", huge_numbers)).unwrap();
    assert_eq!(s.body.blocks[0].size_bytes, u64::MAX);
    // A lone surrogate is not a string: an error, not a panic.
    assert!(matches!(
        decode(&envelope("", 1, "1", &escapes)),
        Err(DecodeError::Body(_))
    ));
}

#[test]
#[ignore = "writes the seed corpus; run with PETREL_WRITE_CORPUS=1"]
fn write_corpus() {
    petrel_test_support::write_seeds(&corpus_dir(), seeds());
}
