//! The supervisor: owns the unikernels, their devices, consoles, restarts, persistent
//! state and the management server.
//!
//! Layers (this crate is the library under the `petreld` binary):
//! - [`state`]: the model of one unikernel, its spec and its runtime state.
//! - [`machine`]: the pure transition function over all unikernels,
//!   `handle(now, event) -> actions` plus `poll_at()`; no I/O, time is an argument.
//! - [`mac`]: stable, secret-derived MAC addresses per (unikernel, device).
//! - [`persist`]: the versioned, checksummed, atomically written state file.
//! - [`quota`]: policies per identity path, checked on every prefix, summed over subtrees.
//! - [`budget`]: the disk budget of uploads in flight.
//!
//! The daemon (sockets, TLS, spawning tenders, taps) executes the actions the machine
//! returns and feeds it events; it holds no policy of its own.
// Denied, not forbidden: `runner` allows it in the one function that sets up the tender
// between fork and exec (`pre_exec`).
#![deny(unsafe_code)]

pub mod api;
pub mod budget;
pub mod console;
pub mod daemon;
pub mod mac;
pub mod machine;
pub mod metrics;
pub mod persist;
pub mod quota;
pub mod runner;
pub mod server;
pub mod service;
pub mod state;
pub mod stats;
pub mod store;
