//! Segment descriptors for the boot GDT, and their KVM register form.

use kvm_bindings::kvm_segment;

/// A flat segment descriptor, as the boot code needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Descriptor {
    /// Segment base.
    pub base: u32,
    /// 20-bit limit, in pages when `granularity` is set.
    pub limit: u32,
    /// Access byte: present, DPL, S and the 4-bit type.
    pub access: u8,
    /// 4-bit flags: granularity (8), default size (4), long mode (2), AVL (1).
    pub flags: u8,
}

/// Flags nibble: limit counted in 4 KiB pages.
const FLAG_GRANULARITY: u8 = 0x8;
/// Flags nibble: 32-bit default operand size.
const FLAG_DEFAULT_SIZE: u8 = 0x4;
/// Flags nibble: 64-bit code segment.
const FLAG_LONG: u8 = 0x2;

impl Descriptor {
    /// The null descriptor.
    pub const NULL: Self = Self {
        base: 0,
        limit: 0,
        access: 0,
        flags: 0,
    };
    /// Flat 64-bit code: present, ring 0, execute/read, accessed.
    pub const CODE64: Self = Self {
        base: 0,
        limit: 0xfffff,
        access: 0x9b,
        flags: FLAG_GRANULARITY | FLAG_LONG,
    };
    /// Flat data: present, ring 0, read/write, accessed.
    pub const DATA: Self = Self {
        base: 0,
        limit: 0xfffff,
        access: 0x93,
        flags: FLAG_GRANULARITY | FLAG_DEFAULT_SIZE,
    };
    /// A busy 64-bit TSS with no backing (KVM needs a valid TR).
    pub const TSS: Self = Self {
        base: 0,
        limit: 0xfffff,
        access: 0x8b,
        flags: 0,
    };

    /// The 8-byte descriptor as it sits in the GDT.
    pub fn encode(&self) -> u64 {
        let base = u64::from(self.base);
        let limit = u64::from(self.limit);
        (limit & 0xffff)
            | ((base & 0xff_ffff) << 16)
            | (u64::from(self.access) << 40)
            | (((limit >> 16) & 0xf) << 48)
            | (u64::from(self.flags & 0xf) << 52)
            | (((base >> 24) & 0xff) << 56)
    }

    /// The descriptor as KVM's segment register for `selector`.
    pub fn to_kvm_segment(&self, selector: u16) -> kvm_segment {
        let granular = self.flags & FLAG_GRANULARITY != 0;
        let limit = if granular {
            (self.limit << 12) | 0xfff
        } else {
            self.limit
        };
        kvm_segment {
            base: u64::from(self.base),
            limit,
            selector,
            type_: self.access & 0xf,
            present: (self.access >> 7) & 1,
            dpl: (self.access >> 5) & 3,
            db: u8::from(self.flags & FLAG_DEFAULT_SIZE != 0),
            s: (self.access >> 4) & 1,
            l: u8::from(self.flags & FLAG_LONG != 0),
            g: u8::from(granular),
            avl: self.flags & 1,
            unusable: u8::from(self.access & 0x80 == 0),
            padding: 0,
        }
    }
}

/// The boot GDT: selector 0x10 is `__BOOT_CS`, 0x18 `__BOOT_DS`, 0x20 the TSS.
pub const BOOT_GDT: [Descriptor; 5] = [
    Descriptor::NULL,
    Descriptor::NULL,
    Descriptor::CODE64,
    Descriptor::DATA,
    Descriptor::TSS,
];

/// Selector of the boot code segment.
pub const BOOT_CS: u16 = 0x10;
/// Selector of the boot data segment.
pub const BOOT_DS: u16 = 0x18;
/// Selector of the boot TSS.
pub const BOOT_TSS: u16 = 0x20;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code64_encodes_like_the_architecture_manual_says() {
        // Flat 64-bit ring-0 code: limit 0xfffff, access 0x9b, G and L set.
        assert_eq!(Descriptor::CODE64.encode(), 0x00af_9b00_0000_ffff);
        assert_eq!(Descriptor::DATA.encode(), 0x00cf_9300_0000_ffff);
    }

    #[test]
    fn base_and_limit_are_split_across_the_descriptor() {
        let d = Descriptor {
            base: 0x1234_5678,
            limit: 0xa_bcde,
            access: 0x93,
            flags: 0,
        };
        assert_eq!(d.encode(), 0x120a_9334_5678_bcde);
    }

    #[test]
    fn kvm_segment_of_code64() {
        let s = Descriptor::CODE64.to_kvm_segment(BOOT_CS);
        assert_eq!((s.base, s.limit, s.selector), (0, 0xffff_ffff, BOOT_CS));
        assert_eq!(
            (s.type_, s.present, s.dpl, s.s, s.l, s.db, s.g),
            (0xb, 1, 0, 1, 1, 0, 1)
        );
        assert_eq!(s.unusable, 0);
    }
}
