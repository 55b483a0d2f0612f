//! The in-kernel GICv3 (distributor, one redistributor per vCPU) and its
//! ITS, at the addresses of the layout and the planned doorbell.

use arch::aarch64::layout::{GICD_START, GICR_START};
use kvm_bindings::{
    kvm_create_device, kvm_device_attr, kvm_device_type_KVM_DEV_TYPE_ARM_VGIC_ITS,
    kvm_device_type_KVM_DEV_TYPE_ARM_VGIC_V3, KVM_DEV_ARM_VGIC_CTRL_INIT,
    KVM_DEV_ARM_VGIC_GRP_ADDR, KVM_DEV_ARM_VGIC_GRP_CTRL, KVM_DEV_ARM_VGIC_GRP_NR_IRQS,
    KVM_VGIC_ITS_ADDR_TYPE, KVM_VGIC_V3_ADDR_TYPE_DIST, KVM_VGIC_V3_ADDR_TYPE_REDIST,
};
use kvm_ioctls::{DeviceFd, VmFd};

use super::PlatformError;

/// Interrupt IDs the distributor handles: 32 private ones and 64 SPIs
/// (platform devices use a few; MSIs go through the ITS as LPIs).
const NR_IRQS: u32 = 96;

fn create(vm: &VmFd, type_: u32, what: &'static str) -> Result<DeviceFd, PlatformError> {
    let mut device = kvm_create_device {
        type_,
        fd: 0,
        flags: 0,
    };
    vm.create_device(&mut device)
        .map_err(|source| PlatformError::Gic { what, source })
}

fn set(
    device: &DeviceFd,
    group: u32,
    attr: u32,
    value: Option<&u64>,
    what: &'static str,
) -> Result<(), PlatformError> {
    let attr = kvm_device_attr {
        group,
        attr: u64::from(attr),
        addr: value.map_or(0, |v| v as *const u64 as u64),
        flags: 0,
    };
    device
        .set_device_attr(&attr)
        .map_err(|source| PlatformError::Gic { what, source })
}

/// Creates and initializes the GICv3 and an ITS at `its`; every vCPU must
/// exist already. The devices live as long as the VM (KVM keeps them when
/// their descriptors close).
pub(super) fn create_gic(vm: &VmFd, its: u64) -> Result<(), PlatformError> {
    let gic = create(
        vm,
        kvm_device_type_KVM_DEV_TYPE_ARM_VGIC_V3,
        "create the GICv3",
    )?;
    set(
        &gic,
        KVM_DEV_ARM_VGIC_GRP_ADDR,
        KVM_VGIC_V3_ADDR_TYPE_DIST,
        Some(&GICD_START),
        "place the GIC distributor",
    )?;
    set(
        &gic,
        KVM_DEV_ARM_VGIC_GRP_ADDR,
        KVM_VGIC_V3_ADDR_TYPE_REDIST,
        Some(&GICR_START),
        "place the GIC redistributors",
    )?;
    let nr_irqs = u64::from(NR_IRQS);
    // The attribute is a u32: KVM reads the low half of this little-endian u64.
    set(
        &gic,
        KVM_DEV_ARM_VGIC_GRP_NR_IRQS,
        0,
        Some(&nr_irqs),
        "set the GIC's interrupt count",
    )?;
    let its_fd = create(
        vm,
        kvm_device_type_KVM_DEV_TYPE_ARM_VGIC_ITS,
        "create the ITS",
    )?;
    set(
        &its_fd,
        KVM_DEV_ARM_VGIC_GRP_ADDR,
        KVM_VGIC_ITS_ADDR_TYPE,
        Some(&its),
        "place the ITS",
    )?;
    set(
        &gic,
        KVM_DEV_ARM_VGIC_GRP_CTRL,
        KVM_DEV_ARM_VGIC_CTRL_INIT,
        None,
        "initialize the GIC",
    )?;
    set(
        &its_fd,
        KVM_DEV_ARM_VGIC_GRP_CTRL,
        KVM_DEV_ARM_VGIC_CTRL_INIT,
        None,
        "initialize the ITS",
    )
}
