//! The console markers of the two nested runs and their parser: every
//! marker line becomes a [`Record`], any other line is ignored.

use std::collections::BTreeMap;

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
