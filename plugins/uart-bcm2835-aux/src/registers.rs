//! The auxiliary peripherals block of the BCM2835 and BCM2711 ("AUX", bus address
//! 0x7e21_5000, ARM 0xfe21_5000 on the BCM2711): its two common registers and the mini UART
//! ("UART1") at +0x40.
//!
//! Offsets from Broadcom's "BCM2835 ARM Peripherals" (2012), section 2.1 "Auxiliary
//! peripherals register map" and 2.2 "Mini UART"; the BCM2711 keeps the block ("BCM2711 ARM
//! Peripherals", chapter 2). Linux drives the mini UART as an 8250 with `reg-shift` 2 at the
//! AUX base + 0x40 (`drivers/tty/serial/8250/8250_bcm2835aux.c`, device-tree node
//! `serial@7e215040`, `reg = <0x7e215040 0x40>`): its registers are 16550 registers one
//! 32-bit word apart, of which only bits 7:0 carry data.

use safe_mmio::fields::{ReadOnly, ReadPure, ReadPureWrite, ReadWrite};

/// Offset of the mini UART's registers in the AUX block.
pub const MINI_UART_OFFSET: usize = 0x40;

/// The AUX block's common registers (offsets 0x00 and 0x04).
#[repr(C, align(4))]
pub struct AuxRegisters {
    /// 0x00 `AUX_IRQ`: bit 0 is the mini UART's pending interrupt, bits 1/2 SPI1/SPI2's.
    pub irq: ReadPure<u32>,
    /// 0x04 `AUX_ENABLES`: bit 0 enables the mini UART. While it is clear the mini UART's
    /// registers cannot be read or written (section 2.1.1).
    pub enables: ReadPureWrite<u32>,
}

/// The mini UART's registers, `AUX_MU_IO_REG` (AUX + 0x40) to `AUX_MU_BAUD_REG` (AUX + 0x68).
#[repr(C, align(4))]
pub struct MiniUartRegisters {
    /// +0x00 `AUX_MU_IO_REG`: read pops the receive FIFO, write pushes the transmit FIFO
    /// (the baud rate's low byte while `LCR` bit 7, DLAB, is set).
    pub io: ReadWrite<u32>,
    /// +0x04 `AUX_MU_IER_REG`: interrupt enables.
    pub ier: ReadPureWrite<u32>,
    /// +0x08 `AUX_MU_IIR_REG`: interrupt status (read) / FIFO clear (write).
    pub iir: ReadWrite<u32>,
    /// +0x0c `AUX_MU_LCR_REG`: data size, break, DLAB.
    pub lcr: ReadPureWrite<u32>,
    /// +0x10 `AUX_MU_MCR_REG`: RTS.
    pub mcr: ReadPureWrite<u32>,
    /// +0x14 `AUX_MU_LSR_REG`: line status (reading clears the overrun bit).
    pub lsr: ReadOnly<u32>,
    /// +0x18 `AUX_MU_MSR_REG`: modem status (CTS).
    pub msr: ReadOnly<u32>,
    /// +0x1c `AUX_MU_SCRATCH`.
    pub scratch: ReadPureWrite<u32>,
    /// +0x20 `AUX_MU_CNTL_REG`: receiver and transmitter enable, flow control.
    pub cntl: ReadPureWrite<u32>,
    /// +0x24 `AUX_MU_STAT_REG`: FIFO fill levels and state.
    pub stat: ReadPure<u32>,
    /// +0x28 `AUX_MU_BAUD_REG`: the 16-bit baud divisor (baud = core clock / (8 * (n + 1))).
    pub baud: ReadPureWrite<u32>,
}

/// `AUX_ENABLES` bits.
pub mod enables {
    /// Mini UART enable.
    pub const MINI_UART: u32 = 1 << 0;
}

/// `AUX_MU_IER_REG` bits. The datasheet's table swaps bits 0 and 1 (eLinux "BCM2835
/// datasheet errata", p12): bit 0 enables the receive interrupt, as the 16550's `IER.ERBFI`
/// that Linux's 8250 driver sets on it; the same erratum says bits 3:2, marked "don't care",
/// must be set for receive interrupts to be raised.
pub mod ier {
    /// Receive interrupt enable.
    pub const RX: u32 = 1 << 0;
    /// Transmit interrupt enable.
    pub const TX: u32 = 1 << 1;
    /// Bits 3:2, required for receive interrupts (erratum above).
    pub const RX_GATE: u32 = 0b11 << 2;
}

/// `AUX_MU_LSR_REG` bits (section 2.2.2).
pub mod lsr {
    /// Data ready: the receive FIFO holds at least one byte.
    pub const DATA_READY: u32 = 1 << 0;
    /// Transmitter empty: the transmit FIFO can accept at least one byte.
    pub const TX_EMPTY: u32 = 1 << 5;
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    /// Offsets relative to the AUX block, as section 2.1's register map lists them.
    #[test]
    fn offsets_match_the_aux_register_map() {
        assert_eq!(offset_of!(AuxRegisters, irq), 0x00);
        assert_eq!(offset_of!(AuxRegisters, enables), 0x04);
        let at = |off: usize| MINI_UART_OFFSET + off;
        assert_eq!(at(offset_of!(MiniUartRegisters, io)), 0x40);
        assert_eq!(at(offset_of!(MiniUartRegisters, ier)), 0x44);
        assert_eq!(at(offset_of!(MiniUartRegisters, iir)), 0x48);
        assert_eq!(at(offset_of!(MiniUartRegisters, lcr)), 0x4c);
        assert_eq!(at(offset_of!(MiniUartRegisters, mcr)), 0x50);
        assert_eq!(at(offset_of!(MiniUartRegisters, lsr)), 0x54);
        assert_eq!(at(offset_of!(MiniUartRegisters, msr)), 0x58);
        assert_eq!(at(offset_of!(MiniUartRegisters, scratch)), 0x5c);
        assert_eq!(at(offset_of!(MiniUartRegisters, cntl)), 0x60);
        assert_eq!(at(offset_of!(MiniUartRegisters, stat)), 0x64);
        assert_eq!(at(offset_of!(MiniUartRegisters, baud)), 0x68);
        // Inside the device tree's 0x40-byte window.
        assert!(size_of::<MiniUartRegisters>() <= 0x40);
    }
}
