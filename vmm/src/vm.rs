//! Building and running a VM: memory, interrupt controllers, the guest
//! kernel and firmware tables, devices, then vCPU threads and the event
//! loop.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread;

use arch::x86_64::boot::{self, BootSource};
use arch::x86_64::{layout, regs, reset_vector, GuestMemory};
use devices::{GuestEvent, GuestEvents};
use event_manager::{EventManager, MutEventSubscriber, SubscriberOps};
use firmware_tables::acpi;
use kvm_bindings::{
    kvm_pit_config, kvm_userspace_memory_region, KVM_MAX_CPUID_ENTRIES, KVM_PIT_SPEAKER_DUMMY,
};
use kvm_ioctls::{Cap, Kvm, VmFd};
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryRegion};

use crate::config::VmConfig;
use crate::console::{ConsoleInput, RawTerminal};
use crate::device_manager::{self, DeviceError};
use crate::kvm::{self, KvmError};
use crate::vcpu::{Vcpu, VcpuContext, VcpuError};

/// Errors building or running the VM.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// Host KVM problem.
    #[error(transparent)]
    Kvm(#[from] KvmError),
    /// No valid guest address map, or the host could not be read.
    #[error(transparent)]
    Plan(#[from] crate::plan::PlanFailure),
    /// A VM-level KVM ioctl failed.
    #[error("cannot {0}")]
    VmIoctl(&'static str, #[source] kvm_ioctls::Error),
    /// More RAM than the host has.
    #[error("--memory {want} MiB is more than this host's {host} MiB of RAM: lower --memory")]
    MemoryTooLarge {
        /// MiB requested.
        want: u64,
        /// Host MiB.
        host: u64,
    },
    /// mmap of guest memory failed.
    #[error("cannot allocate {0} MiB of guest memory")]
    GuestMemory(u64, #[source] vm_memory::mmap::FromRangesError),
    /// The kernel or initrd cannot be opened.
    #[error("cannot open {what} '{path}'")]
    OpenImage {
        /// "kernel" or "initrd".
        what: &'static str,
        /// The path given.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The boot protocol failed.
    #[error("cannot boot '{path}'")]
    Boot {
        /// The kernel path.
        path: PathBuf,
        /// Why.
        #[source]
        source: boot::BootError,
    },
    /// Boot page tables or GDT.
    #[error(transparent)]
    Regs(#[from] regs::RegsError),
    /// The reset vector stub.
    #[error(transparent)]
    ResetVector(#[from] reset_vector::ResetVectorError),
    /// ACPI tables.
    #[error(transparent)]
    Acpi(#[from] acpi::AcpiError),
    /// Device creation.
    #[error(transparent)]
    Devices(#[from] DeviceError),
    /// vCPU setup.
    #[error(transparent)]
    Vcpu(#[from] VcpuError),
    /// Event loop failure.
    #[error("event loop failed: {0:?}")]
    EventLoop(event_manager::Error),
    /// Thread spawn failure.
    #[error("cannot start a vCPU thread")]
    Thread(#[source] std::io::Error),
}

/// A VM ready to run.
pub struct Vm {
    _kvm: Kvm,
    _vm: Arc<VmFd>,
    _memory: GuestMemory,
    vcpus: Vec<Vcpu>,
    context: Arc<VcpuContext>,
    console: Arc<Mutex<device_manager::Console>>,
    queue_events: Vec<device_manager::QueueEvent>,
    fault_events: Vec<device_manager::FaultEvent>,
}

fn open_image(what: &'static str, path: &Path) -> Result<File, VmError> {
    File::open(path).map_err(|source| VmError::OpenImage {
        what,
        path: path.to_path_buf(),
        source,
    })
}

fn host_memory() -> u64 {
    let mut info = std::mem::MaybeUninit::<libc::sysinfo>::zeroed();
    // SAFETY: sysinfo writes only into the struct we pass, which is large enough.
    let rc = unsafe { libc::sysinfo(info.as_mut_ptr()) };
    if rc != 0 {
        return u64::MAX;
    }
    // SAFETY: sysinfo returned 0, so it filled the struct.
    let info = unsafe { info.assume_init() };
    info.totalram.saturating_mul(u64::from(info.mem_unit))
}

/// Registers every region of `memory` with KVM as a memory slot.
pub fn register_memory(vm: &VmFd, memory: &GuestMemory) -> Result<(), VmError> {
    for (slot, region) in memory.iter().enumerate() {
        let kvm_region = kvm_userspace_memory_region {
            slot: slot as u32,
            guest_phys_addr: region.start_addr().0,
            memory_size: region.len(),
            userspace_addr: region.as_ptr() as u64,
            flags: 0,
        };
        // SAFETY: the region is a live mapping owned by `memory`; callers
        // keep `memory` alive for as long as the KVM VM exists.
        unsafe { vm.set_user_memory_region(kvm_region) }
            .map_err(|e| VmError::VmIoctl("register guest memory with KVM", e))?;
    }
    Ok(())
}

/// Allocates guest RAM per the layout and registers it with KVM.
fn create_memory(vm: &VmFd, size: u64, ram: &[layout::RamRegion]) -> Result<GuestMemory, VmError> {
    let host = host_memory();
    if size > host {
        return Err(VmError::MemoryTooLarge {
            want: size >> 20,
            host: host >> 20,
        });
    }
    let ranges: Vec<_> = ram.iter().map(|r| (r.start, r.size as usize)).collect();
    let memory =
        GuestMemory::from_ranges(&ranges).map_err(|e| VmError::GuestMemory(size >> 20, e))?;
    register_memory(vm, &memory)?;
    Ok(memory)
}

fn platform_description(config: &VmConfig, devices: &device_manager::Devices) -> acpi::Platform {
    acpi::Platform {
        cpus: config.cpus,
        lapic_addr: layout::LAPIC_START as u32,
        ioapic_addr: layout::IOAPIC_START as u32,
        pm: device_manager::acpi_power_management(),
        serial_ports: device_manager::acpi_serial_ports(),
        pvpanic_port: Some(layout::pio::PVPANIC),
        pci: Some(devices.pci),
        iommu: devices.iommu.clone(),
    }
}

impl Vm {
    /// Builds the VM `config` describes, ready to [`Vm::run`].
    pub fn build(config: &VmConfig) -> Result<Self, VmError> {
        let kvm = kvm::open()?;
        kvm::check(&kvm, config.cpus)?;
        let mut kernel = open_image("kernel", &config.kernel)?;
        let mut initrd = config
            .initrd
            .as_deref()
            .map(|p| open_image("initrd", p))
            .transpose()?;

        let vm = Arc::new(
            kvm.create_vm()
                .map_err(|e| VmError::VmIoctl("create the VM", e))?,
        );
        vm.set_tss_address(layout::KVM_TSS_START as usize)
            .map_err(|e| VmError::VmIoctl("set the TSS address", e))?;
        vm.set_identity_map_address(layout::KVM_IDENTITY_MAP_START)
            .map_err(|e| VmError::VmIoctl("set the identity map address", e))?;
        vm.create_irq_chip()
            .map_err(|e| VmError::VmIoctl("create the in-kernel irqchip", e))?;
        let pit = kvm_pit_config {
            flags: KVM_PIT_SPEAKER_DUMMY,
            ..Default::default()
        };
        vm.create_pit2(pit)
            .map_err(|e| VmError::VmIoctl("create the in-kernel PIT", e))?;

        // Assigned devices are opened first: what their containers accept
        // is an input of the address plan.
        let opened = device_manager::open_vfio_devices(&vm, config)?;
        let bdfs: Vec<String> = opened.iter().map(|o| o.bdf.clone()).collect();
        let (input, mut host) = crate::plan::gather(config, &bdfs)?;
        for o in &opened {
            match crate::vfio::iommu_info(&o.container) {
                Ok(info) => {
                    let ranges: Vec<_> = info
                        .iova_ranges
                        .iter()
                        .map(|(s, e)| arch::x86_64::plan::IovaRange { start: *s, end: *e })
                        .collect();
                    if !ranges.is_empty() {
                        host.add_iova_ranges(&o.bdf, &ranges);
                    }
                    if info.page_sizes != 0 {
                        host.add_page_sizes(info.page_sizes);
                    }
                }
                Err(e) => log::warn!("{}: cannot read the IOMMU's IOVA ranges: {e}", o.bdf),
            }
        }
        let map =
            arch::x86_64::plan::plan(&input, &host).map_err(crate::plan::PlanFailure::from)?;
        let memory = create_memory(&vm, config.memory, &map.ram)?;
        let ram = map.ram.clone();
        let entry = boot::load_linux(
            &memory,
            BootSource {
                kernel: &mut kernel,
                initrd: initrd.as_mut(),
                cmdline: &config.cmdline,
                ram: &ram,
            },
        )
        .map_err(|source| VmError::Boot {
            path: config.kernel.clone(),
            source,
        })?;
        let pm = device_manager::acpi_power_management();
        reset_vector::write_reset_vector(&memory, pm.reset_port, pm.reset_value)?;
        regs::write_gdt_and_idt(&memory)?;
        regs::write_identity_page_tables(&memory)?;
        let events = Arc::new(GuestEvents::new().map_err(DeviceError::EventFd)?);
        let devices = device_manager::create(&vm, &memory, config, &events, &map, opened)?;
        acpi::write_tables(
            &memory,
            GuestAddress(layout::ACPI_START),
            layout::ACPI_SIZE,
            &platform_description(config, &devices),
        )?;

        let cpuid = kvm
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .map_err(|e| VmError::VmIoctl("read the supported CPUID", e))?;
        let tsc_deadline = kvm.check_extension(Cap::TscDeadlineTimer);
        let mut vcpus = Vec::with_capacity(config.cpus.into());
        for id in 0..config.cpus {
            let mut vcpu = Vcpu::new(&vm, id)?;
            vcpu.configure_platform(&cpuid, config.cpus, tsc_deadline)?;
            if id == 0 {
                vcpu.configure_boot(entry.entry)?;
            }
            vcpus.push(vcpu);
        }

        Ok(Self {
            _kvm: kvm,
            _vm: vm,
            _memory: memory,
            vcpus,
            context: Arc::new(VcpuContext {
                pio: devices.pio,
                mmio: devices.mmio,
                events,
            }),
            console: devices.console,
            queue_events: devices.queue_events,
            fault_events: devices.fault_events,
        })
    }

    /// Runs the guest until it stops; returns why it stopped. vCPU threads
    /// still blocked in KVM when this returns die with the process.
    pub fn run(self) -> Result<GuestEvent, VmError> {
        let _terminal = RawTerminal::enter();
        let mut event_manager: EventManager<Arc<Mutex<dyn MutEventSubscriber + Send>>> =
            EventManager::new().map_err(VmError::EventLoop)?;
        let input = ConsoleInput::new(self.console.clone())
            .map_err(|e| VmError::Devices(DeviceError::EventFd(e)))?;
        event_manager.add_subscriber(Arc::new(Mutex::new(input)));
        let stop = Arc::new(Mutex::new(StopWatch::new(self.context.events.clone())?));
        event_manager.add_subscriber(stop);
        for queue_event in self.queue_events {
            event_manager.add_subscriber(Arc::new(Mutex::new(QueueHandler(queue_event))));
        }
        for fault_event in self.fault_events {
            event_manager.add_subscriber(Arc::new(Mutex::new(FaultHandler(fault_event))));
        }

        for mut vcpu in self.vcpus {
            let context = self.context.clone();
            thread::Builder::new()
                .name(format!("vcpu{}", vcpu.id()))
                .spawn(move || vcpu.run(&context))
                .map_err(VmError::Thread)?;
        }

        loop {
            if let Some(event) = self.context.events.get() {
                return Ok(event);
            }
            event_manager.run().map_err(VmError::EventLoop)?;
        }
    }
}

/// Wakes the event loop when the guest raises a stop event.
struct StopWatch {
    events: Arc<GuestEvents>,
    fd: vmm_sys_util::eventfd::EventFd,
}

impl StopWatch {
    fn new(events: Arc<GuestEvents>) -> Result<Self, VmError> {
        let fd = events
            .eventfd()
            .try_clone()
            .map_err(|e| VmError::Devices(DeviceError::EventFd(e)))?;
        Ok(Self { events, fd })
    }
}

impl MutEventSubscriber for StopWatch {
    fn process(&mut self, _events: event_manager::Events, _ops: &mut event_manager::EventOps) {
        let _ = self.fd.read();
        log::debug!("stop event: {:?}", self.events.get());
    }

    fn init(&mut self, ops: &mut event_manager::EventOps) {
        if let Err(e) = ops.add(event_manager::Events::new(
            &self.fd,
            event_manager::EventSet::IN,
        )) {
            log::error!("cannot watch for guest stop events: {e:?}");
        }
    }
}

/// Delivers the virtio-iommu's faults when its fault eventfd fires.
struct FaultHandler(device_manager::FaultEvent);

impl MutEventSubscriber for FaultHandler {
    fn process(&mut self, _events: event_manager::Events, _ops: &mut event_manager::EventOps) {
        self.0.delivery.deliver();
    }

    fn init(&mut self, ops: &mut event_manager::EventOps) {
        if let Err(e) = ops.add(event_manager::Events::new(
            &self.0.fd,
            event_manager::EventSet::IN,
        )) {
            log::error!("cannot watch virtio-iommu faults: {e:?}");
        }
    }
}

/// Runs a device's queue when KVM signals its notification eventfd.
struct QueueHandler(device_manager::QueueEvent);

impl MutEventSubscriber for QueueHandler {
    fn process(&mut self, _events: event_manager::Events, _ops: &mut event_manager::EventOps) {
        let _ = self.0.fd.read();
        self.0
            .device
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .process_queue(self.0.queue);
    }

    fn init(&mut self, ops: &mut event_manager::EventOps) {
        if let Err(e) = ops.add(event_manager::Events::new(
            &self.0.fd,
            event_manager::EventSet::IN,
        )) {
            log::error!("cannot watch queue {} notifications: {e:?}", self.0.queue);
        }
    }
}
