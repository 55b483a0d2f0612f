//! The demo, used the way a person would: `bash resources/demo.sh` on a
//! terminal prints minivmm's plan for a guest with an assigned NIC and a
//! disk behind the virtio-iommu, the guest shows its IOMMU view and the
//! NIC's DHCP lease, its shell runs what is typed, and `exit` ends it all
//! with status 0.

use std::time::Duration;

use minivmm_tests::{minivmm_binary, workspace_root, Terminal};

const MINUTE: Duration = Duration::from_secs(60);

#[test]
#[ignore = "boots the nested host; run by tests/run.sh"]
fn demo_shows_the_assigned_nic_behind_the_virtio_iommu() {
    let bin = minivmm_binary();
    let demo = workspace_root().join("resources/demo.sh");
    let mut term = Terminal::spawn(
        &format!("bash {}", demo.display()),
        &[("MINIVMM_BIN", &bin.display().to_string())],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let fail = |e: minivmm_tests::Error| -> ! { panic!("{e}") };

    // minivmm's plan, printed in L1 before the guest boots.
    term.expect("--- minivmm plan", 5 * MINUTE)
        .unwrap_or_else(|e| fail(e));
    let plan = term
        .expect("--- minivmm --kernel", MINUTE)
        .unwrap_or_else(|e| fail(e));
    for needle in [
        "Guest address map (512 MiB of RAM)",
        "hole: LAPIC and guest MSI window",
        "virtio-iommu PROBE reserved regions",
        "0x00000000fee00000",
        "Host constraints:",
    ] {
        assert!(plan.contains(needle), "plan lacks `{needle}`:\n{plan}");
    }
    // The e1000e's reserved region, named with the device it comes from.
    assert!(
        plan.contains("0000:00:03.0"),
        "plan does not name the assigned NIC's host regions:\n{plan}"
    );

    // The guest's tour, printed before its shell.
    term.expect("ACPI VIOT table: present", 2 * MINUTE)
        .unwrap_or_else(|e| fail(e));
    let nic = term
        .expect("DHCP lease", MINUTE)
        .unwrap_or_else(|e| fail(e))
        + &term.expect("\n", MINUTE).unwrap_or_else(|e| fail(e));
    assert!(
        nic.contains("assigned through VFIO; DHCP lease 10.0.2.15 from 10.0.2.2"),
        "no DHCP lease on the assigned NIC:\n{nic}"
    );
    let groups = term
        .expect("minivmm demo guest", MINUTE)
        .unwrap_or_else(|e| fail(e));
    assert!(
        groups.contains("(e1000e)") && groups.contains("(virtio-pci)"),
        "the NIC and the disk are not both in IOMMU groups:\n{groups}"
    );
    assert!(
        groups.contains("reserved 0x00000000fee00000-0x00000000feefffff msi"),
        "the groups do not show the MSI window minivmm reported:\n{groups}"
    );
    term.expect("# ", MINUTE).unwrap_or_else(|e| fail(e));
    let prompt_after = term.elapsed();

    // The shell runs what is typed (the arithmetic shows it is evaluated,
    // not echoed).
    term.send("echo answer-$((6 * 7)); cat /sys/class/net/eth0/operstate\n")
        .unwrap_or_else(|e| fail(e));
    term.expect("answer-42", MINUTE).unwrap_or_else(|e| fail(e));
    term.expect("up", MINUTE).unwrap_or_else(|e| fail(e));

    term.send("exit\n").unwrap_or_else(|e| fail(e));
    let status = term.wait(2 * MINUTE).unwrap_or_else(|e| fail(e));
    assert!(status.success(), "the demo ended with {status}");
    println!(
        "demo: L2 prompt after {:.1}s (including the image build), ended with {status}",
        prompt_after.as_secs_f64()
    );
}
