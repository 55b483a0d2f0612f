//! Building the nested host images with `resources/nested-host/build.sh`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use crate::Error;

/// The images a nested run boots: the L1 kernel and initramfs (which carries
/// minivmm, the L2 kernel and the L2 initramfs).
#[derive(Debug, Clone)]
pub struct Images {
    /// Directory holding `vmlinuz` and `initrd.img`.
    pub dir: PathBuf,
}

/// The workspace root (the parent of this crate).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// The cargo target directory: `CARGO_TARGET_DIR` or `<root>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => workspace_root().join(dir),
        None => workspace_root().join("target"),
    }
}

/// The architecture of a nested host: its L1, minivmm and L2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum Arch {
    /// x86_64 under `qemu-system-x86_64 -M q35` (the default).
    #[default]
    X86_64,
    /// arm64 under `qemu-system-aarch64 -M virt,virtualization=on,gic-version=3`.
    Aarch64,
}

impl Arch {
    /// The name `build.sh` and `run.sh` take (`--arch`).
    pub fn as_arg(self) -> &'static str {
        match self {
            Self::X86_64 => "x86_64",
            Self::Aarch64 => "aarch64",
        }
    }
}

/// The minivmm binary under test: `MINIVMM_BIN`, or the release build.
pub fn minivmm_binary() -> PathBuf {
    minivmm_binary_for(Arch::X86_64)
}

/// The minivmm binary under test for `arch`: `MINIVMM_BIN` (x86_64) or
/// `MINIVMM_BIN_AARCH64`, else the release build
/// (`target/aarch64-unknown-linux-gnu/release/minivmm` for aarch64, built
/// by `resources/cargo-aarch64.sh build --release -p vmm`).
pub fn minivmm_binary_for(arch: Arch) -> PathBuf {
    let (var, dir) = match arch {
        Arch::X86_64 => ("MINIVMM_BIN", target_dir().join("release")),
        Arch::Aarch64 => (
            "MINIVMM_BIN_AARCH64",
            target_dir()
                .join("aarch64-unknown-linux-gnu")
                .join("release"),
        ),
    };
    match std::env::var_os(var) {
        Some(bin) => workspace_root().join(bin),
        None => dir.join("minivmm"),
    }
}

static BUILT: Mutex<Vec<(Arch, Images)>> = Mutex::new(Vec::new());

/// Builds the x86_64 images into `target/nested/images` once per test
/// process (later calls reuse them). Needs the minivmm binary.
pub fn build_images() -> Result<Images, Error> {
    build_images_for(Arch::X86_64)
}

/// Builds the images of `arch` into `target/nested/images` (x86_64) or
/// `target/nested/images-aarch64` once per test process. Needs that
/// architecture's minivmm binary.
pub fn build_images_for(arch: Arch) -> Result<Images, Error> {
    let mut built = BUILT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((_, images)) = built.iter().find(|(a, _)| *a == arch) {
        return Ok(images.clone());
    }
    let bin = minivmm_binary_for(arch);
    if !bin.is_file() {
        return Err(Error::MissingBinary(bin));
    }
    let name = match arch {
        Arch::X86_64 => "images",
        Arch::Aarch64 => "images-aarch64",
    };
    let dir = target_dir().join("nested").join(name);
    run_build(&bin, &dir, &["--arch", arch.as_arg()])?;
    let images = Images { dir };
    built.push((arch, images.clone()));
    Ok(images)
}

/// Builds a variant of the images into `target/nested/<name>` with extra
/// `build.sh` options (for example `--with-qemu`, which adds QEMU to L1 for
/// the map latency comparison). Built on every call; the default images of
/// [`build_images`] are left alone.
pub fn build_image_variant(name: &str, options: &[&str]) -> Result<Images, Error> {
    build_image_variant_for(Arch::X86_64, name, options)
}

/// [`build_image_variant`] for the nested host of `arch`.
pub fn build_image_variant_for(arch: Arch, name: &str, options: &[&str]) -> Result<Images, Error> {
    let bin = minivmm_binary_for(arch);
    if !bin.is_file() {
        return Err(Error::MissingBinary(bin));
    }
    let dir = target_dir().join("nested").join(name);
    let mut options = options.to_vec();
    options.extend(["--arch", arch.as_arg()]);
    run_build(&bin, &dir, &options)?;
    Ok(Images { dir })
}

/// Runs `resources/nested-host/build.sh` for `bin` into `dir`.
fn run_build(bin: &std::path::Path, dir: &std::path::Path, options: &[&str]) -> Result<(), Error> {
    let mut command = Command::new("bash");
    command
        .arg(workspace_root().join("resources/nested-host/build.sh"))
        .arg("--minivmm")
        .arg(bin)
        .arg("--out")
        .arg(dir)
        .args(options);
    let description = format!("{command:?}");
    let status = command.status().map_err(|source| Error::Spawn {
        command: description.clone(),
        source,
    })?;
    if !status.success() {
        return Err(Error::CommandFailed {
            command: description,
            status,
        });
    }
    Ok(())
}
