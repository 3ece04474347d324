//! Unikernel lifecycle through a real `petreld`: create (image upload), info, console,
//! restart, destroy; a network unikernel on the namespace's `service` bridge reached by
//! ping and HTTP; the manifest check and the plain refusals.
//!
//! Each test runs its own daemon in its own namespace (see `common`). Needs root, KVM,
//! `ip`, `ping`, `curl`, the tender (`make tender`) and the guests (`make guests`).

mod common;
use common::*;

use std::process::Command;
use std::time::Duration;

use petrel_proto::msg::{
    Command as Cmd, ConsoleHistory, ExitStatus, ReplyBody, RestartPolicy, Sha256Digest,
    UnikernelState,
};

fn mac_text(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[test]
fn create_info_console_destroy() {
    let d = Daemon::start("life");
    let mut c = d.local();
    let spec = Spec::new("ops:hello", "hello").args(&["one", "two"]);
    let created = create(&mut c, &spec);
    assert_eq!(created.name.to_string(), "ops:hello");
    assert_eq!(created.memory_mib, 8);
    assert_eq!(created.args, ["one", "two"]);
    assert_eq!(created.restart, RestartPolicy::Never);
    assert_eq!(
        created.image_sha256,
        Sha256Digest::of(&read(&spec.image)),
        "info reports the uploaded image's digest"
    );

    let stopped = wait_stopped(&mut c, "ops:hello");
    let exit = stopped
        .last_exit
        .expect("a stopped unikernel has a last exit");
    assert_eq!(exit.status, ExitStatus::Code(0), "hello exits 0: {exit:?}");
    assert!(exit.at_unix_ms > 0 && exit.at_unix_ms <= now_unix_ms());
    assert_eq!(stopped.pid, None, "no pid once stopped");
    assert_eq!(stopped.restart_count, 0);

    let text = wait_console(&mut c, "ops:hello", "args: one two", Duration::from_secs(5));
    assert!(text.contains("Hello, world"), "console:\n{text}");

    // The same image again under another name: the content store keeps one copy.
    create(&mut c, &Spec::new("ops:hello2", "hello"));
    let store = d.data_dir().join("images/sha256");
    let hex = created.image_sha256.to_string();
    assert!(
        store.join(&hex).is_file(),
        "the image is stored as images/sha256/<hex> in the data dir"
    );

    let all = info_all(&mut c);
    let names: Vec<String> = all.iter().map(|i| i.name.to_string()).collect();
    assert!(names.contains(&"ops:hello".to_owned()) && names.contains(&"ops:hello2".to_owned()));

    destroy(&mut c, "ops:hello");
    assert_denied(try_info(&mut c, "ops:hello"), ErrorKind::NotFound, "hello");
    assert_denied(
        try_destroy(&mut c, "ops:hello"),
        ErrorKind::NotFound,
        "hello",
    );
    destroy(&mut c, "ops:hello2");
    assert!(info_all(&mut c).is_empty());
}

#[test]
fn net_unikernel_on_the_bridge() {
    let d = Daemon::start("net");
    d.ns.ip(&["addr", "add", "10.0.0.1/24", "dev", "service"]);
    let mut c = d.local();
    let spec = Spec::net("ops:web", Some("10.0.0.2")).restart(RestartPolicy::Always);
    create(&mut c, &spec);
    let up = wait_running(&mut c, "ops:web");
    assert_eq!(up.devices.len(), 1, "{up:#?}");
    let dev = &up.devices[0];
    assert_eq!(
        (dev.name.as_str(), dev.bridge.as_str()),
        ("service0", "service")
    );
    assert_eq!(dev.mac[0] & 1, 0, "unicast MAC");
    assert_eq!(dev.mac[0] & 2, 2, "locally administered MAC");
    let mac = mac_text(dev.mac);
    let pid = up.pid.expect("pid");

    let text = wait_console(
        &mut c,
        "ops:web",
        "listening on TCP port 80",
        Duration::from_secs(20),
    );
    assert!(
        text.to_lowercase().contains(&mac),
        "the guest sees the MAC info reports ({mac}):\n{text}"
    );
    let ports = d.ns.ports_of("service");
    assert_eq!(ports.len(), 1, "one tap on the bridge: {ports:?}");

    let ping = Command::new("ip")
        .args([
            "netns", "exec", &d.ns.name, "ping", "-c", "1", "-W", "5", "10.0.0.2",
        ])
        .output()
        .expect("run ping (iputils-ping)");
    assert!(
        ping.status.success(),
        "ping the unikernel: {}",
        String::from_utf8_lossy(&ping.stdout)
    );
    let curl = Command::new("ip")
        .args([
            "netns",
            "exec",
            &d.ns.name,
            "curl",
            "-sS",
            "--max-time",
            "10",
            "http://10.0.0.2/",
        ])
        .output()
        .expect("run curl");
    assert!(
        String::from_utf8_lossy(&curl.stdout).contains("Hello from a Petrel unikernel"),
        "HTTP from the unikernel: {}",
        String::from_utf8_lossy(&curl.stderr)
    );
    wait_console(&mut c, "ops:web", "\"GET /\" 200", Duration::from_secs(5));

    // Stats: the tender's CPU and memory from /proc, the tap's counters as the guest
    // sees them (it received the ping and the request, and answered).
    match c.call(Cmd::Stats {
        name: Some(full("ops:web")),
    }) {
        Ok(ReplyBody::Stats(v)) => {
            assert_eq!(v.len(), 1, "{v:?}");
            let s = &v[0];
            assert!(s.rss_bytes > 0, "tender RSS: {s:?}");
            assert!(s.uptime_ms > 0, "{s:?}");
            assert_eq!(s.nets.len(), 1, "{s:?}");
            let n = &s.nets[0];
            assert_eq!(n.name, "service0");
            assert!(n.rx_packets >= 2 && n.tx_packets >= 2, "{n:?}");
            assert!(
                n.rx_bytes > n.rx_packets && n.tx_bytes > n.tx_packets,
                "{n:?}"
            );
        }
        other => panic!("stats: {other:?}"),
    }

    // Restart with new arguments: a new tender, the same MAC.
    let r = c
        .call(Cmd::Restart {
            name: full("ops:web"),
            args: Some(vec!["--ipv4=10.0.0.3/24".to_owned()]),
        })
        .expect("restart");
    assert!(
        matches!(r, ReplyBody::Unikernel(_)),
        "restart replies Unikernel: {r:?}"
    );
    let again = wait_info(
        &mut c,
        "ops:web",
        "running a new tender",
        Duration::from_secs(15),
        |i| i.state == UnikernelState::Running && i.pid.is_some_and(|p| p != pid),
    );
    assert_eq!(again.args, ["--ipv4=10.0.0.3/24"]);
    assert_eq!(
        again.devices[0].mac, dev.mac,
        "MACs are stable per (unikernel, device)"
    );
    assert!(!process_alive(pid), "the old tender {pid} is gone");
    wait_console(
        &mut c,
        "ops:web",
        "10.0.0.3/24, listening",
        Duration::from_secs(20),
    );

    // Destroy: the tender and its tap go.
    let pid2 = again.pid.expect("pid");
    destroy(&mut c, "ops:web");
    wait_for("the tender to exit", Duration::from_secs(10), || {
        (!process_alive(pid2)).then_some(())
    });
    wait_for("the tap to vanish", Duration::from_secs(10), || {
        d.ns.ports_of("service").is_empty().then_some(())
    });

    // The same name again: the same derived MAC.
    create(&mut c, &Spec::net("ops:web", Some("10.0.0.2")));
    let third = wait_running(&mut c, "ops:web");
    assert_eq!(
        third.devices[0].mac, dev.mac,
        "MAC derived from (name, device)"
    );
    let other = create(&mut c, &Spec::net("ops:web2", Some("10.0.0.4")));
    assert_ne!(
        other.devices[0].mac, dev.mac,
        "another unikernel, another MAC"
    );
}

#[test]
fn manifest_must_match_the_devices() {
    let d = Daemon::start("mft");
    d.ns.add_bridge("other");
    let mut c = d.local();

    // Extra device: hello has none.
    let mut s = Spec::new("ops:extra", "hello");
    s.net = vec![("service0".to_owned(), "service".to_owned())];
    assert_denied(
        try_create(&mut c, &s),
        ErrorKind::ManifestMismatch,
        "service0",
    );

    // Missing device: net needs service0.
    let s = Spec::new("ops:missing", "net");
    assert_denied(
        try_create(&mut c, &s),
        ErrorKind::ManifestMismatch,
        "service0",
    );

    // Wrong name.
    let mut s = Spec::new("ops:wrong", "net");
    s.net = vec![("eth0".to_owned(), "service".to_owned())];
    let (k, msg) = kind_of(try_create(&mut c, &s));
    assert_eq!(k, ErrorKind::ManifestMismatch, "{msg}");
    assert!(
        msg.contains("eth0") && msg.contains("service0"),
        "names both: {msg}"
    );

    // A block device where the manifest wants a net device, and a missing block.
    let s = Spec::new("ops:blk", "blk");
    assert_denied(
        try_create(&mut c, &s),
        ErrorKind::ManifestMismatch,
        "storage",
    );

    // None of them exists afterwards.
    assert!(
        info_all(&mut c).is_empty(),
        "refused creates leave nothing behind"
    );
}

#[test]
fn refusals_of_bad_creates() {
    let d = Daemon::start("bad");
    let mut c = d.local();
    create(&mut c, &Spec::new("ops:one", "hello"));
    assert_denied(
        try_create(&mut c, &Spec::new("ops:one", "hello")),
        ErrorKind::AlreadyExists,
        "one",
    );

    // The upload does not match the announced digest. The client library checks this
    // itself, so the stream goes by hand.
    let spec = Spec::new("ops:liar", "hello");
    let bytes = read(&spec.image);
    let lie = Sha256Digest::of(b"something else");
    let mut raw = Raw::unix(&d);
    let r = raw.request(1, spec.command(bytes.len() as u64, lie));
    assert_eq!(r, ReplyBody::Proceed);
    match raw.stream(1, &bytes, lie) {
        ReplyBody::Error(e) => assert_eq!(e.kind, ErrorKind::DigestMismatch, "{e}"),
        other => panic!("a stream that does not match its digest: {other:?}"),
    }
    assert_denied(try_info(&mut c, "ops:liar"), ErrorKind::NotFound, "liar");
    // Fewer bytes than announced.
    let r = raw.request(
        2,
        spec.command(bytes.len() as u64, Sha256Digest::of(&bytes)),
    );
    assert_eq!(r, ReplyBody::Proceed);
    match raw.stream(2, &bytes[..1000], Sha256Digest::of(&bytes)) {
        ReplyBody::Error(e) => assert_eq!(e.kind, ErrorKind::DigestMismatch, "{e}"),
        other => panic!("a short stream: {other:?}"),
    }

    // Not an hvt executable.
    let mut junk = Spec::new("ops:junk", "hello");
    let dir = d.root.join("junk.hvt");
    std::fs::write(&dir, vec![0x5a_u8; 4096]).expect("write junk");
    junk.image = dir;
    let (k, msg) = kind_of(try_create(&mut c, &junk));
    assert!(
        matches!(k, ErrorKind::BadRequest | ErrorKind::ManifestMismatch),
        "a non-ELF image: {k:?} {msg}"
    );

    // No memory.
    let mut zero = Spec::new("ops:zero", "hello");
    zero.memory_mib = 0;
    let (k, msg) = kind_of(try_create(&mut c, &zero));
    assert_eq!(k, ErrorKind::BadRequest, "0 MiB: {msg}");

    // A bridge that does not exist.
    let mut nobr = Spec::net("ops:nobr", None);
    nobr.net = vec![("service0".to_owned(), "nosuchbr".to_owned())];
    match try_create(&mut c, &nobr) {
        Err(e) => assert!(e.to_string().contains("nosuchbr"), "names the bridge: {e}"),
        Ok(_) => {
            let i = wait_info(
                &mut c,
                "ops:nobr",
                "failed to start",
                Duration::from_secs(10),
                |i| i.last_exit.is_some(),
            );
            let reason = i.last_exit.map(|e| e.reason).unwrap_or_default();
            assert!(
                reason.contains("nosuchbr"),
                "the reason names the bridge: {reason:?}"
            );
        }
    }

    // Unknowns.
    assert_denied(try_info(&mut c, "ops:nope"), ErrorKind::NotFound, "nope");
    assert_denied(
        c.call(Cmd::Restart {
            name: full("ops:nope"),
            args: None,
        }),
        ErrorKind::NotFound,
        "nope",
    );
    assert_denied(try_console(&mut c, "ops:nope"), ErrorKind::NotFound, "nope");

    // The daemon still serves after all that.
    assert_eq!(info(&mut c, "ops:one").name.to_string(), "ops:one");
}

#[test]
fn console_follow_streams_live_output() {
    let d = Daemon::start("follow");
    d.ns.ip(&["addr", "add", "10.0.0.1/24", "dev", "service"]);
    let mut c = d.local();
    create(&mut c, &Spec::net("ops:web", Some("10.0.0.2")));
    wait_console(
        &mut c,
        "ops:web",
        "listening on TCP port 80",
        Duration::from_secs(20),
    );

    let text = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let mut w = UntilSeen {
        text: text.clone(),
        needle: "GET /follow".to_owned(),
    };
    let mut follower = d.local();
    let t = std::thread::spawn(move || {
        let _ = follower.download(
            Cmd::Console {
                name: full("ops:web"),
                history: ConsoleHistory::None,
                follow: true,
            },
            &mut w,
            &mut |_| {},
        );
    });
    std::thread::sleep(Duration::from_millis(500));
    let _ = Command::new("ip")
        .args([
            "netns",
            "exec",
            &d.ns.name,
            "curl",
            "-s",
            "--max-time",
            "10",
            "http://10.0.0.2/follow",
        ])
        .output()
        .expect("run curl");
    wait_for("the followed line", Duration::from_secs(10), || {
        t.is_finished().then_some(())
    });
    let seen = text.lock().expect("lock").clone();
    assert!(seen.contains("GET /follow"), "followed:\n{seen}");
    assert!(
        !seen.contains("listening on TCP port"),
        "ConsoleHistory::None sends no history:\n{seen}"
    );
    // Lines(1) history: exactly the last line.
    let mut out = Vec::new();
    c.download(
        Cmd::Console {
            name: full("ops:web"),
            history: ConsoleHistory::Lines(1),
            follow: false,
        },
        &mut out,
        &mut |_| {},
    )
    .expect("console --lines 1");
    let last = String::from_utf8_lossy(&out);
    assert_eq!(last.lines().count(), 1, "one line of history:\n{last}");
}

/// The tender's `/proc` view: its command line and the CPUs it may run on.
fn tender_cmdline(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .expect("tender cmdline")
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

fn cpus_allowed(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("tender status")
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .map(|v| v.trim().to_owned())
        .expect("Cpus_allowed_list")
}

#[test]
fn memory_pinning_and_request_caps() {
    let d = Daemon::start("pin");
    let mut c = d.local();
    let mut s = Spec::net("ops:pinned", None);
    s.memory_mib = 12;
    s.cpu_affinity = vec![1];
    create(&mut c, &s);
    let i = wait_running(&mut c, "ops:pinned");
    assert_eq!(i.cpu_affinity, [1]);
    assert_eq!(i.memory_mib, 12);
    let pid = i.pid.expect("pid");
    let args = tender_cmdline(pid);
    assert!(
        args.iter().any(|a| a == "--mem=12"),
        "the tender gets the memory limit: {args:?}"
    );
    assert_eq!(cpus_allowed(pid), "1", "sched_setaffinity to CPU 1");
    let mut free = Spec::net("ops:free", None);
    free.memory_mib = 8;
    create(&mut c, &free);
    let pid = wait_running(&mut c, "ops:free").pid.expect("pid");
    assert_eq!(cpus_allowed(pid), "0-1", "no affinity: any CPU");

    // Caps beyond the frame limit.
    let many: Vec<&str> = vec!["x"; 257];
    assert_denied(
        try_create(&mut c, &Spec::new("ops:args", "hello").args(&many)),
        ErrorKind::BadRequest,
        "argument",
    );
    let mut huge = Spec::new("ops:huge", "hello");
    huge.memory_mib = 1 << 20;
    assert_eq!(kind_of(try_create(&mut c, &huge)).0, ErrorKind::BadRequest);
    let mut two = Spec::new("ops:twocpu", "hello");
    two.cpus = 2;
    assert_eq!(kind_of(try_create(&mut c, &two)).0, ErrorKind::BadRequest);
    let mut longbr = Spec::net("ops:longbr", None);
    longbr.net = vec![("service0".to_owned(), "b".repeat(16))];
    assert_eq!(
        kind_of(try_create(&mut c, &longbr)).0,
        ErrorKind::BadRequest
    );
    let names: Vec<String> = info_all(&mut c)
        .iter()
        .map(|i| i.name.to_string())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

#[test]
fn an_abandoned_upload_leaves_nothing() {
    let d = Daemon::start("abandon");
    let mut c = d.local();
    let spec = Spec::new("ops:half", "hello");
    let bytes = read(&spec.image);
    {
        let mut raw = Raw::unix(&d);
        let r = raw.request(
            1,
            spec.command(bytes.len() as u64, Sha256Digest::of(&bytes)),
        );
        assert_eq!(r, ReplyBody::Proceed);
        raw.send(&petrel_proto::msg::Message::Stream(
            petrel_proto::msg::Stream {
                id: petrel_proto::msg::RequestId(1),
                chunk: petrel_proto::msg::Chunk::Data(bytes[..4096].to_vec()),
            },
        ));
        // The connection drops here, mid-stream.
    }
    let tmp = d.data_dir().join("images/tmp");
    wait_for(
        "the partial image to be removed",
        Duration::from_secs(10),
        || {
            std::fs::read_dir(&tmp)
                .map(|rd| rd.count() == 0)
                .unwrap_or(true)
                .then_some(())
        },
    );
    assert_denied(try_info(&mut c, "ops:half"), ErrorKind::NotFound, "half");
    // The name is free and the same image goes in whole.
    create(&mut c, &spec);
    wait_stopped(&mut c, "ops:half");
}
