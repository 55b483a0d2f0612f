//! The Linux x86 64-bit boot protocol: loads a bzImage, the initrd and the
//! command line into guest memory and fills the zero page (setup header,
//! e820 map, RSDP address). Parsing the bzImage is linux-loader's job.

use std::fs::File;

use linux_loader::cmdline::Cmdline;
use linux_loader::loader::bootparam::{boot_e820_entry, boot_params, setup_header};
use linux_loader::loader::{bzimage::BzImage, load_cmdline, KernelLoader};
use vm_memory::{Bytes, GuestAddress};

use super::layout::{
    RamRegion, ACPI_START, CMDLINE_MAX_SIZE, CMDLINE_START, DEFAULT_INITRD_ADDR_MAX, HIMEM_START,
    LOW_RAM_END, PCI_ECAM_SIZE, PCI_ECAM_START, ZERO_PAGE_START,
};
use super::GuestMemory;

const E820_RAM: u32 = 1;
const E820_RESERVED: u32 = 2;
const KERNEL_BOOT_FLAG_MAGIC: u16 = 0xaa55;
const KERNEL_LOADER_OTHER: u8 = 0xff;
/// `xloadflags` bit: the kernel has a 64-bit entry point at load + 0x200.
const XLF_KERNEL_64: u16 = 1;
const ENTRY_64_OFFSET: u64 = 0x200;
/// Boot protocol 2.12 introduced `xloadflags`.
const MIN_BOOT_PROTOCOL: u16 = 0x020c;
const PAGE_SIZE: u64 = 0x1000;

/// Errors loading the guest kernel and its boot data.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// linux-loader rejected the kernel image; the text is its innermost reason.
    #[error("not a loadable x86_64 bzImage ({0})")]
    Kernel(String),
    /// The kernel predates the 64-bit boot protocol.
    #[error("kernel has no 64-bit entry point (boot protocol {0:#x}, need 2.12 or later with XLF_KERNEL_64)")]
    No64BitEntry(u16),
    /// The kernel needs more low memory than the guest has.
    #[error("the kernel needs {needed} MiB of memory below 3 GiB to decompress, the guest has {have} MiB: raise --memory")]
    KernelTooLarge {
        /// MiB needed.
        needed: u64,
        /// MiB available.
        have: u64,
    },
    /// The command line is malformed or too long.
    #[error("invalid kernel command line (at most {max} printable ASCII characters): {reason}")]
    Cmdline {
        /// Longest command line the kernel accepts.
        max: usize,
        /// What linux-loader objected to.
        reason: linux_loader::cmdline::Error,
    },
    /// The command line does not fit guest memory.
    #[error("cannot write the kernel command line into guest memory")]
    CmdlineWrite(#[source] linux_loader::loader::Error),
    /// The initrd does not fit between the kernel and the initrd limit.
    #[error(
        "the initrd ({size} MiB) does not fit in guest memory above the kernel: raise --memory"
    )]
    InitrdTooLarge {
        /// Initrd size in MiB.
        size: u64,
    },
    /// Reading the initrd file failed.
    #[error("cannot read the initrd")]
    InitrdRead(#[source] std::io::Error),
    /// Writing into guest memory failed.
    #[error("cannot write the {0} into guest memory")]
    GuestWrite(&'static str),
}

/// What the boot vCPU needs to start the kernel.
#[derive(Clone, Copy, Debug)]
pub struct KernelEntry {
    /// 64-bit entry point.
    pub entry: GuestAddress,
}

/// Inputs of the boot protocol.
pub struct BootSource<'a> {
    /// The bzImage.
    pub kernel: &'a mut File,
    /// The initrd, if any.
    pub initrd: Option<&'a mut File>,
    /// The kernel command line.
    pub cmdline: &'a str,
    /// Guest RAM, as [`super::layout::ram_regions`] laid it out.
    pub ram: &'a [RamRegion],
}

fn mib(bytes: u64) -> u64 {
    bytes.div_ceil(1 << 20)
}

/// Loads kernel, initrd and command line, and writes the zero page.
pub fn load_linux(mem: &GuestMemory, src: BootSource<'_>) -> Result<KernelEntry, BootError> {
    let low_ram_end = src.ram.first().map_or(0, RamRegion::end);
    let loaded = BzImage::load(mem, None, src.kernel, Some(GuestAddress(HIMEM_START)))
        .map_err(|e| BootError::Kernel(innermost_reason(&e)))?;
    let mut hdr = loaded.setup_header.ok_or(BootError::No64BitEntry(0))?;
    if hdr.version < MIN_BOOT_PROTOCOL || hdr.xloadflags & XLF_KERNEL_64 == 0 {
        return Err(BootError::No64BitEntry(hdr.version));
    }
    let kernel_start = loaded.kernel_load.0;
    let kernel_end = kernel_start + loaded.kernel_end.max(u64::from(hdr.init_size));
    if kernel_end > low_ram_end {
        return Err(BootError::KernelTooLarge {
            needed: mib(kernel_end),
            have: mib(low_ram_end),
        });
    }

    let cmdline = write_cmdline(mem, &hdr, src.cmdline)?;
    hdr.cmd_line_ptr = CMDLINE_START as u32;
    hdr.cmdline_size = cmdline as u32;

    if let Some(initrd) = src.initrd {
        let (addr, size) = load_initrd(mem, &hdr, initrd, kernel_end, low_ram_end)?;
        hdr.ramdisk_image = addr as u32;
        hdr.ramdisk_size = size as u32;
    }

    hdr.type_of_loader = KERNEL_LOADER_OTHER;
    hdr.boot_flag = KERNEL_BOOT_FLAG_MAGIC;
    let mut params = boot_params {
        hdr,
        acpi_rsdp_addr: ACPI_START,
        ..Default::default()
    };
    let e820 = e820_map(src.ram);
    params.e820_entries = e820.len() as u8;
    params.e820_table[..e820.len()].copy_from_slice(&e820);
    mem.write_obj(params, GuestAddress(ZERO_PAGE_START))
        .map_err(|_| BootError::GuestWrite("zero page"))?;

    Ok(KernelEntry {
        entry: GuestAddress(kernel_start + ENTRY_64_OFFSET),
    })
}

/// The deepest error in a chain: linux-loader's messages nest their sources.
fn innermost_reason(err: &(dyn std::error::Error + 'static)) -> String {
    let mut deepest = err;
    while let Some(next) = deepest.source() {
        deepest = next;
    }
    deepest.to_string()
}

/// Writes the command line; returns its length without the terminator.
fn write_cmdline(mem: &GuestMemory, hdr: &setup_header, text: &str) -> Result<usize, BootError> {
    let max = match hdr.cmdline_size as usize {
        0 => 255,
        n => n.min(CMDLINE_MAX_SIZE - 1),
    };
    let cmdline =
        Cmdline::try_from(text, max + 1).map_err(|reason| BootError::Cmdline { max, reason })?;
    load_cmdline(mem, GuestAddress(CMDLINE_START), &cmdline).map_err(BootError::CmdlineWrite)?;
    Ok(text.len())
}

/// Places the initrd as high as the kernel allows below 3 GiB, page aligned.
fn load_initrd(
    mem: &GuestMemory,
    hdr: &setup_header,
    initrd: &mut File,
    kernel_end: u64,
    low_ram_end: u64,
) -> Result<(u64, u64), BootError> {
    let size = initrd.metadata().map_err(BootError::InitrdRead)?.len();
    let addr_max = match hdr.initrd_addr_max {
        0 => DEFAULT_INITRD_ADDR_MAX,
        n => u64::from(n),
    };
    let limit = low_ram_end.min(addr_max + 1);
    let too_large = BootError::InitrdTooLarge { size: mib(size) };
    let addr = limit.checked_sub(size).ok_or(too_large)? & !(PAGE_SIZE - 1);
    if addr < kernel_end.next_multiple_of(PAGE_SIZE) {
        return Err(BootError::InitrdTooLarge { size: mib(size) });
    }
    mem.read_exact_volatile_from(GuestAddress(addr), initrd, size as usize)
        .map_err(|e| match e {
            vm_memory::GuestMemoryError::IOError(io) => BootError::InitrdRead(io),
            _ => BootError::GuestWrite("initrd"),
        })?;
    Ok((addr, size))
}

/// The e820 map: RAM, with the legacy BIOS area and ECAM reserved (Linux
/// only trusts an MCFG region that firmware reserved).
pub fn e820_map(ram: &[RamRegion]) -> Vec<boot_e820_entry> {
    let entry = |addr: u64, end: u64, r#type| boot_e820_entry {
        addr,
        size: end - addr,
        r#type,
    };
    let mut map = Vec::new();
    for region in ram {
        let (start, end) = (region.start.0, region.end());
        if start == 0 {
            map.push(entry(0, LOW_RAM_END.min(end), E820_RAM));
            if end > HIMEM_START {
                map.push(entry(LOW_RAM_END, HIMEM_START, E820_RESERVED));
                map.push(entry(HIMEM_START, end, E820_RAM));
            }
        } else {
            map.push(entry(start, end, E820_RAM));
        }
    }
    map.push(entry(
        PCI_ECAM_START,
        PCI_ECAM_START + PCI_ECAM_SIZE,
        E820_RESERVED,
    ));
    map.sort_by_key(|e| e.addr);
    map
}

#[cfg(test)]
mod tests {
    use super::super::layout::ram_regions;
    use super::*;

    #[test]
    fn e820_reserves_the_bios_area_and_skips_the_hole() {
        let map = e820_map(&ram_regions(4 << 30));
        let spans: Vec<_> = map
            .iter()
            .map(|e| (e.addr, e.addr + e.size, e.r#type))
            .collect();
        assert_eq!(
            spans,
            vec![
                (0, LOW_RAM_END, E820_RAM),
                (LOW_RAM_END, HIMEM_START, E820_RESERVED),
                (HIMEM_START, 0xc000_0000, E820_RAM),
                (
                    PCI_ECAM_START,
                    PCI_ECAM_START + PCI_ECAM_SIZE,
                    E820_RESERVED
                ),
                (1 << 32, (1 << 32) + (1 << 30), E820_RAM),
            ]
        );
    }

    #[test]
    fn a_file_that_is_not_a_bzimage_is_refused() {
        let mem = GuestMemory::from_ranges(&[(GuestAddress(0), 16 << 20)]).expect("memory");
        let ram = ram_regions(16 << 20);
        let mut f = tempfile_with(&[0u8; 4096]);
        let err = load_linux(
            &mem,
            BootSource {
                kernel: &mut f,
                initrd: None,
                cmdline: "console=ttyS0",
                ram: &ram,
            },
        )
        .expect_err("garbage must be refused");
        assert!(matches!(err, BootError::Kernel(_)), "{err}");
    }

    fn tempfile_with(bytes: &[u8]) -> File {
        use std::io::{Seek, Write};
        let path = std::env::temp_dir().join(format!("minivmm-boot-test-{}", std::process::id()));
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .expect("temp file");
        let _ = std::fs::remove_file(&path);
        f.write_all(bytes).expect("write");
        f.rewind().expect("rewind");
        f
    }
}
