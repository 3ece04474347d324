//! Guest core files for `--dumpcore=DIR`, readable by `gdb KERNEL CORE`.
//!
//! When a guest halts with status 255 (`SOLO5_EXIT_ABORT`), the tender writes
//! `DIR/core.solo5-hvt.PID` ([`core_path`]; tools look for that name). The file is an
//! x86_64 ELF64 `ET_CORE` with two program headers, as upstream's
//! `hvt_module_dumpcore.c` writes it:
//!
//! | file offset | contents |
//! | --- | --- |
//! | 0 | ELF header (`ELFOSABI_STANDALONE`, `EM_X86_64`, `e_phnum` 2) |
//! | 64 | `PT_NOTE` phdr, then `PT_LOAD` phdr |
//! | 176 | one note: name `CORE`, `NT_PRSTATUS`, a 336-byte `struct elf_prstatus` |
//! | 4096 ([`CORE_MEM_OFFSET`]) | guest memory from GPA 0, `p_vaddr` 0, `p_filesz` = size |
//!
//! The registers in `pr_reg` (a `struct user_regs_struct`) are the vCPU's
//! ([`CoreRegs::from_kvm`]) with the guest's trap frame laid over them when the HALT
//! cookie carries one ([`regs_from_trap_frame`]), so `gdb` shows the faulting
//! instruction rather than the `outl` of the HALT hypercall.
//!
//! Differences from upstream, none visible to `gdb`: memory starts at a page-aligned
//! offset (upstream: right after the note) so that skipped pages become real holes in
//! the file system; the `PT_LOAD` says `RWX` and `p_align` 4096 (upstream: 0 and 0); the
//! note's `n_namesz` is 5 (`"CORE\0"`, as Linux writes it; upstream counts the padding).
//!
//! Everything except [`create_core_file`] is pure: [`write_core`] works on any
//! `Write + Seek`, and which pages are worth reading is the caller's `is_resident` hint
//! (upstream asks `mincore`). Panic contract: nothing here panics on any input.

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Page granularity of the memory dump (and of the residency hint).
pub const CORE_PAGE_SIZE: usize = 4096;
/// File offset of guest memory (GPA 0) in the core file.
pub const CORE_MEM_OFFSET: u64 = 4096;

/// `ET_CORE`.
pub const ET_CORE: u16 = 4;
/// `EM_X86_64`.
pub const EM_X86_64: u16 = 62;
/// `EV_CURRENT`.
pub const EV_CURRENT: u8 = 1;
/// `ELFCLASS64`.
pub const ELFCLASS64: u8 = 2;
/// `ELFDATA2LSB`.
pub const ELFDATA2LSB: u8 = 1;
/// `ELFOSABI_STANDALONE`: what upstream puts in `e_ident[EI_OSABI]`.
pub const ELFOSABI_STANDALONE: u8 = 255;
/// `PT_LOAD`.
pub const PT_LOAD: u32 = 1;
/// `PT_NOTE`.
pub const PT_NOTE: u32 = 4;
/// `PF_X`.
pub const PF_X: u32 = 1;
/// `PF_W`.
pub const PF_W: u32 = 2;
/// `PF_R`.
pub const PF_R: u32 = 4;
/// `NT_PRSTATUS`.
pub const NT_PRSTATUS: u32 = 1;

/// `sizeof(Elf64_Ehdr)`.
pub const ELF64_EHDR_SIZE: usize = 64;
/// `sizeof(Elf64_Phdr)`.
pub const ELF64_PHDR_SIZE: usize = 56;
/// `sizeof(Elf64_Nhdr)`.
pub const ELF64_NHDR_SIZE: usize = 12;
/// The note name, NUL included (`n_namesz`).
pub const CORE_NOTE_NAME: &[u8] = b"CORE\0";
/// The note name padded to 4 bytes, as stored.
const CORE_NOTE_NAME_PADDED: [u8; 8] = *b"CORE\0\0\0\0";
/// `sizeof(struct elf_prstatus)` on x86_64 (`prstatus_t`).
pub const PRSTATUS_SIZE: usize = 336;
/// Offset of `pr_reg` inside `struct elf_prstatus` on x86_64.
pub const PRSTATUS_PR_REG_OFFSET: usize = 112;
/// Number of registers in `struct user_regs_struct` (`ELF_NGREG`).
pub const USER_REGS_COUNT: usize = 27;
/// Size of the trap frame (`struct x86_trap_regs`) a guest passes as the HALT cookie.
pub const TRAP_REGS_SIZE: usize = 56;

const PHNUM: u16 = 2;
// The same sizes in the types of their header fields.
const E_EHSIZE: u16 = 64;
const E_PHENTSIZE: u16 = 56;
const N_NAMESZ: u32 = 5;
const N_DESCSZ: u32 = 336;
const _: () = assert!(E_EHSIZE as usize == ELF64_EHDR_SIZE);
const _: () = assert!(E_PHENTSIZE as usize == ELF64_PHDR_SIZE);
const _: () = assert!(N_NAMESZ as usize == CORE_NOTE_NAME.len());
const _: () = assert!(N_DESCSZ as usize == PRSTATUS_SIZE);
const NOTE_OFFSET: usize = ELF64_EHDR_SIZE + PHNUM as usize * ELF64_PHDR_SIZE;
const NOTE_SIZE: usize = ELF64_NHDR_SIZE + CORE_NOTE_NAME_PADDED.len() + PRSTATUS_SIZE;
/// Length of everything before the memory: headers and the note.
pub const CORE_HEADERS_SIZE: usize = NOTE_OFFSET + NOTE_SIZE;

const _: () = assert!(CORE_HEADERS_SIZE as u64 <= CORE_MEM_OFFSET);
const _: () = assert!(CORE_MEM_OFFSET % CORE_PAGE_SIZE as u64 == 0);
const _: () = assert!(PRSTATUS_PR_REG_OFFSET + USER_REGS_COUNT * 8 + 8 == PRSTATUS_SIZE);

/// The registers of `NT_PRSTATUS`, in the order of x86_64 `struct user_regs_struct`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[allow(missing_docs)] // the field names are the register names
pub struct CoreRegs {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub rbp: u64,
    pub rbx: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rax: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    /// The syscall number at kernel entry; always 0 for a guest (as upstream).
    pub orig_rax: u64,
    pub rip: u64,
    pub cs: u64,
    /// `eflags` in `user_regs_struct`.
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
    pub fs_base: u64,
    pub gs_base: u64,
    pub ds: u64,
    pub es: u64,
    pub fs: u64,
    pub gs: u64,
}

impl CoreRegs {
    /// The vCPU state as `KVM_GET_REGS` and `KVM_GET_SREGS` return it.
    pub fn from_kvm(regs: &kvm_bindings::kvm_regs, sregs: &kvm_bindings::kvm_sregs) -> Self {
        Self {
            r15: regs.r15,
            r14: regs.r14,
            r13: regs.r13,
            r12: regs.r12,
            rbp: regs.rbp,
            rbx: regs.rbx,
            r11: regs.r11,
            r10: regs.r10,
            r9: regs.r9,
            r8: regs.r8,
            rax: regs.rax,
            rcx: regs.rcx,
            rdx: regs.rdx,
            rsi: regs.rsi,
            rdi: regs.rdi,
            orig_rax: 0,
            rip: regs.rip,
            cs: sregs.cs.selector.into(),
            rflags: regs.rflags,
            rsp: regs.rsp,
            ss: sregs.ss.selector.into(),
            fs_base: sregs.fs.base,
            gs_base: sregs.gs.base,
            ds: sregs.ds.selector.into(),
            es: sregs.es.selector.into(),
            fs: sregs.fs.selector.into(),
            gs: sregs.gs.selector.into(),
        }
    }

    /// The registers in `user_regs_struct` order.
    pub fn to_user_regs(&self) -> [u64; USER_REGS_COUNT] {
        [
            self.r15,
            self.r14,
            self.r13,
            self.r12,
            self.rbp,
            self.rbx,
            self.r11,
            self.r10,
            self.r9,
            self.r8,
            self.rax,
            self.rcx,
            self.rdx,
            self.rsi,
            self.rdi,
            self.orig_rax,
            self.rip,
            self.cs,
            self.rflags,
            self.rsp,
            self.ss,
            self.fs_base,
            self.gs_base,
            self.ds,
            self.es,
            self.fs,
            self.gs,
        ]
    }
}

/// The trap frame Solo5's guest exception handler passes as the HALT cookie
/// (`struct trap_regs` in `bindings/cpu_x86_64.h`, seven little-endian `u64`s).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[allow(missing_docs)] // the field names are the register names
pub struct TrapRegs {
    /// Faulting address of a page fault.
    pub cr2: u64,
    /// Error code of the exception (0 if it has none).
    pub ec: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

impl TrapRegs {
    /// Reads a trap frame from the start of `cookie`; `None` if it is too short.
    pub fn from_bytes(cookie: &[u8]) -> Option<Self> {
        let frame = cookie.get(..TRAP_REGS_SIZE)?;
        let mut words = frame.chunks_exact(8).map(|w| {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(w);
            u64::from_le_bytes(bytes)
        });
        Some(Self {
            cr2: words.next()?,
            ec: words.next()?,
            rip: words.next()?,
            cs: words.next()?,
            rflags: words.next()?,
            rsp: words.next()?,
            ss: words.next()?,
        })
    }
}

/// The registers for the core: `fallback` (the vCPU's, see [`CoreRegs::from_kvm`]) with
/// `rip`, `cs`, `rflags`, `rsp` and `ss` taken from the trap frame in `cookie_bytes`, as
/// upstream does.
///
/// Pass the bytes copied from the guest at the HALT cookie address (upstream reads
/// `HVT_HALT_COOKIE_MAX` bytes), or an empty slice when the cookie was 0. Solo5 passes a
/// cookie only from its exception handler; a cookie shorter than a trap frame is ignored.
pub fn regs_from_trap_frame(cookie_bytes: &[u8], fallback: &CoreRegs) -> CoreRegs {
    match TrapRegs::from_bytes(cookie_bytes) {
        Some(trap) => CoreRegs {
            rip: trap.rip,
            cs: trap.cs,
            rflags: trap.rflags,
            rsp: trap.rsp,
            ss: trap.ss,
            ..*fallback
        },
        None => *fallback,
    }
}

/// `DIR/core.solo5-hvt.PID`.
pub fn core_path(dir: &Path, pid: u32) -> PathBuf {
    dir.join(format!("core.solo5-hvt.{pid}"))
}

/// Creates the core file for `pid` in `dir`: new (never overwrites), mode 0600, as
/// upstream's `openat(O_WRONLY | O_CREAT | O_EXCL, S_IRUSR | S_IWUSR)`.
pub fn create_core_file(dir: &Path, pid: u32) -> io::Result<(File, PathBuf)> {
    let path = core_path(dir, pid);
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)?;
    Ok((file, path))
}

/// What [`write_core`] wrote, for upstream's `dumped %zd pages of total %zd pages`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoreStats {
    /// Pages written with data.
    pub pages_dumped: usize,
    /// Pages of guest memory (the last one may be partial).
    pub pages_total: usize,
}

/// The ELF header, program headers and `NT_PRSTATUS` note for a core of `mem_len`
/// bytes of guest memory: the first [`CORE_HEADERS_SIZE`] bytes of the file.
pub fn core_headers(regs: &CoreRegs, mem_len: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(CORE_HEADERS_SIZE);

    // Elf64_Ehdr.
    out.extend_from_slice(&[0x7f, b'E', b'L', b'F', ELFCLASS64, ELFDATA2LSB, EV_CURRENT]);
    out.push(ELFOSABI_STANDALONE);
    out.extend_from_slice(&[0; 8]); // EI_ABIVERSION and padding
    out.extend_from_slice(&ET_CORE.to_le_bytes());
    out.extend_from_slice(&EM_X86_64.to_le_bytes());
    out.extend_from_slice(&u32::from(EV_CURRENT).to_le_bytes()); // e_version
    out.extend_from_slice(&0u64.to_le_bytes()); // e_entry
    out.extend_from_slice(&u64::from(E_EHSIZE).to_le_bytes()); // e_phoff
    out.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
    out.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    out.extend_from_slice(&E_EHSIZE.to_le_bytes());
    out.extend_from_slice(&E_PHENTSIZE.to_le_bytes());
    out.extend_from_slice(&PHNUM.to_le_bytes()); // e_phnum
    out.extend_from_slice(&[0; 6]); // e_shentsize, e_shnum, e_shstrndx

    let note = Phdr {
        p_type: PT_NOTE,
        p_flags: 0,
        p_offset: NOTE_OFFSET as u64,
        p_vaddr: 0,
        p_filesz: NOTE_SIZE as u64,
        p_memsz: NOTE_SIZE as u64,
        p_align: 4,
    };
    note.emit(&mut out);
    let load = Phdr {
        p_type: PT_LOAD,
        p_flags: PF_R | PF_W | PF_X,
        p_offset: CORE_MEM_OFFSET,
        p_vaddr: 0,
        p_filesz: mem_len,
        p_memsz: mem_len,
        p_align: CORE_PAGE_SIZE as u64,
    };
    load.emit(&mut out);

    // Elf64_Nhdr, name, then struct elf_prstatus: all zero but pr_reg, as upstream
    // (no signal, no pid: the guest has neither).
    out.extend_from_slice(&N_NAMESZ.to_le_bytes());
    out.extend_from_slice(&N_DESCSZ.to_le_bytes());
    out.extend_from_slice(&NT_PRSTATUS.to_le_bytes());
    out.extend_from_slice(&CORE_NOTE_NAME_PADDED);
    let mut prstatus = [0u8; PRSTATUS_SIZE];
    for (slot, reg) in prstatus[PRSTATUS_PR_REG_OFFSET..]
        .chunks_exact_mut(8)
        .zip(regs.to_user_regs())
    {
        slot.copy_from_slice(&reg.to_le_bytes());
    }
    out.extend_from_slice(&prstatus);

    debug_assert_eq!(out.len(), CORE_HEADERS_SIZE);
    out
}

struct Phdr {
    p_type: u32,
    p_flags: u32,
    p_offset: u64,
    p_vaddr: u64,
    p_filesz: u64,
    p_memsz: u64,
    p_align: u64,
}

impl Phdr {
    fn emit(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.p_type.to_le_bytes());
        out.extend_from_slice(&self.p_flags.to_le_bytes());
        out.extend_from_slice(&self.p_offset.to_le_bytes());
        out.extend_from_slice(&self.p_vaddr.to_le_bytes());
        out.extend_from_slice(&self.p_vaddr.to_le_bytes()); // p_paddr = p_vaddr (identity)
        out.extend_from_slice(&self.p_filesz.to_le_bytes());
        out.extend_from_slice(&self.p_memsz.to_le_bytes());
        out.extend_from_slice(&self.p_align.to_le_bytes());
    }
}

/// Writes a core file for guest memory `mem` (GPA 0 onwards) with registers `regs` to
/// `out`, starting at offset 0 of `out`.
///
/// Page `i` (`mem[i * CORE_PAGE_SIZE..]`) is read only if `is_resident(i)`, and written
/// only if it also holds a non-zero byte; every other page is seeked over, so on a file
/// it is a hole and reads back as zeros. A page that is not resident is taken to be all
/// zeros. The file always ends exactly at the end of the memory image.
///
/// The guest must not be running while this reads `mem`.
pub fn write_core<W: Write + Seek>(
    out: &mut W,
    regs: &CoreRegs,
    mem: &[u8],
    is_resident: impl Fn(usize) -> bool,
) -> io::Result<CoreStats> {
    let too_big = || io::Error::new(io::ErrorKind::InvalidInput, "guest memory too large");
    let mem_len = u64::try_from(mem.len()).map_err(|_| too_big())?;
    let file_len = CORE_MEM_OFFSET.checked_add(mem_len).ok_or_else(too_big)?;

    out.seek(SeekFrom::Start(0))?;
    out.write_all(&core_headers(regs, mem_len))?;

    let mut written_end = CORE_HEADERS_SIZE as u64;
    let mut stats = CoreStats {
        pages_dumped: 0,
        pages_total: 0,
    };
    // `page_offset` advances by CORE_PAGE_SIZE per page and stays <= mem_len.
    let mut page_offset = CORE_MEM_OFFSET;
    for (index, page) in mem.chunks(CORE_PAGE_SIZE).enumerate() {
        stats.pages_total += 1;
        if is_resident(index) && page.iter().any(|&b| b != 0) {
            out.seek(SeekFrom::Start(page_offset))?;
            out.write_all(page)?;
            stats.pages_dumped += 1;
            written_end = page_offset + page.len() as u64;
        }
        page_offset += page.len() as u64;
    }
    if written_end < file_len {
        // Give the file its full length; the skipped tail reads back as zeros.
        out.seek(SeekFrom::Start(file_len - 1))?;
        out.write_all(&[0])?;
    }
    out.flush()?;
    Ok(stats)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use std::io::Cursor;

    fn u16_at(b: &[u8], at: usize) -> u16 {
        u16::from_le_bytes(b[at..at + 2].try_into().unwrap())
    }
    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
    }
    fn u64_at(b: &[u8], at: usize) -> u64 {
        u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
    }

    /// A minimal reader of what a debugger needs from the core.
    #[derive(Debug)]
    struct ParsedCore {
        note: (u64, u64),
        load: (u64, u64, u64, u64, u32),
        user_regs: Vec<u64>,
    }

    fn parse_core(core: &[u8]) -> ParsedCore {
        assert_eq!(&core[..4], b"\x7fELF");
        assert_eq!(core[4], ELFCLASS64);
        assert_eq!(core[5], ELFDATA2LSB);
        assert_eq!(core[6], EV_CURRENT);
        assert_eq!(core[7], ELFOSABI_STANDALONE);
        assert_eq!(u16_at(core, 16), ET_CORE);
        assert_eq!(u16_at(core, 18), EM_X86_64);
        assert_eq!(u32_at(core, 20), 1);
        assert_eq!(u16_at(core, 52), 64);
        assert_eq!(u16_at(core, 54), 56);
        let phoff = usize::try_from(u64_at(core, 32)).unwrap();
        let phnum = u16_at(core, 56);
        assert_eq!(phnum, 2);
        assert_eq!(u64_at(core, 40), 0, "no section headers");

        let mut note = None;
        let mut load = None;
        for i in 0..usize::from(phnum) {
            let ph = &core[phoff + i * 56..phoff + (i + 1) * 56];
            let (offset, vaddr, paddr) = (u64_at(ph, 8), u64_at(ph, 16), u64_at(ph, 24));
            let (filesz, memsz) = (u64_at(ph, 32), u64_at(ph, 40));
            match u32_at(ph, 0) {
                PT_NOTE => note = Some((offset, filesz)),
                PT_LOAD => {
                    assert_eq!(vaddr, paddr);
                    assert_eq!(filesz, memsz);
                    assert_eq!(offset % u64_at(ph, 48), vaddr % u64_at(ph, 48));
                    load = Some((offset, vaddr, filesz, memsz, u32_at(ph, 4)));
                }
                other => panic!("unexpected p_type {other}"),
            }
        }
        let note = note.unwrap();

        // Walk the notes in the PT_NOTE segment.
        let (start, len) = (
            usize::try_from(note.0).unwrap(),
            usize::try_from(note.1).unwrap(),
        );
        let notes = &core[start..start + len];
        let namesz = usize::try_from(u32_at(notes, 0)).unwrap();
        let descsz = usize::try_from(u32_at(notes, 4)).unwrap();
        assert_eq!(u32_at(notes, 8), NT_PRSTATUS);
        assert_eq!(&notes[12..12 + namesz], b"CORE\0");
        let desc_at = 12 + namesz.next_multiple_of(4);
        assert_eq!(descsz, PRSTATUS_SIZE);
        assert_eq!(
            desc_at + descsz.next_multiple_of(4),
            notes.len(),
            "one note only"
        );
        let desc = &notes[desc_at..desc_at + descsz];
        let user_regs = (0..USER_REGS_COUNT)
            .map(|i| u64_at(desc, PRSTATUS_PR_REG_OFFSET + i * 8))
            .collect();

        ParsedCore {
            note,
            load: load.unwrap(),
            user_regs,
        }
    }

    fn sample_regs() -> CoreRegs {
        CoreRegs {
            r15: 15,
            r14: 14,
            r13: 13,
            r12: 12,
            rbp: 0x1_ff00,
            rbx: 3,
            r11: 11,
            r10: 10,
            r9: 9,
            r8: 8,
            rax: 1,
            rcx: 4,
            rdx: 5,
            rsi: 6,
            rdi: 7,
            orig_rax: 0,
            rip: 0x10_1234,
            cs: 0x8,
            rflags: 0x2,
            rsp: 0x1_fff0,
            ss: 0x10,
            fs_base: 0xf5,
            gs_base: 0x65,
            ds: 0x10,
            es: 0x10,
            fs: 0x10,
            gs: 0x10,
        }
    }

    fn write_to_vec(
        regs: &CoreRegs,
        mem: &[u8],
        resident: impl Fn(usize) -> bool,
    ) -> (Vec<u8>, CoreStats) {
        let mut cursor = Cursor::new(Vec::new());
        let stats = write_core(&mut cursor, regs, mem, resident).unwrap();
        (cursor.into_inner(), stats)
    }

    #[test]
    fn headers_and_note() {
        let mut mem = vec![0u8; 4 * CORE_PAGE_SIZE];
        mem[0x1000..0x1004].copy_from_slice(b"\xde\xad\xbe\xef");
        let regs = sample_regs();
        let (core, _) = write_to_vec(&regs, &mem, |_| true);
        let parsed = parse_core(&core);

        assert_eq!(parsed.note, (176, 12 + 8 + 336));
        assert_eq!(
            parsed.load,
            (CORE_MEM_OFFSET, 0, mem.len() as u64, mem.len() as u64, 7)
        );
        assert_eq!(parsed.user_regs, regs.to_user_regs());
        // rip and rsp at their user_regs_struct slots: 16 and 19.
        assert_eq!(u64_at(&core, 176 + 20 + 112 + 16 * 8), 0x10_1234);
        assert_eq!(u64_at(&core, 176 + 20 + 112 + 19 * 8), 0x1_fff0);
        // Everything but pr_reg in elf_prstatus is zero (no signal, no pid).
        let desc = &core[196..196 + PRSTATUS_SIZE];
        assert!(desc[..PRSTATUS_PR_REG_OFFSET].iter().all(|&b| b == 0));
        assert!(desc[PRSTATUS_PR_REG_OFFSET + 216..].iter().all(|&b| b == 0));
        // Memory round-trips at p_offset + GPA.
        assert_eq!(core.len(), 4096 + mem.len());
        assert_eq!(&core[4096..], &mem[..]);
    }

    #[test]
    fn header_bytes_fixture() {
        let core = core_headers(&CoreRegs::default(), 0x200_0000);
        assert_eq!(core.len(), CORE_HEADERS_SIZE);
        assert_eq!(CORE_HEADERS_SIZE, 532);
        let expected_ehdr: [u8; 64] = [
            0x7f, b'E', b'L', b'F', 2, 1, 1, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, // e_ident
            4, 0, 62, 0, 1, 0, 0, 0, // e_type, e_machine, e_version
            0, 0, 0, 0, 0, 0, 0, 0, // e_entry
            64, 0, 0, 0, 0, 0, 0, 0, // e_phoff
            0, 0, 0, 0, 0, 0, 0, 0, // e_shoff
            0, 0, 0, 0, 64, 0, 56, 0, // e_flags, e_ehsize, e_phentsize
            2, 0, 0, 0, 0, 0, 0, 0, // e_phnum, e_shentsize, e_shnum, e_shstrndx
        ];
        assert_eq!(core[..64], expected_ehdr);
        let expected_load: [u8; 56] = [
            1, 0, 0, 0, 7, 0, 0, 0, // p_type, p_flags
            0, 0x10, 0, 0, 0, 0, 0, 0, // p_offset
            0, 0, 0, 0, 0, 0, 0, 0, // p_vaddr
            0, 0, 0, 0, 0, 0, 0, 0, // p_paddr
            0, 0, 0, 2, 0, 0, 0, 0, // p_filesz
            0, 0, 0, 2, 0, 0, 0, 0, // p_memsz
            0, 0x10, 0, 0, 0, 0, 0, 0, // p_align
        ];
        assert_eq!(core[120..176], expected_load);
        assert_eq!(
            core[176..196],
            *b"\x05\0\0\0\x50\x01\0\0\x01\0\0\0CORE\0\0\0\0"
        );
    }

    #[test]
    fn sparse_pages() {
        let mut mem = vec![0u8; 6 * CORE_PAGE_SIZE];
        mem[0] = 1; // page 0: data, resident
        mem[2 * CORE_PAGE_SIZE + 7] = 2; // page 2: data, but not resident
        mem[3 * CORE_PAGE_SIZE + 4095] = 3; // page 3: data, resident
        // page 1, 4, 5: zero
        let resident = |i: usize| i != 2;

        // Record which byte ranges were actually written.
        struct Recorder {
            inner: Cursor<Vec<u8>>,
            writes: Vec<(u64, usize)>,
        }
        impl Write for Recorder {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                self.writes.push((self.inner.position(), buf.len()));
                self.inner.write(buf)
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        impl Seek for Recorder {
            fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
                self.inner.seek(pos)
            }
        }
        let mut out = Recorder {
            inner: Cursor::new(Vec::new()),
            writes: vec![],
        };
        let stats = write_core(&mut out, &sample_regs(), &mem, resident).unwrap();
        assert_eq!(
            stats,
            CoreStats {
                pages_dumped: 2,
                pages_total: 6
            }
        );
        let end = CORE_MEM_OFFSET + mem.len() as u64;
        assert_eq!(
            out.writes,
            vec![
                (0, CORE_HEADERS_SIZE),
                (CORE_MEM_OFFSET, CORE_PAGE_SIZE),
                (CORE_MEM_OFFSET + 3 * 4096, CORE_PAGE_SIZE),
                (end - 1, 1),
            ]
        );
        let core = out.inner.into_inner();
        assert_eq!(core.len() as u64, end);
        let image = &core[4096..];
        assert_eq!(image[0], 1);
        assert_eq!(
            image[2 * CORE_PAGE_SIZE + 7],
            0,
            "non-resident page reads as zero"
        );
        assert_eq!(image[3 * CORE_PAGE_SIZE + 4095], 3);
    }

    #[test]
    fn last_page_written_needs_no_padding_byte() {
        let mut mem = vec![0u8; 2 * CORE_PAGE_SIZE];
        mem[CORE_PAGE_SIZE] = 9;
        let (core, stats) = write_to_vec(&CoreRegs::default(), &mem, |_| true);
        assert_eq!(stats.pages_dumped, 1);
        assert_eq!(core.len(), 4096 + mem.len());
        assert_eq!(core[4096 + CORE_PAGE_SIZE], 9);
    }

    #[test]
    fn partial_last_page_and_empty_memory() {
        let mem = vec![0xaau8; CORE_PAGE_SIZE + 100];
        let (core, stats) = write_to_vec(&CoreRegs::default(), &mem, |_| true);
        assert_eq!(
            stats,
            CoreStats {
                pages_dumped: 2,
                pages_total: 2
            }
        );
        assert_eq!(&core[4096..], &mem[..]);
        assert_eq!(parse_core(&core).load.2, mem.len() as u64);

        let (core, stats) = write_to_vec(&CoreRegs::default(), &[], |_| true);
        assert_eq!(stats.pages_total, 0);
        assert_eq!(core.len(), 4096);
        assert_eq!(parse_core(&core).load.2, 0);
    }

    #[test]
    fn rewrites_from_offset_zero() {
        let mut cursor = Cursor::new(vec![0xffu8; 10]);
        cursor.set_position(10);
        write_core(&mut cursor, &CoreRegs::default(), &[0; 16], |_| true).unwrap();
        let core = cursor.into_inner();
        assert_eq!(&core[..4], b"\x7fELF");
        assert_eq!(core.len(), 4096 + 16);
    }

    fn trap_frame_bytes(frame: [u64; 7], extra: usize) -> Vec<u8> {
        let mut bytes: Vec<u8> = frame.iter().flat_map(|w| w.to_le_bytes()).collect();
        bytes.resize(bytes.len() + extra, 0xee);
        bytes
    }

    #[test]
    fn trap_frame_overlay() {
        let vcpu = sample_regs();
        let cookie = trap_frame_bytes(
            [0xdead_0000, 0x2, 0x10_5678, 0x8, 0x10046, 0x7_0000, 0x10],
            456,
        );
        assert_eq!(cookie.len(), 512);
        assert_eq!(
            TrapRegs::from_bytes(&cookie),
            Some(TrapRegs {
                cr2: 0xdead_0000,
                ec: 2,
                rip: 0x10_5678,
                cs: 8,
                rflags: 0x10046,
                rsp: 0x7_0000,
                ss: 0x10,
            })
        );
        let regs = regs_from_trap_frame(&cookie, &vcpu);
        assert_eq!(
            regs,
            CoreRegs {
                rip: 0x10_5678,
                cs: 8,
                rflags: 0x10046,
                rsp: 0x7_0000,
                ss: 0x10,
                ..vcpu
            }
        );
        // Exactly one frame is enough; anything shorter is ignored.
        let exact = trap_frame_bytes([1, 2, 3, 4, 5, 6, 7], 0);
        assert_eq!(regs_from_trap_frame(&exact, &vcpu).rip, 3);
        assert_eq!(regs_from_trap_frame(&exact[..55], &vcpu), vcpu);
        assert_eq!(regs_from_trap_frame(&[], &vcpu), vcpu);
    }

    #[test]
    fn from_kvm_maps_every_register() {
        let regs = kvm_bindings::kvm_regs {
            rax: 1,
            rbx: 2,
            rcx: 3,
            rdx: 4,
            rsi: 5,
            rdi: 6,
            rsp: 7,
            rbp: 8,
            r8: 9,
            r9: 10,
            r10: 11,
            r11: 12,
            r12: 13,
            r13: 14,
            r14: 15,
            r15: 16,
            rip: 17,
            rflags: 18,
        };
        let segment = |selector: u16, base: u64| kvm_bindings::kvm_segment {
            base,
            selector,
            ..Default::default()
        };
        let sregs = kvm_bindings::kvm_sregs {
            cs: segment(0x8, 0),
            ds: segment(0x10, 0),
            es: segment(0x18, 0),
            fs: segment(0x20, 0xf000),
            gs: segment(0x28, 0x6000),
            ss: segment(0x30, 0),
            ..Default::default()
        };
        let core = CoreRegs::from_kvm(&regs, &sregs);
        assert_eq!(
            core.to_user_regs(),
            [
                16, 15, 14, 13, 8, 2, 12, 11, 10, 9, 1, 3, 4, 5, 6, 0, 17, 0x8, 18, 7, 0x30,
                0xf000, 0x6000, 0x10, 0x18, 0x20, 0x28
            ]
        );
    }

    #[test]
    fn path_and_file() {
        assert_eq!(
            core_path(Path::new("/var/crash"), 4242),
            PathBuf::from("/var/crash/core.solo5-hvt.4242")
        );
        let dir = std::env::temp_dir().join(format!("petrel-dumpcore-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (mut file, path) = create_core_file(&dir, 7).unwrap();
        assert_eq!(path, dir.join("core.solo5-hvt.7"));
        let mut mem = vec![0u8; 64 * CORE_PAGE_SIZE];
        mem[5 * CORE_PAGE_SIZE] = 1;
        write_core(&mut file, &sample_regs(), &mem, |_| true).unwrap();
        drop(file);
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.len(), 4096 + mem.len() as u64);
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        // Sparse on file systems with holes: far fewer blocks than the 260 KiB length.
        assert!(meta.blocks() * 512 < meta.len(), "blocks={}", meta.blocks());
        assert_eq!(std::fs::read(&path).unwrap()[4096..], mem[..]);
        // Never overwrites an existing core.
        let again = create_core_file(&dir, 7).unwrap_err();
        assert_eq!(again.kind(), io::ErrorKind::AlreadyExists);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Loads the `PT_LOAD` segments of a static ELF executable into `mem`.
    fn load_exe(exe: &[u8], mem: &mut [u8]) {
        let phoff = usize::try_from(u64_at(exe, 32)).unwrap();
        for i in 0..usize::from(u16_at(exe, 56)) {
            let ph = &exe[phoff + i * 56..phoff + (i + 1) * 56];
            if u32_at(ph, 0) != PT_LOAD {
                continue;
            }
            let offset = usize::try_from(u64_at(ph, 8)).unwrap();
            let vaddr = usize::try_from(u64_at(ph, 16)).unwrap();
            let filesz = usize::try_from(u64_at(ph, 32)).unwrap();
            mem[vaddr..vaddr + filesz].copy_from_slice(&exe[offset..offset + filesz]);
        }
    }

    /// Builds a tiny static executable at 0x100000 with `gcc`, fakes the state of a
    /// guest that faulted in `crash_here` called from `middle` called from `_start`, and
    /// asks `gdb` to read the core: registers, backtrace, a variable.
    #[test]
    #[ignore = "needs gcc and gdb on the host; run with --ignored"]
    fn gdb_reads_the_core() {
        use std::process::Command;
        let dir = std::env::temp_dir().join(format!("petrel-dumpcore-gdb-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let source = dir.join("k.c");
        std::fs::write(
            &source,
            "volatile int sink;\n\
             __attribute__((noinline)) void crash_here(int x) { sink = x; *(volatile int *)0 = x; }\n\
             __attribute__((noinline)) void middle(int x) { crash_here(x + 1); sink = 2; }\n\
             void _start(void) { middle(41); for (;;) ; }\n",
        )
        .unwrap();
        let exe = dir.join("k");
        let status = Command::new("gcc")
            .args(["-O1", "-g", "-fno-pie", "-no-pie", "-nostdlib", "-static"])
            .args([
                "-fno-omit-frame-pointer",
                "-Wl,-Ttext-segment=0x100000",
                "-o",
            ])
            .arg(&exe)
            .arg(&source)
            .status()
            .unwrap();
        assert!(status.success());
        let exe_bytes = std::fs::read(&exe).unwrap();

        let mut mem = vec![0u8; 2 << 20];
        load_exe(&exe_bytes, &mut mem);
        // The code above, as gcc -O1 lays it out (checked below through gdb):
        // crash_here faults at its second instruction; middle's return address and
        // saved rbp, then _start's, are on the stack.
        let sym = |name: &str| -> u64 {
            let out = Command::new("gdb")
                .args(["-batch", "-nx", "-ex"])
                .arg(format!("print/x (long)&{name}"))
                .arg(&exe)
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            let hex = text.trim().rsplit("0x").next().unwrap();
            u64::from_str_radix(hex, 16).unwrap()
        };
        let (crash_here, middle, start) = (sym("crash_here"), sym("middle"), sym("_start"));
        let sink = usize::try_from(sym("sink")).unwrap();
        mem[sink..sink + 4].copy_from_slice(&42u32.to_le_bytes());
        let stack = 0x1f_fe00usize;
        let put =
            |mem: &mut [u8], at: usize, v: u64| mem[at..at + 8].copy_from_slice(&v.to_le_bytes());
        put(&mut mem, stack, middle + 0xc); // return into middle, after `call crash_here`
        put(&mut mem, stack + 8, (stack + 0x18) as u64); // middle's saved rbp
        put(&mut mem, stack + 0x10, start + 0xe); // return into _start, after `call middle`
        put(&mut mem, stack + 0x18, 0);
        let vcpu = CoreRegs {
            rip: 0x10_dead, // where the HALT hypercall was; the trap frame overrides it
            rbp: (stack + 8) as u64,
            rdi: 42,
            ..sample_regs()
        };
        let frame = trap_frame_bytes([0, 2, crash_here + 6, 8, 0x10002, stack as u64, 0x10], 456);
        let regs = regs_from_trap_frame(&frame, &vcpu);

        let (mut file, core) = create_core_file(&dir, 1).unwrap();
        write_core(&mut file, &regs, &mem, |_| true).unwrap();
        drop(file);

        let out = Command::new("gdb")
            .args(["-batch", "-nx"])
            .args(["-ex", "info registers rip rsp rdi cs ss eflags fs_base"])
            .args(["-ex", "bt"])
            .args(["-ex", "print sink"])
            .arg(&exe)
            .arg(&core)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        eprintln!("{text}\n{}", String::from_utf8_lossy(&out.stderr));
        assert!(
            text.contains(&format!("rip            {:#x}", crash_here + 6)),
            "{text}"
        );
        assert!(
            text.contains(&format!("rsp            {stack:#x}")),
            "{text}"
        );
        assert!(text.contains("rdi            0x2a"), "{text}");
        assert!(text.contains("fs_base        0xf5"), "{text}");
        let crash = text.find("crash_here").unwrap();
        let mid = text[crash..].find("middle").unwrap();
        assert!(text[crash + mid..].contains("_start"), "{text}");
        assert!(text.contains("$1 = 42"), "{text}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
