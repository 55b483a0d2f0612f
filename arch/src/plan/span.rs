//! Address ranges with inclusive ends, the form sysfs, VFIO and
//! virtio-iommu all use, plus the half-open `u128` intervals the planner
//! computes with internally (no overflow at the top of the 64-bit space).

use std::fmt;

/// An address range `[start, end]`, both ends inclusive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Span {
    /// First address.
    pub start: u64,
    /// Last address (inclusive).
    pub end: u64,
}

impl Span {
    /// `[start, end]`, or `None` when `end < start`.
    pub fn new(start: u64, end: u64) -> Option<Self> {
        (start <= end).then_some(Self { start, end })
    }

    /// `size` bytes from `start`, or `None` when empty or past `u64::MAX`.
    pub fn from_size(start: u64, size: u64) -> Option<Self> {
        let last = size.checked_sub(1)?;
        Some(Self {
            start,
            end: start.checked_add(last)?,
        })
    }

    /// Number of bytes (up to 2^64).
    pub fn size(&self) -> u128 {
        u128::from(self.end) - u128::from(self.start) + 1
    }

    /// Whether the two ranges share at least one address.
    pub fn overlaps(&self, other: &Span) -> bool {
        self.start <= other.end && other.start <= self.end
    }

    /// Whether `other` lies entirely inside `self`.
    pub fn contains(&self, other: &Span) -> bool {
        self.start <= other.start && other.end <= self.end
    }

    pub(crate) fn iv(&self) -> Iv {
        (u128::from(self.start), u128::from(self.end) + 1)
    }

    /// The span of a non-empty half-open interval inside the 64-bit space.
    pub(crate) fn from_iv(iv: Iv) -> Self {
        debug_assert!(iv.0 < iv.1 && iv.1 <= SPACE_END);
        Self {
            start: iv.0 as u64,
            end: (iv.1 - 1) as u64,
        }
    }
}

/// The addresses of `a` that no span of `b` covers, sorted and merged.
pub fn uncovered(a: &[Span], b: &[Span]) -> Vec<Span> {
    let ivs = |s: &[Span]| normalize(s.iter().map(Span::iv).collect());
    subtract(&ivs(a), &ivs(b))
        .into_iter()
        .map(Span::from_iv)
        .collect()
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}-{:#x}", self.start, self.end)
    }
}

/// A half-open interval `[start, end)`.
pub(crate) type Iv = (u128, u128);

/// One past the last 64-bit address.
pub(crate) const SPACE_END: u128 = 1 << 64;

/// Sorts, drops empty intervals and merges overlapping or adjacent ones.
pub(crate) fn normalize(mut v: Vec<Iv>) -> Vec<Iv> {
    v.retain(|iv| iv.0 < iv.1);
    v.sort_unstable();
    let mut out: Vec<Iv> = Vec::with_capacity(v.len());
    for iv in v {
        match out.last_mut() {
            Some(last) if iv.0 <= last.1 => last.1 = last.1.max(iv.1),
            _ => out.push(iv),
        }
    }
    out
}

/// `a` minus `b`; both normalized, and so is the result.
pub(crate) fn subtract(a: &[Iv], b: &[Iv]) -> Vec<Iv> {
    let mut out = Vec::new();
    for &(mut start, end) in a {
        for &(bs, be) in b {
            if be <= start || bs >= end {
                continue;
            }
            if bs > start {
                out.push((start, bs));
            }
            start = start.max(be);
            if start >= end {
                break;
            }
        }
        if start < end {
            out.push((start, end));
        }
    }
    out
}

/// `a` intersected with `b`; both normalized, and so is the result.
pub(crate) fn intersect(a: &[Iv], b: &[Iv]) -> Vec<Iv> {
    let mut out = Vec::new();
    for &(as_, ae) in a {
        for &(bs, be) in b {
            let (s, e) = (as_.max(bs), ae.min(be));
            if s < e {
                out.push((s, e));
            }
        }
    }
    normalize(out)
}

pub(crate) fn align_down(x: u128, align: u128) -> u128 {
    x - x % align
}

pub(crate) fn align_up(x: u128, align: u128) -> u128 {
    align_down(x + align - 1, align)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_algebra() {
        let a = normalize(vec![(10, 20), (0, 5), (5, 8), (30, 30)]);
        assert_eq!(a, vec![(0, 8), (10, 20)]);
        assert_eq!(
            subtract(&a, &[(2, 3), (15, 40)]),
            vec![(0, 2), (3, 8), (10, 15)]
        );
        assert_eq!(intersect(&a, &[(4, 12)]), vec![(4, 8), (10, 12)]);
        assert_eq!(subtract(&[(0, SPACE_END)], &[(0, SPACE_END)]), vec![]);
        let all = Span::new(0, u64::MAX).expect("span");
        let mid = Span::new(0x1000, 0x1fff).expect("span");
        assert_eq!(
            uncovered(&[all], &[mid]),
            [
                Span::new(0, 0xfff).expect("s"),
                Span::new(0x2000, u64::MAX).expect("s")
            ]
        );
        assert_eq!(uncovered(&[mid], &[all]), []);
    }

    #[test]
    fn spans() {
        let s = Span::new(0xfee0_0000, 0xfeef_ffff).expect("span");
        assert_eq!(s.size(), 1 << 20);
        assert_eq!(Span::from_size(0xfee0_0000, 1 << 20), Some(s));
        assert_eq!(Span::from_iv(s.iv()), s);
        assert_eq!(Span::new(2, 1), None);
        assert_eq!(Span::from_size(u64::MAX, 2), None);
        assert_eq!(Span::new(0, u64::MAX).map(|s| s.size()), Some(SPACE_END));
        assert_eq!(s.to_string(), "0xfee00000-0xfeefffff");
    }
}
