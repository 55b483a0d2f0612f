//! Adaptive polling of the request queue.
//!
//! The Linux driver kicks the request queue and then busy-waits for the
//! reply, so each request costs a guest exit. After a kick the device can
//! instead keep notifications off and have a poller thread watch the queue
//! for a short window: requests that follow within the window are taken
//! without any exit. When the window passes with nothing new, notifications
//! go back on (and the queue is checked once more, so nothing is missed).

use std::sync::{Condvar, Mutex};

/// Wakes the poller thread after a kick.
#[derive(Debug, Default)]
pub struct PollSignal {
    pending: Mutex<bool>,
    wake: Condvar,
}

impl PollSignal {
    /// A signal with nothing pending.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the poller to start a window.
    pub fn wake(&self) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        *pending = true;
        self.wake.notify_one();
    }

    /// Blocks until [`PollSignal::wake`] was called, then clears it.
    pub fn wait(&self) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        while !*pending {
            pending = self.wake.wait(pending).unwrap_or_else(|p| p.into_inner());
        }
        *pending = false;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn a_wake_before_the_wait_is_not_lost() {
        let s = Arc::new(PollSignal::new());
        s.wake();
        s.wait();
        let t = {
            let s = s.clone();
            std::thread::spawn(move || s.wait())
        };
        s.wake();
        t.join().expect("woken");
    }
}
