//! The data partition's ext4 file system, made by e2fsprogs' `mkfs.ext4` on a plain
//! file (no root, no loop device), bit-for-bit reproducibly.
//!
//! What makes it reproducible: `E2FSPROGS_FAKE_TIME` (every timestamp), a fixed UUID
//! and `hash_seed` (otherwise random), `root_owner=0:0` (otherwise the caller's ids),
//! an explicit block size and usage type (otherwise 1 KiB blocks on a small file), our
//! own `mke2fs.conf` (otherwise the host's `/etc/mke2fs.conf` picks the features), and
//! explicit `nodiscard`, `lazy_itable_init=0`, `lazy_journal_init=0` (otherwise the
//! host kernel's features decide what is zeroed and which flags are set).
//!
//! The file system starts small; `petrel-init` grows it online on first boot
//! (`EXT4_IOC_RESIZE_FS`), which is why `resize_inode` is kept.

use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::guid::Guid;

/// The ext4 block size, in bytes.
pub const EXT4_BLOCK_BYTES: u64 = 4096;

/// The `mke2fs.conf` every build uses instead of the host's: Debian 12's defaults for
/// ext4, pinned here so that a host with another config makes the same bytes.
pub const MKE2FS_CONF: &str = "\
[defaults]
\tbase_features = sparse_super,large_file,filetype,resize_inode,dir_index,ext_attr
\tdefault_mntopts = acl,user_xattr
\tenable_periodic_fsck = 0
\tblocksize = 4096
\tinode_size = 256
\tinode_ratio = 16384

[fs_types]
\text4 = {
\t\tfeatures = has_journal,extent,huge_file,flex_bg,metadata_csum,64bit,dir_nlink,extra_isize
\t}
";

/// What to make.
#[derive(Debug, Clone)]
pub struct Ext4Spec {
    /// Size of the file system, in bytes (a multiple of [`EXT4_BLOCK_BYTES`]).
    pub size_bytes: u64,
    /// Volume label (at most 16 bytes).
    pub label: String,
    /// File system UUID.
    pub uuid: Guid,
    /// Seed of the directory hash (`-E hash_seed=`).
    pub hash_seed: Guid,
    /// Every timestamp, in seconds since 1970 (`E2FSPROGS_FAKE_TIME`).
    pub time_unix_secs: u64,
}

/// Why the ext4 file system could not be made.
#[derive(Debug, thiserror::Error)]
pub enum Ext4Error {
    /// The spec is out of range.
    #[error("ext4: {0}")]
    Spec(&'static str),
    /// No `mkfs.ext4` on this machine.
    #[error("mkfs.ext4 not found in PATH, /usr/sbin or /sbin (install Debian's e2fsprogs)")]
    NoMkfs,
    /// Writing the scratch files failed.
    #[error("ext4: cannot write {}", .path.display())]
    Scratch {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// `mkfs.ext4` could not be run.
    #[error("cannot run {}", .0.display())]
    Spawn(PathBuf, #[source] io::Error),
    /// `mkfs.ext4` failed.
    #[error("mkfs.ext4 failed ({status}): {stderr}")]
    Failed {
        /// Its exit status.
        status: std::process::ExitStatus,
        /// What it printed on stderr.
        stderr: String,
    },
}

/// The arguments of `mkfs.ext4` for `spec`, making the file system in `target`.
pub fn mkfs_args(spec: &Ext4Spec, target: &Path) -> Vec<OsString> {
    let uuid = spec.uuid.to_string().to_lowercase();
    let seed = spec.hash_seed.to_string().to_lowercase();
    let mut args: Vec<OsString> = [
        "-q",
        "-F",
        "-b",
        "4096",
        "-T",
        "default",
        "-L",
        spec.label.as_str(),
        "-U",
        uuid.as_str(),
        "-E",
    ]
    .iter()
    .map(OsString::from)
    .collect();
    args.push(
        format!("hash_seed={seed},root_owner=0:0,nodiscard,lazy_itable_init=0,lazy_journal_init=0")
            .into(),
    );
    args.push(target.as_os_str().to_owned());
    args.push(format!("{}k", spec.size_bytes / 1024).into());
    args
}

/// Finds `mkfs.ext4`: in `PATH`, then in the sbin directories a non-root `PATH` lacks.
pub fn find_mkfs() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join("mkfs.ext4"))
        .find(|p| p.is_file())
}

/// Makes the file system described by `spec` in the file `target` (created or
/// truncated), using `scratch_conf` for the pinned `mke2fs.conf`.
pub fn make(spec: &Ext4Spec, target: &Path, scratch_conf: &Path) -> Result<(), Ext4Error> {
    if spec.size_bytes == 0 || spec.size_bytes % EXT4_BLOCK_BYTES != 0 {
        return Err(Ext4Error::Spec(
            "size must be a non-zero multiple of 4096 bytes",
        ));
    }
    if spec.label.len() > 16 {
        return Err(Ext4Error::Spec("label longer than 16 bytes"));
    }
    let scratch = |path: &Path| {
        let path = path.to_owned();
        move |source| Ext4Error::Scratch { path, source }
    };
    std::fs::write(scratch_conf, MKE2FS_CONF).map_err(scratch(scratch_conf))?;
    let file = File::create(target).map_err(scratch(target))?;
    file.set_len(spec.size_bytes).map_err(scratch(target))?;
    drop(file);

    let mkfs = find_mkfs().ok_or(Ext4Error::NoMkfs)?;
    let out = Command::new(&mkfs)
        .args(mkfs_args(spec, target))
        .env("MKE2FS_CONFIG", scratch_conf)
        .env("E2FSPROGS_FAKE_TIME", spec.time_unix_secs.to_string())
        .env("SOURCE_DATE_EPOCH", spec.time_unix_secs.to_string())
        .env("LC_ALL", "C")
        .env("TZ", "UTC")
        .output()
        .map_err(|e| Ext4Error::Spawn(mkfs.clone(), e))?;
    if !out.status.success() {
        return Err(Ext4Error::Failed {
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> Ext4Spec {
        Ext4Spec {
            size_bytes: 64 << 20,
            label: "petrel-data".into(),
            uuid: Guid::derive("t", "uuid"),
            hash_seed: Guid::derive("t", "seed"),
            time_unix_secs: 1_700_000_000,
        }
    }

    #[test]
    fn args_carry_every_reproducibility_flag() {
        let args: Vec<String> = mkfs_args(&spec(), Path::new("/x/data.ext4"))
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        let joined = args.join(" ");
        assert!(joined.contains("-b 4096 -T default"), "{joined}");
        assert!(joined.contains(&format!("-U {}", spec().uuid.to_string().to_lowercase())));
        assert!(joined.contains("root_owner=0:0"));
        assert!(joined.contains("lazy_itable_init=0"));
        assert!(joined.contains(&format!(
            "hash_seed={}",
            spec().hash_seed.to_string().to_lowercase()
        )));
        assert_eq!(args[args.len() - 2], "/x/data.ext4");
        assert_eq!(args[args.len() - 1], "65536k");
    }

    #[test]
    fn refuses_bad_specs() {
        let dir = std::env::temp_dir();
        let mut s = spec();
        s.size_bytes = 1000;
        assert!(matches!(
            make(&s, &dir.join("never"), &dir.join("never.conf")),
            Err(Ext4Error::Spec(_))
        ));
        let mut s = spec();
        s.label = "x".repeat(17);
        assert!(matches!(
            make(&s, &dir.join("never"), &dir.join("never.conf")),
            Err(Ext4Error::Spec(_))
        ));
    }
}
