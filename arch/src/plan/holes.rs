//! Why each non-RAM range below the top of the map is there.

use super::output::Hole;
use super::span::{normalize, subtract, Iv, Span, SPACE_END};
use super::{Normalized, Platform};
use crate::RamRegion;

/// The fallback reason of a piece no feature covers.
fn default_reason(platform: &dyn Platform, start: u128, ram_end: u128) -> &'static str {
    if let Some(reason) = platform.unused_reason(start) {
        reason
    } else if start >= ram_end {
        "above guest RAM (unused)"
    } else {
        "alignment padding around a host region"
    }
}

/// Every range of `[floor, max(top of RAM, holes_top))` that is not RAM,
/// plus the platform's holes inside RAM, each with the reasons it is there,
/// in address order.
pub(super) fn describe(
    platform: &dyn Platform,
    areas: &[(&'static str, Span)],
    ram: &[RamRegion],
    host: &Normalized,
) -> Vec<Hole> {
    let ram_ivs = normalize(
        ram.iter()
            .map(|r| (u128::from(r.start.0), u128::from(r.end())))
            .collect(),
    );
    let ram_end = ram_ivs.last().map_or(0, |iv| iv.1);
    let top = ram_end.max(platform.holes_top().into());
    let gaps = subtract(&[(platform.holes_floor().into(), top)], &ram_ivs);

    let mut features: Vec<(Iv, String)> = areas
        .iter()
        .map(|(name, span)| (span.iv(), name.to_string()))
        .collect();
    for r in &host.regions {
        let what = if r.kind.is_direct() {
            ", mapped identity"
        } else {
            ""
        };
        features.push((r.span.iv(), format!("host reserved region {r}{what}")));
    }
    if let Some(iova) = &host.iova {
        for iv in subtract(&[(0, SPACE_END)], iova) {
            features.push((iv, "outside the host IOVA ranges".to_string()));
        }
    }

    let mut holes: Vec<Hole> = platform.ram_holes();
    for &(start, end) in &gaps {
        let mut points = vec![start, end];
        for (iv, _) in &features {
            points.extend([iv.0, iv.1].into_iter().filter(|p| start < *p && *p < end));
        }
        points.sort_unstable();
        points.dedup();
        for piece in points.windows(2) {
            let (s, e) = (piece[0], piece[1]);
            let reasons: Vec<&str> = features
                .iter()
                .filter(|(iv, _)| iv.0 <= s && e <= iv.1)
                .map(|(_, why)| why.as_str())
                .collect();
            let reason = if reasons.is_empty() {
                default_reason(platform, s, ram_end).to_string()
            } else {
                reasons.join("; ")
            };
            match holes.last_mut() {
                Some(last) if u128::from(last.span.end) + 1 == s && last.reason == reason => {
                    last.span.end = (e - 1) as u64;
                }
                _ => holes.push(Hole {
                    span: Span::from_iv((s, e)),
                    reason,
                }),
            }
        }
    }
    holes.sort();
    holes
}
