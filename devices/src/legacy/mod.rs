//! Legacy PC platform devices on the port-I/O bus.

pub mod acpi_pm;
pub mod i8042;
pub mod pvpanic;
pub mod serial;

pub use acpi_pm::AcpiPowerManagement;
pub use i8042::I8042;
pub use pvpanic::PvPanic;
pub use serial::{IrqTrigger, SerialConsole};
