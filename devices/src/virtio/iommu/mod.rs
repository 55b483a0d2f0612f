//! virtio-iommu device (virtio 1.3 section 5.13).
//!
//! [`VirtioIommu`] is the device the guest's driver talks to. Endpoints
//! behind it are fixed at construction. Emulated devices behind it do
//! their DMA through an `IommuMemory<GuestMemoryMmap, EndpointIommu>` built
//! from [`VirtioIommu::translator`]; assigned devices get their mappings
//! through a [`DmaBackend`]. Faults go out on the event queue; the VMM
//! polls [`VirtioIommu::fault_eventfd`] and then calls
//! `process_queue(EVENT_QUEUE)`.
//!
//! Files: `protocol` (wire format), `mappings` (one domain's mapping
//! store), `domains` (endpoints, domains, bypass), `request` (request
//! parsing and handlers), `probe` (PROBE properties), `translate` (DMA
//! translation), `event` (fault queue), `dma` (back-end trait), `device`
//! (the `VirtioDevice`).

use std::sync::RwLock;

pub mod device;
pub mod dma;
pub mod domains;
pub mod event;
pub mod mappings;
pub mod poll;
pub mod probe;
pub mod protocol;
pub mod request;
pub mod translate;

#[cfg(test)]
mod queue_tests;
#[cfg(test)]
mod tests;

pub use device::{EndpointConfig, Error, IommuConfig, VirtioIommu, EVENT_QUEUE, REQUEST_QUEUE};
pub use dma::{DmaBackend, DmaError, DmaPerm};
pub use domains::{ReservedKind, ReservedRegion};
pub use poll::PollSignal;
pub use translate::EndpointIommu;

/// State shared between the device (request thread) and the translators
/// of its endpoints (device threads).
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) state: RwLock<domains::IommuState>,
    pub(crate) faults: event::FaultQueue,
}
