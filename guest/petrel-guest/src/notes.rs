//! The ELF notes and `.interp` every hvt unikernel carries, byte for byte as Solo5's
//! `elf_abi.h` declares them. The manifest note comes from
//! [`manifest!`](crate::manifest). They are emitted with `global_asm!` rather than
//! `#[used]` statics: a `#[used]` static gets `SHF_GNU_RETAIN`, which makes the linker
//! mark the whole executable's OS/ABI as GNU. `hvt.ld` keeps them and gives each its own
//! PT_NOTE.

use core::arch::global_asm;

use hvt_abi::abi::{HVT_ABI_TARGET, HVT_ABI_VERSION, SOLO5_NOTE_ABI_INFO};

global_asm!(
    // Solo5's DECLARE_ELF_INTERP: char[24], 8-aligned. The trailing slash makes loading
    // fail even if "/nonexistent/solo5" existed; running the file directly gives 127.
    ".pushsection .interp,\"a\",@progbits",
    ".p2align 3",
    ".asciz \"/nonexistent/solo5/\"",
    ".zero 4",
    ".popsection",
    // DECLARE_OPENBSD_NOTE: keeps OpenBSD from running the file through /bin/sh.
    ".pushsection .note.solo5.not_openbsd,\"a\",@note",
    ".p2align 2",
    ".long 8",            // n_namesz
    ".long 4",            // n_descsz
    ".long 1",            // n_type: NT_VERSION
    ".asciz \"OpenBSD\"",
    ".long 0",
    ".popsection",
    // ABI1_NOTE_DECLARE: {abi_target, abi_version, reserved0, reserved1}.
    ".pushsection .note.solo5.abi,\"a\",@note",
    ".p2align 2",
    ".long 6",            // n_namesz: "Solo5\0"
    ".long 16",           // n_descsz
    ".long {abi1}",       // n_type: "ABI1"
    ".asciz \"Solo5\"",
    ".zero 2",            // name padded to 8
    ".long {target}",
    ".long {version}",
    ".long 0",
    ".long 0",
    ".popsection",
    abi1 = const SOLO5_NOTE_ABI_INFO,
    target = const HVT_ABI_TARGET,
    version = const HVT_ABI_VERSION,
);
