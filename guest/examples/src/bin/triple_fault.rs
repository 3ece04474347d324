//! Loads an empty IDT and raises #UD: the exception cannot be delivered (#GP, then #DF,
//! then a triple fault), KVM reports a shutdown and the tender exits with status 1.
#![no_std]
#![no_main]

use petrel_guest::StartInfo;

petrel_guest::manifest! {}
petrel_guest::entry!(main);

/// `lidt` operand: limit 0, base 0, i.e. no gates at all.
#[repr(C, packed)]
struct EmptyIdt {
    limit: u16,
    base: u64,
}

fn main(_: &StartInfo) -> i32 {
    let idt = EmptyIdt { limit: 0, base: 0 };
    // SAFETY: deliberately kills the vCPU: after `lidt` no exception can be delivered,
    // and `ud2` raises one. Control never comes back to Rust.
    unsafe {
        core::arch::asm!("lidt [{0}]", "ud2", in(reg) &raw const idt, options(nostack));
    }
    petrel_guest::abort_msg("triple_fault: the CPU survived an undeliverable exception")
}
