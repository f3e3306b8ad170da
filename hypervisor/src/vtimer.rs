//! Virtual timer policy: when a vCPU's EL1 virtual timer fires, and how EL2 masks it.
//!
//! The guest owns `CNTV_CTL_EL0`/`CNTV_CVAL_EL0` (not trapped); `arch/` saves and restores
//! them with the vCPU and calls these pure functions with the plain values
//! (Arm ARM D11.2, "The AArch64 view of the Generic Timer").
//!
//! Masking scheme: the physical virtual-timer PPI is taken at EL2 while the guest runs. The
//! core then sets `CNTV_CTL_EL0.IMASK` (so the level-sensitive PPI drops and does not fire
//! again at once), injects virtual INTID 27 into the guest with a maintenance interrupt on
//! EOI, and when the guest EOIs it clears `IMASK` again ([`VtimerState`]). The guest's own
//! writes to `IMASK` in between cannot be told apart from ours; Linux either reprograms
//! the timer (clearing `IMASK` itself) or disables it in its handler, so this is harmless
//! for it.
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
    /// The physical virtual-timer PPI fired at EL2 while this vCPU ran: returns the
    /// `CNTV_CTL_EL0` value to write back (with `IMASK` set). The caller then injects
    /// [`VTIMER_INTID`] with a maintenance interrupt on EOI.
    pub fn on_fire(&mut self, ctl: u64) -> u64 {
        self.hv_masked = true;
        ctl | cntv_ctl::IMASK
    }

    /// The guest EOI'd [`VTIMER_INTID`]: returns the `CNTV_CTL_EL0` value to write back,
    /// with `IMASK` cleared if EL2 had set it (unchanged otherwise).
    pub fn on_guest_eoi(&mut self, ctl: u64) -> u64 {
        if self.hv_masked {
            self.hv_masked = false;
            ctl & !cntv_ctl::IMASK
        } else {
            ctl
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
    fn fire_sets_imask_and_remembers_it() {
        let mut s = VtimerState::default();
        let ctl = s.on_fire(ENABLE | ISTATUS);
        assert_eq!(ctl, ENABLE | ISTATUS | IMASK);
        assert!(s.hv_masked);
        assert!(!should_fire(ctl, 0, 1));
    }

    #[test]
    fn guest_eoi_clears_the_mask_set_by_el2() {
        let mut s = VtimerState::default();
        let ctl = s.on_fire(ENABLE);
        let ctl = s.on_guest_eoi(ctl);
        assert_eq!(ctl, ENABLE);
        assert!(!s.hv_masked);
    }

    #[test]
    fn guest_eoi_without_el2_mask_keeps_guest_imask() {
        let mut s = VtimerState::default();
        assert_eq!(s.on_guest_eoi(ENABLE | IMASK), ENABLE | IMASK);
    }

    #[test]
    fn second_eoi_does_not_clear_a_later_guest_mask() {
        let mut s = VtimerState::default();
        let ctl = s.on_fire(ENABLE);
        s.on_guest_eoi(ctl);
        // The guest masks its timer afterwards; a spurious second EOI leaves it masked.
        assert_eq!(s.on_guest_eoi(ENABLE | IMASK), ENABLE | IMASK);
    }
}
