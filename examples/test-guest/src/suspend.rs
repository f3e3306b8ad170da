//! The `psci-suspend` check: PSCI power management beyond `CPU_ON`.
//!
//! - `AFFINITY_INFO` above level 0: the boot CPU's cluster (level 1) and the whole machine
//!   (levels 2 and 3) are on; a cluster with no CPU is an invalid parameter.
//! - `CPU_SUSPEND` into a power-down state (`power_state` StateType = 1): the CPU loses its
//!   context and resumes at the entry point given, with the context id in `x0`, MMU and
//!   caches off (DEN0022 5.4 and 6.4.3). `psci_powerdown_call` saves what the code needs to
//!   carry on (callee-saved registers, `sp`, the EL1 registers it set up) in a save area
//!   whose address is the context id; `psci_powerdown_resume` restores it and returns to
//!   the caller as if the call had returned, with a flag saying it came through the entry.

use crate::checks::{counter, cpu_index, ticks, CheckFailure, ALARM, CPU_MPIDR};
use crate::dt::{Conduit, Platform};
use crate::gic::Gic;
use crate::sysreg;
use aarch64_cpu::registers::{Writeable, CNTV_CTL_EL0, CNTV_TVAL_EL0};
use core::arch::global_asm;
use core::sync::atomic::Ordering::SeqCst;
use smccc::psci::{self, AffinityState, LowestAffinityLevel};
use smccc::Call;

/// `CPU_SUSPEND` (SMC64).
const PSCI_CPU_SUSPEND_64: u64 = 0xc400_0001;
/// Words of the save area: x19..x30, sp, d8..d15, tpidr, sctlr, cpacr, vbar, and the
/// `SCTLR_EL1` seen at the entry point.
const SAVE_WORDS: usize = 26;
/// Index of the `SCTLR_EL1` value read first thing at the entry point.
const SCTLR_AT_ENTRY: usize = 25;
/// `SCTLR_EL1` M (bit 0), C (bit 2) and I (bit 12).
const SCTLR_M_C_I: u64 = (1 << 0) | (1 << 2) | (1 << 12);

global_asm!(
    r#"
.section .text, "ax"
.global psci_powerdown_call
// x0 = save area, x1 = function id, x2 = 1 for HVC, 0 for SMC.
// Returns x0 = PSCI status (x1 = 0) if the call returned, or x0 = the context id it got
// (x1 = 1) if the CPU came back through psci_powerdown_resume.
psci_powerdown_call:
    stp     x19, x20, [x0, #0]
    stp     x21, x22, [x0, #16]
    stp     x23, x24, [x0, #32]
    stp     x25, x26, [x0, #48]
    stp     x27, x28, [x0, #64]
    stp     x29, x30, [x0, #80]
    mov     x9, sp
    str     x9, [x0, #96]
    stp     d8, d9, [x0, #104]
    stp     d10, d11, [x0, #120]
    stp     d12, d13, [x0, #136]
    stp     d14, d15, [x0, #152]
    mrs     x9, tpidr_el1
    str     x9, [x0, #168]
    mrs     x9, sctlr_el1
    str     x9, [x0, #176]
    mrs     x9, cpacr_el1
    str     x9, [x0, #184]
    mrs     x9, vbar_el1
    str     x9, [x0, #192]
    mov     x10, x2
    mov     x3, x0                  // context id: the save area
    mov     x0, x1                  // CPU_SUSPEND
    movz    x1, #1, lsl #16         // power_state: StateType 1 (power down), StateID 0
    adrp    x2, psci_powerdown_resume
    add     x2, x2, :lo12:psci_powerdown_resume
    cbz     x10, 1f
    hvc     #0
    b       2f
1:  smc     #0
2:  mov     x1, #0                  // it returned: x0 is the status
    ret

.global psci_powerdown_resume
psci_powerdown_resume:
    // EL1h, exceptions masked, MMU and caches off; x0 = context id (the save area).
    mrs     x9, sctlr_el1
    str     x9, [x0, #200]
    ldr     x9, [x0, #176]
    msr     sctlr_el1, x9
    ldr     x9, [x0, #184]
    msr     cpacr_el1, x9
    ldr     x9, [x0, #192]
    msr     vbar_el1, x9
    ldr     x9, [x0, #168]
    msr     tpidr_el1, x9
    isb
    ldr     x9, [x0, #96]
    mov     sp, x9
    ldp     x19, x20, [x0, #0]
    ldp     x21, x22, [x0, #16]
    ldp     x23, x24, [x0, #32]
    ldp     x25, x26, [x0, #48]
    ldp     x27, x28, [x0, #64]
    ldp     x29, x30, [x0, #80]
    ldp     d8, d9, [x0, #104]
    ldp     d10, d11, [x0, #120]
    ldp     d12, d13, [x0, #136]
    ldp     d14, d15, [x0, #152]
    mov     x1, #1
    ret
"#
);

/// What `psci_powerdown_call` hands back (x0, x1).
#[repr(C)]
struct SuspendReturn {
    x0: u64,
    resumed: u64,
}

extern "C" {
    fn psci_powerdown_call(save: *mut u64, function_id: u64, hvc: u64) -> SuspendReturn;
}

/// Runs the check on the boot CPU (after `psci`, which started the secondaries).
pub fn psci_suspend<C: Call>(platform: &Platform, gic: &Gic) -> Result<(), CheckFailure> {
    let me = CPU_MPIDR[0].load(SeqCst);
    for (level, name) in [
        (LowestAffinityLevel::Aff0Ignored, 1),
        (LowestAffinityLevel::Aff0Aff1Ignored, 2),
        (LowestAffinityLevel::Aff0Aff1Aff2Ignored, 3),
    ] {
        let got = psci::affinity_info::<C>(me, level);
        if got != Ok(AffinityState::On) {
            return Err(CheckFailure::AffinityLevel { level: name, got });
        }
    }
    // Aff1 = 0xff: no cluster of this machine has that number.
    let nowhere = (me & !0xff_ff00) | 0xff00;
    let got = psci::affinity_info::<C>(nowhere, LowestAffinityLevel::Aff0Ignored);
    if got != Err(psci::Error::InvalidParameters) {
        return Err(CheckFailure::AffinityNoCluster {
            mpidr: nowhere,
            got,
        });
    }

    // The virtual timer wakes the CPU from its power-down state 2 ms from now.
    let cpu = cpu_index();
    let mut save = [0u64; SAVE_WORDS];
    ALARM.store(true, SeqCst);
    gic.enable_ppi(cpu, platform.vtimer_intid);
    sysreg::irq_disable();
    let start = counter();
    CNTV_TVAL_EL0.set(ticks(2));
    CNTV_CTL_EL0.write(CNTV_CTL_EL0::ENABLE::SET + CNTV_CTL_EL0::IMASK::CLEAR);
    let hvc = u64::from(platform.conduit == Conduit::Hvc);
    // SAFETY: `psci_powerdown_call` follows the AAPCS64 for the registers it does not save
    // (it saves and restores every callee-saved one, sp included), and writes only the
    // `SAVE_WORDS` words of `save`, which outlives the call.
    let back = unsafe { psci_powerdown_call(save.as_mut_ptr(), PSCI_CPU_SUSPEND_64, hvc) };
    let slept = counter() - start;
    CNTV_CTL_EL0.write(CNTV_CTL_EL0::ENABLE::CLEAR + CNTV_CTL_EL0::IMASK::SET);
    // The timer's interrupt may still be pending: taken now, it only silences the timer.
    sysreg::irq_enable();
    crate::checks::wait_for(1, || false);
    ALARM.store(false, SeqCst);
    if back.resumed == 0 {
        return Err(CheckFailure::SuspendReturned {
            status: back.x0 as i64,
        });
    }
    let area = save.as_ptr() as u64;
    if back.x0 != area {
        return Err(CheckFailure::SuspendContext {
            got: back.x0,
            want: area,
        });
    }
    let sctlr = save[SCTLR_AT_ENTRY];
    if sctlr & SCTLR_M_C_I != 0 {
        return Err(CheckFailure::SuspendSctlr { sctlr });
    }
    if slept < ticks(1) {
        return Err(CheckFailure::SuspendWokeEarly {
            us: slept * 1_000_000 / ticks(1000).max(1),
        });
    }
    Ok(())
}
