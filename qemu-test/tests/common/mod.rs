//! What the QEMU suites share: the built programs and unikernels they use (each missing
//! one fails the test, naming the `make` target that builds it), and running a host
//! command that must succeed.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A static program of `make build` (e.g. `petrel-image`, `petrelctl`).
pub fn release_bin(name: &str) -> PathBuf {
    let p = repo().join(format!("target/x86_64-unknown-linux-musl/release/{name}"));
    assert!(p.is_file(), "{} is missing: run `make build`", p.display());
    p
}

/// An example unikernel of `make guests`.
pub fn guest(name: &str) -> PathBuf {
    let p = repo().join(format!("target/guests/{name}.hvt"));
    assert!(p.is_file(), "{} is missing: run `make guests`", p.display());
    p
}

/// Runs `cmd`, failing the test with its output unless it succeeds; returns its stdout.
pub fn run(cmd: &mut Command) -> String {
    let o = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        o.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}
