//! Entry at EL2: per-CPU stacks, BSS, vector base, then Rust (`hv_cpu_entry` in the crate root).

use core::arch::global_asm;

/// Bytes of stack per physical CPU.
pub const STACK_SIZE: usize = 32 * 1024;
/// Physical CPUs the image has stacks for.
pub const MAX_CPUS: usize = 192;

global_asm!(
    r#"
.section .text.boot, "ax"
.global _start
_start:
    mov     x19, #0
    b       1f

.global _secondary_start
_secondary_start:
    // PSCI CPU_ON passes our context id (the CPU index) in x0.
    mov     x19, x0
1:
    // MMU and caches are off here; stacks live in .bss.hv_stacks.
    adrp    x1, {stacks}
    add     x1, x1, :lo12:{stacks}
    add     x2, x19, #1
    mov     x3, #{stack_size}
    madd    x1, x2, x3, x1
    mov     sp, x1
    msr     tpidr_el2, x19
    cbnz    x19, 3f
    // Boot CPU only: zero .bss (our stack is in it, but nothing is on it yet).
    adrp    x1, __bss_start
    add     x1, x1, :lo12:__bss_start
    adrp    x2, __bss_end
    add     x2, x2, :lo12:__bss_end
2:  cmp     x1, x2
    b.hs    3f
    str     xzr, [x1], #8
    b       2b
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
    stacks = sym HV_STACKS,
    stack_size = const STACK_SIZE,
    vectors = sym super::exception::hv_vectors,
    entry = sym crate::hv_cpu_entry,
);

/// Per-CPU stacks, in .bss: the boot CPU zeroes .bss before it first pushes to its stack.
/// Page aligned: the AAPCS64 wants SP 16-byte aligned, and an 8-byte atomic on a stack that
/// is not faults (a byte array alone is only 1-byte aligned; whole-image LTO happened to
/// place it well, a link without LTO put it at an address ending in 0xc).
#[repr(C, align(4096))]
struct Stacks([[u8; STACK_SIZE]; MAX_CPUS]);

#[unsafe(link_section = ".bss.hv_stacks")]
#[unsafe(no_mangle)]
static mut HV_STACKS: Stacks = Stacks([[0; STACK_SIZE]; MAX_CPUS]);

unsafe extern "C" {
    fn _secondary_start();
}

/// Physical address of the secondary entry point, for PSCI CPU_ON.
pub fn secondary_entry_address() -> u64 {
    _secondary_start as *const () as u64
}
