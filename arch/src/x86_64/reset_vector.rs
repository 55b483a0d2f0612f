//! The only firmware code minivmm has: a stub at the BIOS reset vector.
//!
//! Linux on hardware-reduced ACPI without EFI reboots by jumping to
//! `f000:fff0` in real mode, expecting a BIOS. The stub there writes the
//! reset value to the reset register (the same one the FADT announces), so
//! every reboot path ends in the VMM's reset handling instead of a guest
//! executing zeroed memory.

use vm_memory::{Bytes, GuestAddress};

use super::layout::RESET_VECTOR;
use super::GuestMemory;

/// Error writing the stub.
#[derive(Debug, thiserror::Error)]
#[error("guest memory does not cover the reset vector at {RESET_VECTOR:#x}")]
pub struct ResetVectorError;

/// Real-mode code: `mov dx, port; mov al, value; out dx, al; 1: hlt; jmp 1b`.
pub fn reset_stub(port: u16, value: u8) -> [u8; 10] {
    let [lo, hi] = port.to_le_bytes();
    [0xba, lo, hi, 0xb0, value, 0xee, 0xfa, 0xf4, 0xeb, 0xfd]
}

/// Writes the stub for reset register `port` / `value` at the reset vector.
pub fn write_reset_vector(mem: &GuestMemory, port: u16, value: u8) -> Result<(), ResetVectorError> {
    mem.write_slice(&reset_stub(port, value), GuestAddress(RESET_VECTOR))
        .map_err(|_| ResetVectorError)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stub_fits_below_1m_and_encodes_the_port() {
        let stub = reset_stub(0x602, 1);
        assert!(RESET_VECTOR + stub.len() as u64 <= 0x10_0000);
        assert_eq!(&stub[..6], &[0xba, 0x02, 0x06, 0xb0, 0x01, 0xee]);
    }
}
