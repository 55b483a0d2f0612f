//! The DSDT's ACPI PCI hotplug: a Generic Event Device (`ACPI0013`) whose
//! interrupt means "look at the hotplug registers", the register block as
//! an operation region (`PCIU` slots to check, `PCID` slots to eject, `B0EJ`
//! eject acknowledgment; see `devices::pci::hotplug`), a motherboard
//! resource reserving its page, and under `PCI0` one device per
//! hot-pluggable slot (`_ADR`, `_SUN`, `_EJ0`) plus the method that turns
//! the registers into Device Check (1) and Eject Request (3) notifications,
//! which the guest's `acpiphp` acts on.

use acpi_tables::{aml, Aml, AmlSink};

use super::PciHotplug;

/// Bytes of the register operation region: `PCIU`, `PCID`, `B0EJ`.
const REGS_LEN: u64 = 12;
/// Notify value: Device Check.
const DEVICE_CHECK: u8 = 1;
/// Notify value: Eject Request.
const EJECT_REQUEST: u8 = 3;
/// The scan method under `PCI0`, called by the GED's `_EVT`.
const SCAN_METHOD: &str = "\\_SB_.PCI0.PSCN";

/// AML already encoded (a child built on its own).
pub(super) struct Encoded(Vec<u8>);

impl Aml for Encoded {
    fn to_aml_bytes(&self, sink: &mut dyn AmlSink) {
        sink.vec(&self.0);
    }
}

fn encode(aml: &dyn Aml) -> Encoded {
    let mut bytes = Vec::new();
    aml.to_aml_bytes(&mut bytes);
    Encoded(bytes)
}

/// The slot device's name: `S` and the slot number in hex (`S05_`).
fn slot_name(slot: u8) -> String {
    format!("S{:02X}_", slot & 0x1f)
}

/// `Device (Snn)` under `PCI0` for `slot`: function 0 of the slot, its
/// slot number, and `_EJ0` writing the slot's bit to `B0EJ`.
fn slot_device(slot: u8) -> Encoded {
    let adr = u64::from(slot & 0x1f) << 16;
    let sun = u64::from(slot);
    let bit = 1u64 << (slot & 0x1f);
    let b0ej = aml::Path::new("\\_SB_.B0EJ");
    let store = aml::Store::new(&b0ej, &bit);
    let ej0 = aml::Method::new("_EJ0".into(), 1, false, vec![&store]);
    let name_adr = aml::Name::new("_ADR".into(), &adr);
    let name_sun = aml::Name::new("_SUN".into(), &sun);
    encode(&aml::Device::new(
        slot_name(slot).as_str().into(),
        vec![&name_adr, &name_sun, &ej0],
    ))
}

/// `If (And (reg, bit)) { Notify (Snn, value) }`.
fn notify_if(reg: &aml::Local, slot: u8, value: u8) -> Encoded {
    let bit = 1u64 << (slot & 0x1f);
    let and = aml::And::new(&aml::ZERO, reg, &bit);
    let target = aml::Path::new(&slot_name(slot));
    let notify = aml::Notify::new(&target, &value);
    encode(&aml::If::new(&and, vec![&notify]))
}

/// `Method (PSCN)` under `PCI0`: reads `PCIU` and `PCID` once each (the
/// reads clear them) and notifies every slot they name.
fn scan_method(slots: &[u8]) -> Encoded {
    let check = aml::Local(0);
    let eject = aml::Local(1);
    let pciu = aml::Path::new("\\_SB_.PCIU");
    let pcid = aml::Path::new("\\_SB_.PCID");
    let read_check = aml::Store::new(&check, &pciu);
    let read_eject = aml::Store::new(&eject, &pcid);
    let mut notifies: Vec<Encoded> = slots
        .iter()
        .map(|s| notify_if(&check, *s, DEVICE_CHECK))
        .collect();
    notifies.extend(slots.iter().map(|s| notify_if(&eject, *s, EJECT_REQUEST)));
    let mut body: Vec<&dyn Aml> = vec![&read_check, &read_eject];
    body.extend(notifies.iter().map(|n| n as &dyn Aml));
    encode(&aml::Method::new("PSCN".into(), 0, true, body))
}

/// What goes inside `Device (PCI0)`: the slot devices and the scan method.
pub(super) fn pci_children(hotplug: &PciHotplug) -> Encoded {
    let mut bytes = Vec::new();
    for slot in &hotplug.slots {
        slot_device(*slot).to_aml_bytes(&mut bytes);
    }
    scan_method(&hotplug.slots).to_aml_bytes(&mut bytes);
    Encoded(bytes)
}

/// What goes in `\_SB`: the register region and its fields, the resource
/// reservation of its page and the GED.
pub(super) fn system_bus_children(hotplug: &PciHotplug) -> Vec<u8> {
    let mut bytes = Vec::new();
    let base = hotplug.registers.0;
    let len = REGS_LEN;
    aml::OpRegion::new("PHPR".into(), aml::OpRegionSpace::SystemMemory, &base, &len)
        .to_aml_bytes(&mut bytes);
    aml::Field::new(
        "PHPR".into(),
        aml::FieldAccessType::DWord,
        aml::FieldLockRule::NoLock,
        aml::FieldUpdateRule::WriteAsZeroes,
        vec![
            aml::FieldEntry::Named(*b"PCIU", 32),
            aml::FieldEntry::Named(*b"PCID", 32),
            aml::FieldEntry::Named(*b"B0EJ", 32),
        ],
    )
    .to_aml_bytes(&mut bytes);

    let hid = aml::EISAName::new("PNP0C02");
    let uid: aml::AmlStr = "PHPR";
    let page = aml::Memory32Fixed::new(true, base as u32, hotplug.registers.1 as u32);
    let crs = aml::ResourceTemplate::new(vec![&page]);
    let name_hid = aml::Name::new("_HID".into(), &hid);
    let name_uid = aml::Name::new("_UID".into(), &uid);
    let name_crs = aml::Name::new("_CRS".into(), &crs);
    aml::Device::new("PHPD".into(), vec![&name_hid, &name_uid, &name_crs]).to_aml_bytes(&mut bytes);

    let ged_hid: aml::AmlStr = "ACPI0013";
    let zero = 0u64;
    let irq = aml::Interrupt::new(true, true, false, false, hotplug.gsi);
    let ged_crs = aml::ResourceTemplate::new(vec![&irq]);
    let scan = aml::MethodCall::new(SCAN_METHOD.into(), vec![]);
    let evt = aml::Method::new("_EVT".into(), 1, true, vec![&scan]);
    let name_hid = aml::Name::new("_HID".into(), &ged_hid);
    let name_uid = aml::Name::new("_UID".into(), &zero);
    let name_crs = aml::Name::new("_CRS".into(), &ged_crs);
    aml::Device::new("GED0".into(), vec![&name_hid, &name_uid, &name_crs, &evt])
        .to_aml_bytes(&mut bytes);
    bytes
}
