//! The Solo5 device manifest (`struct mft`, `MFT_VERSION` 1).
//!
//! Two sides share it:
//! - the tender: [`Manifest::parse`] validates the bytes of the MFT1 note exactly as
//!   Solo5 v0.12.1 `mft_validate` does, the command-line handlers attach devices to it
//!   ([`Manifest::attach_block`], [`Manifest::attach_net`]), and [`Manifest::write_to`]
//!   emits the copy the guest reads (`8 + entries * 104` bytes, at `hvt_boot_info.mft`);
//! - the guest: [`MftView`] reads that copy in place, without copying or validating
//!   more than it needs to stay in bounds.
//!
//! A device handle is the index of its entry. Entry 0 is always the reserved entry
//! (`MFT_RESERVED_FIRST`, empty name); "devices" are the entries whose type is below
//! `MFT_RESERVED_FIRST`, which is what upstream treats as devices.
//!
//! Upstream does not check names beyond `name[67] == 0`, so neither do we; a name is
//! the bytes before the first NUL. Names typed on a command line are
//! `[A-Za-z0-9]{1,67}`, which is how the tender will look them up.
//!
//! Contract: no function here panics, whatever the bytes.

use core::fmt;

use zerocopy::{FromBytes, IntoBytes};

use crate::abi::{
    MFT_DEV_BLOCK_BASIC, MFT_DEV_NET_BASIC, MFT_ENTRY_SIZE, MFT_HEADER_SIZE, MFT_MAX_ENTRIES,
    MFT_NAME_MAX, MFT_NAME_SIZE, MFT_RESERVED_FIRST, MFT_VERSION, MftEntryRaw,
};
use crate::elf::{le_u16, le_u32, le_u64};

/// Offset of `u.block_basic.block_size` within the `u` union.
const U_BLOCK_SIZE: usize = 8;
/// Offset of `u.net_basic.mtu` within the `u` union.
const U_MTU: usize = 6;
/// Offsets within an entry (see [`MftEntryRaw`]).
const TYPE_OFFSET: usize = MFT_NAME_SIZE;
const U_OFFSET: usize = crate::abi::MFT_ENTRY_U_OFFSET;
const ATTACHED_OFFSET: usize = crate::abi::MFT_ENTRY_ATTACHED_OFFSET;

/// A manifest entry's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    /// `MFT_DEV_BLOCK_BASIC`.
    Block,
    /// `MFT_DEV_NET_BASIC`.
    Net,
    /// `MFT_RESERVED_FIRST`: the mandatory first entry.
    ReservedFirst,
    /// Any other value.
    Other(u32),
}

impl DeviceKind {
    /// The kind for a raw `type` value.
    pub fn from_raw(raw: u32) -> Self {
        match raw {
            MFT_DEV_BLOCK_BASIC => Self::Block,
            MFT_DEV_NET_BASIC => Self::Net,
            MFT_RESERVED_FIRST => Self::ReservedFirst,
            other => Self::Other(other),
        }
    }

    /// The raw `type` value.
    pub fn to_raw(self) -> u32 {
        match self {
            Self::Block => MFT_DEV_BLOCK_BASIC,
            Self::Net => MFT_DEV_NET_BASIC,
            Self::ReservedFirst => MFT_RESERVED_FIRST,
            Self::Other(raw) => raw,
        }
    }

    /// Whether upstream counts an entry of this type as a device (`type <
    /// MFT_RESERVED_FIRST`): one that must be attached before the guest runs.
    pub fn is_device(self) -> bool {
        self.to_raw() < MFT_RESERVED_FIRST
    }
}

/// `mft_type_to_string`.
impl fmt::Display for DeviceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Block => "BLOCK_BASIC",
            Self::Net => "NET_BASIC",
            Self::ReservedFirst => "RESERVED_FIRST",
            Self::Other(_) => "<undefined type>",
        })
    }
}

/// Why a manifest was refused, or a change to it was not made.
///
/// The validation variants display as upstream's `Solo5 manifest is invalid` (after
/// the `"<file>: "` prefix) followed by the reason in parentheses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MftError {
    /// Fewer bytes than the 8-byte header.
    TooShort(usize),
    /// `version != MFT_VERSION`.
    Version(u32),
    /// `entries > MFT_MAX_ENTRIES`.
    TooManyEntries(u32),
    /// The size is not `8 + entries * 104`.
    SizeMismatch {
        /// Bytes given.
        size: usize,
        /// `entries`.
        entries: u32,
    },
    /// `entries == 0`.
    NoEntries,
    /// Entry 0 is not `MFT_RESERVED_FIRST`.
    FirstNotReserved(u32),
    /// Entry 0 has a name.
    FirstNameNotEmpty,
    /// An entry's `name[67]` is not NUL.
    NameNotTerminated(usize),
    /// An entry is already marked attached.
    Attached(usize),
    /// No entry has this handle.
    NoSuchHandle(usize),
    /// The entry with this handle is of another kind.
    WrongKind {
        /// The handle.
        handle: usize,
        /// What the caller wanted.
        expected: DeviceKind,
        /// What the entry is.
        found: DeviceKind,
    },
    /// The output buffer is too small for [`Manifest::write_to`].
    BufferTooSmall {
        /// Bytes needed.
        needed: usize,
        /// Bytes given.
        len: usize,
    },
}

impl fmt::Display for MftError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const INVALID: &str = "Solo5 manifest is invalid";
        match *self {
            Self::TooShort(size) => {
                write!(f, "{INVALID} (size {size} < {MFT_HEADER_SIZE})")
            }
            Self::Version(v) => write!(f, "{INVALID} (version {v} != {MFT_VERSION})"),
            Self::TooManyEntries(n) => {
                write!(f, "{INVALID} ({n} entries > {MFT_MAX_ENTRIES})")
            }
            Self::SizeMismatch { size, entries } => write!(
                f,
                "{INVALID} (size {size} != {MFT_HEADER_SIZE} + {entries} * {MFT_ENTRY_SIZE})"
            ),
            Self::NoEntries => write!(f, "{INVALID} (no entries)"),
            Self::FirstNotReserved(t) => {
                write!(f, "{INVALID} (entry 0 has type {t:#x}, not RESERVED_FIRST)")
            }
            Self::FirstNameNotEmpty => write!(f, "{INVALID} (entry 0 has a name)"),
            Self::NameNotTerminated(i) => {
                write!(f, "{INVALID} (entry {i}: name is not NUL-terminated)")
            }
            Self::Attached(i) => write!(f, "{INVALID} (entry {i} is marked attached)"),
            Self::NoSuchHandle(h) => write!(f, "no manifest entry with handle {h}"),
            Self::WrongKind {
                handle,
                expected,
                found,
            } => write!(f, "manifest entry {handle} is {found}, not {expected}"),
            Self::BufferTooSmall { needed, len } => {
                write!(f, "manifest needs {needed} bytes, buffer has {len}")
            }
        }
    }
}

impl core::error::Error for MftError {}

/// The bytes of a name field before its first NUL (all 68 if there is none).
fn name_bytes(name: &[u8]) -> &[u8] {
    let len = name.iter().position(|&b| b == 0).unwrap_or(name.len());
    name.get(..len).unwrap_or(name)
}

/// A name as text: the longest valid UTF-8 prefix of its bytes. Names made by
/// `solo5-elftool` are ASCII, so this only shortens hand-made oddities, for display.
fn name_str(name: &[u8]) -> &str {
    match core::str::from_utf8(name) {
        Ok(s) => s,
        Err(e) => name
            .get(..e.valid_up_to())
            .and_then(|b| core::str::from_utf8(b).ok())
            .unwrap_or(""),
    }
}

/// `strncmp(e->name, name, MFT_NAME_SIZE) == 0` for a name without NULs.
fn name_matches(field: &[u8], name: &str) -> bool {
    name.len() <= MFT_NAME_MAX && name_bytes(field) == name.as_bytes()
}

/// Typed access to the unions of a raw entry.
impl MftEntryRaw {
    /// The name's bytes before the NUL.
    pub fn name_bytes(&self) -> &[u8] {
        name_bytes(&self.name)
    }

    /// The name as text (see the module doc).
    pub fn name_str(&self) -> &str {
        name_str(self.name_bytes())
    }

    /// The entry's type.
    pub fn kind(&self) -> DeviceKind {
        DeviceKind::from_raw(self.type_)
    }

    /// Whether the tender attached it.
    pub fn is_attached(&self) -> bool {
        self.attached != 0
    }

    /// `u.block_basic.capacity`, in bytes.
    pub fn capacity(&self) -> u64 {
        le_u64(&self.u, 0).unwrap_or(0)
    }

    /// `u.block_basic.block_size`, in bytes.
    pub fn block_size(&self) -> u16 {
        le_u16(&self.u, U_BLOCK_SIZE).unwrap_or(0)
    }

    /// `u.net_basic.mac`.
    pub fn mac(&self) -> [u8; 6] {
        let mut mac = [0; 6];
        mac.copy_from_slice(self.u.get(..6).unwrap_or(&[0; 6]));
        mac
    }

    /// `u.net_basic.mtu`, in bytes.
    pub fn mtu(&self) -> u16 {
        le_u16(&self.u, U_MTU).unwrap_or(0)
    }
}

/// A validated manifest, owned and modifiable by the tender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    entries: heapless::Vec<MftEntryRaw, { MFT_MAX_ENTRIES as usize }>,
}

impl Manifest {
    /// `mft_validate`, check for check in upstream's order, then a copy of the entries.
    pub fn parse(bytes: &[u8]) -> Result<Self, MftError> {
        let size = bytes.len();
        let (Some(version), Some(count)) = (le_u32(bytes, 0), le_u32(bytes, 4)) else {
            return Err(MftError::TooShort(size));
        };
        if version != MFT_VERSION {
            return Err(MftError::Version(version));
        }
        if count > MFT_MAX_ENTRIES {
            return Err(MftError::TooManyEntries(count));
        }
        // count <= 64, so this is at most 8 + 64 * 104.
        let expected = usize::try_from(count)
            .ok()
            .and_then(|n| n.checked_mul(MFT_ENTRY_SIZE))
            .and_then(|n| n.checked_add(MFT_HEADER_SIZE));
        if expected != Some(size) {
            return Err(MftError::SizeMismatch {
                size,
                entries: count,
            });
        }
        if count < 1 {
            return Err(MftError::NoEntries);
        }
        let body = bytes.get(MFT_HEADER_SIZE..).unwrap_or_default();
        let mut entries = heapless::Vec::new();
        for chunk in body.chunks_exact(MFT_ENTRY_SIZE) {
            let entry =
                MftEntryRaw::read_from_bytes(chunk).map_err(|_| MftError::TooShort(size))?;
            entries
                .push(entry)
                .map_err(|_| MftError::TooManyEntries(count))?;
        }
        let Some(first) = entries.first() else {
            return Err(MftError::NoEntries);
        };
        if first.type_ != MFT_RESERVED_FIRST {
            return Err(MftError::FirstNotReserved(first.type_));
        }
        if first.name.first() != Some(&0) {
            return Err(MftError::FirstNameNotEmpty);
        }
        for (i, entry) in entries.iter().enumerate() {
            if entry.name.get(MFT_NAME_MAX) != Some(&0) {
                return Err(MftError::NameNotTerminated(i));
            }
            if entry.attached != 0 {
                return Err(MftError::Attached(i));
            }
        }
        Ok(Self { entries })
    }

    /// Number of entries, the reserved first one included (at least 1).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Always false for a parsed manifest (it has its reserved entry).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry with this handle.
    pub fn get(&self, handle: usize) -> Option<&MftEntryRaw> {
        self.entries.get(handle)
    }

    /// `mft_get_by_index`: the entry with this handle if it is of `kind`. This is the
    /// check a hypercall's device handle must pass.
    pub fn get_kind(&self, handle: usize, kind: DeviceKind) -> Option<&MftEntryRaw> {
        self.get(handle).filter(|e| e.type_ == kind.to_raw())
    }

    /// The first device named `name`, with its handle and kind.
    pub fn find(&self, name: &str) -> Option<(usize, DeviceKind)> {
        self.entries
            .iter()
            .enumerate()
            .find(|(_, e)| e.kind().is_device() && name_matches(&e.name, name))
            .map(|(i, e)| (i, e.kind()))
    }

    /// `mft_get_by_name`: the handle of the first entry of `kind` named `name`. This is
    /// the lookup upstream's `--block:` and `--net:` options make.
    pub fn find_kind(&self, name: &str, kind: DeviceKind) -> Option<usize> {
        self.entries
            .iter()
            .position(|e| e.type_ == kind.to_raw() && name_matches(&e.name, name))
    }

    /// The devices: `(handle, name, kind)` for every entry whose type is below
    /// `MFT_RESERVED_FIRST`, in handle order.
    pub fn devices(&self) -> impl Iterator<Item = (usize, &str, DeviceKind)> {
        self.entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.kind().is_device())
            .map(|(i, e)| (i, e.name_str(), e.kind()))
    }

    /// The devices not attached yet, `(name, kind)`: what upstream lists as `Device
    /// '%s' of type %s declared but not attached.` before refusing to run.
    pub fn unattached(&self) -> impl Iterator<Item = (&str, DeviceKind)> {
        self.entries
            .iter()
            .filter(|e| e.kind().is_device() && !e.is_attached())
            .map(|e| (e.name_str(), e.kind()))
    }

    /// The entry `handle` if it is of `kind`, for changing it.
    fn entry_mut(&mut self, handle: usize, kind: DeviceKind) -> Result<&mut MftEntryRaw, MftError> {
        let entry = self
            .entries
            .get_mut(handle)
            .ok_or(MftError::NoSuchHandle(handle))?;
        if entry.type_ != kind.to_raw() {
            return Err(MftError::WrongKind {
                handle,
                expected: kind,
                found: entry.kind(),
            });
        }
        Ok(entry)
    }

    /// Marks block device `handle` attached with its capacity and block size (both in
    /// bytes). The private `b` field is zeroed: host descriptors stay in the tender.
    pub fn attach_block(
        &mut self,
        handle: usize,
        capacity: u64,
        block_size: u16,
    ) -> Result<(), MftError> {
        let entry = self.entry_mut(handle, DeviceKind::Block)?;
        let mut u = [0u8; 16];
        let (cap, rest) = u.split_at_mut(8);
        cap.copy_from_slice(&capacity.to_le_bytes());
        if let Some(bs) = rest.get_mut(..2) {
            bs.copy_from_slice(&block_size.to_le_bytes());
        }
        entry.u = u;
        entry.b = 0;
        entry.attached = 1;
        Ok(())
    }

    /// Marks network device `handle` attached with its MAC address and MTU (bytes).
    /// The private `b` field is zeroed: host descriptors stay in the tender.
    pub fn attach_net(&mut self, handle: usize, mac: [u8; 6], mtu: u16) -> Result<(), MftError> {
        let entry = self.entry_mut(handle, DeviceKind::Net)?;
        let mut u = [0u8; 16];
        let (m, rest) = u.split_at_mut(6);
        m.copy_from_slice(&mac);
        if let Some(t) = rest.get_mut(..2) {
            t.copy_from_slice(&mtu.to_le_bytes());
        }
        entry.u = u;
        entry.b = 0;
        entry.attached = 1;
        Ok(())
    }

    /// Size of the encoded manifest: `8 + entries * 104`.
    pub fn byte_len(&self) -> usize {
        MFT_HEADER_SIZE + self.entries.len() * MFT_ENTRY_SIZE
    }

    /// Writes the manifest as the guest reads it (`struct mft`, native x86_64 layout)
    /// to the start of `out`; returns the number of bytes written, [`Self::byte_len`].
    pub fn write_to(&self, out: &mut [u8]) -> Result<usize, MftError> {
        let needed = self.byte_len();
        let len = out.len();
        let Some(dst) = out.get_mut(..needed) else {
            return Err(MftError::BufferTooSmall { needed, len });
        };
        let (header, body) = dst.split_at_mut(MFT_HEADER_SIZE);
        let count = u32::try_from(self.entries.len()).unwrap_or(MFT_MAX_ENTRIES);
        let (version, entries) = header.split_at_mut(4);
        version.copy_from_slice(&MFT_VERSION.to_le_bytes());
        entries.copy_from_slice(&count.to_le_bytes());
        for (chunk, entry) in body.chunks_exact_mut(MFT_ENTRY_SIZE).zip(&self.entries) {
            chunk.copy_from_slice(entry.as_bytes());
        }
        Ok(needed)
    }
}

/// A read-only, zero-copy view of a manifest in memory: the guest's copy at
/// `hvt_boot_info.mft`. It checks only what keeps it in bounds (the header and the
/// size); the guest trusts its tender for the rest.
#[derive(Debug, Clone, Copy)]
pub struct MftView<'a> {
    /// Exactly `8 + entries * 104` bytes.
    bytes: &'a [u8],
}

impl<'a> MftView<'a> {
    /// A view of the manifest at the start of `bytes`, which may be longer than it.
    /// `None` unless the version is `MFT_VERSION`, `entries <= MFT_MAX_ENTRIES`, and
    /// every entry is inside `bytes`.
    pub fn new(bytes: &'a [u8]) -> Option<Self> {
        if le_u32(bytes, 0)? != MFT_VERSION {
            return None;
        }
        let count = le_u32(bytes, 4)?;
        if count > MFT_MAX_ENTRIES {
            return None;
        }
        let size = usize::try_from(count)
            .ok()?
            .checked_mul(MFT_ENTRY_SIZE)?
            .checked_add(MFT_HEADER_SIZE)?;
        Some(Self {
            bytes: bytes.get(..size)?,
        })
    }

    /// Number of entries, the reserved one included.
    pub fn len(&self) -> usize {
        self.bytes.len().saturating_sub(MFT_HEADER_SIZE) / MFT_ENTRY_SIZE
    }

    /// Whether there are no entries at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The manifest's bytes.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The entry with this handle.
    pub fn entry(&self, handle: usize) -> Option<MftEntryView<'a>> {
        let start = handle
            .checked_mul(MFT_ENTRY_SIZE)?
            .checked_add(MFT_HEADER_SIZE)?;
        let bytes = self.bytes.get(start..start.checked_add(MFT_ENTRY_SIZE)?)?;
        Some(MftEntryView { bytes })
    }

    /// Every entry with its handle.
    pub fn entries(&self) -> impl Iterator<Item = (usize, MftEntryView<'a>)> + 'a {
        let view = *self;
        (0..self.len()).filter_map(move |i| Some((i, view.entry(i)?)))
    }

    /// The first device named `name`, with its handle.
    pub fn find(&self, name: &str) -> Option<(usize, MftEntryView<'a>)> {
        self.entries()
            .find(|(_, e)| e.kind().is_device() && name_matches(e.name_field(), name))
    }

    /// `mft_get_by_name`: the first entry of `kind` named `name`, with its handle (what
    /// `solo5_block_acquire` and `solo5_net_acquire` look up).
    pub fn find_kind(&self, name: &str, kind: DeviceKind) -> Option<(usize, MftEntryView<'a>)> {
        self.entries()
            .find(|(_, e)| e.kind() == kind && name_matches(e.name_field(), name))
    }
}

/// One entry of an [`MftView`]: 104 bytes read in place.
#[derive(Debug, Clone, Copy)]
pub struct MftEntryView<'a> {
    /// Exactly [`MFT_ENTRY_SIZE`] bytes.
    bytes: &'a [u8],
}

impl<'a> MftEntryView<'a> {
    fn name_field(&self) -> &'a [u8] {
        self.bytes.get(..MFT_NAME_SIZE).unwrap_or_default()
    }

    /// The name's bytes before the first NUL.
    pub fn name_bytes(&self) -> &'a [u8] {
        name_bytes(self.name_field())
    }

    /// The name as text (see the module doc).
    pub fn name(&self) -> &'a str {
        name_str(self.name_bytes())
    }

    /// The entry's type.
    pub fn kind(&self) -> DeviceKind {
        DeviceKind::from_raw(le_u32(self.bytes, TYPE_OFFSET).unwrap_or(0))
    }

    /// Whether the tender attached it.
    pub fn attached(&self) -> bool {
        self.bytes.get(ATTACHED_OFFSET).is_some_and(|&b| b != 0)
    }

    /// `u.block_basic.capacity`, in bytes.
    pub fn capacity(&self) -> u64 {
        le_u64(self.bytes, U_OFFSET).unwrap_or(0)
    }

    /// `u.block_basic.block_size`, in bytes.
    pub fn block_size(&self) -> u16 {
        le_u16(self.bytes, U_OFFSET + U_BLOCK_SIZE).unwrap_or(0)
    }

    /// `u.net_basic.mac`.
    pub fn mac(&self) -> [u8; 6] {
        let mut mac = [0; 6];
        if let Some(src) = self.bytes.get(U_OFFSET..U_OFFSET + 6) {
            mac.copy_from_slice(src);
        }
        mac
    }

    /// `u.net_basic.mtu`, in bytes.
    pub fn mtu(&self) -> u16 {
        le_u16(self.bytes, U_OFFSET + U_MTU).unwrap_or(0)
    }
}
