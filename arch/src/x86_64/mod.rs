//! x86_64 guests booted through the Linux 64-bit boot protocol.

pub mod boot;
pub mod cpuid;
pub mod gdt;
pub mod interrupts;
pub mod layout;
pub mod msr;
pub mod plan;
pub mod regs;
pub mod reset_vector;

/// The guest memory type every x86_64 helper works on.
pub type GuestMemory = vm_memory::GuestMemoryMmap<()>;
