//! Reply validation (RFC 4330 §5), offset and delay, and whether to set the clock.
//!
//! Times are `i128` nanoseconds since the Unix epoch: wide enough that no arithmetic
//! here can overflow, whatever the server sends.

use super::wire::{LI_ALARM, MODE_SERVER, Packet, Timestamp};

/// Why a reply is not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// Not a server-mode (4) packet.
    #[error("not a server reply (mode {0})")]
    NotServerMode(u8),
    /// Version other than 3 or 4.
    #[error("unsupported NTP version {0}")]
    BadVersion(u8),
    /// Stratum 0: the server tells us to go away (or to slow down).
    #[error("kiss-o'-death {code:?}", code = String::from_utf8_lossy(.0))]
    KissOfDeath([u8; 4]),
    /// Stratum 16 or more: the server is not synchronized.
    #[error("server not synchronized (stratum {0})")]
    BadStratum(u8),
    /// Leap indicator 3: the server's clock is not synchronized.
    #[error("server not synchronized (leap indicator alarm)")]
    Unsynchronized,
    /// Transmit timestamp zero.
    #[error("zero transmit timestamp")]
    ZeroTransmit,
    /// The origin timestamp is not our request's transmit timestamp: not an answer to
    /// our query (stale, duplicated or forged).
    #[error("origin timestamp does not match our request")]
    OriginMismatch,
}

/// Checks a reply to a request that carried `sent_transmit`.
pub fn check_reply(sent_transmit: Timestamp, reply: &Packet) -> Result<(), ReplyError> {
    if reply.mode != MODE_SERVER {
        return Err(ReplyError::NotServerMode(reply.mode));
    }
    if !(3..=4).contains(&reply.version) {
        return Err(ReplyError::BadVersion(reply.version));
    }
    if reply.stratum == 0 {
        return Err(ReplyError::KissOfDeath(reply.reference_id));
    }
    if reply.stratum > 15 {
        return Err(ReplyError::BadStratum(reply.stratum));
    }
    if reply.leap == LI_ALARM {
        return Err(ReplyError::Unsynchronized);
    }
    if reply.transmit.is_zero() {
        return Err(ReplyError::ZeroTransmit);
    }
    if reply.origin != sent_transmit {
        return Err(ReplyError::OriginMismatch);
    }
    Ok(())
}

/// One measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// How far our clock is behind the server's (add it to our time).
    pub offset_nanos: i128,
    /// Round-trip delay, server processing excluded.
    pub delay_nanos: i128,
    /// The server's stratum.
    pub stratum: u8,
}

impl Sample {
    /// The sample from our send time `t1` and receive time `t4` (wall clock, Unix
    /// nanoseconds) and the server's T2/T3 (RFC 4330 §5):
    /// offset = ((T2 - T1) + (T3 - T4)) / 2, delay = (T4 - T1) - (T3 - T2).
    pub fn new(t1: i128, t4: i128, reply: &Packet) -> Self {
        let t2 = reply.receive.to_unix_nanos();
        let t3 = reply.transmit.to_unix_nanos();
        Self {
            offset_nanos: ((t2 - t1) + (t3 - t4)) / 2,
            delay_nanos: (t4 - t1) - (t3 - t2),
            stratum: reply.stratum,
        }
    }
}

/// What to do with the clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Set `CLOCK_REALTIME` to this (Unix nanoseconds).
    Set {
        /// The new time.
        unix_nanos: i128,
    },
    /// Within the threshold: leave it.
    InSync,
    /// The result would be before the persisted floor: leave it (a server or a path
    /// that lies must not send the box back in time below what it has seen).
    BelowFloor {
        /// The time the server suggests.
        unix_nanos: i128,
    },
    /// The sample's delay is negative: the server's timestamps are inconsistent.
    Inconsistent,
}

/// Decides from `sample`, taken when our clock read `now` (Unix nanoseconds).
/// `floor_unix_secs` is the persisted clock floor; offsets under `threshold_nanos` (in
/// magnitude) are left alone.
pub fn decide(
    now: i128,
    sample: &Sample,
    floor_unix_secs: Option<i64>,
    threshold_nanos: i128,
) -> Decision {
    // A little negative delay is rounding; more is a server whose clock jumped between
    // T2 and T3, or a lie.
    if sample.delay_nanos < -1_000_000 {
        return Decision::Inconsistent;
    }
    let target = now + sample.offset_nanos;
    if let Some(floor) = floor_unix_secs {
        if target < i128::from(floor) * 1_000_000_000 {
            return Decision::BelowFloor { unix_nanos: target };
        }
    }
    if sample.offset_nanos.abs() < threshold_nanos {
        return Decision::InSync;
    }
    Decision::Set { unix_nanos: target }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sntp::wire::MODE_CLIENT;

    const SEC: i128 = 1_000_000_000;

    fn reply(origin: Timestamp, t2: i128, t3: i128) -> Packet {
        Packet {
            version: 4,
            mode: MODE_SERVER,
            stratum: 2,
            origin,
            receive: Timestamp::from_unix_nanos(t2),
            transmit: Timestamp::from_unix_nanos(t3),
            ..Packet::default()
        }
    }

    #[test]
    fn validation() {
        let sent = Timestamp(0xfeed_f00d_1234_5678);
        let good = reply(sent, 1_700_000_000 * SEC, 1_700_000_000 * SEC);
        assert_eq!(check_reply(sent, &good), Ok(()));
        let bad = |f: fn(&mut Packet)| {
            let mut p = good;
            f(&mut p);
            check_reply(sent, &p).unwrap_err()
        };
        assert_eq!(bad(|p| p.mode = MODE_CLIENT), ReplyError::NotServerMode(3));
        assert_eq!(bad(|p| p.version = 2), ReplyError::BadVersion(2));
        assert_eq!(
            bad(|p| {
                p.stratum = 0;
                p.reference_id = *b"RATE";
            }),
            ReplyError::KissOfDeath(*b"RATE")
        );
        assert_eq!(bad(|p| p.stratum = 16), ReplyError::BadStratum(16));
        assert_eq!(bad(|p| p.leap = 3), ReplyError::Unsynchronized);
        assert_eq!(bad(|p| p.transmit = Timestamp(0)), ReplyError::ZeroTransmit);
        assert_eq!(bad(|p| p.origin.0 ^= 1), ReplyError::OriginMismatch);
        assert_eq!(
            ReplyError::KissOfDeath(*b"DENY").to_string(),
            "kiss-o'-death \"DENY\""
        );
    }

    #[test]
    fn offset_and_delay() {
        // Our clock is 100 s behind; 20 ms each way; the server holds it 1 ms.
        let t1 = 1_700_000_000 * SEC;
        let t2 = t1 + 100 * SEC + 20_000_000;
        let t3 = t2 + 1_000_000;
        let t4 = t1 + 41_000_000;
        let s = Sample::new(t1, t4, &reply(Timestamp(1), t2, t3));
        assert!((s.offset_nanos - 100 * SEC).abs() <= 2);
        assert!((s.delay_nanos - 40_000_000).abs() <= 2);
        assert_eq!(
            decide(t4, &s, Some(1_600_000_000), SEC / 1000),
            Decision::Set {
                unix_nanos: t4 + s.offset_nanos
            }
        );
    }

    #[test]
    fn floor_threshold_and_consistency() {
        let now = 1_700_000_000 * SEC;
        let back = Sample {
            offset_nanos: -100 * SEC,
            delay_nanos: 0,
            stratum: 1,
        };
        // Going back is fine above the floor, refused below it.
        assert!(matches!(
            decide(now, &back, Some(1_600_000_000), 0),
            Decision::Set { .. }
        ));
        assert_eq!(
            decide(now, &back, Some(1_699_999_950), 0),
            Decision::BelowFloor {
                unix_nanos: now - 100 * SEC
            }
        );
        let tiny = Sample {
            offset_nanos: 500_000,
            ..back
        };
        assert_eq!(decide(now, &tiny, None, 1_000_000), Decision::InSync);
        let liar = Sample {
            delay_nanos: -2 * SEC,
            ..back
        };
        assert_eq!(decide(now, &liar, None, 0), Decision::Inconsistent);
    }
}
