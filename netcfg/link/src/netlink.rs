//! The [`Netlink`] handle: request/ACK framing over a `NETLINK_ROUTE` socket, and one
//! method per operation.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REPLACE, NLM_F_REQUEST, NetlinkBuffer,
    NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage, AddressScope, CacheInfo};
use netlink_packet_route::link::{
    InfoBridge, InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

use crate::{Error, IfAddr, Link, Mac, Route, check_name};

/// `NLM_F_CAPPED`: the error message echoes only the request's header.
const NLM_F_CAPPED: u16 = 0x100;
/// `NLM_F_ACK_TLVS`: extended-ACK attributes follow.
const NLM_F_ACK_TLVS: u16 = 0x200;
/// `NLMSGERR_ATTR_MSG`: the extended ACK's text.
const NLMSGERR_ATTR_MSG: u16 = 1;
/// `sizeof(struct nlmsghdr)`.
const NLMSG_HDRLEN: usize = 16;
/// The largest datagram accepted from the kernel, in bytes.
const RECV_MAX_BYTES: usize = 1 << 20;

/// A `NETLINK_ROUTE` socket. It acts in the network namespace of the thread that
/// called [`Netlink::new`], whichever thread uses it later.
pub struct Netlink {
    socket: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl std::fmt::Debug for Netlink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Netlink").field("seq", &self.seq).finish()
    }
}

/// How a request's replies end.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// An ACK (after the reply, for a get).
    Ack,
    /// `NLMSG_DONE` (a dump).
    Done,
}

impl Netlink {
    /// Opens and binds a route netlink socket (close-on-exec), asking for extended
    /// ACKs so refusals carry the kernel's reason.
    pub fn new() -> Result<Netlink, Error> {
        let op = "open netlink socket";
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(|e| Error::os(op, e))?;
        socket.bind_auto().map_err(|e| Error::os(op, e))?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(|e| Error::os(op, e))?;
        // Best effort: kernels without them still ACK, just without the text.
        let _ = socket.set_ext_ack(true);
        let _ = socket.set_cap_ack(true);
        Ok(Netlink {
            socket,
            seq: 0,
            buf: vec![0; 32 * 1024],
        })
    }

    /// Sends one request and collects its replies until the ACK or `NLMSG_DONE`.
    fn request(
        &mut self,
        op: &str,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>, Error> {
        self.seq = self.seq.wrapping_add(1);
        let mut packet = NetlinkMessage::new(NetlinkHeader::default(), NetlinkPayload::from(msg));
        packet.header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        packet.header.sequence_number = self.seq;
        packet.finalize();
        let mut bytes = vec![0; packet.buffer_len()];
        packet.serialize(&mut bytes);
        loop {
            match self.socket.send(&bytes, 0) {
                Ok(n) if n == bytes.len() => break,
                Ok(n) => {
                    return Err(Error::Reply {
                        op: op.to_string(),
                        reason: format!("sent {n} of {} bytes", bytes.len()),
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::os(op, e)),
            }
        }
        let expect = if flags & NLM_F_DUMP == NLM_F_DUMP {
            Expect::Done
        } else {
            Expect::Ack
        };
        let mut replies = Vec::new();
        loop {
            let len = self.recv(op)?;
            let mut offset = 0;
            while offset < len {
                let rest = &self.buf[offset..len];
                let bad = |reason: String| Error::Reply {
                    op: op.to_string(),
                    reason,
                };
                let msg_len = NetlinkBuffer::new_checked(rest)
                    .map_err(|e| bad(e.to_string()))?
                    .length() as usize;
                let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&rest[..msg_len])
                    .map_err(|e| bad(e.to_string()))?;
                // Messages are 4-byte aligned within a datagram.
                offset = offset.saturating_add(msg_len.next_multiple_of(4));
                if msg.header.sequence_number != self.seq {
                    continue; // a late reply to an earlier request
                }
                let header_flags = msg.header.flags;
                match msg.payload {
                    NetlinkPayload::InnerMessage(m) => replies.push(m),
                    NetlinkPayload::Error(e) => match e.code {
                        None if expect == Expect::Ack => return Ok(replies),
                        None => {}
                        Some(code) => {
                            return Err(Error::Os {
                                op: op.to_string(),
                                detail: error_text(header_flags, &e.header),
                                source: io::Error::from_raw_os_error(code.get().saturating_abs()),
                            });
                        }
                    },
                    NetlinkPayload::Done(d) => {
                        if d.code != 0 {
                            return Err(Error::Os {
                                op: op.to_string(),
                                detail: tlv_text(&d.extended_ack),
                                source: io::Error::from_raw_os_error(d.code.saturating_abs()),
                            });
                        }
                        if expect == Expect::Done {
                            return Ok(replies);
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    /// Receives one whole datagram into `self.buf`, growing it as needed.
    fn recv(&mut self, op: &str) -> Result<usize, Error> {
        loop {
            let peeked = self
                .socket
                .recv(&mut &mut self.buf[..], libc::MSG_PEEK | libc::MSG_TRUNC);
            let want = match peeked {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::os(op, e)),
            };
            if want > RECV_MAX_BYTES {
                return Err(Error::Reply {
                    op: op.to_string(),
                    reason: format!("a {want}-byte datagram"),
                });
            }
            if want > self.buf.len() {
                self.buf.resize(want, 0);
            }
            match self.socket.recv(&mut &mut self.buf[..], 0) {
                Ok(n) => return Ok(n.min(self.buf.len())),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::os(op, e)),
            }
        }
    }

    /// A change to one link (`RTM_NEWLINK` without `NLM_F_CREATE`), found by name.
    fn set_link(
        &mut self,
        op: &str,
        name: &str,
        edit: impl FnOnce(&mut LinkMessage),
    ) -> Result<(), Error> {
        check_name(name)?;
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        edit(&mut msg);
        self.request(op, RouteNetlinkMessage::NewLink(msg), 0)?;
        Ok(())
    }

    /// The interface named `name` (`ENODEV` when there is none).
    pub fn link(&mut self, name: &str) -> Result<Link, Error> {
        check_name(name)?;
        let op = format!("look up interface {name:?}");
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        let replies = self.request(&op, RouteNetlinkMessage::GetLink(msg), 0)?;
        replies
            .into_iter()
            .find_map(|r| match r {
                RouteNetlinkMessage::NewLink(m) => Some(link_from(m)),
                _ => None,
            })
            .ok_or_else(|| Error::Reply {
                op,
                reason: "no link in the reply".to_string(),
            })
    }

    /// The index of the interface named `name`.
    pub fn link_index(&mut self, name: &str) -> Result<u32, Error> {
        Ok(self.link(name)?.index)
    }

    /// Every interface, by index.
    pub fn links(&mut self) -> Result<Vec<Link>, Error> {
        let replies = self.request(
            "list interfaces",
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            NLM_F_DUMP,
        )?;
        let mut links: Vec<Link> = replies
            .into_iter()
            .filter_map(|r| match r {
                RouteNetlinkMessage::NewLink(m) => Some(link_from(m)),
                _ => None,
            })
            .collect();
        links.sort_by_key(|l| l.index);
        Ok(links)
    }

    /// Creates a bridge with the MAC `mac` (a Linux bridge otherwise takes its lowest
    /// port's, which changes as ports come and go), STP off and no forwarding delay.
    pub fn create_bridge(&mut self, name: &str, mac: Mac) -> Result<(), Error> {
        check_name(name)?;
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        msg.attributes.push(LinkAttribute::Address(mac.to_vec()));
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Bridge),
            LinkInfo::Data(InfoData::Bridge(vec![InfoBridge::ForwardDelay(0)])),
        ]));
        self.request(
            &format!("create bridge {name:?}"),
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        )?;
        Ok(())
    }

    /// Creates a veth pair `a` ↔ `b`.
    pub fn create_veth(&mut self, a: &str, b: &str) -> Result<(), Error> {
        check_name(a)?;
        check_name(b)?;
        let mut peer = LinkMessage::default();
        peer.attributes.push(LinkAttribute::IfName(b.to_string()));
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(a.to_string()));
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
        ]));
        self.request(
            &format!("create veth pair {a:?} and {b:?}"),
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        )?;
        Ok(())
    }

    /// Deletes an interface (a veth's peer goes with it).
    pub fn delete_link(&mut self, name: &str) -> Result<(), Error> {
        check_name(name)?;
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        self.request(
            &format!("delete interface {name:?}"),
            RouteNetlinkMessage::DelLink(msg),
            0,
        )?;
        Ok(())
    }

    /// Enslaves `name` to the bridge `bridge`.
    pub fn set_master(&mut self, name: &str, bridge: &str) -> Result<(), Error> {
        let master = self.link_index(bridge)?;
        self.set_link(&format!("enslave {name:?} to {bridge:?}"), name, |m| {
            m.attributes.push(LinkAttribute::Controller(master));
        })
    }

    /// Releases `name` from its bridge.
    pub fn no_master(&mut self, name: &str) -> Result<(), Error> {
        self.set_link(&format!("release {name:?} from its bridge"), name, |m| {
            m.attributes.push(LinkAttribute::Controller(0));
        })
    }

    /// Sets `name` administratively up.
    pub fn set_up(&mut self, name: &str) -> Result<(), Error> {
        self.set_link(&format!("set {name:?} up"), name, |m| {
            m.header.flags = LinkFlags::Up;
            m.header.change_mask = LinkFlags::Up;
        })
    }

    /// Sets `name` administratively down.
    pub fn set_down(&mut self, name: &str) -> Result<(), Error> {
        self.set_link(&format!("set {name:?} down"), name, |m| {
            m.header.flags = LinkFlags::empty();
            m.header.change_mask = LinkFlags::Up;
        })
    }

    /// Sets the MTU of `name`, in bytes.
    pub fn set_mtu(&mut self, name: &str, mtu: u32) -> Result<(), Error> {
        self.set_link(&format!("set the MTU of {name:?} to {mtu}"), name, |m| {
            m.attributes.push(LinkAttribute::Mtu(mtu));
        })
    }

    /// Sets the MAC of `name`.
    pub fn set_mac(&mut self, name: &str, mac: Mac) -> Result<(), Error> {
        let op = format!("set the MAC of {name:?} to {}", mac_string(mac));
        self.set_link(&op, name, |m| {
            m.attributes.push(LinkAttribute::Address(mac.to_vec()));
        })
    }

    fn addr_message(
        &mut self,
        name: &str,
        addr: IpAddr,
        prefix: u8,
    ) -> Result<AddressMessage, Error> {
        let index = self.link_index(name)?;
        let mut msg = AddressMessage::default();
        msg.header.index = index;
        msg.header.prefix_len = prefix;
        msg.header.scope = AddressScope::Universe;
        msg.header.family = family(addr);
        msg.attributes.push(AddressAttribute::Local(addr));
        msg.attributes.push(AddressAttribute::Address(addr));
        Ok(msg)
    }

    /// Adds `addr/prefix` to `name` (IPv4 with its broadcast address, as `ip addr add
    /// … brd +` does). `EEXIST` when it is there already.
    pub fn add_addr(&mut self, name: &str, addr: IpAddr, prefix: u8) -> Result<(), Error> {
        let op = format!("add {addr}/{prefix} to {name:?}");
        let msg = self.new_addr_message(&op, name, addr, prefix, None)?;
        self.request(
            &op,
            RouteNetlinkMessage::NewAddress(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        )?;
        Ok(())
    }

    /// Adds `addr/prefix` to `name`, or updates it when present, valid for
    /// `lifetime_secs` (then the kernel removes it; `None`: forever) — a DHCP lease.
    pub fn replace_addr(
        &mut self,
        name: &str,
        addr: IpAddr,
        prefix: u8,
        lifetime_secs: Option<u32>,
    ) -> Result<(), Error> {
        let op = format!("set {addr}/{prefix} on {name:?}");
        let msg = self.new_addr_message(&op, name, addr, prefix, lifetime_secs)?;
        self.request(
            &op,
            RouteNetlinkMessage::NewAddress(msg),
            NLM_F_CREATE | NLM_F_REPLACE,
        )?;
        Ok(())
    }

    fn new_addr_message(
        &mut self,
        op: &str,
        name: &str,
        addr: IpAddr,
        prefix: u8,
        lifetime_secs: Option<u32>,
    ) -> Result<AddressMessage, Error> {
        check_prefix(op, addr, prefix)?;
        let mut msg = self.addr_message(name, addr, prefix)?;
        if let IpAddr::V4(v4) = addr {
            if prefix < 31 {
                let host_mask = u32::MAX.checked_shr(u32::from(prefix)).unwrap_or(0);
                let brd = Ipv4Addr::from(u32::from(v4) | host_mask);
                msg.attributes.push(AddressAttribute::Broadcast(brd));
            }
        }
        if let Some(secs) = lifetime_secs {
            let mut info = CacheInfo::default();
            info.ifa_preferred = secs;
            info.ifa_valid = secs;
            msg.attributes.push(AddressAttribute::CacheInfo(info));
        }
        Ok(msg)
    }

    /// Removes `addr/prefix` from `name`.
    pub fn del_addr(&mut self, name: &str, addr: IpAddr, prefix: u8) -> Result<(), Error> {
        let op = format!("remove {addr}/{prefix} from {name:?}");
        check_prefix(&op, addr, prefix)?;
        let msg = self.addr_message(name, addr, prefix)?;
        self.request(&op, RouteNetlinkMessage::DelAddress(msg), 0)?;
        Ok(())
    }

    /// The addresses on `name`, IPv4 and IPv6 (link-local ones included).
    pub fn addrs(&mut self, name: &str) -> Result<Vec<IfAddr>, Error> {
        let index = self.link_index(name)?;
        let replies = self.request(
            &format!("list the addresses of {name:?}"),
            RouteNetlinkMessage::GetAddress(AddressMessage::default()),
            NLM_F_DUMP,
        )?;
        let mut out = Vec::new();
        for r in replies {
            let RouteNetlinkMessage::NewAddress(m) = r else {
                continue;
            };
            if m.header.index != index {
                continue;
            }
            // IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer's on a
            // point-to-point link, and the same as IFA_LOCAL (or alone, for IPv6) else.
            let local = m.attributes.iter().find_map(|a| match a {
                AddressAttribute::Local(ip) => Some(*ip),
                _ => None,
            });
            let address = m.attributes.iter().find_map(|a| match a {
                AddressAttribute::Address(ip) => Some(*ip),
                _ => None,
            });
            if let Some(addr) = local.or(address) {
                out.push(IfAddr {
                    addr,
                    prefix: m.header.prefix_len,
                });
            }
        }
        Ok(out)
    }

    fn route_message(
        &mut self,
        op: &str,
        dst: IpAddr,
        prefix: u8,
        gateway: Option<IpAddr>,
        dev: &str,
    ) -> Result<RouteMessage, Error> {
        check_prefix(op, dst, prefix)?;
        if gateway.is_some_and(|g| family(g) != family(dst)) {
            return Err(Error::os(op, io::Error::from_raw_os_error(libc::EINVAL)));
        }
        let oif = self.link_index(dev)?;
        let mut msg = RouteMessage::default();
        msg.header.address_family = family(dst);
        msg.header.destination_prefix_length = prefix;
        msg.header.table = RouteHeader::RT_TABLE_MAIN;
        msg.header.protocol = RouteProtocol::Static;
        msg.header.scope = if gateway.is_some() {
            RouteScope::Universe
        } else {
            RouteScope::Link
        };
        msg.header.kind = RouteType::Unicast;
        if prefix > 0 {
            msg.attributes
                .push(RouteAttribute::Destination(route_addr(dst)));
        }
        if let Some(g) = gateway {
            msg.attributes.push(RouteAttribute::Gateway(route_addr(g)));
        }
        msg.attributes.push(RouteAttribute::Oif(oif));
        Ok(msg)
    }

    /// Adds a route to `dst/prefix` through `dev`, via `gateway` when given (prefix 0:
    /// the default route). `EEXIST` when the route is there already.
    pub fn add_route(
        &mut self,
        dst: IpAddr,
        prefix: u8,
        gateway: Option<IpAddr>,
        dev: &str,
    ) -> Result<(), Error> {
        let op = route_op("add", dst, prefix, gateway, dev);
        let msg = self.route_message(&op, dst, prefix, gateway, dev)?;
        self.request(
            &op,
            RouteNetlinkMessage::NewRoute(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        )?;
        Ok(())
    }

    /// Adds the route, or replaces the one to the same destination (a new gateway).
    pub fn replace_route(
        &mut self,
        dst: IpAddr,
        prefix: u8,
        gateway: Option<IpAddr>,
        dev: &str,
    ) -> Result<(), Error> {
        let op = route_op("set", dst, prefix, gateway, dev);
        let msg = self.route_message(&op, dst, prefix, gateway, dev)?;
        self.request(
            &op,
            RouteNetlinkMessage::NewRoute(msg),
            NLM_F_CREATE | NLM_F_REPLACE,
        )?;
        Ok(())
    }

    /// Removes the route `add_route` with the same arguments added.
    pub fn del_route(
        &mut self,
        dst: IpAddr,
        prefix: u8,
        gateway: Option<IpAddr>,
        dev: &str,
    ) -> Result<(), Error> {
        let op = route_op("remove", dst, prefix, gateway, dev);
        let msg = self.route_message(&op, dst, prefix, gateway, dev)?;
        self.request(&op, RouteNetlinkMessage::DelRoute(msg), 0)?;
        Ok(())
    }

    /// The routes of the main table, IPv4 and IPv6.
    pub fn routes(&mut self) -> Result<Vec<Route>, Error> {
        let replies = self.request(
            "list routes",
            RouteNetlinkMessage::GetRoute(RouteMessage::default()),
            NLM_F_DUMP,
        )?;
        let mut out = Vec::new();
        for r in replies {
            let RouteNetlinkMessage::NewRoute(m) = r else {
                continue;
            };
            let table = m
                .attributes
                .iter()
                .find_map(|a| match a {
                    RouteAttribute::Table(t) => Some(*t),
                    _ => None,
                })
                .unwrap_or(u32::from(m.header.table));
            if table != u32::from(RouteHeader::RT_TABLE_MAIN) {
                continue;
            }
            let unspecified = match m.header.address_family {
                AddressFamily::Inet => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                AddressFamily::Inet6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
                _ => continue,
            };
            let mut route = Route {
                dst: unspecified,
                prefix: m.header.destination_prefix_length,
                gateway: None,
                oif: None,
            };
            for a in &m.attributes {
                match a {
                    RouteAttribute::Destination(d) => route.dst = ip_of(d).unwrap_or(unspecified),
                    RouteAttribute::Gateway(g) => route.gateway = ip_of(g),
                    RouteAttribute::Oif(i) => route.oif = Some(*i),
                    _ => {}
                }
            }
            out.push(route);
        }
        Ok(out)
    }
}

fn link_from(m: LinkMessage) -> Link {
    let mut link = Link {
        name: String::new(),
        index: m.header.index,
        kind: None,
        mac: None,
        mtu: 0,
        flags: m.header.flags.bits(),
        master: None,
        physical: false,
    };
    for a in m.attributes {
        match a {
            LinkAttribute::IfName(n) => link.name = n,
            LinkAttribute::Address(a) => link.mac = Mac::try_from(a.as_slice()).ok(),
            LinkAttribute::Mtu(mtu) => link.mtu = mtu,
            LinkAttribute::Controller(i) if i != 0 => link.master = Some(i),
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    if let LinkInfo::Kind(k) = i {
                        link.kind = Some(k.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    link.physical = !link.name.is_empty()
        && Path::new("/sys/class/net")
            .join(&link.name)
            .join("device")
            .exists();
    link
}

fn family(a: IpAddr) -> AddressFamily {
    match a {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

fn route_addr(a: IpAddr) -> RouteAddress {
    match a {
        IpAddr::V4(v4) => RouteAddress::Inet(v4),
        IpAddr::V6(v6) => RouteAddress::Inet6(v6),
    }
}

fn ip_of(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

fn check_prefix(op: &str, addr: IpAddr, prefix: u8) -> Result<(), Error> {
    let max = if addr.is_ipv4() { 32 } else { 128 };
    if prefix > max {
        return Err(Error::os(op, io::Error::from_raw_os_error(libc::EINVAL)));
    }
    Ok(())
}

fn route_op(verb: &str, dst: IpAddr, prefix: u8, gateway: Option<IpAddr>, dev: &str) -> String {
    let via = gateway.map(|g| format!(" via {g}")).unwrap_or_default();
    if prefix == 0 {
        format!("{verb} the default route{via} dev {dev:?}")
    } else {
        format!("{verb} the route to {dst}/{prefix}{via} dev {dev:?}")
    }
}

/// `02:00:00:00:00:01`.
pub(crate) fn mac_string(mac: Mac) -> String {
    let parts: Vec<String> = mac.iter().map(|b| format!("{b:02x}")).collect();
    parts.join(":")
}

/// The extended-ACK text of an `NLMSG_ERROR` message: `flags` are its header's flags,
/// `payload` what follows the error code (the request's header, its body unless
/// `NLM_F_CAPPED`, then attributes when `NLM_F_ACK_TLVS`). Bounds are checked; anything
/// malformed yields `None`.
fn error_text(flags: u16, payload: &[u8]) -> Option<String> {
    if flags & NLM_F_ACK_TLVS == 0 {
        return None;
    }
    let echoed = if flags & NLM_F_CAPPED != 0 {
        NLMSG_HDRLEN
    } else {
        let len = u32::from_ne_bytes(payload.get(..4)?.try_into().ok()?);
        usize::try_from(len).ok()?.checked_next_multiple_of(4)?
    };
    tlv_text(payload.get(echoed..)?)
}

/// The `NLMSGERR_ATTR_MSG` string among netlink attributes, at most 512 bytes of it.
fn tlv_text(mut attrs: &[u8]) -> Option<String> {
    while attrs.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([attrs[0], attrs[1]]));
        let kind = u16::from_ne_bytes([attrs[2], attrs[3]]) & 0x3fff;
        if len < 4 || len > attrs.len() {
            return None;
        }
        if kind == NLMSGERR_ATTR_MSG {
            let value = &attrs[4..len];
            let text = value.split(|&b| b == 0).next().unwrap_or_default();
            let text = &text[..text.len().min(512)];
            return Some(String::from_utf8_lossy(text).into_owned()).filter(|t| !t.is_empty());
        }
        attrs = attrs.get(len.next_multiple_of(4)..).unwrap_or_default();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An attribute: length, type, value, padding.
    fn nla(kind: u16, value: &[u8]) -> Vec<u8> {
        let len = u16::try_from(4 + value.len()).unwrap();
        let mut v = len.to_ne_bytes().to_vec();
        v.extend_from_slice(&kind.to_ne_bytes());
        v.extend_from_slice(value);
        while v.len() % 4 != 0 {
            v.push(0);
        }
        v
    }

    fn echoed_header(len: u32) -> Vec<u8> {
        let mut h = len.to_ne_bytes().to_vec();
        h.extend_from_slice(&[0; 12]);
        h
    }

    #[test]
    fn extended_ack_text() {
        let mut capped = echoed_header(40);
        capped.extend(nla(4, &7u32.to_ne_bytes())); // NLMSGERR_ATTR_OFFS first
        capped.extend(nla(1, b"Unknown device type\0"));
        assert_eq!(
            error_text(NLM_F_CAPPED | NLM_F_ACK_TLVS, &capped).as_deref(),
            Some("Unknown device type")
        );
        // Without NLM_F_ACK_TLVS there is no text, whatever follows.
        assert_eq!(error_text(NLM_F_CAPPED, &capped), None);

        // Not capped: the whole request (20 bytes, padded to 20) is echoed first.
        let mut full = echoed_header(20);
        full.extend_from_slice(&[0xaa; 4]);
        full.extend(nla(1, b"Nexthop has invalid gateway\0"));
        assert_eq!(
            error_text(NLM_F_ACK_TLVS, &full).as_deref(),
            Some("Nexthop has invalid gateway")
        );
    }

    #[test]
    fn extended_ack_malformed() {
        assert_eq!(error_text(NLM_F_ACK_TLVS, &[]), None);
        assert_eq!(error_text(NLM_F_ACK_TLVS, &[1, 0]), None);
        assert_eq!(error_text(NLM_F_ACK_TLVS, &echoed_header(u32::MAX)), None);
        assert_eq!(error_text(NLM_F_ACK_TLVS, &echoed_header(1000)), None);
        let mut h = echoed_header(16);
        h.extend_from_slice(&[200, 0, 1, 0, b'x']); // attribute longer than the buffer
        assert_eq!(error_text(NLM_F_CAPPED | NLM_F_ACK_TLVS, &h), None);
        let mut h = echoed_header(16);
        h.extend_from_slice(&[2, 0, 1, 0]); // attribute shorter than its header
        assert_eq!(error_text(NLM_F_CAPPED | NLM_F_ACK_TLVS, &h), None);
        let mut h = echoed_header(16);
        h.extend(nla(1, b"\0"));
        assert_eq!(error_text(NLM_F_CAPPED | NLM_F_ACK_TLVS, &h), None);
        for len in 0..64u8 {
            let junk: Vec<u8> = (0..len).map(|i| i.wrapping_mul(37)).collect();
            let _ = error_text(NLM_F_ACK_TLVS, &junk);
            let _ = error_text(NLM_F_CAPPED | NLM_F_ACK_TLVS, &junk);
            let _ = tlv_text(&junk);
        }
    }

    #[test]
    fn names_and_macs() {
        assert_eq!(mac_string([0x02, 0, 0xab, 0, 0, 0xff]), "02:00:ab:00:00:ff");
        assert!(check_name("service").is_ok());
        assert!(check_name("abcdefghijklmno").is_ok());
        for bad in ["", "abcdefghijklmnop", "a/b", "a:b", "a b", ".", "..", "é"] {
            assert!(
                matches!(check_name(bad), Err(Error::InvalidName(_))),
                "{bad:?}"
            );
        }
    }
}
