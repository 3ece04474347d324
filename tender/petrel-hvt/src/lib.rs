//! `petrel-hvt`: runs one Solo5 hvt unikernel on KVM, a drop-in replacement for
//! `solo5-hvt` v0.12.1.
//!
//! Layers, from the outside in:
//! - [`cli`]: the command line (pure);
//! - [`tender`]: checks, device attachment, VM construction and the run loop;
//! - [`hypercall`]: the handlers, over [`mem`] (checked guest memory) and [`devices`]
//!   (block files and taps);
//! - [`vm`]: KVM ioctls; [`layout`]: the boot-time memory layout (pure);
//! - [`dumpcore`]: ELF core files of aborted guests;
//! - [`seccomp`]: the system calls the tender may make while the guest runs.
//!
//! The guest is never trusted: every address, length and handle it passes is checked
//! before use, and every refusal is one line on stderr with exit status 1.
pub mod cli;
pub mod devices;
pub mod dumpcore;
pub mod hypercall;
pub mod layout;
pub mod mem;
pub mod seccomp;
pub mod tender;
pub mod vm;
