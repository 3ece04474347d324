//! The system calls rustix does not wrap, each in one small function with its SAFETY
//! argument: signalfd, block-device and ext4 ioctls, the watchdog, the loopback flag,
//! `kill(-1)`. Everything else uses rustix directly.

use std::ffi::c_int;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// `BLKPG` = `_IO(0x12, 105)`.
const BLKPG: libc::c_ulong = 0x1269;
/// `BLKPG_RESIZE_PARTITION`.
const BLKPG_RESIZE_PARTITION: c_int = 3;
/// `EXT4_IOC_RESIZE_FS` = `_IOW('f', 16, __u64)`.
const EXT4_IOC_RESIZE_FS: libc::c_ulong = 0x4008_6610;
/// `WDIOC_KEEPALIVE` = `_IOR('W', 5, int)`.
const WDIOC_KEEPALIVE: libc::c_ulong = 0x8004_5705;
/// `WDIOC_SETTIMEOUT` = `_IOWR('W', 6, int)`.
const WDIOC_SETTIMEOUT: libc::c_ulong = 0xC004_5706;

/// `IFF_UP` as the `short` of `ifr_flags`.
const IFF_UP: libc::c_short = 0x1;

/// `struct blkpg_partition` (linux/blkpg.h).
#[repr(C)]
struct BlkpgPartition {
    start: i64,
    length: i64,
    pno: c_int,
    devname: [u8; 64],
    volname: [u8; 64],
}

/// `struct blkpg_ioctl_arg` (linux/blkpg.h).
#[repr(C)]
struct BlkpgIoctlArg {
    op: c_int,
    flags: c_int,
    datalen: c_int,
    data: *mut BlkpgPartition,
}

/// An ioctl request number as this libc's `ioctl` takes it (`c_int` on musl, `c_ulong`
/// on glibc): the kernel reads the low 32 bits either way.
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::useless_conversion
)]
fn req(request: libc::c_ulong) -> libc::Ioctl {
    request as libc::Ioctl
}

fn check(rc: c_int) -> io::Result<c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Blocks `signals` for this thread (they are read from a signalfd instead) and returns
/// the signalfd, non-blocking and close-on-exec. Children must get an empty mask back:
/// see [`clear_signal_mask_on_exec`].
pub fn signalfd(signals: &[c_int]) -> io::Result<OwnedFd> {
    // SAFETY: an all-zero sigset_t is a valid (empty) set; sigemptyset initialises it.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, writable sigset_t owned by this frame.
    check(unsafe { libc::sigemptyset(&mut set) })?;
    for &s in signals {
        // SAFETY: as above; `s` is a signal number, an invalid one yields EINVAL.
        check(unsafe { libc::sigaddset(&mut set, s) })?;
    }
    // SAFETY: `set` is initialised; the old mask is not requested (null).
    check(unsafe { libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) })?;
    // SAFETY: -1 asks for a new fd; `set` is initialised; flags are valid.
    let fd = check(unsafe { libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK) })?;
    // SAFETY: signalfd returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Makes `cmd`'s child start with an empty signal mask. The mask PID 1 blocks for its
/// signalfd is inherited across `fork` and `exec`, and Rust's `Command` does not reset
/// it (measured: a child of a SIGTERM-blocking parent ignored SIGTERM).
pub fn clear_signal_mask_on_exec(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec and only calls
    // sigemptyset and sigprocmask, both async-signal-safe, on a set on its own stack; it
    // allocates nothing and takes no lock.
    unsafe {
        cmd.pre_exec(|| {
            // SAFETY: an all-zero sigset_t is a valid set; sigemptyset initialises it.
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            if libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut()) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// The signal numbers in a buffer read from a signalfd (`struct signalfd_siginfo` is 128
/// bytes, `ssi_signo` first).
pub fn signalfd_signals(buf: &[u8]) -> Vec<c_int> {
    buf.chunks_exact(128)
        .filter_map(|c| {
            c.get(..4)
                .and_then(|b| b.try_into().ok())
                .map(u32::from_ne_bytes)
        })
        .filter_map(|n| c_int::try_from(n).ok())
        .collect()
}

/// Tells the kernel that partition `partno` of `disk` now spans `start..start+length`
/// (bytes); works while the partition is mounted, unlike re-reading the whole table.
pub fn blkpg_resize_partition(
    disk: &File,
    partno: u32,
    start_bytes: u64,
    length_bytes: u64,
) -> io::Result<()> {
    let mut part = BlkpgPartition {
        start: i64::try_from(start_bytes)
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?,
        length: i64::try_from(length_bytes)
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?,
        pno: c_int::try_from(partno).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?,
        devname: [0; 64],
        volname: [0; 64],
    };
    let mut arg = BlkpgIoctlArg {
        op: BLKPG_RESIZE_PARTITION,
        flags: 0,
        datalen: c_int::try_from(std::mem::size_of::<BlkpgPartition>()).unwrap_or(0),
        data: &mut part,
    };
    // SAFETY: BLKPG reads a blkpg_ioctl_arg whose `data` points at a blkpg_partition of
    // `datalen` bytes; both live on this stack frame for the duration of the call.
    check(unsafe { libc::ioctl(disk.as_raw_fd(), req(BLKPG), &mut arg as *mut BlkpgIoctlArg) })
        .map(drop)
}

/// Grows the mounted ext4 file system that `dir` (any file or directory on it) belongs
/// to, to `blocks` file-system blocks.
pub fn ext4_resize_fs(dir: &File, blocks: u64) -> io::Result<()> {
    let n: u64 = blocks;
    // SAFETY: EXT4_IOC_RESIZE_FS reads one u64 through the pointer, which points at `n`
    // on this stack frame.
    check(unsafe { libc::ioctl(dir.as_raw_fd(), req(EXT4_IOC_RESIZE_FS), &n as *const u64) })
        .map(drop)
}

/// Sets the watchdog timeout; returns the timeout the driver chose.
pub fn watchdog_set_timeout(dev: &File, secs: u32) -> io::Result<u32> {
    let mut t: c_int = c_int::try_from(secs).unwrap_or(c_int::MAX);
    // SAFETY: WDIOC_SETTIMEOUT reads and writes one int through the pointer, which points
    // at `t` on this stack frame.
    check(unsafe { libc::ioctl(dev.as_raw_fd(), req(WDIOC_SETTIMEOUT), &mut t as *mut c_int) })?;
    Ok(u32::try_from(t).unwrap_or(secs))
}

/// Pings the watchdog.
pub fn watchdog_keepalive(dev: &File) -> io::Result<()> {
    let mut dummy: c_int = 0;
    // SAFETY: WDIOC_KEEPALIVE may write one int through the pointer (`dummy`, on this
    // stack frame).
    check(unsafe {
        libc::ioctl(
            dev.as_raw_fd(),
            req(WDIOC_KEEPALIVE),
            &mut dummy as *mut c_int,
        )
    })
    .map(drop)
}

/// Sets `IFF_UP` on the interface `name` (used for `lo`).
pub fn link_up(name: &str) -> io::Result<()> {
    let sock = rustix::net::socket(
        rustix::net::AddressFamily::INET,
        rustix::net::SocketType::DGRAM,
        None,
    )?;
    // SAFETY: ifreq is plain data; all-zero is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    if name.len() >= ifr.ifr_name.len() {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    for (d, s) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
        *d = libc::c_char::from_ne_bytes([s]);
    }
    // SAFETY: SIOCGIFFLAGS reads the NUL-terminated name and writes the flags into `ifr`,
    // which lives on this stack frame.
    check(unsafe {
        libc::ioctl(
            sock.as_raw_fd(),
            req(libc::SIOCGIFFLAGS),
            &mut ifr as *mut libc::ifreq,
        )
    })?;
    // SAFETY: the kernel just filled the flags member of the union.
    let flags = unsafe { ifr.ifr_ifru.ifru_flags };
    ifr.ifr_ifru.ifru_flags = flags | IFF_UP;
    // SAFETY: SIOCSIFFLAGS reads `ifr` (name and flags), on this stack frame.
    check(unsafe {
        libc::ioctl(
            sock.as_raw_fd(),
            req(libc::SIOCSIFFLAGS),
            &mut ifr as *mut libc::ifreq,
        )
    })
    .map(drop)
}

/// Sends `signal` to every process but PID 1 (`kill(-1, signal)`); ESRCH (none left)
/// is success.
pub fn kill_all(signal: c_int) -> io::Result<()> {
    // SAFETY: kill has no memory arguments; -1 addresses every process we may signal.
    match check(unsafe { libc::kill(-1, signal) }) {
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
        other => other.map(drop),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn struct_sizes_match_the_kernel() {
        assert_eq!(std::mem::size_of::<BlkpgPartition>(), 152);
        assert_eq!(std::mem::size_of::<BlkpgIoctlArg>(), 24);
    }

    #[test]
    fn signalfd_buffer() {
        let mut buf = vec![0u8; 256];
        buf[..4].copy_from_slice(&15u32.to_ne_bytes());
        buf[128..132].copy_from_slice(&17u32.to_ne_bytes());
        assert_eq!(signalfd_signals(&buf), [15, 17]);
        assert_eq!(signalfd_signals(&buf[..100]), Vec::<c_int>::new());
    }
}
