//! The virtio-iommu view of the host: its input range and the PROBE
//! `RESV_MEM` regions every assigned device's endpoint reports.

use super::output::{ResvKind, ResvRegion};
use super::span::{intersect, normalize, subtract, Span, SPACE_END};
use super::Normalized;

/// The input range (the hull of the IOVA ranges, or everything when they
/// are unknown) and the reserved regions inside it: the gaps between IOVA
/// ranges and every host region as RESERVED, the guest MSI window as MSI.
pub(super) fn reserved(host: &Normalized, msi_window: Span) -> (Span, Vec<ResvRegion>) {
    let (input, mut resv) = match &host.iova {
        Some(iova) => {
            let hull = (iova[0].0, iova[iova.len() - 1].1);
            (hull, subtract(&[hull], iova))
        }
        None => ((0, SPACE_END), Vec::new()),
    };
    let regions = normalize(host.regions.iter().map(|r| r.span.iv()).collect());
    resv.extend(intersect(&regions, &[input]));
    let msi = msi_window.iv();
    let mut out: Vec<ResvRegion> = subtract(&normalize(resv), &[msi])
        .into_iter()
        .map(|iv| ResvRegion {
            span: Span::from_iv(iv),
            kind: ResvKind::Reserved,
        })
        .collect();
    out.push(ResvRegion {
        span: msi_window,
        kind: ResvKind::Msi,
    });
    out.sort();
    (Span::from_iv(input), out)
}
