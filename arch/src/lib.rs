//! Guest architecture setup.
//!
//! This crate owns everything that depends on the guest's instruction set:
//! the guest physical address map, the boot protocol (loading the kernel,
//! initrd and command line, filling the zero page), and the initial vCPU
//! state (registers, page tables, CPUID, MSRs, local APIC). It only
//! *computes* that state and writes it into guest memory; applying it to a
//! KVM vCPU is the VMM's job, so everything here is testable without KVM.

#[cfg(target_arch = "x86_64")]
pub mod x86_64;
