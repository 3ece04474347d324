//! PID 1's log: every line goes to `/dev/kmsg` as `petrel-init: …` (so every console
//! shows it, serial and screen), to `/run/petrel/boot.log`, and, once the data partition
//! is mounted, to `/var/lib/petrel/log/boot.log` (the previous boots' logs are kept as
//! `boot.log.1` … `boot.log.4`). Lines from before a sink opened are kept in memory and
//! written when it opens, so each file holds the whole boot.
//!
//! Logging never fails and never panics: a sink that errors is dropped.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

/// Prefix of every line.
pub const PREFIX: &str = "petrel-init: ";
/// This boot's log in tmpfs.
pub const RUN_LOG: &str = "/run/petrel/boot.log";
/// Directory of the persistent logs on the data partition.
pub const PERSIST_DIR: &str = "/var/lib/petrel/log";
/// Previous boots kept on the data partition.
pub const PERSIST_KEEP: usize = 4;
/// Bytes of log kept in memory and written to each file per boot.
pub const LOG_MAX_BYTES: usize = 1 << 20;
/// The kernel cuts `/dev/kmsg` records near 1 KiB; longer messages are shortened.
const KMSG_MAX_BYTES: usize = 900;

/// How important a line is (the kernel's log levels).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Something failed; the boot goes on, degraded.
    Error = 3,
    /// Something odd.
    Warn = 4,
    /// Progress: `KERN_NOTICE`, so that the image's `loglevel=6` (which hides the
    /// kernel's own info chatter) shows PID 1's lines on every console.
    Info = 5,
    /// Details: in the log files and the kernel log, not on the console.
    Debug = 7,
}

struct Sinks {
    kmsg: Option<File>,
    /// The kernel prints kmsg records below this level on the consoles
    /// (`/proc/sys/kernel/printk`); lines it would hide (`quiet`, `loglevel=6`) are also
    /// written to stderr, i.e. `/dev/console`, as are all lines before `/dev/kmsg` opens.
    console_loglevel: u32,
    run_log: Option<File>,
    persist: Option<File>,
    memory: Vec<u8>,
    dropped: bool,
}

static SINKS: Mutex<Sinks> = Mutex::new(Sinks {
    kmsg: None,
    console_loglevel: 0,
    run_log: None,
    persist: None,
    memory: Vec::new(),
    dropped: false,
});

fn with_sinks(f: impl FnOnce(&mut Sinks)) {
    // Poisoning needs a panic, which aborts PID 1 anyway; take the data either way.
    let mut guard = match SINKS.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    f(&mut guard);
}

/// Milliseconds since the kernel started (`CLOCK_BOOTTIME`).
pub fn since_boot() -> Duration {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    )
}

/// The milestone line tests look for: `<what> ready (+N ms)`.
/// The last one, when the system is up, is just `ready (+N ms)`.
pub fn milestone_text(what: &str, since_boot: Duration) -> String {
    let ms = since_boot.as_millis();
    if what.is_empty() {
        format!("ready (+{ms} ms)")
    } else {
        format!("{what} ready (+{ms} ms)")
    }
}

/// Cuts `s` to at most `max` bytes on a character boundary.
pub fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default()
}

/// Logs one message (may span lines).
pub fn log(level: Level, msg: &str) {
    let t = since_boot();
    with_sinks(|s| {
        for line in msg.lines() {
            let line = truncate(line, KMSG_MAX_BYTES);
            if let Some(k) = &mut s.kmsg {
                let rec = format!("<{}>{PREFIX}{line}\n", level as u8);
                if k.write_all(rec.as_bytes()).is_err() {
                    s.kmsg = None;
                }
            }
            if level != Level::Debug && (s.kmsg.is_none() || level as u32 >= s.console_loglevel) {
                let _ = writeln!(std::io::stderr(), "{PREFIX}{line}");
            }
            let file_line = format!("[{:5}.{:03}] {line}\n", t.as_secs(), t.subsec_millis());
            s.write_files(file_line.as_bytes());
        }
    });
}

impl Sinks {
    fn write_files(&mut self, bytes: &[u8]) {
        if self.memory.len() + bytes.len() > LOG_MAX_BYTES {
            if !self.dropped {
                self.dropped = true;
                let note = b"[log full: later lines only on the console]\n";
                self.memory.extend_from_slice(note);
                for f in [&mut self.run_log, &mut self.persist].into_iter().flatten() {
                    let _ = f.write_all(note);
                }
            }
            return;
        }
        self.memory.extend_from_slice(bytes);
        for sink in [&mut self.run_log, &mut self.persist] {
            if let Some(f) = sink {
                if f.write_all(bytes).is_err() {
                    *sink = None;
                }
            }
        }
    }
}

/// Logs a milestone: `petrel-init: <what> ready (+N ms)`.
pub fn milestone(what: &str) {
    log(Level::Info, &milestone_text(what, since_boot()));
}

/// Opens `/dev/kmsg` (after devtmpfs is mounted). `console_loglevel` is the first field
/// of `/proc/sys/kernel/printk`: lines at or above it also go to stderr.
pub fn open_kmsg(console_loglevel: Option<u32>) {
    let kmsg = OpenOptions::new().write(true).open("/dev/kmsg").ok();
    with_sinks(|s| {
        s.console_loglevel = console_loglevel.unwrap_or(0);
        s.kmsg = kmsg;
    });
}

fn open_append(path: &str, truncate_first: bool) -> Option<File> {
    OpenOptions::new()
        .create(true)
        .append(!truncate_first)
        .write(true)
        .truncate(truncate_first)
        .open(path)
        .ok()
}

/// Opens `/run/petrel/boot.log` (after `/run` is mounted) and writes what came before.
pub fn open_run_log() -> bool {
    let _ = std::fs::create_dir_all("/run/petrel");
    let Some(mut f) = open_append(RUN_LOG, true) else {
        return false;
    };
    with_sinks(|s| {
        if f.write_all(&s.memory).is_ok() {
            s.run_log = Some(f);
        }
    });
    true
}

/// The renames that keep `keep` previous logs: `boot.log.{keep-1}` → `boot.log.{keep}`,
/// …, `boot.log` → `boot.log.1` (the oldest is overwritten).
pub fn rotation(keep: usize) -> Vec<(String, String)> {
    let name = |i: usize| {
        if i == 0 {
            "boot.log".to_owned()
        } else {
            format!("boot.log.{i}")
        }
    };
    (0..keep).rev().map(|i| (name(i), name(i + 1))).collect()
}

/// Rotates the persistent logs and starts this boot's (after the data partition is
/// mounted).
pub fn open_persistent_log() -> Result<(), std::io::Error> {
    std::fs::create_dir_all(PERSIST_DIR)?;
    for (from, to) in rotation(PERSIST_KEEP) {
        let from = format!("{PERSIST_DIR}/{from}");
        if std::fs::exists(&from).unwrap_or(false) {
            std::fs::rename(from, format!("{PERSIST_DIR}/{to}"))?;
        }
    }
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(format!("{PERSIST_DIR}/boot.log"))?;
    let mut result = Ok(());
    with_sinks(|s| match f.write_all(&s.memory) {
        Ok(()) => s.persist = Some(f),
        Err(e) => result = Err(e),
    });
    result
}

/// Flushes the persistent log to disk and closes it (before unmounting).
pub fn close_persistent_log() {
    with_sinks(|s| {
        if let Some(f) = s.persist.take() {
            let _ = f.sync_all();
        }
    });
}

/// `info!`-style helpers.
#[macro_export]
macro_rules! info {
    ($($t:tt)*) => { $crate::log::log($crate::log::Level::Info, &format!($($t)*)) };
}
/// Logs a warning.
#[macro_export]
macro_rules! warn {
    ($($t:tt)*) => { $crate::log::log($crate::log::Level::Warn, &format!($($t)*)) };
}
/// Logs a detail (files and kernel log only).
#[macro_export]
macro_rules! debug {
    ($($t:tt)*) => { $crate::log::log($crate::log::Level::Debug, &format!($($t)*)) };
}
/// Logs an error.
#[macro_export]
macro_rules! error {
    ($($t:tt)*) => { $crate::log::log($crate::log::Level::Error, &format!($($t)*)) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milestone_format() {
        assert_eq!(
            milestone_text("modules", Duration::from_micros(1_234_567)),
            "modules ready (+1234 ms)"
        );
        assert_eq!(milestone_text("", Duration::ZERO), "ready (+0 ms)");
    }

    #[test]
    fn truncation_keeps_characters_whole() {
        assert_eq!(truncate("abc", 10), "abc");
        assert_eq!(truncate("abc", 2), "ab");
        assert_eq!(truncate("aé", 2), "a");
    }

    #[test]
    fn rotation_order() {
        assert_eq!(
            rotation(3),
            [
                ("boot.log.2".to_owned(), "boot.log.3".to_owned()),
                ("boot.log.1".to_owned(), "boot.log.2".to_owned()),
                ("boot.log".to_owned(), "boot.log.1".to_owned()),
            ]
        );
    }
}
