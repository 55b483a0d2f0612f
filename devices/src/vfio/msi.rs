//! MSI (not MSI-X) for passthrough devices that have no MSI-X: the
//! capability is emulated in a shadow copy; enabling it arms the device's
//! vectors through VFIO with the irqfd eventfds, and each vector's KVM route
//! follows its address, data and mask bit.

use std::sync::Arc;

use vmm_sys_util::eventfd::EventFd;

use super::access::VfioAccess;
use crate::pci::msix::{MsiMessage, MsixInterrupts};

const CTL_ENABLE: u16 = 1 << 0;
const CTL_64BIT: u16 = 1 << 7;
const CTL_PER_VECTOR_MASK: u16 = 1 << 8;

/// The emulated MSI capability of one device.
pub struct MsiCap {
    /// Config-space offset of the capability.
    pub offset: usize,
    control: u16,
    addr_lo: u32,
    addr_hi: u32,
    data: u16,
    mask: u32,
    routed: u32,
    device: Arc<dyn VfioAccess>,
    routes: Arc<dyn MsixInterrupts>,
    eventfds: Vec<EventFd>,
}

impl MsiCap {
    /// The capability at `offset` whose device-reported message control is
    /// `control`; vectors go through `routes` and are signalled on
    /// `eventfds`.
    pub fn new(
        offset: usize,
        control: u16,
        device: Arc<dyn VfioAccess>,
        routes: Arc<dyn MsixInterrupts>,
        eventfds: Vec<EventFd>,
    ) -> Self {
        Self {
            offset,
            // Read-only capability bits only: disabled, one vector enabled.
            control: control & (CTL_64BIT | CTL_PER_VECTOR_MASK | 0x000e),
            addr_lo: 0,
            addr_hi: 0,
            data: 0,
            mask: 0,
            routed: 0,
            device,
            routes,
            eventfds,
        }
    }

    fn is64(&self) -> bool {
        self.control & CTL_64BIT != 0
    }

    /// Size of the capability in bytes.
    pub fn size(&self) -> usize {
        let base = if self.is64() { 14 } else { 10 };
        if self.control & CTL_PER_VECTOR_MASK != 0 {
            base + 10
        } else {
            base
        }
    }

    fn data_at(&self) -> usize {
        if self.is64() {
            0xc
        } else {
            8
        }
    }

    /// The dword at `at` (a multiple of 4) within the capability, with
    /// `head` the device's id/next bytes for dword 0.
    pub fn read(&self, at: usize, head: u16) -> u32 {
        let data_at = self.data_at();
        match at {
            0 => u32::from(head) | (u32::from(self.control) << 16),
            4 => self.addr_lo,
            8 if self.is64() => self.addr_hi,
            a if a == data_at => u32::from(self.data),
            a if a == data_at + 4 && self.control & CTL_PER_VECTOR_MASK != 0 => self.mask,
            // Pending bits: signals held for masked vectors.
            a if a == data_at + 8 && self.control & CTL_PER_VECTOR_MASK != 0 => (0..self.vectors())
                .filter(|v| self.mask & (1 << v) != 0 && self.routes.pending(*v as u16))
                .fold(0, |bits, v| bits | (1 << v)),
            _ => 0,
        }
    }

    /// Guest write of `bytes` at byte `at` within the capability.
    pub fn write(&mut self, at: usize, bytes: &[u8]) {
        let dword = at & !3;
        let shift = at & 3;
        if shift + bytes.len() > 4 {
            return;
        }
        let mut value = self.read(dword, 0).to_le_bytes();
        value[shift..shift + bytes.len()].copy_from_slice(bytes);
        let value = u32::from_le_bytes(value);
        let data_at = self.data_at();
        let was_enabled = self.control & CTL_ENABLE != 0;
        match dword {
            0 => {
                let new = (value >> 16) as u16;
                // Writable: enable and multiple-message enable (bits 4-6).
                self.control =
                    (self.control & !(CTL_ENABLE | 0x0070)) | (new & (CTL_ENABLE | 0x0070));
            }
            4 => self.addr_lo = value & !3,
            8 if self.is64() => self.addr_hi = value,
            d if d == data_at => self.data = value as u16,
            d if d == data_at + 4 && self.control & CTL_PER_VECTOR_MASK != 0 => self.mask = value,
            _ => return,
        }
        self.apply(was_enabled);
    }

    fn vectors(&self) -> u32 {
        let enabled = 1u32 << ((self.control >> 4) & 7);
        enabled.min(self.eventfds.len() as u32).max(1)
    }

    fn apply(&mut self, was_enabled: bool) {
        let enabled = self.control & CTL_ENABLE != 0;
        let n = if enabled { self.vectors() } else { 0 };
        if enabled && !was_enabled {
            let fds: Vec<&EventFd> = self.eventfds.iter().take(n as usize).collect();
            if let Err(e) = self.device.enable_msi(&fds) {
                crate::guest_log!(log::Level::Error, "vfio: cannot enable MSI: {e}");
            }
        }
        for v in 0..self.routed.max(n) {
            let live = v < n && self.mask & (1 << v) == 0 && self.addr_lo != 0;
            let msg = live.then(|| MsiMessage {
                addr: (u64::from(self.addr_hi) << 32) | u64::from(self.addr_lo),
                data: u32::from(self.data) | v,
            });
            self.routes.route(v as u16, msg);
        }
        self.routed = n;
        if !enabled && was_enabled {
            if let Err(e) = self.device.disable_msi() {
                crate::guest_log!(log::Level::Error, "vfio: cannot disable MSI: {e}");
            }
        }
    }
}
