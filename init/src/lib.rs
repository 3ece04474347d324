//! `petrel-init`: PID 1 of the Petrel image (DESIGN §2 step 2, §2a).
//!
//! It mounts the pseudo file systems, loads kernel modules (modalias coldplug until
//! nothing new loads, the always-needed set, then a uevent listener), mounts the ESP
//! (found by `LoaderDevicePartUUID`) read-only and the data partition (grown to the end
//! of the disk on first boot, online), reads the device config (defaults when absent or
//! broken), configures the network through `petrel-netcfg` with DHCP and SNTP as child
//! processes, keeps the clock above a persisted floor, arms the watchdog, starts and
//! restarts the configured services with backoff, reaps every child, enforces the
//! trial-boot deadline, and powers off or reboots cleanly on a signal or the power
//! button. Progress goes to every console through `/dev/kmsg` as
//! `petrel-init: <what> ready (+N ms)` milestones (`modules`, `esp`, `data`, `network`,
//! and finally `petrel-init: ready (+N ms)`), N in milliseconds since the kernel started.
//!
//! Layers: pure, tested logic without I/O (`modules::{index, plan, glob}`, `uevent`,
//! `gpt`, `efi`, `supervisor`, `clock`, `mac`, `input`, `cmdline`, `config`), the few
//! system calls rustix lacks (`sys`), and the steps and main loop that do the I/O
//! (`boot`, `disk`, `watchdog`, `pid1`). PID 1 must never panic (a panic is a kernel
//! panic): no code here unwraps or indexes on a fallible path; a failing step is logged
//! and the boot goes on, degraded but reachable.
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
pub mod pid1;
pub mod supervisor;
pub mod sys;
pub mod uevent;
pub mod watchdog;
