//! Command-line interface.

use std::path::PathBuf;

use clap::Parser;

/// The command line used when `--cmdline` is not given.
pub const DEFAULT_CMDLINE: &str = "console=ttyS0 panic=-1";

/// minivmm: a small KVM virtual machine monitor.
///
/// Boots a Linux kernel (x86_64: a bzImage; arm64: an Image) on KVM with
/// its console on this terminal.
/// Exit status: 0 when the guest powers off or reboots, 1 when minivmm
/// itself fails, 3 when the guest crashes (kernel panic, triple fault, KVM
/// error).
///
/// `minivmm plan [OPTIONS]` (or `--dry-run`) prints the guest address map
/// planned for these options and this host, and exits.
#[derive(Clone, Debug, Parser)]
#[command(name = "minivmm", version, about, long_about)]
pub struct Cli {
    /// Guest kernel: on x86_64 a bzImage with the 64-bit boot protocol, on
    /// arm64 an uncompressed Image (optional with --dry-run or
    /// --api-socket).
    #[arg(
        long,
        value_name = "PATH",
        required_unless_present_any = ["dry_run", "api_socket"]
    )]
    pub kernel: Option<PathBuf>,

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

    /// After each virtio-iommu request, keep watching its queue for up to
    /// this many microseconds so that the next request needs no guest exit
    /// (a busy-polling thread whose window adapts: it grows while polling
    /// finds requests and shrinks to nothing when it does not; 0 turns it
    /// off and every request is a kick).
    #[arg(long, value_name = "US", default_value_t = 1000)]
    pub iommu_poll_us: u64,

    /// Give the VM its virtio-iommu even when no boot device sits behind
    /// it, so that devices hot-added through the API with iommu: true can
    /// be (a disk or device with iommu=on implies it).
    #[arg(long)]
    pub iommu: bool,

    /// Print the planned guest address map (RAM, holes and why, PCI
    /// windows, the virtio-iommu's reserved regions) and exit without
    /// starting a VM. `minivmm plan [OPTIONS]` is the same.
    #[arg(long)]
    pub dry_run: bool,

    /// Another host's IOMMU reserved regions, in the format of sysfs
    /// `/sys/kernel/iommu_groups/N/reserved_regions` (repeatable): the
    /// address map avoids them too, so the VM can migrate to that host.
    #[arg(long, value_name = "FILE")]
    pub host_regions: Vec<PathBuf>,

    /// Accept assigned devices with direct-mapped (RMRR) regions: map them
    /// identity and report them reserved to the guest.
    #[arg(long)]
    pub allow_direct_regions: bool,

    /// Serve the control API (cloud-hypervisor compatible REST, see
    /// docs/api.md) on this Unix socket, created owner-only. Without
    /// --kernel, minivmm waits for vm.create and vm.boot; with it, it boots
    /// that VM and serves.
    #[arg(long, value_name = "PATH", conflicts_with = "dry_run")]
    pub api_socket: Option<PathBuf>,
}

/// The command line with the `plan` subcommand spelt as `--dry-run`:
/// `minivmm plan ARGS` is `minivmm --dry-run ARGS`.
pub fn expand_plan_subcommand<I>(args: I) -> Vec<std::ffi::OsString>
where
    I: IntoIterator<Item = std::ffi::OsString>,
{
    let mut args: Vec<_> = args.into_iter().collect();
    if args.get(1).is_some_and(|a| a == "plan") {
        args[1] = "--dry-run".into();
    }
    args
}
