//! The boot plan of a hot-pluggable VM reserves what a device added later
//! may bring (issue 11, seed 003): every IOMMU group's reserved regions on
//! this host and the narrowest address width its IOMMUs report, so that a
//! hot-add never has to shrink the IOVA space the guest was told about or
//! move RAM. Each of them is kept only if the plan stays valid with it
//! (a region inside the guest's fixed low memory cannot be kept free); the
//! ones left out are logged once, and a hot-add that brings one is refused
//! by `crate::hotplug`. `direct` regions are never reserved: an identity
//! map is given only to devices assigned when the VM is created.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use arch::plan::{GuestMap, HostConstraints, HostRegion, PlanInput, Span};
use host_iommu::{read_address_widths_in, read_all_groups_in};

use super::PlanFailure;
use crate::platform::{Native, Platform};

/// One thing a later device may bring.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Candidate {
    /// A reserved region (of one or more groups: `source` names them).
    Region(HostRegion),
    /// An IOMMU that maps only IOVAs below `1 << bits`.
    Width {
        /// Its name (`dmar0`).
        unit: String,
        /// Its input address bits.
        bits: u32,
    },
}

impl Candidate {
    fn apply(&self, host: &mut HostConstraints) {
        match self {
            Self::Region(region) => host.regions.push(region.clone()),
            Self::Width { unit, bits } => {
                let end = u64::MAX >> (64 - bits);
                host.add_iova_ranges(unit, &[Span { start: 0, end }]);
            }
        }
    }
}

impl std::fmt::Display for Candidate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Region(region) => write!(f, "host reserved region {region}"),
            Self::Width { unit, bits } => write!(f, "the {bits}-bit address width of {unit}"),
        }
    }
}

/// What this host's IOMMU groups may bring to a hot-added device, in a
/// fixed order: regions by address, then widths by unit.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reservation {
    /// What the plan should reserve.
    pub candidates: Vec<Candidate>,
    /// `direct` regions, never reserved (for the log).
    pub direct: Vec<HostRegion>,
}

/// `0-3, 5, 7-8`.
fn number_list(numbers: &[u32]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < numbers.len() {
        let mut j = i;
        while j + 1 < numbers.len() && numbers[j + 1] == numbers[j] + 1 {
            j += 1;
        }
        if !out.is_empty() {
            out.push_str(", ");
        }
        let _ = match j > i {
            true => write!(out, "{}-{}", numbers[i], numbers[j]),
            false => write!(out, "{}", numbers[i]),
        };
        i = j + 1;
    }
    out
}

impl Reservation {
    /// Reads every IOMMU group and VT-d unit under `root` (a sysfs
    /// mount). A group that cannot be read leaves the reservation empty
    /// (logged): hot-adds are then checked against the plan alone.
    pub fn read_in(root: &Path) -> Self {
        let groups = match read_all_groups_in(root) {
            Ok(groups) => groups,
            Err(e) => {
                log::warn!("hot-add reservation: {e}; nothing reserved for hot-added devices");
                return Self::default();
            }
        };
        // One candidate per (range, type), naming every group that has it.
        let mut by_span: BTreeMap<(Span, host_iommu::HostRegionKind), Vec<u32>> = BTreeMap::new();
        let mut direct = Vec::new();
        for group in &groups {
            for region in &group.regions {
                if region.kind.is_direct() {
                    direct.push(region.clone());
                } else {
                    by_span
                        .entry((region.span, region.kind))
                        .or_default()
                        .push(group.group);
                }
            }
        }
        let mut candidates: Vec<Candidate> = by_span
            .into_iter()
            .map(|((span, kind), groups)| {
                let plural = if groups.len() > 1 { "s" } else { "" };
                Candidate::Region(HostRegion {
                    span,
                    kind,
                    source: format!("iommu group{plural} {} (hot-add)", number_list(&groups)),
                })
            })
            .collect();
        candidates.extend(
            read_address_widths_in(root)
                .into_iter()
                .map(|w| Candidate::Width {
                    unit: w.unit,
                    bits: w.bits,
                }),
        );
        Self { candidates, direct }
    }

    /// Plans with `host` plus every candidate that keeps a valid map;
    /// returns the map and the constraints it obeyed. Fails only when
    /// `host` alone has no map.
    pub fn plan(
        &self,
        input: &PlanInput,
        host: &HostConstraints,
    ) -> Result<(GuestMap, HostConstraints), PlanFailure> {
        for region in &self.direct {
            log::info!("hot-add reservation: not reserving direct region {region}: a device that needs it can only be assigned when the VM is created");
        }
        let mut all = host.clone();
        for c in &self.candidates {
            c.apply(&mut all);
        }
        if let Ok(map) = Native::plan(input, &all) {
            return Ok((map, all));
        }
        let mut kept = host.clone();
        let mut map = Native::plan(input, &kept)?;
        for c in &self.candidates {
            let mut next = kept.clone();
            c.apply(&mut next);
            match Native::plan(input, &next) {
                Ok(m) => {
                    map = m;
                    kept = next;
                }
                Err(e) => log::warn!(
                    "hot-add reservation: not reserving {c}: {e}; a hot-added device that brings it will be refused"
                ),
            }
        }
        Ok((map, kept))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use host_iommu::HostRegionKind;

    fn sysfs(test: &str, groups: &[(&str, &str)]) -> std::path::PathBuf {
        let root = std::env::temp_dir().join(format!("vmm-reserve-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for (n, text) in groups {
            let dir = root.join("kernel/iommu_groups").join(n);
            std::fs::create_dir_all(&dir).expect("mkdir");
            std::fs::write(dir.join("reserved_regions"), text).expect("write");
        }
        root
    }

    const MSI: &str = "0x00000000fee00000 0x00000000feefffff msi\n";

    #[test]
    fn groups_merge_by_region_and_direct_ones_stay_out() {
        let lpc = format!("0x0000000000000000 0x0000000000ffffff direct-relaxable\n{MSI}");
        let ht = format!("{MSI}0x000000fd00000000 0x000000ffffffffff reserved\n");
        let root = sysfs(
            "merge",
            &[("0", MSI), ("1", MSI), ("2", MSI), ("4", &lpc), ("5", &ht)],
        );
        let cap = root.join("class/iommu/dmar0/intel-iommu");
        std::fs::create_dir_all(&cap).expect("mkdir");
        std::fs::write(cap.join("cap"), "d2008c22260206\n").expect("write");
        let r = Reservation::read_in(&root);
        let _ = std::fs::remove_dir_all(&root);
        assert_eq!(r.direct.len(), 1);
        assert_eq!(r.direct[0].source, "iommu group 4");
        let shown: Vec<String> = r.candidates.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "host reserved region 0xfee00000-0xfeefffff (msi) of iommu groups 0-2, 4-5 (hot-add)",
                "host reserved region 0xfd00000000-0xffffffffff (reserved) of iommu group 5 (hot-add)",
                "the 39-bit address width of dmar0",
            ]
        );
        let (map, host) = r
            .plan(&PlanInput::new(512 << 20), &HostConstraints::default())
            .expect("plan");
        assert_eq!(
            map.iommu_input_range,
            Span {
                start: 0,
                end: (1 << 39) - 1
            }
        );
        assert_eq!(host.regions.len(), 2);
        // Everything the plan reserved is what a hot-add of group 5's
        // device behind the virtio-iommu needs.
        let ht_region = HostRegion {
            span: Span {
                start: 0xfd_0000_0000,
                end: 0xff_ffff_ffff,
            },
            kind: HostRegionKind::Reserved,
            source: "0000:00:05.0".into(),
        };
        // (above the 39-bit width: outside the input range altogether)
        assert_eq!(
            crate::hotplug::check_regions("0000:00:05.0", true, &map, &[ht_region]),
            Ok(())
        );
    }

    #[test]
    fn a_region_no_plan_can_keep_free_is_left_out_and_the_rest_kept() {
        let low = "0x0000000000100000 0x00000000001fffff reserved\n";
        let high = "0x0000000010000000 0x00000000100fffff reserved\n";
        let root = sysfs("drop", &[("0", low), ("1", high)]);
        let r = Reservation::read_in(&root);
        let _ = std::fs::remove_dir_all(&root);
        let (map, host) = r
            .plan(&PlanInput::new(512 << 20), &HostConstraints::default())
            .expect("plan");
        assert_eq!(host.regions.len(), 1);
        assert_eq!(host.regions[0].span.start, 0x1000_0000);
        assert!(
            map.holes.iter().any(|h| h.span.start == 0x1000_0000),
            "{map:?}"
        );
        // A boot whose own constraints have no map still fails.
        let bad = HostConstraints {
            regions: vec![HostRegion {
                span: Span {
                    start: 0x10_0000,
                    end: 0x1f_ffff,
                },
                kind: HostRegionKind::Reserved,
                source: "0000:01:00.0".into(),
            }],
            ..Default::default()
        };
        assert!(r.plan(&PlanInput::new(512 << 20), &bad).is_err());
    }

    #[test]
    fn no_iommu_no_reservation() {
        let root = sysfs("none", &[]);
        assert_eq!(Reservation::read_in(&root), Reservation::default());
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn number_lists() {
        assert_eq!(number_list(&[0, 1, 2, 3, 5, 7, 8]), "0-3, 5, 7-8");
        assert_eq!(number_list(&[4]), "4");
        assert_eq!(number_list(&[]), "");
    }
}
