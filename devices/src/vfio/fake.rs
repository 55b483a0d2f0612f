//! A fake VFIO device for tests and fuzzing of the passthrough model
//! (feature `test-utils`): a configuration space with BARs and an MSI or
//! MSI-X capability, BAR regions backed by plain memory, and a record of
//! everything the model asked of the "hardware" (configuration writes that
//! reached it, BAR accesses, MSI/MSI-X arming, resets).

use std::io;
use std::sync::Mutex;

use vfio_bindings::bindings::vfio::{
    VFIO_PCI_CONFIG_REGION_INDEX, VFIO_REGION_INFO_FLAG_MMAP, VFIO_REGION_INFO_FLAG_READ,
    VFIO_REGION_INFO_FLAG_WRITE,
};
use vmm_sys_util::eventfd::EventFd;

use super::access::VfioAccess;

/// Where a fake device's MSI-X structures are.
#[derive(Clone, Copy, Debug)]
pub struct FakeMsix {
    /// Number of vectors.
    pub vectors: u16,
    /// BAR of the table.
    pub table_bar: u8,
    /// Offset of the table.
    pub table_offset: u32,
    /// BAR of the PBA.
    pub pba_bar: u8,
    /// Offset of the PBA.
    pub pba_offset: u32,
}

/// What a fake device looks like.
#[derive(Clone, Debug)]
pub struct FakeVfioConfig {
    /// Vendor and device ID.
    pub ids: (u16, u16),
    /// BARs: `(index, size, 64-bit, mmap-able)` (a 64-bit BAR takes two
    /// slots); I/O BARs are not modelled.
    pub bars: Vec<(usize, u64, bool, bool)>,
    /// An MSI capability with this message control (at 0x50), linked
    /// before MSI-X.
    pub msi: Option<u16>,
    /// An MSI-X capability (at 0x70).
    pub msix: Option<FakeMsix>,
}

impl Default for FakeVfioConfig {
    fn default() -> Self {
        Self {
            ids: (0x8086, 0x10d3),
            bars: vec![(0, 0x2_0000, false, true), (2, 0x4000, true, false)],
            msi: Some(0x0080),
            msix: Some(FakeMsix {
                vectors: 5,
                table_bar: 2,
                table_offset: 0,
                pba_bar: 2,
                pba_offset: 0x2000,
            }),
        }
    }
}

/// What the model did to the fake device.
#[derive(Debug, Default)]
pub struct FakeVfioLog {
    /// Configuration writes that reached the device: `(offset, bytes)`.
    pub config_writes: Vec<(u64, Vec<u8>)>,
    /// BAR writes that reached the device: `(bar, offset, bytes)`.
    pub bar_writes: Vec<(u32, u64, Vec<u8>)>,
    /// MSI-X armed with this many eventfds (`None`: disarmed).
    pub msix: Option<usize>,
    /// MSI armed with this many eventfds.
    pub msi: Option<usize>,
    /// Resets.
    pub resets: usize,
    /// Live mmaps: `(host address, size)`.
    pub mmaps: Vec<(u64, u64)>,
}

/// A fake VFIO device.
pub struct FakeVfio {
    config: Mutex<[u8; 256]>,
    sizes: [u64; 6],
    mappable: [bool; 6],
    /// Contents of the BARs (small ones only: accesses past 64 KiB read 0).
    data: Mutex<Vec<Vec<u8>>>,
    log: Mutex<FakeVfioLog>,
}

/// Bytes of each BAR the fake keeps.
const KEPT: u64 = 0x1_0000;
/// Fake host address of BAR mmaps (never dereferenced).
const FAKE_HOST: u64 = 0x7f00_0000_0000;

impl FakeVfio {
    /// A device as `config` describes.
    pub fn new(config: &FakeVfioConfig) -> Self {
        let mut c = [0u8; 256];
        c[0..2].copy_from_slice(&config.ids.0.to_le_bytes());
        c[2..4].copy_from_slice(&config.ids.1.to_le_bytes());
        c[6] = 0x10; // status: capability list
        c[8] = 3; // revision
        c[0xb] = 2; // class: network
        c[0x3d] = 1; // INTA
        let mut sizes = [0u64; 6];
        let mut mappable = [false; 6];
        for &(index, size, is64, mmap) in &config.bars {
            if index >= 6 {
                continue;
            }
            sizes[index] = size;
            mappable[index] = mmap;
            c[0x10 + 4 * index] = if is64 { 0b100 } else { 0 };
        }
        let mut next = 0x34usize;
        if let Some(control) = config.msi {
            c[next] = 0x50;
            c[0x50] = 0x05;
            c[0x52..0x54].copy_from_slice(&control.to_le_bytes());
            next = 0x51;
        }
        if let Some(m) = config.msix {
            c[next] = 0x70;
            c[0x70] = 0x11;
            c[0x72..0x74].copy_from_slice(&(m.vectors.saturating_sub(1) & 0x7ff).to_le_bytes());
            c[0x74..0x78].copy_from_slice(&(m.table_offset | u32::from(m.table_bar)).to_le_bytes());
            c[0x78..0x7c].copy_from_slice(&(m.pba_offset | u32::from(m.pba_bar)).to_le_bytes());
        }
        let data = sizes
            .iter()
            .map(|s| vec![0u8; s.min(&KEPT).to_owned() as usize])
            .collect();
        Self {
            config: Mutex::new(c),
            sizes,
            mappable,
            data: Mutex::new(data),
            log: Mutex::new(FakeVfioLog::default()),
        }
    }

    /// The device's own configuration space as it stands.
    pub fn config(&self) -> [u8; 256] {
        *self.config.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What the model did so far.
    pub fn log(&self) -> std::sync::MutexGuard<'_, FakeVfioLog> {
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl VfioAccess for FakeVfio {
    fn reset(&self) {
        self.log().resets += 1;
    }

    fn region_read(&self, index: u32, data: &mut [u8], offset: u64) {
        data.fill(0xff);
        if index == VFIO_PCI_CONFIG_REGION_INDEX {
            let c = self.config();
            if let Some(src) = usize::try_from(offset)
                .ok()
                .and_then(|o| c.get(o..o.checked_add(data.len())?))
            {
                data.copy_from_slice(src);
            }
            return;
        }
        let bars = self.data.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(src) = bars.get(index as usize).and_then(|b| {
            let o = usize::try_from(offset).ok()?;
            b.get(o..o.checked_add(data.len())?)
        }) {
            data.copy_from_slice(src);
        }
    }

    fn region_write(&self, index: u32, data: &[u8], offset: u64) {
        if index == VFIO_PCI_CONFIG_REGION_INDEX {
            self.log().config_writes.push((offset, data.to_vec()));
            // Only the command register is modelled as writable.
            let mut c = self.config.lock().unwrap_or_else(|p| p.into_inner());
            for (i, b) in data.iter().enumerate() {
                let at = offset as usize + i;
                if (4..6).contains(&at) {
                    c[at] = *b;
                }
            }
            return;
        }
        self.log().bar_writes.push((index, offset, data.to_vec()));
        let mut bars = self.data.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(dst) = bars.get_mut(index as usize).and_then(|b| {
            let o = usize::try_from(offset).ok()?;
            b.get_mut(o..o.checked_add(data.len())?)
        }) {
            dst.copy_from_slice(data);
        }
    }

    fn region_size(&self, index: u32) -> u64 {
        match index {
            VFIO_PCI_CONFIG_REGION_INDEX => 256,
            i => self.sizes.get(i as usize).copied().unwrap_or(0),
        }
    }

    fn region_flags(&self, index: u32) -> u32 {
        let rw = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;
        match self.mappable.get(index as usize) {
            Some(true) => rw | VFIO_REGION_INFO_FLAG_MMAP,
            Some(false) => rw,
            None => rw,
        }
    }

    fn mmap_region(&self, index: u32, size: u64) -> io::Result<u64> {
        if !self.mappable.get(index as usize).copied().unwrap_or(false) {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        let addr = FAKE_HOST + (u64::from(index) << 32);
        self.log().mmaps.push((addr, size));
        Ok(addr)
    }

    fn munmap_region(&self, host_addr: u64, size: u64) {
        self.log().mmaps.retain(|m| *m != (host_addr, size));
    }

    fn enable_msix(&self, fds: &[&EventFd]) -> io::Result<()> {
        self.log().msix = Some(fds.len());
        Ok(())
    }

    fn disable_msix(&self) -> io::Result<()> {
        self.log().msix = None;
        Ok(())
    }

    fn enable_msi(&self, fds: &[&EventFd]) -> io::Result<()> {
        self.log().msi = Some(fds.len());
        Ok(())
    }

    fn disable_msi(&self) -> io::Result<()> {
        self.log().msi = None;
        Ok(())
    }
}
