//! Emulated GICv3 redistributor frames (`GICR_*`), IHI 0069: per vCPU 128 KiB,
//! `RD_base` then `SGI_base` at +64 KiB, laid out back to back from
//! [`crate::vm::layout::GICR_BASE`]. `GICR_TYPER.Last` marks the final vCPU's frame, which
//! is how Linux (`irq-gic-v3.c`, `gic_iterate_rdists`) knows where to stop.
//!
//! No LPIs: `GICR_CTLR`, `PROPBASER`, `PENDBASER` and friends are RAZ/WI.

use super::dist::{BitReg, GICD_ICFGR, GICD_IGROUPR, GICD_IPRIORITYR, IIDR, PIDR2_GICV3};
use super::VGic;
use crate::types::VcpuId;

/// `GICR_CTLR` (RD_base).
pub const GICR_CTLR: u64 = 0x0000;
/// `GICR_IIDR` (RD_base).
pub const GICR_IIDR: u64 = 0x0004;
/// `GICR_TYPER` (RD_base, 64-bit).
pub const GICR_TYPER: u64 = 0x0008;
/// `GICR_STATUSR` (RD_base).
pub const GICR_STATUSR: u64 = 0x0010;
/// `GICR_WAKER` (RD_base).
pub const GICR_WAKER: u64 = 0x0014;
/// `GICR_PIDR2` (RD_base).
pub const GICR_PIDR2: u64 = 0xFFE8;
/// Offset of the `SGI_base` frame within a vCPU's redistributor.
pub const SGI_BASE: u64 = 0x1_0000;
/// `GICR_IGRPMODR0` (SGI_base): RAZ/WI when `GICD_CTLR.DS` = 1.
pub const GICR_IGRPMODR0: u64 = 0x0D00;
/// Bytes of redistributor space per vCPU.
pub const GICR_FRAME_SIZE: u64 = 0x2_0000;

/// `GICR_TYPER.Last`.
pub const TYPER_LAST: u64 = 1 << 4;
/// `GICR_WAKER.ProcessorSleep`.
pub const WAKER_PROCESSOR_SLEEP: u32 = 1 << 1;
/// `GICR_WAKER.ChildrenAsleep`.
pub const WAKER_CHILDREN_ASLEEP: u32 = 1 << 2;

impl VGic {
    /// `GICR_TYPER` of `vcpu`: Affinity_Value 63:32 = its MPIDR affinity (Aff0 = id),
    /// Processor_Number 23:8 = id, Last (bit 4) on the final vCPU; no LPIs.
    pub fn gicr_typer(&self, vcpu: VcpuId) -> u64 {
        let id = vcpu.0 as u64;
        let last = if vcpu.0 + 1 == self.vcpu_count() {
            TYPER_LAST
        } else {
            0
        };
        (id << 32) | ((id & 0xFFFF) << 8) | last
    }

    fn gicr_waker(&self, vcpu: VcpuId) -> u32 {
        // The virtual redistributor's "children" follow ProcessorSleep at once.
        match self.vcpus.get(vcpu.0) {
            Some(v) if !v.processor_sleep => 0,
            _ => WAKER_PROCESSOR_SLEEP | WAKER_CHILDREN_ASLEEP,
        }
    }

    /// Splits an offset in the redistributor window into vCPU and offset in its frame.
    fn gicr_locate(&self, offset: u64) -> Option<(VcpuId, u64)> {
        let vcpu = usize::try_from(offset / GICR_FRAME_SIZE).ok()?;
        (vcpu < self.vcpu_count()).then_some((VcpuId(vcpu), offset % GICR_FRAME_SIZE))
    }

    /// Reads `size` bytes at `offset` in the whole redistributor window (offset 0 is vCPU
    /// 0's `RD_base`). Offsets past the last vCPU read as zero.
    pub fn gicr_read(&self, offset: u64, size: usize) -> u64 {
        let Some((vcpu, off)) = self.gicr_locate(offset) else {
            return 0;
        };
        if off >= SGI_BASE {
            return self.gicr_sgi_read(vcpu, off - SGI_BASE, size);
        }
        match (off, size) {
            (GICR_TYPER, 8) => self.gicr_typer(vcpu),
            (GICR_TYPER, 4) => self.gicr_typer(vcpu) & 0xFFFF_FFFF,
            (0x000C, 4) => self.gicr_typer(vcpu) >> 32,
            (GICR_IIDR, 4) => IIDR.into(),
            (GICR_WAKER, 4) => self.gicr_waker(vcpu).into(),
            (GICR_PIDR2, 4) => PIDR2_GICV3.into(),
            _ => 0,
        }
    }

    /// Writes `size` bytes at `offset` in the whole redistributor window.
    pub fn gicr_write(&mut self, offset: u64, size: usize, value: u64) {
        let Some((vcpu, off)) = self.gicr_locate(offset) else {
            return;
        };
        if off >= SGI_BASE {
            return self.gicr_sgi_write(vcpu, off - SGI_BASE, size, value);
        }
        if (off, size) == (GICR_WAKER, 4) {
            self.vcpus[vcpu.0].processor_sleep = value as u32 & WAKER_PROCESSOR_SLEEP != 0;
        }
    }

    fn gicr_sgi_read(&self, vcpu: VcpuId, off: u64, size: usize) -> u64 {
        match (off, size) {
            (GICD_IPRIORITYR..0x0420, 1 | 4) if size == 1 || off.is_multiple_of(4) => {
                self.read_priority((off - GICD_IPRIORITYR) as u32, vcpu, size)
            }
            (GICD_ICFGR | 0x0C04, 4) => self.read_icfgr(((off - GICD_ICFGR) / 4) as u32, vcpu),
            (GICD_IGROUPR..0x0400, 4) => match BitReg::decode(off) {
                Some((reg, 0)) => self.read_bitreg(reg, 0, vcpu),
                _ => 0,
            },
            _ => 0,
        }
    }

    fn gicr_sgi_write(&mut self, vcpu: VcpuId, off: u64, size: usize, value: u64) {
        match (off, size) {
            (GICD_IPRIORITYR..0x0420, 1 | 4) if size == 1 || off.is_multiple_of(4) => {
                self.write_priority((off - GICD_IPRIORITYR) as u32, vcpu, size, value)
            }
            (GICD_ICFGR | 0x0C04, 4) => {
                self.write_icfgr(((off - GICD_ICFGR) / 4) as u32, vcpu, value)
            }
            (GICD_IGROUPR..0x0400, 4) => {
                if let Some((reg, 0)) = BitReg::decode(off) {
                    self.write_bitreg(reg, 0, vcpu, value & u64::from(u32::MAX));
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::Trigger;
    use crate::types::IntId;
    use crate::vgic::dist::{GICD_ISENABLER, GICD_ISPENDR};

    const VGIC_SPIS: u32 = 128;

    fn gic(vcpus: usize) -> VGic {
        VGic::new(vcpus, VGIC_SPIS).unwrap()
    }

    const SGI: u64 = SGI_BASE;

    #[test]
    fn typer_carries_affinity_processor_number_and_last_on_final_vcpu() {
        let g = gic(3);
        assert_eq!(g.gicr_read(GICR_TYPER, 8), 0);
        let t1 = g.gicr_read(GICR_FRAME_SIZE + GICR_TYPER, 8);
        assert_eq!(t1 >> 32, 1, "Aff0 = 1");
        assert_eq!((t1 >> 8) & 0xFFFF, 1, "Processor_Number");
        assert_eq!(t1 & TYPER_LAST, 0);
        let t2 = g.gicr_read(2 * GICR_FRAME_SIZE + GICR_TYPER, 8);
        assert_eq!(t2 & TYPER_LAST, TYPER_LAST);
        assert_eq!(t2 & 1, 0, "PLPIS");
    }

    #[test]
    fn typer_can_be_read_as_two_words() {
        let g = gic(2);
        let base = GICR_FRAME_SIZE;
        let lo = g.gicr_read(base + GICR_TYPER, 4);
        let hi = g.gicr_read(base + GICR_TYPER + 4, 4);
        assert_eq!((hi << 32) | lo, g.gicr_read(base + GICR_TYPER, 8));
    }

    #[test]
    fn walking_frames_like_linux_stops_at_the_last_vcpu() {
        let g = gic(4);
        let mut frames = 0;
        let mut off = 0;
        loop {
            assert_eq!((g.gicr_read(off + GICR_PIDR2, 4) >> 4) & 0xF, 3);
            frames += 1;
            if g.gicr_read(off + GICR_TYPER, 8) & TYPER_LAST != 0 {
                break;
            }
            off += GICR_FRAME_SIZE;
        }
        assert_eq!(frames, 4);
        assert_eq!(g.gicr_read(off + GICR_FRAME_SIZE + GICR_PIDR2, 4), 0);
    }

    #[test]
    fn waker_clearing_processor_sleep_clears_children_asleep() {
        let mut g = gic(1);
        assert_eq!(
            g.gicr_read(GICR_WAKER, 4),
            u64::from(WAKER_PROCESSOR_SLEEP | WAKER_CHILDREN_ASLEEP)
        );
        g.gicr_write(GICR_WAKER, 4, 0);
        assert_eq!(g.gicr_read(GICR_WAKER, 4), 0);
        g.gicr_write(GICR_WAKER, 4, u64::from(WAKER_PROCESSOR_SLEEP));
        assert_eq!(
            g.gicr_read(GICR_WAKER, 4),
            u64::from(WAKER_PROCESSOR_SLEEP | WAKER_CHILDREN_ASLEEP)
        );
    }

    #[test]
    fn iidr_and_ctlr_and_statusr() {
        let mut g = gic(1);
        assert_eq!(g.gicr_read(GICR_IIDR, 4), u64::from(IIDR));
        g.gicr_write(GICR_CTLR, 4, 1);
        assert_eq!(g.gicr_read(GICR_CTLR, 4), 0, "EnableLPIs is RAZ/WI");
        assert_eq!(g.gicr_read(GICR_STATUSR, 4), 0);
    }

    #[test]
    fn sgi_base_enables_only_its_own_vcpus_private_interrupts() {
        let mut g = gic(2);
        g.gicr_write(GICR_FRAME_SIZE + SGI + GICD_ISENABLER, 4, 1 << 27);
        assert!(g.irq(IntId(27), VcpuId(1)).unwrap().enabled);
        assert!(!g.irq(IntId(27), VcpuId(0)).unwrap().enabled);
        assert_eq!(
            g.gicr_read(GICR_FRAME_SIZE + SGI + GICD_ISENABLER, 4),
            1 << 27
        );
        assert_eq!(g.gicr_read(SGI + GICD_ISENABLER, 4), 0);
    }

    #[test]
    fn sgi_base_pending_priority_and_group() {
        let mut g = gic(1);
        g.gicr_write(SGI + GICD_ISPENDR, 4, 1 << 3);
        assert!(g.irq(IntId(3), VcpuId(0)).unwrap().pending());
        g.gicr_write(SGI + GICD_IPRIORITYR + 27, 1, 0x90);
        assert_eq!(g.gicr_read(SGI + GICD_IPRIORITYR + 24, 4), 0x90 << 24);
        g.gicr_write(SGI + GICD_IGROUPR, 4, 0);
        assert_eq!(g.gicr_read(SGI + GICD_IGROUPR, 4), 0);
    }

    #[test]
    fn icfgr0_is_read_only_edge_and_icfgr1_configures_ppis() {
        let mut g = gic(1);
        assert_eq!(g.gicr_read(SGI + GICD_ICFGR, 4), 0xAAAA_AAAA);
        g.gicr_write(SGI + GICD_ICFGR, 4, 0);
        assert_eq!(g.gicr_read(SGI + GICD_ICFGR, 4), 0xAAAA_AAAA);
        assert_eq!(g.gicr_read(SGI + 0x0C04, 4), 0, "PPIs reset level");
        g.gicr_write(SGI + 0x0C04, 4, 0b10 << 22); // INTID 27
        assert_eq!(g.irq(IntId(27), VcpuId(0)).unwrap().trigger, Trigger::Edge);
    }

    #[test]
    fn igrpmodr0_is_raz_wi() {
        let mut g = gic(1);
        g.gicr_write(SGI + GICR_IGRPMODR0, 4, u64::MAX);
        assert_eq!(g.gicr_read(SGI + GICR_IGRPMODR0, 4), 0);
    }

    #[test]
    fn every_offset_is_handled_without_panic() {
        let mut g = gic(2);
        for off in (0..3 * GICR_FRAME_SIZE).step_by(2) {
            for size in [1, 2, 4, 8] {
                let _ = g.gicr_read(off, size);
                g.gicr_write(off, size, u64::MAX);
            }
        }
        let _ = g.gicr_read(u64::MAX, 4);
        g.gicr_write(u64::MAX - 3, 4, 0);
    }
}
