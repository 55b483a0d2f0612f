//! The markdown tables of a suite run, with the ratios, and the verdicts
//! on issue 10's targets.

use std::fmt::Write as _;

use super::figures::{size_name, Figures, Stat};
use super::run::Params;
use super::{IDLE_OTHERS, IDLE_VCPUS, JOBS, MAP_SIZES, MODES};

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
pub(super) fn cell(stat: Option<&Stat>) -> String {
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

/// `off X, lazy Y, strict Z`: one value per mode, each shown by `show`.
fn per_mode(values: &[Option<f64>], show: impl Fn(Option<f64>) -> String) -> String {
    MODES
        .iter()
        .zip(values)
        .map(|(mode, v)| format!("{mode} {}", show(*v)))
        .collect::<Vec<_>>()
        .join(", ")
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
            "translation cache hits, % of translations",
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

    /// The targets, judged on these figures.
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
                per_mode(&vs, ratio_cell),
            ));
            let spreads: Vec<Option<f64>> = MODES
                .iter()
                .map(|mode| self.get("fio", what, mode, "minivmm").map(Stat::spread_pct))
                .collect();
            targets.push(verdict(
                format!("{job}: minivmm trial-to-trial spread < 20%"),
                spreads.clone(),
                &|v| v.iter().all(|s| *s < 20.0),
                per_mode(&spreads, |s| s.map_or("-".into(), |s| format!("{s:.0}%"))),
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
                per_mode(&vs, ratio_cell),
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
            per_mode(&idle, |p| p.map_or("-".into(), |p| format!("{p:.2}%"))),
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
