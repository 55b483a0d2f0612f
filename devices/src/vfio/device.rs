//! The passthrough PCI function: configuration virtualization, BAR
//! placement and mapping, MSI-X emulation on top of VFIO's MSI-X eventfds.

use std::sync::Arc;

use vfio_bindings::bindings::vfio::{
    VFIO_PCI_CONFIG_REGION_INDEX, VFIO_REGION_INFO_FLAG_MMAP, VFIO_REGION_INFO_FLAG_READ,
    VFIO_REGION_INFO_FLAG_WRITE,
};
use vmm_sys_util::eventfd::EventFd;

use super::access::VfioAccess;
use super::caps::{self, MsixLocation};
use super::msi::MsiCap;
use crate::pci::config::{BarKind, PciConfiguration, PciIds, NUM_BARS};
use crate::pci::msix::{MsiMessage, MsixConfig, MsixInterrupts};
use crate::pci::{BarRegion, PciDevice};

/// Maps host memory (an mmapped BAR) into guest physical memory.
pub trait MemorySlots: Send + Sync {
    /// Maps `size` bytes at host virtual `host_addr` to guest `gpa`;
    /// returns the slot.
    fn map(&self, gpa: u64, size: u64, host_addr: u64) -> std::io::Result<u32>;
    /// Removes slot `slot` (as returned by `map`).
    fn unmap(&self, slot: u32) -> std::io::Result<()>;
}

/// Errors setting up a passthrough device.
#[derive(Debug, thiserror::Error)]
pub enum VfioPciError {
    /// The device's BAR could not be placed.
    #[error("no room for BAR {bar} ({size:#x} bytes) of {bdf}")]
    BarSpace {
        /// Device.
        bdf: String,
        /// BAR index.
        bar: usize,
        /// Size.
        size: u64,
    },
    /// The emulated configuration space refused a BAR.
    #[error("cannot describe BAR {bar} of {bdf}")]
    Bar {
        /// Device.
        bdf: String,
        /// BAR index.
        bar: usize,
        /// Why.
        #[source]
        source: crate::pci::PciConfigError,
    },
    /// mmap of a BAR failed.
    #[error("cannot mmap BAR {bar} of {bdf}")]
    Mmap {
        /// Device.
        bdf: String,
        /// BAR index.
        bar: usize,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Mapping a BAR into the guest failed.
    #[error("cannot map BAR {bar} of {bdf} into the guest")]
    Slot {
        /// Device.
        bdf: String,
        /// BAR index.
        bar: usize,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// An access into one of the emulated MSI-X structures, at this offset.
enum MsixPart {
    Table(u64),
    Pba(u64),
    /// Straddles an emulated structure's edge: neither emulated nor
    /// passed on (reads all ones, writes dropped).
    Edge,
}

/// Host side of an mmapped BAR.
struct Mapping {
    host_addr: u64,
    size: u64,
    slot: Option<u32>,
}

struct Bar {
    size: u64,
    mapping: Option<Mapping>,
}

/// MSI-X through VFIO: enabling arms the device's vectors with the irqfd
/// eventfds; routes (and so masking) go to the VMM's interrupt routing.
struct VfioMsix {
    device: Arc<dyn VfioAccess>,
    routes: Arc<dyn MsixInterrupts>,
    eventfds: Vec<EventFd>,
}

impl MsixInterrupts for VfioMsix {
    fn route(&self, vector: u16, msg: Option<MsiMessage>) {
        self.routes.route(vector, msg);
    }

    fn fire(&self, vector: u16) {
        self.routes.fire(vector);
    }

    fn enable(&self, enabled: bool) {
        let result = if enabled {
            let fds: Vec<&EventFd> = self.eventfds.iter().collect();
            self.device.enable_msix(&fds)
        } else {
            self.device.disable_msix()
        };
        if let Err(e) = result {
            crate::guest_log!(
                log::Level::Error,
                "vfio: cannot {} MSI-X: {e}",
                if enabled { "enable" } else { "disable" }
            );
        }
    }
}

/// A host PCI function assigned to the guest.
pub struct VfioPciDevice {
    bdf: String,
    device: Arc<dyn VfioAccess>,
    config: PciConfiguration,
    bars: Vec<Option<Bar>>,
    msix: Option<(MsixLocation, MsixConfig)>,
    hide_msi: Option<caps::Unlink>,
    msi: Option<MsiCap>,
    slots: Arc<dyn MemorySlots>,
}

const HEADER_BAR0: usize = 4;
const HEADER_ROM: usize = 0xc;
const HEADER_INTERRUPT: usize = 0xf;
const COMMAND_REG: usize = 1;

fn read_config_bytes(device: &dyn VfioAccess) -> Vec<u8> {
    let mut config = vec![0u8; 256];
    device.region_read(VFIO_PCI_CONFIG_REGION_INDEX, &mut config, 0);
    config
}

impl VfioPciDevice {
    /// Wraps `device` (`bdf` for messages): BARs placed by `alloc(size,
    /// kind)`, BARs mmapped into the guest through `slots`, MSI-X
    /// routed by `routes` whose vectors are signalled through `eventfds`.
    pub fn new(
        bdf: &str,
        device: Arc<dyn VfioAccess>,
        alloc: &mut dyn FnMut(u64, BarKind) -> Option<u64>,
        slots: Arc<dyn MemorySlots>,
        routes: Arc<dyn MsixInterrupts>,
        eventfds: Vec<EventFd>,
    ) -> Result<Self, VfioPciError> {
        device.reset();
        let raw = read_config_bytes(&*device);
        let word = |at: usize| u16::from_le_bytes([raw[at], raw[at + 1]]);
        let mut config = PciConfiguration::new(PciIds {
            vendor: word(0),
            device: word(2),
            class: (raw[0xb], raw[0xa], raw[9]),
            revision: raw[8],
            subsystem_vendor: word(0x2c),
            subsystem: word(0x2e),
        });
        let found = caps::walk(&raw);
        log::debug!("vfio {bdf}: capabilities {found:?}");
        let mut bars: Vec<Option<Bar>> = (0..NUM_BARS).map(|_| None).collect();
        let mut index = 0;
        while index < NUM_BARS {
            let reg = u32::from_le_bytes([
                raw[0x10 + 4 * index],
                raw[0x11 + 4 * index],
                raw[0x12 + 4 * index],
                raw[0x13 + 4 * index],
            ]);
            let is_io = reg & 1 != 0;
            let is64 = !is_io && (reg >> 1) & 3 == 2;
            let size = device.region_size(index as u32);
            if size == 0 {
                index += 1;
                continue;
            }
            let kind = match (is_io, is64) {
                (true, _) => BarKind::Io,
                (false, true) => BarKind::Mem64,
                (false, false) => BarKind::Mem32,
            };
            let size = if is_io {
                size.next_power_of_two().max(4)
            } else {
                size.next_power_of_two().max(0x1000)
            };
            let addr = alloc(size, kind).ok_or_else(|| VfioPciError::BarSpace {
                bdf: bdf.to_string(),
                bar: index,
                size,
            })?;
            config
                .add_bar(index, kind, addr, size, reg & 0x8 != 0)
                .map_err(|source| VfioPciError::Bar {
                    bdf: bdf.to_string(),
                    bar: index,
                    source,
                })?;
            let holds_msix = found
                .msix
                .is_some_and(|m| m.table_bar == index || m.pba_bar == index);
            let flags = device.region_flags(index as u32);
            let mappable = !is_io
                && flags & VFIO_REGION_INFO_FLAG_MMAP != 0
                && flags & (VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE) != 0;
            let mapping = if mappable && !holds_msix {
                Some(Self::mmap_bar(
                    bdf,
                    &*device,
                    index,
                    device.region_size(index as u32),
                )?)
            } else {
                None
            };
            bars[index] = Some(Bar { size, mapping });
            index += if is64 { 2 } else { 1 };
        }
        // MSI-X when the device has it (MSI is then unlinked); else MSI.
        let (msix, msi, hide_msi) = match (found.msix, found.msi) {
            (Some(loc), _) => {
                let interrupts = Arc::new(VfioMsix {
                    device: device.clone(),
                    routes,
                    eventfds,
                });
                let msix = MsixConfig::new(loc.vectors, interrupts);
                (Some((loc, msix)), None, found.hide_msi)
            }
            (None, Some((offset, control))) => {
                let msi = MsiCap::new(offset, control, device.clone(), routes, eventfds);
                (None, Some(msi), None)
            }
            (None, None) => (None, None, None),
        };
        Ok(Self {
            bdf: bdf.to_string(),
            device,
            config,
            bars,
            msix,
            hide_msi,
            msi,
            slots,
        })
    }

    fn mmap_bar(
        bdf: &str,
        device: &dyn VfioAccess,
        bar: usize,
        size: u64,
    ) -> Result<Mapping, VfioPciError> {
        let host_addr =
            device
                .mmap_region(bar as u32, size)
                .map_err(|source| VfioPciError::Mmap {
                    bdf: bdf.to_string(),
                    bar,
                    source,
                })?;
        Ok(Mapping {
            host_addr,
            size,
            slot: None,
        })
    }

    /// Installs BAR `index`'s mmap as a memory slot at `gpa`, where the BAR
    /// now decodes.
    fn map_slot(&mut self, index: usize, gpa: u64) -> Result<(), VfioPciError> {
        let Some(Some(bar)) = self.bars.get_mut(index) else {
            return Ok(());
        };
        let Some(mapping) = bar.mapping.as_mut() else {
            return Ok(());
        };
        if mapping.slot.is_some() {
            return Ok(());
        }
        let slot = self
            .slots
            .map(gpa, mapping.size, mapping.host_addr)
            .map_err(|source| VfioPciError::Slot {
                bdf: self.bdf.clone(),
                bar: index,
                source,
            })?;
        mapping.slot = Some(slot);
        Ok(())
    }

    /// Removes BAR `index`'s memory slot (its accesses trap from now on).
    fn unmap_slot(&mut self, index: usize) {
        let Some(Some(bar)) = self.bars.get_mut(index) else {
            return;
        };
        let Some(slot) = bar.mapping.as_mut().and_then(|m| m.slot.take()) else {
            return;
        };
        if let Err(e) = self.slots.unmap(slot) {
            crate::guest_log!(
                log::Level::Error,
                "vfio {}: cannot remove the memory slot of BAR {index}: {e}",
                self.bdf
            );
        }
    }

    fn device_read(&self, reg: usize) -> u32 {
        let mut b = [0u8; 4];
        self.device
            .region_read(VFIO_PCI_CONFIG_REGION_INDEX, &mut b, (reg * 4) as u64);
        u32::from_le_bytes(b)
    }

    fn in_msix_cap(&self, reg: usize) -> bool {
        self.msix
            .as_ref()
            .is_some_and(|(loc, _)| loc.cap / 4 == reg)
    }

    /// The MSI-X capability's table and PBA location dwords: read-only,
    /// and emulated like the rest of the capability, so writes stop here.
    fn in_msix_locations(&self, reg: usize) -> bool {
        self.msix
            .as_ref()
            .is_some_and(|(loc, _)| (loc.cap / 4 + 1..=loc.cap / 4 + 2).contains(&reg))
    }

    /// Which emulated MSI-X structure, if any, `len` bytes at `offset` of
    /// BAR `bar` touch.
    fn msix_part(&self, bar: usize, offset: u64, len: usize) -> Option<MsixPart> {
        let (loc, _) = self.msix.as_ref()?;
        let end = offset.saturating_add(len as u64);
        let part = |base: u64, size: u64| {
            let limit = base + size;
            if offset >= base && end <= limit {
                Some(Ok(offset - base))
            } else if offset < limit && end > base {
                Some(Err(()))
            } else {
                None
            }
        };
        let table = (bar == loc.table_bar)
            .then(|| part(loc.table_offset, loc.table_size()))
            .flatten();
        let pba = (bar == loc.pba_bar)
            .then(|| part(loc.pba_offset, loc.pba_size()))
            .flatten();
        match (table, pba) {
            (Some(Ok(at)), None) => Some(MsixPart::Table(at)),
            (None, Some(Ok(at))) => Some(MsixPart::Pba(at)),
            (None, None) => None,
            _ => Some(MsixPart::Edge),
        }
    }

    /// Whether `len` bytes at `offset` lie inside BAR `bar`.
    fn in_bar(&self, bar: usize, offset: u64, len: usize) -> bool {
        self.bars
            .get(bar)
            .and_then(Option::as_ref)
            .is_some_and(|b| {
                offset
                    .checked_add(len as u64)
                    .is_some_and(|end| end <= b.size)
            })
    }

    /// Byte offset of config dword `reg` within the MSI capability.
    fn in_msi_cap(&self, reg: usize) -> Option<usize> {
        let msi = self.msi.as_ref()?;
        let at = reg * 4;
        (at >= msi.offset && at < msi.offset + msi.size()).then(|| at - msi.offset)
    }
}

impl PciDevice for VfioPciDevice {
    fn read_config_register(&mut self, reg: usize) -> u32 {
        let value = match reg {
            r if (HEADER_BAR0..HEADER_BAR0 + NUM_BARS).contains(&r) => self.config.read_reg(r),
            HEADER_ROM => 0,
            // Interrupt line is scratch; pin 0: no INTx.
            HEADER_INTERRUPT => self.config.read_reg(HEADER_INTERRUPT) & 0xff,
            r if self.in_msix_cap(r) => {
                let ctl = self.msix.as_ref().map_or(0, |(_, m)| m.control());
                (self.device_read(r) & 0xffff) | (u32::from(ctl) << 16)
            }
            r => match (self.in_msi_cap(r), self.msi.as_ref()) {
                (Some(at), Some(msi)) => msi.read(at, (self.device_read(r) & 0xffff) as u16),
                _ => self.device_read(r),
            },
        };
        match self.hide_msi {
            Some(u) if u.pointer_at / 4 == reg => {
                let shift = (u.pointer_at % 4) * 8;
                (value & !(0xff << shift)) | (u32::from(u.points_to) << shift)
            }
            _ => value,
        }
    }

    fn write_config_register(&mut self, reg: usize, offset: u64, data: &[u8]) {
        match reg {
            r if (HEADER_BAR0..HEADER_BAR0 + NUM_BARS).contains(&r) => {
                self.config.write_reg(r, offset, data);
            }
            HEADER_ROM => {}
            HEADER_INTERRUPT => {
                self.config.write_reg(reg, offset, data);
            }
            r if self.in_msix_cap(r) => {
                let ctl = match (offset, data) {
                    (2, [lo, hi]) => Some(u16::from_le_bytes([*lo, *hi])),
                    (3, [hi]) => Some(u16::from_le_bytes([0, *hi])),
                    (0, [_, _, lo, hi]) => Some(u16::from_le_bytes([*lo, *hi])),
                    _ => None,
                };
                if let (Some(ctl), Some((_, msix))) = (ctl, self.msix.as_mut()) {
                    msix.set_control(ctl);
                }
            }
            r if self.in_msix_locations(r) => {}
            r if self.in_msi_cap(r).is_some() => {
                if let (Some(at), Some(msi)) = (self.in_msi_cap(r), self.msi.as_mut()) {
                    msi.write(at + offset as usize, data);
                }
            }
            _ => {
                if reg == COMMAND_REG {
                    self.config.write_reg(reg, offset, data);
                }
                self.device.region_write(
                    VFIO_PCI_CONFIG_REGION_INDEX,
                    data,
                    reg as u64 * 4 + offset,
                );
            }
        }
    }

    fn bar_regions(&self) -> Vec<BarRegion> {
        // All BARs, mmapped ones included: the root complex then reports
        // their moves (so the memory slot follows), and routes the rare
        // access that still exits (for instance while a slot is being moved).
        self.config.bar_regions()
    }

    fn bar_mapped(&mut self, region: BarRegion) {
        if let Err(e) = self.map_slot(region.index, region.addr) {
            // Accesses then trap and still reach the device.
            crate::guest_log!(log::Level::Warn, "{e}");
        }
    }

    fn bar_unmapped(&mut self, region: BarRegion) {
        self.unmap_slot(region.index);
    }

    fn read_bar(&mut self, bar: usize, offset: u64, data: &mut [u8]) {
        match (self.msix_part(bar, offset, data.len()), self.msix.as_ref()) {
            (Some(MsixPart::Table(at)), Some((_, msix))) => msix.read_table(at, data),
            (Some(MsixPart::Pba(at)), Some((_, msix))) => msix.read_pba(at, data),
            (Some(MsixPart::Edge), _) => data.fill(0xff),
            _ if self.in_bar(bar, offset, data.len()) => {
                self.device.region_read(bar as u32, data, offset)
            }
            _ => data.fill(0xff),
        }
    }

    fn write_bar(&mut self, bar: usize, offset: u64, data: &[u8]) {
        match self.msix_part(bar, offset, data.len()) {
            Some(MsixPart::Table(at)) => {
                if let Some((_, msix)) = self.msix.as_mut() {
                    msix.write_table(at, data);
                }
            }
            // The PBA is read-only.
            Some(MsixPart::Pba(_) | MsixPart::Edge) => {}
            None if self.in_bar(bar, offset, data.len()) => {
                self.device.region_write(bar as u32, data, offset)
            }
            None => {}
        }
    }
}

impl Drop for VfioPciDevice {
    fn drop(&mut self) {
        if self.msix.as_ref().is_some_and(|(_, m)| m.enabled()) {
            let _ = self.device.disable_msix();
        }
        if self.msi.is_some() {
            let _ = self.device.disable_msi();
        }
        for bar in self.bars.iter_mut().flatten() {
            if let Some(m) = bar.mapping.take() {
                if let Some(slot) = m.slot {
                    let _ = self.slots.unmap(slot);
                }
                self.device.munmap_region(m.host_addr, m.size);
            }
        }
        self.device.reset();
    }
}
