//! Passthrough BARs as KVM memory slots. Slot numbers are reused: a BAR
//! whose decoding the guest turns off and on, or that it moves, gets a slot
//! number back from the free ones, so the numbers in use never exceed the
//! BARs that decode (KVM has only `KVM_CAP_NR_MEMSLOTS` of them).

use std::collections::{BTreeMap, BTreeSet};
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
    /// The lowest number never handed out.
    next: u32,
    /// Numbers handed out and given back.
    free: BTreeSet<u32>,
    live: BTreeMap<u32, kvm_userspace_memory_region>,
}

impl SlotState {
    fn take(&mut self) -> u32 {
        self.free.pop_first().unwrap_or_else(|| {
            let slot = self.next;
            self.next = self.next.saturating_add(1);
            slot
        })
    }
}

impl KvmSlots {
    /// Slots numbered from `first` (above those holding guest RAM).
    pub fn new(vm: Arc<VmFd>, first: u32) -> Self {
        Self {
            vm,
            state: Mutex::new(SlotState {
                next: first,
                free: BTreeSet::new(),
                live: BTreeMap::new(),
            }),
        }
    }
}

impl MemorySlots for KvmSlots {
    fn map(&self, gpa: u64, size: u64, host_addr: u64) -> std::io::Result<u32> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let slot = state.take();
        let region = kvm_userspace_memory_region {
            slot,
            guest_phys_addr: gpa,
            memory_size: size,
            userspace_addr: host_addr,
            flags: 0,
        };
        // SAFETY: host_addr..+size is a live mmap of a device BAR owned by
        // the VFIO device, which removes this slot before unmapping it.
        if let Err(e) = unsafe { self.vm.set_user_memory_region(region) } {
            state.free.insert(slot);
            return Err(std::io::Error::from_raw_os_error(e.errno()));
        }
        state.live.insert(slot, region);
        Ok(slot)
    }

    fn unmap(&self, slot: u32) -> std::io::Result<()> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let Some(region) = state.live.get(&slot).copied() else {
            return Ok(());
        };
        let delete = kvm_userspace_memory_region {
            memory_size: 0,
            ..region
        };
        // SAFETY: deleting a slot (size 0) touches no host memory.
        unsafe { self.vm.set_user_memory_region(delete) }
            // Still KVM's on failure: it stays live, its number taken.
            .map_err(|e| std::io::Error::from_raw_os_error(e.errno()))?;
        state.live.remove(&slot);
        state.free.insert(slot);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An anonymous page to stand in for a BAR's mmap.
    struct Page(*mut libc::c_void);

    impl Page {
        fn new() -> Self {
            // SAFETY: a fresh private anonymous mapping, unmapped in Drop.
            let ptr = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    0x1000,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            assert_ne!(ptr, libc::MAP_FAILED);
            Self(ptr)
        }
    }

    impl Drop for Page {
        fn drop(&mut self) {
            // SAFETY: the mapping made in `new`, no longer used by KVM (the
            // slots were deleted first).
            unsafe { libc::munmap(self.0, 0x1000) };
        }
    }

    #[test]
    fn slot_numbers_are_reused_so_a_guest_cannot_run_out_of_them() {
        let kvm = kvm_ioctls::Kvm::new().expect("/dev/kvm");
        let vm = Arc::new(kvm.create_vm().expect("vm"));
        let max = kvm.get_nr_memslots();
        let slots = KvmSlots::new(vm, 16);
        let pages = [Page::new(), Page::new()];
        // More map/unmap rounds than KVM has slot numbers: a guest turning
        // decoding off and on (or moving a BAR) that often must not run
        // minivmm out of slots.
        let rounds = max + 100;
        let mut seen = std::collections::BTreeSet::new();
        for round in 0..rounds {
            let a = slots
                .map(0x1_0000_0000, 0x1000, pages[0].0 as u64)
                .unwrap_or_else(|e| panic!("round {round}: {e}"));
            let b = slots
                .map(0x1_0000_2000, 0x1000, pages[1].0 as u64)
                .unwrap_or_else(|e| panic!("round {round}: {e}"));
            seen.insert(a);
            seen.insert(b);
            slots.unmap(b).expect("unmap");
            slots.unmap(a).expect("unmap");
        }
        assert_eq!(seen.into_iter().collect::<Vec<_>>(), vec![16, 17]);
    }

    #[test]
    fn a_failed_map_gives_its_number_back() {
        let kvm = kvm_ioctls::Kvm::new().expect("/dev/kvm");
        let vm = Arc::new(kvm.create_vm().expect("vm"));
        let slots = KvmSlots::new(vm, 16);
        let page = Page::new();
        let a = slots
            .map(0x1_0000_0000, 0x1000, page.0 as u64)
            .expect("map");
        // Overlapping an existing slot: KVM refuses.
        assert!(slots.map(0x1_0000_0000, 0x1000, page.0 as u64).is_err());
        slots.unmap(a).expect("unmap");
        assert_eq!(
            slots
                .map(0x1_0000_0000, 0x1000, page.0 as u64)
                .expect("map"),
            16
        );
    }
}
