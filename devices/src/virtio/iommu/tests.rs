//! Queue-level tests of the virtio-iommu device: requests go through real
//! split virtqueues (virtio-queue's mock driver side) and DMA through
//! `IommuMemory`, checking exact status bytes, used lengths, PROBE and
//! fault-record bytes.

use std::sync::{Arc, Mutex};

use virtio_queue::desc::split::Descriptor as SplitDescriptor;
use virtio_queue::desc::RawDescriptor;
use virtio_queue::mock::MockSplitQueue;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap, IommuMemory};

use super::protocol::*;
use super::testing::FakeDma;
use super::*;
use crate::virtio::{VirtioDevice, VirtioInterrupt};

mod cache;
mod host;

const QUEUE_LEN: u16 = 64;
const EVQ_BASE: u64 = 0x8000;
/// Used rings, away from the avail rings: virtio-queue's mock places the
/// used ring from the avail ring's entry count rather than its size, over
/// the upper half of the avail ring.
const REQ_USED: u64 = 0x4000;
const EVQ_USED: u64 = 0xc000;
const BUF_BASE: u64 = 0x10_0000;
/// Guest-physical target of test DMA.
const TARGET: u64 = 0x80_0000;
const MSI: ReservedRegion = ReservedRegion {
    start: 0xfee0_0000,
    end: 0xfeef_ffff,
    kind: ReservedKind::Msi,
};

#[derive(Default)]
struct RecordingInterrupt {
    queues: Mutex<Vec<u16>>,
}

impl RecordingInterrupt {
    fn take(&self) -> Vec<u16> {
        std::mem::take(&mut *self.queues.lock().expect("lock"))
    }
}

impl VirtioInterrupt for RecordingInterrupt {
    fn notify_queue(&self, queue: u16) {
        self.queues.lock().expect("lock").push(queue);
    }
    fn notify_config(&self) {}
}

fn guest_memory() -> GuestMemoryMmap {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x100_0000)]).expect("guest memory")
}

fn config() -> IommuConfig {
    IommuConfig {
        endpoints: vec![
            EndpointConfig {
                id: 8,
                reserved: vec![MSI],
            },
            EndpointConfig {
                id: 9,
                reserved: vec![],
            },
        ],
        domain_range: 1..=100,
        ..Default::default()
    }
}

// Request encoders (little endian, as on the wire).
fn attach(domain: u32, endpoint: u32, flags: u32) -> Vec<u8> {
    let mut v = vec![VIRTIO_IOMMU_T_ATTACH, 0, 0, 0];
    v.extend(domain.to_le_bytes());
    v.extend(endpoint.to_le_bytes());
    v.extend(flags.to_le_bytes());
    v.extend([0; 4]);
    v
}

fn detach(domain: u32, endpoint: u32) -> Vec<u8> {
    let mut v = vec![VIRTIO_IOMMU_T_DETACH, 0, 0, 0];
    v.extend(domain.to_le_bytes());
    v.extend(endpoint.to_le_bytes());
    v.extend([0; 8]);
    v
}

fn map(domain: u32, start: u64, end: u64, phys: u64, flags: u32) -> Vec<u8> {
    let mut v = vec![VIRTIO_IOMMU_T_MAP, 0, 0, 0];
    v.extend(domain.to_le_bytes());
    v.extend(start.to_le_bytes());
    v.extend(end.to_le_bytes());
    v.extend(phys.to_le_bytes());
    v.extend(flags.to_le_bytes());
    v
}

fn unmap(domain: u32, start: u64, end: u64) -> Vec<u8> {
    let mut v = vec![VIRTIO_IOMMU_T_UNMAP, 0, 0, 0];
    v.extend(domain.to_le_bytes());
    v.extend(start.to_le_bytes());
    v.extend(end.to_le_bytes());
    v.extend([0; 4]);
    v
}

fn probe(endpoint: u32) -> Vec<u8> {
    let mut v = vec![VIRTIO_IOMMU_T_PROBE, 0, 0, 0];
    v.extend(endpoint.to_le_bytes());
    v.extend([0; 64]);
    v
}

const RW: u32 = VIRTIO_IOMMU_MAP_F_READ | VIRTIO_IOMMU_MAP_F_WRITE;
const OK: u8 = Status::Ok as u8;
const INVAL: u8 = Status::Inval as u8;
const RANGE: u8 = Status::Range as u8;
const NOENT: u8 = Status::NoEnt as u8;

/// Plays the driver: builds chains in two mock split queues and reads the
/// used rings.
struct Harness<'a> {
    mem: &'a GuestMemoryMmap,
    reqq: MockSplitQueue<'a, GuestMemoryMmap>,
    evq: MockSplitQueue<'a, GuestMemoryMmap>,
    dev: VirtioIommu,
    irq: Arc<RecordingInterrupt>,
    next_req_desc: u16,
    next_ev_desc: u16,
    req_used_seen: u16,
    next_buf: u64,
}

impl<'a> Harness<'a> {
    fn new(mem: &'a GuestMemoryMmap, config: IommuConfig, features: u64) -> Self {
        Self::with_backend(mem, config, features, None)
    }

    fn with_backend(
        mem: &'a GuestMemoryMmap,
        config: IommuConfig,
        features: u64,
        backend: Option<HostDma>,
    ) -> Self {
        let reqq = MockSplitQueue::create(mem, GuestAddress(0), QUEUE_LEN);
        let evq = MockSplitQueue::create(mem, GuestAddress(EVQ_BASE), QUEUE_LEN);
        let mut dev = VirtioIommu::new(config, mem.clone(), backend).expect("device");
        dev.set_acked_features(features);
        let irq = Arc::new(RecordingInterrupt::default());
        let queue = |mock: &MockSplitQueue<'a, GuestMemoryMmap>, used: u64| {
            let mut q = mock.create_queue::<Queue>().expect("queue");
            q.set_used_ring_address(Some(used as u32), Some(0));
            q
        };
        let queues = vec![
            (REQUEST_QUEUE, queue(&reqq, REQ_USED)),
            (EVENT_QUEUE, queue(&evq, EVQ_USED)),
        ];
        dev.activate(queues, irq.clone()).expect("activate");
        Self {
            mem,
            reqq,
            evq,
            dev,
            irq,
            next_req_desc: 0,
            next_ev_desc: 0,
            req_used_seen: 0,
            next_buf: BUF_BASE,
        }
    }

    /// After a device reset: empty rings, features negotiated again, the
    /// queues activated again.
    fn reactivate(&mut self, features: u64) {
        for ring in [
            self.reqq.avail_addr().0,
            REQ_USED,
            self.evq.avail_addr().0,
            EVQ_USED,
        ] {
            self.mem
                .write_obj(0u32, GuestAddress(ring))
                .expect("ring header");
        }
        self.next_req_desc = 0;
        self.next_ev_desc = 0;
        self.req_used_seen = 0;
        let queue = |mock: &MockSplitQueue<'a, GuestMemoryMmap>, used: u64| {
            let mut q = mock.create_queue::<Queue>().expect("queue");
            q.set_used_ring_address(Some(used as u32), Some(0));
            q
        };
        let queues = vec![
            (REQUEST_QUEUE, queue(&self.reqq, REQ_USED)),
            (EVENT_QUEUE, queue(&self.evq, EVQ_USED)),
        ];
        self.dev.set_acked_features(features);
        self.dev
            .activate(queues, self.irq.clone())
            .expect("activate");
    }

    /// Buffer space for `len` bytes filled with `fill`. Space is reused
    /// after 4 MiB: tests that run long process each request before the
    /// next.
    fn alloc(&mut self, len: u32, fill: u8) -> u64 {
        if self.next_buf + u64::from(len) > BUF_BASE + 0x40_0000 {
            self.next_buf = BUF_BASE;
        }
        let addr = self.next_buf;
        self.next_buf += u64::from(len).max(1).next_multiple_of(16);
        self.mem
            .write_slice(&vec![fill; len as usize], GuestAddress(addr))
            .expect("fill");
        addr
    }

    fn push_chain(
        q: &MockSplitQueue<'a, GuestMemoryMmap>,
        next_desc: &mut u16,
        bufs: &[(u64, u32, bool)],
    ) {
        // Descriptors are reused from the start of the table when a chain
        // would run off its end.
        if usize::from(*next_desc) + bufs.len() > usize::from(QUEUE_LEN) {
            *next_desc = 0;
        }
        let head = *next_desc;
        for (i, &(addr, len, write)) in bufs.iter().enumerate() {
            let idx = head + i as u16;
            let mut flags = if write { 2 } else { 0 };
            if i + 1 < bufs.len() {
                flags |= 1;
            }
            let desc = SplitDescriptor::new(addr, len, flags, idx + 1);
            q.desc_table()
                .store(idx, RawDescriptor::from(desc))
                .expect("desc");
        }
        *next_desc += bufs.len() as u16;
        let avail_idx = q.avail().idx().load();
        q.avail()
            .ring()
            .ref_at(usize::from(avail_idx % QUEUE_LEN))
            .expect("avail slot")
            .store(head);
        q.avail().idx().store(avail_idx.wrapping_add(1));
    }

    /// Queues a request with `writable` bytes (pre-filled with 0xaa) for
    /// the device; returns the writable buffer's address.
    fn submit(&mut self, readable: &[u8], writable: u32) -> u64 {
        let mut bufs = Vec::new();
        if !readable.is_empty() {
            let r = self.alloc(readable.len() as u32, 0);
            self.mem
                .write_slice(readable, GuestAddress(r))
                .expect("request");
            bufs.push((r, readable.len() as u32, false));
        }
        let w = self.alloc(writable, 0xaa);
        if writable > 0 {
            bufs.push((w, writable, true));
        }
        Self::push_chain(&self.reqq, &mut self.next_req_desc, &bufs);
        w
    }

    /// Entry `i` (head, length) of the used ring at `ring`.
    fn used_entry(&self, ring: u64, i: u16) -> (u32, u32) {
        let at = ring + 4 + 8 * u64::from(i % QUEUE_LEN);
        let id: u32 = self.mem.read_obj(GuestAddress(at)).expect("used id");
        let len: u32 = self.mem.read_obj(GuestAddress(at + 4)).expect("used len");
        (id, len)
    }

    /// Used-ring entries added since the last call: (head, length).
    fn used(&mut self) -> Vec<(u32, u32)> {
        let idx: u16 = self
            .mem
            .read_obj(GuestAddress(REQ_USED + 2))
            .expect("used idx");
        let mut out = Vec::new();
        while self.req_used_seen != idx {
            out.push(self.used_entry(REQ_USED, self.req_used_seen));
            self.req_used_seen = self.req_used_seen.wrapping_add(1);
        }
        out
    }

    fn byte(&self, addr: u64) -> u8 {
        self.mem.read_obj(GuestAddress(addr)).expect("read")
    }

    fn bytes(&self, addr: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        self.mem
            .read_slice(&mut v, GuestAddress(addr))
            .expect("read");
        v
    }

    /// Sends one request with a 4-byte tail; returns the status after
    /// checking the used length and the tail's reserved bytes.
    fn request(&mut self, req: &[u8]) -> u8 {
        let w = self.submit(req, 4);
        self.dev.process_queue(REQUEST_QUEUE);
        let used = self.used();
        assert_eq!(used.len(), 1);
        assert_eq!(used[0].1, 4, "used length of a tail-only reply");
        assert_eq!(self.bytes(w + 1, 3), vec![0, 0, 0], "tail reserved bytes");
        self.byte(w)
    }

    fn add_event_buffer(&mut self, len: u32) -> u64 {
        let w = self.alloc(len, 0xaa);
        Self::push_chain(&self.evq, &mut self.next_ev_desc, &[(w, len, true)]);
        w
    }

    fn events_used(&self) -> Vec<(u32, u32)> {
        let idx: u16 = self
            .mem
            .read_obj(GuestAddress(EVQ_USED + 2))
            .expect("used idx");
        (0..idx).map(|i| self.used_entry(EVQ_USED, i)).collect()
    }

    fn dma(&self, endpoint: u32) -> IommuMemory<GuestMemoryMmap, EndpointIommu> {
        let t = self.dev.translator(endpoint).expect("translator");
        IommuMemory::new(self.mem.clone(), t, true, ())
    }
}

fn all_features() -> u64 {
    let mem = guest_memory();
    VirtioIommu::new(config(), mem, None)
        .expect("device")
        .device_features()
}

#[test]
fn offered_features_and_queues() {
    let mem = guest_memory();
    let dev = VirtioIommu::new(config(), mem, None).expect("device");
    assert_eq!(dev.device_type(), 23);
    assert_eq!(dev.queue_max_sizes(), &[256, 256]);
    assert_eq!(
        dev.device_features(),
        crate::virtio::VIRTIO_F_VERSION_1 | 0b111_0111,
        "VERSION_1, INPUT_RANGE, DOMAIN_RANGE, MAP_UNMAP, PROBE, MMIO, BYPASS_CONFIG; not BYPASS"
    );
}

#[test]
fn config_space_bytes_and_bypass_writes() {
    let mem = guest_memory();
    let mut h = Harness::new(&mem, config(), 0);
    let mut cfg = [0xffu8; 44];
    h.dev.read_config(0, &mut cfg);
    let mut expected = Vec::new();
    expected.extend(0xffff_ffff_ffff_f000u64.to_le_bytes());
    expected.extend(0u64.to_le_bytes());
    expected.extend(u64::MAX.to_le_bytes());
    expected.extend(1u32.to_le_bytes());
    expected.extend(100u32.to_le_bytes());
    expected.extend(512u32.to_le_bytes());
    expected.extend([1, 0, 0, 0]); // bypass = 1 at boot
    expected.extend([0; 4]); // past the end
    assert_eq!(cfg.to_vec(), expected);

    let mut b = [0u8; 1];
    // Not negotiated: the write is ignored.
    h.dev.write_config(CONFIG_BYPASS_OFFSET, &[0]);
    h.dev.read_config(CONFIG_BYPASS_OFFSET, &mut b);
    assert_eq!(b, [1]);
    h.dev.set_acked_features(VIRTIO_IOMMU_F_BYPASS_CONFIG);
    h.dev.write_config(CONFIG_BYPASS_OFFSET, &[0]);
    h.dev.read_config(CONFIG_BYPASS_OFFSET, &mut b);
    assert_eq!(b, [0]);
    // Only 0 and 1 are valid; other fields are read-only.
    h.dev.write_config(CONFIG_BYPASS_OFFSET, &[3]);
    h.dev.write_config(0, &[0; 8]);
    h.dev.write_config(32, &[0; 4]);
    h.dev.read_config(CONFIG_BYPASS_OFFSET, &mut b);
    assert_eq!(b, [0]);
    h.dev.read_config(32, &mut b);
    assert_eq!(b, [0x00], "probe_size low byte (512 = 0x200)");
    h.dev.read_config(33, &mut b);
    assert_eq!(b, [0x02]);
    h.dev.read_config(u64::MAX, &mut b);
    assert_eq!(b, [0]);
}

#[test]
fn attach_map_translate_unmap() {
    let mem = guest_memory();
    let mut h = Harness::new(&mem, config(), all_features());
    assert_eq!(h.request(&attach(1, 8, 0)), OK);
    assert_eq!(h.request(&map(1, 0x1000, 0x2fff, TARGET, RW)), OK);
    let dma = h.dma(8);
    dma.write_obj(0xdead_beefu32, GuestAddress(0x1ffe))
        .expect("write across the page boundary");
    assert_eq!(
        mem.read_obj::<u32>(GuestAddress(TARGET + 0xffe))
            .expect("read"),
        0xdead_beef
    );
    assert_eq!(
        dma.read_obj::<u32>(GuestAddress(0x1ffe)).ok(),
        Some(0xdead_beef)
    );
    assert_eq!(h.irq.take(), vec![0, 0], "one notification per kick");
    // The UNMAP has taken effect once the request completed.
    assert_eq!(h.request(&unmap(1, 0x1000, 0x2fff)), OK);
    assert!(dma.read_obj::<u32>(GuestAddress(0x1ffe)).is_err());
}

#[test]
fn a_released_endpoint_is_detached_and_its_domain_goes_with_its_last_endpoint() {
    let mem = guest_memory();
    let mut h = Harness::new(&mem, config(), all_features());
    assert_eq!(h.request(&attach(1, 8, 0)), OK);
    assert_eq!(h.request(&map(1, 0x1000, 0x1fff, TARGET, RW)), OK);
    mem.write_obj(0x1111_1111u32, GuestAddress(TARGET))
        .expect("write");
    mem.write_obj(0x2222_2222u32, GuestAddress(0x1000))
        .expect("write");
    let dma = h.dma(8);
    assert_eq!(
        dma.read_obj::<u32>(GuestAddress(0x1000)).ok(),
        Some(0x1111_1111)
    );
    assert_eq!(h.dev.release_endpoint(8).expect("release"), Some(1));
    // Unattached again: boot bypass (still on) gives the identity, not
    // domain 1's mapping.
    assert_eq!(
        dma.read_obj::<u32>(GuestAddress(0x1000)).ok(),
        Some(0x2222_2222),
        "no longer translated through domain 1"
    );
    assert_eq!(h.dev.release_endpoint(8).expect("again"), None);
    assert!(matches!(
        h.dev.release_endpoint(77),
        Err(Error::UnknownEndpoint(77))
    ));
    // Domain 1 went with its last endpoint: a new ATTACH starts empty.
    assert_eq!(h.request(&attach(1, 8, 0)), OK);
    assert!(dma.read_obj::<u32>(GuestAddress(0x1000)).is_err());
    assert_eq!(h.request(&unmap(1, 0x1000, 0x1fff)), OK, "nothing to unmap");
}

#[test]
fn drains_every_request_with_one_notification() {
    let mem = guest_memory();
    let mut h = Harness::new(&mem, config(), all_features());
    let tails = [
        h.submit(&attach(1, 8, 0), 4),
        h.submit(&map(1, 0, 0xfff, TARGET, RW), 4),
        h.submit(&map(1, 0, 0xfff, TARGET, RW), 4),
        h.submit(&unmap(1, 0, 0x7ff), 4),
        h.submit(&detach(1, 8), 4),
    ];
    h.dev.process_queue(REQUEST_QUEUE);
    let used = h.used();
    assert_eq!(used.len(), 5);
    assert!(used.iter().all(|&(_, len)| len == 4));
    let heads: Vec<u32> = used.iter().map(|&(id, _)| id).collect();
    assert_eq!(heads, vec![0, 2, 4, 6, 8]);
    let statuses: Vec<u8> = tails.iter().map(|&t| h.byte(t)).collect();
    assert_eq!(statuses, vec![OK, OK, INVAL, RANGE, OK]);
    assert_eq!(h.irq.take(), vec![REQUEST_QUEUE as u16]);
    // Nothing new: no notification.
    h.dev.process_queue(REQUEST_QUEUE);
    assert!(h.irq.take().is_empty());
}

#[test]
fn unmap_examples_from_the_specification() {
    let mem = guest_memory();
    let mut h = Harness::new(&mem, config(), all_features());
    assert_eq!(h.request(&attach(1, 9, 0)), OK);
    let page = |n: u64| n * 0x1000;
    // (1) unmap of nothing.
    assert_eq!(h.request(&unmap(1, 0, page(5) - 1)), OK);
    // (4) a = map(0, 9); unmap(0, 4) fails and unmaps nothing.
    assert_eq!(h.request(&map(1, 0, page(10) - 1, TARGET, RW)), OK);
    assert_eq!(h.request(&unmap(1, 0, page(5) - 1)), RANGE);
    let dma = h.dma(9);
    assert!(
        dma.read_obj::<u8>(GuestAddress(page(9))).is_ok(),
        "still mapped"
    );
    // (2) exact unmap.
    assert_eq!(h.request(&unmap(1, 0, page(10) - 1)), OK);
    assert!(dma.read_obj::<u8>(GuestAddress(0)).is_err());
    // (3) two adjacent mappings, one range.
    assert_eq!(h.request(&map(1, 0, page(5) - 1, TARGET, RW)), OK);
    assert_eq!(h.request(&map(1, page(5), page(10) - 1, TARGET, RW)), OK);
    assert_eq!(h.request(&unmap(1, 0, page(10) - 1)), OK);
    assert!(dma.read_obj::<u8>(GuestAddress(page(7))).is_err());
    // (7) a range spanning a hole.
    assert_eq!(h.request(&map(1, 0, page(5) - 1, TARGET, RW)), OK);
    assert_eq!(h.request(&map(1, page(10), page(15) - 1, TARGET, RW)), OK);
    assert_eq!(h.request(&unmap(1, 0, page(15) - 1)), OK);
    assert_eq!(
        h.request(&map(1, 0, page(15) - 1, TARGET, RW)),
        OK,
        "all gone"
    );
}

#[test]
fn unknown_and_headless_requests_are_returned_unwritten() {
    let mem = guest_memory();
    let mut h = Harness::new(&mem, config(), all_features());
    let mut bogus = attach(1, 8, 0);
    bogus[0] = 0x42;
    let w1 = h.submit(&bogus, 4);
    let w2 = h.submit(&[VIRTIO_IOMMU_T_ATTACH, 0], 4);
    let w3 = h.submit(&[], 4);
    let mut bogus_wide = attach(1, 8, 0);
    bogus_wide[0] = 0x7f;
    let w4 = h.submit(&bogus_wide, 12);
    h.dev.process_queue(REQUEST_QUEUE);
    // Spec 5.13.6: an unknown type is not written and has used length 0.
    assert_eq!(h.used(), vec![(0, 0), (2, 0), (4, 0), (5, 0)]);
    for w in [w1, w2, w3] {
        assert_eq!(h.bytes(w, 4), vec![0xaa; 4], "buffer untouched");
    }
    assert_eq!(h.bytes(w4, 12), vec![0xaa; 12], "buffer untouched");
}

/// Issue 8, defect 1: 60 overlapping writable descriptors of 8 MiB each
/// (480 MiB) behind an unknown request type. Before the fix the device
/// allocated and wrote 480 MiB of zeros (used length 503316480).
#[test]
fn unknown_request_with_a_huge_writable_part_allocates_and_writes_nothing() {
    let mem = guest_memory();
    let mut h = Harness::new(&mem, config(), all_features());
    let head = h.alloc(8, 0);
    mem.write_slice(&[0x42, 0, 0, 0, 0, 0, 0, 0], GuestAddress(head))
        .expect("head");
    mem.write_slice(&[0x5a; 4096], GuestAddress(TARGET))
        .expect("fill");
    let mut bufs = vec![(head, 8, false)];
    bufs.extend(std::iter::repeat_n((TARGET, 0x80_0000, true), 60));
    Harness::push_chain(&h.reqq, &mut h.next_req_desc, &bufs);
    let ((), largest) =
        crate::test_alloc::largest_allocation(|| h.dev.process_queue(REQUEST_QUEUE));
    assert_eq!(h.used(), vec![(0, 0)], "used length 0");
    assert_eq!(h.bytes(TARGET, 4096), vec![0x5a; 4096], "not written");
    assert!(largest < 64 << 10, "largest allocation {largest} bytes");
}

/// No request, known or not, allocates in proportion to the guest's
/// buffers: a PROBE and a MAP with the same 480 MiB writable part.
#[test]
fn known_requests_with_huge_buffers_allocate_little() {
    let mem = guest_memory();
    let mut h = Harness::new(&mem, config(), all_features());
    for req in [probe(8), map(1, 0, 0xfff, 0, RW), attach(1, 8, 0)] {
        let r = h.alloc(req.len() as u32, 0);
        mem.write_slice(&req, GuestAddress(r)).expect("request");
        let mut bufs = vec![(r, req.len() as u32, false)];
        bufs.extend(std::iter::repeat_n((TARGET, 0x80_0000, true), 20));
        Harness::push_chain(&h.reqq, &mut h.next_req_desc, &bufs);
        let ((), largest) =
            crate::test_alloc::largest_allocation(|| h.dev.process_queue(REQUEST_QUEUE));
        let used = h.used();
        assert_eq!(used.len(), 1);
        assert!(
            used[0].1 <= 516,
            "used length {} for {:?}",
            used[0].1,
            req[0]
        );
        assert!(largest < 64 << 10, "largest allocation {largest} bytes");
    }
}

#[test]
fn truncated_requests() {
    let mem = guest_memory();
    let mut h = Harness::new(&mem, config(), all_features());
    // Body shorter than MAP needs: IOERR in the tail.
    let short = &map(1, 0, 0xfff, 0, RW)[..20];
    assert_eq!(h.request(short), Status::IoErr as u8);
    // No room for a tail: dropped, nothing written.
    let w = h.submit(&attach(1, 8, 0), 3);
    h.dev.process_queue(REQUEST_QUEUE);
    assert_eq!(h.used().last().map(|u| u.1), Some(0));
    assert_eq!(h.bytes(w, 3), vec![0xaa; 3]);
    h.submit(&attach(1, 8, 0), 0);
    h.dev.process_queue(REQUEST_QUEUE);
    assert_eq!(h.used().last().map(|u| u.1), Some(0));
    // Nothing was attached by the dropped requests.
    assert_eq!(h.request(&detach(1, 8)), INVAL);
    // A descriptor outside guest memory: dropped.
    Harness::push_chain(
        &h.reqq,
        &mut h.next_req_desc,
        &[(0x4000_0000, 24, false), (BUF_BASE, 4, true)],
    );
    h.dev.process_queue(REQUEST_QUEUE);
    assert_eq!(h.used().last().map(|u| u.1), Some(0));
    // A request split over several descriptors is fine.
    let req = attach(1, 8, 0);
    let a = h.alloc(5, 0);
    let b = h.alloc(15, 0);
    mem.write_slice(&req[..5], GuestAddress(a)).expect("w");
    mem.write_slice(&req[5..], GuestAddress(b)).expect("w");
    let t = h.alloc(4, 0xaa);
    Harness::push_chain(
        &h.reqq,
        &mut h.next_req_desc,
        &[(a, 5, false), (b, 15, false), (t, 4, true)],
    );
    h.dev.process_queue(REQUEST_QUEUE);
    assert_eq!(h.used().last().map(|u| u.1), Some(4));
    assert_eq!(h.byte(t), OK);
}

#[test]
fn reserved_fields() {
    let mem = guest_memory();
    let mut h = Harness::new(&mem, config(), all_features());
    let mut a = attach(1, 8, 0);
    a[19] = 1;
    assert_eq!(h.request(&a), INVAL, "ATTACH reserved must be zero");
    // The head's reserved bytes are ignored.
    let mut a = attach(1, 8, 0);
    a[1] = 0xff;
    assert_eq!(h.request(&a), OK);
    assert_eq!(h.request(&map(1, 0, 0xfff, TARGET, RW)), OK);
    let mut u = unmap(1, 0, 0xfff);
    u[24] = 1;
    assert_eq!(h.request(&u), INVAL, "UNMAP reserved set: refused");
    assert!(
        h.dma(8).read_obj::<u8>(GuestAddress(0)).is_ok(),
        "not unmapped"
    );
    let mut d = detach(1, 8);
    d[12] = 7;
    assert_eq!(h.request(&d), OK, "DETACH reserved is ignored");
    let mut p = probe(8);
    p[10] = 1;
    let w = h.submit(&p, 512 + 4);
    h.dev.process_queue(REQUEST_QUEUE);
    assert_eq!(h.byte(w + 512), OK, "PROBE reserved is ignored");
}

#[test]
fn attach_and_map_statuses() {
    let mem = guest_memory();
    let mut h = Harness::new(&mem, config(), all_features());
    assert_eq!(h.request(&attach(1, 7, 0)), NOENT);
    assert_eq!(h.request(&attach(101, 8, 0)), RANGE);
    assert_eq!(h.request(&attach(0, 8, 0)), RANGE);
    assert_eq!(h.request(&attach(1, 8, 2)), INVAL, "unknown flag");
    assert_eq!(h.request(&attach(1, 8, 0)), OK);
    assert_eq!(
        h.request(&attach(1, 9, VIRTIO_IOMMU_ATTACH_F_BYPASS)),
        INVAL,
        "bypass flag on a mapped domain"
    );
    assert_eq!(h.request(&attach(2, 9, VIRTIO_IOMMU_ATTACH_F_BYPASS)), OK);
    assert_eq!(
        h.request(&attach(2, 8, 0)),
        INVAL,
        "mapped attach to bypass domain"
    );
    assert_eq!(
        h.request(&map(2, 0, 0xfff, 0, RW)),
        INVAL,
        "MAP on bypass domain"
    );
    assert_eq!(
        h.request(&unmap(2, 0, 0xfff)),
        INVAL,
        "UNMAP on bypass domain"
    );
    assert_eq!(h.request(&map(3, 0, 0xfff, 0, RW)), NOENT);
    assert_eq!(h.request(&unmap(3, 0, 0xfff)), NOENT);
    assert_eq!(
        h.request(&map(1, 0x2000, 0xfff, 0, RW)),
        INVAL,
        "end < start"
    );
    assert_eq!(h.request(&map(1, 0x800, 0x17ff, 0, RW)), RANGE, "unaligned");
    assert_eq!(
        h.request(&map(1, 0, 0xfff, 0x10, RW)),
        RANGE,
        "unaligned phys"
    );
    assert_eq!(
        h.request(&map(1, 0, 0xfff, 0, 1 << 3)),
        INVAL,
        "unknown flag"
    );
    assert_eq!(
        h.request(&map(1, 0xfee0_0000, 0xfee0_0fff, 0, RW)),
        INVAL,
        "MSI window of endpoint 8"
    );
    assert_eq!(
        h.request(&map(1, 0, 0xfff, 0, VIRTIO_IOMMU_MAP_F_MMIO | RW)),
        OK
    );
    assert_eq!(h.request(&map(1, 0, 0xfff, 0, RW)), INVAL, "overlap");
    assert_eq!(h.request(&detach(1, 9)), INVAL, "not attached there");
    assert_eq!(h.request(&detach(5, 8)), INVAL, "no such domain");
    assert_eq!(h.request(&detach(1, 77)), NOENT);
    assert_eq!(h.request(&detach(1, 8)), OK);
    assert_eq!(h.request(&map(1, 0, 0xfff, 0, RW)), NOENT, "domain freed");
}

#[test]
fn feature_gated_requests() {
    let mem = guest_memory();
    let mut h = Harness::new(&mem, config(), VIRTIO_IOMMU_F_MAP_UNMAP);
    assert_eq!(
        h.request(&attach(1, 8, VIRTIO_IOMMU_ATTACH_F_BYPASS)),
        INVAL,
        "ATTACH_F_BYPASS needs BYPASS_CONFIG"
    );
    assert_eq!(h.request(&attach(1, 8, 0)), OK);
    assert_eq!(
        h.request(&map(1, 0, 0xfff, 0, VIRTIO_IOMMU_MAP_F_MMIO)),
        INVAL,
        "MMIO flag needs the MMIO feature"
    );
    let mem2 = guest_memory();
    let mut h2 = Harness::new(&mem2, config(), 0);
    assert_eq!(h2.request(&attach(1, 8, 0)), OK);
    assert_eq!(h2.request(&map(1, 0, 0xfff, 0, RW)), Status::Unsupp as u8);
    assert_eq!(h2.request(&unmap(1, 0, 0xfff)), Status::Unsupp as u8);
}

#[test]
fn probe_output() {
    let mem = guest_memory();
    let mut h = Harness::new(&mem, config(), all_features());
    let w = h.submit(&probe(8), 512 + 4);
    h.dev.process_queue(REQUEST_QUEUE);
    assert_eq!(h.used(), vec![(0, 516)]);
    let mut expected = vec![
        1, 0, 20, 0, // RESV_MEM, 20 bytes
        1, 0, 0, 0, // MSI
        0, 0, 0xe0, 0xfe, 0, 0, 0, 0, // start
        0xff, 0xff, 0xef, 0xfe, 0, 0, 0, 0, // end
    ];
    expected.resize(512, 0); // NONE / zero fill
    expected.extend([OK, 0, 0, 0]);
    assert_eq!(h.bytes(w, 516), expected);

    // No properties: all zeros.
    let w = h.submit(&probe(9), 516);
    h.dev.process_queue(REQUEST_QUEUE);
    let mut expected = vec![0; 512];
    expected.extend([OK, 0, 0, 0]);
    assert_eq!(h.bytes(w, 516), expected);

    // Unknown endpoint: NOENT where the tail belongs.
    let w = h.submit(&probe(1234), 516);
    h.dev.process_queue(REQUEST_QUEUE);
    assert_eq!(h.used().last().map(|u| u.1), Some(516));
    assert_eq!(h.byte(w + 512), NOENT);

    // Buffer smaller than probe_size: no property, INVAL at its end.
    let w = h.submit(&probe(8), 100);
    h.dev.process_queue(REQUEST_QUEUE);
    assert_eq!(h.used().last().map(|u| u.1), Some(100));
    let mut expected = vec![0; 96];
    expected.extend([INVAL, 0, 0, 0]);
    assert_eq!(h.bytes(w, 100), expected);

    // Truncated PROBE body: IOERR in the tail after probe_size bytes.
    let w = h.submit(&probe(8)[..30], 516);
    h.dev.process_queue(REQUEST_QUEUE);
    assert_eq!(h.used().last().map(|u| u.1), Some(516));
    assert_eq!(h.byte(w + 512), Status::IoErr as u8);
}

#[test]
fn probe_size_grows_to_fit() {
    let mut cfg = config();
    cfg.probe_size = 8;
    cfg.endpoints[1].reserved = vec![MSI; 3];
    let dev = VirtioIommu::new(cfg, guest_memory(), None).expect("device");
    assert_eq!(dev.probe_size(), 3 * 24 + 4);
}

#[test]
fn bypass_transitions() {
    let mem = guest_memory();
    let mut h = Harness::new(&mem, config(), all_features());
    mem.write_obj(0x5au8, GuestAddress(TARGET)).expect("w");
    let dma = h.dma(9);
    // Boot: bypass = 1, unattached endpoints see guest-physical memory.
    assert_eq!(dma.read_obj::<u8>(GuestAddress(TARGET)).ok(), Some(0x5a));
    h.dev.write_config(CONFIG_BYPASS_OFFSET, &[0]);
    assert!(dma.read_obj::<u8>(GuestAddress(TARGET)).is_err());
    // A bypass domain: identity again.
    assert_eq!(h.request(&attach(1, 9, VIRTIO_IOMMU_ATTACH_F_BYPASS)), OK);
    assert_eq!(dma.read_obj::<u8>(GuestAddress(TARGET)).ok(), Some(0x5a));
    // A mapped domain: only its mappings.
    assert_eq!(h.request(&attach(2, 9, 0)), OK);
    assert!(dma.read_obj::<u8>(GuestAddress(TARGET)).is_err());
    // Detached: back to the global setting.
    assert_eq!(h.request(&detach(2, 9)), OK);
    assert!(dma.read_obj::<u8>(GuestAddress(TARGET)).is_err());
    h.dev.write_config(CONFIG_BYPASS_OFFSET, &[1]);
    assert_eq!(dma.read_obj::<u8>(GuestAddress(TARGET)).ok(), Some(0x5a));
}

#[test]
fn faults_are_reported_on_the_event_queue() {
    let mem = guest_memory();
    let mut h = Harness::new(&mem, config(), all_features());
    assert_eq!(h.request(&attach(1, 8, 0)), OK);
    assert_eq!(
        h.request(&map(1, 0x1000, 0x1fff, TARGET, VIRTIO_IOMMU_MAP_F_READ)),
        OK
    );
    let dma = h.dma(8);
    assert!(dma.read_obj::<u32>(GuestAddress(0x1000)).is_ok());
    assert!(
        dma.write_obj(1u32, GuestAddress(0x1004)).is_err(),
        "read-only"
    );
    assert!(
        dma.read_obj::<u32>(GuestAddress(0x1ffe)).is_err(),
        "runs off the end"
    );
    assert_eq!(h.dev.fault_eventfd().read().ok(), Some(2));
    // No event buffer yet: the faults wait.
    h.dev.process_queue(EVENT_QUEUE);
    assert!(h.events_used().is_empty());
    let b1 = h.add_event_buffer(24);
    let b2 = h.add_event_buffer(64);
    h.dev.process_queue(EVENT_QUEUE);
    assert_eq!(h.events_used(), vec![(0, 24), (1, 24)]);
    assert_eq!(h.irq.take(), vec![0, 0, 1]);
    let mut write_fault = vec![2, 0, 0, 0, 0x02, 0x01, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0];
    write_fault.extend(0x1004u64.to_le_bytes());
    assert_eq!(h.bytes(b1, 24), write_fault);
    let mut read_fault = vec![2, 0, 0, 0, 0x01, 0x01, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0];
    read_fault.extend(0x2000u64.to_le_bytes());
    assert_eq!(h.bytes(b2, 24), read_fault);
    assert_eq!(h.bytes(b2 + 24, 4), vec![0xaa; 4]);

    // An unattached endpoint with bypass off: R_DOMAIN.
    h.dev.write_config(CONFIG_BYPASS_OFFSET, &[0]);
    assert!(h.dma(9).read_obj::<u8>(GuestAddress(0x3000)).is_err());
    let b3 = h.add_event_buffer(24);
    h.dev.process_queue(EVENT_QUEUE);
    let mut domain_fault = vec![1, 0, 0, 0, 0x01, 0x01, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0];
    domain_fault.extend(0x3000u64.to_le_bytes());
    assert_eq!(h.bytes(b3, 24), domain_fault);
}

#[test]
fn small_event_buffer_keeps_the_fault() {
    let mem = guest_memory();
    let mut h = Harness::new(&mem, config(), all_features());
    h.dev.write_config(CONFIG_BYPASS_OFFSET, &[0]);
    assert!(h.dma(9).read_obj::<u8>(GuestAddress(0)).is_err());
    let small = h.add_event_buffer(16);
    let good = h.add_event_buffer(24);
    h.dev.process_queue(EVENT_QUEUE);
    assert_eq!(h.events_used(), vec![(0, 0), (1, 24)]);
    assert_eq!(h.bytes(small, 16), vec![0xaa; 16]);
    assert_eq!(h.byte(good), VIRTIO_IOMMU_FAULT_R_DOMAIN);
}

#[test]
fn fault_backlog_overflow_is_counted() {
    let mem = guest_memory();
    let mut cfg = config();
    cfg.fault_backlog = 2;
    cfg.boot_bypass = false;
    let h = Harness::new(&mem, cfg, all_features());
    let dma = h.dma(9);
    for i in 0..5 {
        assert!(dma.read_obj::<u8>(GuestAddress(i * 0x1000)).is_err());
    }
    assert_eq!(h.dev.dropped_faults(), 3);
}

#[test]
fn failing_backend_leaves_no_mapping() {
    let mem = guest_memory();
    let (fake, handle) = FakeDma::new(&[9], true);
    handle.inject(Box::new(|call| {
        (call.iova == 0x5000).then(|| super::DmaError::Failed("injected".into()))
    }));
    let host = HostDma {
        backend: Box::new(fake),
        endpoints: vec![9],
    };
    let mut cfg = config();
    cfg.boot_bypass = false;
    let mut h = Harness::with_backend(&mem, cfg, all_features(), Some(host));
    assert_eq!(h.request(&attach(1, 9, 0)), OK);
    assert_eq!(h.request(&map(1, 0x1000, 0x1fff, TARGET, RW)), OK);
    assert_eq!(
        h.request(&map(1, 0x5000, 0x5fff, TARGET, RW)),
        Status::DevErr as u8
    );
    assert!(h.dma(9).read_obj::<u8>(GuestAddress(0x5000)).is_err());
    assert_eq!(h.request(&unmap(1, 0, u64::MAX)), OK);
    assert_eq!(
        handle.take_log(),
        vec![
            "map e9 0x1000+0x1000",
            "map e9 0x5000+0x1000",
            "unmap-all e9"
        ]
    );
}

#[test]
fn reset_forgets_domains_but_keeps_bypass() {
    let mem = guest_memory();
    let mut h = Harness::new(&mem, config(), all_features());
    assert_eq!(h.request(&attach(1, 9, 0)), OK);
    assert_eq!(h.request(&map(1, 0x1000, 0x1fff, TARGET, RW)), OK);
    h.dev.write_config(CONFIG_BYPASS_OFFSET, &[0]);
    let dma = h.dma(9);
    h.dev.reset();
    assert!(
        dma.read_obj::<u8>(GuestAddress(0x1000)).is_err(),
        "unattached, bypass still 0"
    );
    let mut b = [9u8];
    h.dev.read_config(CONFIG_BYPASS_OFFSET, &mut b);
    assert_eq!(b, [0]);
    h.dev.system_reset();
    h.dev.read_config(CONFIG_BYPASS_OFFSET, &mut b);
    assert_eq!(b, [1]);
    assert_eq!(dma.read_obj::<u8>(GuestAddress(TARGET)).ok(), Some(0));
    // After reset the device processes nothing until re-activated.
    h.dev.process_queue(REQUEST_QUEUE);
    h.dev.process_queue(EVENT_QUEUE);
}

#[test]
fn constructor_and_translator_errors() {
    let mem = guest_memory();
    let mut cfg = config();
    cfg.endpoints.push(EndpointConfig {
        id: 8,
        reserved: vec![],
    });
    assert!(matches!(
        VirtioIommu::new(cfg, mem.clone(), None),
        Err(Error::DuplicateEndpoint(8))
    ));
    let mut cfg = config();
    cfg.page_size_mask = 0;
    assert!(matches!(
        VirtioIommu::new(cfg, mem.clone(), None),
        Err(Error::NoPageSize)
    ));
    let mut cfg = config();
    cfg.endpoints[0].reserved.push(ReservedRegion {
        start: 2,
        end: 1,
        kind: ReservedKind::Reserved,
    });
    assert!(matches!(
        VirtioIommu::new(cfg, mem.clone(), None),
        Err(Error::BadReservedRegion { endpoint: 8, .. })
    ));
    let dev = VirtioIommu::new(config(), mem, None).expect("device");
    assert!(matches!(dev.translator(5), Err(Error::UnknownEndpoint(5))));
    assert_eq!(dev.translator(8).map(|t| t.endpoint()).ok(), Some(8));
}

#[test]
fn activate_requires_the_request_queue() {
    let mem = guest_memory();
    let mut dev = VirtioIommu::new(config(), mem, None).expect("device");
    let irq: Arc<dyn VirtioInterrupt> = Arc::new(RecordingInterrupt::default());
    assert!(matches!(
        dev.activate(vec![], irq),
        Err(crate::virtio::ActivateError::MissingQueue(0))
    ));
}

/// VRING_USED_F_NO_NOTIFY in the used ring's flags: the driver need not kick.
fn no_notify(h: &Harness<'_>) -> bool {
    let flags: u16 = h.mem.read_obj(GuestAddress(REQ_USED)).expect("used flags");
    flags & 1 != 0
}

#[test]
fn polling_serves_requests_without_kicks_and_hands_back_to_notifications() {
    let mem = guest_memory();
    let mut h = Harness::new(&mem, config(), all_features());
    let signal = Arc::new(super::PollSignal::new(std::time::Duration::from_millis(1)));
    h.dev.set_poller(signal.clone());
    assert!(!h.dev.poll_requests(), "no window open before a kick");

    // A kick: processed at once, notifications stay off, the poller is woken.
    h.submit(&attach(1, 8, 0), 4);
    h.dev.process_queue(REQUEST_QUEUE);
    assert_eq!(h.used().len(), 1);
    assert!(no_notify(&h), "notifications off while the poller watches");
    signal.wait();

    // The next request is taken by the poller: no kick needed.
    let w = h.submit(&map(1, 0, 0xfff, 0x10_0000, 3), 4);
    assert!(h.dev.poll_requests());
    assert_eq!(h.used().len(), 1);
    assert_eq!(h.bytes(w, 4), vec![OK, 0, 0, 0]);
    assert!(!h.dev.poll_requests(), "nothing new");

    // The window closes: notifications back on, and a request that slipped
    // in meanwhile is still served.
    h.submit(&unmap(1, 0, 0xfff), 4);
    h.dev.stop_polling();
    assert!(!no_notify(&h));
    assert_eq!(h.used().len(), 1);
    assert!(!h.dev.poll_requests(), "window closed");
}

#[test]
fn a_kick_opens_no_window_once_the_adaptive_window_is_zero() {
    let mem = guest_memory();
    let mut h = Harness::new(&mem, config(), all_features());
    let signal = Arc::new(super::PollSignal::new(std::time::Duration::from_millis(1)));
    h.dev.set_poller(signal.clone());
    // Windows that find nothing: the window decays to zero.
    while !signal.current_window().is_zero() {
        signal.window_ended(signal.current_window(), 0);
    }
    h.submit(&attach(1, 8, 0), 4);
    h.dev.process_queue(REQUEST_QUEUE);
    assert_eq!(h.used().len(), 1, "the kick is served at once");
    assert!(
        !no_notify(&h),
        "notifications stay on: the next request kicks"
    );
    h.submit(&map(1, 0, 0xfff, 0x10_0000, 3), 4);
    assert!(!h.dev.poll_requests(), "no window is open");
    h.dev.process_queue(REQUEST_QUEUE);
    assert_eq!(h.used().len(), 1);
}

/// Hostile guests: random request bytes and buffer shapes never panic, and
/// every chain comes back on the used ring.
#[test]
fn random_requests_are_survived_and_returned() {
    let mem = guest_memory();
    for round in 0..64u64 {
        let mut h = Harness::new(&mem, config(), all_features());
        let mut next = crate::test_rng::xorshift(
            0x9e37_79b9_7f4a_7c15u64 ^ (round + 1).wrapping_mul(0x2545_f491_4f6c_dd1d),
        );
        let mut submitted = 0;
        // Two descriptors per request at most; the mock table has QUEUE_LEN.
        for _ in 0..QUEUE_LEN / 2 {
            let len = (next() % 72) as usize;
            let mut req: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if let Some(t) = req.first_mut() {
                // Mostly real request types, so handlers run on garbage bodies.
                *t = [1, 2, 3, 4, 5, 0x42][(next() % 6) as usize];
            }
            let writable = [0u32, 1, 3, 4, 8, 64, 600][(next() % 7) as usize];
            h.submit(&req, writable);
            submitted += 1;
        }
        h.dev.process_queue(REQUEST_QUEUE);
        assert_eq!(h.used().len(), submitted, "round {round}");
    }
}
