//! A small seeded pseudo-random generator (SplitMix64) for transaction ids and jitter.
//!
//! Not for secrets: it spreads retransmissions and makes transaction ids unguessable
//! enough for a LAN protocol with no security of its own. The binaries seed it from the
//! kernel (`getrandom`); tests seed it with a fixed value so that runs repeat exactly.

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, full period, good enough statistics.
#[derive(Debug, Clone)]
pub struct Rng {
    state: u64,
}

impl Rng {
    /// A generator that yields the same sequence for the same seed.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// The next 32 random bits.
    pub fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    /// A value in `0..=max` (slightly biased for huge `max`, which callers do not use).
    pub fn below_or_equal(&mut self, max: u64) -> u64 {
        match max.checked_add(1) {
            Some(n) => self.next_u64() % n,
            None => self.next_u64(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sequence() {
        let mut a = Rng::new(42);
        let mut b = Rng::new(42);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
        assert_ne!(Rng::new(1).next_u64(), Rng::new(2).next_u64());
    }

    #[test]
    fn bounded() {
        let mut r = Rng::new(7);
        for _ in 0..1000 {
            assert!(r.below_or_equal(10) <= 10);
        }
        assert_eq!(r.below_or_equal(0), 0);
        let _ = r.below_or_equal(u64::MAX);
    }
}
