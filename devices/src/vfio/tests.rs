//! The passthrough model over a fake VFIO device: memory slots follow BAR
//! decoding, the virtualized configuration space keeps the device's
//! read-only and emulated fields out of the guest's reach, and MSI-X is
//! served from the emulated table.

use std::sync::{Arc, Mutex};

use super::fake::{FakeVfio, FakeVfioConfig};
use super::{MemorySlots, VfioPciDevice};
use crate::pci::config::BarKind;
use crate::pci::msix::{MsiMessage, MsixInterrupts};
use crate::pci::{PciConfigMmio, PciRoot, PciWindows};
use crate::BusDevice;

/// Memory slots as a map: slot -> (gpa, size, host).
#[derive(Default)]
struct Slots {
    live: Mutex<Vec<(u32, u64, u64, u64)>>,
    next: Mutex<u32>,
}

impl MemorySlots for Slots {
    fn map(&self, gpa: u64, size: u64, host_addr: u64) -> std::io::Result<u32> {
        let mut next = self.next.lock().expect("lock");
        *next += 1;
        self.live
            .lock()
            .expect("lock")
            .push((*next, gpa, size, host_addr));
        Ok(*next)
    }
    fn unmap(&self, slot: u32) -> std::io::Result<()> {
        self.live.lock().expect("lock").retain(|s| s.0 != slot);
        Ok(())
    }
}

impl Slots {
    fn gpas(&self) -> Vec<u64> {
        self.live
            .lock()
            .expect("lock")
            .iter()
            .map(|s| s.1)
            .collect()
    }
}

#[derive(Default)]
struct Routes {
    routes: Mutex<Vec<(u16, Option<MsiMessage>)>>,
}

impl MsixInterrupts for Routes {
    fn route(&self, vector: u16, msg: Option<MsiMessage>) {
        self.routes.lock().expect("lock").push((vector, msg));
    }
    fn fire(&self, _vector: u16) {}
}

const WINDOW: u64 = 0xc000_0000;

fn setup() -> (Arc<PciRoot>, Arc<FakeVfio>, Arc<Slots>, Arc<Routes>) {
    let fake = Arc::new(FakeVfio::new(&FakeVfioConfig::default()));
    let slots = Arc::new(Slots::default());
    let routes = Arc::new(Routes::default());
    let mut next = WINDOW;
    let mut alloc = |size: u64, _kind: BarKind| {
        let at = next.next_multiple_of(size);
        next = at + size;
        Some(at)
    };
    let eventfds = (0..5)
        .map(|_| vmm_sys_util::eventfd::EventFd::new(0).expect("eventfd"))
        .collect();
    let dev = VfioPciDevice::new(
        "0000:00:03.0",
        fake.clone(),
        &mut alloc,
        slots.clone(),
        routes.clone(),
        eventfds,
    )
    .expect("device");
    let root = Arc::new(PciRoot::new(PciWindows {
        mmio: vec![(WINDOW, 0x1000_0000)],
        io: vec![],
    }));
    root.add_device(Arc::new(Mutex::new(dev))).expect("slot");
    (root, fake, slots, routes)
}

fn cfg_read(ecam: &mut PciConfigMmio, offset: u64) -> u32 {
    let mut d = [0u8; 4];
    ecam.read(offset, &mut d);
    u32::from_le_bytes(d)
}

#[test]
fn the_memory_slot_exists_exactly_while_the_bar_decodes() {
    let (root, _fake, slots, _) = setup();
    let mut ecam = PciConfigMmio::new(root.clone());
    assert!(slots.gpas().is_empty(), "decoding off at start");
    let bar0 = u64::from(cfg_read(&mut ecam, 0x10) & !0xf);
    ecam.write(4, &[2]);
    assert_eq!(slots.gpas(), vec![bar0]);
    ecam.write(4, &[0]);
    assert!(slots.gpas().is_empty(), "decoding off removes the slot");
    let moved = bar0 + 0x100_0000;
    ecam.write(0x10, &(moved as u32).to_le_bytes());
    assert!(slots.gpas().is_empty(), "moved while off: still nothing");
    ecam.write(4, &[2]);
    assert_eq!(slots.gpas(), vec![moved], "installed where the BAR is now");
    ecam.write(0x10, &(bar0 as u32).to_le_bytes());
    assert_eq!(slots.gpas(), vec![bar0], "moved while decoding");
    for _ in 0..100 {
        ecam.write(4, &[0]);
        ecam.write(4, &[2]);
    }
    assert_eq!(slots.gpas(), vec![bar0]);
}

#[test]
fn virtualized_config_keeps_emulated_fields_from_the_device() {
    let (root, fake, _slots, _) = setup();
    let mut ecam = PciConfigMmio::new(root.clone());
    let ids = cfg_read(&mut ecam, 0);
    // BARs, ROM, the MSI-X capability and interrupt line are emulated:
    // writing them never reaches the device.
    for offset in [0x10u64, 0x14, 0x18, 0x1c, 0x20, 0x24, 0x30, 0x3c, 0x70] {
        ecam.write(offset, &[0xff; 4]);
    }
    ecam.write(0, &[0; 4]);
    assert_eq!(cfg_read(&mut ecam, 0), ids, "IDs are read-only");
    assert_eq!(cfg_read(&mut ecam, 0x30), 0, "no expansion ROM");
    assert_eq!(cfg_read(&mut ecam, 0x3c) >> 8 & 0xff, 0, "no INTx pin");
    let reached: Vec<u64> = fake.log().config_writes.iter().map(|w| w.0).collect();
    assert_eq!(
        reached,
        vec![0],
        "only the ID write went through (and did nothing)"
    );
    // MSI is unlinked: the list goes straight to MSI-X.
    assert_eq!(cfg_read(&mut ecam, 0x34) & 0xff, 0x70);
}

#[test]
fn msix_enable_arms_vfio_and_the_table_routes_vectors() {
    let (root, fake, _slots, routes) = setup();
    let mut ecam = PciConfigMmio::new(root.clone());
    let bar2 =
        u64::from(cfg_read(&mut ecam, 0x18) & !0xf) | (u64::from(cfg_read(&mut ecam, 0x1c)) << 32);
    ecam.write(4, &[2]);
    ecam.write(0x72, &0x8000u16.to_le_bytes());
    assert_eq!(fake.log().msix, Some(5));
    let mut window = crate::pci::PciMmioWindow::new(root.clone(), WINDOW);
    let table = bar2 - WINDOW;
    window.write(table + 16, &0xfee0_0000u32.to_le_bytes());
    window.write(table + 16 + 8, &0x31u32.to_le_bytes());
    window.write(table + 16 + 12, &0u32.to_le_bytes());
    assert_eq!(
        routes.routes.lock().expect("lock").last(),
        Some(&(
            1,
            Some(MsiMessage {
                addr: 0xfee0_0000,
                data: 0x31
            })
        ))
    );
    assert!(fake.log().bar_writes.is_empty(), "the table is emulated");
    let mut d = [0u8; 4];
    window.read(table + 16 + 8, &mut d);
    assert_eq!(u32::from_le_bytes(d), 0x31);
    // Past the table and PBA, the trapped BAR reaches the device.
    window.write(table + 0x3000, &[1, 2, 3, 4]);
    assert_eq!(fake.log().bar_writes, vec![(2, 0x3000, vec![1, 2, 3, 4])]);
}

#[test]
fn dropping_the_device_removes_slots_and_mmaps() {
    let (root, fake, slots, _) = setup();
    let mut ecam = PciConfigMmio::new(root.clone());
    ecam.write(4, &[2]);
    assert_eq!(slots.gpas().len(), 1);
    drop(ecam);
    drop(root);
    assert!(slots.gpas().is_empty());
    assert!(fake.log().mmaps.is_empty());
    assert_eq!(fake.log().resets, 2, "reset when opened and when released");
}

/// Found by the pci_config fuzz target: writes to the MSI-X capability's
/// table/PBA location dwords reached the device.
#[test]
fn the_whole_msix_capability_is_kept_from_the_device() {
    let (root, fake, _slots, _) = setup();
    let mut ecam = PciConfigMmio::new(root.clone());
    let before = (cfg_read(&mut ecam, 0x74), cfg_read(&mut ecam, 0x78));
    for offset in 0x74..0x7c {
        ecam.write(offset, &[0x5a]);
    }
    ecam.write(0x74, &[0xff; 4]);
    assert!(
        fake.log().config_writes.is_empty(),
        "{:?}",
        fake.log().config_writes
    );
    assert_eq!(
        (cfg_read(&mut ecam, 0x74), cfg_read(&mut ecam, 0x78)),
        before
    );
}

#[test]
fn accesses_straddling_the_msix_table_or_pba_reach_neither() {
    let (root, fake, _slots, _) = setup();
    let mut ecam = PciConfigMmio::new(root.clone());
    let bar2 =
        u64::from(cfg_read(&mut ecam, 0x18) & !0xf) | (u64::from(cfg_read(&mut ecam, 0x1c)) << 32);
    ecam.write(4, &[2]);
    let mut window = crate::pci::PciMmioWindow::new(root.clone(), WINDOW);
    let base = bar2 - WINDOW;
    // 8 bytes at 0x1ffc: half before the PBA (at 0x2000), half in it.
    window.write(base + 0x1ffc, &[1; 8]);
    // 8 bytes at the table's last dword and past it (table: 5 x 16 bytes).
    window.write(base + 0x4c, &[2; 8]);
    assert!(
        fake.log().bar_writes.is_empty(),
        "{:?}",
        fake.log().bar_writes
    );
    let mut d = [0u8; 8];
    window.read(base + 0x1ffc, &mut d);
    assert_eq!(d, [0xff; 8]);
    // Beside them, the BAR is the device's.
    window.write(base + 0x1ff8, &[3; 8]);
    assert_eq!(fake.log().bar_writes, vec![(2, 0x1ff8, vec![3; 8])]);
}

/// Routes that hold a signal for vectors that are not routed (as the VMM's
/// eventfds do while a vector is masked).
#[derive(Default)]
struct HoldingRoutes {
    routed: Mutex<Vec<u16>>,
    signalled: Mutex<Vec<u16>>,
}

impl MsixInterrupts for HoldingRoutes {
    fn route(&self, vector: u16, msg: Option<MsiMessage>) {
        let mut r = self.routed.lock().expect("lock");
        r.retain(|v| *v != vector);
        if msg.is_some() {
            r.push(vector);
            self.signalled
                .lock()
                .expect("lock")
                .retain(|v| *v != vector);
        }
    }
    fn fire(&self, _vector: u16) {}
    fn pending(&self, vector: u16) -> bool {
        !self.routed.lock().expect("lock").contains(&vector)
            && self.signalled.lock().expect("lock").contains(&vector)
    }
}

#[test]
fn msi_pending_bits_show_signals_held_for_masked_vectors() {
    // MSI only, 64-bit, per-vector masks, 4 vectors capable.
    let fake = Arc::new(FakeVfio::new(&FakeVfioConfig {
        msix: None,
        msi: Some(0x0180 | (2 << 1)),
        ..FakeVfioConfig::default()
    }));
    let routes = Arc::new(HoldingRoutes::default());
    let mut next = WINDOW;
    let mut alloc = |size: u64, _kind: BarKind| {
        let at = next.next_multiple_of(size);
        next = at + size;
        Some(at)
    };
    let eventfds = (0..4)
        .map(|_| vmm_sys_util::eventfd::EventFd::new(0).expect("eventfd"))
        .collect();
    let dev = VfioPciDevice::new(
        "0000:00:03.0",
        fake.clone(),
        &mut alloc,
        Arc::new(Slots::default()),
        routes.clone(),
        eventfds,
    )
    .expect("device");
    let root = Arc::new(PciRoot::new(PciWindows {
        mmio: vec![(WINDOW, 0x1000_0000)],
        io: vec![],
    }));
    root.add_device(Arc::new(Mutex::new(dev))).expect("slot");
    let mut ecam = PciConfigMmio::new(root);
    // Program the message, mask vector 0, enable MSI.
    ecam.write(0x54, &0xfee0_0000u32.to_le_bytes());
    ecam.write(0x58, &0u32.to_le_bytes());
    ecam.write(0x5c, &0x41u32.to_le_bytes());
    ecam.write(0x60, &1u32.to_le_bytes());
    ecam.write(0x52, &1u16.to_le_bytes());
    assert_eq!(fake.log().msi, Some(1));
    assert_eq!(cfg_read(&mut ecam, 0x64), 0, "nothing pending yet");
    // The device signals while vector 0 is masked.
    routes.signalled.lock().expect("lock").push(0);
    assert_eq!(cfg_read(&mut ecam, 0x64), 1, "vector 0 pending");
    // Unmasked: routed, the held signal goes out, nothing pending.
    ecam.write(0x60, &0u32.to_le_bytes());
    assert_eq!(*routes.routed.lock().expect("lock"), vec![0]);
    assert_eq!(cfg_read(&mut ecam, 0x64), 0);
}
