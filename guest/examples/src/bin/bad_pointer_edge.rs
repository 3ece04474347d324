//! PUTS whose buffer ends exactly at the end of guest memory (data + len == mem_size).
//! Solo5 checks `gpa + sz >= mem_size`, so the tender must refuse it (exit status 1).
#![no_std]
#![no_main]

use petrel_guest::{StartInfo, hypercall};

petrel_guest::manifest! {}
petrel_guest::entry!(main);

const LEN: u64 = 16;

fn main(si: &StartInfo) -> i32 {
    hypercall::puts_raw(si.mem_size() - LEN, LEN);
    petrel_guest::abort_msg("bad_pointer_edge: the tender accepted a buffer ending at mem_size")
}
