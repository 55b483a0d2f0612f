//! Populating PCI bus 0: slots and BDFs, BAR space, MSI-X groups, and
//! virtio-pci and VFIO devices on it; at run time, placing a hot-added
//! device in its slot and giving back the BAR space of a removed one.

use std::sync::{Arc, Mutex};

use arch::plan::GuestMap;
use devices::pci::host_bridge::HostBridge;
use devices::pci::{BarKind, PciConfigIo, PciConfigMmio, PciMmioWindow, PciRoot, PciWindows};
use devices::virtio::pci::{IoEventRegistry, NotifyMode, VirtioPciDevice, BAR_SIZE};
use devices::virtio::VirtioDevice;
use devices::Bus;
use firmware_tables::acpi::PciHostBridge;
use kvm_ioctls::{IoEventAddress, NoDatamatch, VmFd};
use vm_allocator::{AddressAllocator, AllocPolicy, RangeInclusive as Range};
use vmm_sys_util::eventfd::EventFd;

use super::passthrough::OpenedVfio;
use super::{DeviceError, QueueEvent};
use crate::interrupts::InterruptManager;
use crate::platform::{Native, Platform};

/// PCI I/O port window (the DSDT's `PCI0._CRS` hands the same range out;
/// where the CPU has no port I/O, these PCI I/O addresses are memory-mapped
/// at the platform's `io_window_mmio`).
pub const PCI_IO_WINDOW: (u64, u64) = (0x1000, 0xf000);
/// Ports reserved for a device's I/O notify BAR (enough for 4 queues).
const IO_NOTIFY_PORTS: u64 = 16;

/// KVM memory slots from here on hold device memory (BARs); guest RAM uses
/// the ones below.
pub(super) const FIRST_DEVICE_SLOT: u32 = 16;

/// BDF of a device in `slot` of bus 0.
pub(super) fn bdf(slot: usize) -> u16 {
    (slot as u16) << 3
}

/// Registers queue notification addresses as KVM ioeventfds.
struct KvmIoEvents(Arc<VmFd>);

impl IoEventRegistry for KvmIoEvents {
    fn register(&self, addr: u64, fd: &EventFd) -> std::io::Result<()> {
        self.0
            .register_ioevent(fd, &IoEventAddress::Mmio(addr), NoDatamatch)
            .map_err(|e| std::io::Error::from_raw_os_error(e.errno()))
    }

    fn unregister(&self, addr: u64, fd: &EventFd) -> std::io::Result<()> {
        self.0
            .unregister_ioevent(fd, &IoEventAddress::Mmio(addr), NoDatamatch)
            .map_err(|e| std::io::Error::from_raw_os_error(e.errno()))
    }
}

/// BAR space a device was given, to give back when it leaves.
#[derive(Clone, Debug, Default)]
pub(super) struct BarSpace {
    /// In the 64-bit window.
    mmio64: Vec<Range>,
    /// In the 32-bit window.
    mmio32: Vec<Range>,
    /// In the I/O port window.
    ports: Vec<Range>,
}

/// Where a device goes on bus 0.
#[derive(Clone, Copy)]
enum Placement {
    /// The next free slot, which must be this BDF (boot devices, whose
    /// BDFs the firmware tables already promise).
    Next(u16),
    /// This slot (a hot-added device).
    Slot(u8),
}

/// PCI bus 0 being populated: slots, BAR space and MSI-X.
pub(super) struct PciBuilder {
    pub(super) root: Arc<PciRoot>,
    bars: AddressAllocator,
    bars32: AddressAllocator,
    ports: AddressAllocator,
    interrupts: Arc<InterruptManager>,
    ioevents: Arc<KvmIoEvents>,
    pub(super) queue_events: Vec<QueueEvent>,
}

impl PciBuilder {
    /// Bus 0 with its host bridge, reachable through 0xCF8, ECAM and the
    /// BAR windows of `map`, with empty BAR space to allocate from.
    pub(super) fn new(
        vm: &Arc<VmFd>,
        map: &GuestMap,
        pio_bus: &mut Bus,
        mmio_bus: &mut Bus,
    ) -> Result<Self, DeviceError> {
        let root = Arc::new(PciRoot::new(PciWindows {
            mmio: vec![map.mmio32, map.mmio64],
            io: vec![PCI_IO_WINDOW],
        }));
        root.add_device(Arc::new(Mutex::new(HostBridge::new())))?;
        if let Some(port) = Native::PCI.config_ports {
            let config_io = Arc::new(Mutex::new(PciConfigIo::new(root.clone())));
            pio_bus.insert(port.into(), 8, config_io)?;
        }
        let ecam = Arc::new(Mutex::new(PciConfigMmio::new(root.clone())));
        mmio_bus.insert(map.ecam.0, map.ecam.1, ecam)?;
        for (base, size) in [map.mmio32, map.mmio64] {
            let window = Arc::new(Mutex::new(PciMmioWindow::new(root.clone(), base)));
            mmio_bus.insert(base, size, window)?;
        }
        let io_window = Arc::new(Mutex::new(PciMmioWindow::new_io(
            root.clone(),
            PCI_IO_WINDOW.0,
        )));
        match Native::PCI.io_window_mmio {
            Some(base) => mmio_bus.insert(base, PCI_IO_WINDOW.1, io_window)?,
            None => pio_bus.insert(PCI_IO_WINDOW.0, PCI_IO_WINDOW.1, io_window)?,
        }
        let allocator = |(base, size): (u64, u64)| {
            AddressAllocator::new(base, size).map_err(DeviceError::BarSpace)
        };
        Ok(Self {
            root,
            bars: allocator(map.mmio64)?,
            bars32: allocator(map.mmio32)?,
            ports: allocator(PCI_IO_WINDOW)?,
            interrupts: Arc::new(InterruptManager::new(vm.clone())),
            ioevents: Arc::new(KvmIoEvents(vm.clone())),
            queue_events: Vec::new(),
        })
    }

    /// How ACPI describes this bus.
    pub(super) fn acpi_description(&self, map: &GuestMap) -> PciHostBridge {
        PciHostBridge {
            ecam_base: map.ecam.0,
            bus_start: 0,
            bus_end: 0,
            mmio32: map.mmio32,
            mmio64: map.mmio64,
            io: (
                PCI_IO_WINDOW.0 as u16,
                (PCI_IO_WINDOW.0 + PCI_IO_WINDOW.1 - 1) as u16,
            ),
        }
    }

    /// Adds assigned device `dev` at `want`.
    pub(super) fn add_vfio(
        &mut self,
        opened: &OpenedVfio,
        slots: &Arc<crate::vfio::KvmSlots>,
        want: u16,
    ) -> Result<(), DeviceError> {
        let mut space = BarSpace::default();
        self.place_vfio(opened, slots, Placement::Next(want), &mut space)
    }

    /// Adds assigned device `dev` in hot-pluggable `slot`; returns the BAR
    /// space it got.
    pub(super) fn add_vfio_at(
        &mut self,
        opened: &OpenedVfio,
        slots: &Arc<crate::vfio::KvmSlots>,
        slot: u8,
    ) -> Result<BarSpace, DeviceError> {
        let mut space = BarSpace::default();
        match self.place_vfio(opened, slots, Placement::Slot(slot), &mut space) {
            Ok(()) => Ok(space),
            Err(e) => {
                self.free(&space);
                Err(e)
            }
        }
    }

    fn place_vfio(
        &mut self,
        opened: &OpenedVfio,
        slots: &Arc<crate::vfio::KvmSlots>,
        placement: Placement,
        space: &mut BarSpace,
    ) -> Result<(), DeviceError> {
        let want = match placement {
            Placement::Next(bdf) => bdf,
            Placement::Slot(slot) => bdf(slot.into()),
        };
        use vfio_bindings::bindings::vfio::{VFIO_PCI_MSIX_IRQ_INDEX, VFIO_PCI_MSI_IRQ_INDEX};
        let count = |index| opened.device.get_irq_info(index).map_or(0, |i| i.count);
        let vectors = count(VFIO_PCI_MSIX_IRQ_INDEX)
            .max(count(VFIO_PCI_MSI_IRQ_INDEX))
            .clamp(1, 2048) as u16;
        let group = self.interrupts.msix_group(vectors, want)?;
        let eventfds = group.eventfds().map_err(DeviceError::EventFd)?;
        let (bars64, bars32, ports) = (&mut self.bars, &mut self.bars32, &mut self.ports);
        let mut alloc = |size: u64, kind: BarKind| {
            let (allocator, given) = match kind {
                BarKind::Mem64 => (&mut *bars64, &mut space.mmio64),
                BarKind::Mem32 => (&mut *bars32, &mut space.mmio32),
                BarKind::Io => (&mut *ports, &mut space.ports),
            };
            let range = allocator
                .allocate(size, size, AllocPolicy::FirstMatch)
                .ok()?;
            given.push(range);
            Some(range.start())
        };
        let dev = devices::vfio::VfioPciDevice::new(
            &opened.bdf,
            opened.device.clone(),
            &mut alloc,
            slots.clone(),
            group,
            eventfds,
        )?;
        let dev = Arc::new(Mutex::new(dev));
        match placement {
            Placement::Next(_) => {
                let got = bdf(self.root.add_device(dev)?.into());
                if got != want {
                    return Err(DeviceError::SlotMismatch { want, got });
                }
            }
            Placement::Slot(slot) => self.root.add_device_at(slot, dev)?,
        }
        Ok(())
    }

    /// Adds `device` on virtio-pci at `want` (the BDF the firmware tables
    /// already promised).
    pub(super) fn add_virtio(
        &mut self,
        device: Arc<Mutex<dyn VirtioDevice>>,
        in_vcpu: bool,
        want: u16,
    ) -> Result<(), DeviceError> {
        self.place_virtio(device, in_vcpu, Placement::Next(want))
            .map(|_| ())
    }

    /// Adds `device` on virtio-pci in hot-pluggable `slot`; returns the BAR
    /// space it got. Its queue notifications land in `queue_events`.
    pub(super) fn add_virtio_at(
        &mut self,
        device: Arc<Mutex<dyn VirtioDevice>>,
        slot: u8,
    ) -> Result<BarSpace, DeviceError> {
        self.place_virtio(device, false, Placement::Slot(slot))
    }

    /// Gives back the BAR space of a device that left the bus.
    pub(super) fn free(&mut self, space: &BarSpace) {
        for range in &space.mmio64 {
            if let Err(e) = self.bars.free(range) {
                log::warn!("cannot give back BAR space {range:?}: {e}");
            }
        }
        for range in &space.mmio32 {
            if let Err(e) = self.bars32.free(range) {
                log::warn!("cannot give back BAR space {range:?}: {e}");
            }
        }
        for range in &space.ports {
            if let Err(e) = self.ports.free(range) {
                log::warn!("cannot give back I/O ports {range:?}: {e}");
            }
        }
    }

    fn place_virtio(
        &mut self,
        device: Arc<Mutex<dyn VirtioDevice>>,
        in_vcpu: bool,
        placement: Placement,
    ) -> Result<BarSpace, DeviceError> {
        let want = match placement {
            Placement::Next(bdf) => bdf,
            Placement::Slot(slot) => bdf(slot.into()),
        };
        let bar = self
            .bars
            .allocate(BAR_SIZE, BAR_SIZE, AllocPolicy::FirstMatch)
            .map_err(DeviceError::BarSpace)?;
        let mut space = BarSpace {
            mmio64: vec![bar],
            ..BarSpace::default()
        };
        let result = self.build_virtio(device, in_vcpu, placement, want, bar.start(), &mut space);
        if result.is_err() {
            self.free(&space);
        }
        result.map(|()| space)
    }

    fn build_virtio(
        &mut self,
        device: Arc<Mutex<dyn VirtioDevice>>,
        in_vcpu: bool,
        placement: Placement,
        want: u16,
        bar: u64,
        space: &mut BarSpace,
    ) -> Result<(), DeviceError> {
        let queues = device
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .queue_max_sizes()
            .len();
        let msix = self.interrupts.msix_group(queues as u16 + 1, want)?;
        let notify = if in_vcpu {
            // Notify through an I/O BAR: cheaper exits than MMIO.
            let port = self
                .ports
                .allocate(IO_NOTIFY_PORTS, IO_NOTIFY_PORTS, AllocPolicy::FirstMatch)
                .map_err(DeviceError::BarSpace)?;
            space.ports.push(port);
            NotifyMode::InVcpuPort(port.start() as u16)
        } else {
            NotifyMode::Ioeventfd(self.ioevents.clone())
        };
        let transport = VirtioPciDevice::new(device.clone(), bar, msix, notify)?;
        let mut events = Vec::new();
        for (queue, fd) in transport.queue_eventfds().map_err(DeviceError::EventFd)? {
            events.push(QueueEvent {
                fd,
                device: device.clone(),
                queue,
            });
        }
        let transport = Arc::new(Mutex::new(transport));
        match placement {
            Placement::Next(_) => {
                let got = bdf(self.root.add_device(transport)?.into());
                if got != want {
                    return Err(DeviceError::SlotMismatch { want, got });
                }
            }
            Placement::Slot(slot) => self.root.add_device_at(slot, transport)?,
        }
        self.queue_events.extend(events);
        Ok(())
    }
}
