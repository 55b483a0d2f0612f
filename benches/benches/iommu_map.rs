//! virtio-iommu MAP+UNMAP cost against the number of mappings already in
//! the domain (1, 1k, 100k, 1M): once at the request-handler level
//! (`handle_map`/`handle_unmap` on a parsed request) and once through the
//! whole request queue (chain parsing, state lock, handler, tail, used ring,
//! event suppression). Each iteration maps and unmaps one 4 KiB page in a
//! hole in the middle of the existing mappings.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion};
use devices::virtio::iommu::domains::{IommuState, Limits};
use devices::virtio::iommu::mappings::Mapping;
use devices::virtio::iommu::protocol::{ReqMap, ReqUnmap, Status};
use devices::virtio::iommu::request::{handle_map, handle_unmap, RequestContext};
use devices::virtio::iommu::state::StateLock;
use devices::virtio::iommu::{IommuConfig, VirtioIommu};
use devices::virtio::VirtioDevice;
use minivmm_benches::{
    activated_device, attach_req, enqueue, map_req, serve, tail_status, unmap_req, FLAGS, QLEN,
};
use vm_memory::{GuestAddress, GuestMemoryMmap};

const SIZES: [u64; 4] = [1, 1_000, 100_000, 1_000_000];
const PAGE: u64 = 0x1000;
const DOMAIN: u32 = 1;
const ENDPOINT: u32 = 8;

/// Existing mapping `i` covers the page at `2 * i`; pages in between stay
/// free.
fn existing(i: u64) -> u64 {
    2 * i * PAGE
}

/// A free page in the middle of the existing mappings.
fn probe_page(n: u64) -> u64 {
    existing(n / 2) + PAGE
}

fn state_with(n: u64) -> StateLock {
    let limits = Limits {
        granule: PAGE,
        input_start: 0,
        input_end: u64::MAX,
        domain_start: 0,
        domain_end: u32::MAX,
        max_mappings: 2 << 20,
        max_total_mappings: 2 << 20,
    };
    let mut state = IommuState::new([(ENDPOINT, Vec::new())], limits, true);
    state.attach(ENDPOINT, DOMAIN, false).expect("attach");
    for i in 0..n {
        let m = Mapping {
            start: existing(i),
            end: existing(i) + PAGE - 1,
            phys: existing(i),
            flags: FLAGS,
        };
        state.map(DOMAIN, m).expect("populate");
    }
    StateLock::new(state)
}

fn bench_request_level(c: &mut Criterion) {
    let features = VirtioIommu::new(IommuConfig::default(), guest_memory(), None)
        .expect("device")
        .device_features();
    let mut group = c.benchmark_group("iommu_map_unmap/request");
    for n in SIZES {
        let state = state_with(n);
        let iova = probe_page(n);
        let map = ReqMap {
            domain: DOMAIN.into(),
            virt_start: iova.into(),
            virt_end: (iova + PAGE - 1).into(),
            phys_start: iova.into(),
            flags: FLAGS.into(),
        };
        let unmap = ReqUnmap {
            domain: DOMAIN.into(),
            virt_start: iova.into(),
            virt_end: (iova + PAGE - 1).into(),
            reserved: [0; 4],
        };
        let mut ctx = RequestContext {
            state: &state,
            host: None,
            acked_features: features,
            probe_size: 512,
        };
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                let m = handle_map(&mut ctx, black_box(&map));
                let u = handle_unmap(&mut ctx, black_box(&unmap));
                (m, u)
            })
        });
        assert_eq!(handle_map(&mut ctx, &map), Status::Ok);
        assert_eq!(handle_unmap(&mut ctx, &unmap), Status::Ok);
        let len = ctx
            .state
            .read()
            .domain(DOMAIN)
            .and_then(|d| d.mappings())
            .map(|m| m.len() as u64);
        assert_eq!(len, Some(n));
    }
    group.finish();
}

/// Requests timed per batch: the domain never holds more than `n + BATCH`
/// mappings, and the clock is read once per batch.
const BATCH: u64 = 64;

fn page_requests(first: u64, count: u64) -> Vec<(ReqMap, ReqUnmap)> {
    (0..count)
        .map(|k| {
            let iova = first + 2 * k * PAGE;
            (
                ReqMap {
                    domain: DOMAIN.into(),
                    virt_start: iova.into(),
                    virt_end: (iova + PAGE - 1).into(),
                    phys_start: iova.into(),
                    flags: FLAGS.into(),
                },
                ReqUnmap {
                    domain: DOMAIN.into(),
                    virt_start: iova.into(),
                    virt_end: (iova + PAGE - 1).into(),
                    reserved: [0; 4],
                },
            )
        })
        .collect()
}

/// MAP alone and UNMAP alone, each timed over batches of distinct pages
/// (the other half of each pair runs untimed).
fn bench_map_and_unmap_separately(c: &mut Criterion) {
    let features = VirtioIommu::new(IommuConfig::default(), guest_memory(), None)
        .expect("device")
        .device_features();
    for op in ["map", "unmap"] {
        let mut group = c.benchmark_group(format!("iommu_{op}/request"));
        for n in SIZES {
            let state = state_with(n);
            let reqs = page_requests(existing(n) + PAGE, BATCH);
            let mut ctx = RequestContext {
                state: &state,
                host: None,
                acked_features: features,
                probe_size: 512,
            };
            group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
                b.iter_custom(|iters| {
                    let mut timed = std::time::Duration::ZERO;
                    for _ in 0..iters.div_ceil(BATCH) {
                        if op == "map" {
                            let t = std::time::Instant::now();
                            for (m, _) in &reqs {
                                black_box(handle_map(&mut ctx, black_box(m)));
                            }
                            timed += t.elapsed();
                            for (_, u) in &reqs {
                                handle_unmap(&mut ctx, u);
                            }
                        } else {
                            for (m, _) in &reqs {
                                handle_map(&mut ctx, m);
                            }
                            let t = std::time::Instant::now();
                            for (_, u) in &reqs {
                                black_box(handle_unmap(&mut ctx, black_box(u)));
                            }
                            timed += t.elapsed();
                        }
                    }
                    // Per request: scale the batches back to `iters`.
                    timed.mul_f64(iters as f64 / (iters.div_ceil(BATCH) * BATCH) as f64)
                })
            });
            let len = ctx
                .state
                .read()
                .domain(DOMAIN)
                .and_then(|d| d.mappings())
                .map(|m| m.len() as u64);
            assert_eq!(len, Some(n), "every timed MAP was undone");
        }
        group.finish();
    }
}

fn guest_memory() -> GuestMemoryMmap {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x100_0000)]).expect("guest memory")
}

/// MAP of the page at `iova`, identity.
fn map_page(iova: u64) -> Vec<u8> {
    map_req(DOMAIN, iova, PAGE, iova)
}

fn bench_queue_level(c: &mut Criterion) {
    let mut group = c.benchmark_group("iommu_map_unmap/queue");
    for n in SIZES {
        let mem = guest_memory();
        let (mut dev, q) = activated_device(&mem, ENDPOINT);
        serve(&mut dev, &mem, &q, &[attach_req(DOMAIN, ENDPOINT)]);
        let batch = u64::from(QLEN / 2);
        let mut i = 0;
        while i < n {
            let reqs: Vec<Vec<u8>> = (i..n.min(i + batch))
                .map(|k| map_page(existing(k)))
                .collect();
            serve(&mut dev, &mem, &q, &reqs);
            i += batch;
        }
        let iova = probe_page(n);
        let reqs = [map_page(iova), unmap_req(DOMAIN, iova, PAGE)];
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter_batched(
                || enqueue(&mem, &q, &reqs),
                |()| dev.process_queue(0),
                BatchSize::PerIteration,
            )
        });
        assert_eq!(tail_status(&mem, 0), Status::Ok as u8);
        assert_eq!(tail_status(&mem, 1), Status::Ok as u8);
    }
    group.finish();
}

criterion_group!(
    benches,
    bench_map_and_unmap_separately,
    bench_request_level,
    bench_queue_level
);
criterion_main!(benches);
