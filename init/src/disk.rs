//! The boot disk: finding the ESP (by `LoaderDevicePartUUID`, else the first ESP) and the
//! `petrel-data` partition on the same disk, mounting both, and growing the data
//! partition and its ext4 file system to the end of the disk, online.
//!
//! The decisions (which partition, how to grow the table, how big the file system should
//! be) are pure functions over what was read; the reads and writes are the thin part.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::gpt::{ESP_TYPE, Gpt, Guid, Partition};

/// Where the ESP is mounted (read-only).
pub const ESP_MOUNT: &str = "/boot/efi";
/// Where the data partition is mounted.
pub const DATA_MOUNT: &str = "/var/lib/petrel";
/// The GPT name of the data partition.
pub const DATA_PARTITION_NAME: &str = "petrel-data";
/// Partitions end on 1 MiB boundaries.
pub const ALIGN_BYTES: u64 = 1 << 20;
/// Don't bother growing the file system for less than this.
pub const GROW_MIN_BYTES: u64 = 16 << 20;

/// A whole disk as sysfs describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    /// Kernel name (`vda`, `sda`, `nvme0n1`).
    pub name: String,
    /// Size in logical sectors.
    pub sectors: u64,
    /// Logical sector size in bytes.
    pub sector_size: u64,
    /// Partition number → kernel name (`2` → `vda2`).
    pub partitions: Vec<(u32, String)>,
}

impl Disk {
    /// `/dev/NAME`.
    pub fn dev(&self) -> PathBuf {
        Path::new("/dev").join(&self.name)
    }

    /// `/dev/` path of partition `number`, when the kernel has it.
    pub fn partition_dev(&self, number: u32) -> Option<PathBuf> {
        self.partitions
            .iter()
            .find(|(n, _)| *n == number)
            .map(|(_, name)| Path::new("/dev").join(name))
    }
}

/// What was found on the boot disk.
#[derive(Debug, Clone)]
pub struct BootDisk {
    /// The disk.
    pub disk: Disk,
    /// Its partition table.
    pub gpt: Gpt,
    /// The ESP's entry.
    pub esp: Partition,
    /// The data partition's entry, if the disk has one.
    pub data: Option<Partition>,
}

/// Picks the ESP among `(disk index, partition)` candidates: the one whose GUID the loader
/// named, else (no UEFI loader variable) the first ESP.
pub fn choose_esp(parts: &[Partition], loader_part_uuid: Option<Guid>) -> Option<&Partition> {
    let mut esps = parts.iter().filter(|p| p.type_guid == ESP_TYPE);
    match loader_part_uuid {
        Some(uuid) => esps.find(|p| p.guid == uuid),
        None => esps.next(),
    }
}

/// The data partition on a disk.
pub fn choose_data(parts: &[Partition]) -> Option<&Partition> {
    parts.iter().find(|p| p.name == DATA_PARTITION_NAME)
}

/// Whether a block device name can hold our disk (not a loop, RAM, optical or floppy).
pub fn is_candidate_disk(name: &str) -> bool {
    !["loop", "ram", "zram", "sr", "fd", "dm-", "md"]
        .iter()
        .any(|p| name.starts_with(p))
}

/// Every whole disk in `/sys/class/block`, sorted by name, with its partitions.
pub fn list_disks() -> Vec<Disk> {
    let mut disks: Vec<Disk> = Vec::new();
    let mut parts: Vec<(String, u32, String)> = Vec::new();
    let Ok(entries) = std::fs::read_dir("/sys/class/block") else {
        return disks;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let sys = e.path();
        if let Ok(n) = std::fs::read_to_string(sys.join("partition")) {
            // The parent directory of a partition's device directory is its disk.
            let parent = std::fs::canonicalize(&sys).ok().and_then(|p| {
                p.parent()
                    .and_then(|d| d.file_name())
                    .map(|d| d.to_string_lossy().into_owned())
            });
            if let (Ok(number), Some(parent)) = (n.trim().parse(), parent) {
                parts.push((parent, number, name));
            }
            continue;
        }
        if !is_candidate_disk(&name) {
            continue;
        }
        let read_u64 = |f: &str| {
            std::fs::read_to_string(sys.join(f))
                .ok()
                .and_then(|t| t.trim().parse::<u64>().ok())
        };
        let sector_size = read_u64("queue/logical_block_size")
            .filter(|&s| s >= 512)
            .unwrap_or(512);
        let Some(size_512) = read_u64("size").filter(|&s| s > 0) else {
            continue;
        };
        disks.push(Disk {
            name,
            sectors: size_512.saturating_mul(512) / sector_size,
            sector_size,
            partitions: Vec::new(),
        });
    }
    for (parent, number, name) in parts {
        if let Some(d) = disks.iter_mut().find(|d| d.name == parent) {
            d.partitions.push((number, name));
        }
    }
    disks.sort_by(|a, b| a.name.cmp(&b.name));
    disks
}

/// Reads and checks the primary GPT of a disk.
pub fn read_gpt(disk: &Disk) -> Result<Gpt, String> {
    let f = File::open(disk.dev()).map_err(|e| format!("{}: {e}", disk.dev().display()))?;
    let ss = usize::try_from(disk.sector_size).map_err(|_| "sector size".to_owned())?;
    let mut header = vec![0u8; ss];
    f.read_exact_at(&mut header, disk.sector_size)
        .map_err(|e| format!("{}: {e}", disk.dev().display()))?;
    let h = crate::gpt::Header::parse(&header).map_err(|e| e.to_string())?;
    let mut entries = vec![0u8; h.entries_bytes().unwrap_or(0)];
    let at = h
        .entries_lba
        .checked_mul(disk.sector_size)
        .ok_or("entry array offset")?;
    f.read_exact_at(&mut entries, at)
        .map_err(|e| format!("{}: {e}", disk.dev().display()))?;
    Gpt::parse(&header, &entries).map_err(|e| e.to_string())
}

/// Looks for the boot disk among the disks present now.
pub fn find_boot_disk(loader_part_uuid: Option<Guid>) -> Option<BootDisk> {
    for disk in list_disks() {
        let Ok(gpt) = read_gpt(&disk) else { continue };
        let parts = gpt.partitions();
        if let Some(esp) = choose_esp(&parts, loader_part_uuid) {
            let esp = esp.clone();
            let data = choose_data(&parts).cloned();
            return Some(BootDisk {
                disk,
                gpt,
                esp,
                data,
            });
        }
    }
    None
}

/// The size fields of an ext4 superblock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ext4Size {
    /// Blocks in the file system.
    pub blocks: u64,
    /// Bytes per block.
    pub block_size: u64,
}

/// Parses the superblock (the 1024 bytes at offset 1024 of the partition).
pub fn parse_ext4_superblock(sb: &[u8]) -> Option<Ext4Size> {
    let u32_at = |o: usize| {
        sb.get(o..o + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
    };
    let magic = sb.get(0x38..0x3A)?;
    if magic != [0x53, 0xEF] {
        return None;
    }
    let log = u32_at(0x18)?;
    if log > 6 {
        return None;
    }
    let lo = u64::from(u32_at(0x04)?);
    let incompat = u32_at(0x60)?;
    let hi = if incompat & 0x80 != 0 {
        u64::from(u32_at(0x150)?)
    } else {
        0
    };
    Some(Ext4Size {
        blocks: (hi << 32) | lo,
        block_size: 1024 << log,
    })
}

/// The block count the file system should grow to, if growing is worth it.
pub fn ext4_target_blocks(fs: Ext4Size, partition_bytes: u64) -> Option<u64> {
    let target = partition_bytes / fs.block_size.max(1);
    (target
        .saturating_sub(fs.blocks)
        .saturating_mul(fs.block_size)
        >= GROW_MIN_BYTES)
        .then_some(target)
}

/// Grows the data partition (table, kernel view, then ext4) to fill the disk. Runs with
/// the data file system mounted at [`DATA_MOUNT`]. Returns a line for the log.
pub fn grow_data(boot: &BootDisk) -> io::Result<Option<String>> {
    let other = |e: String| io::Error::other(e);
    let Some(data) = &boot.data else {
        return Ok(None);
    };
    let disk = &boot.disk;
    let ss = disk.sector_size;
    let gpt = read_gpt(disk).map_err(other)?;
    let mut last = data.last_lba;
    let mut grew_table = false;
    if let Some(g) = gpt
        .grow(data.number, disk.sectors, ss, ALIGN_BYTES / ss)
        .map_err(|e| other(e.to_string()))?
    {
        let at = |lba: u64| {
            lba.checked_mul(ss)
                .ok_or_else(|| other("LBA out of range".into()))
        };
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(disk.dev())?;
        // Backup copy first: a crash before the primary is written leaves the old, valid
        // primary table, and the next boot does it all again.
        f.write_all_at(&g.entries, at(g.backup_entries_lba)?)?;
        f.write_all_at(&g.backup_header, at(g.backup_header_lba)?)?;
        f.sync_all()?;
        f.write_all_at(&g.entries, at(g.primary_entries_lba)?)?;
        f.write_all_at(&g.primary_header, at(g.primary_header_lba)?)?;
        f.sync_all()?;
        last = g.new_last_lba;
        grew_table = g.new_last_lba != g.old_last_lba;
    }
    let part_bytes = last
        .checked_add(1)
        .and_then(|end| end.checked_sub(data.first_lba))
        .and_then(|n| n.checked_mul(ss))
        .ok_or_else(|| other("data partition range".into()))?;
    let start_bytes = data
        .first_lba
        .checked_mul(ss)
        .ok_or_else(|| other("data partition range".into()))?;
    let part_name = disk
        .partitions
        .iter()
        .find(|(n, _)| *n == data.number)
        .map(|(_, n)| n.clone())
        .ok_or_else(|| other("data partition has no device".into()))?;
    let kernel_bytes = std::fs::read_to_string(format!("/sys/class/block/{part_name}/size"))
        .ok()
        .and_then(|t| t.trim().parse::<u64>().ok())
        .map_or(0, |s| s.saturating_mul(512));
    if kernel_bytes < part_bytes {
        let f = File::open(disk.dev())?;
        crate::sys::blkpg_resize_partition(&f, data.number, start_bytes, part_bytes)?;
    }
    let dev = Path::new("/dev").join(&part_name);
    let mut sb = vec![0u8; 1024];
    File::open(&dev)?.read_exact_at(&mut sb, 1024)?;
    let fs = parse_ext4_superblock(&sb)
        .ok_or_else(|| other(format!("{}: no ext4 superblock", dev.display())))?;
    let Some(target) = ext4_target_blocks(fs, part_bytes) else {
        return Ok(grew_table.then(|| format!("partition grown to {} MiB", part_bytes >> 20)));
    };
    let dir = File::open(DATA_MOUNT)?;
    crate::sys::ext4_resize_fs(&dir, target)?;
    Ok(Some(format!(
        "grown from {} MiB to {} MiB",
        fs.blocks.saturating_mul(fs.block_size) >> 20,
        target.saturating_mul(fs.block_size) >> 20
    )))
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)]
mod tests {
    use super::*;
    use crate::gpt::tests::{make_disk, read};

    #[test]
    fn chooses_the_loader_esp() {
        let disk = make_disk(40_000);
        let parts = read(&disk).unwrap().partitions();
        let esp_guid = Guid::parse("11111111-2222-3333-4444-555555555555");
        assert_eq!(choose_esp(&parts, esp_guid).map(|p| p.number), Some(1));
        assert_eq!(choose_esp(&parts, None).map(|p| p.number), Some(1));
        // A flashed twin with the same GUIDs is told apart by disk order; an unknown GUID
        // matches nothing.
        assert_eq!(
            choose_esp(&parts, Guid::parse("11111111-2222-3333-4444-555555555556")),
            None
        );
        assert_eq!(choose_data(&parts).map(|p| p.number), Some(2));
        assert_eq!(choose_data(&parts[..1]), None);
    }

    #[test]
    fn disk_names() {
        assert!(is_candidate_disk("vda"));
        assert!(is_candidate_disk("sda"));
        assert!(is_candidate_disk("nvme0n1"));
        assert!(is_candidate_disk("mmcblk0"));
        assert!(!is_candidate_disk("loop0"));
        assert!(!is_candidate_disk("sr0"));
        assert!(!is_candidate_disk("ram3"));
    }

    fn superblock(blocks: u64, log: u32, bit64: bool) -> Vec<u8> {
        let mut sb = vec![0u8; 1024];
        sb[0x38..0x3A].copy_from_slice(&[0x53, 0xEF]);
        sb[0x04..0x08].copy_from_slice(&(blocks as u32).to_le_bytes());
        sb[0x18..0x1C].copy_from_slice(&log.to_le_bytes());
        if bit64 {
            sb[0x60..0x64].copy_from_slice(&0x80u32.to_le_bytes());
            sb[0x150..0x154].copy_from_slice(&((blocks >> 32) as u32).to_le_bytes());
        }
        sb
    }

    #[test]
    fn ext4_sizes() {
        let fs = parse_ext4_superblock(&superblock(2048, 2, true)).unwrap();
        assert_eq!(
            fs,
            Ext4Size {
                blocks: 2048,
                block_size: 4096
            }
        );
        let big = parse_ext4_superblock(&superblock(5 << 32, 2, true)).unwrap();
        assert_eq!(big.blocks, 5 << 32);
        // Without the 64bit feature the high word is ignored.
        let mut sb = superblock(10, 0, false);
        sb[0x150] = 1;
        assert_eq!(parse_ext4_superblock(&sb).unwrap().blocks, 10);
        assert_eq!(parse_ext4_superblock(&[0; 1024]), None);
        assert_eq!(parse_ext4_superblock(&superblock(1, 30, false)), None);
        assert_eq!(
            parse_ext4_superblock(&superblock(1, 2, false)[..0x40]),
            None
        );
        // 8 MiB → 1 GiB grows; 8 MiB in a 8 MiB + 1 MiB partition does not.
        assert_eq!(ext4_target_blocks(fs, 1 << 30), Some(262_144));
        assert_eq!(ext4_target_blocks(fs, 9 << 20), None);
        assert_eq!(ext4_target_blocks(fs, 1 << 20), None);
    }
}
