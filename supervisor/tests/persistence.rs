//! Persistence across `petreld` restarts: after kill -9 nothing acknowledged is lost and
//! a destroyed unikernel never comes back; tenders die with the daemon and are started
//! again, in priority order, from the saved state; SIGTERM stops everything, saves and
//! exits 0.

mod common;
use common::*;

use std::time::Duration;

use petrel_proto::msg::{RestartPolicy, UnikernelState};

#[test]
fn kill9_loses_nothing_acknowledged() {
    let mut d = Daemon::start("kill9");
    let mut c = d.local();
    set_policy(&mut c, "ops", roomy_policy());
    let web = create(
        &mut c,
        &Spec::net("ops:web", None).restart(RestartPolicy::Always),
    );
    let mut low = Spec::net("ops:low", None).restart(RestartPolicy::Always);
    low.priority = -5;
    create(&mut c, &low);
    let mut high = Spec::net("ops:high", None).restart(RestartPolicy::Always);
    high.priority = 10;
    create(&mut c, &high);
    create(&mut c, &Spec::new("ops:hello", "hello"));
    try_block_create(&mut c, "ops:disk", 64 * 1024, 512).expect("block");
    let data: Vec<u8> = (0..64 * 1024_u32)
        .map(|i| (i % 253).to_le_bytes()[0])
        .collect();
    try_block_upload(&mut c, "ops:disk", &data).expect("upload");
    let before = wait_running(&mut c, "ops:web");
    wait_running(&mut c, "ops:low");
    wait_running(&mut c, "ops:high");
    let old_pid = before.pid.expect("pid");
    drop(c);

    d.kill9();
    wait_for(
        "the tender to die with petreld",
        Duration::from_secs(10),
        || (!process_alive(old_pid)).then_some(()),
    );
    wait_for(
        "the taps to go with their tenders",
        Duration::from_secs(10),
        || d.ns.ports_of("service").is_empty().then_some(()),
    );

    d.restart();
    let mut c = d.local();
    let after = wait_running(&mut c, "ops:web");
    assert_ne!(after.pid, before.pid, "a new tender");
    assert_eq!(after.devices, before.devices, "same devices and MACs");
    assert_eq!(after.image_sha256, web.image_sha256);
    assert_eq!(after.restart, RestartPolicy::Always);
    let hi = wait_running(&mut c, "ops:high");
    let lo = wait_running(&mut c, "ops:low");
    assert!(
        hi.pid.expect("pid") < lo.pid.expect("pid"),
        "priority 10 starts before priority -5 (pids {:?} < {:?})",
        hi.pid,
        lo.pid
    );
    info(&mut c, "ops:hello");
    let b = block_list(&mut c, None);
    assert_eq!(b.len(), 1, "{b:?}");
    assert!(try_block_download(&mut c, "ops:disk").expect("download") == data);
    let p: Vec<_> = match c.call(petrel_proto::msg::Command::Policy(
        petrel_proto::msg::PolicyCommand::List { identity: None },
    )) {
        Ok(petrel_proto::msg::ReplyBody::Policies(v)) => v,
        other => panic!("policy list: {other:?}"),
    };
    assert!(
        p.iter()
            .any(|e| e.identity.as_str() == "ops" && e.policy == roomy_policy()),
        "the policy survived: {p:?}"
    );
    assert_eq!(
        d.ns.ports_of("service").len(),
        3,
        "one tap per running net unikernel"
    );
}

#[test]
fn acknowledged_changes_survive_an_immediate_kill() {
    let mut d = Daemon::start("ack");
    for round in 0..4 {
        let mut c = d.local();
        create(&mut c, &Spec::new(&format!("ops:keep{round}"), "hello"));
        create(&mut c, &Spec::new(&format!("ops:gone{round}"), "hello"));
        destroy(&mut c, &format!("ops:gone{round}"));
        let r = c
            .call(petrel_proto::msg::Command::Restart {
                name: full("ops:keep0"),
                args: Some(vec![format!("round{round}")]),
            })
            .expect("restart with new arguments");
        assert!(
            matches!(r, petrel_proto::msg::ReplyBody::Unikernel(_)),
            "{r:?}"
        );
        // The reply is in: kill at once.
        d.kill9();
        d.restart();
        let mut c = d.local();
        let names: Vec<String> = info_all(&mut c)
            .iter()
            .map(|i| i.name.to_string())
            .collect();
        for k in 0..=round {
            assert!(
                names.contains(&format!("ops:keep{k}")),
                "round {round}: ops:keep{k} was acknowledged and is lost: {names:?}"
            );
            assert!(
                !names.contains(&format!("ops:gone{k}")),
                "round {round}: ops:gone{k} was destroyed and came back: {names:?}"
            );
        }
        assert_eq!(names.len(), round + 1, "{names:?}");
        assert_eq!(
            info(&mut c, "ops:keep0").args,
            [format!("round{round}")],
            "round {round}: the acknowledged new arguments"
        );
    }
}

#[test]
fn sigterm_stops_everything_saves_and_exits_0() {
    let mut d = Daemon::start("term");
    let mut c = d.local();
    create(
        &mut c,
        &Spec::net("ops:a", None).restart(RestartPolicy::Always),
    );
    create(
        &mut c,
        &Spec::net("ops:b", None).restart(RestartPolicy::Always),
    );
    let a = wait_running(&mut c, "ops:a").pid.expect("pid");
    let b = wait_running(&mut c, "ops:b").pid.expect("pid");
    drop(c);
    let status = d.terminate(Duration::from_secs(25));
    assert!(
        status.success(),
        "petreld exits 0 on SIGTERM: {status}\n{}",
        d.log()
    );
    assert!(
        !process_alive(a) && !process_alive(b),
        "every tender stopped"
    );
    assert!(
        d.ns.ports_of("service").is_empty(),
        "no tap left: {:?}",
        d.ns.ports_of("service")
    );
    d.restart();
    let mut c = d.local();
    let a2 = wait_running(&mut c, "ops:a");
    wait_running(&mut c, "ops:b");
    assert_eq!(a2.state, UnikernelState::Running);
}

#[test]
fn a_corrupt_primary_state_file_falls_back() {
    let mut d = Daemon::start("corrupt");
    let mut c = d.local();
    create(&mut c, &Spec::new("ops:one", "hello"));
    create(&mut c, &Spec::new("ops:two", "hello"));
    drop(c);
    d.kill9();
    // A torn primary copy (as if the disk lost the tail): the backup holds the same
    // generation.
    let primary = find_file(&d.data_dir(), "state.json")
        .unwrap_or_else(|| panic!("no state.json under {}", d.data_dir().display()));
    let bytes = std::fs::read(&primary).expect("read state.json");
    std::fs::write(&primary, &bytes[..bytes.len() / 2]).expect("tear state.json");
    d.restart();
    let mut c = d.local();
    let names: Vec<String> = info_all(&mut c)
        .iter()
        .map(|i| i.name.to_string())
        .collect();
    assert!(
        names.contains(&"ops:one".to_owned()) && names.contains(&"ops:two".to_owned()),
        "the backup copy restores the state: {names:?}"
    );
    assert!(
        d.log().contains("state.json"),
        "the daemon logs the torn copy it ignored"
    );
}

fn find_file(dir: &std::path::Path, name: &str) -> Option<std::path::PathBuf> {
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let p = e.path();
        if p.is_dir() {
            if let Some(f) = find_file(&p, name) {
                return Some(f);
            }
        } else if e.file_name() == name {
            return Some(p);
        }
    }
    None
}
