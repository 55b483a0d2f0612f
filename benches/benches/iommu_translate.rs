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

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use devices::virtio::iommu::{EndpointIommu, VirtioIommu};
use minivmm_benches::{activated_device, attach_req, map_req, serve, QLEN};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap, Iommu, IommuMemory, Permissions};

const PAGE: u64 = 0x1000;
/// Each mapping covers four pages; the next starts after a four-page hole.
const MAPPING: u64 = 4 * PAGE;
const STRIDE: u64 = 2 * MAPPING;
const DOMAIN: u32 = 1;
const ENDPOINT: u32 = 8;
/// Guest-physical target of every mapping (inside guest memory).
const TARGET: u64 = 0x80_0000;
const MEM_SIZE: u64 = 0x100_0000;

/// MAP of the `i`th mapping: `i * STRIDE`, `MAPPING` bytes, to `TARGET`.
fn map_i(i: u64) -> Vec<u8> {
    map_req(DOMAIN, i * STRIDE, MAPPING, TARGET)
}

/// A device whose endpoint is attached to a domain with `mappings`
/// mappings, or left unattached in boot bypass when `None`.
fn device(mem: &GuestMemoryMmap, mappings: Option<u64>) -> (VirtioIommu, EndpointIommu) {
    let (mut dev, q) = activated_device(mem, ENDPOINT);
    if let Some(n) = mappings {
        serve(&mut dev, mem, &q, &[attach_req(DOMAIN, ENDPOINT)]);
        let batch = u64::from(QLEN / 2);
        let mut i = 0;
        while i < n {
            let reqs: Vec<Vec<u8>> = (i..n.min(i + batch)).map(map_i).collect();
            serve(&mut dev, mem, &q, &reqs);
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
