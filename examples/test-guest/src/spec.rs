//! Register encodings and decoders from the Arm specifications, kept free of hardware access
//! so that they are tested on the build machine.

/// PL011 `UARTPeriphID0..3` low bytes (PL011 TRM DDI 0183G, 3.3.15): part number 0x011,
/// designer 0x41 (Arm), revision in the top nibble of ID2 (r1p5 reads 0x3, QEMU 0x1).
pub const PL011_PERIPH_ID: [u8; 4] = [0x11, 0x10, 0x04, 0x00];
/// PrimeCell `UARTPCellID0..3` low bytes (PL011 TRM 3.3.16).
pub const PRIMECELL_ID: [u8; 4] = [0x0d, 0xf0, 0x05, 0xb1];

/// Whether the identification registers name a PL011 (any revision).
pub fn is_pl011(periph_id: [u32; 4], cell_id: [u32; 4]) -> bool {
    periph_matches(periph_id, PL011_PERIPH_ID) && cell_matches(cell_id)
}

/// PL031 `RTCPeriphID0..3` low bytes (PL031 TRM DDI 0224C, 3.3.10): part number 0x031,
/// designer 0x41 (Arm), revision in the top nibble of ID2 (QEMU reads 0x14).
pub const PL031_PERIPH_ID: [u8; 4] = [0x31, 0x10, 0x04, 0x00];

/// Whether the identification registers name a PL031 (any revision).
pub fn is_pl031(periph_id: [u32; 4], cell_id: [u32; 4]) -> bool {
    periph_matches(periph_id, PL031_PERIPH_ID) && cell_matches(cell_id)
}

/// Compares `UARTPeriphID`-style registers with `want`, ignoring ID2's revision nibble.
fn periph_matches(periph_id: [u32; 4], want: [u8; 4]) -> bool {
    periph_id
        .iter()
        .zip(want)
        .enumerate()
        .all(|(i, (&got, want))| {
            // ID2 bits [7:4] are the revision.
            let mask = if i == 2 { 0x0f } else { 0xff };
            (got & mask) as u8 == want
        })
}

/// Compares `PCellID0..3` with the PrimeCell preamble.
fn cell_matches(cell_id: [u32; 4]) -> bool {
    cell_id
        .iter()
        .zip(PRIMECELL_ID)
        .all(|(&got, want)| (got & 0xff) as u8 == want)
}

/// What a PL031's status registers read (PL031 TRM DDI 0224C, 3.3): `RTCDR`, and bit 0
/// (`RTCINTR`, the match interrupt) of `RTCRIS` and `RTCMIS`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pl031Status {
    /// `RTCDR`, seconds.
    pub dr: u32,
    /// `RTCRIS`: raw match interrupt status.
    pub ris: u32,
    /// `RTCMIS`: `RTCRIS` AND `RTCIMSC`.
    pub mis: u32,
}

/// What the passthrough check saw around one PL031 match interrupt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatchObservation {
    /// `RTCMR` as programmed (`RTCDR` + 1).
    pub mr: u32,
    /// PL031 interrupts the IRQ handler took.
    pub irqs: u32,
    /// The registers as the first of them read them, before writing `RTCICR`.
    pub at_irq: Option<Pl031Status>,
    /// The registers at the end of the wait (`RTCIMSC` still set).
    pub after: Pl031Status,
}

/// How a PL031 match interrupt went wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MatchProblem {
    /// No interrupt, and the RTC never matched.
    #[error("no match interrupt and RTCRIS=0 (RTCDR={dr:#x}, RTCMR={mr:#x}): the RTC is not counting or RTCMR writes do not reach it \
             (under QEMU -icount ...,sleep=off add -rtc clock=vm, or the RTC follows host time)")]
    NeverMatched {
        /// `RTCDR` at the end.
        dr: u32,
        /// `RTCMR` programmed.
        mr: u32,
    },
    /// The RTC raised its interrupt but it never reached the CPU.
    #[error("RTCRIS={ris:#x} RTCMIS={mis:#x} (the RTC raised its match interrupt) but no IRQ arrived: the SPI must be routed to the guest with the INTID of the DTB")]
    NotDelivered {
        /// `RTCRIS` at the end.
        ris: u32,
        /// `RTCMIS` at the end.
        mis: u32,
    },
    /// `RTCMIS` does not follow `RTCRIS` AND `RTCIMSC`.
    #[error(
        "RTCRIS={ris:#x} with RTCIMSC=1 but RTCMIS={mis:#x}: RTCMIS must be RTCRIS AND RTCIMSC"
    )]
    MaskedStatusWrong {
        /// `RTCRIS`.
        ris: u32,
        /// `RTCMIS`.
        mis: u32,
    },
    /// The interrupt came more than once.
    #[error("{irqs} PL031 interrupts for one match: writing RTCICR must lower the (level) line before EOI")]
    Repeated {
        /// Interrupts taken.
        irqs: u32,
    },
    /// The IRQ arrived while the PL031 did not signal a match.
    #[error("the PL031 INTID was taken while RTCRIS={ris:#x} RTCMIS={mis:#x}: an IRQ must only be injected while the device asserts it")]
    NotAMatch {
        /// `RTCRIS` in the handler.
        ris: u32,
        /// `RTCMIS` in the handler.
        mis: u32,
    },
    /// The match fired before the counter reached `RTCMR`.
    #[error("match interrupt with RTCDR={dr:#x} before RTCMR={mr:#x}")]
    Early {
        /// `RTCDR` in the handler.
        dr: u32,
        /// `RTCMR` programmed.
        mr: u32,
    },
    /// Writing `RTCICR` did not clear the interrupt.
    #[error("RTCRIS={ris:#x} RTCMIS={mis:#x} after RTCICR=1: writes to RTCICR must reach the RTC")]
    NotCleared {
        /// `RTCRIS` at the end.
        ris: u32,
        /// `RTCMIS` at the end.
        mis: u32,
    },
}

/// Judges one PL031 match: exactly one interrupt, taken while `RTCRIS` and `RTCMIS` showed
/// the match, no earlier than `RTCMR`, and cleared by `RTCICR`.
pub fn judge_match(seen: &MatchObservation) -> Result<(), MatchProblem> {
    let after = seen.after;
    let Some(at_irq) = seen.at_irq.filter(|_| seen.irqs > 0) else {
        return Err(match (after.ris & 1, after.mis & 1) {
            (0, _) => MatchProblem::NeverMatched {
                dr: after.dr,
                mr: seen.mr,
            },
            (_, 0) => MatchProblem::MaskedStatusWrong {
                ris: after.ris,
                mis: after.mis,
            },
            _ => MatchProblem::NotDelivered {
                ris: after.ris,
                mis: after.mis,
            },
        });
    };
    if seen.irqs > 1 {
        return Err(MatchProblem::Repeated { irqs: seen.irqs });
    }
    if at_irq.ris & 1 == 0 || at_irq.mis & 1 == 0 {
        return Err(MatchProblem::NotAMatch {
            ris: at_irq.ris,
            mis: at_irq.mis,
        });
    }
    // The counter wraps; "at or past MR" is a non-negative wrapping distance.
    if (at_irq.dr.wrapping_sub(seen.mr) as i32) < 0 {
        return Err(MatchProblem::Early {
            dr: at_irq.dr,
            mr: seen.mr,
        });
    }
    if after.ris & 1 != 0 || after.mis & 1 != 0 {
        return Err(MatchProblem::NotCleared {
            ris: after.ris,
            mis: after.mis,
        });
    }
    Ok(())
}

/// `GICD_IROUTER<n>` routing an SPI to the single CPU `mpidr` (GICv3 IHI 0069H, 12.9.22):
/// Aff3 in 39:32, Aff2..Aff0 in 23:0, `Interrupt_Routing_Mode` (bit 31) 0.
pub fn gicd_irouter(mpidr: u64) -> u64 {
    mpidr & 0xff_00ff_ffff
}

/// `word` with byte `index` (0..3, little-endian) replaced by `byte`: the byte-per-interrupt
/// registers (`GICD_IPRIORITYR`, `GICD_ITARGETSR`) written as whole words.
pub fn with_byte(word: u32, index: u32, byte: u8) -> u32 {
    let shift = 8 * (index % 4);
    (word & !(0xff << shift)) | u32::from(byte) << shift
}

/// `GICD_ICFGR<n>` word `word` with INTID `intid`'s field set to edge (`0b10`) or level
/// (`0b00`); 16 interrupts per register (GICv3 IHI 0069H 12.9.9, GICv2 IHI 0048B 4.3.13).
pub fn gicd_icfgr(word: u32, intid: u32, edge: bool) -> u32 {
    let bit = 1 << (2 * (intid % 16) + 1);
    if edge {
        word | bit
    } else {
        word & !bit
    }
}

/// `ESR_ELx.EC` of a data abort taken without a change in exception level (Arm ARM D17.2.37).
pub const EC_DATA_ABORT_SAME_EL: u64 = 0x25;

/// `ESR_ELx.EC`, the exception class.
pub fn esr_ec(esr: u64) -> u64 {
    (esr >> 26) & 0x3f
}

/// `ESR_ELx.ISS.FnV` for data aborts: set when `FAR_ELx` is not valid.
pub fn esr_far_not_valid(esr: u64) -> bool {
    esr & (1 << 10) != 0
}

/// The GICv3 affinity value `Aff3.Aff2.Aff1.Aff0` (as in `GICR_TYPER[63:32]`) of an MPIDR.
pub fn gic_affinity(mpidr: u64) -> u32 {
    (((mpidr >> 32) & 0xff) << 24 | (mpidr & 0xff_ffff)) as u32
}

/// The `ICC_SGI1R_EL1` value that sends SGI `intid` to the single CPU `mpidr`
/// (GICv3 spec IHI 0069H, 12.2.23: TargetList is a bitmap of Aff0 % 16, RS = Aff0 / 16).
pub fn icc_sgi1r(intid: u8, mpidr: u64) -> u64 {
    let aff0 = mpidr & 0xff;
    let aff1 = (mpidr >> 8) & 0xff;
    let aff2 = (mpidr >> 16) & 0xff;
    let aff3 = (mpidr >> 32) & 0xff;
    aff3 << 48
        | (aff0 / 16) << 44
        | aff2 << 32
        | u64::from(intid & 0xf) << 24
        | aff1 << 16
        | 1 << (aff0 % 16)
}

/// The `GICD_SGIR` value that sends SGI `intid` to the CPU interfaces in `targets`
/// (GICv2 spec IHI 0048B, 4.3.15: TargetListFilter 0 = use CPUTargetList).
pub fn gicd_sgir(intid: u8, targets: u8) -> u32 {
    u32::from(targets) << 16 | u32::from(intid & 0xf)
}

/// Median of `samples` (the upper one of the middle two for an even count); sorts in place.
pub fn median(samples: &mut [u64]) -> Option<u64> {
    samples.sort_unstable();
    samples.get(samples.len() / 2).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_pl011_ids_are_recognised() {
        assert!(is_pl011([0x11, 0x10, 0x14, 0x00], [0x0d, 0xf0, 0x05, 0xb1]));
    }

    #[test]
    fn pl011_revision_nibble_is_ignored() {
        assert!(is_pl011([0x11, 0x10, 0x34, 0x00], [0x0d, 0xf0, 0x05, 0xb1]));
    }

    #[test]
    fn a_different_part_number_is_not_a_pl011() {
        assert!(!is_pl011(
            [0x12, 0x10, 0x14, 0x00],
            [0x0d, 0xf0, 0x05, 0xb1]
        ));
    }

    #[test]
    fn reads_as_zero_are_not_a_pl011() {
        assert!(!is_pl011([0; 4], [0; 4]));
    }

    const CELL: [u32; 4] = [0x0d, 0xf0, 0x05, 0xb1];

    #[test]
    fn qemu_pl031_ids_are_recognised() {
        assert!(is_pl031([0x31, 0x10, 0x14, 0x00], CELL));
    }

    #[test]
    fn a_pl011_is_not_a_pl031() {
        assert!(!is_pl031([0x11, 0x10, 0x14, 0x00], CELL));
    }

    #[test]
    fn a_pl031_without_the_primecell_preamble_is_not_recognised() {
        assert!(!is_pl031([0x31, 0x10, 0x14, 0x00], [0; 4]));
    }

    const MR: u32 = 0x6900_0001;
    const MATCHED: Pl031Status = Pl031Status {
        dr: MR,
        ris: 1,
        mis: 1,
    };
    const CLEAR: Pl031Status = Pl031Status {
        dr: MR,
        ris: 0,
        mis: 0,
    };

    fn seen(irqs: u32, at_irq: Option<Pl031Status>, after: Pl031Status) -> MatchObservation {
        MatchObservation {
            mr: MR,
            irqs,
            at_irq,
            after,
        }
    }

    #[test]
    fn one_cleared_match_interrupt_passes() {
        assert_eq!(judge_match(&seen(1, Some(MATCHED), CLEAR)), Ok(()));
    }

    #[test]
    fn a_match_taken_a_second_late_passes() {
        let late = Pl031Status {
            dr: MR + 1,
            ..MATCHED
        };
        assert_eq!(judge_match(&seen(1, Some(late), CLEAR)), Ok(()));
    }

    #[test]
    fn a_match_across_the_counter_wrap_passes() {
        let s = MatchObservation {
            mr: 0,
            irqs: 1,
            at_irq: Some(Pl031Status { dr: 0, ..MATCHED }),
            after: CLEAR,
        };
        assert_eq!(judge_match(&s), Ok(()));
    }

    #[test]
    fn no_interrupt_and_no_match_means_the_rtc_never_matched() {
        let before = Pl031Status {
            dr: MR - 1,
            ..CLEAR
        };
        assert_eq!(
            judge_match(&seen(0, None, before)),
            Err(MatchProblem::NeverMatched { dr: MR - 1, mr: MR })
        );
    }

    #[test]
    fn a_raised_but_undelivered_match_is_a_routing_problem() {
        assert_eq!(
            judge_match(&seen(0, None, MATCHED)),
            Err(MatchProblem::NotDelivered { ris: 1, mis: 1 })
        );
    }

    #[test]
    fn raw_status_without_masked_status_is_inconsistent() {
        let s = Pl031Status { mis: 0, ..MATCHED };
        assert_eq!(
            judge_match(&seen(0, None, s)),
            Err(MatchProblem::MaskedStatusWrong { ris: 1, mis: 0 })
        );
    }

    #[test]
    fn two_interrupts_for_one_match_fail() {
        assert_eq!(
            judge_match(&seen(2, Some(MATCHED), CLEAR)),
            Err(MatchProblem::Repeated { irqs: 2 })
        );
    }

    #[test]
    fn an_interrupt_without_the_match_status_fails() {
        let s = Pl031Status { mis: 0, ..MATCHED };
        assert_eq!(
            judge_match(&seen(1, Some(s), CLEAR)),
            Err(MatchProblem::NotAMatch { ris: 1, mis: 0 })
        );
    }

    #[test]
    fn an_interrupt_before_the_match_time_fails() {
        let s = Pl031Status {
            dr: MR - 1,
            ..MATCHED
        };
        assert_eq!(
            judge_match(&seen(1, Some(s), CLEAR)),
            Err(MatchProblem::Early { dr: MR - 1, mr: MR })
        );
    }

    #[test]
    fn status_left_set_after_the_clear_fails() {
        assert_eq!(
            judge_match(&seen(1, Some(MATCHED), MATCHED)),
            Err(MatchProblem::NotCleared { ris: 1, mis: 1 })
        );
    }

    #[test]
    fn irouter_routes_to_the_affinity_without_irm() {
        assert_eq!(gicd_irouter(0x0000_00ab_8012_3456), 0xab_0012_3456);
        assert_eq!(gicd_irouter(1), 1);
    }

    #[test]
    fn with_byte_replaces_only_its_lane() {
        assert_eq!(with_byte(0xa0a0_a0a0, 2, 0x01), 0xa001_a0a0);
        assert_eq!(with_byte(0, 34, 0xa0), 0x00a0_0000);
    }

    #[test]
    fn icfgr_sets_and_clears_the_edge_bit() {
        // INTID 34 is field 2 of ICFGR2: bits 5:4, edge is bit 5.
        assert_eq!(gicd_icfgr(0, 34, true), 1 << 5);
        assert_eq!(gicd_icfgr(0xffff_ffff, 34, false), !(1 << 5));
    }

    #[test]
    fn data_abort_class_is_decoded() {
        // DFSC 0x10 (synchronous external abort), IL set.
        assert_eq!(esr_ec(0x9600_0010), EC_DATA_ABORT_SAME_EL);
        assert!(!esr_far_not_valid(0x9600_0010));
        assert!(esr_far_not_valid(0x9600_0410));
    }

    #[test]
    fn gic_affinity_packs_aff3_above_aff2() {
        assert_eq!(gic_affinity(0x0000_00ab_0012_3456), 0xab12_3456);
    }

    #[test]
    fn sgi1r_targets_one_cpu() {
        assert_eq!(icc_sgi1r(1, 0x1), 1 << 24 | 0b10);
        assert_eq!(
            icc_sgi1r(2, 0x0102_0304 & 0xff_ffff),
            2 << 24 | 0x02 << 32 | 0x03 << 16 | 1 << 4
        );
        assert_eq!(icc_sgi1r(0, 0x11), 1 << 44 | 1 << 1);
    }

    #[test]
    fn sgir_uses_the_target_list() {
        assert_eq!(gicd_sgir(1, 0b10), 0x0002_0001);
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&mut [5, 1, 3]), Some(3));
        assert_eq!(median(&mut [4, 1, 3, 2]), Some(3));
        assert_eq!(median(&mut []), None);
    }
}
