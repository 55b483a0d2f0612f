//! Firmware tables.
