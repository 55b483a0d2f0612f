//! The DMA back-end: the narrow interface to the host IOMMU that real DMA
//! from assigned endpoints goes through (VFIO). Each assigned endpoint has
//! its own host address space (one VFIO container per endpoint); the
//! back-end only maps and unmaps ranges in it. Which ranges belong there is
//! decided from the virtual state by `host.rs`. Emulated endpoints need none
//! of this: they translate through [`super::EndpointIommu`] on every access.

use super::protocol::{VIRTIO_IOMMU_MAP_F_MMIO, VIRTIO_IOMMU_MAP_F_READ, VIRTIO_IOMMU_MAP_F_WRITE};

/// Access rights of a host mapping.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DmaPerm {
    /// Endpoints may read.
    pub read: bool,
    /// Endpoints may write.
    pub write: bool,
    /// The target is device registers rather than memory.
    pub mmio: bool,
}

impl DmaPerm {
    /// Read and write: the rights of the identity map of bypass.
    pub const READ_WRITE: Self = Self {
        read: true,
        write: true,
        mmio: false,
    };

    /// Rights described by `VIRTIO_IOMMU_MAP_F_*` flags.
    pub fn from_map_flags(flags: u32) -> Self {
        Self {
            read: flags & VIRTIO_IOMMU_MAP_F_READ != 0,
            write: flags & VIRTIO_IOMMU_MAP_F_WRITE != 0,
            mmio: flags & VIRTIO_IOMMU_MAP_F_MMIO != 0,
        }
    }
}

/// One range of an endpoint's host address space: IOVAs
/// `iova..iova + size` reach guest-physical `phys..phys + size`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostMapping {
    /// First IOVA.
    pub iova: u64,
    /// Bytes mapped (never 0).
    pub size: u64,
    /// Guest-physical address of `iova`.
    pub phys: u64,
    /// Rights.
    pub perm: DmaPerm,
}

/// Why a [`DmaBackend`] refused an operation.
#[derive(Clone, Debug, thiserror::Error)]
pub enum DmaError {
    /// Out of resources (e.g. the host's DMA mapping limit or locked-memory
    /// limit): the guest sees `VIRTIO_IOMMU_S_NOMEM`.
    #[error("DMA back-end out of resources: {0}")]
    NoResources(String),
    /// The back-end cannot do this (e.g. MMIO mappings for an assigned
    /// device): the guest sees `VIRTIO_IOMMU_S_UNSUPP`.
    #[error("DMA back-end does not support this: {0}")]
    Unsupported(String),
    /// Anything else: the guest sees `VIRTIO_IOMMU_S_DEVERR`.
    #[error("DMA back-end failed: {0}")]
    Failed(String),
}

/// The host IOMMU of the assigned endpoints: one address space per
/// endpoint, identified by endpoint ID.
///
/// Calls come from the request-queue thread, in request order, while no
/// lock that emulated DMA or the event loop needs is held. The virtio-iommu
/// only ever maps a range that is free in that address space, and only
/// unmaps whole ranges it mapped before (or ranges that may already be
/// gone, when it cleans up after a failure).
pub trait DmaBackend: Send {
    /// Maps `mapping` into `endpoint`'s address space. On error nothing of
    /// it is mapped.
    fn map(&mut self, endpoint: u32, mapping: &HostMapping) -> Result<(), DmaError>;

    /// Unmaps `iova..iova + size` from `endpoint`'s address space. On
    /// success nothing is mapped in that range any more (it is not an
    /// error if nothing was).
    fn unmap(&mut self, endpoint: u32, iova: u64, size: u64) -> Result<(), DmaError>;

    /// Whether [`DmaBackend::unmap_all`] works on this host (VFIO: the
    /// `VFIO_UNMAP_ALL` extension, Linux 5.12 and later), probed once.
    fn can_unmap_all(&self) -> bool {
        false
    }

    /// Empties `endpoint`'s address space in one call. On error any part
    /// of it may remain mapped.
    fn unmap_all(&mut self, endpoint: u32) -> Result<(), DmaError> {
        let _ = endpoint;
        Err(DmaError::Unsupported("unmap-all".into()))
    }
}
