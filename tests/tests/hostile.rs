//! A hostile guest against minivmm's virtio-iommu (issue 8), in one L1 boot
//! with an emulated Intel IOMMU and L1's edu device assigned behind the
//! virtio-iommu. The L2 guest's own virtio-iommu driver is not loaded; a
//! program (`resources/guest/tools/hostile.c`) drives the device from
//! userspace with the malformed cases of the issue and 20 s of random
//! requests and configuration writes (4 s more with `--iommu-poll-us 0`).
//! Checked:
//! - well-formed ATTACH/MAP/UNMAP/DETACH/PROBE get the right statuses before
//!   and after, and the edu's DMA reaches a mapped page but not one that was
//!   unmapped, nor any page the random phase mapped in another domain;
//! - every malformed case is answered promptly (the broken ring and the bad
//!   ring addresses with DEVICE_NEEDS_RESET, the indirect chain unprocessed);
//! - minivmm stays up and exits 0 when the guest powers off, its RSS grows
//!   by less than [`RSS_GROWTH_KB`] over the random phase, and its stderr
//!   stays under [`LOG_LINES`] lines;
//! - L1's kernel reports IOMMU faults only at the IOVAs the program said
//!   must fault, and nothing from VFIO.
//!
//! `MINIVMM_HOSTILE_SKIP=CASE,CASE` leaves guest cases out (for a tree
//! without a fix the case needs; the test then says so).

use std::collections::{BTreeMap, BTreeSet};

use minivmm_tests::{HostIommu, NestedHost, Passthrough, Run};

/// Most RSS minivmm may gain while the random phase runs, in KiB.
const RSS_GROWTH_KB: u64 = 16 * 1024;
/// Most stderr lines a run may produce: every guest-caused line is
/// rate-limited (5 per call site per 10 s), so this bounds a 20 s run with
/// room for the few dozen call sites a guest can reach.
const LOG_LINES: u64 = 300;

fn number(fields: &BTreeMap<String, String>, key: &str) -> u64 {
    let v = fields
        .get(key)
        .unwrap_or_else(|| panic!("no {key} in {fields:?}"));
    v.strip_prefix("0x")
        .map(|h| u64::from_str_radix(h, 16))
        .unwrap_or_else(|| v.parse())
        .unwrap_or_else(|e| panic!("{key}={v}: {e}"))
}

/// The fault addresses of L1's DMAR fault lines.
fn dmar_faults(run: &Run, name: &str) -> BTreeSet<u64> {
    run.scenario(name)
        .map(|o| o.console.as_slice())
        .unwrap_or_default()
        .iter()
        .filter(|l| l.contains("MINIVMM-L1-DMESG") && l.contains("fault addr"))
        .filter_map(|l| {
            let rest = l.split("fault addr ").nth(1)?;
            let addr = rest.split_whitespace().next()?;
            u64::from_str_radix(addr.trim_start_matches("0x"), 16).ok()
        })
        .collect()
}

fn check_run(run: &Run, name: &str, skip: &[&str]) {
    run.expect_l2_pass(name).unwrap_or_else(|e| panic!("{e}"));
    let host = run.markers(name, "MINIVMM-HOSTILE-HOST ");
    let host = host
        .first()
        .unwrap_or_else(|| panic!("{name}: no host line"));
    assert_eq!(number(host, "hung"), 0, "{name}: minivmm stopped answering");
    assert_eq!(number(host, "rc"), 0, "{name}: minivmm exit status");
    let (before, after) = (number(host, "rss_before_kb"), number(host, "rss_after_kb"));
    assert!(before > 0 && after > 0, "{name}: RSS not sampled: {host:?}");
    assert!(
        after <= before + RSS_GROWTH_KB,
        "{name}: RSS grew from {before} to {after} KiB"
    );
    let log_lines = number(host, "log_lines");
    assert!(log_lines <= LOG_LINES, "{name}: {log_lines} stderr lines");

    let checks = run.markers(name, "MINIVMM-HOSTILE-CHECK ");
    for phase in ["before", "after"] {
        assert!(
            checks
                .iter()
                .any(|c| c.get("phase").map(String::as_str) == Some(phase)
                    && c.get("ok").map(String::as_str) == Some("1")),
            "{name}: {phase} checks: {checks:?}"
        );
    }
    let cases = run.markers(name, "MINIVMM-HOSTILE-CASE ");
    for case in [
        "unknown-type-60x128M",
        "avail-far-ahead",
        "bad-ring-addresses",
        "indirect-not-negotiated",
    ] {
        if skip.contains(&case) {
            println!("{name}: case {case} skipped (MINIVMM_HOSTILE_SKIP)");
            continue;
        }
        let c = cases
            .iter()
            .find(|c| c.get("name").map(String::as_str) == Some(case))
            .unwrap_or_else(|| panic!("{name}: case {case} did not run: {cases:?}"));
        assert_eq!(c.get("ok").map(String::as_str), Some("1"), "{name}: {c:?}");
        if case == "unknown-type-60x128M" {
            // Spec 5.13.6: an unknown type is not written, used length 0.
            assert_eq!(number(c, "used_len"), 0, "{name}: {c:?}");
        }
    }

    let expected: BTreeSet<u64> = run
        .markers(name, "MINIVMM-HOSTILE-EXPECT-FAULT ")
        .iter()
        .map(|f| number(f, "iova"))
        .collect();
    let faults = dmar_faults(run, name);
    let unexpected: Vec<_> = faults.difference(&expected).collect();
    assert!(
        unexpected.is_empty(),
        "{name}: L1 saw DMA faults nobody asked for at {unexpected:x?} (expected {expected:x?})"
    );
    let vfio_noise: Vec<&String> = run
        .scenario(name)
        .map(|o| o.console.as_slice())
        .unwrap_or_default()
        .iter()
        .filter(|l| l.contains("MINIVMM-L1-DMESG") && l.to_lowercase().contains("vfio"))
        .collect();
    assert!(
        vfio_noise.is_empty(),
        "{name}: L1 VFIO messages: {vfio_noise:?}"
    );
    let summary = run.markers(name, "MINIVMM-HOSTILE-SUMMARY ");
    println!(
        "{name}: {:?}; minivmm RSS {before} -> {after} KiB (max {}), {log_lines} stderr lines; L1 faults at {faults:x?}",
        summary.first(),
        number(host, "rss_max_kb"),
    );
}

#[test]
#[ignore = "boots the nested host; run by tests/run.sh"]
fn a_hostile_guest_driving_the_virtio_iommu_directly_cannot_hurt_minivmm() {
    let skip_env = std::env::var("MINIVMM_HOSTILE_SKIP").unwrap_or_default();
    let skip: Vec<&str> = skip_env.split(',').filter(|s| !s.is_empty()).collect();
    let mut host = NestedHost::new("hostile")
        .host_iommu(HostIommu::Intel)
        .passthrough(Passthrough::Edu)
        .scenarios(["hostile", "hostile-nopoll"]);
    if !skip.is_empty() {
        host = host.append(&format!(
            "minivmm.hostile_guest=minivmm.hostile_skip={}",
            skip.join(",")
        ));
    }
    let run = host.run().unwrap_or_else(|e| panic!("{e}"));
    check_run(&run, "hostile", &skip);
    check_run(&run, "hostile-nopoll", &skip);
}
