//! The `net` example unikernel on a real tap: ARP, ping and HTTP from the host side.
//!
//! Each test builds its own network namespace (`petrel-t-<pid>-<tag>`) with a tap in it,
//! gives the host end an address there, runs the tender with the guest on that tap, and
//! pings and fetches the page from inside the namespace. Only addresses inside these
//! namespaces are used. Guards kill the tender and delete the namespace even when a test
//! fails. Needs root, KVM, `ip` (iproute2), `ping` (iputils-ping) and `curl`
//! (`make deps` installs them); a missing one fails the test with the reason.

mod common;
use common::*;
use petrel_test_support::{self as support, Netns};

use std::io::{BufRead, BufReader, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// The page the guest serves at `/`.
const BODY: &str = "Hello from a Petrel unikernel\n";
/// Prefix of the namespaces these tests create.
const NS_PREFIX: &str = "petrel-t-";
/// Longest wait for the guest to say it is listening.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait for the tender to exit after SIGTERM.
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Fails loudly unless this process is root with KVM, and `ip`, `ping` and `curl` are
/// installed.
fn require_tools() {
    support::require_root("these tests create network namespaces and taps");
    require_kvm();
    support::require_ip();
    support::require_program("ping", "-V", "iputils-ping");
    support::require_program("curl", "--version", "curl");
}

/// A network namespace (`petrel-t-…`) made for one test, loopback up; deleting it on
/// drop also deletes the taps in it (once no process uses them: the tender guard is
/// dropped first).
fn netns(tag: &str) -> Netns {
    require_tools();
    let ns = Netns::new(NS_PREFIX, tag);
    ns.loopback_up();
    ns
}

/// Adds a persistent tap `dev` to `ns`, up, with the host-side address `cidr`.
fn add_tap(ns: &Netns, dev: &str, cidr: &str) {
    ns.ip(&["tuntap", "add", "dev", dev, "mode", "tap"]);
    ns.ip(&["addr", "add", cidr, "dev", dev]);
    ns.ip(&["link", "set", dev, "up"]);
}

/// Opens the namespace's tap `dev` the way an orchestrator would before handing it to
/// the tender: from a thread that has entered the namespace (setns affects only the
/// calling thread), through `/dev/net/tun` and `TUNSETIFF`.
fn open_tap(ns: &Netns, dev: &str) -> OwnedFd {
    let dev = dev.to_string();
    ns.run(move || open_tap_here(&dev))
}

/// Body of [`open_tap`]; runs on a thread inside the namespace.
fn open_tap_here(dev: &str) -> OwnedFd {
    let tun = rustix::fs::open(
        c"/dev/net/tun",
        rustix::fs::OFlags::RDWR | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .expect("open /dev/net/tun");
    // SAFETY: ifreq is plain old data (a name array and a union of integers and
    // pointers); all-zero is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    assert!(dev.len() < ifr.ifr_name.len(), "tap name too long");
    for (d, s) in ifr.ifr_name.iter_mut().zip(dev.bytes()) {
        *d = libc::c_char::from_ne_bytes([s]);
    }
    ifr.ifr_ifru.ifru_flags = 0x1002; // IFF_TAP | IFF_NO_PI
    const _: () = assert!(libc::IFF_TAP | libc::IFF_NO_PI == 0x1002);
    // SAFETY: `tun` is an open tun device and `ifr` a valid ifreq that lives across the
    // call; TUNSETIFF reads the name and flags and writes back the name.
    let rc = unsafe { libc::ioctl(tun.as_raw_fd(), libc::TUNSETIFF, &mut ifr) };
    assert_eq!(
        rc,
        0,
        "TUNSETIFF {dev}: {}",
        std::io::Error::last_os_error()
    );
    tun
}

/// Text a pipe has produced so far, filled by a reader thread.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<String>>);

impl Captured {
    fn start(pipe: impl Read + Send + 'static) -> (Captured, JoinHandle<()>) {
        let c = Captured::default();
        let sink = c.clone();
        let h = thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                let mut s = sink.0.lock().expect("capture lock");
                s.push_str(&line);
                s.push('\n');
            }
        });
        (c, h)
    }

    fn text(&self) -> String {
        self.0.lock().expect("capture lock").clone()
    }
}

/// A running tender with its output captured; killed on drop if still running.
struct Tender {
    child: Child,
    started: Instant,
    stdout: Captured,
    stderr: Captured,
    readers: Vec<JoinHandle<()>>,
}

impl Tender {
    fn spawn(mut cmd: Command) -> Tender {
        let started = Instant::now();
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn petrel-hvt");
        let (stdout, h1) = Captured::start(child.stdout.take().expect("stdout pipe"));
        let (stderr, h2) = Captured::start(child.stderr.take().expect("stderr pipe"));
        Tender {
            child,
            started,
            stdout,
            stderr,
            readers: vec![h1, h2],
        }
    }

    fn output(&self) -> String {
        format!(
            "stdout:\n{}\nstderr:\n{}",
            self.stdout.text(),
            self.stderr.text()
        )
    }

    /// Waits until stdout contains `needle`; fails if the tender exits or time runs out.
    fn wait_for(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let out = self.stdout.text();
            if out.contains(needle) {
                return out;
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                // Let the readers finish so the output is complete.
                thread::sleep(Duration::from_millis(100));
                panic!("tender exited ({st}) before {needle:?}\n{}", self.output());
            }
            assert!(
                Instant::now() < deadline,
                "no {needle:?} after {timeout:?}\n{}",
                self.output()
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits (bounded) for the tender to exit; returns the status and all output.
    fn wait_exit(mut self, timeout: Duration) -> (ExitStatus, String) {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(st) = self.child.try_wait().expect("wait") {
                break st;
            }
            assert!(
                Instant::now() < deadline,
                "tender still running after {timeout:?}\n{}",
                self.output()
            );
            thread::sleep(Duration::from_millis(10));
        };
        for h in self.readers.drain(..) {
            let _ = h.join();
        }
        (status, self.output())
    }

    /// Sends SIGTERM and waits (bounded) for the exit status; returns it with the output.
    fn terminate(self) -> (ExitStatus, String) {
        let pid = rustix::process::Pid::from_child(&self.child);
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM");
        self.wait_exit(EXIT_TIMEOUT)
    }
}

impl Drop for Tender {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Average round-trip time from ping's summary line, in milliseconds.
fn ping_avg_ms(out: &str) -> Option<f64> {
    // rtt min/avg/max/mdev = 1.753/1.931/2.267/0.237 ms
    let line = out.lines().find(|l| l.starts_with("rtt "))?;
    let values = line.split('=').nth(1)?.trim();
    values.split('/').nth(1)?.parse().ok()
}

/// Pings and fetches the page from inside `ns`; checks the guest's log line. Returns
/// (average RTT, curl's time for the first HTTP exchange) for the report.
fn exercise(ns: &Netns, tender: &mut Tender, addr: &str) -> (f64, Duration) {
    let o = ns.exec("ping", &["-c", "3", "-W", "2", "-w", "20", addr]);
    let ping_out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "ping {addr} failed ({})\n{ping_out}\n{}\ntender {}",
        o.status,
        String::from_utf8_lossy(&o.stderr),
        tender.output()
    );
    assert!(ping_out.contains("3 received"), "{ping_out}");
    let rtt = ping_avg_ms(&ping_out).expect("ping summary line");

    let url = format!("http://{addr}/");
    // curl's own time for the exchange (connect, request, answer), on its stderr.
    let o = ns.exec(
        "curl",
        &[
            "-sS",
            "--max-time",
            "10",
            "-w",
            "%{stderr}%{time_total}",
            &url,
        ],
    );
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        o.status.success(),
        "curl {url} failed ({}): {err}\ntender {}",
        o.status,
        tender.output()
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout), BODY);
    let first_http = err
        .trim()
        .parse::<f64>()
        .map(Duration::from_secs_f64)
        .unwrap_or_else(|e| panic!("curl time_total {err:?}: {e}"));
    tender.wait_for("\"GET /\" 200", Duration::from_secs(5));

    // A second request on a fresh connection, and a 404 with its status line.
    let o = ns.exec(
        "curl",
        &["-sS", "--max-time", "10", "-i", &format!("{url}nope")],
    );
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "curl 404: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(text.starts_with("HTTP/1.0 404 Not Found\r\n"), "{text}");
    tender.wait_for("\"GET /nope\" 404", Duration::from_secs(5));
    (rtt, first_http)
}

/// Stops the tender with SIGTERM: exit status 1 and upstream's message.
fn stop(tender: Tender) {
    let (status, out) = tender.terminate();
    assert_eq!(status.code(), Some(1), "{out}");
    assert!(out.contains("Exiting on signal 15"), "{out}");
}

#[test]
fn tap_by_name_answers_arp_ping_and_http() {
    let ns = netns("name");
    add_tap(&ns, "tap0", "10.77.0.1/24");
    let guest = guest("net");
    let mut cmd = ns.command(tender().to_str().expect("utf-8 path"));
    cmd.args(["--mem=16", "--net:service0=tap0", "--"])
        .arg(&guest)
        .arg("--ipv4=10.77.0.2/24");
    let mut tender = Tender::spawn(cmd);
    let ready = tender.wait_for("listening on TCP port 80", READY_TIMEOUT);
    let boot = tender.started.elapsed();
    assert!(ready.contains("10.77.0.2/24"), "{ready}");

    let (rtt_ms, first_http) = exercise(&ns, &mut tender, "10.77.0.2");
    eprintln!(
        "net (tap by name): ready {boot:?} after spawn, ping avg {rtt_ms:.2} ms, first \
         HTTP exchange {first_http:?} (curl time_total)"
    );
    stop(tender);
}

#[test]
fn tap_fd_is_passed_as_at_fd_with_a_chosen_mac() {
    let ns = netns("fd");
    add_tap(&ns, "tap0", "10.77.0.1/24");
    let tap = open_tap(&ns, "tap0");
    let raw = tap.as_raw_fd();
    // The tender itself stays in the test's own namespace: the fd is all it gets.
    let mut cmd = Command::new(tender());
    cmd.args([
        "--mem=16",
        "--net:service0=@3",
        "--net-mac:service0=02:00:0a:4d:00:02",
        "--",
    ])
    .arg(guest("net"))
    .arg("--ipv4=10.77.0.2/24");
    // SAFETY: the closure runs in the child between fork and exec and only calls
    // dup2 and fcntl, which are async-signal-safe; it allocates nothing. `raw` stays
    // open in the parent (owned by `tap`) until after the spawn.
    unsafe {
        cmd.pre_exec(move || {
            if raw == 3 {
                // dup2 onto itself keeps FD_CLOEXEC: clear it instead.
                if libc::fcntl(3, libc::F_SETFD, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
            } else if libc::dup2(raw, 3) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut tender = Tender::spawn(cmd);
    drop(tap);
    let ready = tender.wait_for("listening on TCP port 80", READY_TIMEOUT);
    assert!(ready.contains("mac 02:00:0a:4d:00:02"), "{ready}");

    let (rtt_ms, first_http) = exercise(&ns, &mut tender, "10.77.0.2");
    // The host learnt the guest's MAC through ARP.
    let o = ns.exec("ip", &["neigh", "show", "10.77.0.2", "dev", "tap0"]);
    let neigh = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(neigh.contains("02:00:0a:4d:00:02"), "ip neigh: {neigh:?}");
    eprintln!("net (tap as @3): ping avg {rtt_ms:.2} ms, first HTTP exchange {first_http:?}");
    stop(tender);
}

#[test]
fn arguments_are_checked_by_the_guest() {
    let ns = netns("args");
    add_tap(&ns, "tap0", "10.77.0.1/24");
    let run = |args: &[&str]| {
        let mut cmd = ns.command(tender().to_str().expect("utf-8 path"));
        cmd.args(["--mem=16", "--net:service0=tap0", "--"])
            .arg(guest("net"))
            .args(args);
        Tender::spawn(cmd).wait_exit(READY_TIMEOUT)
    };
    let (st, out) = run(&["--help"]);
    assert_eq!(st.code(), Some(0), "{out}");
    assert!(out.contains("default: 10.0.0.2/24"), "{out}");
    let (st, out) = run(&["--ipv4=10.77.0.2/33"]);
    assert_eq!(st.code(), Some(2), "{out}");
    assert!(out.contains("--ipv4=\"10.77.0.2/33\""), "{out}");
    let (st, out) = run(&["--ipv4=10.77.0.2/24", "--ipv4-gateway=10.78.0.1"]);
    assert_eq!(st.code(), Some(2), "{out}");
    assert!(out.contains("not inside the --ipv4 network"), "{out}");
}
