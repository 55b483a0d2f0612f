//! Placing guest RAM and the 64-bit PCI window around host constraints.

use vm_memory::GuestAddress;

use super::span::{align_down, align_up, normalize, subtract, Iv, SPACE_END};
use super::{Normalized, PlanError, Platform};
use crate::RamRegion;

/// Alignment of the 64-bit PCI window.
const MMIO64_ALIGN: u128 = 1 << 30;

/// The host regions as intervals, widened to `align`.
fn host_intervals(host: &Normalized, align: u128) -> Vec<Iv> {
    normalize(
        host.regions
            .iter()
            .map(|r| {
                let (s, e) = r.span.iv();
                (align_down(s, align), align_up(e, align))
            })
            .collect(),
    )
}

/// What lies outside the IOVA ranges (shrunk to `align`), below 2^64.
fn outside_iova(host: &Normalized, align: u128) -> Vec<Iv> {
    match &host.iova {
        None => Vec::new(),
        Some(iova) => {
            let inside: Vec<Iv> = iova
                .iter()
                .map(|&(s, e)| (align_up(s, align), align_down(e, align)))
                .collect();
            subtract(&[(0, SPACE_END)], &normalize(inside))
        }
    }
}

/// Places `memory` bytes of RAM at the lowest addresses allowed from the
/// platform's fixed low memory on (x86: below the 32-bit MMIO hole first,
/// then from 4 GiB), never over a platform device area, a host region or
/// outside the IOVA ranges.
pub(super) fn ram(
    platform: &dyn Platform,
    memory: u64,
    host: &Normalized,
    align: u64,
) -> Result<Vec<RamRegion>, PlanError> {
    let align = u128::from(align);
    let addr_limit = 1u128 << platform.addr_bits();
    let mut forbidden = host_intervals(host, align);
    forbidden.extend(outside_iova(host, align));
    forbidden.extend(platform.ram_forbidden());
    forbidden.push((0, platform.fixed_low().span.start.into()));
    forbidden.push((addr_limit, SPACE_END));
    let allowed = subtract(&[(0, SPACE_END)], &normalize(forbidden));

    let mut left = u128::from(memory);
    let mut ram = Vec::new();
    for &(start, end) in &allowed {
        if left == 0 {
            break;
        }
        let size = left.min(end - start);
        ram.push(RamRegion {
            start: GuestAddress(start as u64),
            size: size as u64,
        });
        left -= size;
    }
    if left == 0 {
        return Ok(ram);
    }
    let limit = allowed.last().map_or(0, |iv| iv.1);
    let iova_top = host.iova.as_ref().and_then(|v| v.last()).map(|iv| iv.1);
    let (why, fix) = match iova_top {
        Some(top) if top < addr_limit => (
            format!(
                "where the IOVA ranges reported by {} end ({}-bit host IOMMU)",
                host.sources,
                u128::BITS - (top - 1).leading_zeros()
            ),
            ", or use a host whose IOMMU has a wider address width",
        ),
        _ => (
            format!(
                "the {}-bit guest physical address limit",
                platform.addr_bits()
            ),
            "",
        ),
    };
    Err(PlanError::RamDoesNotFit {
        memory_mib: memory >> 20,
        fits_mib: ((u128::from(memory) - left) >> 20) as u64,
        limit,
        why,
        fix,
    })
}

/// The lowest `align`-aligned base at or above `from` where `size` bytes
/// avoid every interval of `forbidden` (normalized) and stay below
/// `addr_limit`.
fn first_fit(from: u128, size: u128, forbidden: &[Iv], addr_limit: u128) -> Option<u128> {
    let mut base = align_up(from, MMIO64_ALIGN);
    loop {
        let end = base + size;
        if end > addr_limit {
            return None;
        }
        match forbidden.iter().find(|iv| iv.0 < end && base < iv.1) {
            Some(iv) => base = align_up(iv.1, MMIO64_ALIGN),
            None => return Some(base),
        }
    }
}

/// Places the 64-bit PCI window above RAM (and the platform's floor, x86:
/// 4 GiB), 1 GiB-aligned, clear of host regions and inside the IOVA ranges
/// when it can be.
pub(super) fn mmio64(
    platform: &dyn Platform,
    ram_end: u64,
    size: u64,
    host: &Normalized,
    notes: &mut Vec<String>,
) -> Result<(u64, u64), PlanError> {
    let addr_limit = 1u128 << platform.addr_bits();
    let from = u128::from(ram_end.max(platform.mmio64_floor()));
    let regions = host_intervals(host, 1);
    let mut strict = regions.clone();
    strict.extend(outside_iova(host, 1));
    let strict = normalize(strict);
    if let Some(base) = first_fit(from, size.into(), &strict, addr_limit) {
        return Ok((base as u64, size));
    }
    let base =
        first_fit(from, size.into(), &regions, addr_limit).ok_or(PlanError::NoRoomForMmio64 {
            size_gib: size >> 30,
            ram_end,
            limit: addr_limit,
        })?;
    notes.push(format!(
        "the 64-bit PCI window {:#x}-{:#x} lies outside the host IOVA ranges: devices cannot \
         reach BARs there by peer-to-peer DMA",
        base,
        base + u128::from(size) - 1
    ));
    Ok((base as u64, size))
}
