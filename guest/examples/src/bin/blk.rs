//! Writes a sector-dependent pattern over the whole block device `storage`, reads every
//! sector back and compares, checks that Solo5's argument rules hold (EINVAL past the
//! end, on unaligned offsets and on partial sectors), then prints
//! `blk: OK <sectors> sectors of <n> bytes`. Works for any sector size up to 4096.
#![no_std]
#![no_main]

use petrel_guest::{Block, Error, StartInfo, println};

petrel_guest::manifest! { block "storage" }
petrel_guest::entry!(main);

const MAX_SECTOR: usize = 4096;

/// The pattern of `sector`: 8-byte little-endian words unique to the sector and the
/// word, never zero (so the host can see that writes landed).
fn word(sector: u64, i: u64) -> u64 {
    (sector << 32 | i) ^ 0xa5a5_5a5a_0000_0001
}

fn fill(buf: &mut [u8], sector: u64) {
    for (i, w) in (0u64..).zip(buf.chunks_exact_mut(8)) {
        w.copy_from_slice(&word(sector, i).to_le_bytes());
    }
}

fn matches(buf: &[u8], sector: u64) -> bool {
    (0u64..)
        .zip(buf.chunks_exact(8))
        .all(|(i, w)| w == word(sector, i).to_le_bytes())
}

fn run(dev: &Block) -> Result<(), &'static str> {
    let bs = dev.block_size();
    let len = usize::try_from(bs).map_err(|_| "sector size")?;
    if len > MAX_SECTOR || len % 8 != 0 || dev.sectors() == 0 {
        return Err("unsupported geometry");
    }
    let mut buf = [0u8; MAX_SECTOR];
    let buf = &mut buf[..len];
    for s in 0..dev.sectors() {
        fill(buf, s);
        dev.write(s * bs, buf).map_err(|_| "write failed")?;
    }
    for s in 0..dev.sectors() {
        // Spoil the buffer's first word (the pattern never has a zero word), so that a
        // read that returns OK without data cannot pass.
        buf[..8].fill(0);
        dev.read(s * bs, buf).map_err(|_| "read failed")?;
        if !matches(buf, s) {
            println!("blk: sector {s} does not read back what was written");
            return Err("verify failed");
        }
    }
    let end = dev.capacity_bytes();
    let expect_einval = [
        (dev.read(end, buf), "read past the end"),
        (dev.write(end, buf), "write past the end"),
        (dev.read(1, buf), "unaligned read"),
        (dev.write(bs / 2, buf), "unaligned write"),
        (dev.read(0, &mut buf[..len / 2]), "short read"),
    ];
    for (result, what) in expect_einval {
        if result != Err(Error::Invalid) {
            println!("blk: {what} gave {result:?}, not EINVAL");
            return Err("argument checks");
        }
    }
    Ok(())
}

fn main(_: &StartInfo) -> i32 {
    let Some(dev) = petrel_guest::block("storage") else {
        println!("blk: FAIL: device storage not attached");
        return 1;
    };
    match run(&dev) {
        Ok(()) => {
            println!(
                "blk: OK {} sectors of {} bytes",
                dev.sectors(),
                dev.block_size()
            );
            0
        }
        Err(why) => {
            println!("blk: FAIL: {why}");
            1
        }
    }
}
