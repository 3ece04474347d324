//! Guest memory: one anonymous mapping, guest-physical address 0 upward, with every
//! access from the tender checked the way Solo5 checks it.
//!
//! The guest is untrusted. Every address and length that comes from it goes through
//! [`GuestMem::checked`], which applies `HVT_CHECKED_GPA_P` exactly: a range is refused
//! if it starts at or beyond the end of guest memory, if its end overflows, **or if its
//! end equals the end of memory** (upstream's `>=`; a buffer ending exactly at the last
//! byte is refused, and guests rely on nothing else).

use std::io;
use std::ops::Range;

use hvt_abi::elf::Prot;
use vm_memory::{MmapRegion, VolatileMemory};
use zerocopy::{FromBytes, Immutable, IntoBytes};

/// A guest access outside guest memory. Always fatal for the guest (exit status 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("Invalid guest access: gpa=0x{gpa:x}, sz={len}")]
pub struct BadAccess {
    /// The guest-physical address the guest gave.
    pub gpa: u64,
    /// The length it asked for.
    pub len: u64,
}

/// Guest memory backed by one anonymous host mapping.
pub struct GuestMem {
    region: MmapRegion<()>,
    /// Usable size (`guest_mem_size`); every check is against this.
    size: u64,
}

impl GuestMem {
    /// Maps `size` bytes of zeroed memory. `size` must be non-zero.
    pub fn new(size: u64) -> io::Result<Self> {
        let len =
            usize::try_from(size).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let region = MmapRegion::build(
            None,
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
        )
        .map_err(|e| io::Error::other(e.to_string()))?;
        Ok(GuestMem { region, size })
    }

    /// Guest memory size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Host address of guest-physical address 0, for `KVM_SET_USER_MEMORY_REGION`.
    pub fn host_base(&self) -> u64 {
        self.region.as_ptr() as u64
    }

    /// `HVT_CHECKED_GPA_P`: the host index range of `[gpa, gpa+len)`, or [`BadAccess`].
    pub fn checked(&self, gpa: u64, len: u64) -> Result<Range<usize>, BadAccess> {
        checked_range(self.size, gpa, len)
    }

    /// Copies a `T` out of guest memory at `gpa` (checked).
    pub fn read_obj<T: FromBytes + IntoBytes>(&self, gpa: u64) -> Result<T, BadAccess> {
        let r = self.checked(gpa, size_of::<T>() as u64)?;
        let mut v = T::new_zeroed();
        // `checked` proved the range lies inside the region, so get_slice cannot fail.
        let s = self
            .region
            .get_slice(r.start, r.len())
            .map_err(|_| BadAccess {
                gpa,
                len: size_of::<T>() as u64,
            })?;
        s.copy_to(v.as_mut_bytes());
        Ok(v)
    }

    /// Copies `v` into guest memory at `gpa` (checked).
    pub fn write_obj<T: IntoBytes + Immutable>(&self, gpa: u64, v: &T) -> Result<(), BadAccess> {
        let bytes = v.as_bytes();
        let r = self.checked(gpa, bytes.len() as u64)?;
        let s = self
            .region
            .get_slice(r.start, r.len())
            .map_err(|_| BadAccess {
                gpa,
                len: bytes.len() as u64,
            })?;
        s.copy_from(bytes);
        Ok(())
    }

    /// The guest bytes `[gpa, gpa+len)` (checked), for handing to a system call.
    ///
    /// Only valid while the vCPU is stopped: the tender has one vCPU and handles exits
    /// on the thread that runs it, so nothing else touches guest memory meanwhile.
    pub fn slice(&self, gpa: u64, len: u64) -> Result<&[u8], BadAccess> {
        let r = self.checked(gpa, len)?;
        // SAFETY: `r` lies within the mapping (checked above) that lives as long as
        // `self`. The vCPU is stopped while the tender handles an exit, so the guest
        // cannot change these bytes while the returned borrow lives.
        Ok(unsafe { std::slice::from_raw_parts(self.region.as_ptr().add(r.start), r.len()) })
    }

    /// The guest bytes `[gpa, gpa+len)` (checked), writable; see [`GuestMem::slice`].
    pub fn slice_mut(&mut self, gpa: u64, len: u64) -> Result<&mut [u8], BadAccess> {
        let r = self.checked(gpa, len)?;
        // SAFETY: as in `slice`; `&mut self` makes this the only live borrow of guest
        // memory on the host side.
        Ok(unsafe { std::slice::from_raw_parts_mut(self.region.as_ptr().add(r.start), r.len()) })
    }

    /// All of guest memory, for setup before the vCPU first runs and for core dumps.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: the mapping is `size` bytes long and lives as long as `self`; no vCPU
        // is running while the tender holds `&mut self`.
        unsafe { std::slice::from_raw_parts_mut(self.region.as_ptr(), self.region.size()) }
    }

    /// All of guest memory, read only (core dumps).
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: as in `bytes_mut`, shared.
        unsafe { std::slice::from_raw_parts(self.region.as_ptr(), self.region.size()) }
    }

    /// Which 4 KiB pages of guest memory are resident (`mincore`), so a core dump skips
    /// the rest. On failure every page counts as resident (slower, still correct).
    pub fn resident_pages(&self) -> Vec<bool> {
        let len = self.region.size();
        let pages = len.div_ceil(4096);
        let mut vec = vec![0u8; pages];
        // SAFETY: the mapping starts page-aligned and is `len` bytes long; `vec` has
        // one byte per page as mincore(2) requires.
        let rc = unsafe { libc::mincore(self.region.as_ptr().cast(), len, vec.as_mut_ptr()) };
        if rc != 0 {
            return vec![true; pages];
        }
        vec.iter().map(|b| b & 1 != 0).collect()
    }

    /// Changes the host-side protection of a page-aligned range, so that a guest write
    /// to its own text faults in the host instead of silently succeeding.
    pub fn protect(&self, range: Range<u64>, prot: Prot) -> io::Result<()> {
        let start = usize::try_from(range.start)
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let end =
            usize::try_from(range.end).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        if start > end || end > self.region.size() || start % 4096 != 0 {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        let flags = match prot {
            Prot::None => libc::PROT_NONE,
            Prot::Read => libc::PROT_READ,
            Prot::Write => libc::PROT_WRITE,
            Prot::ReadWrite => libc::PROT_READ | libc::PROT_WRITE,
        };
        // SAFETY: the range lies within our own mapping (checked above); changing its
        // protection cannot invalidate any Rust reference because the tender holds none
        // across this call, and later writes go through KVM or checked slices that
        // report EFAULT instead of faulting.
        let rc =
            unsafe { libc::mprotect(self.region.as_ptr().add(start).cast(), end - start, flags) };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

/// Solo5's `HVT_CHECKED_GPA_P` over a memory of `mem_size` bytes.
pub fn checked_range(mem_size: u64, gpa: u64, len: u64) -> Result<Range<usize>, BadAccess> {
    let bad = BadAccess { gpa, len };
    let end = gpa.checked_add(len).ok_or(bad)?;
    if gpa >= mem_size || end >= mem_size {
        return Err(bad);
    }
    // Both fit in usize because they are below mem_size, which was mapped.
    let start = usize::try_from(gpa).map_err(|_| bad)?;
    let end = usize::try_from(end).map_err(|_| bad)?;
    Ok(start..end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checked_range_follows_solo5_edge() {
        let m = 0x20_0000;
        assert_eq!(checked_range(m, 0, 16), Ok(0..16));
        assert_eq!(checked_range(m, m - 17, 16), Ok(0x1f_ffef..0x1f_ffff));
        // Ends exactly at the end of memory: refused, as upstream.
        assert!(checked_range(m, m - 16, 16).is_err());
        assert!(checked_range(m, m, 0).is_err());
        assert!(checked_range(m, m - 1, 0).is_ok());
        assert!(checked_range(m, u64::MAX, 2).is_err());
        assert!(checked_range(m, 16, u64::MAX).is_err());
    }

    #[test]
    fn objects_round_trip_and_bad_addresses_are_refused() {
        let mut mem = GuestMem::new(0x20_0000).expect("map");
        let h = hvt_abi::abi::HvtHcHalt {
            cookie: 7,
            exit_status: -1,
            _pad: 0,
        };
        mem.write_obj(0x1000, &h).expect("write");
        assert_eq!(mem.read_obj::<hvt_abi::abi::HvtHcHalt>(0x1000), Ok(h));
        assert_eq!(mem.slice(0x1000, 8).expect("slice"), &7u64.to_le_bytes());
        assert!(
            mem.read_obj::<hvt_abi::abi::HvtHcHalt>(0x20_0000 - 16)
                .is_err()
        );
        mem.slice_mut(0x2000, 4)
            .expect("slice")
            .copy_from_slice(b"abcd");
        assert_eq!(&mem.bytes()[0x2000..0x2004], b"abcd");
    }
}
