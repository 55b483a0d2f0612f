//! x86_64: a PC-like platform with the in-kernel LAPIC, IOAPIC, PIC and
//! PIT, the 64-bit Linux boot protocol, ACPI tables, COM1 and the power
//! devices on port I/O, and per-vCPU CPUID, MSRs and LAPIC set-up.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use arch::plan::{GuestMap, HostConstraints, PlanError, PlanInput};
use arch::x86_64::boot::{self, BootSource};
use arch::x86_64::{cpuid, interrupts, layout, msr, regs, reset_vector};
use devices::{Bus, GuestEvent, GuestEvents};
use firmware_tables::acpi;
use kvm_bindings::{
    kvm_irq_routing_entry, kvm_irq_routing_entry__bindgen_ty_1, kvm_irq_routing_irqchip,
    kvm_pit_config, CpuId, KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE,
    KVM_IRQ_ROUTING_IRQCHIP, KVM_MAX_CPUID_ENTRIES, KVM_PIT_SPEAKER_DUMMY,
};
use kvm_ioctls::{Cap, Kvm, VcpuFd, VmFd};
use vm_memory::GuestAddress;

use super::{GuestImages, HotplugPlatform, MsiRouting, PciPlatform, Platform};
use crate::config::VmConfig;
use crate::device_manager::{self, Console, DeviceError, Devices};
use crate::vcpu::{Vcpu, VcpuError};
use crate::vm::VmError;
use arch::GuestMemory;

/// GSIs 0-23 are the IOAPIC pins; MSI routes come after.
const IOAPIC_PINS: u32 = 24;
/// GSIs 0-15 also reach the PICs.
const PIC_PINS: u32 = 16;

/// What can go wrong in x86's part of the build.
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    /// The boot protocol failed.
    #[error("cannot boot '{path}'")]
    Boot {
        /// The kernel path.
        path: PathBuf,
        /// Why.
        #[source]
        source: boot::BootError,
    },
    /// Boot page tables or GDT.
    #[error(transparent)]
    Regs(#[from] regs::RegsError),
    /// The reset vector stub.
    #[error(transparent)]
    ResetVector(#[from] reset_vector::ResetVectorError),
    /// ACPI tables.
    #[error(transparent)]
    Acpi(#[from] acpi::AcpiError),
    /// A vCPU ioctl.
    #[error(transparent)]
    Vcpu(#[from] VcpuError),
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

/// The x86_64 platform.
pub struct X86_64;

/// The guest's entry point from the boot protocol.
pub struct Boot {
    entry: GuestAddress,
}

fn irqchip_entry(gsi: u32, irqchip: u32, pin: u32) -> kvm_irq_routing_entry {
    kvm_irq_routing_entry {
        gsi,
        type_: KVM_IRQ_ROUTING_IRQCHIP,
        u: kvm_irq_routing_entry__bindgen_ty_1 {
            irqchip: kvm_irq_routing_irqchip { irqchip, pin },
        },
        ..Default::default()
    }
}

/// The routes KVM sets up by default, which a custom table must keep.
fn legacy_routes() -> Vec<kvm_irq_routing_entry> {
    let mut routes = Vec::new();
    for gsi in 0..IOAPIC_PINS {
        if gsi < PIC_PINS {
            let chip = if gsi < 8 {
                KVM_IRQCHIP_PIC_MASTER
            } else {
                KVM_IRQCHIP_PIC_SLAVE
            };
            routes.push(irqchip_entry(gsi, chip, gsi % 8));
        }
        routes.push(irqchip_entry(gsi, KVM_IRQCHIP_IOAPIC, gsi));
    }
    routes
}

fn platform_description(config: &VmConfig, devices: &Devices) -> acpi::Platform {
    acpi::Platform {
        cpus: config.cpus,
        lapic_addr: layout::LAPIC_START as u32,
        ioapic_addr: layout::IOAPIC_START as u32,
        pm: device_manager::acpi_power_management(),
        serial_ports: device_manager::acpi_serial_ports(),
        pvpanic_port: Some(layout::pio::PVPANIC),
        pci: Some(devices.pci),
        iommu: devices.iommu.clone(),
        hotplug: devices.hotplug_slots.clone(),
    }
}

impl Platform for X86_64 {
    type Boot = Boot;
    type Error = PlatformError;

    const REQUIRED_CAPS: &'static [(Cap, &'static str)] = &[
        (
            Cap::Irqchip,
            "KVM_CAP_IRQCHIP (in-kernel interrupt controllers)",
        ),
        (Cap::UserMemory, "KVM_CAP_USER_MEMORY"),
        (Cap::SetTssAddr, "KVM_CAP_SET_TSS_ADDR"),
        (Cap::Pit2, "KVM_CAP_PIT2 (in-kernel PIT)"),
        (Cap::Irqfd, "KVM_CAP_IRQFD"),
        (Cap::Ioeventfd, "KVM_CAP_IOEVENTFD"),
        (Cap::ExtCpuid, "KVM_CAP_EXT_CPUID"),
        (Cap::ImmediateExit, "KVM_CAP_IMMEDIATE_EXIT"),
    ];

    const PCI: PciPlatform = PciPlatform {
        config_ports: Some(layout::pio::PCI_CONFIG),
        io_window_mmio: None,
    };

    const HOTPLUG: Result<HotplugPlatform, &'static str> = Ok(HotplugPlatform {
        registers: (layout::PCI_HOTPLUG_START, layout::PCI_HOTPLUG_SIZE),
        gsi: layout::pio::PCI_HOTPLUG_GSI,
    });

    fn create_vm(kvm: &Kvm, _config: &VmConfig) -> Result<VmFd, VmError> {
        let vm = kvm
            .create_vm()
            .map_err(|e| VmError::VmIoctl("create the VM", e))?;
        vm.set_tss_address(layout::KVM_TSS_START as usize)
            .map_err(|e| VmError::VmIoctl("set the TSS address", e))?;
        vm.set_identity_map_address(layout::KVM_IDENTITY_MAP_START)
            .map_err(|e| VmError::VmIoctl("set the identity map address", e))?;
        vm.create_irq_chip()
            .map_err(|e| VmError::VmIoctl("create the in-kernel irqchip", e))?;
        let pit = kvm_pit_config {
            flags: KVM_PIT_SPEAKER_DUMMY,
            ..Default::default()
        };
        vm.create_pit2(pit)
            .map_err(|e| VmError::VmIoctl("create the in-kernel PIT", e))?;
        Ok(vm)
    }

    fn plan(input: &PlanInput, host: &HostConstraints) -> Result<GuestMap, PlanError> {
        arch::x86_64::plan::plan(input, host)
    }

    fn load(
        memory: &GuestMemory,
        map: &GuestMap,
        config: &VmConfig,
        mut images: GuestImages,
    ) -> Result<Boot, VmError> {
        let entry = boot::load_linux(
            memory,
            BootSource {
                kernel: &mut images.kernel,
                initrd: images.initrd.as_mut(),
                cmdline: &config.cmdline,
                ram: &map.ram,
            },
        )
        .map_err(|source| PlatformError::Boot {
            path: config.kernel.clone(),
            source,
        })?;
        let pm = device_manager::acpi_power_management();
        reset_vector::write_reset_vector(memory, pm.reset_port, pm.reset_value)
            .map_err(PlatformError::from)?;
        regs::write_gdt_and_idt(memory).map_err(PlatformError::from)?;
        regs::write_identity_page_tables(memory).map_err(PlatformError::from)?;
        Ok(Boot { entry: entry.entry })
    }

    fn create_vcpus(
        kvm: &Kvm,
        vm: &VmFd,
        config: &VmConfig,
        _map: &GuestMap,
    ) -> Result<Vec<Vcpu>, VmError> {
        let cpuid = kvm
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .map_err(|e| VmError::VmIoctl("read the supported CPUID", e))?;
        let tsc_deadline = kvm.check_extension(Cap::TscDeadlineTimer);
        let mut vcpus = Vec::with_capacity(config.cpus.into());
        for id in 0..config.cpus {
            let mut vcpu = Vcpu::new(vm, id)?;
            vcpu.configure_platform(&cpuid, config.cpus, tsc_deadline)?;
            vcpus.push(vcpu);
        }
        Ok(vcpus)
    }

    fn msi_routing() -> MsiRouting {
        MsiRouting {
            legacy: legacy_routes(),
            first_msi_gsi: IOAPIC_PINS,
            device_id: false,
        }
    }

    fn add_platform_devices(
        vm: &VmFd,
        _map: &GuestMap,
        pio: &mut Bus,
        _mmio: &mut Bus,
        events: &Arc<GuestEvents>,
    ) -> Result<Arc<Mutex<Console>>, DeviceError> {
        let console = device_manager::add_console(vm, pio)?;
        device_manager::add_power_devices(pio, events)?;
        Ok(console)
    }

    fn finish(
        memory: &GuestMemory,
        _map: &GuestMap,
        config: &VmConfig,
        devices: &Devices,
        vcpus: &mut [Vcpu],
        boot: Boot,
    ) -> Result<(), VmError> {
        acpi::write_tables(
            memory,
            GuestAddress(layout::ACPI_START),
            layout::ACPI_SIZE,
            &platform_description(config, devices),
        )
        .map_err(PlatformError::from)?;
        if let Some(vcpu) = vcpus.first_mut() {
            vcpu.configure_boot(boot.entry)?;
        }
        Ok(())
    }

    fn program_counter(fd: &VcpuFd) -> String {
        let rip = fd.get_regs().map(|r| r.rip).unwrap_or_default();
        format!("guest RIP {rip:#x}")
    }

    fn fault_state(fd: &VcpuFd) -> String {
        let regs = fd.get_regs().unwrap_or_default();
        let sregs = fd.get_sregs().unwrap_or_default();
        format!(
            "rip={:#x} rsp={:#x} cr0={:#x} cr2={:#x} cr3={:#x} cr4={:#x} efer={:#x}",
            regs.rip, regs.rsp, sregs.cr0, sregs.cr2, sregs.cr3, sregs.cr4, sregs.efer
        )
    }

    fn system_event(_fd: &VcpuFd, id: u8, kind: u32, _data: &[u64]) -> GuestEvent {
        super::system_event(id, kind)
    }
}

impl Vcpu {
    /// CPUID, MSRs and LAPIC, for every vCPU.
    pub fn configure_platform(
        &mut self,
        supported_cpuid: &CpuId,
        cpus: u8,
        tsc_deadline: bool,
    ) -> Result<(), PlatformError> {
        let id = self.id();
        let mut cpuid = supported_cpuid.clone();
        cpuid::patch_cpuid(
            &mut cpuid,
            &cpuid::CpuTopology {
                vcpu_id: id,
                cpus,
                tsc_deadline,
            },
        );
        self.fd()
            .set_cpuid2(&cpuid)
            .map_err(Vcpu::kvm_err(id, "set the CPUID"))?;
        let msrs = msr::boot_msrs()?;
        let set = self
            .fd()
            .set_msrs(&msrs)
            .map_err(Vcpu::kvm_err(id, "set the MSRs"))?;
        if set != msrs.as_slice().len() {
            return Err(PlatformError::Msrs {
                id,
                set,
                wanted: msrs.as_slice().len(),
            });
        }
        let mut lapic = self
            .fd()
            .get_lapic()
            .map_err(Vcpu::kvm_err(id, "read the LAPIC"))?;
        interrupts::configure_lint(&mut lapic);
        self.fd()
            .set_lapic(&lapic)
            .map_err(Vcpu::kvm_err(id, "set the LAPIC"))?;
        self.fd()
            .set_fpu(&regs::boot_fpu())
            .map_err(Vcpu::kvm_err(id, "set the FPU"))?;
        Ok(())
    }

    /// Registers for entering the kernel in 64-bit mode (boot vCPU only;
    /// the others wait for the guest's INIT/SIPI).
    pub fn configure_boot(&mut self, entry: GuestAddress) -> Result<(), PlatformError> {
        let id = self.id();
        let sregs = self
            .fd()
            .get_sregs()
            .map_err(Vcpu::kvm_err(id, "read the sregs"))?;
        self.fd()
            .set_sregs(&regs::long_mode_sregs(sregs))
            .map_err(Vcpu::kvm_err(id, "set the sregs"))?;
        self.fd()
            .set_regs(&regs::boot_regs(entry))
            .map_err(Vcpu::kvm_err(id, "set the registers"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_routes_cover_pic_and_ioapic() {
        let routes = legacy_routes();
        assert_eq!(routes.len(), 16 * 2 + 8);
        // SAFETY: these entries were built as irqchip routes just above.
        let com1: Vec<_> = routes
            .iter()
            .filter(|r| r.gsi == 4)
            .map(|r| unsafe { (r.u.irqchip.irqchip, r.u.irqchip.pin) })
            .collect();
        assert_eq!(
            com1,
            vec![(KVM_IRQCHIP_PIC_MASTER, 4), (KVM_IRQCHIP_IOAPIC, 4)]
        );
    }
}
