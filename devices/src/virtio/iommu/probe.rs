//! PROBE output: an endpoint's reserved regions encoded as RESV_MEM
//! properties, the rest of the `probe_size`-byte buffer zero-filled (a zero
//! header reads as a NONE property, which ends the list).

use vm_memory::ByteValued;

use super::domains::{ReservedKind, ReservedRegion};
use super::protocol::{
    ProbeProperty, ProbeResvMem, VIRTIO_IOMMU_PROBE_T_RESV_MEM, VIRTIO_IOMMU_RESV_MEM_T_MSI,
    VIRTIO_IOMMU_RESV_MEM_T_RESERVED,
};

/// Bytes one RESV_MEM property takes, header included.
pub const RESV_MEM_PROPERTY_SIZE: usize = std::mem::size_of::<ProbeResvMem>();

/// Smallest `probe_size` that holds `regions` and a terminating NONE
/// header.
pub fn required_probe_size(regions: &[ReservedRegion]) -> usize {
    regions
        .len()
        .saturating_mul(RESV_MEM_PROPERTY_SIZE)
        .saturating_add(std::mem::size_of::<ProbeProperty>())
}

/// The RESV_MEM property for `region`.
pub fn resv_mem_property(region: &ReservedRegion) -> ProbeResvMem {
    let value_len = RESV_MEM_PROPERTY_SIZE - std::mem::size_of::<ProbeProperty>();
    ProbeResvMem {
        head: ProbeProperty {
            type_: VIRTIO_IOMMU_PROBE_T_RESV_MEM.into(),
            length: (value_len as u16).into(),
        },
        subtype: match region.kind {
            ReservedKind::Reserved => VIRTIO_IOMMU_RESV_MEM_T_RESERVED,
            ReservedKind::Msi => VIRTIO_IOMMU_RESV_MEM_T_MSI,
        },
        reserved: [0; 3],
        start: region.start.into(),
        end: region.end.into(),
    }
}

/// The `probe_size` bytes of properties for an endpoint with `regions`, or
/// `None` when they do not fit (the device sizes `probe_size` so that this
/// cannot happen).
pub fn encode_properties(regions: &[ReservedRegion], probe_size: usize) -> Option<Vec<u8>> {
    if required_probe_size(regions) > probe_size {
        return None;
    }
    let mut out = Vec::with_capacity(probe_size);
    for region in regions {
        out.extend_from_slice(resv_mem_property(region).as_slice());
    }
    out.resize(probe_size, 0);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msi_and_reserved_properties() {
        let regions = [
            ReservedRegion {
                start: 0xfee0_0000,
                end: 0xfeef_ffff,
                kind: ReservedKind::Msi,
            },
            ReservedRegion {
                start: 0x1_0000_0000,
                end: 0x1_0000_0fff,
                kind: ReservedKind::Reserved,
            },
        ];
        let out = encode_properties(&regions, 64).expect("fits");
        let mut expected = vec![
            1, 0, 20, 0, // RESV_MEM, length 20
            1, 0, 0, 0, // MSI
            0, 0, 0xe0, 0xfe, 0, 0, 0, 0, // start
            0xff, 0xff, 0xef, 0xfe, 0, 0, 0, 0, // end
            1, 0, 20, 0, // RESV_MEM, length 20
            0, 0, 0, 0, // RESERVED
            0, 0, 0, 0, 1, 0, 0, 0, // start
            0xff, 0x0f, 0, 0, 1, 0, 0, 0, // end
        ];
        expected.resize(64, 0);
        assert_eq!(out, expected);
        assert_eq!(required_probe_size(&regions), 52);
        assert!(encode_properties(&regions, 51).is_none());
        assert_eq!(encode_properties(&[], 8), Some(vec![0; 8]));
    }
}
