//! Exits with the status given as its first argument (decimal, may be negative or above
//! 255: the status is passed as is and the tender masks it). No argument: 0.
#![no_std]
#![no_main]

use petrel_guest::StartInfo;

petrel_guest::manifest! {}
petrel_guest::entry!(main);

fn main(si: &StartInfo) -> i32 {
    match si.args().next().map(str::parse::<i32>) {
        None => 0,
        Some(Ok(status)) => status,
        Some(Err(_)) => petrel_guest::abort_msg("exit: the status must be a decimal i32"),
    }
}
