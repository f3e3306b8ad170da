//! GICv3 register blocks: arm-gic's `Gicd`, `Gicr` and `Sgi` structs, re-exported, with the
//! offsets this driver relies on pinned to the GICv3/v4 Architecture Specification
//! (Arm IHI 0069, chapter 12 "Programmers' model": the register maps of the Distributor,
//! of the redistributor RD_base frame and of its SGI_base frame).

pub use arm_gic::gicv3::registers::{Gicd, Gicr, GicrSgi, GicrTyper, Sgi};

/// Size of one redistributor's RD_base + SGI_base frames (2 x 64 KiB).
pub const GICR_FRAMES_SIZE: usize = 0x2_0000;

/// Bytes between consecutive redistributors when GICR_TYPER.VLPIS is set (GICv4: RD_base,
/// SGI_base, VLPI_base and a reserved frame).
pub const GICR_V4_STRIDE: usize = 0x4_0000;

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn distributor_offsets_match_ihi0069() {
        assert_eq!(offset_of!(Gicd, ctlr), 0x0000);
        assert_eq!(offset_of!(Gicd, typer), 0x0004);
        assert_eq!(offset_of!(Gicd, igroupr), 0x0080);
        assert_eq!(offset_of!(Gicd, isenabler), 0x0100);
        assert_eq!(offset_of!(Gicd, icenabler), 0x0180);
        assert_eq!(offset_of!(Gicd, ipriorityr), 0x0400);
        assert_eq!(offset_of!(Gicd, icfgr), 0x0c00);
        assert_eq!(offset_of!(Gicd, igrpmodr), 0x0d00);
        assert_eq!(offset_of!(Gicd, irouter), 0x6100);
        assert_eq!(offset_of!(Gicd, pidr2), 0xffe8);
    }

    #[test]
    fn rd_base_offsets_match_ihi0069() {
        assert_eq!(offset_of!(Gicr, ctlr), 0x0000);
        assert_eq!(offset_of!(Gicr, typer), 0x0008);
        assert_eq!(offset_of!(Gicr, waker), 0x0014);
        assert_eq!(offset_of!(Gicr, pidr2), 0xffe8);
    }

    #[test]
    fn sgi_base_offsets_match_ihi0069() {
        assert_eq!(offset_of!(GicrSgi, sgi), 0x1_0000);
        assert_eq!(offset_of!(Sgi, igroupr), 0x0080);
        assert_eq!(offset_of!(Sgi, isenabler), 0x0100);
        assert_eq!(offset_of!(Sgi, icenabler), 0x0180);
        assert_eq!(offset_of!(Sgi, ipriorityr), 0x0400);
        assert_eq!(offset_of!(Sgi, icfgr), 0x0c00);
    }

    #[test]
    fn one_redistributor_is_two_64k_frames() {
        assert_eq!(size_of::<GicrSgi>(), GICR_FRAMES_SIZE);
    }
}
