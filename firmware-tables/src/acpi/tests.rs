use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::*;

const BASE: u64 = 0xe0000;

fn platform(cpus: u8) -> Platform {
    Platform {
        cpus,
        lapic_addr: 0xfee0_0000,
        ioapic_addr: 0xfec0_0000,
        pm: PowerManagement {
            sleep_control_port: 0x600,
            sleep_status_port: 0x601,
            reset_port: 0x602,
            reset_value: 1,
            s5_sleep_type: 5,
        },
        serial_ports: vec![SerialPort {
            port: 0x3f8,
            irq: 4,
        }],
        pvpanic_port: Some(0x505),
        pci: None,
        iommu: None,
        hotplug: None,
    }
}

fn memory() -> GuestMemoryMmap {
    GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x10_0000)]).expect("memory")
}

fn read(mem: &GuestMemoryMmap, addr: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    mem.read_slice(&mut v, GuestAddress(addr)).expect("read");
    v
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().expect("8 bytes"))
}

/// Reads a whole table at `addr` and checks its checksum.
fn table(mem: &GuestMemoryMmap, addr: u64) -> Vec<u8> {
    let len = u32_at(&read(mem, addr, 8), 4) as usize;
    let t = read(mem, addr, len);
    let sum = t.iter().fold(0u8, |a, b| a.wrapping_add(*b));
    assert_eq!(sum, 0, "checksum of {}", String::from_utf8_lossy(&t[..4]));
    t
}

/// Follows RSDP -> XSDT and returns the tables it lists by signature.
fn walk(mem: &GuestMemoryMmap) -> Vec<(String, Vec<u8>)> {
    let rsdp = read(mem, BASE, 36);
    assert_eq!(&rsdp[..8], b"RSD PTR ");
    assert_eq!(rsdp[..20].iter().fold(0u8, |a, b| a.wrapping_add(*b)), 0);
    assert_eq!(rsdp.iter().fold(0u8, |a, b| a.wrapping_add(*b)), 0);
    let xsdt = table(mem, u64_at(&rsdp, 24));
    assert_eq!(&xsdt[..4], b"XSDT");
    xsdt[36..]
        .chunks(8)
        .map(|c| {
            let t = table(mem, u64::from_le_bytes(c.try_into().expect("8 bytes")));
            (String::from_utf8_lossy(&t[..4]).into_owned(), t)
        })
        .collect()
}

#[test]
fn rsdp_leads_to_fadt_dsdt_and_madt() {
    let mem = memory();
    let rsdp = write_tables(&mem, GuestAddress(BASE), 0x20000, &platform(2)).expect("tables");
    assert_eq!(rsdp, GuestAddress(BASE));
    let tables = walk(&mem);
    let names: Vec<_> = tables.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["FACP", "APIC"]);
    let fadt = &tables[0].1;
    let flags = u32_at(fadt, 112);
    assert_ne!(flags & (1 << 20), 0, "hardware-reduced");
    assert_ne!(flags & (1 << 10), 0, "reset register supported");
    let dsdt = table(&mem, u64_at(fadt, 140));
    assert_eq!(&dsdt[..4], b"DSDT");
    // Reset register: I/O space, port 0x602, value 1.
    assert_eq!(fadt[116], 1);
    assert_eq!(u64_at(fadt, 120), 0x602);
    assert_eq!(fadt[128], 1);
    // Sleep control register at 0x600.
    assert_eq!(u64_at(fadt, 244 + 4), 0x600);
}

#[test]
fn madt_lists_one_lapic_per_cpu_and_the_ioapic() {
    for cpus in [1u8, 2, 8] {
        let mem = memory();
        write_tables(&mem, GuestAddress(BASE), 0x20000, &platform(cpus)).expect("tables");
        let madt = walk(&mem).remove(1).1;
        assert_eq!(u32_at(&madt, 36), 0xfee0_0000);
        let mut lapic_ids = Vec::new();
        let mut ioapics = 0;
        let mut off = 44;
        while off < madt.len() {
            let (kind, len) = (madt[off], madt[off + 1] as usize);
            match kind {
                0 => lapic_ids.push(madt[off + 3]),
                1 => {
                    ioapics += 1;
                    assert_eq!(u32_at(&madt, off + 4), 0xfec0_0000);
                }
                _ => {}
            }
            off += len;
        }
        assert_eq!(lapic_ids, (0..cpus).collect::<Vec<_>>());
        assert_eq!(ioapics, 1);
    }
}

#[test]
fn dsdt_has_s5_serial_and_pvpanic() {
    let mem = memory();
    write_tables(&mem, GuestAddress(BASE), 0x20000, &platform(1)).expect("tables");
    let fadt = walk(&mem).remove(0).1;
    let dsdt = table(&mem, u64_at(fadt.as_slice(), 140));
    let has = |needle: &[u8]| dsdt.windows(needle.len()).any(|w| w == needle);
    assert!(has(b"_S5_"));
    assert!(has(b"COM1"));
    assert!(has(b"QEMU0001"));
    // EISA ID of PNP0501, as AML encodes it.
    assert!(has(&[0x0c, 0x41, 0xd0, 0x05, 0x01]));
}

#[test]
fn too_small_area_is_refused() {
    let mem = memory();
    let err = write_tables(&mem, GuestAddress(BASE), 64, &platform(1)).expect_err("too small");
    assert!(matches!(err, AcpiError::TooLarge { .. }), "{err}");
}

fn with_pci_and_iommu(cpus: u8) -> Platform {
    Platform {
        pci: Some(PciHostBridge {
            ecam_base: 0xe000_0000,
            bus_start: 0,
            bus_end: 0,
            mmio32: (0xc000_0000, 0x2000_0000),
            mmio64: (0x1_0000_0000, 0x10_0000_0000),
            io: (0x1000, 0xffff),
        }),
        iommu: Some(IommuTopology {
            iommu_bdf: 1 << 3,
            endpoints: vec![2 << 3, 3 << 3],
        }),
        ..platform(cpus)
    }
}

#[test]
fn pci_adds_mcfg_and_a_host_bridge() {
    let mem = memory();
    write_tables(&mem, GuestAddress(BASE), 0x1f000, &with_pci_and_iommu(2)).expect("tables");
    let tables = walk(&mem);
    let mcfg = &tables.iter().find(|(n, _)| n == "MCFG").expect("MCFG").1;
    // One allocation: base address, segment 0, buses 0-0.
    assert_eq!(mcfg.len(), 44 + 16);
    assert_eq!(u64_at(mcfg, 44), 0xe000_0000);
    assert_eq!((mcfg[54], mcfg[55]), (0, 0));
    let fadt = &tables[0].1;
    let dsdt = table(&mem, u64_at(fadt, 140));
    let has = |needle: &[u8]| dsdt.windows(needle.len()).any(|w| w == needle);
    assert!(has(b"PCI0"));
    assert!(has(&[0x0c, 0x41, 0xd0, 0x0a, 0x08]), "PNP0A08");
}

#[test]
fn viot_lists_the_iommu_and_exactly_its_endpoints() {
    let mem = memory();
    write_tables(&mem, GuestAddress(BASE), 0x1f000, &with_pci_and_iommu(1)).expect("tables");
    let tables = walk(&mem);
    let viot = &tables.iter().find(|(n, _)| n == "VIOT").expect("VIOT").1;
    let node_count = u16::from_le_bytes([viot[36], viot[37]]);
    assert_eq!(node_count, 3, "one IOMMU node + two PCI range nodes");
    let mut off = u16::from_le_bytes([viot[38], viot[39]]) as usize;
    let mut iommu_offset = None;
    let mut ranges = Vec::new();
    for _ in 0..node_count {
        let kind = viot[off];
        let len = u16::from_le_bytes([viot[off + 2], viot[off + 3]]) as usize;
        match kind {
            // virtio-pci IOMMU: segment at +4, BDF at +6.
            3 => {
                iommu_offset = Some(off);
                assert_eq!(u16::from_le_bytes([viot[off + 6], viot[off + 7]]), 1 << 3);
            }
            // PCI range: endpoint start at +4, BDF start/end at +12/+14, output node at +16.
            1 => ranges.push((
                u32_at(viot, off + 4),
                u16::from_le_bytes([viot[off + 12], viot[off + 13]]),
                u16::from_le_bytes([viot[off + 14], viot[off + 15]]),
                u16::from_le_bytes([viot[off + 16], viot[off + 17]]),
            )),
            other => panic!("unexpected VIOT node type {other}"),
        }
        off += len;
    }
    let iommu = iommu_offset.expect("IOMMU node") as u16;
    assert_eq!(ranges, vec![(16, 16, 16, iommu), (24, 24, 24, iommu)]);
}

#[test]
fn hotplug_adds_the_ged_the_registers_and_one_ejectable_device_per_slot() {
    let mem = memory();
    let platform = Platform {
        hotplug: Some(PciHotplug {
            registers: (0xe010_0000, 0x1000),
            gsi: 5,
            slots: vec![4, 0x1d],
        }),
        ..with_pci_and_iommu(1)
    };
    write_tables(&mem, GuestAddress(BASE), 0x1f000, &platform).expect("tables");
    let fadt = walk(&mem).remove(0).1;
    let dsdt = table(&mem, u64_at(fadt.as_slice(), 140));
    let has = |needle: &[u8]| dsdt.windows(needle.len()).any(|w| w == needle);
    let count = |needle: &[u8]| dsdt.windows(needle.len()).filter(|w| *w == needle).count();
    assert!(has(b"ACPI0013"), "the GED");
    assert!(has(b"_EVT"));
    // Extended interrupt descriptor: consumer, edge, active high, GSI 5.
    assert!(has(&[0x89, 6, 0, 0b0011, 1, 5, 0, 0, 0]));
    // OperationRegion (PHPR, SystemMemory, 0xe0100000, 12).
    assert!(has(&[
        0x5b, 0x80, b'P', b'H', b'P', b'R', 0, 0x0c, 0x00, 0x00, 0x10, 0xe0, 0x0a, 12
    ]));
    for field in [b"PCIU", b"PCID", b"B0EJ"] {
        assert!(has(field), "{}", String::from_utf8_lossy(field));
    }
    // Memory32Fixed reserving the register page.
    assert!(has(&[
        0x86, 9, 0, 1, 0x00, 0x00, 0x10, 0xe0, 0x00, 0x10, 0, 0
    ]));
    for (name, adr) in [(b"S04_", 4u8), (b"S1D_", 0x1d)] {
        // Device (Snn) with Name (_ADR, slot << 16): a DWord constant.
        let at = dsdt
            .windows(4)
            .position(|w| w == name)
            .expect("slot device");
        assert_eq!(&dsdt[at - 3..at - 1], &[0x5b, 0x82], "a Device");
        assert!(has(&[b'_', b'A', b'D', b'R', 0x0c, 0, 0, adr, 0]));
        // Notified twice by PSCN (device check, eject request) plus the
        // device's own name.
        assert_eq!(count(name), 3);
    }
    assert_eq!(count(b"_EJ0"), 2);
    assert!(has(b"PSCN"));
}
