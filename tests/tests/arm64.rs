//! arm64 end to end: minivmm built for aarch64 runs in an arm64 nested
//! host (L1: the Debian arm64 kernel with KVM under qemu-system-aarch64
//! `-M virt,virtualization=on,gic-version=3,iommu=smmuv3`) and boots the
//! Debian arm64 kernel as L2 with a GICv3 + ITS, PSCI and a device tree.
//! Every check is made from inside L2 (or on the host's image files):
//! - boot with 2 and 8 vCPUs, CPUs and device tree (PSCI, ITS, msi-map) seen;
//! - `reboot` exits 0, a kernel panic exits 3;
//! - virtio-blk behind minivmm's virtio-iommu in strict and lazy mode, data
//!   checked in L2 and in the image, the group's MSI window at the planned
//!   doorbell;
//! - L1's devices passed through behind the virtio-iommu and with
//!   `iommu=off`: virtio-blk (data checked in L2 and the image), e1000e
//!   (DHCP + TFTP, MSI-X counted), edu (100 of 100 MSIs); L2's IOMMU group
//!   shows the doorbell at the planned IPA as MSI and L1's SMMUv3 software
//!   MSI window as reserved;
//! - a `--host-regions` file covering the default doorbell and some default
//!   RAM moves both (in `minivmm plan` and in L2), one covering every
//!   doorbell candidate or the kernel's RAM is refused with one line.

use std::collections::BTreeMap;

use minivmm_tests::{sha256_of_range, Arch, HostIommu, NestedHost, Passthrough, Run};

/// L2's MSI window at the default doorbell (the first ITS candidate).
const DOORBELL: &str = "0x000000000c210000_0x000000000c21ffff_msi";
/// The doorbell once a host region covers the first candidate.
const MOVED_DOORBELL: &str = "0x000000000d010000_0x000000000d01ffff_msi";
/// L1's SMMUv3 software MSI window, as L2's virtio-iommu reports it.
const SW_MSI_RESERVED: &str = "0x0000000008000000_0x00000000080fffff_reserved";
/// The same window in L1's own IOMMU group.
const L1_SW_MSI: &str = "0x0000000008000000 0x00000000080fffff msi";

fn arm64(name: &str) -> NestedHost {
    NestedHost::new(name).arch(Arch::Aarch64)
}

fn fields(run: &Run, name: &str, marker: &str) -> BTreeMap<String, String> {
    run.fields(name, marker).unwrap_or_else(|e| panic!("{e}"))
}

fn seconds(run: &Run, name: &str) -> f64 {
    run.scenario(name)
        .and_then(|o| o.l2_boot_time)
        .unwrap_or_default()
        .as_secs_f64()
}

#[test]
#[ignore = "boots the arm64 nested host; run by tests/run.sh"]
fn arm64_boot_and_lifecycle() {
    let run = arm64("arm64-boot")
        .scenarios(["boot-smp", "reboot", "panic"])
        .run()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(run.kvm, "L1 has no /dev/kvm (log: {})", run.log.display());
    let boot = run
        .expect_l2_pass("boot-smp")
        .unwrap_or_else(|e| panic!("{e}"));
    let details = boot
        .l2
        .as_ref()
        .map(|l| l.details.clone())
        .unwrap_or_default();
    assert!(
        details.contains("dt=cpus:2,its:msi-controller@c200000,pci:pcie@10000000"),
        "{details}"
    );
    println!(
        "arm64 L2 boot time (minivmm start -> L2 verdict, 2 vCPUs): {:.1}s (L2 uptime {:.1}s)",
        seconds(&run, "boot-smp"),
        boot.l2.as_ref().and_then(|l| l.uptime).unwrap_or_default()
    );
    run.expect_l2_pass("reboot")
        .unwrap_or_else(|e| panic!("{e}"));
    run.expect_console("reboot", "minivmm: guest rebooted")
        .unwrap_or_else(|e| panic!("{e}"));
    run.expect_rc("panic", 3).unwrap_or_else(|e| panic!("{e}"));
    run.expect_console("panic", "guest kernel panicked on vCPU")
        .unwrap_or_else(|e| panic!("{e}"));
}

#[test]
#[ignore = "boots the arm64 nested host; run by tests/run.sh"]
fn arm64_boot_smp8() {
    // L1 needs L2's vCPUs + 2 (see TESTBED).
    let run = arm64("arm64-boot-smp8")
        .smp(10)
        .scenario("boot-smp8")
        .run()
        .unwrap_or_else(|e| panic!("{e}"));
    let boot = run
        .expect_l2_pass("boot-smp8")
        .unwrap_or_else(|e| panic!("{e}"));
    let details = boot
        .l2
        .as_ref()
        .map(|l| l.details.clone())
        .unwrap_or_default();
    assert!(details.contains("dt=cpus:8"), "{details}");
    println!(
        "arm64 L2 boot time with 8 vCPUs: {:.1}s",
        seconds(&run, "boot-smp8")
    );
}

/// The guest's per-disk fields of a disks scenario, checked against the
/// hashes the host side printed.
fn check_disks(run: &Run, name: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let outcome = run.expect_l2_pass(name).unwrap_or_else(|e| panic!("{e}"));
    let lines = |marker: &str| -> BTreeMap<String, BTreeMap<String, String>> {
        outcome
            .console
            .iter()
            .filter_map(|line| line.split_once(marker).map(|(_, rest)| rest))
            .map(|rest| {
                let f: BTreeMap<String, String> = rest
                    .split_whitespace()
                    .filter_map(|kv| kv.split_once('='))
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                (f.get("serial").cloned().unwrap_or_default(), f)
            })
            .collect()
    };
    let (guest, host) = (lines("MINIVMM-DISK "), lines("MINIVMM-HOST-DISK "));
    assert_eq!(guest.len(), 2, "{name}: {guest:?}");
    for (serial, f) in &guest {
        assert_eq!(
            f.get("sha256"),
            host.get(serial).and_then(|h| h.get("sha256")),
            "{name}: {serial} differs from what the guest wrote"
        );
    }
    guest
}

#[test]
#[ignore = "boots the arm64 nested host; run by tests/run.sh"]
fn arm64_disks_behind_the_virtio_iommu() {
    let run = arm64("arm64-disks")
        .scenarios(["disks", "iommu-strict", "iommu-lazy"])
        .run()
        .unwrap_or_else(|e| panic!("{e}"));
    check_disks(&run, "disks");
    for (name, domain) in [("iommu-strict", "DMA"), ("iommu-lazy", "DMA-FQ")] {
        let guest = check_disks(&run, name);
        let iommu = &guest["iommu.img"];
        assert_ne!(iommu["group"], "none", "{name}");
        assert_eq!(
            iommu["msi"], "yes",
            "{name}: the doorbell is the group's MSI window"
        );
        assert_eq!(iommu["domain"], domain, "{name}");
        assert_eq!(guest["plain.img"]["group"], "none", "{name}");
    }
}

/// Checks a pt-disk-* scenario; `domain`: the group's type behind the IOMMU.
fn check_pt_disk(run: &Run, name: &str, domain: Option<&str>, msi: &str) -> String {
    run.expect_l2_pass(name).unwrap_or_else(|e| panic!("{e}"));
    let disk = fields(run, name, "MINIVMM-PTDISK ");
    let regions = disk.get("regions").cloned().unwrap_or_default();
    match domain {
        None => assert_eq!(disk["group"], "none", "{name}"),
        Some(d) => {
            assert!(
                disk["group"].ends_with(&format!(":{d}")),
                "{name}: {disk:?}"
            );
            assert!(regions.contains(msi), "{name}: no {msi} in {regions}");
            assert!(regions.contains(SW_MSI_RESERVED), "{name}: {regions}");
        }
    }
    disk["sha256"].clone()
}

#[test]
#[ignore = "boots the arm64 nested host; run by tests/run.sh"]
fn arm64_passthrough_behind_the_virtio_iommu() {
    let run = arm64("arm64-vfio")
        .host_iommu(HostIommu::Smmuv3)
        .passthrough(Passthrough::VirtioBlk { image_mib: 32 })
        .passthrough(Passthrough::E1000e)
        .passthrough(Passthrough::Edu)
        .scenarios([
            "vfio-host",
            "pt-disk-off",
            "pt-disk-strict",
            "nic-tftp-on",
            "nic-tftp-off",
            "edu-msi",
            "regions-moved",
            "plan-refused",
            "pt-disk-lazy",
        ])
        .run()
        .unwrap_or_else(|e| panic!("{e}"));
    for device in &run.passthrough {
        let l1 = run.vfio_device(&device.bdf).expect("L1 reported it");
        assert!(l1.bound && l1.group.is_some(), "{l1:?}");
        assert!(l1.reserves(L1_SW_MSI), "{l1:?}");
    }
    run.expect_rc0("vfio-host")
        .unwrap_or_else(|e| panic!("{e}"));

    check_pt_disk(&run, "pt-disk-off", None, DOORBELL);
    check_pt_disk(&run, "pt-disk-strict", Some("DMA"), DOORBELL);
    let last = check_pt_disk(&run, "pt-disk-lazy", Some("DMA-FQ"), DOORBELL);
    let image = run
        .passthrough
        .iter()
        .find_map(|d| d.image.clone())
        .expect("the passthrough image");
    assert_eq!(
        sha256_of_range(&image, 1 << 20, 8 << 20).unwrap_or_else(|e| panic!("{e}")),
        last,
        "the host image holds what L2 wrote last"
    );

    for (name, behind) in [("nic-tftp-on", true), ("nic-tftp-off", false)] {
        run.expect_l2_pass(name).unwrap_or_else(|e| panic!("{e}"));
        let nic = fields(&run, name, "MINIVMM-NIC ");
        let irqs: u64 = nic["msix_irqs"].parse().unwrap_or(0);
        assert!(
            irqs > 0,
            "{name}: no MSI-X interrupts through the ITS: {nic:?}"
        );
        assert_eq!(nic["group"] != "none", behind, "{name}: {nic:?}");
        if behind {
            assert!(nic["regions"].contains(DOORBELL), "{name}: {nic:?}");
        }
    }

    run.expect_l2_pass("edu-msi")
        .unwrap_or_else(|e| panic!("{e}"));
    let msi = fields(&run, "edu-msi", "MINIVMM-MSI ");
    assert_eq!(
        (msi["delivered"].as_str(), msi["of"].as_str()),
        ("100", "100")
    );

    // Another host's regions over the default doorbell and RAM move both.
    let moved = run
        .scenario("regions-moved")
        .unwrap_or_else(|| panic!("regions-moved did not run"));
    let plan: Vec<&String> = moved
        .console
        .iter()
        .filter(|l| l.contains("MINIVMM-PLAN "))
        .collect();
    assert!(
        plan.iter()
            .any(|l| l.contains("0x000000000d010000  0x000000000d01ffff") && l.ends_with("MSI")),
        "plan shows the moved doorbell: {plan:?}"
    );
    assert!(
        plan.iter().any(|l| l.contains("0x0000000050000000")
            && l.contains("hole: host reserved region 0x50000000-0x50ffffff")),
        "plan shows the RAM hole: {plan:?}"
    );
    check_pt_disk(&run, "regions-moved", Some("DMA"), MOVED_DOORBELL);
    let disk = fields(&run, "regions-moved", "MINIVMM-PTDISK ");
    assert_eq!(
        disk["ram"], "40000000-4fffffff,51000000-60ffffff",
        "L2's RAM skips the other host's region"
    );
    for (name, names) in [
        ("regions-moved", "no room for the guest MSI doorbell"),
        (
            "plan-refused",
            "0x40000000-0x40ffffff (reserved) of /tmp/other-host.regions",
        ),
    ] {
        let line = run
            .scenario(name)
            .and_then(|o| o.console.iter().find(|l| l.contains("MINIVMM-REFUSED")))
            .unwrap_or_else(|| panic!("{name}: no refusal line"));
        assert!(line.contains("rc=1 lines=1"), "{line}");
        assert!(line.contains(names), "{line}");
    }
    run.expect_rc0("regions-moved")
        .unwrap_or_else(|e| panic!("{e}"));
    run.expect_rc0("plan-refused")
        .unwrap_or_else(|e| panic!("{e}"));
}
