//! `petrel-image provision`: written files read back with mtools, nothing outside the
//! ESP touched, fsck.vfat clean after every run, and every refusal leaves the image
//! as it was.
#![allow(clippy::unwrap_used)]

mod common_disk;

use std::fs::OpenOptions;
use std::path::Path;

use common_disk::{Scratch, build, fsck_esp, guest, mtools_esp, sha256_range, witness, witness_ok};
use petrel_image::disk::{self, Layout};
use petrel_image::provision::{self, ProvisionError, Request};

const CONFIG: &str = "hostname = \"box1\"\n\n[[services]]\nname = \"hello\"\n\
command = [\"/bin/petrel-hvt\", \"--mem=2\", \"/boot/efi/petrel/images/hello.hvt\"]\nrestart = \"never\"\n\n\
[[unikernels]]\nname = \"time\"\nimage = \"time.hvt\"\n";
const PEM: &[u8] =
    b"-----BEGIN CERTIFICATE-----\nMIIBeTCCAR+gAwIBAgIUZmFrZQ==\n-----END CERTIFICATE-----\n";

fn run(image: &Path, req: &Request) -> Result<provision::Report, ProvisionError> {
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(image)
        .unwrap();
    let r = provision::provision(&mut f, req);
    f.sync_all().unwrap();
    r
}

/// Hashes of everything outside the ESP: MBR + GPT, the data partition, the backup GPT.
fn outside_esp(image: &Path) -> [String; 2] {
    let l = Layout::standard();
    [
        sha256_range(image, 0..l.esp_bytes().start),
        sha256_range(image, l.esp_bytes().end..l.total_bytes),
    ]
}

fn request(autostart: &[&str]) -> Request {
    Request {
        config: Some(CONFIG.to_owned()),
        trust_pem: Some(PEM.to_vec()),
        autostart: autostart
            .iter()
            .map(|n| ((*n).to_owned(), guest(n)))
            .collect(),
        time_unix_secs: 1_710_000_000, // 2024-03-09 16:00:00 UTC
        ..Request::default()
    }
}

#[test]
fn provision_then_read_back_with_mtools() {
    let s = Scratch::new("petrel-prov-ok");
    let img = build(&s).path;
    let before = outside_esp(&img);

    let report = run(&img, &request(&["hello", "time"])).unwrap();
    let paths: Vec<&str> = report.written.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        [
            "petrel/config.toml",
            "petrel/trust/ca.pem",
            "petrel/images/hello.hvt",
            "petrel/images/time.hvt"
        ]
    );
    assert_eq!(
        outside_esp(&img),
        before,
        "provisioning wrote outside the ESP"
    );
    fsck_esp(&img, &s);

    let esp = mtools_esp(&img);
    assert_eq!(
        witness_ok("mtype", "mtools", &["-i", &esp, "::/petrel/config.toml"]),
        CONFIG
    );
    assert_eq!(
        witness_ok("mtype", "mtools", &["-i", &esp, "::/petrel/trust/ca.pem"]).as_bytes(),
        PEM
    );
    for name in ["hello", "time"] {
        let back = s.path(&format!("{name}.back"));
        let src = format!("::/petrel/images/{name}.hvt");
        witness_ok(
            "mcopy",
            "mtools",
            &["-n", "-i", &esp, &src, back.to_str().unwrap()],
        );
        assert_eq!(
            std::fs::read(&back).unwrap(),
            guest(name),
            "{name}.hvt differs"
        );
    }
    let listing = witness_ok("mdir", "mtools", &["-i", &esp, "-/", "::/petrel"]);
    assert!(
        listing.contains("2024-03-09  16:00"),
        "timestamps:\n{listing}"
    );
    assert!(!listing.contains(".new"), "temporary file left:\n{listing}");

    // Again, with another config and one unikernel: replaced in place, no space lost.
    let config2 = "hostname = \"box2\"\n[[unikernels]]\nname = \"t2\"\nimage = \"time.hvt\"\n";
    let mut again = request(&["time"]);
    again.config = Some(config2.into());
    let second = run(&img, &again).unwrap();
    assert_eq!(second.free_bytes, report.free_bytes);
    assert!(second.added_entries.is_empty());
    assert_eq!(
        witness_ok("mtype", "mtools", &["-i", &esp, "::/petrel/config.toml"]),
        config2
    );
    assert_eq!(outside_esp(&img), before);
    fsck_esp(&img, &s);
}

#[test]
fn config_warnings_are_reported() {
    let s = Scratch::new("petrel-prov-warn");
    let img = build(&s).path;
    let req = Request {
        config: Some("hostname = \"a\"\nfuture_key = 1\n".into()),
        ..Request::default()
    };
    let report = run(&img, &req).unwrap();
    assert!(
        report
            .config_warnings
            .iter()
            .any(|w| w.contains("future_key")),
        "{:?}",
        report.config_warnings
    );
}

#[test]
fn refusals_leave_the_image_alone() {
    let s = Scratch::new("petrel-prov-refuse");
    let img = build(&s).path;
    let whole = || disk::sha256_file(&img).unwrap();
    let before = whole();

    let mut bad = request(&[]);
    bad.config = Some("hostname = \"a\"\n[network\n".into());
    let e = run(&img, &bad).unwrap_err();
    assert!(matches!(e, ProvisionError::Config(_)));
    assert!(e.to_string().contains("line 2"), "{e}");

    let mut bad = request(&[]);
    bad.autostart = vec![("sh".into(), b"#!/bin/sh\n".to_vec())];
    assert!(matches!(
        run(&img, &bad),
        Err(ProvisionError::NotUnikernel { .. })
    ));

    // A Linux executable is an ELF, but not a unikernel.
    let mut bad = request(&[]);
    bad.autostart = vec![(
        "ls".into(),
        std::fs::read(std::env::current_exe().unwrap()).unwrap(),
    )];
    assert!(matches!(
        run(&img, &bad),
        Err(ProvisionError::NotUnikernel { .. })
    ));

    let mut bad = request(&[]);
    bad.autostart = vec![("Hello".into(), guest("hello"))];
    assert!(matches!(run(&img, &bad), Err(ProvisionError::BadName(_))));

    let mut bad = request(&[]);
    bad.trust_pem = Some(b"not a certificate".to_vec());
    assert!(matches!(run(&img, &bad), Err(ProvisionError::Trust(_))));

    // Three 100 MiB unikernels do not fit the 256 MiB ESP.
    let mut big = guest("hello");
    big.resize(100 << 20, 0);
    let mut full = request(&[]);
    full.config = None;
    full.autostart = ["a", "b", "c"]
        .iter()
        .map(|n| ((*n).to_owned(), big.clone()))
        .collect();
    let e = run(&img, &full).unwrap_err();
    assert!(matches!(e, ProvisionError::EspFull { .. }), "{e}");
    assert!(e.to_string().starts_with("ESP full"), "{e}");

    assert_eq!(whole(), before, "a refused request changed the image");
}

#[test]
fn not_a_petrel_image() {
    let s = Scratch::new("petrel-prov-foreign");
    let req = Request {
        config: Some("hostname = \"a\"\n".into()),
        ..Request::default()
    };

    // No GPT at all.
    let blank = s.path("blank.img");
    std::fs::write(&blank, vec![0u8; 4 << 20]).unwrap();
    let e = run(&blank, &req).unwrap_err();
    assert!(e.to_string().starts_with("not a Petrel image"), "{e}");

    // A GPT without an ESP: our image with partition 1 deleted by sgdisk.
    let img = build(&s).path;
    let no_esp = s.path("no-esp.img");
    std::fs::copy(&img, &no_esp).unwrap();
    witness_ok("sgdisk", "gdisk", &["-d", "1", no_esp.to_str().unwrap()]);
    assert!(matches!(run(&no_esp, &req), Err(ProvisionError::NoEsp)));

    // An ESP without petrel/: removed with mtools.
    let foreign = s.path("foreign.img");
    std::fs::copy(&img, &foreign).unwrap();
    let out = witness(
        "mdeltree",
        "mtools",
        &["-i", &mtools_esp(&foreign), "::/petrel"],
    );
    assert!(out.status.success());
    let e = run(&foreign, &req).unwrap_err();
    assert!(matches!(e, ProvisionError::NotPetrel(_)), "{e}");
    assert!(e.to_string().contains("petrel/"), "{e}");
}
