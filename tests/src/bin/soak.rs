//! `soak`: one nested scenario again and again, as the test suite runs it.
//!
//! ```text
//! cargo run --release -p minivmm-tests --bin soak -- RUNS SCENARIO [L1_SMP]
//! ```
//!
//! Runs the L2 scenario SCENARIO in RUNS consecutive nested-host boots
//! (L1 with L1_SMP vCPUs, default 4; `boot-smp8` needs 10) under the default
//! L0, each with the fixture's retries of runs spoiled by the environment,
//! and requires the guest's PASS every time. Prints one `SOAK` line per run
//! (attempts used, what spoiled the retried ones, L2 boot time) and a
//! `SOAK-SUMMARY`; exits 1 if any run failed.

use std::process::ExitCode;

use minivmm_tests::NestedHost;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(Ok(runs)), Some(scenario)) = (args.first().map(|n| n.parse::<u32>()), args.get(1))
    else {
        eprintln!("usage: soak RUNS SCENARIO [L1_SMP]");
        return ExitCode::from(2);
    };
    let smp = match args.get(2).map(|n| n.parse::<u32>()) {
        None => 4,
        Some(Ok(smp)) => smp,
        Some(Err(_)) => {
            eprintln!("soak: L1_SMP must be a number");
            return ExitCode::from(2);
        }
    };
    let (mut passed, mut retries, mut failed) = (0, 0, 0);
    for run in 1..=runs {
        let result = NestedHost::new(&format!("soak-{scenario}"))
            .smp(smp)
            .scenario(scenario)
            .run()
            .and_then(|nested| {
                let boot = nested
                    .expect_l2_pass(scenario)?
                    .l2_boot_time
                    .unwrap_or_default();
                Ok((nested, boot))
            });
        match result {
            Ok((nested, boot)) => {
                passed += 1;
                retries += nested.attempts - 1;
                let spoiled: Vec<String> = nested.spoiled.iter().map(ToString::to_string).collect();
                println!(
                    "SOAK run={run} PASS attempts={} l2_boot={:.1} spoiled=[{}]",
                    nested.attempts,
                    boot.as_secs_f64(),
                    spoiled.join("; ")
                );
            }
            Err(e) => {
                failed += 1;
                println!("SOAK run={run} FAIL {e}");
            }
        }
    }
    println!("SOAK-SUMMARY scenario={scenario} runs={runs} passed={passed} failed={failed} retries={retries}");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
