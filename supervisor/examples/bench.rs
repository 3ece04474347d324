//! `make bench` for the supervisor: 50 small unikernels under one `petreld`, driven over
//! loopback TLS 1.3 from inside a scratch network namespace (the daemon suites' harness,
//! `tests/common`). Prints one table: creates per second, `petreld`'s RSS and CPU with
//! 50 running, `info` latency (p50/p99) under that load, console throughput (a follower
//! against the same guest writing straight into a pipe) and history download speed.
//!
//! Needs root, KVM, `ip`, the built `petreld` and `petrel-hvt` (`make tender`) and the
//! guests (`make guests`; `spew` is the small unikernel). `BENCH_UNIKERNELS=N` changes
//! the count. Absolute numbers from a machine with software KVM say little; the ratios
//! and the daemon's own figures (RSS, CPU, latency) are the point.
#![allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    missing_docs
)]

#[path = "../tests/common/mod.rs"]
mod common;
use common::*;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use petrel_proto::msg::{Command as Cmd, ConsoleHistory, ReplyBody, RestartPolicy, UnikernelState};

/// The targets of the issue.
const RSS_TARGET_MIB: f64 = 20.0;
const INFO_P99_TARGET_MS: f64 = 10.0;
/// Console load: lines and bytes per line.
const SPEW_LINES: u32 = 10_000;
const SPEW_LEN: u32 = 100;
const INFO_ONE_CALLS: usize = 2000;
const INFO_ALL_CALLS: usize = 300;

fn proc_status(pid: u32, key: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/PID/status");
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// User + system CPU of `pid`, in ms (USER_HZ = 100).
fn cpu_ms(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
    let f: Vec<&str> = stat
        .rsplit_once(')')
        .expect("comm")
        .1
        .split_whitespace()
        .collect();
    (f[11].parse::<u64>().expect("utime") + f[12].parse::<u64>().expect("stime")) * 10
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)].as_secs_f64() * 1e3
}

fn timed(n: usize, mut f: impl FnMut()) -> Vec<Duration> {
    let mut v: Vec<Duration> = (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    v.sort();
    v
}

/// The guest writing straight into a pipe: the tender's own ceiling on this machine.
fn direct_lines_per_s() -> f64 {
    let t = Instant::now();
    let mut child = Command::new(tender_bin())
        .args(["--mem=4", "--"])
        .arg(guest("spew"))
        .args([SPEW_LINES.to_string(), SPEW_LEN.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the tender");
    let out = child.stdout.take().expect("stdout");
    for line in BufReader::new(out).lines() {
        if line.expect("read").starts_with("spew: done") {
            break;
        }
    }
    let dt = t.elapsed().as_secs_f64();
    let _ = child.kill();
    let _ = child.wait();
    f64::from(SPEW_LINES) / dt
}

fn main() {
    let count: usize = std::env::var("BENCH_UNIKERNELS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let d = Daemon::start("bench");
    let pid = d.pid().expect("daemon pid");
    let mut local = d.local();
    let mut policy = roomy_policy();
    policy.max_unikernels = u32::try_from(count).expect("count") + 8;
    set_policy(&mut local, "ops", policy);
    let mut c = d.remote("ops");
    let rss_empty = proc_status(pid, "VmRSS:");

    // Creates over TLS, one after another (image upload included).
    let t = Instant::now();
    let mut create_times = Vec::new();
    for i in 0..count {
        let mut spec = Spec::new(&format!("ops:u{i:03}"), "spew").args(&["10"]);
        spec.memory_mib = 4;
        spec.restart = RestartPolicy::Always;
        let ti = Instant::now();
        create(&mut c, &spec);
        create_times.push(ti.elapsed());
    }
    let create_s = t.elapsed().as_secs_f64();
    create_times.sort();
    wait_for("every unikernel running", Duration::from_secs(120), || {
        let all = info_all(&mut c);
        (all.len() == count
            && all
                .iter()
                .all(|i| i.state == UnikernelState::Running && i.pid.is_some()))
        .then_some(())
    });
    let all_running_s = t.elapsed().as_secs_f64();

    // Idle with everything running.
    std::thread::sleep(Duration::from_secs(2));
    let cpu0 = cpu_ms(pid);
    let idle = Duration::from_secs(10);
    std::thread::sleep(idle);
    let idle_cpu_pct = (cpu_ms(pid) - cpu0) as f64 / idle.as_millis() as f64 * 100.0;
    let rss_running = proc_status(pid, "VmRSS:");

    // info under that load.
    let cpu0 = cpu_ms(pid);
    let one = timed(INFO_ONE_CALLS, || {
        info(&mut c, "ops:u007");
    });
    let cpu_per_info_us = (cpu_ms(pid) - cpu0) as f64 * 1e3 / INFO_ONE_CALLS as f64;
    let all = timed(INFO_ALL_CALLS, || {
        assert_eq!(info_all(&mut c).len(), count);
    });
    let stats = timed(100, || {
        assert!(matches!(
            c.call(Cmd::Stats { name: None }),
            Ok(ReplyBody::Stats(_))
        ));
    });

    // Console: a follower over TLS while the guest writes SPEW_LINES lines.
    let direct = direct_lines_per_s();
    let text = Arc::new(Mutex::new(String::new()));
    let mut w = UntilSeen {
        text: text.clone(),
        needle: "spew: done".to_owned(),
    };
    let mut spec =
        Spec::new("ops:spew", "spew").args(&[&SPEW_LINES.to_string(), &SPEW_LEN.to_string()]);
    spec.memory_mib = 4;
    // Subscribe before it exists is not possible: create, then follow from the start.
    let t = Instant::now();
    create(&mut c, &spec);
    let mut follower = d.remote("ops");
    let _ = follower.download(
        Cmd::Console {
            name: full("ops:spew"),
            history: ConsoleHistory::All,
            follow: true,
        },
        &mut w,
        &mut |_| {},
    );
    let follow_s = t.elapsed().as_secs_f64();
    let got = text.lock().expect("lock").clone();
    let got_lines = got.lines().filter(|l| l.contains("spew 0")).count();
    let followed = f64::from(SPEW_LINES) / follow_s;

    // History download (the whole ring) over TLS.
    let mut hist_bytes = 0u64;
    let t = Instant::now();
    let rounds = 20;
    for _ in 0..rounds {
        let mut out = Vec::new();
        hist_bytes += c
            .download(
                Cmd::Console {
                    name: full("ops:spew"),
                    history: ConsoleHistory::All,
                    follow: false,
                },
                &mut out,
                &mut |_| {},
            )
            .expect("console history");
    }
    let hist_mb_s = hist_bytes as f64 / 1e6 / t.elapsed().as_secs_f64();
    let rss_peak = proc_status(pid, "VmHWM:");
    let rss_end = proc_status(pid, "VmRSS:");

    let mib = |kib: u64| kib as f64 / 1024.0;
    let verdict = |ok: bool| if ok { "ok" } else { "OVER" };
    println!();
    println!(
        "petreld bench: {count} unikernels (spew, 4 MiB each), loopback TLS 1.3, {} CPUs",
        std::thread::available_parallelism().map_or(0, usize::from)
    );
    let row = |m: &str, v: String, t: &str| println!("{m:<44} {v:>22}  {t}");
    row("metric", "value".to_owned(), "target");
    row(
        "creates/s (sequential, TLS, image upload)",
        format!("{:.1}", count as f64 / create_s),
        "",
    );
    row(
        "create latency p50 / p99",
        format!(
            "{:.1} / {:.1} ms",
            percentile(&create_times, 0.5),
            percentile(&create_times, 0.99)
        ),
        "",
    );
    row(
        &format!("all {count} running after"),
        format!("{all_running_s:.2} s"),
        "",
    );
    row(
        "petreld RSS, empty",
        format!("{:.1} MiB", mib(rss_empty)),
        "",
    );
    let rss = mib(rss_running);
    row(
        &format!("petreld RSS, {count} running"),
        format!("{rss:.1} MiB"),
        &format!("< {RSS_TARGET_MIB} MiB {}", verdict(rss < RSS_TARGET_MIB)),
    );
    row(
        "petreld RSS, end / peak",
        format!("{:.1} / {:.1} MiB", mib(rss_end), mib(rss_peak)),
        "",
    );
    row(
        &format!("petreld CPU, {count} running, idle 10 s"),
        format!("{idle_cpu_pct:.2} %"),
        "",
    );
    let p99 = percentile(&one, 0.99);
    row(
        "info (one) p50 / p99",
        format!("{:.2} / {p99:.2} ms", percentile(&one, 0.5)),
        &format!(
            "p99 < {INFO_P99_TARGET_MS} ms {}",
            verdict(p99 < INFO_P99_TARGET_MS)
        ),
    );
    row(
        "petreld CPU per info (one)",
        format!("{cpu_per_info_us:.0} us"),
        "",
    );
    row(
        &format!("info (all {count}) p50 / p99"),
        format!(
            "{:.2} / {:.2} ms",
            percentile(&all, 0.5),
            percentile(&all, 0.99)
        ),
        "",
    );
    row(
        &format!("stats (all {count}) p50 / p99"),
        format!(
            "{:.2} / {:.2} ms",
            percentile(&stats, 0.5),
            percentile(&stats, 0.99)
        ),
        "",
    );
    row(
        &format!("console follow ({SPEW_LINES} x {SPEW_LEN} B)"),
        format!(
            "{followed:.0} lines/s, {:.2} MB/s",
            followed * f64::from(SPEW_LEN) / 1e6
        ),
        "",
    );
    row(
        "  the same guest into a pipe (ceiling)",
        format!("{direct:.0} lines/s"),
        &format!("ratio {:.2}", followed / direct),
    );
    row(
        "  lines the follower received",
        format!("{got_lines} of {SPEW_LINES}"),
        "(a slow follower may lose lines)",
    );
    row(
        "console history download (whole ring)",
        format!("{hist_mb_s:.1} MB/s"),
        &format!("{} KiB per download", hist_bytes / rounds / 1024),
    );
}
