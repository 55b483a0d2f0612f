//! The virtio-blk request path end to end: a guest memory image, a
//! descriptor table, an available ring (any index) and request bytes from
//! the input, then the device drains its queue over a small disk image.
//!
//! Invariants:
//! - every used entry names a chain the driver made available, and its
//!   length never exceeds the device-writable bytes of that chain (walked
//!   independently, the way the chain is defined); a chain using indirect
//!   descriptors (not negotiated) is returned with length 0;
//! - no more chains are used than were made available, and none once the
//!   queue was reported broken (an index too far ahead breaks it at once);
//! - guest memory changes only inside device-writable descriptors and the
//!   used ring;
//! - the disk never changes size, and a read-only disk never changes.

#![no_main]

use std::io::{Read, Seek, SeekFrom, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use devices::virtio::block::{Block, DiskFile};
use devices::virtio::{VirtioDevice, VirtioInterrupt, VIRTIO_F_VERSION_1};
use libfuzzer_sys::arbitrary::{Result as FuzzResult, Unstructured};
use libfuzzer_sys::fuzz_target;
use virtio_queue::desc::split::Descriptor;
use virtio_queue::desc::RawDescriptor;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// Guest memory: the rings at DESC, AVAIL and USED, buffers above.
const MEM: u64 = 0x2_0000;
const DESC: u64 = 0x0;
const AVAIL: u64 = 0x1000;
const USED: u64 = 0x2000;
const QSIZE: u16 = 16;
const SECTORS: u64 = 64;
const F_NEXT: u16 = 1;
const F_WRITE: u16 = 2;
const F_INDIRECT: u16 = 4;

#[derive(Default)]
struct Irq {
    broken: AtomicUsize,
}

impl VirtioInterrupt for Irq {
    fn notify_queue(&self, _queue: u16) {}
    fn notify_config(&self) {}
    fn queue_broken(&self, _queue: u16) {
        self.broken.fetch_add(1, Ordering::SeqCst);
    }
}

/// The disk image file of this process.
fn image() -> &'static std::path::PathBuf {
    static PATH: OnceLock<std::path::PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        // tmpfs when there is one: writes without FLUSH negotiated fdatasync.
        let shm = std::path::Path::new("/dev/shm");
        let dir = if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        dir.join(format!("minivmm-fuzz-blk-{}.img", std::process::id()))
    })
}

fn pattern() -> &'static [u8] {
    static PATTERN: OnceLock<Vec<u8>> = OnceLock::new();
    PATTERN.get_or_init(|| (0..SECTORS * 512).map(|i| (i * 7 + (i >> 9)) as u8).collect())
}

/// The device-writable bytes of the chain at `head`, walked as virtio
/// defines a chain (bounded by the queue size); `None` for an indirect one.
fn writable_bytes(mem: &GuestMemoryMmap, table: u64, head: u16) -> Option<u64> {
    let mut total = 0u64;
    let mut index = head;
    for _ in 0..QSIZE {
        if index >= QSIZE {
            break;
        }
        let d: Descriptor = mem
            .read_obj(GuestAddress(table + 16 * u64::from(index)))
            .ok()?;
        if d.flags() & F_INDIRECT != 0 {
            return None;
        }
        if d.flags() & F_WRITE != 0 {
            total += u64::from(d.len());
        }
        if d.flags() & F_NEXT == 0 {
            break;
        }
        index = d.next();
    }
    Some(total)
}

/// Device-writable ranges of every descriptor of the table (the device may
/// only write there, wherever a chain leads).
fn writable_ranges(mem: &GuestMemoryMmap, table: u64) -> Vec<(u64, u64)> {
    (0..QSIZE)
        .filter_map(|i| {
            let d: Descriptor = mem
                .read_obj(GuestAddress(table + 16 * u64::from(i)))
                .ok()?;
            (d.flags() & F_WRITE != 0).then(|| (d.addr().0, d.addr().0.saturating_add(u64::from(d.len()))))
        })
        .collect()
}

fn run(u: &mut Unstructured<'_>) -> FuzzResult<()> {
    let read_only = u.arbitrary::<bool>()?;
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM as usize)]).expect("memory");
    let table = DESC;
    // Buffers: a few pages of input bytes.
    let n = u.len().min(256);
    let fill = u.bytes(n)?;
    mem.write_slice(fill, GuestAddress(0x1_2000)).expect("fill");
    // Request headers mostly well-formed, to get past parsing.
    for slot in 0..4u64 {
        let t = *u.choose(&[0u32, 1, 4, 8, 11, 13, 0x77])?;
        let sector = if u.arbitrary::<bool>()? {
            u.int_in_range(0..=SECTORS + 2)?
        } else {
            u.arbitrary()?
        };
        let mut h = [0u8; 16];
        h[..4].copy_from_slice(&t.to_le_bytes());
        h[8..].copy_from_slice(&sector.to_le_bytes());
        mem.write_slice(&h, GuestAddress(0x1_0000 + slot * 0x400))
            .expect("header");
    }
    for i in 0..QSIZE {
        let addr = match u.int_in_range(0..=9u8)? {
            0 => u.arbitrary::<u64>()?,
            1 => MEM - u64::from(u.int_in_range(0..=64u16)?),
            2 => 0,
            _ => 0x1_0000 + u64::from(u.int_in_range(0..=0x3000u32)?),
        };
        let len = match u.int_in_range(0..=7u8)? {
            0 => u.arbitrary::<u32>()?,
            1 => 16,
            2 => 1,
            3 => 512,
            _ => u.int_in_range(0..=0x1200u32)?,
        };
        let mut flags = u.arbitrary::<u16>()? & (F_NEXT | F_WRITE);
        if u.int_in_range(0..=30u8)? == 0 {
            flags |= F_INDIRECT;
        }
        let next = if u.int_in_range(0..=8u8)? == 0 {
            u.arbitrary()?
        } else {
            (i + 1) % QSIZE
        };
        mem.write_obj(
            RawDescriptor::from(Descriptor::new(addr, len, flags, next)),
            GuestAddress(DESC + 16 * u64::from(i)),
        )
        .expect("desc");
    }
    let chains = u.int_in_range(0..=QSIZE)?;
    let mut heads = Vec::new();
    for slot in 0..QSIZE {
        let head = u.int_in_range(0..=QSIZE + 1)?;
        heads.push(head);
        mem.write_obj(head, GuestAddress(AVAIL + 4 + 2 * u64::from(slot)))
            .expect("slot");
    }
    let avail = if u.int_in_range(0..=10u8)? == 0 {
        u.arbitrary::<u16>()?
    } else {
        chains
    };
    mem.write_obj(avail, GuestAddress(AVAIL + 2)).expect("avail idx");

    // The disk.
    {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(image())
            .expect("image");
        f.write_all(pattern()).expect("image");
    }
    let disk = DiskFile::open(image(), read_only).expect("disk");
    let mut block = Block::with_disk(mem.clone(), disk, false, Some("fuzz"));
    let features = VIRTIO_F_VERSION_1 | if u.arbitrary::<bool>()? { 1 << 9 } else { 0 };
    block.set_acked_features(features);
    let irq = Arc::new(Irq::default());
    let mut queue = Queue::new(QSIZE).expect("queue");
    queue.set_desc_table_address(Some(DESC as u32), Some(0));
    queue.set_avail_ring_address(Some(AVAIL as u32), Some(0));
    queue.set_used_ring_address(Some(USED as u32), Some(0));
    queue.set_ready(true);
    block
        .activate(vec![(0, queue)], irq.clone())
        .expect("activate");

    let mut before = vec![0u8; MEM as usize];
    mem.read_slice(&mut before, GuestAddress(0)).expect("snapshot");
    let writable: Vec<Option<u64>> = heads.iter().map(|h| writable_bytes(&mem, table, *h)).collect();
    let ranges = writable_ranges(&mem, table);

    block.process_queue(0);
    if u.arbitrary::<bool>()? {
        block.process_queue(0);
    }

    let used: u16 = mem.read_obj(GuestAddress(USED + 2)).expect("used idx");
    let used_ring = USED;
    let used_end = used_ring + 6 + 8 * u64::from(QSIZE);
    // A driver may point device-writable buffers at its own rings; then
    // the counts below are whatever it wrote there, and only the disk and
    // the absence of a crash are checked.
    if ranges.iter().any(|(s, e)| *s < used_end && *e > DESC) {
        return check_disk(read_only, block);
    }
    let far_ahead = avail > QSIZE;
    if far_ahead {
        assert_eq!(used, 0, "chains used from a ring whose index is too far ahead");
        assert_eq!(irq.broken.load(Ordering::SeqCst), 1, "broken once");
    } else {
        assert!(used <= avail, "used {used} of {avail} made available");
        assert!(irq.broken.load(Ordering::SeqCst) <= 1);
    }
    for slot in 0..used {
        let at = USED + 4 + 8 * u64::from(slot % QSIZE);
        let id: u32 = mem.read_obj(GuestAddress(at)).expect("used id");
        let len: u32 = mem.read_obj(GuestAddress(at + 4)).expect("used len");
        let head = heads[usize::from(slot)];
        assert_eq!(id, u32::from(head), "used entries come back in order");
        match writable[usize::from(slot)] {
            None => assert_eq!(len, 0, "an indirect chain was processed"),
            Some(max) => assert!(
                u64::from(len) <= max,
                "used length {len} exceeds the {max} writable bytes of chain {head}"
            ),
        }
    }
    let mut after = vec![0u8; MEM as usize];
    mem.read_slice(&mut after, GuestAddress(0)).expect("snapshot");
    // Compared a page at a time (a byte loop would be instrumented).
    for (page, (b, a)) in before.chunks(4096).zip(after.chunks(4096)).enumerate() {
        if b == a {
            continue;
        }
        for (i, (x, y)) in b.iter().zip(a).enumerate() {
            let at = (page * 4096 + i) as u64;
            if x == y || (used_ring..used_end).contains(&at) {
                continue;
            }
            assert!(
                ranges.iter().any(|(s, e)| (*s..*e).contains(&at)),
                "guest byte {at:#x} changed outside every device-writable buffer"
            );
        }
    }
    check_disk(read_only, block)
}

/// The disk kept its size, and its contents when read-only.
fn check_disk(read_only: bool, block: Block<GuestMemoryMmap>) -> FuzzResult<()> {
    drop(block);
    let mut f = std::fs::File::open(image()).expect("image");
    assert_eq!(f.seek(SeekFrom::End(0)).expect("size"), SECTORS * 512, "disk size changed");
    if read_only {
        let mut now = Vec::new();
        f.seek(SeekFrom::Start(0)).expect("seek");
        f.read_to_end(&mut now).expect("read");
        assert!(now == pattern(), "a read-only disk changed");
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});
