//! The runner and the consoles with real tenders under KVM, real taps on a real bridge
//! in a network namespace each test creates, and real pipes.
//!
//! Needs root, `/dev/kvm`, the tender (`petrel-hvt` of the same target directory, or
//! `$PETREL_TENDER`), the example guests (`make guests`, or `$PETREL_GUESTS`), `ip`
//! (iproute2) and `ping` (iputils-ping). A missing piece fails the test with the reason;
//! nothing is skipped.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use petrel_proto::msg::{ConsoleHistory, ErrorKind};
use petrel_test_support::{self as support, Netns, Scratch, require_kvm};
use petreld::api::{Pull, Source};
use petreld::console::{ConsoleLimits, Consoles, Origin};
use petreld::mac::Mac;
use petreld::runner::{
    Exited, Launch, LaunchBlock, LaunchNet, Runner, RunnerConfig, RunnerError, SpawnError,
};
use petreld::state::ExitStatus;
use petreld::stats;

/// Prefix of the namespaces these tests create.
const NS_PREFIX: &str = "petrel-r-";
/// Set in the helper process of [`tender_dies_with_its_parent`]: the namespace to use.
const HELPER_ENV: &str = "PETREL_RUNNER_PDEATHSIG_NS";
/// Longest wait for a tender to exit or a guest to say something.
const WAIT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------
// Environment

/// The tender: `$PETREL_TENDER`, else `petrel-hvt` of this test's target directory.
fn tender() -> PathBuf {
    let p = std::env::var_os("PETREL_TENDER")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let exe = std::env::current_exe().expect("current exe");
            // target/<triple>/<profile>/deps/runner-HASH
            exe.parent()
                .and_then(Path::parent)
                .expect("the test lives in target/<triple>/<profile>/deps")
                .join("petrel-hvt")
        });
    assert!(
        p.is_file(),
        "the tender {} is missing: `cargo build --release -p petrel-hvt` (or `make tender`), \
         or point PETREL_TENDER at it",
        p.display()
    );
    p
}

/// Example unikernel `name`.
fn guest(name: &str) -> PathBuf {
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

/// Fails loudly unless this is root with KVM, `ip` and `ping`.
fn require_net_tools() {
    support::require_root("these tests create network namespaces, bridges and taps");
    require_kvm();
    support::require_ip();
    support::require_program("ping", "-V", "iputils-ping");
}

/// A network namespace (`petrel-r-…`) with a bridge `br0` at 10.79.0.1/24, deleted on
/// drop.
fn netns(tag: &str) -> Netns {
    require_net_tools();
    let ns = Netns::new(NS_PREFIX, tag);
    ns.loopback_up();
    ns.ip(&["link", "add", "br0", "type", "bridge"]);
    ns.ip(&["addr", "add", "10.79.0.1/24", "dev", "br0"]);
    ns.ip(&["link", "set", "br0", "up"]);
    ns
}

/// Interface names in the namespace.
fn links(ns: &Netns) -> Vec<String> {
    ns.ip(&["-o", "link", "show"])
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(|n| n.trim().split('@').next().unwrap_or("").to_string())
        .collect()
}

// ---------------------------------------------------------------------------------
// Harness

struct Harness {
    runner: Runner,
    consoles: Arc<Consoles>,
    exits: Receiver<Exited>,
}

impl Harness {
    fn new() -> Harness {
        Harness::with_limits(ConsoleLimits::default())
    }

    fn with_limits(limits: ConsoleLimits) -> Harness {
        require_kvm();
        let consoles = Consoles::new(limits).expect("consoles");
        let (tx, exits) = mpsc::channel();
        let runner = Runner::new(
            RunnerConfig { tender: tender() },
            Arc::clone(&consoles),
            Box::new(move |e| {
                let _ = tx.send(e);
            }),
        )
        .expect("runner");
        Harness {
            runner,
            consoles,
            exits,
        }
    }

    fn wait_exit(&self) -> Exited {
        self.exits
            .recv_timeout(WAIT)
            .unwrap_or_else(|e| panic!("no exit reported within {WAIT:?}: {e}"))
    }

    fn assert_no_more_exits(&self) {
        if let Ok(e) = self.exits.recv_timeout(Duration::from_millis(500)) {
            panic!("an exit was reported twice or unasked: {e:?}");
        }
    }

    /// The whole console of `name`, rendered.
    fn console(&self, name: &str) -> String {
        let src = self
            .consoles
            .source(name, ConsoleHistory::All, false)
            .unwrap_or_else(|| panic!("no console for {name}"));
        drain(src)
    }

    fn wait_console(&self, name: &str, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let text = self
                .consoles
                .source(name, ConsoleHistory::All, false)
                .map(drain)
                .unwrap_or_default();
            if text.contains(needle) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "no {needle:?} in the console of {name}:\n{text}"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Everything a non-following source yields.
fn drain(mut src: Box<dyn Source>) -> String {
    let mut out = Vec::new();
    loop {
        match src.next(Duration::ZERO) {
            Pull::Data(d) => out.extend_from_slice(&d),
            Pull::End | Pull::Idle => break,
            Pull::Failed(e) => panic!("console source failed: {e:?}"),
        }
    }
    String::from_utf8(out).expect("console text is UTF-8")
}

fn launch(name: &str, guest_name: &str, args: &[&str]) -> Launch {
    Launch {
        name: name.into(),
        image: guest(guest_name),
        args: args.iter().map(|s| s.to_string()).collect(),
        memory_mib: 8,
        net: vec![],
        block: vec![],
        cpus: vec![],
    }
}

fn net_launch(name: &str, bridge: &str, mac: Mac, ipv4: &str) -> Launch {
    let mut l = launch(name, "net", &[&format!("--ipv4={ipv4}")]);
    l.memory_mib = 16;
    l.net = vec![LaunchNet {
        device: "service0".into(),
        bridge: bridge.into(),
        mac,
    }];
    l
}

/// True when `pid` no longer runs (gone, or a zombie nobody reaped yet).
fn dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(s) => s
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state == "Z" || state == "X"),
    }
}

// ---------------------------------------------------------------------------------
// Tests

#[test]
fn hello_console_captured_and_exit_reported_once() {
    let h = Harness::new();
    let sp = h
        .runner
        .spawn(&launch("t:hello", "hello", &["a", "b c"]))
        .expect("spawn");
    assert!(sp.taps.is_empty());
    let ex = h.wait_exit();
    assert_eq!(
        ex,
        Exited {
            pid: sp.pid,
            name: "t:hello".into(),
            status: ExitStatus::Code(0),
            reason: String::new(),
        }
    );
    h.assert_no_more_exits();
    let text = h.console("t:hello");
    for want in [
        " guest Hello, world\n",
        " guest args: a b c\n",
        " guest Solo5: solo5_exit(0) called\n",
    ] {
        assert!(text.contains(want), "{want:?} missing from\n{text}");
    }
    // Each line: time, origin, text.
    for line in text.lines() {
        let (time, _) = line.split_once(' ').expect("time");
        assert_eq!(time.len(), "2026-01-01T00:00:00.000Z".len(), "{line}");
        assert!(time.ends_with('Z') && time.as_bytes()[10] == b'T', "{line}");
    }
    let lines = h
        .consoles
        .lines("t:hello", ConsoleHistory::All)
        .expect("lines");
    assert!(lines.iter().all(|l| l.origin == Origin::Guest), "{lines:?}");
    // Reaped: no signal reaches a recycled pid.
    assert!(matches!(
        h.runner.signal(sp.pid, 15),
        Err(RunnerError::NoSuchProcess(_))
    ));
    assert!(h.runner.running().is_empty());
}

#[test]
fn exit_codes_and_reasons() {
    let h = Harness::new();
    let cases = [
        ("t:exit7", "exit", vec!["7"], ExitStatus::Code(7), ""),
        ("t:abort", "abort", vec![], ExitStatus::Code(255), ""),
        (
            "t:hlt",
            "hlt",
            vec![],
            ExitStatus::Code(1),
            "petrel-hvt: KVM: unhandled exit",
        ),
        (
            "t:noimage",
            "hello",
            vec![],
            ExitStatus::Code(1),
            "petrel-hvt: ",
        ),
    ];
    let mut want = HashMap::new();
    for (name, g, args, status, reason) in &cases {
        let mut l = launch(name, g, args);
        if *name == "t:noimage" {
            l.image = PathBuf::from("/nonexistent/image.hvt");
        }
        let sp = h.runner.spawn(&l).expect("spawn");
        want.insert(sp.pid, (*name, *status, *reason));
    }
    for _ in 0..cases.len() {
        let ex = h.wait_exit();
        let (name, status, reason) = want
            .remove(&ex.pid)
            .unwrap_or_else(|| panic!("unexpected or repeated exit {ex:?}"));
        assert_eq!(ex.name, name);
        assert_eq!(ex.status, status, "{ex:?}\n{}", h.console(name));
        assert!(ex.reason.starts_with(reason), "{ex:?}");
        if !reason.is_empty() {
            assert_eq!(h.consoles.last_tender_line(name), Some(ex.reason.clone()));
            assert!(
                h.console(name)
                    .contains(&format!(" tender {}\n", ex.reason)),
                "{}",
                h.console(name)
            );
        }
    }
    h.assert_no_more_exits();
    let noimage = h.console("t:noimage");
    assert!(noimage.contains("/nonexistent/image.hvt"), "{noimage}");
}

#[test]
fn many_tenders_at_once_each_exit_reported_once() {
    let h = Harness::new();
    let mut want = HashMap::new();
    for i in 0..12 {
        let name = format!("t:many{i}");
        let sp = h
            .runner
            .spawn(&launch(&name, "exit", &[&i.to_string()]))
            .expect("spawn");
        want.insert(sp.pid, (name, i));
    }
    for _ in 0..12 {
        let ex = h.wait_exit();
        let (name, code) = want
            .remove(&ex.pid)
            .unwrap_or_else(|| panic!("unexpected or repeated exit {ex:?}"));
        assert_eq!(
            (ex.name.as_str(), ex.status),
            (name.as_str(), ExitStatus::Code(code))
        );
        assert!(
            h.console(&name)
                .contains(&format!("solo5_exit({code}) called")),
            "{}",
            h.console(&name)
        );
    }
    h.assert_no_more_exits();
}

#[test]
fn spawn_failures_leave_nothing_and_say_why() {
    let consoles = Consoles::new(ConsoleLimits::default()).expect("consoles");
    let (tx, exits) = mpsc::channel();
    let runner = Runner::new(
        RunnerConfig {
            tender: "/nonexistent/petrel-hvt".into(),
        },
        Arc::clone(&consoles),
        Box::new(move |e| {
            let _ = tx.send(e);
        }),
    )
    .expect("runner");
    let err = runner
        .spawn(&launch("t:notender", "hello", &[]))
        .expect_err("no tender");
    assert!(matches!(err, SpawnError::Exec { .. }), "{err:?}");
    let text = drain(
        consoles
            .source("t:notender", ConsoleHistory::All, false)
            .expect("a console for the failed spawn"),
    );
    assert!(
        text.contains(" petreld spawn failed: cannot execute /nonexistent/petrel-hvt"),
        "{text}"
    );
    let mut l = launch("t:nomem", "hello", &[]);
    l.memory_mib = 0;
    assert!(matches!(runner.spawn(&l), Err(SpawnError::Invalid(_))));
    let mut l = launch("t:badcpu", "hello", &[]);
    l.cpus = vec![100_000];
    assert!(matches!(runner.spawn(&l), Err(SpawnError::Invalid(_))));
    assert!(exits.recv_timeout(Duration::from_millis(300)).is_err());
}

#[test]
fn net_guest_on_a_bridge_pinned_with_stats_and_its_tap_goes_with_it() {
    let ns = netns("net");
    let ns_name = ns.name().to_owned();
    // The last CPU this test may use: pinning changes something on a multi-core box.
    let allowed = rustix::thread::sched_getaffinity(None).expect("affinity");
    let cpu = (0..rustix::thread::CpuSet::MAX_CPU)
        .rev()
        .find(|&c| allowed.is_set(c))
        .and_then(|c| u32::try_from(c).ok())
        .expect("some CPU is allowed");
    let (tap, pid) = ns.run(move || {
        // A second handle: the outer guard deletes the namespace.
        let ns = Netns::borrowed(&ns_name);
        let h = Harness::new();
        let mac = Mac([0x02, 0x00, 0x0a, 0x4f, 0x00, 0x02]);
        let mut l = net_launch("t:net", "br0", mac, "10.79.0.2/24");
        l.cpus = vec![cpu];
        let sp = h.runner.spawn(&l).expect("spawn");
        assert_eq!(sp.taps.len(), 1);
        let (device, tap) = sp.taps[0].clone();
        assert_eq!(device, "service0");
        assert!(tap.starts_with("ptap"), "{tap}");
        let text = h.wait_console("t:net", "listening on TCP port 80");
        assert!(text.contains("02:00:0a:4f:00:02"), "{text}");

        // The tap is a port of br0, up.
        let link = ns.ip(&["-o", "link", "show", &tap]);
        assert!(link.contains("master br0"), "{link}");
        assert!(link.contains(",UP"), "{link}");

        let o = ns.exec("ping", &["-c", "3", "-W", "2", "-w", "20", "10.79.0.2"]);
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success(),
            "ping failed\n{out}\n{}",
            h.console("t:net")
        );
        assert!(out.contains("3 received"), "{out}");

        // Pinned.
        let status = std::fs::read_to_string(format!("/proc/{}/status", sp.pid)).expect("status");
        let allowed = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .map(str::trim)
            .expect("Cpus_allowed_list");
        assert_eq!(allowed, cpu.to_string());

        // Counters, from the guest's point of view: it received the pings and replied.
        let c = stats::tap(&tap).expect("tap counters");
        assert!(c.rx_packets >= 3 && c.tx_packets >= 3, "{c:?}");
        assert!(c.rx_bytes >= 3 * 84 && c.tx_bytes >= 3 * 84, "{c:?}");
        let p = stats::process(sp.pid).expect("process stats");
        assert!(p.rss_bytes >= 64 << 10, "{p:?}");
        assert!(p.cpu_user_ms + p.cpu_system_ms < 60_000, "{p:?}");

        h.runner.signal(sp.pid, 15).expect("SIGTERM");
        let ex = h.wait_exit();
        assert_eq!(ex.pid, sp.pid);
        assert_eq!(ex.status, ExitStatus::Code(1), "{ex:?}");
        assert!(ex.reason.contains("signal 15"), "{ex:?}");
        h.assert_no_more_exits();
        (tap, sp.pid)
    });
    assert!(dead(pid));
    let links = links(&ns);
    assert!(
        !links.contains(&tap),
        "tap {tap} outlived its tender: {links:?}"
    );
    assert!(links.contains(&"br0".to_string()), "{links:?}");
}

#[test]
fn missing_bridge_fails_the_spawn_without_leftovers() {
    let ns = netns("nobr");
    let ns_name = ns.name().to_owned();
    ns.run(move || {
        // A second handle: the outer guard deletes the namespace.
        let ns = Netns::borrowed(&ns_name);
        let h = Harness::new();
        let l = net_launch(
            "t:nobr",
            "nobridge",
            Mac([2, 0, 0, 0, 0, 9]),
            "10.79.0.9/24",
        );
        let err = h.runner.spawn(&l).expect_err("no bridge");
        assert!(matches!(err, SpawnError::Bridge { .. }), "{err:?}");
        let text = h.console("t:nobr");
        assert!(text.contains("bridge nobridge"), "{text}");
        let links = links(&ns);
        assert!(!links.iter().any(|l| l.starts_with("ptap")), "{links:?}");
        assert!(h.exits.recv_timeout(Duration::from_millis(300)).is_err());
    });
}

#[test]
fn block_device_is_passed() {
    require_kvm();
    let dir = Scratch::new("petreld-runner-blk");
    let disk = dir.path("disk");
    std::fs::write(&disk, vec![0u8; 64 * 4096]).expect("disk");
    let h = Harness::new();
    let mut l = launch("t:blk", "blk", &[]);
    l.block = vec![LaunchBlock {
        device: "storage".into(),
        path: disk.clone(),
        sector_size: Some(4096),
    }];
    h.runner.spawn(&l).expect("spawn");
    let ex = h.wait_exit();
    let text = h.console("t:blk");
    assert_eq!(ex.status, ExitStatus::Code(0), "{ex:?}\n{text}");
    assert!(text.contains("blk: OK 64 sectors of 4096 bytes"), "{text}");
}

/// Not a test on its own: the parent process of [`tender_dies_with_its_parent`].
#[test]
#[ignore = "helper process of tender_dies_with_its_parent"]
fn pdeathsig_helper() {
    let Ok(ns) = std::env::var(HELPER_ENV) else {
        return;
    };
    // A thread in the namespace spawns the tender and lives on, as petreld's core
    // thread does, until the whole process is killed.
    thread::spawn(move || {
        Netns::borrowed(&ns)
            .enter()
            .unwrap_or_else(|e| panic!("{e}"));
        let h = Harness::new();
        let sp = h
            .runner
            .spawn(&net_launch(
                "t:orphan",
                "br0",
                Mac([2, 0, 0, 0, 0, 3]),
                "10.79.0.3/24",
            ))
            .expect("spawn");
        h.wait_console("t:orphan", "listening on TCP port 80");
        let mut out = std::io::stdout();
        let _ = writeln!(out, "TENDER_PID {}", sp.pid);
        let _ = out.flush();
        loop {
            thread::sleep(Duration::from_secs(3600));
        }
    });
    loop {
        thread::sleep(Duration::from_secs(3600));
    }
}

#[test]
fn tender_dies_with_its_parent() {
    let ns = netns("pdeath");
    let mut helper = Command::new(std::env::current_exe().expect("current exe"))
        .args(["--exact", "pdeathsig_helper", "--ignored", "--nocapture"])
        .env(HELPER_ENV, ns.name())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the helper");
    let stdout = helper.stdout.take().expect("helper stdout");
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(pid) = line.strip_prefix("TENDER_PID ") {
                let _ = tx.send(pid.trim().parse::<u32>().ok());
            }
        }
    });
    let pid = match rx.recv_timeout(WAIT) {
        Ok(Some(pid)) => pid,
        other => {
            let _ = helper.kill();
            let _ = helper.wait();
            panic!("the helper never reported its tender: {other:?}");
        }
    };
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    assert!(
        String::from_utf8_lossy(&cmdline).contains("petrel-hvt"),
        "pid {pid} is not a tender"
    );
    assert!(!dead(pid));
    // SIGKILL: no destructor runs in the helper; only the kernel can stop the tender.
    helper.kill().expect("kill the helper");
    let _ = helper.wait();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !dead(pid) {
        assert!(
            Instant::now() < deadline,
            "tender {pid} outlived its parent by 10 s"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------------
// Consoles over plain pipes

fn pipes() -> ((OwnedFd, File), (OwnedFd, File)) {
    let (a, b) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).expect("pipe");
    let (c, d) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).expect("pipe");
    ((a, File::from(b)), (c, File::from(d)))
}

fn small_limits() -> ConsoleLimits {
    ConsoleLimits {
        max_lines: 50,
        max_bytes: 1 << 20,
        max_line_bytes: 64,
        max_followers: 2,
        follower_queue_lines: 10,
        keep_after_forget: Duration::from_millis(400),
    }
}

/// The texts (third field on) of rendered lines.
fn texts(rendered: &str) -> Vec<String> {
    rendered
        .lines()
        .map(|l| l.splitn(3, ' ').nth(2).unwrap_or("").to_string())
        .collect()
}

#[test]
fn console_ring_is_bounded_in_lines_and_bytes() {
    let c = Consoles::new(small_limits()).expect("consoles");
    let ((out_r, mut out_w), (err_r, mut err_w)) = pipes();
    let (tx, closed) = mpsc::channel();
    c.attach(
        "t:ring",
        out_r,
        err_r,
        Box::new(move |last| {
            let _ = tx.send(last);
        }),
    )
    .expect("attach");
    for i in 0..200 {
        writeln!(out_w, "line {i}").expect("write");
    }
    writeln!(err_w, "first\r\nthe last word").expect("write");
    // A long line without a newline, cut at 64 bytes, flushed at EOF.
    write!(out_w, "{}", "x".repeat(150)).expect("write");
    drop(out_w);
    drop(err_w);
    let last = closed.recv_timeout(WAIT).expect("pipes closed");
    assert_eq!(last.as_deref(), Some("the last word"));
    let lines = c.lines("t:ring", ConsoleHistory::All).expect("lines");
    assert_eq!(lines.len(), 50);
    let guest: Vec<&str> = lines
        .iter()
        .filter(|l| l.origin == Origin::Guest)
        .map(|l| l.text.as_str())
        .collect();
    assert_eq!(
        &guest[guest.len() - 3..],
        ["x".repeat(64), "x".repeat(64), "x".repeat(22)]
    );
    assert_eq!(
        c.last_tender_line("t:ring").as_deref(),
        Some("the last word")
    );
    // History by count and by time.
    let two = drain(
        c.source("t:ring", ConsoleHistory::Lines(2), false)
            .expect("src"),
    );
    assert_eq!(texts(&two).len(), 2);
    let future = lines.last().expect("a line").unix_ms + 1;
    let none = drain(
        c.source("t:ring", ConsoleHistory::SinceUnixMs(future), false)
            .expect("src"),
    );
    assert!(none.is_empty(), "{none}");

    // The byte bound: 100-byte lines in a 2 KiB ring.
    let mut limits = small_limits();
    limits.max_lines = 1000;
    limits.max_bytes = 2048;
    limits.max_line_bytes = 4096;
    let c = Consoles::new(limits).expect("consoles");
    let ((out_r, mut out_w), (err_r, err_w)) = pipes();
    let (tx, closed) = mpsc::channel();
    c.attach("t:bytes", out_r, err_r, Box::new(move |l| drop(tx.send(l))))
        .expect("attach");
    for i in 0..100 {
        writeln!(out_w, "{i:03}{}", "y".repeat(97)).expect("write");
    }
    drop(out_w);
    drop(err_w);
    assert_eq!(closed.recv_timeout(WAIT).expect("closed"), None);
    let lines = c.lines("t:bytes", ConsoleHistory::All).expect("lines");
    assert!((1..20).contains(&lines.len()), "{} lines kept", lines.len());
    assert!(lines.last().is_some_and(|l| l.text.starts_with("099")));
}

#[test]
fn console_followers_are_bounded_and_a_slow_one_loses_lines() {
    let c = Consoles::new(small_limits()).expect("consoles");
    let ((out_r, mut out_w), (err_r, err_w)) = pipes();
    c.attach("t:follow", out_r, err_r, Box::new(|_| {}))
        .expect("attach");
    writeln!(out_w, "before").expect("write");
    let deadline = Instant::now() + WAIT;
    while c
        .lines("t:follow", ConsoleHistory::All)
        .is_none_or(|l| l.is_empty())
    {
        assert!(Instant::now() < deadline, "the first line never arrived");
        thread::sleep(Duration::from_millis(5));
    }
    let mut fast = c
        .source("t:follow", ConsoleHistory::All, true)
        .expect("source");
    let mut slow = c
        .source("t:follow", ConsoleHistory::None, true)
        .expect("source");
    let mut third = c
        .source("t:follow", ConsoleHistory::None, true)
        .expect("source");
    match third.next(Duration::ZERO) {
        Pull::Failed(e) => assert_eq!(e.kind, ErrorKind::Busy, "{e:?}"),
        other => panic!("a third follower was accepted: {other:?}"),
    }
    drop(third);
    // The history first.
    let Pull::Data(d) = fast.next(Duration::ZERO) else {
        panic!("no history")
    };
    assert_eq!(texts(&String::from_utf8(d).expect("utf-8")), ["before"]);
    // In lock step the fast follower sees every line; the slow one's queue (10) fills.
    let mut seen = Vec::new();
    for i in 0..25 {
        writeln!(out_w, "live {i}").expect("write");
        let deadline = Instant::now() + WAIT;
        loop {
            match fast.next(Duration::from_millis(100)) {
                Pull::Data(d) => {
                    seen.extend(texts(&String::from_utf8(d).expect("utf-8")));
                    break;
                }
                Pull::Idle => assert!(Instant::now() < deadline, "line {i} never came"),
                other => panic!("{other:?}"),
            }
        }
    }
    let want: Vec<String> = (0..25).map(|i| format!("live {i}")).collect();
    assert_eq!(seen, want);
    // The reader offers a line to every follower, then stores it: once stored, the
    // slow follower has had its chance at every line.
    let deadline = Instant::now() + WAIT;
    while c
        .lines("t:follow", ConsoleHistory::Lines(1))
        .is_none_or(|l| l.iter().all(|l| l.text != "live 24"))
    {
        assert!(Instant::now() < deadline, "the last line was never stored");
        thread::sleep(Duration::from_millis(5));
    }
    let mut got = Vec::new();
    while let Pull::Data(d) = slow.next(Duration::ZERO) {
        got.extend(texts(&String::from_utf8(d).expect("utf-8")));
    }
    let mut want: Vec<String> = (0..10).map(|i| format!("live {i}")).collect();
    want.push("15 console lines lost: this reader was too slow".into());
    assert_eq!(got, want);
    // A dropped follower frees its slot.
    drop(slow);
    let mut again = c
        .source("t:follow", ConsoleHistory::None, true)
        .expect("source");
    assert_eq!(again.next(Duration::from_millis(10)), Pull::Idle);

    // Forgotten: readable for a while, then gone; followers see the end.
    drop(out_w);
    drop(err_w);
    c.forget("t:follow");
    assert!(c.source("t:follow", ConsoleHistory::All, false).is_some());
    let deadline = Instant::now() + WAIT;
    loop {
        match fast.next(Duration::from_millis(100)) {
            Pull::End => break,
            Pull::Idle | Pull::Data(_) => {
                assert!(Instant::now() < deadline, "the follower never ended")
            }
            Pull::Failed(e) => panic!("{e:?}"),
        }
    }
    assert!(c.source("t:follow", ConsoleHistory::All, false).is_none());
    assert!(c.names().is_empty());
}

#[test]
fn dropping_the_runner_kills_its_tenders_silently() {
    let ns = netns("drop");
    let pid = ns.run(|| {
        let h = Harness::new();
        let l = net_launch("t:drop", "br0", Mac([2, 0, 0, 0, 0, 4]), "10.79.0.4/24");
        let sp = h.runner.spawn(&l).expect("spawn");
        h.wait_console("t:drop", "listening on TCP port 80");
        assert_eq!(h.runner.running(), [sp.pid]);
        let Harness {
            runner,
            consoles: _c,
            exits,
        } = h;
        drop(runner);
        assert!(dead(sp.pid), "the tender outlived its runner");
        // Nothing supervises it any more: no exit is reported.
        assert!(exits.recv_timeout(Duration::from_millis(300)).is_err());
        sp.pid
    });
    assert!(dead(pid));
    assert!(!links(&ns).iter().any(|l| l.starts_with("ptap")));
}

/// A stand-in tender: a shell script that reports how it was started.
fn fake_tender(dir: &Path, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join("fake-hvt");
    std::fs::write(&p, format!("#!/bin/sh\n{body}")).expect("write the fake tender");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    p
}

/// What the tender gets: its command line, an empty environment, `/` as directory,
/// `/dev/null` as stdin, pipes as stdout and stderr, the tap fd as `@FD` — and no other
/// descriptor of the supervisor.
#[test]
fn the_tender_gets_exactly_its_arguments_and_descriptors() {
    let ns = netns("exec");
    let dir = Scratch::new("petreld-runner-exec");
    let script = fake_tender(
        dir.dir(),
        r#"echo "argv: $*"
echo "env: $(env | tr '\n' ' ')"
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
echo "cwd: $(pwd)"
ls -l /proc/$$/fd | sed -n 's/.* \([0-9]*\) -> \(.*\)/fd: \1 \2/p'
echo "done" >&2
exit 3
"#,
    );
    let script2 = script.clone();
    let (out, ex, image) = ns.run(move || {
        let consoles = Consoles::new(ConsoleLimits::default()).expect("consoles");
        let (tx, exits) = mpsc::channel();
        let runner = Runner::new(
            RunnerConfig { tender: script2 },
            Arc::clone(&consoles),
            Box::new(move |e| drop(tx.send(e))),
        )
        .expect("runner");
        let mut l = net_launch("t:exec", "br0", Mac([2, 0, 0, 0, 0, 5]), "10.79.0.5/24");
        l.args.push("two words".into());
        l.block = vec![LaunchBlock {
            device: "storage".into(),
            path: "/data/block/v".into(),
            sector_size: Some(4096),
        }];
        let sp = runner.spawn(&l).expect("spawn");
        let ex = exits.recv_timeout(WAIT).expect("exit");
        assert_eq!(ex.pid, sp.pid);
        let out = drain(
            consoles
                .source("t:exec", ConsoleHistory::All, false)
                .expect("console"),
        );
        (out, ex, l.image)
    });
    drop(dir);
    assert_eq!(ex.status, ExitStatus::Code(3), "{out}");
    assert_eq!(ex.reason, "done");
    let texts = texts(&out);
    let argv = texts
        .iter()
        .find_map(|t| t.strip_prefix("argv: "))
        .unwrap_or_else(|| panic!("{out}"));
    let fd: String = argv
        .split_once("--net:service0=@")
        .and_then(|(_, rest)| rest.split(' ').next())
        .unwrap_or_else(|| panic!("no @FD in {argv}"))
        .to_string();
    assert_eq!(
        argv,
        format!(
            "--mem=16 --net:service0=@{fd} --net-mac:service0=02:00:00:00:00:05 \
             --block:storage=/data/block/v --block-sector-size:storage=4096 -- {} \
             --ipv4=10.79.0.5/24 two words",
            image.display()
        )
    );
    // An empty environment: only what the shell sets itself.
    let env = texts
        .iter()
        .find_map(|t| t.strip_prefix("env: "))
        .unwrap_or_else(|| panic!("{out}"));
    for var in env.split_whitespace() {
        let name = var.split('=').next().unwrap_or("");
        assert!(
            ["PWD", "OLDPWD", "SHLVL", "_"].contains(&name),
            "{var} leaked\n{out}"
        );
    }
    assert!(texts.contains(&"cwd: /".to_string()), "{out}");
    let fds: HashMap<&str, &str> = texts
        .iter()
        .filter_map(|t| t.strip_prefix("fd: "))
        .filter_map(|t| t.split_once(' '))
        .collect();
    assert_eq!(fds.get("0"), Some(&"/dev/null"), "{out}");
    assert!(
        fds.get("1").is_some_and(|t| t.starts_with("pipe:")),
        "{out}"
    );
    assert!(
        fds.get("2").is_some_and(|t| t.starts_with("pipe:")),
        "{out}"
    );
    assert_eq!(fds.get(fd.as_str()), Some(&"/dev/net/tun"), "{out}");
    let script = script.display().to_string();
    for (n, target) in &fds {
        assert!(
            ["0", "1", "2", fd.as_str()].contains(n) || *target == script,
            "fd {n} ({target}) leaked into the tender\n{out}"
        );
    }
}

/// A pipe held open by a straggler must not hide an exit: it is reported after a short
/// grace period, once.
#[test]
fn an_exit_is_reported_even_if_the_console_pipes_stay_open() {
    let dir = Scratch::new("petreld-runner-grace");
    let script = fake_tender(dir.dir(), "sleep 6 &\necho bye >&2\nexit 4\n");
    let consoles = Consoles::new(ConsoleLimits::default()).expect("consoles");
    let (tx, exits) = mpsc::channel();
    let runner = Runner::new(
        RunnerConfig { tender: script },
        Arc::clone(&consoles),
        Box::new(move |e| drop(tx.send(e))),
    )
    .expect("runner");
    let t0 = Instant::now();
    let mut l = launch("t:grace", "hello", &[]);
    l.image = "/x.hvt".into();
    let sp = runner.spawn(&l).expect("spawn");
    let ex = exits.recv_timeout(WAIT).expect("exit");
    let took = t0.elapsed();
    drop(dir);
    assert_eq!((ex.pid, ex.status), (sp.pid, ExitStatus::Code(4)));
    assert!(took < Duration::from_secs(5), "reported after {took:?}");
    assert_eq!(consoles.last_tender_line("t:grace").as_deref(), Some("bye"));
    // The straggler ends later; still one report.
    assert!(exits.recv_timeout(Duration::from_secs(7)).is_err());
}
