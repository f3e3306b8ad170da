//! Host-physical memory the hypervisor writes: guest RAM ([`HostRam`], from the one RAM
//! pool) and the images the boot loader staged ([`StagedImage`]). Each owns its range and
//! checks every copy against it; the only function taking a raw address is
//! [`HostRam::from_raw`], an `unsafe fn`.
//!
//! The RAM pool is the machine's RAM (the firmware's, from the device tree the loader
//! passed, else the board KDL's: [`discover_ram`]) minus the hypervisor's region (image,
//! stacks, heap), the staging area, and what the firmware reserves or handed over (the
//! DTB, modules), built once ([`init_pool`]); a range it hands out belongs to the
//! [`HostRam`] that holds it until it is dropped.

use super::cpu;
use crate::bootinfo::{self, BootInfo, DtbError, ModuleKind, RamChoice};
use crate::config::ImageDesc;
use crate::mm::{FrameAllocator, FrameError};
use crate::platform::MemoryDesc;
use crate::types::HostPhysAddr;
use alloc::string::String;
use spin::{Mutex, Once};

/// Errors touching host memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MemError {
    /// A copy would run outside the range it is given.
    #[error(
        "{len:#x} bytes at offset {offset:#x} run past the end of a {size:#x}-byte range: \
         the guest image or RAM size is wrong"
    )]
    OutOfRange {
        /// Offset of the copy in the range.
        offset: u64,
        /// Bytes copied.
        len: u64,
        /// Size of the range.
        size: u64,
    },
    /// An image is not where the boot loader staged the VM images.
    #[error(
        "image `{path}` at {base:#x} ({size:#x} bytes) is outside the staging area: rebuild \
         the image so that the VM table and the loader agree"
    )]
    NotStaged {
        /// The image's build-time path.
        path: &'static str,
        /// Where the VM table says it is.
        base: u64,
        /// Its size.
        size: u64,
    },
    /// The RAM pool could not be built or has no room.
    #[error("RAM pool: {0}")]
    Frames(#[from] FrameError),
    /// [`init_pool`] has not run (or failed).
    #[error("the RAM pool is not set up: the board's memory map was unusable at boot")]
    NoPool,
}

/// The `DC ZVA` block size in bytes, if the instruction may be used (`DCZID_EL0`).
fn zva_block() -> Option<u64> {
    let dczid: u64;
    // SAFETY: reading DCZID_EL0 has no side effect.
    unsafe { core::arch::asm!("mrs {}, dczid_el0", out(reg) dczid, options(nomem, nostack)) };
    (dczid & 0x10 == 0).then(|| 4u64 << (dczid & 0xf))
}

/// Zeroes `[dst, dst + len)`: whole `DC ZVA` blocks by `DC ZVA` (one instruction per
/// block, 64 bytes on most cores), the edges by stores.
///
/// # Safety
/// The range is Normal memory mapped read-write at EL2 (`DC ZVA` faults on Device memory)
/// and no Rust reference aliases it.
unsafe fn zero_fast(dst: u64, len: u64) {
    let end = dst + len;
    let Some(bs) = zva_block().filter(|&bs| len >= 2 * bs) else {
        // SAFETY: the caller's contract.
        unsafe { core::ptr::write_bytes(dst as *mut u8, 0, len as usize) };
        return;
    };
    let first = (dst + bs - 1) & !(bs - 1);
    let last = end & !(bs - 1);
    // SAFETY: the head, inside `[dst, end)`: the caller's contract.
    unsafe { core::ptr::write_bytes(dst as *mut u8, 0, (first - dst) as usize) };
    let mut a = first;
    // Eight blocks per loop step: the loop's own add, compare and branch cost about as much
    // as the `DC ZVA` itself, and a VM's first touch of a 2 MiB block zeroes 32768 of them.
    while a + 8 * bs <= last {
        // SAFETY: eight whole blocks inside the range (aligned, ending at or below `last`).
        unsafe {
            core::arch::asm!(
                "dc zva, {a}",
                "add {t}, {a}, {bs}",
                "dc zva, {t}",
                ".rept 6",
                "add {t}, {t}, {bs}",
                "dc zva, {t}",
                ".endr",
                a = in(reg) a,
                bs = in(reg) bs,
                t = out(reg) _,
                options(nostack, preserves_flags)
            )
        };
        a += 8 * bs;
    }
    while a < last {
        // SAFETY: a whole block inside the range (aligned, below `last`).
        unsafe { core::arch::asm!("dc zva, {}", in(reg) a, options(nostack, preserves_flags)) };
        a += bs;
    }
    // SAFETY: the tail, inside `[dst, end)`: the caller's contract.
    unsafe { core::ptr::write_bytes(last as *mut u8, 0, (end - last) as usize) };
}

/// Copies `len` bytes from `src` to `dst`, 64 bytes per loop step with paired loads and
/// stores when both are 16-byte aligned (the images and blocks the hypervisor copies are),
/// byte-exact at the tail.
///
/// # Safety
/// Both ranges are RAM mapped at EL2 (`dst` writable), they do not overlap, and no Rust
/// reference aliases `dst`.
unsafe fn copy_fast(dst: u64, src: u64, len: u64) {
    let bulk = if (dst | src) & 15 == 0 { len & !63 } else { 0 };
    if bulk > 0 {
        // SAFETY: `bulk` bytes from each start lie inside the ranges (bulk <= len); the
        // loop only loads from `src` and stores to `dst`.
        unsafe {
            core::arch::asm!(
                "2:",
                "ldp {a}, {b}, [{s}], #16",
                "ldp {c}, {d}, [{s}], #16",
                "stp {a}, {b}, [{t}], #16",
                "stp {c}, {d}, [{t}], #16",
                "ldp {a}, {b}, [{s}], #16",
                "ldp {c}, {d}, [{s}], #16",
                "stp {a}, {b}, [{t}], #16",
                "stp {c}, {d}, [{t}], #16",
                "subs {n}, {n}, #64",
                "b.ne 2b",
                s = inout(reg) src => _,
                t = inout(reg) dst => _,
                n = inout(reg) bulk => _,
                a = out(reg) _,
                b = out(reg) _,
                c = out(reg) _,
                d = out(reg) _,
                options(nostack)
            )
        };
    }
    // SAFETY: the rest of the ranges, the caller's contract.
    unsafe {
        core::ptr::copy_nonoverlapping(
            (src + bulk) as *const u8,
            (dst + bulk) as *mut u8,
            (len - bulk) as usize,
        )
    };
}

/// Checks `[offset, offset + len)` against a range of `size` bytes.
fn check(offset: u64, len: u64, size: u64) -> Result<(), MemError> {
    match offset.checked_add(len) {
        Some(end) if end <= size => Ok(()),
        _ => Err(MemError::OutOfRange { offset, len, size }),
    }
}

/// A range of host RAM owned by one holder (a VM's RAM): identity-mapped, not aliased by
/// any Rust reference, every access bounds-checked. Not `Clone`: one owner at a time.
#[derive(Debug)]
pub struct HostRam {
    base: u64,
    size: u64,
}

impl HostRam {
    /// Takes ownership of `[base, base + size)`.
    ///
    /// # Safety
    /// 1. The range is normal RAM, identity-mapped read-write by the EL2 page tables.
    /// 2. For as long as the value lives, nothing else reads or writes the range through
    ///    Rust (no other `HostRam`, no reference, not the image, stacks or heap); only
    ///    guests given it through stage 2 may.
    pub unsafe fn from_raw(base: HostPhysAddr, size: u64) -> Self {
        Self { base: base.0, size }
    }

    /// First byte.
    pub fn base(&self) -> HostPhysAddr {
        HostPhysAddr(self.base)
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Writes `data` at `offset` and cleans it to the point of coherency (a guest may run
    /// with its caches off).
    pub fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), MemError> {
        check(offset, data.len() as u64, self.size)?;
        let dst = self.base + offset;
        // SAFETY: (1) `[dst, dst + len)` lies inside the owned range (checked above), RAM
        // mapped read-write by `from_raw`'s contract (1); (2) nothing else references it
        // (contract (2)) and `data` is hypervisor memory, so the two do not overlap.
        unsafe { copy_fast(dst, data.as_ptr() as u64, data.len() as u64) };
        cpu::clean_dcache_range(dst, data.len() as u64);
        Ok(())
    }

    /// Reads `buf.len()` bytes at `offset` (device DMA from the guest's RAM).
    pub fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), MemError> {
        check(offset, buf.len() as u64, self.size)?;
        let src = self.base + offset;
        // SAFETY: (1) `[src, src + len)` lies inside the owned range (checked above), RAM
        // mapped by `from_raw`'s contract (1); (2) no Rust reference aliases it (contract
        // (2)) and `buf` is hypervisor memory. A guest may write the range concurrently:
        // the bytes are copied as they are, never interpreted in place.
        unsafe { copy_fast(buf.as_mut_ptr() as u64, src, buf.len() as u64) };
        Ok(())
    }

    /// Zeroes `len` bytes at `offset`.
    pub fn zero(&mut self, offset: u64, len: u64) -> Result<(), MemError> {
        check(offset, len, self.size)?;
        let dst = self.base + offset;
        // SAFETY: as in `write`: inside the owned range, not referenced elsewhere.
        unsafe { zero_fast(dst, len) };
        cpu::clean_dcache_range(dst, len);
        Ok(())
    }

    /// Copies the first `len` bytes of the staged image `src` to `offset`.
    pub fn copy_part(&mut self, offset: u64, src: &StagedImage, len: u64) -> Result<(), MemError> {
        check(offset, len, self.size)?;
        check(0, len, src.size)?;
        let dst = self.base + offset;
        // SAFETY: (1) the destination is inside the owned range (checked), the source inside
        // the staged image (checked), both RAM mapped by EL2; (2) the staging area is
        // reserved from the RAM pool (`init_pool`), so no `HostRam` overlaps it; a kept
        // loaded image is a `HostRam` of its own, distinct from `self`.
        unsafe { copy_fast(dst, src.base, len) };
        cpu::clean_dcache_range(dst, len);
        Ok(())
    }
}

impl Drop for HostRam {
    /// Returns the range to the pool it came from (a destroyed VM's RAM). A range that is
    /// not the pool's (`from_raw` of other memory) is refused by the allocator and kept.
    fn drop(&mut self) {
        if let Some(pool) = POOL.get() {
            let _ = pool.lock().free(self.base(), self.size);
        }
    }
}

/// An image the boot loader put in the staging area (kernel, initrd, DTB): read-only.
#[derive(Debug)]
pub struct StagedImage {
    base: u64,
    size: u64,
}

impl StagedImage {
    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The `len` bytes at `offset`, as an image of their own (to copy an image into RAM
    /// that is made of several host ranges).
    pub fn slice(&self, offset: u64, len: u64) -> Result<StagedImage, MemError> {
        check(offset, len, self.size)?;
        Ok(StagedImage {
            base: self.base + offset,
            size: len,
        })
    }

    /// Reads `buf.len()` bytes at `offset`.
    pub fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), MemError> {
        check(offset, buf.len() as u64, self.size)?;
        // SAFETY: inside the staged image (checked), which lies in the staging area or a
        // kept loaded image (checked by `staged`): RAM mapped by EL2 that only the loader
        // (or the datastore read, before `keep_loaded`) wrote and nothing writes now; `buf` is hypervisor memory, so they do not overlap.
        unsafe {
            core::ptr::copy_nonoverlapping(
                (self.base + offset) as *const u8,
                buf.as_mut_ptr(),
                buf.len(),
            )
        };
        Ok(())
    }
}

/// Images read at run time (from the datastore): pool RAM kept as a staging area of its
/// own until [`forget_loaded`].
static LOADED: crate::sync::Mutex<alloc::vec::Vec<HostRam>> =
    crate::sync::Mutex::new(alloc::vec::Vec::new());

/// Keeps `ram`, which holds an image read at run time, as a staging area: an
/// [`ImageDesc`] inside it is then [`staged`]. Nothing writes it any more.
pub fn keep_loaded(ram: HostRam) {
    LOADED.lock().push(ram);
}

/// Gives back the loaded image at `base` (its VM definition was deleted) to the pool.
pub fn forget_loaded(base: HostPhysAddr) {
    let mut loaded = LOADED.lock();
    if let Some(i) = loaded.iter().position(|r| r.base == base.0) {
        drop(loaded.swap_remove(i));
    }
}

/// The staged copy of `img`, if it lies inside the VM table's staging area or an image
/// kept by [`keep_loaded`].
pub fn staged(img: &ImageDesc) -> Result<StagedImage, MemError> {
    let table = super::vm_table();
    let within = |base: u64, end: u64| {
        img.staging_base >= base
            && img
                .staging_base
                .checked_add(img.size)
                .is_some_and(|e| e <= end)
    };
    let inside = within(table.staging_base, table.staging_end)
        || LOADED
            .lock()
            .iter()
            .any(|r| within(r.base, r.base + r.size))
        || image_modules().any(|(base, size)| within(base, base + size));
    if !inside {
        return Err(MemError::NotStaged {
            path: img.path,
            base: img.staging_base,
            size: img.size,
        });
    }
    Ok(StagedImage {
        base: img.staging_base,
        size: img.size,
    })
}

static POOL: Once<Mutex<FrameAllocator>> = Once::new();

/// The RAM chosen at boot ([`discover_ram`]).
static RAM: Once<RamChoice> = Once::new();

/// Reads the device tree the loader passed in x0, if any, and decides which RAM the
/// hypervisor uses (`bootinfo::choose_ram`: the firmware's, checked against the board KDL's
/// `memory`, or the KDL's with the reason). Boot CPU, once, after the heap is up and before
/// the EL2 map is built (the MMU is off: the blob is read at its physical address).
pub fn discover_ram() -> &'static RamChoice {
    RAM.call_once(|| {
        let board = super::board();
        let table = super::vm_table();
        let (img_start, _, hv_end) = super::image_layout();
        let dtb = super::boot::boot_dtb().map(|pa| {
            // SAFETY: `pa` is the boot CPU's x0 at entry, which the boot contract
            // (docs/ARCHITECTURE.md "Boot") makes the physical address of a flattened
            // device tree in RAM that nothing writes any more; this runs before the MMU is
            // on, so the address is used as it is.
            (pa, unsafe { read_dtb(pa) })
        });
        bootinfo::choose_ram(
            dtb,
            board.memory,
            (img_start, hv_end - img_start),
            (table.staging_base, table.staging_end - table.staging_base),
        )
    })
}

/// The RAM chosen at boot, if [`discover_ram`] ran.
pub fn ram_choice() -> Option<&'static RamChoice> {
    RAM.get()
}

/// The RAM regions the hypervisor maps and pools: the chosen ones, or the board's.
pub fn ram_regions() -> &'static [MemoryDesc] {
    RAM.get()
        .map_or(super::board().memory, |c| c.regions.as_slice())
}

/// The loader's device tree, when it was read and used.
pub fn boot_info() -> Option<&'static BootInfo> {
    RAM.get().and_then(|c| c.info.as_ref())
}

/// Reads the flattened device tree at `pa`.
///
/// # Safety
/// `pa` must be the physical address of memory that may be read (a flattened device tree
/// the loader placed in RAM, under the boot contract), that nothing writes while this runs,
/// and that is accessible at that address (MMU off, or identity-mapped). The header is
/// checked before `totalsize` bytes are read; the blob's content is not trusted.
unsafe fn read_dtb(pa: u64) -> Result<BootInfo, DtbError> {
    if !pa.is_multiple_of(8) {
        return Err(DtbError::Misaligned(pa));
    }
    // SAFETY: the caller's contract; HEADER_SIZE bytes are the smallest blob.
    let header = unsafe { core::slice::from_raw_parts(pa as *const u8, bootinfo::HEADER_SIZE) };
    let total = bootinfo::dtb_total_size(header)?;
    // SAFETY: the caller's contract; `total` is the blob's own size, at most MAX_DTB_SIZE.
    let blob = unsafe { core::slice::from_raw_parts(pa as *const u8, total) };
    BootInfo::parse(blob, pa)
}

/// `(base, size)` of every `hv,vm-image` module the loader handed over.
fn image_modules() -> impl Iterator<Item = (u64, u64)> {
    boot_info()
        .into_iter()
        .flat_map(|i| i.modules.iter())
        .filter(|m| matches!(m.kind, ModuleKind::VmImage { .. }))
        .map(|m| (m.base, m.size))
}

/// Whether `[base, base + size)` lies inside one of the RAM regions the EL2 map covers.
fn in_mapped_ram(base: u64, size: u64) -> bool {
    base.checked_add(size).is_some_and(|end| {
        ram_regions()
            .iter()
            .any(|r| r.base <= base && end <= r.base.saturating_add(r.size))
    })
}

/// The bytes of a module the loader handed over (the hypervisor owns its range: it is kept
/// out of the pool and nothing writes it).
pub fn module_bytes(m: &bootinfo::Module) -> Result<&'static [u8], String> {
    let known = boot_info().is_some_and(|i| i.modules.contains(m));
    if !known {
        return Err(alloc::format!(
            "{} is not a module of the boot device tree",
            m.node_name
        ));
    }
    if !in_mapped_ram(m.base, m.size) {
        return Err(alloc::format!(
            "{} at {}..{} is not inside the RAM the firmware describes",
            m.node_name,
            bootinfo::hex(m.base),
            bootinfo::hex(m.base.saturating_add(m.size))
        ));
    }
    // SAFETY: (1) the range is a module of the boot device tree, inside RAM that the EL2
    // map covers (checked); (2) `plan_ram` kept it out of the pool and nothing in the
    // hypervisor writes it, so the bytes stay as the loader left them for the life of the
    // host; (3) u8 has no alignment or validity requirement.
    Ok(unsafe { core::slice::from_raw_parts(m.base as *const u8, m.size as usize) })
}

/// Builds the RAM pool from the RAM chosen at boot ([`discover_ram`]; the board's memory
/// if it did not run) minus the ranges it keeps out. Runs once; later calls return the
/// first result.
pub fn init_pool() -> Result<(), MemError> {
    let board = super::board();
    let table = super::vm_table();
    let (img_start, _, hv_end) = super::image_layout();
    // The spin-table release words: the boot CPU writes them after the pool exists, and
    // the firmware's parked CPUs read them until they are released.
    let release_words = board.cpus.iter().filter_map(|c| match c.enable {
        crate::platform::CpuEnable::SpinTable { release_addr } => {
            Some((HostPhysAddr(release_addr), 8))
        }
        crate::platform::CpuEnable::Psci => None,
    });
    let frames = match RAM.get() {
        Some(c) => {
            let reserved: alloc::vec::Vec<_> = c
                .reserved
                .iter()
                .map(|&(b, s)| (HostPhysAddr(b), s))
                .chain(release_words)
                .collect();
            FrameAllocator::from_board(&c.regions, &reserved)?
        }
        None => {
            let reserved: alloc::vec::Vec<_> = [
                (HostPhysAddr(img_start), hv_end - img_start),
                (
                    HostPhysAddr(table.staging_base),
                    table.staging_end - table.staging_base,
                ),
            ]
            .into_iter()
            .chain(release_words)
            .collect();
            FrameAllocator::from_board(board.memory, &reserved)?
        }
    };
    POOL.call_once(|| Mutex::new(frames));
    Ok(())
}

/// Allocates `size` bytes of RAM aligned to `align`, preferring NUMA node `node`.
pub fn alloc_ram(size: u64, align: u64, node: Option<u32>) -> Result<HostRam, MemError> {
    let base = POOL
        .get()
        .ok_or(MemError::NoPool)?
        .lock()
        .alloc(size, align, node)?;
    // SAFETY: (1) the pool holds only board RAM outside the hypervisor's region and the
    // staging area, all identity-mapped read-write by `mmu::build`; (2) the allocator hands
    // a range out once until the `HostRam` holding it is dropped, and nothing else in the hypervisor
    // touches pool memory.
    Ok(unsafe { HostRam::from_raw(base, size) })
}

/// Memory a device reads and writes by DMA (queues, data buffers of a driver plugin): pages
/// from the RAM pool, owned like [`HostRam`] and returned to the pool when dropped, every
/// access bounds-checked. Its bus address is its physical address (no IOMMU between the
/// hypervisor's devices and RAM). For a device that does not snoop the CPU caches
/// (`coherent == false`), [`Self::write`] cleans what it wrote to the point of coherency and
/// [`Self::read`] invalidates before it copies; for a coherent one both only order accesses.
#[derive(Debug)]
pub struct DmaBuffer {
    ram: HostRam,
    coherent: bool,
}

/// Allocates `size` bytes (rounded up to 4 KiB, 4 KiB aligned) of zeroed DMA memory.
pub fn alloc_dma(size: u64, coherent: bool) -> Result<DmaBuffer, MemError> {
    let size = size.div_ceil(0x1000).max(1) * 0x1000;
    let ram = alloc_ram(size, 0x1000, None)?;
    let base = ram.base;
    // SAFETY: `ram` owns `[base, base + size)` (the pool's contract in `alloc_ram`): RAM
    // mapped read-write, referenced by nothing else.
    unsafe { core::ptr::write_bytes(base as *mut u8, 0, size as usize) };
    cpu::dma_sync_range(base, size, coherent);
    Ok(DmaBuffer { ram, coherent })
}

impl DmaBuffer {
    /// The address the device uses.
    pub fn bus_addr(&self) -> u64 {
        self.ram.base
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.ram.size
    }

    /// Writes `data` at `offset` and makes it visible to the device.
    pub fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), MemError> {
        check(offset, data.len() as u64, self.ram.size)?;
        let dst = self.ram.base + offset;
        // SAFETY: (1) inside the owned range (checked), RAM mapped read-write; (2) no Rust
        // reference aliases it and `data` is hypervisor memory, so they do not overlap. The
        // device may only read this range while the driver waits for it.
        unsafe { copy_fast(dst, data.as_ptr() as u64, data.len() as u64) };
        cpu::dma_sync_range(dst, data.len() as u64, self.coherent);
        Ok(())
    }

    /// Reads `buf.len()` bytes at `offset`, as the device left them.
    pub fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), MemError> {
        check(offset, buf.len() as u64, self.ram.size)?;
        let src = self.ram.base + offset;
        cpu::dma_sync_range(src, buf.len() as u64, self.coherent);
        // SAFETY: inside the owned range (checked), RAM mapped by EL2, no Rust reference
        // aliases it. The device may write it concurrently (a completion queue): the bytes
        // are copied as they are and the caller checks them (phase bit) before use.
        unsafe { copy_fast(buf.as_mut_ptr() as u64, src, buf.len() as u64) };
        Ok(())
    }
}

/// NUMA node of the pool RAM holding `pa`.
pub fn node_of(pa: HostPhysAddr) -> Option<u32> {
    POOL.get()?.lock().node_of(pa)
}

/// Free bytes in the pool (all nodes).
pub fn free_ram_bytes() -> u64 {
    POOL.get().map_or(0, |p| p.lock().free_bytes(None))
}

/// The firmware's tables (ACPI) in the board's RAM, read through the EL2 identity map:
/// the [`crate::acpi::PhysRead`] of [`crate::acpi::discover_and_check`].
///
/// A read must lie wholly inside one of the board's RAM regions and outside the
/// hypervisor's own region (image, stacks, heap); anything else (a table the firmware put
/// in memory the board KDL does not list, a pointer into MMIO or nowhere) is a
/// [`crate::acpi::PhysReadError`], never an access.
#[derive(Clone, Copy, Debug)]
pub struct FirmwareRam {
    memory: &'static [crate::platform::MemoryDesc],
    own: (u64, u64),
}

impl FirmwareRam {
    /// Reads `board`'s RAM.
    ///
    /// # Safety
    /// 1. The identity map of `mmu::build(board)` is on for this CPU (every RAM region of
    ///    `board.memory` mapped as Normal memory).
    /// 2. While the value is used, nothing writes the RAM outside the hypervisor's region
    ///    (boot, before any VM or secondary CPU runs; the firmware's tables are not
    ///    written after it handed over).
    pub unsafe fn new(board: &'static crate::platform::BoardDesc) -> Self {
        Self {
            memory: board.memory,
            // Where the image really is (it relocates itself), not the KDL's link address.
            own: {
                let (start, _, region_end) = super::image_layout();
                (start, region_end - start)
            },
        }
    }
}

impl crate::acpi::PhysRead for FirmwareRam {
    fn read(&self, pa: u64, buf: &mut [u8]) -> Result<(), crate::acpi::PhysReadError> {
        let len = buf.len() as u64;
        if !crate::acpi::readable_firmware_ram(self.memory, self.own, pa, len) {
            return Err(crate::acpi::PhysReadError { pa, len });
        }
        if len == 0 {
            return Ok(());
        }
        // SAFETY: `[pa, pa + len)` lies inside one board RAM region, identity-mapped Normal
        // memory (`new`'s contract (1)), and outside the hypervisor's region, so no Rust
        // object lives there; nothing writes it meanwhile (contract (2)); `buf` is
        // hypervisor memory, so the ranges do not overlap.
        unsafe { copy_fast(buf.as_mut_ptr() as u64, pa, len) };
        Ok(())
    }
}

/// The firmware's RAM as the boot CPU reads it at boot, once its identity map is on (None
/// before: with the MMU off every access is Device memory, and the tables' unaligned
/// fields would fault). Called before any VM or secondary CPU runs, so nothing writes the
/// firmware's RAM meanwhile (`FirmwareRam::new`'s contract).
pub fn boot_firmware_ram(board: &'static crate::platform::BoardDesc) -> Option<FirmwareRam> {
    use aarch64_cpu::registers::{Readable, SCTLR_EL2};
    if !SCTLR_EL2.is_set(SCTLR_EL2::M) {
        return None;
    }
    // SAFETY: (1) the MMU is on, with `mmu::build`'s identity map, which maps the board's
    // RAM regions as Normal memory; (2) the caller runs at boot on the boot CPU, before
    // VMs and secondary CPUs (see above), so nothing writes the firmware's RAM.
    Some(unsafe { FirmwareRam::new(board) })
}
