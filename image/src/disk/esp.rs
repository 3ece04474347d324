//! The EFI system partition: FAT32 with fixed ids and valid timestamps.
//!
//! [`format`] makes the file system, [`populate`] writes the factory content
//! (systemd-boot, `loader/loader.conf`, the blessed UKI, an empty `petrel/`), and
//! [`open`] mounts an existing ESP for provisioning. Every timestamp is a
//! [`FatTime`] chosen by the caller: FAT cannot store a date before 1980, and a date
//! of zero makes UEFI refuse to rename the file, which silently stops systemd-boot's
//! boot counting.
//!
//! FAT32 needs at least 65,525 clusters: on a 256 MiB partition that means clusters of
//! 2 KiB or less (left alone, `fatfs` would pick FAT16).

use std::io::{self, Read, Seek, SeekFrom, Write};

use fatfs::{FatType, FileSystem, FormatVolumeOptions, FsOptions, ReadWriteSeek, TimeProvider};

/// Cluster size of the ESP, in bytes (≤ 2 KiB keeps a 256 MiB volume FAT32).
pub const ESP_CLUSTER_BYTES: u32 = 2048;

/// The ESP's volume label, as stored (11 bytes, space padded).
pub const ESP_VOLUME_LABEL: [u8; 11] = *b"PETREL-ESP ";

/// Where systemd-boot goes: the removable-media path every UEFI firmware boots.
pub const BOOTLOADER_PATH: &str = "EFI/BOOT/BOOTX64.EFI";

/// The directory systemd-boot scans for unified kernel images.
pub const UKI_DIR: &str = "EFI/Linux";

/// systemd-boot's configuration.
pub const LOADER_CONF_PATH: &str = "loader/loader.conf";

/// Petrel's own directory on the ESP (config, trust anchors, `images/`).
pub const PETREL_DIR: &str = "petrel";

/// `loader/loader.conf`. It names no default on purpose: systemd-boot then sorts the
/// UKIs by version (`IMAGE_VERSION` in `.osrel`), puts exhausted ones (`+0-N`) last
/// and boots the newest slot with tries left. No menu, no command-line editor, no
/// extra entries.
pub const LOADER_CONF: &str = "\
# Petrel: no default entry on purpose. systemd-boot sorts the UKIs in EFI/Linux/ by
# version and boots the newest one with tries left (boot counting: NAME+LEFT-DONE.efi).
timeout 0
editor no
auto-entries no
auto-firmware no
console-mode keep
";

/// Seconds from 1970-01-01 to 1980-01-01, FAT's first representable instant.
pub const FAT_EPOCH_UNIX_SECS: u64 = 315_532_800;

/// A FAT-representable UTC date and time (1980-01-01 to 2107-12-31, 2 s resolution).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FatTime {
    /// Full year, 1980..=2107.
    pub year: u16,
    /// 1..=12.
    pub month: u16,
    /// 1..=31.
    pub day: u16,
    /// 0..=23.
    pub hour: u16,
    /// 0..=59.
    pub min: u16,
    /// 0..=58, even.
    pub sec: u16,
}

impl FatTime {
    /// The UTC time `unix_secs` seconds after 1970, clamped into FAT's range (an
    /// earlier time gives 1980-01-01 00:00:00, a later one 2107-12-31 23:59:58) and
    /// rounded down to an even second.
    pub fn from_unix_secs(unix_secs: u64) -> Self {
        let days = unix_secs / 86_400;
        let rem = unix_secs % 86_400;
        let (year, month, day) = civil_from_days(days);
        let clock = |v: u64| u16::try_from(v).unwrap_or(0);
        let t = Self {
            year: u16::try_from(year).unwrap_or(u16::MAX),
            month: clock(month),
            day: clock(day),
            hour: clock(rem / 3600),
            min: clock(rem % 3600 / 60),
            sec: clock((rem % 60) & !1),
        };
        if unix_secs < FAT_EPOCH_UNIX_SECS {
            Self::MIN
        } else if t.year > Self::MAX.year {
            Self::MAX
        } else {
            t
        }
    }

    /// 1980-01-01 00:00:00.
    pub const MIN: Self = Self {
        year: 1980,
        month: 1,
        day: 1,
        hour: 0,
        min: 0,
        sec: 0,
    };

    /// 2107-12-31 23:59:58.
    pub const MAX: Self = Self {
        year: 2107,
        month: 12,
        day: 31,
        hour: 23,
        min: 59,
        sec: 58,
    };

    /// The DOS date word (`(year-1980)<<9 | month<<5 | day`).
    pub fn dos_date(self) -> u16 {
        ((self.year - 1980) << 9) | (self.month << 5) | self.day
    }

    /// The DOS time word (`hour<<11 | min<<5 | sec/2`).
    pub fn dos_time(self) -> u16 {
        (self.hour << 11) | (self.min << 5) | (self.sec / 2)
    }

    fn to_fatfs(self) -> fatfs::DateTime {
        fatfs::DateTime {
            date: fatfs::Date {
                year: self.year,
                month: self.month,
                day: self.day,
            },
            time: fatfs::Time {
                hour: self.hour,
                min: self.min,
                sec: self.sec,
                millis: 0,
            },
        }
    }
}

/// Days since 1970-01-01 to a (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`, for non-negative day counts).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// Hands `fatfs` one fixed time for every timestamp it writes.
#[derive(Debug)]
struct FixedTime(fatfs::DateTime);

impl TimeProvider for FixedTime {
    fn get_current_date(&self) -> fatfs::Date {
        self.0.date
    }
    fn get_current_date_time(&self) -> fatfs::DateTime {
        self.0
    }
}

/// `fatfs` 0.3 wants a `&'static` time provider: each mount leaks one 12-byte
/// [`FixedTime`], which is fine for a command-line tool that mounts a few times.
fn leak_time_provider(time: FatTime) -> &'static dyn TimeProvider {
    Box::leak(Box::new(FixedTime(time.to_fatfs())))
}

/// Errors of the ESP layer; the path names the file being written.
#[derive(Debug, thiserror::Error)]
pub enum EspError {
    /// `fatfs` could not format the volume.
    #[error("cannot format the ESP as FAT32")]
    Format(#[source] io::Error),
    /// The formatted volume is not what we asked for (a `fatfs` bug or a size error).
    #[error("the ESP came out as {0}, not FAT32 (volume too small for 2 KiB clusters?)")]
    NotFat32(&'static str),
    /// The partition holds no FAT file system.
    #[error("the ESP holds no FAT file system")]
    Mount(#[source] io::Error),
    /// A file system operation failed.
    #[error("ESP: {path}")]
    Io {
        /// The path on the ESP.
        path: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// Wraps an `io::Error` with the ESP path it happened on.
pub(crate) fn at(path: &str) -> impl FnOnce(io::Error) -> EspError + '_ {
    move |source| EspError::Io {
        path: path.to_owned(),
        source,
    }
}

/// A FAT32 volume id derived from a 16-byte id (its first four bytes).
pub fn volume_id(seed: [u8; 16]) -> u32 {
    u32::from_le_bytes([seed[0], seed[1], seed[2], seed[3]])
}

/// Formats the whole of `part` (positioned at 0) as FAT32 with 2 KiB clusters, the
/// fixed label and `volume_id`, then gives the label's root directory entry valid
/// timestamps and records `hidden_sectors` (the partition's first LBA) in the boot
/// sectors, as `mkfs.fat` does.
pub fn format<T: ReadWriteSeek>(
    mut part: T,
    volume_id: u32,
    hidden_sectors: u32,
    time: FatTime,
) -> Result<T, EspError> {
    let options = FormatVolumeOptions::new()
        .fat_type(FatType::Fat32)
        .bytes_per_cluster(ESP_CLUSTER_BYTES)
        .volume_id(volume_id)
        .volume_label(ESP_VOLUME_LABEL);
    fatfs::format_volume(&mut part, options).map_err(EspError::Format)?;
    fix_up(&mut part, hidden_sectors, time).map_err(EspError::Format)?;
    Ok(part)
}

/// Offsets inside a FAT32 boot sector (Microsoft's FAT specification).
const BPB_BYTES_PER_SECTOR: usize = 11;
const BPB_SECTORS_PER_CLUSTER: usize = 13;
const BPB_RESERVED_SECTORS: usize = 14;
const BPB_NUM_FATS: usize = 16;
const BPB_HIDDEN_SECTORS: usize = 28;
const BPB_FAT_SIZE_32: usize = 36;
const BPB_ROOT_CLUSTER: usize = 44;
const BPB_BACKUP_BOOT_SECTOR: usize = 50;
/// Size of a directory entry, and the offsets of its fields.
const DIR_ENTRY_BYTES: usize = 32;
const DIR_ATTR: usize = 11;
const DIR_CRT_TIME_TENTH: usize = 13;
const DIR_CRT_TIME: usize = 14;
const DIR_CRT_DATE: usize = 16;
const DIR_LST_ACC_DATE: usize = 18;
const DIR_WRT_TIME: usize = 22;
const DIR_WRT_DATE: usize = 24;
const ATTR_VOLUME_ID: u8 = 0x08;

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Byte offset of the FAT32 root directory's first cluster, from a boot sector.
/// `None` when the fields are out of range (not a FAT32 boot sector).
pub fn root_dir_offset(boot: &[u8; 512]) -> Option<u64> {
    let bytes_per_sector = u64::from(le16(boot, BPB_BYTES_PER_SECTOR));
    let sectors_per_cluster = u64::from(boot[BPB_SECTORS_PER_CLUSTER]);
    let reserved = u64::from(le16(boot, BPB_RESERVED_SECTORS));
    let fats = u64::from(boot[BPB_NUM_FATS]);
    let fat_size = u64::from(le32(boot, BPB_FAT_SIZE_32));
    let root_cluster = u64::from(le32(boot, BPB_ROOT_CLUSTER));
    if bytes_per_sector == 0 || sectors_per_cluster == 0 || root_cluster < 2 {
        return None;
    }
    let first_data_sector = reserved.checked_add(fats.checked_mul(fat_size)?)?;
    let sector =
        first_data_sector.checked_add((root_cluster - 2).checked_mul(sectors_per_cluster)?)?;
    sector.checked_mul(bytes_per_sector)
}

/// Stamps `time` into a volume-label directory entry (`fatfs` leaves it at zero).
/// Returns false (and changes nothing) if `entry` is not a volume label.
pub fn stamp_label_entry(entry: &mut [u8; DIR_ENTRY_BYTES], time: FatTime) -> bool {
    if entry[DIR_ATTR] != ATTR_VOLUME_ID {
        return false;
    }
    let (date, clock) = (time.dos_date().to_le_bytes(), time.dos_time().to_le_bytes());
    entry[DIR_CRT_TIME_TENTH] = 0;
    entry[DIR_CRT_TIME..DIR_CRT_TIME + 2].copy_from_slice(&clock);
    entry[DIR_CRT_DATE..DIR_CRT_DATE + 2].copy_from_slice(&date);
    entry[DIR_LST_ACC_DATE..DIR_LST_ACC_DATE + 2].copy_from_slice(&date);
    entry[DIR_WRT_TIME..DIR_WRT_TIME + 2].copy_from_slice(&clock);
    entry[DIR_WRT_DATE..DIR_WRT_DATE + 2].copy_from_slice(&date);
    true
}

/// The two things `fatfs::format_volume` leaves undone: the label entry's dates and
/// the hidden-sector count in the boot sector and its backup.
fn fix_up<T: Read + Write + Seek>(
    part: &mut T,
    hidden_sectors: u32,
    time: FatTime,
) -> io::Result<()> {
    let mut boot = [0u8; 512];
    part.seek(SeekFrom::Start(0))?;
    part.read_exact(&mut boot)?;
    let bytes_per_sector = u64::from(le16(&boot, BPB_BYTES_PER_SECTOR));
    let backup = u64::from(le16(&boot, BPB_BACKUP_BOOT_SECTOR));
    let hidden = hidden_sectors.to_le_bytes();
    for sector in [0, backup] {
        let at = sector * bytes_per_sector + BPB_HIDDEN_SECTORS as u64;
        part.seek(SeekFrom::Start(at))?;
        part.write_all(&hidden)?;
    }
    let root = root_dir_offset(&boot)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not a FAT32 boot sector"))?;
    let mut entry = [0u8; DIR_ENTRY_BYTES];
    part.seek(SeekFrom::Start(root))?;
    part.read_exact(&mut entry)?;
    if stamp_label_entry(&mut entry, time) {
        part.seek(SeekFrom::Start(root))?;
        part.write_all(&entry)?;
    }
    part.seek(SeekFrom::Start(0))?;
    Ok(())
}

/// Mounts the FAT file system on `part`; every timestamp written is `time`.
pub fn open<T: ReadWriteSeek>(part: T, time: FatTime) -> Result<FileSystem<T>, EspError> {
    let options = FsOptions::new().time_provider(leak_time_provider(time));
    FileSystem::new(part, options).map_err(EspError::Mount)
}

/// What [`populate`] writes.
#[derive(Debug, Clone, Copy)]
pub struct EspContent<'a> {
    /// The image version; the UKI lands at `EFI/Linux/petrel-<version>.efi`.
    pub version: &'a str,
    /// systemd-boot (`systemd-bootx64.efi`).
    pub bootloader: &'a [u8],
    /// The unified kernel image.
    pub uki: &'a [u8],
}

/// The UKI's path on the ESP: `EFI/Linux/petrel-<version>.efi`, blessed (no counter).
pub fn uki_path(version: &str) -> String {
    format!("{UKI_DIR}/petrel-{version}.efi")
}

/// Writes the factory content into a freshly formatted ESP, in a fixed order (the
/// order decides the on-disk layout, so it must not change between builds).
pub fn populate<T: ReadWriteSeek>(
    fs: &FileSystem<T>,
    content: &EspContent<'_>,
) -> Result<(), EspError> {
    let root = fs.root_dir();
    for dir in ["EFI", "EFI/BOOT", UKI_DIR, "loader", PETREL_DIR] {
        root.create_dir(dir).map_err(at(dir))?;
    }
    write_file(fs, BOOTLOADER_PATH, content.bootloader)?;
    write_file(fs, LOADER_CONF_PATH, LOADER_CONF.as_bytes())?;
    let uki = uki_path(content.version);
    write_file(fs, &uki, content.uki)?;
    Ok(())
}

/// Creates (or truncates) `path` and writes `data` to it.
pub fn write_file<T: ReadWriteSeek>(
    fs: &FileSystem<T>,
    path: &str,
    data: &[u8],
) -> Result<(), EspError> {
    let mut file = fs.root_dir().create_file(path).map_err(at(path))?;
    file.truncate().map_err(at(path))?;
    file.write_all(data).map_err(at(path))?;
    file.flush().map_err(at(path))?;
    Ok(())
}

/// Reads all of `path`.
pub fn read_file<T: ReadWriteSeek>(fs: &FileSystem<T>, path: &str) -> Result<Vec<u8>, EspError> {
    let mut file = fs.root_dir().open_file(path).map_err(at(path))?;
    let mut out = Vec::new();
    file.read_to_end(&mut out).map_err(at(path))?;
    Ok(out)
}

/// Checks that `fs` is FAT32 (the formatter could fall back to another type).
pub fn check_fat32<T: ReadWriteSeek>(fs: &FileSystem<T>) -> Result<(), EspError> {
    match fs.fat_type() {
        FatType::Fat32 => Ok(()),
        FatType::Fat16 => Err(EspError::NotFat32("FAT16")),
        FatType::Fat12 => Err(EspError::NotFat32("FAT12")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn unix_to_fat_time() {
        // 2024-02-29 13:37:41 UTC
        let t = FatTime::from_unix_secs(1_709_213_861);
        assert_eq!((t.year, t.month, t.day), (2024, 2, 29));
        assert_eq!((t.hour, t.min, t.sec), (13, 37, 40));
        assert_eq!(FatTime::from_unix_secs(0), FatTime::MIN);
        assert_eq!(FatTime::from_unix_secs(1), FatTime::MIN);
        assert_eq!(FatTime::from_unix_secs(FAT_EPOCH_UNIX_SECS), FatTime::MIN);
        assert_eq!(FatTime::from_unix_secs(u64::MAX), FatTime::MAX);
        // 2107-12-31 23:59:59 is the last representable second, 2108 is not.
        assert_eq!(FatTime::from_unix_secs(4_354_819_199), FatTime::MAX);
        assert_eq!(FatTime::from_unix_secs(4_354_819_200), FatTime::MAX);
        let t = FatTime::from_unix_secs(951_782_400); // 2000-02-29 00:00:00
        assert_eq!((t.year, t.month, t.day), (2000, 2, 29));
    }

    #[test]
    fn dos_words() {
        let t = FatTime {
            year: 2055,
            month: 7,
            day: 23,
            hour: 15,
            min: 3,
            sec: 28,
        };
        // Same values as fatfs's own encode tests.
        assert_eq!(t.dos_date(), 38647);
        assert_eq!(t.dos_time(), 30830);
        assert_ne!(FatTime::MIN.dos_date(), 0);
    }

    #[test]
    fn label_entry_stamp() {
        let mut e = [0u8; 32];
        e[..11].copy_from_slice(&ESP_VOLUME_LABEL);
        assert!(!stamp_label_entry(&mut e, FatTime::MIN));
        e[DIR_ATTR] = ATTR_VOLUME_ID;
        assert!(stamp_label_entry(&mut e, FatTime::MIN));
        assert_eq!(le16(&e, DIR_WRT_DATE), (1 << 5) | 1);
        assert_eq!(le16(&e, DIR_CRT_DATE), (1 << 5) | 1);
        assert_eq!(&e[..11], &ESP_VOLUME_LABEL);
    }

    #[test]
    fn root_dir_offset_refuses_garbage() {
        assert_eq!(root_dir_offset(&[0u8; 512]), None);
        let mut b = [0xffu8; 512];
        b[BPB_BYTES_PER_SECTOR] = 0;
        b[BPB_BYTES_PER_SECTOR + 1] = 0;
        assert_eq!(root_dir_offset(&b), None);
    }

    /// A FAT32 volume in memory, just above the smallest one 2 KiB clusters allow
    /// (65,525 clusters ≈ 128 MiB).
    fn small_esp() -> Cursor<Vec<u8>> {
        Cursor::new(vec![0u8; 136 * 1024 * 1024])
    }

    #[test]
    fn format_populate_read_back() {
        let time = FatTime::from_unix_secs(1_700_000_000);
        let part = format(small_esp(), 0x1234_5678, 2048, time).unwrap();
        let disk = part.get_ref();
        assert_eq!(le32(disk, BPB_HIDDEN_SECTORS), 2048);
        assert_eq!(le32(&disk[6 * 512..], BPB_HIDDEN_SECTORS), 2048);
        let fs = open(part, time).unwrap();
        check_fat32(&fs).unwrap();
        assert_eq!(fs.volume_id(), 0x1234_5678);
        assert_eq!(fs.volume_label(), "PETREL-ESP");
        populate(
            &fs,
            &EspContent {
                version: "1.2.3",
                bootloader: b"MZ boot",
                uki: &[7u8; 5000],
            },
        )
        .unwrap();
        assert_eq!(read_file(&fs, "EFI/BOOT/BOOTX64.EFI").unwrap(), b"MZ boot");
        assert_eq!(
            read_file(&fs, "EFI/Linux/petrel-1.2.3.efi").unwrap(),
            vec![7u8; 5000]
        );
        assert_eq!(
            read_file(&fs, "loader/loader.conf").unwrap(),
            LOADER_CONF.as_bytes()
        );
        let entry = fs
            .root_dir()
            .open_dir("EFI/Linux")
            .unwrap()
            .iter()
            .map(Result::unwrap)
            .find(|e| e.file_name() == "petrel-1.2.3.efi")
            .unwrap();
        let m = entry.modified();
        assert_eq!((m.date.year, m.date.month, m.date.day), (2023, 11, 14));
        assert_eq!(entry.created().date.year, 2023);
        assert!(!LOADER_CONF.lines().any(|l| l.starts_with("default")));
        fs.unmount().unwrap();
    }
}
