//! The `AF_PACKET` socket the client talks through before (and while) it has an
//! address: it sends whole Ethernet frames (source 0.0.0.0 works, which a UDP socket
//! on an address-less interface cannot promise) and receives every IPv4/UDP frame to
//! port 68, whoever it is addressed to. The kernel filters with a classic BPF program
//! first, so a busy bridge does not wake us for each frame.
//!
//! The `unsafe` here is the libc calls rustix lacks (sockaddr_ll, SO_ATTACH_FILTER,
//! SIOCGIFHWADDR); each block says what it relies on.

use std::ffi::CString;
use std::io;
use std::mem::{size_of, size_of_val, zeroed};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use petrel_dhcp::dhcp::wire::DHCP_CLIENT_PORT;
use petrel_dhcp::frame::{ETH_HLEN, ETH_P_IP, IPPROTO_UDP};

/// Classic BPF opcodes (linux/bpf_common.h), combined as the kernel spells them.
const BPF_LD_H_ABS: u16 = 0x28;
const BPF_LD_B_ABS: u16 = 0x30;
const BPF_LD_H_IND: u16 = 0x48;
const BPF_LDX_B_MSH: u16 = 0xb1;
const BPF_JMP_JEQ_K: u16 = 0x15;
const BPF_JMP_JSET_K: u16 = 0x45;
const BPF_RET_K: u16 = 0x06;

/// `linux/if_packet.h`: ask for a `tpacket_auxdata` with each frame.
const PACKET_AUXDATA: libc::c_int = 8;
/// `tpacket_auxdata.tp_status`: the checksum is not filled in yet (offloaded).
const TP_STATUS_CSUMNOTREADY: u32 = 1 << 3;
/// `tpacket_auxdata.tp_status`: the device verified the checksum.
const TP_STATUS_CSUM_VALID: u32 = 1 << 7;

/// [`ETH_HLEN`] as a BPF constant (14 fits).
#[allow(clippy::cast_possible_truncation)]
const ETH_HLEN_K: u32 = ETH_HLEN as u32;

/// `size_of::<T>()` as a `socklen_t` (our socket structures are tiny).
fn socklen<T>(_: &T) -> libc::socklen_t {
    libc::socklen_t::try_from(size_of::<T>()).unwrap_or(libc::socklen_t::MAX)
}

const fn insn(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// Accepts unfragmented IPv4/UDP frames to port 68, drops everything else.
const DHCP_CLIENT_FILTER: [libc::sock_filter; 11] = [
    insn(BPF_LD_H_ABS, 0, 0, 12),                       // EtherType
    insn(BPF_JMP_JEQ_K, 0, 8, ETH_P_IP as u32),         // IPv4, else drop
    insn(BPF_LD_B_ABS, 0, 0, ETH_HLEN_K + 9),           // IP protocol
    insn(BPF_JMP_JEQ_K, 0, 6, IPPROTO_UDP as u32),      // UDP, else drop
    insn(BPF_LD_H_ABS, 0, 0, ETH_HLEN_K + 6),           // flags + fragment offset
    insn(BPF_JMP_JSET_K, 4, 0, 0x1fff),                 // a fragment: drop
    insn(BPF_LDX_B_MSH, 0, 0, ETH_HLEN_K),              // X = IP header length
    insn(BPF_LD_H_IND, 0, 0, ETH_HLEN_K + 2),           // UDP destination port
    insn(BPF_JMP_JEQ_K, 0, 1, DHCP_CLIENT_PORT as u32), // port 68, else drop
    insn(BPF_RET_K, 0, 0, u32::MAX),                    // accept whole frame
    insn(BPF_RET_K, 0, 0, 0),                           // drop
];

/// A raw Ethernet socket bound to one interface.
pub struct PacketSocket {
    fd: OwnedFd,
    ifindex: i32,
}

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn sockaddr_ll(ifindex: i32, dst_mac: Option<[u8; 6]>) -> libc::sockaddr_ll {
    // SAFETY: sockaddr_ll is plain old data; all zeros is a valid value.
    let mut sll: libc::sockaddr_ll = unsafe { zeroed() };
    sll.sll_family = u16::try_from(libc::AF_PACKET).unwrap_or_default();
    sll.sll_protocol = ETH_P_IP.to_be();
    sll.sll_ifindex = ifindex;
    if let Some(mac) = dst_mac {
        sll.sll_halen = 6;
        sll.sll_addr[..6].copy_from_slice(&mac);
    }
    sll
}

impl PacketSocket {
    /// Opens a non-blocking socket for IPv4 frames on `ifindex`, filtered to DHCP replies.
    pub fn open(ifindex: u32) -> io::Result<Self> {
        let ifindex = i32::try_from(ifindex)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "ifindex out of range"))?;
        // SAFETY: plain syscall with constant arguments; the result is checked.
        let raw = cvt(unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                i32::from(ETH_P_IP.to_be()),
            )
        })?;
        // SAFETY: `raw` is a fresh descriptor we own and nothing else refers to.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let prog = libc::sock_fprog {
            len: u16::try_from(DHCP_CLIENT_FILTER.len()).unwrap_or_default(),
            filter: DHCP_CLIENT_FILTER.as_ptr().cast_mut(),
        };
        // SAFETY: `prog` points to a valid, live filter array of `len` instructions; the
        // kernel copies it during the call and checks the program itself.
        cvt(unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_ATTACH_FILTER,
                (&raw const prog).cast(),
                socklen(&prog),
            )
        })?;
        let one: libc::c_int = 1;
        // SAFETY: `one` is a live c_int and the length passed is its size.
        cvt(unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_PACKET,
                PACKET_AUXDATA,
                (&raw const one).cast(),
                socklen(&one),
            )
        })?;
        let sll = sockaddr_ll(ifindex, None);
        // SAFETY: `sll` is a valid sockaddr_ll and the length passed is its size.
        cvt(unsafe { libc::bind(fd.as_raw_fd(), (&raw const sll).cast(), socklen(&sll)) })?;
        let s = Self { fd, ifindex };
        // Frames from other interfaces may have queued between socket() and bind().
        let mut buf = [0u8; 2048];
        while s.recv(&mut buf).is_ok() {}
        Ok(s)
    }

    /// Sends a whole Ethernet frame to `dst_mac`.
    pub fn send(&self, frame: &[u8], dst_mac: [u8; 6]) -> io::Result<()> {
        let sll = sockaddr_ll(self.ifindex, Some(dst_mac));
        // SAFETY: `frame` is a live slice of the given length; `sll` is a valid
        // sockaddr_ll of the given size.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&raw const sll).cast(),
                socklen(&sll),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Receives one frame (`WouldBlock` when none is queued). The flag says whether its
    /// UDP checksum can be verified (false when the kernel has not computed it yet).
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<(usize, bool)> {
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // Room for one tpacket_auxdata control message, 8-byte aligned.
        let mut control = [0u64; 8];
        // SAFETY: msghdr is plain old data; all zeros is a valid value.
        let mut msg: libc::msghdr = unsafe { zeroed() };
        msg.msg_iov = &raw mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = size_of_val(&control).try_into().unwrap_or_default();
        // SAFETY: `msg` points to `iov` (covering `buf`) and `control`, all live and
        // writable for the call; the kernel writes within the lengths given.
        let n = unsafe { libc::recvmsg(self.fd.as_raw_fd(), &raw mut msg, 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut verify = true;
        // SAFETY: `msg` was filled by a successful recvmsg; CMSG_FIRSTHDR/NXTHDR walk
        // its control buffer within msg_controllen, and CMSG_DATA of a PACKET_AUXDATA
        // message points to at least a u32 (tp_status comes first), read unaligned.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&raw const msg);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_PACKET && (*c).cmsg_type == PACKET_AUXDATA {
                    let status = libc::CMSG_DATA(c).cast::<u32>().read_unaligned();
                    if status & (TP_STATUS_CSUMNOTREADY | TP_STATUS_CSUM_VALID) != 0 {
                        verify = false;
                    }
                }
                c = libc::CMSG_NXTHDR(&raw const msg, c);
            }
        }
        Ok((usize::try_from(n).unwrap_or_default(), verify))
    }
}

impl AsFd for PacketSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// The interface's index and MAC address.
pub fn interface(name: &str) -> io::Result<(u32, [u8; 6])> {
    let sock = rustix::net::socket(
        rustix::net::AddressFamily::INET,
        rustix::net::SocketType::DGRAM,
        None,
    )?;
    let index = rustix::net::netdevice::name_to_index(&sock, name)?;
    let cname = CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in interface name"))?;
    // SAFETY: ifreq is plain old data; all zeros is a valid value.
    let mut ifr: libc::ifreq = unsafe { zeroed() };
    let bytes = cname.as_bytes_with_nul();
    if bytes.len() > ifr.ifr_name.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "interface name too long",
        ));
    }
    for (dst, &src) in ifr.ifr_name.iter_mut().zip(bytes) {
        *dst = libc::c_char::from_ne_bytes([src]);
    }
    // The request's C type differs between libcs (c_int on musl, c_ulong on glibc).
    let request = libc::SIOCGIFHWADDR
        .try_into()
        .map_err(|_| io::Error::from(io::ErrorKind::Unsupported))?;
    // SAFETY: SIOCGIFHWADDR reads the NUL-terminated name from `ifr` and writes the
    // hardware address into its union; `ifr` lives across the call.
    cvt(unsafe { libc::ioctl(sock.as_raw_fd(), request, &raw mut ifr) })?;
    // SAFETY: after a successful SIOCGIFHWADDR the union holds `ifru_hwaddr`.
    let hw = unsafe { ifr.ifr_ifru.ifru_hwaddr };
    let mut mac = [0u8; 6];
    for (dst, &src) in mac.iter_mut().zip(&hw.sa_data) {
        *dst = u8::from_ne_bytes(src.to_ne_bytes());
    }
    Ok((index, mac))
}
