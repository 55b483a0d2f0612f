//! VFIO passthrough: a host PCI function handed to the guest.
//!
//! The guest sees a virtualized configuration space: BARs sized from VFIO
//! and placed by minivmm, no expansion ROM, no INTx pin, the MSI capability
//! unlinked (MSI-X only), and the MSI-X capability, table and PBA emulated.
//! BARs that VFIO lets us mmap and that hold no MSI-X structure are mapped
//! straight into the guest through memory slots; every other BAR access is
//! trapped and forwarded to VFIO, as are I/O BARs.

mod caps;
mod device;
mod msi;

pub use device::{MemorySlots, VfioPciDevice, VfioPciError};
