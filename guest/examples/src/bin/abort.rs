//! Aborts: status 255. With no argument it calls `abort()` (`Solo5: solo5_abort()
//! called`, as Solo5's `solo5_abort`); with `panic` it panics (`Solo5: ABORT: ...`, as
//! Solo5's `PANIC`/`assert`).
#![no_std]
#![no_main]

use petrel_guest::StartInfo;

petrel_guest::manifest! {}
petrel_guest::entry!(main);

fn main(si: &StartInfo) -> i32 {
    if si.cmdline() == "panic" {
        panic!("asked to panic");
    }
    petrel_guest::abort()
}
