//! System registers that `aarch64-cpu` lacks (the GICv3 `ICC_*_EL1` CPU interface), and
//! interrupt masking; every `mrs`/`msr` of this crate outside `aarch64-cpu` goes through here.

use core::arch::asm;

macro_rules! sysreg {
    ($(#[$doc:meta])* $reg:ident, $read:ident, $write:ident) => {
        $(#[$doc])*
        #[allow(dead_code, reason = "not every register is both read and written")]
        pub fn $read() -> u64 {
            let value: u64;
            // SAFETY: reading a GIC CPU interface register has no effect on memory.
            unsafe { asm!(concat!("mrs {}, ", stringify!($reg)), out(reg) value, options(nomem, nostack, preserves_flags)) };
            value
        }

        $(#[$doc])*
        #[allow(dead_code, reason = "not every register is both read and written")]
        pub fn $write(value: u64) {
            // SAFETY: writing a GIC CPU interface register changes interrupt delivery only,
            // never memory; the `isb` makes the effect visible to what follows.
            unsafe { asm!(concat!("msr ", stringify!($reg), ", {}"), "isb", in(reg) value, options(nomem, nostack, preserves_flags)) };
        }
    };
}

sysreg!(/// `ICC_SRE_EL1`: system register enable.
    icc_sre_el1, read_icc_sre_el1, write_icc_sre_el1);
sysreg!(/// `ICC_PMR_EL1`: priority mask.
    icc_pmr_el1, read_icc_pmr_el1, write_icc_pmr_el1);
sysreg!(/// `ICC_BPR1_EL1`: group 1 binary point.
    icc_bpr1_el1, read_icc_bpr1_el1, write_icc_bpr1_el1);
sysreg!(/// `ICC_IGRPEN1_EL1`: group 1 enable.
    icc_igrpen1_el1, read_icc_igrpen1_el1, write_icc_igrpen1_el1);
sysreg!(/// `ICC_IAR1_EL1`: group 1 acknowledge (read) / unused write.
    icc_iar1_el1, read_icc_iar1_el1, write_icc_iar1_el1_unused);
sysreg!(/// `ICC_EOIR1_EL1`: group 1 end of interrupt (write).
    icc_eoir1_el1, read_icc_eoir1_el1_unused, write_icc_eoir1_el1);
sysreg!(/// `ICC_SGI1R_EL1`: generate a group 1 SGI (write).
    icc_sgi1r_el1, read_icc_sgi1r_el1_unused, write_icc_sgi1r_el1);

/// Unmasks IRQs (`PSTATE.I = 0`).
pub fn irq_enable() {
    // SAFETY: unmasking IRQs only lets the installed vector table run; it touches no memory.
    unsafe { asm!("msr daifclr, #2", "isb", options(nostack, preserves_flags)) };
}

/// Masks IRQs (`PSTATE.I = 1`).
pub fn irq_disable() {
    // SAFETY: masking IRQs has no effect on memory.
    unsafe { asm!("msr daifset, #2", "isb", options(nostack, preserves_flags)) };
}
