//! Interrupt routing: KVM's GSI routing table (the platform's legacy
//! irqchip routes plus one MSI route per programmed MSI-X vector) and the
//! irqfds that inject them. Where the platform asks for it (arm64's ITS),
//! each MSI route carries its device's requester ID.
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
    /// GSIs given back by dropped groups, used before `next_gsi`.
    free: std::collections::BTreeSet<u32>,
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
                free: std::collections::BTreeSet::new(),
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
        self.write_table(&state)
    }

    fn write_table(&self, state: &Routes) -> Result<(), InterruptError> {
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

    /// Allocates `vectors` GSIs, each with an eventfd that becomes its
    /// irqfd while the vector is routed, for the MSI-X (or MSI) of the
    /// device with requester ID (BDF) `requester`.
    pub fn msix_group(
        self: &Arc<Self>,
        vectors: u16,
        requester: u16,
    ) -> Result<Arc<MsixGroup>, InterruptError> {
        let mut fds = Vec::with_capacity(usize::from(vectors));
        for _ in 0..vectors {
            let gsi = {
                let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
                match state.free.pop_first() {
                    Some(gsi) => gsi,
                    None => {
                        let gsi = state.next_gsi;
                        state.next_gsi = gsi.checked_add(1).ok_or(InterruptError::OutOfGsis)?;
                        gsi
                    }
                }
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
            requester,
        }))
    }
}

impl InterruptManager {
    /// Removes the routes of `gsis` and makes them free for later groups.
    fn release(&self, gsis: &[u32]) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        for gsi in gsis {
            state.msi.remove(gsi);
            state.free.insert(*gsi);
        }
        if let Err(e) = self.write_table(&state) {
            log::error!("cannot remove the MSI routes of a removed device: {e}");
        }
    }

    /// GSIs handed out to live groups' vectors (for tests and reports).
    pub fn gsis_in_use(&self) -> usize {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        (state.next_gsi - self.routing.first_msi_gsi) as usize - state.free.len()
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
    requester: u16,
}

impl MsixGroup {
    /// The irqfd eventfds, vector by vector (for devices, such as VFIO ones,
    /// that signal them directly).
    pub fn eventfds(&self) -> std::io::Result<Vec<EventFd>> {
        self.vectors.iter().map(|v| v.fd.try_clone()).collect()
    }
}

impl Drop for MsixGroup {
    fn drop(&mut self) {
        let vm = &self.manager.vm;
        for v in &self.vectors {
            let attached = *v.attached.lock().unwrap_or_else(|p| p.into_inner());
            if attached {
                if let Err(e) = vm.unregister_irqfd(&v.fd, v.gsi) {
                    log::error!("cannot detach the irqfd of GSI {}: {e}", v.gsi);
                }
            }
        }
        let gsis: Vec<u32> = self.vectors.iter().map(|v| v.gsi).collect();
        self.manager.release(&gsis);
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
        if let Err(e) = self.manager.set_msi_route(v.gsi, msg, self.requester) {
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

// The local APIC checks are x86's.
#[cfg(all(test, target_arch = "x86_64"))]
mod masking_tests {
    use super::*;

    fn group() -> (Arc<MsixGroup>, Vec<EventFd>) {
        let kvm = kvm_ioctls::Kvm::new().expect("/dev/kvm");
        let vm = kvm.create_vm().expect("vm");
        vm.create_irq_chip().expect("irqchip");
        let manager = Arc::new(InterruptManager::new(Arc::new(vm)));
        let group = manager.msix_group(2, 0x18).expect("group");
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
        assert!(!signalled(&fds[0]), "unmasked: KVM takes it at once");
        // Masked (the device model unroutes the vector): a signal the
        // device sends now must not be consumed and lost.
        group.route(0, None);
        fds[0].write(1).expect("signal");
        fds[0].write(1).expect("signal");
        assert!(signalled(&fds[0]), "held while masked");
        assert!(group.pending(0), "the PBA shows it");
        assert!(!group.pending(1));
        // Unmasked: KVM takes the held signal (one interrupt).
        group.route(0, Some(MSG));
        assert!(!signalled(&fds[0]), "delivered on unmask");
        assert!(!group.pending(0));
    }

    #[test]
    fn a_dropped_group_gives_its_gsis_and_routes_back() {
        let kvm = kvm_ioctls::Kvm::new().expect("/dev/kvm");
        let vm = kvm.create_vm().expect("vm");
        vm.create_irq_chip().expect("irqchip");
        let manager = Arc::new(InterruptManager::new(Arc::new(vm)));
        let first = manager.msix_group(2, 0x18).expect("group");
        let kept = manager.msix_group(1, 0x20).expect("group");
        let fds = first.eventfds().expect("eventfds");
        first.route(0, Some(MSG));
        assert_eq!(manager.gsis_in_use(), 3);
        let gsis: Vec<u32> = first.vectors.iter().map(|v| v.gsi).collect();
        drop(first);
        assert_eq!(manager.gsis_in_use(), 1);
        assert!(manager
            .state
            .lock()
            .expect("lock")
            .msi
            .keys()
            .all(|g| !gsis.contains(g)));
        // The irqfd is gone: a signal stays in the eventfd.
        fds[0].write(1).expect("signal");
        assert!(signalled(&fds[0]));
        let again = manager.msix_group(2, 0x18).expect("group");
        let reused: Vec<u32> = again.vectors.iter().map(|v| v.gsi).collect();
        assert_eq!(reused, gsis, "the same GSIs, not new ones");
        assert_eq!(manager.gsis_in_use(), 3);
        drop(kept);
    }

    #[test]
    fn an_unprogrammed_vector_holds_its_signal_too() {
        let (group, fds) = group();
        fds[1].write(1).expect("signal");
        assert!(signalled(&fds[1]));
        group.route(1, Some(MSG));
        assert!(!signalled(&fds[1]));
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
        let group = manager.msix_group(1, 0x18).expect("group");
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
