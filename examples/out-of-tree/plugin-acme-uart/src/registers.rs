//! ACME UART register block: the PL011 layout (Arm DDI 0183G, table 3-1), the subset used.

use safe_mmio::fields::{ReadPure, ReadPureWrite, ReadWrite, WriteOnly};

/// Registers from `DR` (0x000) to `ICR` (0x044).
#[repr(C, align(4))]
pub struct AcmeUartRegisters {
    /// 0x000 `DR`: data. Reading pops the receive FIFO.
    pub dr: ReadWrite<u32>,
    _reserved0: [u32; 5],
    /// 0x018 `FR`: flags.
    pub fr: ReadPure<u32>,
    _reserved1: [u32; 4],
    /// 0x02C `LCR_H`: line control.
    pub lcr_h: ReadPureWrite<u32>,
    /// 0x030 `CR`: control.
    pub cr: ReadPureWrite<u32>,
    _reserved2: u32,
    /// 0x038 `IMSC`: interrupt mask.
    pub imsc: ReadPureWrite<u32>,
    _reserved3: [u32; 2],
    /// 0x044 `ICR`: interrupt clear.
    pub icr: WriteOnly<u32>,
}

/// `FR` bits.
pub mod fr {
    /// Busy transmitting.
    pub const BUSY: u32 = 1 << 3;
    /// Receive FIFO empty.
    pub const RXFE: u32 = 1 << 4;
    /// Transmit FIFO full.
    pub const TXFF: u32 = 1 << 5;
}

/// `LCR_H` bits.
pub mod lcr_h {
    /// FIFOs enabled.
    pub const FEN: u32 = 1 << 4;
    /// 8-bit words.
    pub const WLEN_8: u32 = 0b11 << 5;
}

/// `CR` bits.
pub mod cr {
    /// UART enable.
    pub const UARTEN: u32 = 1 << 0;
    /// Transmit enable.
    pub const TXE: u32 = 1 << 8;
    /// Receive enable.
    pub const RXE: u32 = 1 << 9;
}

/// `IMSC` / `ICR` bits.
pub mod int {
    /// Receive.
    pub const RX: u32 = 1 << 4;
    /// Receive timeout.
    pub const RT: u32 = 1 << 6;
    /// All interrupt bits.
    pub const ALL: u32 = 0x7ff;
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn offsets_match_the_pl011_layout() {
        assert_eq!(offset_of!(AcmeUartRegisters, dr), 0x000);
        assert_eq!(offset_of!(AcmeUartRegisters, fr), 0x018);
        assert_eq!(offset_of!(AcmeUartRegisters, lcr_h), 0x02c);
        assert_eq!(offset_of!(AcmeUartRegisters, cr), 0x030);
        assert_eq!(offset_of!(AcmeUartRegisters, imsc), 0x038);
        assert_eq!(offset_of!(AcmeUartRegisters, icr), 0x044);
        assert_eq!(size_of::<AcmeUartRegisters>(), 0x48);
    }
}
