//! Creates the platform devices, puts them on the buses and wires their
//! interrupts and notifications to KVM: the legacy devices on port I/O, and
//! PCI (host bridge, virtio-iommu, virtio-blk disks) with ECAM and BAR
//! windows on MMIO. All addresses come from `arch`'s layout.

use std::io::Stdout;
use std::sync::{Arc, Mutex};

use arch::x86_64::layout::pio;
use arch::x86_64::plan::{GuestMap, ResvKind};
use arch::x86_64::GuestMemory;
use devices::legacy::{AcpiPowerManagement, PvPanic, SerialConsole, I8042};
use devices::pci::host_bridge::HostBridge;
use devices::pci::{BarKind, PciConfigIo, PciConfigMmio, PciMmioWindow, PciRoot};
use devices::virtio::block::{Block, BlockConfig, DiskError};
use devices::virtio::iommu::{
    EndpointConfig, IommuConfig, PollSignal, ReservedKind, ReservedRegion, VirtioIommu, EVENT_QUEUE,
};
use devices::virtio::pci::{
    IoEventRegistry, NotifyMode, VirtioPciDevice, VirtioPciError, BAR_SIZE,
};
use devices::virtio::VirtioDevice;
use devices::{Bus, BusDevice, BusError, GuestEvents};
use firmware_tables::acpi::{IommuTopology, PciHostBridge, PowerManagement, SerialPort};
use kvm_ioctls::{IoEventAddress, NoDatamatch, VmFd};
use vm_allocator::{AddressAllocator, AllocPolicy};
use vm_memory::IommuMemory;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::config::VmConfig;
use crate::interrupts::{InterruptError, InterruptManager};

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

/// PCI I/O port window (the DSDT's `PCI0._CRS` hands the same range out).
const PCI_IO_WINDOW: (u64, u64) = (0x1000, 0xf000);
/// Ports reserved for a device's I/O notify BAR (enough for 4 queues).
const IO_NOTIFY_PORTS: u64 = 16;

/// KVM memory slots from here on hold device memory (BARs); guest RAM uses
/// the ones below.
const FIRST_DEVICE_SLOT: u32 = 16;

/// BDF of a device in `slot` of bus 0.
fn bdf(slot: usize) -> u16 {
    (slot as u16) << 3
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
    /// The PCI host bridge, for ACPI.
    pub pci: PciHostBridge,
    /// The virtio-iommu topology, for ACPI.
    pub iommu: Option<IommuTopology>,
}

/// ACPI's view of the power management block the devices implement.
pub fn acpi_power_management() -> PowerManagement {
    use devices::legacy::acpi_pm::{
        RESET, RESET_VALUE, S5_SLEEP_TYPE, SLEEP_CONTROL, SLEEP_STATUS,
    };
    let port = |offset: u64| pio::ACPI_PM + offset as u16;
    PowerManagement {
        sleep_control_port: port(SLEEP_CONTROL),
        sleep_status_port: port(SLEEP_STATUS),
        reset_port: port(RESET),
        reset_value: RESET_VALUE,
        s5_sleep_type: S5_SLEEP_TYPE,
    }
}

/// ACPI's view of the serial ports.
pub fn acpi_serial_ports() -> Vec<SerialPort> {
    vec![SerialPort {
        port: pio::COM1,
        irq: pio::COM1_IRQ,
    }]
}

/// Puts the legacy devices that report power events on `bus`.
pub fn add_power_devices(bus: &mut Bus, events: &Arc<GuestEvents>) -> Result<(), BusError> {
    let pm = Arc::new(Mutex::new(AcpiPowerManagement::new(events.clone())));
    bus.insert(pio::ACPI_PM.into(), pio::ACPI_PM_SIZE.into(), pm)?;
    let pvpanic = Arc::new(Mutex::new(PvPanic::new(events.clone())));
    bus.insert(pio::PVPANIC.into(), 1, pvpanic)?;
    let i8042: Arc<Mutex<dyn BusDevice>> = Arc::new(Mutex::new(I8042::new(events.clone())));
    let i8042_len = pio::I8042_COMMAND - pio::I8042_DATA + 1;
    bus.insert(pio::I8042_DATA.into(), i8042_len.into(), i8042)?;
    Ok(())
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

/// PCI bus 0 being populated: slots, BAR space and MSI-X.
struct PciBuilder {
    root: Arc<PciRoot>,
    bars: AddressAllocator,
    bars32: AddressAllocator,
    ports: AddressAllocator,
    interrupts: Arc<InterruptManager>,
    ioevents: Arc<KvmIoEvents>,
    queue_events: Vec<QueueEvent>,
}

impl PciBuilder {
    /// Adds assigned device `dev` at `want`.
    fn add_vfio(
        &mut self,
        opened: &OpenedVfio,
        slots: &Arc<crate::vfio::KvmSlots>,
        want: u16,
    ) -> Result<(), DeviceError> {
        use vfio_bindings::bindings::vfio::{VFIO_PCI_MSIX_IRQ_INDEX, VFIO_PCI_MSI_IRQ_INDEX};
        let count = |index| opened.device.get_irq_info(index).map_or(0, |i| i.count);
        let vectors = count(VFIO_PCI_MSIX_IRQ_INDEX)
            .max(count(VFIO_PCI_MSI_IRQ_INDEX))
            .clamp(1, 2048) as u16;
        let group = self.interrupts.msix_group(vectors)?;
        let eventfds = group.eventfds().map_err(DeviceError::EventFd)?;
        let (bars64, bars32, ports) = (&mut self.bars, &mut self.bars32, &mut self.ports);
        let mut alloc = |size: u64, kind: BarKind| {
            let allocator = match kind {
                BarKind::Mem64 => &mut *bars64,
                BarKind::Mem32 => &mut *bars32,
                BarKind::Io => &mut *ports,
            };
            allocator
                .allocate(size, size, AllocPolicy::FirstMatch)
                .ok()
                .map(|r| r.start())
        };
        let mut dev = devices::vfio::VfioPciDevice::new(
            &opened.bdf,
            opened.device.clone(),
            &mut alloc,
            slots.clone(),
            group,
            eventfds,
        )?;
        dev.map_bars()?;
        let got = bdf(self.root.add_device(Arc::new(Mutex::new(dev)))?.into());
        if got != want {
            return Err(DeviceError::SlotMismatch { want, got });
        }
        Ok(())
    }

    /// Adds `device` on virtio-pci at `want` (the BDF the firmware tables
    /// already promised).
    fn add_virtio(
        &mut self,
        device: Arc<Mutex<dyn VirtioDevice>>,
        in_vcpu: bool,
        want: u16,
    ) -> Result<(), DeviceError> {
        let bar = self
            .bars
            .allocate(BAR_SIZE, BAR_SIZE, AllocPolicy::FirstMatch)
            .map_err(DeviceError::BarSpace)?;
        let queues = device
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .queue_max_sizes()
            .len();
        let msix = self.interrupts.msix_group(queues as u16 + 1)?;
        let notify = if in_vcpu {
            // Notify through an I/O BAR: cheaper exits than MMIO.
            let port = self
                .ports
                .allocate(IO_NOTIFY_PORTS, IO_NOTIFY_PORTS, AllocPolicy::FirstMatch)
                .map_err(DeviceError::BarSpace)?;
            NotifyMode::InVcpuPort(port.start() as u16)
        } else {
            NotifyMode::Ioeventfd(self.ioevents.clone())
        };
        let transport = VirtioPciDevice::new(device.clone(), bar.start(), msix, notify)?;
        for (queue, fd) in transport.queue_eventfds().map_err(DeviceError::EventFd)? {
            self.queue_events.push(QueueEvent {
                fd,
                device: device.clone(),
                queue,
            });
        }
        let got = bdf(self
            .root
            .add_device(Arc::new(Mutex::new(transport)))?
            .into());
        if got != want {
            return Err(DeviceError::SlotMismatch { want, got });
        }
        Ok(())
    }
}

/// A host device opened through VFIO, before it is put on the bus.
pub struct OpenedVfio {
    /// Host BDF, normalized.
    pub bdf: String,
    device: Arc<vfio_ioctls::VfioDevice>,
    /// Its container (shared by all `iommu=off` devices).
    pub container: Arc<vfio_ioctls::VfioContainer>,
    iommu: bool,
}

/// Opens the assigned devices before guest memory exists (so the planner
/// can use what their containers accept): one shared container for
/// `iommu=off` devices, one each for devices behind the virtio-iommu.
/// Nothing is mapped yet.
pub fn open_vfio_devices(vm: &VmFd, config: &VmConfig) -> Result<Vec<OpenedVfio>, DeviceError> {
    if config.vfio.is_empty() {
        return Ok(Vec::new());
    }
    let mut checked = Vec::new();
    for v in &config.vfio {
        let bdf = crate::vfio::normalize_bdf(&v.bdf)?;
        let dir = crate::vfio::check_host_device(&bdf)?;
        checked.push((bdf, dir, v.iommu));
    }
    let mut kvm_vfio = kvm_bindings::kvm_create_device {
        type_: kvm_bindings::kvm_device_type_KVM_DEV_TYPE_VFIO,
        fd: 0,
        flags: 0,
    };
    let handle = Arc::new(vfio_ioctls::VfioDeviceFd::new_from_kvm(
        vm.create_device(&mut kvm_vfio)
            .map_err(DeviceError::KvmVfio)?,
    ));
    let new_container = || {
        vfio_ioctls::VfioContainer::new(Some(handle.clone()))
            .map(Arc::new)
            .map_err(|_| crate::vfio::VfioError::NoVfio)
    };
    let mut shared: Option<Arc<vfio_ioctls::VfioContainer>> = None;
    let mut opened = Vec::new();
    for (bdf, dir, iommu) in checked {
        let container = match (&shared, iommu) {
            (Some(c), false) => c.clone(),
            _ => new_container()?,
        };
        let device = crate::vfio::open_device(&bdf, &dir, container.clone())?;
        if !iommu && shared.is_none() {
            shared = Some(container.clone());
        }
        opened.push(OpenedVfio {
            bdf,
            device,
            container,
            iommu,
        });
    }
    Ok(opened)
}

/// Starts the thread that serves the virtio-iommu's request queue between
/// kicks (see `devices::virtio::iommu::poll`).
fn start_iommu_poller(
    iommu: &Arc<Mutex<VirtioIommu>>,
    window: std::time::Duration,
) -> Result<(), DeviceError> {
    let signal = Arc::new(PollSignal::new());
    iommu
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .set_poller(signal.clone());
    let iommu = iommu.clone();
    std::thread::Builder::new()
        .name("iommu-poll".into())
        .spawn(move || loop {
            signal.wait();
            let mut idle_since = std::time::Instant::now();
            loop {
                let worked = iommu
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .poll_requests();
                if worked {
                    idle_since = std::time::Instant::now();
                } else if idle_since.elapsed() >= window {
                    iommu
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .stop_polling();
                    break;
                } else {
                    std::hint::spin_loop();
                }
            }
        })
        .map_err(DeviceError::EventFd)?;
    Ok(())
}

/// Maps all guest RAM (IOVA = GPA) for the `iommu=off` devices' shared
/// container.
fn map_ram_for_unmanaged(opened: &[OpenedVfio], memory: &GuestMemory) -> Result<(), DeviceError> {
    if let Some(o) = opened.iter().find(|o| !o.iommu) {
        // SAFETY: guest RAM stays mapped until the process exits.
        unsafe { o.container.vfio_map_guest_memory(memory) }.map_err(|source| {
            crate::vfio::VfioError::DmaMap {
                bdf: o.bdf.clone(),
                source,
            }
        })?;
    }
    Ok(())
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

    let irq = EventFd::new(EFD_NONBLOCK).map_err(DeviceError::EventFd)?;
    vm.register_irqfd(&irq, pio::COM1_IRQ)
        .map_err(|e| DeviceError::Irqfd(pio::COM1_IRQ, e))?;
    let console = Arc::new(Mutex::new(
        SerialConsole::new(irq, std::io::stdout()).map_err(DeviceError::EventFd)?,
    ));
    pio_bus.insert(pio::COM1.into(), pio::UART_SIZE.into(), console.clone())?;
    add_power_devices(&mut pio_bus, events)?;

    let root = Arc::new(PciRoot::new());
    root.add_device(Arc::new(Mutex::new(HostBridge::new())))?;
    pio_bus.insert(
        pio::PCI_CONFIG.into(),
        8,
        Arc::new(Mutex::new(PciConfigIo::new(root.clone()))),
    )?;
    mmio_bus.insert(
        map.ecam.0,
        map.ecam.1,
        Arc::new(Mutex::new(PciConfigMmio::new(root.clone()))),
    )?;
    let (mmio32, mmio64) = (map.mmio32, map.mmio64);
    for (base, size) in [mmio32, mmio64] {
        let window = Arc::new(Mutex::new(PciMmioWindow::new(root.clone(), base)));
        mmio_bus.insert(base, size, window)?;
    }
    let io_window = Arc::new(Mutex::new(PciMmioWindow::new_io(
        root.clone(),
        PCI_IO_WINDOW.0,
    )));
    pio_bus.insert(PCI_IO_WINDOW.0, PCI_IO_WINDOW.1, io_window)?;

    let mut pci = PciBuilder {
        root,
        bars: AddressAllocator::new(mmio64.0, mmio64.1).map_err(DeviceError::BarSpace)?,
        bars32: AddressAllocator::new(mmio32.0, mmio32.1).map_err(DeviceError::BarSpace)?,
        ports: AddressAllocator::new(PCI_IO_WINDOW.0, PCI_IO_WINDOW.1)
            .map_err(DeviceError::BarSpace)?,
        interrupts: Arc::new(InterruptManager::new(vm.clone())),
        ioevents: Arc::new(KvmIoEvents(vm.clone())),
        queue_events: Vec::new(),
    };

    // Slots: 0 host bridge, then the virtio-iommu (if any), then the disks
    // in command-line order. Endpoint IDs are BDFs.
    let first_disk_slot = if config.needs_iommu() { 2 } else { 1 };
    let disk_bdf = |i: usize| bdf(first_disk_slot + i);
    let vfio_bdf = |j: usize| bdf(first_disk_slot + config.disks.len() + j);
    map_ram_for_unmanaged(&opened, memory)?;
    let mut endpoints: Vec<u16> = (0..config.disks.len())
        .filter(|i| config.disks[*i].iommu)
        .map(disk_bdf)
        .collect();
    endpoints.extend((0..opened.len()).filter(|j| opened[*j].iommu).map(vfio_bdf));
    let vfio_containers: std::collections::BTreeMap<u32, Arc<vfio_ioctls::VfioContainer>> = opened
        .iter()
        .enumerate()
        .filter(|(_, o)| o.iommu)
        .map(|(j, o)| (u32::from(vfio_bdf(j)), o.container.clone()))
        .collect();
    let mut iommu = None;
    if config.needs_iommu() {
        let device = VirtioIommu::new(
            IommuConfig {
                endpoints: endpoints
                    .iter()
                    .map(|bdf| EndpointConfig {
                        id: u32::from(*bdf),
                        reserved: map
                            .probe_reserved
                            .iter()
                            .map(|r| ReservedRegion {
                                start: r.span.start,
                                end: r.span.end,
                                kind: match r.kind {
                                    ResvKind::Msi => ReservedKind::Msi,
                                    ResvKind::Reserved => ReservedKind::Reserved,
                                },
                            })
                            .collect(),
                    })
                    .collect(),
                input_range: map.input_range(),
                ..IommuConfig::default()
            },
            memory.clone(),
            (!vfio_containers.is_empty()).then(|| {
                Box::new(crate::vfio::VfioDomains::new(
                    memory.clone(),
                    vfio_containers,
                )) as Box<dyn devices::virtio::iommu::DmaBackend>
            }),
        )
        .map_err(DeviceError::Iommu)?;
        let faults = device
            .fault_eventfd()
            .try_clone()
            .map_err(DeviceError::EventFd)?;
        let translators = (0..config.disks.len())
            .filter(|i| config.disks[*i].iommu)
            .map(|i| device.translator(u32::from(disk_bdf(i))))
            .collect::<Result<Vec<_>, _>>()
            .map_err(DeviceError::Iommu)?;
        let device = Arc::new(Mutex::new(device));
        if !config.iommu_poll.is_zero() {
            start_iommu_poller(&device, config.iommu_poll)?;
        }
        let device: Arc<Mutex<dyn VirtioDevice>> = device;
        pci.add_virtio(device.clone(), true, bdf(1))?;
        pci.queue_events.push(QueueEvent {
            fd: faults,
            device,
            queue: EVENT_QUEUE,
        });
        iommu = Some(translators.into_iter());
    }

    for (i, disk) in config.disks.iter().enumerate() {
        let block_config = BlockConfig {
            path: disk.path.clone(),
            read_only: disk.read_only,
            iommu: disk.iommu,
            id: None,
        };
        let translator = if disk.iommu {
            iommu.as_mut().and_then(Iterator::next)
        } else {
            None
        };
        let block: Arc<Mutex<dyn VirtioDevice>> = match translator {
            Some(t) => {
                let translated = IommuMemory::new(memory.clone(), t, true, ());
                Arc::new(Mutex::new(Block::new(translated, block_config)?))
            }
            None => Arc::new(Mutex::new(Block::new(memory.clone(), block_config)?)),
        };
        pci.add_virtio(block, false, disk_bdf(i))?;
    }

    let slots = Arc::new(crate::vfio::KvmSlots::new(vm.clone(), FIRST_DEVICE_SLOT));
    for (j, dev) in opened.iter().enumerate() {
        pci.add_vfio(dev, &slots, vfio_bdf(j))?;
    }

    Ok(Devices {
        pio: pio_bus,
        mmio: mmio_bus,
        console,
        queue_events: pci.queue_events,
        pci: PciHostBridge {
            ecam_base: map.ecam.0,
            bus_start: 0,
            bus_end: 0,
            mmio32,
            mmio64,
            io: (
                PCI_IO_WINDOW.0 as u16,
                (PCI_IO_WINDOW.0 + PCI_IO_WINDOW.1 - 1) as u16,
            ),
        },
        iommu: config.needs_iommu().then(|| IommuTopology {
            iommu_bdf: bdf(1),
            endpoints,
        }),
    })
}
