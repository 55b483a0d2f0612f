//! `nested-bench`: the nested benchmark suite of issue 10, run by
//! `benches/nested/run.sh`.
//!
//! ```text
//! cargo run --release -p minivmm-tests --bin nested-bench -- [--trials N]
//!     [--runtime S] [--idle S] [--smoke] [--out FILE]
//!     [--from-logs BLK_LOG [MAPLAT_LOG]]
//! ```
//!
//! Makes the suite's two nested runs ([`minivmm_tests::bench::run_suite`]),
//! prints the markdown tables of every figure (median of the trials, the
//! spread, the ratios) and the issue's targets, and writes them to FILE
//! (default `target/nested/bench.md`). `--smoke` is the CI size: one
//! trial, tiny jobs, no map latency run. Exits 1 when a VMM run failed or
//! an expected figure is missing or not positive, 2 on a usage error.
//! `--from-logs` boots nothing: it tabulates the console logs of an earlier
//! run (`target/nested/bench-blk.log`, `bench-maplat.log`), with the
//! parameters given (say `--trials` as that run had it).

use std::process::ExitCode;

use std::path::PathBuf;

use minivmm_tests::bench::{parse_console, run_suite, Figures, Params};
use minivmm_tests::target_dir;

/// The value after `flag`, parsed.
fn value<T: std::str::FromStr>(args: &[String], index: usize, flag: &str) -> Result<T, String> {
    let text = args
        .get(index + 1)
        .ok_or_else(|| format!("{flag} needs a value"))?;
    text.parse()
        .map_err(|_| format!("{flag}: `{text}` is not a number"))
}

/// What the command line asks for.
struct Options {
    params: Params,
    out: PathBuf,
    /// The logs to tabulate instead of running (block, map latency).
    from_logs: Vec<PathBuf>,
}

fn parse_args(args: &[String]) -> Result<Options, String> {
    let mut params = Params::full();
    let mut out = target_dir().join("nested").join("bench.md");
    let mut from_logs = Vec::new();
    let mut index = 0;
    while index < args.len() {
        match args[index].as_str() {
            "--from-logs" => {
                from_logs = args[index + 1..].iter().map(PathBuf::from).collect();
                if from_logs.is_empty() || from_logs.len() > 2 {
                    return Err("--from-logs takes one or two logs, last on the line".into());
                }
                params.maplat = from_logs.len() == 2;
                break;
            }
            "--smoke" => {
                params = Params::smoke();
                index += 1;
                continue;
            }
            "--trials" => params.trials = value(args, index, "--trials")?,
            "--runtime" => params.runtime = value(args, index, "--runtime")?,
            "--idle" => params.idle = value(args, index, "--idle")?,
            "--out" => {
                out = args.get(index + 1).ok_or("--out needs a file")?.into();
            }
            other => return Err(format!("unknown argument {other}")),
        }
        index += 2;
    }
    if params.trials == 0 {
        return Err("--trials must be at least 1".into());
    }
    Ok(Options {
        params,
        out,
        from_logs,
    })
}

/// The figures of saved console logs.
fn figures_from_logs(logs: &[PathBuf]) -> Result<Figures, String> {
    let mut records = Vec::new();
    for log in logs {
        let text = std::fs::read_to_string(log)
            .map_err(|e| format!("cannot read {}: {e}", log.display()))?;
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        records.push(parse_console(&lines).map_err(|e| format!("{}: {e}", log.display()))?);
    }
    let none = Vec::new();
    Ok(Figures::from_records(
        &records[0],
        records.get(1).unwrap_or(&none),
    ))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Options {
        params,
        out,
        from_logs,
    } = match parse_args(&args) {
        Ok(parsed) => parsed,
        Err(e) => {
            eprintln!("nested-bench: {e}");
            eprintln!(
                "usage: nested-bench [--trials N] [--runtime S] [--idle S] [--smoke] [--out FILE] \
                 [--from-logs BLK_LOG [MAPLAT_LOG]]"
            );
            return ExitCode::from(2);
        }
    };
    if !from_logs.is_empty() {
        return match figures_from_logs(&from_logs) {
            Ok(figures) => report(&figures, &params, "from saved logs".into(), &out),
            Err(e) => {
                eprintln!("nested-bench: {e}");
                ExitCode::from(1)
            }
        };
    }
    let suite = match run_suite(&params, "bench") {
        Ok(suite) => suite,
        Err(e) => {
            eprintln!("nested-bench: {e}");
            return ExitCode::from(1);
        }
    };
    let figures = match suite.figures() {
        Ok(figures) => figures,
        Err(e) => {
            eprintln!("nested-bench: a console line could not be read: {e}");
            return ExitCode::from(1);
        }
    };
    let mut runs = format!(
        "bench-blk {:.0} s (attempt {}), log {}",
        suite.blk.elapsed.as_secs_f64(),
        suite.blk.attempts,
        suite.blk.log.display()
    );
    if let Some(maplat) = &suite.maplat {
        runs.push_str(&format!(
            "; maplat {:.0} s (attempt {}), log {}",
            maplat.elapsed.as_secs_f64(),
            maplat.attempts,
            maplat.log.display()
        ));
    }
    report(&figures, &params, runs, &out)
}

/// Prints and writes the tables; the exit status says whether every
/// expected figure is there.
fn report(figures: &Figures, params: &Params, runs: String, out: &PathBuf) -> ExitCode {
    let mut report = format!("## Nested benchmark suite\n\nL1 runs: {runs}");
    report.push_str(&format!(
        "\nParameters: {} trial(s), fio {} s per job on {} MiB of a {} MiB image, {} s idle\n\n",
        params.trials, params.runtime, params.size_mib, params.image_mib, params.idle
    ));
    report.push_str(&figures.table(params));
    report.push_str("\n### Targets of issue 10\n\n");
    report.push_str(&figures.targets_table());
    let problems = figures.problems(params);
    if !problems.is_empty() {
        report.push_str("\n### Problems\n\n");
        for problem in &problems {
            report.push_str(&format!("- {problem}\n"));
        }
    }
    println!("{report}");
    if let Err(e) = std::fs::write(out, &report) {
        eprintln!("nested-bench: cannot write {}: {e}", out.display());
        return ExitCode::from(1);
    }
    eprintln!("nested-bench: the tables are in {}", out.display());
    if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
