//! Process-wide counters of where the time goes (issue 10): vCPU exits by
//! kind, virtio-blk kicks and requests, virtio-iommu kicks, requests and
//! DMA translations (and how many the translation cache served), and the
//! request poller's windows, passes with work (hits) and passes without
//! (misses), kicks its adaptive window let pass
//! without polling (skips), the time it spent polling and the time spent
//! serving virtio-iommu requests. Relaxed atomic additions, cheap on
//! the hot paths; minivmm logs a [`Snapshot`] when it exits, at info level
//! (`MINIVMM_LOG=info` or `debug`): `minivmm: info: counters: pio_exits=N ...`,
//! one `key=value` word per counter.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// What is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    /// vCPU exits for port I/O.
    PioExits,
    /// vCPU exits for MMIO.
    MmioExits,
    /// virtio-blk queue notifications handled.
    BlkKicks,
    /// virtio-blk requests (descriptor chains) handled.
    BlkRequests,
    /// virtio-iommu request queue notifications handled.
    IommuKicks,
    /// virtio-iommu requests (descriptor chains) handled, kicked or polled.
    IommuRequests,
    /// DMA translations through the virtio-iommu (one per guest buffer a
    /// device behind it reads or writes).
    Translations,
    /// Translations served from the translator's cache (`translate.rs`).
    TranslationHits,
    /// Poll windows the request poller opened (one per kick it followed).
    PollWindows,
    /// Poller passes that found requests.
    PollHits,
    /// Poller passes that found none.
    PollMisses,
    /// Kicks after which no window opened (the adaptive window was zero).
    PollSkips,
    /// Microseconds the poller spent in its windows.
    PollSpinUs,
    /// Nanoseconds spent serving virtio-iommu requests (parsing, the
    /// domain state, the host IOMMU's MAP/UNMAP, the reply), kicked or
    /// polled.
    IommuServiceNs,
}

const COUNTERS: usize = 14;

static COUNTS: [AtomicU64; COUNTERS] = [const { AtomicU64::new(0) }; COUNTERS];

/// Adds one to `counter`.
pub fn count(counter: Counter) {
    add(counter, 1);
}

/// Adds `n` to `counter`.
pub fn add(counter: Counter, n: u64) {
    COUNTS[counter as usize].fetch_add(n, Ordering::Relaxed);
}

/// The value of `counter` now.
pub fn get(counter: Counter) -> u64 {
    COUNTS[counter as usize].load(Ordering::Relaxed)
}

/// Every counter at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Snapshot {
    /// [`Counter::PioExits`].
    pub pio_exits: u64,
    /// [`Counter::MmioExits`].
    pub mmio_exits: u64,
    /// [`Counter::BlkKicks`].
    pub blk_kicks: u64,
    /// [`Counter::BlkRequests`].
    pub blk_requests: u64,
    /// [`Counter::IommuKicks`].
    pub iommu_kicks: u64,
    /// [`Counter::IommuRequests`].
    pub iommu_requests: u64,
    /// [`Counter::Translations`].
    pub translations: u64,
    /// [`Counter::TranslationHits`].
    pub translation_hits: u64,
    /// [`Counter::PollWindows`].
    pub poll_windows: u64,
    /// [`Counter::PollHits`].
    pub poll_hits: u64,
    /// [`Counter::PollMisses`].
    pub poll_misses: u64,
    /// [`Counter::PollSkips`].
    pub poll_skips: u64,
    /// [`Counter::PollSpinUs`].
    pub poll_spin_us: u64,
    /// [`Counter::IommuServiceNs`].
    pub iommu_service_ns: u64,
}

/// The counters now.
pub fn snapshot() -> Snapshot {
    Snapshot {
        pio_exits: get(Counter::PioExits),
        mmio_exits: get(Counter::MmioExits),
        blk_kicks: get(Counter::BlkKicks),
        blk_requests: get(Counter::BlkRequests),
        iommu_kicks: get(Counter::IommuKicks),
        iommu_requests: get(Counter::IommuRequests),
        translations: get(Counter::Translations),
        translation_hits: get(Counter::TranslationHits),
        poll_windows: get(Counter::PollWindows),
        poll_hits: get(Counter::PollHits),
        poll_misses: get(Counter::PollMisses),
        poll_skips: get(Counter::PollSkips),
        poll_spin_us: get(Counter::PollSpinUs),
        iommu_service_ns: get(Counter::IommuServiceNs),
    }
}

/// `a / b` with one decimal, `-` when `b` is 0.
fn per(a: u64, b: u64) -> String {
    if b == 0 {
        "-".to_string()
    } else {
        format!("{:.1}", a as f64 / b as f64)
    }
}

impl fmt::Display for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "pio_exits={} mmio_exits={} blk_kicks={} blk_requests={} blk_requests_per_kick={} \
             iommu_kicks={} iommu_requests={} translations={} translation_hits={} \
             translations_per_blk_request={} \
             poll_windows={} poll_hits={} poll_misses={} poll_skips={} poll_spin_us={} \
             iommu_service_ns={}",
            self.pio_exits,
            self.mmio_exits,
            self.blk_kicks,
            self.blk_requests,
            per(self.blk_requests, self.blk_kicks),
            self.iommu_kicks,
            self.iommu_requests,
            self.translations,
            self.translation_hits,
            per(self.translations, self.blk_requests),
            self.poll_windows,
            self.poll_hits,
            self.poll_misses,
            self.poll_skips,
            self.poll_spin_us,
            self.iommu_service_ns,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_reports_ratios() {
        let before = snapshot();
        count(Counter::BlkKicks);
        count(Counter::BlkRequests);
        count(Counter::BlkRequests);
        let after = snapshot();
        // Other tests may count concurrently: at least what this one added.
        assert!(after.blk_kicks > before.blk_kicks);
        assert!(after.blk_requests >= before.blk_requests + 2);
        let text = Snapshot {
            blk_kicks: 2,
            blk_requests: 6,
            ..Snapshot::default()
        }
        .to_string();
        assert!(
            text.contains("blk_kicks=2 blk_requests=6 blk_requests_per_kick=3.0 "),
            "{text}"
        );
        assert!(
            text.contains("translations=0 translation_hits=0 translations_per_blk_request=0.0 "),
            "{text}"
        );
        assert!(Snapshot::default()
            .to_string()
            .contains("blk_requests_per_kick=- "));
    }
}
