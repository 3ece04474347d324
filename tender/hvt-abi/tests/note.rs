//! Solo5 note lookup (`elf_load_note`) and the ABI check.
#![allow(missing_docs, clippy::unwrap_used, clippy::cast_possible_truncation)]

mod common;

use common::*;
use hvt_abi::abi::{SOLO5_NOTE_ABI_INFO, SOLO5_NOTE_MANIFEST};
use hvt_abi::elf::{Elf, PT_NOTE};
use hvt_abi::note::{AbiInfo, NoteError, check_hvt_abi};

fn abi(b: &ElfBuilder) -> Result<AbiInfo, NoteError> {
    Elf::parse(&b.build()).unwrap().abi_info()
}

fn mft(b: &ElfBuilder) -> Result<Vec<u8>, NoteError> {
    Elf::parse(&b.build())
        .unwrap()
        .manifest_note()
        .map(<[u8]>::to_vec)
}

/// A builder with only the notes given (plus one text segment).
fn with_notes(notes: &[(&[u8], u64)]) -> ElfBuilder {
    let mut b = ElfBuilder::new();
    b.load(0x10_0000, &TEXT, 64, RX);
    for (n, align) in notes {
        b.note(n, *align);
    }
    b
}

#[test]
fn typical_notes() {
    let b = typical();
    let info = abi(&b).unwrap();
    assert_eq!(
        info,
        AbiInfo {
            target: 1,
            version: 2
        }
    );
    assert_eq!(check_hvt_abi(&info), Ok(()));
    assert_eq!(mft(&b).unwrap(), typical_manifest());
}

#[test]
fn abi1_descriptor_has_no_padding() {
    // The descriptor is read at offset 20 of the note: put the target there.
    let file = typical().build();
    let elf = Elf::parse(&file).unwrap();
    let off = elf.phdr(6).unwrap().p_offset as usize;
    assert_eq!(&file[off + 20..off + 24], &1u32.to_le_bytes());
    assert_eq!(&file[off + 24..off + 28], &2u32.to_le_bytes());
    let desc = elf.find_note(SOLO5_NOTE_ABI_INFO, 4, 32).unwrap().unwrap();
    assert_eq!(desc.len(), 16);
}

#[test]
fn mft1_padding_is_skipped() {
    // Junk in the 4 padding bytes is not part of the manifest.
    let m = typical_manifest();
    let mut b = with_notes(&[(&abi1_note(1, 2), 4)]);
    b.note(&mft1_note_padded(&m, [0xaa; 4]), 8);
    assert_eq!(mft(&b).unwrap(), m);
    // With a 4-byte alignment the padding would be read as the version.
    let file = b.build();
    let elf = Elf::parse(&file).unwrap();
    let raw = elf
        .find_note(SOLO5_NOTE_MANIFEST, 4, 6668)
        .unwrap()
        .unwrap();
    assert_eq!(&raw[..4], &[0xaa; 4]);
    assert_eq!(raw.len(), m.len() + 4);
}

#[test]
fn missing_notes() {
    let b = with_notes(&[]);
    assert_eq!(abi(&b), Err(NoteError::NoAbiInfo));
    assert_eq!(mft(&b), Err(NoteError::NoManifest));
    assert_eq!(
        NoteError::NoAbiInfo.to_string(),
        "No Solo5 ABI information found in executable"
    );
    assert_eq!(
        NoteError::NoManifest.to_string(),
        "No Solo5 manifest found in executable"
    );
    // Only an OpenBSD note.
    let b = with_notes(&[(&openbsd_note(), 4)]);
    assert_eq!(abi(&b), Err(NoteError::NoAbiInfo));
}

#[test]
fn abi_check_messages() {
    let info = abi(&with_notes(&[(&abi1_note(2, 2), 4)])).unwrap();
    let err = check_hvt_abi(&info).unwrap_err();
    assert_eq!(err, NoteError::WrongTarget(2));
    assert_eq!(
        err.to_string(),
        "Executable is not for the solo5-hvt target"
    );
    let info = abi(&with_notes(&[(&abi1_note(1, 1), 4)])).unwrap();
    let err = check_hvt_abi(&info).unwrap_err();
    assert_eq!(err, NoteError::UnsupportedVersion(1));
    assert_eq!(
        err.to_string(),
        "Executable requests unsupported ABI version 1"
    );
    // Target is checked first.
    let info = AbiInfo {
        target: 3,
        version: 9,
    };
    assert_eq!(check_hvt_abi(&info), Err(NoteError::WrongTarget(3)));
}

#[test]
fn short_abi_descriptor_reads_as_zeros() {
    let b = with_notes(&[(&solo5_note(SOLO5_NOTE_ABI_INFO, &[1, 0, 0, 0]), 4)]);
    let info = abi(&b).unwrap();
    assert_eq!(
        info,
        AbiInfo {
            target: 1,
            version: 0
        }
    );
    assert_eq!(check_hvt_abi(&info), Err(NoteError::UnsupportedVersion(0)));
    let b = with_notes(&[(&solo5_note(SOLO5_NOTE_ABI_INFO, &[1]), 4)]);
    assert_eq!(
        abi(&b).unwrap(),
        AbiInfo {
            target: 1,
            version: 0
        }
    );
}

#[test]
fn tiny_note_segment_is_fatal_even_if_not_ours() {
    let mut b = typical();
    // Make the OpenBSD note's segment 11 bytes: smaller than any note header.
    b.phdrs[5].p_filesz = 11;
    let err = abi(&b).unwrap_err();
    assert_eq!(
        err,
        NoteError::SegmentTooSmall {
            index: 5,
            filesz: 11
        }
    );
    assert_eq!(
        err.to_string(),
        "invalid executable: phdr[5].p_filesz note does not fall within valid size (11 < 12)"
    );
}

#[test]
fn note_segment_smaller_than_a_solo5_header_is_skipped() {
    for filesz in 12..20 {
        let mut b = typical();
        b.phdrs[6].p_filesz = filesz;
        assert_eq!(abi(&b), Err(NoteError::NoAbiInfo), "p_filesz {filesz}");
    }
}

#[test]
fn name_and_type_must_match() {
    let desc = [1u8, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let cases: [(u32, &[u8; 8]); 4] = [
        (5, b"Solo5\0\0\0"),
        (6, b"solo5\0\0\0"),
        (6, b"Solo5X\0\0"),
        (8, b"Solo5\0\0\0"),
    ];
    for (namesz, name) in cases {
        let b = with_notes(&[(&note(namesz, name, SOLO5_NOTE_ABI_INFO, &desc), 4)]);
        assert_eq!(abi(&b), Err(NoteError::NoAbiInfo), "{namesz} {name:?}");
    }
    // Bytes after the NUL do not matter.
    let b = with_notes(&[(&note(6, b"Solo5\0zz", SOLO5_NOTE_ABI_INFO, &desc), 4)]);
    assert_eq!(abi(&b).unwrap().version, 2);
    // The manifest note is not the ABI note.
    let b = with_notes(&[(&mft1_note(&typical_manifest()), 8)]);
    assert_eq!(abi(&b), Err(NoteError::NoAbiInfo));
}

#[test]
fn descriptor_size_limits() {
    // ABI1: 1..=32.
    let b = with_notes(&[(&solo5_note(SOLO5_NOTE_ABI_INFO, &[]), 4)]);
    let err = abi(&b).unwrap_err();
    assert_eq!(
        err,
        NoteError::DescSize {
            index: 1,
            descsz: 0,
            max: 32
        }
    );
    assert_eq!(
        err.to_string(),
        "invalid executable: phdr[1] note does not fall within valid size (0 < 1 || 0 > 32)"
    );
    let b = with_notes(&[(&solo5_note(SOLO5_NOTE_ABI_INFO, &[0; 33]), 4)]);
    assert_eq!(
        abi(&b),
        Err(NoteError::DescSize {
            index: 1,
            descsz: 33,
            max: 32
        })
    );
    let mut desc = [0u8; 32];
    desc[0] = 1;
    desc[4] = 2;
    let b = with_notes(&[(&solo5_note(SOLO5_NOTE_ABI_INFO, &desc), 4)]);
    assert_eq!(
        abi(&b),
        Ok(AbiInfo {
            target: 1,
            version: 2
        })
    );
    // MFT1: up to 6668 = 4 + 8 + 64 * 104.
    let b = with_notes(&[(&solo5_note(SOLO5_NOTE_MANIFEST, &[0; 6669]), 8)]);
    assert_eq!(
        mft(&b),
        Err(NoteError::DescSize {
            index: 1,
            descsz: 6669,
            max: 6668
        })
    );
    let b = with_notes(&[(&solo5_note(SOLO5_NOTE_MANIFEST, &[0; 6668]), 8)]);
    assert_eq!(mft(&b).unwrap().len(), 6664);
}

#[test]
fn descriptor_must_fit_the_segment() {
    let mut b = typical();
    let filesz = b.phdrs[6].p_filesz;
    b.phdrs[6].p_filesz = filesz - 1;
    let err = abi(&b).unwrap_err();
    assert_eq!(
        err,
        NoteError::SegmentSize {
            index: 6,
            filesz: 35,
            needed: 36
        }
    );
    assert_eq!(
        err.to_string(),
        "invalid executable: phdr[6] note does not fall within valid size (35 < 36)"
    );
}

#[test]
fn descriptor_must_cover_its_padding() {
    for (descsz, size) in [(4u32, 0u64), (3, u64::MAX), (1, u64::MAX - 2)] {
        let b = with_notes(&[(
            &solo5_note(SOLO5_NOTE_MANIFEST, &vec![0; descsz as usize]),
            8,
        )]);
        let err = mft(&b).unwrap_err();
        assert_eq!(
            err,
            NoteError::PaddedSize {
                index: 1,
                size,
                descsz
            },
            "descsz {descsz}"
        );
    }
    assert_eq!(
        NoteError::PaddedSize {
            index: 1,
            size: 0,
            descsz: 4
        }
        .to_string(),
        "invalid executable: phdr[1] note does not fall within valid size (0 <= 0 || 0 > 4)"
    );
    // Five bytes: one byte of manifest (which the manifest check then refuses).
    let b = with_notes(&[(&solo5_note(SOLO5_NOTE_MANIFEST, &[0, 0, 0, 0, 7]), 8)]);
    assert_eq!(mft(&b).unwrap(), vec![7]);
}

#[test]
fn note_bytes_past_end_of_file() {
    // The header is not in the file.
    let mut b = typical();
    b.phdrs[5].p_offset = 1 << 40;
    let err = abi(&b).unwrap_err();
    assert_eq!(err, NoteError::HeaderRead { index: 5, read: 0 });
    assert_eq!(
        err.to_string(),
        "phdr[5] bytes read mismatches note size (0 != 20)"
    );
    b.phdrs[5].p_offset = u64::MAX;
    let err = abi(&b).unwrap_err();
    assert_eq!(err, NoteError::HeaderReadFailed { index: 5 });
    assert_eq!(
        err.to_string(),
        "phdr[5] pread_in_full returned 18446744073709551615"
    );
    // The header is, the descriptor is cut by the end of the file (p_filesz lies).
    let mut b = with_notes(&[]);
    let n = mft1_note(&typical_manifest());
    let off = b.blob(&n[..100]);
    b.ph(Ph {
        p_type: PT_NOTE,
        p_offset: off,
        p_filesz: n.len() as u64,
        p_align: 8,
        ..Ph::default()
    });
    let file = b.build();
    assert_eq!(file.len() as u64, off + 100);
    let err = Elf::parse(&file).unwrap().manifest_note().unwrap_err();
    assert_eq!(
        err,
        NoteError::DescRead {
            index: 1,
            read: 76,
            size: typical_manifest().len() as u64
        }
    );
    assert_eq!(
        err.to_string(),
        "phdr[1] bytes read mismatches note size (76 != 320)"
    );
}

#[test]
fn only_the_first_note_of_a_segment_is_seen() {
    // One PT_NOTE holding the OpenBSD note then the ABI note: upstream never sees ABI1.
    let mut both = openbsd_note();
    both.extend_from_slice(&abi1_note(1, 2));
    let b = with_notes(&[(&both, 4)]);
    assert_eq!(abi(&b), Err(NoteError::NoAbiInfo));
    // The other way round it is found.
    let mut both = abi1_note(1, 2);
    both.extend_from_slice(&openbsd_note());
    let b = with_notes(&[(&both, 4)]);
    assert_eq!(
        abi(&b),
        Ok(AbiInfo {
            target: 1,
            version: 2
        })
    );
}

#[test]
fn first_matching_note_wins_and_its_errors_are_fatal() {
    let b = with_notes(&[(&abi1_note(1, 7), 4), (&abi1_note(1, 2), 4)]);
    assert_eq!(abi(&b).unwrap().version, 7);
    let b = with_notes(&[
        (&solo5_note(SOLO5_NOTE_ABI_INFO, &[0; 40]), 4),
        (&abi1_note(1, 2), 4),
    ]);
    assert!(matches!(abi(&b), Err(NoteError::DescSize { index: 1, .. })));
}

#[test]
fn segment_p_align_does_not_matter() {
    // The descriptor alignment comes from the note type, not from p_align.
    let m = typical_manifest();
    for align in [0, 1, 4, 8, 3, 4096] {
        let b = with_notes(&[(&abi1_note(1, 2), align), (&mft1_note(&m), align)]);
        assert_eq!(abi(&b).unwrap().version, 2);
        assert_eq!(mft(&b).unwrap(), m);
    }
}

#[test]
fn bad_alignment_argument() {
    let file = typical().build();
    let elf = Elf::parse(&file).unwrap();
    assert_eq!(
        elf.find_note(SOLO5_NOTE_ABI_INFO, 0, 32),
        Err(NoteError::BadAlign(0))
    );
    assert_eq!(
        elf.find_note(SOLO5_NOTE_ABI_INFO, 12, 32),
        Err(NoteError::BadAlign(12))
    );
    // A large alignment leaves too little descriptor: refused, no panic.
    assert!(matches!(
        elf.find_note(SOLO5_NOTE_ABI_INFO, 1 << 63, 32),
        Err(NoteError::PaddedSize { .. })
    ));
    // Alignment 32: 12 bytes of padding out of the 16-byte ABI descriptor.
    assert_eq!(
        elf.find_note(SOLO5_NOTE_ABI_INFO, 32, 32)
            .unwrap()
            .unwrap()
            .len(),
        4
    );
}
