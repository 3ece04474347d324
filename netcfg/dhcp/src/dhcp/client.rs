//! The DHCPv4 client state machine (RFC 2131 §4.4), without I/O and without a clock.
//!
//! The caller owns the sockets and the clock. It feeds [`Event`]s with the current
//! monotonic time (`now`, a [`Duration`] since any fixed origin) to [`Client::handle`],
//! carries out the returned [`Action`]s in order, and calls `handle(now, Event::Tick)`
//! again no later than [`Client::poll_at`]. Randomness (transaction ids, the ±1 s
//! retransmission jitter) comes from the [`Rng`] given to [`Client::new`], so a test with
//! a fixed seed replays exactly.
//!
//! ```text
//!            previous address known
//!   new ──────────────────────────────► INIT-REBOOT ──ACK──┐
//!    │                                      │ NAK/timeout  │
//!    ▼                                      ▼              ▼
//!   INIT ──► SELECTING ──OFFER──► REQUESTING ──ACK──► BOUND ──T1──► RENEWING ──T2──► REBINDING
//!    ▲            ▲                   │ NAK            ▲  ▲           │ ACK           │ ACK  │
//!    │            └──── no ACK ───────┘                │  └───────────┘               │      │
//!    │                                                 └──────────────────────────────┘      │
//!    └──────────────────── NAK (any state) or lease expired (address dropped) ───────────────┘
//! ```
//!
//! Retransmissions in SELECTING and REQUESTING wait 4, 8, 16, 32, then 64 s, each ±1 s
//! (RFC 2131 §4.1); REQUESTING gives up after [`MAX_REQUEST_ATTEMPTS`] and starts over.
//! RENEWING and REBINDING retransmit after half the time left to T2 or to the lease's
//! end, but not sooner than 60 s (§4.4.5).

use std::net::Ipv4Addr;
use std::time::Duration;

use super::wire::{
    BOOTREPLY, BOOTREQUEST, DHO_DHCP_LEASE_TIME, DHO_DHCP_REBINDING_TIME, DHO_DHCP_RENEWAL_TIME,
    DHO_DOMAIN_NAME_SERVERS, DHO_ROUTERS, DHO_SUBNET_MASK, MessageType, Repr,
};
use crate::rng::Rng;

/// First retransmission delay in SELECTING and REQUESTING.
pub const RETRANSMIT_INITIAL: Duration = Duration::from_secs(4);
/// Longest retransmission delay.
pub const RETRANSMIT_MAX: Duration = Duration::from_secs(64);
/// Retransmission delays are randomised by up to this much either way.
pub const RETRANSMIT_JITTER: Duration = Duration::from_secs(1);
/// REQUESTs sent in REQUESTING before going back to INIT.
pub const MAX_REQUEST_ATTEMPTS: u32 = 4;
/// REQUESTs sent in INIT-REBOOT before giving up the old address.
pub const MAX_REBOOT_ATTEMPTS: u32 = 2;
/// Shortest wait between retransmissions in RENEWING and REBINDING.
pub const RENEW_RETRANSMIT_MIN: Duration = Duration::from_secs(60);
/// Leases shorter than this are treated as this long (a zero lease would spin).
pub const MIN_LEASE_SECS: u32 = 30;
/// The lease time that means "forever".
pub const INFINITE_LEASE: u32 = u32::MAX;
/// Largest DHCP message we accept (option 57): an Ethernet MTU's worth.
pub const MAX_MESSAGE_SIZE: u16 = 1500;
/// Parameters we ask for (option 55).
pub const PARAMETER_REQUEST_LIST: [u8; 6] = [
    DHO_SUBNET_MASK,
    DHO_ROUTERS,
    DHO_DOMAIN_NAME_SERVERS,
    DHO_DHCP_LEASE_TIME,
    DHO_DHCP_RENEWAL_TIME,
    DHO_DHCP_REBINDING_TIME,
];

/// What the client is, and what it asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The interface's MAC address.
    pub mac: [u8; 6],
    /// Host name to send (option 12), 1 to 255 bytes.
    pub hostname: Option<Vec<u8>>,
    /// Client identifier (option 61); [`Config::new`] sets type 1 + MAC.
    pub client_id: Vec<u8>,
    /// The address of a previous lease: start in INIT-REBOOT and ask for it again.
    pub previous_address: Option<Ipv4Addr>,
}

impl Config {
    /// A client identified by `mac`, with no host name and no previous lease.
    pub fn new(mac: [u8; 6]) -> Self {
        let mut client_id = vec![super::wire::HTYPE_ETHER];
        client_id.extend_from_slice(&mac);
        Self {
            mac,
            hostname: None,
            client_id,
            previous_address: None,
        }
    }
}

/// An address lease as acknowledged by a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// Our address.
    pub address: Ipv4Addr,
    /// Prefix length from the subnet mask (classful default when absent or not contiguous).
    pub prefix_len: u8,
    /// Default gateway.
    pub router: Option<Ipv4Addr>,
    /// DNS servers, in the server's order.
    pub dns_servers: Vec<Ipv4Addr>,
    /// The server that granted the lease (option 54).
    pub server_id: Ipv4Addr,
    /// Lease length; [`INFINITE_LEASE`] is forever.
    pub lease_secs: u32,
    /// T1: when to start renewing, from `obtained_at`.
    pub renew_secs: u32,
    /// T2: when to start rebinding, from `obtained_at`.
    pub rebind_secs: u32,
    /// When the acknowledged REQUEST was sent (the lease runs from then, RFC 2131 §4.4.1).
    pub obtained_at: Duration,
}

impl Lease {
    fn at(&self, secs: u32) -> Option<Duration> {
        (self.lease_secs != INFINITE_LEASE).then(|| {
            self.obtained_at
                .saturating_add(Duration::from_secs(secs.into()))
        })
    }

    /// When RENEWING starts (None: never).
    pub fn renew_at(&self) -> Option<Duration> {
        self.at(self.renew_secs)
    }

    /// When REBINDING starts (None: never).
    pub fn rebind_at(&self) -> Option<Duration> {
        self.at(self.rebind_secs)
    }

    /// When the lease ends and the address must go (None: never).
    pub fn expires_at(&self) -> Option<Duration> {
        self.at(self.lease_secs)
    }
}

/// The RFC 2131 client states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// About to send DHCPDISCOVER.
    Init,
    /// Asking for the previous lease's address again.
    InitReboot,
    /// DHCPDISCOVER sent, waiting for an offer.
    Selecting,
    /// DHCPREQUEST for an offer sent, waiting for the ACK.
    Requesting,
    /// Holding a lease.
    Bound,
    /// Past T1: asking the granting server (unicast) to extend the lease.
    Renewing,
    /// Past T2: asking any server (broadcast) to extend the lease.
    Rebinding,
}

/// Input to the state machine.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    /// Time passed (call at or after [`Client::poll_at`]; earlier calls are harmless).
    Tick,
    /// A UDP payload that arrived on port 68.
    Received(&'a [u8]),
}

/// Where a message goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// 255.255.255.255 from port 68 to port 67, Ethernet broadcast.
    Broadcast,
    /// This server's port 67, routed by the kernel (RENEWING).
    Unicast(Ipv4Addr),
}

/// Why a lease was lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossReason {
    /// It ran out without being extended.
    Expired,
    /// A server refused to extend it.
    Nak,
}

/// Things worth a log line that need no action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// An offer was taken and is being requested.
    Offer {
        /// The offering server.
        server: Ipv4Addr,
        /// The address offered.
        address: Ipv4Addr,
    },
    /// A server said no.
    Nak {
        /// The server.
        server: Option<Ipv4Addr>,
        /// Its reason (option 56), lossily decoded.
        message: String,
    },
    /// No answer to our REQUESTs: starting over with DHCPDISCOVER.
    NoAck,
    /// Entered RENEWING or REBINDING.
    Extending(State),
}

/// What the caller must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send a DHCP message.
    Send {
        /// IPv4 source address (0.0.0.0 before we have one).
        source: Ipv4Addr,
        /// Where to.
        destination: Destination,
        /// Its type, for logs.
        message_type: MessageType,
        /// The UDP payload.
        payload: Vec<u8>,
    },
    /// Configure `lease` (address, prefix, default route) and record it. `previous` is
    /// the lease it replaces, if any: remove its address first when it differs.
    Configure {
        /// The new lease.
        lease: Lease,
        /// The lease it replaces.
        previous: Option<Lease>,
    },
    /// Remove `lease`'s address and route, and forget it.
    Deconfigure {
        /// The lease lost.
        lease: Lease,
        /// Why.
        reason: LossReason,
    },
    /// Log it.
    Note(Note),
}

/// A DHCPv4 client for one interface.
#[derive(Debug, Clone)]
pub struct Client {
    config: Config,
    rng: Rng,
    state: State,
    xid: u32,
    /// Messages sent in the current state.
    attempts: u32,
    /// When the current exchange began (for the `secs` field).
    started_at: Duration,
    /// When the last message was sent (a lease runs from its REQUEST).
    last_sent_at: Duration,
    deadline: Option<Duration>,
    /// The offer being requested: (address, server).
    offer: Option<(Ipv4Addr, Ipv4Addr)>,
    lease: Option<Lease>,
}

impl Client {
    /// A client that sends its first message at the first `Tick` at or after `now`.
    pub fn new(config: Config, rng: Rng, now: Duration) -> Self {
        let mut c = Self {
            state: State::Init,
            config,
            rng,
            xid: 0,
            attempts: 0,
            started_at: now,
            last_sent_at: now,
            deadline: Some(now),
            offer: None,
            lease: None,
        };
        if c.config.previous_address.is_some() {
            c.begin(State::InitReboot, now);
        }
        c
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The lease held (BOUND, RENEWING, REBINDING).
    pub fn lease(&self) -> Option<&Lease> {
        self.lease.as_ref()
    }

    /// When to call `handle(now, Event::Tick)` next; None: only when a packet arrives.
    pub fn poll_at(&self) -> Option<Duration> {
        self.deadline
    }

    /// Feeds one event; returns what to do.
    pub fn handle(&mut self, now: Duration, event: Event<'_>) -> Vec<Action> {
        let mut out = Vec::new();
        match event {
            Event::Tick => self.on_timer(now, &mut out),
            Event::Received(bytes) => self.on_packet(now, bytes, &mut out),
        }
        out
    }

    /// Enters `state` with a fresh transaction.
    fn begin(&mut self, state: State, now: Duration) {
        self.state = state;
        self.xid = self.rng.next_u32();
        self.attempts = 0;
        self.started_at = now;
        self.deadline = Some(now);
    }

    /// Drops everything and sends a DHCPDISCOVER now.
    fn restart(&mut self, now: Duration, out: &mut Vec<Action>) {
        self.offer = None;
        self.config.previous_address = None;
        self.begin(State::Selecting, now);
        self.transmit(now, out);
    }

    fn on_timer(&mut self, now: Duration, out: &mut Vec<Action>) {
        if self.deadline.is_none_or(|d| now < d) {
            return;
        }
        match self.state {
            State::Init => self.restart(now, out),
            State::Selecting => self.transmit(now, out),
            State::Requesting | State::InitReboot => {
                let max = if self.state == State::Requesting {
                    MAX_REQUEST_ATTEMPTS
                } else {
                    MAX_REBOOT_ATTEMPTS
                };
                if self.attempts >= max {
                    out.push(Action::Note(Note::NoAck));
                    self.restart(now, out);
                } else {
                    self.transmit(now, out);
                }
            }
            State::Bound | State::Renewing | State::Rebinding => {
                let Some(lease) = &self.lease else {
                    // Unreachable by construction; recover by starting over.
                    self.restart(now, out);
                    return;
                };
                let expired = lease.expires_at().is_some_and(|t| now >= t);
                let rebind = lease.rebind_at().is_some_and(|t| now >= t);
                let renew = lease.renew_at().is_some_and(|t| now >= t);
                if expired {
                    if let Some(lease) = self.lease.take() {
                        out.push(Action::Deconfigure {
                            lease,
                            reason: LossReason::Expired,
                        });
                    }
                    self.restart(now, out);
                } else if rebind {
                    if self.state != State::Rebinding {
                        self.begin(State::Rebinding, now);
                        out.push(Action::Note(Note::Extending(State::Rebinding)));
                    }
                    self.transmit(now, out);
                } else if renew {
                    if self.state != State::Renewing {
                        self.begin(State::Renewing, now);
                        out.push(Action::Note(Note::Extending(State::Renewing)));
                    }
                    self.transmit(now, out);
                } else {
                    self.deadline = lease.renew_at();
                }
            }
        }
    }

    /// The delay before retransmission number `attempts` (1-based), jittered.
    fn backoff(&mut self) -> Duration {
        let doublings = self.attempts.saturating_sub(1).min(8);
        let base = RETRANSMIT_INITIAL
            .saturating_mul(1 << doublings)
            .min(RETRANSMIT_MAX);
        let jitter_ms = u64::try_from(RETRANSMIT_JITTER.as_millis()).unwrap_or(0);
        let r = self.rng.below_or_equal(2 * jitter_ms);
        (base + Duration::from_millis(r)).saturating_sub(RETRANSMIT_JITTER)
    }

    /// Half the time left until `end`, at least 60 s, but no later than `end`.
    fn halfway(now: Duration, end: Option<Duration>) -> Option<Duration> {
        let end = end?;
        let half = end.saturating_sub(now) / 2;
        Some((now + half.max(RENEW_RETRANSMIT_MIN)).min(end))
    }

    /// Sends the current state's message and arms its retransmission timer.
    fn transmit(&mut self, now: Duration, out: &mut Vec<Action>) {
        let secs = u16::try_from(now.saturating_sub(self.started_at).as_secs()).unwrap_or(u16::MAX);
        let lease_addr = self.lease.as_ref().map(|l| l.address);
        let mut m = Repr {
            op: BOOTREQUEST,
            message_type: MessageType::Request,
            xid: self.xid,
            secs,
            chaddr: self.config.mac,
            client_id: Some(&self.config.client_id),
            hostname: self.config.hostname.as_deref(),
            parameter_request_list: Some(&PARAMETER_REQUEST_LIST),
            max_message_size: Some(MAX_MESSAGE_SIZE),
            ..Repr::default()
        };
        let mut source = Ipv4Addr::UNSPECIFIED;
        let mut destination = Destination::Broadcast;
        match self.state {
            State::Init | State::Selecting => {
                m.message_type = MessageType::Discover;
                m.broadcast = true;
                m.requested_ip = self.config.previous_address;
            }
            State::Requesting => {
                m.broadcast = true;
                if let Some((address, server)) = self.offer {
                    m.requested_ip = Some(address);
                    m.server_id = Some(server);
                }
            }
            State::InitReboot => {
                m.broadcast = true;
                m.requested_ip = self.config.previous_address;
            }
            State::Bound | State::Renewing => {
                // RFC 2131 §4.3.2: ciaddr set, no requested address or server id.
                m.ciaddr = lease_addr.unwrap_or(Ipv4Addr::UNSPECIFIED);
                source = m.ciaddr;
                if let Some(l) = &self.lease {
                    destination = Destination::Unicast(l.server_id);
                }
            }
            State::Rebinding => {
                m.ciaddr = lease_addr.unwrap_or(Ipv4Addr::UNSPECIFIED);
                source = m.ciaddr;
            }
        }
        // The options we fill are all within emit's limits (client id and host name are
        // checked when the binary builds the Config), so this does not fail; if it
        // did, sending nothing and retrying later is the safe outcome.
        if let Ok(payload) = m.to_vec() {
            out.push(Action::Send {
                source,
                destination,
                message_type: m.message_type,
                payload,
            });
        }
        self.attempts = self.attempts.saturating_add(1);
        self.last_sent_at = now;
        self.deadline = match self.state {
            State::Renewing | State::Bound => {
                Self::halfway(now, self.lease.as_ref().and_then(Lease::rebind_at))
            }
            State::Rebinding => Self::halfway(now, self.lease.as_ref().and_then(Lease::expires_at)),
            _ => Some(now + self.backoff()),
        };
    }

    fn on_packet(&mut self, now: Duration, bytes: &[u8], out: &mut Vec<Action>) {
        let Ok(m) = Repr::parse(bytes) else {
            return;
        };
        if m.op != BOOTREPLY || m.xid != self.xid || m.chaddr != self.config.mac {
            return;
        }
        match (self.state, m.message_type) {
            (State::Selecting, MessageType::Offer) => {
                let Some(server) = m.server_id else { return };
                if !usable_unicast(m.yiaddr) {
                    return;
                }
                self.offer = Some((m.yiaddr, server));
                out.push(Action::Note(Note::Offer {
                    server,
                    address: m.yiaddr,
                }));
                // Same transaction (RFC 2131 §4.4.1), so no begin(): keep xid and secs.
                self.state = State::Requesting;
                self.attempts = 0;
                self.transmit(now, out);
            }
            (
                State::Requesting | State::InitReboot | State::Renewing | State::Rebinding,
                MessageType::Ack,
            ) => {
                if !self.is_from_expected_server(&m) {
                    return;
                }
                let Some(lease) = self.make_lease(&m) else {
                    return;
                };
                let previous = self.lease.take();
                self.lease = Some(lease.clone());
                self.offer = None;
                self.state = State::Bound;
                self.attempts = 0;
                self.deadline = lease.renew_at();
                out.push(Action::Configure { lease, previous });
            }
            (
                State::Requesting | State::InitReboot | State::Renewing | State::Rebinding,
                MessageType::Nak,
            ) => {
                if !self.is_from_expected_server(&m) {
                    return;
                }
                out.push(Action::Note(Note::Nak {
                    server: m.server_id,
                    message: String::from_utf8_lossy(m.message.unwrap_or_default()).into_owned(),
                }));
                if let Some(lease) = self.lease.take() {
                    out.push(Action::Deconfigure {
                        lease,
                        reason: LossReason::Nak,
                    });
                }
                self.offer = None;
                self.config.previous_address = None;
                self.state = State::Init;
                // A short random pause so that a server that always says no is not
                // asked in a tight loop.
                let pause_ms = 1000 + self.rng.below_or_equal(1000);
                self.deadline = Some(now + Duration::from_millis(pause_ms));
            }
            _ => {}
        }
    }

    /// In REQUESTING, only the chosen server's answer counts; in RENEWING the one that
    /// granted the lease (when it names itself). INIT-REBOOT and REBINDING take anyone.
    fn is_from_expected_server(&self, m: &Repr<'_>) -> bool {
        let expected = match self.state {
            State::Requesting => self.offer.map(|(_, s)| s),
            State::Renewing => self.lease.as_ref().map(|l| l.server_id),
            _ => None,
        };
        match (expected, m.server_id) {
            (Some(e), Some(s)) => e == s,
            (Some(_), None) => self.state == State::Renewing,
            (None, _) => true,
        }
    }

    /// A lease from an ACK, or None when the ACK is unusable.
    fn make_lease(&self, m: &Repr<'_>) -> Option<Lease> {
        if !usable_unicast(m.yiaddr) {
            return None;
        }
        let server_id = m
            .server_id
            .or(self.lease.as_ref().map(|l| l.server_id))
            .or(self.offer.map(|(_, s)| s))?;
        let lease_secs = m.lease_time_secs?.max(MIN_LEASE_SECS);
        let (renew_secs, rebind_secs) = if lease_secs == INFINITE_LEASE {
            (INFINITE_LEASE, INFINITE_LEASE)
        } else {
            let default_t1 = lease_secs / 2;
            let default_t2 = u32::try_from(u64::from(lease_secs) * 7 / 8).unwrap_or(lease_secs);
            let t1 = m.renewal_time_secs.unwrap_or(default_t1);
            let t2 = m.rebinding_time_secs.unwrap_or(default_t2);
            if 0 < t1 && t1 < t2 && t2 < lease_secs {
                (t1, t2)
            } else {
                (default_t1, default_t2)
            }
        };
        Some(Lease {
            address: m.yiaddr,
            prefix_len: prefix_len(m.subnet_mask, m.yiaddr),
            router: m.router.filter(|r| usable_unicast(*r)),
            dns_servers: m.dns_servers.as_slice().to_vec(),
            server_id,
            lease_secs,
            renew_secs,
            rebind_secs,
            obtained_at: self.last_sent_at,
        })
    }
}

/// An address a host may use as its own or as a gateway.
fn usable_unicast(a: Ipv4Addr) -> bool {
    !(a.is_unspecified() || a.is_broadcast() || a.is_multicast() || a.is_loopback())
}

/// The prefix length of a contiguous `mask`, else the classful default for `addr`.
pub fn prefix_len(mask: Option<Ipv4Addr>, addr: Ipv4Addr) -> u8 {
    if let Some(mask) = mask {
        let m = u32::from(mask);
        let ones = m.leading_ones();
        if m.checked_shl(ones).unwrap_or(0) == 0 && ones > 0 {
            return u8::try_from(ones).unwrap_or(32);
        }
    }
    match addr.octets()[0] {
        0..=127 => 8,
        128..=191 => 16,
        _ => 24,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::dhcp::wire::DnsServers;

    const MAC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
    const SERVER: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
    const ADDR: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 15);

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    /// The messages a client sent, parsed (owned copies of the interesting fields).
    fn sent(actions: &[Action]) -> Vec<(MessageType, Destination, Ipv4Addr, Repr<'static>)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Send {
                    source,
                    destination,
                    message_type,
                    payload,
                } => {
                    let leaked: &'static [u8] = Box::leak(payload.clone().into_boxed_slice());
                    let r = Repr::parse(leaked).unwrap();
                    assert_eq!(r.message_type, *message_type);
                    Some((*message_type, *destination, *source, r))
                }
                _ => None,
            })
            .collect()
    }

    /// A server reply to `req`.
    fn reply(req: &Repr<'_>, t: MessageType, lease_secs: Option<u32>) -> Vec<u8> {
        let mut dns = DnsServers::default();
        dns.push(Ipv4Addr::new(10, 0, 2, 3));
        Repr {
            op: BOOTREPLY,
            message_type: t,
            xid: req.xid,
            broadcast: req.broadcast,
            yiaddr: if t == MessageType::Nak {
                Ipv4Addr::UNSPECIFIED
            } else {
                ADDR
            },
            chaddr: req.chaddr,
            server_id: Some(SERVER),
            lease_time_secs: lease_secs,
            subnet_mask: Some(Ipv4Addr::new(255, 255, 255, 0)),
            router: Some(SERVER),
            dns_servers: dns,
            message: (t == MessageType::Nak).then_some(&b"wrong network"[..]),
            ..Repr::default()
        }
        .to_vec()
        .unwrap()
    }

    fn client(seed: u64) -> Client {
        Client::new(Config::new(MAC), Rng::new(seed), secs(0))
    }

    /// Runs DISCOVER/OFFER/REQUEST/ACK at t = 0 with a `lease_secs` lease.
    fn bind(c: &mut Client, lease_secs: u32) -> Lease {
        bind_with(c, lease_secs, |_| {})
    }

    /// [`bind`], with `edit` applied to the ACK.
    fn bind_with(c: &mut Client, lease_secs: u32, edit: impl FnOnce(&mut Repr<'_>)) -> Lease {
        let a = c.handle(secs(0), Event::Tick);
        let s = sent(&a);
        assert_eq!(s.len(), 1);
        let (t, dst, src, discover) = &s[0];
        assert_eq!(
            (*t, *dst, *src),
            (
                MessageType::Discover,
                Destination::Broadcast,
                Ipv4Addr::UNSPECIFIED
            )
        );
        assert!(discover.broadcast);
        assert_eq!(
            discover.client_id,
            Some(&[1, 0x52, 0x54, 0, 0x12, 0x34, 0x56][..])
        );
        assert_eq!(c.state(), State::Selecting);
        let offer = reply(discover, MessageType::Offer, Some(lease_secs));
        let a = c.handle(secs(0), Event::Received(&offer));
        assert_eq!(
            a[0],
            Action::Note(Note::Offer {
                server: SERVER,
                address: ADDR
            })
        );
        let s = sent(&a);
        let (t, _, _, request) = &s[0];
        assert_eq!(*t, MessageType::Request);
        assert_eq!(request.xid, discover.xid);
        assert_eq!(request.requested_ip, Some(ADDR));
        assert_eq!(request.server_id, Some(SERVER));
        assert_eq!(c.state(), State::Requesting);
        let ack = reply(request, MessageType::Ack, Some(lease_secs));
        let mut ack = Repr::parse(&ack).unwrap();
        edit(&mut ack);
        let a = c.handle(secs(0), Event::Received(&ack.to_vec().unwrap()));
        let [Action::Configure { lease, previous }] = &a[..] else {
            panic!("{a:?}")
        };
        assert_eq!(*previous, None);
        assert_eq!(c.state(), State::Bound);
        lease.clone()
    }

    #[test]
    fn dora_binds() {
        let mut c = client(1);
        let lease = bind(&mut c, 3600);
        assert_eq!(lease.address, ADDR);
        assert_eq!(lease.prefix_len, 24);
        assert_eq!(lease.router, Some(SERVER));
        assert_eq!(lease.dns_servers, vec![Ipv4Addr::new(10, 0, 2, 3)]);
        assert_eq!((lease.renew_secs, lease.rebind_secs), (1800, 3150));
        assert_eq!(c.poll_at(), Some(secs(1800)));
        // Nothing happens before T1; a stray ACK in BOUND is ignored.
        assert!(c.handle(secs(1799), Event::Tick).is_empty());
    }

    #[test]
    fn discover_backoff_doubles_with_jitter_and_repeats_per_seed() {
        let run = |seed| {
            let mut c = client(seed);
            let mut times = vec![];
            let mut now = secs(0);
            for _ in 0..8 {
                let a = c.handle(now, Event::Tick);
                assert_eq!(sent(&a)[0].0, MessageType::Discover);
                times.push(now);
                now = c.poll_at().unwrap();
            }
            times
        };
        let t = run(7);
        assert_eq!(t, run(7));
        assert_ne!(t, run(8));
        let gaps: Vec<_> = t.windows(2).map(|w| w[1] - w[0]).collect();
        for (gap, base) in gaps.iter().zip([4u64, 8, 16, 32, 64, 64, 64]) {
            assert!(
                *gap >= secs(base - 1) && *gap <= secs(base + 1),
                "{gap:?} vs {base}"
            );
        }
        // secs counts from the first DISCOVER.
        let mut c = client(7);
        c.handle(secs(0), Event::Tick);
        let a = c.handle(c.poll_at().unwrap(), Event::Tick);
        assert!(sent(&a)[0].3.secs >= 3);
    }

    #[test]
    fn ignores_foreign_and_broken_replies() {
        let mut c = client(2);
        let a = c.handle(secs(0), Event::Tick);
        let discover = sent(&a).remove(0).3;
        let good = reply(&discover, MessageType::Offer, Some(600));
        let mut wrong_xid = good.clone();
        wrong_xid[4] ^= 1;
        let mut wrong_mac = good.clone();
        wrong_mac[33] ^= 1;
        let mut request_op = good.clone();
        request_op[0] = BOOTREQUEST;
        let ack_not_offer = reply(&discover, MessageType::Ack, Some(600));
        for bad in [
            &wrong_xid[..],
            &wrong_mac,
            &request_op,
            &ack_not_offer,
            &good[..100],
            b"",
        ] {
            assert!(c.handle(secs(1), Event::Received(bad)).is_empty());
            assert_eq!(c.state(), State::Selecting);
        }
        // An offer without a server id is unusable.
        let mut r = Repr::parse(&good).unwrap();
        r.server_id = None;
        assert!(
            c.handle(secs(1), Event::Received(&r.to_vec().unwrap()))
                .is_empty()
        );
        assert_eq!(
            c.handle(secs(1), Event::Received(&good)).len(),
            2,
            "offer note + request"
        );
    }

    #[test]
    fn renew_then_ack_extends() {
        let mut c = client(3);
        bind(&mut c, 120);
        assert_eq!(c.poll_at(), Some(secs(60)));
        let a = c.handle(secs(60), Event::Tick);
        assert_eq!(a[0], Action::Note(Note::Extending(State::Renewing)));
        let s = sent(&a);
        let (t, dst, src, req) = &s[0];
        assert_eq!(
            (*t, *dst, *src),
            (MessageType::Request, Destination::Unicast(SERVER), ADDR)
        );
        assert_eq!(req.ciaddr, ADDR);
        assert_eq!((req.requested_ip, req.server_id), (None, None));
        assert!(!req.broadcast);
        // Retransmission not before 60 s, but no later than T2 (105 s).
        assert_eq!(c.poll_at(), Some(secs(105)));
        let ack = reply(req, MessageType::Ack, Some(120));
        let a = c.handle(secs(61), Event::Received(&ack));
        let [Action::Configure { lease, previous }] = &a[..] else {
            panic!("{a:?}")
        };
        assert_eq!(previous.as_ref().unwrap().address, ADDR);
        assert_eq!(lease.obtained_at, secs(60));
        assert_eq!(c.state(), State::Bound);
        assert_eq!(c.poll_at(), Some(secs(120)));
    }

    #[test]
    fn silence_leads_to_rebinding_then_expiry() {
        let mut c = client(4);
        bind(&mut c, 3600);
        let mut now = secs(0);
        let mut log = vec![];
        while log.len() < 40 {
            now = c.poll_at().unwrap();
            let a = c.handle(now, Event::Tick);
            for (t, dst, _, _) in sent(&a) {
                log.push((now.as_secs(), t, dst, c.state()));
            }
            if a.iter().any(|a| matches!(a, Action::Deconfigure { .. })) {
                break;
            }
        }
        // Renewals at T1 = 1800, then halfway to T2 = 3150 (min 60 s), ...
        let renew: Vec<_> = log
            .iter()
            .filter(|l| l.3 == State::Renewing)
            .map(|l| l.0)
            .collect();
        assert_eq!(renew, [1800, 2475, 2812, 2981, 3065, 3125]);
        assert!(
            log.iter()
                .all(|l| l.3 != State::Renewing || l.2 == Destination::Unicast(SERVER))
        );
        let rebind: Vec<_> = log
            .iter()
            .filter(|l| l.3 == State::Rebinding)
            .map(|l| l.0)
            .collect();
        assert_eq!(rebind, [3150, 3375, 3487, 3547]);
        assert!(
            log.iter()
                .all(|l| l.3 != State::Rebinding || l.2 == Destination::Broadcast)
        );
        // At 3600 the lease goes and a DISCOVER follows at once.
        assert_eq!(now, secs(3600));
        assert_eq!(c.state(), State::Selecting);
        assert!(c.lease().is_none());
    }

    #[test]
    fn expiry_drops_the_address() {
        let mut c = client(5);
        let lease = bind(&mut c, 120);
        // The host slept through everything: the first tick after expiry drops it.
        let a = c.handle(secs(500), Event::Tick);
        assert_eq!(
            a[0],
            Action::Deconfigure {
                lease,
                reason: LossReason::Expired
            }
        );
        assert_eq!(sent(&a)[0].0, MessageType::Discover);
    }

    #[test]
    fn nak_restarts() {
        // In REQUESTING.
        let mut c = client(6);
        let a = c.handle(secs(0), Event::Tick);
        let discover = sent(&a).remove(0).3;
        let a = c.handle(
            secs(0),
            Event::Received(&reply(&discover, MessageType::Offer, Some(600))),
        );
        let request = sent(&a).remove(0).3;
        let a = c.handle(
            secs(1),
            Event::Received(&reply(&request, MessageType::Nak, None)),
        );
        assert_eq!(
            a,
            [Action::Note(Note::Nak {
                server: Some(SERVER),
                message: "wrong network".into()
            })]
        );
        assert_eq!(c.state(), State::Init);
        let at = c.poll_at().unwrap();
        assert!(at >= secs(2) && at <= secs(3));
        assert_eq!(sent(&c.handle(at, Event::Tick))[0].0, MessageType::Discover);

        // In RENEWING: the address goes.
        let mut c = client(6);
        let lease = bind(&mut c, 600);
        let a = c.handle(secs(300), Event::Tick);
        let req = sent(&a).remove(0).3;
        let a = c.handle(
            secs(301),
            Event::Received(&reply(&req, MessageType::Nak, None)),
        );
        assert_eq!(
            a[1],
            Action::Deconfigure {
                lease,
                reason: LossReason::Nak
            }
        );
        assert!(c.lease().is_none());
    }

    #[test]
    fn nak_from_another_server_is_ignored_while_requesting() {
        let mut c = client(9);
        let a = c.handle(secs(0), Event::Tick);
        let discover = sent(&a).remove(0).3;
        let a = c.handle(
            secs(0),
            Event::Received(&reply(&discover, MessageType::Offer, Some(600))),
        );
        let request = sent(&a).remove(0).3;
        let mut nak = Repr::parse(&reply(&request, MessageType::Nak, None))
            .unwrap()
            .to_vec()
            .unwrap();
        nak[DHCP_SERVER_ID_AT..DHCP_SERVER_ID_AT + 4].copy_from_slice(&[10, 9, 9, 9]);
        assert_eq!(
            Repr::parse(&nak).unwrap().server_id,
            Some(Ipv4Addr::new(10, 9, 9, 9))
        );
        assert!(c.handle(secs(1), Event::Received(&nak)).is_empty());
        assert_eq!(c.state(), State::Requesting);
    }

    /// Offset of the server id's value in `reply`'s output (after the message type).
    const DHCP_SERVER_ID_AT: usize = 240 + 3 + 2;

    #[test]
    fn requesting_gives_up_after_four_tries() {
        let mut c = client(10);
        let a = c.handle(secs(0), Event::Tick);
        let discover = sent(&a).remove(0).3;
        c.handle(
            secs(0),
            Event::Received(&reply(&discover, MessageType::Offer, Some(600))),
        );
        let mut requests = 1;
        loop {
            let now = c.poll_at().unwrap();
            let a = c.handle(now, Event::Tick);
            match sent(&a)[0].0 {
                MessageType::Request => requests += 1,
                MessageType::Discover => {
                    assert!(a.contains(&Action::Note(Note::NoAck)));
                    break;
                }
                t => panic!("{t:?}"),
            }
        }
        assert_eq!(requests, MAX_REQUEST_ATTEMPTS);
        assert_eq!(c.state(), State::Selecting);
    }

    #[test]
    fn init_reboot_asks_for_the_old_address() {
        let mut cfg = Config::new(MAC);
        cfg.previous_address = Some(ADDR);
        cfg.hostname = Some(b"petrel".to_vec());
        let mut c = Client::new(cfg.clone(), Rng::new(11), secs(0));
        assert_eq!(c.state(), State::InitReboot);
        let a = c.handle(secs(0), Event::Tick);
        let (t, dst, _, req) = sent(&a).remove(0);
        assert_eq!((t, dst), (MessageType::Request, Destination::Broadcast));
        assert_eq!((req.requested_ip, req.server_id), (Some(ADDR), None));
        assert_eq!(req.hostname, Some(&b"petrel"[..]));
        let a = c.handle(
            secs(1),
            Event::Received(&reply(&req, MessageType::Ack, Some(600))),
        );
        assert!(matches!(a[..], [Action::Configure { .. }]));

        // Nobody answers: after two tries, DISCOVER without the old address.
        let mut c = Client::new(cfg, Rng::new(11), secs(0));
        c.handle(secs(0), Event::Tick);
        let a = c.handle(c.poll_at().unwrap(), Event::Tick);
        assert_eq!(sent(&a)[0].0, MessageType::Request);
        let a = c.handle(c.poll_at().unwrap(), Event::Tick);
        let (t, _, _, d) = sent(&a).remove(0);
        assert_eq!((t, d.requested_ip), (MessageType::Discover, None));
    }

    #[test]
    fn infinite_lease_never_renews_and_bad_timers_get_defaults() {
        let mut c = client(12);
        let l = bind(&mut c, INFINITE_LEASE);
        assert_eq!(l.expires_at(), None);
        assert_eq!(c.poll_at(), None);
        assert!(c.handle(secs(1 << 40), Event::Tick).is_empty());

        // T1 > T2 from the server: RFC defaults instead. A 5 s lease counts as 30 s.
        let mut c = client(13);
        let lease = bind_with(&mut c, 5, |ack| {
            ack.renewal_time_secs = Some(100);
            ack.rebinding_time_secs = Some(50);
        });
        assert_eq!(
            (lease.lease_secs, lease.renew_secs, lease.rebind_secs),
            (30, 15, 26)
        );
        // An ACK without a lease time is unusable.
        let mut c = client(14);
        let a = c.handle(secs(0), Event::Tick);
        let discover = sent(&a).remove(0).3;
        let a = c.handle(
            secs(0),
            Event::Received(&reply(&discover, MessageType::Offer, Some(600))),
        );
        let request = sent(&a).remove(0).3;
        let ack = reply(&request, MessageType::Ack, None);
        assert!(c.handle(secs(0), Event::Received(&ack)).is_empty());
        assert_eq!(c.state(), State::Requesting);
    }

    #[test]
    fn prefix_lengths() {
        let a = Ipv4Addr::new(10, 1, 2, 3);
        assert_eq!(prefix_len(Some(Ipv4Addr::new(255, 255, 255, 0)), a), 24);
        assert_eq!(prefix_len(Some(Ipv4Addr::new(255, 255, 255, 255)), a), 32);
        assert_eq!(prefix_len(Some(Ipv4Addr::new(255, 0, 255, 0)), a), 8);
        assert_eq!(prefix_len(Some(Ipv4Addr::UNSPECIFIED), a), 8);
        assert_eq!(prefix_len(None, Ipv4Addr::new(172, 16, 0, 1)), 16);
        assert_eq!(prefix_len(None, Ipv4Addr::new(192, 168, 0, 1)), 24);
    }
}
