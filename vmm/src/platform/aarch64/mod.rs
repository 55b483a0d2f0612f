//! arm64: the in-kernel GICv3 with one redistributor per vCPU and an ITS
//! at the planned doorbell, PSCI 0.2 vCPUs (secondaries started by the
//! guest's CPU_ON), the architected timer, a 16550 UART and pvpanic on
//! MMIO, the Image boot protocol and the device tree written from the
//! planned map. MSIs reach the ITS as KVM MSI routes carrying the device's
//! requester ID.

mod gic;
mod regs;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arch::aarch64::boot::{self, BootLayout, ImageHeader, IMAGE_HEADER_SIZE};
use arch::aarch64::fdt::{self, FdtConfig, FdtIommu};
use arch::aarch64::layout::{PCI_IO_START, PLATFORM_SPIS, PVPANIC_START, UART_SPI, UART_START};
use arch::plan::{GuestMap, HostConstraints, PlanError, PlanInput};
use arch::GuestMemory;
use devices::legacy::PvPanic;
use devices::{Bus, GuestEvent, GuestEvents};
use kvm_bindings::{
    kvm_irq_routing_entry, kvm_irq_routing_entry__bindgen_ty_1, kvm_irq_routing_irqchip,
    KVM_IRQ_ROUTING_IRQCHIP, KVM_SYSTEM_EVENT_RESET, KVM_SYSTEM_EVENT_RESET_FLAG_PSCI_RESET2,
};
use kvm_ioctls::{Cap, Kvm, VcpuFd, VmFd};
use linux_loader::loader::{pe::PE, KernelLoader};
use vm_memory::{Bytes, GuestAddress};

use super::{GuestImages, HotplugPlatform, MsiRouting, PciPlatform, Platform};
use crate::config::VmConfig;
use crate::device_manager::{self, Console, DeviceError, Devices};
use crate::vcpu::{Vcpu, VcpuError};
use crate::vm::VmError;

/// The first GSI of MSI routes (the platform devices' SPIs come first).
const FIRST_MSI_GSI: u32 = 32;
/// Added to the kernel command line unless it names a `reboot=` mode: a
/// panic then reboots through PSCI SYSTEM_RESET2 (a warm reset), which
/// minivmm reports as a crash, while `reboot` uses SYSTEM_RESET. Debian's
/// arm64 kernel has no pvpanic driver.
pub const PANIC_REBOOT_ARG: &str = "reboot=panic_warm";

/// What can go wrong in arm64's part of the build.
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    /// The GIC or ITS could not be set up.
    #[error("cannot {what}: this host's KVM needs an in-kernel GICv3 with an ITS")]
    Gic {
        /// Which step.
        what: &'static str,
        /// The ioctl error.
        #[source]
        source: kvm_ioctls::Error,
    },
    /// A vCPU ioctl.
    #[error(transparent)]
    Vcpu(#[from] VcpuError),
    /// The kernel or initrd could not be read.
    #[error("cannot read {what} '{path}'")]
    Read {
        /// "kernel" or "initrd".
        what: &'static str,
        /// The path given.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Not an Image, or it does not fit.
    #[error("cannot boot '{path}'")]
    Boot {
        /// The kernel path.
        path: PathBuf,
        /// Why.
        #[source]
        source: boot::BootError,
    },
    /// linux-loader could not load the Image or the initrd.
    #[error("cannot load '{path}' into guest memory")]
    Load {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: linux_loader::loader::Error,
    },
    /// Guest memory could not be written.
    #[error("cannot write the {0} into guest memory")]
    GuestMemory(&'static str, #[source] vm_memory::GuestMemoryError),
    /// The device tree.
    #[error(transparent)]
    Fdt(#[from] fdt::FdtError),
}

/// The arm64 platform.
pub struct Aarch64;

/// Where the guest was loaded.
pub struct Boot {
    layout: BootLayout,
}

fn read_header(kernel: &mut File, path: &Path) -> Result<ImageHeader, PlatformError> {
    let read = |source| PlatformError::Read {
        what: "kernel",
        path: path.to_path_buf(),
        source,
    };
    let size = kernel.seek(SeekFrom::End(0)).map_err(read)?;
    kernel.rewind().map_err(read)?;
    let mut header = [0u8; IMAGE_HEADER_SIZE];
    kernel.read_exact(&mut header).map_err(read)?;
    ImageHeader::parse(&header, size).map_err(|source| PlatformError::Boot {
        path: path.to_path_buf(),
        source,
    })
}

fn irqchip_entry(gsi: u32) -> kvm_irq_routing_entry {
    kvm_irq_routing_entry {
        gsi,
        type_: KVM_IRQ_ROUTING_IRQCHIP,
        u: kvm_irq_routing_entry__bindgen_ty_1 {
            irqchip: kvm_irq_routing_irqchip {
                irqchip: 0,
                pin: gsi,
            },
        },
        ..Default::default()
    }
}

/// The kernel command line with [`PANIC_REBOOT_ARG`] unless it chooses.
fn bootargs(cmdline: &str) -> String {
    if cmdline.split_whitespace().any(|w| w.starts_with("reboot=")) {
        cmdline.to_string()
    } else {
        format!("{cmdline} {PANIC_REBOOT_ARG}")
    }
}

impl Platform for Aarch64 {
    type Boot = Boot;
    type Error = PlatformError;

    // KVM_CAP_MSI_DEVID is a property of a VM with an ITS, not of /dev/kvm:
    // creating the ITS is its check.
    const REQUIRED_CAPS: &'static [(Cap, &'static str)] = &[
        (Cap::UserMemory, "KVM_CAP_USER_MEMORY"),
        (Cap::OneReg, "KVM_CAP_ONE_REG"),
        (Cap::ArmPsci02, "KVM_CAP_ARM_PSCI_0_2"),
        (Cap::Irqfd, "KVM_CAP_IRQFD"),
        (Cap::IrqRouting, "KVM_CAP_IRQ_ROUTING"),
        (Cap::Ioeventfd, "KVM_CAP_IOEVENTFD"),
        (Cap::ImmediateExit, "KVM_CAP_IMMEDIATE_EXIT"),
    ];

    const PCI: PciPlatform = PciPlatform {
        config_ports: None,
        io_window_mmio: Some(PCI_IO_START),
    };

    const HOTPLUG: Result<HotplugPlatform, &'static str> = Err(
        "PCI hotplug is not supported on arm64 yet: its guests are described by a device tree, which has no hotplug notification (PCIe native hotplug on root ports is the way, see docs/hotplug.md); give disks and devices in vm.create",
    );

    fn create_vm(kvm: &Kvm, _config: &VmConfig) -> Result<VmFd, VmError> {
        // Type 0: KVM's default 40-bit IPA space, which the layout uses.
        kvm.create_vm()
            .map_err(|e| VmError::VmIoctl("create the VM", e))
    }

    fn plan(input: &PlanInput, host: &HostConstraints) -> Result<GuestMap, PlanError> {
        arch::aarch64::plan::plan(input, host)
    }

    fn load(
        memory: &GuestMemory,
        map: &GuestMap,
        config: &VmConfig,
        mut images: GuestImages,
    ) -> Result<Boot, VmError> {
        let header = read_header(&mut images.kernel, &config.kernel)?;
        let initrd_path = config.initrd.clone().unwrap_or_default();
        let initrd_size = match images.initrd.as_mut() {
            Some(f) => Some(
                f.seek(SeekFrom::End(0))
                    .map_err(|source| PlatformError::Read {
                        what: "initrd",
                        path: initrd_path.clone(),
                        source,
                    })?,
            ),
            None => None,
        };
        let layout =
            boot::place(&map.ram, &header, initrd_size).map_err(|source| PlatformError::Boot {
                path: config.kernel.clone(),
                source,
            })?;
        PE::load(
            memory,
            Some(GuestAddress(layout.kernel_base)),
            &mut images.kernel,
            None,
        )
        .map_err(|source| PlatformError::Load {
            path: config.kernel.clone(),
            source,
        })?;
        if let (Some(file), Some((start, size))) = (images.initrd.as_mut(), layout.initrd) {
            let read = |source| PlatformError::Read {
                what: "initrd",
                path: initrd_path.clone(),
                source,
            };
            file.rewind().map_err(read)?;
            memory
                .read_exact_volatile_from(GuestAddress(start), file, size as usize)
                .map_err(|e| PlatformError::GuestMemory("initrd", e))?;
        }
        Ok(Boot { layout })
    }

    fn create_vcpus(
        _kvm: &Kvm,
        vm: &VmFd,
        config: &VmConfig,
        map: &GuestMap,
    ) -> Result<Vec<Vcpu>, VmError> {
        let mut vcpus = Vec::with_capacity(config.cpus.into());
        for id in 0..config.cpus {
            let mut vcpu = Vcpu::new(vm, id)?;
            regs::init(vm, &mut vcpu)?;
            vcpus.push(vcpu);
        }
        gic::create_gic(vm, arch::aarch64::plan::its(map).0)?;
        Ok(vcpus)
    }

    fn msi_routing() -> MsiRouting {
        MsiRouting {
            legacy: (0..PLATFORM_SPIS).map(irqchip_entry).collect(),
            first_msi_gsi: FIRST_MSI_GSI,
            device_id: true,
        }
    }

    fn add_platform_devices(
        vm: &VmFd,
        _map: &GuestMap,
        _pio: &mut Bus,
        mmio: &mut Bus,
        events: &Arc<GuestEvents>,
    ) -> Result<Arc<Mutex<Console>>, DeviceError> {
        // The 16550's eight byte-wide registers.
        let console = device_manager::add_console_at(vm, mmio, UART_START, 8, UART_SPI)?;
        let pvpanic = Arc::new(Mutex::new(PvPanic::new(events.clone())));
        mmio.insert(PVPANIC_START, 2, pvpanic)?;
        Ok(console)
    }

    fn finish(
        memory: &GuestMemory,
        map: &GuestMap,
        config: &VmConfig,
        devices: &Devices,
        vcpus: &mut [Vcpu],
        boot: Boot,
    ) -> Result<(), VmError> {
        let mpidrs = vcpus
            .iter_mut()
            .map(regs::mpidr)
            .collect::<Result<Vec<_>, _>>()?;
        let cmdline = bootargs(&config.cmdline);
        let blob = fdt::create_fdt(&FdtConfig {
            map,
            mpidrs: &mpidrs,
            cmdline: &cmdline,
            initrd: boot.layout.initrd,
            iommu: devices.iommu.as_ref().map(|t| FdtIommu {
                bdf: t.iommu_bdf,
                endpoints: t.endpoints.clone(),
            }),
        })
        .map_err(PlatformError::from)?;
        memory
            .write_slice(&blob, GuestAddress(boot.layout.fdt))
            .map_err(|e| PlatformError::GuestMemory("device tree", e))?;
        if let Some(vcpu) = vcpus.first_mut() {
            regs::set_boot_regs(vcpu, boot.layout.entry, boot.layout.fdt)?;
        }
        Ok(())
    }

    fn program_counter(fd: &VcpuFd) -> String {
        match regs::pc(fd) {
            Some(pc) => format!("guest PC {pc:#x}"),
            None => "an unknown guest PC".to_string(),
        }
    }

    fn system_event(fd: &VcpuFd, id: u8, kind: u32, data: &[u64]) -> GuestEvent {
        let reset2 = data
            .first()
            .is_some_and(|f| f & u64::from(KVM_SYSTEM_EVENT_RESET_FLAG_PSCI_RESET2) != 0);
        if kind == KVM_SYSTEM_EVENT_RESET && reset2 {
            return GuestEvent::Crash(format!(
                "guest kernel panicked on vCPU {id} (it rebooted through PSCI SYSTEM_RESET2, \
                 reset type {:#x}, as {PANIC_REBOOT_ARG} asks)",
                regs::x1(fd).unwrap_or_default()
            ));
        }
        super::system_event(id, kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_reboot_mode_is_added_unless_chosen() {
        assert_eq!(
            bootargs("console=ttyS0 panic=-1"),
            "console=ttyS0 panic=-1 reboot=panic_warm"
        );
        assert_eq!(bootargs("reboot=cold quiet"), "reboot=cold quiet");
    }
}
