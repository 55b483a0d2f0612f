//! What a disk has done, counted as requests complete: the numbers the
//! VMM's API reports (`vm.counters`).

use std::sync::atomic::{AtomicU64, Ordering};

/// Completed requests and bytes of one disk.
#[derive(Debug, Default)]
pub struct BlockCounters {
    read_ops: AtomicU64,
    read_bytes: AtomicU64,
    write_ops: AtomicU64,
    write_bytes: AtomicU64,
    flush_ops: AtomicU64,
    errors: AtomicU64,
}

/// A snapshot of [`BlockCounters`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlockCounts {
    /// Reads completed.
    pub read_ops: u64,
    /// Bytes read into guest memory.
    pub read_bytes: u64,
    /// Writes completed.
    pub write_ops: u64,
    /// Bytes written to the image.
    pub write_bytes: u64,
    /// Flushes completed.
    pub flush_ops: u64,
    /// Requests answered with an I/O error.
    pub errors: u64,
}

impl BlockCounters {
    pub(super) fn read(&self, bytes: u64) {
        self.read_ops.fetch_add(1, Ordering::Relaxed);
        self.read_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    pub(super) fn write(&self, bytes: u64) {
        self.write_ops.fetch_add(1, Ordering::Relaxed);
        self.write_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    pub(super) fn flush(&self) {
        self.flush_ops.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// The counts now.
    pub fn snapshot(&self) -> BlockCounts {
        BlockCounts {
            read_ops: self.read_ops.load(Ordering::Relaxed),
            read_bytes: self.read_bytes.load(Ordering::Relaxed),
            write_ops: self.write_ops.load(Ordering::Relaxed),
            write_bytes: self.write_bytes.load(Ordering::Relaxed),
            flush_ops: self.flush_ops.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
        }
    }
}
