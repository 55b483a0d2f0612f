//! Start-up timing: the time from the process start (the first line of
//! `main`) to the first `KVM_RUN` of any vCPU, reported once at info level
//! (`MINIVMM_LOG=info`) as
//! `minivmm: info: startup: first KVM_RUN 12345 us after exec`
//! (the nested benchmark suite, `benches/nested/`, reads that line).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// When the process started, as `main` saw it.
static STARTED: OnceLock<Instant> = OnceLock::new();
/// Whether the first `KVM_RUN` has been reported.
static REPORTED: AtomicBool = AtomicBool::new(false);

/// Records the process start; the first call wins (call it first in `main`).
pub fn mark_exec() {
    let _ = STARTED.get_or_init(Instant::now);
}

/// The time since [`mark_exec`], if it was called.
pub fn since_exec() -> Option<Duration> {
    STARTED.get().map(Instant::elapsed)
}

/// Called by every vCPU thread right before its first `KVM_RUN`: the first
/// caller logs the time since [`mark_exec`]; later calls do nothing.
pub fn first_kvm_run() {
    if REPORTED.swap(true, Ordering::Relaxed) {
        return;
    }
    if let Some(elapsed) = since_exec() {
        log::info!(
            "startup: first KVM_RUN {} us after exec",
            elapsed.as_micros()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_time_since_exec_grows_and_is_reported_once() {
        mark_exec();
        let first = since_exec().expect("marked");
        std::thread::sleep(Duration::from_millis(2));
        let later = since_exec().expect("marked");
        assert!(later > first);
        first_kvm_run();
        assert!(REPORTED.load(Ordering::Relaxed));
        // A second call must not report again (and must not panic).
        first_kvm_run();
        assert!(REPORTED.load(Ordering::Relaxed));
    }
}
