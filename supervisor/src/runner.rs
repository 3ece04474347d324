//! Tenders as processes: taps, spawning `petrel-hvt`, reaping, signals.
//!
//! [`Runner::spawn`] runs on the daemon's one long-lived core thread (a tender's
//! `PR_SET_PDEATHSIG` fires when the *thread* that forked it ends, so that thread must
//! live as long as the daemon). It
//! 1. creates one tap per network device (`/dev/net/tun`, a fresh name `ptapN`, retried
//!    while the name is taken), enslaves it to its bridge and sets it up, all in the
//!    calling thread's network namespace;
//! 2. spawns `petrel-hvt --mem=N --net:DEV=@FD --net-mac:DEV=MAC --block:DEV=PATH
//!    [--block-sector-size:DEV=N] -- IMAGE ARGS` with an empty environment, `/` as its
//!    directory, stdin from `/dev/null`, stdout (the guest console) and stderr (the
//!    tender's messages) to pipes read by [`Consoles`]. In the child, before `exec`: the
//!    parent-death signal is set to `SIGKILL`, the CPU affinity is applied, every
//!    descriptor from 3 up is marked close-on-exec (`close_range`), and the tap fds —
//!    close-on-exec in `petreld` — are made inheritable at the numbers they have (so no
//!    `dup2` can clobber a descriptor the spawn machinery itself uses);
//! 3. closes its own tap fds: the taps vanish with the tender.
//!
//! One reaper thread watches every tender through a pidfd, reaps it with `waitpid` on
//! its pid (never `waitpid(-1)`: other children of the process are not ours), and
//! reports each exit exactly once through `on_exit` — only after the console pipes hit
//! end-of-file (or a short grace period passed), so the reason (the tender's last
//! stderr line) is complete. Signals go through the pidfd, so a recycled pid is never
//! hit.

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustix::event::{EventfdFlags, epoll};
use rustix::io::Errno;
use rustix::process::{Pid, PidfdFlags, Signal, WaitOptions};
use rustix::thread::CpuSet;

use crate::console::Consoles;
use crate::mac::Mac;
use crate::state::ExitStatus;

/// How the runner starts tenders.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunnerConfig {
    /// The `petrel-hvt` binary.
    pub tender: PathBuf,
}

/// A network device of a launch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LaunchNet {
    /// The manifest name in the guest.
    pub device: String,
    /// The bridge its tap is enslaved to.
    pub bridge: String,
    /// The guest's MAC.
    pub mac: Mac,
}

/// A block device of a launch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LaunchBlock {
    /// The manifest name in the guest.
    pub device: String,
    /// The backing file.
    pub path: PathBuf,
    /// Its sector size in bytes; `None` for the tender's default (512).
    pub sector_size: Option<u32>,
}

/// Everything needed to start one tender.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Launch {
    /// Full name of the unikernel (`owner:name`); names its console.
    pub name: String,
    /// The unikernel image.
    pub image: PathBuf,
    /// The unikernel's arguments.
    pub args: Vec<String>,
    /// Guest memory in MiB.
    pub memory_mib: u32,
    /// Network devices.
    pub net: Vec<LaunchNet>,
    /// Block devices.
    pub block: Vec<LaunchBlock>,
    /// CPUs to pin the tender to; empty for no pinning.
    pub cpus: Vec<u32>,
}

/// A started tender.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spawned {
    /// Its process id.
    pub pid: u32,
    /// `(device, tap interface name)` per network device, in launch order.
    pub taps: Vec<(String, String)>,
}

/// A tender that ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exited {
    /// Its process id (as returned in [`Spawned::pid`]).
    pub pid: u32,
    /// The unikernel's full name (as in [`Launch::name`]).
    pub name: String,
    /// How it ended.
    pub status: ExitStatus,
    /// The tender's last stderr line, or empty.
    pub reason: String,
}

/// Called on the reaper thread, once per tender, after its exit.
pub type OnExit = Box<dyn Fn(Exited) + Send + Sync>;

/// Why the runner could not start, or a request to a running tender failed.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// A system call failed.
    #[error("{op}")]
    Os {
        /// What failed.
        op: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The pid is not a running tender of this runner.
    #[error("no running tender with pid {0}")]
    NoSuchProcess(u32),
    /// Not a signal number.
    #[error("invalid signal number {0}")]
    InvalidSignal(i32),
}

/// Why a tender could not be spawned. Nothing is left behind (taps vanish).
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// The launch itself is not acceptable.
    #[error("invalid launch: {0}")]
    Invalid(String),
    /// The netlink socket could not be opened.
    #[error("netlink")]
    Netlink(#[source] Box<petrel_netcfg::Error>),
    /// The tap for `device` could not be created.
    #[error("network device {device}: cannot create its tap")]
    Tap {
        /// The device.
        device: String,
        /// Why.
        #[source]
        source: Box<petrel_netcfg::Error>,
    },
    /// The tap could not be put on its bridge or set up.
    #[error("network device {device}: cannot attach tap {tap} to bridge {bridge}")]
    Bridge {
        /// The device.
        device: String,
        /// The tap.
        tap: String,
        /// The bridge.
        bridge: String,
        /// Why (a missing bridge says "not found").
        #[source]
        source: Box<petrel_netcfg::Error>,
    },
    /// The tender could not be executed.
    #[error("cannot execute {}", tender.display())]
    Exec {
        /// The tender binary.
        tender: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Setting up the watch over the new tender failed (it was killed).
    #[error("{op}")]
    Setup {
        /// What failed.
        op: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The prefix of tap names (`ptap0`, `ptap1`, ...).
pub const TAP_PREFIX: &str = "ptap";
/// Tap names tried before giving up (names taken by other taps).
const TAP_NAME_ATTEMPTS: u32 = 64;
/// How long an exit waits for the console pipes' end-of-file before it is reported
/// anyway (a pipe held open by someone else must not hide an exit).
const PIPE_GRACE: Duration = Duration::from_secs(2);
/// Token of the wake-up eventfd; pid tokens are positive.
const WAKE_TOKEN: u64 = 0;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

enum Msg {
    Child {
        pid: u32,
        name: String,
        pidfd: Arc<OwnedFd>,
    },
    PipesClosed {
        pid: u32,
        last_tender_line: Option<String>,
    },
}

struct Shared {
    epoll: OwnedFd,
    wake: OwnedFd,
    msgs: Mutex<Vec<Msg>>,
    /// Running tenders, for signals.
    pidfds: Mutex<HashMap<u32, Arc<OwnedFd>>>,
    stop: AtomicBool,
}

impl Shared {
    fn send(&self, msg: Msg) {
        lock(&self.msgs).push(msg);
        let _ = rustix::io::write(&self.wake, &1u64.to_ne_bytes());
    }
}

/// Starts, watches and signals tenders. See the module documentation.
pub struct Runner {
    config: RunnerConfig,
    consoles: Arc<Consoles>,
    shared: Arc<Shared>,
    reaper: Option<JoinHandle<()>>,
    next_tap: AtomicU32,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn os_err(op: &'static str) -> impl FnOnce(Errno) -> RunnerError {
    move |e| RunnerError::Os {
        op,
        source: e.into(),
    }
}

impl Runner {
    /// Starts the reaper thread. `on_exit` is called on it, once per tender.
    pub fn new(
        config: RunnerConfig,
        consoles: Arc<Consoles>,
        on_exit: OnExit,
    ) -> Result<Runner, RunnerError> {
        let epoll = epoll::create(epoll::CreateFlags::CLOEXEC).map_err(os_err("epoll_create"))?;
        let wake = rustix::event::eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)
            .map_err(os_err("eventfd"))?;
        epoll::add(
            &epoll,
            &wake,
            epoll::EventData::new_u64(WAKE_TOKEN),
            epoll::EventFlags::IN,
        )
        .map_err(os_err("epoll_ctl add eventfd"))?;
        let shared = Arc::new(Shared {
            epoll,
            wake,
            msgs: Mutex::new(Vec::new()),
            pidfds: Mutex::new(HashMap::new()),
            stop: AtomicBool::new(false),
        });
        let for_reaper = Arc::clone(&shared);
        let reaper = std::thread::Builder::new()
            .name("petreld-reaper".into())
            .spawn(move || Reaper::new(for_reaper, on_exit).run())
            .map_err(|source| RunnerError::Os {
                op: "spawn the reaper thread",
                source,
            })?;
        Ok(Runner {
            config,
            consoles,
            shared,
            reaper: Some(reaper),
            next_tap: AtomicU32::new(0),
        })
    }

    /// The consoles tenders write to.
    pub fn consoles(&self) -> &Arc<Consoles> {
        &self.consoles
    }

    /// Creates the taps and spawns the tender of `launch` (see the module
    /// documentation). Blocks only for the tap setup and the fork/exec. On an error
    /// nothing is left running and the console of `launch.name` says why.
    pub fn spawn(&self, launch: &Launch) -> Result<Spawned, SpawnError> {
        let r = self.try_spawn(launch);
        if let Err(e) = &r {
            self.consoles
                .note(&launch.name, &format!("spawn failed: {}", error_chain(e)));
        }
        r
    }

    fn try_spawn(&self, launch: &Launch) -> Result<Spawned, SpawnError> {
        let cpus = check_launch(launch)?;
        let taps = self.create_taps(launch)?;
        let mut cmd = self.command(launch, &taps);
        let tap_fds: Vec<RawFd> = taps.iter().map(|t| t.fd.as_raw_fd()).collect();
        install_pre_exec(&mut cmd, tap_fds, cpus);
        let mut child = cmd.spawn().map_err(|source| SpawnError::Exec {
            tender: self.config.tender.clone(),
            source,
        })?;
        // Our copies of the taps go; the tender holds the only ones now.
        let taps: Vec<(String, String)> = taps.into_iter().map(|t| (t.device, t.ifname)).collect();
        let pid = child.id();
        match self.watch(launch, &mut child) {
            Ok(()) => Ok(Spawned { pid, taps }),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(e)
            }
        }
    }

    /// Hands the new tender to the reaper and its pipes to the console reader.
    fn watch(&self, launch: &Launch, child: &mut Child) -> Result<(), SpawnError> {
        let setup = |op| {
            move |e: Errno| SpawnError::Setup {
                op,
                source: e.into(),
            }
        };
        let pid = child.id();
        let raw = Pid::from_child(child);
        let pidfd = rustix::process::pidfd_open(raw, PidfdFlags::empty())
            .map_err(setup("pidfd_open on the new tender"))?;
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            return Err(SpawnError::Setup {
                op: "the tender's pipes",
                source: std::io::Error::other("missing"),
            });
        };
        let shared = Arc::clone(&self.shared);
        self.consoles
            .attach(
                &launch.name,
                OwnedFd::from(stdout),
                OwnedFd::from(stderr),
                Box::new(move |last_tender_line| {
                    shared.send(Msg::PipesClosed {
                        pid,
                        last_tender_line,
                    });
                }),
            )
            .map_err(|e| SpawnError::Setup {
                op: "attach the console",
                source: std::io::Error::other(e.to_string()),
            })?;
        let pidfd = Arc::new(pidfd);
        lock(&self.shared.pidfds).insert(pid, Arc::clone(&pidfd));
        self.shared.send(Msg::Child {
            pid,
            name: launch.name.clone(),
            pidfd,
        });
        Ok(())
    }

    fn create_taps(&self, launch: &Launch) -> Result<Vec<Tap>, SpawnError> {
        if launch.net.is_empty() {
            return Ok(Vec::new());
        }
        let mut nl = petrel_netcfg::Netlink::new().map_err(|e| SpawnError::Netlink(Box::new(e)))?;
        let mut taps = Vec::with_capacity(launch.net.len());
        for net in &launch.net {
            let (ifname, fd) = self.create_tap(&net.device)?;
            let attach = nl
                .set_master(&ifname, &net.bridge)
                .and_then(|()| nl.set_up(&ifname));
            if let Err(source) = attach {
                return Err(SpawnError::Bridge {
                    device: net.device.clone(),
                    tap: ifname,
                    bridge: net.bridge.clone(),
                    source: Box::new(source),
                });
            }
            taps.push(Tap {
                device: net.device.clone(),
                ifname,
                fd,
            });
        }
        Ok(taps)
    }

    fn create_tap(&self, device: &str) -> Result<(String, OwnedFd), SpawnError> {
        let mut last = None;
        for _ in 0..TAP_NAME_ATTEMPTS {
            let n = self.next_tap.fetch_add(1, Ordering::Relaxed);
            let ifname = format!("{TAP_PREFIX}{n}");
            match petrel_netcfg::create_tap(&ifname) {
                Ok(fd) => return Ok((ifname, fd)),
                Err(e) if e.is_exists() => last = Some(e),
                Err(source) => {
                    return Err(SpawnError::Tap {
                        device: device.to_string(),
                        source: Box::new(source),
                    });
                }
            }
        }
        Err(SpawnError::Tap {
            device: device.to_string(),
            source: Box::new(
                last.unwrap_or_else(|| petrel_netcfg::Error::InvalidName(format!("{TAP_PREFIX}N"))),
            ),
        })
    }

    fn command(&self, launch: &Launch, taps: &[Tap]) -> Command {
        let mut cmd = Command::new(&self.config.tender);
        cmd.arg(format!("--mem={}", launch.memory_mib));
        for (net, tap) in launch.net.iter().zip(taps) {
            cmd.arg(format!("--net:{}=@{}", net.device, tap.fd.as_raw_fd()));
            cmd.arg(format!("--net-mac:{}={}", net.device, net.mac));
        }
        for b in &launch.block {
            let mut arg = OsString::from(format!("--block:{}=", b.device));
            arg.push(&b.path);
            cmd.arg(arg);
            if let Some(size) = b.sector_size {
                cmd.arg(format!("--block-sector-size:{}={size}", b.device));
            }
        }
        cmd.arg("--").arg(&launch.image).args(&launch.args);
        cmd.env_clear()
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// Sends `signal` (a signal number) to the tender `pid`. Fails with
    /// [`RunnerError::NoSuchProcess`] once the tender has been reaped.
    pub fn signal(&self, pid: u32, signal: i32) -> Result<(), RunnerError> {
        let sig = Signal::from_named_raw(signal).ok_or(RunnerError::InvalidSignal(signal))?;
        let pidfd = lock(&self.shared.pidfds)
            .get(&pid)
            .cloned()
            .ok_or(RunnerError::NoSuchProcess(pid))?;
        match rustix::process::pidfd_send_signal(&*pidfd, sig) {
            Ok(()) => Ok(()),
            Err(Errno::SRCH) => Err(RunnerError::NoSuchProcess(pid)),
            Err(e) => Err(os_err("pidfd_send_signal")(e)),
        }
    }

    /// Process ids of the tenders not yet reaped.
    pub fn running(&self) -> Vec<u32> {
        let mut v: Vec<u32> = lock(&self.shared.pidfds).keys().copied().collect();
        v.sort_unstable();
        v
    }
}

impl Drop for Runner {
    /// Kills every tender still running (nothing could supervise it any more) and
    /// stops the reaper; their exits are not reported.
    fn drop(&mut self) {
        for pidfd in lock(&self.shared.pidfds).values() {
            let _ = rustix::process::pidfd_send_signal(&**pidfd, Signal::KILL);
        }
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = rustix::io::write(&self.shared.wake, &1u64.to_ne_bytes());
        if let Some(t) = self.reaper.take() {
            let _ = t.join();
        }
    }
}

struct Tap {
    device: String,
    ifname: String,
    fd: OwnedFd,
}

/// Checks what the tender would refuse less clearly; returns the CPU set.
fn check_launch(launch: &Launch) -> Result<Option<CpuSet>, SpawnError> {
    let bad = |what: String| Err(SpawnError::Invalid(what));
    if launch.memory_mib == 0 {
        return bad("memory must be at least 1 MiB".into());
    }
    let devices = launch
        .net
        .iter()
        .map(|n| &n.device)
        .chain(launch.block.iter().map(|b| &b.device));
    for d in devices {
        if d.is_empty() || d.contains(['=', ':']) || d.chars().any(char::is_control) {
            return bad(format!("device name {d:?}"));
        }
    }
    if launch.cpus.is_empty() {
        return Ok(None);
    }
    let mut set = CpuSet::new();
    for &cpu in &launch.cpus {
        match usize::try_from(cpu) {
            Ok(c) if c < CpuSet::MAX_CPU => set.set(c),
            _ => return bad(format!("CPU {cpu} is out of range")),
        }
    }
    Ok(Some(set))
}

/// Sets what the child does between `fork` and `exec`.
#[allow(unsafe_code)]
fn install_pre_exec(cmd: &mut Command, tap_fds: Vec<RawFd>, cpus: Option<CpuSet>) {
    let pre_exec = move || -> std::io::Result<()> {
        // The tender dies with the thread that spawned it (petreld's core thread).
        rustix::process::set_parent_process_death_signal(Some(Signal::KILL))?;
        if let Some(set) = &cpus {
            rustix::thread::sched_setaffinity(None, set)?;
        }
        // Nothing petreld inherited without close-on-exec (a jobserver pipe, say)
        // reaches the tender: mark every descriptor from 3 up close-on-exec (not closed:
        // the spawn machinery's own error pipe must keep working until exec). Kernels
        // before 5.11 refuse the flag; the taps below are the only inheritable fds then
        // as far as petreld's own descriptors go.
        // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only changes descriptor flags;
        // it takes plain integers and touches no memory.
        let _ = unsafe {
            libc::syscall(
                libc::SYS_close_range,
                3_u32,
                u32::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            )
        };
        for &fd in &tap_fds {
            // SAFETY: `fd` is a tap fd the parent keeps open until `spawn` returns, and
            // the child's descriptor table is a copy of the parent's, so it is open here.
            let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
            rustix::io::fcntl_setfd(fd.as_fd(), rustix::io::FdFlags::empty())?;
        }
        Ok(())
    };
    // SAFETY: the closure runs in the child between fork and exec. It only makes raw
    // system calls (prctl, sched_setaffinity, close_range, fcntl), which are
    // async-signal-safe, and reads data captured before the fork; it neither allocates
    // nor takes locks.
    unsafe {
        cmd.pre_exec(pre_exec);
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

struct Watched {
    name: String,
    pidfd: Option<Arc<OwnedFd>>,
    status: Option<(ExitStatus, Instant)>,
    /// `Some` once the pipes hit EOF: the last stderr line (possibly none).
    pipes_closed: Option<Option<String>>,
}

struct Reaper {
    shared: Arc<Shared>,
    on_exit: OnExit,
    children: HashMap<u32, Watched>,
    /// Pipe ends seen before the child's registration arrived.
    early_closed: HashMap<u32, Option<String>>,
}

impl Reaper {
    fn new(shared: Arc<Shared>, on_exit: OnExit) -> Reaper {
        Reaper {
            shared,
            on_exit,
            children: HashMap::new(),
            early_closed: HashMap::new(),
        }
    }

    fn run(mut self) {
        let mut events: Vec<epoll::Event> = Vec::with_capacity(32);
        while !self.shared.stop.load(Ordering::SeqCst) {
            let timeout = self.timeout();
            let ts = timeout.map(|t| rustix::event::Timespec {
                tv_sec: i64::try_from(t.as_secs()).unwrap_or(i64::MAX),
                tv_nsec: i64::from(t.subsec_nanos()),
            });
            events.clear();
            match epoll::wait(
                &self.shared.epoll,
                rustix::buffer::spare_capacity(&mut events),
                ts.as_ref(),
            ) {
                Ok(_) | Err(Errno::INTR) => {}
                Err(e) => {
                    log::error!("reaper: epoll_wait: {e}; stopping");
                    return;
                }
            }
            for ev in events.iter() {
                let token = ev.data.u64();
                if token == WAKE_TOKEN {
                    let mut counter = [0u8; 8];
                    let _ = rustix::io::read(&self.shared.wake, &mut counter);
                } else if let Ok(pid) = u32::try_from(token) {
                    self.reap(pid);
                }
            }
            let msgs = std::mem::take(&mut *lock(&self.shared.msgs));
            for m in msgs {
                self.handle(m);
            }
            self.report_due();
        }
        // Stopping (the runner is dropped): collect what was killed, report nothing.
        for (pid, w) in self.children.drain() {
            if w.status.is_none() {
                if let Some(p) = Pid::from_raw(i32::try_from(pid).unwrap_or(0)) {
                    let _ = rustix::process::waitpid(Some(p), WaitOptions::empty());
                }
            }
        }
    }

    fn handle(&mut self, m: Msg) {
        match m {
            Msg::Child { pid, name, pidfd } => {
                if let Err(e) = epoll::add(
                    &self.shared.epoll,
                    &*pidfd,
                    epoll::EventData::new_u64(u64::from(pid)),
                    epoll::EventFlags::IN,
                ) {
                    log::error!("reaper: epoll_ctl add pidfd of {pid}: {e}");
                }
                let pipes_closed = self.early_closed.remove(&pid);
                self.children.insert(
                    pid,
                    Watched {
                        name,
                        pidfd: Some(pidfd),
                        status: None,
                        pipes_closed,
                    },
                );
                // It may have exited before the pidfd was watched.
                self.reap(pid);
            }
            Msg::PipesClosed {
                pid,
                last_tender_line,
            } => match self.children.get_mut(&pid) {
                Some(w) => w.pipes_closed = Some(last_tender_line),
                None => {
                    self.early_closed.insert(pid, last_tender_line);
                }
            },
        }
    }

    fn reap(&mut self, pid: u32) {
        let Some(w) = self.children.get_mut(&pid) else {
            return;
        };
        if w.status.is_some() {
            return;
        }
        let Some(p) = Pid::from_raw(i32::try_from(pid).unwrap_or(0)) else {
            return;
        };
        let status = match rustix::process::waitpid(Some(p), WaitOptions::NOHANG) {
            Ok(Some((_, st))) => match (st.exit_status(), st.terminating_signal()) {
                (Some(code), _) => ExitStatus::Code(code),
                (None, Some(sig)) => ExitStatus::Signal(sig),
                // Stopped or continued: not an exit.
                (None, None) => return,
            },
            Ok(None) => return,
            Err(e) => {
                // ECHILD: someone else reaped it (a waitpid(-1) elsewhere).
                log::error!("reaper: waitpid({pid}): {e}; its exit status is lost");
                ExitStatus::Code(-1)
            }
        };
        w.status = Some((status, Instant::now()));
        if let Some(fd) = w.pidfd.take() {
            let _ = epoll::delete(&self.shared.epoll, &*fd);
        }
        lock(&self.shared.pidfds).remove(&pid);
    }

    fn timeout(&self) -> Option<Duration> {
        self.children
            .values()
            .filter(|w| w.pipes_closed.is_none())
            .filter_map(|w| {
                w.status
                    .map(|(_, at)| (at + PIPE_GRACE).saturating_duration_since(Instant::now()))
            })
            .min()
    }

    fn report_due(&mut self) {
        let now = Instant::now();
        let due: Vec<u32> = self
            .children
            .iter()
            .filter(|(_, w)| match w.status {
                Some((_, at)) => w.pipes_closed.is_some() || now >= at + PIPE_GRACE,
                None => false,
            })
            .map(|(&pid, _)| pid)
            .collect();
        for pid in due {
            let Some(w) = self.children.remove(&pid) else {
                continue;
            };
            let Some((status, _)) = w.status else {
                continue;
            };
            let reason = w.pipes_closed.flatten().unwrap_or_default();
            (self.on_exit)(Exited {
                pid,
                name: w.name,
                status,
                reason,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn launch() -> Launch {
        Launch {
            name: "ops:t".into(),
            image: "/x.hvt".into(),
            args: vec!["a b".into()],
            memory_mib: 16,
            net: vec![],
            block: vec![LaunchBlock {
                device: "storage".into(),
                path: "/data/block/v".into(),
                sector_size: Some(4096),
            }],
            cpus: vec![],
        }
    }

    #[test]
    fn launch_checks() {
        assert!(check_launch(&launch()).is_ok());
        let mut l = launch();
        l.memory_mib = 0;
        assert!(matches!(check_launch(&l), Err(SpawnError::Invalid(_))));
        let mut l = launch();
        l.block[0].device = "a=b".into();
        assert!(check_launch(&l).is_err());
        let mut l = launch();
        l.cpus = vec![0, 1];
        let set = check_launch(&l).expect("ok").expect("a set");
        assert!(set.is_set(0) && set.is_set(1) && !set.is_set(2));
        l.cpus = vec![u32::MAX];
        assert!(check_launch(&l).is_err());
    }
}
