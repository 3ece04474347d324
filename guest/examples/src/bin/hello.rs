//! Prints a greeting and its arguments, exits 0.
#![no_std]
#![no_main]

use core::fmt::Write;

use petrel_guest::{StartInfo, console, println};

petrel_guest::manifest! {}
petrel_guest::entry!(main);

fn main(si: &StartInfo) -> i32 {
    println!("Hello, world");
    let mut line = console::Writer::new();
    let _ = line.write_str("args:");
    for arg in si.args() {
        let _ = write!(line, " {arg}");
    }
    let _ = line.write_str("\n");
    0
}
