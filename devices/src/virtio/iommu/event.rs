//! Fault reporting: translation faults raised by endpoints wait in a
//! bounded backlog, an eventfd tells the VMM there is something to deliver,
//! and the device writes them as `struct virtio_iommu_fault` records into
//! event-queue buffers. Faults that do not fit the backlog are counted and
//! logged, never dropped silently.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use vm_memory::Permissions;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

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
        log::debug!("virtio-iommu: fault {fault:?}");
        {
            let mut backlog = self.backlog.lock().unwrap_or_else(PoisonError::into_inner);
            if backlog.len() >= self.capacity {
                let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                // Log the first loss and then every 1024th, so a device
                // faulting in a loop cannot flood the log.
                if n == 1 || n & 1023 == 0 {
                    crate::guest_log!(
                        log::Level::Warn,
                        "virtio-iommu: fault backlog full ({} entries), dropped {fault:?} ({n} dropped so far)",
                        self.capacity
                    );
                }
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
