//! virtio-blk over virtio-pci, with and without minivmm's virtio-iommu:
//! disks take O_DIRECT writes and read them back in the guest, what the
//! guest wrote is in the image files after minivmm exits, and a disk behind
//! the IOMMU sits in its own IOMMU group with the MSI window reserved.

use std::collections::BTreeMap;

use minivmm_tests::{NestedHost, Run};

/// `key=value` fields of the console lines starting with `marker`, keyed by
/// their `serial`.
fn disk_lines(console: &[String], marker: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    console
        .iter()
        .filter_map(|line| line.split_once(marker).map(|(_, rest)| rest))
        .map(|rest| {
            let fields: BTreeMap<String, String> = rest
                .split_whitespace()
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            (fields.get("serial").cloned().unwrap_or_default(), fields)
        })
        .collect()
}

/// Checks scenario `name`: the guest passed, and every disk's image holds
/// what the guest wrote. Returns the guest's per-disk fields.
fn check_disks(run: &Run, name: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let outcome = run.expect_l2_pass(name).unwrap_or_else(|e| panic!("{e}"));
    let guest = disk_lines(&outcome.console, "MINIVMM-DISK ");
    let host = disk_lines(&outcome.console, "MINIVMM-HOST-DISK ");
    assert_eq!(guest.len(), 2, "{name}: guest disks: {guest:?}");
    for (serial, fields) in &guest {
        let on_host = host
            .get(serial)
            .unwrap_or_else(|| panic!("{name}: no host hash for {serial}: {host:?}"));
        assert_eq!(
            fields.get("sha256"),
            on_host.get("sha256"),
            "{name}: {serial} differs from what the guest wrote"
        );
    }
    println!(
        "{name}: L2 boot + 2x8 MiB O_DIRECT write/read + poweroff: {:.1}s",
        outcome.duration.unwrap_or_default().as_secs_f64()
    );
    guest
}

#[test]
#[ignore = "boots the nested host; run by tests/run.sh"]
fn disks_keep_what_the_guest_wrote() {
    let run = NestedHost::new("disks")
        .scenario("disks")
        .run()
        .unwrap_or_else(|e| panic!("{e}"));
    check_disks(&run, "disks");
}

#[test]
#[ignore = "boots the nested host; run by tests/run.sh"]
fn disk_behind_the_virtio_iommu() {
    let run = NestedHost::new("iommu-disks")
        .scenarios(["iommu-strict", "iommu-lazy"])
        .run()
        .unwrap_or_else(|e| panic!("{e}"));
    for (name, domain) in [("iommu-strict", "DMA"), ("iommu-lazy", "DMA-FQ")] {
        let guest = check_disks(&run, name);
        let iommu = guest.get("iommu.img").expect("the disk behind the IOMMU");
        assert_ne!(
            iommu.get("group").map(String::as_str),
            Some("none"),
            "{name}"
        );
        assert_eq!(iommu.get("msi").map(String::as_str), Some("yes"), "{name}");
        // The disk's DMA really is translated, in the invalidation mode asked for.
        assert_eq!(
            iommu.get("domain").map(String::as_str),
            Some(domain),
            "{name}"
        );
        let plain = guest.get("plain.img").expect("the disk without the IOMMU");
        assert_eq!(
            plain.get("group").map(String::as_str),
            Some("none"),
            "{name}"
        );
    }
}
