//! The nested benchmark suite (`benches/nested/run.sh`, issue 10): the
//! two nested runs it makes, the parser of their console markers, the
//! figures (medians of the trials with their spread) and the markdown
//! table with the ratios and the targets.
//!
//! The runs (see [`run_suite`]):
//! - `bench-blk` (L1 without an emulated IOMMU, on the project's default
//!   L0): the L1 scenario `bench-blk` boots L2 under minivmm and QEMU,
//!   interleaved trial by trial: a boot-only L2 (boot + poweroff time,
//!   minivmm's exec -> first `KVM_RUN`), then fio on virtio-blk in the
//!   modes off, lazy and strict, with the VMM's CPU time and VmRSS sampled
//!   from `/proc/PID/stat` and `/proc/PID/status` in L1 at the guest's marks.
//! - `bench-maplat` (L1 with the emulated Intel IOMMU and an edu device):
//!   the L1 scenario `maplat` with the order `floor,minivmm,qemu` per
//!   trial (alternating the VMMs), where `floor` is the guest's VFIO
//!   program run in L1 itself against L1's IOMMU.
//!
//! The markers parsed ([`Record`]); every other console line is ignored:
//!
//! | marker | printed by |
//! |---|---|
//! | `MINIVMM-BENCH-FIO vmm= mode= trial= job= iops= bw_kib= runtime_ms= p50_us= p99_us=` | L2 `bench-blk` |
//! | `MINIVMM-BENCH-CPU vmm= kind= mode= trial= mark= ticks= guest_ticks= [vcpu_ticks=] hz= rss_kib= uptime=` | L1 `bench-blk` |
//! | `MINIVMM-BENCH-RUN vmm= kind= mode= trial= rc= seconds=` | L1 `bench-blk` |
//! | `MINIVMM-BENCH-STARTUP vmm= kind= mode= trial= first_kvm_run_us=` | L1 `bench-blk` |
//! | `MINIVMM-BENCH-COUNTERS vmm= kind= mode= trial= pio_exits= ...` | L1 `bench-blk` (minivmm's counters at exit) |
//! | `MINIVMM-MAPLAT vmm= size= n= p50_ns= ...` | `vfio-maplat` (L2, or L1 for the floor) |
//!
//! One file per job: `parse.rs` (the markers), `figures.rs` (trials, medians,
//! spreads), `report.rs` (the tables and the targets), `run.rs` (the two
//! nested runs).

mod figures;
mod parse;
mod report;
mod run;
#[cfg(test)]
mod tests;

pub use figures::{size_name, Figures, Key, Stat};
pub use parse::{
    parse_console, parse_line, Counters, Cpu, Fio, MapLat, ParseError, Record, Startup, VmmRun,
};
pub use report::Target;
pub use run::{maplat_order, run_suite, Params, SuiteRun};

/// The VMMs compared, in the order of the odd trials.
pub const VMMS: [&str; 2] = ["minivmm", "qemu"];
/// The IOMMU modes of the block figures.
pub const MODES: [&str; 3] = ["off", "lazy", "strict"];
/// The fio jobs of the L2 scenario `bench-blk`, in order.
pub const JOBS: [&str; 4] = ["randread-qd1", "randread-qd32", "randwrite", "seqread-1m"];
/// The mapping sizes of the map/unmap latency benchmark.
pub const MAP_SIZES: [u64; 3] = [4 << 10, 64 << 10, 2 << 20];

/// The idle figure's share of the vCPU threads (KVM_RUN: the guest's own
/// time and the host kernel's work for its exits).
pub(crate) const IDLE_VCPUS: &str = "idle guest, vCPU threads, % of a host CPU";
/// The idle figure's share of every other thread (the VMM's own work).
pub(crate) const IDLE_OTHERS: &str = "idle guest, other threads, % of a host CPU";
