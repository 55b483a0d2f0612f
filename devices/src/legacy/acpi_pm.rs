//! ACPI hardware-reduced power management: the FADT's sleep control, sleep
//! status and reset registers, one byte each at consecutive ports.

use std::sync::Arc;

use crate::{BusDevice, GuestEvent, GuestEvents};

/// Offset of the sleep control register.
pub const SLEEP_CONTROL: u64 = 0;
/// Offset of the sleep status register.
pub const SLEEP_STATUS: u64 = 1;
/// Offset of the reset register.
pub const RESET: u64 = 2;
/// Value that, written to the reset register, resets the machine.
pub const RESET_VALUE: u8 = 1;
/// The SLP_TYP value the DSDT's `\_S5` package announces.
pub const S5_SLEEP_TYPE: u8 = 5;

const SLP_EN: u8 = 1 << 5;

/// Turns the guest's S5 and reset requests into [`GuestEvent`]s.
pub struct AcpiPowerManagement {
    events: Arc<GuestEvents>,
}

impl AcpiPowerManagement {
    /// A device reporting to `events`.
    pub fn new(events: Arc<GuestEvents>) -> Self {
        Self { events }
    }
}

impl BusDevice for AcpiPowerManagement {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        // No wake events ever pending; the reset register reads as zero.
        data.fill(0);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let [value] = data else { return };
        match offset {
            SLEEP_CONTROL if value & SLP_EN != 0 => {
                let sleep_type = (value >> 2) & 0x7;
                if sleep_type == S5_SLEEP_TYPE {
                    self.events.raise(GuestEvent::PowerOff);
                } else {
                    log::warn!("guest asked for unsupported sleep type {sleep_type}; ignored");
                }
            }
            RESET if *value == RESET_VALUE => self.events.raise(GuestEvent::Reset),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev() -> (AcpiPowerManagement, Arc<GuestEvents>) {
        let ev = Arc::new(GuestEvents::new().expect("events"));
        (AcpiPowerManagement::new(ev.clone()), ev)
    }

    #[test]
    fn s5_powers_off() {
        let (mut d, ev) = dev();
        d.write(SLEEP_CONTROL, &[(S5_SLEEP_TYPE << 2) | SLP_EN]);
        assert_eq!(ev.get(), Some(GuestEvent::PowerOff));
    }

    #[test]
    fn other_sleep_states_and_bad_writes_do_nothing() {
        let (mut d, ev) = dev();
        d.write(SLEEP_CONTROL, &[(3 << 2) | SLP_EN]);
        d.write(SLEEP_CONTROL, &[S5_SLEEP_TYPE << 2]);
        d.write(SLEEP_CONTROL, &[0x34, 0x00]);
        d.write(RESET, &[2]);
        assert_eq!(ev.get(), None);
    }

    #[test]
    fn reset_register_resets() {
        let (mut d, ev) = dev();
        d.write(RESET, &[RESET_VALUE]);
        assert_eq!(ev.get(), Some(GuestEvent::Reset));
    }
}
