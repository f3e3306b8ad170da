//! Cadence UART register block, as on Xilinx Zynq UltraScale+ MPSoC.
//!
//! Source: Zynq UltraScale+ Device Technical Reference Manual (UG1085), the "UART
//! Controller" chapter and the register reference (UG1085 appendix, module `UART`: `Control`,
//! `mode`, `Intrpt_en`, ... `Baud_rate_divider`). The same offsets appear in Linux
//! `drivers/tty/serial/xilinx_uartps.c` (`CDNS_UART_*`). On QEMU `xlnx-zcu102`, UART0 is at
//! 0xff00_0000.

use safe_mmio::fields::{ReadOnly, ReadPure, ReadPureWrite, ReadWrite, WriteOnly};

/// The Cadence UART registers from `Control` (0x00) to `Baud_rate_divider` (0x34).
#[repr(C, align(4))]
pub struct CadenceUartRegisters {
    /// 0x00 `Control` (CR): resets, TX/RX enable and disable.
    pub cr: ReadPureWrite<u32>,
    /// 0x04 `mode` (MR): character length, parity, stop bits, clock select.
    pub mr: ReadPureWrite<u32>,
    /// 0x08 `Intrpt_en` (IER): write 1 to enable an interrupt.
    pub ier: WriteOnly<u32>,
    /// 0x0C `Intrpt_dis` (IDR): write 1 to disable an interrupt.
    pub idr: WriteOnly<u32>,
    /// 0x10 `Intrpt_mask` (IMR): which interrupts are enabled.
    pub imr: ReadPure<u32>,
    /// 0x14 `Chnl_int_sts` (ISR): write 1 to clear.
    pub isr: ReadPureWrite<u32>,
    /// 0x18 `Baud_rate_gen` (BAUDGEN): clock divisor `CD`.
    pub baudgen: ReadPureWrite<u32>,
    /// 0x1C `Rcvr_timeout` (RXTOUT): receive timeout in baud-clock periods times 4.
    pub rxtout: ReadPureWrite<u32>,
    /// 0x20 `Rcvr_FIFO_trigger_level` (RXWM).
    pub rxwm: ReadPureWrite<u32>,
    /// 0x24 `Modem_ctrl` (MODEMCR).
    pub modemcr: ReadPureWrite<u32>,
    /// 0x28 `Modem_sts` (MODEMSR); reading clears the delta bits.
    pub modemsr: ReadOnly<u32>,
    /// 0x2C `Channel_sts` (SR): FIFO states.
    pub sr: ReadPure<u32>,
    /// 0x30 `TX_RX_FIFO`: write to transmit, read pops the receive FIFO.
    pub fifo: ReadWrite<u32>,
    /// 0x34 `Baud_rate_divider` (BAUDDIV): `BDIV`.
    pub bauddiv: ReadPureWrite<u32>,
}

/// `Control` bits.
pub mod cr {
    /// Receive logic reset (self-clearing).
    pub const RXRST: u32 = 1 << 0;
    /// Transmit logic reset (self-clearing).
    pub const TXRST: u32 = 1 << 1;
    /// Receive enable.
    pub const RX_EN: u32 = 1 << 2;
    /// Receive disable.
    pub const RX_DIS: u32 = 1 << 3;
    /// Transmit enable.
    pub const TX_EN: u32 = 1 << 4;
    /// Transmit disable.
    pub const TX_DIS: u32 = 1 << 5;
    /// Restart the receiver timeout counter.
    pub const TORST: u32 = 1 << 6;
    /// Stop transmitter break.
    pub const STOPBRK: u32 = 1 << 8;
}

/// `mode` values.
pub mod mr {
    /// 8 data bits (`CHRL` = 0b0x), no parity (`PAR` = 0b1xx at bits 5:3), one stop bit
    /// (`NBSTOP` = 0b00), `uart_ref_clk` undivided (`CLKS` = 0), normal channel mode.
    pub const MODE_8N1: u32 = 0b100 << 3;
}

/// `Chnl_int_sts` / `Intrpt_*` bits.
pub mod ixr {
    /// RX FIFO reached the `RXWM` trigger level.
    pub const RXTRIG: u32 = 1 << 0;
    /// Receiver timeout.
    pub const TOUT: u32 = 1 << 8;
    /// Every interrupt source (bits 12:0).
    pub const ALL: u32 = 0x1fff;
}

/// `Channel_sts` bits.
pub mod sr {
    /// Receive FIFO empty.
    pub const RXEMPTY: u32 = 1 << 1;
    /// Transmit FIFO full.
    pub const TXFULL: u32 = 1 << 4;
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn offsets_match_ug1085_register_reference() {
        assert_eq!(offset_of!(CadenceUartRegisters, cr), 0x00);
        assert_eq!(offset_of!(CadenceUartRegisters, mr), 0x04);
        assert_eq!(offset_of!(CadenceUartRegisters, ier), 0x08);
        assert_eq!(offset_of!(CadenceUartRegisters, idr), 0x0c);
        assert_eq!(offset_of!(CadenceUartRegisters, imr), 0x10);
        assert_eq!(offset_of!(CadenceUartRegisters, isr), 0x14);
        assert_eq!(offset_of!(CadenceUartRegisters, baudgen), 0x18);
        assert_eq!(offset_of!(CadenceUartRegisters, rxtout), 0x1c);
        assert_eq!(offset_of!(CadenceUartRegisters, rxwm), 0x20);
        assert_eq!(offset_of!(CadenceUartRegisters, modemcr), 0x24);
        assert_eq!(offset_of!(CadenceUartRegisters, modemsr), 0x28);
        assert_eq!(offset_of!(CadenceUartRegisters, sr), 0x2c);
        assert_eq!(offset_of!(CadenceUartRegisters, fifo), 0x30);
        assert_eq!(offset_of!(CadenceUartRegisters, bauddiv), 0x34);
    }

    #[test]
    fn block_ends_after_baud_rate_divider() {
        assert_eq!(size_of::<CadenceUartRegisters>(), 0x38);
    }

    #[test]
    fn status_bits_match_ug1085() {
        assert_eq!(sr::TXFULL, 0x10);
        assert_eq!(sr::RXEMPTY, 0x02);
    }
}
