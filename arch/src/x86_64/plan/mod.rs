//! The host-aware guest address-space planner.
//!
//! [`plan`] is one pure function from what the guest asks for
//! ([`PlanInput`]) and what the host imposes ([`HostConstraints`]: the
//! reserved regions of every assigned device's IOMMU group and of other
//! hosts the VM may migrate to, the host IOMMU's IOVA ranges) to the guest
//! physical address map ([`GuestMap`]). Guarantees:
//!
//! - Without host constraints the map is today's fixed layout
//!   ([`crate::x86_64::layout`]): RAM from 0 up to 3 GiB, the rest from
//!   4 GiB, the 64-bit PCI window 1 GiB-aligned above RAM.
//! - Guest RAM never overlaps a host region of any kind and lies inside the
//!   IOVA ranges when they are known, so all of it can be DMA-mapped at its
//!   guest physical address (assigned devices without the virtio-iommu).
//!   RAM that cannot stay below 3 GiB moves above 4 GiB, skipping host
//!   regions (e.g. AMD's HyperTransport hole below 1 TiB).
//! - The guest MSI window is always `0xfee00000-0xfeefffff`.
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
#[cfg(test)]
mod tests;

pub use error::PlanError;
pub use input::{HostConstraints, HostRegion, HostRegionKind, IovaRange, PlanInput};
pub use output::{GuestMap, Hole, IdentityMap, ResvKind, ResvRegion};
pub use span::Span;

use span::{normalize, subtract, Iv};

use crate::x86_64::layout::{
    IOAPIC_START, KVM_IDENTITY_MAP_START, KVM_TSS_START, LAPIC_START, PCI_ECAM_SIZE,
    PCI_ECAM_START, PCI_MMIO32_SIZE, PCI_MMIO32_START,
};

/// The guest's fixed low memory: boot data, ACPI tables, the BIOS area and
/// room for the kernel loaded at 1 MiB. Host regions here are fatal.
pub const FIXED_LOW_END: u64 = 64 << 20;
/// Alignment of RAM boundaries the planner moves around host regions.
pub const RAM_ALIGN: u64 = 2 << 20;
/// Guest physical address bits the planner may use (x86-64's maximum).
pub const MAX_GUEST_PHYS_BITS: u32 = 52;
/// The guest MSI window (the local APIC range on x86).
pub const MSI_WINDOW: Span = Span {
    start: LAPIC_START,
    end: 0xfeef_ffff,
};

const ADDR_LIMIT: u128 = 1 << MAX_GUEST_PHYS_BITS;

/// The fixed platform areas of the 32-bit MMIO hole, with their names.
fn platform_areas() -> [(&'static str, Span); 5] {
    let span = |start, size| Span {
        start,
        end: start + size - 1,
    };
    [
        (
            "32-bit PCI MMIO window",
            span(PCI_MMIO32_START, PCI_MMIO32_SIZE),
        ),
        (
            "PCI ECAM (bus 0 config space)",
            span(PCI_ECAM_START, PCI_ECAM_SIZE),
        ),
        ("IOAPIC", span(IOAPIC_START, 0x1000)),
        ("LAPIC and guest MSI window", MSI_WINDOW),
        (
            "KVM identity map and TSS pages",
            span(
                KVM_IDENTITY_MAP_START,
                KVM_TSS_START + 0x3000 - KVM_IDENTITY_MAP_START,
            ),
        ),
    ]
}

/// The host constraints in canonical order.
struct Normalized {
    regions: Vec<HostRegion>,
    iova: Option<Vec<Iv>>,
    sources: String,
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
fn check(input: &PlanInput, host: &Normalized) -> Result<(), PlanError> {
    let low = Span {
        start: 0,
        end: FIXED_LOW_END - 1,
    };
    if let Some(region) = host.regions.iter().find(|r| r.span.overlaps(&low)) {
        return Err(PlanError::LowMemoryCollision {
            region: region.clone(),
            low_end: FIXED_LOW_END,
            extra: if region.kind.is_direct() {
                "; --allow-direct-regions does not help: low memory cannot make way for an \
                 identity map"
            } else {
                ""
            },
        });
    }
    if let Some(iova) = &host.iova {
        if let Some(gap) = subtract(&[low.iv()], iova).first() {
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
        if let Some((area, span)) = platform_areas()
            .into_iter()
            .find(|(_, s)| s.overlaps(&region.span))
        {
            return Err(PlanError::DirectRegionOverPlatform {
                region: region.clone(),
                area,
                span,
            });
        }
    }
    Ok(())
}

/// Plans the guest physical address map for `input` on a host with the
/// constraints `host`. Pure: no I/O, and the same inputs (in any order)
/// always give the same map.
pub fn plan(input: &PlanInput, host: &HostConstraints) -> Result<GuestMap, PlanError> {
    let norm = normalize_host(host)?;
    check(input, &norm)?;
    let align = host.page_size.map_or(RAM_ALIGN, |p| p.max(RAM_ALIGN));
    if let Some(page_size) = host.page_size.filter(|p| *p > 0) {
        if !input.memory.is_multiple_of(page_size) {
            return Err(PlanError::MemoryNotPageAligned { page_size });
        }
    }
    let ram = place::ram(input.memory, &norm, align)?;
    // `check` kept host regions and IOVA gaps out of the fixed low memory,
    // but boundaries move in `align` steps: with a page size larger than
    // the low memory, a region or range end above it can still swallow it.
    let low_kept = input.memory == 0
        || ram
            .first()
            .is_some_and(|r| r.start.0 == 0 && r.size >= input.memory.min(FIXED_LOW_END));
    if !low_kept {
        return Err(PlanError::PageSizeSwallowsLowMemory {
            page_size: align,
            low_end: FIXED_LOW_END,
        });
    }
    let ram_end = ram.last().map_or(0, |r| r.end());
    let mut notes = Vec::new();
    let mmio64 = place::mmio64(ram_end, input.mmio64_size, &norm, &mut notes)?;
    let (iommu_input_range, probe_reserved) = probe::reserved(&norm);
    let identity_maps = norm
        .regions
        .iter()
        .filter(|r| r.kind.is_direct())
        .map(|r| IdentityMap {
            span: r.span,
            source: r.source.clone(),
        })
        .collect();
    let holes = holes::describe(&ram, &norm);
    Ok(GuestMap {
        ram,
        mmio32: (PCI_MMIO32_START, PCI_MMIO32_SIZE),
        ecam: (PCI_ECAM_START, PCI_ECAM_SIZE),
        ioapic: IOAPIC_START,
        lapic: LAPIC_START,
        msi_window: MSI_WINDOW,
        mmio64,
        iommu_input_range,
        probe_reserved,
        identity_maps,
        holes,
        notes,
    })
}
