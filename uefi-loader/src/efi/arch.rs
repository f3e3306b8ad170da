//! The AArch64 part: the exception level, cache maintenance, and the jump into the
//! hypervisor with the MMU and D-cache off (Linux's arm64 boot protocol, which the
//! hypervisor's entry follows).

use core::arch::asm;

/// The current exception level (`CurrentEL` bits 3:2).
pub fn current_el() -> u64 {
    let el: u64;
    // SAFETY: reading CurrentEL has no side effect and is allowed at EL1 and above.
    unsafe { asm!("mrs {}, CurrentEL", out(reg) el, options(nomem, nostack, preserves_flags)) };
    (el >> 2) & 3
}

/// Stops this CPU for good (nothing can be reported).
pub fn halt() -> ! {
    loop {
        // SAFETY: waiting for an event has no effect on memory.
        unsafe { asm!("wfe", options(nomem, nostack, preserves_flags)) };
    }
}

/// Smallest D-cache line (`CTR_EL0.DminLine`), in bytes.
fn dcache_line() -> u64 {
    let ctr: u64;
    // SAFETY: CTR_EL0 is readable at EL2 and has no side effect.
    unsafe { asm!("mrs {}, ctr_el0", out(reg) ctr, options(nomem, nostack, preserves_flags)) };
    4 << ((ctr >> 16) & 0xf)
}

/// Cleans and invalidates `[start, start + len)` to the point of coherency.
///
/// # Safety
/// The range must be mapped (the firmware's identity map).
unsafe fn clean_invalidate_poc(start: u64, len: u64) {
    let line = dcache_line();
    let mut a = start & !(line - 1);
    while a < start + len {
        // SAFETY: `a` lies in a mapped range (the caller's contract); DC CIVAC does not
        // change its contents.
        unsafe { asm!("dc civac, {}", in(reg) a, options(nostack, preserves_flags)) };
        a += line;
    }
    // SAFETY: a barrier only.
    unsafe { asm!("dsb sy", options(nostack, preserves_flags)) };
}

/// Hands over to the Image at `entry`: cleans `ranges` (the hypervisor's whole region,
/// the device tree, every module) to the point of coherency, masks interrupts, turns the
/// EL2 MMU and D-cache off, invalidates the I-cache and branches to `entry` with
/// x0 = `dtb`, x1 = x2 = x3 = 0.
///
/// # Safety
/// Boot services have been exited; `entry` is the start of a complete Image whose region
/// is in `ranges`; `dtb` is a valid flattened device tree in `ranges`; every range is
/// identity-mapped RAM. The code and stack of this function are not in any of them.
pub unsafe fn enter(entry: u64, dtb: u64, ranges: &[(u64, u64)]) -> ! {
    for &(start, len) in ranges {
        // SAFETY: each range is mapped RAM (the caller's contract).
        unsafe { clean_invalidate_poc(start, len) };
    }
    // SAFETY: from here nothing touches memory: the MMU and D-cache go off (this code is
    // identity-mapped, so fetching continues at the same address), the I-cache is
    // invalidated so that no stale line of the freshly written Image is fetched, and the
    // branch leaves for good.
    unsafe {
        asm!(
            "msr daifset, #0xf",
            "mrs x9, sctlr_el2",
            "bic x9, x9, #1",        // M: stage 1 MMU off
            "bic x9, x9, #4",        // C: data caching off
            "msr sctlr_el2, x9",
            "isb",
            "ic iallu",
            "dsb nsh",
            "isb",
            "mov x1, xzr",
            "mov x2, xzr",
            "mov x3, xzr",
            "br x10",
            in("x0") dtb,
            in("x10") entry,
            options(noreturn, nostack),
        )
    }
}
