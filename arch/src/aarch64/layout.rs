//! The arm64 guest physical (IPA) address map's fixed parts and interrupt
//! numbers.
//!
//! The first GiB is the device area, RAM starts at 1 GiB (as on QEMU's
//! `virt`):
//!
//! | IPA | size | what |
//! |---|---|---|
//! | `0x0800_0000` | 1 MiB | kept free: Linux's SMMUv3 software MSI window on arm64 hosts |
//! | `0x0900_0000` | 4 KiB | 16550 UART (SPI 1) |
//! | `0x0901_0000` | 4 KiB | pvpanic-mmio |
//! | `0x0a00_0000` | 64 KiB | GICv3 distributor |
//! | `0x0a10_0000` | 32 MiB | GICv3 redistributors, 128 KiB per vCPU for [`MAX_CPUS`] |
//! | [`ITS_CANDIDATES`] | 128 KiB | the ITS, at the first candidate the host allows |
//! | `0x1000_0000` | 1 MiB | PCI ECAM, bus 0 |
//! | `0x1100_0000` | 60 KiB | PCI I/O window (PCI I/O `0x1000-0xffff`) |
//! | `0x2000_0000` | 512 MiB | 32-bit PCI MMIO window |
//! | `0x4000_0000` | | RAM |
//!
//! Nothing here depends on the vCPU count or the device list: the
//! redistributor area is sized for the most vCPUs minivmm supports, so the
//! ITS (and the guest's MSI doorbell) never moves with them.

/// Most vCPUs an arm64 guest may have (the redistributor area is sized for
/// them).
pub const MAX_CPUS: u64 = 256;

/// The 16550 UART (byte-wide registers).
pub const UART_START: u64 = 0x0900_0000;
/// Size of the UART's page.
pub const UART_SIZE: u64 = 0x1000;
/// The UART's interrupt, an SPI (INTID 32 + 1).
pub const UART_SPI: u32 = 1;
/// The pvpanic-mmio device (`qemu,pvpanic-mmio`).
pub const PVPANIC_START: u64 = 0x0901_0000;
/// Size of the pvpanic page.
pub const PVPANIC_SIZE: u64 = 0x1000;

/// The GICv3 distributor.
pub const GICD_START: u64 = 0x0a00_0000;
/// Size of the distributor.
pub const GICD_SIZE: u64 = 0x1_0000;
/// The redistributors (RD_base + SGI_base frames per vCPU).
pub const GICR_START: u64 = 0x0a10_0000;
/// Size of one vCPU's redistributor.
pub const GICR_SIZE_PER_CPU: u64 = 0x2_0000;
/// Size of the redistributor area.
pub const GICR_SIZE: u64 = GICR_SIZE_PER_CPU * MAX_CPUS;

/// Size of the ITS: its control frame and its translation frame.
pub const ITS_SIZE: u64 = 0x2_0000;
/// Offset of the translation frame, the page holding GITS_TRANSLATER:
/// the guest's MSI doorbell.
pub const ITS_TRANSLATION_FRAME: u64 = 0x1_0000;
/// Size of the doorbell page (the translation frame).
pub const DOORBELL_SIZE: u64 = 0x1_0000;
/// Offset of GITS_TRANSLATER in the ITS.
pub const GITS_TRANSLATER: u64 = ITS_TRANSLATION_FRAME + 0x40;
/// Where the ITS may go, in order: the planner takes the first whose
/// doorbell page no host region overlaps and the host IOVA ranges cover.
/// 16 MiB apart, so one host window blocks at most one of them; none in
/// Linux's SMMUv3 software MSI window `0x08000000-0x080fffff`.
pub const ITS_CANDIDATES: [u64; 4] = [0x0c20_0000, 0x0d00_0000, 0x0e00_0000, 0x0f00_0000];

/// PCI ECAM for bus 0.
pub const PCI_ECAM_START: u64 = 0x1000_0000;
/// ECAM size: one bus.
pub const PCI_ECAM_SIZE: u64 = 1 << 20;
/// Where the PCI I/O window (PCI I/O addresses from `0x1000`) is mapped.
pub const PCI_IO_START: u64 = 0x1100_0000;
/// Size of the PCI I/O window.
pub const PCI_IO_SIZE: u64 = 0xf000;
/// The 32-bit PCI MMIO window.
pub const PCI_MMIO32_START: u64 = 0x2000_0000;
/// Size of the 32-bit PCI MMIO window.
pub const PCI_MMIO32_SIZE: u64 = 0x2000_0000;

/// Start of RAM; everything below is the device area.
pub const RAM_START: u64 = 0x4000_0000;
/// The fixed start of RAM that holds the kernel Image and the device tree.
pub const FIXED_LOW_SIZE: u64 = 64 << 20;
/// Lowest base of the 64-bit PCI window.
pub const MMIO64_FLOOR: u64 = 1 << 32;
/// Guest physical address bits: KVM's default IPA size on arm64 (40 bits,
/// 1 TiB), which needs no `KVM_CAP_ARM_VM_IPA_SIZE`.
pub const IPA_BITS: u32 = 40;

/// Largest device tree minivmm writes (the arm64 boot protocol's limit).
pub const FDT_MAX_SIZE: u64 = 2 << 20;

/// The architected timer's PPIs (INTID 16 + n): secure and non-secure
/// physical, virtual, hypervisor.
pub const TIMER_PPIS: [u32; 4] = [13, 14, 11, 10];
/// The GIC maintenance interrupt (a PPI).
pub const GIC_MAINTENANCE_PPI: u32 = 9;
/// SPIs the platform devices use; MSIs need none.
pub const PLATFORM_SPIS: u32 = 2;

/// The ITS base for a doorbell page planned at `doorbell`.
pub fn its_base(doorbell: u64) -> u64 {
    doorbell - ITS_TRANSLATION_FRAME
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_areas_are_ordered_and_disjoint() {
        let mut areas = vec![
            (UART_START, UART_SIZE),
            (PVPANIC_START, PVPANIC_SIZE),
            (GICD_START, GICD_SIZE),
            (GICR_START, GICR_SIZE),
            (PCI_ECAM_START, PCI_ECAM_SIZE),
            (PCI_IO_START, PCI_IO_SIZE),
            (PCI_MMIO32_START, PCI_MMIO32_SIZE),
        ];
        areas.extend(ITS_CANDIDATES.iter().map(|b| (*b, ITS_SIZE)));
        areas.sort();
        for pair in areas.windows(2) {
            assert!(pair[0].0 + pair[0].1 <= pair[1].0, "{pair:x?}");
        }
        let last = areas.last().expect("areas");
        assert!(last.0 + last.1 <= RAM_START);
        assert!(
            areas[0].0 >= 0x0810_0000,
            "clear of the SMMUv3 SW_MSI window"
        );
        for base in ITS_CANDIDATES {
            assert_eq!(base % 0x1_0000, 0, "ITS frames are 64 KiB aligned");
            assert_eq!(its_base(base + ITS_TRANSLATION_FRAME), base);
        }
    }
}
