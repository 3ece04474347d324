//! Refuses to build a guest without the flags that make it an hvt executable.
//!
//! `guest/.cargo/config.toml` sets them as `target.x86_64-unknown-none.rustflags`, but a
//! `RUSTFLAGS` environment variable silently replaces that list, and the result (a
//! static-pie ET_DYN linked at 0) would only be refused later by the tender. Pass extra
//! flags with `--config 'target.x86_64-unknown-none.rustflags=[...]'` instead: cargo
//! appends those to the list.

use std::env;
use std::process::ExitCode;

fn main() -> ExitCode {
    println!("cargo::rerun-if-changed=hvt.ld");
    if env::var("TARGET").as_deref() != Ok("x86_64-unknown-none") {
        return ExitCode::SUCCESS; // host unit tests
    }
    let flags = env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    let flags: Vec<&str> = flags.split('\x1f').collect();
    let has = |needle: &str| flags.iter().any(|f| f.contains(needle));
    let mut ok = true;
    for needle in [
        "relocation-model=static",
        "hvt.ld",
        "--orphan-handling=error",
    ] {
        if !has(needle) {
            ok = false;
            println!(
                "cargo::error=petrel-guest: rustflags lack `{needle}`; \
                 is RUSTFLAGS set? It overrides guest/.cargo/config.toml \
                 (pass extra flags with --config 'target.x86_64-unknown-none.rustflags=[..]')"
            );
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
