//! Builds the Petrel firmware reproducibly: initramfs, UKI, GPT disk image; provisions
//! devices.
//!
//! Boot artifacts (`petrel-image build`), in layers:
//! - pure wire code over bytes: [`elf`] (a bounds-checked ELF64 section reader),
//!   [`modinfo`] (a module's `.modinfo`), [`cpio`] (newc writer), [`uki`] (PE/COFF
//!   reader and section writer);
//! - pure logic: [`modules`] (selection closed over dependencies and softdeps, the
//!   module index), [`initramfs`] (the layout, gzip);
//! - I/O at the edges: [`inputs`] (the pinned Debian packages: `apt-get download`,
//!   sha256, `dpkg-deb -x`), [`assemble`] (reads the inputs, writes the outputs).
//!
//! The disk image (`petrel-image disk`) and per-device provisioning
//! (`petrel-image provision`) live in [`disk`] and [`provision`].
#![forbid(unsafe_code)]

pub mod assemble;
pub mod cli;
pub mod cpio;
pub mod disk;
pub mod elf;
pub mod initramfs;
pub mod inputs;
pub mod modinfo;
pub mod modules;
pub mod provision;
pub mod uki;
