//! Errors of the nested test host fixture.

use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

/// Why building the images or a nested run failed. The variants about the
/// console carry its last lines, so a failed test shows what happened.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The `minivmm` binary to test does not exist.
    #[error(
        "minivmm binary not found at {0} (build it with `cargo build --release -p vmm` or set MINIVMM_BIN)"
    )]
    MissingBinary(PathBuf),
    /// A helper command could not be started.
    #[error("could not run `{command}`")]
    Spawn {
        /// The command line.
        command: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A helper command (for example the image build) failed.
    #[error("`{command}` failed with {status}")]
    CommandFailed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: ExitStatus,
    },
    /// A file of the run (an image, the TFTP file) could not be written.
    #[error("could not write {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The console log could not be written.
    #[error("could not write the console log {path}")]
    Log {
        /// The log file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The nested host ran past its time limit.
    #[error(
        "the nested host did not finish within {limit:?} (log: {log}); last console lines:\n{tail}"
    )]
    Timeout {
        /// The time limit.
        limit: Duration,
        /// The full console log.
        log: PathBuf,
        /// The last console lines.
        tail: String,
    },
    /// An expected console marker never appeared.
    #[error("marker `{marker}` missing from the nested host console (log: {log}); last console lines:\n{tail}")]
    MissingMarker {
        /// The marker that was expected.
        marker: String,
        /// The full console log.
        log: PathBuf,
        /// The last console lines.
        tail: String,
    },
    /// A scenario ran but did not give the expected result.
    #[error("scenario {name} failed: {reason} (log: {log}); its console:\n{console}")]
    ScenarioFailed {
        /// The scenario.
        name: String,
        /// What was wrong.
        reason: String,
        /// The full console log.
        log: PathBuf,
        /// The scenario's console lines (the last ones if it is long).
        console: String,
    },
    /// Every attempt of a run was spoiled by a crash that L0 caused.
    #[error("every one of {attempts} attempts was spoiled by the test environment (log of the last: {log}):\n{faults}")]
    Environment {
        /// How many attempts were made.
        attempts: u32,
        /// What spoiled each, one per line.
        faults: String,
        /// The console log of the last attempt.
        log: PathBuf,
    },
    /// A program on a terminal did not print what was expected.
    #[error(
        "the terminal never showed `{expected}` ({why} after {after:?}); its last output:\n{tail}"
    )]
    Terminal {
        /// What was expected.
        expected: String,
        /// Why waiting ended.
        why: String,
        /// When, since the program started.
        after: Duration,
        /// The end of what it printed.
        tail: String,
    },
}
