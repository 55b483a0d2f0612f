//! The virtio-pci transport under any sequence of driver accesses: common
//! configuration reads and writes of any width at any offset, notifies,
//! ISR and device configuration accesses, MSI-X table and PBA accesses,
//! configuration space (MSI-X control, the `PCI_CFG` window), BAR decode
//! changes, and the device raising interrupts or reporting a queue broken.
//!
//! Invariants checked after every step, against a recording fake device:
//! - the device is activated only after FEATURES_OK with features it
//!   offered (VERSION_1 included), with enabled queues whose sizes are
//!   powers of two within their maximum and whose rings are not at 0;
//! - `process_queue` only reaches an activated device, for an enabled
//!   queue that was not reported broken;
//! - a queue's configuration read back after DRIVER_OK never changes until
//!   a reset; queue sizes always read back as powers of two within bounds;
//! - vectors read back are NO_VECTOR or below the MSI-X table size, and an
//!   interrupt the device raises fires exactly the vector read back then;
//! - the status reads back only bits the driver set, plus NEEDS_RESET,
//!   which is set once a queue broke;
//! - read-only fields (device features, num_queues, PCI IDs) never change;
//! - ioeventfds are registered exactly while BAR 0 decodes, at its address.

#![no_main]

use std::sync::{Arc, Mutex};

use devices::pci::{BarRegion, MsiMessage, MsixInterrupts, PciDevice};
use devices::virtio::pci::{
    IoEventRegistry, NotifyMode, VirtioPciDevice, BAR_SIZE, NO_VECTOR, NOTIFY_MULTIPLIER,
    STATUS_DRIVER_OK, STATUS_FEATURES_OK, STATUS_NEEDS_RESET,
};
use devices::virtio::{ActivateError, VirtioDevice, VirtioInterrupt, VIRTIO_F_VERSION_1};
use libfuzzer_sys::arbitrary::{Result as FuzzResult, Unstructured};
use libfuzzer_sys::fuzz_target;
use virtio_queue::{Queue, QueueT};
use vmm_sys_util::eventfd::EventFd;

const MAX_SIZES: [u16; 3] = [256, 64, 16];
const OFFERED: u64 = VIRTIO_F_VERSION_1 | 0b1011;
const BAR: u64 = 0x10_0000_0000;

#[derive(Default)]
struct Calls {
    acked: Option<u64>,
    active: bool,
    interrupt: Option<Arc<dyn VirtioInterrupt>>,
    processed: Vec<usize>,
    queues: Vec<(usize, u16, u64, u64, u64)>,
}

struct Fake(Arc<Mutex<Calls>>);

impl VirtioDevice for Fake {
    fn device_type(&self) -> u32 {
        23
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &MAX_SIZES
    }
    fn device_features(&self) -> u64 {
        OFFERED
    }
    fn set_acked_features(&mut self, features: u64) {
        assert_eq!(features & !OFFERED, 0, "acked features never offered");
        assert_ne!(features & VIRTIO_F_VERSION_1, 0, "acked without VERSION_1");
        self.0.lock().unwrap().acked = Some(features);
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        data.fill(offset as u8);
    }
    fn write_config(&mut self, _offset: u64, _data: &[u8]) {}
    fn activate(
        &mut self,
        queues: Vec<(usize, Queue)>,
        interrupt: Arc<dyn VirtioInterrupt>,
    ) -> Result<(), ActivateError> {
        let mut c = self.0.lock().unwrap();
        assert!(c.acked.is_some(), "activated before FEATURES_OK");
        assert!(!c.active, "activated twice");
        for (i, q) in &queues {
            let max = MAX_SIZES[*i];
            assert!(q.size().is_power_of_two() && q.size() <= max, "queue {i} size {}", q.size());
            assert!(q.desc_table() != 0 && q.avail_ring() != 0 && q.used_ring() != 0);
            assert!(q.ready());
        }
        c.queues = queues
            .iter()
            .map(|(i, q)| (*i, q.size(), q.desc_table(), q.avail_ring(), q.used_ring()))
            .collect();
        c.active = true;
        c.interrupt = Some(interrupt);
        Ok(())
    }
    fn process_queue(&mut self, index: usize) {
        let mut c = self.0.lock().unwrap();
        assert!(c.active, "process_queue before activation");
        assert!(c.queues.iter().any(|q| q.0 == index), "queue {index} not enabled");
        c.processed.push(index);
    }
    fn reset(&mut self) {
        let mut c = self.0.lock().unwrap();
        c.active = false;
        c.acked = None;
        c.interrupt = None;
        c.queues.clear();
    }
}

#[derive(Default)]
struct Msi {
    fired: Mutex<Vec<u16>>,
}

impl MsixInterrupts for Msi {
    fn route(&self, _vector: u16, _msg: Option<MsiMessage>) {}
    fn fire(&self, vector: u16) {
        self.fired.lock().unwrap().push(vector);
    }
}

#[derive(Default)]
struct Registry {
    live: Mutex<Vec<u64>>,
}

impl IoEventRegistry for Registry {
    fn register(&self, addr: u64, _fd: &EventFd) -> std::io::Result<()> {
        let mut live = self.live.lock().unwrap();
        assert!(!live.contains(&addr), "ioeventfd registered twice at {addr:#x}");
        live.push(addr);
        Ok(())
    }
    fn unregister(&self, addr: u64, _fd: &EventFd) -> std::io::Result<()> {
        let mut live = self.live.lock().unwrap();
        let n = live.len();
        live.retain(|a| *a != addr);
        assert_eq!(live.len() + 1, n, "unregistered {addr:#x}, never registered");
        Ok(())
    }
}

/// Where the capabilities put things (parsed, not assumed).
struct Layout {
    common: u64,
    isr: u64,
    device: u64,
    notify: u64,
    msix_cap: usize,
    table: u64,
    pba: u64,
    cfg_cap: usize,
}

fn layout(d: &mut VirtioPciDevice) -> Layout {
    let mut l = Layout {
        common: 0,
        isr: 0,
        device: 0,
        notify: 0,
        msix_cap: 0,
        table: 0,
        pba: 0,
        cfg_cap: 0,
    };
    let mut cap = (d.read_config_register(0xd) & 0xff) as usize;
    while cap != 0 {
        let head = d.read_config_register(cap / 4);
        let offset = u64::from(d.read_config_register(cap / 4 + 2));
        match (head & 0xff, (head >> 24) & 0xff) {
            (0x09, 1) => l.common = offset,
            (0x09, 2) => l.notify = offset,
            (0x09, 3) => l.isr = offset,
            (0x09, 4) => l.device = offset,
            (0x09, 5) => l.cfg_cap = cap,
            (0x11, _) => {
                l.msix_cap = cap;
                l.table = u64::from(d.read_config_register(cap / 4 + 1) & !7);
                l.pba = u64::from(d.read_config_register(cap / 4 + 2) & !7);
            }
            _ => {}
        }
        cap = ((head >> 8) & 0xfc) as usize;
    }
    assert_ne!(l.cfg_cap, 0, "VIRTIO_PCI_CAP_PCI_CFG offered");
    l
}

fn read(d: &mut VirtioPciDevice, offset: u64, len: usize) -> u64 {
    let mut b = [0u8; 8];
    d.read_bar(0, offset, &mut b[..len]);
    u64::from_le_bytes(b)
}

fn write(d: &mut VirtioPciDevice, offset: u64, value: u64, len: usize) {
    d.write_bar(0, offset, &value.to_le_bytes()[..len]);
}

/// The common-config view of queue `q` (size, enable, desc, driver, device).
fn queue_view(d: &mut VirtioPciDevice, l: &Layout, q: u16) -> (u64, u64, u64, u64, u64) {
    write(d, l.common + 0x16, u64::from(q), 2);
    (
        read(d, l.common + 0x18, 2),
        read(d, l.common + 0x1c, 2),
        read(d, l.common + 0x20, 8),
        read(d, l.common + 0x28, 8),
        read(d, l.common + 0x30, 8),
    )
}

struct World {
    d: VirtioPciDevice,
    l: Layout,
    calls: Arc<Mutex<Calls>>,
    msi: Arc<Msi>,
    registry: Option<Arc<Registry>>,
    mapped: Option<u64>,
    /// The queue views at DRIVER_OK.
    frozen: Option<Vec<(u64, u64, u64, u64, u64)>>,
    driver_bits: u8,
    broken: Vec<u16>,
    ids: (u32, u32, u32),
}

impl World {
    fn new(ioeventfds: bool) -> Self {
        let calls = Arc::new(Mutex::new(Calls::default()));
        let msi = Arc::new(Msi::default());
        let registry = ioeventfds.then(|| Arc::new(Registry::default()));
        let notify = match &registry {
            Some(r) => NotifyMode::Ioeventfd(r.clone()),
            None => NotifyMode::InVcpu,
        };
        let mut d = VirtioPciDevice::new(
            Arc::new(Mutex::new(Fake(calls.clone()))),
            BAR,
            msi.clone(),
            notify,
        )
        .expect("transport");
        let l = layout(&mut d);
        let ids = (
            d.read_config_register(0),
            d.read_config_register(2),
            d.read_config_register(0xb),
        );
        Self {
            d,
            l,
            calls,
            msi,
            registry,
            mapped: None,
            frozen: None,
            driver_bits: 0,
            broken: Vec::new(),
            ids,
        }
    }

    fn status(&mut self) -> u8 {
        read(&mut self.d, self.l.common + 0x14, 1) as u8
    }

    fn step(&mut self, u: &mut Unstructured<'_>) -> FuzzResult<()> {
        let c = self.l.common;
        let len = *u.choose(&[1usize, 2, 4, 8])?;
        match u.int_in_range(0..=13u8)? {
            0 | 1 => {
                let offset = u.int_in_range(0..=0x40u64)?;
                let value = u.arbitrary::<u64>()?;
                if offset == 0x14 && len == 1 {
                    if value as u8 == 0 {
                        self.driver_bits = 0;
                        self.frozen = None;
                        self.broken.clear();
                    } else {
                        self.driver_bits |= value as u8;
                    }
                }
                write(&mut self.d, c + offset, value, len);
            }
            2 => {
                let offset = u.int_in_range(0..=0x40u64)?;
                read(&mut self.d, c + offset, len);
            }
            3 => {
                // A well-behaved bring-up, to get deep quickly.
                write(&mut self.d, c + 0x14, 0, 1);
                self.driver_bits = 0;
                self.frozen = None;
                self.broken.clear();
                write(&mut self.d, c + 0x14, 3, 1);
                write(&mut self.d, c + 0x08, 0, 4);
                write(&mut self.d, c + 0x0c, OFFERED & 0xffff_ffff, 4);
                write(&mut self.d, c + 0x08, 1, 4);
                write(&mut self.d, c + 0x0c, OFFERED >> 32, 4);
                write(&mut self.d, c + 0x14, 0xb, 1);
                for q in 0..MAX_SIZES.len() as u64 {
                    if u.arbitrary::<bool>()? {
                        write(&mut self.d, c + 0x16, q, 2);
                        write(&mut self.d, c + 0x18, 16, 2);
                        write(&mut self.d, c + 0x1a, u64::from(u.int_in_range(0..=4u16)?), 2);
                        write(&mut self.d, c + 0x20, 0x10_0000 * (q + 1), 8);
                        write(&mut self.d, c + 0x28, 0x10_0000 * (q + 1) + 0x1000, 8);
                        write(&mut self.d, c + 0x30, 0x10_0000 * (q + 1) + 0x2000, 8);
                        write(&mut self.d, c + 0x1c, 1, 2);
                    }
                }
                self.driver_bits = 0xf;
                write(&mut self.d, c + 0x14, 0xf, 1);
            }
            4 => {
                // A notify: mostly a real queue, sometimes anywhere.
                let q = u64::from(u.int_in_range(0..=4u8)?);
                let offset = if u.arbitrary::<bool>()? {
                    q * u64::from(NOTIFY_MULTIPLIER)
                } else {
                    u.int_in_range(0..=0x1000u64)?
                };
                write(&mut self.d, self.l.notify + offset, q, 2);
            }
            5 => {
                let offset = u.int_in_range(0..=0x40u64)?;
                if u.arbitrary::<bool>()? {
                    read(&mut self.d, self.l.device + offset, len);
                } else {
                    write(&mut self.d, self.l.device + offset, u.arbitrary()?, len);
                }
            }
            6 => {
                let first = read(&mut self.d, self.l.isr, 1);
                let again = read(&mut self.d, self.l.isr, 1);
                assert!(first <= 3 && again == 0, "ISR {first} then {again}");
            }
            7 => {
                let offset = u.int_in_range(0..=0x60u64)?;
                if u.arbitrary::<bool>()? {
                    write(&mut self.d, self.l.table + offset, u.arbitrary()?, len);
                } else {
                    read(&mut self.d, self.l.table + offset, len);
                    read(&mut self.d, self.l.pba + (offset & 8), len);
                }
            }
            8 => {
                // MSI-X control: enable / function mask.
                let ctl = *u.choose(&[0u16, 0x8000, 0xc000, 0x4000])?;
                self.d
                    .write_config_register(self.l.msix_cap / 4, 2, &ctl.to_le_bytes());
            }
            9 => {
                // The device raises something.
                let irq = self.calls.lock().unwrap().interrupt.clone();
                if let Some(irq) = irq {
                    match u.int_in_range(0..=2u8)? {
                        0 => {
                            let q = u.int_in_range(0..=3u16)?;
                            let want = self.vector_of(q);
                            let before = self.msi.fired.lock().unwrap().len();
                            irq.notify_queue(q);
                            self.check_fired(before, want);
                        }
                        1 => {
                            let want = self.config_vector();
                            let before = self.msi.fired.lock().unwrap().len();
                            irq.notify_config();
                            self.check_fired(before, want);
                        }
                        _ => {
                            let q = u.int_in_range(0..=2u16)?;
                            irq.queue_broken(q);
                            self.broken.push(q);
                            assert_ne!(self.status() & STATUS_NEEDS_RESET, 0, "broken: NEEDS_RESET");
                        }
                    }
                }
            }
            10 => {
                // The PCI_CFG window, with any BAR, offset and length.
                let cap = self.l.cfg_cap / 4;
                let bar = u.int_in_range(0..=6u8)?;
                self.d.write_config_register(cap + 1, 0, &[bar]);
                let offset = if u.arbitrary::<bool>()? {
                    u.int_in_range(0..=BAR_SIZE as u32 + 8)?
                } else {
                    u.arbitrary()?
                };
                self.d.write_config_register(cap + 2, 0, &offset.to_le_bytes());
                let length = u32::from(*u.choose(&[0u8, 1, 2, 3, 4, 8])?);
                self.d.write_config_register(cap + 3, 0, &length.to_le_bytes());
                if u.arbitrary::<bool>()? {
                    let data: [u8; 4] = u.arbitrary()?;
                    // Only a 1-byte window on BAR 0's device_status writes it.
                    if bar == 0 && length == 1 && u64::from(offset) == self.l.common + 0x14 {
                        if data[0] == 0 {
                            self.driver_bits = 0;
                            self.frozen = None;
                            self.broken.clear();
                        } else {
                            self.driver_bits |= data[0];
                        }
                    }
                    self.d.write_config_register(cap + 4, 0, &data);
                } else {
                    self.d.read_config_register(cap + 4);
                }
            }
            11 => {
                // Any configuration register, any bytes.
                let reg = u.int_in_range(0..=63usize)?;
                let offset = u.int_in_range(0..=3u64)?;
                let n = u.int_in_range(1..=4usize)?;
                let bytes: [u8; 4] = u.arbitrary()?;
                if reg == self.l.cfg_cap / 4 + 4 {
                    // A data write through the window may write the status
                    // or reset the device: take the conservative view.
                    self.driver_bits = 0xff;
                    self.frozen = None;
                    self.broken.clear();
                }
                self.d.write_config_register(reg, offset, &bytes[..n]);
            }
            12 => {
                // The root complex: BAR 0 starts or stops decoding.
                let region = BarRegion {
                    index: 0,
                    addr: BAR + 0x10_0000 * u64::from(u.int_in_range(0..=2u8)?),
                    size: BAR_SIZE,
                    io: false,
                };
                match self.mapped {
                    Some(addr) => {
                        self.d.bar_unmapped(BarRegion { addr, ..region });
                        self.mapped = None;
                    }
                    None => {
                        self.d.bar_mapped(region);
                        self.mapped = Some(region.addr);
                    }
                }
            }
            _ => {
                let offset = u.int_in_range(0..=BAR_SIZE + 16)?;
                let bar = u.int_in_range(0..=5usize)?;
                let mut b = [0u8; 8];
                self.d.read_bar(bar, offset, &mut b[..len]);
            }
        }
        self.check();
        Ok(())
    }

    fn vector_of(&mut self, q: u16) -> u16 {
        write(&mut self.d, self.l.common + 0x16, u64::from(q), 2);
        read(&mut self.d, self.l.common + 0x1a, 2) as u16
    }

    fn config_vector(&mut self) -> u16 {
        read(&mut self.d, self.l.common + 0x10, 2) as u16
    }

    /// An interrupt raised now fires `want` at most (masking may hold it).
    fn check_fired(&mut self, before: usize, want: u16) {
        let fired = self.msi.fired.lock().unwrap();
        for v in &fired[before..] {
            assert_eq!(*v, want, "fired vector {v}, the driver reads back {want}");
        }
        assert!(fired.len() <= before + 1);
    }

    fn check(&mut self) {
        let l = self.l.common;
        assert_eq!(
            (
                self.d.read_config_register(0),
                self.d.read_config_register(2),
                self.d.read_config_register(0xb)
            ),
            self.ids,
            "PCI IDs changed"
        );
        assert_eq!(read(&mut self.d, l + 0x12, 2), MAX_SIZES.len() as u64);
        let select = read(&mut self.d, l + 0x00, 4);
        write(&mut self.d, l + 0x00, 1, 4);
        assert_eq!(read(&mut self.d, l + 0x04, 4), OFFERED >> 32);
        write(&mut self.d, l + 0x00, select, 4);
        let status = self.status();
        assert_eq!(
            status & !STATUS_NEEDS_RESET & !self.driver_bits,
            0,
            "status {status:#x} has bits the driver never set ({:#x})",
            self.driver_bits
        );
        if !self.broken.is_empty() {
            assert_ne!(status & STATUS_NEEDS_RESET, 0);
        }
        let vectors = ((self.d.read_config_register(self.l.msix_cap / 4) >> 16) & 0x7ff) as u16 + 1;
        let saved = read(&mut self.d, l + 0x16, 2);
        let mut views = Vec::new();
        for q in 0..MAX_SIZES.len() as u16 {
            let v = queue_view(&mut self.d, &self.l, q);
            assert!(
                v.0.is_power_of_two() && v.0 <= u64::from(MAX_SIZES[usize::from(q)]),
                "queue {q} size {}",
                v.0
            );
            let vector = read(&mut self.d, l + 0x1a, 2) as u16;
            assert!(vector == NO_VECTOR || vector < vectors, "vector {vector}");
            views.push(v);
        }
        write(&mut self.d, l + 0x16, saved, 2);
        let cv = self.config_vector();
        assert!(cv == NO_VECTOR || cv < vectors);
        let active = self.calls.lock().unwrap().active;
        if status & STATUS_DRIVER_OK != 0 && active {
            match &self.frozen {
                Some(f) => assert_eq!(f, &views, "queue configuration changed after DRIVER_OK"),
                None => self.frozen = Some(views),
            }
        }
        if active {
            assert_ne!(status & STATUS_FEATURES_OK, 0, "active without FEATURES_OK");
        }
        let calls = self.calls.lock().unwrap();
        for q in &calls.processed {
            assert!(!self.broken.contains(&(*q as u16)), "a broken queue {q} was served");
        }
        drop(calls);
        self.calls.lock().unwrap().processed.clear();
        if let Some(r) = &self.registry {
            let mut live = r.live.lock().unwrap().clone();
            live.sort_unstable();
            let want: Vec<u64> = match self.mapped {
                Some(base) => (0..MAX_SIZES.len() as u64)
                    .map(|q| base + self.l.notify + q * u64::from(NOTIFY_MULTIPLIER))
                    .collect(),
                None => Vec::new(),
            };
            assert_eq!(live, want, "ioeventfds while BAR 0 decodes at {:?}", self.mapped);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(ioeventfds) = u.arbitrary::<bool>() else {
        return;
    };
    let mut world = World::new(ioeventfds);
    for _ in 0..96 {
        if u.is_empty() || world.step(&mut u).is_err() {
            break;
        }
    }
});
