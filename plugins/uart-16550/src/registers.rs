//! NS16550 register blocks: byte-spaced (`ns16550a`, reg-shift 0) and word-spaced
//! (Synopsys DesignWare APB UART, reg-shift 2, 32-bit access).
//!
//! Offsets are register index << reg-shift, indices from the TI PC16550D datasheet
//! (SNLS378), "Register Summary" table: 0 RBR/THR/DLL, 1 IER/DLM, 2 IIR/FCR, 3 LCR,
//! 4 MCR, 5 LSR, 6 MSR, 7 SCR. The DesignWare layout follows the DW_apb_uart databook
//! register map (as used by Linux `drivers/tty/serial/8250/8250_dw.c`, `reg-shift = <2>`).

use safe_mmio::fields::{ReadOnly, ReadPureWrite, ReadWrite};

macro_rules! uart_block {
    ($(#[$m:meta])* $name:ident, $t:ty) => {
        $(#[$m])*
        #[repr(C)]
        pub struct $name {
            /// Index 0: `RBR` (read, pops the RX FIFO) / `THR` (write); `DLL` when `LCR.DLAB`.
            pub rbr_thr_dll: ReadWrite<$t>,
            /// Index 1: `IER`; `DLM` when `LCR.DLAB`.
            pub ier_dlm: ReadPureWrite<$t>,
            /// Index 2: `IIR` (read, clears THRE interrupt) / `FCR` (write).
            pub iir_fcr: ReadWrite<$t>,
            /// Index 3: `LCR`, line control.
            pub lcr: ReadPureWrite<$t>,
            /// Index 4: `MCR`, modem control.
            pub mcr: ReadPureWrite<$t>,
            /// Index 5: `LSR`, line status (read clears error bits).
            pub lsr: ReadOnly<$t>,
            /// Index 6: `MSR`, modem status (read clears delta bits).
            pub msr: ReadOnly<$t>,
            /// Index 7: `SCR`, scratch.
            pub scr: ReadPureWrite<$t>,
        }
    };
}

uart_block!(
    /// Byte-spaced 16550 (`ns16550a`, `ns16550`): register i at offset i, 8-bit access.
    Ns16550Registers,
    u8
);

uart_block!(
    /// Word-spaced 16550 (`snps,dw-apb-uart`): register i at offset 4 * i, 32-bit access.
    DwApbUartRegisters,
    u32
);

/// `IER` bits (PC16550D datasheet, register description).
pub mod ier {
    /// `ERBFI`: received data available interrupt.
    pub const ERBFI: u8 = 1 << 0;
}

/// `FCR` bits (PC16550D datasheet, register description).
pub mod fcr {
    /// FIFO enable.
    pub const FIFO_ENABLE: u8 = 1 << 0;
    /// Clear the receive FIFO.
    pub const RX_RESET: u8 = 1 << 1;
    /// Clear the transmit FIFO.
    pub const TX_RESET: u8 = 1 << 2;
}

/// `LCR` bits (PC16550D datasheet, register description).
pub mod lcr {
    /// 8 data bits (`WLS` = 0b11), no parity, one stop bit.
    pub const WORD_8N1: u8 = 0b11;
    /// Divisor latch access.
    pub const DLAB: u8 = 1 << 7;
}

/// `MCR` bits (PC16550D datasheet, register description).
pub mod mcr {
    /// Data terminal ready.
    pub const DTR: u8 = 1 << 0;
    /// Request to send.
    pub const RTS: u8 = 1 << 1;
    /// `OUT2`: gates the interrupt line on PC-style designs.
    pub const OUT2: u8 = 1 << 3;
}

/// `LSR` bits (PC16550D datasheet, register description).
pub mod lsr {
    /// Data ready: the RX FIFO holds at least one character.
    pub const DR: u8 = 1 << 0;
    /// Transmitter holding register (or TX FIFO) empty.
    pub const THRE: u8 = 1 << 5;
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn ns16550_registers_are_byte_spaced() {
        assert_eq!(offset_of!(Ns16550Registers, rbr_thr_dll), 0);
        assert_eq!(offset_of!(Ns16550Registers, ier_dlm), 1);
        assert_eq!(offset_of!(Ns16550Registers, iir_fcr), 2);
        assert_eq!(offset_of!(Ns16550Registers, lcr), 3);
        assert_eq!(offset_of!(Ns16550Registers, mcr), 4);
        assert_eq!(offset_of!(Ns16550Registers, lsr), 5);
        assert_eq!(offset_of!(Ns16550Registers, msr), 6);
        assert_eq!(offset_of!(Ns16550Registers, scr), 7);
        assert_eq!(size_of::<Ns16550Registers>(), 8);
    }

    #[test]
    fn dw_apb_registers_are_word_spaced() {
        assert_eq!(offset_of!(DwApbUartRegisters, rbr_thr_dll), 0x00);
        assert_eq!(offset_of!(DwApbUartRegisters, ier_dlm), 0x04);
        assert_eq!(offset_of!(DwApbUartRegisters, iir_fcr), 0x08);
        assert_eq!(offset_of!(DwApbUartRegisters, lcr), 0x0c);
        assert_eq!(offset_of!(DwApbUartRegisters, mcr), 0x10);
        assert_eq!(offset_of!(DwApbUartRegisters, lsr), 0x14);
        assert_eq!(offset_of!(DwApbUartRegisters, msr), 0x18);
        assert_eq!(offset_of!(DwApbUartRegisters, scr), 0x1c);
        assert_eq!(size_of::<DwApbUartRegisters>(), 0x20);
    }
}
