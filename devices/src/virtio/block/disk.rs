//! The raw disk image behind a virtio-blk device.
//!
//! A [`DiskFile`] is a regular file (or a host block device) whose bytes are
//! the disk, sector 0 first. Its size must be a whole number of 512-byte
//! sectors: an image with a partial last sector is refused when opened
//! rather than silently truncated, since the guest could never reach (or
//! would corrupt) the tail.
//!
//! Data moves between guest memory and the file without a bounce buffer:
//! [`DiskFile::at`] positions the file once per request and returns a
//! [`DiskCursor`] that reads into / writes from guest memory slices
//! sequentially, retrying short transfers. The file position is private to
//! the `DiskFile` (it owns the only descriptor and the cursor borrows it
//! mutably), so this keeps `pread`/`pwrite` semantics with one seek per
//! request instead of one per segment. The cursor also refuses any access
//! past the end of the disk, so the image never grows.

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use vm_memory::bitmap::BitmapSlice;
use vm_memory::{ReadVolatile, VolatileMemoryError, VolatileSlice, WriteVolatile};

use super::SECTOR_SIZE;

/// Why a disk image cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// The file could not be opened.
    #[error("cannot open disk image '{}': {source}", path.display())]
    Open {
        /// The image path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The path names a directory.
    #[error("cannot use disk image '{}': it is a directory", path.display())]
    Directory {
        /// The image path.
        path: PathBuf,
    },
    /// The size of the image could not be determined.
    #[error("cannot determine the size of disk image '{}': {source}", path.display())]
    Size {
        /// The image path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The image does not hold a whole number of sectors.
    #[error(
        "disk image '{}' is {size} bytes, not a multiple of the {SECTOR_SIZE}-byte sector size",
        path.display()
    )]
    PartialSector {
        /// The image path.
        path: PathBuf,
        /// Its size in bytes.
        size: u64,
    },
}

/// A raw disk image opened for a virtio-blk device.
#[derive(Debug)]
pub struct DiskFile {
    file: File,
    path: PathBuf,
    sectors: u64,
    read_only: bool,
}

impl DiskFile {
    /// Opens the image at `path`, read-only or read-write.
    pub fn open(path: &Path, read_only: bool) -> Result<Self, DiskError> {
        let file = OpenOptions::new()
            .read(true)
            .write(!read_only)
            .open(path)
            .map_err(|source| DiskError::Open {
                path: path.to_owned(),
                source,
            })?;
        let size_error = |source| DiskError::Size {
            path: path.to_owned(),
            source,
        };
        if file.metadata().map_err(size_error)?.is_dir() {
            return Err(DiskError::Directory {
                path: path.to_owned(),
            });
        }
        // Seeking to the end also sizes host block devices, whose metadata
        // length is 0.
        let size = (&file).seek(SeekFrom::End(0)).map_err(size_error)?;
        if !size.is_multiple_of(SECTOR_SIZE) {
            return Err(DiskError::PartialSector {
                path: path.to_owned(),
                size,
            });
        }
        Ok(Self {
            file,
            path: path.to_owned(),
            sectors: size / SECTOR_SIZE,
            read_only,
        })
    }

    /// The image path, as given to [`DiskFile::open`].
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Capacity in 512-byte sectors.
    pub fn sectors(&self) -> u64 {
        self.sectors
    }

    /// Whether the image was opened read-only.
    pub fn read_only(&self) -> bool {
        self.read_only
    }

    /// A cursor at byte `offset` of the disk, for one request's transfer.
    pub fn at(&mut self, offset: u64) -> io::Result<DiskCursor<'_>> {
        let len = self.sectors.saturating_mul(SECTOR_SIZE);
        if offset > len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("offset {offset} is beyond the end of the disk ({len} bytes)"),
            ));
        }
        self.file.seek(SeekFrom::Start(offset))?;
        Ok(DiskCursor {
            file: &self.file,
            remaining: len - offset,
            read_only: self.read_only,
        })
    }

    /// Makes every completed write durable (`fdatasync`).
    pub fn flush(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }
}

/// Sequential access to a [`DiskFile`] from a position set by
/// [`DiskFile::at`], bounded by the end of the disk.
#[derive(Debug)]
pub struct DiskCursor<'a> {
    file: &'a File,
    remaining: u64,
    read_only: bool,
}

impl DiskCursor<'_> {
    /// Fills `dst` with the next `dst.len()` bytes of the disk.
    pub fn read_into<B: BitmapSlice>(&mut self, dst: &mut VolatileSlice<B>) -> io::Result<()> {
        self.take(dst.len())?;
        self.file.read_exact_volatile(dst).map_err(into_io)
    }

    /// Writes all of `src` to the next `src.len()` bytes of the disk.
    pub fn write_from<B: BitmapSlice>(&mut self, src: &VolatileSlice<B>) -> io::Result<()> {
        if self.read_only {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "disk is read-only",
            ));
        }
        self.take(src.len())?;
        self.file.write_all_volatile(src).map_err(into_io)
    }

    /// Accounts for `len` bytes, refusing to go past the end of the disk.
    fn take(&mut self, len: usize) -> io::Result<()> {
        let len = len as u64;
        if len > self.remaining {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "access beyond the end of the disk",
            ));
        }
        self.remaining -= len;
        Ok(())
    }
}

fn into_io(e: VolatileMemoryError) -> io::Error {
    match e {
        VolatileMemoryError::IOError(e) => e,
        e => io::Error::other(e),
    }
}
