//! The GICv2 view of a VM's virtual GIC (IHI 0048B): the GICD frame a GICv2 guest programs,
//! translated onto the shared interrupt state, and the GICH list-register format.
//!
//! Differences from the GICv3 frames this adapter maps away: the private interrupts
//! (INTID 0-31) are banked in the distributor per accessing CPU (GICv3 keeps them in the
//! redistributor's SGI_base frame, at the same offsets); SPI targets are 8-bit CPU masks in
//! `GICD_ITARGETSR` (GICv3: `GICD_IROUTER`); SGIs are sent by writing `GICD_SGIR` (GICv3:
//! `ICC_SGI1R_EL1`); the CPU interface is the hardware GICV frame mapped into the guest.

use super::dist::{GICD_CTLR, GICD_ICPENDR, GICD_ISPENDR, GICD_PIDR2, GICD_TYPER};
use super::redist::{GICR_FRAME_SIZE, SGI_BASE};
use super::{SgiGroups, VGic, VcpuSet, PRIVATE_IRQS};
use crate::types::{IntId, VcpuId};

/// vCPUs a GICv2 guest can have.
pub const MAX_V2_VCPUS: usize = 8;

/// `GICD_ITARGETSR<n>` (one byte per INTID).
pub const GICD_ITARGETSR: u64 = 0x0800;
/// `GICD_SGIR`.
pub const GICD_SGIR: u64 = 0x0F00;
/// `GICD_CPENDSGIR<n>` (n = 0..3): clear the pending state of SGIs per source CPU.
pub const GICD_CPENDSGIR: u64 = 0x0F10;
/// `GICD_SPENDSGIR<n>` (n = 0..3): set / read the pending state of SGIs per source CPU.
pub const GICD_SPENDSGIR: u64 = 0x0F20;
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
        g.sgi_per_source = true;
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
                // Routed to CPU 0, as `VGic::new` does; reads back as such.
                irq.v2_targets = 1;
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
                if !byte_or_word(o, size) {
                    return 0;
                }
                let mut v = 0u64;
                for i in 0..size as u64 {
                    let intid = o - GICD_ITARGETSR + i;
                    v |= u64::from(self.itargets(vcpu, intid)) << (8 * i);
                }
                v
            }
            o if (GICD_CPENDSGIR..GICD_SPENDSGIR_END).contains(&o) => {
                if !byte_or_word(o, size) {
                    return 0;
                }
                let first = (o - GICD_CPENDSGIR) % 16;
                let Some(v) = self.vcpus.get(vcpu.0) else {
                    return 0;
                };
                (0..size as u64).fold(0, |acc, i| {
                    let sources = v.sgi_sources[(first + i) as usize];
                    acc | (u64::from(sources) << (8 * i))
                })
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
            // SGIs' pending bits in ISPENDR0/ICPENDR0 are WI on GICv2: their pending state
            // is per source, set by GICD_SGIR/SPENDSGIR and cleared by CPENDSGIR (as KVM).
            GICD_ISPENDR | GICD_ICPENDR if size == 4 => {
                let value = value & 0xFFFF_0000;
                self.gicr_write(redist_offset(vcpu, offset), size, value);
            }
            o if banked(o) => self.gicr_write(redist_offset(vcpu, o), size, value),
            o if (GICD_ITARGETSR + 32..GICD_ITARGETSR + 0x400).contains(&o)
                && byte_or_word(o, size) =>
            {
                for i in 0..size as u64 {
                    let intid = o - GICD_ITARGETSR + i;
                    self.set_itargets(intid, (value >> (8 * i)) as u8);
                }
            }
            GICD_SGIR if size == 4 => return self.sgir_write(vcpu, value as u32),
            o if (GICD_CPENDSGIR..GICD_SPENDSGIR_END).contains(&o) && byte_or_word(o, size) => {
                let set = o >= GICD_SPENDSGIR;
                let first = (o - GICD_CPENDSGIR) % 16;
                for i in 0..size as u64 {
                    let sources = (value >> (8 * i)) as u8;
                    self.write_sgi_sources(vcpu, (first + i) as usize, sources, set);
                }
            }
            // SGI/PPI targets are read-only; other sizes of the byte registers, and of
            // SGIR: WI.
            o if (GICD_ITARGETSR..GICD_ITARGETSR + 0x400).contains(&o) => {}
            o if (GICD_SGIR..GICD_SPENDSGIR_END).contains(&o) => {}
            // Reserved in GICv2 (GICv3's message-based SPI registers); MSIs of a GICv2
            // guest go through its GICv2m frame instead.
            0x040..0x080 => {}
            o if o < 0x1000 => self.gicd_write(o, size, value),
            _ => {}
        }
        self.take_kicks()
    }

    /// The CPU interface bits of this VM's vCPUs (`GICD_ITARGETSR`, `GICD_SGIR` and
    /// `GICD_SPENDSGIR` bits of other CPUs are RAZ/WI).
    fn cpu_mask(&self) -> u8 {
        (((1u16 << self.vcpu_count().min(MAX_V2_VCPUS)) - 1) & 0xff) as u8
    }

    /// `GICD_ITARGETSR` byte for `intid` as seen by `vcpu`: its own bit for SGIs and PPIs
    /// (IHI 0048B 4.3.12), the stored mask for an implemented SPI, else 0.
    fn itargets(&self, vcpu: VcpuId, intid: u64) -> u8 {
        if intid < u64::from(PRIVATE_IRQS) {
            return 1u8.checked_shl(vcpu.0 as u32).unwrap_or(0);
        }
        let Ok(intid) = u32::try_from(intid) else {
            return 0;
        };
        self.irq(IntId(intid), vcpu)
            .map(|irq| irq.v2_targets)
            .unwrap_or(0)
    }

    /// Writes SPI `intid`'s `GICD_ITARGETSR` byte. The mask is kept (bits of CPUs the VM
    /// does not have dropped); the SPI goes to its lowest CPU. A GICv2 1-of-N SPI may go to
    /// any CPU of its mask, and which one is IMPLEMENTATION DEFINED (IHI 0048B 1.4.3); KVM
    /// also takes the lowest. An empty mask forwards the SPI to no CPU.
    fn set_itargets(&mut self, intid: u64, mask: u8) {
        let mask = mask & self.cpu_mask();
        let Ok(intid) = u32::try_from(intid) else {
            return;
        };
        let id = IntId(intid);
        if intid < PRIVATE_IRQS || self.irq(id, VcpuId(0)).is_err() {
            return;
        }
        if let Ok(irq) = self.irq_mut(id, VcpuId(0)) {
            irq.v2_targets = mask;
            irq.target = (mask != 0).then(|| VcpuId(mask.trailing_zeros() as usize));
        }
        self.note_change(id, VcpuId(0));
    }

    /// Sets (`GICD_SPENDSGIR`) or clears (`GICD_CPENDSGIR`) the pending state of SGI `sgi`
    /// on `vcpu` for each source CPU whose bit is set in `sources`.
    fn write_sgi_sources(&mut self, vcpu: VcpuId, sgi: usize, sources: u8, set: bool) {
        let sources = sources & self.cpu_mask();
        let Some(v) = self.vcpus.get_mut(vcpu.0) else {
            return;
        };
        if sgi >= 16 || sources == 0 {
            return;
        }
        if set {
            v.sgi_sources[sgi] |= sources;
        } else {
            v.sgi_sources[sgi] &= !sources;
        }
        v.private[sgi].pending_latch = v.sgi_sources[sgi] != 0;
        let id = IntId(sgi as u32);
        self.watch(id, vcpu);
        self.note_change(id, vcpu);
    }

    /// `GICD_SGIR`: TargetListFilter [25:24] (0: the CPUTargetList, 1: every CPU but the
    /// sender, 2: the sender only, 3: reserved), CPUTargetList [23:16], SGIINTID [3:0]. The
    /// SGI is raised whichever group it is configured in (no Security Extensions: NSATT is
    /// ignored), pending from `sender` at each target.
    fn sgir_write(&mut self, sender: VcpuId, value: u32) -> VcpuSet {
        let intid = IntId(value & 0xf);
        let me = 1u8.checked_shl(sender.0 as u32).unwrap_or(0);
        let list = match (value >> 24) & 0b11 {
            0 => ((value >> 16) & 0xff) as u8,
            1 => !me,
            2 => me,
            _ => 0,
        } & self.cpu_mask();
        let mut targets = VcpuSet::EMPTY;
        for bit in super::bits(u64::from(list)) {
            targets.insert(VcpuId(bit as usize));
        }
        self.raise_sgi(sender, intid, targets, SgiGroups::Any)
    }
}

/// Byte or aligned word access (what the byte-accessible GICv2 registers accept; other
/// sizes are RAZ/WI here).
fn byte_or_word(offset: u64, size: usize) -> bool {
    size == 1 || (size == 4 && offset.is_multiple_of(4))
}

/// Converts a GICv3 list-register value (as [`VGic::flush`] fills) to the GICv2
/// `GICH_LR<n>` format: VirtualID [9:0], PhysicalID [19:10] (for software interrupts bit 19
/// is EOI and [12:10] the SGI source CPU, from bits 34:32, see [`super::lr`]), Priority
/// [27:23] (top five bits), State [29:28], Grp1 [30], HW [31].
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
    } else {
        lr |= (((v >> 32) & 0x7) as u32) << 10;
        if eoi {
            lr |= 1 << 19;
        }
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
    } else {
        v |= ((lr64 >> 10) & 0x7) << 32;
        if lr & (1 << 19) != 0 {
            v |= 1 << 41;
        }
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

    use crate::vgic::{Lr, LrState};

    /// A GICv2 vGIC with the distributor on and SGIs 0-15 enabled on every vCPU.
    fn vgic_sgis_on(vcpus: usize) -> VGic {
        let mut g = vgic(vcpus);
        g.gicd_v2_write(VcpuId(0), GICD_CTLR, 4, 1);
        for v in 0..vcpus {
            g.gicd_v2_write(VcpuId(v), 0x100, 4, 0xffff);
        }
        g
    }

    /// Flushes `vcpu` and returns its LRs in GICH_LR form.
    fn flush_v2(g: &mut VGic, vcpu: VcpuId) -> [u32; 4] {
        let mut lrs = [0u64; 4];
        g.flush(vcpu, &mut lrs, 4).unwrap();
        lrs.map(lr_v3_to_v2)
    }

    /// The guest acks LR `n` (pending -> active) and, if `eoi`, deactivates it; then sync.
    fn guest_takes(g: &mut VGic, vcpu: VcpuId, mut lrs: [u32; 4], n: usize, eoi: bool) {
        lrs[n] = if eoi {
            0
        } else {
            (lrs[n] & !(0b11 << 28)) | (0b10 << 28)
        };
        g.sync(vcpu, &lrs.map(lr_v2_to_v3)).unwrap();
    }

    #[test]
    fn sgir_filters_reach_list_all_but_self_and_self_with_the_sender_in_the_lr() {
        let mut g = vgic_sgis_on(3);
        // Filter 0, list {0, 2} from CPU 1.
        let k = g.gicd_v2_write(VcpuId(1), GICD_SGIR, 4, (0b101 << 16) | 4);
        assert_eq!(k.iter().collect::<Vec<_>>(), [VcpuId(0), VcpuId(2)]);
        // Filter 1 (all but self) from CPU 2.
        let k = g.gicd_v2_write(VcpuId(2), GICD_SGIR, 4, (1 << 24) | (0xff << 16) | 5);
        assert_eq!(k.iter().collect::<Vec<_>>(), [VcpuId(0), VcpuId(1)]);
        // Filter 2 (self) from CPU 0; the target list is ignored.
        let k = g.gicd_v2_write(VcpuId(0), GICD_SGIR, 4, (2 << 24) | (0b110 << 16) | 6);
        assert_eq!(k.iter().collect::<Vec<_>>(), [VcpuId(0)]);
        // Filter 3 is reserved: nothing.
        assert!(g
            .gicd_v2_write(VcpuId(0), GICD_SGIR, 4, (3 << 24) | (0b111 << 16) | 7)
            .is_empty());
        // CPU 0 holds SGI 4 from CPU 1, 5 from CPU 2 and 6 from itself; CPUID = [12:10].
        let lrs = flush_v2(&mut g, VcpuId(0));
        let got: Vec<_> = lrs.iter().map(|l| (l & 0x3ff, (l >> 10) & 7)).collect();
        assert_eq!(got, [(4, 1), (5, 2), (6, 0), (0, 0)]);
        let lrs = flush_v2(&mut g, VcpuId(2));
        assert_eq!((lrs[0] & 0x3ff, (lrs[0] >> 10) & 7), (4, 1));
        let lrs = flush_v2(&mut g, VcpuId(1));
        assert_eq!((lrs[0] & 0x3ff, (lrs[0] >> 10) & 7), (5, 2));
    }

    #[test]
    fn one_sgi_from_two_sources_is_delivered_twice_each_with_its_source() {
        let mut g = vgic_sgis_on(3);
        g.gicd_v2_write(VcpuId(1), GICD_SGIR, 4, (0b001 << 16) | 3);
        g.gicd_v2_write(VcpuId(2), GICD_SGIR, 4, (0b001 << 16) | 3);
        let v0 = VcpuId(0);
        assert_eq!(g.gicd_v2_read(v0, GICD_SPENDSGIR, 4), 0b110 << 24);
        let lrs = flush_v2(&mut g, v0);
        assert_eq!((lrs[0] & 0x3ff, (lrs[0] >> 10) & 7), (3, 1));
        assert_ne!(lrs[0] & (1 << 19), 0, "EOI maintenance: source 2 waits");
        assert_eq!(lrs[1], 0, "one LR per SGI at a time");
        // Acked, not yet deactivated: active from 1, still pending from 2.
        guest_takes(&mut g, v0, lrs, 0, false);
        assert_eq!(g.gicd_v2_read(v0, GICD_SPENDSGIR + 3, 1), 0b100);
        assert_eq!(g.gicd_v2_read(v0, 0x300, 4) & (1 << 3), 1 << 3, "active");
        // Flushed again (a vCPU move): the active instance keeps source 1, not pending.
        let lrs = flush_v2(&mut g, v0);
        assert_eq!((lrs[0] >> 10) & 7, 1);
        assert_eq!((lrs[0] >> 28) & 3, 0b10, "active only");
        guest_takes(&mut g, v0, lrs, 0, true);
        // Then source 2's.
        let lrs = flush_v2(&mut g, v0);
        assert_eq!((lrs[0] & 0x3ff, (lrs[0] >> 10) & 7), (3, 2));
        assert_eq!((lrs[0] >> 28) & 3, 0b01);
        assert_eq!(lrs[0] & (1 << 19), 0, "no source left");
        guest_takes(&mut g, v0, lrs, 0, true);
        assert!(!g.has_pending(v0));
        assert_eq!(g.gicd_v2_read(v0, GICD_SPENDSGIR, 4), 0);
    }

    #[test]
    fn a_source_not_taken_by_the_guest_is_pending_again_after_sync() {
        let mut g = vgic_sgis_on(2);
        g.gicd_v2_write(VcpuId(1), GICD_SGIR, 4, (0b01 << 16) | 9);
        let lrs = flush_v2(&mut g, VcpuId(0));
        assert_eq!(
            g.gicd_v2_read(VcpuId(0), GICD_SPENDSGIR + 8, 4),
            0,
            "in the LR"
        );
        g.sync(VcpuId(0), &lrs.map(lr_v2_to_v3)).unwrap();
        assert_eq!(g.gicd_v2_read(VcpuId(0), GICD_SPENDSGIR + 8, 4), 0b10 << 8);
    }

    #[test]
    fn spendsgir_and_cpendsgir_set_and_clear_per_source_and_ispendr_sgi_bits_are_wi() {
        let mut g = vgic_sgis_on(2);
        let v1 = VcpuId(1);
        // SGI 5 (SPENDSGIR1 byte 1) from CPUs 0 and 1; bit 7 (no such CPU) does not stick.
        g.gicd_v2_write(v1, GICD_SPENDSGIR + 5, 1, 0b1000_0011);
        assert_eq!(g.gicd_v2_read(v1, GICD_SPENDSGIR + 4, 4), 0b11 << 8);
        assert_eq!(g.gicd_v2_read(v1, GICD_CPENDSGIR + 5, 1), 0b11);
        assert_eq!(
            g.gicd_v2_read(VcpuId(0), GICD_SPENDSGIR + 4, 4),
            0,
            "banked"
        );
        assert_eq!(g.gicd_v2_read(v1, 0x200, 4) & (1 << 5), 1 << 5, "ISPENDR0");
        g.gicd_v2_write(v1, GICD_CPENDSGIR + 4, 4, 0b01 << 8);
        assert_eq!(g.gicd_v2_read(v1, GICD_SPENDSGIR + 5, 1), 0b10);
        let lrs = flush_v2(&mut g, v1);
        assert_eq!((lrs[0] & 0x3ff, (lrs[0] >> 10) & 7), (5, 1));
        g.sync(v1, &lrs.map(lr_v2_to_v3)).unwrap();
        g.gicd_v2_write(v1, GICD_CPENDSGIR + 5, 1, 0xff);
        assert_eq!(g.gicd_v2_read(v1, 0x200, 4) & 0xffff, 0);
        assert!(!g.has_pending(v1));
        // ISPENDR0/ICPENDR0 SGI bits are WI; PPI bits work.
        g.gicd_v2_write(v1, 0x200, 4, 0xffff | (1 << 20));
        assert_eq!(g.gicd_v2_read(v1, 0x200, 4), 1 << 20);
        g.gicd_v2_write(v1, GICD_SPENDSGIR, 1, 1);
        g.gicd_v2_write(v1, 0x280, 4, u64::from(u32::MAX));
        assert_eq!(g.gicd_v2_read(v1, 0x200, 4), 1);
    }

    #[test]
    fn itargetsr_keeps_byte_and_word_writes_of_implemented_cpus_only() {
        let mut g = vgic(2);
        let v0 = VcpuId(0);
        // Byte writes: both CPUs kept, CPUs 2-7 (not in the VM) dropped.
        g.gicd_v2_write(v0, GICD_ITARGETSR + 41, 1, 0b11);
        g.gicd_v2_write(v0, GICD_ITARGETSR + 42, 1, 0xfe);
        assert_eq!(g.gicd_v2_read(v0, GICD_ITARGETSR + 41, 1), 0b11);
        assert_eq!(g.gicd_v2_read(v0, GICD_ITARGETSR + 42, 1), 0b10);
        assert_eq!(g.gicd_v2_read(v0, GICD_ITARGETSR + 40, 4), 0x0102_0301);
        assert_eq!(g.irq(IntId(41), v0).unwrap().target, Some(v0));
        assert_eq!(g.irq(IntId(42), v0).unwrap().target, Some(VcpuId(1)));
        // Word write; an empty mask forwards the SPI nowhere.
        g.gicd_v2_write(v0, GICD_ITARGETSR + 44, 4, 0xff00_0201);
        assert_eq!(g.gicd_v2_read(v0, GICD_ITARGETSR + 44, 4), 0x0300_0201);
        g.gicd_v2_write(v0, GICD_ITARGETSR + 45, 1, 0);
        assert_eq!(g.irq(IntId(45), v0).unwrap().target, None);
        // SGI/PPI bytes are read-only, each CPU reads its own bit.
        g.gicd_v2_write(v0, GICD_ITARGETSR, 4, 0x0303_0303);
        assert_eq!(g.gicd_v2_read(v0, GICD_ITARGETSR + 28, 4), 0x0101_0101);
        assert_eq!(g.gicd_v2_read(VcpuId(1), GICD_ITARGETSR + 16, 1), 0b10);
        // Halfword access is RAZ/WI.
        g.gicd_v2_write(v0, GICD_ITARGETSR + 48, 2, 0x0202);
        assert_eq!(g.gicd_v2_read(v0, GICD_ITARGETSR + 48, 4), 0x0101_0101);
        assert_eq!(g.gicd_v2_read(v0, GICD_ITARGETSR + 48, 2), 0);
    }

    #[test]
    fn registers_beyond_it_lines_number_are_raz_wi() {
        let mut g = vgic(2);
        let lines = g.gicd_v2_read(VcpuId(0), GICD_TYPER, 4) & 0x1f;
        let end = 32 * (lines + 1); // first unimplemented INTID
        assert_eq!(end, 32 + 64);
        let v0 = VcpuId(0);
        let before = g.clone();
        for (base, bytes_per_irq) in [
            (0x100u64, 0u64),
            (0x200, 0),
            (0x300, 0),
            (0x400, 1),
            (0x800, 1),
        ] {
            let off = if bytes_per_irq == 0 {
                base + end / 8
            } else {
                base + end
            };
            g.gicd_v2_write(v0, off, 4, u64::from(u32::MAX));
            assert_eq!(g.gicd_v2_read(v0, off, 4), 0, "offset {off:#x}");
        }
        g.gicd_v2_write(v0, 0xc00 + end / 4, 4, u64::from(u32::MAX));
        assert_eq!(g.gicd_v2_read(v0, 0xc00 + end / 4, 4), 0);
        let _ = g.take_kicks();
        assert_eq!(g, before);
        // The last implemented SPI is there.
        g.gicd_v2_write(v0, GICD_ITARGETSR + end - 1, 1, 0b10);
        assert_eq!(g.gicd_v2_read(v0, GICD_ITARGETSR + end - 1, 1), 0b10);
    }

    #[test]
    fn priorities_are_byte_accessible_with_five_bits() {
        let mut g = vgic(2);
        g.gicd_v2_write(VcpuId(1), 0x400 + 3, 1, 0xa7);
        g.gicd_v2_write(VcpuId(0), 0x400 + 50, 1, 0x5f);
        assert_eq!(g.gicd_v2_read(VcpuId(1), 0x400, 4), 0xa000_0000);
        assert_eq!(
            g.gicd_v2_read(VcpuId(0), 0x400, 4),
            0,
            "SGI priorities banked"
        );
        assert_eq!(g.gicd_v2_read(VcpuId(1), 0x400 + 50, 1), 0x58);
        let lr = Lr::decode(lr_v2_to_v3(lr_v3_to_v2(
            Lr {
                priority: 0x58,
                state: LrState::Pending,
                ..Lr::decode(50)
            }
            .encode(),
        )));
        assert_eq!(lr.priority, 0x58, "the GICH_LR keeps the five bits");
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
