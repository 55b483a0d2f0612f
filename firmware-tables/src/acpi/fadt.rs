//! FADT: hardware-reduced ACPI, with the sleep control/status and reset
//! registers in I/O space, and the legacy devices the guest must not probe.

use acpi_tables::fadt::{FADTBuilder, Flags, FADT};
use acpi_tables::gas::{AccessSize, AddressSpace, GAS};

use super::{Platform, OEM_ID, OEM_REVISION, OEM_TABLE_ID};

/// IA-PC boot architecture flag: there is no VGA.
const IAPC_VGA_NOT_PRESENT: u16 = 1 << 2;
/// IA-PC boot architecture flag: there is no CMOS RTC.
const IAPC_CMOS_RTC_NOT_PRESENT: u16 = 1 << 5;

fn io_byte(port: u16) -> GAS {
    GAS::new(
        AddressSpace::SystemIo,
        8,
        0,
        AccessSize::ByteAccess,
        u64::from(port),
    )
}

/// The FADT pointing at the DSDT at `dsdt_addr`.
pub(super) fn build(platform: &Platform, dsdt_addr: u64) -> FADT {
    let mut fadt = FADTBuilder::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION)
        .dsdt_64(dsdt_addr)
        .flag(Flags::HwReducedAcpi)
        .flag(Flags::ResetRegSup)
        .flag(Flags::PwrButton)
        .flag(Flags::SlpButton);
    fadt.iapc_boot_arch = (IAPC_VGA_NOT_PRESENT | IAPC_CMOS_RTC_NOT_PRESENT).into();
    fadt.reset_reg = io_byte(platform.pm.reset_port);
    fadt.reset_value = platform.pm.reset_value;
    fadt.sleep_control_reg = io_byte(platform.pm.sleep_control_port);
    fadt.sleep_status_reg = io_byte(platform.pm.sleep_status_port);
    fadt.hypervisor_vendor_identity = u64::from_le_bytes(*b"MINIVMM\0").into();
    fadt.finalize()
}
