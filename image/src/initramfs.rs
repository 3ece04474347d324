//! The initramfs: what goes where (`docs/formats.md` § "Initramfs layout") and its
//! deterministic compression.
//!
//! [`archive`] is pure: it lays the parts out as a [`cpio::Archive`]; [`read_tree`]
//! reads a `rootfs/` folder with normalised permissions (0755 for directories and for
//! files with any execute bit, else 0644) so that the checkout's umask and file modes
//! do not leak into the image; [`gzip`] compresses with a fixed level and a header
//! without time or name.

use std::io::Write as _;
use std::path::Path;

use flate2::{Compression, GzBuilder};

use crate::cpio::{Archive, CpioError, EntryKind};

/// Where the module index and modules live: `lib/modules/KVER`.
pub fn modules_dir(kver: &str) -> String {
    format!("lib/modules/{kver}")
}

/// Empty directories the image provides as mount points (DESIGN §2a) and for
/// `petrel-init`'s early work.
pub const MOUNT_POINTS: &[(&str, u32)] = &[
    ("boot/efi", 0o755),
    ("proc", 0o555),
    ("run", 0o755),
    ("sys", 0o555),
    ("tmp", 0o1777),
    ("var/lib/petrel", 0o755),
];

/// Everything the initramfs holds.
#[derive(Debug, Clone, Default)]
pub struct InitramfsParts {
    /// `petrel-init`, installed as `/init`.
    pub init: Vec<u8>,
    /// Programs for `/bin`: (file name, contents).
    pub bins: Vec<(String, Vec<u8>)>,
    /// Files from `rootfs/`: (relative path, kind, permissions).
    pub rootfs: Vec<(String, EntryKind, u32)>,
    /// Kernel release.
    pub kver: String,
    /// Modules: (path relative to `lib/modules/KVER`, contents).
    pub modules: Vec<(String, Vec<u8>)>,
    /// The module index text.
    pub module_index: String,
    /// `/etc/os-release`.
    pub os_release: String,
    /// `/etc/petrel/build-info.json`.
    pub build_info: Vec<u8>,
}

/// Lays the parts out (pure). Fails on a path given twice (a `rootfs/` file that
/// shadows a generated one) or an invalid path.
pub fn archive(parts: InitramfsParts) -> Result<Archive, CpioError> {
    let mut a = Archive::new();
    a.add_file("init", 0o755, parts.init)?;
    for (name, data) in parts.bins {
        a.add_file(&format!("bin/{name}"), 0o755, data)?;
    }
    a.add(
        "dev/console",
        0o600,
        EntryKind::CharDev { major: 5, minor: 1 },
    )?;
    for (path, perm) in MOUNT_POINTS {
        a.add_dir(path, *perm)?;
    }
    a.add_file("etc/os-release", 0o644, parts.os_release.into_bytes())?;
    a.add_file("etc/petrel/build-info.json", 0o644, parts.build_info)?;
    let dir = modules_dir(&parts.kver);
    for (rel, data) in parts.modules {
        a.add_file(&format!("{dir}/{rel}"), 0o644, data)?;
    }
    a.add_file(
        &format!("{dir}/{}", crate::modules::INDEX_FILE_NAME),
        0o644,
        parts.module_index.into_bytes(),
    )?;
    for (path, kind, perm) in parts.rootfs {
        if kind == EntryKind::Dir && a.contains(&path) {
            continue; // a rootfs/ directory that a generated file needs too
        }
        a.add(&path, perm, kind)?;
    }
    Ok(a)
}

/// gzip at the best level, with `MTIME` 0, no file name and OS "unknown" (255): the
/// output depends on the input bytes alone (and on flate2's pure-Rust backend, pinned
/// by Cargo.lock).
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(Vec::with_capacity(data.len() / 3), Compression::best());
    // Writing into a Vec cannot fail.
    let _ = enc.write_all(data);
    enc.finish().unwrap_or_default()
}

/// Reads `dir` recursively into (relative path, kind, permissions), sorted, with
/// normalised permissions. Only directories, regular files and symlinks are accepted.
pub fn read_tree(dir: &Path) -> std::io::Result<Vec<(String, EntryKind, u32)>> {
    let mut out = Vec::new();
    walk(dir, "", &mut out)?;
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

fn walk(root: &Path, rel: &str, out: &mut Vec<(String, EntryKind, u32)>) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let here = if rel.is_empty() {
        root.to_owned()
    } else {
        root.join(rel)
    };
    for entry in std::fs::read_dir(&here)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: file name is not UTF-8", entry.path().display()),
            ));
        };
        let path = if rel.is_empty() {
            name.to_owned()
        } else {
            format!("{rel}/{name}")
        };
        let meta = std::fs::symlink_metadata(entry.path())?;
        let kind = meta.file_type();
        if kind.is_dir() {
            out.push((path.clone(), EntryKind::Dir, 0o755));
            walk(root, &path, out)?;
        } else if kind.is_symlink() {
            let target = std::fs::read_link(entry.path())?;
            let target = target.to_str().ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "symlink target is not UTF-8",
                )
            })?;
            out.push((path, EntryKind::Symlink(target.to_owned()), 0o777));
        } else if kind.is_file() {
            let perm = if meta.permissions().mode() & 0o111 != 0 {
                0o755
            } else {
                0o644
            };
            out.push((path, EntryKind::File(std::fs::read(entry.path())?), perm));
        } else {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "{}: only files, directories and symlinks",
                    entry.path().display()
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)]
mod tests {
    use super::*;

    #[test]
    fn gzip_is_deterministic_and_headerless() {
        let data = b"petrel petrel petrel".repeat(100);
        let a = gzip(&data);
        assert_eq!(a, gzip(&data));
        // ID1 ID2 CM=8 FLG=0 (no name) MTIME=0 XFL OS=255
        assert_eq!(&a[..8], &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0]);
        assert_eq!(a[9], 255);
        let mut back = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&a[..]), &mut back).unwrap();
        assert_eq!(back, data);
    }

    #[test]
    fn lays_out_the_documented_paths() {
        let parts = InitramfsParts {
            init: b"init".to_vec(),
            bins: vec![("petrel-hvt".into(), b"hvt".to_vec())],
            rootfs: vec![
                ("etc".into(), EntryKind::Dir, 0o755),
                ("etc/hosts".into(), EntryKind::File(b"x".to_vec()), 0o644),
            ],
            kver: "6.1.0-1-amd64".into(),
            modules: vec![("kernel/fs/a.ko".into(), b"ko".to_vec())],
            module_index: "petrel-modules 1\n".into(),
            os_release: "ID=petrel\n".into(),
            build_info: b"{}\n".to_vec(),
        };
        let a = archive(parts.clone()).unwrap();
        let paths: Vec<&str> = a.entries().map(|(p, _)| p).collect();
        assert_eq!(
            paths,
            [
                "bin/petrel-hvt",
                "boot/efi",
                "dev/console",
                "etc",
                "etc/hosts",
                "etc/os-release",
                "etc/petrel/build-info.json",
                "init",
                "lib/modules/6.1.0-1-amd64/kernel/fs/a.ko",
                "lib/modules/6.1.0-1-amd64/petrel.modules",
                "proc",
                "run",
                "sys",
                "tmp",
                "var/lib/petrel",
            ]
        );
        let mut shadow = parts;
        shadow
            .rootfs
            .push(("init".into(), EntryKind::File(vec![]), 0o644));
        assert_eq!(
            archive(shadow).unwrap_err(),
            CpioError::Duplicate("init".into())
        );
    }
}
