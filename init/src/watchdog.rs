//! The hardware watchdog (`/dev/watchdog0`, or `/dev/watchdog`): armed with a timeout,
//! pinged from the main loop, disarmed with the magic close on a clean shutdown only —
//! a hung PID 1 or a hung shutdown resets the machine.

use std::fs::File;
use std::io::Write;
use std::time::Duration;

use crate::{info, warn};

/// The timeout asked of the driver.
pub const WATCHDOG_TIMEOUT_SECS: u32 = 60;

/// An armed watchdog.
pub struct Watchdog {
    dev: File,
    path: &'static str,
    /// How often to ping (a third of the timeout).
    pub interval: Duration,
}

impl Watchdog {
    /// Opens and arms the first watchdog device, if there is one.
    pub fn open() -> Option<Watchdog> {
        for path in ["/dev/watchdog0", "/dev/watchdog"] {
            let dev = match std::fs::OpenOptions::new().write(true).open(path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    warn!("watchdog: {path}: {e}");
                    continue;
                }
            };
            let timeout = match crate::sys::watchdog_set_timeout(&dev, WATCHDOG_TIMEOUT_SECS) {
                Ok(t) => t,
                Err(e) => {
                    warn!("watchdog: {path}: setting the timeout: {e}; keeping the driver's");
                    WATCHDOG_TIMEOUT_SECS.min(30)
                }
            };
            info!("watchdog: {path} armed, timeout {timeout} s");
            let wd = Watchdog {
                dev,
                path,
                interval: Duration::from_secs(u64::from(timeout.max(3) / 3)),
            };
            wd.ping();
            return Some(wd);
        }
        info!("watchdog: none");
        None
    }

    /// Pings it.
    pub fn ping(&self) {
        if let Err(e) = crate::sys::watchdog_keepalive(&self.dev) {
            warn!("watchdog: {}: keepalive: {e}", self.path);
        }
    }

    /// Disarms it (magic close) — only on a clean shutdown.
    pub fn disarm(mut self) {
        if let Err(e) = self.dev.write_all(b"V") {
            warn!("watchdog: {}: magic close: {e}", self.path);
        }
    }
}
