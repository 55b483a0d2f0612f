//! The virtio-blk configuration space (`struct virtio_blk_config`),
//! little-endian, as the driver reads it. Only the fields of offered
//! features are filled in (capacity, `seg_max`, `blk_size`); the rest read as
//! zero. The space is read-only: `VIRTIO_BLK_F_CONFIG_WCE` is not offered.

use std::mem::{offset_of, size_of};

use virtio_bindings::virtio_blk::virtio_blk_config;

/// The bytes of a virtio-blk configuration space.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ConfigSpace {
    bytes: [u8; size_of::<virtio_blk_config>()],
}

impl ConfigSpace {
    /// A configuration for a disk of `capacity` sectors taking up to
    /// `seg_max` data segments per request, with `blk_size`-byte blocks.
    pub fn new(capacity: u64, seg_max: u32, blk_size: u32) -> Self {
        let mut space = Self {
            bytes: [0; size_of::<virtio_blk_config>()],
        };
        space.put(
            offset_of!(virtio_blk_config, capacity),
            &capacity.to_le_bytes(),
        );
        space.put(
            offset_of!(virtio_blk_config, seg_max),
            &seg_max.to_le_bytes(),
        );
        space.put(
            offset_of!(virtio_blk_config, blk_size),
            &blk_size.to_le_bytes(),
        );
        space
    }

    fn put(&mut self, offset: usize, value: &[u8]) {
        if let Some(dst) = self.bytes.get_mut(offset..offset + value.len()) {
            dst.copy_from_slice(value);
        }
    }

    /// Fills `data` with the bytes at `offset`; bytes past the end of the
    /// structure read as zero.
    pub fn read(&self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        let Ok(start) = usize::try_from(offset) else {
            return;
        };
        let Some(src) = self.bytes.get(start..) else {
            return;
        };
        let n = src.len().min(data.len());
        if let (Some(dst), Some(src)) = (data.get_mut(..n), src.get(..n)) {
            dst.copy_from_slice(src);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_and_bounds() {
        let space = ConfigSpace::new(0x1122_3344_5566_7788, 254, 512);
        let mut capacity = [0u8; 8];
        space.read(0, &mut capacity);
        assert_eq!(u64::from_le_bytes(capacity), 0x1122_3344_5566_7788);
        let mut seg_max = [0u8; 4];
        space.read(12, &mut seg_max);
        assert_eq!(u32::from_le_bytes(seg_max), 254);
        let mut blk_size = [0u8; 4];
        space.read(20, &mut blk_size);
        assert_eq!(u32::from_le_bytes(blk_size), 512);
        // One byte in the middle of a field.
        let mut byte = [0xffu8; 1];
        space.read(21, &mut byte);
        assert_eq!(byte, [2]);
        // Straddling the end, and wholly past it.
        let mut tail = [0xffu8; 8];
        space.read(size_of::<virtio_blk_config>() as u64 - 4, &mut tail);
        assert_eq!(tail, [0; 8]);
        let mut far = [0xffu8; 4];
        space.read(u64::MAX, &mut far);
        assert_eq!(far, [0; 4]);
    }
}
