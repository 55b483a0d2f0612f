//! How a guest's end maps to minivmm's exit status and final message.

use devices::GuestEvent;

/// Exit status when the guest powered off or rebooted.
pub const EXIT_OK: i32 = 0;
/// Exit status when minivmm itself failed (bad input, host problem).
pub const EXIT_VMM_ERROR: i32 = 1;
/// Exit status when the guest crashed.
pub const EXIT_GUEST_CRASH: i32 = 3;

/// The exit status and the line to print for `event`.
pub fn outcome(event: &GuestEvent) -> (i32, String) {
    match event {
        GuestEvent::PowerOff => (EXIT_OK, "guest powered off".into()),
        GuestEvent::Reset => (EXIT_OK, "guest rebooted; minivmm exits on reboot".into()),
        GuestEvent::Panic => (EXIT_GUEST_CRASH, "guest kernel panicked (pvpanic)".into()),
        GuestEvent::TripleFault => (
            EXIT_GUEST_CRASH,
            "guest triple-faulted (KVM shutdown exit)".into(),
        ),
        GuestEvent::Crash(why) => (EXIT_GUEST_CRASH, format!("guest crashed: {why}")),
        GuestEvent::DeviceFailure(why) => (EXIT_VMM_ERROR, format!("stopped the VM: {why}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_stops_are_zero_and_crashes_are_not() {
        assert_eq!(outcome(&GuestEvent::PowerOff).0, 0);
        assert_eq!(outcome(&GuestEvent::Reset).0, 0);
        assert_eq!(outcome(&GuestEvent::Panic).0, EXIT_GUEST_CRASH);
        assert_eq!(outcome(&GuestEvent::TripleFault).0, EXIT_GUEST_CRASH);
        assert_eq!(outcome(&GuestEvent::Crash("x".into())).0, EXIT_GUEST_CRASH);
        assert_eq!(
            outcome(&GuestEvent::DeviceFailure("x".into())).0,
            EXIT_VMM_ERROR
        );
    }
}
