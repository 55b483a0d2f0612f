//! [`StateLock`]: the domain state ([`IommuState`]) behind its lock, with a
//! *generation* that tells the translators' caches (`translate.rs`) when
//! what they cached may be out of date.
//!
//! The rule, kept by construction: the state can only be changed through
//! [`StateLock::write`], whose guard bumps the generation when it is
//! dropped, before it unlocks; the one exception is
//! [`StateLock::add_mapping`] (MAP), which only adds a mapping where there
//! was none and so cannot remove or change any translation an endpoint
//! already had. Readers that cache what they read take the generation with
//! the read lock held ([`StateLock::read_at`]), so a cached translation is
//! labelled with the generation of exactly the state it came from.
//!
//! Ordering: a change's request completes (its reply goes to the used
//! ring) only after the write guard is dropped, so an access that starts
//! after the guest saw the completion loads the new generation and misses
//! every entry cached before the change.

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::domains::IommuState;
use super::mappings::Mapping;

/// The domain state, its lock and its generation.
#[derive(Debug)]
pub struct StateLock {
    state: RwLock<IommuState>,
    generation: AtomicU64,
}

/// Write access to the state; bumps the generation when dropped.
pub struct StateWrite<'a> {
    guard: RwLockWriteGuard<'a, IommuState>,
    generation: &'a AtomicU64,
    bump: bool,
}

impl StateLock {
    /// `state`, at generation 0.
    pub fn new(state: IommuState) -> Self {
        Self {
            state: RwLock::new(state),
            generation: AtomicU64::new(0),
        }
    }

    /// Read access. A panic elsewhere does not poison it: every change
    /// is planned before it is committed and commits cannot fail.
    pub fn read(&self) -> RwLockReadGuard<'_, IommuState> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Read access and the generation of what it reads (loaded under the
    /// lock, so no change is half-way).
    pub fn read_at(&self) -> (RwLockReadGuard<'_, IommuState>, u64) {
        let guard = self.read();
        let generation = self.generation.load(Ordering::Acquire);
        (guard, generation)
    }

    /// Write access: any change. The generation is bumped when the guard
    /// is dropped, before the lock is released.
    pub fn write(&self) -> StateWrite<'_> {
        StateWrite {
            guard: self.state.write().unwrap_or_else(PoisonError::into_inner),
            generation: &self.generation,
            bump: true,
        }
    }

    /// Commits a planned MAP of `mapping` into `domain`
    /// ([`IommuState::commit_map`]) without bumping the generation: a MAP
    /// never overlaps an existing mapping and changes no attachment, so
    /// every translation an endpoint had before still holds, and a cached
    /// one covers only addresses that were already mapped.
    pub fn add_mapping(&self, domain: u32, mapping: Mapping) {
        let mut w = self.write();
        w.bump = false;
        w.commit_map(domain, mapping);
    }

    /// The generation now: it changes whenever the state changes in a
    /// way that may remove or change a translation.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
}

impl Deref for StateWrite<'_> {
    type Target = IommuState;

    fn deref(&self) -> &IommuState {
        &self.guard
    }
}

impl DerefMut for StateWrite<'_> {
    fn deref_mut(&mut self) -> &mut IommuState {
        &mut self.guard
    }
}

impl Drop for StateWrite<'_> {
    fn drop(&mut self) {
        // The guard field is released after this body: the new generation
        // is visible before any reader can see the changed state. A change
        // that panicked half-way bumps too.
        if self.bump || std::thread::panicking() {
            self.generation.fetch_add(1, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virtio::iommu::domains::tests::limits;
    use crate::virtio::iommu::protocol::VIRTIO_IOMMU_MAP_F_READ;

    fn lock() -> StateLock {
        StateLock::new(IommuState::new([(1, vec![])], limits(), true))
    }

    fn page(start: u64) -> Mapping {
        Mapping {
            start,
            end: start + 0xfff,
            phys: start,
            flags: VIRTIO_IOMMU_MAP_F_READ,
        }
    }

    #[test]
    fn every_write_bumps_the_generation_and_map_does_not() {
        let s = lock();
        assert_eq!(s.generation(), 0);
        s.write().attach(1, 1, false).expect("attach");
        assert_eq!(s.generation(), 1);
        s.add_mapping(1, page(0x1000));
        assert_eq!(s.generation(), 1, "MAP only adds");
        assert_eq!(s.read().total_mappings(), 1);
        s.write().unmap(1, 0x1000, 0x1fff).expect("unmap");
        assert_eq!(s.generation(), 2);
        // Even a write that changed nothing counts: writers do not say.
        drop(s.write());
        let (state, generation) = s.read_at();
        assert_eq!(generation, 3);
        assert_eq!(state.endpoint_domain(1), Some(1));
    }

    #[test]
    fn a_panicking_map_still_bumps() {
        let s = lock();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut w = s.write();
            w.bump = false;
            w.set_bypass(false);
            panic!("half-way");
        }));
        assert!(r.is_err());
        assert_eq!(s.generation(), 1);
        assert!(!s.read().bypass());
    }
}
