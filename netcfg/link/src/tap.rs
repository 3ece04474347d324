//! Taps through `/dev/net/tun` (rtnetlink refuses to create them).

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use rustix::fs::{Mode, OFlags};

use crate::{Error, check_name};

/// `IFF_TAP | IFF_NO_PI | IFF_TUN_EXCL` (0x0002 | 0x1000 | 0x8000) as `ifr_flags` (a C
/// `short`): an Ethernet tap, no packet-info header, and fail instead of attaching to an
/// interface of that name that already exists.
const TAP_FLAGS: u16 = 0x9002;
const _: () = assert!(libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_TUN_EXCL == 0x9002);

/// Creates the tap `name` in the calling thread's network namespace and returns the fd
/// that owns it (close-on-exec, blocking). The tap is not persistent: closing the fd
/// (every copy of it) deletes the interface. `EEXIST` when an interface of that name
/// exists already.
pub fn create_tap(name: &str) -> Result<OwnedFd, Error> {
    check_name(name)?;
    let op = format!("create tap {name:?}");
    if name.contains('%') {
        // "%d" asks the kernel to pick a name; the caller would not know it.
        return Err(Error::InvalidName(name.to_string()));
    }
    let fd = rustix::fs::open(
        c"/dev/net/tun",
        OFlags::RDWR | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::os(format!("{op}: open /dev/net/tun"), e.into()))?;
    // SAFETY: ifreq is plain old data (a name array and a union of integers and
    // pointers); all-zero bytes are a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    // check_name bounds the name to 15 bytes: it fits with its NUL terminator.
    for (dst, src) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = libc::c_char::from_ne_bytes([src]);
    }
    ifr.ifr_ifru.ifru_flags = i16::from_ne_bytes(TAP_FLAGS.to_ne_bytes());
    // SAFETY: `fd` is an open tun device and `ifr` a valid, NUL-terminated ifreq that
    // lives across the call; TUNSETIFF reads the name and flags and writes back the name,
    // within the struct.
    let rc = unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::TUNSETIFF,
            &mut ifr as *mut libc::ifreq,
        )
    };
    if rc == -1 {
        let e = io::Error::last_os_error();
        // With IFF_TUN_EXCL the kernel says EBUSY for an existing interface.
        let e = if e.raw_os_error() == Some(libc::EBUSY) {
            io::Error::from_raw_os_error(libc::EEXIST)
        } else {
            e
        };
        return Err(Error::os(op, e));
    }
    Ok(fd)
}
