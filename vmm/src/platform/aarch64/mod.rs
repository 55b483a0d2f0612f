//! arm64: not yet able to build a VM (the platform lands in the next
//! commits); this keeps the aarch64 build of the VMM core compiling.

use std::sync::{Arc, Mutex};

use arch::plan::{GuestMap, HostConstraints, PlanError, PlanInput};
use arch::GuestMemory;
use devices::{Bus, GuestEvents};
use kvm_ioctls::{Cap, Kvm, VcpuFd, VmFd};

use super::{GuestImages, MsiRouting, PciPlatform, Platform};
use crate::config::VmConfig;
use crate::device_manager::{Console, DeviceError, Devices};
use crate::vcpu::Vcpu;
use crate::vm::VmError;

/// What can go wrong in arm64's part of the build.
#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    /// Not there yet.
    #[error("this minivmm build cannot run arm64 guests yet")]
    Unsupported,
}

/// The arm64 platform.
pub struct Aarch64;

/// Where the guest was loaded.
pub struct Boot;

impl Platform for Aarch64 {
    type Boot = Boot;
    type Error = PlatformError;

    const REQUIRED_CAPS: &'static [(Cap, &'static str)] = &[];
    const PCI: PciPlatform = PciPlatform {
        config_ports: None,
        io_window_mmio: None,
    };

    fn create_vm(_kvm: &Kvm, _config: &VmConfig) -> Result<VmFd, VmError> {
        Err(PlatformError::Unsupported.into())
    }

    fn plan(input: &PlanInput, host: &HostConstraints) -> Result<GuestMap, PlanError> {
        arch::aarch64::plan::plan(input, host)
    }

    fn load(
        _memory: &GuestMemory,
        _map: &GuestMap,
        _config: &VmConfig,
        _images: GuestImages,
    ) -> Result<Boot, VmError> {
        Err(PlatformError::Unsupported.into())
    }

    fn create_vcpus(
        _kvm: &Kvm,
        _vm: &VmFd,
        _config: &VmConfig,
        _map: &GuestMap,
    ) -> Result<Vec<Vcpu>, VmError> {
        Err(PlatformError::Unsupported.into())
    }

    fn msi_routing() -> MsiRouting {
        MsiRouting {
            legacy: Vec::new(),
            first_msi_gsi: 0,
            device_id: true,
        }
    }

    fn add_platform_devices(
        _vm: &VmFd,
        _map: &GuestMap,
        _pio: &mut Bus,
        _mmio: &mut Bus,
        _events: &Arc<GuestEvents>,
    ) -> Result<Arc<Mutex<Console>>, DeviceError> {
        Err(DeviceError::EventFd(std::io::Error::other(
            PlatformError::Unsupported,
        )))
    }

    fn finish(
        _memory: &GuestMemory,
        _map: &GuestMap,
        _config: &VmConfig,
        _devices: &Devices,
        _vcpus: &mut [Vcpu],
        _boot: Boot,
    ) -> Result<(), VmError> {
        Err(PlatformError::Unsupported.into())
    }

    fn program_counter(_fd: &VcpuFd) -> String {
        "an unknown PC".to_string()
    }
}
