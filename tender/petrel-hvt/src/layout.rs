//! The fixed low-memory layout an hvt guest starts with: GDT, identity-mapped page
//! tables, boot info, manifest copy and command line (`solo5-hvt-abi.md` §2–§4).
//!
//! Pure functions over the guest memory bytes, so the layout is tested without KVM.

use hvt_abi::abi::{
    HVT_GUEST_MIN_BASE, HvtBootInfo, X86_BOOT_INFO_BASE, X86_GDT_BASE, X86_GUEST_PAGE_SIZE_2M,
    X86_PDE_BASE, X86_PDPTE_BASE, X86_PML4_BASE, X86_PTE_BASE,
};
use zerocopy::IntoBytes;

const PT_P: u64 = 1 << 0;
const PT_RW: u64 = 1 << 1;
const PT_PS: u64 = 1 << 7;
const PAGE_4K: u64 = 0x1000;

/// GDT entries: null, 64-bit code (0x08), data (0x10).
pub const GDT: [u64; 3] = [0, 0x00af_9900_0000_ffff, 0x00cf_9300_0000_ffff];
/// Limit of the GDT (`GDTR.limit`).
pub const GDT_LIMIT: u16 = 23;
const _: () = assert!(GDT.len() * 8 - 1 == GDT_LIMIT as usize);

/// Guest address of the manifest copy: right after the boot info.
pub const MFT_GPA: u64 = X86_BOOT_INFO_BASE + size_of::<HvtBootInfo>() as u64;

/// Errors writing the layout: only a memory too small to hold it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("guest memory of {mem_size} bytes is too small for the boot layout")]
pub struct TooSmall {
    /// The memory size that was given.
    pub mem_size: u64,
}

fn put_u64(mem: &mut [u8], gpa: u64, v: u64) -> Result<(), TooSmall> {
    let too_small = TooSmall {
        mem_size: mem.len() as u64,
    };
    let at = usize::try_from(gpa).map_err(|_| too_small)?;
    let dst = mem.get_mut(at..at + 8).ok_or(too_small)?;
    dst.copy_from_slice(&v.to_le_bytes());
    Ok(())
}

/// Writes the GDT at `X86_GDT_BASE`.
pub fn write_gdt(mem: &mut [u8]) -> Result<(), TooSmall> {
    for (i, e) in GDT.iter().enumerate() {
        put_u64(mem, X86_GDT_BASE + 8 * i as u64, *e)?;
    }
    Ok(())
}

/// Writes identity-mapped page tables covering `mem_size` bytes: 4 KiB pages for the
/// first 2 MiB (nothing below the boot info, read only below `HVT_GUEST_MIN_BASE`),
/// 2 MiB pages above.
pub fn write_page_tables(mem: &mut [u8], mem_size: u64) -> Result<(), TooSmall> {
    put_u64(mem, X86_PML4_BASE, X86_PDPTE_BASE | PT_P | PT_RW)?;
    for i in 0..4 {
        put_u64(
            mem,
            X86_PDPTE_BASE + 8 * i,
            (X86_PDE_BASE + PAGE_4K * i) | PT_P | PT_RW,
        )?;
    }
    put_u64(mem, X86_PDE_BASE, X86_PTE_BASE | PT_P | PT_RW)?;
    let mut paddr = X86_GUEST_PAGE_SIZE_2M;
    while paddr < mem_size {
        // The four page directories are contiguous, so entry n sits at PDE_BASE + 8n.
        put_u64(
            mem,
            X86_PDE_BASE + 8 * (paddr / X86_GUEST_PAGE_SIZE_2M),
            paddr | PT_P | PT_RW | PT_PS,
        )?;
        paddr += X86_GUEST_PAGE_SIZE_2M;
    }
    let mut paddr = 0;
    while paddr < X86_GUEST_PAGE_SIZE_2M {
        let pte = if paddr < X86_BOOT_INFO_BASE {
            0
        } else if paddr < HVT_GUEST_MIN_BASE {
            paddr | PT_P
        } else {
            paddr | PT_P | PT_RW
        };
        put_u64(mem, X86_PTE_BASE + 8 * (paddr / PAGE_4K), pte)?;
        paddr += PAGE_4K;
    }
    Ok(())
}

/// Writes the boot info, the manifest copy after it and the command line after that.
/// `boot_info.mft` and `boot_info.cmdline` are filled in here.
pub fn write_boot_info(
    mem: &mut [u8],
    mut boot_info: HvtBootInfo,
    manifest: &[u8],
    cmdline: &[u8],
) -> Result<HvtBootInfo, TooSmall> {
    let too_small = TooSmall {
        mem_size: mem.len() as u64,
    };
    boot_info.mft = MFT_GPA;
    boot_info.cmdline = MFT_GPA + manifest.len() as u64;
    let mut put = |gpa: u64, bytes: &[u8]| -> Result<(), TooSmall> {
        let at = usize::try_from(gpa).map_err(|_| too_small)?;
        let dst = mem.get_mut(at..at + bytes.len()).ok_or(too_small)?;
        dst.copy_from_slice(bytes);
        Ok(())
    };
    put(X86_BOOT_INFO_BASE, boot_info.as_bytes())?;
    put(boot_info.mft, manifest)?;
    put(boot_info.cmdline, cmdline)?;
    Ok(boot_info)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u64_at(mem: &[u8], gpa: u64) -> u64 {
        let at = usize::try_from(gpa).unwrap();
        u64::from_le_bytes(mem[at..at + 8].try_into().unwrap())
    }

    #[test]
    fn page_tables_match_solo5() {
        let size = 8 << 20;
        let mut mem = vec![0u8; size];
        write_page_tables(&mut mem, size as u64).unwrap();
        assert_eq!(u64_at(&mem, 0x2000), 0x3003);
        assert_eq!(
            [0, 1, 2, 3].map(|i| u64_at(&mem, 0x3000 + 8 * i)),
            [0x4003, 0x5003, 0x6003, 0x7003]
        );
        assert_eq!(u64_at(&mem, 0x4000), 0x8003);
        assert_eq!(u64_at(&mem, 0x4008), (2 << 20) | 0x83);
        assert_eq!(u64_at(&mem, 0x4018), (6 << 20) | 0x83);
        assert_eq!(u64_at(&mem, 0x4020), 0, "nothing mapped beyond memory");
        assert_eq!(u64_at(&mem, 0x8000 + 8 * 0xf), 0);
        assert_eq!(u64_at(&mem, 0x8000 + 8 * 0x10), 0x10001);
        assert_eq!(u64_at(&mem, 0x8000 + 8 * 0xff), 0xff001);
        assert_eq!(u64_at(&mem, 0x8000 + 8 * 0x100), 0x100003);
        assert_eq!(u64_at(&mem, 0x8000 + 8 * 0x1ff), 0x1ff003);
    }

    #[test]
    fn gdt_and_boot_info_land_where_the_abi_says() {
        let mut mem = vec![0u8; 2 << 20];
        write_gdt(&mut mem).unwrap();
        assert_eq!(u64_at(&mem, 0x1008), 0x00af_9900_0000_ffff);
        assert_eq!(GDT_LIMIT, 23);
        let bi = HvtBootInfo {
            mem_size: 2 << 20,
            ..Default::default()
        };
        let mft = [0xaau8; 112];
        let bi = write_boot_info(&mut mem, bi, &mft, b"hello\0").unwrap();
        assert_eq!(bi.mft, 0x10038);
        assert_eq!(bi.cmdline, 0x10038 + 112);
        assert_eq!(u64_at(&mem, 0x10000), 2 << 20);
        assert_eq!(u64_at(&mem, 0x10020), 0x10038);
        assert_eq!(&mem[0x10038 + 112..0x10038 + 118], b"hello\0");
    }

    #[test]
    fn too_small_memory_is_an_error_not_a_panic() {
        let mut mem = vec![0u8; 0x1000];
        assert!(write_page_tables(&mut mem, 0x1000).is_err());
        assert!(write_gdt(&mut mem).is_err());
    }
}
