//! Devices: the manifest a unikernel declares ([`manifest!`](crate::manifest)) and the
//! host-modified copy of it that the tender hands over at boot (`HvtBootInfo::mft`).
//!
//! The tender fills in, for each declared device, `attached`, a block device's capacity
//! and sector size, and a net device's MAC and MTU. A device's handle, used by the
//! hypercalls, is its index in the manifest (entry 0 is the reserved first entry).
//! [`Block`] and [`Net`] apply the same argument checks as Solo5's bindings.

use hvt_abi::abi::{
    MFT_DEV_BLOCK_BASIC, MFT_DEV_NET_BASIC, MFT_ENTRY_SIZE, MFT_HEADER_SIZE, MFT_MAX_ENTRIES,
    MFT_NAME_MAX, MFT_NAME_SIZE, MFT_RESERVED_FIRST, MFT_VERSION, MftEntryRaw,
};

use crate::{Error, hypercall, start};

/// Whether `name` is a valid device name: 1 to 67 characters of `[A-Za-z0-9]`.
/// [`manifest!`](crate::manifest) checks this at compile time.
pub const fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    if b.is_empty() || b.len() > MFT_NAME_MAX {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if !b[i].is_ascii_alphanumeric() {
            return false;
        }
        i += 1;
    }
    true
}

/// Most devices a manifest can declare (64 entries less the reserved first one).
pub const MAX_DEVICES: usize = MFT_MAX_ENTRIES as usize - 1;

/// Emits the unikernel's device manifest as the Solo5 `MFT1` ELF note.
///
/// ```ignore
/// petrel_guest::manifest! {}                                  // no devices
/// petrel_guest::manifest! { net "service0", block "storage" }
/// ```
/// Each device is `net` or `block` and a name literal of 1 to 67 characters
/// `[A-Za-z0-9]`; at most 63 devices. Checked at compile time. A unikernel must use this
/// macro exactly once (the link fails without it: every hvt executable needs a
/// manifest).
///
/// The note is laid out byte for byte as Solo5's `MFT1_NOTE_DECLARE_BEGIN` emits it:
/// section alignment 4, a 20-byte note header, 4 bytes of padding so the `struct mft`
/// descriptor is 8-aligned, then `{version=1, entries=N+1}` and N+1 104-byte entries,
/// the first being the reserved one (`n_descsz = 12 + 104 * (N+1)`).
#[macro_export]
macro_rules! manifest {
    ($($kind:ident $name:literal),* $(,)?) => {
        const _: () = {
            let names: &[&str] = &[$($name),*];
            assert!(names.len() <= $crate::device::MAX_DEVICES, "too many devices, maximum 63");
            let mut i = 0;
            while i < names.len() {
                assert!(
                    $crate::device::valid_name(names[i]),
                    "device names are 1 to 67 characters [A-Za-z0-9]"
                );
                let mut j = 0;
                while j < i {
                    assert!(!$crate::device::str_eq(names[i], names[j]), "duplicate device name");
                    j += 1;
                }
                i += 1;
            }
        };
        ::core::arch::global_asm!(
            ".pushsection .note.solo5.manifest,\"a\",@note",
            ".p2align 2",
            ".globl __solo5_mft1_note",
            "__solo5_mft1_note:",
            ".long 6",                    // n_namesz: "Solo5\0"
            ".long {descsz}",             // n_descsz
            ".long 0x3154464d",           // n_type: "MFT1"
            ".asciz \"Solo5\"",
            ".zero 2",                    // name padded to 8
            ".zero 4",                    // descriptor padding: struct mft is 8-aligned
            ".long 1",                    // version (MFT_VERSION)
            ".long {entries}",            // entries
            ".zero 68",                   // e[0]: empty name,
            ".long 0x40000000",           //       MFT_RESERVED_FIRST,
            ".zero 32",                   //       u, b, attached, padding
            $(
                concat!(
                    "1: .ascii \"", $name, "\"\n",
                    ".zero 68 - (. - 1b)\n",
                    ".long ", $crate::__mft_dev_type!($kind), "\n",
                    ".zero 32",
                ),
            )*
            ".popsection",
            descsz = const 12 + 104 * (1 + <[&str]>::len(&[$($name),*])),
            entries = const 1 + <[&str]>::len(&[$($name),*]),
        );
    };
}

/// Device type number for [`manifest!`](crate::manifest); not public API.
#[doc(hidden)]
#[macro_export]
macro_rules! __mft_dev_type {
    (block) => {
        "1"
    };
    (net) => {
        "2"
    };
}

/// `str` equality usable in constants; not public API.
#[doc(hidden)]
pub const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

const _: () = assert!(MFT_DEV_BLOCK_BASIC == 1 && MFT_DEV_NET_BASIC == 2);
const _: () = assert!(MFT_RESERVED_FIRST == 0x4000_0000 && MFT_VERSION == 1);
const _: () = assert!(MFT_ENTRY_SIZE == 104 && MFT_NAME_SIZE == 68);

/// The entries of the host-modified manifest, or an empty slice if the tender handed
/// over none that makes sense.
fn entries() -> &'static [MftEntryRaw] {
    let Some(bi) = start::boot_info() else {
        return &[];
    };
    // The manifest copy sits in low memory below the guest's image; refuse anything else
    // rather than read wild memory.
    let max_size = (MFT_HEADER_SIZE + MFT_MAX_ENTRIES as usize * MFT_ENTRY_SIZE) as u64;
    let Some(base) = start::low_memory(bi.mft, max_size, 8) else {
        return &[];
    };
    // SAFETY: the tender placed the manifest header at `base` (checked above to lie in the
    // read-only low memory it owns, 8-aligned); it is never modified while we run.
    let (version, count) = unsafe {
        let header = base as *const u32;
        (header.read(), header.add(1).read())
    };
    if version != MFT_VERSION || count > MFT_MAX_ENTRIES {
        return &[];
    }
    // SAFETY: `count <= 64` entries of 104 bytes follow the header (bounds checked above
    // against low memory); MftEntryRaw is plain bytes and integers valid for any bit
    // pattern, and the memory is immutable for the rest of the run.
    unsafe {
        core::slice::from_raw_parts(
            (base + MFT_HEADER_SIZE) as *const MftEntryRaw,
            count as usize,
        )
    }
}

/// Kind of a manifest entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceKind {
    /// `BLOCK_BASIC`.
    Block,
    /// `NET_BASIC`.
    Net,
    /// The reserved first entry.
    Reserved,
    /// Any other type number.
    Other(u32),
}

/// One entry of the host-modified manifest.
#[derive(Clone, Copy, Debug)]
pub struct Device {
    index: usize,
    entry: &'static MftEntryRaw,
}

impl Device {
    /// The device's handle (its manifest index).
    pub fn handle(&self) -> u64 {
        self.index as u64
    }

    /// The name as declared (up to the first NUL).
    pub fn name(&self) -> &'static [u8] {
        let n = &self.entry.name;
        let len = n.iter().position(|&c| c == 0).unwrap_or(n.len());
        &n[..len]
    }

    /// The kind of device.
    pub fn kind(&self) -> DeviceKind {
        match self.entry.type_ {
            MFT_DEV_BLOCK_BASIC => DeviceKind::Block,
            MFT_DEV_NET_BASIC => DeviceKind::Net,
            MFT_RESERVED_FIRST => DeviceKind::Reserved,
            t => DeviceKind::Other(t),
        }
    }

    /// Whether the tender attached it (every declared device is attached when the
    /// guest runs under a conforming tender).
    pub fn attached(&self) -> bool {
        self.entry.attached != 0
    }

    fn u_bytes<const N: usize>(&self, at: usize) -> [u8; N] {
        let mut out = [0; N];
        out.copy_from_slice(&self.entry.u[at..at + N]);
        out
    }
}

/// Every entry of the manifest, the reserved first one included.
pub fn devices() -> impl Iterator<Item = Device> {
    entries()
        .iter()
        .enumerate()
        .map(|(index, entry)| Device { index, entry })
}

fn find(name: &str, kind: DeviceKind) -> Option<Device> {
    devices().find(|d| d.kind() == kind && d.attached() && d.name() == name.as_bytes())
}

/// The attached block device declared as `name`, if any.
pub fn block(name: &str) -> Option<Block> {
    let d = find(name, DeviceKind::Block)?;
    Some(Block {
        handle: d.handle(),
        capacity_bytes: u64::from_le_bytes(d.u_bytes(0)),
        block_size: u64::from(u16::from_le_bytes(d.u_bytes(8))),
    })
}

/// The attached net device declared as `name`, if any.
pub fn net(name: &str) -> Option<Net> {
    let d = find(name, DeviceKind::Net)?;
    Some(Net {
        handle: d.handle(),
        mac: d.u_bytes(0),
        mtu: u16::from_le_bytes(d.u_bytes(6)),
    })
}

/// A block device (`BLOCK_BASIC`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Block {
    handle: u64,
    capacity_bytes: u64,
    block_size: u64,
}

impl Block {
    /// The handle (manifest index) the hypercalls take.
    pub fn handle(&self) -> u64 {
        self.handle
    }

    /// Capacity in bytes.
    pub fn capacity_bytes(&self) -> u64 {
        self.capacity_bytes
    }

    /// Sector size in bytes (512 unless the tender was told otherwise).
    pub fn block_size(&self) -> u64 {
        self.block_size
    }

    /// Number of sectors.
    pub fn sectors(&self) -> u64 {
        self.capacity_bytes
            .checked_div(self.block_size)
            .unwrap_or(0)
    }

    /// Solo5's checks: the offset is sector-aligned and exactly one sector moves.
    /// Offsets past the end are the tender's to refuse.
    fn check(&self, offset_bytes: u64, len: usize) -> Result<(), Error> {
        let aligned = offset_bytes.checked_rem(self.block_size) == Some(0);
        if aligned && len as u64 == self.block_size {
            Ok(())
        } else {
            Err(Error::Invalid)
        }
    }

    /// Reads the sector at `offset_bytes` into `buf`, which must be one sector long.
    pub fn read(&self, offset_bytes: u64, buf: &mut [u8]) -> Result<(), Error> {
        self.check(offset_bytes, buf.len())?;
        Error::check(hypercall::block_read(self.handle, offset_bytes, buf))
    }

    /// Writes `buf`, one sector, at `offset_bytes`.
    pub fn write(&self, offset_bytes: u64, buf: &[u8]) -> Result<(), Error> {
        self.check(offset_bytes, buf.len())?;
        Error::check(hypercall::block_write(self.handle, offset_bytes, buf))
    }
}

/// A network device (`NET_BASIC`): Ethernet frames without FCS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Net {
    handle: u64,
    mac: [u8; 6],
    mtu: u16,
}

impl Net {
    /// The handle (manifest index) the hypercalls take.
    pub fn handle(&self) -> u64 {
        self.handle
    }

    /// The guest's MAC address, as the tender assigned it.
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// The link MTU (payload bytes; a frame is at most `mtu + 14` bytes).
    pub fn mtu(&self) -> u16 {
        self.mtu
    }

    /// This device's bit in the ready set [`crate::time::poll`] returns.
    pub fn ready_bit(&self) -> u64 {
        1u64.checked_shl(u32::try_from(self.handle).unwrap_or(u32::MAX))
            .unwrap_or(0)
    }

    /// Receives one frame into `buf` (give it at least `mtu + 14` bytes) and returns its
    /// length; [`Error::Again`] when no frame is waiting.
    pub fn read(&self, buf: &mut [u8]) -> Result<usize, Error> {
        let (ret, len) = hypercall::net_read(self.handle, buf);
        Error::check(ret).map(|()| len)
    }

    /// Sends one frame.
    pub fn write(&self, frame: &[u8]) -> Result<(), Error> {
        Error::check(hypercall::net_write(self.handle, frame))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::manifest! { net "service0", block "storage" }

    /// Size of the note `manifest!` emitted above: header, name, pad, mft, 3 entries.
    const NOTE_SIZE: usize = 12 + 8 + 4 + 8 + 3 * 104;

    #[test]
    fn manifest_note_is_laid_out_as_solo5_emits_it() {
        unsafe extern "C" {
            static __solo5_mft1_note: [u8; NOTE_SIZE];
        }
        // SAFETY: the symbol labels the NOTE_SIZE bytes `manifest!` emitted above, in a
        // read-only section that nothing writes.
        let note: &[u8; NOTE_SIZE] = unsafe { &__solo5_mft1_note };
        let word = |at: usize| u32::from_le_bytes(note[at..at + 4].try_into().unwrap());
        assert_eq!(word(0), 6);
        assert_eq!(word(4), 12 + 3 * 104);
        assert_eq!(word(8), 0x3154_464d);
        assert_eq!(&note[12..20], b"Solo5\0\0\0");
        assert_eq!(word(20), 0, "padding before the 8-aligned descriptor");
        assert_eq!((word(24), word(28)), (1, 3), "version, entries");
        let entry = |i: usize| &note[32 + 104 * i..32 + 104 * (i + 1)];
        assert_eq!(entry(0)[..68], [0; 68]);
        assert_eq!(entry(0)[68..72], 0x4000_0000u32.to_le_bytes());
        assert_eq!(entry(0)[72..], [0; 32]);
        assert_eq!(&entry(1)[..9], b"service0\0");
        assert_eq!(entry(1)[9..68], [0; 59]);
        assert_eq!(entry(1)[68..72], 2u32.to_le_bytes());
        assert_eq!(&entry(2)[..8], b"storage\0");
        assert_eq!(entry(2)[68..72], 1u32.to_le_bytes());
        assert!(
            entry(1)[72..]
                .iter()
                .chain(&entry(2)[72..])
                .all(|&b| b == 0)
        );

        // And the tender's side of the ABI accepts it: the descriptor starts at 24.
        let mft = hvt_abi::mft::Manifest::parse(&note[24..]).unwrap();
        assert_eq!(mft.len(), 3);
        let net = hvt_abi::mft::DeviceKind::from_raw(MFT_DEV_NET_BASIC);
        let blk = hvt_abi::mft::DeviceKind::from_raw(MFT_DEV_BLOCK_BASIC);
        assert_eq!(mft.find_kind("service0", net), Some(1));
        assert_eq!(mft.find_kind("storage", blk), Some(2));
    }

    #[test]
    fn names_follow_the_manifest_rules() {
        assert!(valid_name("service0"));
        assert!(valid_name(&"a".repeat(67)));
        assert!(!valid_name(&"a".repeat(68)));
        assert!(!valid_name(""));
        assert!(!valid_name("bad-name"));
        assert!(!valid_name("x\"y"));
        assert!(str_eq("b1", "b1") && !str_eq("b1", "b10"));
    }

    #[test]
    fn block_checks_alignment_and_length_like_solo5() {
        let b = Block {
            handle: 1,
            capacity_bytes: 8192,
            block_size: 4096,
        };
        assert_eq!(b.sectors(), 2);
        assert_eq!(b.check(4096, 4096), Ok(()));
        assert_eq!(b.check(512, 4096), Err(Error::Invalid));
        assert_eq!(b.check(0, 512), Err(Error::Invalid));
        // Past the end is the tender's business.
        assert_eq!(b.check(8192, 4096), Ok(()));
        let broken = Block { block_size: 0, ..b };
        assert_eq!(broken.check(0, 0), Err(Error::Invalid));
        assert_eq!(broken.sectors(), 0);
    }

    #[test]
    fn ready_bit_is_the_handle_bit() {
        let n = Net {
            handle: 3,
            mac: [0; 6],
            mtu: 1500,
        };
        assert_eq!(n.ready_bit(), 8);
        assert_eq!(Net { handle: 64, ..n }.ready_bit(), 0);
    }
}
