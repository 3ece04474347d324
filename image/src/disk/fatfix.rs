//! Repairs the `.` and `..` entries that `fatfs` 0.3 writes into every new directory.
//!
//! `fatfs` 0.3.6 (the newest on crates.io) gives every name a long-file-name entry,
//! "." and ".." included, so a new directory starts `[LFN] . [LFN] ..` instead of
//! `. ..`, and its ".." names cluster 2 when the parent is the root directory, where
//! the FAT specification says 0. `fsck.fat` rejects both, and firmware FAT drivers
//! need not be lenient. [`fix_tree`] walks the whole tree after `fatfs` is done and
//! rewrites the head of each directory to `. .. <deleted> <deleted>` with the right
//! clusters. It is idempotent and never moves other entries (the two freed slots are
//! marked deleted, as any FAT driver leaves them).
//!
//! It also records the free-cluster count and the next free cluster in the FSInfo
//! sector, which `fatfs` leaves at "unknown".
//!
//! The walker reads an untrusted volume (provisioning opens disks from anywhere):
//! every cluster number is range-checked, chains and the tree are bounded, and a loop
//! ends the walk with an error instead of spinning.

use std::collections::HashSet;
use std::io::{self, Read, Seek, SeekFrom, Write};

/// Size of a directory entry, in bytes.
const ENTRY_BYTES: usize = 32;
/// Attribute of a long-file-name entry.
const ATTR_LFN: u8 = 0x0f;
/// Attribute bit of a directory.
const ATTR_DIRECTORY: u8 = 0x10;
/// Attribute bit of a volume label.
const ATTR_VOLUME_ID: u8 = 0x08;
/// First name byte of a deleted entry.
const DELETED: u8 = 0xe5;
/// Short names of the two special entries.
const DOT: &[u8; 11] = b".          ";
const DOTDOT: &[u8; 11] = b"..         ";
/// FAT32 values at or above this end a cluster chain.
const FAT32_EOC: u32 = 0x0fff_fff8;
/// The deepest directory nesting walked.
const MAX_DEPTH: usize = 32;
/// The most clusters one directory may span here.
const MAX_DIR_CLUSTERS: usize = 4096;
/// The most directories walked.
const MAX_DIRS: usize = 65_536;

/// The geometry of a FAT32 volume, from its boot sector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fat32Geometry {
    /// Bytes per sector.
    pub sector_bytes: u64,
    /// Bytes per cluster.
    pub cluster_bytes: u64,
    /// Byte offset of the first FAT.
    pub fat_offset: u64,
    /// Byte offset of cluster 2.
    pub data_offset: u64,
    /// Number of data clusters (valid cluster numbers are 2..count+2).
    pub cluster_count: u32,
    /// The root directory's first cluster.
    pub root_cluster: u32,
    /// Byte offset of the FSInfo sector, if the boot sector names one.
    pub fsinfo_offset: Option<u64>,
}

impl Fat32Geometry {
    /// Decodes a FAT32 boot sector; `None` when it is not one (FAT12/16, or fields out of range).
    pub fn parse(boot: &[u8; 512]) -> Option<Self> {
        let le16 = |at: usize| u64::from(u16::from_le_bytes([boot[at], boot[at + 1]]));
        let le32 =
            |at: usize| u32::from_le_bytes([boot[at], boot[at + 1], boot[at + 2], boot[at + 3]]);
        let sector_bytes = le16(11);
        let sectors_per_cluster = u64::from(boot[13]);
        let reserved = le16(14);
        let fats = u64::from(boot[16]);
        let root_entries = le16(17);
        let fat16_size = le16(22);
        let total = u64::from(le32(32));
        let fat_size = u64::from(le32(36));
        let root_cluster = le32(44);
        if !matches!(sector_bytes, 512 | 1024 | 2048 | 4096)
            || !sectors_per_cluster.is_power_of_two()
            || root_entries != 0
            || fat16_size != 0
            || fat_size == 0
            || fats == 0
            || boot[510..512] != [0x55, 0xaa]
        {
            return None;
        }
        let data_sector = reserved.checked_add(fats.checked_mul(fat_size)?)?;
        let data_sectors = total.checked_sub(data_sector)?;
        let cluster_count = u32::try_from(data_sectors / sectors_per_cluster).ok()?;
        // The FAT must hold an entry for every cluster.
        if fat_size * sector_bytes / 4 < u64::from(cluster_count) + 2 {
            return None;
        }
        if root_cluster < 2 || root_cluster - 2 >= cluster_count {
            return None;
        }
        let fsinfo_sector = le16(48);
        let fsinfo_offset =
            (fsinfo_sector != 0 && fsinfo_sector != 0xffff && fsinfo_sector < reserved)
                .then_some(fsinfo_sector * sector_bytes);
        Some(Self {
            fsinfo_offset,
            sector_bytes,
            cluster_bytes: sector_bytes * sectors_per_cluster,
            fat_offset: reserved * sector_bytes,
            data_offset: data_sector * sector_bytes,
            cluster_count,
            root_cluster,
        })
    }

    /// Whether `cluster` is a data cluster of this volume.
    pub fn is_valid(&self, cluster: u32) -> bool {
        cluster >= 2 && cluster - 2 < self.cluster_count
    }

    /// Byte offset of a (valid) cluster.
    pub fn cluster_offset(&self, cluster: u32) -> u64 {
        self.data_offset + u64::from(cluster - 2) * self.cluster_bytes
    }
}

/// The first cluster named by a directory entry.
fn entry_cluster(e: &[u8]) -> u32 {
    u32::from(u16::from_le_bytes([e[20], e[21]])) << 16
        | u32::from(u16::from_le_bytes([e[26], e[27]]))
}

/// Sets the first cluster of a directory entry.
fn set_entry_cluster(e: &mut [u8], cluster: u32) {
    let [a, b, c, d] = cluster.to_le_bytes();
    e[20] = c;
    e[21] = d;
    e[26] = a;
    e[27] = b;
}

/// Rewrites the head of a directory's first cluster so that it starts with `.`
/// (naming `self_cluster`) and `..` (naming `parent_cluster`, 0 for the root), with
/// any long-name entries `fatfs` put before them marked deleted. Returns whether
/// anything changed; a head of any other shape is left alone (false).
pub fn fix_dir_head(head: &mut [u8], self_cluster: u32, parent_cluster: u32) -> bool {
    if head.len() < 4 * ENTRY_BYTES {
        return false;
    }
    let slot = |i: usize| i * ENTRY_BYTES..(i + 1) * ENTRY_BYTES;
    let name_is = |h: &[u8], i: usize, n: &[u8; 11]| {
        h[slot(i)][..11] == n[..] && h[slot(i)][11] & ATTR_DIRECTORY != 0
    };
    let is_lfn = |h: &[u8], i: usize| h[slot(i)][11] == ATTR_LFN && h[slot(i)][0] != DELETED;
    let before = head[..4 * ENTRY_BYTES].to_vec();
    if is_lfn(head, 0) && name_is(head, 1, DOT) && is_lfn(head, 2) && name_is(head, 3, DOTDOT) {
        let dot = head[slot(1)].to_vec();
        let dotdot = head[slot(3)].to_vec();
        head[slot(0)].copy_from_slice(&dot);
        head[slot(1)].copy_from_slice(&dotdot);
        for i in [2, 3] {
            head[slot(i)].fill(0);
            head[slot(i)][0] = DELETED;
        }
    } else if !(name_is(head, 0, DOT) && name_is(head, 1, DOTDOT)) {
        return false;
    }
    set_entry_cluster(&mut head[slot(0)], self_cluster);
    set_entry_cluster(&mut head[slot(1)], parent_cluster);
    head[..4 * ENTRY_BYTES] != before[..]
}

/// What [`fix_tree`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FixReport {
    /// Directories walked (the root included).
    pub dirs: usize,
    /// Directories whose head was rewritten.
    pub fixed: usize,
    /// Free clusters, as now recorded in FSInfo.
    pub free_clusters: u32,
}

fn bad(msg: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// The clusters of the chain starting at `first`, bounded and loop-checked.
fn chain<D: Read + Seek>(disk: &mut D, g: &Fat32Geometry, first: u32) -> io::Result<Vec<u32>> {
    let mut out = Vec::new();
    let mut cur = first;
    loop {
        if !g.is_valid(cur) {
            return Err(bad("directory chain leaves the volume"));
        }
        if out.len() >= MAX_DIR_CLUSTERS || out.contains(&cur) {
            return Err(bad("directory chain too long or looping"));
        }
        out.push(cur);
        let mut e = [0u8; 4];
        disk.seek(SeekFrom::Start(g.fat_offset + u64::from(cur) * 4))?;
        disk.read_exact(&mut e)?;
        let next = u32::from_le_bytes(e) & 0x0fff_ffff;
        if next >= FAT32_EOC {
            return Ok(out);
        }
        cur = next;
    }
}

/// Walks every directory of the FAT32 volume on `disk` (a partition, offset 0 = boot
/// sector) and repairs the `.`/`..` entries `fatfs` wrote.
pub fn fix_tree<D: Read + Write + Seek>(disk: &mut D) -> io::Result<FixReport> {
    let mut boot = [0u8; 512];
    disk.seek(SeekFrom::Start(0))?;
    disk.read_exact(&mut boot)?;
    let g = Fat32Geometry::parse(&boot).ok_or_else(|| bad("not a FAT32 volume"))?;
    let cluster_bytes = usize::try_from(g.cluster_bytes).map_err(|_| bad("cluster too large"))?;
    let mut report = FixReport::default();
    let mut seen = HashSet::new();
    // (directory's first cluster, parent's cluster as ".." must name it, depth)
    let mut todo = vec![(g.root_cluster, None::<u32>, 0usize)];
    let mut buf = vec![0u8; cluster_bytes];
    while let Some((first, parent, depth)) = todo.pop() {
        if !seen.insert(first) {
            return Err(bad("directory tree has a loop"));
        }
        report.dirs += 1;
        if report.dirs > MAX_DIRS {
            return Err(bad("too many directories"));
        }
        let clusters = chain(disk, &g, first)?;
        for (n, &cluster) in clusters.iter().enumerate() {
            let at = g.cluster_offset(cluster);
            disk.seek(SeekFrom::Start(at))?;
            disk.read_exact(&mut buf)?;
            let parent = if n == 0 { parent } else { None };
            if let Some(parent) = parent {
                if fix_dir_head(&mut buf, first, parent) {
                    disk.seek(SeekFrom::Start(at))?;
                    disk.write_all(&buf[..4 * ENTRY_BYTES])?;
                    report.fixed += 1;
                }
            }
            let mut end = false;
            for e in buf.chunks_exact(ENTRY_BYTES) {
                if e[0] == 0 {
                    end = true;
                    break;
                }
                let attr = e[11];
                if e[0] == DELETED
                    || attr == ATTR_LFN
                    || attr & ATTR_VOLUME_ID != 0
                    || attr & ATTR_DIRECTORY == 0
                    || e[..11] == DOT[..]
                    || e[..11] == DOTDOT[..]
                {
                    continue;
                }
                if depth + 1 > MAX_DEPTH {
                    return Err(bad("directory tree too deep"));
                }
                let child = entry_cluster(e);
                // ".." of a directory in the root names cluster 0.
                let dotdot = if first == g.root_cluster { 0 } else { first };
                todo.push((child, Some(dotdot), depth + 1));
            }
            if end {
                break;
            }
        }
    }
    report.free_clusters = update_fsinfo(disk, &g)?;
    disk.flush()?;
    Ok(report)
}

/// FSInfo signatures and field offsets.
const FSI_LEAD_SIG: u32 = 0x4161_5252;
const FSI_STRUC_SIG: u32 = 0x6141_7272;
const FSI_STRUC_SIG_AT: usize = 484;
const FSI_FREE_COUNT_AT: usize = 488;
const FSI_NXT_FREE_AT: usize = 492;

/// Counts the free clusters in the first FAT and records the count and the first free
/// cluster in the FSInfo sector (left alone if it lacks its signatures). Returns the
/// count.
fn update_fsinfo<D: Read + Write + Seek>(disk: &mut D, g: &Fat32Geometry) -> io::Result<u32> {
    let entries = usize::try_from(g.cluster_count).map_err(|_| bad("too many clusters"))? + 2;
    let mut fat = vec![0u8; entries * 4];
    disk.seek(SeekFrom::Start(g.fat_offset))?;
    disk.read_exact(&mut fat)?;
    let mut free = 0u32;
    let mut first_free = None;
    for (n, e) in fat.chunks_exact(4).enumerate().skip(2) {
        if u32::from_le_bytes([e[0], e[1], e[2], e[3]]) & 0x0fff_ffff == 0 {
            free += 1;
            first_free.get_or_insert(n);
        }
    }
    let Some(at) = g.fsinfo_offset else {
        return Ok(free);
    };
    let mut sector = [0u8; 512];
    disk.seek(SeekFrom::Start(at))?;
    disk.read_exact(&mut sector)?;
    let le32 =
        |i: usize| u32::from_le_bytes([sector[i], sector[i + 1], sector[i + 2], sector[i + 3]]);
    if le32(0) != FSI_LEAD_SIG || le32(FSI_STRUC_SIG_AT) != FSI_STRUC_SIG {
        return Ok(free);
    }
    let next = first_free.map_or(u32::MAX, |n| u32::try_from(n).unwrap_or(u32::MAX));
    sector[FSI_FREE_COUNT_AT..FSI_FREE_COUNT_AT + 4].copy_from_slice(&free.to_le_bytes());
    sector[FSI_NXT_FREE_AT..FSI_NXT_FREE_AT + 4].copy_from_slice(&next.to_le_bytes());
    disk.seek(SeekFrom::Start(at))?;
    disk.write_all(&sector)?;
    Ok(free)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &[u8; 11], attr: u8, cluster: u32) -> [u8; 32] {
        let mut e = [0u8; 32];
        e[..11].copy_from_slice(name);
        e[11] = attr;
        set_entry_cluster(&mut e, cluster);
        e
    }

    fn lfn() -> [u8; 32] {
        let mut e = [0xffu8; 32];
        e[0] = 0x41;
        e[11] = ATTR_LFN;
        e
    }

    #[test]
    fn fixes_the_fatfs_head() {
        let mut head = [
            lfn(),
            entry(DOT, 0x10, 3),
            lfn(),
            entry(DOTDOT, 0x10, 2),
            entry(b"BOOT       ", 0x10, 4),
        ]
        .concat();
        assert!(fix_dir_head(&mut head, 3, 0));
        assert_eq!(&head[..11], DOT);
        assert_eq!(entry_cluster(&head[..32]), 3);
        assert_eq!(&head[32..43], DOTDOT);
        assert_eq!(entry_cluster(&head[32..64]), 0);
        assert_eq!(head[64], DELETED);
        assert_eq!(head[96], DELETED);
        assert_eq!(&head[128..139], b"BOOT       ");
        // Idempotent.
        assert!(!fix_dir_head(&mut head, 3, 0));
    }

    #[test]
    fn leaves_other_shapes_alone() {
        let mut head = [entry(b"FOO        ", 0x20, 9), lfn(), lfn(), lfn()].concat();
        let copy = head.clone();
        assert!(!fix_dir_head(&mut head, 3, 0));
        assert_eq!(head, copy);
        assert!(!fix_dir_head(&mut [0u8; 64], 3, 0));
    }

    #[test]
    fn cluster_split_fields() {
        let mut e = [0u8; 32];
        set_entry_cluster(&mut e, 0x0123_4567);
        assert_eq!(&e[20..22], &[0x23, 0x01]);
        assert_eq!(&e[26..28], &[0x67, 0x45]);
        assert_eq!(entry_cluster(&e), 0x0123_4567);
    }

    #[test]
    fn geometry_refuses_garbage() {
        assert_eq!(Fat32Geometry::parse(&[0u8; 512]), None);
        let mut b = [0xffu8; 512];
        assert_eq!(Fat32Geometry::parse(&b), None);
        b[510] = 0x55;
        b[511] = 0xaa;
        assert_eq!(Fat32Geometry::parse(&b), None);
    }
}
