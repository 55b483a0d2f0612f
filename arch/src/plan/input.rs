//! What the planner is given: the guest's size and the host's constraints.
//!
//! The host side is produced by the `host-iommu` crate (sysfs
//! `reserved_regions`, `--host-regions` files) and by the VFIO code (IOVA
//! ranges and page sizes); this module only defines the types, so the
//! planner stays free of I/O.

use std::fmt;

use super::span::Span;

/// The type of a host reserved region, as Linux names it in
/// `/sys/kernel/iommu_groups/N/reserved_regions`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HostRegionKind {
    /// `direct`: the device's firmware DMAs here (VT-d RMRR, AMD unity map);
    /// the IOVA must map 1:1 to the same host physical address.
    Direct,
    /// `direct-relaxable`: an RMRR the kernel may drop once the device is
    /// assigned (USB and graphics devices), still identity-mapped here.
    DirectRelaxable,
    /// `reserved`: never mappable (e.g. AMD's HyperTransport hole).
    Reserved,
    /// `msi` (also `sw-msi`): the MSI doorbell window.
    Msi,
}

impl HostRegionKind {
    /// The name Linux prints for this type.
    pub fn name(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::DirectRelaxable => "direct-relaxable",
            Self::Reserved => "reserved",
            Self::Msi => "msi",
        }
    }

    /// Whether the region needs an identity mapping (an RMRR).
    pub fn is_direct(self) -> bool {
        matches!(self, Self::Direct | Self::DirectRelaxable)
    }
}

impl fmt::Display for HostRegionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One host reserved region: an IOVA range the host IOMMU treats specially.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HostRegion {
    /// The addresses, both ends inclusive.
    pub span: Span,
    /// What the host uses it for.
    pub kind: HostRegionKind,
    /// Where it comes from: a PCI address (`0000:01:00.0`) or a file path.
    pub source: String,
}

impl fmt::Display for HostRegion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}) of {}", self.span, self.kind, self.source)
    }
}

/// A range of IOVAs the host IOMMU can map (VFIO's IOVA range capability).
pub type IovaRange = Span;

/// Everything the host imposes on the guest address map.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostConstraints {
    /// Reserved regions of every assigned device's IOMMU group and of every
    /// `--host-regions` file, in any order (the planner sorts them).
    pub regions: Vec<HostRegion>,
    /// IOVAs every host IOMMU involved can map, or `None` when unknown
    /// (no VFIO container yet): then only `regions` constrain the map.
    pub iova_ranges: Option<Vec<IovaRange>>,
    /// Who reported `iova_ranges` (for messages).
    pub iova_sources: Vec<String>,
    /// Smallest IOMMU page size every host IOMMU supports, if known.
    pub page_size: Option<u64>,
}

impl HostConstraints {
    /// Restricts the usable IOVAs to those `source` can also map: the
    /// result is the intersection of every call's ranges.
    pub fn add_iova_ranges(&mut self, source: &str, ranges: &[IovaRange]) {
        let next = match &self.iova_ranges {
            None => ranges.to_vec(),
            Some(current) => {
                let a = super::span::normalize(current.iter().map(Span::iv).collect());
                let b = super::span::normalize(ranges.iter().map(Span::iv).collect());
                super::span::intersect(&a, &b)
                    .into_iter()
                    .map(Span::from_iv)
                    .collect()
            }
        };
        self.iova_ranges = Some(next);
        self.iova_sources.push(source.to_string());
    }

    /// Records an IOMMU's supported page sizes (VFIO `iova_pgsizes`: a bit
    /// per size). The map is then aligned to the largest smallest size.
    pub fn add_page_sizes(&mut self, pgsizes: u64) {
        if pgsizes == 0 {
            return;
        }
        let smallest = 1u64 << pgsizes.trailing_zeros();
        self.page_size = Some(self.page_size.map_or(smallest, |p| p.max(smallest)));
    }
}

/// Default size of the 64-bit PCI MMIO window.
pub const PCI_MMIO64_SIZE: u64 = 64 << 30;

/// What the guest asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlanInput {
    /// Guest RAM in bytes (a multiple of 4 KiB).
    pub memory: u64,
    /// Size of the 64-bit PCI MMIO window.
    pub mmio64_size: u64,
    /// `--allow-direct-regions`: identity-map `direct` regions instead of
    /// refusing the device.
    pub allow_direct_regions: bool,
}

impl PlanInput {
    /// `memory` bytes of RAM with the default 64-bit window, direct regions
    /// refused.
    pub fn new(memory: u64) -> Self {
        Self {
            memory,
            mmio64_size: PCI_MMIO64_SIZE,
            allow_direct_regions: false,
        }
    }
}
