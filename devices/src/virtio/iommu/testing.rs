//! Test doubles for the host side of the virtio-iommu, for this crate's
//! unit tests, the fuzz targets and benchmarks (feature `test-utils`).
//!
//! [`FakeDma`] is a host IOMMU in memory: one address space per endpoint,
//! with VFIO's rules (a map over a mapped IOVA fails with EEXIST, an unmap
//! may not bisect a mapping, unmapping nothing succeeds), and failures on
//! demand from an [`Injector`]. [`expected_host`] says what each address
//! space must hold given the virtual state, written independently of the
//! code in `host.rs` that maintains it, so tests can compare the two.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use super::dma::{DmaBackend, DmaError, DmaPerm, HostMapping};
use super::domains::IommuState;

/// Which back-end operation a call is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DmaOp {
    /// [`DmaBackend::map`].
    Map,
    /// [`DmaBackend::unmap`].
    Unmap,
    /// [`DmaBackend::unmap_all`].
    UnmapAll,
}

/// One back-end call, as an [`Injector`] sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DmaCall {
    /// The operation.
    pub op: DmaOp,
    /// Endpoint whose address space it changes.
    pub endpoint: u32,
    /// First IOVA (0 for unmap-all).
    pub iova: u64,
    /// Size (0 for unmap-all).
    pub size: u64,
}

/// Decides whether a call fails: `Some(error)` makes it fail. A failed
/// map or unmap changes nothing; a failed unmap-all removes the first half
/// of the address space (VFIO may stop part-way).
pub type Injector = Box<dyn FnMut(&DmaCall) -> Option<DmaError> + Send>;

#[derive(Default)]
struct Inner {
    spaces: BTreeMap<u32, BTreeMap<u64, HostMapping>>,
    inject: Option<Injector>,
    calls: u64,
    refused_overlaps: u64,
    log: Vec<String>,
    delay: Option<(Duration, Option<std::sync::mpsc::Sender<DmaCall>>)>,
}

/// A host IOMMU in memory; see the module documentation.
pub struct FakeDma {
    inner: Arc<Mutex<Inner>>,
    unmap_all: bool,
}

/// Looks at and steers a [`FakeDma`] the device owns.
#[derive(Clone)]
pub struct FakeDmaHandle(Arc<Mutex<Inner>>);

impl FakeDma {
    /// A host IOMMU with an empty address space for each of `endpoints`;
    /// `unmap_all` says whether it supports [`DmaBackend::unmap_all`].
    pub fn new(endpoints: &[u32], unmap_all: bool) -> (Self, FakeDmaHandle) {
        let inner = Inner {
            spaces: endpoints.iter().map(|&e| (e, BTreeMap::new())).collect(),
            ..Default::default()
        };
        let inner = Arc::new(Mutex::new(inner));
        (
            Self {
                inner: inner.clone(),
                unmap_all,
            },
            FakeDmaHandle(inner),
        )
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Inner {
    /// Counts and logs the call, sleeps if asked to, and asks the injector.
    fn enter(&mut self, call: DmaCall) -> Option<DmaError> {
        self.calls += 1;
        self.log.push(match call.op {
            DmaOp::Map => format!("map e{} {:#x}+{:#x}", call.endpoint, call.iova, call.size),
            DmaOp::Unmap => format!("unmap e{} {:#x}+{:#x}", call.endpoint, call.iova, call.size),
            DmaOp::UnmapAll => format!("unmap-all e{}", call.endpoint),
        });
        if self.log.len() > 4096 {
            self.log.drain(..2048);
        }
        if let Some((delay, notify)) = &self.delay {
            if let Some(tx) = notify {
                let _ = tx.send(call);
            }
            std::thread::sleep(*delay);
        }
        self.inject.as_mut().and_then(|f| f(&call))
    }
}

impl DmaBackend for FakeDma {
    fn map(&mut self, endpoint: u32, m: &HostMapping) -> Result<(), DmaError> {
        let mut inner = self.lock();
        let call = DmaCall {
            op: DmaOp::Map,
            endpoint,
            iova: m.iova,
            size: m.size,
        };
        if let Some(e) = inner.enter(call) {
            return Err(e);
        }
        let last = m
            .iova
            .checked_add(m.size - 1)
            .ok_or_else(|| DmaError::Failed("EINVAL: range wraps".into()))?;
        let inner = &mut *inner;
        let Some(space) = inner.spaces.get_mut(&endpoint) else {
            return Err(DmaError::Failed(format!("no address space for {endpoint}")));
        };
        let clash = space
            .range(..=last)
            .next_back()
            .is_some_and(|(_, e)| e.iova + (e.size - 1) >= m.iova);
        if clash {
            inner.refused_overlaps += 1;
            return Err(DmaError::Failed("EEXIST".into()));
        }
        space.insert(m.iova, *m);
        Ok(())
    }

    fn unmap(&mut self, endpoint: u32, iova: u64, size: u64) -> Result<(), DmaError> {
        let mut inner = self.lock();
        let call = DmaCall {
            op: DmaOp::Unmap,
            endpoint,
            iova,
            size,
        };
        if let Some(e) = inner.enter(call) {
            return Err(e);
        }
        let last = iova.saturating_add(size.saturating_sub(1));
        let Some(space) = inner.spaces.get_mut(&endpoint) else {
            return Err(DmaError::Failed(format!("no address space for {endpoint}")));
        };
        let before = space
            .range(..iova)
            .next_back()
            .is_some_and(|(_, e)| e.iova + (e.size - 1) >= iova);
        let after = space
            .range(..=last)
            .next_back()
            .is_some_and(|(_, e)| e.iova >= iova && e.iova + (e.size - 1) > last);
        if before || after {
            return Err(DmaError::Failed("EINVAL: would bisect a mapping".into()));
        }
        space.retain(|&start, _| start < iova || start > last);
        Ok(())
    }

    fn can_unmap_all(&self) -> bool {
        self.unmap_all
    }

    fn unmap_all(&mut self, endpoint: u32) -> Result<(), DmaError> {
        if !self.unmap_all {
            return Err(DmaError::Unsupported("unmap-all".into()));
        }
        let mut inner = self.lock();
        let call = DmaCall {
            op: DmaOp::UnmapAll,
            endpoint,
            iova: 0,
            size: 0,
        };
        let failed = inner.enter(call);
        let Some(space) = inner.spaces.get_mut(&endpoint) else {
            return Err(DmaError::Failed(format!("no address space for {endpoint}")));
        };
        match failed {
            None => {
                space.clear();
                Ok(())
            }
            Some(e) => {
                let half = space.len() / 2;
                let gone: Vec<u64> = space.keys().take(half).copied().collect();
                for k in gone {
                    space.remove(&k);
                }
                Err(e)
            }
        }
    }
}

impl FakeDmaHandle {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What `endpoint`'s address space holds, in IOVA order.
    pub fn mappings(&self, endpoint: u32) -> Vec<HostMapping> {
        self.lock()
            .spaces
            .get(&endpoint)
            .map(|s| s.values().copied().collect())
            .unwrap_or_default()
    }

    /// Number of ranges held in all address spaces.
    pub fn total(&self) -> usize {
        self.lock().spaces.values().map(BTreeMap::len).sum()
    }

    /// Makes calls fail as `injector` decides (replacing any earlier one).
    pub fn inject(&self, injector: Injector) {
        self.lock().inject = Some(injector);
    }

    /// No more injected failures.
    pub fn stop_injecting(&self) {
        self.lock().inject = None;
    }

    /// Calls made so far.
    pub fn calls(&self) -> u64 {
        self.lock().calls
    }

    /// Maps refused because the IOVA range was already mapped: a sign that
    /// the virtio-iommu lost track of what it mapped.
    pub fn refused_overlaps(&self) -> u64 {
        self.lock().refused_overlaps
    }

    /// Takes the log of calls made since the last time.
    pub fn take_log(&self) -> Vec<String> {
        std::mem::take(&mut self.lock().log)
    }

    /// Makes every call sleep `delay` first (after telling `notify`).
    pub fn slow_down(&self, delay: Duration, notify: Option<std::sync::mpsc::Sender<DmaCall>>) {
        self.lock().delay = Some((delay, notify));
    }
}

/// What `endpoint`'s host address space must hold for `state`, derived
/// from the virtual state alone: nothing when `quarantined`; the identity
/// map of `ram` ((start, size) pairs) for a bypass domain or, unattached,
/// when `bypass` is set; the domain's mappings otherwise.
pub fn expected_host(
    state: &IommuState,
    ram: &[(u64, u64)],
    endpoint: u32,
    quarantined: bool,
) -> Vec<HostMapping> {
    let identity = || {
        ram.iter()
            .filter(|(_, size)| *size > 0)
            .map(|&(start, size)| HostMapping {
                iova: start,
                size,
                phys: start,
                perm: DmaPerm::READ_WRITE,
            })
            .collect()
    };
    if quarantined {
        return Vec::new();
    }
    match state
        .endpoint_domain(endpoint)
        .and_then(|d| state.domain(d))
    {
        None if state.bypass() => identity(),
        None => Vec::new(),
        Some(d) => match d.mappings() {
            None => identity(),
            Some(store) => store
                .iter()
                .map(|m| HostMapping {
                    iova: m.start,
                    size: (m.end - m.start).wrapping_add(1),
                    phys: m.phys,
                    perm: DmaPerm::from_map_flags(m.flags),
                })
                .collect(),
        },
    }
}
