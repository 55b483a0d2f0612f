//! The arm64 guest address map: the planning core ([`crate::plan`]) over
//! arm64's fixed parts ([`crate::aarch64::layout`]).
//!
//! - The first GiB is the device area; RAM starts at 1 GiB and grows up,
//!   skipping host regions; the 64-bit PCI window is 1 GiB-aligned above
//!   RAM (and 4 GiB).
//! - **The guest MSI doorbell** (the ITS translation page, where devices
//!   write MSIs) is chosen from [`ITS_CANDIDATES`], in order: the first
//!   whose page overlaps no host region of any kind and lies inside the
//!   host IOVA ranges (when known). It depends on nothing else: not the
//!   vCPU count, not the device list, not the RAM size. The virtio-iommu's
//!   PROBE reports it as `RESV_MEM` MSI (so Linux does not map its own
//!   software MSI window at IOVA `0x08000000`, an SMMUv3 host's window),
//!   and the host regions and IOVA gaps as RESERVED.
//! - Host regions in `[1 GiB, 1 GiB + 64 MiB)` (the kernel Image and the
//!   device tree) are refused whatever the flags.

#[cfg(test)]
mod tests;

use crate::aarch64::layout::{
    DOORBELL_SIZE, FIXED_LOW_SIZE, GICD_SIZE, GICD_START, GICR_SIZE, GICR_START, IPA_BITS,
    ITS_CANDIDATES, ITS_SIZE, ITS_TRANSLATION_FRAME, MMIO64_FLOOR, PCI_ECAM_SIZE, PCI_ECAM_START,
    PCI_IO_SIZE, PCI_IO_START, PCI_MMIO32_SIZE, PCI_MMIO32_START, PVPANIC_SIZE, PVPANIC_START,
    RAM_START, UART_SIZE, UART_START,
};
use crate::plan::{
    FixedLow, GuestMap, Hole, HostConstraints, Iv, Normalized, PlanError, PlanInput, Platform, Span,
};

/// arm64's fixed parts.
struct Aarch64;

fn span(start: u64, size: u64) -> Span {
    Span {
        start,
        end: start + size - 1,
    }
}

/// The doorbell page of the ITS at `its`.
fn doorbell(its: u64) -> Span {
    span(its + ITS_TRANSLATION_FRAME, DOORBELL_SIZE)
}

/// Why the doorbell page `page` cannot be used on `host`, if it cannot.
fn blocked(page: Span, host: &Normalized) -> Option<String> {
    if let Some(region) = host.regions.iter().find(|r| r.span.overlaps(&page)) {
        return Some(format!("{page} overlaps host region {region}"));
    }
    let (start, end) = page.iv();
    match &host.iova {
        Some(iova) if !iova.iter().any(|&(s, e)| s <= start && end <= e) => Some(format!(
            "{page} is outside the IOVA ranges reported by {}",
            host.sources
        )),
        _ => None,
    }
}

impl Platform for Aarch64 {
    fn addr_bits(&self) -> u32 {
        IPA_BITS
    }

    fn fixed_low(&self) -> FixedLow {
        FixedLow {
            span: span(RAM_START, FIXED_LOW_SIZE),
            contents: "kernel Image, device tree",
        }
    }

    fn ram_forbidden(&self) -> Vec<Iv> {
        vec![(0, RAM_START.into())]
    }

    fn mmio64_floor(&self) -> u64 {
        MMIO64_FLOOR
    }

    fn mmio32(&self) -> (u64, u64) {
        (PCI_MMIO32_START, PCI_MMIO32_SIZE)
    }

    fn ecam(&self) -> (u64, u64) {
        (PCI_ECAM_START, PCI_ECAM_SIZE)
    }

    fn msi_window(&self, host: &Normalized) -> Result<Span, PlanError> {
        let mut reasons = Vec::new();
        for its in ITS_CANDIDATES {
            match blocked(doorbell(its), host) {
                None => return Ok(doorbell(its)),
                Some(why) => reasons.push(why),
            }
        }
        Err(PlanError::NoDoorbell {
            blocked: reasons.join("; "),
        })
    }

    fn areas(&self, msi_window: Span) -> Vec<(&'static str, Span)> {
        let its = msi_window.start - ITS_TRANSLATION_FRAME;
        vec![
            ("UART (16550)", span(UART_START, UART_SIZE)),
            ("pvpanic", span(PVPANIC_START, PVPANIC_SIZE)),
            ("GICv3 distributor", span(GICD_START, GICD_SIZE)),
            ("GICv3 redistributors", span(GICR_START, GICR_SIZE)),
            ("GICv3 ITS control frame", span(its, ITS_TRANSLATION_FRAME)),
            (
                "GICv3 ITS translation frame: guest MSI doorbell",
                msi_window,
            ),
            (
                "PCI ECAM (bus 0 config space)",
                span(PCI_ECAM_START, PCI_ECAM_SIZE),
            ),
            ("PCI I/O window", span(PCI_IO_START, PCI_IO_SIZE)),
            (
                "32-bit PCI MMIO window",
                span(PCI_MMIO32_START, PCI_MMIO32_SIZE),
            ),
        ]
    }

    fn ram_holes(&self) -> Vec<Hole> {
        Vec::new()
    }

    fn holes_floor(&self) -> u64 {
        0
    }

    fn holes_top(&self) -> u64 {
        RAM_START
    }

    fn unused_reason(&self, start: u128) -> Option<&'static str> {
        (start < u128::from(RAM_START)).then_some("device area (unused)")
    }
}

/// The ITS of a planned map (its doorbell page is `map.msi_window`).
pub fn its(map: &GuestMap) -> (u64, u64) {
    (map.msi_window.start - ITS_TRANSLATION_FRAME, ITS_SIZE)
}

/// Plans the arm64 guest physical address map for `input` on a host with
/// the constraints `host`. Pure: no I/O, and the same inputs (in any order)
/// always give the same map.
pub fn plan(input: &PlanInput, host: &HostConstraints) -> Result<GuestMap, PlanError> {
    crate::plan::plan(&Aarch64, input, host)
}
