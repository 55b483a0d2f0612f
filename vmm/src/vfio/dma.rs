//! DMA for devices behind the virtio-iommu: the VFIO map/unmap ioctls
//! minivmm issues itself (permissions kept, unmap-all), and the
//! virtio-iommu back-end that shadows guest mappings into containers.

use std::collections::BTreeMap;
use std::sync::Arc;

use devices::virtio::iommu::{DmaBackend, DmaError, DmaPerm};

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

vmm_sys_util::ioctl_io_nr!(VFIO_IOMMU_MAP_DMA, VFIO_TYPE, VFIO_BASE + 13);
vmm_sys_util::ioctl_io_nr!(VFIO_IOMMU_UNMAP_DMA, VFIO_TYPE, VFIO_BASE + 14);
const VFIO_DMA_UNMAP_FLAG_ALL: u32 = 2;
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
        vmm_sys_util::ioctl::ioctl_with_ref(
            &std::os::fd::AsRawFd::as_raw_fd(container),
            VFIO_IOMMU_MAP_DMA(),
            &map,
        )
    };
    if ret < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Removes every mapping of `container` (`VFIO_DMA_UNMAP_FLAG_ALL`).
fn dma_unmap_all(container: &vfio_ioctls::VfioContainer) -> std::io::Result<()> {
    let unmap = DmaMap {
        argsz: std::mem::size_of::<DmaMap>() as u32,
        flags: VFIO_DMA_UNMAP_FLAG_ALL,
        vaddr: 0,
        iova: 0,
        size: 0,
    };
    // SAFETY: the ioctl reads and writes one struct we own (the unmap
    // layout starts like the map one: argsz, flags, then iova/size, and the
    // kernel reads only argsz bytes); the container fd is valid.
    let ret = unsafe {
        vmm_sys_util::ioctl::ioctl_with_ref(
            &std::os::fd::AsRawFd::as_raw_fd(container),
            VFIO_IOMMU_UNMAP_DMA(),
            &unmap,
        )
    };
    if ret < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// The virtio-iommu's DMA back-end for assigned devices: one VFIO container
/// per endpoint (so a domain shared by k assigned endpoints costs k ioctls
/// per MAP), guest MAP/UNMAP shadowed into it with their permissions.
///
/// It remembers each domain's mappings so that an endpoint joining a domain
/// that already has some gets them replayed, and one leaving is emptied.
pub struct VfioDomains {
    memory: vm_memory::GuestMemoryMmap,
    containers: BTreeMap<u32, Arc<vfio_ioctls::VfioContainer>>,
    attached: BTreeMap<u32, (u32, bool)>,
    mappings: BTreeMap<u32, BTreeMap<u64, (u64, u64, DmaPerm)>>,
}

impl VfioDomains {
    /// A back-end for `containers` (endpoint ID -> its container).
    pub fn new(
        memory: vm_memory::GuestMemoryMmap,
        containers: BTreeMap<u32, Arc<vfio_ioctls::VfioContainer>>,
    ) -> Self {
        Self {
            memory,
            containers,
            attached: BTreeMap::new(),
            mappings: BTreeMap::new(),
        }
    }

    fn map_into(
        &self,
        container: &vfio_ioctls::VfioContainer,
        iova: u64,
        size: u64,
        phys: u64,
        perm: DmaPerm,
    ) -> Result<(), DmaError> {
        let host = self.host_addr(phys, size)?;
        dma_map(container, iova, size, host, perm.read, perm.write).map_err(|e| {
            match e.raw_os_error() {
                Some(libc::ENOSPC) | Some(libc::ENOMEM) => DmaError::NoResources(e.to_string()),
                _ => DmaError::Failed(format!("VFIO_IOMMU_MAP_DMA {iova:#x}+{size:#x}: {e}")),
            }
        })
    }

    fn containers_of(&self, domain: u32) -> Vec<Arc<vfio_ioctls::VfioContainer>> {
        self.attached
            .iter()
            .filter(|(_, (d, bypass))| *d == domain && !bypass)
            .filter_map(|(ep, _)| self.containers.get(ep).cloned())
            .collect()
    }

    fn host_addr(&self, phys: u64, size: u64) -> Result<u64, DmaError> {
        use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryRegion};
        let region = self
            .memory
            .find_region(GuestAddress(phys))
            .ok_or_else(|| DmaError::Failed(format!("{phys:#x} is not guest RAM")))?;
        let offset = phys - region.start_addr().0;
        if offset + size > region.len() {
            return Err(DmaError::Failed(format!(
                "{phys:#x}+{size:#x} crosses the end of guest RAM"
            )));
        }
        Ok(region.as_ptr() as u64 + offset)
    }
}

impl DmaBackend for VfioDomains {
    fn map(
        &mut self,
        domain: u32,
        iova: u64,
        size: u64,
        phys: u64,
        perm: DmaPerm,
    ) -> Result<(), DmaError> {
        let containers = self.containers_of(domain);
        if perm.mmio && !containers.is_empty() {
            return Err(DmaError::Unsupported(
                "MMIO mappings for assigned devices".into(),
            ));
        }
        for c in &containers {
            self.map_into(c, iova, size, phys, perm)?;
        }
        self.mappings
            .entry(domain)
            .or_default()
            .insert(iova, (size, phys, perm));
        Ok(())
    }

    fn unmap(&mut self, domain: u32, iova: u64, size: u64) -> Result<(), DmaError> {
        if let Some(m) = self.mappings.get_mut(&domain) {
            m.remove(&iova);
        }
        for c in self.containers_of(domain) {
            c.vfio_dma_unmap(iova, size as usize).map_err(|e| {
                DmaError::Failed(format!("VFIO_IOMMU_UNMAP_DMA {iova:#x}+{size:#x}: {e}"))
            })?;
        }
        Ok(())
    }

    fn attach(&mut self, endpoint: u32, domain: u32, bypass: bool) -> Result<(), DmaError> {
        let Some(container) = self.containers.get(&endpoint).cloned() else {
            return Ok(());
        };
        if self.attached.remove(&endpoint).is_some() {
            dma_unmap_all(&container)
                .map_err(|e| DmaError::Failed(format!("emptying endpoint {endpoint}: {e}")))?;
        }
        if bypass {
            // SAFETY: guest RAM stays mapped for the VM's lifetime.
            unsafe { container.vfio_map_guest_memory(&self.memory) }
                .map_err(|e| DmaError::Failed(format!("identity map for bypass: {e}")))?;
        } else if let Some(existing) = self.mappings.get(&domain) {
            for (iova, (size, phys, perm)) in existing {
                self.map_into(&container, *iova, *size, *phys, *perm)?;
            }
        }
        self.attached.insert(endpoint, (domain, bypass));
        Ok(())
    }

    fn detach(&mut self, endpoint: u32, _domain: u32) {
        if self.attached.remove(&endpoint).is_none() {
            return;
        }
        if let Some(c) = self.containers.get(&endpoint) {
            if let Err(e) = dma_unmap_all(c) {
                log::warn!("vfio: cannot empty endpoint {endpoint} on detach: {e}");
            }
        }
    }
}
