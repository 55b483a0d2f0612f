//! virtio-blk device (virtio 1.2 section 5.2): one request queue served from
//! a raw disk image file.
//!
//! The pieces, one job each:
//! - [`counters`]: completed requests and bytes, for the VMM's API;
//! - [`disk`]: the image file (open, capacity, positioned I/O, flush);
//! - `request`: turns a descriptor chain into a validated request;
//! - `config`: the device configuration space bytes;
//! - [`device`]: [`Block`], the [`VirtioDevice`](super::VirtioDevice) that
//!   ties them together and executes requests.
//!
//! The device is generic over the memory it does DMA through, so the same
//! model serves plain guest memory and an IOMMU-translated view of it.

mod config;
pub mod counters;
pub mod device;
pub mod disk;
mod request;

#[cfg(test)]
mod tests;

pub use counters::{BlockCounters, BlockCounts};
pub use device::{Block, BlockConfig};
pub use disk::{DiskError, DiskFile};

/// Size of a virtio-blk sector, the unit of `capacity` and request offsets.
pub const SECTOR_SIZE: u64 = 512;
/// Size of the request queue.
pub const QUEUE_SIZE: u16 = 256;
/// Length of the device ID returned by `VIRTIO_BLK_T_GET_ID`.
pub const ID_BYTES: usize = 20;
