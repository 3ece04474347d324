//! Network benchmark over the device `service0` (a tap on the host).
//!
//! - `bench_net tx N SIZE` sends N Ethernet frames of SIZE bytes (60 to MTU + 14) as
//!   fast as it can and prints
//!   `bench: op=tx frames=N size=S tsc_cycles=T ns=D frames_per_s=R`
//!   (guest TSC over the send loop). The frames go to `02:00:00:00:00:01` with the
//!   local experimental EtherType 0x88b5; the host counts them on the tap.
//! - `bench_net echo` sends back every 0x88b5 frame addressed to it, source and
//!   destination swapped, until a frame whose first payload byte is 0xff (the harness's
//!   "stop") arrives, then prints `bench: op=echo frames=N ignored=M`. Other frames
//!   (IPv6 router solicitations and the like) are counted as ignored. With no frame for
//!   10 s it gives up with status 1.
//!
//! Exits 0, 1 on a failed hypercall or the idle timeout, 2 on a bad argument.
#![no_std]
#![no_main]

use core::arch::asm;

use petrel_guest::time::{poll, ticks_to_ns, tsc_scale};
use petrel_guest::{Error, Net, StartInfo, println};

petrel_guest::manifest! { net "service0" }
petrel_guest::entry!(main);

/// IEEE 802 local experimental EtherType 1.
const ETHERTYPE_BENCH: [u8; 2] = [0x88, 0xb5];
/// Where `tx` frames go: a locally administered unicast address nobody owns.
const TX_DST: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
/// First payload byte of the harness's stop frame.
const STOP: u8 = 0xff;
const ETH_HEADER_LEN: usize = 14;
/// Shortest frame without FCS.
const ETH_MIN_LEN: usize = 60;
/// Largest frame handled (MTU 1500 plus the header; jumbo taps are not benchmarked).
const FRAME_MAX: usize = 1514;
/// `echo` gives up after this long without any frame.
const IDLE_TIMEOUT_NS: u64 = 10_000_000_000;

fn rdtsc() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: `rdtsc` only reads the time stamp counter into EDX:EAX.
    unsafe {
        asm!("rdtsc", out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags));
    }
    (u64::from(hi) << 32) | u64::from(lo)
}

fn tsc_to_ns(cycles: u64) -> u64 {
    let tsc_hz = petrel_guest::start::boot_info().map_or(0, |bi| bi.cpu_cycle_freq);
    tsc_scale(tsc_hz).map_or(0, |(mult, shift)| ticks_to_ns(cycles, mult, shift))
}

fn tx(net: &Net, frames: u64, size: usize) -> i32 {
    let max = (usize::from(net.mtu()) + ETH_HEADER_LEN).min(FRAME_MAX);
    if !(ETH_MIN_LEN..=max).contains(&size) {
        println!("bench: FAIL: frame size {size} outside {ETH_MIN_LEN}..={max}");
        return 2;
    }
    let mut frame = [0u8; FRAME_MAX];
    let frame = &mut frame[..size];
    frame[..6].copy_from_slice(&TX_DST);
    frame[6..12].copy_from_slice(&net.mac());
    frame[12..14].copy_from_slice(&ETHERTYPE_BENCH);
    let start = rdtsc();
    for _ in 0..frames {
        if let Err(e) = net.write(frame) {
            println!("bench: FAIL: net write: {e}");
            return 1;
        }
    }
    let cycles = rdtsc().wrapping_sub(start);
    let ns = tsc_to_ns(cycles);
    let per_s = (u128::from(frames) * 1_000_000_000)
        .checked_div(u128::from(ns))
        .unwrap_or(0);
    println!(
        "bench: op=tx frames={frames} size={size} tsc_cycles={cycles} ns={ns} frames_per_s={per_s}"
    );
    0
}

fn echo(net: &Net) -> i32 {
    let mac = net.mac();
    let mut buf = [0u8; FRAME_MAX];
    let (mut echoed, mut ignored) = (0u64, 0u64);
    loop {
        let len = match net.read(&mut buf) {
            Ok(len) => len,
            Err(Error::Again) => {
                if poll(IDLE_TIMEOUT_NS) & net.ready_bit() == 0 {
                    println!("bench: FAIL: no frame for 10 s (echoed {echoed})");
                    return 1;
                }
                continue;
            }
            Err(e) => {
                println!("bench: FAIL: net read: {e}");
                return 1;
            }
        };
        let frame = &mut buf[..len];
        let ours = len > ETH_HEADER_LEN && frame[..6] == mac && frame[12..14] == ETHERTYPE_BENCH;
        if !ours {
            ignored += 1;
            continue;
        }
        if frame[ETH_HEADER_LEN] == STOP {
            println!("bench: op=echo frames={echoed} ignored={ignored}");
            return 0;
        }
        frame.copy_within(6..12, 0);
        frame[6..12].copy_from_slice(&mac);
        if let Err(e) = net.write(frame) {
            println!("bench: FAIL: net write: {e}");
            return 1;
        }
        echoed += 1;
    }
}

fn main(si: &StartInfo) -> i32 {
    let Some(net) = petrel_guest::net("service0") else {
        println!("bench: FAIL: device service0 not attached");
        return 2;
    };
    let mut args = si.args();
    let op = args.next();
    let n = args.next().map(str::parse::<u64>);
    let size = args.next().map(str::parse::<usize>);
    match (op, n, size) {
        (Some("tx"), Some(Ok(n)), Some(Ok(size))) => tx(&net, n, size),
        (Some("echo"), None, None) => echo(&net),
        _ => {
            println!("bench: FAIL: usage: bench_net tx N SIZE | bench_net echo");
            2
        }
    }
}
