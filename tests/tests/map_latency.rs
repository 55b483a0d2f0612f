//! Benchmark: DMA map+unmap latency as the L2 guest sees it on a
//! passed-through device, behind minivmm's virtio-iommu and behind QEMU's,
//! in the same L1 boot with the same L2 kernel and initramfs.
//!
//! L1 (Intel vIOMMU) binds its `edu` device to vfio-pci. The L1 scenario
//! `maplat` boots L2 under `minivmm --vfio EDU,iommu=on`, then under
//! `qemu-system-x86_64 -accel kvm` with `virtio-iommu-pci` and
//! `vfio-pci,host=EDU`; in each, the L2 scenario `maplat` binds the device
//! to the guest's own vfio-pci and times VFIO_IOMMU_MAP_DMA +
//! VFIO_IOMMU_UNMAP_DMA pairs of 4 KiB, 64 KiB and 2 MiB
//! (`resources/guest/tools/vfio-maplat.c`). Every guest request crosses the
//! VMM's virtio-iommu into a VFIO map in L1 on the emulated Intel IOMMU.
//!
//! The same runs on the arm64 nested host (L1 with an SMMUv3; QEMU is
//! Debian's arm64 qemu-system-aarch64 7.2 with `-M virt,gic-version=3`),
//! which also compares L2's boot time under the two VMMs (L2's uptime when
//! its scenario starts, and L1's wall time per VMM run).
//!
//! The test needs the L1 image variant that carries QEMU (`build.sh
//! --with-qemu`), which only this test builds. It checks that both VMMs
//! produced results and prints the comparison; the target (minivmm's p50 at
//! most 0.8x QEMU's) is reported, not asserted: timings under TCG are noisy.

use std::time::Instant;

use minivmm_tests::{build_image_variant_for, Arch, HostIommu, NestedHost, Passthrough};

/// The mapping sizes the guest tool measures.
const SIZES: [u64; 3] = [4 << 10, 64 << 10, 2 << 20];
/// The VMMs of one x86 run, in the order they run; `floor` is no VMM but
/// the same guest program run in L1 itself on L1's own IOMMU (the floor of
/// the nested benchmark suite, docs/performance.md).
const VMMS: [&str; 3] = ["floor", "minivmm", "qemu"];
/// The arm64 run also measures minivmm without its request poller
/// (`--iommu-poll-us 0`), which is faster there (see docs/arm64.md).
const VMMS_ARM64: [&str; 3] = ["minivmm", "minivmm-nopoll", "qemu"];

/// One `MINIVMM-MAPLAT vmm=L size=B n=N p50_ns=.. p90_ns=.. p99_ns=.. mean_ns=..` line.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    vmm: String,
    size: u64,
    n: u64,
    p50: u64,
    p90: u64,
    p99: u64,
    mean: u64,
}

impl Sample {
    fn parse(line: &str) -> Option<Self> {
        let rest = &line[line.find("MINIVMM-MAPLAT ")? + "MINIVMM-MAPLAT ".len()..];
        let field = |key: &str| {
            rest.split_whitespace()
                .find_map(|word| word.strip_prefix(key)?.strip_prefix('='))
        };
        let number = |key: &str| field(key)?.parse().ok();
        Some(Self {
            vmm: field("vmm")?.to_string(),
            size: number("size")?,
            n: number("n")?,
            p50: number("p50_ns")?,
            p90: number("p90_ns")?,
            p99: number("p99_ns")?,
            mean: number("mean_ns")?,
        })
    }
}

fn size_name(size: u64) -> String {
    if size >= 1 << 20 {
        format!("{} MiB", size >> 20)
    } else {
        format!("{} KiB", size >> 10)
    }
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

#[test]
fn parses_a_result_line() {
    let line = "[  12.5] MINIVMM-MAPLAT vmm=qemu size=65536 n=2000 p50_ns=303585 \
                p90_ns=489643 p99_ns=635942 mean_ns=347509 min_ns=1 max_ns=2";
    assert_eq!(
        Sample::parse(line),
        Some(Sample {
            vmm: "qemu".to_string(),
            size: 65536,
            n: 2000,
            p50: 303585,
            p90: 489643,
            p99: 635942,
            mean: 347509,
        })
    );
    assert_eq!(
        Sample::parse("MINIVMM-MAPLAT-SETUP vmm=qemu bdf=0000:00:02.0"),
        None
    );
}

#[test]
#[ignore = "boots the nested host; run by tests/run.sh"]
fn map_unmap_latency_minivmm_vs_qemu_on_intel() {
    measure(
        Arch::X86_64,
        "map-latency",
        HostIommu::Intel,
        "L1 intel-iommu",
        0.8,
        &VMMS,
    );
}

#[test]
#[ignore = "boots the arm64 nested host; run by tests/run.sh"]
fn map_unmap_latency_minivmm_vs_qemu_on_arm64() {
    measure(
        Arch::Aarch64,
        "map-latency-arm64",
        HostIommu::Smmuv3,
        "arm64 L1 SMMUv3",
        0.5,
        &VMMS_ARM64,
    );
}

/// The `key=value` field `key` of the first console line with `marker` and `vmm=VMM`.
fn field(console: &[String], marker: &str, vmm: &str, key: &str) -> Option<String> {
    console
        .iter()
        .filter_map(|line| line.split_once(marker).map(|(_, rest)| rest))
        .find(|rest| rest.split_whitespace().any(|w| w == format!("vmm={vmm}")))?
        .split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .map(str::to_string)
}

/// One L1 boot measuring `vmms` in order (minivmm's variants, then
/// "qemu"); prints the table against `target` (minivmm's p50 over QEMU's).
fn measure(arch: Arch, name: &str, host_iommu: HostIommu, what: &str, target: f64, vmms: &[&str]) {
    let build_start = Instant::now();
    let variant = format!("images-qemu-{}", arch.as_arg());
    let images = build_image_variant_for(arch, &variant, &["--with-qemu"])
        .unwrap_or_else(|e| panic!("building the L1 image with QEMU: {e}"));
    let build_time = build_start.elapsed();

    let run = NestedHost::new(name)
        .arch(arch)
        .images(images)
        .host_iommu(host_iommu)
        .passthrough(Passthrough::Edu)
        .smp(4)
        .scenario_timeout(std::time::Duration::from_secs(300))
        .append(&format!("minivmm.maplat_order={}", vmms.join(",")))
        .scenario("maplat")
        .run()
        .unwrap_or_else(|e| panic!("{e}"));
    let outcome = run.expect_rc0("maplat").unwrap_or_else(|e| panic!("{e}"));

    let samples: Vec<Sample> = outcome
        .console
        .iter()
        .filter_map(|line| Sample::parse(line))
        .collect();
    let find = |vmm: &str, size: u64| {
        samples
            .iter()
            .find(|sample| sample.vmm == vmm && sample.size == size)
    };
    for &vmm in vmms {
        let verdict = format!("MINIVMM-L2-RESULT maplat PASS vmm={vmm} ");
        // The floor runs in L1: no guest, no verdict.
        assert!(
            vmm == "floor" || outcome.console.iter().any(|line| line.contains(&verdict)),
            "the L2 guest under {vmm} did not pass (log: {}):\n{}",
            run.log.display(),
            outcome.console.join("\n")
        );
        for size in SIZES {
            let sample = find(vmm, size).unwrap_or_else(|| {
                panic!(
                    "no {} result under {vmm} (log: {})",
                    size_name(size),
                    run.log.display()
                )
            });
            assert!(sample.n > 0 && sample.p50 > 0, "empty result: {sample:?}");
        }
    }

    println!();
    println!(
        "map+unmap latency seen by the L2 guest (VFIO MAP_DMA + UNMAP_DMA pair through the \
         VMM's virtio-iommu, {what}, one L1 boot; microseconds)"
    );
    println!(
        "| minivmm | size | n | p50 | p90 | p99 | mean | qemu p50 | p90 | p99 | mean | p50 ratio minivmm/qemu | target <= {target} |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (ours_vmm, size) in vmms
        .iter()
        .filter(|v| **v != "qemu")
        .flat_map(|v| SIZES.map(|s| (*v, s)))
    {
        let (Some(ours), Some(qemu)) = (find(ours_vmm, size), find("qemu", size)) else {
            continue;
        };
        let ratio = ours.p50 as f64 / qemu.p50 as f64;
        println!(
            "| {ours_vmm} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2} | {} |",
            size_name(size),
            ours.n,
            us(ours.p50),
            us(ours.p90),
            us(ours.p99),
            us(ours.mean),
            us(qemu.p50),
            us(qemu.p90),
            us(qemu.p99),
            us(qemu.mean),
            ratio,
            match (ours_vmm, ratio <= target) {
                ("floor", _) => "(L1 itself)",
                (_, true) => "met",
                (_, false) => "not met",
            }
        );
    }
    for size in SIZES {
        if let (Some(ours), Some(floor)) = (find("minivmm", size), find("floor", size)) {
            println!(
                "{name}: {} p50 minivmm / L1 floor {:.2}x (issue 10's target: at most 2x)",
                size_name(size),
                ours.p50 as f64 / floor.p50 as f64
            );
        }
    }
    for &vmm in vmms.iter().filter(|v| **v != "floor") {
        println!(
            "{name}: L2 under {vmm}: kernel boot (L2 uptime at its /init) {}s, whole VMM run in L1 {}s",
            field(&outcome.console, "MINIVMM-L2-RESULT maplat PASS ", vmm, "booted")
                .unwrap_or_else(|| "?".into()),
            field(&outcome.console, "MINIVMM-MAPLAT-VMM ", vmm, "seconds")
                .unwrap_or_else(|| "?".into()),
        );
    }
    println!(
        "{name}: image build {:.1}s, nested run {:.1}s (maplat scenario {:.1}s), log {}",
        build_time.as_secs_f64(),
        run.elapsed.as_secs_f64(),
        outcome.duration.unwrap_or_default().as_secs_f64(),
        run.log.display()
    );
}
