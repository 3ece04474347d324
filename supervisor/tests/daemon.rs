//! End-to-end basics of the `petreld` binary over its Unix socket, with raw protocol
//! frames: create (upload) / info / console / destroy of real unikernels under KVM, one-
//! line errors for bad requests, block volumes and policies, SIGTERM → exit 0 and
//! restore. The broad suite lives in the other test files.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::fs;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use petrel_proto::{
    BlockCommand, Chunk, Command as Cmd, ConsoleHistory, CreateSpec, ErrorKind, Hello, ImageSource,
    Message, NetDevice, Policy, PolicyCommand, ReplyBody, Request, RequestId, RestartPolicy,
    Sha256Digest, Stream, UnikernelInfo, UnikernelState, read_frame, stream_chunks, write_frame,
};
use petrel_test_support::require_kvm;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn tender() -> PathBuf {
    if let Some(p) = std::env::var_os("PETREL_HVT") {
        return p.into();
    }
    let t = workspace().join("target/x86_64-unknown-linux-musl");
    for profile in ["release", "debug"] {
        let p = t.join(profile).join("petrel-hvt");
        if p.is_file() {
            return p;
        }
    }
    panic!("petrel-hvt is not built: run `make tender` (or set PETREL_HVT)");
}

fn guest(name: &str) -> Vec<u8> {
    let dir = std::env::var_os("PETREL_GUESTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/guests"));
    let p = dir.join(format!("{name}.hvt"));
    fs::read(&p).unwrap_or_else(|e| panic!("{}: {e} (run `make guests`)", p.display()))
}

/// A `petreld` on a temporary data directory and socket.
struct Daemon {
    dir: PathBuf,
    child: Option<Child>,
    extra: Vec<String>,
}

impl Daemon {
    fn start(tag: &str) -> Daemon {
        Daemon::start_with(tag, |_| Vec::new())
    }

    /// `setup` prepares files in the scratch directory and returns more flags.
    fn start_with(tag: &str, setup: impl FnOnce(&Path) -> Vec<String>) -> Daemon {
        require_kvm();
        let dir = std::env::temp_dir().join(format!("petreld-d-{}-{tag}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let extra = setup(&dir);
        let mut d = Daemon {
            dir,
            child: None,
            extra,
        };
        d.spawn();
        d
    }

    fn sock(&self) -> PathBuf {
        self.dir.join("petreld.sock")
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    fn spawn(&mut self) {
        let _ = fs::remove_file(self.sock());
        let logged = self.log().len();
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("log"))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_petreld"))
            .arg("--data-dir")
            .arg(self.dir.join("data"))
            .arg("--socket")
            .arg(self.sock())
            .arg("--tender")
            .arg(tender())
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn petreld");
        self.child = Some(child);
        let t0 = Instant::now();
        while !self.log().get(logged..).unwrap_or("").contains("ready") {
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "petreld did not get ready:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn conn(&self) -> Conn {
        Conn::connect(&self.sock())
    }

    /// SIGTERM, then wait for the exit.
    fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let pid = rustix::process::Pid::from_raw(i32::try_from(child.id()).unwrap()).unwrap();
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
        let t0 = Instant::now();
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                return st;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "no exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if !std::thread::panicking() {
            let _ = fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("petreld log:\n{}", self.log());
        }
    }
}

/// A raw protocol connection.
struct Conn {
    s: UnixStream,
    next: u32,
}

impl Conn {
    fn connect(path: &Path) -> Conn {
        let mut s = UnixStream::connect(path).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        write_frame(
            &mut s,
            &Message::Hello(Hello::new("daemon-test")).encode().unwrap(),
        )
        .unwrap();
        let mut c = Conn { s, next: 1 };
        assert!(matches!(c.recv(), Message::Hello(_)));
        c
    }

    fn send(&mut self, m: &Message) {
        write_frame(&mut self.s, &m.encode().unwrap()).unwrap();
    }

    fn recv(&mut self) -> Message {
        let frame = read_frame(&mut self.s).unwrap().expect("a frame");
        Message::decode(&frame).unwrap()
    }

    fn request(&mut self, command: Cmd) -> RequestId {
        let id = RequestId(self.next);
        self.next += 1;
        self.send(&Message::Request(Request { id, command }));
        id
    }

    fn reply(&mut self, id: RequestId) -> ReplyBody {
        match self.recv() {
            Message::Reply(r) if r.id == id => r.body,
            other => panic!("expected the reply to {id:?}, got {other:?}"),
        }
    }

    fn call(&mut self, command: Cmd) -> ReplyBody {
        let id = self.request(command);
        self.reply(id)
    }

    fn upload(&mut self, command: Cmd, data: &[u8]) -> ReplyBody {
        let id = self.request(command);
        match self.reply(id) {
            ReplyBody::Proceed => {}
            other => return other,
        }
        for s in stream_chunks(id, data) {
            self.send(&Message::Stream(s));
        }
        self.reply(id)
    }

    fn download(&mut self, command: Cmd) -> Result<Vec<u8>, ReplyBody> {
        let id = self.request(command);
        match self.reply(id) {
            ReplyBody::Proceed => {}
            other => return Err(other),
        }
        let mut out = Vec::new();
        loop {
            match self.recv() {
                Message::Stream(Stream {
                    chunk: Chunk::Data(d),
                    ..
                }) => out.extend(d),
                Message::Stream(Stream {
                    chunk: Chunk::End { sha256, .. },
                    ..
                }) => {
                    assert_eq!(sha256, Sha256Digest::of(&out));
                    return Ok(out);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    fn info(&mut self, name: &str) -> Option<UnikernelInfo> {
        match self.call(Cmd::Info {
            name: Some(name.parse().unwrap()),
        }) {
            ReplyBody::Info(mut v) => v.pop(),
            ReplyBody::Error(e) if e.kind == ErrorKind::NotFound => None,
            other => panic!("info: {other:?}"),
        }
    }
}

fn spec(name: &str, image: &[u8], restart: RestartPolicy) -> CreateSpec {
    CreateSpec {
        name: name.parse().unwrap(),
        image: ImageSource::Upload {
            size_bytes: image.len() as u64,
            sha256: Sha256Digest::of(image),
        },
        args: vec!["one".into(), "two".into()],
        memory_mib: 4,
        cpus: 1,
        devices: vec![],
        blocks: vec![],
        restart,
        priority: 0,
        cpu_affinity: vec![],
    }
}

fn create(c: &mut Conn, spec: CreateSpec, image: &[u8]) -> ReplyBody {
    c.upload(Cmd::Create(Box::new(spec)), image)
}

fn wait_until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let t0 = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(t0.elapsed() < Duration::from_secs(20), "timed out: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn error_kind(body: &ReplyBody) -> Option<ErrorKind> {
    match body {
        ReplyBody::Error(e) => {
            assert!(!e.message.contains('\n'), "one-line errors: {e:?}");
            Some(e.kind)
        }
        _ => None,
    }
}

#[test]
fn create_info_console_destroy() {
    let d = Daemon::start("basic");
    let mut c = d.conn();
    let hello = guest("hello");
    let r = create(
        &mut c,
        spec("ops:hello", &hello, RestartPolicy::Never),
        &hello,
    );
    let ReplyBody::Unikernel(info) = r else {
        panic!("create: {r:?}")
    };
    assert_eq!(info.name.to_string(), "ops:hello");
    assert_eq!(info.image_sha256, Sha256Digest::of(&hello));
    // It prints and exits 0; the policy says never restart.
    let info = wait_until("hello stops", || {
        c.info("ops:hello")
            .filter(|i| i.state == UnikernelState::Stopped)
    });
    let exit = info.last_exit.expect("an exit");
    assert_eq!(exit.status, petrel_proto::ExitStatus::Code(0));
    assert!(exit.at_unix_ms > 0);
    let text = c
        .download(Cmd::Console {
            name: "ops:hello".parse().unwrap(),
            history: ConsoleHistory::All,
            follow: false,
        })
        .expect("console");
    let text = String::from_utf8_lossy(&text);
    assert!(text.contains("Hello, world"), "{text}");
    assert!(text.contains("args: one two"), "{text}");
    // Another connection sees it too; then it goes.
    let mut c2 = d.conn();
    match c2.call(Cmd::Info { name: None }) {
        ReplyBody::Info(v) => assert_eq!(v.len(), 1),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        c.call(Cmd::Destroy {
            name: "ops:hello".parse().unwrap()
        }),
        ReplyBody::Ok
    );
    assert!(c.info("ops:hello").is_none());
    // The image stays in the store (content-addressed) until it is unused and old.
    let images = fs::read_dir(d.dir.join("data/images/sha256"))
        .unwrap()
        .count();
    assert_eq!(images, 1);
}

#[test]
fn bad_requests_get_one_line_errors() {
    let d = Daemon::start("bad");
    let mut c = d.conn();
    let hello = guest("hello");
    // The image declares no devices: asking for one names it.
    let mut s = spec("ops:a", &hello, RestartPolicy::Never);
    s.devices.push(NetDevice {
        name: "service".into(),
        bridge: "service".into(),
    });
    let r = create(&mut c, s, &hello);
    assert_eq!(error_kind(&r), Some(ErrorKind::ManifestMismatch), "{r:?}");
    assert!(format!("{r:?}").contains("net \\\"service\\\""), "{r:?}");
    // Not an executable at all.
    let junk = vec![0x5a; 4096];
    let r = create(&mut c, spec("ops:a", &junk, RestartPolicy::Never), &junk);
    assert_eq!(error_kind(&r), Some(ErrorKind::ManifestMismatch), "{r:?}");
    // The announced digest does not match the data.
    let mut s = spec("ops:a", &hello, RestartPolicy::Never);
    s.image = ImageSource::Upload {
        size_bytes: hello.len() as u64,
        sha256: Sha256Digest::of(b"other"),
    };
    let r = create(&mut c, s, &hello);
    assert!(error_kind(&r).is_some(), "{r:?}");
    // Caps.
    let mut s = spec("ops:a", &hello, RestartPolicy::Never);
    s.memory_mib = 0;
    assert_eq!(
        error_kind(&create(&mut c, s, &hello)),
        Some(ErrorKind::BadRequest)
    );
    let mut s = spec("ops:a", &hello, RestartPolicy::Never);
    s.args = vec!["x".repeat(100); 200];
    assert_eq!(
        error_kind(&create(&mut c, s, &hello)),
        Some(ErrorKind::BadRequest)
    );
    let mut s = spec("ops:a", &hello, RestartPolicy::Never);
    s.image = ImageSource::Builder {
        job: "j".into(),
        sha256: Sha256Digest::of(b""),
    };
    assert_eq!(
        error_kind(&create(&mut c, s, &hello)),
        Some(ErrorKind::Unsupported)
    );
    // Unknown names, a host that is not an appliance.
    let r = c.call(Cmd::Destroy {
        name: "ops:nope".parse().unwrap(),
    });
    assert_eq!(error_kind(&r), Some(ErrorKind::NotFound));
    assert_eq!(
        error_kind(&c.call(Cmd::Reboot)),
        Some(ErrorKind::Unsupported)
    );
    // Nothing was created, the store holds no stray image, and the daemon serves on.
    match c.call(Cmd::Info { name: None }) {
        ReplyBody::Info(v) => assert!(v.is_empty(), "{v:?}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        fs::read_dir(d.dir.join("data/images/sha256"))
            .unwrap()
            .count(),
        0
    );
    assert_eq!(
        fs::read_dir(d.dir.join("data/images/tmp")).unwrap().count(),
        0
    );
}

#[test]
fn blocks_and_policies() {
    let d = Daemon::start("blocks");
    let mut c = d.conn();
    let name: petrel_proto::FullName = "ops:disk".parse().unwrap();
    let r = c.call(Cmd::Block(BlockCommand::Create {
        name: name.clone(),
        size_bytes: 1 << 20,
        sector_size: 512,
    }));
    assert!(
        matches!(r, ReplyBody::Block(ref b) if b.size_bytes == 1 << 20),
        "{r:?}"
    );
    let r = c.call(Cmd::Block(BlockCommand::Create {
        name: name.clone(),
        size_bytes: 1000,
        sector_size: 512,
    }));
    assert_eq!(error_kind(&r), Some(ErrorKind::BadRequest));
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let r = c.upload(
        Cmd::Block(BlockCommand::Upload {
            name: name.clone(),
            size_bytes: data.len() as u64,
            sha256: Sha256Digest::of(&data),
        }),
        &data,
    );
    assert_eq!(r, ReplyBody::Ok);
    let back = c
        .download(Cmd::Block(BlockCommand::Download { name: name.clone() }))
        .expect("download");
    assert_eq!(back.len(), 1 << 20);
    assert_eq!(&back[..data.len()], &data[..]);
    assert!(back[data.len()..].iter().all(|b| *b == 0));
    // Policies, set locally.
    let p = Policy {
        max_unikernels: 2,
        memory_mib: 64,
        block_bytes: 8 << 20,
        bridges: vec!["service".into()],
        cpus: vec![0],
    };
    let r = c.call(Cmd::Policy(PolicyCommand::Add {
        identity: "ops/alice".parse().unwrap(),
        policy: p.clone(),
    }));
    assert_eq!(r, ReplyBody::Ok);
    match c.call(Cmd::Policy(PolicyCommand::List { identity: None })) {
        ReplyBody::Policies(v) => {
            assert_eq!(v.len(), 1);
            assert_eq!(v[0].policy, p);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        c.call(Cmd::Block(BlockCommand::Destroy { name: name.clone() })),
        ReplyBody::Ok
    );
    match c.call(Cmd::Block(BlockCommand::List { owner: None })) {
        ReplyBody::Blocks(v) => assert!(v.is_empty()),
        other => panic!("{other:?}"),
    }
    assert!(!d.dir.join("data/block/ops:disk").exists());
}

#[test]
fn sigterm_saves_and_restores() {
    let mut d = Daemon::start("term");
    let mut c = d.conn();
    let hello = guest("hello");
    let mut s = spec("ops:keep", &hello, RestartPolicy::Never);
    s.priority = 3;
    assert!(matches!(create(&mut c, s, &hello), ReplyBody::Unikernel(_)));
    wait_until("hello stops", || {
        c.info("ops:keep")
            .filter(|i| i.state == UnikernelState::Stopped)
    });
    drop(c);
    let st = d.terminate();
    assert!(st.success(), "{st:?}\n{}", d.log());
    d.spawn();
    let mut c = d.conn();
    // Restored and started again at boot (it exits again, never restarted).
    let info = wait_until("restored", || c.info("ops:keep"));
    assert_eq!(info.priority, 3);
    assert_eq!(info.args, ["one", "two"]);
    wait_until("it ran again", || {
        let t = c
            .download(Cmd::Console {
                name: "ops:keep".parse().unwrap(),
                history: ConsoleHistory::All,
                follow: false,
            })
            .ok()?;
        String::from_utf8_lossy(&t)
            .contains("Hello, world")
            .then_some(())
    });
}

/// Mutual TLS with a pinned self-signed device certificate: no policy, no access; the
/// local socket grants one; a certificate from another CA is refused.
#[test]
fn tls_identities_and_policies() {
    use petrel_proto::tls::{self, ServerCheck, ca};
    use petrelctl::client::{Client, ClientError, Endpoint};
    let ca = ca::init("test-ca", &ca::Validity::standard()).unwrap();
    let ops = ca::issue(&ca, "ops", ca::Kind::Client, &ca::Validity::standard()).unwrap();
    let d = Daemon::start_with("tls", |dir| {
        fs::write(dir.join("ca.pem"), ca::anchor_pem(&ca).unwrap()).unwrap();
        vec![
            "--trust".into(),
            dir.join("ca.pem").display().to_string(),
            "--listen".into(),
            "127.0.0.1:0".into(),
        ]
    });
    let log = d.log();
    let pin = log
        .split("device certificate sha256 ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .expect("the fingerprint is printed");
    let addr = log
        .split("petreld: listening on ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .expect("the address is printed")
        .to_owned();
    let pin = petrel_proto::Sha256Digest(
        (0..32)
            .map(|i| u8::from_str_radix(&pin[2 * i..2 * i + 2], 16).unwrap())
            .collect::<Vec<_>>()
            .try_into()
            .unwrap(),
    );
    let endpoint = |who: &ca::Credentials| {
        let (config, server_name) = tls::client_config(
            ServerCheck::Pin(pin),
            who.certificates().unwrap(),
            who.key().unwrap(),
        )
        .unwrap();
        Endpoint::Tls {
            addr: addr.clone(),
            config,
            server_name,
        }
    };
    let t = Duration::from_secs(10);
    let mut remote = Client::connect(&endpoint(&ops), t).expect("TLS as ops");
    match remote.call(Cmd::Info { name: None }) {
        Err(ClientError::Remote(e)) => assert_eq!(e.kind, ErrorKind::PermissionDenied),
        other => panic!("no policy must mean no access: {other:?}"),
    }
    let mut local = d.conn();
    let p = Policy {
        max_unikernels: 1,
        memory_mib: 16,
        block_bytes: 0,
        bridges: vec![],
        cpus: vec![],
    };
    assert_eq!(
        local.call(Cmd::Policy(PolicyCommand::Add {
            identity: "ops".parse().unwrap(),
            policy: p,
        })),
        ReplyBody::Ok
    );
    match remote.call(Cmd::Info { name: None }) {
        Ok(ReplyBody::Info(v)) => assert!(v.is_empty()),
        other => panic!("{other:?}"),
    }
    // Over quota (memory), then within it, in its own namespace only.
    let hello = guest("hello");
    let mut s = spec("ops:big", &hello, RestartPolicy::Never);
    s.memory_mib = 32;
    let mut up =
        |s: CreateSpec| remote.upload(Cmd::Create(Box::new(s)), &mut &hello[..], &mut |_| {});
    match up(s) {
        Err(ClientError::Remote(e)) => assert_eq!(e.kind, ErrorKind::QuotaExceeded),
        other => panic!("{other:?}"),
    }
    match up(spec("dev:x", &hello, RestartPolicy::Never)) {
        Err(ClientError::Remote(e)) => assert_eq!(e.kind, ErrorKind::PermissionDenied),
        other => panic!("{other:?}"),
    }
    match up(spec("ops:ok", &hello, RestartPolicy::Never)) {
        Ok(ReplyBody::Unikernel(i)) => assert_eq!(i.name.to_string(), "ops:ok"),
        other => panic!("{other:?}"),
    }
    // The quota counts it: a second one is over the limit of one.
    match up(spec("ops:two", &hello, RestartPolicy::Never)) {
        Err(ClientError::Remote(e)) => assert_eq!(e.kind, ErrorKind::QuotaExceeded),
        other => panic!("{other:?}"),
    }
    // A factory reset is refused on a host, whoever asks.
    match remote.call(Cmd::FactoryReset) {
        Err(ClientError::Remote(e)) => assert_eq!(e.kind, ErrorKind::Unsupported),
        other => panic!("{other:?}"),
    }
    // Another CA's client is refused during the handshake.
    let other_ca = ca::init("other-ca", &ca::Validity::standard()).unwrap();
    let mallory = ca::issue(
        &other_ca,
        "ops",
        ca::Kind::Client,
        &ca::Validity::standard(),
    )
    .unwrap();
    let refused =
        Client::connect(&endpoint(&mallory), t).and_then(|mut c| c.call(Cmd::Info { name: None }));
    assert!(refused.is_err(), "{refused:?}");
}

/// `--config`: the admin identity and an autostart unikernel imported from the images
/// directory beside the config; a destroyed autostart unikernel stays destroyed.
#[test]
fn config_autostart_and_admin() {
    let mut d = Daemon::start_with("config", |dir| {
        fs::create_dir_all(dir.join("esp/images")).unwrap();
        fs::write(dir.join("esp/images/hello.hvt"), guest("hello")).unwrap();
        fs::write(
            dir.join("esp/config.toml"),
            "[management]\nadmin = \"ops\"\n\n[[unikernels]]\nname = \"hi\"\nimage = \"hello.hvt\"\nmemory_mib = 4\nargs = [\"auto\"]\nrestart = \"never\"\npriority = 5\n",
        )
        .unwrap();
        vec![
            "--config".into(),
            dir.join("esp/config.toml").display().to_string(),
        ]
    });
    let mut c = d.conn();
    let info = wait_until("autostarted and exited", || {
        c.info("ops:hi")
            .filter(|i| i.state == UnikernelState::Stopped && i.last_exit.is_some())
    });
    assert_eq!(info.args, ["auto"]);
    assert_eq!(info.priority, 5);
    assert_eq!(
        c.call(Cmd::Destroy {
            name: "ops:hi".parse().unwrap()
        }),
        ReplyBody::Ok
    );
    drop(c);
    assert!(d.terminate().success());
    d.spawn();
    let mut c = d.conn();
    assert!(
        c.info("ops:hi").is_none(),
        "a destroyed autostart unikernel came back"
    );
    // A changed entry is imported again; a removed one goes.
    let cfg = d.dir.join("esp/config.toml");
    let text = fs::read_to_string(&cfg).unwrap();
    fs::write(&cfg, text.replace("[\"auto\"]", "[\"changed\"]")).unwrap();
    drop(c);
    assert!(d.terminate().success());
    d.spawn();
    let mut c = d.conn();
    assert_eq!(c.info("ops:hi").expect("re-imported").args, ["changed"]);
    fs::write(&cfg, "[management]\nadmin = \"ops\"\n").unwrap();
    drop(c);
    assert!(d.terminate().success());
    d.spawn();
    let mut c = d.conn();
    assert!(
        c.info("ops:hi").is_none(),
        "its entry is gone from the config"
    );
}

/// `--metrics`: OpenMetrics text over plain HTTP, and nothing else.
#[test]
fn metrics_endpoint() {
    use std::io::{Read, Write};
    let d = Daemon::start_with("metrics", |_| {
        vec!["--metrics".into(), "127.0.0.1:0".into()]
    });
    let mut c = d.conn();
    let hello = guest("hello");
    assert!(matches!(
        create(&mut c, spec("ops:m", &hello, RestartPolicy::Never), &hello),
        ReplyBody::Unikernel(_)
    ));
    let log = d.log();
    let addr = log
        .split("metrics on http://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .expect("the metrics address is logged")
        .to_owned();
    let get = |req: &str| {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        s.write_all(req.as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    };
    let page = get("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{page}");
    assert!(page.contains("application/openmetrics-text"), "{page}");
    assert!(
        page.contains("petrel_unikernel_restarts_total{name=\"ops:m\"} 0"),
        "{page}"
    );
    assert!(page.ends_with("# EOF\n"), "{page}");
    assert!(get("GET / HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
    assert!(get("POST /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405"));
    let junk = "G".repeat(20_000);
    assert!(get(&junk).starts_with("HTTP/1.1 431"));
    // The daemon serves on.
    assert!(c.info("ops:m").is_some());
}

/// `trust rotate` over the local socket: the new anchor is kept in the data directory
/// and used from the next start on (the old CA's clients are then refused).
#[test]
fn trust_rotation_takes_effect_at_the_next_start() {
    use petrel_proto::tls::{self, ServerCheck, ca};
    use petrelctl::client::{Client, Endpoint};
    let old = ca::init("old-ca", &ca::Validity::standard()).unwrap();
    let new = ca::init("new-ca", &ca::Validity::standard()).unwrap();
    let mut d = Daemon::start_with("rotate", |dir| {
        fs::write(dir.join("ca.pem"), ca::anchor_pem(&old).unwrap()).unwrap();
        vec![
            "--trust".into(),
            dir.join("ca.pem").display().to_string(),
            "--listen".into(),
            "127.0.0.1:0".into(),
        ]
    });
    let mut c = d.conn();
    let r = c.call(Cmd::TrustRotate {
        anchor_der: b"not a certificate".to_vec(),
    });
    assert_eq!(error_kind(&r), Some(ErrorKind::BadRequest), "{r:?}");
    let der = new.certificates().unwrap()[0].to_vec();
    assert_eq!(c.call(Cmd::TrustRotate { anchor_der: der }), ReplyBody::Ok);
    drop(c);
    assert!(d.terminate().success());
    d.spawn();
    let log = d.log();
    let tail = &log[log.rfind("ready").unwrap_or(0).saturating_sub(2000)..];
    let addr = tail
        .rsplit("petreld: listening on ")
        .next()
        .and_then(|r| r.split_whitespace().next())
        .unwrap()
        .to_owned();
    let pin = d.dir.join("data/keys/device.crt.pem");
    let pin = tls::fingerprint(&tls::certs_from_pem(&fs::read(pin).unwrap()).unwrap()[0]);
    let connect = |who: &ca::Credentials| {
        let (config, server_name) = tls::client_config(
            ServerCheck::Pin(pin),
            who.certificates().unwrap(),
            who.key().unwrap(),
        )
        .unwrap();
        let e = Endpoint::Tls {
            addr: addr.clone(),
            config,
            server_name,
        };
        Client::connect(&e, Duration::from_secs(10))
            .and_then(|mut c| c.call(Cmd::Info { name: None }))
    };
    let by_new = ca::issue(&new, "ops", ca::Kind::Client, &ca::Validity::standard()).unwrap();
    let by_old = ca::issue(&old, "ops", ca::Kind::Client, &ca::Validity::standard()).unwrap();
    // Authenticated (no policy: denied by authorization, not by TLS).
    match connect(&by_new) {
        Err(petrelctl::client::ClientError::Remote(e)) => {
            assert_eq!(e.kind, ErrorKind::PermissionDenied)
        }
        other => panic!("the new CA's client: {other:?}"),
    }
    assert!(
        !matches!(
            connect(&by_old),
            Err(petrelctl::client::ClientError::Remote(_))
        ),
        "the old CA's client must fail in the handshake"
    );
}
