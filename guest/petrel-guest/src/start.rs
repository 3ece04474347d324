//! The guest's entry point and what the application gets from it.
//!
//! The tender enters `_start` in long mode with RDI = the address of `HvtBootInfo`
//! (0x10000) and RSP = `mem_size - 8`, interrupts off. `_start` sets up the CPU
//! ([`crate::cpu`]), the clock ([`crate::time`]) and the command line, then calls the
//! function named with [`entry!`](crate::entry) and exits with what it returns.
//! `.bss` needs no clearing: guest memory starts zeroed.

use core::ptr;
use core::sync::atomic::{AtomicPtr, Ordering};

use hvt_abi::abi::{HVT_CMDLINE_SIZE, HVT_GUEST_MIN_BASE, HvtBootInfo, X86_BOOT_INFO_BASE};

use crate::console::{self, LogLevel};

static BOOT_INFO: AtomicPtr<HvtBootInfo> = AtomicPtr::new(ptr::null_mut());

/// The boot information the tender handed over, once `_start` has run.
pub fn boot_info() -> Option<&'static HvtBootInfo> {
    let p = BOOT_INFO.load(Ordering::Relaxed);
    // SAFETY: `_start` stores only the tender's boot info pointer, which points at an
    // HvtBootInfo in read-only low memory that stays unchanged for the whole run.
    unsafe { p.as_ref() }
}

/// Names the unikernel's main function: `fn(&StartInfo) -> i32`. Its return value is
/// the exit status (passed to [`crate::exit`]).
///
/// ```ignore
/// petrel_guest::entry!(main);
/// fn main(si: &petrel_guest::StartInfo) -> i32 { 0 }
/// ```
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        #[unsafe(no_mangle)]
        fn __petrel_guest_main(si: &$crate::StartInfo) -> i32 {
            let main: fn(&$crate::StartInfo) -> i32 = $main;
            main(si)
        }
    };
}

// SAFETY: the symbol is defined by `entry!` with exactly this signature; a unikernel
// without `entry!` fails to link.
unsafe extern "Rust" {
    safe fn __petrel_guest_main(si: &StartInfo) -> i32;
}

/// What the application's main function gets (Solo5's `struct solo5_start_info`).
#[derive(Clone, Copy, Debug)]
pub struct StartInfo {
    cmdline: &'static str,
    mem_size: u64,
    heap_start: u64,
    heap_size: u64,
}

impl StartInfo {
    /// The command line after the tender's `--` and the kernel path, with leading
    /// `--solo5:` options and whitespace removed. Bytes that are not UTF-8 end it.
    pub fn cmdline(&self) -> &'static str {
        self.cmdline
    }

    /// The command line split at whitespace.
    pub fn args(&self) -> core::str::SplitAsciiWhitespace<'static> {
        self.cmdline.split_ascii_whitespace()
    }

    /// Guest memory size in bytes (`HvtBootInfo::mem_size`); the stack starts at its top.
    pub fn mem_size(&self) -> u64 {
        self.mem_size
    }

    /// First address of free memory (page-aligned end of the image). Memory from here
    /// to `heap_start + heap_size` is the application's; the stack grows down from its
    /// top.
    pub fn heap_start(&self) -> u64 {
        self.heap_start
    }

    /// Bytes from [`StartInfo::heap_start`] to the end of guest memory (stack included).
    pub fn heap_size(&self) -> u64 {
        self.heap_size
    }
}

/// Whitespace as C's `isspace()` sees it.
fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// Strips leading whitespace and `--solo5:{quiet,error,warn,info,debug}` options
/// (each followed by whitespace or the end) from `cmdline`, as Solo5's
/// `cmdline_parse()`. Returns the rest and the last log level asked for.
pub fn strip_solo5_options(cmdline: &[u8]) -> (&[u8], Option<LogLevel>) {
    const OPTIONS: [(&[u8], LogLevel); 5] = [
        (b"--solo5:quiet", LogLevel::Error),
        (b"--solo5:error", LogLevel::Error),
        (b"--solo5:warn", LogLevel::Warn),
        (b"--solo5:info", LogLevel::Info),
        (b"--solo5:debug", LogLevel::Debug),
    ];
    let skip_space = |s: &[u8]| -> usize { s.iter().take_while(|&&c| is_space(c)).count() };
    let mut rest = &cmdline[skip_space(cmdline)..];
    let mut level = None;
    'outer: loop {
        for (opt, l) in OPTIONS {
            if let Some(after) = rest.strip_prefix(opt) {
                if after.first().is_none_or(|&c| is_space(c)) {
                    level = Some(l);
                    rest = &after[skip_space(after)..];
                    continue 'outer;
                }
            }
        }
        return (rest, level);
    }
}

/// The longest UTF-8 prefix of `b`.
fn utf8_prefix(b: &[u8]) -> &str {
    match core::str::from_utf8(b) {
        Ok(s) => s,
        Err(e) => core::str::from_utf8(&b[..e.valid_up_to()]).unwrap_or(""),
    }
}

/// `addr` as a pointer-sized integer if `[addr, addr + len)` lies in the low memory the
/// tender fills in (boot info, manifest copy, command line) and is `align`-aligned.
pub(crate) fn low_memory(addr: u64, len: u64, align: u64) -> Option<usize> {
    let end = addr.checked_add(len)?;
    let in_range = addr >= X86_BOOT_INFO_BASE && end <= HVT_GUEST_MIN_BASE;
    (in_range && addr % align == 0).then_some(usize::try_from(addr).ok()?)
}

/// The raw command line: the NUL-terminated string at `bi.cmdline`, if it lies in the
/// tender's low memory.
fn raw_cmdline(bi: &HvtBootInfo) -> &'static [u8] {
    let Some(base) = low_memory(bi.cmdline, HVT_CMDLINE_SIZE as u64, 1) else {
        return &[];
    };
    // SAFETY: the command line area (HVT_CMDLINE_SIZE bytes at `base`) lies in the
    // read-only low memory the tender filled in (checked above) and never changes.
    let area = unsafe { core::slice::from_raw_parts(base as *const u8, HVT_CMDLINE_SIZE) };
    let len = area.iter().position(|&c| c == 0).unwrap_or(area.len());
    &area[..len]
}

/// First byte past the image (linker script symbol).
fn image_end() -> u64 {
    unsafe extern "C" {
        static _end: u8;
    }
    (&raw const _end) as u64
}

/// The entry point, called by the tender.
///
/// # Safety
/// Only the tender may call this, once, as described in the module docs.
#[cfg(not(test))] // a host test binary has its own `_start`
#[unsafe(no_mangle)]
#[unsafe(link_section = ".text._start")]
unsafe extern "C" fn _start(boot_info: *const HvtBootInfo) -> ! {
    crate::cpu::init();
    BOOT_INFO.store(boot_info.cast_mut(), Ordering::Relaxed);
    let Some(bi) = self::boot_info() else {
        crate::abort_msg("no boot info");
    };
    crate::time::init(bi.cpu_cycle_freq);

    let (cmdline, level) = strip_solo5_options(raw_cmdline(bi));
    if let Some(level) = level {
        console::set_log_level(level);
    }
    let heap_start = image_end().next_multiple_of(4096);
    let si = StartInfo {
        cmdline: utf8_prefix(cmdline),
        mem_size: bi.mem_size,
        heap_start,
        heap_size: bi.mem_size.saturating_sub(heap_start),
    };
    crate::exit(__petrel_guest_main(&si))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strip(s: &str) -> (&str, Option<LogLevel>) {
        let (rest, level) = strip_solo5_options(s.as_bytes());
        (core::str::from_utf8(rest).unwrap(), level)
    }

    #[test]
    fn solo5_options_are_stripped_like_cmdline_parse() {
        assert_eq!(strip("a b"), ("a b", None));
        assert_eq!(strip("  --solo5:quiet a b"), ("a b", Some(LogLevel::Error)));
        assert_eq!(
            strip("--solo5:debug\t--solo5:warn  x"),
            ("x", Some(LogLevel::Warn))
        );
        assert_eq!(strip("--solo5:quiet"), ("", Some(LogLevel::Error)));
        // Only whole options, only at the start.
        assert_eq!(strip("--solo5:quieter a"), ("--solo5:quieter a", None));
        assert_eq!(strip("a --solo5:quiet"), ("a --solo5:quiet", None));
        assert_eq!(strip("--solo5:other a"), ("--solo5:other a", None));
        assert_eq!(strip(""), ("", None));
    }

    #[test]
    fn invalid_utf8_ends_the_command_line() {
        assert_eq!(utf8_prefix(b"ab\xffcd"), "ab");
        assert_eq!(utf8_prefix("é x".as_bytes()), "é x");
    }
}
