//! Power events the guest raises (power off, reset, panic) and how the VMM
//! learns of them: the first event is kept and an eventfd is signalled.

use std::sync::Mutex;

use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

/// Why the guest wants the VM to stop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GuestEvent {
    /// ACPI S5 (`poweroff`).
    PowerOff,
    /// ACPI reset register or keyboard-controller reset (`reboot`).
    Reset,
    /// The guest kernel panicked (pvpanic).
    Panic,
    /// The vCPU triple-faulted.
    TripleFault,
    /// KVM could not run the vCPU; the text says why.
    Crash(String),
    /// A device can no longer keep its promises to the guest (e.g. DMA
    /// mappings the host refuses to revoke): minivmm stops the VM.
    DeviceFailure(String),
}

/// Collects the first guest event and wakes whoever waits on [`Self::eventfd`].
pub struct GuestEvents {
    first: Mutex<Option<GuestEvent>>,
    eventfd: EventFd,
}

impl GuestEvents {
    /// A fresh sink with no event.
    pub fn new() -> std::io::Result<Self> {
        Ok(Self {
            first: Mutex::new(None),
            eventfd: EventFd::new(EFD_NONBLOCK)?,
        })
    }

    /// Records `event` unless one is already recorded, and signals.
    pub fn raise(&self, event: GuestEvent) {
        let mut first = self.first.lock().unwrap_or_else(|p| p.into_inner());
        if first.is_none() {
            *first = Some(event);
        }
        drop(first);
        if let Err(e) = self.eventfd.write(1) {
            log::error!("cannot signal a guest event: {e}");
        }
    }

    /// The first event raised, if any.
    pub fn get(&self) -> Option<GuestEvent> {
        self.first.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Readable once an event was raised.
    pub fn eventfd(&self) -> &EventFd {
        &self.eventfd
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_event_wins_and_signals() {
        let ev = GuestEvents::new().expect("eventfd");
        assert_eq!(ev.get(), None);
        ev.raise(GuestEvent::Panic);
        ev.raise(GuestEvent::PowerOff);
        assert_eq!(ev.get(), Some(GuestEvent::Panic));
        assert_eq!(ev.eventfd().read().expect("signalled"), 2);
    }
}
