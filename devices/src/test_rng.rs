//! A deterministic pseudo-random source for this crate's randomised unit
//! tests (xorshift64): the same seed gives the same sequence on every run.

/// The xorshift64 sequence from `seed` (which must not be 0).
pub fn xorshift(mut seed: u64) -> impl FnMut() -> u64 {
    move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    }
}
