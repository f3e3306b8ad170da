//! Virtual timer policy: when a vCPU's EL1 virtual timer fires, and how EL2 masks it.
//!
//! The guest owns `CNTV_CTL_EL0`/`CNTV_CVAL_EL0` (not trapped); `arch/` saves and restores
//! them with the vCPU and calls these pure functions with the plain values
//! (Arm ARM D11.2, "The AArch64 view of the Generic Timer").
//!
//! Masking scheme: the physical virtual-timer PPI is taken at EL2 while the guest runs. The
//! core then sets `CNTV_CTL_EL0.IMASK` (so the level-sensitive PPI drops and does not fire
//! again at once) and raises the line of virtual INTID 27, a level, with a maintenance
//! interrupt on EOI. The line follows the timer: it is re-sampled ([`VtimerState::sample`])
//! on the guest's EOI, before each entry while EL2 holds the mask, and when the guest reads
//! its pending bit, and EL2 gives `IMASK` back as soon as the condition no longer holds.
//! The guest's own writes to `IMASK` while EL2 holds it cannot be told apart from ours;
//! Linux either reprograms the timer (clearing `IMASK` itself) or disables it in its
//! handler, so this is harmless for it.
#![deny(unsafe_code)]

/// `CNTV_CTL_EL0` bit assignments.
pub mod cntv_ctl {
    /// `ENABLE`: the timer is enabled.
    pub const ENABLE: u64 = 1 << 0;
    /// `IMASK`: the timer interrupt is masked.
    pub const IMASK: u64 = 1 << 1;
    /// `ISTATUS` (read-only): the timer condition is met.
    pub const ISTATUS: u64 = 1 << 2;
}

/// Virtual INTID of the EL1 virtual timer, as guests see it.
pub const VTIMER_INTID: crate::types::IntId = crate::types::IntId(27);

/// The timer condition is met and the interrupt is not masked: the vCPU's virtual timer
/// interrupt is asserted. `now` is the virtual count (`CNTVCT_EL0`); the comparison is the
/// architectural unsigned `CNTVCT - CVAL >= 0` over 64 bits.
pub const fn should_fire(ctl: u64, cval: u64, now: u64) -> bool {
    ctl & cntv_ctl::ENABLE != 0 && ctl & cntv_ctl::IMASK == 0 && now >= cval
}

/// The virtual count at which the timer will assert its interrupt, if it can: `None` when
/// the timer is disabled or masked. Used to set a wake-up for a vCPU blocked in WFI.
pub const fn deadline(ctl: u64, cval: u64) -> Option<u64> {
    if ctl & cntv_ctl::ENABLE != 0 && ctl & cntv_ctl::IMASK == 0 {
        Some(cval)
    } else {
        None
    }
}

/// Converts a virtual count to the physical count: virtual = physical - `CNTVOFF_EL2`.
pub const fn virtual_to_physical(virtual_count: u64, cntvoff_el2: u64) -> u64 {
    virtual_count.wrapping_add(cntvoff_el2)
}

/// Per-vCPU record of whether EL2 has masked the guest's virtual timer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VtimerState {
    /// EL2 set `IMASK` on fire and has not yet cleared it on the guest's EOI.
    pub hv_masked: bool,
}

impl VtimerState {
    /// Samples the timer at virtual count `now`, given the live `CNTV_CTL_EL0` and
    /// `CNTV_CVAL_EL0`: returns the `CNTV_CTL_EL0` value to write back and the level of the
    /// guest's virtual timer line (virtual INTID [`VTIMER_INTID`], level-sensitive).
    ///
    /// While EL2 holds the mask, `IMASK` counts as the guest's clear bit. A line that is high
    /// keeps (or gets) the EL2 mask, so the physical PPI does not fire again meanwhile; a low
    /// one gives the mask back. Called when the physical PPI fires, when the guest EOIs the
    /// interrupt, before entering a vCPU whose timer EL2 masked, and when the guest reads the
    /// interrupt's pending bit; so a guest that disables or reprograms its timer sees the
    /// line drop as on hardware, and the pending bit it reads is the line's level now.
    pub fn sample(&mut self, ctl: u64, cval: u64, now: u64) -> (u64, bool) {
        let guest_ctl = if self.hv_masked {
            ctl & !cntv_ctl::IMASK
        } else {
            ctl
        };
        if should_fire(guest_ctl, cval, now) {
            self.hv_masked = true;
            (guest_ctl | cntv_ctl::IMASK, true)
        } else {
            self.hv_masked = false;
            (guest_ctl, false)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::cntv_ctl::{ENABLE, IMASK, ISTATUS};
    use super::*;

    #[test]
    fn enabled_unmasked_timer_fires_at_cval() {
        assert!(should_fire(ENABLE, 100, 100));
        assert!(should_fire(ENABLE, 100, 101));
    }

    #[test]
    fn timer_does_not_fire_before_cval() {
        assert!(!should_fire(ENABLE, 100, 99));
    }

    #[test]
    fn disabled_timer_never_fires() {
        assert!(!should_fire(0, 0, u64::MAX));
    }

    #[test]
    fn masked_timer_never_fires() {
        assert!(!should_fire(ENABLE | IMASK, 0, u64::MAX));
    }

    #[test]
    fn istatus_in_saved_ctl_is_not_trusted() {
        // ISTATUS is recomputed from `now`, not read back.
        assert!(!should_fire(ENABLE | ISTATUS, 100, 50));
    }

    #[test]
    fn deadline_is_cval_when_enabled_and_unmasked() {
        assert_eq!(deadline(ENABLE, 1234), Some(1234));
        assert_eq!(deadline(ENABLE | IMASK, 1234), None);
        assert_eq!(deadline(0, 1234), None);
    }

    #[test]
    fn virtual_count_converts_with_offset() {
        assert_eq!(virtual_to_physical(100, 50), 150);
        assert_eq!(virtual_to_physical(u64::MAX, 2), 1);
    }

    #[test]
    fn firing_timer_is_masked_and_its_line_high() {
        let mut s = VtimerState::default();
        let (ctl, line) = s.sample(ENABLE | ISTATUS, 100, 100);
        assert_eq!((ctl, line), (ENABLE | ISTATUS | IMASK, true));
        assert!(s.hv_masked);
        assert!(!should_fire(ctl, 0, 1));
    }

    #[test]
    fn line_stays_high_under_the_el2_mask_while_the_condition_holds() {
        let mut s = VtimerState::default();
        let (ctl, _) = s.sample(ENABLE, 100, 100);
        assert_eq!(s.sample(ctl, 100, 150), (ENABLE | IMASK, true));
        assert!(s.hv_masked);
    }

    #[test]
    fn disabling_or_reprogramming_drops_the_line_and_the_el2_mask() {
        let mut s = VtimerState::default();
        let (ctl, _) = s.sample(ENABLE, 100, 100);
        // The guest disabled the timer (its write kept our IMASK, or not: the same).
        assert_eq!(s.sample(ctl & !ENABLE, 100, 120), (0, false));
        assert!(!s.hv_masked);
        let (ctl, _) = s.sample(ENABLE, 100, 130);
        // The guest moved CVAL ahead: the line drops, the mask is given back.
        assert_eq!(s.sample(ctl, 500, 140), (ENABLE, false));
        assert!(!s.hv_masked);
    }

    #[test]
    fn guest_imask_without_el2_mask_is_the_guests() {
        let mut s = VtimerState::default();
        assert_eq!(s.sample(ENABLE | IMASK, 0, 100), (ENABLE | IMASK, false));
        assert!(!s.hv_masked);
    }

    #[test]
    fn sample_before_the_deadline_changes_nothing() {
        let mut s = VtimerState::default();
        assert_eq!(s.sample(ENABLE, 200, 100), (ENABLE, false));
        assert!(!s.hv_masked);
    }
}
