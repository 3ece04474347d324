//! `make bench`: measures `petrel-hvt` side by side with a baseline tender.
//!
//! KVM on the build machines is software (kvm_pvm), so absolute numbers say little: what
//! counts are the ratios ours/baseline from one run, where both tenders are measured
//! interleaved (ours, baseline, ours, ...) so that load from other builds hits both
//! alike, and counts (exits, syscalls) that do not depend on speed.
//!
//! Measured per tender: boot-to-exit of `hello` (wall clock, median and p90), hypercall
//! round trips (`bench_hc`: guest TSC per call, and host wall clock per call), block
//! throughput (`bench_blk` over a scratch file), network frames per second
//! (`bench_net`: guest to tap, counted on the tap, and ping-pong round trips through
//! a packet socket, in a network namespace of our own), peak RSS of `hello` (`wait4`'s
//! `ru_maxrss`), the binary's stripped size, and per-boot counts of KVM exits (`perf`)
//! and syscalls (`strace -c -f`) when those tools exist.
//!
//! Environment: `PETREL_GUESTS` (the `.hvt` directory, default `target/guests`),
//! `PETREL_HVT` (our tender; default: `petrel-hvt` next to this example's directory),
//! `HVT_BASELINE` (e.g. Solo5's `solo5-hvt`; without it only our numbers are shown),
//! `BENCH_BOOT_RUNS` (20), `BENCH_HC_CALLS` (5000), `BENCH_REPEAT` (rounds, 5; block
//! and net run at most 3), `BENCH_BLOCK_MIB` (8), `BENCH_NET_FRAMES` (2000),
//! `BENCH_NET_SECS` (1, per echo run).
//!
//! The table gives medians; "per round" is the range of ours/baseline over single
//! rounds, a direct view of the noise. Network setup needs root (`ip netns`); the
//! namespace and scratch files are removed on every exit path except a kill.
//!
//! Exits 0 when every measurement ran (missed targets are reported, not fatal: timing
//! on a shared machine is too noisy to gate on), 1 when one could not run.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::Read;
use std::num::NonZeroU32;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use petrel_test_support::{self as support, Scratch};
use rustix::net::{AddressFamily, Protocol, RecvFlags, SendFlags, SocketType};
use rustix::process::{Pid, Signal, WaitId, WaitIdOptions};

/// The targets.
const TARGET_RSS_KIB: f64 = 2048.0;
const TARGET_SIZE_BYTES: f64 = 1_500_000.0;

/// Network namespace layout: one tap, the guest's fixed MAC, the host's frame source.
const TAP: &str = "tap0";
const GUEST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const HOST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
/// IEEE 802 local experimental EtherType 1; `bench_net` echoes only these frames.
const ETHERTYPE_BENCH: u16 = 0x88b5;
/// First payload byte that tells `bench_net echo` to exit.
const ECHO_STOP: u8 = 0xff;
/// How long the echo client waits for one echo before counting it lost.
const ECHO_WAIT: Duration = Duration::from_millis(50);

/// Why the bench could not run. Printed once as a chain by `main`.
#[derive(Debug, thiserror::Error)]
enum BenchError {
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Failed(String),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BenchError {
    let what = what.into();
    move |source| BenchError::Io { what, source }
}

fn errno_err(what: impl Into<String>) -> impl FnOnce(rustix::io::Errno) -> BenchError {
    let what = what.into();
    move |e| BenchError::Io {
        what,
        source: e.into(),
    }
}

type Result<T, E = BenchError> = std::result::Result<T, E>;

// ---------------------------------------------------------------------------------------
// Configuration

struct Config {
    guests: PathBuf,
    tenders: Vec<Tender>,
    boot_runs: usize,
    hc_calls: u64,
    repeat: usize,
    block_mib: u64,
    net_frames: u64,
    net_secs: u64,
}

#[derive(Clone)]
struct Tender {
    label: &'static str,
    path: PathBuf,
}

fn env_num<T: std::str::FromStr>(name: &str, default: T) -> Result<T> {
    match std::env::var(name) {
        Err(_) => Ok(default),
        Ok(v) => v
            .parse()
            .map_err(|_| BenchError::Failed(format!("{name}={v} is not a number"))),
    }
}

impl Config {
    fn from_env() -> Result<Config> {
        let guests = std::env::var_os("PETREL_GUESTS").map_or_else(
            || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/guests"),
            PathBuf::from,
        );
        let ours = match std::env::var_os("PETREL_HVT") {
            Some(p) => PathBuf::from(p),
            // This example runs from target/<triple>/release/examples/.
            None => std::env::current_exe()
                .map_err(io_err("locating this executable"))?
                .parent()
                .and_then(Path::parent)
                .map(|release| release.join("petrel-hvt"))
                .ok_or_else(|| BenchError::Failed("no directory above the example".into()))?,
        };
        let mut tenders = vec![Tender {
            label: "ours",
            path: ours,
        }];
        if let Some(b) = std::env::var_os("HVT_BASELINE").filter(|b| !b.is_empty()) {
            tenders.push(Tender {
                label: "baseline",
                path: PathBuf::from(b),
            });
        }
        for t in &tenders {
            if !t.path.is_file() {
                return Err(BenchError::Failed(format!(
                    "tender {} not found (run `make tender`, or fix PETREL_HVT/HVT_BASELINE)",
                    t.path.display()
                )));
            }
        }
        Ok(Config {
            guests,
            tenders,
            boot_runs: env_num("BENCH_BOOT_RUNS", 20)?,
            hc_calls: env_num("BENCH_HC_CALLS", 5000)?,
            repeat: env_num("BENCH_REPEAT", 5)?,
            block_mib: env_num("BENCH_BLOCK_MIB", 8)?,
            net_frames: env_num("BENCH_NET_FRAMES", 2000)?,
            net_secs: env_num("BENCH_NET_SECS", 1)?,
        })
    }

    /// The tenders with their indices, in the order of round `round`: ours first in
    /// even rounds, last in odd ones, so that neither always runs right after the other.
    fn turns(&self, round: usize) -> Vec<(usize, &Tender)> {
        let mut v: Vec<(usize, &Tender)> = self.tenders.iter().enumerate().collect();
        if round % 2 == 1 {
            v.reverse();
        }
        v
    }

    fn guest(&self, name: &str) -> Result<String> {
        let p = self.guests.join(format!("{name}.hvt"));
        if !p.is_file() {
            return Err(BenchError::Failed(format!(
                "guest {} is missing: run `make guests` first",
                p.display()
            )));
        }
        p.into_os_string()
            .into_string()
            .map_err(|_| BenchError::Failed("guest path is not UTF-8".into()))
    }
}

// ---------------------------------------------------------------------------------------
// Running a tender once: wall clock, exit status, peak RSS, output

struct Run {
    wall: Duration,
    /// Exit code, or `None` when killed by a signal.
    code: Option<i32>,
    maxrss_kib: u64,
    /// User plus system CPU time of the process (vCPU time included).
    cpu: Duration,
    stdout: String,
    stderr: String,
}

impl Run {
    /// The guest's `bench: op=...` line as key/value pairs.
    fn bench_line(&self) -> Option<HashMap<&str, &str>> {
        let line = self
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix("bench: op="))?;
        let mut kv: HashMap<&str, &str> = HashMap::new();
        for (i, word) in line.split_whitespace().enumerate() {
            if i == 0 {
                kv.insert("op", word);
            } else if let Some((k, v)) = word.split_once('=') {
                kv.insert(k, v);
            }
        }
        Some(kv)
    }

    fn num(&self, key: &str) -> Result<f64> {
        self.bench_line()
            .and_then(|kv| kv.get(key).and_then(|v| v.parse::<f64>().ok()))
            .ok_or_else(|| {
                BenchError::Failed(format!(
                    "no `{key}=` in the guest's result line\nstdout:\n{}stderr:\n{}",
                    self.stdout, self.stderr
                ))
            })
    }
}

/// Blocks until `pid` has exited (without reaping it), or kills it after `timeout`.
fn wait_exited(pid: Pid, timeout: Duration) -> Result<()> {
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let watchdog = thread::spawn(move || {
        if let Err(mpsc::RecvTimeoutError::Timeout) = done_rx.recv_timeout(timeout) {
            // The child is not reaped before this thread is joined, so `pid` still
            // names it (running or a zombie).
            let _ = rustix::process::kill_process(pid, Signal::KILL);
        }
    });
    let waited = loop {
        match rustix::process::waitid(
            WaitId::Pid(pid),
            WaitIdOptions::EXITED | WaitIdOptions::NOWAIT,
        ) {
            Err(rustix::io::Errno::INTR) => continue,
            other => break other,
        }
    };
    drop(done_tx);
    let _ = watchdog.join();
    waited.map(drop).map_err(errno_err("waitid"))
}

/// Reaps `pid` with `wait4`, returning its wait status, `ru_maxrss` (KiB) and user
/// plus system CPU time.
fn reap(pid: Pid) -> Result<(i32, u64, Duration)> {
    let mut status: libc::c_int = 0;
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `status` and `usage` are valid for writes of their types for the whole
    // call; `pid` is our own child, exited and not yet reaped (see `wait_exited`).
    let r = unsafe {
        libc::wait4(
            pid.as_raw_nonzero().get(),
            &mut status,
            0,
            usage.as_mut_ptr(),
        )
    };
    if r < 0 {
        return Err(io_err("wait4")(std::io::Error::last_os_error()));
    }
    // SAFETY: wait4 succeeded, so the kernel filled in the rusage (and all-zero bytes,
    // its starting value, are a valid rusage anyway).
    let usage = unsafe { usage.assume_init() };
    let tv = |t: libc::timeval| {
        let us = t.tv_sec.saturating_mul(1_000_000).saturating_add(t.tv_usec);
        Duration::from_micros(u64::try_from(us).unwrap_or(0))
    };
    let cpu = tv(usage.ru_utime) + tv(usage.ru_stime);
    Ok((status, u64::try_from(usage.ru_maxrss).unwrap_or(0), cpu))
}

fn spawn_reader(pipe: Option<impl Read + Send + 'static>) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut s = String::new();
        if let Some(mut p) = pipe {
            let mut bytes = Vec::new();
            let _ = p.read_to_end(&mut bytes);
            s = String::from_utf8_lossy(&bytes).into_owned();
        }
        s
    })
}

/// Runs `argv` (no shell) once and measures it from spawn to exit.
///
/// std spawns with `posix_spawn` (vfork) here, so `ru_maxrss` is the tender's own peak,
/// not a copy of this process's memory.
fn run(argv: &[String], timeout: Duration) -> Result<Run> {
    let (prog, args) = argv
        .split_first()
        .ok_or_else(|| BenchError::Failed("empty command".into()))?;
    let mut cmd = Command::new(prog);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd.spawn().map_err(io_err(format!("spawning {prog}")))?;
    let out = spawn_reader(child.stdout.take());
    let err = spawn_reader(child.stderr.take());
    let pid = Pid::from_child(&child);
    wait_exited(pid, timeout)?;
    let wall = start.elapsed();
    let (status, maxrss_kib, cpu) = reap(pid)?;
    // `child` is reaped: dropping it neither waits nor kills.
    drop(child);
    Ok(Run {
        wall,
        code: libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)),
        maxrss_kib,
        cpu,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
}

/// Runs a tender with device options and a guest command line; fails unless it exits 0.
fn run_guest(
    prefix: &[&str],
    tender: &Tender,
    opts: &[String],
    guest: &str,
    gargs: &[String],
    timeout: Duration,
) -> Result<Run> {
    let mut argv: Vec<String> = prefix.iter().map(|s| (*s).to_string()).collect();
    argv.push(tender.path.display().to_string());
    argv.extend(opts.iter().cloned());
    argv.push("--".into());
    argv.push(guest.into());
    argv.extend(gargs.iter().cloned());
    let r = run(&argv, timeout)?;
    if r.code != Some(0) {
        return Err(BenchError::Failed(format!(
            "`{}` exited with {:?} (None: killed, e.g. after {timeout:?})\nstdout:\n{}stderr:\n{}",
            argv.join(" "),
            r.code,
            r.stdout,
            r.stderr
        )));
    }
    Ok(r)
}

// ---------------------------------------------------------------------------------------
// Statistics and the table

fn median(v: &[f64]) -> f64 {
    percentile(v, 50)
}

/// Nearest-rank percentile (`p` in 1..=100); NaN for no samples.
fn percentile(v: &[f64], p: usize) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match (s.len() * p).div_ceil(100).checked_sub(1) {
        Some(i) => s.get(i).copied().unwrap_or(f64::NAN),
        None => s.first().copied().unwrap_or(f64::NAN),
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[derive(Clone, Copy)]
enum Target {
    /// Ours/baseline at most this.
    RatioAtMost(f64),
    /// Our value below this.
    OursBelow(f64),
}

struct Row {
    metric: String,
    /// One value per tender, in `Config::tenders` order.
    values: Vec<Option<f64>>,
    /// Lowest and highest ours/baseline ratio of single rounds (ours and the baseline
    /// back to back): how far apart the noise puts them.
    paired: Option<(f64, f64)>,
    target: Option<Target>,
}

#[derive(Default)]
struct Report {
    rows: Vec<Row>,
    notes: Vec<String>,
}

impl Report {
    fn row(&mut self, metric: impl Into<String>, values: Vec<Option<f64>>, target: Option<Target>) {
        self.rows.push(Row {
            metric: metric.into(),
            values,
            paired: None,
            target,
        });
    }

    /// A row from per-round samples (one vector per tender, index = round): medians,
    /// and the range of the per-round ratios.
    fn samples(&mut self, metric: impl Into<String>, samples: &[Vec<f64>], target: Option<Target>) {
        let paired = match samples {
            [ours, base] if ours.len() == base.len() && ours.len() > 1 => {
                let r: Vec<f64> = ours.iter().zip(base).map(|(o, b)| o / b).collect();
                Some((percentile(&r, 1), percentile(&r, 100)))
            }
            _ => None,
        };
        self.rows.push(Row {
            metric: metric.into(),
            values: samples.iter().map(|s| Some(median(s))).collect(),
            paired,
            target,
        });
    }

    fn print(&self, tenders: &[Tender]) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{:<46} {:>10} {:>10} {:>9} {:>13}  target",
            "metric", "ours", "baseline", "ours/base", "per round"
        );
        let fmt = |v: Option<f64>| v.map_or("-".to_string(), fmt_num);
        for r in &self.rows {
            let ours = r.values.first().copied().flatten();
            let base = if tenders.len() > 1 {
                r.values.get(1).copied().flatten()
            } else {
                None
            };
            let ratio = ours.zip(base).map(|(o, b)| o / b);
            let verdict = match r.target {
                None => String::new(),
                Some(Target::RatioAtMost(max)) => match ratio {
                    Some(x) => format!("ratio <= {max}: {}", if x <= max { "ok" } else { "MISS" }),
                    None => format!("ratio <= {max}: n/a (no baseline)"),
                },
                Some(Target::OursBelow(max)) => match ours {
                    Some(x) => format!(
                        "< {}: {}",
                        fmt_num(max),
                        if x < max { "ok" } else { "MISS" }
                    ),
                    None => format!("< {}: n/a", fmt_num(max)),
                },
            };
            let ratio = ratio.map_or("-".to_string(), |x| format!("{x:.2}"));
            let paired = r
                .paired
                .map_or(String::new(), |(lo, hi)| format!("{lo:.2}..{hi:.2}"));
            let _ = writeln!(
                s,
                "{:<46} {:>10} {:>10} {:>9} {:>13}  {verdict}",
                r.metric,
                fmt(ours),
                fmt(base),
                ratio,
                paired
            );
        }
        for n in &self.notes {
            let _ = writeln!(s, "note: {n}");
        }
        s
    }
}

fn fmt_num(x: f64) -> String {
    if x.is_nan() {
        "nan".into()
    } else if x.abs() >= 1000.0 || x.fract() == 0.0 {
        format!("{x:.0}")
    } else if x.abs() >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

// ---------------------------------------------------------------------------------------
// The measurements

/// Boot-to-exit of `hello`, interleaved, and its peak RSS.
fn bench_boot(cfg: &Config, rep: &mut Report) -> Result<()> {
    let hello = cfg.guest("hello")?;
    let n = cfg.tenders.len();
    let mut walls = vec![Vec::new(); n];
    let mut rss = vec![0u64; n];
    for round in 0..cfg.boot_runs {
        for (i, t) in cfg.turns(round) {
            let r = run_guest(&[], t, &[], &hello, &[], Duration::from_secs(10))?;
            if !r.stdout.contains("Hello, world") {
                return Err(BenchError::Failed(format!(
                    "{}: hello printed no greeting:\n{}",
                    t.label, r.stdout
                )));
            }
            walls[i].push(ms(r.wall));
            rss[i] = rss[i].max(r.maxrss_kib);
        }
    }
    let runs = cfg.boot_runs;
    rep.samples(
        format!("hello boot-to-exit median ms ({runs} runs)"),
        &walls,
        Some(Target::RatioAtMost(1.0)),
    );
    rep.row(
        "hello boot-to-exit p90 ms",
        walls.iter().map(|w| Some(percentile(w, 90))).collect(),
        Some(Target::RatioAtMost(1.0)),
    );
    rep.row(
        "hello peak RSS KiB (max ru_maxrss)",
        rss.iter().map(|&k| Some(k as f64)).collect(),
        Some(Target::OursBelow(TARGET_RSS_KIB)),
    );
    Ok(())
}

/// Hypercall round trips from `bench_hc`: guest TSC cycles per call, and host wall
/// clock per call ((run with N calls - run with 0 calls) / N, per round).
fn bench_hypercalls(cfg: &Config, rep: &mut Report) -> Result<()> {
    let guest = cfg.guest("bench_hc")?;
    let n = cfg.tenders.len();
    let calls = cfg.hc_calls.max(1);
    for op in ["walltime", "puts"] {
        let (mut cycles, mut wall_us, mut cpu_us) = (
            vec![Vec::new(); n],
            vec![Vec::new(); n],
            vec![Vec::new(); n],
        );
        for round in 0..cfg.repeat {
            for (i, t) in cfg.turns(round) {
                let args = [op.to_string(), calls.to_string()];
                let r = run_guest(&[], t, &[], &guest, &args, Duration::from_secs(120))?;
                cycles[i].push(r.num("tsc_cycles")? / calls as f64);
                let zero = [op.to_string(), "0".into()];
                let r0 = run_guest(&[], t, &[], &guest, &zero, Duration::from_secs(10))?;
                let loop_s = r.wall.as_secs_f64() - r0.wall.as_secs_f64();
                wall_us[i].push(loop_s * 1e6 / calls as f64);
                let loop_cpu_s = r.cpu.as_secs_f64() - r0.cpu.as_secs_f64();
                cpu_us[i].push(loop_cpu_s * 1e6 / calls as f64);
            }
        }
        let label = if op == "puts" {
            "PUTS(0 B)"
        } else {
            "WALLTIME"
        };
        rep.samples(
            format!("{label} round trip, guest TSC cycles/call"),
            &cycles,
            Some(Target::RatioAtMost(1.0)),
        );
        rep.samples(
            format!("{label} round trip, host wall us/call"),
            &wall_us,
            Some(Target::RatioAtMost(1.0)),
        );
        rep.samples(
            format!("{label} round trip, host CPU us/call"),
            &cpu_us,
            Some(Target::RatioAtMost(1.0)),
        );
    }
    rep.notes.push(format!(
        "hypercalls: {calls} calls per run, median of {} runs per tender",
        cfg.repeat
    ));
    Ok(())
}

/// A scratch directory (`petrel-bench-…` under the temporary directory), removed on
/// drop.
fn scratch() -> Result<Scratch> {
    Scratch::try_new("petrel-bench").map_err(io_err("making the scratch directory"))
}

/// Block throughput of `bench_blk` over a scratch file: one sector per hypercall (what
/// Solo5's bindings allow) and 64 KiB per hypercall (the tender's I/O path).
fn bench_block(cfg: &Config, rep: &mut Report) -> Result<()> {
    let guest = cfg.guest("bench_blk")?;
    let scratch = scratch()?;
    let disk = scratch.path("storage.img");
    let size = cfg.block_mib.max(1) * 1024 * 1024;
    let f = File::create(&disk).map_err(io_err("creating the block file"))?;
    f.set_len(size).map_err(io_err("sizing the block file"))?;
    drop(f);
    let opts = [format!("--block:storage={}", disk.display())];
    let n = cfg.tenders.len();
    // Large chunks move the file 16 times, so that the timed loop is not a few ms.
    for (chunk, passes) in [(512u64, 1u64), (65536, 16)] {
        for op in ["write", "read"] {
            let mut rates = vec![Vec::new(); n];
            for round in 0..cfg.repeat.min(3) {
                for (i, t) in cfg.turns(round) {
                    let args = [op.to_string(), chunk.to_string(), passes.to_string()];
                    let r = run_guest(&[], t, &opts, &guest, &args, Duration::from_secs(120))?;
                    let (bytes, ns) = (r.num("bytes")?, r.num("ns")?);
                    rates[i].push(bytes / ns * 1e3); // bytes/ns * 1e9 / 1e6 = MB/s
                }
            }
            rep.samples(
                format!(
                    "block {op} MB/s, {}/call (higher)",
                    if chunk == 512 { "512 B" } else { "64 KiB" }
                ),
                &rates,
                None,
            );
        }
    }
    let mut first = [0u8; 1];
    File::open(&disk)
        .and_then(|mut f| f.read_exact(&mut first))
        .map_err(io_err("reading the block file back"))?;
    if first[0] != 0xa5 {
        return Err(BenchError::Failed(
            "bench_blk's writes did not reach the file".into(),
        ));
    }
    rep.notes.push(format!(
        "block: {} MiB file in {} (64 KiB/call: 16 passes), 512 B sectors, guest-timed loop, median of {} runs",
        cfg.block_mib,
        std::env::temp_dir().display(),
        cfg.repeat.min(3)
    ));
    Ok(())
}

/// A network namespace with one persistent tap, `TAP`, up and without IPv6 (so that
/// nothing but the bench's frames crosses it). Deleted, tap included, on drop.
struct Netns(support::Netns);

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(io_err("running ip"))?;
    if !out.status.success() {
        return Err(BenchError::Failed(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

impl Netns {
    fn create() -> Result<Netns> {
        let ns = support::Netns::try_new("petrel-bench-", "net")
            .map_err(io_err("making the bench's network namespace"))?;
        let n = ns.name();
        for key in ["all", "default"] {
            let sysctl = format!("net.ipv6.conf.{key}.disable_ipv6=1");
            ip(&["netns", "exec", n, "sysctl", "-qw", &sysctl])?;
        }
        ip(&["-n", n, "tuntap", "add", "dev", TAP, "mode", "tap"])?;
        ip(&["-n", n, "link", "set", TAP, "up"])?;
        Ok(Netns(ns))
    }

    /// The namespace's name.
    fn name(&self) -> &str {
        self.0.name()
    }

    /// A counter of `TAP` from `/sys/class/net/TAP/statistics/` as seen inside.
    fn tap_stat(&self, name: &str) -> Result<u64> {
        let path = format!("/sys/class/net/{TAP}/statistics/{name}");
        let out = self
            .0
            .command("cat")
            .arg(&path)
            .output()
            .map_err(io_err("running ip netns exec cat"))?;
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .map_err(|_| BenchError::Failed(format!("cannot read {path} in {}", self.name())))
    }

    /// Moves the calling thread into the namespace (only that thread).
    fn enter(&self) -> Result<()> {
        self.0
            .enter()
            .map_err(io_err("entering the bench's network namespace"))
    }
}

/// A raw packet socket on `TAP` for EtherType `ETHERTYPE_BENCH`, in the calling
/// thread's network namespace.
fn packet_socket() -> Result<OwnedFd> {
    let proto_be = NonZeroU32::new(u32::from(ETHERTYPE_BENCH.to_be()))
        .ok_or_else(|| BenchError::Failed("zero EtherType".into()))?;
    let fd = rustix::net::socket(
        AddressFamily::PACKET,
        SocketType::RAW,
        Some(Protocol::from_raw(proto_be)),
    )
    .map_err(errno_err("socket(AF_PACKET)"))?;
    let ifname = std::ffi::CString::new(TAP).map_err(|_| BenchError::Failed("tap name".into()))?;
    // SAFETY: `ifname` is a NUL-terminated string that outlives the call.
    let ifindex = unsafe { libc::if_nametoindex(ifname.as_ptr()) };
    let ifindex = i32::try_from(ifindex)
        .ok()
        .filter(|&i| i > 0)
        .ok_or_else(|| BenchError::Failed(format!("{TAP} not found in the namespace")))?;
    let family = libc::c_ushort::try_from(libc::AF_PACKET)
        .map_err(|_| BenchError::Failed("AF_PACKET does not fit sa_family_t".into()))?;
    let addr = libc::sockaddr_ll {
        sll_family: family,
        sll_protocol: ETHERTYPE_BENCH.to_be(),
        sll_ifindex: ifindex,
        sll_hatype: 0,
        sll_pkttype: 0,
        sll_halen: 0,
        sll_addr: [0; 8],
    };
    let len = libc::socklen_t::try_from(std::mem::size_of_val(&addr))
        .map_err(|_| BenchError::Failed("sockaddr_ll size".into()))?;
    // SAFETY: `addr` is a fully initialised sockaddr_ll of `len` bytes that the kernel
    // only reads; `fd` is an open packet socket.
    let r = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            std::ptr::from_ref(&addr).cast::<libc::sockaddr>(),
            len,
        )
    };
    if r != 0 {
        return Err(io_err("bind(AF_PACKET)")(std::io::Error::last_os_error()));
    }
    rustix::net::sockopt::set_socket_timeout(
        &fd,
        rustix::net::sockopt::Timeout::Recv,
        Some(ECHO_WAIT),
    )
    .map_err(errno_err("SO_RCVTIMEO"))?;
    Ok(fd)
}

/// A 60-byte bench frame to the guest: kind byte (0 = echo me, `ECHO_STOP`) and a
/// sequence number.
fn echo_frame(kind: u8, seq: u32) -> [u8; 60] {
    let mut f = [0u8; 60];
    f[..6].copy_from_slice(&GUEST_MAC);
    f[6..12].copy_from_slice(&HOST_MAC);
    f[12..14].copy_from_slice(&ETHERTYPE_BENCH.to_be_bytes());
    f[14] = kind;
    f[15..19].copy_from_slice(&seq.to_le_bytes());
    f
}

/// Whether `frame` is the guest's echo of sequence number `seq`.
fn is_echo(frame: &[u8], seq: u32) -> bool {
    frame.len() >= 19
        && frame[..6] == HOST_MAC
        && frame[6..12] == GUEST_MAC
        && frame[15..19] == seq.to_le_bytes()
}

struct EchoStats {
    round_trips: u64,
    lost: u64,
    rtt_us: Vec<f64>,
    secs: f64,
}

/// Ping-pong with `bench_net echo` for `secs`, then tells it to stop. Runs on its own
/// thread inside the namespace; `tender_done` is set when the tender has exited.
fn echo_client(ns: &Netns, secs: u64, tender_done: &AtomicBool) -> Result<EchoStats> {
    ns.enter()?;
    let sock = packet_socket()?;
    let mut buf = [0u8; 2048];
    let mut seq = 0u32;
    // Wait for the tender to attach the tap and the guest to answer.
    let warm_deadline = Instant::now() + Duration::from_secs(10);
    let mut warm = false;
    while !warm && Instant::now() < warm_deadline && !tender_done.load(Ordering::Relaxed) {
        seq += 1;
        // Before the tender attaches, the tap has no carrier and may refuse: retry.
        let _ = rustix::net::send(&sock, &echo_frame(0, seq), SendFlags::empty());
        while let Ok((got, _)) = rustix::net::recv(&sock, &mut buf, RecvFlags::empty()) {
            if is_echo(&buf[..got], seq) {
                warm = true;
                break;
            }
        }
    }
    if !warm {
        return Err(BenchError::Failed("bench_net echo never answered".into()));
    }
    let (mut round_trips, mut lost, mut rtt_us) = (0, 0, Vec::new());
    let start = Instant::now();
    let until = start + Duration::from_secs(secs);
    while Instant::now() < until {
        seq += 1;
        let sent = Instant::now();
        rustix::net::send(&sock, &echo_frame(0, seq), SendFlags::empty())
            .map_err(errno_err("send to the tap"))?;
        let mut answered = false;
        while let Ok((got, _)) = rustix::net::recv(&sock, &mut buf, RecvFlags::empty()) {
            if is_echo(&buf[..got], seq) {
                answered = true;
                break;
            }
        }
        if answered {
            round_trips += 1;
            rtt_us.push(sent.elapsed().as_secs_f64() * 1e6);
        } else {
            lost += 1;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let stop_deadline = Instant::now() + Duration::from_secs(5);
    while !tender_done.load(Ordering::Relaxed) && Instant::now() < stop_deadline {
        let _ = rustix::net::send(&sock, &echo_frame(ECHO_STOP, 0), SendFlags::empty());
        thread::sleep(Duration::from_millis(20));
    }
    Ok(EchoStats {
        round_trips,
        lost,
        rtt_us,
        secs,
    })
}

/// Network: frames/s from the guest into the tap (counted on the tap), and echo round
/// trips/s, in a namespace of our own.
fn bench_net(cfg: &Config, rep: &mut Report) -> Result<()> {
    let guest = cfg.guest("bench_net")?;
    let ns = Netns::create()?;
    let prefix = ["ip", "netns", "exec", ns.name()];
    let mac = GUEST_MAC.map(|b| format!("{b:02x}")).join(":");
    let opts = [
        format!("--net:service0={TAP}"),
        format!("--net-mac:service0={mac}"),
    ];
    let n = cfg.tenders.len();
    let frames = cfg.net_frames.max(1);
    for size in [60u64, 1514] {
        let (mut guest_rate, mut host_rate) = (vec![Vec::new(); n], vec![Vec::new(); n]);
        for round in 0..cfg.repeat.min(3) {
            for (i, t) in cfg.turns(round) {
                let before = ns.tap_stat("rx_packets")?;
                let args = ["tx".to_string(), frames.to_string(), size.to_string()];
                let r = run_guest(&prefix, t, &opts, &guest, &args, Duration::from_secs(120))?;
                let counted = ns.tap_stat("rx_packets")?.wrapping_sub(before);
                if counted != frames {
                    return Err(BenchError::Failed(format!(
                        "{}: guest sent {frames} frames, the tap counted {counted}",
                        t.label
                    )));
                }
                let ns_loop = r.num("ns")?;
                guest_rate[i].push(counted as f64 / ns_loop * 1e9);
                host_rate[i].push(counted as f64 / r.wall.as_secs_f64());
            }
        }
        rep.samples(
            format!("net tx {size} B frames/s, guest loop (higher)"),
            &guest_rate,
            None,
        );
        rep.samples(
            format!("net tx {size} B frames/s, whole run (higher)"),
            &host_rate,
            None,
        );
    }
    let rounds = cfg.repeat.min(3);
    let (mut rate, mut rtt, mut lost) = (vec![Vec::new(); n], vec![Vec::new(); n], vec![0; n]);
    for round in 0..rounds {
        for (i, t) in cfg.turns(round) {
            let stats = echo_run(cfg, &ns, &prefix, t, &opts, &guest)?;
            rate[i].push(stats.round_trips as f64 / stats.secs);
            rtt[i].push(median(&stats.rtt_us));
            lost[i] += stats.lost;
        }
    }
    rep.samples("net echo round trips/s, 60 B (higher)", &rate, None);
    rep.samples("net echo RTT median us", &rtt, None);
    rep.notes.push(format!(
        "net: {frames} frames per tx run counted on {TAP}'s rx_packets, median of {rounds} \
         runs; echo: one 60 B frame in flight through an AF_PACKET socket for {} s per run, \
         {rounds} runs, lost (no echo within {ECHO_WAIT:?}): {lost:?}",
        cfg.net_secs
    ));
    Ok(())
}

/// One echo run: `bench_net echo` under `tender` in the namespace, with the client on
/// a thread of its own inside it.
fn echo_run(
    cfg: &Config,
    ns: &Netns,
    prefix: &[&str],
    tender: &Tender,
    opts: &[String],
    guest: &str,
) -> Result<EchoStats> {
    let done = AtomicBool::new(false);
    thread::scope(|s| {
        let client = s.spawn(|| echo_client(ns, cfg.net_secs, &done));
        let args = ["echo".to_string()];
        let timeout = Duration::from_secs(cfg.net_secs + 30);
        let r = run_guest(prefix, tender, opts, guest, &args, timeout);
        done.store(true, Ordering::Relaxed);
        let stats = client
            .join()
            .map_err(|_| BenchError::Failed("echo client panicked".into()))?;
        match (r, stats) {
            (Ok(_), stats) => stats,
            (Err(e), Ok(_)) => Err(e),
            (Err(tender), Err(client)) => Err(BenchError::Failed(format!(
                "{}; echo client: {}",
                chain(&tender),
                chain(&client)
            ))),
        }
    })
}

/// Whether an ELF file has no `PT_INTERP` (a static executable), from its headers.
fn elf_is_static(bytes: &[u8]) -> Option<bool> {
    const PT_INTERP: u32 = 3;
    let u16_at = |o: usize| Some(u16::from_le_bytes(bytes.get(o..o + 2)?.try_into().ok()?));
    let u32_at = |o: usize| Some(u32::from_le_bytes(bytes.get(o..o + 4)?.try_into().ok()?));
    let u64_at = |o: usize| Some(u64::from_le_bytes(bytes.get(o..o + 8)?.try_into().ok()?));
    // 64-bit little-endian ELF only.
    if bytes.get(..6)? != b"\x7fELF\x02\x01" {
        return None;
    }
    let phoff = usize::try_from(u64_at(0x20)?).ok()?;
    let phentsize = usize::from(u16_at(0x36)?);
    let phnum = usize::from(u16_at(0x38)?);
    for i in 0..phnum {
        let at = phoff.checked_add(i.checked_mul(phentsize)?)?;
        if u32_at(at)? == PT_INTERP {
            return Some(false);
        }
    }
    Some(true)
}

/// Binary size on disk and after `strip` (of a copy), and whether it is static.
fn bench_size(cfg: &Config, rep: &mut Report) -> Result<()> {
    let scratch = scratch()?;
    let (mut raw, mut stripped) = (Vec::new(), Vec::new());
    for t in &cfg.tenders {
        let bytes =
            std::fs::read(&t.path).map_err(io_err(format!("reading {}", t.path.display())))?;
        raw.push(Some(bytes.len() as f64));
        let copy = scratch.path(t.label);
        std::fs::write(&copy, &bytes).map_err(io_err("copying the tender"))?;
        let ok = Command::new("strip")
            .arg(&copy)
            .status()
            .is_ok_and(|s| s.success());
        let size = std::fs::metadata(&copy).map(|m| m.len() as f64).ok();
        stripped.push(if ok { size } else { None });
        let kind = match elf_is_static(&bytes) {
            Some(true) => "static",
            Some(false) => "dynamic (has PT_INTERP)",
            None => "not an x86-64 ELF",
        };
        rep.notes
            .push(format!("{}: {} is {kind}", t.label, t.path.display()));
    }
    rep.row("tender binary bytes", raw, None);
    rep.row(
        "tender binary bytes, stripped",
        stripped,
        Some(Target::OursBelow(TARGET_SIZE_BYTES)),
    );
    Ok(())
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Per-boot counts for `hello`: KVM exits to user space and PIO exits (`perf stat` on
/// the kvm tracepoints), syscalls and ioctls (`strace -c -f`). Skipped with a note
/// when a tool is missing or refuses.
fn bench_counts(cfg: &Config, rep: &mut Report) -> Result<()> {
    let hello = cfg.guest("hello")?;
    let scratch = scratch()?;
    if have("perf") {
        let events = ["kvm:kvm_userspace_exit", "kvm:kvm_pio"];
        let mut counts = vec![Vec::new(); events.len()];
        for t in &cfg.tenders {
            let out = scratch.path("perf.csv");
            let out_s = out.display().to_string();
            let mut pre = vec!["perf", "stat", "-x,", "-o", out_s.as_str()];
            for e in events {
                pre.extend(["-e", e]);
            }
            pre.push("--");
            let got = run_guest(&pre, t, &[], &hello, &[], Duration::from_secs(30))
                .and_then(|_| std::fs::read_to_string(&out).map_err(io_err("reading perf output")));
            for (k, e) in events.iter().enumerate() {
                let v = got.as_ref().ok().and_then(|text| perf_count(text, e));
                counts[k].push(v.map(|v| v as f64));
            }
        }
        rep.row(
            "hello KVM exits to user space (perf)",
            counts[0].clone(),
            None,
        );
        rep.row(
            "hello PIO exits = hypercalls (perf)",
            counts[1].clone(),
            None,
        );
    } else {
        rep.notes.push("perf not found: no KVM exit counts".into());
    }
    if have("strace") {
        let bench_hc = cfg.guest("bench_hc")?;
        let out = scratch.path("strace.txt");
        let strace = |t: &Tender, guest: &str, gargs: &[String]| -> Option<HashMap<String, u64>> {
            let out_s = out.display().to_string();
            let pre = ["strace", "-c", "-f", "-o", out_s.as_str()];
            let text = run_guest(&pre, t, &[], guest, gargs, Duration::from_secs(60))
                .and_then(|_| std::fs::read_to_string(&out).map_err(io_err("strace output")))
                .ok()?;
            Some(strace_calls(&text))
        };
        let (mut total, mut ioctl) = (Vec::new(), Vec::new());
        let (mut per_walltime, mut per_puts) = (Vec::new(), Vec::new());
        const CALLS: u64 = 1000;
        for t in &cfg.tenders {
            let table = strace(t, &hello, &[]);
            let get = |name: &str| table.as_ref().and_then(|m| m.get(name)).map(|&v| v as f64);
            total.push(get("total"));
            ioctl.push(get("ioctl"));
            for (op, row) in [("walltime", &mut per_walltime), ("puts", &mut per_puts)] {
                let with = strace(t, &bench_hc, &[op.into(), CALLS.to_string()]);
                let without = strace(t, &bench_hc, &[op.into(), "0".into()]);
                let total = |m: Option<HashMap<String, u64>>| m?.get("total").copied();
                row.push(
                    total(with)
                        .zip(total(without))
                        .map(|(a, b)| (a as f64 - b as f64) / CALLS as f64),
                );
            }
        }
        rep.row("hello syscalls (strace -c -f)", total, None);
        rep.row("hello ioctls incl. KVM_RUN (strace)", ioctl, None);
        rep.row(
            "syscalls per WALLTIME hypercall (strace)",
            per_walltime,
            None,
        );
        rep.row("syscalls per PUTS(0 B) hypercall (strace)", per_puts, None);
    } else {
        rep.notes.push("strace not found: no syscall counts".into());
    }
    Ok(())
}

/// The count of `event` in `perf stat -x,` output (`count,unit,event,...`).
fn perf_count(text: &str, event: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let mut f = l.split(',');
        let count = f.next()?;
        let _unit = f.next()?;
        (f.next()? == event).then(|| count.trim().parse().ok())?
    })
}

/// Calls per syscall from `strace -c` output (the `calls` column; `total` included).
fn strace_calls(text: &str) -> HashMap<String, u64> {
    let mut m = HashMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        // % time, seconds, usecs/call, calls, [errors,] syscall
        if let (Some(name), Some(Ok(calls))) = (f.last(), f.get(3).map(|c| c.parse::<u64>())) {
            if f.len() >= 5 && f[0].parse::<f64>().is_ok() {
                m.insert((*name).to_string(), calls);
            }
        }
    }
    m
}

fn bench(cfg: &Config) -> Result<Report> {
    let mut rep = Report::default();
    type Step = fn(&Config, &mut Report) -> Result<()>;
    let steps: [(&str, Step); 6] = [
        ("boot", bench_boot),
        ("hypercalls", bench_hypercalls),
        ("block", bench_block),
        ("net", bench_net),
        ("size", bench_size),
        ("counts", bench_counts),
    ];
    for (name, step) in steps {
        eprintln!("bench: {name} ...");
        let t0 = Instant::now();
        step(cfg, &mut rep).map_err(|e| BenchError::Failed(format!("{name}: {}", chain(&e))))?;
        eprintln!("bench: {name} done in {:.1} s", t0.elapsed().as_secs_f64());
    }
    Ok(rep)
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(cause) = src {
        let _ = write!(s, ": {cause}");
        src = cause.source();
    }
    s
}

fn main() {
    let result = Config::from_env().and_then(|cfg| {
        for t in &cfg.tenders {
            eprintln!("bench: {} = {}", t.label, t.path.display());
        }
        if cfg.tenders.len() == 1 {
            eprintln!("bench: HVT_BASELINE not set: our numbers only, no ratios");
        }
        let rep = bench(&cfg)?;
        print!("{}", rep.print(&cfg.tenders));
        Ok(())
    });
    if let Err(e) = result {
        eprintln!("bench: error: {}", chain(&e));
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(median(&v), 10.0);
        assert_eq!(percentile(&v, 90), 18.0);
        assert_eq!(percentile(&[5.0], 90), 5.0);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn tool_outputs_parse() {
        let perf = "# started on x\n\n4,,kvm:kvm_userspace_exit,4056150,100.00,,\n";
        assert_eq!(perf_count(perf, "kvm:kvm_userspace_exit"), Some(4));
        assert_eq!(perf_count(perf, "kvm:kvm_pio"), None);
        let strace = "% time     seconds  usecs/call     calls    errors syscall\n\
                      ------ ----------- ----------- --------- --------- ----------------\n \
                      71.18    0.001689         105        16           ioctl\n \
                      0.00    0.000000           0         2         1 open\n\
                      ------ ----------- ----------- --------- --------- ----------------\n\
                      100.00    0.002373          32        72         1 total\n";
        let m = strace_calls(strace);
        assert_eq!((m["ioctl"], m["open"], m["total"]), (16, 2, 72));
    }

    #[test]
    fn elf_static_check_reads_program_headers() {
        let mut elf = vec![0u8; 64 + 56];
        elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
        elf[0x20] = 64; // e_phoff
        elf[0x36] = 56; // e_phentsize
        elf[0x38] = 1; // e_phnum
        elf[64] = 1; // PT_LOAD
        assert_eq!(elf_is_static(&elf), Some(true));
        elf[64] = 3; // PT_INTERP
        assert_eq!(elf_is_static(&elf), Some(false));
        assert_eq!(elf_is_static(&elf[..66]), None);
        assert_eq!(elf_is_static(b"MZ"), None);
    }

    #[test]
    fn echo_frames_round_trip() {
        let mut f = echo_frame(0, 7);
        assert!(!is_echo(&f, 7), "our own frame is not an echo");
        f.copy_within(6..12, 0);
        f[6..12].copy_from_slice(&GUEST_MAC);
        assert!(is_echo(&f, 7));
        assert!(!is_echo(&f, 8));
    }
}
