//! `--host-regions` files and sysfs `reserved_regions` (host-iommu): the
//! first line is a PCI address (`DDDD:BB:DD.F` or `BB:DD.F`, as `--vfio`
//! and sysfs paths take it), the rest a regions text. Checks, beyond "no
//! panic": a parsed address prints back to itself; parsed regions have
//! `start <= end`, one per non-blank, non-comment line, and their
//! canonical sysfs form parses back to the same regions; a refusal names
//! the file and a line of it.

#![no_main]

use host_iommu::{parse_regions, Bdf};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (first, rest) = text.split_once('\n').unwrap_or((&text, ""));
    if let Ok(bdf) = first.trim().parse::<Bdf>() {
        assert!(bdf.device < 32 && bdf.function < 8, "{bdf:?}");
        let again: Bdf = bdf
            .to_string()
            .parse()
            .unwrap_or_else(|e| panic!("{bdf} does not parse back: {e}"));
        assert_eq!(again, bdf);
    }
    match parse_regions(rest, "fuzz.regions", "fuzz") {
        Ok(regions) => {
            let lines = rest
                .lines()
                .filter(|l| !l.split('#').next().unwrap_or_default().trim().is_empty())
                .count();
            assert_eq!(regions.len(), lines, "one region per line");
            let mut canonical = String::new();
            for r in &regions {
                assert!(r.span.start <= r.span.end, "{r}");
                assert_eq!(r.source, "fuzz");
                canonical.push_str(&format!(
                    "0x{:016x} 0x{:016x} {}\n",
                    r.span.start,
                    r.span.end,
                    r.kind.name()
                ));
            }
            let again = parse_regions(&canonical, "canonical", "fuzz")
                .unwrap_or_else(|e| panic!("canonical form refused: {e}"));
            assert_eq!(again, regions);
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.starts_with("fuzz.regions:"), "{msg}");
            let line: usize = msg["fuzz.regions:".len()..]
                .split(':')
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("no line number in {msg}"));
            assert!(line >= 1 && line <= rest.lines().count(), "{msg}");
        }
    }
});
