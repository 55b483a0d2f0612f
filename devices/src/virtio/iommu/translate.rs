//! DMA translation for one endpoint: [`EndpointIommu`] implements
//! vm-memory's [`Iommu`] so the VMM can give an emulated device behind the
//! virtio-iommu an `IommuMemory<GuestMemoryMmap, EndpointIommu>`.
//!
//! What is cached, and why it is exact: each translator keeps the last
//! `CACHE_ENTRIES` translations it resolved for an access inside one
//! mapping, as that whole mapping (in bypass, the identity over the whole
//! space) in a ready [`Iotlb`] shared by reference count, labelled with the
//! state's generation read under the state's read lock (`state.rs`). An
//! entry serves an access only while the generation is unchanged and only
//! when the access lies inside it. Every change that can remove or change a
//! translation (UNMAP, DETACH, ATTACH, a bypass change, reset, a released
//! endpoint) bumps the generation under the write lock; MAP does not, but
//! it only adds a mapping where nothing was mapped, which leaves every
//! entry true. So a hit gives exactly what resolving from the state would.
//! Nothing negative is cached: unmapped addresses, accesses across
//! mappings and faults are resolved from the state every time.
//!
//! Ordering: a change's request completes (its reply goes to the used
//! ring) only after the bump, so an access that starts after the guest saw
//! an UNMAP, DETACH or bypass change complete misses the old entries and
//! sees the new state. An access that already holds its translation (the
//! returned iterator) finishes with it.
//!
//! A miss resolves from the state and builds an [`Iotlb`]: the whole
//! mapping (then cached) when the access lies in one, else just the pieces
//! of the requested range. The cache's mutex is only `try_lock`ed: a
//! translator used from two threads at once resolves instead of waiting.
//! Failed translations are reported as faults on the event queue.

use std::sync::{Arc, Mutex};

use vm_memory::iommu::{Error as IommuError, IotlbIterator, IovaRange};
use vm_memory::{GuestAddress, Iommu, Iotlb, Permissions};

use super::domains::Resolution;
use super::event::{Fault, FaultReason};
use super::mappings::Mapping;
use super::Shared;

/// Entries in each translator's cache: a virtio-blk request touches a
/// handful of mappings (rings, header, data, status).
const CACHE_ENTRIES: usize = 8;

/// One cached translation: IOVAs `first..=last` through `tlb`, which
/// holds exactly that range.
#[derive(Clone, Debug)]
struct Cached {
    first: u64,
    last: u64,
    tlb: Arc<Iotlb>,
}

impl Cached {
    /// `first..=last` to `phys..` with `perm`; `None` when the range does
    /// not fit an [`Iotlb`] (it must end below `u64::MAX` and have a
    /// `usize` length).
    fn new(first: u64, last: u64, phys: u64, perm: Permissions) -> Option<Self> {
        if last == u64::MAX || last < first {
            return None;
        }
        let length = usize::try_from(last - first + 1).ok()?;
        let mut tlb = Iotlb::new();
        // Cannot fail: the Iotlb accepts any range that fits u64.
        let _ = tlb.set_mapping(GuestAddress(first), GuestAddress(phys), length, perm);
        Some(Self {
            first,
            last,
            tlb: Arc::new(tlb),
        })
    }

    fn covers(&self, start: u64, last: u64) -> bool {
        self.first <= start && last <= self.last
    }
}

/// The cache: entries read at `generation`, replaced in turn.
#[derive(Debug, Default)]
struct Cache {
    generation: u64,
    entries: [Option<Cached>; CACHE_ENTRIES],
    next: usize,
}

/// The IOMMU as seen by one endpoint's DMA.
#[derive(Debug)]
pub struct EndpointIommu {
    endpoint: u32,
    shared: Arc<Shared>,
    /// Taken with `try_lock` only: when another thread holds it, the
    /// translation is resolved from the state instead of waiting.
    cache: Mutex<Cache>,
}

impl Clone for EndpointIommu {
    /// A translator for the same endpoint, with an empty cache of its own.
    fn clone(&self) -> Self {
        Self::new(self.endpoint, self.shared.clone())
    }
}

fn permissions(m: &Mapping) -> Permissions {
    match (m.readable(), m.writable()) {
        (true, true) => Permissions::ReadWrite,
        (true, false) => Permissions::Read,
        (false, true) => Permissions::Write,
        (false, false) => Permissions::No,
    }
}

impl EndpointIommu {
    pub(crate) fn new(endpoint: u32, shared: Arc<Shared>) -> Self {
        Self {
            endpoint,
            shared,
            cache: Mutex::default(),
        }
    }

    /// The endpoint whose DMA this translates.
    pub fn endpoint(&self) -> u32 {
        self.endpoint
    }

    fn fault(&self, reason: FaultReason, address: u64, access: Permissions) -> IommuError {
        self.shared.faults.report(Fault {
            reason,
            endpoint: self.endpoint,
            address,
            access,
        });
        IommuError::CannotResolve {
            iova_range: IovaRange {
                base: GuestAddress(address),
                length: 0,
            },
            reason: format!(
                "virtio-iommu: endpoint {} {reason:?} fault at {address:#x}",
                self.endpoint
            ),
        }
    }

    /// The cached translation covering `start..=last`, if one was read at
    /// the current generation.
    fn cached(&self, start: u64, last: u64) -> Option<Arc<Iotlb>> {
        let generation = self.shared.state.generation();
        let cache = self.cache.try_lock().ok()?;
        if cache.generation != generation {
            return None;
        }
        cache
            .entries
            .iter()
            .flatten()
            .find(|e| e.covers(start, last))
            .map(|e| e.tlb.clone())
    }

    /// Keeps `entry`, read at `generation`, unless the cache already holds
    /// entries of a later one (the state changed since `entry` was read).
    fn remember(&self, generation: u64, entry: Cached) {
        let Ok(mut cache) = self.cache.try_lock() else {
            return;
        };
        if generation < cache.generation {
            return;
        }
        if generation > cache.generation {
            *cache = Cache {
                generation,
                ..Cache::default()
            };
        }
        let slot = match cache
            .entries
            .iter()
            .position(|e| e.as_ref().is_some_and(|e| e.first == entry.first))
        {
            Some(same) => same,
            None => {
                let next = cache.next;
                cache.next = (next + 1) % CACHE_ENTRIES;
                next
            }
        };
        if let Some(e) = cache.entries.get_mut(slot) {
            *e = Some(entry);
        }
    }

    /// Resolves `start..=last` from the state: an IOTLB with its
    /// translation, cached when the range lies in one mapping (or the
    /// endpoint bypasses translation).
    fn fill(&self, start: u64, last: u64, length: usize) -> Result<Arc<Iotlb>, FaultReason> {
        let (state, generation) = self.shared.state.read_at();
        let store = match state.resolve(self.endpoint) {
            Resolution::Identity => {
                drop(state);
                if let Some(entry) = Cached::new(0, u64::MAX - 1, 0, Permissions::ReadWrite) {
                    let tlb = entry.tlb.clone();
                    self.remember(generation, entry);
                    return Ok(tlb);
                }
                let mut tlb = Iotlb::new();
                // Cannot fail: the Iotlb accepts any range that fits u64.
                let _ = tlb.set_mapping(
                    GuestAddress(start),
                    GuestAddress(start),
                    length,
                    Permissions::ReadWrite,
                );
                return Ok(Arc::new(tlb));
            }
            Resolution::Mapped(store) => store,
            Resolution::Blocked | Resolution::UnknownEndpoint => return Err(FaultReason::Domain),
        };
        // The whole access in one mapping: cache that mapping (up to the
        // last IOVA an Iotlb can hold; the access ends before it).
        let single = store
            .lookup(start)
            .filter(|m| m.end >= last)
            .and_then(|m| Cached::new(m.start, m.end.min(u64::MAX - 1), m.phys, permissions(&m)));
        if let Some(entry) = single {
            drop(state);
            let tlb = entry.tlb.clone();
            self.remember(generation, entry);
            return Ok(tlb);
        }
        let mut tlb = Iotlb::new();
        for m in store.overlapping(start, last) {
            let from = m.start.max(start);
            let to = m.end.min(last);
            // `to - from < length`, so this fits in usize.
            let len = (to - from + 1) as usize;
            let _ = tlb.set_mapping(
                GuestAddress(from),
                GuestAddress(m.translate(from)),
                len,
                permissions(&m),
            );
        }
        Ok(Arc::new(tlb))
    }
}

#[cfg(test)]
impl EndpointIommu {
    /// Whether an access of `length` bytes at `iova` would be served from
    /// the cache now.
    pub(crate) fn is_cached(&self, iova: u64, length: u64) -> bool {
        length > 0
            && iova
                .checked_add(length - 1)
                .is_some_and(|last| self.cached(iova, last).is_some())
    }
}

impl Iommu for EndpointIommu {
    type IotlbGuard<'a> = Arc<Iotlb>;

    fn translate(
        &self,
        iova: GuestAddress,
        length: usize,
        access: Permissions,
    ) -> Result<IotlbIterator<Arc<Iotlb>>, IommuError> {
        crate::perf::count(crate::perf::Counter::Translations);
        let start = iova.0;
        if length == 0 {
            return Iotlb::lookup(Arc::new(Iotlb::new()), iova, 0, access)
                .map_err(|_| self.fault(FaultReason::Mapping, start, access));
        }
        // The range must end inside the 64-bit space: the Iotlb computes
        // `start + length` without checks.
        let Some(last) = (length as u64)
            .checked_sub(1)
            .and_then(|l| start.checked_add(l))
            .filter(|&l| l < u64::MAX)
        else {
            return Err(self.fault(FaultReason::Mapping, start, access));
        };
        if let Some(tlb) = self.cached(start, last) {
            // A miss here is a permission the mapping lacks: resolved
            // again below, which finds the same and reports the fault.
            if let Ok(it) = Iotlb::lookup(tlb, iova, length, access) {
                crate::perf::count(crate::perf::Counter::TranslationHits);
                return Ok(it);
            }
        }
        let tlb = match self.fill(start, last, length) {
            Ok(tlb) => tlb,
            Err(reason) => return Err(self.fault(reason, start, access)),
        };
        Iotlb::lookup(tlb, iova, length, access).map_err(|fails| {
            let first = fails
                .misses
                .iter()
                .chain(fails.access_fails.iter())
                .map(|r| r.base.0)
                .min()
                .unwrap_or(start);
            self.fault(FaultReason::Mapping, first, access)
        })
    }
}
