//! Hypercall handlers: the tender's side of `solo5-hvt-abi.md` §5.
//!
//! The guest hands over a 32-bit guest-physical address of an argument struct. Each
//! handler copies the struct out of guest memory, validates every guest value, does
//! the host work and writes the results back. A bad guest pointer is a [`Fault`]
//! (exit 1, as upstream); a bad handle or range is `SOLO5_R_EINVAL` to the guest.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use hvt_abi::abi::*;
use rustix::event::epoll;
use rustix::time::{Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags, Timespec};

use crate::devices::{BlockDev, NetDev, NetRead};
use crate::mem::{BadAccess, GuestMem};

/// A host-side device, at its manifest index.
#[derive(Debug)]
pub enum Device {
    /// A block device.
    Block(BlockDev),
    /// A network device.
    Net(NetDev),
}

/// What the run loop does after a hypercall.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Resume the guest.
    Continue,
    /// The guest halted.
    Halt {
        /// Its exit status (the process exit code is this `& 0xff`).
        status: i32,
        /// Guest address of its cookie (a trap frame on abort), already bounds-checked.
        cookie: Option<u64>,
    },
}

/// A guest action that ends the guest with exit status 1.
#[derive(Debug, thiserror::Error)]
pub enum Fault {
    /// A guest pointer outside guest memory.
    #[error("{0}: {1}")]
    Access(&'static str, BadAccess),
    /// A hypercall number with no handler.
    #[error("Invalid guest hypercall: num={0}")]
    BadHypercall(u16),
    /// Host I/O failed on behalf of the guest.
    #[error("Fatal error {0}: {1}")]
    Io(&'static str, #[source] io::Error),
}

fn access(name: &'static str) -> impl Fn(BadAccess) -> Fault {
    move |e| Fault::Access(name, e)
}

const INTERNAL_TIMERFD: u64 = u64::MAX;

/// The tender's hypercall state: devices by handle and the poll wait set.
pub struct Hypercalls {
    devices: Vec<Option<Device>>,
    has_block: bool,
    has_net: bool,
    waitset: OwnedFd,
    timerfd: OwnedFd,
    events: Vec<epoll::Event>,
    /// Number of PUTS, POLL, … calls handled, by number (for benchmarks and tests).
    pub counts: [u64; HVT_HYPERCALL_MAX as usize],
}

impl Hypercalls {
    /// Builds the handler state. `devices[h]` is the device with manifest handle `h`.
    /// Network devices join the poll wait set.
    pub fn new(devices: Vec<Option<Device>>) -> io::Result<Hypercalls> {
        let waitset = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        let timerfd =
            rustix::time::timerfd_create(TimerfdClockId::Monotonic, TimerfdFlags::CLOEXEC)?;
        epoll::add(
            &waitset,
            &timerfd,
            epoll::EventData::new_u64(INTERNAL_TIMERFD),
            epoll::EventFlags::IN,
        )?;
        let mut has_block = false;
        let mut has_net = false;
        for (h, d) in devices.iter().enumerate() {
            match d {
                Some(Device::Block(_)) => has_block = true,
                Some(Device::Net(n)) => {
                    has_net = true;
                    epoll::add(
                        &waitset,
                        n.fd(),
                        epoll::EventData::new_u64(h as u64),
                        epoll::EventFlags::IN,
                    )?;
                }
                None => {}
            }
        }
        let nets = devices
            .iter()
            .filter(|d| matches!(d, Some(Device::Net(_))))
            .count();
        Ok(Hypercalls {
            devices,
            has_block,
            has_net,
            waitset,
            timerfd,
            events: Vec::with_capacity(nets + 1),
            counts: [0; HVT_HYPERCALL_MAX as usize],
        })
    }

    /// The host fds the hypercalls use, for the seccomp table.
    pub fn fds(&self) -> HypercallFds {
        use std::os::fd::AsRawFd;
        let mut f = HypercallFds {
            waitset: self.waitset.as_raw_fd(),
            timerfd: self.timerfd.as_raw_fd(),
            ..Default::default()
        };
        for d in self.devices.iter().flatten() {
            match d {
                Device::Block(b) => f.blocks.push(b.raw_fd()),
                Device::Net(n) => f.nets.push(n.fd().as_raw_fd()),
            }
        }
        f
    }

    /// Handles hypercall `nr` with its argument struct at `gpa`.
    pub fn handle(&mut self, mem: &mut GuestMem, nr: u16, gpa: u64) -> Result<Flow, Fault> {
        if let Some(c) = self.counts.get_mut(usize::from(nr)) {
            *c += 1;
        }
        match nr {
            HVT_HYPERCALL_WALLTIME => walltime(mem, gpa),
            HVT_HYPERCALL_PUTS => puts(mem, gpa),
            HVT_HYPERCALL_POLL => self.poll(mem, gpa),
            HVT_HYPERCALL_BLOCK_WRITE if self.has_block => self.block(mem, gpa, true),
            HVT_HYPERCALL_BLOCK_READ if self.has_block => self.block(mem, gpa, false),
            HVT_HYPERCALL_NET_WRITE if self.has_net => self.net_write(mem, gpa),
            HVT_HYPERCALL_NET_READ if self.has_net => self.net_read(mem, gpa),
            HVT_HYPERCALL_HALT => halt(mem, gpa),
            _ => Err(Fault::BadHypercall(nr)),
        }
    }

    fn poll(&mut self, mem: &mut GuestMem, gpa: u64) -> Result<Flow, Fault> {
        let mut p: HvtHcPoll = mem.read_obj(gpa).map_err(access("POLL"))?;
        let ns = p.timeout_nsecs;
        let it = Itimerspec {
            it_interval: Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            // The low bit keeps the timer armed for a zero timeout (a zero value disarms).
            it_value: Timespec {
                tv_sec: i64::try_from(ns / 1_000_000_000).unwrap_or(i64::MAX),
                tv_nsec: i64::try_from((ns % 1_000_000_000) | 1).unwrap_or(1),
            },
        };
        rustix::time::timerfd_settime(&self.timerfd, TimerfdTimerFlags::empty(), &it)
            .map_err(|e| Fault::Io("arming the poll timer", e.into()))?;
        self.events.clear();
        loop {
            match epoll::wait(
                &self.waitset,
                rustix::buffer::spare_capacity(&mut self.events),
                None,
            ) {
                Ok(_) => break,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(Fault::Io("waiting in poll", e.into())),
            }
        }
        let mut ready_set = 0u64;
        let mut ret = 0i32;
        for ev in &self.events {
            let h = ev.data.u64();
            if h != INTERNAL_TIMERFD && h < 64 {
                ready_set |= 1 << h;
                ret += 1;
            }
        }
        p.ready_set = ready_set;
        p.ret = ret;
        mem.write_obj(gpa, &p).map_err(access("POLL"))?;
        Ok(Flow::Continue)
    }

    fn block(&mut self, mem: &mut GuestMem, gpa: u64, write: bool) -> Result<Flow, Fault> {
        let name = if write { "BLOCK_WRITE" } else { "BLOCK_READ" };
        let mut a: HvtHcBlock = mem.read_obj(gpa).map_err(access(name))?;
        let dev = match usize::try_from(a.handle)
            .ok()
            .and_then(|h| self.devices.get(h))
        {
            Some(Some(Device::Block(b))) if b.in_range(a.offset, a.len) => b,
            _ => {
                a.ret = SOLO5_R_EINVAL;
                mem.write_obj(gpa, &a).map_err(access(name))?;
                return Ok(Flow::Continue);
            }
        };
        if write {
            let buf = mem.slice(a.data, a.len).map_err(access(name))?;
            dev.write_at(buf, a.offset)
                .map_err(|e| Fault::Io("when writing", e))?;
        } else {
            let buf = mem.slice_mut(a.data, a.len).map_err(access(name))?;
            dev.read_at(buf, a.offset)
                .map_err(|e| Fault::Io("when reading", e))?;
        }
        a.ret = SOLO5_R_OK;
        mem.write_obj(gpa, &a).map_err(access(name))?;
        Ok(Flow::Continue)
    }

    fn net_dev(&self, handle: u64) -> Option<&NetDev> {
        match usize::try_from(handle)
            .ok()
            .and_then(|h| self.devices.get(h))
        {
            Some(Some(Device::Net(n))) => Some(n),
            _ => None,
        }
    }

    fn net_write(&mut self, mem: &mut GuestMem, gpa: u64) -> Result<Flow, Fault> {
        let mut a: HvtHcNet = mem.read_obj(gpa).map_err(access("NET_WRITE"))?;
        a.ret = match self.net_dev(a.handle) {
            None => SOLO5_R_EINVAL,
            Some(n) => {
                let buf = mem.slice(a.data, a.len).map_err(access("NET_WRITE"))?;
                n.write_frame(buf)
                    .map_err(|e| Fault::Io("writing to the tap", e))?;
                SOLO5_R_OK
            }
        };
        mem.write_obj(gpa, &a).map_err(access("NET_WRITE"))?;
        Ok(Flow::Continue)
    }

    fn net_read(&mut self, mem: &mut GuestMem, gpa: u64) -> Result<Flow, Fault> {
        let mut a: HvtHcNet = mem.read_obj(gpa).map_err(access("NET_READ"))?;
        let Some(n) = self.net_dev(a.handle) else {
            a.ret = SOLO5_R_EINVAL;
            mem.write_obj(gpa, &a).map_err(access("NET_READ"))?;
            return Ok(Flow::Continue);
        };
        // Borrow juggling: the device lives in `self`, the buffer in `mem`.
        let buf = mem.slice_mut(a.data, a.len).map_err(access("NET_READ"))?;
        match n
            .read_frame(buf)
            .map_err(|e| Fault::Io("reading from the tap", e))?
        {
            NetRead::Frame(len) => {
                a.len = len as u64;
                a.ret = SOLO5_R_OK;
            }
            NetRead::Again => a.ret = SOLO5_R_AGAIN,
        }
        mem.write_obj(gpa, &a).map_err(access("NET_READ"))?;
        Ok(Flow::Continue)
    }
}

/// Host fds used while the guest runs, for the seccomp table.
#[derive(Debug, Default, Clone)]
pub struct HypercallFds {
    /// The epoll wait set.
    pub waitset: i32,
    /// The poll timer.
    pub timerfd: i32,
    /// Block device backing files.
    pub blocks: Vec<i32>,
    /// Taps.
    pub nets: Vec<i32>,
}

fn walltime(mem: &mut GuestMem, gpa: u64) -> Result<Flow, Fault> {
    // Check the pointer before doing the work, as upstream does.
    mem.checked(gpa, size_of::<HvtHcWalltime>() as u64)
        .map_err(access("WALLTIME"))?;
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Realtime);
    let secs = u64::try_from(now.tv_sec).unwrap_or(0);
    let nsecs = secs
        .wrapping_mul(1_000_000_000)
        .wrapping_add(u64::try_from(now.tv_nsec).unwrap_or(0));
    mem.write_obj(gpa, &HvtHcWalltime { nsecs })
        .map_err(access("WALLTIME"))?;
    Ok(Flow::Continue)
}

fn puts(mem: &mut GuestMem, gpa: u64) -> Result<Flow, Fault> {
    let a: HvtHcPuts = mem.read_obj(gpa).map_err(access("PUTS"))?;
    let buf = mem.slice(a.data, a.len).map_err(access("PUTS"))?;
    write_console(buf);
    Ok(Flow::Continue)
}

/// Writes guest console output straight to fd 1, unbuffered, so that nothing is lost
/// when the guest exits. Like upstream, failures (a closed pipe) do not stop the guest.
fn write_console(mut buf: &[u8]) {
    let out = io::stdout();
    while !buf.is_empty() {
        match rustix::io::write(out.as_fd(), buf) {
            Ok(0) => return,
            Ok(n) => buf = &buf[n..],
            Err(rustix::io::Errno::INTR) => {}
            Err(_) => return,
        }
    }
}

fn halt(mem: &mut GuestMem, gpa: u64) -> Result<Flow, Fault> {
    let a: HvtHcHalt = mem.read_obj(gpa).map_err(access("HALT"))?;
    let cookie = if a.cookie != 0 {
        mem.checked(a.cookie, HVT_HALT_COOKIE_MAX)
            .map_err(access("HALT"))?;
        Some(a.cookie)
    } else {
        None
    };
    Ok(Flow::Halt {
        status: a.exit_status,
        cookie,
    })
}
