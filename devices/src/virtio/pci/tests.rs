use std::sync::{Arc, Mutex};

use virtio_queue::{Queue, QueueT};

use super::*;
use crate::pci::MsiMessage;
use crate::virtio::ActivateError;

#[derive(Default)]
struct Calls {
    acked: Option<u64>,
    activated: Vec<(usize, u16, u64)>,
    processed: Vec<usize>,
    resets: usize,
    interrupt: Option<Arc<dyn VirtioInterrupt>>,
}

struct FakeDevice {
    calls: Arc<Mutex<Calls>>,
}

const OFFERED: u64 = VIRTIO_F_VERSION_1 | 1;

impl VirtioDevice for FakeDevice {
    fn device_type(&self) -> u32 {
        2
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &[256, 64]
    }
    fn device_features(&self) -> u64 {
        OFFERED
    }
    fn set_acked_features(&mut self, features: u64) {
        self.calls.lock().expect("lock").acked = Some(features);
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        data.fill(offset as u8);
    }
    fn write_config(&mut self, _offset: u64, _data: &[u8]) {}
    fn activate(
        &mut self,
        queues: Vec<(usize, Queue)>,
        interrupt: Arc<dyn VirtioInterrupt>,
    ) -> Result<(), ActivateError> {
        let mut c = self.calls.lock().expect("lock");
        c.activated = queues
            .iter()
            .map(|(i, q)| (*i, q.size(), q.desc_table()))
            .collect();
        c.interrupt = Some(interrupt);
        Ok(())
    }
    fn process_queue(&mut self, index: usize) {
        self.calls.lock().expect("lock").processed.push(index);
    }
    fn reset(&mut self) {
        self.calls.lock().expect("lock").resets += 1;
    }
}

#[derive(Default)]
struct Msi {
    fired: Mutex<Vec<u16>>,
}

impl MsixInterrupts for Msi {
    fn route(&self, _vector: u16, _msg: Option<MsiMessage>) {}
    fn fire(&self, vector: u16) {
        self.fired.lock().expect("lock").push(vector);
    }
}

const BAR: u64 = 0x10_0000_0000;

fn transport() -> (VirtioPciDevice, Arc<Mutex<Calls>>, Arc<Msi>) {
    let calls = Arc::new(Mutex::new(Calls::default()));
    let msi = Arc::new(Msi::default());
    let dev = VirtioPciDevice::new(
        Arc::new(Mutex::new(FakeDevice {
            calls: calls.clone(),
        })),
        BAR,
        msi.clone(),
        NotifyMode::InVcpu,
    )
    .expect("transport");
    (dev, calls, msi)
}

fn w(d: &mut VirtioPciDevice, offset: u64, value: u64, len: usize) {
    d.write_bar(0, offset, &value.to_le_bytes()[..len]);
}

fn r(d: &mut VirtioPciDevice, offset: u64, len: usize) -> u64 {
    let mut b = [0u8; 8];
    d.read_bar(0, offset, &mut b[..len]);
    u64::from_le_bytes(b)
}

fn negotiate(d: &mut VirtioPciDevice, features: u64) -> u8 {
    w(d, 0x14, u64::from(STATUS_ACKNOWLEDGE | STATUS_DRIVER), 1);
    w(d, 0x08, 0, 4);
    w(d, 0x0c, features & 0xffff_ffff, 4);
    w(d, 0x08, 1, 4);
    w(d, 0x0c, features >> 32, 4);
    w(
        d,
        0x14,
        u64::from(STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK),
        1,
    );
    r(d, 0x14, 1) as u8
}

fn setup_queue(d: &mut VirtioPciDevice, q: u64, size: u64, base: u64) {
    w(d, 0x16, q, 2);
    w(d, 0x18, size, 2);
    w(d, 0x20, base, 8);
    w(d, 0x28, base + 0x1000, 4);
    w(d, 0x2c, 0, 4);
    w(d, 0x30, base + 0x2000, 8);
    w(d, 0x1a, q, 2);
    w(d, 0x1c, 1, 2);
}

#[test]
fn device_features_are_visible_by_halves() {
    let (mut d, _, _) = transport();
    w(&mut d, 0x00, 0, 4);
    assert_eq!(r(&mut d, 0x04, 4), 1);
    w(&mut d, 0x00, 1, 4);
    assert_eq!(r(&mut d, 0x04, 4), 1, "VERSION_1 is bit 32");
    assert_eq!(r(&mut d, 0x12, 2), 2, "num_queues");
}

#[test]
fn features_not_offered_are_refused() {
    let (mut d, calls, _) = transport();
    let status = negotiate(&mut d, OFFERED | (1 << 5));
    assert_eq!(status & STATUS_FEATURES_OK, 0);
    assert_eq!(calls.lock().expect("lock").acked, None);
    // Without VERSION_1, refused too.
    let (mut d, _, _) = transport();
    assert_eq!(negotiate(&mut d, 1) & STATUS_FEATURES_OK, 0);
}

#[test]
fn driver_ok_activates_enabled_queues() {
    let (mut d, calls, _) = transport();
    assert_ne!(negotiate(&mut d, OFFERED) & STATUS_FEATURES_OK, 0);
    assert_eq!(calls.lock().expect("lock").acked, Some(OFFERED));
    setup_queue(&mut d, 0, 128, 0x10_0000);
    w(&mut d, 0x14, 0x0f, 1);
    assert_eq!(r(&mut d, 0x14, 1), 0x0f);
    assert_eq!(
        calls.lock().expect("lock").activated,
        vec![(0, 128, 0x10_0000)]
    );
    // Queue configuration is frozen after DRIVER_OK.
    w(&mut d, 0x16, 0, 2);
    w(&mut d, 0x18, 16, 2);
    assert_eq!(r(&mut d, 0x18, 2), 128);
}

#[test]
fn bad_queue_size_is_refused_and_bad_address_needs_reset() {
    let (mut d, calls, _) = transport();
    negotiate(&mut d, OFFERED);
    w(&mut d, 0x16, 0, 2);
    w(&mut d, 0x18, 100, 2);
    assert_eq!(r(&mut d, 0x18, 2), 256, "not a power of two");
    w(&mut d, 0x18, 512, 2);
    assert_eq!(r(&mut d, 0x18, 2), 256, "above the maximum");
    setup_queue(&mut d, 0, 64, 0x10_0003); // descriptor table misaligned
    w(&mut d, 0x14, 0x0f, 1);
    assert_ne!(r(&mut d, 0x14, 1) as u8 & STATUS_NEEDS_RESET, 0);
    assert!(calls.lock().expect("lock").activated.is_empty());
}

#[test]
fn notify_processes_the_queue_only_when_active() {
    let (mut d, calls, _) = transport();
    w(&mut d, NOTIFY_OFFSET, 0, 2);
    assert!(calls.lock().expect("lock").processed.is_empty());
    negotiate(&mut d, OFFERED);
    setup_queue(&mut d, 1, 64, 0x20_0000);
    w(&mut d, 0x14, 0x0f, 1);
    w(&mut d, NOTIFY_OFFSET + u64::from(NOTIFY_MULTIPLIER), 1, 2);
    w(&mut d, NOTIFY_OFFSET + 40, 10, 2);
    assert_eq!(calls.lock().expect("lock").processed, vec![1]);
}

#[test]
fn interrupts_go_to_the_queue_vector_and_isr_clears_on_read() {
    let (mut d, calls, msi) = transport();
    // Enable MSI-X and unmask vector 1.
    let cap = d.msix_cap_reg();
    d.write_config_register(cap, 2, &0x8000u16.to_le_bytes());
    w(&mut d, MSIX_TABLE_OFFSET + 16, 0xfee0_0000, 4);
    w(&mut d, MSIX_TABLE_OFFSET + 16 + 12, 0, 4);
    negotiate(&mut d, OFFERED);
    setup_queue(&mut d, 1, 64, 0x20_0000);
    w(&mut d, 0x14, 0x0f, 1);
    let interrupt = calls
        .lock()
        .expect("lock")
        .interrupt
        .clone()
        .expect("activated");
    interrupt.notify_queue(1);
    assert_eq!(*msi.fired.lock().expect("lock"), vec![1]);
    assert_eq!(r(&mut d, ISR_OFFSET, 1), 1);
    assert_eq!(r(&mut d, ISR_OFFSET, 1), 0);
    assert_eq!(d.read_config_register(cap) >> 16, 0x8000 | 2);
}

#[test]
fn out_of_range_vectors_read_back_as_no_vector() {
    let (mut d, _, _) = transport();
    w(&mut d, 0x10, 7, 2);
    assert_eq!(r(&mut d, 0x10, 2), u64::from(NO_VECTOR));
    w(&mut d, 0x10, 2, 2);
    assert_eq!(r(&mut d, 0x10, 2), 2);
}

#[test]
fn writing_zero_resets() {
    let (mut d, calls, _) = transport();
    negotiate(&mut d, OFFERED);
    setup_queue(&mut d, 0, 64, 0x10_0000);
    w(&mut d, 0x14, 0x0f, 1);
    w(&mut d, 0x14, 0, 1);
    assert_eq!(r(&mut d, 0x14, 1), 0);
    assert_eq!(calls.lock().expect("lock").resets, 1);
    w(&mut d, 0x16, 0, 2);
    assert_eq!(r(&mut d, 0x1c, 2), 0, "queue disabled after reset");
}

#[test]
fn capabilities_describe_bar0() {
    let (mut d, _, _) = transport();
    let mut cap = (d.read_config_register(0xd) & 0xff) as usize;
    let mut types = Vec::new();
    while cap != 0 {
        let head = d.read_config_register(cap / 4);
        if head & 0xff == u32::from(CAP_VENDOR) {
            types.push(((head >> 24) & 0xff) as u8);
            assert_eq!(
                (d.read_config_register(cap / 4 + 1) & 0xff) as usize,
                BAR_INDEX
            );
        }
        cap = ((head >> 8) & 0xff) as usize;
    }
    assert_eq!(
        types,
        vec![
            CFG_COMMON,
            CFG_NOTIFY,
            CFG_ISR,
            CFG_DEVICE,
            cfg_window::CFG_PCI
        ]
    );
    assert_eq!(d.read_config_register(0), 0x1042_1af4);
}

#[test]
fn port_notify_mode_puts_notify_in_an_io_bar() {
    let calls = Arc::new(Mutex::new(Calls::default()));
    let mut d = VirtioPciDevice::new(
        Arc::new(Mutex::new(FakeDevice {
            calls: calls.clone(),
        })),
        BAR,
        Arc::new(Msi::default()),
        NotifyMode::InVcpuPort(0x1040),
    )
    .expect("transport");
    assert_eq!(
        d.read_config_register(4 + IO_NOTIFY_BAR),
        0x1041,
        "I/O BAR at 0x1040"
    );
    // The notify capability (second vendor capability) names BAR 2.
    let common = (d.read_config_register(0xd) & 0xff) as usize;
    let notify = ((d.read_config_register(common / 4) >> 8) & 0xff) as usize;
    let head = d.read_config_register(notify / 4);
    assert_eq!((head >> 24) & 0xff, u32::from(CFG_NOTIFY));
    assert_eq!(
        d.read_config_register(notify / 4 + 1) & 0xff,
        IO_NOTIFY_BAR as u32
    );
    negotiate(&mut d, OFFERED);
    setup_queue(&mut d, 1, 64, 0x20_0000);
    w(&mut d, 0x14, 0x0f, 1);
    d.write_bar(IO_NOTIFY_BAR, 4, &[1, 0]);
    d.write_bar(IO_NOTIFY_BAR, 0, &[0, 0]);
    assert_eq!(
        calls.lock().expect("lock").processed,
        vec![1],
        "queue 0 is not enabled"
    );
}

#[test]
fn any_bar_access_of_any_width_is_survived() {
    let (mut d, _, _) = transport();
    negotiate(&mut d, OFFERED);
    let mut next = crate::test_rng::xorshift(0x2545_f491_4f6c_dd1du64);
    for _ in 0..20_000 {
        let offset = next() % (BAR_SIZE + 64);
        let len = [1usize, 2, 3, 4, 8, 16][(next() % 6) as usize];
        let mut buf = vec![0u8; len];
        if next().is_multiple_of(2) {
            d.read_bar((next() % 6) as usize, offset, &mut buf);
        } else {
            buf.iter_mut().for_each(|b| *b = next() as u8);
            d.write_bar((next() % 6) as usize, offset, &buf);
        }
        let reg = (next() % 80) as usize;
        d.write_config_register(reg, next() % 4, &buf[..len.min(4)]);
        let _ = d.read_config_register(reg);
    }
}

fn enable_msix(d: &mut VirtioPciDevice, vectors: &[u64]) {
    let cap = d.msix_cap_reg();
    d.write_config_register(cap, 2, &0x8000u16.to_le_bytes());
    for v in vectors {
        w(d, MSIX_TABLE_OFFSET + 16 * v, 0xfee0_0000, 4);
        w(d, MSIX_TABLE_OFFSET + 16 * v + 12, 0, 4);
    }
}

fn activated_interrupt(calls: &Arc<Mutex<Calls>>) -> Arc<dyn VirtioInterrupt> {
    calls
        .lock()
        .expect("lock")
        .interrupt
        .clone()
        .expect("activated")
}

#[test]
fn a_broken_queue_needs_reset_notifies_config_and_is_no_longer_served() {
    let (mut d, calls, msi) = transport();
    enable_msix(&mut d, &[0, 1, 2]);
    negotiate(&mut d, OFFERED);
    w(&mut d, 0x10, 2, 2); // config vector
    setup_queue(&mut d, 0, 64, 0x10_0000);
    setup_queue(&mut d, 1, 64, 0x20_0000);
    w(&mut d, 0x14, 0x0f, 1);
    let interrupt = activated_interrupt(&calls);
    interrupt.queue_broken(1);
    assert_eq!(
        r(&mut d, 0x14, 1) as u8,
        0x0f | STATUS_NEEDS_RESET,
        "DEVICE_NEEDS_RESET"
    );
    assert_eq!(*msi.fired.lock().expect("lock"), vec![2], "config vector");
    assert_eq!(r(&mut d, ISR_OFFSET, 1), u64::from(signals::ISR_CONFIG));
    w(&mut d, NOTIFY_OFFSET + u64::from(NOTIFY_MULTIPLIER), 1, 2);
    w(&mut d, NOTIFY_OFFSET, 0, 2);
    assert_eq!(
        calls.lock().expect("lock").processed,
        vec![0],
        "the broken queue is not served, the other one is"
    );
    // A driver rewriting its status bits is not "clearing" NEEDS_RESET.
    w(&mut d, 0x14, 0x0f, 1);
    assert_eq!(r(&mut d, 0x14, 1) as u8, 0x0f | STATUS_NEEDS_RESET);
    // Reset clears it all.
    w(&mut d, 0x14, 0, 1);
    assert_eq!(r(&mut d, 0x14, 1), 0);
    negotiate(&mut d, OFFERED);
    setup_queue(&mut d, 1, 64, 0x20_0000);
    w(&mut d, 0x14, 0x0f, 1);
    w(&mut d, NOTIFY_OFFSET + u64::from(NOTIFY_MULTIPLIER), 1, 2);
    assert_eq!(calls.lock().expect("lock").processed, vec![0, 1]);
}

#[test]
fn vector_changes_after_driver_ok_take_effect() {
    let (mut d, calls, msi) = transport();
    enable_msix(&mut d, &[0, 1, 2]);
    negotiate(&mut d, OFFERED);
    setup_queue(&mut d, 1, 64, 0x20_0000); // queue 1 -> vector 1
    w(&mut d, 0x14, 0x0f, 1);
    let interrupt = activated_interrupt(&calls);
    interrupt.notify_queue(1);
    w(&mut d, 0x16, 1, 2);
    w(&mut d, 0x1a, 2, 2);
    assert_eq!(r(&mut d, 0x1a, 2), 2);
    interrupt.notify_queue(1);
    w(&mut d, 0x10, 0, 2);
    interrupt.notify_config();
    w(&mut d, 0x1a, u64::from(NO_VECTOR), 2);
    interrupt.notify_queue(1);
    assert_eq!(*msi.fired.lock().expect("lock"), vec![1, 2, 0]);
}

#[test]
fn zero_ring_addresses_are_refused_at_driver_ok() {
    for field in [0x20u64, 0x28, 0x30] {
        let (mut d, calls, _) = transport();
        negotiate(&mut d, OFFERED);
        setup_queue(&mut d, 0, 64, 0x10_0000);
        w(&mut d, field, 0, 8);
        w(&mut d, 0x14, 0x0f, 1);
        assert_ne!(
            r(&mut d, 0x14, 1) as u8 & STATUS_NEEDS_RESET,
            0,
            "field {field:#x}"
        );
        assert!(calls.lock().expect("lock").activated.is_empty());
    }
}

/// Finds the vendor capability of `cfg_type`; returns its offset.
fn find_cap(d: &mut VirtioPciDevice, cfg_type: u8) -> Option<usize> {
    let mut cap = (d.read_config_register(0xd) & 0xff) as usize;
    while cap != 0 {
        let head = d.read_config_register(cap / 4);
        if head & 0xff == u32::from(CAP_VENDOR) && ((head >> 24) & 0xff) as u8 == cfg_type {
            return Some(cap);
        }
        cap = ((head >> 8) & 0xff) as usize;
    }
    None
}

#[test]
fn the_pci_cfg_capability_reaches_bar0_through_config_space() {
    let (mut d, _, _) = transport();
    let cap = find_cap(&mut d, 5).expect("VIRTIO_PCI_CAP_PCI_CFG");
    assert_eq!(
        (d.read_config_register(cap / 4) >> 16) & 0xff,
        20,
        "cap_len"
    );
    let window = |d: &mut VirtioPciDevice, offset: u32, length: u32| {
        d.write_config_register(cap / 4 + 1, 0, &[BAR_INDEX as u8]);
        d.write_config_register(cap / 4 + 2, 0, &offset.to_le_bytes());
        d.write_config_register(cap / 4 + 3, 0, &length.to_le_bytes());
    };
    // Read num_queues (common config 0x12, 2 bytes).
    window(&mut d, 0x12, 2);
    assert_eq!(d.read_config_register(cap / 4 + 4) & 0xffff, 2);
    assert_eq!(
        d.read_config_register(cap / 4 + 2),
        0x12,
        "offset reads back"
    );
    // Write device_status through it.
    window(&mut d, 0x14, 1);
    d.write_config_register(cap / 4 + 4, 0, &[STATUS_ACKNOWLEDGE]);
    assert_eq!(r(&mut d, 0x14, 1), u64::from(STATUS_ACKNOWLEDGE));
    // Device config (the fake returns its offset in every byte).
    window(&mut d, DEVICE_CFG_OFFSET as u32 + 8, 4);
    assert_eq!(d.read_config_register(cap / 4 + 4), 0x0808_0808);
    // Invalid windows do nothing: bad length, misaligned, past the BAR,
    // another BAR.
    for (bar, offset, length) in [
        (0u8, 0x14u32, 3u32),
        (0, 0x13, 2),
        (0, BAR_SIZE as u32, 4),
        (0, u32::MAX, 4),
        (1, 0x14, 1),
    ] {
        d.write_config_register(cap / 4 + 1, 0, &[bar]);
        d.write_config_register(cap / 4 + 2, 0, &offset.to_le_bytes());
        d.write_config_register(cap / 4 + 3, 0, &length.to_le_bytes());
        d.write_config_register(cap / 4 + 4, 0, &[0, 0, 0, 0]);
        assert_eq!(d.read_config_register(cap / 4 + 4), 0);
    }
    assert_eq!(r(&mut d, 0x14, 1), u64::from(STATUS_ACKNOWLEDGE));
    // The capability's header is read-only.
    let head = d.read_config_register(cap / 4);
    d.write_config_register(cap / 4, 0, &[0xff; 4]);
    assert_eq!(d.read_config_register(cap / 4), head);
}

/// Records the ioeventfds registered, by address.
#[derive(Default)]
struct Registry {
    live: Mutex<Vec<u64>>,
}

impl IoEventRegistry for Registry {
    fn register(&self, addr: u64, _fd: &EventFd) -> std::io::Result<()> {
        let mut live = self.live.lock().expect("lock");
        if live.contains(&addr) {
            return Err(std::io::Error::from_raw_os_error(libc::EEXIST));
        }
        live.push(addr);
        Ok(())
    }
    fn unregister(&self, addr: u64, _fd: &EventFd) -> std::io::Result<()> {
        let mut live = self.live.lock().expect("lock");
        let before = live.len();
        live.retain(|a| *a != addr);
        if live.len() == before {
            return Err(std::io::Error::from_raw_os_error(libc::ENOENT));
        }
        Ok(())
    }
}

impl Registry {
    fn live(&self) -> Vec<u64> {
        let mut v = self.live.lock().expect("lock").clone();
        v.sort_unstable();
        v
    }
}

#[test]
fn ioeventfds_follow_memory_decoding_and_bar_moves_made_while_it_is_off() {
    use crate::pci::{PciConfigMmio, PciRoot, PciWindows};
    use crate::BusDevice;
    let calls = Arc::new(Mutex::new(Calls::default()));
    let registry = Arc::new(Registry::default());
    let dev = VirtioPciDevice::new(
        Arc::new(Mutex::new(FakeDevice { calls })),
        BAR,
        Arc::new(Msi::default()),
        NotifyMode::Ioeventfd(registry.clone()),
    )
    .expect("transport");
    let root = Arc::new(PciRoot::new(PciWindows {
        mmio: vec![(BAR, 1 << 30)],
        io: vec![],
    }));
    root.add_device(Arc::new(Mutex::new(dev))).expect("slot");
    let mut ecam = PciConfigMmio::new(root.clone());
    let notify = |base: u64| vec![base + NOTIFY_OFFSET, base + NOTIFY_OFFSET + 4];
    assert!(
        registry.live().is_empty(),
        "no decoding yet: nothing claimed"
    );
    ecam.write(4, &[2]); // memory decoding on
    assert_eq!(registry.live(), notify(BAR));
    ecam.write(4, &[0]); // off
    assert!(
        registry.live().is_empty(),
        "decoding off drops the ioeventfds"
    );
    // Linux moves a 64-bit BAR with decoding off, one half at a time.
    let new = BAR + 0x10_0000;
    ecam.write(0x10, &((new as u32) | 0b1100).to_le_bytes());
    ecam.write(0x14, &((new >> 32) as u32).to_le_bytes());
    assert!(registry.live().is_empty());
    ecam.write(4, &[2]);
    assert_eq!(registry.live(), notify(new), "installed at the new address");
    // A move while decoding.
    ecam.write(0x10, &((BAR as u32) | 0b1100).to_le_bytes());
    assert_eq!(registry.live(), notify(BAR));
    // Outside the window the BAR decodes nothing.
    ecam.write(0x14, &[0x7f, 0, 0, 0]);
    assert!(registry.live().is_empty());
}
