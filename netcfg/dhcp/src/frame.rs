//! Ethernet II + IPv4 + UDP, just enough to carry DHCP over an `AF_PACKET` socket.
//!
//! [`parse_udp`] checks every header length, the IPv4 header checksum and (when the
//! sender set one) the UDP checksum before returning the payload; it refuses fragments
//! and IPv4 options it cannot skip safely. It never panics and borrows the payload.
//! [`emit_udp`] builds a frame with both checksums.

use std::net::Ipv4Addr;

/// Ethernet header length.
pub const ETH_HLEN: usize = 14;
/// EtherType of IPv4.
pub const ETH_P_IP: u16 = 0x0800;
/// The Ethernet broadcast address.
pub const ETH_BROADCAST: [u8; 6] = [0xff; 6];
/// IPv4 header length without options.
pub const IPV4_HLEN: usize = 20;
/// UDP header length.
pub const UDP_HLEN: usize = 8;
/// IP protocol number of UDP.
pub const IPPROTO_UDP: u8 = 17;
/// TTL of the datagrams we send (RFC 1700's default).
pub const IPDEFTTL: u8 = 64;

/// Why a frame was not a UDP datagram for us.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// A header does not fit in the frame.
    #[error("truncated")]
    Truncated,
    /// Not IPv4 over Ethernet.
    #[error("not IPv4")]
    NotIpv4,
    /// IPv4 header fields out of range (version, IHL, total length).
    #[error("malformed IPv4 header")]
    BadIpv4Header,
    /// The IPv4 header checksum does not verify.
    #[error("bad IPv4 checksum")]
    BadIpv4Checksum,
    /// A fragment (we never reassemble).
    #[error("fragmented")]
    Fragment,
    /// Not UDP.
    #[error("not UDP")]
    NotUdp,
    /// UDP length field out of range.
    #[error("malformed UDP header")]
    BadUdpHeader,
    /// The UDP checksum does not verify.
    #[error("bad UDP checksum")]
    BadUdpChecksum,
    /// The payload does not fit in one frame.
    #[error("payload too large")]
    TooLarge,
}

/// A UDP datagram found in a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpDatagram<'a> {
    /// Ethernet source.
    pub src_mac: [u8; 6],
    /// Ethernet destination.
    pub dst_mac: [u8; 6],
    /// IPv4 source.
    pub src_ip: Ipv4Addr,
    /// IPv4 destination.
    pub dst_ip: Ipv4Addr,
    /// UDP source port.
    pub src_port: u16,
    /// UDP destination port.
    pub dst_port: u16,
    /// UDP payload.
    pub payload: &'a [u8],
}

/// The Internet checksum (RFC 1071) of `data`, continuing from `sum`, unfolded.
fn sum16(mut sum: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum = sum.wrapping_add(u32::from(u16::from_be_bytes([c[0], c[1]])));
    }
    if let [last] = chunks.remainder() {
        sum = sum.wrapping_add(u32::from(*last) << 8);
    }
    sum
}

/// Folds a running sum into the final one's-complement checksum.
fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    // The loop leaves sum <= 0xffff.
    !u16::try_from(sum).unwrap_or(u16::MAX)
}

/// The UDP checksum of `udp` (header and payload) with the IPv4 pseudo-header.
fn udp_checksum(src: Ipv4Addr, dst: Ipv4Addr, udp: &[u8]) -> u16 {
    let mut sum = sum16(0, &src.octets());
    sum = sum16(sum, &dst.octets());
    sum = sum.wrapping_add(u32::from(IPPROTO_UDP));
    // `udp` comes from a 16-bit length field or a checked emit, so this fits.
    sum = sum.wrapping_add(u32::try_from(udp.len()).unwrap_or(0));
    fold(sum16(sum, udp))
}

/// Parses an Ethernet frame carrying IPv4/UDP.
pub fn parse_udp(frame: &[u8]) -> Result<UdpDatagram<'_>, FrameError> {
    parse_udp_with(frame, true)
}

/// [`parse_udp`], verifying the UDP checksum only when `verify_udp_checksum`. A packet
/// socket sees a locally generated or veth-forwarded datagram before its checksum is
/// filled in (`TP_STATUS_CSUMNOTREADY`); the caller then passes false.
pub fn parse_udp_with(
    frame: &[u8],
    verify_udp_checksum: bool,
) -> Result<UdpDatagram<'_>, FrameError> {
    let eth = frame.get(..ETH_HLEN).ok_or(FrameError::Truncated)?;
    if u16::from_be_bytes([eth[12], eth[13]]) != ETH_P_IP {
        return Err(FrameError::NotIpv4);
    }
    let mut dst_mac = [0u8; 6];
    let mut src_mac = [0u8; 6];
    dst_mac.copy_from_slice(&eth[0..6]);
    src_mac.copy_from_slice(&eth[6..12]);
    let ip = &frame[ETH_HLEN..];
    let fixed = ip.get(..IPV4_HLEN).ok_or(FrameError::Truncated)?;
    if fixed[0] >> 4 != 4 {
        return Err(FrameError::BadIpv4Header);
    }
    let ihl = usize::from(fixed[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([fixed[2], fixed[3]]));
    if ihl < IPV4_HLEN || total < ihl || total > ip.len() {
        return Err(FrameError::BadIpv4Header);
    }
    // Ethernet pads short frames: the IPv4 total length says where the packet ends.
    let ip = &ip[..total];
    if fold(sum16(0, &ip[..ihl])) != 0 {
        return Err(FrameError::BadIpv4Checksum);
    }
    let frag = u16::from_be_bytes([fixed[6], fixed[7]]);
    if frag & 0x3fff != 0 {
        return Err(FrameError::Fragment);
    }
    if fixed[9] != IPPROTO_UDP {
        return Err(FrameError::NotUdp);
    }
    let src_ip = Ipv4Addr::new(fixed[12], fixed[13], fixed[14], fixed[15]);
    let dst_ip = Ipv4Addr::new(fixed[16], fixed[17], fixed[18], fixed[19]);
    let udp = &ip[ihl..];
    let hdr = udp.get(..UDP_HLEN).ok_or(FrameError::Truncated)?;
    let udp_len = usize::from(u16::from_be_bytes([hdr[4], hdr[5]]));
    if udp_len < UDP_HLEN || udp_len > udp.len() {
        return Err(FrameError::BadUdpHeader);
    }
    let udp = &udp[..udp_len];
    if verify_udp_checksum
        && u16::from_be_bytes([hdr[6], hdr[7]]) != 0
        && udp_checksum(src_ip, dst_ip, udp) != 0
    {
        return Err(FrameError::BadUdpChecksum);
    }
    Ok(UdpDatagram {
        src_mac,
        dst_mac,
        src_ip,
        dst_ip,
        src_port: u16::from_be_bytes([hdr[0], hdr[1]]),
        dst_port: u16::from_be_bytes([hdr[2], hdr[3]]),
        payload: &udp[UDP_HLEN..],
    })
}

/// Builds an Ethernet frame carrying `d` (IPv4 without options, DF clear, TTL 64).
pub fn emit_udp(d: &UdpDatagram<'_>) -> Result<Vec<u8>, FrameError> {
    let udp_len = UDP_HLEN + d.payload.len();
    let ip_len = IPV4_HLEN + udp_len;
    let udp_len16 = u16::try_from(udp_len).map_err(|_| FrameError::TooLarge)?;
    let ip_len16 = u16::try_from(ip_len).map_err(|_| FrameError::TooLarge)?;
    let mut f = vec![0u8; ETH_HLEN + ip_len];
    f[0..6].copy_from_slice(&d.dst_mac);
    f[6..12].copy_from_slice(&d.src_mac);
    f[12..14].copy_from_slice(&ETH_P_IP.to_be_bytes());
    let ip = &mut f[ETH_HLEN..];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&ip_len16.to_be_bytes());
    ip[8] = IPDEFTTL;
    ip[9] = IPPROTO_UDP;
    ip[12..16].copy_from_slice(&d.src_ip.octets());
    ip[16..20].copy_from_slice(&d.dst_ip.octets());
    let csum = fold(sum16(0, &ip[..IPV4_HLEN]));
    ip[10..12].copy_from_slice(&csum.to_be_bytes());
    let udp = &mut ip[IPV4_HLEN..];
    udp[0..2].copy_from_slice(&d.src_port.to_be_bytes());
    udp[2..4].copy_from_slice(&d.dst_port.to_be_bytes());
    udp[4..6].copy_from_slice(&udp_len16.to_be_bytes());
    udp[UDP_HLEN..].copy_from_slice(d.payload);
    let mut csum = udp_checksum(d.src_ip, d.dst_ip, udp);
    if csum == 0 {
        // RFC 768: a computed zero is sent as all ones (zero means "no checksum").
        csum = 0xffff;
    }
    udp[6..8].copy_from_slice(&csum.to_be_bytes());
    Ok(f)
}

/// Fuzz entry point: [`parse_udp`] never panics, and what it accepts re-emits to a frame
/// that parses to the same datagram.
pub fn fuzz_check(data: &[u8]) {
    let _ = parse_udp_with(data, false);
    if let Ok(d) = parse_udp(data) {
        if let Ok(f) = emit_udp(&d) {
            assert_eq!(parse_udp(&f).ok(), Some(d), "frame round trip");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A DHCP-sized broadcast from 0.0.0.0:68 to 255.255.255.255:67 as a Linux raw
    /// socket sends it: the headers are checked against values computed by hand.
    #[test]
    fn emit_known_headers() {
        let payload = [0xabu8; 4];
        let d = UdpDatagram {
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: ETH_BROADCAST,
            src_ip: Ipv4Addr::UNSPECIFIED,
            dst_ip: Ipv4Addr::BROADCAST,
            src_port: 68,
            dst_port: 67,
            payload: &payload,
        };
        let f = emit_udp(&d).unwrap();
        #[rustfmt::skip]
        let want: [u8; 46] = [
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 1, 0x08, 0x00,
            0x45, 0, 0, 32, 0, 0, 0, 0, 64, 17, 0x7a, 0xce, 0, 0, 0, 0, 255, 255, 255, 255,
            0, 68, 0, 67, 0, 12, 0xa7, 0xf8, 0xab, 0xab, 0xab, 0xab,
        ];
        assert_eq!(f, want);
        assert_eq!(parse_udp(&f).unwrap(), d);
    }

    #[test]
    fn refusals() {
        let d = UdpDatagram {
            src_mac: [2, 0, 0, 0, 0, 2],
            dst_mac: [2, 0, 0, 0, 0, 1],
            src_ip: Ipv4Addr::new(10, 0, 0, 1),
            dst_ip: Ipv4Addr::new(10, 0, 0, 2),
            src_port: 67,
            dst_port: 68,
            payload: b"hello",
        };
        let f = emit_udp(&d).unwrap();
        // Ethernet padding after the IP packet is ignored.
        let mut padded = f.clone();
        padded.resize(60, 0);
        assert_eq!(parse_udp(&padded).unwrap(), d);
        let mut g = f.clone();
        g[12] = 0x86;
        assert_eq!(parse_udp(&g), Err(FrameError::NotIpv4));
        let mut g = f.clone();
        g[ETH_HLEN + 15] ^= 1;
        assert_eq!(parse_udp(&g), Err(FrameError::BadIpv4Checksum));
        let mut g = f.clone();
        g[f.len() - 1] ^= 1;
        assert_eq!(parse_udp(&g), Err(FrameError::BadUdpChecksum));
        assert!(parse_udp_with(&g, false).is_ok());
        // No UDP checksum (zero) is accepted.
        let mut g = f.clone();
        g[ETH_HLEN + 26] = 0;
        g[ETH_HLEN + 27] = 0;
        g[f.len() - 1] ^= 1;
        assert!(parse_udp(&g).is_ok());
        let mut g = f.clone();
        g[ETH_HLEN + 3] = 200;
        assert_eq!(parse_udp(&g), Err(FrameError::BadIpv4Header));
        for len in 0..f.len() {
            assert!(parse_udp(&f[..len]).is_err());
        }
        let mut g = f.clone();
        for i in 0..g.len() {
            let o = g[i];
            for v in [0, 0xff, o ^ 1] {
                g[i] = v;
                fuzz_check(&g);
            }
            g[i] = o;
        }
    }
}
