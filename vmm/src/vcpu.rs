//! vCPUs: creation (their initial state is the platform's, see
//! `crate::platform`), and the run loop that dispatches exits
//! to the buses until the guest raises a stop event.

use std::sync::Arc;

use devices::perf::{self, Counter};
use devices::{Bus, GuestEvent, GuestEvents};
use kvm_ioctls::{VcpuExit, VcpuFd, VmFd};

use crate::platform::{Native, Platform};

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

    /// Maps a KVM error of vCPU `id` doing `what` to a [`VcpuError`].
    pub fn kvm_err(id: u8, what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> VcpuError {
        move |source| VcpuError::Kvm { what, id, source }
    }

    /// Runs until this or another vCPU (or a device) raises a stop event.
    pub fn run(&mut self, ctx: &VcpuContext) {
        crate::startup::first_kvm_run();
        while ctx.events.get().is_none() {
            if let Some(event) = self.run_once(ctx) {
                ctx.events.raise(event);
            }
        }
    }

    /// Describes a `KVM_EXIT_INTERNAL_ERROR`: suberror and guest PC.
    fn internal_error(&mut self) -> String {
        // SAFETY: called right after KVM_RUN returned KVM_EXIT_INTERNAL_ERROR,
        // so `internal` is the union member KVM filled in.
        let suberror = unsafe { self.fd.get_kvm_run().__bindgen_anon_1.internal.suberror };
        let pc = Native::program_counter(&self.fd);
        let kind = match suberror {
            1 => "instruction emulation failed",
            2 => "exception while delivering an event",
            3 => "exit during event delivery",
            _ => "unknown",
        };
        format!(
            "KVM internal error on vCPU {} (suberror {suberror}: {kind}) at {pc}",
            self.id
        )
    }

    /// Where a vCPU was when the guest triple-faulted (for the report).
    /// One `KVM_RUN`; returns a stop event if this exit ends the VM.
    fn run_once(&mut self, ctx: &VcpuContext) -> Option<GuestEvent> {
        let id = self.id;
        match self.fd.run() {
            Ok(VcpuExit::IoIn(port, data)) => {
                perf::count(Counter::PioExits);
                if !ctx.pio.read(port.into(), data) {
                    data.fill(0xff);
                }
                None
            }
            Ok(VcpuExit::IoOut(port, data)) => {
                perf::count(Counter::PioExits);
                log::trace!("vCPU {id}: out {port:#x} {data:x?}");
                if !ctx.pio.write(port.into(), data) {
                    log::debug!("vCPU {id}: write to unclaimed port {port:#x}");
                }
                None
            }
            Ok(VcpuExit::MmioRead(addr, data)) => {
                perf::count(Counter::MmioExits);
                if !ctx.mmio.read(addr, data) {
                    log::debug!("vCPU {id}: read of unclaimed MMIO {addr:#x}");
                    data.fill(0xff);
                }
                None
            }
            Ok(VcpuExit::MmioWrite(addr, data)) => {
                perf::count(Counter::MmioExits);
                if !ctx.mmio.write(addr, data) {
                    log::debug!("vCPU {id}: write to unclaimed MMIO {addr:#x}");
                }
                None
            }
            Ok(VcpuExit::Shutdown) => {
                log::warn!("vCPU {id}: triple fault, {}", Native::fault_state(&self.fd));
                Some(GuestEvent::TripleFault)
            }
            Ok(VcpuExit::SystemEvent(kind, data)) => {
                let data = data.to_vec();
                Some(Native::system_event(&self.fd, id, kind, &data))
            }
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
