//! The arm64 planner over host shapes seen in the wild: an SMMUv3 host
//! (software MSI window at 0x08000000), other hosts' files, refusals.

use super::*;
use crate::aarch64::layout::ITS_CANDIDATES;
use crate::plan::{HostRegion, HostRegionKind, ResvKind, ResvRegion};

const GIB: u64 = 1 << 30;
const DEV: &str = "0000:00:02.0";
/// Linux's software MSI window on SMMUv3 hosts.
const SW_MSI: Span = Span {
    start: 0x0800_0000,
    end: 0x080f_ffff,
};

fn region(start: u64, end: u64, kind: HostRegionKind, source: &str) -> HostRegion {
    HostRegion {
        span: Span { start, end },
        kind,
        source: source.to_string(),
    }
}

fn ram(map: &GuestMap) -> Vec<(u64, u64)> {
    map.ram.iter().map(|r| (r.start.0, r.end())).collect()
}

/// An SMMUv3 host as the nested arm64 test host reports it: the SW_MSI
/// window, 48-bit IOVA ranges around it.
fn smmuv3() -> HostConstraints {
    let mut host = HostConstraints {
        regions: vec![region(SW_MSI.start, SW_MSI.end, HostRegionKind::Msi, DEV)],
        ..Default::default()
    };
    host.add_iova_ranges(
        DEV,
        &[
            Span::new(0, 0x07ff_ffff).expect("span"),
            Span::new(0x0810_0000, 0xffff_ffff_ffff).expect("span"),
        ],
    );
    host.add_page_sizes(0x4020_1000);
    host
}

fn doorbell_of(its: u64) -> Span {
    Span::from_size(its + 0x1_0000, 0x1_0000).expect("span")
}

#[test]
fn no_constraints_give_the_fixed_layout() {
    for memory in [64 << 20, 512 << 20, 3 * GIB, 8 * GIB] {
        let map = plan(&PlanInput::new(memory), &HostConstraints::default()).expect("plan");
        assert_eq!(ram(&map), vec![(GIB, GIB + memory)]);
        assert_eq!(map.msi_window, doorbell_of(ITS_CANDIDATES[0]));
        assert_eq!(
            map.msi_window,
            Span::new(0x0c21_0000, 0x0c21_ffff).expect("span")
        );
        assert_eq!(its(&map), (0x0c20_0000, 0x2_0000));
        assert_eq!(
            map.mmio64.0,
            (GIB + memory).max(4 * GIB).next_multiple_of(GIB)
        );
        assert_eq!(map.ecam, (0x1000_0000, 1 << 20));
        assert_eq!(map.mmio32, (0x2000_0000, 0x2000_0000));
        assert_eq!(
            map.probe_reserved,
            vec![ResvRegion {
                span: map.msi_window,
                kind: ResvKind::Msi
            }]
        );
        assert!(map.notes.is_empty());
    }
}

#[test]
fn smmuv3_host_window_is_reserved_and_the_doorbell_avoids_it() {
    let host = smmuv3();
    let map = plan(&PlanInput::new(2 * GIB), &host).expect("plan");
    assert!(!map.msi_window.overlaps(&SW_MSI));
    assert_eq!(map.msi_window, doorbell_of(ITS_CANDIDATES[0]));
    assert_eq!(ram(&map), vec![(GIB, 3 * GIB)]);
    assert_eq!(
        map.iommu_input_range,
        Span::new(0, 0xffff_ffff_ffff).expect("span")
    );
    // The host's window (a gap in the IOVA ranges and a host region) is
    // RESERVED; the guest's own doorbell is the MSI region.
    assert_eq!(
        map.probe_reserved,
        vec![
            ResvRegion {
                span: SW_MSI,
                kind: ResvKind::Reserved
            },
            ResvRegion {
                span: map.msi_window,
                kind: ResvKind::Msi
            },
        ]
    );
    let hole = map
        .holes
        .iter()
        .find(|h| h.span.start == SW_MSI.start)
        .expect("the SW_MSI window is a hole");
    assert!(
        hole.reason.contains("(msi) of 0000:00:02.0"),
        "{}",
        hole.reason
    );
    assert!(hole.reason.contains("outside the host IOVA ranges"));
}

#[test]
fn doorbell_depends_on_nothing_but_the_host() {
    let host = smmuv3();
    let first = plan(&PlanInput::new(GIB), &host).expect("plan").msi_window;
    for memory in [64 << 20, 7 * GIB, 100 * GIB] {
        let input = PlanInput {
            mmio64_size: 16 * GIB,
            allow_direct_regions: true,
            ..PlanInput::new(memory)
        };
        assert_eq!(plan(&input, &host).expect("plan").msi_window, first);
    }
}

#[test]
fn a_host_region_over_the_doorbell_moves_it_to_the_next_candidate() {
    let mut host = smmuv3();
    host.regions.push(region(
        0x0c00_0000,
        0x0cff_ffff,
        HostRegionKind::Reserved,
        "hostB.regions",
    ));
    let map = plan(&PlanInput::new(GIB), &host).expect("plan");
    assert_eq!(map.msi_window, doorbell_of(ITS_CANDIDATES[1]));
    assert!(map.probe_reserved.contains(&ResvRegion {
        span: Span::new(0x0c00_0000, 0x0cff_ffff).expect("span"),
        kind: ResvKind::Reserved
    }));
    // A window only outside the IOVA ranges moves it too.
    let mut host = HostConstraints::default();
    host.add_iova_ranges(
        DEV,
        &[
            Span::new(0, 0x0c20_ffff).expect("span"),
            Span::new(0x0c22_0000, 0xff_ffff_ffff).expect("span"),
        ],
    );
    let map = plan(&PlanInput::new(GIB), &host).expect("plan");
    assert_eq!(map.msi_window, doorbell_of(ITS_CANDIDATES[1]));
}

#[test]
fn no_room_for_the_doorbell_is_refused_naming_every_candidate() {
    let mut host = smmuv3();
    host.regions.push(region(
        0x0c00_0000,
        0x0fff_ffff,
        HostRegionKind::Reserved,
        "hostC.regions",
    ));
    let err = plan(&PlanInput::new(GIB), &host).expect_err("refused");
    let msg = err.to_string();
    assert!(matches!(err, PlanError::NoDoorbell { .. }), "{msg}");
    for its in ITS_CANDIDATES {
        assert!(msg.contains(&doorbell_of(its).to_string()), "{msg}");
    }
    assert!(
        msg.contains("0xc000000-0xfffffff (reserved) of hostC.regions"),
        "{msg}"
    );
    assert!(msg.contains("leave out the --host-regions file"), "{msg}");
}

#[test]
fn a_host_region_over_default_ram_moves_ram() {
    let mut host = smmuv3();
    host.regions.push(region(
        0x6000_0000,
        0x60ff_ffff,
        HostRegionKind::Reserved,
        "hostB.regions",
    ));
    let map = plan(&PlanInput::new(GIB), &host).expect("plan");
    assert_eq!(
        ram(&map),
        vec![(GIB, 0x6000_0000), (0x6100_0000, GIB + GIB + 0x100_0000)]
    );
    for r in &map.ram {
        let s = Span::new(r.start.0, r.end() - 1).expect("span");
        assert!(host.regions.iter().all(|h| !h.span.overlaps(&s)));
    }
}

#[test]
fn regions_where_the_kernel_goes_are_fatal() {
    let host = HostConstraints {
        regions: vec![region(
            0x4100_0000,
            0x41ff_ffff,
            HostRegionKind::Reserved,
            "hostB.regions",
        )],
        ..Default::default()
    };
    let err = plan(&PlanInput::new(GIB), &host).expect_err("fatal");
    let msg = err.to_string();
    assert!(matches!(err, PlanError::LowMemoryCollision { .. }), "{msg}");
    assert!(
        msg.contains("fixed low memory [0x40000000, 0x44000000) (kernel Image, device tree)"),
        "{msg}"
    );
    assert!(
        msg.contains("lists nothing in [0x40000000, 0x44000000)"),
        "{msg}"
    );
}

#[test]
fn the_ipa_space_limits_ram() {
    let err = plan(&PlanInput::new(1 << 40), &HostConstraints::default()).expect_err("too big");
    assert!(matches!(err, PlanError::RamDoesNotFit { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("40-bit guest physical address limit"),
        "{err}"
    );
}

#[test]
fn holes_name_every_device_area() {
    let map = plan(&PlanInput::new(GIB), &smmuv3()).expect("plan");
    let find = |addr: u64| {
        map.holes
            .iter()
            .find(|h| h.span.start <= addr && addr <= h.span.end)
            .map(|h| h.reason.clone())
            .unwrap_or_default()
    };
    assert_eq!(find(0x0900_0000), "UART (16550)");
    assert_eq!(find(0x0a00_0000), "GICv3 distributor");
    assert_eq!(find(0x0a10_0000), "GICv3 redistributors");
    assert_eq!(
        find(0x0c21_0040),
        "GICv3 ITS translation frame: guest MSI doorbell"
    );
    assert_eq!(find(0x1000_0000), "PCI ECAM (bus 0 config space)");
    assert_eq!(find(0x2000_0000), "32-bit PCI MMIO window");
    assert_eq!(find(0x0,), "device area (unused)");
    let below: u128 = map.holes.iter().map(|h| h.span.size()).sum();
    assert_eq!(below, u128::from(GIB), "the holes tile the device area");
}

#[test]
fn same_inputs_same_map_in_any_order() {
    let mut host = smmuv3();
    host.regions.extend([
        region(0x0c00_0000, 0x0cff_ffff, HostRegionKind::Reserved, "b"),
        region(0x6000_0000, 0x60ff_ffff, HostRegionKind::Reserved, "b"),
        region(0x6000_0000, 0x60ff_ffff, HostRegionKind::Reserved, "b"),
    ]);
    let first = plan(&PlanInput::new(3 * GIB), &host).expect("plan");
    for k in 0..4 {
        let mut other = host.clone();
        other.regions.rotate_left(k);
        other.regions.reverse();
        assert_eq!(
            format!("{:?}", plan(&PlanInput::new(3 * GIB), &other)),
            format!("{:?}", Ok::<_, PlanError>(first.clone()))
        );
    }
}
