//! Manifest validation (`mft_validate`), lookup, attach, emit and the guest view.
#![allow(missing_docs, clippy::unwrap_used, clippy::cast_possible_truncation)]

mod common;

use common::*;
use hvt_abi::abi::{MFT_DEV_BLOCK_BASIC, MFT_DEV_NET_BASIC, MFT_RESERVED_FIRST};
use hvt_abi::mft::{DeviceKind, Manifest, MftError, MftView};

fn set_u32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

/// Offset of entry `i` in manifest bytes.
fn entry(i: usize) -> usize {
    8 + i * 104
}

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("dev{i}")).collect()
}

fn manifest_of(names: &[String]) -> Vec<u8> {
    let devs: Vec<(&str, u32)> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            (
                n.as_str(),
                if i % 2 == 0 {
                    MFT_DEV_NET_BASIC
                } else {
                    MFT_DEV_BLOCK_BASIC
                },
            )
        })
        .collect();
    manifest(&devs)
}

#[test]
fn typical_manifest_is_accepted() {
    let m = Manifest::parse(&typical_manifest()).unwrap();
    assert_eq!(m.len(), 3);
    assert!(!m.is_empty());
    let devs: Vec<_> = m.devices().collect();
    assert_eq!(
        devs,
        vec![
            (1, "storage", DeviceKind::Block),
            (2, "service0", DeviceKind::Net)
        ]
    );
    assert_eq!(m.get(0).unwrap().kind(), DeviceKind::ReservedFirst);
    assert_eq!(m.get(0).unwrap().name_bytes(), b"");
    assert!(m.get(3).is_none());
    assert_eq!(m.byte_len(), 8 + 3 * 104);
}

#[test]
fn only_the_reserved_entry() {
    let m = Manifest::parse(&manifest(&[])).unwrap();
    assert_eq!(m.len(), 1);
    assert_eq!(m.devices().count(), 0);
    assert_eq!(m.unattached().count(), 0);
}

#[test]
fn too_short_at_every_length() {
    let bytes = typical_manifest();
    for len in 0..8 {
        assert_eq!(Manifest::parse(&bytes[..len]), Err(MftError::TooShort(len)));
    }
    assert_eq!(
        MftError::TooShort(3).to_string(),
        "Solo5 manifest is invalid (size 3 < 8)"
    );
}

#[test]
fn every_truncation_is_a_size_mismatch() {
    let bytes = typical_manifest();
    for len in 8..bytes.len() {
        assert_eq!(
            Manifest::parse(&bytes[..len]),
            Err(MftError::SizeMismatch {
                size: len,
                entries: 3
            }),
            "length {len}"
        );
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert_eq!(
        Manifest::parse(&longer),
        Err(MftError::SizeMismatch {
            size: longer.len(),
            entries: 3
        })
    );
    assert_eq!(
        MftError::SizeMismatch {
            size: 9,
            entries: 1
        }
        .to_string(),
        "Solo5 manifest is invalid (size 9 != 8 + 1 * 104)"
    );
}

#[test]
fn version_must_be_1() {
    for v in [0, 2, u32::MAX] {
        let mut b = typical_manifest();
        set_u32(&mut b, 0, v);
        assert_eq!(Manifest::parse(&b), Err(MftError::Version(v)));
    }
}

#[test]
fn sixty_three_devices_fit_sixty_four_do_not() {
    let ok = manifest_of(&names(63));
    let m = Manifest::parse(&ok).unwrap();
    assert_eq!(m.len(), 64);
    assert_eq!(m.devices().count(), 63);
    assert_eq!(m.find("dev62"), Some((63, DeviceKind::Net)));
    // 64 devices + the reserved entry = 65 entries: refused before the size is looked at.
    let too_many = manifest_of(&names(64));
    assert_eq!(
        Manifest::parse(&too_many),
        Err(MftError::TooManyEntries(65))
    );
    let mut huge = typical_manifest();
    set_u32(&mut huge, 4, u32::MAX);
    assert_eq!(
        Manifest::parse(&huge),
        Err(MftError::TooManyEntries(u32::MAX))
    );
    assert_eq!(
        MftError::TooManyEntries(65).to_string(),
        "Solo5 manifest is invalid (65 entries > 64)"
    );
}

#[test]
fn zero_entries() {
    let b = [1, 0, 0, 0, 0, 0, 0, 0];
    assert_eq!(Manifest::parse(&b), Err(MftError::NoEntries));
    // With a trailing entry the size check comes first.
    let mut b = typical_manifest();
    set_u32(&mut b, 4, 0);
    assert!(matches!(
        Manifest::parse(&b),
        Err(MftError::SizeMismatch { .. })
    ));
}

#[test]
fn first_entry_must_be_reserved_and_unnamed() {
    let mut b = typical_manifest();
    set_u32(&mut b, entry(0) + 68, MFT_DEV_BLOCK_BASIC);
    assert_eq!(Manifest::parse(&b), Err(MftError::FirstNotReserved(1)));
    let mut b = typical_manifest();
    b[entry(0)] = b'x';
    assert_eq!(Manifest::parse(&b), Err(MftError::FirstNameNotEmpty));
    // Junk after the first byte of its name is allowed (only name[0] and name[67]).
    let mut b = typical_manifest();
    b[entry(0) + 1] = b'x';
    assert!(Manifest::parse(&b).is_ok());
    // A RESERVED_FIRST-typed device elsewhere is allowed but is not a device.
    let b = manifest(&[
        ("a", MFT_DEV_NET_BASIC),
        ("b", MFT_RESERVED_FIRST),
        ("c", 7),
    ]);
    let m = Manifest::parse(&b).unwrap();
    let devs: Vec<_> = m.devices().collect();
    assert_eq!(
        devs,
        vec![(1, "a", DeviceKind::Net), (3, "c", DeviceKind::Other(7))]
    );
    assert_eq!(m.find("b"), None);
    assert_eq!(m.find_kind("b", DeviceKind::ReservedFirst), Some(2));
}

#[test]
fn name_length_67_is_the_limit() {
    let n67 = "a".repeat(67);
    let b = manifest(&[(&n67, MFT_DEV_NET_BASIC)]);
    let m = Manifest::parse(&b).unwrap();
    assert_eq!(m.find(&n67), Some((1, DeviceKind::Net)));
    let n68 = "a".repeat(68);
    let b = manifest(&[(&n68, MFT_DEV_NET_BASIC)]);
    assert_eq!(Manifest::parse(&b), Err(MftError::NameNotTerminated(1)));
    assert_eq!(
        MftError::NameNotTerminated(1).to_string(),
        "Solo5 manifest is invalid (entry 1: name is not NUL-terminated)"
    );
    // Looking up a 68-character name never matches a 67-character one.
    assert_eq!(m.find(&n68), None);
}

#[test]
fn name_characters_are_not_checked() {
    // Upstream checks neither the character set nor emptiness of device names.
    let b = manifest(&[("a-b.c", MFT_DEV_NET_BASIC), ("", MFT_DEV_BLOCK_BASIC)]);
    let m = Manifest::parse(&b).unwrap();
    assert_eq!(m.find("a-b.c"), Some((1, DeviceKind::Net)));
    assert_eq!(m.find(""), Some((2, DeviceKind::Block)));
    // Non-UTF-8 names parse; their text is the valid prefix.
    let mut b = manifest(&[("ok", MFT_DEV_NET_BASIC)]);
    b[entry(1) + 2] = 0xff;
    b[entry(1) + 3] = b'z';
    let m = Manifest::parse(&b).unwrap();
    assert_eq!(m.get(1).unwrap().name_bytes(), b"ok\xffz");
    assert_eq!(m.devices().next().unwrap().1, "ok");
    assert_eq!(m.find("ok"), None);
}

#[test]
fn attached_entries_are_refused() {
    for i in 0..3 {
        let mut b = typical_manifest();
        b[entry(i) + 96] = 1;
        assert_eq!(Manifest::parse(&b), Err(MftError::Attached(i)));
    }
    // The unions and `b` are not checked.
    let mut b = typical_manifest();
    b[entry(1) + 72..entry(1) + 96].fill(0x5a);
    assert!(Manifest::parse(&b).is_ok());
}

#[test]
fn checks_run_in_upstream_order() {
    // Entry 1 is both unterminated and attached: the name is reported.
    let mut b = typical_manifest();
    b[entry(1) + 67] = b'x';
    b[entry(1) + 96] = 1;
    assert_eq!(Manifest::parse(&b), Err(MftError::NameNotTerminated(1)));
    // Entry 1 attached, entry 2 unterminated: entry 1 is reported (loop order).
    let mut b = typical_manifest();
    b[entry(1) + 96] = 1;
    b[entry(2) + 67] = b'x';
    assert_eq!(Manifest::parse(&b), Err(MftError::Attached(1)));
    // Version before entry count.
    let mut b = typical_manifest();
    set_u32(&mut b, 0, 9);
    set_u32(&mut b, 4, 99);
    assert_eq!(Manifest::parse(&b), Err(MftError::Version(9)));
}

#[test]
fn lookups() {
    let b = manifest(&[
        ("disk", MFT_DEV_BLOCK_BASIC),
        ("net", MFT_DEV_NET_BASIC),
        ("disk", MFT_DEV_NET_BASIC),
    ]);
    let m = Manifest::parse(&b).unwrap();
    assert_eq!(m.find("disk"), Some((1, DeviceKind::Block)));
    assert_eq!(m.find_kind("disk", DeviceKind::Net), Some(3));
    assert_eq!(m.find_kind("disk", DeviceKind::Block), Some(1));
    assert_eq!(m.find_kind("net", DeviceKind::Block), None);
    assert_eq!(m.find("nope"), None);
    assert_eq!(m.find("dis"), None);
    assert_eq!(m.find("disk\0"), None);
    assert!(m.get_kind(2, DeviceKind::Net).is_some());
    assert!(m.get_kind(2, DeviceKind::Block).is_none());
    assert!(m.get_kind(0, DeviceKind::Block).is_none());
    assert!(m.get_kind(99, DeviceKind::Net).is_none());
}

#[test]
fn attach_and_emit() {
    let mut m = Manifest::parse(&typical_manifest()).unwrap();
    let unattached: Vec<_> = m.unattached().collect();
    assert_eq!(
        unattached,
        vec![
            ("storage", DeviceKind::Block),
            ("service0", DeviceKind::Net)
        ]
    );
    m.attach_block(1, 0x10_0000, 4096).unwrap();
    assert_eq!(
        m.unattached().collect::<Vec<_>>(),
        vec![("service0", DeviceKind::Net)]
    );
    let mac = [0x02, 0x11, 0x22, 0x33, 0x44, 0x55];
    m.attach_net(2, mac, 1500).unwrap();
    assert_eq!(m.unattached().count(), 0);

    let e = m.get(1).unwrap();
    assert!(e.is_attached());
    assert_eq!((e.capacity(), e.block_size(), e.b), (0x10_0000, 4096, 0));
    let e = m.get(2).unwrap();
    assert_eq!((e.mac(), e.mtu(), e.b), (mac, 1500, 0));

    let mut out = vec![0xcc; 400];
    assert_eq!(m.write_to(&mut out), Ok(320));
    assert_eq!(
        &out[320..],
        &[0xcc; 80][..],
        "nothing written past byte_len"
    );
    let out = &out[..320];
    // Byte layout, field by field.
    assert_eq!(&out[0..8], &[1, 0, 0, 0, 3, 0, 0, 0]);
    let e1 = entry(1);
    assert_eq!(&out[e1..e1 + 8], b"storage\0");
    assert_eq!(&out[e1 + 68..e1 + 72], &1u32.to_le_bytes());
    assert_eq!(&out[e1 + 72..e1 + 80], &0x10_0000u64.to_le_bytes());
    assert_eq!(&out[e1 + 80..e1 + 82], &4096u16.to_le_bytes());
    assert_eq!(
        &out[e1 + 88..e1 + 96],
        &[0; 8],
        "host fd never reaches the guest"
    );
    assert_eq!(out[e1 + 96], 1);
    let e2 = entry(2);
    assert_eq!(&out[e2 + 72..e2 + 78], &mac);
    assert_eq!(&out[e2 + 78..e2 + 80], &1500u16.to_le_bytes());
    assert_eq!(out[e2 + 96], 1);
    // Upstream would refuse its own output: it is attached.
    assert_eq!(Manifest::parse(out), Err(MftError::Attached(1)));

    // The guest's view of it.
    let view = MftView::new(out).unwrap();
    assert_eq!(view.len(), 3);
    assert!(!view.is_empty());
    let (h, disk) = view.find("storage").unwrap();
    assert_eq!(h, 1);
    assert_eq!(disk.kind(), DeviceKind::Block);
    assert!(disk.attached());
    assert_eq!((disk.capacity(), disk.block_size()), (0x10_0000, 4096));
    let (h, net) = view.find_kind("service0", DeviceKind::Net).unwrap();
    assert_eq!(h, 2);
    assert_eq!((net.mac(), net.mtu(), net.name()), (mac, 1500, "service0"));
    assert!(view.find_kind("service0", DeviceKind::Block).is_none());
    assert!(
        view.find("").is_none(),
        "the reserved entry is not a device"
    );
    assert_eq!(view.entries().count(), 3);
    assert_eq!(view.as_bytes().len(), 320);
}

#[test]
fn unattached_bytes_round_trip_exactly() {
    let mut b = typical_manifest();
    // Garbage in fields upstream does not check survives a parse/write round trip.
    b[entry(1) + 72..entry(1) + 96].fill(0x5a);
    b[entry(0) + 5] = 9;
    let m = Manifest::parse(&b).unwrap();
    let mut out = vec![0; m.byte_len()];
    m.write_to(&mut out).unwrap();
    assert_eq!(out, b);
}

#[test]
fn attach_errors() {
    let mut m = Manifest::parse(&typical_manifest()).unwrap();
    assert_eq!(m.attach_block(3, 1, 512), Err(MftError::NoSuchHandle(3)));
    assert_eq!(
        m.attach_block(2, 1, 512),
        Err(MftError::WrongKind {
            handle: 2,
            expected: DeviceKind::Block,
            found: DeviceKind::Net
        })
    );
    assert_eq!(
        m.attach_net(0, [0; 6], 1500),
        Err(MftError::WrongKind {
            handle: 0,
            expected: DeviceKind::Net,
            found: DeviceKind::ReservedFirst
        })
    );
    assert_eq!(
        m.attach_net(1, [0; 6], 1500).unwrap_err().to_string(),
        "manifest entry 1 is BLOCK_BASIC, not NET_BASIC"
    );
    let mut small = [0u8; 319];
    assert_eq!(
        m.write_to(&mut small),
        Err(MftError::BufferTooSmall {
            needed: 320,
            len: 319
        })
    );
}

#[test]
fn view_bounds() {
    let b = typical_manifest();
    for len in 0..b.len() {
        assert!(MftView::new(&b[..len]).is_none(), "length {len}");
    }
    let mut longer = b.clone();
    longer.extend_from_slice(&[0xee; 50]);
    assert_eq!(MftView::new(&longer).unwrap().as_bytes(), &b[..]);
    let mut v2 = b.clone();
    set_u32(&mut v2, 0, 2);
    assert!(MftView::new(&v2).is_none());
    let too_many = manifest_of(&names(64));
    assert!(MftView::new(&too_many).is_none());
    let max = manifest_of(&names(63));
    let view = MftView::new(&max).unwrap();
    assert_eq!(view.len(), 64);
    assert!(view.entry(64).is_none());
    assert!(view.entry(usize::MAX).is_none());
    assert_eq!(view.find("dev62").unwrap().0, 63);
    // Zero entries is a (useless) view.
    assert!(MftView::new(&[1, 0, 0, 0, 0, 0, 0, 0]).unwrap().is_empty());
}

#[test]
fn device_kind_names() {
    assert_eq!(DeviceKind::Block.to_string(), "BLOCK_BASIC");
    assert_eq!(DeviceKind::Net.to_string(), "NET_BASIC");
    assert_eq!(DeviceKind::ReservedFirst.to_string(), "RESERVED_FIRST");
    assert_eq!(DeviceKind::Other(3).to_string(), "<undefined type>");
    for raw in [
        0,
        1,
        2,
        3,
        MFT_RESERVED_FIRST,
        MFT_RESERVED_FIRST + 1,
        u32::MAX,
    ] {
        assert_eq!(DeviceKind::from_raw(raw).to_raw(), raw);
    }
    assert!(DeviceKind::Other(MFT_RESERVED_FIRST - 1).is_device());
    assert!(!DeviceKind::Other(MFT_RESERVED_FIRST + 1).is_device());
    assert!(!DeviceKind::ReservedFirst.is_device());
}
