//! PCI configuration space and BAR accesses through the root complex, as a
//! guest makes them: 0xCF8/0xCFC and ECAM reads and writes of any width at
//! any offset, MMIO and port accesses in the windows (MSI-X tables
//! included), on bus 0 holding the host bridge, a virtio-pci device
//! (ioeventfd notify) and an assigned device whose VFIO side is a fake
//! device region (emulated configuration on top of the device's own).
//!
//! Invariants:
//! - read-only configuration (IDs, class, subsystem, the capability list)
//!   never changes, however it is written;
//! - decoding BARs lie wholly inside a window, are naturally aligned and
//!   never overlap; what each device installed for its BARs (the virtio
//!   device's ioeventfds, the assigned device's memory slots) is exactly
//!   the decoding BARs, at the addresses they decode at;
//! - the assigned device's BAR registers, expansion ROM and MSI-X
//!   capability never reach the device, nor do writes to its MSI-X table or
//!   PBA;
//! - an MSI-X vector is routed exactly when MSI-X is enabled, the function
//!   and the vector are unmasked, and the entry is programmed, to the
//!   entry's message.

#![no_main]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use devices::pci::host_bridge::HostBridge;
use devices::pci::{
    BarKind, MsiMessage, MsixInterrupts, PciConfigIo, PciConfigMmio, PciDevice, PciMmioWindow,
    PciRoot, PciWindows,
};
use devices::vfio::fake::{FakeVfio, FakeVfioConfig};
use devices::vfio::{MemorySlots, VfioPciDevice};
use devices::virtio::pci::{IoEventRegistry, NotifyMode, VirtioPciDevice, BAR_SIZE};
use devices::virtio::{ActivateError, VirtioDevice, VirtioInterrupt, VIRTIO_F_VERSION_1};
use devices::BusDevice;
use libfuzzer_sys::arbitrary::{Result as FuzzResult, Unstructured};
use libfuzzer_sys::fuzz_target;
use virtio_queue::Queue;
use vmm_sys_util::eventfd::EventFd;

const MMIO32: (u64, u64) = (0xc000_0000, 0x2000_0000);
const MMIO64: (u64, u64) = (0x1_0000_0000, 0x1_0000_0000);
const IO: (u64, u64) = (0x1000, 0xf000);

struct NullDevice;

impl VirtioDevice for NullDevice {
    fn device_type(&self) -> u32 {
        2
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &[64]
    }
    fn device_features(&self) -> u64 {
        VIRTIO_F_VERSION_1
    }
    fn set_acked_features(&mut self, _features: u64) {}
    fn read_config(&self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }
    fn write_config(&mut self, _offset: u64, _data: &[u8]) {}
    fn activate(
        &mut self,
        _queues: Vec<(usize, Queue)>,
        _interrupt: Arc<dyn VirtioInterrupt>,
    ) -> Result<(), ActivateError> {
        Ok(())
    }
    fn process_queue(&mut self, _index: usize) {}
    fn reset(&mut self) {}
}

#[derive(Default)]
struct Registry(Mutex<Vec<u64>>);

impl IoEventRegistry for Registry {
    fn register(&self, addr: u64, _fd: &EventFd) -> std::io::Result<()> {
        let mut v = self.0.lock().unwrap();
        assert!(!v.contains(&addr), "ioeventfd at {addr:#x} twice");
        v.push(addr);
        Ok(())
    }
    fn unregister(&self, addr: u64, _fd: &EventFd) -> std::io::Result<()> {
        let mut v = self.0.lock().unwrap();
        let n = v.len();
        v.retain(|a| *a != addr);
        assert_eq!(v.len() + 1, n, "ioeventfd at {addr:#x} was not registered");
        Ok(())
    }
}

/// Memory slots: slot -> (gpa, size).
#[derive(Default)]
struct Slots(Mutex<(u32, BTreeMap<u32, (u64, u64)>)>);

impl MemorySlots for Slots {
    fn map(&self, gpa: u64, size: u64, _host: u64) -> std::io::Result<u32> {
        let mut s = self.0.lock().unwrap();
        for (g, z) in s.1.values() {
            assert!(gpa >= g + z || gpa + size <= *g, "overlapping slots");
        }
        s.0 += 1;
        let slot = s.0;
        s.1.insert(slot, (gpa, size));
        Ok(slot)
    }
    fn unmap(&self, slot: u32) -> std::io::Result<()> {
        assert!(self.0.lock().unwrap().1.remove(&slot).is_some(), "unmapped a free slot");
        Ok(())
    }
}

#[derive(Default)]
struct Routes(Mutex<BTreeMap<u16, MsiMessage>>);

impl MsixInterrupts for Routes {
    fn route(&self, vector: u16, msg: Option<MsiMessage>) {
        let mut r = self.0.lock().unwrap();
        match msg {
            Some(m) => r.insert(vector, m),
            None => r.remove(&vector),
        };
    }
    fn fire(&self, _vector: u16) {}
}

struct World {
    root: Arc<PciRoot>,
    cf8: PciConfigIo,
    ecam: PciConfigMmio,
    windows: Vec<PciMmioWindow>,
    io: PciMmioWindow,
    devices: Vec<Arc<Mutex<dyn PciDevice>>>,
    registry: Arc<Registry>,
    slots: Arc<Slots>,
    routes: Arc<Routes>,
    fake: Arc<FakeVfio>,
    read_only: Vec<Vec<(usize, u32, u32)>>,
    vfio_slot: u8,
    virtio_slot: u8,
}

/// Registers that must not change for a device, with the bits that must
/// not: IDs, class, subsystem, the capability pointer and every
/// capability's ID/next byte pair.
fn read_only_regs(d: &mut dyn PciDevice) -> Vec<(usize, u32, u32)> {
    let mut regs: Vec<(usize, u32, u32)> = [0usize, 2, 0xb]
        .iter()
        .map(|r| (*r, u32::MAX, d.read_config_register(*r)))
        .collect();
    regs.push((0xd, 0xff, d.read_config_register(0xd) & 0xff));
    let mut cap = (d.read_config_register(0xd) & 0xfc) as usize;
    let mut n = 0;
    while cap >= 0x40 && n < 48 {
        let head = d.read_config_register(cap / 4) & 0xffff;
        regs.push((cap / 4, 0xffff, head));
        cap = ((head >> 8) & 0xfc) as usize;
        n += 1;
    }
    regs
}

impl World {
    fn new() -> Self {
        let root = Arc::new(PciRoot::new(PciWindows {
            mmio: vec![MMIO32, MMIO64],
            io: vec![IO],
        }));
        root.add_device(Arc::new(Mutex::new(HostBridge::new())))
            .expect("bridge");
        let registry = Arc::new(Registry::default());
        let virtio: Arc<Mutex<dyn PciDevice>> = Arc::new(Mutex::new(
            VirtioPciDevice::new(
                Arc::new(Mutex::new(NullDevice)),
                MMIO64.0,
                Arc::new(Routes::default()),
                NotifyMode::Ioeventfd(registry.clone()),
            )
            .expect("virtio"),
        ));
        let virtio_slot = root.add_device(virtio.clone()).expect("slot");
        let fake = Arc::new(FakeVfio::new(&FakeVfioConfig::default()));
        let slots = Arc::new(Slots::default());
        let routes = Arc::new(Routes::default());
        let mut next32 = MMIO32.0;
        let mut next64 = MMIO64.0 + BAR_SIZE;
        let mut alloc = |size: u64, kind: BarKind| {
            let next = if kind == BarKind::Mem64 {
                &mut next64
            } else {
                &mut next32
            };
            let at = next.next_multiple_of(size);
            *next = at + size;
            Some(at)
        };
        let eventfds = (0..5).map(|_| EventFd::new(0).expect("eventfd")).collect();
        let vfio: Arc<Mutex<dyn PciDevice>> = Arc::new(Mutex::new(
            VfioPciDevice::new(
                "0000:00:03.0",
                fake.clone(),
                &mut alloc,
                slots.clone(),
                routes.clone(),
                eventfds,
            )
            .expect("vfio"),
        ));
        let vfio_slot = root.add_device(vfio.clone()).expect("slot");
        let devices = vec![virtio, vfio];
        let read_only = devices
            .iter()
            .map(|d| read_only_regs(&mut *d.lock().unwrap()))
            .collect();
        Self {
            cf8: PciConfigIo::new(root.clone()),
            ecam: PciConfigMmio::new(root.clone()),
            windows: vec![
                PciMmioWindow::new(root.clone(), MMIO32.0),
                PciMmioWindow::new(root.clone(), MMIO64.0),
            ],
            io: PciMmioWindow::new_io(root.clone(), IO.0),
            root,
            devices,
            registry,
            slots,
            routes,
            fake,
            read_only,
            vfio_slot,
            virtio_slot,
        }
    }

    fn ecam_offset(&self, u: &mut Unstructured<'_>) -> FuzzResult<u64> {
        let slot = u64::from(*u.choose(&[0u8, self.virtio_slot, self.vfio_slot, 7])?);
        let reg = if u.arbitrary::<bool>()? {
            *u.choose(&[1u64, 4, 5, 6, 7, 8, 9, 0xc, 0xd, 0xf, 0x10, 0x11, 0x12, 0x13, 0x14, 0x1c, 0x1d, 0x1e, 0x1f])?
        } else {
            u.int_in_range(0..=0x3fu64)?
        };
        Ok((slot << 15) | (reg * 4) | u64::from(u.int_in_range(0..=3u8)?))
    }

    fn step(&mut self, u: &mut Unstructured<'_>) -> FuzzResult<()> {
        let len = *u.choose(&[1usize, 2, 4, 8])?;
        let mut buf = [0u8; 8];
        match u.int_in_range(0..=7u8)? {
            0 => {
                let off = self.ecam_offset(u)?;
                let value: [u8; 8] = u.arbitrary()?;
                // Mostly BAR-looking values: addresses inside and outside
                // the windows, all ones for sizing.
                let v = match u.int_in_range(0..=3u8)? {
                    0 => value,
                    1 => (*u.choose(&[0xc000_0000u32, 0xc010_0000, 0xdfff_0000, 0x1000_0000, 0xffff_ffff, 0])?)
                        .to_le_bytes()
                        .iter()
                        .chain([0; 4].iter())
                        .copied()
                        .collect::<Vec<u8>>()
                        .try_into()
                        .unwrap_or(value),
                    2 => [*u.choose(&[0u8, 2, 3, 6, 7])?, 0, 0, 0, 0, 0, 0, 0],
                    _ => [1, 0, 0, 0, 0, 0, 0, 0],
                };
                self.ecam.write(off, &v[..len]);
            }
            1 => {
                let off = self.ecam_offset(u)?;
                self.ecam.read(off, &mut buf[..len]);
            }
            2 => {
                let addr: u32 = 0x8000_0000 | (u32::from(*u.choose(&[self.vfio_slot, self.virtio_slot, 0, 9])?) << 11)
                    | (u.int_in_range(0..=0x3fu32)? << 2);
                let addr = if u.int_in_range(0..=8u8)? == 0 { u.arbitrary()? } else { addr };
                self.cf8.write(0, &addr.to_le_bytes());
                let off = 4 + u64::from(u.int_in_range(0..=3u8)?);
                if u.arbitrary::<bool>()? {
                    let v: [u8; 8] = u.arbitrary()?;
                    self.cf8.write(off, &v[..len.min(4)]);
                } else {
                    self.cf8.read(off, &mut buf[..len.min(4)]);
                }
            }
            3 | 4 => {
                // Inside a window: near where BARs usually are.
                let w = u.int_in_range(0..=1usize)?;
                let offset = if u.arbitrary::<bool>()? {
                    u.int_in_range(0..=0x30_0000u64)?
                } else {
                    u.int_in_range(0..=0x1fff_ffffu64)?
                };
                if u.arbitrary::<bool>()? {
                    let v: [u8; 8] = u.arbitrary()?;
                    self.windows[w].write(offset, &v[..len]);
                } else {
                    self.windows[w].read(offset, &mut buf[..len]);
                }
            }
            5 => {
                let offset = u.int_in_range(0..=0x100u64)?;
                if u.arbitrary::<bool>()? {
                    self.io.write(offset, &[u.arbitrary()?]);
                } else {
                    self.io.read(offset, &mut buf[..1]);
                }
            }
            6 => {
                // Enable decoding everywhere: reach the BARs quickly.
                for slot in [self.virtio_slot, self.vfio_slot] {
                    self.ecam.write(u64::from(slot) << 15 | 4, &[*u.choose(&[2u8, 3, 6, 7])?]);
                }
            }
            _ => {
                // Program and unmask an MSI-X entry of the assigned device,
                // enable MSI-X: routes must follow.
                let ctl = *u.choose(&[0x8000u16, 0xc000, 0])?;
                self.ecam
                    .write(u64::from(self.vfio_slot) << 15 | 0x72, &ctl.to_le_bytes());
                let v = u64::from(u.int_in_range(0..=5u8)?);
                let words = [u.arbitrary::<u32>()? | 0xfee0_0000, 0, u.arbitrary()?, u.int_in_range(0..=1u32)?];
                let mut d = self.devices[1].lock().unwrap();
                for (k, w) in words.iter().enumerate() {
                    d.write_bar(2, v * 16 + 4 * k as u64, &w.to_le_bytes());
                }
            }
        }
        self.check();
        Ok(())
    }

    fn check(&mut self) {
        for (d, regs) in self.devices.iter().zip(&self.read_only) {
            let mut d = d.lock().unwrap();
            for (reg, mask, value) in regs {
                assert_eq!(
                    d.read_config_register(*reg) & mask,
                    *value,
                    "read-only config dword {reg:#x} changed"
                );
            }
        }
        let decoded = self.root.decoded_bars();
        for (i, (_, a)) in decoded.iter().enumerate() {
            assert_eq!(a.addr % a.size, 0, "misaligned {a:?}");
            let windows = if a.io { vec![IO] } else { vec![MMIO32, MMIO64] };
            assert!(
                windows.iter().any(|(b, s)| a.addr >= *b && a.addr + a.size <= b + s),
                "{a:?} decodes outside the windows"
            );
            for (_, b) in &decoded[i + 1..] {
                assert!(
                    a.io != b.io || a.addr + a.size <= b.addr || b.addr + b.size <= a.addr,
                    "{a:?} overlaps {b:?}"
                );
            }
        }
        // The virtio device's ioeventfds sit in BAR 0 where it decodes.
        let mut live = self.registry.0.lock().unwrap().clone();
        live.sort_unstable();
        let want: Vec<u64> = decoded
            .iter()
            .filter(|(s, r)| *s == self.virtio_slot && r.index == 0 && !r.io)
            .map(|(_, r)| r.addr + 0x2000)
            .collect();
        assert_eq!(live, want, "virtio ioeventfds vs BAR 0 decoding");
        // The assigned device's slots are its decoding mmap-able BAR (0).
        let slots: Vec<(u64, u64)> = self.slots.0.lock().unwrap().1.values().copied().collect();
        let want: Vec<(u64, u64)> = decoded
            .iter()
            .filter(|(s, r)| *s == self.vfio_slot && r.index == 0)
            .map(|(_, r)| (r.addr, 0x2_0000))
            .collect();
        assert_eq!(slots, want, "VFIO memory slots vs BAR decoding");
        // Emulated parts never reach the device.
        for (offset, bytes) in &self.fake.log().config_writes {
            let (start, end) = (*offset, *offset + bytes.len() as u64);
            for (lo, hi) in [(0x10u64, 0x28u64), (0x30, 0x34), (0x70, 0x7c)] {
                assert!(end <= lo || start >= hi, "config write {offset:#x} reached the device");
            }
        }
        for (bar, offset, bytes) in &self.fake.log().bar_writes {
            let end = offset + bytes.len() as u64;
            let touches = |lo: u64, hi: u64| *offset < hi && end > lo;
            assert!(
                !(*bar == 2 && (touches(0, 0x50) || touches(0x2000, 0x2008))),
                "a write to the MSI-X table or PBA reached the device"
            );
        }
        // Routes follow the table.
        let mut d = self.devices[1].lock().unwrap();
        let ctl = (d.read_config_register(0x70 / 4) >> 16) as u16;
        let enabled = ctl & 0x8000 != 0 && ctl & 0x4000 == 0;
        let routes = self.routes.0.lock().unwrap().clone();
        for v in 0..5u16 {
            let mut w = [[0u8; 4]; 4];
            for (k, word) in w.iter_mut().enumerate() {
                d.read_bar(2, u64::from(v) * 16 + 4 * k as u64, word);
            }
            let lo = u32::from_le_bytes(w[0]);
            let hi = u32::from_le_bytes(w[1]);
            let data = u32::from_le_bytes(w[2]);
            let masked = u32::from_le_bytes(w[3]) & 1 != 0;
            let want = (enabled && !masked && lo != 0).then_some(MsiMessage {
                addr: (u64::from(hi) << 32) | u64::from(lo),
                data,
            });
            assert_eq!(routes.get(&v).copied(), want, "vector {v} route");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let mut world = World::new();
    for _ in 0..128 {
        if u.is_empty() || world.step(&mut u).is_err() {
            break;
        }
    }
});
