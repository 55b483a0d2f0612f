//! vCPUs: initial state from `arch`, and the run loop that dispatches exits
//! to the buses until the guest raises a stop event.

use std::sync::Arc;

use arch::x86_64::{cpuid, interrupts, msr, regs};
use devices::{Bus, GuestEvent, GuestEvents};
use kvm_bindings::{
    CpuId, KVM_SYSTEM_EVENT_CRASH, KVM_SYSTEM_EVENT_RESET, KVM_SYSTEM_EVENT_SHUTDOWN,
};
use kvm_ioctls::{VcpuExit, VcpuFd, VmFd};
use vm_memory::GuestAddress;

/// Errors setting a vCPU up.
#[derive(Debug, thiserror::Error)]
pub enum VcpuError {
    /// A KVM vCPU ioctl failed.
    #[error("cannot {what} of vCPU {id}")]
    Kvm {
        /// Which step.
        what: &'static str,
        /// vCPU index.
        id: u8,
        /// The ioctl error.
        #[source]
        source: kvm_ioctls::Error,
    },
    /// KVM took only some of the boot MSRs.
    #[error("KVM accepted {set} of {wanted} boot MSRs on vCPU {id}")]
    Msrs {
        /// vCPU index.
        id: u8,
        /// MSRs set.
        set: usize,
        /// MSRs given.
        wanted: usize,
    },
    /// The MSR list could not be built.
    #[error(transparent)]
    MsrList(#[from] msr::MsrError),
}

/// What a running vCPU needs: the buses and where to report stops.
pub struct VcpuContext {
    /// Port I/O bus.
    pub pio: Bus,
    /// MMIO bus.
    pub mmio: Bus,
    /// Stop events.
    pub events: Arc<GuestEvents>,
}

/// One vCPU.
pub struct Vcpu {
    fd: VcpuFd,
    id: u8,
}

impl Vcpu {
    /// Creates vCPU `id` of `vm`.
    pub fn new(vm: &VmFd, id: u8) -> Result<Self, VcpuError> {
        let fd = vm
            .create_vcpu(u64::from(id))
            .map_err(|source| VcpuError::Kvm {
                what: "create",
                id,
                source,
            })?;
        Ok(Self { fd, id })
    }

    /// This vCPU's index (and APIC ID).
    pub fn id(&self) -> u8 {
        self.id
    }

    /// The KVM vCPU, for tests that set their own state.
    pub fn fd(&mut self) -> &mut VcpuFd {
        &mut self.fd
    }

    fn kvm_err(&self, what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> VcpuError {
        let id = self.id;
        move |source| VcpuError::Kvm { what, id, source }
    }

    /// CPUID, MSRs and LAPIC, for every vCPU.
    pub fn configure_platform(
        &mut self,
        supported_cpuid: &CpuId,
        cpus: u8,
        tsc_deadline: bool,
    ) -> Result<(), VcpuError> {
        let mut cpuid = supported_cpuid.clone();
        cpuid::patch_cpuid(
            &mut cpuid,
            &cpuid::CpuTopology {
                vcpu_id: self.id,
                cpus,
                tsc_deadline,
            },
        );
        self.fd
            .set_cpuid2(&cpuid)
            .map_err(self.kvm_err("set the CPUID"))?;
        let msrs = msr::boot_msrs()?;
        let set = self
            .fd
            .set_msrs(&msrs)
            .map_err(self.kvm_err("set the MSRs"))?;
        if set != msrs.as_slice().len() {
            return Err(VcpuError::Msrs {
                id: self.id,
                set,
                wanted: msrs.as_slice().len(),
            });
        }
        let mut lapic = self
            .fd
            .get_lapic()
            .map_err(self.kvm_err("read the LAPIC"))?;
        interrupts::configure_lint(&mut lapic);
        self.fd
            .set_lapic(&lapic)
            .map_err(self.kvm_err("set the LAPIC"))?;
        self.fd
            .set_fpu(&regs::boot_fpu())
            .map_err(self.kvm_err("set the FPU"))
    }

    /// Registers for entering the kernel in 64-bit mode (boot vCPU only;
    /// the others wait for the guest's INIT/SIPI).
    pub fn configure_boot(&mut self, entry: GuestAddress) -> Result<(), VcpuError> {
        let sregs = self
            .fd
            .get_sregs()
            .map_err(self.kvm_err("read the sregs"))?;
        self.fd
            .set_sregs(&regs::long_mode_sregs(sregs))
            .map_err(self.kvm_err("set the sregs"))?;
        self.fd
            .set_regs(&regs::boot_regs(entry))
            .map_err(self.kvm_err("set the registers"))
    }

    /// Runs until this or another vCPU (or a device) raises a stop event.
    pub fn run(&mut self, ctx: &VcpuContext) {
        while ctx.events.get().is_none() {
            if let Some(event) = self.run_once(ctx) {
                ctx.events.raise(event);
            }
        }
    }

    /// Describes a `KVM_EXIT_INTERNAL_ERROR`: suberror and guest RIP.
    fn internal_error(&mut self) -> String {
        // SAFETY: called right after KVM_RUN returned KVM_EXIT_INTERNAL_ERROR,
        // so `internal` is the union member KVM filled in.
        let suberror = unsafe { self.fd.get_kvm_run().__bindgen_anon_1.internal.suberror };
        let rip = self.fd.get_regs().map(|r| r.rip).unwrap_or_default();
        let kind = match suberror {
            1 => "instruction emulation failed",
            2 => "exception while delivering an event",
            3 => "exit during event delivery",
            _ => "unknown",
        };
        format!(
            "KVM internal error on vCPU {} (suberror {suberror}: {kind}) at guest RIP {rip:#x}",
            self.id
        )
    }

    /// Where a vCPU was when the guest triple-faulted (for the report).
    fn fault_state(&mut self) -> String {
        let regs = self.fd.get_regs().unwrap_or_default();
        let sregs = self.fd.get_sregs().unwrap_or_default();
        format!(
            "vCPU {} triple fault at rip={:#x} rsp={:#x} cr0={:#x} cr2={:#x} cr3={:#x} cr4={:#x} efer={:#x}",
            self.id, regs.rip, regs.rsp, sregs.cr0, sregs.cr2, sregs.cr3, sregs.cr4, sregs.efer
        )
    }

    /// One `KVM_RUN`; returns a stop event if this exit ends the VM.
    fn run_once(&mut self, ctx: &VcpuContext) -> Option<GuestEvent> {
        let id = self.id;
        match self.fd.run() {
            Ok(VcpuExit::IoIn(port, data)) => {
                if !ctx.pio.read(port.into(), data) {
                    data.fill(0xff);
                }
                None
            }
            Ok(VcpuExit::IoOut(port, data)) => {
                log::trace!("vCPU {id}: out {port:#x} {data:x?}");
                if !ctx.pio.write(port.into(), data) {
                    log::debug!("vCPU {id}: write to unclaimed port {port:#x}");
                }
                None
            }
            Ok(VcpuExit::MmioRead(addr, data)) => {
                if !ctx.mmio.read(addr, data) {
                    log::debug!("vCPU {id}: read of unclaimed MMIO {addr:#x}");
                    data.fill(0xff);
                }
                None
            }
            Ok(VcpuExit::MmioWrite(addr, data)) => {
                if !ctx.mmio.write(addr, data) {
                    log::debug!("vCPU {id}: write to unclaimed MMIO {addr:#x}");
                }
                None
            }
            Ok(VcpuExit::Shutdown) => {
                log::warn!("{}", self.fault_state());
                Some(GuestEvent::TripleFault)
            }
            Ok(VcpuExit::SystemEvent(kind, _)) => Some(match kind {
                KVM_SYSTEM_EVENT_SHUTDOWN => GuestEvent::PowerOff,
                KVM_SYSTEM_EVENT_RESET => GuestEvent::Reset,
                KVM_SYSTEM_EVENT_CRASH => GuestEvent::Panic,
                other => GuestEvent::Crash(format!("vCPU {id}: unknown system event {other}")),
            }),
            Ok(VcpuExit::Hlt) => Some(GuestEvent::Crash(format!(
                "vCPU {id} halted with interrupts it can never receive"
            ))),
            Ok(VcpuExit::InternalError) => Some(GuestEvent::Crash(self.internal_error())),
            Ok(VcpuExit::FailEntry(reason, cpu)) => Some(GuestEvent::Crash(format!(
                "KVM could not enter vCPU {id} (hardware reason {reason:#x}, host CPU {cpu})"
            ))),
            Ok(other) => Some(GuestEvent::Crash(format!(
                "vCPU {id}: unexpected exit {other:?}"
            ))),
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                self.fd.set_kvm_immediate_exit(0);
                None
            }
            Err(e) => Some(GuestEvent::Crash(format!(
                "KVM_RUN failed on vCPU {id}: {e}"
            ))),
        }
    }
}
