//! A type-0 PCI configuration space: header fields, BARs with sizing, and a
//! capability list. Guest writes go through per-register writable masks, so
//! read-only fields stay read-only and BAR sizing works by construction.

/// Size of conventional configuration space.
pub const CONFIG_SPACE_SIZE: usize = 256;
const NUM_REGS: usize = CONFIG_SPACE_SIZE / 4;
const BAR0_REG: usize = 4;
/// Number of BARs in a type-0 header.
pub const NUM_BARS: usize = 6;
const COMMAND_REG: usize = 1;
const COMMAND_IO: u32 = 1 << 0;
const COMMAND_MEMORY: u32 = 1 << 1;
const COMMAND_WRITABLE: u32 = COMMAND_IO | COMMAND_MEMORY | (1 << 2) | (1 << 10);
const STATUS_CAP_LIST: u32 = 1 << 20;
const CAP_POINTER_REG: usize = 0xd;
const INTERRUPT_REG: usize = 0xf;
const FIRST_CAP_OFFSET: usize = 0x40;

const COMMAND_IO_SPACE: u32 = COMMAND_IO;
const BAR_IO: u32 = 0b1;
/// Highest port an I/O BAR may reach.
const IO_SPACE_END: u64 = 0xffff;
const BAR_MEM64: u32 = 0b100;
const BAR_PREFETCHABLE: u32 = 0b1000;

/// What a BAR decodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BarKind {
    /// 32-bit memory.
    Mem32,
    /// 64-bit memory (uses two BAR registers).
    Mem64,
    /// I/O ports.
    Io,
}

/// A BAR as placed in guest physical memory or port space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BarRegion {
    /// BAR index (0-5).
    pub index: usize,
    /// Guest physical address (or port, for I/O BARs).
    pub addr: u64,
    /// Size in bytes (a power of two).
    pub size: u64,
    /// An I/O BAR.
    pub io: bool,
}

/// Errors building a configuration space.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PciConfigError {
    /// BAR index out of range or already used.
    #[error("BAR {0} is invalid or already in use")]
    BarInUse(usize),
    /// BAR size not a power of two, too small, or address misaligned.
    #[error("BAR {index} of size {size:#x} at {addr:#x} is not a naturally aligned power of two")]
    BarGeometry {
        /// BAR index.
        index: usize,
        /// Size.
        size: u64,
        /// Address.
        addr: u64,
    },
    /// No room left for a capability.
    #[error("no room for a {0}-byte capability")]
    CapabilityTooLarge(usize),
}

#[derive(Clone, Copy, Debug)]
struct Bar {
    kind: BarKind,
    size: u64,
}

/// Identification fields of a function.
#[derive(Clone, Copy, Debug)]
pub struct PciIds {
    /// Vendor ID.
    pub vendor: u16,
    /// Device ID.
    pub device: u16,
    /// Class code, subclass, programming interface.
    pub class: (u8, u8, u8),
    /// Revision ID.
    pub revision: u8,
    /// Subsystem vendor ID.
    pub subsystem_vendor: u16,
    /// Subsystem ID.
    pub subsystem: u16,
}

/// One function's configuration space.
#[derive(Clone, Debug)]
pub struct PciConfiguration {
    regs: [u32; NUM_REGS],
    writable: [u32; NUM_REGS],
    bars: [Option<Bar>; NUM_BARS],
    next_cap: usize,
    last_cap: Option<usize>,
}

impl PciConfiguration {
    /// A type-0 header with `ids` and no BARs or capabilities.
    pub fn new(ids: PciIds) -> Self {
        let mut regs = [0u32; NUM_REGS];
        regs[0] = u32::from(ids.vendor) | (u32::from(ids.device) << 16);
        let (class, subclass, prog_if) = ids.class;
        regs[2] = u32::from(ids.revision)
            | (u32::from(prog_if) << 8)
            | (u32::from(subclass) << 16)
            | (u32::from(class) << 24);
        regs[0xb] = u32::from(ids.subsystem_vendor) | (u32::from(ids.subsystem) << 16);
        let mut writable = [0u32; NUM_REGS];
        writable[COMMAND_REG] = COMMAND_WRITABLE;
        writable[INTERRUPT_REG] = 0xff; // interrupt line: scratch for the OS
        Self {
            regs,
            writable,
            bars: [None; NUM_BARS],
            next_cap: FIRST_CAP_OFFSET,
            last_cap: None,
        }
    }

    /// Adds BAR `index` at `addr` (a port for [`BarKind::Io`]), `size` bytes.
    pub fn add_bar(
        &mut self,
        index: usize,
        kind: BarKind,
        addr: u64,
        size: u64,
        prefetchable: bool,
    ) -> Result<(), PciConfigError> {
        let regs_needed = if kind == BarKind::Mem64 { 2 } else { 1 };
        if index + regs_needed > NUM_BARS
            || self.bars[index..index + regs_needed]
                .iter()
                .any(Option::is_some)
            || (index > 0
                && matches!(
                    self.bars[index - 1],
                    Some(Bar {
                        kind: BarKind::Mem64,
                        ..
                    })
                ))
        {
            return Err(PciConfigError::BarInUse(index));
        }
        let (min_size, limit) = match kind {
            BarKind::Io => (4, IO_SPACE_END),
            BarKind::Mem32 => (16, u64::from(u32::MAX)),
            BarKind::Mem64 => (16, u64::MAX),
        };
        let geometry_ok = size.is_power_of_two()
            && size >= min_size
            && addr.is_multiple_of(size)
            && addr.checked_add(size - 1).is_some_and(|end| end <= limit);
        if !geometry_ok {
            return Err(PciConfigError::BarGeometry { index, size, addr });
        }
        let mut flags = match kind {
            BarKind::Mem64 => BAR_MEM64,
            BarKind::Io => BAR_IO,
            BarKind::Mem32 => 0,
        };
        if prefetchable && kind != BarKind::Io {
            flags |= BAR_PREFETCHABLE;
        }
        let mask = !(size - 1);
        let low_mask = if kind == BarKind::Io {
            0xffff_fffc
        } else {
            0xffff_fff0
        };
        self.regs[BAR0_REG + index] = (addr as u32 & low_mask) | flags;
        self.writable[BAR0_REG + index] = mask as u32 & low_mask;
        if kind == BarKind::Mem64 {
            self.regs[BAR0_REG + index + 1] = (addr >> 32) as u32;
            self.writable[BAR0_REG + index + 1] = (mask >> 32) as u32;
        }
        self.bars[index] = Some(Bar { kind, size });
        Ok(())
    }

    /// Current address (or port) of BAR `index`.
    pub fn bar_addr(&self, index: usize) -> Option<u64> {
        let bar = self.bars.get(index).copied().flatten()?;
        let reg = self.regs[BAR0_REG + index];
        Some(match bar.kind {
            BarKind::Mem64 => {
                (u64::from(self.regs[BAR0_REG + index + 1]) << 32) | u64::from(reg & 0xffff_fff0)
            }
            BarKind::Mem32 => u64::from(reg & 0xffff_fff0),
            BarKind::Io => u64::from(reg & 0xffff_fffc),
        })
    }

    /// The BARs that decode: memory BARs while memory decoding is enabled
    /// in the command register, I/O BARs while I/O decoding is.
    pub fn bar_regions(&self) -> Vec<BarRegion> {
        let command = self.regs[COMMAND_REG];
        self.bars
            .iter()
            .enumerate()
            .filter_map(|(index, bar)| {
                let bar = (*bar)?;
                let io = bar.kind == BarKind::Io;
                let enabled = if io {
                    command & COMMAND_IO_SPACE != 0
                } else {
                    command & COMMAND_MEMORY != 0
                };
                let addr = self.bar_addr(index)?;
                // A BAR being sized reads as its mask; it decodes nothing.
                let sizing = addr & !(bar.size - 1) == (!(bar.size - 1)) & self.bar_mask(bar);
                let in_range = !io || addr + bar.size - 1 <= IO_SPACE_END;
                (enabled && !sizing && addr != 0 && in_range).then_some(BarRegion {
                    index,
                    addr,
                    size: bar.size,
                    io,
                })
            })
            .collect()
    }

    fn bar_mask(&self, bar: Bar) -> u64 {
        match bar.kind {
            BarKind::Mem64 => u64::MAX,
            BarKind::Mem32 => u64::from(u32::MAX),
            BarKind::Io => u64::from(u32::MAX) & !3,
        }
    }

    /// Appends a capability with ID `id` and `body` (the bytes after the
    /// ID and next-pointer); returns its offset.
    pub fn add_capability(&mut self, id: u8, body: &[u8]) -> Result<usize, PciConfigError> {
        let len = (2 + body.len()).next_multiple_of(4);
        let offset = self.next_cap;
        if offset + len > CONFIG_SPACE_SIZE {
            return Err(PciConfigError::CapabilityTooLarge(len));
        }
        self.write_byte(offset, id);
        self.write_byte(offset + 1, 0);
        for (i, b) in body.iter().enumerate() {
            self.write_byte(offset + 2 + i, *b);
        }
        match self.last_cap {
            Some(last) => self.write_byte(last + 1, offset as u8),
            None => {
                self.regs[CAP_POINTER_REG] = offset as u32;
                self.regs[COMMAND_REG] |= STATUS_CAP_LIST;
            }
        }
        self.last_cap = Some(offset);
        self.next_cap = offset + len;
        Ok(offset)
    }

    /// Makes the bits in `mask` of the dword at byte `offset` guest-writable.
    pub fn set_writable(&mut self, offset: usize, mask: u32) {
        if let Some(w) = self.writable.get_mut(offset / 4) {
            *w |= mask;
        }
    }

    fn write_byte(&mut self, offset: usize, value: u8) {
        let shift = (offset % 4) * 8;
        if let Some(reg) = self.regs.get_mut(offset / 4) {
            *reg = (*reg & !(0xff << shift)) | (u32::from(value) << shift);
        }
    }

    /// Reads dword `reg`; beyond the conventional space reads zero.
    pub fn read_reg(&self, reg: usize) -> u32 {
        self.regs.get(reg).copied().unwrap_or(0)
    }

    /// Guest write of `data` at byte `offset` of dword `reg`, through the
    /// writable mask. Returns true when it touched a BAR or the command
    /// register (so BAR decoding may have changed).
    pub fn write_reg(&mut self, reg: usize, offset: u64, data: &[u8]) -> bool {
        let (Some(old), Some(mask)) =
            (self.regs.get(reg).copied(), self.writable.get(reg).copied())
        else {
            return false;
        };
        let offset = offset as usize;
        if offset + data.len() > 4 || data.is_empty() {
            return false;
        }
        let mut value = old.to_le_bytes();
        value[offset..offset + data.len()].copy_from_slice(data);
        let value = u32::from_le_bytes(value);
        let byte_mask = if data.len() == 4 {
            u32::MAX
        } else {
            ((1u32 << (data.len() * 8)) - 1) << (offset * 8)
        };
        let mask = mask & byte_mask;
        self.regs[reg] = (old & !mask) | (value & mask);
        reg == COMMAND_REG || (BAR0_REG..BAR0_REG + NUM_BARS).contains(&reg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> PciIds {
        PciIds {
            vendor: 0x1af4,
            device: 0x1042,
            class: (1, 0x80, 0),
            revision: 1,
            subsystem_vendor: 0x1af4,
            subsystem: 2,
        }
    }

    #[test]
    fn header_fields() {
        let c = PciConfiguration::new(ids());
        assert_eq!(c.read_reg(0), 0x1042_1af4);
        assert_eq!(c.read_reg(2), 0x0180_0001);
        assert_eq!(c.read_reg(0xb), 0x0002_1af4);
        assert_eq!(c.read_reg(1000), 0);
    }

    #[test]
    fn read_only_fields_stay_read_only() {
        let mut c = PciConfiguration::new(ids());
        c.write_reg(0, 0, &[0xff; 4]);
        c.write_reg(2, 0, &[0xff; 4]);
        assert_eq!(c.read_reg(0), 0x1042_1af4);
        assert_eq!(c.read_reg(2), 0x0180_0001);
    }

    #[test]
    fn bar64_sizing_and_relocation() {
        let mut c = PciConfiguration::new(ids());
        c.add_bar(0, BarKind::Mem64, 0x1_0000_0000, 0x8000, true)
            .expect("bar");
        c.write_reg(1, 0, &[COMMAND_MEMORY as u8, 0]);
        assert_eq!(
            c.bar_regions(),
            vec![BarRegion {
                index: 0,
                addr: 0x1_0000_0000,
                size: 0x8000,
                io: false,
            }]
        );
        // Sizing: all ones reads back the size mask and flags.
        c.write_reg(4, 0, &[0xff; 4]);
        c.write_reg(5, 0, &[0xff; 4]);
        assert_eq!(c.read_reg(4), 0xffff_8000 | BAR_MEM64 | BAR_PREFETCHABLE);
        assert_eq!(c.read_reg(5), 0xffff_ffff);
        assert!(
            c.bar_regions().is_empty(),
            "a BAR being sized decodes nothing"
        );
        // Relocation.
        c.write_reg(4, 0, &0xe000_0000u32.to_le_bytes());
        c.write_reg(5, 0, &[0; 4]);
        assert_eq!(c.bar_addr(0), Some(0xe000_0000));
    }

    #[test]
    fn bars_decode_only_with_memory_enabled() {
        let mut c = PciConfiguration::new(ids());
        c.add_bar(2, BarKind::Mem32, 0xc000_0000, 0x1000, false)
            .expect("bar");
        assert!(c.bar_regions().is_empty());
        c.write_reg(1, 0, &[COMMAND_MEMORY as u8]);
        assert_eq!(c.bar_regions().len(), 1);
    }

    #[test]
    fn io_bars_size_and_decode_with_io_enabled() {
        let mut c = PciConfiguration::new(ids());
        c.add_bar(2, BarKind::Io, 0x1000, 0x20, false)
            .expect("io bar");
        assert_eq!(c.read_reg(6), 0x1001);
        c.write_reg(1, 0, &[COMMAND_MEMORY as u8]);
        assert!(c.bar_regions().is_empty(), "I/O decoding off");
        c.write_reg(1, 0, &[COMMAND_IO as u8]);
        assert_eq!(
            c.bar_regions(),
            vec![BarRegion {
                index: 2,
                addr: 0x1000,
                size: 0x20,
                io: true
            }]
        );
        c.write_reg(6, 0, &[0xff; 4]);
        assert_eq!(c.read_reg(6), 0xffff_ffe1, "size mask with the I/O flag");
        assert!(c.bar_regions().is_empty());
        assert!(
            c.add_bar(3, BarKind::Io, 0xfff0, 0x20, false).is_err(),
            "past 0xffff"
        );
    }

    #[test]
    fn bad_bars_are_refused() {
        let mut c = PciConfiguration::new(ids());
        assert!(c.add_bar(0, BarKind::Mem32, 0x1000, 0x3000, false).is_err());
        assert!(c.add_bar(0, BarKind::Mem32, 0x1800, 0x1000, false).is_err());
        c.add_bar(4, BarKind::Mem64, 0, 0x1000, false)
            .expect("bar 4");
        assert_eq!(
            c.add_bar(5, BarKind::Mem32, 0, 0x1000, false),
            Err(PciConfigError::BarInUse(5))
        );
        assert_eq!(
            c.add_bar(5, BarKind::Mem64, 0, 0x1000, false),
            Err(PciConfigError::BarInUse(5))
        );
    }

    #[test]
    fn capabilities_are_chained() {
        let mut c = PciConfiguration::new(ids());
        let a = c.add_capability(0x09, &[1, 2]).expect("cap");
        let b = c.add_capability(0x11, &[0; 10]).expect("cap");
        assert_eq!(a, 0x40);
        assert_eq!(b, 0x44);
        assert_eq!(c.read_reg(CAP_POINTER_REG) & 0xff, 0x40);
        assert_eq!(c.read_reg(0x40 / 4), 0x0201_4409);
        assert_eq!(c.read_reg(0x44 / 4) & 0xffff, 0x0011);
        assert_ne!(c.read_reg(1) & STATUS_CAP_LIST, 0);
    }

    #[test]
    fn partial_writes_only_touch_their_bytes() {
        let mut c = PciConfiguration::new(ids());
        c.write_reg(INTERRUPT_REG, 0, &[0x0b]);
        assert_eq!(c.read_reg(INTERRUPT_REG) & 0xff, 0x0b);
        assert!(
            !c.write_reg(INTERRUPT_REG, 3, &[1, 2]),
            "straddling write ignored"
        );
        assert_eq!(c.read_reg(INTERRUPT_REG) & 0xff, 0x0b);
    }
}
