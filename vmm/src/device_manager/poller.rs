//! The thread that serves the virtio-iommu's request queue between kicks.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use devices::perf::{self, Counter};
use devices::virtio::iommu::{PollSignal, VirtioIommu};

use super::DeviceError;

/// Starts the thread that serves the virtio-iommu's request queue between
/// kicks, for adaptive windows of at most `max_window` (see
/// `devices::virtio::iommu::poll`).
pub(super) fn start_iommu_poller(
    iommu: &Arc<Mutex<VirtioIommu>>,
    max_window: Duration,
) -> Result<(), DeviceError> {
    let signal = Arc::new(PollSignal::new(max_window));
    iommu
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .set_poller(signal.clone());
    // A weak handle: a VM that is stopped (the API's vm.shutdown) drops
    // its virtio-iommu and the VFIO containers behind it; the thread then
    // ends at its next wake-up, or sleeps holding nothing.
    let weak = Arc::downgrade(iommu);
    std::thread::Builder::new()
        .name("iommu-poll".into())
        .spawn(move || loop {
            let window = signal.wait();
            let Some(iommu) = weak.upgrade() else {
                return;
            };
            perf::count(Counter::PollWindows);
            let opened = Instant::now();
            let mut idle_since = opened;
            let mut hits = 0;
            loop {
                let worked = iommu
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .poll_requests();
                perf::count(if worked {
                    Counter::PollHits
                } else {
                    Counter::PollMisses
                });
                if worked {
                    hits += 1;
                    idle_since = Instant::now();
                } else if idle_since.elapsed() >= window {
                    iommu
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .stop_polling();
                    break;
                } else {
                    std::hint::spin_loop();
                }
            }
            signal.window_ended(window, hits);
            let spun = u64::try_from(opened.elapsed().as_micros()).unwrap_or(u64::MAX);
            perf::add(Counter::PollSpinUs, spun);
        })
        .map_err(DeviceError::EventFd)?;
    Ok(())
}
