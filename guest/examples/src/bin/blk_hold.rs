//! Holds the block device `storage` for the supervisor's tests: reads sector 0, prints
//! `blk_hold: sector0 <its first 16 bytes in hex>`, then `blk_hold: holding` and waits
//! forever (one POLL every 10 s). With the argument `once` it exits 0 instead of
//! holding. Exits 1 (`blk_hold: FAIL ...`) when the device is missing or unreadable.
#![no_std]
#![no_main]

use core::fmt;

use petrel_guest::{StartInfo, println, time};

petrel_guest::manifest! { block "storage" }
petrel_guest::entry!(main);

const MAX_SECTOR: usize = 4096;
const SHOWN_BYTES: usize = 16;
const IDLE_POLL_NS: u64 = 10_000_000_000;

/// Bytes as lowercase hex, no separators.
struct Hex<'a>(&'a [u8]);

impl fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

fn main(si: &StartInfo) -> i32 {
    let Some(dev) = petrel_guest::block("storage") else {
        println!("blk_hold: FAIL: device storage not attached");
        return 1;
    };
    let len = usize::try_from(dev.block_size()).unwrap_or(usize::MAX);
    if !(SHOWN_BYTES..=MAX_SECTOR).contains(&len) {
        println!("blk_hold: FAIL: unsupported sector size {len}");
        return 1;
    }
    let mut buf = [0u8; MAX_SECTOR];
    if let Err(e) = dev.read(0, &mut buf[..len]) {
        println!("blk_hold: FAIL: reading sector 0: {e}");
        return 1;
    }
    println!("blk_hold: sector0 {}", Hex(&buf[..SHOWN_BYTES]));
    if si.args().next() == Some("once") {
        return 0;
    }
    println!("blk_hold: holding");
    loop {
        time::poll(IDLE_POLL_NS);
    }
}
