//! Host IOMMU constraints, gathered before anything is mapped.
//!
//! - [`parse`]: the `reserved_regions` format Linux prints for every IOMMU
//!   group (`0x%016llx 0x%016llx TYPE` per line, both ends inclusive), used
//!   both for sysfs and for `--host-regions` files describing other hosts.
//! - [`sysfs`]: PCI addresses and reading a device's group regions from
//!   `/sys/bus/pci/devices/BDF/iommu_group/reserved_regions`, which is
//!   readable before VFIO is opened.
//! - [`groups`]: every IOMMU group's regions and the IOMMUs' address
//!   widths, which a hot-pluggable VM's plan reserves up front.
//! - [`gather`]: everything into one [`HostConstraints`] for the planner
//!   (`arch::plan`). VFIO's IOVA ranges and page sizes are added to
//!   it later with [`HostConstraints::add_iova_ranges`] and
//!   [`HostConstraints::add_page_sizes`].

mod error;
pub mod groups;
pub mod parse;
pub mod sysfs;

pub use arch::plan::{HostConstraints, HostRegion, HostRegionKind, IovaRange, Span};
pub use error::HostIommuError;
pub use groups::{read_address_widths_in, read_all_groups_in, AddressWidth, GroupRegions};
pub use parse::{parse_regions, read_region_file};
pub use sysfs::{read_device_regions, read_device_regions_in, Bdf, SYSFS_ROOT};

use std::path::{Path, PathBuf};

/// Host constraints from the sysfs regions of `bdfs` (under `sysfs_root`)
/// and from the region `files` of other hosts. IOVA ranges stay unknown.
pub fn gather(
    sysfs_root: &Path,
    bdfs: &[Bdf],
    files: &[PathBuf],
) -> Result<HostConstraints, HostIommuError> {
    let mut host = HostConstraints::default();
    for bdf in bdfs {
        host.regions
            .extend(read_device_regions_in(sysfs_root, bdf)?);
    }
    for file in files {
        host.regions.extend(read_region_file(file)?);
    }
    Ok(host)
}
