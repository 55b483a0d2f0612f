//! Creates the platform devices, puts them on the buses and wires their
//! interrupts and notifications to KVM: the legacy devices on port I/O
//! (`legacy`), and PCI (`pci`: host bridge, virtio-iommu, virtio-blk disks,
//! assigned devices from `passthrough`) with ECAM and BAR windows, and the
//! hot-pluggable slots with their registers (`hotplug`). All addresses come
//! from the planned guest map.

use std::collections::BTreeMap;
use std::io::Stdout;
use std::sync::{Arc, Mutex};

use arch::plan::GuestMap;
use arch::GuestMemory;
use devices::legacy::SerialConsole;
use devices::pci::hotplug::{HotplugController, REGS_LEN, REG_CHECK, REG_EJECT, REG_EJECTED};
use devices::virtio::block::{Block, BlockConfig, BlockCounters, DiskError};
use devices::virtio::iommu::EndpointIommu;
use devices::virtio::pci::VirtioPciError;
use devices::virtio::VirtioDevice;
use devices::{Bus, BusError, GuestEvents};
use firmware_tables::acpi::{IommuTopology, PciHostBridge, PciHotplug};
use kvm_ioctls::VmFd;
use vm_memory::IommuMemory;
use vmm_sys_util::eventfd::EventFd;

use crate::config::{DiskConfig, VmConfig};
use crate::interrupts::InterruptError;
use crate::platform::{Native, Platform};

mod hotplug;
mod iommu;
mod legacy;
mod passthrough;
mod pci;
mod poller;

use iommu::{AddedIommu, IommuSetup};

pub use hotplug::{HotAdded, HotKind, HotRemoved, HotplugBus, HotplugError};

pub use legacy::{
    acpi_power_management, acpi_serial_ports, add_console, add_console_at, add_power_devices,
};
use passthrough::map_ram_for_unmanaged;
pub use passthrough::{open_vfio_devices, KvmVfio, OpenedVfio};
use pci::{bdf, PciBuilder, FIRST_DEVICE_SLOT};

/// Errors creating devices.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// An eventfd could not be created.
    #[error("cannot create an eventfd")]
    EventFd(#[source] std::io::Error),
    /// KVM refused the interrupt wiring.
    #[error("cannot register the irqfd for GSI {0}")]
    Irqfd(u32, #[source] kvm_ioctls::Error),
    /// Two devices claim the same range.
    #[error("device layout conflict")]
    Bus(#[from] BusError),
    /// MSI-X set-up.
    #[error(transparent)]
    Interrupts(#[from] InterruptError),
    /// A disk image cannot be used.
    #[error(transparent)]
    Disk(#[from] DiskError),
    /// virtio-pci set-up.
    #[error(transparent)]
    VirtioPci(#[from] VirtioPciError),
    /// No room for a BAR.
    #[error("the PCI MMIO window is full")]
    BarSpace(#[source] vm_allocator::Error),
    /// PCI bus full.
    #[error("cannot place a PCI device")]
    PciSlot(#[from] devices::pci::root::PciRootError),
    /// The virtio-iommu could not be built.
    #[error("cannot create the virtio-iommu")]
    Iommu(#[source] devices::virtio::iommu::Error),
    /// An assigned device cannot be used.
    #[error(transparent)]
    Vfio(#[from] crate::vfio::VfioError),
    /// The passthrough device model failed.
    #[error(transparent)]
    VfioPci(#[from] devices::vfio::VfioPciError),
    /// The PCI hotplug registers could not be set up.
    #[error(transparent)]
    Hotplug(#[from] devices::pci::hotplug::HotplugError),
    /// KVM's VFIO pseudo-device could not be created.
    #[error("cannot create the KVM VFIO device")]
    KvmVfio(#[source] kvm_ioctls::Error),
    /// A device did not land in the slot the firmware tables describe.
    #[error("PCI device landed at {got:#06x}, expected {want:#06x}")]
    SlotMismatch {
        /// BDF planned.
        want: u16,
        /// BDF given.
        got: u16,
    },
}

/// The serial console type the VMM uses: guest output to stdout.
pub type Console = SerialConsole<Stdout>;

/// A queue notification the event loop serves.
pub struct QueueEvent {
    /// Signalled by KVM when the guest notifies the queue.
    pub fd: EventFd,
    /// The device to run.
    pub device: Arc<Mutex<dyn VirtioDevice>>,
    /// The queue index.
    pub queue: usize,
}

/// The virtio-iommu's faults, which the event loop delivers through a
/// handle of their own: never behind the device's lock, which the request
/// path holds across host DMA calls.
pub struct FaultEvent {
    /// Readable when faults wait.
    pub fd: EventFd,
    /// Delivers them.
    pub delivery: devices::virtio::iommu::FaultDelivery,
}

/// The buses and what the rest of the VMM needs to reach.
pub struct Devices {
    /// Port I/O bus.
    pub pio: Bus,
    /// MMIO bus.
    pub mmio: Bus,
    /// COM1.
    pub console: Arc<Mutex<Console>>,
    /// Notifications served by the event loop.
    pub queue_events: Vec<QueueEvent>,
    /// The virtio-iommu's fault delivery, served by the event loop.
    pub fault_events: Vec<FaultEvent>,
    /// The PCI host bridge, for ACPI.
    pub pci: PciHostBridge,
    /// The virtio-iommu topology, for ACPI.
    pub iommu: Option<IommuTopology>,
    /// What went where on bus 0 (the API reports it).
    pub placed: Vec<PlacedDevice>,
    /// The hot-pluggable slots, for ACPI (none where the platform has no
    /// hotplug).
    pub hotplug_slots: Option<PciHotplug>,
    /// Adding and removing devices at run time.
    pub hotplug: Option<HotplugBus>,
}

/// A device minivmm put on PCI bus 0.
#[derive(Clone, Debug)]
pub struct PlacedDevice {
    /// What it is.
    pub kind: PlacedKind,
    /// Its BDF on bus 0 of segment 0.
    pub bdf: u16,
}

/// The kinds of [`PlacedDevice`].
#[derive(Clone, Debug)]
pub enum PlacedKind {
    /// The virtio-iommu.
    Iommu,
    /// The configuration's disk number `index`.
    Disk {
        /// Index in `VmConfig::disks`.
        index: usize,
        /// What it has done.
        counters: Arc<BlockCounters>,
    },
    /// The configuration's assigned device number `index`.
    Vfio {
        /// Index in `VmConfig::vfio`.
        index: usize,
        /// Host BDF, normalized.
        host: String,
    },
    /// A device added through the API while the VM runs.
    Hot {
        /// Its API id.
        id: String,
        /// What it is.
        kind: HotKind,
    },
}

/// Hot-pluggable slots in each pool (behind the virtio-iommu, when the VM
/// has one, and outside it).
const HOTPLUG_SLOTS_PER_POOL: usize = 4;

// The DSDT's hotplug methods read and write the registers in this order.
const _: () = assert!(REG_CHECK == 0 && REG_EJECT == 4 && REG_EJECTED == 8 && REGS_LEN == 12);

/// Where each PCI device goes: slot 0 the host bridge, then the
/// virtio-iommu (when the VM has one), the disks in command-line order,
/// then the assigned devices, then the hot-pluggable slots (first those
/// behind the virtio-iommu, then the others). Endpoint IDs are these BDFs,
/// so the VIOT and the virtio-iommu agree before any device exists.
struct SlotPlan {
    iommu: bool,
    disks: usize,
    vfio: usize,
    hotplug: bool,
}

impl SlotPlan {
    fn iommu(&self) -> u16 {
        bdf(1)
    }
    fn disk(&self, i: usize) -> u16 {
        bdf(usize::from(self.iommu) + 1 + i)
    }
    fn vfio(&self, j: usize) -> u16 {
        bdf(usize::from(self.iommu) + 1 + self.disks + j)
    }
    /// The hot-pluggable slots: (behind the virtio-iommu, outside it).
    fn hotplug_slots(&self) -> (Vec<u8>, Vec<u8>) {
        if !self.hotplug {
            return (Vec::new(), Vec::new());
        }
        let first = usize::from(self.iommu) + 1 + self.disks + self.vfio;
        let mut free = (first..usize::from(devices::pci::root::MAX_SLOTS)).map(|s| s as u8);
        let behind = if self.iommu {
            free.by_ref().take(HOTPLUG_SLOTS_PER_POOL).collect()
        } else {
            Vec::new()
        };
        (behind, free.take(HOTPLUG_SLOTS_PER_POOL).collect())
    }
}

/// A virtio device model with the counters of the disk it serves.
type BlockWithCounters = (Arc<Mutex<dyn VirtioDevice>>, Arc<BlockCounters>);

/// A virtio-blk device for `disk`, its DMA translated by `translator` when
/// it sits behind the virtio-iommu.
fn build_block(
    memory: &GuestMemory,
    disk: &DiskConfig,
    translator: Option<EndpointIommu>,
) -> Result<BlockWithCounters, DeviceError> {
    let block_config = BlockConfig {
        path: disk.path.clone(),
        read_only: disk.read_only,
        iommu: disk.iommu,
        id: None,
    };
    Ok(match translator {
        Some(t) => {
            let translated = IommuMemory::new(memory.clone(), t, true, ());
            let block = Block::new(translated, block_config)?;
            let counters = block.counters();
            (Arc::new(Mutex::new(block)), counters)
        }
        None => {
            let block = Block::new(memory.clone(), block_config)?;
            let counters = block.counters();
            (Arc::new(Mutex::new(block)), counters)
        }
    })
}

/// The hotplug registers on the MMIO bus and the GED's interrupt as an
/// irqfd; returns the controller of `slots`.
fn add_hotplug_registers(
    vm: &VmFd,
    mmio_bus: &mut Bus,
    platform: &crate::platform::HotplugPlatform,
    slots: &[u8],
) -> Result<HotplugController, DeviceError> {
    let irq = EventFd::new(vmm_sys_util::eventfd::EFD_NONBLOCK).map_err(DeviceError::EventFd)?;
    vm.register_irqfd(&irq, platform.gsi)
        .map_err(|e| DeviceError::Irqfd(platform.gsi, e))?;
    let (controller, registers) = HotplugController::new(slots, irq)?;
    mmio_bus.insert(
        platform.registers.0,
        platform.registers.1,
        Arc::new(Mutex::new(registers)),
    )?;
    Ok(controller)
}

/// Creates every device of the VM, on the address map `map`; `opened` are
/// the assigned devices from [`open_vfio_devices`].
pub fn create(
    vm: &Arc<VmFd>,
    memory: &GuestMemory,
    config: &VmConfig,
    events: &Arc<GuestEvents>,
    map: &GuestMap,
    opened: Vec<OpenedVfio>,
    kvm_vfio: KvmVfio,
) -> Result<Devices, DeviceError> {
    let mut pio_bus = Bus::new();
    let mut mmio_bus = Bus::new();
    let console = Native::add_platform_devices(vm, map, &mut pio_bus, &mut mmio_bus, events)?;
    let mut pci = PciBuilder::new(vm, map, &mut pio_bus, &mut mmio_bus)?;
    let slots = SlotPlan {
        iommu: config.needs_iommu(),
        disks: config.disks.len(),
        vfio: opened.len(),
        hotplug: Native::HOTPLUG.is_ok(),
    };
    let (hot_iommu_slots, hot_plain_slots) = slots.hotplug_slots();
    map_ram_for_unmanaged(&opened, memory)?;

    let disk_endpoints = (0..config.disks.len()).filter(|i| config.disks[*i].iommu);
    let vfio_endpoints = (0..opened.len()).filter(|j| opened[*j].iommu);
    // The hot-pluggable slots behind the virtio-iommu are its endpoints
    // from boot: a device added there is translated from its first DMA.
    let endpoints: Vec<u16> = disk_endpoints
        .clone()
        .map(|i| slots.disk(i))
        .chain(vfio_endpoints.clone().map(|j| slots.vfio(j)))
        .chain(hot_iommu_slots.iter().map(|s| bdf((*s).into())))
        .collect();
    let mut translators = BTreeMap::new();
    let mut fault_events = Vec::new();
    let mut iommu_device = None;
    let mut iommu_containers = None;
    if slots.iommu {
        let containers = vfio_endpoints
            .map(|j| (u32::from(slots.vfio(j)), opened[j].container.clone()))
            .collect();
        let disk_ids: Vec<u32> = disk_endpoints.map(|i| u32::from(slots.disk(i))).collect();
        let AddedIommu {
            translators: t,
            faults,
            device,
            containers,
        } = iommu::add(
            &mut pci,
            IommuSetup {
                memory,
                map,
                endpoints: &endpoints,
                translated: &disk_ids,
                containers,
                hot_assignable: !hot_iommu_slots.is_empty(),
                poll: config.iommu_poll,
                events: events.clone(),
                bdf: slots.iommu(),
            },
        )?;
        translators = t;
        fault_events.push(faults);
        iommu_device = Some(device);
        iommu_containers = containers;
    }

    let mut disk_counters = Vec::new();
    for (i, disk) in config.disks.iter().enumerate() {
        let translator = translators.remove(&u32::from(slots.disk(i)));
        let (block, counters) = build_block(memory, disk, translator)?;
        disk_counters.push(counters);
        pci.add_virtio(block, false, slots.disk(i))?;
    }

    let kvm_slots = Arc::new(crate::vfio::KvmSlots::new(vm.clone(), FIRST_DEVICE_SLOT));
    for (j, dev) in opened.iter().enumerate() {
        pci.add_vfio(dev, &kvm_slots, slots.vfio(j))?;
    }

    let mut placed = Vec::new();
    if slots.iommu {
        placed.push(PlacedDevice {
            kind: PlacedKind::Iommu,
            bdf: slots.iommu(),
        });
    }
    placed.extend(
        disk_counters
            .into_iter()
            .enumerate()
            .map(|(index, counters)| PlacedDevice {
                kind: PlacedKind::Disk { index, counters },
                bdf: slots.disk(index),
            }),
    );
    placed.extend(opened.iter().enumerate().map(|(index, o)| PlacedDevice {
        kind: PlacedKind::Vfio {
            index,
            host: o.bdf.clone(),
        },
        bdf: slots.vfio(index),
    }));

    let pci_description = pci.acpi_description(map);
    let queue_events = std::mem::take(&mut pci.queue_events);
    let (hotplug_slots, hotplug) = match &Native::HOTPLUG {
        Ok(platform) => {
            let all: Vec<u8> = hot_iommu_slots
                .iter()
                .chain(&hot_plain_slots)
                .copied()
                .collect();
            let controller = add_hotplug_registers(vm, &mut mmio_bus, platform, &all)?;
            let tables = PciHotplug {
                registers: platform.registers,
                gsi: platform.gsi,
                slots: all,
            };
            let bus = HotplugBus::new(hotplug::HotplugParts {
                vm: vm.clone(),
                pci,
                memory: memory.clone(),
                controller,
                iommu: iommu_device,
                containers: iommu_containers,
                kvm_vfio,
                kvm_slots,
                iommu_slots: hot_iommu_slots,
                plain_slots: hot_plain_slots,
                map: map.clone(),
            });
            (Some(tables), Some(bus))
        }
        Err(_) => (None, None),
    };

    Ok(Devices {
        placed,
        pio: pio_bus,
        mmio: mmio_bus,
        console,
        pci: pci_description,
        queue_events,
        fault_events,
        iommu: slots.iommu.then(|| IommuTopology {
            iommu_bdf: slots.iommu(),
            endpoints,
        }),
        hotplug_slots,
        hotplug,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hot_pluggable_slots_follow_the_boot_devices_iommu_pool_first() {
        let plan = SlotPlan {
            iommu: true,
            disks: 1,
            vfio: 1,
            hotplug: true,
        };
        assert_eq!(
            (plan.iommu(), plan.disk(0), plan.vfio(0)),
            (bdf(1), bdf(2), bdf(3))
        );
        assert_eq!(plan.hotplug_slots(), (vec![4, 5, 6, 7], vec![8, 9, 10, 11]));
        let plain = SlotPlan {
            iommu: false,
            disks: 0,
            vfio: 0,
            hotplug: true,
        };
        assert_eq!(plain.hotplug_slots(), (vec![], vec![1, 2, 3, 4]));
        // A full bus leaves what is left; a platform without hotplug none.
        let full = SlotPlan {
            iommu: true,
            disks: 27,
            vfio: 0,
            hotplug: true,
        };
        assert_eq!(full.hotplug_slots(), (vec![29, 30, 31], vec![]));
        let none = SlotPlan {
            hotplug: false,
            ..full
        };
        assert_eq!(none.hotplug_slots(), (vec![], vec![]));
    }
}
