//! Shared helpers for the tender's integration tests: find the tender and the example
//! unikernels, run them, and make scratch files.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub use petrel_test_support::{Scratch, require_kvm};

/// The tender binary under test (the static musl build of this crate).
pub fn tender() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_petrel-hvt"))
}

/// Path of example unikernel `name`. Panics with the fix when it has not been built:
/// a missing guest is a failed test, never a skipped one.
pub fn guest(name: &str) -> PathBuf {
    let dir = std::env::var_os("PETREL_GUESTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/guests"));
    let p = dir.join(format!("{name}.hvt"));
    assert!(
        p.is_file(),
        "guest {} is missing: run `make guests` first",
        p.display()
    );
    p
}

/// Runs the tender with `args` and returns its output.
pub fn run(args: &[&str]) -> Output {
    require_kvm();
    Command::new(tender())
        .args(args)
        .output()
        .expect("spawn petrel-hvt")
}

/// Runs guest `name` with tender options `opts` and guest arguments `gargs`.
pub fn run_guest(name: &str, opts: &[&str], gargs: &[&str]) -> Output {
    let g = guest(name);
    let mut args: Vec<&str> = opts.to_vec();
    let gs = g.to_str().expect("utf-8 path").to_string();
    args.push("--");
    args.push(&gs);
    args.extend_from_slice(gargs);
    run(&args)
}

/// Standard output as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Standard error as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The exit code; panics (with the output) if the tender was killed by a signal.
pub fn code(o: &Output) -> i32 {
    match o.status.code() {
        Some(c) => c,
        None => panic!(
            "tender died by signal: {:?}\nstdout:\n{}\nstderr:\n{}",
            o.status,
            stdout(o),
            stderr(o)
        ),
    }
}

/// Asserts the exit code and that stderr contains `needle`, showing both on failure.
pub fn assert_exit(o: &Output, want: i32, needle: &str) {
    let (out, err) = (stdout(o), stderr(o));
    assert_eq!(code(o), want, "exit code\nstdout:\n{out}\nstderr:\n{err}");
    assert!(
        err.contains(needle),
        "stderr lacks {needle:?}\nstdout:\n{out}\nstderr:\n{err}"
    );
}

/// Scratch files of the tender's suites.
pub trait ScratchFiles {
    /// A file of `len` zero bytes in the scratch directory; its path as text.
    fn file(&self, name: &str, len: usize) -> String;
}

impl ScratchFiles for Scratch {
    fn file(&self, name: &str, len: usize) -> String {
        let p = self.path(name);
        std::fs::write(&p, vec![0u8; len]).expect("scratch file");
        p.to_str().expect("utf-8").to_string()
    }
}
