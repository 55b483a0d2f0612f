//! Devices added to and removed from a running VM (ACPI PCI hotplug, see
//! `docs/hotplug.md`): the hot-pluggable slots of bus 0 in two pools (behind
//! the virtio-iommu, whose endpoints they are from boot, and not), what
//! sits in each, and the two halves of a removal: asking the guest to eject
//! a device, then, once its `_EJ0` acknowledged, taking it off the bus and
//! releasing what it holds (BAR space; its ioeventfds go when its BARs stop
//! decoding, its MSI-X GSIs and routes with its interrupt group, its
//! virtio-iommu endpoint is detached; an assigned device's host address
//! space is emptied, its container dropped, its BAR memory slots removed)
//! so that the slot, the backing file or the host device can be used
//! again.
//!
//! An assigned device behind the virtio-iommu gets a container of its own
//! whose address space the virtio-iommu keeps equal to what the guest's
//! virtual IOMMU state gives the slot's endpoint (never more): it is put
//! into the VFIO back-end empty before the endpoint is assigned, and taken
//! out after the endpoint was unassigned (emptied). One outside it gets all
//! guest RAM mapped, as at boot. Before either, its container's IOVA
//! ranges are checked against the running plan (`crate::hotplug`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use arch::GuestMemory;
use devices::pci::hotplug::HotplugController;
use devices::virtio::block::BlockCounters;
use devices::virtio::iommu::VirtioIommu;
use kvm_ioctls::VmFd;

use super::passthrough::{map_ram_for_unmanaged, KvmVfio};
use super::pci::{bdf, BarSpace, PciBuilder};
use super::{build_block, DeviceError, QueueEvent};
use crate::config::DiskConfig;
use crate::vfio::{KvmSlots, VfioContainers};

/// Why a hot-add or a removal was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum HotplugError {
    /// Every slot of the pool is taken.
    #[error(
        "no free hot-pluggable PCI slot {pool} ({count} in all): remove a hot-added device first"
    )]
    NoFreeSlot {
        /// "behind the virtio-iommu" or "outside the virtio-iommu".
        pool: &'static str,
        /// Slots in that pool.
        count: usize,
    },
    /// This platform has no hotplug (the reason).
    #[error("{0}")]
    Unsupported(&'static str),
    /// `iommu: true` on a VM without a virtio-iommu.
    #[error("iommu: true needs the VM's virtio-iommu, and this VM has none: create the VM with \"iommu\": true in vm.create (--iommu on the command line)")]
    NoIommu,
    /// The id is already taken.
    #[error("device id '{0}' is already used: give the new device another id")]
    IdInUse(String),
    /// No hot-added device has this id.
    #[error("no device has id '{0}': see vm.info for the ids")]
    UnknownId(String),
    /// The removal of this device is under way.
    #[error("device '{0}' is already being removed: wait until the guest has ejected it")]
    Ejecting(String),
    /// Building the device failed.
    #[error(transparent)]
    Device(#[from] DeviceError),
    /// The hotplug registers refused the slot.
    #[error(transparent)]
    Signal(#[from] devices::pci::hotplug::HotplugError),
    /// The host device is in the VM already.
    #[error("host device {0} is assigned to this VM already (as '{1}')")]
    HostInUse(String, String),
    /// The device's host IOMMU does not fit the running VM's plan.
    #[error(transparent)]
    Collision(#[from] crate::hotplug::Collision),
    /// The virtio-iommu could not give the device its host address space.
    #[error("{bdf}: cannot put it behind the virtio-iommu")]
    Assign {
        /// Host BDF.
        bdf: String,
        /// Why.
        #[source]
        source: devices::virtio::iommu::Error,
    },
}

/// What a hot-added device is.
#[derive(Clone, Debug)]
pub enum HotKind {
    /// A virtio-blk disk.
    Disk {
        /// As validated.
        config: DiskConfig,
        /// What it has done.
        counters: Arc<BlockCounters>,
    },
    /// An assigned host device.
    Vfio {
        /// Host BDF, normalized.
        host: String,
        /// Behind the virtio-iommu.
        iommu: bool,
    },
}

/// A device in a hot-pluggable slot.
struct Occupant {
    id: String,
    kind: HotKind,
    space: BarSpace,
    /// The guest was asked to eject it.
    ejecting: bool,
    /// An assigned device's VFIO device and container, dropped after the
    /// device left the bus and its host address space was emptied.
    vfio: Option<super::OpenedVfio>,
}

/// A device just added.
pub struct HotAdded {
    /// Its slot of bus 0.
    pub slot: u8,
    /// Its BDF.
    pub bdf: u16,
    /// Its queue notifications, for the event loop.
    pub queue_events: Vec<QueueEvent>,
    /// What it is.
    pub kind: HotKind,
}

/// A device the guest ejected and minivmm released.
#[derive(Debug)]
pub struct HotRemoved {
    /// Its id.
    pub id: String,
    /// The slot it left.
    pub slot: u8,
}

/// What the device set-up hands over for hotplug.
pub(super) struct HotplugParts {
    pub vm: Arc<VmFd>,
    pub pci: PciBuilder,
    pub memory: GuestMemory,
    pub controller: HotplugController,
    pub iommu: Option<Arc<Mutex<VirtioIommu>>>,
    /// The virtio-iommu's VFIO back-end.
    pub containers: Option<VfioContainers>,
    pub kvm_vfio: KvmVfio,
    pub kvm_slots: Arc<KvmSlots>,
    pub iommu_slots: Vec<u8>,
    pub plain_slots: Vec<u8>,
    /// The running VM's plan, which a hot-added device must fit.
    pub map: arch::plan::GuestMap,
}

/// The hot-pluggable slots and the parts of the VM a hot-add needs.
pub struct HotplugBus {
    vm: Arc<VmFd>,
    pci: PciBuilder,
    memory: GuestMemory,
    controller: HotplugController,
    iommu: Option<Arc<Mutex<VirtioIommu>>>,
    containers: Option<VfioContainers>,
    kvm_vfio: KvmVfio,
    kvm_slots: Arc<KvmSlots>,
    iommu_slots: Vec<u8>,
    plain_slots: Vec<u8>,
    map: arch::plan::GuestMap,
    occupied: BTreeMap<u8, Occupant>,
}

impl HotplugBus {
    pub(super) fn new(parts: HotplugParts) -> Self {
        Self {
            vm: parts.vm,
            pci: parts.pci,
            memory: parts.memory,
            controller: parts.controller,
            iommu: parts.iommu,
            containers: parts.containers,
            kvm_vfio: parts.kvm_vfio,
            kvm_slots: parts.kvm_slots,
            iommu_slots: parts.iommu_slots,
            plain_slots: parts.plain_slots,
            map: parts.map,
            occupied: BTreeMap::new(),
        }
    }

    fn iommu_lock(&self) -> Option<std::sync::MutexGuard<'_, VirtioIommu>> {
        self.iommu
            .as_ref()
            .map(|i| i.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Opens host device `host` (normalized BDF) and adds it as device `id`
    /// in a free slot of its pool, then tells the guest. Behind the
    /// virtio-iommu its container holds only what the guest maps for the
    /// slot's endpoint; outside it, all guest RAM.
    pub fn add_vfio(
        &mut self,
        id: &str,
        host: &str,
        iommu: bool,
    ) -> Result<HotAdded, HotplugError> {
        if self.has(id) {
            return Err(HotplugError::IdInUse(id.to_string()));
        }
        if let Some(o) = self
            .occupied
            .values()
            .find(|o| matches!(&o.kind, HotKind::Vfio { host: h, .. } if h == host))
        {
            return Err(HotplugError::HostInUse(host.to_string(), o.id.clone()));
        }
        let containers = match (iommu, &self.containers) {
            (true, Some(c)) if self.iommu.is_some() => Some(c.clone()),
            (true, _) => return Err(HotplugError::NoIommu),
            (false, _) => None,
        };
        let slot = self.free_slot(iommu)?;
        let endpoint = u32::from(bdf(slot.into()));
        let opened = self.kvm_vfio.open_hot(&self.vm, host, iommu)?;
        // Nothing is mapped yet: a host IOMMU that cannot map what the
        // guest may hand the device refuses it here.
        match crate::vfio::iommu_info(&opened.container) {
            Ok(info) if !info.iova_ranges.is_empty() => {
                let ranges: Vec<_> = info
                    .iova_ranges
                    .iter()
                    .map(|(start, end)| arch::plan::Span {
                        start: *start,
                        end: *end,
                    })
                    .collect();
                crate::hotplug::check_iova_ranges(host, iommu, &self.map, &ranges)?;
            }
            Ok(_) => {}
            Err(e) => log::warn!("{host}: cannot read the IOMMU's IOVA ranges: {e}"),
        }
        match &containers {
            Some(c) => {
                c.insert(endpoint, opened.container.clone());
                let assigned = self.iommu_lock().map(|mut i| i.assign_endpoint(endpoint));
                if let Some(Err(source)) = assigned {
                    c.remove(endpoint);
                    return Err(HotplugError::Assign {
                        bdf: host.to_string(),
                        source,
                    });
                }
            }
            None => map_ram_for_unmanaged(std::slice::from_ref(&opened), &self.memory)?,
        }
        let space = match self.pci.add_vfio_at(&opened, &self.kvm_slots, slot) {
            Ok(space) => space,
            Err(e) => {
                self.retire_host(slot, &containers);
                return Err(e.into());
            }
        };
        let kind = HotKind::Vfio {
            host: host.to_string(),
            iommu,
        };
        self.occupied.insert(
            slot,
            Occupant {
                id: id.to_string(),
                kind: kind.clone(),
                space,
                ejecting: false,
                vfio: Some(opened),
            },
        );
        self.controller.device_arrived(slot)?;
        Ok(HotAdded {
            slot,
            bdf: bdf(slot.into()),
            queue_events: Vec::new(),
            kind,
        })
    }

    /// Empties the host address space of the assigned device of `slot`
    /// and takes its container out of the VFIO back-end.
    fn retire_host(&mut self, slot: u8, containers: &Option<VfioContainers>) {
        let endpoint = u32::from(bdf(slot.into()));
        if let Some(c) = containers {
            if let Some(mut i) = self.iommu_lock() {
                i.unassign_endpoint(endpoint);
            }
            c.remove(endpoint);
        }
    }

    /// Readable when the guest acknowledged an eject (the event loop
    /// watches it; [`HotplugBus::take_ejected`] then finishes removals).
    pub fn ejected_eventfd(&self) -> &vmm_sys_util::eventfd::EventFd {
        self.controller.ejected_eventfd()
    }

    /// Whether `id` names a hot-added device.
    pub fn has(&self, id: &str) -> bool {
        self.occupied.values().any(|o| o.id == id)
    }

    fn free_slot(&self, iommu: bool) -> Result<u8, HotplugError> {
        let (pool, name) = if iommu {
            (&self.iommu_slots, "behind the virtio-iommu")
        } else {
            (&self.plain_slots, "outside the virtio-iommu")
        };
        pool.iter()
            .copied()
            .find(|s| !self.occupied.contains_key(s))
            .ok_or(HotplugError::NoFreeSlot {
                pool: name,
                count: pool.len(),
            })
    }

    /// Adds `disk` as device `id` in a free slot of its pool and tells the
    /// guest.
    pub fn add_disk(&mut self, id: &str, disk: &DiskConfig) -> Result<HotAdded, HotplugError> {
        if self.has(id) {
            return Err(HotplugError::IdInUse(id.to_string()));
        }
        if disk.iommu && self.iommu.is_none() {
            return Err(HotplugError::NoIommu);
        }
        let slot = self.free_slot(disk.iommu)?;
        let bdf = bdf(slot.into());
        let translator = match (&self.iommu, disk.iommu) {
            (Some(iommu), true) => Some(
                iommu
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .translator(u32::from(bdf))
                    .map_err(DeviceError::Iommu)?,
            ),
            _ => None,
        };
        let (block, counters) = build_block(&self.memory, disk, translator)?;
        let before = self.pci.queue_events.len();
        let space = self.pci.add_virtio_at(block, slot)?;
        let queue_events = self.pci.queue_events.split_off(before);
        let kind = HotKind::Disk {
            config: disk.clone(),
            counters,
        };
        self.occupied.insert(
            slot,
            Occupant {
                id: id.to_string(),
                kind: kind.clone(),
                space,
                ejecting: false,
                vfio: None,
            },
        );
        self.controller.device_arrived(slot)?;
        Ok(HotAdded {
            slot,
            bdf,
            queue_events,
            kind,
        })
    }

    /// Asks the guest to eject device `id`; it leaves once the guest
    /// acknowledged ([`HotplugBus::take_ejected`]).
    pub fn request_remove(&mut self, id: &str) -> Result<u8, HotplugError> {
        let (slot, occupant) = self
            .occupied
            .iter_mut()
            .find(|(_, o)| o.id == id)
            .ok_or_else(|| HotplugError::UnknownId(id.to_string()))?;
        if occupant.ejecting {
            return Err(HotplugError::Ejecting(id.to_string()));
        }
        let slot = *slot;
        self.controller.request_eject(slot)?;
        occupant.ejecting = true;
        Ok(slot)
    }

    /// Finishes the removal of every device the guest ejected: off the
    /// bus, its BAR space given back, its virtio-iommu endpoint detached.
    /// The caller drops its queue subscribers, the last holders of the
    /// device (its interrupt group goes with it).
    pub fn take_ejected(&mut self) -> Vec<HotRemoved> {
        let ejected = self.controller.take_ejected();
        let mut removed = Vec::new();
        for slot in (0..32u8).filter(|s| ejected & (1 << s) != 0) {
            let Some(occupant) = self.occupied.remove(&slot) else {
                devices::guest_log!(
                    log::Level::Warn,
                    "pci hotplug: the guest ejected empty slot {slot}"
                );
                continue;
            };
            // Off the bus first: its BARs stop decoding (memory slots and
            // ioeventfds go) and the device model is dropped, which for an
            // assigned device disables its interrupts and unmaps its BARs.
            drop(self.pci.root.remove_device(slot));
            self.pci.free(&occupant.space);
            if let Some(opened) = occupant.vfio {
                let containers = if opened.iommu {
                    self.containers.clone()
                } else {
                    None
                };
                self.retire_host(slot, &containers);
                // The VFIO device, then its container (emptied already, or
                // holding guest RAM for a device outside the virtio-iommu).
                drop(opened);
            }
            if self.iommu_slots.contains(&slot) {
                if let Some(iommu) = &self.iommu {
                    let endpoint = u32::from(bdf(slot.into()));
                    if let Err(e) = iommu
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .release_endpoint(endpoint)
                    {
                        log::error!("{}: {e}", occupant.id);
                    }
                }
            }
            removed.push(HotRemoved {
                id: occupant.id,
                slot,
            });
        }
        removed
    }
}
