//! pvpanic: the guest kernel writes to this port when it panics, so the VMM
//! can stop with an error instead of watching a hung or rebooting guest.

use std::sync::Arc;

use crate::{BusDevice, GuestEvent, GuestEvents};

/// Event bit: the guest panicked.
pub const PVPANIC_PANICKED: u8 = 1 << 0;
/// Event bit: a crash kernel was loaded (reported only).
pub const PVPANIC_CRASH_LOADED: u8 = 1 << 1;

/// The pvpanic ISA port.
pub struct PvPanic {
    events: Arc<GuestEvents>,
}

impl PvPanic {
    /// A device reporting to `events`.
    pub fn new(events: Arc<GuestEvents>) -> Self {
        Self { events }
    }
}

impl BusDevice for PvPanic {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
        if let Some(first) = data.first_mut() {
            *first = PVPANIC_PANICKED;
        }
    }

    fn write(&mut self, _offset: u64, data: &[u8]) {
        match data {
            [v] if v & PVPANIC_PANICKED != 0 => self.events.raise(GuestEvent::Panic),
            [v] if v & PVPANIC_CRASH_LOADED != 0 => log::warn!("guest is loading a crash kernel"),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_bit_raises_panic() {
        let ev = Arc::new(GuestEvents::new().expect("events"));
        let mut d = PvPanic::new(ev.clone());
        let mut caps = [0u8];
        d.read(0, &mut caps);
        assert_eq!(caps[0], PVPANIC_PANICKED);
        d.write(0, &[PVPANIC_CRASH_LOADED]);
        assert_eq!(ev.get(), None);
        d.write(0, &[PVPANIC_PANICKED]);
        assert_eq!(ev.get(), Some(GuestEvent::Panic));
    }
}
