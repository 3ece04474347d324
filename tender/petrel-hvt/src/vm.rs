//! The KVM side: one VM, one memory slot, one vCPU in 64-bit long mode, and the run
//! loop's translation of KVM exits into [`VmExit`] values.
//!
//! Setup follows `solo5-hvt-abi.md` §3 exactly: special registers are built from zero
//! (no `KVM_GET_SREGS` first), CPUID is passed through unfiltered, no MSRs, no irqchip.

use kvm_bindings::{kvm_dtable, kvm_regs, kvm_segment, kvm_sregs, kvm_userspace_memory_region};
use kvm_ioctls::{Cap, Kvm, VcpuExit, VcpuFd, VmFd};

use crate::layout::GDT_LIMIT;
use crate::mem::GuestMem;
use hvt_abi::abi::{X86_BOOT_INFO_BASE, X86_GDT_BASE, X86_PML4_BASE};

/// The KVM API version solo5-hvt requires.
pub const KVM_API_VERSION: i32 = 12;
/// Entries asked of `KVM_GET_SUPPORTED_CPUID` (upstream's buffer size).
const CPUID_ENTRIES: usize = 100;

const X86_CR0_PE: u64 = 1 << 0;
const X86_CR0_NE: u64 = 1 << 5;
const X86_CR0_WP: u64 = 1 << 16;
const X86_CR0_PG: u64 = 1 << 31;
const X86_CR4_PAE: u64 = 1 << 5;
const X86_CR4_OSFXSR: u64 = 1 << 9;
const X86_CR4_OSXMMEXCPT: u64 = 1 << 10;
const X86_EFER_LME: u64 = 1 << 8;
const X86_EFER_LMA: u64 = 1 << 10;
/// RFLAGS bit 1 is reserved and always set.
const X86_RFLAGS_INIT: u64 = 0x2;

/// Why the VM could not be set up. Display texts follow upstream's where it has one.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// `/dev/kvm` could not be opened.
    #[error("Could not open: /dev/kvm: {0}")]
    Open(#[source] kvm_ioctls::Error),
    /// Wrong KVM API version.
    #[error("KVM: API version is {0}, solo5-hvt requires version {KVM_API_VERSION}")]
    ApiVersion(i32),
    /// A required capability is missing.
    #[error("KVM: host does not support {0}")]
    MissingCap(&'static str),
    /// The host TSC is unstable (`KVM_GET_TSC_KHZ` failed with EIO).
    #[error("Host TSC is not invariant, cannot continue")]
    UnstableTsc,
    /// Any other failed KVM ioctl.
    #[error("KVM: ioctl ({0}) failed: {1}")]
    Ioctl(&'static str, #[source] kvm_ioctls::Error),
}

/// A created VM with its single vCPU.
pub struct Vm {
    _vm: VmFd,
    vcpu: VcpuFd,
    tsc_khz: u32,
}

/// What a KVM exit asks of the tender, copied out of `kvm_run` so the vCPU can be
/// borrowed again while it is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmExit {
    /// An `out` instruction: port, access size in bytes, first 4 data bytes (LE).
    IoOut {
        /// I/O port.
        port: u16,
        /// Access size in bytes (1, 2 or 4).
        size: u8,
        /// Data, zero-extended.
        value: u32,
    },
    /// An `in` instruction.
    IoIn {
        /// I/O port.
        port: u16,
    },
    /// `KVM_EXIT_FAIL_ENTRY`.
    FailEntry {
        /// Hardware entry failure reason.
        reason: u64,
    },
    /// `KVM_EXIT_INTERNAL_ERROR`.
    InternalError {
        /// The suberror code.
        suberror: u32,
    },
    /// Any other exit (HLT, SHUTDOWN, MMIO …), by its `exit_reason` number.
    Other {
        /// `kvm_run.exit_reason`.
        reason: u32,
    },
    /// `KVM_RUN` failed with EFAULT: the guest touched memory the host mapped read only.
    TranslationFault,
    /// `KVM_RUN` was interrupted by a signal.
    Interrupted,
}

impl Vm {
    /// Opens KVM, checks the API, creates the VM with `mem` as slot 0 and one vCPU.
    pub fn create(mem: &GuestMem) -> Result<Vm, VmError> {
        let kvm = Kvm::new().map_err(VmError::Open)?;
        let api = kvm.get_api_version();
        if api != KVM_API_VERSION {
            return Err(VmError::ApiVersion(api));
        }
        for (cap, name) in [
            (Cap::UserMemory, "KVM_CAP_USER_MEMORY"),
            (Cap::GetTscKhz, "KVM_CAP_GET_TSC_KHZ"),
        ] {
            if !kvm.check_extension(cap) {
                return Err(VmError::MissingCap(name));
            }
        }
        let vm = kvm
            .create_vm()
            .map_err(|e| VmError::Ioctl("CREATE_VM", e))?;
        let region = kvm_userspace_memory_region {
            slot: 0,
            flags: 0,
            guest_phys_addr: 0,
            memory_size: mem.size(),
            userspace_addr: mem.host_base(),
        };
        // SAFETY: the region is our own anonymous mapping of `mem.size()` bytes, which
        // outlives the VM: `GuestMem` is created before and dropped after `Vm` by the
        // tender, and guest memory is never unmapped while the VM exists.
        unsafe { vm.set_user_memory_region(region) }
            .map_err(|e| VmError::Ioctl("SET_USER_MEMORY_REGION", e))?;
        let vcpu = vm
            .create_vcpu(0)
            .map_err(|e| VmError::Ioctl("CREATE_VCPU", e))?;
        let cpuid = kvm
            .get_supported_cpuid(CPUID_ENTRIES)
            .map_err(|e| VmError::Ioctl("GET_SUPPORTED_CPUID", e))?;
        vcpu.set_cpuid2(&cpuid)
            .map_err(|e| VmError::Ioctl("SET_CPUID2", e))?;
        let tsc_khz = match vcpu.get_tsc_khz() {
            Ok(khz) => khz,
            Err(e) if e.errno() == libc::EIO => return Err(VmError::UnstableTsc),
            Err(e) => return Err(VmError::Ioctl("GET_TSC_KHZ", e)),
        };
        Ok(Vm {
            _vm: vm,
            vcpu,
            tsc_khz,
        })
    }

    /// TSC frequency in Hz, as handed to the guest in `cpu_cycle_freq`.
    pub fn tsc_hz(&self) -> u64 {
        u64::from(self.tsc_khz) * 1000
    }

    /// Sets the initial registers: long mode, paging on, `RIP = entry`,
    /// `RSP = mem_size - 8`, `RDI = boot info`.
    pub fn init_vcpu(&self, entry: u64, mem_size: u64) -> Result<(), VmError> {
        self.vcpu
            .set_sregs(&initial_sregs())
            .map_err(|e| VmError::Ioctl("SET_SREGS", e))?;
        let regs = kvm_regs {
            rip: entry,
            rsp: mem_size - 8,
            rdi: X86_BOOT_INFO_BASE,
            rflags: X86_RFLAGS_INIT,
            ..Default::default()
        };
        self.vcpu
            .set_regs(&regs)
            .map_err(|e| VmError::Ioctl("SET_REGS", e))
    }

    /// The vCPU's general registers (for messages and core dumps).
    pub fn regs(&self) -> Result<kvm_regs, VmError> {
        self.vcpu
            .get_regs()
            .map_err(|e| VmError::Ioctl("GET_REGS", e))
    }

    /// The vCPU's special registers (for core dumps).
    pub fn sregs(&self) -> Result<kvm_sregs, VmError> {
        self.vcpu
            .get_sregs()
            .map_err(|e| VmError::Ioctl("GET_SREGS", e))
    }

    /// Raw fd of the vCPU, for the seccomp filter's `ioctl` rule.
    pub fn vcpu_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.vcpu.as_raw_fd()
    }

    /// Runs the vCPU until the next exit and describes it.
    pub fn run(&mut self) -> Result<VmExit, VmError> {
        let exit = match self.vcpu.run() {
            Ok(VcpuExit::IoOut(port, data)) => {
                let mut v = [0u8; 4];
                let n = data.len().min(4);
                v[..n].copy_from_slice(&data[..n]);
                VmExit::IoOut {
                    port,
                    size: 0,
                    value: u32::from_le_bytes(v),
                }
            }
            Ok(VcpuExit::IoIn(port, _)) => VmExit::IoIn { port },
            Ok(VcpuExit::FailEntry(reason, _)) => VmExit::FailEntry { reason },
            Ok(VcpuExit::InternalError) => VmExit::InternalError {
                suberror: self.internal_suberror(),
            },
            Ok(_) => VmExit::Other {
                reason: self.vcpu.get_kvm_run().exit_reason,
            },
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => VmExit::Interrupted,
            Err(e) if e.errno() == libc::EFAULT => VmExit::TranslationFault,
            Err(e) => return Err(VmError::Ioctl("RUN", e)),
        };
        Ok(match exit {
            VmExit::IoOut { port, value, .. } => VmExit::IoOut {
                port,
                size: self.io_size(),
                value,
            },
            other => other,
        })
    }

    fn io_size(&mut self) -> u8 {
        let run = self.vcpu.get_kvm_run();
        // SAFETY: called only right after a KVM_EXIT_IO exit, for which the kernel
        // filled the `io` member of the union.
        unsafe { run.__bindgen_anon_1.io.size }
    }

    fn internal_suberror(&mut self) -> u32 {
        let run = self.vcpu.get_kvm_run();
        // SAFETY: called only right after a KVM_EXIT_INTERNAL_ERROR exit, for which the
        // kernel filled the `internal` member of the union.
        unsafe { run.__bindgen_anon_1.internal.suberror }
    }
}

fn initial_sregs() -> kvm_sregs {
    let code = kvm_segment {
        base: 0,
        limit: 0xffff_ffff,
        selector: 0x08,
        type_: 9,
        present: 1,
        dpl: 0,
        db: 0,
        s: 1,
        l: 1,
        g: 1,
        ..Default::default()
    };
    let data = kvm_segment {
        selector: 0x10,
        type_: 3,
        db: 1,
        l: 0,
        ..code
    };
    let tr = kvm_segment {
        base: 0,
        limit: 0,
        selector: 0,
        type_: 11,
        present: 1,
        s: 0,
        db: 0,
        l: 0,
        g: 0,
        ..code
    };
    let ldt = kvm_segment {
        unusable: 1,
        ..Default::default()
    };
    kvm_sregs {
        cs: code,
        ds: data,
        es: data,
        fs: data,
        gs: data,
        ss: data,
        tr,
        ldt,
        gdt: kvm_dtable {
            base: X86_GDT_BASE,
            limit: GDT_LIMIT,
            ..Default::default()
        },
        idt: kvm_dtable::default(),
        cr0: X86_CR0_PE | X86_CR0_NE | X86_CR0_WP | X86_CR0_PG,
        cr3: X86_PML4_BASE,
        cr4: X86_CR4_PAE | X86_CR4_OSFXSR | X86_CR4_OSXMMEXCPT,
        efer: X86_EFER_LME | X86_EFER_LMA,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initial_special_registers_match_solo5() {
        let s = initial_sregs();
        assert_eq!(s.cr0, 0x8001_0021);
        assert_eq!(s.cr3, 0x2000);
        assert_eq!(s.cr4, 0x620);
        assert_eq!(s.efer, 0x500);
        assert_eq!(
            (s.cs.selector, s.cs.type_, s.cs.l, s.cs.db, s.cs.g),
            (0x08, 9, 1, 0, 1)
        );
        assert_eq!(
            (s.ss.selector, s.ss.type_, s.ss.l, s.ss.db),
            (0x10, 3, 0, 1)
        );
        assert_eq!((s.tr.type_, s.tr.present, s.tr.selector), (11, 1, 0));
        assert_eq!(s.ldt.unusable, 1);
        assert_eq!((s.gdt.base, s.gdt.limit), (0x1000, 23));
        assert_eq!((s.idt.base, s.idt.limit, s.apic_base), (0, 0, 0));
    }
}
