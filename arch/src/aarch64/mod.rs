//! arm64 guests: the IPA layout, the planner's fixed parts and the device
//! tree, all KVM-free and built on every host (their tests run on x86 too).
//! Loading the kernel Image uses linux-loader's arm64 loader and builds on
//! aarch64 hosts only.

pub mod fdt;
pub mod layout;
pub mod plan;
