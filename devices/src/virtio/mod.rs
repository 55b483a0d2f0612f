//! Virtio devices, independent of their transport.
//!
//! A device implements [`VirtioDevice`]: it declares its type, queues and
//! features, serves its configuration space, and processes a queue when the
//! transport tells it the driver notified it. The transport (virtio-pci)
//! owns feature negotiation, queue set-up and interrupts; devices never see
//! PCI. Devices hold the memory they do DMA through: plain guest memory, or
//! an IOMMU-translated view of it for devices behind the virtio-iommu, and
//! serve their queues through [`queue::DeviceQueue`], which validates what
//! the driver put in the rings and stops serving a queue the driver broke.

use std::sync::Arc;

use virtio_queue::Queue;

/// `VIRTIO_F_VERSION_1`.
pub const VIRTIO_F_VERSION_1: u64 = 1 << 32;
/// `VIRTIO_F_ACCESS_PLATFORM`: the device's DMA goes through an IOMMU.
pub const VIRTIO_F_ACCESS_PLATFORM: u64 = 1 << 33;

/// How a device signals the driver.
pub trait VirtioInterrupt: Send + Sync {
    /// The device put used buffers on queue `queue`.
    fn notify_queue(&self, queue: u16);
    /// The device's configuration space changed.
    fn notify_config(&self);
    /// Queue `queue` is broken (see [`queue::DeviceQueue`]): the device
    /// stopped serving it and needs a reset. The transport sets
    /// DEVICE_NEEDS_RESET, notifies a configuration change and stops
    /// passing on notifications for the queue. A transport without a way
    /// to tell the driver ignores it.
    fn queue_broken(&self, _queue: u16) {}
}

/// Why a device could not be activated.
#[derive(Debug, thiserror::Error)]
pub enum ActivateError {
    /// The driver did not set up a queue the device needs.
    #[error("queue {0} is required but was not enabled by the driver")]
    MissingQueue(usize),
    /// A ring of an enabled queue is not in the memory the device does DMA
    /// through.
    #[error("queue {queue}: the {ring} at {addr:#x} is not in guest memory")]
    Ring {
        /// The queue.
        queue: usize,
        /// Which ring.
        ring: &'static str,
        /// Its address as the driver programmed it.
        addr: u64,
    },
    /// A device-specific problem.
    #[error("{0}")]
    Device(String),
}

/// A virtio device model.
pub trait VirtioDevice: Send {
    /// Virtio device ID (e.g. 2 for block, 23 for IOMMU).
    fn device_type(&self) -> u32;
    /// Maximum size of each queue; the length is the number of queues.
    fn queue_max_sizes(&self) -> &[u16];
    /// Features the device offers (including the transport-independent
    /// ones it supports, such as `VIRTIO_F_VERSION_1`).
    fn device_features(&self) -> u64;
    /// Features the driver accepted (a subset of `device_features`; the
    /// transport refuses anything else). Called when the driver sets
    /// FEATURES_OK.
    fn set_acked_features(&mut self, features: u64);
    /// Reads `data.len()` bytes of device configuration at `offset`. Out of
    /// range bytes read as zero.
    fn read_config(&self, offset: u64, data: &mut [u8]);
    /// Writes device configuration; invalid writes are ignored.
    fn write_config(&mut self, offset: u64, data: &[u8]);
    /// The driver set DRIVER_OK: `queues` holds the enabled queues with
    /// their index, already validated by the transport.
    fn activate(
        &mut self,
        queues: Vec<(usize, Queue)>,
        interrupt: Arc<dyn VirtioInterrupt>,
    ) -> Result<(), ActivateError>;
    /// The driver notified queue `index`: process everything available.
    fn process_queue(&mut self, index: usize);
    /// Device reset: forget queues and negotiated state.
    fn reset(&mut self);
}

pub mod block;
pub mod iommu;
pub mod pci;
pub mod queue;
