//! `petrel.img`: a GPT disk with the ESP (FAT32) and the data partition (ext4), built
//! without root, loop devices or mounts, bit for bit the same from the same inputs.
//!
//! Layers: [`guid`] (GUIDs, pure), [`window`] (one partition of a disk as a stream),
//! [`esp`] (FAT32 through `fatfs`), [`ext4`] (`mkfs.ext4` on a plain file), and this
//! module: the fixed [`Layout`], the [`DiskIds`] derived from the image version,
//! [`build`] (the whole image) and [`read_table`] (find the partitions of an existing
//! image or device again, for provisioning and tests).
//!
//! The layout is a contract with `petrel-init` (which grows partition 2 and its file
//! system to the end of the disk on first boot) and with the QEMU harness:
//!
//! | # | name          | type GUID                              | size    | file system |
//! |---|---------------|----------------------------------------|---------|-------------|
//! | 1 | `ESP`         | `C12A7328-F81F-11D2-BA4B-00A0C93EC93B` | 256 MiB | FAT32, label `PETREL-ESP` |
//! | 2 | `petrel-data` | `0FC63DAF-8483-4772-8E79-3D69D8477DE4` | 64 MiB  | ext4, label `petrel-data` |
//!
//! Partitions start on 1 MiB boundaries; 512-byte sectors; the image is 322 MiB,
//! written as a sparse file. The disk GUID, the partition GUIDs, the FAT volume id and
//! the ext4 UUID are derived from the image version ([`DiskIds::derive`]), so every
//! flashed copy of one release shares them (find the booted ESP by
//! `LoaderDevicePartUUID`, never by GUID alone).

pub mod cli;
pub mod esp;
pub mod ext4;
pub mod fatfix;
pub mod fuzz;
pub mod guid;
pub mod window;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use gptman::{GPT, GPTPartitionEntry};
use sha2::{Digest, Sha256};

use esp::{EspContent, EspError, FatTime};
use ext4::{Ext4Error, Ext4Spec};
use guid::Guid;
use window::Window;

/// Logical sector size of the image, in bytes.
pub const SECTOR_BYTES: u64 = 512;
/// Partition alignment, in bytes.
pub const ALIGN_BYTES: u64 = 1 << 20;
/// Size of the ESP, in bytes.
pub const ESP_SIZE_BYTES: u64 = 256 << 20;
/// Size of the data partition as built, in bytes (grown on first boot).
pub const DATA_SIZE_BYTES: u64 = 64 << 20;

/// GPT entry number of the ESP.
pub const ESP_PARTITION_NUMBER: u32 = 1;
/// GPT entry number of the data partition.
pub const DATA_PARTITION_NUMBER: u32 = 2;
/// GPT partition name of the ESP.
pub const ESP_PARTITION_NAME: &str = "ESP";
/// GPT partition name of the data partition.
pub const DATA_PARTITION_NAME: &str = "petrel-data";
/// Label of the data partition's ext4 file system.
pub const DATA_FS_LABEL: &str = "petrel-data";

/// Partition type of an EFI system partition.
pub const ESP_TYPE_GUID: Guid = Guid::from_const("C12A7328-F81F-11D2-BA4B-00A0C93EC93B");
/// Partition type "Linux filesystem data".
pub const LINUX_FS_TYPE_GUID: Guid = Guid::from_const("0FC63DAF-8483-4772-8E79-3D69D8477DE4");

/// Number of entries in the GPT partition array (the standard 128 × 128 bytes).
const GPT_ENTRIES: u64 = 128;
/// Size of one GPT partition entry, in bytes.
const GPT_ENTRY_BYTES: u64 = 128;

/// Where everything is, in sectors of [`SECTOR_BYTES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// First LBA of the ESP.
    pub esp_first_lba: u64,
    /// Last LBA of the ESP (inclusive, as GPT counts).
    pub esp_last_lba: u64,
    /// First LBA of the data partition.
    pub data_first_lba: u64,
    /// Last LBA of the data partition (inclusive).
    pub data_last_lba: u64,
    /// Size of the whole image, in bytes.
    pub total_bytes: u64,
}

impl Layout {
    /// The layout of every Petrel image: 1 MiB gap, ESP, data, then 1 MiB for the
    /// backup GPT (33 sectors of it used).
    pub const fn standard() -> Self {
        let s = SECTOR_BYTES;
        let esp_first = ALIGN_BYTES;
        let data_first = esp_first + ESP_SIZE_BYTES;
        let data_end = data_first + DATA_SIZE_BYTES;
        Self {
            esp_first_lba: esp_first / s,
            esp_last_lba: (esp_first + ESP_SIZE_BYTES) / s - 1,
            data_first_lba: data_first / s,
            data_last_lba: data_end / s - 1,
            total_bytes: data_end + ALIGN_BYTES,
        }
    }

    /// The ESP's bytes within the image.
    pub fn esp_bytes(&self) -> Range<u64> {
        self.esp_first_lba * SECTOR_BYTES..(self.esp_last_lba + 1) * SECTOR_BYTES
    }

    /// The data partition's bytes within the image.
    pub fn data_bytes(&self) -> Range<u64> {
        self.data_first_lba * SECTOR_BYTES..(self.data_last_lba + 1) * SECTOR_BYTES
    }
}

/// The fixed identifiers of an image, derived from its version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskIds {
    /// The GPT disk GUID.
    pub disk: Guid,
    /// The ESP's unique partition GUID (what `LoaderDevicePartUUID` names).
    pub esp_partition: Guid,
    /// The data partition's unique partition GUID.
    pub data_partition: Guid,
    /// The FAT volume id (serial number) of the ESP.
    pub esp_volume_id: u32,
    /// The ext4 file system UUID.
    pub data_fs_uuid: Guid,
    /// The ext4 directory hash seed.
    pub data_fs_hash_seed: Guid,
}

impl DiskIds {
    /// `Guid::derive(version, label)` for each label: `disk`, `esp-partition`,
    /// `data-partition`, `esp-volume-id`, `data-fs-uuid`, `data-fs-hash-seed`.
    pub fn derive(version: &str) -> Self {
        let g = |label| Guid::derive(version, label);
        Self {
            disk: g("disk"),
            esp_partition: g("esp-partition"),
            data_partition: g("data-partition"),
            esp_volume_id: esp::volume_id(g("esp-volume-id").0),
            data_fs_uuid: g("data-fs-uuid"),
            data_fs_hash_seed: g("data-fs-hash-seed"),
        }
    }
}

/// The inputs of [`build`].
#[derive(Debug, Clone)]
pub struct DiskInputs {
    /// The image version (`IMAGE_VERSION`): names the UKI and seeds every id.
    pub version: String,
    /// systemd-boot, `usr/lib/systemd/boot/efi/systemd-bootx64.efi`.
    pub bootloader: PathBuf,
    /// The unified kernel image.
    pub uki: PathBuf,
    /// `SOURCE_DATE_EPOCH`: every timestamp in the image (clamped to 1980 for FAT).
    pub source_date_epoch: u64,
}

/// What [`build`] made.
#[derive(Debug, Clone)]
pub struct DiskReport {
    /// The image file.
    pub path: PathBuf,
    /// Its layout.
    pub layout: Layout,
    /// Its identifiers.
    pub ids: DiskIds,
    /// Its apparent size, in bytes.
    pub apparent_bytes: u64,
    /// The bytes it occupies on the host's disk (it is sparse).
    pub allocated_bytes: u64,
    /// Its SHA-256.
    pub sha256: [u8; 32],
    /// The UKI's path on the ESP.
    pub uki_esp_path: String,
}

/// Why the disk image could not be built.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// The version cannot be used in a file name.
    #[error(
        "version {0:?} cannot name the UKI: use 1 to 64 of A-Z a-z 0-9 . _ - (no '+', which \
         systemd-boot reads as a boot counter)"
    )]
    BadVersion(String),
    /// An input file could not be read.
    #[error("cannot read {}", .0.display())]
    Input(PathBuf, #[source] io::Error),
    /// An input is not an EFI (PE) binary.
    #[error("{} is not an EFI binary (no MZ header)", .0.display())]
    NotEfi(PathBuf),
    /// The inputs do not fit the ESP.
    #[error("the UKI and systemd-boot ({0} bytes) do not fit the {ESP_SIZE_BYTES}-byte ESP")]
    TooBig(u64),
    /// Writing the image failed.
    #[error("cannot write {}", .0.display())]
    Output(PathBuf, #[source] io::Error),
    /// The partition table could not be written.
    #[error("cannot write the GPT")]
    Gpt(#[source] gptman::Error),
    /// The ESP could not be made.
    #[error(transparent)]
    Esp(#[from] EspError),
    /// The ext4 file system could not be made.
    #[error(transparent)]
    Ext4(#[from] Ext4Error),
}

/// Checks that `version` can name `petrel-<version>.efi` (and never looks like a boot
/// counter to systemd-boot).
pub fn check_version(version: &str) -> Result<(), DiskError> {
    let ok = (1..=64).contains(&version.len())
        && version
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(DiskError::BadVersion(version.to_owned()))
    }
}

/// A scratch directory next to the output, removed on drop (also on error).
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Reads an EFI binary, checking its `MZ` magic.
fn read_efi(path: &Path) -> Result<Vec<u8>, DiskError> {
    let data = fs::read(path).map_err(|e| DiskError::Input(path.to_owned(), e))?;
    if !data.starts_with(b"MZ") {
        return Err(DiskError::NotEfi(path.to_owned()));
    }
    Ok(data)
}

/// Builds `petrel.img` at `out` (written to a scratch file next to it, then renamed).
///
/// Needs `mkfs.ext4` (e2fsprogs); everything else is done in-process. The same inputs
/// give the same bytes.
pub fn build(inputs: &DiskInputs, out: &Path) -> Result<DiskReport, DiskError> {
    check_version(&inputs.version)?;
    let bootloader = read_efi(&inputs.bootloader)?;
    let uki = read_efi(&inputs.uki)?;
    let payload = (bootloader.len() + uki.len()) as u64;
    // Leave room for FATs, directories and cluster rounding.
    if payload > ESP_SIZE_BYTES - (8 << 20) {
        return Err(DiskError::TooBig(payload));
    }

    let out_err = |e| DiskError::Output(out.to_owned(), e);
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = out
        .file_name()
        .map_or_else(|| "petrel.img".into(), |n| n.to_string_lossy().into_owned());
    let scratch = Scratch(dir.join(format!(".{name}.tmp-{}", std::process::id())));
    fs::create_dir_all(&scratch.0).map_err(out_err)?;

    let time_secs = inputs.source_date_epoch.max(esp::FAT_EPOCH_UNIX_SECS);
    let fat_time = FatTime::from_unix_secs(time_secs);
    let layout = Layout::standard();
    let ids = DiskIds::derive(&inputs.version);

    // The ext4 first: it needs an external tool, so it is the likeliest to fail.
    let ext4_file = scratch.0.join("data.ext4");
    ext4::make(
        &Ext4Spec {
            size_bytes: DATA_SIZE_BYTES,
            label: DATA_FS_LABEL.to_owned(),
            uuid: ids.data_fs_uuid,
            hash_seed: ids.data_fs_hash_seed,
            time_unix_secs: time_secs,
        },
        &ext4_file,
        &scratch.0.join("mke2fs.conf"),
    )?;

    let tmp_img = scratch.0.join("disk.img");
    let mut img = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&tmp_img)
        .map_err(out_err)?;
    img.set_len(layout.total_bytes).map_err(out_err)?;

    write_gpt(&mut img, &layout, &ids)?;

    let esp_range = layout.esp_bytes();
    let part = Window::sparse(&mut img, esp_range.start, esp_range.end - esp_range.start);
    let hidden = u32::try_from(layout.esp_first_lba).unwrap_or(u32::MAX);
    let part = esp::format(part, ids.esp_volume_id, hidden, fat_time)?;
    let fs = esp::open(part, fat_time)?;
    esp::check_fat32(&fs)?;
    esp::populate(
        &fs,
        &EspContent {
            version: &inputs.version,
            bootloader: &bootloader,
            uki: &uki,
        },
    )?;
    fs.unmount().map_err(esp::at("/"))?;
    let mut part = Window::sparse(&mut img, esp_range.start, esp_range.end - esp_range.start);
    fatfix::fix_tree(&mut part).map_err(esp::at("/"))?;

    let data_range = layout.data_bytes();
    copy_sparse(
        &ext4_file,
        Window::sparse(
            &mut img,
            data_range.start,
            data_range.end - data_range.start,
        ),
    )
    .map_err(out_err)?;

    img.sync_all().map_err(out_err)?;
    drop(img);
    fs::rename(&tmp_img, out).map_err(out_err)?;
    let meta = fs::metadata(out).map_err(out_err)?;
    let sha256 = sha256_file(out).map_err(out_err)?;
    Ok(DiskReport {
        path: out.to_owned(),
        layout,
        ids,
        apparent_bytes: meta.len(),
        allocated_bytes: meta.blocks() * 512,
        sha256,
        uki_esp_path: esp::uki_path(&inputs.version),
    })
}

/// Writes the protective MBR and both GPT headers and arrays.
fn write_gpt(img: &mut File, layout: &Layout, ids: &DiskIds) -> Result<(), DiskError> {
    let mut disk = Window::sparse(img, 0, layout.total_bytes);
    let mut gpt =
        GPT::new_from(&mut disk, SECTOR_BYTES, ids.disk.to_gpt_bytes()).map_err(DiskError::Gpt)?;
    gpt.align = ALIGN_BYTES / SECTOR_BYTES;
    gpt[ESP_PARTITION_NUMBER] = GPTPartitionEntry {
        partition_type_guid: ESP_TYPE_GUID.to_gpt_bytes(),
        unique_partition_guid: ids.esp_partition.to_gpt_bytes(),
        starting_lba: layout.esp_first_lba,
        ending_lba: layout.esp_last_lba,
        attribute_bits: 0,
        partition_name: ESP_PARTITION_NAME.into(),
    };
    gpt[DATA_PARTITION_NUMBER] = GPTPartitionEntry {
        partition_type_guid: LINUX_FS_TYPE_GUID.to_gpt_bytes(),
        unique_partition_guid: ids.data_partition.to_gpt_bytes(),
        starting_lba: layout.data_first_lba,
        ending_lba: layout.data_last_lba,
        attribute_bits: 0,
        partition_name: DATA_PARTITION_NAME.into(),
    };
    gpt.write_into(&mut disk).map_err(DiskError::Gpt)?;
    GPT::write_protective_mbr_into(&mut disk, SECTOR_BYTES).map_err(DiskError::Gpt)?;
    Ok(())
}

/// Copies the file `src` into `dst` chunk by chunk; `dst` being sparse, chunks of
/// zeros stay holes.
fn copy_sparse<W: Write>(src: &Path, mut dst: W) -> io::Result<()> {
    let mut src = File::open(src)?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = src.read(&mut buf)?;
        if n == 0 {
            break;
        }
        dst.write_all(&buf[..n])?;
    }
    dst.flush()
}

/// The disk image's file name in the build output directory.
pub const IMAGE_FILE: &str = "petrel.img";
/// The checksum list's file name in the build output directory.
pub const SHA256SUMS_FILE: &str = "SHA256SUMS";

/// Why the disk step of `petrel-image build` failed.
#[derive(Debug, thiserror::Error)]
pub enum FinishError {
    /// No systemd-boot to put on the ESP.
    #[error(
        "no systemd-boot for the ESP: the stub was not taken from the pinned package, so \
         name systemd-bootx64.efi with --bootloader"
    )]
    NoBootloader,
    /// The image could not be built.
    #[error("petrel.img")]
    Disk(#[from] DiskError),
    /// build-info.json or SHA256SUMS could not be updated.
    #[error(transparent)]
    Build(#[from] crate::assemble::BuildError),
}

/// The disk step at the end of `petrel-image build`: writes `OUT/petrel.img` from the
/// UKI just built and systemd-boot (`bootloader`, else the pinned package's), adds its
/// hash to `build-info.json`'s outputs, and writes `OUT/SHA256SUMS` (every output and
/// `build-info.json`, in `sha256sum -c` format).
pub fn finish_build(
    report: &crate::assemble::BuildReport,
    bootloader: Option<&Path>,
) -> Result<DiskReport, FinishError> {
    let bootloader = bootloader
        .map(Path::to_owned)
        .or_else(|| report.systemd_boot.clone())
        .ok_or(FinishError::NoBootloader)?;
    let out_dir = report.uki.parent().unwrap_or(Path::new("."));
    let inputs = DiskInputs {
        version: report.build_info.image_version.clone(),
        bootloader,
        uki: report.uki.clone(),
        source_date_epoch: u64::from(report.build_info.source_date_epoch),
    };
    let disk = build(&inputs, &out_dir.join(IMAGE_FILE))?;
    let mut info = report.build_info.clone();
    info.outputs
        .insert(IMAGE_FILE.to_owned(), hex(&disk.sha256));
    let info_json = info.to_json();
    crate::assemble::write_atomically(&report.build_info_path, &info_json)?;
    let mut sums = info.outputs.clone();
    let info_name = report
        .build_info_path
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    sums.insert(info_name, hex(&Sha256::digest(&info_json)));
    crate::assemble::write_atomically(
        &out_dir.join(SHA256SUMS_FILE),
        sha256sums(&sums).as_bytes(),
    )?;
    Ok(disk)
}

/// `sha256sum` output for `files` (name → hex digest), one line each, sorted by name.
pub fn sha256sums(files: &std::collections::BTreeMap<String, String>) -> String {
    files
        .iter()
        .map(|(name, hash)| format!("{hash}  {name}\n"))
        .collect()
}

/// The SHA-256 of a file.
pub fn sha256_file(path: &Path) -> io::Result<[u8; 32]> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().into())
}

/// Lower-case hex of a digest, as `sha256sum` prints it.
pub fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// One partition found in a GPT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    /// Its entry number (1-based).
    pub number: u32,
    /// Its name.
    pub name: String,
    /// Its type GUID.
    pub type_guid: Guid,
    /// Its unique partition GUID.
    pub unique_guid: Guid,
    /// Its bytes on the disk.
    pub bytes: Range<u64>,
}

/// The partitions of a GPT disk.
#[derive(Debug, Clone)]
pub struct DiskTable {
    /// The logical sector size the GPT was found with.
    pub sector_bytes: u64,
    /// The disk GUID.
    pub disk_guid: Guid,
    /// The used entries, in entry order.
    pub partitions: Vec<PartitionInfo>,
}

impl DiskTable {
    /// The first EFI system partition.
    pub fn esp(&self) -> Option<&PartitionInfo> {
        self.partitions
            .iter()
            .find(|p| p.type_guid == ESP_TYPE_GUID)
    }

    /// The partition named [`DATA_PARTITION_NAME`].
    pub fn data(&self) -> Option<&PartitionInfo> {
        self.partitions
            .iter()
            .find(|p| p.name == DATA_PARTITION_NAME)
    }
}

/// Why no partition table could be read.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// Reading the disk failed.
    #[error("cannot read the disk")]
    Io(#[from] io::Error),
    /// There is no GPT.
    #[error("no GPT partition table")]
    NoGpt,
    /// The GPT header or array is malformed in a way the reader refuses up front.
    #[error("malformed GPT: {0}")]
    Insane(&'static str),
    /// The GPT is damaged.
    #[error("damaged GPT")]
    Gpt(#[source] gptman::Error),
    /// A partition lies outside the disk.
    #[error("partition {0} lies outside the disk")]
    OutOfRange(u32),
}

/// Offsets in a GPT header.
const GPT_SIGNATURE: &[u8; 8] = b"EFI PART";
const GPT_ENTRY_LBA: usize = 72;
const GPT_NUM_ENTRIES: usize = 80;
const GPT_ENTRY_SIZE: usize = 84;

/// Refuses GPT headers (primary at sector 1 and backup at the last sector, for 512-
/// and 4096-byte sectors) that `gptman` would mishandle: an absurdly large partition
/// array (it allocates for it), an array outside the disk, or a used entry starting at
/// LBA 0 (its alignment guess panics on it). Checksums are left to `gptman`.
fn precheck_gpt<R: Read + Seek + ?Sized>(disk: &mut R, len: u64) -> Result<(), TableError> {
    for sector in [512u64, 4096] {
        if len < sector * 2 {
            continue;
        }
        for at in [sector, (len / sector - 1) * sector] {
            let mut h = [0u8; 92];
            disk.seek(SeekFrom::Start(at))?;
            disk.read_exact(&mut h)?;
            if &h[..8] != GPT_SIGNATURE {
                continue;
            }
            let le32 = |at: usize| u32::from_le_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]]);
            let mut lba = [0u8; 8];
            lba.copy_from_slice(&h[GPT_ENTRY_LBA..GPT_ENTRY_LBA + 8]);
            let (entries, entry_bytes) = (le32(GPT_NUM_ENTRIES), le32(GPT_ENTRY_SIZE));
            if u64::from(entries) > 8 * GPT_ENTRIES || u64::from(entry_bytes) != GPT_ENTRY_BYTES {
                return Err(TableError::Insane("absurd partition array size"));
            }
            let array_bytes = u64::from(entries) * GPT_ENTRY_BYTES;
            let start = u64::from_le_bytes(lba).checked_mul(sector);
            let Some(start) =
                start.filter(|s| s.checked_add(array_bytes).is_some_and(|e| e <= len))
            else {
                return Err(TableError::Insane("partition array outside the disk"));
            };
            let mut array = vec![0u8; usize::try_from(array_bytes).unwrap_or(0)];
            disk.seek(SeekFrom::Start(start))?;
            disk.read_exact(&mut array)?;
            for e in array.chunks_exact(128) {
                let used = e[..16].iter().any(|&b| b != 0);
                if used && e[32..40].iter().all(|&b| b == 0) {
                    return Err(TableError::Insane("a partition starts at LBA 0"));
                }
            }
        }
    }
    Ok(())
}

/// Reads the GPT of an image file or block device (512- or 4096-byte sectors; the
/// backup header if the primary one is damaged).
pub fn read_table<R: Read + Seek>(disk: &mut R) -> Result<DiskTable, TableError> {
    let len = disk.seek(SeekFrom::End(0))?;
    precheck_gpt(disk, len)?;
    let gpt = GPT::find_from(disk).map_err(|e| match e {
        gptman::Error::InvalidSignature => TableError::NoGpt,
        gptman::Error::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof => TableError::NoGpt,
        e => TableError::Gpt(e),
    })?;
    let sector = gpt.sector_size;
    let mut partitions = Vec::new();
    for (number, p) in gpt.iter().filter(|(_, p)| p.is_used()) {
        let start = p.starting_lba.checked_mul(sector);
        let end = p
            .ending_lba
            .checked_add(1)
            .and_then(|e| e.checked_mul(sector));
        let (Some(start), Some(end)) = (start, end) else {
            return Err(TableError::OutOfRange(number));
        };
        if start >= end || end > len {
            return Err(TableError::OutOfRange(number));
        }
        partitions.push(PartitionInfo {
            number,
            name: p.partition_name.as_str().to_owned(),
            type_guid: Guid::from_gpt_bytes(p.partition_type_guid),
            unique_guid: Guid::from_gpt_bytes(p.unique_partition_guid),
            bytes: start..end,
        });
    }
    Ok(DiskTable {
        sector_bytes: sector,
        disk_guid: Guid::from_gpt_bytes(gpt.header.disk_guid),
        partitions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn standard_layout() {
        let l = Layout::standard();
        assert_eq!(l.esp_first_lba, 2048);
        assert_eq!(l.esp_bytes(), (1 << 20)..(257 << 20));
        assert_eq!(l.data_bytes(), (257 << 20)..(321 << 20));
        assert_eq!(l.total_bytes, 322 << 20);
        assert_eq!(l.esp_first_lba * SECTOR_BYTES % ALIGN_BYTES, 0);
        assert_eq!(l.data_first_lba * SECTOR_BYTES % ALIGN_BYTES, 0);
        // The backup array (32 sectors) and header (1) fit after the data partition.
        let last_usable =
            l.total_bytes / SECTOR_BYTES - 1 - GPT_ENTRIES * GPT_ENTRY_BYTES / SECTOR_BYTES - 1;
        assert!(l.data_last_lba <= last_usable);
    }

    #[test]
    fn ids_are_distinct_and_stable() {
        let a = DiskIds::derive("0.1.0");
        assert_eq!(a, DiskIds::derive("0.1.0"));
        assert_ne!(a, DiskIds::derive("0.1.1"));
        let all = [
            a.disk,
            a.esp_partition,
            a.data_partition,
            a.data_fs_uuid,
            a.data_fs_hash_seed,
        ];
        for (i, x) in all.iter().enumerate() {
            for y in &all[i + 1..] {
                assert_ne!(x, y);
            }
        }
    }

    #[test]
    fn versions() {
        for ok in ["0.1.0", "2024.05.1-rc1", "a_b"] {
            check_version(ok).unwrap();
        }
        for bad in ["", "1+3", "a/b", "a b", "é", &"9".repeat(65)] {
            assert!(check_version(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn gpt_round_trip_in_memory() {
        let l = Layout::standard();
        let ids = DiskIds::derive("t");
        let path = std::env::temp_dir().join(format!("petrel-gpt-test-{}", std::process::id()));
        let mut f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        f.set_len(l.total_bytes).unwrap();
        write_gpt(&mut f, &l, &ids).unwrap();
        let table = read_table(&mut f).unwrap();
        let allocated = f.metadata().unwrap().blocks() * 512;
        fs::remove_file(&path).unwrap();
        assert_eq!(table.sector_bytes, 512);
        assert_eq!(table.disk_guid, ids.disk);
        let esp = table.esp().unwrap();
        assert_eq!((esp.number, esp.name.as_str()), (1, "ESP"));
        assert_eq!(esp.unique_guid, ids.esp_partition);
        assert_eq!(esp.bytes, l.esp_bytes());
        let data = table.data().unwrap();
        assert_eq!(data.number, 2);
        assert_eq!(data.type_guid, LINUX_FS_TYPE_GUID);
        assert_eq!(data.bytes, l.data_bytes());
        // Only the MBR, headers and the two used entries are allocated.
        assert!(allocated <= 64 * 1024, "{allocated}");
    }

    #[test]
    fn no_gpt_and_absurd_gpt() {
        let mut blank = Cursor::new(vec![0u8; 1 << 20]);
        assert!(matches!(read_table(&mut blank), Err(TableError::NoGpt)));
        let mut tiny = Cursor::new(vec![0u8; 100]);
        assert!(matches!(read_table(&mut tiny), Err(TableError::NoGpt)));
        let mut d = vec![0u8; 1 << 20];
        d[512..520].copy_from_slice(GPT_SIGNATURE);
        d[512 + GPT_NUM_ENTRIES..512 + GPT_NUM_ENTRIES + 4]
            .copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            read_table(&mut Cursor::new(d)),
            Err(TableError::Insane(_))
        ));
    }
}
