//! [`Block`]: the virtio-blk [`VirtioDevice`].
//!
//! One request queue; requests are executed synchronously, in order, when
//! the transport reports a notification. Each completed chain goes to the
//! used ring with the number of bytes the device wrote into its
//! device-writable buffers: the data read for `IN` (or the part transferred
//! before an error), the ID bytes for `GET_ID`, plus the status byte. A
//! chain without a device-writable last byte cannot be answered; it is
//! logged and returned with length 0 so the driver does not wait forever.
//!
//! All DMA goes through the memory object `M` given at construction, with
//! the access direction checked (`Permissions::Read` for buffers the device
//! reads, `Permissions::Write` for buffers it fills); for a device behind
//! the virtio-iommu that is an `IommuMemory` and any failed translation
//! makes the request fail with `VIRTIO_BLK_S_IOERR`.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_F_BLK_SIZE, VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_RO, VIRTIO_BLK_F_SEG_MAX,
    VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK,
};
use virtio_bindings::virtio_ids::VIRTIO_ID_BLOCK;
use virtio_bindings::virtio_ring::VIRTIO_RING_F_EVENT_IDX;
use virtio_queue::Queue;
use vm_memory::{Bytes, GuestAddress, GuestMemory, GuestMemoryError, Permissions};

use super::config::ConfigSpace;
use super::counters::BlockCounters;
use super::disk::{DiskError, DiskFile};
use super::request::{Layout, Request, RequestKind};
use super::{ID_BYTES, QUEUE_SIZE, SECTOR_SIZE};
use crate::virtio::queue::DeviceQueue;
use crate::virtio::{
    ActivateError, VirtioDevice, VirtioInterrupt, VIRTIO_F_ACCESS_PLATFORM, VIRTIO_F_VERSION_1,
};

/// Queue sizes: a single request queue.
const QUEUE_SIZES: &[u16] = &[QUEUE_SIZE];
/// Most data segments per request: a chain as long as the queue, less the
/// header and status descriptors.
const SEG_MAX: u32 = QUEUE_SIZE as u32 - 2;

/// How to build a [`Block`] device.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BlockConfig {
    /// The raw disk image (a regular file or a host block device).
    pub path: PathBuf,
    /// Open the image read-only and offer `VIRTIO_BLK_F_RO`.
    pub read_only: bool,
    /// The device sits behind an IOMMU: offer `VIRTIO_F_ACCESS_PLATFORM`
    /// (the memory object passed to [`Block::new`] must then be the
    /// translated view).
    pub iommu: bool,
    /// The ID returned by `VIRTIO_BLK_T_GET_ID` (the guest's serial
    /// number), truncated to 20 bytes; by default the image's file name.
    pub id: Option<String>,
}

/// Why a request failed after validation.
#[derive(Debug, thiserror::Error)]
enum ExecError {
    #[error("write to a read-only disk")]
    ReadOnly,
    #[error("guest memory: {0}")]
    Memory(#[from] GuestMemoryError),
    #[error("disk image: {0}")]
    Disk(#[from] io::Error),
}

/// A virtio-blk device doing DMA through `M`.
pub struct Block<M> {
    mem: M,
    disk: DiskFile,
    id: [u8; ID_BYTES],
    features: u64,
    acked_features: u64,
    config: ConfigSpace,
    queue: Option<DeviceQueue>,
    counters: Arc<BlockCounters>,
}

impl<M: GuestMemory> Block<M> {
    /// Opens the disk image of `config` and builds the device.
    pub fn new(mem: M, config: BlockConfig) -> Result<Self, DiskError> {
        let disk = DiskFile::open(&config.path, config.read_only)?;
        Ok(Self::with_disk(
            mem,
            disk,
            config.iommu,
            config.id.as_deref(),
        ))
    }

    /// Builds the device around an already opened image; see
    /// [`BlockConfig`] for `iommu` and `id`.
    pub fn with_disk(mem: M, disk: DiskFile, iommu: bool, id: Option<&str>) -> Self {
        // EVENT_IDX: the driver says up to which used entry it needs no
        // interrupt, and the device up to which available entry it needs no
        // kick (the transport turns it on in the queue when negotiated).
        let mut features = VIRTIO_F_VERSION_1
            | 1 << VIRTIO_RING_F_EVENT_IDX
            | 1 << VIRTIO_BLK_F_FLUSH
            | 1 << VIRTIO_BLK_F_SEG_MAX
            | 1 << VIRTIO_BLK_F_BLK_SIZE;
        if disk.read_only() {
            features |= 1 << VIRTIO_BLK_F_RO;
        }
        if iommu {
            features |= VIRTIO_F_ACCESS_PLATFORM;
        }
        let name = disk
            .path()
            .file_name()
            .map(|n| n.to_string_lossy().into_owned());
        let id = id_bytes(id.or(name.as_deref()).unwrap_or_default());
        let config = ConfigSpace::new(disk.sectors(), SEG_MAX, SECTOR_SIZE as u32);
        Self {
            mem,
            disk,
            id,
            features,
            acked_features: 0,
            config,
            queue: None,
            counters: Arc::default(),
        }
    }

    /// What this disk has done so far (shared: it keeps counting).
    pub fn counters(&self) -> Arc<BlockCounters> {
        self.counters.clone()
    }

    /// The disk image.
    pub fn disk(&self) -> &DiskFile {
        &self.disk
    }

    /// The ID returned to `GET_ID`, zero-padded.
    pub fn id(&self) -> &[u8; ID_BYTES] {
        &self.id
    }

    /// Processes every available chain; returns whether any was used.
    fn drain(&mut self, queue: &mut DeviceQueue) -> bool {
        let mut requests = Requests {
            mem: &self.mem,
            disk: &mut self.disk,
            id: &self.id,
            acked_features: self.acked_features,
            counters: &self.counters,
        };
        queue.drain(&self.mem, false, |chain| {
            crate::perf::count(crate::perf::Counter::BlkRequests);
            let descs: Vec<(GuestAddress, u32, bool)> = chain
                .map(|d| (d.addr(), d.len(), d.is_write_only()))
                .collect();
            requests.handle(descs)
        })
    }
}

/// What executing requests needs of the device, borrowed apart from its
/// queue.
struct Requests<'a, M> {
    mem: &'a M,
    disk: &'a mut DiskFile,
    id: &'a [u8; ID_BYTES],
    acked_features: u64,
    counters: &'a BlockCounters,
}

impl<M: GuestMemory> Requests<'_, M> {
    /// Handles one chain; returns the used length.
    fn handle(&mut self, descs: Vec<(GuestAddress, u32, bool)>) -> u32 {
        let layout = match Layout::from_descriptors(descs) {
            Ok(layout) => layout,
            Err(e) => {
                crate::guest_log!(log::Level::Warn, "virtio-blk: dropping request: {e}");
                return 0;
            }
        };
        let status_addr = layout.status;
        let (status, written) = match Request::parse(self.mem, layout, self.disk.sectors()) {
            Ok(request) => self.execute(&request),
            Err(e) => {
                log::debug!("virtio-blk: refusing request: {e}");
                (e.status(), 0)
            }
        };
        match self.mem.write_obj(status, status_addr) {
            Ok(()) => written.saturating_add(1),
            Err(e) => {
                crate::guest_log!(
                    log::Level::Warn,
                    "virtio-blk: cannot write request status: {e}"
                );
                written
            }
        }
    }

    /// Executes a validated request; returns the status and the number of
    /// data bytes written to the guest.
    fn execute(&mut self, request: &Request) -> (u8, u32) {
        let mut written = 0u32;
        let result = match request.kind {
            RequestKind::Read => self.read(request, &mut written),
            RequestKind::Write => self.write(request),
            RequestKind::Flush => self.disk.flush().map_err(ExecError::from),
            RequestKind::GetId => self.get_id(request, &mut written),
        };
        match result {
            Ok(()) => {
                match request.kind {
                    RequestKind::Read => self.counters.read(written.into()),
                    RequestKind::Write => self.counters.write(request.data.len()),
                    RequestKind::Flush => self.counters.flush(),
                    RequestKind::GetId => {}
                }
                (VIRTIO_BLK_S_OK as u8, written)
            }
            Err(e) => {
                self.counters.error();
                match e {
                    ExecError::Disk(_) => crate::guest_log!(
                        log::Level::Warn,
                        "virtio-blk: {:?} at sector {} of '{}' failed: {e}",
                        request.kind,
                        request.sector,
                        self.disk.path().display()
                    ),
                    _ => log::debug!("virtio-blk: {:?} request failed: {e}", request.kind),
                }
                (VIRTIO_BLK_S_IOERR as u8, written)
            }
        }
    }

    /// Disk to guest, counting the bytes stored in `written`.
    fn read(&mut self, request: &Request, written: &mut u32) -> Result<(), ExecError> {
        let mut cursor = self.disk.at(byte_offset(request.sector)?)?;
        for seg in request.data.segments() {
            for slice in self
                .mem
                .get_slices(seg.addr, seg.len as usize, Permissions::Write)?
            {
                let mut slice = slice?;
                cursor.read_into(&mut slice)?;
                *written = written.saturating_add(slice.len() as u32);
            }
        }
        Ok(())
    }

    /// Guest to disk; synchronous when the driver did not negotiate
    /// `VIRTIO_BLK_F_FLUSH` (it then has no other way to make writes
    /// durable).
    fn write(&mut self, request: &Request) -> Result<(), ExecError> {
        if self.disk.read_only() {
            return Err(ExecError::ReadOnly);
        }
        let mut cursor = self.disk.at(byte_offset(request.sector)?)?;
        for seg in request.data.segments() {
            for slice in self
                .mem
                .get_slices(seg.addr, seg.len as usize, Permissions::Read)?
            {
                cursor.write_from(&slice?)?;
            }
        }
        if self.acked_features & (1 << VIRTIO_BLK_F_FLUSH) == 0 {
            self.disk.flush()?;
        }
        Ok(())
    }

    /// The ID, zero-padded to 20 bytes and truncated to the buffer.
    fn get_id(&mut self, request: &Request, written: &mut u32) -> Result<(), ExecError> {
        let mut rest: &[u8] = self.id;
        for seg in request.data.segments() {
            let n = rest.len().min(seg.len as usize);
            let Some((chunk, tail)) = rest.split_at_checked(n) else {
                break;
            };
            self.mem.write_slice(chunk, seg.addr)?;
            *written = written.saturating_add(n as u32);
            rest = tail;
        }
        Ok(())
    }
}

/// The byte offset of `sector` (validated to be inside the disk).
fn byte_offset(sector: u64) -> io::Result<u64> {
    sector
        .checked_mul(SECTOR_SIZE)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "sector offset overflows"))
}

/// `id` as the 20 bytes returned by `GET_ID`: truncated, zero-padded.
fn id_bytes(id: &str) -> [u8; ID_BYTES] {
    let mut bytes = [0u8; ID_BYTES];
    for (dst, src) in bytes.iter_mut().zip(id.bytes()) {
        *dst = src;
    }
    bytes
}

impl<M: GuestMemory + Send> VirtioDevice for Block<M> {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_BLOCK
    }

    fn queue_max_sizes(&self) -> &[u16] {
        QUEUE_SIZES
    }

    fn device_features(&self) -> u64 {
        self.features
    }

    fn set_acked_features(&mut self, features: u64) {
        self.acked_features = features & self.features;
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        self.config.read(offset, data);
    }

    fn write_config(&mut self, offset: u64, data: &[u8]) {
        log::debug!(
            "virtio-blk: ignoring {}-byte config write at {offset:#x}",
            data.len()
        );
    }

    fn activate(
        &mut self,
        queues: Vec<(usize, Queue)>,
        interrupt: Arc<dyn VirtioInterrupt>,
    ) -> Result<(), ActivateError> {
        let queue = queues
            .into_iter()
            .find_map(|(index, queue)| (index == 0).then_some(queue))
            .ok_or(ActivateError::MissingQueue(0))?;
        self.queue = Some(DeviceQueue::new(
            "virtio-blk",
            0,
            queue,
            self.acked_features,
            &self.mem,
            interrupt,
        )?);
        Ok(())
    }

    fn process_queue(&mut self, index: usize) {
        if index != 0 {
            crate::guest_log!(
                log::Level::Warn,
                "virtio-blk: notification for nonexistent queue {index}"
            );
            return;
        }
        crate::perf::count(crate::perf::Counter::BlkKicks);
        // The queue is taken out while requests run so that they can borrow
        // the rest of the device.
        let Some(mut queue) = self.queue.take() else {
            log::debug!("virtio-blk: notification before activation");
            return;
        };
        if self.drain(&mut queue) {
            queue.notify_used(&self.mem);
        }
        self.queue = Some(queue);
    }

    fn reset(&mut self) {
        self.queue = None;
        self.acked_features = 0;
    }
}
