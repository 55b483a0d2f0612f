//! Broken request and event queues: the device stops serving them, says so
//! once through the transport, and never loops or blocks (issue 8, defect
//! 7). Each test runs the device on a thread with a deadline so that a
//! regression fails instead of hanging the suite.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use virtio_bindings::virtio_ring::VRING_DESC_F_INDIRECT;
use virtio_queue::desc::split::Descriptor as SplitDescriptor;
use virtio_queue::desc::RawDescriptor;
use virtio_queue::mock::MockSplitQueue;
use virtio_queue::Queue;
use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryMmap};

use super::protocol::{Status, VIRTIO_IOMMU_T_ATTACH};
use super::*;
use crate::virtio::{VirtioDevice, VirtioInterrupt, VIRTIO_F_VERSION_1};

const SIZE: u16 = 16;
const REQQ: u64 = 0x1000;
const EVQ: u64 = 0x4000;
const BUFS: u64 = 0x10_0000;

#[derive(Default)]
struct Recorder {
    broken: Mutex<Vec<u16>>,
}

impl VirtioInterrupt for Recorder {
    fn notify_queue(&self, _queue: u16) {}
    fn notify_config(&self) {}
    fn queue_broken(&self, queue: u16) {
        self.broken.lock().expect("lock").push(queue);
    }
}

fn memory() -> GuestMemoryMmap {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x40_0000)]).expect("memory")
}

fn device(mem: &GuestMemoryMmap, irq: Arc<Recorder>) -> VirtioIommu {
    let config = IommuConfig {
        endpoints: vec![EndpointConfig {
            id: 8,
            reserved: vec![],
        }],
        domain_range: 1..=10,
        queue_size: SIZE,
        boot_bypass: false,
        ..Default::default()
    };
    let mut dev = VirtioIommu::new(config, mem.clone(), None).expect("device");
    dev.set_acked_features(VIRTIO_F_VERSION_1);
    let reqq = MockSplitQueue::create(mem, GuestAddress(REQQ), SIZE);
    let evq = MockSplitQueue::create(mem, GuestAddress(EVQ), SIZE);
    dev.activate(
        vec![
            (REQUEST_QUEUE, reqq.create_queue::<Queue>().expect("q")),
            (EVENT_QUEUE, evq.create_queue::<Queue>().expect("q")),
        ],
        irq,
    )
    .expect("activate");
    dev
}

/// Runs `f` on a thread; fails the test if it does not return in time.
fn within_deadline<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("the device returned (it must not retry a broken ring forever)")
}

fn attach_request(
    mem: &GuestMemoryMmap,
    q: &MockSplitQueue<'_, GuestMemoryMmap>,
    desc: u16,
) -> u64 {
    let req = BUFS + u64::from(desc) * 0x100;
    let mut bytes = vec![VIRTIO_IOMMU_T_ATTACH, 0, 0, 0];
    bytes.extend(1u32.to_le_bytes());
    bytes.extend(8u32.to_le_bytes());
    bytes.extend([0; 8]);
    mem.write_slice(&bytes, GuestAddress(req)).expect("req");
    let tail = req + 0x80;
    mem.write_slice(&[0xaa; 4], GuestAddress(tail))
        .expect("tail");
    let d0 = SplitDescriptor::new(req, bytes.len() as u32, 1, desc + 1);
    let d1 = SplitDescriptor::new(tail, 4, 2, 0);
    q.desc_table()
        .store(desc, RawDescriptor::from(d0))
        .expect("d0");
    q.desc_table()
        .store(desc + 1, RawDescriptor::from(d1))
        .expect("d1");
    let idx = q.avail().idx().load();
    q.avail()
        .ring()
        .ref_at(usize::from(idx % SIZE))
        .expect("slot")
        .store(desc);
    q.avail().idx().store(idx.wrapping_add(1));
    tail
}

#[test]
fn an_avail_index_far_ahead_breaks_the_request_queue_instead_of_hanging() {
    let mem = memory();
    let irq = Arc::new(Recorder::default());
    let mut dev = device(&mem, irq.clone());
    let reqq = MockSplitQueue::create(&mem, GuestAddress(REQQ), SIZE);
    reqq.avail().idx().store(SIZE + 40);
    let mem2 = mem.clone();
    let dev = within_deadline(move || {
        dev.process_queue(REQUEST_QUEUE);
        // A second kick finds the queue broken and returns at once.
        dev.process_queue(REQUEST_QUEUE);
        let _ = mem2;
        dev
    });
    assert_eq!(
        *irq.broken.lock().expect("lock"),
        vec![REQUEST_QUEUE as u16]
    );
    assert_eq!(reqq.used().idx().load(), 0);
    drop(dev);
}

#[test]
fn a_poller_never_spins_on_a_broken_request_queue() {
    let mem = memory();
    let irq = Arc::new(Recorder::default());
    let mut dev = device(&mem, irq.clone());
    dev.set_poller(Arc::new(PollSignal::new(std::time::Duration::from_millis(
        1,
    ))));
    let reqq = MockSplitQueue::create(&mem, GuestAddress(REQQ), SIZE);
    attach_request(&mem, &reqq, 0);
    let used_idx = reqq.used_addr().unchecked_add(2);
    let avail_idx = reqq.avail_addr().unchecked_add(2);
    let mem2 = mem.clone();
    let (dev, served) = within_deadline(move || {
        dev.process_queue(REQUEST_QUEUE);
        let served: u16 = mem2.read_obj(used_idx).expect("used idx");
        mem2.write_obj(0x8000u16, avail_idx).expect("avail idx");
        let more = dev.poll_requests();
        dev.stop_polling();
        dev.process_queue(REQUEST_QUEUE);
        (dev, (served, more))
    });
    assert_eq!(served, (1, false), "the good request, then nothing");
    assert_eq!(
        *irq.broken.lock().expect("lock"),
        vec![REQUEST_QUEUE as u16]
    );
    drop(dev);
}

#[test]
fn a_reset_serves_the_queue_again() {
    let mem = memory();
    let irq = Arc::new(Recorder::default());
    let mut dev = device(&mem, irq.clone());
    let reqq = MockSplitQueue::create(&mem, GuestAddress(REQQ), SIZE);
    reqq.avail().idx().store(SIZE + 1);
    let mut dev = within_deadline(move || {
        dev.process_queue(REQUEST_QUEUE);
        dev
    });
    dev.reset();
    dev.set_acked_features(VIRTIO_F_VERSION_1);
    let reqq = MockSplitQueue::create(&mem, GuestAddress(REQQ), SIZE);
    let evq = MockSplitQueue::create(&mem, GuestAddress(EVQ), SIZE);
    dev.activate(
        vec![
            (REQUEST_QUEUE, reqq.create_queue::<Queue>().expect("q")),
            (EVENT_QUEUE, evq.create_queue::<Queue>().expect("q")),
        ],
        irq.clone(),
    )
    .expect("activate");
    let tail = attach_request(&mem, &reqq, 0);
    dev.process_queue(REQUEST_QUEUE);
    assert_eq!(reqq.used().idx().load(), 1);
    let status: u8 = mem.read_obj(GuestAddress(tail)).expect("tail");
    assert_eq!(status, Status::Ok as u8);
}

#[test]
fn indirect_requests_are_not_followed_when_not_negotiated() {
    let mem = memory();
    let irq = Arc::new(Recorder::default());
    let mut dev = device(&mem, irq.clone());
    let reqq = MockSplitQueue::create(&mem, GuestAddress(REQQ), SIZE);
    // An indirect table holding a well-formed ATTACH.
    let table = BUFS + 0x8000;
    let inner = MockSplitQueue::create(&mem, GuestAddress(0x20_0000), SIZE);
    let tail = attach_request(&mem, &inner, 0);
    let mut raw = [0u8; 32];
    mem.read_slice(&mut raw, GuestAddress(0x20_0000))
        .expect("inner");
    mem.write_slice(&raw, GuestAddress(table)).expect("table");
    let d = SplitDescriptor::new(table, 32, VRING_DESC_F_INDIRECT as u16, 0);
    reqq.desc_table()
        .store(0, RawDescriptor::from(d))
        .expect("d");
    reqq.avail().ring().ref_at(0).expect("slot").store(0);
    reqq.avail().idx().store(1);
    dev.process_queue(REQUEST_QUEUE);
    let used = reqq.used().ring().ref_at(0).expect("used").load();
    assert_eq!((reqq.used().idx().load(), used.len()), (1, 0));
    let status: u8 = mem.read_obj(GuestAddress(tail)).expect("tail");
    assert_eq!(status, 0xaa, "the request was not executed");
    assert!(irq.broken.lock().expect("lock").is_empty());
}

#[test]
fn an_event_queue_index_far_ahead_breaks_only_the_event_queue() {
    let mem = memory();
    let irq = Arc::new(Recorder::default());
    let mut dev = device(&mem, irq.clone());
    let evq = MockSplitQueue::create(&mem, GuestAddress(EVQ), SIZE);
    evq.avail().idx().store(SIZE * 3);
    let dev = within_deadline(move || {
        dev.process_queue(EVENT_QUEUE);
        dev
    });
    // Without faults pending the event queue is not even read; a fault
    // makes the device look at it.
    let mut dev = dev;
    let t = dev.translator(8).expect("translator");
    let _ = vm_memory::Iommu::translate(&t, GuestAddress(0x1000), 1, vm_memory::Permissions::Read)
        .is_err();
    let mut dev = within_deadline(move || {
        dev.process_queue(EVENT_QUEUE);
        dev
    });
    assert_eq!(*irq.broken.lock().expect("lock"), vec![EVENT_QUEUE as u16]);
    let reqq = MockSplitQueue::create(&mem, GuestAddress(REQQ), SIZE);
    attach_request(&mem, &reqq, 0);
    dev.process_queue(REQUEST_QUEUE);
    assert_eq!(reqq.used().idx().load(), 1, "requests are still served");
}
