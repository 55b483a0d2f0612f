//! The minivmm VMM: turns a validated configuration into a running KVM
//! virtual machine.
//!
//! Data flows one way: [`cli`] parses arguments into a [`config::VmConfig`],
//! [`vm::Vm::build`] lays out memory, loads the guest, creates devices and
//! vCPUs, and [`vm::Vm::run`] runs vCPU threads plus the event loop on the
//! calling thread until the guest stops.

pub mod api;
pub mod cli;
pub mod config;
pub mod console;
pub mod device_manager;
pub mod exit;
pub mod hotplug;
pub mod interrupts;
pub mod kvm;
pub mod logger;
pub mod plan;
pub mod platform;
pub mod running;
pub mod startup;
pub mod vcpu;
pub mod vfio;
pub mod vm;
