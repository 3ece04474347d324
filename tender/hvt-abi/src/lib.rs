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
//! Panic contract: no function in this crate panics on any input bytes
//! ([`fuzz_check`], the fuzzing harness, excepted: it asserts invariants).
//!
//! The tender's use, in `solo5-hvt`'s order (device options are handled between the
//! manifest and the load, against the manifest). Every error's `Display` is upstream's
//! text after its `"<file>: "` prefix:
//!
//! ```
//! use hvt_abi::elf::Elf;
//! use hvt_abi::mft::Manifest;
//! use hvt_abi::note::check_hvt_abi;
//!
//! fn prepare(path: &str, file: &[u8], mem_size: u64) -> Result<u64, String> {
//!     let refuse = |e: &dyn core::fmt::Display| format!("{path}: {e}");
//!     let elf = Elf::parse(file).map_err(|e| refuse(&e))?;
//!     check_hvt_abi(&elf.abi_info().map_err(|e| refuse(&e))?).map_err(|e| refuse(&e))?;
//!     let manifest = Manifest::parse(elf.manifest_note().map_err(|e| refuse(&e))?)
//!         .map_err(|e| refuse(&e))?;
//!     // ... attach devices named on the command line ...
//!     let plan = elf.load_plan(mem_size).map_err(|e| refuse(&e))?;
//!     for segment in elf.segments(mem_size) {
//!         let segment = segment.map_err(|e| refuse(&e))?;
//!         let _bytes = elf.segment_data(&segment); // copy to segment.vaddr, then
//!         let _range = segment.protect_range(); // protect with segment.prot
//!     }
//!     let _ = manifest;
//!     Ok(plan.kernel_end)
//! }
//!
//! assert_eq!(
//!     prepare("k.hvt", b"\x7fELF", 512 << 20).unwrap_err(),
//!     "k.hvt: invalid executable: elf header does not match the expected size (4 != 64)"
//! );
//! ```
#![no_std]
#![forbid(unsafe_code)]

pub mod abi;
pub mod elf;
pub mod mft;
pub mod note;

/// Guest memory sizes [`fuzz_check`] plans a load for: the smallest (2 MiB), the
/// default (512 MiB), the largest (4 GiB), and an unaligned one.
const FUZZ_MEM_SIZES: [u64; 4] = [
    abi::X86_GUEST_PAGE_SIZE_2M,
    abi::HVT_DEFAULT_MEM_SIZE,
    abi::X86_GUEST_MAX_MEM_SIZE,
    0x0123_4567,
];

/// The fuzzing entry point (the `elf_manifest` target in `fuzz/`), also used by the
/// tests to replay the corpus on stable Rust.
///
/// It takes `bytes` through everything the tender does with an executable, in the
/// tender's order: ELF header, ABI1 note, MFT1 note, manifest validation, attaching
/// every device and emitting the guest's copy, the guest's view of that copy, and the
/// load plan and segments for a few memory sizes. Errors are fine; what it checks is
/// that nothing panics and that the results keep their promises. It panics (which is
/// what a fuzzer reports) only when an invariant breaks: a manifest that does not
/// round-trip byte for byte, a segment outside guest memory or out of order, or a
/// `kernel_end` that is not the highest segment end.
pub fn fuzz_check(bytes: &[u8]) {
    let Ok(elf) = elf::Elf::parse(bytes) else {
        return;
    };
    if let Ok(info) = elf.abi_info() {
        let _ = note::check_hvt_abi(&info);
    }
    if let Ok(mft_bytes) = elf.manifest_note() {
        fuzz_manifest(mft_bytes);
    }
    for mem_size in FUZZ_MEM_SIZES {
        fuzz_load(&elf, mem_size);
    }
}

fn fuzz_manifest(mft_bytes: &[u8]) {
    let Ok(mut mft) = mft::Manifest::parse(mft_bytes) else {
        return;
    };
    let mut out = [0u8; abi::MFT_HEADER_SIZE + abi::MFT_MAX_ENTRIES as usize * 104];
    assert_eq!(mft.write_to(&mut out), Ok(mft_bytes.len()), "manifest size");
    assert_eq!(
        out.get(..mft_bytes.len()),
        Some(mft_bytes),
        "manifest round trip"
    );
    let mut handles = heapless::Vec::<(usize, mft::DeviceKind), 64>::new();
    for (handle, name, kind) in mft.devices() {
        assert!(handle > 0, "device at the reserved index");
        let _ = mft.find(name);
        let _ = handles.push((handle, kind));
    }
    for &(handle, kind) in &handles {
        let attached = match kind {
            mft::DeviceKind::Block => mft.attach_block(handle, 512 * 8, 512).is_ok(),
            mft::DeviceKind::Net => mft.attach_net(handle, [2, 0, 0, 0, 0, 1], 1500).is_ok(),
            _ => true,
        };
        assert!(attached, "attaching device {handle}");
    }
    for (_, kind) in mft.unattached() {
        assert!(
            matches!(kind, mft::DeviceKind::Other(_)),
            "{kind} left unattached"
        );
    }
    let Ok(len) = mft.write_to(&mut out) else {
        panic!("manifest does not fit its own size");
    };
    let view = mft::MftView::new(out.get(..len).unwrap_or_default());
    let Some(view) = view else {
        panic!("guest cannot view the emitted manifest");
    };
    assert_eq!(view.len(), mft.len(), "view length");
    for (handle, name, kind) in mft.devices() {
        // A name that is not all UTF-8 is shortened to its valid prefix, which may be
        // another entry's name; only whole names must be found at or before their entry.
        let whole = mft
            .get(handle)
            .is_some_and(|e| e.name_bytes() == name.as_bytes());
        let found = view.find_kind(name, kind);
        if whole {
            let Some((found, entry)) = found else {
                panic!("view does not find device {handle}");
            };
            assert!(found <= handle, "view finds a later entry");
            assert_eq!(entry.kind(), kind, "view kind");
            let attachable = matches!(kind, mft::DeviceKind::Block | mft::DeviceKind::Net);
            assert_eq!(entry.attached(), attachable, "view: attached flag");
        }
    }
}

fn fuzz_load(elf: &elf::Elf<'_>, mem_size: u64) {
    let plan = elf.load_plan(mem_size);
    let mut highest = 0;
    let mut all_ok = true;
    for segment in elf.segments(mem_size) {
        let Ok(segment) = segment else {
            all_ok = false;
            continue;
        };
        let range = segment.protect_range();
        assert!(
            range.start >= abi::HVT_GUEST_MIN_BASE && range.start >= highest,
            "order"
        );
        assert!(range.start < range.end && range.end <= mem_size, "range");
        assert!(range.start % elf::EM_PAGE_SIZE == 0 && range.end % elf::EM_PAGE_SIZE == 0);
        assert!(segment.file_range().end <= range.end && segment.zero_range().end <= range.end);
        let data = elf.segment_data(&segment);
        assert_eq!(data.len() as u64, segment.filesz, "segment data");
        highest = highest.max(range.end);
    }
    if let Ok(plan) = plan {
        assert!(all_ok, "plan accepted a failing segment");
        assert_eq!(plan.kernel_end, highest, "kernel_end");
        assert!(plan.entry >= abi::HVT_GUEST_MIN_BASE && plan.entry < mem_size);
    }
}
