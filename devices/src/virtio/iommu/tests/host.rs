//! The host side of assigned endpoints (issue 8, defects 2, 3, 6 and 8):
//! requests go through real queues, the host IOMMU is a [`FakeDma`] that
//! fails on demand, and after every request its address spaces are
//! compared with what the virtual state gives each endpoint.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::super::testing::{DmaCall, DmaOp, FakeDma, FakeDmaHandle};
use super::super::{DmaError, HostDma, IommuConfig};
use super::*;
use crate::{GuestEvent, GuestEvents};

/// Endpoint 8 is emulated; 16 and 24 are assigned (have host address
/// spaces).
const EMULATED: u32 = 8;
const A: u32 = 16;
const B: u32 = 24;
const DEVERR: u8 = Status::DevErr as u8;
const NOMEM: u8 = Status::NoMem as u8;

/// Guest RAM in two regions, like a guest with RAM above 4 GiB.
fn two_region_memory() -> GuestMemoryMmap {
    GuestMemoryMmap::from_ranges(&[
        (GuestAddress(0), 0x100_0000),
        (GuestAddress(0x1_0000_0000), 0x10_0000),
    ])
    .expect("guest memory")
}

fn host_config(boot_bypass: bool) -> IommuConfig {
    IommuConfig {
        endpoints: [EMULATED, A, B]
            .into_iter()
            .map(|id| EndpointConfig {
                id,
                reserved: vec![],
            })
            .collect(),
        domain_range: 1..=u32::MAX,
        boot_bypass,
        max_mappings_per_domain: 64,
        max_mappings_total: 96,
        ..Default::default()
    }
}

struct HostHarness<'a> {
    h: Harness<'a>,
    fake: FakeDmaHandle,
}

impl<'a> HostHarness<'a> {
    fn new(mem: &'a GuestMemoryMmap, boot_bypass: bool, unmap_all: bool) -> Self {
        let (fake, handle) = FakeDma::new(&[A, B], unmap_all);
        let host = HostDma {
            backend: Box::new(fake),
            endpoints: vec![A, B],
        };
        let h = Harness::with_backend(mem, host_config(boot_bypass), all_features(), Some(host));
        let me = Self { h, fake: handle };
        me.check();
        me
    }

    /// The rule of `host.rs`, and no map ever hit an IOVA already mapped.
    fn check(&self) {
        let fake = self.fake.clone();
        if let Err(e) = self.h.dev.check_host(&move |ep| fake.mappings(ep)) {
            panic!("{e}");
        }
        assert_eq!(self.fake.refused_overlaps(), 0, "a map hit a mapped IOVA");
    }

    fn request(&mut self, req: &[u8]) -> u8 {
        let status = self.h.request(req);
        self.check();
        status
    }

    fn fail_when(&self, f: impl Fn(&DmaCall) -> bool + Send + 'static) {
        self.fake.inject(Box::new(move |c| {
            f(c).then(|| DmaError::Failed("injected".into()))
        }));
    }

    fn ranges(&self, ep: u32) -> Vec<(u64, u64)> {
        self.fake
            .mappings(ep)
            .iter()
            .map(|m| (m.iova, m.size))
            .collect()
    }
}

fn identity(mem: &GuestMemoryMmap) -> Vec<(u64, u64)> {
    use vm_memory::{GuestMemoryBackend, GuestMemoryRegion};
    mem.iter().map(|r| (r.start_addr().0, r.len())).collect()
}

const PAGE: u64 = 0x1000;

fn page_map(domain: u32, n: u64) -> Vec<u8> {
    map(domain, n * PAGE, n * PAGE + PAGE - 1, TARGET, RW)
}

/// Defect 2: an ATTACH whose replay fails half-way leaves nothing of it in
/// the container; the endpoint stays where it was, and a later ATTACH,
/// DETACH and reset find the container exactly as the state says (before
/// the fix the replayed half stayed and later MAPs hit EEXIST).
#[test]
fn attach_replay_failing_half_way_is_undone() {
    let mem = guest_memory();
    let mut t = HostHarness::new(&mem, false, true);
    assert_eq!(t.request(&attach(1, EMULATED, 0)), OK);
    for n in 0..6 {
        assert_eq!(t.request(&page_map(1, n)), OK);
    }
    t.fail_when(|c| c.op == DmaOp::Map && c.iova == 3 * PAGE);
    assert_eq!(t.request(&attach(1, A, 0)), DEVERR);
    assert!(
        t.fake.mappings(A).is_empty(),
        "the first three were unmapped"
    );
    t.fake.stop_injecting();
    assert_eq!(t.request(&detach(1, A)), INVAL, "A was not attached");
    assert_eq!(t.request(&attach(1, A, 0)), OK);
    assert_eq!(t.fake.mappings(A).len(), 6);
    assert_eq!(t.request(&page_map(1, 7)), OK, "no EEXIST");
    assert_eq!(t.request(&detach(1, A)), OK);
    assert!(t.fake.mappings(A).is_empty());
    assert_eq!(t.request(&attach(1, A, 0)), OK);
    t.h.dev.reset();
    t.check();
    assert_eq!(t.fake.total(), 0);
}

/// Defect 2: a MAP that the host accepts for one endpoint of a domain and
/// refuses for the other is rolled back in the first; the guest gets the
/// host's reason and nothing is mapped anywhere.
#[test]
fn map_refused_by_one_container_is_rolled_back_in_the_others() {
    let mem = guest_memory();
    let mut t = HostHarness::new(&mem, false, true);
    assert_eq!(t.request(&attach(1, A, 0)), OK);
    assert_eq!(t.request(&attach(1, B, 0)), OK);
    assert_eq!(t.request(&attach(1, EMULATED, 0)), OK);
    t.fake.inject(Box::new(|c| {
        (c.op == DmaOp::Map && c.endpoint == B).then(|| DmaError::NoResources("ENOSPC".into()))
    }));
    assert_eq!(t.request(&page_map(1, 2)), NOMEM);
    assert!(t.fake.mappings(A).is_empty() && t.fake.mappings(B).is_empty());
    assert!(t
        .h
        .dma(EMULATED)
        .read_obj::<u8>(GuestAddress(2 * PAGE))
        .is_err());
    t.fake.stop_injecting();
    assert_eq!(t.request(&page_map(1, 2)), OK);
    assert_eq!(t.ranges(A), vec![(2 * PAGE, PAGE)]);
    assert_eq!(t.ranges(B), vec![(2 * PAGE, PAGE)]);
}

/// Defect 2: a bypass identity map that fails on the second RAM region is
/// undone for the first; the ATTACH fails and changes nothing.
#[test]
fn partly_failed_identity_map_is_undone() {
    let mem = two_region_memory();
    let mut t = HostHarness::new(&mem, false, true);
    t.fail_when(|c| c.op == DmaOp::Map && c.iova == 0x1_0000_0000);
    assert_eq!(
        t.request(&attach(5, A, VIRTIO_IOMMU_ATTACH_F_BYPASS)),
        DEVERR
    );
    assert!(t.fake.mappings(A).is_empty());
    t.fake.stop_injecting();
    assert_eq!(t.request(&attach(5, A, VIRTIO_IOMMU_ATTACH_F_BYPASS)), OK);
    assert_eq!(t.ranges(A), identity(&mem));
}

/// Defect 2: a host UNMAP that fails cannot leave the mapping behind: the
/// endpoint is quarantined (its container emptied), the UNMAP takes effect
/// for everyone else, and requests naming the endpoint get DEVERR until a
/// reset; the event is logged once (rate-limited).
#[test]
fn failed_host_unmap_quarantines_the_endpoint() {
    let mem = guest_memory();
    let mut t = HostHarness::new(&mem, false, true);
    assert_eq!(t.request(&attach(1, A, 0)), OK);
    assert_eq!(t.request(&attach(1, B, 0)), OK);
    assert_eq!(t.request(&page_map(1, 1)), OK);
    assert_eq!(t.request(&page_map(1, 2)), OK);
    t.fail_when(|c| c.op == DmaOp::Unmap && c.endpoint == A);
    assert_eq!(t.request(&unmap(1, PAGE, 2 * PAGE - 1)), OK);
    assert!(t.h.dev.is_quarantined(A));
    assert!(t.fake.mappings(A).is_empty(), "emptied by unmap-all");
    assert_eq!(t.ranges(B), vec![(2 * PAGE, PAGE)]);
    t.fake.stop_injecting();
    // Requests for A: DEVERR. The domain goes on for B.
    assert_eq!(t.request(&detach(1, A)), DEVERR);
    assert_eq!(t.request(&attach(2, A, 0)), DEVERR);
    let w = t.h.submit(&probe(A), 516);
    t.h.dev.process_queue(REQUEST_QUEUE);
    t.h.used();
    assert_eq!(t.h.byte(w + 512), DEVERR, "PROBE of a quarantined endpoint");
    assert_eq!(t.request(&page_map(1, 3)), OK);
    assert!(t.fake.mappings(A).is_empty(), "A stays empty");
    assert_eq!(t.ranges(B), vec![(2 * PAGE, PAGE), (3 * PAGE, PAGE)]);
    // A reset lifts the quarantine.
    t.h.dev.reset();
    t.check();
    assert!(!t.h.dev.is_quarantined(A));
}

/// Defect 2: without unmap-all (Linux before 5.12), emptying goes range by
/// range; a failed unmap-all is followed by range-by-range unmapping too.
#[test]
fn emptying_falls_back_to_range_by_range() {
    for unmap_all in [false, true] {
        let mem = guest_memory();
        let mut t = HostHarness::new(&mem, false, unmap_all);
        assert_eq!(t.request(&attach(1, A, 0)), OK);
        for n in 0..4 {
            assert_eq!(t.request(&page_map(1, n)), OK);
        }
        t.fake.take_log();
        if unmap_all {
            t.fail_when(|c| c.op == DmaOp::UnmapAll);
        }
        assert_eq!(
            t.request(&detach(1, A)),
            if unmap_all { DEVERR } else { OK }
        );
        assert!(t.fake.mappings(A).is_empty());
        let log = t.fake.take_log();
        let ranges = log.iter().filter(|l| l.starts_with("unmap e16")).count();
        assert!(ranges >= 2, "range by range: {log:?}");
        assert_eq!(t.h.dev.is_quarantined(A), unmap_all);
    }
}

/// Defect 2, last resort: when even emptying fails, the device stops
/// answering anything but DEVERR and raises the stop event once.
#[test]
fn host_that_cannot_be_emptied_stops_the_vm() {
    let mem = guest_memory();
    let mut t = HostHarness::new(&mem, false, false);
    let events = Arc::new(GuestEvents::new().expect("eventfd"));
    t.h.dev.set_stop_events(events.clone());
    assert_eq!(t.request(&attach(1, A, 0)), OK);
    assert_eq!(t.request(&page_map(1, 1)), OK);
    t.fail_when(|c| c.op == DmaOp::Unmap);
    assert_eq!(t.request(&unmap(1, 0, u64::MAX)), OK);
    assert!(t.h.dev.host_lost());
    assert!(matches!(events.get(), Some(GuestEvent::DeviceFailure(_))));
    assert_eq!(events.eventfd().read().ok(), Some(1));
    t.fake.stop_injecting();
    assert_eq!(t.request(&attach(2, B, 0)), DEVERR);
    assert_eq!(t.request(&page_map(1, 2)), DEVERR);
    assert!(events.eventfd().read().is_err(), "raised once");
}

/// Defect 6: with `bypass` = 1 an unattached assigned endpoint has the
/// identity map of all guest RAM, from boot; attaching it to a mapped
/// domain replaces it with the domain's mappings, DETACH brings it back,
/// clearing `bypass` removes it, setting it again restores it, and a
/// system reset returns to the boot value. Before the fix the containers
/// started empty and were emptied on DETACH whatever `bypass` said.
#[test]
fn containers_follow_bypass_and_attachment() {
    let mem = two_region_memory();
    let id = identity(&mem);
    let mut t = HostHarness::new(&mem, true, true);
    assert_eq!(t.ranges(A), id, "boot bypass");
    assert_eq!(t.ranges(B), id);
    assert_eq!(t.request(&attach(1, A, 0)), OK);
    assert!(t.fake.mappings(A).is_empty(), "identity gone on attach");
    assert_eq!(t.request(&page_map(1, 4)), OK);
    assert_eq!(t.ranges(A), vec![(4 * PAGE, PAGE)]);
    assert_eq!(t.request(&detach(1, A)), OK);
    assert_eq!(t.ranges(A), id, "identity back on detach");
    t.h.dev.write_config(CONFIG_BYPASS_OFFSET, &[0]);
    t.check();
    assert_eq!(t.fake.total(), 0, "bypass cleared");
    assert_eq!(t.request(&attach(3, B, VIRTIO_IOMMU_ATTACH_F_BYPASS)), OK);
    assert_eq!(t.ranges(B), id, "bypass domain");
    t.h.dev.write_config(CONFIG_BYPASS_OFFSET, &[1]);
    t.check();
    assert_eq!(t.ranges(A), id);
    t.h.dev.write_config(CONFIG_BYPASS_OFFSET, &[0]);
    t.h.dev.system_reset();
    t.check();
    assert_eq!(t.ranges(A), id, "system reset: boot bypass again");
    assert_eq!(t.ranges(B), id);
}

/// A reset that leaves an endpoint with the identity map it had (a bypass
/// domain, and `bypass` stays 1) makes no host call: all guest RAM stays
/// pinned rather than being unpinned and pinned again. A mapped domain's
/// endpoint goes back to the identity map.
#[test]
fn reset_keeps_an_identity_map_it_would_rebuild() {
    let mem = two_region_memory();
    let mut t = HostHarness::new(&mem, true, true);
    assert_eq!(t.request(&attach(3, A, VIRTIO_IOMMU_ATTACH_F_BYPASS)), OK);
    assert_eq!(t.request(&attach(4, B, 0)), OK);
    assert_eq!(t.request(&page_map(4, 1)), OK);
    t.fake.take_log();
    t.h.dev.reset();
    t.check();
    let log = t.fake.take_log();
    assert!(log.iter().all(|l| !l.contains("e16")), "{log:?}");
    assert_eq!(t.ranges(A), identity(&mem));
    assert_eq!(t.ranges(B), identity(&mem));
}

/// Defect 6: a `bypass` write whose identity map fails for one endpoint is
/// refused as a whole: the field keeps its value and no endpoint keeps a
/// partial identity map.
#[test]
fn bypass_write_that_cannot_be_honoured_is_refused() {
    let mem = two_region_memory();
    let mut t = HostHarness::new(&mem, false, true);
    t.fail_when(|c| c.op == DmaOp::Map && c.endpoint == B && c.iova > 0);
    t.h.dev.write_config(CONFIG_BYPASS_OFFSET, &[1]);
    t.check();
    let mut b = [9u8];
    t.h.dev.read_config(CONFIG_BYPASS_OFFSET, &mut b);
    assert_eq!(b, [0]);
    assert_eq!(t.fake.total(), 0);
    let dma = t.h.dma(EMULATED);
    assert!(
        dma.read_obj::<u8>(GuestAddress(TARGET)).is_err(),
        "still blocked"
    );
}

/// Defect 3: cycling ATTACH/MAP/DETACH over 100k domain IDs leaves no
/// trace: at most one domain per endpoint and no host mapping left over
/// (before the fix the VFIO back-end kept a key for every domain ID ever
/// used).
#[test]
fn cycling_domain_ids_keeps_everything_bounded() {
    let mem = guest_memory();
    let mut t = HostHarness::new(&mem, false, true);
    for d in 1..=100_000u32 {
        assert_eq!(t.h.request(&attach(d, A, 0)), OK);
        assert_eq!(t.h.request(&page_map(d, u64::from(d % 64))), OK);
        if d % 3 == 0 {
            assert_eq!(t.h.request(&detach(d, A)), OK);
        }
        if d % 10_000 == 0 {
            t.check();
            assert!(t.fake.total() <= 1);
        }
    }
    assert_eq!(t.request(&detach(100_000, A)), OK);
    assert_eq!(t.fake.total(), 0);
}

/// Every request, with the N-th host call failing, for every N: after each
/// request the host holds exactly what the state gives each endpoint.
#[test]
fn a_failure_at_every_step_keeps_the_host_within_the_state() {
    let script = |d: u32| {
        vec![
            attach(d, A, 0),
            page_map(d, 1),
            page_map(d, 2),
            attach(d, B, 0),
            page_map(d, 3),
            unmap(d, PAGE, 2 * PAGE - 1),
            attach(d + 1, A, VIRTIO_IOMMU_ATTACH_F_BYPASS),
            attach(d, A, 0),
            detach(d, B),
            unmap(d, 0, u64::MAX),
            detach(d, A),
        ]
    };
    let mem = two_region_memory();
    let total_calls = {
        let mut t = HostHarness::new(&mem, true, true);
        for req in script(1) {
            assert_eq!(t.request(&req), OK);
        }
        t.fake.calls()
    };
    for unmap_all in [true, false] {
        for n in 1..=total_calls {
            for persistent in [false, true] {
                let mut t = HostHarness::new(&mem, true, unmap_all);
                let mut seen = 0;
                t.fake.inject(Box::new(move |_| {
                    seen += 1;
                    (seen == n || (persistent && seen > n))
                        .then(|| DmaError::Failed(format!("call {seen}")))
                }));
                for req in script(1) {
                    t.request(&req);
                }
                t.h.dev.write_config(CONFIG_BYPASS_OFFSET, &[0]);
                t.check();
                t.fake.stop_injecting();
                t.h.dev.reset();
                t.check();
            }
        }
    }
}

/// Model-based: random requests, bypass writes and resets with random
/// host failures; after each step the host holds exactly what the state
/// gives each endpoint, and a map never lands on a mapped IOVA.
#[test]
fn random_requests_and_failures_keep_host_and_state_equal() {
    let mem = two_region_memory();
    let (mut statuses, mut quarantines, mut lost) = ([0usize; 10], 0, 0);
    for round in 0..200u64 {
        let mut next = crate::test_rng::xorshift(
            0x2545_f491_4f6c_dd1du64 ^ (round + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15),
        );
        let unmap_all = next().is_multiple_of(2);
        let mut t = HostHarness::new(&mem, next().is_multiple_of(2), unmap_all);
        let rate = next() % 6;
        let mut fail = crate::test_rng::xorshift(next());
        t.fake.inject(Box::new(move |_| {
            (fail() % 16 < rate).then(|| DmaError::Failed("random".into()))
        }));
        for _ in 0..60 {
            let ep = [EMULATED, A, B][(next() % 3) as usize];
            let d = 1 + (next() % 3) as u32;
            let n = next() % 8;
            let req = match next() % 9 {
                0 | 1 => attach(d, ep, 0),
                2 => attach(d, ep, VIRTIO_IOMMU_ATTACH_F_BYPASS),
                3 => detach(d, ep),
                4..=6 => page_map(d, n),
                7 => unmap(d, n * PAGE, (n + next() % 3) * PAGE + PAGE - 1),
                _ => {
                    match next() % 4 {
                        0 => {
                            t.h.dev.reset();
                            t.check();
                            t.h.reactivate(all_features());
                        }
                        _ => {
                            t.h.dev
                                .write_config(CONFIG_BYPASS_OFFSET, &[(next() % 2) as u8])
                        }
                    }
                    t.check();
                    continue;
                }
            };
            let w = t.h.submit(&req, 4);
            t.h.dev.process_queue(REQUEST_QUEUE);
            assert_eq!(t.h.used().iter().map(|u| u.1).collect::<Vec<_>>(), vec![4]);
            t.check();
            statuses[usize::from(t.h.byte(w).min(9))] += 1;
            quarantines += usize::from(t.h.dev.is_quarantined(A) || t.h.dev.is_quarantined(B));
            if t.h.dev.host_lost() {
                lost += 1;
                break;
            }
        }
    }
    eprintln!("statuses {statuses:?}, steps with a quarantined endpoint {quarantines}, rounds ending lost {lost}");
    assert!(statuses[0] > 3000 && statuses[3] > 300, "{statuses:?}");
    assert_eq!(statuses[9], 0, "every request answered");
    assert!(quarantines > 50 && lost > 0);
}

/// Defect 8, measured: while the request path is inside a slow host map
/// (300 ms), emulated DMA through another endpoint and fault delivery (the
/// event loop) do not wait: translations only read the state, which is
/// read-locked during host calls, and faults go out through a handle with
/// a lock of its own. Before the fix a translation waited 301 ms. What
/// still waits is another access to the virtio-iommu's own registers (it
/// needs the device's lock): printed, not asserted.
#[test]
fn what_waits_for_a_slow_host_map() {
    let mem = guest_memory();
    let mut t = HostHarness::new(&mem, false, true);
    assert_eq!(t.request(&attach(2, EMULATED, 0)), OK);
    assert_eq!(
        t.request(&map(2, 0, 0xfff, TARGET, VIRTIO_IOMMU_MAP_F_READ)),
        OK
    );
    assert_eq!(t.request(&attach(1, A, 0)), OK);
    let dma = t.h.dma(EMULATED);
    // A fault waiting for delivery, and a buffer for it.
    assert!(dma.write_obj(1u8, GuestAddress(0)).is_err());
    t.h.add_event_buffer(24);
    let delivery = t.h.dev.fault_delivery();
    let (tx, rx) = mpsc::channel();
    t.fake.slow_down(Duration::from_millis(300), Some(tx));
    t.h.submit(&page_map(1, 1), 4);
    let dev = std::sync::Mutex::new(&mut t.h.dev);
    let (translate, deliver, config, took) = std::thread::scope(|s| {
        let start = Instant::now();
        let dev = &dev;
        let worker = s.spawn(move || {
            dev.lock().expect("device").process_queue(REQUEST_QUEUE);
            start.elapsed()
        });
        rx.recv().expect("host map started");
        let begin = Instant::now();
        assert!(dma.read_obj::<u8>(GuestAddress(0)).is_ok());
        let translate = begin.elapsed();
        let begin = Instant::now();
        delivery.deliver();
        let deliver = begin.elapsed();
        let begin = Instant::now();
        let mut b = [0u8];
        dev.lock()
            .expect("device")
            .read_config(CONFIG_BYPASS_OFFSET, &mut b);
        let config = begin.elapsed();
        (translate, deliver, config, worker.join().expect("worker"))
    });
    eprintln!(
        "during a {took:?} host map: emulated DMA waited {translate:?}, fault delivery {deliver:?}, a virtio-iommu config read {config:?}"
    );
    assert!(took >= Duration::from_millis(300));
    assert!(translate < Duration::from_millis(50), "{translate:?}");
    assert!(deliver < Duration::from_millis(50), "{deliver:?}");
    assert_eq!(t.h.events_used().len(), 1, "the fault went out meanwhile");
    assert_eq!(t.h.used().len(), 1);
}

#[test]
fn host_endpoints_must_be_behind_the_iommu() {
    let (fake, _) = FakeDma::new(&[77], true);
    let host = HostDma {
        backend: Box::new(fake),
        endpoints: vec![77],
    };
    assert!(matches!(
        VirtioIommu::new(host_config(true), guest_memory(), Some(host)),
        Err(super::super::Error::UnknownEndpoint(77))
    ));
}

/// Boot bypass needs the identity map: when the host refuses it, building
/// the device fails with the endpoint and the host's reason.
#[test]
fn boot_identity_map_failure_is_an_error() {
    let (fake, handle) = FakeDma::new(&[A, B], true);
    handle.inject(Box::new(|c| {
        (c.endpoint == B).then(|| DmaError::NoResources("RLIMIT_MEMLOCK".into()))
    }));
    let host = HostDma {
        backend: Box::new(fake),
        endpoints: vec![A, B],
    };
    let err = VirtioIommu::new(host_config(true), guest_memory(), Some(host)).err();
    assert!(
        matches!(err, Some(super::super::Error::HostDma { endpoint: B, .. })),
        "{err:?}"
    );
}

/// MMIO mappings cannot reach an assigned device: refused for a domain
/// with one, and an assigned device cannot join a domain that has one.
#[test]
fn mmio_mappings_and_assigned_endpoints_exclude_each_other() {
    let mem = guest_memory();
    let mut t = HostHarness::new(&mem, false, true);
    let mmio = VIRTIO_IOMMU_MAP_F_MMIO | RW;
    assert_eq!(t.request(&attach(1, A, 0)), OK);
    assert_eq!(t.request(&map(1, 0, 0xfff, 0, mmio)), Status::Unsupp as u8);
    assert_eq!(t.request(&attach(2, EMULATED, 0)), OK);
    assert_eq!(t.request(&map(2, 0, 0xfff, 0, mmio)), OK);
    assert_eq!(t.request(&attach(2, B, 0)), Status::Unsupp as u8);
}

/// Hotplug: an endpoint assigned at run time gets what the virtual state
/// gives it (the identity map while unattached under bypass, its domain's
/// mappings once attached), follows the state, and is emptied and
/// forgotten when its device leaves; it can be assigned again.
#[test]
fn an_endpoint_assigned_at_run_time_follows_the_state_until_it_leaves() {
    let mem = guest_memory();
    let (fake, handle) = FakeDma::new(&[A, B], true);
    let host = HostDma {
        backend: Box::new(fake),
        endpoints: vec![A],
    };
    let h = Harness::with_backend(&mem, host_config(true), all_features(), Some(host));
    let mut t = HostHarness { h, fake: handle };
    t.check();
    assert!(t.fake.mappings(B).is_empty(), "not assigned at boot");
    assert_eq!(t.request(&attach(1, EMULATED, 0)), OK);
    assert_eq!(t.request(&page_map(1, 2)), OK);
    t.h.dev.assign_endpoint(B).expect("assign");
    t.check();
    assert_eq!(t.ranges(B), identity(&mem), "unattached under bypass");
    assert!(matches!(
        t.h.dev.assign_endpoint(B),
        Err(Error::Assign { endpoint: B, .. })
    ));
    assert!(matches!(
        t.h.dev.assign_endpoint(99),
        Err(Error::Assign { endpoint: 99, .. })
    ));
    assert_eq!(t.request(&attach(1, B, 0)), OK);
    assert_eq!(t.ranges(B), vec![(2 * PAGE, PAGE)], "its domain's mapping");
    assert_eq!(t.request(&page_map(1, 3)), OK);
    assert_eq!(t.ranges(B).len(), 2);
    t.h.dev.unassign_endpoint(B);
    t.check();
    assert!(t.fake.mappings(B).is_empty(), "emptied when it left");
    assert_eq!(t.request(&page_map(1, 4)), OK);
    assert!(t.fake.mappings(B).is_empty(), "and no longer followed");
    assert_eq!(t.h.dev.release_endpoint(B).expect("release"), Some(1));
    t.h.dev.assign_endpoint(B).expect("again");
    t.check();
    assert_eq!(t.ranges(B), identity(&mem));
    t.h.dev.unassign_endpoint(B);
    assert!(t.fake.mappings(B).is_empty());
}
