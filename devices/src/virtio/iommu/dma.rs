//! The DMA back-end hook: what the virtio-iommu tells the component that
//! programs real DMA translation (VFIO, later) when the guest changes a
//! domain. Emulated devices need none of this: they translate through
//! [`super::EndpointIommu`] on every access.

use super::protocol::{VIRTIO_IOMMU_MAP_F_MMIO, VIRTIO_IOMMU_MAP_F_READ, VIRTIO_IOMMU_MAP_F_WRITE};

/// Access rights of a mapping handed to a [`DmaBackend`].
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
    /// Rights described by `VIRTIO_IOMMU_MAP_F_*` flags.
    pub fn from_map_flags(flags: u32) -> Self {
        Self {
            read: flags & VIRTIO_IOMMU_MAP_F_READ != 0,
            write: flags & VIRTIO_IOMMU_MAP_F_WRITE != 0,
            mmio: flags & VIRTIO_IOMMU_MAP_F_MMIO != 0,
        }
    }
}

/// Why a [`DmaBackend`] refused an operation.
#[derive(Debug, thiserror::Error)]
pub enum DmaError {
    /// Out of resources (e.g. the host's DMA mapping limit): the guest sees
    /// `VIRTIO_IOMMU_S_NOMEM`.
    #[error("DMA back-end out of resources: {0}")]
    NoResources(String),
    /// The back-end cannot do this (e.g. bypass for an assigned device):
    /// ATTACH fails with `VIRTIO_IOMMU_S_UNSUPP`.
    #[error("DMA back-end does not support this: {0}")]
    Unsupported(String),
    /// Anything else: the guest sees `VIRTIO_IOMMU_S_DEVERR`.
    #[error("DMA back-end failed: {0}")]
    Failed(String),
}

/// Mirrors domain changes into a DMA translation back-end.
///
/// Calls happen on the request-queue thread with the IOMMU state locked, in
/// request order, before the request completes:
/// * MAP: `map` first; the mapping is recorded only if it succeeds.
/// * UNMAP: `unmap` once per removed mapping with its exact range, after the
///   mappings left the IOMMU's own table.
/// * ATTACH: `attach` after the endpoint left its previous domain (that is a
///   `detach`), before it is recorded in the new one; on failure the
///   endpoint stays unattached.
/// * A domain whose last endpoint leaves is destroyed: `unmap` for each of
///   its mappings, then `detach` of that endpoint.
///
/// A mapping covering the whole 64-bit space has no `u64` size: with a
/// back-end present, MAP of such a range fails with `VIRTIO_IOMMU_S_RANGE`.
pub trait DmaBackend: Send {
    /// `domain` now maps `iova..iova + size` to guest-physical `phys`.
    fn map(
        &mut self,
        domain: u32,
        iova: u64,
        size: u64,
        phys: u64,
        perm: DmaPerm,
    ) -> Result<(), DmaError>;

    /// `domain` no longer maps `iova..iova + size` (one whole earlier map).
    fn unmap(&mut self, domain: u32, iova: u64, size: u64) -> Result<(), DmaError>;

    /// `endpoint` joins `domain`; `bypass` domains translate 1:1.
    fn attach(&mut self, endpoint: u32, domain: u32, bypass: bool) -> Result<(), DmaError> {
        let _ = (endpoint, domain, bypass);
        Ok(())
    }

    /// `endpoint` left `domain` (it is unattached until its next attach).
    fn detach(&mut self, endpoint: u32, domain: u32) {
        let _ = (endpoint, domain);
    }
}

/// Reborrows an optional back-end for a shorter call (a plain
/// `as_deref_mut` cannot shorten the trait object's lifetime).
pub fn reborrow<'a>(
    backend: &'a mut Option<&mut dyn DmaBackend>,
) -> Option<&'a mut dyn DmaBackend> {
    match backend {
        Some(b) => Some(&mut **b),
        None => None,
    }
}
