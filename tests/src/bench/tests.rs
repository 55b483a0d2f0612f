//! Unit tests of the parser, the figures and the tables.

use super::report::cell;
use super::*;

#[test]
fn parses_each_marker_and_ignores_other_lines() {
    let fio = "[   9.1] MINIVMM-BENCH-FIO vmm=qemu mode=lazy trial=2 job=randread-qd1 iops=94 \
               bw_kib=377 runtime_ms=1003 p50_us=2932 p99_us=21102 error=0\r";
    assert_eq!(
        parse_line(fio),
        Ok(Some(Record::Fio(Fio {
            vmm: "qemu".into(),
            mode: "lazy".into(),
            trial: 2,
            job: "randread-qd1".into(),
            iops: 94.0,
            bw_kib: 377.0,
            runtime_ms: 1003.0,
            p50_us: 2932.0,
            p99_us: 21102.0,
        })))
    );
    let cpu = "MINIVMM-BENCH-CPU vmm=minivmm kind=fio mode=off trial=1 mark=end:randread-qd1 \
               ticks=1691 guest_ticks=1200 hz=100 rss_kib=224968 uptime=54.47";
    assert!(
        matches!(parse_line(cpu), Ok(Some(Record::Cpu(c))) if c.ticks == 1691.0 && c.mark == "end:randread-qd1")
    );
    let run = "MINIVMM-BENCH-RUN vmm=qemu kind=boot mode=none trial=1 rc=0 seconds=18.91";
    assert!(matches!(parse_line(run), Ok(Some(Record::Run(r))) if r.seconds == 18.91 && r.rc == 0));
    let startup =
        "MINIVMM-BENCH-STARTUP vmm=minivmm kind=boot mode=none trial=1 first_kvm_run_us=395869";
    assert!(
        matches!(parse_line(startup), Ok(Some(Record::Startup(s))) if s.first_kvm_run_us == 395869.0)
    );
    let map = "MINIVMM-MAPLAT vmm=floor size=4096 n=200 p50_ns=35000 p90_ns=1 p99_ns=2 mean_ns=3";
    assert!(
        matches!(parse_line(map), Ok(Some(Record::MapLat(m))) if m.vmm == "floor" && m.size == 4096)
    );
    assert_eq!(parse_line("MINIVMM-BENCH-MARK done vmm=qemu"), Ok(None));
    assert_eq!(
        parse_line("MINIVMM-MAPLAT-SETUP vmm=qemu bdf=0000:00:02.0"),
        Ok(None)
    );
    assert_eq!(parse_line("an ordinary console line"), Ok(None));
    let counters = "MINIVMM-BENCH-COUNTERS vmm=minivmm kind=fio mode=lazy trial=1 pio_exits=10 \
                    blk_kicks=4 blk_requests=8 blk_requests_per_kick=2.0 poll_windows=0";
    assert!(matches!(parse_line(counters), Ok(Some(Record::Counters(c)))
        if c.values.get("blk_requests") == Some(&8.0) && c.trial == 1));
}

#[test]
fn a_broken_marker_line_is_an_error_not_a_figure() {
    assert!(matches!(
        parse_line("MINIVMM-BENCH-RUN vmm=qemu kind=boot mode=none trial=1 seconds=2"),
        Err(ParseError::Missing { key: "rc", .. })
    ));
    assert!(matches!(
        parse_line("MINIVMM-BENCH-FIO vmm=q mode=off trial=x job=j iops=1 bw_kib=1 runtime_ms=1 p50_us=1 p99_us=1"),
        Err(ParseError::NotANumber { key: "trial", .. })
    ));
}

#[test]
fn median_and_spread() {
    let stat = Stat {
        values: vec![3.0, 1.0, 2.0, 10.0],
    };
    assert_eq!(stat.median(), 2.5);
    assert_eq!(stat.min(), 1.0);
    assert_eq!(stat.max(), 10.0);
    assert_eq!(stat.spread_pct(), 900.0);
    assert_eq!(
        Stat {
            values: vec![4.0, 1.0, 2.0]
        }
        .median(),
        2.0
    );
    assert_eq!(
        Stat {
            values: vec![0.0, 0.0]
        }
        .spread_pct(),
        0.0
    );
    assert_eq!(
        cell(Some(&Stat {
            values: vec![0.0, 2.0]
        })),
        "1.00 (0.00-2.00)"
    );
}

fn lines(text: &str) -> Vec<String> {
    text.lines().map(str::to_string).collect()
}

#[test]
fn figures_from_a_console() {
    let blk = lines(
        "MINIVMM-BENCH-CPU vmm=minivmm kind=fio mode=off trial=1 mark=start:randread-qd1 ticks=1000 guest_ticks=500 hz=100 rss_kib=1 uptime=10
MINIVMM-BENCH-FIO vmm=minivmm mode=off trial=1 job=randread-qd1 iops=400 bw_kib=1600 runtime_ms=5000 p50_us=600 p99_us=6000 error=0
MINIVMM-BENCH-CPU vmm=minivmm kind=fio mode=off trial=1 mark=end:randread-qd1 ticks=1300 guest_ticks=700 hz=100 rss_kib=1 uptime=16
MINIVMM-BENCH-CPU vmm=minivmm kind=fio mode=off trial=1 mark=idle-start ticks=1310 guest_ticks=700 vcpu_ticks=900 hz=100 rss_kib=1 uptime=17
MINIVMM-BENCH-CPU vmm=minivmm kind=fio mode=off trial=1 mark=idle-end ticks=1315 guest_ticks=700 vcpu_ticks=904 hz=100 rss_kib=1 uptime=27
MINIVMM-BENCH-CPU vmm=minivmm kind=fio mode=off trial=1 mark=done ticks=1320 guest_ticks=700 hz=100 rss_kib=204800 uptime=28
MINIVMM-BENCH-COUNTERS vmm=minivmm kind=fio mode=off trial=1 pio_exits=30 mmio_exits=10 blk_kicks=4 blk_requests=8 translations=0 poll_windows=0
MINIVMM-BENCH-RUN vmm=minivmm kind=fio mode=off trial=1 rc=0 seconds=30
MINIVMM-BENCH-RUN vmm=qemu kind=boot mode=none trial=1 rc=0 seconds=18
MINIVMM-BENCH-RUN vmm=qemu kind=fio mode=lazy trial=1 rc=1 seconds=18",
    );
    let maplat = lines("MINIVMM-MAPLAT vmm=floor size=4096 n=1 p50_ns=35000");
    let records = parse_console(&blk).expect("parses");
    let maplat = parse_console(&maplat).expect("parses");
    let figures = Figures::from_records(&records, &maplat);
    let get = |group, what, mode, vmm| figures.median(group, what, mode, vmm);
    assert_eq!(
        get("fio", "randread-qd1 IOPS", "off", "minivmm"),
        Some(400.0)
    );
    // 1 s of the VMM's own CPU (3 s in all, 2 s of it the guest's)
    // over 2000 I/Os: 500 us per I/O.
    assert_eq!(
        get("cpu", "randread-qd1 VMM CPU us/IO", "off", "minivmm"),
        Some(500.0)
    );
    assert_eq!(
        get("cpu", "randread-qd1 VMM+guest CPU us/IO", "off", "minivmm"),
        Some(1500.0)
    );
    // 0.05 s in 10 s.
    let idle = get("idle", "idle guest, % of a host CPU", "off", "minivmm").expect("idle");
    assert!((idle - 0.5).abs() < 1e-9, "{idle}");
    // 0.04 s of it the vCPU threads', 0.01 s the others'.
    let vcpus = get("idle", IDLE_VCPUS, "off", "minivmm").expect("vcpus");
    assert!((vcpus - 0.4).abs() < 1e-9, "{vcpus}");
    let others = get("idle", IDLE_OTHERS, "off", "minivmm").expect("others");
    assert!((others - 0.1).abs() < 1e-9, "{others}");
    assert_eq!(
        get(
            "memory",
            "VmRSS MiB, 512 MiB guest after fio",
            "off",
            "minivmm"
        ),
        Some(200.0)
    );
    assert_eq!(get("boot", "L2 boot + poweroff s", "-", "qemu"), Some(18.0));
    assert_eq!(
        get("counters", "blk requests per kick", "off", "minivmm"),
        Some(2.0)
    );
    assert_eq!(
        get("counters", "vCPU exits per blk request", "off", "minivmm"),
        Some(5.0)
    );
    assert_eq!(
        get("counters", "translations per blk request", "off", "minivmm"),
        Some(0.0)
    );
    assert_eq!(
        get("counters", "poll hits per window", "off", "minivmm"),
        None
    );
    assert_eq!(
        get("maplat", "map+unmap 4 KiB p50 us", "-", "floor"),
        Some(35.0)
    );
    assert_eq!(figures.failed_runs.len(), 1);
    let problems = figures.problems(&Params::smoke());
    assert!(problems
        .iter()
        .any(|p| p.contains("VMM run failed: qemu fio lazy")));
    assert!(problems
        .iter()
        .any(|p| p == "missing: randwrite IOPS / off / minivmm"));
    assert!(!problems
        .iter()
        .any(|p| p.contains("randread-qd1 IOPS / off / minivmm")));
}

#[test]
fn the_map_latency_order_alternates_the_vmms() {
    assert_eq!(maplat_order(2), "floor,minivmm,qemu,floor,qemu,minivmm");
}
