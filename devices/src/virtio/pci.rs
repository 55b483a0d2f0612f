//! The virtio-pci modern transport (virtio 1.x, section 4.1): PCI
//! identification, the vendor capabilities (common, notify, ISR, device
//! and the `PCI_CFG` window in configuration space), and BAR 0 holding the
//! common configuration, ISR, device configuration, notification area and
//! the MSI-X table and PBA.
//!
//! Driver mistakes (features never offered, bad queue sizes, zero or
//! misaligned ring addresses, out-of-order status) are refused without
//! touching the device: the status gets DEVICE_NEEDS_RESET or the write is
//! ignored, and a rate-limited line is logged. A queue the device reports
//! broken sets DEVICE_NEEDS_RESET, raises a configuration interrupt and is
//! no longer served until the driver resets the device.

use std::sync::{Arc, Mutex};

use virtio_queue::{Queue, QueueT};
use vm_memory::GuestAddress;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::{VirtioDevice, VirtioInterrupt, VIRTIO_F_VERSION_1};
use crate::pci::config::{BarKind, PciConfiguration, PciIds};
use crate::pci::msix::{MsixConfig, MsixInterrupts, MSIX_CAP_ID};
use crate::pci::{BarRegion, PciDevice};
use cfg_window::CfgWindow;
use signals::Signals;

/// Virtio's PCI vendor ID.
pub const VIRTIO_PCI_VENDOR: u16 = 0x1af4;
/// Modern device IDs are 0x1040 + the virtio device type.
pub const VIRTIO_PCI_DEVICE_BASE: u16 = 0x1040;
/// "No MSI-X vector" in the common configuration.
pub const NO_VECTOR: u16 = 0xffff;

const CAP_VENDOR: u8 = 0x09;
const CFG_COMMON: u8 = 1;
const CFG_NOTIFY: u8 = 2;
const CFG_ISR: u8 = 3;
const CFG_DEVICE: u8 = 4;

/// BAR 0 layout.
const BAR_INDEX: usize = 0;
/// Size of BAR 0.
pub const BAR_SIZE: u64 = 0x4000;
const COMMON_OFFSET: u64 = 0x0000;
const COMMON_SIZE: u64 = 0x40;
const ISR_OFFSET: u64 = 0x0800;
const ISR_SIZE: u64 = 4;
const DEVICE_CFG_OFFSET: u64 = 0x1000;
const DEVICE_CFG_SIZE: u64 = 0x1000;
const NOTIFY_OFFSET: u64 = 0x2000;
const NOTIFY_SIZE: u64 = 0x1000;
/// Bytes between two queues' notification addresses.
pub const NOTIFY_MULTIPLIER: u32 = 4;
/// BAR holding the notify registers in [`NotifyMode::InVcpuPort`].
const IO_NOTIFY_BAR: usize = 2;
const MSIX_TABLE_OFFSET: u64 = 0x3000;
const MSIX_PBA_OFFSET: u64 = 0x3800;
/// Most MSI-X vectors a device gets (table must fit below the PBA).
const MAX_VECTORS: u16 = ((MSIX_PBA_OFFSET - MSIX_TABLE_OFFSET) / 16) as u16;

/// Device status: the guest found the device.
pub const STATUS_ACKNOWLEDGE: u8 = 1;
/// Device status: the guest has a driver for it.
pub const STATUS_DRIVER: u8 = 2;
/// Device status: the driver is ready; queues are live.
pub const STATUS_DRIVER_OK: u8 = 4;
/// Device status: feature negotiation is complete.
pub const STATUS_FEATURES_OK: u8 = 8;
/// Device status: the device hit an error and needs a reset.
pub const STATUS_NEEDS_RESET: u8 = 0x40;

/// Where notifications are handled.
pub enum NotifyMode {
    /// In the vCPU thread that wrote the notify register in BAR 0.
    InVcpu,
    /// In the vCPU thread, with the notify registers in an I/O BAR (BAR 2)
    /// at this port: a port write exits without the instruction decoding
    /// an MMIO exit needs, which matters most under nested virtualization.
    /// Used for the virtio-iommu, whose driver busy-waits on each reply.
    InVcpuPort(u16),
    /// Through ioeventfds the VMM registers with KVM and serves from its
    /// event loop.
    Ioeventfd(Arc<dyn IoEventRegistry>),
}

/// Registers MMIO ioeventfds with the hypervisor.
pub trait IoEventRegistry: Send + Sync {
    /// Signal `fd` on writes to `addr` (instead of exiting to the VMM).
    fn register(&self, addr: u64, fd: &EventFd) -> std::io::Result<()>;
    /// Undo [`IoEventRegistry::register`].
    fn unregister(&self, addr: u64, fd: &EventFd) -> std::io::Result<()>;
}

/// Errors creating the transport.
#[derive(Debug, thiserror::Error)]
pub enum VirtioPciError {
    /// PCI configuration set-up failed.
    #[error("cannot build the PCI configuration space")]
    Config(#[from] crate::pci::PciConfigError),
    /// An eventfd could not be created or registered.
    #[error("cannot set up queue notification eventfds")]
    IoEvent(#[source] std::io::Error),
}

#[derive(Clone, Copy, Debug)]
struct QueueSetup {
    max_size: u16,
    size: u16,
    enabled: bool,
    desc: u64,
    driver: u64,
    device: u64,
}

impl QueueSetup {
    fn new(max_size: u16) -> Self {
        Self {
            max_size,
            size: max_size,
            enabled: false,
            desc: 0,
            driver: 0,
            device: 0,
        }
    }
}

/// Driver-visible transport state (the common configuration).
struct CommonConfig {
    device_feature_select: u32,
    driver_feature_select: u32,
    driver_features: u64,
    /// The status bits the driver set (DEVICE_NEEDS_RESET lives in
    /// [`Signals`]).
    status: u8,
    queue_select: u16,
    queues: Vec<QueueSetup>,
}

impl CommonConfig {
    fn new(max_sizes: &[u16]) -> Self {
        Self {
            device_feature_select: 0,
            driver_feature_select: 0,
            driver_features: 0,
            status: 0,
            queue_select: 0,
            queues: max_sizes.iter().map(|m| QueueSetup::new(*m)).collect(),
        }
    }

    fn selected(&mut self) -> Option<&mut QueueSetup> {
        self.queues.get_mut(usize::from(self.queue_select))
    }
}

/// A virtio device on PCI.
pub struct VirtioPciDevice {
    config: PciConfiguration,
    device: Arc<Mutex<dyn VirtioDevice>>,
    device_features: u64,
    common: CommonConfig,
    signals: Arc<Signals>,
    msix_cap_offset: usize,
    cfg_window: CfgWindow,
    activated: bool,
    /// Where BAR 0 decodes, with the queue ioeventfds registered there.
    ioevents_at: Option<u64>,
    notify: NotifyMode,
    queue_events: Vec<EventFd>,
}

fn class_of(device_type: u32) -> (u8, u8, u8) {
    match device_type {
        2 => (0x01, 0x00, 0x00),  // mass storage (SCSI-compatible, as others report)
        23 => (0x08, 0x06, 0x00), // base system peripheral: IOMMU
        _ => (0xff, 0x00, 0x00),
    }
}

fn vendor_cap(bar: usize, cfg_type: u8, offset: u64, length: u64, extra: Option<u32>) -> Vec<u8> {
    let cap_len = if extra.is_some() { 20u8 } else { 16u8 };
    let mut body = vec![cap_len, cfg_type, bar as u8, 0, 0, 0];
    body.extend_from_slice(&(offset as u32).to_le_bytes());
    body.extend_from_slice(&(length as u32).to_le_bytes());
    if let Some(x) = extra {
        body.extend_from_slice(&x.to_le_bytes());
    }
    body
}

impl VirtioPciDevice {
    /// Wraps `device` with BAR 0 at `bar_addr` (64-bit, naturally aligned
    /// to [`BAR_SIZE`]), MSI-X delivered through `interrupts`.
    pub fn new(
        device: Arc<Mutex<dyn VirtioDevice>>,
        bar_addr: u64,
        interrupts: Arc<dyn MsixInterrupts>,
        notify: NotifyMode,
    ) -> Result<Self, VirtioPciError> {
        let (device_type, max_sizes, device_features) = {
            let d = device.lock().unwrap_or_else(|p| p.into_inner());
            (
                d.device_type(),
                d.queue_max_sizes().to_vec(),
                d.device_features(),
            )
        };
        let mut config = PciConfiguration::new(PciIds {
            vendor: VIRTIO_PCI_VENDOR,
            device: VIRTIO_PCI_DEVICE_BASE + device_type as u16,
            class: class_of(device_type),
            revision: 1,
            subsystem_vendor: VIRTIO_PCI_VENDOR,
            subsystem: 0x1100,
        });
        config.add_bar(BAR_INDEX, BarKind::Mem64, bar_addr, BAR_SIZE, false)?;
        config.add_capability(
            CAP_VENDOR,
            &vendor_cap(BAR_INDEX, CFG_COMMON, COMMON_OFFSET, COMMON_SIZE, None),
        )?;
        let notify_cap = match notify {
            NotifyMode::InVcpuPort(port) => {
                let size = Self::io_notify_size(max_sizes.len());
                config.add_bar(IO_NOTIFY_BAR, BarKind::Io, u64::from(port), size, false)?;
                vendor_cap(IO_NOTIFY_BAR, CFG_NOTIFY, 0, size, Some(NOTIFY_MULTIPLIER))
            }
            _ => vendor_cap(
                BAR_INDEX,
                CFG_NOTIFY,
                NOTIFY_OFFSET,
                NOTIFY_SIZE,
                Some(NOTIFY_MULTIPLIER),
            ),
        };
        config.add_capability(CAP_VENDOR, &notify_cap)?;
        config.add_capability(
            CAP_VENDOR,
            &vendor_cap(BAR_INDEX, CFG_ISR, ISR_OFFSET, ISR_SIZE, None),
        )?;
        config.add_capability(
            CAP_VENDOR,
            &vendor_cap(
                BAR_INDEX,
                CFG_DEVICE,
                DEVICE_CFG_OFFSET,
                DEVICE_CFG_SIZE,
                None,
            ),
        )?;
        let vectors = (max_sizes.len() as u16 + 1).min(MAX_VECTORS);
        let msix = MsixConfig::new(vectors, interrupts);
        let body = msix.capability_body(
            BAR_INDEX as u8,
            MSIX_TABLE_OFFSET as u32,
            BAR_INDEX as u8,
            MSIX_PBA_OFFSET as u32,
        );
        let msix_cap_offset = config.add_capability(MSIX_CAP_ID, &body)?;
        let cfg_cap = config.add_capability(CAP_VENDOR, &cfg_window::body())?;
        let cfg_window = CfgWindow::new(&mut config, cfg_cap);
        let queues = max_sizes.len();

        // Registered with the hypervisor while BAR 0 decodes (bar_mapped).
        let mut queue_events = Vec::new();
        if let NotifyMode::Ioeventfd(_) = &notify {
            for _ in 0..max_sizes.len() {
                queue_events.push(EventFd::new(EFD_NONBLOCK).map_err(VirtioPciError::IoEvent)?);
            }
        }
        Ok(Self {
            config,
            device,
            device_features,
            common: CommonConfig::new(&max_sizes),
            signals: Arc::new(Signals::new(Arc::new(Mutex::new(msix)), queues)),
            msix_cap_offset,
            cfg_window,
            activated: false,
            ioevents_at: None,
            notify,
            queue_events,
        })
    }

    /// Size of the I/O notify BAR for `queues` queues (a power of two).
    fn io_notify_size(queues: usize) -> u64 {
        (queues as u64 * u64::from(NOTIFY_MULTIPLIER))
            .next_power_of_two()
            .max(4)
    }

    fn notify_addr(bar_addr: u64, queue: usize) -> u64 {
        bar_addr + NOTIFY_OFFSET + queue as u64 * u64::from(NOTIFY_MULTIPLIER)
    }

    /// The ioeventfd of each queue (empty in [`NotifyMode::InVcpu`]); the
    /// VMM's event loop calls the device's `process_queue` when one fires.
    pub fn queue_eventfds(&self) -> std::io::Result<Vec<(usize, EventFd)>> {
        self.queue_events
            .iter()
            .enumerate()
            .map(|(i, fd)| Ok((i, fd.try_clone()?)))
            .collect()
    }

    /// The device model behind this transport.
    pub fn device(&self) -> Arc<Mutex<dyn VirtioDevice>> {
        self.device.clone()
    }

    fn lock_device(&self) -> std::sync::MutexGuard<'_, dyn VirtioDevice + 'static> {
        self.device.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn reset(&mut self) {
        self.lock_device().reset();
        self.common = CommonConfig::new(
            &self
                .common
                .queues
                .iter()
                .map(|q| q.max_size)
                .collect::<Vec<_>>(),
        );
        self.signals.reset();
        self.activated = false;
    }

    fn set_status(&mut self, value: u8) {
        if value == 0 {
            self.reset();
            return;
        }
        // DEVICE_NEEDS_RESET is the device's to set: a driver writing back
        // what it read does not change it.
        let value = value & !STATUS_NEEDS_RESET;
        let old = self.common.status;
        if value & old != old {
            crate::guest_log!(
                log::Level::Warn,
                "virtio-pci: driver cleared status bits ({old:#x} -> {value:#x}); ignored"
            );
            return;
        }
        let mut new = value;
        if new & STATUS_FEATURES_OK != 0 && old & STATUS_FEATURES_OK == 0 {
            let acked = self.common.driver_features;
            if acked & !self.device_features != 0 || acked & VIRTIO_F_VERSION_1 == 0 {
                crate::guest_log!(
                    log::Level::Warn,
                    "virtio-pci: driver accepted features {acked:#x} outside {:#x} or without VERSION_1",
                    self.device_features
                );
                new &= !STATUS_FEATURES_OK;
            } else {
                self.lock_device().set_acked_features(acked);
            }
        }
        let mut failed = false;
        if new & STATUS_DRIVER_OK != 0 && !self.activated && !self.signals.needs_reset() {
            if new & STATUS_FEATURES_OK == 0 {
                crate::guest_log!(
                    log::Level::Warn,
                    "virtio-pci: DRIVER_OK without FEATURES_OK"
                );
                failed = true;
            } else if let Err(e) = self.activate() {
                crate::guest_log!(
                    log::Level::Warn,
                    "virtio-pci: cannot activate the device: {e}"
                );
                failed = true;
            }
        }
        self.common.status = new;
        if failed {
            self.signals.set_needs_reset();
        }
    }

    fn activate(&mut self) -> Result<(), String> {
        let event_idx = self.common.driver_features
            & (1 << virtio_bindings::virtio_ring::VIRTIO_RING_F_EVENT_IDX)
            != 0;
        let mut queues = Vec::new();
        for (i, setup) in self.common.queues.iter().enumerate() {
            if !setup.enabled {
                continue;
            }
            // Address 0 is never a ring a driver allocated (and virtio-queue
            // treats an available ring there as "not ready").
            if setup.desc == 0 || setup.driver == 0 || setup.device == 0 {
                return Err(format!("queue {i} has a ring at address 0"));
            }
            let mut q = Queue::new(setup.max_size).map_err(|e| format!("queue {i}: {e:?}"))?;
            q.try_set_size(setup.size)
                .map_err(|e| format!("queue {i} size {}: {e:?}", setup.size))?;
            q.try_set_desc_table_address(GuestAddress(setup.desc))
                .map_err(|e| format!("queue {i} descriptor table {:#x}: {e:?}", setup.desc))?;
            q.try_set_avail_ring_address(GuestAddress(setup.driver))
                .map_err(|e| format!("queue {i} driver area {:#x}: {e:?}", setup.driver))?;
            q.try_set_used_ring_address(GuestAddress(setup.device))
                .map_err(|e| format!("queue {i} device area {:#x}: {e:?}", setup.device))?;
            q.set_event_idx(event_idx);
            q.set_ready(true);
            queues.push((i, q));
        }
        let interrupt: Arc<dyn VirtioInterrupt> = self.signals.clone();
        self.lock_device()
            .activate(queues, interrupt)
            .map_err(|e| e.to_string())?;
        self.activated = true;
        Ok(())
    }

    fn valid_vector(&self, v: u16) -> u16 {
        let vectors = self.signals.msix().vectors();
        if v < vectors {
            v
        } else {
            NO_VECTOR
        }
    }

    fn read_common(&mut self, offset: u64, data: &mut [u8]) {
        let c = &self.common;
        let q = c.queues.get(usize::from(c.queue_select)).copied();
        let status = c.status
            | if self.signals.needs_reset() {
                STATUS_NEEDS_RESET
            } else {
                0
            };
        let value: u64 = match (offset, data.len()) {
            (0x00, 4) => u64::from(c.device_feature_select),
            (0x04, 4) => match c.device_feature_select {
                0 => self.device_features & 0xffff_ffff,
                1 => self.device_features >> 32,
                _ => 0,
            },
            (0x08, 4) => u64::from(c.driver_feature_select),
            (0x0c, 4) => match c.driver_feature_select {
                0 => c.driver_features & 0xffff_ffff,
                1 => c.driver_features >> 32,
                _ => 0,
            },
            (0x10, 2) => u64::from(self.signals.config_vector()),
            (0x12, 2) => c.queues.len() as u64,
            (0x14, 1) => u64::from(status),
            (0x15, 1) => 0,
            (0x16, 2) => u64::from(c.queue_select),
            (0x18, 2) => q.map_or(0, |q| u64::from(q.size)),
            (0x1a, 2) => u64::from(self.signals.queue_vector(usize::from(c.queue_select))),
            (0x1c, 2) => q.map_or(0, |q| u64::from(q.enabled)),
            (0x1e, 2) => u64::from(c.queue_select),
            (0x20 | 0x28 | 0x30, 8) => q.map_or(0, |q| Self::queue_addr(&q, offset)),
            (0x20 | 0x28 | 0x30, 4) => q.map_or(0, |q| Self::queue_addr(&q, offset) & 0xffff_ffff),
            (0x24 | 0x2c | 0x34, 4) => q.map_or(0, |q| Self::queue_addr(&q, offset - 4) >> 32),
            _ => 0,
        };
        let bytes = value.to_le_bytes();
        let n = data.len().min(bytes.len());
        data[..n].copy_from_slice(&bytes[..n]);
    }

    fn queue_addr(q: &QueueSetup, offset: u64) -> u64 {
        match offset {
            0x20 => q.desc,
            0x28 => q.driver,
            _ => q.device,
        }
    }

    fn write_common(&mut self, offset: u64, data: &[u8]) {
        let mut bytes = [0u8; 8];
        let Some(dst) = bytes.get_mut(..data.len()) else {
            return;
        };
        dst.copy_from_slice(data);
        let value = u64::from_le_bytes(bytes);
        let queue_config_open = self.common.status & STATUS_DRIVER_OK == 0;
        match (offset, data.len()) {
            (0x00, 4) => self.common.device_feature_select = value as u32,
            (0x08, 4) => self.common.driver_feature_select = value as u32,
            (0x0c, 4) => {
                if self.common.status & STATUS_FEATURES_OK != 0 {
                    crate::guest_log!(
                        log::Level::Warn,
                        "virtio-pci: feature write after FEATURES_OK ignored"
                    );
                    return;
                }
                let f = &mut self.common.driver_features;
                match self.common.driver_feature_select {
                    0 => *f = (*f & !0xffff_ffff) | value,
                    1 => *f = (*f & 0xffff_ffff) | (value << 32),
                    _ => {}
                }
            }
            (0x10, 2) => self
                .signals
                .set_config_vector(self.valid_vector(value as u16)),
            (0x14, 1) => self.set_status(value as u8),
            (0x16, 2) => self.common.queue_select = value as u16,
            (0x18, 2) if queue_config_open => {
                if let Some(q) = self.common.selected() {
                    let size = value as u16;
                    if size.is_power_of_two() && size <= q.max_size {
                        q.size = size;
                    } else {
                        crate::guest_log!(
                            log::Level::Warn,
                            "virtio-pci: queue size {size} refused (max {})",
                            q.max_size
                        );
                    }
                }
            }
            // Takes effect at once, DRIVER_OK or not: the vector is looked
            // up when the interrupt is raised.
            (0x1a, 2) => {
                let vector = self.valid_vector(value as u16);
                self.signals
                    .set_queue_vector(usize::from(self.common.queue_select), vector);
            }
            (0x1c, 2) if queue_config_open => {
                if let Some(q) = self.common.selected() {
                    q.enabled |= value == 1;
                }
            }
            (0x20 | 0x28 | 0x30, 8) if queue_config_open => {
                self.set_queue_addr(offset, value, None)
            }
            (0x20 | 0x28 | 0x30, 4) if queue_config_open => {
                self.set_queue_addr(offset, value, Some(false))
            }
            (0x24 | 0x2c | 0x34, 4) if queue_config_open => {
                self.set_queue_addr(offset - 4, value, Some(true))
            }
            _ => log::debug!(
                "virtio-pci: common config write {offset:#x}/{} ignored",
                data.len()
            ),
        }
    }

    fn set_queue_addr(&mut self, field: u64, value: u64, half: Option<bool>) {
        let Some(q) = self.common.selected() else {
            return;
        };
        let slot = match field {
            0x20 => &mut q.desc,
            0x28 => &mut q.driver,
            _ => &mut q.device,
        };
        *slot = match half {
            None => value,
            Some(false) => (*slot & !0xffff_ffff) | (value & 0xffff_ffff),
            Some(true) => (*slot & 0xffff_ffff) | (value << 32),
        };
    }

    /// The driver notified `queue`: run it here (if it is live and not
    /// broken).
    fn notify_queue(&mut self, queue: usize) {
        let live = self.common.queues.get(queue).is_some_and(|q| q.enabled)
            && !self.signals.is_broken(queue);
        if self.activated && live {
            self.lock_device().process_queue(queue);
        }
    }

    fn msix_cap_reg(&self) -> usize {
        self.msix_cap_offset / 4
    }

    /// The size of BAR `bar` of this device (0: none).
    fn bar_size(&self, bar: usize) -> u64 {
        match (bar, &self.notify) {
            (BAR_INDEX, _) => BAR_SIZE,
            (IO_NOTIFY_BAR, NotifyMode::InVcpuPort(_)) => {
                Self::io_notify_size(self.common.queues.len())
            }
            _ => 0,
        }
    }

    /// The BAR access the `PCI_CFG` window selects, if well formed.
    fn window_access(&self) -> Option<cfg_window::WindowAccess> {
        self.cfg_window
            .access(&self.config, |bar| self.bar_size(bar))
    }
}

impl PciDevice for VirtioPciDevice {
    fn read_config_register(&mut self, reg: usize) -> u32 {
        let value = self.config.read_reg(reg);
        if reg == self.msix_cap_reg() {
            let ctl = self.signals.msix().control();
            return (value & 0xffff) | (u32::from(ctl) << 16);
        }
        if self.cfg_window.is_data(reg) {
            let mut read = [0u8; 4];
            if let Some(a) = self.window_access() {
                self.read_bar(a.bar, a.offset, &mut read[..a.len]);
            }
            return self.cfg_window.read_data(read);
        }
        value
    }

    fn write_config_register(&mut self, reg: usize, offset: u64, data: &[u8]) {
        if self.cfg_window.is_data(reg) {
            let bytes = self.cfg_window.write_data(offset, data);
            if let Some(a) = self.window_access() {
                self.write_bar(a.bar, a.offset, &bytes[..a.len]);
            }
            return;
        }
        if reg == self.msix_cap_reg() {
            // Message control is the upper half of the capability's first dword.
            let ctl = match (offset, data) {
                (2, [lo, hi]) => Some(u16::from_le_bytes([*lo, *hi])),
                (3, [hi]) => Some(u16::from_le_bytes([0, *hi])),
                (0, [_, _, lo, hi]) => Some(u16::from_le_bytes([*lo, *hi])),
                _ => None,
            };
            if let Some(ctl) = ctl {
                self.signals.msix().set_control(ctl);
            }
            return;
        }
        self.config.write_reg(reg, offset, data);
    }

    fn bar_regions(&self) -> Vec<BarRegion> {
        self.config.bar_regions()
    }

    fn bar_mapped(&mut self, region: BarRegion) {
        if region.index != BAR_INDEX || region.io || self.ioevents_at.is_some() {
            return;
        }
        if let NotifyMode::Ioeventfd(registry) = &self.notify {
            for (q, fd) in self.queue_events.iter().enumerate() {
                if let Err(e) = registry.register(Self::notify_addr(region.addr, q), fd) {
                    // The notification still arrives, as a trapped write.
                    crate::guest_log!(
                        log::Level::Warn,
                        "virtio-pci: cannot register queue {q} ioeventfd at {:#x}: {e}",
                        Self::notify_addr(region.addr, q)
                    );
                }
            }
            self.ioevents_at = Some(region.addr);
        }
    }

    fn bar_unmapped(&mut self, region: BarRegion) {
        if region.index != BAR_INDEX || self.ioevents_at != Some(region.addr) {
            return;
        }
        if let NotifyMode::Ioeventfd(registry) = &self.notify {
            for (q, fd) in self.queue_events.iter().enumerate() {
                if let Err(e) = registry.unregister(Self::notify_addr(region.addr, q), fd) {
                    crate::guest_log!(
                        log::Level::Warn,
                        "virtio-pci: cannot unregister queue {q} ioeventfd: {e}"
                    );
                }
            }
        }
        self.ioevents_at = None;
    }

    fn read_bar(&mut self, bar: usize, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if bar != BAR_INDEX {
            return;
        }
        match offset {
            o if o < COMMON_OFFSET + COMMON_SIZE => self.read_common(o - COMMON_OFFSET, data),
            o if (ISR_OFFSET..ISR_OFFSET + ISR_SIZE).contains(&o) => {
                if let Some(first) = data.first_mut() {
                    *first = self.signals.take_isr();
                }
            }
            o if (DEVICE_CFG_OFFSET..DEVICE_CFG_OFFSET + DEVICE_CFG_SIZE).contains(&o) => {
                self.lock_device().read_config(o - DEVICE_CFG_OFFSET, data)
            }
            o if (MSIX_TABLE_OFFSET..MSIX_PBA_OFFSET).contains(&o) => {
                self.signals.msix().read_table(o - MSIX_TABLE_OFFSET, data)
            }
            o if o >= MSIX_PBA_OFFSET => self.signals.msix().read_pba(o - MSIX_PBA_OFFSET, data),
            _ => {}
        }
    }

    fn write_bar(&mut self, bar: usize, offset: u64, data: &[u8]) {
        if bar == IO_NOTIFY_BAR && matches!(self.notify, NotifyMode::InVcpuPort(_)) {
            self.notify_queue((offset / u64::from(NOTIFY_MULTIPLIER)) as usize);
            return;
        }
        if bar != BAR_INDEX {
            return;
        }
        match offset {
            o if o < COMMON_OFFSET + COMMON_SIZE => self.write_common(o - COMMON_OFFSET, data),
            o if (DEVICE_CFG_OFFSET..DEVICE_CFG_OFFSET + DEVICE_CFG_SIZE).contains(&o) => {
                self.lock_device().write_config(o - DEVICE_CFG_OFFSET, data)
            }
            o if (NOTIFY_OFFSET..NOTIFY_OFFSET + NOTIFY_SIZE).contains(&o) => {
                self.notify_queue(((o - NOTIFY_OFFSET) / u64::from(NOTIFY_MULTIPLIER)) as usize);
            }
            o if (MSIX_TABLE_OFFSET..MSIX_PBA_OFFSET).contains(&o) => {
                self.signals.msix().write_table(o - MSIX_TABLE_OFFSET, data)
            }
            _ => {}
        }
    }
}

mod cfg_window;
mod signals;
#[cfg(test)]
mod tests;
