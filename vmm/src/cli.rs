//! Command-line interface.

use std::path::PathBuf;

use clap::Parser;

/// The command line used when `--cmdline` is not given.
pub const DEFAULT_CMDLINE: &str = "console=ttyS0 panic=-1";

/// minivmm: a small KVM virtual machine monitor.
///
/// Boots a Linux kernel (bzImage) on KVM with its console on this terminal.
/// Exit status: 0 when the guest powers off or reboots, 1 when minivmm
/// itself fails, 3 when the guest crashes (kernel panic, triple fault, KVM
/// error).
#[derive(Debug, Parser)]
#[command(name = "minivmm", version, about, long_about)]
pub struct Cli {
    /// Guest kernel: an x86_64 bzImage with the 64-bit boot protocol.
    #[arg(long, value_name = "PATH")]
    pub kernel: PathBuf,

    /// Initial ramdisk (initramfs) handed to the kernel.
    #[arg(long, value_name = "PATH")]
    pub initrd: Option<PathBuf>,

    /// Kernel command line.
    #[arg(long, value_name = "STR", default_value = DEFAULT_CMDLINE)]
    pub cmdline: String,

    /// Guest RAM, in bytes or with a K, M, G or T suffix (binary units).
    #[arg(long, value_name = "SIZE", default_value = "512M")]
    pub memory: String,

    /// Number of vCPUs.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub cpus: u32,

    /// A virtio-blk disk backed by a raw image file (repeatable). With
    /// iommu=on the disk sits behind minivmm's virtio-iommu and all its DMA
    /// is translated; readonly=on refuses guest writes.
    #[arg(long, value_name = "path=FILE[,readonly=on|off][,iommu=on|off]")]
    pub disk: Vec<String>,

    /// Assign a host PCI device through VFIO (repeatable). It must be bound
    /// to vfio-pci. With iommu=on (the default) it sits behind minivmm's
    /// virtio-iommu and the guest's mappings are shadowed into the host
    /// IOMMU; with iommu=off all guest RAM is mapped for its DMA.
    #[arg(long, value_name = "BDF[,iommu=on|off]")]
    pub vfio: Vec<String>,
}
