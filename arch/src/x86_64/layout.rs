//! The x86_64 guest physical address map and legacy I/O port assignments.
//!
//! Every fixed guest address minivmm uses is defined here, so that one file
//! answers "what lives where". RAM is split around the 32-bit MMIO hole:
//! `[0, 640 KiB)` and `[1 MiB, min(size, 3 GiB))` below it, the rest from
//! 4 GiB up.

use vm_memory::GuestAddress;

/// Boot GDT (the 64-bit boot protocol needs `__BOOT_CS`/`__BOOT_DS`).
pub const BOOT_GDT_START: u64 = 0x500;
/// Boot IDT: one null descriptor, so an early fault triple-faults cleanly.
pub const BOOT_IDT_START: u64 = 0x520;
/// Zero page (`struct boot_params`).
pub const ZERO_PAGE_START: u64 = 0x7000;
/// Initial stack pointer of the boot vCPU.
pub const BOOT_STACK_POINTER: u64 = 0x8ff0;
/// Page map level 4 of the boot identity mapping.
pub const PML4_START: u64 = 0x9000;
/// Page directory pointer table of the boot identity mapping.
pub const PDPTE_START: u64 = 0xa000;
/// First of the page directories (2 MiB pages) of the boot identity mapping.
pub const PDE_START: u64 = 0xb000;
/// How much of the address space the boot page tables identity-map.
pub const BOOT_IDENTITY_MAP_SIZE: u64 = 4 << 30;
/// Kernel command line.
pub const CMDLINE_START: u64 = 0x20000;
/// Largest command line minivmm accepts (the kernel may accept less).
pub const CMDLINE_MAX_SIZE: usize = 0x10000;
/// End of conventional low memory (start of the EBDA on PCs).
pub const LOW_RAM_END: u64 = 0x9fc00;
/// ACPI tables. The RSDP sits at the start, inside the BIOS area the kernel
/// scans, and its address is also handed over in the zero page.
pub const ACPI_START: u64 = 0xe0000;
/// Size of the ACPI table area.
pub const ACPI_SIZE: u64 = 0x1f000;
/// The BIOS reset vector (`f000:fff0`). Linux jumps here in real mode when
/// it reboots through "BIOS" (its choice on hardware-reduced ACPI without
/// EFI); minivmm puts a stub there that writes the ACPI reset register.
pub const RESET_VECTOR: u64 = 0xffff0;
/// Where the kernel is loaded and high memory starts.
pub const HIMEM_START: u64 = 0x10_0000;
/// Start of the 32-bit MMIO hole: no RAM between here and 4 GiB.
pub const MMIO_HOLE_START: u64 = 0xc000_0000;
/// End of the 32-bit MMIO hole.
pub const MMIO_HOLE_END: u64 = 1 << 32;
/// 32-bit PCI MMIO window (BARs that must sit below 4 GiB).
pub const PCI_MMIO32_START: u64 = MMIO_HOLE_START;
/// Size of the 32-bit PCI MMIO window.
pub const PCI_MMIO32_SIZE: u64 = 0x2000_0000;
/// ECAM (PCI Express enhanced configuration) for bus 0.
pub const PCI_ECAM_START: u64 = PCI_MMIO32_START + PCI_MMIO32_SIZE;
/// ECAM size: one bus.
pub const PCI_ECAM_SIZE: u64 = 1 << 20;
/// Size of the 64-bit PCI MMIO window.
pub const PCI_MMIO64_SIZE: u64 = crate::plan::PCI_MMIO64_SIZE;
/// Alignment of the 64-bit PCI MMIO window.
const PCI_MMIO64_ALIGN: u64 = 1 << 30;

/// The PCI hotplug registers (slots to check, slots to eject, eject
/// acknowledgment) that the DSDT's hotplug methods read and write.
pub const PCI_HOTPLUG_START: u64 = PCI_ECAM_START + PCI_ECAM_SIZE;
/// Size of the PCI hotplug register block (one page).
pub const PCI_HOTPLUG_SIZE: u64 = 0x1000;

/// The in-kernel IOAPIC.
pub const IOAPIC_START: u64 = 0xfec0_0000;
/// The local APIC of every vCPU.
pub const LAPIC_START: u64 = 0xfee0_0000;
/// Three pages KVM needs for the TSS on Intel hosts (`KVM_SET_TSS_ADDR`).
pub const KVM_TSS_START: u64 = 0xfffb_d000;
/// One page KVM needs for the real-mode identity map on Intel hosts.
pub const KVM_IDENTITY_MAP_START: u64 = 0xfffb_c000;
/// Highest address an initrd may end at when the kernel does not say.
pub const DEFAULT_INITRD_ADDR_MAX: u64 = 0x37ff_ffff;

/// Legacy I/O ports and interrupt lines of the platform devices.
pub mod pio {
    /// COM1 16550 UART.
    pub const COM1: u16 = 0x3f8;
    /// COM1 interrupt line (ISA IRQ, identity-mapped to the IOAPIC pin).
    pub const COM1_IRQ: u32 = 4;
    /// Size of a 16550 register block.
    pub const UART_SIZE: u16 = 8;
    /// i8042 data port.
    pub const I8042_DATA: u16 = 0x60;
    /// i8042 command/status port.
    pub const I8042_COMMAND: u16 = 0x64;
    /// PCI configuration mechanism #1 (0xCF8 address, 0xCFC data).
    pub const PCI_CONFIG: u16 = 0xcf8;
    /// pvpanic device (ACPI `QEMU0001`).
    pub const PVPANIC: u16 = 0x505;
    /// Interrupt line (IOAPIC pin, edge-triggered) of the ACPI Generic
    /// Event Device that signals PCI hotplug.
    pub const PCI_HOTPLUG_GSI: u32 = 5;
    /// ACPI hardware-reduced sleep control, sleep status and reset registers.
    pub const ACPI_PM: u16 = 0x600;
    /// Size of the ACPI power management block.
    pub const ACPI_PM_SIZE: u16 = 4;
}

const _: () = assert!(PCI_HOTPLUG_START + PCI_HOTPLUG_SIZE <= IOAPIC_START);

// The boot stack grows down from between the zero page and the page tables.
const _: () =
    assert!(BOOT_STACK_POINTER < PML4_START && BOOT_STACK_POINTER > ZERO_PAGE_START + 0x1000);

pub use crate::RamRegion;

/// Splits `mem_size` bytes of guest RAM around the 32-bit MMIO hole.
///
/// The first region starts at 0 and covers low memory, the legacy BIOS
/// area and up to the hole; anything beyond lands at 4 GiB. The legacy area
/// between 640 KiB and 1 MiB is backed by memory (it holds the ACPI tables)
/// but reported as reserved in the e820 map.
pub fn ram_regions(mem_size: u64) -> Vec<RamRegion> {
    let below = mem_size.min(MMIO_HOLE_START);
    let mut regions = vec![RamRegion {
        start: GuestAddress(0),
        size: below,
    }];
    if mem_size > below {
        regions.push(RamRegion {
            start: GuestAddress(MMIO_HOLE_END),
            size: mem_size - below,
        });
    }
    regions
}

/// The 64-bit PCI MMIO window: above guest RAM (and at least at 4 GiB),
/// 1 GiB aligned. Returns (base, size).
pub fn pci_mmio64_window(mem_size: u64) -> (u64, u64) {
    let ram_end = ram_regions(mem_size)
        .last()
        .map_or(MMIO_HOLE_END, RamRegion::end)
        .max(MMIO_HOLE_END);
    (ram_end.next_multiple_of(PCI_MMIO64_ALIGN), PCI_MMIO64_SIZE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pci_windows_stay_clear_of_ram_and_fixed_devices() {
        assert_eq!(pci_mmio64_window(512 << 20).0, 1 << 32);
        let (base, _) = pci_mmio64_window(6 << 30);
        assert!(base >= (1 << 32) + (3 << 30));
        assert_eq!(base % (1 << 30), 0);
    }

    #[test]
    fn small_guest_fits_below_the_hole() {
        let r = ram_regions(512 << 20);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].start, GuestAddress(0));
        assert_eq!(r[0].end(), 512 << 20);
    }

    #[test]
    fn large_guest_is_split_around_the_hole() {
        let r = ram_regions(8 << 30);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].end(), MMIO_HOLE_START);
        assert_eq!(r[1].start, GuestAddress(MMIO_HOLE_END));
        assert_eq!(r[0].size + r[1].size, 8 << 30);
    }

    #[test]
    fn fixed_areas_do_not_overlap() {
        let areas = [
            (BOOT_GDT_START, 0x20),
            (BOOT_IDT_START, 0x8),
            (ZERO_PAGE_START, 0x1000),
            (PML4_START, 0x1000),
            (PDPTE_START, 0x1000),
            (PDE_START, 0x1000 * (BOOT_IDENTITY_MAP_SIZE >> 30)),
            (CMDLINE_START, CMDLINE_MAX_SIZE as u64),
            (ACPI_START, ACPI_SIZE),
            (RESET_VECTOR, 16),
        ];
        for (i, a) in areas.iter().enumerate() {
            assert!(a.0 + a.1 <= HIMEM_START, "area {i} reaches the kernel");
            for b in &areas[i + 1..] {
                assert!(
                    a.0 + a.1 <= b.0 || b.0 + b.1 <= a.0,
                    "{a:x?} overlaps {b:x?}"
                );
            }
        }
    }
}
