//! Whether a host PCI function can be assigned, from sysfs alone.

use std::path::{Path, PathBuf};

use super::VfioError;

/// Where sysfs lists PCI devices.
const PCI_DEVICES: &str = "/sys/bus/pci/devices";

/// Normalizes `bdf` to `DDDD:BB:DD.F`.
pub fn normalize_bdf(bdf: &str) -> Result<String, VfioError> {
    let bad = || VfioError::BadBdf(bdf.to_string());
    let full = if bdf.matches(':').count() == 1 {
        format!("0000:{bdf}")
    } else {
        bdf.to_string()
    };
    let (domain, rest) = full.split_once(':').ok_or_else(bad)?;
    let (bus, rest) = rest.split_once(':').ok_or_else(bad)?;
    let (dev, func) = rest.split_once('.').ok_or_else(bad)?;
    let hex = |s: &str, len: usize, max: u32| {
        (s.len() == len && s.chars().all(|c| c.is_ascii_hexdigit()))
            .then(|| u32::from_str_radix(s, 16).ok())
            .flatten()
            .filter(|v| *v <= max)
    };
    match (
        hex(domain, 4, 0xffff),
        hex(bus, 2, 0xff),
        hex(dev, 2, 0x1f),
        hex(func, 1, 7),
    ) {
        (Some(_), Some(_), Some(_), Some(_)) => Ok(full.to_ascii_lowercase()),
        _ => Err(bad()),
    }
}

fn driver_of(device: &Path) -> Option<String> {
    std::fs::read_link(device.join("driver"))
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
}

/// Checks that `bdf` can be assigned; returns its sysfs directory. `sysfs`
/// is the PCI devices directory (a parameter for tests).
pub fn check_assignable(bdf: &str, sysfs: &Path) -> Result<PathBuf, VfioError> {
    let dir = sysfs.join(bdf);
    if !dir.exists() {
        return Err(VfioError::NoDevice(bdf.to_string()));
    }
    match driver_of(&dir).as_deref() {
        Some("vfio-pci") => {}
        other => {
            return Err(VfioError::NotVfio {
                bdf: bdf.to_string(),
                driver: other.unwrap_or("no driver").to_string(),
            })
        }
    }
    let group_link = std::fs::read_link(dir.join("iommu_group"))
        .map_err(|_| VfioError::NoGroup(bdf.to_string()))?;
    let group = group_link
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut others = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir.join("iommu_group").join("devices")) {
        let mut names: Vec<_> = entries.flatten().map(|e| e.file_name()).collect();
        names.sort();
        for name in names {
            let member = sysfs.join(&name);
            match driver_of(&member).as_deref() {
                None | Some("vfio-pci") | Some("pcieport") => {}
                Some(driver) => others.push(format!("{} ({driver})", name.to_string_lossy())),
            }
        }
    }
    if !others.is_empty() {
        return Err(VfioError::GroupNotViable {
            bdf: bdf.to_string(),
            group,
            others: others.join(", "),
        });
    }
    if !Path::new("/dev/vfio/vfio").exists() {
        return Err(VfioError::NoVfio);
    }
    Ok(dir)
}

/// Checks with the real sysfs.
pub fn check_host_device(bdf: &str) -> Result<PathBuf, VfioError> {
    check_assignable(bdf, Path::new(PCI_DEVICES))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bdfs_are_normalized_and_validated() {
        assert_eq!(normalize_bdf("01:00.0").expect("short"), "0000:01:00.0");
        assert_eq!(normalize_bdf("0000:0A:1f.7").expect("full"), "0000:0a:1f.7");
        for bad in [
            "",
            "1:0.0",
            "0000:01:00",
            "0000:01:20.0",
            "0000:01:00.8",
            "zz:00.0",
            "0000:01:00.0x",
        ] {
            assert!(
                matches!(normalize_bdf(bad), Err(VfioError::BadBdf(_))),
                "{bad}"
            );
        }
    }

    fn fake_sysfs(tag: &str) -> PathBuf {
        let root = std::env::temp_dir().join(format!("minivmm-vfio-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("drivers/e1000e")).expect("mkdir");
        std::fs::create_dir_all(root.join("drivers/vfio-pci")).expect("mkdir");
        std::fs::create_dir_all(root.join("groups/7/devices")).expect("mkdir");
        std::fs::create_dir_all(root.join("devices")).expect("mkdir");
        root
    }

    fn add_device(root: &Path, bdf: &str, driver: Option<&str>, group: &str) {
        let dev = root.join("devices").join(bdf);
        std::fs::create_dir_all(&dev).expect("mkdir");
        if let Some(d) = driver {
            std::os::unix::fs::symlink(root.join("drivers").join(d), dev.join("driver"))
                .expect("link");
        }
        std::os::unix::fs::symlink(root.join("groups").join(group), dev.join("iommu_group"))
            .expect("link");
        std::os::unix::fs::symlink(
            &dev,
            root.join("groups").join(group).join("devices").join(bdf),
        )
        .expect("link");
    }

    #[test]
    fn unbound_and_non_viable_devices_are_explained() {
        let root = fake_sysfs("viable");
        let devices = root.join("devices");
        assert!(matches!(
            check_assignable("0000:09:00.0", &devices),
            Err(VfioError::NoDevice(_))
        ));
        add_device(&root, "0000:01:00.0", Some("e1000e"), "7");
        let err = check_assignable("0000:01:00.0", &devices).expect_err("bound to e1000e");
        assert!(err.to_string().contains("bound to e1000e"), "{err}");
        assert!(err.to_string().contains("driver_override"), "{err}");
        std::fs::remove_file(devices.join("0000:01:00.0/driver")).expect("unbind");
        std::os::unix::fs::symlink(
            root.join("drivers/vfio-pci"),
            devices.join("0000:01:00.0/driver"),
        )
        .expect("bind");
        add_device(&root, "0000:01:00.1", Some("e1000e"), "7");
        let err = check_assignable("0000:01:00.0", &devices).expect_err("group shared");
        assert!(err.to_string().contains("0000:01:00.1 (e1000e)"), "{err}");
        let _ = std::fs::remove_dir_all(root);
    }
}
