//! Constants and `#[repr(C)]` structures of the hvt ABI (x86_64).
//!
//! Names follow Solo5's C headers (`include/hvt_abi.h`, `include/mft_abi.h`,
//! `include/elf_abi.h`) so they can be checked against them line by line. Every struct
//! has an explicit layout (padding is a named field), a compile-time size assertion, and
//! derives `zerocopy` traits so that a tender can copy it out of guest memory as bytes.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `HVT_ABI_VERSION`: the hvt ABI version this crate speaks.
pub const HVT_ABI_VERSION: u32 = 2;
/// ABI target value for hvt in the ABI1 note (`HVT_ABI_TARGET`).
pub const HVT_ABI_TARGET: u32 = 1;
/// Manifest format version (`MFT_VERSION`).
pub const MFT_VERSION: u32 = 1;
/// Maximum manifest entries, including the reserved first entry (`MFT_MAX_ENTRIES`).
pub const MFT_MAX_ENTRIES: u32 = 64;
/// Maximum length of a device name, excluding the NUL (`MFT_NAME_MAX`).
pub const MFT_NAME_MAX: usize = 67;
/// Size of the name field of a manifest entry (`MFT_NAME_SIZE`).
pub const MFT_NAME_SIZE: usize = MFT_NAME_MAX + 1;

/// Manifest device type: block device (`MFT_DEV_BLOCK_BASIC`).
pub const MFT_DEV_BLOCK_BASIC: u32 = 1;
/// Manifest device type: network device (`MFT_DEV_NET_BASIC`).
pub const MFT_DEV_NET_BASIC: u32 = 2;
/// Manifest type of the mandatory first entry (`MFT_RESERVED_FIRST`).
pub const MFT_RESERVED_FIRST: u32 = 1 << 30;

/// Name of every Solo5 ELF note (`SOLO5_NOTE_NAME`), NUL included.
pub const SOLO5_NOTE_NAME: &[u8; 6] = b"Solo5\0";
/// Note type of the ABI note: "ABI1" (`SOLO5_NOTE_ABI_INFO`).
pub const SOLO5_NOTE_ABI_INFO: u32 = 0x3149_4241;
/// Note type of the manifest note: "MFT1" (`SOLO5_NOTE_MANIFEST`).
pub const SOLO5_NOTE_MANIFEST: u32 = 0x3154_464d;
/// Largest accepted ABI1 descriptor.
pub const ABI1_NOTE_DESC_MAX: u32 = 32;
/// Largest accepted MFT1 descriptor: 4 bytes of padding + a full 64-entry manifest.
#[allow(clippy::cast_possible_truncation)] // MFT_HEADER_SIZE is 8
pub const MFT1_NOTE_DESC_MAX: u32 = 4 + MFT_HEADER_SIZE as u32 + MFT_MAX_ENTRIES * 104;
/// Size of the manifest header (`version`, `entries`).
pub const MFT_HEADER_SIZE: usize = 8;

/// Lowest guest address at which ELF segments may load (`HVT_GUEST_MIN_BASE`).
pub const HVT_GUEST_MIN_BASE: u64 = 0x10_0000;
/// Guest-physical address of [`HvtBootInfo`] (`X86_BOOT_INFO_BASE`).
pub const X86_BOOT_INFO_BASE: u64 = 0x1_0000;
/// Guest-physical address of the GDT (`X86_GDT_BASE`).
pub const X86_GDT_BASE: u64 = 0x1000;
/// Guest-physical address of the PML4 (`X86_PML4_BASE`); also CR3.
pub const X86_PML4_BASE: u64 = 0x2000;
/// Guest-physical address of the PDPT (`X86_PDPTE_BASE`).
pub const X86_PDPTE_BASE: u64 = 0x3000;
/// Guest-physical address of the first of four page directories (`X86_PDE_BASE`).
pub const X86_PDE_BASE: u64 = 0x4000;
/// Guest-physical address of the page table for the first 2 MiB (`X86_PTE_BASE`).
pub const X86_PTE_BASE: u64 = 0x8000;
/// Largest guest memory: 2048 × 2 MiB = 4 GiB (`X86_GUEST_MAX_MEM_SIZE`).
pub const X86_GUEST_MAX_MEM_SIZE: u64 = 2048 * X86_GUEST_PAGE_SIZE_2M;
/// Guest memory granularity: sizes are multiples of 2 MiB.
pub const X86_GUEST_PAGE_SIZE_2M: u64 = 2 << 20;
/// Default guest memory: 512 MiB.
pub const HVT_DEFAULT_MEM_SIZE: u64 = 512 << 20;
/// Size of the command line area, NUL included (`HVT_CMDLINE_SIZE`).
pub const HVT_CMDLINE_SIZE: usize = 8192;
/// Largest HALT cookie the tender reads (`HVT_HALT_COOKIE_MAX`).
pub const HVT_HALT_COOKIE_MAX: u64 = 512;

/// First hypercall port; hypercall `nr` is an `outl` to `HVT_HYPERCALL_PIO_BASE + nr`.
pub const HVT_HYPERCALL_PIO_BASE: u16 = 0x500;
/// Hypercall: wall clock time.
pub const HVT_HYPERCALL_WALLTIME: u16 = 1;
/// Hypercall: console output.
pub const HVT_HYPERCALL_PUTS: u16 = 2;
/// Hypercall: wait for I/O or a timeout.
pub const HVT_HYPERCALL_POLL: u16 = 3;
/// Hypercall: write to a block device.
pub const HVT_HYPERCALL_BLOCK_WRITE: u16 = 4;
/// Hypercall: read from a block device.
pub const HVT_HYPERCALL_BLOCK_READ: u16 = 5;
/// Hypercall: send a network frame.
pub const HVT_HYPERCALL_NET_WRITE: u16 = 6;
/// Hypercall: receive a network frame.
pub const HVT_HYPERCALL_NET_READ: u16 = 7;
/// Hypercall: halt the guest with an exit status.
pub const HVT_HYPERCALL_HALT: u16 = 8;
/// One past the last hypercall number (`HVT_HYPERCALL_MAX`).
pub const HVT_HYPERCALL_MAX: u16 = 9;

/// Ring I/O doorbell port; only valid when the ring extension is active.
pub const HVT_RING_KICK_PIO_BASE: u16 = 0x600;
/// `host_features` bit: ring I/O is active.
pub const HVT_FEATURE_RING_IO: u32 = 1;

/// Solo5 result code: success (`SOLO5_R_OK`).
pub const SOLO5_R_OK: i32 = 0;
/// Solo5 result code: try again (`SOLO5_R_AGAIN`).
pub const SOLO5_R_AGAIN: i32 = 1;
/// Solo5 result code: invalid argument (`SOLO5_R_EINVAL`).
pub const SOLO5_R_EINVAL: i32 = 2;
/// Solo5 result code: unspecified error (`SOLO5_R_EUNSPEC`).
pub const SOLO5_R_EUNSPEC: i32 = 3;

/// Exit status of `solo5_abort()` (`SOLO5_EXIT_ABORT`).
pub const SOLO5_EXIT_ABORT: i32 = 255;

/// `struct hvt_boot_info`, placed at [`X86_BOOT_INFO_BASE`]; the guest's `_start` gets
/// its address in RDI.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct HvtBootInfo {
    /// Guest memory usable by the guest, in bytes (excludes a net ring).
    pub mem_size: u64,
    /// End of the highest loaded segment with file contents, aligned to its `p_align`.
    pub kernel_end: u64,
    /// TSC frequency in Hz.
    pub cpu_cycle_freq: u64,
    /// Guest address of the NUL-terminated command line.
    pub cmdline: u64,
    /// Guest address of the host-modified manifest copy.
    pub mft: u64,
    /// Features the host offers ([`HVT_FEATURE_RING_IO`]).
    pub host_features: u32,
    /// Features the guest uses; always 0.
    pub guest_features: u32,
    /// Guest address of the net ring, or 0.
    pub net_ring: u64,
}

/// `struct hvt_hc_walltime`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct HvtHcWalltime {
    /// OUT: `CLOCK_REALTIME` in nanoseconds.
    pub nsecs: u64,
}

/// `struct hvt_hc_puts`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct HvtHcPuts {
    /// IN: guest address of the bytes.
    pub data: u64,
    /// IN: number of bytes.
    pub len: u64,
}

/// `struct hvt_hc_poll`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct HvtHcPoll {
    /// IN: how long to wait at most, in nanoseconds.
    pub timeout_nsecs: u64,
    /// OUT: bit `h` set when the device with handle `h` is ready.
    pub ready_set: u64,
    /// OUT: number of ready devices.
    pub ret: i32,
    /// Padding to the C struct's alignment.
    pub _pad: u32,
}

/// `struct hvt_hc_block_write` / `struct hvt_hc_block_read` (same layout).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct HvtHcBlock {
    /// IN: device handle (manifest index).
    pub handle: u64,
    /// IN: byte offset on the device.
    pub offset: u64,
    /// IN: guest address of the buffer.
    pub data: u64,
    /// IN (and OUT for reads): number of bytes.
    pub len: u64,
    /// OUT: a Solo5 result code.
    pub ret: i32,
    /// Padding to the C struct's alignment.
    pub _pad: u32,
}

/// `struct hvt_hc_net_write` / `struct hvt_hc_net_read` (same layout).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct HvtHcNet {
    /// IN: device handle (manifest index).
    pub handle: u64,
    /// IN: guest address of the frame buffer.
    pub data: u64,
    /// IN: buffer size; OUT for reads: bytes received.
    pub len: u64,
    /// OUT: a Solo5 result code.
    pub ret: i32,
    /// Padding to the C struct's alignment.
    pub _pad: u32,
}

/// `struct hvt_hc_halt`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct HvtHcHalt {
    /// IN: guest address of up to [`HVT_HALT_COOKIE_MAX`] bytes (a trap frame on abort), or 0.
    pub cookie: u64,
    /// IN: the exit status.
    pub exit_status: i32,
    /// Padding to the C struct's alignment.
    pub _pad: u32,
}

/// `struct mft_entry` as laid out in memory (104 bytes). The two unions are kept as
/// bytes; [`crate::mft`] gives typed access.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct MftEntryRaw {
    /// NUL-terminated name, `[A-Za-z0-9]`, at most 67 characters.
    pub name: [u8; MFT_NAME_SIZE],
    /// Device type (`MFT_DEV_*` or [`MFT_RESERVED_FIRST`]).
    pub type_: u32,
    /// Union `u`: block `{u64 capacity; u16 block_size}` or net `{u8 mac[6]; u16 mtu}`.
    pub u: [u8; 16],
    /// Union `b`: the tender's private host fd or pointer. Zero in what the guest sees.
    pub b: u64,
    /// Set by the tender once the device is attached.
    pub attached: u8,
    /// Padding to the C struct's alignment.
    pub _pad: [u8; 7],
}

/// Byte offset of `u.block_basic.capacity` / `u.net_basic.mac` within [`MftEntryRaw`].
pub const MFT_ENTRY_U_OFFSET: usize = 72;
/// Byte offset of `u.net_basic.mtu` within [`MftEntryRaw`].
pub const MFT_ENTRY_MTU_OFFSET: usize = 78;
/// Byte offset of `u.block_basic.block_size` within [`MftEntryRaw`].
pub const MFT_ENTRY_BLOCK_SIZE_OFFSET: usize = 80;
/// Byte offset of `attached` within [`MftEntryRaw`].
pub const MFT_ENTRY_ATTACHED_OFFSET: usize = 96;
/// Size of one manifest entry.
pub const MFT_ENTRY_SIZE: usize = 104;

const _: () = assert!(size_of::<HvtBootInfo>() == 56);
const _: () = assert!(size_of::<HvtHcWalltime>() == 8);
const _: () = assert!(size_of::<HvtHcPuts>() == 16);
const _: () = assert!(size_of::<HvtHcPoll>() == 24);
const _: () = assert!(size_of::<HvtHcBlock>() == 40);
const _: () = assert!(size_of::<HvtHcNet>() == 32);
const _: () = assert!(size_of::<HvtHcHalt>() == 16);
const _: () = assert!(size_of::<MftEntryRaw>() == MFT_ENTRY_SIZE);
const _: () = assert!(core::mem::offset_of!(MftEntryRaw, type_) == 68);
const _: () = assert!(core::mem::offset_of!(MftEntryRaw, u) == MFT_ENTRY_U_OFFSET);
const _: () = assert!(core::mem::offset_of!(MftEntryRaw, b) == 88);
const _: () = assert!(core::mem::offset_of!(MftEntryRaw, attached) == MFT_ENTRY_ATTACHED_OFFSET);
const _: () = assert!(core::mem::offset_of!(HvtBootInfo, net_ring) == 48);
const _: () = assert!(core::mem::offset_of!(HvtHcPoll, ret) == 16);
const _: () = assert!(core::mem::offset_of!(HvtHcBlock, ret) == 32);
const _: () = assert!(core::mem::offset_of!(HvtHcNet, ret) == 24);
const _: () = assert!(core::mem::offset_of!(HvtHcHalt, exit_status) == 8);
const _: () = assert!(MFT1_NOTE_DESC_MAX == 6668);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_info_bytes_are_little_endian_fields_in_order() {
        let bi = HvtBootInfo {
            mem_size: 0x2000_0000,
            kernel_end: 0x10_8000,
            cpu_cycle_freq: 2_596_128_000,
            cmdline: 0x1_0038 + 8 + 104,
            mft: 0x1_0038,
            host_features: 0,
            guest_features: 0,
            net_ring: 0,
        };
        let b = bi.as_bytes();
        assert_eq!(&b[0..8], &0x2000_0000u64.to_le_bytes());
        assert_eq!(&b[32..40], &0x1_0038u64.to_le_bytes());
        assert_eq!(HvtBootInfo::read_from_bytes(b), Ok(bi));
    }

    #[test]
    fn hypercall_ports_cover_exactly_the_numbers() {
        assert_eq!(HVT_HYPERCALL_PIO_BASE + HVT_HYPERCALL_HALT, 0x508);
        assert_eq!(HVT_HYPERCALL_PIO_BASE + HVT_HYPERCALL_MAX, 0x509);
    }
}
