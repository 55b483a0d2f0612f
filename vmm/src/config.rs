//! The validated VM configuration, built from the command line.

use std::path::PathBuf;

use crate::cli::Cli;

/// Smallest guest RAM minivmm accepts.
pub const MIN_MEMORY: u64 = 64 << 20;
/// Most vCPUs minivmm supports (xAPIC IDs in the MADT are 8-bit; 255 is broadcast).
pub const MAX_CPUS: u32 = 254;

/// Configuration errors; each names the problem and the fix.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// The memory size does not parse.
    #[error("invalid --memory '{0}': give a size such as 512M, 2G or 1073741824")]
    BadSize(String),
    /// Too little memory.
    #[error("--memory {got} MiB is too small: a Linux guest needs at least {min} MiB")]
    MemoryTooSmall {
        /// MiB requested.
        got: u64,
        /// MiB minimum.
        min: u64,
    },
    /// Not a whole number of pages.
    #[error("--memory must be a multiple of 4 KiB")]
    MemoryUnaligned,
    /// No vCPU.
    #[error("--cpus 0: a VM needs at least one vCPU")]
    NoCpus,
    /// A --disk value does not parse.
    #[error(
        "invalid --disk '{value}': {reason} (expected path=FILE[,readonly=on|off][,iommu=on|off])"
    )]
    BadDisk {
        /// The value given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A --vfio value does not parse.
    #[error("invalid --vfio '{value}': {reason} (expected BDF[,iommu=on|off], e.g. 0000:01:00.0)")]
    BadVfio {
        /// The value given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No kernel and no --dry-run.
    #[error("no --kernel given: a VM needs a kernel (or pass --dry-run to only plan)")]
    NoKernel,
    /// Too many PCI devices.
    #[error("too many devices: at most {0} PCI devices fit on bus 0")]
    TooManyDevices(usize),
    /// Too many vCPUs for minivmm.
    #[error("--cpus {got} is too many: minivmm supports at most {max}")]
    TooManyCpus {
        /// Requested.
        got: u32,
        /// Maximum.
        max: u32,
    },
}

/// One virtio-blk disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskConfig {
    /// Raw image file.
    pub path: PathBuf,
    /// Refuse guest writes.
    pub read_only: bool,
    /// Behind the virtio-iommu.
    pub iommu: bool,
}

/// PCI slots left for disks and assigned devices after the host bridge and
/// the virtio-iommu.
pub const MAX_DISKS: usize = 30;

/// One assigned host PCI device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VfioConfig {
    /// Host BDF as given (normalized when the device is opened).
    pub bdf: String,
    /// Behind the virtio-iommu.
    pub iommu: bool,
}

/// Parses one `--vfio` value.
pub fn parse_vfio(text: &str) -> Result<VfioConfig, ConfigError> {
    let bad = |reason: String| ConfigError::BadVfio {
        value: text.to_string(),
        reason,
    };
    let mut parts = text.split(',');
    let bdf = parts.next().filter(|b| !b.is_empty() && !b.contains('='));
    let bdf = bdf.ok_or_else(|| bad("the PCI address comes first".into()))?;
    let mut iommu = true;
    for part in parts {
        match part.split_once('=') {
            Some(("iommu", value)) => {
                iommu = parse_on_off(value)
                    .ok_or_else(|| bad(format!("iommu must be on or off, not '{value}'")))?;
            }
            _ => return Err(bad(format!("unknown option '{part}'"))),
        }
    }
    Ok(VfioConfig {
        bdf: bdf.to_string(),
        iommu,
    })
}

fn parse_on_off(value: &str) -> Option<bool> {
    match value {
        "on" | "true" | "yes" | "1" => Some(true),
        "off" | "false" | "no" | "0" => Some(false),
        _ => None,
    }
}

/// Parses one `--disk` value.
pub fn parse_disk(text: &str) -> Result<DiskConfig, ConfigError> {
    let bad = |reason: String| ConfigError::BadDisk {
        value: text.to_string(),
        reason,
    };
    let mut path = None;
    let mut read_only = false;
    let mut iommu = false;
    for part in text.split(',') {
        let (key, value) = part
            .split_once('=')
            .ok_or_else(|| bad(format!("'{part}' is not key=value")))?;
        match key {
            "path" if !value.is_empty() => path = Some(PathBuf::from(value)),
            "readonly" | "iommu" => {
                let on = parse_on_off(value)
                    .ok_or_else(|| bad(format!("{key} must be on or off, not '{value}'")))?;
                if key == "readonly" {
                    read_only = on;
                } else {
                    iommu = on;
                }
            }
            _ => return Err(bad(format!("unknown or empty option '{key}'"))),
        }
    }
    let path = path.ok_or_else(|| bad("no path=FILE".into()))?;
    Ok(DiskConfig {
        path,
        read_only,
        iommu,
    })
}

/// What the VM is made of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmConfig {
    /// bzImage path.
    pub kernel: PathBuf,
    /// initramfs path.
    pub initrd: Option<PathBuf>,
    /// Kernel command line.
    pub cmdline: String,
    /// Guest RAM in bytes.
    pub memory: u64,
    /// vCPU count.
    pub cpus: u8,
    /// virtio-blk disks, in PCI slot order.
    pub disks: Vec<DiskConfig>,
    /// Assigned host devices, in PCI slot order after the disks.
    pub vfio: Vec<VfioConfig>,
    /// A virtio-iommu even without a boot device behind it (`--iommu`),
    /// for hot-added ones.
    pub iommu: bool,
    /// How long the virtio-iommu poller watches after a request (0: off).
    pub iommu_poll: std::time::Duration,
    /// Only print the planned address map (`--dry-run`); `kernel` may then
    /// be empty.
    pub dry_run: bool,
    /// Other hosts' reserved region files (`--host-regions`).
    pub host_regions: Vec<PathBuf>,
    /// Identity-map direct (RMRR) regions (`--allow-direct-regions`).
    pub allow_direct_regions: bool,
    /// Devices may be hot-added (a control API serves the VM): the plan
    /// reserves what the host's IOMMU groups may bring.
    pub hotplug: bool,
}

impl VmConfig {
    /// Whether the VM has a virtio-iommu: asked for, or some boot device
    /// sits behind it.
    pub fn needs_iommu(&self) -> bool {
        self.iommu || self.disks.iter().any(|d| d.iommu) || self.vfio.iter().any(|v| v.iommu)
    }
}

/// Parses `512M`, `2G`, `1048576`, ... into bytes (binary units).
pub fn parse_size(text: &str) -> Result<u64, ConfigError> {
    let bad = || ConfigError::BadSize(text.to_string());
    let t = text.trim();
    let (digits, shift) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                _ => return Err(bad()),
            };
            (&t[..i], shift)
        }
        _ => (t, 0),
    };
    let n: u64 = digits.parse().map_err(|_| bad())?;
    n.checked_mul(1 << shift).ok_or_else(bad)
}

impl VmConfig {
    /// Validates the command line. Host limits (RAM, KVM's vCPU limit) are
    /// checked later, against the host.
    pub fn from_cli(cli: Cli) -> Result<Self, ConfigError> {
        let memory = parse_size(&cli.memory)?;
        if memory < MIN_MEMORY {
            return Err(ConfigError::MemoryTooSmall {
                got: memory >> 20,
                min: MIN_MEMORY >> 20,
            });
        }
        if memory % 4096 != 0 {
            return Err(ConfigError::MemoryUnaligned);
        }
        let cpus = match cli.cpus {
            0 => return Err(ConfigError::NoCpus),
            n if n > MAX_CPUS => {
                return Err(ConfigError::TooManyCpus {
                    got: n,
                    max: MAX_CPUS,
                })
            }
            n => n as u8,
        };
        let disks = cli
            .disk
            .iter()
            .map(|d| parse_disk(d))
            .collect::<Result<Vec<_>, _>>()?;
        let vfio = cli
            .vfio
            .iter()
            .map(|v| parse_vfio(v))
            .collect::<Result<Vec<_>, _>>()?;
        if disks.len() + vfio.len() > MAX_DISKS {
            return Err(ConfigError::TooManyDevices(MAX_DISKS));
        }
        let kernel = match cli.kernel {
            Some(kernel) => kernel,
            None if cli.dry_run => PathBuf::new(),
            None => return Err(ConfigError::NoKernel),
        };
        Ok(Self {
            kernel,
            initrd: cli.initrd,
            cmdline: cli.cmdline,
            memory,
            cpus,
            disks,
            vfio,
            iommu: cli.iommu,
            iommu_poll: std::time::Duration::from_micros(cli.iommu_poll_us),
            dry_run: cli.dry_run,
            host_regions: cli.host_regions,
            allow_direct_regions: cli.allow_direct_regions,
            hotplug: cli.api_socket.is_some(),
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn parse(args: &[&str]) -> Result<VmConfig, ConfigError> {
        let mut argv = vec!["minivmm", "--kernel", "/k"];
        argv.extend_from_slice(args);
        VmConfig::from_cli(Cli::try_parse_from(argv).expect("clap"))
    }

    #[test]
    fn defaults() {
        let c = parse(&[]).expect("config");
        assert_eq!(c.memory, 512 << 20);
        assert_eq!(c.cpus, 1);
        assert_eq!(c.cmdline, crate::cli::DEFAULT_CMDLINE);
        assert_eq!(c.initrd, None);
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("2g"), Ok(2 << 30));
        assert_eq!(parse_size("65536K"), Ok(64 << 20));
        assert_eq!(parse_size("1073741824"), Ok(1 << 30));
        for bad in ["", "M", "12X", "-1G", "1.5G", "99999999999T"] {
            assert!(
                matches!(parse_size(bad), Err(ConfigError::BadSize(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn bad_memory_and_cpus_are_refused() {
        assert!(matches!(
            parse(&["--memory", "16M"]),
            Err(ConfigError::MemoryTooSmall { .. })
        ));
        assert_eq!(
            parse(&["--memory", "67108865"]),
            Err(ConfigError::MemoryUnaligned)
        );
        assert_eq!(parse(&["--cpus", "0"]), Err(ConfigError::NoCpus));
        assert!(matches!(
            parse(&["--cpus", "300"]),
            Err(ConfigError::TooManyCpus { .. })
        ));
        assert_eq!(parse(&["--cpus", "8"]).expect("8 cpus").cpus, 8);
    }

    #[test]
    fn disks() {
        let c = parse(&[
            "--disk",
            "path=/a.img",
            "--disk",
            "path=/b.img,readonly=on,iommu=on",
        ])
        .expect("config");
        assert_eq!(
            c.disks,
            vec![
                DiskConfig {
                    path: "/a.img".into(),
                    read_only: false,
                    iommu: false
                },
                DiskConfig {
                    path: "/b.img".into(),
                    read_only: true,
                    iommu: true
                },
            ]
        );
        assert!(c.needs_iommu());
        for bad in [
            "/a.img",
            "path=",
            "readonly=on",
            "path=/a,iommu=maybe",
            "path=/a,cache=none",
        ] {
            assert!(
                matches!(parse_disk(bad), Err(ConfigError::BadDisk { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn vfio_devices() {
        let c = parse(&["--vfio", "0000:01:00.0", "--vfio", "02:00.0,iommu=off"]).expect("config");
        assert_eq!(
            c.vfio,
            vec![
                VfioConfig {
                    bdf: "0000:01:00.0".into(),
                    iommu: true
                },
                VfioConfig {
                    bdf: "02:00.0".into(),
                    iommu: false
                },
            ]
        );
        assert!(c.needs_iommu());
        for bad in [
            "",
            "iommu=on",
            "0000:01:00.0,iommu=maybe",
            "0000:01:00.0,rom=off",
        ] {
            assert!(
                matches!(parse_vfio(bad), Err(ConfigError::BadVfio { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn every_option_is_documented() {
        use clap::CommandFactory;
        let cmd = Cli::command();
        for arg in cmd.get_arguments() {
            assert!(arg.get_help().is_some(), "--{} has no help", arg.get_id());
        }
    }
}
