//! Helpers shared by the disk image and provisioning tests: small deterministic
//! inputs, scratch directories, and the independent witnesses (util-linux, gdisk,
//! dosfstools, mtools, e2fsprogs), which must be installed (`make deps`).
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use petrel_image::disk::{self, DiskInputs, DiskReport};

/// The version the tests build.
pub const VERSION: &str = "0.1.0-test";
/// 2023-11-14 22:13:20 UTC.
pub const EPOCH: u64 = 1_700_000_000;

pub use petrel_test_support::Scratch;

/// `len` bytes starting with `MZ`, the rest from a fixed-seed generator.
pub fn fake_efi(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed;
    let mut out: Vec<u8> = (0..len)
        .map(|_| {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (x >> 56) as u8
        })
        .collect();
    out[..2].copy_from_slice(b"MZ");
    out
}

/// Writes the fake UKI and bootloader into `dir` and returns the build inputs.
pub fn inputs(dir: &Scratch) -> DiskInputs {
    let uki = dir.path("uki.efi");
    let boot = dir.path("systemd-bootx64.efi");
    std::fs::write(&uki, fake_efi(700_000, 1)).unwrap();
    std::fs::write(&boot, fake_efi(140_000, 2)).unwrap();
    DiskInputs {
        version: VERSION.into(),
        bootloader: boot,
        uki,
        source_date_epoch: EPOCH,
    }
}

/// Builds an image into `dir/petrel.img`.
pub fn build(dir: &Scratch) -> DiskReport {
    disk::build(&inputs(dir), &dir.path("petrel.img")).unwrap()
}

/// Finds a witness tool or fails with what to install.
pub fn tool(name: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("this test needs `{name}` (Debian package {package}; `make deps` installs it)")
        })
}

/// Runs a witness; returns its output (whatever the status).
pub fn witness(name: &str, package: &str, args: &[&str]) -> Output {
    Command::new(tool(name, package))
        .args(args)
        .env("MTOOLS_SKIP_CHECK", "1")
        .env("LC_ALL", "C")
        .env("TZ", "UTC")
        .output()
        .unwrap()
}

/// Runs a witness that must succeed; returns its stdout.
pub fn witness_ok(name: &str, package: &str, args: &[&str]) -> String {
    let out = witness(name, package, args);
    assert!(
        out.status.success(),
        "{name} {args:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Copies `range` of `image` into a file of its own (fsck.vfat and e2fsck take no
/// offset).
pub fn extract(image: &Path, range: std::ops::Range<u64>, to: &Path) {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(image).unwrap();
    f.seek(SeekFrom::Start(range.start)).unwrap();
    let mut buf = vec![0u8; usize::try_from(range.end - range.start).unwrap()];
    f.read_exact(&mut buf).unwrap();
    std::fs::write(to, buf).unwrap();
}

/// `mtools`' name for the ESP inside `image`: `IMAGE@@OFFSET`.
pub fn mtools_esp(image: &Path) -> String {
    format!(
        "{}@@{}",
        image.display(),
        disk::Layout::standard().esp_bytes().start
    )
}

/// Checks the ESP of `image` with `fsck.vfat -n`: exit 0 and nothing reported
/// beyond its banner and summary.
pub fn fsck_esp(image: &Path, scratch: &Scratch) -> String {
    let esp = scratch.path("esp.fat");
    extract(image, disk::Layout::standard().esp_bytes(), &esp);
    let out = witness("fsck.vfat", "dosfstools", &["-n", esp.to_str().unwrap()]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_file(&esp).unwrap();
    assert!(out.status.success(), "fsck.vfat: {text}");
    let complaints: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with("fsck.fat ") && !l.contains(" files, "))
        .collect();
    assert!(complaints.is_empty(), "fsck.vfat complained:\n{text}");
    text
}

/// The guests built by `make build` (`PETREL_GUESTS`, default `target/guests`).
pub fn guest(name: &str) -> Vec<u8> {
    let dir = std::env::var_os("PETREL_GUESTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/guests"));
    let path = dir.join(format!("{name}.hvt"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run `make guests` first, or set PETREL_GUESTS)",
            path.display()
        )
    })
}

/// The SHA-256 of a byte range of a file.
pub fn sha256_range(path: &Path, range: std::ops::Range<u64>) -> String {
    use sha2::{Digest, Sha256};
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path).unwrap();
    f.seek(SeekFrom::Start(range.start)).unwrap();
    let mut h = Sha256::new();
    let mut left = range.end - range.start;
    let mut buf = vec![0u8; 1 << 20];
    while left > 0 {
        let n = usize::try_from(left.min(buf.len() as u64)).unwrap();
        f.read_exact(&mut buf[..n]).unwrap();
        h.update(&buf[..n]);
        left -= n as u64;
    }
    disk::hex(&h.finalize())
}
