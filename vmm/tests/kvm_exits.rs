#![cfg(target_arch = "x86_64")]
//! Small guest code snippets run on this host's KVM: they exercise the vCPU
//! run loop, the buses, the UART, the power devices, and `arch`'s long-mode
//! set-up, without booting Linux.

use std::io::Write;
use std::sync::{Arc, Mutex};

use arch::x86_64::{layout, regs, GuestMemory};
use devices::legacy::SerialConsole;
use devices::{Bus, BusDevice, GuestEvent, GuestEvents};
use kvm_ioctls::{Kvm, VmFd};
use vm_memory::{Bytes, GuestAddress};
use vmm::device_manager::add_power_devices;
use vmm::vcpu::{Vcpu, VcpuContext};
use vmm_sys_util::eventfd::EventFd;

/// Guest output captured for assertions.
#[derive(Clone, Default)]
struct Output(Arc<Mutex<Vec<u8>>>);

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("output").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// An MMIO device that records writes and reads back a fixed byte.
#[derive(Default)]
struct MmioProbe {
    writes: Vec<(u64, Vec<u8>)>,
}

impl BusDevice for MmioProbe {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(b'M');
    }
    fn write(&mut self, offset: u64, data: &[u8]) {
        self.writes.push((offset, data.to_vec()));
    }
}

struct SnippetVm {
    _kvm: Kvm,
    _vm: VmFd,
    memory: GuestMemory,
    vcpu: Vcpu,
    context: VcpuContext,
    output: Output,
}

impl SnippetVm {
    fn new(mem_size: usize) -> Self {
        let kvm = Kvm::new().expect("open /dev/kvm");
        let vm = kvm.create_vm().expect("create VM");
        let memory = GuestMemory::from_ranges(&[(GuestAddress(0), mem_size)]).expect("memory");
        vmm::vm::register_memory(&vm, &memory).expect("memory slots");
        let vcpu = Vcpu::new(&vm, 0).expect("vcpu");
        let events = Arc::new(GuestEvents::new().expect("events"));
        let output = Output::default();
        let mut pio = Bus::new();
        let irq = EventFd::new(0).expect("eventfd");
        let uart = SerialConsole::new(irq, output.clone()).expect("uart");
        pio.insert(0x3f8, 8, Arc::new(Mutex::new(uart)))
            .expect("uart on bus");
        add_power_devices(&mut pio, &events).expect("power devices");
        Self {
            _kvm: kvm,
            _vm: vm,
            memory,
            vcpu,
            context: VcpuContext {
                pio,
                mmio: Bus::new(),
                events,
            },
            output,
        }
    }

    /// Loads real-mode `code` at 0x1000 and points the vCPU at it.
    fn real_mode(mut self, code: &[u8]) -> Self {
        self.memory
            .write_slice(code, GuestAddress(0x1000))
            .expect("code");
        let fd = self.vcpu.fd();
        let mut sregs = fd.get_sregs().expect("sregs");
        sregs.cs.base = 0;
        sregs.cs.selector = 0;
        fd.set_sregs(&sregs).expect("set sregs");
        let mut r = fd.get_regs().expect("regs");
        r.rip = 0x1000;
        r.rflags = 2;
        fd.set_regs(&r).expect("set regs");
        self
    }

    /// Loads 64-bit `code` at 1 MiB and enters it the way `arch` boots Linux.
    fn long_mode(mut self, code: &[u8]) -> Self {
        regs::write_gdt_and_idt(&self.memory).expect("gdt");
        regs::write_identity_page_tables(&self.memory).expect("page tables");
        let entry = GuestAddress(layout::HIMEM_START);
        self.memory.write_slice(code, entry).expect("code");
        let fd = self.vcpu.fd();
        let sregs = fd.get_sregs().expect("sregs");
        fd.set_sregs(&regs::long_mode_sregs(sregs))
            .expect("long mode");
        fd.set_regs(&regs::boot_regs(entry)).expect("regs");
        self
    }

    fn run(&mut self) -> (GuestEvent, Vec<u8>) {
        self.vcpu.run(&self.context);
        let event = self.context.events.get().expect("a stop event");
        let out = self.output.0.lock().expect("output").clone();
        (event, out)
    }
}

const OUT_COM1: [u8; 3] = [0xba, 0xf8, 0x03]; // mov dx, 0x3f8
const OUT_DX_AL: u8 = 0xee; // out dx, al
const POWER_OFF: [u8; 6] = [0xba, 0x00, 0x06, 0xb0, 0x34, 0xee]; // S5 | SLP_EN to 0x600

fn program(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

#[test]
fn port_io_reaches_the_uart_and_s5_powers_off() {
    let code = program(&[
        &OUT_COM1,
        &[0xb0, b'O', OUT_DX_AL, 0xb0, b'K', OUT_DX_AL],
        &POWER_OFF,
        &[0xf4],
    ]);
    let (event, out) = SnippetVm::new(0x10000).real_mode(&code).run();
    assert_eq!(event, GuestEvent::PowerOff);
    assert_eq!(out, b"OK");
}

#[test]
fn unclaimed_ports_read_all_ones() {
    let code = program(&[&[0xe4, 0x99], &OUT_COM1, &[OUT_DX_AL], &POWER_OFF]);
    let (event, out) = SnippetVm::new(0x10000).real_mode(&code).run();
    assert_eq!(event, GuestEvent::PowerOff);
    assert_eq!(out, [0xff]);
}

#[test]
fn mmio_exits_reach_the_mmio_bus() {
    let code = program(&[
        &[0xb8, 0x00, 0x20, 0x8e, 0xd8], // mov ax, 0x2000; mov ds, ax
        &[0xc6, 0x06, 0x10, 0x00, 0x5a], // mov byte [0x10], 0x5a
        &[0xa0, 0x20, 0x00],             // mov al, [0x20]
        &OUT_COM1,
        &[OUT_DX_AL],
        &POWER_OFF,
    ]);
    let mut vm = SnippetVm::new(0x10000).real_mode(&code);
    let probe = Arc::new(Mutex::new(MmioProbe::default()));
    vm.context
        .mmio
        .insert(0x20000, 0x100, probe.clone())
        .expect("probe");
    let (event, out) = vm.run();
    assert_eq!(event, GuestEvent::PowerOff);
    assert_eq!(out, b"M");
    assert_eq!(
        probe.lock().expect("probe").writes,
        vec![(0x10, vec![0x5a])]
    );
}

#[test]
fn keyboard_controller_reset_stops_with_reset() {
    let code = [0xb0, 0xfe, 0xe6, 0x64, 0xf4]; // mov al, 0xfe; out 0x64, al; hlt
    let (event, _) = SnippetVm::new(0x10000).real_mode(&code).run();
    assert_eq!(event, GuestEvent::Reset);
}

#[test]
fn pvpanic_stops_with_panic() {
    let code = [0xba, 0x05, 0x05, 0xb0, 0x01, 0xee, 0xf4]; // out 0x505, 1
    let (event, _) = SnippetVm::new(0x10000).real_mode(&code).run();
    assert_eq!(event, GuestEvent::Panic);
}

#[test]
fn halt_without_irqchip_is_reported_not_hung() {
    let (event, _) = SnippetVm::new(0x10000).real_mode(&[0xfa, 0xf4]).run(); // cli; hlt
    assert!(matches!(event, GuestEvent::Crash(_)), "{event:?}");
}

#[test]
fn arch_long_mode_setup_runs_64_bit_code() {
    let code = program(&[
        &[0x48, 0xb8, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11], // mov rax, imm64
        &[0x48, 0xc1, 0xe8, 0x38],                                     // shr rax, 56
        &[0x04, 0x30],                                                 // add al, 0x30
        &[0x66, 0xba, 0xf8, 0x03, OUT_DX_AL],                          // out 0x3f8
        &[0x48, 0x89, 0xf0, 0x48, 0xc1, 0xe8, 0x0c, 0x04, 0x30],       // rax = rsi >> 12, + '0'
        &[0x66, 0xba, 0xf8, 0x03, OUT_DX_AL],                          // out 0x3f8
        &[0x66, 0xba, 0x00, 0x06, 0xb0, 0x34, OUT_DX_AL, 0xf4],        // power off
    ]);
    let mut vm = SnippetVm::new(4 << 20).long_mode(&code);
    let (event, out) = vm.run();
    assert_eq!(event, GuestEvent::PowerOff);
    // 'A' proves 64-bit operands; '7' is the zero page (0x7000) in rsi.
    assert_eq!(out, b"A7");
}

#[test]
fn every_vcpu_accepts_the_platform_configuration() {
    let kvm = Kvm::new().expect("open /dev/kvm");
    let vm = kvm.create_vm().expect("vm");
    vm.create_irq_chip().expect("irqchip");
    let cpuid = kvm
        .get_supported_cpuid(kvm_bindings::KVM_MAX_CPUID_ENTRIES)
        .expect("cpuid");
    for id in 0..4u8 {
        let mut vcpu = Vcpu::new(&vm, id).expect("vcpu");
        vcpu.configure_platform(&cpuid, 4, true).expect("configure");
        let set = vcpu
            .fd()
            .get_cpuid2(kvm_bindings::KVM_MAX_CPUID_ENTRIES)
            .expect("cpuid");
        let leaf1 = set
            .as_slice()
            .iter()
            .find(|e| e.function == 1)
            .expect("leaf 1");
        assert_eq!(leaf1.ebx >> 24, u32::from(id));
    }
}

#[test]
fn bios_reset_vector_stub_resets() {
    // What Linux does when it reboots "through the BIOS": far jump to f000:fff0.
    let mut vm = SnippetVm::new(0x10_0000).real_mode(&[0xea, 0xf0, 0xff, 0x00, 0xf0]);
    let pm = vmm::device_manager::acpi_power_management();
    arch::x86_64::reset_vector::write_reset_vector(&vm.memory, pm.reset_port, pm.reset_value)
        .expect("stub");
    let (event, _) = vm.run();
    assert_eq!(event, GuestEvent::Reset);
}
