//! The minimum of an i8042 keyboard controller: an empty status register and
//! the "pulse reset line" command, which Linux uses for `reboot=k`.

use std::sync::Arc;

use crate::{BusDevice, GuestEvent, GuestEvents};

/// Offset of the command/status port from the data port (0x64 - 0x60).
pub const COMMAND_OFFSET: u64 = 4;
/// Command: pulse the CPU reset line.
pub const CMD_RESET_CPU: u8 = 0xfe;

/// Keyboard controller covering ports 0x60-0x64.
pub struct I8042 {
    events: Arc<GuestEvents>,
}

impl I8042 {
    /// A controller reporting resets to `events`.
    pub fn new(events: Arc<GuestEvents>) -> Self {
        Self { events }
    }
}

impl BusDevice for I8042 {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        // Status 0: output buffer empty, input buffer empty; data port 0.
        data.fill(0);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset == COMMAND_OFFSET && data == [CMD_RESET_CPU] {
            self.events.raise(GuestEvent::Reset);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_command_resets() {
        let ev = Arc::new(GuestEvents::new().expect("events"));
        let mut d = I8042::new(ev.clone());
        d.write(0, &[CMD_RESET_CPU]);
        d.write(COMMAND_OFFSET, &[0xd1]);
        assert_eq!(ev.get(), None);
        d.write(COMMAND_OFFSET, &[CMD_RESET_CPU]);
        assert_eq!(ev.get(), Some(GuestEvent::Reset));
    }
}
