//! The virtio-iommu request path end to end: a guest memory image and
//! descriptor chains in, through chain parsing, the request handlers, the
//! domains and a host IOMMU fake that fails on demand, the used ring out;
//! plus `bypass` writes, resets, emulated DMA and fault delivery.
//!
//! After every step it checks, beyond "no panic":
//! - every assigned endpoint's host address space equals what the virtual
//!   state gives it (`VirtioIommu::check_host`), and no host map ever lands
//!   on an IOVA already mapped there;
//! - every used length is at most the writable part of its chain, and
//!   every used head is one the driver made available;
//! - no single allocation during device work exceeds 64 KiB (so nothing
//!   scales with a length the guest chose: descriptors here reach 128 KiB
//!   each, 32 per chain).
//!
//! Input: byte 0 configures the device (bit 0 boot bypass, bit 1 host has
//! unmap-all, bits 2-4 acked BYPASS_CONFIG / MAP_UNMAP / MMIO, bit 5 small
//! mapping caps, bit 6 a restricted input range, bit 7 a small domain
//! range); byte 1 is the host failure rate (in 1/256 per call); bytes 2-9
//! seed the failures. Then steps, each an opcode byte and its operands (see
//! `Step::next`); a missing operand reads as 0.

#![no_main]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::{Arc, Mutex};

use devices::virtio::iommu::protocol::*;
use devices::virtio::iommu::testing::{FakeDma, FakeDmaHandle};
use devices::virtio::iommu::{
    DmaError, EndpointConfig, EndpointIommu, HostDma, IommuConfig, ReservedKind, ReservedRegion,
    VirtioIommu, EVENT_QUEUE, REQUEST_QUEUE,
};
use devices::virtio::{VirtioDevice, VirtioInterrupt, VIRTIO_F_VERSION_1};
use libfuzzer_sys::fuzz_target;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap, IommuMemory};

// ---- allocation watch -------------------------------------------------

struct Watch;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
}

// SAFETY: forwards every call to `System` unchanged; the bookkeeping is a
// const-initialised thread-local `Cell`, which allocates nothing.
unsafe impl GlobalAlloc for Watch {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: the caller's contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: the caller's contract.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, size: usize) -> *mut u8 {
        note(size);
        // SAFETY: the caller's contract.
        unsafe { System.realloc(ptr, layout, size) }
    }
}

#[global_allocator]
static WATCH: Watch = Watch;

/// Runs device work and checks that it allocated nothing large.
fn watched<T>(what: &str, f: impl FnOnce() -> T) -> T {
    LARGEST.with(|l| l.set(0));
    let out = f();
    let largest = LARGEST.with(Cell::get);
    assert!(
        largest <= 64 << 10,
        "{what} allocated {largest} bytes at once"
    );
    out
}

// ---- the guest's side -------------------------------------------------

const QSIZE: u16 = 32;
const REQ_DESC: u64 = 0x0000;
const REQ_AVAIL: u64 = 0x0200;
const REQ_USED: u64 = 0x0400;
const EVQ_DESC: u64 = 0x0800;
const EVQ_AVAIL: u64 = 0x0a00;
const EVQ_USED: u64 = 0x0c00;
const BUF_START: u64 = 0x1000;
const RAM0: u64 = 0x2_0000;
const RAM1: u64 = 0x1_0000_0000;
const RAM1_SIZE: u64 = 0x1000;

const EMULATED: u32 = 8;
const ASSIGNED: [u32; 2] = [16, 24];
const ENDPOINTS: [u32; 4] = [EMULATED, 16, 24, 0x99];

const F_NEXT: u16 = 1;
const F_WRITE: u16 = 2;

struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    fn u64(&mut self) -> u64 {
        u64::from(self.u32()) | (u64::from(self.u32()) << 32)
    }
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[derive(Default)]
struct NoIrq;

impl VirtioInterrupt for NoIrq {
    fn notify_queue(&self, _: u16) {}
    fn notify_config(&self) {}
}

/// Host failures: each call fails with probability `rate`/256, or the next
/// `once` calls fail.
struct Failures {
    rate: u8,
    seed: u64,
    once: u32,
}

impl Failures {
    fn fail(&mut self) -> bool {
        if self.once > 0 {
            self.once -= 1;
            return true;
        }
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        (self.seed & 0xff) < u64::from(self.rate)
    }
}

struct Driver {
    mem: GuestMemoryMmap,
    dev: VirtioIommu,
    fake: FakeDmaHandle,
    failures: Arc<Mutex<Failures>>,
    features: u64,
    next_desc: u16,
    avail: u16,
    used_seen: u16,
    ev_avail: u16,
    ev_used_seen: u16,
    next_buf: u64,
    /// Chains made available and not used yet: (head, descriptors).
    outstanding: Vec<(u16, u16)>,
    dma: IommuMemory<GuestMemoryMmap, EndpointIommu>,
}

fn queue(desc: u64, avail: u64, used: u64) -> Queue {
    let mut q = Queue::new(QSIZE).expect("queue");
    q.set_size(QSIZE);
    q.set_desc_table_address(Some(desc as u32), Some(0));
    q.set_avail_ring_address(Some(avail as u32), Some(0));
    q.set_used_ring_address(Some(used as u32), Some(0));
    q.set_ready(true);
    q
}

impl Driver {
    fn new(input: &mut Input<'_>) -> Option<Self> {
        let cfg = input.u8();
        let rate = input.u8();
        let seed = input.u64() | 1;
        let mem = GuestMemoryMmap::from_ranges(&[
            (GuestAddress(0), RAM0 as usize),
            (GuestAddress(RAM1), RAM1_SIZE as usize),
        ])
        .ok()?;
        let (fake, handle) = FakeDma::new(&ASSIGNED, cfg & 2 != 0);
        let failures = Arc::new(Mutex::new(Failures {
            rate,
            seed,
            once: 0,
        }));
        let f = failures.clone();
        handle.inject(Box::new(move |_| {
            f.lock()
                .ok()?
                .fail()
                .then(|| DmaError::Failed("injected".into()))
        }));
        let small = cfg & 0x20 != 0;
        let config = IommuConfig {
            endpoints: ENDPOINTS[..3]
                .iter()
                .map(|&id| EndpointConfig {
                    id,
                    reserved: if id == EMULATED {
                        vec![ReservedRegion {
                            start: 0x8000,
                            end: 0x8fff,
                            kind: ReservedKind::Msi,
                        }]
                    } else {
                        vec![]
                    },
                })
                .collect(),
            input_range: if cfg & 0x40 != 0 {
                0x1000..=0xf_ffff
            } else {
                0..=u64::MAX
            },
            domain_range: if cfg & 0x80 != 0 { 1..=4 } else { 0..=u32::MAX },
            boot_bypass: cfg & 1 != 0,
            max_mappings_per_domain: if small { 4 } else { 1 << 20 },
            max_mappings_total: if small { 6 } else { 1 << 20 },
            fault_backlog: 8,
            queue_size: QSIZE,
            ..Default::default()
        };
        let host = HostDma {
            backend: Box::new(fake),
            endpoints: ASSIGNED.to_vec(),
        };
        // Boot bypass with a failing host refuses to build: fine.
        let dev = VirtioIommu::new(config, mem.clone(), Some(host)).ok()?;
        let mut features = VIRTIO_F_VERSION_1;
        for (bit, feature) in [
            (4, VIRTIO_IOMMU_F_BYPASS_CONFIG),
            (8, VIRTIO_IOMMU_F_MAP_UNMAP),
            (16, VIRTIO_IOMMU_F_MMIO),
        ] {
            if cfg & bit != 0 {
                features |= feature;
            }
        }
        features |= VIRTIO_IOMMU_F_INPUT_RANGE | VIRTIO_IOMMU_F_DOMAIN_RANGE | VIRTIO_IOMMU_F_PROBE;
        let translator = dev.translator(EMULATED).ok()?;
        let dma = IommuMemory::new(mem.clone(), translator, true, ());
        let mut d = Self {
            mem,
            dev,
            fake: handle,
            failures,
            features,
            next_desc: 0,
            avail: 0,
            used_seen: 0,
            ev_avail: 0,
            ev_used_seen: 0,
            next_buf: BUF_START,
            outstanding: Vec::new(),
            dma,
        };
        d.activate();
        d.check();
        Some(d)
    }

    fn activate(&mut self) {
        for at in [REQ_AVAIL, REQ_USED, EVQ_AVAIL, EVQ_USED] {
            let _ = self.mem.write_obj(0u32, GuestAddress(at));
        }
        self.next_desc = 0;
        self.avail = 0;
        self.used_seen = 0;
        self.ev_avail = 0;
        self.ev_used_seen = 0;
        self.outstanding.clear();
        self.dev.set_acked_features(self.features);
        let queues = vec![
            (REQUEST_QUEUE, queue(REQ_DESC, REQ_AVAIL, REQ_USED)),
            (EVENT_QUEUE, queue(EVQ_DESC, EVQ_AVAIL, EVQ_USED)),
        ];
        assert!(self.dev.activate(queues, Arc::new(NoIrq)).is_ok());
    }

    /// Room for `len` bytes in the buffer area.
    fn buf(&mut self, len: u64) -> u64 {
        if self.next_buf + len > RAM0 {
            self.next_buf = BUF_START;
        }
        let at = self.next_buf;
        self.next_buf += len.max(1).next_multiple_of(8);
        at
    }

    /// Writes a chain of (addr, len, flags, next) descriptors and makes it
    /// available; `false` when the ring has no room (kick first).
    fn push(&mut self, descs: &[(u64, u32, u16, Option<u16>)]) -> bool {
        if self.outstanding.len() >= 4 {
            self.kick();
        }
        if usize::from(self.next_desc) + descs.len() > usize::from(QSIZE) {
            self.next_desc = 0;
        }
        let head = self.next_desc;
        for (i, &(addr, len, flags, next)) in descs.iter().enumerate() {
            let idx = head + i as u16;
            let mut flags = flags & !4; // never INDIRECT: not offered
            let next = match next {
                Some(n) => n,
                None if i + 1 < descs.len() => {
                    flags |= F_NEXT;
                    idx + 1
                }
                None => {
                    flags &= !F_NEXT;
                    0
                }
            };
            let at = REQ_DESC + 16 * u64::from(idx);
            let _ = self.mem.write_obj(addr, GuestAddress(at));
            let _ = self.mem.write_obj(len, GuestAddress(at + 8));
            let _ = self.mem.write_obj(flags, GuestAddress(at + 12));
            let _ = self.mem.write_obj(next, GuestAddress(at + 14));
        }
        self.next_desc += descs.len() as u16;
        let slot = REQ_AVAIL + 4 + 2 * u64::from(self.avail % QSIZE);
        let _ = self.mem.write_obj(head, GuestAddress(slot));
        self.avail = self.avail.wrapping_add(1);
        let _ = self.mem.write_obj(self.avail, GuestAddress(REQ_AVAIL + 2));
        // A chain whose descriptors are reused counts as abandoned.
        let end = head + descs.len() as u16;
        self.outstanding.retain(|&(h, n)| h + n <= head || end <= h);
        self.outstanding.push((head, descs.len() as u16));
        true
    }

    /// Upper bound of the bytes the device may write for the chain at
    /// `head`, walking the table as it is now.
    fn writable(&self, head: u16) -> u64 {
        let mut total = 0u64;
        let mut idx = head;
        for _ in 0..QSIZE {
            if idx >= QSIZE {
                break;
            }
            let at = REQ_DESC + 16 * u64::from(idx);
            let len: u32 = self.mem.read_obj(GuestAddress(at + 8)).unwrap_or(0);
            let flags: u16 = self.mem.read_obj(GuestAddress(at + 12)).unwrap_or(0);
            let next: u16 = self.mem.read_obj(GuestAddress(at + 14)).unwrap_or(0);
            if flags & F_WRITE != 0 {
                total += u64::from(len);
            }
            if flags & F_NEXT == 0 {
                break;
            }
            idx = next;
        }
        total
    }

    fn kick(&mut self) {
        let bounds: Vec<(u16, u64)> = self
            .outstanding
            .iter()
            .map(|&(h, _)| (h, self.writable(h)))
            .collect();
        watched("a kick", || self.dev.process_queue(REQUEST_QUEUE));
        let idx: u16 = self.mem.read_obj(GuestAddress(REQ_USED + 2)).unwrap_or(0);
        while self.used_seen != idx {
            let at = REQ_USED + 4 + 8 * u64::from(self.used_seen % QSIZE);
            let id: u32 = self.mem.read_obj(GuestAddress(at)).unwrap_or(u32::MAX);
            let len: u32 = self.mem.read_obj(GuestAddress(at + 4)).unwrap_or(u32::MAX);
            let Some(&(_, bound)) = bounds.iter().find(|(h, _)| u32::from(*h) == id) else {
                panic!("used head {id} was never made available");
            };
            assert!(
                u64::from(len) <= bound,
                "used length {len} exceeds the {bound} writable bytes of chain {id}"
            );
            self.outstanding.retain(|&(h, _)| u32::from(h) != id);
            self.used_seen = self.used_seen.wrapping_add(1);
        }
        self.check();
    }

    fn check(&self) {
        let fake = self.fake.clone();
        if let Err(e) = self.dev.check_host(&move |ep| fake.mappings(ep)) {
            panic!("host and virtual state differ: {e}");
        }
        assert_eq!(
            self.fake.refused_overlaps(),
            0,
            "a host map hit a mapped IOVA"
        );
    }

    /// A well-formed chain carrying `req`, with `writable` bytes for the
    /// reply, the readable part split in two when `split`.
    fn submit(&mut self, req: &[u8], writable: u32, split: bool) {
        let r = self.buf(req.len() as u64);
        let _ = self.mem.write_slice(req, GuestAddress(r));
        let w = self.buf(u64::from(writable));
        let _ = self
            .mem
            .write_slice(&vec![0xaa; writable as usize], GuestAddress(w));
        let mut descs = Vec::new();
        match (split, req.len()) {
            (true, n @ 2..) => {
                let half = n / 2;
                descs.push((r, half as u32, 0, None));
                descs.push((r + half as u64, (n - half) as u32, 0, None));
            }
            (_, 0) => {}
            (_, n) => descs.push((r, n as u32, 0, None)),
        }
        if writable > 0 {
            descs.push((w, writable, F_WRITE, None));
        }
        if !descs.is_empty() {
            self.push(&descs);
        }
    }
}

/// Small values that reach interesting states, or raw ones.
fn domain(b: u8, input: &mut Input<'_>) -> u32 {
    match b % 8 {
        7 => input.u32(),
        n => u32::from(n % 5),
    }
}

fn endpoint(b: u8, input: &mut Input<'_>) -> u32 {
    match b % 5 {
        4 => input.u32(),
        n => ENDPOINTS[usize::from(n)],
    }
}

fn request(input: &mut Input<'_>) -> (Vec<u8>, u32) {
    let kind = input.u8();
    let a = input.u8();
    let b = input.u8();
    let d = domain(a, input);
    let ep = endpoint(b, input);
    let page = u64::from(input.u8() % 32) * 0x1000;
    let pages = u64::from(input.u8() % 8) + 1;
    let raw = input.u8();
    let (start, end) = if raw & 0x80 != 0 {
        (input.u64(), input.u64())
    } else {
        (page, page + pages * 0x1000 - 1)
    };
    let phys = match raw % 4 {
        0 => 0x1000 * u64::from(raw >> 2),
        1 => RAM1,
        2 => input.u64(),
        _ => 0x1_0000 + page,
    };
    let mut v = vec![kind % 7, 0, 0, 0];
    if raw & 0x40 != 0 {
        v[1] = raw;
    }
    let tail = match kind % 7 {
        VIRTIO_IOMMU_T_ATTACH => {
            v.extend(d.to_le_bytes());
            v.extend(ep.to_le_bytes());
            let flags = if b & 0x80 != 0 {
                VIRTIO_IOMMU_ATTACH_F_BYPASS
            } else {
                0
            };
            v.extend((flags | u32::from(raw & 0x20) >> 4).to_le_bytes());
            v.extend([0, 0, 0, raw & 0x10]);
            4
        }
        VIRTIO_IOMMU_T_DETACH => {
            v.extend(d.to_le_bytes());
            v.extend(ep.to_le_bytes());
            v.extend([0; 8]);
            4
        }
        VIRTIO_IOMMU_T_MAP => {
            v.extend(d.to_le_bytes());
            v.extend(start.to_le_bytes());
            v.extend(end.to_le_bytes());
            v.extend(phys.to_le_bytes());
            let flags = u32::from(b >> 5) | if raw & 0x20 != 0 { 1 << 4 } else { 0 };
            v.extend(flags.to_le_bytes());
            4
        }
        VIRTIO_IOMMU_T_UNMAP => {
            v.extend(d.to_le_bytes());
            v.extend(start.to_le_bytes());
            v.extend(end.to_le_bytes());
            v.extend([0, 0, 0, raw & 0x10]);
            4
        }
        VIRTIO_IOMMU_T_PROBE => {
            v.extend(ep.to_le_bytes());
            v.extend([0; 64]);
            if raw & 0x10 != 0 {
                100
            } else {
                516
            }
        }
        _ => 4 + u32::from(raw & 0x3f),
    };
    if kind & 0x80 != 0 {
        // Truncated.
        v.truncate(usize::from(a) % (v.len() + 1));
    }
    let writable = if kind & 0x40 != 0 {
        u32::from(b % 8)
    } else {
        tail
    };
    (v, writable)
}

fn raw_chain(d: &mut Driver, input: &mut Input<'_>) {
    let n = 1 + usize::from(input.u8() % 4);
    let mut descs = Vec::new();
    for _ in 0..n {
        let sel = input.u8();
        let off = u64::from(input.u16());
        let addr = match sel % 4 {
            // Anywhere but the ring page, which only the driver writes.
            0 => input.u64().max(BUF_START),
            1 => RAM1 + off % RAM1_SIZE,
            _ => BUF_START + off % (RAM0 - BUF_START),
        };
        let len = match sel >> 6 {
            0 => u32::from(input.u8()),
            1 => u32::from(input.u16()),
            2 => (RAM0 - BUF_START) as u32,
            _ => input.u32(),
        };
        let flags = u16::from(input.u8()) & (F_NEXT | F_WRITE);
        let next = (sel & 0x20 != 0).then(|| u16::from(input.u8()) % (QSIZE + 2));
        let content = usize::from(input.u8() % 48);
        let bytes: Vec<u8> = (0..content).map(|_| input.u8()).collect();
        if addr >= BUF_START {
            let _ = d.mem.write_slice(&bytes, GuestAddress(addr));
        }
        descs.push((
            addr,
            len,
            flags | if next.is_some() { F_NEXT } else { 0 },
            next,
        ));
    }
    d.push(&descs);
    d.kick();
}

fn dma(d: &mut Driver, input: &mut Input<'_>) {
    let iova = u64::from(input.u8() % 40) * 0x1000 + u64::from(input.u16() % 0x1000);
    let len = usize::from(input.u8() % 64);
    let write = input.u8() & 1 != 0;
    let mut buf = vec![0u8; len];
    // The guest may well let the device write over its own rings (in
    // bypass, or with a mapping there); put the ring page back afterwards
    // so the driver's view stays its own.
    let mut rings = vec![0u8; BUF_START as usize];
    let _ = d.mem.read_slice(&mut rings, GuestAddress(0));
    let _ = if write {
        d.dma.write_slice(&buf, GuestAddress(iova))
    } else {
        d.dma.read_slice(&mut buf, GuestAddress(iova))
    };
    let _ = d.mem.write_slice(&rings, GuestAddress(0));
    // An event buffer, then deliver whatever faulted.
    let size = [24u32, 16, 64][usize::from(input.u8() % 3)];
    let at = d.buf(u64::from(size));
    let idx = d.ev_avail % QSIZE;
    let desc = EVQ_DESC + 16 * u64::from(idx);
    let _ = d.mem.write_obj(at, GuestAddress(desc));
    let _ = d.mem.write_obj(size, GuestAddress(desc + 8));
    let _ = d.mem.write_obj(F_WRITE, GuestAddress(desc + 12));
    let _ = d
        .mem
        .write_obj(idx, GuestAddress(EVQ_AVAIL + 4 + 2 * u64::from(idx)));
    d.ev_avail = d.ev_avail.wrapping_add(1);
    let _ = d.mem.write_obj(d.ev_avail, GuestAddress(EVQ_AVAIL + 2));
    let delivery = d.dev.fault_delivery();
    watched("fault delivery", || delivery.deliver());
    let used: u16 = d.mem.read_obj(GuestAddress(EVQ_USED + 2)).unwrap_or(0);
    while d.ev_used_seen != used {
        let at = EVQ_USED + 4 + 8 * u64::from(d.ev_used_seen % QSIZE);
        let len: u32 = d.mem.read_obj(GuestAddress(at + 4)).unwrap_or(u32::MAX);
        assert!(len == 0 || len == 24, "fault record of {len} bytes");
        d.ev_used_seen = d.ev_used_seen.wrapping_add(1);
    }
}

fn step(d: &mut Driver, input: &mut Input<'_>) -> bool {
    match input.u8() % 10 {
        0..=3 => {
            let (req, writable) = request(input);
            let split = input.u8() & 1 != 0;
            d.submit(&req, writable, split);
            d.kick();
        }
        4 => {
            // Queued without a kick: several requests drain in one pass.
            let (req, writable) = request(input);
            d.submit(&req, writable, false);
        }
        5 => raw_chain(d, input),
        6 => {
            let v = input.u8();
            let (offset, data) = match v >> 6 {
                0 => (CONFIG_BYPASS_OFFSET, vec![v & 1]),
                1 => (CONFIG_BYPASS_OFFSET, vec![v]),
                2 => (u64::from(input.u8() % 48), vec![v; usize::from(v % 5)]),
                _ => (input.u64(), vec![v]),
            };
            watched("a config write", || d.dev.write_config(offset, &data));
            let mut back = [0u8; 4];
            d.dev.read_config(u64::from(input.u8() % 48), &mut back);
            d.check();
        }
        7 => {
            if input.u8() & 1 == 0 {
                watched("a reset", || d.dev.reset());
            } else {
                watched("a system reset", || d.dev.system_reset());
            }
            d.check();
            d.activate();
        }
        8 => dma(d, input),
        _ => {
            if let Ok(mut f) = d.failures.lock() {
                match input.u8() % 3 {
                    0 => f.once = 1 + u32::from(input.u8() % 4),
                    1 => f.rate = input.u8(),
                    _ => f.rate = 0,
                }
            }
        }
    }
    !d.dev.host_lost()
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let Some(mut d) = Driver::new(&mut input) else {
        return;
    };
    while !input.is_empty() {
        if !step(&mut d, &mut input) {
            break;
        }
    }
    d.kick();
});
