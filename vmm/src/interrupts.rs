//! Interrupt routing: KVM's GSI routing table (the legacy irqchip routes
//! plus one MSI route per programmed MSI-X vector) and the irqfds that
//! inject them.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use devices::pci::{MsiMessage, MsixInterrupts};
use kvm_bindings::{
    kvm_irq_routing_entry, kvm_irq_routing_entry__bindgen_ty_1, kvm_irq_routing_irqchip,
    kvm_irq_routing_msi, KvmIrqRouting, KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER,
    KVM_IRQCHIP_PIC_SLAVE, KVM_IRQ_ROUTING_IRQCHIP, KVM_IRQ_ROUTING_MSI,
};
use kvm_ioctls::VmFd;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

/// GSIs 0-23 are the IOAPIC pins; MSI routes come after.
const IOAPIC_PINS: u32 = 24;
/// GSIs 0-15 also reach the PICs.
const PIC_PINS: u32 = 16;

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
    state: Mutex<Routes>,
}

struct Routes {
    next_gsi: u32,
    msi: BTreeMap<u32, MsiMessage>,
}

fn irqchip_entry(gsi: u32, irqchip: u32, pin: u32) -> kvm_irq_routing_entry {
    kvm_irq_routing_entry {
        gsi,
        type_: KVM_IRQ_ROUTING_IRQCHIP,
        u: kvm_irq_routing_entry__bindgen_ty_1 {
            irqchip: kvm_irq_routing_irqchip { irqchip, pin },
        },
        ..Default::default()
    }
}

fn msi_entry(gsi: u32, msg: &MsiMessage) -> kvm_irq_routing_entry {
    kvm_irq_routing_entry {
        gsi,
        type_: KVM_IRQ_ROUTING_MSI,
        u: kvm_irq_routing_entry__bindgen_ty_1 {
            msi: kvm_irq_routing_msi {
                address_lo: msg.addr as u32,
                address_hi: (msg.addr >> 32) as u32,
                data: msg.data,
                ..Default::default()
            },
        },
        ..Default::default()
    }
}

/// The routes KVM sets up by default, which a custom table must keep.
fn legacy_routes() -> Vec<kvm_irq_routing_entry> {
    let mut routes = Vec::new();
    for gsi in 0..IOAPIC_PINS {
        if gsi < PIC_PINS {
            let chip = if gsi < 8 {
                KVM_IRQCHIP_PIC_MASTER
            } else {
                KVM_IRQCHIP_PIC_SLAVE
            };
            routes.push(irqchip_entry(gsi, chip, gsi % 8));
        }
        routes.push(irqchip_entry(gsi, KVM_IRQCHIP_IOAPIC, gsi));
    }
    routes
}

impl InterruptManager {
    /// Routing for `vm`, which must have an in-kernel irqchip.
    pub fn new(vm: Arc<VmFd>) -> Self {
        Self {
            vm,
            state: Mutex::new(Routes {
                next_gsi: IOAPIC_PINS,
                msi: BTreeMap::new(),
            }),
        }
    }

    fn set_msi_route(&self, gsi: u32, msg: Option<MsiMessage>) -> Result<(), InterruptError> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match msg {
            Some(m) => state.msi.insert(gsi, m),
            None => state.msi.remove(&gsi),
        };
        let mut entries = legacy_routes();
        entries.extend(state.msi.iter().map(|(gsi, m)| msi_entry(*gsi, m)));
        let table = KvmIrqRouting::from_entries(&entries).map_err(|_| InterruptError::OutOfGsis)?;
        self.vm
            .set_gsi_routing(&table)
            .map_err(InterruptError::Routing)
    }

    /// Allocates `vectors` GSIs with irqfds for one device's MSI-X.
    pub fn msix_group(self: &Arc<Self>, vectors: u16) -> Result<Arc<MsixGroup>, InterruptError> {
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
        }))
    }
}

/// One device's MSI-X vectors as KVM routes and irqfds.
pub struct MsixGroup {
    manager: Arc<InterruptManager>,
    vectors: Vec<(u32, EventFd)>,
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
        if let Err(e) = self.manager.set_msi_route(*gsi, msg) {
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
    fn legacy_routes_cover_pic_and_ioapic() {
        let routes = legacy_routes();
        assert_eq!(routes.len(), 16 * 2 + 8);
        // SAFETY: these entries were built as irqchip routes just above.
        let com1: Vec<_> = routes
            .iter()
            .filter(|r| r.gsi == 4)
            .map(|r| unsafe { (r.u.irqchip.irqchip, r.u.irqchip.pin) })
            .collect();
        assert_eq!(
            com1,
            vec![(KVM_IRQCHIP_PIC_MASTER, 4), (KVM_IRQCHIP_IOAPIC, 4)]
        );
    }
}
