//! arm64 guests: the IPA layout, the planner's fixed parts, the boot
//! protocol's placement and the device tree, all KVM-free and built on
//! every host (their tests run on x86 too). Applying them to KVM (vCPU
//! init, the GIC, registers) is the VMM's arm64 platform.

pub mod boot;
pub mod fdt;
pub mod layout;
pub mod plan;
