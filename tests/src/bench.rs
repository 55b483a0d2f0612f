//! The nested benchmark suite (`benches/nested/run.sh`, issue 10): the
//! two nested runs it makes, the parser of their console markers, the
//! figures (medians of the trials with their spread) and the markdown
//! table with the ratios and the issue's targets.
//!
//! The runs (see [`run_suite`]):
//! - `bench-blk` (L1 without an emulated IOMMU, on the project's default
//!   L0): the L1 scenario `bench-blk` boots L2 under minivmm and QEMU,
//!   interleaved trial by trial: a boot-only L2 (boot + poweroff time,
//!   minivmm's exec -> first `KVM_RUN`), then fio on virtio-blk in the
//!   modes off, lazy and strict, with the VMM's CPU time and VmRSS sampled
//!   from `/proc/PID/stat` and `/proc/PID/status` in L1 at the guest's marks.
//! - `bench-maplat` (L1 with the emulated Intel IOMMU and an edu device):
//!   the L1 scenario `maplat` with the order `floor,minivmm,qemu` per
//!   trial (alternating the VMMs), where `floor` is the guest's VFIO
//!   program run in L1 itself against L1's IOMMU.
//!
//! The markers parsed ([`Record`]); every other console line is ignored:
//!
//! | marker | printed by |
//! |---|---|
//! | `MINIVMM-BENCH-FIO vmm= mode= trial= job= iops= bw_kib= runtime_ms= p50_us= p99_us=` | L2 `bench-blk` |
//! | `MINIVMM-BENCH-CPU vmm= kind= mode= trial= mark= ticks= guest_ticks= hz= rss_kib= uptime=` | L1 `bench-blk` |
//! | `MINIVMM-BENCH-RUN vmm= kind= mode= trial= rc= seconds=` | L1 `bench-blk` |
//! | `MINIVMM-BENCH-STARTUP vmm= kind= mode= trial= first_kvm_run_us=` | L1 `bench-blk` |
//! | `MINIVMM-BENCH-COUNTERS vmm= kind= mode= trial= pio_exits= ...` | L1 `bench-blk` (minivmm's counters at exit) |
//! | `MINIVMM-MAPLAT vmm= size= n= p50_ns= ...` | `vfio-maplat` (L2, or L1 for the floor) |

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use crate::{build_image_variant, Error, HostIommu, NestedHost, Passthrough, Run};

/// The VMMs compared, in the order of the odd trials.
pub const VMMS: [&str; 2] = ["minivmm", "qemu"];
/// The IOMMU modes of the block figures.
pub const MODES: [&str; 3] = ["off", "lazy", "strict"];
/// The fio jobs of the L2 scenario `bench-blk`, in order.
pub const JOBS: [&str; 4] = ["randread-qd1", "randread-qd32", "randwrite", "seqread-1m"];
/// The mapping sizes of the map/unmap latency benchmark.
pub const MAP_SIZES: [u64; 3] = [4 << 10, 64 << 10, 2 << 20];

/// A console line with a benchmark marker that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// A field the marker must have is absent.
    #[error("`{line}`: no {key}=")]
    Missing {
        /// The line.
        line: String,
        /// The field.
        key: &'static str,
    },
    /// A field is not a number.
    #[error("`{line}`: {key}={value} is not a number")]
    NotANumber {
        /// The line.
        line: String,
        /// The field.
        key: &'static str,
        /// Its text.
        value: String,
    },
}

/// One fio job's result (`MINIVMM-BENCH-FIO`).
#[derive(Debug, Clone, PartialEq)]
pub struct Fio {
    /// The VMM.
    pub vmm: String,
    /// The IOMMU mode.
    pub mode: String,
    /// The trial number.
    pub trial: u32,
    /// The job name (one of [`JOBS`]).
    pub job: String,
    /// I/O operations per second.
    pub iops: f64,
    /// Bandwidth, KiB/s.
    pub bw_kib: f64,
    /// How long the job ran, ms.
    pub runtime_ms: f64,
    /// Median completion latency, us.
    pub p50_us: f64,
    /// 99th percentile completion latency, us.
    pub p99_us: f64,
}

/// The idle figure's share of the vCPU threads (KVM_RUN: the guest's own
/// time and the host kernel's work for its exits).
const IDLE_VCPUS: &str = "idle guest, vCPU threads, % of a host CPU";
/// The idle figure's share of every other thread (the VMM's own work).
const IDLE_OTHERS: &str = "idle guest, other threads, % of a host CPU";

/// The VMM's CPU time and memory at a mark (`MINIVMM-BENCH-CPU`).
#[derive(Debug, Clone, PartialEq)]
pub struct Cpu {
    /// The VMM.
    pub vmm: String,
    /// `boot` or `fio`.
    pub kind: String,
    /// The IOMMU mode (`none` for boot runs).
    pub mode: String,
    /// The trial number.
    pub trial: u32,
    /// The mark (`start:JOB`, `end:JOB`, `idle-start`, `idle-end`, `done`, `exit`).
    pub mark: String,
    /// utime + stime, clock ticks.
    pub ticks: f64,
    /// The part of `ticks` the vCPUs spent in the guest.
    pub guest_ticks: f64,
    /// The part of `ticks` of the vCPU threads (guest time included), when
    /// the marker has it (logs before it was added do not).
    pub vcpu_ticks: Option<f64>,
    /// Clock ticks per second.
    pub hz: f64,
    /// VmRSS, KiB.
    pub rss_kib: f64,
    /// L1's uptime, s.
    pub uptime: f64,
}

/// One VMM run (`MINIVMM-BENCH-RUN`).
#[derive(Debug, Clone, PartialEq)]
pub struct VmmRun {
    /// The VMM.
    pub vmm: String,
    /// `boot` or `fio`.
    pub kind: String,
    /// The IOMMU mode.
    pub mode: String,
    /// The trial number.
    pub trial: u32,
    /// The VMM's exit status.
    pub rc: i32,
    /// L1 wall time from starting the VMM to its exit, s.
    pub seconds: f64,
}

/// minivmm's start-up time (`MINIVMM-BENCH-STARTUP`).
#[derive(Debug, Clone, PartialEq)]
pub struct Startup {
    /// `boot` or `fio`.
    pub kind: String,
    /// The trial number.
    pub trial: u32,
    /// From exec to the first `KVM_RUN`, us.
    pub first_kvm_run_us: f64,
}

/// One map/unmap latency result (`MINIVMM-MAPLAT`).
#[derive(Debug, Clone, PartialEq)]
pub struct MapLat {
    /// `minivmm`, `qemu` or `floor`.
    pub vmm: String,
    /// The mapping size, bytes.
    pub size: u64,
    /// Median map + unmap pair, ns.
    pub p50_ns: f64,
}

/// minivmm's counters at the end of a run (`MINIVMM-BENCH-COUNTERS`,
/// `devices/src/perf.rs`).
#[derive(Debug, Clone, PartialEq)]
pub struct Counters {
    /// `boot` or `fio`.
    pub kind: String,
    /// The IOMMU mode.
    pub mode: String,
    /// The trial number.
    pub trial: u32,
    /// Every numeric `key=value` word after the run's tag.
    pub values: BTreeMap<String, f64>,
}

/// A parsed benchmark marker.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// `MINIVMM-BENCH-FIO`.
    Fio(Fio),
    /// `MINIVMM-BENCH-CPU`.
    Cpu(Cpu),
    /// `MINIVMM-BENCH-RUN`.
    Run(VmmRun),
    /// `MINIVMM-BENCH-STARTUP`.
    Startup(Startup),
    /// `MINIVMM-MAPLAT`.
    MapLat(MapLat),
    /// `MINIVMM-BENCH-COUNTERS`.
    Counters(Counters),
}

/// The `key=value` words after a marker.
struct Fields<'a> {
    line: &'a str,
    words: BTreeMap<&'a str, &'a str>,
}

impl<'a> Fields<'a> {
    fn new(line: &'a str, rest: &'a str) -> Self {
        let words = rest
            .split_whitespace()
            .filter_map(|word| word.split_once('='))
            .collect();
        Self { line, words }
    }

    fn text(&self, key: &'static str) -> Result<String, ParseError> {
        self.words
            .get(key)
            .map(|value| value.to_string())
            .ok_or_else(|| ParseError::Missing {
                line: self.line.to_string(),
                key,
            })
    }

    fn number<T: std::str::FromStr>(&self, key: &'static str) -> Result<T, ParseError> {
        let value = self.text(key)?;
        value.parse().map_err(|_| ParseError::NotANumber {
            line: self.line.to_string(),
            key,
            value,
        })
    }

    /// A number that may be absent (a field added after older logs).
    fn optional_number<T: std::str::FromStr>(
        &self,
        key: &'static str,
    ) -> Result<Option<T>, ParseError> {
        if self.words.contains_key(key) {
            self.number(key).map(Some)
        } else {
            Ok(None)
        }
    }
}

/// Parses one console line: `Ok(None)` for a line without a benchmark
/// marker, an error for a marker line that lacks a field or has a bad
/// number.
pub fn parse_line(line: &str) -> Result<Option<Record>, ParseError> {
    // Consoles may end lines with a carriage return.
    let line = line.trim_end_matches('\r');
    let after = |marker: &str| line.split_once(marker).map(|(_, rest)| rest);
    if let Some(rest) = after("MINIVMM-BENCH-FIO ") {
        let f = Fields::new(line, rest);
        return Ok(Some(Record::Fio(Fio {
            vmm: f.text("vmm")?,
            mode: f.text("mode")?,
            trial: f.number("trial")?,
            job: f.text("job")?,
            iops: f.number("iops")?,
            bw_kib: f.number("bw_kib")?,
            runtime_ms: f.number("runtime_ms")?,
            p50_us: f.number("p50_us")?,
            p99_us: f.number("p99_us")?,
        })));
    }
    if let Some(rest) = after("MINIVMM-BENCH-CPU ") {
        let f = Fields::new(line, rest);
        return Ok(Some(Record::Cpu(Cpu {
            vmm: f.text("vmm")?,
            kind: f.text("kind")?,
            mode: f.text("mode")?,
            trial: f.number("trial")?,
            mark: f.text("mark")?,
            ticks: f.number("ticks")?,
            guest_ticks: f.number("guest_ticks")?,
            vcpu_ticks: f.optional_number("vcpu_ticks")?,
            hz: f.number("hz")?,
            rss_kib: f.number("rss_kib")?,
            uptime: f.number("uptime")?,
        })));
    }
    if let Some(rest) = after("MINIVMM-BENCH-RUN ") {
        let f = Fields::new(line, rest);
        return Ok(Some(Record::Run(VmmRun {
            vmm: f.text("vmm")?,
            kind: f.text("kind")?,
            mode: f.text("mode")?,
            trial: f.number("trial")?,
            rc: f.number("rc")?,
            seconds: f.number("seconds")?,
        })));
    }
    if let Some(rest) = after("MINIVMM-BENCH-STARTUP ") {
        let f = Fields::new(line, rest);
        return Ok(Some(Record::Startup(Startup {
            kind: f.text("kind")?,
            trial: f.number("trial")?,
            first_kvm_run_us: f.number("first_kvm_run_us")?,
        })));
    }
    if let Some(rest) = after("MINIVMM-BENCH-COUNTERS ") {
        let f = Fields::new(line, rest);
        let values = f
            .words
            .iter()
            .filter_map(|(key, value)| Some((key.to_string(), value.parse().ok()?)))
            .collect();
        return Ok(Some(Record::Counters(Counters {
            kind: f.text("kind")?,
            mode: f.text("mode")?,
            trial: f.number("trial")?,
            values,
        })));
    }
    if let Some(rest) = after("MINIVMM-MAPLAT ") {
        let f = Fields::new(line, rest);
        return Ok(Some(Record::MapLat(MapLat {
            vmm: f.text("vmm")?,
            size: f.number("size")?,
            p50_ns: f.number("p50_ns")?,
        })));
    }
    Ok(None)
}

/// Every benchmark marker of `lines`, in order.
pub fn parse_console<'a>(
    lines: impl IntoIterator<Item = &'a String>,
) -> Result<Vec<Record>, ParseError> {
    let mut records = Vec::new();
    for line in lines {
        if let Some(record) = parse_line(line)? {
            records.push(record);
        }
    }
    Ok(records)
}

/// The trials of one figure and their summary.
#[derive(Debug, Clone, PartialEq)]
pub struct Stat {
    /// The trials' values, in trial order.
    pub values: Vec<f64>,
}

impl Stat {
    /// The median (the mean of the middle two for an even count).
    pub fn median(&self) -> f64 {
        let mut sorted = self.values.clone();
        sorted.sort_by(f64::total_cmp);
        match sorted.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => sorted[n / 2],
            n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
        }
    }

    /// The smallest trial.
    pub fn min(&self) -> f64 {
        self.values.iter().copied().fold(f64::INFINITY, f64::min)
    }

    /// The largest trial.
    pub fn max(&self) -> f64 {
        self.values
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max)
    }

    /// The spread max/min - 1, in percent (0 when every trial is 0, NaN
    /// when only the smallest is).
    pub fn spread_pct(&self) -> f64 {
        if self.max() == 0.0 {
            return 0.0;
        }
        (self.max() / self.min() - 1.0) * 100.0
    }
}

/// What a figure measures: its row in the table.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key {
    /// The group (`fio`, `cpu`, `idle`, `boot`, `memory`, `maplat`).
    pub group: &'static str,
    /// What, e.g. `randread-qd32 IOPS`.
    pub what: String,
    /// The IOMMU mode (`-` where it does not apply).
    pub mode: String,
    /// The VMM (`floor` for L1's own map latency).
    pub vmm: String,
}

/// Every figure of a suite run, each with its trials.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    /// The figures by key.
    pub figures: BTreeMap<Key, Stat>,
    /// VMM runs that did not exit 0, as `vmm kind mode trial rc`.
    pub failed_runs: Vec<String>,
}

impl Figures {
    fn push(&mut self, group: &'static str, what: String, mode: &str, vmm: &str, value: f64) {
        self.figures
            .entry(Key {
                group,
                what,
                mode: mode.to_string(),
                vmm: vmm.to_string(),
            })
            .or_insert_with(|| Stat { values: Vec::new() })
            .values
            .push(value);
    }

    /// The figure `what` of `group` for `mode` and `vmm`.
    pub fn get(&self, group: &'static str, what: &str, mode: &str, vmm: &str) -> Option<&Stat> {
        self.figures.get(&Key {
            group,
            what: what.to_string(),
            mode: mode.to_string(),
            vmm: vmm.to_string(),
        })
    }

    /// The median of a figure.
    pub fn median(&self, group: &'static str, what: &str, mode: &str, vmm: &str) -> Option<f64> {
        self.get(group, what, mode, vmm).map(Stat::median)
    }

    /// Computes the figures from the block run's and the map run's records.
    pub fn from_records(blk: &[Record], maplat: &[Record]) -> Self {
        let mut figures = Self::default();
        let cpu_at = |vmm: &str, mode: &str, trial: u32, mark: &str| {
            blk.iter().find_map(|r| match r {
                Record::Cpu(c)
                    if c.kind == "fio"
                        && c.vmm == vmm
                        && c.mode == mode
                        && c.trial == trial
                        && c.mark == mark =>
                {
                    Some(c)
                }
                _ => None,
            })
        };
        for record in blk {
            match record {
                Record::Fio(f) => {
                    let job = f.job.as_str();
                    if job == "seqread-1m" {
                        figures.push(
                            "fio",
                            format!("{job} MiB/s"),
                            &f.mode,
                            &f.vmm,
                            f.bw_kib / 1024.0,
                        );
                    } else {
                        figures.push("fio", format!("{job} IOPS"), &f.mode, &f.vmm, f.iops);
                    }
                    figures.push("fio", format!("{job} p50 us"), &f.mode, &f.vmm, f.p50_us);
                    figures.push("fio", format!("{job} p99 us"), &f.mode, &f.vmm, f.p99_us);
                    let start = cpu_at(&f.vmm, &f.mode, f.trial, &format!("start:{job}"));
                    let end = cpu_at(&f.vmm, &f.mode, f.trial, &format!("end:{job}"));
                    let ios = f.iops * f.runtime_ms / 1000.0;
                    if let (Some(start), Some(end)) = (start, end) {
                        if ios > 0.0 {
                            let own =
                                (end.ticks - end.guest_ticks) - (start.ticks - start.guest_ticks);
                            figures.push(
                                "cpu",
                                format!("{job} VMM CPU us/IO"),
                                &f.mode,
                                &f.vmm,
                                own / end.hz * 1e6 / ios,
                            );
                            figures.push(
                                "cpu",
                                format!("{job} VMM+guest CPU us/IO"),
                                &f.mode,
                                &f.vmm,
                                (end.ticks - start.ticks) / end.hz * 1e6 / ios,
                            );
                        }
                    }
                }
                Record::Cpu(c) if c.kind == "fio" && c.mark == "idle-end" => {
                    if let Some(start) = cpu_at(&c.vmm, &c.mode, c.trial, "idle-start") {
                        let seconds = c.uptime - start.uptime;
                        if seconds > 0.0 {
                            let cpu = (c.ticks - start.ticks) / c.hz;
                            figures.push(
                                "idle",
                                "idle guest, % of a host CPU".into(),
                                &c.mode,
                                &c.vmm,
                                cpu / seconds * 100.0,
                            );
                            if let (Some(end), Some(begin)) = (c.vcpu_ticks, start.vcpu_ticks) {
                                let vcpus = (end - begin) / c.hz;
                                figures.push(
                                    "idle",
                                    IDLE_VCPUS.into(),
                                    &c.mode,
                                    &c.vmm,
                                    vcpus / seconds * 100.0,
                                );
                                figures.push(
                                    "idle",
                                    IDLE_OTHERS.into(),
                                    &c.mode,
                                    &c.vmm,
                                    (cpu - vcpus).max(0.0) / seconds * 100.0,
                                );
                            }
                        }
                    }
                }
                Record::Cpu(c) if c.kind == "fio" && c.mark == "done" => {
                    figures.push(
                        "cpu",
                        "CPU s per fio run (boot to poweroff)".into(),
                        &c.mode,
                        &c.vmm,
                        c.ticks / c.hz,
                    );
                    figures.push(
                        "memory",
                        "VmRSS MiB, 512 MiB guest after fio".into(),
                        &c.mode,
                        &c.vmm,
                        c.rss_kib / 1024.0,
                    );
                }
                Record::Run(r) if r.rc != 0 => {
                    figures.failed_runs.push(format!(
                        "{} {} {} trial {} rc={}",
                        r.vmm, r.kind, r.mode, r.trial, r.rc
                    ));
                }
                Record::Run(r) if r.kind == "boot" => {
                    figures.push(
                        "boot",
                        "L2 boot + poweroff s".into(),
                        "-",
                        &r.vmm,
                        r.seconds,
                    );
                }
                Record::Counters(c) if c.kind == "fio" => {
                    let v = |key: &str| c.values.get(key).copied();
                    let per = |a: Option<f64>, b: Option<f64>| match (a, b) {
                        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
                        _ => None,
                    };
                    let blk = v("blk_requests");
                    let windows = v("poll_windows");
                    let exits = v("pio_exits").zip(v("mmio_exits")).map(|(a, b)| a + b);
                    for (what, value) in [
                        ("blk requests per kick", per(blk, v("blk_kicks"))),
                        ("vCPU exits per blk request", per(exits, blk)),
                        ("translations per blk request", per(v("translations"), blk)),
                        (
                            "iommu requests per blk request",
                            per(v("iommu_requests"), blk),
                        ),
                        (
                            "iommu requests per kick",
                            per(v("iommu_requests"), v("iommu_kicks")),
                        ),
                        ("poll hits per window", per(v("poll_hits"), windows)),
                        ("poll misses per window", per(v("poll_misses"), windows)),
                        (
                            "kicks without a poll window, per iommu kick",
                            per(v("poll_skips"), v("iommu_kicks")),
                        ),
                        (
                            "poll window ms, mean",
                            per(v("poll_spin_us"), windows).map(|us| us / 1000.0),
                        ),
                        ("poll s per fio run", v("poll_spin_us").map(|us| us / 1e6)),
                        (
                            "iommu service us per request",
                            per(v("iommu_service_ns"), v("iommu_requests")).map(|ns| ns / 1000.0),
                        ),
                    ] {
                        if let Some(value) = value {
                            figures.push("counters", what.into(), &c.mode, "minivmm", value);
                        }
                    }
                }
                Record::Startup(s) if s.kind == "boot" => {
                    figures.push(
                        "boot",
                        "exec -> first KVM_RUN ms".into(),
                        "-",
                        "minivmm",
                        s.first_kvm_run_us / 1000.0,
                    );
                }
                _ => {}
            }
        }
        for record in maplat {
            if let Record::MapLat(m) = record {
                figures.push(
                    "maplat",
                    format!("map+unmap {} p50 us", size_name(m.size)),
                    "-",
                    &m.vmm,
                    m.p50_ns / 1000.0,
                );
            }
        }
        figures
    }

    /// The figures that a suite run with these parameters must produce.
    pub fn expected(params: &Params) -> Vec<Key> {
        let mut keys = Vec::new();
        let key = |group, what: String, mode: &str, vmm: &str| Key {
            group,
            what,
            mode: mode.to_string(),
            vmm: vmm.to_string(),
        };
        for vmm in VMMS {
            for &mode in &params.modes {
                for &job in &params.jobs {
                    let first = if job == "seqread-1m" { "MiB/s" } else { "IOPS" };
                    for what in [first, "p50 us", "p99 us"] {
                        keys.push(key("fio", format!("{job} {what}"), mode, vmm));
                    }
                    keys.push(key("cpu", format!("{job} VMM CPU us/IO"), mode, vmm));
                }
                keys.push(key(
                    "cpu",
                    "CPU s per fio run (boot to poweroff)".into(),
                    mode,
                    vmm,
                ));
                keys.push(key("idle", "idle guest, % of a host CPU".into(), mode, vmm));
                keys.push(key(
                    "memory",
                    "VmRSS MiB, 512 MiB guest after fio".into(),
                    mode,
                    vmm,
                ));
            }
            keys.push(key("boot", "L2 boot + poweroff s".into(), "-", vmm));
        }
        keys.push(key(
            "boot",
            "exec -> first KVM_RUN ms".into(),
            "-",
            "minivmm",
        ));
        for &mode in &params.modes {
            keys.push(key(
                "counters",
                "blk requests per kick".into(),
                mode,
                "minivmm",
            ));
        }
        if params.maplat {
            for vmm in ["minivmm", "qemu", "floor"] {
                for size in MAP_SIZES {
                    keys.push(key(
                        "maplat",
                        format!("map+unmap {} p50 us", size_name(size)),
                        "-",
                        vmm,
                    ));
                }
            }
        }
        keys
    }

    /// The expected figures that are missing, have fewer than `trials`
    /// values, or have a value that is not positive (idle CPU may be 0).
    pub fn problems(&self, params: &Params) -> Vec<String> {
        let mut problems: Vec<String> = self
            .failed_runs
            .iter()
            .map(|r| format!("VMM run failed: {r}"))
            .collect();
        for key in Self::expected(params) {
            let name = format!("{} / {} / {}", key.what, key.mode, key.vmm);
            match self.figures.get(&key) {
                None => problems.push(format!("missing: {name}")),
                Some(stat) if stat.values.len() < params.trials as usize => problems.push(format!(
                    "{name}: {} of {} trials",
                    stat.values.len(),
                    params.trials
                )),
                Some(stat) => {
                    let zero_ok = key.group == "idle";
                    if stat
                        .values
                        .iter()
                        .any(|v| !v.is_finite() || *v < 0.0 || (*v == 0.0 && !zero_ok))
                    {
                        problems.push(format!("{name}: not positive: {:?}", stat.values));
                    }
                }
            }
        }
        problems
    }
}

/// `4 KiB`, `2 MiB`.
pub fn size_name(size: u64) -> String {
    if size >= 1 << 20 {
        format!("{} MiB", size >> 20)
    } else {
        format!("{} KiB", size >> 10)
    }
}

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

/// A number for the table: 3 significant digits, at most 2 decimals.
fn num(value: f64) -> String {
    if !value.is_finite() {
        return "-".to_string();
    }
    let magnitude = value.abs();
    if magnitude >= 100.0 {
        format!("{value:.0}")
    } else if magnitude >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

/// `median (min-max, spread%)`.
fn cell(stat: Option<&Stat>) -> String {
    match stat {
        None => "-".to_string(),
        Some(stat) if stat.values.len() == 1 => num(stat.median()),
        Some(stat) if !stat.spread_pct().is_finite() => format!(
            "{} ({}-{})",
            num(stat.median()),
            num(stat.min()),
            num(stat.max())
        ),
        Some(stat) => format!(
            "{} ({}-{}, {:.0}%)",
            num(stat.median()),
            num(stat.min()),
            num(stat.max()),
            stat.spread_pct()
        ),
    }
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b != 0.0 => Some(a / b),
        _ => None,
    }
}

fn ratio_cell(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_string(), |v| format!("{v:.2}x"))
}

/// One verdict on a target of issue 10.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// The target, in words.
    pub what: String,
    /// Whether it holds (`None` when a figure is missing).
    pub holds: Option<bool>,
    /// The numbers behind the verdict.
    pub numbers: String,
}

impl Figures {
    /// The markdown tables: block figures per job with the ratios, CPU,
    /// idle, boot, memory and map latency with the floor.
    pub fn table(&self, params: &Params) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Medians of {} trial(s), as `median (min-max, max/min-1)`.\n",
            params.trials
        );
        let _ = writeln!(
            out,
            "### Block I/O (fio, O_DIRECT, libaio, virtio-blk on a raw image)\n"
        );
        let _ = writeln!(
            out,
            "| figure | mode | minivmm | QEMU | minivmm/QEMU | minivmm mode/off | QEMU mode/off |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|");
        for &job in &params.jobs {
            let first = if job == "seqread-1m" { "MiB/s" } else { "IOPS" };
            for what in [first, "p50 us", "p99 us"] {
                let what = format!("{job} {what}");
                for &mode in &params.modes {
                    self.row(&mut out, "fio", &what, mode, mode != "off");
                }
            }
        }
        let _ = writeln!(
            out,
            "\n### Host CPU of the VMM process (L1's /proc/PID/stat, utime+stime)\n"
        );
        let _ = writeln!(
            out,
            "| figure | mode | minivmm | QEMU | minivmm/QEMU | minivmm mode/off | QEMU mode/off |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|");
        for &job in &params.jobs {
            for what in ["VMM CPU us/IO", "VMM+guest CPU us/IO"] {
                for &mode in &params.modes {
                    self.row(
                        &mut out,
                        "cpu",
                        &format!("{job} {what}"),
                        mode,
                        mode != "off",
                    );
                }
            }
        }
        for mode in MODES {
            self.row(
                &mut out,
                "cpu",
                "CPU s per fio run (boot to poweroff)",
                mode,
                false,
            );
        }
        for what in ["idle guest, % of a host CPU", IDLE_VCPUS, IDLE_OTHERS] {
            for mode in MODES {
                self.row(&mut out, "idle", what, mode, false);
            }
        }
        let _ = writeln!(
            out,
            "\n### Where minivmm's time goes (its counters over the whole fio run, devices/src/perf.rs)\n"
        );
        let _ = writeln!(out, "| counter | {} |", params.modes.join(" | "));
        let _ = writeln!(out, "|---|{}", "---|".repeat(params.modes.len()));
        for what in [
            "blk requests per kick",
            "vCPU exits per blk request",
            "translations per blk request",
            "iommu requests per blk request",
            "iommu requests per kick",
            "poll hits per window",
            "poll misses per window",
            "kicks without a poll window, per iommu kick",
            "poll window ms, mean",
            "poll s per fio run",
            "iommu service us per request",
        ] {
            let cells: Vec<String> = params
                .modes
                .iter()
                .map(|mode| cell(self.get("counters", what, mode, "minivmm")))
                .collect();
            let _ = writeln!(out, "| {what} | {} |", cells.join(" | "));
        }
        let _ = writeln!(out, "\n### Boot and memory\n");
        let _ = writeln!(out, "| figure | mode | minivmm | QEMU | minivmm/QEMU | | |");
        let _ = writeln!(out, "|---|---|---|---|---|---|---|");
        self.row(&mut out, "boot", "L2 boot + poweroff s", "-", false);
        self.row(&mut out, "boot", "exec -> first KVM_RUN ms", "-", false);
        for mode in MODES {
            self.row(
                &mut out,
                "memory",
                "VmRSS MiB, 512 MiB guest after fio",
                mode,
                false,
            );
        }
        if params.maplat {
            let _ = writeln!(
                out,
                "\n### Map/unmap latency (VFIO MAP_DMA + UNMAP_DMA pair; L1 with the Intel IOMMU)\n"
            );
            let _ = writeln!(
                out,
                "| size | minivmm (L2) | QEMU (L2) | floor (L1 itself) | minivmm/QEMU | minivmm/floor | QEMU/floor |"
            );
            let _ = writeln!(out, "|---|---|---|---|---|---|---|");
            for size in MAP_SIZES {
                let what = format!("map+unmap {} p50 us", size_name(size));
                let m = |vmm| self.median("maplat", &what, "-", vmm);
                let _ = writeln!(
                    out,
                    "| {} p50 us | {} | {} | {} | {} | {} | {} |",
                    size_name(size),
                    cell(self.get("maplat", &what, "-", "minivmm")),
                    cell(self.get("maplat", &what, "-", "qemu")),
                    cell(self.get("maplat", &what, "-", "floor")),
                    ratio_cell(ratio(m("minivmm"), m("qemu"))),
                    ratio_cell(ratio(m("minivmm"), m("floor"))),
                    ratio_cell(ratio(m("qemu"), m("floor"))),
                );
            }
        }
        out
    }

    fn row(
        &self,
        out: &mut String,
        group: &'static str,
        what: &str,
        mode: &str,
        mode_ratios: bool,
    ) {
        let m = |vmm| self.median(group, what, mode, vmm);
        let off = |vmm| self.median(group, what, "off", vmm);
        let (ours_mode, qemu_mode) = if mode_ratios {
            (
                ratio_cell(ratio(m("minivmm"), off("minivmm"))),
                ratio_cell(ratio(m("qemu"), off("qemu"))),
            )
        } else {
            (String::new(), String::new())
        };
        let _ = writeln!(
            out,
            "| {what} | {mode} | {} | {} | {} | {ours_mode} | {qemu_mode} |",
            cell(self.get(group, what, mode, "minivmm")),
            cell(self.get(group, what, mode, "qemu")),
            ratio_cell(ratio(m("minivmm"), m("qemu"))),
        );
    }

    /// The issue's targets, judged on these figures.
    pub fn targets(&self) -> Vec<Target> {
        let mut targets = Vec::new();
        let verdict = |what: String,
                       values: Vec<Option<f64>>,
                       check: &dyn Fn(&[f64]) -> bool,
                       numbers: String| {
            let holds = values
                .iter()
                .copied()
                .collect::<Option<Vec<f64>>>()
                .map(|v| check(&v));
            Target {
                what,
                holds,
                numbers,
            }
        };
        for (job, what) in [
            ("seqread-1m", "seqread-1m MiB/s"),
            ("randread-qd32", "randread-qd32 IOPS"),
        ] {
            let m = |mode, vmm| self.median("fio", what, mode, vmm);
            let lazy = ratio(m("lazy", "minivmm"), m("off", "minivmm"));
            let strict = ratio(m("strict", "minivmm"), m("off", "minivmm"));
            targets.push(verdict(
                format!("{job}: minivmm lazy >= 0.8x off"),
                vec![lazy],
                &|v| v[0] >= 0.8,
                format!("lazy/off {}", ratio_cell(lazy)),
            ));
            targets.push(verdict(
                format!("{job}: minivmm strict >= 0.5x off"),
                vec![strict],
                &|v| v[0] >= 0.5,
                format!("strict/off {}", ratio_cell(strict)),
            ));
            let vs: Vec<Option<f64>> = MODES
                .iter()
                .map(|mode| ratio(m(mode, "minivmm"), m(mode, "qemu")))
                .collect();
            targets.push(verdict(
                format!("{job}: minivmm >= QEMU in every mode"),
                vs.clone(),
                &|v| v.iter().all(|r| *r >= 1.0),
                MODES
                    .iter()
                    .zip(&vs)
                    .map(|(mode, r)| format!("{mode} {}", ratio_cell(*r)))
                    .collect::<Vec<_>>()
                    .join(", "),
            ));
            let spreads: Vec<Option<f64>> = MODES
                .iter()
                .map(|mode| self.get("fio", what, mode, "minivmm").map(Stat::spread_pct))
                .collect();
            targets.push(verdict(
                format!("{job}: minivmm trial-to-trial spread < 20%"),
                spreads.clone(),
                &|v| v.iter().all(|s| *s < 20.0),
                MODES
                    .iter()
                    .zip(&spreads)
                    .map(|(mode, s)| {
                        format!("{mode} {}", s.map_or("-".into(), |s| format!("{s:.0}%")))
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
            ));
        }
        for size in MAP_SIZES {
            let what = format!("map+unmap {} p50 us", size_name(size));
            let m = |vmm| self.median("maplat", &what, "-", vmm);
            let floor = ratio(m("minivmm"), m("floor"));
            targets.push(verdict(
                format!(
                    "map+unmap {} p50: minivmm <= 2x the L1 floor",
                    size_name(size)
                ),
                vec![floor],
                &|v| v[0] <= 2.0,
                format!(
                    "minivmm/floor {}, minivmm/QEMU {}",
                    ratio_cell(floor),
                    ratio_cell(ratio(m("minivmm"), m("qemu")))
                ),
            ));
        }
        for job in JOBS {
            let what = format!("{job} VMM CPU us/IO");
            let vs: Vec<Option<f64>> = MODES
                .iter()
                .map(|mode| {
                    ratio(
                        self.median("cpu", &what, mode, "minivmm"),
                        self.median("cpu", &what, mode, "qemu"),
                    )
                })
                .collect();
            targets.push(verdict(
                format!("{job}: minivmm host CPU per I/O <= QEMU's"),
                vs.clone(),
                &|v| v.iter().all(|r| *r <= 1.0),
                MODES
                    .iter()
                    .zip(&vs)
                    .map(|(mode, r)| format!("{mode} {}", ratio_cell(*r)))
                    .collect::<Vec<_>>()
                    .join(", "),
            ));
        }
        let idle: Vec<Option<f64>> = MODES
            .iter()
            .map(|mode| self.median("idle", "idle guest, % of a host CPU", mode, "minivmm"))
            .collect();
        targets.push(verdict(
            "idle guest: minivmm < 1% of a host CPU".into(),
            idle.clone(),
            &|v| v.iter().all(|p| *p < 1.0),
            MODES
                .iter()
                .zip(&idle)
                .map(|(mode, p)| format!("{mode} {}", p.map_or("-".into(), |p| format!("{p:.2}%"))))
                .collect::<Vec<_>>()
                .join(", "),
        ));
        let boot = ratio(
            self.median("boot", "L2 boot + poweroff s", "-", "minivmm"),
            self.median("boot", "L2 boot + poweroff s", "-", "qemu"),
        );
        targets.push(verdict(
            "L2 boot + poweroff: minivmm <= 0.6x QEMU q35".into(),
            vec![boot],
            &|v| v[0] <= 0.6,
            format!(
                "minivmm/QEMU {}; minivmm exec -> first KVM_RUN {} ms",
                ratio_cell(boot),
                self.median("boot", "exec -> first KVM_RUN ms", "-", "minivmm")
                    .map_or("-".into(), num)
            ),
        ));
        targets
    }

    /// The targets as a markdown table.
    pub fn targets_table(&self) -> String {
        let mut out = String::from("| target | holds | numbers |\n|---|---|---|\n");
        for target in self.targets() {
            let holds = match target.holds {
                Some(true) => "yes",
                Some(false) => "no",
                None => "n/a (figure missing)",
            };
            let _ = writeln!(out, "| {} | {holds} | {} |", target.what, target.numbers);
        }
        out
    }
}

#[cfg(test)]
mod tests {
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
        assert!(
            matches!(parse_line(run), Ok(Some(Record::Run(r))) if r.seconds == 18.91 && r.rc == 0)
        );
        let startup =
            "MINIVMM-BENCH-STARTUP vmm=minivmm kind=boot mode=none trial=1 first_kvm_run_us=395869";
        assert!(
            matches!(parse_line(startup), Ok(Some(Record::Startup(s))) if s.first_kvm_run_us == 395869.0)
        );
        let map =
            "MINIVMM-MAPLAT vmm=floor size=4096 n=200 p50_ns=35000 p90_ns=1 p99_ns=2 mean_ns=3";
        assert!(
            matches!(parse_line(map), Ok(Some(Record::MapLat(m))) if m.vmm == "floor" && m.size == 4096)
        );
        assert_eq!(parse_line("MINIVMM-BENCH-MARK done vmm=qemu"), Ok(None));
        assert_eq!(
            parse_line("MINIVMM-MAPLAT-SETUP vmm=qemu bdf=0000:00:02.0"),
            Ok(None)
        );
        assert_eq!(parse_line("an ordinary console line"), Ok(None));
        let counters =
            "MINIVMM-BENCH-COUNTERS vmm=minivmm kind=fio mode=lazy trial=1 pio_exits=10 \
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
}
