//! The NTP packet header (RFC 4330 §4), 48 bytes; extension fields and MACs after it
//! are ignored. [`Packet::parse`] checks the length first and never panics.

/// Length of the header.
pub const NTP_PACKET_LEN: usize = 48;
/// The NTP UDP port.
pub const NTP_PORT: u16 = 123;
/// The version we send.
pub const NTP_VERSION: u8 = 4;
/// Mode of a client request.
pub const MODE_CLIENT: u8 = 3;
/// Mode of a server reply.
pub const MODE_SERVER: u8 = 4;
/// Leap indicator "clock not synchronized".
pub const LI_ALARM: u8 = 3;
/// Seconds from the NTP epoch (1900-01-01) to the Unix epoch (1970-01-01).
pub const NTP_UNIX_OFFSET_SECS: i128 = 2_208_988_800;
const NANOS_PER_SEC: i128 = 1_000_000_000;
const ERA_SECS: i128 = 1 << 32;

/// An NTP timestamp: seconds since 1900 (mod 2^32) and a binary fraction, 32.32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// Whether the field is all zeros ("unknown").
    pub fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// Nanoseconds since the Unix epoch. The era follows RFC 4330 §3: with the top bit
    /// set, 1968–2036; without, 2036–2104.
    pub fn to_unix_nanos(self) -> i128 {
        let secs = i128::from(self.0 >> 32);
        let frac = i128::from(self.0 & 0xffff_ffff);
        let era = if secs & 0x8000_0000 != 0 { 0 } else { ERA_SECS };
        let ntp_secs = secs + era;
        (ntp_secs - NTP_UNIX_OFFSET_SECS) * NANOS_PER_SEC + ((frac * NANOS_PER_SEC) >> 32)
    }

    /// The timestamp of `nanos` since the Unix epoch (seconds wrap at the era).
    pub fn from_unix_nanos(nanos: i128) -> Self {
        let ntp = nanos + NTP_UNIX_OFFSET_SECS * NANOS_PER_SEC;
        let secs = ntp.div_euclid(NANOS_PER_SEC).rem_euclid(ERA_SECS);
        let sub = ntp.rem_euclid(NANOS_PER_SEC);
        let frac = (sub << 32) / NANOS_PER_SEC;
        // secs < 2^32 and frac < 2^32 by construction.
        let secs = u64::try_from(secs).unwrap_or(0);
        let frac = u64::try_from(frac).unwrap_or(0);
        Self((secs << 32) | frac)
    }
}

/// Why bytes are not an NTP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SntpWireError {
    /// Shorter than 48 bytes.
    #[error("NTP packet too short: {0} bytes")]
    Truncated(usize),
}

/// The NTP header fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Packet {
    /// Leap indicator (2 bits).
    pub leap: u8,
    /// Version (3 bits).
    pub version: u8,
    /// Mode (3 bits).
    pub mode: u8,
    /// Stratum: 0 kiss-o'-death, 1 primary, 2..=15 secondary, 16 unsynchronized.
    pub stratum: u8,
    /// Poll exponent.
    pub poll: i8,
    /// Precision exponent.
    pub precision: i8,
    /// Root delay, 16.16 seconds.
    pub root_delay: u32,
    /// Root dispersion, 16.16 seconds.
    pub root_dispersion: u32,
    /// Reference id (the kiss code when stratum is 0).
    pub reference_id: [u8; 4],
    /// When the server's clock was last set.
    pub reference: Timestamp,
    /// T1 as echoed: our request's transmit timestamp.
    pub origin: Timestamp,
    /// T2: when the request reached the server.
    pub receive: Timestamp,
    /// T3: when the reply left the server.
    pub transmit: Timestamp,
}

fn be_u32(b: &[u8; NTP_PACKET_LEN], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn be_u64(b: &[u8; NTP_PACKET_LEN], at: usize) -> u64 {
    (u64::from(be_u32(b, at)) << 32) | u64::from(be_u32(b, at + 4))
}

impl Packet {
    /// A client request carrying `transmit`.
    pub fn request(transmit: Timestamp) -> Self {
        Self {
            version: NTP_VERSION,
            mode: MODE_CLIENT,
            transmit,
            ..Self::default()
        }
    }

    /// Parses the first 48 bytes of `b`.
    pub fn parse(b: &[u8]) -> Result<Self, SntpWireError> {
        let b: &[u8; NTP_PACKET_LEN] = b
            .get(..NTP_PACKET_LEN)
            .and_then(|h| h.try_into().ok())
            .ok_or(SntpWireError::Truncated(b.len()))?;
        Ok(Self {
            leap: b[0] >> 6,
            version: (b[0] >> 3) & 7,
            mode: b[0] & 7,
            stratum: b[1],
            poll: i8::from_be_bytes([b[2]]),
            precision: i8::from_be_bytes([b[3]]),
            root_delay: be_u32(b, 4),
            root_dispersion: be_u32(b, 8),
            reference_id: [b[12], b[13], b[14], b[15]],
            reference: Timestamp(be_u64(b, 16)),
            origin: Timestamp(be_u64(b, 24)),
            receive: Timestamp(be_u64(b, 32)),
            transmit: Timestamp(be_u64(b, 40)),
        })
    }

    /// The 48 bytes (fields masked to their widths).
    pub fn emit(&self) -> [u8; NTP_PACKET_LEN] {
        let mut b = [0u8; NTP_PACKET_LEN];
        b[0] = ((self.leap & 3) << 6) | ((self.version & 7) << 3) | (self.mode & 7);
        b[1] = self.stratum;
        b[2] = self.poll.to_be_bytes()[0];
        b[3] = self.precision.to_be_bytes()[0];
        b[4..8].copy_from_slice(&self.root_delay.to_be_bytes());
        b[8..12].copy_from_slice(&self.root_dispersion.to_be_bytes());
        b[12..16].copy_from_slice(&self.reference_id);
        b[16..24].copy_from_slice(&self.reference.0.to_be_bytes());
        b[24..32].copy_from_slice(&self.origin.0.to_be_bytes());
        b[32..40].copy_from_slice(&self.receive.0.to_be_bytes());
        b[40..48].copy_from_slice(&self.transmit.0.to_be_bytes());
        b
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A reply as chrony 4.3 sends it (stratum 2, ref id 192.0.2.1), from a capture's
    /// field values.
    #[rustfmt::skip]
    const REPLY: [u8; 48] = [
        0x24, 0x02, 0x03, 0xe8, 0x00, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x20,
        0xc0, 0x00, 0x02, 0x01,
        0xea, 0xd0, 0x4e, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0,
        0xea, 0xd0, 0x4e, 0x10, 0x80, 0x00, 0x00, 0x00,
        0xea, 0xd0, 0x4e, 0x10, 0x80, 0x10, 0x00, 0x00,
    ];

    #[test]
    fn parses_a_reply() {
        let p = Packet::parse(&REPLY).unwrap();
        assert_eq!((p.leap, p.version, p.mode, p.stratum), (0, 4, 4, 2));
        assert_eq!((p.poll, p.precision), (3, -24));
        assert_eq!(p.reference_id, [192, 0, 2, 1]);
        assert_eq!(p.origin, Timestamp(0x1234_5678_9abc_def0));
        // 0xead04e10 = 3939520016 s since 1900 + 0.5 s.
        assert_eq!(p.receive.to_unix_nanos(), 1_730_531_216_500_000_000);
        assert_eq!(p.emit(), REPLY);
        assert_eq!(
            Packet::parse(&REPLY[..47]),
            Err(SntpWireError::Truncated(47))
        );
        let mut longer = REPLY.to_vec();
        longer.extend_from_slice(&[0; 20]);
        assert_eq!(Packet::parse(&longer).unwrap(), p);
    }

    #[test]
    fn request_bytes() {
        let r = Packet::request(Timestamp(0x0102_0304_0506_0708)).emit();
        assert_eq!(r[0], 0x23);
        assert!(r[1..40].iter().all(|&b| b == 0));
        assert_eq!(&r[40..], &[1, 2, 3, 4, 5, 6, 7, 8]);
    }

    #[test]
    fn eras() {
        // The Unix epoch, 2036's rollover, and past it.
        assert_eq!(Timestamp(2_208_988_800 << 32).to_unix_nanos(), 0);
        assert_eq!(
            Timestamp::from_unix_nanos(0),
            Timestamp(2_208_988_800 << 32)
        );
        let rollover_unix = (1i128 << 32) - NTP_UNIX_OFFSET_SECS;
        assert_eq!(Timestamp(0).to_unix_nanos(), rollover_unix * NANOS_PER_SEC);
        for unix_secs in [0, 1_700_000_000, rollover_unix - 1, rollover_unix + 10] {
            let n = unix_secs * NANOS_PER_SEC + 123_456_789;
            let back = Timestamp::from_unix_nanos(n).to_unix_nanos();
            assert!((back - n).abs() <= 1, "{unix_secs}");
        }
    }
}
