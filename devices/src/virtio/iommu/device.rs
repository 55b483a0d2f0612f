//! [`VirtioIommu`]: the `VirtioDevice` implementation. It owns the queues,
//! features and configuration space, drains the request queue, delivers
//! queued faults on the event queue, and hands out per-endpoint
//! translators.

use std::collections::BTreeSet;
use std::ops::RangeInclusive;
use std::sync::{Arc, PoisonError, RwLock};

use virtio_queue::{DescriptorChain, Queue, Writer};
use vm_memory::{ByteValued, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;

use super::dma::DmaBackend;
use super::domains::{IommuState, Limits, ReservedRegion};
use super::event::{FaultQueue, DEFAULT_FAULT_BACKLOG};
use super::mappings::DEFAULT_MAX_MAPPINGS;
use super::probe::required_probe_size;
use super::protocol::{
    Config, FaultRecord, CONFIG_BYPASS_OFFSET, VIRTIO_IOMMU_F_BYPASS_CONFIG,
    VIRTIO_IOMMU_F_DOMAIN_RANGE, VIRTIO_IOMMU_F_INPUT_RANGE, VIRTIO_IOMMU_F_MAP_UNMAP,
    VIRTIO_IOMMU_F_MMIO, VIRTIO_IOMMU_F_PROBE,
};
use super::request::process_chain;
use super::translate::EndpointIommu;
use super::Shared;
use crate::virtio::queue::DeviceQueue;
use crate::virtio::{ActivateError, VirtioDevice, VirtioInterrupt, VIRTIO_F_VERSION_1};

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
    backend: Option<Box<dyn DmaBackend>>,
    page_size_mask: u64,
    probe_size: u32,
    boot_bypass: bool,
    queue_sizes: [u16; 2],
    acked_features: u64,
    request_queue: Option<DeviceQueue>,
    event_queue: Option<DeviceQueue>,
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
    /// A device for `config`, its queues in `mem`, mirroring domain changes
    /// into `backend` when there is one.
    pub fn new(
        config: IommuConfig,
        mem: GuestMemoryMmap,
        backend: Option<Box<dyn DmaBackend>>,
    ) -> Result<Self, Error> {
        let probe_size = validate(&config)?;
        let limits = Limits {
            granule: 1 << config.page_size_mask.trailing_zeros(),
            input_start: *config.input_range.start(),
            input_end: *config.input_range.end(),
            domain_start: *config.domain_range.start(),
            domain_end: *config.domain_range.end(),
            max_mappings: config.max_mappings_per_domain,
        };
        let state = IommuState::new(
            config.endpoints.into_iter().map(|e| (e.id, e.reserved)),
            limits,
            config.boot_bypass,
        );
        let faults = FaultQueue::new(config.fault_backlog).map_err(Error::EventFd)?;
        Ok(Self {
            shared: Arc::new(Shared {
                state: RwLock::new(state),
                faults,
            }),
            mem,
            backend,
            page_size_mask: config.page_size_mask,
            probe_size,
            boot_bypass: config.boot_bypass,
            queue_sizes: [config.queue_size; 2],
            acked_features: 0,
            request_queue: None,
            event_queue: None,
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
    /// `process_queue(EVENT_QUEUE)`.
    pub fn fault_eventfd(&self) -> &EventFd {
        self.shared.faults.eventfd()
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
        self.reset();
        let bypass = self.boot_bypass;
        self.write_state(|s| s.set_bypass(bypass));
    }

    fn read_state<T>(&self, f: impl FnOnce(&IommuState) -> T) -> T {
        f(&self
            .shared
            .state
            .read()
            .unwrap_or_else(PoisonError::into_inner))
    }

    fn write_state<T>(&self, f: impl FnOnce(&mut IommuState) -> T) -> T {
        f(&mut self
            .shared
            .state
            .write()
            .unwrap_or_else(PoisonError::into_inner))
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
        let keep_polling = self.poller.is_some();
        self.drain_requests(keep_polling);
        if keep_polling && !self.polling && self.request_queue.is_some() {
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
        let backend = &mut self.backend;
        let used_any = queue.drain(mem, poll, |chain| {
            process_chain(
                state,
                backend.as_mut().map(|b| &mut **b as &mut dyn DmaBackend),
                acked,
                probe_size,
                mem,
                chain,
            )
        });
        if used_any {
            queue.notify_used(mem);
        }
        used_any
    }

    fn deliver_faults(&mut self) {
        let faults = &self.shared.faults;
        faults.clear_signal();
        let Some(queue) = self.event_queue.as_mut() else {
            return;
        };
        let mem = &self.mem;
        let mut used_any = false;
        while let Some(fault) = faults.pop() {
            let Some(chain) = queue.pop(mem) else {
                // No buffer (or a broken queue): keep it until the driver
                // adds some and kicks, or resets the device.
                faults.unpop(fault);
                break;
            };
            let head = chain.head_index();
            let len = write_fault(mem, chain, fault.record());
            if len == 0 {
                faults.unpop(fault);
            }
            queue.add_used(mem, head, len);
            used_any = true;
        }
        if used_any {
            queue.notify_used(mem);
        }
    }
}

/// Writes one fault record into an event buffer; returns the used length
/// (0 when the buffer cannot hold a record).
fn write_fault(
    mem: &GuestMemoryMmap,
    chain: DescriptorChain<&GuestMemoryMmap>,
    record: FaultRecord,
) -> u32 {
    let mut writer = match Writer::new(mem, chain) {
        Ok(w) => w,
        Err(e) => {
            crate::guest_log!(log::Level::Warn, "virtio-iommu: bad event buffer: {e}");
            return 0;
        }
    };
    if writer.available_bytes() < std::mem::size_of::<FaultRecord>() {
        crate::guest_log!(
            log::Level::Warn,
            "virtio-iommu: event buffer too small for a fault record"
        );
        return 0;
    }
    if let Err(e) = writer.write_obj(record) {
        crate::guest_log!(
            log::Level::Warn,
            "virtio-iommu: cannot write fault record: {e}"
        );
    }
    u32::try_from(writer.bytes_written()).unwrap_or(0)
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
                self.write_state(|s| s.set_bypass(value == 1));
            }
            _ => log::debug!(
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
        self.event_queue = event;
        // Faults raised before the driver was ready go out now.
        self.deliver_faults();
        Ok(())
    }

    fn process_queue(&mut self, index: usize) {
        match index {
            REQUEST_QUEUE => self.process_requests(),
            EVENT_QUEUE => self.deliver_faults(),
            _ => crate::guest_log!(
                log::Level::Warn,
                "virtio-iommu: notification for unknown queue {index}"
            ),
        }
    }

    fn reset(&mut self) {
        let backend = self
            .backend
            .as_mut()
            .map(|b| &mut **b as &mut dyn DmaBackend);
        self.shared
            .state
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .reset(backend);
        self.shared.faults.clear();
        self.acked_features = 0;
        self.request_queue = None;
        self.event_queue = None;
        self.polling = false;
    }
}
