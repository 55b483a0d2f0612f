//! MCFG: where ECAM (memory-mapped PCI configuration) lives.

use acpi_tables::mcfg::MCFG;

use super::{PciHostBridge, OEM_ID, OEM_REVISION, OEM_TABLE_ID};

/// The MCFG for `pci`'s segment.
pub(super) fn build(pci: &PciHostBridge) -> MCFG {
    let mut mcfg = MCFG::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    mcfg.add_ecam(pci.ecam_base, 0, pci.bus_start, pci.bus_end);
    mcfg
}
