//! The translation cache (`translate.rs`) against every change that can
//! remove or change a translation, through real request queues: each test
//! first makes the translator cache the old translation (checked), then
//! changes the state the way a guest would, then checks that the next
//! access sees the new state (a fault on the event queue, or the new
//! target). A cache that missed a change fails them.

use std::sync::atomic::{AtomicBool, Ordering};

use vm_memory::{GuestAddress, Iommu, Permissions};

use super::*;

/// A second guest-physical target.
const TARGET2: u64 = 0x90_0000;
const OLD: u32 = 0x1111_1111;
const NEW: u32 = 0x2222_2222;
/// What the identity translation of IOVA 0x1000 reads.
const IDENTITY: u32 = 0x3333_3333;

fn memory() -> GuestMemoryMmap {
    let mem = guest_memory();
    mem.write_obj(OLD, GuestAddress(TARGET)).expect("write");
    mem.write_obj(NEW, GuestAddress(TARGET2)).expect("write");
    mem.write_obj(IDENTITY, GuestAddress(0x1000))
        .expect("write");
    mem
}

/// A read fault record (virtio 1.3 §5.13.7.1) of `endpoint` at `address`.
fn read_fault(reason: u8, endpoint: u32, address: u64) -> Vec<u8> {
    let mut v = vec![reason, 0, 0, 0, 0x01, 0x01, 0, 0];
    v.extend(endpoint.to_le_bytes());
    v.extend([0; 4]);
    v.extend(address.to_le_bytes());
    v
}

/// Delivers the oldest pending fault into a fresh event buffer and returns
/// its bytes (0xaa filler when none was pending).
fn next_fault(h: &mut Harness<'_>) -> Vec<u8> {
    let b = h.add_event_buffer(24);
    h.dev.process_queue(EVENT_QUEUE);
    h.bytes(b, 24)
}

type Dma = IommuMemory<GuestMemoryMmap, EndpointIommu>;

/// Reads the u32 at IOVA 0x1000 twice, the second time from the cache.
fn read_cached(dma: &Dma) -> Option<u32> {
    let first = dma.read_obj::<u32>(GuestAddress(0x1000)).ok();
    assert!(dma.iommu().is_cached(0x1000, 4), "cached after a read");
    let second = dma.read_obj::<u32>(GuestAddress(0x1000)).ok();
    assert_eq!(first, second);
    second
}

fn read(dma: &Dma) -> Option<u32> {
    dma.read_obj::<u32>(GuestAddress(0x1000)).ok()
}

/// Endpoint 8 in domain 1, IOVA 0x1000 mapped to TARGET and cached.
fn mapped<'a>(mem: &'a GuestMemoryMmap) -> (Harness<'a>, Dma) {
    let mut h = Harness::new(mem, config(), all_features());
    assert_eq!(h.request(&attach(1, 8, 0)), OK);
    assert_eq!(h.request(&map(1, 0x1000, 0x1fff, TARGET, RW)), OK);
    let dma = h.dma(8);
    assert_eq!(read_cached(&dma), Some(OLD));
    (h, dma)
}

#[test]
fn unmap_faults_the_cached_translation() {
    let mem = memory();
    let (mut h, dma) = mapped(&mem);
    assert_eq!(h.request(&unmap(1, 0x1000, 0x1fff)), OK);
    assert!(!dma.iommu().is_cached(0x1000, 4));
    assert_eq!(read(&dma), None);
    assert_eq!(next_fault(&mut h), read_fault(2, 8, 0x1000));
    assert_eq!(next_fault(&mut h), vec![0xaa; 24], "one fault");
}

#[test]
fn unmap_of_another_range_keeps_the_translation_right() {
    let mem = memory();
    let (mut h, dma) = mapped(&mem);
    assert_eq!(h.request(&map(1, 0x4000, 0x4fff, TARGET2, RW)), OK);
    assert_eq!(h.request(&unmap(1, 0x4000, 0x4fff)), OK);
    assert_eq!(read_cached(&dma), Some(OLD));
}

#[test]
fn detach_drops_the_cached_translation() {
    let mem = memory();
    let (mut h, dma) = mapped(&mem);
    // Boot bypass is on: unattached, endpoint 8 sees guest-physical memory.
    assert_eq!(h.request(&detach(1, 8)), OK);
    assert_eq!(read_cached(&dma), Some(IDENTITY));
    // And with bypass off, nothing.
    let (mut h, dma) = mapped(&mem);
    h.dev.write_config(CONFIG_BYPASS_OFFSET, &[0]);
    assert_eq!(read_cached(&dma), Some(OLD), "attached: bypass is moot");
    assert_eq!(h.request(&detach(1, 8)), OK);
    assert_eq!(read(&dma), None);
    assert_eq!(next_fault(&mut h), read_fault(1, 8, 0x1000));
}

#[test]
fn bypass_changes_drop_the_cached_identity() {
    let mem = memory();
    let mut h = Harness::new(&mem, config(), all_features());
    let dma = h.dma(9);
    assert_eq!(read_cached(&dma), Some(IDENTITY));
    h.dev.write_config(CONFIG_BYPASS_OFFSET, &[0]);
    assert_eq!(read(&dma), None);
    assert_eq!(next_fault(&mut h), read_fault(1, 9, 0x1000));
    h.dev.write_config(CONFIG_BYPASS_OFFSET, &[1]);
    assert_eq!(read_cached(&dma), Some(IDENTITY));
    // A bypass domain, then a mapped one.
    assert_eq!(h.request(&attach(1, 9, VIRTIO_IOMMU_ATTACH_F_BYPASS)), OK);
    assert_eq!(read_cached(&dma), Some(IDENTITY));
    assert_eq!(h.request(&attach(2, 9, 0)), OK);
    assert_eq!(read(&dma), None);
    assert_eq!(next_fault(&mut h), read_fault(2, 9, 0x1000));
}

#[test]
fn attach_to_another_domain_drops_the_cached_translation() {
    let mem = memory();
    let (mut h, dma) = mapped(&mem);
    // Domain 2 maps the same IOVA elsewhere; endpoint 9 keeps it alive.
    assert_eq!(h.request(&attach(2, 9, 0)), OK);
    assert_eq!(h.request(&map(2, 0x1000, 0x1fff, TARGET2, RW)), OK);
    assert_eq!(
        read_cached(&dma),
        Some(OLD),
        "MAP elsewhere changes nothing"
    );
    assert_eq!(h.request(&attach(2, 8, 0)), OK);
    assert_eq!(read_cached(&dma), Some(NEW));
    // Into an empty domain: nothing mapped.
    assert_eq!(h.request(&attach(3, 8, 0)), OK);
    assert_eq!(read(&dma), None);
    assert_eq!(next_fault(&mut h), read_fault(2, 8, 0x1000));
}

#[test]
fn remap_of_the_same_iova_gives_the_new_target() {
    let mem = memory();
    let (mut h, dma) = mapped(&mem);
    for _ in 0..3 {
        assert_eq!(h.request(&unmap(1, 0x1000, 0x1fff)), OK);
        assert_eq!(h.request(&map(1, 0x1000, 0x1fff, TARGET2, RW)), OK);
        assert_eq!(read_cached(&dma), Some(NEW));
        assert_eq!(h.request(&unmap(1, 0x1000, 0x1fff)), OK);
        assert_eq!(h.request(&map(1, 0x1000, 0x1fff, TARGET, RW)), OK);
        assert_eq!(read_cached(&dma), Some(OLD));
    }
    // Same target, fewer permissions: the write faults.
    assert_eq!(h.request(&unmap(1, 0x1000, 0x1fff)), OK);
    assert_eq!(
        h.request(&map(1, 0x1000, 0x1fff, TARGET, VIRTIO_IOMMU_MAP_F_READ)),
        OK
    );
    assert!(dma.write_obj(0u32, GuestAddress(0x1000)).is_err());
    let mut write_fault = read_fault(2, 8, 0x1000);
    write_fault[4] = 0x02;
    assert_eq!(next_fault(&mut h), write_fault);
    assert_eq!(read_cached(&dma), Some(OLD));
}

/// map, translate, unmap, map elsewhere, translate: straight on the
/// translator, with no read in between that could refill the cache.
#[test]
fn hostile_sequence_gives_the_new_target() {
    let mem = memory();
    let mut h = Harness::new(&mem, config(), all_features());
    let t = h.dev.translator(8).expect("translator");
    let target = |t: &EndpointIommu| -> Option<Vec<(u64, usize)>> {
        let it = t
            .translate(GuestAddress(0x1010), 16, Permissions::Read)
            .ok()?;
        Some(it.map(|r| (r.base.0, r.length)).collect())
    };
    assert_eq!(h.request(&attach(1, 8, 0)), OK);
    assert_eq!(h.request(&map(1, 0x1000, 0x1fff, TARGET, RW)), OK);
    assert_eq!(target(&t), Some(vec![(TARGET + 0x10, 16)]));
    assert!(t.is_cached(0x1010, 16));
    assert_eq!(h.request(&unmap(1, 0x1000, 0x1fff)), OK);
    assert_eq!(h.request(&map(1, 0x1000, 0x1fff, TARGET2, RW)), OK);
    assert_eq!(target(&t), Some(vec![(TARGET2 + 0x10, 16)]));
    // Unmapped and mapped again in one bigger MAP.
    assert_eq!(h.request(&unmap(1, 0, 0xffff)), OK);
    assert_eq!(h.request(&map(1, 0, 0x3fff, TARGET, RW)), OK);
    assert_eq!(target(&t), Some(vec![(TARGET + 0x1010, 16)]));
}

#[test]
fn map_keeps_the_cache_and_adds_the_new_mapping() {
    let mem = memory();
    let (mut h, dma) = mapped(&mem);
    assert_eq!(h.request(&map(1, 0x2000, 0x2fff, TARGET2, RW)), OK);
    assert!(dma.iommu().is_cached(0x1000, 4), "MAP only adds");
    assert_eq!(
        dma.read_obj::<u32>(GuestAddress(0x2000)).ok(),
        Some(NEW),
        "the new mapping is used"
    );
    // An access across both mappings is not cached and gets both pieces.
    let t = dma.iommu();
    let pieces: Vec<(u64, usize)> = t
        .translate(GuestAddress(0x1ff8), 16, Permissions::Read)
        .expect("across")
        .map(|r| (r.base.0, r.length))
        .collect();
    assert_eq!(pieces, vec![(TARGET + 0xff8, 8), (TARGET2, 8)]);
    assert!(!t.is_cached(0x1ff8, 16));
}

#[test]
fn reset_and_release_drop_the_cache() {
    let mem = memory();
    let (mut h, dma) = mapped(&mem);
    h.dev.reset();
    assert_eq!(read_cached(&dma), Some(IDENTITY), "reset: unattached");
    h.reactivate(all_features());
    assert_eq!(h.request(&attach(1, 8, 0)), OK);
    assert_eq!(read(&dma), None, "a new domain 1 starts empty");
    let (mut h, dma) = mapped(&mem);
    assert_eq!(h.dev.release_endpoint(8).expect("release"), Some(1));
    assert_eq!(read_cached(&dma), Some(IDENTITY));
    h.dev.write_config(CONFIG_BYPASS_OFFSET, &[0]);
    h.dev.system_reset();
    assert_eq!(read(&dma), Some(IDENTITY), "bypass back to its boot value");
}

#[test]
fn clones_have_caches_of_their_own() {
    let mem = memory();
    let (_h, dma) = mapped(&mem);
    let clone = dma.iommu().as_ref().clone();
    assert!(!clone.is_cached(0x1000, 4));
    assert!(dma.iommu().is_cached(0x1000, 4));
}

/// Another thread translates in a loop while the request path unmaps:
/// every translation that starts after the UNMAP completed faults, even
/// though the thread's cache held the mapping.
#[test]
fn unmap_applies_to_accesses_on_other_threads_once_complete() {
    let mem = memory();
    let mut h = Harness::new(&mem, config(), all_features());
    assert_eq!(h.request(&attach(1, 8, 0)), OK);
    let t = h.dev.translator(8).expect("translator");
    for round in 0..50 {
        assert_eq!(h.request(&map(1, 0x1000, 0x1fff, TARGET, RW)), OK);
        let warm = AtomicBool::new(false);
        let done = AtomicBool::new(false);
        std::thread::scope(|s| {
            let worker = s.spawn(|| {
                let mut after = 0;
                while after < 100 {
                    let complete = done.load(Ordering::SeqCst);
                    let r = t.translate(GuestAddress(0x1000), 16, Permissions::Read);
                    if complete {
                        assert!(
                            r.is_err(),
                            "round {round}: translated after UNMAP completed"
                        );
                        after += 1;
                    } else if let Ok(it) = r {
                        let pieces: Vec<u64> = it.map(|r| r.base.0).collect();
                        assert_eq!(pieces, vec![TARGET]);
                        warm.store(true, Ordering::SeqCst);
                    }
                }
            });
            while !warm.load(Ordering::SeqCst) {
                std::hint::spin_loop();
            }
            assert_eq!(h.request(&unmap(1, 0x1000, 0x1fff)), OK);
            done.store(true, Ordering::SeqCst);
            worker.join().expect("worker");
        });
    }
}

/// Random requests over a small IOVA space, and after each one random
/// accesses through a long-lived translator (with its cache) and through
/// a fresh one (resolved from the state): both agree, always.
#[test]
fn cached_and_uncached_translations_agree() {
    let mem = memory();
    let mut hits = 0;
    for round in 0..8u64 {
        let mut h = Harness::new(&mem, config(), all_features());
        let mut next = crate::test_rng::xorshift(
            0x2545_f491_4f6c_dd1du64 ^ (round + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15),
        );
        let long = [
            h.dev.translator(8).expect("t"),
            h.dev.translator(9).expect("t"),
        ];
        for _ in 0..300 {
            let page = |n: u64| n * 0x1000;
            match next() % 8 {
                0..=2 => {
                    let start = page(next() % 8);
                    let end = start + page(1 + next() % 2) - 1;
                    let phys = [TARGET, TARGET2, 0x1000][(next() % 3) as usize];
                    let flags = [RW, VIRTIO_IOMMU_MAP_F_READ, VIRTIO_IOMMU_MAP_F_WRITE]
                        [(next() % 3) as usize];
                    h.request(&map(1 + (next() % 2) as u32, start, end, phys, flags));
                }
                3 | 4 => {
                    let start = page(next() % 8);
                    let end = start + page(1 + next() % 3) - 1;
                    h.request(&unmap(1 + (next() % 2) as u32, start, end));
                }
                5 => {
                    let flags = if next().is_multiple_of(4) {
                        VIRTIO_IOMMU_ATTACH_F_BYPASS
                    } else {
                        0
                    };
                    h.request(&attach(
                        1 + (next() % 3) as u32,
                        8 + (next() % 2) as u32,
                        flags,
                    ));
                }
                6 => {
                    h.request(&detach(1 + (next() % 3) as u32, 8 + (next() % 2) as u32));
                }
                _ => h
                    .dev
                    .write_config(CONFIG_BYPASS_OFFSET, &[(next() % 2) as u8]),
            }
            for _ in 0..6 {
                let ep = (next() % 2) as usize;
                let iova = next() % 0xa000;
                let len = [1usize, 4, 16, 0x200, 0x1000, 0x1800][(next() % 6) as usize];
                let access = [Permissions::Read, Permissions::Write][(next() % 2) as usize];
                let last = iova + len as u64 - 1;
                if long[ep].is_cached(iova, len as u64) {
                    hits += 1;
                }
                let fresh = h.dev.translator(8 + ep as u32).expect("t");
                let outcome = |t: &EndpointIommu| {
                    t.translate(GuestAddress(iova), len, access)
                        .map(|it| it.map(|r| (r.base.0, r.length)).collect::<Vec<_>>())
                        .map_err(|e| e.to_string())
                };
                let want = outcome(&fresh);
                assert_eq!(
                    outcome(&long[ep]),
                    want,
                    "round {round}: endpoint {} {iova:#x}..={last:#x} {access:?}",
                    8 + ep
                );
                assert_eq!(outcome(&long[ep]), want, "again, from the cache");
            }
        }
    }
    assert!(hits > 1000, "the cache was used {hits} times");
}
