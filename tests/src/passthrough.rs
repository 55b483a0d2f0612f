//! Passthrough devices for the nested host: the emulated host IOMMU of L1,
//! the devices L1 binds to vfio-pci, and the TFTP file its e1000e serves.

use std::fs;
use std::path::PathBuf;
use std::process::Command;

use crate::images::target_dir;
use crate::Error;

/// The emulated IOMMU L1 gets (`run.sh --iommu`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HostIommu {
    /// No vIOMMU (the default): L1's devices are in no IOMMU group.
    #[default]
    None,
    /// `intel-iommu,intremap=on,caching-mode=on` on q35 with
    /// `kernel-irqchip=split`, and `intel_iommu=on` for L1.
    Intel,
    /// `amd-iommu,intremap=on` on q35 with `kernel-irqchip=split`.
    Amd,
    /// `intel-iommu,intremap=off`: DMA remapping without interrupt
    /// remapping, which VFIO refuses (EPERM) unless told to accept it.
    IntelNoIntremap,
    /// arm64's `-M virt,iommu=smmuv3` (its software MSI window
    /// `0x08000000-0x080fffff`; MSIs isolated by the GICv3 ITS).
    Smmuv3,
}

impl HostIommu {
    /// The value of `run.sh --iommu`.
    pub fn as_arg(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Intel => "intel",
            Self::Amd => "amd",
            Self::IntelNoIntremap => "intel-nointremap",
            Self::Smmuv3 => "smmuv3",
        }
    }
}

/// A device L1 gets so that minivmm can pass it through to L2
/// (`run.sh --passthrough`). L1's `/init` binds it to vfio-pci.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Passthrough {
    /// `virtio-blk-pci` (modern only, `iommu_platform=on`) on a fresh raw
    /// image of `image_mib` MiB of zeros in `target/nested/<run>/`; its
    /// serial is the image's file name.
    VirtioBlk {
        /// The image size in MiB.
        image_mib: u32,
    },
    /// `e1000e` on a QEMU user-mode network whose TFTP server serves
    /// [`tftp_file`] (L2 gets 10.0.2.15 by DHCP; the server is 10.0.2.2).
    E1000e,
    /// QEMU's `edu` device (a DMA engine and MSI).
    Edu,
}

impl Passthrough {
    /// The kind name L1 reports for it (`kind=` of `MINIVMM-L1-VFIO`).
    pub fn kind(self) -> &'static str {
        match self {
            Self::VirtioBlk { .. } => "virtio-blk",
            Self::E1000e => "e1000e",
            Self::Edu => "edu",
        }
    }
}

/// The PCI slot of the first passthrough device on L1's root bus; the
/// others follow in the order they were added (see `run.sh`).
const FIRST_SLOT: usize = 3;

/// The BDF in L1 of the passthrough device at position `index`.
pub fn passthrough_bdf(index: usize) -> String {
    format!("0000:00:{:02x}.0", FIRST_SLOT + index)
}

/// A passthrough device of a run, where it sits in L1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassthroughDevice {
    /// What it is.
    pub device: Passthrough,
    /// Its BDF in L1 (what `minivmm --vfio` takes).
    pub bdf: String,
    /// The backing image of a virtio-blk device (its content after the run).
    pub image: Option<PathBuf>,
}

/// The file the e1000e's TFTP server serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TftpFile {
    /// The directory the server serves.
    pub dir: PathBuf,
    /// The file's name in it (what a TFTP client asks for).
    pub name: String,
    /// Its size in bytes.
    pub size: usize,
    /// Its sha256, lowercase hex.
    pub sha256: String,
}

/// Name and size of the TFTP test file.
const TFTP_NAME: &str = "minivmm-tftp.bin";
const TFTP_SIZE: usize = 256 * 1024;

/// Writes (if missing or different) the TFTP test file,
/// `target/nested/tftp/minivmm-tftp.bin`: 256 KiB of fixed pseudo-random
/// bytes, so its hash is the same on every machine.
pub fn tftp_file() -> Result<TftpFile, Error> {
    let dir = target_dir().join("nested").join("tftp");
    let path = dir.join(TFTP_NAME);
    let content = tftp_content();
    if fs::read(&path).ok().as_deref() != Some(content.as_slice()) {
        let io_error = |source| Error::Io {
            path: path.clone(),
            source,
        };
        fs::create_dir_all(&dir).map_err(io_error)?;
        fs::write(&path, &content).map_err(io_error)?;
    }
    Ok(TftpFile {
        dir,
        name: TFTP_NAME.to_string(),
        size: content.len(),
        sha256: sha256_of(&path)?,
    })
}

/// 256 KiB from a xorshift64 generator with a fixed seed.
fn tftp_content() -> Vec<u8> {
    let mut state: u64 = 0x6d69_6e69_766d_6d21;
    let mut content = Vec::with_capacity(TFTP_SIZE);
    while content.len() < TFTP_SIZE {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        content.extend_from_slice(&state.to_le_bytes());
    }
    content.truncate(TFTP_SIZE);
    content
}

/// The sha256 (lowercase hex) of a file, from `sha256sum`.
pub fn sha256_of(path: &std::path::Path) -> Result<String, Error> {
    let mut command = Command::new("sha256sum");
    command.arg(path);
    let description = format!("{command:?}");
    let output = command.output().map_err(|source| Error::Spawn {
        command: description.clone(),
        source,
    })?;
    if !output.status.success() {
        return Err(Error::CommandFailed {
            command: description,
            status: output.status,
        });
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    Ok(stdout
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string())
}

/// The sha256 of `len` bytes of `path` from `offset` (what a guest wrote
/// into a disk image), through a copy of the range in `target/nested/`.
pub fn sha256_of_range(path: &std::path::Path, offset: u64, len: usize) -> Result<String, Error> {
    use std::io::{Read, Seek, SeekFrom};
    let io_error = |path: &std::path::Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { path, source }
    };
    let mut file = fs::File::open(path).map_err(io_error(path))?;
    file.seek(SeekFrom::Start(offset)).map_err(io_error(path))?;
    let mut range = vec![0u8; len];
    file.read_exact(&mut range).map_err(io_error(path))?;
    let copy = target_dir().join("nested").join(format!(
        "range-{}-{offset}-{len}.bin",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("image")
    ));
    fs::write(&copy, &range).map_err(io_error(&copy))?;
    let sum = sha256_of(&copy);
    let _ = fs::remove_file(&copy);
    sum
}

/// Creates a fresh raw image of `mib` MiB of zeros (sparse) at `path`.
pub(crate) fn create_image(path: &std::path::Path, mib: u32) -> Result<(), Error> {
    let io_error = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(io_error)?;
    }
    let file = fs::File::create(path).map_err(io_error)?;
    file.set_len(u64::from(mib) << 20).map_err(io_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bdfs_follow_the_order() {
        assert_eq!(passthrough_bdf(0), "0000:00:03.0");
        assert_eq!(passthrough_bdf(12), "0000:00:0f.0");
    }

    #[test]
    fn tftp_content_is_fixed() {
        let content = tftp_content();
        assert_eq!(content.len(), TFTP_SIZE);
        assert_eq!(content, tftp_content());
        assert_ne!(content[..8], content[8..16]);
    }
}
