//! virtio-iommu device (virtio 1.3 section 5.13).
//!
//! [`VirtioIommu`] is the device the guest's driver talks to. Endpoints
//! behind it are fixed at construction. Emulated devices behind it do
//! their DMA through an `IommuMemory<GuestMemoryMmap, EndpointIommu>` built
//! from [`VirtioIommu::translator`]; assigned devices get their host
//! address spaces kept equal to the guest's domains through a
//! [`DmaBackend`] (see `host.rs` for the rule and `apply.rs` for the order
//! of work). Faults go out on the event queue; the VMM
//! polls [`FaultDelivery::eventfd`] and then calls
//! [`FaultDelivery::deliver`], which needs no lock the request path holds.
//!
//! Files: `protocol` (wire format), `mappings` (one domain's mapping
//! store), `domains` (endpoints, domains, bypass), `host` (host address
//! spaces of assigned endpoints), `apply` (changes applied to both sides),
//! `request` (request parsing and handlers), `probe` (PROBE properties),
//! `state` (the state's lock and generation), `translate` (DMA
//! translation and its cache), `event` (fault queue), `dma` (back-end
//! trait), `device` (the `VirtioDevice`), `testing` (a fake back-end, with
//! the `test-utils` feature).

pub mod apply;
pub mod device;
pub mod dma;
pub mod domains;
pub mod event;
pub mod host;
pub mod mappings;
pub mod poll;
pub mod probe;
pub mod protocol;
pub mod request;
pub mod state;
#[cfg(any(test, feature = "test-utils"))]
pub mod testing;
pub mod translate;

#[cfg(test)]
mod queue_tests;
#[cfg(test)]
mod tests;

pub use device::{
    EndpointConfig, Error, HostDma, IommuConfig, VirtioIommu, EVENT_QUEUE, REQUEST_QUEUE,
};
pub use dma::{DmaBackend, DmaError, DmaPerm, HostMapping};
pub use domains::{ReservedKind, ReservedRegion};
pub use event::FaultDelivery;
pub use poll::PollSignal;
pub use translate::EndpointIommu;

/// State shared between the device (request thread) and the translators
/// of its endpoints (device threads).
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) state: state::StateLock,
    pub(crate) faults: event::FaultQueue,
}
