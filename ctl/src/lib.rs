//! `petrelctl`: the operator's command line for Petrel appliances, and its certificate
//! tooling.
//!
//! `petrelctl` talks the management protocol ([`petrel_proto`]) to `petreld`, over the
//! local Unix socket (`--socket`, default `/run/petrel/petreld.sock`) or over mutual
//! TLS 1.3 (`--host ADDR[:1025]` with an identity directory). It is a thin binary over
//! this library:
//!
//! - [`cli`]: the command line (argh), one struct per command, with its `--help`;
//! - [`run`]: carries out a parsed command: names, connection, call, output;
//! - [`connect`] and [`config`]: connection settings from flags, the configuration
//!   file (`$PETRELCTL_CONFIG` or `~/.config/petrel/petrelctl.toml`) and defaults;
//! - [`client`]: the protocol client (requests, uploads, downloads);
//! - [`ca`]: `ca init|issue|show` over [`petrel_proto::tls::ca`];
//! - [`output`], [`progress`], [`units`]: tables and JSON, transfer progress on a
//!   terminal, parsing and printing sizes, CPU lists, times;
//! - [`error`]: the error type and the exit codes.
//!
//! # Exit codes
//!
//! Scripts may rely on these; codes are only ever added.
//!
//! | code | meaning |
//! |------|---------|
//! | 0 | success |
//! | 1 | failure: a local file, the daemon failed, a corrupt transfer, anything else |
//! | 2 | usage: bad command line or value, a missing `--yes` |
//! | 3 | cannot connect: socket or host unreachable, TLS refused, protocol mismatch |
//! | 4 | not found: unikernel, block device, policy |
//! | 5 | permission denied or quota exceeded |
//! | 6 | already exists (on the daemon, or a file `ca` would overwrite) |
//! | 7 | busy: a block device attached or in transfer |
//! | 8 | refused as invalid: bad arguments, the image's manifest does not match |
//! | 9 | unsupported by this daemon (e.g. reboot outside an appliance) |
//!
//! Errors are one line on stderr, `petrelctl: <what>: <cause>`.
#![forbid(unsafe_code)]

pub mod ca;
pub mod cli;
pub mod client;
pub mod config;
pub mod connect;
pub mod error;
pub mod output;
pub mod progress;
pub mod run;
pub mod units;
