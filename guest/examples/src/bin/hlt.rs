//! Executes `hlt` with interrupts off, which no hvt guest may do: KVM reports
//! `KVM_EXIT_HLT` and the tender exits with status 1.
#![no_std]
#![no_main]

use petrel_guest::StartInfo;

petrel_guest::manifest! {}
petrel_guest::entry!(main);

fn main(_: &StartInfo) -> i32 {
    // SAFETY: `cli; hlt` touches no memory; with interrupts off nothing can wake the CPU
    // but the tender, which stops the guest.
    unsafe { core::arch::asm!("cli", "hlt", options(nomem, nostack)) };
    petrel_guest::abort_msg("hlt: the tender resumed a halted CPU")
}
