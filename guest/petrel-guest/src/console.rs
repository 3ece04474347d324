//! Console output over the PUTS hypercall.
//!
//! [`Writer`] collects formatted text in a small fixed buffer on the stack and hands it
//! to the tender in as few PUTS calls as possible (one per line for short lines; a PUTS
//! costs a VM exit). [`print!`](crate::print) and [`println!`](crate::println) use it
//! and are always shown. The kit's own messages (`Solo5: solo5_exit(0) called`, trap
//! reports) go through [`log`] and obey `--solo5:quiet|error|warn|info|debug` like
//! Solo5's `log()`; abort lines are always shown.

use core::fmt;
use core::sync::atomic::{AtomicU8, Ordering};

use crate::hypercall;

/// Size of [`Writer`]'s buffer; longer output is written in several PUTS calls.
pub const WRITER_BUF_SIZE: usize = 256;

/// Buffered console writer; flushes when the buffer is full and when dropped.
pub struct Writer {
    buf: [u8; WRITER_BUF_SIZE],
    len: usize,
}

impl Writer {
    /// An empty writer.
    pub const fn new() -> Self {
        Writer {
            buf: [0; WRITER_BUF_SIZE],
            len: 0,
        }
    }

    /// Appends bytes, flushing whenever the buffer fills.
    pub fn write_bytes(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.len == WRITER_BUF_SIZE {
                self.flush();
            }
            let room = WRITER_BUF_SIZE - self.len;
            let (now, rest) = bytes.split_at(room.min(bytes.len()));
            self.buf[self.len..self.len + now.len()].copy_from_slice(now);
            self.len += now.len();
            bytes = rest;
        }
    }

    /// Writes out what is buffered.
    pub fn flush(&mut self) {
        hypercall::puts(&self.buf[..self.len]);
        self.len = 0;
    }
}

impl Default for Writer {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Write for Writer {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.write_bytes(s.as_bytes());
        Ok(())
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Writes `bytes` to the console unbuffered (one PUTS).
pub fn write(bytes: &[u8]) {
    hypercall::puts(bytes);
}

/// Implementation of [`print!`](crate::print); not public API.
#[doc(hidden)]
pub fn _print(args: fmt::Arguments<'_>, newline: bool) {
    let mut w = Writer::new();
    // Writing to the console cannot fail; a formatting error only truncates the text.
    let _ = fmt::Write::write_fmt(&mut w, args);
    if newline {
        w.write_bytes(b"\n");
    }
}

/// Prints to the console (PUTS), like `std::print!`.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => {
        $crate::console::_print(::core::format_args!($($arg)*), false)
    };
}

/// Prints a line to the console (PUTS), like `std::println!`.
#[macro_export]
macro_rules! println {
    () => {
        $crate::console::write(b"\n")
    };
    ($($arg:tt)*) => {
        $crate::console::_print(::core::format_args!($($arg)*), true)
    };
}

/// Verbosity of the kit's own messages, as Solo5's `log_level_t`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum LogLevel {
    /// `--solo5:quiet` or `--solo5:error`: errors only.
    Error = 0,
    /// `--solo5:warn`.
    Warn = 1,
    /// `--solo5:info`, the default.
    Info = 2,
    /// `--solo5:debug`.
    Debug = 3,
}

static LOG_LEVEL: AtomicU8 = AtomicU8::new(LogLevel::Info as u8);

/// Sets the level below which [`log`] prints.
pub fn set_log_level(level: LogLevel) {
    LOG_LEVEL.store(level as u8, Ordering::Relaxed);
}

/// The current log level.
pub fn log_level() -> LogLevel {
    match LOG_LEVEL.load(Ordering::Relaxed) {
        0 => LogLevel::Error,
        1 => LogLevel::Warn,
        2 => LogLevel::Info,
        _ => LogLevel::Debug,
    }
}

/// Prints `args` if `level` is enabled (Solo5's `log()`); the text carries its own
/// newline.
pub fn log(level: LogLevel, args: fmt::Arguments<'_>) {
    if level <= log_level() {
        _print(args, false);
    }
}
