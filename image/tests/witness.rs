//! Independent witnesses: GNU `cpio` and libarchive's `bsdtar` read our archives, `gzip`
//! our compression, and binutils' `objdump` our UKI. (Debian packages `cpio`,
//! `libarchive-tools`, `gzip`, `binutils`; `make deps` installs them.)
#![allow(missing_docs, clippy::unwrap_used, clippy::cast_possible_truncation)]

mod common;

use std::io::Write as _;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::process::{Command, Stdio};

use common::*;
use petrel_image::cpio::{Archive, EntryKind};
use petrel_image::initramfs::gzip;
use petrel_image::uki::{self, PeFile, UkiParts};

const EPOCH: u32 = 1_700_000_000;

fn sample() -> Vec<u8> {
    let mut a = Archive::new();
    a.add_file("init", 0o755, b"#!init\n".to_vec()).unwrap();
    a.add(
        "dev/console",
        0o600,
        EntryKind::CharDev { major: 5, minor: 1 },
    )
    .unwrap();
    a.add_file("etc/petrel/build-info.json", 0o644, b"{}\n".to_vec())
        .unwrap();
    a.add(
        "etc/localtime",
        0o777,
        EntryKind::Symlink("../usr/share/zoneinfo/UTC".into()),
    )
    .unwrap();
    a.add_dir("tmp", 0o1777).unwrap();
    a.add_file(
        "lib/modules/6.1.0-1-amd64/kernel/a-b.ko",
        0o644,
        vec![7u8; 5000],
    )
    .unwrap();
    a.to_newc(EPOCH).unwrap()
}

fn with_stdin(cmd: &mut Command, input: &[u8]) -> std::process::Output {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program} ({e}): `make deps` installs it"));
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{program}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

const LISTING: [&str; 12] = [
    "dev",
    "dev/console",
    "etc",
    "etc/localtime",
    "etc/petrel",
    "etc/petrel/build-info.json",
    "init",
    "lib",
    "lib/modules",
    "lib/modules/6.1.0-1-amd64",
    "lib/modules/6.1.0-1-amd64/kernel",
    "lib/modules/6.1.0-1-amd64/kernel/a-b.ko",
];

#[test]
fn gnu_cpio_lists_and_extracts_our_archive() {
    let bytes = sample();
    let out = with_stdin(Command::new("cpio").args(["-t", "--quiet"]), &bytes);
    let listed: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let mut want: Vec<&str> = LISTING.to_vec();
    want.push("tmp");
    assert_eq!(listed, want);

    let tmp = Scratch::new("petrel-image-cpio-x");
    with_stdin(
        Command::new("cpio")
            .args(["-i", "-d", "-m", "--quiet", "--no-absolute-filenames"])
            .current_dir(tmp.dir()),
        &bytes,
    );
    let root = tmp.dir();
    assert_eq!(std::fs::read(root.join("init")).unwrap(), b"#!init\n");
    let init = std::fs::metadata(root.join("init")).unwrap();
    assert_eq!(init.permissions().mode() & 0o7777, 0o755);
    assert_eq!(init.mtime(), i64::from(EPOCH));
    assert_eq!(
        std::fs::read_link(root.join("etc/localtime"))
            .unwrap()
            .to_str(),
        Some("../usr/share/zoneinfo/UTC")
    );
    assert_eq!(
        std::fs::read(root.join("lib/modules/6.1.0-1-amd64/kernel/a-b.ko")).unwrap(),
        vec![7u8; 5000]
    );
    let console = std::fs::metadata(root.join("dev/console")).unwrap();
    use std::os::unix::fs::FileTypeExt as _;
    assert!(
        console.file_type().is_char_device(),
        "dev/console is not a char device (run as root)"
    );
    let rdev = console.rdev();
    let (major, minor) = (
        ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff),
        (rdev & 0xff) | ((rdev >> 12) & !0xff),
    );
    assert_eq!((major, minor), (5, 1));
    assert_eq!(
        std::fs::metadata(root.join("tmp"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o1777
    );
}

#[test]
fn bsdtar_reads_our_gzipped_archive() {
    let gz = gzip(&sample());
    let out = with_stdin(Command::new("bsdtar").args(["-tvf", "-"]), &gz);
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 13, "{text}");
    let console = lines.iter().find(|l| l.ends_with(" dev/console")).unwrap();
    assert!(console.starts_with("crw-------  1 0      0"), "{console}");
    assert!(console.contains("5,1"), "{console}");
    let dir = lines.iter().find(|l| l.ends_with(" lib/modules")).unwrap();
    assert!(
        dir.starts_with("drwxr-xr-x  3 0      0"),
        "nlink of a directory with one subdirectory: {dir}"
    );
    let names: Vec<&str> = lines
        .iter()
        .map(|l| l.split(" -> ").next().unwrap().rsplit(' ').next().unwrap())
        .collect();
    assert_eq!(&names[..12], &LISTING[..]);
    // gzip itself agrees on the stream and finds no stored name.
    let out = with_stdin(Command::new("gzip").args(["-dc"]), &gz);
    assert_eq!(out.stdout, sample());
    let out = with_stdin(Command::new("gzip").args(["-lN"]), &gz);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("sample"));
}

#[test]
fn objdump_sees_the_uki_sections_where_we_put_them() {
    let tmp = Scratch::new("petrel-image-objdump");
    let kernel = fake_kernel("6.1.0-1-amd64");
    let initrd = gzip(&sample());
    let efi = uki::assemble(
        &fake_stub(),
        &UkiParts {
            osrel: b"ID=petrel\nIMAGE_VERSION=1\n",
            cmdline: b"console=ttyS0 panic=10",
            linux: &kernel,
            initrd: &initrd,
        },
    )
    .unwrap();
    let path = tmp.path("petrel.efi");
    std::fs::write(&path, &efi).unwrap();
    let out = run(Command::new("objdump").arg("-h").arg(&path));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("file format pei-x86-64"), "{text}");
    // "  3 .initrd  000004d2  0000000000004000  0000000000004000  00000a00  2**2"
    let rows: Vec<(String, u64, u64, u64)> = text
        .lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            (w.len() == 7 && w[0].parse::<u32>().is_ok()).then(|| {
                let hex = |s: &str| u64::from_str_radix(s, 16).unwrap();
                (w[1].to_owned(), hex(w[2]), hex(w[3]), hex(w[5]))
            })
        })
        .collect();
    let pe = PeFile::parse(&efi).unwrap();
    let ours: Vec<(String, u64, u64, u64)> = pe
        .sections
        .iter()
        .map(|s| {
            (
                s.name.clone(),
                u64::from(s.virtual_size),
                u64::from(s.virtual_address),
                u64::from(s.raw_offset),
            )
        })
        .collect();
    assert_eq!(rows, ours);
    let names: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(names, [".text", ".osrel", ".cmdline", ".initrd", ".linux"]);
    for (name, _, vma, _) in &rows[1..] {
        assert_eq!(vma % 4096, 0, "{name} not page-aligned");
    }
    let linux = &rows[4];
    assert_eq!(linux.1, kernel.len() as u64);
    assert!(
        rows[1..4].iter().all(|r| r.2 + r.1 <= linux.2),
        ".linux is not last"
    );
}
