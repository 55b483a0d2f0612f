//! [`VfioAccess`]: what the passthrough model needs of a VFIO device
//! (its regions, mmap of its BARs, its MSI/MSI-X triggers, reset), so the
//! model can be tested and fuzzed over a fake device region. The real
//! implementation is `vfio_ioctls::VfioDevice`.

use std::io;
use std::os::fd::AsRawFd;

use vfio_ioctls::VfioDevice;
use vmm_sys_util::eventfd::EventFd;

/// A VFIO device as the passthrough model uses it.
pub trait VfioAccess: Send + Sync {
    /// Resets the function (`VFIO_DEVICE_RESET`, when supported).
    fn reset(&self);
    /// Reads region `index` at `offset` (failures read as the kernel left
    /// the buffer).
    fn region_read(&self, index: u32, data: &mut [u8], offset: u64);
    /// Writes region `index` at `offset`.
    fn region_write(&self, index: u32, data: &[u8], offset: u64);
    /// Size of region `index` (0: none).
    fn region_size(&self, index: u32) -> u64;
    /// `VFIO_REGION_INFO_FLAG_*` of region `index`.
    fn region_flags(&self, index: u32) -> u32;
    /// Maps `size` bytes of region `index` into this process; returns the
    /// host address.
    fn mmap_region(&self, index: u32, size: u64) -> io::Result<u64>;
    /// Undoes [`VfioAccess::mmap_region`].
    fn munmap_region(&self, host_addr: u64, size: u64);
    /// Arms MSI-X with one eventfd per vector.
    fn enable_msix(&self, fds: &[&EventFd]) -> io::Result<()>;
    /// Disarms MSI-X.
    fn disable_msix(&self) -> io::Result<()>;
    /// Arms MSI with one eventfd per vector.
    fn enable_msi(&self, fds: &[&EventFd]) -> io::Result<()>;
    /// Disarms MSI.
    fn disable_msi(&self) -> io::Result<()>;
}

fn io_error(e: vfio_ioctls::VfioError) -> io::Error {
    io::Error::other(e.to_string())
}

impl VfioAccess for VfioDevice {
    fn reset(&self) {
        VfioDevice::reset(self);
    }

    fn region_read(&self, index: u32, data: &mut [u8], offset: u64) {
        VfioDevice::region_read(self, index, data, offset);
    }

    fn region_write(&self, index: u32, data: &[u8], offset: u64) {
        VfioDevice::region_write(self, index, data, offset);
    }

    fn region_size(&self, index: u32) -> u64 {
        self.get_region_size(index)
    }

    fn region_flags(&self, index: u32) -> u32 {
        self.get_region_flags(index)
    }

    fn mmap_region(&self, index: u32, size: u64) -> io::Result<u64> {
        let offset = self.get_region_offset(index);
        let len = usize::try_from(size).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        let offset = libc::off_t::try_from(offset)
            .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        // SAFETY: a fresh shared mapping of the device fd at the region's
        // offset, as VFIO documents for mmap-able regions; the kernel checks
        // the bounds and the caller owns the result until munmap_region.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                self.as_raw_fd(),
                offset,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(ptr as u64)
    }

    fn munmap_region(&self, host_addr: u64, size: u64) {
        // SAFETY: unmapping exactly a mapping mmap_region created, which
        // its owner no longer uses.
        unsafe { libc::munmap(host_addr as *mut libc::c_void, size as usize) };
    }

    fn enable_msix(&self, fds: &[&EventFd]) -> io::Result<()> {
        VfioDevice::enable_msix(self, fds.to_vec()).map_err(io_error)
    }

    fn disable_msix(&self) -> io::Result<()> {
        VfioDevice::disable_msix(self).map_err(io_error)
    }

    fn enable_msi(&self, fds: &[&EventFd]) -> io::Result<()> {
        VfioDevice::enable_msi(self, fds.to_vec()).map_err(io_error)
    }

    fn disable_msi(&self) -> io::Result<()> {
        VfioDevice::disable_msi(self).map_err(io_error)
    }
}
