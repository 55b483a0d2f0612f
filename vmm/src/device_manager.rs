//! Creates the platform devices, puts them on the buses and wires their
//! interrupts to KVM. The addresses come from `arch`'s layout.

use std::io::Stdout;
use std::sync::{Arc, Mutex};

use arch::x86_64::layout::pio;
use devices::legacy::{AcpiPowerManagement, PvPanic, SerialConsole, I8042};
use devices::{Bus, BusDevice, BusError, GuestEvents};
use firmware_tables::acpi::{PowerManagement, SerialPort};
use kvm_ioctls::VmFd;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

/// Errors creating devices.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// An eventfd could not be created.
    #[error("cannot create an eventfd")]
    EventFd(#[source] std::io::Error),
    /// KVM refused the interrupt wiring.
    #[error("cannot register the irqfd for GSI {0}")]
    Irqfd(u32, #[source] kvm_ioctls::Error),
    /// Two devices claim the same range.
    #[error("device layout conflict")]
    Bus(#[from] BusError),
}

/// The serial console type the VMM uses: guest output to stdout.
pub type Console = SerialConsole<Stdout>;

/// The buses and the devices the event loop needs to reach.
pub struct Devices {
    /// Port I/O bus.
    pub pio: Bus,
    /// MMIO bus.
    pub mmio: Bus,
    /// COM1.
    pub console: Arc<Mutex<Console>>,
}

/// ACPI's view of the power management block the devices implement.
pub fn acpi_power_management() -> PowerManagement {
    use devices::legacy::acpi_pm::{
        RESET, RESET_VALUE, S5_SLEEP_TYPE, SLEEP_CONTROL, SLEEP_STATUS,
    };
    let port = |offset: u64| pio::ACPI_PM + offset as u16;
    PowerManagement {
        sleep_control_port: port(SLEEP_CONTROL),
        sleep_status_port: port(SLEEP_STATUS),
        reset_port: port(RESET),
        reset_value: RESET_VALUE,
        s5_sleep_type: S5_SLEEP_TYPE,
    }
}

/// ACPI's view of the serial ports.
pub fn acpi_serial_ports() -> Vec<SerialPort> {
    vec![SerialPort {
        port: pio::COM1,
        irq: pio::COM1_IRQ,
    }]
}

/// Puts the legacy devices that report power events on `bus`.
pub fn add_power_devices(bus: &mut Bus, events: &Arc<GuestEvents>) -> Result<(), BusError> {
    let pm = Arc::new(Mutex::new(AcpiPowerManagement::new(events.clone())));
    bus.insert(pio::ACPI_PM.into(), pio::ACPI_PM_SIZE.into(), pm)?;
    let pvpanic = Arc::new(Mutex::new(PvPanic::new(events.clone())));
    bus.insert(pio::PVPANIC.into(), 1, pvpanic)?;
    let i8042: Arc<Mutex<dyn BusDevice>> = Arc::new(Mutex::new(I8042::new(events.clone())));
    let i8042_len = pio::I8042_COMMAND - pio::I8042_DATA + 1;
    bus.insert(pio::I8042_DATA.into(), i8042_len.into(), i8042)?;
    Ok(())
}

/// Creates every device of the VM.
pub fn create(vm: &VmFd, events: &Arc<GuestEvents>) -> Result<Devices, DeviceError> {
    let mut pio_bus = Bus::new();
    let irq = EventFd::new(EFD_NONBLOCK).map_err(DeviceError::EventFd)?;
    vm.register_irqfd(&irq, pio::COM1_IRQ)
        .map_err(|e| DeviceError::Irqfd(pio::COM1_IRQ, e))?;
    let console = Arc::new(Mutex::new(
        SerialConsole::new(irq, std::io::stdout()).map_err(DeviceError::EventFd)?,
    ));
    pio_bus.insert(pio::COM1.into(), pio::UART_SIZE.into(), console.clone())?;
    add_power_devices(&mut pio_bus, events)?;
    Ok(Devices {
        pio: pio_bus,
        mmio: Bus::new(),
        console,
    })
}
