//! Every IOMMU group of the host and how wide its IOMMUs address: what a
//! device hot-added later may bring, read when a hot-pluggable VM boots so
//! its plan can reserve it up front (`docs/hotplug.md`).
//!
//! `/sys/kernel/iommu_groups/N/reserved_regions` exists for every group,
//! whatever driver its devices are bound to. The address width is known
//! from sysfs only for Intel VT-d units (`/sys/class/iommu/dmarN/
//! intel-iommu/cap`, the MGAW field); other IOMMUs leave it unknown and a
//! hot-add checks the device's own IOVA ranges instead.

use std::path::Path;

use crate::{parse_regions, HostIommuError, HostRegion};

/// One IOMMU group's reserved regions; their source is `iommu group N`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupRegions {
    /// The group number.
    pub group: u32,
    /// Its regions.
    pub regions: Vec<HostRegion>,
}

/// The reserved regions of every IOMMU group under `root` (a sysfs
/// mount), in group order; none when the host IOMMU is off.
pub fn read_all_groups_in(root: &Path) -> Result<Vec<GroupRegions>, HostIommuError> {
    let dir = root.join("kernel/iommu_groups");
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(HostIommuError::Read { path: dir, err }),
    };
    let mut groups = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|err| HostIommuError::Read {
            path: dir.clone(),
            err,
        })?;
        let Some(group) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let path = entry.path().join("reserved_regions");
        let text = std::fs::read_to_string(&path).map_err(|err| HostIommuError::Read {
            path: path.clone(),
            err,
        })?;
        let source = format!("iommu group {group}");
        let regions = parse_regions(&text, &path.display().to_string(), &source)?;
        groups.push(GroupRegions { group, regions });
    }
    groups.sort_by_key(|g| g.group);
    Ok(groups)
}

/// An IOMMU whose input address width sysfs tells.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddressWidth {
    /// Its name under `/sys/class/iommu` (`dmar0`).
    pub unit: String,
    /// Input address bits: it maps IOVAs below `1 << bits`.
    pub bits: u32,
}

/// The input address widths of the VT-d units under `root`, by name.
/// Units whose capability register does not parse are left out.
pub fn read_address_widths_in(root: &Path) -> Vec<AddressWidth> {
    let Ok(entries) = std::fs::read_dir(root.join("class/iommu")) else {
        return Vec::new();
    };
    let mut widths: Vec<AddressWidth> = entries
        .flatten()
        .filter_map(|entry| {
            let unit = entry.file_name().to_str()?.to_string();
            let cap = std::fs::read_to_string(entry.path().join("intel-iommu/cap")).ok()?;
            let bits = vtd_mgaw(&cap)?;
            Some(AddressWidth { unit, bits })
        })
        .collect();
    widths.sort_by(|a, b| a.unit.cmp(&b.unit));
    widths
}

/// The maximum guest address width (CAP_REG bits 21:16, plus one) of a
/// VT-d capability register as sysfs prints it (hex, no prefix).
fn vtd_mgaw(cap: &str) -> Option<u32> {
    let cap = u64::from_str_radix(cap.trim().trim_start_matches("0x"), 16).ok()?;
    let bits = ((cap >> 16) & 0x3f) as u32 + 1;
    (12..=64).contains(&bits).then_some(bits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::HostRegionKind;

    fn tree(test: &str) -> std::path::PathBuf {
        let root =
            std::env::temp_dir().join(format!("host-iommu-groups-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        root
    }

    #[test]
    fn reads_every_group_in_number_order() {
        let root = tree("all");
        for (n, text) in [
            ("10", "0x00000000fee00000 0x00000000feefffff msi\n"),
            ("2", "0x0000000000000000 0x0000000000ffffff direct-relaxable\n0x00000000fee00000 0x00000000feefffff msi\n"),
            ("devices", ""),
        ] {
            let dir = root.join("kernel/iommu_groups").join(n);
            std::fs::create_dir_all(&dir).expect("mkdir");
            std::fs::write(dir.join("reserved_regions"), text).expect("write");
        }
        let groups = read_all_groups_in(&root).expect("groups");
        assert_eq!(groups.iter().map(|g| g.group).collect::<Vec<_>>(), [2, 10]);
        assert_eq!(groups[0].regions[0].kind, HostRegionKind::DirectRelaxable);
        assert_eq!(groups[0].regions[0].source, "iommu group 2");
        assert_eq!(groups[1].regions.len(), 1);

        std::fs::write(
            root.join("kernel/iommu_groups/10/reserved_regions"),
            "junk\n",
        )
        .expect("w");
        let err = read_all_groups_in(&root).expect_err("bad line").to_string();
        assert!(err.contains("iommu_groups/10/reserved_regions:1"), "{err}");
        let _ = std::fs::remove_dir_all(&root);
        assert_eq!(read_all_groups_in(&root).expect("no iommu"), Vec::new());
    }

    #[test]
    fn vtd_widths_come_from_the_capability_register() {
        // QEMU's intel-iommu with aw-bits=39 (MGAW field 38) and 48.
        assert_eq!(vtd_mgaw("d2008c22260206\n"), Some(39));
        assert_eq!(vtd_mgaw("d2008c222f0206"), Some(48));
        assert_eq!(vtd_mgaw("zz"), None);
        assert_eq!(vtd_mgaw("0"), None);
        let root = tree("widths");
        let unit = root.join("class/iommu/dmar1/intel-iommu");
        std::fs::create_dir_all(&unit).expect("mkdir");
        std::fs::write(unit.join("cap"), "d2008c22260206\n").expect("write");
        std::fs::create_dir_all(root.join("class/iommu/ivhd0/amd-iommu")).expect("mkdir");
        assert_eq!(
            read_address_widths_in(&root),
            [AddressWidth {
                unit: "dmar1".into(),
                bits: 39
            }]
        );
        let _ = std::fs::remove_dir_all(&root);
    }
}
