//! The suite's two nested runs and how they are sized.

use std::time::Duration;

use super::figures::Figures;
use super::parse::{parse_console, ParseError};
use super::{JOBS, MODES};
use crate::{build_image_variant, Error, HostIommu, NestedHost, Passthrough, Run};

/// How a suite run is sized.
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    /// Trials per figure.
    pub trials: u32,
    /// Seconds per fio job.
    pub runtime: u32,
    /// The span of the disk the jobs use, MiB.
    pub size_mib: u32,
    /// The raw image, MiB.
    pub image_mib: u32,
    /// Seconds the guest idles after its jobs.
    pub idle: u32,
    /// map/unmap iterations for 4 KiB, 64 KiB and 2 MiB.
    pub maplat_iters: [u32; 3],
    /// Whether to run the map latency benchmark and its floor.
    pub maplat: bool,
    /// The IOMMU modes (a subset of [`MODES`], in order).
    pub modes: Vec<&'static str>,
    /// The fio jobs (a subset of [`JOBS`], in order).
    pub jobs: Vec<&'static str>,
}

impl Params {
    /// The full measurement: 5 trials, 5 s per job, 10 s idle.
    pub fn full() -> Self {
        Self {
            trials: 5,
            runtime: 5,
            size_mib: 128,
            image_mib: 256,
            idle: 10,
            maplat_iters: [1000, 1000, 500],
            maplat: true,
            modes: MODES.to_vec(),
            jobs: JOBS.to_vec(),
        }
    }

    /// The CI smoke run: one trial, tiny sizes, the modes off and lazy
    /// (strict differs from lazy only in the guest), one read and one write
    /// job (the two ways fio's output is read), no map latency run (the
    /// map_latency test runs that scenario, and its floor, already).
    pub fn smoke() -> Self {
        Self {
            trials: 1,
            runtime: 1,
            size_mib: 16,
            image_mib: 32,
            idle: 2,
            maplat_iters: [100, 100, 50],
            maplat: false,
            modes: vec!["off", "lazy"],
            jobs: vec!["randread-qd1", "randwrite"],
        }
    }
}

/// The consoles of a suite run.
#[derive(Debug, Clone)]
pub struct SuiteRun {
    /// The block run (scenario `bench-blk`).
    pub blk: Run,
    /// The map latency run (scenario `maplat`), if it ran.
    pub maplat: Option<Run>,
}

/// The map latency order for `trials`: `floor` and both VMMs per trial,
/// the VMMs alternating which goes first.
pub fn maplat_order(trials: u32) -> String {
    (1..=trials)
        .map(|trial| {
            if trial % 2 == 1 {
                "floor,minivmm,qemu"
            } else {
                "floor,qemu,minivmm"
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Builds the L1 image with QEMU and fio (`target/nested/images-bench`)
/// and makes the suite's nested runs (logs `target/nested/<prefix>-blk.log`
/// and `<prefix>-maplat.log`).
pub fn run_suite(params: &Params, prefix: &str) -> Result<SuiteRun, Error> {
    let images = build_image_variant("images-bench", &["--with-qemu", "--with-fio"])?;
    // Per fio run: an L2 boot (~10-20 s under TCG), four jobs with their
    // start-up, the idle time.
    let jobs = params.jobs.len() as u64;
    let per_run = 40 + jobs * u64::from(params.runtime + 4) + u64::from(params.idle);
    let runs = 2 * params.modes.len() as u64;
    let blk_seconds = u64::from(params.trials) * (2 * 30 + runs * per_run) + 120;
    let blk = NestedHost::new(&format!("{prefix}-blk"))
        .images(images.clone())
        .smp(4)
        .timeout(Duration::from_secs(blk_seconds + 300))
        .scenario_timeout(Duration::from_secs(blk_seconds))
        .append(&format!(
            "minivmm.bench_trials={} minivmm.bench_runtime={} minivmm.bench_size={} \
             minivmm.bench_image_mib={} minivmm.bench_idle={} minivmm.bench_modes={} \
             minivmm.bench_jobs={}",
            params.trials,
            params.runtime,
            params.size_mib,
            params.image_mib,
            params.idle,
            params.modes.join(","),
            params.jobs.join(",")
        ))
        .scenario("bench-blk")
        .run()?;
    let maplat = if params.maplat {
        let [a, b, c] = params.maplat_iters;
        let seconds = u64::from(params.trials) * 150 + 60;
        Some(
            NestedHost::new(&format!("{prefix}-maplat"))
                .images(images)
                .host_iommu(HostIommu::Intel)
                .passthrough(Passthrough::Edu)
                .smp(4)
                .timeout(Duration::from_secs(seconds + 300))
                .scenario_timeout(Duration::from_secs(seconds))
                .append(&format!(
                    "minivmm.maplat_order={} minivmm.maplat_iters={a},{b},{c}",
                    maplat_order(params.trials)
                ))
                .scenario("maplat")
                .run()?,
        )
    } else {
        None
    };
    Ok(SuiteRun { blk, maplat })
}

impl SuiteRun {
    /// Parses both consoles into figures.
    pub fn figures(&self) -> Result<Figures, ParseError> {
        let console = |run: &Run, name: &str| {
            run.scenario(name)
                .map(|outcome| outcome.console.clone())
                .unwrap_or_default()
        };
        let blk = parse_console(&console(&self.blk, "bench-blk"))?;
        let maplat = match &self.maplat {
            Some(run) => parse_console(&console(run, "maplat"))?,
            None => Vec::new(),
        };
        Ok(Figures::from_records(&blk, &maplat))
    }
}
