//! Nested test host fixture.
//!
//! The development machines of this project cannot boot Linux with their own
//! `/dev/kvm`, so guest-booting tests run one level down: an L1 Linux under
//! QEMU TCG (`resources/nested-host/`) loads `kvm-amd`, and `minivmm` boots
//! the L2 test guest (`resources/guest/`) inside it. The L1 `/init` runs a
//! list of *scenarios* and frames each one with console markers; this crate
//! builds the images, boots L1, streams and saves the console, and turns the
//! markers into per-scenario results.
//!
//! ```no_run
//! use minivmm_tests::NestedHost;
//!
//! let run = NestedHost::new("example")
//!     .scenarios(["l1-smoke", "boot-smp"])
//!     .run()
//!     .unwrap_or_else(|e| panic!("{e}"));
//! let boot = run.expect_l2_pass("boot-smp").unwrap_or_else(|e| panic!("{e}"));
//! println!("L2 boot time: {:?}", boot.l2_boot_time);
//! ```
//!
//! The console markers, all printed at the start of a line by the L1 or L2
//! `/init` (see `resources/nested-host/init` and `resources/guest/init`):
//!
//! | marker | meaning |
//! |---|---|
//! | `MINIVMM-L1-READY kvm=yes\|no` | L1 is up and tried to load kvm-amd |
//! | `MINIVMM-L1-VFIO bdf=B kind=K group=N bound=yes\|no driver=D regions=R` | L1 bound a passthrough device to vfio-pci |
//! | `MINIVMM-SCENARIO-START <name>` | L1 starts a scenario |
//! | `MINIVMM-L2-RESULT <name> PASS\|FAIL <details>` | the L2 guest's verdict |
//! | `MINIVMM-SCENARIO-END <name> rc=<n>` | the scenario ended with status n |
//! | `MINIVMM-L1-DONE` | every scenario ran; L1 powers off |
//!
//! For VFIO passthrough, L1 can get an emulated host IOMMU
//! ([`NestedHost::host_iommu`]) and devices bound to vfio-pci
//! ([`NestedHost::passthrough`]):
//!
//! ```no_run
//! use minivmm_tests::{HostIommu, NestedHost, Passthrough};
//!
//! let run = NestedHost::new("example-vfio")
//!     .host_iommu(HostIommu::Intel)
//!     .passthrough(Passthrough::VirtioBlk { image_mib: 16 })
//!     .passthrough(Passthrough::E1000e)
//!     .scenario("vfio-host")
//!     .run()
//!     .unwrap_or_else(|e| panic!("{e}"));
//! let nic = run.vfio_device("0000:00:04.0").expect("the e1000e");
//! assert!(nic.bound && nic.group.is_some());
//! ```

pub mod bench;
mod console;
pub mod environment;
mod error;
mod host;
mod images;
mod passthrough;
mod terminal;

pub use console::{L2Result, ScenarioOutcome, VfioDevice};
pub use error::Error;
pub use host::{NestedHost, Run, ENVIRONMENT_ATTEMPTS};
pub use images::{
    build_image_variant, build_image_variant_for, build_images, build_images_for, minivmm_binary,
    minivmm_binary_for, target_dir, workspace_root, Arch, Images,
};
pub use passthrough::{
    passthrough_bdf, sha256_of, sha256_of_range, tftp_file, HostIommu, Passthrough,
    PassthroughDevice, TftpFile,
};
pub use terminal::Terminal;
