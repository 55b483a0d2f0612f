//! How a virtio-pci device signals its driver: the ISR byte, the MSI-X
//! vector of each queue and of configuration changes (read at the moment
//! of the interrupt, so a vector the driver changes after DRIVER_OK takes
//! effect at once), and DEVICE_NEEDS_RESET with the queues a device
//! reported broken.

use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use super::NO_VECTOR;
use crate::pci::msix::MsixConfig;
use crate::virtio::VirtioInterrupt;

/// ISR bit: a queue has used buffers.
pub(super) const ISR_QUEUE: u8 = 1;
/// ISR bit: the configuration changed.
pub(super) const ISR_CONFIG: u8 = 2;

/// Interrupt state shared by the transport and the device it activated.
pub(super) struct Signals {
    msix: Arc<Mutex<MsixConfig>>,
    isr: AtomicU8,
    config_vector: AtomicU16,
    queue_vectors: Vec<AtomicU16>,
    needs_reset: AtomicBool,
    broken: Vec<AtomicBool>,
}

impl Signals {
    /// Signals for `queues` queues over `msix`, all vectors unset.
    pub(super) fn new(msix: Arc<Mutex<MsixConfig>>, queues: usize) -> Self {
        Self {
            msix,
            isr: AtomicU8::new(0),
            config_vector: AtomicU16::new(NO_VECTOR),
            queue_vectors: (0..queues).map(|_| AtomicU16::new(NO_VECTOR)).collect(),
            needs_reset: AtomicBool::new(false),
            broken: (0..queues).map(|_| AtomicBool::new(false)).collect(),
        }
    }

    /// Device reset: vectors unset, nothing pending, nothing broken.
    pub(super) fn reset(&self) {
        self.isr.store(0, Ordering::SeqCst);
        self.config_vector.store(NO_VECTOR, Ordering::SeqCst);
        for v in &self.queue_vectors {
            v.store(NO_VECTOR, Ordering::SeqCst);
        }
        self.needs_reset.store(false, Ordering::SeqCst);
        for b in &self.broken {
            b.store(false, Ordering::SeqCst);
        }
    }

    /// The MSI-X table and PBA.
    pub(super) fn msix(&self) -> std::sync::MutexGuard<'_, MsixConfig> {
        self.msix.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads and clears the ISR (as a driver read does).
    pub(super) fn take_isr(&self) -> u8 {
        self.isr.swap(0, Ordering::SeqCst)
    }

    pub(super) fn config_vector(&self) -> u16 {
        self.config_vector.load(Ordering::SeqCst)
    }

    pub(super) fn set_config_vector(&self, vector: u16) {
        self.config_vector.store(vector, Ordering::SeqCst);
    }

    /// Queue `queue`'s vector; [`NO_VECTOR`] for a queue that does not exist.
    pub(super) fn queue_vector(&self, queue: usize) -> u16 {
        self.queue_vectors
            .get(queue)
            .map_or(NO_VECTOR, |v| v.load(Ordering::SeqCst))
    }

    pub(super) fn set_queue_vector(&self, queue: usize, vector: u16) {
        if let Some(v) = self.queue_vectors.get(queue) {
            v.store(vector, Ordering::SeqCst);
        }
    }

    /// Whether DEVICE_NEEDS_RESET is set.
    pub(super) fn needs_reset(&self) -> bool {
        self.needs_reset.load(Ordering::SeqCst)
    }

    /// Sets DEVICE_NEEDS_RESET and tells the driver (a configuration
    /// change notification, as virtio 1.3 section 2.1.2 asks once DRIVER_OK
    /// is set).
    pub(super) fn set_needs_reset(&self) {
        if !self.needs_reset.swap(true, Ordering::SeqCst) {
            self.notify_config();
        }
    }

    /// Whether queue `queue` was reported broken since the last reset.
    pub(super) fn is_broken(&self, queue: usize) -> bool {
        self.broken
            .get(queue)
            .is_some_and(|b| b.load(Ordering::SeqCst))
    }

    fn raise(&self, vector: u16, isr_bit: u8) {
        self.isr.fetch_or(isr_bit, Ordering::SeqCst);
        if vector != NO_VECTOR {
            self.msix().trigger(vector);
        }
    }
}

impl VirtioInterrupt for Signals {
    fn notify_queue(&self, queue: u16) {
        self.raise(self.queue_vector(usize::from(queue)), ISR_QUEUE);
    }

    fn notify_config(&self) {
        self.raise(self.config_vector(), ISR_CONFIG);
    }

    fn queue_broken(&self, queue: u16) {
        if let Some(b) = self.broken.get(usize::from(queue)) {
            b.store(true, Ordering::SeqCst);
        }
        self.set_needs_reset();
    }
}
