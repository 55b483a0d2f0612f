//! Rate limiting of log lines a guest can cause.
//!
//! A hostile guest can make a device log on every request; unlimited, that
//! is an unbounded write to the host's stderr. Each call site of
//! [`guest_log!`](crate::guest_log) gets its own [`RateLimit`]: at most
//! [`BURST`] lines per [`WINDOW`], and the first line of the next window
//! that is let through says how many were suppressed in between.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Lines let through per call site and window.
pub const BURST: u64 = 5;
/// The length of a window.
pub const WINDOW: Duration = Duration::from_secs(10);

/// The limit of one call site. Lock-free: a vCPU thread never waits on it.
#[derive(Debug)]
pub struct RateLimit {
    /// The window's number (time since the first use / [`WINDOW`]) + 1;
    /// 0 before the first line.
    window: AtomicU64,
    /// Lines seen in the current window.
    seen: AtomicU64,
    /// Lines suppressed since the last line let through.
    suppressed: AtomicU64,
}

impl RateLimit {
    /// A limit that has let nothing through yet.
    pub const fn new() -> Self {
        Self {
            window: AtomicU64::new(0),
            seen: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// Whether a line may be logged now: `Some(n)` with the number of lines
    /// suppressed since the last one let through, or `None` to drop it.
    pub fn allow(&self) -> Option<u64> {
        self.allow_at(epoch().elapsed())
    }

    /// [`RateLimit::allow`] at a given time since the process's epoch.
    pub fn allow_at(&self, now: Duration) -> Option<u64> {
        let window = now.as_millis() as u64 / WINDOW.as_millis() as u64 + 1;
        let current = self.window.load(Ordering::Relaxed);
        if current != window
            && self
                .window
                .compare_exchange(current, window, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.seen.store(0, Ordering::Relaxed);
        }
        if self.seen.fetch_add(1, Ordering::Relaxed) < BURST {
            Some(self.suppressed.swap(0, Ordering::Relaxed))
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

impl Default for RateLimit {
    fn default() -> Self {
        Self::new()
    }
}

/// The time windows count from.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Logs a line a guest caused, at most [`BURST`](crate::ratelimit::BURST)
/// times per [`WINDOW`](crate::ratelimit::WINDOW) for this call site:
/// `guest_log!(log::Level::Warn, "virtio-iommu: bad request: {e}")`.
#[macro_export]
macro_rules! guest_log {
    ($level:expr, $($arg:tt)+) => {{
        static LIMIT: $crate::ratelimit::RateLimit = $crate::ratelimit::RateLimit::new();
        match LIMIT.allow() {
            Some(0) => log::log!($level, $($arg)+),
            Some(suppressed) => log::log!(
                $level,
                "{} ({suppressed} similar lines suppressed)",
                format_args!($($arg)+)
            ),
            None => {}
        }
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_lines_are_counted_until_the_next_window() {
        let limit = RateLimit::new();
        let t0 = Duration::from_secs(1);
        for _ in 0..BURST {
            assert_eq!(limit.allow_at(t0), Some(0));
        }
        for _ in 0..1000 {
            assert_eq!(limit.allow_at(t0), None);
        }
        assert_eq!(limit.allow_at(t0 + WINDOW), Some(1000));
        assert_eq!(limit.allow_at(t0 + WINDOW), Some(0));
    }

    #[test]
    fn the_macro_compiles_with_arguments() {
        let e = "x";
        for _ in 0..10 {
            crate::guest_log!(log::Level::Warn, "test line {e}");
        }
    }
}
