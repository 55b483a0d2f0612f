//! Why no guest address map exists: every error names the colliding
//! region, whom it belongs to, and what to change.

use super::input::HostRegion;
use super::span::Span;

/// The guest's fixed low memory: the first RAM, which holds the kernel and
/// boot data and cannot move.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FixedLow {
    /// Its addresses.
    pub span: Span,
    /// What it holds, for messages ("boot data, ACPI tables, kernel").
    pub contents: &'static str,
}

impl FixedLow {
    /// `[0, 0x4000000)`, `[0x40000000, 0x44000000)`.
    fn range(&self) -> String {
        let end = u128::from(self.span.end) + 1;
        match self.span.start {
            0 => format!("[0, {end:#x})"),
            start => format!("[{start:#x}, {end:#x})"),
        }
    }

    /// Where a device's regions must not be: `below 0x4000000`, `in [..)`.
    fn place(&self) -> String {
        match self.span.start {
            0 => format!("below {:#x}", u128::from(self.span.end) + 1),
            _ => format!("in {}", self.range()),
        }
    }
}

/// The planner could not produce a valid map.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    /// A region whose end lies before its start.
    #[error("host region {start:#x}-{end:#x} of {source_name} ends before it starts")]
    InvalidRegion {
        /// Claimed start.
        start: u64,
        /// Claimed end.
        end: u64,
        /// Where it came from.
        source_name: String,
    },
    /// A host region inside the guest's fixed low memory.
    #[error(
        "host region {region} collides with the guest's fixed low memory {} ({}), which \
         cannot move: assign a different device (one whose iommu_group/reserved_regions lists \
         nothing {}), or leave out the host whose --host-regions file lists it{extra}",
        low.range(), low.contents, low.place()
    )]
    LowMemoryCollision {
        /// The region.
        region: HostRegion,
        /// The fixed low memory.
        low: FixedLow,
        /// A kind-specific addition to the fix.
        extra: &'static str,
    },
    /// The host IOMMU cannot map part of the guest's fixed low memory.
    #[error(
        "the host IOMMU cannot map {gap} (outside the IOVA ranges reported by {sources}), \
         where the guest's fixed low memory must be: this host cannot DMA to the guest; \
         use a device behind another IOMMU"
    )]
    LowMemoryNotMappable {
        /// The unmappable part of low memory.
        gap: Span,
        /// Who reported the IOVA ranges.
        sources: String,
    },
    /// The host IOMMU's page size is so large that RAM boundaries moved
    /// around a host region or an IOVA range end reach into the guest's
    /// fixed low memory.
    #[error(
        "the host IOMMU's smallest page size is {page_size:#x}, so RAM boundaries around host \
         regions and IOVA range ends move in {page_size:#x} steps, and one of them reaches into \
         the guest's fixed low memory {} ({}): assign a device whose IOMMU maps 4 KiB pages, \
         or leave out the host that reports this page size",
        low.range(), low.contents
    )]
    PageSizeSwallowsLowMemory {
        /// The alignment RAM boundaries move by.
        page_size: u64,
        /// The fixed low memory.
        low: FixedLow,
    },
    /// The IOVA ranges are empty.
    #[error("the host IOMMU reports no usable IOVA range ({sources}): nothing can be DMA-mapped")]
    NoIovaRange {
        /// Who reported the IOVA ranges.
        sources: String,
    },
    /// A direct-mapped region without `--allow-direct-regions`.
    #[error(
        "device {} has a direct-mapped (RMRR) region {} ({}); pass --allow-direct-regions \
         to map it identity and report it reserved to the guest, or assign another device",
        region.source, region.span, region.kind
    )]
    DirectRegionRefused {
        /// The region.
        region: HostRegion,
    },
    /// A direct region that would have to be identity-mapped over a fixed
    /// part of the guest platform.
    #[error(
        "direct-mapped (RMRR) region {region} overlaps the guest's {area} {span}, which \
         cannot move: it cannot be identity-mapped; assign another device"
    )]
    DirectRegionOverPlatform {
        /// The region.
        region: HostRegion,
        /// The platform area's name.
        area: &'static str,
        /// The platform area.
        span: Span,
    },
    /// The guest's RAM does not fit in the addresses left.
    #[error(
        "guest RAM of {memory_mib} MiB does not fit: only {fits_mib} MiB can be placed below \
         {limit:#x}, {why}; use --memory {fits_mib}M or less{fix}"
    )]
    RamDoesNotFit {
        /// Requested MiB.
        memory_mib: u64,
        /// MiB that fit.
        fits_mib: u64,
        /// The address RAM cannot reach.
        limit: u128,
        /// What sets that limit.
        why: String,
        /// What else helps.
        fix: &'static str,
    },
    /// The host IOMMU's page size does not divide the guest RAM.
    #[error(
        "--memory is not a multiple of the host IOMMU page size {page_size:#x}: round it to \
         a multiple"
    )]
    MemoryNotPageAligned {
        /// The page size.
        page_size: u64,
    },
    /// No room for the 64-bit PCI window.
    #[error(
        "no room for the {size_gib} GiB 64-bit PCI window above guest RAM (ends at \
         {ram_end:#x}) below {limit:#x}: use less --memory"
    )]
    NoRoomForMmio64 {
        /// Window size in GiB.
        size_gib: u64,
        /// End of RAM.
        ram_end: u64,
        /// Highest address.
        limit: u128,
    },
    /// Every candidate address of the guest MSI doorbell is taken.
    #[error(
        "no room for the guest MSI doorbell (the ITS translation page): {blocked}; leave out \
         the --host-regions file or the device whose regions cover them, or assign a device \
         behind another IOMMU"
    )]
    NoDoorbell {
        /// Each candidate and what blocks it.
        blocked: String,
    },
}
