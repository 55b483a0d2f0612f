//! The host bridge at 00:00.0: identification only.

use super::config::{PciConfiguration, PciIds};
use super::{BarRegion, PciDevice};

/// Intel's vendor ID, which guests expect on a host bridge.
const VENDOR_INTEL: u16 = 0x8086;
/// A device ID with no driver quirks attached (QEMU's "PCIe host bridge").
const DEVICE_HOST_BRIDGE: u16 = 0x0d57;

/// A host bridge with no BARs.
pub struct HostBridge {
    config: PciConfiguration,
}

impl HostBridge {
    /// A new host bridge.
    pub fn new() -> Self {
        Self {
            config: PciConfiguration::new(PciIds {
                vendor: VENDOR_INTEL,
                device: DEVICE_HOST_BRIDGE,
                class: (0x06, 0x00, 0x00),
                revision: 0,
                subsystem_vendor: 0,
                subsystem: 0,
            }),
        }
    }
}

impl Default for HostBridge {
    fn default() -> Self {
        Self::new()
    }
}

impl PciDevice for HostBridge {
    fn read_config_register(&mut self, reg: usize) -> u32 {
        self.config.read_reg(reg)
    }
    fn write_config_register(&mut self, reg: usize, offset: u64, data: &[u8]) {
        self.config.write_reg(reg, offset, data);
    }
    fn bar_regions(&self) -> Vec<BarRegion> {
        Vec::new()
    }
    fn read_bar(&mut self, _bar: usize, _offset: u64, data: &mut [u8]) {
        data.fill(0xff);
    }
    fn write_bar(&mut self, _bar: usize, _offset: u64, _data: &[u8]) {}
}
