//! The JSON bodies of the API, in cloud-hypervisor's field names, and how a
//! `vm.create` body becomes the same [`VmConfig`] the command line makes.
//!
//! Cloud-hypervisor's schema has many fields minivmm does not implement.
//! Its clients send them at their defaults (ch-remote serializes whole
//! structs), so such a field is accepted when it holds its default (or
//! null) and refused with a 400 naming it otherwise; a field that is in
//! neither schema is refused as unknown. What is accepted is then
//! deserialized with `deny_unknown_fields`.

use std::path::PathBuf;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::cli::{Cli, DEFAULT_CMDLINE};
use crate::config::{ConfigError, VmConfig};

/// A value a not-implemented field may hold (null is always accepted).
#[derive(Clone, Copy, Debug)]
enum AtDefault {
    Null,
    False,
    True,
    AnyBool,
    Int(u64),
    Str(&'static str),
    EmptyArray,
}

impl AtDefault {
    fn accepts(self, value: &Value) -> bool {
        match (self, value) {
            (_, Value::Null) => true,
            (AtDefault::False, Value::Bool(false)) | (AtDefault::True, Value::Bool(true)) => true,
            (AtDefault::AnyBool, Value::Bool(_)) => true,
            (AtDefault::Int(n), Value::Number(v)) => v.as_u64() == Some(n),
            (AtDefault::Str(s), Value::String(v)) => v == s,
            (AtDefault::EmptyArray, Value::Array(a)) => a.is_empty(),
            _ => false,
        }
    }
}

/// One object of the schema: the fields minivmm serves, and the ones it
/// accepts only at their default.
struct Shape {
    served: &'static [&'static str],
    tolerated: &'static [(&'static str, AtDefault)],
}

const VM_CONFIG: Shape = Shape {
    served: &["cpus", "memory", "payload", "disks", "devices", "iommu"],
    tolerated: &[
        ("rate_limit_groups", AtDefault::Null),
        ("net", AtDefault::EmptyArray),
        ("rng", AtDefault::Null),
        ("balloon", AtDefault::Null),
        ("fs", AtDefault::EmptyArray),
        ("generic_vhost_user", AtDefault::EmptyArray),
        ("pmem", AtDefault::EmptyArray),
        ("serial", AtDefault::Null),
        ("console", AtDefault::Null),
        ("debug_console", AtDefault::Null),
        ("user_devices", AtDefault::EmptyArray),
        ("vdpa", AtDefault::EmptyArray),
        ("vsock", AtDefault::Null),
        ("numa", AtDefault::Null),
        ("watchdog", AtDefault::False),
        ("rtc", AtDefault::Null),
        // minivmm always has pvpanic.
        ("pvpanic", AtDefault::AnyBool),
        ("pci_segments", AtDefault::Null),
        ("platform", AtDefault::Null),
        ("tpm", AtDefault::Null),
        ("landlock_enable", AtDefault::False),
        ("landlock_rules", AtDefault::Null),
    ],
};

const CPUS: Shape = Shape {
    served: &["boot_vcpus", "max_vcpus"],
    tolerated: &[
        ("topology", AtDefault::Null),
        ("kvm_hyperv", AtDefault::False),
        ("max_phys_bits", AtDefault::Int(46)),
        ("affinity", AtDefault::Null),
        ("features", AtDefault::Null),
        ("nested", AtDefault::True),
        ("core_scheduling", AtDefault::Str("Vm")),
        ("profile", AtDefault::Str("Host")),
    ],
};

const MEMORY: Shape = Shape {
    served: &["size"],
    tolerated: &[
        ("mergeable", AtDefault::False),
        ("hotplug_method", AtDefault::Str("Acpi")),
        ("hotplug_size", AtDefault::Null),
        ("hotplugged_size", AtDefault::Null),
        ("shared", AtDefault::False),
        ("hugepages", AtDefault::False),
        ("hugepage_size", AtDefault::Null),
        ("prefault", AtDefault::False),
        ("reserve", AtDefault::False),
        ("zones", AtDefault::Null),
        ("thp", AtDefault::True),
    ],
};

const PAYLOAD: Shape = Shape {
    served: &["kernel", "initramfs", "cmdline"],
    tolerated: &[
        ("firmware", AtDefault::Null),
        ("igvm", AtDefault::Null),
        ("host_data", AtDefault::Null),
    ],
};

const DISK: Shape = Shape {
    served: &["path", "readonly", "iommu", "id"],
    tolerated: &[
        ("direct", AtDefault::False),
        ("num_queues", AtDefault::Int(1)),
        ("queue_size", AtDefault::Int(128)),
        ("vhost_user", AtDefault::False),
        ("vhost_socket", AtDefault::Null),
        ("rate_limit_group", AtDefault::Null),
        ("rate_limiter_config", AtDefault::Null),
        // minivmm uses neither io_uring nor AIO.
        ("disable_io_uring", AtDefault::AnyBool),
        ("disable_aio", AtDefault::AnyBool),
        ("pci_segment", AtDefault::Int(0)),
        ("pci_device_id", AtDefault::Null),
        ("serial", AtDefault::Null),
        ("queue_affinity", AtDefault::Null),
        ("backing_files", AtDefault::False),
        ("sparse", AtDefault::True),
        ("image_type", AtDefault::Str("Raw")),
        ("lock_granularity", AtDefault::Str("ByteRange")),
    ],
};

const DEVICE: Shape = Shape {
    served: &["path", "iommu", "id"],
    tolerated: &[
        ("pci_segment", AtDefault::Int(0)),
        ("pci_device_id", AtDefault::Null),
        ("fd", AtDefault::Null),
        ("x_nv_gpudirect_clique", AtDefault::Null),
        ("x_exclude_mmap_bars", AtDefault::EmptyArray),
    ],
};

const REMOVE: Shape = Shape {
    served: &["id"],
    tolerated: &[],
};

/// A body that does not parse or asks for what minivmm does not do: a 400
/// with this message.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct BodyError(pub String);

/// Drops the tolerated fields of the object at `at` (refusing those not at
/// their default) and refuses fields of neither list.
fn check(value: &mut Value, at: &str, shape: &Shape) -> Result<(), BodyError> {
    let Value::Object(map) = value else {
        return Err(BodyError(format!("{at} must be a JSON object")));
    };
    let keys: Vec<String> = map.keys().cloned().collect();
    for key in keys {
        if shape.served.contains(&key.as_str()) {
            continue;
        }
        let name = if at.is_empty() {
            key.clone()
        } else {
            format!("{at}.{key}")
        };
        match shape.tolerated.iter().find(|(k, _)| *k == key) {
            Some((_, default)) if map.get(&key).is_some_and(|v| default.accepts(v)) => {
                map.remove(&key);
            }
            Some(_) => {
                return Err(BodyError(format!(
                    "{name} is not supported by minivmm: leave it out or at its default"
                )))
            }
            None => return Err(BodyError(format!("unknown field {name}"))),
        }
    }
    Ok(())
}

fn check_field(map: &mut Map<String, Value>, key: &str, shape: &Shape) -> Result<(), BodyError> {
    match map.get_mut(key) {
        Some(Value::Null) | None => Ok(()),
        Some(v) => check(v, key, shape),
    }
}

fn check_array(map: &mut Map<String, Value>, key: &str, shape: &Shape) -> Result<(), BodyError> {
    match map.get_mut(key) {
        Some(Value::Null) | None => Ok(()),
        Some(Value::Array(items)) => items
            .iter_mut()
            .enumerate()
            .try_for_each(|(i, item)| check(item, &format!("{key}[{i}]"), shape)),
        Some(_) => Err(BodyError(format!("{key} must be a JSON array"))),
    }
}

fn parse_json(body: &[u8]) -> Result<Value, BodyError> {
    if body.is_empty() {
        return Err(BodyError("this request needs a JSON body".into()));
    }
    serde_json::from_slice(body).map_err(|e| BodyError(format!("malformed JSON: {e}")))
}

fn typed<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, BodyError> {
    serde_json::from_value(value).map_err(|e| BodyError(format!("invalid request: {e}")))
}

/// `cpus` of `vm.create`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CpusBody {
    /// vCPUs at boot.
    pub boot_vcpus: u32,
    /// Must equal `boot_vcpus` (no vCPU hotplug).
    pub max_vcpus: Option<u32>,
}

/// `memory` of `vm.create`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MemoryBody {
    /// Bytes of guest RAM.
    pub size: u64,
}

/// `payload` of `vm.create`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PayloadBody {
    /// bzImage.
    pub kernel: Option<PathBuf>,
    /// initramfs.
    pub initramfs: Option<PathBuf>,
    /// Kernel command line.
    pub cmdline: Option<String>,
}

/// A disk (`disks[]` of `vm.create`, and `vm.add-disk`).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DiskBody {
    /// Raw image.
    pub path: Option<PathBuf>,
    /// Refuse guest writes.
    #[serde(default)]
    pub readonly: bool,
    /// Behind the virtio-iommu.
    #[serde(default)]
    pub iommu: bool,
    /// The API's name for it (default `_disk<N>`).
    pub id: Option<String>,
}

/// An assigned device (`devices[]` of `vm.create`, and `vm.add-device`).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DeviceBody {
    /// Its sysfs path, `/sys/bus/pci/devices/0000:01:00.0`.
    pub path: Option<PathBuf>,
    /// Behind the virtio-iommu.
    #[serde(default)]
    pub iommu: bool,
    /// The API's name for it (default `_vfio<N>`).
    pub id: Option<String>,
}

/// `vm.remove-device`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RemoveBody {
    /// The device's id.
    pub id: String,
}

/// The body of `vm.create`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    /// vCPUs (default 1).
    pub cpus: Option<CpusBody>,
    /// RAM (default 512 MiB, as cloud-hypervisor).
    pub memory: Option<MemoryBody>,
    /// What to boot.
    pub payload: Option<PayloadBody>,
    /// virtio-blk disks.
    pub disks: Option<Vec<DiskBody>>,
    /// Assigned host devices.
    pub devices: Option<Vec<DeviceBody>>,
    /// Whether the VM has a virtio-iommu (it has one when a disk or device
    /// asks for it).
    pub iommu: Option<bool>,
}

impl CreateBody {
    /// Parses a `vm.create` body.
    pub fn parse(body: &[u8]) -> Result<Self, BodyError> {
        let mut value = parse_json(body)?;
        check(&mut value, "", &VM_CONFIG)?;
        if let Value::Object(map) = &mut value {
            check_field(map, "cpus", &CPUS)?;
            check_field(map, "memory", &MEMORY)?;
            check_field(map, "payload", &PAYLOAD)?;
            check_array(map, "disks", &DISK)?;
            check_array(map, "devices", &DEVICE)?;
        }
        typed(value)
    }
}

impl DiskBody {
    /// Parses a `vm.add-disk` body.
    pub fn parse(body: &[u8]) -> Result<Self, BodyError> {
        let mut value = parse_json(body)?;
        check(&mut value, "", &DISK)?;
        typed(value)
    }

    /// The disk a `vm.add-disk` body describes, checked as `--disk` is.
    pub fn disk_config(&self) -> Result<crate::config::DiskConfig, CreateError> {
        let value = self.cli_value("vm.add-disk")?;
        Ok(crate::config::parse_disk(&value)?)
    }

    /// The `--disk` value for this disk.
    fn cli_value(&self, at: &str) -> Result<String, BodyError> {
        let path = self
            .path
            .as_ref()
            .ok_or_else(|| BodyError(format!("{at}.path is missing: give the raw image's path")))?;
        let path = path.to_str().filter(|p| !p.contains(',')).ok_or_else(|| {
            BodyError(format!(
                "{at}.path '{}' must be UTF-8 without ','",
                path.display()
            ))
        })?;
        Ok(format!(
            "path={path},readonly={},iommu={}",
            on_off(self.readonly),
            on_off(self.iommu)
        ))
    }
}

impl DeviceBody {
    /// Parses a `vm.add-device` body.
    pub fn parse(body: &[u8]) -> Result<Self, BodyError> {
        let mut value = parse_json(body)?;
        check(&mut value, "", &DEVICE)?;
        typed(value)
    }

    /// The host BDF: the last component of the sysfs path.
    pub fn bdf(&self, at: &str) -> Result<String, BodyError> {
        let path = self.path.as_ref().ok_or_else(|| {
            BodyError(format!(
                "{at}.path is missing: give the device's sysfs path, /sys/bus/pci/devices/0000:01:00.0"
            ))
        })?;
        path.components()
            .next_back()
            .and_then(|c| c.as_os_str().to_str())
            .filter(|b| !b.contains(',') && !b.contains('='))
            .map(str::to_string)
            .ok_or_else(|| {
                BodyError(format!(
                    "{at}.path '{}' does not end in a PCI address such as 0000:01:00.0",
                    path.display()
                ))
            })
    }

    /// The `--vfio` value for this device.
    fn cli_value(&self, at: &str) -> Result<String, BodyError> {
        Ok(format!("{},iommu={}", self.bdf(at)?, on_off(self.iommu)))
    }
}

impl RemoveBody {
    /// Parses a `vm.remove-device` body.
    pub fn parse(body: &[u8]) -> Result<Self, BodyError> {
        let mut value = parse_json(body)?;
        check(&mut value, "", &REMOVE)?;
        typed(value)
    }
}

fn on_off(on: bool) -> &'static str {
    if on {
        "on"
    } else {
        "off"
    }
}

/// What the VMM's own command line sets for every VM it creates.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VmmSettings {
    /// `--host-regions` files.
    pub host_regions: Vec<PathBuf>,
    /// `--allow-direct-regions`.
    pub allow_direct_regions: bool,
    /// `--iommu-poll-us`.
    pub iommu_poll_us: u64,
}

impl VmmSettings {
    /// The VMM-wide options of `cli`.
    pub fn from_cli(cli: &Cli) -> Self {
        Self {
            host_regions: cli.host_regions.clone(),
            allow_direct_regions: cli.allow_direct_regions,
            iommu_poll_us: cli.iommu_poll_us,
        }
    }
}

/// Why a `vm.create` body is not a VM.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CreateError {
    /// The body itself.
    #[error(transparent)]
    Body(#[from] BodyError),
    /// The configuration it makes (the command line's checks and messages).
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// The configuration `body` describes, built as the command line would
/// build it (the same checks, the same messages).
pub fn vm_config(body: &CreateBody, settings: &VmmSettings) -> Result<VmConfig, CreateError> {
    let payload = body.payload.clone().unwrap_or(PayloadBody {
        kernel: None,
        initramfs: None,
        cmdline: None,
    });
    let cpus = body.cpus.as_ref().map_or(1, |c| c.boot_vcpus);
    if let Some(max) = body.cpus.as_ref().and_then(|c| c.max_vcpus) {
        if max != cpus {
            return Err(BodyError(format!(
                "cpus.max_vcpus {max} differs from cpus.boot_vcpus {cpus}: minivmm has no vCPU hotplug, set them equal"
            ))
            .into());
        }
    }
    let disks = body.disks.as_deref().unwrap_or_default();
    let devices = body.devices.as_deref().unwrap_or_default();
    let cli = Cli {
        kernel: payload.kernel,
        initrd: payload.initramfs,
        cmdline: payload
            .cmdline
            .unwrap_or_else(|| DEFAULT_CMDLINE.to_string()),
        memory: body
            .memory
            .as_ref()
            .map_or_else(|| "512M".to_string(), |m| m.size.to_string()),
        cpus,
        disk: disks
            .iter()
            .enumerate()
            .map(|(i, d)| d.cli_value(&format!("disks[{i}]")))
            .collect::<Result<_, _>>()?,
        vfio: devices
            .iter()
            .enumerate()
            .map(|(i, d)| d.cli_value(&format!("devices[{i}]")))
            .collect::<Result<_, _>>()?,
        iommu_poll_us: settings.iommu_poll_us,
        iommu: body.iommu == Some(true),
        dry_run: false,
        host_regions: settings.host_regions.clone(),
        allow_direct_regions: settings.allow_direct_regions,
        api_socket: None,
    };
    // Served by the API: devices may be hot-added.
    Ok(VmConfig {
        hotplug: true,
        ..VmConfig::from_cli(cli)?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(json: &str) -> Result<VmConfig, CreateError> {
        let body = CreateBody::parse(json.as_bytes())?;
        vm_config(&body, &VmmSettings::default())
    }

    #[test]
    fn a_cloud_hypervisor_body_makes_the_cli_config() {
        let json = r#"{
            "cpus": {"boot_vcpus": 2, "max_vcpus": 2, "kvm_hyperv": false, "max_phys_bits": 46},
            "memory": {"size": 1073741824, "shared": false, "hugepages": false, "thp": true},
            "payload": {"kernel": "/k", "initramfs": "/i", "cmdline": "console=ttyS0"},
            "disks": [{"path": "/d.img", "readonly": true, "iommu": true, "num_queues": 1,
                       "queue_size": 128, "vhost_user": false, "vhost_socket": null, "id": "root"}],
            "devices": [{"path": "/sys/bus/pci/devices/0000:01:00.0/", "iommu": true, "id": "nic"}],
            "net": [], "rng": null, "pvpanic": false, "watchdog": false
        }"#;
        let got = create(json).expect("config");
        let mut cli = Cli {
            kernel: Some("/k".into()),
            initrd: Some("/i".into()),
            cmdline: "console=ttyS0".into(),
            memory: "1G".into(),
            cpus: 2,
            disk: vec!["path=/d.img,readonly=on,iommu=on".into()],
            vfio: vec!["0000:01:00.0,iommu=on".into()],
            iommu_poll_us: 0,
            iommu: false,
            dry_run: false,
            host_regions: vec![],
            allow_direct_regions: false,
            api_socket: None,
        };
        let served = |cli: Cli| VmConfig {
            hotplug: true,
            ..VmConfig::from_cli(cli).expect("cli")
        };
        assert_eq!(got, served(cli.clone()));
        // Defaults: 1 vCPU, 512 MiB, the CLI's command line, iommu off.
        let got =
            create(r#"{"payload": {"kernel": "/k"}, "devices": [{"path": "/x/0000:02:00.0"}]}"#)
                .expect("defaults");
        cli.initrd = None;
        cli.cmdline = DEFAULT_CMDLINE.into();
        cli.memory = "512M".into();
        cli.cpus = 1;
        cli.disk.clear();
        cli.vfio = vec!["0000:02:00.0,iommu=off".into()];
        assert_eq!(got, served(cli));
    }

    #[test]
    fn the_cli_checks_and_messages_apply() {
        let small = create(r#"{"payload": {"kernel": "/k"}, "memory": {"size": 1048576}}"#);
        assert_eq!(
            small.expect_err("too small").to_string(),
            "--memory 1 MiB is too small: a Linux guest needs at least 64 MiB"
        );
        let no_kernel = create(r#"{"memory": {"size": 1073741824}}"#).expect_err("kernel");
        assert_eq!(no_kernel, CreateError::Config(ConfigError::NoKernel));
        let cpus = create(r#"{"payload": {"kernel": "/k"}, "cpus": {"boot_vcpus": 0}}"#);
        assert_eq!(cpus, Err(CreateError::Config(ConfigError::NoCpus)));
    }

    #[test]
    fn malformed_unknown_and_unsupported_fields_are_refused() {
        let cases = [
            ("", "this request needs a JSON body"),
            ("{", "malformed JSON"),
            ("[1]", "must be a JSON object"),
            (
                r#"{"payload": {"kernel": "/k"}, "bogus": 1}"#,
                "unknown field bogus",
            ),
            (
                r#"{"payload": {"kernel": "/k", "extra": "x"}}"#,
                "unknown field payload.extra",
            ),
            (
                r#"{"payload": {"kernel": "/k"}, "disks": [{"path": "/a", "num_queues": 4}]}"#,
                "disks[0].num_queues is not supported by minivmm",
            ),
            (
                r#"{"payload": {"kernel": "/k"}, "memory": {"size": "1G"}}"#,
                "invalid request",
            ),
            (
                r#"{"payload": {"kernel": "/k"}, "net": [{"tap": "tap0"}]}"#,
                "net is not supported by minivmm",
            ),
        ];
        for (json, want) in cases {
            let err = CreateBody::parse(json.as_bytes()).expect_err(json);
            assert!(err.0.contains(want), "{json}: {err}");
        }
        let cases = [
            (
                r#"{"payload": {"kernel": "/k"}, "cpus": {"boot_vcpus": 2, "max_vcpus": 4}}"#,
                "no vCPU hotplug",
            ),
            (
                r#"{"payload": {"kernel": "/k"}, "disks": [{"path": "/a,b"}]}"#,
                "without ','",
            ),
            (
                r#"{"payload": {"kernel": "/k"}, "disks": [{"readonly": true}]}"#,
                "disks[0].path is missing",
            ),
        ];
        for (json, want) in cases {
            let err = create(json).expect_err(json);
            assert!(err.to_string().contains(want), "{json}: {err}");
        }
        // A virtio-iommu for devices hot-added later.
        let c = create(r#"{"payload": {"kernel": "/k"}, "iommu": true}"#).expect("iommu");
        assert!(c.iommu && c.needs_iommu());
    }

    #[test]
    fn hotplug_bodies() {
        let d = DeviceBody::parse(br#"{"path": "/sys/bus/pci/devices/0000:00:03.0", "iommu": true, "id": "nic0", "pci_segment": 0}"#)
            .expect("device");
        assert_eq!(d.bdf("device").expect("bdf"), "0000:00:03.0");
        assert!(d.iommu);
        assert!(DeviceBody::parse(br#"{"path": "/x", "pci_segment": 1}"#).is_err());
        let k = DiskBody::parse(br#"{"path": "/tmp/a.img", "iommu": true}"#).expect("disk");
        assert_eq!(
            k.cli_value("disk").expect("value"),
            "path=/tmp/a.img,readonly=off,iommu=on"
        );
        assert_eq!(
            RemoveBody::parse(br#"{"id": "nic0"}"#).expect("remove").id,
            "nic0"
        );
        assert!(RemoveBody::parse(br#"{}"#).is_err());
        assert!(RemoveBody::parse(br#"{"id": 3}"#).is_err());
    }
}
