//! Console load for the supervisor's tests and bench: `spew [LINES [LEN]]` prints LINES
//! numbered lines of LEN bytes (newline included; default 10 lines of 80 bytes, LEN 16
//! to 256), one PUTS each, then `spew: done LINES` and waits forever without devices
//! (one POLL every 10 s): the smallest long-running unikernel. Exits 2 on a bad
//! argument.
#![no_std]
#![no_main]

use petrel_guest::{StartInfo, hypercall, println, time};

petrel_guest::manifest! {}
petrel_guest::entry!(main);

const DEFAULT_LINES: u64 = 10;
const DEFAULT_LEN: usize = 80;
const MIN_LEN: usize = 16;
const MAX_LEN: usize = 256;
/// `spew ` then 10 digits then a space.
const NUMBER_AT: usize = 5;
const DIGITS: usize = 10;
const IDLE_POLL_NS: u64 = 10_000_000_000;

fn arg<T: core::str::FromStr>(a: Option<&str>, default: T) -> Option<T> {
    match a {
        None => Some(default),
        Some(s) => s.parse().ok(),
    }
}

fn main(si: &StartInfo) -> i32 {
    let mut args = si.args();
    let (Some(lines), Some(len)) = (
        arg(args.next(), DEFAULT_LINES),
        arg(args.next(), DEFAULT_LEN),
    ) else {
        println!("spew: usage: spew [LINES [LEN]]");
        return 2;
    };
    if !(MIN_LEN..=MAX_LEN).contains(&len) {
        println!("spew: LEN must be {MIN_LEN} to {MAX_LEN}");
        return 2;
    }
    let mut line = [b'.'; MAX_LEN];
    line[..NUMBER_AT].copy_from_slice(b"spew ");
    line[NUMBER_AT + DIGITS] = b' ';
    line[len - 1] = b'\n';
    for n in 0..lines {
        let mut v = n;
        for d in line[NUMBER_AT..NUMBER_AT + DIGITS].iter_mut().rev() {
            *d = b'0' + (v % 10) as u8;
            v /= 10;
        }
        hypercall::puts(&line[..len]);
    }
    println!("spew: done {lines}");
    loop {
        time::poll(IDLE_POLL_NS);
    }
}
