//! The Solo5 *hvt* ABI (v0.12.1, `HVT_ABI_VERSION` 2) as pure code.
//!
//! Everything here works on byte slices and plain values: no I/O, no allocation, no
//! `unsafe`. The tender (`petrel-hvt`), the guest kit (`guest/petrel-guest`), and later the
//! supervisor and builder all share it, so that both sides of the ABI are written once.
//!
//! Layers:
//! - [`abi`]: constants and the `#[repr(C)]` structs exchanged between tender and guest
//!   (boot info, hypercall arguments, raw manifest entries), each with a compile-time
//!   size assertion.
//! - [`elf`]: validation of an hvt executable's headers and loadable segments, as
//!   `solo5-hvt` checks them, producing a load plan.
//! - [`note`]: lookup of the Solo5 ELF notes (ABI1, MFT1).
//! - [`mft`]: the device manifest: validation, device lookup, and the host-modified copy
//!   the tender hands to the guest.
//!
//! Panic contract: no function in this crate panics on any input bytes.
#![no_std]
#![forbid(unsafe_code)]

pub mod abi;
