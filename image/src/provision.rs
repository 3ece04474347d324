//! `petrel-image provision`: writes one device's settings onto the ESP of a flashed
//! disk or of an image file. The image itself stays generic; provisioning writes only
//! inside the ESP's FAT file system:
//!
//! | ESP path                  | what |
//! |---------------------------|------|
//! | `petrel/config.toml`      | the device config, validated with `petrel-config` first |
//! | `petrel/trust/ca.pem`     | the operator's trust anchor (PEM certificates) |
//! | `petrel/images/NAME.hvt`  | unikernels to autostart, each checked to be a Solo5 hvt unikernel |
//!
//! Everything is checked before the disk is touched (config, certificates, unikernels,
//! free space), so a refused request changes nothing. Each file is written as
//! `NAME.new`, then the old file is removed and the new one renamed: after a power cut
//! the old or the new file is there, or (between the two steps) none, which PID 1 treats
//! as "defaults". [`provision`] works on any `Read + Write + Seek` disk; the caller
//! opens the file or device and syncs it afterwards.

use std::io::{self, Read, Seek, Write};

use hvt_abi::elf::Elf;
use hvt_abi::note::check_hvt_abi;

use crate::disk::esp::{self, EspError, FatTime};
use crate::disk::fatfix;
use crate::disk::window::Window;
use crate::disk::{self, TableError};

/// The config's path on the ESP.
pub const CONFIG_PATH: &str = petrel_config::CONFIG_PATH;
/// The trust anchor's path on the ESP.
pub const TRUST_PATH: &str = "petrel/trust/ca.pem";
/// The directory of unikernels to autostart.
pub const IMAGES_DIR: &str = "petrel/images";
/// The longest unikernel name accepted, in bytes.
pub const NAME_MAX_BYTES: usize = 64;
/// The largest unikernel accepted, in bytes.
pub const UNIKERNEL_MAX_BYTES: u64 = 128 << 20;
/// The largest trust anchor file accepted, in bytes.
pub const TRUST_MAX_BYTES: u64 = 1 << 20;
/// The largest config accepted, in bytes.
pub const CONFIG_MAX_BYTES: u64 = 1 << 20;

/// What to write.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// The config text.
    pub config: Option<String>,
    /// The trust anchor, PEM.
    pub trust_pem: Option<Vec<u8>>,
    /// Unikernels to autostart: (name, ELF bytes).
    pub autostart: Vec<(String, Vec<u8>)>,
    /// Timestamp of every file written, seconds since 1970 (clamped to FAT's range).
    pub time_unix_secs: u64,
}

/// What was written.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Files written: (ESP path, bytes).
    pub written: Vec<(String, u64)>,
    /// Warnings from the config parser (unknown keys, …).
    pub config_warnings: Vec<String>,
    /// Free space left on the ESP, in bytes.
    pub free_bytes: u64,
}

/// Why provisioning was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    /// The disk has no (readable) GPT.
    #[error("not a Petrel image")]
    Table(#[source] TableError),
    /// The GPT has no EFI system partition.
    #[error("not a Petrel image: the GPT has no EFI system partition")]
    NoEsp,
    /// The ESP holds no FAT file system, or not ours.
    #[error("not a Petrel image: {0}")]
    NotPetrel(&'static str),
    /// The config does not parse or fails validation.
    #[error("bad config: {0}")]
    Config(String),
    /// The trust anchor is not PEM.
    #[error("bad trust anchor: {0}")]
    Trust(&'static str),
    /// An autostart name is not usable.
    #[error(
        "bad unikernel name {0:?}: use 1 to {NAME_MAX_BYTES} of a-z 0-9 _ - (starting with a letter or digit), each once"
    )]
    BadName(String),
    /// An autostart file is not a Solo5 hvt unikernel.
    #[error("{name}: not a Solo5 hvt unikernel: {reason}")]
    NotUnikernel {
        /// The name it was given.
        name: String,
        /// What the ELF/ABI checks said.
        reason: String,
    },
    /// Not enough room on the ESP.
    #[error("ESP full: {need_bytes} bytes needed, {free_bytes} bytes free")]
    EspFull {
        /// Bytes the new files take (in whole clusters).
        need_bytes: u64,
        /// Bytes free.
        free_bytes: u64,
    },
    /// A file system operation failed.
    #[error(transparent)]
    Esp(#[from] EspError),
    /// Reading or flushing the disk failed.
    #[error("disk I/O")]
    Io(#[from] io::Error),
}

/// Validates a config with `petrel-config`; returns its warnings. The error says the
/// line and column.
pub fn check_config(text: &str) -> Result<Vec<String>, ProvisionError> {
    petrel_config::Config::parse(text)
        .map(|parsed| parsed.warnings)
        .map_err(|e| ProvisionError::Config(e.to_string()))
}

/// Checks that `pem` holds at least one PEM certificate and nothing but text.
pub fn check_trust(pem: &[u8]) -> Result<(), ProvisionError> {
    let text =
        std::str::from_utf8(pem).map_err(|_| ProvisionError::Trust("not text (PEM expected)"))?;
    let begins = text.matches("-----BEGIN CERTIFICATE-----").count();
    let ends = text.matches("-----END CERTIFICATE-----").count();
    if begins == 0 {
        return Err(ProvisionError::Trust(
            "no '-----BEGIN CERTIFICATE-----' block",
        ));
    }
    if begins != ends {
        return Err(ProvisionError::Trust("unterminated certificate block"));
    }
    if text.contains("PRIVATE KEY-----") {
        return Err(ProvisionError::Trust(
            "contains a private key; the ESP is readable by anyone",
        ));
    }
    Ok(())
}

/// Checks an autostart name: `[a-z0-9][a-z0-9_-]*`, at most [`NAME_MAX_BYTES`]. FAT
/// ignores case, so upper case is refused rather than folded.
pub fn check_name(name: &str) -> Result<(), ProvisionError> {
    let bytes = name.as_bytes();
    let ok = (1..=NAME_MAX_BYTES).contains(&bytes.len())
        && bytes[0].is_ascii_lowercase() | bytes[0].is_ascii_digit()
        && bytes
            .iter()
            .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(ProvisionError::BadName(name.to_owned()))
    }
}

/// Checks that `elf` is a Solo5 hvt unikernel this firmware's tender runs: an ELF the
/// tender's loader accepts, with an ABI note for hvt at the supported version.
pub fn check_unikernel(name: &str, elf: &[u8]) -> Result<(), ProvisionError> {
    let refuse = |reason: String| ProvisionError::NotUnikernel {
        name: name.to_owned(),
        reason,
    };
    let parsed = Elf::parse(elf).map_err(|e| refuse(e.to_string()))?;
    let info = parsed.abi_info().map_err(|e| refuse(e.to_string()))?;
    check_hvt_abi(&info).map_err(|e| refuse(e.to_string()))?;
    Ok(())
}

/// Checks everything in `req` that needs no disk; returns the config's warnings.
pub fn check_request(req: &Request) -> Result<Vec<String>, ProvisionError> {
    let warnings = match &req.config {
        Some(text) => check_config(text)?,
        None => Vec::new(),
    };
    if let Some(pem) = &req.trust_pem {
        check_trust(pem)?;
    }
    for (i, (name, _)) in req.autostart.iter().enumerate() {
        check_name(name)?;
        if req.autostart[..i].iter().any(|(n, _)| n == name) {
            return Err(ProvisionError::BadName(name.clone()));
        }
    }
    for (name, elf) in &req.autostart {
        check_unikernel(name, elf)?;
    }
    Ok(warnings)
}

/// The files `req` writes: (ESP path, content), in writing order.
fn files(req: &Request) -> Vec<(String, &[u8])> {
    let mut out = Vec::new();
    if let Some(text) = &req.config {
        out.push((CONFIG_PATH.to_owned(), text.as_bytes()));
    }
    if let Some(pem) = &req.trust_pem {
        out.push((TRUST_PATH.to_owned(), pem.as_slice()));
    }
    for (name, elf) in &req.autostart {
        out.push((format!("{IMAGES_DIR}/{name}.hvt"), elf.as_slice()));
    }
    out
}

/// Clusters a file of `len` bytes takes (at least one, as `fatfs` allocates).
fn clusters_for(len: u64, cluster_bytes: u64) -> u64 {
    len.div_ceil(cluster_bytes).max(1)
}

/// Writes `req` onto the ESP of `disk` (an image file or a block device).
pub fn provision<D: Read + Write + Seek>(
    disk: &mut D,
    req: &Request,
) -> Result<Report, ProvisionError> {
    let config_warnings = check_request(req)?;

    let table = disk::read_table(disk).map_err(|e| match e {
        TableError::Io(e) => ProvisionError::Io(e),
        e => ProvisionError::Table(e),
    })?;
    let esp_range = table.esp().ok_or(ProvisionError::NoEsp)?.bytes.clone();
    let time = FatTime::from_unix_secs(req.time_unix_secs);
    let part = Window::new(&mut *disk, esp_range.start, esp_range.end - esp_range.start);
    let fs = esp::open(part, time)
        .map_err(|_| ProvisionError::NotPetrel("the ESP holds no FAT file system"))?;
    if fs.root_dir().open_dir(esp::PETREL_DIR).is_err() {
        return Err(ProvisionError::NotPetrel(
            "the ESP has no petrel/ directory",
        ));
    }

    let files = files(req);
    let stats = fs.stats()?;
    let cluster = u64::from(stats.cluster_size());
    let free_bytes = u64::from(stats.free_clusters()) * cluster;
    // New files are written before the old ones are removed; allow one cluster per
    // directory that may have to be created or grown.
    let need_clusters: u64 = files
        .iter()
        .map(|(_, data)| clusters_for(data.len() as u64, cluster))
        .sum::<u64>()
        + 4;
    let need_bytes = need_clusters * cluster;
    if need_bytes > free_bytes {
        return Err(ProvisionError::EspFull {
            need_bytes,
            free_bytes,
        });
    }

    let mut written = Vec::new();
    for (path, data) in &files {
        replace_file(&fs, path, data)?;
        written.push((path.clone(), data.len() as u64));
    }
    let free_bytes = u64::from(fs.stats()?.free_clusters()) * cluster;
    fs.unmount()?;
    let mut part = Window::new(&mut *disk, esp_range.start, esp_range.end - esp_range.start);
    fatfix::fix_tree(&mut part).map_err(esp::at("/"))?;
    disk.flush()?;
    Ok(Report {
        written,
        config_warnings,
        free_bytes,
    })
}

/// Writes `path` as `path.new`, removes `path`, renames `path.new` to `path`; creates
/// the parent directories as needed.
fn replace_file<T: fatfs::ReadWriteSeek>(
    fs: &fatfs::FileSystem<T>,
    path: &str,
    data: &[u8],
) -> Result<(), ProvisionError> {
    let root = fs.root_dir();
    let (dir_path, name) = path.rsplit_once('/').unwrap_or(("", path));
    let mut dir = root.clone();
    for part in dir_path.split('/').filter(|p| !p.is_empty()) {
        dir = dir.create_dir(part).map_err(esp::at(path))?;
    }
    let tmp = format!("{name}.new");
    // A leftover from an interrupted run.
    if dir.open_file(&tmp).is_ok() {
        dir.remove(&tmp).map_err(esp::at(path))?;
    }
    let mut file = dir.create_file(&tmp).map_err(esp::at(path))?;
    file.truncate().map_err(esp::at(path))?;
    file.write_all(data).map_err(|e| out_of_space(e, path))?;
    file.flush().map_err(esp::at(path))?;
    drop(file);
    if dir.open_file(name).is_ok() {
        dir.remove(name).map_err(esp::at(path))?;
    }
    dir.rename(&tmp, &dir, name).map_err(esp::at(path))?;
    Ok(())
}

/// `fatfs` reports a full volume as a plain `io::Error`; give it its proper name.
fn out_of_space(e: io::Error, path: &str) -> ProvisionError {
    if e.to_string().contains("No space") {
        ProvisionError::EspFull {
            need_bytes: 0,
            free_bytes: 0,
        }
    } else {
        esp::at(path)(e).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["hello", "time-2", "a", "0x", "n_1"] {
            check_name(ok).unwrap();
        }
        for bad in [
            "",
            "Hello",
            "-x",
            "_x",
            "a/b",
            "a.b",
            "a b",
            "é",
            &"a".repeat(65),
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn trust() {
        let good = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        check_trust(good).unwrap();
        assert!(check_trust(b"hello").is_err());
        assert!(check_trust(&[0xff, 0xfe]).is_err());
        assert!(check_trust(b"-----BEGIN CERTIFICATE-----\nMIIB\n").is_err());
        let with_key = [
            &good[..],
            b"-----BEGIN PRIVATE KEY-----\nMC4\n-----END PRIVATE KEY-----\n",
        ]
        .concat();
        assert!(check_trust(&with_key).is_err());
    }

    #[test]
    fn config_errors_name_the_line() {
        check_config("hostname = \"box\"\n").unwrap();
        let e = check_config("hostname = \"box\"\n[network\n").unwrap_err();
        assert!(e.to_string().contains("line 2"), "{e}");
    }

    #[test]
    fn not_a_unikernel() {
        let e = check_unikernel("x", b"#!/bin/sh\necho hi\n").unwrap_err();
        assert!(
            e.to_string().starts_with("x: not a Solo5 hvt unikernel"),
            "{e}"
        );
    }

    #[test]
    fn duplicate_names_refused() {
        let req = Request {
            autostart: vec![("a".into(), vec![]), ("a".into(), vec![])],
            ..Request::default()
        };
        // Names are checked before contents.
        assert!(matches!(check_request(&req), Err(ProvisionError::BadName(n)) if n == "a"));
    }

    #[test]
    fn cluster_rounding() {
        assert_eq!(clusters_for(0, 2048), 1);
        assert_eq!(clusters_for(2048, 2048), 1);
        assert_eq!(clusters_for(2049, 2048), 2);
    }
}
