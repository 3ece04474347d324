//! Unified kernel images: systemd's EFI stub (`linuxx64.efi.stub`) with the kernel,
//! initramfs, command line and os-release added as PE/COFF sections.
//!
//! Pure: bytes in, bytes out. [`PeFile::parse`] reads and checks a PE32+ image (the stub,
//! or a finished UKI); [`add_sections`] appends sections after the stub's own ones, at
//! page-aligned virtual addresses, with their data at file-aligned offsets past the
//! stub's data, and updates `NumberOfSections`, `SizeOfImage`,
//! `SizeOfInitializedData` and the checksum. [`assemble`] does that for a UKI in the
//! order systemd-boot 252 expects: `.osrel`, `.cmdline`, `.initrd`, then `.linux` last
//! (the kernel may use memory past its section's end while it starts). The new section
//! headers must fit in the room left before the first section's data; systemd's stub
//! leaves room for many more than four.

use thiserror::Error;

/// `IMAGE_FILE_MACHINE_AMD64`.
pub const IMAGE_FILE_MACHINE_AMD64: u16 = 0x8664;
/// Optional header magic of PE32+.
pub const IMAGE_NT_OPTIONAL_HDR64_MAGIC: u16 = 0x20b;
/// `IMAGE_SUBSYSTEM_EFI_APPLICATION`.
pub const IMAGE_SUBSYSTEM_EFI_APPLICATION: u16 = 10;
/// `IMAGE_SCN_CNT_INITIALIZED_DATA`.
pub const IMAGE_SCN_CNT_INITIALIZED_DATA: u32 = 0x0000_0040;
/// `IMAGE_SCN_MEM_READ`.
pub const IMAGE_SCN_MEM_READ: u32 = 0x4000_0000;
/// Index of the certificate table (Authenticode signature) in the data directories.
pub const IMAGE_DIRECTORY_ENTRY_SECURITY: usize = 4;
/// Size of a section header.
pub const SECTION_HEADER_SIZE: usize = 40;
/// Size of the COFF file header.
pub const COFF_HEADER_SIZE: usize = 20;
/// Alignment of the added sections' virtual addresses.
pub const PAGE_SIZE: u32 = 4096;

// Offsets inside the PE32+ optional header.
const OPT_SIZE_OF_INITIALIZED_DATA: usize = 8;
const OPT_SECTION_ALIGNMENT: usize = 32;
const OPT_FILE_ALIGNMENT: usize = 36;
const OPT_SIZE_OF_IMAGE: usize = 56;
const OPT_SIZE_OF_HEADERS: usize = 60;
const OPT_CHECKSUM: usize = 64;
const OPT_SUBSYSTEM: usize = 68;
const OPT_NUMBER_OF_RVA_AND_SIZES: usize = 108;
const OPT_DATA_DIRECTORIES: usize = 112;

/// Why a PE file cannot be read or extended.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum UkiError {
    /// No `MZ`/`PE\0\0` signature, or truncated headers.
    #[error("not a PE/COFF file")]
    NotPe,
    /// Not an x86-64 PE32+ EFI application.
    #[error("not an x86-64 PE32+ EFI application")]
    NotEfiAmd64,
    /// A header value is inconsistent (alignments, section table, data ranges).
    #[error("malformed PE file: {0}")]
    Malformed(&'static str),
    /// The stub is signed; adding sections would break the signature.
    #[error("the stub carries a signature (certificate table); use an unsigned stub")]
    Signed,
    /// A section of this name exists already (a finished UKI given as stub?).
    #[error("the stub already has a {0} section")]
    SectionExists(String),
    /// A section name longer than 8 bytes.
    #[error("section name {0:?} longer than 8 bytes")]
    BadName(String),
    /// No room for more section headers before the first section's data.
    #[error("no room for {0} more section headers in the stub's headers")]
    NoHeaderRoom(usize),
    /// The result would exceed PE's 32-bit sizes.
    #[error("image too large for PE")]
    TooLarge,
}

/// One section header, as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// Name (up to 8 bytes, NUL padding removed).
    pub name: String,
    /// `VirtualSize`.
    pub virtual_size: u32,
    /// `VirtualAddress` (relative to the image base).
    pub virtual_address: u32,
    /// `SizeOfRawData`.
    pub raw_size: u32,
    /// `PointerToRawData`.
    pub raw_offset: u32,
    /// `Characteristics`.
    pub characteristics: u32,
}

/// A checked view of a PE32+ EFI image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeFile {
    /// Offset of the COFF header (after `PE\0\0`).
    coff: usize,
    /// Offset of the optional header.
    opt: usize,
    /// Offset of the section table.
    table: usize,
    /// `SectionAlignment`.
    pub section_alignment: u32,
    /// `FileAlignment`.
    pub file_alignment: u32,
    /// `SizeOfHeaders`.
    pub size_of_headers: u32,
    /// `SizeOfImage`.
    pub size_of_image: u32,
    /// `CheckSum`.
    pub checksum: u32,
    /// The sections, in table order.
    pub sections: Vec<Section>,
}

fn u16_at(b: &[u8], off: usize) -> Result<u16, UkiError> {
    let s = b
        .get(off..off.checked_add(2).ok_or(UkiError::NotPe)?)
        .ok_or(UkiError::NotPe)?;
    Ok(u16::from_le_bytes([s[0], s[1]]))
}

fn u32_at(b: &[u8], off: usize) -> Result<u32, UkiError> {
    let s = b
        .get(off..off.checked_add(4).ok_or(UkiError::NotPe)?)
        .ok_or(UkiError::NotPe)?;
    Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn put_u16(b: &mut [u8], off: usize, v: u16) {
    b[off..off + 2].copy_from_slice(&v.to_le_bytes());
}

fn put_u32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

fn align_up(v: u64, align: u32) -> u64 {
    let a = u64::from(align.max(1));
    v.div_ceil(a) * a
}

fn as_usize(v: u32) -> usize {
    // u32 always fits usize on the 64-bit targets this crate builds for.
    usize::try_from(v).unwrap_or(usize::MAX)
}

impl PeFile {
    /// Reads and checks the headers and section table of `bytes`.
    pub fn parse(bytes: &[u8]) -> Result<Self, UkiError> {
        if bytes.get(..2) != Some(b"MZ") {
            return Err(UkiError::NotPe);
        }
        let pe = as_usize(u32_at(bytes, 0x3c)?);
        if bytes.get(pe..pe.checked_add(4).ok_or(UkiError::NotPe)?) != Some(b"PE\0\0") {
            return Err(UkiError::NotPe);
        }
        let coff = pe + 4;
        let opt = coff + COFF_HEADER_SIZE;
        let machine = u16_at(bytes, coff)?;
        let nsections = usize::from(u16_at(bytes, coff + 2)?);
        let opt_size = usize::from(u16_at(bytes, coff + 16)?);
        if machine != IMAGE_FILE_MACHINE_AMD64
            || u16_at(bytes, opt)? != IMAGE_NT_OPTIONAL_HDR64_MAGIC
            || opt_size < OPT_DATA_DIRECTORIES
            || u16_at(bytes, opt + OPT_SUBSYSTEM)? != IMAGE_SUBSYSTEM_EFI_APPLICATION
        {
            return Err(UkiError::NotEfiAmd64);
        }
        let table = opt + opt_size;
        let table_end = table + nsections * SECTION_HEADER_SIZE;
        if table_end > bytes.len() {
            return Err(UkiError::Malformed(
                "section table past the end of the file",
            ));
        }
        let section_alignment = u32_at(bytes, opt + OPT_SECTION_ALIGNMENT)?;
        let file_alignment = u32_at(bytes, opt + OPT_FILE_ALIGNMENT)?;
        if !file_alignment.is_power_of_two()
            || !section_alignment.is_power_of_two()
            || section_alignment < file_alignment
        {
            return Err(UkiError::Malformed("alignments"));
        }
        let mut sections = Vec::with_capacity(nsections);
        for i in 0..nsections {
            let h = table + i * SECTION_HEADER_SIZE;
            let raw_name = &bytes[h..h + 8];
            let len = raw_name.iter().position(|&c| c == 0).unwrap_or(8);
            let s = Section {
                name: String::from_utf8_lossy(&raw_name[..len]).into_owned(),
                virtual_size: u32_at(bytes, h + 8)?,
                virtual_address: u32_at(bytes, h + 12)?,
                raw_size: u32_at(bytes, h + 16)?,
                raw_offset: u32_at(bytes, h + 20)?,
                characteristics: u32_at(bytes, h + 36)?,
            };
            let end = u64::from(s.raw_offset) + u64::from(s.raw_size);
            if s.raw_size != 0 && end > bytes.len() as u64 {
                return Err(UkiError::Malformed("section data past the end of the file"));
            }
            sections.push(s);
        }
        Ok(PeFile {
            coff,
            opt,
            table,
            section_alignment,
            file_alignment,
            size_of_headers: u32_at(bytes, opt + OPT_SIZE_OF_HEADERS)?,
            size_of_image: u32_at(bytes, opt + OPT_SIZE_OF_IMAGE)?,
            checksum: u32_at(bytes, opt + OPT_CHECKSUM)?,
            sections,
        })
    }

    /// The section called `name`, if any.
    pub fn section(&self, name: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.name == name)
    }

    /// The contents of section `name` in `bytes` (the file this was parsed from),
    /// `VirtualSize` bytes long (the data without its file-alignment padding).
    pub fn section_data<'a>(&self, bytes: &'a [u8], name: &str) -> Option<&'a [u8]> {
        let s = self.section(name)?;
        let start = as_usize(s.raw_offset);
        let len = as_usize(s.virtual_size.min(s.raw_size));
        bytes.get(start..start.checked_add(len)?)
    }
}

/// The PE image checksum (as `IMAGEHLP`'s `CheckSumMappedFile`): the ones'-complement
/// style 16-bit sum of the file with the checksum field taken as 0, plus the file length.
pub fn pe_checksum(bytes: &[u8], checksum_offset: usize) -> u32 {
    let mut sum: u64 = 0;
    for (i, chunk) in bytes.chunks(2).enumerate() {
        let at = i * 2;
        if at == checksum_offset || at == checksum_offset + 2 {
            continue;
        }
        let word = u16::from_le_bytes([chunk[0], chunk.get(1).copied().unwrap_or(0)]);
        sum += u64::from(word);
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum = (sum & 0xffff) + (sum >> 16);
    // The sum fits 16 bits after folding; the length is < 4 GiB (checked by callers).
    let folded = u32::try_from(sum & 0xffff).unwrap_or(0);
    folded.wrapping_add(u32::try_from(bytes.len()).unwrap_or(u32::MAX))
}

/// Appends `sections` (name, contents) to the PE image `stub`, in the order given.
pub fn add_sections(stub: &[u8], sections: &[(&str, &[u8])]) -> Result<Vec<u8>, UkiError> {
    let pe = PeFile::parse(stub)?;
    let certs = IMAGE_DIRECTORY_ENTRY_SECURITY;
    let ndirs = as_usize(u32_at(stub, pe.opt + OPT_NUMBER_OF_RVA_AND_SIZES)?);
    if ndirs > certs && u32_at(stub, pe.opt + OPT_DATA_DIRECTORIES + certs * 8 + 4)? != 0 {
        return Err(UkiError::Signed);
    }
    for (name, _) in sections {
        if name.len() > 8 || name.is_empty() {
            return Err(UkiError::BadName((*name).to_owned()));
        }
        if pe.section(name).is_some() {
            return Err(UkiError::SectionExists((*name).to_owned()));
        }
    }
    // Room for the new headers: up to SizeOfHeaders and the first section's data.
    let first_data = pe
        .sections
        .iter()
        .filter(|s| s.raw_size != 0)
        .map(|s| s.raw_offset)
        .min()
        .unwrap_or(pe.size_of_headers)
        .min(pe.size_of_headers);
    let table_end = pe.table + (pe.sections.len() + sections.len()) * SECTION_HEADER_SIZE;
    if table_end > as_usize(first_data) {
        return Err(UkiError::NoHeaderRoom(sections.len()));
    }
    let nsections =
        u16::try_from(pe.sections.len() + sections.len()).map_err(|_| UkiError::TooLarge)?;

    // Virtual addresses: page-aligned after the end of everything the stub maps.
    let mut va_end = pe
        .sections
        .iter()
        .map(|s| u64::from(s.virtual_address) + u64::from(s.virtual_size.max(s.raw_size)))
        .max()
        .unwrap_or(0)
        .max(u64::from(pe.size_of_image));
    // File offsets: file-aligned after the stub's bytes (including any trailing data).
    let mut out = stub.to_vec();
    let mut initialized = u64::from(u32_at(stub, pe.opt + OPT_SIZE_OF_INITIALIZED_DATA)?);
    let mut headers = Vec::with_capacity(sections.len());
    for (name, data) in sections {
        let va = align_up(va_end, PAGE_SIZE);
        let raw_offset = align_up(out.len() as u64, pe.file_alignment);
        let raw_size = align_up(data.len() as u64, pe.file_alignment);
        out.resize(
            usize::try_from(raw_offset).map_err(|_| UkiError::TooLarge)?,
            0,
        );
        out.extend_from_slice(data);
        out.resize(
            usize::try_from(raw_offset + raw_size).map_err(|_| UkiError::TooLarge)?,
            0,
        );
        va_end = va + data.len() as u64;
        initialized += raw_size;
        let fit = |v: u64| u32::try_from(v).map_err(|_| UkiError::TooLarge);
        headers.push((
            name,
            fit(data.len() as u64)?,
            fit(va)?,
            fit(raw_size)?,
            fit(raw_offset)?,
        ));
    }
    let size_of_image =
        u32::try_from(align_up(va_end, pe.section_alignment)).map_err(|_| UkiError::TooLarge)?;
    u32::try_from(out.len()).map_err(|_| UkiError::TooLarge)?;

    for (i, (name, vsize, va, raw_size, raw_offset)) in headers.into_iter().enumerate() {
        let h = pe.table + (pe.sections.len() + i) * SECTION_HEADER_SIZE;
        let mut header = [0u8; SECTION_HEADER_SIZE];
        header[..name.len()].copy_from_slice(name.as_bytes());
        put_u32(&mut header, 8, vsize);
        put_u32(&mut header, 12, va);
        put_u32(&mut header, 16, raw_size);
        put_u32(&mut header, 20, raw_offset);
        put_u32(
            &mut header,
            36,
            IMAGE_SCN_CNT_INITIALIZED_DATA | IMAGE_SCN_MEM_READ,
        );
        out[h..h + SECTION_HEADER_SIZE].copy_from_slice(&header);
    }
    put_u16(&mut out, pe.coff + 2, nsections);
    put_u32(&mut out, pe.opt + OPT_SIZE_OF_IMAGE, size_of_image);
    put_u32(
        &mut out,
        pe.opt + OPT_SIZE_OF_INITIALIZED_DATA,
        u32::try_from(initialized).unwrap_or(u32::MAX),
    );
    put_u32(&mut out, pe.opt + OPT_CHECKSUM, 0);
    let checksum = pe_checksum(&out, pe.opt + OPT_CHECKSUM);
    put_u32(&mut out, pe.opt + OPT_CHECKSUM, checksum);
    Ok(out)
}

/// The parts of a UKI besides the stub.
#[derive(Debug, Clone, Copy)]
pub struct UkiParts<'a> {
    /// os-release text for `.osrel` (`ID=petrel`, `IMAGE_VERSION=…`).
    pub osrel: &'a [u8],
    /// The kernel command line for `.cmdline`.
    pub cmdline: &'a [u8],
    /// The bzImage for `.linux`.
    pub linux: &'a [u8],
    /// The compressed initramfs for `.initrd`.
    pub initrd: &'a [u8],
}

/// Checks that `kernel` is an x86 bzImage with an EFI stub (a PE image with the Linux
/// boot protocol's `HdrS` header), which is what systemd's stub can start.
pub fn check_kernel(kernel: &[u8]) -> Result<(), UkiError> {
    PeFile::parse(kernel)?;
    if kernel.get(0x202..0x206) != Some(b"HdrS") {
        return Err(UkiError::Malformed("no Linux boot protocol header (HdrS)"));
    }
    Ok(())
}

/// The kernel release a bzImage names (`6.1.0-28-amd64`): the first word of the
/// string the setup header's `kernel_version` field points to (offset + 0x200).
pub fn kernel_release(kernel: &[u8]) -> Option<&str> {
    if kernel.get(0x202..0x206) != Some(b"HdrS") {
        return None;
    }
    let ptr = u16_at(kernel, 0x20e).ok()?;
    if ptr == 0 {
        return None;
    }
    let rest = kernel.get(usize::from(ptr) + 0x200..)?;
    let rest = &rest[..rest.len().min(256)];
    let end = rest.iter().position(|&c| c == 0)?;
    let text = std::str::from_utf8(&rest[..end]).ok()?;
    text.split_ascii_whitespace().next()
}

/// Builds a UKI from systemd's stub and its parts.
pub fn assemble(stub: &[u8], parts: &UkiParts<'_>) -> Result<Vec<u8>, UkiError> {
    add_sections(
        stub,
        &[
            (".osrel", parts.osrel),
            (".cmdline", parts.cmdline),
            (".initrd", parts.initrd),
            (".linux", parts.linux),
        ],
    )
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)]
pub(crate) mod tests {
    use super::*;

    /// A minimal PE32+ EFI application shaped like systemd's stub: headers in the first
    /// 0x400 bytes, `.text` at 0x1000 and `.data` at 0x2000 with 0x200 file alignment.
    pub(crate) fn fake_stub() -> Vec<u8> {
        let mut b = vec![0u8; 0x800];
        b[..2].copy_from_slice(b"MZ");
        put_u32(&mut b, 0x3c, 0x80);
        b[0x80..0x84].copy_from_slice(b"PE\0\0");
        let coff = 0x84;
        put_u16(&mut b, coff, IMAGE_FILE_MACHINE_AMD64);
        put_u16(&mut b, coff + 2, 2);
        put_u16(&mut b, coff + 16, 240);
        put_u16(&mut b, coff + 18, 0x206);
        let opt = coff + 20;
        put_u16(&mut b, opt, IMAGE_NT_OPTIONAL_HDR64_MAGIC);
        put_u32(&mut b, opt + 16, 0x1000); // AddressOfEntryPoint
        put_u32(&mut b, opt + OPT_SECTION_ALIGNMENT, 0x200);
        put_u32(&mut b, opt + OPT_FILE_ALIGNMENT, 0x200);
        put_u32(&mut b, opt + OPT_SIZE_OF_IMAGE, 0x2200);
        put_u32(&mut b, opt + OPT_SIZE_OF_HEADERS, 0x400);
        put_u16(&mut b, opt + OPT_SUBSYSTEM, IMAGE_SUBSYSTEM_EFI_APPLICATION);
        put_u32(&mut b, opt + OPT_NUMBER_OF_RVA_AND_SIZES, 16);
        let table = opt + 240;
        for (i, (name, va, off, ch)) in [
            (".text", 0x1000u32, 0x400u32, 0x6000_0020u32),
            (".data", 0x2000, 0x600, 0xc000_0040),
        ]
        .into_iter()
        .enumerate()
        {
            let h = table + i * 40;
            b[h..h + name.len()].copy_from_slice(name.as_bytes());
            put_u32(&mut b, h + 8, 0x10);
            put_u32(&mut b, h + 12, va);
            put_u32(&mut b, h + 16, 0x200);
            put_u32(&mut b, h + 20, off);
            put_u32(&mut b, h + 36, ch);
        }
        b[0x400] = 0xc3;
        b
    }

    #[test]
    fn adds_sections_page_aligned_linux_last() {
        let stub = fake_stub();
        let linux = vec![0xaa; 0x1234];
        let uki = assemble(
            &stub,
            &UkiParts {
                osrel: b"ID=petrel\n",
                cmdline: b"panic=10",
                linux: &linux,
                initrd: &[0x1f, 0x8b, 0x08],
            },
        )
        .unwrap();
        let pe = PeFile::parse(&uki).unwrap();
        let got: Vec<(&str, u32, u32, u32, u32)> = pe
            .sections
            .iter()
            .map(|s| {
                (
                    s.name.as_str(),
                    s.virtual_address,
                    s.virtual_size,
                    s.raw_offset,
                    s.raw_size,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (".text", 0x1000, 0x10, 0x400, 0x200),
                (".data", 0x2000, 0x10, 0x600, 0x200),
                (".osrel", 0x3000, 10, 0x800, 0x200),
                (".cmdline", 0x4000, 8, 0xa00, 0x200),
                (".initrd", 0x5000, 3, 0xc00, 0x200),
                (".linux", 0x6000, 0x1234, 0xe00, 0x1400),
            ]
        );
        assert_eq!(pe.size_of_image, 0x7400);
        assert_eq!(pe.size_of_headers, 0x400);
        assert_eq!(uki.len(), 0x2200);
        assert_eq!(pe.section_data(&uki, ".linux"), Some(&linux[..]));
        assert_eq!(pe.section_data(&uki, ".cmdline"), Some(&b"panic=10"[..]));
        assert_eq!(&uki[..0x400][..0x84], &stub[..0x84]);
        assert_eq!(&uki[0x400..0x800], &stub[0x400..0x800]);
        assert_eq!(pe.checksum, pe_checksum(&uki, pe.opt + OPT_CHECKSUM));
        assert_eq!(
            pe.section(".osrel").unwrap().characteristics,
            IMAGE_SCN_CNT_INITIALIZED_DATA | IMAGE_SCN_MEM_READ
        );
    }

    #[test]
    fn refuses_what_it_cannot_extend() {
        let stub = fake_stub();
        let once = add_sections(&stub, &[(".linux", b"x")]).unwrap();
        assert_eq!(
            add_sections(&once, &[(".linux", b"x")]),
            Err(UkiError::SectionExists(".linux".into()))
        );
        assert_eq!(
            add_sections(&stub, &[(".toolongname", b"x")]),
            Err(UkiError::BadName(".toolongname".into()))
        );
        let many: Vec<(&str, &[u8])> = vec![(".a", b"x"); 20];
        assert_eq!(add_sections(&stub, &many), Err(UkiError::NoHeaderRoom(20)));
        let mut signed = stub.clone();
        put_u32(&mut signed, 0x98 + OPT_DATA_DIRECTORIES + 4 * 8 + 4, 0x100);
        assert_eq!(
            add_sections(&signed, &[(".a", b"x")]),
            Err(UkiError::Signed)
        );
        assert_eq!(PeFile::parse(b"MZ"), Err(UkiError::NotPe));
        assert_eq!(
            check_kernel(&stub),
            Err(UkiError::Malformed("no Linux boot protocol header (HdrS)"))
        );
        for len in 0..0x300 {
            let _ = PeFile::parse(&stub[..len]);
        }
    }

    #[test]
    fn checksum_matches_a_known_value() {
        // Words 0x0201 + 0x0403 (+ the trailing byte 0x05) = 0x0609, plus length 5.
        assert_eq!(pe_checksum(&[1, 2, 3, 4, 5], 100), 0x0609 + 5);
        // The checksum field itself is skipped.
        assert_eq!(pe_checksum(&[1, 2, 0xff, 0xff, 0xff, 0xff], 2), 0x0201 + 6);
    }
}
