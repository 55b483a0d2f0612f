//! x86_64 guests booted through the Linux 64-bit boot protocol.
//!
//! The layout and the planner build on every host; the boot protocol and
//! vCPU state use x86's KVM types and build on x86_64 hosts only.

#[cfg(target_arch = "x86_64")]
pub mod boot;
#[cfg(target_arch = "x86_64")]
pub mod cpuid;
#[cfg(target_arch = "x86_64")]
pub mod gdt;
#[cfg(target_arch = "x86_64")]
pub mod interrupts;
pub mod layout;
#[cfg(target_arch = "x86_64")]
pub mod msr;
pub mod plan;
#[cfg(target_arch = "x86_64")]
pub mod regs;
#[cfg(target_arch = "x86_64")]
pub mod reset_vector;

/// The guest memory type every x86_64 helper works on.
pub use crate::GuestMemory;
