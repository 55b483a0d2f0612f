//! `l0-census`: how often each L0 spoils nested boots, and how fast it is.
//!
//! ```text
//! cargo run --release -p minivmm-tests --bin l0-census -- L0[,L0...] BOOTS [--smp N] [SCENARIO...]
//! ```
//!
//! Boots the nested host BOOTS times under each L0 named (`qemu7.2`,
//! `qemu7.2-single`, `qemu10`, `qemu10-single`; see `run.sh --l0`), taking
//! the L0s in turn so that they share the machine's conditions, each time
//! with L1 at 10 vCPUs (or N) running the scenarios (default `boot-smp` and
//! `boot-smp8`: L2 with 2 and with 8 vCPUs), never retrying. Per boot it
//! prints one `CENSUS` line (stale-text int3 oopses in L1 and in L2, other
//! int3 oopses, L1 boot time, each scenario's L2 boot time or failure) and
//! at the end one `CENSUS-SUMMARY` line per L0 with totals and medians.
//! Each boot keeps its console in `target/nested/census-L0-N.log`. Needs the
//! release minivmm (`cargo build --release -p vmm`).

use std::process::ExitCode;
use std::time::Duration;

use minivmm_tests::environment::Kernel;
use minivmm_tests::NestedHost;

fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    Some(values[values.len() / 2])
}

fn show(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_string(), |v| format!("{v:.1}"))
}

/// What the boots under one L0 showed.
#[derive(Default)]
struct Tally {
    l1_oops: usize,
    l2_oops: usize,
    other_int3: usize,
    spoiled_boots: u32,
    failed_boots: u32,
    boots: u32,
    l1_times: Vec<f64>,
    l2_times: Vec<Vec<f64>>,
    walls: Vec<f64>,
}

impl Tally {
    /// Boots the nested host once under `l0` and prints its `CENSUS` line.
    fn boot(&mut self, l0: &str, smp: u32, scenarios: &[&str]) {
        self.boots += 1;
        self.l2_times.resize(scenarios.len(), Vec::new());
        let host = NestedHost::new(&format!("census-{l0}-{}", self.boots))
            .l0(l0)
            .smp(smp)
            .attempts(1)
            .timeout(Duration::from_secs(900))
            .scenarios(scenarios.iter().copied());
        let (result, faults) = host.attempt();
        self.l1_oops += faults.count(Kernel::L1);
        self.l2_oops += faults.count(Kernel::L2);
        self.other_int3 += faults.other_int3;
        if faults.first().is_some() {
            self.spoiled_boots += 1;
        }
        let mut line = format!(
            "CENSUS l0={l0} boot={} l1_stale_int3={} l2_stale_int3={} other_int3={}",
            self.boots,
            faults.count(Kernel::L1),
            faults.count(Kernel::L2),
            faults.other_int3
        );
        match result {
            Ok(run) => {
                self.l1_times.push(run.l1_ready.as_secs_f64());
                self.walls.push(run.elapsed.as_secs_f64());
                line.push_str(&format!(
                    " l1_boot={:.1} run={:.1}",
                    run.l1_ready.as_secs_f64(),
                    run.elapsed.as_secs_f64()
                ));
                for (index, name) in scenarios.iter().enumerate() {
                    match run.expect_l2_pass(name) {
                        Ok(outcome) => {
                            let t = outcome.l2_boot_time.unwrap_or_default().as_secs_f64();
                            self.l2_times[index].push(t);
                            line.push_str(&format!(" {name}={t:.1}"));
                        }
                        Err(_) => {
                            self.failed_boots += 1;
                            line.push_str(&format!(" {name}=FAIL"));
                        }
                    }
                }
            }
            Err(e) => {
                self.failed_boots += 1;
                let first = e.to_string();
                let first = first.lines().next().unwrap_or_default().to_string();
                line.push_str(&format!(" run=FAIL ({first})"));
            }
        }
        println!("{line}");
        for fault in &faults.faults {
            println!("CENSUS-FAULT l0={l0} boot={} {fault}", self.boots);
        }
    }

    fn summary(&mut self, l0: &str, scenarios: &[&str]) -> String {
        let mut summary = format!(
            "CENSUS-SUMMARY l0={l0} boots={} spoiled_boots={} failed={} l1_stale_int3={} \
             l2_stale_int3={} other_int3={} l1_boot_median={} run_median={}",
            self.boots,
            self.spoiled_boots,
            self.failed_boots,
            self.l1_oops,
            self.l2_oops,
            self.other_int3,
            show(median(&mut self.l1_times)),
            show(median(&mut self.walls)),
        );
        for (name, times) in scenarios.iter().zip(self.l2_times.iter_mut()) {
            summary.push_str(&format!(" {name}_median={}", show(median(times))));
        }
        summary
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(l0s), Some(Ok(boots))) = (args.first(), args.get(1).map(|n| n.parse::<u32>())) else {
        eprintln!(
            "usage: l0-census L0[,L0...] BOOTS [--smp N] [SCENARIO...] (L0: qemu7.2, qemu7.2-single, qemu10, qemu10-single)"
        );
        return ExitCode::from(2);
    };
    let l0s: Vec<&str> = l0s.split(',').collect();
    let mut rest = args.get(2..).unwrap_or_default();
    let mut smp = 10;
    if rest.first().map(String::as_str) == Some("--smp") {
        match rest.get(1).map(|n| n.parse()) {
            Some(Ok(n)) => smp = n,
            _ => {
                eprintln!("l0-census: --smp needs a number");
                return ExitCode::from(2);
            }
        }
        rest = &rest[2..];
    }
    let scenarios: Vec<&str> = if rest.is_empty() {
        vec!["boot-smp", "boot-smp8"]
    } else {
        rest.iter().map(String::as_str).collect()
    };
    let mut tallies: Vec<Tally> = l0s.iter().map(|_| Tally::default()).collect();
    for _ in 0..boots {
        for (l0, tally) in l0s.iter().zip(tallies.iter_mut()) {
            tally.boot(l0, smp, &scenarios);
        }
    }
    for (l0, tally) in l0s.iter().zip(tallies.iter_mut()) {
        println!("{}", tally.summary(l0, &scenarios));
    }
    ExitCode::SUCCESS
}
