//! arm64 vCPUs: `KVM_ARM_VCPU_INIT` with PSCI 0.2 (secondaries powered off
//! until the guest's PSCI CPU_ON), the boot registers of the booting.rst
//! protocol, and MPIDR_EL1 for the device tree.

use std::mem::offset_of;

use kvm_bindings::{
    kvm_regs, kvm_vcpu_init, user_pt_regs, PSR_MODE_EL1h, KVM_ARM_VCPU_POWER_OFF,
    KVM_ARM_VCPU_PSCI_0_2, KVM_REG_ARM64, KVM_REG_ARM64_SYSREG, KVM_REG_ARM64_SYSREG_OP0_SHIFT,
    KVM_REG_ARM64_SYSREG_OP2_SHIFT, KVM_REG_ARM_CORE, KVM_REG_SIZE_U64, PSR_A_BIT, PSR_D_BIT,
    PSR_F_BIT, PSR_I_BIT,
};
use kvm_ioctls::{VcpuFd, VmFd};

use crate::vcpu::{Vcpu, VcpuError};

/// EL1h with debug, SError, IRQ and FIQ masked: how the kernel is entered.
const BOOT_PSTATE: u64 = (PSR_D_BIT | PSR_A_BIT | PSR_I_BIT | PSR_F_BIT | PSR_MODE_EL1h) as u64;

/// The `KVM_{GET,SET}_ONE_REG` ID of the core register at byte `offset`
/// of `struct kvm_regs`.
fn core_reg(offset: usize) -> u64 {
    KVM_REG_ARM64 | KVM_REG_SIZE_U64 | u64::from(KVM_REG_ARM_CORE) | (offset / 4) as u64
}

fn x_reg(n: usize) -> u64 {
    core_reg(offset_of!(kvm_regs, regs) + offset_of!(user_pt_regs, regs) + 8 * n)
}

fn pc_reg() -> u64 {
    core_reg(offset_of!(kvm_regs, regs) + offset_of!(user_pt_regs, pc))
}

fn pstate_reg() -> u64 {
    core_reg(offset_of!(kvm_regs, regs) + offset_of!(user_pt_regs, pstate))
}

/// MPIDR_EL1: op0 3, op1 0, CRn 0, CRm 0, op2 5.
fn mpidr_reg() -> u64 {
    KVM_REG_ARM64
        | KVM_REG_SIZE_U64
        | u64::from(KVM_REG_ARM64_SYSREG)
        | (3 << KVM_REG_ARM64_SYSREG_OP0_SHIFT)
        | (5 << KVM_REG_ARM64_SYSREG_OP2_SHIFT)
}

/// Initializes vCPU `vcpu` of `vm` as the host's preferred CPU type with
/// PSCI 0.2; all but vCPU 0 start powered off.
pub(super) fn init(vm: &VmFd, vcpu: &mut Vcpu) -> Result<(), VcpuError> {
    let id = vcpu.id();
    let mut kvi = kvm_vcpu_init::default();
    vm.get_preferred_target(&mut kvi)
        .map_err(Vcpu::kvm_err(id, "read KVM's preferred CPU type"))?;
    kvi.features[0] |= 1 << KVM_ARM_VCPU_PSCI_0_2;
    if id > 0 {
        kvi.features[0] |= 1 << KVM_ARM_VCPU_POWER_OFF;
    }
    vcpu.fd()
        .vcpu_init(&kvi)
        .map_err(Vcpu::kvm_err(id, "initialize (KVM_ARM_VCPU_INIT)"))
}

fn set(fd: &VcpuFd, id: u8, reg: u64, value: u64, what: &'static str) -> Result<(), VcpuError> {
    fd.set_one_reg(reg, &value.to_le_bytes())
        .map(|_| ())
        .map_err(Vcpu::kvm_err(id, what))
}

fn get(fd: &VcpuFd, reg: u64) -> Result<u64, kvm_ioctls::Error> {
    let mut bytes = [0u8; 8];
    fd.get_one_reg(reg, &mut bytes)?;
    Ok(u64::from_le_bytes(bytes))
}

/// The boot vCPU's registers: PC at the kernel's entry, X0 the device
/// tree, X1-X3 zero, EL1h with interrupts masked.
pub(super) fn set_boot_regs(vcpu: &mut Vcpu, entry: u64, fdt: u64) -> Result<(), VcpuError> {
    let id = vcpu.id();
    let fd = vcpu.fd();
    set(fd, id, pstate_reg(), BOOT_PSTATE, "set PSTATE")?;
    set(fd, id, x_reg(0), fdt, "set X0")?;
    for n in 1..4 {
        set(fd, id, x_reg(n), 0, "clear X1-X3")?;
    }
    set(fd, id, pc_reg(), entry, "set the PC")
}

/// The vCPU's MPIDR_EL1, which names it in the device tree.
pub(super) fn mpidr(vcpu: &mut Vcpu) -> Result<u64, VcpuError> {
    let id = vcpu.id();
    get(vcpu.fd(), mpidr_reg()).map_err(Vcpu::kvm_err(id, "read MPIDR_EL1"))
}

/// The vCPU's PC, for messages.
pub(super) fn pc(fd: &VcpuFd) -> Option<u64> {
    get(fd, pc_reg()).ok()
}

/// The vCPU's X1 (PSCI SYSTEM_RESET2's reset type), for messages.
pub(super) fn x1(fd: &VcpuFd) -> Option<u64> {
    get(fd, x_reg(1)).ok()
}
