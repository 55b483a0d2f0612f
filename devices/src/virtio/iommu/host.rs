//! The host address spaces of assigned endpoints, and the rule that binds
//! them to the virtual state.
//!
//! An assigned endpoint's host address space (its VFIO container) holds
//! exactly its *content*, computed from the virtual state:
//!
//! | endpoint | content |
//! |---|---|
//! | attached to a mapped domain | that domain's mappings |
//! | attached to a bypass domain | guest RAM, identity |
//! | not attached, config `bypass` = 1 | guest RAM, identity |
//! | not attached, `bypass` = 0 | nothing |
//! | quarantined | nothing |
//!
//! Nothing else is remembered about a host address space: what it holds
//! follows from the state, because every change goes through
//! [`HostSpaces::transition`], [`HostSpaces::map_into`] or
//! [`HostSpaces::unmap_from`], which either reach the new content or put
//! the old one back. A failure that cannot be undone (a host unmap fails,
//! or a rollback does) *quarantines* the endpoint: its address space is
//! emptied and requests naming it fail with DEVERR until a device reset.
//! If even emptying fails, the host state is *lost*: the device answers
//! DEVERR to everything and the VMM stops the VM, because it can no longer
//! promise that the device cannot reach memory the guest took back.

use std::collections::BTreeMap;

use super::dma::{DmaBackend, DmaError, DmaPerm, HostMapping};
use super::domains::IommuState;
use super::mappings::{Mapping, MappingStore};
use super::protocol::VIRTIO_IOMMU_MAP_F_MMIO;

/// What an assigned endpoint's host address space must hold.
#[derive(Clone, Copy, Debug)]
pub enum Content<'a> {
    /// Nothing.
    Empty,
    /// All guest RAM at IOVA = guest-physical address, read-write.
    Identity,
    /// A domain's mappings.
    Mapped(&'a MappingStore),
}

impl Content<'_> {
    fn same(&self, other: &Content<'_>) -> bool {
        match (self, other) {
            (Content::Empty, Content::Empty) | (Content::Identity, Content::Identity) => true,
            (Content::Mapped(a), Content::Mapped(b)) => std::ptr::eq(*a, *b),
            _ => false,
        }
    }
}

/// The host form of a guest mapping; `None` for a mapping of the whole
/// 64-bit space, which has no `u64` size (MAP refuses those when there is
/// a host side).
pub fn host_mapping(m: &Mapping) -> Option<HostMapping> {
    m.size().map(|size| HostMapping {
        iova: m.start,
        size,
        phys: m.phys,
        perm: DmaPerm::from_map_flags(m.flags),
    })
}

/// Whether the host IOMMU can hold `m` for an assigned endpoint: it needs
/// a size, and VFIO maps process memory, not device registers.
pub fn host_can_map(m: &Mapping) -> bool {
    m.size().is_some() && m.flags & VIRTIO_IOMMU_MAP_F_MMIO == 0
}

#[derive(Debug, Default)]
struct Endpoint {
    quarantined: bool,
}

/// The host address spaces of every assigned endpoint behind one
/// virtio-iommu, and the back-end that programs them.
pub struct HostSpaces {
    backend: Box<dyn DmaBackend>,
    identity: Vec<HostMapping>,
    endpoints: BTreeMap<u32, Endpoint>,
    lost: Option<String>,
}

impl std::fmt::Debug for HostSpaces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostSpaces")
            .field("endpoints", &self.endpoints)
            .field("lost", &self.lost)
            .finish_non_exhaustive()
    }
}

/// Entries in `from` but not in `to`, entries in `to` but not in `from`
/// (both sorted by IOVA), and the number of entries in `from`.
fn diff(
    from: impl Iterator<Item = HostMapping>,
    to: impl Iterator<Item = HostMapping>,
) -> (Vec<HostMapping>, Vec<HostMapping>, usize) {
    let (mut from, mut to) = (from.peekable(), to.peekable());
    let (mut removals, mut additions, mut from_len) = (Vec::new(), Vec::new(), 0);
    loop {
        match (from.peek().copied(), to.peek().copied()) {
            (None, None) => break,
            (Some(a), Some(b)) if a == b => {
                from.next();
                to.next();
                from_len += 1;
            }
            (Some(a), Some(b)) if a.iova > b.iova => additions.extend(to.next()),
            (Some(_), _) => {
                removals.extend(from.next());
                from_len += 1;
            }
            (None, Some(_)) => additions.extend(to.next()),
        }
    }
    (removals, additions, from_len)
}

impl HostSpaces {
    /// Address spaces for `endpoints`, all empty; `ram` lists guest RAM as
    /// (guest-physical start, size), sorted: the identity map of bypass.
    pub fn new(
        backend: Box<dyn DmaBackend>,
        endpoints: impl IntoIterator<Item = u32>,
        ram: &[(u64, u64)],
    ) -> Self {
        Self {
            backend,
            identity: ram
                .iter()
                .filter(|(_, size)| *size > 0)
                .map(|&(start, size)| HostMapping {
                    iova: start,
                    size,
                    phys: start,
                    perm: DmaPerm::READ_WRITE,
                })
                .collect(),
            endpoints: endpoints
                .into_iter()
                .map(|id| (id, Endpoint::default()))
                .collect(),
            lost: None,
        }
    }

    /// `endpoint` gets a host address space, empty (an assigned device
    /// hot-added there); false if it has one already.
    pub fn add_endpoint(&mut self, endpoint: u32) -> bool {
        if self.endpoints.contains_key(&endpoint) {
            return false;
        }
        self.endpoints.insert(endpoint, Endpoint::default());
        true
    }

    /// Forgets `endpoint`'s host address space (an assignment that failed
    /// while it was still empty).
    pub fn remove_endpoint(&mut self, endpoint: u32) {
        self.endpoints.remove(&endpoint);
    }

    /// The device at `endpoint` left: its address space, which holds
    /// `from`, is emptied (quarantined when that fails, lost when even
    /// that fails) and forgotten.
    pub fn retire(&mut self, endpoint: u32, from: Content<'_>) {
        if self.lost.is_none() && self.has(endpoint) && !self.is_quarantined(endpoint) {
            if let Err(e) = self.transition(endpoint, from, Content::Empty) {
                if !self.is_quarantined(endpoint) {
                    let held: Vec<HostMapping> = self.entries(from).collect();
                    self.quarantine(endpoint, &held, &e);
                }
            }
        }
        self.endpoints.remove(&endpoint);
    }

    /// Whether `endpoint` has a host address space.
    pub fn has(&self, endpoint: u32) -> bool {
        self.endpoints.contains_key(&endpoint)
    }

    /// Every endpoint with a host address space.
    pub fn endpoints(&self) -> impl Iterator<Item = u32> + '_ {
        self.endpoints.keys().copied()
    }

    /// Whether `endpoint` is quarantined.
    pub fn is_quarantined(&self, endpoint: u32) -> bool {
        self.endpoints.get(&endpoint).is_some_and(|e| e.quarantined)
    }

    /// Why the host state is lost, if it is.
    pub fn lost(&self) -> Option<&str> {
        self.lost.as_deref()
    }

    /// The identity map of guest RAM.
    pub fn identity(&self) -> &[HostMapping] {
        &self.identity
    }

    /// The endpoints among `endpoints` whose host address space follows
    /// the state (assigned and not quarantined).
    pub fn live(&self, endpoints: impl Iterator<Item = u32>) -> Vec<u32> {
        endpoints
            .filter(|ep| self.endpoints.get(ep).is_some_and(|e| !e.quarantined))
            .collect()
    }

    /// What `endpoint`'s address space holds when `state` is the virtual
    /// state.
    pub fn content<'a>(&self, state: &'a IommuState, endpoint: u32) -> Content<'a> {
        if self.is_quarantined(endpoint) {
            return Content::Empty;
        }
        match state
            .endpoint_domain(endpoint)
            .and_then(|d| state.domain(d))
        {
            Some(d) => d.mappings().map_or(Content::Identity, Content::Mapped),
            None if state.bypass() => Content::Identity,
            None => Content::Empty,
        }
    }

    fn entries<'a>(&'a self, content: Content<'a>) -> Box<dyn Iterator<Item = HostMapping> + 'a> {
        match content {
            Content::Empty => Box::new(std::iter::empty()),
            Content::Identity => Box::new(self.identity.iter().copied()),
            Content::Mapped(store) => Box::new(store.iter().filter_map(|m| host_mapping(&m))),
        }
    }

    /// Moves `endpoint`'s address space from `from` (what it holds now) to
    /// `to`: ranges only in `from` are unmapped first, then ranges only in
    /// `to` are mapped. On error it holds `from` again, or it is
    /// quarantined (and holds nothing) when that could not be restored.
    pub fn transition(
        &mut self,
        endpoint: u32,
        from: Content<'_>,
        to: Content<'_>,
    ) -> Result<(), DmaError> {
        self.usable()?;
        if from.same(&to) {
            return Ok(());
        }
        let (removals, additions, from_len) = diff(self.entries(from), self.entries(to));
        if !removals.is_empty() {
            let result = if removals.len() == from_len && self.backend.can_unmap_all() {
                self.backend.unmap_all(endpoint)
            } else {
                removals
                    .iter()
                    .try_for_each(|r| self.backend.unmap(endpoint, r.iova, r.size))
            };
            if let Err(e) = result {
                let held: Vec<HostMapping> = self.entries(from).collect();
                self.quarantine(endpoint, &held, &e);
                return Err(e);
            }
        }
        for (i, a) in additions.iter().enumerate() {
            let Err(e) = self.backend.map(endpoint, a) else {
                continue;
            };
            let undone = additions[..i]
                .iter()
                .try_for_each(|b| self.backend.unmap(endpoint, b.iova, b.size))
                .and_then(|()| {
                    removals
                        .iter()
                        .try_for_each(|r| self.backend.map(endpoint, r))
                });
            if let Err(undo) = undone {
                let mut held: Vec<HostMapping> = self.entries(from).collect();
                held.extend_from_slice(&additions[..i]);
                self.quarantine(endpoint, &held, &undo);
            }
            return Err(e);
        }
        Ok(())
    }

    /// Maps `mapping` into each of `endpoints` (which hold `store`, the
    /// domain's mappings before this one): into all of them, or, on error,
    /// into none (an endpoint that cannot let go again is quarantined).
    pub fn map_into(
        &mut self,
        endpoints: &[u32],
        mapping: &HostMapping,
        store: &MappingStore,
    ) -> Result<(), DmaError> {
        self.usable()?;
        for (i, &ep) in endpoints.iter().enumerate() {
            let Err(e) = self.backend.map(ep, mapping) else {
                continue;
            };
            for &done in &endpoints[..i] {
                if let Err(undo) = self.backend.unmap(done, mapping.iova, mapping.size) {
                    let mut held: Vec<HostMapping> =
                        store.iter().filter_map(|m| host_mapping(&m)).collect();
                    held.push(*mapping);
                    self.quarantine(done, &held, &undo);
                }
            }
            return Err(e);
        }
        Ok(())
    }

    /// Unmaps the mappings of `store` inside `start..=end` (every mapping
    /// of `store` when `everything`) from each of `endpoints`. Never fails:
    /// an endpoint that cannot let go is quarantined, which empties it.
    pub fn unmap_from(
        &mut self,
        endpoints: &[u32],
        store: &MappingStore,
        start: u64,
        end: u64,
        everything: bool,
    ) {
        if self.lost.is_some() {
            return;
        }
        for &ep in endpoints {
            let result = if everything && self.backend.can_unmap_all() {
                self.backend.unmap_all(ep)
            } else {
                store
                    .inside(start, end)
                    .filter_map(|m| host_mapping(&m))
                    .try_for_each(|m| self.backend.unmap(ep, m.iova, m.size))
            };
            if let Err(e) = result {
                let held: Vec<HostMapping> =
                    store.iter().filter_map(|m| host_mapping(&m)).collect();
                self.quarantine(ep, &held, &e);
            }
        }
    }

    /// Device reset: quarantines are lifted and every address space goes
    /// to the identity map (`bypass_after`) or to nothing; one that holds
    /// the identity map already keeps it (no unpinning and pinning again of
    /// all guest RAM). An endpoint that cannot get there is quarantined: it
    /// must not keep what it held, the domains are gone.
    pub fn reset(&mut self, state: &IommuState, bypass_after: bool) {
        if self.lost.is_some() {
            return;
        }
        let to = if bypass_after {
            Content::Identity
        } else {
            Content::Empty
        };
        let ids: Vec<u32> = self.endpoints.keys().copied().collect();
        for ep in ids {
            let from = self.content(state, ep);
            if let Some(e) = self.endpoints.get_mut(&ep) {
                e.quarantined = false;
            }
            if let Err(e) = self.transition(ep, from, to) {
                if !self.is_quarantined(ep) {
                    // Rolled back to `from`, which the reset takes away.
                    let mut held: Vec<HostMapping> = self.entries(from).collect();
                    held.extend(self.entries(to));
                    self.quarantine(ep, &held, &e);
                }
            }
        }
    }

    /// Brings every address space from empty to its content in `state`
    /// (at start-up). On error, returns the endpoint that failed; it was
    /// left empty.
    pub fn sync(&mut self, state: &IommuState) -> Result<(), (u32, DmaError)> {
        let ids: Vec<u32> = self.endpoints.keys().copied().collect();
        for ep in ids {
            let to = self.content(state, ep);
            self.transition(ep, Content::Empty, to)
                .map_err(|e| (ep, e))?;
        }
        Ok(())
    }

    /// Quarantines `endpoint`, which holds at most the identity map (a
    /// bypass change that could not be undone).
    pub fn quarantine_identity(&mut self, endpoint: u32, why: &DmaError) {
        let held = self.identity.clone();
        self.quarantine(endpoint, &held, why);
    }

    fn usable(&self) -> Result<(), DmaError> {
        match &self.lost {
            Some(why) => Err(DmaError::Failed(format!("host DMA state lost: {why}"))),
            None => Ok(()),
        }
    }

    /// Empties `endpoint`'s address space after a failure that left it in
    /// an unknown state, which `held` covers, and refuses its requests
    /// until reset. If even that fails, the host state is lost.
    fn quarantine(&mut self, endpoint: u32, held: &[HostMapping], why: &DmaError) {
        if let Some(e) = self.endpoints.get_mut(&endpoint) {
            e.quarantined = true;
        }
        crate::guest_log!(
            log::Level::Error,
            "virtio-iommu: endpoint {endpoint:#x} quarantined after a host DMA failure that could not be undone ({why}): its host address space is emptied and its requests fail with DEVERR until the device is reset"
        );
        if self.backend.can_unmap_all() && self.backend.unmap_all(endpoint).is_ok() {
            return;
        }
        for m in held {
            if let Err(e) = self.backend.unmap(endpoint, m.iova, m.size) {
                let why = format!(
                    "endpoint {endpoint:#x}: cannot unmap {:#x}+{:#x}: {e}",
                    m.iova, m.size
                );
                log::error!("virtio-iommu: host DMA state lost, {why}");
                self.lost = Some(why);
                return;
            }
        }
    }
}
