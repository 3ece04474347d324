//! CPU setup (GDT, TSS, IDT) and the exception handlers.
//!
//! The tender starts the guest in long mode with a bootstrap GDT in low memory that the
//! guest cannot write. Like Solo5's `cpu_x86_64.c`, [`init`] switches to a GDT of our
//! own (code 0x08, data 0x10, TSS 0x18), loads a TSS whose IST stacks the exception
//! handlers run on (so that even a stack overflow is reported), and installs interrupt
//! gates for the architectural exceptions 0-20 (not 9 and 15, as in Solo5). There are
//! no interrupts on hvt and they stay disabled.
//!
//! An exception prints, like Solo5:
//! ```text
//! Solo5: trap: type=#PF ec=0x0 rip=0x100123 rsp=0x3ffff0 rflags=0x2
//! Solo5: trap: cr2=0x8
//! Solo5: ABORT: petrel-guest/src/cpu.rs:<line>: Fatal trap
//! ```
//! and halts with status 255, passing the trap frame ([`TrapRegs`]) as the HALT cookie.
//!
//! Descriptor tables and stacks are arrays of atomics: the CPU reads (and for the TSS
//! busy bit, writes) them behind the compiler's back, which interior mutability allows
//! without `static mut`. Relaxed atomic stores compile to plain moves.

use core::arch::{asm, global_asm};
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Code segment selector of our GDT.
pub const GDT_SEL_CODE: u16 = 0x08;
/// Data segment selector of our GDT.
pub const GDT_SEL_DATA: u16 = 0x10;
/// TSS selector of our GDT.
pub const GDT_SEL_TSS: u16 = 0x18;

/// 64-bit code segment: present, DPL 0, execute/read, L=1 (Solo5's `GDT_DESC_CODE_VAL`).
const GDT_DESC_CODE_VAL: u64 = 0x00af_9900_0000_ffff;
/// Data segment: present, DPL 0, read/write (Solo5's `GDT_DESC_DATA_VAL`).
const GDT_DESC_DATA_VAL: u64 = 0x00cf_9300_0000_ffff;

/// Number of IDT entries: the 32 exception vectors (interrupts are never enabled).
const IDT_NUM_ENTRIES: usize = 32;
/// Size of the 64-bit TSS in bytes.
const TSS_SIZE: usize = 104;
/// Byte offset of `ist[0]` (IST1) in the TSS.
const TSS_IST_OFFSET: usize = 36;
/// Size of each IST stack.
const IST_STACK_SIZE: usize = 4096;
/// IST slot for ordinary exceptions.
const IST_TRAP: u8 = 1;
/// IST slot for #NMI and #DF, so that a fault on the trap stack is still reported.
const IST_NMI: u8 = 2;

static GDT: [AtomicU64; 5] = [
    AtomicU64::new(0),
    AtomicU64::new(GDT_DESC_CODE_VAL),
    AtomicU64::new(GDT_DESC_DATA_VAL),
    AtomicU64::new(0), // TSS low, filled by `init`
    AtomicU64::new(0), // TSS high
];

#[repr(C, align(16))]
struct Idt([AtomicU64; 2 * IDT_NUM_ENTRIES]);
static IDT: Idt = Idt([const { AtomicU64::new(0) }; 2 * IDT_NUM_ENTRIES]);

#[repr(C, align(16))]
struct Tss([AtomicU32; TSS_SIZE / 4]);
static TSS: Tss = Tss([const { AtomicU32::new(0) }; TSS_SIZE / 4]);

#[repr(C, align(16))]
struct Stack([AtomicU64; IST_STACK_SIZE / 8]);
static TRAP_STACK: Stack = Stack([const { AtomicU64::new(0) }; IST_STACK_SIZE / 8]);
static NMI_STACK: Stack = Stack([const { AtomicU64::new(0) }; IST_STACK_SIZE / 8]);

impl Stack {
    /// Address one past the stack's last byte (16-byte aligned).
    fn top(&'static self) -> u64 {
        self.0.as_ptr() as u64 + IST_STACK_SIZE as u64
    }
}

/// The two words of a 64-bit interrupt gate to `handler` on IST slot `ist`.
pub const fn idt_gate(handler: u64, ist: u8) -> [u64; 2] {
    let lo = (handler & 0xffff)
        | ((GDT_SEL_CODE as u64) << 16)
        | (((ist & 7) as u64) << 32)
        | (0x8e << 40) // P=1, DPL=0, type 0xE: interrupt gate (interrupts stay off)
        | (((handler >> 16) & 0xffff) << 48);
    [lo, handler >> 32]
}

/// The two words of an available 64-bit TSS descriptor for a TSS at `base`.
pub const fn tss_descriptor(base: u64, size: u64) -> [u64; 2] {
    let limit = size - 1;
    let lo = (limit & 0xffff)
        | ((base & 0x00ff_ffff) << 16)
        | (0x89 << 40) // P=1, DPL=0, type 9: available 64-bit TSS
        | (((limit >> 16) & 0xf) << 48)
        | (((base >> 24) & 0xff) << 56);
    [lo, base >> 32]
}

/// Operand of `lgdt`/`lidt`.
#[repr(C, packed)]
struct DescriptorTablePointer {
    limit: u16,
    base: u64,
}

impl DescriptorTablePointer {
    fn new<T>(table: &'static T) -> Self {
        DescriptorTablePointer {
            // Our tables are a few hundred bytes.
            #[allow(clippy::cast_possible_truncation)]
            limit: (size_of::<T>() - 1) as u16,
            base: core::ptr::from_ref(table) as u64,
        }
    }
}

/// Installs our GDT, TSS and IDT. Called once by `_start` before anything else.
pub(crate) fn init() {
    let [lo, hi] = tss_descriptor(core::ptr::from_ref(&TSS) as u64, TSS_SIZE as u64);
    GDT[3].store(lo, Ordering::Relaxed);
    GDT[4].store(hi, Ordering::Relaxed);
    let gdtp = DescriptorTablePointer::new(&GDT);
    // SAFETY: GDT is a static with valid code and data descriptors at the selectors we
    // load; the far return reloads CS with the same flat 64-bit code segment, so
    // execution continues at label 2 with an identical view of memory. Only RAX (named
    // as clobbered) and the stack slots the far return pops are touched.
    unsafe {
        asm!(
            "lgdt [{gdtp}]",
            "push {code}",
            "lea rax, [rip + 2f]",
            "push rax",
            "retfq",
            "2:",
            "mov eax, {data}",
            "mov ss, eax",
            "mov ds, eax",
            "mov es, eax",
            gdtp = in(reg) &raw const gdtp,
            code = const GDT_SEL_CODE,
            data = const GDT_SEL_DATA,
            out("rax") _,
            options(preserves_flags),
        );
    }

    set_ist(IST_TRAP, TRAP_STACK.top());
    set_ist(IST_NMI, NMI_STACK.top());
    // SAFETY: GDT[3..5] now holds an available TSS descriptor for TSS, which lives for
    // the whole run; `ltr` marks it busy in the GDT, which is writable (atomics).
    unsafe { asm!("ltr {0:x}", in(reg) GDT_SEL_TSS, options(nostack, preserves_flags)) };

    for &(vector, handler) in TRAP_VECTORS {
        let ist = if vector == 2 || vector == 8 {
            IST_NMI
        } else {
            IST_TRAP
        };
        let [lo, hi] = idt_gate(handler as usize as u64, ist);
        IDT.0[2 * vector].store(lo, Ordering::Relaxed);
        IDT.0[2 * vector + 1].store(hi, Ordering::Relaxed);
    }
    let idtp = DescriptorTablePointer::new(&IDT);
    // SAFETY: IDT is a static holding valid gates to the stubs below, which run on IST
    // stacks that the TSS loaded above provides.
    unsafe { asm!("lidt [{0}]", in(reg) &raw const idtp, options(nostack, preserves_flags)) };
}

fn set_ist(slot: u8, top: u64) {
    let word = (TSS_IST_OFFSET + 8 * (usize::from(slot) - 1)) / 4;
    // The halves of a u64 field: the TSS's 8-byte fields are only 4-byte aligned.
    #[allow(clippy::cast_possible_truncation)]
    let (lo, hi) = (top as u32, (top >> 32) as u32);
    TSS.0[word].store(lo, Ordering::Relaxed);
    TSS.0[word + 1].store(hi, Ordering::Relaxed);
}

/// What the exception stubs pass to the handler and to the tender (as the HALT
/// cookie): Solo5's `struct trap_regs`, i.e. CR2 (0 unless the vector has an error
/// code), the error code (0 if none), then the frame the CPU pushed.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct TrapRegs {
    /// CR2 at the time of the trap (the faulting address for #PF).
    pub cr2: u64,
    /// Error code, or 0.
    pub ec: u64,
    /// Faulting instruction.
    pub rip: u64,
    /// Code segment.
    pub cs: u64,
    /// Flags.
    pub rflags: u64,
    /// Stack pointer at the time of the trap.
    pub rsp: u64,
    /// Stack segment.
    pub ss: u64,
}

/// Names of the exception vectors, as Solo5 prints them.
const TRAP_NAMES: [&str; 32] = [
    "#DE", "#DB", "#NMI", "#BP", "#OF", "#BR", "#UD", "#NM", "#DF", "#9", "#TS", "#NP", "#SS",
    "#GP", "#PF", "#15", "#MF", "#AC", "#MC", "#XM", "#VE", "#21", "#22", "#23", "#24", "#25",
    "#26", "#27", "#28", "#29", "#30", "#31",
];

/// Called by the stubs on the IST stack with interrupts off; never returns.
extern "C" fn trap_handler(vector: u64, regs: &TrapRegs) -> ! {
    let name = usize::try_from(vector)
        .ok()
        .and_then(|v| TRAP_NAMES.get(v))
        .unwrap_or(&"#?");
    crate::console::log(
        crate::console::LogLevel::Info,
        format_args!(
            "Solo5: trap: type={} ec={:#x} rip={:#x} rsp={:#x} rflags={:#x}\n",
            name, regs.ec, regs.rip, regs.rsp, regs.rflags
        ),
    );
    if vector == 14 {
        crate::console::log(
            crate::console::LogLevel::Info,
            format_args!("Solo5: trap: cr2={:#x}\n", regs.cr2),
        );
    }
    // SAFETY: `regs` points at a live TrapRegs on the trap stack; viewing its 56 bytes
    // as bytes is valid for any u64 contents.
    let cookie = unsafe {
        core::slice::from_raw_parts(
            core::ptr::from_ref(regs).cast::<u8>(),
            size_of::<TrapRegs>(),
        )
    };
    crate::abort_with(
        core::panic::Location::caller(),
        format_args!("Fatal trap"),
        Some(cookie),
    )
}

// One stub per vector. Vectors with an error code push CR2 (the #PF address) under
// it; the others push two zeros. Both leave a TrapRegs at RSP, which the stub passes to
// `trap_handler` on a 16-byte aligned stack.
global_asm!(
    r#"
    .pushsection .text.petrel_traps,"ax",@progbits
    .macro PETREL_TRAP vector, has_ec
    .globl petrel_trap_\vector
    .type petrel_trap_\vector, @function
petrel_trap_\vector:
    cld
    .if \has_ec
    mov rdi, cr2
    push rdi
    .else
    push 0
    push 0
    .endif
    mov edi, \vector
    mov rsi, rsp
    and rsp, -16
    call {handler}
    ud2
    .endm

    PETREL_TRAP 0, 0
    PETREL_TRAP 1, 0
    PETREL_TRAP 2, 0
    PETREL_TRAP 3, 0
    PETREL_TRAP 4, 0
    PETREL_TRAP 5, 0
    PETREL_TRAP 6, 0
    PETREL_TRAP 7, 0
    PETREL_TRAP 8, 1
    PETREL_TRAP 10, 1
    PETREL_TRAP 11, 1
    PETREL_TRAP 12, 1
    PETREL_TRAP 13, 1
    PETREL_TRAP 14, 1
    PETREL_TRAP 16, 0
    PETREL_TRAP 17, 1
    PETREL_TRAP 18, 0
    PETREL_TRAP 19, 0
    PETREL_TRAP 20, 0
    .popsection
    "#,
    handler = sym trap_handler,
);

macro_rules! trap_vectors {
    ($($v:literal => $f:ident),* $(,)?) => {
        // SAFETY: these are the stubs defined in the `global_asm!` above; they are only
        // ever entered by the CPU through the IDT, never called from Rust.
        unsafe extern "C" {
            $(fn $f();)*
        }
        const TRAP_VECTORS: &[(usize, unsafe extern "C" fn())] = &[$(($v, $f)),*];
    };
}

trap_vectors! {
    0 => petrel_trap_0, 1 => petrel_trap_1, 2 => petrel_trap_2, 3 => petrel_trap_3,
    4 => petrel_trap_4, 5 => petrel_trap_5, 6 => petrel_trap_6, 7 => petrel_trap_7,
    8 => petrel_trap_8, 10 => petrel_trap_10, 11 => petrel_trap_11, 12 => petrel_trap_12,
    13 => petrel_trap_13, 14 => petrel_trap_14, 16 => petrel_trap_16, 17 => petrel_trap_17,
    18 => petrel_trap_18, 19 => petrel_trap_19, 20 => petrel_trap_20,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gate_splits_the_handler_address() {
        let [lo, hi] = idt_gate(0x0000_0001_0010_2345, 2);
        assert_eq!(lo & 0xffff, 0x2345);
        assert_eq!((lo >> 16) & 0xffff, 0x08);
        assert_eq!((lo >> 32) & 0x7, 2);
        assert_eq!((lo >> 40) & 0xff, 0x8e);
        assert_eq!(lo >> 48, 0x0010);
        assert_eq!(hi, 1);
    }

    #[test]
    fn tss_descriptor_matches_the_sdm_layout() {
        // base 0x0012_3456_789a_bcde, limit 103: P=1, type 9.
        let [lo, hi] = tss_descriptor(0x0012_3456_789a_bcde, 104);
        assert_eq!(lo, 0x7800_8900_0000_0000 | (0x9a_bcde << 16) | 103);
        assert_eq!(hi, 0x0012_3456);
    }

    #[test]
    fn trap_regs_is_solo5_struct_trap_regs() {
        assert_eq!(size_of::<TrapRegs>(), 56);
        assert_eq!(core::mem::offset_of!(TrapRegs, rip), 16);
    }
}
