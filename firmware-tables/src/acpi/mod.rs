//! ACPI tables for a hardware-reduced x86 platform: RSDP -> XSDT -> FADT
//! (with the DSDT), MADT, and with PCI the MCFG and, when a virtio-iommu
//! exists, the VIOT. Each table is built in its own module; this one
//! places them in the guest's ACPI area and links them.

mod dsdt;
mod fadt;
mod hotplug;
mod madt;
mod mcfg;
mod viot;

use acpi_tables::{rsdp::Rsdp, xsdt::XSDT, Aml};
use vm_memory::{Bytes, GuestAddress};

/// OEM ID in every table.
pub const OEM_ID: [u8; 6] = *b"MINVMM";
/// OEM table ID in every table.
pub const OEM_TABLE_ID: [u8; 8] = *b"MINIVMM ";
/// OEM revision in every table.
pub const OEM_REVISION: u32 = 1;

/// A legacy UART the DSDT describes.
#[derive(Clone, Copy, Debug)]
pub struct SerialPort {
    /// Base I/O port.
    pub port: u16,
    /// ISA interrupt line.
    pub irq: u32,
}

/// The ACPI power management block (hardware-reduced registers).
#[derive(Clone, Copy, Debug)]
pub struct PowerManagement {
    /// I/O port of the sleep control register.
    pub sleep_control_port: u16,
    /// I/O port of the sleep status register.
    pub sleep_status_port: u16,
    /// I/O port of the reset register.
    pub reset_port: u16,
    /// Value written to the reset register to reset.
    pub reset_value: u8,
    /// SLP_TYP announced for S5 (soft off).
    pub s5_sleep_type: u8,
}

/// The PCI host bridge: segment 0, its ECAM and its windows.
#[derive(Clone, Copy, Debug)]
pub struct PciHostBridge {
    /// ECAM base (for bus `bus_start`).
    pub ecam_base: u64,
    /// First bus number.
    pub bus_start: u8,
    /// Last bus number.
    pub bus_end: u8,
    /// 32-bit MMIO window: base and size.
    pub mmio32: (u64, u64),
    /// 64-bit MMIO window: base and size.
    pub mmio64: (u64, u64),
    /// I/O port window: first and last port.
    pub io: (u16, u16),
}

/// A virtio-pci IOMMU and the PCI endpoints it translates for.
#[derive(Clone, Debug)]
pub struct IommuTopology {
    /// BDF of the virtio-iommu PCI function.
    pub iommu_bdf: u16,
    /// BDFs of the endpoints behind it (their endpoint IDs).
    pub endpoints: Vec<u16>,
}

/// ACPI PCI hotplug on bus 0: the register block the DSDT's methods read
/// and write (`PCIU` slots to check at +0, `PCID` slots to eject at +4,
/// `B0EJ` eject acknowledgment at +8, 32 bits each, one bit per slot) and
/// the Generic Event Device's interrupt.
#[derive(Clone, Debug)]
pub struct PciHotplug {
    /// The register page: base and size.
    pub registers: (u64, u64),
    /// The GED's interrupt (GSI, edge-triggered, active high).
    pub gsi: u32,
    /// The hot-pluggable slots of bus 0.
    pub slots: Vec<u8>,
}

/// Everything the tables describe. Addresses come from the VMM's layout.
#[derive(Clone, Debug)]
pub struct Platform {
    /// Number of vCPUs; APIC IDs are `0..cpus`.
    pub cpus: u8,
    /// Local APIC base.
    pub lapic_addr: u32,
    /// IOAPIC base; its GSIs start at 0.
    pub ioapic_addr: u32,
    /// Power off and reset registers.
    pub pm: PowerManagement,
    /// Serial ports in the DSDT.
    pub serial_ports: Vec<SerialPort>,
    /// pvpanic I/O port, if the device exists.
    pub pvpanic_port: Option<u16>,
    /// The PCI host bridge, if the VM has PCI.
    pub pci: Option<PciHostBridge>,
    /// The virtio-iommu topology, if the VM has one.
    pub iommu: Option<IommuTopology>,
    /// PCI hotplug, if the VM has hot-pluggable slots.
    pub hotplug: Option<PciHotplug>,
}

/// Errors placing the tables.
#[derive(Debug, thiserror::Error)]
pub enum AcpiError {
    /// The tables do not fit the ACPI area.
    #[error("ACPI tables need {needed} bytes, the ACPI area has {available}")]
    TooLarge {
        /// Bytes needed.
        needed: u64,
        /// Bytes in the area.
        available: u64,
    },
    /// Guest memory does not back the ACPI area.
    #[error("cannot write the {0} table into guest memory")]
    Write(&'static str),
}

fn to_bytes(table: &dyn Aml) -> Vec<u8> {
    let mut bytes = Vec::new();
    table.to_aml_bytes(&mut bytes);
    bytes
}

/// Builds the tables and writes them to `[base, base + size)`; the RSDP
/// lands at `base` (which must be 16-byte aligned). Returns the RSDP address.
pub fn write_tables<M: Bytes<GuestAddress>>(
    mem: &M,
    base: GuestAddress,
    size: u64,
    platform: &Platform,
) -> Result<GuestAddress, AcpiError> {
    let mut next = base.0 + Rsdp::len() as u64;
    let mut place = |name: &'static str, bytes: &[u8]| -> Result<u64, AcpiError> {
        let addr = next.next_multiple_of(8);
        let end = addr + bytes.len() as u64;
        if end > base.0 + size {
            return Err(AcpiError::TooLarge {
                needed: end - base.0,
                available: size,
            });
        }
        mem.write_slice(bytes, GuestAddress(addr))
            .map_err(|_| AcpiError::Write(name))?;
        next = end;
        Ok(addr)
    };

    let dsdt = place("DSDT", dsdt::build(platform).as_slice())?;
    let fadt = place("FADT", &to_bytes(&fadt::build(platform, dsdt)))?;
    let madt = place("MADT", &to_bytes(&madt::build(platform)))?;
    let mut xsdt = XSDT::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    xsdt.add_entry(fadt);
    xsdt.add_entry(madt);
    if let Some(pci) = &platform.pci {
        xsdt.add_entry(place("MCFG", &to_bytes(&mcfg::build(pci)))?);
    }
    if let Some(iommu) = &platform.iommu {
        xsdt.add_entry(place("VIOT", &to_bytes(&viot::build(iommu)))?);
    }
    let xsdt = place("XSDT", &to_bytes(&xsdt))?;

    let rsdp = to_bytes(&Rsdp::new(OEM_ID, xsdt));
    mem.write_slice(&rsdp, base)
        .map_err(|_| AcpiError::Write("RSDP"))?;
    Ok(base)
}

#[cfg(test)]
mod tests;
