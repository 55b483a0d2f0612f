//! Passthrough devices on the host side: checks a BDF can be assigned
//! (exists, bound to vfio-pci, viable group, VFIO present) with errors that
//! say how to fix it, opens it through VFIO, reads what its IOMMU accepts,
//! maps BARs into the guest through KVM memory slots, and shadows the
//! virtio-iommu's mappings into VFIO containers.

mod dma;
mod info;
mod slots;
mod sysfs;

use std::path::Path;
use std::sync::Arc;

pub use dma::{VfioContainers, VfioDma};
pub use info::{iommu_info, IommuInfo};
pub use slots::KvmSlots;
pub use sysfs::{check_assignable, check_host_device, normalize_bdf};

/// Why a device cannot be assigned.
#[derive(Debug, thiserror::Error)]
pub enum VfioError {
    /// Malformed BDF.
    #[error("invalid --vfio device '{0}': give a PCI address such as 0000:01:00.0")]
    BadBdf(String),
    /// No such device.
    #[error("no PCI device {0} on this host (list them with lspci -D)")]
    NoDevice(String),
    /// Not bound to vfio-pci.
    #[error("{bdf} is bound to {driver}, not vfio-pci: bind it with `echo vfio-pci > /sys/bus/pci/devices/{bdf}/driver_override; echo {bdf} > /sys/bus/pci/devices/{bdf}/driver/unbind; echo {bdf} > /sys/bus/pci/drivers_probe`")]
    NotVfio {
        /// Device.
        bdf: String,
        /// Its current driver ("no driver" when unbound).
        driver: String,
    },
    /// No IOMMU group: the host IOMMU is off.
    #[error("{0} has no IOMMU group: enable the host IOMMU (intel_iommu=on or amd_iommu=on on the host kernel command line)")]
    NoGroup(String),
    /// Other devices in the group are still owned by host drivers.
    #[error("the IOMMU group {group} of {bdf} is not viable: {others} must also be bound to vfio-pci (or unbound)")]
    GroupNotViable {
        /// Device.
        bdf: String,
        /// Group number.
        group: String,
        /// The offending devices and drivers.
        others: String,
    },
    /// No VFIO on the host.
    #[error("/dev/vfio/vfio does not exist: load VFIO with `modprobe vfio-pci`")]
    NoVfio,
    /// VFIO refused the IOMMU set-up for lack of interrupt remapping.
    #[error("VFIO refused {bdf} (EPERM): the host has no interrupt remapping, so the device could forge MSIs into any guest or the host. Enable it (intel_iommu=on with intremap, or amd_iommu=on), or accept the risk with `modprobe vfio_iommu_type1 allow_unsafe_interrupts=1`")]
    NoInterruptRemapping {
        /// Device.
        bdf: String,
    },
    /// Any other VFIO failure.
    #[error("cannot open {bdf} through VFIO")]
    Open {
        /// Device.
        bdf: String,
        /// Why.
        #[source]
        source: vfio_ioctls::VfioError,
    },
    /// DMA mapping of guest RAM failed.
    #[error("cannot map guest memory for DMA by {bdf}")]
    DmaMap {
        /// Device.
        bdf: String,
        /// Why.
        #[source]
        source: vfio_ioctls::VfioError,
    },
}

/// Opens the vfio-pci device in `dir` through `container`, turning VFIO's
/// refusals into errors that say what to do.
pub fn open_device(
    bdf: &str,
    dir: &Path,
    container: Arc<vfio_ioctls::VfioContainer>,
) -> Result<Arc<vfio_ioctls::VfioDevice>, VfioError> {
    vfio_ioctls::VfioDevice::new(dir, container, false)
        .map(Arc::new)
        .map_err(|source| match &source {
            vfio_ioctls::VfioError::ContainerSetIOMMU(e) if e.errno() == libc::EPERM => {
                VfioError::NoInterruptRemapping {
                    bdf: bdf.to_string(),
                }
            }
            vfio_ioctls::VfioError::GroupViable => VfioError::GroupNotViable {
                bdf: bdf.to_string(),
                group: "?".into(),
                others: "another device of its group".into(),
            },
            _ => VfioError::Open {
                bdf: bdf.to_string(),
                source,
            },
        })
}
