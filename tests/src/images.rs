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

/// The minivmm binary under test: `MINIVMM_BIN`, or the release build.
pub fn minivmm_binary() -> PathBuf {
    match std::env::var_os("MINIVMM_BIN") {
        Some(bin) => workspace_root().join(bin),
        None => target_dir().join("release").join("minivmm"),
    }
}

static BUILT: Mutex<Option<Images>> = Mutex::new(None);

/// Builds the images into `target/nested/images` once per test process
/// (later calls reuse them). Needs the minivmm binary.
pub fn build_images() -> Result<Images, Error> {
    let mut built = BUILT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(images) = built.as_ref() {
        return Ok(images.clone());
    }
    let bin = minivmm_binary();
    if !bin.is_file() {
        return Err(Error::MissingBinary(bin));
    }
    let dir = target_dir().join("nested").join("images");
    run_build(&bin, &dir, &[])?;
    let images = Images { dir };
    *built = Some(images.clone());
    Ok(images)
}

/// Builds a variant of the images into `target/nested/<name>` with extra
/// `build.sh` options (for example `--with-qemu`, which adds QEMU to L1 for
/// the map latency comparison). Built on every call; the default images of
/// [`build_images`] are left alone.
pub fn build_image_variant(name: &str, options: &[&str]) -> Result<Images, Error> {
    let bin = minivmm_binary();
    if !bin.is_file() {
        return Err(Error::MissingBinary(bin));
    }
    let dir = target_dir().join("nested").join(name);
    run_build(&bin, &dir, options)?;
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
