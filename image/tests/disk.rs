//! `petrel.img`: reproducibility, and what independent tools say about it (sfdisk and
//! sgdisk for the GPT, fsck.vfat and mtools for the ESP, e2fsck, debugfs and dumpe2fs
//! for the data partition).
#![allow(clippy::unwrap_used)]

mod common_disk;

use common_disk::{
    EPOCH, Scratch, VERSION, build, extract, fsck_esp, inputs, mtools_esp, witness_ok,
};
use petrel_image::disk::{
    self, DATA_PARTITION_NAME, DiskIds, ESP_PARTITION_NAME, ESP_TYPE_GUID, LINUX_FS_TYPE_GUID,
    Layout, esp,
};

#[test]
fn same_inputs_same_bytes_in_different_directories() {
    let a = Scratch::new("petrel-disk-repro-a");
    let b = Scratch::new("petrel-disk-repro-b");
    let ra = build(&a);
    // Other paths, same content.
    let mut ib = inputs(&b);
    ib.uki = b.path("uki.efi");
    std::fs::create_dir_all(b.path("sub")).unwrap();
    let rb = disk::build(&ib, &b.path("sub/other-name.img")).unwrap();
    assert_eq!(disk::hex(&ra.sha256), disk::hex(&rb.sha256));
    assert_eq!(
        ra.sha256,
        disk::sha256_file(&b.path("sub/other-name.img")).unwrap()
    );
    // Another time: other bytes (the timestamps are really in there).
    let mut ic = inputs(&b);
    ic.source_date_epoch = EPOCH + 86_400;
    let rc = disk::build(&ic, &b.path("later.img")).unwrap();
    assert_ne!(ra.sha256, rc.sha256);
    // Sparse: a few MiB of 322 allocated, no scratch files left behind.
    assert_eq!(ra.apparent_bytes, 322 << 20);
    assert!(
        ra.allocated_bytes < 8 << 20,
        "{} bytes allocated",
        ra.allocated_bytes
    );
    let left: Vec<_> = std::fs::read_dir(a.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left.len(), 3, "{left:?}");
}

#[test]
fn refuses_bad_inputs() {
    let s = Scratch::new("petrel-disk-bad");
    let mut i = inputs(&s);
    i.version = "1.0+3".into();
    assert!(matches!(
        disk::build(&i, &s.path("x.img")),
        Err(disk::DiskError::BadVersion(_))
    ));
    let mut i = inputs(&s);
    std::fs::write(s.path("elf"), b"\x7fELF").unwrap();
    i.uki = s.path("elf");
    let e = disk::build(&i, &s.path("x.img")).unwrap_err();
    assert!(e.to_string().contains("not an EFI binary"), "{e}");
    let mut i = inputs(&s);
    i.bootloader = s.path("missing.efi");
    assert!(matches!(
        disk::build(&i, &s.path("x.img")),
        Err(disk::DiskError::Input(..))
    ));
    assert!(!s.path("x.img").exists());
}

#[test]
fn gpt_as_sfdisk_and_sgdisk_see_it() {
    let s = Scratch::new("petrel-disk-gpt");
    let r = build(&s);
    let img = r.path.to_str().unwrap();
    let ids = DiskIds::derive(VERSION);
    let layout = Layout::standard();

    let json: serde_json::Value =
        serde_json::from_str(&witness_ok("sfdisk", "fdisk", &["-J", img])).unwrap();
    let t = &json["partitiontable"];
    assert_eq!(t["label"], "gpt");
    assert_eq!(t["id"], ids.disk.to_string());
    assert_eq!(t["sectorsize"], 512);
    let parts = t["partitions"].as_array().unwrap();
    assert_eq!(parts.len(), 2);
    let expect = [
        (
            ESP_TYPE_GUID,
            ids.esp_partition,
            ESP_PARTITION_NAME,
            layout.esp_first_lba,
            layout.esp_last_lba,
        ),
        (
            LINUX_FS_TYPE_GUID,
            ids.data_partition,
            DATA_PARTITION_NAME,
            layout.data_first_lba,
            layout.data_last_lba,
        ),
    ];
    for (p, (ty, uuid, name, first, last)) in parts.iter().zip(expect) {
        assert_eq!(p["type"], ty.to_string());
        assert_eq!(p["uuid"], uuid.to_string());
        assert_eq!(p["name"], name);
        assert_eq!(p["start"], first);
        assert_eq!(p["size"], last - first + 1);
        assert_eq!(p["start"].as_u64().unwrap() % 2048, 0, "1 MiB aligned");
    }

    let verify = witness_ok("sgdisk", "gdisk", &["-v", img]);
    assert!(verify.contains("No problems found"), "{verify}");
    let print = witness_ok("sgdisk", "gdisk", &["-p", img]);
    assert!(print.contains("EF00  ESP"), "{print}");
    assert!(print.contains("8300  petrel-data"), "{print}");

    // Our own reader agrees.
    let mut f = std::fs::File::open(&r.path).unwrap();
    let table = disk::read_table(&mut f).unwrap();
    assert_eq!(table.disk_guid, ids.disk);
    assert_eq!(table.esp().unwrap().number, disk::ESP_PARTITION_NUMBER);
    assert_eq!(table.esp().unwrap().bytes, layout.esp_bytes());
    assert_eq!(table.data().unwrap().number, disk::DATA_PARTITION_NUMBER);
    assert_eq!(table.data().unwrap().unique_guid, ids.data_partition);
}

#[test]
fn esp_as_fsck_vfat_and_mtools_see_it() {
    let s = Scratch::new("petrel-disk-esp");
    let r = build(&s);
    fsck_esp(&r.path, &s);
    let esp = mtools_esp(&r.path);

    let info = witness_ok("minfo", "mtools", &["-i", &esp, "::"]);
    assert!(info.contains("disk type=\"FAT32   \""), "{info}");
    assert!(info.contains("cluster size: 4 sectors"), "{info}");
    assert!(info.contains("hidden sectors: 2048"), "{info}");
    assert!(
        info.contains(&format!("serial number: {:08X}", r.ids.esp_volume_id)),
        "{info}"
    );
    assert!(info.contains("disk label=\"PETREL-ESP \""), "{info}");

    let listing = witness_ok("mdir", "mtools", &["-i", &esp, "-/", "::"]);
    for name in [
        "BOOTX64.EFI",
        "loader.conf",
        &format!("petrel-{VERSION}.efi"),
        "petrel",
    ] {
        assert!(listing.contains(name), "{name} missing:\n{listing}");
    }
    // Every entry carries SOURCE_DATE_EPOCH (2023-11-14 22:13:20 UTC, 2 s resolution).
    for line in listing
        .lines()
        .filter(|l| l.contains("<DIR>") || l.contains(".EFI") || l.contains(" CON "))
    {
        assert!(line.contains("2023-11-14  22:13"), "bad timestamp: {line}");
    }

    let back = s.path("back");
    std::fs::create_dir(&back).unwrap();
    let boot = back.join("boot.efi");
    witness_ok(
        "mcopy",
        "mtools",
        &[
            "-n",
            "-i",
            &esp,
            "::/EFI/BOOT/BOOTX64.EFI",
            boot.to_str().unwrap(),
        ],
    );
    assert_eq!(
        std::fs::read(&boot).unwrap(),
        std::fs::read(s.path("systemd-bootx64.efi")).unwrap()
    );
    let uki = back.join("uki.efi");
    let src = format!("::/EFI/Linux/petrel-{VERSION}.efi");
    witness_ok(
        "mcopy",
        "mtools",
        &["-n", "-i", &esp, &src, uki.to_str().unwrap()],
    );
    assert_eq!(
        std::fs::read(&uki).unwrap(),
        std::fs::read(s.path("uki.efi")).unwrap()
    );
    let conf = witness_ok("mtype", "mtools", &["-i", &esp, "::/loader/loader.conf"]);
    assert_eq!(conf, esp::LOADER_CONF);
    assert!(!conf.lines().any(|l| l.trim_start().starts_with("default")));
}

#[test]
fn data_partition_as_e2fsprogs_sees_it() {
    let s = Scratch::new("petrel-disk-ext4");
    let r = build(&s);
    let data = s.path("data.ext4");
    extract(&r.path, Layout::standard().data_bytes(), &data);
    let d = data.to_str().unwrap();
    witness_ok("e2fsck", "e2fsprogs", &["-fn", d]);
    let ls = witness_ok("debugfs", "e2fsprogs", &["-R", "ls -l /", d]);
    let lost = ls
        .lines()
        .find(|l| l.ends_with("lost+found"))
        .unwrap_or_else(|| panic!("{ls}"));
    // inode, mode, (type), uid 0, gid 0
    let fields: Vec<&str> = lost.split_whitespace().collect();
    assert_eq!((fields[3], fields[4]), ("0", "0"), "{lost}");
    assert!(lost.contains("14-Nov-2023 22:13"), "{lost}");
    let head = witness_ok("dumpe2fs", "e2fsprogs", &["-h", d]);
    let field = |k: &str| {
        head.lines()
            .find(|l| l.starts_with(k))
            .map(|l| l[k.len()..].trim().to_owned())
            .unwrap_or_else(|| panic!("{k} missing:\n{head}"))
    };
    assert_eq!(
        field("Filesystem UUID:"),
        r.ids.data_fs_uuid.to_string().to_lowercase()
    );
    assert_eq!(
        field("Directory Hash Seed:"),
        r.ids.data_fs_hash_seed.to_string().to_lowercase()
    );
    assert_eq!(field("Filesystem volume name:"), "petrel-data");
    assert_eq!(field("Block size:"), "4096");
    assert_eq!(field("Block count:"), "16384");
    assert!(
        field("Filesystem features:").contains("resize_inode"),
        "online growth needs it"
    );
    assert!(field("Filesystem features:").contains("64bit"));
}
