//! Per-CPU privileged operations at EL2: identity, EL2 trap configuration, timers, caches,
//! the GICv3 virtual CPU interface (ICH_*) and firmware calls.

use super::sysreg::{CNTHP_CVAL_EL2, ICH_EISR_EL2, PMCR_EL0, VPIDR_EL2};
use aarch64_cpu::registers::{
    ReadWriteable, Readable, Writeable, CNTFRQ_EL0, CNTHCTL_EL2, CNTHP_CTL_EL2, CNTPCT_EL0,
    CNTVCT_EL0, CNTVOFF_EL2, CNTV_CTL_EL0, CNTV_CVAL_EL0, CPTR_EL2, ELR_EL1, ESR_EL1, ESR_EL2,
    FAR_EL1, FAR_EL2, HCR_EL2, HPFAR_EL2, ICC_SRE_EL2, ICH_AP0R0_EL2, ICH_AP1R0_EL2, ICH_HCR_EL2,
    ICH_LR0_EL2, ICH_LR10_EL2, ICH_LR11_EL2, ICH_LR12_EL2, ICH_LR13_EL2, ICH_LR14_EL2,
    ICH_LR15_EL2, ICH_LR1_EL2, ICH_LR2_EL2, ICH_LR3_EL2, ICH_LR4_EL2, ICH_LR5_EL2, ICH_LR6_EL2,
    ICH_LR7_EL2, ICH_LR8_EL2, ICH_LR9_EL2, ICH_MISR_EL2, ICH_VMCR_EL2, ICH_VTR_EL2,
    ID_AA64DFR0_EL1, ID_AA64MMFR0_EL1, MDCR_EL2, MIDR_EL1, MPIDR_EL1, SPSR_EL1, TPIDR_EL2,
    VBAR_EL1, VTCR_EL2, VTTBR_EL2,
};

/// CPTR_EL2 (Arm ARM, "CPTR_EL2, Architectural Feature Trap Register (EL2)", HCR_EL2.E2H = 0):
/// the RES1 bits 13:12 and 9:0, with TFP (bit 10), TTA and TCPAC clear. `aarch64-cpu` names
/// only the TAM field of this register, so the value is written whole.
const CPTR_EL2_RES1_NO_TRAPS: u64 = 0x33ff;

/// Index of this physical CPU in the board's CPU table (kept in TPIDR_EL2 since boot).
pub fn current_index() -> usize {
    TPIDR_EL2.get() as usize
}

/// MPIDR_EL1 affinity fields of this CPU (Aff3 39:32, Aff2..0 23:0).
pub fn mpidr() -> u64 {
    MPIDR_EL1.get() & 0xff_00ff_ffff
}

/// MIDR_EL1 of this CPU.
pub fn midr() -> u64 {
    MIDR_EL1.get()
}

/// ID_AA64MMFR0_EL1.PARange (physical address size supported).
pub fn pa_range() -> u8 {
    ID_AA64MMFR0_EL1.read(ID_AA64MMFR0_EL1::PARange) as u8
}

/// VBAR_EL1 of the loaded vCPU.
pub fn vbar_el1() -> u64 {
    VBAR_EL1.get()
}

/// Waits for an interrupt (interrupts stay masked at EL2; a pending one ends the wait).
pub fn wait_for_interrupt() {
    // SAFETY: WFI only suspends execution until an interrupt or event.
    unsafe { core::arch::asm!("dsb sy", "wfi", options(nomem, nostack, preserves_flags)) };
}

/// Whether a guest's `WFI` traps to EL2 (`HCR_EL2.TWI`). A vCPU alone on its physical CPU
/// may sleep in `WFI` natively: any physical interrupt (a kick, its timer) still exits to
/// EL2, and a pending virtual interrupt ends the wait, so nothing is lost and the wake-up
/// costs no trap.
pub fn set_wfi_trap(trap: bool) {
    HCR_EL2.modify(if trap {
        HCR_EL2::TWI::SET
    } else {
        HCR_EL2::TWI::CLEAR
    });
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
    CNTPCT_EL0.get()
}

/// Counter frequency in Hz (CNTFRQ_EL0).
pub fn counter_frequency() -> u64 {
    CNTFRQ_EL0.get()
}

/// Programs the EL2 physical timer (CNTHP) to fire at `deadline` (physical count).
pub fn set_hyp_timer(deadline: u64) {
    CNTHP_CVAL_EL2.set(deadline);
    // CNTHP_CTL_EL2 (Arm ARM, "CNTHP_CTL_EL2"): ENABLE=1, IMASK=0.
    CNTHP_CTL_EL2.write(CNTHP_CTL_EL2::ENABLE::SET + CNTHP_CTL_EL2::IMASK::CLEAR);
}

/// Whether [`nap_until`] may wait in `WFI`.
static NAPS: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Per CPU: between acknowledging a physical interrupt and its EOI (drivers' handlers run
/// there).
static IN_INTERRUPT: [core::sync::atomic::AtomicBool; super::boot::MAX_CPUS] =
    [const { core::sync::atomic::AtomicBool::new(false) }; super::boot::MAX_CPUS];

/// Marks this CPU as handling a physical interrupt (acknowledged, no EOI yet) or not: no
/// [`nap_until`] sleeps meanwhile.
pub fn set_in_interrupt(active: bool) {
    if let Some(b) = IN_INTERRUPT.get(current_index()) {
        b.store(active, core::sync::atomic::Ordering::Relaxed);
    }
}

/// Lets [`nap_until`] sleep: the boot CPU's EL2 timer interrupt is enabled at its GIC (every
/// other CPU enables its own before it runs anything that may nap).
pub fn allow_naps() {
    NAPS.store(true, core::sync::atomic::Ordering::Release);
}

/// Sleeps in `WFI` until an interrupt or the physical count `deadline`, whichever comes
/// first, and leaves the EL2 timer as it found it (an earlier deadline of the run loop's
/// still ends the nap). Interrupts stay masked: nothing is handled here, a pending one
/// only ends the wait and is taken as usual once the caller returns to a guest.
/// Until [`allow_naps`] (the boot CPU's interrupt controller and EL2 timer are not set up
/// yet: nothing would end the wait), and while this CPU handles a physical interrupt
/// ([`set_in_interrupt`]: the GIC signals nothing of the same priority until its EOI, so
/// not the EL2 timer either), it only spins once.
pub fn nap_until(deadline: u64) {
    use core::sync::atomic::Ordering;
    let busy = IN_INTERRUPT
        .get(current_index())
        .is_none_or(|b| b.load(Ordering::Relaxed));
    if !NAPS.load(Ordering::Acquire) || busy {
        core::hint::spin_loop();
        return;
    }
    let (ctl, cval) = (CNTHP_CTL_EL2.get(), CNTHP_CVAL_EL2.get());
    let armed = CNTHP_CTL_EL2.matches_all(CNTHP_CTL_EL2::ENABLE::SET + CNTHP_CTL_EL2::IMASK::CLEAR);
    if !armed || deadline < cval {
        set_hyp_timer(deadline);
    }
    wait_for_interrupt();
    CNTHP_CVAL_EL2.set(cval);
    CNTHP_CTL_EL2.set(ctl);
}

/// Stops the EL2 physical timer.
pub fn stop_hyp_timer() {
    CNTHP_CTL_EL2.write(CNTHP_CTL_EL2::ENABLE::CLEAR + CNTHP_CTL_EL2::IMASK::CLEAR);
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
    // VTCR_EL2 (Arm ARM, "VTCR_EL2"): computed whole by `mm::stage2::vtcr_el2`.
    VTCR_EL2.set(vtcr);
    // CPTR_EL2: no FP/SIMD trap (TFP=0); bits 13:12 and 9:0 are RES1.
    CPTR_EL2.set(CPTR_EL2_RES1_NO_TRAPS);
    // CNTHCTL_EL2 (Arm ARM, "CNTHCTL_EL2", E2H = 0): EL1PCTEN=1 (physical counter readable),
    // EL1PCEN=0 (EL1 physical timer accesses trap: the core emulates that timer, `ptimer`).
    CNTHCTL_EL2.write(CNTHCTL_EL2::EL1PCTEN::SET + CNTHCTL_EL2::EL1PCEN::CLEAR);
    CNTVOFF_EL2.set(0);
    // VPIDR_EL2: guests see the real MIDR.
    VPIDR_EL2.set(midr());
    // MDCR_EL2 (Arm ARM, "MDCR_EL2"): HPMN = PMCR_EL0.N (all counters to EL1), no debug
    // traps.
    let pmcr_n = if super::sysreg::has_pmu() {
        PMCR_EL0.read(PMCR_EL0::N)
    } else {
        0
    };
    // The hypervisor's work never shows in a guest's counts (`vpmu`): MDCR_EL2.HPMD
    // (FEAT_PMUv3p1, PMUVer >= 4) stops event counting at EL2, MDCR_EL2.HCCD (FEAT_PMUv3p5,
    // PMUVer >= 6) the cycle counter; before PMUv3p5 MDCR_EL2.TPM traps the guest's PMU
    // accesses so that the core clears NSH in its event-type and filter writes.
    let pmu_ver = ID_AA64DFR0_EL1.read(ID_AA64DFR0_EL1::PMUVer);
    let implemented = |min: u64| (min..0xf).contains(&pmu_ver);
    let hpmd = if implemented(4) {
        MDCR_EL2::HPMD::SET
    } else {
        MDCR_EL2::HPMD::CLEAR
    };
    let hccd = if implemented(6) {
        MDCR_EL2::HCCD::SET
    } else {
        MDCR_EL2::HCCD::CLEAR
    };
    let tpm = if crate::vpmu::must_trap(pmu_ver) {
        MDCR_EL2::TPM::SET
    } else {
        MDCR_EL2::TPM::CLEAR
    };
    MDCR_EL2.write(MDCR_EL2::HPMN.val(pmcr_n) + hpmd + hccd + tpm);
    if gic_v3 {
        // ICC_SRE_EL2 (GICv3, IHI 0069): SRE=1, DFB=1, DIB=1, Enable=1 (EL1 may use the
        // system register interface).
        ICC_SRE_EL2.write(
            ICC_SRE_EL2::SRE::SET
                + ICC_SRE_EL2::DFB::SET
                + ICC_SRE_EL2::DIB::SET
                + ICC_SRE_EL2::ENABLE::SET,
        );
        // ICH_HCR_EL2.En=1.
        ICH_HCR_EL2.write(ICH_HCR_EL2::En::SET);
    }
    // SAFETY: ISB synchronises the configuration above.
    unsafe { core::arch::asm!("isb", options(nomem, nostack, preserves_flags)) };
}

/// Installs a VM's stage-2 translation (VTTBR_EL2 = VMID << 48 | root table).
pub fn set_vttbr(vttbr: u64) {
    VTTBR_EL2.set(vttbr);
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
    let end = start + len;
    // Eight lines per loop step: the loop's add, compare and branch cost as much as the
    // `DC CIVAC` itself, and a VM's first touch of a 2 MiB block cleans 32768 lines.
    while a + 8 * line <= end {
        // SAFETY: DC CIVAC on addresses the hypervisor maps has no memory-safety effect.
        unsafe {
            core::arch::asm!(
                "dc civac, {a}",
                "add {t}, {a}, #64",
                "dc civac, {t}",
                ".rept 6",
                "add {t}, {t}, #64",
                "dc civac, {t}",
                ".endr",
                a = in(reg) a,
                t = out(reg) _,
                options(nostack, preserves_flags)
            )
        };
        a += 8 * line;
    }
    while a < end {
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

/// Makes `[start, start+len)` coherent with a device that does DMA without snooping the
/// caches: cleans and invalidates each line to the point of coherency (before the device
/// reads the range, and again before the CPU reads what the device wrote), then waits for
/// completion. With `coherent`, only the barrier: the device snoops, but the CPU's stores
/// must still be visible before a doorbell write and its loads must not be hoisted above
/// the completion it polled.
pub fn dma_sync_range(start: u64, len: u64, coherent: bool) {
    if !coherent {
        let line = 64u64;
        let mut a = start & !(line - 1);
        while a < start + len {
            // SAFETY: DC CIVAC on an address the hypervisor maps has no memory-safety
            // effect (the line is written back before it is invalidated, so no store is lost).
            unsafe {
                core::arch::asm!("dc civac, {}", in(reg) a, options(nostack, preserves_flags))
            };
            a += line;
        }
    }
    // SAFETY: a barrier only; no `nomem`, so it also orders the compiler's accesses.
    unsafe { core::arch::asm!("dsb sy", options(nostack, preserves_flags)) };
}

/// ESR_EL2, FAR_EL2 and HPFAR_EL2 of the current exit.
pub fn fault_registers() -> (u64, u64, u64) {
    (ESR_EL2.get(), FAR_EL2.get(), HPFAR_EL2.get())
}

/// ESR_EL2 alone, for an exit that needs only the syndrome (a system register access):
/// `fault_registers` reads the two address registers as well.
pub fn esr() -> u64 {
    ESR_EL2.get()
}

/// Number of ICH_LR<n>_EL2 list registers (ICH_VTR_EL2.ListRegs + 1).
pub fn num_list_registers() -> usize {
    ICH_VTR_EL2.read(ICH_VTR_EL2::ListRegs) as usize + 1
}

/// ICH_MISR_EL2 (maintenance interrupt status).
pub fn ich_misr() -> u64 {
    ICH_MISR_EL2.get()
}

/// ICH_EISR_EL2 (LRs holding an EOI-maintenance interrupt that has been deactivated).
pub fn ich_eisr() -> u64 {
    ICH_EISR_EL2.get()
}

/// ICH_VMCR_EL2.
pub fn ich_vmcr() -> u64 {
    ICH_VMCR_EL2.get()
}

/// Writes ICH_VMCR_EL2.
pub fn set_ich_vmcr(v: u64) {
    ICH_VMCR_EL2.set(v);
}

/// ICH_AP0R0_EL2 (Group 0 active priorities).
pub fn ich_ap0r0() -> u64 {
    ICH_AP0R0_EL2.get()
}

/// Writes ICH_AP0R0_EL2.
pub fn set_ich_ap0r0(v: u64) {
    ICH_AP0R0_EL2.set(v);
}

/// ICH_AP1R0_EL2.
pub fn ich_ap1r0() -> u64 {
    ICH_AP1R0_EL2.get()
}

/// Writes ICH_AP1R0_EL2.
pub fn set_ich_ap1r0(v: u64) {
    ICH_AP1R0_EL2.set(v);
}

/// Writes ICH_HCR_EL2.
pub fn set_ich_hcr(v: u64) {
    ICH_HCR_EL2.set(v);
}

/// Reads list register `n` (0..16).
pub fn read_lr(n: usize) -> u64 {
    match n {
        0 => ICH_LR0_EL2.get(),
        1 => ICH_LR1_EL2.get(),
        2 => ICH_LR2_EL2.get(),
        3 => ICH_LR3_EL2.get(),
        4 => ICH_LR4_EL2.get(),
        5 => ICH_LR5_EL2.get(),
        6 => ICH_LR6_EL2.get(),
        7 => ICH_LR7_EL2.get(),
        8 => ICH_LR8_EL2.get(),
        9 => ICH_LR9_EL2.get(),
        10 => ICH_LR10_EL2.get(),
        11 => ICH_LR11_EL2.get(),
        12 => ICH_LR12_EL2.get(),
        13 => ICH_LR13_EL2.get(),
        14 => ICH_LR14_EL2.get(),
        15 => ICH_LR15_EL2.get(),
        _ => 0,
    }
}

/// Writes list register `n` (0..16); other indices are ignored.
pub fn write_lr(n: usize, v: u64) {
    match n {
        0 => ICH_LR0_EL2.set(v),
        1 => ICH_LR1_EL2.set(v),
        2 => ICH_LR2_EL2.set(v),
        3 => ICH_LR3_EL2.set(v),
        4 => ICH_LR4_EL2.set(v),
        5 => ICH_LR5_EL2.set(v),
        6 => ICH_LR6_EL2.set(v),
        7 => ICH_LR7_EL2.set(v),
        8 => ICH_LR8_EL2.set(v),
        9 => ICH_LR9_EL2.set(v),
        10 => ICH_LR10_EL2.set(v),
        11 => ICH_LR11_EL2.set(v),
        12 => ICH_LR12_EL2.set(v),
        13 => ICH_LR13_EL2.set(v),
        14 => ICH_LR14_EL2.set(v),
        15 => ICH_LR15_EL2.set(v),
        _ => {}
    }
}

/// Virtual timer registers of the running vCPU (CNTV_CTL_EL0, CNTV_CVAL_EL0).
pub fn vtimer() -> (u64, u64) {
    (CNTV_CTL_EL0.get(), CNTV_CVAL_EL0.get())
}

/// Writes CNTV_CTL_EL0 of the running vCPU.
pub fn set_vtimer_ctl(ctl: u64) {
    CNTV_CTL_EL0.set(ctl);
}

/// Virtual counter (CNTVCT_EL0); equals the physical counter since CNTVOFF_EL2 = 0.
pub fn virtual_counter() -> u64 {
    CNTVCT_EL0.get()
}

/// Sets the loaded vCPU's `ESR_EL1`, `FAR_EL1` (when `far` is given), `ELR_EL1` and
/// `SPSR_EL1` for an exception injected at EL1 (the run loop's `GuestSysRegs`).
pub fn set_el1_exception(esr: u64, far: Option<u64>, elr: u64, spsr: u64) {
    ESR_EL1.set(esr);
    if let Some(far) = far {
        FAR_EL1.set(far);
    }
    ELR_EL1.set(elr);
    SPSR_EL1.set(spsr);
}

/// The loaded vCPU's EL1 translation and caches off, as a PE resuming from a PSCI
/// power-down state has them (its other EL1 registers are UNKNOWN there; they keep their
/// values).
pub fn el1_power_down() {
    aarch64_cpu::registers::SCTLR_EL1.set(super::sysreg::SCTLR_EL1_RESET);
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

/// Why a CPU did not start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuStartError {
    /// The firmware refused PSCI CPU_ON.
    Psci(smccc::psci::Error),
    /// The spin-table release word is not in the RAM the hypervisor maps, or not 8-byte
    /// aligned.
    ReleaseAddrNotRam(u64),
    /// No slot in the spin-table MPIDR table for this CPU index.
    NoSlot,
}

/// Starts CPU `index` of the board by its enable method: PSCI CPU_ON with the index as
/// context id, or, for a spin table, the physical address of `_spin_table_start` written
/// to its release word (8-byte store, cleaned to the point of coherency, `dsb sy`, `sev`),
/// which the firmware's parked CPU polls with its caches off.
pub fn start_cpu(index: usize, c: &crate::platform::CpuDesc) -> Result<(), CpuStartError> {
    match c.enable {
        crate::platform::CpuEnable::Psci => {
            firmware_cpu_on(c.mpidr, index as u64).map_err(CpuStartError::Psci)
        }
        crate::platform::CpuEnable::SpinTable { release_addr } => {
            // The word must be RAM the EL2 identity map covers (the RAM chosen at boot),
            // which `mem::init_pool` kept out of the pool for the firmware's spin table.
            if !release_addr.is_multiple_of(8)
                || super::mem::node_of(crate::types::HostPhysAddr(release_addr)).is_none()
            {
                return Err(CpuStartError::ReleaseAddrNotRam(release_addr));
            }
            let entry = super::boot::prepare_spin_table_entry(index, c.mpidr)
                .ok_or(CpuStartError::NoSlot)?;
            // SAFETY: `release_addr` is 8-byte aligned and inside the RAM the boot CPU's
            // identity map covers (checked above), so the store cannot fault; the page
            // holding it is reserved from the RAM pool (`mem::init_pool`), so no VM or
            // hypervisor object lives there: the only other user is the firmware's parked
            // CPU, which reads it. A volatile 64-bit store, as the spin-table protocol wants.
            unsafe { core::ptr::write_volatile(release_addr as *mut u64, entry) };
            clean_dcache_range(release_addr, 8);
            // SAFETY: barrier and event only.
            unsafe { core::arch::asm!("dsb sy", "sev", options(nostack, preserves_flags)) };
            Ok(())
        }
    }
}

/// Asks the firmware once (by `smc`) what it provides of SMCCC, in DEN0028's discovery
/// order: `SMCCC_VERSION` only if PSCI (1.0 or later) `PSCI_FEATURES` lists it (an SMC the
/// firmware does not know may be undefined on some, e.g. QEMU's built-in PSCI), then
/// `SMCCC_ARCH_FEATURES` of each workaround only from SMCCC 1.1.
pub fn firmware_smccc() -> crate::psci::FirmwareSmccc {
    if !super::board().has_psci_firmware() {
        // No firmware to ask: an `smc` may be undefined (SCR_EL3.SMD) and would trap.
        return crate::psci::FirmwareSmccc::NONE;
    }
    use smccc::arch::{
        SMCCC_ARCH_FEATURES, SMCCC_ARCH_WORKAROUND_1, SMCCC_ARCH_WORKAROUND_2,
        SMCCC_ARCH_WORKAROUND_3, SMCCC_VERSION,
    };
    use smccc::Call;
    let call = |function: u32, arg: u32| smccc::Smc::call32(function, [arg, 0, 0, 0, 0, 0, 0])[0];
    let psci = call(smccc::psci::PSCI_VERSION, 0);
    let has_version = psci as i32 >= 0
        && psci >> 16 >= 1
        && call(smccc::psci::PSCI_FEATURES, SMCCC_VERSION) as i32 >= 0;
    let version = has_version
        .then(|| call(SMCCC_VERSION, 0))
        .filter(|&v| v as i32 >= 0);
    let mut workarounds = [smccc::arch::error::NOT_SUPPORTED; 3];
    if version.is_some_and(|v| v >= crate::psci::SMCCC_VERSION_1_1) {
        for (slot, id) in workarounds.iter_mut().zip([
            SMCCC_ARCH_WORKAROUND_1,
            SMCCC_ARCH_WORKAROUND_2,
            SMCCC_ARCH_WORKAROUND_3,
        ]) {
            *slot = call(SMCCC_ARCH_FEATURES, id) as i32;
        }
    }
    crate::psci::FirmwareSmccc {
        version,
        workarounds,
        call: firmware_workaround,
    }
}

/// Makes an `SMCCC_ARCH_WORKAROUND_*` call at the firmware on this CPU (`W1 = arg`, the
/// enable flag of workaround 2).
fn firmware_workaround(function_id: u32, arg: u64) {
    use smccc::Call;
    let _ = smccc::Smc::call32(function_id, [arg as u32, 0, 0, 0, 0, 0, 0]);
}

/// Set when a CPU parked the machine (no PSCI firmware to power it off): every CPU's run
/// loop parks too ([`park_if_requested`]).
static PARK: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Powers the machine off through firmware (PSCI SYSTEM_OFF). On a board without PSCI
/// firmware ([`crate::platform::BoardDesc::has_psci_firmware`]) no SMC is made: this CPU
/// says so and parks, and the others park when they next pass their run loop.
pub fn firmware_system_off() -> ! {
    if super::board().has_psci_firmware() {
        let _ = smccc::psci::system_off::<smccc::Smc>();
    } else {
        PARK.store(true, core::sync::atomic::Ordering::Release);
        crate::hvprintln!(
            "[hv] no PSCI firmware on this board (every CPU starts by spin table): no SYSTEM_OFF to call; CPUs parked, switch the board off"
        );
    }
    park()
}

/// Parks this CPU if another one parked the machine ([`firmware_system_off`] without
/// firmware).
pub fn park_if_requested() {
    if PARK.load(core::sync::atomic::Ordering::Acquire) {
        park();
    }
}

/// Interrupts masked, `wfi` forever.
fn park() -> ! {
    // SAFETY: masks this CPU's interrupts (DAIF.I/F); it never runs anything again.
    unsafe { core::arch::asm!("msr daifset, #3", options(nomem, nostack)) };
    loop {
        wait_for_interrupt();
    }
}

/// A 64-bit random number from FEAT_RNG's `RNDR`, if the CPU implements it and it
/// delivered one (it may fail, reporting through the condition flags).
pub fn rndr() -> Option<u64> {
    let isar0: u64;
    // SAFETY: reading ID_AA64ISAR0_EL1 has no side effect.
    unsafe {
        core::arch::asm!("mrs {}, id_aa64isar0_el1", out(reg) isar0, options(nomem, nostack))
    };
    if (isar0 >> 60) & 0xf == 0 {
        return None;
    }
    let value: u64;
    let ok: u64;
    // SAFETY: RNDR (s3_3_c2_c4_0) exists (checked above); it only writes the register and
    // the condition flags (Z set on failure), which `cset` reads.
    unsafe {
        core::arch::asm!(
            "mrs {v}, s3_3_c2_c4_0",
            "cset {ok}, ne",
            v = out(reg) value,
            ok = out(reg) ok,
            options(nomem, nostack)
        )
    };
    (ok != 0).then_some(value)
}

/// 192 bits of entropy from the firmware's SMCCC TRNG (`TRNG_RND64`), if it implements the
/// interface (SMCCC 1.1 or later, `TRNG_VERSION` 1.0 or later).
pub fn smccc_trng() -> Option<[u64; 3]> {
    use smccc::Call;
    const TRNG_VERSION: u32 = 0x8400_0050;
    const TRNG_RND64: u32 = 0xc400_0053;
    if firmware_smccc()
        .version
        .is_none_or(|v| v < crate::psci::SMCCC_VERSION_1_1)
    {
        return None;
    }
    let version = smccc::Smc::call32(TRNG_VERSION, [0; 7])[0] as i32;
    if version < 0x1_0000 {
        return None;
    }
    let mut args = [0u64; 17];
    args[0] = 192;
    let r = smccc::Smc::call64(TRNG_RND64, args);
    (r[0] == 0).then_some([r[1], r[2], r[3]])
}
