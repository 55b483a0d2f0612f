//! Domain changes applied to both sides: the virtual state
//! (`domains.rs`), which emulated endpoints translate through, and the host
//! address spaces of assigned endpoints (`host.rs`).
//!
//! Every change runs in the same order: check it against the virtual state,
//! change the host, then commit the virtual state. So a change that fails
//! leaves both sides as they were; a host failure that cannot be undone
//! quarantines only the endpoint it hit; and the host never holds a mapping
//! the virtual state does not.
//!
//! Locking: the state is read-locked while the host changes, so the
//! translations of emulated endpoints (readers) go on during long VFIO
//! calls, and write-locked only for the commit, which bumps the generation
//! the translators' caches check (`state.rs`; MAP excepted, as it only
//! adds). Only the request path, which holds the `&mut HostSpaces`,
//! changes the state, so nothing can change between the check and the
//! commit.

use super::dma::DmaError;
use super::domains::{DomainError, IommuState};
use super::host::{host_can_map, host_mapping, Content, HostSpaces};
use super::mappings::Mapping;
use super::state::StateLock;

/// The two sides a domain change is applied to.
pub struct Sides<'a> {
    /// The virtual state.
    pub state: &'a StateLock,
    /// The host address spaces, when some endpoint is assigned.
    pub host: Option<&'a mut HostSpaces>,
}

/// Commits a change; the translators' caches learn of it through the
/// generation the write guard bumps (see `state.rs`).
fn commit(state: &StateLock, f: impl FnOnce(&mut IommuState)) {
    f(&mut state.write());
}

/// The host side, if it can take requests for `endpoint` (`None`: no host
/// side, or `endpoint` is not assigned).
fn host_for<'h>(
    host: &'h mut Option<&mut HostSpaces>,
    endpoint: u32,
) -> Result<Option<&'h mut HostSpaces>, DomainError> {
    let Some(h) = host.as_deref_mut() else {
        return Ok(None);
    };
    if let Some(why) = h.lost() {
        return Err(DomainError::HostLost(why.to_string()));
    }
    if !h.has(endpoint) {
        return Ok(None);
    }
    if h.is_quarantined(endpoint) {
        return Err(DomainError::Quarantined(endpoint));
    }
    Ok(Some(h))
}

fn host_lost(host: &Option<&mut HostSpaces>) -> Result<(), DomainError> {
    match host.as_deref().and_then(HostSpaces::lost) {
        Some(why) => Err(DomainError::HostLost(why.to_string())),
        None => Ok(()),
    }
}

/// ATTACH `endpoint` to `domain` (created as a bypass domain when
/// `bypass`), leaving its previous domain first.
pub fn attach(
    sides: &mut Sides<'_>,
    endpoint: u32,
    domain: u32,
    bypass: bool,
) -> Result<(), DomainError> {
    let state = sides.state.read();
    let plan = state.plan_attach(endpoint, domain, bypass)?;
    let host = host_for(&mut sides.host, endpoint)?;
    let Some(plan) = plan else {
        return Ok(());
    };
    if let Some(host) = host {
        let to = match state.domain(domain).and_then(|d| d.mappings()) {
            _ if bypass => Content::Identity,
            Some(store) => {
                if !store.iter().all(|m| host_can_map(&m)) {
                    return Err(DmaError::Unsupported(format!(
                        "domain {domain} holds MMIO or whole-space mappings, which an assigned device cannot use"
                    ))
                    .into());
                }
                Content::Mapped(store)
            }
            None => Content::Empty,
        };
        let from = host.content(&state, endpoint);
        host.transition(endpoint, from, to)?;
    }
    drop(state);
    commit(sides.state, |s| s.commit_attach(&plan));
    Ok(())
}

/// DETACH `endpoint` from `domain`; the domain is destroyed with its
/// mappings when it was the last endpoint there.
pub fn detach(sides: &mut Sides<'_>, endpoint: u32, domain: u32) -> Result<(), DomainError> {
    let state = sides.state.read();
    state.plan_detach(endpoint, domain)?;
    if let Some(host) = host_for(&mut sides.host, endpoint)? {
        let to = if state.bypass() {
            Content::Identity
        } else {
            Content::Empty
        };
        let from = host.content(&state, endpoint);
        host.transition(endpoint, from, to)?;
    }
    drop(state);
    commit(sides.state, |s| s.commit_detach(endpoint, domain));
    Ok(())
}

/// MAP `mapping` into `domain`: into the host address space of each
/// assigned endpoint there first, then into the virtual state.
pub fn map(sides: &mut Sides<'_>, domain: u32, mapping: Mapping) -> Result<(), DomainError> {
    let state = sides.state.read();
    host_lost(&sides.host)?;
    state.plan_map(domain, &mapping, sides.host.is_some())?;
    if let (Some(host), Some(d)) = (sides.host.as_deref_mut(), state.domain(domain)) {
        let assigned = host.live(d.endpoints());
        if let (false, Some(hm), Some(store)) =
            (assigned.is_empty(), host_mapping(&mapping), d.mappings())
        {
            if hm.perm.mmio {
                return Err(
                    DmaError::Unsupported("MMIO mappings for assigned devices".into()).into(),
                );
            }
            host.map_into(&assigned, &hm, store)?;
        }
    }
    drop(state);
    // Adds a translation and removes none: no generation bump.
    sides.state.add_mapping(domain, mapping);
    Ok(())
}

/// UNMAP `start..=end` in `domain`: from the host address spaces first
/// (an endpoint that cannot let go is quarantined), then from the virtual
/// state. Changes nothing when a mapping would be split.
pub fn unmap(sides: &mut Sides<'_>, domain: u32, start: u64, end: u64) -> Result<(), DomainError> {
    let state = sides.state.read();
    host_lost(&sides.host)?;
    let plan = state.plan_unmap(domain, start, end)?;
    if let (Some(host), Some(d), true) = (
        sides.host.as_deref_mut(),
        state.domain(domain),
        plan.count > 0,
    ) {
        let assigned = host.live(d.endpoints());
        if let (false, Some(store)) = (assigned.is_empty(), d.mappings()) {
            host.unmap_from(&assigned, store, start, end, plan.everything);
        }
    }
    drop(state);
    commit(sides.state, |s| {
        s.commit_unmap(domain, start, end);
    });
    Ok(())
}

/// Sets the config `bypass` field: unattached assigned endpoints get or
/// lose the identity map first. When one cannot get it, the others are put
/// back and the field keeps its value.
pub fn set_bypass(sides: &mut Sides<'_>, bypass: bool) -> Result<(), DomainError> {
    let state = sides.state.read();
    if state.bypass() == bypass {
        return Ok(());
    }
    host_lost(&sides.host)?;
    if let Some(host) = sides.host.as_deref_mut() {
        let unattached = host.live(
            host.endpoints()
                .filter(|&ep| state.endpoint_domain(ep).is_none())
                .collect::<Vec<_>>()
                .into_iter(),
        );
        let (old, new) = if bypass {
            (Content::Empty, Content::Identity)
        } else {
            (Content::Identity, Content::Empty)
        };
        for (i, &ep) in unattached.iter().enumerate() {
            let Err(e) = host.transition(ep, old, new) else {
                continue;
            };
            if host.is_quarantined(ep) {
                // It holds nothing, which is right under either value.
                continue;
            }
            for &done in &unattached[..i] {
                if !host.is_quarantined(done) && host.transition(done, new, old).is_err() {
                    host.quarantine_identity(done, &e);
                }
            }
            return Err(e.into());
        }
    }
    drop(state);
    commit(sides.state, |s| s.set_bypass(bypass));
    Ok(())
}

/// An assigned device arrived at `endpoint` (hot-added): its host address
/// space, empty, is brought to what the virtual state gives the endpoint
/// now and follows the state from then on. On error it is left empty and
/// forgotten.
pub fn assign(sides: &mut Sides<'_>, endpoint: u32) -> Result<(), DomainError> {
    let state = sides.state.read();
    if !state.has_endpoint(endpoint) {
        return Err(DomainError::UnknownEndpoint(endpoint));
    }
    let Some(host) = sides.host.as_deref_mut() else {
        return Err(DmaError::Unsupported("no host DMA back-end".into()).into());
    };
    if let Some(why) = host.lost() {
        return Err(DomainError::HostLost(why.to_string()));
    }
    if let Some(store) = state
        .endpoint_domain(endpoint)
        .and_then(|d| state.domain(d))
        .and_then(|d| d.mappings())
    {
        if !store.iter().all(|m| host_can_map(&m)) {
            return Err(DmaError::Unsupported(
                "the endpoint's domain holds MMIO or whole-space mappings, which an assigned device cannot use".into(),
            )
            .into());
        }
    }
    if !host.add_endpoint(endpoint) {
        return Err(DmaError::Failed(format!("endpoint {endpoint:#x} is assigned already")).into());
    }
    let to = host.content(&state, endpoint);
    if let Err(e) = host.transition(endpoint, Content::Empty, to) {
        if !host.is_quarantined(endpoint) {
            host.remove_endpoint(endpoint);
        }
        return Err(e.into());
    }
    Ok(())
}

/// The assigned device at `endpoint` left: its host address space is
/// emptied and forgotten (the virtual state is not changed). If it cannot
/// be emptied the host state is lost (the caller reports it).
pub fn unassign(sides: &mut Sides<'_>, endpoint: u32) {
    let state = sides.state.read();
    let Some(host) = sides.host.as_deref_mut() else {
        return;
    };
    let from = host.content(&state, endpoint);
    host.retire(endpoint, from);
}

/// Device reset: every endpoint leaves its domain and every domain is
/// destroyed; `bypass` becomes `bypass_after` (system reset) or keeps its
/// value (device reset). Cannot fail: an assigned endpoint that cannot
/// reach its new content is quarantined.
pub fn reset(sides: &mut Sides<'_>, bypass_after: Option<bool>) {
    let state = sides.state.read();
    let bypass = bypass_after.unwrap_or(state.bypass());
    if let Some(host) = sides.host.as_deref_mut() {
        host.reset(&state, bypass);
    }
    drop(state);
    commit(sides.state, |s| {
        s.reset();
        s.set_bypass(bypass);
    });
}
