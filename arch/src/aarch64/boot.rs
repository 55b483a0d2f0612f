//! The arm64 Linux boot protocol's placement (Documentation/arch/arm64/
//! booting.rst): the Image at the start of RAM plus its `text_offset`, the
//! device tree (at most 2 MiB, 8-byte aligned) after the whole image
//! including its BSS (`image_size`), then the initrd, all in the first RAM
//! range (within one 32 GiB window with the kernel, as the protocol asks).
//! Only the arithmetic lives here; reading the Image into guest memory is
//! linux-loader's.

use super::layout::FDT_MAX_SIZE;
use crate::RamRegion;

/// The Image header's magic, "ARM\x64", at offset 56.
const IMAGE_MAGIC: u32 = 0x644d_5241;
/// Bytes of the Image header.
pub const IMAGE_HEADER_SIZE: usize = 64;
/// Alignment of the kernel's load address.
const KERNEL_ALIGN: u64 = 2 << 20;
/// `text_offset` of kernels whose header says `image_size` 0 (before 3.17).
const LEGACY_TEXT_OFFSET: u64 = 0x8_0000;

/// Why a guest cannot be laid out for boot.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum BootError {
    /// Not an arm64 Image.
    #[error("not an arm64 Linux Image (no 'ARM\\x64' magic in its header): give the kernel's uncompressed Image (Debian's arm64 vmlinuz is one)")]
    NotAnImage,
    /// The kernel, device tree and initrd do not fit.
    #[error("the kernel ({kernel_mib} MiB with its BSS), device tree and initrd ({initrd_mib} MiB) do not fit in the first {ram_mib} MiB of guest RAM: give more --memory")]
    DoesNotFit {
        /// Kernel MiB.
        kernel_mib: u64,
        /// Initrd MiB.
        initrd_mib: u64,
        /// MiB of the first RAM range.
        ram_mib: u64,
    },
}

/// What the Image header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageHeader {
    /// Offset from a 2 MiB-aligned base where the Image must be loaded.
    pub text_offset: u64,
    /// Bytes the kernel occupies from its load address, BSS included.
    pub image_size: u64,
}

impl ImageHeader {
    /// Parses the first 64 bytes of an Image; `file_size` stands in for
    /// an `image_size` of 0 (old kernels).
    pub fn parse(bytes: &[u8; IMAGE_HEADER_SIZE], file_size: u64) -> Result<Self, BootError> {
        let u64_at = |o: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[o..o + 8]);
            u64::from_le_bytes(b)
        };
        let magic = u32::from_le_bytes([bytes[56], bytes[57], bytes[58], bytes[59]]);
        if magic != IMAGE_MAGIC {
            return Err(BootError::NotAnImage);
        }
        let image_size = u64_at(16);
        Ok(if image_size == 0 {
            Self {
                text_offset: LEGACY_TEXT_OFFSET,
                image_size: file_size,
            }
        } else {
            Self {
                text_offset: u64_at(8),
                image_size,
            }
        })
    }
}

/// Where everything goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootLayout {
    /// The 2 MiB-aligned base the Image is loaded at (plus `text_offset`).
    pub kernel_base: u64,
    /// The kernel's entry point: its first byte.
    pub entry: u64,
    /// The device tree's address.
    pub fdt: u64,
    /// The initrd's address and size.
    pub initrd: Option<(u64, u64)>,
}

/// Places the kernel, the device tree and an initrd of `initrd_size`
/// bytes in the first range of `ram`.
pub fn place(
    ram: &[RamRegion],
    header: &ImageHeader,
    initrd_size: Option<u64>,
) -> Result<BootLayout, BootError> {
    let first = ram.first().copied().unwrap_or(RamRegion {
        start: vm_memory::GuestAddress(0),
        size: 0,
    });
    let mib = |b: u64| b.div_ceil(1 << 20);
    let does_not_fit = BootError::DoesNotFit {
        kernel_mib: mib(header.image_size),
        initrd_mib: mib(initrd_size.unwrap_or(0)),
        ram_mib: first.size >> 20,
    };
    let kernel_base = first.start.0.next_multiple_of(KERNEL_ALIGN);
    let entry = kernel_base
        .checked_add(header.text_offset)
        .ok_or_else(|| does_not_fit.clone())?;
    let kernel_end = entry
        .checked_add(header.image_size)
        .ok_or_else(|| does_not_fit.clone())?;
    let fdt = kernel_end.next_multiple_of(KERNEL_ALIGN);
    let initrd_start = fdt + FDT_MAX_SIZE;
    let end = initrd_start
        .checked_add(initrd_size.unwrap_or(0))
        .ok_or_else(|| does_not_fit.clone())?;
    if end > first.end() {
        return Err(does_not_fit);
    }
    Ok(BootLayout {
        kernel_base,
        entry,
        fdt,
        initrd: initrd_size.map(|size| (initrd_start, size)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::GuestAddress;

    fn header(text_offset: u64, image_size: u64) -> [u8; IMAGE_HEADER_SIZE] {
        let mut b = [0u8; IMAGE_HEADER_SIZE];
        b[8..16].copy_from_slice(&text_offset.to_le_bytes());
        b[16..24].copy_from_slice(&image_size.to_le_bytes());
        b[56..60].copy_from_slice(&IMAGE_MAGIC.to_le_bytes());
        b
    }

    const RAM: [RamRegion; 1] = [RamRegion {
        start: GuestAddress(0x4000_0000),
        size: 512 << 20,
    }];

    #[test]
    fn debian_image_kernel_fdt_initrd_in_order() {
        // The pinned Debian 6.12 arm64 Image: text_offset 0, 43.2 MiB.
        let h = ImageHeader::parse(&header(0, 0x2b3_0000), 44_210_688).expect("header");
        let l = place(&RAM, &h, Some(30 << 20)).expect("fits");
        assert_eq!(l.entry, 0x4000_0000);
        assert_eq!(l.fdt, 0x42c0_0000, "2 MiB above the kernel's BSS");
        assert_eq!(l.initrd, Some((0x42e0_0000, 30 << 20)));
        assert_eq!(l.fdt % 8, 0);
    }

    #[test]
    fn old_headers_and_bad_magic() {
        let h = ImageHeader::parse(&header(0, 0), 0x100_0000).expect("header");
        assert_eq!(h.text_offset, 0x8_0000);
        assert_eq!(h.image_size, 0x100_0000);
        let mut bad = header(0, 1);
        bad[56] = b'X';
        assert_eq!(ImageHeader::parse(&bad, 0), Err(BootError::NotAnImage));
    }

    #[test]
    fn too_big_an_initrd_is_refused() {
        let h = ImageHeader::parse(&header(0, 40 << 20), 0).expect("header");
        let err = place(&RAM, &h, Some(500 << 20)).expect_err("too big");
        assert!(err.to_string().contains("give more --memory"), "{err}");
    }
}
