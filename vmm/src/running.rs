//! A booted VM: its vCPU threads and event-loop subscribers, what it was
//! planned and built as, devices added to and removed from it while it runs
//! (the API's `vm.add-disk` and `vm.remove-device`, through the hotplug
//! slots of `device_manager::hotplug`), and stopping it on request (the
//! API's `vm.shutdown` and `vm.reboot`) so that everything it holds (KVM,
//! guest RAM, VFIO devices) is released and the same devices can be used
//! again.

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Once};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arch::plan::{GuestMap, HostConstraints};
use devices::GuestEvent;
use event_manager::{SubscriberId, SubscriberOps};
use vmm_sys_util::signal::{register_signal_handler, Killable, SIGRTMIN};

use crate::config::DiskConfig;
use crate::device_manager::{HotRemoved, HotplugBus, HotplugError, PlacedDevice, PlacedKind};
use crate::platform::{Native, Platform};
use crate::vcpu::VcpuContext;
use crate::vm::{EventLoop, QueueHandler};

/// How long a stop waits for the vCPU threads to leave `KVM_RUN`.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a vCPU thread that has not stopped yet is kicked again.
const KICK_INTERVAL: Duration = Duration::from_millis(2);

/// What the VM was planned and built as: the reply of `vm.plan` and the
/// devices of `vm.info` come from here, never from the request.
#[derive(Clone, Debug)]
pub struct Layout {
    /// The planned guest address map.
    pub map: GuestMap,
    /// The host constraints the plan obeyed.
    pub host: HostConstraints,
    /// What sits where on PCI bus 0.
    pub devices: Vec<PlacedDevice>,
}

/// Why a stop was not clean.
#[derive(Debug, thiserror::Error)]
pub enum StopError {
    /// A vCPU thread did not leave KVM in time; the VM's resources stay
    /// allocated until minivmm exits.
    #[error("{0} vCPU thread(s) did not stop within {STOP_TIMEOUT:?}; the VM's devices stay held until minivmm exits")]
    Stuck(usize),
}

/// A VM whose vCPUs run; the caller's event loop serves its devices.
pub struct RunningVm {
    /// KVM, the VM file descriptor and guest RAM, dropped last.
    resources: Box<dyn Any>,
    context: Arc<VcpuContext>,
    threads: Vec<JoinHandle<()>>,
    subscribers: Vec<SubscriberId>,
    layout: Layout,
    hotplug: Option<HotplugBus>,
    /// The queue subscribers of each hot-added device, by slot.
    hot_subscribers: BTreeMap<u8, Vec<SubscriberId>>,
}

/// vCPU threads are kicked out of `KVM_RUN` with this signal (its handler
/// does nothing: the interrupted ioctl returning EINTR is the point).
fn kick_signal() -> libc::c_int {
    SIGRTMIN()
}

extern "C" fn on_kick(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}

fn install_kick_handler() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if let Err(e) = register_signal_handler(kick_signal(), on_kick) {
            log::error!("cannot install the vCPU kick signal handler: {e}");
        }
    });
}

impl RunningVm {
    /// The VM `Vm::start` started: `resources` are kept alive until the
    /// VM is dropped, after its threads stopped.
    pub(crate) fn new(
        resources: Box<dyn Any>,
        context: Arc<VcpuContext>,
        threads: Vec<JoinHandle<()>>,
        subscribers: Vec<SubscriberId>,
        layout: Layout,
        hotplug: Option<HotplugBus>,
    ) -> Self {
        install_kick_handler();
        Self {
            resources,
            context,
            threads,
            subscribers,
            layout,
            hotplug,
            hot_subscribers: BTreeMap::new(),
        }
    }

    fn hotplug(&mut self) -> Result<&mut HotplugBus, HotplugError> {
        match (&mut self.hotplug, Native::HOTPLUG) {
            (Some(bus), _) => Ok(bus),
            (None, Err(why)) => Err(HotplugError::Unsupported(why)),
            (None, Ok(_)) => Err(HotplugError::Unsupported(
                "this VM has no hot-pluggable PCI slots",
            )),
        }
    }

    /// Whether `id` names a device added while the VM runs.
    pub fn has_hot_device(&self, id: &str) -> bool {
        self.hotplug.as_ref().is_some_and(|h| h.has(id))
    }

    /// Adds `disk` as device `id` in a free hot-pluggable slot, its queues
    /// served by `event_manager`, and tells the guest; returns where it
    /// went.
    pub fn add_disk(
        &mut self,
        event_manager: &mut EventLoop,
        id: &str,
        disk: &DiskConfig,
    ) -> Result<PlacedDevice, HotplugError> {
        let added = self.hotplug()?.add_disk(id, disk)?;
        let subscribers = added
            .queue_events
            .into_iter()
            .map(|e| event_manager.add_subscriber(Arc::new(Mutex::new(QueueHandler(e)))))
            .collect();
        self.hot_subscribers.insert(added.slot, subscribers);
        let placed = PlacedDevice {
            kind: PlacedKind::Hot {
                id: id.to_string(),
                kind: added.kind,
            },
            bdf: added.bdf,
        };
        self.layout.devices.push(placed.clone());
        Ok(placed)
    }

    /// Opens host device `host` and adds it as device `id` in a free
    /// hot-pluggable slot, and tells the guest; returns where it went.
    pub fn add_vfio(
        &mut self,
        id: &str,
        host: &str,
        iommu: bool,
    ) -> Result<PlacedDevice, HotplugError> {
        let added = self.hotplug()?.add_vfio(id, host, iommu)?;
        let placed = PlacedDevice {
            kind: PlacedKind::Hot {
                id: id.to_string(),
                kind: added.kind,
            },
            bdf: added.bdf,
        };
        self.layout.devices.push(placed.clone());
        Ok(placed)
    }

    /// Asks the guest to eject hot-added device `id`; it is released once
    /// the guest acknowledged ([`RunningVm::finish_ejects`]).
    pub fn remove_device(&mut self, id: &str) -> Result<(), HotplugError> {
        self.hotplug()?.request_remove(id).map(|_| ())
    }

    /// Releases every device the guest ejected: off the bus, its queue
    /// subscribers off `event_manager` (the last references: the device,
    /// its file and its interrupt routes go), gone from the layout.
    pub fn finish_ejects(&mut self, event_manager: &mut EventLoop) -> Vec<HotRemoved> {
        let Some(bus) = &mut self.hotplug else {
            return Vec::new();
        };
        let removed = bus.take_ejected();
        for r in &removed {
            for id in self.hot_subscribers.remove(&r.slot).unwrap_or_default() {
                if let Err(e) = event_manager.remove_subscriber(id) {
                    log::warn!("{}: cannot remove a queue subscriber: {e:?}", r.id);
                }
            }
            self.layout
                .devices
                .retain(|d| !matches!(&d.kind, PlacedKind::Hot { id, .. } if *id == r.id));
            log::info!("{}: ejected by the guest and released", r.id);
        }
        removed
    }

    /// The first stop event the guest (or a stop request) raised.
    pub fn guest_event(&self) -> Option<GuestEvent> {
        self.context.events.get()
    }

    /// What the VM was planned and built as.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Stops the vCPUs (as if the guest powered off, unless it already
    /// stopped), takes the VM's subscribers off `event_manager` and drops
    /// everything the VM holds.
    pub fn stop(mut self, event_manager: &mut EventLoop) -> Result<(), StopError> {
        self.context.events.raise(GuestEvent::PowerOff);
        let deadline = Instant::now() + STOP_TIMEOUT;
        while self.threads.iter().any(|t| !t.is_finished()) && Instant::now() < deadline {
            for thread in self.threads.iter().filter(|t| !t.is_finished()) {
                if let Err(e) = thread.kill(kick_signal()) {
                    log::debug!("cannot kick a vCPU thread: {e}");
                }
            }
            std::thread::sleep(KICK_INTERVAL);
        }
        let hot = std::mem::take(&mut self.hot_subscribers);
        for id in self
            .subscribers
            .drain(..)
            .chain(hot.into_values().flatten())
        {
            if let Err(e) = event_manager.remove_subscriber(id) {
                log::warn!("cannot remove a VM subscriber from the event loop: {e:?}");
            }
        }
        let stuck = self.threads.iter().filter(|t| !t.is_finished()).count();
        if stuck > 0 {
            // The threads still borrow the VM: leak it rather than free
            // memory a vCPU may be using.
            std::mem::forget(self);
            return Err(StopError::Stuck(stuck));
        }
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        drop(self.resources);
        Ok(())
    }
}
