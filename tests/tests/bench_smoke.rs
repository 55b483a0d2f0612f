//! The nested benchmark suite (`benches/nested/run.sh`, docs/performance.md)
//! in its CI size: its image (L1 with QEMU, L2 with fio) builds, and one
//! short trial of the block scenario `bench-blk` under minivmm and QEMU
//! produces every figure the full suite tabulates (fio IOPS/bandwidth and
//! latency in the modes off, lazy and strict; the VMMs' CPU per I/O and
//! idle CPU; boot + poweroff; minivmm's exec -> first KVM_RUN; VmRSS),
//! each positive. The map latency part of the suite, with its L1 floor,
//! runs in map_latency.rs. Timings are printed, not judged.

use minivmm_tests::bench::{run_suite, Params};

#[test]
#[ignore = "boots the nested host; run by tests/run.sh"]
fn bench_suite_smoke_produces_every_figure() {
    let params = Params::smoke();
    let suite = run_suite(&params, "bench-smoke").unwrap_or_else(|e| panic!("{e}"));
    let outcome = suite
        .blk
        .expect_rc0("bench-blk")
        .unwrap_or_else(|e| panic!("{e}"));
    let figures = suite
        .figures()
        .unwrap_or_else(|e| panic!("a benchmark line could not be read: {e}"));
    let problems = figures.problems(&params);
    assert!(
        problems.is_empty(),
        "the benchmark smoke run lacks figures (log: {}):\n{}",
        suite.blk.log.display(),
        problems.join("\n")
    );
    println!("{}", figures.table(&params));
    println!(
        "bench smoke: nested run {:.1}s (bench-blk {:.1}s), log {}",
        suite.blk.elapsed.as_secs_f64(),
        outcome.duration.unwrap_or_default().as_secs_f64(),
        suite.blk.log.display()
    );
}
