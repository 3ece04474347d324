//! The appliance from the operator's side: a box provisioned with an operator CA, a
//! device certificate and the admin identity `ops`, driven from the host with the real
//! `petrelctl` over mutual TLS (QEMU forwards a host port to the box's port 1025). It
//! creates the smoltcp HTTP unikernel, reads its console, fetches its page, reboots the
//! box and finds it running again, destroys it, reboots and finds it gone.
//!
//! One boot sequence (three boots) in one test: under TCG each boot takes 15–40 s here.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use petrel_qemu_test::{Config, Qemu, default_image, free_port, http_get};

/// Generous: TCG on a shared two-core machine.
const BOOT: Duration = Duration::from_secs(240);
const STEP: Duration = Duration::from_secs(120);
/// The unikernel's address on the service bridge (QEMU's user network is 10.0.2.0/24).
const WEB_ADDR: &str = "10.0.2.100";
/// What the smoltcp example serves.
const PAGE: &str = "Hello from a Petrel unikernel";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn release_bin(name: &str) -> PathBuf {
    let p = repo().join(format!("target/x86_64-unknown-linux-musl/release/{name}"));
    assert!(p.is_file(), "{} is missing: run `make build`", p.display());
    p
}

fn guest(name: &str) -> PathBuf {
    let p = repo().join(format!("target/guests/{name}.hvt"));
    assert!(p.is_file(), "{} is missing: run `make guests`", p.display());
    p
}

fn run(cmd: &mut Command) -> String {
    let o = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        o.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn ok<T>(r: petrel_qemu_test::Result<T>) -> T {
    r.unwrap_or_else(|e| panic!("{e}"))
}

/// A scratch directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let p = std::env::temp_dir().join(format!("petrel-qt-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Scratch(p)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
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

#[test]
fn petrelctl_creates_reboots_and_destroys_over_tls() {
    let s = Scratch::new("appliance");
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
    ctl.ok(
        &[
            "create",
            "web",
            net.to_str().unwrap(),
            "--net",
            "service0=service",
            "--arg",
            &format!("--ipv4={WEB_ADDR}/24"),
        ],
        &vm,
    );
    let info = ctl.info("web", &vm).expect("web exists after create");
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
    wait_page(web_port, &vm);

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
}
