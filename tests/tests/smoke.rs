//! The nested host itself: L1 boots, kvm-amd gives it `/dev/kvm`, and the
//! minivmm binary runs there (`l1-smoke`). Needs no working guest boot.

use minivmm_tests::NestedHost;

#[test]
#[ignore = "boots the nested host; run by tests/run.sh"]
fn l1_smoke() {
    let run = NestedHost::new("l1-smoke")
        .scenario("l1-smoke")
        .run()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(run.kvm, "L1 has no /dev/kvm (log: {})", run.log.display());
    run.expect_rc0("l1-smoke").unwrap_or_else(|e| panic!("{e}"));
    println!(
        "L1 ready after {:.1}s, whole run {:.1}s",
        run.l1_ready.as_secs_f64(),
        run.elapsed.as_secs_f64()
    );
}
