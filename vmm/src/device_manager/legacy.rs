//! The legacy platform devices: power management, pvpanic, i8042, and
//! how ACPI describes them and the serial port.

use std::sync::{Arc, Mutex};

use arch::x86_64::layout::pio;
use devices::legacy::{AcpiPowerManagement, PvPanic, SerialConsole, I8042};
use devices::{Bus, BusDevice, BusError, GuestEvents};
use firmware_tables::acpi::{PowerManagement, SerialPort};
use kvm_ioctls::VmFd;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::{Console, DeviceError};

/// COM1 on `bus`, its interrupt an irqfd on its ISA line, output to stdout.
pub fn add_console(vm: &VmFd, bus: &mut Bus) -> Result<Arc<Mutex<Console>>, DeviceError> {
    add_console_at(
        vm,
        bus,
        pio::COM1.into(),
        pio::UART_SIZE.into(),
        pio::COM1_IRQ,
    )
}

/// A 16550 console at `base` (`len` bytes of registers) on `bus`, its
/// interrupt an irqfd on `gsi`, output to stdout.
pub fn add_console_at(
    vm: &VmFd,
    bus: &mut Bus,
    base: u64,
    len: u64,
    gsi: u32,
) -> Result<Arc<Mutex<Console>>, DeviceError> {
    let irq = EventFd::new(EFD_NONBLOCK).map_err(DeviceError::EventFd)?;
    vm.register_irqfd(&irq, gsi)
        .map_err(|e| DeviceError::Irqfd(gsi, e))?;
    let console = Arc::new(Mutex::new(
        SerialConsole::new(irq, std::io::stdout()).map_err(DeviceError::EventFd)?,
    ));
    bus.insert(base, len, console.clone())?;
    Ok(console)
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
