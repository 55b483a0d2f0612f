//! The host-aware guest address-space planner: one core for every
//! architecture.
//!
//! [`plan`] is one pure function from what the guest asks for
//! ([`PlanInput`]), what the host imposes ([`HostConstraints`]: the
//! reserved regions of every assigned device's IOMMU group and of other
//! hosts the VM may migrate to, the host IOMMU's IOVA ranges) and the
//! architecture's fixed parts ([`Platform`]: where RAM may go, the fixed
//! device areas, the guest MSI window) to the guest physical address map
//! ([`GuestMap`]). Each architecture has its own entry point over this core
//! (`crate::x86_64::plan::plan`, `crate::aarch64::plan::plan`). Guarantees:
//!
//! - Guest RAM never overlaps a host region of any kind and lies inside the
//!   IOVA ranges when they are known, so all of it can be DMA-mapped at its
//!   guest physical address (assigned devices without the virtio-iommu).
//!   RAM is placed at the lowest addresses the platform allows, skipping
//!   host regions.
//! - The guest MSI window comes from the platform: fixed on x86, chosen
//!   from an ordered list of candidates around the host regions on arm64.
//! - The virtio-iommu input range and PROBE reserved regions come from the
//!   IOVA ranges (their complement is RESERVED), the host regions
//!   (RESERVED) and the MSI window (MSI).
//! - Inputs are sorted and merged first: the same inputs in any order give
//!   the same map.
//! - When no valid map exists the error names the colliding region, whom
//!   it belongs to and what to change.

mod error;
mod holes;
mod input;
mod output;
mod place;
mod probe;
mod span;

pub use error::{FixedLow, PlanError};
pub use input::{
    HostConstraints, HostRegion, HostRegionKind, IovaRange, PlanInput, PCI_MMIO64_SIZE,
};
pub use output::{GuestMap, Hole, IdentityMap, ResvKind, ResvRegion};
pub use span::{uncovered, Span};

pub(crate) use span::{normalize, subtract, Iv};

/// Alignment of RAM boundaries the planner moves around host regions.
pub const RAM_ALIGN: u64 = 2 << 20;

/// The fixed parts of one architecture's guest physical address map: what
/// the planning core works around.
pub(crate) trait Platform {
    /// Guest physical address bits the planner may use.
    fn addr_bits(&self) -> u32;
    /// The guest's fixed low memory (kernel, boot data), which must be RAM
    /// and where host regions are fatal. The first RAM range starts here.
    fn fixed_low(&self) -> FixedLow;
    /// Addresses RAM never takes (device areas), half-open.
    fn ram_forbidden(&self) -> Vec<Iv>;
    /// The lowest base of the 64-bit PCI window.
    fn mmio64_floor(&self) -> u64;
    /// The 32-bit PCI MMIO window `(base, size)`.
    fn mmio32(&self) -> (u64, u64);
    /// ECAM `(base, size)`.
    fn ecam(&self) -> (u64, u64);
    /// The guest MSI window for these (normalized) host constraints.
    fn msi_window(&self, host: &Normalized) -> Result<Span, PlanError>;
    /// The fixed device areas with their names, given the MSI window.
    fn areas(&self, msi_window: Span) -> Vec<(&'static str, Span)>;
    /// Holes the map always has inside RAM (x86: the legacy BIOS area).
    fn ram_holes(&self) -> Vec<Hole>;
    /// The bottom of the range `holes` describes up to the top of RAM.
    fn holes_floor(&self) -> u64;
    /// The holes below this address are described even past RAM's end.
    fn holes_top(&self) -> u64;
    /// Why an otherwise unexplained piece of the map at `start` is a hole.
    fn unused_reason(&self, start: u128) -> Option<&'static str>;
}

/// The host constraints in canonical order.
pub(crate) struct Normalized {
    pub(crate) regions: Vec<HostRegion>,
    pub(crate) iova: Option<Vec<Iv>>,
    pub(crate) sources: String,
}

fn normalize_host(host: &HostConstraints) -> Result<Normalized, PlanError> {
    let mut regions = host.regions.clone();
    if let Some(bad) = regions.iter().find(|r| r.span.end < r.span.start) {
        return Err(PlanError::InvalidRegion {
            start: bad.span.start,
            end: bad.span.end,
            source_name: bad.source.clone(),
        });
    }
    regions.sort();
    regions.dedup();
    let mut sources = host.iova_sources.clone();
    sources.sort();
    sources.dedup();
    let sources = if sources.is_empty() {
        "the host IOMMU".to_string()
    } else {
        sources.join(", ")
    };
    let iova = host.iova_ranges.as_ref().map(|r| {
        normalize(
            r.iter()
                .filter(|s| s.start <= s.end)
                .map(Span::iv)
                .collect(),
        )
    });
    if iova.as_ref().is_some_and(Vec::is_empty) {
        return Err(PlanError::NoIovaRange { sources });
    }
    Ok(Normalized {
        regions,
        iova,
        sources,
    })
}

/// Refuses host constraints no map can satisfy.
fn check(
    platform: &dyn Platform,
    input: &PlanInput,
    host: &Normalized,
    areas: &[(&'static str, Span)],
) -> Result<(), PlanError> {
    let low = platform.fixed_low();
    if let Some(region) = host.regions.iter().find(|r| r.span.overlaps(&low.span)) {
        return Err(PlanError::LowMemoryCollision {
            region: region.clone(),
            low,
            extra: if region.kind.is_direct() {
                "; --allow-direct-regions does not help: low memory cannot make way for an \
                 identity map"
            } else {
                ""
            },
        });
    }
    if let Some(iova) = &host.iova {
        if let Some(gap) = subtract(&[low.span.iv()], iova).first() {
            return Err(PlanError::LowMemoryNotMappable {
                gap: Span::from_iv(*gap),
                sources: host.sources.clone(),
            });
        }
    }
    for region in host.regions.iter().filter(|r| r.kind.is_direct()) {
        if !input.allow_direct_regions {
            return Err(PlanError::DirectRegionRefused {
                region: region.clone(),
            });
        }
        if let Some((area, span)) = areas.iter().find(|(_, s)| s.overlaps(&region.span)) {
            return Err(PlanError::DirectRegionOverPlatform {
                region: region.clone(),
                area,
                span: *span,
            });
        }
    }
    Ok(())
}

/// Plans the guest physical address map of `platform` for `input` on a
/// host with the constraints `host`. Pure: no I/O, and the same inputs (in
/// any order) always give the same map.
pub(crate) fn plan(
    platform: &dyn Platform,
    input: &PlanInput,
    host: &HostConstraints,
) -> Result<GuestMap, PlanError> {
    let norm = normalize_host(host)?;
    let msi_window = platform.msi_window(&norm)?;
    let areas = platform.areas(msi_window);
    check(platform, input, &norm, &areas)?;
    let align = host.page_size.map_or(RAM_ALIGN, |p| p.max(RAM_ALIGN));
    if let Some(page_size) = host.page_size.filter(|p| *p > 0) {
        if !input.memory.is_multiple_of(page_size) {
            return Err(PlanError::MemoryNotPageAligned { page_size });
        }
    }
    let ram = place::ram(platform, input.memory, &norm, align)?;
    // `check` kept host regions and IOVA gaps out of the fixed low memory,
    // but boundaries move in `align` steps: with a page size larger than
    // the low memory, a region or range end beyond it can still swallow it.
    let low = platform.fixed_low();
    let low_size = low.span.end - low.span.start + 1;
    let low_kept = input.memory == 0
        || ram
            .first()
            .is_some_and(|r| r.start.0 == low.span.start && r.size >= input.memory.min(low_size));
    if !low_kept {
        return Err(PlanError::PageSizeSwallowsLowMemory {
            page_size: align,
            low,
        });
    }
    let ram_end = ram.last().map_or(0, |r| r.end());
    let mut notes = Vec::new();
    let mmio64 = place::mmio64(platform, ram_end, input.mmio64_size, &norm, &mut notes)?;
    let (iommu_input_range, probe_reserved) = probe::reserved(&norm, msi_window);
    let identity_maps = norm
        .regions
        .iter()
        .filter(|r| r.kind.is_direct())
        .map(|r| IdentityMap {
            span: r.span,
            source: r.source.clone(),
        })
        .collect();
    let holes = holes::describe(platform, &areas, &ram, &norm);
    Ok(GuestMap {
        ram,
        mmio32: platform.mmio32(),
        ecam: platform.ecam(),
        msi_window,
        mmio64,
        iommu_input_range,
        probe_reserved,
        identity_maps,
        holes,
        notes,
    })
}
