//! Network configuration for the appliance: bridges, taps, enslaving, addresses, routes,
//! MTU and link state, through synchronous rtnetlink (no async runtime) and
//! `/dev/net/tun`.
//!
//! Layers:
//! - [`Netlink`]: one handle (one `NETLINK_ROUTE` socket, in the network namespace of
//!   the thread that opened it), one method per operation. Every request asks for an
//!   ACK; a kernel refusal (`NLMSG_ERROR`) becomes [`Error::Os`] carrying the
//!   [`std::io::Error`] and the kernel's extended-ACK text when it gave one, so
//!   `EEXIST` is told apart with [`Error::is_exists`].
//! - [`create_tap`]: a tap through `/dev/net/tun` + `TUNSETIFF` (the kernel refuses tap
//!   creation over rtnetlink). It is not persistent: it vanishes when its fd closes.
//! - [`apply`]: the device config's `[network]` made real — bridges with stable MACs,
//!   uplinks picked and enslaved, MTUs, links up, static addresses, the default route —
//!   returning which bridges need DHCP.
//!
//! Interface names are checked before anything is sent (1 to 15 bytes, no '/', ':',
//! whitespace or control characters).
//!
//! ```no_run
//! use petrel_netcfg::{Netlink, create_tap};
//!
//! let mut nl = Netlink::new()?;
//! nl.create_bridge("service", [0x02, 0, 0, 0, 0, 1])?;
//! let tap = create_tap("tap0")?; // the fd keeps the tap alive
//! nl.set_master("tap0", "service")?;
//! nl.set_up("tap0")?;
//! nl.set_up("service")?;
//! # drop(tap);
//! # Ok::<(), petrel_netcfg::Error>(())
//! ```

mod apply;
mod netlink;
mod tap;

use std::io;
use std::net::IpAddr;

pub use apply::{Applied, AppliedBridge, ApplyOptions, apply};
pub use netlink::Netlink;
pub use tap::create_tap;

/// A MAC address.
pub type Mac = [u8; 6];

/// Linux's limit on an interface name (`IFNAMSIZ` - 1), in bytes.
pub const IFNAME_MAX_BYTES: usize = 15;

/// `IFF_UP`: administratively up.
pub const IFF_UP: u32 = 0x1;
/// `IFF_LOOPBACK`.
pub const IFF_LOOPBACK: u32 = 0x8;
/// `IFF_RUNNING`: operationally up.
pub const IFF_RUNNING: u32 = 0x40;
/// `IFF_LOWER_UP`: the driver signals carrier.
pub const IFF_LOWER_UP: u32 = 0x1_0000;

/// What went wrong, with the operation that failed. `Display` names the operation (and
/// the kernel's own text when it gave one); the cause is the `source`: print the chain.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A system call failed or the kernel refused a request (`NLMSG_ERROR`).
    #[error("{op}{}", detail.as_ref().map(|d| format!(" (kernel says: {d})")).unwrap_or_default())]
    Os {
        /// The operation, e.g. `create bridge "service"`.
        op: String,
        /// The kernel's extended-ACK message, when it sent one.
        detail: Option<String>,
        /// The error code.
        #[source]
        source: io::Error,
    },
    /// The kernel's reply did not parse or was not what the request asks for.
    #[error("{op}: malformed netlink reply: {reason}")]
    Reply {
        /// The operation.
        op: String,
        /// What was wrong with the reply.
        reason: String,
    },
    /// An interface name Linux would refuse.
    #[error(
        "invalid interface name {0:?} (1 to {IFNAME_MAX_BYTES} bytes, no '/', ':', whitespace or control characters)"
    )]
    InvalidName(String),
}

impl Error {
    /// The OS error code, for [`Error::Os`].
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Error::Os { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }

    /// The kernel said `EEXIST`: the link, address or route is already there.
    pub fn is_exists(&self) -> bool {
        self.raw_os_error() == Some(libc::EEXIST)
    }

    /// The kernel said the interface, address or route does not exist (`ENODEV`,
    /// `ENOENT`, `ESRCH` or `EADDRNOTAVAIL`).
    pub fn is_not_found(&self) -> bool {
        matches!(
            self.raw_os_error(),
            Some(libc::ENODEV | libc::ENOENT | libc::ESRCH | libc::EADDRNOTAVAIL)
        )
    }

    fn os(op: impl Into<String>, source: io::Error) -> Error {
        Error::Os {
            op: op.into(),
            detail: None,
            source,
        }
    }
}

/// A network interface as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The name.
    pub name: String,
    /// The interface index.
    pub index: u32,
    /// The rtnetlink kind (`IFLA_INFO_KIND`: "bridge", "veth", "tun", …); `None` for
    /// physical NICs and loopback.
    pub kind: Option<String>,
    /// The hardware address, when the interface has an Ethernet one.
    pub mac: Option<Mac>,
    /// The MTU in bytes.
    pub mtu: u32,
    /// `IFF_*` flags ([`IFF_UP`], [`IFF_LOWER_UP`], …).
    pub flags: u32,
    /// The index of the bridge (or bond) it is enslaved to.
    pub master: Option<u32>,
    /// A physical NIC: `/sys/class/net/NAME/device` exists. Sysfs shows the network
    /// namespace it was mounted in, so this is only meaningful in that namespace.
    pub physical: bool,
}

impl Link {
    /// Administratively up.
    pub fn is_up(&self) -> bool {
        self.flags & IFF_UP != 0
    }

    /// The driver signals carrier (`IFF_LOWER_UP`; only reported while up).
    pub fn has_carrier(&self) -> bool {
        self.flags & IFF_LOWER_UP != 0
    }

    /// The loopback interface.
    pub fn is_loopback(&self) -> bool {
        self.flags & IFF_LOOPBACK != 0
    }
}

/// An address on an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IfAddr {
    /// The address.
    pub addr: IpAddr,
    /// The prefix length.
    pub prefix: u8,
}

/// A route of the main table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// The destination network (the unspecified address for a default route).
    pub dst: IpAddr,
    /// The destination prefix length (0 for a default route).
    pub prefix: u8,
    /// The next hop, for a route through a gateway.
    pub gateway: Option<IpAddr>,
    /// The output interface's index.
    pub oif: Option<u32>,
}

/// Checks a name the way Linux's `dev_valid_name` does, and keeps it printable ASCII.
fn check_name(name: &str) -> Result<(), Error> {
    let ok = (1..=IFNAME_MAX_BYTES).contains(&name.len())
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|c| c.is_ascii_graphic() && c != b'/' && c != b':');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidName(name.to_string()))
    }
}
