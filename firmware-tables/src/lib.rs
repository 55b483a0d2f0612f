//! Firmware tables handed to the guest.
//!
//! This crate turns a description of the platform (CPUs, interrupt
//! controllers, devices and their ports) into ACPI tables in guest memory.
//! It decides no addresses itself: the VMM's layout hands them in.

pub mod acpi;
