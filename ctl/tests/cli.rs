//! `petrelctl` as operators and scripts use it: parsing of every command, `--help`
//! everywhere, the `ca` tooling on real directories, the exit codes, and end-to-end runs
//! of the real binary against a real `petreld` (Unix socket and mutual TLS).
//!
//! The end-to-end tests need KVM, the `hello` guest (`make guests`), and `petreld` and
//! `petrel-hvt` built beside `petrelctl` (`make build`); a missing piece fails with the
//! fix.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use argh::FromArgs;
use petrel_test_support::{Scratch, require_kvm};
use petrelctl::cli::*;
use petrelctl::error::Exit;

// ---------------------------------------------------------------------------------
// Helpers

fn parse(args: &[&str]) -> Result<Cli, argh::EarlyExit> {
    Cli::from_args(&["petrelctl"], args)
}

fn command(args: &[&str]) -> crate::Command_ {
    parse(args)
        .unwrap_or_else(|e| panic!("{args:?}: {}", e.output))
        .command
}
use petrelctl::cli::Command as Command_;

/// Paths in a scratch directory as the `String` arguments petrelctl takes.
trait PathStr {
    fn str(&self, rel: &str) -> String;
}

impl PathStr for Scratch {
    fn str(&self, rel: &str) -> String {
        self.path(rel).to_str().unwrap().to_owned()
    }
}

fn petrelctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_petrelctl"))
        .args(args)
        .env_remove("PETRELCTL_CONFIG")
        .env("HOME", "/nonexistent")
        .stdin(Stdio::null())
        .output()
        .expect("run petrelctl")
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Runs petrelctl, expects `exit`, returns stdout.
fn expect(exit: Exit, args: &[&str]) -> String {
    let o = petrelctl(args);
    assert_eq!(
        o.status.code(),
        Some(i32::from(exit.code())),
        "petrelctl {args:?}: expected {exit:?}\n{}",
        text(&o)
    );
    if exit != Exit::Ok {
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(err.lines().count(), 1, "one error line: {}", text(&o));
        assert!(err.starts_with("petrelctl: "), "{}", text(&o));
    }
    String::from_utf8(o.stdout).unwrap()
}

fn json(args: &[&str]) -> serde_json::Value {
    let out = expect(Exit::Ok, args);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
}

// ---------------------------------------------------------------------------------
// Parsing

#[test]
fn parses_global_options() {
    let cli = parse(&[
        "--socket",
        "/s",
        "--owner",
        "ops",
        "--timeout",
        "3",
        "--json",
        "info",
    ])
    .unwrap();
    assert_eq!(cli.socket.as_deref(), Some("/s"));
    assert_eq!(cli.owner.as_deref(), Some("ops"));
    assert_eq!(cli.timeout, Some(3));
    assert!(cli.json);
    assert_eq!(cli.command, Command_::Info(Info { name: None }));
    let cli = parse(&[
        "--host",
        "box1",
        "--identity",
        "/id",
        "--name",
        "box1.example",
        "--pin",
        "ab",
        "--config",
        "/c.toml",
        "stats",
    ])
    .unwrap();
    assert_eq!(cli.host.as_deref(), Some("box1"));
    assert_eq!(cli.identity.as_deref(), Some("/id"));
    assert_eq!(cli.name.as_deref(), Some("box1.example"));
    assert_eq!(cli.pin.as_deref(), Some("ab"));
    assert_eq!(cli.config.as_deref(), Some("/c.toml"));
    assert_eq!(cli.command, Command_::Stats(Stats { name: None }));
}

#[test]
fn parses_unikernel_commands() {
    assert_eq!(
        command(&["info", "ops:web"]),
        Command_::Info(Info {
            name: Some("ops:web".into())
        })
    );
    assert_eq!(
        command(&[
            "create",
            "web",
            "web.hvt",
            "--mem",
            "64",
            "--net",
            "service",
            "--net",
            "uplink=br1",
            "--block",
            "storage=vol",
            "--restart",
            "on-exit:1,2",
            "--priority",
            "-5",
            "--cpus",
            "0,2-3",
            "--arg",
            "--ipv4=10.0.2.100/24",
            "--arg",
            "x",
        ]),
        Command_::Create(Create {
            name: "web".into(),
            image: "web.hvt".into(),
            mem: 64,
            net: vec!["service".into(), "uplink=br1".into()],
            block: vec!["storage=vol".into()],
            restart: "on-exit:1,2".into(),
            priority: -5,
            cpus: Some("0,2-3".into()),
            arg: vec!["--ipv4=10.0.2.100/24".into(), "x".into()],
        })
    );
    let Command_::Create(defaults) = command(&["create", "a", "b"]) else {
        panic!()
    };
    assert_eq!(
        (defaults.mem, defaults.restart.as_str(), defaults.priority),
        (32, "always", 0)
    );
    assert_eq!(
        command(&["destroy", "web"]),
        Command_::Destroy(Destroy { name: "web".into() })
    );
    assert_eq!(
        command(&["restart", "web", "--arg", "a", "--arg", "b"]),
        Command_::Restart(Restart {
            name: "web".into(),
            arg: vec!["a".into(), "b".into()],
            clear_args: false
        })
    );
    assert_eq!(
        command(&["restart", "web", "--clear-args"]),
        Command_::Restart(Restart {
            name: "web".into(),
            arg: vec![],
            clear_args: true
        })
    );
    assert_eq!(
        command(&["console", "web", "-f", "--lines", "20"]),
        Command_::Console(Console {
            name: "web".into(),
            follow: true,
            lines: Some(20),
            since: None
        })
    );
    assert_eq!(
        command(&["console", "web", "--since", "10m"]),
        Command_::Console(Console {
            name: "web".into(),
            follow: false,
            lines: None,
            since: Some("10m".into())
        })
    );
    assert_eq!(
        command(&["stats", "web"]),
        Command_::Stats(Stats {
            name: Some("web".into())
        })
    );
}

#[test]
fn parses_block_and_policy_commands() {
    let block = |c| Command_::Block(Block { command: c });
    assert_eq!(
        command(&["block", "create", "vol", "1G", "--sector-size", "4096"]),
        block(BlockCommand::Create(BlockCreate {
            name: "vol".into(),
            size: "1G".into(),
            sector_size: 4096
        }))
    );
    let Command_::Block(Block {
        command: BlockCommand::Create(c),
    }) = command(&["block", "create", "vol", "1M"])
    else {
        panic!()
    };
    assert_eq!(c.sector_size, 512);
    assert_eq!(
        command(&["block", "destroy", "vol"]),
        block(BlockCommand::Destroy(BlockDestroy { name: "vol".into() }))
    );
    assert_eq!(
        command(&["block", "list"]),
        block(BlockCommand::List(BlockList { owner: None }))
    );
    assert_eq!(
        command(&["block", "list", "ops"]),
        block(BlockCommand::List(BlockList {
            owner: Some("ops".into())
        }))
    );
    assert_eq!(
        command(&["block", "upload", "vol", "disk.img"]),
        block(BlockCommand::Upload(BlockUpload {
            name: "vol".into(),
            file: "disk.img".into()
        }))
    );
    assert_eq!(
        command(&["block", "download", "vol", "vol.img"]),
        block(BlockCommand::Download(BlockDownload {
            name: "vol".into(),
            file: Some("vol.img".into())
        }))
    );
    assert_eq!(
        command(&["block", "download", "vol"]),
        block(BlockCommand::Download(BlockDownload {
            name: "vol".into(),
            file: None
        }))
    );
    let policy = |c| Command_::Policy(Policy { command: c });
    assert_eq!(
        command(&[
            "policy",
            "add",
            "ops/alice",
            "--unikernels",
            "4",
            "--memory",
            "256",
            "--block-storage",
            "1G",
            "--bridge",
            "service",
            "--bridge",
            "uplink",
            "--cpus",
            "0-3",
        ]),
        policy(PolicyCommand::Add(PolicyAdd {
            identity: "ops/alice".into(),
            unikernels: 4,
            memory: 256,
            block_storage: "1G".into(),
            bridge: vec!["service".into(), "uplink".into()],
            cpus: Some("0-3".into()),
        }))
    );
    assert_eq!(
        command(&["policy", "remove", "ops/alice"]),
        policy(PolicyCommand::Remove(PolicyRemove {
            identity: "ops/alice".into()
        }))
    );
    assert_eq!(
        command(&["policy", "list"]),
        policy(PolicyCommand::List(PolicyList { identity: None }))
    );
}

#[test]
fn parses_ca_and_appliance_commands() {
    let ca = |c| Command_::Ca(Ca { command: c });
    assert_eq!(
        command(&["ca", "init", "dir", "--name", "Operator CA"]),
        ca(CaCommand::Init(CaInit {
            dir: "dir".into(),
            name: "Operator CA".into()
        }))
    );
    assert_eq!(
        command(&["ca", "issue", "alice", "--ca", "c", "--out", "o"]),
        ca(CaCommand::Issue(CaIssue {
            name: "alice".into(),
            ca: "c".into(),
            out: "o".into(),
            sub_ca: false,
            device: None
        }))
    );
    assert_eq!(
        command(&[
            "ca", "issue", "box1", "--ca", "c", "--out", "o", "--device", "box1.lan"
        ]),
        ca(CaCommand::Issue(CaIssue {
            name: "box1".into(),
            ca: "c".into(),
            out: "o".into(),
            sub_ca: false,
            device: Some("box1.lan".into())
        }))
    );
    let Command_::Ca(Ca {
        command: CaCommand::Issue(i),
    }) = command(&["ca", "issue", "ops", "--ca", "c", "--out", "o", "--sub-ca"])
    else {
        panic!()
    };
    assert!(i.sub_ca);
    assert_eq!(
        command(&["ca", "show", "dir"]),
        ca(CaCommand::Show(CaShow { dir: "dir".into() }))
    );
    assert_eq!(command(&["reboot"]), Command_::Reboot(Reboot {}));
    assert_eq!(command(&["poweroff"]), Command_::Poweroff(Poweroff {}));
    assert_eq!(
        command(&["logs"]),
        Command_::Logs(Logs {
            previous: false,
            failed_trial: false,
            lines: 0
        })
    );
    assert_eq!(
        command(&["logs", "--failed-trial", "--lines", "50"]),
        Command_::Logs(Logs {
            previous: false,
            failed_trial: true,
            lines: 50
        })
    );
    assert_eq!(
        command(&["logs", "--previous"]),
        Command_::Logs(Logs {
            previous: true,
            failed_trial: false,
            lines: 0
        })
    );
    assert_eq!(
        command(&["factory-reset", "--yes"]),
        Command_::FactoryReset(FactoryReset { yes: true })
    );
    assert_eq!(
        command(&["trust", "rotate", "new.pem", "--yes"]),
        Command_::Trust(Trust {
            command: TrustCommand::Rotate(TrustRotate {
                anchor: "new.pem".into(),
                yes: true
            })
        })
    );
}

#[test]
fn refuses_bad_command_lines() {
    for bad in [
        &[][..],
        &["bogus"],
        &["info", "a", "b"],
        &["create", "web"],
        &["create", "web", "x.hvt", "--mem", "lots"],
        &["console", "web", "--lines"],
        &["block"],
        &["block", "create", "vol"],
        &["policy", "add", "ops/alice"],
        &["ca", "init", "dir"],
        &["ca", "issue", "alice", "--ca", "c"],
        &["trust"],
        &["--timeout", "soon", "info"],
    ] {
        let e = parse(bad).err().unwrap_or_else(|| panic!("{bad:?} parsed"));
        assert!(e.status.is_err(), "{bad:?}");
    }
}

/// Every command and subcommand has a `--help` that says what it does.
#[test]
fn every_command_has_help() {
    let commands: &[&[&str]] = &[
        &[],
        &["info"],
        &["create"],
        &["destroy"],
        &["restart"],
        &["console"],
        &["stats"],
        &["block"],
        &["block", "create"],
        &["block", "destroy"],
        &["block", "list"],
        &["block", "upload"],
        &["block", "download"],
        &["policy"],
        &["policy", "add"],
        &["policy", "remove"],
        &["policy", "list"],
        &["ca"],
        &["ca", "init"],
        &["ca", "issue"],
        &["ca", "show"],
        &["reboot"],
        &["poweroff"],
        &["logs"],
        &["factory-reset"],
        &["trust"],
        &["trust", "rotate"],
    ];
    for words in commands {
        let mut args = words.to_vec();
        args.push("--help");
        let e = parse(&args).err().unwrap_or_else(|| panic!("{args:?}"));
        assert!(e.status.is_ok(), "{args:?}: {}", e.output);
        let usage = format!("Usage: petrelctl {}", words.join(" "));
        assert!(
            e.output.starts_with(usage.trim_end()),
            "{args:?}: {}",
            e.output
        );
        // A sentence of description after the usage line.
        let description = e.output.lines().nth(2).unwrap_or_default();
        assert!(
            description.len() > 10 && description.ends_with('.'),
            "{args:?}: {}",
            e.output
        );
    }
    let top = expect(Exit::Ok, &["--help"]);
    for code in 0..=9 {
        assert!(
            top.contains(&format!("\n  {code} ")),
            "exit code {code} in --help"
        );
    }
    assert!(expect(Exit::Ok, &["ca", "issue", "help"]).contains("--sub-ca"));
}

// ---------------------------------------------------------------------------------
// ca

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn identity_of(dir: &Path) -> String {
    use petrel_proto::tls;
    let chain = tls::certs_from_pem(&std::fs::read(dir.join("cert.pem")).unwrap()).unwrap();
    let anchors = tls::certs_from_pem(&std::fs::read(dir.join("ca.pem")).unwrap()).unwrap();
    tls::peer_identity(&chain, &anchors).unwrap().to_string()
}

#[test]
fn ca_round_trips() {
    let t = Scratch::new("petrelctl-ca");
    let root = json(&[
        "--json",
        "ca",
        "init",
        &t.str("root"),
        "--name",
        "Operator CA",
    ]);
    assert_eq!(root["role"], "trust anchor (operator CA)");
    assert_eq!(root["subject"], "CN=Operator CA");
    assert_eq!(root["not_after_unix"], 253_402_300_799_i64);
    assert_eq!(root["identity"], serde_json::Value::Null);
    assert_eq!(
        std::fs::read(t.path("root/cert.pem")).unwrap(),
        std::fs::read(t.path("root/ca.pem")).unwrap()
    );

    // root → sub-CA ops → client alice: identity ops/alice.
    let ops = json(&[
        "--json",
        "ca",
        "issue",
        "ops",
        "--ca",
        &t.str("root"),
        "--out",
        &t.str("ops"),
        "--sub-ca",
    ]);
    assert_eq!(
        (ops["role"].as_str(), ops["identity"].as_str()),
        (Some("sub-CA"), Some("ops"))
    );
    let alice = json(&[
        "--json",
        "ca",
        "issue",
        "alice",
        "--ca",
        &t.str("ops"),
        "--out",
        &t.str("alice"),
    ]);
    assert_eq!(alice["identity"], "ops/alice");
    assert_eq!(alice["chain_len"], 2);
    assert_eq!(alice["key_mode"], "0600");
    assert_eq!(identity_of(&t.path("alice")), "ops/alice");
    assert_eq!(identity_of(&t.path("ops")), "ops");
    for dir in ["root", "ops", "alice"] {
        assert_eq!(mode(&t.path(&format!("{dir}/key.pem"))), 0o600, "{dir}");
        assert_eq!(mode(&t.path(&format!("{dir}/cert.pem"))), 0o644, "{dir}");
        assert_eq!(mode(&t.path(dir)), 0o700, "{dir}");
        assert_eq!(
            std::fs::read(t.path(&format!("{dir}/ca.pem"))).unwrap(),
            std::fs::read(t.path("root/ca.pem")).unwrap()
        );
    }

    // A device certificate names its host; show agrees with what issue printed.
    let device = json(&[
        "--json",
        "ca",
        "issue",
        "box1",
        "--ca",
        &t.str("root"),
        "--out",
        &t.str("box1"),
        "--device",
        "box1.example.net",
    ]);
    assert_eq!(device["role"], "device");
    assert_eq!(device["names"][0], "box1.example.net");
    assert_eq!(mode(&t.path("box1/key.pem")), 0o600);
    let shown = json(&["--json", "ca", "show", &t.str("box1")]);
    assert_eq!(shown["sha256"], device["sha256"]);
    let fingerprint = petrel_proto::tls::fingerprint(
        &petrel_proto::tls::certs_from_pem(&std::fs::read(t.path("box1/cert.pem")).unwrap())
            .unwrap()[0],
    );
    assert_eq!(shown["sha256"], fingerprint.to_string());

    // People get a table.
    let table = expect(Exit::Ok, &["ca", "show", &t.str("alice")]);
    assert!(table.contains("identity    ops/alice\n"), "{table}");
    assert!(
        table.contains("not after   9999-12-31T23:59:59Z\n"),
        "{table}"
    );

    // Nothing is overwritten; bad input is refused with the right codes.
    let before = std::fs::read(t.path("alice/key.pem")).unwrap();
    expect(
        Exit::Exists,
        &[
            "ca",
            "issue",
            "alice",
            "--ca",
            &t.str("ops"),
            "--out",
            &t.str("alice"),
        ],
    );
    expect(
        Exit::Exists,
        &["ca", "init", &t.str("root"), "--name", "again"],
    );
    assert_eq!(std::fs::read(t.path("alice/key.pem")).unwrap(), before);
    expect(
        Exit::Usage,
        &[
            "ca",
            "issue",
            "a/b",
            "--ca",
            &t.str("ops"),
            "--out",
            &t.str("x"),
        ],
    );
    expect(
        Exit::Usage,
        &[
            "ca",
            "issue",
            "x",
            "--ca",
            &t.str("ops"),
            "--out",
            &t.str("x"),
            "--sub-ca",
            "--device",
            "h",
        ],
    );
    // A client certificate cannot issue.
    expect(
        Exit::Failure,
        &[
            "ca",
            "issue",
            "bob",
            "--ca",
            &t.str("alice"),
            "--out",
            &t.str("bob"),
        ],
    );
    expect(Exit::Failure, &["ca", "show", &t.str("nothing-here")]);
}

// ---------------------------------------------------------------------------------
// Exit codes without a daemon

#[test]
fn exit_codes_without_a_daemon() {
    let t = Scratch::new("petrelctl-codes");
    let sock = t.str("none.sock");
    assert_eq!(petrelctl(&[]).status.code(), Some(2));
    expect(Exit::Usage, &["frobnicate"]);
    expect(Exit::Usage, &["--socket", &sock, "--host", "h", "info"]);
    expect(Exit::Connect, &["--socket", &sock, "info"]);
    // A bare name needs an owner over the socket; names are checked before connecting.
    expect(Exit::Usage, &["--socket", &sock, "destroy", "web"]);
    expect(Exit::Usage, &["--socket", &sock, "destroy", "ops:no/good"]);
    expect(
        Exit::Connect,
        &["--socket", &sock, "--owner", "ops", "destroy", "web"],
    );
    expect(Exit::Usage, &["--socket", &sock, "factory-reset"]);
    expect(
        Exit::Usage,
        &["--socket", &sock, "logs", "--previous", "--failed-trial"],
    );
    expect(
        Exit::Usage,
        &[
            "--socket", &sock, "console", "ops:w", "--lines", "1", "--since", "1m",
        ],
    );
    expect(
        Exit::Usage,
        &["--socket", &sock, "console", "ops:w", "--since", "whenever"],
    );
    expect(
        Exit::Usage,
        &["--socket", &sock, "block", "create", "ops:v", "1000"],
    );
    expect(
        Exit::Usage,
        &[
            "--socket",
            &sock,
            "create",
            "ops:w",
            "x",
            "--restart",
            "maybe",
        ],
    );
    expect(
        Exit::Usage,
        &["--socket", &sock, "create", "ops:w", "x", "--cpus", "3-1"],
    );
    expect(
        Exit::Usage,
        &[
            "--socket", &sock, "create", "ops:w", "x", "--block", "nodev",
        ],
    );
    expect(Exit::Usage, &["--host", "h", "--pin", "xyz", "info"]);
    // A missing image is a local failure, found before connecting.
    expect(
        Exit::Failure,
        &["--socket", &sock, "create", "ops:w", &t.str("none.hvt")],
    );
    // TLS without a usable identity directory, and to a closed port.
    expect(
        Exit::Connect,
        &[
            "--host",
            "127.0.0.1:1",
            "--identity",
            &t.str("none"),
            "info",
        ],
    );
    expect(Exit::Ok, &["ca", "init", &t.str("root"), "--name", "root"]);
    expect(
        Exit::Ok,
        &[
            "ca",
            "issue",
            "ops",
            "--ca",
            &t.str("root"),
            "--out",
            &t.str("ops"),
        ],
    );
    expect(
        Exit::Connect,
        &["--host", "127.0.0.1:1", "--identity", &t.str("ops"), "info"],
    );
    // trust rotate checks the file and asks for --yes before connecting.
    expect(
        Exit::Usage,
        &[
            "--socket",
            &sock,
            "trust",
            "rotate",
            &t.str("ops/cert.pem"),
            "--yes",
        ],
    );
    expect(
        Exit::Usage,
        &["--socket", &sock, "trust", "rotate", &t.str("root/ca.pem")],
    );
    expect(
        Exit::Connect,
        &[
            "--socket",
            &sock,
            "trust",
            "rotate",
            &t.str("root/ca.pem"),
            "--yes",
        ],
    );
    // A configuration file supplies the defaults; a broken one is a usage error.
    std::fs::write(
        t.path("c.toml"),
        format!("socket = {sock:?}\nowner = \"ops\"\n"),
    )
    .unwrap();
    expect(
        Exit::Connect,
        &["--config", &t.str("c.toml"), "destroy", "web"],
    );
    std::fs::write(t.path("bad.toml"), "sockets = 1\n").unwrap();
    expect(Exit::Usage, &["--config", &t.str("bad.toml"), "info"]);
    expect(Exit::Failure, &["--config", &t.str("none.toml"), "info"]);
}

// ---------------------------------------------------------------------------------
// End to end against a real petreld

/// The directory of the binaries under test (`target/<triple>/<profile>`).
fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_petrelctl"))
        .parent()
        .unwrap()
        .to_owned()
}

/// A binary of another workspace package, built beside `petrelctl` (`make build`, or
/// `cargo build --release --locked --bins`). Not built from here: a `cargo build -p`
/// inside a test would resolve other features and rebuild shared dependencies.
fn sibling(bin: &str) -> PathBuf {
    let path = bin_dir().join(bin);
    assert!(
        path.is_file(),
        "{} is missing: build it first with `cargo build --release --locked --bins`",
        path.display()
    );
    path
}

fn hello_guest() -> PathBuf {
    let dir = std::env::var_os("PETREL_GUESTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/guests"));
    let p = dir.join("hello.hvt");
    assert!(
        p.is_file(),
        "guest {} is missing: run `make guests` first",
        p.display()
    );
    require_kvm();
    p
}

/// A petreld on a temporary data directory, killed when dropped.
struct Daemon {
    child: Child,
    dir: Scratch,
}

impl Daemon {
    fn start(extra: &[&str]) -> Self {
        let petreld = sibling("petreld");
        let tender = sibling("petrel-hvt");
        let dir = Scratch::new("petrelctl-petreld");
        let log = std::fs::File::create(dir.path("petreld.log")).unwrap();
        let child = Command::new(petreld)
            .args([
                "--data-dir",
                &dir.str("data"),
                "--socket",
                &dir.str("petreld.sock"),
            ])
            .args(["--tender", tender.to_str().unwrap()])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn petreld");
        let mut daemon = Self { child, dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !daemon.dir.path("petreld.sock").exists() {
            if let Some(status) = daemon.child.try_wait().unwrap() {
                panic!("petreld exited with {status}:\n{}", daemon.log());
            }
            assert!(
                Instant::now() < deadline,
                "no socket after 20 s:\n{}",
                daemon.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        daemon
    }

    fn socket(&self) -> String {
        self.dir.str("petreld.sock")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path("petreld.log")).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // SIGTERM first so the daemon stops its tenders cleanly; then make sure.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `info NAME --json` until `done` holds.
fn wait_info(
    base: &[&str],
    name: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut args = base.to_vec();
        args.extend(["--json", "info", name]);
        let info = json(&args);
        if done(&info) {
            return info;
        }
        assert!(Instant::now() < deadline, "{name} never got there: {info}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn end_to_end_over_the_unix_socket() {
    let hello = hello_guest();
    let hello = hello.to_str().unwrap();
    let daemon = Daemon::start(&[]);
    let sock = daemon.socket();
    let s = ["--socket", sock.as_str()];
    let with =
        |rest: &[&str]| -> Vec<String> { s.iter().chain(rest).map(|a| (*a).to_owned()).collect() };
    let run = |exit: Exit, rest: &[&str]| -> String {
        let args = with(rest);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        expect(exit, &args)
    };

    // Nothing yet.
    assert!(run(Exit::Ok, &["info"]).starts_with("NAME"));
    assert_eq!(run(Exit::Ok, &["--json", "info"]).trim(), "[]");

    // Create hello; it prints its arguments and exits 0, and stays stopped.
    let created = run(
        Exit::Ok,
        &[
            "create",
            "ops:hello",
            hello,
            "--mem",
            "2",
            "--restart",
            "never",
            "--arg",
            "hi",
            "--arg",
            "--there",
        ],
    );
    assert!(created.contains("name       ops:hello\n"), "{created}");
    let info = wait_info(&s, "ops:hello", |i| i["state"] == "stopped");
    assert_eq!(info["last_exit"]["code"], 0, "{info}");
    assert_eq!(info["memory_mib"], 2);
    assert_eq!(info["args"], serde_json::json!(["hi", "--there"]));
    assert_eq!(info["restart"], "never");
    let sha = petrel_proto::msg::Sha256Digest::of(&std::fs::read(hello).unwrap());
    assert_eq!(info["image_sha256"], sha.to_string());
    let table = run(Exit::Ok, &["info"]);
    assert!(
        table
            .lines()
            .nth(1)
            .unwrap()
            .starts_with("ops:hello  stopped"),
        "{table}"
    );

    // Its console, with --owner for the bare name.
    let console = run(Exit::Ok, &["console", "ops:hello"]);
    assert!(console.contains("Hello, world"), "{console}");
    assert!(console.contains("args: hi --there"), "{console}");
    let last = run(
        Exit::Ok,
        &["--owner", "ops", "console", "hello", "--lines", "1"],
    );
    assert_eq!(last.lines().count(), 1, "{last}");

    // Restart with new arguments.
    run(Exit::Ok, &["restart", "ops:hello", "--arg", "again"]);
    let info = wait_info(&s, "ops:hello", |i| {
        i["state"] == "stopped" && i["args"] == serde_json::json!(["again"])
    });
    assert_eq!(info["last_exit"]["code"], 0, "{info}");

    // The daemon's refusals map to their exit codes.
    run(Exit::Exists, &["create", "ops:hello", hello, "--mem", "2"]);
    run(
        Exit::Invalid,
        &[
            "create",
            "ops:netless",
            hello,
            "--mem",
            "2",
            "--net",
            "service",
        ],
    );
    run(Exit::NotFound, &["console", "ops:nobody"]);
    run(Exit::Unsupported, &["reboot"]);

    // Stats of the stopped unikernel (zeros are fine), as JSON.
    let stats = serde_json::from_str::<serde_json::Value>(&run(Exit::Ok, &["--json", "stats"]));
    assert!(stats.unwrap().is_array());

    // Block devices: create, upload, download (to a file and to stdout), list, destroy.
    run(Exit::Ok, &["block", "create", "ops:vol", "64K"]);
    run(Exit::Exists, &["block", "create", "ops:vol", "64K"]);
    let data: Vec<u8> = (0..65_536u32).map(|i| (i % 251) as u8).collect();
    let file = daemon.dir.path("vol.img");
    std::fs::write(&file, &data).unwrap();
    let file = file.to_str().unwrap();
    run(Exit::Ok, &["block", "upload", "ops:vol", file]);
    let back = daemon.dir.str("back.img");
    run(Exit::Ok, &["block", "download", "ops:vol", &back]);
    assert_eq!(std::fs::read(&back).unwrap(), data);
    assert!(!Path::new(&format!("{back}.part")).exists());
    let args = with(&["block", "download", "ops:vol"]);
    let o = petrelctl(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(o.stdout, data);
    let list = run(Exit::Ok, &["--json", "block", "list"]);
    let list: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(list[0]["name"], "ops:vol");
    assert_eq!(list[0]["size_bytes"], 65_536);
    run(Exit::Ok, &["block", "destroy", "ops:vol"]);
    run(Exit::NotFound, &["block", "download", "ops:vol", &back]);

    // Destroy: gone, and gone again.
    assert_eq!(
        run(Exit::Ok, &["destroy", "ops:hello"]),
        "destroyed ops:hello\n"
    );
    run(Exit::NotFound, &["info", "ops:hello"]);
    run(Exit::NotFound, &["destroy", "ops:hello"]);
    assert_eq!(run(Exit::Ok, &["--json", "info"]).trim(), "[]");
    drop(daemon);
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn end_to_end_over_mutual_tls() {
    let hello = hello_guest();
    let hello = hello.to_str().unwrap();
    let t = Scratch::new("petrelctl-tls");
    let issue = |name: &str, ca: &str, extra: &[&str]| {
        let mut args = vec!["ca", "issue", name, "--ca", ca];
        let out = t.str(name);
        args.extend(["--out", out.as_str()]);
        args.extend(extra);
        expect(Exit::Ok, &args);
    };
    expect(
        Exit::Ok,
        &["ca", "init", &t.str("root"), "--name", "Operator CA"],
    );
    issue("ops", &t.str("root"), &["--sub-ca"]);
    issue("alice", &t.str("ops"), &[]);
    issue("box1", &t.str("root"), &["--device", "localhost"]);
    let port = free_port().to_string();
    let listen = format!("127.0.0.1:{port}");
    let daemon = Daemon::start(&[
        "--listen",
        &listen,
        "--trust",
        &t.str("root/ca.pem"),
        "--cert",
        &t.str("box1/cert.pem"),
        "--key",
        &t.str("box1/key.pem"),
    ]);
    let sock = daemon.socket();
    // Wait until the TLS listener answers.
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(&listen).is_err() {
        assert!(
            Instant::now() < deadline,
            "no TLS listener:\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let alice_id = t.str("alice");
    let alice = [
        "--host",
        listen.as_str(),
        "--identity",
        alice_id.as_str(),
        "--name",
        "localhost",
    ];
    let as_alice = |exit: Exit, rest: &[&str]| -> String {
        let args: Vec<&str> = alice.iter().chain(rest).copied().collect();
        expect(exit, &args)
    };

    // No policy, no access.
    as_alice(
        Exit::Denied,
        &["create", "hello", hello, "--mem", "2", "--restart", "never"],
    );
    // The local socket may set any policy.
    expect(
        Exit::Ok,
        &[
            "--socket",
            &sock,
            "policy",
            "add",
            "ops",
            "--unikernels",
            "4",
            "--memory",
            "64",
        ],
    );
    expect(
        Exit::Ok,
        &[
            "--socket",
            &sock,
            "policy",
            "add",
            "ops/alice",
            "--unikernels",
            "1",
            "--memory",
            "8",
        ],
    );
    let policies = json(&["--socket", &sock, "--json", "policy", "list"]);
    assert_eq!(policies.as_array().map(Vec::len), Some(2), "{policies}");

    // A bare name lands in alice's namespace, ops/alice.
    let created = as_alice(
        Exit::Ok,
        &["create", "hello", hello, "--mem", "2", "--restart", "never"],
    );
    assert!(created.contains("ops/alice:hello"), "{created}");
    wait_info(&alice, "hello", |i| i["state"] == "stopped");
    let all = json(&[&alice[..], &["--json", "info"]].concat());
    assert_eq!(all[0]["name"], "ops/alice:hello", "{all}");
    assert!(as_alice(Exit::Ok, &["console", "hello"]).contains("Hello, world"));
    // Over quota: one unikernel, 8 MiB.
    as_alice(Exit::Denied, &["create", "second", hello, "--mem", "2"]);
    // alice may not set her own policy.
    as_alice(
        Exit::Denied,
        &[
            "policy",
            "add",
            "ops/alice",
            "--unikernels",
            "9",
            "--memory",
            "9",
        ],
    );
    as_alice(Exit::Ok, &["destroy", "hello"]);
    as_alice(Exit::NotFound, &["info", "hello"]);

    // The device is checked: a wrong name or a wrong pin is a connect failure; the
    // right pin works whatever the name.
    let wrong_name = [&alice[..4], &["--name", "box2.example", "info"]].concat();
    expect(Exit::Connect, &wrong_name);
    let pin = json(&["--json", "ca", "show", &t.str("box1")])["sha256"]
        .as_str()
        .unwrap()
        .to_owned();
    let pinned = [&alice[..4], &["--pin", pin.as_str(), "info"]].concat();
    expect(Exit::Ok, &pinned);
    let bad_pin = "00".repeat(32);
    expect(
        Exit::Connect,
        &[&alice[..4], &["--pin", bad_pin.as_str(), "info"]].concat(),
    );
    // A client from another CA is refused.
    expect(
        Exit::Ok,
        &["ca", "init", &t.str("other"), "--name", "Other CA"],
    );
    issue("mallory", &t.str("other"), &[]);
    let mallory = t.str("mallory");
    expect(
        Exit::Connect,
        &[
            "--host",
            &listen,
            "--identity",
            &mallory,
            "--pin",
            &pin,
            "info",
        ],
    );
    drop(daemon);
}
