//! Aborts: status 255 and a `Solo5: ABORT: ...` line.
#![no_std]
#![no_main]

use petrel_guest::StartInfo;

petrel_guest::manifest! {}
petrel_guest::entry!(main);

fn main(_: &StartInfo) -> i32 {
    petrel_guest::abort()
}
