//! The pinned Debian inputs: the kernel package and systemd's EFI stub.
//!
//! `image/inputs.lock` names each package with its version, sha256 and the file name
//! `apt-get download` gives it. [`Lock`] parses and writes that file (pure);
//! [`fetch`] downloads a package into `build/inputs/` with `apt-get download PKG=VER`
//! (running `apt-get update` once when apt does not know the version), verifies its
//! sha256 and [`unpack`]s it with `dpkg-deb -x` — nothing is ever installed. [`pin`]
//! asks apt what it offers today and returns a new lock.

use std::fmt::Write as _;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};
use thiserror::Error;

/// The metapackage that names the current Debian kernel.
pub const KERNEL_METAPACKAGE: &str = "linux-image-amd64";
/// Prefix of the versioned kernel package (`linux-image-6.1.0-28-amd64`).
pub const KERNEL_PACKAGE_PREFIX: &str = "linux-image-";
/// The package that ships systemd's EFI stub.
pub const STUB_PACKAGE: &str = "systemd-boot-efi";
/// The stub's path inside its package.
pub const STUB_PATH: &str = "usr/lib/systemd/boot/efi/linuxx64.efi.stub";
/// systemd-boot's path inside the same package (the disk half puts it on the ESP).
pub const SYSTEMD_BOOT_PATH: &str = "usr/lib/systemd/boot/efi/systemd-bootx64.efi";
/// Default lock file, relative to the repository root.
pub const DEFAULT_LOCK: &str = "image/inputs.lock";
/// Default download directory, relative to the repository root.
pub const DEFAULT_INPUTS_DIR: &str = "build/inputs";

/// Why inputs cannot be read, fetched or verified.
#[derive(Debug, Error)]
pub enum InputError {
    /// A file cannot be read or written.
    #[error("cannot access {}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A line of the lock file is malformed.
    #[error("{}:{line}: {what}", path.display())]
    BadLock {
        /// The lock file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        what: String,
    },
    /// The lock file lacks a package.
    #[error("{} pins no {what} package", path.display())]
    NotPinned {
        /// The lock file.
        path: PathBuf,
        /// `kernel (linux-image-…)` or `systemd-boot-efi`.
        what: &'static str,
    },
    /// A tool could not be started.
    #[error("cannot run {tool} (is it installed?)")]
    Tool {
        /// The program.
        tool: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A tool ran and failed.
    #[error("{command} failed: {stderr}")]
    ToolFailed {
        /// The command line.
        command: String,
        /// Its last stderr line.
        stderr: String,
    },
    /// apt does not offer the pinned version (any more).
    #[error(
        "pinned {package}={version} is no longer in the archive; update {} with `petrel-image pin`",
        lock.display()
    )]
    Gone {
        /// The package.
        package: String,
        /// The pinned version.
        version: String,
        /// The lock file to update.
        lock: PathBuf,
    },
    /// A downloaded file does not have the pinned hash.
    #[error(
        "{} has sha256 {actual}, but {} pins {expected} (delete the file to download it again)",
        path.display(),
        lock.display()
    )]
    HashMismatch {
        /// The file.
        path: PathBuf,
        /// Its sha256.
        actual: String,
        /// The pinned sha256.
        expected: String,
        /// The lock file.
        lock: PathBuf,
    },
    /// A file expected inside an unpacked package is not there.
    #[error("{what} not found at {}", path.display())]
    Missing {
        /// What was looked for.
        what: &'static str,
        /// Where.
        path: PathBuf,
    },
    /// apt's answer could not be understood.
    #[error("unexpected output from {0}")]
    AptOutput(String),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> InputError + '_ {
    move |source| InputError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// sha256 of `bytes`, as lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// sha256 of a file, read in chunks, as lower-case hex.
pub fn sha256_file(path: &Path) -> Result<String, InputError> {
    let mut file = std::fs::File::open(path).map_err(io_err(path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// One pinned package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    /// Package name.
    pub package: String,
    /// Exact Debian version.
    pub version: String,
    /// sha256 of the `.deb`, lower-case hex.
    pub sha256: String,
    /// The `.deb`'s file name as `apt-get download` writes it.
    pub filename: String,
}

/// The contents of `image/inputs.lock`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Lock {
    /// The pinned packages, in file order.
    pub pins: Vec<Pin>,
}

fn is_word(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|c| c.is_ascii_graphic() && c != b'/')
}

impl Lock {
    /// Parses the lock file text (`path` is for messages). Lines: `#` comments, blank,
    /// or `PACKAGE VERSION SHA256 FILENAME`.
    pub fn parse(text: &str, path: &Path) -> Result<Self, InputError> {
        let mut pins = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |what: &str| InputError::BadLock {
                path: path.to_owned(),
                line: i + 1,
                what: what.to_owned(),
            };
            let fields: Vec<&str> = line.split_ascii_whitespace().collect();
            let [package, version, sha256, filename] = fields[..] else {
                return Err(bad("expected: package version sha256 filename"));
            };
            if sha256.len() != 64
                || !sha256
                    .bytes()
                    .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
            {
                return Err(bad("sha256 must be 64 lower-case hex digits"));
            }
            if ![package, version, filename].into_iter().all(is_word) || !filename.ends_with(".deb")
            {
                return Err(bad("bad package, version or file name"));
            }
            pins.push(Pin {
                package: package.to_owned(),
                version: version.to_owned(),
                sha256: sha256.to_owned(),
                filename: filename.to_owned(),
            });
        }
        Ok(Lock { pins })
    }

    /// Reads and parses a lock file.
    pub fn read(path: &Path) -> Result<Self, InputError> {
        let text = std::fs::read_to_string(path).map_err(io_err(path))?;
        Self::parse(&text, path)
    }

    /// The lock file text.
    pub fn to_text(&self) -> String {
        let mut s = String::from(
            "# Inputs of petrel-image, pinned: package version sha256 filename.\n\
             # Fetched with `apt-get download PACKAGE=VERSION` into build/inputs/ and verified.\n\
             # Rewrite from what apt offers now with `petrel-image pin`.\n",
        );
        for p in &self.pins {
            let _ = writeln!(s, "{} {} {} {}", p.package, p.version, p.sha256, p.filename);
        }
        s
    }

    /// The versioned kernel package (`linux-image-…`, not the metapackage).
    pub fn kernel(&self, path: &Path) -> Result<&Pin, InputError> {
        self.pins
            .iter()
            .find(|p| {
                p.package.starts_with(KERNEL_PACKAGE_PREFIX) && p.package != KERNEL_METAPACKAGE
            })
            .ok_or_else(|| InputError::NotPinned {
                path: path.to_owned(),
                what: "kernel (linux-image-…)",
            })
    }

    /// The `systemd-boot-efi` package.
    pub fn stub(&self, path: &Path) -> Result<&Pin, InputError> {
        self.pins
            .iter()
            .find(|p| p.package == STUB_PACKAGE)
            .ok_or_else(|| InputError::NotPinned {
                path: path.to_owned(),
                what: "systemd-boot-efi",
            })
    }
}

/// The kernel release a kernel package ships (`linux-image-6.1.0-28-amd64` →
/// `6.1.0-28-amd64`).
pub fn kernel_release(package: &str) -> Option<&str> {
    package
        .strip_prefix(KERNEL_PACKAGE_PREFIX)
        .filter(|r| !r.is_empty() && *r != "amd64")
}

/// The file name `apt-get download` gives a package (`:` of an epoch as `%3a`).
pub fn deb_filename(package: &str, version: &str, arch: &str) -> String {
    format!("{package}_{}_{arch}.deb", version.replace(':', "%3a"))
}

/// Fields of the first stanza of `apt-cache show` output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AptStanza {
    /// `Package:`.
    pub package: String,
    /// `Version:`.
    pub version: String,
    /// `Architecture:`.
    pub architecture: String,
    /// `SHA256:`.
    pub sha256: String,
    /// `Depends:`, empty when absent.
    pub depends: String,
}

/// Parses the first stanza of `apt-cache show` output (pure).
pub fn parse_apt_show(text: &str) -> Option<AptStanza> {
    let stanza = text.split("\n\n").next()?;
    let field = |name: &str| {
        stanza
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .map(|v| v.trim().to_owned())
    };
    Some(AptStanza {
        package: field("Package")?,
        version: field("Version")?,
        architecture: field("Architecture")?,
        sha256: field("SHA256")?,
        depends: field("Depends").unwrap_or_default(),
    })
}

/// Runs a command, returning its stdout, or its last stderr line as the error.
fn run(tool: &'static str, args: &[&str], cwd: Option<&Path>) -> Result<String, InputError> {
    let mut cmd = Command::new(tool);
    cmd.args(args)
        .env("LC_ALL", "C")
        .env("DEBIAN_FRONTEND", "noninteractive");
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    let out = cmd
        .output()
        .map_err(|source| InputError::Tool { tool, source })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr
            .lines()
            .rev()
            .find(|l| l.starts_with("E:"))
            .or_else(|| stderr.lines().rev().find(|l| !l.trim().is_empty()))
            .unwrap_or("no message")
            .to_owned();
        return Err(InputError::ToolFailed {
            command: format!("{tool} {}", args.join(" ")),
            stderr: last,
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The candidate `apt-cache show` stanza of `package=version` (or of the candidate when
/// `version` is `None`); `None` when apt does not know it.
fn apt_show(package: &str, version: Option<&str>) -> Result<Option<AptStanza>, InputError> {
    let spec = match version {
        Some(v) => format!("{package}={v}"),
        None => package.to_owned(),
    };
    match run("apt-cache", &["show", "--no-all-versions", &spec], None) {
        Ok(text) => Ok(parse_apt_show(&text)),
        Err(InputError::ToolFailed { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Makes sure the package `pin` (from `lock_path`) is in `dir` with its pinned sha256, downloading it
/// with `apt-get download` when absent; returns its path.
pub fn fetch(pin: &Pin, dir: &Path, lock_path: &Path) -> Result<PathBuf, InputError> {
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let path = dir.join(&pin.filename);
    if !path.exists() {
        if apt_show(&pin.package, Some(&pin.version))?.is_none() {
            run("apt-get", &["update", "-qq"], None)?;
            if apt_show(&pin.package, Some(&pin.version))?.is_none() {
                return Err(InputError::Gone {
                    package: pin.package.clone(),
                    version: pin.version.clone(),
                    lock: lock_path.to_owned(),
                });
            }
        }
        let spec = format!("{}={}", pin.package, pin.version);
        run("apt-get", &["download", "-qq", &spec], Some(dir))?;
        if !path.exists() {
            return Err(InputError::Missing {
                what: "the downloaded package",
                path,
            });
        }
    }
    let actual = sha256_file(&path)?;
    if actual != pin.sha256 {
        return Err(InputError::HashMismatch {
            path,
            actual,
            expected: pin.sha256.clone(),
            lock: lock_path.to_owned(),
        });
    }
    Ok(path)
}

/// Unpacks `deb` with `dpkg-deb -x` into `dest` (once: an existing `dest` is reused; a
/// half-done unpack is left under a temporary name and redone).
pub fn unpack(deb: &Path, dest: &Path) -> Result<(), InputError> {
    if dest.is_dir() {
        return Ok(());
    }
    let tmp = dest.with_extension("partial");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io_err(&tmp))?;
    }
    std::fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;
    let (Some(deb_s), Some(tmp_s)) = (deb.to_str(), tmp.to_str()) else {
        return Err(InputError::Missing {
            what: "a UTF-8 path",
            path: deb.to_owned(),
        });
    };
    run("dpkg-deb", &["-x", deb_s, tmp_s], None)?;
    std::fs::rename(&tmp, dest).map_err(io_err(dest))
}

/// The pinned kernel and stub, downloaded, verified and unpacked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinnedInputs {
    /// The kernel package's pin.
    pub kernel_pin: Pin,
    /// The stub package's pin.
    pub stub_pin: Pin,
    /// `boot/vmlinuz-KVER` in the unpacked kernel package.
    pub vmlinuz: PathBuf,
    /// `lib/modules/KVER` in the unpacked kernel package.
    pub modules: PathBuf,
    /// `linuxx64.efi.stub` in the unpacked systemd-boot-efi package.
    pub stub: PathBuf,
    /// `systemd-bootx64.efi` in the same package.
    pub systemd_boot: PathBuf,
}

/// Fetches, verifies and unpacks the kernel package pinned in `lock_path`.
pub fn prepare_kernel(lock_path: &Path, dir: &Path) -> Result<(Pin, PathBuf, PathBuf), InputError> {
    let lock = Lock::read(lock_path)?;
    let pin = lock.kernel(lock_path)?.clone();
    let kver = kernel_release(&pin.package).ok_or_else(|| InputError::BadLock {
        path: lock_path.to_owned(),
        line: 0,
        what: format!("{} names no kernel release", pin.package),
    })?;
    let deb = fetch(&pin, dir, lock_path)?;
    let root = dir.join(format!(
        "{}_{}",
        pin.package,
        pin.version.replace(':', "%3a")
    ));
    unpack(&deb, &root)?;
    let vmlinuz = root.join(format!("boot/vmlinuz-{kver}"));
    let modules = root.join(format!("lib/modules/{kver}"));
    if !vmlinuz.is_file() {
        return Err(InputError::Missing {
            what: "the kernel image",
            path: vmlinuz,
        });
    }
    if !modules.is_dir() {
        return Err(InputError::Missing {
            what: "the kernel modules",
            path: modules,
        });
    }
    Ok((pin, vmlinuz, modules))
}

/// Fetches, verifies and unpacks the systemd-boot-efi package pinned in `lock_path`;
/// returns its pin, the stub's path and systemd-boot's path.
pub fn prepare_stub(lock_path: &Path, dir: &Path) -> Result<(Pin, PathBuf, PathBuf), InputError> {
    let lock = Lock::read(lock_path)?;
    let pin = lock.stub(lock_path)?.clone();
    let deb = fetch(&pin, dir, lock_path)?;
    let root = dir.join(format!(
        "{}_{}",
        pin.package,
        pin.version.replace(':', "%3a")
    ));
    unpack(&deb, &root)?;
    let stub = root.join(STUB_PATH);
    if !stub.is_file() {
        return Err(InputError::Missing {
            what: "systemd's EFI stub (linuxx64.efi.stub)",
            path: stub,
        });
    }
    let boot = root.join(SYSTEMD_BOOT_PATH);
    Ok((pin, stub, boot))
}

/// Fetches, verifies and unpacks both pinned packages.
pub fn prepare(lock_path: &Path, dir: &Path) -> Result<PinnedInputs, InputError> {
    let (kernel_pin, vmlinuz, modules) = prepare_kernel(lock_path, dir)?;
    let (stub_pin, stub, systemd_boot) = prepare_stub(lock_path, dir)?;
    Ok(PinnedInputs {
        kernel_pin,
        stub_pin,
        vmlinuz,
        modules,
        stub,
        systemd_boot,
    })
}

/// Asks apt what it offers now: the versioned package `linux-image-amd64` depends on,
/// and `systemd-boot-efi`; downloads both into `dir` to hash them. Runs
/// `apt-get update` first.
pub fn pin(dir: &Path, lock_path: &Path) -> Result<Lock, InputError> {
    run("apt-get", &["update", "-qq"], None)?;
    let meta = apt_show(KERNEL_METAPACKAGE, None)?
        .ok_or_else(|| InputError::AptOutput(format!("apt-cache show {KERNEL_METAPACKAGE}")))?;
    let kernel = meta
        .depends
        .split(',')
        .map(|d| d.trim().split(' ').next().unwrap_or(""))
        .find(|d| kernel_release(d).is_some())
        .ok_or_else(|| {
            InputError::AptOutput(format!("Depends of {KERNEL_METAPACKAGE}: {}", meta.depends))
        })?
        .to_owned();
    let mut pins = Vec::new();
    for package in [kernel.as_str(), STUB_PACKAGE] {
        let s = apt_show(package, None)?
            .ok_or_else(|| InputError::AptOutput(format!("apt-cache show {package}")))?;
        let filename = deb_filename(&s.package, &s.version, &s.architecture);
        let pin = Pin {
            package: s.package,
            version: s.version,
            sha256: s.sha256,
            filename,
        };
        // Download now: proves the pin works and fills the cache.
        fetch(&pin, dir, lock_path)?;
        pins.push(pin);
    }
    Ok(Lock { pins })
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)]
mod tests {
    use super::*;

    const SHA: &str = "a86e2049672f52354c4536a089203b6c82639420424d31c91cf31a181fd4d8f1";

    #[test]
    fn lock_round_trip() {
        let text = format!(
            "# comment\n\nlinux-image-6.1.0-56-amd64 6.1.192-2 {SHA} linux-image-6.1.0-56-amd64_6.1.192-2_amd64.deb\n\
             systemd-boot-efi 252.39-1~deb12u2 {SHA} systemd-boot-efi_252.39-1~deb12u2_amd64.deb\n"
        );
        let p = Path::new("l");
        let lock = Lock::parse(&text, p).unwrap();
        assert_eq!(lock.pins.len(), 2);
        assert_eq!(lock.kernel(p).unwrap().version, "6.1.192-2");
        assert_eq!(
            lock.stub(p).unwrap().filename,
            "systemd-boot-efi_252.39-1~deb12u2_amd64.deb"
        );
        assert_eq!(Lock::parse(&lock.to_text(), p).unwrap(), lock);
        assert_eq!(
            kernel_release(&lock.kernel(p).unwrap().package),
            Some("6.1.0-56-amd64")
        );
    }

    #[test]
    fn lock_errors_name_the_line() {
        let p = Path::new("image/inputs.lock");
        let e = Lock::parse("# x\nfoo 1 abc foo.deb\n", p).unwrap_err();
        assert_eq!(
            e.to_string(),
            "image/inputs.lock:2: sha256 must be 64 lower-case hex digits"
        );
        let e = Lock::parse(&format!("foo 1 {SHA} ../foo.deb\n"), p).unwrap_err();
        assert!(e.to_string().contains(":1: bad package"), "{e}");
        let e = Lock::parse("foo 1\n", p).unwrap_err();
        assert!(
            e.to_string()
                .contains("expected: package version sha256 filename")
        );
        let lock = Lock::parse("", p).unwrap();
        assert_eq!(
            lock.kernel(p).unwrap_err().to_string(),
            "image/inputs.lock pins no kernel (linux-image-…) package"
        );
    }

    #[test]
    fn parses_apt_cache_show() {
        let text = "Package: linux-image-amd64\nSource: linux-signed-amd64 (6.1.192+2)\nVersion: 6.1.192-2\n\
                    Architecture: amd64\nDepends: linux-image-6.1.0-56-amd64 (= 6.1.192-2)\nSHA256: abc\n\n\
                    Package: other\n";
        let s = parse_apt_show(text).unwrap();
        assert_eq!(s.package, "linux-image-amd64");
        assert_eq!(s.version, "6.1.192-2");
        assert_eq!(s.depends, "linux-image-6.1.0-56-amd64 (= 6.1.192-2)");
        assert_eq!(deb_filename("a", "1:2.0", "amd64"), "a_1%3a2.0_amd64.deb");
        assert_eq!(parse_apt_show("Package: x\n"), None);
    }

    #[test]
    fn the_gone_message_tells_what_to_do() {
        let e = InputError::Gone {
            package: "linux-image-6.1.0-56-amd64".into(),
            version: "6.1.192-2".into(),
            lock: "image/inputs.lock".into(),
        };
        assert_eq!(
            e.to_string(),
            "pinned linux-image-6.1.0-56-amd64=6.1.192-2 is no longer in the archive; update image/inputs.lock with `petrel-image pin`"
        );
    }

    #[test]
    fn hashes_files() {
        let dir = std::env::temp_dir().join(format!("petrel-image-hash-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("x");
        std::fs::write(&f, b"abc").unwrap();
        assert_eq!(
            sha256_file(&f).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(sha256_hex(b"abc"), sha256_file(&f).unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
