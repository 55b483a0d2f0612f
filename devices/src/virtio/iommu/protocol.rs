//! Wire format of the virtio-iommu device (virtio 1.3, section 5.13):
//! feature bits, request and status codes, the request, probe-property and
//! fault-record layouts, and the device configuration space.
//!
//! A request on the request queue is a [`ReqHead`], a type-specific body
//! (device-readable), then a [`ReqTail`] (device-writable). The body structs
//! here hold only the fields between head and tail. All multi-byte fields
//! are little endian.

use vm_memory::{ByteValued, Le16, Le32, Le64};

/// `VIRTIO_IOMMU_F_INPUT_RANGE`: `input_range` describes the usable IOVAs.
pub const VIRTIO_IOMMU_F_INPUT_RANGE: u64 = 1 << 0;
/// `VIRTIO_IOMMU_F_DOMAIN_RANGE`: `domain_range` describes valid domain IDs.
pub const VIRTIO_IOMMU_F_DOMAIN_RANGE: u64 = 1 << 1;
/// `VIRTIO_IOMMU_F_MAP_UNMAP`: MAP and UNMAP requests are available.
pub const VIRTIO_IOMMU_F_MAP_UNMAP: u64 = 1 << 2;
/// `VIRTIO_IOMMU_F_BYPASS` (legacy, superseded by `BYPASS_CONFIG`; this
/// device does not offer it).
pub const VIRTIO_IOMMU_F_BYPASS: u64 = 1 << 3;
/// `VIRTIO_IOMMU_F_PROBE`: the PROBE request is available.
pub const VIRTIO_IOMMU_F_PROBE: u64 = 1 << 4;
/// `VIRTIO_IOMMU_F_MMIO`: the `VIRTIO_IOMMU_MAP_F_MMIO` flag is available.
pub const VIRTIO_IOMMU_F_MMIO: u64 = 1 << 5;
/// `VIRTIO_IOMMU_F_BYPASS_CONFIG`: the `bypass` config field and the
/// `VIRTIO_IOMMU_ATTACH_F_BYPASS` flag are available.
pub const VIRTIO_IOMMU_F_BYPASS_CONFIG: u64 = 1 << 6;

/// ATTACH request type.
pub const VIRTIO_IOMMU_T_ATTACH: u8 = 1;
/// DETACH request type.
pub const VIRTIO_IOMMU_T_DETACH: u8 = 2;
/// MAP request type.
pub const VIRTIO_IOMMU_T_MAP: u8 = 3;
/// UNMAP request type.
pub const VIRTIO_IOMMU_T_UNMAP: u8 = 4;
/// PROBE request type.
pub const VIRTIO_IOMMU_T_PROBE: u8 = 5;

/// Request status codes written into [`ReqTail::status`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Status {
    /// `VIRTIO_IOMMU_S_OK`: success.
    Ok = 0,
    /// `VIRTIO_IOMMU_S_IOERR`: virtio communication error.
    IoErr = 1,
    /// `VIRTIO_IOMMU_S_UNSUPP`: unsupported request.
    Unsupp = 2,
    /// `VIRTIO_IOMMU_S_DEVERR`: internal device error.
    DevErr = 3,
    /// `VIRTIO_IOMMU_S_INVAL`: invalid parameters.
    Inval = 4,
    /// `VIRTIO_IOMMU_S_RANGE`: out-of-range parameters.
    Range = 5,
    /// `VIRTIO_IOMMU_S_NOENT`: entry not found.
    NoEnt = 6,
    /// `VIRTIO_IOMMU_S_FAULT`: bad address.
    Fault = 7,
    /// `VIRTIO_IOMMU_S_NOMEM`: insufficient resources.
    NoMem = 8,
}

/// `VIRTIO_IOMMU_ATTACH_F_BYPASS`: the domain is a bypass (identity) domain.
pub const VIRTIO_IOMMU_ATTACH_F_BYPASS: u32 = 1 << 0;

/// `VIRTIO_IOMMU_MAP_F_READ`: endpoints may read through the mapping.
pub const VIRTIO_IOMMU_MAP_F_READ: u32 = 1 << 0;
/// `VIRTIO_IOMMU_MAP_F_WRITE`: endpoints may write through the mapping.
pub const VIRTIO_IOMMU_MAP_F_WRITE: u32 = 1 << 1;
/// `VIRTIO_IOMMU_MAP_F_MMIO`: the mapping targets device registers (only
/// with `VIRTIO_IOMMU_F_MMIO`). Virtio 1.3 defines no EXEC map flag.
pub const VIRTIO_IOMMU_MAP_F_MMIO: u32 = 1 << 2;
/// Every MAP flag defined by the specification.
pub const VIRTIO_IOMMU_MAP_F_MASK: u32 =
    VIRTIO_IOMMU_MAP_F_READ | VIRTIO_IOMMU_MAP_F_WRITE | VIRTIO_IOMMU_MAP_F_MMIO;

/// `VIRTIO_IOMMU_PROBE_T_NONE`: end of the property list.
pub const VIRTIO_IOMMU_PROBE_T_NONE: u16 = 0;
/// `VIRTIO_IOMMU_PROBE_T_RESV_MEM`: a reserved memory region.
pub const VIRTIO_IOMMU_PROBE_T_RESV_MEM: u16 = 1;
/// `VIRTIO_IOMMU_RESV_MEM_T_RESERVED`: the driver must not map the region.
pub const VIRTIO_IOMMU_RESV_MEM_T_RESERVED: u8 = 0;
/// `VIRTIO_IOMMU_RESV_MEM_T_MSI`: the region is an MSI doorbell.
pub const VIRTIO_IOMMU_RESV_MEM_T_MSI: u8 = 1;

/// `VIRTIO_IOMMU_FAULT_R_UNKNOWN`: internal error or other reason.
pub const VIRTIO_IOMMU_FAULT_R_UNKNOWN: u8 = 0;
/// `VIRTIO_IOMMU_FAULT_R_DOMAIN`: the endpoint is not attached to a domain.
pub const VIRTIO_IOMMU_FAULT_R_DOMAIN: u8 = 1;
/// `VIRTIO_IOMMU_FAULT_R_MAPPING`: the address is not mapped, or the
/// mapping does not allow the access.
pub const VIRTIO_IOMMU_FAULT_R_MAPPING: u8 = 2;
/// `VIRTIO_IOMMU_FAULT_F_READ`: the faulting access was a read.
pub const VIRTIO_IOMMU_FAULT_F_READ: u32 = 1 << 0;
/// `VIRTIO_IOMMU_FAULT_F_WRITE`: the faulting access was a write.
pub const VIRTIO_IOMMU_FAULT_F_WRITE: u32 = 1 << 1;
/// `VIRTIO_IOMMU_FAULT_F_EXEC`: instruction fetch (Linux header only; this
/// device never reports it).
pub const VIRTIO_IOMMU_FAULT_F_EXEC: u32 = 1 << 2;
/// `VIRTIO_IOMMU_FAULT_F_ADDRESS`: `address` holds the faulting address.
pub const VIRTIO_IOMMU_FAULT_F_ADDRESS: u32 = 1 << 8;

/// `struct virtio_iommu_req_head`.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C, packed)]
pub struct ReqHead {
    /// Request type (`VIRTIO_IOMMU_T_*`).
    pub type_: u8,
    /// Ignored by the device.
    pub reserved: [u8; 3],
}

/// `struct virtio_iommu_req_tail`.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C, packed)]
pub struct ReqTail {
    /// A [`Status`] code.
    pub status: u8,
    /// Always zero.
    pub reserved: [u8; 3],
}

impl ReqTail {
    /// A tail carrying `status`, reserved bytes zero.
    pub fn new(status: Status) -> Self {
        Self {
            status: status as u8,
            reserved: [0; 3],
        }
    }
}

/// Body of `struct virtio_iommu_req_attach`.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C, packed)]
pub struct ReqAttach {
    /// Domain ID.
    pub domain: Le32,
    /// Endpoint ID.
    pub endpoint: Le32,
    /// `VIRTIO_IOMMU_ATTACH_F_*`.
    pub flags: Le32,
    /// Must be zero.
    pub reserved: [u8; 4],
}

/// Body of `struct virtio_iommu_req_detach`.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C, packed)]
pub struct ReqDetach {
    /// Domain ID.
    pub domain: Le32,
    /// Endpoint ID.
    pub endpoint: Le32,
    /// Ignored by the device.
    pub reserved: [u8; 8],
}

/// Body of `struct virtio_iommu_req_map`.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C, packed)]
pub struct ReqMap {
    /// Domain ID.
    pub domain: Le32,
    /// First IOVA of the mapping.
    pub virt_start: Le64,
    /// Last IOVA of the mapping (inclusive).
    pub virt_end: Le64,
    /// Guest-physical address `virt_start` maps to.
    pub phys_start: Le64,
    /// `VIRTIO_IOMMU_MAP_F_*`.
    pub flags: Le32,
}

/// Body of `struct virtio_iommu_req_unmap`.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C, packed)]
pub struct ReqUnmap {
    /// Domain ID.
    pub domain: Le32,
    /// First IOVA of the range.
    pub virt_start: Le64,
    /// Last IOVA of the range (inclusive).
    pub virt_end: Le64,
    /// Should be zero.
    pub reserved: [u8; 4],
}

/// Device-readable body of `struct virtio_iommu_req_probe`; the
/// device-writable part is `probe_size` bytes of properties, then the tail.
#[derive(Clone, Copy, Debug)]
#[repr(C, packed)]
pub struct ReqProbe {
    /// Endpoint ID.
    pub endpoint: Le32,
    /// Ignored by the device.
    pub reserved: [u8; 64],
}

impl Default for ReqProbe {
    fn default() -> Self {
        Self {
            endpoint: Le32::default(),
            reserved: [0; 64],
        }
    }
}

/// `struct virtio_iommu_probe_property` header.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C, packed)]
pub struct ProbeProperty {
    /// Property type in bits 0-11; bits 12-15 are reserved.
    pub type_: Le16,
    /// Size of the value following this header, in bytes.
    pub length: Le16,
}

/// `struct virtio_iommu_probe_resv_mem`, header included.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C, packed)]
pub struct ProbeResvMem {
    /// Header with type `VIRTIO_IOMMU_PROBE_T_RESV_MEM`.
    pub head: ProbeProperty,
    /// `VIRTIO_IOMMU_RESV_MEM_T_*`.
    pub subtype: u8,
    /// Zero.
    pub reserved: [u8; 3],
    /// First reserved IOVA.
    pub start: Le64,
    /// Last reserved IOVA (inclusive).
    pub end: Le64,
}

/// `struct virtio_iommu_fault`, one event-queue record.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C, packed)]
pub struct FaultRecord {
    /// `VIRTIO_IOMMU_FAULT_R_*`.
    pub reason: u8,
    /// Zero.
    pub reserved: [u8; 3],
    /// `VIRTIO_IOMMU_FAULT_F_*`.
    pub flags: Le32,
    /// Faulting endpoint.
    pub endpoint: Le32,
    /// Zero.
    pub reserved1: Le32,
    /// Faulting address, valid with `VIRTIO_IOMMU_FAULT_F_ADDRESS`.
    pub address: Le64,
}

/// `struct virtio_iommu_config`.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C, packed)]
pub struct Config {
    /// Supported page sizes; the lowest set bit is the map granule.
    pub page_size_mask: Le64,
    /// First usable IOVA.
    pub input_start: Le64,
    /// Last usable IOVA.
    pub input_end: Le64,
    /// First valid domain ID.
    pub domain_start: Le32,
    /// Last valid domain ID.
    pub domain_end: Le32,
    /// Size of the PROBE properties buffer.
    pub probe_size: Le32,
    /// Unattached endpoints bypass the IOMMU when 1.
    pub bypass: u8,
    /// Zero.
    pub reserved: [u8; 3],
}

/// Byte offset of [`Config::bypass`] in the configuration space.
pub const CONFIG_BYPASS_OFFSET: u64 = 36;

// SAFETY: plain integers and byte arrays only, packed so there is no padding;
// every bit pattern is a valid value.
unsafe impl ByteValued for ReqHead {}
// SAFETY: plain integers and byte arrays only, packed so there is no padding;
// every bit pattern is a valid value.
unsafe impl ByteValued for ReqTail {}
// SAFETY: plain integers and byte arrays only, packed so there is no padding;
// every bit pattern is a valid value.
unsafe impl ByteValued for ReqAttach {}
// SAFETY: plain integers and byte arrays only, packed so there is no padding;
// every bit pattern is a valid value.
unsafe impl ByteValued for ReqDetach {}
// SAFETY: plain integers and byte arrays only, packed so there is no padding;
// every bit pattern is a valid value.
unsafe impl ByteValued for ReqMap {}
// SAFETY: plain integers and byte arrays only, packed so there is no padding;
// every bit pattern is a valid value.
unsafe impl ByteValued for ReqUnmap {}
// SAFETY: plain integers and byte arrays only, packed so there is no padding;
// every bit pattern is a valid value.
unsafe impl ByteValued for ReqProbe {}
// SAFETY: plain integers and byte arrays only, packed so there is no padding;
// every bit pattern is a valid value.
unsafe impl ByteValued for ProbeProperty {}
// SAFETY: plain integers, byte arrays and a `ByteValued` header only, packed
// so there is no padding; every bit pattern is a valid value.
unsafe impl ByteValued for ProbeResvMem {}
// SAFETY: plain integers and byte arrays only, packed so there is no padding;
// every bit pattern is a valid value.
unsafe impl ByteValued for FaultRecord {}
// SAFETY: plain integers and byte arrays only, packed so there is no padding;
// every bit pattern is a valid value.
unsafe impl ByteValued for Config {}

#[cfg(test)]
mod tests {
    use std::mem::{offset_of, size_of};

    use super::*;

    #[test]
    fn wire_sizes_match_the_specification() {
        assert_eq!(size_of::<ReqHead>(), 4);
        assert_eq!(size_of::<ReqTail>(), 4);
        assert_eq!(size_of::<ReqAttach>(), 16);
        assert_eq!(size_of::<ReqDetach>(), 16);
        assert_eq!(size_of::<ReqMap>(), 32);
        assert_eq!(size_of::<ReqUnmap>(), 24);
        assert_eq!(size_of::<ReqProbe>(), 68);
        assert_eq!(size_of::<ProbeProperty>(), 4);
        assert_eq!(size_of::<ProbeResvMem>(), 24);
        assert_eq!(size_of::<FaultRecord>(), 24);
        assert_eq!(size_of::<Config>(), 40);
        assert_eq!(offset_of!(Config, bypass) as u64, CONFIG_BYPASS_OFFSET);
        assert_eq!(offset_of!(Config, probe_size), 32);
        assert_eq!(offset_of!(ReqMap, flags), 28);
        assert_eq!(offset_of!(FaultRecord, address), 16);
    }

    #[test]
    fn fault_record_bytes() {
        let rec = FaultRecord {
            reason: VIRTIO_IOMMU_FAULT_R_MAPPING,
            flags: (VIRTIO_IOMMU_FAULT_F_WRITE | VIRTIO_IOMMU_FAULT_F_ADDRESS).into(),
            endpoint: 0x0102_0304.into(),
            address: 0x1122_3344_5566_7788.into(),
            ..Default::default()
        };
        assert_eq!(
            rec.as_slice(),
            &[
                2, 0, 0, 0, 0x02, 0x01, 0, 0, 4, 3, 2, 1, 0, 0, 0, 0, 0x88, 0x77, 0x66, 0x55, 0x44,
                0x33, 0x22, 0x11
            ]
        );
    }
}
