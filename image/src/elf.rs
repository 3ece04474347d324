//! A small, bounds-checked ELF64 little-endian reader: just enough to find a named
//! section (a kernel module's `.modinfo`) and to tell a static executable from a dynamic
//! one.
//!
//! Contract: every function takes untrusted bytes (files from a downloaded package) and
//! returns an error instead of panicking; no offset read from the file is used before
//! it has been checked against the input's length with checked arithmetic, and nothing
//! is allocated from a size the file claims.

use thiserror::Error;

/// `e_ident[EI_CLASS]` of a 64-bit object.
pub const ELFCLASS64: u8 = 2;
/// `e_ident[EI_DATA]` of a little-endian object.
pub const ELFDATA2LSB: u8 = 1;
/// Size of an ELF64 file header.
pub const EHDR64_SIZE: usize = 64;
/// Size of an ELF64 section header.
pub const SHDR64_SIZE: usize = 64;
/// Size of an ELF64 program header.
pub const PHDR64_SIZE: usize = 56;
/// Section type of a section that occupies no file space (`.bss`).
pub const SHT_NOBITS: u32 = 8;
/// `e_shstrndx` escape: the real index lives in section 0.
pub const SHN_XINDEX: u16 = 0xffff;
/// Program header type of the interpreter request of a dynamic executable.
pub const PT_INTERP: u32 = 3;

/// Why bytes are not a readable ELF64 little-endian object.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ElfError {
    /// Shorter than an ELF header, or without the `\x7fELF` magic.
    #[error("not an ELF file")]
    NotElf,
    /// A 32-bit or big-endian object.
    #[error("not a 64-bit little-endian ELF file")]
    NotElf64Le,
    /// The section header table does not fit in the file or has entries of a strange size.
    #[error("section header table out of bounds")]
    BadSectionTable,
    /// The section name string table index is out of range.
    #[error("section name table out of bounds")]
    BadNameTable,
    /// A section's file range lies outside the file.
    #[error("section {0} out of bounds")]
    SectionOutOfBounds(String),
    /// The program header table does not fit in the file.
    #[error("program header table out of bounds")]
    BadProgramTable,
}

/// One section header, as read (offsets not yet checked against the file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SectionHeader {
    /// Offset of the name in the section name table.
    pub sh_name: u32,
    /// Section type (`SHT_*`).
    pub sh_type: u32,
    /// File offset of the contents.
    pub sh_offset: u64,
    /// Size of the contents in bytes.
    pub sh_size: u64,
}

/// A validated view of an ELF64 little-endian object: once [`Elf::parse`] passes, the
/// section header table and the section name table lie inside the bytes.
#[derive(Debug, Clone, Copy)]
pub struct Elf<'a> {
    bytes: &'a [u8],
    shoff: usize,
    shnum: usize,
    names: &'a [u8],
}

fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    let s = b.get(off..off.checked_add(2)?)?;
    Some(u16::from_le_bytes([s[0], s[1]]))
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    let s = b.get(off..off.checked_add(4)?)?;
    let mut a = [0u8; 4];
    a.copy_from_slice(s);
    Some(u32::from_le_bytes(a))
}

fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    let s = b.get(off..off.checked_add(8)?)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    Some(u64::from_le_bytes(a))
}

/// `bytes[off..off + len]` for 64-bit file values, `None` when outside.
fn range(bytes: &[u8], off: u64, len: u64) -> Option<&[u8]> {
    let start = usize::try_from(off).ok()?;
    let end = start.checked_add(usize::try_from(len).ok()?)?;
    bytes.get(start..end)
}

impl<'a> Elf<'a> {
    /// Checks the header, the section header table and the section name table.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, ElfError> {
        if bytes.len() < EHDR64_SIZE || bytes.get(..4) != Some(b"\x7fELF") {
            return Err(ElfError::NotElf);
        }
        if bytes[4] != ELFCLASS64 || bytes[5] != ELFDATA2LSB {
            return Err(ElfError::NotElf64Le);
        }
        let shoff = u64_at(bytes, 0x28).ok_or(ElfError::NotElf)?;
        let shentsize = u16_at(bytes, 0x3a).ok_or(ElfError::NotElf)?;
        let shnum = u16_at(bytes, 0x3c).ok_or(ElfError::NotElf)?;
        let shstrndx = u16_at(bytes, 0x3e).ok_or(ElfError::NotElf)?;
        if shnum == 0 {
            // No sections (an executable may have none), or extended numbering, which
            // kernel modules never use: either way there is nothing to find.
            return Ok(Elf {
                bytes,
                shoff: 0,
                shnum: 0,
                names: &[],
            });
        }
        if usize::from(shentsize) != SHDR64_SIZE {
            return Err(ElfError::BadSectionTable);
        }
        let table_len = u64::from(shnum) * SHDR64_SIZE as u64;
        range(bytes, shoff, table_len).ok_or(ElfError::BadSectionTable)?;
        let shoff = usize::try_from(shoff).map_err(|_| ElfError::BadSectionTable)?;
        let mut elf = Elf {
            bytes,
            shoff,
            shnum: usize::from(shnum),
            names: &[],
        };
        if shstrndx == SHN_XINDEX || shstrndx >= shnum {
            return Err(ElfError::BadNameTable);
        }
        let strtab = elf
            .section_header(usize::from(shstrndx))
            .ok_or(ElfError::BadNameTable)?;
        elf.names = range(bytes, strtab.sh_offset, strtab.sh_size).ok_or(ElfError::BadNameTable)?;
        Ok(elf)
    }

    /// Number of section headers.
    pub fn section_count(&self) -> usize {
        self.shnum
    }

    /// The section header at `index`, `None` past the end.
    pub fn section_header(&self, index: usize) -> Option<SectionHeader> {
        if index >= self.shnum {
            return None;
        }
        let at = self.shoff.checked_add(index.checked_mul(SHDR64_SIZE)?)?;
        Some(SectionHeader {
            sh_name: u32_at(self.bytes, at)?,
            sh_type: u32_at(self.bytes, at + 4)?,
            sh_offset: u64_at(self.bytes, at + 0x18)?,
            sh_size: u64_at(self.bytes, at + 0x20)?,
        })
    }

    /// A section's name, `None` when its name offset or terminator lies outside the
    /// name table.
    pub fn section_name(&self, header: &SectionHeader) -> Option<&'a [u8]> {
        let start = usize::try_from(header.sh_name).ok()?;
        let rest = self.names.get(start..)?;
        let len = rest.iter().position(|&c| c == 0)?;
        rest.get(..len)
    }

    /// The contents of the first section called `name`; `Ok(None)` when there is none.
    /// A `SHT_NOBITS` section has no contents and yields an empty slice.
    pub fn section(&self, name: &str) -> Result<Option<&'a [u8]>, ElfError> {
        for index in 0..self.shnum {
            let Some(header) = self.section_header(index) else {
                return Err(ElfError::BadSectionTable);
            };
            if self.section_name(&header) != Some(name.as_bytes()) {
                continue;
            }
            if header.sh_type == SHT_NOBITS {
                return Ok(Some(&[]));
            }
            return range(self.bytes, header.sh_offset, header.sh_size)
                .map(Some)
                .ok_or_else(|| ElfError::SectionOutOfBounds(name.to_owned()));
        }
        Ok(None)
    }

    /// Whether the program headers ask for an interpreter (`PT_INTERP`), i.e. whether the
    /// executable needs a dynamic loader and libraries the image lacks. A static-pie
    /// binary has a `PT_DYNAMIC` (it relocates itself) but no interpreter: it is static.
    pub fn needs_interpreter(&self) -> Result<bool, ElfError> {
        let b = self.bytes;
        let phoff = u64_at(b, 0x20).ok_or(ElfError::BadProgramTable)?;
        let phentsize = u16_at(b, 0x36).ok_or(ElfError::BadProgramTable)?;
        let phnum = u16_at(b, 0x38).ok_or(ElfError::BadProgramTable)?;
        if phnum == 0 {
            return Ok(false);
        }
        if usize::from(phentsize) != PHDR64_SIZE {
            return Err(ElfError::BadProgramTable);
        }
        let table = range(b, phoff, u64::from(phnum) * PHDR64_SIZE as u64)
            .ok_or(ElfError::BadProgramTable)?;
        Ok(table
            .chunks_exact(PHDR64_SIZE)
            .filter_map(|ph| u32_at(ph, 0))
            .any(|p_type| p_type == PT_INTERP))
    }
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)]
pub(crate) mod tests {
    use super::*;

    /// Builds an ELF64 relocatable object with the given named sections, the way a
    /// kernel module is laid out: header, section contents, `.shstrtab`, section table.
    pub(crate) fn object(sections: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = vec![0u8; EHDR64_SIZE];
        out[..4].copy_from_slice(b"\x7fELF");
        out[4] = ELFCLASS64;
        out[5] = ELFDATA2LSB;
        out[6] = 1;
        out[0x10..0x12].copy_from_slice(&1u16.to_le_bytes()); // ET_REL
        out[0x12..0x14].copy_from_slice(&62u16.to_le_bytes()); // EM_X86_64
        out[0x34..0x36].copy_from_slice(&(EHDR64_SIZE as u16).to_le_bytes());
        let mut names = vec![0u8];
        let mut headers = Vec::new(); // (name offset, offset, size)
        for (name, data) in sections {
            let name_off = names.len();
            names.extend_from_slice(name.as_bytes());
            names.push(0);
            headers.push((name_off, out.len(), data.len()));
            out.extend_from_slice(data);
        }
        let shstrtab_name = names.len();
        names.extend_from_slice(b".shstrtab\0");
        headers.push((shstrtab_name, out.len(), names.len()));
        out.extend_from_slice(&names);
        while out.len() % 8 != 0 {
            out.push(0);
        }
        let shoff = out.len();
        out.extend_from_slice(&[0u8; SHDR64_SIZE]); // the null section
        for (name_off, off, size) in &headers {
            let mut sh = [0u8; SHDR64_SIZE];
            sh[0..4].copy_from_slice(&(*name_off as u32).to_le_bytes());
            sh[4..8].copy_from_slice(&1u32.to_le_bytes()); // SHT_PROGBITS
            sh[0x18..0x20].copy_from_slice(&(*off as u64).to_le_bytes());
            sh[0x20..0x28].copy_from_slice(&(*size as u64).to_le_bytes());
            out.extend_from_slice(&sh);
        }
        let shnum = headers.len() + 1;
        out[0x28..0x30].copy_from_slice(&(shoff as u64).to_le_bytes());
        out[0x3a..0x3c].copy_from_slice(&(SHDR64_SIZE as u16).to_le_bytes());
        out[0x3c..0x3e].copy_from_slice(&(shnum as u16).to_le_bytes());
        out[0x3e..0x40].copy_from_slice(&((shnum - 1) as u16).to_le_bytes());
        out
    }

    #[test]
    fn finds_sections_by_name() {
        let obj = object(&[(".text", b"\x90\x90"), (".modinfo", b"a=b\0")]);
        let elf = Elf::parse(&obj).unwrap();
        assert_eq!(elf.section_count(), 4);
        assert_eq!(elf.section(".modinfo").unwrap(), Some(&b"a=b\0"[..]));
        assert_eq!(elf.section(".text").unwrap(), Some(&b"\x90\x90"[..]));
        assert_eq!(elf.section(".data").unwrap(), None);
        assert_eq!(elf.needs_interpreter(), Ok(false));
    }

    #[test]
    fn rejects_what_is_not_elf64_le() {
        assert_eq!(Elf::parse(b"").unwrap_err(), ElfError::NotElf);
        assert_eq!(Elf::parse(&[0u8; 64]).unwrap_err(), ElfError::NotElf);
        let mut obj = object(&[]);
        obj[4] = 1;
        assert_eq!(Elf::parse(&obj).unwrap_err(), ElfError::NotElf64Le);
    }

    #[test]
    fn rejects_out_of_bounds_tables_and_sections() {
        let obj = object(&[(".modinfo", b"x=y\0")]);
        let mut bad = obj.clone();
        bad[0x28..0x30].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(Elf::parse(&bad).unwrap_err(), ElfError::BadSectionTable);
        let mut bad = obj.clone();
        bad[0x3e] = 9;
        assert_eq!(Elf::parse(&bad).unwrap_err(), ElfError::BadNameTable);
        // .modinfo's size (section 1, field at +0x20) far past the end.
        let shoff = u64::from_le_bytes(obj[0x28..0x30].try_into().unwrap()) as usize;
        let mut bad = obj.clone();
        let at = shoff + SHDR64_SIZE + 0x20;
        bad[at..at + 8].copy_from_slice(&(1u64 << 40).to_le_bytes());
        let elf = Elf::parse(&bad).unwrap();
        assert_eq!(
            elf.section(".modinfo"),
            Err(ElfError::SectionOutOfBounds(".modinfo".into()))
        );
    }

    #[test]
    fn tells_dynamic_executables() {
        let mut exe = object(&[]);
        let phoff = exe.len() as u64;
        let mut ph = [0u8; PHDR64_SIZE];
        ph[0..4].copy_from_slice(&PT_INTERP.to_le_bytes());
        exe.extend_from_slice(&ph);
        exe[0x20..0x28].copy_from_slice(&phoff.to_le_bytes());
        exe[0x36..0x38].copy_from_slice(&(PHDR64_SIZE as u16).to_le_bytes());
        exe[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes());
        assert_eq!(Elf::parse(&exe).unwrap().needs_interpreter(), Ok(true));
        exe[0x38..0x3a].copy_from_slice(&2u16.to_le_bytes());
        assert_eq!(
            Elf::parse(&exe).unwrap().needs_interpreter(),
            Err(ElfError::BadProgramTable)
        );
    }
}
