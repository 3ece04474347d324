//! The seccomp filter on the real tender: a running guest is under it, and core dumps
//! work under it. Every other integration test also runs its guests under the filter:
//! the tender has no way to turn it off.
//!
//! Tested in `src/seccomp.rs` instead, in forked children: that a forbidden call kills
//! with SIGSYS, and that `READ_IMPLIES_EXEC` is refused (on x86_64, `execve` clears that
//! flag for 64-bit programs, so `setarch -X petrel-hvt` cannot set it for a test).

mod common;
use common::*;

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The `Seccomp`, `Seccomp_filters` and `NoNewPrivs` lines of `/proc/PID/status`.
fn seccomp_status(pid: u32) -> Option<(String, String, String)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
    };
    Some((
        field("Seccomp:")?,
        field("Seccomp_filters:").unwrap_or_default(),
        field("NoNewPrivs:")?,
    ))
}

#[test]
fn a_running_guest_is_under_the_filter() {
    require_kvm();
    // `time` waits about 50 ms in POLL: long enough to look at the tender from here.
    let mut child = Command::new(tender())
        .args(["--mem=2", "--"])
        .arg(guest("time"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn petrel-hvt");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    while child.try_wait().expect("wait").is_none() && Instant::now() < deadline {
        if let Some(s) = seccomp_status(child.id()) {
            if seen.last() != Some(&s) {
                seen.push(s);
            }
        }
    }
    let _ = child.kill();
    let o = child.wait_with_output().expect("output");
    assert_exit(&o, 0, "");
    assert!(stdout(&o).contains("time: OK"), "{}", stdout(&o));
    let filtered = ("2".to_string(), "1".to_string(), "1".to_string());
    assert!(
        seen.contains(&filtered),
        "never saw Seccomp 2 (filter mode), 1 filter, NoNewPrivs 1 while the guest ran; \
         saw (Seccomp, Seccomp_filters, NoNewPrivs) = {seen:?}"
    );
    // Setup runs unfiltered, the guest filtered: the filter comes after setup.
    assert_eq!(seen.last(), Some(&filtered), "{seen:?}");
}

/// Runs guest `name` with `opts` in a tender that inherits an open fd 7: the number the
/// core file gets when nothing is inherited, so that it gets another one.
fn run_with_fd_7_taken(name: &str, opts: &[&str]) -> std::process::Output {
    require_kvm();
    let mut cmd = Command::new(tender());
    cmd.args(opts).arg("--").arg(guest(name));
    // SAFETY: dup2(2) is async-signal-safe and acts on the child's own fd table; the
    // new fd 7 is not close-on-exec, so the tender inherits it.
    unsafe {
        cmd.pre_exec(|| {
            if libc::dup2(2, 7) == 7 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    cmd.output().expect("spawn petrel-hvt")
}

#[test]
fn core_dumps_are_written_under_the_filter() {
    let s = Scratch::new("petrel-hvt-seccomp-core");
    let dir = s.dir().to_str().expect("utf-8").to_string();
    let dump = format!("--dumpcore={dir}");
    // Default memory (512 MiB): the page map is large enough for malloc to mmap it.
    // Fd 7 taken: the core file's fd is not the usual one.
    for (what, o, mem_len) in [
        (
            "default memory",
            run_guest("abort", &[dump.as_str()], &[]),
            512u64 << 20,
        ),
        (
            "fd 7 taken",
            run_with_fd_7_taken("abort", &["--mem=2", dump.as_str()]),
            2 << 20,
        ),
    ] {
        assert_exit(&o, 255, "dumpcore: dumped ");
        let err = stderr(&o);
        let path = err
            .lines()
            .find_map(|l| l.split("dumping guest core to: ").nth(1))
            .unwrap_or_else(|| panic!("{what}: no core path in\n{err}"));
        let md = std::fs::metadata(path).unwrap_or_else(|e| panic!("{what}: {path}: {e}"));
        assert!(md.len() > mem_len, "{what}: core is {} bytes", md.len());
        let head = std::fs::read(path).expect("core");
        assert_eq!(&head[..4], b"\x7fELF", "{what}");
        std::fs::remove_file(path).expect("remove core");
    }
}

#[test]
fn dumpcore_rules_do_not_disturb_a_guest_that_does_not_abort() {
    let s = Scratch::new("petrel-hvt-seccomp-nocore");
    let dump = format!("--dumpcore={}", s.dir().display());
    let o = run_guest("time", &["--mem=2", &dump], &[]);
    assert_exit(&o, 0, "");
    assert!(stdout(&o).contains("time: OK"), "{}", stdout(&o));
    assert_eq!(
        std::fs::read_dir(s.dir()).expect("dir").count(),
        0,
        "no core"
    );
}
