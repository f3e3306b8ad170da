//! Emulated GICv3 distributor frame (`GICD_*`, 64 KiB), per the register descriptions of IHI 0069.
//!
//! Single Security state view (`GICD_CTLR.DS` = 1) with affinity routing forced on
//! (`ARE` RAO/WI): the registers for INTIDs 0-31 are RAZ/WI here and live in the
//! redistributors. Unknown offsets, unsupported access sizes and unimplemented INTIDs are
//! RAZ/WI; nothing here can panic on a guest access.

use super::irq::PRIORITY_MASK;
use super::{IrqState, VGic, PRIVATE_IRQS};
use crate::platform::Trigger;
use crate::types::{IntId, VcpuId};

/// `GICD_CTLR`.
pub const GICD_CTLR: u64 = 0x0000;
/// `GICD_TYPER`.
pub const GICD_TYPER: u64 = 0x0004;
/// `GICD_IIDR`.
pub const GICD_IIDR: u64 = 0x0008;
/// `GICD_TYPER2`.
pub const GICD_TYPER2: u64 = 0x000C;
/// `GICD_SETSPI_NSR`: a write of an SPI's INTID makes it pending (message-based SPIs).
pub const GICD_SETSPI_NSR: u64 = 0x0040;
/// `GICD_CLRSPI_NSR`: a write of an SPI's INTID clears its pending state.
pub const GICD_CLRSPI_NSR: u64 = 0x0048;
/// `GICD_IGROUPR<n>`.
pub const GICD_IGROUPR: u64 = 0x0080;
/// `GICD_ISENABLER<n>`.
pub const GICD_ISENABLER: u64 = 0x0100;
/// `GICD_ICENABLER<n>`.
pub const GICD_ICENABLER: u64 = 0x0180;
/// `GICD_ISPENDR<n>`.
pub const GICD_ISPENDR: u64 = 0x0200;
/// `GICD_ICPENDR<n>`.
pub const GICD_ICPENDR: u64 = 0x0280;
/// `GICD_ISACTIVER<n>`.
pub const GICD_ISACTIVER: u64 = 0x0300;
/// `GICD_ICACTIVER<n>`.
pub const GICD_ICACTIVER: u64 = 0x0380;
/// `GICD_IPRIORITYR<n>` (byte-accessible).
pub const GICD_IPRIORITYR: u64 = 0x0400;
/// `GICD_ICFGR<n>`.
pub const GICD_ICFGR: u64 = 0x0C00;
/// `GICD_IGRPMODR<n>`: RAZ/WI when `DS` = 1 (IHI 0069, `GICD_IGRPMODR<n>`).
pub const GICD_IGRPMODR: u64 = 0x0D00;
/// `GICD_IROUTER<n>` (64-bit, n = INTID 32..1019).
pub const GICD_IROUTER: u64 = 0x6000;
/// `GICD_PIDR2`.
pub const GICD_PIDR2: u64 = 0xFFE8;
/// Size of the frame.
pub const GICD_FRAME_SIZE: u64 = 0x1_0000;

/// `GICD_CTLR.EnableGrp0`.
pub const CTLR_ENABLE_GRP0: u32 = 1 << 0;
/// `GICD_CTLR.EnableGrp1` (Linux: `GICD_CTLR_ENABLE_G1A`).
pub const CTLR_ENABLE_GRP1: u32 = 1 << 1;
/// `GICD_CTLR.ARE` (RAO/WI).
pub const CTLR_ARE: u32 = 1 << 4;
/// `GICD_CTLR.DS` (RAO/WI).
pub const CTLR_DS: u32 = 1 << 6;

/// `GICD_IIDR`/`GICR_IIDR`: Implementer = Arm (JEP106 0x43B), product/revision 0.
pub const IIDR: u32 = 0x0000_043B;
/// `GICD_PIDR2`/`GICR_PIDR2`: ArchRev = 3 (GICv3), JEDEC, Arm JEP106 bits.
pub const PIDR2_GICV3: u32 = 0x3B;

const TYPER_IDBITS_10: u32 = 9 << 19;
const TYPER_NO1N: u32 = 1 << 25;
/// `GICD_TYPER.MBIS`: message-based SPIs (`GICD_SETSPI_NSR`/`GICD_CLRSPI_NSR`) supported.
pub const TYPER_MBIS: u32 = 1 << 16;

/// IROUTER bits that hold an affinity (Aff3 39:32, Aff2..0 23:0); IRM is RES0 as
/// `GICD_TYPER.No1N` = 1.
const IROUTER_AFF_MASK: u64 = 0xFF_00FF_FFFF;

/// Which bit-per-interrupt register an offset names.
#[derive(Clone, Copy)]
pub(crate) enum BitReg {
    Group,
    SetEnable,
    ClearEnable,
    SetPending,
    ClearPending,
    SetActive,
    ClearActive,
}

impl BitReg {
    /// Decodes the offset of a bit register block relative to `GICD_IGROUPR`'s block
    /// layout (shared by GICD and GICR `SGI_base`). Returns the register and index n.
    pub(crate) fn decode(offset: u64) -> Option<(Self, u32)> {
        let reg = match offset & !0x7F {
            GICD_IGROUPR => Self::Group,
            GICD_ISENABLER => Self::SetEnable,
            GICD_ICENABLER => Self::ClearEnable,
            GICD_ISPENDR => Self::SetPending,
            GICD_ICPENDR => Self::ClearPending,
            GICD_ISACTIVER => Self::SetActive,
            GICD_ICACTIVER => Self::ClearActive,
            _ => return None,
        };
        Some((reg, ((offset & 0x7F) / 4) as u32))
    }

    fn get(self, irq: &IrqState) -> bool {
        match self {
            Self::Group => irq.group1,
            Self::SetEnable | Self::ClearEnable => irq.enabled,
            Self::SetPending | Self::ClearPending => irq.pending(),
            Self::SetActive | Self::ClearActive => irq.active,
        }
    }

    /// Applies one bit of a write; `bit` is the written value of that bit.
    fn apply(self, irq: &mut IrqState, bit: bool) {
        match (self, bit) {
            (Self::Group, b) => irq.group1 = b,
            (Self::SetEnable, true) => irq.enabled = true,
            (Self::ClearEnable, true) => irq.enabled = false,
            (Self::SetPending, true) => irq.pending_latch = true,
            // A level source's line stays asserted; only the latch is cleared.
            (Self::ClearPending, true) => irq.pending_latch = false,
            (Self::SetActive, true) => irq.active = true,
            (Self::ClearActive, true) => irq.active = false,
            _ => {}
        }
    }
}

impl VGic {
    /// Reads 32 bits of a bit-per-interrupt register for INTIDs `base..base + 32`.
    pub(crate) fn read_bitreg(&self, reg: BitReg, base: u32, vcpu: VcpuId) -> u64 {
        (0..32)
            .filter(|i| {
                self.irq(IntId(base + i), vcpu)
                    .map(|irq| reg.get(irq))
                    .unwrap_or(false)
            })
            .fold(0, |acc, i| acc | (1 << i))
    }

    /// Writes 32 bits of a bit-per-interrupt register for INTIDs `base..base + 32`.
    pub(crate) fn write_bitreg(&mut self, reg: BitReg, base: u32, vcpu: VcpuId, value: u64) {
        for i in 0..32 {
            let intid = IntId(base + i);
            if let Ok(irq) = self.irq_mut(intid, vcpu) {
                reg.apply(irq, value & (1 << i) != 0);
                self.note_change(intid, vcpu);
            }
        }
    }

    /// Reads `size` (1 or 4) bytes of priorities starting at INTID `first`.
    pub(crate) fn read_priority(&self, first: u32, vcpu: VcpuId, size: usize) -> u64 {
        (0..size as u32).fold(0, |acc, i| {
            let p = self
                .irq(IntId(first + i), vcpu)
                .map(|irq| irq.priority)
                .unwrap_or(0);
            acc | (u64::from(p) << (8 * i))
        })
    }

    /// Writes `size` (1 or 4) bytes of priorities starting at INTID `first`.
    pub(crate) fn write_priority(&mut self, first: u32, vcpu: VcpuId, size: usize, value: u64) {
        for i in 0..size as u32 {
            if let Ok(irq) = self.irq_mut(IntId(first + i), vcpu) {
                irq.priority = (value >> (8 * i)) as u8 & PRIORITY_MASK;
            }
        }
    }

    /// Reads `ICFGR<n>` (16 interrupts, bit 2k+1 set = edge).
    pub(crate) fn read_icfgr(&self, n: u32, vcpu: VcpuId) -> u64 {
        (0..16).fold(0, |acc, k| match self.irq(IntId(n * 16 + k), vcpu) {
            Ok(irq) if irq.trigger == Trigger::Edge => acc | (2 << (2 * k)),
            _ => acc,
        })
    }

    /// Writes `ICFGR<n>`; SGIs (`ICFGR0`) are always edge and read-only.
    pub(crate) fn write_icfgr(&mut self, n: u32, vcpu: VcpuId, value: u64) {
        if n == 0 {
            return;
        }
        for k in 0..16 {
            if let Ok(irq) = self.irq_mut(IntId(n * 16 + k), vcpu) {
                irq.trigger = if value & (2 << (2 * k)) != 0 {
                    Trigger::Edge
                } else {
                    Trigger::Level
                };
            }
        }
    }

    fn gicd_ctlr(&self) -> u32 {
        let mut v = CTLR_ARE | CTLR_DS;
        if self.grp0_enabled {
            v |= CTLR_ENABLE_GRP0;
        }
        if self.grp1_enabled {
            v |= CTLR_ENABLE_GRP1;
        }
        v
    }

    fn gicd_typer(&self) -> u32 {
        // Blocks of 32 INTIDs, the last one partial with every SPI (INTIDs 1020-1023).
        let it_lines = (self.spi_count() + PRIVATE_IRQS).div_ceil(32) - 1;
        let cpus = (self.vcpu_count().min(8) - 1) as u32;
        TYPER_NO1N | TYPER_MBIS | TYPER_IDBITS_10 | (cpus << 5) | it_lines
    }

    /// Reads `size` bytes at `offset` in the GICD frame.
    pub fn gicd_read(&self, offset: u64, size: usize) -> u64 {
        // Base vCPU for the RAZ/WI private rows never matters: INTIDs < 32 are skipped.
        let any = VcpuId(0);
        match (offset, size) {
            (GICD_IPRIORITYR..0x0800, 1 | 4) => {
                let first = (offset - GICD_IPRIORITYR) as u32;
                if first < PRIVATE_IRQS || (size == 4 && !offset.is_multiple_of(4)) {
                    0
                } else {
                    self.read_priority(first, any, size)
                }
            }
            (GICD_IROUTER..0x7FE0, 4 | 8) => self.read_irouter(offset, size),
            (_, 4) if offset.is_multiple_of(4) => self.gicd_read32(offset, any),
            _ => 0,
        }
    }

    fn gicd_read32(&self, offset: u64, any: VcpuId) -> u64 {
        match offset {
            GICD_CTLR => self.gicd_ctlr().into(),
            GICD_TYPER => self.gicd_typer().into(),
            GICD_IIDR => IIDR.into(),
            GICD_PIDR2 => PIDR2_GICV3.into(),
            GICD_IGROUPR..0x0400 => match BitReg::decode(offset) {
                Some((_, 0)) | None => 0,
                Some((reg, n)) => self.read_bitreg(reg, n * 32, any),
            },
            GICD_ICFGR..GICD_IGRPMODR => {
                let n = ((offset - GICD_ICFGR) / 4) as u32;
                if n < 2 {
                    0
                } else {
                    self.read_icfgr(n, any)
                }
            }
            _ => 0,
        }
    }

    /// Writes `size` bytes at `offset` in the GICD frame.
    pub fn gicd_write(&mut self, offset: u64, size: usize, value: u64) {
        let any = VcpuId(0);
        match (offset, size) {
            (GICD_IPRIORITYR..0x0800, 1 | 4) => {
                let first = (offset - GICD_IPRIORITYR) as u32;
                if first >= PRIVATE_IRQS && (size == 1 || offset.is_multiple_of(4)) {
                    self.write_priority(first, any, size, value);
                }
            }
            (GICD_IROUTER..0x7FE0, 4 | 8) => self.write_irouter(offset, size, value),
            (GICD_SETSPI_NSR | GICD_CLRSPI_NSR, 4) => {
                self.message_spi(offset == GICD_SETSPI_NSR, value as u32 & 0x3ff);
            }
            (GICD_CTLR, 4) => {
                self.set_group_enables(
                    value as u32 & CTLR_ENABLE_GRP0 != 0,
                    value as u32 & CTLR_ENABLE_GRP1 != 0,
                );
                for v in 0..self.vcpu_count() {
                    if self.has_pending(VcpuId(v)) {
                        self.kicks.insert(VcpuId(v));
                    }
                }
            }
            (GICD_IGROUPR..0x0400, 4) if offset.is_multiple_of(4) => {
                if let Some((reg, n @ 1..)) = BitReg::decode(offset) {
                    self.write_bitreg(reg, n * 32, any, value);
                }
            }
            (GICD_ICFGR..GICD_IGRPMODR, 4) if offset.is_multiple_of(4) => {
                let n = ((offset - GICD_ICFGR) / 4) as u32;
                if n >= 2 {
                    self.write_icfgr(n, any, value);
                }
            }
            _ => {}
        }
    }

    /// A message-based SPI (`GICD_SETSPI_NSR` / `GICD_CLRSPI_NSR`, and MSIs through
    /// them): sets or clears the pending latch of SPI `intid`. Anything but an
    /// implemented SPI is ignored (IHI 0069: writes naming an invalid SPI have no effect).
    pub fn message_spi(&mut self, set: bool, intid: u32) {
        let id = IntId(intid);
        if intid < PRIVATE_IRQS || self.irq(id, VcpuId(0)).is_err() {
            return;
        }
        if set {
            // An SPI's target is kicked by `note_change` (through `inject_edge`).
            let _ = self.inject_edge(id, VcpuId(0));
        } else if let Ok(irq) = self.irq_mut(id, VcpuId(0)) {
            irq.pending_latch = false;
            self.note_change(id, VcpuId(0));
        }
    }

    /// The SPI an `IROUTER` offset names and whether the access is the upper word.
    fn irouter_target(&self, offset: u64, size: usize) -> Option<(IntId, bool)> {
        let rel = offset - GICD_IROUTER;
        let upper = rel % 8 == 4;
        if (size == 8 && !rel.is_multiple_of(8)) || (size == 4 && !rel.is_multiple_of(4)) {
            return None;
        }
        let intid = IntId((rel / 8) as u32);
        if intid.0 < PRIVATE_IRQS || self.irq(intid, VcpuId(0)).is_err() {
            return None;
        }
        Some((intid, upper))
    }

    fn read_irouter(&self, offset: u64, size: usize) -> u64 {
        let Some((intid, upper)) = self.irouter_target(offset, size) else {
            return 0;
        };
        let v = self.irq(intid, VcpuId(0)).map(|i| i.irouter).unwrap_or(0);
        match (size, upper) {
            (8, _) => v,
            (_, false) => v & 0xFFFF_FFFF,
            (_, true) => v >> 32,
        }
    }

    fn write_irouter(&mut self, offset: u64, size: usize, value: u64) {
        let Some((intid, upper)) = self.irouter_target(offset, size) else {
            return;
        };
        let vcpus = self.vcpu_count();
        let Ok(irq) = self.irq_mut(intid, VcpuId(0)) else {
            return;
        };
        let new = match (size, upper) {
            (8, _) => value,
            (_, false) => (irq.irouter & !0xFFFF_FFFF) | (value & 0xFFFF_FFFF),
            (_, true) => (irq.irouter & 0xFFFF_FFFF) | (value << 32),
        } & IROUTER_AFF_MASK;
        irq.irouter = new;
        // vCPU n is Aff0 = n with Aff1..3 = 0; any other affinity names no vCPU.
        irq.target = (new < vcpus as u64).then_some(VcpuId(new as usize));
        self.note_change(intid, VcpuId(0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VGIC_SPIS: u32 = 128;

    fn gic(vcpus: usize) -> VGic {
        VGic::new(vcpus, VGIC_SPIS).unwrap()
    }

    #[test]
    fn ctlr_reports_are_and_ds_and_keeps_group_enables() {
        let mut g = gic(1);
        assert_eq!(g.gicd_read(GICD_CTLR, 4), u64::from(CTLR_ARE | CTLR_DS));
        // Linux writes ARE_NS | ENABLE_G1A | ENABLE_G1.
        g.gicd_write(GICD_CTLR, 4, 0x13);
        assert!(g.grp0_enabled() && g.grp1_enabled());
        assert_eq!(g.gicd_read(GICD_CTLR, 4), 0x53);
        g.gicd_write(GICD_CTLR, 4, 0);
        assert_eq!(g.gicd_read(GICD_CTLR, 4), u64::from(CTLR_ARE | CTLR_DS));
    }

    #[test]
    fn setspi_nsr_makes_an_spi_pending_and_clrspi_clears_it() {
        let mut g = gic(2);
        assert_ne!(g.gicd_read(GICD_TYPER, 4) as u32 & TYPER_MBIS, 0);
        let spi = IntId(100);
        g.gicd_write(GICD_CTLR, 4, u64::from(CTLR_ENABLE_GRP1));
        g.gicd_write(GICD_ISENABLER + 12, 4, 1 << (100 - 96));
        g.gicd_write(GICD_IROUTER + 8 * 100, 8, 1);
        let _ = g.take_kicks();
        g.gicd_write(GICD_SETSPI_NSR, 4, 100);
        assert!(g.irq(spi, VcpuId(0)).unwrap().pending());
        assert!(g.take_kicks().contains(VcpuId(1)));
        g.gicd_write(GICD_CLRSPI_NSR, 4, 100);
        assert!(!g.irq(spi, VcpuId(0)).unwrap().pending());
        // SGIs, PPIs, unimplemented SPIs and other widths change nothing.
        let before = g.clone();
        for id in [0, 16, 31, 32 + VGIC_SPIS, 1023] {
            g.gicd_write(GICD_SETSPI_NSR, 4, u64::from(id));
        }
        g.gicd_write(GICD_SETSPI_NSR, 2, 100);
        let _ = g.take_kicks();
        assert_eq!(g, before);
    }

    #[test]
    fn typer_reports_it_lines_cpus_and_10_id_bits_without_lpis() {
        let g = gic(4);
        let t = g.gicd_read(GICD_TYPER, 4);
        assert_eq!(t & 0x1F, u64::from((VGIC_SPIS + 32) / 32 - 1));
        assert_eq!((t >> 5) & 7, 3);
        assert_eq!((t >> 19) & 0x1F, 9);
        assert_eq!(t & (1 << 17), 0, "LPIS");
        assert_ne!(t & (1 << 16), 0, "MBIS");
        assert_eq!(t & (1 << 10), 0, "SecurityExtn");
    }

    /// ITLinesNumber follows the SPI count, up to every SPI (31: INTIDs up to 1019).
    #[test]
    fn typer_it_lines_follow_the_spi_count_and_high_spis_work() {
        for (spis, lines) in [(32, 1), (416, 13), (960, 30), (988, 31)] {
            let mut g = VGic::new(1, spis).unwrap();
            assert_eq!(g.gicd_read(GICD_TYPER, 4) & 0x1F, lines, "{spis} SPIs");
            let last = 32 + spis - 1;
            let (word, bit) = (u64::from(last / 32) * 4, 1u64 << (last % 32));
            g.gicd_write(GICD_ISPENDR + word, 4, bit);
            assert_eq!(g.gicd_read(GICD_ISPENDR + word, 4), bit, "INTID {last}");
            // One past the last is RAZ/WI.
            if spis < 988 {
                let next = last + 1;
                let (w, b) = (u64::from(next / 32) * 4, 1u64 << (next % 32));
                g.gicd_write(GICD_ISPENDR + w, 4, b);
                assert_eq!(g.gicd_read(GICD_ISPENDR + w, 4), 0);
            }
        }
        assert!(VGic::new(1, 989).is_err() && VGic::new(1, 970).is_err());
    }

    #[test]
    fn iidr_typer2_and_pidr2_identify_a_gicv3() {
        let g = gic(1);
        assert_eq!(g.gicd_read(GICD_IIDR, 4), u64::from(IIDR));
        assert_eq!(g.gicd_read(GICD_TYPER2, 4), 0);
        assert_eq!((g.gicd_read(GICD_PIDR2, 4) >> 4) & 0xF, 3);
    }

    #[test]
    fn isenabler_sets_and_icenabler_clears_spi_enable() {
        let mut g = gic(1);
        g.gicd_write(GICD_ISENABLER + 4, 4, 0b101);
        assert!(g.irq(IntId(32), VcpuId(0)).unwrap().enabled);
        assert!(g.irq(IntId(34), VcpuId(0)).unwrap().enabled);
        assert_eq!(g.gicd_read(GICD_ICENABLER + 4, 4), 0b101);
        g.gicd_write(GICD_ICENABLER + 4, 4, 0b1);
        assert_eq!(g.gicd_read(GICD_ISENABLER + 4, 4), 0b100);
    }

    #[test]
    fn private_interrupt_rows_are_raz_wi_in_the_distributor() {
        let mut g = gic(1);
        g.gicd_write(GICD_ISENABLER, 4, u64::from(u32::MAX));
        assert_eq!(g.gicd_read(GICD_ISENABLER, 4), 0);
        assert!(!g.irq(IntId(27), VcpuId(0)).unwrap().enabled);
        g.gicd_write(GICD_IPRIORITYR + 27, 1, 0x80);
        assert_eq!(g.irq(IntId(27), VcpuId(0)).unwrap().priority, 0);
    }

    #[test]
    fn ispendr_and_icpendr_drive_the_pending_latch() {
        let mut g = gic(1);
        g.gicd_write(GICD_ISPENDR + 4, 4, 1 << 8);
        assert_eq!(g.gicd_read(GICD_ISPENDR + 4, 4), 1 << 8);
        g.gicd_write(GICD_ICPENDR + 4, 4, 1 << 8);
        assert_eq!(g.gicd_read(GICD_ICPENDR + 4, 4), 0);
    }

    #[test]
    fn icpendr_does_not_clear_an_asserted_level_line() {
        let mut g = gic(1);
        g.set_level(IntId(33), VcpuId(0), true).unwrap();
        g.gicd_write(GICD_ICPENDR + 4, 4, 1 << 1);
        assert_eq!(g.gicd_read(GICD_ISPENDR + 4, 4), 1 << 1);
    }

    #[test]
    fn isactiver_and_icactiver_set_and_clear_active() {
        let mut g = gic(1);
        g.gicd_write(GICD_ISACTIVER + 8, 4, 1);
        assert!(g.irq(IntId(64), VcpuId(0)).unwrap().active);
        g.gicd_write(GICD_ICACTIVER + 8, 4, 1);
        assert_eq!(g.gicd_read(GICD_ISACTIVER + 8, 4), 0);
    }

    #[test]
    fn igroupr_reads_back_written_groups() {
        let mut g = gic(1);
        assert_eq!(
            g.gicd_read(GICD_IGROUPR + 4, 4),
            u64::from(u32::MAX),
            "reset group 1"
        );
        g.gicd_write(GICD_IGROUPR + 4, 4, 0xFFFF_0000);
        assert!(!g.irq(IntId(32), VcpuId(0)).unwrap().group1);
        assert_eq!(g.gicd_read(GICD_IGROUPR + 4, 4), 0xFFFF_0000);
    }

    #[test]
    fn ipriorityr_accepts_byte_and_word_access_and_masks_low_bits() {
        let mut g = gic(1);
        g.gicd_write(GICD_IPRIORITYR + 33, 1, 0xA7);
        assert_eq!(g.irq(IntId(33), VcpuId(0)).unwrap().priority, 0xA0);
        g.gicd_write(GICD_IPRIORITYR + 36, 4, 0x1020_3040);
        assert_eq!(g.gicd_read(GICD_IPRIORITYR + 36, 4), 0x1020_3040);
        assert_eq!(g.gicd_read(GICD_IPRIORITYR + 33, 1), 0xA0);
        assert_eq!(g.gicd_read(GICD_IPRIORITYR + 32, 4), 0xA000);
    }

    #[test]
    fn icfgr_configures_spi_edge_and_level() {
        let mut g = gic(1);
        g.gicd_write(GICD_ICFGR + 8, 4, 0b10 << 2);
        assert_eq!(g.irq(IntId(33), VcpuId(0)).unwrap().trigger, Trigger::Edge);
        assert_eq!(g.irq(IntId(32), VcpuId(0)).unwrap().trigger, Trigger::Level);
        assert_eq!(g.gicd_read(GICD_ICFGR + 8, 4), 0b10 << 2);
    }

    #[test]
    fn igrpmodr_is_raz_wi_with_single_security_state() {
        let mut g = gic(1);
        g.gicd_write(GICD_IGRPMODR + 4, 4, u64::from(u32::MAX));
        assert_eq!(g.gicd_read(GICD_IGRPMODR + 4, 4), 0);
    }

    #[test]
    fn irouter_routes_spi_to_the_vcpu_with_that_aff0() {
        let mut g = gic(2);
        g.gicd_write(GICD_IROUTER + 8 * 40, 8, 1);
        assert_eq!(g.irq(IntId(40), VcpuId(0)).unwrap().target, Some(VcpuId(1)));
        assert_eq!(g.gicd_read(GICD_IROUTER + 8 * 40, 8), 1);
        g.gicd_write(GICD_IROUTER + 8 * 40, 8, 1 << 8);
        assert_eq!(g.irq(IntId(40), VcpuId(0)).unwrap().target, None);
    }

    #[test]
    fn irouter_accepts_32_bit_halves_and_ignores_irm() {
        let mut g = gic(2);
        g.gicd_write(GICD_IROUTER + 8 * 40, 4, (1 << 31) | 1);
        g.gicd_write(GICD_IROUTER + 8 * 40 + 4, 4, 0);
        assert_eq!(g.gicd_read(GICD_IROUTER + 8 * 40, 4), 1);
        assert_eq!(g.gicd_read(GICD_IROUTER + 8 * 40 + 4, 4), 0);
    }

    #[test]
    fn enabling_a_pending_spi_kicks_its_target() {
        let mut g = gic(2);
        g.gicd_write(GICD_CTLR, 4, u64::from(CTLR_ENABLE_GRP1));
        g.gicd_write(GICD_IROUTER + 8 * 40, 8, 1);
        g.gicd_write(GICD_ISPENDR + 4, 4, 1 << 8);
        assert!(g.take_kicks().is_empty());
        g.gicd_write(GICD_ISENABLER + 4, 4, 1 << 8);
        assert_eq!(
            g.take_kicks().iter().collect::<alloc::vec::Vec<_>>(),
            [VcpuId(1)]
        );
    }

    #[test]
    fn every_offset_and_size_is_handled_without_panic() {
        let mut g = gic(2);
        for off in (0..GICD_FRAME_SIZE + 16).step_by(1) {
            for size in [1, 2, 4, 8, 3] {
                let _ = g.gicd_read(off, size);
            }
        }
        for off in (0..GICD_FRAME_SIZE + 16).step_by(4) {
            for size in [1, 2, 4, 8] {
                if off != GICD_CTLR {
                    g.gicd_write(off, size, u64::MAX);
                }
            }
        }
        assert_eq!(g.gicd_read(GICD_TYPER2, 4), 0);
    }
}
