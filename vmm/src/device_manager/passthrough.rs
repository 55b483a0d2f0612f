//! Assigned devices before they reach the bus: checked and opened through
//! VFIO ahead of the address plan (or, hot-added, while the VM runs), then
//! guest RAM mapped for the ones not behind the virtio-iommu.

use std::sync::Arc;

use arch::GuestMemory;
use kvm_ioctls::VmFd;

use super::DeviceError;
use crate::config::VmConfig;

/// A host device opened through VFIO, before it is put on the bus.
pub struct OpenedVfio {
    /// Host BDF, normalized.
    pub bdf: String,
    pub(super) device: Arc<vfio_ioctls::VfioDevice>,
    /// Its container (shared by all `iommu=off` devices).
    pub container: Arc<vfio_ioctls::VfioContainer>,
    pub(super) iommu: bool,
}

/// KVM's VFIO pseudo-device (one per VM: KVM refuses a second), made when
/// the first assigned device is opened, at boot or hot-added.
#[derive(Default)]
pub struct KvmVfio(Option<Arc<vfio_ioctls::VfioDeviceFd>>);

impl KvmVfio {
    fn handle(&mut self, vm: &VmFd) -> Result<Arc<vfio_ioctls::VfioDeviceFd>, DeviceError> {
        if let Some(h) = &self.0 {
            return Ok(h.clone());
        }
        let mut kvm_vfio = kvm_bindings::kvm_create_device {
            type_: kvm_bindings::kvm_device_type_KVM_DEV_TYPE_VFIO,
            fd: 0,
            flags: 0,
        };
        let handle = Arc::new(vfio_ioctls::VfioDeviceFd::new_from_kvm(
            vm.create_device(&mut kvm_vfio)
                .map_err(DeviceError::KvmVfio)?,
        ));
        self.0 = Some(handle.clone());
        Ok(handle)
    }

    /// Checks and opens host device `bdf` (normalized) in a container of
    /// its own, while the VM runs. Nothing is mapped yet.
    pub(super) fn open_hot(
        &mut self,
        vm: &VmFd,
        bdf: &str,
        iommu: bool,
    ) -> Result<OpenedVfio, DeviceError> {
        let dir = crate::vfio::check_host_device(bdf)?;
        let handle = self.handle(vm)?;
        let container = vfio_ioctls::VfioContainer::new(Some(handle))
            .map(Arc::new)
            .map_err(|_| crate::vfio::VfioError::NoVfio)?;
        let device = crate::vfio::open_device(bdf, &dir, container.clone())?;
        Ok(OpenedVfio {
            bdf: bdf.to_string(),
            device,
            container,
            iommu,
        })
    }
}

/// Opens the assigned devices before guest memory exists (so the planner
/// can use what their containers accept): one shared container for
/// `iommu=off` devices, one each for devices behind the virtio-iommu.
/// Nothing is mapped yet.
pub fn open_vfio_devices(
    vm: &VmFd,
    config: &VmConfig,
    kvm_vfio: &mut KvmVfio,
) -> Result<Vec<OpenedVfio>, DeviceError> {
    if config.vfio.is_empty() {
        return Ok(Vec::new());
    }
    let mut checked = Vec::new();
    for v in &config.vfio {
        let bdf = crate::vfio::normalize_bdf(&v.bdf)?;
        let dir = crate::vfio::check_host_device(&bdf)?;
        checked.push((bdf, dir, v.iommu));
    }
    let handle = kvm_vfio.handle(vm)?;
    let new_container = || {
        vfio_ioctls::VfioContainer::new(Some(handle.clone()))
            .map(Arc::new)
            .map_err(|_| crate::vfio::VfioError::NoVfio)
    };
    let mut shared: Option<Arc<vfio_ioctls::VfioContainer>> = None;
    let mut opened = Vec::new();
    for (bdf, dir, iommu) in checked {
        let container = match (&shared, iommu) {
            (Some(c), false) => c.clone(),
            _ => new_container()?,
        };
        let device = crate::vfio::open_device(&bdf, &dir, container.clone())?;
        if !iommu && shared.is_none() {
            shared = Some(container.clone());
        }
        opened.push(OpenedVfio {
            bdf,
            device,
            container,
            iommu,
        });
    }
    Ok(opened)
}

/// Maps all guest RAM (IOVA = GPA) for the `iommu=off` devices' shared
/// container.
pub(super) fn map_ram_for_unmanaged(
    opened: &[OpenedVfio],
    memory: &GuestMemory,
) -> Result<(), DeviceError> {
    if let Some(o) = opened.iter().find(|o| !o.iommu) {
        // SAFETY: guest RAM stays mapped until the process exits.
        unsafe { o.container.vfio_map_guest_memory(memory) }.map_err(|source| {
            crate::vfio::VfioError::DmaMap {
                bdf: o.bdf.clone(),
                source,
            }
        })?;
    }
    Ok(())
}
