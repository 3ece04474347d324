//! A tiny builder for hvt executables, for tests and the fuzz corpus.
//!
//! The layout is fixed and simple: ELF header at 0, program headers at 64, everything
//! else (segment contents, notes) appended from 0x1000 on, each blob 16-byte aligned.
//! Every header field is a public field so that a test can break exactly one thing.
#![allow(
    dead_code,
    missing_docs,
    clippy::unwrap_used,
    clippy::cast_possible_truncation
)]

use hvt_abi::abi::{
    MFT_DEV_BLOCK_BASIC, MFT_DEV_NET_BASIC, MFT_ENTRY_SIZE, MFT_RESERVED_FIRST,
    SOLO5_NOTE_ABI_INFO, SOLO5_NOTE_MANIFEST,
};
use hvt_abi::elf::{PF_R, PF_W, PF_X, PT_LOAD, PT_NOTE};

/// Where appended data starts in the file.
pub const BODY_START: u64 = 0x1000;
/// `PT_GNU_STACK`, a segment type the loader must ignore.
pub const PT_GNU_STACK: u32 = 0x6474_e551;
pub const RX: u32 = PF_R | PF_X;
pub const R: u32 = PF_R;
pub const RW: u32 = PF_R | PF_W;
pub const MIB: u64 = 1 << 20;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ph {
    pub p_type: u32,
    pub p_flags: u32,
    pub p_offset: u64,
    pub p_vaddr: u64,
    pub p_paddr: u64,
    pub p_filesz: u64,
    pub p_memsz: u64,
    pub p_align: u64,
}

impl Ph {
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.p_type.to_le_bytes());
        out.extend_from_slice(&self.p_flags.to_le_bytes());
        out.extend_from_slice(&self.p_offset.to_le_bytes());
        out.extend_from_slice(&self.p_vaddr.to_le_bytes());
        out.extend_from_slice(&self.p_paddr.to_le_bytes());
        out.extend_from_slice(&self.p_filesz.to_le_bytes());
        out.extend_from_slice(&self.p_memsz.to_le_bytes());
        out.extend_from_slice(&self.p_align.to_le_bytes());
    }
}

#[derive(Debug, Clone)]
pub struct ElfBuilder {
    pub ident: [u8; 16],
    pub e_type: u16,
    pub e_machine: u16,
    pub e_version: u32,
    pub e_entry: u64,
    /// `None`: right after the ELF header (64).
    pub e_phoff: Option<u64>,
    pub e_ehsize: u16,
    pub e_phentsize: u16,
    /// `None`: the number of `phdrs`.
    pub e_phnum: Option<u16>,
    pub phdrs: Vec<Ph>,
    pub body: Vec<u8>,
}

impl Default for ElfBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl ElfBuilder {
    /// A valid header (x86_64 ELF64 LSB executable, OSABI "FreeBSD"-style junk left 0)
    /// with entry 0x100000 and no program headers yet.
    pub fn new() -> Self {
        let mut ident = [0u8; 16];
        ident[..4].copy_from_slice(b"\x7fELF");
        ident[4] = 2; // ELFCLASS64
        ident[5] = 1; // ELFDATA2LSB
        ident[6] = 1; // EI_VERSION
        Self {
            ident,
            e_type: 2,
            e_machine: 62,
            e_version: 1,
            e_entry: 0x10_0000,
            e_phoff: None,
            e_ehsize: 64,
            e_phentsize: 56,
            e_phnum: None,
            phdrs: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Appends `bytes` to the file (16-byte aligned) and returns their file offset.
    pub fn blob(&mut self, bytes: &[u8]) -> u64 {
        while self.body.len() % 16 != 0 {
            self.body.push(0);
        }
        let offset = BODY_START + self.body.len() as u64;
        self.body.extend_from_slice(bytes);
        offset
    }

    /// Adds a program header; returns its index.
    pub fn ph(&mut self, ph: Ph) -> usize {
        self.phdrs.push(ph);
        self.phdrs.len() - 1
    }

    /// A `PT_LOAD` of `data` at `vaddr`, `memsz` bytes in memory, 4 KiB aligned.
    pub fn load(&mut self, vaddr: u64, data: &[u8], memsz: u64, flags: u32) -> usize {
        let p_offset = self.blob(data);
        self.ph(Ph {
            p_type: PT_LOAD,
            p_flags: flags,
            p_offset,
            p_vaddr: vaddr,
            p_paddr: vaddr,
            p_filesz: data.len() as u64,
            p_memsz: memsz,
            p_align: 0x1000,
        })
    }

    /// A `PT_NOTE` holding `note` (whole notes, as from [`solo5_note`]).
    pub fn note(&mut self, note: &[u8], align: u64) -> usize {
        let p_offset = self.blob(note);
        self.ph(Ph {
            p_type: PT_NOTE,
            p_flags: PF_R,
            p_offset,
            p_vaddr: 0,
            p_paddr: 0,
            p_filesz: note.len() as u64,
            p_memsz: note.len() as u64,
            p_align: align,
        })
    }

    pub fn build(&self) -> Vec<u8> {
        let phnum = self.e_phnum.unwrap_or(self.phdrs.len() as u16);
        let phoff = self.e_phoff.unwrap_or(64);
        let mut out = Vec::new();
        out.extend_from_slice(&self.ident);
        out.extend_from_slice(&self.e_type.to_le_bytes());
        out.extend_from_slice(&self.e_machine.to_le_bytes());
        out.extend_from_slice(&self.e_version.to_le_bytes());
        out.extend_from_slice(&self.e_entry.to_le_bytes());
        out.extend_from_slice(&phoff.to_le_bytes());
        out.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
        out.extend_from_slice(&0u32.to_le_bytes()); // e_flags
        out.extend_from_slice(&self.e_ehsize.to_le_bytes());
        out.extend_from_slice(&self.e_phentsize.to_le_bytes());
        out.extend_from_slice(&phnum.to_le_bytes());
        out.extend_from_slice(&[0u8; 6]); // e_shentsize, e_shnum, e_shstrndx
        assert_eq!(out.len(), 64);
        for ph in &self.phdrs {
            ph.encode(&mut out);
        }
        assert!(
            out.len() as u64 <= BODY_START,
            "too many program headers for the builder"
        );
        if !self.body.is_empty() {
            out.resize(BODY_START as usize, 0);
            out.extend_from_slice(&self.body);
        }
        out
    }
}

/// A whole Solo5 note: header, `"Solo5\0"` padded to 8, then `desc` (which includes
/// any alignment padding), padded to 4 bytes.
pub fn solo5_note(n_type: u32, desc: &[u8]) -> Vec<u8> {
    note(6, b"Solo5\0\0\0", n_type, desc)
}

/// Any note: `namesz`, the (already padded) name bytes, type and descriptor.
pub fn note(namesz: u32, name_padded: &[u8], n_type: u32, desc: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&namesz.to_le_bytes());
    out.extend_from_slice(&(desc.len() as u32).to_le_bytes());
    out.extend_from_slice(&n_type.to_le_bytes());
    out.extend_from_slice(name_padded);
    out.extend_from_slice(desc);
    while out.len() % 4 != 0 {
        out.push(0);
    }
    out
}

/// The ABI1 note: `{target, version, 0, 0}`, no padding.
pub fn abi1_note(target: u32, version: u32) -> Vec<u8> {
    let mut desc = Vec::new();
    for v in [target, version, 0, 0] {
        desc.extend_from_slice(&v.to_le_bytes());
    }
    solo5_note(SOLO5_NOTE_ABI_INFO, &desc)
}

/// The MFT1 note: 4 bytes of padding (`pad`), then the manifest.
pub fn mft1_note_padded(mft: &[u8], pad: [u8; 4]) -> Vec<u8> {
    let mut desc = pad.to_vec();
    desc.extend_from_slice(mft);
    solo5_note(SOLO5_NOTE_MANIFEST, &desc)
}

pub fn mft1_note(mft: &[u8]) -> Vec<u8> {
    mft1_note_padded(mft, [0; 4])
}

/// The OpenBSD identification note that solo5 executables carry first.
pub fn openbsd_note() -> Vec<u8> {
    note(8, b"OpenBSD\0", 1, &[0; 4])
}

/// One raw manifest entry.
pub fn mft_entry(name: &[u8], ty: u32) -> Vec<u8> {
    let mut e = vec![0u8; MFT_ENTRY_SIZE];
    e[..name.len()].copy_from_slice(name);
    e[68..72].copy_from_slice(&ty.to_le_bytes());
    e
}

/// A manifest as `solo5-elftool` makes it: the reserved entry, then `devices`.
pub fn manifest(devices: &[(&str, u32)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&(devices.len() as u32 + 1).to_le_bytes());
    out.extend_from_slice(&mft_entry(b"", MFT_RESERVED_FIRST));
    for (name, ty) in devices {
        out.extend_from_slice(&mft_entry(name.as_bytes(), *ty));
    }
    out
}

/// The manifest of [`typical`]: a block device and a net device.
pub fn typical_manifest() -> Vec<u8> {
    manifest(&[
        ("storage", MFT_DEV_BLOCK_BASIC),
        ("service0", MFT_DEV_NET_BASIC),
    ])
}

/// Code bytes for the text segment: `hlt` and padding.
pub const TEXT: [u8; 64] = [0xf4; 64];
/// Read-only data.
pub const RODATA: [u8; 32] = *b"Hello, Solo5 hvt! rodata bytes..";
/// Initialised data.
pub const DATA: [u8; 16] = [0x11; 16];

/// A well-formed executable shaped like a real solo5 one:
/// phdr 0: text, R+X at 0x100000; phdr 1: rodata, R at 0x101000; phdr 2: data, RW at
/// 0x102000 with a BSS tail to 0x103800; phdr 3: BSS-only PT_LOAD (skipped by the
/// loader); phdr 4: PT_GNU_STACK; phdrs 5, 6, 7: the OpenBSD, ABI1 and MFT1 notes.
/// Its `kernel_end` is 0x104000.
pub fn typical_with(mft: &[u8]) -> ElfBuilder {
    let mut b = ElfBuilder::new();
    b.load(0x10_0000, &TEXT, TEXT.len() as u64, RX);
    b.load(0x10_1000, &RODATA, RODATA.len() as u64, R);
    b.load(0x10_2000, &DATA, 0x1800, RW);
    b.ph(Ph {
        p_type: PT_LOAD,
        p_flags: RW,
        p_offset: 0,
        p_vaddr: 0x10_4000,
        p_paddr: 0x10_4000,
        p_filesz: 0,
        p_memsz: 0x20_0000,
        p_align: 0x1000,
    });
    b.ph(Ph {
        p_type: PT_GNU_STACK,
        p_flags: RW,
        ..Ph::default()
    });
    b.note(&openbsd_note(), 4);
    b.note(&abi1_note(1, 2), 4);
    b.note(&mft1_note(mft), 8);
    b
}

pub fn typical() -> ElfBuilder {
    typical_with(&typical_manifest())
}

/// Program header `i` of a built file, re-decoded (for tests that patch bytes).
pub fn phdr_offset(i: usize) -> usize {
    64 + i * 56
}
