//! Synchronous guest exits: MMIO through the VM's device bus, hypercalls (PSCI, SMCCC),
//! system-register traps, WFI/WFE and aborts.
//!
//! [`handle_sync`] is a function of the VM, the trapping vCPU's registers, the syndrome
//! ([`Syndrome`]) and the EL1 system registers an injected exception touches
//! ([`GuestSysRegs`]); it decides and returns an [`Outcome`] (what the vCPU does next,
//! which vCPUs got work, whether the VM must stop or reset) and leaves acting on it to the
//! run loop. So every exit class runs in host tests against a fake.
//!
//! Anything the guest is not allowed to do gets an abort or an undefined-instruction
//! exception injected; a guest that cannot take it (it faults inside its own vector table)
//! is stopped. Nothing a guest does panics the hypervisor.
#![deny(unsafe_code)]

use crate::mmio::{self, MmioAccess};
use crate::psci::{self, CpuOnError, PsciAction, PsciBackend, VcpuPowerState};
pub use crate::trap::Syndrome;
use crate::trap::{self, TrapCause};
use crate::types::{GuestPhysAddr, VcpuId};
pub use crate::vcpu::GuestSysRegs;
use crate::vcpu::{GuestRegs, Next, PowerState};
use crate::vgic::VcpuSet;
use crate::vm::Vm;
use crate::vpmu;

/// What happened to the VM as a whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmEvent {
    /// Stop the VM for good, for this reason.
    Stop(&'static str),
    /// Reset the VM (PSCI SYSTEM_RESET): images reloaded, vCPU 0 restarted.
    Reset,
    /// The guest touched RAM it has not been given yet (a stage-2 translation fault in its
    /// RAM): zero and map that block, then retry the access.
    TouchRam(GuestPhysAddr),
}

/// Something worth a line in the hypervisor log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Diag {
    /// An exception class the hypervisor does not handle (an undefined instruction was
    /// injected).
    UnhandledClass {
        /// `ESR_EL2.EC`.
        ec: u8,
        /// The guest PC.
        pc: u64,
    },
    /// The guest faulted inside its own exception vectors (it is stopped).
    FaultInVectors {
        /// The guest PC.
        pc: u64,
        /// The faulting address.
        far: u64,
    },
}

/// What the run loop must do after a synchronous exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// What the trapping vCPU does next.
    pub next: Next,
    /// vCPUs (other than the trapping one) that got work: an interrupt became deliverable
    /// or CPU_ON started them. The run loop kicks their physical CPUs, and yields if one
    /// shares this one.
    pub wake: VcpuSet,
    /// A VM-wide consequence.
    pub event: Option<VmEvent>,
    /// Something to log.
    pub diag: Option<Diag>,
}

impl Outcome {
    const fn next(next: Next) -> Self {
        Self {
            next,
            wake: VcpuSet::EMPTY,
            event: None,
            diag: None,
        }
    }

    const fn resume() -> Self {
        Self::next(Next::Resume)
    }

    fn waking(mut wake: VcpuSet, me: VcpuId) -> Self {
        wake.remove(me);
        Self {
            wake,
            ..Self::resume()
        }
    }

    const fn stop(reason: &'static str, diag: Option<Diag>) -> Self {
        Self {
            next: Next::Off,
            wake: VcpuSet::EMPTY,
            event: Some(VmEvent::Stop(reason)),
            diag,
        }
    }
}

/// `ESR_EL1` of an injected synchronous external abort (Arm ARM D24.2.40): EC 0x25/0x24
/// (data abort from EL1/EL0) or 0x21/0x20 (instruction abort), IL = 1, FSC = 0x10
/// (synchronous external abort, not on a table walk), WnR for a data abort.
pub const fn abort_esr(instruction: bool, from_el0: bool, is_write: bool) -> u64 {
    let ec: u64 = match (instruction, from_el0) {
        (false, false) => 0x25,
        (false, true) => 0x24,
        (true, false) => 0x21,
        (true, true) => 0x20,
    };
    (ec << 26) | (1 << 25) | (((is_write && !instruction) as u64) << 6) | 0x10
}

/// `ESR_EL1` of an injected undefined instruction: EC 0 ("unknown reason"), IL = 1.
pub const UNDEF_ESR: u64 = 1 << 25;

/// The exit fast path of an SGI sent to other vCPUs: if `esr` is a write to
/// `ICC_SGI1R_EL1`, `ICC_ASGI1R_EL1` or `ICC_SGI0R_EL1` whose targets exclude `vcpu`, makes
/// the SGI pending on them (an `ICC_SGI1R_EL1` SGI through [`Vm::sgi_mail`]), steps over
/// the instruction, calls `kick` for each vCPU to kick and returns them (as [`handle_sync`]
/// would, and for `ICC_SGI1R_EL1` also targets where the SGI is not deliverable; a mailbox
/// target is kicked right after its post, in the one walk of the targets, the others once
/// the SGI is raised). The sender's own interrupt state is untouched, so the run loop
/// can re-enter it without folding back or refilling its list registers: for the sender
/// the exit is as if the guest had not left. Otherwise returns `None` having changed
/// nothing (the exit goes the general way).
///
/// Inlined into the run loop, its one caller: called out of line, with the full
/// `trap::decode`, the sender spent about 60 instructions more.
#[inline]
pub fn sgi_to_others(
    vm: &Vm,
    vcpu: VcpuId,
    esr: u64,
    regs: &mut GuestRegs,
    kick: impl FnMut(VcpuId),
) -> Option<VcpuSet> {
    if trap::ec(esr) != trap::ExceptionClass::SysReg64 as u8 {
        return None;
    }
    // The register named by the ISS bits themselves: no decode of the whole syndrome.
    let iss = trap::iss(esr);
    let reg = iss & trap::SYSREG_ISS_MASK;
    let group0_only = if reg == trap::sysreg_iss(trap::ICC_SGI1R_EL1) {
        false
    } else if reg == trap::sysreg_iss(trap::ICC_ASGI1R_EL1)
        || reg == trap::sysreg_iss(trap::ICC_SGI0R_EL1)
    {
        true
    } else {
        return None;
    };
    if iss & 1 != 0 {
        // A read (`MRS`): these registers are write-only; the general path decides.
        return None;
    }
    let value = regs.read(((iss >> 5) & 0x1f) as u8);
    if let (false, Some(mail)) = (group0_only, &vm.sgi_mail) {
        // `ICC_SGI1R_EL1` forwards the SGI whatever its group at the target: posted without
        // the `devices` lock, folded into the vGIC by whoever takes it next (the kicked
        // target first). Every target is kicked, deliverable or not (a target that finds
        // nothing to take goes back to the guest).
        if let Some(t) = crate::vgic::sgi_single_target(vm.everyone, value) {
            // One target among vCPUs 0..16: the same as below without the set arithmetic.
            if t == vcpu {
                return None;
            }
            step_over(regs, esr);
            mail.post_one(t, (value >> 24) as u32, kick);
            return Some(VcpuSet(u128::from(1u32 << t.0)));
        }
        let targets = crate::vgic::sgi_targets(vm.everyone, vcpu, value);
        if targets.contains(vcpu) {
            return None;
        }
        step_over(regs, esr);
        mail.post_each(targets, (value >> 24) as u32, kick);
        return Some(targets);
    }
    let targets = vm
        .devices()
        .vgic
        .sgi_write_to_others(vcpu, value, group0_only)?;
    step_over(regs, esr);
    targets.iter().for_each(kick);
    Some(targets)
}

/// What [`console_fast`] did with an exit.
#[derive(Debug)]
pub enum FastExit {
    /// Handled, the vCPU's interrupt state untouched: it goes straight back in, as after
    /// [`sgi_to_others`].
    Quiet,
    /// Handled, but the general entry must follow with this outcome acted on: the UART's
    /// interrupt line moved, vCPUs got work, or the console now shows a prompt (whose
    /// `WFI` trap only the general entry sets).
    Then(Outcome),
}

/// The exit fast path of a load or store to the console UART. Linux's console polls
/// `UARTFR` and writes `UARTDR` for every character, two exits per byte of its boot log:
/// this does the access exactly as [`handle_sync`] would (the same device, the same
/// masking and register write-back, the instruction stepped over) without the bus lookup,
/// and says whether the general entry may be skipped. Returns `None` for any other exit,
/// and for an access the UART refuses (the general path then injects the abort; what the
/// refused access did, the console's update, is done again harmlessly).
///
/// Kept out of line: inlined into the run loop, it cost the null HVC and the SGI sender
/// 16 to 32 instructions more, though neither goes through it.
#[inline(never)]
pub fn console_fast(
    vm: &Vm,
    vcpu: VcpuId,
    syn: Syndrome,
    regs: &mut GuestRegs,
) -> Option<FastExit> {
    let ipa = trap::fault_ipa(syn.hpfar, syn.far);
    // Every other device (the GIC's frames above all) without decoding or locking.
    if !(crate::vm::layout::UART_BASE..crate::vm::layout::UART_BASE + crate::vm::layout::UART_SIZE)
        .contains(&ipa.0)
    {
        return None;
    }
    let TrapCause::DataAbort(da) = trap::decode(syn.esr) else {
        return None;
    };
    let acc = da.access.filter(|_| !da.s1ptw)?;
    let store = acc
        .is_write
        .then(|| mmio::store_value(&acc, regs.read(acc.srt)));
    let done = vm
        .devices()
        .console_access(vcpu, ipa, acc.size, store)?
        .ok()?;
    if !acc.is_write {
        regs.write(acc.srt, mmio::load_value(&acc, done.value));
    }
    step_over(regs, syn.esr);
    Some(
        if done.kicks == VcpuSet::EMPTY && !done.line_moved && !done.prompt {
            FastExit::Quiet
        } else {
            FastExit::Then(Outcome::waking(done.kicks, vcpu))
        },
    )
}

/// The exit fast path of an SMCCC architecture call ([`psci::is_arch_call`]: the SMCCC
/// version, its feature query and the Spectre workarounds) by `HVC` or trapped `SMC`: does
/// it exactly as [`handle_sync`] would (the same handler, `x0` written, a trapped `SMC`
/// stepped over) and returns true, after which the vCPU goes straight back in: such a call
/// changes no interrupt or power state. Returns false having changed nothing for any other
/// exit or function (PSCI's calls go the general way).
///
/// Out of line, as [`console_fast`], to leave the run loop's other paths as they were.
#[inline(never)]
pub fn smccc_fast(vm: &Vm, esr: u64, regs: &mut GuestRegs) -> bool {
    let ec = trap::ec(esr);
    let is_smc = ec == trap::ExceptionClass::Smc64 as u8;
    if !(is_smc || ec == trap::ExceptionClass::Hvc64 as u8) {
        return false;
    }
    let fid = regs.x[0] as u32;
    if !psci::is_arch_call(fid) {
        return false;
    }
    if is_smc {
        // SMC trapped by HCR_EL2.TSC: ELR points at the SMC itself.
        step_over(regs, esr);
    }
    // The action of an architecture call is always `Continue`.
    psci_call(vm, regs);
    true
}

/// Handles one synchronous exit of `vcpu` of `vm`, whose registers are `regs`.
pub fn handle_sync(
    vm: &Vm,
    vcpu: VcpuId,
    syn: Syndrome,
    regs: &mut GuestRegs,
    sys: &mut dyn GuestSysRegs,
) -> Outcome {
    let esr = syn.esr;
    match trap::decode(esr) {
        TrapCause::Wfx { is_wfe, .. } => {
            step_over(regs, esr);
            Outcome::next(if is_wfe {
                Next::Yield
            } else if vm
                .devices()
                .vgic
                .has_pending_unmasked(vcpu, sys.priority_mask())
            {
                Next::Resume
            } else {
                Next::Block
            })
        }
        TrapCause::Hvc { .. } => hypercall(vm, vcpu, regs, sys),
        TrapCause::Smc { .. } => {
            // SMC trapped by HCR_EL2.TSC: ELR points at the SMC itself.
            step_over(regs, esr);
            hypercall(vm, vcpu, regs, sys)
        }
        TrapCause::SysReg(acc) => {
            let value = regs.read(acc.rt);
            match acc.encoding() {
                // Trapped by HCR_EL2.IMO (SGI1R, ASGI1R) and FMO (SGI0R, ASGI1R), both set.
                reg @ (trap::ICC_SGI1R_EL1 | trap::ICC_ASGI1R_EL1 | trap::ICC_SGI0R_EL1)
                    if !acc.is_read =>
                {
                    step_over(regs, esr);
                    let mut dev = vm.devices();
                    let targets = match reg {
                        trap::ICC_SGI1R_EL1 => dev.vgic.sgi1r_write(vcpu, value),
                        trap::ICC_ASGI1R_EL1 => dev.vgic.asgi1r_write(vcpu, value),
                        _ => dev.vgic.sgi0r_write(vcpu, value),
                    };
                    Outcome::waking(targets, vcpu)
                }
                // The EL1 physical timer is emulated (`CNTHCTL_EL2.EL1PCEN = 0`): see `ptimer`.
                enc @ (trap::CNTP_CTL_EL0 | trap::CNTP_CVAL_EL0 | trap::CNTP_TVAL_EL0) => {
                    step_over(regs, esr);
                    ptimer_access(vm, vcpu, enc, acc.is_read, acc.rt, regs, sys)
                }
                // Trapped by MDCR_EL2.TPM before PMUv3p5: see `vpmu`.
                enc if vpmu::PmuReg::decode(enc).is_some() => pmu_access(enc, &acc, esr, regs, sys),
                _ => inject_undef(regs, sys),
            }
        }
        TrapCause::DataAbort(_) | TrapCause::InstrAbort { .. }
            if vm.is_ram(trap::fault_ipa(syn.hpfar, syn.far)) =>
        {
            // RAM is mapped on first touch: give the block, retry the same instruction
            // (the table walk of a stage-1 walk that touched it included).
            Outcome {
                event: Some(VmEvent::TouchRam(trap::fault_ipa(syn.hpfar, syn.far))),
                ..Outcome::resume()
            }
        }
        TrapCause::DataAbort(da) => {
            let ipa = trap::fault_ipa(syn.hpfar, syn.far);
            match da.access {
                Some(acc) if !da.s1ptw => match mmio_access(vm, vcpu, ipa, &acc, regs, sys) {
                    Some(wake) => {
                        step_over(regs, esr);
                        Outcome::waking(wake, vcpu)
                    }
                    None => inject_abort(regs, sys, syn.far, false, acc.is_write),
                },
                // No syndrome (ldp/stp, writeback) or a table walk outside RAM: abort.
                _ => inject_abort(regs, sys, syn.far, false, da.wnr),
            }
        }
        TrapCause::InstrAbort { .. } => inject_abort(regs, sys, syn.far, true, false),
        TrapCause::Other { ec, .. } => {
            let mut out = inject_undef(regs, sys);
            out.diag = out.diag.or(Some(Diag::UnhandledClass { ec, pc: regs.elr }));
            out
        }
    }
}

/// Moves the guest PC past the trapped instruction. The PC is the guest's: at the top of
/// the address space it wraps, as the architecture's PC does, rather than overflow here.
fn step_over(regs: &mut GuestRegs, esr: u64) {
    regs.elr = regs.elr.wrapping_add(trap::instr_len(esr));
}

/// A trapped `MRS`/`MSR` of a PMU register (`enc`): performed on the live registers as
/// [`vpmu::guest_access`] decides (NSH cleared in event-type writes), `PMSWINC_EL0` emulated
/// ([`vpmu::swinc_targets`]: a write at EL2 would be filtered as EL2's).
fn pmu_access(
    enc: u32,
    acc: &trap::SysRegAccess,
    esr: u64,
    regs: &mut GuestRegs,
    sys: &mut dyn GuestSysRegs,
) -> Outcome {
    let Some(reg) = vpmu::PmuReg::decode(enc) else {
        return inject_undef(regs, sys);
    };
    let pmcr = sys.pmu_read(vpmu::PmuReg::Pmcr);
    let counters = vpmu::counters(pmcr);
    if matches!(reg, vpmu::PmuReg::Pmxevtyper | vpmu::PmuReg::Pmxevcntr)
        && !vpmu::selected_exists(reg, sys.pmu_read(vpmu::PmuReg::Pmselr), counters)
    {
        // RAZ/WI: see `vpmu::selected_exists`.
        if acc.is_read {
            regs.write(acc.rt, 0);
        }
        step_over(regs, esr);
        return Outcome::resume();
    }
    match vpmu::guest_access(reg, acc.is_read, regs.read(acc.rt), counters) {
        vpmu::Access::Undefined => return inject_undef(regs, sys),
        vpmu::Access::Read(r) => {
            let v = sys.pmu_read(r);
            regs.write(acc.rt, v);
        }
        vpmu::Access::Write(vpmu::PmuReg::Pmswinc, v) => {
            let enabled = sys.pmu_read(vpmu::PmuReg::Pmcntenset);
            let from_el0 = regs.spsr & 0b1111 == 0;
            let mut types = [0u64; 31];
            for (n, t) in types.iter_mut().enumerate().take(counters.into()) {
                *t = sys.pmu_read(vpmu::PmuReg::Pmevtyper(n as u8));
            }
            let hit = vpmu::swinc_targets(v, counters, pmcr, enabled, &types, from_el0);
            for n in (0..counters).filter(|n| hit & (1 << n) != 0) {
                let count = sys.pmu_read(vpmu::PmuReg::Pmevcntr(n)).wrapping_add(1) & 0xffff_ffff;
                sys.pmu_write(vpmu::PmuReg::Pmevcntr(n), count);
                if count == 0 {
                    sys.pmu_write(vpmu::PmuReg::Pmovsset, 1 << n);
                }
            }
        }
        vpmu::Access::Write(r, v) => sys.pmu_write(r, v),
    }
    step_over(regs, esr);
    Outcome::resume()
}

/// A trapped `MRS`/`MSR` of `CNTP_CTL_EL0`, `CNTP_CVAL_EL0` or `CNTP_TVAL_EL0` (`enc`) by
/// `vcpu`, register `rt`: emulated on the vCPU's [`crate::ptimer::PtimerState`] at the
/// physical count now. A write moves the timer's interrupt line at once (the run loop keeps
/// it following the count before every entry).
fn ptimer_access(
    vm: &Vm,
    vcpu: VcpuId,
    enc: u32,
    is_read: bool,
    rt: u8,
    regs: &mut GuestRegs,
    sys: &mut dyn GuestSysRegs,
) -> Outcome {
    let Some(shared) = vm.vcpus.get(vcpu.0) else {
        return Outcome::resume();
    };
    let now = sys.counter();
    let mut timer = shared.ptimer.load();
    if is_read {
        let value = match enc {
            trap::CNTP_CTL_EL0 => timer.read_ctl(now),
            trap::CNTP_CVAL_EL0 => timer.cval,
            _ => timer.read_tval(now),
        };
        regs.write(rt, value);
        return Outcome::resume();
    }
    let value = regs.read(rt);
    match enc {
        trap::CNTP_CTL_EL0 => timer.write_ctl(value),
        trap::CNTP_CVAL_EL0 => timer.cval = value,
        _ => timer.write_tval(value, now),
    }
    shared.ptimer.store(timer);
    let _ = vm
        .devices()
        .vgic
        .set_level(crate::ptimer::PTIMER_INTID, vcpu, timer.level(now));
    Outcome::resume()
}

/// Brings the timer lines up to date before the guest reads a GIC register, so that a
/// timer PPI's pending bit is its line's level now (a level-sensitive line sampled on read):
/// the trapping vCPU's virtual timer (its registers are live here), and every vCPU's
/// physical timer (emulated, readable from any CPU). Another vCPU's virtual timer is as its
/// own CPU last sampled it (at its last exit). Returns the vCPUs whose line rose to a
/// deliverable interrupt.
fn sample_timer_lines(
    vm: &Vm,
    vcpu: VcpuId,
    vgic: &mut crate::vgic::VGic,
    sys: &mut dyn GuestSysRegs,
) -> VcpuSet {
    let mut wake = VcpuSet::EMPTY;
    let vtimer = sys.sample_vtimer();
    if let Ok(Some(v)) = vgic.set_level(crate::vtimer::VTIMER_INTID, vcpu, vtimer) {
        wake.insert(v);
    }
    let now = sys.counter();
    for (i, shared) in vm.vcpus.iter().enumerate() {
        let level = shared.ptimer.load().level(now);
        if let Ok(Some(v)) = vgic.set_level(crate::ptimer::PTIMER_INTID, VcpuId(i), level) {
            wake.insert(v);
        }
    }
    wake
}

/// Emulates a load or store through the VM's bus; `None` if nothing claims the address or
/// the device refuses the access (the caller injects an abort).
fn mmio_access(
    vm: &Vm,
    vcpu: VcpuId,
    ipa: GuestPhysAddr,
    acc: &MmioAccess,
    regs: &mut GuestRegs,
    sys: &mut dyn GuestSysRegs,
) -> Option<VcpuSet> {
    let mut dev = vm.devices();
    if acc.is_write {
        let data = mmio::store_value(acc, regs.read(acc.srt));
        dev.mmio_write(vcpu, ipa, acc.size, data).ok()
    } else {
        // Every GIC frame lies in [GICD_BASE, UART_BASE) of the guest's layout.
        let mut wake = VcpuSet::EMPTY;
        if (crate::vm::layout::GICD_BASE..crate::vm::layout::UART_BASE).contains(&ipa.0) {
            wake = sample_timer_lines(vm, vcpu, &mut dev.vgic, sys);
        }
        let (raw, read_wake) = dev.mmio_read(vcpu, ipa, acc.size).ok()?;
        regs.write(acc.srt, mmio::load_value(acc, raw));
        wake.extend(read_wake);
        Some(wake)
    }
}

/// True if the guest PC is inside its own vector table (or it has none): an exception
/// injected there would fault again for ever.
fn faulting_in_vectors(regs: &GuestRegs, sys: &dyn GuestSysRegs) -> bool {
    let vbar = sys.vbar_el1();
    vbar == 0 || (regs.elr >= vbar && regs.elr - vbar < 0x800)
}

/// Takes an exception to the guest's EL1 (synchronous, current EL with SP_ELx, or lower
/// EL using AArch64: `VBAR_EL1 + 0x200` or `+ 0x400`), with EL1h and DAIF masked.
fn take_to_el1(regs: &mut GuestRegs, sys: &mut dyn GuestSysRegs, esr: u64, far: Option<u64>) {
    let from_el0 = regs.spsr & 0xf == 0;
    let vector = sys
        .vbar_el1()
        .wrapping_add(if from_el0 { 0x400 } else { 0x200 });
    sys.set_el1_exception(esr, far, regs.elr, regs.spsr);
    regs.elr = vector;
    regs.spsr = GuestRegs::EL1H_DAIF_MASKED;
}

/// Injects a synchronous external abort at `far`; a guest that faults inside its own
/// vector table is stopped instead.
fn inject_abort(
    regs: &mut GuestRegs,
    sys: &mut dyn GuestSysRegs,
    far: u64,
    instruction: bool,
    is_write: bool,
) -> Outcome {
    if faulting_in_vectors(regs, sys) {
        let diag = Diag::FaultInVectors { pc: regs.elr, far };
        return Outcome::stop(
            "abort inside its exception vectors (no handler)",
            Some(diag),
        );
    }
    let from_el0 = regs.spsr & 0xf == 0;
    take_to_el1(
        regs,
        sys,
        abort_esr(instruction, from_el0, is_write),
        Some(far),
    );
    Outcome::resume()
}

/// Injects an undefined-instruction exception at the trapping instruction.
fn inject_undef(regs: &mut GuestRegs, sys: &mut dyn GuestSysRegs) -> Outcome {
    if faulting_in_vectors(regs, sys) {
        let diag = Diag::FaultInVectors {
            pc: regs.elr,
            far: 0,
        };
        return Outcome::stop(
            "undefined instruction inside its exception vectors",
            Some(diag),
        );
    }
    take_to_el1(regs, sys, UNDEF_ESR, None);
    Outcome::resume()
}

/// Makes the PSCI or SMCCC call in `regs` (x0 = function id, x1..x3 = arguments), writes
/// its result to x0 and returns what it asks of the vCPU.
fn psci_call(vm: &Vm, regs: &mut GuestRegs) -> PsciAction {
    let fid = regs.x[0] as u32;
    let out = psci::handle(fid, [regs.x[1], regs.x[2], regs.x[3]], &mut Backend { vm });
    regs.x[0] = out.x0;
    out.action
}

/// PSCI and SMCCC calls (x0 = function id, x1..x3 = arguments).
fn hypercall(vm: &Vm, vcpu: VcpuId, regs: &mut GuestRegs, sys: &mut dyn GuestSysRegs) -> Outcome {
    match psci_call(vm, regs) {
        PsciAction::Continue => Outcome::resume(),
        PsciAction::Standby => Outcome::next(Next::Block),
        PsciAction::PowerDown { entry, context_id } => {
            // The context is lost now: whenever the vCPU next runs, after the wake-up event
            // it waits for like WFI, it starts at the entry point as after CPU_ON. Its
            // timers and the GIC keep their state (the wake-up comes from them).
            *regs = GuestRegs::at_entry(entry.0, context_id);
            sys.power_down_el1();
            let pending = vm
                .devices()
                .vgic
                .has_pending_unmasked(vcpu, sys.priority_mask());
            Outcome::next(if pending { Next::Resume } else { Next::Block })
        }
        PsciAction::CpuOff => Outcome::next(Next::Off),
        PsciAction::SystemOff => Outcome::stop("guest called PSCI SYSTEM_OFF", None),
        PsciAction::SystemReset => Outcome {
            event: Some(VmEvent::Reset),
            ..Outcome::next(Next::Yield)
        },
        PsciAction::WakeVcpu(v) => {
            let mut wake = VcpuSet::EMPTY;
            wake.insert(v);
            Outcome::waking(wake, vcpu)
        }
    }
}

struct Backend<'a> {
    vm: &'a Vm,
}

impl PsciBackend for Backend<'_> {
    fn vcpu_by_mpidr(&self, mpidr: u64) -> Option<VcpuId> {
        self.vm.vcpu_by_mpidr(mpidr)
    }

    fn vcpu_mpidrs(&self) -> alloc::vec::Vec<u64> {
        self.vm.vcpus.iter().map(|v| v.mpidr).collect()
    }

    fn vcpu_state(&self, vcpu: VcpuId) -> VcpuPowerState {
        match self.vm.vcpus.get(vcpu.0).map(|v| v.power.load()) {
            Some(PowerState::On) => VcpuPowerState::On,
            Some(PowerState::OnPending) => VcpuPowerState::OnPending,
            _ => VcpuPowerState::Off,
        }
    }

    fn request_cpu_on(
        &mut self,
        vcpu: VcpuId,
        entry: GuestPhysAddr,
        context_id: u64,
    ) -> Result<(), CpuOnError> {
        let v = self.vm.vcpus.get(vcpu.0).ok_or(CpuOnError::Internal)?;
        // Entry and context first: the vCPU's CPU reads them once it sees ON_PENDING.
        v.entry
            .store(entry.0, core::sync::atomic::Ordering::Release);
        v.context
            .store(context_id, core::sync::atomic::Ordering::Release);
        match v
            .power
            .compare_exchange(PowerState::Off, PowerState::OnPending)
        {
            Ok(()) => Ok(()),
            Err(PowerState::OnPending) => Err(CpuOnError::OnPending),
            Err(_) => Err(CpuOnError::AlreadyOn),
        }
    }

    fn entry_valid(&self, addr: GuestPhysAddr) -> bool {
        self.vm.is_ram(addr) && addr.0.is_multiple_of(4)
    }

    fn smccc_version(&self) -> Option<u32> {
        self.vm.firmware.guest_version()
    }

    fn arch_workaround(&self, function_id: u32) -> psci::WorkaroundSupport {
        self.vm.firmware.workaround(function_id)
    }

    fn apply_arch_workaround(&mut self, function_id: u32, arg: u64) {
        (self.vm.firmware.call)(function_id, arg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ImageDesc, VmDesc};
    use crate::platform::GicVersion;
    use crate::types::VmId;
    use crate::vm::devices::VmDevices;
    use crate::vm::layout;
    use alloc::boxed::Box;
    use alloc::vec::Vec;

    /// The EL1 registers an injected exception sets, as a real CPU would hold them.
    #[derive(Default, Debug)]
    struct FakeSysRegs {
        /// The guest's priority mask (0: everything masked, as at reset).
        pmr: u8,
        vbar: u64,
        esr: u64,
        far: Option<u64>,
        elr: u64,
        spsr: u64,
        taken: u32,
        /// The physical (= virtual) count.
        now: u64,
        cntv_ctl: u64,
        cntv_cval: u64,
        vtimer: crate::vtimer::VtimerState,
        powered_down: u32,
        /// PMU registers by [`vpmu::PmuReg`] (`pmu_reads`/`pmu_writes` log the accesses).
        pmu: Vec<(vpmu::PmuReg, u64)>,
        pmu_writes: Vec<(vpmu::PmuReg, u64)>,
    }

    impl FakeSysRegs {
        fn pmu_reg(&self, reg: vpmu::PmuReg) -> u64 {
            self.pmu
                .iter()
                .rev()
                .find(|(r, _)| *r == reg)
                .map_or(0, |(_, v)| *v)
        }
    }

    impl GuestSysRegs for FakeSysRegs {
        fn vbar_el1(&self) -> u64 {
            self.vbar
        }
        fn set_el1_exception(&mut self, esr: u64, far: Option<u64>, elr: u64, spsr: u64) {
            self.esr = esr;
            self.far = far;
            self.elr = elr;
            self.spsr = spsr;
            self.taken += 1;
        }
        fn priority_mask(&self) -> u8 {
            self.pmr
        }
        fn counter(&self) -> u64 {
            self.now
        }
        fn sample_vtimer(&mut self) -> bool {
            let (ctl, line) = self.vtimer.sample(self.cntv_ctl, self.cntv_cval, self.now);
            self.cntv_ctl = ctl;
            line
        }
        fn power_down_el1(&mut self) {
            self.powered_down += 1;
        }
        fn pmu_read(&mut self, reg: vpmu::PmuReg) -> u64 {
            self.pmu_reg(reg)
        }
        fn pmu_write(&mut self, reg: vpmu::PmuReg, value: u64) {
            self.pmu.push((reg, value));
            self.pmu_writes.push((reg, value));
        }
    }

    /// A Cortex-A57's PMU as EL1 sees it: 6 event counters, counting (`PMCR_EL0.E`).
    fn pmu_sys() -> FakeSysRegs {
        let mut s = sys();
        s.pmu.push((vpmu::PmuReg::Pmcr, 0x4101_3001));
        s
    }

    #[test]
    fn pmu_event_type_writes_reach_the_register_without_nsh() {
        let vm = vm(1, GicVersion::V3);
        for (enc, reg) in [
            (trap::pmevtyper_el0(2), vpmu::PmuReg::Pmevtyper(2)),
            (trap::PMCCFILTR_EL0, vpmu::PmuReg::Pmccfiltr),
            (trap::PMXEVTYPER_EL0, vpmu::PmuReg::Pmxevtyper),
        ] {
            let mut s = pmu_sys();
            let mut r = regs();
            // Linux's cycles event with EL2 included: NSH | CPU_CYCLES.
            r.x[4] = vpmu::NSH | 0x11;
            let out = handle_sync(&vm, VcpuId(0), sysreg(enc, false, 4), &mut r, &mut s);
            assert_eq!(out.next, Next::Resume);
            assert_eq!(s.pmu_writes, [(reg, 0x11)], "{reg:?}");
            assert_eq!(r.elr, PC + 4);
            assert_eq!(s.taken, 0);
        }
    }

    #[test]
    fn pmu_reads_and_counter_writes_pass_through() {
        let vm = vm(1, GicVersion::V3);
        let mut s = pmu_sys();
        s.pmu.push((vpmu::PmuReg::Pmccntr, 12345));
        let mut r = regs();
        handle_sync(
            &vm,
            VcpuId(0),
            sysreg(trap::PMCCNTR_EL0, true, 7),
            &mut r,
            &mut s,
        );
        assert_eq!((r.x[7], r.elr), (12345, PC + 4));
        r.x[8] = vpmu::NSH;
        handle_sync(
            &vm,
            VcpuId(0),
            sysreg(trap::pmevcntr_el0(5), false, 8),
            &mut r,
            &mut s,
        );
        assert_eq!(s.pmu_writes, [(vpmu::PmuReg::Pmevcntr(5), vpmu::NSH)]);
        assert_eq!(r.elr, PC + 8);
    }

    #[test]
    fn pmu_selected_counter_beyond_n_is_raz_wi() {
        let vm = vm(1, GicVersion::V3);
        let mut s = pmu_sys();
        s.pmu.push((vpmu::PmuReg::Pmselr, 17));
        s.pmu.push((vpmu::PmuReg::Pmxevcntr, 99));
        let mut r = regs();
        r.x[3] = 5;
        handle_sync(
            &vm,
            VcpuId(0),
            sysreg(trap::PMXEVCNTR_EL0, false, 3),
            &mut r,
            &mut s,
        );
        handle_sync(
            &vm,
            VcpuId(0),
            sysreg(trap::PMXEVCNTR_EL0, true, 3),
            &mut r,
            &mut s,
        );
        assert!(s.pmu_writes.is_empty());
        assert_eq!((r.x[3], r.elr, s.taken), (0, PC + 8, 0));
    }

    #[test]
    fn pmu_counter_beyond_n_is_undefined() {
        let vm = vm(1, GicVersion::V3);
        let mut s = pmu_sys();
        let mut r = regs();
        handle_sync(
            &vm,
            VcpuId(0),
            sysreg(trap::pmevcntr_el0(6), true, 1),
            &mut r,
            &mut s,
        );
        assert_eq!((s.taken, s.esr, s.elr), (1, UNDEF_ESR, PC));
        assert!(s.pmu_writes.is_empty());
    }

    #[test]
    fn pmu_software_increment_is_emulated_with_overflow() {
        let vm = vm(1, GicVersion::V3);
        let mut s = pmu_sys();
        s.pmu.push((vpmu::PmuReg::Pmcntenset, 0b11));
        s.pmu.push((vpmu::PmuReg::Pmevtyper(0), 0x00)); // SW_INCR
        s.pmu.push((vpmu::PmuReg::Pmevtyper(1), 0x00));
        s.pmu.push((vpmu::PmuReg::Pmevcntr(0), 41));
        s.pmu.push((vpmu::PmuReg::Pmevcntr(1), 0xffff_ffff));
        let mut r = regs();
        r.x[2] = 0b111;
        handle_sync(
            &vm,
            VcpuId(0),
            sysreg(trap::PMSWINC_EL0, false, 2),
            &mut r,
            &mut s,
        );
        assert_eq!(
            s.pmu_writes,
            [
                (vpmu::PmuReg::Pmevcntr(0), 42),
                (vpmu::PmuReg::Pmevcntr(1), 0),
                (vpmu::PmuReg::Pmovsset, 0b10),
            ]
        );
    }

    const VBAR: u64 = 0x4010_0000;
    const PC: u64 = 0x4008_1000;
    const EL1H: u64 = 0x5;

    fn discard(_: &str, _: &[u8]) {}

    fn vm(vcpus: usize, gic: GicVersion) -> Vm {
        let desc = Box::leak(Box::new(VmDesc {
            name: "t",
            vcpus: vcpus as u32,
            memory_size: 0x1000_0000,
            kernel: ImageDesc {
                path: "k",
                staging_base: 0,
                size: 0,
            },
            initrd: None,
            dtb: None,
            cmdline: "",
            devices: &[],
            disks: &[],
            nics: &[],
            numa: crate::config::VmNuma::Local,
        }));
        let devices = VmDevices::new(gic, vcpus, "t", discard).unwrap();
        let pcpus: Vec<usize> = (0..vcpus).collect();
        let vm = Vm::new(
            VmId(0),
            desc,
            crate::types::HostPhysAddr(0),
            0,
            devices,
            &pcpus,
            (layout::RAM_BASE, 0),
            Vec::new(),
        );
        vm.vcpus[0].power.store(PowerState::On);
        vm
    }

    fn regs() -> GuestRegs {
        GuestRegs {
            elr: PC,
            spsr: EL1H,
            ..GuestRegs::default()
        }
    }

    /// A guest whose priority mask lets every priority through.
    fn sys() -> FakeSysRegs {
        FakeSysRegs {
            vbar: VBAR,
            pmr: 0xff,
            ..FakeSysRegs::default()
        }
    }

    const IL: u64 = 1 << 25;

    fn esr(ec: u64, iss: u64) -> u64 {
        (ec << 26) | IL | iss
    }

    fn syn(esr: u64) -> Syndrome {
        Syndrome {
            esr,
            far: 0,
            hpfar: 0,
        }
    }

    /// A data abort with a valid syndrome at `ipa`: `sas` access size, register `srt`.
    fn mmio(ipa: u64, write: bool, sas: u64, srt: u64) -> Syndrome {
        let iss = (1 << 24) | (sas << 22) | (srt << 16) | (1 << 15) | ((write as u64) << 6);
        Syndrome {
            esr: esr(0x24, iss),
            far: 0xffff_0000_0000_0000 | (ipa & 0xfff),
            hpfar: (ipa >> 12) << 4,
        }
    }

    /// A trapped MSR (write) or MRS (read) of `enc` (from [`trap::sysreg`]) with `rt`.
    fn sysreg(enc: u32, read: bool, rt: u64) -> Syndrome {
        let enc = u64::from(enc);
        let (op0, op1, crn, crm, op2) = (
            (enc >> 19) & 3,
            (enc >> 16) & 7,
            (enc >> 12) & 0xf,
            (enc >> 8) & 0xf,
            (enc >> 5) & 7,
        );
        let iss = (op0 << 20)
            | (op2 << 17)
            | (op1 << 14)
            | (crn << 10)
            | (rt << 5)
            | (crm << 1)
            | read as u64;
        syn(esr(0x18, iss))
    }

    fn hvc(vm: &Vm, vcpu: usize, args: [u64; 4]) -> (Outcome, GuestRegs) {
        let mut r = regs();
        r.x[..4].copy_from_slice(&args);
        let out = handle_sync(vm, VcpuId(vcpu), syn(esr(0x16, 0)), &mut r, &mut sys());
        (out, r)
    }

    #[test]
    fn sysreg_helper_encodes_what_the_decoder_reads() {
        let TrapCause::SysReg(a) = trap::decode(sysreg(trap::ICC_SGI1R_EL1, false, 3).esr) else {
            panic!("not a sysreg trap")
        };
        assert_eq!(
            (a.encoding(), a.rt, a.is_read),
            (trap::ICC_SGI1R_EL1, 3, false)
        );
    }

    #[test]
    fn wfi_with_nothing_pending_blocks_after_the_instruction() {
        let vm = vm(1, GicVersion::V3);
        let mut r = regs();
        let out = handle_sync(&vm, VcpuId(0), syn(esr(0x01, 0)), &mut r, &mut sys());
        assert_eq!(out.next, Next::Block);
        assert_eq!(r.elr, PC + 4);
    }

    #[test]
    fn wfi_with_an_interrupt_pending_resumes() {
        let vm = vm(1, GicVersion::V3);
        {
            let mut d = vm.devices();
            d.vgic.set_group_enables(false, true);
            d.vgic
                .irq_mut(crate::types::IntId(layout::VTIMER_INTID), VcpuId(0))
                .unwrap()
                .enabled = true;
            d.vgic
                .inject_edge(crate::types::IntId(layout::VTIMER_INTID), VcpuId(0))
                .unwrap();
        }
        let out = handle_sync(&vm, VcpuId(0), syn(esr(0x01, 0)), &mut regs(), &mut sys());
        assert_eq!(out.next, Next::Resume);
    }

    /// The pending interrupt has priority 0x80: a mask of 0x80 or below hides it from the
    /// CPU interface, so WFI blocks; 0x88 lets it through.
    #[test]
    fn wfi_blocks_while_the_priority_mask_hides_the_pending_interrupt() {
        let vm = vm(1, GicVersion::V3);
        {
            let mut d = vm.devices();
            d.vgic.set_group_enables(false, true);
            let t = crate::types::IntId(layout::VTIMER_INTID);
            let irq = d.vgic.irq_mut(t, VcpuId(0)).unwrap();
            irq.enabled = true;
            irq.priority = 0x80;
            d.vgic.inject_edge(t, VcpuId(0)).unwrap();
        }
        for (pmr, next) in [(0, Next::Block), (0x80, Next::Block), (0x88, Next::Resume)] {
            let mut s = FakeSysRegs { pmr, ..sys() };
            let out = handle_sync(&vm, VcpuId(0), syn(esr(0x01, 0)), &mut regs(), &mut s);
            assert_eq!(out.next, next, "PMR {pmr:#x}");
        }
    }

    #[test]
    fn sgi0r_and_asgi1r_writes_raise_group_0_sgis_and_wake_their_targets() {
        let vm = vm(3, GicVersion::V3);
        {
            let mut d = vm.devices();
            d.vgic.set_group_enables(true, true);
            for v in 0..3 {
                for sgi in [6, 7] {
                    let irq = d.vgic.irq_mut(crate::types::IntId(sgi), VcpuId(v)).unwrap();
                    irq.enabled = true;
                    irq.group1 = false;
                }
            }
        }
        // SGI0R: SGI 6, IRM = 1 (everyone but the sender, vCPU 1).
        let mut r = regs();
        r.x[4] = (1 << 40) | (6 << 24);
        let out = handle_sync(
            &vm,
            VcpuId(1),
            sysreg(trap::ICC_SGI0R_EL1, false, 4),
            &mut r,
            &mut sys(),
        );
        assert_eq!(out.wake.iter().collect::<Vec<_>>(), [VcpuId(0), VcpuId(2)]);
        assert_eq!(r.elr, PC + 4);
        // ASGI1R: SGI 7 to the target list {1}.
        r.x[4] = (7 << 24) | 0b10;
        let out = handle_sync(
            &vm,
            VcpuId(0),
            sysreg(trap::ICC_ASGI1R_EL1, false, 4),
            &mut r,
            &mut sys(),
        );
        assert_eq!(out.wake.iter().collect::<Vec<_>>(), [VcpuId(1)]);
        let d = vm.devices();
        let pending = |sgi, v| {
            d.vgic
                .irq(crate::types::IntId(sgi), VcpuId(v))
                .unwrap()
                .pending()
        };
        assert!(pending(6, 0) && !pending(6, 1) && pending(6, 2));
        assert!(!pending(7, 0) && pending(7, 1) && !pending(7, 2));
    }

    #[test]
    fn wfe_yields() {
        let vm = vm(1, GicVersion::V3);
        let out = handle_sync(&vm, VcpuId(0), syn(esr(0x01, 1)), &mut regs(), &mut sys());
        assert_eq!(out.next, Next::Yield);
    }

    #[test]
    fn hvc_psci_version_answers_1_1() {
        let vm = vm(1, GicVersion::V3);
        let (out, r) = hvc(&vm, 0, [0x8400_0000, 0, 0, 0]);
        assert_eq!((out, r.x[0], r.elr), (Outcome::resume(), 0x1_0001, PC));
    }

    #[test]
    fn smc_is_handled_like_hvc_and_steps_over_the_instruction() {
        let vm = vm(1, GicVersion::V3);
        let mut r = regs();
        r.x[0] = 0x8400_0000;
        let out = handle_sync(&vm, VcpuId(0), syn(esr(0x17, 0)), &mut r, &mut sys());
        assert_eq!((out.next, r.x[0], r.elr), (Next::Resume, 0x1_0001, PC + 4));
    }

    #[test]
    fn unknown_hypercall_returns_not_supported() {
        let vm = vm(1, GicVersion::V3);
        let (out, r) = hvc(&vm, 0, [0xc600_0042, 0, 0, 0]);
        assert_eq!((out.next, r.x[0]), (Next::Resume, u64::MAX));
    }

    #[test]
    fn cpu_on_makes_the_target_on_pending_and_wakes_it() {
        let vm = vm(2, GicVersion::V3);
        let (out, r) = hvc(&vm, 0, [0xc400_0003, 1, layout::RAM_BASE + 0x1000, 7]);
        assert_eq!(r.x[0], 0);
        assert!(out.wake.contains(VcpuId(1)));
        assert_eq!(vm.vcpus[1].power.load(), PowerState::OnPending);
        assert_eq!(vm.vcpus[1].start_point(), (layout::RAM_BASE + 0x1000, 7));
        // A second CPU_ON while the first is pending.
        let (_, r) = hvc(&vm, 0, [0xc400_0003, 1, layout::RAM_BASE, 0]);
        assert_eq!(r.x[0] as i64, -5, "ON_PENDING");
    }

    #[test]
    fn cpu_on_outside_ram_is_invalid_address() {
        let vm = vm(2, GicVersion::V3);
        let (out, r) = hvc(&vm, 0, [0xc400_0003, 1, 0x1000, 0]);
        assert_eq!(r.x[0] as i64, -9, "INVALID_ADDRESS");
        assert!(out.wake.is_empty());
    }

    #[test]
    fn cpu_suspend_power_down_loses_the_context_and_resumes_at_the_entry_point() {
        let vm = vm(1, GicVersion::V3);
        let mut r = regs();
        r.x[..4].copy_from_slice(&[0xc400_0001, 0x1_0000, layout::RAM_BASE + 0x2000, 0x5a]);
        r.x[19] = 0xdead;
        let mut s = sys();
        let out = handle_sync(&vm, VcpuId(0), syn(esr(0x16, 0)), &mut r, &mut s);
        assert_eq!(out.next, Next::Block, "nothing pending: it waits like WFI");
        assert_eq!(
            (r.elr, r.x[0], r.x[19]),
            (layout::RAM_BASE + 0x2000, 0x5a, 0)
        );
        assert_eq!(r.spsr, GuestRegs::EL1H_DAIF_MASKED);
        assert_eq!(s.powered_down, 1, "SCTLR_EL1 back to MMU and caches off");
        // Standby keeps the context and returns after the instruction.
        let (out, r) = hvc(&vm, 0, [0xc400_0001, 0, layout::RAM_BASE + 0x2000, 0x5a]);
        assert_eq!((out.next, r.elr, r.x[0]), (Next::Block, PC, 0));
    }

    #[test]
    fn cpu_off_turns_the_caller_off() {
        let vm = vm(1, GicVersion::V3);
        let (out, _) = hvc(&vm, 0, [0x8400_0002, 0, 0, 0]);
        assert_eq!(out.next, Next::Off);
        assert_eq!(out.event, None);
    }

    #[test]
    fn system_off_stops_the_vm() {
        let vm = vm(1, GicVersion::V3);
        let (out, _) = hvc(&vm, 0, [0x8400_0008, 0, 0, 0]);
        assert_eq!(
            (out.next, out.event),
            (
                Next::Off,
                Some(VmEvent::Stop("guest called PSCI SYSTEM_OFF"))
            )
        );
    }

    #[test]
    fn system_reset_resets_the_vm() {
        let vm = vm(1, GicVersion::V3);
        let (out, _) = hvc(&vm, 0, [0x8400_0009, 0, 0, 0]);
        assert_eq!(out.event, Some(VmEvent::Reset));
    }

    #[test]
    fn sgi1r_write_wakes_the_target_vcpu_but_not_the_sender() {
        let vm = vm(2, GicVersion::V3);
        {
            let mut d = vm.devices();
            d.vgic.set_group_enables(false, true);
            for v in 0..2 {
                d.vgic
                    .irq_mut(crate::types::IntId(3), VcpuId(v))
                    .unwrap()
                    .enabled = true;
            }
        }
        let mut r = regs();
        // SGI 3 to target list {0, 1} at affinity 0.
        r.x[5] = (3 << 24) | 0b11;
        let out = handle_sync(
            &vm,
            VcpuId(0),
            sysreg(trap::ICC_SGI1R_EL1, false, 5),
            &mut r,
            &mut sys(),
        );
        assert_eq!(out.wake.iter().collect::<Vec<_>>(), [VcpuId(1)]);
        assert_eq!(r.elr, PC + 4);
        assert!(vm.devices().vgic.has_pending(VcpuId(0)));
    }

    /// The run loop's fast path for an SGI to other vCPUs does what `handle_sync` does,
    /// and declines (changing nothing) when the sender is a target or the exit is another.
    #[test]
    fn sgi_to_others_matches_handle_sync_and_declines_the_rest() {
        let setup = || {
            let vm = vm(3, GicVersion::V3);
            {
                let mut d = vm.devices();
                d.vgic.set_group_enables(false, true);
                for v in 0..3 {
                    d.vgic
                        .irq_mut(crate::types::IntId(3), VcpuId(v))
                        .unwrap()
                        .enabled = true;
                }
            }
            vm
        };
        fn pending(vm: &Vm) -> Vec<bool> {
            let d = vm.devices();
            (0..3).map(|v| d.vgic.has_pending(VcpuId(v))).collect()
        }
        // SGI 3 to {1, 2}: handled, like handle_sync.
        let (fast, slow) = (setup(), setup());
        let (mut rf, mut rs) = (regs(), regs());
        rf.x[5] = (3 << 24) | 0b110;
        rs.x[5] = rf.x[5];
        let syn = sysreg(trap::ICC_SGI1R_EL1, false, 5);
        let wake = sgi_to_others(&fast, VcpuId(0), syn.esr, &mut rf, |_| {});
        let out = handle_sync(&slow, VcpuId(0), syn, &mut rs, &mut sys());
        assert_eq!(wake, Some(out.wake));
        assert_eq!(
            wake.unwrap().iter().collect::<Vec<_>>(),
            [VcpuId(1), VcpuId(2)]
        );
        assert_eq!((rf.elr, rs.elr), (PC + 4, PC + 4));
        assert_eq!(pending(&fast), pending(&slow));
        assert_eq!(pending(&fast), [false, true, true]);
        // IRM = 1 (every vCPU but the sender) through ICC_ASGI1R_EL1 (Group 0 only: SGI 3 is
        // Group 1, so nothing is raised): handled, nothing to kick.
        let vm = setup();
        let mut r = regs();
        r.x[2] = (3 << 24) | (1 << 40);
        let syn = sysreg(trap::ICC_ASGI1R_EL1, false, 2);
        assert_eq!(
            sgi_to_others(&vm, VcpuId(0), syn.esr, &mut r, |_| {}),
            Some(VcpuSet::EMPTY)
        );
        assert_eq!(r.elr, PC + 4);
        // The sender among the targets, a read, another register, another exit class:
        // declined, nothing changed.
        let vm = setup();
        let mut r = regs();
        r.x[5] = (3 << 24) | 0b011;
        for esr in [
            sysreg(trap::ICC_SGI1R_EL1, false, 5).esr,
            sysreg(trap::ICC_SGI1R_EL1, true, 5).esr,
            sysreg(trap::CNTP_CTL_EL0, false, 5).esr,
            esr(0x16, 0),
        ] {
            assert_eq!(
                sgi_to_others(&vm, VcpuId(0), esr, &mut r, |_| panic!("kicked")),
                None
            );
        }
        assert_eq!(r.elr, PC);
        assert_eq!(pending(&vm), [false; 3]);
    }

    #[test]
    fn physical_timer_at_reset_reads_disabled() {
        let vm = vm(1, GicVersion::V3);
        let mut r = regs();
        r.x[2] = 99;
        let out = handle_sync(
            &vm,
            VcpuId(0),
            sysreg(trap::CNTP_CTL_EL0, true, 2),
            &mut r,
            &mut sys(),
        );
        assert_eq!((out.next, r.x[2], r.elr), (Next::Resume, 0, PC + 4));
    }

    /// One trapped CNTP_* access by `vcpu` at count `now`: `x2` is the value written or read.
    fn cntp(vm: &Vm, vcpu: usize, enc: u32, write: Option<u64>, now: u64) -> u64 {
        let mut r = regs();
        r.x[2] = write.unwrap_or(0xbad);
        let mut s = FakeSysRegs { now, ..sys() };
        let out = handle_sync(
            vm,
            VcpuId(vcpu),
            sysreg(enc, write.is_none(), 2),
            &mut r,
            &mut s,
        );
        assert_eq!((out.next, r.elr), (Next::Resume, PC + 4));
        r.x[2]
    }

    const ENABLE: u64 = 1;
    const IMASK: u64 = 2;
    const ISTATUS: u64 = 4;

    fn ptimer_line(vm: &Vm, vcpu: usize) -> bool {
        vm.devices()
            .vgic
            .irq(crate::ptimer::PTIMER_INTID, VcpuId(vcpu))
            .unwrap()
            .line_level
    }

    #[test]
    fn physical_timer_tval_ctl_and_istatus_follow_the_count() {
        let vm = vm(2, GicVersion::V3);
        cntp(&vm, 1, trap::CNTP_TVAL_EL0, Some(1000), 5000);
        cntp(&vm, 1, trap::CNTP_CTL_EL0, Some(ENABLE), 5000);
        assert_eq!(cntp(&vm, 1, trap::CNTP_CVAL_EL0, None, 5100), 6000);
        assert_eq!(cntp(&vm, 1, trap::CNTP_TVAL_EL0, None, 5100), 900);
        assert_eq!(cntp(&vm, 1, trap::CNTP_CTL_EL0, None, 5999), ENABLE);
        assert_eq!(
            cntp(&vm, 1, trap::CNTP_CTL_EL0, None, 6000),
            ENABLE | ISTATUS
        );
        // vCPU 0's timer is its own.
        assert_eq!(cntp(&vm, 0, trap::CNTP_CTL_EL0, None, 6000), 0);
        assert_eq!(vm.vcpus[1].ptimer.load().deadline(), Some(6000));
    }

    #[test]
    fn physical_timer_write_moves_its_line() {
        let vm = vm(1, GicVersion::V3);
        cntp(&vm, 0, trap::CNTP_CVAL_EL0, Some(100), 200);
        assert!(!ptimer_line(&vm, 0));
        cntp(&vm, 0, trap::CNTP_CTL_EL0, Some(ENABLE), 200);
        assert!(ptimer_line(&vm, 0));
        // IMASK drops the line, ISTATUS stays.
        cntp(&vm, 0, trap::CNTP_CTL_EL0, Some(ENABLE | IMASK), 200);
        assert!(!ptimer_line(&vm, 0));
        assert_eq!(
            cntp(&vm, 0, trap::CNTP_CTL_EL0, None, 200),
            ENABLE | IMASK | ISTATUS
        );
        // Re-armed in the future: low again.
        cntp(&vm, 0, trap::CNTP_CTL_EL0, Some(ENABLE), 200);
        cntp(&vm, 0, trap::CNTP_TVAL_EL0, Some(50), 200);
        assert!(!ptimer_line(&vm, 0));
    }

    /// GICR_ISPENDR0 (SGI frame + 0x200) of `vcpu`'s redistributor, read by `reader` at
    /// count `now` with that reader's virtual timer `cntv`.
    fn ispendr0(vm: &Vm, reader: usize, vcpu: u64, now: u64, cntv: (u64, u64)) -> u64 {
        let ipa = layout::GICR_BASE + vcpu * layout::GICR_STRIDE + 0x1_0200;
        let mut r = regs();
        let mut s = FakeSysRegs {
            now,
            cntv_ctl: cntv.0,
            cntv_cval: cntv.1,
            ..sys()
        };
        let out = handle_sync(vm, VcpuId(reader), mmio(ipa, false, 2, 1), &mut r, &mut s);
        assert_eq!(out.next, Next::Resume);
        r.x[1]
    }

    /// `sgi_to_others` kicks each vCPU it returns once, in order: a mailbox target right
    /// after its own post (the SGI already in its box and the flag set, so a kicked target
    /// finds it), a locked-path target (`ICC_SGI0R_EL1`) once the SGI is pending in the vGIC.
    /// `value` written to `enc` (an `ICC_SGI*R_EL1`) by vCPU 0 of `vm`, through
    /// [`sgi_to_others`] with `kick`: what it returns and the vCPU's registers after.
    fn send_from_0(
        vm: &Vm,
        enc: u32,
        value: u64,
        kick: impl FnMut(VcpuId),
    ) -> (Option<VcpuSet>, GuestRegs) {
        let mut r = regs();
        r.x[5] = value;
        let wake = sgi_to_others(vm, VcpuId(0), sysreg(enc, false, 5).esr, &mut r, kick);
        (wake, r)
    }

    #[test]
    fn a_single_target_sgi_is_posted_and_kicked_and_a_self_target_declines() {
        let vm = vm(4, GicVersion::V3);
        let mail = vm.sgi_mail.as_ref().unwrap();
        // SGI 5 from vCPU 0 to vCPU 2 alone.
        let mut kicked = Vec::new();
        let (wake, r) = send_from_0(&vm, trap::ICC_SGI1R_EL1, (5 << 24) | 0b100, |t| {
            kicked.push((t.0, mail.waiting()))
        });
        assert_eq!(wake.map(|w| w.0), Some(0b100));
        assert_eq!(kicked, [(2, true)]);
        assert_eq!(mail.take(VcpuId(2)), 1 << 5);
        assert_eq!(r.elr, PC + 4);
        // To itself alone: the general path's (not stepped over, nothing posted or kicked).
        let (wake, r) = send_from_0(&vm, trap::ICC_SGI1R_EL1, (5 << 24) | 0b1, |_| {
            panic!("kicked")
        });
        assert_eq!(wake, None);
        assert_eq!(r.elr, PC);
        assert_eq!(mail.take(VcpuId(0)), 0);
    }

    #[test]
    fn sgi_to_others_kicks_each_target_after_its_post() {
        let vm = vm(4, GicVersion::V3);
        {
            let mut d = vm.devices();
            d.vgic.set_group_enables(true, true);
            for v in 0..4 {
                let i = d.vgic.irq_mut(crate::types::IntId(3), VcpuId(v)).unwrap();
                i.enabled = true;
                i.group1 = v != 2;
            }
        }
        let mail = vm.sgi_mail.as_ref().unwrap();
        let mut kicked = Vec::new();
        let (wake, r) = send_from_0(&vm, trap::ICC_SGI1R_EL1, (3 << 24) | 0b1110, |t| {
            let got = mail.take(t);
            mail.restore(t, got);
            kicked.push((t.0, got, mail.waiting()));
        });
        assert_eq!(wake.map(|w| w.0), Some(0b1110));
        assert_eq!(
            kicked,
            [(1, 1 << 3, true), (2, 1 << 3, true), (3, 1 << 3, true)]
        );
        assert_eq!(r.elr, PC + 4);
        // ICC_SGI0R_EL1 (the locked path): only vCPU 2 has SGI 3 in Group 0.
        let mut kicked = Vec::new();
        let (wake, _) = send_from_0(&vm, trap::ICC_SGI0R_EL1, (3 << 24) | 0b1110, |t| {
            let d = vm.devices();
            kicked.push((
                t.0,
                d.vgic.irq(crate::types::IntId(3), t).unwrap().pending_latch,
            ));
        });
        assert_eq!(wake.map(|w| w.0), Some(0b100));
        assert_eq!(kicked, [(2, true)]);
    }

    /// An `ICC_SGI1R_EL1` SGI to another vCPU goes through the mailbox (GICv3), yet every
    /// guest-visible read sees it at once: the target's `GICR_ISPENDR0` (read by itself or
    /// by the sender), its `WFI` wake-up test; `GICR_ICPENDR0` clears it like any pending
    /// SGI. A GICv2 VM has no mailbox.
    #[test]
    fn a_posted_sgi_is_seen_by_every_read_of_the_pending_state() {
        let vm = vm(2, GicVersion::V3);
        let sgi = 1u64 << 3;
        let send = |vm: &Vm| {
            let mut r = regs();
            r.x[5] = (3 << 24) | 0b10;
            let syn = sysreg(trap::ICC_SGI1R_EL1, false, 5);
            assert_eq!(
                sgi_to_others(vm, VcpuId(0), syn.esr, &mut r, |_| {}).map(|w| w.0),
                Some(0b10)
            );
            assert!(
                vm.sgi_mail.as_ref().unwrap().waiting(),
                "posted, not raised"
            );
        };
        send(&vm);
        assert_eq!(ispendr0(&vm, 1, 1, 0, (0, 0)) & sgi, sgi);
        assert_eq!(ispendr0(&vm, 0, 0, 0, (0, 0)) & sgi, 0, "not on the sender");
        // Cleared by GICR_ICPENDR0 (SGI frame + 0x280) of vCPU 1.
        let clear = |vm: &Vm| {
            let mut r = regs();
            r.x[1] = sgi;
            let icpendr0 = layout::GICR_BASE + layout::GICR_STRIDE + 0x1_0280;
            handle_sync(
                vm,
                VcpuId(1),
                mmio(icpendr0, true, 2, 1),
                &mut r,
                &mut sys(),
            );
        };
        clear(&vm);
        assert_eq!(ispendr0(&vm, 1, 1, 0, (0, 0)) & sgi, 0);
        // Posted again: the sender reads it in the target's frame.
        send(&vm);
        assert_eq!(ispendr0(&vm, 0, 1, 0, (0, 0)) & sgi, sgi);
        // Disabled (reset state): the target's WFI blocks; enabled, cleared and posted
        // once more, it does not.
        let wfi = |vm: &Vm| handle_sync(vm, VcpuId(1), syn(esr(0x01, 0)), &mut regs(), &mut sys());
        assert_eq!(wfi(&vm).next, Next::Block);
        {
            let mut d = vm.devices();
            d.vgic.set_group_enables(false, true);
            d.vgic
                .irq_mut(crate::types::IntId(3), VcpuId(1))
                .unwrap()
                .enabled = true;
        }
        clear(&vm);
        assert_eq!(wfi(&vm).next, Next::Block);
        send(&vm);
        assert_eq!(wfi(&vm).next, Next::Resume);
        assert!(self::vm(2, GicVersion::V2).sgi_mail.is_none());
    }

    #[test]
    fn timer_pending_bits_are_the_lines_sampled_on_read() {
        let vm = vm(2, GicVersion::V3);
        let (v, p) = (1u64 << layout::VTIMER_INTID, 1u64 << layout::PTIMER_INTID);
        // Both PPIs disabled at the vGIC (reset state). Physical timer due at 1000.
        cntp(&vm, 0, trap::CNTP_CVAL_EL0, Some(1000), 0);
        cntp(&vm, 0, trap::CNTP_CTL_EL0, Some(ENABLE), 0);
        assert_eq!(ispendr0(&vm, 0, 0, 999, (0, 0)) & (v | p), 0);
        assert_eq!(ispendr0(&vm, 0, 0, 1000, (0, 0)) & (v | p), p);
        // Another vCPU sees vCPU 0's physical timer line too.
        assert_eq!(ispendr0(&vm, 1, 0, 1000, (0, 0)) & p, p);
        // IMASK: not pending; disabled: not pending.
        cntp(&vm, 0, trap::CNTP_CTL_EL0, Some(ENABLE | IMASK), 1000);
        assert_eq!(ispendr0(&vm, 0, 0, 2000, (0, 0)) & p, 0);
        cntp(&vm, 0, trap::CNTP_CTL_EL0, Some(0), 1000);
        assert_eq!(ispendr0(&vm, 0, 0, 2000, (0, 0)) & p, 0);
        // The virtual timer: pending exactly when enabled, due and unmasked.
        assert_eq!(ispendr0(&vm, 0, 0, 2000, (ENABLE, 3000)) & v, 0);
        assert_eq!(ispendr0(&vm, 0, 0, 3000, (ENABLE, 3000)) & v, v);
        assert_eq!(ispendr0(&vm, 0, 0, 3000, (ENABLE | IMASK, 3000)) & v, 0);
        assert_eq!(ispendr0(&vm, 0, 0, 3000, (0, 3000)) & v, 0);
    }

    #[test]
    fn unknown_system_register_injects_undefined_at_the_instruction() {
        let vm = vm(1, GicVersion::V3);
        let mut r = regs();
        let mut s = sys();
        let out = handle_sync(
            &vm,
            VcpuId(0),
            sysreg(trap::sysreg(3, 7, 15, 0, 0), true, 1),
            &mut r,
            &mut s,
        );
        assert_eq!(out.next, Next::Resume);
        assert_eq!((s.esr, s.elr, s.spsr, s.far), (UNDEF_ESR, PC, EL1H, None));
        assert_eq!((r.elr, r.spsr), (VBAR + 0x200, 0x3c5));
    }

    #[test]
    fn mmio_read_of_the_gic_distributor_lands_in_the_register() {
        let vm = vm(4, GicVersion::V3);
        let mut r = regs();
        let out = handle_sync(
            &vm,
            VcpuId(0),
            mmio(layout::GICD_BASE + 4, false, 2, 7),
            &mut r,
            &mut sys(),
        );
        assert_eq!(out.next, Next::Resume);
        // GICD_TYPER.CPUNumber = vCPUs - 1.
        assert_eq!((r.x[7] >> 5) & 7, 3);
        assert_eq!(r.elr, PC + 4);
    }

    #[test]
    fn mmio_read_of_the_redistributor_of_vcpu_1() {
        let vm = vm(2, GicVersion::V3);
        let mut r = regs();
        let gicr_typer = layout::GICR_BASE + layout::GICR_STRIDE + 8;
        handle_sync(
            &vm,
            VcpuId(0),
            mmio(gicr_typer, false, 3, 1),
            &mut r,
            &mut sys(),
        );
        // GICR_TYPER.Processor_Number (bits 23:8) = 1, Last (bit 4) set.
        assert_eq!(((r.x[1] >> 8) & 0xffff, r.x[1] & 0x10), (1, 0x10));
    }

    #[test]
    fn mmio_write_to_the_uart_reaches_the_device() {
        let vm = vm(1, GicVersion::V3);
        let mut r = regs();
        r.x[3] = 0x301;
        let out = handle_sync(
            &vm,
            VcpuId(0),
            mmio(layout::UART_BASE + 0x30, true, 2, 3),
            &mut r,
            &mut sys(),
        );
        assert_eq!(out.next, Next::Resume);
        let (cr, _) = vm
            .devices()
            .mmio_read(
                VcpuId(0),
                GuestPhysAddr(layout::UART_BASE + 0x30),
                crate::mmio::AccessSize::Word,
            )
            .unwrap();
        assert_eq!(cr, 0x301);
    }

    /// The run loop's fast path for the console UART does what `handle_sync` does, access
    /// by access (Linux's console: enable, poll `UARTFR`, write `UARTDR`, unmask and mask
    /// the transmit interrupt, a prompt), and asks for the general entry exactly when the
    /// UART's line moved or a prompt waits.
    #[test]
    fn console_fast_matches_handle_sync_and_asks_for_the_general_entry_when_needed() {
        use crate::vuart::regs::{UARTCR, UARTDR, UARTFR, UARTIMSC, UARTMIS, UARTRIS};
        let (fast, slow) = (vm(1, GicVersion::V3), vm(1, GicVersion::V3));
        let (mut rf, mut rs) = (regs(), regs());
        // (register, value stored or None for a load, straight back in?)
        let steps: &[(u64, Option<u64>, bool)] = &[
            // The first access drives the line (low) for the first time.
            (UARTCR, Some(0x301), false),
            (UARTFR, None, true),
            (UARTDR, Some(u64::from(b'o')), true),
            (UARTFR, None, true),
            (UARTDR, Some(u64::from(b'k')), true),
            (UARTDR, Some(u64::from(b'\n')), true),
            // The transmit status latched: unmasking it raises the line, masking drops it.
            (UARTIMSC, Some(1 << 5), false),
            (UARTMIS, None, true),
            (UARTIMSC, Some(0), false),
            (UARTRIS, None, true),
            (UARTDR, Some(u64::from(b'#')), true),
            // "# " is a prompt: the general entry sets the `WFI` trap that emits it.
            (UARTDR, Some(u64::from(b' ')), false),
        ];
        for (i, &(reg, store, quiet)) in steps.iter().enumerate() {
            let syn = mmio(layout::UART_BASE + reg, store.is_some(), 2, 7);
            if let Some(v) = store {
                rf.x[7] = v;
                rs.x[7] = v;
            } else {
                (rf.x[7], rs.x[7]) = (0xdead, 0xdead);
            }
            let got = console_fast(&fast, VcpuId(0), syn, &mut rf);
            let out = handle_sync(&slow, VcpuId(0), syn, &mut rs, &mut sys());
            assert_eq!((rf.x[7], rf.elr), (rs.x[7], rs.elr), "step {i}");
            assert_eq!(rf.elr, PC + 4 * (i as u64 + 1), "step {i}");
            match got {
                Some(FastExit::Quiet) => assert!(quiet, "step {i}: quiet"),
                Some(FastExit::Then(o)) => {
                    assert!(!quiet, "step {i}: general entry");
                    assert_eq!((o.next, o.wake), (out.next, out.wake), "step {i}");
                }
                None => panic!("step {i}: declined"),
            }
        }
        for reg in [UARTFR, UARTCR, UARTIMSC, UARTRIS, UARTMIS] {
            let read = |vm: &Vm| {
                vm.devices()
                    .mmio_read(
                        VcpuId(0),
                        GuestPhysAddr(layout::UART_BASE + reg),
                        crate::mmio::AccessSize::Word,
                    )
                    .unwrap()
            };
            assert_eq!(read(&fast), read(&slow), "register {reg:#x}");
        }
    }

    /// The run loop's fast path for SMCCC architecture calls answers as `handle_sync` does
    /// (by HVC and by trapped SMC, with the firmware's workaround called the same), and
    /// leaves PSCI, unknown functions and other exits untouched.
    #[test]
    fn smccc_fast_matches_handle_sync_and_leaves_psci_to_the_general_path() {
        use core::sync::atomic::{AtomicU64, Ordering::SeqCst};
        use smccc::arch::{SMCCC_ARCH_FEATURES, SMCCC_ARCH_WORKAROUND_1, SMCCC_VERSION};
        static CALLS: AtomicU64 = AtomicU64::new(0);
        let mut vm = vm(2, GicVersion::V3);
        vm.firmware = crate::psci::FirmwareSmccc {
            version: Some(0x1_0001),
            workarounds: [0, 1, -2],
            call: |fid, arg| {
                CALLS.fetch_add(u64::from(fid) << 8 | arg, SeqCst);
            },
        };
        let wa1 = u64::from(SMCCC_ARCH_WORKAROUND_1);
        for ec in [0x16, 0x17] {
            for args in [
                [u64::from(SMCCC_VERSION), 0, 0, 0],
                [u64::from(SMCCC_ARCH_FEATURES), wa1, 0, 0],
                [u64::from(SMCCC_ARCH_FEATURES), 0x8000_7fff, 0, 0],
                [wa1, 1, 0, 0],
            ] {
                let (mut rf, mut rs) = (regs(), regs());
                rf.x[..4].copy_from_slice(&args);
                rs.x[..4].copy_from_slice(&args);
                CALLS.store(0, SeqCst);
                assert!(smccc_fast(&vm, esr(ec, 0), &mut rf), "{ec:#x} {args:x?}");
                let fast_calls = CALLS.swap(0, SeqCst);
                let out = handle_sync(&vm, VcpuId(0), syn(esr(ec, 0)), &mut rs, &mut sys());
                assert_eq!(fast_calls, CALLS.load(SeqCst), "{ec:#x} {args:x?}");
                assert_eq!((rf.x, rf.elr), (rs.x, rs.elr), "{ec:#x} {args:x?}");
                assert_eq!(
                    (out.next, out.wake, out.event),
                    (Next::Resume, VcpuSet::EMPTY, None)
                );
            }
        }
        // The workaround reached the firmware with its argument.
        let (mut r, _) = (regs(), ());
        r.x[..2].copy_from_slice(&[wa1, 1]);
        CALLS.store(0, SeqCst);
        assert!(smccc_fast(&vm, esr(0x16, 0), &mut r));
        assert_eq!(CALLS.load(SeqCst), wa1 << 8 | 1);
        assert_eq!(r.x[0], 0);
        // PSCI (even its pure queries), unknown functions, other exits: declined.
        for (ec, fid) in [
            (0x16, u64::from(smccc::psci::PSCI_VERSION)),
            (0x16, u64::from(smccc::psci::PSCI_CPU_ON_64)),
            (0x17, u64::from(smccc::psci::PSCI_SYSTEM_OFF)),
            (0x16, 0xc200_0000),
            (0x18, u64::from(SMCCC_VERSION)),
            (0x01, u64::from(SMCCC_VERSION)),
        ] {
            let mut r = regs();
            r.x[0] = fid;
            r.x[1] = 7;
            assert!(!smccc_fast(&vm, esr(ec, 0), &mut r), "{ec:#x} {fid:#x}");
            assert_eq!((r.x[0], r.x[1], r.elr), (fid, 7, PC), "{ec:#x} {fid:#x}");
        }
    }

    /// Every other exit, and an access the UART refuses, is left to the general path with
    /// nothing changed.
    #[test]
    fn console_fast_declines_every_other_exit_untouched() {
        let vm = vm(1, GicVersion::V3);
        let mut no_syndrome = mmio(layout::UART_BASE, false, 2, 1);
        no_syndrome.esr &= !(1 << 24);
        for syn in [
            // A 64-bit load: the PL011 refuses it.
            mmio(layout::UART_BASE, false, 3, 1),
            no_syndrome,
            mmio(layout::GICD_BASE, false, 2, 1),
            mmio(layout::UART_BASE + layout::UART_SIZE, false, 2, 1),
            mmio(layout::RAM_BASE, true, 2, 1),
            sysreg(trap::CNTP_CTL_EL0, false, 1),
            syn(esr(0x16, 0)),
        ] {
            let mut r = regs();
            r.x[1] = 0x77;
            assert!(
                console_fast(&vm, VcpuId(0), syn, &mut r).is_none(),
                "{syn:?}"
            );
            assert_eq!((r.elr, r.x[1]), (PC, 0x77), "{syn:?}");
        }
    }

    #[test]
    fn mmio_to_nothing_injects_a_data_abort_with_the_address() {
        let vm = vm(1, GicVersion::V3);
        let mut r = regs();
        let mut s = sys();
        let syn = mmio(0x0a00_0010, true, 2, 1);
        let out = handle_sync(&vm, VcpuId(0), syn, &mut r, &mut s);
        assert_eq!(out.next, Next::Resume);
        assert_eq!(s.esr, abort_esr(false, false, true));
        assert_eq!(s.esr >> 26, 0x25);
        assert_eq!((s.far, s.elr), (Some(syn.far), PC));
        assert_eq!(r.elr, VBAR + 0x200);
    }

    #[test]
    fn abort_from_el0_goes_to_the_lower_el_vector() {
        let vm = vm(1, GicVersion::V3);
        let mut r = GuestRegs { spsr: 0, ..regs() };
        let mut s = sys();
        handle_sync(&vm, VcpuId(0), mmio(0x10, false, 2, 1), &mut r, &mut s);
        assert_eq!(s.esr >> 26, 0x24);
        assert_eq!(r.elr, VBAR + 0x400);
    }

    #[test]
    fn a_refused_device_access_injects_an_abort() {
        // The PL011 takes no 64-bit access.
        let vm = vm(1, GicVersion::V3);
        let mut s = sys();
        handle_sync(
            &vm,
            VcpuId(0),
            mmio(layout::UART_BASE, false, 3, 1),
            &mut regs(),
            &mut s,
        );
        assert_eq!(s.taken, 1);
        assert_eq!(s.esr >> 26, 0x25);
    }

    #[test]
    fn data_abort_without_syndrome_injects_an_abort() {
        let vm = vm(1, GicVersion::V3);
        let mut s = sys();
        let syn = Syndrome {
            esr: esr(0x24, 1 << 6),
            far: layout::GICD_BASE,
            hpfar: (layout::GICD_BASE >> 12) << 4,
        };
        handle_sync(&vm, VcpuId(0), syn, &mut regs(), &mut s);
        assert_eq!((s.taken, s.esr), (1, abort_esr(false, false, true)));
    }

    /// `fuzz/regressions/trap_decoder/pc-at-top-of-address-space`: a trap with the guest PC
    /// at the top of the address space overflowed the PC advance, and a `VBAR_EL1` there
    /// the vector address.
    #[test]
    fn pc_and_vbar_at_the_top_of_the_address_space_wrap_instead_of_panicking() {
        let vm = vm(1, GicVersion::V3);
        let mut r = GuestRegs {
            elr: u64::MAX - 1,
            ..regs()
        };
        handle_sync(&vm, VcpuId(0), syn(esr(0x01, 0)), &mut r, &mut sys());
        assert_eq!(r.elr, 2);
        let mut s = FakeSysRegs {
            vbar: u64::MAX - 0x100,
            ..FakeSysRegs::default()
        };
        let mut r = regs();
        handle_sync(&vm, VcpuId(0), mmio(0x10, false, 2, 1), &mut r, &mut s);
        assert_eq!(r.elr, (u64::MAX - 0x100).wrapping_add(0x200));
    }

    #[test]
    fn first_touch_of_ram_asks_for_the_block_and_retries_the_instruction() {
        let vm = vm(1, GicVersion::V3);
        let ipa = layout::RAM_BASE + 0x20_1234;
        for syn in [
            mmio(ipa, false, 2, 1),
            mmio(ipa, true, 3, 1),
            // A stage-1 table walk (S1PTW) and a load pair (no syndrome) there.
            Syndrome {
                esr: esr(0x24, 1 << 7),
                ..mmio(ipa, false, 2, 1)
            },
            Syndrome {
                esr: esr(0x24, 0),
                ..mmio(ipa, false, 2, 1)
            },
            // Executing there.
            Syndrome {
                esr: esr(0x20, 0x07),
                ..mmio(ipa, false, 2, 1)
            },
        ] {
            let mut r = regs();
            let mut s = sys();
            let out = handle_sync(&vm, VcpuId(0), syn, &mut r, &mut s);
            assert_eq!(out.event, Some(VmEvent::TouchRam(GuestPhysAddr(ipa))));
            assert_eq!((out.next, r.elr, s.taken), (Next::Resume, PC, 0));
        }
    }

    #[test]
    fn abort_past_the_end_of_ram_is_not_a_ram_touch() {
        let vm = vm(1, GicVersion::V3);
        let mut s = sys();
        let end = layout::RAM_BASE + vm.desc.memory_size;
        let out = handle_sync(&vm, VcpuId(0), mmio(end, false, 2, 1), &mut regs(), &mut s);
        assert_eq!((out.event, s.taken), (None, 1));
    }

    #[test]
    fn abort_inside_the_vectors_stops_the_vm() {
        let vm = vm(1, GicVersion::V3);
        let mut r = GuestRegs {
            elr: VBAR + 0x280,
            ..regs()
        };
        let mut s = sys();
        let out = handle_sync(&vm, VcpuId(0), mmio(0x10, false, 2, 1), &mut r, &mut s);
        assert_eq!(out.next, Next::Off);
        assert!(matches!(out.event, Some(VmEvent::Stop(_))));
        assert_eq!(s.taken, 0);
    }

    #[test]
    fn a_guest_without_vectors_is_stopped_not_looped() {
        let vm = vm(1, GicVersion::V3);
        let mut s = FakeSysRegs::default();
        let out = handle_sync(&vm, VcpuId(0), mmio(0x10, false, 2, 1), &mut regs(), &mut s);
        assert!(matches!(out.event, Some(VmEvent::Stop(_))));
    }

    #[test]
    fn instruction_abort_is_injected() {
        let vm = vm(1, GicVersion::V3);
        let mut s = sys();
        let mut r = regs();
        let syn = Syndrome {
            esr: esr(0x20, 0x10),
            far: 0x1234,
            hpfar: 0,
        };
        handle_sync(&vm, VcpuId(0), syn, &mut r, &mut s);
        assert_eq!((s.esr >> 26, s.far), (0x21, Some(0x1234)));
        assert_eq!(r.elr, VBAR + 0x200);
    }

    #[test]
    fn unhandled_class_injects_undefined_and_is_reported() {
        let vm = vm(1, GicVersion::V3);
        let mut s = sys();
        // BRK #0 from AArch64 (EC 0x3c).
        let out = handle_sync(&vm, VcpuId(0), syn(esr(0x3c, 0)), &mut regs(), &mut s);
        assert_eq!(s.esr, UNDEF_ESR);
        assert_eq!(
            out.diag,
            Some(Diag::UnhandledClass {
                ec: 0x3c,
                pc: VBAR + 0x200
            })
        );
    }

    #[test]
    fn gicv2_vm_reads_its_distributor_banked_per_vcpu() {
        let vm = vm(2, GicVersion::V2);
        let mut r = regs();
        // GICD_ITARGETSR0 (SGIs 0-3) reads the accessing CPU's own bit (IHI 0048B 4.3.12).
        handle_sync(
            &vm,
            VcpuId(1),
            mmio(layout::GICD_BASE + 0x800, false, 2, 4),
            &mut r,
            &mut sys(),
        );
        assert_eq!(r.x[4] & 0xff, 0b10);
    }
}
