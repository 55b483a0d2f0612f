//! The guest address plan: host constraints gathered before anything is
//! mapped, the planner (`arch::plan`, through the native platform's
//! `Platform::plan`), and the table `--dry-run` (`minivmm plan`) prints.
//!
//! The VM build calls [`gather`] with the BDFs it will assign, adds what
//! VFIO reports (`HostConstraints::add_iova_ranges`, `add_page_sizes`), and
//! plans with the platform's planner; `--dry-run` does the same without
//! VFIO, so the IOVA ranges stay unknown there. A VM that can be
//! hot-plugged (served by `--api-socket`) also reserves what the host's
//! other IOMMU groups may bring ([`Reservation`], [`plan_vm`]).

use std::fmt::Write as _;
use std::path::Path;

mod reserve;

pub use reserve::{Candidate, Reservation};

use arch::plan::{GuestMap, HostConstraints, PlanError, PlanInput, ResvKind, Span};
use host_iommu::{Bdf, HostIommuError, SYSFS_ROOT};

use crate::config::VmConfig;
use crate::platform::{Native, Platform};

/// Planning failed: reading the host, or no valid map.
#[derive(Debug, thiserror::Error)]
pub enum PlanFailure {
    /// Reading sysfs or a `--host-regions` file failed.
    #[error(transparent)]
    Host(#[from] HostIommuError),
    /// No valid map exists.
    #[error(transparent)]
    Plan(#[from] PlanError),
}

/// What the configuration asks of the planner.
pub fn plan_input(config: &VmConfig) -> PlanInput {
    PlanInput {
        allow_direct_regions: config.allow_direct_regions,
        ..PlanInput::new(config.memory)
    }
}

/// The planner's inputs: the configuration's, and the host constraints
/// from the sysfs `reserved_regions` of each of `vfio_bdfs` plus the
/// `--host-regions` files. IOVA ranges are left unknown for VFIO to fill.
pub fn gather(
    config: &VmConfig,
    vfio_bdfs: &[String],
) -> Result<(PlanInput, HostConstraints), PlanFailure> {
    gather_in(Path::new(SYSFS_ROOT), config, vfio_bdfs)
}

/// [`gather`] with sysfs at `sysfs_root`.
pub fn gather_in(
    sysfs_root: &Path,
    config: &VmConfig,
    vfio_bdfs: &[String],
) -> Result<(PlanInput, HostConstraints), PlanFailure> {
    let bdfs = vfio_bdfs
        .iter()
        .map(|b| b.parse::<Bdf>())
        .collect::<Result<Vec<_>, _>>()?;
    let host = host_iommu::gather(sysfs_root, &bdfs, &config.host_regions)?;
    Ok((plan_input(config), host))
}

/// Plans the VM for `host`: a hot-pluggable one (`config.hotplug`, on a
/// platform with hotplug) also reserves what this host's IOMMU groups may
/// bring later. Returns the map and the constraints it obeyed.
pub fn plan_vm(
    config: &VmConfig,
    input: &PlanInput,
    host: HostConstraints,
) -> Result<(GuestMap, HostConstraints), PlanFailure> {
    if config.hotplug && Native::HOTPLUG.is_ok() {
        return Reservation::read_in(Path::new(SYSFS_ROOT)).plan(input, &host);
    }
    let map = Native::plan(input, &host)?;
    Ok((map, host))
}

/// `--dry-run`: plans for the configuration's assigned devices and host
/// files, and returns the table to print.
pub fn dry_run(config: &VmConfig) -> Result<String, PlanFailure> {
    let bdfs: Vec<String> = config.vfio.iter().map(|v| v.bdf.clone()).collect();
    let (input, host) = gather(config, &bdfs)?;
    let (map, host) = plan_vm(config, &input, host)?;
    Ok(render(&map, &host))
}

/// `4 GiB`, `639 KiB`, `3071 MiB`: binary units, exact in the largest unit
/// that keeps the number below 100000, else rounded (`1.33 GiB`).
pub fn human_size(bytes: u128) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut top = 0;
    while top + 1 < UNITS.len() && bytes >= 1 << (10 * (top + 1)) {
        top += 1;
    }
    for unit in (0..=top).rev() {
        let scale = 1u128 << (10 * unit);
        if bytes.is_multiple_of(scale) && bytes / scale < 100_000 {
            return format!("{} {}", bytes / scale, UNITS[unit]);
        }
    }
    format!(
        "{:.2} {}",
        bytes as f64 / (1u128 << (10 * top)) as f64,
        UNITS[top]
    )
}

fn row(out: &mut String, span: Span, what: &str) {
    let _ = writeln!(
        out,
        "  {:#018x}  {:#018x}  {:>10}  {what}",
        span.start,
        span.end,
        human_size(span.size())
    );
}

const HEADER: &str = "  start               end                       size  use";

/// The map as a table: one line per range in address order with what it is
/// and why, then the virtio-iommu view and the host constraints it obeys.
pub fn render(map: &GuestMap, host: &HostConstraints) -> String {
    let mut out = String::new();
    let ram: u64 = map.ram.iter().map(|r| r.size).sum();
    let _ = writeln!(
        out,
        "Guest address map ({} of RAM):",
        human_size(ram.into())
    );
    let _ = writeln!(out, "{HEADER}");
    // RAM split around the holes inside it (the legacy BIOS area), like e820.
    let mut rows: Vec<(Span, String)> = map
        .holes
        .iter()
        .map(|h| (h.span, format!("hole: {}", h.reason)))
        .collect();
    for r in &map.ram {
        let (first, end) = (r.start.0, r.end());
        let mut start = first;
        for h in map
            .holes
            .iter()
            .filter(|h| h.span.start >= first && h.span.end < end)
        {
            if h.span.start > start {
                rows.push((
                    Span {
                        start,
                        end: h.span.start - 1,
                    },
                    "RAM".into(),
                ));
            }
            start = h.span.end + 1;
        }
        if start < end {
            rows.push((
                Span {
                    start,
                    end: end - 1,
                },
                "RAM".into(),
            ));
        }
    }
    let (base, size) = map.mmio64;
    if let Some(span) = Span::from_size(base, size) {
        rows.push((span, "64-bit PCI MMIO window".into()));
    }
    rows.sort();
    for (span, what) in &rows {
        row(&mut out, *span, what);
    }

    let _ = writeln!(out, "\nvirtio-iommu input range: {}", map.iommu_input_range);
    let _ = writeln!(
        out,
        "virtio-iommu PROBE reserved regions (each assigned endpoint):"
    );
    for r in &map.probe_reserved {
        let kind = match r.kind {
            ResvKind::Reserved => "RESERVED",
            ResvKind::Msi => "MSI",
        };
        row(&mut out, r.span, kind);
    }
    if !map.identity_maps.is_empty() {
        let _ = writeln!(out, "\nIdentity maps (--allow-direct-regions):");
        for m in &map.identity_maps {
            row(&mut out, m.span, &format!("direct region of {}", m.source));
        }
    }

    let _ = writeln!(out, "\nHost constraints:");
    let mut regions = host.regions.clone();
    regions.sort();
    regions.dedup();
    if regions.is_empty() {
        let _ = writeln!(
            out,
            "  no reserved regions (no --vfio device, no --host-regions file)"
        );
    }
    for r in &regions {
        row(&mut out, r.span, &format!("{} of {}", r.kind, r.source));
    }
    match &host.iova_ranges {
        None => {
            let _ = writeln!(
                out,
                "  IOVA ranges: not known until VFIO opens the devices; RAM avoids the regions above"
            );
        }
        Some(ranges) => {
            let list: Vec<String> = ranges.iter().map(Span::to_string).collect();
            let _ = writeln!(out, "  IOVA ranges: {}", list.join(", "));
        }
    }
    for note in &map.notes {
        let _ = writeln!(out, "\nnote: {note}");
    }
    out
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{expand_plan_subcommand, Cli};

    fn config(args: &[&str]) -> VmConfig {
        let argv = expand_plan_subcommand(
            ["minivmm"]
                .iter()
                .chain(args)
                .map(|a| std::ffi::OsString::from(*a)),
        );
        VmConfig::from_cli(Cli::try_parse_from(argv).expect("clap")).expect("config")
    }

    #[test]
    fn sizes() {
        assert_eq!(human_size(4 << 30), "4 GiB");
        assert_eq!(human_size(0x9fc00), "639 KiB");
        assert_eq!(human_size(3 << 29), "1536 MiB");
        assert_eq!(human_size((1 << 40) + 1), "1.00 TiB");
        assert_eq!(human_size(1 << 64), "16 EiB");
        assert_eq!(human_size(12), "12 B");
    }

    #[test]
    fn dry_run_needs_no_kernel_and_plan_is_dry_run() {
        let c = config(&["--dry-run", "--memory", "2G"]);
        assert!(c.dry_run && c.kernel.as_os_str().is_empty());
        let c = config(&["plan", "--allow-direct-regions", "--host-regions", "/a"]);
        assert!(c.dry_run && c.allow_direct_regions);
        assert_eq!(c.host_regions, vec![std::path::PathBuf::from("/a")]);
        assert_eq!(
            plan_input(&c),
            PlanInput {
                allow_direct_regions: true,
                ..PlanInput::new(512 << 20)
            }
        );
        assert!(Cli::try_parse_from(["minivmm", "--memory", "2G"]).is_err());
    }

    #[test]
    fn default_table() {
        let c = config(&["--dry-run", "--memory", "4G"]);
        let text = dry_run(&c).expect("plan");
        for line in [
            "  0x0000000000000000  0x000000000009fbff     639 KiB  RAM",
            "  0x000000000009fc00  0x00000000000fffff     385 KiB  hole: legacy BIOS area",
            "  0x0000000000100000  0x00000000bfffffff    3071 MiB  RAM",
            "  0x00000000c0000000  0x00000000dfffffff     512 MiB  hole: 32-bit PCI MMIO window",
            "  0x0000000100000000  0x000000013fffffff       1 GiB  RAM",
            "  0x0000000140000000  0x000000113fffffff      64 GiB  64-bit PCI MMIO window",
            "  0x00000000fee00000  0x00000000feefffff       1 MiB  MSI",
        ] {
            assert!(text.contains(line), "no '{line}' in\n{text}");
        }
    }

    #[test]
    fn same_constraints_in_any_order_print_the_same() {
        use arch::plan::{HostRegion, HostRegionKind};
        let region = |start, end, kind, source: &str| HostRegion {
            span: Span { start, end },
            kind,
            source: source.into(),
        };
        let mut host = HostConstraints {
            regions: vec![
                region(0xfee0_0000, 0xfeef_ffff, HostRegionKind::Msi, "a"),
                region(
                    0xfd_0000_0000,
                    0xff_ffff_ffff,
                    HostRegionKind::Reserved,
                    "b",
                ),
                region(0x9000_0000, 0x90ff_ffff, HostRegionKind::Reserved, "b"),
            ],
            ..Default::default()
        };
        let input = PlanInput::new(1100 << 30);
        let first = render(
            &arch::x86_64::plan::plan(&input, &host).expect("plan"),
            &host,
        );
        host.regions.reverse();
        let again = render(
            &arch::x86_64::plan::plan(&input, &host).expect("plan"),
            &host,
        );
        assert_eq!(first, again);
    }

    #[test]
    fn arm64_table_shows_the_doorbell_and_the_hosts_window() {
        use arch::plan::{HostRegion, HostRegionKind};
        let host = HostConstraints {
            regions: vec![HostRegion {
                span: Span {
                    start: 0x0800_0000,
                    end: 0x080f_ffff,
                },
                kind: HostRegionKind::Msi,
                source: "smmuv3.regions".into(),
            }],
            ..Default::default()
        };
        let map = arch::aarch64::plan::plan(&PlanInput::new(1 << 30), &host).expect("plan");
        let text = render(&map, &host);
        for line in [
            "  0x0000000008000000  0x00000000080fffff       1 MiB  hole: host reserved region 0x8000000-0x80fffff (msi) of smmuv3.regions",
            "  0x000000000c210000  0x000000000c21ffff      64 KiB  hole: GICv3 ITS translation frame: guest MSI doorbell",
            "  0x0000000040000000  0x000000007fffffff       1 GiB  RAM",
            "  0x0000000100000000  0x00000010ffffffff      64 GiB  64-bit PCI MMIO window",
            "  0x0000000008000000  0x00000000080fffff       1 MiB  RESERVED",
            "  0x000000000c210000  0x000000000c21ffff      64 KiB  MSI",
        ] {
            assert!(text.contains(line), "no '{line}' in\n{text}");
        }
    }

    #[test]
    fn gathers_sysfs_and_files() {
        let dir = std::env::temp_dir().join(format!("vmm-plan-gather-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let group = dir.join("kernel/iommu_groups/3");
        let device = dir.join("bus/pci/devices/0000:01:00.0");
        std::fs::create_dir_all(&group).expect("mkdir");
        std::fs::create_dir_all(&device).expect("mkdir");
        std::fs::write(
            group.join("reserved_regions"),
            "0x00000000fee00000 0x00000000feefffff msi\n",
        )
        .expect("write");
        std::os::unix::fs::symlink(&group, device.join("iommu_group")).expect("link");
        let file = dir.join("host-b.txt");
        std::fs::write(&file, "0x000000fd00000000 0x000000ffffffffff reserved\n").expect("w");

        let c = config(&["--dry-run", "--host-regions", file.to_str().expect("utf-8")]);
        let (input, host) = gather_in(&dir, &c, &["01:00.0".into()]).expect("gather");
        assert_eq!(input, PlanInput::new(512 << 20));
        assert_eq!(host.regions.len(), 2);
        assert_eq!(host.regions[0].source, "0000:01:00.0");
        assert!(host.regions[1].source.ends_with("host-b.txt"));
        let map = arch::x86_64::plan::plan(&input, &host).expect("plan");
        let text = render(&map, &host);
        assert!(text.contains("msi of 0000:01:00.0"), "{text}");
        assert!(
            text.contains("0x000000fd00000000  0x000000ffffffffff"),
            "{text}"
        );

        let err = gather_in(&dir, &c, &["0000:05:00.0".into()]).expect_err("missing");
        assert_eq!(err.to_string(), "no PCI device 0000:05:00.0 (see lspci -D)");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
