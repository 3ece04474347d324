//! GUID partition tables: read the header and entries, and compute the writes that grow
//! the last partition to the end of a larger disk — pure, over byte slices.
//!
//! The growth moves the backup table to the disk's new end, raises `last_usable_lba`
//! and the partition's `last_lba`, and recomputes every CRC. The caller writes the backup
//! copy first, then the primary: a crash in between leaves a valid primary table (the old
//! one), and the next boot does it again. Contract: no function here panics on any input;
//! sizes are checked before allocating.

/// The header signature.
pub const GPT_SIGNATURE: &[u8; 8] = b"EFI PART";
/// Size of the header fields covered by its CRC (revision 1.0).
pub const GPT_HEADER_SIZE: u32 = 92;
/// Largest entry array we read (128 entries of 128 bytes is 16 KiB).
pub const GPT_ENTRIES_MAX_BYTES: usize = 1 << 20;
/// The partition type of an EFI system partition.
pub const ESP_TYPE: Guid = Guid::from_fields(
    0xC12A_7328,
    0xF81F,
    0x11D2,
    [0xBA, 0x4B, 0x00, 0xA0, 0xC9, 0x3E, 0xC9, 0x3B],
);

/// A GUID in its on-disk (mixed-endian) byte order.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Guid(pub [u8; 16]);

impl Guid {
    /// From the fields of the text form `d1-d2-d3-d4[0..2]-d4[2..8]`.
    pub const fn from_fields(d1: u32, d2: u16, d3: u16, d4: [u8; 8]) -> Guid {
        let a = d1.to_le_bytes();
        let b = d2.to_le_bytes();
        let c = d3.to_le_bytes();
        Guid([
            a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d4[0], d4[1], d4[2], d4[3], d4[4],
            d4[5], d4[6], d4[7],
        ])
    }

    /// Parses `XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX` (either case).
    pub fn parse(text: &str) -> Option<Guid> {
        let t = text.trim();
        let parts: Vec<&str> = t.split('-').collect();
        let [p1, p2, p3, p4, p5] = parts.as_slice() else {
            return None;
        };
        if [p1.len(), p2.len(), p3.len(), p4.len(), p5.len()] != [8, 4, 4, 4, 12] {
            return None;
        }
        let hex = |s: &str| u64::from_str_radix(s, 16).ok();
        if !t.bytes().all(|b| b == b'-' || b.is_ascii_hexdigit()) {
            return None;
        }
        let d1 = u32::try_from(hex(p1)?).ok()?;
        let d2 = u16::try_from(hex(p2)?).ok()?;
        let d3 = u16::try_from(hex(p3)?).ok()?;
        let d4 = hex(p4)?.to_be_bytes();
        let d5 = hex(p5)?.to_be_bytes();
        let tail = [d4[6], d4[7], d5[2], d5[3], d5[4], d5[5], d5[6], d5[7]];
        Some(Guid::from_fields(d1, d2, d3, tail))
    }
}

impl std::fmt::Display for Guid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let b = &self.0;
        write!(
            f,
            "{:02X}{:02X}{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}-",
            b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9]
        )?;
        b[10..].iter().try_for_each(|x| write!(f, "{x:02X}"))
    }
}

impl std::fmt::Debug for Guid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Guid({self})")
    }
}

/// CRC-32 (IEEE 802.3, reflected), as GPT uses.
pub fn crc32(data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut t = [0u32; 256];
        let mut i: u32 = 0;
        while i < 256 {
            let mut c = i;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            t[i as usize] = c;
            i += 1;
        }
        t
    };
    let mut c = !0u32;
    for &b in data {
        c = TABLE[usize::from(c.to_le_bytes()[0] ^ b)] ^ (c >> 8);
    }
    !c
}

/// Why a table cannot be read or grown.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GptError {
    /// No `EFI PART` signature: not a GPT disk.
    #[error("no GPT signature")]
    NoSignature,
    /// Header size, entry size or counts out of range.
    #[error("GPT header field out of range: {0}")]
    BadHeader(&'static str),
    /// A CRC does not match.
    #[error("GPT {0} CRC mismatch")]
    Crc(&'static str),
    /// The entry array given is shorter than the header says.
    #[error("GPT entry array truncated")]
    Truncated,
    /// No partition with that number.
    #[error("no partition {0}")]
    NoPartition(u32),
    /// Another partition lies after the one to grow.
    #[error("partition {0} is not the last one")]
    NotLast(u32),
    /// The disk is smaller than the table says.
    #[error("disk of {0} sectors is smaller than its partition table")]
    DiskShrank(u64),
}

/// The fields of a GPT header we use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// LBA of this header.
    pub my_lba: u64,
    /// LBA of the other copy.
    pub alternate_lba: u64,
    /// First LBA a partition may use.
    pub first_usable_lba: u64,
    /// Last LBA a partition may use.
    pub last_usable_lba: u64,
    /// The disk GUID.
    pub disk_guid: Guid,
    /// LBA of this copy's entry array.
    pub entries_lba: u64,
    /// Number of entries.
    pub num_entries: u32,
    /// Bytes per entry (128 or a larger power of two).
    pub entry_size: u32,
    /// CRC of the entry array.
    pub entries_crc: u32,
    /// The header sector as read (reserved bytes kept).
    raw: Vec<u8>,
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    b.get(off..off + 4)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u32::from_le_bytes)
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    b.get(off..off + 8)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}

fn put(b: &mut [u8], off: usize, v: &[u8]) {
    if let Some(dst) = b.get_mut(off..off + v.len()) {
        dst.copy_from_slice(v);
    }
}

impl Header {
    /// Parses and checks a header sector (`sector` is the whole LBA).
    pub fn parse(sector: &[u8]) -> Result<Header, GptError> {
        if sector.get(..8) != Some(&GPT_SIGNATURE[..]) {
            return Err(GptError::NoSignature);
        }
        let size = u32_at(sector, 12);
        let size_bytes = usize::try_from(size).unwrap_or(usize::MAX);
        if size < GPT_HEADER_SIZE || size_bytes > sector.len() {
            return Err(GptError::BadHeader("header size"));
        }
        let mut copy = sector
            .get(..size_bytes)
            .ok_or(GptError::BadHeader("header size"))?
            .to_vec();
        put(&mut copy, 16, &[0; 4]);
        if crc32(&copy) != u32_at(sector, 16) {
            return Err(GptError::Crc("header"));
        }
        let h = Header {
            my_lba: u64_at(sector, 24),
            alternate_lba: u64_at(sector, 32),
            first_usable_lba: u64_at(sector, 40),
            last_usable_lba: u64_at(sector, 48),
            disk_guid: Guid(
                sector
                    .get(56..72)
                    .and_then(|s| s.try_into().ok())
                    .unwrap_or_default(),
            ),
            entries_lba: u64_at(sector, 72),
            num_entries: u32_at(sector, 80),
            entry_size: u32_at(sector, 84),
            entries_crc: u32_at(sector, 88),
            raw: sector.to_vec(),
        };
        if h.entry_size < 128 || !h.entry_size.is_power_of_two() {
            return Err(GptError::BadHeader("entry size"));
        }
        if h.entries_bytes().is_none_or(|n| n > GPT_ENTRIES_MAX_BYTES) {
            return Err(GptError::BadHeader("entry count"));
        }
        Ok(h)
    }

    /// Size of the entry array in bytes, when it is representable.
    pub fn entries_bytes(&self) -> Option<usize> {
        usize::try_from(u64::from(self.num_entries) * u64::from(self.entry_size)).ok()
    }

    /// Sectors the entry array occupies.
    fn entries_sectors(&self, sector_size: u64) -> u64 {
        let bytes = u64::from(self.num_entries) * u64::from(self.entry_size);
        bytes.div_ceil(sector_size.max(1))
    }

    /// The header sector with updated fields and a fresh CRC.
    fn emit(&self) -> Vec<u8> {
        let mut s = self.raw.clone();
        put(&mut s, 24, &self.my_lba.to_le_bytes());
        put(&mut s, 32, &self.alternate_lba.to_le_bytes());
        put(&mut s, 40, &self.first_usable_lba.to_le_bytes());
        put(&mut s, 48, &self.last_usable_lba.to_le_bytes());
        put(&mut s, 72, &self.entries_lba.to_le_bytes());
        put(&mut s, 88, &self.entries_crc.to_le_bytes());
        put(&mut s, 16, &[0; 4]);
        let size = usize::try_from(u32_at(&s, 12))
            .unwrap_or(s.len())
            .min(s.len());
        let crc = crc32(s.get(..size).unwrap_or_default());
        put(&mut s, 16, &crc.to_le_bytes());
        s
    }
}

/// One used partition entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// 1-based, as the kernel numbers them.
    pub number: u32,
    /// Partition type.
    pub type_guid: Guid,
    /// Unique partition GUID (`PARTUUID`).
    pub guid: Guid,
    /// First LBA.
    pub first_lba: u64,
    /// Last LBA (inclusive).
    pub last_lba: u64,
    /// The name (UTF-16LE on disk, up to 36 units).
    pub name: String,
}

/// A checked primary table: header and entry array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gpt {
    /// The header.
    pub header: Header,
    entries: Vec<u8>,
}

impl Gpt {
    /// Checks `entries` (at least the array the header describes) against the header.
    pub fn parse(header_sector: &[u8], entries: &[u8]) -> Result<Gpt, GptError> {
        let header = Header::parse(header_sector)?;
        let n = header
            .entries_bytes()
            .ok_or(GptError::BadHeader("entry count"))?;
        let entries = entries.get(..n).ok_or(GptError::Truncated)?;
        if crc32(entries) != header.entries_crc {
            return Err(GptError::Crc("entry array"));
        }
        Ok(Gpt {
            header,
            entries: entries.to_vec(),
        })
    }

    /// The used entries (type GUID not zero).
    pub fn partitions(&self) -> Vec<Partition> {
        let size = usize::try_from(self.header.entry_size)
            .unwrap_or(128)
            .max(128);
        self.entries
            .chunks_exact(size)
            .zip(1u32..)
            .filter_map(|(e, number)| {
                let type_guid = Guid(e.get(0..16)?.try_into().ok()?);
                if type_guid == Guid::default() {
                    return None;
                }
                let units: Vec<u16> = e
                    .get(56..128)?
                    .chunks_exact(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]))
                    .take_while(|&u| u != 0)
                    .collect();
                Some(Partition {
                    number,
                    type_guid,
                    guid: Guid(e.get(16..32)?.try_into().ok()?),
                    first_lba: u64_at(e, 32),
                    last_lba: u64_at(e, 40),
                    name: String::from_utf16_lossy(&units),
                })
            })
            .collect()
    }

    /// Computes the writes that make partition `number` end at the last usable
    /// `align_sectors` boundary of a disk of `disk_sectors` sectors, with the backup table
    /// at the disk's end. `None` when the table already fills the disk.
    pub fn grow(
        &self,
        number: u32,
        disk_sectors: u64,
        sector_size: u64,
        align_sectors: u64,
    ) -> Result<Option<Growth>, GptError> {
        let parts = self.partitions();
        let part = parts
            .iter()
            .find(|p| p.number == number)
            .ok_or(GptError::NoPartition(number))?;
        if part.first_lba > part.last_lba || part.first_lba < self.header.first_usable_lba {
            return Err(GptError::BadHeader("partition range"));
        }
        if parts
            .iter()
            .any(|p| p.number != number && p.first_lba > part.last_lba)
        {
            return Err(GptError::NotLast(number));
        }
        let ess = self.header.entries_sectors(sector_size);
        let last_lba = disk_sectors
            .checked_sub(1)
            .ok_or(GptError::DiskShrank(disk_sectors))?;
        let last_usable = last_lba
            .checked_sub(ess + 1)
            .ok_or(GptError::DiskShrank(disk_sectors))?;
        if last_usable < self.header.last_usable_lba || last_usable < part.last_lba {
            return Err(GptError::DiskShrank(disk_sectors));
        }
        let align = align_sectors.max(1);
        let aligned_end = ((last_usable + 1) / align * align).saturating_sub(1);
        let new_end = aligned_end.max(part.last_lba);
        if self.header.alternate_lba == last_lba
            && self.header.last_usable_lba == last_usable
            && new_end == part.last_lba
        {
            return Ok(None);
        }

        let mut entries = self.entries.clone();
        let size = usize::try_from(self.header.entry_size)
            .map_err(|_| GptError::BadHeader("entry size"))?;
        let index = number
            .checked_sub(1)
            .and_then(|i| usize::try_from(i).ok())
            .ok_or(GptError::NoPartition(number))?;
        let off = index
            .checked_mul(size)
            .ok_or(GptError::NoPartition(number))?;
        put(&mut entries, off + 40, &new_end.to_le_bytes());

        let mut primary = self.header.clone();
        primary.alternate_lba = last_lba;
        primary.last_usable_lba = last_usable;
        primary.entries_crc = crc32(&entries);
        let mut backup = primary.clone();
        backup.my_lba = last_lba;
        backup.alternate_lba = primary.my_lba;
        backup.entries_lba = last_lba - ess;
        Ok(Some(Growth {
            old_last_lba: part.last_lba,
            new_last_lba: new_end,
            primary_header_lba: primary.my_lba,
            primary_entries_lba: primary.entries_lba,
            backup_header_lba: backup.my_lba,
            backup_entries_lba: backup.entries_lba,
            primary_header: primary.emit(),
            backup_header: backup.emit(),
            entries,
        }))
    }
}

/// The sectors to write to grow a partition: backup copy first, then the primary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Growth {
    /// The partition's last LBA before.
    pub old_last_lba: u64,
    /// The partition's last LBA after.
    pub new_last_lba: u64,
    /// Where the primary header goes (normally 1).
    pub primary_header_lba: u64,
    /// Where the primary entry array goes (normally 2).
    pub primary_entries_lba: u64,
    /// Where the backup header goes (the disk's last sector).
    pub backup_header_lba: u64,
    /// Where the backup entry array goes (just before the backup header).
    pub backup_entries_lba: u64,
    /// The new primary header sector.
    pub primary_header: Vec<u8>,
    /// The new backup header sector.
    pub backup_header: Vec<u8>,
    /// The new entry array (both copies).
    pub entries: Vec<u8>,
}

/// The fuzz target's entry point (`gpt_table`): the first 512 bytes as a header sector,
/// the rest as the entry array; every partition grown on disks of several sizes. A
/// table on any disk is untrusted (a USB stick is plugged in by anyone), so nothing
/// here may panic, and a growth must produce a table that reads back.
pub fn fuzz_check(bytes: &[u8]) {
    let (header, entries) = bytes.split_at(bytes.len().min(512));
    let Ok(gpt) = Gpt::parse(header, entries) else {
        return;
    };
    let parts = gpt.partitions();
    let numbers = parts.iter().map(|p| p.number).chain([0, 1, 2, u32::MAX]);
    for number in numbers {
        let end = parts.iter().map(|p| p.last_lba).max().unwrap_or(0);
        for sectors in [
            0,
            1,
            34,
            end,
            end.saturating_add(34),
            end.saturating_add(100_000),
            u64::MAX,
        ] {
            for (ss, align) in [(512, 2048), (4096, 256), (512, 0)] {
                if let Ok(Some(g)) = gpt.grow(number, sectors, ss, align) {
                    let again =
                        Gpt::parse(&g.primary_header, &g.entries).expect("grown table reads back");
                    let p = again
                        .partitions()
                        .into_iter()
                        .find(|p| p.number == number)
                        .expect("partition kept");
                    assert_eq!(p.last_lba, g.new_last_lba);
                    assert!(
                        g.new_last_lba >= g.old_last_lba && g.new_last_lba < g.backup_entries_lba
                    );
                    assert!(Header::parse(&g.backup_header).is_ok());
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)]
pub(crate) mod tests {
    use super::*;

    /// A 512-byte-sector disk of `sectors` with an ESP (1 MiB..9 MiB) and "petrel-data"
    /// (9 MiB..17 MiB), as `petrel-image` lays it out: returns the whole image.
    pub(crate) fn make_disk(sectors: u64) -> Vec<u8> {
        let ss = 512usize;
        let mut disk = vec![0u8; usize::try_from(sectors).unwrap() * ss];
        let mut entries = vec![0u8; 128 * 128];
        let esp_guid = Guid::parse("11111111-2222-3333-4444-555555555555").unwrap();
        let data_guid = Guid::parse("66666666-7777-8888-9999-AAAAAAAAAAAA").unwrap();
        let linux = Guid::parse("0FC63DAF-8483-4772-8E79-3D69D8477DE4").unwrap();
        let mut entry = |i: usize, t: Guid, g: Guid, first: u64, last: u64, name: &str| {
            let e = &mut entries[i * 128..(i + 1) * 128];
            e[0..16].copy_from_slice(&t.0);
            e[16..32].copy_from_slice(&g.0);
            e[32..40].copy_from_slice(&first.to_le_bytes());
            e[40..48].copy_from_slice(&last.to_le_bytes());
            for (k, u) in name.encode_utf16().enumerate() {
                e[56 + 2 * k..58 + 2 * k].copy_from_slice(&u.to_le_bytes());
            }
        };
        entry(0, ESP_TYPE, esp_guid, 2048, 18431, "EFI System");
        entry(1, linux, data_guid, 18432, 34815, "petrel-data");
        let small_last: u64 = 34815 + 34; // the image as built: backup right after data
        let mut h = vec![0u8; ss];
        h[0..8].copy_from_slice(GPT_SIGNATURE);
        h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
        h[12..16].copy_from_slice(&92u32.to_le_bytes());
        h[24..32].copy_from_slice(&1u64.to_le_bytes());
        h[32..40].copy_from_slice(&small_last.to_le_bytes());
        h[40..48].copy_from_slice(&34u64.to_le_bytes());
        h[48..56].copy_from_slice(&(small_last - 33).to_le_bytes());
        h[56..72].copy_from_slice(&[0xAB; 16]);
        h[72..80].copy_from_slice(&2u64.to_le_bytes());
        h[80..84].copy_from_slice(&128u32.to_le_bytes());
        h[84..88].copy_from_slice(&128u32.to_le_bytes());
        h[88..92].copy_from_slice(&crc32(&entries).to_le_bytes());
        let crc = crc32(&h[..92]);
        h[16..20].copy_from_slice(&crc.to_le_bytes());
        disk[ss..2 * ss].copy_from_slice(&h);
        disk[2 * ss..2 * ss + entries.len()].copy_from_slice(&entries);
        disk
    }

    pub(crate) fn read(disk: &[u8]) -> Result<Gpt, GptError> {
        Gpt::parse(&disk[512..1024], &disk[1024..1024 + 16384])
    }

    pub(crate) fn apply(disk: &mut [u8], g: &Growth) {
        let at = |lba: u64| usize::try_from(lba).unwrap() * 512;
        let (bh, be) = (at(g.backup_header_lba), at(g.backup_entries_lba));
        disk[be..be + g.entries.len()].copy_from_slice(&g.entries);
        disk[bh..bh + 512].copy_from_slice(&g.backup_header);
        let (ph, pe) = (at(g.primary_header_lba), at(g.primary_entries_lba));
        disk[pe..pe + g.entries.len()].copy_from_slice(&g.entries);
        disk[ph..ph + 512].copy_from_slice(&g.primary_header);
    }

    #[test]
    fn crc_known_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn guid_text_roundtrip() {
        let t = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
        assert_eq!(Guid::parse(t), Some(ESP_TYPE));
        assert_eq!(ESP_TYPE.to_string(), t);
        assert_eq!(ESP_TYPE.0[..4], [0x28, 0x73, 0x2A, 0xC1]);
        assert_eq!(Guid::parse(&t.to_lowercase()), Some(ESP_TYPE));
        assert_eq!(Guid::parse("C12A7328-F81F-11D2-BA4B-00A0C93EC93"), None);
        assert_eq!(Guid::parse("+12A7328-F81F-11D2-BA4B-00A0C93EC93B"), None);
        assert_eq!(Guid::parse("C12A7328F81F-11D2-BA4B-00A0C93EC93B-"), None);
    }

    #[test]
    fn reads_partitions() {
        let disk = make_disk(40_000);
        let gpt = read(&disk).unwrap();
        let p = gpt.partitions();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].type_guid, ESP_TYPE);
        assert_eq!(p[1].name, "petrel-data");
        assert_eq!(
            (p[1].number, p[1].first_lba, p[1].last_lba),
            (2, 18432, 34815)
        );
    }

    #[test]
    fn grows_last_partition_and_moves_backup() {
        let sectors = 200_000u64;
        let mut disk = make_disk(sectors);
        let gpt = read(&disk).unwrap();
        let g = gpt.grow(2, sectors, 512, 2048).unwrap().unwrap();
        assert_eq!(g.backup_header_lba, sectors - 1);
        assert_eq!(g.backup_entries_lba, sectors - 33);
        assert_eq!(g.old_last_lba, 34815);
        // Last usable is 199966; aligned down to 2048 sectors.
        assert_eq!(g.new_last_lba, 198_655);
        apply(&mut disk, &g);
        let after = read(&disk).unwrap();
        assert_eq!(after.header.alternate_lba, sectors - 1);
        assert_eq!(after.header.last_usable_lba, sectors - 34);
        assert_eq!(after.partitions()[1].last_lba, 198_655);
        assert_eq!(after.partitions()[0], gpt.partitions()[0]);
        // The backup copy checks out too and points back at the primary.
        let bh = Header::parse(&disk[(sectors as usize - 1) * 512..]).unwrap();
        assert_eq!(
            (bh.my_lba, bh.alternate_lba, bh.entries_lba),
            (sectors - 1, 1, sectors - 33)
        );
        let be = (sectors as usize - 33) * 512;
        let backup =
            Gpt::parse(&disk[(sectors as usize - 1) * 512..], &disk[be..be + 16384]).unwrap();
        assert_eq!(backup.partitions(), after.partitions());
        // Done: nothing more to do.
        assert_eq!(after.grow(2, sectors, 512, 2048).unwrap(), None);
    }

    #[test]
    fn moves_backup_even_when_partition_cannot_grow() {
        let sectors = 34815 + 34 + 100;
        let disk = make_disk(sectors);
        let g = read(&disk)
            .unwrap()
            .grow(2, sectors, 512, 2048)
            .unwrap()
            .unwrap();
        assert_eq!(g.new_last_lba, 34815);
        assert_eq!(g.backup_header_lba, sectors - 1);
    }

    #[test]
    fn refuses_bad_tables() {
        let disk = make_disk(40_000);
        let gpt = read(&disk).unwrap();
        assert_eq!(gpt.grow(1, 40_000, 512, 2048), Err(GptError::NotLast(1)));
        assert_eq!(
            gpt.grow(3, 40_000, 512, 2048),
            Err(GptError::NoPartition(3))
        );
        assert_eq!(
            gpt.grow(2, 30_000, 512, 2048),
            Err(GptError::DiskShrank(30_000))
        );
        assert_eq!(gpt.grow(2, 0, 512, 2048), Err(GptError::DiskShrank(0)));
        let mut bad = disk.clone();
        bad[1024 + 200] ^= 1;
        assert_eq!(read(&bad), Err(GptError::Crc("entry array")));
        let mut bad = disk.clone();
        bad[512 + 60] ^= 1;
        assert_eq!(read(&bad), Err(GptError::Crc("header")));
        assert_eq!(Gpt::parse(&[0; 512], &[]), Err(GptError::NoSignature));
        assert_eq!(
            Gpt::parse(&disk[512..1024], &disk[1024..2000]),
            Err(GptError::Truncated)
        );
        // Truncated header sectors never panic.
        for n in 0..600 {
            let _ = Header::parse(&disk[512..512 + n.min(512)]);
        }
    }
}
