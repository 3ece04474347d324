//! `petrel-image provision` for the appliance: the device certificate and key (checked
//! against the anchor and each other), `--admin`, and the `[[unikernels]]` entries of
//! autostart images (added, matched against the manifest, or refused).
#![allow(clippy::unwrap_used)]

mod common_disk;

use std::fs::OpenOptions;
use std::path::Path;

use common_disk::{Scratch, build, fsck_esp, guest, mtools_esp, witness_ok};
use petrel_config::{Config, NetAttach, Restart};
use petrel_image::disk;
use petrel_image::provision::{self, ProvisionError, Request};
use petrel_proto::tls::ca::{self, Kind, Validity};

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

fn esp_text(image: &Path, path: &str) -> String {
    witness_ok(
        "mtype",
        "mtools",
        &["-i", &mtools_esp(image), &format!("::/{path}")],
    )
}

fn request(config: &str) -> Request {
    Request {
        config: Some(config.to_owned()),
        time_unix_secs: 1_710_000_000,
        ..Request::default()
    }
}

#[test]
fn autostart_images_get_entries_and_admin_is_set() {
    let s = Scratch::new("petrel-appl-entries");
    let img = build(&s).path;
    let mut req = request("hostname = \"box\"\n");
    req.autostart = vec![("web".into(), guest("net")), ("hi".into(), guest("hello"))];
    req.admin = Some("ops".into());
    let report = run(&img, &req).unwrap();
    assert_eq!(report.added_entries, ["web", "hi"]);
    let config = Config::parse(&esp_text(&img, "petrel/config.toml"))
        .unwrap()
        .config;
    assert_eq!(config.hostname, "box");
    assert_eq!(config.management.admin.as_deref(), Some("ops"));
    let web = config.unikernel("web").unwrap();
    assert_eq!(web.image, "web.hvt");
    assert_eq!(web.memory_mib, 32);
    assert_eq!(web.restart, Restart::Always);
    assert_eq!(
        web.net,
        [NetAttach {
            device: "service0".into(),
            bridge: "service".into()
        }]
    );
    assert!(config.unikernel("hi").unwrap().net.is_empty());
    fsck_esp(&img, &s);

    // An entry of the operator's own (with arguments) is kept as written, comments too.
    let own = "# mine\n[[unikernels]]\nname = \"web\"\nimage = \"web.hvt\"\n\
               args = [\"--ipv4=10.0.2.100/24\"]\nnet = [\"service0=service\"]\n\n\
               [management]\nadmin = \"ops\"\n";
    let mut req = request(own);
    req.autostart = vec![("web".into(), guest("net"))];
    req.admin = Some("ops".into());
    let report = run(&img, &req).unwrap();
    assert!(report.added_entries.is_empty());
    assert_eq!(esp_text(&img, "petrel/config.toml"), own);

    // An image a [[services]] command runs gets no entry.
    let services = "[[services]]\nname = \"hello\"\n\
                    command = [\"/bin/petrel-hvt\", \"/boot/efi/petrel/images/hello.hvt\"]\n";
    let mut req = request(services);
    req.autostart = vec![("hello".into(), guest("hello"))];
    assert!(run(&img, &req).unwrap().added_entries.is_empty());
    assert_eq!(esp_text(&img, "petrel/config.toml"), services);

    // An entry for an image already on the ESP needs no upload.
    let later =
        "[[unikernels]]\nname = \"again\"\nimage = \"web.hvt\"\nnet = [\"service0=service\"]\n";
    run(&img, &request(later)).unwrap();
    assert_eq!(esp_text(&img, "petrel/config.toml"), later);
}

#[test]
fn entries_that_do_not_fit_are_refused() {
    let s = Scratch::new("petrel-appl-refuse");
    let img = build(&s).path;
    let before = disk::sha256_file(&img).unwrap();
    let refuse = |config: &str, autostart: &[(&str, &str)], admin: Option<&str>| {
        let mut req = request(config);
        req.autostart = autostart
            .iter()
            .map(|(n, g)| ((*n).to_owned(), guest(g)))
            .collect();
        req.admin = admin.map(str::to_owned);
        run(&img, &req).unwrap_err().to_string()
    };
    // The manifest names service0; the entry must attach exactly that.
    let e = refuse(
        "[[unikernels]]\nname = \"w\"\nimage = \"web.hvt\"\n",
        &[("web", "net")],
        None,
    );
    assert!(e.contains("missing [service0], extra []"), "{e}");
    let e = refuse(
        "[[unikernels]]\nname = \"w\"\nimage = \"web.hvt\"\nnet = [\"service0=service\", \"eth1=service\"]\n",
        &[("web", "net")],
        None,
    );
    assert!(e.contains("missing [], extra [eth1]"), "{e}");
    // Block devices cannot be given at boot.
    let e = refuse("", &[("blk", "blk")], None);
    assert!(e.contains("needs block device"), "{e}");
    // The default bridge is needed for an added entry's network device.
    let e = refuse(
        "[[network.bridges]]\nname = \"lan\"\n",
        &[("web", "net")],
        None,
    );
    assert!(e.contains("no bridge \"service\""), "{e}");
    // A name taken by an entry for another image.
    let e = refuse(
        "[[unikernels]]\nname = \"web\"\nimage = \"other.hvt\"\n",
        &[("web", "net"), ("other", "hello")],
        None,
    );
    assert!(e.contains("starts another image"), "{e}");
    // An entry whose image is neither given nor there.
    let e = refuse(
        "[[unikernels]]\nname = \"x\"\nimage = \"x.hvt\"\n",
        &[],
        None,
    );
    assert!(e.contains("neither given nor on the ESP"), "{e}");
    // --admin against the config's own.
    let e = refuse("[management]\nadmin = \"ops\"\n", &[], Some("root"));
    assert!(e.contains("management.admin is \"ops\""), "{e}");
    assert_eq!(disk::sha256_file(&img).unwrap(), before);
    // --admin needs a config.
    let req = Request {
        admin: Some("ops".into()),
        ..Request::default()
    };
    assert!(matches!(run(&img, &req), Err(ProvisionError::Conflict(_))));
}

#[test]
fn device_certificate_and_key() {
    let s = Scratch::new("petrel-appl-cert");
    let img = build(&s).path;
    let v = Validity::standard();
    let operator = ca::init("ops", &v).unwrap();
    let anchor = ca::anchor_pem(&operator).unwrap();
    let device = ca::issue(
        &operator,
        "box1",
        Kind::Device {
            hostname: "box1.example".into(),
        },
        &v,
    )
    .unwrap();
    let with = |cert: &str, key: &str, trust: Option<&str>| {
        let mut req = request("");
        req.trust_pem = trust.map(|t| t.as_bytes().to_vec());
        req.device_cert_pem = Some(cert.as_bytes().to_vec());
        req.device_key_pem = Some(key.as_bytes().to_vec());
        req
    };

    let report = run(
        &img,
        &with(&device.chain_pem, &device.key_pem, Some(&anchor)),
    )
    .unwrap();
    let paths: Vec<&str> = report.written.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        [
            "petrel/config.toml",
            "petrel/trust/ca.pem",
            "petrel/trust/device.crt.pem",
            "petrel/trust/device.key.pem"
        ]
    );
    assert_eq!(
        esp_text(&img, "petrel/trust/device.crt.pem"),
        device.chain_pem
    );
    assert_eq!(
        esp_text(&img, "petrel/trust/device.key.pem"),
        device.key_pem
    );
    fsck_esp(&img, &s);

    let before = disk::sha256_file(&img).unwrap();
    let refused = |req: Request| {
        let e = run(&img, &req).unwrap_err();
        assert!(matches!(e, ProvisionError::DeviceCert(_)), "{e}");
        e.to_string()
    };
    // Another device's key.
    let other = ca::issue(
        &operator,
        "box2",
        Kind::Device {
            hostname: "box2".into(),
        },
        &v,
    )
    .unwrap();
    let e = refused(with(&device.chain_pem, &other.key_pem, Some(&anchor)));
    assert!(e.contains("TLS configuration refused"), "{e}");
    // Issued under another anchor.
    let stranger = ca::init("ops", &v).unwrap();
    let e = refused(with(
        &device.chain_pem,
        &device.key_pem,
        Some(&ca::anchor_pem(&stranger).unwrap()),
    ));
    assert!(e.contains("not issued under the trust anchor"), "{e}");
    // No anchor, half a pair, a key in the certificate file, not PEM.
    assert!(refused(with(&device.chain_pem, &device.key_pem, None)).contains("needs the trust"));
    let mut half = with(&device.chain_pem, &device.key_pem, Some(&anchor));
    half.device_key_pem = None;
    assert!(refused(half).contains("go together"));
    let both = format!("{}{}", device.chain_pem, device.key_pem);
    assert!(refused(with(&both, &device.key_pem, Some(&anchor))).contains("private key"));
    refused(with("hello", &device.key_pem, Some(&anchor)));
    refused(with(&device.chain_pem, "hello", Some(&anchor)));
    assert_eq!(disk::sha256_file(&img).unwrap(), before);
}
