use std::sync::Mutex;

use virtio_queue::desc::split::Descriptor as SplitDescriptor;
use virtio_queue::desc::RawDescriptor;
use virtio_queue::mock::MockSplitQueue;
use vm_memory::GuestMemoryMmap;

use super::*;

const SIZE: u16 = 16;
const MEM: u64 = 0x10_0000;

#[derive(Default)]
struct Recorder {
    notified: Mutex<Vec<u16>>,
    broken: Mutex<Vec<u16>>,
}

impl VirtioInterrupt for Recorder {
    fn notify_queue(&self, queue: u16) {
        self.notified.lock().expect("lock").push(queue);
    }
    fn notify_config(&self) {}
    fn queue_broken(&self, queue: u16) {
        self.broken.lock().expect("lock").push(queue);
    }
}

fn memory() -> GuestMemoryMmap {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM as usize)]).expect("memory")
}

fn device_queue(
    mock: &MockSplitQueue<'_, GuestMemoryMmap>,
    mem: &GuestMemoryMmap,
    features: u64,
) -> (DeviceQueue, Arc<Recorder>) {
    let irq = Arc::new(Recorder::default());
    let q = DeviceQueue::new(
        "test",
        3,
        mock.create_queue::<Queue>().expect("queue"),
        features,
        mem,
        irq.clone(),
    )
    .expect("valid rings");
    (q, irq)
}

/// Puts a one-descriptor chain at `desc` in the available ring.
fn offer(mock: &MockSplitQueue<'_, GuestMemoryMmap>, desc: u16, flags: u16) {
    let d = SplitDescriptor::new(0x8000 + u64::from(desc) * 0x100, 0x100, flags, 0);
    mock.desc_table()
        .store(desc, RawDescriptor::from(d))
        .expect("desc");
    let idx = mock.avail().idx().load();
    mock.avail()
        .ring()
        .ref_at(usize::from(idx % SIZE))
        .expect("slot")
        .store(desc);
    mock.avail().idx().store(idx.wrapping_add(1));
}

#[test]
fn an_avail_index_too_far_ahead_breaks_the_queue_once() {
    let mem = memory();
    let mock = MockSplitQueue::create(&mem, GuestAddress(0x1000), SIZE);
    let (mut q, irq) = device_queue(&mock, &mem, 0);
    offer(&mock, 0, 0);
    mock.avail().idx().store(SIZE + 1);
    let mut handled = 0;
    assert!(!q.drain(&mem, false, |_| {
        handled += 1;
        0
    }));
    assert_eq!(handled, 0);
    assert!(q.is_broken());
    assert_eq!(*irq.broken.lock().expect("lock"), vec![3]);
    // Never served again, never reported again.
    mock.avail().idx().store(1);
    assert!(q.pop(&mem).is_none());
    assert!(!q.drain(&mem, true, |_| 0));
    assert_eq!(irq.broken.lock().expect("lock").len(), 1);
    assert_eq!(mock.used().idx().load(), 0, "nothing was used");
}

#[test]
fn a_full_ring_is_not_too_far_ahead() {
    let mem = memory();
    let mock = MockSplitQueue::create(&mem, GuestAddress(0x1000), SIZE);
    let (mut q, irq) = device_queue(&mock, &mem, 0);
    for d in 0..SIZE {
        offer(&mock, d, 0);
    }
    let mut handled = 0;
    assert!(q.drain(&mem, false, |_| {
        handled += 1;
        7
    }));
    assert_eq!(handled, SIZE);
    assert!(!q.is_broken());
    assert!(irq.broken.lock().expect("lock").is_empty());
    assert_eq!(mock.used().idx().load(), SIZE);
}

#[test]
fn rings_outside_memory_are_refused() {
    let mem = memory();
    let irq: Arc<dyn VirtioInterrupt> = Arc::new(Recorder::default());
    // The used ring of a queue at the very end of memory does not fit.
    let mock = MockSplitQueue::create(&mem, GuestAddress(MEM - 0x180), SIZE);
    let err = DeviceQueue::new(
        "test",
        0,
        mock.create_queue::<Queue>().expect("queue"),
        0,
        &mem,
        irq.clone(),
    )
    .err()
    .expect("refused");
    assert!(matches!(err, ActivateError::Ring { queue: 0, .. }), "{err}");
    let mut queue = Queue::new(SIZE).expect("queue");
    queue.set_desc_table_address(Some(0xffff_fff0), Some(0xffff_ffff));
    let err = DeviceQueue::new("test", 1, queue, 0, &mem, irq)
        .err()
        .expect("refused");
    assert!(
        matches!(
            err,
            ActivateError::Ring {
                ring: "descriptor table",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn indirect_chains_are_returned_unprocessed_unless_negotiated() {
    let mem = memory();
    let indirect = VRING_DESC_F_INDIRECT as u16;
    let mock = MockSplitQueue::create(&mem, GuestAddress(0x1000), SIZE);
    let (mut q, irq) = device_queue(&mock, &mem, 0);
    offer(&mock, 0, indirect);
    offer(&mock, 1, 0);
    let mut heads = Vec::new();
    q.drain(&mem, false, |chain| {
        heads.push(chain.head_index());
        5
    });
    assert_eq!(heads, vec![1], "only the plain chain is processed");
    let used: Vec<(u32, u32)> = (0..2)
        .map(|i| {
            let e = mock.used().ring().ref_at(i).expect("used").load();
            (e.id(), e.len())
        })
        .collect();
    assert_eq!(used, vec![(0, 0), (1, 5)]);
    assert!(!q.is_broken());
    assert!(irq.broken.lock().expect("lock").is_empty());

    let mock = MockSplitQueue::create(&mem, GuestAddress(0x4000), SIZE);
    let (mut q, _) = device_queue(&mock, &mem, 1 << VIRTIO_RING_F_INDIRECT_DESC);
    // An empty (zero-length) indirect table is a chain with no descriptor.
    offer(&mock, 0, indirect);
    let mut seen = 0;
    q.drain(&mem, false, |_| {
        seen += 1;
        0
    });
    assert_eq!(seen, 1, "negotiated: the chain reaches the device");
}

#[test]
fn used_entries_notify_the_queue_vector() {
    let mem = memory();
    let mock = MockSplitQueue::create(&mem, GuestAddress(0x1000), SIZE);
    let (mut q, irq) = device_queue(&mock, &mem, 0);
    offer(&mock, 0, 0);
    assert!(q.drain(&mem, false, |_| 1));
    q.notify_used(&mem);
    assert_eq!(*irq.notified.lock().expect("lock"), vec![3]);
}
