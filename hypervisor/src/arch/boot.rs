//! Entry at EL2: per-CPU stacks, BSS, vector base, then Rust (`hv_cpu_entry` in the crate root).

use core::arch::global_asm;

/// Bytes of stack per physical CPU.
pub const STACK_SIZE: usize = 32 * 1024;
/// Physical CPUs the image has stacks for.
pub const MAX_CPUS: usize = 192;

/// `flags` of the Image header: little-endian (bit 0 clear), 4 KiB pages (bits 1-2 = 1),
/// may be placed anywhere in physical memory (bit 3).
pub const IMAGE_FLAGS: u64 = (1 << 1) | (1 << 3);
/// `R_AARCH64_RELATIVE`, the only dynamic relocation type a static PIE has (in `.rela.dyn`;
/// most of them are packed in `.relr.dyn`, which has no types).
pub const R_AARCH64_RELATIVE: u64 = 1027;

global_asm!(
    r#"
.section .text.boot, "ax"
// The arm64 Linux Image header (Documentation/arch/arm64/booting.rst), 64 bytes at offset 0:
// a loader (QEMU -kernel, U-Boot booti, the UEFI loader) places the flat image by it and
// enters at offset 0 with x0 = the DTB's physical address. The ELF enters here too.
.global _start
_start:
    b       0f                      // code0: branch over the header
    .long   0                       // code1
    .quad   0                       // text_offset
    .quad   __hv_image_size         // image_size: the whole region (image, .bss, heap)
    .quad   {flags}                 // flags
    .quad   0                       // res2
    .quad   0                       // res3
    .quad   0                       // res4
    .ascii  "ARM\x64"               // magic
    .long   0                       // res5

0:
    // MMU and D-cache off, x0 = DTB (0 when the loader passes none). Keep it in x20.
    mov     x20, x0
    // Relocate: delta = where we run - where the image was last relocated for (9f: the link
    // address until a first pass, then where that pass ran; so entering twice at one place
    // applies nothing twice). Two tables, both written by the linker (xtask checks them):
    // - .rela.dyn: every R_AARCH64_RELATIVE entry says "*(r_offset + delta) = r_addend +
    //   delta" (absolute, so harmless to repeat);
    // - .relr.dyn (`-z pack-relative-relocs`): the same relocations packed, the value
    //   kept in place: "*(where + delta) += delta". An even entry is the link-time
    //   address of one word to relocate, and the next word follows it; an odd entry is a
    //   bitmap: bit i (1..=63) relocates the (i-1)th word from there, then the place moves
    //   on 63 words.
    // No stack, no Rust; the MMU and caches are off.
    adrp    x1, __image_start
    add     x1, x1, :lo12:__image_start
    ldr     x2, 9f
    sub     x9, x1, x2
    cbz     x9, 6f
    adrp    x3, __rela_start
    add     x3, x3, :lo12:__rela_start
    adrp    x4, __rela_end
    add     x4, x4, :lo12:__rela_end
5:  cmp     x3, x4
    b.hs    20f
    ldp     x5, x6, [x3], #16       // r_offset, r_info
    ldr     x7, [x3], #8            // r_addend
    cmp     x6, #{relative}
    b.ne    8f                      // no other type in a static PIE (xtask checks it)
    add     x7, x7, x9
    str     x7, [x5, x9]
    b       5b
20: adrp    x3, __relr_start
    add     x3, x3, :lo12:__relr_start
    adrp    x4, __relr_end
    add     x4, x4, :lo12:__relr_end
    mov     x10, #0                 // the next word to relocate (where we run)
21: cmp     x3, x4
    b.hs    25f
    ldr     x5, [x3], #8
    tbnz    x5, #0, 22f
    add     x10, x5, x9             // an address: relocate that word
    ldr     x7, [x10]
    add     x7, x7, x9
    str     x7, [x10], #8
    b       21b
22: mov     x11, x10                // a bitmap of the 63 words from x10
23: lsr     x5, x5, #1
    cbz     x5, 24f
    tbz     x5, #0, 26f
    ldr     x7, [x11]
    add     x7, x7, x9
    str     x7, [x11]
26: add     x11, x11, #8
    b       23b
24: add     x10, x10, #(63 * 8)
    b       21b
25: adr     x2, 9f                  // done for this place
    str     x1, [x2]
6:
    dsb     sy
    isb
    mov     x19, #0
    b       1f
8:  wfe                             // an unknown relocation: nothing safe to run
    b       8b
    .balign 8
9:  .quad   __hv_link_base          // absolute: the link-time address of __image_start

.global _spin_table_start
_spin_table_start:
    // A CPU released from a spin table (its firmware parked it in WFE on a release word):
    // no context id, so find our index by MPIDR in HV_SPIN_MPIDRS, which the boot CPU
    // filled (entry = affinity | bit 63) and cleaned to the point of coherency before it
    // wrote the release word. MMU and caches are off. Not found: park for good.
    mrs     x1, mpidr_el1
    mov     x2, #0xffffff
    and     x2, x1, x2
    ubfx    x1, x1, #32, #8
    orr     x1, x2, x1, lsl #32
    orr     x1, x1, #(1 << 63)
    adrp    x2, {spin}
    add     x2, x2, :lo12:{spin}
    mov     x0, #0
11: ldr     x3, [x2, x0, lsl #3]
    cmp     x3, x1
    b.eq    _secondary_start
    add     x0, x0, #1
    cmp     x0, #{max_cpus}
    b.lo    11b
12: wfe
    b       12b

.global _secondary_start
_secondary_start:
    // PSCI CPU_ON passes our context id (the CPU index) in x0. The boot CPU relocated the
    // image already, and may have given this CPU a stack on its own NUMA node (its top in
    // HV_STACK_TOPS[index], cleaned to the point of coherency: we read it with the caches
    // off).
    mov     x19, x0
    adrp    x1, {tops}
    add     x1, x1, :lo12:{tops}
    ldr     x1, [x1, x19, lsl #3]
    cbnz    x1, 10f
1:
    // MMU and caches are off here; the default stacks live in .hv_stacks (see HV_STACKS).
    adrp    x1, {stacks}
    add     x1, x1, :lo12:{stacks}
    add     x2, x19, #1
    mov     x3, #{stack_size}
    madd    x1, x2, x3, x1
10:
    mov     sp, x1
    msr     tpidr_el2, x19
    cbnz    x19, 3f
    // Boot CPU only: zero .bss (the stacks are not in it: see HV_STACKS).
    adrp    x1, __bss_start
    add     x1, x1, :lo12:__bss_start
    adrp    x2, __bss_end
    add     x2, x2, :lo12:__bss_end
2:  cmp     x1, x2
    b.hs    7f
    str     xzr, [x1], #8
    b       2b
7:
    // Then keep the loader's DTB pointer (in .bss, so after zeroing it).
    adrp    x1, {dtb}
    str     x20, [x1, :lo12:{dtb}]
3:
    adrp    x1, {vectors}
    add     x1, x1, :lo12:{vectors}
    msr     vbar_el2, x1
    isb
    mov     x0, x19
    bl      {entry}
4:  wfe
    b       4b
"#,
    flags = const IMAGE_FLAGS,
    relative = const R_AARCH64_RELATIVE,
    stacks = sym HV_STACKS,
    tops = sym HV_STACK_TOPS,
    spin = sym HV_SPIN_MPIDRS,
    max_cpus = const MAX_CPUS,
    stack_size = const STACK_SIZE,
    dtb = sym HV_BOOT_DTB,
    vectors = sym super::exception::hv_vectors,
    entry = sym crate::hv_cpu_entry,
);

/// The x0 the loader entered the boot CPU with: the DTB's physical address, or 0. Written
/// once by the boot code above (after .bss is zeroed, before any Rust code), then only read.
#[unsafe(no_mangle)]
static HV_BOOT_DTB: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// The physical address of the device tree the loader passed in x0, if it passed one.
pub fn boot_dtb() -> Option<u64> {
    match HV_BOOT_DTB.load(core::sync::atomic::Ordering::Relaxed) {
        0 => None,
        pa => Some(pa),
    }
}

unsafe extern "C" {
    static __image_start: u8;
}

/// Where the image was linked (the board KDL's `hypervisor load=`) and where it runs: the
/// two differ when a loader placed the flat Image elsewhere and the boot code relocated it.
pub fn link_and_load_address() -> (u64, u64) {
    let link: u64;
    // SAFETY: only materialises the value of the absolute linker symbol `__hv_link_base`
    // in a register (absolute MOVW relocations, which do not move with the image); no
    // memory is accessed.
    unsafe {
        core::arch::asm!(
            "movz {0}, #:abs_g3:{1}",
            "movk {0}, #:abs_g2_nc:{1}",
            "movk {0}, #:abs_g1_nc:{1}",
            "movk {0}, #:abs_g0_nc:{1}",
            out(reg) link,
            sym __hv_link_base,
            options(nomem, nostack, preserves_flags)
        )
    };
    (link, core::ptr::addr_of!(__image_start) as u64)
}

unsafe extern "C" {
    static __hv_link_base: u8;
    static __bss_start: u8;
    static __bss_end: u8;
}

/// `[start, end)` of each part of the image the boot CPU writes with the MMU and caches
/// off: the loaded image (relocations), the stacks of the first `cpus` CPUs (each starts on
/// its slot with the MMU off) and `.bss`. The rest of the image's memory, and the other
/// CPUs' stack slots, are not written before the MMU is on, so a line a loader left there
/// (clean, by the boot contract) still matches memory.
pub fn written_before_mmu(cpus: usize) -> [(u64, u64); 3] {
    let stacks = core::ptr::addr_of!(HV_STACKS) as u64;
    let used = cpus.clamp(1, MAX_CPUS) as u64 * STACK_SIZE as u64;
    [
        (super::image_layout().0, stacks),
        (stacks, stacks + used),
        (
            core::ptr::addr_of!(__bss_start) as u64,
            core::ptr::addr_of!(__bss_end) as u64,
        ),
    ]
}

/// Per-CPU stacks. Page aligned: the AAPCS64 wants SP 16-byte aligned, and an 8-byte atomic
/// on a stack that is not faults (a byte array alone is only 1-byte aligned; whole-image LTO
/// happened to place it well, a link without LTO put it at an address ending in 0xc).
#[repr(C, align(4096))]
struct Stacks([[u8; STACK_SIZE]; MAX_CPUS]);

/// Never zeroed: the linker script puts `.bss.hv_stacks` in an output section of its own
/// (`.hv_stacks`, no file bytes) in front of `.bss`, outside what the boot code clears. A
/// stack needs no zeroes (every frame writes before it reads), and clearing these 6 MiB
/// (192 CPUs x 32 KiB) cost the boot CPU about 2.2 M instructions of every VM start.
/// `MaybeUninit` says so: no Rust code reads the bytes, only the boot code takes addresses.
#[unsafe(link_section = ".bss.hv_stacks")]
#[unsafe(no_mangle)]
static mut HV_STACKS: core::mem::MaybeUninit<Stacks> = core::mem::MaybeUninit::uninit();

/// The top of the stack each secondary CPU starts on, when the boot CPU gave it one of its
/// own node's RAM ([`set_stack_top`]); 0: its slot of [`HV_STACKS`]. Only secondaries read
/// it (the boot CPU takes its stack before .bss is zeroed).
#[unsafe(no_mangle)]
static HV_STACK_TOPS: [core::sync::atomic::AtomicU64; MAX_CPUS] =
    [const { core::sync::atomic::AtomicU64::new(0) }; MAX_CPUS];

/// The MPIDR affinity of each CPU started by spin table, at its index, with bit 63 set
/// (0: no such CPU): `_spin_table_start` finds its index here.
#[unsafe(no_mangle)]
static HV_SPIN_MPIDRS: [core::sync::atomic::AtomicU64; MAX_CPUS] =
    [const { core::sync::atomic::AtomicU64::new(0) }; MAX_CPUS];

/// Records that CPU `cpu` (not started yet) has MPIDR affinity `mpidr`, for
/// `_spin_table_start`, and cleans the entry to the point of coherency (the CPU reads it
/// with its caches off). Returns the spin-table entry point's physical address.
pub fn prepare_spin_table_entry(cpu: usize, mpidr: u64) -> Option<u64> {
    let slot = HV_SPIN_MPIDRS.get(cpu)?;
    slot.store(mpidr | 1 << 63, core::sync::atomic::Ordering::Release);
    super::cpu::clean_dcache_range(slot.as_ptr() as u64, 8);
    Some(_spin_table_start as *const () as u64)
}

/// Gives CPU `cpu` (not yet started) the stack `[base, base + STACK_SIZE)` instead of its
/// .bss slot. The secondary starts with its MMU and caches off, so the table entry and the
/// whole stack are cleaned and invalidated to the point of coherency: no line of them stays
/// in a cache, where a later write-back would overwrite what the secondary pushed.
///
/// # Safety
/// `[base, base + STACK_SIZE)` is RAM mapped read-write at EL2, 16-byte aligned, owned by
/// nothing else for the life of the host, and `cpu` has not been started yet.
pub unsafe fn set_stack_top(cpu: usize, base: u64) {
    let Some(slot) = HV_STACK_TOPS.get(cpu) else {
        return;
    };
    super::cpu::clean_dcache_range(base, STACK_SIZE as u64);
    slot.store(
        base + STACK_SIZE as u64,
        core::sync::atomic::Ordering::Release,
    );
    super::cpu::clean_dcache_range(slot.as_ptr() as u64, 8);
}

/// Gives secondary CPU `cpu` (not started yet) a stack allocated on NUMA node `node`, kept
/// for the life of the host, and returns its base; `None` (the CPU keeps its .bss stack)
/// when the node's heap had no room and the block came from another node.
pub fn give_node_stack(cpu: usize, node: u32) -> Option<u64> {
    #[repr(C, align(4096))]
    struct Stack([u8; STACK_SIZE]);
    let stack = super::heap::with_alloc_node(node, alloc::boxed::Box::<Stack>::new_uninit);
    let base = stack.as_ptr() as u64;
    if super::heap::heap_node_of(base as usize) != Some(node) {
        return None;
    }
    let base = alloc::boxed::Box::leak(stack).as_mut_ptr() as u64;
    // SAFETY: `[base, base + STACK_SIZE)` is a heap block leaked above, so owned by nothing
    // else for the life of the host; heap memory is RAM mapped read-write at EL2; the block
    // is 4 KiB aligned (`Stack`'s alignment).
    unsafe { set_stack_top(cpu, base) };
    Some(base)
}

unsafe extern "C" {
    fn _secondary_start();
    fn _spin_table_start();
}

/// Physical address of the secondary entry point, for PSCI CPU_ON.
pub fn secondary_entry_address() -> u64 {
    _secondary_start as *const () as u64
}
