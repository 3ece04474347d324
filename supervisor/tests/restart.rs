//! Restart policies against real crash-looping unikernels (the `exit` and `abort`
//! examples): exponential backoff (1 s, 2 s, 4 s, … capped), exit-code lists, never;
//! a crash loop neither blocks destroy or shutdown nor eats the CPU.

mod common;
use common::*;

use std::time::{Duration, Instant};

use petrel_proto::msg::{Command as Cmd, ExitStatus, ReplyBody, RestartPolicy, UnikernelState};

/// CPU time (user + system) of `pid` in clock ticks (100 Hz on Linux).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
    let rest = stat.rsplit_once(')').expect("stat has a comm").1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields after the comm: state is index 0; utime and stime are fields 14 and 15 of
    // the whole line, i.e. 11 and 12 here.
    f[11].parse::<u64>().expect("utime") + f[12].parse::<u64>().expect("stime")
}

#[test]
fn crash_loop_backs_off_and_destroy_is_prompt() {
    let mut d = Daemon::start("loop");
    let pid = d.pid().expect("daemon pid");
    let mut c = d.local();
    let t0 = Instant::now();
    let cpu0 = cpu_ticks(pid);
    create(
        &mut c,
        &Spec::new("ops:crash", "exit")
            .args(&["3"])
            .restart(RestartPolicy::Always),
    );
    // Starts at ~0 s, then after 1 s, 2 s and 4 s of backoff: ~1 s, ~3 s, ~7 s.
    let mut backoffs = Vec::new();
    while t0.elapsed() < Duration::from_millis(5500) {
        let i = info(&mut c, "ops:crash");
        if let UnikernelState::Backoff { restart_in_ms } = i.state {
            backoffs.push((t0.elapsed(), i.restart_count, restart_in_ms));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let i = info(&mut c, "ops:crash");
    assert_eq!(
        i.restart_count, 2,
        "5.5 s into a crash loop with 1 s, 2 s, 4 s backoff: two restarts; {i:#?}\nbackoffs seen: {backoffs:?}"
    );
    assert_eq!(
        i.last_exit.as_ref().map(|e| e.status),
        Some(ExitStatus::Code(3)),
        "{i:#?}"
    );
    assert!(
        matches!(i.state, UnikernelState::Backoff { restart_in_ms } if restart_in_ms <= 4000),
        "waiting out the third backoff (≤ 4 s): {:?}",
        i.state
    );
    assert!(!backoffs.is_empty(), "info shows the Backoff state");
    let longest = backoffs.iter().map(|b| b.2).max().unwrap_or(0);
    assert!(
        (1500..=4000).contains(&longest),
        "the backoff grows to 2-4 s by now: {backoffs:?}"
    );

    let used_ms = (cpu_ticks(pid) - cpu0) * 10;
    assert!(
        used_ms < 1500,
        "petreld used {used_ms} ms of CPU in a 5.5 s crash loop"
    );

    // Destroy in the middle of the backoff: prompt, and nothing restarts it.
    let t = Instant::now();
    destroy(&mut c, "ops:crash");
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "destroy took {:?}",
        t.elapsed()
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_denied(try_info(&mut c, "ops:crash"), ErrorKind::NotFound, "crash");

    // A crash loop does not hold up shutdown either.
    create(
        &mut c,
        &Spec::new("ops:crash2", "abort").restart(RestartPolicy::Always),
    );
    std::thread::sleep(Duration::from_millis(1500));
    drop(c);
    let t = Instant::now();
    let status = d.terminate(Duration::from_secs(15));
    assert!(status.success(), "SIGTERM during a crash loop: {status}");
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "shutdown took {:?}",
        t.elapsed()
    );
}

#[test]
fn on_exit_codes_and_never() {
    let d = Daemon::start("onexit");
    let mut c = d.local();
    let on3 = RestartPolicy::OnExit(vec![3, 7]);
    create(
        &mut c,
        &Spec::new("ops:three", "exit")
            .args(&["3"])
            .restart(on3.clone()),
    );
    create(
        &mut c,
        &Spec::new("ops:four", "exit").args(&["4"]).restart(on3),
    );
    create(
        &mut c,
        &Spec::new("ops:abort", "abort").restart(RestartPolicy::Never),
    );
    create(
        &mut c,
        &Spec::new("ops:zero", "exit")
            .args(&["0"])
            .restart(RestartPolicy::OnExit(vec![1])),
    );

    let three = wait_info(
        &mut c,
        "ops:three",
        "restarted",
        Duration::from_secs(6),
        |i| i.restart_count >= 1,
    );
    assert_eq!(three.restart, RestartPolicy::OnExit(vec![3, 7]));

    let four = wait_stopped(&mut c, "ops:four");
    assert_eq!(four.last_exit.map(|e| e.status), Some(ExitStatus::Code(4)));
    let zero = wait_stopped(&mut c, "ops:zero");
    assert_eq!(zero.last_exit.map(|e| e.status), Some(ExitStatus::Code(0)));
    let abort = wait_stopped(&mut c, "ops:abort");
    let exit = abort.last_exit.expect("last exit");
    assert_eq!(
        exit.status,
        ExitStatus::Code(255),
        "solo5_abort exits 255: {exit:?}"
    );
    wait_console(&mut c, "ops:abort", "solo5_abort", Duration::from_secs(5));

    // None of the stopped ones comes back by itself.
    std::thread::sleep(Duration::from_millis(2500));
    for name in ["ops:four", "ops:zero", "ops:abort"] {
        let i = info(&mut c, name);
        assert_eq!(i.state, UnikernelState::Stopped, "{name}: {i:#?}");
        assert_eq!(i.restart_count, 0, "{name}: {i:#?}");
    }

    // An operator restart runs a stopped unikernel again, here with new arguments.
    let r = c
        .call(Cmd::Restart {
            name: full("ops:four"),
            args: Some(vec!["7".to_owned()]),
        })
        .expect("restart a stopped unikernel");
    assert!(matches!(r, ReplyBody::Unikernel(_)), "{r:?}");
    // Exit 7 is on the list: now it crash-loops.
    let i = wait_info(
        &mut c,
        "ops:four",
        "restarted by policy",
        Duration::from_secs(6),
        |i| {
            i.args == ["7"]
                && i.last_exit
                    .as_ref()
                    .is_some_and(|e| e.status == ExitStatus::Code(7))
        },
    );
    assert_eq!(i.args, ["7"]);
}

#[test]
fn tender_errors_reach_the_operator() {
    let d = Daemon::start("reason");
    let mut c = d.local();
    // hlt: the tender stops the guest and says why on stderr.
    create(&mut c, &Spec::new("ops:hlt", "hlt"));
    let i = wait_stopped(&mut c, "ops:hlt");
    let exit = i.last_exit.expect("last exit");
    assert_ne!(exit.status, ExitStatus::Code(0), "{exit:?}");
    assert!(
        !exit.reason.trim().is_empty(),
        "the reason carries the tender's last error line: {exit:?}"
    );
    let text = console(&mut c, "ops:hlt");
    assert!(
        text.contains(exit.reason.trim()),
        "the console keeps the tender's own lines too; reason {:?}, console:\n{text}",
        exit.reason
    );
}
