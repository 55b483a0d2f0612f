//! virtio-blk over virtio-pci: disks take O_DIRECT writes and read them
//! back in the guest, and what the guest wrote is in the image files after
//! minivmm exits.

use std::collections::BTreeMap;

use minivmm_tests::NestedHost;

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

#[test]
#[ignore = "boots the nested host; run by tests/run.sh"]
fn disks_keep_what_the_guest_wrote() {
    let run = NestedHost::new("disks")
        .scenario("disks")
        .run()
        .unwrap_or_else(|e| panic!("{e}"));
    let outcome = run
        .expect_l2_pass("disks")
        .unwrap_or_else(|e| panic!("{e}"));
    let guest = disk_lines(&outcome.console, "MINIVMM-DISK ");
    let host = disk_lines(&outcome.console, "MINIVMM-HOST-DISK ");
    assert_eq!(guest.len(), 2, "guest disks: {guest:?}");
    for (serial, fields) in &guest {
        let on_host = host
            .get(serial)
            .unwrap_or_else(|| panic!("no host hash for {serial}: {host:?}"));
        assert_eq!(
            fields.get("sha256"),
            on_host.get("sha256"),
            "{serial}: image differs from what the guest wrote"
        );
    }
    println!(
        "disks: L2 boot + 2x8 MiB O_DIRECT write/read: {:.1}s",
        outcome.duration.unwrap_or_default().as_secs_f64()
    );
}
