//! Interrupt routing: KVM's GSI routing table (the legacy irqchip routes
//! plus one MSI route per programmed MSI-X vector) and the irqfds that
//! inject them.
//!
//! A vector's irqfd is attached to KVM only while the vector is routed
//! (enabled, unmasked, programmed). While it is masked a signal on its
//! eventfd (an assigned device's, which VFIO raises directly) stays in the
//! eventfd: the PBA shows it pending ([`MsixInterrupts::pending`]) and on
//! unmask it is taken from the eventfd and sent once through the attached
//! irqfd. That is the PCI rule for masked vectors; detaching is done before
//! the route goes, so a signal is never taken by KVM towards a missing
//! route.

use std::collections::BTreeMap;
use std::os::fd::AsRawFd;
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

    /// Allocates `vectors` GSIs, each with an eventfd that becomes its
    /// irqfd while the vector is routed, for one device's MSI-X (or MSI).
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
            fds.push(Vector {
                gsi,
                fd,
                attached: Mutex::new(false),
            });
        }
        Ok(Arc::new(MsixGroup {
            manager: self.clone(),
            vectors: fds,
        }))
    }
}

/// One vector: its GSI, its eventfd, and whether that is KVM's irqfd now.
struct Vector {
    gsi: u32,
    fd: EventFd,
    attached: Mutex<bool>,
}

/// One device's MSI-X vectors as KVM routes and irqfds.
pub struct MsixGroup {
    manager: Arc<InterruptManager>,
    vectors: Vec<Vector>,
}

impl MsixGroup {
    /// The irqfd eventfds, vector by vector (for devices, such as VFIO ones,
    /// that signal them directly).
    pub fn eventfds(&self) -> std::io::Result<Vec<EventFd>> {
        self.vectors.iter().map(|v| v.fd.try_clone()).collect()
    }
}

/// Whether `fd` holds a signal nobody took (polled, not read).
fn signalled(fd: &EventFd) -> bool {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: polls one valid descriptor owned by `fd`, without blocking.
    let n = unsafe { libc::poll(&mut pfd, 1, 0) };
    n == 1 && pfd.revents & libc::POLLIN != 0
}

impl MsixInterrupts for MsixGroup {
    fn route(&self, vector: u16, msg: Option<MsiMessage>) {
        let Some(v) = self.vectors.get(usize::from(vector)) else {
            return;
        };
        let mut attached = v.attached.lock().unwrap_or_else(|p| p.into_inner());
        let vm = &self.manager.vm;
        if msg.is_none() && *attached {
            match vm.unregister_irqfd(&v.fd, v.gsi) {
                Ok(()) => *attached = false,
                Err(e) => devices::guest_log!(
                    log::Level::Error,
                    "MSI-X vector {vector}: cannot detach its irqfd: {e}"
                ),
            }
        }
        if let Err(e) = self.manager.set_msi_route(v.gsi, msg) {
            devices::guest_log!(log::Level::Error, "MSI-X vector {vector}: {e}");
            return;
        }
        if msg.is_some() && !*attached {
            // A signal held while the vector was masked is taken here and
            // sent again once the irqfd is attached: one interrupt.
            let held = v.fd.read().is_ok();
            match vm.register_irqfd(&v.fd, v.gsi) {
                Ok(()) => *attached = true,
                Err(e) => devices::guest_log!(
                    log::Level::Error,
                    "MSI-X vector {vector}: cannot attach its irqfd: {e}"
                ),
            }
            if held {
                self.fire(vector);
            }
        }
    }

    fn fire(&self, vector: u16) {
        if let Some(v) = self.vectors.get(usize::from(vector)) {
            if let Err(e) = v.fd.write(1) {
                devices::guest_log!(
                    log::Level::Error,
                    "MSI-X vector {vector}: cannot signal its irqfd: {e}"
                );
            }
        }
    }

    fn pending(&self, vector: u16) -> bool {
        self.vectors.get(usize::from(vector)).is_some_and(|v| {
            !*v.attached.lock().unwrap_or_else(|p| p.into_inner()) && signalled(&v.fd)
        })
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

#[cfg(test)]
mod masking_tests {
    use super::*;

    /// Whether the eventfd holds a signal KVM has not taken.
    fn readable(fd: &EventFd) -> bool {
        let mut pfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: polls one valid descriptor without blocking.
        let n = unsafe { libc::poll(&mut pfd, 1, 0) };
        n == 1 && pfd.revents & libc::POLLIN != 0
    }

    fn group() -> (Arc<MsixGroup>, Vec<EventFd>) {
        let kvm = kvm_ioctls::Kvm::new().expect("/dev/kvm");
        let vm = kvm.create_vm().expect("vm");
        vm.create_irq_chip().expect("irqchip");
        let manager = Arc::new(InterruptManager::new(Arc::new(vm)));
        let group = manager.msix_group(2).expect("group");
        let fds = group.eventfds().expect("eventfds");
        (group, fds)
    }

    const MSG: MsiMessage = MsiMessage {
        addr: 0xfee0_0000,
        data: 0x41,
    };

    #[test]
    fn a_signal_while_masked_stays_pending_and_is_delivered_on_unmask() {
        let (group, fds) = group();
        group.route(0, Some(MSG));
        fds[0].write(1).expect("signal");
        assert!(!readable(&fds[0]), "unmasked: KVM takes it at once");
        // Masked (the device model unroutes the vector): a signal the
        // device sends now must not be consumed and lost.
        group.route(0, None);
        fds[0].write(1).expect("signal");
        fds[0].write(1).expect("signal");
        assert!(readable(&fds[0]), "held while masked");
        assert!(group.pending(0), "the PBA shows it");
        assert!(!group.pending(1));
        // Unmasked: KVM takes the held signal (one interrupt).
        group.route(0, Some(MSG));
        assert!(!readable(&fds[0]), "delivered on unmask");
        assert!(!group.pending(0));
    }

    #[test]
    fn an_unprogrammed_vector_holds_its_signal_too() {
        let (group, fds) = group();
        fds[1].write(1).expect("signal");
        assert!(readable(&fds[1]));
        group.route(1, Some(MSG));
        assert!(!readable(&fds[1]));
    }

    /// Whether `vector` is in the IRR of vCPU `vcpu`'s local APIC.
    fn in_irr(vcpu: &kvm_ioctls::VcpuFd, vector: u8) -> bool {
        let lapic = vcpu.get_lapic().expect("lapic");
        let at = 0x200 + usize::from(vector / 32) * 0x10;
        let word = u32::from_le_bytes(
            lapic.regs[at..at + 4]
                .iter()
                .map(|b| *b as u8)
                .collect::<Vec<u8>>()
                .try_into()
                .expect("4 bytes"),
        );
        word & (1 << (vector % 32)) != 0
    }

    #[test]
    fn the_held_signal_reaches_the_guest_local_apic_once_unmasked() {
        let kvm = kvm_ioctls::Kvm::new().expect("/dev/kvm");
        let vm = kvm.create_vm().expect("vm");
        vm.create_irq_chip().expect("irqchip");
        let vcpu = vm.create_vcpu(0).expect("vcpu");
        // Software-enable the local APIC (spurious vector register).
        let mut lapic = vcpu.get_lapic().expect("lapic");
        lapic.regs[0xf1] |= 1;
        vcpu.set_lapic(&lapic).expect("set lapic");
        let manager = Arc::new(InterruptManager::new(Arc::new(vm)));
        let group = manager.msix_group(1).expect("group");
        let fds = group.eventfds().expect("eventfds");
        let msg = MsiMessage {
            addr: 0xfee0_0000,
            data: 0x51,
        };
        // The guest programs the vector, still masked; the device signals.
        group.route(0, None);
        fds[0].write(1).expect("signal");
        // Long enough for KVM's injection work, had it taken the signal.
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(!in_irr(&vcpu, 0x51), "masked: not delivered");
        group.route(0, Some(msg));
        assert!(in_irr(&vcpu, 0x51), "delivered on unmask");
    }
}
