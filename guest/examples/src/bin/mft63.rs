//! Declares the maximum of 63 block devices (`b0` to `b62`) and prints how many it sees
//! attached: all 63 under a conforming tender (exit 0), else exit 1.
#![no_std]
#![no_main]

use petrel_guest::{DeviceKind, StartInfo, println};

petrel_guest::manifest! {
    block "b0", block "b1", block "b2", block "b3", block "b4", block "b5", block "b6", block "b7", block "b8", block "b9", block "b10", block "b11", block "b12", block "b13", block "b14", block "b15", block "b16", block "b17", block "b18", block "b19", block "b20", block "b21", block "b22", block "b23", block "b24", block "b25", block "b26", block "b27", block "b28", block "b29", block "b30", block "b31", block "b32", block "b33", block "b34", block "b35", block "b36", block "b37", block "b38", block "b39", block "b40", block "b41", block "b42", block "b43", block "b44", block "b45", block "b46", block "b47", block "b48", block "b49", block "b50", block "b51", block "b52", block "b53", block "b54", block "b55", block "b56", block "b57", block "b58", block "b59", block "b60", block "b61", block "b62"
}
petrel_guest::entry!(main);

const DECLARED: usize = 63;

fn main(_: &StartInfo) -> i32 {
    let attached = petrel_guest::devices()
        .filter(|d| d.kind() == DeviceKind::Block && d.attached())
        .count();
    println!("mft63: {attached} of {DECLARED} block devices attached");
    i32::from(attached != DECLARED)
}
