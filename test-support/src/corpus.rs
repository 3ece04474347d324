//! Fuzz corpora for the replay suites: each fuzz target keeps its inputs in
//! `fuzz/corpus/<target>/` ([`corpus_dir`]); a suite replays them ([`read_corpus`]) and regenerates its
//! seeds there with an ignored test ([`write_seeds`], only when [`WRITE_ENV`] is set).
//! Every failure names the directory or file.

use std::path::{Path, PathBuf};

/// The environment variable that lets [`write_seeds`] write: a suite's ignored
/// `write_corpus` test is run with `PETREL_WRITE_CORPUS=1 … -- --ignored write_corpus`.
pub const WRITE_ENV: &str = "PETREL_WRITE_CORPUS";

/// The corpus directory of fuzz target `target`: `<workspace>/fuzz/corpus/<target>`.
pub fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target)
}

/// Reads every regular file in `dir` (subdirectories are skipped) and returns the file
/// names and contents, sorted by name. Fails the test, naming the directory or the file,
/// when anything cannot be read.
#[track_caller]
pub fn read_corpus(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let entries = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read the fuzz corpus at {}: {e}", dir.display()));
    let mut files = Vec::new();
    for entry in entries {
        let path = match entry {
            Ok(entry) => entry.path(),
            Err(e) => panic!("listing the fuzz corpus at {}: {e}", dir.display()),
        };
        if path.is_dir() {
            continue;
        }
        let bytes = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("reading corpus file {}: {e}", path.display()));
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| panic!("corpus entry {} has no file name", path.display()));
        files.push((name, bytes));
    }
    files.sort();
    files
}

/// Writes each seed `(name, bytes)` to `dir/name`, creating `dir` first, when
/// [`WRITE_ENV`] is set; does nothing otherwise (so that `--ignored` alone does not
/// rewrite the corpus). A seed name must be a plain file name. Fails the test, naming
/// the path, on any error.
#[track_caller]
pub fn write_seeds<N: AsRef<str>>(dir: &Path, seeds: impl IntoIterator<Item = (N, Vec<u8>)>) {
    if std::env::var_os(WRITE_ENV).is_some() {
        write_all(dir, seeds);
    }
}

/// [`write_seeds`] without the environment check.
#[track_caller]
fn write_all<N: AsRef<str>>(dir: &Path, seeds: impl IntoIterator<Item = (N, Vec<u8>)>) {
    std::fs::create_dir_all(dir)
        .unwrap_or_else(|e| panic!("creating the fuzz corpus at {}: {e}", dir.display()));
    for (name, bytes) in seeds {
        let name = name.as_ref();
        assert!(
            !name.is_empty() && !name.contains('/') && name != "." && name != "..",
            "seed name {name:?} is not a plain file name"
        );
        let path = dir.join(name);
        std::fs::write(&path, bytes)
            .unwrap_or_else(|e| panic!("writing seed {}: {e}", path.display()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Scratch;

    #[test]
    fn files_are_read_sorted_and_subdirectories_skipped() {
        let s = Scratch::new("petrel-ts-corpus");
        std::fs::write(s.path("b"), b"2").expect("write");
        std::fs::write(s.path("a"), b"1").expect("write");
        std::fs::create_dir(s.path("sub")).expect("mkdir");
        assert_eq!(
            read_corpus(s.dir()),
            vec![
                ("a".to_owned(), b"1".to_vec()),
                ("b".to_owned(), b"2".to_vec())
            ]
        );
    }

    #[test]
    fn seeds_are_written_into_a_new_directory_and_read_back() {
        let s = Scratch::new("petrel-ts-corpus");
        let dir = s.path("target");
        write_all(&dir, [("y", b"yy".to_vec()), ("x", Vec::new())]);
        write_all(&dir, vec![("z".to_owned(), b"z".to_vec())]);
        assert_eq!(
            read_corpus(&dir),
            vec![
                ("x".to_owned(), Vec::new()),
                ("y".to_owned(), b"yy".to_vec()),
                ("z".to_owned(), b"z".to_vec()),
            ]
        );
    }

    #[test]
    #[should_panic(expected = "is not a plain file name")]
    fn a_seed_name_with_a_slash_fails_loudly() {
        let s = Scratch::new("petrel-ts-corpus");
        write_all(s.dir(), [("../x", Vec::new())]);
    }

    #[test]
    #[should_panic(expected = "cannot read the fuzz corpus at")]
    fn a_missing_corpus_fails_loudly() {
        let s = Scratch::new("petrel-ts-corpus");
        read_corpus(&s.path("missing"));
    }

    #[test]
    fn the_corpus_root_is_the_workspace_fuzz_directory() {
        let d = corpus_dir("config_parse");
        assert!(d.ends_with("fuzz/corpus/config_parse"), "{}", d.display());
        assert!(d.parent().is_some_and(Path::is_dir), "{}", d.display());
    }
}
