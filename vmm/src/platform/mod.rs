//! The seam between the VMM core and the guest's instruction set.
//!
//! [`Platform`] is what `vm.rs` and `device_manager` need from an
//! architecture: the KVM capabilities it relies on, creating the VM with
//! its interrupt controller, the address plan, loading the guest, the vCPUs,
//! the platform devices (console, power, panic), the interrupt routes KVM
//! starts with, and the firmware description plus boot registers written
//! last. One implementation per ISA, selected here for the host minivmm is
//! built for ([`Native`]); the rest of the VMM is written against the trait
//! and carries no `cfg(target_arch)`.

use std::fs::File;
use std::sync::{Arc, Mutex};

use arch::plan::{GuestMap, HostConstraints, PlanError, PlanInput};
use devices::{Bus, GuestEvent, GuestEvents};
use kvm_bindings::{
    kvm_irq_routing_entry, KVM_SYSTEM_EVENT_CRASH, KVM_SYSTEM_EVENT_RESET,
    KVM_SYSTEM_EVENT_SHUTDOWN,
};
use kvm_ioctls::{Cap, Kvm, VcpuFd, VmFd};

use crate::config::VmConfig;
use crate::device_manager::{Console, DeviceError, Devices};
use crate::vcpu::Vcpu;
use crate::vm::VmError;
use arch::GuestMemory;

#[cfg(target_arch = "aarch64")]
mod aarch64;
#[cfg(target_arch = "x86_64")]
mod x86_64;

/// The platform of the host minivmm runs on.
#[cfg(target_arch = "aarch64")]
pub type Native = aarch64::Aarch64;
/// The platform of the host minivmm runs on.
#[cfg(target_arch = "x86_64")]
pub type Native = x86_64::X86_64;

/// What can go wrong in the native platform's part of the build.
pub type PlatformError = <Native as Platform>::Error;

/// The kernel and initrd to load.
pub struct GuestImages {
    /// The kernel image.
    pub kernel: File,
    /// The initramfs, if any.
    pub initrd: Option<File>,
}

/// How MSIs reach KVM on this platform.
pub struct MsiRouting {
    /// Routes KVM has by default that a custom GSI table must keep (x86:
    /// the PIC and IOAPIC pins; arm64: the SPIs of platform devices).
    pub legacy: Vec<kvm_irq_routing_entry>,
    /// The first GSI MSI routes may use.
    pub first_msi_gsi: u32,
    /// Whether MSI routes carry the requester ID (`KVM_MSI_VALID_DEVID`:
    /// the GICv3 ITS translates by device ID).
    pub device_id: bool,
}

/// What PCI looks like to the CPU on this platform.
pub struct PciPlatform {
    /// The legacy configuration ports (0xCF8), where the CPU has port I/O.
    pub config_ports: Option<u16>,
    /// Where the PCI I/O window is memory-mapped, where the CPU has no
    /// port I/O (arm64); `None`: I/O BARs are in port space.
    pub io_window_mmio: Option<u64>,
}

/// Where ACPI PCI hotplug lives on this platform (the register block the
/// firmware's methods use and the Generic Event Device's interrupt).
pub struct HotplugPlatform {
    /// The register page: base and size.
    pub registers: (u64, u64),
    /// The GED's interrupt line (edge-triggered).
    pub gsi: u32,
}

/// One architecture's part of building a VM, in the order `Vm::build`
/// calls it.
pub trait Platform {
    /// What `load` hands on to `finish` (the kernel's entry point, where
    /// the initrd went).
    type Boot;
    /// What can go wrong in this platform's part of the build.
    type Error: std::error::Error + Send + Sync + 'static;

    /// KVM capabilities the VM needs, with the name used in messages.
    const REQUIRED_CAPS: &'static [(Cap, &'static str)];
    /// How PCI is reached.
    const PCI: PciPlatform;
    /// PCI hotplug: where it lives, or why this platform has none yet
    /// (the API answers that reason).
    const HOTPLUG: Result<HotplugPlatform, &'static str>;

    /// Creates the VM and what must exist before vCPUs (x86: TSS, the
    /// in-kernel irqchip and PIT).
    fn create_vm(kvm: &Kvm, config: &VmConfig) -> Result<VmFd, VmError>;

    /// Plans the guest address map.
    fn plan(input: &PlanInput, host: &HostConstraints) -> Result<GuestMap, PlanError>;

    /// Loads the kernel and initrd into guest memory.
    fn load(
        memory: &GuestMemory,
        map: &GuestMap,
        config: &VmConfig,
        images: GuestImages,
    ) -> Result<Self::Boot, VmError>;

    /// Creates and configures the vCPUs, and what needs them (arm64: the
    /// GIC and its ITS).
    fn create_vcpus(
        kvm: &Kvm,
        vm: &VmFd,
        config: &VmConfig,
        map: &GuestMap,
    ) -> Result<Vec<Vcpu>, VmError>;

    /// KVM's interrupt routes for MSIs.
    fn msi_routing() -> MsiRouting;

    /// Puts the platform devices (console, power, panic) on the buses;
    /// returns the console.
    fn add_platform_devices(
        vm: &VmFd,
        map: &GuestMap,
        pio: &mut Bus,
        mmio: &mut Bus,
        events: &Arc<GuestEvents>,
    ) -> Result<Arc<Mutex<Console>>, DeviceError>;

    /// Describes the VM to the guest (x86: ACPI tables; arm64: the device
    /// tree) and sets the boot vCPU's registers.
    fn finish(
        memory: &GuestMemory,
        map: &GuestMap,
        config: &VmConfig,
        devices: &Devices,
        vcpus: &mut [Vcpu],
        boot: Self::Boot,
    ) -> Result<(), VmError>;

    /// Where a stopped vCPU is, for messages (`guest RIP 0x...`).
    fn program_counter(fd: &VcpuFd) -> String;

    /// The registers worth logging when a vCPU stops on a fault (a triple
    /// fault on x86); the program counter unless the platform says more.
    fn fault_state(fd: &VcpuFd) -> String {
        Self::program_counter(fd)
    }

    /// What a `KVM_EXIT_SYSTEM_EVENT` of `kind` with `data` on vCPU `id`
    /// means (the platform's power-off, reset and crash conventions).
    fn system_event(fd: &VcpuFd, id: u8, kind: u32, data: &[u64]) -> GuestEvent;
}

/// The system events every platform shares: shutdown, reset, crash.
pub fn system_event(id: u8, kind: u32) -> GuestEvent {
    match kind {
        KVM_SYSTEM_EVENT_SHUTDOWN => GuestEvent::PowerOff,
        KVM_SYSTEM_EVENT_RESET => GuestEvent::Reset,
        KVM_SYSTEM_EVENT_CRASH => GuestEvent::Panic,
        other => GuestEvent::Crash(format!("vCPU {id}: unknown system event {other}")),
    }
}
