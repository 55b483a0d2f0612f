//! The mapping store of one domain: non-overlapping IOVA ranges, each
//! created by one MAP request, kept in a `BTreeMap` keyed by first IOVA so
//! that MAP, UNMAP and translation look-ups are O(log n) in the number of
//! mappings (UNMAP is O(k log n) for the k mappings it removes).
//!
//! Semantics follow virtio 1.3 §5.13.6.6-7: a MAP overlapping an existing
//! mapping fails; an UNMAP removes every mapping inside its range, fails
//! without changing anything if it would split a mapping, and succeeds when
//! it covers nothing.

use std::collections::BTreeMap;

use super::protocol::{VIRTIO_IOMMU_MAP_F_READ, VIRTIO_IOMMU_MAP_F_WRITE};

/// Default cap on the number of mappings one domain may hold.
pub const DEFAULT_MAX_MAPPINGS: usize = 2 << 20;

/// One mapping: IOVAs `start..=end` translate to `phys + (iova - start)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping {
    /// First IOVA.
    pub start: u64,
    /// Last IOVA (inclusive).
    pub end: u64,
    /// Physical address of `start`.
    pub phys: u64,
    /// `VIRTIO_IOMMU_MAP_F_*` flags.
    pub flags: u32,
}

impl Mapping {
    /// Whether the mapping allows endpoint reads.
    pub fn readable(&self) -> bool {
        self.flags & VIRTIO_IOMMU_MAP_F_READ != 0
    }

    /// Whether the mapping allows endpoint writes.
    pub fn writable(&self) -> bool {
        self.flags & VIRTIO_IOMMU_MAP_F_WRITE != 0
    }

    /// Number of bytes mapped, `None` for the whole 64-bit space.
    pub fn size(&self) -> Option<u64> {
        (self.end - self.start).checked_add(1)
    }

    /// Translates `iova`, which must lie in the mapping.
    pub fn translate(&self, iova: u64) -> u64 {
        self.phys.wrapping_add(iova.wrapping_sub(self.start))
    }
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    end: u64,
    phys: u64,
    flags: u32,
}

/// Why a mapping could not be added.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MapError {
    /// `end < start`.
    #[error("empty or reversed range {start:#x}..={end:#x}")]
    BadRange {
        /// Requested first IOVA.
        start: u64,
        /// Requested last IOVA.
        end: u64,
    },
    /// The range overlaps the existing mapping starting at `existing`.
    #[error("range {start:#x}..={end:#x} overlaps the mapping at {existing:#x}")]
    Overlap {
        /// Requested first IOVA.
        start: u64,
        /// Requested last IOVA.
        end: u64,
        /// First IOVA of the mapping in the way.
        existing: u64,
    },
    /// The domain already holds its maximum number of mappings.
    #[error("domain holds its maximum of {0} mappings")]
    LimitReached(usize),
}

/// Why an UNMAP was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UnmapError {
    /// `end < start`.
    #[error("empty or reversed range {start:#x}..={end:#x}")]
    BadRange {
        /// Requested first IOVA.
        start: u64,
        /// Requested last IOVA.
        end: u64,
    },
    /// The range covers only part of the mapping `mapping`.
    #[error("unmapping {start:#x}..={end:#x} would split the mapping {:#x}..={:#x}", mapping.start, mapping.end)]
    WouldSplit {
        /// Requested first IOVA.
        start: u64,
        /// Requested last IOVA.
        end: u64,
        /// The mapping that would be split.
        mapping: Mapping,
    },
}

/// The mappings of one domain.
#[derive(Debug)]
pub struct MappingStore {
    map: BTreeMap<u64, Entry>,
    limit: usize,
}

impl MappingStore {
    /// An empty store holding at most `limit` mappings.
    pub fn new(limit: usize) -> Self {
        Self {
            map: BTreeMap::new(),
            limit,
        }
    }

    /// Number of mappings.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the store holds no mapping.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    fn mapping(start: u64, e: &Entry) -> Mapping {
        Mapping {
            start,
            end: e.end,
            phys: e.phys,
            flags: e.flags,
        }
    }

    /// The mapping with the greatest start `<= addr`, if any.
    fn at_or_before(&self, addr: u64) -> Option<Mapping> {
        self.map
            .range(..=addr)
            .next_back()
            .map(|(&s, e)| Self::mapping(s, e))
    }

    /// The mapping containing `iova`.
    pub fn lookup(&self, iova: u64) -> Option<Mapping> {
        self.at_or_before(iova).filter(|m| m.end >= iova)
    }

    /// The first mapping overlapping `start..=end`, if any.
    pub fn first_overlap(&self, start: u64, end: u64) -> Option<Mapping> {
        if end < start {
            return None;
        }
        if let Some(m) = self.lookup(start) {
            return Some(m);
        }
        self.map
            .range(start..=end)
            .next()
            .map(|(&s, e)| Self::mapping(s, e))
    }

    /// Mappings overlapping `start..=end`, in IOVA order.
    pub fn overlapping(&self, start: u64, end: u64) -> impl Iterator<Item = Mapping> + '_ {
        let first = self.lookup(start).filter(|m| m.start < start);
        let rest = self
            .map
            .range(start..=end.max(start))
            .map(|(&s, e)| Self::mapping(s, e));
        first.into_iter().chain(rest)
    }

    /// Checks that `start..=end` can be added; nothing changes.
    pub fn check_insert(&self, start: u64, end: u64) -> Result<(), MapError> {
        if end < start {
            return Err(MapError::BadRange { start, end });
        }
        // Mappings are disjoint and sorted, so the one with the greatest
        // start <= end also has the greatest end among those starting
        // before `end`: it alone decides whether anything overlaps.
        if let Some(m) = self.at_or_before(end).filter(|m| m.end >= start) {
            return Err(MapError::Overlap {
                start,
                end,
                existing: m.start,
            });
        }
        if self.map.len() >= self.limit {
            return Err(MapError::LimitReached(self.limit));
        }
        Ok(())
    }

    /// Adds `mapping` unless it overlaps another or the store is full.
    pub fn insert(&mut self, mapping: Mapping) -> Result<(), MapError> {
        self.check_insert(mapping.start, mapping.end)?;
        self.map.insert(
            mapping.start,
            Entry {
                end: mapping.end,
                phys: mapping.phys,
                flags: mapping.flags,
            },
        );
        Ok(())
    }

    /// Checks an UNMAP of `start..=end`; nothing changes.
    pub fn check_remove(&self, start: u64, end: u64) -> Result<(), UnmapError> {
        if end < start {
            return Err(UnmapError::BadRange { start, end });
        }
        // A mapping starting before the range but reaching into it.
        if let Some(m) = self.lookup(start).filter(|m| m.start < start) {
            return Err(UnmapError::WouldSplit {
                start,
                end,
                mapping: m,
            });
        }
        // A mapping starting inside the range but ending after it.
        if let Some(m) = self
            .at_or_before(end)
            .filter(|m| m.start >= start && m.end > end)
        {
            return Err(UnmapError::WouldSplit {
                start,
                end,
                mapping: m,
            });
        }
        Ok(())
    }

    /// UNMAP of `start..=end`: removes every mapping inside the range and
    /// returns how many, or changes nothing if a mapping would be split.
    /// Nothing is collected on the way: O(k log n) for k removed mappings,
    /// with no allocation.
    pub fn remove(&mut self, start: u64, end: u64) -> Result<usize, UnmapError> {
        self.check_remove(start, end)?;
        Ok(self.map.extract_if(start..=end, |_, _| true).count())
    }

    /// Mappings inside `start..=end`, in IOVA order: what [`Self::remove`]
    /// would remove when [`Self::check_remove`] accepts the range.
    pub fn inside(&self, start: u64, end: u64) -> impl Iterator<Item = Mapping> + '_ {
        self.map
            .range(start..=end.max(start))
            .map(|(&s, e)| Self::mapping(s, e))
    }

    /// All mappings, in IOVA order.
    pub fn iter(&self) -> impl Iterator<Item = Mapping> + '_ {
        self.map.iter().map(|(&s, e)| Self::mapping(s, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(start: u64, end: u64) -> Mapping {
        Mapping {
            start,
            end,
            phys: start.wrapping_add(0x1000_0000),
            flags: VIRTIO_IOMMU_MAP_F_READ,
        }
    }

    fn store(ranges: &[(u64, u64)]) -> MappingStore {
        let mut s = MappingStore::new(DEFAULT_MAX_MAPPINGS);
        for &(a, b) in ranges {
            s.insert(m(a, b)).expect("insert");
        }
        s
    }

    fn starts(s: &MappingStore) -> Vec<(u64, u64)> {
        s.iter().map(|m| (m.start, m.end)).collect()
    }

    // The seven UNMAP examples of virtio 1.3 §5.13.6.6.
    #[test]
    fn spec_example_1_unmap_of_nothing_succeeds() {
        let mut s = store(&[]);
        assert_eq!(s.remove(0, 4), Ok(0));
    }

    #[test]
    fn spec_example_2_exact_unmap() {
        let mut s = store(&[(0, 9)]);
        assert_eq!(s.remove(0, 9), Ok(1));
        assert!(s.is_empty());
    }

    #[test]
    fn spec_example_3_two_adjacent_mappings() {
        let mut s = store(&[(0, 4), (5, 9)]);
        assert_eq!(s.remove(0, 9), Ok(2));
        assert!(s.is_empty());
    }

    #[test]
    fn spec_example_4_split_fails_and_changes_nothing() {
        let mut s = store(&[(0, 9)]);
        assert_eq!(
            s.remove(0, 4),
            Err(UnmapError::WouldSplit {
                start: 0,
                end: 4,
                mapping: m(0, 9)
            })
        );
        assert_eq!(starts(&s), vec![(0, 9)]);
    }

    #[test]
    fn spec_example_5_first_of_two() {
        let mut s = store(&[(0, 4), (5, 9)]);
        assert_eq!(s.remove(0, 4), Ok(1));
        assert_eq!(starts(&s), vec![(5, 9)]);
    }

    #[test]
    fn spec_example_6_range_larger_than_mapping() {
        let mut s = store(&[(0, 4)]);
        assert_eq!(s.remove(0, 9), Ok(1));
        assert!(s.is_empty());
    }

    #[test]
    fn spec_example_7_range_spanning_a_hole() {
        let mut s = store(&[(0, 4), (10, 14)]);
        assert_eq!(
            s.inside(0, 14).collect::<Vec<_>>(),
            vec![m(0, 4), m(10, 14)]
        );
        assert_eq!(s.remove(0, 14), Ok(2));
        assert!(s.is_empty());
    }

    #[test]
    fn split_at_the_end_fails_and_changes_nothing() {
        // Several mappings inside, one crossing the end: nothing removed.
        let mut s = store(&[(0, 4), (5, 9), (10, 19)]);
        assert!(matches!(
            s.remove(0, 14),
            Err(UnmapError::WouldSplit { mapping, .. }) if mapping == m(10, 19)
        ));
        assert_eq!(starts(&s), vec![(0, 4), (5, 9), (10, 19)]);
        // Crossing the start.
        assert!(matches!(
            s.remove(7, 19),
            Err(UnmapError::WouldSplit { mapping, .. }) if mapping == m(5, 9)
        ));
        assert_eq!(s.len(), 3);
        // A range strictly inside one mapping.
        assert!(s.remove(12, 13).is_err());
        assert_eq!(s.len(), 3);
    }

    #[test]
    fn unmap_in_a_hole_or_reversed() {
        let mut s = store(&[(0, 4), (10, 14)]);
        assert_eq!(s.remove(5, 9), Ok(0));
        assert_eq!(
            s.remove(9, 5),
            Err(UnmapError::BadRange { start: 9, end: 5 })
        );
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn unmap_the_whole_space() {
        let mut s = store(&[(0, 4), (10, 14), (u64::MAX - 9, u64::MAX)]);
        assert_eq!(s.remove(0, u64::MAX), Ok(3));
        assert!(s.is_empty());
    }

    #[test]
    fn overlapping_map_is_refused() {
        let mut s = store(&[(10, 19)]);
        for (a, b) in [(0, 10), (19, 30), (12, 13), (0, 100), (10, 19)] {
            assert_eq!(
                s.insert(m(a, b)),
                Err(MapError::Overlap {
                    start: a,
                    end: b,
                    existing: 10
                })
            );
        }
        s.insert(m(0, 9)).expect("adjacent below");
        s.insert(m(20, 29)).expect("adjacent above");
        assert_eq!(starts(&s), vec![(0, 9), (10, 19), (20, 29)]);
        assert_eq!(
            s.insert(m(5, 4)),
            Err(MapError::BadRange { start: 5, end: 4 })
        );
    }

    #[test]
    fn full_space_mapping() {
        let mut s = store(&[]);
        s.insert(m(0, u64::MAX)).expect("whole space");
        assert_eq!(s.lookup(u64::MAX).map(|m| m.start), Some(0));
        assert_eq!(s.iter().next().and_then(|m| m.size()), None);
        assert!(s.insert(m(u64::MAX, u64::MAX)).is_err());
    }

    #[test]
    fn limit_is_enforced() {
        let mut s = MappingStore::new(2);
        s.insert(m(0, 9)).expect("first");
        s.insert(m(10, 19)).expect("second");
        assert_eq!(s.insert(m(20, 29)), Err(MapError::LimitReached(2)));
        s.remove(0, 9).expect("unmap");
        s.insert(m(20, 29)).expect("room again");
    }

    /// What a mapping costs in host memory, for the bounds documented in
    /// docs/iommu.md (measured: 47.5 bytes scattered, 63.6 bytes in
    /// ascending order, which leaves B-tree nodes half full).
    #[test]
    fn memory_per_mapping() {
        for (name, order) in [("ascending", false), ("scattered", true)] {
            let (store, bytes) = crate::test_alloc::retained(|| {
                let mut s = MappingStore::new(DEFAULT_MAX_MAPPINGS);
                for i in 0..100_000u64 {
                    let k = if order { (i * 7919) % 100_000 } else { i };
                    s.insert(m(k * 0x1000, k * 0x1000 + 0xfff)).expect("insert");
                }
                s
            });
            let per = bytes as f64 / store.len() as f64;
            eprintln!("{name}: {per:.1} bytes per mapping");
            assert!(per < 72.0, "{per} bytes per mapping");
        }
    }

    #[test]
    fn lookup_and_overlapping() {
        let s = store(&[(0x1000, 0x1fff), (0x3000, 0x4fff)]);
        assert_eq!(s.lookup(0xfff), None);
        assert_eq!(s.lookup(0x1000).map(|m| m.start), Some(0x1000));
        assert_eq!(
            s.lookup(0x1fff).map(|m| m.translate(0x1fff)),
            Some(0x1000_1fff)
        );
        assert_eq!(s.lookup(0x2000), None);
        assert_eq!(s.lookup(0x4fff).map(|m| m.start), Some(0x3000));
        let got: Vec<u64> = s.overlapping(0x1800, 0x3000).map(|m| m.start).collect();
        assert_eq!(got, vec![0x1000, 0x3000]);
        let got: Vec<u64> = s.overlapping(0x2000, 0x2fff).map(|m| m.start).collect();
        assert!(got.is_empty());
        assert_eq!(
            s.first_overlap(0x2000, 0x3000).map(|m| m.start),
            Some(0x3000)
        );
        assert_eq!(s.first_overlap(0x5000, u64::MAX), None);
    }
}
