//! What a device hot-added to a running VM must satisfy, because the plan
//! cannot change under a running guest (seed 003): none of its host IOMMU
//! reserved regions may fall on what the guest already uses (RAM, the PCI
//! windows, ECAM) or, behind the virtio-iommu, on IOVAs PROBE told the
//! guest it may map; and its host IOMMU must be able to map every address
//! the guest may hand the device (guest RAM outside the virtio-iommu, the
//! usable IOVAs behind it). The regions are checked before anything of the
//! device is opened, the IOVA ranges once its container exists and before
//! anything is mapped. The boot plan of a hot-pluggable VM reserved every
//! region it could (`crate::plan::Reservation`), so this refuses only a
//! device whose regions were not among them.

use arch::plan::{uncovered, GuestMap, HostRegion, IovaRange, Span};

/// A hot-add refused: the device, what collides, what to do.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("cannot hot-add {device} {pool}: {problem}, and the running VM's address map cannot change: assign the device when the VM is created (`minivmm plan --vfio {device}` shows whether a map exists) or create the VM with --host-regions FILE listing its regions (cat /sys/bus/pci/devices/{device}/iommu_group/reserved_regions > FILE), or hot-add another device")]
pub struct Collision {
    /// Host BDF.
    pub device: String,
    /// `behind the virtio-iommu` or `outside the virtio-iommu`.
    pub pool: &'static str,
    /// What collides with what.
    pub problem: String,
}

fn pool(iommu: bool) -> &'static str {
    if iommu {
        "behind the virtio-iommu"
    } else {
        "outside the virtio-iommu"
    }
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

/// Checks `regions` (those of host device `device`, to sit behind the
/// virtio-iommu or not) against the running map; the first collision, in
/// address order, is the refusal.
pub fn check_regions(
    device: &str,
    iommu: bool,
    map: &GuestMap,
    regions: &[HostRegion],
) -> Result<(), Collision> {
    let mut regions: Vec<&HostRegion> = regions.iter().collect();
    regions.sort();
    let used = used_ranges(map);
    let usable = if iommu {
        map.iommu_usable()
    } else {
        Vec::new()
    };
    let refuse = |problem: String| Collision {
        device: device.to_string(),
        pool: pool(iommu),
        problem,
    };
    for region in regions {
        if let Some((what, span)) = used.iter().find(|(_, u)| u.overlaps(&region.span)) {
            return Err(refuse(format!(
                "its host reserved region {region} collides with {what} {span} of the running VM"
            )));
        }
        if let Some(u) = usable.iter().find(|u| u.overlaps(&region.span)) {
            let overlap = Span {
                start: u.start.max(region.span.start),
                end: u.end.min(region.span.end),
            };
            return Err(refuse(format!(
                "its host reserved region {region} is IOVA space the virtio-iommu told the guest it may map ({overlap})"
            )));
        }
    }
    Ok(())
}

/// Checks that `device`'s host IOMMU, which maps `ranges` (its VFIO
/// container's IOVA ranges), can map every address the guest may give the
/// device: all guest RAM outside the virtio-iommu, every usable IOVA
/// behind it.
pub fn check_iova_ranges(
    device: &str,
    iommu: bool,
    map: &GuestMap,
    ranges: &[IovaRange],
) -> Result<(), Collision> {
    let (needed, what) = if iommu {
        (
            map.iommu_usable(),
            "the IOVAs the virtio-iommu told the guest it may map",
        )
    } else {
        let ram = map
            .ram
            .iter()
            .filter_map(|r| Span::from_size(r.start.0, r.size))
            .collect();
        (ram, "guest RAM")
    };
    match uncovered(&needed, ranges).first() {
        None => Ok(()),
        Some(missing) => {
            let can: Vec<String> = ranges.iter().map(Span::to_string).collect();
            Err(Collision {
                device: device.to_string(),
                pool: pool(iommu),
                problem: format!(
                    "its host IOMMU maps only IOVAs {}, not {missing} of {what}",
                    can.join(", ")
                ),
            })
        }
    }
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

    fn span(start: u64, end: u64) -> Span {
        Span { start, end }
    }

    #[test]
    fn regions_the_plan_avoids_pass_and_others_are_refused_with_the_fix() {
        let map = arch::x86_64::plan::plan(&PlanInput::new(512 << 20), &HostConstraints::default())
            .expect("plan");
        // The x86 MSI window and the AMD HyperTransport hole are holes of
        // every plan of a small guest; outside the virtio-iommu the IOVAs
        // the guest may map are not the device's concern.
        let fine = [
            region(0xfee0_0000, 0xfeef_ffff, HostRegionKind::Msi),
            region(0xfd_0000_0000, 0xff_ffff_ffff, HostRegionKind::Reserved),
        ];
        assert_eq!(check_regions("0000:00:03.0", false, &map, &fine), Ok(()));

        let rmrr = region(0x1000_0000, 0x100f_ffff, HostRegionKind::Direct);
        let err = check_regions("0000:00:03.0", false, &map, &[fine[0].clone(), rmrr])
            .expect_err("in RAM");
        assert_eq!(
            err.to_string(),
            "cannot hot-add 0000:00:03.0 outside the virtio-iommu: its host reserved region 0x10000000-0x100fffff (direct) of 0000:00:03.0 collides with guest RAM 0x0-0x1fffffff of the running VM, and the running VM's address map cannot change: assign the device when the VM is created (`minivmm plan --vfio 0000:00:03.0` shows whether a map exists) or create the VM with --host-regions FILE listing its regions (cat /sys/bus/pci/devices/0000:00:03.0/iommu_group/reserved_regions > FILE), or hot-add another device"
        );
        let window = region(0xc000_0000, 0xc000_ffff, HostRegionKind::Reserved);
        let err = check_regions("0000:00:03.0", true, &map, &[window]).expect_err("window");
        assert!(
            err.problem
                .contains("collides with the 32-bit PCI MMIO window"),
            "{err}"
        );
    }

    #[test]
    fn behind_the_virtio_iommu_a_region_must_be_reserved_already() {
        let map = arch::x86_64::plan::plan(&PlanInput::new(512 << 20), &HostConstraints::default())
            .expect("plan");
        // The HyperTransport hole is no RAM or window, but PROBE gave
        // those IOVAs to the guest.
        let ht = region(0xfd_0000_0000, 0xff_ffff_ffff, HostRegionKind::Reserved);
        let err =
            check_regions("0000:00:03.0", true, &map, std::slice::from_ref(&ht)).expect_err("iova");
        assert_eq!(
            err.problem,
            "its host reserved region 0xfd00000000-0xffffffffff (reserved) of 0000:00:03.0 is IOVA space the virtio-iommu told the guest it may map (0xfd00000000-0xffffffffff)"
        );
        // A plan that reserved it (a hot-pluggable VM's, with the host's
        // groups) takes the device.
        let host = HostConstraints {
            regions: vec![ht.clone()],
            ..Default::default()
        };
        let map = arch::x86_64::plan::plan(&PlanInput::new(512 << 20), &host).expect("plan");
        assert_eq!(check_regions("0000:00:03.0", true, &map, &[ht]), Ok(()));
        let msi = region(0xfee0_0000, 0xfeef_ffff, HostRegionKind::Msi);
        assert_eq!(check_regions("0000:00:03.0", true, &map, &[msi]), Ok(()));
    }

    #[test]
    fn the_host_iommu_must_map_what_the_guest_may_use() {
        let unknown =
            arch::x86_64::plan::plan(&PlanInput::new(512 << 20), &HostConstraints::default())
                .expect("plan");
        // A 39-bit VT-d unit (QEMU's default) less its MSI window.
        let vtd39 = [span(0, 0xfedf_ffff), span(0xfef0_0000, (1 << 39) - 1)];
        assert_eq!(
            check_iova_ranges("0000:00:03.0", false, &unknown, &vtd39),
            Ok(())
        );
        let err = check_iova_ranges("0000:00:03.0", true, &unknown, &vtd39).expect_err("width");
        assert_eq!(
            err.problem,
            "its host IOMMU maps only IOVAs 0x0-0xfedfffff, 0xfef00000-0x7fffffffff, not 0x8000000000-0xffffffffffffffff of the IOVAs the virtio-iommu told the guest it may map"
        );
        // The plan of a VM that knew the width.
        let mut host = HostConstraints::default();
        host.add_iova_ranges("dmar0", &[span(0, (1 << 39) - 1)]);
        let known = arch::x86_64::plan::plan(&PlanInput::new(512 << 20), &host).expect("plan");
        assert_eq!(
            check_iova_ranges("0000:00:03.0", true, &known, &vtd39),
            Ok(())
        );
        // Outside the virtio-iommu, RAM must be mappable at its address.
        let low = [span(0, 0xfff_ffff)];
        let err = check_iova_ranges("0000:00:03.0", false, &known, &low).expect_err("ram");
        assert!(
            err.problem
                .ends_with("not 0x10000000-0x1fffffff of guest RAM"),
            "{err}"
        );
    }

    #[test]
    fn a_region_the_plan_was_told_about_is_a_hole() {
        let known = region(0x1000_0000, 0x100f_ffff, HostRegionKind::Reserved);
        let host = HostConstraints {
            regions: vec![known.clone()],
            ..Default::default()
        };
        let map = arch::x86_64::plan::plan(&PlanInput::new(512 << 20), &host).expect("plan");
        assert_eq!(
            check_regions("0000:00:03.0", false, &map, std::slice::from_ref(&known)),
            Ok(())
        );
        assert_eq!(check_regions("0000:00:03.0", true, &map, &[known]), Ok(()));
    }
}
