//! The device tree, read back with the `fdt` parser.

use super::*;
use crate::aarch64::layout::FDT_MAX_SIZE;
use crate::aarch64::plan::{its, plan};
use crate::plan::{HostConstraints, HostRegion, HostRegionKind, PlanInput, Span};

fn be32s(bytes: &[u8]) -> Vec<u32> {
    bytes
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn be64(bytes: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[..8]);
    u64::from_be_bytes(b)
}

fn blob(map: &GuestMap, iommu: Option<FdtIommu>, mpidrs: &[u64]) -> Vec<u8> {
    create_fdt(&FdtConfig {
        map,
        mpidrs,
        cmdline: "console=ttyS0 quiet",
        initrd: Some((0x4400_0000, 0x10_0000)),
        iommu,
    })
    .expect("fdt")
}

fn prop<'a>(fdt: &'a fdt::Fdt<'a>, node: &str, name: &str) -> &'a [u8] {
    fdt.find_node(node)
        .unwrap_or_else(|| panic!("no node {node}"))
        .property(name)
        .unwrap_or_else(|| panic!("no {name} in {node}"))
        .value
}

#[test]
fn describes_the_planned_map() {
    let map = plan(&PlanInput::new(1 << 30), &HostConstraints::default()).expect("plan");
    let mpidrs: Vec<u64> = (0..8)
        .map(|i| 0x8000_0000 | (i % 16) | ((i / 16) << 8))
        .collect();
    let iommu = FdtIommu {
        bdf: 0x08,
        endpoints: vec![0x18, 0x10],
    };
    let bytes = blob(&map, Some(iommu), &mpidrs);
    assert!(bytes.len() as u64 <= FDT_MAX_SIZE);
    let fdt = fdt::Fdt::new(&bytes).expect("valid blob");

    let chosen = fdt.chosen();
    assert_eq!(chosen.bootargs(), Some("console=ttyS0 quiet"));
    assert_eq!(
        std::str::from_utf8(prop(&fdt, "/chosen", "stdout-path")).expect("utf-8"),
        "/uart@9000000\0"
    );
    assert_eq!(
        be64(prop(&fdt, "/chosen", "linux,initrd-start")),
        0x4400_0000
    );
    assert_eq!(be64(prop(&fdt, "/chosen", "linux,initrd-end")), 0x4410_0000);

    let ram: Vec<(usize, Option<usize>)> = fdt
        .memory()
        .regions()
        .map(|r| (r.starting_address as usize, r.size))
        .collect();
    assert_eq!(ram, vec![(0x4000_0000, Some(1 << 30))]);

    let cpus: Vec<usize> = fdt.cpus().map(|c| c.ids().first()).collect();
    assert_eq!(cpus, (0..8).collect::<Vec<_>>());
    assert!(fdt.find_compatible(&["arm,psci-0.2"]).is_some());
    assert!(fdt.find_compatible(&["arm,armv8-timer"]).is_some());

    let gic = fdt.find_compatible(&["arm,gic-v3"]).expect("gic");
    let regs: Vec<usize> = gic
        .reg()
        .expect("reg")
        .map(|r| r.starting_address as usize)
        .collect();
    assert_eq!(regs, vec![0x0a00_0000, 0x0a10_0000]);
    let its_node = fdt.find_compatible(&["arm,gic-v3-its"]).expect("its");
    assert!(its_node.property("msi-controller").is_some());
    let its_reg = its_node.reg().expect("reg").next().expect("one");
    assert_eq!(
        (
            its_reg.starting_address as u64,
            its_reg.size.map(|s| s as u64)
        ),
        (its(&map).0, Some(0x2_0000))
    );

    let uart = fdt.find_compatible(&["ns16550a"]).expect("uart");
    assert_eq!(
        be32s(uart.property("interrupts").expect("irq").value),
        vec![0, 1, 1]
    );
    assert!(fdt.find_compatible(&["qemu,pvpanic-mmio"]).is_some());

    let pci = "/pcie@10000000";
    assert_eq!(
        be32s(prop(&fdt, pci, "msi-map")),
        vec![0, 2, 0, 0x100],
        "every requester ID to the ITS"
    );
    assert_eq!(
        be32s(prop(&fdt, pci, "iommu-map")),
        vec![0x10, 3, 0x10, 1, 0x18, 3, 0x18, 1],
        "the endpoints behind the IOMMU, sorted"
    );
    let ranges = be32s(prop(&fdt, pci, "ranges"));
    assert_eq!(ranges.len(), 21);
    assert_eq!(
        &ranges[..7],
        &[0x0100_0000, 0, 0x1000, 0, 0x1100_0000, 0, 0xf000]
    );
    assert_eq!(ranges[14], 0x0300_0000);
    assert_eq!(
        (u64::from(ranges[15]) << 32) | u64::from(ranges[16]),
        map.mmio64.0
    );
    assert!(fdt
        .find_node(pci)
        .and_then(|n| n.property("dma-coherent"))
        .is_some());
    let viommu = fdt.find_compatible(&["virtio,pci-iommu"]).expect("viommu");
    assert_eq!(viommu.name, "iommu@1,0");
    assert_eq!(
        be32s(viommu.property("reg").expect("reg").value),
        vec![0x800, 0, 0, 0, 0]
    );
    assert_eq!(
        be32s(viommu.property("#iommu-cells").expect("cells").value),
        vec![1]
    );
}

#[test]
fn without_an_iommu_there_is_no_iommu_map() {
    let map = plan(&PlanInput::new(1 << 30), &HostConstraints::default()).expect("plan");
    let bytes = blob(&map, None, &[0x8000_0000]);
    let fdt = fdt::Fdt::new(&bytes).expect("valid blob");
    let pci = fdt.find_node("/pcie@10000000").expect("pci");
    assert!(pci.property("iommu-map").is_none());
    assert!(pci.property("msi-map").is_some());
    assert!(fdt.find_compatible(&["virtio,pci-iommu"]).is_none());
}

#[test]
fn the_its_follows_the_planned_doorbell() {
    let host = HostConstraints {
        regions: vec![HostRegion {
            span: Span::new(0x0c00_0000, 0x0cff_ffff).expect("span"),
            kind: HostRegionKind::Reserved,
            source: "hostB.regions".into(),
        }],
        ..Default::default()
    };
    let map = plan(&PlanInput::new(1 << 30), &host).expect("plan");
    let bytes = blob(&map, None, &[0x8000_0000]);
    let fdt = fdt::Fdt::new(&bytes).expect("valid blob");
    let its_node = fdt.find_compatible(&["arm,gic-v3-its"]).expect("its");
    assert_eq!(its_node.name, "msi-controller@d000000");
    // Same inputs, same blob, byte for byte.
    assert_eq!(blob(&map, None, &[0x8000_0000]), bytes);
}
