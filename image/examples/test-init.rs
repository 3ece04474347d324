//! A trivial PID 1 for boot tests of the UKI before `petrel-init` exists: prints how
//! long the kernel took to reach it (CLOCK_BOOTTIME), lists what the initramfs holds at
//! its top level, and powers the machine off with `reboot(2)`.
//!
//!     cargo build --release -p petrel-image --example test-init
//!     petrel-image build --init target/x86_64-unknown-linux-musl/release/examples/test-init …

use rustix::system::{RebootCommand, reboot};
use rustix::time::{ClockId, clock_gettime};

fn main() {
    let t = clock_gettime(ClockId::Boottime);
    let ms = t
        .tv_sec
        .saturating_mul(1000)
        .saturating_add(t.tv_nsec / 1_000_000);
    println!("test-init: reached /init at {ms} ms since kernel start");
    let mut top: Vec<String> = std::fs::read_dir("/")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    top.sort();
    println!("test-init: / holds {}", top.join(" "));
    if let Ok(text) = std::fs::read_to_string("/etc/os-release") {
        for line in text.lines().filter(|l| l.starts_with("IMAGE_VERSION=")) {
            println!("test-init: {line}");
        }
    }
    println!("test-init: powering off");
    // Only PID 1 in a VM runs this; elsewhere reboot(2) fails with EPERM and we exit.
    if let Err(e) = reboot(RebootCommand::PowerOff) {
        eprintln!("test-init: reboot: {e}");
        std::process::exit(1);
    }
}
