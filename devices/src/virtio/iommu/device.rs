//! [`VirtioIommu`]: the `VirtioDevice` implementation. It owns the queues,
//! features and configuration space, drains the request queue, delivers
//! queued faults on the event queue, and hands out per-endpoint
//! translators.

use std::collections::BTreeSet;
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex, PoisonError};

use virtio_queue::Queue;
use vm_memory::{ByteValued, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};
use vmm_sys_util::eventfd::EventFd;

use super::apply::{self, Sides};
use super::dma::{DmaBackend, DmaError};
use super::domains::{DomainError, IommuState, Limits, ReservedRegion};
use super::event::{EventQueue, FaultDelivery, FaultQueue, DEFAULT_FAULT_BACKLOG};
use super::host::HostSpaces;
use super::mappings::DEFAULT_MAX_MAPPINGS;
use super::probe::required_probe_size;
use super::protocol::{
    Config, CONFIG_BYPASS_OFFSET, VIRTIO_IOMMU_F_BYPASS_CONFIG, VIRTIO_IOMMU_F_DOMAIN_RANGE,
    VIRTIO_IOMMU_F_INPUT_RANGE, VIRTIO_IOMMU_F_MAP_UNMAP, VIRTIO_IOMMU_F_MMIO,
    VIRTIO_IOMMU_F_PROBE,
};
use super::request::process_chain;
use super::state::StateLock;
use super::translate::EndpointIommu;
use super::Shared;
use crate::virtio::queue::DeviceQueue;
use crate::virtio::{ActivateError, VirtioDevice, VirtioInterrupt, VIRTIO_F_VERSION_1};
use crate::{GuestEvent, GuestEvents};

/// Virtio device ID of the IOMMU.
pub const DEVICE_TYPE: u32 = 23;
/// Index of the request queue.
pub const REQUEST_QUEUE: usize = 0;
/// Index of the event (fault) queue.
pub const EVENT_QUEUE: usize = 1;
/// Default size of each queue.
pub const DEFAULT_QUEUE_SIZE: u16 = 256;
/// Default `page_size_mask`: 4 KiB granule, any multiple mappable.
pub const DEFAULT_PAGE_SIZE_MASK: u64 = !0xfff;
/// Default `probe_size` (grown when an endpoint needs more).
pub const DEFAULT_PROBE_SIZE: u32 = 512;

/// Features this device offers.
const OFFERED_FEATURES: u64 = VIRTIO_F_VERSION_1
    | VIRTIO_IOMMU_F_INPUT_RANGE
    | VIRTIO_IOMMU_F_DOMAIN_RANGE
    | VIRTIO_IOMMU_F_MAP_UNMAP
    | VIRTIO_IOMMU_F_BYPASS_CONFIG
    | VIRTIO_IOMMU_F_PROBE
    | VIRTIO_IOMMU_F_MMIO;

/// Errors building the device or asking it for a translator.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `page_size_mask` has no bit set.
    #[error("page_size_mask must have at least one bit set")]
    NoPageSize,
    /// `input_range` or `domain_range` is empty.
    #[error("empty {0} range")]
    EmptyRange(&'static str),
    /// An endpoint ID is listed twice.
    #[error("endpoint {0} is listed twice")]
    DuplicateEndpoint(u32),
    /// A reserved region ends before it starts.
    #[error("endpoint {endpoint}: reserved region {start:#x}..={end:#x} is empty")]
    BadReservedRegion {
        /// Endpoint ID.
        endpoint: u32,
        /// First address.
        start: u64,
        /// Last address.
        end: u64,
    },
    /// An endpoint has more reserved regions than a PROBE can describe.
    #[error("endpoint {0} has too many reserved regions")]
    TooManyRegions(u32),
    /// Queue sizes must be non-zero powers of two.
    #[error("invalid queue size {0}")]
    QueueSize(u16),
    /// The endpoint is not behind this IOMMU.
    #[error("endpoint {0} is not behind this virtio-iommu")]
    UnknownEndpoint(u32),
    /// Creating the fault eventfd failed.
    #[error("cannot create the fault eventfd: {0}")]
    EventFd(#[source] std::io::Error),
    /// An assigned endpoint's host address space could not be set up
    /// (the identity map of boot bypass).
    #[error("cannot set up the host DMA mappings of endpoint {endpoint:#x}")]
    HostDma {
        /// Endpoint ID.
        endpoint: u32,
        /// Why.
        #[source]
        source: DmaError,
    },
    /// A hot-added assigned endpoint could not get its host address space.
    #[error("cannot give the hot-added endpoint {endpoint:#x} its host DMA mappings")]
    Assign {
        /// Endpoint ID.
        endpoint: u32,
        /// Why.
        #[source]
        source: DomainError,
    },
    /// A removed endpoint could not be detached from its domain.
    #[error("cannot detach the removed endpoint {endpoint:#x}")]
    Release {
        /// Endpoint ID.
        endpoint: u32,
        /// Why.
        #[source]
        source: DomainError,
    },
}

/// The host side of the assigned endpoints behind the IOMMU.
pub struct HostDma {
    /// The host IOMMU (VFIO).
    pub backend: Box<dyn DmaBackend>,
    /// The endpoints with a host address space (each must be in
    /// [`IommuConfig::endpoints`]).
    pub endpoints: Vec<u32>,
}

/// One endpoint behind the IOMMU.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointConfig {
    /// Endpoint ID (e.g. the PCI requester ID), as the firmware tables
    /// describe it to the guest.
    pub id: u32,
    /// Regions reported by PROBE and refused by MAP (e.g. the x86 MSI
    /// window as [`super::ReservedKind::Msi`], host reserved ranges as
    /// [`super::ReservedKind::Reserved`]).
    pub reserved: Vec<ReservedRegion>,
}

/// How to build a [`VirtioIommu`].
#[derive(Clone, Debug)]
pub struct IommuConfig {
    /// The endpoints behind the IOMMU.
    pub endpoints: Vec<EndpointConfig>,
    /// Supported page sizes; the lowest set bit is the map granule.
    pub page_size_mask: u64,
    /// IOVAs the guest may map.
    pub input_range: RangeInclusive<u64>,
    /// Valid domain IDs.
    pub domain_range: RangeInclusive<u32>,
    /// Mappings one domain may hold before MAP fails with DEVERR.
    pub max_mappings_per_domain: usize,
    /// Mappings all domains together may hold before MAP fails with DEVERR.
    pub max_mappings_total: usize,
    /// Minimum `probe_size`; grown to fit the largest endpoint's
    /// properties.
    pub probe_size: u32,
    /// Initial (and system-reset) value of the config `bypass` field:
    /// whether unattached endpoints may DMA untranslated.
    pub boot_bypass: bool,
    /// Undelivered faults kept while the event queue has no buffer.
    pub fault_backlog: usize,
    /// Maximum size of each queue.
    pub queue_size: u16,
}

impl Default for IommuConfig {
    fn default() -> Self {
        Self {
            endpoints: Vec::new(),
            page_size_mask: DEFAULT_PAGE_SIZE_MASK,
            input_range: 0..=u64::MAX,
            domain_range: 0..=u32::MAX,
            max_mappings_per_domain: DEFAULT_MAX_MAPPINGS,
            max_mappings_total: DEFAULT_MAX_MAPPINGS,
            probe_size: DEFAULT_PROBE_SIZE,
            boot_bypass: true,
            fault_backlog: DEFAULT_FAULT_BACKLOG,
            queue_size: DEFAULT_QUEUE_SIZE,
        }
    }
}

/// The virtio-iommu device.
pub struct VirtioIommu {
    shared: Arc<Shared>,
    mem: GuestMemoryMmap,
    host: Option<HostSpaces>,
    /// Told when the host DMA state is lost (the VM must stop).
    stop: Option<Arc<GuestEvents>>,
    lost_reported: bool,
    page_size_mask: u64,
    probe_size: u32,
    boot_bypass: bool,
    queue_sizes: [u16; 2],
    acked_features: u64,
    request_queue: Option<DeviceQueue>,
    /// The event queue, behind a lock of its own (see `event.rs`).
    events: Arc<Mutex<EventQueue>>,
    /// Set when a poller thread serves the request queue between kicks.
    poller: Option<Arc<super::PollSignal>>,
    /// Notifications are off because a poll window is open.
    polling: bool,
}

fn validate(config: &IommuConfig) -> Result<u32, Error> {
    if config.page_size_mask == 0 {
        return Err(Error::NoPageSize);
    }
    if config.input_range.is_empty() {
        return Err(Error::EmptyRange("input"));
    }
    if config.domain_range.is_empty() {
        return Err(Error::EmptyRange("domain"));
    }
    if config.queue_size == 0 || !config.queue_size.is_power_of_two() {
        return Err(Error::QueueSize(config.queue_size));
    }
    let mut seen = BTreeSet::new();
    let mut probe_size = config.probe_size;
    for ep in &config.endpoints {
        if !seen.insert(ep.id) {
            return Err(Error::DuplicateEndpoint(ep.id));
        }
        if let Some(r) = ep.reserved.iter().find(|r| r.end < r.start) {
            return Err(Error::BadReservedRegion {
                endpoint: ep.id,
                start: r.start,
                end: r.end,
            });
        }
        let needed = u32::try_from(required_probe_size(&ep.reserved))
            .map_err(|_| Error::TooManyRegions(ep.id))?;
        probe_size = probe_size.max(needed);
    }
    Ok(probe_size)
}

impl VirtioIommu {
    /// A device for `config`, its queues in `mem`, keeping the host address
    /// spaces of `host`'s endpoints in step with the guest's domains. With
    /// boot bypass, those get the identity map of `mem` here.
    pub fn new(
        config: IommuConfig,
        mem: GuestMemoryMmap,
        host: Option<HostDma>,
    ) -> Result<Self, Error> {
        let probe_size = validate(&config)?;
        if let Some(h) = &host {
            if let Some(&ep) = h
                .endpoints
                .iter()
                .find(|ep| !config.endpoints.iter().any(|e| e.id == **ep))
            {
                return Err(Error::UnknownEndpoint(ep));
            }
        }
        let limits = Limits {
            granule: 1 << config.page_size_mask.trailing_zeros(),
            input_start: *config.input_range.start(),
            input_end: *config.input_range.end(),
            domain_start: *config.domain_range.start(),
            domain_end: *config.domain_range.end(),
            max_mappings: config.max_mappings_per_domain,
            max_total_mappings: config.max_mappings_total,
        };
        let state = IommuState::new(
            config.endpoints.into_iter().map(|e| (e.id, e.reserved)),
            limits,
            config.boot_bypass,
        );
        let host = match host {
            Some(h) => {
                let ram: Vec<(u64, u64)> =
                    mem.iter().map(|r| (r.start_addr().0, r.len())).collect();
                let mut spaces = HostSpaces::new(h.backend, h.endpoints, &ram);
                spaces
                    .sync(&state)
                    .map_err(|(endpoint, source)| Error::HostDma { endpoint, source })?;
                Some(spaces)
            }
            None => None,
        };
        let faults = FaultQueue::new(config.fault_backlog).map_err(Error::EventFd)?;
        Ok(Self {
            shared: Arc::new(Shared {
                state: StateLock::new(state),
                faults,
            }),
            mem,
            host,
            stop: None,
            lost_reported: false,
            page_size_mask: config.page_size_mask,
            probe_size,
            boot_bypass: config.boot_bypass,
            queue_sizes: [config.queue_size; 2],
            acked_features: 0,
            request_queue: None,
            events: Arc::default(),
            poller: None,
            polling: false,
        })
    }

    /// The translator for `endpoint`'s DMA, to build its
    /// `IommuMemory<GuestMemoryMmap, EndpointIommu>`.
    pub fn translator(&self, endpoint: u32) -> Result<EndpointIommu, Error> {
        if !self.read_state(|s| s.has_endpoint(endpoint)) {
            return Err(Error::UnknownEndpoint(endpoint));
        }
        Ok(EndpointIommu::new(endpoint, self.shared.clone()))
    }

    /// Readable when faults wait for delivery: then call
    /// `process_queue(EVENT_QUEUE)`, or better [`FaultDelivery::deliver`].
    pub fn fault_eventfd(&self) -> &EventFd {
        self.shared.faults.eventfd()
    }

    /// A handle that delivers faults into the event queue without this
    /// device's lock (which the request path holds across host DMA calls).
    pub fn fault_delivery(&self) -> FaultDelivery {
        FaultDelivery {
            shared: self.shared.clone(),
            events: self.events.clone(),
            mem: self.mem.clone(),
        }
    }

    /// Faults lost because the backlog was full.
    pub fn dropped_faults(&self) -> u64 {
        self.shared.faults.dropped()
    }

    /// The `probe_size` advertised to the guest.
    pub fn probe_size(&self) -> u32 {
        self.probe_size
    }

    /// System (VM) reset: a device reset that also restores `bypass` to
    /// its boot value, which a device reset keeps (virtio 1.3 §5.13.4.1).
    pub fn system_reset(&mut self) {
        self.reset_to(Some(self.boot_bypass));
    }

    /// Where to raise [`GuestEvent::DeviceFailure`] if the host DMA state
    /// is lost (a host unmap failed and the address space could not even be
    /// emptied): the VM must not run on with DMA it cannot revoke.
    pub fn set_stop_events(&mut self, events: Arc<GuestEvents>) {
        self.stop = Some(events);
    }

    fn sides(&mut self) -> Sides<'_> {
        Sides {
            state: &self.shared.state,
            host: self.host.as_mut(),
        }
    }

    /// Raises the stop event once when the host DMA state was lost.
    fn report_lost(&mut self) {
        if self.lost_reported {
            return;
        }
        let Some(why) = self.host.as_ref().and_then(HostSpaces::lost) else {
            return;
        };
        self.lost_reported = true;
        let why = format!("virtio-iommu: host DMA mappings cannot be revoked: {why}");
        log::error!("{why}");
        if let Some(stop) = &self.stop {
            stop.raise(GuestEvent::DeviceFailure(why));
        }
    }

    fn reset_to(&mut self, bypass_after: Option<bool>) {
        apply::reset(&mut self.sides(), bypass_after);
        self.report_lost();
        self.shared.faults.clear();
        self.acked_features = 0;
        self.request_queue = None;
        *self.events.lock().unwrap_or_else(PoisonError::into_inner) = EventQueue::default();
        self.polling = false;
    }

    /// Checks the rule of `host.rs` against what the host really holds
    /// (`actual(endpoint)`, e.g. a [`super::testing::FakeDmaHandle`]): every
    /// assigned endpoint's address space equals what the virtual state
    /// gives it (nothing when quarantined). Skipped once the host state is
    /// lost.
    #[cfg(any(test, feature = "test-utils"))]
    pub fn check_host(
        &self,
        actual: &dyn Fn(u32) -> Vec<super::HostMapping>,
    ) -> Result<(), String> {
        let Some(host) = &self.host else {
            return Ok(());
        };
        if host.lost().is_some() {
            return Ok(());
        }
        let ram: Vec<(u64, u64)> = self
            .mem
            .iter()
            .map(|r| (r.start_addr().0, r.len()))
            .collect();
        self.read_state(|state| {
            for ep in host.endpoints() {
                let want =
                    super::testing::expected_host(state, &ram, ep, host.is_quarantined(ep));
                let got = actual(ep);
                if want != got {
                    return Err(format!(
                        "endpoint {ep:#x} (domain {:?}, bypass {}, quarantined {}): host holds {got:x?}, virtual state gives {want:x?}",
                        state.endpoint_domain(ep),
                        state.bypass(),
                        host.is_quarantined(ep)
                    ));
                }
            }
            Ok(())
        })
    }

    /// The device of `endpoint` left the machine (hot-removed): the endpoint
    /// is detached from its domain, as if the guest had sent DETACH, so
    /// that a device added later in its place starts unattached instead of
    /// in the address space of the one that left. Returns the domain it
    /// was attached to.
    pub fn release_endpoint(&mut self, endpoint: u32) -> Result<Option<u32>, Error> {
        if !self.read_state(|s| s.has_endpoint(endpoint)) {
            return Err(Error::UnknownEndpoint(endpoint));
        }
        let Some(domain) = self.read_state(|s| s.endpoint_domain(endpoint)) else {
            return Ok(None);
        };
        let result = apply::detach(&mut self.sides(), endpoint, domain);
        self.report_lost();
        match result {
            Ok(()) => Ok(Some(domain)),
            Err(e) => Err(Error::Release {
                endpoint,
                source: e,
            }),
        }
    }

    /// An assigned device was hot-added at `endpoint`, whose address space
    /// the DMA back-end now knows (empty): from now on the host holds what
    /// the virtual state gives the endpoint (the identity map while it is
    /// unattached and `bypass` is on, nothing while it is off), never more.
    pub fn assign_endpoint(&mut self, endpoint: u32) -> Result<(), Error> {
        let result = apply::assign(&mut self.sides(), endpoint);
        self.report_lost();
        result.map_err(|source| Error::Assign { endpoint, source })
    }

    /// The assigned device at `endpoint` left: its host address space is
    /// emptied and forgotten; the DMA back-end may drop it afterwards.
    pub fn unassign_endpoint(&mut self, endpoint: u32) {
        apply::unassign(&mut self.sides(), endpoint);
        self.report_lost();
    }

    /// Whether `endpoint` is quarantined after a host DMA failure.
    pub fn is_quarantined(&self, endpoint: u32) -> bool {
        self.host
            .as_ref()
            .is_some_and(|h| h.is_quarantined(endpoint))
    }

    /// Whether the host DMA state is lost (see `host.rs`).
    pub fn host_lost(&self) -> bool {
        self.host.as_ref().and_then(HostSpaces::lost).is_some()
    }

    fn read_state<T>(&self, f: impl FnOnce(&IommuState) -> T) -> T {
        f(&self.shared.state.read())
    }

    fn config(&self) -> Config {
        let (limits, bypass) = self.read_state(|s| (*s.limits(), s.bypass()));
        Config {
            page_size_mask: self.page_size_mask.into(),
            input_start: limits.input_start.into(),
            input_end: limits.input_end.into(),
            domain_start: limits.domain_start.into(),
            domain_end: limits.domain_end.into(),
            probe_size: self.probe_size.into(),
            bypass: u8::from(bypass),
            reserved: [0; 3],
        }
    }

    /// Lets a poller thread serve the request queue: after a kick,
    /// notifications stay off and `signal` is woken; the poller calls
    /// [`Self::poll_requests`] until its window passes, then
    /// [`Self::stop_polling`].
    pub fn set_poller(&mut self, signal: Arc<super::PollSignal>) {
        self.poller = Some(signal);
    }

    /// Processes what is available without touching notifications;
    /// returns whether anything was.
    pub fn poll_requests(&mut self) -> bool {
        if !self.polling {
            return false;
        }
        self.drain_requests(true)
    }

    /// Ends a poll window: notifications back on, and whatever slipped in
    /// meanwhile is processed.
    pub fn stop_polling(&mut self) {
        if !self.polling {
            return;
        }
        self.polling = false;
        self.drain_requests(false);
    }

    fn process_requests(&mut self) {
        // A kick while a window is open (one that raced with notifications
        // going off) keeps it open; otherwise the poller's adaptive window
        // says whether one opens.
        let open = match &self.poller {
            Some(_) if self.polling => false,
            Some(p) => self.request_queue.is_some() && p.wants_window(),
            None => false,
        };
        self.drain_requests(self.polling || open);
        if open {
            self.polling = true;
            if let Some(p) = &self.poller {
                p.wake();
            }
        }
    }

    /// Drains the request queue. With `poll`, notifications are left off
    /// (a poller watches); otherwise they are re-enabled, with the usual
    /// re-check for buffers that raced with that. A queue the driver broke
    /// (see [`DeviceQueue`]) is reported once and then left alone: this
    /// never retries.
    fn drain_requests(&mut self, poll: bool) -> bool {
        let Some(queue) = self.request_queue.as_mut() else {
            return false;
        };
        let mem = &self.mem;
        let acked = self.acked_features;
        let probe_size = self.probe_size as usize;
        let state = &self.shared.state;
        let host = &mut self.host;
        let used_any = queue.drain(mem, poll, |chain| {
            crate::perf::count(crate::perf::Counter::IommuRequests);
            let started = std::time::Instant::now();
            let len = process_chain(state, host.as_mut(), acked, probe_size, mem, chain);
            let ns = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
            crate::perf::add(crate::perf::Counter::IommuServiceNs, ns);
            len
        });
        if used_any {
            queue.notify_used(mem);
        }
        self.report_lost();
        used_any
    }
}

impl VirtioDevice for VirtioIommu {
    fn device_type(&self) -> u32 {
        DEVICE_TYPE
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &self.queue_sizes
    }

    fn device_features(&self) -> u64 {
        OFFERED_FEATURES
    }

    fn set_acked_features(&mut self, features: u64) {
        self.acked_features = features & OFFERED_FEATURES;
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        let config = self.config();
        let bytes = config.as_slice();
        for (i, out) in data.iter_mut().enumerate() {
            *out = usize::try_from(offset)
                .ok()
                .and_then(|o| o.checked_add(i))
                .and_then(|at| bytes.get(at))
                .copied()
                .unwrap_or(0);
        }
    }

    fn write_config(&mut self, offset: u64, data: &[u8]) {
        let negotiated = self.acked_features & VIRTIO_IOMMU_F_BYPASS_CONFIG != 0;
        match (offset, data) {
            (CONFIG_BYPASS_OFFSET, &[value @ (0 | 1)]) if negotiated => {
                if let Err(e) = apply::set_bypass(&mut self.sides(), value == 1) {
                    crate::guest_log!(
                        log::Level::Warn,
                        "virtio-iommu: bypass stays {}: {e}",
                        1 - value
                    );
                }
                self.report_lost();
            }
            _ => crate::guest_log!(
                log::Level::Debug,
                "virtio-iommu: ignoring config write of {} bytes at {offset:#x}",
                data.len()
            ),
        }
    }

    fn activate(
        &mut self,
        queues: Vec<(usize, Queue)>,
        interrupt: Arc<dyn VirtioInterrupt>,
    ) -> Result<(), ActivateError> {
        let mut request = None;
        let mut event = None;
        for (index, queue) in queues {
            let slot = match index {
                REQUEST_QUEUE => &mut request,
                EVENT_QUEUE => &mut event,
                _ => {
                    crate::guest_log!(
                        log::Level::Warn,
                        "virtio-iommu: ignoring unknown queue {index}"
                    );
                    continue;
                }
            };
            *slot = Some(DeviceQueue::new(
                "virtio-iommu",
                index,
                queue,
                self.acked_features,
                &self.mem,
                interrupt.clone(),
            )?);
        }
        let request = request.ok_or(ActivateError::MissingQueue(REQUEST_QUEUE))?;
        if event.is_none() {
            crate::guest_log!(
                log::Level::Warn,
                "virtio-iommu: no event queue, faults stay in the backlog"
            );
        }
        self.request_queue = Some(request);
        *self.events.lock().unwrap_or_else(PoisonError::into_inner) = EventQueue { queue: event };
        // Faults raised before the driver was ready go out now.
        self.fault_delivery().deliver();
        Ok(())
    }

    fn process_queue(&mut self, index: usize) {
        match index {
            REQUEST_QUEUE => {
                crate::perf::count(crate::perf::Counter::IommuKicks);
                self.process_requests()
            }
            EVENT_QUEUE => self.fault_delivery().deliver(),
            _ => crate::guest_log!(
                log::Level::Warn,
                "virtio-iommu: notification for unknown queue {index}"
            ),
        }
    }

    fn reset(&mut self) {
        self.reset_to(None);
    }
}
