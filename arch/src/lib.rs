//! Guest architecture setup.
//!
//! This crate owns everything that depends on the guest's instruction set:
//! the guest physical address map (one planning core in [`plan`], each
//! architecture's fixed parts and entry point in its module), the boot
//! protocol (loading the kernel, initrd and command line, filling the zero
//! page or writing the device tree), and the initial vCPU state (registers,
//! page tables, CPUID, MSRs, local APIC). It only *computes* that state and
//! writes it into guest memory; applying it to a KVM vCPU is the VMM's job,
//! so everything here is testable without KVM.
//!
//! The layouts and planners of every architecture compile on every host
//! (their unit tests run on x86 too); only what needs the host's own KVM
//! types (x86's registers, CPUID and MSRs) is built for that host alone.

pub mod aarch64;
pub mod plan;
mod ram;
pub mod x86_64;

pub use ram::RamRegion;

/// The guest memory type every architecture's helpers work on.
pub type GuestMemory = vm_memory::GuestMemoryMmap<()>;
