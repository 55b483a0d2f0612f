//! Opening `/dev/kvm` and checking that it can run the VMs minivmm builds.

use kvm_ioctls::{Cap, Kvm};

/// Host KVM problems, each with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum KvmError {
    /// No KVM device.
    #[error("/dev/kvm does not exist: enable virtualization in the firmware and load the module (modprobe kvm_intel or kvm_amd)")]
    Missing,
    /// Not allowed to open it.
    #[error("no permission to open /dev/kvm: add your user to the 'kvm' group or run as root")]
    NoPermission,
    /// Any other open failure.
    #[error("cannot open /dev/kvm")]
    Open(#[source] kvm_ioctls::Error),
    /// A required capability is missing.
    #[error("this host's KVM lacks {0}, which minivmm needs: use a newer host kernel")]
    MissingCap(&'static str),
    /// More vCPUs than KVM allows.
    #[error("--cpus {got} is more than this host's KVM allows ({max})")]
    TooManyCpus {
        /// Requested.
        got: u8,
        /// KVM's limit.
        max: usize,
    },
}

/// Opens `/dev/kvm` with errors that say what to do.
pub fn open() -> Result<Kvm, KvmError> {
    Kvm::new().map_err(|e| match e.errno() {
        libc::ENOENT | libc::ENODEV | libc::ENXIO => KvmError::Missing,
        libc::EACCES | libc::EPERM => KvmError::NoPermission,
        _ => KvmError::Open(e),
    })
}

/// Checks the capabilities `caps` (the platform's, with their names) and
/// the vCPU limit for a VM of `cpus` vCPUs.
pub fn check(kvm: &Kvm, cpus: u8, caps: &[(Cap, &'static str)]) -> Result<(), KvmError> {
    if let Some((_, name)) = caps.iter().find(|(c, _)| !kvm.check_extension(*c)) {
        return Err(KvmError::MissingCap(name));
    }
    let max = kvm.get_max_vcpus();
    if usize::from(cpus) > max {
        return Err(KvmError::TooManyCpus { got: cpus, max });
    }
    Ok(())
}
