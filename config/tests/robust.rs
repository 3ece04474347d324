//! No input makes the parser panic, and every config that parses round-trips through
//! `to_toml`: the fuzz corpus in `fuzz/corpus/config_parse/`, every truncation and many
//! byte corruptions of its files, and hostile shapes (deep nesting, huge arrays) all run
//! through [`petrel_config::fuzz_check`], the fuzz target's entry point.
#![allow(missing_docs, clippy::unwrap_used)]

use petrel_config::{Config, fuzz_check};
use petrel_test_support::{corpus_dir, read_corpus};

fn corpus() -> Vec<(String, Vec<u8>)> {
    let files = read_corpus(&corpus_dir("config_parse"));
    assert!(files.len() >= 10, "corpus too small: {}", files.len());
    files
}

#[test]
fn corpus_replays_and_seeds_are_what_their_names_say() {
    for (name, bytes) in corpus() {
        fuzz_check(&bytes);
        let text = String::from_utf8_lossy(&bytes);
        let verdict = Config::parse(&text);
        if name.starts_with("valid-") {
            assert!(verdict.is_ok(), "{name}: {verdict:?}");
        } else if name.starts_with("broken-") {
            assert!(verdict.is_err(), "{name}: accepted");
        }
    }
}

#[test]
fn truncations_and_corruptions_of_the_seeds() {
    for (_, bytes) in corpus() {
        for len in 0..=bytes.len() {
            fuzz_check(&bytes[..len]);
        }
        let mut copy = bytes.clone();
        for i in 0..copy.len() {
            let orig = copy[i];
            for v in [b'"', b'[', b']', b'\n', b'=', b'0', b'\\', b'#', 0x00, 0xff] {
                copy[i] = v;
                fuzz_check(&copy);
            }
            copy[i] = orig;
        }
    }
}

#[test]
fn hostile_shapes() {
    let deep_arrays = format!("a = {}", "[".repeat(100_000));
    let deep_tables = format!("a = {}", "{ b = ".repeat(100_000));
    let deep_keys = format!("{} = 1", vec!["k"; 100_000].join("."));
    let many_bridges = "[[network.bridges]]\nuplink = \"none\"\n".repeat(5_000);
    let many_services: String = (0..5_000)
        .map(|i| format!("[[services]]\nname = \"s{i}\"\ncommand = [\"/x\"]\n"))
        .collect();
    let long_string = format!("hostname = \"{}\"", "a".repeat(1 << 20));
    for text in [
        deep_arrays,
        deep_tables,
        deep_keys,
        many_bridges,
        many_services,
        long_string,
    ] {
        fuzz_check(text.as_bytes());
    }
}
