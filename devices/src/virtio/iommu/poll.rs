//! Adaptive polling of the request queue.
//!
//! The Linux driver kicks the request queue and then busy-waits for the
//! reply, so each request costs a guest exit. After a kick the device can
//! instead keep notifications off and have a poller thread watch the queue
//! for a short window: requests that follow within the window are taken
//! without any exit. When the window passes with nothing new, notifications
//! go back on (and the queue is checked once more, so nothing is missed).
//!
//! The window adapts, in the spirit of KVM's halt polling ([`PollWindow`]):
//! it doubles (up to the configured maximum) after a window that found
//! requests, halves after one that found none and drops to zero below a
//! floor, so a guest that stops sending requests costs nothing. At zero a
//! kick opens no window; one kick in [`PROBE_EVERY`] opens a probe window
//! of a quarter of the maximum, which is how polling comes back when the
//! guest's requests start following each other again. An empty window is
//! also what a poller sharing a host CPU with the vCPU it waits for sees
//! (the vCPU cannot run while the poller spins), so that case decays to
//! plain kicks instead of costing a whole window per request.

use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// One kick in this many opens a probe window while the window is zero.
pub const PROBE_EVERY: u32 = 16;

/// The adaptive window length: pure policy, no clock of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollWindow {
    max: Duration,
    current: Duration,
    kicks_at_zero: u32,
}

impl PollWindow {
    /// A policy whose window never exceeds `max`, starting at `max`.
    pub fn new(max: Duration) -> Self {
        Self {
            max,
            current: max,
            kicks_at_zero: 0,
        }
    }

    /// The window below which polling stops altogether.
    fn floor(&self) -> Duration {
        self.max / 32
    }

    /// The window of a probe while polling is stopped.
    fn probe(&self) -> Duration {
        self.max / 4
    }

    /// The window now (zero: a kick opens none unless it probes).
    pub fn current(&self) -> Duration {
        self.current
    }

    /// A kick: the window to open after it, or `None` for no window.
    pub fn on_kick(&mut self) -> Option<Duration> {
        if self.max.is_zero() {
            return None;
        }
        if !self.current.is_zero() {
            return Some(self.current);
        }
        self.kicks_at_zero += 1;
        if self.kicks_at_zero < PROBE_EVERY {
            return None;
        }
        self.kicks_at_zero = 0;
        Some(self.probe())
    }

    /// A window of length `window` ended; `hits` passes in it found
    /// requests.
    pub fn on_window_end(&mut self, window: Duration, hits: u64) {
        if hits > 0 {
            self.current = window.max(self.floor()).saturating_mul(2).min(self.max);
        } else {
            // A probe (the window is zero) that finds nothing keeps it zero.
            let half = self.current.min(window) / 2;
            self.current = if half < self.floor() {
                Duration::ZERO
            } else {
                half
            };
        }
    }
}

#[derive(Debug)]
struct State {
    /// The window a woken poller is to open, if it was woken.
    pending: Option<Duration>,
    policy: PollWindow,
}

/// Wakes the poller thread after a kick and holds the window policy
/// between the device (which asks on each kick) and the poller (which
/// reports each window).
#[derive(Debug)]
pub struct PollSignal {
    state: Mutex<State>,
    wake: Condvar,
}

impl PollSignal {
    /// A signal with nothing pending whose window is at most `max`.
    pub fn new(max: Duration) -> Self {
        Self {
            state: Mutex::new(State {
                pending: None,
                policy: PollWindow::new(max),
            }),
            wake: Condvar::new(),
        }
    }

    /// A kick: whether a window opens after it. When it does, the caller
    /// keeps notifications off and then calls [`PollSignal::wake`].
    pub fn wants_window(&self) -> bool {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match s.policy.on_kick() {
            Some(window) => {
                s.pending = Some(window);
                true
            }
            None => {
                crate::perf::count(crate::perf::Counter::PollSkips);
                false
            }
        }
    }

    /// Asks the poller to open the window [`PollSignal::wants_window`]
    /// chose.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Blocks until a window was asked for; returns its length.
    pub fn wait(&self) -> Duration {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(window) = s.pending.take() {
                return window;
            }
            s = self.wake.wait(s).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// The poller's report: the window of length `window` ended with
    /// `hits` passes that found requests.
    pub fn window_ended(&self, window: Duration, hits: u64) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.policy.on_window_end(window, hits);
    }

    /// The window a kick would open now.
    pub fn current_window(&self) -> Duration {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.policy.current()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    const MAX: Duration = Duration::from_micros(1000);

    #[test]
    fn a_wake_before_the_wait_is_not_lost() {
        let s = Arc::new(PollSignal::new(MAX));
        assert!(s.wants_window());
        s.wake();
        assert_eq!(s.wait(), MAX);
        let t = {
            let s = s.clone();
            std::thread::spawn(move || s.wait())
        };
        assert!(s.wants_window());
        s.wake();
        assert_eq!(t.join().expect("woken"), MAX);
    }

    #[test]
    fn empty_windows_decay_to_zero_and_productive_ones_grow_back() {
        let mut p = PollWindow::new(MAX);
        let mut windows = 0;
        while let Some(w) = p.on_kick() {
            p.on_window_end(w, 0);
            windows += 1;
            assert!(windows < 10, "decays in a few windows");
        }
        assert_eq!(p.current(), Duration::ZERO);
        // 1000 -> 500 -> 250 -> 125 -> 62.5 -> 31.25 (the floor) -> 0.
        assert_eq!(windows, 6);
        // At zero: no window for PROBE_EVERY - 1 kicks (the one that ended
        // the loop was the first), then a probe.
        for _ in 2..PROBE_EVERY {
            assert_eq!(p.on_kick(), None);
        }
        let probe = p.on_kick().expect("a probe window");
        assert_eq!(probe, MAX / 4);
        // The probe finds requests: the window doubles back to the cap.
        p.on_window_end(probe, 3);
        assert_eq!(p.current(), MAX / 2);
        p.on_window_end(p.current(), 1);
        assert_eq!(p.current(), MAX);
        p.on_window_end(p.current(), 1);
        assert_eq!(p.current(), MAX, "capped");
    }

    #[test]
    fn an_empty_probe_keeps_polling_off() {
        let mut p = PollWindow::new(MAX);
        p.on_window_end(Duration::ZERO, 0);
        assert_eq!(p.current(), Duration::ZERO);
        for round in 0..3 {
            let probe = (0..PROBE_EVERY).find_map(|_| p.on_kick());
            let probe = probe.unwrap_or_else(|| panic!("round {round}: a probe"));
            p.on_window_end(probe, 0);
            assert_eq!(p.current(), Duration::ZERO, "round {round}");
        }
    }

    #[test]
    fn a_zero_maximum_never_polls() {
        let mut p = PollWindow::new(Duration::ZERO);
        for _ in 0..4 * PROBE_EVERY {
            assert_eq!(p.on_kick(), None);
        }
    }
}
