//! Guest RAM ranges, as the planner places them and the VMM allocates them.

use vm_memory::GuestAddress;

/// One contiguous stretch of guest RAM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RamRegion {
    /// First guest physical address.
    pub start: GuestAddress,
    /// Size in bytes.
    pub size: u64,
}

impl RamRegion {
    /// One past the last address.
    pub fn end(&self) -> u64 {
        self.start.0 + self.size
    }
}
