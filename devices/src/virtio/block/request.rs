//! Turning a descriptor chain into a validated virtio-blk request.
//!
//! A request is a byte stream split over the chain's descriptors, in this
//! order (virtio 1.2 section 5.2.6):
//!
//! ```text
//! le32 type | le32 reserved | le64 sector | data ... | u8 status
//! \------------ device-readable ---------/  (either)  \-writable-/
//! ```
//!
//! With `VIRTIO_F_VERSION_1` the driver may lay those bytes over
//! descriptors any way it likes, so parsing works on bytes, not on
//! descriptor counts: the device-readable descriptors form one stream whose
//! first 16 bytes are the header, and the device-writable descriptors form
//! another whose last byte is the status. Data for `OUT` is what follows the
//! header; data for `IN` and `GET_ID` is what precedes the status.
//!
//! Two levels of failure:
//! - [`Layout::from_descriptors`] fails when there is no device-writable last
//!   byte to hold the status: nothing can be reported to the driver, so the
//!   device drops the request (it still returns the chain to the used ring
//!   with length 0 so the driver can reclaim its descriptors).
//! - [`Request::parse`] fails with a [`RequestError`] whose
//!   [`status`](RequestError::status) the device writes in the status byte.
//!
//! Parsing only reads the 16 header bytes from guest memory, through the
//! `GuestMemory` object, and reports every failure as an error.

use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_UNSUPP, VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_GET_ID,
    VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT,
};
use vm_memory::{Address, Bytes, GuestAddress, GuestMemory, GuestMemoryError};

use super::SECTOR_SIZE;

/// Length of the request header (`struct virtio_blk_outhdr`).
pub(crate) const HEADER_LEN: u64 = 16;

/// A range of guest memory, addressed as the device's memory object sees it
/// (IOVAs for a device behind an IOMMU).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Segment {
    pub addr: GuestAddress,
    pub len: u32,
}

/// An ordered list of non-empty segments forming one byte stream.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Area {
    segs: Vec<Segment>,
    len: u64,
}

impl Area {
    fn push(&mut self, seg: Segment) {
        if seg.len > 0 {
            self.len += u64::from(seg.len);
            self.segs.push(seg);
        }
    }

    /// Total length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// The segments, in stream order.
    pub fn segments(&self) -> &[Segment] {
        &self.segs
    }

    /// Splits off and returns the first `n` bytes; `None` if the area is
    /// shorter (the area is then left unchanged).
    fn split_front(&mut self, n: u64) -> Option<Area> {
        if n > self.len {
            return None;
        }
        let mut front = Area::default();
        let mut rest = Area::default();
        let mut need = n;
        for seg in &self.segs {
            let len = u64::from(seg.len);
            if need == 0 {
                rest.push(*seg);
            } else if len <= need {
                need -= len;
                front.push(*seg);
            } else {
                // `need < seg.len`, so it fits in a u32; segments never wrap
                // the address space (checked in `Layout::from_descriptors`).
                let head = u32::try_from(need).ok()?;
                front.push(Segment {
                    addr: seg.addr,
                    len: head,
                });
                rest.push(Segment {
                    addr: seg.addr.checked_add(need)?,
                    len: seg.len - head,
                });
                need = 0;
            }
        }
        *self = rest;
        Some(front)
    }

    /// Fills `buf` from the start of the area (which must be at least as
    /// long).
    fn read_into<M: GuestMemory>(&self, mem: &M, buf: &mut [u8]) -> Result<(), GuestMemoryError> {
        let mut done = 0usize;
        for seg in &self.segs {
            let Some(rest) = buf.get_mut(done..) else {
                break;
            };
            let n = rest.len().min(seg.len as usize);
            if let Some(chunk) = rest.get_mut(..n) {
                mem.read_slice(chunk, seg.addr)?;
            }
            done += n;
        }
        Ok(())
    }
}

/// How a chain's bytes divide into readable and writable streams and where
/// its status byte is.
#[derive(Debug)]
pub(crate) struct Layout {
    readable: Area,
    /// Device-writable bytes before the status byte.
    writable: Area,
    /// Where the status byte goes.
    pub status: GuestAddress,
    /// A device-readable descriptor followed a device-writable one.
    misordered: bool,
}

/// Why a chain has no place for a status byte.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum LayoutError {
    /// No non-empty descriptor at all.
    #[error("descriptor chain is empty")]
    Empty,
    /// The chain's last byte is not device-writable.
    #[error("descriptor chain does not end with a device-writable status byte")]
    NoStatus,
    /// A descriptor's range wraps around the address space.
    #[error("descriptor {addr:#x}+{len} wraps around the address space")]
    Wraps {
        /// Descriptor address.
        addr: u64,
        /// Descriptor length.
        len: u32,
    },
}

impl Layout {
    /// Classifies a chain's descriptors, given as `(address, length,
    /// device-writable)` in chain order.
    pub fn from_descriptors(
        descs: impl IntoIterator<Item = (GuestAddress, u32, bool)>,
    ) -> Result<Self, LayoutError> {
        let mut readable = Area::default();
        let mut writable = Area::default();
        let mut misordered = false;
        let mut last_writable = None;
        for (addr, len, write) in descs {
            if len == 0 {
                continue;
            }
            if addr.checked_add(u64::from(len)).is_none() {
                return Err(LayoutError::Wraps { addr: addr.0, len });
            }
            let seg = Segment { addr, len };
            if write {
                writable.push(seg);
            } else {
                misordered |= writable.len() > 0;
                readable.push(seg);
            }
            last_writable = Some(write);
        }
        match last_writable {
            None => Err(LayoutError::Empty),
            Some(false) => Err(LayoutError::NoStatus),
            Some(true) => {
                // The last segment is writable and non-empty: its last byte
                // is the status.
                let last = writable.segs.pop().ok_or(LayoutError::NoStatus)?;
                writable.len -= u64::from(last.len);
                let status = last
                    .addr
                    .checked_add(u64::from(last.len) - 1)
                    .ok_or(LayoutError::NoStatus)?;
                writable.push(Segment {
                    addr: last.addr,
                    len: last.len - 1,
                });
                Ok(Self {
                    readable,
                    writable,
                    status,
                    misordered,
                })
            }
        }
    }
}

/// What a request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RequestKind {
    /// `VIRTIO_BLK_T_IN`: disk to guest.
    Read,
    /// `VIRTIO_BLK_T_OUT`: guest to disk.
    Write,
    /// `VIRTIO_BLK_T_FLUSH`.
    Flush,
    /// `VIRTIO_BLK_T_GET_ID`.
    GetId,
}

/// A validated request.
#[derive(Debug)]
pub(crate) struct Request {
    pub kind: RequestKind,
    /// First sector (meaningful for `Read` and `Write` only).
    pub sector: u64,
    /// The data buffers: device-readable for `Write`, device-writable for
    /// `Read` and `GetId`, empty for `Flush`. For `Read` and `Write` the
    /// length is a whole number of sectors inside the disk.
    pub data: Area,
}

/// Why a request is refused; the device reports [`RequestError::status`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum RequestError {
    /// A device-readable descriptor follows a device-writable one.
    #[error("device-readable descriptor after a device-writable one")]
    Misordered,
    /// The device-readable part is shorter than the header.
    #[error("request header is {0} bytes, expected {HEADER_LEN}")]
    ShortHeader(u64),
    /// The header could not be read from guest memory.
    #[error("cannot read the request header: {0}")]
    HeaderUnreadable(String),
    /// The request type is not one this device implements.
    #[error("unsupported request type {0}")]
    Unsupported(u32),
    /// Data buffers go the wrong way for the request type.
    #[error("{kind:?} request with {bytes} bytes of {direction} data")]
    WrongDirection {
        /// The request.
        kind: RequestKind,
        /// The offending direction ("device-readable"/"device-writable").
        direction: &'static str,
        /// How many bytes go that way.
        bytes: u64,
    },
    /// A `GET_ID` without room for the ID.
    #[error("GET_ID request without a device-writable data buffer")]
    NoIdBuffer,
    /// Read/write length is not a whole number of sectors.
    #[error("data length {0} is not a multiple of {SECTOR_SIZE}")]
    PartialSector(u64),
    /// Read/write goes past the end of the disk.
    #[error("sectors {sector}+{count} are beyond the disk's {capacity} sectors")]
    OutOfRange {
        /// First sector.
        sector: u64,
        /// Number of sectors.
        count: u64,
        /// Disk capacity in sectors.
        capacity: u64,
    },
}

impl RequestError {
    /// The `VIRTIO_BLK_S_*` status the driver gets.
    pub fn status(&self) -> u8 {
        match self {
            RequestError::Unsupported(_) => VIRTIO_BLK_S_UNSUPP as u8,
            _ => VIRTIO_BLK_S_IOERR as u8,
        }
    }
}

impl Request {
    /// Reads and validates the request laid out by `layout`, for a disk of
    /// `capacity` sectors.
    pub fn parse<M: GuestMemory>(
        mem: &M,
        layout: Layout,
        capacity: u64,
    ) -> Result<Self, RequestError> {
        let Layout {
            mut readable,
            writable,
            misordered,
            ..
        } = layout;
        if misordered {
            return Err(RequestError::Misordered);
        }
        let header_area = readable
            .split_front(HEADER_LEN)
            .ok_or(RequestError::ShortHeader(readable.len()))?;
        let mut header = [0u8; HEADER_LEN as usize];
        header_area
            .read_into(mem, &mut header)
            .map_err(|e| RequestError::HeaderUnreadable(e.to_string()))?;
        let [t0, t1, t2, t3, _, _, _, _, s0, s1, s2, s3, s4, s5, s6, s7] = header;
        let request_type = u32::from_le_bytes([t0, t1, t2, t3]);
        let sector = u64::from_le_bytes([s0, s1, s2, s3, s4, s5, s6, s7]);

        let (kind, data, wrong) = match request_type {
            VIRTIO_BLK_T_IN => (
                RequestKind::Read,
                writable,
                Some(("device-readable", readable)),
            ),
            VIRTIO_BLK_T_OUT => (
                RequestKind::Write,
                readable,
                Some(("device-writable", writable)),
            ),
            VIRTIO_BLK_T_GET_ID => (
                RequestKind::GetId,
                writable,
                Some(("device-readable", readable)),
            ),
            // A flush carries no data (drivers "SHOULD NOT" add any): any
            // that is there is ignored, like the sector.
            VIRTIO_BLK_T_FLUSH => (RequestKind::Flush, Area::default(), None),
            other => return Err(RequestError::Unsupported(other)),
        };
        if let Some((direction, area)) = wrong {
            if area.len() > 0 {
                return Err(RequestError::WrongDirection {
                    kind,
                    direction,
                    bytes: area.len(),
                });
            }
        }
        match kind {
            RequestKind::Read | RequestKind::Write => check_range(sector, data.len(), capacity)?,
            RequestKind::GetId if data.len() == 0 => return Err(RequestError::NoIdBuffer),
            RequestKind::GetId | RequestKind::Flush => {}
        }
        Ok(Self { kind, sector, data })
    }
}

/// Checks that `len` bytes from `sector` are whole sectors inside a disk of
/// `capacity` sectors.
fn check_range(sector: u64, len: u64, capacity: u64) -> Result<(), RequestError> {
    if !len.is_multiple_of(SECTOR_SIZE) {
        return Err(RequestError::PartialSector(len));
    }
    let count = len / SECTOR_SIZE;
    match sector.checked_add(count) {
        Some(end) if end <= capacity => Ok(()),
        _ => Err(RequestError::OutOfRange {
            sector,
            count,
            capacity,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(addr: u64, len: u32) -> Segment {
        Segment {
            addr: GuestAddress(addr),
            len,
        }
    }

    #[test]
    fn layout_status_is_last_writable_byte() {
        let layout = Layout::from_descriptors([
            (GuestAddress(0x1000), 16, false),
            (GuestAddress(0x2000), 0, true),
            (GuestAddress(0x3000), 1025, true),
        ])
        .expect("layout");
        assert_eq!(layout.status, GuestAddress(0x3400));
        assert_eq!(layout.writable.segments(), &[seg(0x3000, 1024)]);
        assert_eq!(layout.readable.segments(), &[seg(0x1000, 16)]);
        assert!(!layout.misordered);
    }

    #[test]
    fn layout_without_status_is_refused() {
        assert_eq!(
            Layout::from_descriptors([]).expect_err("no status"),
            LayoutError::Empty
        );
        assert_eq!(
            Layout::from_descriptors([(GuestAddress(0x1000), 16, false)]).expect_err("no status"),
            LayoutError::NoStatus
        );
        assert_eq!(
            Layout::from_descriptors([
                (GuestAddress(0x1000), 16, false),
                (GuestAddress(0x2000), 1, true),
                (GuestAddress(0x3000), 1, false),
            ])
            .expect_err("no status"),
            LayoutError::NoStatus
        );
        assert!(matches!(
            Layout::from_descriptors([(GuestAddress(u64::MAX - 1), 4, true)]),
            Err(LayoutError::Wraps { .. })
        ));
    }

    #[test]
    fn split_front_cuts_inside_a_segment() {
        let mut area = Area::default();
        area.push(seg(0x1000, 10));
        area.push(seg(0x2000, 10));
        let front = area.split_front(12).expect("split");
        assert_eq!(front.segments(), &[seg(0x1000, 10), seg(0x2000, 2)]);
        assert_eq!(area.segments(), &[seg(0x2002, 8)]);
        assert_eq!(area.len(), 8);
        assert!(area.split_front(9).is_none());
        assert_eq!(area.len(), 8);
    }

    #[test]
    fn range_checks() {
        assert_eq!(check_range(0, 1024, 2), Ok(()));
        assert_eq!(check_range(2, 0, 2), Ok(()));
        assert_eq!(
            check_range(0, 100, 2),
            Err(RequestError::PartialSector(100))
        );
        assert!(matches!(
            check_range(1, 1024, 2),
            Err(RequestError::OutOfRange { .. })
        ));
        assert!(matches!(
            check_range(u64::MAX, 512, u64::MAX),
            Err(RequestError::OutOfRange { .. })
        ));
    }
}
