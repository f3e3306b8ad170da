//! The UEFI application: boot services (console, files, pages, memory map, configuration
//! table), then the handoff (`arch`).

mod arch;

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt::Write;
use core::ptr::NonNull;
use uefi::boot::{self, AllocateType, MemoryType};
use uefi::mem::memory_map::MemoryMap;
use uefi::proto::media::file::{Directory, File, FileAttribute, FileInfo, FileMode};
use uefi::table::cfg::ACPI2_GUID;
use uefi::{CString16, Status};
use uefi_loader::handoff::{self, Handoff, Module, ModuleKind};
use uefi_loader::header::{self, ALIGN};
use uefi_loader::ram::{self, PAGE};
use uefi_loader::vms;

/// The hypervisor Image `cargo xtask build --uefi` embedded (empty without it).
static HV_IMAGE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/hypervisor.bin"));

/// The loader's heap: its own pages, so that it works after `ExitBootServices` too (the
/// device tree is written then).
#[global_allocator]
static HEAP: buddy_system_allocator::LockedHeap<32> = buddy_system_allocator::LockedHeap::new();
/// Heap size.
const HEAP_BYTES: usize = 2 << 20;

/// Set once boot services are gone: nothing may print then.
static EXITED: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

macro_rules! say {
    ($($arg:tt)*) => {
        say(format_args!($($arg)*))
    };
}

/// Prints one line on the firmware's console (`[hv-uefi] ...`).
fn say(args: core::fmt::Arguments<'_>) {
    if EXITED.load(core::sync::atomic::Ordering::Relaxed) {
        return;
    }
    uefi::system::with_stdout(|out| {
        // A console that fails to print is no reason to stop booting.
        let _ = out.write_fmt(format_args!("[hv-uefi] {args}\r\n"));
    });
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    say!("internal error: {info}");
    arch::halt()
}

#[uefi::entry]
fn main() -> Status {
    say!("hypervisor UEFI loader");
    let el = arch::current_el();
    if el != 2 {
        say!(
            "error: the firmware started this application at EL{el}; the hypervisor must \
             start at EL2 (enable the virtualization extensions: QEMU -M virt,virtualization=on, \
             or the firmware's EL2 / hypervisor option)"
        );
        boot::stall(5_000_000);
        return Status::UNSUPPORTED;
    }
    say!("running at EL2");
    // SAFETY: called once, before any allocation.
    if let Err(e) = unsafe { init_heap() } {
        say!("error: {e}");
        return Status::OUT_OF_RESOURCES;
    }
    match load() {
        Ok(never) => match never {},
        Err(e) => {
            say!("error: {e}");
            say!("nothing was started; returning to the firmware");
            boot::stall(5_000_000);
            Status::ABORTED
        }
    }
}

/// Gives the heap its pages.
///
/// # Safety
/// Once, before anything allocates.
unsafe fn init_heap() -> Result<(), String> {
    let pages = (HEAP_BYTES as u64 / PAGE) as usize;
    let p = boot::allocate_pages(AllocateType::AnyPages, MemoryType::LOADER_DATA, pages)
        .map_err(|e| format!("cannot allocate the loader's heap: {e}"))?;
    // SAFETY: the pages are ours (LoaderData, never freed: they stay the heap until the
    // handoff) and nothing else uses them.
    unsafe { HEAP.lock().init(p.as_ptr() as usize, HEAP_BYTES) };
    Ok(())
}

/// Pages allocated with `AllocatePages` (LoaderData), freed on drop unless handed over.
struct Pages {
    addr: u64,
    pages: usize,
}

impl Pages {
    /// `bytes` (rounded up to pages) anywhere.
    fn any(bytes: u64, what: &str) -> Result<Self, String> {
        let pages = bytes.max(1).div_ceil(PAGE) as usize;
        let p = boot::allocate_pages(AllocateType::AnyPages, MemoryType::LOADER_DATA, pages)
            .map_err(|e| format!("cannot allocate {pages} pages for {what}: {e}"))?;
        Ok(Self {
            addr: p.as_ptr() as u64,
            pages,
        })
    }

    /// `bytes` (rounded up to pages) at an `align`-aligned address: `align` more is
    /// allocated, then the head and tail around the aligned part are given back.
    fn aligned(bytes: u64, align: u64, what: &str) -> Result<Self, String> {
        let want = bytes.div_ceil(PAGE) * PAGE;
        let over = Self::any(want + align, what)?;
        let start = over.addr.div_ceil(align) * align;
        let head = ((start - over.addr) / PAGE) as usize;
        let tail = over.pages - head - (want / PAGE) as usize;
        let (base, total) = (over.addr, over.pages);
        core::mem::forget(over);
        for (at, n) in [(base, head), (start + want, tail)] {
            if n == 0 {
                continue;
            }
            if let Some(p) = NonNull::new(at as *mut u8) {
                // SAFETY: these pages are part of the allocation just made, nothing
                // refers to them; the aligned middle stays allocated.
                if let Err(e) = unsafe { boot::free_pages(p, n) } {
                    // Keeping them costs memory, not correctness.
                    say!("note: could not give back {n} pages at {at:#x} ({e}); {total} kept");
                }
            }
        }
        Ok(Self {
            addr: start,
            pages: (want / PAGE) as usize,
        })
    }

    fn bytes(&self) -> u64 {
        self.pages as u64 * PAGE
    }

    fn slice_mut(&mut self) -> &mut [u8] {
        // SAFETY: the pages are allocated to us (LoaderData) and mapped by the firmware
        // (identity, read-write); `self` is their only owner.
        unsafe { core::slice::from_raw_parts_mut(self.addr as *mut u8, self.bytes() as usize) }
    }

    /// Kept for the hypervisor: never freed.
    fn hand_over(self) -> (u64, u64) {
        let r = (self.addr, self.bytes());
        core::mem::forget(self);
        r
    }
}

impl Drop for Pages {
    fn drop(&mut self) {
        if let Some(p) = NonNull::new(self.addr as *mut u8) {
            // SAFETY: allocated by `Pages::any`/`aligned` with this count; the owner is
            // going away, so nothing refers to them.
            let _ = unsafe { boot::free_pages(p, self.pages) };
        }
    }
}

/// A file read from the ESP into its own pages.
struct Loaded {
    pages: Pages,
    len: u64,
}

/// Reads the ESP file `path` (`\HV\...`) into new pages.
fn read_file(root: &mut Directory, path: &str) -> Result<Loaded, String> {
    let name = CString16::try_from(path)
        .map_err(|_| format!("{path}: not a name the firmware can open (UCS-2)"))?;
    let handle = root
        .open(&name, FileMode::Read, FileAttribute::empty())
        .map_err(|e| format!("cannot open {path} on the ESP: {e}"))?;
    let mut file = handle
        .into_regular_file()
        .ok_or_else(|| format!("{path} on the ESP is a directory, not a file"))?;
    let info = file
        .get_boxed_info::<FileInfo>()
        .map_err(|e| format!("cannot read the size of {path}: {e}"))?;
    let len = info.file_size();
    let mut pages = Pages::any(len, path)?;
    let buf = &mut pages.slice_mut()[..len as usize];
    let mut done = 0;
    while done < buf.len() {
        let n = file
            .read(&mut buf[done..])
            .map_err(|e| format!("cannot read {path}: {e}"))?;
        if n == 0 {
            return Err(format!(
                "{path}: the file ended after {done} of {len} bytes"
            ));
        }
        done += n;
    }
    Ok(Loaded { pages, len })
}

fn mib(bytes: u64) -> String {
    if bytes >= 1 << 20 {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{} KiB", bytes.div_ceil(1024))
    }
}

/// Everything up to the handoff; returns only with an error (nothing handed over yet).
fn load() -> Result<core::convert::Infallible, String> {
    let hdr = header::parse(HV_IMAGE).map_err(|e| e.to_string())?;
    say!(
        "hypervisor Image: {} bytes, needs {} (image_size {:#x}), text_offset {:#x}",
        HV_IMAGE.len(),
        mib(hdr.image_size),
        hdr.image_size,
        hdr.text_offset
    );

    let mut fs = boot::get_image_file_system(boot::image_handle()).map_err(|e| {
        format!("cannot open the file system this application was loaded from: {e}")
    })?;
    let mut root = fs
        .open_volume()
        .map_err(|e| format!("cannot open the ESP's root directory: {e}"))?;

    let toml = read_file(&mut root, vms::VMS_PATH)?;
    let text = {
        let bytes = &toml_bytes(&toml);
        core::str::from_utf8(bytes)
            .map_err(|e| format!("{} is not UTF-8: {e}", vms::VMS_PATH))?
            .to_string()
    };
    let (vm_count, paths) = vms::image_paths(&text)?;
    say!(
        "{}: {} bytes, {vm_count} VM(s), {} image(s)",
        vms::VMS_PATH,
        toml.len,
        paths.len()
    );
    let mut images: Vec<(String, Loaded)> = Vec::new();
    for path in &paths {
        let esp = vms::esp_path(path)?;
        let f = read_file(&mut root, &esp)?;
        say!("read {esp}: {} bytes at {:#x}", f.len, f.pages.addr);
        images.push((path.clone(), f));
    }
    drop(root);
    drop(fs);

    // The Image at a 2 MiB-aligned base + text_offset, its whole image_size ours.
    let region = hdr.text_offset + hdr.image_size;
    let mut hv = Pages::aligned(region, ALIGN, "the hypervisor")?;
    let load_addr = hv.addr + hdr.text_offset;
    {
        let mem = hv.slice_mut();
        let at = hdr.text_offset as usize;
        mem[..at].fill(0);
        mem[at..at + HV_IMAGE.len()].copy_from_slice(HV_IMAGE);
        mem[at + HV_IMAGE.len()..].fill(0);
    }
    say!(
        "hypervisor at {load_addr:#x}..{:#x}",
        load_addr + hdr.image_size
    );

    let rsdp = uefi::system::with_config_table(|t| {
        t.iter()
            .find(|e| e.guid == ACPI2_GUID)
            .map(|e| e.address as u64)
    });
    match rsdp {
        Some(a) => say!("ACPI 2.0 RSDP at {a:#x}"),
        None => say!("no ACPI 2.0 RSDP in the firmware's configuration table"),
    }

    // The DTB's pages, sized from today's map with room for it to grow by the time of
    // the final one (each usable range is one `/memory` node of well under 128 bytes).
    let map = boot::memory_map(MemoryType::LOADER_DATA)
        .map_err(|e| format!("cannot read the memory map: {e}"))?;
    let now = ram::usable_ranges(map.entries().map(descriptor));
    say!(
        "UEFI memory map: {} entries, {} of usable RAM in {} range(s)",
        map.entries().len(),
        mib(now.iter().map(|r| r.1).sum()),
        now.len()
    );
    let dtb_bytes = 64 * 1024 + 128 * (map.entries().len() as u64 + 64);
    drop(map);
    let mut dtb = Pages::any(dtb_bytes, "the device tree")?;
    let dtb_addr = dtb.addr;

    // The modules: the VM file, then each image, as the hypervisor finds them in /chosen.
    let mut kept: Vec<(u64, u64)> = Vec::new();
    let mut modules: Vec<Module<'_>> = Vec::new();
    modules.push(Module {
        addr: toml.pages.addr,
        size: toml.len,
        kind: ModuleKind::VmConfig,
    });
    for (path, f) in &images {
        modules.push(Module {
            addr: f.pages.addr,
            size: f.len,
            kind: ModuleKind::VmImage { path },
        });
    }
    say!(
        "exiting boot services; the hypervisor starts at {load_addr:#x} with the device tree \
         at {dtb_addr:#x}"
    );

    EXITED.store(true, core::sync::atomic::Ordering::Relaxed);
    // SAFETY: no protocol is open any more (the file system and its files were dropped
    // above), the heap is our own pages, and nothing prints from here on (`EXITED`).
    // `exit_boot_services` retries with a fresh map when the key went stale.
    let map = unsafe { boot::exit_boot_services(Some(MemoryType::LOADER_DATA)) };
    let ranges = ram::usable_ranges(map.entries().map(descriptor));
    let blob = handoff::write_dtb(&Handoff {
        ram: &ranges,
        hypervisor: (load_addr, hdr.image_size),
        modules: &modules,
        rsdp,
        dtb: (dtb_addr, dtb.bytes()),
    });
    let blob = match blob {
        Ok(b) if b.len() as u64 <= dtb.bytes() => b,
        // Nothing can be reported now (no console, the hypervisor not started).
        _ => arch::halt(),
    };
    dtb.slice_mut()[..blob.len()].copy_from_slice(&blob);

    kept.push(hv.hand_over());
    kept.push(dtb.hand_over());
    kept.push((toml.pages.addr, toml.pages.bytes()));
    core::mem::forget(toml);
    for (_, f) in images {
        kept.push((f.pages.addr, f.pages.bytes()));
        core::mem::forget(f);
    }
    // SAFETY: boot services are gone; every range in `kept` is RAM allocated to us and
    // identity-mapped; the Image at `load_addr` was copied whole with its image_size
    // behind it, and `dtb_addr` holds the device tree; nothing runs after this but the
    // hypervisor.
    unsafe { arch::enter(load_addr, dtb_addr, &kept) }
}

/// The VM file's bytes.
fn toml_bytes(f: &Loaded) -> &[u8] {
    // SAFETY: the pages hold the file's `len` bytes, read above; they live as long as `f`.
    unsafe { core::slice::from_raw_parts(f.pages.addr as *const u8, f.len as usize) }
}

fn descriptor(d: &uefi::mem::memory_map::MemoryDescriptor) -> ram::Descriptor {
    ram::Descriptor {
        ty: d.ty.0,
        start: d.phys_start,
        pages: d.page_count,
        attribute: d.att.bits(),
    }
}
