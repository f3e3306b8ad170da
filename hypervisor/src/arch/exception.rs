//! EL2 vector table and the guest world switch (`guest_enter`), in the style of KVM's
//! `__guest_enter`: entering a guest is a function call that returns on the next exit.

use aarch64_cpu::registers::{Readable, ELR_EL2, FAR_EL2};
use core::arch::global_asm;

pub use crate::vcpu::GuestRegs;

/// Why `guest_enter` returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitKind {
    /// Synchronous exception (trap): read ESR_EL2.
    Sync,
    /// Physical IRQ.
    Irq,
    /// Physical FIQ.
    Fiq,
    /// SError.
    SError,
    /// Exception from AArch32 (not supported).
    Aarch32,
}

unsafe extern "C" {
    /// The vector table (2 KiB aligned).
    pub fn hv_vectors();
    fn __guest_enter(regs: *mut GuestRegs) -> u64;
}

/// Runs the guest with `regs` until the next exception to EL2.
///
/// # Safety
/// 1. Stage-2 (VTTBR_EL2, VTCR_EL2, HCR_EL2.VM) must be set up so the guest cannot reach
///    hypervisor memory.
/// 2. The guest's EL1 system registers must be loaded for this vCPU.
pub unsafe fn guest_enter(regs: &mut GuestRegs) -> ExitKind {
    // SAFETY: (1) the caller guarantees the translation set-up; (2) `regs` is a valid,
    // exclusive pointer for the duration of the call, the assembly only reads and writes
    // its 33 words; (3) the callee-saved registers are restored on the exit path.
    let code = unsafe { __guest_enter(regs) };
    match code {
        0 => ExitKind::Sync,
        1 => ExitKind::Irq,
        2 => ExitKind::Fiq,
        3 => ExitKind::SError,
        _ => ExitKind::Aarch32,
    }
}

global_asm!(
    r#"
.macro exit_vector code
    .balign 0x80
    stp     x0, x1, [sp, #-16]!
    mov     x1, #\code
    b       __guest_exit
.endm

.macro fatal_vector code
    .balign 0x80
    sub     sp, sp, #16
    stp     x0, x1, [sp]
    mov     x0, #\code
    mrs     x1, esr_el2
    b       {fatal}
.endm

.section .text.vectors, "ax"
.balign 0x800
.global hv_vectors
hv_vectors:
    // Current EL with SP_EL0.
    fatal_vector 0
    fatal_vector 1
    fatal_vector 2
    fatal_vector 3
    // Current EL with SP_ELx: the hypervisor itself faulted.
    fatal_vector 4
    fatal_vector 5
    fatal_vector 6
    fatal_vector 7
    // Lower EL, AArch64: guest exits.
    exit_vector 0
    exit_vector 1
    exit_vector 2
    exit_vector 3
    // Lower EL, AArch32.
    exit_vector 4
    exit_vector 4
    exit_vector 4
    exit_vector 4

.section .text, "ax"
// x0 = *mut GuestRegs. Frame: x19..x30 at [sp, #0..96], regs pointer at [sp, #96].
.global __guest_enter
__guest_enter:
    sub     sp, sp, #112
    stp     x19, x20, [sp, #0]
    stp     x21, x22, [sp, #16]
    stp     x23, x24, [sp, #32]
    stp     x25, x26, [sp, #48]
    stp     x27, x28, [sp, #64]
    stp     x29, x30, [sp, #80]
    str     x0, [sp, #96]
    ldp     x1, x2, [x0, #248]
    msr     elr_el2, x1
    msr     spsr_el2, x2
    ldp     x2, x3, [x0, #16]
    ldp     x4, x5, [x0, #32]
    ldp     x6, x7, [x0, #48]
    ldp     x8, x9, [x0, #64]
    ldp     x10, x11, [x0, #80]
    ldp     x12, x13, [x0, #96]
    ldp     x14, x15, [x0, #112]
    ldp     x16, x17, [x0, #128]
    ldp     x18, x19, [x0, #144]
    ldp     x20, x21, [x0, #160]
    ldp     x22, x23, [x0, #176]
    ldp     x24, x25, [x0, #192]
    ldp     x26, x27, [x0, #208]
    ldp     x28, x29, [x0, #224]
    ldr     x30, [x0, #240]
    ldp     x0, x1, [x0, #0]
    eret
    dsb     nsh
    isb

// Entered from an exit vector: guest x0/x1 pushed on the EL2 stack, x1 = exit code.
__guest_exit:
    ldr     x0, [sp, #(16 + 96)]
    stp     x2, x3, [x0, #16]
    stp     x4, x5, [x0, #32]
    stp     x6, x7, [x0, #48]
    stp     x8, x9, [x0, #64]
    stp     x10, x11, [x0, #80]
    stp     x12, x13, [x0, #96]
    stp     x14, x15, [x0, #112]
    stp     x16, x17, [x0, #128]
    stp     x18, x19, [x0, #144]
    stp     x20, x21, [x0, #160]
    stp     x22, x23, [x0, #176]
    stp     x24, x25, [x0, #192]
    stp     x26, x27, [x0, #208]
    stp     x28, x29, [x0, #224]
    str     x30, [x0, #240]
    mov     x4, x1
    ldp     x2, x3, [sp], #16
    stp     x2, x3, [x0, #0]
    mrs     x1, elr_el2
    mrs     x2, spsr_el2
    stp     x1, x2, [x0, #248]
    mov     x0, x4
    ldp     x19, x20, [sp, #0]
    ldp     x21, x22, [sp, #16]
    ldp     x23, x24, [sp, #32]
    ldp     x25, x26, [sp, #48]
    ldp     x27, x28, [sp, #64]
    ldp     x29, x30, [sp, #80]
    add     sp, sp, #112
    ret
"#,
    fatal = sym hv_fatal_exception,
);

/// An exception taken from EL2 itself: the hypervisor has a bug. Report and halt this CPU.
extern "C" fn hv_fatal_exception(kind: u64, esr: u64) -> ! {
    let elr = ELR_EL2.get();
    let far = FAR_EL2.get();
    crate::arch::console_emergency(format_args!(
        "\n[hv] FATAL: exception at EL2 (vector {kind}): ESR_EL2={esr:#x} ELR_EL2={elr:#x} FAR_EL2={far:#x}\n"
    ));
    loop {
        crate::arch::cpu::wait_for_interrupt();
    }
}
