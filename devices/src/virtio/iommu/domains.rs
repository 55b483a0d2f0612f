//! Endpoints and domains: which endpoint is attached where, each domain's
//! kind (bypass or mapped) and mappings, the global `bypass` switch, and
//! the semantic checks of ATTACH, DETACH, MAP and UNMAP (virtio 1.3
//! §5.13.6.3-7). Wire-level checks (reserved bytes, unknown flags, feature
//! gating) live in `request.rs`; this module sees parsed values only.
//!
//! Every change is split in two: `plan_*` checks it against the current
//! state and changes nothing, `commit_*` applies a planned change and
//! cannot fail. In between, `apply.rs` brings the host address spaces of
//! assigned endpoints along, so that the virtual state commits only once
//! the host side has succeeded.
//!
//! Bounds: endpoints are fixed at construction; a domain exists only while
//! an endpoint is attached to it, so there are never more domains than
//! endpoints; mappings are capped per domain and in total
//! ([`Limits::max_mappings`], [`Limits::max_total_mappings`]).

use std::collections::{BTreeMap, BTreeSet};

use super::dma::DmaError;
use super::mappings::{MapError, Mapping, MappingStore, UnmapError};
use super::protocol::Status;

/// What a reserved region is for (the RESV_MEM subtype).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReservedKind {
    /// `VIRTIO_IOMMU_RESV_MEM_T_RESERVED`: never mappable.
    Reserved,
    /// `VIRTIO_IOMMU_RESV_MEM_T_MSI`: an MSI doorbell (e.g. x86's
    /// 0xfee00000-0xfeefffff).
    Msi,
}

/// An IOVA range an endpoint's driver must not map, reported by PROBE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReservedRegion {
    /// First IOVA.
    pub start: u64,
    /// Last IOVA (inclusive).
    pub end: u64,
    /// Subtype.
    pub kind: ReservedKind,
}

impl ReservedRegion {
    /// Whether the region shares an address with `start..=end`.
    pub fn overlaps(&self, start: u64, end: u64) -> bool {
        self.start <= end && start <= self.end
    }
}

/// Fixed limits of the IOMMU, advertised in its configuration space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Map granule in bytes (a power of two: the lowest bit of
    /// `page_size_mask`).
    pub granule: u64,
    /// First usable IOVA.
    pub input_start: u64,
    /// Last usable IOVA.
    pub input_end: u64,
    /// First valid domain ID.
    pub domain_start: u32,
    /// Last valid domain ID.
    pub domain_end: u32,
    /// Maximum number of mappings in one domain.
    pub max_mappings: usize,
    /// Maximum number of mappings in all domains together.
    pub max_total_mappings: usize,
}

/// Why a domain operation failed; [`DomainError::status`] is what the
/// guest sees.
#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    /// No endpoint with this ID sits behind the IOMMU.
    #[error("unknown endpoint {0}")]
    UnknownEndpoint(u32),
    /// MAP/UNMAP on a domain that does not exist.
    #[error("unknown domain {0}")]
    UnknownDomain(u32),
    /// DETACH of an endpoint from a domain it is not attached to.
    #[error("endpoint {endpoint} is not attached to domain {domain}")]
    NotAttached {
        /// Endpoint ID.
        endpoint: u32,
        /// Domain ID.
        domain: u32,
    },
    /// Domain ID outside `domain_range`.
    #[error("domain {0} is outside the domain range")]
    DomainOutOfRange(u32),
    /// ATTACH's bypass flag disagrees with the existing domain.
    #[error("domain {0} exists with the other bypass setting")]
    BypassMismatch(u32),
    /// MAP/UNMAP on a bypass domain.
    #[error("domain {0} is a bypass domain")]
    BypassDomain(u32),
    /// An address is not a multiple of the granule.
    #[error("{start:#x}..={end:#x} -> {phys:#x} is not aligned to the page granule")]
    Unaligned {
        /// First IOVA.
        start: u64,
        /// Last IOVA.
        end: u64,
        /// Physical start.
        phys: u64,
    },
    /// The IOVA range leaves `input_range`.
    #[error("{start:#x}..={end:#x} is outside the input range")]
    OutsideInputRange {
        /// First IOVA.
        start: u64,
        /// Last IOVA.
        end: u64,
    },
    /// The physical range wraps around the address space, or cannot be
    /// described to the DMA back-end.
    #[error("physical range of {start:#x}..={end:#x} -> {phys:#x} does not fit")]
    PhysRange {
        /// First IOVA.
        start: u64,
        /// Last IOVA.
        end: u64,
        /// Physical start.
        phys: u64,
    },
    /// MAP over a reserved region of an endpoint in the domain.
    #[error("{start:#x}..={end:#x} overlaps reserved region {:#x}..={:#x} of endpoint {endpoint}", region.start, region.end)]
    ReservedOverlap {
        /// First IOVA.
        start: u64,
        /// Last IOVA.
        end: u64,
        /// Endpoint owning the region.
        endpoint: u32,
        /// The region.
        region: ReservedRegion,
    },
    /// ATTACH to a domain whose mappings cover a reserved region of the
    /// endpoint.
    #[error("domain {domain} maps reserved region {:#x}..={:#x} of endpoint {endpoint}", region.start, region.end)]
    IncompatibleEndpoint {
        /// Endpoint ID.
        endpoint: u32,
        /// Domain ID.
        domain: u32,
        /// The region.
        region: ReservedRegion,
    },
    /// All domains together hold [`Limits::max_total_mappings`].
    #[error("the IOMMU holds its maximum of {0} mappings")]
    TotalLimitReached(usize),
    /// A request for an endpoint whose host address space was emptied
    /// after a host failure that could not be undone.
    #[error("endpoint {0} is quarantined after a host DMA failure")]
    Quarantined(u32),
    /// The host address spaces could not be brought back to a known state:
    /// the device answers nothing but DEVERR.
    #[error("the host DMA state is lost: {0}")]
    HostLost(String),
    /// The mapping store refused the MAP.
    #[error(transparent)]
    Map(#[from] MapError),
    /// The mapping store refused the UNMAP.
    #[error(transparent)]
    Unmap(#[from] UnmapError),
    /// The DMA back-end refused.
    #[error(transparent)]
    Backend(#[from] DmaError),
}

impl DomainError {
    /// The request status reporting this error.
    pub fn status(&self) -> Status {
        match self {
            Self::UnknownEndpoint(_) | Self::UnknownDomain(_) => Status::NoEnt,
            Self::NotAttached { .. }
            | Self::BypassMismatch(_)
            | Self::BypassDomain(_)
            | Self::ReservedOverlap { .. } => Status::Inval,
            Self::DomainOutOfRange(_)
            | Self::Unaligned { .. }
            | Self::OutsideInputRange { .. }
            | Self::PhysRange { .. } => Status::Range,
            Self::IncompatibleEndpoint { .. } => Status::Unsupp,
            // The per-domain cap is device policy, not memory exhaustion:
            // DEVERR, as the spec review settled (seed 004). NOMEM is kept
            // for a host that runs out of DMA mapping resources.
            Self::Map(MapError::LimitReached(_)) | Self::TotalLimitReached(_) => Status::DevErr,
            Self::Quarantined(_) | Self::HostLost(_) => Status::DevErr,
            Self::Map(MapError::Overlap { .. } | MapError::BadRange { .. }) => Status::Inval,
            Self::Unmap(UnmapError::WouldSplit { .. }) => Status::Range,
            Self::Unmap(UnmapError::BadRange { .. }) => Status::Inval,
            Self::Backend(DmaError::NoResources(_)) => Status::NoMem,
            Self::Backend(DmaError::Unsupported(_)) => Status::Unsupp,
            Self::Backend(DmaError::Failed(_)) => Status::DevErr,
        }
    }
}

/// A domain: its endpoints and, unless it is a bypass domain, mappings.
#[derive(Debug)]
pub struct Domain {
    /// `None` for a bypass (identity) domain.
    mappings: Option<MappingStore>,
    endpoints: BTreeSet<u32>,
}

impl Domain {
    /// Whether endpoints in this domain bypass translation.
    pub fn is_bypass(&self) -> bool {
        self.mappings.is_none()
    }

    /// The domain's mappings (`None` for a bypass domain).
    pub fn mappings(&self) -> Option<&MappingStore> {
        self.mappings.as_ref()
    }

    /// Attached endpoints.
    pub fn endpoints(&self) -> impl Iterator<Item = u32> + '_ {
        self.endpoints.iter().copied()
    }
}

#[derive(Debug)]
struct Endpoint {
    domain: Option<u32>,
    reserved: Vec<ReservedRegion>,
}

/// How an endpoint's DMA is translated right now.
#[derive(Debug)]
pub enum Resolution<'a> {
    /// Bypass: IOVA = guest-physical address.
    Identity,
    /// Through this domain's mappings.
    Mapped(&'a MappingStore),
    /// Unattached with global bypass off: every access faults.
    Blocked,
    /// Not an endpoint of this IOMMU.
    UnknownEndpoint,
}

/// Endpoints, domains and the global bypass switch of one virtio-iommu.
#[derive(Debug)]
pub struct IommuState {
    endpoints: BTreeMap<u32, Endpoint>,
    domains: BTreeMap<u32, Domain>,
    limits: Limits,
    bypass: bool,
    total_mappings: usize,
}

/// A checked ATTACH that changes something.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttachPlan {
    /// Endpoint ID.
    pub endpoint: u32,
    /// Domain it joins (created if new).
    pub domain: u32,
    /// Whether the domain is (or is created as) a bypass domain.
    pub bypass: bool,
    /// Domain it leaves first, if any (destroyed if it was the last
    /// endpoint there).
    pub leaves: Option<u32>,
}

/// A checked UNMAP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnmapPlan {
    /// Mappings it removes.
    pub count: usize,
    /// Whether that is every mapping of the domain.
    pub everything: bool,
}

impl IommuState {
    /// State with `endpoints` (ID and reserved regions), none attached.
    /// `bypass` is the initial value of the config `bypass` field.
    pub fn new(
        endpoints: impl IntoIterator<Item = (u32, Vec<ReservedRegion>)>,
        limits: Limits,
        bypass: bool,
    ) -> Self {
        Self {
            endpoints: endpoints
                .into_iter()
                .map(|(id, reserved)| {
                    (
                        id,
                        Endpoint {
                            domain: None,
                            reserved,
                        },
                    )
                })
                .collect(),
            domains: BTreeMap::new(),
            limits,
            bypass,
            total_mappings: 0,
        }
    }

    /// The limits this state enforces.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Value of the config `bypass` field.
    pub fn bypass(&self) -> bool {
        self.bypass
    }

    /// Sets the config `bypass` field; takes effect for the next access.
    pub fn set_bypass(&mut self, bypass: bool) {
        self.bypass = bypass;
    }

    /// Whether `endpoint` sits behind this IOMMU.
    pub fn has_endpoint(&self, endpoint: u32) -> bool {
        self.endpoints.contains_key(&endpoint)
    }

    /// Every endpoint ID, in order.
    pub fn endpoint_ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.endpoints.keys().copied()
    }

    /// The reserved regions of `endpoint`.
    pub fn reserved_regions(&self, endpoint: u32) -> Result<&[ReservedRegion], DomainError> {
        self.endpoints
            .get(&endpoint)
            .map(|e| e.reserved.as_slice())
            .ok_or(DomainError::UnknownEndpoint(endpoint))
    }

    /// The domain `endpoint` is attached to.
    pub fn endpoint_domain(&self, endpoint: u32) -> Option<u32> {
        self.endpoints.get(&endpoint).and_then(|e| e.domain)
    }

    /// The domain with ID `domain`.
    pub fn domain(&self, domain: u32) -> Option<&Domain> {
        self.domains.get(&domain)
    }

    /// Number of live domains (never more than the endpoints).
    pub fn domain_count(&self) -> usize {
        self.domains.len()
    }

    /// Number of mappings in all domains.
    pub fn total_mappings(&self) -> usize {
        self.total_mappings
    }

    /// How `endpoint`'s accesses are translated.
    pub fn resolve(&self, endpoint: u32) -> Resolution<'_> {
        let Some(ep) = self.endpoints.get(&endpoint) else {
            return Resolution::UnknownEndpoint;
        };
        match ep.domain.and_then(|d| self.domains.get(&d)) {
            Some(Domain {
                mappings: Some(store),
                ..
            }) => Resolution::Mapped(store),
            Some(Domain { mappings: None, .. }) => Resolution::Identity,
            None if self.bypass => Resolution::Identity,
            None => Resolution::Blocked,
        }
    }

    /// Checks an ATTACH of `endpoint` to `domain` (a bypass domain when
    /// `bypass`); `None` when the endpoint is already attached there.
    pub fn plan_attach(
        &self,
        endpoint: u32,
        domain: u32,
        bypass: bool,
    ) -> Result<Option<AttachPlan>, DomainError> {
        let ep = self
            .endpoints
            .get(&endpoint)
            .ok_or(DomainError::UnknownEndpoint(endpoint))?;
        if domain < self.limits.domain_start || domain > self.limits.domain_end {
            return Err(DomainError::DomainOutOfRange(domain));
        }
        if let Some(d) = self.domains.get(&domain) {
            if d.is_bypass() != bypass {
                return Err(DomainError::BypassMismatch(domain));
            }
            if let Some(store) = &d.mappings {
                if let Some(region) = ep
                    .reserved
                    .iter()
                    .find(|r| store.first_overlap(r.start, r.end).is_some())
                {
                    return Err(DomainError::IncompatibleEndpoint {
                        endpoint,
                        domain,
                        region: *region,
                    });
                }
            }
        }
        if ep.domain == Some(domain) {
            return Ok(None);
        }
        Ok(Some(AttachPlan {
            endpoint,
            domain,
            bypass,
            leaves: ep.domain,
        }))
    }

    /// Applies a planned ATTACH: the endpoint leaves its previous domain
    /// (destroyed if it was the last endpoint there) and joins the new one
    /// (created if needed).
    pub fn commit_attach(&mut self, plan: &AttachPlan) {
        if let Some(old) = plan.leaves {
            self.commit_detach(plan.endpoint, old);
        }
        let max = self.limits.max_mappings;
        self.domains
            .entry(plan.domain)
            .or_insert_with(|| Domain {
                mappings: (!plan.bypass).then(|| MappingStore::new(max)),
                endpoints: BTreeSet::new(),
            })
            .endpoints
            .insert(plan.endpoint);
        if let Some(ep) = self.endpoints.get_mut(&plan.endpoint) {
            ep.domain = Some(plan.domain);
        }
    }

    /// Checks a DETACH of `endpoint` from `domain`.
    pub fn plan_detach(&self, endpoint: u32, domain: u32) -> Result<(), DomainError> {
        let ep = self
            .endpoints
            .get(&endpoint)
            .ok_or(DomainError::UnknownEndpoint(endpoint))?;
        if ep.domain != Some(domain) {
            return Err(DomainError::NotAttached { endpoint, domain });
        }
        Ok(())
    }

    /// Applies a planned DETACH; the domain is destroyed with its mappings
    /// when no endpoint is left.
    pub fn commit_detach(&mut self, endpoint: u32, domain: u32) {
        if let Some(ep) = self.endpoints.get_mut(&endpoint) {
            ep.domain = None;
        }
        let now_empty = match self.domains.get_mut(&domain) {
            Some(d) => {
                d.endpoints.remove(&endpoint);
                d.endpoints.is_empty()
            }
            None => false,
        };
        if now_empty {
            if let Some(d) = self.domains.remove(&domain) {
                let n = d.mappings.as_ref().map_or(0, MappingStore::len);
                self.total_mappings = self.total_mappings.saturating_sub(n);
            }
        }
    }

    fn mapped_store(&self, domain: u32) -> Result<&MappingStore, DomainError> {
        let d = self
            .domains
            .get(&domain)
            .ok_or(DomainError::UnknownDomain(domain))?;
        d.mappings.as_ref().ok_or(DomainError::BypassDomain(domain))
    }

    /// Checks a MAP of `mapping` into `domain`. `sized` refuses a mapping
    /// of the whole 64-bit space, which has no `u64` size to hand to a DMA
    /// back-end.
    pub fn plan_map(&self, domain: u32, mapping: &Mapping, sized: bool) -> Result<(), DomainError> {
        let limits = self.limits;
        let Mapping {
            start, end, phys, ..
        } = *mapping;
        let d = self
            .domains
            .get(&domain)
            .ok_or(DomainError::UnknownDomain(domain))?;
        let store = d
            .mappings
            .as_ref()
            .ok_or(DomainError::BypassDomain(domain))?;
        if end < start {
            return Err(MapError::BadRange { start, end }.into());
        }
        let mask = limits.granule.wrapping_sub(1);
        if start & mask != 0 || phys & mask != 0 || end.wrapping_add(1) & mask != 0 {
            return Err(DomainError::Unaligned { start, end, phys });
        }
        if start < limits.input_start || end > limits.input_end {
            return Err(DomainError::OutsideInputRange { start, end });
        }
        let size = mapping.size();
        let phys_fits = match size {
            Some(size) => phys.checked_add(size - 1).is_some(),
            None => phys == 0,
        };
        if !phys_fits || (size.is_none() && sized) {
            return Err(DomainError::PhysRange { start, end, phys });
        }
        for &ep in &d.endpoints {
            let regions = self.endpoints.get(&ep).map(|e| e.reserved.as_slice());
            if let Some(region) = regions
                .unwrap_or_default()
                .iter()
                .find(|r| r.overlaps(start, end))
            {
                return Err(DomainError::ReservedOverlap {
                    start,
                    end,
                    endpoint: ep,
                    region: *region,
                });
            }
        }
        store.check_insert(start, end)?;
        if self.total_mappings >= limits.max_total_mappings {
            return Err(DomainError::TotalLimitReached(limits.max_total_mappings));
        }
        Ok(())
    }

    /// Applies a planned MAP.
    pub fn commit_map(&mut self, domain: u32, mapping: Mapping) {
        let inserted = self
            .domains
            .get_mut(&domain)
            .and_then(|d| d.mappings.as_mut())
            .map(|store| store.insert(mapping));
        match inserted {
            Some(Ok(())) => self.total_mappings += 1,
            // Cannot happen after a successful plan_map.
            other => {
                log::error!("virtio-iommu: planned MAP into domain {domain} failed: {other:?}")
            }
        }
    }

    /// Checks an UNMAP of `start..=end` in `domain`: which mappings go, or
    /// why nothing may change (a mapping would be split).
    pub fn plan_unmap(&self, domain: u32, start: u64, end: u64) -> Result<UnmapPlan, DomainError> {
        let store = self.mapped_store(domain)?;
        store.check_remove(start, end)?;
        let count = store.inside(start, end).take(store.len()).count();
        Ok(UnmapPlan {
            count,
            everything: count == store.len(),
        })
    }

    /// The mappings an UNMAP of `start..=end` in `domain` removes.
    pub fn unmapped(
        &self,
        domain: u32,
        start: u64,
        end: u64,
    ) -> impl Iterator<Item = Mapping> + '_ {
        self.mapped_store(domain)
            .ok()
            .into_iter()
            .flat_map(move |s| s.inside(start, end))
    }

    /// Applies a planned UNMAP; returns how many mappings went.
    pub fn commit_unmap(&mut self, domain: u32, start: u64, end: u64) -> usize {
        let removed = self
            .domains
            .get_mut(&domain)
            .and_then(|d| d.mappings.as_mut())
            .map(|store| store.remove(start, end));
        match removed {
            Some(Ok(n)) => {
                self.total_mappings = self.total_mappings.saturating_sub(n);
                n
            }
            other => {
                log::error!("virtio-iommu: planned UNMAP in domain {domain} failed: {other:?}");
                0
            }
        }
    }

    /// Device reset: every endpoint leaves its domain and every domain is
    /// destroyed. `bypass` keeps its value.
    pub fn reset(&mut self) {
        for ep in self.endpoints.values_mut() {
            ep.domain = None;
        }
        self.domains.clear();
        self.total_mappings = 0;
    }

    /// ATTACH without a host side (plan, then commit).
    pub fn attach(&mut self, endpoint: u32, domain: u32, bypass: bool) -> Result<(), DomainError> {
        if let Some(plan) = self.plan_attach(endpoint, domain, bypass)? {
            self.commit_attach(&plan);
        }
        Ok(())
    }

    /// DETACH without a host side.
    pub fn detach(&mut self, endpoint: u32, domain: u32) -> Result<(), DomainError> {
        self.plan_detach(endpoint, domain)?;
        self.commit_detach(endpoint, domain);
        Ok(())
    }

    /// MAP without a host side. Nothing changes unless it succeeds.
    pub fn map(&mut self, domain: u32, mapping: Mapping) -> Result<(), DomainError> {
        self.plan_map(domain, &mapping, false)?;
        self.commit_map(domain, mapping);
        Ok(())
    }

    /// UNMAP without a host side: returns how many mappings went, or
    /// changes nothing when a mapping would be split.
    pub fn unmap(&mut self, domain: u32, start: u64, end: u64) -> Result<usize, DomainError> {
        self.plan_unmap(domain, start, end)?;
        Ok(self.commit_unmap(domain, start, end))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::virtio::iommu::protocol::{VIRTIO_IOMMU_MAP_F_READ, VIRTIO_IOMMU_MAP_F_WRITE};

    pub(crate) fn limits() -> Limits {
        Limits {
            granule: 0x1000,
            input_start: 0,
            input_end: u64::MAX,
            domain_start: 0,
            domain_end: 1023,
            max_mappings: 16,
            max_total_mappings: 24,
        }
    }

    const MSI: ReservedRegion = ReservedRegion {
        start: 0xfee0_0000,
        end: 0xfeef_ffff,
        kind: ReservedKind::Msi,
    };

    fn state() -> IommuState {
        IommuState::new([(1, vec![]), (2, vec![]), (3, vec![MSI])], limits(), true)
    }

    fn rw(start: u64, end: u64, phys: u64) -> Mapping {
        Mapping {
            start,
            end,
            phys,
            flags: VIRTIO_IOMMU_MAP_F_READ | VIRTIO_IOMMU_MAP_F_WRITE,
        }
    }

    fn status<T: std::fmt::Debug>(r: Result<T, DomainError>) -> Status {
        match r {
            Ok(_) => Status::Ok,
            Err(e) => e.status(),
        }
    }

    #[test]
    fn attach_statuses() {
        let mut s = state();
        assert_eq!(status(s.attach(9, 1, false)), Status::NoEnt);
        assert_eq!(status(s.attach(1, 1024, false)), Status::Range);
        assert_eq!(status(s.attach(1, 1, false)), Status::Ok);
        assert_eq!(status(s.attach(2, 1, true)), Status::Inval);
        assert_eq!(status(s.attach(2, 2, true)), Status::Ok);
        assert_eq!(status(s.attach(1, 2, false)), Status::Inval);
        // Re-attaching to the same domain is a no-op.
        assert_eq!(status(s.attach(1, 1, false)), Status::Ok);
        assert_eq!(s.endpoint_domain(1), Some(1));
        assert_eq!(s.domain_count(), 2);
    }

    #[test]
    fn attach_moves_and_frees_the_old_domain() {
        let mut s = state();
        s.attach(1, 1, false).expect("attach");
        s.map(1, rw(0x1000, 0x1fff, 0x8000)).expect("map");
        s.attach(1, 2, false).expect("move");
        assert_eq!(s.endpoint_domain(1), Some(2));
        assert!(s.domain(1).is_none(), "empty domain freed");
        assert_eq!(status(s.map(1, rw(0, 0xfff, 0))), Status::NoEnt);
        // A new domain with the old ID starts empty.
        s.attach(2, 1, false).expect("reuse id");
        assert_eq!(
            s.domain(1).and_then(|d| d.mappings()).map(|m| m.len()),
            Some(0)
        );
    }

    #[test]
    fn shared_domain_survives_one_detach() {
        let mut s = state();
        s.attach(1, 5, false).expect("attach 1");
        s.attach(2, 5, false).expect("attach 2");
        s.map(5, rw(0x1000, 0x1fff, 0x8000)).expect("map");
        s.detach(1, 5).expect("detach 1");
        assert_eq!(
            s.domain(5).and_then(|d| d.mappings()).map(|m| m.len()),
            Some(1)
        );
        s.detach(2, 5).expect("detach 2");
        assert!(s.domain(5).is_none());
    }

    #[test]
    fn detach_statuses() {
        let mut s = state();
        assert_eq!(status(s.detach(9, 1)), Status::NoEnt);
        assert_eq!(status(s.detach(1, 1)), Status::Inval);
        s.attach(1, 1, false).expect("attach");
        s.attach(2, 2, false).expect("attach");
        assert_eq!(status(s.detach(1, 2)), Status::Inval);
        assert_eq!(status(s.detach(1, 1)), Status::Ok);
        assert_eq!(s.endpoint_domain(1), None);
    }

    #[test]
    fn map_statuses() {
        let mut s = state();
        assert_eq!(status(s.map(1, rw(0, 0xfff, 0))), Status::NoEnt);
        s.attach(1, 1, false).expect("attach");
        s.attach(2, 2, true).expect("attach bypass");
        assert_eq!(status(s.map(2, rw(0, 0xfff, 0))), Status::Inval);
        assert_eq!(status(s.map(1, rw(0x2000, 0x1fff, 0))), Status::Inval);
        assert_eq!(status(s.map(1, rw(0x800, 0x17ff, 0))), Status::Range);
        assert_eq!(status(s.map(1, rw(0x1000, 0x17ff, 0))), Status::Range);
        assert_eq!(status(s.map(1, rw(0x1000, 0x1fff, 0x10))), Status::Range);
        assert_eq!(
            status(s.map(1, rw(0x1000, 0x2fff, u64::MAX - 0xfff))),
            Status::Range
        );
        assert_eq!(status(s.map(1, rw(0x1000, 0x1fff, 0x5000))), Status::Ok);
        assert_eq!(status(s.map(1, rw(0x1000, 0x1fff, 0x5000))), Status::Inval);
        assert_eq!(status(s.map(1, rw(0, 0x1fff, 0x5000))), Status::Inval);
        assert_eq!(status(s.map(1, rw(0, u64::MAX, 0))), Status::Inval);
    }

    #[test]
    fn map_respects_input_range() {
        let mut l = limits();
        l.input_start = 0x10000;
        l.input_end = 0xffff_ffff;
        let mut s = IommuState::new([(1, vec![])], l, false);
        s.attach(1, 1, false).expect("attach");
        assert_eq!(status(s.map(1, rw(0xf000, 0x10fff, 0))), Status::Range);
        assert_eq!(
            status(s.map(1, rw(0xffff_f000, 0x1_0000_0fff, 0))),
            Status::Range
        );
        assert_eq!(status(s.map(1, rw(0x10000, 0x10fff, 0))), Status::Ok);
    }

    #[test]
    fn map_limit_gives_deverr() {
        let mut s = state();
        s.attach(1, 1, false).expect("attach");
        for i in 0..16 {
            s.map(1, rw(i * 0x1000, i * 0x1000 + 0xfff, 0))
                .expect("map");
        }
        assert_eq!(
            status(s.map(1, rw(0x10_0000, 0x10_0fff, 0))),
            Status::DevErr
        );
    }

    #[test]
    fn reserved_regions_block_map_and_incompatible_attach() {
        let mut s = state();
        s.attach(3, 1, false).expect("attach");
        assert_eq!(
            status(s.map(1, rw(0xfee0_0000, 0xfee0_0fff, 0xfee0_0000))),
            Status::Inval
        );
        assert_eq!(
            status(s.map(1, rw(0xfe00_0000, 0xfeff_ffff, 0))),
            Status::Inval
        );
        assert_eq!(
            status(s.map(1, rw(0xfef0_0000, 0xfef0_0fff, 0))),
            Status::Ok
        );
        // Endpoint 3 cannot join a domain that maps its MSI window.
        s.attach(1, 2, false).expect("attach 1");
        s.map(2, rw(0xfee0_0000, 0xfee0_0fff, 0)).expect("map");
        assert_eq!(status(s.attach(3, 2, false)), Status::Unsupp);
        assert_eq!(
            s.endpoint_domain(3),
            Some(1),
            "failed attach changes nothing"
        );
    }

    #[test]
    fn unmap_statuses() {
        let mut s = state();
        assert_eq!(status(s.unmap(1, 0, 0xfff)), Status::NoEnt);
        s.attach(1, 1, false).expect("attach");
        s.attach(2, 2, true).expect("attach");
        assert_eq!(status(s.unmap(2, 0, 0xfff)), Status::Inval);
        s.map(1, rw(0, 0x9fff, 0)).expect("map");
        assert_eq!(status(s.unmap(1, 0, 0x4fff)), Status::Range);
        assert_eq!(
            s.domain(1).and_then(|d| d.mappings()).map(|m| m.len()),
            Some(1)
        );
        assert_eq!(status(s.unmap(1, 0x4fff, 0)), Status::Inval);
        assert_eq!(status(s.unmap(1, 0x10000, 0x1ffff)), Status::Ok);
        assert_eq!(s.unmap(1, 0, u64::MAX).ok(), Some(1));
    }

    #[test]
    fn resolution_follows_bypass_and_domains() {
        let mut s = state();
        assert!(matches!(s.resolve(1), Resolution::Identity));
        s.set_bypass(false);
        assert!(matches!(s.resolve(1), Resolution::Blocked));
        assert!(matches!(s.resolve(99), Resolution::UnknownEndpoint));
        s.attach(1, 1, true).expect("bypass domain");
        assert!(matches!(s.resolve(1), Resolution::Identity));
        s.attach(1, 2, false).expect("mapped domain");
        assert!(matches!(s.resolve(1), Resolution::Mapped(_)));
        s.detach(1, 2).expect("detach");
        assert!(matches!(s.resolve(1), Resolution::Blocked));
        s.set_bypass(true);
        assert!(matches!(s.resolve(1), Resolution::Identity));
    }

    /// Issue 8, defect 3: mappings are capped in total, not only per
    /// domain, and a destroyed domain gives its mappings back.
    #[test]
    fn mappings_are_capped_in_total() {
        let mut s = state();
        s.attach(1, 1, false).expect("attach");
        s.attach(2, 2, false).expect("attach");
        for i in 0..16 {
            s.map(1, rw(i * 0x1000, i * 0x1000 + 0xfff, 0))
                .expect("map");
        }
        for i in 0..8 {
            s.map(2, rw(i * 0x1000, i * 0x1000 + 0xfff, 0))
                .expect("map");
        }
        assert_eq!(s.total_mappings(), 24);
        assert_eq!(
            status(s.map(2, rw(0x10_0000, 0x10_0fff, 0))),
            Status::DevErr,
            "24 in all domains"
        );
        assert_eq!(s.unmap(2, 0, 0xfff).ok(), Some(1));
        s.map(2, rw(0x10_0000, 0x10_0fff, 0)).expect("room again");
        s.detach(1, 1).expect("destroys domain 1");
        assert_eq!(s.total_mappings(), 8);
        s.reset();
        assert_eq!(s.total_mappings(), 0);
    }

    /// Domains exist only while an endpoint is attached: cycling ATTACH
    /// over many domain IDs keeps at most one domain per endpoint.
    #[test]
    fn domains_never_outnumber_endpoints() {
        let mut s = state();
        for d in 0..1024 {
            s.attach(1, d, false).expect("attach");
            s.map(d, rw(0, 0xfff, 0)).expect("map");
            s.attach(2, 1023 - d, d % 2 == 0).ok();
            assert!(s.domain_count() <= 3);
        }
        assert!(s.total_mappings() <= 2);
    }

    #[test]
    fn reset_detaches_everything_but_keeps_bypass() {
        let mut s = state();
        s.set_bypass(false);
        s.attach(1, 1, false).expect("attach");
        s.attach(2, 2, true).expect("attach");
        s.reset();
        assert_eq!(s.domain_count(), 0);
        assert_eq!(s.endpoint_domain(1), None);
        assert!(!s.bypass());
    }
}
