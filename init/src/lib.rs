//! `petrel-init`: PID 1 of the Petrel image (DESIGN §2 step 2, §2a).
//!
//! It mounts the pseudo file systems, loads kernel modules (modalias coldplug until
//! nothing new loads, the always-needed set, then a uevent listener), mounts the ESP
//! (found by `LoaderDevicePartUUID`) read-only and the data partition (grown to the end
//! of the disk on first boot, online), reads the device config (defaults when absent or
//! broken), configures the network through `petrel-netcfg` with DHCP and SNTP as child
//! processes, keeps the clock above a persisted floor, arms the watchdog, starts and
//! restarts `petreld` and the configured services with backoff, reaps every child,
//! enforces the trial-boot deadline, and powers off or reboots cleanly on a signal or
//! the power button (`petreld` first, so that it stops the unikernels and saves its
//! state). Progress goes to every console through `/dev/kmsg` as
//! `petrel-init: <what> ready (+N ms)` milestones (`modules`, `esp`, `data`, `network`,
//! and finally `petrel-init: ready (+N ms)`), N in milliseconds since the kernel started.
//!
//! Layers: pure, tested logic without I/O (`modules::{index, plan, glob}`, `uevent`,
//! `gpt`, `efi`, `supervisor`, `clock`, `mac`, `input`, `cmdline`, `config`,
//! `petreld`), the few system calls rustix lacks (`sys`), and the steps and main loop
//! that do the I/O (`boot`, `disk`, `watchdog`, `pid1`). PID 1 must never panic (a
//! panic is a kernel panic): no code here unwraps or indexes on a fallible path; a
//! failing step is logged and the boot goes on, degraded but reachable.
//!
//! Kernel command line: `petrel.test=poweroff-when-ready` (or `reboot-when-ready`) ends
//! the boot cleanly right after `ready`, for tests.

pub mod boot;
pub mod clock;
pub mod cmdline;
pub mod config;
pub mod disk;
pub mod efi;
pub mod files;
pub mod gpt;
pub mod input;
pub mod log;
pub mod mac;
pub mod modules;
pub mod petreld;
pub mod pid1;
pub mod supervisor;
pub mod sys;
pub mod uevent;
pub mod watchdog;

/// Writes the seed corpora of the fuzz targets `uevent` and `gpt_table`:
/// `PETREL_WRITE_CORPUS=1 cargo test -p petrel-init --lib -- --ignored write_corpus`.
#[cfg(test)]
mod corpus {
    #[test]
    #[ignore = "writes fuzz/corpus; run by hand"]
    #[allow(clippy::unwrap_used)]
    fn write_corpus() {
        if std::env::var_os("PETREL_WRITE_CORPUS").is_none() {
            return;
        }
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
        let uevents: [(&str, &[u8]); 4] = [
            (
                "pci-add",
                b"add@/devices/pci0000:00/0000:00:04.0\0ACTION=add\0DEVPATH=/devices/pci0000:00/0000:00:04.0\0\
                  SUBSYSTEM=pci\0MODALIAS=pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00\0SEQNUM=812\0",
            ),
            (
                "input-add",
                b"add@/devices/LNXSYSTM:00/LNXPWRBN:00/input/input0/event0\0ACTION=add\0SUBSYSTEM=input\0\
                  MAJOR=13\0MINOR=64\0DEVNAME=input/event0\0SEQNUM=900\0",
            ),
            ("remove", b"remove@/devices/virtual/net/tap0\0ACTION=remove\0SUBSYSTEM=net\0INTERFACE=tap0\0"),
            ("libudev", b"libudev\0\xfe\xed\xca\xfe\x28\0\0\0"),
        ];
        let dir = root.join("uevent");
        std::fs::create_dir_all(&dir).unwrap();
        for (name, bytes) in uevents {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
        let dir = root.join("gpt_table");
        std::fs::create_dir_all(&dir).unwrap();
        let disk = crate::gpt::tests::make_disk(40_000);
        std::fs::write(dir.join("esp-and-data"), &disk[512..512 + 512 + 16384]).unwrap();
    }
}
