//! The system registers the core needs that `aarch64-cpu` lacks, each in exactly that crate's
//! shape (`register_bitfields!` where the core uses fields, a unit struct implementing
//! `Readable`/`Writeable`, a `const` of it), every `mrs`/`msr` through [`sys_coproc!`]; and
//! the EL1 context of a vCPU, switched through those and `aarch64_cpu::registers`.
//!
//! What `aarch64-cpu` 11 has (HCR_EL2, VTCR_EL2, CPTR_EL2, MDCR_EL2, CNTHCTL_EL2, the ICH_*
//! list and control registers, the EL1 context, ...) is used from that crate directly.

use crate::vpmu::PmuReg;
use aarch64_cpu::registers::{
    Readable, Writeable, AFSR0_EL1, AFSR1_EL1, AMAIR_EL1, CNTKCTL_EL1, CNTV_CTL_EL0, CNTV_CVAL_EL0,
    CONTEXTIDR_EL1, CPACR_EL1, CSSELR_EL1, ELR_EL1, ESR_EL1, FAR_EL1, ID_AA64DFR0_EL1, MAIR_EL1,
    MDCR_EL2, MDSCR_EL1, PAR_EL1, SCTLR_EL1, SPSR_EL1, SP_EL0, SP_EL1, TCR_EL1, TPIDRRO_EL0,
    TPIDR_EL0, TPIDR_EL1, TTBR0_EL1, TTBR1_EL1, VBAR_EL1, VMPIDR_EL2,
};

/// The one `mrs`/`msr` of the core's Rust code (`aarch64-cpu`'s `sys_coproc_read_raw!` and
/// `sys_coproc_write_raw!` in one): `sys_coproc!(read "NAME")` is a register's
/// `Readable::get`, `sys_coproc!(write "NAME")` its `Writeable::set`. `NAME` is the
/// register's name, or its `s3_<op1>_c<n>_c<m>_<op2>` encoding where the assembler lacks one.
macro_rules! sys_coproc {
    (read $name:literal) => {
        #[inline]
        fn get(&self) -> u64 {
            let v: u64;
            // SAFETY: (1) the core runs at EL2, where every register defined with this macro
            // is readable (the ICH_* ones are used only on a GICv3 board, the PM* ones only
            // when `has_pmu`, FPCR/FPSR only after `init_el2` cleared CPTR_EL2.TFP); (2) an
            // MRS writes only its output register, no memory.
            unsafe {
                core::arch::asm!(
                    concat!("mrs {}, ", $name),
                    out(reg) v,
                    options(nomem, nostack, preserves_flags)
                )
            };
            v
        }
    };
    (write $name:literal) => {
        #[inline]
        fn set(&self, value: u64) {
            // SAFETY: (1) the core runs at EL2, where every register defined with this macro
            // is writable (same conditions as for reads); (2) these registers configure only
            // the guest's EL1/EL0 view, the PMU guests use directly, the EL2 timer or the
            // virtual GIC interface, all owned by the core, so no memory Rust knows about
            // changes meaning; (3) callers in `arch` add the ISBs the ordering needs.
            unsafe {
                core::arch::asm!(
                    concat!("msr ", $name, ", {}"),
                    in(reg) value,
                    options(nomem, nostack, preserves_flags)
                )
            };
        }
    };
}

/// One register module in `aarch64-cpu`'s shape: the unit struct, its `Readable` (and for
/// `rw`, `Writeable`) impl through [`sys_coproc!`], and the `const` the core names.
macro_rules! sys_reg_struct {
    ($(#[$doc:meta])* $reg:ident, $asm:literal, $r:ty, ro) => {
        $(#[$doc])*
        pub struct Reg;

        impl Readable for Reg {
            type T = u64;
            type R = $r;
            sys_coproc!(read $asm);
        }

        $(#[$doc])*
        pub const $reg: Reg = Reg {};
    };
    ($(#[$doc:meta])* $reg:ident, $asm:literal, $r:ty, rw) => {
        sys_reg_struct!($(#[$doc])* $reg, $asm, $r, ro);

        impl Writeable for Reg {
            type T = u64;
            type R = $r;
            sys_coproc!(write $asm);
        }
    };
}

/// A register the core switches or programs as a whole value (one bit per counter, a count,
/// a filter, a deadline): its module without `register_bitfields!`.
macro_rules! plain_reg {
    ($module:ident, $reg:ident, $asm:literal, $doc:literal) => {
        mod $module {
            use super::{Readable, Writeable};

            sys_reg_struct!(
                #[doc = $doc]
                $reg,
                $asm,
                (),
                rw
            );
        }
        pub use $module::$reg;
    };
}

mod vpidr_el2 {
    use super::{Readable, Writeable};

    sys_reg_struct!(
        /// VPIDR_EL2 (Arm ARM, "VPIDR_EL2, Virtualization Processor ID Register"): the
        /// value an EL1 read of MIDR_EL1 returns.
        VPIDR_EL2,
        "vpidr_el2",
        (),
        rw
    );
}

mod cnthp_cval_el2 {
    use super::{Readable, Writeable};

    sys_reg_struct!(
        /// CNTHP_CVAL_EL2 (Arm ARM, "CNTHP_CVAL_EL2, Counter-timer Physical Timer
        /// CompareValue register (EL2)"): the EL2 physical timer's deadline.
        CNTHP_CVAL_EL2,
        "cnthp_cval_el2",
        (),
        rw
    );
}

mod ich_eisr_el2 {
    use super::Readable;

    sys_reg_struct!(
        /// ICH_EISR_EL2 (GICv3, IHI 0069, "ICH_EISR_EL2, Interrupt Controller End of
        /// Interrupt Status Register"): bit n set when list register n holds a deactivated
        /// interrupt with EOI maintenance requested. Read-only.
        ICH_EISR_EL2,
        "s3_4_c12_c11_3",
        (),
        ro
    );
}

#[allow(
    missing_docs,
    reason = "`register_bitfields!` generates undocumented `Register` and mask items"
)]
mod pmcr_el0 {
    use super::{Readable, Writeable};
    use tock_registers::register_bitfields;

    register_bitfields! {u64,
        /// PMCR_EL0 fields (Arm ARM, "PMCR_EL0, Performance Monitors Control Register").
        pub PMCR_EL0 [
            /// Number of event counters implemented (as EL2 reads it).
            N OFFSET(11) NUMBITS(5) [],
            /// Long event counters.
            LP OFFSET(7) NUMBITS(1) [],
            /// Long cycle counter.
            LC OFFSET(6) NUMBITS(1) [],
            /// Disable cycle counter when event counting is prohibited.
            DP OFFSET(5) NUMBITS(1) [],
            /// Export events.
            X OFFSET(4) NUMBITS(1) [],
            /// Clock divider (cycle counter counts every 64 cycles).
            D OFFSET(3) NUMBITS(1) [],
            /// Cycle counter reset (write-only action).
            C OFFSET(2) NUMBITS(1) [],
            /// Event counter reset (write-only action).
            P OFFSET(1) NUMBITS(1) [],
            /// Enable.
            E OFFSET(0) NUMBITS(1) [],
        ]
    }

    sys_reg_struct!(
        /// PMCR_EL0 (Arm ARM, "PMCR_EL0, Performance Monitors Control Register").
        PMCR_EL0,
        "pmcr_el0",
        PMCR_EL0::Register,
        rw
    );
}

#[allow(
    missing_docs,
    reason = "`register_bitfields!` generates undocumented `Register` and mask items"
)]
mod pmselr_el0 {
    use super::{Readable, Writeable};
    use tock_registers::register_bitfields;

    register_bitfields! {u64,
        /// PMSELR_EL0 fields (Arm ARM, "PMSELR_EL0, Performance Monitors Event Counter
        /// Selection Register").
        pub PMSELR_EL0 [
            /// The event counter PMXEVCNTR_EL0 and PMXEVTYPER_EL0 access (31: cycle counter).
            SEL OFFSET(0) NUMBITS(5) [],
        ]
    }

    sys_reg_struct!(
        /// PMSELR_EL0 (Arm ARM, "PMSELR_EL0, Performance Monitors Event Counter Selection
        /// Register").
        PMSELR_EL0,
        "pmselr_el0",
        PMSELR_EL0::Register,
        rw
    );
}

plain_reg!(
    pmcntenset_el0,
    PMCNTENSET_EL0,
    "pmcntenset_el0",
    "PMCNTENSET_EL0 (Arm ARM, \"Performance Monitors Count Enable Set register\")."
);
plain_reg!(
    pmcntenclr_el0,
    PMCNTENCLR_EL0,
    "pmcntenclr_el0",
    "PMCNTENCLR_EL0 (Arm ARM, \"Performance Monitors Count Enable Clear register\")."
);
plain_reg!(
    pmintenset_el1,
    PMINTENSET_EL1,
    "pmintenset_el1",
    "PMINTENSET_EL1 (Arm ARM, \"Performance Monitors Interrupt Enable Set register\")."
);
plain_reg!(
    pmintenclr_el1,
    PMINTENCLR_EL1,
    "pmintenclr_el1",
    "PMINTENCLR_EL1 (Arm ARM, \"Performance Monitors Interrupt Enable Clear register\")."
);
plain_reg!(
    pmovsset_el0,
    PMOVSSET_EL0,
    "pmovsset_el0",
    "PMOVSSET_EL0 (Arm ARM, \"Performance Monitors Overflow Flag Status Set register\")."
);
plain_reg!(
    pmovsclr_el0,
    PMOVSCLR_EL0,
    "pmovsclr_el0",
    "PMOVSCLR_EL0 (Arm ARM, \"Performance Monitors Overflow Flag Status Clear Register\")."
);
plain_reg!(
    pmuserenr_el0,
    PMUSERENR_EL0,
    "pmuserenr_el0",
    "PMUSERENR_EL0 (Arm ARM, \"Performance Monitors User Enable Register\")."
);
plain_reg!(
    pmccntr_el0,
    PMCCNTR_EL0,
    "pmccntr_el0",
    "PMCCNTR_EL0 (Arm ARM, \"Performance Monitors Cycle Count Register\")."
);
plain_reg!(
    pmccfiltr_el0,
    PMCCFILTR_EL0,
    "pmccfiltr_el0",
    "PMCCFILTR_EL0 (Arm ARM, \"Performance Monitors Cycle Count Filter Register\")."
);
plain_reg!(
    pmxevcntr_el0,
    PMXEVCNTR_EL0,
    "pmxevcntr_el0",
    "PMXEVCNTR_EL0 (Arm ARM, \"Performance Monitors Selected Event Count Register\")."
);
plain_reg!(
    pmxevtyper_el0,
    PMXEVTYPER_EL0,
    "pmxevtyper_el0",
    "PMXEVTYPER_EL0 (Arm ARM, \"Performance Monitors Selected Event Type Register\")."
);

plain_reg!(
    pmswinc_el0,
    PMSWINC_EL0,
    "pmswinc_el0",
    "PMSWINC_EL0 (Arm ARM, \"Performance Monitors Software Increment register\"): \
     write-only, written only for a guest's trapped write."
);

mod pmceid0_el0 {
    use super::Readable;

    sys_reg_struct!(
        /// PMCEID0_EL0 (Arm ARM, "Performance Monitors Common Event Identification
        /// register 0"). Read-only.
        PMCEID0_EL0,
        "pmceid0_el0",
        (),
        ro
    );
}

mod pmceid1_el0 {
    use super::Readable;

    sys_reg_struct!(
        /// PMCEID1_EL0 (Arm ARM, "Performance Monitors Common Event Identification
        /// register 1"). Read-only.
        PMCEID1_EL0,
        "pmceid1_el0",
        (),
        ro
    );
}

mod pmmir_el1 {
    use super::Readable;

    sys_reg_struct!(
        /// PMMIR_EL1 (Arm ARM, "Performance Monitors Machine Identification Register",
        /// FEAT_PMUv3p4). Read-only; read only for a guest's trapped read, which traps only
        /// where the register exists.
        PMMIR_EL1,
        "s3_0_c9_c14_6",
        (),
        ro
    );
}

pub use pmceid0_el0::PMCEID0_EL0;
pub use pmceid1_el0::PMCEID1_EL0;
pub use pmmir_el1::PMMIR_EL1;

// FP registers `aarch64-cpu` lacks, by encoding so that the soft-float target's assembler
// needs no `fp` extension: switched as values with the vCPU's Q registers. Accessible at EL2
// because `init_el2` clears CPTR_EL2.TFP before any vCPU runs.
plain_reg!(
    fpcr,
    FPCR,
    "s3_3_c4_c4_0",
    "FPCR (Arm ARM, \"FPCR, Floating-point Control Register\")."
);
plain_reg!(
    fpsr,
    FPSR,
    "s3_3_c4_c4_1",
    "FPSR (Arm ARM, \"FPSR, Floating-point Status Register\")."
);

pub use cnthp_cval_el2::CNTHP_CVAL_EL2;
pub use ich_eisr_el2::ICH_EISR_EL2;
pub use pmcr_el0::PMCR_EL0;
pub use pmselr_el0::PMSELR_EL0;
pub use vpidr_el2::VPIDR_EL2;

/// The EL1/EL0 system-register state of a vCPU, switched when a physical CPU changes vCPU.
#[derive(Clone, Copy, Debug, Default)]
#[allow(
    missing_docs,
    reason = "fields are named after the Arm ARM registers they hold"
)]
pub struct El1Context {
    pub sctlr_el1: u64,
    pub ttbr0_el1: u64,
    pub ttbr1_el1: u64,
    pub tcr_el1: u64,
    pub mair_el1: u64,
    pub amair_el1: u64,
    pub vbar_el1: u64,
    pub contextidr_el1: u64,
    pub sp_el0: u64,
    pub sp_el1: u64,
    pub elr_el1: u64,
    pub spsr_el1: u64,
    pub esr_el1: u64,
    pub far_el1: u64,
    pub afsr0_el1: u64,
    pub afsr1_el1: u64,
    pub par_el1: u64,
    pub tpidr_el0: u64,
    pub tpidrro_el0: u64,
    pub tpidr_el1: u64,
    pub cpacr_el1: u64,
    pub csselr_el1: u64,
    pub cntkctl_el1: u64,
    pub mdscr_el1: u64,
    pub cntv_ctl_el0: u64,
    pub cntv_cval_el0: u64,
    pub vmpidr_el2: u64,
    /// ICH_VMCR_EL2, or GICH_VMCR on GICv2.
    pub ich_vmcr_el2: u64,
    /// ICH_AP0R0_EL2 (Group 0 active priorities, e.g. of SGIs from ICC_SGI0R_EL1); 0 on
    /// GICv2.
    pub ich_ap0r0_el2: u64,
    /// ICH_AP1R0_EL2, or GICH_APR on GICv2.
    pub ich_ap1r0_el2: u64,
    pub fpcr: u64,
    pub fpsr: u64,
    pub fp_regs: [u128; 32],
    /// Performance Monitors registers: guests use the PMU directly, each vCPU its own.
    pub pmu: PmuContext,
}

/// A vCPU's PMUv3 state (Arm ARM D13, "The Performance Monitors Extension"). Guests access
/// the PMU without traps (`MDCR_EL2.HPMN` = all counters), so the registers are switched
/// with the vCPU: what one vCPU counts, enables or reads is never another's. Counters do not
/// count at EL2 (`PMEVTYPER<n>.NSH` and `PMCCFILTR.NSH` reset to 0), so the hypervisor's
/// own work is not charged to the guest.
#[derive(Clone, Copy, Debug, Default)]
#[allow(
    missing_docs,
    reason = "fields are named after the Arm ARM registers they hold"
)]
pub struct PmuContext {
    /// `PMCR_EL0`, writable bits only (E, D, X, DP, LC, LP).
    pub pmcr: u64,
    pub pmselr: u64,
    /// `PMCNTENSET_EL0`, `PMINTENSET_EL1`, `PMOVSSET_EL0`: bit 31 the cycle counter,
    /// bits N-1..0 the event counters.
    pub pmcnten: u64,
    pub pminten: u64,
    pub pmovs: u64,
    pub pmuserenr: u64,
    pub pmccntr: u64,
    pub pmccfiltr: u64,
    pub evcntr: [u64; 31],
    pub evtyper: [u64; 31],
}

/// `PMCR_EL0` bits a guest may set and read back: E, D, X, DP, LC, LP (P and C are
/// write-only actions, N and the ID fields read-only).
const PMCR_WRITABLE: u64 = 0b1111_1001;
/// Every counter-enable, interrupt-enable and overflow bit (`PMCNTENCLR_EL0` etc.).
const PMU_ALL_COUNTERS: u64 = 0xffff_ffff;

/// True if this CPU implements PMUv3 (`ID_AA64DFR0_EL1.PMUVer` neither 0 nor 0xF).
pub fn has_pmu() -> bool {
    let ver = ID_AA64DFR0_EL1.read(ID_AA64DFR0_EL1::PMUVer);
    ver != 0 && ver != 0xf
}

/// Event counters this CPU implements (`PMCR_EL0.N`, as EL2 reads it).
fn pmu_counters() -> usize {
    (PMCR_EL0.read(PMCR_EL0::N) as usize).min(31)
}

impl PmuContext {
    /// Saves this CPU's PMU state and stops its counters.
    fn save(&mut self) {
        self.pmcnten = PMCNTENSET_EL0.get();
        // Stop counting first, so the saved counts are the guest's own.
        PMCNTENCLR_EL0.set(PMU_ALL_COUNTERS);
        self.pmcr = PMCR_EL0.get() & PMCR_WRITABLE;
        self.pmselr = PMSELR_EL0.get();
        self.pminten = PMINTENSET_EL1.get();
        self.pmovs = PMOVSSET_EL0.get();
        self.pmuserenr = PMUSERENR_EL0.get();
        self.pmccntr = PMCCNTR_EL0.get();
        self.pmccfiltr = PMCCFILTR_EL0.get();
        for i in 0..pmu_counters() {
            PMSELR_EL0.write(PMSELR_EL0::SEL.val(i as u64));
            isb();
            self.evcntr[i] = PMXEVCNTR_EL0.get();
            self.evtyper[i] = PMXEVTYPER_EL0.get();
        }
    }

    /// Loads this state into the CPU's PMU (counting resumes if the vCPU had it on).
    fn restore(&self) {
        PMCNTENCLR_EL0.set(PMU_ALL_COUNTERS);
        PMINTENCLR_EL1.set(PMU_ALL_COUNTERS);
        PMOVSCLR_EL0.set(PMU_ALL_COUNTERS);
        for i in 0..pmu_counters() {
            PMSELR_EL0.write(PMSELR_EL0::SEL.val(i as u64));
            isb();
            PMXEVTYPER_EL0.set(self.evtyper[i]);
            PMXEVCNTR_EL0.set(self.evcntr[i]);
        }
        PMCCFILTR_EL0.set(self.pmccfiltr);
        PMCCNTR_EL0.set(self.pmccntr);
        PMUSERENR_EL0.set(self.pmuserenr);
        PMSELR_EL0.set(self.pmselr);
        PMOVSSET_EL0.set(self.pmovs);
        PMINTENSET_EL1.set(self.pminten);
        PMCR_EL0.set(self.pmcr);
        PMCNTENSET_EL0.set(self.pmcnten);
    }
}

/// Runs `f` with `PMSELR_EL0.SEL` = `n` (for `PMEVCNTR<n>_EL0`/`PMEVTYPER<n>_EL0` through
/// `PMXEVCNTR_EL0`/`PMXEVTYPER_EL0`: one code path for all 31 of each), then puts the
/// guest's selection back.
fn with_selected<T>(n: u8, f: impl FnOnce() -> T) -> T {
    let sel = PMSELR_EL0.get();
    PMSELR_EL0.write(PMSELR_EL0::SEL.val(u64::from(n)));
    isb();
    let v = f();
    PMSELR_EL0.set(sel);
    isb();
    v
}

/// Reads PMU register `reg` for the running guest (its PMU state is live on this CPU):
/// `PMCR_EL0.N` as EL1 sees it (`MDCR_EL2.HPMN`).
pub fn pmu_read(reg: PmuReg) -> u64 {
    match reg {
        PmuReg::Pmcr => {
            let hpmn = MDCR_EL2.read(MDCR_EL2::HPMN) as u8;
            crate::vpmu::guest_pmcr(PMCR_EL0.get(), hpmn)
        }
        PmuReg::Pmcntenset | PmuReg::Pmcntenclr => PMCNTENSET_EL0.get(),
        PmuReg::Pmovsset | PmuReg::Pmovsclr => PMOVSSET_EL0.get(),
        PmuReg::Pmintenset | PmuReg::Pmintenclr => PMINTENSET_EL1.get(),
        // Write-only: `vpmu::guest_access` never asks.
        PmuReg::Pmswinc => 0,
        PmuReg::Pmselr => PMSELR_EL0.get(),
        PmuReg::Pmceid0 => PMCEID0_EL0.get(),
        PmuReg::Pmceid1 => PMCEID1_EL0.get(),
        PmuReg::Pmccntr => PMCCNTR_EL0.get(),
        PmuReg::Pmxevtyper => PMXEVTYPER_EL0.get(),
        PmuReg::Pmxevcntr => PMXEVCNTR_EL0.get(),
        PmuReg::Pmuserenr => PMUSERENR_EL0.get(),
        PmuReg::Pmccfiltr => PMCCFILTR_EL0.get(),
        PmuReg::Pmmir => PMMIR_EL1.get(),
        PmuReg::Pmevcntr(n) => with_selected(n, || PMXEVCNTR_EL0.get()),
        PmuReg::Pmevtyper(n) => with_selected(n, || PMXEVTYPER_EL0.get()),
    }
}

/// Writes PMU register `reg` for the running guest (`value` as `vpmu::guest_access`
/// decided it: NSH already cleared in event types).
pub fn pmu_write(reg: PmuReg, value: u64) {
    match reg {
        PmuReg::Pmcr => PMCR_EL0.set(value),
        PmuReg::Pmcntenset => PMCNTENSET_EL0.set(value),
        PmuReg::Pmcntenclr => PMCNTENCLR_EL0.set(value),
        PmuReg::Pmovsset => PMOVSSET_EL0.set(value),
        PmuReg::Pmovsclr => PMOVSCLR_EL0.set(value),
        PmuReg::Pmintenset => PMINTENSET_EL1.set(value),
        PmuReg::Pmintenclr => PMINTENCLR_EL1.set(value),
        PmuReg::Pmswinc => PMSWINC_EL0.set(value),
        PmuReg::Pmselr => PMSELR_EL0.set(value),
        // Read-only: `vpmu::guest_access` never writes them.
        PmuReg::Pmceid0 | PmuReg::Pmceid1 | PmuReg::Pmmir => {}
        PmuReg::Pmccntr => PMCCNTR_EL0.set(value),
        PmuReg::Pmxevtyper => PMXEVTYPER_EL0.set(value),
        PmuReg::Pmxevcntr => PMXEVCNTR_EL0.set(value),
        PmuReg::Pmuserenr => PMUSERENR_EL0.set(value),
        PmuReg::Pmccfiltr => PMCCFILTR_EL0.set(value),
        PmuReg::Pmevcntr(n) => with_selected(n, || PMXEVCNTR_EL0.set(value)),
        PmuReg::Pmevtyper(n) => with_selected(n, || PMXEVTYPER_EL0.set(value)),
    }
    isb();
}

fn isb() {
    // SAFETY: an ISB only synchronises earlier system-register writes.
    unsafe { core::arch::asm!("isb", options(nomem, nostack, preserves_flags)) };
}

/// `SCTLR_EL1` of a vCPU at reset or entering from a PSCI power-down: the RES1 bits (29, 28,
/// 23, 22, 20, 11) with M, C and I clear (MMU and caches off).
pub const SCTLR_EL1_RESET: u64 = 0x30d0_0800;

impl El1Context {
    /// Reset state of a vCPU with MPIDR `mpidr` (MMU off, caches off, RES1 bits set).
    pub fn reset(mpidr: u64) -> Self {
        Self {
            sctlr_el1: SCTLR_EL1_RESET,
            // MPIDR_EL1 as seen by the guest: bit 31 RES1, U=0, MT=0.
            vmpidr_el2: (1 << 31) | mpidr,
            // CNTV_CTL_EL0: timer disabled.
            cntv_ctl_el0: 0,
            // ICH_VMCR_EL2.VENG1 is set by the guest through ICC_IGRPEN1_EL1.
            ..Self::default()
        }
    }

    /// Saves the current EL1 state of this physical CPU.
    pub fn save(&mut self) {
        self.sctlr_el1 = SCTLR_EL1.get();
        self.ttbr0_el1 = TTBR0_EL1.get();
        self.ttbr1_el1 = TTBR1_EL1.get();
        self.tcr_el1 = TCR_EL1.get();
        self.mair_el1 = MAIR_EL1.get();
        self.amair_el1 = AMAIR_EL1.get();
        self.vbar_el1 = VBAR_EL1.get();
        self.contextidr_el1 = CONTEXTIDR_EL1.get();
        self.sp_el0 = SP_EL0.get();
        self.sp_el1 = SP_EL1.get();
        self.elr_el1 = ELR_EL1.get();
        self.spsr_el1 = SPSR_EL1.get();
        self.esr_el1 = ESR_EL1.get();
        self.far_el1 = FAR_EL1.get();
        self.afsr0_el1 = AFSR0_EL1.get();
        self.afsr1_el1 = AFSR1_EL1.get();
        self.par_el1 = PAR_EL1.get();
        self.tpidr_el0 = TPIDR_EL0.get();
        self.tpidrro_el0 = TPIDRRO_EL0.get();
        self.tpidr_el1 = TPIDR_EL1.get();
        self.cpacr_el1 = CPACR_EL1.get();
        self.csselr_el1 = CSSELR_EL1.get();
        self.cntkctl_el1 = CNTKCTL_EL1.get();
        self.mdscr_el1 = MDSCR_EL1.get();
        self.cntv_ctl_el0 = CNTV_CTL_EL0.get();
        self.cntv_cval_el0 = CNTV_CVAL_EL0.get();
        self.vmpidr_el2 = VMPIDR_EL2.get();
        (self.ich_vmcr_el2, self.ich_ap0r0_el2, self.ich_ap1r0_el2) = super::vgic_hw::save_vmcr();
        // Stop this vCPU's timer from firing while another vCPU runs here.
        CNTV_CTL_EL0.set(0);
        if has_pmu() {
            self.pmu.save();
        }
        self.save_fp();
    }

    /// Loads this state into the physical CPU's EL1 registers.
    pub fn restore(&self) {
        SCTLR_EL1.set(self.sctlr_el1);
        TTBR0_EL1.set(self.ttbr0_el1);
        TTBR1_EL1.set(self.ttbr1_el1);
        TCR_EL1.set(self.tcr_el1);
        MAIR_EL1.set(self.mair_el1);
        AMAIR_EL1.set(self.amair_el1);
        VBAR_EL1.set(self.vbar_el1);
        CONTEXTIDR_EL1.set(self.contextidr_el1);
        SP_EL0.set(self.sp_el0);
        SP_EL1.set(self.sp_el1);
        ELR_EL1.set(self.elr_el1);
        SPSR_EL1.set(self.spsr_el1);
        ESR_EL1.set(self.esr_el1);
        FAR_EL1.set(self.far_el1);
        AFSR0_EL1.set(self.afsr0_el1);
        AFSR1_EL1.set(self.afsr1_el1);
        PAR_EL1.set(self.par_el1);
        TPIDR_EL0.set(self.tpidr_el0);
        TPIDRRO_EL0.set(self.tpidrro_el0);
        TPIDR_EL1.set(self.tpidr_el1);
        CPACR_EL1.set(self.cpacr_el1);
        CSSELR_EL1.set(self.csselr_el1);
        CNTKCTL_EL1.set(self.cntkctl_el1);
        MDSCR_EL1.set(self.mdscr_el1);
        CNTV_CVAL_EL0.set(self.cntv_cval_el0);
        CNTV_CTL_EL0.set(self.cntv_ctl_el0);
        VMPIDR_EL2.set(self.vmpidr_el2);
        super::vgic_hw::restore_vmcr(self.ich_vmcr_el2, self.ich_ap0r0_el2, self.ich_ap1r0_el2);
        if has_pmu() {
            self.pmu.restore();
        }
        self.restore_fp();
        // SAFETY: an ISB only synchronises the context changes above.
        unsafe { core::arch::asm!("isb", options(nomem, nostack, preserves_flags)) };
    }

    fn save_fp(&mut self) {
        let p = self.fp_regs.as_mut_ptr();
        // SAFETY: `p` points to 32 writable 16-byte slots owned by `self`; the FP/SIMD unit
        // is enabled for EL2 (CPTR_EL2.TFP = 0) before any vCPU runs.
        unsafe {
            core::arch::asm!(
                ".arch_extension fp",
                "stp q0, q1, [{p}, #0]", "stp q2, q3, [{p}, #32]",
                "stp q4, q5, [{p}, #64]", "stp q6, q7, [{p}, #96]",
                "stp q8, q9, [{p}, #128]", "stp q10, q11, [{p}, #160]",
                "stp q12, q13, [{p}, #192]", "stp q14, q15, [{p}, #224]",
                "stp q16, q17, [{p}, #256]", "stp q18, q19, [{p}, #288]",
                "stp q20, q21, [{p}, #320]", "stp q22, q23, [{p}, #352]",
                "stp q24, q25, [{p}, #384]", "stp q26, q27, [{p}, #416]",
                "stp q28, q29, [{p}, #448]", "stp q30, q31, [{p}, #480]",
                p = in(reg) p,
                options(nostack, preserves_flags),
            );
        }
        self.fpcr = FPCR.get();
        self.fpsr = FPSR.get();
    }

    fn restore_fp(&self) {
        let p = self.fp_regs.as_ptr();
        // SAFETY: `p` points to 32 readable 16-byte slots owned by `self`; FP is enabled.
        unsafe {
            core::arch::asm!(
                ".arch_extension fp",
                "ldp q0, q1, [{p}, #0]", "ldp q2, q3, [{p}, #32]",
                "ldp q4, q5, [{p}, #64]", "ldp q6, q7, [{p}, #96]",
                "ldp q8, q9, [{p}, #128]", "ldp q10, q11, [{p}, #160]",
                "ldp q12, q13, [{p}, #192]", "ldp q14, q15, [{p}, #224]",
                "ldp q16, q17, [{p}, #256]", "ldp q18, q19, [{p}, #288]",
                "ldp q20, q21, [{p}, #320]", "ldp q22, q23, [{p}, #352]",
                "ldp q24, q25, [{p}, #384]", "ldp q26, q27, [{p}, #416]",
                "ldp q28, q29, [{p}, #448]", "ldp q30, q31, [{p}, #480]",
                p = in(reg) p,
                options(nostack, preserves_flags),
            );
        }
        FPCR.set(self.fpcr);
        FPSR.set(self.fpsr);
    }
}
