//! Endpoints and domains: which endpoint is attached where, each domain's
//! kind (bypass or mapped) and mappings, the global `bypass` switch, and
//! the semantic checks of ATTACH, DETACH, MAP and UNMAP (virtio 1.3
//! §5.13.6.3-7). Wire-level checks (reserved bytes, unknown flags, feature
//! gating) live in `request.rs`; this module sees parsed values only.

use std::collections::{BTreeMap, BTreeSet};

use super::dma::{reborrow, DmaBackend, DmaError, DmaPerm};
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
            Self::Map(MapError::LimitReached(_)) => Status::DevErr,
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
}

fn call_backend<T>(
    backend: &mut Option<&mut dyn DmaBackend>,
    f: impl FnOnce(&mut dyn DmaBackend) -> Result<T, DmaError>,
) -> Result<Option<T>, DmaError> {
    match backend {
        Some(b) => f(&mut **b).map(Some),
        None => Ok(None),
    }
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

    /// Number of live domains.
    pub fn domain_count(&self) -> usize {
        self.domains.len()
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

    /// ATTACH `endpoint` to `domain`, creating the domain (a bypass domain
    /// when `bypass`) and first detaching the endpoint from its previous one.
    pub fn attach(
        &mut self,
        endpoint: u32,
        domain: u32,
        bypass: bool,
        mut backend: Option<&mut dyn DmaBackend>,
    ) -> Result<(), DomainError> {
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
        let current = ep.domain;
        match current {
            Some(old) if old == domain => return Ok(()),
            Some(old) => self.detach_attached(endpoint, old, reborrow(&mut backend)),
            None => {}
        }
        call_backend(&mut backend, |b| b.attach(endpoint, domain, bypass))?;
        let max = self.limits.max_mappings;
        self.domains
            .entry(domain)
            .or_insert_with(|| Domain {
                mappings: (!bypass).then(|| MappingStore::new(max)),
                endpoints: BTreeSet::new(),
            })
            .endpoints
            .insert(endpoint);
        if let Some(ep) = self.endpoints.get_mut(&endpoint) {
            ep.domain = Some(domain);
        }
        Ok(())
    }

    /// DETACH `endpoint` from `domain`; the domain is destroyed with its
    /// mappings when no endpoint is left.
    pub fn detach(
        &mut self,
        endpoint: u32,
        domain: u32,
        backend: Option<&mut dyn DmaBackend>,
    ) -> Result<(), DomainError> {
        let ep = self
            .endpoints
            .get(&endpoint)
            .ok_or(DomainError::UnknownEndpoint(endpoint))?;
        if ep.domain != Some(domain) {
            return Err(DomainError::NotAttached { endpoint, domain });
        }
        self.detach_attached(endpoint, domain, backend);
        Ok(())
    }

    /// Detaches an endpoint known to be attached to `domain`.
    fn detach_attached(
        &mut self,
        endpoint: u32,
        domain: u32,
        mut backend: Option<&mut dyn DmaBackend>,
    ) {
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
            if let Some(mut d) = self.domains.remove(&domain) {
                let removed = d.mappings.as_mut().map(MappingStore::drain);
                if let (Some(b), Some(removed)) = (reborrow(&mut backend), removed) {
                    for m in removed {
                        if let Err(e) = unmap_backend(b, domain, &m) {
                            log::error!("virtio-iommu: destroying domain {domain}: {e}");
                        }
                    }
                }
            }
        }
        if let Some(b) = backend {
            b.detach(endpoint, domain);
        }
    }

    fn mapped_domain(&mut self, domain: u32) -> Result<&mut Domain, DomainError> {
        let d = self
            .domains
            .get_mut(&domain)
            .ok_or(DomainError::UnknownDomain(domain))?;
        if d.is_bypass() {
            return Err(DomainError::BypassDomain(domain));
        }
        Ok(d)
    }

    /// MAP `mapping` into `domain`. Nothing changes unless it succeeds.
    pub fn map(
        &mut self,
        domain: u32,
        mapping: Mapping,
        mut backend: Option<&mut dyn DmaBackend>,
    ) -> Result<(), DomainError> {
        let limits = self.limits;
        let Mapping {
            start, end, phys, ..
        } = mapping;
        let d = self
            .domains
            .get(&domain)
            .ok_or(DomainError::UnknownDomain(domain))?;
        let Some(store) = &d.mappings else {
            return Err(DomainError::BypassDomain(domain));
        };
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
        if !phys_fits || (size.is_none() && backend.is_some()) {
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
        if let Some(size) = size {
            call_backend(&mut backend, |b| {
                b.map(
                    domain,
                    start,
                    size,
                    phys,
                    DmaPerm::from_map_flags(mapping.flags),
                )
            })?;
        }
        self.mapped_domain(domain)?
            .mappings
            .as_mut()
            .ok_or(DomainError::BypassDomain(domain))?
            .insert(mapping)?;
        Ok(())
    }

    /// UNMAP `start..=end` in `domain`: returns the removed mappings, or
    /// changes nothing when a mapping would be split. A back-end failure is
    /// reported after the mappings were removed from this state.
    pub fn unmap(
        &mut self,
        domain: u32,
        start: u64,
        end: u64,
        backend: Option<&mut dyn DmaBackend>,
    ) -> Result<Vec<Mapping>, DomainError> {
        let store = self
            .mapped_domain(domain)?
            .mappings
            .as_mut()
            .ok_or(DomainError::BypassDomain(domain))?;
        let removed = store.remove(start, end)?;
        if let Some(b) = backend {
            let mut first_err = None;
            for m in &removed {
                if let Err(e) = unmap_backend(b, domain, m) {
                    log::error!("virtio-iommu: domain {domain}: {e}");
                    first_err.get_or_insert(e);
                }
            }
            if let Some(e) = first_err {
                return Err(e.into());
            }
        }
        Ok(removed)
    }

    /// Device reset: every endpoint leaves its domain and every domain is
    /// destroyed. `bypass` keeps its value.
    pub fn reset(&mut self, mut backend: Option<&mut dyn DmaBackend>) {
        let attached: Vec<(u32, u32)> = self
            .endpoints
            .iter()
            .filter_map(|(&id, e)| e.domain.map(|d| (id, d)))
            .collect();
        for (endpoint, domain) in attached {
            self.detach_attached(endpoint, domain, reborrow(&mut backend));
        }
        self.domains.clear();
    }
}

fn unmap_backend(b: &mut dyn DmaBackend, domain: u32, m: &Mapping) -> Result<(), DmaError> {
    match m.size() {
        Some(size) => b.unmap(domain, m.start, size),
        // Never handed to a back-end: MAP refuses it when one is present.
        None => Ok(()),
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

    /// Records every back-end call; fails MAPs at `fail_iova`.
    #[derive(Default)]
    pub(crate) struct FakeBackend {
        pub calls: Vec<String>,
        pub fail_iova: Option<u64>,
    }

    impl DmaBackend for FakeBackend {
        fn map(
            &mut self,
            d: u32,
            iova: u64,
            size: u64,
            phys: u64,
            p: DmaPerm,
        ) -> Result<(), DmaError> {
            self.calls.push(format!(
                "map d{d} {iova:#x}+{size:#x}->{phys:#x} r{} w{}",
                p.read as u8, p.write as u8
            ));
            if self.fail_iova == Some(iova) {
                return Err(DmaError::Failed("injected".into()));
            }
            Ok(())
        }
        fn unmap(&mut self, d: u32, iova: u64, size: u64) -> Result<(), DmaError> {
            self.calls.push(format!("unmap d{d} {iova:#x}+{size:#x}"));
            Ok(())
        }
        fn attach(&mut self, ep: u32, d: u32, bypass: bool) -> Result<(), DmaError> {
            self.calls
                .push(format!("attach e{ep} d{d} b{}", bypass as u8));
            Ok(())
        }
        fn detach(&mut self, ep: u32, d: u32) {
            self.calls.push(format!("detach e{ep} d{d}"));
        }
    }

    #[test]
    fn attach_statuses() {
        let mut s = state();
        assert_eq!(status(s.attach(9, 1, false, None)), Status::NoEnt);
        assert_eq!(status(s.attach(1, 1024, false, None)), Status::Range);
        assert_eq!(status(s.attach(1, 1, false, None)), Status::Ok);
        assert_eq!(status(s.attach(2, 1, true, None)), Status::Inval);
        assert_eq!(status(s.attach(2, 2, true, None)), Status::Ok);
        assert_eq!(status(s.attach(1, 2, false, None)), Status::Inval);
        // Re-attaching to the same domain is a no-op.
        assert_eq!(status(s.attach(1, 1, false, None)), Status::Ok);
        assert_eq!(s.endpoint_domain(1), Some(1));
        assert_eq!(s.domain_count(), 2);
    }

    #[test]
    fn attach_moves_and_frees_the_old_domain() {
        let mut s = state();
        s.attach(1, 1, false, None).expect("attach");
        s.map(1, rw(0x1000, 0x1fff, 0x8000), None).expect("map");
        s.attach(1, 2, false, None).expect("move");
        assert_eq!(s.endpoint_domain(1), Some(2));
        assert!(s.domain(1).is_none(), "empty domain freed");
        assert_eq!(status(s.map(1, rw(0, 0xfff, 0), None)), Status::NoEnt);
        // A new domain with the old ID starts empty.
        s.attach(2, 1, false, None).expect("reuse id");
        assert_eq!(
            s.domain(1).and_then(|d| d.mappings()).map(|m| m.len()),
            Some(0)
        );
    }

    #[test]
    fn shared_domain_survives_one_detach() {
        let mut s = state();
        s.attach(1, 5, false, None).expect("attach 1");
        s.attach(2, 5, false, None).expect("attach 2");
        s.map(5, rw(0x1000, 0x1fff, 0x8000), None).expect("map");
        s.detach(1, 5, None).expect("detach 1");
        assert_eq!(
            s.domain(5).and_then(|d| d.mappings()).map(|m| m.len()),
            Some(1)
        );
        s.detach(2, 5, None).expect("detach 2");
        assert!(s.domain(5).is_none());
    }

    #[test]
    fn detach_statuses() {
        let mut s = state();
        assert_eq!(status(s.detach(9, 1, None)), Status::NoEnt);
        assert_eq!(status(s.detach(1, 1, None)), Status::Inval);
        s.attach(1, 1, false, None).expect("attach");
        s.attach(2, 2, false, None).expect("attach");
        assert_eq!(status(s.detach(1, 2, None)), Status::Inval);
        assert_eq!(status(s.detach(1, 1, None)), Status::Ok);
        assert_eq!(s.endpoint_domain(1), None);
    }

    #[test]
    fn map_statuses() {
        let mut s = state();
        assert_eq!(status(s.map(1, rw(0, 0xfff, 0), None)), Status::NoEnt);
        s.attach(1, 1, false, None).expect("attach");
        s.attach(2, 2, true, None).expect("attach bypass");
        assert_eq!(status(s.map(2, rw(0, 0xfff, 0), None)), Status::Inval);
        assert_eq!(status(s.map(1, rw(0x2000, 0x1fff, 0), None)), Status::Inval);
        assert_eq!(status(s.map(1, rw(0x800, 0x17ff, 0), None)), Status::Range);
        assert_eq!(status(s.map(1, rw(0x1000, 0x17ff, 0), None)), Status::Range);
        assert_eq!(
            status(s.map(1, rw(0x1000, 0x1fff, 0x10), None)),
            Status::Range
        );
        assert_eq!(
            status(s.map(1, rw(0x1000, 0x2fff, u64::MAX - 0xfff), None)),
            Status::Range
        );
        assert_eq!(
            status(s.map(1, rw(0x1000, 0x1fff, 0x5000), None)),
            Status::Ok
        );
        assert_eq!(
            status(s.map(1, rw(0x1000, 0x1fff, 0x5000), None)),
            Status::Inval
        );
        assert_eq!(status(s.map(1, rw(0, 0x1fff, 0x5000), None)), Status::Inval);
        assert_eq!(status(s.map(1, rw(0, u64::MAX, 0), None)), Status::Inval);
    }

    #[test]
    fn map_respects_input_range() {
        let mut l = limits();
        l.input_start = 0x10000;
        l.input_end = 0xffff_ffff;
        let mut s = IommuState::new([(1, vec![])], l, false);
        s.attach(1, 1, false, None).expect("attach");
        assert_eq!(
            status(s.map(1, rw(0xf000, 0x10fff, 0), None)),
            Status::Range
        );
        assert_eq!(
            status(s.map(1, rw(0xffff_f000, 0x1_0000_0fff, 0), None)),
            Status::Range
        );
        assert_eq!(status(s.map(1, rw(0x10000, 0x10fff, 0), None)), Status::Ok);
    }

    #[test]
    fn map_limit_gives_deverr() {
        let mut s = state();
        s.attach(1, 1, false, None).expect("attach");
        for i in 0..16 {
            s.map(1, rw(i * 0x1000, i * 0x1000 + 0xfff, 0), None)
                .expect("map");
        }
        assert_eq!(
            status(s.map(1, rw(0x10_0000, 0x10_0fff, 0), None)),
            Status::DevErr
        );
    }

    #[test]
    fn reserved_regions_block_map_and_incompatible_attach() {
        let mut s = state();
        s.attach(3, 1, false, None).expect("attach");
        assert_eq!(
            status(s.map(1, rw(0xfee0_0000, 0xfee0_0fff, 0xfee0_0000), None)),
            Status::Inval
        );
        assert_eq!(
            status(s.map(1, rw(0xfe00_0000, 0xfeff_ffff, 0), None)),
            Status::Inval
        );
        assert_eq!(
            status(s.map(1, rw(0xfef0_0000, 0xfef0_0fff, 0), None)),
            Status::Ok
        );
        // Endpoint 3 cannot join a domain that maps its MSI window.
        s.attach(1, 2, false, None).expect("attach 1");
        s.map(2, rw(0xfee0_0000, 0xfee0_0fff, 0), None)
            .expect("map");
        assert_eq!(status(s.attach(3, 2, false, None)), Status::Unsupp);
        assert_eq!(
            s.endpoint_domain(3),
            Some(1),
            "failed attach changes nothing"
        );
    }

    #[test]
    fn unmap_statuses() {
        let mut s = state();
        assert_eq!(status(s.unmap(1, 0, 0xfff, None)), Status::NoEnt);
        s.attach(1, 1, false, None).expect("attach");
        s.attach(2, 2, true, None).expect("attach");
        assert_eq!(status(s.unmap(2, 0, 0xfff, None)), Status::Inval);
        s.map(1, rw(0, 0x9fff, 0), None).expect("map");
        assert_eq!(status(s.unmap(1, 0, 0x4fff, None)), Status::Range);
        assert_eq!(
            s.domain(1).and_then(|d| d.mappings()).map(|m| m.len()),
            Some(1)
        );
        assert_eq!(status(s.unmap(1, 0x4fff, 0, None)), Status::Inval);
        assert_eq!(status(s.unmap(1, 0x10000, 0x1ffff, None)), Status::Ok);
        assert_eq!(s.unmap(1, 0, u64::MAX, None).map(|v| v.len()).ok(), Some(1));
    }

    #[test]
    fn resolution_follows_bypass_and_domains() {
        let mut s = state();
        assert!(matches!(s.resolve(1), Resolution::Identity));
        s.set_bypass(false);
        assert!(matches!(s.resolve(1), Resolution::Blocked));
        assert!(matches!(s.resolve(99), Resolution::UnknownEndpoint));
        s.attach(1, 1, true, None).expect("bypass domain");
        assert!(matches!(s.resolve(1), Resolution::Identity));
        s.attach(1, 2, false, None).expect("mapped domain");
        assert!(matches!(s.resolve(1), Resolution::Mapped(_)));
        s.detach(1, 2, None).expect("detach");
        assert!(matches!(s.resolve(1), Resolution::Blocked));
        s.set_bypass(true);
        assert!(matches!(s.resolve(1), Resolution::Identity));
    }

    #[test]
    fn backend_sees_every_change_and_failed_map_is_not_recorded() {
        let mut s = state();
        let mut b = FakeBackend {
            fail_iova: Some(0x3000),
            ..Default::default()
        };
        s.attach(1, 1, false, Some(&mut b)).expect("attach");
        s.map(1, rw(0x1000, 0x2fff, 0x8000), Some(&mut b))
            .expect("map");
        let r = s.map(1, rw(0x3000, 0x3fff, 0x9000), Some(&mut b));
        assert_eq!(status(r), Status::DevErr);
        assert_eq!(
            s.domain(1).and_then(|d| d.mappings()).map(|m| m.len()),
            Some(1)
        );
        // An overlapping MAP never reaches the back-end.
        assert_eq!(
            status(s.map(1, rw(0x2000, 0x2fff, 0), Some(&mut b))),
            Status::Inval
        );
        s.map(1, rw(0x4000, 0x4fff, 0xa000), Some(&mut b))
            .expect("map");
        s.unmap(1, 0x4000, 0x4fff, Some(&mut b)).expect("unmap");
        // Moving the only endpoint destroys domain 1.
        s.attach(1, 2, false, Some(&mut b)).expect("move");
        assert_eq!(
            b.calls,
            vec![
                "attach e1 d1 b0",
                "map d1 0x1000+0x2000->0x8000 r1 w1",
                "map d1 0x3000+0x1000->0x9000 r1 w1",
                "map d1 0x4000+0x1000->0xa000 r1 w1",
                "unmap d1 0x4000+0x1000",
                "unmap d1 0x1000+0x2000",
                "detach e1 d1",
                "attach e1 d2 b0",
            ]
        );
        assert_eq!(
            status(s.map(2, rw(0, u64::MAX, 0), Some(&mut b))),
            Status::Range,
            "a 2^64-byte mapping cannot be described to the back-end"
        );
    }

    #[test]
    fn reset_detaches_everything_but_keeps_bypass() {
        let mut s = state();
        s.set_bypass(false);
        s.attach(1, 1, false, None).expect("attach");
        s.attach(2, 2, true, None).expect("attach");
        s.reset(None);
        assert_eq!(s.domain_count(), 0);
        assert_eq!(s.endpoint_domain(1), None);
        assert!(!s.bypass());
    }
}
