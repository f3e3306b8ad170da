//! GICv2 distributor (GICD) and CPU interface (GICC) register blocks.
//!
//! Offsets from the ARM Generic Interrupt Controller Architecture Specification v2.0
//! (IHI 0048B), section 4.1.2 "Distributor register map" (table 4-1) and section 4.1.3
//! "CPU interface register map" (table 4-2). GIC-400 implements exactly this map (GIC-400
//! TRM, DDI 0471B, chapter 3). `GICD_IPRIORITYR` and `GICD_ITARGETSR` are byte-accessible,
//! so they are modelled as byte arrays: setting one interrupt's priority or target never
//! read-modify-writes its neighbours.

use safe_mmio::fields::{ReadOnly, ReadPure, ReadPureWrite, WriteOnly};

/// The GICv2 distributor, 0x000 to 0xFFC.
#[repr(C, align(4))]
pub struct GicdRegisters {
    /// 0x000 `GICD_CTLR`. Non-secure view: bit 0 enables Group 1 forwarding.
    pub ctlr: ReadPureWrite<u32>,
    /// 0x004 `GICD_TYPER`.
    pub typer: ReadPure<u32>,
    /// 0x008 `GICD_IIDR`.
    pub iidr: ReadPure<u32>,
    _reserved0: [u32; 29],
    /// 0x080 `GICD_IGROUPRn`.
    pub igroupr: [ReadPureWrite<u32>; 32],
    /// 0x100 `GICD_ISENABLERn` (write 1 to enable).
    pub isenabler: [ReadPureWrite<u32>; 32],
    /// 0x180 `GICD_ICENABLERn` (write 1 to disable).
    pub icenabler: [ReadPureWrite<u32>; 32],
    /// 0x200 `GICD_ISPENDRn`.
    pub ispendr: [ReadPureWrite<u32>; 32],
    /// 0x280 `GICD_ICPENDRn`.
    pub icpendr: [ReadPureWrite<u32>; 32],
    /// 0x300 `GICD_ISACTIVERn`.
    pub isactiver: [ReadPureWrite<u32>; 32],
    /// 0x380 `GICD_ICACTIVERn`.
    pub icactiver: [ReadPureWrite<u32>; 32],
    /// 0x400 `GICD_IPRIORITYRn`, one byte per INTID.
    pub ipriorityr: [ReadPureWrite<u8>; 1020],
    _reserved1: [u8; 4],
    /// 0x800 `GICD_ITARGETSRn`, one byte (CPU-interface mask) per INTID. Bytes 0..31 are
    /// read-only and banked: each reads as the accessing CPU's own interface bit.
    pub itargetsr: [ReadPureWrite<u8>; 1020],
    _reserved2: [u8; 4],
    /// 0xC00 `GICD_ICFGRn`, two bits per INTID (bit 1 of each pair: edge).
    pub icfgr: [ReadPureWrite<u32>; 64],
    _reserved3: [u32; 128],
    /// 0xF00 `GICD_SGIR`.
    pub sgir: WriteOnly<u32>,
    _reserved4: [u32; 3],
    /// 0xF10 `GICD_CPENDSGIRn`.
    pub cpendsgir: [ReadPureWrite<u8>; 16],
    /// 0xF20 `GICD_SPENDSGIRn`.
    pub spendsgir: [ReadPureWrite<u8>; 16],
    _reserved5: [u32; 40],
    /// 0xFD0 identification registers (`ICPIDR4`.. `ICCIDR3`).
    pub id: [ReadPure<u32>; 12],
}

/// The GICv2 CPU interface, 0x0000 to 0x1000 (banked per CPU).
#[repr(C, align(4))]
pub struct GiccRegisters {
    /// 0x00 `GICC_CTLR`. Non-secure view: bit 0 enables Group 1, bit 9 is `EOImodeNS`.
    pub ctlr: ReadPureWrite<u32>,
    /// 0x04 `GICC_PMR`, priority mask.
    pub pmr: ReadPureWrite<u32>,
    /// 0x08 `GICC_BPR`.
    pub bpr: ReadPureWrite<u32>,
    /// 0x0C `GICC_IAR`; reading acknowledges.
    pub iar: ReadOnly<u32>,
    /// 0x10 `GICC_EOIR`.
    pub eoir: WriteOnly<u32>,
    /// 0x14 `GICC_RPR`.
    pub rpr: ReadPure<u32>,
    /// 0x18 `GICC_HPPIR`.
    pub hppir: ReadPure<u32>,
    /// 0x1C `GICC_ABPR`.
    pub abpr: ReadPureWrite<u32>,
    /// 0x20 `GICC_AIAR`.
    pub aiar: ReadOnly<u32>,
    /// 0x24 `GICC_AEOIR`.
    pub aeoir: WriteOnly<u32>,
    /// 0x28 `GICC_AHPPIR`.
    pub ahppir: ReadPure<u32>,
    _reserved0: [u32; 41],
    /// 0xD0 `GICC_APRn`.
    pub apr: [ReadPureWrite<u32>; 4],
    /// 0xE0 `GICC_NSAPRn`.
    pub nsapr: [ReadPureWrite<u32>; 4],
    _reserved1: [u32; 3],
    /// 0xFC `GICC_IIDR`.
    pub iidr: ReadPure<u32>,
    _reserved2: [u32; 960],
    /// 0x1000 `GICC_DIR`.
    pub dir: WriteOnly<u32>,
}

/// `GICC_CTLR` bits (Non-secure view, IHI 0048B 4.4.1).
pub mod gicc_ctlr {
    /// Enable signalling of Group 1 interrupts (Group 0 without Security Extensions).
    pub const ENABLE: u32 = 1 << 0;
    /// `EOImodeNS`: EOIR only drops priority, DIR deactivates.
    pub const EOI_MODE_NS: u32 = 1 << 9;
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn distributor_offsets_match_ihi0048b_table_4_1() {
        assert_eq!(offset_of!(GicdRegisters, ctlr), 0x000);
        assert_eq!(offset_of!(GicdRegisters, typer), 0x004);
        assert_eq!(offset_of!(GicdRegisters, iidr), 0x008);
        assert_eq!(offset_of!(GicdRegisters, igroupr), 0x080);
        assert_eq!(offset_of!(GicdRegisters, isenabler), 0x100);
        assert_eq!(offset_of!(GicdRegisters, icenabler), 0x180);
        assert_eq!(offset_of!(GicdRegisters, ispendr), 0x200);
        assert_eq!(offset_of!(GicdRegisters, icpendr), 0x280);
        assert_eq!(offset_of!(GicdRegisters, isactiver), 0x300);
        assert_eq!(offset_of!(GicdRegisters, icactiver), 0x380);
        assert_eq!(offset_of!(GicdRegisters, ipriorityr), 0x400);
        assert_eq!(offset_of!(GicdRegisters, itargetsr), 0x800);
        assert_eq!(offset_of!(GicdRegisters, icfgr), 0xc00);
        assert_eq!(offset_of!(GicdRegisters, sgir), 0xf00);
        assert_eq!(offset_of!(GicdRegisters, cpendsgir), 0xf10);
        assert_eq!(offset_of!(GicdRegisters, spendsgir), 0xf20);
        assert_eq!(offset_of!(GicdRegisters, id), 0xfd0);
        assert_eq!(size_of::<GicdRegisters>(), 0x1000);
    }

    #[test]
    fn cpu_interface_offsets_match_ihi0048b_table_4_2() {
        assert_eq!(offset_of!(GiccRegisters, ctlr), 0x00);
        assert_eq!(offset_of!(GiccRegisters, pmr), 0x04);
        assert_eq!(offset_of!(GiccRegisters, bpr), 0x08);
        assert_eq!(offset_of!(GiccRegisters, iar), 0x0c);
        assert_eq!(offset_of!(GiccRegisters, eoir), 0x10);
        assert_eq!(offset_of!(GiccRegisters, rpr), 0x14);
        assert_eq!(offset_of!(GiccRegisters, hppir), 0x18);
        assert_eq!(offset_of!(GiccRegisters, abpr), 0x1c);
        assert_eq!(offset_of!(GiccRegisters, aiar), 0x20);
        assert_eq!(offset_of!(GiccRegisters, aeoir), 0x24);
        assert_eq!(offset_of!(GiccRegisters, ahppir), 0x28);
        assert_eq!(offset_of!(GiccRegisters, apr), 0xd0);
        assert_eq!(offset_of!(GiccRegisters, nsapr), 0xe0);
        assert_eq!(offset_of!(GiccRegisters, iidr), 0xfc);
        assert_eq!(offset_of!(GiccRegisters, dir), 0x1000);
    }
}
