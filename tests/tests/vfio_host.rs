//! The host side of VFIO passthrough: L1 with an emulated Intel or AMD
//! IOMMU binds a virtio-blk-pci disk and an e1000e NIC to vfio-pci, each in
//! its own IOMMU group with the MSI window reserved, and a VFIO container
//! can be set up on each as a VMM does (`vfio-host`, no minivmm run).

use std::collections::BTreeSet;

use minivmm_tests::{HostIommu, NestedHost, Passthrough, Run};

const MSI_WINDOW: &str = "0x00000000fee00000 0x00000000feefffff msi";
const AMD_HT_HOLE: &str = "0x000000fd00000000 0x000000ffffffffff";

/// `key=value` fields of the `MINIVMM-L1-VFIO-PROBE` line for `bdf`.
fn probe_fields(run: &Run, bdf: &str) -> Vec<(String, String)> {
    let outcome = run.scenario("vfio-host").expect("vfio-host ran");
    outcome
        .console
        .iter()
        .filter_map(|line| {
            line.split_once("MINIVMM-L1-VFIO-PROBE ")
                .map(|(_, rest)| rest)
        })
        .map(|rest| {
            rest.split_whitespace()
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Vec<_>>()
        })
        .find(|fields| fields.iter().any(|(k, v)| k == "bdf" && v == bdf))
        .unwrap_or_else(|| panic!("no MINIVMM-L1-VFIO-PROBE line for {bdf}"))
}

fn field<'a>(fields: &'a [(String, String)], key: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn check_vfio_host(name: &str, iommu: HostIommu, regions: &[&str]) {
    let run = NestedHost::new(name)
        .host_iommu(iommu)
        .passthrough(Passthrough::VirtioBlk { image_mib: 16 })
        .passthrough(Passthrough::E1000e)
        .scenario("vfio-host")
        .run()
        .unwrap_or_else(|e| panic!("{e}"));
    run.expect_rc0("vfio-host")
        .unwrap_or_else(|e| panic!("{e}"));

    assert_eq!(run.passthrough.len(), 2);
    let mut groups = BTreeSet::new();
    for device in &run.passthrough {
        let bdf = &device.bdf;
        let vfio = run
            .vfio_device(bdf)
            .unwrap_or_else(|| panic!("{name}: L1 did not report {bdf}"));
        assert_eq!(vfio.kind, device.device.kind(), "{name}: {bdf}");
        assert!(vfio.bound, "{name}: {bdf} is bound to {}", vfio.driver);
        let group = vfio
            .group
            .unwrap_or_else(|| panic!("{name}: {bdf} is in no IOMMU group"));
        assert!(
            groups.insert(group),
            "{name}: {bdf} shares group {group} with another passthrough device"
        );
        for region in regions {
            assert!(
                vfio.reserves(region),
                "{name}: {bdf}: no reserved region {region}: {:?}",
                vfio.reserved_regions
            );
        }
        // A type1v2 container works on the group, and the MSI window
        // cannot be mapped.
        let probe = probe_fields(&run, bdf);
        assert_eq!(field(&probe, "set_iommu"), Some("ok"), "{name}: {probe:?}");
        assert_eq!(field(&probe, "map"), Some("ok"), "{name}: {probe:?}");
        assert_eq!(
            field(&probe, "msi_map"),
            Some("EINVAL"),
            "{name}: {probe:?}"
        );
        println!(
            "{name}: {bdf} {} group={group} iova={} regions={:?}",
            vfio.kind,
            field(&probe, "iova").unwrap_or("?"),
            vfio.reserved_regions
        );
    }
    let tftp = run.tftp.as_ref().expect("the e1000e serves the TFTP file");
    println!(
        "{name}: L1 ready after {:.1}s, whole run {:.1}s; TFTP file {} sha256={}",
        run.l1_ready.as_secs_f64(),
        run.elapsed.as_secs_f64(),
        tftp.name,
        tftp.sha256
    );
}

#[test]
#[ignore = "boots the nested host; run by tests/run.sh"]
fn vfio_host_intel_iommu() {
    check_vfio_host("vfio-host-intel", HostIommu::Intel, &[MSI_WINDOW]);
}

#[test]
#[ignore = "boots the nested host; run by tests/run.sh"]
fn vfio_host_amd_iommu() {
    check_vfio_host("vfio-host-amd", HostIommu::Amd, &[MSI_WINDOW, AMD_HT_HOLE]);
}
