//! Validation of an hvt executable (ELF64, x86_64) as `solo5-hvt` checks it.
//!
//! The checks, their order and their messages follow Solo5 v0.12.1
//! `tenders/common/elf.c`: [`Elf::parse`] does what both `elf_load_note` and
//! `elf_load` do first (read and check the ELF header, read the program header
//! table), [`Elf::segments`] walks the loadable segments with every check `elf_load`
//! makes before it copies or protects a segment, and [`Elf::load_plan`] adds the entry
//! point check and computes `kernel_end`.
//!
//! The whole file is one byte slice. A `pread` past the end of the file is modelled as
//! the short read it would be, so error messages carry the same byte counts as
//! upstream's.
//!
//! Contract: no function here panics, whatever the bytes.

use core::fmt;
use core::ops::Range;

use crate::abi::HVT_GUEST_MIN_BASE;

/// `e_ident[EI_MAG0..=EI_MAG3]`: the ELF magic.
pub const ELFMAG: &[u8; 4] = b"\x7fELF";
/// `e_ident[EI_CLASS]` for 64-bit objects.
pub const ELFCLASS64: u8 = 2;
/// `e_ident[EI_DATA]` for little-endian objects.
pub const ELFDATA2LSB: u8 = 1;
/// `e_version` of a current ELF file.
pub const EV_CURRENT: u32 = 1;
/// `e_type` of an executable.
pub const ET_EXEC: u16 = 2;
/// `e_machine` for x86_64.
pub const EM_X86_64: u16 = 62;
/// `p_type` of a loadable segment.
pub const PT_LOAD: u32 = 1;
/// `p_type` of a note segment.
pub const PT_NOTE: u32 = 4;
/// `p_flags` bit: executable.
pub const PF_X: u32 = 1;
/// `p_flags` bit: writable.
pub const PF_W: u32 = 2;
/// `p_flags` bit: readable.
pub const PF_R: u32 = 4;
/// Architectural page size that protected ranges must be aligned to (`EM_PAGE_SIZE`).
pub const EM_PAGE_SIZE: u64 = 0x1000;
/// `sizeof(Elf64_Ehdr)`.
pub const ELF64_EHDR_SIZE: usize = 64;
/// `sizeof(Elf64_Phdr)`.
pub const ELF64_PHDR_SIZE: usize = 56;

/// What a `pread_in_full` of a range of the file would return.
pub(crate) enum Pread<'a> {
    /// Every byte asked for.
    Full(&'a [u8]),
    /// End of file came first: this many bytes were read.
    Short(u64),
    /// `pread` itself failed (the offset does not fit an `off_t`: `EINVAL`).
    Failed,
}

/// Reads `count` bytes at `offset` of `file` as `pread_in_full` would.
pub(crate) fn pread(file: &[u8], offset: u64, count: u64) -> Pread<'_> {
    if offset > i64::MAX.unsigned_abs() {
        return Pread::Failed;
    }
    let len = u64::try_from(file.len()).unwrap_or(u64::MAX);
    let available = len.saturating_sub(offset);
    if available < count {
        return Pread::Short(available);
    }
    let range = usize::try_from(offset)
        .ok()
        .and_then(|start| Some(start..start.checked_add(usize::try_from(count).ok()?)?));
    match range.and_then(|r| file.get(r)) {
        Some(bytes) => Pread::Full(bytes),
        None => Pread::Short(available),
    }
}

/// Little-endian `u16` at `off`, if the bytes are there.
pub(crate) fn le_u16(bytes: &[u8], off: usize) -> Option<u16> {
    let b = bytes.get(off..off.checked_add(2)?)?;
    Some(u16::from_le_bytes(b.try_into().ok()?))
}

/// Little-endian `u32` at `off`, if the bytes are there.
pub(crate) fn le_u32(bytes: &[u8], off: usize) -> Option<u32> {
    let b = bytes.get(off..off.checked_add(4)?)?;
    Some(u32::from_le_bytes(b.try_into().ok()?))
}

/// Little-endian `u64` at `off`, if the bytes are there.
pub(crate) fn le_u64(bytes: &[u8], off: usize) -> Option<u64> {
    let b = bytes.get(off..off.checked_add(8)?)?;
    Some(u64::from_le_bytes(b.try_into().ok()?))
}

/// `%zu` of a failed `ssize_t` read (-1), as upstream prints it.
const PREAD_FAILED: u64 = u64::MAX;

/// Why an executable was refused.
///
/// `Display` gives upstream's text after its `"<file>: "` prefix, so a tender prints
/// `"{path}: {err}"` (after its own program-name prefix, as `warnx` does) to reproduce
/// `solo5-hvt`'s line. Numbers are printed in decimal, as upstream's `%llu` does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ElfError {
    /// The file is shorter than an ELF header.
    HeaderSize {
        /// Bytes available (what the short read returned).
        read: u64,
    },
    /// The ELF header is not an x86_64 ELF64 little-endian executable with the expected
    /// header sizes and at least one program header.
    HeaderInvalid,
    /// The program header table offset does not fit an `off_t`.
    PhdrReadFailed,
    /// The program header table runs past the end of the file.
    PhdrSize {
        /// Bytes available.
        read: u64,
        /// `e_phnum * e_phentsize`.
        expected: u64,
    },
    /// `e_entry` is not in `[HVT_GUEST_MIN_BASE, mem_size)`.
    Entry {
        /// `e_entry`.
        entry: u64,
        /// Guest memory size.
        mem_size: u64,
    },
    /// `p_vaddr` is below [`HVT_GUEST_MIN_BASE`].
    VaddrBelowMin {
        /// Program header index.
        index: u16,
        /// `p_vaddr`.
        vaddr: u64,
    },
    /// `p_vaddr` is below the previous loadable segment's.
    NotAscending {
        /// Program header index.
        index: u16,
        /// `p_vaddr`.
        vaddr: u64,
        /// The previous loadable segment's `p_vaddr`.
        last_vaddr: u64,
    },
    /// `p_align` is not a non-zero power of 2.
    AlignDown {
        /// Program header index.
        index: u16,
        /// `p_vaddr`.
        vaddr: u64,
        /// `p_align`.
        align: u64,
    },
    /// `p_vaddr` aligned down to `p_align` is below [`HVT_GUEST_MIN_BASE`].
    StartBelowMin {
        /// Program header index.
        index: u16,
        /// `p_vaddr` aligned down.
        start: u64,
    },
    /// The segment overlaps the end of the previous one.
    Overlap {
        /// Program header index.
        index: u16,
        /// `p_vaddr` aligned down.
        start: u64,
        /// End of the segments so far (aligned up).
        end: u64,
    },
    /// `p_vaddr >= mem_size`.
    VaddrBeyondMem {
        /// Program header index.
        index: u16,
        /// `p_vaddr`.
        vaddr: u64,
        /// Guest memory size.
        mem_size: u64,
    },
    /// `p_vaddr + p_filesz` overflows.
    FileEndOverflow {
        /// Program header index.
        index: u16,
        /// `p_vaddr`.
        vaddr: u64,
        /// `p_filesz`.
        filesz: u64,
    },
    /// `p_vaddr + p_filesz > mem_size`.
    FileEndBeyondMem {
        /// Program header index.
        index: u16,
        /// `p_vaddr + p_filesz`.
        end: u64,
        /// Guest memory size.
        mem_size: u64,
    },
    /// `p_memsz < p_filesz`.
    MemszBelowFilesz {
        /// Program header index.
        index: u16,
        /// `p_memsz`.
        memsz: u64,
        /// `p_filesz`.
        filesz: u64,
    },
    /// `p_vaddr + p_memsz` overflows.
    MemEndOverflow {
        /// Program header index.
        index: u16,
        /// `p_vaddr`.
        vaddr: u64,
        /// `p_memsz`.
        memsz: u64,
    },
    /// `p_vaddr + p_memsz` aligned up to `p_align` overflows.
    AlignUp {
        /// Program header index.
        index: u16,
        /// `p_vaddr + p_memsz`.
        end: u64,
        /// `p_align`.
        align: u64,
    },
    /// `p_vaddr + p_memsz` aligned up is beyond `mem_size`.
    MemEndBeyondMem {
        /// Program header index.
        index: u16,
        /// `p_vaddr + p_memsz`, aligned up.
        end: u64,
        /// Guest memory size.
        mem_size: u64,
    },
    /// `p_offset` does not fit an `off_t`.
    SegmentReadFailed {
        /// Program header index.
        index: u16,
    },
    /// `[p_offset, p_offset + p_filesz)` runs past the end of the file.
    SegmentRead {
        /// Program header index.
        index: u16,
        /// Bytes available.
        read: u64,
        /// `p_filesz`.
        filesz: u64,
    },
    /// The aligned start is not page aligned.
    StartUnaligned {
        /// Program header index.
        index: u16,
        /// `p_vaddr` aligned down.
        start: u64,
    },
    /// The aligned end is not page aligned.
    EndUnaligned {
        /// Program header index.
        index: u16,
        /// `p_vaddr + p_memsz` aligned up.
        end: u64,
    },
    /// The segment is both writable and executable.
    WriteExec {
        /// Program header index.
        index: u16,
    },
}

/// Upstream's `INV_EXE`, which most messages start with.
const INV_EXE: &str = "invalid executable";

impl fmt::Display for ElfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const MIN: u64 = HVT_GUEST_MIN_BASE;
        const PAGE: u64 = EM_PAGE_SIZE;
        match *self {
            Self::HeaderSize { read } => write!(
                f,
                "{INV_EXE}: elf header does not match the expected size ({read} != {ELF64_EHDR_SIZE})"
            ),
            Self::HeaderInvalid => write!(
                f,
                "{INV_EXE}: invalid or unsupported executable (elf header invalid while loading note)"
            ),
            Self::PhdrReadFailed => write!(
                f,
                "pread_in_full for ph_size returned {PREAD_FAILED} < 0 while loading note"
            ),
            Self::PhdrSize { read, expected } => write!(
                f,
                "{INV_EXE}: program header does not match the expected size ({read} != {expected} while loading note)"
            ),
            Self::Entry { entry, mem_size } => write!(
                f,
                "{INV_EXE}: e_entry does not fall within the memory allocation range ({entry} < {MIN} || {entry} >= {mem_size})"
            ),
            Self::VaddrBelowMin { index, vaddr } => write!(
                f,
                "{INV_EXE}: phdr[{index}].p_vaddr outside of valid memory range ({vaddr} < {MIN})"
            ),
            Self::NotAscending {
                index,
                vaddr,
                last_vaddr,
            } => write!(
                f,
                "{INV_EXE}: phdr[{index}].p_vaddr is not in ascending order ({vaddr} < {last_vaddr})"
            ),
            Self::AlignDown {
                index,
                vaddr,
                align,
            } => write!(
                f,
                "{INV_EXE}: phdr[{index}].p_vaddr is outside of memory range (align_down with {vaddr} (p_vaddr) and {align} (p_align) failed)"
            ),
            Self::StartBelowMin { index, start } => write!(
                f,
                "{INV_EXE}: phdr[{index}].p_vaddr_start is outside of memory range ({start} < {MIN} (p_min_loadaddr))"
            ),
            Self::Overlap { index, start, end } => write!(
                f,
                "{INV_EXE}: phdr[{index}].p_vaddr_start is outside of memory range ({start} < {end} (e_end))"
            ),
            Self::VaddrBeyondMem {
                index,
                vaddr,
                mem_size,
            } => write!(
                f,
                "{INV_EXE}: phdr[{index}] program file segment falls outside of valid range ({vaddr} >= {mem_size} (mem_size))"
            ),
            Self::FileEndOverflow {
                index,
                vaddr,
                filesz,
            } => write!(
                f,
                "{INV_EXE}: phdr[{index}] program file segment falls outside of valid range ({vaddr} (p_vaddr) + {filesz} (p_filesz) overflow)"
            ),
            Self::FileEndBeyondMem {
                index,
                end,
                mem_size,
            } => write!(
                f,
                "{INV_EXE}: phdr[{index}] program file segment falls outside of valid range ({end} (p_vaddr + p_filesz) > {mem_size} (mem_size))"
            ),
            Self::MemszBelowFilesz {
                index,
                memsz,
                filesz,
            } => write!(
                f,
                "{INV_EXE}: phdr[{index}] program memory segment falls outside of valid range ({memsz} (p_memsz) < {filesz} (p_filesz))"
            ),
            Self::MemEndOverflow {
                index,
                vaddr,
                memsz,
            } => write!(
                f,
                "{INV_EXE}: phdr[{index}] program memory segment falls outside of valid range ({vaddr} (p_vaddr) + {memsz} (p_memsz) overflow)"
            ),
            Self::AlignUp { index, end, align } => write!(
                f,
                "{INV_EXE}: phdr[{index}] program memory segment falls outside of valid range (align_up with {end} (p_vaddr_end) and {align} (p_align) failed)"
            ),
            Self::MemEndBeyondMem {
                index,
                end,
                mem_size,
            } => write!(
                f,
                "{INV_EXE}: phdr[{index}] program memory segment falls outside of valid range ({end} (p_vaddr + p_memsz) > {mem_size} (mem_size))"
            ),
            Self::SegmentReadFailed { index } => {
                write!(f, "phdr[{index}] pread_in_full returned {PREAD_FAILED}")
            }
            Self::SegmentRead {
                index,
                read,
                filesz,
            } => write!(
                f,
                "phdr[{index}] host file segment mismatched (pread_in_full returned {read} != {filesz} (p_filesz))"
            ),
            Self::StartUnaligned { index, start } => write!(
                f,
                "{INV_EXE}: phdr[{index}] p_vaddr_start not aligned with architectural page size ({start} & ({PAGE} - 1))"
            ),
            Self::EndUnaligned { index, end } => write!(
                f,
                "{INV_EXE}: phdr[{index}] p_vaddr_end not aligned with architectural page size ({end} & ({PAGE} - 1))"
            ),
            Self::WriteExec { index } => {
                write!(
                    f,
                    "{INV_EXE}: phdr[{index}] requests WRITE and EXEC permissions"
                )
            }
        }
    }
}

impl core::error::Error for ElfError {}

/// One program header (`Elf64_Phdr`), decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Phdr {
    /// Segment type (`PT_*`).
    pub p_type: u32,
    /// Segment flags (`PF_*`).
    pub p_flags: u32,
    /// File offset of the segment's bytes.
    pub p_offset: u64,
    /// Guest virtual (= physical) address.
    pub p_vaddr: u64,
    /// Physical address (unused by hvt).
    pub p_paddr: u64,
    /// Bytes in the file.
    pub p_filesz: u64,
    /// Bytes in memory (the tail past `p_filesz` is zeroed).
    pub p_memsz: u64,
    /// Alignment.
    pub p_align: u64,
}

impl Phdr {
    /// Decodes one 56-byte program header; `None` if `bytes` is shorter.
    fn decode(bytes: &[u8]) -> Option<Self> {
        Some(Self {
            p_type: le_u32(bytes, 0)?,
            p_flags: le_u32(bytes, 4)?,
            p_offset: le_u64(bytes, 8)?,
            p_vaddr: le_u64(bytes, 16)?,
            p_paddr: le_u64(bytes, 24)?,
            p_filesz: le_u64(bytes, 32)?,
            p_memsz: le_u64(bytes, 40)?,
            p_align: le_u64(bytes, 48)?,
        })
    }
}

/// An ELF file whose header and program header table passed upstream's checks.
#[derive(Debug, Clone, Copy)]
pub struct Elf<'a> {
    file: &'a [u8],
    entry: u64,
    /// The program header table: exactly `phnum * ELF64_PHDR_SIZE` bytes.
    phdrs: &'a [u8],
    phnum: u16,
}

/// `ehdr_is_valid`: every check on the header itself, in upstream's order (they all
/// give the same error). `EI_OSABI` and `EI_ABIVERSION` are deliberately not checked.
fn ehdr_is_valid(ehdr: &[u8]) -> bool {
    let ident_ok = ehdr.get(..4) == Some(&ELFMAG[..])
        && ehdr.get(4) == Some(&ELFCLASS64)
        && ehdr.get(5) == Some(&ELFDATA2LSB)
        && le_u32(ehdr, 20) == Some(EV_CURRENT);
    ident_ok
        && le_u16(ehdr, 52) == Some(64) // e_ehsize
        && le_u16(ehdr, 56).is_some_and(|n| n >= 1) // e_phnum
        && le_u16(ehdr, 54) == Some(56) // e_phentsize
        && le_u16(ehdr, 16) == Some(ET_EXEC)
        && le_u16(ehdr, 18) == Some(EM_X86_64)
}

impl<'a> Elf<'a> {
    /// Checks the ELF header and reads the program header table, as `elf_load_note`
    /// does before it looks for notes (the first thing the tender does with a file).
    pub fn parse(file: &'a [u8]) -> Result<Self, ElfError> {
        let ehdr = match pread(file, 0, 64) {
            Pread::Full(b) => b,
            Pread::Short(read) => return Err(ElfError::HeaderSize { read }),
            Pread::Failed => return Err(ElfError::HeaderSize { read: 0 }),
        };
        if !ehdr_is_valid(ehdr) {
            return Err(ElfError::HeaderInvalid);
        }
        let (Some(entry), Some(phoff), Some(phnum)) =
            (le_u64(ehdr, 24), le_u64(ehdr, 32), le_u16(ehdr, 56))
        else {
            return Err(ElfError::HeaderInvalid);
        };
        // e_phentsize is 56 (checked), so this cannot overflow.
        let ph_size = u64::from(phnum) * 56;
        let phdrs = match pread(file, phoff, ph_size) {
            Pread::Full(b) => b,
            Pread::Short(read) => {
                return Err(ElfError::PhdrSize {
                    read,
                    expected: ph_size,
                });
            }
            Pread::Failed => return Err(ElfError::PhdrReadFailed),
        };
        Ok(Self {
            file,
            entry,
            phdrs,
            phnum,
        })
    }

    /// `e_entry`.
    pub fn entry(&self) -> u64 {
        self.entry
    }

    /// The whole file.
    pub fn file(&self) -> &'a [u8] {
        self.file
    }

    /// `e_phnum` (at least 1).
    pub fn phnum(&self) -> u16 {
        self.phnum
    }

    /// Program header `index`, or `None` past `e_phnum`.
    pub fn phdr(&self, index: u16) -> Option<Phdr> {
        let start = usize::from(index).checked_mul(ELF64_PHDR_SIZE)?;
        let bytes = self.phdrs.get(start..start.checked_add(ELF64_PHDR_SIZE)?)?;
        Phdr::decode(bytes)
    }

    /// All program headers with their indices, in file order.
    pub fn phdrs(&self) -> impl Iterator<Item = (u16, Phdr)> + 'a {
        let elf = *self;
        (0..self.phnum).filter_map(move |i| Some((i, elf.phdr(i)?)))
    }

    /// The loadable segments (`PT_LOAD` with `p_filesz != 0`; the others are skipped
    /// entirely, as upstream does), each checked against a guest memory of `mem_size`
    /// bytes. The iterator stops after the first error.
    ///
    /// Upstream passes the tender's whole guest memory size here, which includes a net
    /// ring if one will be reserved (`elf_load` runs before `hvt_net_reserve_ring`).
    pub fn segments(&self, mem_size: u64) -> Segments<'a> {
        Segments {
            elf: *self,
            mem_size,
            next: 0,
            last_vaddr: 0,
            end: 0,
            failed: false,
        }
    }

    /// The file bytes of a segment from [`Elf::segments`]: `p_filesz` bytes at
    /// `p_offset`. Empty if `segment` did not come from this file.
    pub fn segment_data(&self, segment: &Segment) -> &'a [u8] {
        match pread(self.file, segment.file_offset, segment.filesz) {
            Pread::Full(bytes) => bytes,
            Pread::Short(_) | Pread::Failed => &[],
        }
    }

    /// Everything `elf_load` checks, in its order: the entry point against
    /// `[HVT_GUEST_MIN_BASE, mem_size)`, then every loadable segment. The tender then
    /// walks [`Elf::segments`] again to copy and protect them.
    pub fn load_plan(&self, mem_size: u64) -> Result<LoadPlan, ElfError> {
        if self.entry < HVT_GUEST_MIN_BASE || self.entry >= mem_size {
            return Err(ElfError::Entry {
                entry: self.entry,
                mem_size,
            });
        }
        let mut segments = self.segments(mem_size);
        for segment in segments.by_ref() {
            segment?;
        }
        Ok(LoadPlan {
            entry: self.entry,
            kernel_end: segments.kernel_end(),
        })
    }
}

/// Host-side protection of a loaded segment, as `hvt_guest_mprotect` applies it.
///
/// KVM does not enforce guest execute permissions, and the host never executes guest
/// memory: executable segments are mapped readable instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prot {
    /// No `PF_*` flag at all: `PROT_NONE`.
    None,
    /// `PF_R`, `PF_X` or `PF_R|PF_X`: `PROT_READ`.
    Read,
    /// `PF_W` alone: `PROT_WRITE` (which x86 page tables cannot express without read).
    Write,
    /// `PF_R|PF_W`: `PROT_READ|PROT_WRITE`.
    ReadWrite,
}

impl Prot {
    /// The protection for `p_flags` (W+X is refused before this is used).
    pub fn from_flags(p_flags: u32) -> Self {
        let read = p_flags & (PF_R | PF_X) != 0;
        let write = p_flags & PF_W != 0;
        match (read, write) {
            (false, false) => Self::None,
            (true, false) => Self::Read,
            (false, true) => Self::Write,
            (true, true) => Self::ReadWrite,
        }
    }
}

/// A loadable segment that passed every check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Program header index.
    pub index: u16,
    /// `p_offset`: where its bytes are in the file.
    pub file_offset: u64,
    /// `p_vaddr`: where they go in guest memory.
    pub vaddr: u64,
    /// `p_filesz`: bytes to copy (never 0).
    pub filesz: u64,
    /// `p_memsz`: bytes occupied; `[vaddr + filesz, vaddr + memsz)` is zeroed.
    pub memsz: u64,
    /// `p_align`: a power of 2.
    pub align: u64,
    /// Host-side protection.
    pub prot: Prot,
    /// `p_vaddr` aligned down to `p_align`.
    start: u64,
    /// `p_vaddr + p_memsz` aligned up to `p_align`.
    end: u64,
}

impl Segment {
    /// The guest range to protect: `[align_down(vaddr), align_up(vaddr + memsz))`, page
    /// aligned, non-empty and within guest memory.
    pub fn protect_range(&self) -> Range<u64> {
        self.start..self.end
    }

    /// The guest range the file bytes are copied to: `[vaddr, vaddr + filesz)`.
    pub fn file_range(&self) -> Range<u64> {
        self.vaddr..self.vaddr.saturating_add(self.filesz)
    }

    /// The guest range zeroed after the file bytes: `[vaddr + filesz, vaddr + memsz)`.
    pub fn zero_range(&self) -> Range<u64> {
        self.vaddr.saturating_add(self.filesz)..self.vaddr.saturating_add(self.memsz)
    }
}

/// What the tender needs once every segment passed: where to start, and `kernel_end`
/// for `hvt_boot_info`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadPlan {
    /// `e_entry`.
    pub entry: u64,
    /// The highest end of a loadable segment, `align_up(p_vaddr + p_memsz, p_align)`,
    /// over the `PT_LOAD`s with `p_filesz != 0` (0 if there are none).
    pub kernel_end: u64,
}

/// Iterator over the checked loadable segments; see [`Elf::segments`].
#[derive(Debug, Clone)]
pub struct Segments<'a> {
    elf: Elf<'a>,
    mem_size: u64,
    next: u16,
    last_vaddr: u64,
    end: u64,
    failed: bool,
}

impl Segments<'_> {
    /// Upstream's `e_end` so far: the highest aligned end of the segments returned.
    pub fn kernel_end(&self) -> u64 {
        self.end
    }

    /// Every check of `elf_load`'s loop body, in order.
    fn check(&mut self, index: u16, ph: &Phdr) -> Result<Segment, ElfError> {
        let mem_size = self.mem_size;
        let (vaddr, filesz, memsz, align) = (ph.p_vaddr, ph.p_filesz, ph.p_memsz, ph.p_align);
        if vaddr < HVT_GUEST_MIN_BASE {
            return Err(ElfError::VaddrBelowMin { index, vaddr });
        }
        if vaddr < self.last_vaddr {
            return Err(ElfError::NotAscending {
                index,
                vaddr,
                last_vaddr: self.last_vaddr,
            });
        }
        self.last_vaddr = vaddr;
        if !align.is_power_of_two() {
            return Err(ElfError::AlignDown {
                index,
                vaddr,
                align,
            });
        }
        let mask = align - 1; // align >= 1
        let start = vaddr & !mask;
        if start < HVT_GUEST_MIN_BASE {
            return Err(ElfError::StartBelowMin { index, start });
        }
        if start < self.end {
            return Err(ElfError::Overlap {
                index,
                start,
                end: self.end,
            });
        }
        if vaddr >= mem_size {
            return Err(ElfError::VaddrBeyondMem {
                index,
                vaddr,
                mem_size,
            });
        }
        let Some(file_end) = vaddr.checked_add(filesz) else {
            return Err(ElfError::FileEndOverflow {
                index,
                vaddr,
                filesz,
            });
        };
        if file_end > mem_size {
            return Err(ElfError::FileEndBeyondMem {
                index,
                end: file_end,
                mem_size,
            });
        }
        if memsz < filesz {
            return Err(ElfError::MemszBelowFilesz {
                index,
                memsz,
                filesz,
            });
        }
        let Some(mem_end) = vaddr.checked_add(memsz) else {
            return Err(ElfError::MemEndOverflow {
                index,
                vaddr,
                memsz,
            });
        };
        let Some(end) = mem_end.checked_add(mask).map(|e| e & !mask) else {
            return Err(ElfError::AlignUp {
                index,
                end: mem_end,
                align,
            });
        };
        if end > mem_size {
            return Err(ElfError::MemEndBeyondMem {
                index,
                end,
                mem_size,
            });
        }
        // Upstream raises e_end before it reads the segment, so a later failure of this
        // segment still leaves it raised; nobody reads it after a failure, though.
        self.end = self.end.max(end);
        match pread(self.elf.file, ph.p_offset, filesz) {
            Pread::Full(_) => {}
            Pread::Short(read) => {
                return Err(ElfError::SegmentRead {
                    index,
                    read,
                    filesz,
                });
            }
            Pread::Failed => return Err(ElfError::SegmentReadFailed { index }),
        }
        if start & (EM_PAGE_SIZE - 1) != 0 {
            return Err(ElfError::StartUnaligned { index, start });
        }
        if end & (EM_PAGE_SIZE - 1) != 0 {
            return Err(ElfError::EndUnaligned { index, end });
        }
        if ph.p_flags & PF_W != 0 && ph.p_flags & PF_X != 0 {
            return Err(ElfError::WriteExec { index });
        }
        Ok(Segment {
            index,
            file_offset: ph.p_offset,
            vaddr,
            filesz,
            memsz,
            align,
            prot: Prot::from_flags(ph.p_flags),
            start,
            end,
        })
    }
}

impl Iterator for Segments<'_> {
    type Item = Result<Segment, ElfError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.failed && self.next < self.elf.phnum {
            let index = self.next;
            self.next = self.next.saturating_add(1);
            let Some(ph) = self.elf.phdr(index) else {
                break;
            };
            if ph.p_filesz == 0 || ph.p_type != PT_LOAD {
                continue;
            }
            let result = self.check(index, &ph);
            self.failed = result.is_err();
            return Some(result);
        }
        None
    }
}
