//! Many unikernels at once: network unikernels created from several connections in
//! parallel, all running with their own tenders, taps and MACs; `info` and `stats` for
//! all of them; all destroyed in parallel, leaving no tender and no tap.

mod common;
use common::*;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use petrel_proto::msg::{Command as Cmd, ReplyBody, RestartPolicy, UnikernelState};

const COUNT: usize = 24;
const CLIENTS: usize = 4;

#[test]
fn many_unikernels_at_once() {
    let d = Daemon::start("scale");
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for k in 0..CLIENTS {
            let d = &d;
            s.spawn(move || {
                let mut c = d.local();
                for i in (k..COUNT).step_by(CLIENTS) {
                    create(
                        &mut c,
                        &Spec::net(&format!("ops:u{i:02}"), None).restart(RestartPolicy::Always),
                    );
                }
            });
        }
    });
    let created_in = t0.elapsed();
    let mut c = d.local();
    let all = wait_for("every unikernel running", Duration::from_secs(60), || {
        let all = info_all(&mut c);
        (all.len() == COUNT
            && all
                .iter()
                .all(|i| i.state == UnikernelState::Running && i.pid.is_some()))
        .then_some(all)
    });
    let pids: BTreeSet<u32> = all.iter().filter_map(|i| i.pid).collect();
    let macs: BTreeSet<[u8; 6]> = all.iter().map(|i| i.devices[0].mac).collect();
    assert_eq!(pids.len(), COUNT, "one tender each");
    assert_eq!(macs.len(), COUNT, "one MAC each");
    assert_eq!(
        d.ns.ports_of("service").len(),
        COUNT,
        "one tap each on the bridge"
    );
    for i in &all {
        assert_eq!(i.restart_count, 0, "none crashed: {i:#?}");
    }

    // Stats for all of them.
    match c.call(Cmd::Stats { name: None }) {
        Ok(ReplyBody::Stats(v)) => {
            assert_eq!(v.len(), COUNT, "{v:?}");
            for s in &v {
                assert!(s.rss_bytes > 0, "tender RSS from /proc: {s:?}");
                assert_eq!(s.nets.len(), 1, "{s:?}");
            }
        }
        other => panic!("stats: {other:?}"),
    }

    // A burst of info requests from several connections stays quick.
    let t = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..CLIENTS {
            s.spawn(|| {
                let mut c = d.local();
                for _ in 0..25 {
                    assert_eq!(info_all(&mut c).len(), COUNT);
                }
            });
        }
    });
    let per_info = t.elapsed() / (25 * u32::try_from(CLIENTS).expect("small"));
    assert!(
        per_info < Duration::from_millis(200),
        "info of {COUNT} took {per_info:?} on average under load"
    );

    std::thread::scope(|s| {
        for k in 0..CLIENTS {
            let d = &d;
            s.spawn(move || {
                let mut c = d.local();
                for i in (k..COUNT).step_by(CLIENTS) {
                    destroy(&mut c, &format!("ops:u{i:02}"));
                }
            });
        }
    });
    assert!(info_all(&mut c).is_empty());
    wait_for("every tender gone", Duration::from_secs(15), || {
        pids.iter().all(|&p| !process_alive(p)).then_some(())
    });
    wait_for("every tap gone", Duration::from_secs(15), || {
        d.ns.ports_of("service").is_empty().then_some(())
    });
    eprintln!("created {COUNT} in {created_in:?}");
}
