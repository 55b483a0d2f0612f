//! The arm64 guest's device tree, written with vm-fdt from the planned map
//! it is handed: memory, cpus (PSCI), the architected timer, the GICv3 with
//! its ITS (`msi-controller`), the UART with `stdout-path`, pvpanic,
//! `chosen` (bootargs, initrd), and the `pci-host-ecam-generic` bridge with
//! its windows, `msi-map` (every requester ID to the ITS) and `iommu-map`
//! (the requester IDs behind the virtio-iommu, a `virtio,pci-iommu` child
//! node). Nothing is decided here: every address comes from the map and
//! the layout, every device from the description.

use vm_fdt::{FdtWriter, FdtWriterResult};

use super::layout::{
    GICD_SIZE, GICD_START, GICR_SIZE, GICR_START, GIC_MAINTENANCE_PPI, PCI_IO_SIZE, PCI_IO_START,
    PVPANIC_START, TIMER_PPIS, UART_SIZE, UART_SPI, UART_START,
};
use crate::plan::GuestMap;

const PHANDLE_GIC: u32 = 1;
const PHANDLE_ITS: u32 = 2;
const PHANDLE_IOMMU: u32 = 3;

const GIC_SPI: u32 = 0;
const GIC_PPI: u32 = 1;
const IRQ_TYPE_EDGE_RISING: u32 = 1;
const IRQ_TYPE_LEVEL_HIGH: u32 = 4;
const IRQ_TYPE_LEVEL_LOW: u32 = 8;

/// PCI address space codes in the first cell of `ranges`.
const PCI_SPACE_IO: u32 = 0x0100_0000;
const PCI_SPACE_MEM32: u32 = 0x0200_0000;
const PCI_SPACE_MEM64: u32 = 0x0300_0000;
/// First PCI I/O address of the I/O window.
const PCI_IO_BUS_START: u64 = 0x1000;
/// Requester IDs on bus 0.
const BUS0_RIDS: u32 = 0x100;
/// Clock of the 16550 (the 8250 driver derives divisors from it).
const UART_CLOCK: u32 = 1_843_200;

/// Device tree failures.
#[derive(Debug, thiserror::Error)]
pub enum FdtError {
    /// vm-fdt refused a node or property.
    #[error("cannot write the device tree")]
    Write(#[source] vm_fdt::Error),
}

impl From<vm_fdt::Error> for FdtError {
    fn from(e: vm_fdt::Error) -> Self {
        Self::Write(e)
    }
}

/// The virtio-iommu on PCI bus 0 and the endpoints behind it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FdtIommu {
    /// Its BDF.
    pub bdf: u16,
    /// The endpoints' BDFs (their requester and endpoint IDs).
    pub endpoints: Vec<u16>,
}

/// What the device tree describes besides the map.
#[derive(Clone, Debug)]
pub struct FdtConfig<'a> {
    /// The planned guest address map.
    pub map: &'a GuestMap,
    /// Every vCPU's MPIDR_EL1, in vCPU order.
    pub mpidrs: &'a [u64],
    /// The kernel command line.
    pub cmdline: &'a str,
    /// The initrd's guest address and size.
    pub initrd: Option<(u64, u64)>,
    /// The virtio-iommu, when there is one.
    pub iommu: Option<FdtIommu>,
}

fn cells(values: &[u64]) -> Vec<u32> {
    values
        .iter()
        .flat_map(|v| [(v >> 32) as u32, *v as u32])
        .collect()
}

/// Writes the device tree blob for `config`.
pub fn create_fdt(config: &FdtConfig<'_>) -> Result<Vec<u8>, FdtError> {
    let mut fdt = FdtWriter::new()?;
    let root = fdt.begin_node("")?;
    fdt.property_string("compatible", "linux,minivmm")?;
    fdt.property_u32("#address-cells", 2)?;
    fdt.property_u32("#size-cells", 2)?;
    fdt.property_u32("interrupt-parent", PHANDLE_GIC)?;
    chosen(&mut fdt, config)?;
    memory(&mut fdt, config.map)?;
    cpus(&mut fdt, config.mpidrs)?;
    psci(&mut fdt)?;
    timer(&mut fdt)?;
    gic(&mut fdt, config.map)?;
    uart(&mut fdt)?;
    pvpanic(&mut fdt)?;
    pci(&mut fdt, config)?;
    fdt.end_node(root)?;
    Ok(fdt.finish()?)
}

fn uart_node_name() -> String {
    format!("uart@{UART_START:x}")
}

fn chosen(fdt: &mut FdtWriter, config: &FdtConfig<'_>) -> FdtWriterResult<()> {
    let node = fdt.begin_node("chosen")?;
    fdt.property_string("bootargs", config.cmdline)?;
    fdt.property_string("stdout-path", &format!("/{}", uart_node_name()))?;
    if let Some((start, size)) = config.initrd {
        fdt.property_u64("linux,initrd-start", start)?;
        fdt.property_u64("linux,initrd-end", start + size)?;
    }
    fdt.end_node(node)
}

fn memory(fdt: &mut FdtWriter, map: &GuestMap) -> FdtWriterResult<()> {
    let start = map.ram.first().map_or(0, |r| r.start.0);
    let node = fdt.begin_node(&format!("memory@{start:x}"))?;
    fdt.property_string("device_type", "memory")?;
    let reg: Vec<u64> = map.ram.iter().flat_map(|r| [r.start.0, r.size]).collect();
    fdt.property_array_u64("reg", &reg)?;
    fdt.end_node(node)
}

fn cpus(fdt: &mut FdtWriter, mpidrs: &[u64]) -> FdtWriterResult<()> {
    let node = fdt.begin_node("cpus")?;
    fdt.property_u32("#address-cells", 1)?;
    fdt.property_u32("#size-cells", 0)?;
    for mpidr in mpidrs {
        // Aff2..Aff0; minivmm's vCPU counts never reach Aff3.
        let reg = (mpidr & 0x00ff_ffff) as u32;
        let cpu = fdt.begin_node(&format!("cpu@{reg:x}"))?;
        fdt.property_string("device_type", "cpu")?;
        fdt.property_string("compatible", "arm,arm-v8")?;
        fdt.property_string("enable-method", "psci")?;
        fdt.property_u32("reg", reg)?;
        fdt.end_node(cpu)?;
    }
    fdt.end_node(node)
}

fn psci(fdt: &mut FdtWriter) -> FdtWriterResult<()> {
    let node = fdt.begin_node("psci")?;
    fdt.property_string_list(
        "compatible",
        vec!["arm,psci-0.2".to_string(), "arm,psci".to_string()],
    )?;
    fdt.property_string("method", "hvc")?;
    fdt.end_node(node)
}

fn timer(fdt: &mut FdtWriter) -> FdtWriterResult<()> {
    let node = fdt.begin_node("timer")?;
    fdt.property_string("compatible", "arm,armv8-timer")?;
    fdt.property_null("always-on")?;
    let irqs: Vec<u32> = TIMER_PPIS
        .iter()
        .flat_map(|ppi| [GIC_PPI, *ppi, IRQ_TYPE_LEVEL_LOW])
        .collect();
    fdt.property_array_u32("interrupts", &irqs)?;
    fdt.end_node(node)
}

fn gic(fdt: &mut FdtWriter, map: &GuestMap) -> FdtWriterResult<()> {
    let node = fdt.begin_node(&format!("intc@{GICD_START:x}"))?;
    fdt.property_string("compatible", "arm,gic-v3")?;
    fdt.property_null("interrupt-controller")?;
    fdt.property_u32("#interrupt-cells", 3)?;
    fdt.property_array_u64("reg", &[GICD_START, GICD_SIZE, GICR_START, GICR_SIZE])?;
    fdt.property_u32("#redistributor-regions", 1)?;
    fdt.property_u32("#address-cells", 2)?;
    fdt.property_u32("#size-cells", 2)?;
    fdt.property_null("ranges")?;
    fdt.property_array_u32(
        "interrupts",
        &[GIC_PPI, GIC_MAINTENANCE_PPI, IRQ_TYPE_LEVEL_HIGH],
    )?;
    fdt.property_u32("phandle", PHANDLE_GIC)?;
    let (its, its_size) = super::plan::its(map);
    let child = fdt.begin_node(&format!("msi-controller@{its:x}"))?;
    fdt.property_string("compatible", "arm,gic-v3-its")?;
    fdt.property_null("msi-controller")?;
    fdt.property_u32("#msi-cells", 1)?;
    fdt.property_array_u64("reg", &[its, its_size])?;
    fdt.property_u32("phandle", PHANDLE_ITS)?;
    fdt.end_node(child)?;
    fdt.end_node(node)
}

fn uart(fdt: &mut FdtWriter) -> FdtWriterResult<()> {
    let node = fdt.begin_node(&uart_node_name())?;
    fdt.property_string("compatible", "ns16550a")?;
    fdt.property_array_u64("reg", &[UART_START, UART_SIZE])?;
    fdt.property_u32("clock-frequency", UART_CLOCK)?;
    // The UART's irqfd pulses its line: edge-triggered.
    fdt.property_array_u32("interrupts", &[GIC_SPI, UART_SPI, IRQ_TYPE_EDGE_RISING])?;
    fdt.end_node(node)
}

fn pvpanic(fdt: &mut FdtWriter) -> FdtWriterResult<()> {
    let node = fdt.begin_node(&format!("pvpanic@{PVPANIC_START:x}"))?;
    fdt.property_string("compatible", "qemu,pvpanic-mmio")?;
    fdt.property_array_u64("reg", &[PVPANIC_START, 2])?;
    fdt.end_node(node)
}

fn pci(fdt: &mut FdtWriter, config: &FdtConfig<'_>) -> FdtWriterResult<()> {
    let map = config.map;
    let (ecam, ecam_size) = map.ecam;
    let node = fdt.begin_node(&format!("pcie@{ecam:x}"))?;
    fdt.property_string("compatible", "pci-host-ecam-generic")?;
    fdt.property_string("device_type", "pci")?;
    fdt.property_u32("#address-cells", 3)?;
    fdt.property_u32("#size-cells", 2)?;
    fdt.property_array_u32("bus-range", &[0, 0])?;
    fdt.property_u32("linux,pci-domain", 0)?;
    fdt.property_array_u64("reg", &[ecam, ecam_size])?;
    fdt.property_null("dma-coherent")?;
    let mut ranges = Vec::new();
    for (space, bus, cpu, size) in [
        (PCI_SPACE_IO, PCI_IO_BUS_START, PCI_IO_START, PCI_IO_SIZE),
        (PCI_SPACE_MEM32, map.mmio32.0, map.mmio32.0, map.mmio32.1),
        (PCI_SPACE_MEM64, map.mmio64.0, map.mmio64.0, map.mmio64.1),
    ] {
        ranges.push(space);
        ranges.extend(cells(&[bus, cpu, size]));
    }
    fdt.property_array_u32("ranges", &ranges)?;
    // Every requester ID on bus 0 is its ITS device ID.
    fdt.property_array_u32("msi-map", &[0, PHANDLE_ITS, 0, BUS0_RIDS])?;
    if let Some(iommu) = &config.iommu {
        let mut endpoints = iommu.endpoints.clone();
        endpoints.sort_unstable();
        endpoints.dedup();
        let map: Vec<u32> = endpoints
            .iter()
            .flat_map(|rid| [u32::from(*rid), PHANDLE_IOMMU, u32::from(*rid), 1])
            .collect();
        if !map.is_empty() {
            fdt.property_array_u32("iommu-map", &map)?;
        }
        let (slot, function) = (iommu.bdf >> 3, iommu.bdf & 7);
        let child = fdt.begin_node(&format!("iommu@{slot:x},{function:x}"))?;
        fdt.property_string("compatible", "virtio,pci-iommu")?;
        fdt.property_array_u32("reg", &[u32::from(iommu.bdf) << 8, 0, 0, 0, 0])?;
        fdt.property_u32("#iommu-cells", 1)?;
        fdt.property_u32("phandle", PHANDLE_IOMMU)?;
        fdt.end_node(child)?;
    }
    fdt.end_node(node)
}

#[cfg(test)]
mod tests;
