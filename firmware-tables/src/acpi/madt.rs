//! MADT: one enabled local APIC per vCPU and the IOAPIC. ISA interrupts are
//! identity-mapped to IOAPIC pins, so no source overrides are needed.

use acpi_tables::madt::{
    EnabledStatus, IoApic, LocalInterruptController, ProcessorLocalApic, MADT,
};

use super::{Platform, OEM_ID, OEM_REVISION, OEM_TABLE_ID};

/// The MADT for `platform`.
pub(super) fn build(platform: &Platform) -> MADT {
    let mut madt = MADT::new(
        OEM_ID,
        OEM_TABLE_ID,
        OEM_REVISION,
        LocalInterruptController::Address(platform.lapic_addr),
    );
    for cpu in 0..platform.cpus {
        madt.add_structure(ProcessorLocalApic::new(cpu, cpu, EnabledStatus::Enabled));
    }
    madt.add_structure(IoApic::new(0, platform.ioapic_addr, 0));
    madt
}
