//! Guest kit for Solo5 *hvt* unikernels written in Rust (`x86_64-unknown-none`).
//!
//! A unikernel built with this kit runs unchanged under `solo5-hvt` (v0.12.1, ABI 2) and
//! under `petrel-hvt`. The kit replaces Solo5's C bindings:
//!
//! - [`manifest!`] declares the devices (the `MFT1` ELF note); the kit itself emits the
//!   `ABI1` note, the OpenBSD note and the fake `.interp`, and `hvt.ld` lays them out.
//! - [`entry!`] names the application's `fn main(&StartInfo) -> i32`. The kit's `_start`
//!   installs its own GDT, TSS and IDT (like Solo5's `cpu_x86_64.c`), starts the TSC
//!   clock, strips leading `--solo5:` options from the command line, calls `main` and
//!   exits with its return value.
//! - [`hypercall`] has one function per hypercall; [`block`], [`net`] and [`devices`]
//!   give typed access to the host-modified manifest; [`time`] has the clocks and
//!   [`time::poll`]; [`println!`] writes to the console.
//! - [`exit`], [`abort`], the panic handler and the CPU exception handlers end the guest
//!   with the same console lines and statuses as Solo5's bindings.
//!
//! Building: the guest workspace's `.cargo/config.toml` sets `-C relocation-model=static`
//! and links with `petrel-guest/hvt.ld`; a binary crate is `#![no_std] #![no_main]` and
//! uses both macros:
//!
//! ```ignore
//! #![no_std]
//! #![no_main]
//! petrel_guest::manifest! { block "storage", net "service0" }
//! petrel_guest::entry!(main);
//!
//! fn main(si: &petrel_guest::StartInfo) -> i32 {
//!     petrel_guest::println!("Hello, world; args: {}", si.cmdline());
//!     0
//! }
//! ```
//!
//! Limits: one vCPU, no interrupts, no heap allocator (see [`StartInfo::heap_start`]),
//! net I/O always through hypercalls (the optional ring extension is not used, which is
//! compatible with every tender). Guest code may run emulated at ~1 µs per instruction,
//! so the kit does as little work as it can: a hello guest makes 2 hypercalls.
#![cfg_attr(not(test), no_std)]
// Host unit tests (`--target x86_64-unknown-linux-gnu`) leave the boot path unused.
#![cfg_attr(test, allow(dead_code, unused_imports))]

pub mod console;
pub mod cpu;
pub mod device;
pub mod hypercall;
mod notes;
pub mod start;
pub mod time;

pub use device::{Block, Device, DeviceKind, Net, block, devices, net};
pub use hvt_abi;
pub use start::StartInfo;

use core::fmt;
use core::sync::atomic::{AtomicBool, Ordering};

use hvt_abi::abi::{SOLO5_EXIT_ABORT, SOLO5_R_AGAIN, SOLO5_R_EINVAL, SOLO5_R_OK};

/// Why a device operation failed (Solo5's `solo5_result_t` other than `SOLO5_R_OK`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// `SOLO5_R_AGAIN`: nothing to read now; wait with [`time::poll`].
    Again,
    /// `SOLO5_R_EINVAL`: bad handle, offset, alignment or length (checked by the kit or
    /// the tender).
    Invalid,
    /// `SOLO5_R_EUNSPEC` or any other code: the host operation failed.
    Unspecified,
}

impl Error {
    /// Maps a hypercall's `ret` field to a result.
    pub fn check(ret: i32) -> Result<(), Error> {
        match ret {
            SOLO5_R_OK => Ok(()),
            SOLO5_R_AGAIN => Err(Error::Again),
            SOLO5_R_EINVAL => Err(Error::Invalid),
            _ => Err(Error::Unspecified),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Error::Again => "try again (SOLO5_R_AGAIN)",
            Error::Invalid => "invalid argument (SOLO5_R_EINVAL)",
            Error::Unspecified => "unspecified error (SOLO5_R_EUNSPEC)",
        })
    }
}

/// Exits the guest with `status`, as `solo5_exit()` does: logs
/// `Solo5: solo5_exit(<status>) called` (unless `--solo5:quiet`) and halts. The status
/// is passed as is; the tender reports `status & 0xff`.
pub fn exit(status: i32) -> ! {
    console::log(
        console::LogLevel::Info,
        format_args!("Solo5: solo5_exit({status}) called\n"),
    );
    hypercall::halt(status, None)
}

/// Aborts the guest with status 255 (`SOLO5_EXIT_ABORT`), printing
/// `Solo5: solo5_abort() called` at info level, like Solo5's `solo5_abort()`.
pub fn abort() -> ! {
    console::log(
        console::LogLevel::Info,
        format_args!("Solo5: solo5_abort() called\n"),
    );
    hypercall::halt(SOLO5_EXIT_ABORT, None)
}

/// Aborts the guest with status 255, printing `Solo5: ABORT: <file>:<line>: <msg>`.
#[track_caller]
pub fn abort_msg(msg: &str) -> ! {
    abort_with(core::panic::Location::caller(), format_args!("{msg}"), None)
}

/// Set while the guest is aborting, so that a fault or panic while printing the abort
/// message halts at once instead of recursing.
static ABORTING: AtomicBool = AtomicBool::new(false);

/// Prints the abort line and halts with 255, passing `cookie` (a trap frame) to the
/// tender. Output is unconditional, as in Solo5 (`--solo5:quiet` does not hide it).
pub(crate) fn abort_with(
    loc: &core::panic::Location<'_>,
    msg: fmt::Arguments<'_>,
    cookie: Option<&[u8]>,
) -> ! {
    if !ABORTING.swap(true, Ordering::Relaxed) {
        let mut w = console::Writer::new();
        // A console write cannot fail; a formatting error only truncates the message.
        let _ = fmt::Write::write_fmt(
            &mut w,
            format_args!("Solo5: ABORT: {}:{}: {}\n", loc.file(), loc.line(), msg),
        );
    }
    hypercall::halt(SOLO5_EXIT_ABORT, cookie)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    let here = core::panic::Location::caller();
    abort_with(
        info.location().unwrap_or(here),
        format_args!("{}", info.message()),
        None,
    )
}
