//! Building and running a VM: memory, interrupt controllers, the guest
//! kernel and firmware tables, devices, then vCPU threads and the event
//! loop.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread;

use arch::GuestMemory;
use devices::{GuestEvent, GuestEvents};
use event_manager::{EventManager, MutEventSubscriber, SubscriberOps};
use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::{Kvm, VmFd};
use vm_memory::{GuestMemoryBackend, GuestMemoryRegion};

use crate::config::VmConfig;
use crate::console::{ConsoleInput, RawTerminal};
use crate::device_manager::{self, DeviceError};
use crate::kvm::{self, KvmError};
use crate::platform::{GuestImages, Native, Platform, PlatformError};
use crate::running::{Layout, RunningVm};
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
    /// The architecture's part of the build (boot protocol, firmware
    /// tables, vCPU state).
    #[error(transparent)]
    Platform(#[from] PlatformError),
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
    kvm: Kvm,
    vm: Arc<VmFd>,
    memory: GuestMemory,
    vcpus: Vec<Vcpu>,
    context: Arc<VcpuContext>,
    console: Arc<Mutex<device_manager::Console>>,
    queue_events: Vec<device_manager::QueueEvent>,
    layout: Layout,
    fault_events: Vec<device_manager::FaultEvent>,
    hotplug: Option<device_manager::HotplugBus>,
}

/// The event loop a VM's subscribers are added to.
pub type EventLoop = EventManager<Arc<Mutex<dyn MutEventSubscriber + Send>>>;

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
fn create_memory(vm: &VmFd, size: u64, ram: &[arch::RamRegion]) -> Result<GuestMemory, VmError> {
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

impl Vm {
    /// Builds the VM `config` describes, ready to [`Vm::run`].
    pub fn build(config: &VmConfig) -> Result<Self, VmError> {
        let kvm = kvm::open()?;
        kvm::check(&kvm, config.cpus, Native::REQUIRED_CAPS)?;
        let kernel = open_image("kernel", &config.kernel)?;
        let initrd = config
            .initrd
            .as_deref()
            .map(|p| open_image("initrd", p))
            .transpose()?;

        let vm = Arc::new(Native::create_vm(&kvm, config)?);

        // Assigned devices are opened first: what their containers accept
        // is an input of the address plan.
        let mut kvm_vfio = device_manager::KvmVfio::default();
        let opened = device_manager::open_vfio_devices(&vm, config, &mut kvm_vfio)?;
        let bdfs: Vec<String> = opened.iter().map(|o| o.bdf.clone()).collect();
        let (input, mut host) = crate::plan::gather(config, &bdfs)?;
        for o in &opened {
            match crate::vfio::iommu_info(&o.container) {
                Ok(info) => {
                    let ranges: Vec<_> = info
                        .iova_ranges
                        .iter()
                        .map(|(s, e)| arch::plan::IovaRange { start: *s, end: *e })
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
        let (map, host) = crate::plan::plan_vm(config, &input, host)?;
        let memory = create_memory(&vm, config.memory, &map.ram)?;
        let boot = Native::load(&memory, &map, config, GuestImages { kernel, initrd })?;
        let mut vcpus = Native::create_vcpus(&kvm, &vm, config, &map)?;
        let events = Arc::new(GuestEvents::new().map_err(DeviceError::EventFd)?);
        let devices =
            device_manager::create(&vm, &memory, config, &events, &map, opened, kvm_vfio)?;
        Native::finish(&memory, &map, config, &devices, &mut vcpus, boot)?;

        Ok(Self {
            kvm,
            vm,
            memory,
            vcpus,
            context: Arc::new(VcpuContext {
                pio: devices.pio,
                mmio: devices.mmio,
                events,
            }),
            console: devices.console,
            queue_events: devices.queue_events,
            layout: Layout {
                map,
                host,
                devices: devices.placed,
            },
            fault_events: devices.fault_events,
            hotplug: devices.hotplug,
        })
    }

    /// Runs the guest until it stops; returns why it stopped. vCPU threads
    /// still blocked in KVM when this returns die with the process.
    pub fn run(self) -> Result<GuestEvent, VmError> {
        let _terminal = RawTerminal::enter();
        let mut event_manager: EventLoop = EventManager::new().map_err(VmError::EventLoop)?;
        let running = self.start(&mut event_manager)?;
        loop {
            if let Some(event) = running.guest_event() {
                return Ok(event);
            }
            event_manager.run().map_err(VmError::EventLoop)?;
        }
    }

    /// Puts the VM's subscribers on `event_manager` and starts its vCPU
    /// threads; the caller runs the loop (see [`RunningVm`]).
    pub fn start(self, event_manager: &mut EventLoop) -> Result<RunningVm, VmError> {
        let mut subscribers = Vec::new();
        let input = ConsoleInput::new(self.console.clone())
            .map_err(|e| VmError::Devices(DeviceError::EventFd(e)))?;
        subscribers.push(event_manager.add_subscriber(Arc::new(Mutex::new(input))));
        let stop = Arc::new(Mutex::new(StopWatch::new(self.context.events.clone())?));
        subscribers.push(event_manager.add_subscriber(stop));
        for queue_event in self.queue_events {
            let handler = Arc::new(Mutex::new(QueueHandler(queue_event)));
            subscribers.push(event_manager.add_subscriber(handler));
        }
        for fault_event in self.fault_events {
            let handler = Arc::new(Mutex::new(FaultHandler(fault_event)));
            subscribers.push(event_manager.add_subscriber(handler));
        }
        if let Some(hotplug) = &self.hotplug {
            let fd = hotplug
                .ejected_eventfd()
                .try_clone()
                .map_err(|e| VmError::Devices(DeviceError::EventFd(e)))?;
            subscribers.push(event_manager.add_subscriber(Arc::new(Mutex::new(EjectWatch(fd)))));
        }

        let mut threads = Vec::new();
        for mut vcpu in self.vcpus {
            let context = self.context.clone();
            threads.push(
                thread::Builder::new()
                    .name(format!("vcpu{}", vcpu.id()))
                    .spawn(move || vcpu.run(&context))
                    .map_err(VmError::Thread)?,
            );
        }
        Ok(RunningVm::new(
            Box::new((self.kvm, self.vm, self.memory)),
            self.context,
            threads,
            subscribers,
            self.layout,
            self.hotplug,
        ))
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

/// Wakes the event loop when the guest acknowledged a hot-removal; the
/// control loop then finishes it (`RunningVm::finish_ejects`).
struct EjectWatch(vmm_sys_util::eventfd::EventFd);

impl MutEventSubscriber for EjectWatch {
    fn process(&mut self, _events: event_manager::Events, _ops: &mut event_manager::EventOps) {
        let _ = self.0.read();
    }

    fn init(&mut self, ops: &mut event_manager::EventOps) {
        if let Err(e) = ops.add(event_manager::Events::new(
            &self.0,
            event_manager::EventSet::IN,
        )) {
            log::error!("cannot watch PCI hotplug ejections: {e:?}");
        }
    }
}

/// Runs a device's queue when KVM signals its notification eventfd.
pub(crate) struct QueueHandler(pub(crate) device_manager::QueueEvent);

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
