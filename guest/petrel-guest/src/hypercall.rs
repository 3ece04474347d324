//! The hvt hypercalls, one function each.
//!
//! A hypercall is a 32-bit `outl` to port `0x500 + nr` whose value is the guest address
//! of the argument struct (`hvt_abi::abi::HvtHc*`). The tender copies the struct in,
//! acts, and writes the OUT fields back before the guest resumes. All guest memory
//! lies below 4 GiB, so every address fits the 32-bit port value.
//!
//! The typed functions are safe: the tender only reads the buffers of PUTS and
//! NET_WRITE, and it writes only into the `&mut` buffers given to BLOCK_READ and
//! NET_READ. They do no argument checking beyond what the types give; [`crate::Block`]
//! and [`crate::Net`] add Solo5's checks. [`outl`] is the raw instruction, for test
//! guests that misbehave on purpose.

use core::arch::asm;

use hvt_abi::abi::{
    HVT_HYPERCALL_BLOCK_READ, HVT_HYPERCALL_BLOCK_WRITE, HVT_HYPERCALL_HALT,
    HVT_HYPERCALL_NET_READ, HVT_HYPERCALL_NET_WRITE, HVT_HYPERCALL_PIO_BASE, HVT_HYPERCALL_POLL,
    HVT_HYPERCALL_PUTS, HVT_HYPERCALL_WALLTIME, HvtHcBlock, HvtHcHalt, HvtHcNet, HvtHcPoll,
    HvtHcPuts, HvtHcWalltime,
};

/// Argument structs of the hypercalls; sealed so that [`call`] only ever passes a
/// struct that the tender may read and write in place.
pub trait HypercallArg: sealed::Sealed {}

mod sealed {
    pub trait Sealed {}
}

macro_rules! hypercall_args {
    ($($t:ty),*) => {
        $(
            impl sealed::Sealed for $t {}
            impl HypercallArg for $t {}
        )*
    };
}
hypercall_args!(
    HvtHcWalltime,
    HvtHcPuts,
    HvtHcPoll,
    HvtHcBlock,
    HvtHcNet,
    HvtHcHalt
);

/// Guest address of a value, as the 32-bit hypercall port value.
fn gpa<T: ?Sized>(p: *const T) -> u32 {
    let addr = p.cast::<u8>() as usize;
    // Guest memory is at most 4 GiB (`X86_GUEST_MAX_MEM_SIZE`), so every guest address
    // fits; Solo5 casts the same way.
    #[allow(clippy::cast_possible_truncation)]
    let gpa = addr as u32;
    gpa
}

/// Writes `value` to I/O port `port` with `outl`.
///
/// # Safety
/// On hvt, ports 0x500..0x509 are hypercalls: `value` is read as the address of that
/// hypercall's argument struct, and the tender may write into the struct and into any
/// buffer it names (BLOCK_READ, NET_READ). The caller must make sure such memory may be
/// written. Any other port makes the tender stop the guest, which is always safe.
pub unsafe fn outl(port: u16, value: u32) {
    // SAFETY: an `outl` has no effect on guest memory by itself; what the tender may
    // write in response is the caller's contract above. No `nomem`: the tender reads and
    // writes the argument struct, so the compiler must not cache it across this.
    unsafe {
        asm!("out dx, eax", in("dx") port, in("eax") value, options(nostack, preserves_flags));
    }
}

/// Issues hypercall `nr` with `arg` as its argument struct.
///
/// # Safety
/// `arg` must be the struct that hypercall `nr` expects, and every buffer it names must
/// be valid for what the tender does with it: read for PUTS/NET_WRITE/BLOCK_WRITE, and
/// written with up to `len` bytes for BLOCK_READ/NET_READ.
pub unsafe fn call<T: HypercallArg>(nr: u16, arg: &mut T) {
    // SAFETY: `arg` is a live, exclusive struct of the right type for `nr`; buffers it
    // names are the caller's contract.
    unsafe { outl(HVT_HYPERCALL_PIO_BASE + nr, gpa(core::ptr::from_mut(arg))) }
}

/// WALLTIME: wall clock time (`CLOCK_REALTIME` of the host) in nanoseconds.
pub fn walltime_ns() -> u64 {
    let mut arg = HvtHcWalltime::default();
    // SAFETY: WALLTIME only writes `nsecs` into its own struct.
    unsafe { call(HVT_HYPERCALL_WALLTIME, &mut arg) };
    arg.nsecs
}

/// PUTS: writes `bytes` to the tender's standard output. Empty slices are skipped.
pub fn puts(bytes: &[u8]) {
    if !bytes.is_empty() {
        puts_raw(bytes.as_ptr() as u64, bytes.len() as u64);
    }
}

/// PUTS with an arbitrary guest address and length, for test guests. The tender only
/// reads that range; if it is not inside guest memory the tender stops the guest (exit
/// status 1), which is what those tests check.
pub fn puts_raw(data_gpa: u64, len: u64) {
    let mut arg = HvtHcPuts {
        data: data_gpa,
        len,
    };
    // SAFETY: PUTS never writes guest memory; it only reads `len` bytes at `data`.
    unsafe { call(HVT_HYPERCALL_PUTS, &mut arg) };
}

/// POLL: waits until a device is ready or `timeout_ns` has passed. Returns the ready
/// set: bit `h` is set when the device with handle `h` (a [`crate::Net`]) has input.
pub fn poll(timeout_ns: u64) -> u64 {
    let mut arg = HvtHcPoll {
        timeout_nsecs: timeout_ns,
        ..HvtHcPoll::default()
    };
    // SAFETY: POLL only writes `ready_set` and `ret` into its own struct.
    unsafe { call(HVT_HYPERCALL_POLL, &mut arg) };
    arg.ready_set
}

/// BLOCK_WRITE: writes `buf` at byte `offset` of block device `handle`. Returns the
/// tender's result code (a `SOLO5_R_*` value).
pub fn block_write(handle: u64, offset: u64, buf: &[u8]) -> i32 {
    let mut arg = HvtHcBlock {
        handle,
        offset,
        data: buf.as_ptr() as u64,
        len: buf.len() as u64,
        ..HvtHcBlock::default()
    };
    // SAFETY: BLOCK_WRITE reads `len` bytes of `buf` and writes only `ret`.
    unsafe { call(HVT_HYPERCALL_BLOCK_WRITE, &mut arg) };
    arg.ret
}

/// BLOCK_READ: reads `buf.len()` bytes at byte `offset` of block device `handle` into
/// `buf`. Returns the tender's result code.
pub fn block_read(handle: u64, offset: u64, buf: &mut [u8]) -> i32 {
    let mut arg = HvtHcBlock {
        handle,
        offset,
        data: buf.as_mut_ptr() as u64,
        len: buf.len() as u64,
        ..HvtHcBlock::default()
    };
    // SAFETY: BLOCK_READ writes at most `len` bytes into `buf`, which we borrow
    // exclusively, and `ret` into the struct.
    unsafe { call(HVT_HYPERCALL_BLOCK_READ, &mut arg) };
    arg.ret
}

/// NET_WRITE: sends the Ethernet frame `frame` on net device `handle`. Returns the
/// tender's result code.
pub fn net_write(handle: u64, frame: &[u8]) -> i32 {
    let mut arg = HvtHcNet {
        handle,
        data: frame.as_ptr() as u64,
        len: frame.len() as u64,
        ..HvtHcNet::default()
    };
    // SAFETY: NET_WRITE reads `len` bytes of `frame` and writes only `ret`.
    unsafe { call(HVT_HYPERCALL_NET_WRITE, &mut arg) };
    arg.ret
}

/// NET_READ: receives one frame from net device `handle` into `buf`. Returns the
/// tender's result code and the frame length (meaningful when the code is
/// `SOLO5_R_OK`; never more than `buf.len()`).
pub fn net_read(handle: u64, buf: &mut [u8]) -> (i32, usize) {
    let mut arg = HvtHcNet {
        handle,
        data: buf.as_mut_ptr() as u64,
        len: buf.len() as u64,
        ..HvtHcNet::default()
    };
    // SAFETY: NET_READ writes at most `len` bytes into `buf`, which we borrow
    // exclusively, and `len`/`ret` into the struct.
    unsafe { call(HVT_HYPERCALL_NET_READ, &mut arg) };
    let len = usize::try_from(arg.len).map_or(buf.len(), |n| n.min(buf.len()));
    (arg.ret, len)
}

/// HALT: stops the guest with `status`; `cookie` (at most 512 bytes, e.g. a trap frame)
/// is handed to the tender, which may write it into a core file. Never returns.
pub fn halt(status: i32, cookie: Option<&[u8]>) -> ! {
    let mut arg = HvtHcHalt {
        cookie: cookie.map_or(0, |c| c.as_ptr() as u64),
        exit_status: status,
        _pad: 0,
    };
    // SAFETY: HALT only reads its struct and the cookie; it does not return control.
    unsafe { call(HVT_HYPERCALL_HALT, &mut arg) };
    // A tender that resumes us after HALT is broken: stop visibly rather than spin
    // (`hlt` with interrupts off is an unhandled exit, status 1).
    loop {
        // SAFETY: `cli; hlt` touches no memory.
        unsafe { asm!("cli", "hlt", options(nomem, nostack)) };
    }
}
