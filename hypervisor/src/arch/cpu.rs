//! Per-CPU privileged operations at EL2: identity, EL2 trap configuration, timers, caches,
//! the GICv3 virtual CPU interface (ICH_*) and firmware calls.

use super::sysreg::{read_sysreg, write_sysreg};
use aarch64_cpu::registers::{Writeable, HCR_EL2};

/// Index of this physical CPU in the board's CPU table (kept in TPIDR_EL2 since boot).
pub fn current_index() -> usize {
    read_sysreg!("tpidr_el2") as usize
}

/// MPIDR_EL1 affinity fields of this CPU (Aff3 39:32, Aff2..0 23:0).
pub fn mpidr() -> u64 {
    read_sysreg!("mpidr_el1") & 0xff_00ff_ffff
}

/// MIDR_EL1 of this CPU.
pub fn midr() -> u64 {
    read_sysreg!("midr_el1")
}

/// ID_AA64MMFR0_EL1.PARange (physical address size supported).
pub fn pa_range() -> u8 {
    (read_sysreg!("id_aa64mmfr0_el1") & 0xf) as u8
}

/// VBAR_EL1 of the loaded vCPU.
pub fn vbar_el1() -> u64 {
    read_sysreg!("vbar_el1")
}

/// Waits for an interrupt (interrupts stay masked at EL2; a pending one ends the wait).
pub fn wait_for_interrupt() {
    // SAFETY: WFI only suspends execution until an interrupt or event.
    unsafe { core::arch::asm!("dsb sy", "wfi", options(nomem, nostack, preserves_flags)) };
}

/// `YIELD`: tells the hardware (or the emulator) that this CPU is waiting on another.
#[inline(always)]
pub fn yield_now() {
    // SAFETY: YIELD is a hint with no architectural effect.
    unsafe { core::arch::asm!("yield", options(nomem, nostack, preserves_flags)) };
}

/// Physical counter value (CNTPCT_EL0).
pub fn counter() -> u64 {
    // SAFETY: ISB orders the counter read after earlier instructions.
    unsafe { core::arch::asm!("isb", options(nomem, nostack, preserves_flags)) };
    read_sysreg!("cntpct_el0")
}

/// Counter frequency in Hz (CNTFRQ_EL0).
pub fn counter_frequency() -> u64 {
    read_sysreg!("cntfrq_el0")
}

/// Programs the EL2 physical timer (CNTHP) to fire at `deadline` (physical count).
pub fn set_hyp_timer(deadline: u64) {
    write_sysreg!("cnthp_cval_el2", deadline);
    // CNTHP_CTL_EL2: ENABLE=1, IMASK=0.
    write_sysreg!("cnthp_ctl_el2", 1);
}

/// Stops the EL2 physical timer.
pub fn stop_hyp_timer() {
    write_sysreg!("cnthp_ctl_el2", 0);
}

/// EL2 configuration shared by every vCPU on this physical CPU. The GICv3 virtual CPU
/// interface registers (ICC_SRE_EL2, ICH_*) are touched only when `gic_v3`.
pub fn init_el2(vtcr: u64, gic_v3: bool) {
    // HCR_EL2 (Arm ARM D23.2.53): EL1 is AArch64, SMC traps, WFI traps, physical SError/IRQ/FIQ to EL2 and virtual ones to the guest,
    // set/way invalidation upgraded to clean+invalidate, stage 2 on, TLB and cache
    // maintenance broadcast, barriers at least inner shareable, stage-1 walks that hit
    // device memory at stage 2 fault.
    HCR_EL2.write(
        HCR_EL2::VM::Enable
            + HCR_EL2::SWIO::SET
            + HCR_EL2::PTW::SET
            + HCR_EL2::FMO::EnableVirtualFIQ
            + HCR_EL2::IMO::EnableVirtualIRQ
            + HCR_EL2::AMO::SET
            + HCR_EL2::FB::SET
            + HCR_EL2::BSU::InnerShareable
            + HCR_EL2::TWI::SET
            + HCR_EL2::TSC::EnableTrapEl1SmcToEl2
            + HCR_EL2::RW::EL1IsAarch64,
    );
    write_sysreg!("vtcr_el2", vtcr);
    // CPTR_EL2: no FP/SIMD trap (TFP=0); bits 13:12 and 9:0 are RES1.
    write_sysreg!("cptr_el2", 0x33ff);
    // CNTHCTL_EL2: EL1PCTEN=1 (physical counter readable), EL1PCEN=0 (physical timer
    // accesses trap: guests use the virtual timer).
    write_sysreg!("cnthctl_el2", 1);
    write_sysreg!("cntvoff_el2", 0);
    // VPIDR_EL2: guests see the real MIDR.
    write_sysreg!("vpidr_el2", midr());
    // MDCR_EL2: HPMN = PMCR_EL0.N (all counters to EL1), no debug traps.
    let pmcr_n = if super::sysreg::has_pmu() {
        (read_sysreg!("pmcr_el0") >> 11) & 0x1f
    } else {
        0
    };
    // MDCR_EL2.HPMD (FEAT_PMUv3p1, PMUVer >= 4): no event counting at EL2 even if a guest
    // sets PMEVTYPER<n>.NSH, so the hypervisor's work never shows in a guest's counts.
    let pmu_ver = (read_sysreg!("id_aa64dfr0_el1") >> 8) & 0xf;
    let hpmd = if (4..0xf).contains(&pmu_ver) {
        1 << 17
    } else {
        0
    };
    write_sysreg!("mdcr_el2", pmcr_n | hpmd);
    if gic_v3 {
        // ICC_SRE_EL2: SRE=1, Enable=1 (EL1 may use the system register interface).
        write_sysreg!("s3_4_c12_c9_5", 0xf);
        // ICH_HCR_EL2.En=1.
        write_sysreg!("s3_4_c12_c11_0", 1);
    }
    // SAFETY: ISB synchronises the configuration above.
    unsafe { core::arch::asm!("isb", options(nomem, nostack, preserves_flags)) };
}

/// Installs a VM's stage-2 translation (VTTBR_EL2 = VMID << 48 | root table).
pub fn set_vttbr(vttbr: u64) {
    write_sysreg!("vttbr_el2", vttbr);
    // SAFETY: ISB makes the new VTTBR visible to following guest entries.
    unsafe { core::arch::asm!("isb", options(nomem, nostack, preserves_flags)) };
}

/// Makes translation-table writes visible to every CPU's table walker (`DSB ISHST`), then
/// synchronises this CPU (`ISB`).
pub fn publish_table_update() {
    // SAFETY: barriers only.
    unsafe { core::arch::asm!("dsb ishst", "isb", options(nostack, preserves_flags)) };
}

/// Invalidates all stage-1 and stage-2 TLB entries of all VMIDs, inner shareable.
pub fn flush_guest_tlbs() {
    // SAFETY: TLB maintenance has no memory-safety effect; DSB/ISB complete it.
    unsafe {
        core::arch::asm!(
            "dsb ishst",
            "tlbi alle1is",
            "dsb ish",
            "isb",
            options(nostack, preserves_flags)
        )
    };
}

/// Cleans and invalidates the data cache by VA for `[start, start+len)` to the point of
/// coherency, so a guest started with its MMU off sees what the hypervisor wrote.
pub fn clean_dcache_range(start: u64, len: u64) {
    let line = 64u64;
    let mut a = start & !(line - 1);
    while a < start + len {
        // SAFETY: DC CIVAC on an address the hypervisor maps has no memory-safety effect.
        unsafe { core::arch::asm!("dc civac, {}", in(reg) a, options(nostack, preserves_flags)) };
        a += line;
    }
    // SAFETY: barriers only.
    unsafe {
        core::arch::asm!(
            "dsb sy",
            "ic iallu",
            "dsb sy",
            "isb",
            options(nostack, preserves_flags)
        )
    };
}

/// ESR_EL2, FAR_EL2 and HPFAR_EL2 of the current exit.
pub fn fault_registers() -> (u64, u64, u64) {
    (
        read_sysreg!("esr_el2"),
        read_sysreg!("far_el2"),
        read_sysreg!("hpfar_el2"),
    )
}

/// Number of ICH_LR<n>_EL2 list registers (ICH_VTR_EL2.ListRegs + 1).
pub fn num_list_registers() -> usize {
    (read_sysreg!("s3_4_c12_c11_1") & 0x1f) as usize + 1
}

/// ICH_MISR_EL2 (maintenance interrupt status).
pub fn ich_misr() -> u64 {
    read_sysreg!("s3_4_c12_c11_2")
}

/// ICH_EISR_EL2 (LRs holding an EOI-maintenance interrupt that has been deactivated).
pub fn ich_eisr() -> u64 {
    read_sysreg!("s3_4_c12_c11_3")
}

/// ICH_VMCR_EL2.
pub fn ich_vmcr() -> u64 {
    read_sysreg!("s3_4_c12_c11_7")
}

/// Writes ICH_VMCR_EL2.
pub fn set_ich_vmcr(v: u64) {
    write_sysreg!("s3_4_c12_c11_7", v);
}

/// ICH_AP1R0_EL2.
pub fn ich_ap1r0() -> u64 {
    read_sysreg!("s3_4_c12_c9_0")
}

/// Writes ICH_AP1R0_EL2.
pub fn set_ich_ap1r0(v: u64) {
    write_sysreg!("s3_4_c12_c9_0", v);
}

/// Writes ICH_HCR_EL2.
pub fn set_ich_hcr(v: u64) {
    write_sysreg!("s3_4_c12_c11_0", v);
}

/// Reads list register `n` (0..16).
pub fn read_lr(n: usize) -> u64 {
    match n {
        0 => read_sysreg!("s3_4_c12_c12_0"),
        1 => read_sysreg!("s3_4_c12_c12_1"),
        2 => read_sysreg!("s3_4_c12_c12_2"),
        3 => read_sysreg!("s3_4_c12_c12_3"),
        4 => read_sysreg!("s3_4_c12_c12_4"),
        5 => read_sysreg!("s3_4_c12_c12_5"),
        6 => read_sysreg!("s3_4_c12_c12_6"),
        7 => read_sysreg!("s3_4_c12_c12_7"),
        8 => read_sysreg!("s3_4_c12_c13_0"),
        9 => read_sysreg!("s3_4_c12_c13_1"),
        10 => read_sysreg!("s3_4_c12_c13_2"),
        11 => read_sysreg!("s3_4_c12_c13_3"),
        12 => read_sysreg!("s3_4_c12_c13_4"),
        13 => read_sysreg!("s3_4_c12_c13_5"),
        14 => read_sysreg!("s3_4_c12_c13_6"),
        15 => read_sysreg!("s3_4_c12_c13_7"),
        _ => 0,
    }
}

/// Writes list register `n` (0..16); other indices are ignored.
pub fn write_lr(n: usize, v: u64) {
    match n {
        0 => write_sysreg!("s3_4_c12_c12_0", v),
        1 => write_sysreg!("s3_4_c12_c12_1", v),
        2 => write_sysreg!("s3_4_c12_c12_2", v),
        3 => write_sysreg!("s3_4_c12_c12_3", v),
        4 => write_sysreg!("s3_4_c12_c12_4", v),
        5 => write_sysreg!("s3_4_c12_c12_5", v),
        6 => write_sysreg!("s3_4_c12_c12_6", v),
        7 => write_sysreg!("s3_4_c12_c12_7", v),
        8 => write_sysreg!("s3_4_c12_c13_0", v),
        9 => write_sysreg!("s3_4_c12_c13_1", v),
        10 => write_sysreg!("s3_4_c12_c13_2", v),
        11 => write_sysreg!("s3_4_c12_c13_3", v),
        12 => write_sysreg!("s3_4_c12_c13_4", v),
        13 => write_sysreg!("s3_4_c12_c13_5", v),
        14 => write_sysreg!("s3_4_c12_c13_6", v),
        15 => write_sysreg!("s3_4_c12_c13_7", v),
        _ => {}
    }
}

/// Virtual timer registers of the running vCPU (CNTV_CTL_EL0, CNTV_CVAL_EL0).
pub fn vtimer() -> (u64, u64) {
    (read_sysreg!("cntv_ctl_el0"), read_sysreg!("cntv_cval_el0"))
}

/// Writes CNTV_CTL_EL0 of the running vCPU.
pub fn set_vtimer_ctl(ctl: u64) {
    write_sysreg!("cntv_ctl_el0", ctl);
}

/// Virtual counter (CNTVCT_EL0); equals the physical counter since CNTVOFF_EL2 = 0.
pub fn virtual_counter() -> u64 {
    read_sysreg!("cntvct_el0")
}

/// The loaded vCPU's EL1 system registers, live in this CPU (the run loop restored them
/// before entering the guest): what exit handling reads and an injected exception sets.
pub struct LiveEl1;

impl crate::vcpu::GuestSysRegs for LiveEl1 {
    fn vbar_el1(&self) -> u64 {
        vbar_el1()
    }

    fn set_el1_exception(&mut self, esr: u64, far: Option<u64>, elr: u64, spsr: u64) {
        write_sysreg!("esr_el1", esr);
        if let Some(far) = far {
            write_sysreg!("far_el1", far);
        }
        write_sysreg!("elr_el1", elr);
        write_sysreg!("spsr_el1", spsr);
    }
}

/// The syndrome registers of the exit just taken.
pub fn syndrome() -> crate::trap::Syndrome {
    let (esr, far, hpfar) = fault_registers();
    crate::trap::Syndrome { esr, far, hpfar }
}

/// Starts physical CPU `mpidr` at the secondary entry with `context` in x0 (PSCI CPU_ON
/// to firmware by SMC).
pub fn firmware_cpu_on(mpidr: u64, context: u64) -> Result<(), smccc::psci::Error> {
    smccc::psci::cpu_on::<smccc::Smc>(mpidr, super::boot::secondary_entry_address(), context)
}

/// Powers the machine off through firmware (PSCI SYSTEM_OFF).
pub fn firmware_system_off() -> ! {
    let _ = smccc::psci::system_off::<smccc::Smc>();
    loop {
        wait_for_interrupt();
    }
}
