//! Booting Linux: the L2 guest comes up under minivmm with the vCPUs asked
//! for and the ACPI tables it needs (`boot-smp`).

use minivmm_tests::NestedHost;

#[test]
#[ignore = "boots the nested host; run by tests/run.sh"]
fn boot_smp() {
    let run = NestedHost::new("boot")
        .scenario("boot-smp")
        .run()
        .unwrap_or_else(|e| panic!("{e}"));
    let boot = run
        .expect_l2_pass("boot-smp")
        .unwrap_or_else(|e| panic!("{e}"));
    let boot_time = boot.l2_boot_time.unwrap_or_default().as_secs_f64();
    let uptime = boot
        .l2
        .as_ref()
        .and_then(|l2| l2.uptime)
        .unwrap_or_default();
    println!("L2 boot time: {boot_time:.1}s (L2 uptime {uptime:.1}s)");
}

#[test]
#[ignore = "boots the nested host; run by tests/run.sh"]
fn boot_smp8() {
    // L1 needs L2's vCPUs + 2 (see TESTBED), so this runs in its own L1.
    let run = NestedHost::new("boot-smp8")
        .smp(10)
        .scenario("boot-smp8")
        .run()
        .unwrap_or_else(|e| panic!("{e}"));
    let boot = run
        .expect_l2_pass("boot-smp8")
        .unwrap_or_else(|e| panic!("{e}"));
    let boot_time = boot.l2_boot_time.unwrap_or_default().as_secs_f64();
    println!("L2 boot time with 8 vCPUs: {boot_time:.1}s");
}
