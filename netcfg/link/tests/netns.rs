//! Real-kernel tests, as root, in network namespaces each test creates (and a Drop
//! guard removes, even on failure). The netlink code runs on a thread that has entered
//! the namespace (`setns` affects only the calling thread; a netlink socket and a tap
//! stay in the namespace they were made in). `ip -j` is the independent witness.
#![allow(missing_docs, clippy::unwrap_used)]

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use petrel_config::Config;
use petrel_netcfg::{ApplyOptions, Error, IfAddr, Link, Mac, Netlink, Route, apply, create_tap};
use petrel_test_support::{self as support, Netns};
use serde_json::Value;

const NS_PREFIX: &str = "petrel-nc-";

/// Fails loudly (never skips) when the test cannot run here.
fn require_root_and_ip() {
    support::require_root("the netcfg namespace tests create namespaces, links and taps");
    support::require_ip();
    support::require_tun();
}

/// A network namespace (`petrel-nc-…`, loopback down as the kernel makes it), deleted on
/// drop.
fn netns(tag: &str) -> Netns {
    require_root_and_ip();
    Netns::new(NS_PREFIX, tag)
}

/// The independent witness: `ip -j` and `/proc/sys` as seen inside a namespace.
trait Witness {
    /// `ip -n NS -j ARGS`, parsed.
    fn ip_json(&self, args: &[&str]) -> Vec<Value>;

    /// The witness's view of one link (`ip -d -j link`).
    fn link(&self, name: &str) -> Option<Value> {
        self.ip_json(&["-d", "link", "show"])
            .into_iter()
            .find(|l| l["ifname"] == name)
    }

    /// Waits for a tap to vanish after its fd was closed. Not instant when tests run in
    /// parallel: a child another test is forking holds a copy of every fd until it
    /// execs (close-on-exec), and the tap goes with the last copy.
    fn wait_gone(&self, name: &str) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.link(name).is_some() {
            assert!(Instant::now() < deadline, "{name} outlived its fd by 5 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `(address, prefix)` of every address on `dev` (`ip -j addr`).
    fn addrs(&self, dev: &str) -> HashSet<(String, u64)> {
        self.ip_json(&["addr", "show", "dev", dev])
            .iter()
            .flat_map(|l| l["addr_info"].as_array().cloned().unwrap_or_default())
            .map(|a| {
                (
                    a["local"].as_str().unwrap().to_string(),
                    a["prefixlen"].as_u64().unwrap(),
                )
            })
            .collect()
    }

    /// A sysctl's value as seen inside the namespace.
    fn sysctl(&self, key: &str) -> String;

    /// `ip -j route` for `family` ("-4" or "-6").
    fn routes(&self, family: &str) -> Vec<Value> {
        self.ip_json(&[family, "route", "show"])
    }
}

impl Witness for Netns {
    fn ip_json(&self, args: &[&str]) -> Vec<Value> {
        let mut all = vec!["-j"];
        all.extend_from_slice(args);
        let text = self.ip(&all);
        if text.trim().is_empty() {
            return Vec::new();
        }
        match serde_json::from_str(&text) {
            Ok(Value::Array(items)) => items,
            other => panic!("ip {args:?}: not a JSON array: {other:?}\n{text}"),
        }
    }

    fn sysctl(&self, key: &str) -> String {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        let out = self.exec("cat", &[&path]);
        assert!(
            out.status.success(),
            "sysctl {key}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

fn flags(link: &Value) -> Vec<String> {
    link["flags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_string())
        .collect()
}

fn mac_text(mac: Mac) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

const BR_MAC: Mac = [0x02, 0x50, 0x45, 0x54, 0x00, 0x01];

#[test]
fn bridge_taps_veth_addresses_and_routes() {
    let ns = netns("build");
    let v4: IpAddr = "10.99.0.2".parse().unwrap();
    let v6: IpAddr = "fd00:99::2".parse().unwrap();
    let gw: IpAddr = "10.99.0.1".parse().unwrap();
    let v6_net: IpAddr = "fd00:98::".parse().unwrap();
    let v6_gw: IpAddr = "fd00:99::1".parse().unwrap();
    let any4 = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

    let (taps, links, addrs, routes) = ns.run(move || {
        let mut nl = Netlink::new().unwrap();
        nl.set_up("lo").unwrap();
        nl.create_bridge("br0", BR_MAC).unwrap();
        let e = nl.create_bridge("br0", BR_MAC).unwrap_err();
        assert!(e.is_exists(), "duplicate bridge: {e:?}");
        assert_eq!(e.raw_os_error(), Some(libc::EEXIST));
        assert!(e.to_string().contains("create bridge \"br0\""), "{e}");

        let taps = vec![create_tap("tap0").unwrap(), create_tap("tap1").unwrap()];
        nl.create_veth("veth0", "veth1").unwrap();
        for port in ["tap0", "tap1", "veth0"] {
            nl.set_mtu(port, 9000).unwrap();
            nl.set_master(port, "br0").unwrap();
            nl.set_up(port).unwrap();
        }
        nl.set_up("veth1").unwrap();
        nl.set_mtu("br0", 1400).unwrap();
        nl.set_up("br0").unwrap();

        nl.add_addr("br0", v4, 24).unwrap();
        nl.add_addr("br0", v6, 64).unwrap();
        assert!(nl.add_addr("br0", v4, 24).unwrap_err().is_exists());
        nl.add_route(any4, 0, Some(gw), "br0").unwrap();
        assert!(
            nl.add_route(any4, 0, Some(gw), "br0")
                .unwrap_err()
                .is_exists()
        );
        nl.add_route(v6_net, 64, Some(v6_gw), "br0").unwrap();

        (
            taps,
            nl.links().unwrap(),
            nl.addrs("br0").unwrap(),
            nl.routes().unwrap(),
        )
    });

    // The witness: links.
    let br = ns.link("br0").expect("br0 exists");
    assert_eq!(br["linkinfo"]["info_kind"], "bridge");
    assert_eq!(br["address"], mac_text(BR_MAC));
    assert_eq!(br["mtu"], 1400);
    assert!(flags(&br).contains(&"UP".to_string()), "{br}");
    for port in ["tap0", "tap1", "veth0"] {
        let l = ns.link(port).unwrap_or_else(|| panic!("{port} exists"));
        assert_eq!(l["master"], "br0", "{l}");
        assert_eq!(l["mtu"], 9000, "{l}");
        assert!(flags(&l).contains(&"UP".to_string()), "{l}");
    }
    let tap0 = ns.link("tap0").unwrap();
    assert_eq!(tap0["linkinfo"]["info_kind"], "tun");
    assert_eq!(tap0["linkinfo"]["info_data"]["type"], "tap", "{tap0}");
    assert_eq!(tap0["linkinfo"]["info_data"]["persist"], false, "{tap0}");
    assert_eq!(ns.link("veth1").unwrap()["linkinfo"]["info_kind"], "veth");

    // The witness: addresses and routes.
    let want: HashSet<(String, u64)> = [("10.99.0.2".into(), 24), ("fd00:99::2".into(), 64)]
        .into_iter()
        .collect();
    let seen = ns.addrs("br0");
    assert!(seen.is_superset(&want), "{seen:?}");
    let v4_addr = ns.ip_json(&["-4", "addr", "show", "dev", "br0"]);
    assert_eq!(v4_addr[0]["addr_info"][0]["broadcast"], "10.99.0.255");
    let r4 = ns.routes("-4");
    let default = r4
        .iter()
        .find(|r| r["dst"] == "default")
        .expect("default route");
    assert_eq!(default["gateway"], "10.99.0.1");
    assert_eq!(default["dev"], "br0");
    assert_eq!(default["protocol"], "static");
    let r6 = ns.routes("-6");
    let via = r6
        .iter()
        .find(|r| r["dst"] == "fd00:98::/64")
        .expect("v6 route");
    assert_eq!(via["gateway"], "fd00:99::1");

    // Our own readers agree with the witness.
    let br0 = links.iter().find(|l| l.name == "br0").unwrap();
    assert_eq!(br0.kind.as_deref(), Some("bridge"));
    assert_eq!(br0.mac, Some(BR_MAC));
    assert_eq!(br0.mtu, 1400);
    assert!(br0.is_up());
    for port in ["tap0", "tap1", "veth0"] {
        let l = links.iter().find(|l| l.name == port).unwrap();
        assert_eq!(l.master, Some(br0.index), "{l:?}");
        assert!(!l.physical, "{l:?}");
    }
    assert!(links.iter().any(|l| l.is_loopback() && l.name == "lo"));
    assert!(
        addrs.contains(&IfAddr {
            addr: v4,
            prefix: 24
        }),
        "{addrs:?}"
    );
    assert!(
        addrs.contains(&IfAddr {
            addr: v6,
            prefix: 64
        }),
        "{addrs:?}"
    );
    assert!(
        routes.contains(&Route {
            dst: any4,
            prefix: 0,
            gateway: Some(gw),
            oif: Some(br0.index),
        }),
        "{routes:?}"
    );
    assert!(
        routes
            .iter()
            .any(|r| r.dst == v6_net && r.prefix == 64 && r.gateway == Some(v6_gw))
    );

    // Undo it all, step by step, and check each step with the witness.
    ns.run(move || {
        let mut nl = Netlink::new().unwrap();
        nl.del_route(any4, 0, Some(gw), "br0").unwrap();
        assert!(
            nl.del_route(any4, 0, Some(gw), "br0")
                .unwrap_err()
                .is_not_found()
        );
        nl.del_addr("br0", v4, 24).unwrap();
        assert!(nl.del_addr("br0", v4, 24).unwrap_err().is_not_found());
        nl.no_master("tap1").unwrap();
        nl.set_down("tap1").unwrap();
        nl.set_mac("br0", [0x02, 0, 0, 0, 0, 0x42]).unwrap();
        nl.delete_link("veth0").unwrap();
        let e = nl.link_index("veth1").unwrap_err();
        assert!(e.is_not_found(), "a veth's peer goes with it: {e:?}");
    });
    assert!(ns.routes("-4").iter().all(|r| r["dst"] != "default"));
    assert!(!ns.addrs("br0").contains(&("10.99.0.2".to_string(), 24)));
    let tap1 = ns.link("tap1").unwrap();
    assert!(tap1.get("master").is_none(), "{tap1}");
    assert!(!flags(&tap1).contains(&"UP".to_string()), "{tap1}");
    assert_eq!(ns.link("br0").unwrap()["address"], "02:00:00:00:00:42");
    assert!(ns.link("veth0").is_none() && ns.link("veth1").is_none());

    // Taps are not persistent: closing the fd removes the interface.
    drop(taps);
    ns.wait_gone("tap0");
    ns.wait_gone("tap1");
}

#[test]
fn taps_vanish_with_their_fd_and_names_are_exclusive() {
    let ns = netns("tap");
    let fd: OwnedFd = ns.run(|| {
        let fd = create_tap("tapx").unwrap();
        let e = create_tap("tapx").unwrap_err();
        assert!(e.is_exists(), "{e:?}");
        let mut nl = Netlink::new().unwrap();
        nl.create_veth("vx0", "vx1").unwrap();
        assert!(create_tap("vx0").unwrap_err().is_exists());
        assert!(matches!(create_tap("tap%d"), Err(Error::InvalidName(_))));
        assert!(matches!(
            create_tap("a-name-too-long-for-linux"),
            Err(Error::InvalidName(_))
        ));
        fd
    });
    assert!(ns.link("tapx").is_some());
    drop(fd);
    ns.wait_gone("tapx");
}

#[test]
fn errors_name_the_operation_and_carry_the_errno() {
    let ns = netns("err");
    ns.run(|| {
        let mut nl = Netlink::new().unwrap();
        let e = nl.set_up("nosuchdev").unwrap_err();
        assert!(e.is_not_found(), "{e:?}");
        assert_eq!(e.to_string(), "set \"nosuchdev\" up");
        let source = std::error::Error::source(&e).unwrap().to_string();
        assert!(source.contains("No such device"), "{source}");
        assert!(matches!(nl.set_up("bad/name"), Err(Error::InvalidName(_))));
        // A gateway that is not on any link: the kernel refuses with ENETUNREACH and
        // (with extended ACKs) says why.
        nl.create_bridge("b", BR_MAC).unwrap();
        nl.set_up("b").unwrap();
        let e = nl
            .add_route(
                IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                0,
                Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))),
                "b",
            )
            .unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENETUNREACH), "{e:?}");
        assert!(e.to_string().contains(" (kernel says: "), "{e}");
        let e = nl
            .add_addr("b", IpAddr::V6(Ipv6Addr::LOCALHOST), 129)
            .unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL), "{e:?}");
    });
}

/// Stable, locally administered MACs for the tests, from the bridge's name.
fn test_mac(name: &str) -> Mac {
    let mut mac = [0x02, 0x7e, 0, 0, 0, 0];
    for (i, b) in name.bytes().enumerate() {
        mac[2 + i % 4] ^= b;
    }
    mac
}

/// Veths named `uplink*` stand in for physical NICs (a veth has no `/device`).
fn veth_is_nic(link: &Link) -> bool {
    link.name.starts_with("uplink")
}

const TWO_BRIDGES: &str = r#"
[[network.bridges]]
name = "service"
uplink = "auto"
ipv4 = "10.77.0.2/24"
gateway = "10.77.0.1"
ipv6 = "fd00:77::2/64"
mtu = 1400

[[network.bridges]]
name = "lan"
uplink = "none"
ipv4 = "dhcp"
ipv6 = "none"
"#;

#[test]
fn apply_picks_the_nic_with_carrier_and_configures_everything() {
    let ns = netns("apply");
    let net = Config::parse(TWO_BRIDGES).unwrap().config.network;
    let (first, second) = ns.run(move || {
        let mut nl = Netlink::new().unwrap();
        // uplinka comes first but its peer is down (no carrier); uplinkb's peer is up.
        nl.create_veth("uplinka", "peera").unwrap();
        nl.create_veth("uplinkb", "peerb").unwrap();
        nl.set_up("peerb").unwrap();
        let opts = ApplyOptions {
            mac_for: &test_mac,
            is_physical: &veth_is_nic,
            carrier_wait: Duration::from_secs(5),
        };
        let first = apply(&net, &mut nl, &opts).unwrap();
        // Applying again changes nothing and fails on nothing.
        let second = apply(&net, &mut nl, &opts).unwrap();
        (first, second)
    });
    assert_eq!(first, second);
    assert!(first.warnings.is_empty(), "{:?}", first.warnings);
    assert_eq!(first.dhcp_bridges().collect::<Vec<_>>(), vec!["lan"]);
    let service = &first.bridges[0];
    assert_eq!(service.name, "service");
    assert_eq!(service.uplink.as_deref(), Some("uplinkb"));
    assert_eq!(service.mac, test_mac("service"));
    assert_eq!(first.bridges[1].uplink, None);

    // The witness.
    assert!(flags(&ns.link("lo").unwrap()).contains(&"UP".to_string()));
    let br = ns.link("service").unwrap();
    assert_eq!(br["linkinfo"]["info_kind"], "bridge");
    assert_eq!(br["address"], mac_text(test_mac("service")));
    assert_eq!(br["mtu"], 1400);
    assert!(flags(&br).contains(&"UP".to_string()));
    let up = ns.link("uplinkb").unwrap();
    assert_eq!(up["master"], "service");
    assert_eq!(up["mtu"], 1400);
    assert!(flags(&up).contains(&"LOWER_UP".to_string()), "{up}");
    let other = ns.link("uplinka").unwrap();
    assert!(other.get("master").is_none(), "{other}");
    assert!(
        !flags(&other).contains(&"UP".to_string()),
        "back down: {other}"
    );
    let lan = ns.link("lan").unwrap();
    assert_eq!(lan["address"], mac_text(test_mac("lan")));
    assert_eq!(lan["mtu"], 1500);
    assert!(flags(&lan).contains(&"UP".to_string()));

    let addrs = ns.addrs("service");
    assert!(addrs.contains(&("10.77.0.2".to_string(), 24)), "{addrs:?}");
    assert!(addrs.contains(&("fd00:77::2".to_string(), 64)), "{addrs:?}");
    // Static IPv6 without SLAAC addresses; IPv6 off on "lan": no address at all there.
    let lan_addrs = ns.addrs("lan");
    assert!(lan_addrs.is_empty(), "{lan_addrs:?}");
    assert_eq!(ns.sysctl("net.ipv6.conf.lan.disable_ipv6"), "1");
    assert_eq!(ns.sysctl("net.ipv6.conf.service.disable_ipv6"), "0");
    assert_eq!(ns.sysctl("net.ipv6.conf.service.autoconf"), "0");
    let default = ns
        .routes("-4")
        .into_iter()
        .find(|r| r["dst"] == "default")
        .expect("default route");
    assert_eq!(default["gateway"], "10.77.0.1");
    assert_eq!(default["dev"], "service");
}

#[test]
fn apply_without_carrier_takes_the_first_nic_and_warns_about_missing_ones() {
    let ns = netns("nocarrier");
    let text = r#"
[[network.bridges]]
name = "service"
[[network.bridges]]
name = "named"
uplink = "eth-missing"
ipv4 = "none"
"#;
    let net = Config::parse(text).unwrap().config.network;
    let applied = ns.run(move || {
        let mut nl = Netlink::new().unwrap();
        nl.create_veth("uplink1", "peer1").unwrap();
        nl.create_veth("uplink2", "peer2").unwrap();
        let opts = ApplyOptions {
            mac_for: &test_mac,
            is_physical: &veth_is_nic,
            carrier_wait: Duration::from_millis(300),
        };
        apply(&net, &mut nl, &opts).unwrap()
    });
    assert_eq!(applied.bridges[0].uplink.as_deref(), Some("uplink1"));
    assert_eq!(applied.bridges[1].uplink, None);
    assert_eq!(
        applied.warnings,
        vec!["bridge \"named\": uplink \"eth-missing\" does not exist"]
    );
    assert_eq!(applied.dhcp_bridges().collect::<Vec<_>>(), vec!["service"]);
    assert_eq!(ns.link("uplink1").unwrap()["master"], "service");
    assert!(ns.link("uplink2").unwrap().get("master").is_none());
    assert!(ns.link("named").is_some());

    // Defaults with no NIC at all: the bridge is made, with a warning.
    let ns = netns("nonic");
    let applied = ns.run(|| {
        let mut nl = Netlink::new().unwrap();
        let opts = ApplyOptions::new(&test_mac);
        apply(&Config::default().network, &mut nl, &opts).unwrap()
    });
    assert_eq!(applied.bridges[0].uplink, None);
    assert_eq!(
        applied.warnings,
        vec!["bridge \"service\": no physical NIC for uplink \"auto\""]
    );
    assert!(ns.link("service").is_some());
}

#[test]
fn replace_addr_with_a_lifetime_and_replace_the_default_route() {
    let ns = netns("replace");
    let addr: IpAddr = "10.66.0.20".parse().unwrap();
    let any4 = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    ns.run(move || {
        let mut nl = Netlink::new().unwrap();
        nl.create_bridge("br", BR_MAC).unwrap();
        nl.set_up("br").unwrap();
        nl.replace_addr("br", addr, 24, Some(600)).unwrap();
        nl.replace_addr("br", addr, 24, Some(900)).unwrap(); // a renewed lease
        let gw1 = Some("10.66.0.1".parse().unwrap());
        let gw2 = Some("10.66.0.254".parse().unwrap());
        nl.replace_route(any4, 0, gw1, "br").unwrap();
        nl.replace_route(any4, 0, gw2, "br").unwrap(); // a new router
    });
    let info = ns.ip_json(&["-4", "addr", "show", "dev", "br"]);
    let a = &info[0]["addr_info"][0];
    assert_eq!(a["local"], "10.66.0.20");
    let valid = a["valid_life_time"].as_u64().unwrap();
    assert!((800..=900).contains(&valid), "{a}");
    let defaults: Vec<Value> = ns
        .routes("-4")
        .into_iter()
        .filter(|r| r["dst"] == "default")
        .collect();
    assert_eq!(defaults.len(), 1, "{defaults:?}");
    assert_eq!(defaults[0]["gateway"], "10.66.0.254");
}
