//! VFIO passthrough through minivmm, on L1s with an emulated Intel and an
//! emulated AMD IOMMU (one L1 boot each, several L2 runs in a row on the
//! same devices, which exercises release and reset):
//! - L1's e1000e assigned to L2 brings its link up with MSI-X and fetches a
//!   file over TFTP (checked by hash), without and behind the virtio-iommu;
//! - L1's virtio-blk-pci assigned to L2 takes O_DIRECT writes checked in the
//!   guest and in the host's image, without the IOMMU and behind it in strict
//!   and lazy mode;
//! - on AMD the HyperTransport hole reaches the guest as RESERVED and, with
//!   IOVAs forced above 4 GiB, traffic still works (a MAP into the hole
//!   would be refused and the transfer fail);
//! - a plan that cannot avoid a host region is refused with one error line.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};

use minivmm_tests::{HostIommu, NestedHost, Passthrough, Run};

const MSI_WINDOW: &str = "0x00000000fee00000_0x00000000feefffff_msi";
const AMD_HT_HOLE: &str = "0x000000fd00000000_0x000000ffffffffff_reserved";

/// `key=value` fields of scenario `name`'s first console line with `marker`.
fn fields(run: &Run, name: &str, marker: &str) -> BTreeMap<String, String> {
    let outcome = run
        .scenario(name)
        .unwrap_or_else(|| panic!("{name} did not run"));
    outcome
        .console
        .iter()
        .find_map(|line| line.split_once(marker).map(|(_, rest)| rest.to_string()))
        .unwrap_or_else(|| panic!("{name}: no {marker} line"))
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn duration(run: &Run, name: &str) -> f64 {
    run.scenario(name)
        .and_then(|o| o.duration)
        .unwrap_or_default()
        .as_secs_f64()
}

/// Checks a nic-tftp-* scenario; returns its MINIVMM-NIC fields.
fn check_nic(run: &Run, name: &str, behind_iommu: bool) -> BTreeMap<String, String> {
    run.expect_l2_pass(name).unwrap_or_else(|e| panic!("{e}"));
    let nic = fields(run, name, "MINIVMM-NIC ");
    let irqs: u64 = nic
        .get("msix_irqs")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(irqs > 0, "{name}: no MSI-X interrupts: {nic:?}");
    let in_group = nic.get("group").is_some_and(|g| g != "none");
    assert_eq!(in_group, behind_iommu, "{name}: {nic:?}");
    if behind_iommu {
        let regions = nic.get("regions").cloned().unwrap_or_default();
        assert!(regions.contains(MSI_WINDOW), "{name}: {regions}");
    }
    println!(
        "{name}: L2 boot + DHCP + TFTP through the assigned e1000e: {:.1}s",
        duration(run, name)
    );
    nic
}

/// Checks a pt-disk-* scenario (`domain`: the guest group's expected type).
fn check_disk(run: &Run, name: &str, domain: Option<&str>) -> BTreeMap<String, String> {
    run.expect_l2_pass(name).unwrap_or_else(|e| panic!("{e}"));
    let disk = fields(run, name, "MINIVMM-PTDISK ");
    let group = disk.get("group").cloned().unwrap_or_default();
    match domain {
        None => assert_eq!(group, "none", "{name}"),
        Some(d) => assert!(group.ends_with(&format!(":{d}")), "{name}: group {group}"),
    }
    println!(
        "{name}: L2 boot + 8 MiB O_DIRECT write/read on the assigned disk: {:.1}s",
        duration(run, name)
    );
    disk
}

fn sha256_of(path: &std::path::Path, offset: u64, len: usize) -> String {
    let mut f = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    f.seek(SeekFrom::Start(offset)).expect("seek");
    let mut buf = vec![0u8; len];
    f.read_exact(&mut buf).expect("read");
    let out = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().expect("stdin").write_all(&buf)?;
            child.wait_with_output()
        })
        .expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// What `last` wrote is in the host's image behind L1's virtio-blk-pci.
fn check_image(run: &Run, last: &BTreeMap<String, String>) {
    let image = run
        .passthrough
        .iter()
        .find_map(|d| d.image.clone())
        .expect("a passthrough disk image");
    assert_eq!(
        Some(&sha256_of(&image, 1 << 20, 8 << 20)),
        last.get("sha256")
    );
}

#[test]
#[ignore = "boots the nested host; run by tests/run.sh"]
fn passthrough_on_an_intel_host() {
    let run = NestedHost::new("vfio-intel")
        .host_iommu(HostIommu::Intel)
        .passthrough(Passthrough::E1000e)
        .passthrough(Passthrough::VirtioBlk { image_mib: 32 })
        .scenarios([
            "nic-tftp-off",
            "nic-tftp-on",
            "pt-disk-off",
            "pt-disk-strict",
            "pt-disk-lazy",
            "plan-refused",
        ])
        .run()
        .unwrap_or_else(|e| panic!("{e}"));
    check_nic(&run, "nic-tftp-off", false);
    check_nic(&run, "nic-tftp-on", true);
    check_disk(&run, "pt-disk-off", None);
    check_disk(&run, "pt-disk-strict", Some("DMA"));
    let last = check_disk(&run, "pt-disk-lazy", Some("DMA-FQ"));
    check_image(&run, &last);

    let refused = run
        .expect_rc0("plan-refused")
        .unwrap_or_else(|e| panic!("{e}"));
    let line = refused
        .console
        .iter()
        .find(|l| l.contains("MINIVMM-REFUSED"))
        .expect("refusal line");
    assert!(line.contains("rc=1 lines=1"), "{line}");
    assert!(line.contains("0x2000000"), "names the region: {line}");
    assert!(
        line.contains("other-host.regions"),
        "names its source: {line}"
    );
}

#[test]
#[ignore = "boots the nested host; run by tests/run.sh"]
fn passthrough_on_an_amd_host() {
    let run = NestedHost::new("vfio-amd")
        .host_iommu(HostIommu::Amd)
        .passthrough(Passthrough::E1000e)
        .passthrough(Passthrough::VirtioBlk { image_mib: 32 })
        .append("minivmm.l2_forcedac=1")
        .scenarios([
            "nic-tftp-on",
            "nic-tftp-off",
            "pt-disk-strict",
            "pt-disk-off",
        ])
        .run()
        .unwrap_or_else(|e| panic!("{e}"));
    let nic = check_nic(&run, "nic-tftp-on", true);
    let regions = nic.get("regions").cloned().unwrap_or_default();
    assert!(regions.contains(AMD_HT_HOLE), "{regions}");
    check_nic(&run, "nic-tftp-off", false);
    let strict = check_disk(&run, "pt-disk-strict", Some("DMA"));
    assert!(
        strict
            .get("regions")
            .is_some_and(|r| r.contains(AMD_HT_HOLE)),
        "{strict:?}"
    );
    let last = check_disk(&run, "pt-disk-off", None);
    check_image(&run, &last);
}

/// Without interrupt remapping VFIO refuses the device (seed 002): minivmm
/// says why it matters and which host setting accepts the risk.
#[test]
#[ignore = "boots the nested host; run by tests/run.sh"]
fn no_interrupt_remapping_is_refused_with_the_risk_explained() {
    let run = NestedHost::new("vfio-nointremap")
        .host_iommu(HostIommu::IntelNoIntremap)
        .passthrough(Passthrough::VirtioBlk { image_mib: 16 })
        .scenario("no-intremap")
        .run()
        .unwrap_or_else(|e| panic!("{e}"));
    let outcome = run
        .expect_rc0("no-intremap")
        .unwrap_or_else(|e| panic!("{e}"));
    let line = outcome
        .console
        .iter()
        .find(|l| l.contains("MINIVMM-REFUSED"))
        .expect("refusal line");
    assert!(line.contains("rc=1 lines=1"), "{line}");
    assert!(line.contains("no interrupt remapping"), "{line}");
    assert!(line.contains("allow_unsafe_interrupts=1"), "{line}");
}

/// A device with MSI and no MSI-X (L1's edu): the MSI capability minivmm
/// emulates is programmed by the guest and every interrupt arrives.
#[test]
#[ignore = "boots the nested host; run by tests/run.sh"]
fn msi_only_device_delivers_its_interrupts() {
    let run = NestedHost::new("vfio-msi")
        .host_iommu(HostIommu::Intel)
        .passthrough(Passthrough::Edu)
        .scenario("edu-msi")
        .run()
        .unwrap_or_else(|e| panic!("{e}"));
    run.expect_l2_pass("edu-msi")
        .unwrap_or_else(|e| panic!("{e}"));
    let msi = fields(&run, "edu-msi", "MINIVMM-MSI ");
    assert_eq!(msi.get("delivered"), msi.get("of"), "{msi:?}");
}
