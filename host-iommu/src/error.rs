//! Errors reading host constraints; each names the device or file and the
//! fix.

use std::path::PathBuf;

/// Reading host IOMMU constraints failed.
#[derive(Debug, thiserror::Error)]
pub enum HostIommuError {
    /// A line of a `reserved_regions` file does not parse.
    #[error(
        "{path}:{line}: bad reserved region '{text}': {reason} (expected '0xSTART 0xEND TYPE', \
         TYPE one of direct, direct-relaxable, reserved, msi)"
    )]
    BadLine {
        /// The file.
        path: String,
        /// 1-based line number.
        line: usize,
        /// The line as read.
        text: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A malformed PCI address.
    #[error("invalid PCI address '{0}': expected DDDD:BB:DD.F or BB:DD.F (e.g. 0000:01:00.0)")]
    BadBdf(String),
    /// No such PCI device on this host.
    #[error("no PCI device {0} (see lspci -D)")]
    NoDevice(String),
    /// The device has no IOMMU group: the host IOMMU is off.
    #[error(
        "PCI device {0} has no IOMMU group: the host IOMMU is off: boot with intel_iommu=on \
         (Intel) or amd_iommu=on (AMD) and check dmesg for DMAR/AMD-Vi"
    )]
    NoIommuGroup(String),
    /// A file could not be read.
    #[error("cannot read {}: {err}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        err: std::io::Error,
    },
}
