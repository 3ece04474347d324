//! The harness of the daemon suites: a network namespace with a `service` bridge, a
//! scratch data directory, test certificates (`petrel_proto::tls::ca`), the built
//! `petreld` run inside the namespace (`ip netns exec`), clients over its Unix socket and
//! over TLS on the namespace's own loopback, kill -9 and restart.
//!
//! Everything fails loudly, never skips: no root, no KVM, no `ip`, a guest or the tender
//! not built — each is a failed test that names the fix. Guards kill the daemon and delete
//! the namespace even when a test fails; namespaces left by a killed run are removed by
//! the next one.
#![allow(dead_code)]

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use petrel_proto::msg::{
    BlockAttach, BlockCommand, BlockInfo, Chunk, Command as Cmd, ConsoleHistory, CreateSpec, Hello,
    ImageSource, Message, NetDevice, Policy, PolicyCommand, ReplyBody, Request, RequestId,
    RestartPolicy, Sha256Digest, Stream, UnikernelInfo, UnikernelState,
};
use petrel_proto::name::{FullName, Identity, UnikernelName};
use petrel_proto::tls::{self, CertificateDer, ServerCheck, ca};
use petrel_test_support as support;
use petrelctl::client::{Client, ClientError, Endpoint};

pub use petrel_proto::msg::ErrorKind;

/// Prefix of the namespaces (and scratch directories) these suites create.
const NS_PREFIX: &str = "petrel-g-";
/// The device name in the test device certificate (the TLS server name).
pub const DEVICE_NAME: &str = "petrel-test.invalid";
/// The port `petreld` listens on inside each namespace (each has its own loopback, so
/// every daemon can use the same one).
pub const TLS_PORT: u16 = 1025;
/// The longest wait for the daemon's socket after a start.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a client waits to connect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------
// The environment.

/// Fails loudly unless this process is root with a usable `/dev/kvm`, `/dev/net/tun` and
/// `ip`.
pub fn require_env() {
    support::require_root("the daemon suites create network namespaces, bridges and taps");
    support::require_kvm();
    support::require_tun();
    support::require_ip();
}

/// The `petreld` binary under test: cargo's for the test suites; for the bench (an
/// example, which cargo gives no binary path) the `petreld` of the same target directory.
pub fn petreld_bin() -> PathBuf {
    if let Some(p) = option_env!("CARGO_BIN_EXE_petreld") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current exe");
    let p = exe
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("petreld"))
        .expect("the example lives in target/<triple>/<profile>/examples");
    assert!(
        p.is_file(),
        "{} is missing: build it first (`make tender`, or `cargo build --release --bins`)",
        p.display()
    );
    p
}

/// The tender: `$PETREL_TENDER`, else `petrel-hvt` next to `petreld` (same target dir).
pub fn tender_bin() -> PathBuf {
    let p = std::env::var_os("PETREL_TENDER")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            petreld_bin()
                .parent()
                .expect("petreld has a directory")
                .join("petrel-hvt")
        });
    assert!(
        p.is_file(),
        "the tender {} is missing: run `make tender` (or `cargo build --release --bins`), \
         or point PETREL_TENDER at it",
        p.display()
    );
    p
}

/// Path of example unikernel `name` (`make guests`); a missing guest fails the test.
pub fn guest(name: &str) -> PathBuf {
    let dir = std::env::var_os("PETREL_GUESTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/guests"));
    let p = dir.join(format!("{name}.hvt"));
    assert!(
        p.is_file(),
        "guest {} is missing: run `make guests` first",
        p.display()
    );
    p
}

/// Milliseconds since the Unix epoch.
pub fn now_unix_ms() -> u64 {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    u64::try_from(d.as_millis()).expect("ms fit u64")
}

/// Polls `f` every 50 ms until it returns `Some`, failing with `what` (and the daemon log
/// if given) after `timeout`.
#[track_caller]
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------------------
// The namespace.

/// Deletes namespaces left by earlier runs that were killed before their guards ran, and
/// their scratch roots (named after them).
fn remove_stale() {
    for name in support::Netns::sweep_stale(NS_PREFIX) {
        let _ = fs::remove_dir_all(std::env::temp_dir().join(&name));
    }
}

/// A network namespace with its loopback up and a bridge `service`; deleted on drop.
pub struct Netns {
    /// Its name (`petrel-g-<pid>-<tag>-<n>`).
    pub name: String,
    guard: support::Netns,
}

impl Netns {
    /// Makes the namespace for test `tag`.
    pub fn new(tag: &str) -> Netns {
        require_env();
        remove_stale();
        let guard = support::Netns::new(NS_PREFIX, tag);
        guard.loopback_up();
        let ns = Netns {
            name: guard.name().to_owned(),
            guard,
        };
        ns.add_bridge("service");
        ns
    }

    /// `ip -n NS ARGS`, failing on an error.
    pub fn ip(&self, args: &[&str]) {
        self.guard.ip(args);
    }

    /// Adds bridge `name`, up.
    pub fn add_bridge(&self, name: &str) {
        self.ip(&["link", "add", name, "type", "bridge"]);
        self.ip(&["link", "set", name, "up"]);
    }

    /// The links of the namespace: (name, master) pairs.
    pub fn links(&self) -> Vec<(String, Option<String>)> {
        let text = self.guard.ip(&["-j", "link", "show"]);
        let v: serde_json::Value = serde_json::from_str(&text).expect("ip -j output");
        v.as_array()
            .map(|a| {
                a.iter()
                    .map(|l| {
                        (
                            l["ifname"].as_str().unwrap_or_default().to_owned(),
                            l["master"].as_str().map(str::to_owned),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The links enslaved to `bridge`.
    pub fn ports_of(&self, bridge: &str) -> Vec<String> {
        self.links()
            .into_iter()
            .filter(|(_, m)| m.as_deref() == Some(bridge))
            .map(|(n, _)| n)
            .collect()
    }

    /// Runs `f` on a thread that has entered the namespace; sockets it makes stay there.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        self.guard.run(f)
    }
}

// ---------------------------------------------------------------------------------------
// Certificates.

/// A validity window from `from` to `to` seconds relative to now.
pub fn validity(from_s: i64, to_s: i64) -> ca::Validity {
    let now = i64::try_from(now_unix_ms() / 1000).expect("now fits i64");
    ca::Validity {
        not_before_unix: now + from_s,
        not_after_unix: now + to_s,
    }
}

/// The test PKI: an operator CA (the daemon's trust anchor) and the device certificate.
pub struct Pki {
    /// The operator CA (self-signed).
    pub ca: ca::Credentials,
    /// The device's certificate for [`DEVICE_NAME`], issued by `ca`.
    pub device: ca::Credentials,
}

impl Pki {
    /// Mints a fresh CA named `ca_name` and a device certificate.
    pub fn new(ca_name: &str) -> Pki {
        let ca = ca::init(ca_name, &ca::Validity::standard()).expect("mint the test CA");
        let device = ca::issue(
            &ca,
            "petrel-test-device",
            ca::Kind::Device {
                hostname: DEVICE_NAME.to_owned(),
            },
            &ca::Validity::standard(),
        )
        .expect("mint the device certificate");
        Pki { ca, device }
    }

    /// The anchor (the CA's certificate), DER.
    pub fn anchors(&self) -> Vec<CertificateDer<'static>> {
        tls::certs_from_pem(self.ca.chain_pem.as_bytes()).expect("CA PEM")
    }

    /// Credentials for identity `path` (`ops`, `ops/alice`): a sub-CA per component but
    /// the last, a client certificate for the last, all within `valid`.
    pub fn identity_with(&self, path: &str, valid: &ca::Validity) -> ca::Credentials {
        let parts: Vec<&str> = path.split('/').collect();
        let (last, above) = parts.split_last().expect("a non-empty identity");
        let mut issuer = self.ca.clone();
        for cn in above {
            issuer = ca::issue(&issuer, cn, ca::Kind::SubCa, &ca::Validity::standard())
                .expect("mint a sub-CA");
        }
        ca::issue(&issuer, last, ca::Kind::Client, valid).expect("mint a client certificate")
    }

    /// Credentials for identity `path`, valid now.
    pub fn identity(&self, path: &str) -> ca::Credentials {
        self.identity_with(path, &ca::Validity::standard())
    }
}

// ---------------------------------------------------------------------------------------
// The daemon.

/// How to start a daemon.
#[derive(Clone, Debug)]
pub struct Options {
    /// Listen on TLS (`--listen 127.0.0.1:TLS_PORT --trust`).
    pub tls: bool,
    /// With TLS, pass the test device certificate (`--cert --key`); without, the daemon
    /// makes its own self-signed one.
    pub device_cert: bool,
    /// More arguments.
    pub extra: Vec<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            tls: true,
            device_cert: true,
            extra: Vec::new(),
        }
    }
}

/// A `petreld` in its own namespace with a scratch data directory. Dropping it kills the
/// daemon (and with it its tenders), deletes the namespace and the directory.
pub struct Daemon {
    child: Option<Child>,
    /// The scratch root: `data/`, `petreld.sock`, `pki/`, `petreld.log`.
    pub root: PathBuf,
    /// The test PKI.
    pub pki: Pki,
    /// How it was started (restarts reuse it).
    pub options: Options,
    /// Its namespace (dropped after the daemon).
    pub ns: Netns,
}

impl Daemon {
    /// Makes a namespace and a PKI for `tag` and starts `petreld` with `options`.
    pub fn start_with(tag: &str, options: Options) -> Daemon {
        let ns = Netns::new(tag);
        let root = std::env::temp_dir().join(&ns.name);
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(root.join("data")).expect("scratch data dir");
        fs::create_dir_all(root.join("pki")).expect("scratch pki dir");
        let pki = Pki::new("petrel-test-ca");
        let write = |name: &str, text: &str| {
            let p = root.join("pki").join(name);
            fs::write(&p, text).expect("write pki file");
            fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).expect("chmod");
        };
        write("trust.pem", &pki.ca.chain_pem);
        write("device.crt.pem", &pki.device.chain_pem);
        write("device.key.pem", &pki.device.key_pem);
        let mut d = Daemon {
            child: None,
            root,
            pki,
            options,
            ns,
        };
        d.spawn();
        d
    }

    /// [`Daemon::start_with`] default options (Unix socket and TLS).
    pub fn start(tag: &str) -> Daemon {
        Daemon::start_with(tag, Options::default())
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    /// The Unix socket.
    pub fn socket(&self) -> PathBuf {
        self.root.join("petreld.sock")
    }

    fn log_path(&self) -> PathBuf {
        self.root.join("petreld.log")
    }

    /// Everything the daemon wrote to stderr (over all its starts).
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The daemon's pid, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "the daemon is already running");
        let _ = fs::remove_file(self.socket());
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("daemon log");
        let _ = writeln!(&log, "---- harness: starting petreld ----");
        let pki = self.root.join("pki");
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns.name])
            .arg(petreld_bin())
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--socket")
            .arg(self.socket())
            .arg("--tender")
            .arg(tender_bin());
        if self.options.tls {
            cmd.arg("--listen")
                .arg(format!("127.0.0.1:{TLS_PORT}"))
                .arg("--trust")
                .arg(pki.join("trust.pem"));
            if self.options.device_cert {
                cmd.arg("--cert")
                    .arg(pki.join("device.crt.pem"))
                    .arg("--key")
                    .arg(pki.join("device.key.pem"));
            }
        }
        cmd.args(&self.options.extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log);
        // SAFETY: the closure runs in the child between fork and exec and only makes one
        // async-signal-safe system call (prctl). `ip netns exec` then execs petreld, which
        // keeps the death signal: a killed test run leaves no daemon behind.
        unsafe {
            cmd.pre_exec(|| {
                rustix::process::set_parent_process_death_signal(Some(
                    rustix::process::Signal::KILL,
                ))
                .map_err(io::Error::from)
            });
        }
        let child = cmd.spawn().expect("spawn ip netns exec petreld");
        self.child = Some(child);
        self.wait_ready();
    }

    /// Waits until the Unix socket accepts a connection (and the TLS port, when on).
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                panic!(
                    "petreld exited during start-up ({status})\n---- its log ----\n{}",
                    self.log()
                );
            }
            if std::os::unix::net::UnixStream::connect(self.socket()).is_ok() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "petreld did not open its socket {} within {START_TIMEOUT:?}\n---- its log ----\n{}",
                self.socket().display(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        if self.options.tls {
            let addr = format!("127.0.0.1:{TLS_PORT}");
            let ok = self.ns.run(move || {
                let deadline = Instant::now() + START_TIMEOUT;
                while Instant::now() < deadline {
                    if std::net::TcpStream::connect(&addr).is_ok() {
                        return true;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                false
            });
            assert!(
                ok,
                "petreld did not listen on 127.0.0.1:{TLS_PORT}\n---- its log ----\n{}",
                self.log()
            );
        }
    }

    /// SIGKILL: no chance to save or stop anything (its tenders die by PDEATHSIG).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the daemon again over the same data directory and namespace.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// Sends SIGTERM and waits (at most `timeout`) for the exit.
    pub fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        let mut c = self.child.take().expect("the daemon is running");
        let pid = rustix::process::Pid::from_raw(i32::try_from(c.id()).expect("pid fits i32"))
            .expect("non-zero pid");
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = c.try_wait().expect("wait petreld") {
                return s;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                panic!(
                    "petreld did not exit within {timeout:?} of SIGTERM\n---- its log ----\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the daemon process still runs.
    pub fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// A client over the Unix socket (caller `Local`).
    pub fn local(&self) -> Client {
        let ep = Endpoint::Unix(self.socket());
        Client::connect(&ep, CONNECT_TIMEOUT).unwrap_or_else(|e| {
            panic!(
                "connect to {}: {e}\n---- petreld log ----\n{}",
                self.socket().display(),
                self.log()
            )
        })
    }

    /// A TLS client presenting `creds`, checking the device against this daemon's CA.
    pub fn try_remote(&self, creds: &ca::Credentials) -> Result<Client, ClientError> {
        self.try_remote_checked(creds, self.anchor_check())
    }

    /// The normal server check: the device name under this daemon's CA.
    pub fn anchor_check(&self) -> ServerCheck {
        ServerCheck::Anchor {
            anchors: self.pki.anchors(),
            name: DEVICE_NAME.to_owned(),
        }
    }

    /// A TLS client presenting `creds`, checking the server with `check`.
    pub fn try_remote_checked(
        &self,
        creds: &ca::Credentials,
        check: ServerCheck,
    ) -> Result<Client, ClientError> {
        let chain = tls::certs_from_pem(creds.chain_pem.as_bytes()).expect("client chain PEM");
        let key = tls::key_from_pem(creds.key_pem.as_bytes()).expect("client key PEM");
        let (config, server_name) = tls::client_config(check, chain, key).expect("client config");
        let ep = Endpoint::Tls {
            addr: format!("127.0.0.1:{TLS_PORT}"),
            config,
            server_name,
        };
        self.ns.run(move || Client::connect(&ep, CONNECT_TIMEOUT))
    }

    /// A TLS client for identity `path` (minted now).
    pub fn remote(&self, path: &str) -> Client {
        let creds = self.pki.identity(path);
        self.try_remote(&creds).unwrap_or_else(|e| {
            panic!(
                "TLS connect as {path}: {e}\n---- petreld log ----\n{}",
                self.log()
            )
        })
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!(
                "---- petreld log ({}) ----\n{}",
                self.root.display(),
                self.log()
            );
        }
        let _ = fs::remove_dir_all(&self.root);
    }
}

// ---------------------------------------------------------------------------------------
// Requests.

/// `owner:name`.
pub fn full(name: &str) -> FullName {
    name.parse()
        .unwrap_or_else(|e| panic!("{name:?} is no full name: {e}"))
}

/// An identity path.
pub fn identity(path: &str) -> Identity {
    Identity::new(path).unwrap_or_else(|e| panic!("{path:?} is no identity: {e}"))
}

/// A unikernel name.
pub fn uk_name(name: &str) -> UnikernelName {
    UnikernelName::new(name).unwrap_or_else(|e| panic!("{name:?} is no name: {e}"))
}

/// What to create; [`Spec::new`] then adjust the fields.
#[derive(Clone, Debug)]
pub struct Spec {
    /// `owner:name`.
    pub name: String,
    /// The image file.
    pub image: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// Guest memory.
    pub memory_mib: u32,
    /// CPUs counted.
    pub cpus: u16,
    /// (device, bridge).
    pub net: Vec<(String, String)>,
    /// (device, block device name).
    pub block: Vec<(String, String)>,
    /// Restart policy.
    pub restart: RestartPolicy,
    /// Start priority.
    pub priority: i32,
    /// Host CPUs.
    pub cpu_affinity: Vec<u16>,
}

impl Spec {
    /// Guest `guest` (an example name) as `name`, 8 MiB, never restarted.
    pub fn new(name: &str, guest_name: &str) -> Spec {
        Spec {
            name: name.to_owned(),
            image: guest(guest_name),
            args: Vec::new(),
            memory_mib: 8,
            cpus: 1,
            net: Vec::new(),
            block: Vec::new(),
            restart: RestartPolicy::Never,
            priority: 0,
            cpu_affinity: Vec::new(),
        }
    }

    /// The `net` example on the `service` bridge, with `--ipv4=ADDR/24` when given.
    pub fn net(name: &str, ipv4: Option<&str>) -> Spec {
        let mut s = Spec::new(name, "net");
        s.memory_mib = 16;
        s.net = vec![("service0".to_owned(), "service".to_owned())];
        s.args = ipv4
            .map(|a| vec![format!("--ipv4={a}/24")])
            .unwrap_or_default();
        s.restart = RestartPolicy::Never;
        s
    }

    /// With these arguments.
    pub fn args(mut self, args: &[&str]) -> Spec {
        self.args = args.iter().map(|a| (*a).to_owned()).collect();
        self
    }

    /// With this restart policy.
    pub fn restart(mut self, p: RestartPolicy) -> Spec {
        self.restart = p;
        self
    }

    /// The create request, given the image's size and digest.
    pub fn command(&self, size_bytes: u64, sha256: Sha256Digest) -> Cmd {
        Cmd::Create(Box::new(CreateSpec {
            name: full(&self.name),
            image: ImageSource::Upload { size_bytes, sha256 },
            args: self.args.clone(),
            memory_mib: self.memory_mib,
            cpus: self.cpus,
            devices: self
                .net
                .iter()
                .map(|(name, bridge)| NetDevice {
                    name: name.clone(),
                    bridge: bridge.clone(),
                })
                .collect(),
            blocks: self
                .block
                .iter()
                .map(|(name, dev)| BlockAttach {
                    name: name.clone(),
                    device: uk_name(dev),
                })
                .collect(),
            restart: self.restart.clone(),
            priority: self.priority,
            cpu_affinity: self.cpu_affinity.clone(),
        }))
    }
}

/// Uploads the image and creates the unikernel.
pub fn try_create(c: &mut Client, spec: &Spec) -> Result<UnikernelInfo, ClientError> {
    let bytes = fs::read(&spec.image).expect("read the guest image");
    let cmd = spec.command(bytes.len() as u64, Sha256Digest::of(&bytes));
    match c.upload(cmd, &mut bytes.as_slice(), &mut |_| {})? {
        ReplyBody::Unikernel(info) => Ok(*info),
        other => panic!("create {}: unexpected reply {other:?}", spec.name),
    }
}

/// [`try_create`], failing the test on an error.
#[track_caller]
pub fn create(c: &mut Client, spec: &Spec) -> UnikernelInfo {
    try_create(c, spec).unwrap_or_else(|e| panic!("create {}: {e}", spec.name))
}

/// `info` of one unikernel.
pub fn try_info(c: &mut Client, name: &str) -> Result<UnikernelInfo, ClientError> {
    match c.call(Cmd::Info {
        name: Some(full(name)),
    })? {
        ReplyBody::Unikernel(info) => Ok(*info),
        ReplyBody::Info(mut v) if v.len() == 1 => Ok(v.remove(0)),
        other => panic!("info {name}: unexpected reply {other:?}"),
    }
}

/// [`try_info`], failing the test on an error.
#[track_caller]
pub fn info(c: &mut Client, name: &str) -> UnikernelInfo {
    try_info(c, name).unwrap_or_else(|e| panic!("info {name}: {e}"))
}

/// `info` of every unikernel the caller may see.
pub fn info_all(c: &mut Client) -> Vec<UnikernelInfo> {
    match c.call(Cmd::Info { name: None }) {
        Ok(ReplyBody::Info(v)) => v,
        other => panic!("info: unexpected reply {other:?}"),
    }
}

/// Destroys a unikernel.
pub fn try_destroy(c: &mut Client, name: &str) -> Result<(), ClientError> {
    match c.call(Cmd::Destroy { name: full(name) })? {
        ReplyBody::Ok => Ok(()),
        other => panic!("destroy {name}: unexpected reply {other:?}"),
    }
}

/// [`try_destroy`], failing the test on an error.
#[track_caller]
pub fn destroy(c: &mut Client, name: &str) {
    try_destroy(c, name).unwrap_or_else(|e| panic!("destroy {name}: {e}"));
}

/// The console history (no follow) as text.
pub fn try_console(c: &mut Client, name: &str) -> Result<String, ClientError> {
    let mut out = Vec::new();
    c.download(
        Cmd::Console {
            name: full(name),
            history: ConsoleHistory::All,
            follow: false,
        },
        &mut out,
        &mut |_| {},
    )?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// [`try_console`], failing the test on an error.
#[track_caller]
pub fn console(c: &mut Client, name: &str) -> String {
    try_console(c, name).unwrap_or_else(|e| panic!("console {name}: {e}"))
}

/// Waits until the console of `name` contains `needle`; returns the console.
#[track_caller]
pub fn wait_console(c: &mut Client, name: &str, needle: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let text = console(c, name);
        if text.contains(needle) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "console of {name} lacks {needle:?} after {timeout:?}:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until `name`'s info satisfies `pred`; returns it.
#[track_caller]
pub fn wait_info(
    c: &mut Client,
    name: &str,
    what: &str,
    timeout: Duration,
    pred: impl Fn(&UnikernelInfo) -> bool,
) -> UnikernelInfo {
    let deadline = Instant::now() + timeout;
    loop {
        let i = info(c, name);
        if pred(&i) {
            return i;
        }
        assert!(
            Instant::now() < deadline,
            "{name}: not {what} after {timeout:?}; last info: {i:#?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until `name` runs (and has a pid).
#[track_caller]
pub fn wait_running(c: &mut Client, name: &str) -> UnikernelInfo {
    wait_info(c, name, "running", Duration::from_secs(15), |i| {
        i.state == UnikernelState::Running && i.pid.is_some()
    })
}

/// Waits until `name` is stopped for good.
#[track_caller]
pub fn wait_stopped(c: &mut Client, name: &str) -> UnikernelInfo {
    wait_info(c, name, "stopped", Duration::from_secs(15), |i| {
        i.state == UnikernelState::Stopped
    })
}

/// The error kind of a failed call; panics with the reply if it succeeded or failed
/// otherwise than with an error reply.
#[track_caller]
pub fn kind_of<T: std::fmt::Debug>(r: Result<T, ClientError>) -> (ErrorKind, String) {
    match r {
        Err(ClientError::Remote(e)) => (e.kind, e.message),
        other => panic!("expected an error reply, got {other:?}"),
    }
}

/// Asserts an error reply of `kind` whose message mentions `needle`.
#[track_caller]
pub fn assert_denied<T: std::fmt::Debug>(r: Result<T, ClientError>, kind: ErrorKind, needle: &str) {
    let (k, msg) = kind_of(r);
    assert_eq!(k, kind, "error kind (message: {msg:?})");
    assert!(
        msg.to_lowercase().contains(&needle.to_lowercase()),
        "the {k:?} message {msg:?} does not mention {needle:?}"
    );
}

/// Sets (as the caller) the policy of `who`.
pub fn try_policy(c: &mut Client, who: &str, policy: Policy) -> Result<(), ClientError> {
    match c.call(Cmd::Policy(PolicyCommand::Add {
        identity: identity(who),
        policy,
    }))? {
        ReplyBody::Ok => Ok(()),
        other => panic!("policy add {who}: unexpected reply {other:?}"),
    }
}

/// [`try_policy`], failing on an error.
#[track_caller]
pub fn set_policy(c: &mut Client, who: &str, policy: Policy) {
    try_policy(c, who, policy).unwrap_or_else(|e| panic!("policy add {who}: {e}"));
}

/// A generous policy: 64 unikernels, 4 GiB, 1 GiB of blocks, bridge `service`, CPUs 0-1.
pub fn roomy_policy() -> Policy {
    Policy {
        max_unikernels: 64,
        memory_mib: 4096,
        block_bytes: 1 << 30,
        bridges: vec!["service".to_owned()],
        cpus: vec![0, 1],
    }
}

/// Creates a block device.
pub fn try_block_create(
    c: &mut Client,
    name: &str,
    size_bytes: u64,
    sector_size: u32,
) -> Result<BlockInfo, ClientError> {
    match c.call(Cmd::Block(BlockCommand::Create {
        name: full(name),
        size_bytes,
        sector_size,
    }))? {
        ReplyBody::Block(b) => Ok(b),
        other => panic!("block create {name}: unexpected reply {other:?}"),
    }
}

/// Uploads `data` into block device `name`.
pub fn try_block_upload(c: &mut Client, name: &str, data: &[u8]) -> Result<(), ClientError> {
    let cmd = Cmd::Block(BlockCommand::Upload {
        name: full(name),
        size_bytes: data.len() as u64,
        sha256: Sha256Digest::of(data),
    });
    match c.upload(cmd, &mut { data }, &mut |_| {})? {
        ReplyBody::Ok => Ok(()),
        other => panic!("block upload {name}: unexpected reply {other:?}"),
    }
}

/// Downloads block device `name`.
pub fn try_block_download(c: &mut Client, name: &str) -> Result<Vec<u8>, ClientError> {
    let mut out = Vec::new();
    c.download(
        Cmd::Block(BlockCommand::Download { name: full(name) }),
        &mut out,
        &mut |_| {},
    )?;
    Ok(out)
}

/// Lists the block devices (of `owner`, or all the caller may see).
pub fn block_list(c: &mut Client, owner: Option<&str>) -> Vec<BlockInfo> {
    match c.call(Cmd::Block(BlockCommand::List {
        owner: owner.map(identity),
    })) {
        Ok(ReplyBody::Blocks(v)) => v,
        other => panic!("block list: unexpected reply {other:?}"),
    }
}

/// Whether process `pid` exists (and is not a zombie).
pub fn process_alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// A writer that fails (ending a download) once `needle` has been seen, keeping
/// everything written so far.
pub struct UntilSeen {
    /// What arrived.
    pub text: Arc<std::sync::Mutex<String>>,
    /// What ends the stream.
    pub needle: String,
}

impl Write for UntilSeen {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut t = self.text.lock().expect("lock");
        t.push_str(&String::from_utf8_lossy(buf));
        if t.contains(&self.needle) {
            return Err(io::Error::other("seen"));
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Reads a whole file (for image digests in assertions).
pub fn read(path: &Path) -> Vec<u8> {
    let mut v = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut v))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    v
}

/// A protocol connection by hand over the Unix socket, for what the client library
/// refuses to send (a stream that does not match its announcement).
pub struct Raw {
    s: std::os::unix::net::UnixStream,
}

impl Raw {
    /// Connects and exchanges hellos.
    pub fn unix(d: &Daemon) -> Raw {
        let s = std::os::unix::net::UnixStream::connect(d.socket()).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(15)))
            .expect("timeout");
        let mut r = Raw { s };
        r.send(&Message::Hello(Hello::new("petrel-g-raw")));
        match r.recv() {
            Message::Hello(_) => r,
            other => panic!("expected the daemon's hello, got {other:?}"),
        }
    }

    /// Sends one message.
    pub fn send(&mut self, m: &Message) {
        let payload = m.encode().expect("encode");
        petrel_proto::frame::write_frame(&mut self.s, &payload).expect("write frame");
    }

    /// Receives one message.
    pub fn recv(&mut self) -> Message {
        let payload = petrel_proto::frame::read_frame(&mut self.s)
            .expect("read frame")
            .expect("the daemon closed the connection");
        Message::decode(&payload).expect("decode")
    }

    /// Sends request `id` and returns the next reply to it.
    pub fn request(&mut self, id: u32, command: Cmd) -> ReplyBody {
        self.send(&Message::Request(Request {
            id: RequestId(id),
            command,
        }));
        loop {
            match self.recv() {
                Message::Reply(r) if r.id == RequestId(id) => return r.body,
                Message::Stream(_) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    /// Streams `data` for request `id` with an `End` that claims `claimed` as digest,
    /// and returns the final reply.
    pub fn stream(&mut self, id: u32, data: &[u8], claimed: Sha256Digest) -> ReplyBody {
        for chunk in data.chunks(petrel_proto::msg::MAX_CHUNK_BYTES) {
            self.send(&Message::Stream(Stream {
                id: RequestId(id),
                chunk: Chunk::Data(chunk.to_vec()),
            }));
        }
        self.send(&Message::Stream(Stream {
            id: RequestId(id),
            chunk: Chunk::End {
                total_bytes: data.len() as u64,
                sha256: claimed,
            },
        }));
        match self.recv() {
            Message::Reply(r) if r.id == RequestId(id) => r.body,
            other => panic!("unexpected {other:?}"),
        }
    }
}
