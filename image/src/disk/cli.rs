//! The `disk` and `provision` subcommands of `petrel-image` (argh), kept here so that
//! `main.rs` only lists them.

use std::error::Error;
use std::fs::{self, OpenOptions};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use argh::FromArgs;

use super::{DiskInputs, hex};
use crate::provision::{self, CONFIG_MAX_BYTES, Request, TRUST_MAX_BYTES, UNIKERNEL_MAX_BYTES};

/// The one-line message of an error and its causes: `a: b: c`.
pub fn error_chain(e: &dyn Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        out.push_str(": ");
        out.push_str(&s.to_string());
        cur = s.source();
    }
    out
}

/// `SOURCE_DATE_EPOCH` from the environment, if set and numeric.
pub fn source_date_epoch_from_env() -> Result<Option<u64>, String> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) => v
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| format!("SOURCE_DATE_EPOCH={v:?} is not a number of seconds")),
        Err(_) => Ok(None),
    }
}

#[derive(FromArgs, Debug)]
/// Assemble petrel.img (GPT: FAT32 ESP with systemd-boot and the UKI, ext4 data
/// partition) from a UKI and systemd-boot. No root needed; needs mkfs.ext4
/// (e2fsprogs). The same inputs and SOURCE_DATE_EPOCH give the same bytes.
#[argh(subcommand, name = "disk")]
pub struct DiskCmd {
    /// the unified kernel image (becomes EFI/Linux/petrel-VERSION.efi)
    #[argh(option)]
    pub uki: PathBuf,
    /// systemd-boot: usr/lib/systemd/boot/efi/systemd-bootx64.efi from systemd-boot-efi
    #[argh(option)]
    pub bootloader: PathBuf,
    /// image version (IMAGE_VERSION): names the UKI and seeds every GUID
    #[argh(option)]
    pub version: String,
    /// output image file (default: petrel.img)
    #[argh(option, default = "PathBuf::from(\"petrel.img\")")]
    pub out: PathBuf,
    /// timestamp of everything in the image (default: $SOURCE_DATE_EPOCH, else 1980-01-01)
    #[argh(option)]
    pub source_date_epoch: Option<u64>,
}

impl DiskCmd {
    /// Builds the image and prints what was made.
    pub fn run(self) -> Result<(), String> {
        let epoch = match self.source_date_epoch {
            Some(e) => e,
            None => source_date_epoch_from_env()?.unwrap_or(super::esp::FAT_EPOCH_UNIX_SECS),
        };
        let inputs = DiskInputs {
            version: self.version,
            bootloader: self.bootloader,
            uki: self.uki,
            source_date_epoch: epoch,
        };
        let report = super::build(&inputs, &self.out).map_err(|e| error_chain(&e))?;
        println!(
            "{}: {} bytes ({} allocated), ESP {} GUID {}, data {} GUID {}, disk GUID {}",
            report.path.display(),
            report.apparent_bytes,
            report.allocated_bytes,
            super::ESP_PARTITION_NUMBER,
            report.ids.esp_partition,
            super::DATA_PARTITION_NUMBER,
            report.ids.data_partition,
            report.ids.disk,
        );
        let name = report
            .path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        println!("{}  {}", hex(&report.sha256), name);
        Ok(())
    }
}

#[derive(FromArgs, Debug)]
/// Write one device's settings onto the ESP of a Petrel image file or a flashed disk:
/// petrel/config.toml (validated), petrel/trust/ca.pem, the device certificate and key
/// (petrel/trust/device.crt.pem, device.key.pem), petrel/images/NAME.hvt (each checked
/// to be a Solo5 hvt unikernel). petreld starts the config's [[unikernels]] at boot; an
/// --autostart image that no [[unikernels]] entry and no [[services]] command names
/// gets an entry of its own (its network devices on the service bridge). Nothing
/// outside the ESP changes.
#[argh(subcommand, name = "provision")]
pub struct ProvisionCmd {
    /// the image file or block device
    #[argh(positional)]
    pub target: PathBuf,
    /// the device config (TOML, schema in docs/formats.md)
    #[argh(option)]
    pub config: PathBuf,
    /// the operator's trust anchor (PEM certificates)
    #[argh(option)]
    pub trust: Option<PathBuf>,
    /// a unikernel to place for autostart, as NAME=FILE.hvt (repeatable)
    #[argh(option)]
    pub autostart: Vec<String>,
    /// the device's certificate chain, PEM, issued under --trust (petrelctl ca issue
    /// NAME --device HOSTNAME)
    #[argh(option)]
    pub device_cert: Option<PathBuf>,
    /// the device's private key, PEM
    #[argh(option)]
    pub device_key: Option<PathBuf>,
    /// the operator's top identity (e.g. ops), written as [management] admin
    #[argh(option)]
    pub admin: Option<String>,
}

/// Reads a whole input file, refusing one larger than `max_bytes`.
fn read_capped(path: &Path, max_bytes: u64) -> Result<Vec<u8>, String> {
    let meta = fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if meta.len() > max_bytes {
        return Err(format!("{}: larger than {max_bytes} bytes", path.display()));
    }
    fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

impl ProvisionCmd {
    /// Provisions and prints what was written.
    pub fn run(self) -> Result<(), String> {
        let config_bytes = read_capped(&self.config, CONFIG_MAX_BYTES)?;
        let config = String::from_utf8(config_bytes)
            .map_err(|_| format!("{}: not UTF-8 text", self.config.display()))?;
        let trust_pem = match &self.trust {
            Some(p) => Some(read_capped(p, TRUST_MAX_BYTES)?),
            None => None,
        };
        let mut autostart = Vec::new();
        for spec in &self.autostart {
            let (name, file) = spec
                .split_once('=')
                .ok_or_else(|| format!("--autostart {spec:?}: expected NAME=FILE.hvt"))?;
            autostart.push((
                name.to_owned(),
                read_capped(Path::new(file), UNIKERNEL_MAX_BYTES)?,
            ));
        }
        let device_cert_pem = match &self.device_cert {
            Some(p) => Some(read_capped(p, TRUST_MAX_BYTES)?),
            None => None,
        };
        let device_key_pem = match &self.device_key {
            Some(p) => Some(read_capped(p, TRUST_MAX_BYTES)?),
            None => None,
        };
        let time_unix_secs = match source_date_epoch_from_env()? {
            Some(t) => t,
            None => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        };
        let req = Request {
            config: Some(config),
            trust_pem,
            autostart,
            device_cert_pem,
            device_key_pem,
            admin: self.admin.clone(),
            time_unix_secs,
        };
        // Check everything before opening the target for writing.
        provision::check_request(&req).map_err(|e| match e {
            provision::ProvisionError::Config(_) => {
                format!("{}: {}", self.config.display(), error_chain(&e))
            }
            e => error_chain(&e),
        })?;

        let target = &self.target;
        let is_block = fs::metadata(target)
            .map_err(|e| format!("{}: {e}", target.display()))?
            .file_type()
            .is_block_device();
        let mut open = OpenOptions::new();
        open.read(true).write(true);
        if is_block {
            // O_EXCL on a block device fails with EBUSY while it is mounted.
            open.custom_flags(libc::O_EXCL);
        }
        let mut disk = open
            .open(target)
            .map_err(|e| format!("{}: {e}", target.display()))?;
        let report = provision::provision(&mut disk, &req)
            .map_err(|e| format!("{}: {}", target.display(), error_chain(&e)))?;
        disk.sync_all()
            .map_err(|e| format!("{}: {e}", target.display()))?;
        for w in &report.config_warnings {
            eprintln!("warning: {}: {w}", self.config.display());
        }
        for name in &report.added_entries {
            println!("added [[unikernels]] entry {name:?} to the config");
        }
        for (path, bytes) in &report.written {
            println!("wrote {path} ({bytes} bytes)");
        }
        println!("ESP: {} bytes free", report.free_bytes);
        Ok(())
    }
}
