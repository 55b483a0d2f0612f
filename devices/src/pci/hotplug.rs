//! The PCI hotplug register block of ACPI PCI hotplug on a hardware-reduced
//! machine: the VMM marks slots whose device arrived ("check") or must leave
//! ("eject") and raises the Generic Event Device's interrupt; the DSDT's
//! event method reads both registers (each read clears what it returns) and
//! notifies the slot devices; a slot's `_EJ0` writes the slot's bit to the
//! acknowledgment register once the guest let go of the device, and the VMM
//! is woken to take the device off the bus.
//!
//! Registers, 32 bits each, one bit per slot of bus 0:
//!
//! | offset | access | meaning |
//! |---|---|---|
//! | 0x0 | read, clears | slots to check (a device arrived) |
//! | 0x4 | read, clears | slots to eject (the VMM asks the guest to let go) |
//! | 0x8 | write | slots the guest ejected (`_EJ0`) |
//!
//! The guest is hostile: only aligned 4-byte accesses at these offsets do
//! anything; other reads return 0 ("nothing to do") and other writes, and
//! acknowledgments of slots that are not hot-pluggable, are dropped.

use std::sync::{Arc, Mutex};

use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::BusDevice;

/// Offset of the "slots to check" register.
pub const REG_CHECK: u64 = 0x0;
/// Offset of the "slots to eject" register.
pub const REG_EJECT: u64 = 0x4;
/// Offset of the "slots ejected" (acknowledgment) register.
pub const REG_EJECTED: u64 = 0x8;
/// Bytes the registers span.
pub const REGS_LEN: u64 = 0xc;

/// Errors of the hotplug controller.
#[derive(Debug, thiserror::Error)]
pub enum HotplugError {
    /// An eventfd could not be created.
    #[error("cannot create the PCI hotplug eventfd")]
    EventFd(#[source] std::io::Error),
    /// The slot is not a hot-pluggable one.
    #[error("PCI slot {0} is not hot-pluggable")]
    NotHotpluggable(u8),
    /// The GED interrupt could not be raised.
    #[error("cannot raise the PCI hotplug interrupt")]
    Interrupt(#[source] std::io::Error),
}

#[derive(Debug, Default)]
struct Bits {
    check: u32,
    eject: u32,
    ejected: u32,
}

struct Shared {
    bits: Mutex<Bits>,
    /// Mask of the hot-pluggable slots.
    slots: u32,
    /// The GED's interrupt (an irqfd).
    interrupt: EventFd,
    /// Signalled when the guest acknowledged an eject.
    ejected: EventFd,
}

impl Shared {
    fn bits(&self) -> std::sync::MutexGuard<'_, Bits> {
        self.bits.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The VMM's side: marks slots and raises the interrupt, takes the
/// guest's acknowledgments.
#[derive(Clone)]
pub struct HotplugController {
    shared: Arc<Shared>,
}

/// The guest's side: the register block on the MMIO bus.
pub struct HotplugRegisters {
    shared: Arc<Shared>,
}

fn bit(slot: u8) -> Option<u32> {
    1u32.checked_shl(u32::from(slot))
}

impl HotplugController {
    /// A controller for the hot-pluggable `slots` (slot numbers of bus 0,
    /// below 32) whose GED interrupt is `interrupt`; returns it with its
    /// register block.
    pub fn new(slots: &[u8], interrupt: EventFd) -> Result<(Self, HotplugRegisters), HotplugError> {
        let mask = slots.iter().filter_map(|s| bit(*s)).fold(0, |m, b| m | b);
        let shared = Arc::new(Shared {
            bits: Mutex::default(),
            slots: mask,
            interrupt,
            ejected: EventFd::new(EFD_NONBLOCK).map_err(HotplugError::EventFd)?,
        });
        Ok((
            Self {
                shared: shared.clone(),
            },
            HotplugRegisters { shared },
        ))
    }

    fn mark(&self, slot: u8, eject: bool) -> Result<(), HotplugError> {
        let b = bit(slot)
            .filter(|b| self.shared.slots & b != 0)
            .ok_or(HotplugError::NotHotpluggable(slot))?;
        {
            let mut bits = self.shared.bits();
            if eject {
                bits.check &= !b;
                bits.eject |= b;
            } else {
                bits.eject &= !b;
                bits.ejected &= !b;
                bits.check |= b;
            }
        }
        self.shared
            .interrupt
            .write(1)
            .map_err(HotplugError::Interrupt)
    }

    /// A device now sits in `slot`: asks the guest to scan it.
    pub fn device_arrived(&self, slot: u8) -> Result<(), HotplugError> {
        self.mark(slot, false)
    }

    /// Asks the guest to let go of the device in `slot` and eject it.
    pub fn request_eject(&self, slot: u8) -> Result<(), HotplugError> {
        self.mark(slot, true)
    }

    /// The slots the guest ejected since the last call.
    pub fn take_ejected(&self) -> u32 {
        let _ = self.shared.ejected.read();
        std::mem::take(&mut self.shared.bits().ejected)
    }

    /// Readable when the guest acknowledged an eject.
    pub fn ejected_eventfd(&self) -> &EventFd {
        &self.shared.ejected
    }
}

impl BusDevice for HotplugRegisters {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let value = match (offset, data.len()) {
            (REG_CHECK, 4) => std::mem::take(&mut self.shared.bits().check),
            (REG_EJECT, 4) => std::mem::take(&mut self.shared.bits().eject),
            _ => {
                crate::guest_log!(
                    log::Level::Warn,
                    "pci hotplug: {}-byte read at {offset:#x} ignored",
                    data.len()
                );
                0
            }
        };
        let bytes = value.to_le_bytes();
        let n = data.len().min(4);
        data[..n].copy_from_slice(&bytes[..n]);
        data[n..].fill(0);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let value = match (offset, <[u8; 4]>::try_from(data)) {
            (REG_EJECTED, Ok(b)) => u32::from_le_bytes(b),
            _ => {
                crate::guest_log!(
                    log::Level::Warn,
                    "pci hotplug: {}-byte write at {offset:#x} ignored",
                    data.len()
                );
                return;
            }
        };
        let known = value & self.shared.slots;
        if known != value {
            crate::guest_log!(
                log::Level::Warn,
                "pci hotplug: eject acknowledgment {value:#x} names slots that are not hot-pluggable"
            );
        }
        if known == 0 {
            return;
        }
        self.shared.bits().ejected |= known;
        if let Err(e) = self.shared.ejected.write(1) {
            crate::guest_log!(log::Level::Error, "pci hotplug: cannot wake the VMM: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn controller() -> (HotplugController, HotplugRegisters, EventFd) {
        let irq = EventFd::new(EFD_NONBLOCK).expect("eventfd");
        let (c, r) = HotplugController::new(&[5, 6], irq.try_clone().expect("clone")).expect("new");
        (c, r, irq)
    }

    fn read32(r: &mut HotplugRegisters, offset: u64) -> u32 {
        let mut b = [0u8; 4];
        r.read(offset, &mut b);
        u32::from_le_bytes(b)
    }

    #[test]
    fn arrival_and_eject_are_read_once_and_raise_the_interrupt() {
        let (c, mut r, irq) = controller();
        c.device_arrived(5).expect("slot 5");
        assert_eq!(irq.read().expect("interrupt raised"), 1);
        assert_eq!(read32(&mut r, REG_CHECK), 1 << 5);
        assert_eq!(read32(&mut r, REG_CHECK), 0, "cleared by the read");
        c.request_eject(6).expect("slot 6");
        c.request_eject(5).expect("slot 5");
        assert_eq!(read32(&mut r, REG_EJECT), (1 << 5) | (1 << 6));
        assert_eq!(read32(&mut r, REG_EJECT), 0);
        assert!(matches!(
            c.device_arrived(7),
            Err(HotplugError::NotHotpluggable(7))
        ));
        assert!(matches!(
            c.request_eject(200),
            Err(HotplugError::NotHotpluggable(200))
        ));
    }

    #[test]
    fn acknowledgments_wake_the_vmm_for_hotpluggable_slots_only() {
        let (c, mut r, _irq) = controller();
        assert_eq!(c.take_ejected(), 0);
        r.write(REG_EJECTED, &(1u32 << 7).to_le_bytes());
        assert!(c.ejected_eventfd().read().is_err(), "slot 7 is not ours");
        r.write(REG_EJECTED, &((1u32 << 6) | (1 << 9)).to_le_bytes());
        assert_eq!(c.ejected_eventfd().read().expect("woken"), 1);
        assert_eq!(c.take_ejected(), 1 << 6);
        assert_eq!(c.take_ejected(), 0);
        // A device that arrives again in the slot forgets a stale ack.
        r.write(REG_EJECTED, &(1u32 << 5).to_le_bytes());
        c.device_arrived(5).expect("arrived");
        assert_eq!(c.take_ejected(), 0);
    }

    #[test]
    fn odd_accesses_do_nothing() {
        let (c, mut r, _irq) = controller();
        c.device_arrived(5).expect("slot 5");
        let mut two = [0xffu8; 2];
        r.read(REG_CHECK, &mut two);
        assert_eq!(two, [0, 0], "2-byte read: nothing, and the bits stay");
        let mut eight = [0xffu8; 8];
        r.read(REG_CHECK, &mut eight);
        assert_eq!(eight, [0; 8]);
        assert_eq!(read32(&mut r, 2), 0, "unaligned");
        assert_eq!(read32(&mut r, REG_EJECTED), 0, "write-only");
        assert_eq!(read32(&mut r, 0x100), 0);
        r.write(REG_CHECK, &[0xff; 4]);
        r.write(REG_EJECTED, &[0xff; 2]);
        r.write(REG_EJECTED, &[]);
        r.write(REG_EJECTED + 1, &[0xff; 4]);
        assert_eq!(c.take_ejected(), 0);
        assert_eq!(read32(&mut r, REG_CHECK), 1 << 5, "still pending");
    }
}
