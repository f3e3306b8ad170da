//! Register encodings and decoders from the Arm specifications, kept free of hardware access
//! so that they are tested on the build machine.

/// PL011 `UARTPeriphID0..3` low bytes (PL011 TRM DDI 0183G, 3.3.13): part number 0x011,
/// designer 0x41 (Arm), revision in the top nibble of ID2 (r1p5 reads 0x3, QEMU 0x1).
pub const PL011_PERIPH_ID: [u8; 4] = [0x11, 0x10, 0x04, 0x00];
/// PrimeCell `UARTPCellID0..3` low bytes (PL011 TRM 3.3.14).
pub const PRIMECELL_ID: [u8; 4] = [0x0d, 0xf0, 0x05, 0xb1];

/// Whether the identification registers name a PL011 (any revision).
pub fn is_pl011(periph_id: [u32; 4], cell_id: [u32; 4]) -> bool {
    let periph_ok = periph_id
        .iter()
        .zip(PL011_PERIPH_ID)
        .enumerate()
        .all(|(i, (&got, want))| {
            // ID2 bits [7:4] are the revision.
            let mask = if i == 2 { 0x0f } else { 0xff };
            (got & mask) as u8 == want
        });
    let cell_ok = cell_id
        .iter()
        .zip(PRIMECELL_ID)
        .all(|(&got, want)| (got & 0xff) as u8 == want);
    periph_ok && cell_ok
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
