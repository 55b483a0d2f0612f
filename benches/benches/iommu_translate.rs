//! Cost of one DMA translation through the virtio-iommu
//! (`EndpointIommu::translate`, then walking the returned iterator as an
//! access does) for a small access inside one mapping: 16 bytes and 4 KiB,
//! in a domain holding 3 and 1000 mappings, and for an endpoint in bypass
//! (identity). `rotate4` cycles over four mappings, the pattern of a
//! virtio-blk request (ring, header, data, status); `rotate9` over nine,
//! more than a translator caches (each access misses); `iommu_memory` is
//! a 16-byte `read_slice` through the whole `IommuMemory` for scale.
//!
//! The state is built through the request queue, as a driver would.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use devices::virtio::iommu::protocol::{
    Status, VIRTIO_IOMMU_MAP_F_READ, VIRTIO_IOMMU_MAP_F_WRITE, VIRTIO_IOMMU_T_ATTACH,
    VIRTIO_IOMMU_T_MAP,
};
use devices::virtio::iommu::{EndpointConfig, EndpointIommu, IommuConfig, VirtioIommu};
use devices::virtio::{VirtioDevice, VirtioInterrupt};
use virtio_queue::desc::split::Descriptor;
use virtio_queue::desc::RawDescriptor;
use virtio_queue::mock::MockSplitQueue;
use virtio_queue::Queue;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap, Iommu, IommuMemory, Permissions};

const PAGE: u64 = 0x1000;
/// Each mapping covers four pages; the next starts after a four-page hole.
const MAPPING: u64 = 4 * PAGE;
const STRIDE: u64 = 2 * MAPPING;
const FLAGS: u32 = VIRTIO_IOMMU_MAP_F_READ | VIRTIO_IOMMU_MAP_F_WRITE;
const DOMAIN: u32 = 1;
const ENDPOINT: u32 = 8;
const QLEN: u16 = 256;
const REQ_BUFS: u64 = 0x10_0000;
const SLOT: u64 = 64;
/// Guest-physical target of every mapping (inside guest memory).
const TARGET: u64 = 0x80_0000;
const MEM_SIZE: u64 = 0x100_0000;

struct NoInterrupt;

impl VirtioInterrupt for NoInterrupt {
    fn notify_queue(&self, _: u16) {}
    fn notify_config(&self) {}
}

fn map_req(i: u64) -> Vec<u8> {
    let iova = i * STRIDE;
    let mut v = vec![VIRTIO_IOMMU_T_MAP, 0, 0, 0];
    v.extend(DOMAIN.to_le_bytes());
    v.extend(iova.to_le_bytes());
    v.extend((iova + MAPPING - 1).to_le_bytes());
    v.extend(TARGET.to_le_bytes());
    v.extend(FLAGS.to_le_bytes());
    v
}

fn attach_req() -> Vec<u8> {
    let mut v = vec![VIRTIO_IOMMU_T_ATTACH, 0, 0, 0];
    v.extend(DOMAIN.to_le_bytes());
    v.extend(ENDPOINT.to_le_bytes());
    v.extend([0; 8]);
    v
}

/// Queues `reqs` as two-descriptor chains (request, 4-byte tail) in
/// descriptor slots from 0, processes them and checks every status.
fn run(
    dev: &mut VirtioIommu,
    mem: &GuestMemoryMmap,
    q: &MockSplitQueue<'_, GuestMemoryMmap>,
    reqs: &[Vec<u8>],
) {
    for (i, req) in reqs.iter().enumerate() {
        let buf = REQ_BUFS + i as u64 * SLOT;
        mem.write_slice(req, GuestAddress(buf)).expect("request");
        let d = (2 * i) as u16;
        let head = Descriptor::new(buf, req.len() as u32, 1, d + 1);
        let tail = Descriptor::new(buf + SLOT - 4, 4, 2, 0);
        q.desc_table()
            .store(d, RawDescriptor::from(head))
            .expect("desc");
        q.desc_table()
            .store(d + 1, RawDescriptor::from(tail))
            .expect("desc");
        let idx = q.avail().idx().load();
        q.avail()
            .ring()
            .ref_at(usize::from(idx % QLEN))
            .expect("avail")
            .store(d);
        q.avail().idx().store(idx.wrapping_add(1));
    }
    dev.process_queue(0);
    for i in 0..reqs.len() as u64 {
        let status: u8 = mem
            .read_obj(GuestAddress(REQ_BUFS + i * SLOT + SLOT - 4))
            .expect("tail");
        assert_eq!(status, Status::Ok as u8, "request {i}");
    }
}

/// A device whose endpoint is attached to a domain with `mappings`
/// mappings, or left unattached in boot bypass when `None`.
fn device(mem: &GuestMemoryMmap, mappings: Option<u64>) -> (VirtioIommu, EndpointIommu) {
    let q = MockSplitQueue::create(mem, GuestAddress(0), QLEN);
    let config = IommuConfig {
        endpoints: vec![EndpointConfig {
            id: ENDPOINT,
            reserved: Vec::new(),
        }],
        ..Default::default()
    };
    let mut dev = VirtioIommu::new(config, mem.clone(), None).expect("device");
    dev.set_acked_features(dev.device_features());
    let queue = q.create_queue::<Queue>().expect("queue");
    dev.activate(vec![(0, queue)], Arc::new(NoInterrupt))
        .expect("activate");
    if let Some(n) = mappings {
        run(&mut dev, mem, &q, &[attach_req()]);
        let batch = u64::from(QLEN / 2);
        let mut i = 0;
        while i < n {
            let reqs: Vec<Vec<u8>> = (i..n.min(i + batch)).map(map_req).collect();
            run(&mut dev, mem, &q, &reqs);
            i += batch;
        }
    }
    let t = dev.translator(ENDPOINT).expect("translator");
    (dev, t)
}

/// Translates and walks the result, as an access does; returns the bytes
/// translated.
fn translate(t: &EndpointIommu, iova: u64, len: usize) -> usize {
    let it = t
        .translate(GuestAddress(iova), len, Permissions::Read)
        .expect("translate");
    it.map(|r| r.length).sum()
}

fn bench_translate(c: &mut Criterion) {
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM_SIZE as usize)])
        .expect("guest memory");
    let mut group = c.benchmark_group("iommu_translate");
    let cases: [(&str, Option<u64>); 3] = [
        ("identity", None),
        ("mapped3", Some(3)),
        ("mapped1000", Some(1000)),
    ];
    for (name, mappings) in cases {
        let (_dev, t) = device(&mem, mappings);
        // The middle mapping, one page in.
        let iova = mappings.map_or(TARGET, |n| (n / 2) * STRIDE + PAGE);
        for len in [16usize, 4096] {
            assert_eq!(translate(&t, iova, len), len);
            group.bench_with_input(BenchmarkId::new(name, len), &len, |b, &len| {
                b.iter(|| translate(&t, black_box(iova), len))
            });
        }
    }
    // Mappings in turn, 16 bytes each: four, and nine (more than a
    // translator caches, so that each access resolves from the state).
    let (_dev, t) = device(&mem, Some(1000));
    for n in [4u64, 9] {
        let iovas: Vec<u64> = (0..n).map(|k| (100 + 100 * k) * STRIDE + 0x40).collect();
        group.bench_function(format!("mapped1000/rotate{n}"), |b| {
            let mut k = 0;
            b.iter(|| {
                k = (k + 1) % iovas.len();
                translate(&t, black_box(iovas[k]), 16)
            })
        });
    }
    let dma = IommuMemory::new(mem.clone(), t, true, ());
    let iova = 500 * STRIDE + PAGE;
    group.bench_function("mapped1000/iommu_memory_read16", |b| {
        let mut buf = [0u8; 16];
        b.iter(|| {
            dma.read_slice(&mut buf, GuestAddress(black_box(iova)))
                .expect("read");
            buf[0]
        })
    });
    group.finish();
}

criterion_group!(benches, bench_translate);
criterion_main!(benches);
