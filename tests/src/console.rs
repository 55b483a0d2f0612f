//! Parsing the nested host console: markers to per-scenario results.

use std::time::Duration;

const L1_READY: &str = "MINIVMM-L1-READY ";
const SCENARIO_START: &str = "MINIVMM-SCENARIO-START ";
const SCENARIO_END: &str = "MINIVMM-SCENARIO-END ";
const L2_RESULT: &str = "MINIVMM-L2-RESULT ";
const L1_DONE: &str = "MINIVMM-L1-DONE";
const L1_VFIO: &str = "MINIVMM-L1-VFIO ";
/// run.sh's last line before it starts QEMU.
const L0_START: &str = "==> booting the nested host";

/// A passthrough device as L1's `/init` left it:
/// `MINIVMM-L1-VFIO bdf=B kind=K group=N|none bound=yes|no driver=D regions=R`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VfioDevice {
    /// Its BDF in L1.
    pub bdf: String,
    /// `virtio-blk`, `e1000e`, `edu`, `unknown` (other IDs) or `missing`.
    pub kind: String,
    /// Its IOMMU group, if it has one.
    pub group: Option<u32>,
    /// Whether vfio-pci drives it.
    pub bound: bool,
    /// The driver bound to it (`none` if none).
    pub driver: String,
    /// The lines of its group's `reserved_regions`, such as
    /// `0x00000000fee00000 0x00000000feefffff msi`.
    pub reserved_regions: Vec<String>,
}

impl VfioDevice {
    fn parse(rest: &str) -> Option<Self> {
        let (fields, regions) = match rest.split_once("regions=") {
            Some((fields, regions)) => (fields, regions.trim()),
            None => (rest, ""),
        };
        let field = |key: &str| {
            fields
                .split_whitespace()
                .find_map(|word| word.strip_prefix(key)?.strip_prefix('='))
        };
        Some(Self {
            bdf: field("bdf")?.to_string(),
            kind: field("kind").unwrap_or("unknown").to_string(),
            group: field("group").and_then(|group| group.parse().ok()),
            bound: field("bound") == Some("yes"),
            driver: field("driver").unwrap_or("none").to_string(),
            reserved_regions: regions
                .split(';')
                .map(str::trim)
                .filter(|region| !region.is_empty())
                .map(str::to_string)
                .collect(),
        })
    }

    /// Whether its group reserves a region starting with `prefix` (for
    /// example `0x00000000fee00000 0x00000000feefffff msi`).
    pub fn reserves(&self, prefix: &str) -> bool {
        self.reserved_regions
            .iter()
            .any(|region| region.starts_with(prefix))
    }
}

/// The verdict line an L2 test guest prints:
/// `MINIVMM-L2-RESULT <name> PASS|FAIL <details>`.
#[derive(Debug, Clone, PartialEq)]
pub struct L2Result {
    /// The L2 scenario name.
    pub name: String,
    /// Whether it said PASS.
    pub passed: bool,
    /// The rest of the line.
    pub details: String,
    /// The guest's uptime in seconds, when the details carry `uptime=<s>`.
    pub uptime: Option<f64>,
}

impl L2Result {
    fn parse(rest: &str) -> Option<Self> {
        let mut words = rest.splitn(3, ' ');
        let name = words.next()?.to_string();
        let passed = match words.next()? {
            "PASS" => true,
            "FAIL" => false,
            _ => return None,
        };
        let details = words.next().unwrap_or("").trim().to_string();
        let uptime = details
            .split_whitespace()
            .find_map(|word| word.strip_prefix("uptime="))
            .and_then(|value| value.parse().ok());
        Some(Self {
            name,
            passed,
            details,
            uptime,
        })
    }
}

/// What one scenario did in a nested run.
#[derive(Debug, Clone, PartialEq)]
pub struct ScenarioOutcome {
    /// The scenario name.
    pub name: String,
    /// The scenario's exit status in L1 (minivmm's, for guest scenarios);
    /// `None` if it never ended.
    pub rc: Option<i32>,
    /// The L2 guest's verdict, if it printed one.
    pub l2: Option<L2Result>,
    /// Host wall time from the scenario start to the L2 verdict: the L2 boot
    /// time (plus the scenario's own checks, which are quick).
    pub l2_boot_time: Option<Duration>,
    /// Host wall time from the scenario start to its end.
    pub duration: Option<Duration>,
    /// The console lines printed between its start and end markers.
    pub console: Vec<String>,
}

impl ScenarioOutcome {
    fn started(name: &str) -> Self {
        Self {
            name: name.to_string(),
            rc: None,
            l2: None,
            l2_boot_time: None,
            duration: None,
            console: Vec::new(),
        }
    }
}

/// Incremental parser of the console; feed it every line with its host
/// timestamp (time since the start of the run).
#[derive(Debug, Default)]
pub(crate) struct Transcript {
    /// The kvm= value of the ready marker (`Some(true)` for kvm=yes).
    pub kvm: Option<bool>,
    /// When L1 printed its ready marker.
    pub l1_ready: Option<Duration>,
    /// When run.sh started QEMU (after waiting for the nested-host lock).
    pub l0_start: Option<Duration>,
    /// Whether L1 printed its done marker.
    pub done: bool,
    /// The passthrough devices L1 bound to vfio-pci, in its order.
    pub vfio: Vec<VfioDevice>,
    /// Scenarios in the order they started.
    pub scenarios: Vec<ScenarioOutcome>,
    /// Start time of the scenario that is running.
    current: Option<Duration>,
}

impl Transcript {
    /// Feeds one console line. Markers are searched anywhere in the line,
    /// because terminal escapes or interleaved output may precede them.
    pub fn feed(&mut self, at: Duration, line: &str) {
        if line.contains(L0_START) {
            self.l0_start.get_or_insert(at);
        } else if let Some(rest) = after(line, L1_READY) {
            self.kvm = Some(rest.split_whitespace().any(|word| word == "kvm=yes"));
            self.l1_ready = Some(at);
        } else if let Some(rest) = after(line, L1_VFIO) {
            self.vfio.extend(VfioDevice::parse(rest.trim()));
        } else if let Some(rest) = after(line, SCENARIO_START) {
            self.scenarios.push(ScenarioOutcome::started(rest.trim()));
            self.current = Some(at);
        } else if let Some(rest) = after(line, SCENARIO_END) {
            let rc = rest
                .split_whitespace()
                .find_map(|word| word.strip_prefix("rc="))
                .and_then(|value| value.parse().ok());
            if let (Some(started), Some(scenario)) =
                (self.current.take(), self.scenarios.last_mut())
            {
                scenario.rc = rc;
                scenario.duration = Some(at.saturating_sub(started));
            }
        } else if let Some(rest) = after(line, L2_RESULT) {
            if let (Some(started), Some(scenario)) = (self.current, self.scenarios.last_mut()) {
                scenario.l2 = L2Result::parse(rest.trim());
                scenario.l2_boot_time = Some(at.saturating_sub(started));
                scenario.console.push(line.to_string());
            }
        } else if line.contains(L1_DONE) {
            self.done = true;
        } else if self.current.is_some() {
            if let Some(scenario) = self.scenarios.last_mut() {
                scenario.console.push(line.to_string());
            }
        }
    }

    /// Host time from QEMU's start to L1's ready marker.
    pub fn l1_boot_time(&self) -> Option<Duration> {
        Some(
            self.l1_ready?
                .saturating_sub(self.l0_start.unwrap_or_default()),
        )
    }

    /// The outcome of the scenario `name`, if it started.
    pub fn scenario(&self, name: &str) -> Option<&ScenarioOutcome> {
        self.scenarios.iter().find(|scenario| scenario.name == name)
    }
}

fn after<'a>(line: &'a str, marker: &str) -> Option<&'a str> {
    line.find(marker).map(|at| &line[at + marker.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn parses_a_full_run() {
        let mut t = Transcript::default();
        t.feed(secs(1), "SeaBIOS (version 1.16.2)");
        t.feed(
            secs(4),
            "\u{1b}c\u{1b}[2JMINIVMM-L1-READY kvm=yes uptime=3.14",
        );
        t.feed(secs(5), "MINIVMM-SCENARIO-START boot-smp");
        t.feed(secs(6), "some guest output");
        t.feed(secs(20), "MINIVMM-L2-RESULT boot-smp PASS uptime=12.5");
        t.feed(secs(21), "MINIVMM-SCENARIO-END boot-smp rc=0");
        t.feed(secs(21), "MINIVMM-SCENARIO-START l1-smoke");
        t.feed(secs(22), "MINIVMM-SCENARIO-END l1-smoke rc=1");
        t.feed(secs(23), "MINIVMM-L1-DONE");

        assert_eq!(t.kvm, Some(true));
        assert_eq!(t.l1_ready, Some(secs(4)));
        assert!(t.done);
        let boot = t.scenario("boot-smp").expect("boot-smp started");
        assert_eq!(boot.rc, Some(0));
        assert_eq!(boot.l2_boot_time, Some(secs(15)));
        assert_eq!(boot.duration, Some(secs(16)));
        let l2 = boot.l2.as_ref().expect("an L2 result");
        assert!(l2.passed);
        assert_eq!(l2.uptime, Some(12.5));
        assert_eq!(boot.console.len(), 2);
        let smoke = t.scenario("l1-smoke").expect("l1-smoke started");
        assert_eq!(smoke.rc, Some(1));
        assert_eq!(smoke.l2, None);
    }

    #[test]
    fn parses_a_failure_and_missing_end() {
        let mut t = Transcript::default();
        t.feed(secs(3), "MINIVMM-L1-READY kvm=no");
        t.feed(secs(4), "MINIVMM-SCENARIO-START boot-smp");
        t.feed(
            secs(9),
            "MINIVMM-L2-RESULT boot-smp FAIL online=0(1)!=2 missing-acpi-APIC",
        );
        assert_eq!(t.kvm, Some(false));
        assert!(!t.done);
        let boot = t.scenario("boot-smp").expect("boot-smp started");
        assert_eq!(boot.rc, None);
        let l2 = boot.l2.as_ref().expect("an L2 result");
        assert!(!l2.passed);
        assert_eq!(l2.details, "online=0(1)!=2 missing-acpi-APIC");
        assert_eq!(l2.uptime, None);
    }

    #[test]
    fn parses_vfio_devices() {
        let mut t = Transcript::default();
        t.feed(
            secs(4),
            "MINIVMM-L1-VFIO bdf=0000:00:03.0 kind=virtio-blk group=2 bound=yes driver=vfio-pci \
             regions=0x00000000fee00000 0x00000000feefffff msi;0x000000fd00000000 0x000000ffffffffff reserved",
        );
        t.feed(
            secs(4),
            "MINIVMM-L1-VFIO bdf=0000:00:04.0 kind=e1000e group=none bound=no driver=none regions=",
        );
        t.feed(secs(5), "MINIVMM-L1-VFIO-PROBE bdf=0000:00:03.0 group=2");
        assert_eq!(t.vfio.len(), 2);
        let blk = &t.vfio[0];
        assert_eq!(blk.bdf, "0000:00:03.0");
        assert_eq!(blk.kind, "virtio-blk");
        assert_eq!(blk.group, Some(2));
        assert!(blk.bound);
        assert_eq!(blk.driver, "vfio-pci");
        assert_eq!(blk.reserved_regions.len(), 2);
        assert!(blk.reserves("0x00000000fee00000 0x00000000feefffff msi"));
        assert!(blk.reserves("0x000000fd00000000 0x000000ffffffffff"));
        let nic = &t.vfio[1];
        assert_eq!(nic.group, None);
        assert!(!nic.bound);
        assert!(nic.reserved_regions.is_empty());
    }

    #[test]
    fn rejects_malformed_results() {
        assert_eq!(L2Result::parse("boot-smp MAYBE"), None);
        assert_eq!(L2Result::parse(""), None);
    }
}
