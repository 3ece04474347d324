//! `petrel-sntp` against a tiny SNTP responder that the test runs inside a network
//! namespace (a thread moved there with setns; its socket stays there). Every run uses
//! `--dry-run`: no test changes the host's clock.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::net::UdpSocket;
use std::process::Output;
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use petrel_dhcp::sntp::wire::{MODE_SERVER, Packet, Timestamp};

const SNTP: &str = env!("CARGO_BIN_EXE_petrel-sntp");
const DAY_NANOS: i128 = 86_400 * 1_000_000_000;

fn now_nanos() -> i128 {
    i128::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    )
    .unwrap()
}

/// How the responder answers.
#[derive(Clone, Copy)]
struct Behaviour {
    offset_nanos: i128,
    stratum: u8,
    reference_id: [u8; 4],
}

const GOOD: Behaviour = Behaviour {
    offset_nanos: 0,
    stratum: 2,
    reference_id: [192, 0, 2, 1],
};

/// Starts a responder on 127.0.0.1 in `ns`; returns its port. It answers until the
/// test process ends (the thread only blocks on its socket).
fn responder(ns: &Netns, b: Behaviour) -> u16 {
    let (tx, rx) = mpsc::channel();
    let ns = Netns::borrowed(ns.name());
    std::thread::spawn(move || {
        ns.enter().unwrap();
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.send(sock.local_addr().unwrap().port()).unwrap();
        let mut buf = [0u8; 512];
        while let Ok((n, from)) = sock.recv_from(&mut buf) {
            let Ok(req) = Packet::parse(&buf[..n]) else {
                continue;
            };
            let t = Timestamp::from_unix_nanos(now_nanos() + b.offset_nanos);
            let reply = Packet {
                version: 4,
                mode: MODE_SERVER,
                stratum: b.stratum,
                precision: -20,
                reference_id: b.reference_id,
                reference: t,
                origin: req.transmit,
                receive: t,
                transmit: t,
                ..Packet::default()
            };
            let _ = sock.send_to(&reply.emit(), from);
        }
    });
    rx.recv_timeout(Duration::from_secs(5)).unwrap()
}

fn sntp(ns: &Netns, args: &[&str]) -> (Output, String) {
    let out = ns.command(SNTP).args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    eprintln!("{stderr}");
    (out, stderr)
}

/// The offset in seconds from a "offset +12.000345678s" log line.
fn offset_secs(log: &str) -> f64 {
    let at = log.find("offset ").unwrap() + "offset ".len();
    let end = log[at..].find('s').unwrap();
    log[at..at + end].parse().unwrap()
}

#[test]
fn measures_the_offset_without_touching_the_clock() {
    let ns = netns("t");
    let port = responder(
        &ns,
        Behaviour {
            offset_nanos: 1000 * 1_000_000_000,
            ..GOOD
        },
    );
    let server = format!("127.0.0.1:{port}");
    let (out, log) = sntp(&ns, &[&server, "--once", "--dry-run"]);
    assert!(out.status.success(), "{log}");
    assert!((offset_secs(&log) - 1000.0).abs() < 1.0, "{log}");
    assert!(
        log.contains(&format!("petrel-sntp: {server}: offset +")),
        "{log}"
    );
    assert!(
        log.contains("stratum 2: would set the clock (dry run)"),
        "{log}"
    );
}

#[test]
fn in_sync_and_floor() {
    let ns = netns("t");
    let dir = scratch("floor");
    let same = responder(&ns, GOOD);
    let (out, log) = sntp(&ns, &[&format!("127.0.0.1:{same}"), "--once", "--dry-run"]);
    assert!(out.status.success());
    assert!(log.trim_end().ends_with(": in sync"), "{log}");

    // A server ten days back, a floor one day back: refused.
    let past = responder(
        &ns,
        Behaviour {
            offset_nanos: -10 * DAY_NANOS,
            ..GOOD
        },
    );
    let floor_secs = (now_nanos() - DAY_NANOS) / 1_000_000_000;
    let floor = dir.path("clock-floor");
    std::fs::write(&floor, format!("{floor_secs}\n")).unwrap();
    let (out, log) = sntp(
        &ns,
        &[
            &format!("127.0.0.1:{past}"),
            "--once",
            "--dry-run",
            "--floor",
            floor.to_str().unwrap(),
        ],
    );
    assert!(out.status.success());
    assert!(
        log.contains(&format!(
            "earlier than the clock floor {floor_secs}, not set"
        )),
        "{log}"
    );
    assert!((offset_secs(&log) + 864_000.0).abs() < 1.0, "{log}");
}

#[test]
fn bad_servers_are_skipped_in_order() {
    let ns = netns("t");
    let kod = responder(
        &ns,
        Behaviour {
            stratum: 0,
            reference_id: *b"RATE",
            ..GOOD
        },
    );
    let unsynced = responder(
        &ns,
        Behaviour {
            stratum: 16,
            ..GOOD
        },
    );
    let good = responder(&ns, GOOD);
    let servers = [kod, unsynced].map(|p| format!("127.0.0.1:{p}"));
    let (out, log) = sntp(&ns, &[&servers[0], &servers[1], "--once", "--dry-run"]);
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert_eq!(
        log,
        format!(
            "petrel-sntp: {}: reply refused: kiss-o'-death \"RATE\"\n\
             petrel-sntp: {}: reply refused: server not synchronized (stratum 16)\n\
             petrel-sntp: no server answered\n",
            servers[0], servers[1]
        )
    );
    let good = format!("127.0.0.1:{good}");
    let (out, log) = sntp(&ns, &[&servers[0], &good, "--once", "--dry-run"]);
    assert!(out.status.success(), "{log}");
    assert!(log.contains(&format!("{good}: offset")), "{log}");
}

#[test]
fn silence_and_bad_arguments() {
    let ns = netns("t");
    // Nobody on that port: the kernel answers with port unreachable.
    let (out, log) = sntp(
        &ns,
        &["127.0.0.1:9", "--once", "--dry-run", "--timeout-ms", "500"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        log.starts_with("petrel-sntp: 127.0.0.1:9: network error: "),
        "{log}"
    );
    // No route at all: silence until the timeout.
    let (out, log) = sntp(
        &ns,
        &["192.0.2.1", "--once", "--dry-run", "--timeout-ms", "300"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(log.contains("192.0.2.1:123: "), "{log}");

    let (out, log) = sntp(&ns, &["pool.ntp.org", "--once"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        log,
        "petrel-sntp: \"pool.ntp.org\" is not an IPv4 address[:port] (names are not supported yet)\n"
    );
    let (out, log) = sntp(&ns, &["--once"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(log, "petrel-sntp: no server given\n");
}
