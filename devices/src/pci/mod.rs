//! PCI: configuration space, MSI-X, and the root complex (segment 0, bus 0)
//! reached through legacy 0xCF8/0xCFC, ECAM and the BAR windows.
//!
//! BAR addresses are chosen by the VMM's layout and handed in; the guest may
//! move them and the root complex follows.

pub mod config;
pub mod host_bridge;
pub mod msix;
pub mod root;

pub use config::{BarKind, BarRegion, PciConfigError, PciConfiguration, PciIds};
pub use msix::{MsiMessage, MsixConfig, MsixInterrupts};
pub use root::{PciConfigIo, PciConfigMmio, PciMmioWindow, PciRoot};

/// A device on the PCI bus.
pub trait PciDevice: Send {
    /// Reads configuration dword `reg` (offset `4 * reg`).
    fn read_config_register(&mut self, reg: usize) -> u32;
    /// Writes `data` at byte `offset` within configuration dword `reg`.
    fn write_config_register(&mut self, reg: usize, offset: u64, data: &[u8]);
    /// The device's BARs as currently programmed (enabled memory BARs only).
    fn bar_regions(&self) -> Vec<BarRegion>;
    /// BAR `bar` moved from `old` to `new` (the guest reprogrammed it).
    fn bar_moved(&mut self, _bar: usize, _old: u64, _new: u64) {}
    /// Guest read within BAR `bar`.
    fn read_bar(&mut self, bar: usize, offset: u64, data: &mut [u8]);
    /// Guest write within BAR `bar`.
    fn write_bar(&mut self, bar: usize, offset: u64, data: &[u8]);
}
