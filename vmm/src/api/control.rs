//! The VMM control loop of `--api-socket`: the main thread's event loop
//! (event-manager) serves the VM's devices and, when the API thread wakes
//! it, answers the queued requests. It owns the VM: a request is carried
//! out here, between two rounds of device events, and only the vCPUs of a
//! VM being stopped or rebooted wait for it.
//!
//! States: no VM, created (a validated [`VmConfig`]), running (a
//! [`RunningVm`] built from it by the same `Vm::build` the command line
//! uses). `vm.shutdown` goes back to created; a guest that powers off,
//! reboots or crashes ends minivmm as without the API.
//!
//! Hotplug: `vm.add-disk` builds the disk into a free hot-pluggable slot of
//! the running VM and answers once the guest was told; `vm.remove-device`
//! asks the guest to eject and answers at once; the removal is finished
//! here, after the round of device events in which the guest's
//! acknowledgment arrived.

use std::error::Error as StdError;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use devices::GuestEvent;
use event_manager::{EventManager, EventOps, EventSet, Events, MutEventSubscriber, SubscriberOps};
use serde_json::json;
use vmm_sys_util::eventfd::EventFd;

use super::http::Response;
use super::report::{self, DeviceIds};
use super::routes::ApiRequest;
use super::server::{self, ApiReceiver, Reply};
use super::socket::{ApiSocket, SocketError};
use super::types::{vm_config, CreateError, VmmSettings};
use crate::cli::Cli;
use crate::config::{ConfigError, VmConfig};
use crate::console::RawTerminal;
use crate::device_manager::{DeviceError, HotplugError};
use crate::running::RunningVm;
use crate::vm::{EventLoop, Vm, VmError};

/// Why the API could not be served.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The socket.
    #[error(transparent)]
    Socket(#[from] SocketError),
    /// The API thread or the event loop could not start.
    #[error("cannot start the API server")]
    Start(#[source] std::io::Error),
    /// The event loop failed.
    #[error("event loop failed: {0:?}")]
    EventLoop(event_manager::Error),
    /// The VM given on the command line.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Building the VM given on the command line.
    #[error(transparent)]
    Vm(#[from] VmError),
}

/// How a run under the API ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// The guest stopped (as without the API).
    Guest(GuestEvent),
    /// `vmm.shutdown`.
    VmmShutdown,
}

/// Reads the API's eventfd so that the loop returns to drain requests.
struct Wake(EventFd);

impl MutEventSubscriber for Wake {
    fn process(&mut self, _events: Events, _ops: &mut EventOps) {
        let _ = self.0.read();
    }

    fn init(&mut self, ops: &mut EventOps) {
        if let Err(e) = ops.add(Events::new(&self.0, EventSet::IN)) {
            log::error!("api: cannot watch for requests: {e:?}");
        }
    }
}

/// The created VM.
struct Created {
    config: VmConfig,
    ids: DeviceIds,
}

/// Appends the devices hot-added to the running VM of `layout` to the
/// configuration `created`, after its own, with their ids: what
/// `vm.reboot` boots (as cloud-hypervisor does). A device whose removal
/// the guest never acknowledged stays.
fn keep_hot_devices(created: &mut Created, layout: &crate::running::Layout) {
    use crate::config::VfioConfig;
    use crate::device_manager::{HotKind, PlacedKind};
    for device in &layout.devices {
        let PlacedKind::Hot { id, kind } = &device.kind else {
            continue;
        };
        match kind {
            HotKind::Disk { config, .. } => {
                created.config.disks.push(config.clone());
                created.ids.disks.push(id.clone());
            }
            HotKind::Vfio { host, iommu } => {
                created.config.vfio.push(VfioConfig {
                    bdf: host.clone(),
                    iommu: *iommu,
                });
                created.ids.vfio.push(id.clone());
            }
        }
    }
}

/// The VMM's state, changed only by the control loop.
pub struct Control {
    settings: VmmSettings,
    created: Option<Created>,
    running: Option<RunningVm>,
}

/// The messages of `error` and its sources, outermost first (the error
/// body cloud-hypervisor clients expect).
fn chain(error: &dyn StdError) -> Vec<String> {
    std::iter::successors(Some(error), |e| (*e).source())
        .map(ToString::to_string)
        .collect()
}

fn fail(status: u16, message: impl Into<String>) -> Response {
    Response::error(status, &[message.into()])
}

fn default_ids(config: &VmConfig) -> DeviceIds {
    DeviceIds {
        disks: (0..config.disks.len())
            .map(|i| format!("_disk{i}"))
            .collect(),
        vfio: (0..config.vfio.len())
            .map(|i| format!("_vfio{i}"))
            .collect(),
    }
}

/// The ids a `vm.create` body gives its devices (defaults where it gives
/// none); a duplicate is refused.
fn body_ids(body: &super::types::CreateBody) -> Result<DeviceIds, String> {
    let mut ids = DeviceIds::default();
    for (i, d) in body.disks.iter().flatten().enumerate() {
        ids.disks
            .push(d.id.clone().unwrap_or_else(|| format!("_disk{i}")));
    }
    for (i, d) in body.devices.iter().flatten().enumerate() {
        ids.vfio
            .push(d.id.clone().unwrap_or_else(|| format!("_vfio{i}")));
    }
    let mut all: Vec<&String> = ids.disks.iter().chain(&ids.vfio).collect();
    all.sort();
    if let Some(w) = all.windows(2).find(|w| w[0] == w[1]) {
        return Err(format!(
            "device id '{}' is used twice: give every disk and device its own id",
            w[0]
        ));
    }
    Ok(ids)
}

impl Control {
    /// No VM yet; VMs get `settings`.
    pub fn new(settings: VmmSettings) -> Self {
        Self {
            settings,
            created: None,
            running: None,
        }
    }

    /// The guest's stop event, if the running VM raised one.
    pub fn guest_event(&self) -> Option<GuestEvent> {
        self.running.as_ref().and_then(RunningVm::guest_event)
    }

    fn boot(&mut self, event_manager: &mut EventLoop) -> Result<(), Response> {
        let Some(created) = &self.created else {
            return Err(fail(404, "no VM is created: PUT vm.create first"));
        };
        if self.running.is_some() {
            return Err(fail(409, "the VM is already running"));
        }
        let vm = Vm::build(&created.config).map_err(|e| Response::error(500, &chain(&e)))?;
        let running = vm
            .start(event_manager)
            .map_err(|e| Response::error(500, &chain(&e)))?;
        self.running = Some(running);
        Ok(())
    }

    fn stop(&mut self, event_manager: &mut EventLoop) -> Result<(), Response> {
        let Some(running) = self.running.take() else {
            return Err(fail(405, "the VM is not running: PUT vm.boot first"));
        };
        running
            .stop(event_manager)
            .map_err(|e| Response::error(500, &chain(&e)))
    }

    /// Carries out `request`; returns the answer, and whether minivmm
    /// exits after sending it.
    pub fn handle(
        &mut self,
        request: ApiRequest,
        event_manager: &mut EventLoop,
    ) -> (Response, bool) {
        let done = |r: Result<(), Response>| r.map_or_else(|e| e, |()| Response::empty(204));
        let response = match request {
            ApiRequest::VmmPing => Response::json(
                json!({
                    "version": env!("CARGO_PKG_VERSION"),
                    "build_version": format!("minivmm {}", env!("CARGO_PKG_VERSION")),
                    "pid": std::process::id(),
                    "features": [],
                })
                .to_string(),
            ),
            ApiRequest::VmmShutdown => {
                if self.running.is_some() {
                    if let Err(r) = self.stop(event_manager) {
                        return (r, true);
                    }
                }
                return (Response::empty(204), true);
            }
            ApiRequest::VmCreate(body) => self.create(&body),
            ApiRequest::VmDelete => {
                let stopped = if self.running.is_some() {
                    self.stop(event_manager)
                } else {
                    Ok(())
                };
                self.created = None;
                done(stopped)
            }
            ApiRequest::VmBoot => done(self.boot(event_manager)),
            ApiRequest::VmShutdown => done(self.stop(event_manager)),
            ApiRequest::VmReboot => {
                // Hot-added devices stay, as boot devices of the next run.
                if let (Some(created), Some(running)) = (&mut self.created, &self.running) {
                    keep_hot_devices(created, running.layout());
                }
                done(
                    self.stop(event_manager)
                        .and_then(|()| self.boot(event_manager)),
                )
            }
            ApiRequest::VmInfo => match &self.created {
                None => fail(404, "no VM is created: PUT vm.create first"),
                Some(c) => Response::json(
                    report::info(
                        &c.config,
                        &c.ids,
                        self.running.as_ref().map(RunningVm::layout),
                    )
                    .to_string(),
                ),
            },
            ApiRequest::VmCounters => match self.running_with_ids() {
                Ok((running, ids)) => {
                    Response::json(report::counters(running.layout(), ids).to_string())
                }
                Err(r) => r,
            },
            ApiRequest::VmPlan => match self.running_with_ids() {
                Ok((running, _)) => {
                    let layout = running.layout();
                    Response::json(report::plan(&layout.map, &layout.host).to_string())
                }
                Err(r) => r,
            },
            ApiRequest::VmAddDevice(body) => self.add_device(&body).unwrap_or_else(|e| e),
            ApiRequest::VmAddDisk(body) => {
                self.add_disk(&body, event_manager).unwrap_or_else(|e| e)
            }
            ApiRequest::VmRemoveDevice(body) => done(self.remove_device(&body.id)),
        };
        (response, false)
    }

    /// An id for a new device: `wanted`, unless some device has it, or the
    /// first free `{prefix}N`.
    fn new_id(&self, wanted: Option<&String>, prefix: &str) -> Result<String, Response> {
        let (running, ids) = self.running_with_ids()?;
        let taken = |id: &str| {
            id == IOMMU_ID
                || ids.disks.iter().chain(&ids.vfio).any(|i| i == id)
                || running.has_hot_device(id)
        };
        match wanted {
            Some(id) if taken(id) => Err(fail(409, HotplugError::IdInUse(id.clone()).to_string())),
            Some(id) => Ok(id.clone()),
            None => Ok((0..)
                .map(|n| format!("{prefix}{n}"))
                .find(|id| !taken(id))
                .unwrap_or_default()),
        }
    }

    /// `vm.add-device`: the host regions are checked against the running
    /// plan first (409 on a collision), then the device is opened and
    /// added; 200 with its id and guest BDF.
    fn add_device(&mut self, body: &super::types::DeviceBody) -> Result<Response, Response> {
        let (running, _) = self.running_with_ids()?;
        let bdf = check_hot_add(body, running.layout())?;
        let id = self.new_id(body.id.as_ref(), "_vfio")?;
        let Some(running) = self.running.as_mut() else {
            return Err(fail(405, "the VM is not running: PUT vm.boot first"));
        };
        let placed = running
            .add_vfio(&id, &bdf, body.iommu)
            .map_err(|e| hotplug_failure(&e))?;
        log::info!(
            "api: {id} ({bdf}) added at {}",
            report::guest_bdf(placed.bdf)
        );
        Ok(Response::json(
            json!({ "id": id, "bdf": report::guest_bdf(placed.bdf) }).to_string(),
        ))
    }

    /// `vm.add-disk`: 200 with the new device's id and guest BDF.
    fn add_disk(
        &mut self,
        body: &super::types::DiskBody,
        event_manager: &mut EventLoop,
    ) -> Result<Response, Response> {
        self.running_with_ids()?;
        let disk = body.disk_config().map_err(|e| fail(400, e.to_string()))?;
        let id = self.new_id(body.id.as_ref(), "_disk")?;
        let Some(running) = self.running.as_mut() else {
            return Err(fail(405, "the VM is not running: PUT vm.boot first"));
        };
        let placed = running
            .add_disk(event_manager, &id, &disk)
            .map_err(|e| hotplug_failure(&e))?;
        log::info!("api: {id} added at {}", report::guest_bdf(placed.bdf));
        Ok(Response::json(
            json!({ "id": id, "bdf": report::guest_bdf(placed.bdf) }).to_string(),
        ))
    }

    /// `vm.remove-device`: asks the guest to eject a hot-added device.
    fn remove_device(&mut self, id: &str) -> Result<(), Response> {
        let (_, ids) = self.running_with_ids()?;
        let at_boot = ids.disks.iter().chain(&ids.vfio).any(|i| i == id) || id == IOMMU_ID;
        if at_boot {
            return Err(fail(
                409,
                format!("device '{id}' was given at boot and its PCI slot is not hot-pluggable: only devices added with vm.add-disk or vm.add-device can be removed"),
            ));
        }
        let Some(running) = self.running.as_mut() else {
            return Err(fail(405, "the VM is not running: PUT vm.boot first"));
        };
        running.remove_device(id).map_err(|e| hotplug_failure(&e))
    }

    /// Finishes the removals the guest acknowledged since the last call.
    pub fn finish_ejects(&mut self, event_manager: &mut EventLoop) {
        if let Some(running) = self.running.as_mut() {
            running.finish_ejects(event_manager);
        }
    }

    fn running_with_ids(&self) -> Result<(&RunningVm, &DeviceIds), Response> {
        match (&self.running, &self.created) {
            (Some(r), Some(c)) => Ok((r, &c.ids)),
            (_, None) => Err(fail(404, "no VM is created: PUT vm.create first")),
            (None, Some(_)) => Err(fail(405, "the VM is not running: PUT vm.boot first")),
        }
    }

    fn create(&mut self, body: &super::types::CreateBody) -> Response {
        if self.created.is_some() {
            return fail(409, "a VM is already created: PUT vm.delete first");
        }
        let ids = match body_ids(body) {
            Ok(ids) => ids,
            Err(e) => return fail(409, e),
        };
        match vm_config(body, &self.settings) {
            Ok(config) => {
                self.created = Some(Created { config, ids });
                Response::empty(204)
            }
            Err(e @ (CreateError::Body(_) | CreateError::Config(_))) => fail(400, e.to_string()),
        }
    }

    /// Creates the VM the command line describes (`--kernel` with
    /// `--api-socket`).
    fn create_from_cli(&mut self, config: VmConfig) {
        let ids = default_ids(&config);
        self.created = Some(Created { config, ids });
    }
}

/// The id `vm.info` gives the virtio-iommu.
const IOMMU_ID: &str = "_virtio-iommu";

/// The answer to a refused or failed hot-add or removal.
fn hotplug_failure(error: &HotplugError) -> Response {
    let status = match error {
        HotplugError::Unsupported(_) => 501,
        HotplugError::UnknownId(_) => 404,
        HotplugError::NoIommu | HotplugError::Device(DeviceError::Disk(_)) => 400,
        HotplugError::IdInUse(_)
        | HotplugError::HostInUse(..)
        | HotplugError::Ejecting(_)
        | HotplugError::NoFreeSlot { .. }
        | HotplugError::Collision(_) => 409,
        // The host device is not usable as it is (not bound to vfio-pci,
        // not found, ...): the message says what to fix.
        HotplugError::Device(DeviceError::Vfio(_)) => 400,
        HotplugError::Device(_) | HotplugError::Signal(_) | HotplugError::Assign { .. } => 500,
    };
    Response::error(status, &chain(error))
}

/// `vm.add-device` on a running VM, before anything is opened: the
/// device's host regions are checked against the running plan (a collision
/// is refused with 409 and the region). Returns the normalized host BDF.
fn check_hot_add(
    body: &super::types::DeviceBody,
    layout: &crate::running::Layout,
) -> Result<String, Response> {
    let bdf = body
        .bdf("path")
        .map_err(|e| e.0)
        .and_then(|b| crate::vfio::normalize_bdf(&b).map_err(|e| e.to_string()))
        .map_err(|e| fail(400, e))?;
    let regions =
        host_iommu::read_device_regions(&bdf).map_err(|e| Response::error(400, &chain(&e)))?;
    crate::hotplug::check_regions(&bdf, body.iommu, &layout.map, &regions)
        .map_err(|collision| fail(409, collision.to_string()))?;
    Ok(bdf)
}

/// How long minivmm waits, after answering `vmm.shutdown`, for the answer
/// to reach the client before it exits.
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(1);

/// Serves the API on `path` until `vmm.shutdown` or the guest stops. With
/// `--kernel`, the command line's VM is created and booted first.
pub fn serve(path: &Path, cli: Cli) -> Result<Ended, ApiError> {
    let socket = ApiSocket::bind(path)?;
    let result = serve_on(&socket, cli);
    socket.remove();
    result
}

fn serve_on(socket: &ApiSocket, cli: Cli) -> Result<Ended, ApiError> {
    let mut control = Control::new(VmmSettings::from_cli(&cli));
    let mut event_manager: EventLoop = EventManager::new().map_err(ApiError::EventLoop)?;
    let boot_now = cli.kernel.is_some();
    let config = boot_now.then(|| VmConfig::from_cli(cli)).transpose()?;
    let listener = socket.try_clone_listener().map_err(ApiError::Start)?;
    let ApiReceiver { requests, notify } = server::start(listener).map_err(ApiError::Start)?;
    event_manager.add_subscriber(Arc::new(Mutex::new(Wake(notify))));
    let _terminal = RawTerminal::enter();
    if let Some(config) = config {
        let vm = Vm::build(&config)?;
        control.create_from_cli(config);
        control.running = Some(vm.start(&mut event_manager)?);
    }
    log::info!("api: serving {}", socket.path().display());
    loop {
        if let Some(event) = control.guest_event() {
            return Ok(Ended::Guest(event));
        }
        event_manager.run().map_err(ApiError::EventLoop)?;
        control.finish_ejects(&mut event_manager);
        while let Ok(envelope) = requests.try_recv() {
            let (response, exit) = control.handle(envelope.request, &mut event_manager);
            if exit {
                let (done, flushed) = std::sync::mpsc::channel();
                let _ = envelope.reply.send(Reply {
                    response,
                    done: Some(done),
                });
                let _ = flushed.recv_timeout(SHUTDOWN_FLUSH);
                return Ok(Ended::VmmShutdown);
            }
            let _ = envelope.reply.send(Reply {
                response,
                done: None,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::types::CreateBody;

    fn control_with(json: &str) -> Control {
        let mut c = Control::new(VmmSettings::default());
        let body = CreateBody::parse(json.as_bytes()).expect("body");
        assert_eq!(c.create(&body).status, 204);
        c
    }

    #[test]
    fn reboot_keeps_hot_added_devices_after_the_boot_ones() {
        use crate::config::{DiskConfig, VfioConfig};
        use crate::device_manager::{HotKind, PlacedDevice, PlacedKind};
        let c = control_with(
            r#"{"payload": {"kernel": "/k"}, "disks": [{"path": "/d", "id": "root"}], "iommu": true}"#,
        );
        let mut created = c.created.expect("created");
        let disk = DiskConfig {
            path: "/hot.img".into(),
            read_only: true,
            iommu: true,
        };
        let map = arch::x86_64::plan::plan(
            &arch::plan::PlanInput::new(512 << 20),
            &arch::plan::HostConstraints::default(),
        )
        .expect("plan");
        let hot = |id: &str, kind| PlacedDevice {
            kind: PlacedKind::Hot {
                id: id.into(),
                kind,
            },
            bdf: 0x10,
        };
        let layout = crate::running::Layout {
            map,
            host: Default::default(),
            devices: vec![
                PlacedDevice {
                    kind: PlacedKind::Iommu,
                    bdf: 8,
                },
                hot(
                    "nic0",
                    HotKind::Vfio {
                        host: "0000:00:03.0".into(),
                        iommu: false,
                    },
                ),
                hot(
                    "hot0",
                    HotKind::Disk {
                        config: disk.clone(),
                        counters: Default::default(),
                    },
                ),
            ],
        };
        keep_hot_devices(&mut created, &layout);
        assert_eq!(created.ids.disks, ["root", "hot0"]);
        assert_eq!(created.ids.vfio, ["nic0"]);
        assert_eq!(created.config.disks[1], disk);
        assert_eq!(
            created.config.vfio,
            [VfioConfig {
                bdf: "0000:00:03.0".into(),
                iommu: false
            }]
        );
    }

    #[test]
    fn lifecycle_answers_without_a_vm() {
        let mut em: EventLoop = EventManager::new().expect("event manager");
        let mut c = Control::new(VmmSettings::default());
        let status = |c: &mut Control, em: &mut EventLoop, r| c.handle(r, em).0.status;
        assert_eq!(status(&mut c, &mut em, ApiRequest::VmmPing), 200);
        assert_eq!(status(&mut c, &mut em, ApiRequest::VmInfo), 404);
        assert_eq!(status(&mut c, &mut em, ApiRequest::VmBoot), 404);
        assert_eq!(status(&mut c, &mut em, ApiRequest::VmPlan), 404);
        let mut c = control_with(
            r#"{"payload": {"kernel": "/nonexistent/bzImage"}, "disks": [{"path": "/d", "id": "root"}]}"#,
        );
        let body = CreateBody::parse(br#"{"payload": {"kernel": "/k"}}"#).expect("body");
        assert_eq!(c.create(&body).status, 409);
        assert_eq!(status(&mut c, &mut em, ApiRequest::VmShutdown), 405);
        assert_eq!(status(&mut c, &mut em, ApiRequest::VmCounters), 405);
        let (info, exit) = c.handle(ApiRequest::VmInfo, &mut em);
        assert!(!exit);
        let info: serde_json::Value =
            serde_json::from_str(info.body.as_deref().expect("body")).expect("json");
        assert_eq!(info["state"], "Created");
        assert_eq!(info["config"]["disks"][0]["id"], "root");
        assert_eq!(info["config"]["memory"]["size"], 512u64 << 20);
        // Booting fails on the missing kernel, with the CLI's message.
        let (boot, _) = c.handle(ApiRequest::VmBoot, &mut em);
        assert_eq!(boot.status, 500);
        assert!(
            boot.body
                .as_deref()
                .is_some_and(|b| b.contains("/nonexistent/bzImage")),
            "{boot:?}"
        );
        assert_eq!(status(&mut c, &mut em, ApiRequest::VmDelete), 204);
        assert_eq!(status(&mut c, &mut em, ApiRequest::VmInfo), 404);
        assert_eq!(
            c.handle(ApiRequest::VmmShutdown, &mut em),
            (Response::empty(204), true)
        );
    }

    #[test]
    fn hotplug_refusals_are_4xx_and_a_missing_platform_501() {
        let status = |e: HotplugError| hotplug_failure(&e).status;
        assert_eq!(status(HotplugError::UnknownId("x".into())), 404);
        assert_eq!(status(HotplugError::IdInUse("x".into())), 409);
        assert_eq!(status(HotplugError::Ejecting("x".into())), 409);
        assert_eq!(status(HotplugError::HostInUse("b".into(), "x".into())), 409);
        assert_eq!(
            status(HotplugError::NoFreeSlot {
                pool: "behind the virtio-iommu",
                count: 4
            }),
            409
        );
        assert_eq!(status(HotplugError::NoIommu), 400);
        assert_eq!(status(HotplugError::Unsupported("arm64")), 501);
        let r = hotplug_failure(&HotplugError::UnknownId("nothere".into()));
        assert_eq!(
            r.body.as_deref(),
            Some(r#"["no device has id 'nothere': see vm.info for the ids"]"#)
        );
    }

    #[test]
    fn hotplug_needs_a_running_vm() {
        let mut em: EventLoop = EventManager::new().expect("event manager");
        let mut c = Control::new(VmmSettings::default());
        let disk =
            super::super::types::DiskBody::parse(br#"{"path": "/tmp/a.img"}"#).expect("body");
        let remove = super::super::types::RemoveBody::parse(br#"{"id": "a"}"#).expect("body");
        assert_eq!(
            c.handle(ApiRequest::VmAddDisk(disk.clone()), &mut em)
                .0
                .status,
            404
        );
        let mut c = control_with(r#"{"payload": {"kernel": "/k"}}"#);
        assert_eq!(c.handle(ApiRequest::VmAddDisk(disk), &mut em).0.status, 405);
        assert_eq!(
            c.handle(ApiRequest::VmRemoveDevice(remove), &mut em)
                .0
                .status,
            405
        );
    }

    #[test]
    fn duplicate_ids_conflict() {
        let mut c = Control::new(VmmSettings::default());
        let body = CreateBody::parse(
            br#"{"payload": {"kernel": "/k"}, "disks": [{"path": "/a", "id": "x"}], "devices": [{"path": "/s/0000:01:00.0", "id": "x"}]}"#,
        )
        .expect("body");
        let r = c.create(&body);
        assert_eq!(r.status, 409);
        assert!(r.body.is_some_and(|b| b.contains("'x' is used twice")));
    }
}
