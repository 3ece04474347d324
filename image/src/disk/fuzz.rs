//! The fuzz entry point for the disk readers that see untrusted bytes when
//! `petrel-image provision` opens a disk: the GPT reader ([`super::read_table`]) and
//! the FAT32 directory repair walk ([`super::fatfix::fix_tree`]).
//!
//! `fuzz/fuzz_targets/disk_table.rs` calls [`fuzz_check`]; on stable, the tests below
//! replay `fuzz/corpus/disk_table/` and every truncation and many corruptions of two
//! small valid disks through it. The corpus is written by
//! `PETREL_WRITE_CORPUS=1 cargo test -p petrel-image --lib -- --ignored write_disk_corpus`.

use std::io::Cursor;

use super::{fatfix, read_table};

/// Runs the readers on `data` as a whole disk and as a FAT32 partition; they must
/// return (an error is fine) without panicking, and what they return must be sane.
pub fn fuzz_check(data: &[u8]) {
    let len = data.len() as u64;
    if let Ok(table) = read_table(&mut Cursor::new(data)) {
        for p in &table.partitions {
            assert!(p.bytes.start < p.bytes.end && p.bytes.end <= len);
            assert!(p.number >= 1);
        }
    }
    let mut part = Cursor::new(data.to_vec());
    if let Ok(report) = fatfix::fix_tree(&mut part) {
        assert!(report.fixed <= report.dirs);
        // Idempotent: a second pass finds nothing left to fix.
        let again = fatfix::fix_tree(&mut part).map(|r| r.fixed);
        assert!(matches!(again, Ok(0)), "second pass: {again:?}");
        assert_eq!(part.get_ref().len(), data.len());
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::disk::fatfix::Fat32Geometry;
    use crate::disk::guid::Guid;
    use gptman::{GPT, GPTPartitionEntry};
    use std::path::PathBuf;

    /// An 80-sector disk with a GPT naming a 4-sector ESP and a data partition.
    pub(crate) fn tiny_gpt() -> Vec<u8> {
        let mut disk = Cursor::new(vec![0u8; 80 * 512]);
        let mut gpt =
            GPT::new_from(&mut disk, 512, Guid::derive("t", "disk").to_gpt_bytes()).unwrap();
        gpt[1] = GPTPartitionEntry {
            partition_type_guid: crate::disk::ESP_TYPE_GUID.to_gpt_bytes(),
            unique_partition_guid: Guid::derive("t", "esp").to_gpt_bytes(),
            starting_lba: 34,
            ending_lba: 37,
            attribute_bits: 0,
            partition_name: "ESP".into(),
        };
        gpt[2] = GPTPartitionEntry {
            partition_type_guid: crate::disk::LINUX_FS_TYPE_GUID.to_gpt_bytes(),
            unique_partition_guid: Guid::derive("t", "data").to_gpt_bytes(),
            starting_lba: 38,
            ending_lba: 40,
            attribute_bits: 0,
            partition_name: "petrel-data".into(),
        };
        gpt.write_into(&mut disk).unwrap();
        GPT::write_protective_mbr_into(&mut disk, 512).unwrap();
        disk.into_inner()
    }

    /// A GPT with valid checksums whose partition 1 starts at LBA 0, which
    /// `gptman`'s reader would panic on.
    pub(crate) fn gpt_at_lba0() -> Vec<u8> {
        let mut disk = Cursor::new(tiny_gpt());
        let mut gpt = GPT::find_from(&mut disk).unwrap();
        gpt[1].starting_lba = 0;
        let entries: Vec<GPTPartitionEntry> = gpt.iter().map(|(_, p)| p.clone()).collect();
        gpt.header.write_into(&mut disk, 512, &entries).unwrap();
        disk.into_inner()
    }

    #[test]
    fn refuses_what_gptman_would_panic_on() {
        let e = read_table(&mut Cursor::new(gpt_at_lba0())).unwrap_err();
        assert!(e.to_string().contains("LBA 0"), "{e}");
    }

    fn put16(b: &mut [u8], at: usize, v: u16) {
        b[at..at + 2].copy_from_slice(&v.to_le_bytes());
    }
    fn put32(b: &mut [u8], at: usize, v: u32) {
        b[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }

    fn dir_entry(name: &[u8; 11], attr: u8, cluster: u32) -> [u8; 32] {
        let mut e = [0u8; 32];
        e[..11].copy_from_slice(name);
        e[11] = attr;
        put16(&mut e, 20, (cluster >> 16) as u16);
        put16(&mut e, 26, (cluster & 0xffff) as u16);
        e
    }

    fn lfn_entry() -> [u8; 32] {
        let mut e = [0xffu8; 32];
        e[0] = 0x41;
        e[11] = 0x0f;
        e
    }

    /// A 16-sector FAT32 volume (1 sector per cluster) shaped as `fatfs` leaves it:
    /// the root holds directory `EFI` (cluster 3) whose head is `[LFN] . [LFN] ..`
    /// with `..` naming cluster 2, and `EFI` holds directory `BOOT` (cluster 4),
    /// likewise; FSInfo says "unknown".
    pub(crate) fn tiny_fat32() -> Vec<u8> {
        let mut v = vec![0u8; 16 * 512];
        let boot = &mut v[..512];
        boot[..3].copy_from_slice(&[0xeb, 0x58, 0x90]);
        put16(boot, 11, 512);
        boot[13] = 1; // sectors per cluster
        put16(boot, 14, 2); // reserved: boot + FSInfo
        boot[16] = 1; // one FAT
        boot[21] = 0xf8;
        put32(boot, 32, 16); // total sectors
        put32(boot, 36, 1); // sectors per FAT
        put32(boot, 44, 2); // root cluster
        put16(boot, 48, 1); // FSInfo sector
        boot[510] = 0x55;
        boot[511] = 0xaa;
        let fsinfo = &mut v[512..1024];
        put32(fsinfo, 0, 0x4161_5252);
        put32(fsinfo, 484, 0x6141_7272);
        put32(fsinfo, 488, u32::MAX);
        put32(fsinfo, 492, u32::MAX);
        put32(fsinfo, 508, 0xaa55_0000);
        let fat = &mut v[1024..1536];
        put32(fat, 0, 0x0fff_fff8);
        put32(fat, 4, 0x0fff_ffff);
        for c in 2..5 {
            put32(fat, c * 4, 0x0fff_ffff);
        }
        let cluster = |c: usize| (3 + c - 2) * 512;
        let root = cluster(2);
        v[root..root + 32].copy_from_slice(&lfn_entry());
        v[root + 32..root + 64].copy_from_slice(&dir_entry(b"EFI        ", 0x10, 3));
        let efi = cluster(3);
        let head = [
            lfn_entry(),
            dir_entry(b".          ", 0x10, 3),
            lfn_entry(),
            dir_entry(b"..         ", 0x10, 2),
            lfn_entry(),
            dir_entry(b"BOOT       ", 0x10, 4),
        ]
        .concat();
        v[efi..efi + head.len()].copy_from_slice(&head);
        let bootdir = cluster(4);
        let head = [
            lfn_entry(),
            dir_entry(b".          ", 0x10, 4),
            lfn_entry(),
            dir_entry(b"..         ", 0x10, 3),
        ]
        .concat();
        v[bootdir..bootdir + head.len()].copy_from_slice(&head);
        v
    }

    fn cluster_of(v: &[u8], at: usize) -> u32 {
        u32::from(u16::from_le_bytes([v[at + 20], v[at + 21]])) << 16
            | u32::from(u16::from_le_bytes([v[at + 26], v[at + 27]]))
    }

    #[test]
    fn fix_tree_repairs_every_directory_and_fsinfo() {
        let mut part = Cursor::new(tiny_fat32());
        let g = Fat32Geometry::parse(part.get_ref()[..512].try_into().unwrap()).unwrap();
        assert_eq!(
            (g.cluster_count, g.root_cluster, g.fsinfo_offset),
            (13, 2, Some(512))
        );
        let report = fatfix::fix_tree(&mut part).unwrap();
        assert_eq!(
            (report.dirs, report.fixed, report.free_clusters),
            (3, 2, 10)
        );
        let v = part.into_inner();
        let (efi, boot) = (4 * 512, 5 * 512);
        assert_eq!(&v[efi..efi + 11], b".          ");
        assert_eq!(cluster_of(&v, efi), 3);
        assert_eq!(&v[efi + 32..efi + 43], b"..         ");
        assert_eq!(
            cluster_of(&v, efi + 32),
            0,
            "'..' of a root child names cluster 0"
        );
        assert_eq!(v[efi + 64], 0xe5);
        assert_eq!(v[efi + 96], 0xe5);
        assert_eq!(
            &v[efi + 160..efi + 171],
            b"BOOT       ",
            "other entries stay put"
        );
        assert_eq!(cluster_of(&v, boot + 32), 3);
        assert_eq!(
            u32::from_le_bytes(v[512 + 488..512 + 492].try_into().unwrap()),
            10
        );
        assert_eq!(
            u32::from_le_bytes(v[512 + 492..512 + 496].try_into().unwrap()),
            5
        );
    }

    #[test]
    fn fix_tree_stops_on_loops() {
        let mut v = tiny_fat32();
        // BOOT's entry in EFI points back at the root cluster.
        let at = 4 * 512 + 5 * 32;
        v[at + 26] = 2;
        assert!(fatfix::fix_tree(&mut Cursor::new(v.clone())).is_err());
        // A FAT chain that loops on itself.
        let mut v = tiny_fat32();
        v[1024 + 2 * 4..1024 + 3 * 4].copy_from_slice(&2u32.to_le_bytes());
        assert!(fatfix::fix_tree(&mut Cursor::new(v)).is_err());
    }

    /// The seeds and the byte ranges worth corrupting (the rest is zeros nothing reads).
    fn seeds() -> Vec<(Vec<u8>, Vec<std::ops::Range<usize>>)> {
        let gpt = tiny_gpt();
        let end = gpt.len();
        vec![
            (gpt, vec![0..512 + 512 + 3 * 128, end - 512..end]),
            (tiny_fat32(), vec![0..1024 + 64, 3 * 512..6 * 512]),
        ]
    }

    /// Every truncation and, for every interesting byte, three corruptions.
    #[test]
    fn mutations_never_panic() {
        for (seed, ranges) in seeds() {
            fuzz_check(&seed);
            for len in (0..seed.len()).step_by(7) {
                fuzz_check(&seed[..len]);
            }
            let mut m = seed.clone();
            for i in ranges.into_iter().flatten() {
                let orig = m[i];
                for x in [0x00, 0xff, orig ^ 0x80] {
                    m[i] = x;
                    fuzz_check(&m);
                }
                m[i] = orig;
            }
        }
    }

    fn corpus_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/disk_table")
    }

    #[test]
    fn corpus_replays() {
        let dir = corpus_dir();
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let mut n = 0;
        for e in entries {
            let path = e.unwrap().path();
            fuzz_check(&std::fs::read(&path).unwrap());
            n += 1;
        }
        assert!(n >= 2, "corpus {} has {n} files", dir.display());
    }

    #[test]
    #[ignore = "writes the seed corpus; run with PETREL_WRITE_CORPUS=1"]
    fn write_disk_corpus() {
        assert!(std::env::var_os("PETREL_WRITE_CORPUS").is_some());
        let dir = corpus_dir();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("tiny_gpt"), tiny_gpt()).unwrap();
        std::fs::write(dir.join("tiny_fat32"), tiny_fat32()).unwrap();
        std::fs::write(dir.join("gpt_at_lba0"), gpt_at_lba0()).unwrap();
    }
}
