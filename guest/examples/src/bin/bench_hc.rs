//! Hypercall round-trip benchmark (no devices, so it runs under any tender unchanged).
//!
//! `bench_hc walltime N` makes N WALLTIME hypercalls in a tight loop, `bench_hc puts N`
//! N PUTS hypercalls of 0 bytes, and prints one line:
//!
//! `bench: op=walltime calls=N tsc_cycles=C cycles_per_call=X ns_per_call=Y tsc_hz=F`
//!
//! Cycles are the guest's TSC between the first and the last call; nanoseconds use the
//! TSC frequency the tender reports. `N = 0` measures the loop-free baseline (boot,
//! argument parsing and the result line), which a harness subtracts from its wall clock.
//! Exits 0, or 2 on a bad argument.
#![no_std]
#![no_main]

use core::arch::asm;

use petrel_guest::time::{ticks_to_ns, tsc_scale};
use petrel_guest::{StartInfo, hypercall, println};

petrel_guest::manifest! {}
petrel_guest::entry!(main);

/// Calls when no count is given.
const DEFAULT_CALLS: u64 = 10_000;

/// The byte the 0-byte PUTS points at: a valid guest address, never read.
static PUTS_BYTE: u8 = 0;

fn rdtsc() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: `rdtsc` only reads the time stamp counter into EDX:EAX.
    unsafe {
        asm!("rdtsc", out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags));
    }
    (u64::from(hi) << 32) | u64::from(lo)
}

fn main(si: &StartInfo) -> i32 {
    let mut args = si.args();
    let op = args.next().unwrap_or("walltime");
    let calls = match args.next().map(str::parse::<u64>) {
        None => DEFAULT_CALLS,
        Some(Ok(n)) => n,
        Some(Err(_)) => {
            println!("bench: FAIL: usage: bench_hc walltime|puts [N]");
            return 2;
        }
    };
    let puts_gpa = (&raw const PUTS_BYTE) as u64;
    // Two separate loops: the loop body is the hypercall and a counter, nothing else.
    let start = rdtsc();
    match op {
        "walltime" => {
            for _ in 0..calls {
                core::hint::black_box(hypercall::walltime_ns());
            }
        }
        "puts" => {
            for _ in 0..calls {
                hypercall::puts_raw(puts_gpa, 0);
            }
        }
        _ => {
            println!("bench: FAIL: unknown operation {op}; want walltime or puts");
            return 2;
        }
    }
    let cycles = rdtsc().wrapping_sub(start);
    let tsc_hz = petrel_guest::start::boot_info().map_or(0, |bi| bi.cpu_cycle_freq);
    let ns = tsc_scale(tsc_hz).map_or(0, |(mult, shift)| ticks_to_ns(cycles, mult, shift));
    println!(
        "bench: op={op} calls={calls} tsc_cycles={cycles} cycles_per_call={} ns_per_call={} tsc_hz={tsc_hz}",
        cycles.checked_div(calls).unwrap_or(0),
        ns.checked_div(calls).unwrap_or(0),
    );
    0
}
