//! Interrupt routing: KVM's GSI routing table (the platform's legacy
//! irqchip routes plus one MSI route per programmed MSI-X vector) and the
//! irqfds that inject them. Where the platform asks for it (arm64's ITS),
//! each MSI route carries its device's requester ID.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use devices::pci::{MsiMessage, MsixInterrupts};
use kvm_bindings::{
    kvm_irq_routing_entry, kvm_irq_routing_entry__bindgen_ty_1, kvm_irq_routing_msi, KvmIrqRouting,
    KVM_IRQ_ROUTING_MSI, KVM_MSI_VALID_DEVID,
};
use kvm_ioctls::VmFd;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::platform::{MsiRouting, Native, Platform};

/// Interrupt set-up failures.
#[derive(Debug, thiserror::Error)]
pub enum InterruptError {
    /// KVM refused an irqfd.
    #[error("cannot register an irqfd for GSI {0}")]
    Irqfd(u32, #[source] kvm_ioctls::Error),
    /// An eventfd could not be created.
    #[error("cannot create an interrupt eventfd")]
    EventFd(#[source] std::io::Error),
    /// KVM refused the routing table.
    #[error("cannot set the GSI routing table")]
    Routing(#[source] kvm_ioctls::Error),
    /// Too many routes.
    #[error("out of GSIs for MSI-X vectors")]
    OutOfGsis,
}

/// Owns the VM's GSI routing table.
pub struct InterruptManager {
    vm: Arc<VmFd>,
    routing: MsiRouting,
    state: Mutex<Routes>,
}

struct Routes {
    next_gsi: u32,
    /// Each live MSI route's message and requester ID.
    msi: BTreeMap<u32, (MsiMessage, u16)>,
}

/// The route of `gsi` for `msg`, from the device with requester ID
/// `requester` (carried only when `device_id`).
fn msi_entry(gsi: u32, msg: &MsiMessage, requester: u16, device_id: bool) -> kvm_irq_routing_entry {
    let mut msi = kvm_irq_routing_msi {
        address_lo: msg.addr as u32,
        address_hi: (msg.addr >> 32) as u32,
        data: msg.data,
        ..Default::default()
    };
    let mut flags = 0;
    if device_id {
        msi.__bindgen_anon_1.devid = u32::from(requester);
        flags = KVM_MSI_VALID_DEVID;
    }
    kvm_irq_routing_entry {
        gsi,
        type_: KVM_IRQ_ROUTING_MSI,
        flags,
        u: kvm_irq_routing_entry__bindgen_ty_1 { msi },
        ..Default::default()
    }
}

impl InterruptManager {
    /// Routing for `vm`, which must have an in-kernel irqchip.
    pub fn new(vm: Arc<VmFd>) -> Self {
        let routing = Native::msi_routing();
        Self {
            vm,
            state: Mutex::new(Routes {
                next_gsi: routing.first_msi_gsi,
                msi: BTreeMap::new(),
            }),
            routing,
        }
    }

    fn set_msi_route(
        &self,
        gsi: u32,
        msg: Option<MsiMessage>,
        requester: u16,
    ) -> Result<(), InterruptError> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match msg {
            Some(m) => state.msi.insert(gsi, (m, requester)),
            None => state.msi.remove(&gsi),
        };
        let mut entries = self.routing.legacy.clone();
        entries.extend(
            state
                .msi
                .iter()
                .map(|(gsi, (m, rid))| msi_entry(*gsi, m, *rid, self.routing.device_id)),
        );
        let table = KvmIrqRouting::from_entries(&entries).map_err(|_| InterruptError::OutOfGsis)?;
        self.vm
            .set_gsi_routing(&table)
            .map_err(InterruptError::Routing)
    }

    /// Allocates `vectors` GSIs with irqfds for the MSI-X of the device
    /// with requester ID (BDF) `requester`.
    pub fn msix_group(
        self: &Arc<Self>,
        vectors: u16,
        requester: u16,
    ) -> Result<Arc<MsixGroup>, InterruptError> {
        let mut fds = Vec::with_capacity(usize::from(vectors));
        for _ in 0..vectors {
            let gsi = {
                let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
                let gsi = state.next_gsi;
                state.next_gsi = gsi.checked_add(1).ok_or(InterruptError::OutOfGsis)?;
                gsi
            };
            let fd = EventFd::new(EFD_NONBLOCK).map_err(InterruptError::EventFd)?;
            self.vm
                .register_irqfd(&fd, gsi)
                .map_err(|e| InterruptError::Irqfd(gsi, e))?;
            fds.push((gsi, fd));
        }
        Ok(Arc::new(MsixGroup {
            manager: self.clone(),
            vectors: fds,
            requester,
        }))
    }
}

/// One device's MSI-X vectors as KVM routes and irqfds.
pub struct MsixGroup {
    manager: Arc<InterruptManager>,
    vectors: Vec<(u32, EventFd)>,
    requester: u16,
}

impl MsixGroup {
    /// The irqfd eventfds, vector by vector (for devices, such as VFIO ones,
    /// that signal them directly).
    pub fn eventfds(&self) -> std::io::Result<Vec<EventFd>> {
        self.vectors.iter().map(|(_, fd)| fd.try_clone()).collect()
    }
}

impl MsixInterrupts for MsixGroup {
    fn route(&self, vector: u16, msg: Option<MsiMessage>) {
        let Some((gsi, _)) = self.vectors.get(usize::from(vector)) else {
            return;
        };
        if let Err(e) = self.manager.set_msi_route(*gsi, msg, self.requester) {
            log::error!("MSI-X vector {vector}: {e}");
        }
    }

    fn fire(&self, vector: u16) {
        if let Some((_, fd)) = self.vectors.get(usize::from(vector)) {
            if let Err(e) = fd.write(1) {
                log::error!("MSI-X vector {vector}: cannot signal its irqfd: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msi_routes_carry_the_requester_id_only_when_asked() {
        let msg = MsiMessage {
            addr: 0x1_0809_0040,
            data: 7,
        };
        let plain = msi_entry(40, &msg, 0x10, false);
        let with_id = msi_entry(40, &msg, 0x10, true);
        assert_eq!(
            (plain.gsi, plain.type_, plain.flags),
            (40, KVM_IRQ_ROUTING_MSI, 0)
        );
        assert_eq!(with_id.flags, KVM_MSI_VALID_DEVID);
        // SAFETY: both entries were built as MSI routes just above.
        let (p, w) = unsafe { (plain.u.msi, with_id.u.msi) };
        assert_eq!((p.address_lo, p.address_hi, p.data), (0x0809_0040, 1, 7));
        // SAFETY: the devid member of the union is a plain u32.
        let ids = unsafe { (p.__bindgen_anon_1.devid, w.__bindgen_anon_1.devid) };
        assert_eq!(ids, (0, 0x10));
    }
}
