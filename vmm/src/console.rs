//! The host side of the serial console: stdin feeds the guest's UART, with
//! back-pressure when its receive FIFO is full, and a guard that keeps the
//! terminal in raw mode while the VM runs.

use std::io::{IsTerminal, Read};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex};

use event_manager::{EventOps, EventSet, Events, MutEventSubscriber};
use vmm_sys_util::eventfd::EventFd;
use vmm_sys_util::terminal::Terminal;

use crate::device_manager::Console;

/// Puts stdin in raw mode (if it is a terminal) until dropped.
pub struct RawTerminal {
    active: bool,
}

impl RawTerminal {
    /// Enters raw mode when stdin is a terminal; otherwise does nothing.
    pub fn enter() -> Self {
        let stdin = std::io::stdin().lock();
        let active = stdin.is_terminal() && stdin.set_raw_mode().is_ok();
        Self { active }
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        if self.active {
            if let Err(e) = std::io::stdin().lock().set_canon_mode() {
                log::warn!("cannot restore the terminal: {e}");
            }
        }
    }
}

/// Moves bytes from stdin into the UART.
pub struct ConsoleInput {
    console: Arc<Mutex<Console>>,
    drained: EventFd,
    pending: Vec<u8>,
    stdin_open: bool,
    stdin_watched: bool,
}

const STDIN: RawFd = 0;
const READ_CHUNK: usize = 64;

impl ConsoleInput {
    /// Feeds `console` from stdin.
    pub fn new(console: Arc<Mutex<Console>>) -> std::io::Result<Self> {
        let drained = console
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drained_eventfd()
            .try_clone()?;
        Ok(Self {
            console,
            drained,
            pending: Vec::new(),
            stdin_open: true,
            stdin_watched: false,
        })
    }

    /// Pushes pending bytes into the UART; true if all went in.
    fn flush_pending(&mut self) -> bool {
        let mut console = self.console.lock().unwrap_or_else(|p| p.into_inner());
        let taken = console.queue_input(&self.pending);
        self.pending.drain(..taken);
        self.pending.is_empty()
    }

    fn read_stdin(&mut self) {
        let mut buf = [0u8; READ_CHUNK];
        match std::io::stdin().lock().read(&mut buf) {
            Ok(0) => self.stdin_open = false,
            Ok(n) => self.pending.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                log::warn!("console input stopped: {e}");
                self.stdin_open = false;
            }
        }
    }

    /// Watches stdin exactly when it is open and nothing is pending.
    fn update_interest(&mut self, ops: &mut EventOps) {
        let want = self.stdin_open && self.pending.is_empty();
        if want != self.stdin_watched {
            let stdin = Events::new_raw(STDIN, EventSet::IN);
            let result = if want {
                ops.add(stdin)
            } else {
                ops.remove(stdin)
            };
            match result {
                Ok(()) => self.stdin_watched = want,
                Err(e) => {
                    // stdin that cannot be polled (a regular file, say) is
                    // treated as closed.
                    log::debug!("console input not pollable: {e:?}");
                    self.stdin_open = false;
                    self.stdin_watched = false;
                }
            }
        }
    }
}

impl MutEventSubscriber for ConsoleInput {
    fn process(&mut self, events: Events, ops: &mut EventOps) {
        if events.fd() == self.drained.as_raw_fd() {
            let _ = self.drained.read();
        } else if events.event_set().intersects(EventSet::IN) {
            self.read_stdin();
        } else {
            // Hang-up or error without data.
            self.stdin_open = false;
        }
        self.flush_pending();
        self.update_interest(ops);
    }

    fn init(&mut self, ops: &mut EventOps) {
        if let Err(e) = ops.add(Events::new(&self.drained, EventSet::IN)) {
            log::warn!("console input disabled: {e:?}");
            return;
        }
        self.update_interest(ops);
    }
}
