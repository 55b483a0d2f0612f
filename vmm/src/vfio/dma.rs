//! DMA for assigned devices behind the virtio-iommu: the VFIO type1
//! map/unmap ioctls minivmm issues itself (permissions kept, the unmapped
//! size the kernel writes back checked, unmap-all probed once), behind the
//! virtio-iommu's `DmaBackend`, one container per endpoint. What goes into
//! each container is decided by the virtio-iommu (`devices`' `host.rs`);
//! this file only knows how to talk to VFIO. Hotplug gives it containers
//! and takes them back at run time ([`VfioContainers`]).

use std::collections::BTreeMap;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};

use devices::virtio::iommu::{DmaBackend, DmaError, HostMapping};
use vfio_bindings::bindings::vfio::{vfio_iommu_type1_dma_unmap, VFIO_UNMAP_ALL};
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryRegion};

use super::info::{VFIO_BASE, VFIO_TYPE};

/// `struct vfio_iommu_type1_dma_map`.
#[repr(C)]
struct DmaMap {
    argsz: u32,
    flags: u32,
    vaddr: u64,
    iova: u64,
    size: u64,
}

vmm_sys_util::ioctl_io_nr!(VFIO_CHECK_EXTENSION, VFIO_TYPE, VFIO_BASE + 1);
vmm_sys_util::ioctl_io_nr!(VFIO_IOMMU_MAP_DMA, VFIO_TYPE, VFIO_BASE + 13);
vmm_sys_util::ioctl_io_nr!(VFIO_IOMMU_UNMAP_DMA, VFIO_TYPE, VFIO_BASE + 14);
const VFIO_DMA_UNMAP_FLAG_ALL: u32 = 1 << 1;
const VFIO_DMA_MAP_FLAG_READ: u32 = 1;
const VFIO_DMA_MAP_FLAG_WRITE: u32 = 2;

/// `VFIO_IOMMU_MAP_DMA` with the permissions asked for (vfio-ioctls always
/// maps read-write; a read-only guest mapping must stay read-only).
fn dma_map(
    container: &vfio_ioctls::VfioContainer,
    iova: u64,
    size: u64,
    host_addr: u64,
    read: bool,
    write: bool,
) -> std::io::Result<()> {
    let mut flags = 0;
    if read {
        flags |= VFIO_DMA_MAP_FLAG_READ;
    }
    if write {
        flags |= VFIO_DMA_MAP_FLAG_WRITE;
    }
    let map = DmaMap {
        argsz: std::mem::size_of::<DmaMap>() as u32,
        flags,
        vaddr: host_addr,
        iova,
        size,
    };
    // SAFETY: the ioctl reads exactly one DmaMap we own; the container fd
    // is valid for the container's lifetime. The host range is guest RAM,
    // which outlives every mapping (the VM unmaps nothing before exit).
    let ret = unsafe {
        vmm_sys_util::ioctl::ioctl_with_ref(&container.as_raw_fd(), VFIO_IOMMU_MAP_DMA(), &map)
    };
    if ret < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `VFIO_IOMMU_UNMAP_DMA` of `iova..iova + size`, or of everything with
/// `all` (then `iova` and `size` must be 0). Returns the number of bytes
/// the kernel says it unmapped (it writes the struct back).
fn dma_unmap(
    container: &vfio_ioctls::VfioContainer,
    iova: u64,
    size: u64,
    all: bool,
) -> std::io::Result<u64> {
    let mut unmap = vfio_iommu_type1_dma_unmap {
        argsz: std::mem::size_of::<vfio_iommu_type1_dma_unmap>() as u32,
        flags: if all { VFIO_DMA_UNMAP_FLAG_ALL } else { 0 },
        iova,
        size,
        ..Default::default()
    };
    // SAFETY: the ioctl reads and writes back exactly one
    // vfio_iommu_type1_dma_unmap we own (argsz says so; no dirty-bitmap
    // flag, so the kernel touches nothing past it); the fd is valid.
    let ret = unsafe {
        vmm_sys_util::ioctl::ioctl_with_mut_ref(
            &container.as_raw_fd(),
            VFIO_IOMMU_UNMAP_DMA(),
            &mut unmap,
        )
    };
    if ret < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(unmap.size)
    }
}

/// Whether the kernel supports `VFIO_DMA_UNMAP_FLAG_ALL` (Linux 5.12+).
fn has_unmap_all(container: &vfio_ioctls::VfioContainer) -> bool {
    // SAFETY: VFIO_CHECK_EXTENSION takes an integer and touches no memory
    // of ours; the fd is valid.
    let ret = unsafe {
        vmm_sys_util::ioctl::ioctl_with_val(
            &container.as_raw_fd(),
            VFIO_CHECK_EXTENSION(),
            VFIO_UNMAP_ALL.into(),
        )
    };
    ret == 1
}

/// The host address `size` bytes at guest-physical `phys` live at, if they
/// lie inside one region of guest RAM.
fn host_addr(memory: &vm_memory::GuestMemoryMmap, phys: u64, size: u64) -> Result<u64, DmaError> {
    let region = memory
        .find_region(GuestAddress(phys))
        .ok_or_else(|| DmaError::Failed(format!("{phys:#x} is not guest RAM")))?;
    let offset = phys - region.start_addr().0;
    match offset.checked_add(size) {
        Some(end) if end <= region.len() => Ok(region.as_ptr() as u64 + offset),
        _ => Err(DmaError::Failed(format!(
            "{phys:#x}+{size:#x} crosses the end of guest RAM"
        ))),
    }
}

type Containers = BTreeMap<u32, Arc<vfio_ioctls::VfioContainer>>;

/// The containers of a [`VfioDma`], by endpoint: hotplug puts a hot-added
/// device's container in before the virtio-iommu gives the endpoint its
/// host address space, and takes it out after that was emptied.
#[derive(Clone, Default)]
pub struct VfioContainers {
    inner: Arc<Mutex<Containers>>,
    /// `VFIO_UNMAP_ALL` support, probed on the first container.
    unmap_all: Arc<Mutex<Option<bool>>>,
}

impl VfioContainers {
    fn lock(&self) -> std::sync::MutexGuard<'_, Containers> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn probe(&self, container: &vfio_ioctls::VfioContainer) {
        let mut known = self.unmap_all.lock().unwrap_or_else(|p| p.into_inner());
        if known.is_none() {
            let has = has_unmap_all(container);
            if !has {
                log::info!(
                    "vfio: no VFIO_UNMAP_ALL (Linux < 5.12): containers are emptied range by range"
                );
            }
            *known = Some(has);
        }
    }

    /// `endpoint` is now served by `container`.
    pub fn insert(&self, endpoint: u32, container: Arc<vfio_ioctls::VfioContainer>) {
        self.probe(&container);
        self.lock().insert(endpoint, container);
    }

    /// `endpoint` has no container any more.
    pub fn remove(&self, endpoint: u32) -> Option<Arc<vfio_ioctls::VfioContainer>> {
        self.lock().remove(&endpoint)
    }
}

/// The host IOMMU of the assigned endpoints behind the virtio-iommu: one
/// VFIO container per endpoint (so a domain shared by k assigned endpoints
/// costs k ioctls per MAP).
pub struct VfioDma {
    memory: vm_memory::GuestMemoryMmap,
    containers: VfioContainers,
}

impl VfioDma {
    /// A back-end for `containers` (endpoint ID -> its container), mapping
    /// from `memory`. Probes unmap-all support once, on the first container.
    pub fn new(memory: vm_memory::GuestMemoryMmap, containers: Containers) -> Self {
        let shared = VfioContainers::default();
        for (endpoint, container) in containers {
            shared.insert(endpoint, container);
        }
        Self {
            memory,
            containers: shared,
        }
    }

    /// The endpoints with a container.
    pub fn endpoints(&self) -> Vec<u32> {
        self.containers.lock().keys().copied().collect()
    }

    /// The containers, for hotplug.
    pub fn containers(&self) -> VfioContainers {
        self.containers.clone()
    }

    fn container(&self, endpoint: u32) -> Result<Arc<vfio_ioctls::VfioContainer>, DmaError> {
        self.containers
            .lock()
            .get(&endpoint)
            .cloned()
            .ok_or_else(|| DmaError::Failed(format!("endpoint {endpoint:#x} has no container")))
    }
}

impl DmaBackend for VfioDma {
    fn map(&mut self, endpoint: u32, m: &HostMapping) -> Result<(), DmaError> {
        if m.perm.mmio {
            return Err(DmaError::Unsupported(
                "MMIO mappings for assigned devices".into(),
            ));
        }
        let host = host_addr(&self.memory, m.phys, m.size)?;
        let container = self.container(endpoint)?;
        dma_map(&container, m.iova, m.size, host, m.perm.read, m.perm.write).map_err(|e| {
            let what = format!("VFIO_IOMMU_MAP_DMA {:#x}+{:#x}: {e}", m.iova, m.size);
            match e.raw_os_error() {
                Some(libc::ENOSPC) | Some(libc::ENOMEM) => DmaError::NoResources(what),
                _ => DmaError::Failed(what),
            }
        })
    }

    fn unmap(&mut self, endpoint: u32, iova: u64, size: u64) -> Result<(), DmaError> {
        let container = self.container(endpoint)?;
        let unmapped = dma_unmap(&container, iova, size, false).map_err(|e| {
            DmaError::Failed(format!("VFIO_IOMMU_UNMAP_DMA {iova:#x}+{size:#x}: {e}"))
        })?;
        // The kernel unmaps only whole mappings inside the range (and
        // refuses to bisect one), so anything up to `size` leaves the range
        // empty; 0 means it already was.
        if unmapped > size {
            return Err(DmaError::Failed(format!(
                "VFIO_IOMMU_UNMAP_DMA {iova:#x}+{size:#x} unmapped {unmapped:#x} bytes"
            )));
        }
        Ok(())
    }

    fn can_unmap_all(&self) -> bool {
        *self
            .containers
            .unmap_all
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            == Some(true)
    }

    fn unmap_all(&mut self, endpoint: u32) -> Result<(), DmaError> {
        if !self.can_unmap_all() {
            return Err(DmaError::Unsupported("VFIO_UNMAP_ALL".into()));
        }
        let container = self.container(endpoint)?;
        dma_unmap(&container, 0, 0, true)
            .map(|_| ())
            .map_err(|e| DmaError::Failed(format!("VFIO_IOMMU_UNMAP_DMA (all): {e}")))
    }
}

#[cfg(test)]
mod tests {
    use vm_memory::GuestMemoryMmap;

    use super::*;

    fn memory() -> GuestMemoryMmap {
        GuestMemoryMmap::from_ranges(&[
            (GuestAddress(0), 0x10_0000),
            (GuestAddress(0x1_0000_0000), 0x10_0000),
        ])
        .expect("memory")
    }

    /// Issue 8, defect 9: `offset + size` is checked (before the fix a
    /// size near 2^64 overflowed: a panic in debug builds, a wrapped
    /// comparison that passed in release builds).
    #[test]
    fn host_range_must_lie_in_one_ram_region() {
        let mem = memory();
        assert!(host_addr(&mem, 0x1000, u64::MAX).is_err());
        assert!(host_addr(&mem, 0x1000, u64::MAX - 0x1000).is_err());
        assert!(
            host_addr(&mem, 0xff000, 0x2000).is_err(),
            "runs off the region"
        );
        assert!(host_addr(&mem, 0x20_0000, 0x1000).is_err(), "not RAM");
        let base = host_addr(&mem, 0, 0x10_0000).expect("whole region");
        assert_eq!(host_addr(&mem, 0x1000, 0x1000).ok(), Some(base + 0x1000));
        assert!(host_addr(&mem, 0x1_0000_0000, 0x10_0000).is_ok());
    }

    /// Issue 8, defect 3: the back-end keeps nothing per domain or mapping
    /// (before the fix it kept a key for every domain ID ever used: 10000
    /// after 10000 domains came and went); an endpoint without a container
    /// is refused.
    #[test]
    fn nothing_is_kept_per_domain_or_mapping() {
        let mut d = VfioDma::new(memory(), BTreeMap::new());
        assert!(d.endpoints().is_empty());
        assert!(!d.can_unmap_all());
        let m = HostMapping {
            iova: 0,
            size: 0x1000,
            phys: 0,
            perm: devices::virtio::iommu::DmaPerm::READ_WRITE,
        };
        for ep in 0..10_000 {
            assert!(d.map(ep, &m).is_err());
            assert!(d.unmap(ep, 0, 0x1000).is_err());
        }
        assert!(matches!(d.unmap_all(1), Err(DmaError::Unsupported(_))));
    }

    #[test]
    fn unmap_struct_is_the_kernel_layout() {
        assert_eq!(std::mem::size_of::<vfio_iommu_type1_dma_unmap>(), 24);
        assert_eq!(std::mem::size_of::<DmaMap>(), 32);
    }
}
