//! Block device throughput benchmark over the device `storage`.
//!
//! `bench_blk write|read [CHUNK [PASSES]]` writes (or reads) the whole device front to
//! back PASSES times (default 1), `CHUNK` bytes per hypercall (default: one sector, as
//! Solo5's own bindings allow; a multiple of the sector size up to 64 KiB, which both
//! tenders accept since only the bindings check the length), and prints one line:
//!
//! `bench: op=write bytes=B chunk=C calls=N tsc_cycles=T ns=D kib_per_s=R`
//!
//! (B counts every pass.)//!
//! Times are the guest's TSC over the loop alone (boot excluded). Writes put a
//! non-zero byte at the start of every chunk so a harness can see they landed. Exits 0,
//! 1 if a hypercall fails, 2 on a bad argument or geometry.
#![no_std]
#![no_main]

use core::arch::asm;

use petrel_guest::time::{ticks_to_ns, tsc_scale};
use petrel_guest::{StartInfo, hypercall, println};

petrel_guest::manifest! { block "storage" }
petrel_guest::entry!(main);

/// Largest chunk; the buffer lives on the stack (zeroed once, outside the timed loop).
const MAX_CHUNK: usize = 64 * 1024;

fn rdtsc() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: `rdtsc` only reads the time stamp counter into EDX:EAX.
    unsafe {
        asm!("rdtsc", out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags));
    }
    (u64::from(hi) << 32) | u64::from(lo)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Read,
    Write,
}

fn main(si: &StartInfo) -> i32 {
    let Some(dev) = petrel_guest::block("storage") else {
        println!("bench: FAIL: device storage not attached");
        return 2;
    };
    let mut args = si.args();
    let op = match args.next() {
        Some("read") => Op::Read,
        Some("write") => Op::Write,
        _ => {
            println!("bench: FAIL: usage: bench_blk write|read [CHUNK [PASSES]]");
            return 2;
        }
    };
    let sector = dev.block_size();
    let chunk = match args.next().map(str::parse::<u64>) {
        None => sector,
        Some(Ok(n)) => n,
        Some(Err(_)) => 0,
    };
    let passes = match args.next().map(str::parse::<u64>) {
        None => 1,
        Some(Ok(n)) => n,
        Some(Err(_)) => 0,
    };
    let capacity = dev.capacity_bytes();
    let geometry_ok = sector != 0
        && chunk != 0
        && chunk % sector == 0
        && chunk <= MAX_CHUNK as u64
        && capacity % chunk == 0
        && passes != 0;
    let Ok(chunk_len) = usize::try_from(chunk) else {
        return 2;
    };
    if !geometry_ok {
        println!(
            "bench: FAIL: chunk {chunk} must be a multiple of the sector ({sector}), at most {MAX_CHUNK}, and divide the capacity ({capacity}); passes ({passes}) at least 1"
        );
        return 2;
    }
    let mut buf = [0u8; MAX_CHUNK];
    let buf = &mut buf[..chunk_len];
    buf[0] = 0xa5;
    let handle = dev.handle();
    let calls = capacity / chunk * passes;
    let bytes = capacity.saturating_mul(passes);
    let start = rdtsc();
    for _ in 0..passes {
        let mut offset = 0;
        while offset < capacity {
            let ret = match op {
                Op::Write => hypercall::block_write(handle, offset, buf),
                Op::Read => hypercall::block_read(handle, offset, buf),
            };
            if ret != 0 {
                println!("bench: FAIL: hypercall at offset {offset} returned {ret}");
                return 1;
            }
            offset += chunk;
        }
    }
    let cycles = rdtsc().wrapping_sub(start);
    let tsc_hz = petrel_guest::start::boot_info().map_or(0, |bi| bi.cpu_cycle_freq);
    let ns = tsc_scale(tsc_hz).map_or(0, |(mult, shift)| ticks_to_ns(cycles, mult, shift));
    // KiB/s = bytes * 10^9 / ns / 1024, in u128 so that no product overflows.
    let kib_per_s = (u128::from(bytes) * 1_000_000_000)
        .checked_div(u128::from(ns) * 1024)
        .unwrap_or(0);
    println!(
        "bench: op={} bytes={bytes} chunk={chunk} calls={calls} tsc_cycles={cycles} ns={ns} kib_per_s={kib_per_s}",
        if op == Op::Write { "write" } else { "read" },
    );
    0
}
