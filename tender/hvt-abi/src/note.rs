//! The Solo5 ELF notes: `ABI1` (which target and ABI version the executable was built
//! for) and `MFT1` (its device manifest).
//!
//! [`Elf::find_note`] follows Solo5 v0.12.1 `elf_load_note`: it looks only at the
//! *first* note of each `PT_NOTE` segment, takes the first one named `"Solo5"` with the
//! wanted type, and some malformations are fatal even when a later segment would have
//! matched (a `PT_NOTE` too small for any note header, a wanted note with a bad size).
//! The descriptor alignment is a property of the note's C type (`ABI1_NOTE_ALIGN`,
//! `MFT1_NOTE_ALIGN`), not the segment's `p_align`; the bytes between the 20-byte header
//! and that alignment count in `n_descsz` but are not part of the returned data.
//!
//! Contract: no function here panics, whatever the bytes.

use core::fmt;

use crate::abi::{
    ABI1_NOTE_DESC_MAX, HVT_ABI_TARGET, HVT_ABI_VERSION, MFT1_NOTE_DESC_MAX, SOLO5_NOTE_ABI_INFO,
    SOLO5_NOTE_MANIFEST, SOLO5_NOTE_NAME,
};
use crate::elf::{Elf, PT_NOTE, Pread, le_u32, pread};

/// `sizeof(Elf64_Nhdr)`: `n_namesz`, `n_descsz`, `n_type`.
pub const ELF64_NHDR_SIZE: u64 = 12;
/// `sizeof(struct solo5_nhdr)`: the note header plus `"Solo5\0"` padded to 8 bytes.
pub const SOLO5_NHDR_SIZE: u64 = 20;
/// Alignment of the ABI1 descriptor, `struct abi1_info` (`ABI1_NOTE_ALIGN`).
pub const ABI1_NOTE_ALIGN: u64 = 4;
/// Alignment of the MFT1 descriptor, `struct mft` (`MFT1_NOTE_ALIGN`): it holds
/// 64-bit fields, so 4 bytes of padding precede it.
pub const MFT1_NOTE_ALIGN: u64 = 8;

/// Why a note could not be used.
///
/// `Display` gives upstream's text after its `"<file>: "` prefix, like
/// [`crate::elf::ElfError`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoteError {
    /// A `PT_NOTE` segment is smaller than a note header (fatal even if it is not ours).
    SegmentTooSmall {
        /// Program header index.
        index: u16,
        /// Its `p_filesz`.
        filesz: u64,
    },
    /// The note header's offset does not fit an `off_t`.
    HeaderReadFailed {
        /// Program header index.
        index: u16,
    },
    /// The note header runs past the end of the file.
    HeaderRead {
        /// Program header index.
        index: u16,
        /// Bytes available.
        read: u64,
    },
    /// The wanted note's `n_descsz` is 0 or above the maximum for its type.
    DescSize {
        /// Program header index.
        index: u16,
        /// `n_descsz`.
        descsz: u32,
        /// The maximum.
        max: u32,
    },
    /// The wanted note's descriptor does not fit in its segment's `p_filesz`.
    SegmentSize {
        /// Program header index.
        index: u16,
        /// `p_filesz`.
        filesz: u64,
        /// `20 + n_descsz`.
        needed: u64,
    },
    /// `n_descsz` does not even cover the alignment padding.
    PaddedSize {
        /// Program header index.
        index: u16,
        /// `n_descsz - padding`, wrapped as upstream computes it.
        size: u64,
        /// `n_descsz`.
        descsz: u32,
    },
    /// The descriptor's offset does not fit an `off_t`.
    DescReadFailed {
        /// Program header index.
        index: u16,
    },
    /// The descriptor runs past the end of the file.
    DescRead {
        /// Program header index.
        index: u16,
        /// Bytes available.
        read: u64,
        /// Descriptor bytes wanted.
        size: u64,
    },
    /// A note alignment that is not a non-zero power of 2 was asked for (a caller bug).
    BadAlign(u64),
    /// There is no ABI1 note.
    NoAbiInfo,
    /// The ABI1 note names another target.
    WrongTarget(u32),
    /// The ABI1 note asks for another ABI version.
    UnsupportedVersion(u32),
    /// There is no MFT1 note.
    NoManifest,
}

impl fmt::Display for NoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const INV_EXE: &str = "invalid executable";
        match *self {
            Self::SegmentTooSmall { index, filesz } => write!(
                f,
                "{INV_EXE}: phdr[{index}].p_filesz note does not fall within valid size ({filesz} < {ELF64_NHDR_SIZE})"
            ),
            Self::HeaderReadFailed { index } => {
                write!(f, "phdr[{index}] pread_in_full returned {}", u64::MAX)
            }
            Self::HeaderRead { index, read } => write!(
                f,
                "phdr[{index}] bytes read mismatches note size ({read} != {SOLO5_NHDR_SIZE})"
            ),
            Self::DescSize { index, descsz, max } => write!(
                f,
                "{INV_EXE}: phdr[{index}] note does not fall within valid size ({descsz} < 1 || {descsz} > {max})"
            ),
            Self::SegmentSize {
                index,
                filesz,
                needed,
            } => write!(
                f,
                "{INV_EXE}: phdr[{index}] note does not fall within valid size ({filesz} < {needed})"
            ),
            // Upstream prints a literal "INV_EXE" here (a missing %s); we print the
            // text the macro stands for.
            Self::PaddedSize {
                index,
                size,
                descsz,
            } => write!(
                f,
                "{INV_EXE}: phdr[{index}] note does not fall within valid size ({size} <= 0 || {size} > {descsz})"
            ),
            Self::DescReadFailed { index } => write!(
                f,
                "phdr[{index}] pread_in_full for note_data returned {} < 0",
                u64::MAX
            ),
            Self::DescRead { index, read, size } => write!(
                f,
                "phdr[{index}] bytes read mismatches note size ({read} != {size})"
            ),
            Self::BadAlign(align) => write!(f, "note alignment {align} is not a power of 2"),
            Self::NoAbiInfo => f.write_str("No Solo5 ABI information found in executable"),
            Self::WrongTarget(_) => f.write_str("Executable is not for the solo5-hvt target"),
            Self::UnsupportedVersion(version) => {
                write!(f, "Executable requests unsupported ABI version {version}")
            }
            Self::NoManifest => f.write_str("No Solo5 manifest found in executable"),
        }
    }
}

impl core::error::Error for NoteError {}

/// The ABI1 descriptor (`struct abi1_info`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbiInfo {
    /// `abi_target` (`HVT_ABI_TARGET` = 1 for hvt).
    pub target: u32,
    /// `abi_version`.
    pub version: u32,
}

impl AbiInfo {
    /// Decodes a descriptor. Upstream reads the two fields from a buffer of `n_descsz`
    /// bytes even when it is shorter than 8 (reading past it); here the missing bytes
    /// read as zero.
    pub fn decode(desc: &[u8]) -> Self {
        let mut raw = [0u8; 8];
        for (dst, src) in raw.iter_mut().zip(desc) {
            *dst = *src;
        }
        let (target, version) = raw.split_at(4);
        Self {
            target: u32::from_le_bytes(target.try_into().unwrap_or_default()),
            version: u32::from_le_bytes(version.try_into().unwrap_or_default()),
        }
    }
}

/// The checks `solo5-hvt` makes on the ABI1 note, in its order: target, then version.
pub fn check_hvt_abi(info: &AbiInfo) -> Result<(), NoteError> {
    if info.target != HVT_ABI_TARGET {
        return Err(NoteError::WrongTarget(info.target));
    }
    if info.version != HVT_ABI_VERSION {
        return Err(NoteError::UnsupportedVersion(info.version));
    }
    Ok(())
}

impl<'a> Elf<'a> {
    /// `elf_load_note`: the descriptor of the first Solo5 note of type `n_type`, with
    /// the padding up to `note_align` removed, or `Ok(None)` if there is none.
    /// `desc_max` bounds `n_descsz` (padding included).
    pub fn find_note(
        &self,
        n_type: u32,
        note_align: u64,
        desc_max: u32,
    ) -> Result<Option<&'a [u8]>, NoteError> {
        if !note_align.is_power_of_two() {
            return Err(NoteError::BadAlign(note_align));
        }
        let file = self.file();
        for (index, ph) in self.phdrs() {
            if ph.p_type != PT_NOTE {
                continue;
            }
            if ph.p_filesz < ELF64_NHDR_SIZE {
                return Err(NoteError::SegmentTooSmall {
                    index,
                    filesz: ph.p_filesz,
                });
            }
            if ph.p_filesz < SOLO5_NHDR_SIZE {
                continue;
            }
            let nhdr = match pread(file, ph.p_offset, SOLO5_NHDR_SIZE) {
                Pread::Full(b) => b,
                Pread::Short(read) => return Err(NoteError::HeaderRead { index, read }),
                Pread::Failed => return Err(NoteError::HeaderReadFailed { index }),
            };
            let (Some(namesz), Some(descsz), Some(ty)) =
                (le_u32(nhdr, 0), le_u32(nhdr, 4), le_u32(nhdr, 8))
            else {
                continue;
            };
            // `strncmp(n_name, "Solo5", 6)`: equal only if the NUL is there too.
            if u64::from(namesz) != SOLO5_NOTE_NAME.len() as u64
                || nhdr.get(12..18) != Some(&SOLO5_NOTE_NAME[..])
                || ty != n_type
            {
                continue;
            }
            if descsz < 1 || descsz > desc_max {
                return Err(NoteError::DescSize {
                    index,
                    descsz,
                    max: desc_max,
                });
            }
            let needed = SOLO5_NHDR_SIZE + u64::from(descsz);
            if ph.p_filesz < needed {
                return Err(NoteError::SegmentSize {
                    index,
                    filesz: ph.p_filesz,
                    needed,
                });
            }
            return read_desc(file, index, ph.p_offset, descsz, note_align).map(Some);
        }
        Ok(None)
    }

    /// The ABI1 note's descriptor, decoded. It is not checked against hvt yet: see
    /// [`check_hvt_abi`].
    pub fn abi_info(&self) -> Result<AbiInfo, NoteError> {
        self.find_note(SOLO5_NOTE_ABI_INFO, ABI1_NOTE_ALIGN, ABI1_NOTE_DESC_MAX)?
            .map(AbiInfo::decode)
            .ok_or(NoteError::NoAbiInfo)
    }

    /// The MFT1 note's descriptor: the manifest bytes, `n_descsz - 4` of them, for
    /// [`crate::mft::Manifest::parse`].
    pub fn manifest_note(&self) -> Result<&'a [u8], NoteError> {
        self.find_note(SOLO5_NOTE_MANIFEST, MFT1_NOTE_ALIGN, MFT1_NOTE_DESC_MAX)?
            .ok_or(NoteError::NoManifest)
    }
}

/// Reads the descriptor after the 20-byte header, skipping the padding to `note_align`.
fn read_desc(
    file: &[u8],
    index: u16,
    p_offset: u64,
    descsz: u32,
    note_align: u64,
) -> Result<&[u8], NoteError> {
    let mask = note_align.saturating_sub(1);
    // note_align <= 2^63, so this only overflows for absurd alignments; treat those
    // like a descriptor too small for its padding.
    let offset = SOLO5_NHDR_SIZE.checked_add(mask).map(|o| o & !mask);
    let pad = offset.map_or(u64::MAX, |o| o - SOLO5_NHDR_SIZE);
    let size = u64::from(descsz).wrapping_sub(pad);
    if size == 0 || size > u64::from(descsz) {
        return Err(NoteError::PaddedSize {
            index,
            size,
            descsz,
        });
    }
    let Some(start) = offset.and_then(|o| p_offset.checked_add(o)) else {
        return Err(NoteError::DescReadFailed { index });
    };
    match pread(file, start, size) {
        Pread::Full(bytes) => Ok(bytes),
        Pread::Short(read) => Err(NoteError::DescRead { index, read, size }),
        Pread::Failed => Err(NoteError::DescReadFailed { index }),
    }
}
