//! SNTPv4 (RFC 4330): the packet, reply validation and the clock decision.
//!
//! `petrel-sntp` sends one client-mode packet whose transmit timestamp is random (the
//! server echoes it as the origin, which proves the reply answers our query, and our
//! clock reading never leaves the box), then feeds the reply and its own clock readings
//! to [`decide::check_reply`], [`decide::Sample::new`] and [`decide::decide`]. Setting
//! the clock is the binary's only side effect.

pub mod decide;
pub mod wire;

/// Fuzz entry point: parse, re-emit, and run the reply checks and the decision.
pub fn fuzz_check(data: &[u8]) {
    let Ok(p) = wire::Packet::parse(data) else {
        return;
    };
    assert_eq!(wire::Packet::parse(&p.emit()).ok(), Some(p), "round trip");
    for origin in [p.origin, p.transmit, wire::Timestamp(0)] {
        if decide::check_reply(origin, &p).is_ok() {
            for (t1, t4) in [(0, 1), (i128::from(i64::MAX), i128::from(i64::MAX) + 5)] {
                let s = decide::Sample::new(t1, t4, &p);
                let _ = decide::decide(t4, &s, Some(i64::MAX), 1_000_000);
                let _ = decide::decide(t4, &s, None, 0);
            }
        }
    }
}
