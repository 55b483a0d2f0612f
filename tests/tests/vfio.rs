//! VFIO passthrough through minivmm: L1's e1000e, bound to vfio-pci, is
//! assigned to the L2 guest, which brings it up (MSI-X) and fetches a file
//! from QEMU's TFTP server; the data is checked by hash.

use minivmm_tests::{HostIommu, NestedHost, Passthrough};

fn nic_tftp(name: &str, iommu: HostIommu, vfio_iommu: &str) {
    let run = NestedHost::new(name)
        .host_iommu(iommu)
        .passthrough(Passthrough::E1000e)
        .append(&format!("minivmm.vfio_iommu={vfio_iommu}"))
        .scenario("nic-tftp")
        .run()
        .unwrap_or_else(|e| panic!("{e}"));
    let outcome = run
        .expect_l2_pass("nic-tftp")
        .unwrap_or_else(|e| panic!("{e}"));
    println!(
        "{name}: L2 boot + DHCP + TFTP through the assigned e1000e: {:.1}s",
        outcome.duration.unwrap_or_default().as_secs_f64()
    );
}

#[test]
#[ignore = "boots the nested host; run by tests/run.sh"]
fn e1000e_without_viommu_on_intel() {
    nic_tftp("vfio-nic-intel-off", HostIommu::Intel, "off");
}

#[test]
#[ignore = "boots the nested host; run by tests/run.sh"]
fn e1000e_behind_the_virtio_iommu_on_intel() {
    nic_tftp("vfio-nic-intel-on", HostIommu::Intel, "on");
}
