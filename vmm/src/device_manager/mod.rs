//! Creates the platform devices, puts them on the buses and wires their
//! interrupts and notifications to KVM: the legacy devices on port I/O
//! (`legacy`), and PCI (`pci`: host bridge, virtio-iommu, virtio-blk disks,
//! assigned devices from `passthrough`) with ECAM and BAR windows. All
//! addresses come from the planned guest map.

use std::collections::BTreeMap;
use std::io::Stdout;
use std::sync::{Arc, Mutex};

use arch::plan::GuestMap;
use arch::GuestMemory;
use devices::legacy::SerialConsole;
use devices::virtio::block::{Block, BlockConfig, BlockCounters, DiskError};
use devices::virtio::pci::VirtioPciError;
use devices::virtio::VirtioDevice;
use devices::{Bus, BusError, GuestEvents};
use firmware_tables::acpi::{IommuTopology, PciHostBridge};
use kvm_ioctls::VmFd;
use vm_memory::IommuMemory;
use vmm_sys_util::eventfd::EventFd;

use crate::config::VmConfig;
use crate::interrupts::InterruptError;
use crate::platform::{Native, Platform};

mod iommu;
mod legacy;
mod passthrough;
mod pci;
mod poller;

use iommu::IommuSetup;

pub use legacy::{
    acpi_power_management, acpi_serial_ports, add_console, add_console_at, add_power_devices,
};
use passthrough::map_ram_for_unmanaged;
pub use passthrough::{open_vfio_devices, OpenedVfio};
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
}

/// Where each PCI device goes: slot 0 the host bridge, then the
/// virtio-iommu (when some device asks for it), the disks in command-line
/// order, then the assigned devices. Endpoint IDs are these BDFs, so the
/// VIOT and the virtio-iommu agree before any device exists.
struct SlotPlan {
    iommu: bool,
    disks: usize,
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
) -> Result<Devices, DeviceError> {
    let mut pio_bus = Bus::new();
    let mut mmio_bus = Bus::new();
    let console = Native::add_platform_devices(vm, map, &mut pio_bus, &mut mmio_bus, events)?;
    let mut pci = PciBuilder::new(vm, map, &mut pio_bus, &mut mmio_bus)?;
    let slots = SlotPlan {
        iommu: config.needs_iommu(),
        disks: config.disks.len(),
    };
    map_ram_for_unmanaged(&opened, memory)?;

    let disk_endpoints = (0..config.disks.len()).filter(|i| config.disks[*i].iommu);
    let vfio_endpoints = (0..opened.len()).filter(|j| opened[*j].iommu);
    let endpoints: Vec<u16> = disk_endpoints
        .clone()
        .map(|i| slots.disk(i))
        .chain(vfio_endpoints.clone().map(|j| slots.vfio(j)))
        .collect();
    let mut translators = BTreeMap::new();
    let mut fault_events = Vec::new();
    if slots.iommu {
        let containers = vfio_endpoints
            .map(|j| (u32::from(slots.vfio(j)), opened[j].container.clone()))
            .collect();
        let disk_ids: Vec<u32> = disk_endpoints.map(|i| u32::from(slots.disk(i))).collect();
        let (t, faults) = iommu::add(
            &mut pci,
            IommuSetup {
                memory,
                map,
                endpoints: &endpoints,
                translated: &disk_ids,
                containers,
                poll: config.iommu_poll,
                events: events.clone(),
                bdf: slots.iommu(),
            },
        )?;
        translators = t;
        fault_events.push(faults);
    }

    let mut disk_counters = Vec::new();
    for (i, disk) in config.disks.iter().enumerate() {
        let block_config = BlockConfig {
            path: disk.path.clone(),
            read_only: disk.read_only,
            iommu: disk.iommu,
            id: None,
        };
        let (block, counters): (Arc<Mutex<dyn VirtioDevice>>, _) =
            match translators.remove(&u32::from(slots.disk(i))) {
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
            };
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

    Ok(Devices {
        placed,
        pio: pio_bus,
        mmio: mmio_bus,
        console,
        pci: pci.acpi_description(map),
        queue_events: pci.queue_events,
        fault_events,
        iommu: slots.iommu.then(|| IommuTopology {
            iommu_bdf: slots.iommu(),
            endpoints,
        }),
    })
}
