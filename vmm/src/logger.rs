//! A minimal `log` backend: `minivmm: LEVEL: message` on stderr. The level
//! comes from `MINIVMM_LOG` (error, warn, info, debug, trace; default warn);
//! below debug, the vfio-ioctls crate is held to errors.

use std::io::Write;

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
        if self.enabled(record.metadata()) {
            let level = record.level().as_str().to_ascii_lowercase();
            // Raw-mode terminals need an explicit carriage return.
            let _ = write!(std::io::stderr(), "minivmm: {level}: {}\r\n", record.args());
        }
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
