//! The guest address planner (`arch::x86_64::plan`) on random host
//! regions, IOVA ranges, page sizes and guest sizes. It either returns a
//! valid map or refuses with a message; it never panics. A returned map:
//! holds exactly the RAM asked for, in sorted disjoint regions starting at
//! 0 inside the guest's 52-bit space and outside the 32-bit MMIO hole;
//! never overlaps a host region of any kind; lies inside the IOVA ranges
//! when they are known; keeps the MSI window fixed (and reports it to
//! PROBE); puts the 64-bit window above RAM and off the host regions;
//! identity-maps exactly the direct regions; and is the same map for the
//! same constraints given in another order.
//!
//! Input: a byte choosing how the RAM size is read, the size, the 64-bit
//! window size, flags, then up to 8 host regions (kind, then a start near
//! an interesting address and a length), up to 4 IOVA ranges, a page-size
//! mask.

#![no_main]

use arch::x86_64::plan::{
    plan, HostConstraints, HostRegion, HostRegionKind, PlanInput, ResvKind, Span, MSI_WINDOW,
};
use libfuzzer_sys::fuzz_target;

struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
    fn u64(&mut self) -> u64 {
        let mut b = [0; 8];
        b.iter_mut().for_each(|x| *x = self.u8());
        u64::from_le_bytes(b)
    }
}

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// An address near one the planner cares about, or any.
fn address(i: &mut Input<'_>) -> u64 {
    let near = [
        0,
        64 * MIB,
        3 * GIB - 512 * MIB,
        3 * GIB,
        0xfec0_0000,
        0xfee0_0000,
        4 * GIB,
        64 * GIB,
        0xfd_0000_0000,
        1 << 40,
        1 << 47,
        1 << 52,
    ];
    match i.u8() % 16 {
        n @ 0..=11 => near[usize::from(n)].wrapping_add(u64::from(i.u16()) * 2 * MIB),
        12 => i.u64(),
        13 => u64::MAX - u64::from(i.u16()),
        _ => u64::from(i.u16()) * GIB,
    }
}

fn length(i: &mut Input<'_>) -> u64 {
    match i.u8() % 4 {
        0 => u64::from(i.u16()) * 0x1000,
        1 => u64::from(i.u16()) * 2 * MIB,
        2 => u64::from(i.u8()) * GIB,
        _ => i.u64(),
    }
}

fn span(start: u64, len: u64) -> Span {
    Span {
        start,
        end: start.saturating_add(len.saturating_sub(1)),
    }
}

fn overlaps(a: (u128, u128), b: (u128, u128)) -> bool {
    a.0 <= b.1 && b.0 <= a.1
}

/// Whether `r` lies inside the union of `spans` (which may touch or
/// overlap).
fn inside_union(r: (u128, u128), spans: &[Span]) -> bool {
    let mut v: Vec<(u128, u128)> = spans
        .iter()
        .filter(|s| s.start <= s.end)
        .map(|s| (u128::from(s.start), u128::from(s.end)))
        .collect();
    v.sort();
    let mut reach = r.0;
    for (s, e) in v {
        if s > reach {
            break;
        }
        if e >= reach {
            if e >= r.1 {
                return true;
            }
            reach = e + 1;
        }
    }
    false
}

fn check(input: &PlanInput, host: &HostConstraints, map: &arch::x86_64::plan::GuestMap) {
    let ram: Vec<(u128, u128)> = map
        .ram
        .iter()
        .map(|r| {
            assert!(r.size > 0, "empty RAM region");
            let start = u128::from(r.start.0);
            (start, start + u128::from(r.size) - 1)
        })
        .collect();
    let total: u128 = map.ram.iter().map(|r| u128::from(r.size)).sum();
    assert_eq!(total, u128::from(input.memory), "RAM size");
    if let Some(first) = ram.first() {
        assert_eq!(
            first.0, 0,
            "RAM starts at 0: {:x?} for {input:x?} {host:x?}",
            map.ram
        );
    }
    for w in ram.windows(2) {
        assert!(w[0].1 < w[1].0, "RAM regions sorted and disjoint: {ram:x?}");
    }
    for r in &ram {
        assert!(r.1 < 1 << 52, "RAM beyond 52 bits: {r:x?}");
        assert!(
            !overlaps(*r, (0xc000_0000, 0xffff_ffff)),
            "RAM in the MMIO hole"
        );
        for h in &host.regions {
            let h = (u128::from(h.span.start), u128::from(h.span.end));
            assert!(!overlaps(*r, h), "RAM {r:x?} over host region {h:x?}");
        }
        if let Some(iova) = &host.iova_ranges {
            assert!(
                inside_union(*r, iova),
                "RAM {r:x?} outside the IOVA ranges {iova:x?}"
            );
        }
    }
    assert_eq!(map.msi_window, MSI_WINDOW);
    assert!(map
        .probe_reserved
        .iter()
        .any(|p| p.kind == ResvKind::Msi && p.span == MSI_WINDOW));
    let (base, size) = map.mmio64;
    if size > 0 {
        let w = (u128::from(base), u128::from(base) + u128::from(size) - 1);
        for r in &ram {
            assert!(!overlaps(*r, w), "64-bit window over RAM");
        }
        for h in &host.regions {
            let h = (u128::from(h.span.start), u128::from(h.span.end));
            assert!(
                !overlaps(w, h),
                "64-bit window {w:x?} over host region {h:x?}"
            );
        }
    }
    let mut direct: Vec<Span> = host
        .regions
        .iter()
        .filter(|r| r.kind.is_direct())
        .map(|r| r.span)
        .collect();
    direct.sort();
    direct.dedup();
    let mut identity: Vec<Span> = map.identity_maps.iter().map(|m| m.span).collect();
    identity.sort();
    identity.dedup();
    assert_eq!(identity, direct, "identity maps are the direct regions");
}

fuzz_target!(|data: &[u8]| {
    let mut i = Input(data);
    let memory = match i.u8() % 4 {
        0 => u64::from(i.u16()) * MIB,
        1 => i.u64() & !0xfff,
        2 => (64 + u64::from(i.u8())) * MIB,
        _ => u64::from(i.u16()) * GIB,
    };
    let mut input = PlanInput::new(memory);
    let flags = i.u8();
    if flags & 1 != 0 {
        input.mmio64_size = length(&mut i);
    }
    input.allow_direct_regions = flags & 2 != 0;
    let mut host = HostConstraints::default();
    for n in 0..i.u8() % 9 {
        let kind = match i.u8() % 8 {
            0 => HostRegionKind::Direct,
            1 => HostRegionKind::DirectRelaxable,
            2 | 3 => HostRegionKind::Msi,
            _ => HostRegionKind::Reserved,
        };
        let start = address(&mut i);
        host.regions.push(HostRegion {
            span: span(start, length(&mut i)),
            kind,
            source: format!("host{}", n % 3),
        });
    }
    if flags & 4 != 0 {
        let ranges: Vec<Span> = (0..1 + i.u8() % 4)
            .map(|_| {
                let start = address(&mut i);
                span(start, length(&mut i))
            })
            .collect();
        host.add_iova_ranges("fuzz-iommu", &ranges);
    }
    if flags & 8 != 0 {
        host.add_page_sizes(i.u64());
    }
    match plan(&input, &host) {
        Ok(map) => {
            check(&input, &host, &map);
            let mut again = host.clone();
            again.regions.reverse();
            assert_eq!(plan(&input, &again).as_ref(), Ok(&map), "order matters");
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
});
