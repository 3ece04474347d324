//! Boot figures of the firmware image for `make bench`: sizes of the UKI, initramfs and
//! disk image, and, over a few boots in QEMU, the time from kernel start to
//! `petrel-init: ready` as init reports it, how much of it is module loading, and how
//! much init spends from its own start to ready.
//!
//! Under TCG (these machines) the times are emulation times: compare them run to run,
//! never with bare metal. `BENCH_BOOTS` sets the number of boots (default 3).

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use petrel_qemu_test::{Config, Qemu, accel_args, default_image};

/// `+N ms` at the end of a milestone line.
fn plus_ms(line: &str) -> Option<u64> {
    let start = line.rfind("(+")? + 2;
    let end = line[start..].find(" ms")? + start;
    line[start..end].parse().ok()
}

/// `in N ms` at the end of the module summary line.
fn in_ms(line: &str) -> Option<u64> {
    let start = line.rfind(" in ")? + 4;
    line[start..].strip_suffix(" ms")?.parse().ok()
}

/// Kernel timestamp `[    2.345678]` of the first line mentioning `needle`, in ms.
fn kernel_ms(serial: &str, needle: &str) -> Option<u64> {
    let line = serial.lines().find(|l| l.contains(needle))?;
    let inner = line.strip_prefix('[')?.split(']').next()?.trim();
    // "2.345678": whole seconds and microseconds, in integers.
    let (s, frac) = inner.split_once('.')?;
    let secs: u64 = s.parse().ok()?;
    let micros: u64 = format!("{frac:0<6}").get(..6)?.parse().ok()?;
    Some(secs * 1000 + micros / 1000)
}

fn pct(part: u64, whole: u64) -> f64 {
    100.0 * part as f64 / whole.max(1) as f64
}

/// One boot's figures, from its console.
struct Boot {
    ready: u64,
    start: u64,
    modules: u64,
    own: u64,
}

impl std::fmt::Display for Boot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ready at +{} ms after kernel start; init started at +{} ms; modules {} ms; init's own {} ms",
            self.ready, self.start, self.modules, self.own
        )
    }
}

fn figures(serial: &str) -> Result<Boot, String> {
    let ready_line = serial
        .lines()
        .find(|l| l.contains("petrel-init: ready (+"))
        .ok_or("no ready line")?;
    let ready = plus_ms(ready_line).ok_or("no time in the ready line")?;
    let modules = serial
        .lines()
        .find(|l| l.contains("petrel-init: modules:") && l.contains(" loaded, "))
        .and_then(in_ms)
        .unwrap_or(0);
    let start = kernel_ms(serial, "petrel-init: petrel-init").unwrap_or(0);
    // What init spends between its start and ready, module loading excluded: init's own
    // work (mounts, config, netlink, spawning) plus waiting on devices and entropy.
    let own = ready.saturating_sub(start).saturating_sub(modules);
    Ok(Boot {
        ready,
        start,
        modules,
        own,
    })
}

#[derive(Default)]
struct Figures {
    ready: Vec<u64>,
    modules: Vec<u64>,
    own: Vec<u64>,
}

impl Figures {
    fn push(&mut self, b: &Boot) {
        self.ready.push(b.ready);
        self.modules.push(b.modules);
        self.own.push(b.own);
    }
}

fn median(v: &mut [u64]) -> u64 {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let img = default_image();
    let dir = img.parent().unwrap_or(Path::new("."));
    let size = |name: &str| std::fs::metadata(dir.join(name)).map(|m| (m.len(), m.blocks() * 512));
    println!("{:<44} {:>14} {:>14}", "artifact", "bytes", "on disk");
    for name in ["petrel.efi", "initramfs.cpio.gz", "petrel.img"] {
        let (len, alloc) = size(name)?;
        println!("{name:<44} {len:>14} {alloc:>14}");
    }
    let uki = size("petrel.efi")?.0;
    println!(
        "UKI target <= 16 MB: {}",
        if uki <= 16_000_000 { "ok" } else { "MISS" }
    );

    let boots: usize = std::env::var("BENCH_BOOTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    println!(
        "\nboots under QEMU ({}), {boots} runs:",
        accel_args().join(" ")
    );
    // Each run boots a fresh copy (a first boot: the data partition grows, the MAC secret
    // is made, which waits for the kernel's entropy), then reboots it (an ordinary boot).
    let mut first = Figures::default();
    let mut later = Figures::default();
    for i in 0..boots {
        let mut vm = Qemu::boot(&Config::new(&img))?;
        vm.wait_for("petrel-init: ready (+", Duration::from_secs(300))?;
        let f = figures(&vm.serial())?;
        println!(
            "  run {} first boot: {f}; QEMU wall {:.1} s",
            i + 1,
            vm.elapsed().as_secs_f64()
        );
        first.push(&f);
        let mark = vm.serial().len();
        vm.ctrl_alt_delete()?;
        vm.wait_for("petrel-init: petrel-init", Duration::from_secs(300))?;
        vm.wait_for("petrel-init: ready (+", Duration::from_secs(300))?;
        let serial = vm.serial();
        let f = figures(serial.get(mark..).unwrap_or_default())?;
        println!("  run {} reboot:     {f}", i + 1);
        later.push(&f);
        vm.kill();
    }
    for (name, fig) in [("first boot", &mut first), ("later boots", &mut later)] {
        let (r, m, o) = (
            median(&mut fig.ready),
            median(&mut fig.modules),
            median(&mut fig.own),
        );
        println!("\n{name}, median{:>26} {:>10}", "", "ms");
        println!("{:<44} {r:>10}", "kernel start -> petrel-init ready");
        println!(
            "{:<44} {m:>10}  ({:.0}% of boot)",
            "module loading",
            pct(m, r)
        );
        println!(
            "{:<44} {o:>10}  ({:.0}% of boot; target <= 10%)",
            "init's own work (start -> ready, minus modules)",
            pct(o, r)
        );
    }
    Ok(())
}
