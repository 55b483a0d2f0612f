//! What a VFIO container's IOMMU accepts: IOVA ranges and page sizes
//! (`VFIO_IOMMU_GET_INFO` and its IOVA-range capability).

/// VFIO's ioctl type and first number.
pub(super) const VFIO_TYPE: u32 = b';' as u32;
pub(super) const VFIO_BASE: u32 = 100;
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
