//! DSDT: the `\_S5` sleep package (so the guest can power off), the
//! legacy devices (COM ports, PNP0501, and pvpanic, QEMU0001) and the PCI
//! host bridge (PNP0A08) with its bus, I/O and MMIO windows, and PCI
//! hotplug (`hotplug.rs`) when the VM has hot-pluggable slots.

use acpi_tables::sdt::Sdt;
use acpi_tables::{aml, Aml};

use super::hotplug;
use super::{PciHostBridge, PciHotplug, Platform, SerialPort, OEM_ID, OEM_REVISION, OEM_TABLE_ID};

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

/// Legacy configuration ports the host bridge claims.
const PCI_CONFIG_PORT: u16 = 0xcf8;

fn pci_host_bridge(pci: &PciHostBridge, hotplug: Option<&PciHotplug>) -> Vec<u8> {
    let hid = aml::EISAName::new("PNP0A08");
    let cid = aml::EISAName::new("PNP0A03");
    let zero = 0u64;
    let bus = aml::AddressSpace::new_bus_number(u16::from(pci.bus_start), u16::from(pci.bus_end));
    let config_ports = aml::IO::new(PCI_CONFIG_PORT, PCI_CONFIG_PORT, 1, 8);
    let io_low = aml::AddressSpace::new_io(0u16, PCI_CONFIG_PORT - 1, None);
    let io_high = aml::AddressSpace::new_io(pci.io.0, pci.io.1, None);
    let mmio32 = aml::AddressSpace::new_memory(
        aml::AddressSpaceCacheable::NotCacheable,
        true,
        pci.mmio32.0 as u32,
        (pci.mmio32.0 + pci.mmio32.1 - 1) as u32,
        None,
    );
    let mmio64 = aml::AddressSpace::new_memory(
        aml::AddressSpaceCacheable::NotCacheable,
        true,
        pci.mmio64.0,
        pci.mmio64.0 + pci.mmio64.1 - 1,
        None,
    );
    let crs = aml::ResourceTemplate::new(vec![
        &bus,
        &config_ports,
        &io_low,
        &io_high,
        &mmio32,
        &mmio64,
    ]);
    let names = [
        aml::Name::new("_HID".into(), &hid),
        aml::Name::new("_CID".into(), &cid),
        aml::Name::new("_ADR".into(), &zero),
        aml::Name::new("_SEG".into(), &zero),
        aml::Name::new("_UID".into(), &zero),
        aml::Name::new("_BBN".into(), &zero),
        aml::Name::new("_CRS".into(), &crs),
    ];
    let slots = hotplug.map(hotplug::pci_children);
    let mut children: Vec<&dyn Aml> = names.iter().map(|n| n as &dyn Aml).collect();
    if let Some(slots) = &slots {
        children.push(slots);
    }
    let mut bytes = Vec::new();
    aml::Device::new("PCI0".into(), children).to_aml_bytes(&mut bytes);
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
    if let Some(pci) = &platform.pci {
        sb.extend(pci_host_bridge(pci, platform.hotplug.as_ref()));
        if let Some(hotplug) = &platform.hotplug {
            sb.extend(hotplug::system_bus_children(hotplug));
        }
    }
    let mut body = s5_package(platform.pm.s5_sleep_type);
    body.extend(aml::Scope::raw("_SB_".into(), sb));
    dsdt.append_slice(&body);
    dsdt
}
