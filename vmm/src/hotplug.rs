//! What a device hot-added to a running VM must satisfy before anything of
//! it is opened or mapped: none of its host IOMMU reserved regions may fall
//! on what the running guest already uses (RAM, the PCI windows, ECAM),
//! because the plan cannot change under a running guest (seed 003). The
//! plan already keeps every region known at boot free (host devices'
//! groups of assigned devices and `--host-regions` files); this catches a
//! device whose regions were not among them.

use arch::plan::{GuestMap, HostRegion, Span};

/// A hot-add refused: the device, its region, what it hits, what to do.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("cannot hot-add {device}: its host reserved region {region} collides with {what} {used} of the running VM, whose address map cannot change while it runs: boot the VM with --host-regions FILE listing this region (cat /sys/bus/pci/devices/{device}/iommu_group/reserved_regions > FILE) so that the plan keeps it free, or assign a device whose regions the plan avoids")]
pub struct Collision {
    /// Host BDF.
    pub device: String,
    /// The region, as `0xSTART-0xEND (kind) of SOURCE`.
    pub region: String,
    /// `guest RAM`, `the 64-bit PCI MMIO window`, ...
    pub what: &'static str,
    /// The guest range it hits.
    pub used: Span,
}

/// What the running guest uses, with names for messages.
fn used_ranges(map: &GuestMap) -> Vec<(&'static str, Span)> {
    let mut used: Vec<(&'static str, Span)> = map
        .ram
        .iter()
        .filter_map(|r| Span::from_size(r.start.0, r.size))
        .map(|s| ("guest RAM", s))
        .collect();
    for (what, (base, size)) in [
        ("the 32-bit PCI MMIO window", map.mmio32),
        ("the 64-bit PCI MMIO window", map.mmio64),
        ("PCI ECAM", map.ecam),
    ] {
        if let Some(s) = Span::from_size(base, size) {
            used.push((what, s));
        }
    }
    used
}

/// Checks `regions` (those of host device `device`) against the running
/// map; the first collision, in address order, is the refusal.
pub fn check_regions(
    device: &str,
    map: &GuestMap,
    regions: &[HostRegion],
) -> Result<(), Collision> {
    let mut regions: Vec<&HostRegion> = regions.iter().collect();
    regions.sort();
    let used = used_ranges(map);
    for region in regions {
        if let Some((what, span)) = used
            .iter()
            .find(|(_, u)| u.start <= region.span.end && region.span.start <= u.end)
        {
            return Err(Collision {
                device: device.to_string(),
                region: region.to_string(),
                what,
                used: *span,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use arch::plan::{HostConstraints, HostRegionKind, PlanInput};

    use super::*;

    fn region(start: u64, end: u64, kind: HostRegionKind) -> HostRegion {
        HostRegion {
            span: Span { start, end },
            kind,
            source: "0000:00:03.0".into(),
        }
    }

    #[test]
    fn regions_the_plan_avoids_pass_and_others_are_refused_with_the_fix() {
        let map = arch::x86_64::plan::plan(&PlanInput::new(512 << 20), &HostConstraints::default())
            .expect("plan");
        // The x86 MSI window and the AMD HyperTransport hole are holes of
        // every plan of a small guest.
        let fine = [
            region(0xfee0_0000, 0xfeef_ffff, HostRegionKind::Msi),
            region(0xfd_0000_0000, 0xff_ffff_ffff, HostRegionKind::Reserved),
        ];
        assert_eq!(check_regions("0000:00:03.0", &map, &fine), Ok(()));

        let rmrr = region(0x1000_0000, 0x100f_ffff, HostRegionKind::Direct);
        let err =
            check_regions("0000:00:03.0", &map, &[fine[0].clone(), rmrr]).expect_err("in RAM");
        assert_eq!(
            err.to_string(),
            "cannot hot-add 0000:00:03.0: its host reserved region 0x10000000-0x100fffff (direct) of 0000:00:03.0 collides with guest RAM 0x0-0x1fffffff of the running VM, whose address map cannot change while it runs: boot the VM with --host-regions FILE listing this region (cat /sys/bus/pci/devices/0000:00:03.0/iommu_group/reserved_regions > FILE) so that the plan keeps it free, or assign a device whose regions the plan avoids"
        );
        let window = region(0xc000_0000, 0xc000_ffff, HostRegionKind::Reserved);
        let err = check_regions("0000:00:03.0", &map, &[window]).expect_err("window");
        assert_eq!(err.what, "the 32-bit PCI MMIO window");
    }

    #[test]
    fn a_region_the_plan_was_told_about_is_a_hole() {
        let known = region(0x1000_0000, 0x100f_ffff, HostRegionKind::Reserved);
        let host = HostConstraints {
            regions: vec![known.clone()],
            ..Default::default()
        };
        let map = arch::x86_64::plan::plan(&PlanInput::new(512 << 20), &host).expect("plan");
        assert_eq!(check_regions("0000:00:03.0", &map, &[known]), Ok(()));
    }
}
