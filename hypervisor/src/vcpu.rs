//! vCPUs: the register state the world switch saves, the PSCI power state, and the per-vCPU
//! data every physical CPU may read.
#![deny(unsafe_code)]

use core::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};

/// General-purpose register state of a vCPU, as saved on exit. Layout is fixed: the
/// world-switch assembly (`arch::exception`) indexes it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GuestRegs {
    /// x0..x30.
    pub x: [u64; 31],
    /// ELR_EL2: the guest PC.
    pub elr: u64,
    /// SPSR_EL2: the guest PSTATE.
    pub spsr: u64,
}

impl GuestRegs {
    /// PSTATE of a vCPU at reset and of an exception taken to EL1: EL1h with D, A, I and F
    /// masked (Arm ARM D1.4, `SPSR_EL2.M = 0b0101`, `DAIF = 0b1111`).
    pub const EL1H_DAIF_MASKED: u64 = 0x3c5;

    /// The registers of a vCPU entering at `entry` with `x0` (boot or PSCI CPU_ON).
    pub fn at_entry(entry: u64, x0: u64) -> Self {
        let mut r = Self {
            elr: entry,
            spsr: Self::EL1H_DAIF_MASKED,
            ..Self::default()
        };
        r.x[0] = x0;
        r
    }

    /// Value of general-purpose register `n` as an instruction reads it: 0 for register 31
    /// (XZR/WZR in the encodings that trap).
    pub fn read(&self, n: u8) -> u64 {
        self.x.get(usize::from(n)).copied().unwrap_or(0)
    }

    /// Sets general-purpose register `n`; a write to register 31 (XZR) is discarded.
    pub fn write(&mut self, n: u8, value: u64) {
        if let Some(r) = self.x.get_mut(usize::from(n)) {
            *r = value;
        }
    }
}

/// The guest's EL1 system registers that exit handling reads or writes: the vector base,
/// and the registers an exception injected at EL1 sets (Arm ARM D1.10.1 "Exception
/// entry"). The run loop passes the loaded vCPU's live registers; tests pass a fake.
pub trait GuestSysRegs {
    /// `VBAR_EL1`.
    fn vbar_el1(&self) -> u64;
    /// Sets `ESR_EL1`, `FAR_EL1` (when `far` is given), `ELR_EL1` and `SPSR_EL1` for an
    /// exception taken to EL1.
    fn set_el1_exception(&mut self, esr: u64, far: Option<u64>, elr: u64, spsr: u64);
    /// The priority mask of the guest's virtual CPU interface (`ICC_PMR_EL1`/`GICC_PMR` as
    /// the guest set it: `ICH_VMCR_EL2.VPMR` or `GICH_VMCR.VMPriMask`, see
    /// [`crate::vgic::vmcr_priority_mask`]): only interrupts of a higher priority (lower
    /// value) are signalled, and so wake a `WFI`.
    fn priority_mask(&self) -> u8;
    /// The physical count now (`CNTPCT_EL0`): what the emulated physical timer compares.
    fn counter(&self) -> u64;
    /// Samples the vCPU's virtual timer now: the level of its interrupt line as the guest's
    /// `CNTV_CTL_EL0`/`CNTV_CVAL_EL0` define it ([`crate::vtimer::VtimerState::sample`],
    /// which may set or clear the mask EL2 borrows).
    fn sample_vtimer(&mut self) -> bool;
    /// The EL1 state of a PE resuming from a PSCI power-down state: `SCTLR_EL1` at its
    /// reset value (MMU and caches off); the other EL1 registers are UNKNOWN there.
    fn power_down_el1(&mut self);
    /// Reads a PMU register for the guest (its PMU state is live on this CPU while it runs):
    /// see [`crate::vpmu`].
    fn pmu_read(&mut self, reg: crate::vpmu::PmuReg) -> u64;
    /// Writes a PMU register for the guest.
    fn pmu_write(&mut self, reg: crate::vpmu::PmuReg, value: u64);
}

/// The power state of a vCPU, as PSCI sees it (DEN0022, 5.1.5 AFFINITY_INFO).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum PowerState {
    /// Off: CPU_ON may start it.
    Off = 0,
    /// CPU_ON accepted; its physical CPU has not started it yet.
    OnPending = 1,
    /// Running or runnable.
    On = 2,
}

impl PowerState {
    const fn from_u8(v: u8) -> Self {
        match v {
            1 => Self::OnPending,
            2 => Self::On,
            _ => Self::Off,
        }
    }
}

/// A [`PowerState`] shared between physical CPUs (the vCPU's own, and the one that asks
/// for CPU_ON or stops the VM).
#[derive(Debug)]
pub struct AtomicPowerState(AtomicU8);

impl AtomicPowerState {
    /// A state holding `s`.
    pub const fn new(s: PowerState) -> Self {
        Self(AtomicU8::new(s as u8))
    }

    /// The current state.
    pub fn load(&self) -> PowerState {
        PowerState::from_u8(self.0.load(Ordering::Acquire))
    }

    /// Sets the state.
    pub fn store(&self, s: PowerState) {
        self.0.store(s as u8, Ordering::Release)
    }

    /// Moves from `current` to `new` if the state is `current`; otherwise returns the
    /// state found.
    pub fn compare_exchange(&self, current: PowerState, new: PowerState) -> Result<(), PowerState> {
        self.0
            .compare_exchange(
                current as u8,
                new as u8,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .map(|_| ())
            .map_err(PowerState::from_u8)
    }
}

/// A vCPU's state visible to every physical CPU.
#[derive(Debug)]
pub struct VcpuShared {
    /// Physical CPU it is pinned to.
    pub pcpu: usize,
    /// Guest-visible MPIDR (Aff0 = vCPU index).
    pub mpidr: u64,
    /// Its PSCI power state.
    pub power: AtomicPowerState,
    /// Entry point of the next start (boot, CPU_ON, reset).
    pub entry: AtomicU64,
    /// x0 of the next start (the DTB address at boot, the CPU_ON context id).
    pub context: AtomicU64,
    /// Its EL1 physical timer (emulated: every guest access traps).
    pub ptimer: crate::ptimer::AtomicPtimer,
}

impl VcpuShared {
    /// vCPU `index` pinned to physical CPU `pcpu`, off, to start at `entry` with `x0`.
    pub fn new(index: usize, pcpu: usize, entry: u64, x0: u64) -> Self {
        Self {
            pcpu,
            mpidr: index as u64,
            power: AtomicPowerState::new(PowerState::Off),
            entry: AtomicU64::new(entry),
            context: AtomicU64::new(x0),
            ptimer: crate::ptimer::AtomicPtimer::new(),
        }
    }

    /// Asks for the vCPU to start at `entry` with `x0` (its physical CPU does it).
    pub fn request_start(&self, entry: u64, x0: u64) {
        self.entry.store(entry, Ordering::Release);
        self.context.store(x0, Ordering::Release);
        self.power.store(PowerState::OnPending);
    }

    /// Where and with which `x0` the vCPU starts next.
    pub fn start_point(&self) -> (u64, u64) {
        (
            self.entry.load(Ordering::Acquire),
            self.context.load(Ordering::Acquire),
        )
    }
}

/// What the run loop does with a vCPU after an exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Re-enter the same vCPU.
    Resume,
    /// The vCPU waits for an interrupt.
    Block,
    /// Give up the rest of the slice: another vCPU of this CPU was just woken.
    Yield,
    /// Return to the scheduler without giving up the slice (a kick, a timer, input).
    Resched,
    /// The vCPU turned itself off (or its VM stopped).
    Off,
}

/// A physical CPU's "attention" flag: raised by whoever makes a condition true that the
/// receiver fast path must not run past (a VM of the CPU stopping, resetting, leaving or
/// arriving), before the kick that tells the CPU; taken (cleared) by the fast path, which
/// then declines, so the general path reads the real conditions after the clear: a raise
/// after the clear is seen at the next take.
#[derive(Debug, Default)]
pub struct Attention(AtomicBool);

impl Attention {
    /// Lowered.
    pub const fn new() -> Self {
        Self(AtomicBool::new(false))
    }

    /// Raises it (after the condition is set).
    pub fn raise(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// Whether it was raised since the last take; lowers it. One load when lowered.
    #[inline]
    pub fn take(&self) -> bool {
        self.0.load(Ordering::Acquire) && self.0.swap(false, Ordering::AcqRel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attention_is_taken_once_per_raise() {
        let a = Attention::new();
        assert!(!a.take());
        a.raise();
        assert!(a.take());
        assert!(!a.take());
        a.raise();
        a.raise();
        assert!(a.take());
        assert!(!a.take());
    }

    #[test]
    fn a_condition_set_before_a_raise_is_seen_after_a_take() {
        // One CPU sets conditions and raises; the other takes and then reads the
        // conditions, as the general path does: the last condition is always seen.
        let cond = std::sync::Arc::new(AtomicU64::new(0));
        let att = std::sync::Arc::new(Attention::new());
        let (c, a) = (cond.clone(), att.clone());
        let setter = std::thread::spawn(move || {
            for _ in 0..20_000 {
                c.fetch_add(1, Ordering::Relaxed);
                a.raise();
            }
        });
        let mut seen = 0;
        while !setter.is_finished() {
            if att.take() {
                seen = cond.load(Ordering::Relaxed);
            }
        }
        setter.join().unwrap();
        if att.take() {
            seen = cond.load(Ordering::Relaxed);
        }
        assert_eq!(seen, 20_000);
        assert!(!att.take());
    }

    #[test]
    fn register_31_reads_zero_and_ignores_writes() {
        let mut r = GuestRegs::default();
        r.write(31, 5);
        assert_eq!(r.read(31), 0);
        r.write(30, 5);
        assert_eq!(r.read(30), 5);
    }

    #[test]
    fn entry_state_is_el1h_with_interrupts_masked() {
        let r = GuestRegs::at_entry(0x4008_0000, 0x4800_0000);
        assert_eq!((r.elr, r.spsr, r.x[0]), (0x4008_0000, 0x3c5, 0x4800_0000));
    }

    #[test]
    fn cpu_on_moves_off_to_on_pending_once() {
        let p = AtomicPowerState::new(PowerState::Off);
        assert_eq!(
            p.compare_exchange(PowerState::Off, PowerState::OnPending),
            Ok(())
        );
        assert_eq!(
            p.compare_exchange(PowerState::Off, PowerState::OnPending),
            Err(PowerState::OnPending)
        );
        p.store(PowerState::On);
        assert_eq!(p.load(), PowerState::On);
    }
}
