//! PCI addresses and a device's IOMMU group regions in sysfs.
//!
//! `/sys/bus/pci/devices/BDF/iommu_group` links to
//! `/sys/kernel/iommu_groups/N`, whose `reserved_regions` lists the
//! regions of every device in the group. The sysfs root is a parameter so
//! tests can use a directory tree of their own.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use crate::{parse_regions, HostIommuError, HostRegion};

/// Where sysfs is mounted on a normal host.
pub const SYSFS_ROOT: &str = "/sys";

/// A PCI address: segment, bus, device, function.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bdf {
    /// PCI segment (domain).
    pub segment: u16,
    /// Bus.
    pub bus: u8,
    /// Device, 0 to 31.
    pub device: u8,
    /// Function, 0 to 7.
    pub function: u8,
}

fn hex_field(s: &str, digits: usize) -> Option<u16> {
    if s.len() != digits || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u16::from_str_radix(s, 16).ok()
}

impl FromStr for Bdf {
    type Err = HostIommuError;

    /// Parses `DDDD:BB:DD.F`, or `BB:DD.F` meaning segment 0000.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || HostIommuError::BadBdf(text.to_string());
        let parts: Vec<&str> = text.split(':').collect();
        let (segment, bus, rest) = match parts[..] {
            [seg, bus, rest] => (hex_field(seg, 4).ok_or_else(bad)?, bus, rest),
            [bus, rest] => (0, bus, rest),
            _ => return Err(bad()),
        };
        let (device, function) = rest.split_once('.').ok_or_else(bad)?;
        let bus = hex_field(bus, 2).ok_or_else(bad)?;
        let device = hex_field(device, 2).filter(|d| *d < 32).ok_or_else(bad)?;
        let function = hex_field(function, 1).filter(|f| *f < 8).ok_or_else(bad)?;
        Ok(Self {
            segment,
            bus: bus as u8,
            device: device as u8,
            function: function as u8,
        })
    }
}

impl fmt::Display for Bdf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{:x}",
            self.segment, self.bus, self.device, self.function
        )
    }
}

/// The reserved regions of `bdf`'s IOMMU group on this host (`bdf` as
/// `DDDD:BB:DD.F` or `BB:DD.F`).
pub fn read_device_regions(bdf: &str) -> Result<Vec<HostRegion>, HostIommuError> {
    read_device_regions_in(Path::new(SYSFS_ROOT), &bdf.parse()?)
}

/// The reserved regions of `bdf`'s IOMMU group, with sysfs at `root`. The
/// regions' source is the canonical PCI address.
pub fn read_device_regions_in(root: &Path, bdf: &Bdf) -> Result<Vec<HostRegion>, HostIommuError> {
    let name = bdf.to_string();
    let device = root.join("bus/pci/devices").join(&name);
    if !device.exists() {
        return Err(HostIommuError::NoDevice(name));
    }
    let group = device.join("iommu_group");
    if !group.exists() {
        return Err(HostIommuError::NoIommuGroup(name));
    }
    let path = group.join("reserved_regions");
    let text = std::fs::read_to_string(&path).map_err(|err| HostIommuError::Read {
        path: path.clone(),
        err,
    })?;
    parse_regions(&text, &path.display().to_string(), &name)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::HostRegionKind;

    #[test]
    fn bdfs() {
        let b: Bdf = "0000:01:00.0".parse().expect("bdf");
        assert_eq!((b.segment, b.bus, b.device, b.function), (0, 1, 0, 0));
        let short: Bdf = "1f:1F.7".parse().expect("short");
        assert_eq!(short.to_string(), "0000:1f:1f.7");
        assert_eq!("abcd:00:02.1".parse::<Bdf>().expect("seg").segment, 0xabcd);
        for bad in [
            "",
            "01:00",
            "0:01:00.0",
            "0000:1:00.0",
            "0000:01:20.0",
            "0000:01:00.8",
            "0000:01:00.00",
            "00000:01:00.0",
            "0000:01:00.0:1",
            "zz:00.0",
            "+1:00.0",
        ] {
            let err = bad.parse::<Bdf>().expect_err(bad);
            assert!(
                err.to_string().contains("expected DDDD:BB:DD.F"),
                "{bad}: {err}"
            );
        }
    }

    /// A sysfs tree under the temp dir, unique to `test`: device
    /// 0000:01:00.0 in group 7, and 0000:02:00.0 without a group.
    fn fake_sysfs(test: &str, regions: &str) -> PathBuf {
        let root = std::env::temp_dir().join(format!("host-iommu-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let group = root.join("kernel/iommu_groups/7");
        let devices = root.join("bus/pci/devices");
        std::fs::create_dir_all(&group).expect("group dir");
        std::fs::create_dir_all(devices.join("0000:01:00.0")).expect("dev");
        std::fs::create_dir_all(devices.join("0000:02:00.0")).expect("dev");
        std::fs::write(group.join("reserved_regions"), regions).expect("regions");
        std::os::unix::fs::symlink(&group, devices.join("0000:01:00.0/iommu_group")).expect("link");
        root
    }

    #[test]
    fn reads_a_fake_sysfs_tree() {
        let root = fake_sysfs(
            "read",
            "0x00000000fee00000 0x00000000feefffff msi\n\
             0x000000fd00000000 0x000000ffffffffff reserved\n",
        );
        let bdf = "01:00.0".parse().expect("bdf");
        let r = read_device_regions_in(&root, &bdf).expect("regions");
        assert_eq!(r.len(), 2);
        assert_eq!(r[1].kind, HostRegionKind::Reserved);
        assert_eq!(r[1].source, "0000:01:00.0");

        let missing = read_device_regions_in(&root, &"0000:03:00.0".parse().expect("bdf"));
        assert_eq!(
            missing.expect_err("missing").to_string(),
            "no PCI device 0000:03:00.0 (see lspci -D)"
        );
        let no_group = read_device_regions_in(&root, &"0000:02:00.0".parse().expect("bdf"))
            .expect_err("no group")
            .to_string();
        assert!(
            no_group.contains("0000:02:00.0 has no IOMMU group"),
            "{no_group}"
        );
        assert!(no_group.contains("intel_iommu=on"), "{no_group}");

        let gathered = crate::gather(&root, &[bdf], &[]).expect("gather");
        assert_eq!(gathered.regions, r);
        assert_eq!(gathered.iova_ranges, None);
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn bad_sysfs_line_names_the_file() {
        let root = fake_sysfs("bad", "0xfee00000 msi\n");
        let err = read_device_regions_in(&root, &"0000:01:00.0".parse().expect("bdf"))
            .expect_err("bad")
            .to_string();
        assert!(
            err.contains("iommu_group/reserved_regions:1: bad reserved region"),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&root);
    }
}
