//! `petrel-dhcp` against a real DHCP server: Debian's dnsmasq, in a network namespace
//! of its own, one end of a veth pair; the client runs in a second namespace on the
//! other end. `ip -j` is the independent witness of what the client configured.
//!
//! Needs root, iproute2 and dnsmasq (`make deps` installs them); fails loudly without.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use petrel_dhcp::dhcp::lease_file::LeaseFile;
use serde_json::Value;

const DHCP: &str = env!("CARGO_BIN_EXE_petrel-dhcp");
const SERVER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

/// dnsmasq serving 192.0.2.50-60/24 with 2-minute leases (its minimum), router and DNS
/// options, in `link.server`.
fn dnsmasq(link: &Link, dir: &Path) -> Killed {
    let bin = ["/usr/sbin/dnsmasq", "/usr/bin/dnsmasq"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("dnsmasq is not installed: run `make deps` (scripts/deps installs dnsmasq-base)");
    let child = link
        .server
        .command(bin)
        .args([
            "--no-daemon",
            "--conf-file=/dev/null",
            "--port=0",
            "--user=root",
            "--interface=vs",
            "--bind-interfaces",
            "--dhcp-authoritative",
            "--dhcp-range=192.0.2.50,192.0.2.60,255.255.255.0,2m",
            "--dhcp-option=option:router,192.0.2.1",
            "--dhcp-option=option:dns-server,192.0.2.53",
            "--log-dhcp",
            "--log-facility=-",
        ])
        .arg(format!(
            "--dhcp-leasefile={}",
            dir.join("dnsmasq.leases").display()
        ))
        .arg(format!("--pid-file={}", dir.join("dnsmasq.pid").display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let guard = Killed(child);
    wait_for_udp_listener(&link.server, 67);
    guard
}

fn run_once(link: &Link, lease_file: &Path, extra: &[&str]) -> (bool, String) {
    let out = link
        .client
        .command(DHCP)
        .args(["vc", "--once", "--timeout", "40", "--lease-file"])
        .arg(lease_file)
        .args(extra)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    eprintln!("{stderr}");
    (out.status.success(), stderr)
}

fn read_lease(path: &Path) -> LeaseFile {
    LeaseFile::from_json(&std::fs::read(path).unwrap()).unwrap()
}

fn in_pool(a: Ipv4Addr) -> bool {
    (Ipv4Addr::new(192, 0, 2, 50)..=Ipv4Addr::new(192, 0, 2, 60)).contains(&a)
}

/// What `ip -j` says about vc in the client namespace: its IPv4 addresses (address,
/// prefix, valid lifetime) and the default route (gateway, protocol).
type Witness = (Vec<(Ipv4Addr, u64, u64)>, Option<(String, String)>);

fn witness(ns: &Netns) -> Witness {
    let addrs: Value = serde_json::from_str(&ns.ip(&["-j", "addr", "show", "dev", "vc"])).unwrap();
    let mut v4 = vec![];
    for a in addrs[0]["addr_info"].as_array().unwrap() {
        if a["family"] == "inet" {
            v4.push((
                a["local"].as_str().unwrap().parse().unwrap(),
                a["prefixlen"].as_u64().unwrap(),
                a["valid_life_time"].as_u64().unwrap(),
            ));
        }
    }
    let routes: Value = serde_json::from_str(&ns.ip(&["-j", "route", "show", "default"])).unwrap();
    let default = routes.as_array().unwrap().first().map(|r| {
        assert_eq!(r["dev"], "vc");
        (
            r["gateway"].as_str().unwrap().to_owned(),
            r["protocol"].as_str().unwrap().to_owned(),
        )
    });
    (v4, default)
}

#[test]
fn gets_a_lease_from_dnsmasq_and_asks_for_it_again() {
    let dir = scratch("lease");
    let link = Link::new("192.0.2.1/24");
    let _server = dnsmasq(&link, dir.dir());
    let lease_path = dir.path("run/vc.json");

    let (ok, log) = run_once(&link, &lease_path, &["--hostname", "testbox"]);
    assert!(ok, "{log}");
    let lease = read_lease(&lease_path);
    assert!(in_pool(lease.address), "{lease:?}");
    assert_eq!(lease.version, 1);
    assert_eq!(lease.interface, "vc");
    assert_eq!(lease.prefix_len, 24);
    assert_eq!(lease.router, Some(SERVER));
    assert_eq!(lease.dns, vec![Ipv4Addr::new(192, 0, 2, 53)]);
    assert_eq!(lease.server, SERVER);
    assert_eq!(lease.lease_secs, Some(120));
    assert_eq!(lease.renew_secs, Some(60));
    assert_eq!(lease.rebind_secs, Some(105));
    assert_eq!(
        lease.expires_unix,
        Some(lease.obtained_unix + 120),
        "{lease:?}"
    );
    assert!(log.contains("DHCPDISCOVER sent"), "{log}");
    assert!(log.contains(&format!("offer {} from 192.0.2.1", lease.address)));
    assert!(
        log.contains(&format!(
            "petrel-dhcp: vc: bound {}/24 via 192.0.2.1 for 120s",
            lease.address
        )),
        "{log}"
    );

    let (addrs, default) = witness(&link.client);
    assert_eq!(addrs.len(), 1, "{addrs:?}");
    assert_eq!((addrs[0].0, addrs[0].1), (lease.address, 24));
    assert!(
        addrs[0].2 <= 120,
        "valid lifetime is the lease's: {addrs:?}"
    );
    assert_eq!(default, Some(("192.0.2.1".into(), "dhcp".into())));
    // The server saw our host name.
    let leases = std::fs::read_to_string(dir.path("dnsmasq.leases")).unwrap();
    assert!(
        leases.contains(&format!("{} testbox", lease.address)),
        "{leases}"
    );
    // From the client's address the server answers.
    let ping = link
        .client
        .command("ping")
        .args(["-c", "1", "-W", "5", "192.0.2.1"])
        .output()
        .unwrap();
    assert!(ping.status.success(), "ping: {ping:?}");

    // A second run starts from the lease file: INIT-REBOOT, no DISCOVER.
    let (ok, log) = run_once(&link, &lease_path, &[]);
    assert!(ok, "{log}");
    assert!(!log.contains("DHCPDISCOVER"), "{log}");
    assert!(log.contains("DHCPREQUEST sent"), "{log}");
    assert_eq!(read_lease(&lease_path).address, lease.address);
    assert_eq!(witness(&link.client).0.len(), 1);
}

#[test]
fn nak_for_a_foreign_address_restarts() {
    let dir = scratch("nak");
    let link = Link::new("192.0.2.1/24");
    let _server = dnsmasq(&link, dir.dir());
    let lease_path = dir.path("vc.json");
    // An old lease from another network: dnsmasq (authoritative) refuses it.
    std::fs::write(
        &lease_path,
        r#"{"version":1,"interface":"vc","address":"198.51.100.7","prefix_len":24,"server":"198.51.100.1"}"#,
    )
    .unwrap();
    let (ok, log) = run_once(&link, &lease_path, &[]);
    assert!(ok, "{log}");
    assert!(log.contains("NAK from 192.0.2.1"), "{log}");
    let lease = read_lease(&lease_path);
    assert!(in_pool(lease.address), "{lease:?}");
}

#[test]
fn times_out_without_a_server() {
    let dir = scratch("timeout");
    let link = Link::new("192.0.2.1/24");
    let t = Instant::now();
    let out = link
        .client
        .command(DHCP)
        .args(["vc", "--once", "--timeout", "2", "--lease-file"])
        .arg(dir.path("vc.json"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.ends_with("petrel-dhcp: vc: no lease within 2 s\n"),
        "{stderr}"
    );
    assert!(t.elapsed() < Duration::from_secs(10));
    assert!(!dir.path("vc.json").exists());
}

#[test]
fn refuses_bad_arguments() {
    let out = Command::new(DHCP)
        .args(["nosuchif0", "--once"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "petrel-dhcp: nosuchif0: no such interface: No such device (os error 19)\n"
    );
    let out = Command::new(DHCP)
        .args(["lo", "--hostname", "bad name"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad host name \"bad name\""));
    let out = Command::new(DHCP).arg("--help").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("--lease-file"));
}

/// A real renewal: dnsmasq's shortest lease is 2 minutes, so T1 comes after 60 s.
#[test]
fn renews_with_dnsmasq() {
    let dir = scratch("renew");
    let link = Link::new("192.0.2.1/24");
    let _server = dnsmasq(&link, dir.dir());
    let lease_path = dir.path("vc.json");
    let child = link
        .client
        .command(DHCP)
        .args(["vc", "--lease-file"])
        .arg(&lease_path)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut client = Killed(child);
    let stderr = client.0.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            eprintln!("{line}");
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(100);
    let mut lines = vec![];
    let mut first = None;
    while !lines.iter().any(|l: &String| l.contains("renewed")) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) => {
                if l.contains(": bound ") {
                    first = Some((Instant::now(), read_lease(&lease_path)));
                }
                lines.push(l);
            }
            Err(_) => panic!("no renewal within 100 s: {lines:#?}"),
        }
    }
    let (bound_at, first) = first.unwrap();
    let renewed_after = bound_at.elapsed();
    assert!(
        renewed_after >= Duration::from_secs(58) && renewed_after <= Duration::from_secs(70),
        "{renewed_after:?}"
    );
    let renewing = lines
        .iter()
        .position(|l| l.ends_with(": renewing"))
        .unwrap();
    assert_eq!(lines[renewing + 1], "petrel-dhcp: vc: DHCPREQUEST sent");
    assert_eq!(
        lines.last().unwrap(),
        &format!(
            "petrel-dhcp: vc: renewed {}/24 via 192.0.2.1 for 120s",
            first.address
        )
    );
    let second = read_lease(&lease_path);
    assert_eq!(second.address, first.address);
    assert!(
        second.obtained_unix >= first.obtained_unix + 58,
        "{second:?}"
    );
    let (addrs, default) = witness(&link.client);
    assert_eq!(addrs.len(), 1);
    assert!(addrs[0].2 > 100, "lifetime refreshed: {addrs:?}");
    assert!(default.is_some());
}
