//! How a guest's end maps to minivmm's exit: `reboot` exits 0 (minivmm does
//! not restart guests), a kernel panic reported through pvpanic exits 3.
//! Both run in one L1 boot.

use minivmm_tests::NestedHost;

#[test]
#[ignore = "boots the nested host; run by tests/run.sh"]
fn reboot_exits_zero_and_panic_exits_three() {
    let run = NestedHost::new("lifecycle")
        .scenarios(["reboot", "panic"])
        .run()
        .unwrap_or_else(|e| panic!("{e}"));

    let reboot = run.expect_rc("reboot", 0).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        reboot.l2.as_ref().is_some_and(|r| r.passed),
        "reboot: guest never got to reboot"
    );
    run.expect_console("reboot", "minivmm: guest rebooted")
        .unwrap_or_else(|e| panic!("{e}"));

    let panic = run.expect_rc("panic", 3).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        panic.l2.as_ref().is_some_and(|r| r.passed),
        "panic: pvpanic was not bound"
    );
    run.expect_console("panic", "minivmm: guest kernel panicked (pvpanic)")
        .unwrap_or_else(|e| panic!("{e}"));
}
