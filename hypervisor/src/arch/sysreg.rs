//! One macro for every `mrs`/`msr` the core needs that `aarch64-cpu` lacks (ICH_ELRSR/EISR,
//! VPIDR_EL2, EL1 context registers by encoded name), and the EL1 context of a vCPU.

/// Reads a system register by name or `s3_x_cy_cz_w` encoding.
macro_rules! read_sysreg {
    ($name:literal) => {{
        let v: u64;
        // SAFETY: reading a system register at EL2 has no memory-safety effect; the
        // register named is one this core owns or reads for diagnostics.
        unsafe { core::arch::asm!(concat!("mrs {}, ", $name), out(reg) v, options(nomem, nostack, preserves_flags)) };
        v
    }};
}

/// Writes a system register by name or `s3_x_cy_cz_w` encoding.
macro_rules! write_sysreg {
    ($name:literal, $v:expr) => {{
        let v: u64 = $v;
        // SAFETY: writing this register affects only translation/trap/interrupt
        // configuration of the EL1/EL0 guest context or the EL2 virtual GIC interface,
        // which the core owns; callers in `arch` document ordering requirements.
        unsafe { core::arch::asm!(concat!("msr ", $name, ", {}"), in(reg) v, options(nomem, nostack, preserves_flags)) };
    }};
}

pub(crate) use read_sysreg;
pub(crate) use write_sysreg;

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
    let ver = (read_sysreg!("id_aa64dfr0_el1") >> 8) & 0xf;
    ver != 0 && ver != 0xf
}

/// Event counters this CPU implements (`PMCR_EL0.N`, as EL2 reads it).
fn pmu_counters() -> usize {
    (((read_sysreg!("pmcr_el0") >> 11) & 0x1f) as usize).min(31)
}

impl PmuContext {
    /// Saves this CPU's PMU state and stops its counters.
    fn save(&mut self) {
        self.pmcnten = read_sysreg!("pmcntenset_el0");
        // Stop counting first, so the saved counts are the guest's own.
        write_sysreg!("pmcntenclr_el0", PMU_ALL_COUNTERS);
        self.pmcr = read_sysreg!("pmcr_el0") & PMCR_WRITABLE;
        self.pmselr = read_sysreg!("pmselr_el0");
        self.pminten = read_sysreg!("pmintenset_el1");
        self.pmovs = read_sysreg!("pmovsset_el0");
        self.pmuserenr = read_sysreg!("pmuserenr_el0");
        self.pmccntr = read_sysreg!("pmccntr_el0");
        self.pmccfiltr = read_sysreg!("pmccfiltr_el0");
        for i in 0..pmu_counters() {
            write_sysreg!("pmselr_el0", i as u64);
            isb();
            self.evcntr[i] = read_sysreg!("pmxevcntr_el0");
            self.evtyper[i] = read_sysreg!("pmxevtyper_el0");
        }
    }

    /// Loads this state into the CPU's PMU (counting resumes if the vCPU had it on).
    fn restore(&self) {
        write_sysreg!("pmcntenclr_el0", PMU_ALL_COUNTERS);
        write_sysreg!("pmintenclr_el1", PMU_ALL_COUNTERS);
        write_sysreg!("pmovsclr_el0", PMU_ALL_COUNTERS);
        for i in 0..pmu_counters() {
            write_sysreg!("pmselr_el0", i as u64);
            isb();
            write_sysreg!("pmxevtyper_el0", self.evtyper[i]);
            write_sysreg!("pmxevcntr_el0", self.evcntr[i]);
        }
        write_sysreg!("pmccfiltr_el0", self.pmccfiltr);
        write_sysreg!("pmccntr_el0", self.pmccntr);
        write_sysreg!("pmuserenr_el0", self.pmuserenr);
        write_sysreg!("pmselr_el0", self.pmselr);
        write_sysreg!("pmovsset_el0", self.pmovs);
        write_sysreg!("pmintenset_el1", self.pminten);
        write_sysreg!("pmcr_el0", self.pmcr);
        write_sysreg!("pmcntenset_el0", self.pmcnten);
    }
}

fn isb() {
    // SAFETY: an ISB only synchronises earlier system-register writes.
    unsafe { core::arch::asm!("isb", options(nomem, nostack, preserves_flags)) };
}

impl El1Context {
    /// Reset state of a vCPU with MPIDR `mpidr` (MMU off, caches off, RES1 bits set).
    pub fn reset(mpidr: u64) -> Self {
        Self {
            // SCTLR_EL1 RES1 bits (29, 28, 23, 22, 20, 11) with M, C, I clear.
            sctlr_el1: 0x30d0_0800,
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
        self.sctlr_el1 = read_sysreg!("sctlr_el1");
        self.ttbr0_el1 = read_sysreg!("ttbr0_el1");
        self.ttbr1_el1 = read_sysreg!("ttbr1_el1");
        self.tcr_el1 = read_sysreg!("tcr_el1");
        self.mair_el1 = read_sysreg!("mair_el1");
        self.amair_el1 = read_sysreg!("amair_el1");
        self.vbar_el1 = read_sysreg!("vbar_el1");
        self.contextidr_el1 = read_sysreg!("contextidr_el1");
        self.sp_el0 = read_sysreg!("sp_el0");
        self.sp_el1 = read_sysreg!("sp_el1");
        self.elr_el1 = read_sysreg!("elr_el1");
        self.spsr_el1 = read_sysreg!("spsr_el1");
        self.esr_el1 = read_sysreg!("esr_el1");
        self.far_el1 = read_sysreg!("far_el1");
        self.afsr0_el1 = read_sysreg!("afsr0_el1");
        self.afsr1_el1 = read_sysreg!("afsr1_el1");
        self.par_el1 = read_sysreg!("par_el1");
        self.tpidr_el0 = read_sysreg!("tpidr_el0");
        self.tpidrro_el0 = read_sysreg!("tpidrro_el0");
        self.tpidr_el1 = read_sysreg!("tpidr_el1");
        self.cpacr_el1 = read_sysreg!("cpacr_el1");
        self.csselr_el1 = read_sysreg!("csselr_el1");
        self.cntkctl_el1 = read_sysreg!("cntkctl_el1");
        self.mdscr_el1 = read_sysreg!("mdscr_el1");
        self.cntv_ctl_el0 = read_sysreg!("cntv_ctl_el0");
        self.cntv_cval_el0 = read_sysreg!("cntv_cval_el0");
        self.vmpidr_el2 = read_sysreg!("vmpidr_el2");
        (self.ich_vmcr_el2, self.ich_ap1r0_el2) = super::vgic_hw::save_vmcr();
        // Stop this vCPU's timer from firing while another vCPU runs here.
        write_sysreg!("cntv_ctl_el0", 0);
        if has_pmu() {
            self.pmu.save();
        }
        self.save_fp();
    }

    /// Loads this state into the physical CPU's EL1 registers.
    pub fn restore(&self) {
        write_sysreg!("sctlr_el1", self.sctlr_el1);
        write_sysreg!("ttbr0_el1", self.ttbr0_el1);
        write_sysreg!("ttbr1_el1", self.ttbr1_el1);
        write_sysreg!("tcr_el1", self.tcr_el1);
        write_sysreg!("mair_el1", self.mair_el1);
        write_sysreg!("amair_el1", self.amair_el1);
        write_sysreg!("vbar_el1", self.vbar_el1);
        write_sysreg!("contextidr_el1", self.contextidr_el1);
        write_sysreg!("sp_el0", self.sp_el0);
        write_sysreg!("sp_el1", self.sp_el1);
        write_sysreg!("elr_el1", self.elr_el1);
        write_sysreg!("spsr_el1", self.spsr_el1);
        write_sysreg!("esr_el1", self.esr_el1);
        write_sysreg!("far_el1", self.far_el1);
        write_sysreg!("afsr0_el1", self.afsr0_el1);
        write_sysreg!("afsr1_el1", self.afsr1_el1);
        write_sysreg!("par_el1", self.par_el1);
        write_sysreg!("tpidr_el0", self.tpidr_el0);
        write_sysreg!("tpidrro_el0", self.tpidrro_el0);
        write_sysreg!("tpidr_el1", self.tpidr_el1);
        write_sysreg!("cpacr_el1", self.cpacr_el1);
        write_sysreg!("csselr_el1", self.csselr_el1);
        write_sysreg!("cntkctl_el1", self.cntkctl_el1);
        write_sysreg!("mdscr_el1", self.mdscr_el1);
        write_sysreg!("cntv_cval_el0", self.cntv_cval_el0);
        write_sysreg!("cntv_ctl_el0", self.cntv_ctl_el0);
        write_sysreg!("vmpidr_el2", self.vmpidr_el2);
        super::vgic_hw::restore_vmcr(self.ich_vmcr_el2, self.ich_ap1r0_el2);
        if has_pmu() {
            self.pmu.restore();
        }
        self.restore_fp();
        // SAFETY: an ISB only synchronises the context changes above.
        unsafe { core::arch::asm!("isb", options(nomem, nostack, preserves_flags)) };
    }

    fn save_fp(&mut self) {
        let p = self.fp_regs.as_mut_ptr();
        let (fpcr, fpsr): (u64, u64);
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
                "mrs {c}, fpcr", "mrs {s}, fpsr",
                p = in(reg) p, c = out(reg) fpcr, s = out(reg) fpsr,
                options(nostack, preserves_flags),
            );
        }
        self.fpcr = fpcr;
        self.fpsr = fpsr;
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
                "msr fpcr, {c}", "msr fpsr, {s}",
                p = in(reg) p, c = in(reg) self.fpcr, s = in(reg) self.fpsr,
                options(nostack, preserves_flags),
            );
        }
    }
}
