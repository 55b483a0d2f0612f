//! The x86_64 guest address map: the planning core ([`crate::plan`]) over
//! x86's fixed parts.
//!
//! - Without host constraints the map is today's fixed layout
//!   ([`crate::x86_64::layout`]): RAM from 0 up to 3 GiB, the rest from
//!   4 GiB, the 64-bit PCI window 1 GiB-aligned above RAM.
//! - RAM that cannot stay below 3 GiB moves above 4 GiB, skipping host
//!   regions (e.g. AMD's HyperTransport hole below 1 TiB).
//! - The guest MSI window is always `0xfee00000-0xfeefffff`.
//! - Host regions in `[0, 64 MiB)` (boot data, ACPI tables, kernel) are
//!   refused whatever the flags.

#[cfg(test)]
mod tests;

pub use crate::plan::{
    FixedLow, GuestMap, Hole, HostConstraints, HostRegion, HostRegionKind, IdentityMap, IovaRange,
    PlanError, PlanInput, ResvKind, ResvRegion, Span, RAM_ALIGN,
};

use crate::plan::{Iv, Normalized, Platform};
use crate::x86_64::layout::{
    HIMEM_START, IOAPIC_START, KVM_IDENTITY_MAP_START, KVM_TSS_START, LAPIC_START, LOW_RAM_END,
    MMIO_HOLE_END, MMIO_HOLE_START, PCI_ECAM_SIZE, PCI_ECAM_START, PCI_HOTPLUG_SIZE,
    PCI_HOTPLUG_START, PCI_MMIO32_SIZE, PCI_MMIO32_START,
};

/// The guest's fixed low memory: boot data, ACPI tables, the BIOS area and
/// room for the kernel loaded at 1 MiB. Host regions here are fatal.
pub const FIXED_LOW_END: u64 = 64 << 20;
/// Guest physical address bits the planner may use (x86-64's maximum).
pub const MAX_GUEST_PHYS_BITS: u32 = 52;
/// The guest MSI window (the local APIC range on x86).
pub const MSI_WINDOW: Span = Span {
    start: LAPIC_START,
    end: 0xfeef_ffff,
};

/// x86's fixed parts.
struct X86;

fn span(start: u64, size: u64) -> Span {
    Span {
        start,
        end: start + size - 1,
    }
}

impl Platform for X86 {
    fn addr_bits(&self) -> u32 {
        MAX_GUEST_PHYS_BITS
    }

    fn fixed_low(&self) -> FixedLow {
        FixedLow {
            span: span(0, FIXED_LOW_END),
            contents: "boot data, ACPI tables, kernel",
        }
    }

    fn ram_forbidden(&self) -> Vec<Iv> {
        vec![(MMIO_HOLE_START.into(), MMIO_HOLE_END.into())]
    }

    fn mmio64_floor(&self) -> u64 {
        MMIO_HOLE_END
    }

    fn mmio32(&self) -> (u64, u64) {
        (PCI_MMIO32_START, PCI_MMIO32_SIZE)
    }

    fn ecam(&self) -> (u64, u64) {
        (PCI_ECAM_START, PCI_ECAM_SIZE)
    }

    fn msi_window(&self, _host: &Normalized) -> Result<Span, PlanError> {
        Ok(MSI_WINDOW)
    }

    /// The fixed platform areas of the 32-bit MMIO hole, with their names.
    fn areas(&self, msi_window: Span) -> Vec<(&'static str, Span)> {
        vec![
            (
                "32-bit PCI MMIO window",
                span(PCI_MMIO32_START, PCI_MMIO32_SIZE),
            ),
            (
                "PCI ECAM (bus 0 config space)",
                span(PCI_ECAM_START, PCI_ECAM_SIZE),
            ),
            (
                "PCI hotplug registers",
                span(PCI_HOTPLUG_START, PCI_HOTPLUG_SIZE),
            ),
            ("IOAPIC", span(IOAPIC_START, 0x1000)),
            ("LAPIC and guest MSI window", msi_window),
            (
                "KVM identity map and TSS pages",
                span(
                    KVM_IDENTITY_MAP_START,
                    KVM_TSS_START + 0x3000 - KVM_IDENTITY_MAP_START,
                ),
            ),
        ]
    }

    fn ram_holes(&self) -> Vec<Hole> {
        vec![Hole {
            span: span(LOW_RAM_END, HIMEM_START - LOW_RAM_END),
            reason: "legacy BIOS area (RAM, reserved in the e820 map: ACPI tables, reset vector)"
                .to_string(),
        }]
    }

    fn holes_floor(&self) -> u64 {
        0
    }

    fn holes_top(&self) -> u64 {
        MMIO_HOLE_END
    }

    fn unused_reason(&self, start: u128) -> Option<&'static str> {
        (u128::from(MMIO_HOLE_START)..u128::from(MMIO_HOLE_END))
            .contains(&start)
            .then_some("32-bit MMIO hole (unused)")
    }
}

/// Plans the x86_64 guest physical address map for `input` on a host with
/// the constraints `host`. Pure: no I/O, and the same inputs (in any order)
/// always give the same map.
pub fn plan(input: &PlanInput, host: &HostConstraints) -> Result<GuestMap, PlanError> {
    crate::plan::plan(&X86, input, host)
}
