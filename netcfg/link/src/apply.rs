//! The device config's `[network]` made real.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use petrel_config::{Bridge, Ipv4Mode, Ipv6Mode, Network, Uplink};

use crate::{Error, Link, Mac, Netlink};

/// How [`apply`] gets what the config does not say.
pub struct ApplyOptions<'a> {
    /// The MAC of a bridge by name: stable across boots (PID 1 derives it from a
    /// per-device secret), locally administered, unicast.
    pub mac_for: &'a dyn Fn(&str) -> Mac,
    /// Whether a link is a physical NIC, a candidate for `uplink = "auto"`. The default
    /// is [`Link::physical`] (sysfs); tests stand a veth in for a NIC.
    pub is_physical: &'a dyn Fn(&Link) -> bool,
    /// How long to wait for carrier on the auto-uplink candidates (which start down).
    pub carrier_wait: Duration,
}

impl<'a> ApplyOptions<'a> {
    /// Options with sysfs for physical NICs and a 3 s carrier wait.
    pub fn new(mac_for: &'a dyn Fn(&str) -> Mac) -> ApplyOptions<'a> {
        ApplyOptions {
            mac_for,
            is_physical: &sysfs_physical,
            carrier_wait: Duration::from_secs(3),
        }
    }
}

fn sysfs_physical(link: &Link) -> bool {
    link.physical
}

/// What [`apply`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// Each configured bridge, in config order.
    pub bridges: Vec<AppliedBridge>,
    /// Things that did not go as configured but leave the box reachable (a named
    /// uplink that does not exist, no NIC for `auto`, an MTU the NIC refused).
    pub warnings: Vec<String>,
}

/// One bridge as [`apply`] left it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedBridge {
    /// The bridge's name.
    pub name: String,
    /// Its interface index.
    pub index: u32,
    /// Its MAC.
    pub mac: Mac,
    /// The NIC enslaved to it, if any.
    pub uplink: Option<String>,
    /// `ipv4 = "dhcp"`: PID 1 starts `petrel-dhcp` on it.
    pub dhcp: bool,
}

impl Applied {
    /// The bridges that need a DHCP client.
    pub fn dhcp_bridges(&self) -> impl Iterator<Item = &str> {
        self.bridges
            .iter()
            .filter(|b| b.dhcp)
            .map(|b| b.name.as_str())
    }
}

/// Configures the network as `net` says: brings `lo` up; creates each bridge (or
/// reuses one of that name) with the MAC `opts.mac_for` gives; picks its uplink (a
/// named NIC; `auto`: the first physical NIC by index with carrier, else the first,
/// never `lo` or a NIC another bridge names) and enslaves it; sets MTUs; applies the
/// IPv6 mode; brings everything up; adds static addresses and the default route.
/// Addresses and routes already present are fine, so applying twice is harmless.
/// Returns which bridges need DHCP.
pub fn apply(net: &Network, nl: &mut Netlink, opts: &ApplyOptions<'_>) -> Result<Applied, Error> {
    let mut applied = Applied {
        bridges: Vec::new(),
        warnings: Vec::new(),
    };
    let links = nl.links()?;
    if let Some(lo) = links.iter().find(|l| l.is_loopback()) {
        nl.set_up(&lo.name)?;
    }
    let named: Vec<&str> = net
        .bridges
        .iter()
        .filter_map(|b| match &b.uplink {
            Uplink::Nic(n) => Some(n.as_str()),
            _ => None,
        })
        .collect();
    for bridge in &net.bridges {
        let mac = (opts.mac_for)(&bridge.name);
        let index = ensure_bridge(nl, &bridge.name, mac)?;
        set_ipv6_mode(&bridge.name, bridge.ipv6)?;
        let uplink = match &bridge.uplink {
            Uplink::None => None,
            Uplink::Nic(nic) => {
                if links.iter().any(|l| l.name == *nic) {
                    Some(nic.clone())
                } else {
                    applied.warnings.push(format!(
                        "bridge {:?}: uplink {nic:?} does not exist",
                        bridge.name
                    ));
                    None
                }
            }
            Uplink::Auto => {
                let candidates: Vec<&Link> = links
                    .iter()
                    .filter(|l| {
                        !l.is_loopback()
                            && !named.contains(&l.name.as_str())
                            && !net.bridges.iter().any(|b| b.name == l.name)
                            && (opts.is_physical)(l)
                    })
                    .collect();
                let pick = pick_auto_uplink(nl, &candidates, opts.carrier_wait)?;
                if pick.is_none() {
                    applied.warnings.push(format!(
                        "bridge {:?}: no physical NIC for uplink \"auto\"",
                        bridge.name
                    ));
                }
                pick
            }
        };
        if let Some(nic) = &uplink {
            attach_uplink(nl, bridge, nic, &mut applied.warnings)?;
        }
        nl.set_mtu(&bridge.name, u32::from(bridge.mtu))?;
        nl.set_up(&bridge.name)?;
        add_static_addresses(nl, bridge)?;
        applied.bridges.push(AppliedBridge {
            name: bridge.name.clone(),
            index,
            mac,
            uplink,
            dhcp: bridge.ipv4 == Ipv4Mode::Dhcp,
        });
    }
    // The default route last: its gateway must be reachable through an up bridge.
    for bridge in &net.bridges {
        if let Ipv4Mode::Static {
            gateway: Some(gw), ..
        } = bridge.ipv4
        {
            let any = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
            tolerate_exists(nl.add_route(any, 0, Some(IpAddr::V4(gw)), &bridge.name))?;
        }
    }
    Ok(applied)
}

/// Creates the bridge, or takes over an existing bridge of that name (setting its MAC).
fn ensure_bridge(nl: &mut Netlink, name: &str, mac: Mac) -> Result<u32, Error> {
    match nl.create_bridge(name, mac) {
        Ok(()) => nl.link_index(name),
        Err(e) if e.is_exists() => {
            let link = nl.link(name)?;
            if link.kind.as_deref() != Some("bridge") {
                return Err(Error::Os {
                    op: format!("create bridge {name:?}"),
                    detail: Some(format!(
                        "an interface of that name exists and is a {}",
                        link.kind.as_deref().unwrap_or("NIC")
                    )),
                    source: std::io::Error::from_raw_os_error(libc::EEXIST),
                });
            }
            if link.mac != Some(mac) {
                nl.set_mac(name, mac)?;
            }
            Ok(link.index)
        }
        Err(e) => Err(e),
    }
}

/// Brings the candidates up, waits up to `wait` for one with carrier, and picks it (or
/// else the first); the others go back down if they were down, so that no NIC outside
/// a bridge autoconfigures IPv6.
fn pick_auto_uplink(
    nl: &mut Netlink,
    candidates: &[&Link],
    wait: Duration,
) -> Result<Option<String>, Error> {
    let Some(first) = candidates.first() else {
        return Ok(None);
    };
    for c in candidates {
        nl.set_up(&c.name)?;
    }
    let deadline = Instant::now() + wait;
    let with_carrier = loop {
        let now = nl.links()?;
        let found = candidates
            .iter()
            .find(|c| now.iter().any(|l| l.index == c.index && l.has_carrier()));
        if let Some(c) = found {
            break Some(c.name.clone());
        }
        if Instant::now() >= deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let pick = with_carrier.unwrap_or_else(|| first.name.clone());
    for c in candidates {
        if c.name != pick && !c.is_up() {
            nl.set_down(&c.name)?;
        }
    }
    Ok(Some(pick))
}

/// Sets the uplink's MTU (a warning if the NIC refuses), enslaves it and brings it up.
fn attach_uplink(
    nl: &mut Netlink,
    bridge: &Bridge,
    nic: &str,
    warnings: &mut Vec<String>,
) -> Result<(), Error> {
    if let Err(e) = nl.set_mtu(nic, u32::from(bridge.mtu)) {
        let source = std::error::Error::source(&e)
            .map(|s| format!(": {s}"))
            .unwrap_or_default();
        warnings.push(format!("{e}{source}"));
    }
    nl.set_master(nic, &bridge.name)?;
    nl.set_up(nic)
}

fn add_static_addresses(nl: &mut Netlink, bridge: &Bridge) -> Result<(), Error> {
    if let Ipv4Mode::Static { addr, prefix, .. } = bridge.ipv4 {
        tolerate_exists(nl.add_addr(&bridge.name, IpAddr::V4(addr), prefix))?;
    }
    if let Ipv6Mode::Static { addr, prefix } = bridge.ipv6 {
        tolerate_exists(nl.add_addr(&bridge.name, IpAddr::V6(addr), prefix))?;
    }
    Ok(())
}

fn tolerate_exists(r: Result<(), Error>) -> Result<(), Error> {
    match r {
        Err(e) if e.is_exists() => Ok(()),
        other => other,
    }
}

/// `none`: IPv6 off on the bridge. `auto`: on, with SLAAC. A static address: on,
/// without SLAAC addresses (router advertisements still give the default route).
/// A kernel without IPv6 is fine for `none` only.
fn set_ipv6_mode(bridge: &str, mode: Ipv6Mode) -> Result<(), Error> {
    let settings: &[(&str, &str)] = match mode {
        Ipv6Mode::None => &[("disable_ipv6", "1")],
        Ipv6Mode::Auto => &[("disable_ipv6", "0"), ("autoconf", "1")],
        Ipv6Mode::Static { .. } => &[("disable_ipv6", "0"), ("autoconf", "0")],
    };
    for (key, value) in settings {
        let path = format!("/proc/sys/net/ipv6/conf/{bridge}/{key}");
        match std::fs::write(&path, value) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && mode == Ipv6Mode::None => {}
            Err(e) => {
                return Err(Error::os(format!("write {value} to {path}"), e));
            }
        }
    }
    Ok(())
}
