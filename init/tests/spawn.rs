//! The real spawn path on the host: a service started by PID 1 (which blocks its
//! signals for the signalfd) must start with an empty signal mask, or SIGTERM at
//! shutdown would not stop it.
#![allow(missing_docs, clippy::unwrap_used)]

use petrel_init::supervisor::{Restart, ServiceSpec};
use rustix::process::{Pid, Signal, WaitOptions};

#[test]
fn services_start_with_an_empty_signal_mask() {
    // Blocks in this test's thread, as PID 1 does in its only thread.
    let _sigfd = petrel_init::sys::signalfd(&petrel_init::pid1::SIGNALS).unwrap();
    let spec = ServiceSpec {
        name: "sleep".into(),
        command: vec!["/bin/sleep".into(), "30".into()],
        restart: Restart::Never,
    };
    let pid = petrel_init::pid1::spawn(&spec).unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let blocked = status.lines().find(|l| l.starts_with("SigBlk:")).unwrap();
    let pgid = rustix::process::getpgid(Pid::from_raw(pid)).unwrap();
    rustix::process::kill_process(Pid::from_raw(pid).unwrap(), Signal::TERM).unwrap();
    let (_, st) = rustix::process::waitpid(Pid::from_raw(pid), WaitOptions::empty())
        .unwrap()
        .unwrap();
    assert_eq!(
        blocked.split_whitespace().nth(1),
        Some("0000000000000000"),
        "{blocked}"
    );
    assert_eq!(st.terminating_signal(), Some(libc::SIGTERM));
    assert_eq!(pgid.as_raw_nonzero().get(), pid, "own process group");
}

#[test]
fn spawn_failures_are_errors() {
    let spec = ServiceSpec {
        name: "x".into(),
        command: vec!["/nonexistent/x".into()],
        restart: Restart::Never,
    };
    let e = petrel_init::pid1::spawn(&spec).unwrap_err();
    assert!(e.starts_with("/nonexistent/x: "), "{e}");
    let spec = ServiceSpec {
        name: "x".into(),
        command: vec![],
        restart: Restart::Never,
    };
    assert!(petrel_init::pid1::spawn(&spec).is_err());
}
