//! The thread that serves the virtio-iommu's request queue between kicks.

use std::sync::{Arc, Mutex};

use devices::perf::{self, Counter};
use devices::virtio::iommu::{PollSignal, VirtioIommu};

use super::DeviceError;

/// Starts the thread that serves the virtio-iommu's request queue between
/// kicks (see `devices::virtio::iommu::poll`).
pub(super) fn start_iommu_poller(
    iommu: &Arc<Mutex<VirtioIommu>>,
    window: std::time::Duration,
) -> Result<(), DeviceError> {
    let signal = Arc::new(PollSignal::new());
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
            signal.wait();
            let Some(iommu) = weak.upgrade() else {
                return;
            };
            let mut idle_since = std::time::Instant::now();
            perf::count(Counter::PollWindows);
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
                    idle_since = std::time::Instant::now();
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
        })
        .map_err(DeviceError::EventFd)?;
    Ok(())
}
