//! The root complex: bus 0 of segment 0, its configuration access
//! mechanisms (legacy 0xCF8/0xCFC and ECAM), and routing of MMIO and port
//! I/O in the BAR windows to whichever device currently decodes the
//! address.
//!
//! After every configuration write the root complex works out which BARs
//! decode (see the [module](super) documentation) and tells the devices
//! what changed, one refresh at a time. BARs that decode keep decoding when
//! another device's BAR is moved over them: the newcomer waits until the
//! place is free.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

use super::{BarRegion, PciDevice};
use crate::BusDevice;

/// Slots on bus 0.
pub const MAX_SLOTS: u8 = 32;
/// Bytes of ECAM per bus.
pub const ECAM_BUS_SIZE: u64 = 1 << 20;

/// Errors adding devices.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PciRootError {
    /// The slot is taken or out of range.
    #[error("PCI slot {0} is already used or out of range")]
    SlotInUse(u8),
    /// No free slot left.
    #[error("no free PCI slot on bus 0")]
    BusFull,
}

type Device = Arc<Mutex<dyn PciDevice>>;

fn lock(device: &Device) -> std::sync::MutexGuard<'_, dyn PciDevice + 'static> {
    device.lock().unwrap_or_else(|p| p.into_inner())
}

/// The address ranges, `(base, size)`, the root complex forwards to BARs:
/// a BAR decodes only inside one of them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PciWindows {
    /// Memory windows.
    pub mmio: Vec<(u64, u64)>,
    /// I/O port windows.
    pub io: Vec<(u64, u64)>,
}

impl PciWindows {
    /// Whether `region` lies wholly inside one window of its space.
    pub fn contain(&self, region: &BarRegion) -> bool {
        let windows = if region.io { &self.io } else { &self.mmio };
        let Some(end) = region.addr.checked_add(region.size) else {
            return false;
        };
        windows.iter().any(|&(base, size)| {
            region.addr >= base && base.checked_add(size).is_some_and(|e| end <= e)
        })
    }
}

#[derive(Clone)]
struct DecodedBar {
    slot: u8,
    region: BarRegion,
    device: Device,
}

fn overlaps(a: &BarRegion, b: &BarRegion) -> bool {
    a.io == b.io && a.addr < b.addr.saturating_add(b.size) && b.addr < a.addr.saturating_add(a.size)
}

/// Bus 0 with its devices and their decoded BARs.
pub struct PciRoot {
    windows: PciWindows,
    devices: RwLock<BTreeMap<u8, Device>>,
    /// Decoding BARs keyed by (I/O space?, address).
    bars: RwLock<BTreeMap<(bool, u64), DecodedBar>>,
    /// Serializes refreshes, so devices hear of changes in order.
    refresh: Mutex<()>,
}

/// A configuration space address on this root.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ConfigAddress {
    bus: u8,
    slot: u8,
    function: u8,
    reg: usize,
}

impl PciRoot {
    /// An empty bus whose BARs decode inside `windows`.
    pub fn new(windows: PciWindows) -> Self {
        Self {
            windows,
            devices: RwLock::new(BTreeMap::new()),
            bars: RwLock::new(BTreeMap::new()),
            refresh: Mutex::new(()),
        }
    }

    /// Puts `device` in the first free slot; returns the slot.
    pub fn add_device(&self, device: Device) -> Result<u8, PciRootError> {
        let mut devices = self.devices.write().unwrap_or_else(|p| p.into_inner());
        let slot = (0..MAX_SLOTS)
            .find(|s| !devices.contains_key(s))
            .ok_or(PciRootError::BusFull)?;
        devices.insert(slot, device);
        drop(devices);
        self.refresh_bars();
        Ok(slot)
    }

    /// Puts `device` in `slot` (a hot-added device, in the slot the
    /// firmware tables describe).
    pub fn add_device_at(&self, slot: u8, device: Device) -> Result<(), PciRootError> {
        let mut devices = self.devices.write().unwrap_or_else(|p| p.into_inner());
        if slot >= MAX_SLOTS || devices.contains_key(&slot) {
            return Err(PciRootError::SlotInUse(slot));
        }
        devices.insert(slot, device);
        drop(devices);
        self.refresh_bars();
        Ok(())
    }

    /// Takes the device in `slot` off the bus: its BARs stop decoding (the
    /// device is told, and drops what it installed for them) and its
    /// configuration space reads as absent. Returns it, if there was one.
    pub fn remove_device(&self, slot: u8) -> Option<Device> {
        let removed = self
            .devices
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&slot);
        if removed.is_some() {
            self.refresh_bars();
        }
        removed
    }

    fn device(&self, addr: ConfigAddress) -> Option<Device> {
        if addr.bus != 0 || addr.function != 0 {
            return None;
        }
        let devices = self.devices.read().unwrap_or_else(|p| p.into_inner());
        devices.get(&addr.slot).cloned()
    }

    fn config_read(&self, addr: ConfigAddress) -> u32 {
        match self.device(addr) {
            Some(d) => lock(&d).read_config_register(addr.reg),
            None => u32::MAX,
        }
    }

    fn config_write(&self, addr: ConfigAddress, offset: u64, data: &[u8]) {
        if let Some(d) = self.device(addr) {
            lock(&d).write_config_register(addr.reg, offset, data);
            self.refresh_bars();
        }
    }

    /// The BARs that should decode now: what decodes already and still
    /// may, then newcomers in slot and BAR order, each inside a window
    /// and clear of every BAR kept before it.
    fn wanted_bars(&self) -> Vec<DecodedBar> {
        let devices: Vec<(u8, Device)> = self
            .devices
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(slot, d)| (*slot, d.clone()))
            .collect();
        let current: Vec<DecodedBar> = self
            .bars
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        let mut candidates = Vec::new();
        for (slot, device) in devices {
            let regions = lock(&device).bar_regions();
            for region in regions {
                if self.windows.contain(&region) {
                    candidates.push(DecodedBar {
                        slot,
                        region,
                        device: device.clone(),
                    });
                } else {
                    crate::guest_log!(
                        log::Level::Warn,
                        "pci: slot {slot} BAR {} at {:#x} (+{:#x}) is outside the PCI windows: not decoded",
                        region.index,
                        region.addr,
                        region.size
                    );
                }
            }
        }
        let is_current = |c: &DecodedBar| {
            current
                .iter()
                .any(|b| b.slot == c.slot && b.region == c.region)
        };
        let (mut kept, newcomers): (Vec<_>, Vec<_>) =
            candidates.into_iter().partition(|c| is_current(c));
        for bar in newcomers {
            match kept.iter().find(|k| overlaps(&k.region, &bar.region)) {
                Some(k) => crate::guest_log!(
                    log::Level::Warn,
                    "pci: slot {} BAR {} at {:#x} overlaps slot {} BAR {}: not decoded",
                    bar.slot,
                    bar.region.index,
                    bar.region.addr,
                    k.slot,
                    k.region.index
                ),
                None => kept.push(bar),
            }
        }
        kept
    }

    /// Recomputes which BARs decode, updates routing, and tells devices
    /// what stopped decoding (first) and what started (after).
    fn refresh_bars(&self) {
        let _serial = self.refresh.lock().unwrap_or_else(|p| p.into_inner());
        let wanted = self.wanted_bars();
        let same = |a: &DecodedBar, b: &DecodedBar| a.slot == b.slot && a.region == b.region;
        let (gone, added) = {
            let bars = self.bars.read().unwrap_or_else(|p| p.into_inner());
            let gone: Vec<DecodedBar> = bars
                .values()
                .filter(|b| !wanted.iter().any(|w| same(w, b)))
                .cloned()
                .collect();
            let added: Vec<DecodedBar> = wanted
                .iter()
                .filter(|w| !bars.values().any(|b| same(w, b)))
                .cloned()
                .collect();
            (gone, added)
        };
        if gone.is_empty() && added.is_empty() {
            return;
        }
        // Until the table changes, accesses to what is going still reach
        // its device, which handles them by trapping.
        for bar in &gone {
            lock(&bar.device).bar_unmapped(bar.region);
        }
        *self.bars.write().unwrap_or_else(|p| p.into_inner()) = wanted
            .into_iter()
            .map(|b| ((b.region.io, b.region.addr), b))
            .collect();
        for bar in &added {
            lock(&bar.device).bar_mapped(bar.region);
        }
    }

    fn find_bar(&self, io: bool, addr: u64, len: usize) -> Option<(DecodedBar, u64)> {
        let bars = self.bars.read().unwrap_or_else(|p| p.into_inner());
        let (_, bar) = bars.range((io, 0)..=(io, addr)).next_back()?;
        let offset = addr - bar.region.addr;
        (offset.checked_add(len as u64)? <= bar.region.size).then(|| (bar.clone(), offset))
    }

    /// The BARs that decode now, in address order (memory first).
    pub fn decoded_bars(&self) -> Vec<(u8, BarRegion)> {
        self.bars
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|b| (b.slot, b.region))
            .collect()
    }

    /// Read at `addr` in memory or (`io`) port space; false if no BAR
    /// decodes it.
    pub fn bar_read(&self, io: bool, addr: u64, data: &mut [u8]) -> bool {
        let Some((bar, offset)) = self.find_bar(io, addr, data.len()) else {
            return false;
        };
        lock(&bar.device).read_bar(bar.region.index, offset, data);
        true
    }

    /// Write at `addr` in memory or (`io`) port space; false if no BAR
    /// decodes it.
    pub fn bar_write(&self, io: bool, addr: u64, data: &[u8]) -> bool {
        let Some((bar, offset)) = self.find_bar(io, addr, data.len()) else {
            return false;
        };
        lock(&bar.device).write_bar(bar.region.index, offset, data);
        true
    }
}

/// Reads `data.len()` bytes at byte `offset` (0-3) of a config dword.
fn extract(dword: u32, offset: u64, data: &mut [u8]) {
    let bytes = dword.to_le_bytes();
    let start = offset as usize;
    match bytes.get(start..start + data.len()) {
        Some(src) => data.copy_from_slice(src),
        None => data.fill(0xff),
    }
}

/// Legacy configuration mechanism #1 at I/O ports 0xCF8-0xCFF.
pub struct PciConfigIo {
    root: Arc<PciRoot>,
    address: u32,
}

impl PciConfigIo {
    /// The 0xCF8/0xCFC ports of `root`.
    pub fn new(root: Arc<PciRoot>) -> Self {
        Self { root, address: 0 }
    }

    fn target(&self) -> Option<ConfigAddress> {
        (self.address & (1 << 31) != 0).then_some(ConfigAddress {
            bus: (self.address >> 16) as u8,
            slot: ((self.address >> 11) & 0x1f) as u8,
            function: ((self.address >> 8) & 0x7) as u8,
            reg: ((self.address >> 2) & 0x3f) as usize,
        })
    }
}

impl BusDevice for PciConfigIo {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        match offset {
            0 if data.len() == 4 => data.copy_from_slice(&self.address.to_le_bytes()),
            4..=7 => match self.target() {
                Some(t) => extract(self.root.config_read(t), offset - 4, data),
                None => data.fill(0xff),
            },
            _ => data.fill(0xff),
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        match offset {
            0 if data.len() == 4 => {
                let mut b = [0u8; 4];
                b.copy_from_slice(data);
                self.address = u32::from_le_bytes(b);
            }
            4..=7 => {
                if let Some(t) = self.target() {
                    if offset - 4 + data.len() as u64 <= 4 {
                        self.root.config_write(t, offset - 4, data);
                    }
                }
            }
            _ => {}
        }
    }
}

/// ECAM (memory-mapped configuration) for bus 0.
pub struct PciConfigMmio {
    root: Arc<PciRoot>,
}

impl PciConfigMmio {
    /// The ECAM window of `root`.
    pub fn new(root: Arc<PciRoot>) -> Self {
        Self { root }
    }

    fn target(offset: u64, len: usize) -> Option<(ConfigAddress, u64)> {
        let within = offset & 3;
        (within + len as u64 <= 4).then_some((
            ConfigAddress {
                bus: (offset >> 20) as u8,
                slot: ((offset >> 15) & 0x1f) as u8,
                function: ((offset >> 12) & 0x7) as u8,
                reg: ((offset & 0xfff) >> 2) as usize,
            },
            within,
        ))
    }
}

impl BusDevice for PciConfigMmio {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        match Self::target(offset, data.len()) {
            Some((t, within)) => extract(self.root.config_read(t), within, data),
            None => data.fill(0xff),
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if let Some((t, within)) = Self::target(offset, data.len()) {
            self.root.config_write(t, within, data);
        }
    }
}

/// A window (MMIO or I/O ports) in which BARs are placed; accesses go to
/// the decoding BAR.
pub struct PciMmioWindow {
    root: Arc<PciRoot>,
    base: u64,
    io: bool,
}

impl PciMmioWindow {
    /// The MMIO window starting at `base`.
    pub fn new(root: Arc<PciRoot>, base: u64) -> Self {
        Self {
            root,
            base,
            io: false,
        }
    }

    /// The I/O port window starting at port `base`.
    pub fn new_io(root: Arc<PciRoot>, base: u64) -> Self {
        Self {
            root,
            base,
            io: true,
        }
    }
}

impl BusDevice for PciMmioWindow {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if !self.root.bar_read(self.io, self.base + offset, data) {
            data.fill(0xff);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if !self.root.bar_write(self.io, self.base + offset, data) {
            log::debug!("pci: write to {:#x} decoded by no BAR", self.base + offset);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pci::config::{BarKind, PciConfiguration, PciIds};

    struct TestDevice {
        config: PciConfiguration,
        last_write: Option<(usize, u64, Vec<u8>)>,
        /// `(mapped?, region)` in the order the root complex reported them.
        events: Vec<(bool, BarRegion)>,
    }

    impl TestDevice {
        /// The regions the device believes decode, from its events.
        fn mapped(&self) -> Vec<BarRegion> {
            let mut live = Vec::new();
            for (mapped, region) in &self.events {
                if *mapped {
                    assert!(!live.contains(region), "mapped twice: {region:?}");
                    live.push(*region);
                } else {
                    let before = live.len();
                    live.retain(|r| r != region);
                    assert_eq!(live.len() + 1, before, "unmapped unmapped: {region:?}");
                }
            }
            live
        }
    }

    impl PciDevice for TestDevice {
        fn read_config_register(&mut self, reg: usize) -> u32 {
            self.config.read_reg(reg)
        }
        fn write_config_register(&mut self, reg: usize, offset: u64, data: &[u8]) {
            self.config.write_reg(reg, offset, data);
        }
        fn bar_regions(&self) -> Vec<BarRegion> {
            self.config.bar_regions()
        }
        fn bar_mapped(&mut self, region: BarRegion) {
            self.events.push((true, region));
        }
        fn bar_unmapped(&mut self, region: BarRegion) {
            self.events.push((false, region));
        }
        fn read_bar(&mut self, bar: usize, offset: u64, data: &mut [u8]) {
            data.fill(bar as u8 + offset as u8);
        }
        fn write_bar(&mut self, bar: usize, offset: u64, data: &[u8]) {
            self.last_write = Some((bar, offset, data.to_vec()));
        }
    }

    fn device() -> Arc<Mutex<TestDevice>> {
        let mut config = PciConfiguration::new(PciIds {
            vendor: 0x1234,
            device: 0x5678,
            class: (0xff, 0, 0),
            revision: 0,
            subsystem_vendor: 0,
            subsystem: 0,
        });
        config
            .add_bar(0, BarKind::Mem32, 0xc000_0000, 0x1000, false)
            .expect("bar");
        config.write_reg(1, 0, &[2]);
        Arc::new(Mutex::new(TestDevice {
            config,
            last_write: None,
            events: Vec::new(),
        }))
    }

    fn root() -> Arc<PciRoot> {
        Arc::new(PciRoot::new(PciWindows {
            mmio: vec![(0xc000_0000, 0x2000_0000)],
            io: vec![(0x1000, 0xf000)],
        }))
    }

    fn mem(addr: u64, size: u64) -> BarRegion {
        BarRegion {
            index: 0,
            addr,
            size,
            io: false,
        }
    }

    #[test]
    fn cf8_reads_ids_and_absent_slots_read_all_ones() {
        let root = root();
        assert_eq!(root.add_device(device()).expect("slot"), 0);
        let mut io = PciConfigIo::new(root);
        io.write(0, &0x8000_0000u32.to_le_bytes());
        let mut d = [0u8; 4];
        io.read(4, &mut d);
        assert_eq!(u32::from_le_bytes(d), 0x5678_1234);
        let mut w = [0u8; 2];
        io.read(6, &mut w);
        assert_eq!(u16::from_le_bytes(w), 0x5678);
        io.write(0, &(0x8000_0000u32 | (3 << 11)).to_le_bytes());
        io.read(4, &mut d);
        assert_eq!(d, [0xff; 4]);
        io.write(0, &0x0000_0000u32.to_le_bytes());
        io.read(4, &mut d);
        assert_eq!(d, [0xff; 4], "enable bit clear");
    }

    #[test]
    fn ecam_reads_and_writes_config() {
        let root = root();
        root.add_device(device()).expect("slot");
        let mut ecam = PciConfigMmio::new(root);
        let mut d = [0u8; 4];
        ecam.read(0, &mut d);
        assert_eq!(u32::from_le_bytes(d), 0x5678_1234);
        ecam.write(0x3c, &[9]);
        let mut b = [0u8; 1];
        ecam.read(0x3c, &mut b);
        assert_eq!(b, [9]);
        ecam.read(1 << 20, &mut d);
        assert_eq!(d, [0xff; 4], "bus 1 is empty");
        ecam.read(2, &mut d);
        assert_eq!(d, [0xff; 4], "straddling access");
    }

    #[test]
    fn bars_route_mmio_and_follow_relocation() {
        let root = root();
        let dev = device();
        root.add_device(dev.clone()).expect("slot");
        let mut window = PciMmioWindow::new(root.clone(), 0xc000_0000);
        let mut d = [0u8; 2];
        window.read(0x10, &mut d);
        assert_eq!(d, [0x10, 0x10]);
        window.write(0x20, &[1, 2, 3, 4]);
        assert_eq!(
            dev.lock().expect("lock").last_write,
            Some((0, 0x20, vec![1, 2, 3, 4]))
        );
        window.read(0x1000, &mut d);
        assert_eq!(d, [0xff, 0xff], "past the BAR");
        // Move the BAR through ECAM.
        let mut ecam = PciConfigMmio::new(root.clone());
        ecam.write(0x10, &0xc010_0000u32.to_le_bytes());
        assert_eq!(
            dev.lock().expect("lock").events,
            vec![
                (true, mem(0xc000_0000, 0x1000)),
                (false, mem(0xc000_0000, 0x1000)),
                (true, mem(0xc010_0000, 0x1000))
            ]
        );
        window.read(0x10, &mut d);
        assert_eq!(d, [0xff, 0xff], "old address no longer decodes");
        window.read(0x10_0010, &mut d);
        assert_eq!(d, [0x10, 0x10]);
        // Memory decoding off: nothing decodes.
        ecam.write(4, &[0]);
        window.read(0x10_0010, &mut d);
        assert_eq!(d, [0xff, 0xff]);
    }

    #[test]
    fn io_bars_route_port_accesses_only() {
        let root = root();
        let dev = device();
        dev.lock()
            .expect("lock")
            .config
            .add_bar(1, BarKind::Io, 0xc000_0000 & 0xffff, 0x20, false)
            .expect("io bar");
        root.add_device(dev.clone()).expect("slot");
        let mut ecam = PciConfigMmio::new(root.clone());
        ecam.write(4, &[3]); // I/O and memory decoding
        let mut ports = PciMmioWindow::new_io(root.clone(), 0x1000);
        let mut memory = PciMmioWindow::new(root.clone(), 0);
        let mut d = [0u8; 1];
        // The I/O BAR sits at port 0 + 0 (aligned 0x20): not in this window.
        ports.read(0x10, &mut d);
        assert_eq!(d, [0xff]);
        ecam.write(0x14, &0x1020u32.to_le_bytes());
        ports.read(0x24, &mut d);
        assert_eq!(d, [1 + 4], "BAR 1, offset 4");
        ports.write(0x21, &[9]);
        assert_eq!(dev.lock().expect("lock").last_write, Some((1, 1, vec![9])));
        memory.read(0x1024, &mut d);
        assert_eq!(d, [0xff], "port numbers are not memory addresses");
    }

    #[test]
    fn decoding_off_unmaps_and_a_bar_moved_meanwhile_maps_at_its_new_place() {
        let root = root();
        let dev = device();
        root.add_device(dev.clone()).expect("slot");
        let mut ecam = PciConfigMmio::new(root.clone());
        assert_eq!(
            dev.lock().expect("lock").mapped(),
            vec![mem(0xc000_0000, 0x1000)]
        );
        ecam.write(4, &[0]);
        assert!(dev.lock().expect("lock").mapped().is_empty(), "decode off");
        ecam.write(0x10, &0xc020_0000u32.to_le_bytes());
        assert!(
            dev.lock().expect("lock").mapped().is_empty(),
            "moved while off"
        );
        // Sizing while off, then the address back: still nothing decodes.
        ecam.write(0x10, &[0xff; 4]);
        ecam.write(0x10, &0xc030_0000u32.to_le_bytes());
        assert!(dev.lock().expect("lock").mapped().is_empty());
        ecam.write(4, &[2]);
        assert_eq!(
            dev.lock().expect("lock").mapped(),
            vec![mem(0xc030_0000, 0x1000)]
        );
        assert_eq!(root.decoded_bars(), vec![(0, mem(0xc030_0000, 0x1000))]);
        // Writes that change nothing tell the device nothing.
        let events = dev.lock().expect("lock").events.len();
        ecam.write(4, &[2]);
        ecam.write(0x3c, &[5]);
        assert_eq!(dev.lock().expect("lock").events.len(), events);
    }

    #[test]
    fn a_removed_device_stops_decoding_and_its_slot_can_be_used_again() {
        let root = root();
        let dev = device();
        root.add_device_at(3, dev.clone()).expect("slot 3");
        assert_eq!(
            root.add_device_at(3, device()),
            Err(PciRootError::SlotInUse(3))
        );
        assert_eq!(
            root.add_device_at(MAX_SLOTS, device()),
            Err(PciRootError::SlotInUse(MAX_SLOTS))
        );
        assert_eq!(root.decoded_bars(), vec![(3, mem(0xc000_0000, 0x1000))]);
        assert!(root.remove_device(3).is_some());
        assert!(root.remove_device(3).is_none());
        assert!(dev.lock().expect("lock").mapped().is_empty(), "told");
        assert!(root.decoded_bars().is_empty());
        let mut ecam = PciConfigMmio::new(root.clone());
        let mut d = [0u8; 4];
        ecam.read(3 << 15, &mut d);
        assert_eq!(d, [0xff; 4], "absent");
        let again = device();
        root.add_device_at(3, again.clone()).expect("slot 3 again");
        assert_eq!(
            again.lock().expect("lock").mapped(),
            vec![mem(0xc000_0000, 0x1000)]
        );
    }

    #[test]
    fn bars_outside_the_windows_do_not_decode() {
        let root = root();
        let dev = device();
        root.add_device(dev.clone()).expect("slot");
        let mut ecam = PciConfigMmio::new(root.clone());
        // Over guest RAM, below the window.
        ecam.write(0x10, &0x1000_0000u32.to_le_bytes());
        assert!(dev.lock().expect("lock").mapped().is_empty());
        assert!(root.decoded_bars().is_empty());
        let mut low = PciMmioWindow::new(root.clone(), 0);
        let mut d = [0u8; 1];
        low.read(0x1000_0000, &mut d);
        assert_eq!(d, [0xff]);
        ecam.write(0x10, &0xc000_0000u32.to_le_bytes());
        assert_eq!(
            dev.lock().expect("lock").mapped(),
            vec![mem(0xc000_0000, 0x1000)]
        );
    }

    #[test]
    fn a_bar_moved_over_another_waits_until_the_place_is_free() {
        let root = root();
        let a = device();
        let b = device();
        b.lock()
            .expect("lock")
            .config
            .write_reg(4, 0, &0xc001_0000u32.to_le_bytes());
        root.add_device(a.clone()).expect("slot");
        root.add_device(b.clone()).expect("slot");
        let mut ecam = PciConfigMmio::new(root.clone());
        // Slot 1's BAR onto slot 0's.
        ecam.write((1 << 15) | 0x10, &0xc000_0000u32.to_le_bytes());
        assert_eq!(
            a.lock().expect("lock").mapped(),
            vec![mem(0xc000_0000, 0x1000)]
        );
        assert!(
            b.lock().expect("lock").mapped().is_empty(),
            "not decoded while it overlaps"
        );
        let mut window = PciMmioWindow::new(root.clone(), 0xc000_0000);
        window.write(0x10, &[1]);
        assert_eq!(a.lock().expect("lock").last_write, Some((0, 0x10, vec![1])));
        assert_eq!(b.lock().expect("lock").last_write, None);
        // Slot 0 moves away: slot 1 decodes where it was put.
        ecam.write(0x10, &0xc100_0000u32.to_le_bytes());
        assert_eq!(
            b.lock().expect("lock").mapped(),
            vec![mem(0xc000_0000, 0x1000)]
        );
        assert_eq!(
            a.lock().expect("lock").mapped(),
            vec![mem(0xc100_0000, 0x1000)]
        );
    }
}
