//! A reproducible writer of "newc" cpio archives (the format the kernel unpacks into the
//! initramfs: `Documentation/driver-api/early-userspace/buffer-format.rst`).
//!
//! Pure: entries in, bytes out. The archive is a function of the entries alone: paths
//! sorted byte-wise (so every directory comes before what it holds), every parent
//! directory present (added with mode 0755 when not given), owner and group 0, one
//! modification time for all, inode numbers 1, 2, … in output order, `nlink` 2 + the
//! number of subdirectories for a directory and 1 for anything else, then the
//! `TRAILER!!!` entry. Paths are relative (`bin/sh`, no leading `/`), as the kernel and
//! `cpio -i` expect.

use std::collections::BTreeMap;

use thiserror::Error;

/// Magic of a newc header (no checksum).
pub const NEWC_MAGIC: &[u8; 6] = b"070701";
/// Size of a newc header in bytes.
pub const NEWC_HEADER_SIZE: usize = 110;
/// Name of the entry that ends an archive.
pub const TRAILER: &str = "TRAILER!!!";

/// File type bits of `st_mode`.
pub const S_IFDIR: u32 = 0o040_000;
/// Regular file.
pub const S_IFREG: u32 = 0o100_000;
/// Symbolic link.
pub const S_IFLNK: u32 = 0o120_000;
/// Character device.
pub const S_IFCHR: u32 = 0o020_000;

/// What an entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// A directory.
    Dir,
    /// A regular file with these contents.
    File(Vec<u8>),
    /// A symbolic link to this target.
    Symlink(String),
    /// A character device node.
    CharDev {
        /// Device major number.
        major: u32,
        /// Device minor number.
        minor: u32,
    },
}

/// One archive member: permissions (`0o7777` bits) and kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Permission bits, `0o7777` at most.
    pub perm: u32,
    /// What it is.
    pub kind: EntryKind,
}

/// Why an archive cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CpioError {
    /// Empty, absolute after normalisation, with `.`/`..`/empty components or a NUL.
    #[error("bad archive path {0:?}")]
    BadPath(String),
    /// The same path added twice.
    #[error("{0} added twice")]
    Duplicate(String),
    /// A path lies below something that is not a directory.
    #[error("{0} lies below a non-directory")]
    NotADirectory(String),
    /// A value does not fit the header's 32-bit field (file over 4 GiB, …).
    #[error("{0} does not fit a newc header")]
    TooLarge(String),
}

/// An archive under construction: a sorted map from path to entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Archive {
    entries: BTreeMap<String, Entry>,
}

fn check_path(path: &str) -> Result<String, CpioError> {
    let p = path.trim_start_matches('/');
    let ok = !p.is_empty()
        && !p.contains('\0')
        && p.split('/').all(|c| !c.is_empty() && c != "." && c != "..");
    if ok {
        Ok(p.to_owned())
    } else {
        Err(CpioError::BadPath(path.to_owned()))
    }
}

impl Archive {
    /// An empty archive.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an entry at `path` (a leading `/` is dropped).
    pub fn add(&mut self, path: &str, perm: u32, kind: EntryKind) -> Result<(), CpioError> {
        let path = check_path(path)?;
        if self.entries.contains_key(&path) {
            return Err(CpioError::Duplicate(path));
        }
        self.entries.insert(
            path,
            Entry {
                perm: perm & 0o7777,
                kind,
            },
        );
        Ok(())
    }

    /// Adds a directory.
    pub fn add_dir(&mut self, path: &str, perm: u32) -> Result<(), CpioError> {
        self.add(path, perm, EntryKind::Dir)
    }

    /// Adds a regular file.
    pub fn add_file(&mut self, path: &str, perm: u32, data: Vec<u8>) -> Result<(), CpioError> {
        self.add(path, perm, EntryKind::File(data))
    }

    /// Whether `path` has been added (not counting implied parents).
    pub fn contains(&self, path: &str) -> bool {
        self.entries.contains_key(path.trim_start_matches('/'))
    }

    /// The entries added so far, sorted by path.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &Entry)> {
        self.entries.iter().map(|(p, e)| (p.as_str(), e))
    }

    /// The newc archive, every entry stamped with `mtime` (seconds since the epoch).
    pub fn to_newc(&self, mtime: u32) -> Result<Vec<u8>, CpioError> {
        // Complete the tree: every parent directory present.
        let mut all: BTreeMap<&str, Entry> = BTreeMap::new();
        let implied = Entry {
            perm: 0o755,
            kind: EntryKind::Dir,
        };
        for (path, entry) in &self.entries {
            let mut end = 0;
            while let Some(slash) = path[end..].find('/') {
                end += slash;
                all.entry(&path[..end]).or_insert_with(|| implied.clone());
                end += 1;
            }
            all.insert(path.as_str(), entry.clone());
        }
        // Count subdirectories and check every parent is a directory.
        let mut subdirs: BTreeMap<&str, u32> = BTreeMap::new();
        for (path, entry) in &all {
            if let Some((parent, _)) = path.rsplit_once('/') {
                if all.get(parent).map(|e| &e.kind) != Some(&EntryKind::Dir) {
                    return Err(CpioError::NotADirectory((*path).to_owned()));
                }
                if entry.kind == EntryKind::Dir {
                    *subdirs.entry(parent).or_default() += 1;
                }
            }
        }
        let mut out = Vec::new();
        for (ino, (path, entry)) in (1u32..).zip(&all) {
            let (ftype, data, nlink, rdev) = match &entry.kind {
                EntryKind::Dir => (
                    S_IFDIR,
                    &[][..],
                    2 + subdirs.get(path).copied().unwrap_or(0),
                    (0, 0),
                ),
                EntryKind::File(d) => (S_IFREG, &d[..], 1, (0, 0)),
                EntryKind::Symlink(t) => (S_IFLNK, t.as_bytes(), 1, (0, 0)),
                EntryKind::CharDev { major, minor } => (S_IFCHR, &[][..], 1, (*major, *minor)),
            };
            let header = Header {
                ino,
                mode: ftype | entry.perm,
                nlink,
                mtime,
                filesize: u32::try_from(data.len())
                    .map_err(|_| CpioError::TooLarge((*path).to_owned()))?,
                rdevmajor: rdev.0,
                rdevminor: rdev.1,
            };
            write_entry(&mut out, &header, path, data)?;
        }
        let trailer = Header {
            ino: 0,
            mode: 0,
            nlink: 1,
            mtime: 0,
            filesize: 0,
            rdevmajor: 0,
            rdevminor: 0,
        };
        write_entry(&mut out, &trailer, TRAILER, &[])?;
        Ok(out)
    }
}

struct Header {
    ino: u32,
    mode: u32,
    nlink: u32,
    mtime: u32,
    filesize: u32,
    rdevmajor: u32,
    rdevminor: u32,
}

fn pad4(out: &mut Vec<u8>) {
    while out.len() % 4 != 0 {
        out.push(0);
    }
}

fn write_entry(out: &mut Vec<u8>, h: &Header, name: &str, data: &[u8]) -> Result<(), CpioError> {
    let namesize =
        u32::try_from(name.len() + 1).map_err(|_| CpioError::TooLarge(name.to_owned()))?;
    out.extend_from_slice(NEWC_MAGIC);
    // ino mode uid gid nlink mtime filesize devmajor devminor rdevmajor rdevminor namesize check
    let fields = [
        h.ino,
        h.mode,
        0,
        0,
        h.nlink,
        h.mtime,
        h.filesize,
        0,
        0,
        h.rdevmajor,
        h.rdevminor,
        namesize,
        0,
    ];
    for f in fields {
        out.extend_from_slice(format!("{f:08X}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad4(out);
    out.extend_from_slice(data);
    pad4(out);
    Ok(())
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)]
mod tests {
    use super::*;

    #[test]
    fn tiny_archive_byte_for_byte() {
        let mut a = Archive::new();
        a.add(
            "dev/console",
            0o600,
            EntryKind::CharDev { major: 5, minor: 1 },
        )
        .unwrap();
        a.add_file("/init", 0o755, b"hi\n".to_vec()).unwrap();
        let got = a.to_newc(0x5f5e_1000).unwrap();
        // magic, then ino mode uid gid nlink mtime filesize devmajor devminor rdevmajor
        // rdevminor namesize check as 8 hex digits each, the name with its NUL padded to
        // 4 bytes (counting from the header's start), the data padded to 4.
        #[rustfmt::skip]
        let want = concat!(
            // dev: implied parent directory, 0755, nlink 2, name 4 bytes (114 -> 116).
            "070701", "00000001", "000041ED", "00000000", "00000000", "00000002", "5F5E1000",
            "00000000", "00000000", "00000000", "00000000", "00000000", "00000004", "00000000",
            "dev\0", "\0\0",
            // dev/console: char 5,1, 0600, name 12 bytes (122 -> 124).
            "070701", "00000002", "00002180", "00000000", "00000000", "00000001", "5F5E1000",
            "00000000", "00000000", "00000000", "00000005", "00000001", "0000000C", "00000000",
            "dev/console\0", "\0\0",
            // init: file 0755, 3 bytes, name 5 bytes (115 -> 116), data 3 -> 4.
            "070701", "00000003", "000081ED", "00000000", "00000000", "00000001", "5F5E1000",
            "00000003", "00000000", "00000000", "00000000", "00000000", "00000005", "00000000",
            "init\0", "\0", "hi\n", "\0",
            // The trailer: all zero but nlink 1 and the name (11 bytes: 121 -> 124).
            "070701", "00000000", "00000000", "00000000", "00000000", "00000001", "00000000",
            "00000000", "00000000", "00000000", "00000000", "00000000", "0000000B", "00000000",
            "TRAILER!!!\0", "\0\0\0",
        )
        .as_bytes();
        assert_eq!(String::from_utf8_lossy(&got), String::from_utf8_lossy(want));
        assert_eq!(got.len() % 4, 0);
    }

    #[test]
    fn parents_links_and_order() {
        let mut a = Archive::new();
        a.add_file("lib/modules/k/a.ko", 0o644, vec![1]).unwrap();
        a.add("lib/x", 0o777, EntryKind::Symlink("modules".into()))
            .unwrap();
        a.add_dir("lib/modules/k/sub", 0o700).unwrap();
        let bytes = a.to_newc(1).unwrap();
        let names = parse_names(&bytes);
        assert_eq!(
            names,
            [
                ("lib".to_string(), 1, 0o40755, 3),
                ("lib/modules".to_string(), 2, 0o40755, 3),
                ("lib/modules/k".to_string(), 3, 0o40755, 3),
                ("lib/modules/k/a.ko".to_string(), 4, 0o100644, 1),
                ("lib/modules/k/sub".to_string(), 5, 0o40700, 2),
                ("lib/x".to_string(), 6, 0o120777, 1),
                (TRAILER.to_string(), 0, 0, 1),
            ]
        );
    }

    #[test]
    fn rejects_bad_trees() {
        let mut a = Archive::new();
        for p in ["", "/", "a//b", "a/./b", "../a", "a\0b"] {
            assert_eq!(a.add_dir(p, 0o755), Err(CpioError::BadPath(p.into())));
        }
        a.add_file("f", 0o644, vec![]).unwrap();
        assert_eq!(
            a.add_file("/f", 0o644, vec![]),
            Err(CpioError::Duplicate("f".into()))
        );
        a.add_file("f/g", 0o644, vec![]).unwrap();
        assert_eq!(a.to_newc(0), Err(CpioError::NotADirectory("f/g".into())));
    }

    /// (name, ino, mode, nlink) of each header, walking the archive.
    fn parse_names(b: &[u8]) -> Vec<(String, u32, u32, u32)> {
        let field = |h: &[u8], i: usize| {
            u32::from_str_radix(std::str::from_utf8(&h[6 + 8 * i..14 + 8 * i]).unwrap(), 16)
                .unwrap()
        };
        let mut out = Vec::new();
        let mut at = 0;
        while at < b.len() {
            let h = &b[at..at + NEWC_HEADER_SIZE];
            assert_eq!(&h[..6], NEWC_MAGIC);
            let namesize = field(h, 11) as usize;
            let filesize = field(h, 6) as usize;
            let name = String::from_utf8(b[at + 110..at + 110 + namesize - 1].to_vec()).unwrap();
            out.push((name, field(h, 0), field(h, 1), field(h, 4)));
            at = (at + 110 + namesize).div_ceil(4) * 4;
            at = (at + filesize).div_ceil(4) * 4;
        }
        out
    }
}
