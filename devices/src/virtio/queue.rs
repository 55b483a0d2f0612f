//! [`DeviceQueue`]: one virtqueue as a device serves it, with everything a
//! hostile driver can get wrong checked before the queue is trusted.
//!
//! - At activation the three rings must lie in the memory the device does
//!   DMA through (`ActivateError::Ring` otherwise, so the transport sets
//!   DEVICE_NEEDS_RESET instead of accepting DRIVER_OK).
//! - An available index more than the queue size ahead of the last one
//!   served, a ring that stops being readable or writable, or a used entry
//!   that cannot be written make the queue *broken*: it is logged once,
//!   reported through [`VirtioInterrupt::queue_broken`] (the transport sets
//!   DEVICE_NEEDS_RESET and notifies a configuration change) and never
//!   served again until the device is reset. Nothing retries a broken ring.
//! - A chain that uses `VIRTQ_DESC_F_INDIRECT` when
//!   `VIRTIO_RING_F_INDIRECT_DESC` was not negotiated is not processed: it
//!   goes back to the used ring with length 0.
//!
//! Every log line here is rate-limited ([`crate::guest_log`]).

use std::num::Wrapping;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use virtio_bindings::virtio_ring::{VIRTIO_RING_F_INDIRECT_DESC, VRING_DESC_F_INDIRECT};
use virtio_queue::desc::split::Descriptor;
use virtio_queue::{DescriptorChain, Queue, QueueT};
use vm_memory::{Address, Bytes, GuestAddress, GuestMemory, Permissions};

use super::{ActivateError, VirtioInterrupt};

/// Bytes of one descriptor.
const DESC_SIZE: u64 = 16;
/// Available ring: flags, idx, `used_event` (2 bytes each) + 2 per entry.
const AVAIL_META: u64 = 6;
/// Offset of the first entry of the available ring.
const AVAIL_RING_OFFSET: u64 = 4;
/// Used ring: flags, idx, `avail_event` (2 bytes each) + 8 per entry.
const USED_META: u64 = 6;

/// Why a queue stopped being served.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QueueFault {
    /// The driver's available index is too far ahead of the device's.
    #[error("available index {avail} is more than the queue size {size} ahead of {next}")]
    AvailIndex {
        /// The driver's `avail->idx`.
        avail: u16,
        /// The next entry the device would serve.
        next: u16,
        /// The queue size.
        size: u16,
    },
    /// A ring could not be read or written.
    #[error("the {0} is not accessible")]
    Ring(&'static str),
}

/// One of a device's virtqueues, validated and served defensively.
pub struct DeviceQueue {
    index: u16,
    queue: Queue,
    indirect: bool,
    broken: bool,
    interrupt: Arc<dyn VirtioInterrupt>,
    /// Names the device in log lines.
    device: &'static str,
}

/// Whether `len` bytes at `addr` are accessible in `mem` with `access`.
fn accessible<M: GuestMemory>(mem: &M, addr: u64, len: u64, access: Permissions) -> bool {
    addr.checked_add(len).is_some()
        && usize::try_from(len).is_ok_and(|len| mem.check_range(GuestAddress(addr), len, access))
}

impl DeviceQueue {
    /// Takes queue `index` of `device` (a name for log lines) as the
    /// transport set it up: its rings must lie in `mem`. `features` are the
    /// negotiated ones; `interrupt` is how it signals the driver.
    pub fn new<M: GuestMemory>(
        device: &'static str,
        index: usize,
        queue: Queue,
        features: u64,
        mem: &M,
        interrupt: Arc<dyn VirtioInterrupt>,
    ) -> Result<Self, ActivateError> {
        let size = u64::from(queue.size());
        let rings = [
            (
                "descriptor table",
                queue.desc_table(),
                DESC_SIZE * size,
                Permissions::Read,
            ),
            (
                "available ring",
                queue.avail_ring(),
                AVAIL_META + 2 * size,
                Permissions::Read,
            ),
            (
                "used ring",
                queue.used_ring(),
                USED_META + 8 * size,
                Permissions::Write,
            ),
        ];
        for (ring, addr, len, access) in rings {
            if !accessible(mem, addr, len, access) {
                return Err(ActivateError::Ring {
                    queue: index,
                    ring,
                    addr,
                });
            }
        }
        Ok(Self {
            index: u16::try_from(index).unwrap_or(u16::MAX),
            queue,
            indirect: features & (1 << VIRTIO_RING_F_INDIRECT_DESC) != 0,
            broken: false,
            interrupt,
            device,
        })
    }

    /// Whether the queue broke and is no longer served.
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Stops serving the queue: logged once, reported to the transport.
    pub fn fail(&mut self, fault: QueueFault) {
        if self.broken {
            return;
        }
        self.broken = true;
        crate::guest_log!(
            log::Level::Warn,
            "{}: queue {} is broken and no longer served until the driver resets the device: {fault}",
            self.device,
            self.index
        );
        self.interrupt.queue_broken(self.index);
    }

    /// How many chains the driver made available that the device has not
    /// taken yet, or the fault that breaks the queue.
    fn pending<M: GuestMemory>(&self, mem: &M) -> Result<u16, QueueFault> {
        let avail = self
            .queue
            .avail_idx(mem, Ordering::Acquire)
            .map_err(|_| QueueFault::Ring("available ring"))?;
        let next = Wrapping(self.queue.next_avail());
        let pending = (avail - next).0;
        if pending > self.queue.size() {
            return Err(QueueFault::AvailIndex {
                avail: avail.0,
                next: next.0,
                size: self.queue.size(),
            });
        }
        Ok(pending)
    }

    /// The head descriptor index of the next available chain.
    fn next_head<M: GuestMemory>(&self, mem: &M) -> Result<u16, QueueFault> {
        let slot = u64::from(self.queue.next_avail() % self.queue.size().max(1));
        let addr = GuestAddress(self.queue.avail_ring())
            .checked_add(AVAIL_RING_OFFSET + 2 * slot)
            .ok_or(QueueFault::Ring("available ring"))?;
        mem.read_obj::<u16>(addr)
            .map(u16::from_le)
            .map_err(|_| QueueFault::Ring("available ring"))
    }

    /// Whether the chain at `head` uses an indirect table (walks the
    /// descriptor table the way the chain will, bounded by the queue size).
    /// The driver could flip the flag after this check; the chain is then
    /// still walked within the bounds virtio-queue enforces, so that race
    /// costs the guest only the spec conformance it gave up.
    fn uses_indirect<M: GuestMemory>(&self, mem: &M, head: u16) -> bool {
        let size = self.queue.size();
        let table = GuestAddress(self.queue.desc_table());
        let mut index = head;
        for _ in 0..size {
            if index >= size {
                return false;
            }
            let Some(addr) = table.checked_add(u64::from(index) * DESC_SIZE) else {
                return false;
            };
            let Ok(desc) = mem.read_obj::<Descriptor>(addr) else {
                return false;
            };
            if desc.flags() & VRING_DESC_F_INDIRECT as u16 != 0 {
                return true;
            }
            if !desc.has_next() {
                return false;
            }
            index = desc.next();
        }
        false
    }

    /// The next available chain the device may process; `None` when there
    /// is none or the queue is (or just became) broken. Chains refused for
    /// using features that were not negotiated are returned to the driver
    /// on the way.
    pub fn pop<'m, M: GuestMemory>(&mut self, mem: &'m M) -> Option<DescriptorChain<&'m M>> {
        loop {
            if self.broken {
                return None;
            }
            match self.pending(mem) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(fault) => {
                    self.fail(fault);
                    return None;
                }
            }
            if !self.indirect {
                let head = match self.next_head(mem) {
                    Ok(head) => head,
                    Err(fault) => {
                        self.fail(fault);
                        return None;
                    }
                };
                if self.uses_indirect(mem, head) {
                    crate::guest_log!(
                        log::Level::Warn,
                        "{}: queue {}: chain {head} uses indirect descriptors, which were not negotiated; returned unprocessed",
                        self.device,
                        self.index
                    );
                    self.queue
                        .set_next_avail(self.queue.next_avail().wrapping_add(1));
                    self.add_used(mem, head, 0);
                    continue;
                }
            }
            return match self.queue.pop_descriptor_chain(mem) {
                Some(chain) => Some(chain),
                None => {
                    // The index was in range a moment ago: the driver moved
                    // it, or the ring became unreadable.
                    self.fail(QueueFault::Ring("available ring"));
                    None
                }
            };
        }
    }

    /// Returns chain `head` to the driver with `len` bytes written.
    pub fn add_used<M: GuestMemory>(&mut self, mem: &M, head: u16, len: u32) {
        if self.broken {
            return;
        }
        if self.queue.add_used(mem, head, len).is_err() {
            self.fail(QueueFault::Ring("used ring"));
        }
    }

    /// Asks the driver not to notify (an optimisation: failure is harmless
    /// here and shows up on the next ring access).
    pub fn disable_notification<M: GuestMemory>(&mut self, mem: &M) {
        if !self.broken {
            let _ = self.queue.disable_notification(mem);
        }
    }

    /// Asks the driver to notify again; true when chains arrived meanwhile
    /// (the caller processes them before sleeping).
    pub fn enable_notification<M: GuestMemory>(&mut self, mem: &M) -> bool {
        if self.broken {
            return false;
        }
        match self.queue.enable_notification(mem) {
            Ok(more) => more,
            Err(_) => {
                self.fail(QueueFault::Ring("used ring"));
                false
            }
        }
    }

    /// Interrupts the driver if it wants to hear about the used entries
    /// added since the last call.
    pub fn notify_used<M: GuestMemory>(&mut self, mem: &M) {
        if self.broken {
            return;
        }
        match self.queue.needs_notification(mem) {
            Ok(true) => self.interrupt.notify_queue(self.index),
            Ok(false) => {}
            Err(_) => self.fail(QueueFault::Ring("available ring")),
        }
    }

    /// Serves everything available: each chain goes through `handle`, which
    /// returns its used length. With `poll` notifications stay off (a poller
    /// watches the queue); otherwise they are re-enabled with the usual
    /// re-check. Returns whether any chain was used. Terminates: each pass
    /// takes chains, or ends the loop (a broken queue, or two passes in a
    /// row with nothing to take).
    pub fn drain<M: GuestMemory>(
        &mut self,
        mem: &M,
        poll: bool,
        mut handle: impl FnMut(DescriptorChain<&M>) -> u32,
    ) -> bool {
        let mut used_any = false;
        let mut idle = 0;
        loop {
            self.disable_notification(mem);
            let mut took = false;
            while let Some(chain) = self.pop(mem) {
                let head = chain.head_index();
                let len = handle(chain);
                self.add_used(mem, head, len);
                took = true;
            }
            used_any |= took;
            if poll || !self.enable_notification(mem) {
                break;
            }
            // More arrived while notifications were off. A driver that
            // keeps saying so with nothing to take moves its index back
            // and forth: stop (notifications are on, it can kick again).
            idle = if took { 0 } else { idle + 1 };
            if idle > 1 {
                break;
            }
        }
        used_any
    }
}

#[cfg(test)]
mod tests;
