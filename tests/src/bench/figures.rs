//! The figures of a suite run: each a [`Stat`] over the trials, keyed by
//! [`Key`], computed from the parsed records.

use std::collections::BTreeMap;

use super::parse::Record;
use super::run::Params;
use super::{IDLE_OTHERS, IDLE_VCPUS, MAP_SIZES, VMMS};

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
                            "translation cache hits, % of translations",
                            per(v("translation_hits"), v("translations")).map(|f| f * 100.0),
                        ),
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
