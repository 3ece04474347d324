//! The seccomp allow-list the tender runs the guest under.
//!
//! Once setup is done and before the first `KVM_RUN`, [`install`] refuses to go on under
//! the `READ_IMPLIES_EXEC` personality, sets `PR_SET_NO_NEW_PRIVS` and loads a BPF
//! filter on every thread (`SECCOMP_FILTER_FLAG_TSYNC`). From then on the process can
//! make only the system calls in [`table`], with the arguments listed there; anything
//! else kills the whole process with `SIGSYS` (`SECCOMP_RET_KILL_PROCESS`).
//!
//! The table was derived with `strace -f` over every example guest and every way a run
//! ends (halt, abort with and without `--dumpcore`, bad pointer, bad port, `hlt`,
//! triple fault, block I/O, poll, a tap). Unlike upstream's list it filters arguments:
//! every fd-taking call is bound to the fds it is for (the vCPU, the console, the
//! wait set, the timer, block files, taps), `ioctl` to three request numbers, and the
//! allocator's memory calls to anonymous, non-executable memory. Two things upstream
//! allows are absent because nothing here makes them: `futex` (the tender has one
//! thread) and `rt_sigreturn` (its signal handlers `_exit`, and std's SIGSEGV handler
//! only returns after `rt_sigaction`, which is denied: the process dies either way).
//!
//! Some things the code would do lazily on first use under the filter are done before
//! it by [`install`] instead of being allowed: see [`warm_up`].
//!
//! `Tender::run` installs the filter on the calling process, irreversibly: a caller that
//! wants to run a guest in-process more than once must fork.

use std::io;
use std::os::fd::{BorrowedFd, RawFd};

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

use crate::hypercall::HypercallFds;

/// `_IO(KVMIO, 0x80)`.
pub const KVM_RUN: u64 = 0xae80;
/// `_IOR(KVMIO, 0x81, struct kvm_regs)`.
pub const KVM_GET_REGS: u64 = ioc_read(0x81, size_of::<kvm_bindings::kvm_regs>());
/// `_IOR(KVMIO, 0x83, struct kvm_sregs)`.
pub const KVM_GET_SREGS: u64 = ioc_read(0x83, size_of::<kvm_bindings::kvm_sregs>());

/// `_IOR(KVMIO, nr, size)` as in `<asm-generic/ioctl.h>` (x86_64: `_IOC_READ` = 2).
const fn ioc_read(nr: u64, size: usize) -> u64 {
    const KVMIO: u64 = 0xae;
    (2 << 30) | ((size as u64) << 16) | (KVMIO << 8) | nr
}

/// A C `int` (fd, flag, clock id) as the unsigned value a syscall argument carries.
const fn c_bits(v: libc::c_int) -> u64 {
    u32::from_ne_bytes(v.to_ne_bytes()) as u64
}

/// `personality(2)` flag that makes every readable mapping executable
/// (`<linux/personality.h>`).
pub const READ_IMPLIES_EXEC: libc::c_int = 0x040_0000;
/// `personality(0xffffffff)` queries without changing anything.
const PERSONALITY_QUERY: libc::c_ulong = 0xffff_ffff;

/// `O_LARGEFILE` as the x86_64 kernel sees it; musl's `open` always adds it.
const O_LARGEFILE: u64 = 0o100_000;
/// The flags `dumpcore::create_core_file` reaches `open(2)` with: std's
/// `create_new(true).write(true)` plus musl's `O_CLOEXEC | O_LARGEFILE`.
const CORE_OPEN_FLAGS: u64 =
    c_bits(libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC) | O_LARGEFILE;
/// The core file's mode (upstream's `S_IRUSR | S_IWUSR`).
const CORE_MODE: u64 = 0o600;

/// Why the filter could not be installed. Each is fatal: the guest never runs.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The process would map every readable page executable (upstream's wording).
    #[error(
        "Cowardly refusing to run with a sys_personality of READ_IMPLIES_EXEC. \
         Please report a bug, with details of your Linux distribution"
    )]
    ReadImpliesExec,
    /// `personality(2)` failed.
    #[error("seccomp: could not read the process personality")]
    Personality(#[source] io::Error),
    /// No fd number could be reserved for the core file.
    #[error("seccomp: could not find the core file's fd")]
    CoreFd(#[source] io::Error),
    /// The rules did not compile to BPF.
    #[error("seccomp: could not build the filter")]
    Build(#[source] seccompiler::BackendError),
    /// `prctl(PR_SET_NO_NEW_PRIVS)` or `seccomp(SECCOMP_SET_MODE_FILTER)` failed.
    #[error("seccomp: could not install the filter")]
    Install(#[source] seccompiler::Error),
}

/// The host fds the guest's run uses, each bound into the rules of its calls.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeccompFds {
    /// The vCPU (`KVM_RUN`, `KVM_GET_REGS`, `KVM_GET_SREGS`).
    pub vcpu: RawFd,
    /// The poll wait set (`epoll_pwait`).
    pub waitset: RawFd,
    /// The poll timer (`timerfd_settime`).
    pub timerfd: RawFd,
    /// Block backing files (`pread64`, `pwrite64`).
    pub blocks: Vec<RawFd>,
    /// Taps (`read`, `write`).
    pub nets: Vec<RawFd>,
}

impl SeccompFds {
    /// The fds of a VM's vCPU and of its hypercall handlers.
    pub fn new(vcpu: RawFd, h: &HypercallFds) -> SeccompFds {
        SeccompFds {
            vcpu,
            waitset: h.waitset,
            timerfd: h.timerfd,
            blocks: h.blocks.clone(),
            nets: h.nets.clone(),
        }
    }
}

/// What `--dumpcore` needs after the guest aborts, to allow exactly that.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DumpcoreTarget {
    /// Host address of guest memory (`mincore` on it decides which pages to write).
    pub mem_addr: u64,
    /// Its length in bytes.
    pub mem_len: u64,
    /// The fd the core file will get: the lowest free fd when the filter is installed.
    /// Under the filter, the core file's `open` is the only call that can create an fd.
    pub core_fd: RawFd,
}

/// How wide an argument comparison is. The kernel reads fds, `ioctl` requests, clock
/// ids and `whence` as 32-bit values, so only their low half is compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Width {
    /// The low 32 bits.
    U32,
    /// All 64 bits.
    U64,
}

/// One argument condition: `(args[index] & mask) == value`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArgCheck {
    /// Argument index, 0 to 5.
    pub index: u8,
    /// Comparison width.
    pub width: Width,
    /// Bits compared.
    pub mask: u64,
    /// Their required value.
    pub value: u64,
}

impl ArgCheck {
    /// `args[index] == fd`.
    pub fn fd(index: u8, fd: RawFd) -> ArgCheck {
        // Fds are non-negative; a negative one (never valid) compares as its bit pattern.
        ArgCheck::eq32(index, c_bits(fd))
    }

    /// Low 32 bits of `args[index] == value`.
    pub fn eq32(index: u8, value: u64) -> ArgCheck {
        ArgCheck {
            index,
            width: Width::U32,
            mask: u64::from(u32::MAX),
            value,
        }
    }

    /// `args[index] == value`, all 64 bits.
    pub fn eq64(index: u8, value: u64) -> ArgCheck {
        ArgCheck {
            index,
            width: Width::U64,
            mask: u64::MAX,
            value,
        }
    }

    /// `args[index] & mask == value`, all 64 bits.
    pub fn masked(index: u8, mask: u64, value: u64) -> ArgCheck {
        ArgCheck {
            index,
            width: Width::U64,
            mask,
            value,
        }
    }

    fn condition(&self) -> Result<SeccompCondition, seccompiler::BackendError> {
        let len = match self.width {
            Width::U32 => SeccompCmpArgLen::Dword,
            Width::U64 => SeccompCmpArgLen::Qword,
        };
        let op = match (self.width, self.mask) {
            (Width::U32, m) if m == u64::from(u32::MAX) => SeccompCmpOp::Eq,
            (Width::U64, u64::MAX) => SeccompCmpOp::Eq,
            (_, m) => SeccompCmpOp::MaskedEq(m),
        };
        SeccompCondition::new(self.index, len, op, self.value)
    }
}

/// Which arguments a system call is allowed with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Args {
    /// Any arguments.
    Any,
    /// Only when every check of at least one of these rules holds. No rules: never
    /// (the call is left out of the filter, e.g. `read` when there is no tap).
    OneOf(Vec<Vec<ArgCheck>>),
}

/// One row of the reviewed table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The system call's name.
    pub name: &'static str,
    /// Its x86_64 number.
    pub nr: i64,
    /// The arguments it is allowed with.
    pub args: Args,
    /// Who makes it, when, and why the arguments are what they are.
    pub reason: &'static str,
}

fn entry(name: &'static str, nr: libc::c_long, args: Args, reason: &'static str) -> Entry {
    Entry {
        name,
        nr,
        args,
        reason,
    }
}

/// One rule per fd: `args[index]` is one of `fds`.
fn any_fd(index: u8, fds: impl IntoIterator<Item = RawFd>) -> Args {
    Args::OneOf(
        fds.into_iter()
            .map(|fd| vec![ArgCheck::fd(index, fd)])
            .collect(),
    )
}

/// Only `PROT_READ` and `PROT_WRITE` may be set: never `PROT_EXEC`.
fn prot_rw_only(index: u8) -> ArgCheck {
    ArgCheck::masked(index, !c_bits(libc::PROT_READ | libc::PROT_WRITE), 0)
}

/// The allow-list for a guest whose run uses `fds`, plus what `--dumpcore` needs.
pub fn table(fds: &SeccompFds, dumpcore: Option<&DumpcoreTarget>) -> Vec<Entry> {
    let console = [libc::STDOUT_FILENO, libc::STDERR_FILENO];
    let mut ioctl_rules = vec![
        vec![ArgCheck::fd(0, fds.vcpu), ArgCheck::eq32(1, KVM_RUN)],
        vec![ArgCheck::fd(0, fds.vcpu), ArgCheck::eq32(1, KVM_GET_REGS)],
    ];
    let mut write_fds: Vec<RawFd> = console.iter().chain(&fds.nets).copied().collect();
    if let Some(d) = dumpcore {
        ioctl_rules.push(vec![
            ArgCheck::fd(0, fds.vcpu),
            ArgCheck::eq32(1, KVM_GET_SREGS),
        ]);
        write_fds.push(d.core_fd);
    }

    let mut t = vec![
        entry(
            "ioctl",
            libc::SYS_ioctl,
            Args::OneOf(ioctl_rules),
            "the run loop: KVM_RUN on the vCPU; KVM_GET_REGS for the rip in fault messages; \
             KVM_GET_SREGS (only with --dumpcore) for the core's registers",
        ),
        entry(
            "write",
            libc::SYS_write,
            any_fd(0, write_fds),
            "fd 1: the PUTS hypercall; fd 2: messages; taps: NET_WRITE; with --dumpcore the \
             core file",
        ),
        entry(
            "read",
            libc::SYS_read,
            any_fd(0, fds.nets.iter().copied()),
            "NET_READ from a tap (absent without taps)",
        ),
        entry(
            "pread64",
            libc::SYS_pread64,
            any_fd(0, fds.blocks.iter().copied()),
            "BLOCK_READ from a block file (absent without block devices)",
        ),
        entry(
            "pwrite64",
            libc::SYS_pwrite64,
            any_fd(0, fds.blocks.iter().copied()),
            "BLOCK_WRITE to a block file (absent without block devices)",
        ),
        entry(
            "epoll_pwait",
            libc::SYS_epoll_pwait,
            any_fd(0, [fds.waitset]),
            "POLL waits on the wait set (rustix's epoll::wait without a timeout)",
        ),
        entry(
            "timerfd_settime",
            libc::SYS_timerfd_settime,
            Args::OneOf(vec![vec![
                ArgCheck::fd(0, fds.timerfd),
                ArgCheck::eq32(1, 0),
            ]]),
            "POLL arms its timeout on the poll timer, relative (flags 0)",
        ),
        entry(
            "clock_gettime",
            libc::SYS_clock_gettime,
            Args::OneOf(vec![vec![ArgCheck::eq32(0, c_bits(libc::CLOCK_REALTIME))]]),
            "WALLTIME reads CLOCK_REALTIME through the vDSO, which falls back to this call \
             when the host clocksource has no vDSO support (hpet, acpi_pm); never seen on a \
             TSC host",
        ),
        entry(
            "mmap",
            libc::SYS_mmap,
            Args::OneOf(vec![vec![
                prot_rw_only(2),
                ArgCheck::masked(
                    3,
                    !c_bits(libc::MAP_FIXED),
                    c_bits(libc::MAP_PRIVATE | libc::MAP_ANONYMOUS),
                ),
            ]]),
            "musl's malloc (stdout buffer, message strings, --dumpcore page map): private \
             anonymous memory only, never executable, never shared or file-backed; \
             MAP_FIXED is the guard page mallocng puts after its brk area",
        ),
        entry(
            "mprotect",
            libc::SYS_mprotect,
            Args::OneOf(vec![vec![prot_rw_only(2)]]),
            "musl's malloc makes reserved metadata pages read-write; never executable",
        ),
        entry(
            "mremap",
            libc::SYS_mremap,
            Args::OneOf(vec![vec![ArgCheck::eq64(3, c_bits(libc::MREMAP_MAYMOVE))]]),
            "musl's realloc of an mmap-backed (large) allocation; MREMAP_MAYMOVE only, \
             never MREMAP_FIXED",
        ),
        entry(
            "munmap",
            libc::SYS_munmap,
            Args::Any,
            "musl's free; after the guest stopped, dropping the tender unmaps guest memory \
             and kvm_run, and std's exit unmaps the main thread's signal stack",
        ),
        entry(
            "brk",
            libc::SYS_brk,
            Args::Any,
            "musl's malloc grows its metadata area with brk (read-write, never executable: \
             install refuses READ_IMPLIES_EXEC)",
        ),
        entry(
            "close",
            libc::SYS_close,
            Args::Any,
            "after the guest stopped, dropping the tender closes the VM, vCPU, wait set, \
             timer, block, tap (and core) fds; closing grants nothing",
        ),
        entry(
            "sigaltstack",
            libc::SYS_sigaltstack,
            Args::Any,
            "std::process::exit disables the main thread's signal stack before unmapping it",
        ),
        entry(
            "exit_group",
            libc::SYS_exit_group,
            Args::Any,
            "the end of every run, and the SIGINT/SIGTERM handlers' _exit",
        ),
    ];

    if let Some(d) = dumpcore {
        t.extend([
            entry(
                "open",
                libc::SYS_open,
                Args::OneOf(vec![vec![
                    ArgCheck::eq32(1, CORE_OPEN_FLAGS),
                    ArgCheck::eq32(2, CORE_MODE),
                ]]),
                "--dumpcore: create the core file. Paths cannot be filtered; the flags can: \
                 write-only, O_CREAT|O_EXCL (a new file, never an existing one), mode 0600",
            ),
            entry(
                "fcntl",
                libc::SYS_fcntl,
                Args::OneOf(vec![vec![
                    ArgCheck::fd(0, d.core_fd),
                    ArgCheck::eq32(1, c_bits(libc::F_SETFD)),
                    ArgCheck::eq64(2, c_bits(libc::FD_CLOEXEC)),
                ]]),
                "--dumpcore: musl's open sets FD_CLOEXEC again on the core file",
            ),
            entry(
                "lseek",
                libc::SYS_lseek,
                Args::OneOf(vec![vec![
                    ArgCheck::fd(0, d.core_fd),
                    ArgCheck::eq32(2, c_bits(libc::SEEK_SET)),
                ]]),
                "--dumpcore: the core writer seeks over pages it leaves as holes",
            ),
            entry(
                "mincore",
                libc::SYS_mincore,
                Args::OneOf(vec![vec![
                    ArgCheck::eq64(0, d.mem_addr),
                    ArgCheck::eq64(1, d.mem_len),
                ]]),
                "--dumpcore: which pages of guest memory are resident (only those are read)",
            ),
        ]);
    }
    t
}

/// Compiles [`table`] to a BPF program whose default action kills the process.
pub fn build_filter(
    fds: &SeccompFds,
    dumpcore: Option<&DumpcoreTarget>,
) -> Result<BpfProgram, Error> {
    let mut rules = std::collections::BTreeMap::new();
    for e in table(fds, dumpcore) {
        let chain = match e.args {
            Args::Any => Vec::new(),
            Args::OneOf(r) if r.is_empty() => continue,
            Args::OneOf(r) => r
                .iter()
                .map(|checks| {
                    let conds = checks
                        .iter()
                        .map(ArgCheck::condition)
                        .collect::<Result<Vec<_>, _>>()?;
                    SeccompRule::new(conds)
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(Error::Build)?,
        };
        rules.insert(e.nr, chain);
    }
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::KillProcess,
        SeccompAction::Allow,
        TargetArch::x86_64,
    )
    .map_err(Error::Build)?;
    BpfProgram::try_from(filter).map_err(Error::Build)
}

/// Refuses `READ_IMPLIES_EXEC`, under which every readable mapping (the allocator's,
/// guest memory) would also be executable and the `mmap` rules would mean nothing.
pub fn check_personality() -> Result<(), Error> {
    // SAFETY: personality(0xffffffff) only reads the calling process's persona.
    let persona = unsafe { libc::personality(PERSONALITY_QUERY) };
    if persona < 0 {
        return Err(Error::Personality(io::Error::last_os_error()));
    }
    if persona & READ_IMPLIES_EXEC != 0 {
        return Err(Error::ReadImpliesExec);
    }
    Ok(())
}

/// Does now what code under the filter would otherwise do lazily on first use, with
/// calls the filter does not allow:
/// - rustix finds the vDSO's `clock_gettime` on the first call (WALLTIME), reading the
///   aux vector with `prctl(PR_GET_AUXV)` or by opening `/proc/self/auxv`;
/// - std allocates stdout's buffer on the first `io::stdout()` (PUTS).
pub fn warm_up() {
    let _ = rustix::time::clock_gettime(rustix::time::ClockId::Realtime);
    let _ = io::stdout();
}

/// The fd the next `open` will return: the lowest free one. `probe` is any open fd.
pub fn lowest_free_fd(probe: BorrowedFd<'_>) -> io::Result<RawFd> {
    use std::os::fd::AsRawFd;
    let dup = rustix::io::fcntl_dupfd_cloexec(probe, 0)?;
    Ok(dup.as_raw_fd())
}

/// Loads `prog` on every thread of the process, after checking the personality and
/// setting `PR_SET_NO_NEW_PRIVS`. Irreversible.
pub fn apply(prog: &BpfProgram) -> Result<(), Error> {
    check_personality()?;
    seccompiler::apply_filter_all_threads(prog).map_err(Error::Install)
}

/// Everything between setup and the first `KVM_RUN`: warm up, build the filter for
/// `fds` (and for a core dump of the guest memory at `dump_mem = (addr, len)` when
/// `--dumpcore` was given), and apply it.
pub fn install(fds: &SeccompFds, dump_mem: Option<(u64, u64)>) -> Result<(), Error> {
    warm_up();
    let dumpcore = match dump_mem {
        Some((mem_addr, mem_len)) => {
            // SAFETY: the vCPU fd is open for as long as the tender runs; it is only
            // borrowed here to duplicate it.
            let vcpu = unsafe { BorrowedFd::borrow_raw(fds.vcpu) };
            Some(DumpcoreTarget {
                mem_addr,
                mem_len,
                core_fd: lowest_free_fd(vcpu).map_err(Error::CoreFd)?,
            })
        }
        None => None,
    };
    let prog = build_filter(fds, dumpcore.as_ref())?;
    apply(&prog)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    fn sample(blocks: usize, nets: usize) -> SeccompFds {
        let mut next = 10..;
        let mut take = |n: usize| -> Vec<RawFd> { next.by_ref().take(n).collect() };
        SeccompFds {
            vcpu: 5,
            waitset: 3,
            timerfd: 6,
            blocks: take(blocks),
            nets: take(nets),
        }
    }

    const DUMP: DumpcoreTarget = DumpcoreTarget {
        mem_addr: 0x7f00_0000_0000,
        mem_len: 2 << 20,
        core_fd: 4,
    };

    fn find<'a>(t: &'a [Entry], name: &str) -> Option<&'a Entry> {
        t.iter().find(|e| e.name == name)
    }

    fn rules<'a>(t: &'a [Entry], name: &str) -> &'a [Vec<ArgCheck>] {
        match &find(t, name).unwrap().args {
            Args::OneOf(r) => r,
            Args::Any => panic!("{name} is unconditional"),
        }
    }

    /// The fds one argument of `name` may be, from rules that bind it.
    fn bound_fds(t: &[Entry], name: &str, index: u8) -> Vec<u64> {
        rules(t, name)
            .iter()
            .map(|r| {
                r.iter()
                    .find(|c| c.index == index)
                    .unwrap_or_else(|| panic!("{name}: a rule does not bind arg {index}"))
                    .value
            })
            .collect()
    }

    #[test]
    fn ioctl_request_numbers_match_the_kernel_headers() {
        assert_eq!(KVM_RUN, 0xae80);
        assert_eq!(KVM_GET_REGS, 0x8090_ae81);
        assert_eq!(KVM_GET_SREGS, 0x8138_ae83);
    }

    #[test]
    fn filters_build_for_sample_fd_sets() {
        for (b, n) in [(0, 0), (1, 0), (0, 1), (3, 2), (63, 0), (32, 31)] {
            for dump in [None, Some(&DUMP)] {
                let prog = build_filter(&sample(b, n), dump).unwrap();
                assert!(
                    prog.len() > 10 && prog.len() < 4096,
                    "{b}/{n}: {}",
                    prog.len()
                );
            }
        }
    }

    #[test]
    fn ioctl_is_bound_to_the_vcpu_and_three_requests() {
        let fds = sample(2, 2);
        for dump in [None, Some(&DUMP)] {
            let t = table(&fds, dump);
            let r = rules(&t, "ioctl");
            let mut requests: Vec<u64> = r
                .iter()
                .map(|checks| {
                    assert!(checks.contains(&ArgCheck::fd(0, fds.vcpu)), "{checks:?}");
                    checks.iter().find(|c| c.index == 1).unwrap().value
                })
                .collect();
            requests.sort();
            let mut want = vec![KVM_RUN, KVM_GET_REGS];
            if dump.is_some() {
                want.push(KVM_GET_SREGS);
            }
            want.sort();
            assert_eq!(requests, want);
        }
    }

    #[test]
    fn fd_calls_are_bound_to_their_fds() {
        let fds = sample(2, 3);
        let t = table(&fds, None);
        let as_u64 = |v: &[RawFd]| v.iter().map(|&f| c_bits(f)).collect::<Vec<_>>();
        let mut console_and_taps = vec![1, 2];
        console_and_taps.extend(as_u64(&fds.nets));
        assert_eq!(bound_fds(&t, "write", 0), console_and_taps);
        assert_eq!(bound_fds(&t, "read", 0), as_u64(&fds.nets));
        assert_eq!(bound_fds(&t, "pread64", 0), as_u64(&fds.blocks));
        assert_eq!(bound_fds(&t, "pwrite64", 0), as_u64(&fds.blocks));
        assert_eq!(bound_fds(&t, "epoll_pwait", 0), [c_bits(fds.waitset)]);
        assert_eq!(bound_fds(&t, "timerfd_settime", 0), [c_bits(fds.timerfd)]);
    }

    #[test]
    fn only_calls_without_useful_arguments_are_unconditional() {
        for dump in [None, Some(&DUMP)] {
            let t = table(&sample(1, 1), dump);
            let mut any: Vec<&str> = t
                .iter()
                .filter(|e| e.args == Args::Any)
                .map(|e| e.name)
                .collect();
            any.sort();
            let mut want = vec!["brk", "close", "exit_group", "munmap", "sigaltstack"];
            want.sort();
            assert_eq!(any, want);
        }
    }

    #[test]
    fn calls_for_absent_devices_are_left_out() {
        let t = table(&sample(0, 0), None);
        for name in ["read", "pread64", "pwrite64"] {
            assert!(rules(&t, name).is_empty(), "{name}");
        }
        assert_eq!(bound_fds(&t, "write", 0), [1, 2]);
        // An empty rule list must not become "any arguments" in the BPF: compare with a
        // table that lists the call with a rule.
        let without = build_filter(&sample(0, 0), None).unwrap();
        let with = build_filter(&sample(0, 1), None).unwrap();
        assert!(with.len() > without.len());
    }

    #[test]
    fn dumpcore_calls_exist_only_with_dumpcore() {
        let dump_only = ["open", "fcntl", "lseek", "mincore"];
        let t = table(&sample(1, 1), None);
        for name in dump_only {
            assert!(find(&t, name).is_none(), "{name}");
        }
        let t = table(&sample(1, 1), Some(&DUMP));
        for name in dump_only {
            assert!(find(&t, name).is_some(), "{name}");
        }
        assert!(bound_fds(&t, "write", 0).contains(&c_bits(DUMP.core_fd)));
        assert_eq!(bound_fds(&t, "lseek", 0), [c_bits(DUMP.core_fd)]);
        assert_eq!(bound_fds(&t, "mincore", 0), [DUMP.mem_addr]);
    }

    #[test]
    fn memory_calls_never_allow_exec_or_shared_mappings() {
        let t = table(&sample(0, 0), Some(&DUMP));
        let exec = c_bits(libc::PROT_EXEC);
        for name in ["mmap", "mprotect"] {
            for r in rules(&t, name) {
                let prot = r.iter().find(|c| c.index == 2).unwrap();
                assert_eq!((prot.mask & exec, prot.value & exec), (exec, 0), "{name}");
            }
        }
        let flags = rules(&t, "mmap")[0].iter().find(|c| c.index == 3).unwrap();
        for bit in [libc::MAP_SHARED, libc::MAP_ANONYMOUS, libc::MAP_PRIVATE] {
            assert_ne!(flags.mask & c_bits(bit), 0, "{bit:#x} is checked");
        }
        assert_eq!(flags.value & c_bits(libc::MAP_SHARED), 0);
    }

    #[test]
    fn every_entry_is_unique_and_has_a_reason() {
        let t = table(&sample(1, 1), Some(&DUMP));
        let mut nrs: Vec<i64> = t.iter().map(|e| e.nr).collect();
        nrs.sort();
        nrs.dedup();
        assert_eq!(nrs.len(), t.len());
        for e in &t {
            assert!(e.reason.len() > 20, "{}", e.name);
        }
    }

    /// Runs `f` in a forked child and returns how the child ended. The child only
    /// makes system calls (no allocation, no locks) between fork and `_exit`.
    fn in_child(f: impl FnOnce() -> i32) -> libc::c_int {
        // SAFETY: the child runs `f`, which the callers keep to raw system calls on
        // memory prepared before the fork, and then `_exit`s without unwinding.
        unsafe {
            let pid = libc::fork();
            assert!(pid >= 0, "fork failed");
            if pid == 0 {
                libc::_exit(f());
            }
            let mut status = 0;
            assert_eq!(libc::waitpid(pid, &mut status, 0), pid);
            status
        }
    }

    fn killed_by_sigsys(status: libc::c_int) -> bool {
        libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGSYS
    }

    fn exited(status: libc::c_int, code: i32) -> bool {
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == code
    }

    /// A filter for fds that do not exist in the child (100, 101, …), so that allowed
    /// calls fail with EBADF instead of acting, and denied ones kill.
    fn child_filter() -> BpfProgram {
        let fds = SeccompFds {
            vcpu: 100,
            waitset: 101,
            timerfd: 102,
            blocks: vec![103],
            nets: vec![104],
        };
        build_filter(&fds, None).unwrap()
    }

    const KVM_RUN_NR: libc::c_long = 0xae80;

    fn raw(nr: libc::c_long, a: [libc::c_long; 3]) -> libc::c_long {
        // SAFETY: the calls used in these tests take no pointers, or null/zero-length
        // buffers, or only fds that do not exist.
        unsafe { libc::syscall(nr, a[0], a[1], a[2]) }
    }

    #[test]
    fn allowed_calls_pass_the_filter() {
        let prog = child_filter();
        let status = in_child(|| {
            if apply(&prog).is_err() {
                return 10;
            }
            // Each is allowed by the filter; failing with EBADF is fine.
            let calls: [(libc::c_long, [libc::c_long; 3]); 5] = [
                (libc::SYS_ioctl, [100, KVM_RUN_NR, 0]),
                (libc::SYS_write, [2, 0, 0]),
                (libc::SYS_read, [104, 0, 0]),
                (libc::SYS_pread64, [103, 0, 0]),
                (libc::SYS_close, [99, 0, 0]),
            ];
            for (nr, a) in calls {
                raw(nr, a);
            }
            let mut ts = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: `ts` is a valid timespec to write to.
            let rc =
                unsafe { libc::syscall(libc::SYS_clock_gettime, libc::CLOCK_REALTIME, &mut ts) };
            if rc != 0 {
                return 11;
            }
            // SAFETY: a fresh private anonymous mapping, unmapped right away.
            unsafe {
                let p = libc::mmap(
                    std::ptr::null_mut(),
                    4096,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                );
                if p == libc::MAP_FAILED {
                    return 12;
                }
                libc::munmap(p, 4096);
            }
            7
        });
        assert!(exited(status, 7), "status {status:#x}");
    }

    #[test]
    fn forbidden_calls_kill_the_process_with_sigsys() {
        let prog = child_filter();
        let forbidden: [(&str, libc::c_long, [libc::c_long; 3]); 8] = [
            ("getpid", libc::SYS_getpid, [0, 0, 0]),
            ("socket", libc::SYS_socket, [libc::AF_INET.into(), 1, 0]),
            ("ioctl on another fd", libc::SYS_ioctl, [99, KVM_RUN_NR, 0]),
            (
                "KVM_SET_REGS on the vCPU",
                libc::SYS_ioctl,
                [100, 0x4090_ae82, 0],
            ),
            ("write to stdin", libc::SYS_write, [0, 0, 0]),
            ("read from stdout", libc::SYS_read, [1, 0, 0]),
            ("pread64 on a tap", libc::SYS_pread64, [104, 0, 0]),
            (
                "clock_gettime(MONOTONIC)",
                libc::SYS_clock_gettime,
                [1, 0, 0],
            ),
        ];
        for (what, nr, a) in forbidden {
            let status = in_child(|| {
                if apply(&prog).is_err() {
                    return 10;
                }
                raw(nr, a);
                0
            });
            assert!(killed_by_sigsys(status), "{what}: status {status:#x}");
        }
    }

    #[test]
    fn executable_or_shared_memory_kills() {
        let prog = child_filter();
        let cases: [(&str, libc::c_int, libc::c_int); 3] = [
            (
                "PROT_EXEC",
                libc::PROT_READ | libc::PROT_EXEC,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            ),
            (
                "MAP_SHARED",
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            ),
            ("file-backed", libc::PROT_READ, libc::MAP_PRIVATE),
        ];
        for (what, prot, flags) in cases {
            let status = in_child(|| {
                if apply(&prog).is_err() {
                    return 10;
                }
                // SAFETY: a new mapping at an address the kernel picks (or a failure).
                unsafe { libc::mmap(std::ptr::null_mut(), 4096, prot, flags, 0, 0) };
                0
            });
            assert!(killed_by_sigsys(status), "{what}: status {status:#x}");
        }
        let status = in_child(|| {
            if apply(&prog).is_err() {
                return 10;
            }
            let mut x = [0u8; 4096];
            let page = (x.as_mut_ptr() as usize) & !4095;
            // SAFETY: asks for exec on a stack page; the filter kills before the kernel
            // acts.
            unsafe { libc::mprotect(page as *mut _, 4096, libc::PROT_READ | libc::PROT_EXEC) };
            0
        });
        assert!(
            killed_by_sigsys(status),
            "mprotect exec: status {status:#x}"
        );
    }

    #[test]
    fn read_implies_exec_is_refused() {
        let prog = child_filter();
        let status = in_child(|| {
            // SAFETY: sets the child's own persona; it exits right after.
            unsafe { libc::personality(READ_IMPLIES_EXEC as libc::c_ulong) };
            match apply(&prog) {
                Err(Error::ReadImpliesExec) => 3,
                _ => 4,
            }
        });
        assert!(exited(status, 3), "status {status:#x}");
    }

    #[test]
    fn lowest_free_fd_is_what_open_returns_next() {
        // In a child: the test harness's other threads open fds concurrently.
        let status = in_child(|| {
            // SAFETY: fd 0..2 may be closed in the harness; /dev/null is opened raw
            // with a static path and checked.
            let probe = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY) };
            if probe < 0 {
                return 10;
            }
            // SAFETY: `probe` was just opened and stays open.
            let predicted = lowest_free_fd(unsafe { BorrowedFd::borrow_raw(probe) });
            // SAFETY: as above.
            let next = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY) };
            match predicted {
                Ok(p) if p == next => 3,
                _ => 4,
            }
        });
        assert!(exited(status, 3), "status {status:#x}");
    }
}
