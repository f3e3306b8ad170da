//! The GICv2 view of a VM's virtual GIC (IHI 0048B): the GICD frame a GICv2 guest programs,
//! translated onto the shared interrupt state, and the GICH list-register format.
//!
//! Differences from the GICv3 frames this adapter maps away: the private interrupts
//! (INTID 0-31) are banked in the distributor per accessing CPU (GICv3 keeps them in the
//! redistributor's SGI_base frame, at the same offsets); SPI targets are 8-bit CPU masks in
//! `GICD_ITARGETSR` (GICv3: `GICD_IROUTER`); SGIs are sent by writing `GICD_SGIR` (GICv3:
//! `ICC_SGI1R_EL1`); the CPU interface is the hardware GICV frame mapped into the guest.

use super::dist::{GICD_CTLR, GICD_IROUTER, GICD_PIDR2, GICD_TYPER};
use super::redist::{GICR_FRAME_SIZE, SGI_BASE};
use super::{VGic, VcpuSet};
use crate::types::VcpuId;

/// vCPUs a GICv2 guest can have.
pub const MAX_V2_VCPUS: usize = 8;

/// `GICD_ITARGETSR<n>` (one byte per INTID).
pub const GICD_ITARGETSR: u64 = 0x0800;
/// `GICD_SGIR`.
pub const GICD_SGIR: u64 = 0x0F00;
/// `GICD_CPENDSGIR` / `GICD_SPENDSGIR` (per-source SGI pending state, RAZ/WI here).
pub const GICD_CPENDSGIR: u64 = 0x0F10;
/// End of the per-source SGI registers.
pub const GICD_SPENDSGIR_END: u64 = 0x0F30;

/// Registers whose first 32 interrupts are banked per CPU and live, for GICv3, at the same
/// offset in the redistributor's SGI_base frame: (start, bytes for INTIDs 0-31).
const BANKED: [(u64, u64); 9] = [
    (0x080, 4),  // IGROUPR0
    (0x100, 4),  // ISENABLER0
    (0x180, 4),  // ICENABLER0
    (0x200, 4),  // ISPENDR0
    (0x280, 4),  // ICPENDR0
    (0x300, 4),  // ISACTIVER0
    (0x380, 4),  // ICACTIVER0
    (0x400, 32), // IPRIORITYR0-7
    (0xC00, 8),  // ICFGR0-1
];

fn banked(offset: u64) -> bool {
    BANKED.iter().any(|&(s, n)| offset >= s && offset < s + n)
}

fn redist_offset(vcpu: VcpuId, offset: u64) -> u64 {
    vcpu.0 as u64 * GICR_FRAME_SIZE + SGI_BASE + offset
}

impl VGic {
    /// A virtual GIC for a GICv2 guest: like [`VGic::new`], but every interrupt starts in
    /// group 0, the GICv2 reset state (`GICD_IGROUPR` resets to 0), which is what a GICv2
    /// guest's CPU interface (`GICV_CTLR.EnableGrp0`) signals as IRQ.
    pub fn new_v2(vcpus: usize, spis: u32) -> Result<Self, super::VGicError> {
        // A GICv2 has at most 8 CPU interfaces (GICD_TYPER.CPUNumber, ITARGETSR bytes).
        if vcpus > MAX_V2_VCPUS {
            return Err(super::VGicError::BadConfig { vcpus, spis });
        }
        let mut g = Self::new(vcpus, spis)?;
        for v in 0..vcpus {
            let vcpu = VcpuId(v);
            for intid in 0..32 {
                if let Ok(irq) = g.irq_mut(crate::types::IntId(intid), vcpu) {
                    irq.group1 = false;
                }
            }
        }
        for intid in 32..32 + spis {
            if let Ok(irq) = g.irq_mut(crate::types::IntId(intid), VcpuId(0)) {
                irq.group1 = false;
            }
        }
        Ok(g)
    }

    /// A GICv2 guest's read of `size` bytes at `offset` in its GICD frame, by `vcpu`.
    pub fn gicd_v2_read(&self, vcpu: VcpuId, offset: u64, size: usize) -> u64 {
        match offset {
            GICD_CTLR => self.gicd_read(GICD_CTLR, 4) & 0b11,
            GICD_TYPER => {
                // ITLinesNumber [4:0], CPUNumber [7:5]; no security extensions.
                self.gicd_read(GICD_TYPER, 4) & 0xff
            }
            o if banked(o) => self.gicr_read(redist_offset(vcpu, o), size),
            o if (GICD_ITARGETSR..GICD_ITARGETSR + 0x400).contains(&o) => {
                let mut v = 0u64;
                for i in 0..size as u64 {
                    let intid = o - GICD_ITARGETSR + i;
                    v |= u64::from(self.itargets(vcpu, intid)) << (8 * i);
                }
                v
            }
            GICD_PIDR2 => 0x2b, // ArchRev 2
            o if o < 0x1000 => self.gicd_read(o, size),
            _ => 0,
        }
    }

    /// A GICv2 guest's write at `offset` in its GICD frame, by `vcpu`. Returns the vCPUs
    /// that must be kicked (an SGI or a newly deliverable interrupt).
    pub fn gicd_v2_write(&mut self, vcpu: VcpuId, offset: u64, size: usize, value: u64) -> VcpuSet {
        match offset {
            GICD_CTLR => self.gicd_write(GICD_CTLR, 4, value & 0b11),
            o if banked(o) => self.gicr_write(redist_offset(vcpu, o), size, value),
            o if (GICD_ITARGETSR + 32..GICD_ITARGETSR + 0x400).contains(&o) => {
                for i in 0..size as u64 {
                    let intid = o - GICD_ITARGETSR + i;
                    let mask = (value >> (8 * i)) as u8;
                    if mask != 0 {
                        // Route to the lowest CPU in the mask (1-of-N is not modelled).
                        let target = u64::from(mask.trailing_zeros());
                        self.gicd_write(GICD_IROUTER + 8 * intid, 8, target);
                    }
                }
            }
            GICD_SGIR => return self.sgir_write(vcpu, value as u32),
            o if (GICD_CPENDSGIR..GICD_SPENDSGIR_END).contains(&o) => {}
            // Reserved in GICv2 (GICv3's message-based SPI registers); MSIs of a GICv2
            // guest go through its GICv2m frame instead.
            0x040..0x080 => {}
            o if (GICD_ITARGETSR..GICD_ITARGETSR + 32).contains(&o) => {} // read-only
            o if o < 0x1000 => self.gicd_write(o, size, value),
            _ => {}
        }
        self.take_kicks()
    }

    /// `GICD_ITARGETSR` byte for `intid` as seen by `vcpu`.
    fn itargets(&self, vcpu: VcpuId, intid: u64) -> u8 {
        if intid < 32 {
            return 1u8.checked_shl(vcpu.0 as u32).unwrap_or(0);
        }
        let route = self.gicd_read(GICD_IROUTER + 8 * intid, 8);
        1u8.checked_shl((route & 0xff) as u32).unwrap_or(0)
    }

    /// `GICD_SGIR`: TargetListFilter [25:24], CPUTargetList [23:16], SGIINTID [3:0].
    fn sgir_write(&mut self, sender: VcpuId, value: u32) -> VcpuSet {
        let intid = u64::from(value & 0xf);
        let me = 1u64.checked_shl(sender.0 as u32).unwrap_or(0);
        let list = match (value >> 24) & 0b11 {
            0 => u64::from((value >> 16) & 0xff),
            1 => {
                let all = (1u64 << self.vcpu_count().min(MAX_V2_VCPUS)) - 1;
                all & !me
            }
            2 => me & 0xff,
            _ => 0,
        };
        if list == 0 {
            return VcpuSet::EMPTY;
        }
        // The same request in ICC_SGI0R/1R_EL1 form: INTID [27:24], TargetList [15:0]. A
        // GICv2 SGIR write raises the SGI in whichever group it is configured (a GICv2
        // Linux guest leaves everything in group 0); each form pends only its own group.
        let sgi = (intid << 24) | list;
        let mut kicks = self.sgi0r_write(sender, sgi);
        for v in self.sgi1r_write(sender, sgi).iter() {
            kicks.insert(v);
        }
        kicks
    }
}

/// Converts a GICv3 list-register value (as [`VGic::flush`] fills) to the GICv2
/// `GICH_LR<n>` format: VirtualID [9:0], PhysicalID [19:10] (for software interrupts bit 19
/// is EOI and [12:10] the SGI source CPU), Priority [27:23] (top five bits), State [29:28],
/// Grp1 [30], HW [31].
pub const fn lr_v3_to_v2(v: u64) -> u32 {
    let vintid = (v & 0x3ff) as u32;
    let hw = v & (1 << 61) != 0;
    let pintid = ((v >> 32) & 0x3ff) as u32;
    let eoi = v & (1 << 41) != 0;
    let priority = ((v >> 48) & 0xff) as u32 >> 3;
    let state = ((v >> 62) & 0b11) as u32;
    let group1 = v & (1 << 60) != 0;
    let mut lr = vintid | (priority << 23) | (state << 28);
    if group1 {
        lr |= 1 << 30;
    }
    if hw {
        lr |= (1 << 31) | (pintid << 10);
    } else if eoi {
        lr |= 1 << 19;
    }
    lr
}

/// Converts a GICv2 `GICH_LR<n>` value back to the GICv3 form [`VGic::sync`] reads.
pub const fn lr_v2_to_v3(lr: u32) -> u64 {
    let lr64 = lr as u64;
    let mut v = (lr64 & 0x3ff) | (((lr64 >> 23) & 0x1f) << 51) | (((lr64 >> 28) & 0b11) << 62);
    if lr & (1 << 30) != 0 {
        v |= 1 << 60;
    }
    if lr & (1 << 31) != 0 {
        v |= (1 << 61) | (((lr64 >> 10) & 0x3ff) << 32);
    } else if lr & (1 << 19) != 0 {
        v |= 1 << 41;
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vgic(vcpus: usize) -> VGic {
        VGic::new_v2(vcpus, 64).expect("vgic")
    }

    #[test]
    fn gicv2_guests_start_with_every_interrupt_in_group_0() {
        let g = vgic(2);
        assert_eq!(g.gicd_v2_read(VcpuId(1), 0x080, 4), 0);
        assert_eq!(g.gicd_v2_read(VcpuId(0), 0x084, 4), 0);
    }

    #[test]
    fn lr_formats_round_trip_for_a_pending_software_interrupt_with_eoi() {
        let v3: u64 = 27 | (1 << 41) | (0xa0 << 48) | (0b01 << 62);
        let v2 = lr_v3_to_v2(v3);
        assert_eq!(v2 & 0x3ff, 27);
        assert_eq!((v2 >> 28) & 0b11, 0b01);
        assert_eq!((v2 >> 23) & 0x1f, 0xa0 >> 3);
        assert_ne!(v2 & (1 << 19), 0);
        assert_eq!(lr_v2_to_v3(v2), v3);
    }

    #[test]
    fn lr_hw_bit_carries_the_physical_id() {
        let v3: u64 = 34 | (34 << 32) | (1 << 61) | (0b10 << 62);
        let v2 = lr_v3_to_v2(v3);
        assert_ne!(v2 & (1 << 31), 0);
        assert_eq!((v2 >> 10) & 0x3ff, 34);
        assert_eq!(lr_v2_to_v3(v2), v3);
    }

    #[test]
    fn private_rows_are_banked_per_vcpu() {
        let mut g = vgic(2);
        g.gicd_v2_write(VcpuId(1), 0x100, 4, 1 << 27);
        assert_eq!(g.gicd_v2_read(VcpuId(1), 0x100, 4) & (1 << 27), 1 << 27);
        assert_eq!(g.gicd_v2_read(VcpuId(0), 0x100, 4) & (1 << 27), 0);
    }

    #[test]
    fn itargetsr_of_private_interrupts_reads_the_own_cpu_bit() {
        let g = vgic(4);
        assert_eq!(g.gicd_v2_read(VcpuId(2), GICD_ITARGETSR, 1), 0b100);
    }

    #[test]
    fn itargetsr_write_routes_an_spi() {
        let mut g = vgic(4);
        g.gicd_v2_write(VcpuId(0), GICD_ITARGETSR + 40, 1, 0b1000);
        assert_eq!(g.gicd_v2_read(VcpuId(0), GICD_ITARGETSR + 40, 1), 0b1000);
    }

    #[test]
    fn sgir_targets_the_listed_cpus_and_filters() {
        let mut g = vgic(3);
        g.gicd_v2_write(VcpuId(0), GICD_CTLR, 4, 1);
        // Enable SGI 1 on vCPU 2 so that it is deliverable and kicked.
        g.gicd_v2_write(VcpuId(2), 0x100, 4, 1 << 1);
        let kicks = g.gicd_v2_write(VcpuId(0), GICD_SGIR, 4, (0b100 << 16) | 1);
        assert!(kicks.iter().any(|v| v == VcpuId(2)));
        assert!(g.has_pending(VcpuId(2)));
        assert!(!g.has_pending(VcpuId(1)));
    }

    #[test]
    fn ctlr_and_typer_show_only_gicv2_fields() {
        let mut g = vgic(2);
        g.gicd_v2_write(VcpuId(0), GICD_CTLR, 4, 1);
        assert_eq!(g.gicd_v2_read(VcpuId(0), GICD_CTLR, 4), 1);
        let typer = g.gicd_v2_read(VcpuId(0), GICD_TYPER, 4);
        assert_eq!((typer >> 5) & 0b111, 1, "CPUNumber = vCPUs - 1");
        assert_eq!(g.gicd_v2_read(VcpuId(0), GICD_PIDR2, 4), 0x2b);
    }

    #[test]
    fn more_than_eight_vcpus_is_refused() {
        assert!(VGic::new_v2(9, 64).is_err());
        assert!(VGic::new_v2(8, 64).is_ok());
    }

    #[test]
    fn any_offset_and_size_is_safe() {
        let mut g = vgic(2);
        for off in (0..0x1_0000u64).step_by(4) {
            for size in [1usize, 2, 4, 8] {
                let _ = g.gicd_v2_read(VcpuId(1), off, size);
                let _ = g.gicd_v2_write(VcpuId(1), off, size, u64::MAX);
            }
        }
    }
}
