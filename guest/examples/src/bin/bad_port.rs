//! `outl` to a port that is no hypercall (0x50a, or the first argument, e.g. `0x509`):
//! the tender must stop the guest (exit status 1, `Invalid guest port access`).
#![no_std]
#![no_main]

use petrel_guest::{StartInfo, hypercall};

petrel_guest::manifest! {}
petrel_guest::entry!(main);

fn parse_port(s: &str) -> Option<u16> {
    match s.strip_prefix("0x") {
        Some(hex) => u16::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

fn main(si: &StartInfo) -> i32 {
    let port = match si.args().next() {
        None => 0x50a,
        Some(arg) => parse_port(arg)
            .unwrap_or_else(|| petrel_guest::abort_msg("bad_port: give a port as 0x1f or 31")),
    };
    // SAFETY: the tender treats ports 0x500..0x509 as hypercalls that may write into the
    // struct at the address given; the value 0 names the unmapped zero page, which the
    // tender refuses (and never writes). Any other port only stops the guest.
    unsafe { hypercall::outl(port, 0) };
    petrel_guest::abort_msg("bad_port: the tender ignored an access to a bad port")
}
