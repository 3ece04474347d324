//! Checks the clocks: wall time moves forward, and `poll(50 ms)` with no devices waits
//! at least ~50 ms by the TSC clock (and not absurdly longer). Prints what it measured
//! and `time: OK`.
#![no_std]
#![no_main]

use petrel_guest::time::{monotonic_ns, poll, walltime_ns};
use petrel_guest::{StartInfo, println};

petrel_guest::manifest! {}
petrel_guest::entry!(main);

const TIMEOUT_NS: u64 = 50_000_000;
/// The TSC frequency comes from KVM and may be off by a little.
const MIN_WAIT_NS: u64 = TIMEOUT_NS * 95 / 100;
/// A busy machine may oversleep, but not by seconds.
const MAX_WAIT_NS: u64 = 5_000_000_000;
/// 2020-01-01T00:00:00Z: a wall clock before this is not set.
const WALL_MIN_NS: u64 = 1_577_836_800_000_000_000;

fn main(_: &StartInfo) -> i32 {
    let wall0 = walltime_ns();
    let mono0 = monotonic_ns();
    let ready = poll(TIMEOUT_NS);
    let mono1 = monotonic_ns();
    let wall1 = walltime_ns();
    let waited = mono1.saturating_sub(mono0);
    let wall_waited = wall1.saturating_sub(wall0);
    println!(
        "time: walltime {wall0} ns; poll({} ms) returned ready_set={ready:#x} after {} us by TSC, {} us by walltime",
        TIMEOUT_NS / 1_000_000,
        waited / 1000,
        wall_waited / 1000
    );
    let checks = [
        (wall0 >= WALL_MIN_NS, "walltime is set"),
        (wall1 > wall0, "walltime moves forward"),
        (mono1 > mono0, "monotonic time moves forward"),
        (ready == 0, "no device is ready"),
        (waited >= MIN_WAIT_NS, "poll waited the timeout"),
        (waited <= MAX_WAIT_NS, "poll did not wait far too long"),
        (wall_waited >= MIN_WAIT_NS, "walltime saw the wait"),
    ];
    for (ok, what) in checks {
        if !ok {
            println!("time: FAIL: {what}");
            return 1;
        }
    }
    println!("time: OK");
    0
}
