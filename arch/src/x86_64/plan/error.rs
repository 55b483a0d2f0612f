//! Why no guest address map exists: every error names the colliding
//! region, whom it belongs to, and what to change.

use super::input::HostRegion;
use super::span::Span;

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
        "host region {region} collides with the guest's fixed low memory [0, {low_end:#x}) \
         (boot data, ACPI tables, kernel), which cannot move: assign a different device (one \
         whose iommu_group/reserved_regions lists nothing below {low_end:#x}), or leave out \
         the host whose --host-regions file lists it{extra}"
    )]
    LowMemoryCollision {
        /// The region.
        region: HostRegion,
        /// End of the fixed low memory.
        low_end: u64,
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
         the guest's fixed low memory [0, {low_end:#x}) (boot data, ACPI tables, kernel): \
         assign a device whose IOMMU maps 4 KiB pages, or leave out the host that reports \
         this page size"
    )]
    PageSizeSwallowsLowMemory {
        /// The alignment RAM boundaries move by.
        page_size: u64,
        /// End of the fixed low memory.
        low_end: u64,
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
}
