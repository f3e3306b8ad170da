//! A guest's trapped Performance Monitors accesses (PMUv3, Arm ARM D13).
//!
//! Guests own the PMU's counters (`MDCR_EL2.HPMN` = all of them) and the registers are
//! switched with the vCPU ([`crate::arch::sysreg`]'s `PmuContext`). What a guest must not
//! do is count the hypervisor's work: `PMEVTYPER<n>_EL0.NSH` and `PMCCFILTR_EL0.NSH` (bit 27)
//! enable counting at EL2, and Linux sets them in a guest (its `armv8pmu_set_event_filter`
//! includes EL2 unless the event says `exclude_hv`). A VM has no EL2, so for it NSH is RES0,
//! as KVM treats it too. Before FEAT_PMUv3p5 nothing else keeps a counter off at EL2
//! (`MDCR_EL2.HPMD`, PMUv3p1, spares the event counters only; `MDCR_EL2.HCCD`, PMUv3p5, the
//! cycle counter), so there the core traps every PMU access (`MDCR_EL2.TPM`) and performs it
//! here for the guest, with NSH forced to 0 in every event-type or filter write. On PMUv3p5
//! `HPMD` and `HCCD` do it in hardware and nothing traps.
//!
//! This module decides what a trapped access does ([`guest_access`]); the exit handler
//! carries it out on the live registers through [`crate::exit::GuestSysRegs`].

use crate::trap;

/// `PMEVTYPER<n>_EL0.NSH` / `PMCCFILTR_EL0.NSH` / `PMXEVTYPER_EL0.NSH` (bit 27): count at EL2.
pub const NSH: u64 = 1 << 27;

/// `PMCR_EL0.N` (bits 15:11): the event counters EL1 sees.
const PMCR_N_SHIFT: u32 = 11;

/// `PMSELR_EL0.SEL` value that selects the cycle counter (`PMXEVTYPER_EL0` is then
/// `PMCCFILTR_EL0`).
pub const SEL_CYCLES: u64 = 31;

/// A PMU register a guest reaches (AArch64 encodings, trapped by `MDCR_EL2.TPM`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(
    missing_docs,
    reason = "variants are named after the Arm ARM registers they stand for"
)]
pub enum PmuReg {
    Pmcr,
    Pmcntenset,
    Pmcntenclr,
    Pmovsclr,
    Pmswinc,
    Pmselr,
    Pmceid0,
    Pmceid1,
    Pmccntr,
    Pmxevtyper,
    Pmxevcntr,
    Pmuserenr,
    Pmintenset,
    Pmintenclr,
    Pmovsset,
    Pmccfiltr,
    /// `PMMIR_EL1` (PMUv3p4; read-only). On a CPU without it the guest's access is
    /// UNDEFINED at EL1 before it could trap.
    Pmmir,
    /// `PMEVCNTR<n>_EL0`, n in 0..=30.
    Pmevcntr(u8),
    /// `PMEVTYPER<n>_EL0`, n in 0..=30.
    Pmevtyper(u8),
}

impl PmuReg {
    /// The PMU register of a trapped `MRS`/`MSR` encoding ([`trap::sysreg`]), if it is one.
    pub const fn decode(enc: u32) -> Option<Self> {
        Some(match enc {
            trap::PMCR_EL0 => Self::Pmcr,
            trap::PMCNTENSET_EL0 => Self::Pmcntenset,
            trap::PMCNTENCLR_EL0 => Self::Pmcntenclr,
            trap::PMOVSCLR_EL0 => Self::Pmovsclr,
            trap::PMSWINC_EL0 => Self::Pmswinc,
            trap::PMSELR_EL0 => Self::Pmselr,
            trap::PMCEID0_EL0 => Self::Pmceid0,
            trap::PMCEID1_EL0 => Self::Pmceid1,
            trap::PMCCNTR_EL0 => Self::Pmccntr,
            trap::PMXEVTYPER_EL0 => Self::Pmxevtyper,
            trap::PMXEVCNTR_EL0 => Self::Pmxevcntr,
            trap::PMUSERENR_EL0 => Self::Pmuserenr,
            trap::PMINTENSET_EL1 => Self::Pmintenset,
            trap::PMINTENCLR_EL1 => Self::Pmintenclr,
            trap::PMOVSSET_EL0 => Self::Pmovsset,
            trap::PMCCFILTR_EL0 => Self::Pmccfiltr,
            trap::PMMIR_EL1 => Self::Pmmir,
            _ => {
                // PMEVCNTR<n>_EL0 / PMEVTYPER<n>_EL0: op0=3, op1=3, CRn=14, CRm=0b10xx /
                // 0b11xx, n = CRm[1:0]:op2 (n = 31 is PMCCFILTR_EL0, matched above).
                let op0_op1_crn = enc & !((0xf << 8) | (0b111 << 5));
                if op0_op1_crn != trap::sysreg(3, 3, 14, 0, 0) {
                    return None;
                }
                let crm = ((enc >> 8) & 0xf) as u8;
                let n = ((crm & 0b11) << 3) | ((enc >> 5) & 0b111) as u8;
                match crm >> 2 {
                    0b10 => Self::Pmevcntr(n),
                    0b11 => Self::Pmevtyper(n),
                    _ => return None,
                }
            }
        })
    }
}

/// What the exit handler does for a trapped PMU access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Read this register and give the guest the value.
    Read(PmuReg),
    /// Write this value (the guest's, NSH cleared where it is an event type or filter).
    Write(PmuReg, u64),
    /// The access is UNDEFINED for the guest (a read of a write-only register, a write of a
    /// read-only one, an event counter it does not have): inject an undefined instruction.
    Undefined,
}

/// What a guest's trapped access of `reg` does (`value`: what it writes), given the event
/// counters it has (`counters`, its `PMCR_EL0.N`).
pub const fn guest_access(reg: PmuReg, is_read: bool, value: u64, counters: u8) -> Access {
    match (reg, is_read) {
        (PmuReg::Pmevcntr(n) | PmuReg::Pmevtyper(n), _) if n >= counters => Access::Undefined,
        (PmuReg::Pmswinc, true) | (PmuReg::Pmceid0 | PmuReg::Pmceid1 | PmuReg::Pmmir, false) => {
            Access::Undefined
        }
        (reg, true) => Access::Read(reg),
        (PmuReg::Pmevtyper(_) | PmuReg::Pmccfiltr | PmuReg::Pmxevtyper, false) => {
            Access::Write(reg, value & !NSH)
        }
        (reg, false) => Access::Write(reg, value),
    }
}

/// Whether `PMXEVTYPER_EL0`/`PMXEVCNTR_EL0` (`reg`) with `PMSELR_EL0.SEL` = `sel` names a
/// register the guest has: an event counter below `counters`, or (for `PMXEVTYPER_EL0`
/// only) 31, `PMCCFILTR_EL0`. Anything else is CONSTRAINED UNPREDICTABLE, and one of the
/// permitted behaviours is UNDEFINED, which at EL2 would be the hypervisor's own exception:
/// the core makes such an access RAZ/WI (another permitted behaviour) instead of doing it.
pub const fn selected_exists(reg: PmuReg, sel: u64, counters: u8) -> bool {
    let sel = sel & 0x1f;
    match reg {
        PmuReg::Pmxevtyper => sel == SEL_CYCLES || sel < counters as u64,
        PmuReg::Pmxevcntr => sel < counters as u64,
        _ => true,
    }
}

/// `PMCR_EL0` as the guest reads it: the hardware value with `N` = `counters` (EL2 reads
/// the CPU's own N, EL1 reads `MDCR_EL2.HPMN`).
pub const fn guest_pmcr(hw: u64, counters: u8) -> u64 {
    (hw & !(0x1f << PMCR_N_SHIFT)) | ((counters as u64 & 0x1f) << PMCR_N_SHIFT)
}

/// The event counters a guest with this `PMCR_EL0` value has.
pub const fn counters(pmcr: u64) -> u8 {
    ((pmcr >> PMCR_N_SHIFT) & 0x1f) as u8
}

/// The event counters a guest's write of `value` to `PMSWINC_EL0` increments (one bit per
/// counter): those below `counters` it names, enabled (`PMCR_EL0.E` in `pmcr`, their bit in
/// `PMCNTENSET_EL0` = `enabled`), counting `SW_INCR` (event 0x00, `types[n]` their
/// `PMEVTYPER<n>_EL0`) and not filtered at the EL that wrote (`P`, bit 31, for EL1; `U`, bit
/// 30, for EL0). The core emulates the write: done at EL2 it would be filtered as EL2's.
pub fn swinc_targets(
    value: u64,
    counters: u8,
    pmcr: u64,
    enabled: u64,
    types: &[u64; 31],
    from_el0: bool,
) -> u32 {
    if pmcr & 1 == 0 {
        return 0;
    }
    let filter = if from_el0 { 1 << 30 } else { 1 << 31 };
    let mut hit = 0;
    for (n, t) in types.iter().enumerate().take(usize::from(counters)) {
        let bit = 1u64 << n;
        if value & enabled & bit != 0 && t & 0xffff == 0 && t & filter == 0 {
            hit |= bit as u32;
        }
    }
    hit
}

/// Whether the core must trap the guest's PMU accesses (`MDCR_EL2.TPM`) on a CPU whose
/// `ID_AA64DFR0_EL1.PMUVer` is `pmu_ver`: PMUv3 before PMUv3p5 (1, 4, 5), where only
/// forcing NSH keeps the cycle counter (and before PMUv3p1 the event counters) off at EL2.
pub const fn must_trap(pmu_ver: u64) -> bool {
    pmu_ver != 0 && pmu_ver != 0xf && pmu_ver < 6
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trap::{pmevcntr_el0, pmevtyper_el0, sysreg};

    #[test]
    fn decodes_every_event_counter_and_type() {
        for n in 0..31u8 {
            assert_eq!(PmuReg::decode(pmevcntr_el0(n)), Some(PmuReg::Pmevcntr(n)));
            assert_eq!(PmuReg::decode(pmevtyper_el0(n)), Some(PmuReg::Pmevtyper(n)));
        }
        // n = 31 of the PMEVTYPER pattern is PMCCFILTR_EL0; of PMEVCNTR, nothing.
        assert_eq!(PmuReg::decode(pmevtyper_el0(31)), Some(PmuReg::Pmccfiltr));
        assert_eq!(PmuReg::decode(trap::PMCCFILTR_EL0), Some(PmuReg::Pmccfiltr));
        assert_eq!(PmuReg::decode(pmevcntr_el0(31)), Some(PmuReg::Pmevcntr(31)));
    }

    #[test]
    fn decodes_the_control_registers_and_nothing_else() {
        assert_eq!(PmuReg::decode(trap::PMCR_EL0), Some(PmuReg::Pmcr));
        assert_eq!(
            PmuReg::decode(trap::PMXEVTYPER_EL0),
            Some(PmuReg::Pmxevtyper)
        );
        assert_eq!(
            PmuReg::decode(trap::PMINTENSET_EL1),
            Some(PmuReg::Pmintenset)
        );
        assert_eq!(PmuReg::decode(trap::PMOVSSET_EL0), Some(PmuReg::Pmovsset));
        assert_eq!(PmuReg::decode(trap::PMSWINC_EL0), Some(PmuReg::Pmswinc));
        // Linux reads PMMIR_EL1 on a PMUv3p4 CPU, where it traps too.
        assert_eq!(PmuReg::decode(trap::PMMIR_EL1), Some(PmuReg::Pmmir));
        assert_eq!(
            guest_access(PmuReg::Pmmir, true, 0, 6),
            Access::Read(PmuReg::Pmmir)
        );
        assert_eq!(guest_access(PmuReg::Pmmir, false, 0, 6), Access::Undefined);
        // CNTP_CTL_EL0 (CRn 14, CRm 2), ICC_SGI1R_EL1, PMMIR_EL1's neighbour (op2 7):
        // not ours.
        assert_eq!(PmuReg::decode(trap::CNTP_CTL_EL0), None);
        assert_eq!(PmuReg::decode(trap::ICC_SGI1R_EL1), None);
        assert_eq!(PmuReg::decode(sysreg(3, 0, 9, 14, 7)), None);
        // CRn 14 with op1 0 (CNTKCTL_EL1-like): not a PMU register.
        assert_eq!(PmuReg::decode(sysreg(3, 0, 14, 8, 0)), None);
    }

    #[test]
    fn event_type_writes_lose_nsh_and_keep_the_rest() {
        // Linux's cycles event: P=0 U=0 NSH=1, event 0x11.
        let linux = NSH | 0x11;
        for reg in [PmuReg::Pmevtyper(3), PmuReg::Pmccfiltr, PmuReg::Pmxevtyper] {
            assert_eq!(
                guest_access(reg, false, linux, 6),
                Access::Write(reg, 0x11),
                "{reg:?}"
            );
            // P, U, NSK, NSU, M and the event number pass.
            let other = (1 << 31) | (1 << 30) | (1 << 29) | (1 << 28) | (1 << 26) | 0x3ff;
            assert_eq!(
                guest_access(reg, false, other, 6),
                Access::Write(reg, other)
            );
        }
        // A counter value with bit 27 set is a count, not a filter: untouched.
        assert_eq!(
            guest_access(PmuReg::Pmevcntr(0), false, NSH, 6),
            Access::Write(PmuReg::Pmevcntr(0), NSH)
        );
        assert_eq!(
            guest_access(PmuReg::Pmccntr, false, u64::MAX, 6),
            Access::Write(PmuReg::Pmccntr, u64::MAX)
        );
    }

    #[test]
    fn missing_counters_and_wrong_directions_are_undefined() {
        assert_eq!(
            guest_access(PmuReg::Pmevcntr(6), true, 0, 6),
            Access::Undefined
        );
        assert_eq!(
            guest_access(PmuReg::Pmevtyper(30), false, 0, 6),
            Access::Undefined
        );
        assert_eq!(
            guest_access(PmuReg::Pmevcntr(5), true, 0, 6),
            Access::Read(PmuReg::Pmevcntr(5))
        );
        assert_eq!(guest_access(PmuReg::Pmswinc, true, 0, 6), Access::Undefined);
        assert_eq!(
            guest_access(PmuReg::Pmswinc, false, 1, 6),
            Access::Write(PmuReg::Pmswinc, 1)
        );
        assert_eq!(
            guest_access(PmuReg::Pmceid0, false, 1, 6),
            Access::Undefined
        );
        assert_eq!(
            guest_access(PmuReg::Pmceid1, true, 0, 6),
            Access::Read(PmuReg::Pmceid1)
        );
    }

    #[test]
    fn selected_registers_beyond_the_counters_do_not_exist() {
        assert!(selected_exists(PmuReg::Pmxevtyper, 5, 6));
        assert!(selected_exists(PmuReg::Pmxevtyper, 31, 6));
        assert!(!selected_exists(PmuReg::Pmxevtyper, 6, 6));
        assert!(selected_exists(PmuReg::Pmxevcntr, 0, 6));
        assert!(!selected_exists(PmuReg::Pmxevcntr, 31, 6));
        assert!(!selected_exists(PmuReg::Pmxevcntr, 30, 6));
        assert!(selected_exists(PmuReg::Pmccntr, 30, 6));
    }

    #[test]
    fn pmcr_shows_the_guest_its_counters() {
        // Cortex-A57: IMP 0x41, IDCODE 0x01, N = 6, E set.
        let hw = 0x4101_3000 | 1;
        assert_eq!(counters(hw), 6);
        assert_eq!(guest_pmcr(hw, 4), 0x4101_2001);
        assert_eq!(counters(guest_pmcr(hw, 4)), 4);
    }

    #[test]
    fn software_increment_counts_only_enabled_sw_incr_counters() {
        let mut types = [0x11u64; 31]; // CPU_CYCLES
        types[0] = 0x00; // SW_INCR, counted at EL0 and EL1
        types[1] = 1 << 31; // SW_INCR (0x00), not at EL1
        types[2] = 1 << 30; // SW_INCR (0x00), not at EL0
        types[3] = 0x00;
        let e = 1;
        // Counters 0..3 written, 0..2 enabled (3 is not), 4 is CPU_CYCLES.
        assert_eq!(swinc_targets(0x1f, 6, e, 0b10111, &types, false), 0b101);
        assert_eq!(swinc_targets(0x1f, 6, e, 0b10111, &types, true), 0b011);
        // PMCR_EL0.E clear: nothing counts.
        assert_eq!(swinc_targets(0x1f, 6, 0, 0b10111, &types, false), 0);
        // Bits past the guest's counters are ignored.
        assert_eq!(swinc_targets(0b1, 0, e, 0b1, &types, false), 0);
    }

    #[test]
    fn traps_from_pmuv3_to_pmuv3p4_only() {
        assert!(!must_trap(0));
        assert!(must_trap(1)); // PMUv3 (Cortex-A53/A57)
        assert!(must_trap(4)); // PMUv3p1 (Neoverse N1)
        assert!(must_trap(5)); // PMUv3p4
        assert!(!must_trap(6)); // PMUv3p5: HPMD + HCCD
        assert!(!must_trap(7));
        assert!(!must_trap(0xf)); // IMPLEMENTATION DEFINED PMU
    }
}
