//! VFIO passthrough: a host PCI function handed to the guest.
//!
//! The guest sees a virtualized configuration space: BARs sized from VFIO
//! and placed by minivmm, no expansion ROM, no INTx pin, the MSI capability
//! unlinked (MSI-X only), and the MSI-X capability, table and PBA emulated.
//! BARs that VFIO lets us mmap and that hold no MSI-X structure are mapped
//! straight into the guest through memory slots, installed while the BAR
//! decodes and at the address it decodes at (the root complex says when);
//! every other BAR access is trapped and forwarded to VFIO, as are I/O
//! BARs. The device is reached through [`VfioAccess`], which the VFIO
//! device implements and `fake` (feature `test-utils`) fakes.

mod access;
mod caps;
mod device;
#[cfg(any(test, feature = "test-utils"))]
pub mod fake;
mod msi;
#[cfg(test)]
mod tests;

pub use access::VfioAccess;
pub use device::{MemorySlots, VfioPciDevice, VfioPciError};
