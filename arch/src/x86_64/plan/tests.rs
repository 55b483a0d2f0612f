//! The planner over host shapes seen in the wild.

use super::*;
use crate::x86_64::layout::{self, RamRegion};
use vm_memory::GuestAddress;

const GIB: u64 = 1 << 30;
const TIB: u64 = 1 << 40;
const DEV: &str = "0000:01:00.0";

fn region(start: u64, end: u64, kind: HostRegionKind, source: &str) -> HostRegion {
    HostRegion {
        span: Span { start, end },
        kind,
        source: source.to_string(),
    }
}

fn span(start: u64, end: u64) -> Span {
    Span { start, end }
}

fn ram(map: &GuestMap) -> Vec<(u64, u64)> {
    map.ram.iter().map(|r| (r.start.0, r.end())).collect()
}

/// VT-d: the MSI window, 39-bit IOVA ranges around it.
fn intel() -> HostConstraints {
    let mut host = HostConstraints {
        regions: vec![region(0xfee0_0000, 0xfeef_ffff, HostRegionKind::Msi, DEV)],
        ..Default::default()
    };
    host.add_iova_ranges(
        DEV,
        &[span(0, 0xfed_fffff), span(0xfef0_0000, 0x7f_ffff_ffff)],
    );
    host.add_page_sizes(0x4020_1000);
    host
}

/// AMD-Vi: intel's shape plus the HyperTransport hole, 48-bit.
fn amd() -> HostConstraints {
    let mut host = HostConstraints {
        regions: vec![
            region(0xfee0_0000, 0xfeef_ffff, HostRegionKind::Msi, DEV),
            region(
                0xfd_0000_0000,
                0xff_ffff_ffff,
                HostRegionKind::Reserved,
                DEV,
            ),
        ],
        ..Default::default()
    };
    host.add_iova_ranges(
        DEV,
        &[
            span(0, 0xfed_fffff),
            span(0xfef0_0000, 0xfc_ffff_ffff),
            span(0x100_0000_0000, 0xffff_ffff_ffff),
        ],
    );
    host
}

/// Every RAM byte avoids every host region and lies inside the IOVA ranges.
fn assert_ram_valid(map: &GuestMap, host: &HostConstraints, memory: u64) {
    let total: u64 = map.ram.iter().map(|r| r.size).sum();
    assert_eq!(total, memory);
    assert_eq!(map.ram[0].start, GuestAddress(0));
    assert!(map.ram[0].size >= FIXED_LOW_END.min(memory));
    for r in &map.ram {
        let s = span(r.start.0, r.end() - 1);
        assert!(
            !s.overlaps(&span(0xc000_0000, 0xffff_ffff)),
            "{s} in the hole"
        );
        for h in &host.regions {
            assert!(!s.overlaps(&h.span), "RAM {s} overlaps {h}");
        }
        if let Some(iova) = &host.iova_ranges {
            assert!(iova.iter().any(|i| i.contains(&s)), "RAM {s} not mappable");
        }
    }
    let (base, size) = map.mmio64;
    assert!(base >= map.ram_end().max(1 << 32));
    let w = span(base, base + size - 1);
    for h in &host.regions {
        assert!(!w.overlaps(&h.span), "64-bit window {w} overlaps {h}");
    }
}

#[test]
fn no_constraints_give_todays_layout() {
    for memory in [
        64 << 20,
        512 << 20,
        3 * GIB,
        3 * GIB + 4096,
        8 * GIB,
        2 * TIB,
    ] {
        let map = plan(&PlanInput::new(memory), &HostConstraints::default()).expect("plan");
        assert_eq!(map.ram, layout::ram_regions(memory), "{memory:#x}");
        assert_eq!(map.mmio64, layout::pci_mmio64_window(memory));
        assert_eq!(map.msi_window, span(0xfee0_0000, 0xfeef_ffff));
        assert_eq!(map.iommu_input_range, span(0, u64::MAX));
        assert_eq!(
            map.probe_reserved,
            vec![ResvRegion {
                span: MSI_WINDOW,
                kind: ResvKind::Msi
            }]
        );
        assert!(map.identity_maps.is_empty() && map.notes.is_empty());
    }
}

#[test]
fn holes_explain_the_32_bit_hole() {
    let map = plan(&PlanInput::new(8 * GIB), &intel()).expect("plan");
    let find = |addr: u64| {
        map.holes
            .iter()
            .find(|h| h.span.start <= addr && addr <= h.span.end)
            .map(|h| h.reason.clone())
            .unwrap_or_default()
    };
    assert!(find(0xa0000).contains("legacy BIOS area"));
    assert_eq!(find(0xc000_0000), "32-bit PCI MMIO window");
    assert!(find(0xe000_0000).contains("ECAM"));
    assert_eq!(find(0xe010_0000), "PCI hotplug registers");
    assert_eq!(find(0xe010_1000), "32-bit MMIO hole (unused)");
    assert_eq!(find(0xfec0_0000), "IOAPIC");
    let msi = find(0xfee0_0000);
    assert!(msi.contains("LAPIC and guest MSI window"), "{msi}");
    assert!(msi.contains("host reserved region 0xfee00000-0xfeefffff (msi) of 0000:01:00.0"));
    assert!(msi.contains("outside the host IOVA ranges"));
    // Holes are sorted, disjoint, and tile [3 GiB, 4 GiB).
    for pair in map.holes.windows(2) {
        assert!(pair[0].span.end < pair[1].span.start);
    }
    let hole: u128 = map.holes[1..].iter().map(|h| h.span.size()).sum();
    assert_eq!(hole, 1 << 30);
}

#[test]
fn intel_host_keeps_the_default_map() {
    let host = intel();
    for memory in [2 * GIB, 8 * GIB, 400 * GIB] {
        let map = plan(&PlanInput::new(memory), &host).expect("plan");
        assert_eq!(map.ram, layout::ram_regions(memory));
        assert_ram_valid(&map, &host, memory);
        assert_eq!(map.iommu_input_range, span(0, 0x7f_ffff_ffff));
        // The only gap in the IOVA ranges is the MSI window: MSI, not RESERVED.
        assert_eq!(
            map.probe_reserved,
            vec![ResvRegion {
                span: MSI_WINDOW,
                kind: ResvKind::Msi
            }]
        );
    }
}

#[test]
fn window_outside_the_iova_ranges_is_a_note() {
    let host = intel();
    let map = plan(&PlanInput::new(500 * GIB), &host).expect("plan");
    assert_ram_valid(&map, &host, 500 * GIB);
    assert_eq!(map.mmio64.0, 501 * GIB);
    assert_eq!(map.notes.len(), 1, "{:?}", map.notes);
    assert!(map.notes[0].contains("outside the host IOVA ranges"));
}

#[test]
fn guest_too_big_for_a_39_bit_iommu_is_refused() {
    let err = plan(&PlanInput::new(600 * GIB), &intel()).expect_err("too big");
    let msg = err.to_string();
    assert!(
        matches!(err, PlanError::RamDoesNotFit { fits_mib, .. } if fits_mib == 511 << 10),
        "{msg}"
    );
    assert!(msg.contains("0x8000000000"), "{msg}");
    assert!(msg.contains("39-bit host IOMMU"), "{msg}");
    assert!(msg.contains(DEV), "{msg}");
    assert!(msg.contains("--memory 523264M"), "{msg}");
}

#[test]
fn amd_guests_skip_the_hypertransport_hole() {
    let host = amd();
    let memory = 2 * TIB;
    let map = plan(&PlanInput::new(memory), &host).expect("plan");
    assert_ram_valid(&map, &host, memory);
    assert_eq!(
        ram(&map),
        vec![
            (0, 3 * GIB),
            (4 * GIB, 0xfd_0000_0000),
            (
                0x100_0000_0000,
                0x100_0000_0000 + memory - 3 * GIB - (0xfd_0000_0000 - 4 * GIB)
            ),
        ]
    );
    assert!(map
        .holes
        .iter()
        .any(|h| h.span == span(0xfd_0000_0000, 0xff_ffff_ffff)
            && h.reason.contains("(reserved) of 0000:01:00.0")));
    assert!(map.probe_reserved.contains(&ResvRegion {
        span: span(0xfd_0000_0000, 0xff_ffff_ffff),
        kind: ResvKind::Reserved
    }));
    // A guest ending just below the hole keeps its 64-bit window clear of it.
    let memory = 0xfd_0000_0000 - GIB;
    let map = plan(&PlanInput::new(memory), &host).expect("plan");
    assert_ram_valid(&map, &host, memory);
    assert_eq!(map.mmio64.0, 0x100_0000_0000);
}

#[test]
fn rmrr_below_3g_needs_the_flag_and_shrinks_low_ram() {
    let mut host = intel();
    host.regions.push(region(
        0xbf00_0000,
        0xbfff_ffff,
        HostRegionKind::Direct,
        DEV,
    ));
    let err = plan(&PlanInput::new(4 * GIB), &host).expect_err("refused");
    assert!(matches!(err, PlanError::DirectRegionRefused { .. }));
    let msg = err.to_string();
    assert!(
        msg.contains("device 0000:01:00.0 has a direct-mapped (RMRR) region 0xbf000000-0xbfffffff")
    );
    assert!(msg.contains("pass --allow-direct-regions"), "{msg}");

    let input = PlanInput {
        allow_direct_regions: true,
        ..PlanInput::new(4 * GIB)
    };
    let map = plan(&input, &host).expect("plan");
    assert_ram_valid(&map, &host, 4 * GIB);
    assert_eq!(
        ram(&map),
        vec![(0, 0xbf00_0000), (4 * GIB, 4 * GIB + GIB + 0x100_0000)]
    );
    assert_eq!(
        map.identity_maps,
        vec![IdentityMap {
            span: span(0xbf00_0000, 0xbfff_ffff),
            source: DEV.into()
        }]
    );
    assert!(map.probe_reserved.contains(&ResvRegion {
        span: span(0xbf00_0000, 0xbfff_ffff),
        kind: ResvKind::Reserved
    }));
    assert!(map
        .holes
        .iter()
        .any(|h| h.span.start == 0xbf00_0000 && h.reason.contains("mapped identity")));
}

#[test]
fn rmrr_in_the_middle_of_low_ram_splits_it() {
    let host = HostConstraints {
        regions: vec![region(
            0x8000_1000,
            0x8000_1fff,
            HostRegionKind::DirectRelaxable,
            DEV,
        )],
        ..Default::default()
    };
    let input = PlanInput {
        allow_direct_regions: true,
        ..PlanInput::new(3 * GIB)
    };
    let map = plan(&input, &host).expect("plan");
    assert_ram_valid(&map, &host, 3 * GIB);
    // Widened to 2 MiB so every RAM boundary stays huge-page aligned.
    assert_eq!(
        ram(&map),
        vec![
            (0, 0x8000_0000),
            (0x8020_0000, 0xc000_0000),
            (4 * GIB, 4 * GIB + 0x20_0000)
        ]
    );
    let pad = map
        .holes
        .iter()
        .find(|h| h.span.start == 0x8000_2000)
        .expect("padding");
    assert_eq!(pad.reason, "alignment padding around a host region");
}

#[test]
fn regions_in_low_memory_are_fatal_whatever_the_flags() {
    for (start, end, kind) in [
        (0x000e_0000, 0x000e_ffff, HostRegionKind::Direct),
        (0x100_0000, 0x1ff_ffff, HostRegionKind::DirectRelaxable),
        (0x3ff_f000, 0x400_0fff, HostRegionKind::Reserved),
    ] {
        let host = HostConstraints {
            regions: vec![region(start, end, kind, DEV)],
            ..Default::default()
        };
        let input = PlanInput {
            allow_direct_regions: true,
            ..PlanInput::new(GIB)
        };
        let err = plan(&input, &host).expect_err("fatal");
        let msg = err.to_string();
        assert!(matches!(err, PlanError::LowMemoryCollision { .. }), "{msg}");
        assert!(
            msg.contains(&format!("{start:#x}-{end:#x} ({kind}) of {DEV}")),
            "{msg}"
        );
        assert!(msg.contains("assign a different device"), "{msg}");
        assert_eq!(
            kind.is_direct(),
            msg.contains("--allow-direct-regions does not help")
        );
    }
}

#[test]
fn iova_ranges_must_cover_low_memory() {
    let mut host = HostConstraints::default();
    host.add_iova_ranges(DEV, &[span(0x10_0000, 0x7f_ffff_ffff)]);
    let err = plan(&PlanInput::new(GIB), &host).expect_err("fatal");
    assert!(matches!(err, PlanError::LowMemoryNotMappable { gap, .. } if gap == span(0, 0xf_ffff)));
    host.iova_ranges = Some(Vec::new());
    assert!(matches!(
        plan(&PlanInput::new(GIB), &host),
        Err(PlanError::NoIovaRange { .. })
    ));
}

#[test]
fn direct_region_over_the_pci_window_cannot_be_mapped() {
    let host = HostConstraints {
        regions: vec![region(
            0xd000_0000,
            0xd00f_ffff,
            HostRegionKind::Direct,
            DEV,
        )],
        ..Default::default()
    };
    let input = PlanInput {
        allow_direct_regions: true,
        ..PlanInput::new(GIB)
    };
    let err = plan(&input, &host).expect_err("fatal");
    assert!(err.to_string().contains("32-bit PCI MMIO window"), "{err}");
}

#[test]
fn migration_hosts_are_all_avoided() {
    // Host A: VT-d with an RMRR-free device; host B (from a file): a
    // reserved range in low RAM; host C: AMD's HT hole.
    let mut host = intel();
    host.regions.extend([
        region(
            0x9000_0000,
            0x90ff_ffff,
            HostRegionKind::Reserved,
            "hosts/b.txt",
        ),
        region(
            0xfd_0000_0000,
            0xff_ffff_ffff,
            HostRegionKind::Reserved,
            "hosts/c.txt",
        ),
    ]);
    let memory = 2 * GIB + 512 * GIB;
    let err = plan(&PlanInput::new(memory), &host).expect_err("39-bit host A");
    assert!(matches!(err, PlanError::RamDoesNotFit { .. }));

    let memory = 3 * GIB;
    let map = plan(&PlanInput::new(memory), &host).expect("plan");
    assert_ram_valid(&map, &host, memory);
    assert_eq!(
        ram(&map),
        vec![
            (0, 0x9000_0000),
            (0x9100_0000, 0xc000_0000),
            (4 * GIB, 4 * GIB + 0x100_0000)
        ]
    );
    let b = map
        .holes
        .iter()
        .find(|h| h.span.start == 0x9000_0000)
        .expect("hole");
    assert_eq!(
        b.reason,
        "host reserved region 0x90000000-0x90ffffff (reserved) of hosts/b.txt"
    );
    assert!(map
        .probe_reserved
        .iter()
        .any(|r| r.span.start == 0x9000_0000));
}

#[test]
fn iova_ranges_of_several_hosts_intersect() {
    let mut host = intel();
    host.add_iova_ranges("0000:02:00.0", &[span(0, 0x3f_ffff_ffff)]);
    assert_eq!(
        host.iova_ranges,
        Some(vec![
            span(0, 0xfed_fffff),
            span(0xfef0_0000, 0x3f_ffff_ffff)
        ])
    );
    let map = plan(&PlanInput::new(GIB), &host).expect("plan");
    assert_eq!(map.iommu_input_range, span(0, 0x3f_ffff_ffff));
}

#[test]
fn page_size_must_divide_memory() {
    let mut host = HostConstraints::default();
    host.add_page_sizes(0x1_0000);
    assert_eq!(host.page_size, Some(0x1_0000));
    let err = plan(&PlanInput::new(GIB + 0x1000), &host).expect_err("unaligned");
    assert_eq!(
        err,
        PlanError::MemoryNotPageAligned {
            page_size: 0x1_0000
        }
    );
}

#[test]
fn invalid_region_is_refused() {
    let host = HostConstraints {
        regions: vec![region(0x2000, 0x1000, HostRegionKind::Reserved, DEV)],
        ..Default::default()
    };
    assert!(matches!(
        plan(&PlanInput::new(GIB), &host),
        Err(PlanError::InvalidRegion { .. })
    ));
}

/// A deterministic shuffle (no RNG dependency): reverse and rotate.
fn shuffled<T: Clone>(v: &[T], k: usize) -> Vec<T> {
    let mut out: Vec<T> = v.iter().rev().cloned().collect();
    if !out.is_empty() {
        let n = out.len();
        out.rotate_left(k % n);
    }
    out
}

#[test]
fn same_inputs_same_map_in_any_order() {
    let mut host = amd();
    host.regions.extend([
        region(
            0x9000_0000,
            0x90ff_ffff,
            HostRegionKind::Reserved,
            "hosts/b.txt",
        ),
        region(
            0x9000_0000,
            0x90ff_ffff,
            HostRegionKind::Reserved,
            "hosts/b.txt",
        ),
        region(
            0xa000_0000,
            0xa01f_ffff,
            HostRegionKind::Direct,
            "0000:03:00.0",
        ),
        region(
            0x20_0000_0000,
            0x20_0fff_ffff,
            HostRegionKind::Msi,
            "hosts/c.txt",
        ),
    ]);
    let input = PlanInput {
        allow_direct_regions: true,
        ..PlanInput::new(TIB + 7 * GIB)
    };
    let first = plan(&input, &host).expect("plan");
    for k in 0..6 {
        let mut other = host.clone();
        other.regions = shuffled(&host.regions, k);
        other.iova_ranges = host.iova_ranges.as_ref().map(|v| shuffled(v, k));
        let again = plan(&input, &other).expect("plan");
        assert_eq!(again, first);
        assert_eq!(format!("{again:?}"), format!("{first:?}"));
    }
    // Duplicates collapse.
    assert_eq!(
        first
            .holes
            .iter()
            .filter(|h| h.span.start == 0x9000_0000)
            .count(),
        1
    );
}

#[test]
fn ram_regions_are_layout_compatible() {
    let map = plan(&PlanInput::new(GIB), &HostConstraints::default()).expect("plan");
    assert_eq!(
        map.ram,
        vec![RamRegion {
            start: GuestAddress(0),
            size: GIB
        }]
    );
    assert_eq!(map.input_range(), 0..=u64::MAX);
}

/// Found by fuzz/planner: with a 4 GiB host page size, a reserved region
/// from 510 MiB widened down to 0 and RAM started at 72 GiB, a map the
/// guest cannot boot in; it is refused instead.
#[test]
fn page_size_that_swallows_low_memory_is_refused() {
    let mut host = HostConstraints {
        regions: vec![region(
            0x1fe0_0000,
            0x11_d17f_ffff,
            HostRegionKind::Reserved,
            "hostB",
        )],
        ..Default::default()
    };
    host.add_page_sizes(1 << 32);
    let input = PlanInput::new(4 * GIB);
    let err = plan(&input, &host).expect_err("low memory swallowed");
    assert_eq!(
        err,
        PlanError::PageSizeSwallowsLowMemory {
            page_size: 1 << 32,
            low: FixedLow {
                span: Span {
                    start: 0,
                    end: FIXED_LOW_END - 1
                },
                contents: "boot data, ACPI tables, kernel"
            }
        }
    );
    assert!(err.to_string().contains("4 KiB pages"), "{err}");
    // The same region with 2 MiB pages leaves low memory alone.
    let mut host = HostConstraints {
        regions: host.regions.clone(),
        ..Default::default()
    };
    host.add_page_sizes(0x20_1000);
    let map = plan(&input, &host).expect("plan");
    assert_eq!(map.ram[0].start.0, 0);
}
