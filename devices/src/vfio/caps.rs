//! Walking a passthrough device's capability list: where MSI-X lives, and
//! how to unlink MSI.

/// Capability ID of MSI.
pub const CAP_MSI: u8 = 0x05;
/// Capability ID of MSI-X.
pub const CAP_MSIX: u8 = 0x11;
/// Offset of the capabilities pointer in the header.
pub const CAP_POINTER: usize = 0x34;
const MAX_CAPS: usize = 48;

/// Where a device's MSI-X structures are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MsixLocation {
    /// Offset of the capability in config space.
    pub cap: usize,
    /// Number of vectors.
    pub vectors: u16,
    /// BAR holding the table.
    pub table_bar: usize,
    /// Offset of the table in that BAR.
    pub table_offset: u64,
    /// BAR holding the PBA.
    pub pba_bar: usize,
    /// Offset of the PBA in that BAR.
    pub pba_offset: u64,
}

impl MsixLocation {
    /// Table size in bytes.
    pub fn table_size(&self) -> u64 {
        u64::from(self.vectors) * 16
    }
    /// PBA size in bytes.
    pub fn pba_size(&self) -> u64 {
        u64::from(self.vectors).div_ceil(64) * 8
    }
}

/// A link to rewrite so a capability disappears from the list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unlink {
    /// Config-space byte holding the pointer to the hidden capability.
    pub pointer_at: usize,
    /// What that byte reads as instead (the hidden capability's next).
    pub points_to: u8,
}

/// What the capability walk found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Caps {
    /// MSI-X, if present.
    pub msix: Option<MsixLocation>,
    /// How to hide MSI, if present.
    pub hide_msi: Option<Unlink>,
    /// Offset and message control of the MSI capability, if present.
    pub msi: Option<(usize, u16)>,
}

fn byte(config: &[u8], at: usize) -> u8 {
    config.get(at).copied().unwrap_or(0)
}

fn dword(config: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([
        byte(config, at),
        byte(config, at + 1),
        byte(config, at + 2),
        byte(config, at + 3),
    ])
}

/// Walks the capability list of the 256-byte `config` (bounded, loop-safe).
pub fn walk(config: &[u8]) -> Caps {
    let mut caps = Caps::default();
    let mut pointer_at = CAP_POINTER;
    let mut at = usize::from(byte(config, CAP_POINTER) & 0xfc);
    let mut seen = 0;
    while at >= 0x40 && at < config.len() && seen < MAX_CAPS {
        seen += 1;
        let id = byte(config, at);
        let next = byte(config, at + 1) & 0xfc;
        match id {
            CAP_MSIX => {
                let control = u16::from_le_bytes([byte(config, at + 2), byte(config, at + 3)]);
                let table = dword(config, at + 4);
                let pba = dword(config, at + 8);
                caps.msix = Some(MsixLocation {
                    cap: at,
                    vectors: (control & 0x7ff) + 1,
                    table_bar: (table & 7) as usize,
                    table_offset: u64::from(table & !7),
                    pba_bar: (pba & 7) as usize,
                    pba_offset: u64::from(pba & !7),
                });
            }
            CAP_MSI if caps.hide_msi.is_none() => {
                let control = u16::from_le_bytes([byte(config, at + 2), byte(config, at + 3)]);
                caps.msi = Some((at, control));
                caps.hide_msi = Some(Unlink {
                    pointer_at,
                    points_to: next,
                });
                // The MSI capability's own link is skipped: the next
                // capability's predecessor is the pointer we rewrite.
                at = usize::from(next);
                continue;
            }
            _ => {}
        }
        pointer_at = at + 1;
        at = usize::from(next);
    }
    caps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_with(caps: &[(usize, u8, u8, &[u8])], first: u8) -> Vec<u8> {
        let mut c = vec![0u8; 256];
        c[CAP_POINTER] = first;
        for (at, id, next, body) in caps {
            c[*at] = *id;
            c[*at + 1] = *next;
            c[*at + 2..*at + 2 + body.len()].copy_from_slice(body);
        }
        c
    }

    #[test]
    fn finds_msix_and_unlinks_msi() {
        let msix_body = [0x03, 0x00, 0x03, 0x00, 0x00, 0x00, 0x03, 0x08, 0x00, 0x00];
        let c = config_with(
            &[
                (0x40, 0x01, 0x50, &[]),
                (0x50, CAP_MSI, 0x70, &[]),
                (0x70, CAP_MSIX, 0, &msix_body),
            ],
            0x40,
        );
        let caps = walk(&c);
        assert_eq!(
            caps.msix,
            Some(MsixLocation {
                cap: 0x70,
                vectors: 4,
                table_bar: 3,
                table_offset: 0,
                pba_bar: 3,
                pba_offset: 0x800,
            })
        );
        assert_eq!(
            caps.hide_msi,
            Some(Unlink {
                pointer_at: 0x41,
                points_to: 0x70
            })
        );
    }

    #[test]
    fn msi_first_in_the_list_rewrites_the_header_pointer() {
        let c = config_with(&[(0x40, CAP_MSI, 0x60, &[]), (0x60, 0x10, 0, &[])], 0x40);
        assert_eq!(
            walk(&c).hide_msi,
            Some(Unlink {
                pointer_at: CAP_POINTER,
                points_to: 0x60
            })
        );
    }

    #[test]
    fn loops_and_garbage_terminate() {
        let c = config_with(&[(0x40, 0x09, 0x40, &[])], 0x40);
        assert_eq!(walk(&c), Caps::default());
        let c = config_with(&[], 0x10);
        assert_eq!(walk(&c).msi, None);
        assert_eq!(walk(&c), Caps::default());
    }
}
