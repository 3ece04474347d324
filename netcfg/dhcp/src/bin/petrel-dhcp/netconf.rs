//! Applying a lease to the interface: address (with the lease as its lifetime) and
//! default route, over rtnetlink.
//!
//! Behind a small trait so that `petrel-netcfg` (netcfg/link) can take over once its API
//! exists; until then [`Rtnetlink`] sends the three requests needed itself.

use std::io;
use std::net::{IpAddr, Ipv4Addr};

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_REPLACE, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage,
    NetlinkPayload,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage, CacheInfo};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{Socket, protocols::NETLINK_ROUTE};

/// An IPv4 address on an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IfAddr {
    /// The address.
    pub address: Ipv4Addr,
    /// Its prefix length.
    pub prefix_len: u8,
}

/// What `petrel-dhcp` needs from the network configuration layer.
pub trait NetConfig {
    /// Adds or replaces `addr` on `ifindex`, valid for `lifetime_secs` (`u32::MAX`: forever).
    fn replace_address(&mut self, ifindex: u32, addr: IfAddr, lifetime_secs: u32)
    -> io::Result<()>;
    /// Removes `addr` from `ifindex` (routes through it go with it). Absent is fine.
    fn remove_address(&mut self, ifindex: u32, addr: IfAddr) -> io::Result<()>;
    /// Adds or replaces the default route through `gateway` on `ifindex`.
    fn replace_default_route(&mut self, ifindex: u32, gateway: Ipv4Addr) -> io::Result<()>;
}

/// [`NetConfig`] over a synchronous rtnetlink socket.
pub struct Rtnetlink {
    socket: Socket,
    sequence: u32,
}

impl Rtnetlink {
    /// Opens the socket.
    pub fn open() -> io::Result<Self> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        Ok(Self {
            socket,
            sequence: 0,
        })
    }

    /// Sends one request and waits for its acknowledgement.
    fn request(&mut self, msg: RouteNetlinkMessage, flags: u16) -> io::Result<()> {
        self.sequence = self.sequence.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        header.sequence_number = self.sequence;
        let mut nl = NetlinkMessage::new(header, NetlinkPayload::from(msg));
        nl.finalize();
        let mut buf = vec![0; nl.buffer_len()];
        nl.serialize(&mut buf);
        self.socket.send(&buf, 0)?;
        let mut rx = vec![0u8; 16 * 1024];
        loop {
            let n = self.socket.recv(&mut &mut rx[..], 0)?;
            let mut at = 0;
            while at < n {
                let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&rx[at..n])
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                let len = usize::try_from(reply.header.length).unwrap_or(0);
                if len == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "zero-length netlink message",
                    ));
                }
                at += len;
                if reply.header.sequence_number != self.sequence {
                    continue;
                }
                if let NetlinkPayload::Error(e) = reply.payload {
                    return match e.code {
                        None => Ok(()),
                        Some(_) => Err(e.to_io()),
                    };
                }
            }
        }
    }

    fn address_message(ifindex: u32, addr: IfAddr) -> AddressMessage {
        let mut m = AddressMessage::default();
        m.header.family = AddressFamily::Inet;
        m.header.prefix_len = addr.prefix_len;
        m.header.index = ifindex;
        m.attributes
            .push(AddressAttribute::Local(IpAddr::V4(addr.address)));
        m.attributes
            .push(AddressAttribute::Address(IpAddr::V4(addr.address)));
        m
    }
}

impl NetConfig for Rtnetlink {
    fn replace_address(
        &mut self,
        ifindex: u32,
        addr: IfAddr,
        lifetime_secs: u32,
    ) -> io::Result<()> {
        let mut m = Self::address_message(ifindex, addr);
        if addr.prefix_len < 31 {
            let host_bits = u32::MAX
                .checked_shr(u32::from(addr.prefix_len))
                .unwrap_or(0);
            let broadcast = Ipv4Addr::from(u32::from(addr.address) | host_bits);
            m.attributes.push(AddressAttribute::Broadcast(broadcast));
        }
        let mut lifetime = CacheInfo::default();
        lifetime.ifa_preferred = lifetime_secs;
        lifetime.ifa_valid = lifetime_secs;
        m.attributes.push(AddressAttribute::CacheInfo(lifetime));
        self.request(
            RouteNetlinkMessage::NewAddress(m),
            NLM_F_CREATE | NLM_F_REPLACE,
        )
    }

    fn remove_address(&mut self, ifindex: u32, addr: IfAddr) -> io::Result<()> {
        let m = Self::address_message(ifindex, addr);
        match self.request(RouteNetlinkMessage::DelAddress(m), 0) {
            Err(e) if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) => Ok(()),
            other => other,
        }
    }

    fn replace_default_route(&mut self, ifindex: u32, gateway: Ipv4Addr) -> io::Result<()> {
        let mut m = RouteMessage::default();
        m.header.address_family = AddressFamily::Inet;
        m.header.table = RouteHeader::RT_TABLE_MAIN;
        m.header.protocol = RouteProtocol::Dhcp;
        m.header.scope = RouteScope::Universe;
        m.header.kind = RouteType::Unicast;
        m.attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet(gateway)));
        m.attributes.push(RouteAttribute::Oif(ifindex));
        self.request(
            RouteNetlinkMessage::NewRoute(m),
            NLM_F_CREATE | NLM_F_REPLACE,
        )
    }
}
