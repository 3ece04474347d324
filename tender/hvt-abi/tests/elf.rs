//! ELF header and segment checks, one fixture per rule, in upstream's order.
#![allow(missing_docs, clippy::unwrap_used, clippy::cast_possible_truncation)]

mod common;

use common::*;
use hvt_abi::elf::{Elf, ElfError, LoadPlan, PT_LOAD, Prot, Segment};

const MEM: u64 = 512 * MIB;

fn parse(b: &ElfBuilder) -> Result<(), ElfError> {
    Elf::parse(&b.build()).map(|_| ())
}

fn plan(b: &ElfBuilder, mem: u64) -> Result<LoadPlan, ElfError> {
    Elf::parse(&b.build()).unwrap().load_plan(mem)
}

/// A builder with one text segment and `ph` as a second loadable segment.
fn with_second(ph: Ph) -> ElfBuilder {
    let mut b = ElfBuilder::new();
    b.load(0x10_0000, &TEXT, 64, RX);
    b.ph(ph);
    b
}

/// A loadable segment at `vaddr` backed by real file bytes.
fn load_ph(b: &mut ElfBuilder, vaddr: u64, filesz: u64, memsz: u64, align: u64, flags: u32) -> Ph {
    let p_offset = b.blob(&vec![0xab; filesz as usize]);
    Ph {
        p_type: PT_LOAD,
        p_flags: flags,
        p_offset,
        p_vaddr: vaddr,
        p_paddr: vaddr,
        p_filesz: filesz,
        p_memsz: memsz,
        p_align: align,
    }
}

fn one_segment(vaddr: u64, filesz: u64, memsz: u64, align: u64, flags: u32) -> ElfBuilder {
    let mut b = ElfBuilder::new();
    let ph = load_ph(&mut b, vaddr, filesz, memsz, align, flags);
    b.ph(ph);
    b
}

#[test]
fn typical_executable_is_accepted() {
    let file = typical().build();
    let elf = Elf::parse(&file).unwrap();
    assert_eq!(elf.entry(), 0x10_0000);
    assert_eq!(elf.phnum(), 8);
    let plan = elf.load_plan(MEM).unwrap();
    assert_eq!(
        plan,
        LoadPlan {
            entry: 0x10_0000,
            kernel_end: 0x10_4000
        }
    );
    let segs: Vec<Segment> = elf.segments(MEM).map(Result::unwrap).collect();
    assert_eq!(
        segs.len(),
        3,
        "the BSS-only PT_LOAD and the others are skipped"
    );
    let summary: Vec<_> = segs
        .iter()
        .map(|s| {
            (
                s.index,
                s.vaddr,
                s.filesz,
                s.memsz,
                s.prot,
                s.protect_range(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (0, 0x10_0000, 64, 64, Prot::Read, 0x10_0000..0x10_1000),
            (1, 0x10_1000, 32, 32, Prot::Read, 0x10_1000..0x10_2000),
            (
                2,
                0x10_2000,
                16,
                0x1800,
                Prot::ReadWrite,
                0x10_2000..0x10_4000
            ),
        ]
    );
    assert_eq!(elf.segment_data(&segs[0]), &TEXT[..]);
    assert_eq!(elf.segment_data(&segs[1]), &RODATA[..]);
    assert_eq!(elf.segment_data(&segs[2]), &DATA[..]);
    assert_eq!(segs[2].file_range(), 0x10_2000..0x10_2010);
    assert_eq!(segs[2].zero_range(), 0x10_2010..0x10_3800);
    assert_eq!(segs[0].file_offset, BODY_START);
    assert_eq!(segs[0].align, 0x1000);
}

#[test]
fn smallest_memory_that_fits() {
    // 0x104000 is exactly the aligned end of the data segment.
    assert_eq!(plan(&typical(), 0x10_4000).unwrap().kernel_end, 0x10_4000);
    assert_eq!(
        plan(&typical(), 0x10_3fff),
        Err(ElfError::MemEndBeyondMem {
            index: 2,
            end: 0x10_4000,
            mem_size: 0x10_3fff
        })
    );
}

#[test]
fn truncated_header_at_every_length() {
    let file = typical().build();
    for len in 0..64 {
        assert_eq!(
            Elf::parse(&file[..len]).unwrap_err(),
            ElfError::HeaderSize { read: len as u64 },
            "length {len}"
        );
    }
    assert_eq!(
        ElfError::HeaderSize { read: 10 }.to_string(),
        "invalid executable: elf header does not match the expected size (10 != 64)"
    );
}

#[test]
fn every_header_field_is_checked() {
    type Breaker = fn(&mut ElfBuilder);
    let breakers: [(&str, Breaker); 13] = [
        ("magic 0", |b| b.ident[0] = 0),
        ("magic 3", |b| b.ident[3] = b'f'),
        ("ELFCLASS32", |b| b.ident[4] = 1),
        ("ELFDATA2MSB", |b| b.ident[5] = 2),
        ("e_version 0", |b| b.e_version = 0),
        ("e_version 2", |b| b.e_version = 2),
        ("e_ehsize", |b| b.e_ehsize = 52),
        ("e_phnum 0", |b| b.e_phnum = Some(0)),
        ("e_phentsize", |b| b.e_phentsize = 32),
        ("ET_DYN", |b| b.e_type = 3),
        ("ET_REL", |b| b.e_type = 1),
        ("EM_AARCH64", |b| b.e_machine = 183),
        ("EM_386", |b| b.e_machine = 3),
    ];
    for (what, breaker) in breakers {
        let mut b = typical();
        breaker(&mut b);
        assert_eq!(parse(&b), Err(ElfError::HeaderInvalid), "{what}");
    }
    assert_eq!(
        ElfError::HeaderInvalid.to_string(),
        "invalid executable: invalid or unsupported executable (elf header invalid while loading note)"
    );
}

#[test]
fn osabi_and_ident_version_are_not_checked() {
    let mut b = typical();
    b.ident[7] = 12; // ELFOSABI_OPENBSD
    b.ident[8] = 7; // EI_ABIVERSION
    b.ident[6] = 0; // EI_VERSION: upstream checks e_version, not this
    b.ident[15] = 0xff;
    assert_eq!(parse(&b), Ok(()));
}

#[test]
fn program_headers_must_be_in_the_file() {
    let mut b = typical();
    let len = b.build().len() as u64;
    b.e_phoff = Some(len);
    assert_eq!(
        parse(&b),
        Err(ElfError::PhdrSize {
            read: 0,
            expected: 8 * 56
        })
    );
    b.e_phoff = Some(len - 100);
    assert_eq!(
        parse(&b),
        Err(ElfError::PhdrSize {
            read: 100,
            expected: 8 * 56
        })
    );
    b.e_phoff = Some(u64::MAX - 10);
    assert_eq!(parse(&b), Err(ElfError::PhdrReadFailed));
    b.e_phoff = Some(1 << 63);
    assert_eq!(parse(&b), Err(ElfError::PhdrReadFailed));
    b.e_phoff = Some((1 << 63) - 1);
    assert!(matches!(parse(&b), Err(ElfError::PhdrSize { read: 0, .. })));
    // More headers claimed than there are bytes for.
    let mut b = ElfBuilder::new();
    b.load(0x10_0000, &TEXT, 64, RX);
    b.e_phnum = Some(3);
    let file = b.build();
    assert_eq!(
        Elf::parse(&file[..64 + 56]).unwrap_err(),
        ElfError::PhdrSize {
            read: 56,
            expected: 168
        }
    );
    assert_eq!(
        ElfError::PhdrSize {
            read: 56,
            expected: 168
        }
        .to_string(),
        "invalid executable: program header does not match the expected size (56 != 168 while loading note)"
    );
    // Headers may sit anywhere, e.g. at the end of the file.
    let mut b = typical();
    let mut table = Vec::new();
    for ph in &b.phdrs {
        ph.encode(&mut table);
    }
    let off = b.blob(&table);
    b.e_phoff = Some(off);
    assert_eq!(plan(&b, MEM).unwrap().kernel_end, 0x10_4000);
}

#[test]
fn entry_point_range() {
    let mut b = typical();
    b.e_entry = 0xf_ffff;
    assert_eq!(
        plan(&b, MEM),
        Err(ElfError::Entry {
            entry: 0xf_ffff,
            mem_size: MEM
        })
    );
    b.e_entry = MEM;
    assert!(matches!(plan(&b, MEM), Err(ElfError::Entry { .. })));
    b.e_entry = MEM - 1;
    assert_eq!(plan(&b, MEM).unwrap().entry, MEM - 1);
    assert_eq!(
        ElfError::Entry {
            entry: 0,
            mem_size: MEM
        }
        .to_string(),
        "invalid executable: e_entry does not fall within the memory allocation range (0 < 1048576 || 0 >= 536870912)"
    );
    // The entry check comes before the segment checks.
    let mut b = one_segment(0x1000, 16, 16, 0x1000, RX);
    b.e_entry = 0;
    assert!(matches!(plan(&b, MEM), Err(ElfError::Entry { .. })));
}

#[test]
fn vaddr_below_min_base() {
    let b = one_segment(0xf_f000, 16, 16, 0x1000, RX);
    let err = plan(&b, MEM).unwrap_err();
    assert_eq!(
        err,
        ElfError::VaddrBelowMin {
            index: 0,
            vaddr: 0xf_f000
        }
    );
    assert_eq!(
        err.to_string(),
        "invalid executable: phdr[0].p_vaddr outside of valid memory range (1044480 < 1048576)"
    );
}

#[test]
fn vaddr_must_ascend() {
    let mut b = ElfBuilder::new();
    b.load(0x20_0000, &TEXT, 64, RX);
    let ph = load_ph(&mut b, 0x10_0000, 16, 16, 0x1000, R);
    b.ph(ph);
    let err = plan(&b, MEM).unwrap_err();
    assert_eq!(
        err,
        ElfError::NotAscending {
            index: 1,
            vaddr: 0x10_0000,
            last_vaddr: 0x20_0000
        }
    );
    assert_eq!(
        err.to_string(),
        "invalid executable: phdr[1].p_vaddr is not in ascending order (1048576 < 2097152)"
    );
}

#[test]
fn align_must_be_a_power_of_two() {
    for align in [0, 3, 0x1001, u64::MAX] {
        let b = one_segment(0x10_0000, 16, 16, align, RX);
        assert_eq!(
            plan(&b, MEM),
            Err(ElfError::AlignDown {
                index: 0,
                vaddr: 0x10_0000,
                align
            }),
            "align {align}"
        );
    }
    assert_eq!(
        ElfError::AlignDown {
            index: 0,
            vaddr: 1,
            align: 0
        }
        .to_string(),
        "invalid executable: phdr[0].p_vaddr is outside of memory range (align_down with 1 (p_vaddr) and 0 (p_align) failed)"
    );
}

#[test]
fn aligned_start_below_min_base() {
    let b = one_segment(0x10_0000, 16, 16, 0x20_0000, RX);
    let err = plan(&b, MEM).unwrap_err();
    assert_eq!(err, ElfError::StartBelowMin { index: 0, start: 0 });
    assert_eq!(
        err.to_string(),
        "invalid executable: phdr[0].p_vaddr_start is outside of memory range (0 < 1048576 (p_min_loadaddr))"
    );
}

#[test]
fn segments_must_not_overlap() {
    // The first segment's memory ends (aligned) at 0x102000; the second starts inside.
    let mut b = ElfBuilder::new();
    b.load(0x10_0000, &TEXT, 0x1800, RX);
    let ph = load_ph(&mut b, 0x10_1000, 16, 16, 0x1000, R);
    b.ph(ph);
    let err = plan(&b, MEM).unwrap_err();
    assert_eq!(
        err,
        ElfError::Overlap {
            index: 1,
            start: 0x10_1000,
            end: 0x10_2000
        }
    );
    assert_eq!(
        err.to_string(),
        "invalid executable: phdr[1].p_vaddr_start is outside of memory range (1052672 < 1056768 (e_end))"
    );
    // Ascending vaddr but a large alignment pulls the start back into the first one.
    let mut b = ElfBuilder::new();
    b.load(0x20_0000, &TEXT, 64, RX);
    let ph = load_ph(&mut b, 0x20_1000, 16, 16, 0x10_0000, R);
    b.ph(ph);
    assert_eq!(
        plan(&b, MEM),
        Err(ElfError::Overlap {
            index: 1,
            start: 0x20_0000,
            end: 0x20_1000
        })
    );
    // Touching is fine.
    let mut b = ElfBuilder::new();
    b.load(0x10_0000, &TEXT, 0x1000, RX);
    let ph = load_ph(&mut b, 0x10_1000, 16, 16, 0x1000, R);
    b.ph(ph);
    assert_eq!(plan(&b, MEM).unwrap().kernel_end, 0x10_2000);
}

#[test]
fn vaddr_beyond_memory() {
    let b = one_segment(MEM, 16, 16, 0x1000, R);
    let err = plan(&b, MEM).unwrap_err();
    assert_eq!(
        err,
        ElfError::VaddrBeyondMem {
            index: 0,
            vaddr: MEM,
            mem_size: MEM
        }
    );
    assert_eq!(
        err.to_string(),
        "invalid executable: phdr[0] program file segment falls outside of valid range (536870912 >= 536870912 (mem_size))"
    );
}

#[test]
fn file_end_overflow_and_beyond_memory() {
    let mut b = with_second(Ph {
        p_type: PT_LOAD,
        p_flags: R,
        p_offset: BODY_START,
        p_vaddr: 0x20_0000,
        p_filesz: u64::MAX - 0x10_0000,
        p_memsz: u64::MAX,
        p_align: 0x1000,
        ..Ph::default()
    });
    assert_eq!(
        plan(&b, MEM),
        Err(ElfError::FileEndOverflow {
            index: 1,
            vaddr: 0x20_0000,
            filesz: u64::MAX - 0x10_0000
        })
    );
    assert_eq!(
        ElfError::FileEndOverflow {
            index: 1,
            vaddr: 2,
            filesz: 3
        }
        .to_string(),
        "invalid executable: phdr[1] program file segment falls outside of valid range (2 (p_vaddr) + 3 (p_filesz) overflow)"
    );
    b.phdrs[1].p_filesz = MEM - 0x20_0000 + 1;
    assert_eq!(
        plan(&b, MEM),
        Err(ElfError::FileEndBeyondMem {
            index: 1,
            end: MEM + 1,
            mem_size: MEM
        })
    );
    assert_eq!(
        ElfError::FileEndBeyondMem {
            index: 1,
            end: 5,
            mem_size: 4
        }
        .to_string(),
        "invalid executable: phdr[1] program file segment falls outside of valid range (5 (p_vaddr + p_filesz) > 4 (mem_size))"
    );
}

#[test]
fn memsz_rules() {
    let b = one_segment(0x10_0000, 16, 15, 0x1000, R);
    let err = plan(&b, MEM).unwrap_err();
    assert_eq!(
        err,
        ElfError::MemszBelowFilesz {
            index: 0,
            memsz: 15,
            filesz: 16
        }
    );
    assert_eq!(
        err.to_string(),
        "invalid executable: phdr[0] program memory segment falls outside of valid range (15 (p_memsz) < 16 (p_filesz))"
    );

    let b = one_segment(0x10_0000, 16, u64::MAX, 0x1000, R);
    let err = plan(&b, MEM).unwrap_err();
    assert_eq!(
        err,
        ElfError::MemEndOverflow {
            index: 0,
            vaddr: 0x10_0000,
            memsz: u64::MAX
        }
    );
    assert_eq!(
        err.to_string(),
        "invalid executable: phdr[0] program memory segment falls outside of valid range (1048576 (p_vaddr) + 18446744073709551615 (p_memsz) overflow)"
    );

    // vaddr + memsz fits, aligning it up does not.
    let memsz = u64::MAX - 0x10_0000 - 5;
    let b = one_segment(0x10_0000, 16, memsz, 0x1000, R);
    let err = plan(&b, MEM).unwrap_err();
    assert_eq!(
        err,
        ElfError::AlignUp {
            index: 0,
            end: u64::MAX - 5,
            align: 0x1000
        }
    );
    assert_eq!(
        err.to_string(),
        "invalid executable: phdr[0] program memory segment falls outside of valid range (align_up with 18446744073709551610 (p_vaddr_end) and 4096 (p_align) failed)"
    );

    // The aligned end must fit: memsz ends one byte past the last page.
    let b = one_segment(0x10_0000, 16, MEM - 0x10_0000 + 1, 0x1000, R);
    let err = plan(&b, MEM).unwrap_err();
    assert_eq!(
        err,
        ElfError::MemEndBeyondMem {
            index: 0,
            end: MEM + 0x1000,
            mem_size: MEM
        }
    );
    assert_eq!(
        err.to_string(),
        "invalid executable: phdr[0] program memory segment falls outside of valid range (536875008 (p_vaddr + p_memsz) > 536870912 (mem_size))"
    );
    // Exactly up to the end of memory is fine.
    let b = one_segment(0x10_0000, 16, MEM - 0x10_0000, 0x1000, R);
    assert_eq!(plan(&b, MEM).unwrap().kernel_end, MEM);
}

#[test]
fn segment_bytes_must_be_in_the_file() {
    let mut b = ElfBuilder::new();
    let mut ph = load_ph(&mut b, 0x10_0000, 16, 16, 0x1000, R);
    ph.p_filesz = 32;
    ph.p_memsz = 32;
    b.ph(ph);
    let err = plan(&b, MEM).unwrap_err();
    assert_eq!(
        err,
        ElfError::SegmentRead {
            index: 0,
            read: 16,
            filesz: 32
        }
    );
    assert_eq!(
        err.to_string(),
        "phdr[0] host file segment mismatched (pread_in_full returned 16 != 32 (p_filesz))"
    );
    b.phdrs[0].p_offset = 1 << 40;
    assert_eq!(
        plan(&b, MEM),
        Err(ElfError::SegmentRead {
            index: 0,
            read: 0,
            filesz: 32
        })
    );
    b.phdrs[0].p_offset = u64::MAX;
    let err = plan(&b, MEM).unwrap_err();
    assert_eq!(err, ElfError::SegmentReadFailed { index: 0 });
    assert_eq!(
        err.to_string(),
        "phdr[0] pread_in_full returned 18446744073709551615"
    );
}

#[test]
fn protected_range_must_be_page_aligned() {
    let b = one_segment(0x10_0010, 16, 16, 16, R);
    let err = plan(&b, MEM).unwrap_err();
    assert_eq!(
        err,
        ElfError::StartUnaligned {
            index: 0,
            start: 0x10_0010
        }
    );
    assert_eq!(
        err.to_string(),
        "invalid executable: phdr[0] p_vaddr_start not aligned with architectural page size (1048592 & (4096 - 1))"
    );
    let b = one_segment(0x10_0000, 16, 16, 16, R);
    let err = plan(&b, MEM).unwrap_err();
    assert_eq!(
        err,
        ElfError::EndUnaligned {
            index: 0,
            end: 0x10_0010
        }
    );
    assert_eq!(
        err.to_string(),
        "invalid executable: phdr[0] p_vaddr_end not aligned with architectural page size (1048592 & (4096 - 1))"
    );
    // A small p_align is fine if the numbers happen to be page aligned.
    let b = one_segment(0x10_0000, 16, 0x1000, 1, R);
    assert_eq!(plan(&b, MEM).unwrap().kernel_end, 0x10_1000);
}

#[test]
fn write_and_exec_is_refused() {
    let b = one_segment(0x10_0000, 16, 16, 0x1000, PF_W_X);
    let err = plan(&b, MEM).unwrap_err();
    assert_eq!(err, ElfError::WriteExec { index: 0 });
    assert_eq!(
        err.to_string(),
        "invalid executable: phdr[0] requests WRITE and EXEC permissions"
    );
    let mut b = typical();
    b.phdrs[2].p_flags |= hvt_abi::elf::PF_X;
    assert_eq!(plan(&b, MEM), Err(ElfError::WriteExec { index: 2 }));
}

const PF_W_X: u32 = hvt_abi::elf::PF_W | hvt_abi::elf::PF_X;

#[test]
fn checks_run_in_upstream_order() {
    // Unaligned and W+X: the alignment is reported.
    let b = one_segment(0x10_0010, 16, 16, 16, PF_W_X);
    assert!(matches!(
        plan(&b, MEM),
        Err(ElfError::StartUnaligned { .. })
    ));
    // Missing file bytes and unaligned: the read is reported (upstream reads first).
    let mut b = one_segment(0x10_0010, 16, 16, 16, PF_W_X);
    b.phdrs[0].p_offset = 1 << 40;
    assert!(matches!(plan(&b, MEM), Err(ElfError::SegmentRead { .. })));
    // Below the minimum and everything else wrong: the minimum is reported.
    let mut b = one_segment(0x1000, 16, 1, 0, PF_W_X);
    b.phdrs[0].p_offset = u64::MAX;
    assert!(matches!(plan(&b, MEM), Err(ElfError::VaddrBelowMin { .. })));
    // Not ascending beats bad alignment.
    let mut b = ElfBuilder::new();
    b.load(0x20_0000, &TEXT, 64, RX);
    let ph = load_ph(&mut b, 0x10_0000, 16, 16, 3, R);
    b.ph(ph);
    assert!(matches!(plan(&b, MEM), Err(ElfError::NotAscending { .. })));
}

#[test]
fn zero_filesz_and_other_segments_are_ignored_entirely() {
    let mut b = typical();
    // Garbage in every skipped header: the BSS-only PT_LOAD and the PT_GNU_STACK.
    for i in [3, 4] {
        b.phdrs[i].p_vaddr = 0;
        b.phdrs[i].p_align = 3;
        b.phdrs[i].p_flags = PF_W_X;
        b.phdrs[i].p_offset = u64::MAX;
        b.phdrs[i].p_memsz = u64::MAX;
    }
    b.phdrs[4].p_filesz = u64::MAX;
    b.phdrs[4].p_type = 0x7000_0000;
    assert_eq!(plan(&b, MEM).unwrap().kernel_end, 0x10_4000);
    // A BSS-only segment far above the others does not raise kernel_end.
    let mut b = typical();
    b.phdrs[3].p_vaddr = 0x1000_0000;
    assert_eq!(plan(&b, MEM).unwrap().kernel_end, 0x10_4000);
}

#[test]
fn kernel_end_is_the_highest_aligned_end() {
    // One segment with a 2 MiB alignment: the end rounds up to 2 MiB.
    let b = one_segment(0x20_0000, 16, 0x1000, 0x20_0000, R);
    assert_eq!(plan(&b, MEM).unwrap().kernel_end, 0x40_0000);
    // No loadable segment at all: 0.
    let mut b = ElfBuilder::new();
    b.note(&abi1_note(1, 2), 4);
    assert_eq!(plan(&b, MEM).unwrap().kernel_end, 0);
}

#[test]
fn segment_iterator_stops_after_an_error() {
    let mut b = typical();
    b.phdrs[1].p_flags = PF_W_X;
    let file = b.build();
    let elf = Elf::parse(&file).unwrap();
    let items: Vec<_> = elf.segments(MEM).collect();
    assert_eq!(items.len(), 2);
    assert!(items[0].is_ok());
    assert_eq!(items[1], Err(ElfError::WriteExec { index: 1 }));
}

#[test]
fn prot_from_flags() {
    use hvt_abi::elf::{PF_R, PF_W, PF_X};
    assert_eq!(Prot::from_flags(0), Prot::None);
    assert_eq!(Prot::from_flags(PF_R), Prot::Read);
    assert_eq!(Prot::from_flags(PF_X), Prot::Read);
    assert_eq!(Prot::from_flags(PF_R | PF_X), Prot::Read);
    assert_eq!(Prot::from_flags(PF_W), Prot::Write);
    assert_eq!(Prot::from_flags(PF_R | PF_W), Prot::ReadWrite);
    assert_eq!(Prot::from_flags(0xf000_0000 | PF_R), Prot::Read);
}

#[test]
fn phdr_accessors() {
    let file = typical().build();
    let elf = Elf::parse(&file).unwrap();
    let all: Vec<_> = elf.phdrs().collect();
    assert_eq!(all.len(), 8);
    assert_eq!(all[0].1.p_vaddr, 0x10_0000);
    assert_eq!(all[7].1.p_type, hvt_abi::elf::PT_NOTE);
    assert!(elf.phdr(8).is_none());
    assert!(elf.phdr(u16::MAX).is_none());
}

#[test]
fn many_program_headers() {
    // 64 + 70 * 56 < 0x1000: the builder still fits them before the body.
    let mut b = ElfBuilder::new();
    for i in 0..70u64 {
        b.load(0x10_0000 + i * 0x1000, &[i as u8; 8], 8, R);
    }
    let file = b.build();
    let elf = Elf::parse(&file).unwrap();
    assert_eq!(elf.segments(MEM).count(), 70);
    assert_eq!(
        elf.load_plan(MEM).unwrap().kernel_end,
        0x10_0000 + 70 * 0x1000
    );
}
