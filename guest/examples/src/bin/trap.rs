//! Reads an unmapped address (the zero page is not present): the kit's #PF handler
//! prints the trap like Solo5 and halts with 255, the trap frame as cookie.
#![no_std]
#![no_main]

use petrel_guest::StartInfo;

petrel_guest::manifest! {}
petrel_guest::entry!(main);

fn main(_: &StartInfo) -> i32 {
    // SAFETY: deliberately faults. The read is done in assembly (Rust would call a read
    // through a near-null pointer undefined behaviour); the page fault handler never
    // returns, so no state is observed afterwards.
    unsafe { core::arch::asm!("mov rax, qword ptr [0x8]", out("rax") _, options(nostack)) };
    petrel_guest::abort_msg("trap: reading address 0x8 did not fault")
}
