//! Device models.
//!
//! This crate owns what the guest sees as hardware: the port-I/O and MMIO
//! buses that route vCPU exits, and the devices on them. It never depends on
//! the VMM; devices report guest-initiated power events through
//! [`GuestEvents`] and interrupts through eventfds the VMM wires to KVM.

pub mod bus;
pub mod guest_events;
pub mod legacy;
pub mod pci;
pub mod perf;
pub mod ratelimit;
#[cfg(test)]
mod test_alloc;
#[cfg(test)]
mod test_rng;
pub mod vfio;
pub mod virtio;

pub use bus::{Bus, BusDevice, BusError};
pub use guest_events::{GuestEvent, GuestEvents};
