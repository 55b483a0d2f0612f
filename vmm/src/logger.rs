//! A minimal `log` backend: `minivmm: LEVEL: message` on stderr. The level
//! comes from `MINIVMM_LOG` (error, warn, info, debug, trace; default warn);
//! below debug, the vfio-ioctls crate is held to errors. Lines from
//! virtio-queue, which a guest can cause (a ring it broke) and which that
//! crate logs without limit, go through one rate limit
//! ([`devices::ratelimit`]).

use std::io::Write;

use devices::ratelimit::RateLimit;

/// The limit on virtio-queue's own lines.
static VIRTIO_QUEUE_LINES: RateLimit = RateLimit::new();

struct StderrLogger;

impl log::Log for StderrLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        // vfio-ioctls warns about optional interrupt indexes a device does
        // not have (e.g. the PCI error IRQ); only its errors matter here.
        if metadata.target().starts_with("vfio_ioctls")
            && log::max_level() < log::LevelFilter::Debug
        {
            return metadata.level() <= log::Level::Error;
        }
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let suppressed = if record.target().starts_with("virtio_queue") {
            match VIRTIO_QUEUE_LINES.allow() {
                Some(n) => n,
                None => return,
            }
        } else {
            0
        };
        let level = record.level().as_str().to_ascii_lowercase();
        // Raw-mode terminals need an explicit carriage return.
        let _ = if suppressed > 0 {
            write!(
                std::io::stderr(),
                "minivmm: {level}: {} ({suppressed} similar lines suppressed)\r\n",
                record.args()
            )
        } else {
            write!(std::io::stderr(), "minivmm: {level}: {}\r\n", record.args())
        };
    }

    fn flush(&self) {}
}

static LOGGER: StderrLogger = StderrLogger;

/// Installs the logger once; later calls do nothing.
pub fn init() {
    let level = std::env::var("MINIVMM_LOG")
        .ok()
        .and_then(|l| l.parse().ok())
        .unwrap_or(log::LevelFilter::Warn);
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(level);
    }
}
