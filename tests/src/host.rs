//! Booting the nested host with `resources/nested-host/run.sh` and
//! collecting its console.

use std::collections::VecDeque;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread;
use std::time::{Duration, Instant};

use crate::console::{ScenarioOutcome, Transcript};
use crate::images::{build_images, target_dir, workspace_root};
use crate::Error;

/// How many console lines an error shows.
const TAIL_LINES: usize = 60;

/// One boot of the nested host running a list of scenarios in sequence.
#[derive(Debug, Clone)]
pub struct NestedHost {
    name: String,
    scenarios: Vec<String>,
    timeout: Duration,
    scenario_timeout: Duration,
    smp: u32,
    memory: String,
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
        }
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
    /// done) is missing.
    pub fn run(&self) -> Result<Run, Error> {
        let images = build_images()?;
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
        // run.sh enforces the limit itself; this is the fallback.
        let deadline = start + self.timeout + Duration::from_secs(30);
        let mut timed_out = false;
        loop {
            match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok((at, line)) => {
                    eprintln!("[{:8.3}] {line}", at.as_secs_f64());
                    writeln!(log, "[{:8.3}] {line}", at.as_secs_f64()).map_err(log_error)?;
                    transcript.feed(at, &line);
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
        if !transcript.done {
            return Err(missing("MINIVMM-L1-DONE".to_string()));
        }
        Ok(Run {
            kvm: transcript.kvm == Some(true),
            l1_ready: transcript.l1_ready.unwrap_or_default(),
            elapsed,
            scenarios: transcript.scenarios,
            log: log_path,
        })
    }
}

/// The result of a nested run that reached `MINIVMM-L1-DONE`.
#[derive(Debug, Clone)]
pub struct Run {
    /// Whether L1 had `/dev/kvm` after loading kvm-amd.
    pub kvm: bool,
    /// Host time from starting QEMU to `MINIVMM-L1-READY`.
    pub l1_ready: Duration,
    /// Host time of the whole run.
    pub elapsed: Duration,
    /// The scenarios in the order they ran.
    pub scenarios: Vec<ScenarioOutcome>,
    /// The full console log.
    pub log: PathBuf,
}

impl Run {
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
