//! System registers that `aarch64-cpu` lacks (the GICv3 `ICC_*_EL1` CPU interface), and
//! interrupt masking; every `mrs`/`msr` of this crate outside `aarch64-cpu` goes through here.

use core::arch::asm;

macro_rules! sysreg {
    ($(#[$doc:meta])* $reg:ident, $read:ident, $write:ident) => {
        $(#[$doc])*
        #[allow(dead_code, reason = "not every register is both read and written")]
        pub fn $read() -> u64 {
            let value: u64;
            // SAFETY: reading a GIC CPU interface, PMU or ID register has no effect on
            // memory.
            unsafe { core::arch::asm!(concat!("mrs {}, ", stringify!($reg)), out(reg) value, options(nomem, nostack, preserves_flags)) };
            value
        }

        $(#[$doc])*
        #[allow(dead_code, reason = "not every register is both read and written")]
        pub fn $write(value: u64) {
            // SAFETY: writing a GIC CPU interface or PMU register changes interrupt delivery
            // or event counting only, never memory; the `isb` makes the effect visible to
            // what follows.
            unsafe { core::arch::asm!(concat!("msr ", stringify!($reg), ", {}"), "isb", in(reg) value, options(nomem, nostack, preserves_flags)) };
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
sysreg!(/// `ICC_SGI0R_EL1`: generate a group 0 SGI (write).
    icc_sgi0r_el1, read_icc_sgi0r_el1_unused, write_icc_sgi0r_el1);
sysreg!(/// `ICC_CTLR_EL1`: CPU interface control (EOImode in bit 1).
    icc_ctlr_el1, read_icc_ctlr_el1, write_icc_ctlr_el1);
sysreg!(/// `ICC_DIR_EL1`: deactivate an interrupt (write; EOImode 1).
    icc_dir_el1, read_icc_dir_el1_unused, write_icc_dir_el1);
sysreg!(/// `ICC_RPR_EL1`: running priority (read).
    icc_rpr_el1, read_icc_rpr_el1, write_icc_rpr_el1_unused);
sysreg!(/// `ICC_IGRPEN0_EL1`: group 0 enable.
    icc_igrpen0_el1, read_icc_igrpen0_el1, write_icc_igrpen0_el1);
sysreg!(/// `ICC_IAR0_EL1`: group 0 acknowledge (read).
    icc_iar0_el1, read_icc_iar0_el1, write_icc_iar0_el1_unused);
sysreg!(/// `ICC_EOIR0_EL1`: group 0 end of interrupt (write).
    icc_eoir0_el1, read_icc_eoir0_el1_unused, write_icc_eoir0_el1);

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

/// `MRS x0, s3_<op1>_c15_<CRm>_<op2>` as a raw `.inst` (op0 = 3, CRn = 15: the IMPLEMENTATION
/// DEFINED space, Arm ARM D18.3.2), for the `hostile` mode: under a hypervisor that sets
/// `HCR_EL2.TIDCP` each traps to EL2, which should inject an undefined instruction.
macro_rules! impdef_mrs {
    ($op1:literal, $crm:literal, $op2:literal) => {{
        let value: u64;
        // SAFETY: reading a system register has no effect on memory; if the read is
        // undefined, the hostile-mode exception handler skips it and x0 is left as it was.
        unsafe {
            asm!(".inst {enc}",
                enc = const 0xd538_0000_u32 | ($op1 << 16) | (15 << 12) | ($crm << 8) | ($op2 << 5),
                inout("x0") 0_u64 => value, options(nomem, nostack, preserves_flags))
        };
        value
    }};
}

/// Reads the `n`-th (modulo 8) IMPDEF register of a fixed list of `s3_*_c15_*_*` encodings
/// spread over op1 0..7 (some exist on Cortex-A57, such as `CPUACTLR_EL1` s3_1_c15_c2_0).
pub fn read_impdef(n: usize) -> u64 {
    match n % 8 {
        0 => impdef_mrs!(0, 0, 0),
        1 => impdef_mrs!(1, 2, 0),
        2 => impdef_mrs!(2, 1, 3),
        3 => impdef_mrs!(3, 7, 7),
        4 => impdef_mrs!(4, 3, 1),
        5 => impdef_mrs!(5, 9, 2),
        6 => impdef_mrs!(6, 15, 7),
        _ => impdef_mrs!(7, 4, 6),
    }
}

/// Performance Monitors registers (PMUv3) and `ID_AA64DFR0_EL1`, for the `pmu` check.
pub mod pmu {
    sysreg!(/// `ID_AA64DFR0_EL1` (read only).
        id_aa64dfr0_el1, read_id_aa64dfr0_el1, write_id_aa64dfr0_el1_unused);
    sysreg!(/// `PMCR_EL0`: control (E enables counting).
        pmcr_el0, read_pmcr_el0, write_pmcr_el0);
    sysreg!(/// `PMCNTENSET_EL0`: counter enable set.
        pmcntenset_el0, read_pmcntenset_el0, write_pmcntenset_el0);
    sysreg!(/// `PMCNTENCLR_EL0`: counter enable clear.
        pmcntenclr_el0, read_pmcntenclr_el0, write_pmcntenclr_el0);
    sysreg!(/// `PMCCNTR_EL0`: cycle counter.
        pmccntr_el0, read_pmccntr_el0, write_pmccntr_el0);
    sysreg!(/// `PMCCFILTR_EL0`: cycle counter filter.
        pmccfiltr_el0, read_pmccfiltr_el0, write_pmccfiltr_el0);
    sysreg!(/// `PMSELR_EL0`: event counter select.
        pmselr_el0, read_pmselr_el0, write_pmselr_el0);
    sysreg!(/// `PMXEVCNTR_EL0`: the selected event counter.
        pmxevcntr_el0, read_pmxevcntr_el0, write_pmxevcntr_el0);
    sysreg!(/// `PMINTENSET_EL1`: overflow interrupt enable set.
        pmintenset_el1, read_pmintenset_el1, write_pmintenset_el1);
    sysreg!(/// `PMINTENCLR_EL1`: overflow interrupt enable clear.
        pmintenclr_el1, read_pmintenclr_el1, write_pmintenclr_el1);
    sysreg!(/// `PMOVSCLR_EL0`: overflow flags (read), clear (write ones).
        pmovsclr_el0, read_pmovsclr_el0, write_pmovsclr_el0);
    sysreg!(/// `PMEVTYPER0_EL0`: event counter 0's event and filter.
        pmevtyper0_el0, read_pmevtyper0_el0, write_pmevtyper0_el0);
    sysreg!(/// `PMEVCNTR0_EL0`: event counter 0.
        pmevcntr0_el0, read_pmevcntr0_el0, write_pmevcntr0_el0);
    sysreg!(/// `PMOVSSET_EL0`: overflow flags (read), set (write ones).
        pmovsset_el0, read_pmovsset_el0, write_pmovsset_el0);
}
