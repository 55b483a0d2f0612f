//! MSI-X: the capability, the vector table and the pending-bit array, all
//! emulated (never mapped). Masking is honoured here: a vector's route is
//! only live while it is enabled and unmasked (so a passthrough device that
//! signals its irqfd directly cannot inject a masked vector), and a vector
//! an emulated device raises while masked sets its pending bit and is
//! delivered on unmask.

use std::sync::Arc;

/// PCI capability ID of MSI-X.
pub const MSIX_CAP_ID: u8 = 0x11;
/// Bytes per table entry.
pub const ENTRY_SIZE: u64 = 16;
const CTL_ENABLE: u16 = 1 << 15;
const CTL_FUNCTION_MASK: u16 = 1 << 14;
const VECTOR_CTL_MASKED: u32 = 1;

/// An MSI message: where and what the device writes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MsiMessage {
    /// Message address.
    pub addr: u64,
    /// Message data.
    pub data: u32,
}

/// Delivers a device's MSI-X vectors (the VMM backs this with KVM GSI
/// routes and irqfds).
pub trait MsixInterrupts: Send + Sync {
    /// Vector `vector` now targets `msg` (`None`: unprogrammed, disabled
    /// or masked).
    fn route(&self, vector: u16, msg: Option<MsiMessage>);
    /// MSI-X was enabled or disabled as a whole.
    fn enable(&self, _enabled: bool) {}
    /// Sends vector `vector` (it is unmasked and routed).
    fn fire(&self, vector: u16);
    /// Whether the back-end holds a signal for `vector` that arrived while
    /// it was not routed (an assigned device signalling a masked vector):
    /// it shows in the PBA and goes out when the vector is routed again.
    fn pending(&self, _vector: u16) -> bool {
        false
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Entry {
    addr_lo: u32,
    addr_hi: u32,
    data: u32,
    control: u32,
}

impl Entry {
    fn masked(&self) -> bool {
        self.control & VECTOR_CTL_MASKED != 0
    }
    fn message(&self) -> MsiMessage {
        MsiMessage {
            addr: (u64::from(self.addr_hi) << 32) | u64::from(self.addr_lo),
            data: self.data,
        }
    }
}

/// MSI-X state of one function.
pub struct MsixConfig {
    entries: Vec<Entry>,
    routed: Vec<Option<MsiMessage>>,
    pending: Vec<u64>,
    enabled: bool,
    function_masked: bool,
    interrupts: Arc<dyn MsixInterrupts>,
}

impl MsixConfig {
    /// `vectors` vectors (1..=2048), all masked, delivered through `interrupts`.
    pub fn new(vectors: u16, interrupts: Arc<dyn MsixInterrupts>) -> Self {
        let vectors = vectors.clamp(1, 2048);
        Self {
            entries: vec![
                Entry {
                    control: VECTOR_CTL_MASKED,
                    ..Default::default()
                };
                usize::from(vectors)
            ],
            routed: vec![None; usize::from(vectors)],
            pending: vec![0; usize::from(vectors).div_ceil(64)],
            enabled: false,
            function_masked: false,
            interrupts,
        }
    }

    /// Number of vectors.
    pub fn vectors(&self) -> u16 {
        self.entries.len() as u16
    }

    /// Table size in bytes.
    pub fn table_size(&self) -> u64 {
        self.entries.len() as u64 * ENTRY_SIZE
    }

    /// PBA size in bytes.
    pub fn pba_size(&self) -> u64 {
        self.pending.len() as u64 * 8
    }

    /// Capability body (after ID and next pointer): message control, table
    /// offset/BIR, PBA offset/BIR.
    pub fn capability_body(
        &self,
        table_bar: u8,
        table_offset: u32,
        pba_bar: u8,
        pba_offset: u32,
    ) -> [u8; 10] {
        let mut body = [0u8; 10];
        body[0..2].copy_from_slice(&(self.vectors() - 1).to_le_bytes());
        body[2..6].copy_from_slice(&(table_offset | u32::from(table_bar)).to_le_bytes());
        body[6..10].copy_from_slice(&(pba_offset | u32::from(pba_bar)).to_le_bytes());
        body
    }

    /// Whether MSI-X is enabled and not function-masked.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The message control word as the guest reads it.
    pub fn control(&self) -> u16 {
        let mut ctl = self.vectors() - 1;
        if self.enabled {
            ctl |= CTL_ENABLE;
        }
        if self.function_masked {
            ctl |= CTL_FUNCTION_MASK;
        }
        ctl
    }

    /// Guest wrote the message control word.
    pub fn set_control(&mut self, ctl: u16) {
        let was_enabled = self.enabled;
        self.enabled = ctl & CTL_ENABLE != 0;
        self.function_masked = ctl & CTL_FUNCTION_MASK != 0;
        if self.enabled && !was_enabled {
            self.interrupts.enable(true);
        }
        for v in 0..self.vectors() {
            self.update_route(v);
        }
        if !self.enabled && was_enabled {
            self.interrupts.enable(false);
        }
        self.deliver_pending();
    }

    /// Routes `vector` if it is deliverable and programmed, unroutes it
    /// otherwise; only changes reach the interrupt back-end.
    fn update_route(&mut self, vector: u16) {
        let v = usize::from(vector);
        let Some(entry) = self.entries.get(v) else {
            return;
        };
        let msg = (self.deliverable(vector) && entry.addr_lo != 0).then(|| entry.message());
        if self.routed.get(v) != Some(&msg) {
            if let Some(slot) = self.routed.get_mut(v) {
                *slot = msg;
            }
            self.interrupts.route(vector, msg);
        }
    }

    fn is_pending(&self, vector: u16) -> bool {
        let v = usize::from(vector);
        self.pending
            .get(v / 64)
            .is_some_and(|w| w & (1 << (v % 64)) != 0)
    }

    fn set_pending(&mut self, vector: u16, pending: bool) {
        let v = usize::from(vector);
        if let Some(w) = self.pending.get_mut(v / 64) {
            if pending {
                *w |= 1 << (v % 64);
            } else {
                *w &= !(1 << (v % 64));
            }
        }
    }

    fn deliverable(&self, vector: u16) -> bool {
        self.enabled
            && !self.function_masked
            && self
                .entries
                .get(usize::from(vector))
                .is_some_and(|e| !e.masked())
    }

    fn deliver_pending(&mut self) {
        for v in 0..self.vectors() {
            if self.is_pending(v) && self.deliverable(v) {
                self.set_pending(v, false);
                self.interrupts.fire(v);
            }
        }
    }

    /// The device raises `vector`: delivered now, or left pending if masked.
    pub fn trigger(&mut self, vector: u16) {
        if usize::from(vector) >= self.entries.len() || !self.enabled {
            log::debug!("msix: vector {vector} raised while MSI-X is off; dropped");
            return;
        }
        if self.deliverable(vector) {
            self.interrupts.fire(vector);
        } else {
            self.set_pending(vector, true);
        }
    }

    /// Guest read of the vector table.
    pub fn read_table(&self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        let Some(value) = self.table_field(offset, data.len()) else {
            return;
        };
        let bytes = value.to_le_bytes();
        data.copy_from_slice(&bytes[..data.len()]);
    }

    fn table_field(&self, offset: u64, len: usize) -> Option<u64> {
        if !(len == 4 || len == 8) || !offset.is_multiple_of(len as u64) {
            return None;
        }
        let entry = self.entries.get((offset / ENTRY_SIZE) as usize)?;
        let words = [entry.addr_lo, entry.addr_hi, entry.data, entry.control];
        let i = ((offset % ENTRY_SIZE) / 4) as usize;
        let low = u64::from(words[i]);
        Some(if len == 8 {
            low | (u64::from(words[i + 1]) << 32)
        } else {
            low
        })
    }

    /// Guest write of the vector table (4- or 8-byte aligned accesses).
    pub fn write_table(&mut self, offset: u64, data: &[u8]) {
        let len = data.len();
        if !(len == 4 || len == 8) || !offset.is_multiple_of(len as u64) {
            return;
        }
        let vector = (offset / ENTRY_SIZE) as usize;
        let Some(entry) = self.entries.get_mut(vector) else {
            return;
        };
        let before = *entry;
        for (k, chunk) in data.chunks(4).enumerate() {
            let mut word = [0u8; 4];
            word.copy_from_slice(chunk);
            let word = u32::from_le_bytes(word);
            match (offset % ENTRY_SIZE) / 4 + k as u64 {
                0 => entry.addr_lo = word,
                1 => entry.addr_hi = word,
                2 => entry.data = word,
                3 => entry.control = word & VECTOR_CTL_MASKED,
                _ => {}
            }
        }
        let after = *entry;
        let vector = vector as u16;
        if after != before {
            self.update_route(vector);
        }
        if before.masked() && !after.masked() {
            self.deliver_pending();
        }
    }

    /// Guest read of the pending-bit array: the vectors this model holds,
    /// and those whose back-end holds a signal (see
    /// [`MsixInterrupts::pending`]).
    pub fn read_pba(&self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if !(data.len() == 4 || data.len() == 8) || !offset.is_multiple_of(data.len() as u64) {
            return;
        }
        let index = (offset / 8) as usize;
        let Some(mut word) = self.pending.get(index).copied() else {
            return;
        };
        for bit in 0..64u16 {
            let vector = index as u64 * 64 + u64::from(bit);
            let Ok(vector) = u16::try_from(vector) else {
                break;
            };
            if vector >= self.vectors() {
                break;
            }
            let routed = self
                .routed
                .get(usize::from(vector))
                .is_some_and(Option::is_some);
            if !routed && self.interrupts.pending(vector) {
                word |= 1 << bit;
            }
        }
        let bytes = word.to_le_bytes();
        let start = (offset % 8) as usize;
        data.copy_from_slice(&bytes[start..start + data.len()]);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[derive(Default)]
    struct Recorder {
        routes: Mutex<Vec<(u16, Option<MsiMessage>)>>,
        fired: Mutex<Vec<u16>>,
    }

    impl MsixInterrupts for Recorder {
        fn route(&self, vector: u16, msg: Option<MsiMessage>) {
            self.routes.lock().expect("lock").push((vector, msg));
        }
        fn fire(&self, vector: u16) {
            self.fired.lock().expect("lock").push(vector);
        }
    }

    fn msix() -> (MsixConfig, Arc<Recorder>) {
        let r = Arc::new(Recorder::default());
        (MsixConfig::new(4, r.clone()), r)
    }

    fn program(m: &mut MsixConfig, v: u64, addr: u32, data: u32) {
        m.write_table(v * 16, &addr.to_le_bytes());
        m.write_table(v * 16 + 4, &0u32.to_le_bytes());
        m.write_table(v * 16 + 8, &data.to_le_bytes());
    }

    #[test]
    fn vectors_start_masked_and_fire_after_unmask() {
        let (mut m, r) = msix();
        m.set_control(CTL_ENABLE);
        program(&mut m, 1, 0xfee0_0000, 0x41);
        m.trigger(1);
        assert!(r.fired.lock().expect("lock").is_empty());
        let mut pba = [0u8; 8];
        m.read_pba(0, &mut pba);
        assert_eq!(pba[0], 0b10, "pending bit set while masked");
        m.write_table(16 + 12, &0u32.to_le_bytes());
        assert_eq!(
            *r.fired.lock().expect("lock"),
            vec![1],
            "pending vector delivered on unmask"
        );
        m.read_pba(0, &mut pba);
        assert_eq!(pba[0], 0);
        m.trigger(1);
        assert_eq!(*r.fired.lock().expect("lock"), vec![1, 1]);
        let routes = r.routes.lock().expect("lock");
        assert_eq!(
            routes.last(),
            Some(&(
                1,
                Some(MsiMessage {
                    addr: 0xfee0_0000,
                    data: 0x41
                })
            ))
        );
    }

    #[test]
    fn masking_a_vector_removes_its_route() {
        let (mut m, r) = msix();
        m.set_control(CTL_ENABLE);
        program(&mut m, 0, 0xfee0_0000, 0x30);
        m.write_table(12, &0u32.to_le_bytes());
        m.write_table(12, &1u32.to_le_bytes());
        m.set_control(0);
        let msg = MsiMessage {
            addr: 0xfee0_0000,
            data: 0x30,
        };
        assert_eq!(
            *r.routes.lock().expect("lock"),
            vec![(0, Some(msg)), (0, None)]
        );
    }

    #[test]
    fn function_mask_holds_everything() {
        let (mut m, r) = msix();
        m.set_control(CTL_ENABLE | CTL_FUNCTION_MASK);
        program(&mut m, 0, 0xfee0_0000, 0x30);
        m.write_table(12, &0u32.to_le_bytes());
        m.trigger(0);
        assert!(r.fired.lock().expect("lock").is_empty());
        m.set_control(CTL_ENABLE);
        assert_eq!(*r.fired.lock().expect("lock"), vec![0]);
    }

    #[test]
    fn disabled_msix_drops_and_bad_accesses_are_ignored() {
        let (mut m, r) = msix();
        m.trigger(0);
        m.trigger(999);
        m.write_table(3, &[1, 2, 3, 4]);
        m.write_table(4 * 16, &[0; 4]);
        m.write_table(0, &[0; 2]);
        let mut b = [0xaau8; 4];
        m.read_table(1000, &mut b);
        assert_eq!(b, [0; 4]);
        assert!(r.fired.lock().expect("lock").is_empty());
    }

    #[test]
    fn table_reads_back_what_was_written() {
        let (mut m, _) = msix();
        program(&mut m, 2, 0xfee0_1000, 0x55);
        let mut b = [0u8; 8];
        m.read_table(32, &mut b);
        assert_eq!(u64::from_le_bytes(b), 0xfee0_1000);
        let mut c = [0u8; 4];
        m.read_table(32 + 12, &mut c);
        assert_eq!(u32::from_le_bytes(c), 1, "still masked");
        assert_eq!(m.control(), 3);
    }

    /// A back-end holding signals for unrouted vectors (as an assigned
    /// device's eventfd does while the vector is masked).
    struct Holding(Mutex<Vec<u16>>);

    impl MsixInterrupts for Holding {
        fn route(&self, vector: u16, msg: Option<MsiMessage>) {
            if msg.is_some() {
                self.0.lock().expect("lock").retain(|v| *v != vector);
            }
        }
        fn fire(&self, _vector: u16) {}
        fn pending(&self, vector: u16) -> bool {
            self.0.lock().expect("lock").contains(&vector)
        }
    }

    #[test]
    fn the_pba_shows_signals_the_back_end_holds_for_masked_vectors() {
        let held = Arc::new(Holding(Mutex::new(vec![2])));
        let mut m = MsixConfig::new(4, held.clone());
        m.set_control(CTL_ENABLE);
        program(&mut m, 2, 0xfee0_0000, 0x40);
        let mut pba = [0u8; 8];
        m.read_pba(0, &mut pba);
        assert_eq!(pba[0], 0b100, "masked vector 2 is pending");
        m.write_table(2 * 16 + 12, &0u32.to_le_bytes());
        m.read_pba(0, &mut pba);
        assert_eq!(pba[0], 0, "unmasked: routed, delivered by the back-end");
    }
}
