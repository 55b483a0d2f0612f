//! Booting the nested host with `resources/nested-host/run.sh` and
//! collecting its console.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread;
use std::time::{Duration, Instant};

use crate::console::{ScenarioOutcome, Transcript, VfioDevice};
use crate::environment::{EnvironmentFault, FaultScanner};
use crate::images::{build_images_for, target_dir, workspace_root, Arch, Images};
use crate::passthrough::{
    create_image, passthrough_bdf, tftp_file, HostIommu, Passthrough, PassthroughDevice, TftpFile,
};
use crate::Error;

/// How many console lines an error shows.
const TAIL_LINES: usize = 60;

/// How many times a run spoiled by the environment is tried, the first
/// try and up to 3 retries (see [`NestedHost::run`]). Under QEMU 7.2 a
/// 4-vCPU L1 was spoiled in up to 2 tries in a row (docs/testing.md).
pub const ENVIRONMENT_ATTEMPTS: u32 = 4;

/// One boot of the nested host running a list of scenarios in sequence.
#[derive(Debug, Clone)]
pub struct NestedHost {
    name: String,
    scenarios: Vec<String>,
    timeout: Duration,
    scenario_timeout: Duration,
    smp: u32,
    memory: String,
    host_iommu: HostIommu,
    passthrough: Vec<Passthrough>,
    append: Vec<String>,
    images: Option<Images>,
    l0: Option<String>,
    attempts: u32,
    arch: Arch,
}

impl NestedHost {
    /// A nested run called `name`; its log goes to `target/nested/<name>.log`.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            scenarios: Vec::new(),
            timeout: Duration::from_secs(600),
            scenario_timeout: Duration::from_secs(120),
            smp: 4,
            memory: "3G".to_string(),
            host_iommu: HostIommu::None,
            passthrough: Vec::new(),
            append: Vec::new(),
            images: None,
            l0: None,
            attempts: ENVIRONMENT_ATTEMPTS,
            arch: Arch::X86_64,
        }
    }

    /// The architecture of the nested host (default x86_64): with
    /// [`Arch::Aarch64`] L1 is the Debian arm64 kernel under
    /// qemu-system-aarch64 with an SMMUv3 (`run.sh --arch aarch64`), and
    /// minivmm and L2 are arm64's.
    pub fn arch(mut self, arch: Arch) -> Self {
        self.arch = arch;
        self
    }

    /// The L0 that runs L1 (`run.sh --l0`: `qemu7.2`, `qemu7.2-single`,
    /// `qemu10`, `qemu10-single`); default: `MINIVMM_L0` or the project's
    /// default (see `docs/testing.md`).
    pub fn l0(mut self, name: &str) -> Self {
        self.l0 = Some(name.to_string());
        self
    }

    /// How many times a run spoiled by the environment is tried (default
    /// [`ENVIRONMENT_ATTEMPTS`]; at least 1).
    pub fn attempts(mut self, attempts: u32) -> Self {
        self.attempts = attempts.max(1);
        self
    }

    /// Boots these images instead of the default ones of [`build_images`]
    /// (for example a variant from [`crate::build_image_variant`]).
    pub fn images(mut self, images: Images) -> Self {
        self.images = Some(images);
        self
    }

    /// Adds words to L1's kernel command line (scenario parameters such as
    /// `minivmm.vfio_iommu=on`).
    pub fn append(mut self, words: &str) -> Self {
        self.append.push(words.to_string());
        self
    }

    /// The emulated IOMMU L1 gets (default [`HostIommu::None`]).
    pub fn host_iommu(mut self, iommu: HostIommu) -> Self {
        self.host_iommu = iommu;
        self
    }

    /// Adds a device to L1 for minivmm to pass through (repeatable). L1
    /// binds it to vfio-pci before the scenarios run; the devices sit at
    /// 0000:00:03.0, 0000:00:04.0, ... in the order they were added (see
    /// [`NestedHost::passthrough_bdfs`]), and scenarios find them with
    /// `vfio_bdf KIND` from `scenarios/vfio.inc`.
    pub fn passthrough(mut self, device: Passthrough) -> Self {
        self.passthrough.push(device);
        self
    }

    /// The BDFs the passthrough devices get in L1, in the order added.
    pub fn passthrough_bdfs(&self) -> Vec<String> {
        (0..self.passthrough.len()).map(passthrough_bdf).collect()
    }

    /// Creates the files the passthrough devices need (fresh images, the
    /// TFTP file) and returns the devices, the TFTP file (with an e1000e)
    /// and the run.sh arguments for them.
    fn prepare_passthrough(&self) -> Result<Prepared, Error> {
        let mut devices = Vec::new();
        let mut tftp = None;
        let mut args = vec!["--iommu".to_string(), self.host_iommu.as_arg().to_string()];
        let dir = target_dir().join("nested").join(&self.name);
        let mut blk = 0;
        for (index, &device) in self.passthrough.iter().enumerate() {
            let mut image = None;
            let spec = match device {
                Passthrough::VirtioBlk { image_mib } => {
                    let path = dir.join(format!("passthrough-blk{blk}.img"));
                    blk += 1;
                    create_image(&path, image_mib)?;
                    let spec = format!("virtio-blk:{}", path.display());
                    image = Some(path);
                    spec
                }
                Passthrough::E1000e => {
                    let file = match &tftp {
                        Some(file) => file,
                        None => tftp.insert(tftp_file()?),
                    };
                    format!("e1000e:{}", file.dir.display())
                }
                Passthrough::Edu => "edu".to_string(),
            };
            args.extend(["--passthrough".to_string(), spec]);
            devices.push(PassthroughDevice {
                device,
                bdf: passthrough_bdf(index),
                image,
            });
        }
        if let Some(file) = &tftp {
            args.extend([
                "--append".to_string(),
                format!(
                    "minivmm.tftp_file={} minivmm.tftp_sha256={}",
                    file.name, file.sha256
                ),
            ]);
        }
        for words in &self.append {
            args.extend(["--append".to_string(), words.clone()]);
        }
        Ok(Prepared {
            devices,
            tftp,
            args,
        })
    }

    /// Adds one scenario (a file in `resources/nested-host/scenarios/`).
    pub fn scenario(mut self, name: &str) -> Self {
        self.scenarios.push(name.to_string());
        self
    }

    /// Adds several scenarios, run in order in the same L1 boot.
    pub fn scenarios<'a>(mut self, names: impl IntoIterator<Item = &'a str>) -> Self {
        self.scenarios.extend(names.into_iter().map(str::to_string));
        self
    }

    /// The limit for the whole run (default 900 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The limit for each scenario inside L1 (default 300 s).
    pub fn scenario_timeout(mut self, timeout: Duration) -> Self {
        self.scenario_timeout = timeout;
        self
    }

    /// L1's vCPU count (default 4: L2's 2 vCPUs + 2).
    pub fn smp(mut self, smp: u32) -> Self {
        self.smp = smp;
        self
    }

    /// L1's memory, in QEMU syntax (default 3G).
    pub fn memory(mut self, memory: &str) -> Self {
        self.memory = memory.to_string();
        self
    }

    /// Builds the images (once per process), boots L1, streams its console to
    /// stderr and `target/nested/<name>.log` with a host timestamp per line,
    /// and returns the per-scenario outcomes. Fails with the console tail
    /// when L1 times out or a marker (ready, a scenario's start or end,
    /// done, one `MINIVMM-L1-VFIO` per passthrough device) is missing.
    ///
    /// A run whose console shows a crash that L0 caused (see
    /// [`crate::environment`]: a kernel, L1 or L2, killed by a stale
    /// translation of text it had patched; or L0's QEMU dying of a signal)
    /// is tried again, up to [`NestedHost::attempts`] times in all, and
    /// each retry is printed with the signature that caused it; the result
    /// is an [`Error::Environment`] only if every attempt hit one. Any other
    /// failure is returned at once and never retried.
    pub fn run(&self) -> Result<Run, Error> {
        let mut spoiled = Vec::new();
        for attempt in 1..=self.attempts {
            let (result, faults) = self.attempt();
            match faults.first() {
                None => {
                    return result.map(|mut run| {
                        run.attempts = attempt;
                        run.spoiled = spoiled;
                        run
                    })
                }
                Some(fault) => {
                    eprintln!(
                        "nested host {}: attempt {attempt}/{} spoiled by the environment, not minivmm: {fault}{}",
                        self.name,
                        self.attempts,
                        if attempt < self.attempts { "; booting it again" } else { "" }
                    );
                    spoiled.push(fault.clone());
                }
            }
        }
        Err(Error::Environment {
            attempts: self.attempts,
            faults: spoiled
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
            log: target_dir()
                .join("nested")
                .join(format!("{}.log", self.name)),
        })
    }

    /// One boot of the nested host, not retried, with every environmental
    /// fault its console showed (for the L0 census).
    pub fn attempt(&self) -> (Result<Run, Error>, FaultScanner) {
        let mut faults = FaultScanner::default();
        let result = self.run_once(&mut faults);
        (result, faults)
    }

    fn run_once(&self, faults: &mut FaultScanner) -> Result<Run, Error> {
        let images = match &self.images {
            Some(images) => images.clone(),
            None => build_images_for(self.arch)?,
        };
        let Prepared {
            devices: passthrough,
            tftp,
            args: passthrough_args,
        } = self.prepare_passthrough()?;
        let log_dir = target_dir().join("nested");
        let log_path = log_dir.join(format!("{}.log", self.name));
        let log_error = |source| Error::Log {
            path: log_path.clone(),
            source,
        };
        fs::create_dir_all(&log_dir).map_err(log_error)?;
        let mut log = File::create(&log_path).map_err(log_error)?;

        let mut command = Command::new("bash");
        command
            .arg(workspace_root().join("resources/nested-host/run.sh"))
            .arg("--images")
            .arg(&images.dir)
            .args(["--mode", "test", "--scenarios", &self.scenarios.join(",")])
            .args(["--timeout", &self.timeout.as_secs().to_string()])
            .args([
                "--scenario-timeout",
                &self.scenario_timeout.as_secs().to_string(),
            ])
            .args(["--smp", &self.smp.to_string(), "--memory", &self.memory])
            .args(["--l0", self.l0.as_deref().unwrap_or("default")])
            .args(["--arch", self.arch.as_arg()])
            .args(&passthrough_args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let description = format!("{command:?}");
        let start = Instant::now();
        let mut child = command.spawn().map_err(|source| Error::Spawn {
            command: description,
            source,
        })?;
        let lines = stream_lines(&mut child, start);

        let mut transcript = Transcript::default();
        let mut tail = VecDeque::with_capacity(TAIL_LINES);
        // run.sh enforces the limit itself, from the moment it holds the
        // machine's nested-host lock; this is the fallback, restarted when
        // run.sh says it boots (time spent waiting for another nested host
        // does not count: that one has its own limit).
        let fallback = self.timeout + Duration::from_secs(30);
        let mut deadline = start + fallback;
        let mut timed_out = false;
        loop {
            match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok((at, line)) => {
                    if line.starts_with(BOOTING) {
                        deadline = Instant::now() + fallback;
                    }
                    eprintln!("[{:8.3}] {line}", at.as_secs_f64());
                    writeln!(log, "[{:8.3}] {line}", at.as_secs_f64()).map_err(log_error)?;
                    transcript.feed(at, &line);
                    faults.feed(&line);
                    if tail.len() == TAIL_LINES {
                        tail.pop_front();
                    }
                    tail.push_back(line);
                }
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    timed_out = true;
                    kill_group(&child);
                    break;
                }
            }
        }
        let status = child.wait().ok();
        let elapsed = start.elapsed();
        // `timeout -s KILL` in run.sh kills QEMU and then itself.
        timed_out |=
            status.is_some_and(|s| s.signal() == Some(9) || matches!(s.code(), Some(124 | 137)));
        // QEMU dying of signal N shows as `timeout` exiting with 128 + N,
        // or as `timeout` dying of N itself (it re-raises the signal when
        // it can turn its own core dumps off).
        if let Some(signal) = status.and_then(l0_crash_signal) {
            faults.faults.push(EnvironmentFault {
                kernel: crate::environment::Kernel::L1,
                signature: format!("L0's QEMU died of {signal}"),
            });
        }
        let tail = Vec::from(tail).join("\n");
        if timed_out {
            return Err(Error::Timeout {
                limit: self.timeout,
                log: log_path,
                tail,
            });
        }
        let missing = |marker: String| Error::MissingMarker {
            marker,
            log: log_path.clone(),
            tail: tail.clone(),
        };
        if transcript.l1_ready.is_none() {
            return Err(missing("MINIVMM-L1-READY".to_string()));
        }
        for name in &self.scenarios {
            let outcome = transcript
                .scenario(name)
                .ok_or_else(|| missing(format!("MINIVMM-SCENARIO-START {name}")))?;
            if outcome.rc.is_none() {
                return Err(missing(format!("MINIVMM-SCENARIO-END {name}")));
            }
        }
        for device in &passthrough {
            if !transcript.vfio.iter().any(|vfio| vfio.bdf == device.bdf) {
                return Err(missing(format!("MINIVMM-L1-VFIO bdf={}", device.bdf)));
            }
        }
        if !transcript.done {
            return Err(missing("MINIVMM-L1-DONE".to_string()));
        }
        Ok(Run {
            kvm: transcript.kvm == Some(true),
            l1_ready: transcript.l1_boot_time().unwrap_or_default(),
            elapsed,
            scenarios: transcript.scenarios,
            host_iommu: self.host_iommu,
            passthrough,
            vfio: transcript.vfio,
            tftp,
            log: log_path,
            attempts: 1,
            spoiled: Vec::new(),
        })
    }
}

/// How run.sh's line starts once it holds the nested-host lock and boots.
const BOOTING: &str = "==> booting the nested host";

/// The signal name for a `timeout` exit status that says QEMU crashed.
fn l0_crash_signal(status: std::process::ExitStatus) -> Option<&'static str> {
    let signal = status.code().map(|c| c - 128).or(status.signal())?;
    match signal {
        libc_signal::SIGABRT => Some("SIGABRT"),
        libc_signal::SIGBUS => Some("SIGBUS"),
        libc_signal::SIGSEGV => Some("SIGSEGV"),
        libc_signal::SIGILL => Some("SIGILL"),
        _ => None,
    }
}

/// The Linux signal numbers of a crashing process.
mod libc_signal {
    pub const SIGILL: i32 = 4;
    pub const SIGABRT: i32 = 6;
    pub const SIGBUS: i32 = 7;
    pub const SIGSEGV: i32 = 11;
}

/// What a run's passthrough devices need, made before L1 boots.
struct Prepared {
    /// The devices with their BDFs and images.
    devices: Vec<PassthroughDevice>,
    /// The TFTP file, when there is an e1000e.
    tftp: Option<TftpFile>,
    /// The run.sh arguments for the host IOMMU and the devices.
    args: Vec<String>,
}

/// The result of a nested run that reached `MINIVMM-L1-DONE`.
#[derive(Debug, Clone)]
pub struct Run {
    /// Whether L1 had `/dev/kvm` after loading kvm-amd.
    pub kvm: bool,
    /// Host time from starting QEMU to `MINIVMM-L1-READY`.
    pub l1_ready: Duration,
    /// Which attempt this was (1 unless earlier ones were spoiled).
    pub attempts: u32,
    /// What spoiled the earlier attempts.
    pub spoiled: Vec<EnvironmentFault>,
    /// Host time of the whole run.
    pub elapsed: Duration,
    /// The scenarios in the order they ran.
    pub scenarios: Vec<ScenarioOutcome>,
    /// The emulated IOMMU L1 had.
    pub host_iommu: HostIommu,
    /// The passthrough devices L1 had, in the order added.
    pub passthrough: Vec<PassthroughDevice>,
    /// How L1 left each passthrough device (its `MINIVMM-L1-VFIO` lines).
    pub vfio: Vec<VfioDevice>,
    /// The file the e1000e's TFTP server served, if there was an e1000e.
    pub tftp: Option<TftpFile>,
    /// The full console log.
    pub log: PathBuf,
}

/// The `key=value` words of a marker line's rest.
fn key_values(rest: &str) -> BTreeMap<String, String> {
    rest.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

impl Run {
    /// How L1 left the passthrough device at `bdf`, if it reported it.
    pub fn vfio_device(&self, bdf: &str) -> Option<&VfioDevice> {
        self.vfio.iter().find(|device| device.bdf == bdf)
    }

    /// The `key=value` fields of scenario `name`'s first console line that
    /// contains `marker` (after the marker), e.g.
    /// `fields("pt-disk-strict", "MINIVMM-PTDISK ")`.
    pub fn fields(&self, name: &str, marker: &str) -> Result<BTreeMap<String, String>, Error> {
        let outcome = self
            .scenario(name)
            .ok_or_else(|| self.failed(name, "it did not run", &[]))?;
        let rest = outcome
            .console
            .iter()
            .find_map(|line| line.split_once(marker).map(|(_, rest)| rest))
            .ok_or_else(|| self.failed(name, &format!("no {marker}line"), &outcome.console))?;
        Ok(key_values(rest))
    }

    /// The `key=value` fields of every console line of scenario `name` that
    /// contains `marker`, in order (none if the scenario did not run).
    pub fn markers(&self, name: &str, marker: &str) -> Vec<BTreeMap<String, String>> {
        self.scenario(name)
            .map(|o| o.console.as_slice())
            .unwrap_or_default()
            .iter()
            .filter_map(|line| line.split_once(marker).map(|(_, rest)| key_values(rest)))
            .collect()
    }

    /// The outcome of scenario `name`, if it ran.
    pub fn scenario(&self, name: &str) -> Option<&ScenarioOutcome> {
        self.scenarios.iter().find(|scenario| scenario.name == name)
    }

    /// The scenario `name`, which must have ended with rc 0.
    pub fn expect_rc0(&self, name: &str) -> Result<&ScenarioOutcome, Error> {
        self.expect_rc(name, 0)
    }

    /// The scenario `name`, which must have ended with exit status `rc`.
    pub fn expect_rc(&self, name: &str, rc: i32) -> Result<&ScenarioOutcome, Error> {
        let outcome = self
            .scenario(name)
            .ok_or_else(|| self.failed(name, "it did not run", &[]))?;
        match outcome.rc {
            Some(got) if got == rc => Ok(outcome),
            got => Err(self.failed(
                name,
                &format!("rc={got:?}, expected {rc}"),
                &outcome.console,
            )),
        }
    }

    /// Checks that scenario `name` printed a console line containing `needle`.
    pub fn expect_console(&self, name: &str, needle: &str) -> Result<(), Error> {
        let outcome = self
            .scenario(name)
            .ok_or_else(|| self.failed(name, "it did not run", &[]))?;
        if outcome.console.iter().any(|line| line.contains(needle)) {
            Ok(())
        } else {
            Err(self.failed(
                name,
                &format!("no console line contains '{needle}'"),
                &outcome.console,
            ))
        }
    }

    /// The scenario `name`, which must have ended with rc 0 after its L2
    /// guest printed a PASS verdict.
    pub fn expect_l2_pass(&self, name: &str) -> Result<&ScenarioOutcome, Error> {
        let outcome = self.expect_rc0(name)?;
        match &outcome.l2 {
            Some(result) if result.passed => Ok(outcome),
            Some(result) => Err(self.failed(
                name,
                &format!("the guest said FAIL {}", result.details),
                &outcome.console,
            )),
            None => Err(self.failed(name, "no MINIVMM-L2-RESULT line", &outcome.console)),
        }
    }

    fn failed(&self, name: &str, reason: &str, console: &[String]) -> Error {
        let skip = console.len().saturating_sub(TAIL_LINES);
        let mut reason = reason.to_string();
        if !self.kvm {
            reason.push_str(" (L1 has no /dev/kvm: kvm-amd did not load)");
        }
        let console = if console.is_empty() {
            "(the scenario printed nothing)".to_string()
        } else {
            console[skip..].join("\n")
        };
        Error::ScenarioFailed {
            name: name.to_string(),
            reason,
            log: self.log.clone(),
            console,
        }
    }
}

/// Reads the child's stdout and stderr line by line on two threads; each
/// line arrives with the time since `start`. The channel closes when both
/// reach end of file.
fn stream_lines(child: &mut Child, start: Instant) -> Receiver<(Duration, String)> {
    let (sender, receiver) = mpsc::channel();
    if let Some(stdout) = child.stdout.take() {
        forward(stdout, sender.clone(), start);
    }
    if let Some(stderr) = child.stderr.take() {
        forward(stderr, sender, start);
    }
    receiver
}

fn forward(source: impl Read + Send + 'static, sender: Sender<(Duration, String)>, start: Instant) {
    thread::spawn(move || {
        let mut reader = BufReader::new(source);
        let mut buffer = Vec::new();
        loop {
            buffer.clear();
            match reader.read_until(b'\n', &mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buffer);
                    let line = line.trim_end_matches(['\n', '\r']).to_string();
                    if sender.send((start.elapsed(), line)).is_err() {
                        break;
                    }
                }
            }
        }
    });
}

/// Kills the child's process group (run.sh execs `timeout`, which leads
/// its own group with QEMU in it).
fn kill_group(child: &Child) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{}", child.id())])
        .status();
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;
    use std::process::ExitStatus;

    use super::l0_crash_signal;

    #[test]
    fn a_qemu_crash_is_seen_as_an_exit_code_or_as_the_signal_itself() {
        // `timeout` exiting 134 (128 + SIGABRT).
        assert_eq!(
            l0_crash_signal(ExitStatus::from_raw(134 << 8)),
            Some("SIGABRT")
        );
        // `timeout` re-raising SIGABRT (a QEMU assertion failure).
        assert_eq!(l0_crash_signal(ExitStatus::from_raw(6)), Some("SIGABRT"));
        assert_eq!(l0_crash_signal(ExitStatus::from_raw(11)), Some("SIGSEGV"));
        assert_eq!(l0_crash_signal(ExitStatus::from_raw(0)), None);
        assert_eq!(l0_crash_signal(ExitStatus::from_raw(1 << 8)), None);
        assert_eq!(
            l0_crash_signal(ExitStatus::from_raw(9)),
            None,
            "the time limit"
        );
    }
}
