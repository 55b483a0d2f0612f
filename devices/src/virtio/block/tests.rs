//! Device-level tests: a mock driver (virtio-queue's `MockSplitQueue`)
//! submits requests to a [`Block`] over a `GuestMemoryMmap`, or over an
//! `IommuMemory` view of it, backed by a temporary image file.

use std::fs;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard};

use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_F_BLK_SIZE, VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_RO, VIRTIO_BLK_F_SEG_MAX,
    VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK, VIRTIO_BLK_S_UNSUPP, VIRTIO_BLK_T_DISCARD,
    VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT,
    VIRTIO_BLK_T_WRITE_ZEROES,
};
use virtio_bindings::virtio_ring::{
    VIRTIO_RING_F_EVENT_IDX, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE,
};
use virtio_queue::desc::split::Descriptor as SplitDescriptor;
use virtio_queue::desc::RawDescriptor;
use virtio_queue::mock::MockSplitQueue;
use virtio_queue::{Queue, QueueT};
use vm_memory::iommu::{Error as IommuError, IotlbIterator, IovaRange};
use vm_memory::{
    Address, Bytes, GuestAddress, GuestMemory, GuestMemoryMmap, Iommu, IommuMemory, Iotlb,
    Permissions,
};

use super::{Block, BlockConfig, BlockCounts, DiskError, SECTOR_SIZE};
use crate::virtio::{
    ActivateError, VirtioDevice, VirtioInterrupt, VIRTIO_F_ACCESS_PLATFORM, VIRTIO_F_VERSION_1,
};

const OK: u8 = VIRTIO_BLK_S_OK as u8;
const IOERR: u8 = VIRTIO_BLK_S_IOERR as u8;
const UNSUPP: u8 = VIRTIO_BLK_S_UNSUPP as u8;

/// Guest RAM size; the rings sit at its start, buffers from `BUFFERS`.
const MEM_SIZE: usize = 0x100_0000;
const BUFFERS: u64 = 0x10_0000;
/// Sectors in the test images.
const SECTORS: u64 = 64;

static IMAGE_COUNT: AtomicUsize = AtomicUsize::new(0);

/// A disk image in the temporary directory, removed when dropped.
struct TempImage {
    path: PathBuf,
}

impl TempImage {
    fn with_contents(contents: &[u8]) -> Self {
        let path = std::env::temp_dir().join(format!(
            "minivmm-virtio-blk-{}-{}.img",
            std::process::id(),
            IMAGE_COUNT.fetch_add(1, Ordering::Relaxed)
        ));
        fs::write(&path, contents).expect("create image");
        Self { path }
    }

    /// `SECTORS` sectors of a recognisable pattern.
    fn patterned() -> Self {
        Self::with_contents(&pattern(SECTORS * SECTOR_SIZE, 3))
    }

    fn contents(&self) -> Vec<u8> {
        fs::read(&self.path).expect("read image")
    }

    fn config(&self) -> BlockConfig {
        BlockConfig {
            path: self.path.clone(),
            ..Default::default()
        }
    }
}

impl Drop for TempImage {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

fn pattern(len: u64, seed: u64) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(31) ^ (i >> 9) ^ seed) as u8)
        .collect()
}

/// FNV-1a, to compare buffers by checksum.
fn checksum(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
    })
}

fn header(kind: u32, sector: u64) -> [u8; 16] {
    let mut h = [0u8; 16];
    h[..4].copy_from_slice(&kind.to_le_bytes());
    h[8..].copy_from_slice(&sector.to_le_bytes());
    h
}

#[derive(Default)]
struct CountingInterrupt {
    queue: AtomicUsize,
    config: AtomicUsize,
    broken: AtomicUsize,
}

impl CountingInterrupt {
    fn queue_notifications(&self) -> usize {
        self.queue.load(Ordering::SeqCst)
    }
}

impl VirtioInterrupt for CountingInterrupt {
    fn notify_queue(&self, queue: u16) {
        assert_eq!(queue, 0);
        self.queue.fetch_add(1, Ordering::SeqCst);
    }

    fn notify_config(&self) {
        self.config.fetch_add(1, Ordering::SeqCst);
    }

    fn queue_broken(&self, queue: u16) {
        assert_eq!(queue, 0);
        self.broken.fetch_add(1, Ordering::SeqCst);
    }
}

/// A submitted request: where its buffers are.
struct Submitted {
    head: u16,
    data: Vec<GuestAddress>,
    status: GuestAddress,
}

/// The driver side of the request queue.
struct Driver<'a, M: GuestMemory> {
    mem: &'a M,
    queue: MockSplitQueue<'a, M>,
    next_desc: u16,
    next_buf: u64,
}

impl<'a, M: GuestMemory> Driver<'a, M> {
    /// Rings at `rings`, buffers allocated from `buffers` upwards.
    fn new(mem: &'a M, rings: GuestAddress, buffers: GuestAddress) -> Self {
        Self {
            mem,
            queue: MockSplitQueue::create(mem, rings, super::QUEUE_SIZE),
            next_desc: 0,
            next_buf: buffers.0,
        }
    }

    fn queue(&self) -> Queue {
        self.queue.create_queue().expect("queue")
    }

    /// A fresh buffer of `len` bytes, page aligned.
    fn alloc(&mut self, len: u32) -> GuestAddress {
        let addr = self.next_buf;
        self.next_buf += u64::from(len).div_ceil(0x1000).max(1) * 0x1000;
        GuestAddress(addr)
    }

    /// Makes a chain of `(address, length, device-writable)` available.
    fn add(&mut self, descs: &[(GuestAddress, u32, bool)]) -> u16 {
        let head = self.next_desc;
        for (i, (addr, len, writable)) in descs.iter().enumerate() {
            let index = self.next_desc;
            self.next_desc += 1;
            let mut flags = if *writable { VRING_DESC_F_WRITE } else { 0 } as u16;
            if i + 1 < descs.len() {
                flags |= VRING_DESC_F_NEXT as u16;
            }
            let desc = SplitDescriptor::new(addr.0, *len, flags, index + 1);
            self.queue
                .desc_table()
                .store(index, RawDescriptor::from(desc))
                .expect("store descriptor");
        }
        let avail = self.queue.avail();
        let idx = avail.idx().load();
        avail
            .ring()
            .ref_at(usize::from(idx % super::QUEUE_SIZE))
            .expect("avail slot")
            .store(head);
        avail.idx().store(idx.wrapping_add(1));
        head
    }

    /// Header + data buffers of the given lengths and directions, with the
    /// data written to the readable ones + a 1-byte status.
    fn request(&mut self, kind: u32, sector: u64, data: &[(&[u8], bool)]) -> Submitted {
        let hdr = self.alloc(16);
        self.mem
            .write_slice(&header(kind, sector), hdr)
            .expect("hdr");
        let mut descs = vec![(hdr, 16, false)];
        let mut bufs = Vec::new();
        for (bytes, writable) in data {
            let len = bytes.len() as u32;
            let addr = self.alloc(len);
            self.mem.write_slice(bytes, addr).expect("data");
            descs.push((addr, len, *writable));
            bufs.push(addr);
        }
        let status = self.alloc(1);
        self.mem.write_obj(0xffu8, status).expect("status");
        descs.push((status, 1, true));
        Submitted {
            head: self.add(&descs),
            data: bufs,
            status,
        }
    }

    /// A read of `lens` bytes (per descriptor) from `sector`.
    fn read(&mut self, sector: u64, lens: &[usize]) -> Submitted {
        let fill: Vec<Vec<u8>> = lens.iter().map(|l| vec![0xee; *l]).collect();
        let data: Vec<(&[u8], bool)> = fill.iter().map(|b| (b.as_slice(), true)).collect();
        self.request(VIRTIO_BLK_T_IN, sector, &data)
    }

    /// A write of `chunks` (one descriptor each) at `sector`.
    fn write(&mut self, sector: u64, chunks: &[&[u8]]) -> Submitted {
        let data: Vec<(&[u8], bool)> = chunks.iter().map(|c| (*c, false)).collect();
        self.request(VIRTIO_BLK_T_OUT, sector, &data)
    }

    fn status(&self, req: &Submitted) -> u8 {
        self.mem.read_obj(req.status).expect("status")
    }

    fn bytes(&self, addr: GuestAddress, len: usize) -> Vec<u8> {
        let mut buf = vec![0; len];
        self.mem.read_slice(&mut buf, addr).expect("read back");
        buf
    }

    /// The `(head, len)` pairs in the used ring.
    fn used(&self) -> Vec<(u32, u32)> {
        let used = self.queue.used();
        (0..used.idx().load())
            .map(|i| {
                let elem = used
                    .ring()
                    .ref_at(usize::from(i % super::QUEUE_SIZE))
                    .expect("used slot")
                    .load();
                (elem.id(), elem.len())
            })
            .collect()
    }

    /// The used length of `req`, which must be in the used ring.
    fn used_len(&self, req: &Submitted) -> u32 {
        self.used()
            .into_iter()
            .find(|(id, _)| *id == u32::from(req.head))
            .map(|(_, len)| len)
            .expect("request was not used")
    }
}

fn guest_memory() -> GuestMemoryMmap {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM_SIZE)]).expect("guest memory")
}

/// An activated device on `driver`'s queue.
fn activate<M: GuestMemory + Clone + Send>(
    driver: &Driver<'_, M>,
    config: BlockConfig,
) -> (Block<M>, Arc<CountingInterrupt>) {
    let mut block = Block::new(driver.mem.clone(), config).expect("device");
    let irq = Arc::new(CountingInterrupt::default());
    block
        .activate(vec![(0, driver.queue())], irq.clone())
        .expect("activate");
    (block, irq)
}

struct Setup {
    mem: GuestMemoryMmap,
    image: TempImage,
}

impl Setup {
    fn new() -> Self {
        Self {
            mem: guest_memory(),
            image: TempImage::patterned(),
        }
    }

    fn driver(&self) -> Driver<'_, GuestMemoryMmap> {
        Driver::new(&self.mem, GuestAddress(0), GuestAddress(BUFFERS))
    }
}

#[test]
fn read_spans_descriptors() {
    let setup = Setup::new();
    let mut driver = setup.driver();
    let (mut block, irq) = activate(&driver, setup.image.config());
    // 3 sectors from sector 2, split unevenly over three descriptors.
    let req = driver.read(2, &[700, 300, 536]);
    block.process_queue(0);
    assert_eq!(driver.status(&req), OK);
    assert_eq!(driver.used_len(&req), 1536 + 1);
    let got: Vec<u8> = [(0, 700), (1, 300), (2, 536)]
        .iter()
        .flat_map(|(i, len)| driver.bytes(req.data[*i], *len))
        .collect();
    let want = &setup.image.contents()[1024..1024 + 1536];
    assert_eq!(checksum(&got), checksum(want));
    assert_eq!(got, want);
    assert_eq!(irq.queue_notifications(), 1);
}

#[test]
fn write_then_read_round_trip() {
    let setup = Setup::new();
    let mut driver = setup.driver();
    let (mut block, _) = activate(&driver, setup.image.config());
    let before = setup.image.contents();
    let data = pattern(4 * SECTOR_SIZE, 0x5a);
    let write = driver.write(5, &[&data[..1000], &data[1000..1048], &data[1048..]]);
    block.process_queue(0);
    assert_eq!(driver.status(&write), OK);
    assert_eq!(driver.used_len(&write), 1);

    let after = setup.image.contents();
    let (start, end) = (5 * 512, 9 * 512);
    assert_eq!(checksum(&after[start..end]), checksum(&data));
    assert_eq!(after[..start], before[..start]);
    assert_eq!(after[end..], before[end..]);

    let read = driver.read(5, &[2048]);
    block.process_queue(0);
    assert_eq!(driver.status(&read), OK);
    assert_eq!(driver.used_len(&read), 2049);
    assert_eq!(checksum(&driver.bytes(read.data[0], 2048)), checksum(&data));
}

#[test]
fn any_layout_data_and_status_share_a_descriptor() {
    let setup = Setup::new();
    let mut driver = setup.driver();
    let (mut block, _) = activate(&driver, setup.image.config());
    // Header and write data in one descriptor, then a status descriptor.
    let data = pattern(512, 9);
    let buf = driver.alloc(16 + 512);
    let mut bytes = header(VIRTIO_BLK_T_OUT, 1).to_vec();
    bytes.extend_from_slice(&data);
    setup.mem.write_slice(&bytes, buf).expect("write");
    let status = driver.alloc(1);
    driver.add(&[(buf, 16 + 512, false), (status, 1, true)]);
    // A read whose data and status are one writable descriptor.
    let hdr = driver.alloc(16);
    setup
        .mem
        .write_slice(&header(VIRTIO_BLK_T_IN, 1), hdr)
        .expect("hdr");
    let inbuf = driver.alloc(513);
    let head = driver.add(&[(hdr, 16, false), (inbuf, 513, true)]);
    block.process_queue(0);
    assert_eq!(setup.mem.read_obj::<u8>(status).expect("status"), OK);
    assert_eq!(&setup.image.contents()[512..1024], data.as_slice());
    assert_eq!(driver.bytes(inbuf, 512), data);
    assert_eq!(driver.bytes(GuestAddress(inbuf.0 + 512), 1), [OK]);
    assert!(driver.used().contains(&(u32::from(head), 513)));
}

#[test]
fn write_to_read_only_disk_fails() {
    let setup = Setup::new();
    let mut driver = setup.driver();
    let config = BlockConfig {
        read_only: true,
        ..setup.image.config()
    };
    let (mut block, _) = activate(&driver, config);
    let before = setup.image.contents();
    let data = pattern(512, 1);
    let write = driver.write(0, &[&data]);
    let read = driver.read(0, &[512]);
    block.process_queue(0);
    assert_eq!(driver.status(&write), IOERR);
    assert_eq!(driver.used_len(&write), 1);
    assert_eq!(setup.image.contents(), before);
    // Reads still work.
    assert_eq!(driver.status(&read), OK);
    assert_eq!(driver.bytes(read.data[0], 512), before[..512]);
}

#[test]
fn flush_succeeds() {
    let setup = Setup::new();
    let mut driver = setup.driver();
    let (mut block, _) = activate(&driver, setup.image.config());
    block.set_acked_features(block.device_features());
    let flush = driver.request(VIRTIO_BLK_T_FLUSH, 0, &[]);
    block.process_queue(0);
    assert_eq!(driver.status(&flush), OK);
    assert_eq!(driver.used_len(&flush), 1);
}

#[test]
fn get_id_is_padded_and_truncated() {
    let setup = Setup::new();
    let mut driver = setup.driver();
    let config = BlockConfig {
        id: Some("serial-123".into()),
        ..setup.image.config()
    };
    let (mut block, _) = activate(&driver, config);
    let big = [0xaau8; 32];
    let whole = driver.request(VIRTIO_BLK_T_GET_ID, 0, &[(&big, true)]);
    let small = driver.request(VIRTIO_BLK_T_GET_ID, 0, &[(&[0xaa; 8], true)]);
    block.process_queue(0);

    assert_eq!(driver.status(&whole), OK);
    assert_eq!(driver.used_len(&whole), 20 + 1);
    let got = driver.bytes(whole.data[0], 32);
    assert_eq!(&got[..10], b"serial-123");
    assert_eq!(&got[10..20], &[0; 10]);
    assert_eq!(&got[20..], &[0xaa; 12], "bytes past the ID are left alone");

    assert_eq!(driver.status(&small), OK);
    assert_eq!(driver.used_len(&small), 8 + 1);
    assert_eq!(driver.bytes(small.data[0], 8), b"serial-1");
}

#[test]
fn default_id_is_the_file_name() {
    let setup = Setup::new();
    let driver = setup.driver();
    let (block, _) = activate(&driver, setup.image.config());
    let name = setup
        .image
        .path
        .file_name()
        .expect("name")
        .to_string_lossy();
    let name = name.as_bytes();
    let n = name.len().min(20);
    assert_eq!(&block.id()[..n], &name[..n]);
}

#[test]
fn out_of_range_sectors_fail() {
    let setup = Setup::new();
    let mut driver = setup.driver();
    let (mut block, _) = activate(&driver, setup.image.config());
    let before = setup.image.contents();
    let data = pattern(1024, 2);
    let past_end = driver.read(SECTORS - 1, &[1024]);
    let write_past_end = driver.write(SECTORS - 1, &[&data]);
    let overflow = driver.read(u64::MAX, &[512]);
    let at_end = driver.read(SECTORS, &[512]);
    let last = driver.read(SECTORS - 1, &[512]);
    block.process_queue(0);
    for req in [&past_end, &write_past_end, &overflow, &at_end] {
        assert_eq!(driver.status(req), IOERR);
        assert_eq!(driver.used_len(req), 1);
    }
    assert_eq!(driver.bytes(past_end.data[0], 1024), vec![0xee; 1024]);
    assert_eq!(setup.image.contents(), before);
    assert_eq!(driver.status(&last), OK);
}

#[test]
fn partial_sector_length_fails() {
    let setup = Setup::new();
    let mut driver = setup.driver();
    let (mut block, _) = activate(&driver, setup.image.config());
    let before = setup.image.contents();
    let read = driver.read(0, &[100]);
    let write = driver.write(0, &[&[1u8; 700]]);
    block.process_queue(0);
    assert_eq!(driver.status(&read), IOERR);
    assert_eq!(driver.status(&write), IOERR);
    assert_eq!(setup.image.contents(), before);
}

#[test]
fn unknown_types_are_unsupported() {
    let setup = Setup::new();
    let mut driver = setup.driver();
    let (mut block, _) = activate(&driver, setup.image.config());
    let reqs: Vec<Submitted> = [0x1234, VIRTIO_BLK_T_DISCARD, VIRTIO_BLK_T_WRITE_ZEROES]
        .into_iter()
        .map(|kind| driver.request(kind, 0, &[(&[0u8; 16], false)]))
        .collect();
    block.process_queue(0);
    for req in &reqs {
        assert_eq!(driver.status(req), UNSUPP);
        assert_eq!(driver.used_len(req), 1);
    }
}

#[test]
fn wrong_data_direction_fails() {
    let setup = Setup::new();
    let mut driver = setup.driver();
    let (mut block, _) = activate(&driver, setup.image.config());
    let before = setup.image.contents();
    let read_from_readable = driver.request(VIRTIO_BLK_T_IN, 0, &[(&[0u8; 512], false)]);
    let write_to_writable = driver.request(VIRTIO_BLK_T_OUT, 0, &[(&[7u8; 512], true)]);
    let id_readable = driver.request(VIRTIO_BLK_T_GET_ID, 0, &[(&[0u8; 20], false)]);
    block.process_queue(0);
    assert_eq!(driver.status(&read_from_readable), IOERR);
    assert_eq!(driver.bytes(read_from_readable.data[0], 512), vec![0; 512]);
    assert_eq!(driver.status(&write_to_writable), IOERR);
    assert_eq!(driver.status(&id_readable), IOERR);
    assert_eq!(setup.image.contents(), before);
}

#[test]
fn malformed_chains_do_not_wedge_the_queue() {
    let setup = Setup::new();
    let mut driver = setup.driver();
    let (mut block, irq) = activate(&driver, setup.image.config());
    let hdr = driver.alloc(16);
    setup
        .mem
        .write_slice(&header(VIRTIO_BLK_T_IN, 0), hdr)
        .expect("hdr");
    let data = driver.alloc(512);
    let ro_status = driver.alloc(1);
    setup.mem.write_obj(0x77u8, ro_status).expect("status");

    // No status at all.
    let no_status = driver.add(&[(hdr, 16, false)]);
    // Status descriptor is device-readable.
    let readonly_status = driver.add(&[(hdr, 16, false), (data, 512, true), (ro_status, 1, false)]);
    // Status outside guest memory.
    let unmapped_status = driver.add(&[(hdr, 16, false), (GuestAddress(1 << 40), 1, true)]);
    // Header too short: reported through the (valid) status.
    let short = driver.alloc(8);
    let short_status = driver.alloc(1);
    let short_head = driver.add(&[(short, 8, false), (short_status, 1, true)]);
    // Header outside guest memory.
    let bad_hdr_status = driver.alloc(1);
    let bad_hdr = driver.add(&[
        (GuestAddress(1 << 40), 16, false),
        (bad_hdr_status, 1, true),
    ]);
    // Data buffer outside guest memory.
    let bad_data_status = driver.alloc(1);
    let bad_data = driver.add(&[
        (hdr, 16, false),
        (GuestAddress(1 << 40), 512, true),
        (bad_data_status, 1, true),
    ]);
    // Readable after writable.
    let misordered_status = driver.alloc(1);
    let misordered = driver.add(&[
        (data, 512, true),
        (hdr, 16, false),
        (misordered_status, 1, true),
    ]);
    // And a good request after all that.
    let good = driver.read(0, &[512]);
    block.process_queue(0);

    let used = driver.used();
    assert_eq!(used.len(), 8, "every chain is returned");
    for head in [no_status, readonly_status, unmapped_status] {
        assert!(used.contains(&(u32::from(head), 0)), "chain {head} dropped");
    }
    assert_eq!(setup.mem.read_obj::<u8>(ro_status).expect("read"), 0x77);
    for (head, status) in [
        (short_head, short_status),
        (bad_hdr, bad_hdr_status),
        (bad_data, bad_data_status),
        (misordered, misordered_status),
    ] {
        assert!(used.contains(&(u32::from(head), 1)), "chain {head}");
        assert_eq!(setup.mem.read_obj::<u8>(status).expect("read"), IOERR);
    }
    assert_eq!(driver.status(&good), OK);
    assert_eq!(irq.queue_notifications(), 1);
}

#[test]
fn drains_everything_with_one_notification() {
    let setup = Setup::new();
    let mut driver = setup.driver();
    let (mut block, irq) = activate(&driver, setup.image.config());
    let data = pattern(512, 4);
    let reqs = [
        driver.read(0, &[512]),
        driver.write(1, &[&data]),
        driver.request(VIRTIO_BLK_T_FLUSH, 0, &[]),
        driver.read(1, &[512]),
    ];
    block.process_queue(0);
    let heads: Vec<u32> = driver.used().iter().map(|(id, _)| *id).collect();
    let want: Vec<u32> = reqs.iter().map(|r| u32::from(r.head)).collect();
    assert_eq!(heads, want, "completed in order");
    assert!(reqs.iter().all(|r| driver.status(r) == OK));
    assert_eq!(driver.bytes(reqs[3].data[0], 512), data);
    assert_eq!(irq.queue_notifications(), 1);
    // Nothing new: no notification.
    block.process_queue(0);
    assert_eq!(irq.queue_notifications(), 1);
}

/// With EVENT_IDX the device interrupts only when its used index passes
/// the driver's `used_event`, and asks for a kick at the next available
/// entry through `avail_event`.
#[test]
fn event_idx_suppresses_interrupts_the_driver_does_not_want() {
    let setup = Setup::new();
    let mut driver = setup.driver();
    let mut block = Block::new(setup.mem.clone(), setup.image.config()).expect("device");
    block.set_acked_features(block.device_features());
    let mut queue = driver.queue();
    queue.set_event_idx(true);
    let irq = Arc::new(CountingInterrupt::default());
    block
        .activate(vec![(0, queue)], irq.clone())
        .expect("activate");
    let size = u64::from(super::QUEUE_SIZE);
    // used_event sits after the available ring's entries.
    let used_event = driver.queue.avail_addr().unchecked_add(4 + 2 * size);
    let avail_event = driver.queue.used_addr().unchecked_add(4 + 8 * size);

    // The driver wants an interrupt only once entry 3 is used.
    setup.mem.write_obj(3u16, used_event).expect("used_event");
    let first = [driver.read(0, &[512]), driver.read(1, &[512])];
    block.process_queue(0);
    assert!(first.iter().all(|r| driver.status(r) == OK));
    assert_eq!(irq.queue_notifications(), 0, "entries 0-1 used: not wanted");
    let next: u16 = setup.mem.read_obj(avail_event).expect("avail_event");
    assert_eq!(next, 2, "the next kick is wanted at entry 2");

    let second = [driver.read(2, &[512]), driver.read(3, &[512])];
    block.process_queue(0);
    assert!(second.iter().all(|r| driver.status(r) == OK));
    assert_eq!(irq.queue_notifications(), 1, "entry 3 used: interrupt");
}

#[test]
fn config_space_and_features() {
    let setup = Setup::new();
    let mut block = Block::new(setup.mem.clone(), setup.image.config()).expect("device");
    assert_eq!(block.device_type(), 2);
    assert_eq!(block.queue_max_sizes(), &[256]);

    let mut capacity = [0u8; 8];
    block.read_config(0, &mut capacity);
    assert_eq!(u64::from_le_bytes(capacity), SECTORS);
    let mut blk_size = [0u8; 4];
    block.read_config(20, &mut blk_size);
    assert_eq!(u32::from_le_bytes(blk_size), 512);
    let mut seg_max = [0u8; 4];
    block.read_config(12, &mut seg_max);
    assert_eq!(u32::from_le_bytes(seg_max), 254);
    // Partial reads and reads past the end.
    let mut low = [0u8; 2];
    block.read_config(0, &mut low);
    assert_eq!(u16::from_le_bytes(low), SECTORS as u16);
    let mut past = [0xffu8; 8];
    block.read_config(0x1000, &mut past);
    assert_eq!(past, [0; 8]);
    // Writes are ignored.
    block.write_config(0, &[1, 2, 3, 4]);
    block.read_config(0, &mut capacity);
    assert_eq!(u64::from_le_bytes(capacity), SECTORS);

    let base = VIRTIO_F_VERSION_1
        | 1 << VIRTIO_RING_F_EVENT_IDX
        | 1 << VIRTIO_BLK_F_FLUSH
        | 1 << VIRTIO_BLK_F_SEG_MAX
        | 1 << VIRTIO_BLK_F_BLK_SIZE;
    assert_eq!(block.device_features(), base);

    let ro_iommu = Block::new(
        setup.mem.clone(),
        BlockConfig {
            read_only: true,
            iommu: true,
            ..setup.image.config()
        },
    )
    .expect("device");
    assert_eq!(
        ro_iommu.device_features(),
        base | 1 << VIRTIO_BLK_F_RO | VIRTIO_F_ACCESS_PLATFORM
    );
}

#[test]
fn open_errors_name_the_file() {
    let missing = std::env::temp_dir().join("minivmm-virtio-blk-does-not-exist.img");
    let err = Block::new(
        guest_memory(),
        BlockConfig {
            path: missing.clone(),
            ..Default::default()
        },
    )
    .err()
    .expect("missing image");
    assert!(matches!(err, DiskError::Open { .. }));
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!("cannot open disk image '{}': ", missing.display())),
        "{msg}"
    );

    let odd = TempImage::with_contents(&[0; 1000]);
    let err = Block::new(guest_memory(), odd.config())
        .err()
        .expect("odd size");
    assert!(matches!(err, DiskError::PartialSector { size: 1000, .. }));
    assert!(err.to_string().contains(&odd.path.display().to_string()));

    let dir = Block::new(
        guest_memory(),
        BlockConfig {
            path: std::env::temp_dir(),
            read_only: true,
            ..Default::default()
        },
    );
    assert!(matches!(dir.err(), Some(DiskError::Directory { .. })));
}

#[test]
fn activation_and_reset() {
    let setup = Setup::new();
    let mut driver = setup.driver();
    let mut block = Block::new(setup.mem.clone(), setup.image.config()).expect("device");
    let irq = Arc::new(CountingInterrupt::default());
    let err = block.activate(vec![(1, driver.queue())], irq.clone());
    assert!(matches!(err, Err(ActivateError::MissingQueue(0))));
    // Not activated: notifications are ignored.
    let req = driver.read(0, &[512]);
    block.process_queue(0);
    assert!(driver.used().is_empty());

    block
        .activate(vec![(0, driver.queue())], irq.clone())
        .expect("activate");
    block.process_queue(1);
    assert!(driver.used().is_empty());
    block.process_queue(0);
    assert_eq!(driver.status(&req), OK);

    block.reset();
    driver.read(0, &[512]);
    block.process_queue(0);
    assert_eq!(driver.used().len(), 1, "a reset device uses nothing");
    assert_eq!(irq.queue_notifications(), 1);
}

/// An IOMMU whose mappings are set up front in its IOTLB.
#[derive(Debug, Default)]
struct TestIommu {
    iotlb: RwLock<Iotlb>,
}

impl TestIommu {
    fn map(&self, iova: u64, gpa: u64, len: usize, perm: Permissions) {
        self.iotlb
            .write()
            .expect("iotlb")
            .set_mapping(GuestAddress(iova), GuestAddress(gpa), len, perm)
            .expect("map");
    }
}

impl Iommu for TestIommu {
    type IotlbGuard<'a> = RwLockReadGuard<'a, Iotlb>;

    fn translate(
        &self,
        iova: GuestAddress,
        length: usize,
        access: Permissions,
    ) -> Result<IotlbIterator<Self::IotlbGuard<'_>>, IommuError> {
        let iotlb = self
            .iotlb
            .read()
            .map_err(|_| IommuError::IommuMisconfigured {
                reason: "poisoned".into(),
            })?;
        Iotlb::lookup(iotlb, iova, length, access).map_err(|_| IommuError::CannotResolve {
            iova_range: IovaRange { base: iova, length },
            reason: "not mapped for this access".into(),
        })
    }
}

/// IOVA window mapped read-write onto the first 8 MiB of guest memory.
const IOVA_BASE: u64 = 0x4000_0000;
/// IOVA page mapped read-only onto guest page 0x80_0000.
const IOVA_RO: u64 = 0x5000_0000;
/// IOVA with no mapping.
const IOVA_UNMAPPED: u64 = 0x6000_0000;

#[test]
fn works_through_an_iommu() {
    let phys = guest_memory();
    let iommu = TestIommu::default();
    iommu.map(IOVA_BASE, 0, 0x80_0000, Permissions::ReadWrite);
    iommu.map(IOVA_RO, 0x80_0000, 0x1000, Permissions::Read);
    let mem = IommuMemory::new(phys.clone(), iommu, true, ());
    let image = TempImage::patterned();
    let mut driver = Driver::new(
        &mem,
        GuestAddress(IOVA_BASE),
        GuestAddress(IOVA_BASE + BUFFERS),
    );
    let (mut block, irq) = activate(
        &driver,
        BlockConfig {
            iommu: true,
            ..image.config()
        },
    );
    assert_ne!(block.device_features() & VIRTIO_F_ACCESS_PLATFORM, 0);
    let before = image.contents();

    let data = pattern(1024, 0x33);
    let write = driver.write(3, &[&data[..512], &data[512..]]);
    let read = driver.read(3, &[1024]);
    block.process_queue(0);
    assert_eq!(driver.status(&write), OK);
    assert_eq!(driver.status(&read), OK);
    assert_eq!(&image.contents()[3 * 512..5 * 512], data.as_slice());
    // The data landed at the translated (physical) address.
    let gpa = GuestAddress(read.data[0].0 - IOVA_BASE);
    let mut landed = vec![0u8; 1024];
    phys.read_slice(&mut landed, gpa).expect("phys");
    assert_eq!(checksum(&landed), checksum(&data));
    let after_good = image.contents();

    // Buffers the IOMMU cannot translate for the needed access.
    let hdr = driver.alloc(16);
    mem.write_slice(&header(VIRTIO_BLK_T_IN, 0), hdr)
        .expect("hdr");
    let mut failing = Vec::new();
    for data in [
        (GuestAddress(IOVA_UNMAPPED), 512, true),
        (GuestAddress(IOVA_RO), 512, true),
    ] {
        let status = driver.alloc(1);
        let head = driver.add(&[(hdr, 16, false), data, (status, 1, true)]);
        failing.push((head, status));
    }
    let out_hdr = driver.alloc(16);
    mem.write_slice(&header(VIRTIO_BLK_T_OUT, 0), out_hdr)
        .expect("hdr");
    let status = driver.alloc(1);
    let head = driver.add(&[
        (out_hdr, 16, false),
        (GuestAddress(IOVA_UNMAPPED), 512, false),
        (status, 1, true),
    ]);
    failing.push((head, status));
    // A status byte that cannot be translated: dropped.
    let dropped = driver.add(&[(hdr, 16, false), (GuestAddress(IOVA_RO + 8), 1, true)]);
    block.process_queue(0);

    let used = driver.used();
    for (head, status) in failing {
        assert_eq!(mem.read_obj::<u8>(status).expect("status"), IOERR);
        assert!(used.contains(&(u32::from(head), 1)), "chain {head}");
    }
    assert!(used.contains(&(u32::from(dropped), 0)));
    assert_eq!(image.contents(), after_good);
    assert_ne!(after_good, before);
    assert_eq!(irq.queue_notifications(), 2);
}

#[test]
fn counters_count_completed_requests_and_bytes() {
    let setup = Setup::new();
    let mut driver = setup.driver();
    let config = BlockConfig {
        read_only: true,
        ..setup.image.config()
    };
    let (mut block, _) = activate(&driver, config);
    let counters = block.counters();
    let read = driver.read(0, &[700, 324]);
    let refused = driver.write(0, &[&pattern(512, 3)]);
    block.process_queue(0);
    assert_eq!((driver.status(&read), driver.status(&refused)), (OK, IOERR));
    let flush = driver.request(VIRTIO_BLK_T_FLUSH, 0, &[]);
    block.process_queue(0);
    assert_eq!(driver.status(&flush), OK);
    assert_eq!(
        counters.snapshot(),
        BlockCounts {
            read_ops: 1,
            read_bytes: 1024,
            write_ops: 0,
            write_bytes: 0,
            flush_ops: 1,
            errors: 1,
        }
    );

    let setup = Setup::new();
    let mut driver = setup.driver();
    let (mut writable, _) = activate(&driver, setup.image.config());
    let write = driver.write(1, &[&pattern(1536, 4)]);
    writable.process_queue(0);
    assert_eq!(driver.status(&write), OK);
    let c = writable.counters().snapshot();
    assert_eq!((c.write_ops, c.write_bytes), (1, 1536));
}

#[test]
fn an_avail_index_too_far_ahead_breaks_the_queue_until_reset() {
    let setup = Setup::new();
    let mut driver = setup.driver();
    let (mut block, irq) = activate(&driver, setup.image.config());
    let first = driver.read(0, &[512]);
    driver
        .queue
        .avail()
        .idx()
        .store(super::QUEUE_SIZE.wrapping_add(7));
    block.process_queue(0);
    block.process_queue(0);
    assert_eq!(irq.broken.load(Ordering::SeqCst), 1, "reported once");
    assert!(
        driver.used().is_empty(),
        "nothing served from a broken ring"
    );
    assert_eq!(driver.status(&first), 0xff);
    // The driver resets the device and sets the queue up again.
    block.reset();
    let mut driver = setup.driver();
    let (mut block, irq) = {
        block
            .activate(vec![(0, driver.queue())], irq.clone())
            .expect("activate");
        (block, irq)
    };
    let req = driver.read(0, &[512]);
    block.process_queue(0);
    assert_eq!(driver.status(&req), OK);
    assert_eq!(irq.broken.load(Ordering::SeqCst), 1);
}

#[test]
fn indirect_chains_are_refused_without_the_feature() {
    use virtio_bindings::virtio_ring::VRING_DESC_F_INDIRECT;
    let setup = Setup::new();
    let mut driver = setup.driver();
    let (mut block, irq) = activate(&driver, setup.image.config());
    assert_eq!(
        block.device_features() & (1 << 28),
        0,
        "INDIRECT_DESC not offered"
    );
    let before = setup.image.contents();
    // An indirect table describing a valid write of one sector.
    let hdr = driver.alloc(16);
    setup
        .mem
        .write_slice(&header(VIRTIO_BLK_T_OUT, 0), hdr)
        .expect("hdr");
    let data = driver.alloc(512);
    setup.mem.write_slice(&[0x5a; 512], data).expect("data");
    let status = driver.alloc(1);
    setup.mem.write_obj(0xffu8, status).expect("status");
    let table = driver.alloc(48);
    let entries = [
        SplitDescriptor::new(hdr.0, 16, VRING_DESC_F_NEXT as u16, 1),
        SplitDescriptor::new(data.0, 512, VRING_DESC_F_NEXT as u16, 2),
        SplitDescriptor::new(status.0, 1, VRING_DESC_F_WRITE as u16, 0),
    ];
    for (i, e) in entries.iter().enumerate() {
        setup
            .mem
            .write_obj(RawDescriptor::from(*e), table.unchecked_add(16 * i as u64))
            .expect("table");
    }
    let head = driver.next_desc;
    driver.next_desc += 1;
    driver
        .queue
        .desc_table()
        .store(
            head,
            RawDescriptor::from(SplitDescriptor::new(
                table.0,
                48,
                VRING_DESC_F_INDIRECT as u16,
                0,
            )),
        )
        .expect("desc");
    let avail = driver.queue.avail();
    let idx = avail.idx().load();
    avail
        .ring()
        .ref_at(usize::from(idx))
        .expect("slot")
        .store(head);
    avail.idx().store(idx + 1);
    let good = driver.read(0, &[512]);
    block.process_queue(0);
    assert!(driver.used().contains(&(u32::from(head), 0)));
    assert_eq!(setup.mem.read_obj::<u8>(status).expect("status"), 0xff);
    assert_eq!(setup.image.contents(), before, "the write was not executed");
    assert_eq!(driver.status(&good), OK, "the queue goes on");
    assert_eq!(irq.broken.load(Ordering::SeqCst), 0);
}

#[test]
fn rings_outside_memory_are_refused_at_activation() {
    use virtio_queue::QueueT;
    let setup = Setup::new();
    let mut queue = Queue::new(super::QUEUE_SIZE).expect("queue");
    queue.set_desc_table_address(Some(0x1000), Some(0));
    queue.set_avail_ring_address(Some(0x3000), Some(0));
    // The used ring starts in RAM and runs past its end.
    queue.set_used_ring_address(Some(MEM_SIZE as u32 - 0x100), Some(0));
    queue.set_ready(true);
    let mut block = Block::new(setup.mem.clone(), setup.image.config()).expect("device");
    let irq = Arc::new(CountingInterrupt::default());
    let err = block.activate(vec![(0, queue)], irq);
    assert!(
        matches!(
            err,
            Err(ActivateError::Ring {
                queue: 0,
                ring: "used ring",
                ..
            })
        ),
        "{err:?}"
    );
}
