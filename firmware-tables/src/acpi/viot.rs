//! VIOT: which PCI endpoints sit behind the virtio-iommu. Endpoint IDs are
//! the endpoints' BDFs (segment 0), which is what the guest's driver uses in
//! ATTACH requests.

use acpi_tables::viot::{PciDevice, PciRange, VirtIoPciIommu, VIOT};

use super::{IommuTopology, OEM_ID, OEM_REVISION, OEM_TABLE_ID};

fn bdf_parts(bdf: u16) -> (u8, u8, u8) {
    ((bdf >> 8) as u8, ((bdf >> 3) & 0x1f) as u8, (bdf & 7) as u8)
}

fn pci_device(bdf: u16) -> PciDevice {
    let (bus, dev, func) = bdf_parts(bdf);
    PciDevice::new(0, bus, dev, func)
}

/// The VIOT for `topology`: one virtio-pci IOMMU node and one PCI range
/// node per endpoint behind it.
pub(super) fn build(topology: &IommuTopology) -> VIOT {
    let mut viot = VIOT::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    let handle = viot.add_virtio_pci_iommu(VirtIoPciIommu::new(pci_device(topology.iommu_bdf)));
    for bdf in &topology.endpoints {
        viot.add_pci_range(PciRange::new(pci_device(*bdf), pci_device(*bdf), &handle));
    }
    viot
}
