//! The EL1 physical timer guests see (`CNTP_CTL_EL0`, `CNTP_CVAL_EL0`, `CNTP_TVAL_EL0`),
//! emulated: pure.
//!
//! Why emulated rather than handed to the guest: `CNTHCTL_EL2.EL1PCEN` stays 0, so every
//! guest access traps and [`PtimerState`] is the whole truth about the timer. The guest then
//! reads back exactly the `IMASK` it wrote (the virtual timer cannot offer that: EL2 borrows
//! its `IMASK` to silence the level-sensitive PPI until the guest's EOI, see
//! [`crate::vtimer`]); no second physical PPI needs routing, masking and unmasking at the
//! physical GIC; the state is two plain words in [`crate::vcpu::VcpuShared`], so it moves with
//! the vCPU, any CPU may sample it (the redistributor of another vCPU), and it is
//! serializable. The cost is a trap per access, which only guests that choose the physical
//! timer pay (Linux at EL1 uses the virtual one). The run loop makes the loaded vCPU's
//! deadline one of the EL2 physical timer's (`CNTHP`) and drives virtual PPI
//! [`PTIMER_INTID`] as a level from [`PtimerState::level`] before every guest entry; a
//! blocked vCPU wakes at [`PtimerState::deadline`].
//!
//! The compare is against the physical count (`CNTPCT_EL0`, which guests read untrapped;
//! there is no `CNTPOFF`), as the architecture defines it (Arm ARM D11.2.4, "Operation of
//! the CompareValue views of the timers").
#![deny(unsafe_code)]

use crate::vtimer::cntv_ctl::{ENABLE, IMASK, ISTATUS};
use core::sync::atomic::{AtomicU64, Ordering};

/// Virtual INTID of the EL1 physical timer (the guest DT's second `arm,armv8-timer`
/// interrupt, non-secure physical PPI 14).
pub const PTIMER_INTID: crate::types::IntId = crate::types::IntId(30);

/// `CNTP_CTL_EL0` bits the guest can write (`ISTATUS` is read-only, the rest RES0).
const CTL_WRITABLE: u64 = ENABLE | IMASK;

/// One vCPU's EL1 physical timer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PtimerState {
    /// `CNTP_CTL_EL0.{ENABLE, IMASK}` as the guest wrote them.
    pub ctl: u64,
    /// `CNTP_CVAL_EL0`.
    pub cval: u64,
}

impl PtimerState {
    /// The timer condition is met: enabled and `CNTPCT - CVAL >= 0` (unsigned compare of the
    /// 64-bit values, as the architecture's "greater than or equal").
    pub const fn condition(&self, now: u64) -> bool {
        self.ctl & ENABLE != 0 && now >= self.cval
    }

    /// Level of the timer's interrupt line: condition met and `IMASK` clear.
    pub const fn level(&self, now: u64) -> bool {
        self.condition(now) && self.ctl & IMASK == 0
    }

    /// The physical count at which the line rises, if it can: `None` when disabled or
    /// masked.
    pub const fn deadline(&self) -> Option<u64> {
        if self.ctl & ENABLE != 0 && self.ctl & IMASK == 0 {
            Some(self.cval)
        } else {
            None
        }
    }

    /// `MRS CNTP_CTL_EL0`: `ENABLE` and `IMASK` as written, `ISTATUS` computed now (0 while
    /// disabled, where the architecture makes it UNKNOWN).
    pub const fn read_ctl(&self, now: u64) -> u64 {
        self.ctl | if self.condition(now) { ISTATUS } else { 0 }
    }

    /// `MSR CNTP_CTL_EL0`: only `ENABLE` and `IMASK` are kept.
    pub fn write_ctl(&mut self, value: u64) {
        self.ctl = value & CTL_WRITABLE;
    }

    /// `MRS CNTP_TVAL_EL0`: `(CVAL - CNTPCT)[31:0]`, sign-extended (bits 63:32 of the
    /// register are RES0 in the architecture; the 32-bit view is what software uses, and a
    /// guest reading it with `MRS Xt` sees it zero-extended).
    pub const fn read_tval(&self, now: u64) -> u64 {
        self.cval.wrapping_sub(now) & 0xffff_ffff
    }

    /// `MSR CNTP_TVAL_EL0`: `CVAL = CNTPCT + SignExtend(value[31:0])`.
    pub fn write_tval(&mut self, value: u64, now: u64) {
        self.cval = now.wrapping_add(value as u32 as i32 as i64 as u64);
    }
}

/// A [`PtimerState`] every physical CPU may read (its own vCPU's CPU writes it, on a
/// trapped access or a reset; the others sample it for the pending bit of the vCPU's
/// redistributor).
#[derive(Debug, Default)]
pub struct AtomicPtimer {
    ctl: AtomicU64,
    cval: AtomicU64,
}

impl AtomicPtimer {
    /// A disabled timer.
    pub const fn new() -> Self {
        Self {
            ctl: AtomicU64::new(0),
            cval: AtomicU64::new(0),
        }
    }

    /// The current state.
    pub fn load(&self) -> PtimerState {
        PtimerState {
            cval: self.cval.load(Ordering::Acquire),
            ctl: self.ctl.load(Ordering::Acquire),
        }
    }

    /// Replaces the state.
    pub fn store(&self, s: PtimerState) {
        self.cval.store(s.cval, Ordering::Release);
        self.ctl.store(s.ctl, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timer(ctl: u64, cval: u64) -> PtimerState {
        PtimerState { ctl, cval }
    }

    #[test]
    fn line_is_high_only_when_enabled_unmasked_and_due() {
        assert!(timer(ENABLE, 100).level(100));
        assert!(timer(ENABLE, 100).level(u64::MAX));
        assert!(!timer(ENABLE, 100).level(99));
        assert!(!timer(ENABLE | IMASK, 100).level(200));
        assert!(!timer(0, 100).level(200));
    }

    #[test]
    fn istatus_follows_the_condition_whatever_imask_says() {
        assert_eq!(timer(ENABLE, 10).read_ctl(10), ENABLE | ISTATUS);
        assert_eq!(
            timer(ENABLE | IMASK, 10).read_ctl(11),
            ENABLE | IMASK | ISTATUS
        );
        assert_eq!(timer(ENABLE, 10).read_ctl(9), ENABLE);
        assert_eq!(timer(IMASK, 10).read_ctl(11), IMASK);
    }

    #[test]
    fn ctl_write_keeps_only_enable_and_imask() {
        let mut t = PtimerState::default();
        t.write_ctl(u64::MAX);
        assert_eq!(t.ctl, ENABLE | IMASK);
        t.write_ctl(ISTATUS);
        assert_eq!(t.ctl, 0);
    }

    #[test]
    fn tval_write_sets_cval_relative_to_now_sign_extended() {
        let mut t = PtimerState::default();
        t.write_tval(1000, 5000);
        assert_eq!(t.cval, 6000);
        // -1000 as a 32-bit value: a deadline in the past.
        t.write_tval(0xffff_fc18, 5000);
        assert_eq!(t.cval, 4000);
        // Bits 63:32 of the written value are ignored.
        t.write_tval(0xdead_beef_0000_0010, 5000);
        assert_eq!(t.cval, 5016);
    }

    #[test]
    fn tval_read_counts_down_and_wraps_in_32_bits() {
        let t = timer(ENABLE, 6000);
        assert_eq!(t.read_tval(5000), 1000);
        assert_eq!(t.read_tval(6001), 0xffff_ffff);
    }

    #[test]
    fn deadline_only_when_the_line_can_rise() {
        assert_eq!(timer(ENABLE, 7).deadline(), Some(7));
        assert_eq!(timer(ENABLE | IMASK, 7).deadline(), None);
        assert_eq!(timer(0, 7).deadline(), None);
    }

    #[test]
    fn atomic_round_trips() {
        let a = AtomicPtimer::new();
        assert_eq!(a.load(), PtimerState::default());
        a.store(timer(ENABLE, 42));
        assert_eq!(a.load(), timer(ENABLE, 42));
    }
}
