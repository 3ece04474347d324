//! Fixtures: tiny ELF objects and executables, PE images shaped like systemd's stub and
//! a bzImage, and a fake `lib/modules/KVER` tree holding every module Petrel selects —
//! so that tests need no download.
#![allow(dead_code, clippy::unwrap_used, clippy::cast_possible_truncation)]

use std::path::{Path, PathBuf};

use petrel_image::modules::{ALWAYS, HARDWARE};

/// An ELF64 little-endian file of type `e_type` with the given named sections.
pub fn elf(e_type: u16, sections: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = vec![0u8; 64];
    out[..4].copy_from_slice(b"\x7fELF");
    out[4] = 2;
    out[5] = 1;
    out[6] = 1;
    out[0x10..0x12].copy_from_slice(&e_type.to_le_bytes());
    out[0x12..0x14].copy_from_slice(&62u16.to_le_bytes());
    out[0x34..0x36].copy_from_slice(&64u16.to_le_bytes());
    let mut names = vec![0u8];
    let mut headers = Vec::new();
    for (name, data) in sections {
        headers.push((names.len(), out.len(), data.len()));
        names.extend_from_slice(name.as_bytes());
        names.push(0);
        out.extend_from_slice(data);
    }
    headers.push((names.len(), out.len(), names.len() + 10));
    names.extend_from_slice(b".shstrtab\0");
    out.extend_from_slice(&names);
    while out.len() % 8 != 0 {
        out.push(0);
    }
    let shoff = out.len();
    out.extend_from_slice(&[0u8; 64]);
    for (name_off, off, size) in &headers {
        let mut sh = [0u8; 64];
        sh[0..4].copy_from_slice(&(*name_off as u32).to_le_bytes());
        sh[4..8].copy_from_slice(&1u32.to_le_bytes());
        sh[0x18..0x20].copy_from_slice(&(*off as u64).to_le_bytes());
        sh[0x20..0x28].copy_from_slice(&(*size as u64).to_le_bytes());
        out.extend_from_slice(&sh);
    }
    let shnum = headers.len() + 1;
    out[0x28..0x30].copy_from_slice(&(shoff as u64).to_le_bytes());
    out[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
    out[0x3c..0x3e].copy_from_slice(&(shnum as u16).to_le_bytes());
    out[0x3e..0x40].copy_from_slice(&((shnum - 1) as u16).to_le_bytes());
    out
}

/// A kernel module: an ELF relocatable object with `.text` and `.modinfo`.
pub fn module(modinfo: &str) -> Vec<u8> {
    elf(
        1,
        &[(".text", &[0xc3; 100]), (".modinfo", modinfo.as_bytes())],
    )
}

/// A "static executable": an ELF executable without `PT_INTERP`, tagged with `tag`.
pub fn static_exe(tag: &str) -> Vec<u8> {
    elf(2, &[(".text", tag.as_bytes())])
}

fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

/// A PE32+ x86-64 EFI application: headers in the first 0x400 bytes (PE header at
/// 0x40, like a bzImage), one `.text` section at RVA 0x1000, file alignment 0x200.
pub fn pe(body: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; 0x400];
    b[..2].copy_from_slice(b"MZ");
    put32(&mut b, 0x3c, 0x40);
    b[0x40..0x44].copy_from_slice(b"PE\0\0");
    let coff = 0x44;
    put16(&mut b, coff, 0x8664);
    put16(&mut b, coff + 2, 1);
    put16(&mut b, coff + 16, 240);
    put16(&mut b, coff + 18, 0x206);
    let opt = coff + 20;
    put16(&mut b, opt, 0x20b);
    put32(&mut b, opt + 16, 0x1000);
    put32(&mut b, opt + 32, 0x1000);
    put32(&mut b, opt + 36, 0x200);
    let raw = body.len().div_ceil(0x200) * 0x200;
    put32(
        &mut b,
        opt + 56,
        (0x1000 + raw.div_ceil(0x1000) * 0x1000) as u32,
    );
    put32(&mut b, opt + 60, 0x400);
    put16(&mut b, opt + 68, 10);
    put32(&mut b, opt + 108, 16);
    let h = opt + 240;
    b[h..h + 5].copy_from_slice(b".text");
    put32(&mut b, h + 8, body.len() as u32);
    put32(&mut b, h + 12, 0x1000);
    put32(&mut b, h + 16, raw as u32);
    put32(&mut b, h + 20, 0x400);
    put32(&mut b, h + 36, 0x6000_0020);
    b.extend_from_slice(body);
    b.resize(0x400 + raw, 0);
    b
}

/// A stand-in for systemd's stub.
pub fn fake_stub() -> Vec<u8> {
    pe(&[0xc3; 0x300])
}

/// A stand-in for a bzImage of release `kver`: a PE image with the boot protocol's
/// `HdrS` magic and a `kernel_version` string (at 0x200 + the pointer at 0x20e).
pub fn fake_kernel(kver: &str) -> Vec<u8> {
    let mut b = pe(&[0x90; 0x1000]);
    b[0x202..0x206].copy_from_slice(b"HdrS");
    put16(&mut b, 0x20e, 0x100);
    let version = format!("{kver} (test@example) #1 SMP\0");
    b[0x300..0x300 + version.len()].copy_from_slice(version.as_bytes());
    b
}

/// Dependencies of the fake tree: like Debian's, abridged.
const DEPS: &[(&str, &str)] = &[
    ("kvm", "irqbypass"),
    ("kvm_amd", "kvm,ccp"),
    ("kvm_intel", "kvm"),
    ("bridge", "stp,llc"),
    ("stp", "llc"),
    ("vfat", "fat"),
    ("ext4", "jbd2,mbcache,crc16"),
    ("virtio_net", "virtio_ring,virtio,net_failover"),
    ("net_failover", "failover"),
    ("virtio_pci", "virtio_ring,virtio"),
    ("virtio_blk", "virtio,virtio_ring"),
    ("usb_storage", "usbcore,scsi_mod"),
];

/// Writes `root/lib/modules/KVER` with every module Petrel selects except `skip`;
/// returns its path.
pub fn fake_tree(root: &Path, kver: &str, skip: &[&str]) -> PathBuf {
    let dir = root.join("lib/modules").join(kver);
    let mut names: Vec<&str> = ALWAYS.iter().chain(HARDWARE).copied().collect();
    for (m, deps) in DEPS {
        names.push(m);
        names.extend(deps.split(','));
    }
    names.extend(["crc32c_generic", "scsi_mod", "usbcore"]);
    names.sort();
    names.dedup();
    for name in names.into_iter().filter(|n| !skip.contains(n)) {
        let deps = DEPS.iter().find(|(m, _)| *m == name).map_or("", |(_, d)| d);
        let mut info = format!("license=GPL\0depends={deps}\0name={name}\0alias=fake:{name}*\0");
        if name == "jbd2" {
            info.push_str("softdep=pre: crc32c\0");
        }
        if name == "crc32c_generic" {
            info.push_str("alias=crc32c\0alias=crypto-crc32c\0");
        }
        let sub = if name.starts_with("kvm") {
            "arch/x86/kvm"
        } else {
            "drivers/fake"
        };
        let path = dir
            .join("kernel")
            .join(sub)
            .join(format!("{}.ko", name.replace('_', "-")));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, module(&info)).unwrap();
    }
    std::fs::write(dir.join("modules.builtin"), "kernel/fs/unix.ko\n").unwrap();
    dir
}

// Not every suite that includes this module makes scratch directories (robust.rs does not).
#[allow(unused_imports)]
pub use petrel_test_support::Scratch;

/// Runs `cmd`, failing loudly with the reason when the tool is missing.
pub fn run(cmd: &mut std::process::Command) -> std::process::Output {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} ({e}): `make deps` installs it"));
    assert!(
        out.status.success(),
        "{program} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
