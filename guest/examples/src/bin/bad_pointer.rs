//! PUTS with a data pointer beyond guest memory: the tender must stop the guest (exit
//! status 1, `Invalid guest access`).
#![no_std]
#![no_main]

use petrel_guest::{StartInfo, hypercall};

petrel_guest::manifest! {}
petrel_guest::entry!(main);

fn main(si: &StartInfo) -> i32 {
    hypercall::puts_raw(si.mem_size() + 0x1000, 16);
    petrel_guest::abort_msg("bad_pointer: the tender accepted a pointer beyond memory")
}
