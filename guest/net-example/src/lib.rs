//! The pure parts of the `net` example unikernel, kept apart from the device glue so
//! that they can be unit-tested on the host
//! (`cargo test -p petrel-net-example --lib --target x86_64-unknown-linux-gnu`):
//!
//! - [`config`]: the command line (`--ipv4=ADDR/PREFIX`, `--ipv4-gateway=ADDR`, `--help`);
//! - [`http`]: recognising the end of a request and choosing the canned response.
//!
//! Everything here works on byte slices and returns values; nothing allocates.
#![cfg_attr(not(test), no_std)]

pub mod config;
pub mod http;
