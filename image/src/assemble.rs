//! `petrel-image build`: from a kernel, systemd's stub, our static binaries and
//! `rootfs/` to `initramfs.cpio.gz`, the UKI `petrel.efi` and `build-info.json`.
//!
//! Reproducible by construction: every input is read in sorted order, the archive and
//! the UKI are pure functions of the bytes read, time comes from `SOURCE_DATE_EPOCH`
//! (an argument), and no path of the build machine is recorded — only file names,
//! versions and sha256 hashes. Running [`build`] twice on the same inputs writes the
//! same bytes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::cpio::{CpioError, EntryKind};
use crate::elf::{Elf, ElfError};
use crate::initramfs::{self, InitramfsParts};
use crate::inputs::{self, InputError, Pin, sha256_hex};
use crate::modules::{self, ModulesError, Selection};
use crate::uki::{self, UkiError, UkiParts};

/// The kernel command line in every UKI (DESIGN §2, docs/formats.md § "Kernel command
/// line"): the screen and the serial port as consoles — serial last, so that it is
/// `/dev/console`, where PID 1's own output goes before `/dev/kmsg` logging starts;
/// `panic=10` so that a panic reboots (and counts as a failed try of a new UKI);
/// `printk.devkmsg=on` so `petrel-init`'s `/dev/kmsg` lines are never rate-limited;
/// `loglevel=6` so consoles show notices and worse but not the kernel's info chatter,
/// which costs seconds on an emulated serial port. No `root=`: the initramfs is the root.
pub const DEFAULT_CMDLINE: &str =
    "console=tty0 console=ttyS0,115200 panic=10 printk.devkmsg=on loglevel=6";

/// File names written into the output directory.
pub const INITRAMFS_FILE: &str = "initramfs.cpio.gz";
/// The UKI's file name in the output directory.
pub const UKI_FILE: &str = "petrel.efi";
/// The build info's file name in the output directory.
pub const BUILD_INFO_FILE: &str = "build-info.json";
/// The os-release template's path inside `rootfs/`; `@IMAGE_VERSION@` is replaced.
pub const OS_RELEASE_TEMPLATE: &str = "etc/os-release";
/// Used when `rootfs/` has no os-release template.
pub const DEFAULT_OS_RELEASE: &str = "NAME=Petrel\nID=petrel\nPRETTY_NAME=\"Petrel @IMAGE_VERSION@\"\n\
VERSION_ID=@IMAGE_VERSION@\nIMAGE_ID=petrel\nIMAGE_VERSION=@IMAGE_VERSION@\n";
/// The binaries `make image` ships in `/bin` when none are named, under
/// `target/x86_64-unknown-linux-musl/release/`; those in [`REQUIRED_BINS`] must exist.
/// The operator's `petrelctl` is not among them: it runs on the operator's machine.
pub const DEFAULT_BINS: &[&str] = &["petrel-hvt", "petreld", "petrel-dhcp", "petrel-sntp"];
/// The default binaries an image cannot do without: the tender and the supervisor.
pub const REQUIRED_BINS: &[&str] = &["petrel-hvt", "petreld"];
/// Where cargo puts the static binaries.
pub const MUSL_RELEASE_DIR: &str = "target/x86_64-unknown-linux-musl/release";
/// Version of the build-info format.
pub const BUILD_INFO_FORMAT: u32 = 1;

/// What to build from.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Output directory (created).
    pub out_dir: PathBuf,
    /// Image version (`IMAGE_VERSION`): letters, digits, `.`, `_`, `~`, `-`.
    pub version: String,
    /// Every timestamp in the output (`SOURCE_DATE_EPOCH`).
    pub source_date_epoch: u32,
    /// The PID 1 binary.
    pub init: PathBuf,
    /// Programs for `/bin`.
    pub bins: Vec<PathBuf>,
    /// `rootfs/`, laid into the initramfs as it is (`None`: nothing extra).
    pub rootfs: Option<PathBuf>,
    /// A bzImage and its `lib/modules/KVER` tree, instead of the pinned package.
    pub kernel: Option<(PathBuf, PathBuf)>,
    /// systemd's `linuxx64.efi.stub`, instead of the pinned package's.
    pub stub: Option<PathBuf>,
    /// The lock file naming the pinned packages.
    pub lock: PathBuf,
    /// Where pinned packages are downloaded and unpacked.
    pub inputs_dir: PathBuf,
    /// The kernel command line.
    pub cmdline: String,
    /// Which modules to ship.
    pub selection: Selection,
}

impl BuildOptions {
    /// Options with the defaults of `petrel-image build`, relative to the repository
    /// root: pinned inputs, [`DEFAULT_CMDLINE`], [`Selection::petrel`].
    pub fn new(out_dir: PathBuf, version: String, init: PathBuf) -> Self {
        BuildOptions {
            out_dir,
            version,
            source_date_epoch: 0,
            init,
            bins: Vec::new(),
            rootfs: None,
            kernel: None,
            stub: None,
            lock: PathBuf::from(inputs::DEFAULT_LOCK),
            inputs_dir: PathBuf::from(inputs::DEFAULT_INPUTS_DIR),
            cmdline: DEFAULT_CMDLINE.to_owned(),
            selection: Selection::petrel(),
        }
    }
}

/// Why a build failed.
#[derive(Debug, Error)]
pub enum BuildError {
    /// The version cannot stand in os-release and UKI file names.
    #[error(
        "bad image version {0:?}: use letters, digits, '.', '_', '~', '-' (no '+': boot counting uses it)"
    )]
    BadVersion(String),
    /// A pinned input could not be had.
    #[error("inputs")]
    Inputs(#[from] InputError),
    /// A file cannot be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// An output cannot be written.
    #[error("cannot write {}", path.display())]
    Write {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The kernel is not an x86 bzImage with an EFI stub.
    #[error("{} is not an x86-64 bzImage with an EFI stub", path.display())]
    BadKernel {
        /// The kernel's path.
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: UkiError,
    },
    /// The kernel and the module tree are of different releases.
    #[error("kernel {} is release {kernel}, but the modules are for {modules}", path.display())]
    KernelMismatch {
        /// The kernel's path.
        path: PathBuf,
        /// The release the kernel names.
        kernel: String,
        /// The module tree's release.
        modules: String,
    },
    /// The stub is not there.
    #[error("systemd's EFI stub not found at {}", .0.display())]
    MissingStub(PathBuf),
    /// The stub is not a usable PE image.
    #[error("{} is not systemd's EFI stub (linuxx64.efi.stub)", path.display())]
    BadStub {
        /// The stub's path.
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: UkiError,
    },
    /// A binary is not an ELF executable.
    #[error("{} is not an ELF executable", path.display())]
    NotElf {
        /// The binary's path.
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: ElfError,
    },
    /// A binary needs a dynamic loader the image lacks.
    #[error("{} is dynamically linked; the image has no libc (build it for x86_64-unknown-linux-musl)", .0.display())]
    NotStatic(PathBuf),
    /// Two binaries for one `/bin` name.
    #[error("two binaries named {0}")]
    DuplicateBin(String),
    /// Module selection failed.
    #[error("kernel modules")]
    Modules(#[from] ModulesError),
    /// The initramfs could not be laid out.
    #[error("initramfs")]
    Cpio(#[from] CpioError),
    /// The UKI could not be assembled.
    #[error("UKI")]
    Uki(#[source] UkiError),
    /// The command line holds a byte the stub would pass on wrongly.
    #[error("the kernel command line must be one line of printable ASCII")]
    BadCmdline,
}

/// The kernel's provenance in build-info.json.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelInfo {
    /// Kernel release.
    pub release: String,
    /// Debian package, when pinned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<String>,
    /// Its version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The `.deb`'s sha256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deb_sha256: Option<String>,
    /// The bzImage's sha256.
    pub vmlinuz_sha256: String,
}

/// The stub's provenance in build-info.json.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StubInfo {
    /// Debian package, when pinned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<String>,
    /// Its version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The `.deb`'s sha256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deb_sha256: Option<String>,
    /// The stub's sha256.
    pub stub_sha256: String,
}

/// The shipped modules in build-info.json.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModulesInfo {
    /// How many.
    pub count: usize,
    /// Their total size, uncompressed.
    pub raw_bytes: u64,
    /// How many are loaded on every boot.
    pub always: usize,
    /// sha256 of the module index.
    pub index_sha256: String,
    /// Hardware modules the kernel tree lacked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing_hardware: Vec<String>,
}

/// `build-info.json`: inputs by version and hash; in the output directory also the
/// outputs' hashes. A copy without outputs is `/etc/petrel/build-info.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildInfo {
    /// [`BUILD_INFO_FORMAT`].
    pub format: u32,
    /// `IMAGE_VERSION`.
    pub image_version: String,
    /// `SOURCE_DATE_EPOCH`.
    pub source_date_epoch: u32,
    /// The kernel.
    pub kernel: KernelInfo,
    /// systemd's stub.
    pub stub: StubInfo,
    /// The kernel command line.
    pub cmdline: String,
    /// The modules.
    pub modules: ModulesInfo,
    /// Programs by their path in the image → sha256.
    pub binaries: BTreeMap<String, String>,
    /// Files from `rootfs/` by path → sha256.
    pub rootfs: BTreeMap<String, String>,
    /// Output files by name → sha256 (absent inside the image). The disk half adds
    /// `petrel.img`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub outputs: BTreeMap<String, String>,
}

impl BuildInfo {
    /// Pretty JSON with a final newline; keys in a fixed order.
    pub fn to_json(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).unwrap_or_default();
        v.push(b'\n');
        v
    }

    /// Reads `build-info.json` (e.g. for the disk half to add its outputs).
    pub fn read(path: &Path) -> Result<Self, BuildError> {
        let bytes = read(path)?;
        serde_json::from_slice(&bytes).map_err(|e| BuildError::Read {
            path: path.to_owned(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        })
    }
}

/// What a build produced.
#[derive(Debug, Clone)]
pub struct BuildReport {
    /// `OUT/initramfs.cpio.gz`.
    pub initramfs: PathBuf,
    /// `OUT/petrel.efi`.
    pub uki: PathBuf,
    /// `OUT/build-info.json`.
    pub build_info_path: PathBuf,
    /// Its contents.
    pub build_info: BuildInfo,
    /// Size of the compressed initramfs.
    pub initramfs_bytes: u64,
    /// Size of the uncompressed cpio archive.
    pub cpio_bytes: u64,
    /// Size of the UKI.
    pub uki_bytes: u64,
    /// systemd-boot from the pinned package (for the ESP), when the stub was pinned.
    pub systemd_boot: Option<PathBuf>,
    /// Things worth telling (missing hardware modules, unresolved softdeps, …).
    pub warnings: Vec<String>,
}

fn read(path: &Path) -> Result<Vec<u8>, BuildError> {
    std::fs::read(path).map_err(|source| BuildError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Writes `data` to `path` through a temporary file and a rename.
pub fn write_atomically(path: &Path, data: &[u8]) -> Result<(), BuildError> {
    let werr = |source| BuildError::Write {
        path: path.to_owned(),
        source,
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, data).map_err(werr)?;
    std::fs::rename(&tmp, path).map_err(werr)
}

/// Whether `v` can be an image version.
pub fn valid_version(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 64
        && v.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'~' | b'-'))
}

/// The os-release text for `version` from a template.
pub fn os_release(template: &str, version: &str) -> String {
    template.replace("@IMAGE_VERSION@", version)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Reads an executable and checks it is a static ELF binary.
fn read_static(path: &Path) -> Result<Vec<u8>, BuildError> {
    let bytes = read(path)?;
    let elf = Elf::parse(&bytes).map_err(|source| BuildError::NotElf {
        path: path.to_owned(),
        source,
    })?;
    match elf.needs_interpreter() {
        Ok(false) => Ok(bytes),
        Ok(true) => Err(BuildError::NotStatic(path.to_owned())),
        Err(source) => Err(BuildError::NotElf {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Builds the initramfs and UKI into `opts.out_dir`.
pub fn build(opts: &BuildOptions) -> Result<BuildReport, BuildError> {
    if !valid_version(&opts.version) {
        return Err(BuildError::BadVersion(opts.version.clone()));
    }
    if !opts
        .cmdline
        .bytes()
        .all(|c| c.is_ascii_graphic() || c == b' ')
    {
        return Err(BuildError::BadCmdline);
    }
    let mut warnings = Vec::new();

    // Inputs: the kernel and its modules, the stub.
    let (vmlinuz_path, modules_path, kernel_pin): (PathBuf, PathBuf, Option<Pin>) =
        match &opts.kernel {
            Some((k, m)) => (k.clone(), m.clone(), None),
            None => {
                let (pin, k, m) = inputs::prepare_kernel(&opts.lock, &opts.inputs_dir)?;
                (k, m, Some(pin))
            }
        };
    let (stub_path, stub_pin, systemd_boot) = match &opts.stub {
        Some(s) => (s.clone(), None, None),
        None => {
            let (pin, s, b) = inputs::prepare_stub(&opts.lock, &opts.inputs_dir)?;
            (s, Some(pin), Some(b))
        }
    };
    let vmlinuz = read(&vmlinuz_path)?;
    uki::check_kernel(&vmlinuz).map_err(|source| BuildError::BadKernel {
        path: vmlinuz_path.clone(),
        source,
    })?;
    let stub = read(&stub_path).map_err(|e| match e {
        BuildError::Read { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            BuildError::MissingStub(stub_path.clone())
        }
        e => e,
    })?;
    uki::PeFile::parse(&stub).map_err(|source| BuildError::BadStub {
        path: stub_path.clone(),
        source,
    })?;

    // Modules.
    let tree = modules::ModuleTree::scan(&modules_path)?;
    if let Some(release) = uki::kernel_release(&vmlinuz) {
        if release != tree.kver {
            return Err(BuildError::KernelMismatch {
                path: vmlinuz_path.clone(),
                kernel: release.to_owned(),
                modules: tree.kver.clone(),
            });
        }
    }
    let selected = modules::select(&tree, &opts.selection)?;
    for m in &selected.missing_hardware {
        warnings.push(format!(
            "hardware module {m} is not in the kernel tree; shipped without it"
        ));
    }
    for (m, t) in &selected.unresolved_softdeps {
        warnings.push(format!(
            "module {m}: soft dependency {t} names no module; ignored"
        ));
    }
    let index = selected.index();
    let mut module_files = Vec::with_capacity(selected.modules.len());
    for m in selected.modules.values() {
        module_files.push((m.relpath.clone(), read(&modules_path.join(&m.relpath))?));
    }

    // Binaries.
    let mut binaries = BTreeMap::new();
    let init = read_static(&opts.init)?;
    binaries.insert("/init".to_owned(), sha256_hex(&init));
    let mut bins: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for path in &opts.bins {
        let name = file_name(path);
        let data = read_static(path)?;
        binaries.insert(format!("/bin/{name}"), sha256_hex(&data));
        if bins.insert(name.clone(), data).is_some() {
            return Err(BuildError::DuplicateBin(name));
        }
    }

    // rootfs/ and os-release.
    let mut rootfs = match &opts.rootfs {
        Some(dir) => initramfs::read_tree(dir).map_err(|source| BuildError::Read {
            path: dir.clone(),
            source,
        })?,
        None => Vec::new(),
    };
    let mut template = DEFAULT_OS_RELEASE.to_owned();
    if let Some(i) = rootfs.iter().position(|(p, _, _)| p == OS_RELEASE_TEMPLATE) {
        if let (_, EntryKind::File(bytes), _) = rootfs.remove(i) {
            template = String::from_utf8_lossy(&bytes).into_owned();
        }
    }
    let os_release = os_release(&template, &opts.version);
    let rootfs_hashes = rootfs
        .iter()
        .filter_map(|(p, k, _)| match k {
            EntryKind::File(d) => Some((format!("/{p}"), sha256_hex(d))),
            _ => None,
        })
        .collect();

    let mut info = BuildInfo {
        format: BUILD_INFO_FORMAT,
        image_version: opts.version.clone(),
        source_date_epoch: opts.source_date_epoch,
        kernel: KernelInfo {
            release: tree.kver.clone(),
            package: kernel_pin.as_ref().map(|p| p.package.clone()),
            version: kernel_pin.as_ref().map(|p| p.version.clone()),
            deb_sha256: kernel_pin.as_ref().map(|p| p.sha256.clone()),
            vmlinuz_sha256: sha256_hex(&vmlinuz),
        },
        stub: StubInfo {
            package: stub_pin.as_ref().map(|p| p.package.clone()),
            version: stub_pin.as_ref().map(|p| p.version.clone()),
            deb_sha256: stub_pin.as_ref().map(|p| p.sha256.clone()),
            stub_sha256: sha256_hex(&stub),
        },
        cmdline: opts.cmdline.clone(),
        modules: ModulesInfo {
            count: selected.modules.len(),
            raw_bytes: selected.total_size_bytes(),
            always: selected.always.len(),
            index_sha256: sha256_hex(index.as_bytes()),
            missing_hardware: selected.missing_hardware.clone(),
        },
        binaries,
        rootfs: rootfs_hashes,
        outputs: BTreeMap::new(),
    };

    // The initramfs.
    let archive = initramfs::archive(InitramfsParts {
        init,
        bins: bins.into_iter().collect(),
        rootfs,
        kver: tree.kver.clone(),
        modules: module_files,
        module_index: index,
        os_release: os_release.clone(),
        build_info: info.to_json(),
    })?;
    let cpio = archive.to_newc(opts.source_date_epoch)?;
    let initrd = initramfs::gzip(&cpio);

    // The UKI.
    let uki = uki::assemble(
        &stub,
        &UkiParts {
            osrel: os_release.as_bytes(),
            cmdline: opts.cmdline.as_bytes(),
            linux: &vmlinuz,
            initrd: &initrd,
        },
    )
    .map_err(BuildError::Uki)?;

    // Outputs.
    std::fs::create_dir_all(&opts.out_dir).map_err(|source| BuildError::Write {
        path: opts.out_dir.clone(),
        source,
    })?;
    let initramfs_path = opts.out_dir.join(INITRAMFS_FILE);
    let uki_path = opts.out_dir.join(UKI_FILE);
    let info_path = opts.out_dir.join(BUILD_INFO_FILE);
    write_atomically(&initramfs_path, &initrd)?;
    write_atomically(&uki_path, &uki)?;
    info.outputs
        .insert(INITRAMFS_FILE.to_owned(), sha256_hex(&initrd));
    info.outputs.insert(UKI_FILE.to_owned(), sha256_hex(&uki));
    write_atomically(&info_path, &info.to_json())?;

    Ok(BuildReport {
        initramfs: initramfs_path,
        uki: uki_path,
        build_info_path: info_path,
        build_info: info,
        initramfs_bytes: initrd.len() as u64,
        cpio_bytes: cpio.len() as u64,
        uki_bytes: uki.len() as u64,
        systemd_boot,
        warnings,
    })
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_os_release() {
        assert!(valid_version("0.1.0"));
        assert!(valid_version("2025.01~rc1-x_y"));
        for bad in ["", "1+3", "a b", "a/b", "ü"] {
            assert!(!valid_version(bad), "{bad}");
        }
        let text = os_release(DEFAULT_OS_RELEASE, "1.2");
        assert!(text.contains("\nID=petrel\n"));
        assert!(text.ends_with("IMAGE_VERSION=1.2\n"));
        assert!(!text.contains('@'));
    }

    #[test]
    fn default_bins_carry_the_supervisor_not_the_client() {
        for b in REQUIRED_BINS {
            assert!(DEFAULT_BINS.contains(b), "{b}");
        }
        assert!(DEFAULT_BINS.contains(&"petreld"));
        assert!(!DEFAULT_BINS.iter().any(|b| b.contains("ctl")));
    }
}
