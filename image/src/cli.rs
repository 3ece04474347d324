//! The `build` and `pin` subcommands of `petrel-image` (argh), kept here so that
//! `main.rs` only lists them.

use std::path::PathBuf;

use argh::FromArgs;

use crate::assemble::{self, BuildOptions, DEFAULT_BINS, MUSL_RELEASE_DIR, REQUIRED_BINS};
use crate::disk::cli::{error_chain, source_date_epoch_from_env};
use crate::disk::esp::FAT_EPOCH_UNIX_SECS;
use crate::inputs;

#[derive(FromArgs, Debug)]
/// Build the boot artifacts: initramfs.cpio.gz (PID 1, /bin programs, rootfs/, the
/// selected kernel modules and their index) and the UKI petrel.efi (systemd's EFI stub
/// with .osrel, .cmdline, .initrd, .linux), plus build-info.json. The kernel and stub
/// come from the Debian packages pinned in image/inputs.lock (downloaded into
/// build/inputs/ and verified) unless --kernel/--modules/--stub name others. The same
/// inputs and SOURCE_DATE_EPOCH give the same bytes.
#[argh(subcommand, name = "build")]
pub struct BuildCmd {
    /// output directory (default: build/image)
    #[argh(option, default = "PathBuf::from(\"build/image\")")]
    pub out: PathBuf,
    /// image version, IMAGE_VERSION in os-release (default: the crate version)
    #[argh(option, default = "env!(\"CARGO_PKG_VERSION\").to_owned()")]
    pub version: String,
    /// PID 1 (default: target/x86_64-unknown-linux-musl/release/petrel-init)
    #[argh(option)]
    pub init: Option<PathBuf>,
    /// a static program for /bin (repeatable; default: petrel-hvt, petreld (both
    /// required), petrel-dhcp and petrel-sntp from
    /// target/x86_64-unknown-linux-musl/release/, the ones built)
    #[argh(option)]
    pub bin: Vec<PathBuf>,
    /// files laid into the initramfs as they are (default: rootfs); its etc/os-release
    /// is a template where @IMAGE_VERSION@ is replaced
    #[argh(option, default = "PathBuf::from(\"rootfs\")")]
    pub rootfs: PathBuf,
    /// a bzImage to use instead of the pinned Debian kernel (needs --modules)
    #[argh(option)]
    pub kernel: Option<PathBuf>,
    /// its lib/modules/KVER directory (needs --kernel)
    #[argh(option)]
    pub modules: Option<PathBuf>,
    /// systemd's linuxx64.efi.stub to use instead of the pinned systemd-boot-efi's
    #[argh(option)]
    pub stub: Option<PathBuf>,
    /// the kernel command line (default: see docs/formats.md)
    #[argh(option)]
    pub cmdline: Option<String>,
    /// the lock file of pinned inputs (default: image/inputs.lock)
    #[argh(option, default = "PathBuf::from(inputs::DEFAULT_LOCK)")]
    pub lock: PathBuf,
    /// where pinned packages are downloaded and unpacked (default: build/inputs)
    #[argh(option, default = "PathBuf::from(inputs::DEFAULT_INPUTS_DIR)")]
    pub inputs_dir: PathBuf,
    /// timestamp of every file in the initramfs (default: $SOURCE_DATE_EPOCH, else
    /// 1980-01-01, as the disk)
    #[argh(option)]
    pub source_date_epoch: Option<u32>,
    /// systemd-boot for the ESP of petrel.img (default: the pinned systemd-boot-efi's
    /// systemd-bootx64.efi)
    #[argh(option)]
    pub bootloader: Option<PathBuf>,
}

impl BuildCmd {
    /// Builds and prints what was made.
    pub fn run(self) -> Result<(), String> {
        let release = PathBuf::from(MUSL_RELEASE_DIR);
        let init = self.init.unwrap_or_else(|| release.join("petrel-init"));
        let mut opts = BuildOptions::new(self.out, self.version, init);
        opts.kernel = match (self.kernel, self.modules) {
            (Some(k), Some(m)) => Some((k, m)),
            (None, None) => None,
            _ => return Err("--kernel and --modules go together".to_owned()),
        };
        opts.source_date_epoch = match self.source_date_epoch {
            Some(e) => e,
            None => {
                let e = source_date_epoch_from_env()?.unwrap_or(FAT_EPOCH_UNIX_SECS);
                u32::try_from(e)
                    .map_err(|_| format!("SOURCE_DATE_EPOCH={e} does not fit cpio's 32 bits"))?
            }
        };
        let mut notes = Vec::new();
        opts.bins = if self.bin.is_empty() {
            let mut bins = Vec::new();
            for name in DEFAULT_BINS {
                let path = release.join(name);
                if path.is_file() {
                    bins.push(path);
                } else if REQUIRED_BINS.contains(name) {
                    return Err(format!(
                        "{} not found: run `make build` first, or name programs with --bin",
                        path.display()
                    ));
                } else {
                    notes.push(format!(
                        "{} not built; /bin/{name} left out",
                        path.display()
                    ));
                }
            }
            bins
        } else {
            self.bin
        };
        opts.rootfs = self.rootfs.is_dir().then_some(self.rootfs);
        opts.stub = self.stub;
        opts.lock = self.lock;
        opts.inputs_dir = self.inputs_dir;
        if let Some(c) = self.cmdline {
            opts.cmdline = c;
        }
        let report = assemble::build(&opts).map_err(|e| error_chain(&e))?;
        let disk = crate::disk::finish_build(&report, self.bootloader.as_deref())
            .map_err(|e| error_chain(&e))?;
        for w in notes.iter().chain(&report.warnings) {
            eprintln!("petrel-image: warning: {w}");
        }
        let info = &report.build_info;
        println!(
            "kernel {}, {} modules ({} always loaded), {} bytes raw",
            info.kernel.release, info.modules.count, info.modules.always, info.modules.raw_bytes
        );
        println!(
            "{}: {} bytes (cpio {} bytes)",
            report.initramfs.display(),
            report.initramfs_bytes,
            report.cpio_bytes
        );
        println!("{}: {} bytes", report.uki.display(), report.uki_bytes);
        println!(
            "{}: {} bytes ({} allocated)",
            disk.path.display(),
            disk.apparent_bytes,
            disk.allocated_bytes
        );
        println!(
            "{}  {}",
            crate::disk::hex(&disk.sha256),
            crate::disk::IMAGE_FILE
        );
        for (name, hash) in &info.outputs {
            println!("{hash}  {name}");
        }
        Ok(())
    }
}

#[derive(FromArgs, Debug)]
/// Rewrite the lock file from what apt offers now: the linux-image-VERSION-amd64
/// package that linux-image-amd64 depends on, and systemd-boot-efi. Runs
/// `apt-get update`, downloads both into the inputs directory and records their
/// versions and sha256.
#[argh(subcommand, name = "pin")]
pub struct PinCmd {
    /// the lock file to write (default: image/inputs.lock)
    #[argh(option, default = "PathBuf::from(inputs::DEFAULT_LOCK)")]
    pub lock: PathBuf,
    /// where packages are downloaded (default: build/inputs)
    #[argh(option, default = "PathBuf::from(inputs::DEFAULT_INPUTS_DIR)")]
    pub inputs_dir: PathBuf,
}

impl PinCmd {
    /// Pins and writes the lock file.
    pub fn run(self) -> Result<(), String> {
        let lock = inputs::pin(&self.inputs_dir, &self.lock).map_err(|e| error_chain(&e))?;
        assemble::write_atomically(&self.lock, lock.to_text().as_bytes())
            .map_err(|e| error_chain(&e))?;
        for p in &lock.pins {
            println!("{} {} {}", p.package, p.version, p.sha256);
        }
        println!("wrote {}", self.lock.display());
        Ok(())
    }
}
