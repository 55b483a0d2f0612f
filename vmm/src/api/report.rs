//! The JSON the API reports about a VM: `vm.info` (cloud-hypervisor's
//! `VmInfo` shape) rendered from the validated configuration and, once the
//! VM runs, from what was actually built; `vm.plan` from the planned guest
//! map and the host constraints it obeyed; `vm.counters` from the devices'
//! own counters.

use arch::plan::{GuestMap, HostConstraints, ResvKind, Span};
use serde_json::{json, Value};

use crate::config::VmConfig;
use crate::device_manager::{HotKind, PlacedDevice, PlacedKind};
use crate::running::Layout;

/// The sysfs directory of host PCI devices, as `devices[].path` names them.
pub const SYSFS_PCI_DEVICES: &str = "/sys/bus/pci/devices";

/// The API's names of a VM's devices.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceIds {
    /// One per `VmConfig::disks`.
    pub disks: Vec<String>,
    /// One per `VmConfig::vfio`.
    pub vfio: Vec<String>,
}

/// `0000:00:02.0` for a BDF of bus 0, segment 0.
pub fn guest_bdf(bdf: u16) -> String {
    format!(
        "0000:{:02x}:{:02x}.{}",
        bdf >> 8,
        (bdf >> 3) & 0x1f,
        bdf & 7
    )
}

fn hex(v: u64) -> String {
    format!("{v:#018x}")
}

fn span(s: Span) -> Value {
    // Only the whole 64-bit space has a size past u64: say it in a string.
    let size = u64::try_from(s.size())
        .map(Value::from)
        .unwrap_or_else(|_| Value::from(s.size().to_string()));
    json!({ "start": hex(s.start), "end": hex(s.end), "size": size })
}

fn window((base, size): (u64, u64)) -> Value {
    match Span::from_size(base, size) {
        Some(s) => span(s),
        None => Value::Null,
    }
}

/// `vm.info`'s `config`: the configuration as minivmm validated it, with
/// the host devices' addresses as they were opened when the VM runs.
pub fn config(config: &VmConfig, ids: &DeviceIds, layout: Option<&Layout>) -> Value {
    let host_bdf = |index: usize| {
        layout
            .and_then(|l| {
                l.devices.iter().find_map(|d| match &d.kind {
                    PlacedKind::Vfio { index: i, host } if *i == index => Some(host.clone()),
                    _ => None,
                })
            })
            .unwrap_or_else(|| config.vfio[index].bdf.clone())
    };
    // Disks added while the VM runs follow those it was created with.
    let hot_disks = layout
        .into_iter()
        .flat_map(|l| &l.devices)
        .filter_map(|d| match &d.kind {
            PlacedKind::Hot {
                id,
                kind: HotKind::Disk { config: disk, .. },
            } => Some(json!({
                "path": disk.path, "readonly": disk.read_only, "iommu": disk.iommu, "id": id,
            })),
            _ => None,
        });
    let hot_devices = layout
        .into_iter()
        .flat_map(|l| &l.devices)
        .filter_map(|d| match &d.kind {
            PlacedKind::Hot {
                id,
                kind: HotKind::Vfio { host, iommu },
            } => Some(json!({
                "path": format!("{SYSFS_PCI_DEVICES}/{host}"), "iommu": iommu, "id": id,
            })),
            _ => None,
        });
    json!({
        "cpus": { "boot_vcpus": config.cpus, "max_vcpus": config.cpus },
        "memory": { "size": config.memory },
        "payload": {
            "kernel": config.kernel,
            "initramfs": config.initrd,
            "cmdline": config.cmdline,
        },
        "disks": config.disks.iter().zip(&ids.disks).map(|(d, id)| json!({
            "path": d.path, "readonly": d.read_only, "iommu": d.iommu, "id": id,
        })).chain(hot_disks).collect::<Vec<_>>(),
        "devices": config.vfio.iter().zip(&ids.vfio).enumerate().map(|(i, (v, id))| json!({
            "path": format!("{SYSFS_PCI_DEVICES}/{}", host_bdf(i)), "iommu": v.iommu, "id": id,
        })).chain(hot_devices).collect::<Vec<_>>(),
        "iommu": config.needs_iommu(),
    })
}

fn device_id(device: &PlacedDevice, ids: &DeviceIds) -> String {
    match &device.kind {
        PlacedKind::Iommu => "_virtio-iommu".to_string(),
        PlacedKind::Disk { index, .. } => ids.disks.get(*index).cloned().unwrap_or_default(),
        PlacedKind::Vfio { index, .. } => ids.vfio.get(*index).cloned().unwrap_or_default(),
        PlacedKind::Hot { id, .. } => id.clone(),
    }
}

/// `vm.info`: `state` is `Created` or `Running`; a running VM adds
/// `memory_actual_size` (the planned RAM) and `device_tree` (what is on
/// PCI bus 0, with guest BDFs).
pub fn info(config: &VmConfig, ids: &DeviceIds, layout: Option<&Layout>) -> Value {
    let mut info = json!({
        "config": self::config(config, ids, layout),
        "state": if layout.is_some() { "Running" } else { "Created" },
    });
    if let Some(layout) = layout {
        let ram: u64 = layout.map.ram.iter().map(|r| r.size).sum();
        let tree: serde_json::Map<String, Value> = layout
            .devices
            .iter()
            .map(|d| {
                let id = device_id(d, ids);
                let node = json!({
                    "id": id,
                    "resources": [],
                    "children": [],
                    "pci_bdf": guest_bdf(d.bdf),
                });
                (id, node)
            })
            .collect();
        info["memory_actual_size"] = json!(ram);
        info["device_tree"] = Value::Object(tree);
    }
    info
}

/// `vm.counters`: per disk, what it completed.
pub fn counters(layout: &Layout, ids: &DeviceIds) -> Value {
    let map: serde_json::Map<String, Value> = layout
        .devices
        .iter()
        .filter_map(|d| match &d.kind {
            PlacedKind::Disk { counters, .. }
            | PlacedKind::Hot {
                kind: HotKind::Disk { counters, .. },
                ..
            } => {
                let c = counters.snapshot();
                Some((
                    device_id(d, ids),
                    json!({
                        "read_ops": c.read_ops,
                        "read_bytes": c.read_bytes,
                        "write_ops": c.write_ops,
                        "write_bytes": c.write_bytes,
                        "flush_ops": c.flush_ops,
                        "errors": c.errors,
                    }),
                ))
            }
            _ => None,
        })
        .collect();
    Value::Object(map)
}

/// `vm.plan`: the planned map (RAM, holes with their reasons, windows),
/// the virtio-iommu's view, and the host constraints it obeyed.
pub fn plan(map: &GuestMap, host: &HostConstraints) -> Value {
    let mut regions = host.regions.clone();
    regions.sort();
    regions.dedup();
    json!({
        "ram": map.ram.iter().filter_map(|r| Span::from_size(r.start.0, r.size)).map(span).collect::<Vec<_>>(),
        "holes": map.holes.iter().map(|h| {
            let mut v = span(h.span);
            v["reason"] = json!(h.reason);
            v
        }).collect::<Vec<_>>(),
        "mmio32": window(map.mmio32),
        "mmio64": window(map.mmio64),
        "ecam": window(map.ecam),
        "msi_window": span(map.msi_window),
        "virtio_iommu": {
            "input_range": span(map.iommu_input_range),
            "probe_reserved": map.probe_reserved.iter().map(|r| {
                let mut v = span(r.span);
                v["kind"] = json!(match r.kind { ResvKind::Msi => "msi", ResvKind::Reserved => "reserved" });
                v
            }).collect::<Vec<_>>(),
        },
        "identity_maps": map.identity_maps.iter().map(|m| {
            let mut v = span(m.span);
            v["source"] = json!(m.source);
            v
        }).collect::<Vec<_>>(),
        "host": {
            "regions": regions.iter().map(|r| {
                let mut v = span(r.span);
                v["kind"] = json!(r.kind.to_string());
                v["source"] = json!(r.source);
                v
            }).collect::<Vec<_>>(),
            "iova_ranges": host.iova_ranges.as_ref().map(|ranges| ranges.iter().copied().map(span).collect::<Vec<_>>()),
        },
        "notes": map.notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_json_is_the_planned_map() {
        let map = arch::x86_64::plan::plan(
            &arch::plan::PlanInput::new(4 << 30),
            &HostConstraints::default(),
        )
        .expect("plan");
        let v = plan(&map, &HostConstraints::default());
        assert_eq!(v["ram"][0]["start"], "0x0000000000000000");
        assert_eq!(v["ram"].as_array().map(Vec::len), Some(map.ram.len()));
        assert_eq!(v["mmio32"]["start"], "0x00000000c0000000");
        assert_eq!(v["mmio32"]["size"], 512u64 << 20);
        assert_eq!(v["msi_window"]["start"], "0x00000000fee00000");
        assert_eq!(v["virtio_iommu"]["probe_reserved"][0]["kind"], "msi");
        assert_eq!(v["host"]["iova_ranges"], Value::Null);
        assert!(v["holes"]
            .as_array()
            .is_some_and(|h| h.iter().any(|h| h["reason"] == "32-bit PCI MMIO window")));
    }

    #[test]
    fn bdfs_print_like_lspci() {
        assert_eq!(guest_bdf(2 << 3), "0000:00:02.0");
        assert_eq!(guest_bdf(0x1f << 3 | 7), "0000:00:1f.7");
    }
}
