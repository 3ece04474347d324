//! Host backends of the guest's devices: block devices (a file, `pread`/`pwrite`) and
//! network devices (a tap, non-blocking `read`/`write`).
//!
//! Attaching happens before the VM exists and may open files and sockets; the I/O
//! methods are what the hypercalls call under seccomp, so they use only `pread64`,
//! `pwrite64`, `read` and `write` on their own fd.

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

/// Default block size when none is given on the command line.
pub const DEFAULT_BLOCK_SIZE: u16 = 512;
/// MTU used for an `@FD` network device whose interface MTU cannot be read.
pub const DEFAULT_MTU: u16 = 1500;

/// A block device backed by a file.
#[derive(Debug)]
pub struct BlockDev {
    file: File,
    capacity: u64,
    block_size: u16,
}

/// Why a block device could not be attached. Texts follow upstream's.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    /// The backing file could not be opened or sized.
    #[error("Could not open block device: {path}: {source}")]
    Open {
        /// The path given.
        path: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The sector size is not a power of two ≥ 512 (or does not fit 16 bits).
    #[error("Block size must be a multiple of 2 greater than or equal 512")]
    BadBlockSize,
    /// The file is not a whole number of sectors.
    #[error("{name}: Backing storage size must be block aligned ({block_size} bytes)")]
    Unaligned {
        /// Device name.
        name: String,
        /// Sector size.
        block_size: u16,
    },
    /// The file is smaller than one sector.
    #[error("{name}: Backing storage must be at least 1 block ({block_size} bytes) in size")]
    TooSmall {
        /// Device name.
        name: String,
        /// Sector size.
        block_size: u16,
    },
}

/// Checks a sector size from the command line: a power of two, at least 512, and
/// representable in the manifest's 16-bit field.
pub fn check_block_size(n: u64) -> Result<u16, BlockError> {
    let n16 = u16::try_from(n).map_err(|_| BlockError::BadBlockSize)?;
    if n16 < 512 || !n16.is_power_of_two() {
        return Err(BlockError::BadBlockSize);
    }
    Ok(n16)
}

impl BlockDev {
    /// Opens `path` read-write (close-on-exec) and takes its size as the capacity.
    pub fn open(path: &Path) -> Result<File, BlockError> {
        let err = |source| BlockError::Open {
            path: path.display().to_string(),
            source,
        };
        OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)
            .map_err(err)
    }

    /// Wraps an opened file once the sector size is known, checking the capacity.
    pub fn new(name: &str, mut file: File, block_size: u16) -> Result<BlockDev, BlockError> {
        let capacity = file
            .seek(SeekFrom::End(0))
            .map_err(|source| BlockError::Open {
                path: name.to_string(),
                source,
            })?;
        let bs = u64::from(block_size);
        if capacity % bs != 0 {
            return Err(BlockError::Unaligned {
                name: name.to_string(),
                block_size,
            });
        }
        if capacity < bs {
            return Err(BlockError::TooSmall {
                name: name.to_string(),
                block_size,
            });
        }
        Ok(BlockDev {
            file,
            capacity,
            block_size,
        })
    }

    /// Capacity in bytes.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Sector size in bytes.
    pub fn block_size(&self) -> u16 {
        self.block_size
    }

    /// Upstream's range rule: `offset < capacity` and `offset + len <= capacity`.
    pub fn in_range(&self, offset: u64, len: u64) -> bool {
        len <= i64::MAX as u64
            && offset < self.capacity
            && offset
                .checked_add(len)
                .is_some_and(|end| end <= self.capacity)
    }

    /// Reads exactly `buf.len()` bytes at `offset`.
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let n = self.file.read_at(buf, offset)?;
        short(n, buf.len(), "read")
    }

    /// Writes exactly `buf.len()` bytes at `offset`.
    pub fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let n = self.file.write_at(buf, offset)?;
        short(n, buf.len(), "wrote")
    }

    /// The backing file's fd (for the seccomp table).
    pub fn raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

fn short(n: usize, want: usize, verb: &str) -> io::Result<()> {
    if n == want {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "{verb} only {n} out of {want} bytes"
        )))
    }
}

/// A network device backed by a tap.
#[derive(Debug)]
pub struct NetDev {
    fd: OwnedFd,
    /// MAC address handed to the guest.
    pub mac: [u8; 6],
    /// MTU handed to the guest.
    pub mtu: u16,
}

/// Result of a non-blocking frame read.
#[derive(Debug, PartialEq, Eq)]
pub enum NetRead {
    /// A frame of this many bytes was read.
    Frame(usize),
    /// Nothing to read now.
    Again,
}

impl NetDev {
    /// Wraps an attached tap.
    pub fn new(fd: OwnedFd, mac: [u8; 6], mtu: u16) -> NetDev {
        NetDev { fd, mac, mtu }
    }

    /// Reads one frame without blocking.
    pub fn read_frame(&self, buf: &mut [u8]) -> io::Result<NetRead> {
        match rustix::io::read(&self.fd, buf) {
            Ok(0) => Ok(NetRead::Again),
            Ok(n) => Ok(NetRead::Frame(n)),
            Err(rustix::io::Errno::AGAIN) => Ok(NetRead::Again),
            Err(e) => Err(e.into()),
        }
    }

    /// Writes one whole frame.
    pub fn write_frame(&self, buf: &[u8]) -> io::Result<()> {
        let n = rustix::io::write(&self.fd, buf)?;
        short(n, buf.len(), "wrote")
    }

    /// The tap fd.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Why a tap could not be attached; printed as `Could not attach interface: IF: ERR`.
#[derive(Debug, thiserror::Error)]
#[error("Could not attach interface: {iface}: {source}")]
pub struct TapError {
    /// The interface name or `@FD` as given.
    pub iface: String,
    /// The OS error.
    #[source]
    pub source: io::Error,
}

fn ifreq_for(name: &str) -> io::Result<libc::ifreq> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
    }
    // SAFETY: `ifreq` is a plain C struct (name array and a union of integers and
    // pointers) for which all-zero bytes are a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in ifr.ifr_name.iter_mut().zip(bytes) {
        *d = libc::c_char::from_ne_bytes([*s]);
    }
    Ok(ifr)
}

fn ifreq_name(ifr: &libc::ifreq) -> String {
    let bytes: Vec<u8> = ifr
        .ifr_name
        .iter()
        .take_while(|c| **c != 0)
        .map(|c| c.to_ne_bytes()[0])
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Runs an interface ioctl (`SIOCGIFFLAGS`, `SIOCGIFMTU`) on a throwaway socket.
fn if_ioctl(request: libc::c_ulong, ifr: &mut libc::ifreq) -> io::Result<()> {
    let sock = rustix::net::socket(
        rustix::net::AddressFamily::INET,
        rustix::net::SocketType::DGRAM,
        None,
    )?;
    #[allow(clippy::cast_possible_truncation, clippy::useless_conversion)]
    let request = request as libc::Ioctl;
    // SAFETY: `ifr` is a valid, initialised ifreq that lives across the call; both
    // requests read the name and write one integer member of the union.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), request, ifr as *mut libc::ifreq) };
    if rc == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn iface_mtu(name: &str) -> io::Result<u16> {
    let mut ifr = ifreq_for(name)?;
    if_ioctl(libc::SIOCGIFMTU, &mut ifr)?;
    // SAFETY: SIOCGIFMTU succeeded, so the kernel wrote the `ifru_mtu` member.
    let mtu = unsafe { ifr.ifr_ifru.ifru_mtu };
    u16::try_from(mtu).map_err(|_| io::Error::from_raw_os_error(libc::ERANGE))
}

/// Attaches to an existing tap interface by name, as upstream does: the interface
/// must exist and be up (so that opening the tun device never creates a new one).
pub fn attach_tap(name: &str) -> Result<(OwnedFd, u16), TapError> {
    let fail = |source| TapError {
        iface: name.to_string(),
        source,
    };
    let mut ifr = ifreq_for(name).map_err(fail)?;
    if let Err(e) = if_ioctl(libc::SIOCGIFFLAGS, &mut ifr) {
        let e = if e.raw_os_error() == Some(libc::ENODEV) {
            io::Error::from_raw_os_error(libc::ENOENT)
        } else {
            e
        };
        return Err(fail(e));
    }
    // SAFETY: SIOCGIFFLAGS succeeded, so the kernel wrote the `ifru_flags` member.
    let flags = i32::from(unsafe { ifr.ifr_ifru.ifru_flags });
    if flags & (libc::IFF_UP | libc::IFF_RUNNING) == 0 {
        return Err(fail(io::Error::from_raw_os_error(libc::ENETDOWN)));
    }
    let fd = rustix::fs::open(
        c"/dev/net/tun",
        rustix::fs::OFlags::RDWR | rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| fail(e.into()))?;
    let mut ifr = ifreq_for(name).map_err(fail)?;
    // IFF_TAP | IFF_NO_PI = 0x1002 fits a c_short.
    ifr.ifr_ifru.ifru_flags = 0x1002;
    const _: () = assert!(libc::IFF_TAP | libc::IFF_NO_PI == 0x1002);
    // SAFETY: `fd` is an open tun device and `ifr` a valid ifreq living across the
    // call; TUNSETIFF reads the name and flags and writes back the name.
    let rc = unsafe {
        libc::ioctl(
            fd.as_raw_fd(),
            libc::TUNSETIFF,
            &mut ifr as *mut libc::ifreq,
        )
    };
    if rc == -1 {
        return Err(fail(io::Error::last_os_error()));
    }
    if ifreq_name(&ifr) != name {
        return Err(fail(io::Error::from_raw_os_error(libc::EINVAL)));
    }
    let mtu = iface_mtu(name).map_err(fail)?;
    Ok((fd, mtu))
}

/// Takes over a tap fd opened by our parent (`--net:NAME=@FD`). Unlike solo5-hvt
/// 0.12.1 this works: the fd must be an attached tap (checked with `TUNGETIFF`), is
/// made non-blocking and close-on-exec, and the MTU is read from its interface.
pub fn attach_tap_fd(fd: RawFd) -> Result<(OwnedFd, u16), TapError> {
    let iface = format!("@{fd}");
    let fail = |source| TapError {
        iface: iface.clone(),
        source,
    };
    if fd < 0 {
        return Err(fail(io::Error::from_raw_os_error(libc::EBADF)));
    }
    // SAFETY: plain fcntl on an integer fd; an invalid fd yields EBADF, not UB.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
        return Err(fail(io::Error::last_os_error()));
    }
    // SAFETY: the fd is open (checked above) and was handed to this process on its
    // command line for the tender to own; nothing else in the tender uses it.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: all-zero bytes are a valid ifreq (see `ifreq_for`).
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    // SAFETY: TUNGETIFF writes the interface name and flags into `ifr`, which lives
    // across the call; a non-tun fd yields EBADFD/EINVAL/ENOTTY.
    if unsafe { libc::ioctl(fd, libc::TUNGETIFF, &mut ifr as *mut libc::ifreq) } == -1 {
        return Err(fail(io::Error::last_os_error()));
    }
    // SAFETY: TUNGETIFF succeeded and wrote the flags member.
    let flags = i32::from(unsafe { ifr.ifr_ifru.ifru_flags });
    if flags & libc::IFF_TAP == 0 || flags & libc::IFF_NO_PI == 0 {
        return Err(TapError {
            iface,
            source: io::Error::other("not a tap opened with IFF_TAP|IFF_NO_PI"),
        });
    }
    let fl = rustix::fs::fcntl_getfl(&owned).map_err(|e| fail(e.into()))?;
    rustix::fs::fcntl_setfl(&owned, fl | rustix::fs::OFlags::NONBLOCK)
        .map_err(|e| fail(e.into()))?;
    rustix::io::fcntl_setfd(&owned, rustix::io::FdFlags::CLOEXEC).map_err(|e| fail(e.into()))?;
    let mtu = iface_mtu(&ifreq_name(&ifr)).unwrap_or(DEFAULT_MTU);
    Ok((owned, mtu))
}

/// A random locally administered unicast MAC, as upstream generates by default.
pub fn random_mac() -> io::Result<[u8; 6]> {
    let mut mac = [0u8; 6];
    rustix::rand::getrandom(&mut mac, rustix::rand::GetRandomFlags::empty())?;
    mac[0] = (mac[0] & 0xfe) | 0x02;
    Ok(mac)
}

/// Formats a MAC as `xx:xx:xx:xx:xx:xx`.
pub fn format_mac(mac: &[u8; 6]) -> String {
    let m = mac;
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_size_rules() {
        assert_eq!(check_block_size(512).ok(), Some(512));
        assert_eq!(check_block_size(4096).ok(), Some(4096));
        assert_eq!(check_block_size(32768).ok(), Some(32768));
        for bad in [0, 1, 256, 511, 513, 1000, 65536, u64::MAX] {
            assert!(check_block_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn block_range_rules_follow_upstream() {
        let dir = std::env::temp_dir().join(format!("petrel-hvt-blk-{}", std::process::id()));
        std::fs::write(&dir, vec![0u8; 4096]).unwrap();
        let dev = BlockDev::new("t", BlockDev::open(&dir).unwrap(), 512).unwrap();
        assert!(dev.in_range(0, 4096));
        assert!(dev.in_range(3584, 512));
        assert!(!dev.in_range(4096, 0));
        assert!(!dev.in_range(3584, 1024));
        assert!(!dev.in_range(1, u64::MAX));
        let mut buf = [0u8; 512];
        dev.write_at(&[7u8; 512], 512).unwrap();
        dev.read_at(&mut buf, 512).unwrap();
        assert_eq!(buf, [7u8; 512]);
        // Alignment is checked first, as upstream does.
        assert!(matches!(
            BlockDev::new("t", BlockDev::open(&dir).unwrap(), 8192),
            Err(BlockError::Unaligned { .. })
        ));
        std::fs::write(&dir, vec![0u8; 1000]).unwrap();
        assert!(matches!(
            BlockDev::new("t", BlockDev::open(&dir).unwrap(), 512),
            Err(BlockError::Unaligned { .. })
        ));
        std::fs::write(&dir, b"").unwrap();
        assert!(matches!(
            BlockDev::new("t", BlockDev::open(&dir).unwrap(), 512),
            Err(BlockError::TooSmall { .. })
        ));
        std::fs::remove_file(&dir).unwrap();
    }

    #[test]
    fn missing_tap_says_no_such_file() {
        let e = attach_tap("petrelnotap0").unwrap_err();
        assert_eq!(
            e.to_string(),
            "Could not attach interface: petrelnotap0: No such file or directory (os error 2)"
        );
    }

    #[test]
    fn random_macs_are_local_unicast() {
        let m = random_mac().unwrap();
        assert_eq!(m[0] & 0x03, 0x02);
        assert_eq!(
            format_mac(&[0, 1, 2, 0xab, 0xcd, 0xef]),
            "00:01:02:ab:cd:ef"
        );
    }
}
