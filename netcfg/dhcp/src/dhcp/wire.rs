//! DHCPv4 messages (RFC 2131 §2, options from RFC 2132), parse and emit over byte slices.
//!
//! [`Repr::parse`] borrows from the input and never allocates; every field and option
//! length is checked before it is read, so no input makes it panic. It keeps the options
//! a client needs and skips the others. Option overload (option 52, options inside
//! `sname`/`file`) is refused with [`WireError::OptionOverload`]: no server we talk to
//! needs it, and refusing it keeps the parser simple. Repeated options (RFC 3396
//! concatenation) are not joined: the first occurrence counts.
//!
//! [`Repr::emit`] writes any `Repr` that [`Repr::parse`] accepts; parsing what it wrote
//! gives the same `Repr` back (the fuzz target checks this).

use std::net::Ipv4Addr;

/// `op` of a message from a client.
pub const BOOTREQUEST: u8 = 1;
/// `op` of a message from a server.
pub const BOOTREPLY: u8 = 2;
/// `htype` for Ethernet (ARP hardware type 1).
pub const HTYPE_ETHER: u8 = 1;
/// `hlen` for Ethernet.
pub const HLEN_ETHER: u8 = 6;
/// The broadcast bit of `flags`: the client cannot receive unicast before it is configured.
pub const BOOTP_BROADCAST: u16 = 0x8000;
/// The magic cookie after the fixed header (99.130.83.99).
pub const DHCP_OPTIONS_COOKIE: [u8; 4] = [99, 130, 83, 99];
/// UDP port of servers.
pub const DHCP_SERVER_PORT: u16 = 67;
/// UDP port of clients.
pub const DHCP_CLIENT_PORT: u16 = 68;

/// Length of the fixed BOOTP header, up to and without the magic cookie.
pub const DHCP_FIXED_LEN: usize = 236;
/// Offset of the first option (after the cookie).
pub const DHCP_OPTIONS_OFFSET: usize = DHCP_FIXED_LEN + 4;
/// Emitted messages are padded to the minimum BOOTP message size some relays insist on.
pub const BOOTP_MIN_LEN: usize = 300;
/// Largest message [`Repr::emit`] can produce (every option at its maximum length).
pub const DHCP_MAX_EMIT_LEN: usize = 2048;

/// Pad option.
pub const DHO_PAD: u8 = 0;
/// Subnet mask.
pub const DHO_SUBNET_MASK: u8 = 1;
/// Routers, in order of preference.
pub const DHO_ROUTERS: u8 = 3;
/// DNS servers, in order of preference.
pub const DHO_DOMAIN_NAME_SERVERS: u8 = 6;
/// Client host name.
pub const DHO_HOST_NAME: u8 = 12;
/// Requested IP address.
pub const DHO_DHCP_REQUESTED_ADDRESS: u8 = 50;
/// Lease time in seconds.
pub const DHO_DHCP_LEASE_TIME: u8 = 51;
/// Option overload (refused).
pub const DHO_DHCP_OPTION_OVERLOAD: u8 = 52;
/// DHCP message type.
pub const DHO_DHCP_MESSAGE_TYPE: u8 = 53;
/// Server identifier.
pub const DHO_DHCP_SERVER_IDENTIFIER: u8 = 54;
/// Parameter request list.
pub const DHO_DHCP_PARAMETER_REQUEST_LIST: u8 = 55;
/// A text message (the reason of a NAK).
pub const DHO_DHCP_MESSAGE: u8 = 56;
/// Maximum DHCP message size the sender accepts.
pub const DHO_DHCP_MAX_MESSAGE_SIZE: u8 = 57;
/// Renewal (T1) time in seconds.
pub const DHO_DHCP_RENEWAL_TIME: u8 = 58;
/// Rebinding (T2) time in seconds.
pub const DHO_DHCP_REBINDING_TIME: u8 = 59;
/// Client identifier.
pub const DHO_DHCP_CLIENT_IDENTIFIER: u8 = 61;
/// End of options.
pub const DHO_END: u8 = 255;

/// How many DNS servers a message carries here; more are ignored.
pub const MAX_DNS_SERVERS: usize = 3;

/// DHCP message types (option 53).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum MessageType {
    /// DHCPDISCOVER
    Discover = 1,
    /// DHCPOFFER
    Offer = 2,
    /// DHCPREQUEST
    Request = 3,
    /// DHCPDECLINE
    Decline = 4,
    /// DHCPACK
    Ack = 5,
    /// DHCPNAK
    Nak = 6,
    /// DHCPRELEASE
    Release = 7,
    /// DHCPINFORM
    Inform = 8,
}

impl MessageType {
    fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => Self::Discover,
            2 => Self::Offer,
            3 => Self::Request,
            4 => Self::Decline,
            5 => Self::Ack,
            6 => Self::Nak,
            7 => Self::Release,
            8 => Self::Inform,
            _ => return None,
        })
    }
}

/// Why a message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Shorter than the fixed header and cookie.
    #[error("message too short: {len} bytes")]
    Truncated {
        /// Bytes received.
        len: usize,
    },
    /// `op` is neither BOOTREQUEST nor BOOTREPLY.
    #[error("bad op {0}")]
    BadOp(u8),
    /// Not Ethernet hardware addresses.
    #[error("unsupported hardware type {htype} length {hlen}")]
    UnsupportedHardware {
        /// `htype`
        htype: u8,
        /// `hlen`
        hlen: u8,
    },
    /// The magic cookie is missing: BOOTP, not DHCP.
    #[error("no DHCP magic cookie")]
    BadCookie,
    /// An option's length byte or data runs past the end of the message.
    #[error("option {code} truncated")]
    OptionTruncated {
        /// Option code.
        code: u8,
    },
    /// An option this parser reads has a length its definition forbids.
    #[error("option {code} has bad length {len}")]
    BadOptionLength {
        /// Option code.
        code: u8,
        /// Its length.
        len: usize,
    },
    /// Option 52: options continue in `sname`/`file`, which we refuse.
    #[error("option overload is not supported")]
    OptionOverload,
    /// No option 53: a BOOTP message.
    #[error("no DHCP message type")]
    MissingMessageType,
    /// Option 53 holds an unknown value.
    #[error("unknown DHCP message type {0}")]
    UnknownMessageType(u8),
    /// [`Repr::emit`]: the buffer is too small.
    #[error("buffer too small: {need} bytes needed")]
    BufferTooSmall {
        /// Bytes needed.
        need: usize,
    },
    /// [`Repr::emit`]: a variable-length option is empty or longer than 255 bytes.
    #[error("option {code} cannot be emitted with length {len}")]
    OptionLength {
        /// Option code.
        code: u8,
        /// The length asked for.
        len: usize,
    },
}

/// A DHCP message: the fields and options a client uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repr<'a> {
    /// [`BOOTREQUEST`] or [`BOOTREPLY`].
    pub op: u8,
    /// Option 53.
    pub message_type: MessageType,
    /// Transaction id.
    pub xid: u32,
    /// Seconds since the client began acquiring or renewing.
    pub secs: u16,
    /// The broadcast flag.
    pub broadcast: bool,
    /// Client's address when it already has one (RENEWING, REBINDING).
    pub ciaddr: Ipv4Addr,
    /// "Your" address: the one the server offers or assigns.
    pub yiaddr: Ipv4Addr,
    /// Next server (TFTP); kept for completeness.
    pub siaddr: Ipv4Addr,
    /// Relay agent address.
    pub giaddr: Ipv4Addr,
    /// Client hardware (MAC) address.
    pub chaddr: [u8; 6],
    /// Option 54.
    pub server_id: Option<Ipv4Addr>,
    /// Option 50.
    pub requested_ip: Option<Ipv4Addr>,
    /// Option 51, seconds (`u32::MAX` is infinite).
    pub lease_time_secs: Option<u32>,
    /// Option 58, seconds.
    pub renewal_time_secs: Option<u32>,
    /// Option 59, seconds.
    pub rebinding_time_secs: Option<u32>,
    /// Option 1.
    pub subnet_mask: Option<Ipv4Addr>,
    /// Option 3, first router only.
    pub router: Option<Ipv4Addr>,
    /// Option 6, at most [`MAX_DNS_SERVERS`], in order.
    pub dns_servers: DnsServers,
    /// Option 12.
    pub hostname: Option<&'a [u8]>,
    /// Option 61 (type byte included).
    pub client_id: Option<&'a [u8]>,
    /// Option 55.
    pub parameter_request_list: Option<&'a [u8]>,
    /// Option 56.
    pub message: Option<&'a [u8]>,
    /// Option 57.
    pub max_message_size: Option<u16>,
}

/// Up to [`MAX_DNS_SERVERS`] addresses, without allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DnsServers {
    addrs: [Ipv4Addr; MAX_DNS_SERVERS],
    len: usize,
}

impl Default for DnsServers {
    fn default() -> Self {
        Self {
            addrs: [Ipv4Addr::UNSPECIFIED; MAX_DNS_SERVERS],
            len: 0,
        }
    }
}

impl DnsServers {
    /// The addresses, in the server's order.
    pub fn as_slice(&self) -> &[Ipv4Addr] {
        self.addrs.get(..self.len).unwrap_or(&[])
    }

    /// Appends `addr`; returns false (and drops it) when full.
    pub fn push(&mut self, addr: Ipv4Addr) -> bool {
        match self.addrs.get_mut(self.len) {
            Some(slot) => {
                *slot = addr;
                self.len += 1;
                true
            }
            None => false,
        }
    }
}

impl Default for Repr<'_> {
    fn default() -> Self {
        Self {
            op: BOOTREQUEST,
            message_type: MessageType::Discover,
            xid: 0,
            secs: 0,
            broadcast: false,
            ciaddr: Ipv4Addr::UNSPECIFIED,
            yiaddr: Ipv4Addr::UNSPECIFIED,
            siaddr: Ipv4Addr::UNSPECIFIED,
            giaddr: Ipv4Addr::UNSPECIFIED,
            chaddr: [0; 6],
            server_id: None,
            requested_ip: None,
            lease_time_secs: None,
            renewal_time_secs: None,
            rebinding_time_secs: None,
            subnet_mask: None,
            router: None,
            dns_servers: DnsServers::default(),
            hostname: None,
            client_id: None,
            parameter_request_list: None,
            message: None,
            max_message_size: None,
        }
    }
}

fn be_u16(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([s[0], s[1]]))
}

fn be_u32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

fn ipv4(b: &[u8], at: usize) -> Option<Ipv4Addr> {
    be_u32(b, at).map(Ipv4Addr::from)
}

/// Exactly four bytes, as an address or a big-endian number.
fn exact4(code: u8, data: &[u8]) -> Result<[u8; 4], WireError> {
    <[u8; 4]>::try_from(data).map_err(|_| WireError::BadOptionLength {
        code,
        len: data.len(),
    })
}

/// A list of addresses: a non-zero multiple of four bytes.
fn addr_list(code: u8, data: &[u8]) -> Result<impl Iterator<Item = Ipv4Addr> + '_, WireError> {
    if data.is_empty() || data.len() % 4 != 0 {
        return Err(WireError::BadOptionLength {
            code,
            len: data.len(),
        });
    }
    Ok(data
        .chunks_exact(4)
        .map(|c| Ipv4Addr::new(c[0], c[1], c[2], c[3])))
}

/// A variable-length option with a minimum length.
fn at_least(code: u8, data: &[u8], min: usize) -> Result<&[u8], WireError> {
    if data.len() < min {
        return Err(WireError::BadOptionLength {
            code,
            len: data.len(),
        });
    }
    Ok(data)
}

/// Minimum lengths of the variable-length options, shared by parse and emit.
const MIN_HOSTNAME: usize = 1;
const MIN_CLIENT_ID: usize = 2;
const MIN_PRL: usize = 1;
const MIN_MESSAGE: usize = 1;

/// Iterates over `(code, data)` of the options in `b`, pads skipped, stopping at END.
struct Options<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Iterator for Options<'a> {
    type Item = Result<(u8, &'a [u8]), WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            // Running off the end without END is tolerated: some servers omit it.
            let code = *self.b.get(self.at)?;
            match code {
                DHO_PAD => self.at += 1,
                DHO_END => {
                    self.at = self.b.len();
                    return None;
                }
                _ => {
                    let parsed = self.b.get(self.at + 1).and_then(|&len| {
                        let start = self.at + 2;
                        let end = start + usize::from(len);
                        self.b.get(start..end).map(|data| (data, end))
                    });
                    return match parsed {
                        Some((data, end)) => {
                            self.at = end;
                            Some(Ok((code, data)))
                        }
                        None => {
                            self.at = self.b.len();
                            Some(Err(WireError::OptionTruncated { code }))
                        }
                    };
                }
            }
        }
    }
}

impl<'a> Repr<'a> {
    /// Parses a DHCP message (a UDP payload).
    pub fn parse(b: &'a [u8]) -> Result<Self, WireError> {
        if b.len() < DHCP_OPTIONS_OFFSET {
            return Err(WireError::Truncated { len: b.len() });
        }
        let truncated = WireError::Truncated { len: b.len() };
        let op = b[0];
        if op != BOOTREQUEST && op != BOOTREPLY {
            return Err(WireError::BadOp(op));
        }
        let (htype, hlen) = (b[1], b[2]);
        if htype != HTYPE_ETHER || hlen != HLEN_ETHER {
            return Err(WireError::UnsupportedHardware { htype, hlen });
        }
        if b[DHCP_FIXED_LEN..DHCP_OPTIONS_OFFSET] != DHCP_OPTIONS_COOKIE {
            return Err(WireError::BadCookie);
        }
        let mut chaddr = [0u8; 6];
        chaddr.copy_from_slice(&b[28..34]);
        let mut r = Repr {
            op,
            xid: be_u32(b, 4).ok_or(truncated)?,
            secs: be_u16(b, 8).ok_or(truncated)?,
            broadcast: be_u16(b, 10).ok_or(truncated)? & BOOTP_BROADCAST != 0,
            ciaddr: ipv4(b, 12).ok_or(truncated)?,
            yiaddr: ipv4(b, 16).ok_or(truncated)?,
            siaddr: ipv4(b, 20).ok_or(truncated)?,
            giaddr: ipv4(b, 24).ok_or(truncated)?,
            chaddr,
            ..Repr::default()
        };
        let mut message_type = None;
        let options = Options {
            b: &b[DHCP_OPTIONS_OFFSET..],
            at: 0,
        };
        for option in options {
            let (code, data) = option?;
            match code {
                DHO_DHCP_OPTION_OVERLOAD => return Err(WireError::OptionOverload),
                DHO_DHCP_MESSAGE_TYPE if message_type.is_none() => {
                    let [t] =
                        <[u8; 1]>::try_from(data).map_err(|_| WireError::BadOptionLength {
                            code,
                            len: data.len(),
                        })?;
                    message_type =
                        Some(MessageType::from_u8(t).ok_or(WireError::UnknownMessageType(t))?);
                }
                DHO_DHCP_SERVER_IDENTIFIER if r.server_id.is_none() => {
                    r.server_id = Some(exact4(code, data)?.into());
                }
                DHO_DHCP_REQUESTED_ADDRESS if r.requested_ip.is_none() => {
                    r.requested_ip = Some(exact4(code, data)?.into());
                }
                DHO_SUBNET_MASK if r.subnet_mask.is_none() => {
                    r.subnet_mask = Some(exact4(code, data)?.into());
                }
                DHO_DHCP_LEASE_TIME if r.lease_time_secs.is_none() => {
                    r.lease_time_secs = Some(u32::from_be_bytes(exact4(code, data)?));
                }
                DHO_DHCP_RENEWAL_TIME if r.renewal_time_secs.is_none() => {
                    r.renewal_time_secs = Some(u32::from_be_bytes(exact4(code, data)?));
                }
                DHO_DHCP_REBINDING_TIME if r.rebinding_time_secs.is_none() => {
                    r.rebinding_time_secs = Some(u32::from_be_bytes(exact4(code, data)?));
                }
                DHO_ROUTERS if r.router.is_none() => {
                    r.router = addr_list(code, data)?.next();
                }
                DHO_DOMAIN_NAME_SERVERS if r.dns_servers.len == 0 => {
                    for addr in addr_list(code, data)? {
                        if !r.dns_servers.push(addr) {
                            break;
                        }
                    }
                }
                DHO_HOST_NAME if r.hostname.is_none() => {
                    r.hostname = Some(at_least(code, data, MIN_HOSTNAME)?);
                }
                DHO_DHCP_CLIENT_IDENTIFIER if r.client_id.is_none() => {
                    r.client_id = Some(at_least(code, data, MIN_CLIENT_ID)?);
                }
                DHO_DHCP_PARAMETER_REQUEST_LIST if r.parameter_request_list.is_none() => {
                    r.parameter_request_list = Some(at_least(code, data, MIN_PRL)?);
                }
                DHO_DHCP_MESSAGE if r.message.is_none() => {
                    r.message = Some(at_least(code, data, MIN_MESSAGE)?);
                }
                DHO_DHCP_MAX_MESSAGE_SIZE if r.max_message_size.is_none() => {
                    let d: [u8; 2] = data.try_into().map_err(|_| WireError::BadOptionLength {
                        code,
                        len: data.len(),
                    })?;
                    r.max_message_size = Some(u16::from_be_bytes(d));
                }
                _ => {}
            }
        }
        r.message_type = message_type.ok_or(WireError::MissingMessageType)?;
        Ok(r)
    }

    /// Bytes [`Repr::emit`] writes (padding to [`BOOTP_MIN_LEN`] included).
    pub fn buffer_len(&self) -> usize {
        let opt = |present: bool, len: usize| if present { 2 + len } else { 0 };
        let mut n = DHCP_OPTIONS_OFFSET + 3; // message type
        n += opt(self.server_id.is_some(), 4);
        n += opt(self.requested_ip.is_some(), 4);
        n += opt(self.lease_time_secs.is_some(), 4);
        n += opt(self.renewal_time_secs.is_some(), 4);
        n += opt(self.rebinding_time_secs.is_some(), 4);
        n += opt(self.subnet_mask.is_some(), 4);
        n += opt(self.router.is_some(), 4);
        n += opt(
            !self.dns_servers.as_slice().is_empty(),
            4 * self.dns_servers.as_slice().len(),
        );
        n += opt(self.max_message_size.is_some(), 2);
        for v in [
            self.hostname,
            self.client_id,
            self.parameter_request_list,
            self.message,
        ]
        .into_iter()
        .flatten()
        {
            n += 2 + v.len();
        }
        (n + 1).max(BOOTP_MIN_LEN)
    }

    /// Writes the message to the start of `buf`; returns its length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        let var = [
            (DHO_HOST_NAME, self.hostname, MIN_HOSTNAME),
            (DHO_DHCP_CLIENT_IDENTIFIER, self.client_id, MIN_CLIENT_ID),
            (
                DHO_DHCP_PARAMETER_REQUEST_LIST,
                self.parameter_request_list,
                MIN_PRL,
            ),
            (DHO_DHCP_MESSAGE, self.message, MIN_MESSAGE),
        ];
        for (code, value, min) in var {
            if let Some(v) = value {
                if v.len() < min || v.len() > 255 {
                    return Err(WireError::OptionLength { code, len: v.len() });
                }
            }
        }
        if self.op != BOOTREQUEST && self.op != BOOTREPLY {
            return Err(WireError::BadOp(self.op));
        }
        let need = self.buffer_len();
        let buf = buf
            .get_mut(..need)
            .ok_or(WireError::BufferTooSmall { need })?;
        buf.fill(0);
        buf[0] = self.op;
        buf[1] = HTYPE_ETHER;
        buf[2] = HLEN_ETHER;
        buf[4..8].copy_from_slice(&self.xid.to_be_bytes());
        buf[8..10].copy_from_slice(&self.secs.to_be_bytes());
        let flags = if self.broadcast { BOOTP_BROADCAST } else { 0 };
        buf[10..12].copy_from_slice(&flags.to_be_bytes());
        buf[12..16].copy_from_slice(&self.ciaddr.octets());
        buf[16..20].copy_from_slice(&self.yiaddr.octets());
        buf[20..24].copy_from_slice(&self.siaddr.octets());
        buf[24..28].copy_from_slice(&self.giaddr.octets());
        buf[28..34].copy_from_slice(&self.chaddr);
        buf[DHCP_FIXED_LEN..DHCP_OPTIONS_OFFSET].copy_from_slice(&DHCP_OPTIONS_COOKIE);

        let mut w = Writer {
            buf,
            at: DHCP_OPTIONS_OFFSET,
        };
        w.option(DHO_DHCP_MESSAGE_TYPE, &[self.message_type as u8]);
        let addr_options = [
            (DHO_DHCP_SERVER_IDENTIFIER, self.server_id),
            (DHO_DHCP_REQUESTED_ADDRESS, self.requested_ip),
            (DHO_SUBNET_MASK, self.subnet_mask),
            (DHO_ROUTERS, self.router),
        ];
        for (code, addr) in addr_options {
            if let Some(a) = addr {
                w.option(code, &a.octets());
            }
        }
        let time_options = [
            (DHO_DHCP_LEASE_TIME, self.lease_time_secs),
            (DHO_DHCP_RENEWAL_TIME, self.renewal_time_secs),
            (DHO_DHCP_REBINDING_TIME, self.rebinding_time_secs),
        ];
        for (code, secs) in time_options {
            if let Some(s) = secs {
                w.option(code, &s.to_be_bytes());
            }
        }
        let dns = self.dns_servers.as_slice();
        if !dns.is_empty() {
            let mut data = [0u8; 4 * MAX_DNS_SERVERS];
            for (chunk, a) in data.chunks_exact_mut(4).zip(dns) {
                chunk.copy_from_slice(&a.octets());
            }
            w.option(DHO_DOMAIN_NAME_SERVERS, &data[..4 * dns.len()]);
        }
        if let Some(size) = self.max_message_size {
            w.option(DHO_DHCP_MAX_MESSAGE_SIZE, &size.to_be_bytes());
        }
        for (code, value, _) in var {
            if let Some(v) = value {
                w.option(code, v);
            }
        }
        w.buf[w.at] = DHO_END;
        Ok(need)
    }

    /// [`Repr::emit`] into a new vector of exactly [`Repr::buffer_len`] bytes.
    pub fn to_vec(&self) -> Result<Vec<u8>, WireError> {
        let mut v = vec![0; self.buffer_len()];
        let n = self.emit(&mut v)?;
        v.truncate(n);
        Ok(v)
    }
}

/// Appends options to a buffer sized by [`Repr::buffer_len`] (so writes stay in bounds).
struct Writer<'b> {
    buf: &'b mut [u8],
    at: usize,
}

impl Writer<'_> {
    /// `data` is at most 255 bytes (checked by the caller).
    fn option(&mut self, code: u8, data: &[u8]) {
        let len = u8::try_from(data.len()).unwrap_or(u8::MAX);
        self.buf[self.at] = code;
        self.buf[self.at + 1] = len;
        self.buf[self.at + 2..self.at + 2 + data.len()].copy_from_slice(data);
        self.at += 2 + data.len();
    }
}

/// The fuzz entry point: parse; when that succeeds, emit and parse again and check that
/// nothing changed.
pub fn fuzz_check(data: &[u8]) {
    if let Ok(repr) = Repr::parse(data) {
        let emitted = match repr.to_vec() {
            Ok(v) => v,
            Err(e) => panic!("parsed message does not emit: {e}"),
        };
        assert!(emitted.len() <= DHCP_MAX_EMIT_LEN);
        match Repr::parse(&emitted) {
            Ok(again) => assert_eq!(again, repr, "round trip changed the message"),
            Err(e) => panic!("emitted message does not parse: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A DHCPOFFER as dnsmasq 2.90 sends it (10.0.2.15/24, router 10.0.2.2, DNS
    /// 10.0.2.3, lease 3600 s), hand-assembled from a capture's field values.
    pub(crate) fn dnsmasq_offer() -> Vec<u8> {
        let mut m = vec![0u8; DHCP_OPTIONS_OFFSET];
        m[..4].copy_from_slice(&[2, 1, 6, 0]);
        m[4..8].copy_from_slice(&[0x12, 0x34, 0x56, 0x78]);
        m[10] = 0x80;
        m[16..20].copy_from_slice(&[10, 0, 2, 15]);
        m[20..24].copy_from_slice(&[10, 0, 2, 2]);
        m[28..34].copy_from_slice(&[0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
        m[236..240].copy_from_slice(&DHCP_OPTIONS_COOKIE);
        #[rustfmt::skip]
        m.extend_from_slice(&[
            53, 1, 2,
            54, 4, 10, 0, 2, 2,
            51, 4, 0, 0, 0x0e, 0x10,
            58, 4, 0, 0, 0x07, 0x08,
            59, 4, 0, 0, 0x0c, 0x4e,
            1, 4, 255, 255, 255, 0,
            28, 4, 10, 0, 2, 255,
            3, 4, 10, 0, 2, 2,
            6, 8, 10, 0, 2, 3, 10, 0, 2, 4,
            255,
        ]);
        m.resize(300, 0);
        m
    }

    #[test]
    fn parses_dnsmasq_offer() {
        let m = dnsmasq_offer();
        let r = Repr::parse(&m).unwrap();
        assert_eq!(r.op, BOOTREPLY);
        assert_eq!(r.message_type, MessageType::Offer);
        assert_eq!(r.xid, 0x1234_5678);
        assert!(r.broadcast);
        assert_eq!(r.yiaddr, Ipv4Addr::new(10, 0, 2, 15));
        assert_eq!(r.siaddr, Ipv4Addr::new(10, 0, 2, 2));
        assert_eq!(r.chaddr, [0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
        assert_eq!(r.server_id, Some(Ipv4Addr::new(10, 0, 2, 2)));
        assert_eq!(r.lease_time_secs, Some(3600));
        assert_eq!(r.renewal_time_secs, Some(1800));
        assert_eq!(r.rebinding_time_secs, Some(3150));
        assert_eq!(r.subnet_mask, Some(Ipv4Addr::new(255, 255, 255, 0)));
        assert_eq!(r.router, Some(Ipv4Addr::new(10, 0, 2, 2)));
        assert_eq!(
            r.dns_servers.as_slice(),
            &[Ipv4Addr::new(10, 0, 2, 3), Ipv4Addr::new(10, 0, 2, 4)]
        );
        fuzz_check(&m);
    }

    #[test]
    fn emits_discover_byte_for_byte() {
        let r = Repr {
            xid: 0xdead_beef,
            broadcast: true,
            chaddr: [2, 0, 0, 0, 0, 1],
            client_id: Some(&[1, 2, 0, 0, 0, 0, 1]),
            parameter_request_list: Some(&[1, 3, 6]),
            ..Repr::default()
        };
        let v = r.to_vec().unwrap();
        assert_eq!(v.len(), BOOTP_MIN_LEN);
        assert_eq!(
            &v[..12],
            &[1, 1, 6, 0, 0xde, 0xad, 0xbe, 0xef, 0, 0, 0x80, 0]
        );
        assert_eq!(&v[28..34], &[2, 0, 0, 0, 0, 1]);
        assert_eq!(&v[236..240], &[99, 130, 83, 99]);
        #[rustfmt::skip]
        assert_eq!(
            &v[240..259],
            &[53, 1, 1, 61, 7, 1, 2, 0, 0, 0, 0, 1, 55, 3, 1, 3, 6, 255, 0]
        );
        assert!(v[258..].iter().all(|&b| b == 0));
        assert_eq!(Repr::parse(&v).unwrap(), r);
    }

    #[test]
    fn refusals() {
        let good = dnsmasq_offer();
        assert_eq!(
            Repr::parse(&good[..239]),
            Err(WireError::Truncated { len: 239 })
        );
        let mut m = good.clone();
        m[0] = 3;
        assert_eq!(Repr::parse(&m), Err(WireError::BadOp(3)));
        let mut m = good.clone();
        m[2] = 16;
        assert!(matches!(
            Repr::parse(&m),
            Err(WireError::UnsupportedHardware { .. })
        ));
        let mut m = good.clone();
        m[239] = 0;
        assert_eq!(Repr::parse(&m), Err(WireError::BadCookie));
        // Message type missing: BOOTP.
        let mut m = good.clone();
        m[240] = DHO_PAD;
        m[241] = DHO_PAD;
        m[242] = DHO_PAD;
        assert_eq!(Repr::parse(&m), Err(WireError::MissingMessageType));
        let mut m = good.clone();
        m[242] = 9;
        assert_eq!(Repr::parse(&m), Err(WireError::UnknownMessageType(9)));
        // Server id of length 3.
        let mut m = good[..240].to_vec();
        m.extend_from_slice(&[53, 1, 2, 54, 3, 1, 2, 3, 255]);
        assert_eq!(
            Repr::parse(&m),
            Err(WireError::BadOptionLength { code: 54, len: 3 })
        );
        // Option running past the end.
        let mut m = good[..240].to_vec();
        m.extend_from_slice(&[53, 1, 2, 12, 10, b'a']);
        assert_eq!(
            Repr::parse(&m),
            Err(WireError::OptionTruncated { code: 12 })
        );
        let mut m = good[..240].to_vec();
        m.extend_from_slice(&[53, 1, 2, 12]);
        assert_eq!(
            Repr::parse(&m),
            Err(WireError::OptionTruncated { code: 12 })
        );
        // Overload refused.
        let mut m = good[..240].to_vec();
        m.extend_from_slice(&[53, 1, 2, 52, 1, 3, 255]);
        assert_eq!(Repr::parse(&m), Err(WireError::OptionOverload));
        // Router list not a multiple of four.
        let mut m = good[..240].to_vec();
        m.extend_from_slice(&[53, 1, 5, 3, 5, 1, 2, 3, 4, 5, 255]);
        assert_eq!(
            Repr::parse(&m),
            Err(WireError::BadOptionLength { code: 3, len: 5 })
        );
    }

    #[test]
    fn lenient_where_harmless() {
        // No END, unknown options skipped, repeated options: first wins, extra DNS dropped.
        let mut m = dnsmasq_offer()[..240].to_vec();
        #[rustfmt::skip]
        m.extend_from_slice(&[
            0, 0, 53, 1, 5, 200, 2, 9, 9, 51, 4, 0, 0, 0, 60, 51, 4, 0, 0, 0, 99,
            6, 16, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4,
        ]);
        let r = Repr::parse(&m).unwrap();
        assert_eq!(r.message_type, MessageType::Ack);
        assert_eq!(r.lease_time_secs, Some(60));
        assert_eq!(r.dns_servers.as_slice().len(), MAX_DNS_SERVERS);
        fuzz_check(&m);
    }

    #[test]
    fn emit_refuses_bad_lengths() {
        let long = [b'x'; 256];
        let r = Repr {
            hostname: Some(&long),
            ..Repr::default()
        };
        assert_eq!(
            r.to_vec(),
            Err(WireError::OptionLength { code: 12, len: 256 })
        );
        let r = Repr {
            client_id: Some(&[1]),
            ..Repr::default()
        };
        assert!(r.to_vec().is_err());
        let r = Repr::default();
        assert_eq!(
            r.emit(&mut [0u8; 299]),
            Err(WireError::BufferTooSmall { need: 300 })
        );
    }

    #[test]
    fn truncations_and_corruptions_never_panic() {
        let m = dnsmasq_offer();
        for len in 0..=m.len() {
            fuzz_check(&m[..len]);
        }
        let mut c = m.clone();
        for i in 0..c.len() {
            let orig = c[i];
            for v in [0, 1, 4, 0x34, 0x35, 0xff, orig ^ 0x80] {
                c[i] = v;
                fuzz_check(&c);
            }
            c[i] = orig;
        }
    }
}
