//! PCI: configuration space, MSI-X, and the root complex (segment 0, bus 0)
//! reached through legacy 0xCF8/0xCFC, ECAM and the BAR windows.
//!
//! BAR addresses are chosen by the VMM's layout and handed in; the guest may
//! move them and the root complex follows. A BAR *decodes* while its
//! decoding bit (memory or I/O) is on, it is not being sized, it lies
//! wholly inside one of the root complex's windows and it overlaps no BAR
//! that already decodes; the root complex tells each device when one of
//! its BARs starts or stops decoding ([`PciDevice::bar_mapped`],
//! [`PciDevice::bar_unmapped`]), so what a device installs for a BAR
//! (a KVM memory slot, ioeventfds) exists exactly while the BAR decodes,
//! at the address it decodes at.

pub mod config;
pub mod host_bridge;
pub mod hotplug;
pub mod msix;
pub mod root;

pub use config::{BarKind, BarRegion, PciConfigError, PciConfiguration, PciIds};
pub use msix::{MsiMessage, MsixConfig, MsixInterrupts};
pub use root::{PciConfigIo, PciConfigMmio, PciMmioWindow, PciRoot, PciWindows};

/// A device on the PCI bus.
pub trait PciDevice: Send {
    /// Reads configuration dword `reg` (offset `4 * reg`).
    fn read_config_register(&mut self, reg: usize) -> u32;
    /// Writes `data` at byte `offset` within configuration dword `reg`.
    fn write_config_register(&mut self, reg: usize, offset: u64, data: &[u8]);
    /// The device's BARs as currently programmed, those whose decoding is
    /// on and that are not being sized.
    fn bar_regions(&self) -> Vec<BarRegion>;
    /// `region` started decoding (decoding turned on, or the BAR moved
    /// there). Accesses to it are routed to the device from now on.
    fn bar_mapped(&mut self, _region: BarRegion) {}
    /// `region` stopped decoding (decoding turned off, or the BAR moved
    /// away: then [`PciDevice::bar_mapped`] follows with the new place).
    fn bar_unmapped(&mut self, _region: BarRegion) {}
    /// Guest read within BAR `bar`.
    fn read_bar(&mut self, bar: usize, offset: u64, data: &mut [u8]);
    /// Guest write within BAR `bar`.
    fn write_bar(&mut self, bar: usize, offset: u64, data: &[u8]);
}
