//! `petrel-image build` from a fake kernel, stub and module tree (no download): the
//! outputs hold what docs/formats.md says, wrong inputs give clear errors, and two
//! builds — through the library, and through the binary from two different
//! directories — give identical bytes.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use petrel_image::assemble::{self, BuildError, BuildOptions};
use petrel_image::cpio::EntryKind;
use petrel_image::modules::ModulesError;
use petrel_image::uki::PeFile;

const KVER: &str = "6.1.0-99-amd64";

/// Lays out every input under `root` at fixed relative paths.
fn inputs(root: &Path) {
    fake_tree(&root.join("kernel"), KVER, &["r8169"]);
    std::fs::write(root.join("vmlinuz"), fake_kernel(KVER)).unwrap();
    std::fs::write(root.join("stub.efi"), fake_stub()).unwrap();
    std::fs::write(root.join("systemd-boot.efi"), fake_stub()).unwrap();
    std::fs::write(root.join("init"), static_exe("init")).unwrap();
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::write(root.join("bin/petrel-hvt"), static_exe("hvt")).unwrap();
    std::fs::create_dir_all(root.join("rootfs/etc")).unwrap();
    std::fs::write(
        root.join("rootfs/etc/os-release"),
        "ID=petrel\nIMAGE_VERSION=@IMAGE_VERSION@\n",
    )
    .unwrap();
    std::fs::write(root.join("rootfs/etc/motd"), "hello\n").unwrap();
}

fn options(root: &Path, out: &str) -> BuildOptions {
    let mut o = BuildOptions::new(root.join(out), "1.2.3".into(), root.join("init"));
    o.source_date_epoch = 1_700_000_000;
    o.bins = vec![root.join("bin/petrel-hvt")];
    o.rootfs = Some(root.join("rootfs"));
    o.kernel = Some((
        root.join("vmlinuz"),
        root.join("kernel/lib/modules").join(KVER),
    ));
    o.stub = Some(root.join("stub.efi"));
    o.lock = root.join("no-such.lock");
    o
}

fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

fn gunzip(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(b), &mut out).unwrap();
    out
}

/// (path, mode, body) of every member of a newc archive.
fn members(cpio: &[u8]) -> Vec<(String, u32, Vec<u8>)> {
    let field = |h: &[u8], i: usize| {
        u32::from_str_radix(std::str::from_utf8(&h[6 + 8 * i..14 + 8 * i]).unwrap(), 16).unwrap()
    };
    let mut out = Vec::new();
    let mut at = 0;
    loop {
        let h = &cpio[at..at + 110];
        let (mode, size, namesize) = (field(h, 1), field(h, 6) as usize, field(h, 11) as usize);
        let name = String::from_utf8(cpio[at + 110..at + 110 + namesize - 1].to_vec()).unwrap();
        let data_at = (at + 110 + namesize).div_ceil(4) * 4;
        if name == "TRAILER!!!" {
            return out;
        }
        out.push((name, mode, cpio[data_at..data_at + size].to_vec()));
        at = (data_at + size).div_ceil(4) * 4;
    }
}

#[test]
fn library_build_is_reproducible_and_complete() {
    let tmp = Scratch::new("petrel-image-lib-build");
    let root = tmp.dir();
    inputs(root);
    let a = assemble::build(&options(root, "out-a")).unwrap();
    let b = assemble::build(&options(root, "out-b")).unwrap();
    let (fa, fb) = (files(&root.join("out-a")), files(&root.join("out-b")));
    assert_eq!(
        fa.iter().map(|f| f.0.as_str()).collect::<Vec<_>>(),
        ["build-info.json", "initramfs.cpio.gz", "petrel.efi"]
    );
    assert!(fa == fb, "two builds differ");
    assert_eq!(
        a.warnings,
        ["hardware module r8169 is not in the kernel tree; shipped without it"]
    );
    assert_eq!(a.build_info, b.build_info);

    // The initramfs.
    let cpio = gunzip(&std::fs::read(&a.initramfs).unwrap());
    let m = members(&cpio);
    let get = |p: &str| {
        m.iter()
            .find(|x| x.0 == p)
            .unwrap_or_else(|| panic!("{p} missing"))
    };
    assert_eq!(get("init").2, static_exe("init"));
    assert_eq!(get("init").1, 0o100755);
    assert_eq!(get("bin/petrel-hvt").2, static_exe("hvt"));
    assert_eq!(get("dev/console").1, 0o020600);
    assert_eq!(get("tmp").1, 0o041777);
    assert_eq!(get("etc/os-release").2, b"ID=petrel\nIMAGE_VERSION=1.2.3\n");
    assert_eq!(get("etc/motd").2, b"hello\n");
    let index =
        String::from_utf8(get(&format!("lib/modules/{KVER}/petrel.modules")).2.clone()).unwrap();
    assert!(index.starts_with(&format!("petrel-modules 1\nkernel {KVER}\n")));
    assert!(index.contains("\nmodule kvm_amd kernel/arch/x86/kvm/kvm-amd.ko\n"));
    assert!(index.contains("\nsoftdep jbd2 pre crc32c_generic\n"));
    let always: Vec<&str> = index
        .lines()
        .filter_map(|l| l.strip_prefix("always "))
        .collect();
    assert_eq!(
        always,
        [
            "crc32c_generic",
            "irqbypass",
            "kvm",
            "ccp",
            "kvm_amd",
            "kvm_intel",
            "tun",
            "llc",
            "stp",
            "bridge",
            "veth",
            "fat",
            "vfat",
            "nls_cp437",
            "nls_ascii",
            "jbd2",
            "mbcache",
            "crc16",
            "ext4",
            "efivarfs",
            "button",
            "evdev",
        ]
    );
    let ko = get(&format!(
        "lib/modules/{KVER}/kernel/drivers/fake/virtio-net.ko"
    ));
    assert_eq!(ko.1, 0o100644);
    let info: assemble::BuildInfo =
        serde_json::from_slice(&get("etc/petrel/build-info.json").2).unwrap();
    assert!(info.outputs.is_empty());
    assert_eq!(info.kernel.release, KVER);
    let paths: Vec<&str> = m.iter().map(|x| x.0.as_str()).collect();
    let mut sorted = paths.clone();
    sorted.sort();
    assert_eq!(paths, sorted);

    // The UKI: the stub's sections, then ours with the exact contents.
    let uki = std::fs::read(&a.uki).unwrap();
    let pe = PeFile::parse(&uki).unwrap();
    let names: Vec<&str> = pe.sections.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, [".text", ".osrel", ".cmdline", ".initrd", ".linux"]);
    assert_eq!(pe.section_data(&uki, ".linux").unwrap(), fake_kernel(KVER));
    assert_eq!(
        pe.section_data(&uki, ".initrd").unwrap(),
        std::fs::read(&a.initramfs).unwrap()
    );
    assert_eq!(
        pe.section_data(&uki, ".cmdline").unwrap(),
        assemble::DEFAULT_CMDLINE.as_bytes()
    );
    assert_eq!(
        pe.section_data(&uki, ".osrel").unwrap(),
        b"ID=petrel\nIMAGE_VERSION=1.2.3\n"
    );

    // build-info.json records hashes, never a path of this machine.
    let json = std::fs::read_to_string(&a.build_info_path).unwrap();
    assert!(!json.contains(&*root.to_string_lossy()), "{json}");
    assert_eq!(
        a.build_info.outputs["petrel.efi"],
        petrel_image::inputs::sha256_hex(&uki)
    );
    assert_eq!(a.build_info.modules.missing_hardware, ["r8169"]);
}

#[test]
fn clear_errors_for_wrong_inputs() {
    let tmp = Scratch::new("petrel-image-errors");
    let root = tmp.dir();
    inputs(root);
    let err =
        |o: &BuildOptions| petrel_image::disk::cli::error_chain(&assemble::build(o).unwrap_err());

    let mut o = options(root, "out");
    o.stub = Some(root.join("missing.stub"));
    assert!(
        err(&o).contains("systemd's EFI stub not found at "),
        "{}",
        err(&o)
    );

    let mut o = options(root, "out");
    o.kernel = Some((
        root.join("init"),
        root.join("kernel/lib/modules").join(KVER),
    ));
    assert!(
        err(&o).contains("is not an x86-64 bzImage with an EFI stub: not a PE/COFF file"),
        "{}",
        err(&o)
    );

    let mut o = options(root, "out");
    std::fs::write(root.join("vmlinuz-other"), fake_kernel("6.1.0-1-amd64")).unwrap();
    o.kernel = Some((
        root.join("vmlinuz-other"),
        root.join("kernel/lib/modules").join(KVER),
    ));
    assert!(
        err(&o).contains("is release 6.1.0-1-amd64, but the modules are for 6.1.0-99-amd64"),
        "{}",
        err(&o)
    );

    let mut o = options(root, "out");
    o.init = root.join("vmlinuz");
    assert!(
        err(&o).contains("vmlinuz is not an ELF executable"),
        "{}",
        err(&o)
    );

    let mut o = options(root, "out");
    o.version = "1+2".into();
    assert!(matches!(
        assemble::build(&o),
        Err(BuildError::BadVersion(_))
    ));

    // A wrong kernel: a tree without the always-needed vfat.
    let other = root.join("other");
    let tree = fake_tree(&other, KVER, &["vfat"]);
    let mut o = options(root, "out");
    o.kernel = Some((root.join("vmlinuz"), tree));
    assert!(
        matches!(assemble::build(&o), Err(BuildError::Modules(ModulesError::MissingAlways(m))) if m == "vfat")
    );

    // Pinned inputs with a missing lock file.
    let mut o = options(root, "out");
    o.kernel = None;
    assert!(err(&o).starts_with("inputs: cannot access "), "{}", err(&o));

    // A rootfs/ file that shadows a generated one.
    std::fs::write(root.join("rootfs/init"), "x").unwrap();
    let o = options(root, "out");
    assert!(err(&o).contains("init added twice"), "{}", err(&o));
    let _ = EntryKind::Dir;
}

/// The binary, run from two different directories with the same relative paths: same
/// bytes for every output (initramfs, UKI, build info; and the disk half's outputs).
#[test]
fn binary_build_is_reproducible_across_directories() {
    let tmp = Scratch::new("petrel-image-cli-build");
    let mut outputs = Vec::new();
    for dir in ["one", "two/deeper"] {
        let root: PathBuf = tmp.dir().join(dir);
        std::fs::create_dir_all(&root).unwrap();
        inputs(&root);
        let kernel_tree = format!("kernel/lib/modules/{KVER}");
        let out = run(Command::new(env!("CARGO_BIN_EXE_petrel-image"))
            .current_dir(&root)
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .args([
                "build",
                "--out",
                "out",
                "--version",
                "2.0",
                "--init",
                "init",
                "--bin",
                "bin/petrel-hvt",
            ])
            .args([
                "--kernel",
                "vmlinuz",
                "--modules",
                &kernel_tree,
                "--stub",
                "stub.efi",
            ])
            .args(["--bootloader", "systemd-boot.efi"]));
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(stdout.contains("modules (22 always loaded)"), "{stdout}");
        outputs.push(files(&root.join("out")));
    }
    let names: Vec<&str> = outputs[0].iter().map(|f| f.0.as_str()).collect();
    assert!(
        names.contains(&"petrel.efi") && names.contains(&"initramfs.cpio.gz"),
        "{names:?}"
    );
    for (a, b) in outputs[0].iter().zip(&outputs[1]) {
        assert_eq!(a.0, b.0);
        assert!(a.1 == b.1, "{} differs between the two directories", a.0);
    }
    assert_eq!(outputs[0].len(), outputs[1].len());
}

#[test]
fn binary_errors_are_one_line() {
    let out = Command::new(env!("CARGO_BIN_EXE_petrel-image"))
        .args(["build", "--kernel", "x"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "petrel-image: --kernel and --modules go together\n"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_petrel-image"))
        .args([
            "build",
            "--init",
            "/nonexistent/init",
            "--bin",
            "/nonexistent/hvt",
            "--kernel",
            "/nonexistent/k",
        ])
        .args([
            "--modules",
            "/nonexistent/lib/modules/6.1.0-1-amd64",
            "--stub",
            "/nonexistent/stub",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("petrel-image: cannot read /nonexistent/k"),
        "{err}"
    );
}
