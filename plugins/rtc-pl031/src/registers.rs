//! PL031 register block, as laid out in the Arm PrimeCell Real Time Clock (PL031) Technical
//! Reference Manual, DDI 0224C, section 3.2 "Summary of RTC registers" (table 3-1).

use safe_mmio::fields::{ReadPure, ReadPureWrite, WriteOnly};

/// The PL031's peripheral ID (`RTCPeriphID3..0` = 0x00, 0x04, 0x10, 0x31: part 0x031,
/// designer 0x41 Arm, revision 1), as QEMU's `pl031` model and the TRM give it.
pub const PERIPH_ID: u32 = 0x0004_1031;

/// The PL031 registers, 4 KiB.
#[repr(C, align(4))]
pub struct Pl031Registers {
    /// 0x000 `RTCDR`: data register, the counter (seconds).
    pub dr: ReadPure<u32>,
    /// 0x004 `RTCMR`: match register.
    pub mr: ReadPureWrite<u32>,
    /// 0x008 `RTCLR`: load register (sets the counter).
    pub lr: ReadPureWrite<u32>,
    /// 0x00C `RTCCR`: control register.
    pub cr: ReadPureWrite<u32>,
    /// 0x010 `RTCIMSC`: interrupt mask set/clear.
    pub imsc: ReadPureWrite<u32>,
    /// 0x014 `RTCRIS`: raw interrupt status.
    pub ris: ReadPure<u32>,
    /// 0x018 `RTCMIS`: masked interrupt status.
    pub mis: ReadPure<u32>,
    /// 0x01C `RTCICR`: interrupt clear.
    pub icr: WriteOnly<u32>,
    _reserved: [u32; (0xfe0 - 0x20) / 4],
    /// 0xFE0..0xFEC `RTCPeriphID0..3`: peripheral ID, 8 bits each.
    pub periph_id: [ReadPure<u32>; 4],
    /// 0xFF0..0xFFC `RTCPCellID0..3`: PrimeCell ID (0x0D, 0xF0, 0x05, 0xB1).
    pub pcell_id: [ReadPure<u32>; 4],
}

/// `RTCCR` bits (TRM 3.3.4).
pub mod cr {
    /// `RTCStart`: the counter runs (cannot be cleared once set, except by reset).
    pub const START: u32 = 1 << 0;
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn offsets_match_trm_table_3_1() {
        assert_eq!(offset_of!(Pl031Registers, dr), 0x000);
        assert_eq!(offset_of!(Pl031Registers, mr), 0x004);
        assert_eq!(offset_of!(Pl031Registers, lr), 0x008);
        assert_eq!(offset_of!(Pl031Registers, cr), 0x00c);
        assert_eq!(offset_of!(Pl031Registers, imsc), 0x010);
        assert_eq!(offset_of!(Pl031Registers, ris), 0x014);
        assert_eq!(offset_of!(Pl031Registers, mis), 0x018);
        assert_eq!(offset_of!(Pl031Registers, icr), 0x01c);
        assert_eq!(offset_of!(Pl031Registers, periph_id), 0xfe0);
        assert_eq!(offset_of!(Pl031Registers, pcell_id), 0xff0);
        assert_eq!(size_of::<Pl031Registers>(), 0x1000);
    }
}
