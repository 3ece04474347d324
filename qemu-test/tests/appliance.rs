//! The appliance from the operator's side: a box provisioned with an operator CA, a
//! device certificate and the admin identity `ops`, driven from the host with the real
//! `petrelctl` over mutual TLS (QEMU forwards a host port to the box's port 1025). It
//! creates the smoltcp HTTP unikernel, reads its console, fetches its page, reboots the
//! box and finds it running again, reads the previous boot's log, destroys it, reboots and
//! finds it gone; creates it again with the same MAC, factory-resets the box and finds it
//! empty but reachable at the same address with the same MACs; finally powers it off, and
//! QEMU exits 0.
//!
//! One boot sequence (four boots) in one test: under TCG each boot takes 15–40 s here.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use petrel_qemu_test::{Config, Qemu, default_image, free_port, http_get};
use petrel_test_support::Scratch;

mod common;
use common::{guest, release_bin, run};

/// Generous: TCG on a shared two-core machine.
const BOOT: Duration = Duration::from_secs(240);
const STEP: Duration = Duration::from_secs(120);
/// The unikernel's address on the service bridge (QEMU's user network is 10.0.2.0/24).
const WEB_ADDR: &str = "10.0.2.100";
/// What the smoltcp example serves.
const PAGE: &str = "Hello from a Petrel unikernel";

fn ok<T>(r: petrel_qemu_test::Result<T>) -> T {
    r.unwrap_or_else(|e| panic!("{e}"))
}

/// `petrelctl` with a settings file pointing at the box.
struct Ctl {
    bin: PathBuf,
    settings: PathBuf,
}

impl Ctl {
    fn output(&self, args: &[&str]) -> Output {
        Command::new(&self.bin)
            .env("PETRELCTL_CONFIG", &self.settings)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("petrelctl {args:?}: {e}"))
    }

    /// Runs a command that must succeed; returns its stdout.
    fn ok(&self, args: &[&str], vm: &Qemu) -> String {
        let o = self.output(args);
        assert!(
            o.status.success(),
            "petrelctl {args:?} failed ({}): {}{}\nserial console:\n{}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr),
            vm.serial()
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Retries `args` until `done` accepts its output (petreld comes up a little after
    /// PID 1's `ready`; a unikernel's console a little after its start).
    fn until(
        &self,
        args: &[&str],
        timeout: Duration,
        vm: &Qemu,
        done: impl Fn(&Output) -> bool,
    ) -> Output {
        let deadline = Instant::now() + timeout;
        loop {
            let o = self.output(args);
            if done(&o) {
                return o;
            }
            assert!(
                Instant::now() < deadline,
                "petrelctl {args:?}: not as expected after {timeout:?}: {}\n{}{}\nserial console:\n{}",
                o.status,
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr),
                vm.serial()
            );
            std::thread::sleep(Duration::from_secs(2));
        }
    }

    /// Waits until the box answers over TLS, then returns `info NAME` as JSON, or `None`
    /// when it says there is no such unikernel (exit code 4).
    fn info(&self, name: &str, vm: &Qemu) -> Option<serde_json::Value> {
        self.until(&["info"], BOOT, vm, |o| o.status.success());
        let o = self.output(&["--json", "info", name]);
        match o.status.code() {
            Some(0) => Some(serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
                panic!(
                    "info {name} --json: {e}: {}",
                    String::from_utf8_lossy(&o.stdout)
                )
            })),
            Some(4) => None,
            _ => panic!(
                "info {name}: {}: {}{}",
                o.status,
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        }
    }
}

/// Fetches the unikernel's page through the forwarded port until it answers.
fn wait_page(port: u16, vm: &Qemu) -> String {
    let deadline = Instant::now() + STEP;
    loop {
        match http_get(port, "/", Duration::from_secs(5)) {
            Ok(r) if r.contains(PAGE) => return r,
            r => assert!(
                Instant::now() < deadline,
                "no page from {WEB_ADDR}:80 after {STEP:?}: {r:?}\nserial console:\n{}",
                vm.serial()
            ),
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Waits for a reboot asked over the management protocol: petreld stops first, cleanly
/// and within PID 1's grace period (it stops every unikernel and saves its state), then
/// the other services, then the box comes back to `ready`.
fn wait_reboot(vm: &mut Qemu) {
    ok(vm.wait_for("petrel-init: reboot: stopping petreld", STEP));
    let from = vm.serial().len();
    ok(vm.wait_for("petrel-init: reboot: stopping services", STEP));
    let serial = vm.serial();
    let between = serial.get(from..).unwrap_or_default();
    let between = &between[..between
        .find("petrel-init: reboot: stopping services")
        .unwrap_or(between.len())];
    assert!(
        between
            .lines()
            .any(|l| l.contains("petrel-init: petreld (pid") && l.contains("exited with status 0")),
        "petreld did not stop cleanly within petrel-init's grace period after SIGTERM:\n{between}"
    );
    ok(vm.wait_for("petrel-init: petrel-init", BOOT));
    ok(vm.wait_for("petrel-init: ready (+", BOOT));
}

/// Waits for the reboot a factory reset ends with: petreld wipes the data partition,
/// then asks PID 1 to reboot (it has already stopped every unikernel itself).
fn wait_factory_reboot(vm: &mut Qemu) {
    ok(vm.wait_for("factory reset done: rebooting", STEP));
    ok(vm.wait_for("petrel-init: reboot: stopping services", STEP));
    ok(vm.wait_for("petrel-init: petrel-init", BOOT));
    ok(vm.wait_for("petrel-init: ready (+", BOOT));
}

/// The MAC of the unikernel's first network device, from `info --json`.
fn first_mac(info: &serde_json::Value) -> String {
    info["devices"][0]["mac"]
        .as_str()
        .unwrap_or_else(|| panic!("no MAC in {info}"))
        .to_owned()
}

/// `petrelctl`'s exit status and both outputs, for a command that must fail.
fn failing(ctl: &Ctl, args: &[&str]) -> (Option<i32>, String) {
    let o = ctl.output(args);
    (
        o.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

#[test]
fn petrelctl_drives_the_box_over_tls() {
    let s = Scratch::new("petrel-qt-appliance");
    let ctl_bin = release_bin("petrelctl");
    // The operator's CA, the admin's identity, the device's certificate: all made with
    // petrelctl, as an operator would.
    let ca = s.path("ca");
    let ops = s.path("ops");
    let device = s.path("device");
    let path = |p: &Path| p.to_str().unwrap().to_owned();
    run(Command::new(&ctl_bin).args(["ca", "init", &path(&ca), "--name", "test-operator-ca"]));
    run(Command::new(&ctl_bin).args([
        "ca",
        "issue",
        "ops",
        "--ca",
        &path(&ca),
        "--out",
        &path(&ops),
    ]));
    run(Command::new(&ctl_bin).args([
        "ca",
        "issue",
        "petrel",
        "--ca",
        &path(&ca),
        "--out",
        &path(&device),
        "--device",
        "petrel",
    ]));

    // A scratch copy of the image, provisioned with them.
    let image = s.path("petrel.img");
    run(Command::new("cp")
        .arg("--sparse=always")
        .arg(default_image())
        .arg(&image));
    let config = s.path("config.toml");
    std::fs::write(&config, "hostname = \"petrel\"\n").unwrap();
    run(Command::new(release_bin("petrel-image"))
        .arg("provision")
        .arg(&image)
        .arg("--config")
        .arg(&config)
        .arg("--trust")
        .arg(ca.join("ca.pem"))
        .arg("--device-cert")
        .arg(device.join("cert.pem"))
        .arg("--device-key")
        .arg(device.join("key.pem"))
        .args(["--admin", "ops"]));

    let mgmt_port = free_port().unwrap();
    let web_port = free_port().unwrap();
    let settings = s.path("petrelctl.toml");
    std::fs::write(
        &settings,
        format!(
            "host = \"127.0.0.1:{mgmt_port}\"\nidentity = \"{}\"\nname = \"petrel\"\ntimeout_s = 60\n",
            path(&ops)
        ),
    )
    .unwrap();
    let ctl = Ctl {
        bin: ctl_bin,
        settings,
    };

    let mut cfg = Config::new(&image);
    cfg.netdev = Some(format!(
        "user,id=net0,hostfwd=tcp:127.0.0.1:{mgmt_port}-:1025,hostfwd=tcp:127.0.0.1:{web_port}-{WEB_ADDR}:80"
    ));
    let mut vm = ok(Qemu::boot(&cfg));
    ok(vm.wait_for("petrel-init: ready (+", BOOT));
    ok(vm.wait_seen("petrel-init: petreld started", STEP));

    // Nothing yet; then create the network unikernel from the host.
    assert_eq!(ctl.info("web", &vm), None);
    let net = guest("net");
    let ipv4 = format!("--ipv4={WEB_ADDR}/24");
    let create = [
        "create",
        "web",
        net.to_str().unwrap(),
        "--net",
        "service0=service",
        "--arg",
        &ipv4,
    ];
    ctl.ok(&create, &vm);
    let info = ctl.info("web", &vm).expect("web exists after create");
    let mac = first_mac(&info);
    assert_eq!(info["name"], "ops:web", "{info}");
    assert_eq!(info["state"], "running", "{info}");
    assert_eq!(info["devices"][0]["bridge"], "service", "{info}");

    // Its console, then its page.
    ctl.until(&["console", "web", "--lines", "50"], STEP, &vm, |o| {
        String::from_utf8_lossy(&o.stdout).contains("listening on TCP port 80")
    });
    wait_page(web_port, &vm);
    let console = ctl.ok(&["console", "web", "--lines", "50"], &vm);
    assert!(
        console.contains("\"GET /\" 200"),
        "the request is logged: {console}"
    );

    // Reboot over the protocol: it comes back running, and serves again.
    ctl.ok(&["reboot"], &vm);
    wait_reboot(&mut vm);
    let info = ctl.info("web", &vm).expect("web survives a reboot");
    assert_eq!(info["state"], "running", "{info}");
    assert_eq!(first_mac(&info), mac, "the MAC is stable across reboots");
    wait_page(web_port, &vm);

    // The system log: this boot's, and the previous one's, which ends with the reboot
    // asked above (kept on the data partition as boot.log.1).
    let current = ctl.ok(&["logs"], &vm);
    assert!(
        current.contains("petreld started") && !current.contains("reboot: stopping petreld"),
        "logs shows this boot only:\n{current}"
    );
    let previous = ctl.ok(&["logs", "--previous"], &vm);
    assert!(
        previous.contains("petreld started") && previous.contains("reboot: stopping petreld"),
        "logs --previous shows the boot that was rebooted:\n{previous}"
    );
    let last = ctl.ok(&["logs", "--previous", "--lines", "3"], &vm);
    assert_eq!(last.lines().count(), 3, "--lines 3:\n{last}");
    assert!(previous.ends_with(&last), "--lines gives the end:\n{last}");
    // No update has ever been tried on this box: no failed trial boot to show.
    let (code, out) = failing(&ctl, &["logs", "--failed-trial"]);
    assert_eq!(code, Some(4), "logs --failed-trial: {out}");
    assert!(out.contains("no failed trial boot"), "{out}");

    // Destroy it, reboot: gone for good.
    ctl.ok(&["destroy", "web"], &vm);
    assert_eq!(ctl.info("web", &vm), None);
    ctl.ok(&["reboot"], &vm);
    wait_reboot(&mut vm);
    assert_eq!(
        ctl.info("web", &vm),
        None,
        "a destroyed unikernel never comes back"
    );
    let list = ctl.ok(&["--json", "info"], &vm);
    assert!(!list.contains("ops:web"), "{list}");

    // Created again: the same MAC, derived from the same (unikernel, device) and secret.
    ctl.ok(&create, &vm);
    let info = ctl
        .info("web", &vm)
        .expect("web exists after the second create");
    assert_eq!(
        first_mac(&info),
        mac,
        "same unikernel, same device, same MAC"
    );
    ctl.ok(&["block", "create", "disk", "1M"], &vm);

    // Factory reset: refused without --yes (nothing is erased); with it, the box stops
    // every unikernel, wipes its data partition and reboots.
    let (code, out) = failing(&ctl, &["factory-reset"]);
    assert_eq!(code, Some(2), "factory-reset without --yes: {out}");
    assert!(out.contains("--yes"), "{out}");
    assert!(
        ctl.info("web", &vm).is_some(),
        "nothing erased without --yes"
    );
    ctl.ok(&["factory-reset", "--yes"], &vm);
    wait_factory_reboot(&mut vm);
    assert_eq!(
        ctl.info("web", &vm),
        None,
        "a factory reset erases unikernels"
    );
    let list: serde_json::Value = serde_json::from_str(&ctl.ok(&["--json", "info"], &vm)).unwrap();
    assert_eq!(list.as_array().map(Vec::len), Some(0), "{list}");
    let blocks = ctl.ok(&["block", "list"], &vm);
    assert!(
        !blocks.contains("disk"),
        "a factory reset erases block devices: {blocks}"
    );
    let (code, out) = failing(&ctl, &["logs", "--previous"]);
    assert_eq!(
        code,
        Some(4),
        "the kept logs went with the data partition: {out}"
    );
    // The admin comes from the ESP's configuration and the box's identity from `keys/`,
    // both kept: it answered above at the same address (the bridge's MAC, so its DHCP
    // lease, is unchanged), and the same unikernel gets the same MAC again.
    ctl.ok(&create, &vm);
    let info = ctl.info("web", &vm).expect("web exists after the reset");
    assert_eq!(
        first_mac(&info),
        mac,
        "a factory reset keeps the MAC secret"
    );
    wait_page(web_port, &vm);

    // Power off over the protocol: petreld stops first and cleanly, then QEMU exits 0.
    ctl.ok(&["poweroff"], &vm);
    ok(vm.wait_for("petrel-init: poweroff: stopping petreld", STEP));
    ok(vm.wait_for("petrel-init: poweroff: stopping services", STEP));
    let status = ok(vm.wait_exit(STEP));
    assert!(status.success(), "QEMU exits 0 after a poweroff: {status}");
    let serial = vm.serial();
    let stop = serial
        .rfind("petrel-init: poweroff: stopping petreld")
        .unwrap_or_default();
    assert!(
        serial[stop..]
            .lines()
            .any(|l| l.contains("petrel-init: petreld (pid") && l.contains("exited with status 0")),
        "petreld stopped cleanly before the poweroff:\n{}",
        &serial[stop..]
    );
}
