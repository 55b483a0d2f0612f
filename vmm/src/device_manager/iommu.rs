//! The virtio-iommu on the bus: its endpoints and PROBE regions from the
//! address plan, the VFIO back-end for assigned endpoints, the translators
//! for emulated ones, fault delivery for the event loop and the
//! request-queue poller.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arch::plan::{GuestMap, ResvKind};
use arch::GuestMemory;
use devices::virtio::iommu::{
    EndpointConfig, EndpointIommu, HostDma, IommuConfig, ReservedKind, ReservedRegion, VirtioIommu,
};
use devices::virtio::VirtioDevice;
use devices::GuestEvents;

use super::pci::PciBuilder;
use super::poller::start_iommu_poller;
use super::{DeviceError, FaultEvent};
use crate::vfio::{VfioContainers, VfioDma};

/// What the virtio-iommu is built from.
pub(super) struct IommuSetup<'a> {
    /// Guest RAM (its queues live there; VFIO maps from it).
    pub memory: &'a GuestMemory,
    /// The address plan (input range, PROBE regions).
    pub map: &'a GuestMap,
    /// Every endpoint behind it.
    pub endpoints: &'a [u16],
    /// The emulated endpoints, which need translators.
    pub translated: &'a [u32],
    /// The assigned endpoints' VFIO containers.
    pub containers: BTreeMap<u32, Arc<vfio_ioctls::VfioContainer>>,
    /// Whether assigned devices may be hot-added behind it (then it has a
    /// VFIO back-end even without assigned devices at boot).
    pub hot_assignable: bool,
    /// Poll window after each request (zero: no poller).
    pub poll: Duration,
    /// Where the device says it must stop the VM.
    pub events: Arc<GuestEvents>,
    /// Where it goes on the bus.
    pub bdf: u16,
}

/// The PROBE regions the plan gives every endpoint.
fn reserved_regions(map: &GuestMap) -> Vec<ReservedRegion> {
    map.probe_reserved
        .iter()
        .map(|r| ReservedRegion {
            start: r.span.start,
            end: r.span.end,
            kind: match r.kind {
                ResvKind::Msi => ReservedKind::Msi,
                ResvKind::Reserved => ReservedKind::Reserved,
            },
        })
        .collect()
}

/// The virtio-iommu on the bus, as the rest of the device set-up needs it.
pub(super) struct AddedIommu {
    /// A translator per emulated endpoint, keyed by endpoint ID.
    pub translators: BTreeMap<u32, EndpointIommu>,
    /// Its fault delivery, for the event loop.
    pub faults: FaultEvent,
    /// The device (hotplug asks it for translators and detaches removed
    /// endpoints).
    pub device: Arc<Mutex<VirtioIommu>>,
    /// The VFIO back-end's containers (hotplug adds and removes them).
    pub containers: Option<VfioContainers>,
}

/// Puts the virtio-iommu on the bus.
pub(super) fn add(pci: &mut PciBuilder, setup: IommuSetup<'_>) -> Result<AddedIommu, DeviceError> {
    let reserved = reserved_regions(setup.map);
    let mut containers = None;
    let host = (!setup.containers.is_empty() || setup.hot_assignable).then(|| {
        let vfio = VfioDma::new(setup.memory.clone(), setup.containers);
        containers = Some(vfio.containers());
        HostDma {
            endpoints: vfio.endpoints(),
            backend: Box::new(vfio),
        }
    });
    let mut device = VirtioIommu::new(
        IommuConfig {
            endpoints: setup
                .endpoints
                .iter()
                .map(|bdf| EndpointConfig {
                    id: u32::from(*bdf),
                    reserved: reserved.clone(),
                })
                .collect(),
            input_range: setup.map.input_range(),
            ..IommuConfig::default()
        },
        setup.memory.clone(),
        host,
    )
    .map_err(DeviceError::Iommu)?;
    device.set_stop_events(setup.events);
    let delivery = device.fault_delivery();
    let faults = FaultEvent {
        fd: delivery
            .eventfd()
            .try_clone()
            .map_err(DeviceError::EventFd)?,
        delivery,
    };
    let translators = setup
        .translated
        .iter()
        .map(|id| Ok((*id, device.translator(*id).map_err(DeviceError::Iommu)?)))
        .collect::<Result<BTreeMap<_, _>, DeviceError>>()?;
    let device = Arc::new(Mutex::new(device));
    if !setup.poll.is_zero() {
        start_iommu_poller(&device, setup.poll)?;
    }
    let dyn_device: Arc<Mutex<dyn VirtioDevice>> = device.clone();
    pci.add_virtio(dyn_device, true, setup.bdf)?;
    Ok(AddedIommu {
        translators,
        faults,
        device,
        containers,
    })
}
