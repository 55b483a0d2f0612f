//! Initial register state of the boot vCPU for the 64-bit boot protocol:
//! long mode with an identity-mapped low 4 GiB, flat segments from the boot
//! GDT, and `rsi` pointing at the zero page.

use kvm_bindings::{kvm_fpu, kvm_regs, kvm_sregs};
use vm_memory::{Bytes, GuestAddress};

use super::gdt::{Descriptor, BOOT_CS, BOOT_DS, BOOT_GDT, BOOT_TSS};
use super::layout::{
    BOOT_GDT_START, BOOT_IDENTITY_MAP_SIZE, BOOT_IDT_START, BOOT_STACK_POINTER, PDE_START,
    PDPTE_START, PML4_START, ZERO_PAGE_START,
};
use super::GuestMemory;

/// Errors writing the boot structures into guest memory.
#[derive(Debug, thiserror::Error)]
pub enum RegsError {
    /// Guest memory does not cover a boot structure.
    #[error("guest memory does not cover the {0} at {1:#x}")]
    Write(&'static str, u64),
}

const X86_CR0_PE: u64 = 1 << 0;
const X86_CR0_ET: u64 = 1 << 4;
const X86_CR0_PG: u64 = 1 << 31;
const X86_CR4_PAE: u64 = 1 << 5;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;

const PTE_PRESENT: u64 = 1 << 0;
const PTE_WRITABLE: u64 = 1 << 1;
const PTE_HUGE: u64 = 1 << 7;
const HUGE_PAGE_SIZE: u64 = 2 << 20;
const ENTRIES_PER_TABLE: u64 = 512;

fn write<T: vm_memory::ByteValued>(
    mem: &GuestMemory,
    what: &'static str,
    addr: u64,
    val: T,
) -> Result<(), RegsError> {
    mem.write_obj(val, GuestAddress(addr))
        .map_err(|_| RegsError::Write(what, addr))
}

/// Writes the boot GDT and a null IDT into guest memory.
pub fn write_gdt_and_idt(mem: &GuestMemory) -> Result<(), RegsError> {
    for (i, desc) in BOOT_GDT.iter().enumerate() {
        write(
            mem,
            "boot GDT",
            BOOT_GDT_START + 8 * i as u64,
            desc.encode(),
        )?;
    }
    write(mem, "boot IDT", BOOT_IDT_START, 0u64)
}

/// Writes page tables identity-mapping the low [`BOOT_IDENTITY_MAP_SIZE`]
/// bytes with 2 MiB pages, rooted at [`PML4_START`].
pub fn write_identity_page_tables(mem: &GuestMemory) -> Result<(), RegsError> {
    let directories = BOOT_IDENTITY_MAP_SIZE / (HUGE_PAGE_SIZE * ENTRIES_PER_TABLE);
    let table_flags = PTE_PRESENT | PTE_WRITABLE;
    write(mem, "PML4", PML4_START, PDPTE_START | table_flags)?;
    for dir in 0..directories {
        let pd = PDE_START + dir * 0x1000;
        write(mem, "PDPTE", PDPTE_START + dir * 8, pd | table_flags)?;
        for entry in 0..ENTRIES_PER_TABLE {
            let page = (dir * ENTRIES_PER_TABLE + entry) * HUGE_PAGE_SIZE;
            write(mem, "PDE", pd + entry * 8, page | table_flags | PTE_HUGE)?;
        }
    }
    Ok(())
}

/// Special registers for 64-bit entry, derived from the vCPU's current ones.
pub fn long_mode_sregs(mut sregs: kvm_sregs) -> kvm_sregs {
    let code = BOOT_GDT[usize::from(BOOT_CS / 8)].to_kvm_segment(BOOT_CS);
    let data = BOOT_GDT[usize::from(BOOT_DS / 8)].to_kvm_segment(BOOT_DS);
    let tss = Descriptor::TSS.to_kvm_segment(BOOT_TSS);
    sregs.gdt.base = BOOT_GDT_START;
    sregs.gdt.limit = (8 * BOOT_GDT.len() - 1) as u16;
    sregs.idt.base = BOOT_IDT_START;
    sregs.idt.limit = 7;
    sregs.cs = code;
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = tss;
    sregs.cr0 = X86_CR0_PE | X86_CR0_ET | X86_CR0_PG;
    sregs.cr3 = PML4_START;
    sregs.cr4 = X86_CR4_PAE;
    sregs.efer = EFER_LME | EFER_LMA;
    sregs
}

/// General registers for entering the kernel's 64-bit entry point.
pub fn boot_regs(entry: GuestAddress) -> kvm_regs {
    kvm_regs {
        rflags: 0x2,
        rip: entry.0,
        rsp: BOOT_STACK_POINTER,
        rbp: BOOT_STACK_POINTER,
        rsi: ZERO_PAGE_START,
        ..Default::default()
    }
}

/// FPU state after reset: x87 control word and MXCSR defaults.
pub fn boot_fpu() -> kvm_fpu {
    kvm_fpu {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mem() -> GuestMemory {
        GuestMemory::from_ranges(&[(GuestAddress(0), 0x10_0000)]).expect("guest memory")
    }

    #[test]
    fn page_tables_map_4g_identity() {
        let m = mem();
        write_identity_page_tables(&m).expect("page tables");
        let pml4: u64 = m.read_obj(GuestAddress(PML4_START)).expect("read");
        assert_eq!(pml4, PDPTE_START | 3);
        for dir in 0..4u64 {
            let pdpte: u64 = m
                .read_obj(GuestAddress(PDPTE_START + 8 * dir))
                .expect("read");
            assert_eq!(pdpte, (PDE_START + dir * 0x1000) | 3);
        }
        // The last 2 MiB page below 4 GiB maps to itself.
        let last: u64 = m
            .read_obj(GuestAddress(PDE_START + 3 * 0x1000 + 511 * 8))
            .expect("read");
        assert_eq!(last, ((4u64 << 30) - (2 << 20)) | 0x83);
    }

    #[test]
    fn gdt_is_written_where_sregs_point() {
        let m = mem();
        write_gdt_and_idt(&m).expect("gdt");
        let sregs = long_mode_sregs(kvm_sregs::default());
        let cs: u64 = m
            .read_obj(GuestAddress(sregs.gdt.base + u64::from(sregs.cs.selector)))
            .expect("read");
        assert_eq!(cs, Descriptor::CODE64.encode());
        assert_eq!(sregs.efer & EFER_LMA, EFER_LMA);
        assert_eq!(sregs.cr3, PML4_START);
    }

    #[test]
    fn too_small_memory_is_an_error() {
        let m = GuestMemory::from_ranges(&[(GuestAddress(0), 0x1000)]).expect("guest memory");
        assert!(write_identity_page_tables(&m).is_err());
    }
}
