//! PCI hotplug driven by curl inside the nested host (one L1 boot): a VM
//! created with a virtio-iommu and no disk gets a disk hot-added behind the
//! virtio-iommu; the guest sees it arrive (acpiphp's slots, virtio_blk
//! bound, an IOMMU group), writes and reads back data, ejects it on
//! vm.remove-device, and minivmm releases it; the same disk is added and
//! removed again; a disk outside the virtio-iommu lands in the other pool
//! and has no IOMMU group. Refusals (unknown id, boot device, missing image, id in
//! use, every slot taken) are 4xx and the VM runs on. The hot-add latency
//! (API call to the first read in L2) is printed.

mod common;

use common::{calls, nth};
use minivmm_tests::NestedHost;

const SCENARIO: &str = "hotplug-disk";

#[test]
#[ignore = "boots the nested host; run by tests/run.sh"]
fn curl_hot_adds_and_removes_a_disk_behind_the_virtio_iommu() {
    let run = NestedHost::new("hotplug")
        .scenario(SCENARIO)
        .run()
        .unwrap_or_else(|e| panic!("{e}"));
    run.expect_rc0(SCENARIO).unwrap_or_else(|e| panic!("{e}"));
    let calls = calls(&run, SCENARIO);
    assert_eq!(nth(&calls, "PUT", "vm.create", 0).status, 204);
    assert_eq!(nth(&calls, "PUT", "vm.boot", 0).status, 204);

    let waiting = &run.markers(SCENARIO, "MINIVMM-HOTPLUG-GUEST waiting ")[0];
    let slots = waiting.get("slots").cloned().unwrap_or_default();
    assert!(
        slots.split(',').filter(|s| !s.is_empty()).count() >= 4,
        "acpiphp registered the hot-pluggable slots: {waiting:?}"
    );
    let info = nth(&calls, "GET", "vm.info", 0).json();
    let iommu_bdf = info["device_tree"]["_virtio-iommu"]["pci_bdf"].clone();
    assert_eq!(iommu_bdf, "0000:00:01.0", "{info}");

    let checked = run.markers(SCENARIO, "MINIVMM-HOTPLUG-GUEST checked ");
    let gone = run.markers(SCENARIO, "MINIVMM-HOTPLUG-GUEST gone ");
    let latency = run.markers(SCENARIO, "MINIVMM-HOTPLUG-LATENCY ");
    assert_eq!(latency.len(), 2, "{latency:?}");
    // A removed disk leaves nothing open behind: its image, its queue and
    // MSI-X eventfds.
    let fds = run.markers(SCENARIO, "MINIVMM-HOTPLUG-FDS ");
    assert_eq!(fds.len(), 2, "{fds:?}");
    for f in &fds {
        assert_eq!(f.get("after"), f.get("before"), "open files: {fds:?}");
    }
    for round in 0..2 {
        let added = nth(&calls, "PUT", "vm.add-disk", round);
        assert_eq!(added.status, 200, "{added:?}");
        let added = added.json();
        assert_eq!(added["id"], "hot0");
        let bdf = added["bdf"].as_str().unwrap_or_default().to_string();
        assert_eq!(
            bdf, "0000:00:02.0",
            "the first slot behind the virtio-iommu"
        );
        let seen = &checked[round];
        assert_eq!(seen.get("bdf"), Some(&bdf), "{seen:?}");
        assert_eq!(seen.get("driver").map(String::as_str), Some("virtio_blk"));
        assert!(
            seen.get("group").is_some_and(|g| g != "none"),
            "behind the virtio-iommu: {seen:?}"
        );
        assert_eq!(seen.get("data").map(String::as_str), Some("ok"), "{seen:?}");
        let info = nth(&calls, "GET", "vm.info", 1 + 2 * round).json();
        assert_eq!(
            info["device_tree"]["hot0"]["pci_bdf"],
            bdf.as_str(),
            "{info}"
        );
        assert!(
            info["config"]["disks"]
                .as_array()
                .is_some_and(|d| d.iter().any(|d| d["id"] == "hot0" && d["iommu"] == true)),
            "{info}"
        );
        let counters = nth(&calls, "GET", "vm.counters", round).json();
        assert!(
            counters["hot0"]["write_bytes"].as_u64().unwrap_or(0) >= 1 << 20,
            "{counters}"
        );
        assert_eq!(nth(&calls, "PUT", "vm.remove-device", round).status, 204);
        assert_eq!(gone[round].get("pci").map(String::as_str), Some("absent"));
        let after = nth(&calls, "GET", "vm.info", 2 + 2 * round).json();
        assert!(after["device_tree"].get("hot0").is_none(), "{after}");
        let ms: u64 = latency[round]
            .get("ms")
            .and_then(|m| m.parse().ok())
            .unwrap_or_else(|| panic!("{latency:?}"));
        eprintln!(
            "hot-add latency, round {}: {ms} ms (API call to the first read in L2)",
            round + 1
        );
    }

    // Refusals.
    let unknown = nth(&calls, "PUT", "vm.remove-device", 2);
    assert_eq!(unknown.status, 404, "{unknown:?}");
    assert!(
        unknown.body.contains("no device has id 'nothere'"),
        "{unknown:?}"
    );
    let boot = nth(&calls, "PUT", "vm.remove-device", 3);
    assert_eq!(boot.status, 409, "{boot:?}");
    assert!(boot.body.contains("not hot-pluggable"), "{boot:?}");
    let missing = nth(&calls, "PUT", "vm.add-disk", 2);
    assert_eq!(missing.status, 400, "{missing:?}");
    assert!(missing.body.contains("/tmp/missing.img"), "{missing:?}");
    let taken = nth(&calls, "PUT", "vm.add-disk", 3);
    assert_eq!(taken.status, 409, "{taken:?}");
    assert!(taken.body.contains("already used"), "{taken:?}");
    for n in 4..8 {
        assert_eq!(nth(&calls, "PUT", "vm.add-disk", n).status, 200);
    }
    let full = nth(&calls, "PUT", "vm.add-disk", 8);
    assert_eq!(full.status, 409, "{full:?}");
    assert!(
        full.body
            .contains("no free hot-pluggable PCI slot behind the virtio-iommu"),
        "{full:?}"
    );
    let plain = nth(&calls, "PUT", "vm.add-disk", 9);
    assert_eq!(plain.status, 200, "{plain:?}");
    assert_eq!(plain.json()["bdf"], "0000:00:06.0", "the other pool");
    assert_eq!(
        checked.len(),
        7,
        "every added disk was checked: {checked:?}"
    );
    let outside = checked
        .iter()
        .find(|c| c.get("bdf").map(String::as_str) == Some("0000:00:06.0"))
        .unwrap_or_else(|| panic!("{checked:?}"));
    assert_eq!(
        outside.get("group").map(String::as_str),
        Some("none"),
        "{outside:?}"
    );
    assert!(checked
        .iter()
        .all(|c| c.get("data").map(String::as_str) == Some("ok")));
    let info = nth(&calls, "GET", "vm.info", 5).json();
    assert_eq!(info["state"], "Running");
    assert_eq!(nth(&calls, "PUT", "vm.shutdown", 0).status, 204);
    assert_eq!(nth(&calls, "PUT", "vmm.shutdown", 0).status, 204);
    run.expect_console(SCENARIO, "MINIVMM-API-EXIT rc=0")
        .unwrap_or_else(|e| panic!("{e}"));
}

const NIC_SCENARIO: &str = "hotplug-nic";

/// L1's e1000e (bound to vfio-pci, L1 with an emulated Intel IOMMU) is
/// hot-added behind the virtio-iommu, gets a DHCP lease in L2 through
/// MSI-X, is removed (the guest ejects it, minivmm releases the host
/// device) and added again; then added outside the virtio-iommu (all guest
/// RAM mapped) and removed. First, the boot plan shows what it reserved
/// for hot-adds (every L1 IOMMU group's regions, the VT-d unit's 39-bit
/// width as the virtio-iommu's input range), and L1's ISA bridge, whose
/// group reserves 0-16 MiB where guest RAM is, is refused in both pools
/// with the message naming the device, the region and the fix.
#[test]
#[ignore = "boots the nested host; run by tests/run.sh"]
fn curl_hot_adds_and_removes_an_assigned_nic_behind_the_virtio_iommu() {
    let run = NestedHost::new("hotplug-vfio")
        .host_iommu(minivmm_tests::HostIommu::Intel)
        .passthrough(minivmm_tests::Passthrough::E1000e)
        .scenario(NIC_SCENARIO)
        .run()
        .unwrap_or_else(|e| panic!("{e}"));
    run.expect_rc0(NIC_SCENARIO)
        .unwrap_or_else(|e| panic!("{e}"));
    let calls = calls(&run, NIC_SCENARIO);
    assert_eq!(nth(&calls, "PUT", "vm.create", 0).status, 204);

    let plan = nth(&calls, "GET", "vm.plan", 0).json();
    assert_eq!(
        plan["virtio_iommu"]["input_range"]["end"], "0x0000007fffffffff",
        "the input range is the VT-d unit's 39 bits: {plan}"
    );
    let reserved: Vec<&str> = plan["host"]["regions"]
        .as_array()
        .map(|r| r.iter().filter_map(|r| r["source"].as_str()).collect())
        .unwrap_or_default();
    assert!(
        reserved
            .iter()
            .any(|s| s.starts_with("iommu groups 0") && s.ends_with("(hot-add)")),
        "the MSI window of every L1 group is reserved: {plan}"
    );
    let lpc_regions = run
        .scenario(NIC_SCENARIO)
        .and_then(|o| {
            o.console
                .iter()
                .find(|l| l.contains("MINIVMM-HOTPLUG-LPC-REGIONS "))
        })
        .cloned()
        .unwrap_or_default();
    assert!(
        lpc_regions.contains("0x0000000000000000 0x0000000000ffffff direct-relaxable"),
        "{lpc_regions}"
    );
    for (n, pool) in [(0, "outside"), (1, "behind")] {
        let refused = nth(&calls, "PUT", "vm.add-device", n);
        assert_eq!(refused.status, 409, "{refused:?}");
        assert_eq!(
            refused.json(),
            serde_json::json!([format!(
                "cannot hot-add 0000:00:1f.0 {pool} the virtio-iommu: its host reserved region \
                 0x0-0xffffff (direct-relaxable) of 0000:00:1f.0 collides with guest RAM \
                 0x0-0xfffffff of the running VM, and the running VM's address map cannot \
                 change: assign the device when the VM is created (`minivmm plan --vfio \
                 0000:00:1f.0` shows whether a map exists) or create the VM with --host-regions \
                 FILE listing its regions (cat /sys/bus/pci/devices/0000:00:1f.0/iommu_group/\
                 reserved_regions > FILE), or hot-add another device"
            )]),
            "{refused:?}"
        );
    }
    // The adds below come after the two refusals.
    let nth_add = |n: usize| nth(&calls, "PUT", "vm.add-device", n + 2);

    let up = run.markers(NIC_SCENARIO, "MINIVMM-HOTPLUG-NIC up ");
    let gone = run.markers(NIC_SCENARIO, "MINIVMM-HOTPLUG-NIC gone ");
    let latency = run.markers(NIC_SCENARIO, "MINIVMM-HOTPLUG-LATENCY ");
    assert_eq!(up.len(), 3, "a lease each time: {up:?}");
    // A removed device leaves nothing open behind (VFIO device, group and
    // container, MSI-X eventfds); only KVM's VFIO device, made at the first
    // hot-add, stays for the VM's life.
    let fds = run.markers(NIC_SCENARIO, "MINIVMM-HOTPLUG-FDS ");
    assert_eq!(fds.len(), 3, "{fds:?}");
    let count = |f: &std::collections::BTreeMap<String, String>, k: &str| {
        f.get(k)
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("{fds:?}"))
    };
    let before = count(&fds[0], "before");
    let after = count(&fds[0], "after");
    assert!(after <= before + 1, "open files: {fds:?}");
    assert!(
        fds.iter().all(|f| count(f, "after") == after),
        "open files: {fds:?}"
    );
    for round in 0..2 {
        let added = nth_add(2 * round);
        assert_eq!(added.status, 200, "{added:?}");
        let bdf = added.json()["bdf"].as_str().unwrap_or_default().to_string();
        assert_eq!(
            bdf, "0000:00:02.0",
            "the first slot behind the virtio-iommu"
        );
        let nic = &up[round];
        assert_eq!(nic.get("bdf"), Some(&bdf), "{nic:?}");
        assert!(
            nic.get("ip").is_some_and(|ip| ip.starts_with("10.0.2.")),
            "{nic:?}"
        );
        assert!(nic.get("group").is_some_and(|g| g != "none"), "{nic:?}");
        assert!(
            nic.get("msix_irqs")
                .and_then(|n| n.parse::<u64>().ok())
                .is_some_and(|n| n > 0),
            "{nic:?}"
        );
        let info = nth(&calls, "GET", "vm.info", 2 * round).json();
        assert_eq!(
            info["device_tree"]["nic0"]["pci_bdf"],
            bdf.as_str(),
            "{info}"
        );
        let twice = nth_add(2 * round + 1);
        assert_eq!(twice.status, 409, "{twice:?}");
        assert!(
            twice.body.contains("assigned to this VM already"),
            "{twice:?}"
        );
        assert_eq!(nth(&calls, "PUT", "vm.remove-device", round).status, 204);
        assert_eq!(gone[round].get("pci").map(String::as_str), Some("absent"));
        let after = nth(&calls, "GET", "vm.info", 2 * round + 1).json();
        assert!(after["device_tree"].get("nic0").is_none(), "{after}");
        eprintln!(
            "hot-add latency of the e1000e, round {}: {} ms (API call to the DHCP lease in L2)",
            round + 1,
            latency[round].get("ms").cloned().unwrap_or_default()
        );
    }
    // Outside the virtio-iommu: the other pool, no IOMMU group.
    let plain = nth_add(4);
    assert_eq!(plain.status, 200, "{plain:?}");
    assert_eq!(plain.json()["bdf"], "0000:00:06.0", "{plain:?}");
    assert_eq!(up[2].get("bdf").map(String::as_str), Some("0000:00:06.0"));
    assert_eq!(
        up[2].get("group").map(String::as_str),
        Some("none"),
        "{up:?}"
    );
    assert!(
        up[2].get("ip").is_some_and(|ip| ip.starts_with("10.0.2.")),
        "{up:?}"
    );
    assert_eq!(nth(&calls, "PUT", "vm.remove-device", 2).status, 204);
    assert_eq!(gone[2].get("pci").map(String::as_str), Some("absent"));
    assert_eq!(nth(&calls, "PUT", "vmm.shutdown", 0).status, 204);
    run.expect_console(NIC_SCENARIO, "MINIVMM-API-EXIT rc=0")
        .unwrap_or_else(|e| panic!("{e}"));
}
