//! Request-queue requests: parsing one descriptor chain into a [`Request`],
//! one handler per request type (wire-level checks, then the domain
//! operation), and writing the reply (PROBE properties and the tail).
//!
//! Malformed chains never panic, and nothing allocated or written scales
//! with a length the guest chose. Where the device-writable part can hold a
//! tail the guest gets a status (`IOERR` for a device-readable part too
//! short for its type, `INVAL` for a PROBE buffer smaller than
//! `probe_size`); a chain without a head or without room for a tail, and a
//! request of an unknown type (virtio 1.3 §5.13.6: the device does not know
//! where its tail is, so it writes nothing), is returned with used
//! length 0.

use std::io::Write;

use virtio_queue::{DescriptorChain, Reader, Writer};
use vm_memory::{ByteValued, GuestMemoryMmap};

use super::apply::{self, Sides};
use super::domains::DomainError;
use super::host::HostSpaces;
use super::mappings::Mapping;
use super::probe::encode_properties;
use super::protocol::{
    ReqAttach, ReqDetach, ReqHead, ReqMap, ReqProbe, ReqTail, ReqUnmap, Status,
    VIRTIO_IOMMU_ATTACH_F_BYPASS, VIRTIO_IOMMU_F_BYPASS_CONFIG, VIRTIO_IOMMU_F_MAP_UNMAP,
    VIRTIO_IOMMU_F_MMIO, VIRTIO_IOMMU_MAP_F_MASK, VIRTIO_IOMMU_MAP_F_MMIO, VIRTIO_IOMMU_T_ATTACH,
    VIRTIO_IOMMU_T_DETACH, VIRTIO_IOMMU_T_MAP, VIRTIO_IOMMU_T_PROBE, VIRTIO_IOMMU_T_UNMAP,
};
use super::state::StateLock;

/// A parsed request (its device-readable part).
#[derive(Clone, Copy, Debug)]
pub enum Request {
    /// ATTACH.
    Attach(ReqAttach),
    /// DETACH.
    Detach(ReqDetach),
    /// MAP.
    Map(ReqMap),
    /// UNMAP.
    Unmap(ReqUnmap),
    /// PROBE.
    Probe(ReqProbe),
}

/// What to write back for a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// A status in the tail.
    Status(Status),
    /// PROBE: `probe_size` bytes of properties, then a status.
    Probe(Vec<u8>, Status),
}

/// Everything a handler works on.
pub struct RequestContext<'a> {
    /// Domains and endpoints.
    pub state: &'a StateLock,
    /// Host address spaces of assigned endpoints, if any.
    pub host: Option<&'a mut HostSpaces>,
    /// Features the driver accepted.
    pub acked_features: u64,
    /// Size of the PROBE properties buffer.
    pub probe_size: usize,
}

impl RequestContext<'_> {
    fn has(&self, feature: u64) -> bool {
        self.acked_features & feature != 0
    }

    fn sides(&mut self) -> Sides<'_> {
        Sides {
            state: self.state,
            host: self.host.as_deref_mut(),
        }
    }
}

fn status_of<T>(what: &str, r: Result<T, DomainError>) -> Status {
    match r {
        Ok(_) => Status::Ok,
        Err(e) => {
            crate::guest_log!(log::Level::Debug, "virtio-iommu: {what} refused: {e}");
            e.status()
        }
    }
}

/// ATTACH: reserved bytes must be zero and flags known.
pub fn handle_attach(ctx: &mut RequestContext<'_>, req: &ReqAttach) -> Status {
    let flags = req.flags.to_native();
    let known = if ctx.has(VIRTIO_IOMMU_F_BYPASS_CONFIG) {
        VIRTIO_IOMMU_ATTACH_F_BYPASS
    } else {
        0
    };
    if req.reserved != [0; 4] || flags & !known != 0 {
        crate::guest_log!(
            log::Level::Debug,
            "virtio-iommu: ATTACH with reserved bytes or unknown flags {flags:#x}"
        );
        return Status::Inval;
    }
    let r = apply::attach(
        &mut ctx.sides(),
        req.endpoint.to_native(),
        req.domain.to_native(),
        flags & VIRTIO_IOMMU_ATTACH_F_BYPASS != 0,
    );
    status_of("ATTACH", r)
}

/// DETACH: reserved bytes are ignored.
pub fn handle_detach(ctx: &mut RequestContext<'_>, req: &ReqDetach) -> Status {
    let r = apply::detach(
        &mut ctx.sides(),
        req.endpoint.to_native(),
        req.domain.to_native(),
    );
    status_of("DETACH", r)
}

/// MAP: flags must be defined, MMIO only when negotiated.
pub fn handle_map(ctx: &mut RequestContext<'_>, req: &ReqMap) -> Status {
    if !ctx.has(VIRTIO_IOMMU_F_MAP_UNMAP) {
        return Status::Unsupp;
    }
    let flags = req.flags.to_native();
    if flags & !VIRTIO_IOMMU_MAP_F_MASK != 0
        || (flags & VIRTIO_IOMMU_MAP_F_MMIO != 0 && !ctx.has(VIRTIO_IOMMU_F_MMIO))
    {
        crate::guest_log!(
            log::Level::Debug,
            "virtio-iommu: MAP with unsupported flags {flags:#x}"
        );
        return Status::Inval;
    }
    let mapping = Mapping {
        start: req.virt_start.to_native(),
        end: req.virt_end.to_native(),
        phys: req.phys_start.to_native(),
        flags,
    };
    let r = apply::map(&mut ctx.sides(), req.domain.to_native(), mapping);
    status_of("MAP", r)
}

/// UNMAP: non-zero reserved bytes fail the request without unmapping.
pub fn handle_unmap(ctx: &mut RequestContext<'_>, req: &ReqUnmap) -> Status {
    if !ctx.has(VIRTIO_IOMMU_F_MAP_UNMAP) {
        return Status::Unsupp;
    }
    if req.reserved != [0; 4] {
        crate::guest_log!(
            log::Level::Debug,
            "virtio-iommu: UNMAP with reserved bytes set"
        );
        return Status::Inval;
    }
    let r = apply::unmap(
        &mut ctx.sides(),
        req.domain.to_native(),
        req.virt_start.to_native(),
        req.virt_end.to_native(),
    );
    status_of("UNMAP", r)
}

/// PROBE: the endpoint's reserved regions as RESV_MEM properties; DEVERR
/// for a quarantined endpoint.
pub fn handle_probe(ctx: &mut RequestContext<'_>, req: &ReqProbe) -> Reply {
    let endpoint = req.endpoint.to_native();
    let zeros = || vec![0; ctx.probe_size];
    if ctx
        .host
        .as_deref()
        .is_some_and(|h| h.is_quarantined(endpoint))
    {
        let e = DomainError::Quarantined(endpoint);
        return Reply::Probe(zeros(), status_of("PROBE", Err::<(), _>(e)));
    }
    let state = ctx.state.read();
    match state.reserved_regions(endpoint) {
        Ok(regions) => match encode_properties(regions, ctx.probe_size) {
            Some(props) => Reply::Probe(props, Status::Ok),
            None => {
                crate::guest_log!(
                    log::Level::Error,
                    "virtio-iommu: PROBE properties exceed probe_size"
                );
                Reply::Probe(zeros(), Status::DevErr)
            }
        },
        Err(e) => Reply::Probe(zeros(), status_of("PROBE", Err::<(), _>(e))),
    }
}

/// Runs one parsed request.
pub fn execute(ctx: &mut RequestContext<'_>, req: &Request) -> Reply {
    match req {
        Request::Attach(r) => Reply::Status(handle_attach(ctx, r)),
        Request::Detach(r) => Reply::Status(handle_detach(ctx, r)),
        Request::Map(r) => Reply::Status(handle_map(ctx, r)),
        Request::Unmap(r) => Reply::Status(handle_unmap(ctx, r)),
        Request::Probe(r) => handle_probe(ctx, r),
    }
}

/// A descriptor chain split into its device-readable and -writable parts.
pub struct Chain<'a> {
    reader: Reader<'a>,
    writer: Writer<'a>,
    probe_size: usize,
    is_probe: bool,
}

/// What parsing a chain decided.
pub enum Parsed {
    /// A request to execute.
    Request(Request),
    /// A reply known without executing anything (malformed request).
    Reply(Reply),
    /// Unusable chain: return it with used length 0.
    Drop,
}

impl<'a> Chain<'a> {
    /// Splits `chain`; `None` (logged) when its buffers are not in `mem`.
    /// `probe_size` is the size of PROBE property buffers.
    pub fn new(
        mem: &'a GuestMemoryMmap,
        chain: DescriptorChain<&'a GuestMemoryMmap>,
        probe_size: usize,
    ) -> Option<Self> {
        let reader = Reader::new(mem, chain.clone());
        let writer = Writer::new(mem, chain);
        match (reader, writer) {
            (Ok(reader), Ok(writer)) => Some(Self {
                reader,
                writer,
                probe_size,
                is_probe: false,
            }),
            (Err(e), _) | (_, Err(e)) => {
                crate::guest_log!(
                    log::Level::Warn,
                    "virtio-iommu: dropping request with bad descriptors: {e}"
                );
                None
            }
        }
    }

    fn read_body<T: ByteValued>(&mut self, wrap: fn(T) -> Request) -> Parsed {
        match self.reader.read_obj::<T>() {
            Ok(body) => Parsed::Request(wrap(body)),
            Err(_) => {
                crate::guest_log!(
                    log::Level::Warn,
                    "virtio-iommu: request shorter than its type requires"
                );
                Parsed::Reply(Reply::Status(Status::IoErr))
            }
        }
    }

    /// Reads the request.
    pub fn parse(&mut self) -> Parsed {
        let Ok(head) = self.reader.read_obj::<ReqHead>() else {
            crate::guest_log!(
                log::Level::Warn,
                "virtio-iommu: dropping request without a head"
            );
            return Parsed::Drop;
        };
        let tail_len = std::mem::size_of::<ReqTail>();
        let known = matches!(
            head.type_,
            VIRTIO_IOMMU_T_ATTACH
                | VIRTIO_IOMMU_T_DETACH
                | VIRTIO_IOMMU_T_MAP
                | VIRTIO_IOMMU_T_UNMAP
                | VIRTIO_IOMMU_T_PROBE
        );
        if !known {
            // Spec 5.13.6: the device SHOULD NOT write the buffer of an
            // unknown request and SHOULD set the used length to zero. Its
            // layout is unknown, so any write could land anywhere in it.
            crate::guest_log!(
                log::Level::Debug,
                "virtio-iommu: returning request of unknown type {} unwritten",
                head.type_
            );
            return Parsed::Drop;
        }
        if self.writer.available_bytes() < tail_len {
            crate::guest_log!(
                log::Level::Warn,
                "virtio-iommu: dropping request with no room for its tail"
            );
            return Parsed::Drop;
        }
        match head.type_ {
            VIRTIO_IOMMU_T_ATTACH => self.read_body(Request::Attach),
            VIRTIO_IOMMU_T_DETACH => self.read_body(Request::Detach),
            VIRTIO_IOMMU_T_MAP => self.read_body(Request::Map),
            VIRTIO_IOMMU_T_UNMAP => self.read_body(Request::Unmap),
            _ => {
                self.is_probe = true;
                if self.writer.available_bytes() < self.probe_size.saturating_add(tail_len) {
                    crate::guest_log!(
                        log::Level::Debug,
                        "virtio-iommu: PROBE buffer smaller than probe_size"
                    );
                    return Parsed::Reply(Reply::Status(Status::Inval));
                }
                self.read_body(Request::Probe)
            }
        }
    }

    /// Writes `reply` and returns the used length. For a PROBE the
    /// properties area is written too (zeros unless the reply carries
    /// properties) so that the tail lands where the driver expects it:
    /// after `probe_size` bytes, or at the end of a buffer that is too
    /// small.
    pub fn write_reply(mut self, reply: &Reply) -> u32 {
        let tail_len = std::mem::size_of::<ReqTail>();
        let available = self.writer.available_bytes();
        let (props, status) = match reply {
            Reply::Status(s) => (None, *s),
            Reply::Probe(p, s) => (Some(p.as_slice()), *s),
        };
        // Bounded by `probe_size`, which the device chose: never by the
        // size of the guest's buffer.
        let props_len = if self.is_probe {
            self.probe_size.min(available.saturating_sub(tail_len))
        } else {
            0
        };
        let result = match props.filter(|p| p.len() == props_len) {
            Some(p) => self.writer.write_all(p),
            None => self.writer.write_all(&vec![0; props_len]),
        }
        .and_then(|()| self.writer.write_obj(ReqTail::new(status)));
        if let Err(e) = result {
            crate::guest_log!(log::Level::Warn, "virtio-iommu: cannot write reply: {e}");
        }
        u32::try_from(self.writer.bytes_written()).unwrap_or(u32::MAX)
    }
}

/// Handles one request-queue chain and returns its used length: parses it
/// without locks, runs it (see `apply.rs` for the locking), writes the
/// reply.
pub fn process_chain(
    state: &StateLock,
    host: Option<&mut HostSpaces>,
    acked_features: u64,
    probe_size: usize,
    mem: &GuestMemoryMmap,
    chain: DescriptorChain<&GuestMemoryMmap>,
) -> u32 {
    let Some(mut chain) = Chain::new(mem, chain, probe_size) else {
        return 0;
    };
    let reply = match chain.parse() {
        Parsed::Drop => return 0,
        Parsed::Reply(reply) => reply,
        Parsed::Request(req) => {
            let mut ctx = RequestContext {
                state,
                host,
                acked_features,
                probe_size,
            };
            execute(&mut ctx, &req)
        }
    };
    chain.write_reply(&reply)
}
