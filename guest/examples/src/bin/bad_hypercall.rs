//! Hypercall number 0 (an `outl` to port 0x500), or the number given as first argument:
//! the tender must stop the guest (exit status 1, `Invalid guest hypercall: num=0`).
#![no_std]
#![no_main]

use petrel_guest::{StartInfo, hypercall};

petrel_guest::manifest! {}
petrel_guest::entry!(main);

fn main(si: &StartInfo) -> i32 {
    let nr = match si.args().next().map(str::parse::<u16>) {
        None => 0,
        Some(Ok(nr)) => nr,
        Some(Err(_)) => petrel_guest::abort_msg("bad_hypercall: give a decimal number"),
    };
    let port = petrel_guest::hvt_abi::abi::HVT_HYPERCALL_PIO_BASE.saturating_add(nr);
    // SAFETY: the value 0 names the unmapped zero page as the argument struct; a tender
    // that knows the hypercall refuses that pointer rather than writing there.
    unsafe { hypercall::outl(port, 0) };
    petrel_guest::abort_msg("bad_hypercall: the tender ignored an unknown hypercall")
}
