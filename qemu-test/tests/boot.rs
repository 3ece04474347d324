//! The real image in QEMU: first boot, unikernels under KVM inside the guest, the
//! network, a broken config, reboot and the power button.
//!
//! Each test boots its own VM from a scratch copy of `build/image/petrel.img` (`make
//! image`), provisioned with `petrel-image provision` the way an operator would. Under
//! TCG a boot takes 15–40 s here, so the tests share boots where they can and the
//! timeouts are generous. Run them one at a time (`--test-threads=1`): two emulated VMs
//! on two cores slow each other past any sensible timeout.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use petrel_qemu_test::{Config, Qemu, default_image};
use petrel_test_support::Scratch;

mod common;
use common::{guest, release_bin, run};

/// Generous: TCG on a shared two-core machine.
const BOOT: Duration = Duration::from_secs(240);
const STEP: Duration = Duration::from_secs(120);

/// A scratch copy of the image (in a scratch directory), removed on drop.
struct ScratchImage {
    _dir: Scratch,
    path: PathBuf,
}

impl ScratchImage {
    fn new(tag: &str) -> ScratchImage {
        let src = default_image();
        assert!(
            src.is_file(),
            "{} is missing: run `make image`",
            src.display()
        );
        let dir = Scratch::new(&format!("petrel-qt-{tag}"));
        let path = dir.path("petrel.img");
        run(Command::new("cp")
            .arg("--sparse=always")
            .arg(&src)
            .arg(&path));
        ScratchImage { _dir: dir, path }
    }

    fn provision(&self, config: &str, autostart: &[&str]) {
        let cfg = self.path.with_extension("toml");
        std::fs::write(&cfg, config).unwrap();
        let mut cmd = Command::new(release_bin("petrel-image"));
        cmd.arg("provision")
            .arg(&self.path)
            .arg("--config")
            .arg(&cfg);
        for name in autostart {
            cmd.arg("--autostart")
                .arg(format!("{name}={}", guest(name).display()));
        }
        run(&mut cmd);
        let _ = std::fs::remove_file(cfg);
    }

    /// Puts a file on the ESP with mtools, bypassing provision's checks.
    fn put_raw(&self, esp_path: &str, bytes: &[u8]) {
        let f = self.path.with_extension("raw");
        std::fs::write(&f, bytes).unwrap();
        // The ESP starts at LBA 2048 (docs/formats.md, disk layout).
        let img = format!("{}@@1048576", self.path.display());
        run(Command::new("mcopy")
            .args(["-o", "-i", &img])
            .arg(&f)
            .arg(format!("::{esp_path}")));
        let _ = std::fs::remove_file(f);
    }

    fn config(&self) -> Config {
        Config::new(&self.path)
    }
}

fn ok<T>(r: petrel_qemu_test::Result<T>) -> T {
    r.unwrap_or_else(|e| panic!("{e}"))
}

const SERVICES: &str = r#"
hostname = "qemu-test"

[[services]]
name = "hello"
command = ["/bin/petrel-hvt", "--mem=2", "/boot/efi/petrel/images/hello.hvt", "from", "qemu"]
restart = "never"

[[services]]
name = "time"
command = ["/bin/petrel-hvt", "--mem=2", "/boot/efi/petrel/images/time.hvt"]
restart = "never"
"#;

/// First boot grows the data partition; modules load and KVM works inside the guest
/// (the hello and time unikernels run under petrel-hvt); the service bridge gets its
/// uplink and a DHCP lease; ctrl-alt-del reboots and the box comes back without growing
/// again; the power button powers off cleanly.
#[test]
fn first_boot_unikernels_reboot_and_power_button() {
    let img = ScratchImage::new("cycle");
    img.provision(SERVICES, &["hello", "time"]);
    let mut vm = ok(Qemu::boot(&img.config()));

    ok(vm.wait_for("petrel-init: modules ready", BOOT));
    let ready = ok(vm.wait_for("petrel-init: ready (+", BOOT));
    eprintln!("first boot: {ready} (QEMU up {:?})", vm.elapsed());
    let serial = vm.serial();
    let line = |needle: &str| {
        serial
            .lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no {needle:?} on the console:\n{serial}"))
            .to_string()
    };
    assert!(line("petrel-init: data: grown from").contains("MiB to "));
    let modules = line("petrel-init: modules: loaded ");
    let loaded: Vec<&str> = modules.split_whitespace().collect();
    for m in [
        "virtio_net",
        "virtio_blk",
        "tun",
        "bridge",
        "kvm",
        "vfat",
        "ext4",
        "i6300esb",
    ] {
        assert!(loaded.contains(&m), "module {m} not loaded: {modules}");
    }
    assert!(
        loaded.contains(&"kvm_amd") || loaded.contains(&"kvm_intel"),
        "a KVM vendor module: {modules}"
    );
    line("petrel-init: hostname: qemu-test");
    let bridge = line("petrel-init: net: bridge service");
    assert!(bridge.contains("eth0"), "the uplink is enslaved: {bridge}");
    ok(vm.wait_seen("Hello, world", STEP));
    ok(vm.wait_seen("time: OK", STEP));
    let serial = vm.serial();
    assert!(
        serial.contains("args: from qemu"),
        "hello got its arguments"
    );
    ok(vm.wait_seen(
        "petrel-dhcp: service: bound 10.0.2.15/24 via 10.0.2.2",
        STEP,
    ));

    ok(vm.ctrl_alt_delete());
    ok(vm.wait_for("petrel-init: reboot: stopping services", STEP));
    ok(vm.wait_for("petrel-init: petrel-init", BOOT));
    vm.mark();
    let second = vm.serial();
    ok(vm.wait_for("petrel-init: ready (+", BOOT));
    ok(vm.wait_seen("Hello, world", STEP));
    let after = vm.serial();
    let second_boot = &after[second.rfind("petrel-init: petrel-init").unwrap_or(0)..];
    assert!(
        !second_boot.contains("data: grown from"),
        "the data partition grows only once"
    );

    ok(vm.power_button());
    ok(vm.wait_for("petrel-init: poweroff: stopping services", STEP));
    let st = ok(vm.wait_exit(STEP));
    assert!(st.success(), "QEMU exits 0 after a guest poweroff: {st}");
    let serial = vm.serial();
    assert!(
        serial.contains("unmounted /var/lib/petrel"),
        "clean unmount before poweroff"
    );
}

/// A config that does not parse is reported and the defaults are used: the box still
/// boots to ready and takes a DHCP lease on the service bridge.
#[test]
fn broken_config_still_boots_to_a_reachable_box() {
    let img = ScratchImage::new("broken");
    img.put_raw("petrel/config.toml", b"hostname = = \"oops\"\n[network\n");
    let mut vm = ok(Qemu::boot(&img.config()));
    let line = ok(vm.wait_for("petrel-init: config:", BOOT));
    assert!(line.contains("line 1"), "the error names its line: {line}");
    ok(vm.wait_for("petrel-init: ready (+", STEP));
    ok(vm.wait_seen("petrel-dhcp: service: bound", STEP));
}

/// A network namespace with the VM's tap and a DHCP server on it, removed on drop
/// (dnsmasq first).
struct Netns {
    ns: petrel_test_support::Netns,
    dnsmasq: Option<std::process::Child>,
}

impl Netns {
    fn new(tag: &str) -> Netns {
        Netns {
            ns: petrel_test_support::Netns::new("petrel-qt-", tag),
            dnsmasq: None,
        }
    }

    fn name(&self) -> &str {
        self.ns.name()
    }

    fn ip(&self, args: &[&str]) -> String {
        self.ns.ip(args)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Some(mut d) = self.dnsmasq.take() {
            let _ = d.kill();
            let _ = d.wait();
        }
    }
}

/// The uplink on a real link: QEMU's NIC is a tap in a namespace the test made, with
/// dnsmasq serving DHCP there. The appliance's service bridge takes a lease and answers
/// ping from the host side.
#[test]
fn service_bridge_takes_a_lease_and_answers_ping() {
    let img = ScratchImage::new("net");
    let mut ns = Netns::new("net");
    let mut cfg = img.config();
    cfg.wrapper = vec![
        "ip".into(),
        "netns".into(),
        "exec".into(),
        ns.name().to_owned(),
    ];
    cfg.netdev = Some("tap,id=net0,ifname=qtap0,script=no,downscript=no".into());
    let mut vm = ok(Qemu::boot(&cfg));

    // QEMU made the tap; give the host side its address and a DHCP server.
    ns.ip(&["link", "set", "qtap0", "up"]);
    ns.ip(&["addr", "add", "10.88.0.1/24", "dev", "qtap0"]);
    let leases = std::env::temp_dir().join(format!("{}.leases", ns.name()));
    let dnsmasq = Command::new("ip")
        .args([
            "netns",
            "exec",
            ns.name(),
            "dnsmasq",
            "--no-daemon",
            "--conf-file=/dev/null",
        ])
        .args([
            "--interface=qtap0",
            "--bind-interfaces",
            "--port=0",
            "--no-resolv",
        ])
        .arg("--dhcp-range=10.88.0.50,10.88.0.60,255.255.255.0,1h")
        .arg(format!("--dhcp-leasefile={}", leases.display()))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("dnsmasq (Debian package dnsmasq-base; run `make deps`)");
    ns.dnsmasq = Some(dnsmasq);

    let bound = ok(vm.wait_for("petrel-dhcp: service: bound 10.88.0.", BOOT));
    let addr = bound
        .split_whitespace()
        .find_map(|w| w.strip_suffix("/24"))
        .unwrap_or_else(|| panic!("no address in {bound:?}"))
        .to_string();
    let ping = Command::new("ip")
        .args([
            "netns",
            "exec",
            ns.name(),
            "ping",
            "-c",
            "3",
            "-W",
            "5",
            &addr,
        ])
        .output()
        .expect("ping");
    assert!(
        ping.status.success(),
        "ping {addr}: {}\n{}",
        String::from_utf8_lossy(&ping.stdout),
        vm.serial()
    );
    // The host side learnt the appliance's bridge MAC, not the NIC's.
    let neigh = ns.ip(&["neigh", "show", &addr]);
    assert!(neigh.contains("lladdr"), "{neigh}");
    let _ = std::fs::remove_file(leases);
}
