//! What the planner produces: the guest address map, and what the
//! virtio-iommu must tell the guest about it.

use std::ops::RangeInclusive;

use super::span::Span;
use crate::RamRegion;

/// A virtio-iommu `RESV_MEM` subtype.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ResvKind {
    /// `VIRTIO_IOMMU_RESV_MEM_T_RESERVED`: the guest must not map it.
    Reserved,
    /// `VIRTIO_IOMMU_RESV_MEM_T_MSI`: the MSI doorbell window.
    Msi,
}

/// One `RESV_MEM` property of the PROBE reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResvRegion {
    /// The IOVAs, both ends inclusive.
    pub span: Span,
    /// Reserved or MSI.
    pub kind: ResvKind,
}

/// A `direct` host region the VMM must map 1:1 (IOVA = host physical
/// address) for its device; only with `--allow-direct-regions`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IdentityMap {
    /// The addresses, both ends inclusive.
    pub span: Span,
    /// The device (or file) it belongs to.
    pub source: String,
}

/// A guest physical range that is not usable RAM, and why.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Hole {
    /// The addresses, both ends inclusive.
    pub span: Span,
    /// Every reason, most specific first, joined by "; ".
    pub reason: String,
}

/// The planned guest physical address map.
///
/// Windows given as `(base, size)` have the shape of the constants of the
/// architectures' `layout` modules; everything an IOMMU sees is an
/// inclusive [`Span`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestMap {
    /// Guest RAM in address order; sizes add up to the requested memory.
    /// On x86 a drop-in replacement for `crate::x86_64::layout::ram_regions`.
    pub ram: Vec<RamRegion>,
    /// The 32-bit PCI MMIO window `(base, size)`.
    pub mmio32: (u64, u64),
    /// ECAM `(base, size)`.
    pub ecam: (u64, u64),
    /// The guest MSI window (where guest MSIs are written; x86: the LAPIC
    /// range `0xfee00000-0xfeefffff`; arm64: the ITS's GITS_TRANSLATER
    /// page, chosen by the planner).
    pub msi_window: Span,
    /// The 64-bit PCI MMIO window `(base, size)`: above RAM, 1 GiB aligned.
    pub mmio64: (u64, u64),
    /// The virtio-iommu `input_range`.
    pub iommu_input_range: Span,
    /// The virtio-iommu PROBE `RESV_MEM` list for assigned devices'
    /// endpoints, sorted, non-overlapping.
    pub probe_reserved: Vec<ResvRegion>,
    /// `direct` regions to identity-map (only with `--allow-direct-regions`).
    pub identity_maps: Vec<IdentityMap>,
    /// Every range below `max(top of RAM, the platform's device area)` the
    /// guest must not use as RAM (x86: absent from the e820 map or reserved
    /// in it), with its reasons.
    pub holes: Vec<Hole>,
    /// Compromises the planner made (e.g. a window outside the IOVA ranges).
    pub notes: Vec<String>,
}

impl GuestMap {
    /// One past the last RAM address.
    pub fn ram_end(&self) -> u64 {
        self.ram.last().map_or(0, RamRegion::end)
    }

    /// The IOVAs the virtio-iommu lets the guest map: its input range less
    /// the PROBE reserved regions (MSI included).
    pub fn iommu_usable(&self) -> Vec<Span> {
        let reserved: Vec<Span> = self.probe_reserved.iter().map(|r| r.span).collect();
        super::span::uncovered(&[self.iommu_input_range], &reserved)
    }

    /// The virtio-iommu `input_range` as a Rust range.
    pub fn input_range(&self) -> RangeInclusive<u64> {
        self.iommu_input_range.start..=self.iommu_input_range.end
    }
}
