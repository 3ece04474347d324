//! Transfer progress on stderr, drawn only when stderr is a terminal: one line,
//! redrawn at most ten times a second, erased when the transfer ends.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use crate::units::format_bytes;

const REDRAW: Duration = Duration::from_millis(100);
const BAR_CELLS: u64 = 24;

/// One transfer's progress line.
#[derive(Debug)]
pub struct Progress {
    label: String,
    total_bytes: Option<u64>,
    enabled: bool,
    start: Instant,
    last_draw: Option<Instant>,
}

impl Progress {
    /// A progress line for `label`, drawn if stderr is a terminal.
    pub fn new(label: impl Into<String>, total_bytes: Option<u64>) -> Self {
        Self::with(label, total_bytes, std::io::stderr().is_terminal())
    }

    /// A progress line, drawn only if `enabled`.
    pub fn with(label: impl Into<String>, total_bytes: Option<u64>, enabled: bool) -> Self {
        Self {
            label: label.into(),
            total_bytes,
            enabled,
            start: Instant::now(),
            last_draw: None,
        }
    }

    /// `done_bytes` have been transferred so far.
    pub fn update(&mut self, done_bytes: u64) {
        if !self.enabled {
            return;
        }
        let now = Instant::now();
        if self
            .last_draw
            .is_some_and(|t| now.duration_since(t) < REDRAW)
        {
            return;
        }
        self.last_draw = Some(now);
        let line = self.line(done_bytes, now.duration_since(self.start));
        let mut err = std::io::stderr().lock();
        // Progress is best effort: a failing stderr must not fail the transfer.
        let _ = write!(err, "\r{line}\x1b[K");
        let _ = err.flush();
    }

    /// The transfer ended (either way): erase the line.
    pub fn finish(&mut self) {
        if self.enabled && self.last_draw.is_some() {
            let _ = write!(std::io::stderr().lock(), "\r\x1b[K");
        }
        self.last_draw = None;
    }

    /// The text of the line after `elapsed`.
    pub fn line(&self, done_bytes: u64, elapsed: Duration) -> String {
        let ms = u64::try_from(elapsed.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let rate = done_bytes.saturating_mul(1000) / ms;
        match self.total_bytes {
            Some(total) if total > 0 => {
                let done = done_bytes.min(total);
                let filled = done.saturating_mul(BAR_CELLS) / total;
                let bar: String = (0..BAR_CELLS)
                    .map(|i| if i < filled { '#' } else { '-' })
                    .collect();
                format!(
                    "{} [{bar}] {:>3}% {} / {}  {}/s",
                    self.label,
                    done.saturating_mul(100) / total,
                    format_bytes(done),
                    format_bytes(total),
                    format_bytes(rate)
                )
            }
            _ => format!(
                "{} {}  {}/s",
                self.label,
                format_bytes(done_bytes),
                format_bytes(rate)
            ),
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        let p = Progress::with("upload web.hvt", Some(4 << 20), false);
        assert_eq!(
            p.line(1 << 20, Duration::from_secs(1)),
            "upload web.hvt [######------------------]  25% 1 MiB / 4 MiB  1 MiB/s"
        );
        assert_eq!(
            p.line(8 << 20, Duration::from_secs(2)),
            "upload web.hvt [########################] 100% 4 MiB / 4 MiB  4 MiB/s"
        );
        let q = Progress::with("download", None, false);
        assert_eq!(q.line(1536, Duration::ZERO), "download 1.5 KiB  1.4 MiB/s");
    }
}
