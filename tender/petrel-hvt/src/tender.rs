//! The tender from command line to exit status: load and check the unikernel, attach
//! its devices, build the VM, run it, and say why it stopped.
//!
//! The order of checks follows `solo5-hvt` (`solo5-hvt-abi.md` §9) so that a bad
//! unikernel or command line is refused with the same message as upstream's.

use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};

use hvt_abi::abi::{
    HVT_DEFAULT_MEM_SIZE, HVT_HALT_COOKIE_MAX, HVT_HYPERCALL_MAX, HVT_HYPERCALL_PIO_BASE,
    HvtBootInfo, SOLO5_EXIT_ABORT, X86_GUEST_MAX_MEM_SIZE, X86_GUEST_PAGE_SIZE_2M,
};
use hvt_abi::elf::Elf;
use hvt_abi::mft::{DeviceKind, Manifest};
use hvt_abi::note::check_hvt_abi;

use crate::cli::{self, DeviceOptKind, NetSource, Options};
use crate::devices::{self, BlockDev, NetDev, check_block_size};
use crate::dumpcore;
use crate::hypercall::{Device, Flow, Hypercalls};
use crate::layout;
use crate::mem::GuestMem;
use crate::vm::{Vm, VmExit};

/// Largest unikernel file the tender reads (far above any real one; guest memory is
/// at most 4 GiB and the file is read whole).
pub const MAX_KERNEL_FILE: u64 = 1 << 30;

/// Why the tender refused to start: lines for stderr, and whether the usage follows.
#[derive(Debug, Default)]
pub struct Refusal {
    /// Messages, one per line, without the program-name prefix.
    pub lines: Vec<String>,
    /// Print the usage after the lines.
    pub usage: bool,
}

impl Refusal {
    fn line(s: impl Into<String>) -> Refusal {
        Refusal {
            lines: vec![s.into()],
            usage: false,
        }
    }
}

impl<E: std::error::Error> From<E> for Refusal {
    fn from(e: E) -> Refusal {
        Refusal::line(error_chain(&e))
    }
}

/// An error and its sources as one line (`a: b: c`), each cause said once.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = strip_os_error(&e.to_string());
    let mut src = e.source();
    while let Some(c) = src {
        let t = strip_os_error(&c.to_string());
        if !s.ends_with(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = c.source();
    }
    strip_os_error(&s)
}

/// `io::Error` displays `No such file or directory (os error 2)`; upstream prints
/// `strerror` alone, and scripts match that.
pub fn strip_os_error(s: &str) -> String {
    match s.rfind(" (os error ") {
        Some(i) if s.ends_with(')') => s[..i].to_string(),
        _ => s.to_string(),
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunEnd {
    /// The guest halted with this status (the process exits with `status & 0xff`).
    Halt(i32),
    /// The tender stopped the guest: exit status 1, with this message.
    Fault(String),
}

impl RunEnd {
    /// The process exit status, as solo5-hvt's.
    pub fn exit_code(&self) -> i32 {
        match self {
            RunEnd::Halt(s) => s & 0xff,
            RunEnd::Fault(_) => 1,
        }
    }
}

/// A loaded guest, ready to run.
pub struct Tender {
    // Field order matters: the VM must be dropped before the memory it maps.
    vm: Vm,
    mem: GuestMem,
    hypercalls: Hypercalls,
    dumpcore: Option<PathBuf>,
    /// Our pid, read before the seccomp filter (which has no `getpid`) for core names.
    pid: u32,
    /// The boot info handed to the guest (memory size, kernel end, TSC frequency, addresses).
    pub boot_info: HvtBootInfo,
}

fn read_kernel(path: &Path) -> Result<Vec<u8>, Refusal> {
    let fail = |e: std::io::Error| {
        Refusal::line(format!(
            "{}: Could not open: {}",
            path.display(),
            strip_os_error(&e.to_string())
        ))
    };
    let f = std::fs::File::open(path).map_err(fail)?;
    let len = f.metadata().map_err(fail)?.len();
    if len > MAX_KERNEL_FILE {
        return Err(Refusal::line(format!(
            "{}: file is {len} bytes, more than the {MAX_KERNEL_FILE} a unikernel may have",
            path.display()
        )));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    f.take(MAX_KERNEL_FILE)
        .read_to_end(&mut bytes)
        .map_err(fail)?;
    Ok(bytes)
}

/// Guest memory size from `--mem`, as `hvt_x86_mem_size`: round down to 2 MiB (at
/// least 2 MiB), warn if that changed it, refuse more than 4 GiB.
pub fn mem_size(mem_mib: Option<u64>, warn: &mut dyn FnMut(String)) -> Result<u64, Refusal> {
    let asked = match mem_mib {
        Some(m) => m
            .checked_mul(1 << 20)
            .ok_or_else(|| Refusal::line("Malformed argument to --mem"))?,
        None => HVT_DEFAULT_MEM_SIZE,
    };
    let mut mem = asked / X86_GUEST_PAGE_SIZE_2M * X86_GUEST_PAGE_SIZE_2M;
    if mem == 0 {
        mem = X86_GUEST_PAGE_SIZE_2M;
    }
    if mem != asked {
        warn(format!("adjusting memory to {mem} bytes"));
    }
    if mem > X86_GUEST_MAX_MEM_SIZE {
        return Err(Refusal::line(format!(
            "guest memory size {mem} bytes exceeds the max size {X86_GUEST_MAX_MEM_SIZE} bytes"
        )));
    }
    Ok(mem)
}

/// Refuses a `--dumpcore` directory that is missing or not writable, before the guest
/// runs rather than when it aborts.
fn check_dumpcore_dir(dir: &Path) -> Result<(), Refusal> {
    let md = std::fs::metadata(dir).map_err(|e| {
        Refusal::line(format!(
            "dumpcore: cannot open dir: {}: {}",
            dir.display(),
            strip_os_error(&e.to_string())
        ))
    })?;
    if !md.is_dir() {
        return Err(Refusal::line(format!(
            "dumpcore: cannot open dir: {}: Not a directory",
            dir.display()
        )));
    }
    rustix::fs::access(dir, rustix::fs::Access::WRITE_OK)
        .map_err(|_| Refusal::line(format!("dumpcore: dir not writable: {}", dir.display())))
}

/// Collected device options for one manifest entry.
#[derive(Default)]
struct Pending {
    block: Option<std::fs::File>,
    block_size: Option<u16>,
    net: Option<(std::os::fd::OwnedFd, u16)>,
    mac: Option<[u8; 6]>,
}

fn not_declared(arg: &str, name: &str) -> Refusal {
    Refusal {
        lines: vec![
            format!("Resource not declared in manifest: '{name}'"),
            format!("Invalid option: `{arg}'"),
        ],
        usage: true,
    }
}

fn invalid(arg: &str, why: String) -> Refusal {
    Refusal {
        lines: vec![why, format!("Invalid option: `{arg}'")],
        usage: true,
    }
}

/// Reads a unikernel and checks its header and notes, in upstream's order: ELF
/// header, ABI1 note (target and version), MFT1 note, manifest. Returns the file and
/// its manifest.
pub fn load_unikernel(path: &Path) -> Result<(Vec<u8>, Manifest), Refusal> {
    let kpath = path.display().to_string();
    let file = read_kernel(path)?;
    let elf = Elf::parse(&file).map_err(|e| Refusal::line(format!("{kpath}: {e}")))?;
    let prefixed = |e: &dyn std::fmt::Display| Refusal::line(format!("{kpath}: {e}"));
    let abi = elf.abi_info().map_err(|e| prefixed(&e))?;
    check_hvt_abi(&abi).map_err(|e| prefixed(&e))?;
    let mft_bytes = elf.manifest_note().map_err(|e| prefixed(&e))?;
    let mft = Manifest::parse(mft_bytes)
        .map_err(|_| Refusal::line(format!("{kpath}: Solo5 manifest is invalid")))?;
    Ok((file, mft))
}

/// Everything up to the first `KVM_RUN`. Warnings go to `warn` as they happen.
pub fn prepare(opts: &Options, warn: &mut dyn FnMut(String)) -> Result<Tender, Refusal> {
    let kpath = opts.kernel.display().to_string();
    let (file, mut mft) = load_unikernel(&opts.kernel)?;
    let elf = Elf::parse(&file).map_err(|e| Refusal::line(format!("{kpath}: {e}")))?;

    // Pass 2: device options against the manifest.
    let mut pending: Vec<Pending> = (0..mft.len()).map(|_| Pending::default()).collect();
    for d in &opts.devices {
        let want = match d.kind {
            DeviceOptKind::Block(_) | DeviceOptKind::BlockSectorSize(_) => DeviceKind::Block,
            DeviceOptKind::Net(_) | DeviceOptKind::NetMac(_) => DeviceKind::Net,
        };
        let Some(handle) = mft.find_kind(&d.name, want) else {
            return Err(not_declared(&d.arg, &d.name));
        };
        let Some(p) = pending.get_mut(handle) else {
            return Err(not_declared(&d.arg, &d.name));
        };
        match &d.kind {
            DeviceOptKind::Block(path) => {
                // Upstream exits at once here, without the usage.
                p.block = Some(BlockDev::open(path).map_err(|e| Refusal::line(error_chain(&e)))?)
            }
            DeviceOptKind::BlockSectorSize(n) => {
                p.block_size = Some(
                    check_block_size(u64::from(*n)).map_err(|e| invalid(&d.arg, e.to_string()))?,
                )
            }
            DeviceOptKind::Net(NetSource::Iface(ifname)) => {
                p.net = Some(
                    devices::attach_tap(ifname).map_err(|e| invalid(&d.arg, error_chain(&e)))?,
                )
            }
            DeviceOptKind::Net(NetSource::Fd(fd)) => {
                p.net = Some(
                    devices::attach_tap_fd(*fd).map_err(|e| invalid(&d.arg, error_chain(&e)))?,
                )
            }
            DeviceOptKind::NetMac(mac) => p.mac = Some(*mac),
        }
    }

    if let Some(dir) = &opts.dumpcore {
        check_dumpcore_dir(dir)?;
    }
    install_signal_handlers();
    let mem_size = mem_size(opts.mem_mib, warn)?;
    let mut mem = GuestMem::new(mem_size).map_err(|e| {
        Refusal::line(format!(
            "could not allocate guest memory: {}",
            error_chain(&e)
        ))
    })?;
    let vm = Vm::create(&mem)?;

    // Load the ELF: copy, then protect on the host side.
    let plan = elf
        .load_plan(mem_size)
        .map_err(|e| Refusal::line(format!("{kpath}: {e}")))?;
    {
        let bytes = mem.bytes_mut();
        for seg in elf.segments(mem_size) {
            let seg = seg.map_err(|e| Refusal::line(format!("{kpath}: {e}")))?;
            let data = elf.segment_data(&seg);
            let r = seg.file_range();
            let (start, end) = (
                usize::try_from(r.start).unwrap_or(usize::MAX),
                usize::try_from(r.end).unwrap_or(usize::MAX),
            );
            let dst = bytes
                .get_mut(start..end)
                .ok_or_else(|| Refusal::line(format!("{kpath}: segment outside memory")))?;
            dst.copy_from_slice(data);
            let z = seg.zero_range();
            if let Some(tail) = bytes.get_mut(
                usize::try_from(z.start).unwrap_or(usize::MAX)
                    ..usize::try_from(z.end).unwrap_or(usize::MAX),
            ) {
                tail.fill(0);
            }
        }
    }
    for seg in elf.segments(mem_size).flatten() {
        mem.protect(seg.protect_range(), seg.prot).map_err(|e| {
            Refusal::line(format!(
                "{kpath}: mprotect of phdr[{}] failed: {}",
                seg.index,
                error_chain(&e)
            ))
        })?;
    }
    vm.init_vcpu(plan.entry, mem_size)?;

    // Attach devices into the manifest, then check that nothing declared is missing.
    let mut host_devices: Vec<Option<Device>> = Vec::with_capacity(pending.len());
    for (h, p) in pending.into_iter().enumerate() {
        let name = mft
            .get(h)
            .map(|e| e.name_str().to_string())
            .unwrap_or_default();
        if let Some(file) = p.block {
            let dev = BlockDev::new(
                &name,
                file,
                p.block_size.unwrap_or(devices::DEFAULT_BLOCK_SIZE),
            )?;
            mft.attach_block(h, dev.capacity(), dev.block_size())
                .map_err(|e| Refusal::line(format!("manifest: {e}")))?;
            host_devices.push(Some(Device::Block(dev)));
        } else if let Some((fd, mtu)) = p.net {
            let mac = match p.mac {
                Some(m) => m,
                None => devices::random_mac()
                    .map_err(|e| Refusal::line(format!("could not make a MAC address: {e}")))?,
            };
            mft.attach_net(h, mac, mtu)
                .map_err(|e| Refusal::line(format!("manifest: {e}")))?;
            host_devices.push(Some(Device::Net(NetDev::new(fd, mac, mtu))));
        } else {
            host_devices.push(None);
        }
    }
    let missing: Vec<String> = mft
        .unattached()
        .map(|(name, kind)| format!("Device '{name}' of type {kind} declared but not attached."))
        .collect();
    if !missing.is_empty() {
        let mut lines = missing;
        lines.push("All declared devices must be attached. See --help for syntax.".to_string());
        return Err(Refusal {
            lines,
            usage: false,
        });
    }

    let cmdline = cli::guest_cmdline(&opts.guest_args).map_err(|e| Refusal::line(e.to_string()))?;
    let mut mft_copy = vec![0u8; mft.byte_len()];
    mft.write_to(&mut mft_copy)
        .map_err(|e| Refusal::line(format!("manifest: {e}")))?;
    let boot_info = HvtBootInfo {
        mem_size,
        kernel_end: plan.kernel_end,
        cpu_cycle_freq: vm.tsc_hz(),
        ..Default::default()
    };
    let bytes = mem.bytes_mut();
    layout::write_gdt(bytes)?;
    layout::write_page_tables(bytes, mem_size)?;
    let boot_info = layout::write_boot_info(bytes, boot_info, &mft_copy, &cmdline)?;
    let hypercalls = Hypercalls::new(host_devices)
        .map_err(|e| Refusal::line(format!("could not set up poll: {}", error_chain(&e))))?;
    Ok(Tender {
        vm,
        mem,
        hypercalls,
        dumpcore: opts.dumpcore.clone(),
        pid: std::process::id(),
        boot_info,
    })
}

impl Tender {
    /// Hypercall counts by number, for benchmarks.
    pub fn hypercall_counts(&self) -> &[u64; HVT_HYPERCALL_MAX as usize] {
        &self.hypercalls.counts
    }

    /// Runs the guest until it halts or faults.
    pub fn run(&mut self) -> RunEnd {
        // From here on only the system calls in `seccomp::table` work (irreversible).
        let fds = crate::seccomp::SeccompFds::new(self.vm.vcpu_fd(), &self.hypercalls.fds());
        let dump_mem = self
            .dumpcore
            .as_ref()
            .map(|_| (self.mem.host_base(), self.mem.size()));
        if let Err(e) = crate::seccomp::install(&fds, dump_mem) {
            return RunEnd::Fault(error_chain(&e));
        }
        loop {
            let exit = match self.vm.run() {
                Ok(e) => e,
                Err(e) => return RunEnd::Fault(error_chain(&e)),
            };
            match exit {
                VmExit::Interrupted => continue,
                VmExit::IoOut { port, size, value } => {
                    let Some(nr) = hypercall_nr(port, size) else {
                        return RunEnd::Fault(format!(
                            "Invalid guest port access: port=0x{port:x}"
                        ));
                    };
                    match self.hypercalls.handle(&mut self.mem, nr, u64::from(value)) {
                        Ok(Flow::Continue) => continue,
                        Ok(Flow::Halt { status, cookie }) => {
                            if status == SOLO5_EXIT_ABORT {
                                self.dump_core(cookie);
                            }
                            return RunEnd::Halt(status);
                        }
                        Err(f) => return RunEnd::Fault(error_chain(&f)),
                    }
                }
                VmExit::IoIn { port } => {
                    return RunEnd::Fault(format!("Invalid guest port access: port=0x{port:x}"));
                }
                VmExit::FailEntry { reason } => {
                    return RunEnd::Fault(format!(
                        "KVM: entry failure: hw_entry_failure_reason=0x{reason:x}"
                    ));
                }
                VmExit::InternalError { suberror } => {
                    return RunEnd::Fault(format!(
                        "KVM: internal error exit: suberror=0x{suberror:x}"
                    ));
                }
                VmExit::TranslationFault => {
                    return RunEnd::Fault(format!(
                        "KVM: host/guest translation fault: rip=0x{:x}",
                        self.rip()
                    ));
                }
                VmExit::Other { reason } => {
                    return RunEnd::Fault(format!(
                        "KVM: unhandled exit: exit_reason=0x{reason:x}, rip=0x{:x}",
                        self.rip()
                    ));
                }
            }
        }
    }

    fn rip(&self) -> u64 {
        self.vm.regs().map(|r| r.rip).unwrap_or(0)
    }

    /// Writes `DIR/core.solo5-hvt.PID` for an aborted guest when `--dumpcore` was
    /// given, with upstream's messages. Failures are reported, never fatal.
    fn dump_core(&mut self, cookie: Option<u64>) {
        let Some(dir) = self.dumpcore.clone() else {
            return;
        };
        let pid = self.pid;
        let path = dumpcore::core_path(&dir, pid);
        eprintln!(
            "petrel-hvt: dumpcore: dumping guest core to: {}",
            path.display()
        );
        let regs = match (self.vm.regs(), self.vm.sregs()) {
            (Ok(r), Ok(s)) => dumpcore::CoreRegs::from_kvm(&r, &s),
            _ => {
                eprintln!("petrel-hvt: dumpcore: Could not retrieve guest state");
                return;
            }
        };
        let cookie_bytes = cookie
            .and_then(|c| self.mem.slice(c, HVT_HALT_COOKIE_MAX).ok())
            .unwrap_or(&[]);
        let regs = dumpcore::regs_from_trap_frame(cookie_bytes, &regs);
        let resident = self.mem.resident_pages();
        let result = dumpcore::create_core_file(&dir, pid).and_then(|(mut f, _)| {
            dumpcore::write_core(&mut f, &regs, self.mem.bytes(), |i| {
                resident.get(i).copied().unwrap_or(true)
            })
        });
        match result {
            Ok(stats) => eprintln!(
                "petrel-hvt: dumpcore: dumped {} pages of total {} pages",
                stats.pages_dumped, stats.pages_total
            ),
            Err(e) => eprintln!(
                "petrel-hvt: dumpcore: error(s) dumping core, file may be incomplete: {}",
                strip_os_error(&e.to_string())
            ),
        }
    }
}

/// The hypercall number of an `out` to `port` of `size` bytes, if it is one:
/// a 4-byte write to a port in `[0x500, 0x509)`.
pub fn hypercall_nr(port: u16, size: u8) -> Option<u16> {
    if size != 4
        || !(HVT_HYPERCALL_PIO_BASE..HVT_HYPERCALL_PIO_BASE + HVT_HYPERCALL_MAX).contains(&port)
    {
        return None;
    }
    Some(port - HVT_HYPERCALL_PIO_BASE)
}

extern "C" fn on_signal(sig: libc::c_int) {
    // Only async-signal-safe calls here: pick a prepared message, write, _exit.
    let msg: &[u8] = match sig {
        libc::SIGINT => b"petrel-hvt: Exiting on signal 2\n",
        libc::SIGTERM => b"petrel-hvt: Exiting on signal 15\n",
        _ => b"petrel-hvt: Exiting on signal\n",
    };
    // SAFETY: write(2) and _exit(2) are async-signal-safe; `msg` is a static buffer.
    unsafe {
        libc::write(2, msg.as_ptr().cast(), msg.len());
        libc::_exit(1);
    }
}

/// SIGINT and SIGTERM end the guest with exit status 1 and upstream's message.
fn install_signal_handlers() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: a zeroed sigaction is valid (empty mask, no flags); the handler is an
        // `extern "C"` function that only makes async-signal-safe calls.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// Parses `args` (without argv[0]), runs, and returns the process exit status,
/// printing every message on stderr as `petrel-hvt: …`.
pub fn main_with_args(args: Vec<OsString>) -> i32 {
    let prog = "petrel-hvt";
    let kernel = cli::find_kernel(&args);
    let opts = match cli::parse(args) {
        Ok(cli::Parsed::Help) => {
            eprint!("{}", cli::usage(prog));
            return 1;
        }
        Ok(cli::Parsed::Version) => {
            eprint!("{}", cli::version_text());
            return 0;
        }
        Ok(cli::Parsed::Run(o)) => o,
        Err(e) => {
            // Upstream checks the unikernel's notes before the options.
            if let Some(Err(r)) = kernel
                .filter(|_| e != cli::CliError::MissingKernel)
                .map(|k| load_unikernel(&k))
            {
                for l in &r.lines {
                    eprintln!("{prog}: {l}");
                }
                return 1;
            }
            if let Some(w) = e.warning() {
                eprintln!("{prog}: {w}");
            }
            eprintln!("{prog}: {e}");
            if e.wants_usage() {
                eprint!("{}", cli::usage(prog));
            }
            return 1;
        }
    };
    let mut warn = |s: String| eprintln!("{prog}: {s}");
    let mut tender = match prepare(&opts, &mut warn) {
        Ok(t) => t,
        Err(r) => {
            for l in &r.lines {
                eprintln!("{prog}: {l}");
            }
            if r.usage {
                eprint!("{}", cli::usage(prog));
            }
            return 1;
        }
    };
    let end = tender.run();
    if let RunEnd::Fault(msg) = &end {
        eprintln!("{prog}: {msg}");
    }
    end.exit_code()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hypercall_ports() {
        assert_eq!(hypercall_nr(0x500, 4), Some(0));
        assert_eq!(hypercall_nr(0x508, 4), Some(8));
        assert_eq!(hypercall_nr(0x509, 4), None);
        assert_eq!(hypercall_nr(0x4ff, 4), None);
        assert_eq!(hypercall_nr(0x502, 2), None);
        assert_eq!(hypercall_nr(0x600, 4), None);
    }

    #[test]
    fn memory_sizes_follow_upstream() {
        let mut warnings = Vec::new();
        let mut w = |s: String| warnings.push(s);
        assert_eq!(mem_size(None, &mut w).unwrap(), 512 << 20);
        assert_eq!(mem_size(Some(4), &mut w).unwrap(), 4 << 20);
        assert_eq!(mem_size(Some(3), &mut w).unwrap(), 2 << 20);
        assert_eq!(mem_size(Some(1), &mut w).unwrap(), 2 << 20);
        assert_eq!(mem_size(Some(4096), &mut w).unwrap(), 4 << 30);
        assert!(mem_size(Some(4098), &mut w).is_err());
        assert!(mem_size(Some(u64::MAX), &mut w).is_err());
        assert_eq!(
            warnings,
            [
                "adjusting memory to 2097152 bytes",
                "adjusting memory to 2097152 bytes"
            ]
        );
    }

    #[test]
    fn error_chain_says_each_cause_once() {
        let e = crate::devices::TapError {
            iface: "tap9".into(),
            source: std::io::Error::from_raw_os_error(libc::ENOENT),
        };
        assert_eq!(
            error_chain(&e),
            "Could not attach interface: tap9: No such file or directory"
        );
    }

    #[test]
    fn os_error_suffix_is_stripped() {
        assert_eq!(
            strip_os_error("x: No such file or directory (os error 2)"),
            "x: No such file or directory"
        );
        assert_eq!(strip_os_error("plain"), "plain");
    }

    #[test]
    fn run_end_exit_codes() {
        assert_eq!(RunEnd::Halt(42).exit_code(), 42);
        assert_eq!(RunEnd::Halt(-1).exit_code(), 255);
        assert_eq!(RunEnd::Halt(256).exit_code(), 0);
        assert_eq!(RunEnd::Fault(String::new()).exit_code(), 1);
    }
}
