//! PL011 register block, as laid out in the Arm PrimeCell UART (PL011) Technical Reference
//! Manual, DDI 0183G, section 3.2 "Summary of registers" (table 3-1).

use safe_mmio::fields::{ReadPure, ReadPureWrite, ReadWrite, WriteOnly};

/// The PL011 registers from `UARTDR` (offset 0x000) to `UARTDMACR` (offset 0x048).
///
/// The peripheral and PrimeCell identification registers at 0xFE0..0x1000 are not used.
#[repr(C, align(4))]
pub struct Pl011Registers {
    /// 0x000 `UARTDR`: data register. Reading pops the receive FIFO, hence `ReadWrite`.
    pub dr: ReadWrite<u32>,
    /// 0x004 `UARTRSR`/`UARTECR`: receive status / error clear.
    pub rsr_ecr: ReadPureWrite<u32>,
    _reserved0: [u32; 4],
    /// 0x018 `UARTFR`: flag register.
    pub fr: ReadPure<u32>,
    _reserved1: u32,
    /// 0x020 `UARTILPR`: IrDA low-power counter.
    pub ilpr: ReadPureWrite<u32>,
    /// 0x024 `UARTIBRD`: integer baud rate divisor.
    pub ibrd: ReadPureWrite<u32>,
    /// 0x028 `UARTFBRD`: fractional baud rate divisor.
    pub fbrd: ReadPureWrite<u32>,
    /// 0x02C `UARTLCR_H`: line control.
    pub lcr_h: ReadPureWrite<u32>,
    /// 0x030 `UARTCR`: control.
    pub cr: ReadPureWrite<u32>,
    /// 0x034 `UARTIFLS`: interrupt FIFO level select.
    pub ifls: ReadPureWrite<u32>,
    /// 0x038 `UARTIMSC`: interrupt mask set/clear.
    pub imsc: ReadPureWrite<u32>,
    /// 0x03C `UARTRIS`: raw interrupt status.
    pub ris: ReadPure<u32>,
    /// 0x040 `UARTMIS`: masked interrupt status.
    pub mis: ReadPure<u32>,
    /// 0x044 `UARTICR`: interrupt clear (write 1 to clear).
    pub icr: WriteOnly<u32>,
    /// 0x048 `UARTDMACR`: DMA control.
    pub dmacr: ReadPureWrite<u32>,
}

/// `UARTFR` bits (TRM 3.3.3).
pub mod fr {
    /// Busy transmitting data.
    pub const BUSY: u32 = 1 << 3;
    /// Receive FIFO empty.
    pub const RXFE: u32 = 1 << 4;
    /// Transmit FIFO full.
    pub const TXFF: u32 = 1 << 5;
}

/// `UARTLCR_H` bits (TRM 3.3.7).
pub mod lcr_h {
    /// Enable FIFOs.
    pub const FEN: u32 = 1 << 4;
    /// Word length 8 bits (`WLEN` = 0b11 at bits 6:5).
    pub const WLEN_8: u32 = 0b11 << 5;
}

/// `UARTCR` bits (TRM 3.3.8).
pub mod cr {
    /// UART enable.
    pub const UARTEN: u32 = 1 << 0;
    /// Transmit enable.
    pub const TXE: u32 = 1 << 8;
    /// Receive enable.
    pub const RXE: u32 = 1 << 9;
}

/// `UARTIMSC` / `UARTICR` bits (TRM 3.3.10, 3.3.13).
pub mod int {
    /// Receive interrupt.
    pub const RX: u32 = 1 << 4;
    /// Receive timeout interrupt.
    pub const RT: u32 = 1 << 6;
    /// All eleven interrupt bits (10:0).
    pub const ALL: u32 = 0x7ff;
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn offsets_match_trm_table_3_1() {
        assert_eq!(offset_of!(Pl011Registers, dr), 0x000);
        assert_eq!(offset_of!(Pl011Registers, rsr_ecr), 0x004);
        assert_eq!(offset_of!(Pl011Registers, fr), 0x018);
        assert_eq!(offset_of!(Pl011Registers, ilpr), 0x020);
        assert_eq!(offset_of!(Pl011Registers, ibrd), 0x024);
        assert_eq!(offset_of!(Pl011Registers, fbrd), 0x028);
        assert_eq!(offset_of!(Pl011Registers, lcr_h), 0x02c);
        assert_eq!(offset_of!(Pl011Registers, cr), 0x030);
        assert_eq!(offset_of!(Pl011Registers, ifls), 0x034);
        assert_eq!(offset_of!(Pl011Registers, imsc), 0x038);
        assert_eq!(offset_of!(Pl011Registers, ris), 0x03c);
        assert_eq!(offset_of!(Pl011Registers, mis), 0x040);
        assert_eq!(offset_of!(Pl011Registers, icr), 0x044);
        assert_eq!(offset_of!(Pl011Registers, dmacr), 0x048);
    }

    #[test]
    fn block_ends_after_dmacr() {
        assert_eq!(size_of::<Pl011Registers>(), 0x04c);
    }
}
