//! Fault reporting: translation faults raised by endpoints wait in a
//! bounded backlog, an eventfd tells the VMM there is something to deliver,
//! and [`FaultDelivery`] writes them as `struct virtio_iommu_fault` records
//! into event-queue buffers. Faults that do not fit the backlog are counted
//! and logged (rate-limited), never dropped silently.
//!
//! The event queue has a lock of its own, apart from the device's: the
//! VMM's event loop delivers faults through a [`FaultDelivery`] handle and
//! never waits for the request path, which may be in a long host DMA call.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use virtio_queue::{DescriptorChain, Writer};
use vm_memory::{GuestMemoryMmap, Permissions};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::Shared;
use crate::virtio::queue::DeviceQueue;

use super::protocol::{
    FaultRecord, VIRTIO_IOMMU_FAULT_F_ADDRESS, VIRTIO_IOMMU_FAULT_F_READ,
    VIRTIO_IOMMU_FAULT_F_WRITE, VIRTIO_IOMMU_FAULT_R_DOMAIN, VIRTIO_IOMMU_FAULT_R_MAPPING,
};

/// Default number of faults kept while the event queue has no buffer.
pub const DEFAULT_FAULT_BACKLOG: usize = 256;

/// Why an access faulted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultReason {
    /// The endpoint is not attached and bypass is off (`R_DOMAIN`).
    Domain,
    /// No mapping, or the mapping forbids the access (`R_MAPPING`).
    Mapping,
}

/// One translation fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    /// Why.
    pub reason: FaultReason,
    /// Faulting endpoint.
    pub endpoint: u32,
    /// First faulting IOVA.
    pub address: u64,
    /// The access that faulted.
    pub access: Permissions,
}

impl Fault {
    /// The event-queue record describing this fault.
    pub fn record(&self) -> FaultRecord {
        let mut flags = VIRTIO_IOMMU_FAULT_F_ADDRESS;
        if matches!(self.access, Permissions::Read | Permissions::ReadWrite) {
            flags |= VIRTIO_IOMMU_FAULT_F_READ;
        }
        if self.access.has_write() {
            flags |= VIRTIO_IOMMU_FAULT_F_WRITE;
        }
        FaultRecord {
            reason: match self.reason {
                FaultReason::Domain => VIRTIO_IOMMU_FAULT_R_DOMAIN,
                FaultReason::Mapping => VIRTIO_IOMMU_FAULT_R_MAPPING,
            },
            flags: flags.into(),
            endpoint: self.endpoint.into(),
            address: self.address.into(),
            ..Default::default()
        }
    }
}

/// Faults waiting for event-queue buffers.
#[derive(Debug)]
pub struct FaultQueue {
    backlog: Mutex<VecDeque<Fault>>,
    capacity: usize,
    dropped: AtomicU64,
    evt: EventFd,
}

impl FaultQueue {
    /// A queue keeping at most `capacity` undelivered faults.
    pub fn new(capacity: usize) -> std::io::Result<Self> {
        Ok(Self {
            backlog: Mutex::new(VecDeque::new()),
            capacity,
            dropped: AtomicU64::new(0),
            evt: EventFd::new(EFD_NONBLOCK)?,
        })
    }

    /// Readable while faults wait for delivery.
    pub fn eventfd(&self) -> &EventFd {
        &self.evt
    }

    /// Faults lost to a full backlog since creation.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Number of undelivered faults.
    pub fn pending(&self) -> usize {
        self.backlog
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Queues `fault` and signals the eventfd.
    pub fn report(&self, fault: Fault) {
        crate::guest_log!(log::Level::Debug, "virtio-iommu: fault {fault:?}");
        {
            let mut backlog = self.backlog.lock().unwrap_or_else(PoisonError::into_inner);
            if backlog.len() >= self.capacity {
                let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                crate::guest_log!(
                    log::Level::Warn,
                    "virtio-iommu: fault backlog full ({} entries), dropped {fault:?} ({n} dropped so far)",
                    self.capacity
                );
                return;
            }
            backlog.push_back(fault);
        }
        if let Err(e) = self.evt.write(1) {
            crate::guest_log!(
                log::Level::Warn,
                "virtio-iommu: cannot signal fault eventfd: {e}"
            );
        }
    }

    /// Takes the oldest fault.
    pub fn pop(&self) -> Option<Fault> {
        self.backlog
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop_front()
    }

    /// Puts back a fault that could not be delivered, as the oldest.
    pub fn unpop(&self, fault: Fault) {
        self.backlog
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push_front(fault);
    }

    /// Consumes the eventfd's pending signals.
    pub fn clear_signal(&self) {
        // Nonblocking: EAGAIN just means nothing was signalled.
        let _ = self.evt.read();
    }

    /// Forgets every queued fault (device reset), logging how many.
    pub fn clear(&self) {
        let n = {
            let mut backlog = self.backlog.lock().unwrap_or_else(PoisonError::into_inner);
            let n = backlog.len();
            backlog.clear();
            n
        };
        if n > 0 {
            crate::guest_log!(
                log::Level::Warn,
                "virtio-iommu: reset discarded {n} undelivered faults"
            );
        }
        self.clear_signal();
    }
}

/// The event queue once the driver set it up (with how to interrupt it).
#[derive(Default)]
pub(crate) struct EventQueue {
    pub(crate) queue: Option<DeviceQueue>,
}

/// Delivers waiting faults into the event queue; see the module
/// documentation for why it is a handle of its own.
#[derive(Clone)]
pub struct FaultDelivery {
    pub(crate) shared: Arc<Shared>,
    pub(crate) events: Arc<Mutex<EventQueue>>,
    pub(crate) mem: GuestMemoryMmap,
}

impl FaultDelivery {
    /// Readable when faults wait for delivery: then call [`Self::deliver`].
    pub fn eventfd(&self) -> &EventFd {
        self.shared.faults.eventfd()
    }

    /// Writes waiting faults into the buffers the driver gave the event
    /// queue, as many as fit; the rest wait for more buffers.
    pub fn deliver(&self) {
        let faults = &self.shared.faults;
        faults.clear_signal();
        let mut events = self.events.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(queue) = events.queue.as_mut() else {
            return;
        };
        let mem = &self.mem;
        let mut used_any = false;
        while let Some(fault) = faults.pop() {
            let Some(chain) = queue.pop(mem) else {
                // No buffer (or a broken queue): keep it until the driver
                // adds some and kicks, or resets the device.
                faults.unpop(fault);
                break;
            };
            let head = chain.head_index();
            let len = write_fault(mem, chain, fault.record());
            if len == 0 {
                faults.unpop(fault);
            }
            queue.add_used(mem, head, len);
            used_any = true;
        }
        if used_any {
            queue.notify_used(mem);
        }
    }
}

/// Writes one fault record into an event buffer; returns the used length
/// (0 when the buffer cannot hold a record).
fn write_fault(
    mem: &GuestMemoryMmap,
    chain: DescriptorChain<&GuestMemoryMmap>,
    record: FaultRecord,
) -> u32 {
    let mut writer = match Writer::new(mem, chain) {
        Ok(w) => w,
        Err(e) => {
            crate::guest_log!(log::Level::Warn, "virtio-iommu: bad event buffer: {e}");
            return 0;
        }
    };
    if writer.available_bytes() < std::mem::size_of::<FaultRecord>() {
        crate::guest_log!(
            log::Level::Warn,
            "virtio-iommu: event buffer too small for a fault record"
        );
        return 0;
    }
    if let Err(e) = writer.write_obj(record) {
        crate::guest_log!(
            log::Level::Warn,
            "virtio-iommu: cannot write fault record: {e}"
        );
    }
    u32::try_from(writer.bytes_written()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use vm_memory::ByteValued;

    use super::*;

    fn fault(address: u64) -> Fault {
        Fault {
            reason: FaultReason::Mapping,
            endpoint: 7,
            address,
            access: Permissions::Write,
        }
    }

    #[test]
    fn record_layout() {
        let f = Fault {
            reason: FaultReason::Domain,
            endpoint: 0x10,
            address: 0xdead_b000,
            access: Permissions::ReadWrite,
        };
        assert_eq!(
            f.record().as_slice(),
            &[
                1, 0, 0, 0, 0x03, 0x01, 0, 0, 0x10, 0, 0, 0, 0, 0, 0, 0, 0x00, 0xb0, 0xad, 0xde, 0,
                0, 0, 0
            ]
        );
        let r = fault(0).record();
        assert_eq!({ r.flags }.to_native(), 0x102);
        assert_eq!(r.reason, 2);
    }

    #[test]
    fn backlog_is_bounded_and_signals() {
        let q = FaultQueue::new(2).expect("eventfd");
        q.report(fault(1));
        q.report(fault(2));
        q.report(fault(3));
        assert_eq!(q.pending(), 2);
        assert_eq!(q.dropped(), 1);
        assert_eq!(q.eventfd().read().expect("signalled"), 2);
        assert_eq!(q.pop().map(|f| f.address), Some(1));
        q.unpop(fault(9));
        assert_eq!(q.pop().map(|f| f.address), Some(9));
        q.clear();
        assert_eq!(q.pending(), 0);
    }
}
