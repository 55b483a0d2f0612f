//! DSDT: the `\_S5` sleep package (so the guest can power off) and the
//! legacy devices: COM ports (PNP0501) and pvpanic (QEMU0001).

use acpi_tables::sdt::Sdt;
use acpi_tables::{aml, Aml};

use super::{Platform, SerialPort, OEM_ID, OEM_REVISION, OEM_TABLE_ID};

/// Table header size; the DSDT body follows it.
const HEADER_LEN: u32 = 36;
/// DSDT revision 2: integers are 64-bit.
const DSDT_REVISION: u8 = 2;

fn serial_device(index: usize, port: &SerialPort) -> Vec<u8> {
    let name = format!("COM{}", index + 1);
    let io = aml::IO::new(port.port, port.port, 1, 8);
    let irq = aml::Interrupt::new(true, true, false, false, port.irq);
    let crs = aml::ResourceTemplate::new(vec![&io, &irq]);
    let hid = aml::EISAName::new("PNP0501");
    let uid = index as u64;
    let name_hid = aml::Name::new("_HID".into(), &hid);
    let name_uid = aml::Name::new("_UID".into(), &uid);
    let name_crs = aml::Name::new("_CRS".into(), &crs);
    let mut bytes = Vec::new();
    aml::Device::new(name.as_str().into(), vec![&name_hid, &name_uid, &name_crs])
        .to_aml_bytes(&mut bytes);
    bytes
}

fn pvpanic_device(port: u16) -> Vec<u8> {
    let hid: aml::AmlStr = "QEMU0001";
    let io = aml::IO::new(port, port, 1, 1);
    let crs = aml::ResourceTemplate::new(vec![&io]);
    let name_hid = aml::Name::new("_HID".into(), &hid);
    let name_crs = aml::Name::new("_CRS".into(), &crs);
    let mut bytes = Vec::new();
    aml::Device::new("PEVT".into(), vec![&name_hid, &name_crs]).to_aml_bytes(&mut bytes);
    bytes
}

fn s5_package(sleep_type: u8) -> Vec<u8> {
    let zero = 0u8;
    let package = aml::Package::new(vec![&sleep_type, &sleep_type, &zero, &zero]);
    let mut bytes = Vec::new();
    aml::Name::new("_S5_".into(), &package).to_aml_bytes(&mut bytes);
    bytes
}

/// The DSDT for `platform`.
pub(super) fn build(platform: &Platform) -> Sdt {
    let mut dsdt = Sdt::new(
        *b"DSDT",
        HEADER_LEN,
        DSDT_REVISION,
        OEM_ID,
        OEM_TABLE_ID,
        OEM_REVISION,
    );
    let mut sb = Vec::new();
    for (i, port) in platform.serial_ports.iter().enumerate() {
        sb.extend(serial_device(i, port));
    }
    if let Some(port) = platform.pvpanic_port {
        sb.extend(pvpanic_device(port));
    }
    let mut body = s5_package(platform.pm.s5_sleep_type);
    body.extend(aml::Scope::raw("_SB_".into(), sb));
    dsdt.append_slice(&body);
    dsdt
}
