//! Passthrough BARs as KVM memory slots.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use devices::vfio::MemorySlots;
use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::VmFd;

/// Maps passthrough BARs into the guest as KVM memory slots.
pub struct KvmSlots {
    vm: Arc<VmFd>,
    state: Mutex<SlotState>,
}

struct SlotState {
    next: u32,
    live: BTreeMap<u32, kvm_userspace_memory_region>,
}

impl KvmSlots {
    /// Slots numbered from `first` (above those holding guest RAM).
    pub fn new(vm: Arc<VmFd>, first: u32) -> Self {
        Self {
            vm,
            state: Mutex::new(SlotState {
                next: first,
                live: BTreeMap::new(),
            }),
        }
    }
}

impl MemorySlots for KvmSlots {
    fn map(&self, gpa: u64, size: u64, host_addr: u64) -> std::io::Result<u32> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let slot = state.next;
        let region = kvm_userspace_memory_region {
            slot,
            guest_phys_addr: gpa,
            memory_size: size,
            userspace_addr: host_addr,
            flags: 0,
        };
        // SAFETY: host_addr..+size is a live mmap of a device BAR owned by
        // the VFIO device, which removes this slot before unmapping it.
        unsafe { self.vm.set_user_memory_region(region) }
            .map_err(|e| std::io::Error::from_raw_os_error(e.errno()))?;
        state.next += 1;
        state.live.insert(slot, region);
        Ok(slot)
    }

    fn unmap(&self, slot: u32) -> std::io::Result<()> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let Some(mut region) = state.live.remove(&slot) else {
            return Ok(());
        };
        region.memory_size = 0;
        // SAFETY: deleting a slot (size 0) touches no host memory.
        unsafe { self.vm.set_user_memory_region(region) }
            .map_err(|e| std::io::Error::from_raw_os_error(e.errno()))
    }
}
