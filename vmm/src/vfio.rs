//! Passthrough devices on the host side: checks a BDF can be assigned
//! (exists, bound to vfio-pci, viable group, VFIO present) with errors that
//! say how to fix it, opens it through VFIO, and maps BARs into the guest
//! through KVM memory slots.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use devices::vfio::MemorySlots;
use devices::virtio::iommu::{DmaBackend, DmaError, DmaPerm};
use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::VmFd;

/// Where sysfs lists PCI devices.
const PCI_DEVICES: &str = "/sys/bus/pci/devices";

/// Why a device cannot be assigned.
#[derive(Debug, thiserror::Error)]
pub enum VfioError {
    /// Malformed BDF.
    #[error("invalid --vfio device '{0}': give a PCI address such as 0000:01:00.0")]
    BadBdf(String),
    /// No such device.
    #[error("no PCI device {0} on this host (list them with lspci -D)")]
    NoDevice(String),
    /// Not bound to vfio-pci.
    #[error("{bdf} is bound to {driver}, not vfio-pci: bind it with `echo vfio-pci > /sys/bus/pci/devices/{bdf}/driver_override; echo {bdf} > /sys/bus/pci/devices/{bdf}/driver/unbind; echo {bdf} > /sys/bus/pci/drivers_probe`")]
    NotVfio {
        /// Device.
        bdf: String,
        /// Its current driver ("no driver" when unbound).
        driver: String,
    },
    /// No IOMMU group: the host IOMMU is off.
    #[error("{0} has no IOMMU group: enable the host IOMMU (intel_iommu=on or amd_iommu=on on the host kernel command line)")]
    NoGroup(String),
    /// Other devices in the group are still owned by host drivers.
    #[error("the IOMMU group {group} of {bdf} is not viable: {others} must also be bound to vfio-pci (or unbound)")]
    GroupNotViable {
        /// Device.
        bdf: String,
        /// Group number.
        group: String,
        /// The offending devices and drivers.
        others: String,
    },
    /// No VFIO on the host.
    #[error("/dev/vfio/vfio does not exist: load VFIO with `modprobe vfio-pci`")]
    NoVfio,
    /// VFIO refused the IOMMU set-up for lack of interrupt remapping.
    #[error("VFIO refused {bdf} (EPERM): the host has no interrupt remapping, so the device could forge MSIs into any guest or the host. Enable it (intel_iommu=on with intremap, or amd_iommu=on), or accept the risk with `modprobe vfio_iommu_type1 allow_unsafe_interrupts=1`")]
    NoInterruptRemapping {
        /// Device.
        bdf: String,
    },
    /// Any other VFIO failure.
    #[error("cannot open {bdf} through VFIO")]
    Open {
        /// Device.
        bdf: String,
        /// Why.
        #[source]
        source: vfio_ioctls::VfioError,
    },
    /// DMA mapping of guest RAM failed.
    #[error("cannot map guest memory for DMA by {bdf}")]
    DmaMap {
        /// Device.
        bdf: String,
        /// Why.
        #[source]
        source: vfio_ioctls::VfioError,
    },
}

/// Normalizes `bdf` to `DDDD:BB:DD.F`.
pub fn normalize_bdf(bdf: &str) -> Result<String, VfioError> {
    let bad = || VfioError::BadBdf(bdf.to_string());
    let full = if bdf.matches(':').count() == 1 {
        format!("0000:{bdf}")
    } else {
        bdf.to_string()
    };
    let (domain, rest) = full.split_once(':').ok_or_else(bad)?;
    let (bus, rest) = rest.split_once(':').ok_or_else(bad)?;
    let (dev, func) = rest.split_once('.').ok_or_else(bad)?;
    let hex = |s: &str, len: usize, max: u32| {
        (s.len() == len && s.chars().all(|c| c.is_ascii_hexdigit()))
            .then(|| u32::from_str_radix(s, 16).ok())
            .flatten()
            .filter(|v| *v <= max)
    };
    match (
        hex(domain, 4, 0xffff),
        hex(bus, 2, 0xff),
        hex(dev, 2, 0x1f),
        hex(func, 1, 7),
    ) {
        (Some(_), Some(_), Some(_), Some(_)) => Ok(full.to_ascii_lowercase()),
        _ => Err(bad()),
    }
}

fn driver_of(device: &Path) -> Option<String> {
    std::fs::read_link(device.join("driver"))
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
}

/// Checks that `bdf` can be assigned; returns its sysfs directory. `sysfs`
/// is the PCI devices directory (a parameter for tests).
pub fn check_assignable(bdf: &str, sysfs: &Path) -> Result<PathBuf, VfioError> {
    let dir = sysfs.join(bdf);
    if !dir.exists() {
        return Err(VfioError::NoDevice(bdf.to_string()));
    }
    match driver_of(&dir).as_deref() {
        Some("vfio-pci") => {}
        other => {
            return Err(VfioError::NotVfio {
                bdf: bdf.to_string(),
                driver: other.unwrap_or("no driver").to_string(),
            })
        }
    }
    let group_link = std::fs::read_link(dir.join("iommu_group"))
        .map_err(|_| VfioError::NoGroup(bdf.to_string()))?;
    let group = group_link
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut others = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir.join("iommu_group").join("devices")) {
        let mut names: Vec<_> = entries.flatten().map(|e| e.file_name()).collect();
        names.sort();
        for name in names {
            let member = sysfs.join(&name);
            match driver_of(&member).as_deref() {
                None | Some("vfio-pci") | Some("pcieport") => {}
                Some(driver) => others.push(format!("{} ({driver})", name.to_string_lossy())),
            }
        }
    }
    if !others.is_empty() {
        return Err(VfioError::GroupNotViable {
            bdf: bdf.to_string(),
            group,
            others: others.join(", "),
        });
    }
    if !Path::new("/dev/vfio/vfio").exists() {
        return Err(VfioError::NoVfio);
    }
    Ok(dir)
}

/// Checks with the real sysfs.
pub fn check_host_device(bdf: &str) -> Result<PathBuf, VfioError> {
    check_assignable(bdf, Path::new(PCI_DEVICES))
}

/// Maps passthrough BARs into the guest as KVM memory slots.
pub struct KvmSlots {
    vm: Arc<VmFd>,
    state: Mutex<SlotState>,
}

struct SlotState {
    next: u32,
    live: BTreeMap<u32, kvm_userspace_memory_region>,
}

impl KvmSlots {
    /// Slots numbered from `first` (above those holding guest RAM).
    pub fn new(vm: Arc<VmFd>, first: u32) -> Self {
        Self {
            vm,
            state: Mutex::new(SlotState {
                next: first,
                live: BTreeMap::new(),
            }),
        }
    }
}

impl MemorySlots for KvmSlots {
    fn map(&self, gpa: u64, size: u64, host_addr: u64) -> std::io::Result<u32> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let slot = state.next;
        let region = kvm_userspace_memory_region {
            slot,
            guest_phys_addr: gpa,
            memory_size: size,
            userspace_addr: host_addr,
            flags: 0,
        };
        // SAFETY: host_addr..+size is a live mmap of a device BAR owned by
        // the VFIO device, which removes this slot before unmapping it.
        unsafe { self.vm.set_user_memory_region(region) }
            .map_err(|e| std::io::Error::from_raw_os_error(e.errno()))?;
        state.next += 1;
        state.live.insert(slot, region);
        Ok(slot)
    }

    fn unmap(&self, slot: u32) -> std::io::Result<()> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let Some(mut region) = state.live.remove(&slot) else {
            return Ok(());
        };
        region.memory_size = 0;
        // SAFETY: deleting a slot (size 0) touches no host memory.
        unsafe { self.vm.set_user_memory_region(region) }
            .map_err(|e| std::io::Error::from_raw_os_error(e.errno()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bdfs_are_normalized_and_validated() {
        assert_eq!(normalize_bdf("01:00.0").expect("short"), "0000:01:00.0");
        assert_eq!(normalize_bdf("0000:0A:1f.7").expect("full"), "0000:0a:1f.7");
        for bad in [
            "",
            "1:0.0",
            "0000:01:00",
            "0000:01:20.0",
            "0000:01:00.8",
            "zz:00.0",
            "0000:01:00.0x",
        ] {
            assert!(
                matches!(normalize_bdf(bad), Err(VfioError::BadBdf(_))),
                "{bad}"
            );
        }
    }

    fn fake_sysfs(tag: &str) -> PathBuf {
        let root = std::env::temp_dir().join(format!("minivmm-vfio-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("drivers/e1000e")).expect("mkdir");
        std::fs::create_dir_all(root.join("drivers/vfio-pci")).expect("mkdir");
        std::fs::create_dir_all(root.join("groups/7/devices")).expect("mkdir");
        std::fs::create_dir_all(root.join("devices")).expect("mkdir");
        root
    }

    fn add_device(root: &Path, bdf: &str, driver: Option<&str>, group: &str) {
        let dev = root.join("devices").join(bdf);
        std::fs::create_dir_all(&dev).expect("mkdir");
        if let Some(d) = driver {
            std::os::unix::fs::symlink(root.join("drivers").join(d), dev.join("driver"))
                .expect("link");
        }
        std::os::unix::fs::symlink(root.join("groups").join(group), dev.join("iommu_group"))
            .expect("link");
        std::os::unix::fs::symlink(
            &dev,
            root.join("groups").join(group).join("devices").join(bdf),
        )
        .expect("link");
    }

    #[test]
    fn unbound_and_non_viable_devices_are_explained() {
        let root = fake_sysfs("viable");
        let devices = root.join("devices");
        assert!(matches!(
            check_assignable("0000:09:00.0", &devices),
            Err(VfioError::NoDevice(_))
        ));
        add_device(&root, "0000:01:00.0", Some("e1000e"), "7");
        let err = check_assignable("0000:01:00.0", &devices).expect_err("bound to e1000e");
        assert!(err.to_string().contains("bound to e1000e"), "{err}");
        assert!(err.to_string().contains("driver_override"), "{err}");
        std::fs::remove_file(devices.join("0000:01:00.0/driver")).expect("unbind");
        std::os::unix::fs::symlink(
            root.join("drivers/vfio-pci"),
            devices.join("0000:01:00.0/driver"),
        )
        .expect("bind");
        add_device(&root, "0000:01:00.1", Some("e1000e"), "7");
        let err = check_assignable("0000:01:00.0", &devices).expect_err("group shared");
        assert!(err.to_string().contains("0000:01:00.1 (e1000e)"), "{err}");
        let _ = std::fs::remove_dir_all(root);
    }
}

/// Opens the vfio-pci device in `dir` through `container`, turning VFIO's
/// refusals into errors that say what to do.
pub fn open_device(
    bdf: &str,
    dir: &Path,
    container: Arc<vfio_ioctls::VfioContainer>,
) -> Result<Arc<vfio_ioctls::VfioDevice>, VfioError> {
    vfio_ioctls::VfioDevice::new(dir, container, false)
        .map(Arc::new)
        .map_err(|source| match &source {
            vfio_ioctls::VfioError::ContainerSetIOMMU(e) if e.errno() == libc::EPERM => {
                VfioError::NoInterruptRemapping {
                    bdf: bdf.to_string(),
                }
            }
            vfio_ioctls::VfioError::GroupViable => VfioError::GroupNotViable {
                bdf: bdf.to_string(),
                group: "?".into(),
                others: "another device of its group".into(),
            },
            _ => VfioError::Open {
                bdf: bdf.to_string(),
                source,
            },
        })
}

/// `struct vfio_iommu_type1_dma_map`.
#[repr(C)]
struct DmaMap {
    argsz: u32,
    flags: u32,
    vaddr: u64,
    iova: u64,
    size: u64,
}

const VFIO_TYPE: u32 = b';' as u32;
const VFIO_BASE: u32 = 100;
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

vmm_sys_util::ioctl_io_nr!(VFIO_IOMMU_GET_INFO, VFIO_TYPE, VFIO_BASE + 12);
const VFIO_IOMMU_INFO_PGSIZES: u32 = 1;
const VFIO_IOMMU_INFO_CAPS: u32 = 2;
const VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE: u16 = 1;
/// `struct vfio_iommu_type1_info` without its capability chain.
const INFO_HEADER: usize = 24;

/// What a container's IOMMU accepts: IOVA ranges (inclusive) and the
/// supported page sizes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IommuInfo {
    /// Usable IOVA ranges; empty when the kernel did not say.
    pub iova_ranges: Vec<(u64, u64)>,
    /// Page-size bitmap; 0 when the kernel did not say.
    pub page_sizes: u64,
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Parses a `vfio_iommu_type1_info` buffer with its capability chain.
fn parse_iommu_info(buf: &[u8]) -> IommuInfo {
    let mut info = IommuInfo::default();
    let flags = u32_at(buf, 4).unwrap_or(0);
    if flags & VFIO_IOMMU_INFO_PGSIZES != 0 {
        info.page_sizes = u64_at(buf, 8).unwrap_or(0);
    }
    if flags & VFIO_IOMMU_INFO_CAPS == 0 {
        return info;
    }
    let mut at = u32_at(buf, 16).unwrap_or(0) as usize;
    let mut hops = 0;
    while at >= INFO_HEADER && hops < 16 {
        hops += 1;
        let Some(header) = u32_at(buf, at) else { break };
        let id = (header & 0xffff) as u16;
        let next = u32_at(buf, at + 4).unwrap_or(0) as usize;
        if id == VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE {
            let count = u32_at(buf, at + 8).unwrap_or(0) as usize;
            for i in 0..count.min(64) {
                let base = at + 16 + i * 16;
                if let (Some(start), Some(end)) = (u64_at(buf, base), u64_at(buf, base + 8)) {
                    info.iova_ranges.push((start, end));
                }
            }
        }
        if next <= at {
            break;
        }
        at = next;
    }
    info
}

/// Asks `container` (which must have a group and its IOMMU set) what it
/// accepts (`VFIO_IOMMU_GET_INFO`).
pub fn iommu_info(container: &vfio_ioctls::VfioContainer) -> std::io::Result<IommuInfo> {
    let fd = std::os::fd::AsRawFd::as_raw_fd(container);
    let mut buf = vec![0u8; INFO_HEADER];
    for _ in 0..2 {
        let len = buf.len() as u32;
        buf[0..4].copy_from_slice(&len.to_le_bytes());
        // SAFETY: the kernel writes at most argsz (= buf.len()) bytes into
        // buf, which we own and which lives across the call.
        let ret = unsafe {
            vmm_sys_util::ioctl::ioctl_with_mut_ptr(&fd, VFIO_IOMMU_GET_INFO(), buf.as_mut_ptr())
        };
        if ret < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let needed = u32_at(&buf, 0).unwrap_or(0) as usize;
        if needed <= buf.len() {
            return Ok(parse_iommu_info(&buf));
        }
        buf.resize(needed.min(1 << 16), 0);
    }
    Ok(parse_iommu_info(&buf))
}

#[cfg(test)]
mod info_tests {
    use super::*;

    #[test]
    fn iova_range_capability_is_parsed() {
        // Header: argsz, flags (pgsizes|caps), pgsizes, cap_offset, pad;
        // then the IOVA range capability with two ranges (intel-iommu's).
        let mut b = Vec::new();
        b.extend(72u32.to_le_bytes());
        b.extend(3u32.to_le_bytes());
        b.extend(0x4020_1000u64.to_le_bytes());
        b.extend(24u32.to_le_bytes());
        b.extend(0u32.to_le_bytes());
        b.extend((1u32 | (1 << 16)).to_le_bytes());
        b.extend(0u32.to_le_bytes());
        b.extend(2u32.to_le_bytes());
        b.extend(0u32.to_le_bytes());
        for (s, e) in [(0u64, 0xfedf_ffffu64), (0xfef0_0000, 0x7f_ffff_ffff)] {
            b.extend(s.to_le_bytes());
            b.extend(e.to_le_bytes());
        }
        let info = parse_iommu_info(&b);
        assert_eq!(info.page_sizes, 0x4020_1000);
        assert_eq!(
            info.iova_ranges,
            vec![(0, 0xfedf_ffff), (0xfef0_0000, 0x7f_ffff_ffff)]
        );
    }

    #[test]
    fn truncated_or_looping_chains_stop() {
        let mut b = vec![0u8; 24];
        b[4] = 2;
        b[16] = 24;
        b.extend([1, 0, 1, 0, 24, 0, 0, 0]);
        assert_eq!(parse_iommu_info(&b), IommuInfo::default());
    }
}
