//! `petrel-image provision`: writes one device's settings onto the ESP of a flashed
//! disk or of an image file. The image itself stays generic; provisioning writes only
//! inside the ESP's FAT file system:
//!
//! | ESP path                  | what |
//! |---------------------------|------|
//! | `petrel/config.toml`      | the device config, validated with `petrel-config` first |
//! | `petrel/trust/ca.pem`     | the operator's trust anchor (PEM certificates) |
//! | `petrel/trust/device.crt.pem` | the device's certificate chain (leaf first), issued under the anchor |
//! | `petrel/trust/device.key.pem` | the device's private key (PID 1 mounts the ESP root-only, 0600) |
//! | `petrel/images/NAME.hvt`  | unikernels to autostart, each checked to be a Solo5 hvt unikernel |
//!
//! `petreld` starts the config's `[[unikernels]]` at boot. An autostart image that no
//! `[[unikernels]]` entry and no `[[services]]` command names gets an entry of its own
//! (name NAME, 32 MiB, every network device of its manifest on the `service` bridge, no
//! arguments, restart always); an entry's network devices must match its image's
//! manifest exactly, and an entry's image must be given now or be on the ESP already.
//! `--admin` sets `[management] admin`. When anything is added the config is written
//! out whole by `petrel-config` (comments are not kept); otherwise as given.
//!
//! Everything is checked before the disk is touched (config, certificates — the device
//! certificate must chain to the anchor and match its key —, unikernels and their
//! entries, free space), so a refused request changes nothing. Each file is written as
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
/// The device certificate chain's path on the ESP.
pub const DEVICE_CERT_PATH: &str = "petrel/trust/device.crt.pem";
/// The device key's path on the ESP.
pub const DEVICE_KEY_PATH: &str = "petrel/trust/device.key.pem";
/// Where a `[[services]]` command finds the ESP's images at run time.
pub const IMAGES_RUNTIME_DIR: &str = "/boot/efi/petrel/images";
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
    /// The device's certificate chain, PEM (leaf first); needs `trust_pem` and
    /// `device_key_pem`.
    pub device_cert_pem: Option<Vec<u8>>,
    /// The device's private key, PEM.
    pub device_key_pem: Option<Vec<u8>>,
    /// The operator's top identity, for `[management] admin`; needs `config`.
    pub admin: Option<String>,
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
    /// `[[unikernels]]` entries provisioning added, by name.
    pub added_entries: Vec<String>,
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
    /// The device certificate or key is unusable, or they do not belong together.
    #[error("bad device certificate: {0}")]
    DeviceCert(String),
    /// An `[[unikernels]]` entry and its image do not fit together.
    #[error("unikernel {name:?}: {reason}")]
    Entry {
        /// The entry's name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// A request that contradicts itself or the config.
    #[error("{0}")]
    Conflict(String),
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

/// What [`check_request`] found: the config to write and what to say about it.
#[derive(Debug, Clone, Default)]
pub struct Checked {
    /// The config text to write (`None`: none given).
    pub config: Option<String>,
    /// The config parser's warnings.
    pub warnings: Vec<String>,
    /// `[[unikernels]]` entries added for autostart images, by name.
    pub added_entries: Vec<String>,
    /// Images the config's entries name that this request does not carry: they must
    /// be on the ESP already.
    pub images_needed: Vec<String>,
}

/// Checks everything in `req` that needs no disk; returns the config to write.
pub fn check_request(req: &Request) -> Result<Checked, ProvisionError> {
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
    let mut manifests = Vec::with_capacity(req.autostart.len());
    for (name, elf) in &req.autostart {
        check_unikernel(name, elf)?;
        manifests.push((name.as_str(), devices(name, elf)?));
    }
    check_device_cert(req)?;
    let mut checked = match &req.config {
        Some(text) => autostart_entries(text, req.admin.as_deref(), &manifests)?,
        None if req.admin.is_some() => {
            return Err(ProvisionError::Conflict(
                "--admin needs a config to write it into".to_owned(),
            ));
        }
        None => Checked::default(),
    };
    checked.warnings = warnings;
    Ok(checked)
}

/// The device certificate and key: both or neither; with the anchor; the chain leads to
/// the anchor; the key is the certificate's.
pub fn check_device_cert(req: &Request) -> Result<(), ProvisionError> {
    use petrel_proto::tls;
    let bad = |what: String| ProvisionError::DeviceCert(what);
    let (cert, key) = match (&req.device_cert_pem, &req.device_key_pem) {
        (None, None) => return Ok(()),
        (Some(c), Some(k)) => (c, k),
        _ => {
            return Err(bad(
                "the device certificate and its key go together".to_owned()
            ));
        }
    };
    let Some(trust) = &req.trust_pem else {
        return Err(bad(
            "a device certificate needs the trust anchor it is issued under".to_owned(),
        ));
    };
    if std::str::from_utf8(cert).is_ok_and(|t| t.contains("PRIVATE KEY-----")) {
        return Err(bad(
            "the certificate file holds a private key; give it as the key".to_owned(),
        ));
    }
    let chain = tls::certs_from_pem(cert).map_err(|e| bad(format!("certificate: {e}")))?;
    let key = tls::key_from_pem(key).map_err(|e| bad(format!("key: {e}")))?;
    let anchors = tls::certs_from_pem(trust).map_err(|e| bad(format!("trust anchor: {e}")))?;
    tls::peer_identity(&chain, &anchors)
        .map_err(|e| bad(format!("not issued under the trust anchor: {e}")))?;
    tls::server_config(&anchors, chain, key).map_err(|e| {
        let mut why = e.to_string();
        if let Some(s) = std::error::Error::source(&e) {
            why.push_str(&format!(": {s}"));
        }
        bad(why)
    })?;
    Ok(())
}

/// The device names of a unikernel's manifest.
#[derive(Debug, Clone, Default)]
struct Devices {
    net: Vec<String>,
    block: Vec<String>,
}

/// The network and block device names of a unikernel's manifest.
fn devices(name: &str, elf: &[u8]) -> Result<Devices, ProvisionError> {
    use hvt_abi::mft::{DeviceKind, Manifest};
    let refuse = |reason: String| ProvisionError::NotUnikernel {
        name: name.to_owned(),
        reason,
    };
    let parsed = Elf::parse(elf).map_err(|e| refuse(e.to_string()))?;
    let note = parsed.manifest_note().map_err(|e| refuse(e.to_string()))?;
    let mft = Manifest::parse(note).map_err(|e| refuse(e.to_string()))?;
    let mut net = Vec::new();
    let mut block = Vec::new();
    for (_, dev, kind) in mft.devices() {
        match kind {
            DeviceKind::Net => net.push(dev.to_owned()),
            DeviceKind::Block => block.push(dev.to_owned()),
            _ => {}
        }
    }
    Ok(Devices { net, block })
}

/// Applies `--admin` and the autostart rule of the module doc to the config `text`.
fn autostart_entries(
    text: &str,
    admin: Option<&str>,
    manifests: &[(&str, Devices)],
) -> Result<Checked, ProvisionError> {
    use petrel_config::{Autostart, Config, NetAttach};
    let mut config = Config::parse(text)
        .map_err(|e| ProvisionError::Config(e.to_string()))?
        .config;
    let mut changed = false;
    if let Some(admin) = admin {
        match &config.management.admin {
            Some(a) if a == admin => {}
            Some(a) => {
                return Err(ProvisionError::Conflict(format!(
                    "--admin {admin:?} but the config's management.admin is {a:?}"
                )));
            }
            None => {
                config.management.admin = Some(admin.to_owned());
                changed = true;
            }
        }
    }
    let mut added = Vec::new();
    for (name, Devices { net, block }) in manifests {
        let file = format!("{name}.hvt");
        let entry_err = |entry: &str, reason: String| ProvisionError::Entry {
            name: entry.to_owned(),
            reason,
        };
        let entries: Vec<&Autostart> = config
            .unikernels
            .iter()
            .filter(|u| u.image == file)
            .collect();
        for e in &entries {
            if let Some(b) = block.first() {
                return Err(entry_err(
                    &e.name,
                    format!("{file} needs block device {b:?}, which autostart entries cannot give"),
                ));
            }
            let given: Vec<&str> = e.net.iter().map(|n| n.device.as_str()).collect();
            let missing: Vec<&str> = net
                .iter()
                .map(String::as_str)
                .filter(|d| !given.contains(d))
                .collect();
            let extra: Vec<&str> = given
                .iter()
                .copied()
                .filter(|d| !net.iter().any(|n| n == d))
                .collect();
            if !missing.is_empty() || !extra.is_empty() {
                return Err(entry_err(
                    &e.name,
                    format!(
                        "net does not match {file}'s manifest: missing [{}], extra [{}]",
                        missing.join(", "),
                        extra.join(", ")
                    ),
                ));
            }
        }
        let runtime_path = format!("{IMAGES_RUNTIME_DIR}/{file}");
        let by_service = config
            .services
            .iter()
            .any(|s| s.command.iter().any(|a| a == &runtime_path));
        if !entries.is_empty() || by_service {
            continue;
        }
        if config.unikernel(name).is_some() {
            return Err(entry_err(
                name,
                format!("an entry of this name starts another image, not {file}"),
            ));
        }
        if let Some(b) = block.first() {
            return Err(entry_err(
                name,
                format!("{file} needs block device {b:?}; autostart cannot give one"),
            ));
        }
        let bridge = petrel_config::DEFAULT_BRIDGE;
        if !net.is_empty() && config.bridge(bridge).is_none() {
            return Err(entry_err(
                name,
                format!("{file} has network devices but the config has no bridge {bridge:?}"),
            ));
        }
        config.unikernels.push(Autostart {
            name: (*name).to_owned(),
            image: file,
            memory_mib: petrel_config::DEFAULT_UNIKERNEL_MEMORY_MIB,
            args: Vec::new(),
            net: net
                .iter()
                .map(|d| NetAttach {
                    device: d.clone(),
                    bridge: bridge.to_owned(),
                })
                .collect(),
            restart: petrel_config::Restart::Always,
            priority: 0,
        });
        added.push((*name).to_owned());
        changed = true;
    }
    let images_needed = config
        .unikernels
        .iter()
        .map(|u| u.image.clone())
        .filter(|img| !manifests.iter().any(|(n, _)| format!("{n}.hvt") == *img))
        .collect();
    let text = if changed {
        config.to_toml()
    } else {
        text.to_owned()
    };
    // What is written must read back as what was meant.
    check_config(&text)?;
    Ok(Checked {
        config: Some(text),
        warnings: Vec::new(),
        added_entries: added,
        images_needed,
    })
}

/// The files `req` writes: (ESP path, content), in writing order.
fn files<'a>(req: &'a Request, checked: &'a Checked) -> Vec<(String, &'a [u8])> {
    let mut out = Vec::new();
    if let Some(text) = &checked.config {
        out.push((CONFIG_PATH.to_owned(), text.as_bytes()));
    }
    if let Some(pem) = &req.trust_pem {
        out.push((TRUST_PATH.to_owned(), pem.as_slice()));
    }
    if let Some(pem) = &req.device_cert_pem {
        out.push((DEVICE_CERT_PATH.to_owned(), pem.as_slice()));
    }
    if let Some(pem) = &req.device_key_pem {
        out.push((DEVICE_KEY_PATH.to_owned(), pem.as_slice()));
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
    let checked = check_request(req)?;

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

    for image in &checked.images_needed {
        let present = fs
            .root_dir()
            .open_dir(IMAGES_DIR)
            .and_then(|d| d.open_file(image))
            .is_ok();
        if !present {
            return Err(ProvisionError::Conflict(format!(
                "the config starts {IMAGES_DIR}/{image}, which is neither given nor on the ESP"
            )));
        }
    }
    let files = files(req, &checked);
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
        config_warnings: checked.warnings,
        added_entries: checked.added_entries,
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
