//! `VIRTIO_PCI_CAP_PCI_CFG` (virtio 1.3 section 4.1.4.9): a window in
//! configuration space onto the BARs. The driver writes `cap.bar`,
//! `cap.offset` and `cap.length`, then reads or writes `pci_cfg_data`,
//! which the transport turns into an access of `cap.length` bytes at
//! `cap.offset` of that BAR. A window that is not 1, 2 or 4 bytes, not
//! aligned to its length, or not inside a BAR of this device reads as zero
//! and ignores writes.

use crate::pci::config::PciConfiguration;

/// `cfg_type` of the capability.
pub(super) const CFG_PCI: u8 = 5;
/// The capability body after the ID and next pointer: `cap_len` (20),
/// `cfg_type`, `bar`, `id`, two padding bytes, `offset`, `length`, and the
/// four bytes of `pci_cfg_data`.
pub(super) fn body() -> [u8; 18] {
    let mut body = [0u8; 18];
    body[0] = 20;
    body[1] = CFG_PCI;
    body
}

/// Where the capability sits and what its data register last held.
pub(super) struct CfgWindow {
    /// Configuration dword of the capability's first byte.
    reg: usize,
    /// The bytes of `pci_cfg_data` as last written.
    data: [u8; 4],
}

/// An access the window asks for: BAR, offset, length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct WindowAccess {
    pub bar: usize,
    pub offset: u64,
    pub len: usize,
}

impl CfgWindow {
    /// The capability at byte `cap` of `config`: makes `bar`, `offset` and
    /// `length` guest-writable.
    pub(super) fn new(config: &mut PciConfiguration, cap: usize) -> Self {
        config.set_writable(cap + 4, 0xff);
        config.set_writable(cap + 8, u32::MAX);
        config.set_writable(cap + 12, u32::MAX);
        Self {
            reg: cap / 4,
            data: [0; 4],
        }
    }

    /// Whether configuration dword `reg` is `pci_cfg_data`.
    pub(super) fn is_data(&self, reg: usize) -> bool {
        reg == self.reg + 4
    }

    /// The access the window currently selects, if it is well formed;
    /// `bar_size(bar)` gives the size of each of the device's BARs (0 for
    /// none).
    pub(super) fn access(
        &self,
        config: &PciConfiguration,
        bar_size: impl Fn(usize) -> u64,
    ) -> Option<WindowAccess> {
        let bar = usize::from(config.read_reg(self.reg + 1) as u8);
        let offset = u64::from(config.read_reg(self.reg + 2));
        let len = config.read_reg(self.reg + 3);
        let len = match len {
            1 | 2 | 4 => len as usize,
            _ => return None,
        };
        let fits = offset.is_multiple_of(len as u64)
            && offset
                .checked_add(len as u64)
                .is_some_and(|end| end <= bar_size(bar));
        fits.then_some(WindowAccess { bar, offset, len })
    }

    /// Guest write of `bytes` at byte `offset` of `pci_cfg_data`; returns
    /// the data the window's access writes (its first `len` bytes).
    pub(super) fn write_data(&mut self, offset: u64, bytes: &[u8]) -> [u8; 4] {
        let start = offset as usize;
        if let Some(dst) = self.data.get_mut(start..start + bytes.len()) {
            dst.copy_from_slice(bytes);
        }
        self.data
    }

    /// The dword a read of `pci_cfg_data` returns, from what the BAR read
    /// gave for the window (`read`: its first `len` bytes).
    pub(super) fn read_data(&mut self, read: [u8; 4]) -> u32 {
        self.data = read;
        u32::from_le_bytes(read)
    }
}
