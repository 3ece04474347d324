//! Clocks and waiting.
//!
//! The monotonic clock is the TSC scaled by the frequency the tender reports in
//! `HvtBootInfo::cpu_cycle_freq`, as Solo5's `tscclock.c` does: nanoseconds =
//! `(ticks * mult) >> shift` with a 32-bit `mult`, so reading it costs one `rdtsc` and
//! one multiply and never a VM exit. Wall clock time is a hypercall.

use core::arch::asm;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::hypercall;

const NSEC_PER_SEC: u64 = 1_000_000_000;

static TSC_BASE: AtomicU64 = AtomicU64::new(0);
static TSC_MULT: AtomicU32 = AtomicU32::new(0);
static TSC_SHIFT: AtomicU32 = AtomicU32::new(0);

/// Fixed-point factors converting TSC ticks at `freq_hz` to nanoseconds: the largest
/// shift `s <= 32` such that `mult = (10^9 << s) / freq_hz` fits in 32 bits. `None`
/// for a frequency of 0 or one so low that no shift works.
pub const fn tsc_scale(freq_hz: u64) -> Option<(u32, u32)> {
    if freq_hz == 0 {
        return None;
    }
    let mut shift = 32;
    while shift > 0 {
        let mult = (NSEC_PER_SEC << shift) / freq_hz;
        if mult != 0 && mult <= u32::MAX as u64 {
            #[allow(clippy::cast_possible_truncation)] // checked just above
            return Some((mult as u32, shift));
        }
        shift -= 1;
    }
    None
}

/// Nanoseconds in `ticks` TSC ticks with the factors from [`tsc_scale`].
pub const fn ticks_to_ns(ticks: u64, mult: u32, shift: u32) -> u64 {
    let ns = ((ticks as u128) * (mult as u128)) >> shift;
    if ns > u64::MAX as u128 {
        u64::MAX
    } else {
        #[allow(clippy::cast_possible_truncation)] // checked just above
        let ns = ns as u64;
        ns
    }
}

fn rdtsc() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: `rdtsc` only reads the time stamp counter into EDX:EAX.
    unsafe {
        asm!("rdtsc", out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags))
    };
    (u64::from(hi) << 32) | u64::from(lo)
}

/// Starts the monotonic clock at 0. Called once by `_start`.
pub(crate) fn init(cpu_cycle_freq_hz: u64) {
    let Some((mult, shift)) = tsc_scale(cpu_cycle_freq_hz) else {
        crate::abort_msg("cpu_cycle_freq from the tender is unusable");
    };
    TSC_MULT.store(mult, Ordering::Relaxed);
    TSC_SHIFT.store(shift, Ordering::Relaxed);
    TSC_BASE.store(rdtsc(), Ordering::Relaxed);
}

/// Monotonic time in nanoseconds since the guest started.
pub fn monotonic_ns() -> u64 {
    let ticks = rdtsc().wrapping_sub(TSC_BASE.load(Ordering::Relaxed));
    ticks_to_ns(
        ticks,
        TSC_MULT.load(Ordering::Relaxed),
        TSC_SHIFT.load(Ordering::Relaxed),
    )
}

/// Wall clock time (the host's `CLOCK_REALTIME`) in nanoseconds since the Unix epoch.
pub fn walltime_ns() -> u64 {
    hypercall::walltime_ns()
}

/// Waits up to `timeout_ns` for input on any net device. Returns the ready set: bit `h`
/// is set when the device with handle `h` has input (see [`crate::Net::ready_bit`]);
/// 0 on timeout.
pub fn poll(timeout_ns: u64) -> u64 {
    hypercall::poll(timeout_ns)
}

/// Waits until monotonic time `deadline_ns` or until a net device has input, as
/// `solo5_yield()`. Returns the ready set.
pub fn yield_until(deadline_ns: u64) -> u64 {
    hypercall::poll(deadline_ns.saturating_sub(monotonic_ns()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_matches_solo5_for_common_frequencies() {
        // 2.596128 GHz: shift 32, mult = 10^9 * 2^32 / f.
        let (mult, shift) = tsc_scale(2_596_128_000).unwrap();
        assert_eq!(shift, 32);
        assert_eq!(u64::from(mult), (NSEC_PER_SEC << 32) / 2_596_128_000);
        // One second of ticks is one second, within a nanosecond per second.
        let ns = ticks_to_ns(2_596_128_000, mult, shift);
        assert!(ns.abs_diff(NSEC_PER_SEC) <= 1, "{ns}");
    }

    #[test]
    fn slow_clocks_use_a_smaller_shift() {
        let (mult, shift) = tsc_scale(100_000_000).unwrap(); // 100 MHz: 10 ns per tick
        assert!(shift < 32);
        assert_eq!(ticks_to_ns(1000, mult, shift), 10_000);
        assert_eq!(tsc_scale(0), None);
    }

    #[test]
    fn conversion_saturates_instead_of_wrapping() {
        assert_eq!(ticks_to_ns(u64::MAX, u32::MAX, 0), u64::MAX);
    }
}
