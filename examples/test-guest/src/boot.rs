//! Linux arm64 `Image` header, boot and secondary entry points, and the EL1 vector table.
//!
//! The header follows Documentation/arch/arm64/booting.rst: `code0` branches to the entry,
//! `text_offset` 0x80000, `image_size` covers `.bss` and the stacks, `flags` 0x2 (little
//! endian, 4 KiB pages, bit 3 clear: the image is linked at RAM base + 0x80000 and is not
//! position independent, so it must sit at the start of RAM), magic `ARM\x64` at 0x38.

use crate::dt::MAX_CPUS;
use crate::exceptions::{handle_exception, ExceptionFrame};
use core::arch::global_asm;

/// Bytes of stack per CPU (`.stacks` in `image.ld` holds `MAX_CPUS` of them).
pub const STACK_SIZE: usize = 0x4000;

/// `SCTLR_EL1`: RES1 bits of Armv8.0 (29, 28, 23, 22, 20, 11) and I (bit 12); M, C, A = 0:
/// MMU and data cache off, no alignment checking beyond what Device memory imposes.
const SCTLR_EL1_VALUE: u64 = 0x30d0_1800;
/// `CPACR_EL1.FPEN = 0b11`: FP/SIMD does not trap (the compiler uses NEON registers).
const CPACR_EL1_FPEN: u64 = 3 << 20;

extern "C" {
    /// Entry of a secondary CPU started by PSCI `CPU_ON` (x0 = CPU index).
    pub fn secondary_entry();
}

global_asm!(
    r#"
.section .text.head, "ax"
.global _start
_start:
    b       primary_entry           // code0
    .word   0                       // code1
    .quad   0x80000                 // text_offset
    .quad   __image_size            // image_size
    .quad   0x2                     // flags: LE, 4 KiB pages, not relocatable
    .quad   0                       // res2
    .quad   0                       // res3
    .quad   0                       // res4
    .byte   0x41, 0x52, 0x4d, 0x64  // magic "ARM\x64"
    .word   0                       // res5

.section .text.boot, "ax"
.macro cpu_setup
    msr     daifset, #0xf
    ldr     x9, ={sctlr}
    msr     sctlr_el1, x9
    ldr     x9, ={cpacr}
    msr     cpacr_el1, x9
    adrp    x9, vector_table
    add     x9, x9, :lo12:vector_table
    msr     vbar_el1, x9
    isb
.endm

primary_entry:
    mrs     x20, cntvct_el0         // when the first instruction ran (VM start figure)
    cpu_setup
    mov     x19, x0                 // DTB address
    adrp    x1, __bss_start
    add     x1, x1, :lo12:__bss_start
    adrp    x2, __bss_end
    add     x2, x2, :lo12:__bss_end
1:  cmp     x1, x2
    b.hs    2f
    str     xzr, [x1], #8
    b       1b
2:  adrp    x1, __stacks_start
    add     x1, x1, :lo12:__stacks_start
    ldr     x2, ={stack_size}
    add     sp, x1, x2              // CPU 0's stack top
    mov     x0, x19
    mov     x1, x20
    bl      {primary_main}
3:  wfe
    b       3b

.global secondary_entry
secondary_entry:
    cpu_setup
    cmp     x0, #{max_cpus}
    b.hs    3b
    adrp    x1, __stacks_start
    add     x1, x1, :lo12:__stacks_start
    add     x2, x0, #1
    ldr     x3, ={stack_size}
    madd    x1, x2, x3, x1
    mov     sp, x1
    bl      {secondary_main}
    b       3b
.ltorg

// Vector table (Arm ARM D1.10.2): 16 entries of 0x80 bytes; each saves x0/x1, puts its index
// in x0 and joins exception_common, which saves the rest of the interrupted context.
.section .text.vectors, "ax"
.macro vector index
    .balign 0x80
    sub     sp, sp, #{frame_size}
    stp     x0, x1, [sp, #0]
    mov     x0, #\index
    b       exception_common
.endm

.balign 0x800
vector_table:
    vector 0
    vector 1
    vector 2
    vector 3
    vector 4
    vector 5
    vector 6
    vector 7
    vector 8
    vector 9
    vector 10
    vector 11
    vector 12
    vector 13
    vector 14
    vector 15

exception_common:
    stp     x2, x3, [sp, #16 * 1]
    stp     x4, x5, [sp, #16 * 2]
    stp     x6, x7, [sp, #16 * 3]
    stp     x8, x9, [sp, #16 * 4]
    stp     x10, x11, [sp, #16 * 5]
    stp     x12, x13, [sp, #16 * 6]
    stp     x14, x15, [sp, #16 * 7]
    stp     x16, x17, [sp, #16 * 8]
    stp     x18, x19, [sp, #16 * 9]
    stp     x20, x21, [sp, #16 * 10]
    stp     x22, x23, [sp, #16 * 11]
    stp     x24, x25, [sp, #16 * 12]
    stp     x26, x27, [sp, #16 * 13]
    stp     x28, x29, [sp, #16 * 14]
    mrs     x1, elr_el1
    stp     x30, x1, [sp, #16 * 15]
    mrs     x1, spsr_el1
    mrs     x2, fpcr
    stp     x1, x2, [sp, #16 * 16]
    mrs     x1, fpsr
    str     x1, [sp, #16 * 17]
    add     x1, sp, #{q_offset}
    stp     q0, q1, [x1, #32 * 0]
    stp     q2, q3, [x1, #32 * 1]
    stp     q4, q5, [x1, #32 * 2]
    stp     q6, q7, [x1, #32 * 3]
    stp     q8, q9, [x1, #32 * 4]
    stp     q10, q11, [x1, #32 * 5]
    stp     q12, q13, [x1, #32 * 6]
    stp     q14, q15, [x1, #32 * 7]
    stp     q16, q17, [x1, #32 * 8]
    stp     q18, q19, [x1, #32 * 9]
    stp     q20, q21, [x1, #32 * 10]
    stp     q22, q23, [x1, #32 * 11]
    stp     q24, q25, [x1, #32 * 12]
    stp     q26, q27, [x1, #32 * 13]
    stp     q28, q29, [x1, #32 * 14]
    stp     q30, q31, [x1, #32 * 15]
    mov     x1, sp
    bl      {handle_exception}
    add     x1, sp, #{q_offset}
    ldp     q0, q1, [x1, #32 * 0]
    ldp     q2, q3, [x1, #32 * 1]
    ldp     q4, q5, [x1, #32 * 2]
    ldp     q6, q7, [x1, #32 * 3]
    ldp     q8, q9, [x1, #32 * 4]
    ldp     q10, q11, [x1, #32 * 5]
    ldp     q12, q13, [x1, #32 * 6]
    ldp     q14, q15, [x1, #32 * 7]
    ldp     q16, q17, [x1, #32 * 8]
    ldp     q18, q19, [x1, #32 * 9]
    ldp     q20, q21, [x1, #32 * 10]
    ldp     q22, q23, [x1, #32 * 11]
    ldp     q24, q25, [x1, #32 * 12]
    ldp     q26, q27, [x1, #32 * 13]
    ldp     q28, q29, [x1, #32 * 14]
    ldp     q30, q31, [x1, #32 * 15]
    ldr     x1, [sp, #16 * 17]
    msr     fpsr, x1
    ldp     x1, x2, [sp, #16 * 16]
    msr     spsr_el1, x1
    msr     fpcr, x2
    ldp     x30, x1, [sp, #16 * 15]
    msr     elr_el1, x1
    ldp     x28, x29, [sp, #16 * 14]
    ldp     x26, x27, [sp, #16 * 13]
    ldp     x24, x25, [sp, #16 * 12]
    ldp     x22, x23, [sp, #16 * 11]
    ldp     x20, x21, [sp, #16 * 10]
    ldp     x18, x19, [sp, #16 * 9]
    ldp     x16, x17, [sp, #16 * 8]
    ldp     x14, x15, [sp, #16 * 7]
    ldp     x12, x13, [sp, #16 * 6]
    ldp     x10, x11, [sp, #16 * 5]
    ldp     x8, x9, [sp, #16 * 4]
    ldp     x6, x7, [sp, #16 * 3]
    ldp     x4, x5, [sp, #16 * 2]
    ldp     x2, x3, [sp, #16 * 1]
    ldp     x0, x1, [sp, #16 * 0]
    add     sp, sp, #{frame_size}
    eret
"#,
    sctlr = const SCTLR_EL1_VALUE,
    cpacr = const CPACR_EL1_FPEN,
    stack_size = const STACK_SIZE,
    max_cpus = const MAX_CPUS,
    frame_size = const core::mem::size_of::<ExceptionFrame>(),
    q_offset = const core::mem::offset_of!(ExceptionFrame, q),
    primary_main = sym crate::primary_main,
    secondary_main = sym crate::secondary_main,
    handle_exception = sym handle_exception,
);
