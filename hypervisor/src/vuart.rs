//! An emulated Arm PrimeCell UART (PL011) for guests (ARM DDI 0183, "PrimeCell UART
//! (PL011) Technical Reference Manual", r1p5), as Linux's `amba-pl011` driver uses it.
//!
//! Transmission is instantaneous: a byte written to `UARTDR` leaves at once for an output
//! buffer that the caller drains with [`Pl011::take_output`], so the transmit FIFO is always
//! empty (`UARTFR.TXFE` set, `TXFF` and `BUSY` never). Received bytes come in through
//! [`Pl011::push_input`] into a 16-entry FIFO (1 entry with `UARTLCR_H.FEN` clear). The
//! interrupt line is [`Pl011::irq_level`] (`UARTMIS != 0`); the caller mirrors it onto the
//! vGIC as a level-sensitive SPI.
//!
//! Interrupt semantics follow TRM 2.8 ("Interrupts"):
//! - `TXRIS` is set when the transmit FIFO drains to or below its trigger level, which here
//!   is right after every write to `UARTDR`. As the TRM's note says, it is based on a
//!   transition: it is not set before any data has been written, and it stays set until
//!   `UARTICR.TXIC` clears it (or the FIFO fills above the trigger level, which an
//!   instantly draining FIFO never does).
//! - `RXRIS` is set when the receive FIFO reaches its trigger level (`UARTIFLS.RXIFLSEL`)
//!   and cleared when reads take it below that level, or by `UARTICR.RXIC`.
//! - `RTRIS` (receive timeout) is set as soon as a byte is received, as if the 32-bit-period
//!   timeout had elapsed, so that a single typed character interrupts; it is cleared when the
//!   FIFO becomes empty, or by `UARTICR.RTIC`.
//! - `OERIS` is set when a byte arrives while the receive FIFO is full (the byte is lost).
#![deny(unsafe_code)]

use crate::mmio::{AccessSize, MmioDevice, MmioError};
use alloc::collections::VecDeque;
use alloc::vec::Vec;

/// Register offsets (TRM 3.2, "Summary of registers").
pub mod regs {
    /// Data Register.
    pub const UARTDR: u64 = 0x000;
    /// Receive Status Register (read) / Error Clear Register (write).
    pub const UARTRSR_ECR: u64 = 0x004;
    /// Flag Register.
    pub const UARTFR: u64 = 0x018;
    /// IrDA Low-Power Counter Register.
    pub const UARTILPR: u64 = 0x020;
    /// Integer Baud Rate Register.
    pub const UARTIBRD: u64 = 0x024;
    /// Fractional Baud Rate Register.
    pub const UARTFBRD: u64 = 0x028;
    /// Line Control Register.
    pub const UARTLCR_H: u64 = 0x02c;
    /// Control Register.
    pub const UARTCR: u64 = 0x030;
    /// Interrupt FIFO Level Select Register.
    pub const UARTIFLS: u64 = 0x034;
    /// Interrupt Mask Set/Clear Register.
    pub const UARTIMSC: u64 = 0x038;
    /// Raw Interrupt Status Register.
    pub const UARTRIS: u64 = 0x03c;
    /// Masked Interrupt Status Register.
    pub const UARTMIS: u64 = 0x040;
    /// Interrupt Clear Register.
    pub const UARTICR: u64 = 0x044;
    /// DMA Control Register.
    pub const UARTDMACR: u64 = 0x048;
    /// UARTPeriphID0; ID1..3 follow at 4-byte steps.
    pub const UARTPERIPHID0: u64 = 0xfe0;
    /// UARTPCellID0; ID1..3 follow at 4-byte steps.
    pub const UARTPCELLID0: u64 = 0xff0;
}

/// `UARTFR` bits.
pub mod fr {
    /// Receive FIFO empty.
    pub const RXFE: u32 = 1 << 4;
    /// Transmit FIFO full.
    pub const TXFF: u32 = 1 << 5;
    /// Receive FIFO full.
    pub const RXFF: u32 = 1 << 6;
    /// Transmit FIFO empty.
    pub const TXFE: u32 = 1 << 7;
}

/// `UARTCR` bits.
pub mod cr {
    /// UART enable.
    pub const UARTEN: u32 = 1 << 0;
    /// Loopback enable.
    pub const LBE: u32 = 1 << 7;
    /// Transmit enable.
    pub const TXE: u32 = 1 << 8;
    /// Receive enable.
    pub const RXE: u32 = 1 << 9;
}

/// `UARTLCR_H` bits.
pub mod lcr_h {
    /// Enable FIFOs.
    pub const FEN: u32 = 1 << 4;
}

/// Interrupt bits, shared by `UARTIMSC`, `UARTRIS`, `UARTMIS` and `UARTICR`.
pub mod int {
    /// Receive interrupt (`RXIM`/`RXRIS`/`RXMIS`/`RXIC`).
    pub const RX: u32 = 1 << 4;
    /// Transmit interrupt.
    pub const TX: u32 = 1 << 5;
    /// Receive timeout interrupt.
    pub const RT: u32 = 1 << 6;
    /// Overrun error interrupt.
    pub const OE: u32 = 1 << 10;
    /// All eleven interrupt bits.
    pub const ALL: u32 = 0x7ff;
}

/// `UARTRSR` / `UARTDR` bits 11:8 error flags: overrun.
const RSR_OE: u16 = 1 << 3;
/// Receive FIFO depth with FIFOs enabled (PL011 r1p4 as identified by `UARTPeriphID2`).
pub const FIFO_DEPTH: usize = 16;
/// Bytes of transmitted data kept for the caller before further output is dropped.
pub const OUTPUT_CAPACITY: usize = 4096;
/// `UARTPeriphID0..3` then `UARTPCellID0..3` (TRM 3.3.14-15), as QEMU's `pl011` reports.
const ID_BYTES: [u8; 8] = [0x11, 0x10, 0x14, 0x00, 0x0d, 0xf0, 0x05, 0xb1];
/// `UARTCR` reset value: `TXE` and `RXE` set.
const CR_RESET: u32 = cr::TXE | cr::RXE;
/// `UARTIFLS` reset value: both trigger levels at 1/2.
const IFLS_RESET: u32 = 0x12;

/// One emulated PL011.
#[derive(Clone, Debug)]
pub struct Pl011 {
    /// Received entries: data in bits 7:0, error flags (FE, PE, BE, OE) in bits 11:8.
    rx: VecDeque<u16>,
    /// Transmitted bytes not yet taken by the caller.
    output: Vec<u8>,
    /// Transmitted bytes dropped because the caller did not drain [`Pl011::take_output`].
    dropped_output: u64,
    rsr: u16,
    ilpr: u32,
    ibrd: u32,
    fbrd: u32,
    lcr_h: u32,
    cr: u32,
    ifls: u32,
    imsc: u32,
    ris: u32,
    dmacr: u32,
    /// The next received entry carries OE (an entry was lost before it).
    pending_overrun: bool,
}

impl Default for Pl011 {
    fn default() -> Self {
        Self::new()
    }
}

impl Pl011 {
    /// A PL011 in its reset state.
    pub fn new() -> Self {
        Self {
            rx: VecDeque::with_capacity(FIFO_DEPTH),
            output: Vec::new(),
            dropped_output: 0,
            rsr: 0,
            ilpr: 0,
            ibrd: 0,
            fbrd: 0,
            lcr_h: 0,
            cr: CR_RESET,
            ifls: IFLS_RESET,
            imsc: 0,
            ris: 0,
            dmacr: 0,
            pending_overrun: false,
        }
    }

    /// The interrupt output (`UARTINTR`): any raw interrupt that is not masked.
    pub fn irq_level(&self) -> bool {
        self.ris & self.imsc != 0
    }

    /// Takes the bytes the guest transmitted since the last call.
    pub fn take_output(&mut self) -> Vec<u8> {
        core::mem::take(&mut self.output)
    }

    /// Hands the bytes the guest transmitted since the last call to `sink`, keeping the
    /// buffer (no allocation per byte on the console path).
    pub fn drain_output(&mut self, sink: impl FnOnce(&[u8])) {
        if !self.output.is_empty() {
            sink(&self.output);
            self.output.clear();
        }
    }

    /// Transmitted bytes lost because the output buffer was full.
    pub fn dropped_output(&self) -> u64 {
        self.dropped_output
    }

    /// Whether [`Pl011::push_input`] would accept a byte now: the UART and its receiver are
    /// enabled and the receive FIFO has room. A caller that holds input until this is
    /// true never loses any.
    pub fn can_accept_input(&self) -> bool {
        self.receiver_enabled() && self.rx.len() < self.rx_depth()
    }

    /// Delivers a byte from the outside world to the receiver. Returns false if it was not
    /// taken: the receiver is disabled (the caller may keep the byte and retry), or the
    /// receive FIFO is full (an overrun: the byte is lost and `UARTRSR.OE`/`OERIS` are set,
    /// as on hardware).
    pub fn push_input(&mut self, byte: u8) -> bool {
        if !self.receiver_enabled() {
            return false;
        }
        self.receive(byte)
    }

    fn receiver_enabled(&self) -> bool {
        self.cr & cr::UARTEN != 0 && self.cr & cr::RXE != 0
    }

    fn fifo_enabled(&self) -> bool {
        self.lcr_h & lcr_h::FEN != 0
    }

    fn rx_depth(&self) -> usize {
        if self.fifo_enabled() {
            FIFO_DEPTH
        } else {
            1
        }
    }

    /// Receive FIFO level at or above which `RXRIS` is set (`UARTIFLS.RXIFLSEL`, TRM 3.3.10).
    fn rx_trigger(&self) -> usize {
        if !self.fifo_enabled() {
            return 1;
        }
        match (self.ifls >> 3) & 0b111 {
            0b000 => FIFO_DEPTH / 8,
            0b001 => FIFO_DEPTH / 4,
            0b010 => FIFO_DEPTH / 2,
            0b011 => FIFO_DEPTH * 3 / 4,
            _ => FIFO_DEPTH * 7 / 8,
        }
    }

    /// Puts a byte into the receive FIFO (from outside or by loopback).
    fn receive(&mut self, byte: u8) -> bool {
        if self.rx.len() >= self.rx_depth() {
            self.rsr |= RSR_OE;
            self.ris |= int::OE;
            self.pending_overrun = true;
            return false;
        }
        let mut entry = u16::from(byte);
        if core::mem::take(&mut self.pending_overrun) {
            entry |= RSR_OE << 8;
        }
        self.rx.push_back(entry);
        self.ris |= int::RT;
        if self.rx.len() >= self.rx_trigger() {
            self.ris |= int::RX;
        }
        true
    }

    fn transmit(&mut self, byte: u8) {
        if self.cr & cr::LBE != 0 {
            self.receive(byte);
        } else if self.output.len() < OUTPUT_CAPACITY {
            self.output.push(byte);
        } else {
            self.dropped_output += 1;
        }
        // The byte left the (instantly draining) FIFO: its level fell to the trigger level.
        self.ris |= int::TX;
    }

    fn read_dr(&mut self) -> u32 {
        let Some(entry) = self.rx.pop_front() else {
            return 0;
        };
        self.rsr = (entry >> 8) & 0xf;
        if self.rx.len() < self.rx_trigger() {
            self.ris &= !int::RX;
        }
        if self.rx.is_empty() {
            self.ris &= !int::RT;
        }
        u32::from(entry)
    }

    fn read_fr(&self) -> u32 {
        let mut flags = fr::TXFE;
        if self.rx.is_empty() {
            flags |= fr::RXFE;
        }
        if self.rx.len() >= self.rx_depth() {
            flags |= fr::RXFF;
        }
        flags
    }

    fn read_reg(&mut self, offset: u64) -> u32 {
        match offset {
            regs::UARTDR => self.read_dr(),
            regs::UARTRSR_ECR => u32::from(self.rsr),
            regs::UARTFR => self.read_fr(),
            regs::UARTILPR => self.ilpr,
            regs::UARTIBRD => self.ibrd,
            regs::UARTFBRD => self.fbrd,
            regs::UARTLCR_H => self.lcr_h,
            regs::UARTCR => self.cr,
            regs::UARTIFLS => self.ifls,
            regs::UARTIMSC => self.imsc,
            regs::UARTRIS => self.ris,
            regs::UARTMIS => self.ris & self.imsc,
            regs::UARTDMACR => self.dmacr,
            0xfe0..=0xffc => ID_BYTES
                .get(((offset - regs::UARTPERIPHID0) / 4) as usize)
                .map_or(0, |b| u32::from(*b)),
            // UARTICR is write-only; reserved and test registers read as zero.
            _ => 0,
        }
    }

    fn write_reg(&mut self, offset: u64, value: u32) {
        match offset {
            regs::UARTDR => self.transmit(value as u8),
            regs::UARTRSR_ECR => self.rsr = 0,
            regs::UARTILPR => self.ilpr = value & 0xff,
            regs::UARTIBRD => self.ibrd = value & 0xffff,
            regs::UARTFBRD => self.fbrd = value & 0x3f,
            regs::UARTLCR_H => self.lcr_h = value & 0xff,
            regs::UARTCR => self.cr = value & 0xff87,
            regs::UARTIFLS => self.ifls = value & 0x3f,
            regs::UARTIMSC => self.imsc = value & int::ALL,
            regs::UARTICR => self.ris &= !(value & int::ALL),
            regs::UARTDMACR => self.dmacr = value & 0x7,
            // UARTFR, UARTRIS, UARTMIS and the ID registers are read-only; reserved
            // locations ignore writes.
            _ => {}
        }
    }
}

/// Registers are 32-bit aligned; Linux uses 16-bit (`readw`) or 32-bit accesses and
/// earlycon may use 8-bit ones, all at the register's offset.
fn check_access(offset: u64, size: AccessSize) -> Result<(), MmioError> {
    if size == AccessSize::DoubleWord || offset & 0b11 != 0 || offset >= 0x1000 {
        return Err(MmioError::BadAccess { offset, size });
    }
    Ok(())
}

impl MmioDevice for Pl011 {
    fn read(&mut self, _: &mut (), offset: u64, size: AccessSize) -> Result<u64, MmioError> {
        check_access(offset, size)?;
        Ok(u64::from(self.read_reg(offset)) & size.mask())
    }

    fn write(
        &mut self,
        _: &mut (),
        offset: u64,
        size: AccessSize,
        value: u64,
    ) -> Result<(), MmioError> {
        check_access(offset, size)?;
        self.write_reg(offset, (value & size.mask()) as u32);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::regs::*;
    use super::*;

    fn rd(u: &mut Pl011, offset: u64) -> u64 {
        u.read(&mut (), offset, AccessSize::Word).unwrap()
    }

    fn wr(u: &mut Pl011, offset: u64, value: u64) {
        u.write(&mut (), offset, AccessSize::Word, value).unwrap();
    }

    /// A UART set up the way Linux's `pl011_startup` leaves it: FIFOs on, UART, TX and RX
    /// enabled, RX and RX-timeout interrupts unmasked.
    fn linux_started() -> Pl011 {
        let mut u = Pl011::new();
        wr(&mut u, UARTICR, 0x7ff);
        wr(&mut u, UARTLCR_H, 0x70); // 8 bits, FIFOs enabled.
        wr(&mut u, UARTCR, 0x301);
        wr(&mut u, UARTIMSC, u64::from(int::RX | int::RT));
        u
    }

    #[test]
    fn reset_values_match_the_trm() {
        let mut u = Pl011::new();
        assert_eq!(rd(&mut u, UARTFR), 0x90);
        assert_eq!(rd(&mut u, UARTCR), 0x300);
        assert_eq!(rd(&mut u, UARTIFLS), 0x12);
        assert_eq!(rd(&mut u, UARTLCR_H), 0);
        assert_eq!(rd(&mut u, UARTIMSC), 0);
        assert_eq!(rd(&mut u, UARTRIS), 0);
        assert!(!u.irq_level());
    }

    #[test]
    fn periph_and_pcell_ids_identify_a_pl011() {
        let mut u = Pl011::new();
        let ids: Vec<u64> = (0..8).map(|i| rd(&mut u, UARTPERIPHID0 + 4 * i)).collect();
        assert_eq!(ids, [0x11, 0x10, 0x14, 0x00, 0x0d, 0xf0, 0x05, 0xb1]);
    }

    #[test]
    fn dr_write_transmits_the_low_byte() {
        let mut u = linux_started();
        wr(&mut u, UARTDR, 0x1_41);
        u.write(&mut (), UARTDR, AccessSize::Byte, u64::from(b'B'))
            .unwrap();
        assert_eq!(u.take_output(), b"AB");
        assert!(u.take_output().is_empty());
        wr(&mut u, UARTDR, u64::from(b'C'));
        let mut got = Vec::new();
        u.drain_output(|b| got.extend_from_slice(b));
        u.drain_output(|b| got.extend_from_slice(b));
        assert_eq!(got, b"C");
    }

    #[test]
    fn dr_write_transmits_even_before_the_guest_enables_the_uart() {
        // earlycon writes DR with whatever CR firmware left; the bytes must not vanish.
        let mut u = Pl011::new();
        wr(&mut u, UARTCR, 0);
        wr(&mut u, UARTDR, u64::from(b'x'));
        assert_eq!(u.take_output(), b"x");
    }

    #[test]
    fn transmit_fifo_is_never_full_or_busy() {
        let mut u = linux_started();
        for _ in 0..100 {
            wr(&mut u, UARTDR, 0x55);
            let flags = rd(&mut u, UARTFR) as u32;
            assert_eq!(flags & (fr::TXFF | 1 << 3), 0);
            assert_ne!(flags & fr::TXFE, 0);
        }
    }

    #[test]
    fn output_beyond_capacity_is_dropped_and_counted() {
        let mut u = linux_started();
        for _ in 0..OUTPUT_CAPACITY + 3 {
            wr(&mut u, UARTDR, 0x2e);
        }
        assert_eq!(u.dropped_output(), 3);
        assert_eq!(u.take_output().len(), OUTPUT_CAPACITY);
    }

    #[test]
    fn dr_read_pops_received_bytes_in_order() {
        let mut u = linux_started();
        assert!(u.push_input(b'h'));
        assert!(u.push_input(b'i'));
        assert_eq!(rd(&mut u, UARTDR), u64::from(b'h'));
        assert_eq!(rd(&mut u, UARTDR), u64::from(b'i'));
        assert_ne!(rd(&mut u, UARTFR) as u32 & fr::RXFE, 0);
    }

    #[test]
    fn fr_reports_receive_fifo_empty_and_full() {
        let mut u = linux_started();
        assert_ne!(rd(&mut u, UARTFR) as u32 & fr::RXFE, 0);
        u.push_input(1);
        assert_eq!(rd(&mut u, UARTFR) as u32 & (fr::RXFE | fr::RXFF), 0);
        for b in 1..FIFO_DEPTH as u8 {
            assert!(u.push_input(b));
        }
        assert_ne!(rd(&mut u, UARTFR) as u32 & fr::RXFF, 0);
        assert!(!u.can_accept_input());
    }

    #[test]
    fn without_fifos_the_receiver_holds_one_byte() {
        let mut u = linux_started();
        wr(&mut u, UARTLCR_H, 0x60); // FEN clear.
        assert!(u.push_input(1));
        assert_ne!(rd(&mut u, UARTFR) as u32 & fr::RXFF, 0);
        assert!(!u.push_input(2));
    }

    #[test]
    fn overrun_sets_rsr_oe_and_oeris_and_ecr_clears_rsr() {
        let mut u = linux_started();
        for b in 0..FIFO_DEPTH as u8 {
            u.push_input(b);
        }
        assert!(!u.push_input(0xff));
        assert_eq!(rd(&mut u, UARTRSR_ECR), 0x8);
        assert_ne!(rd(&mut u, UARTRIS) as u32 & int::OE, 0);
        wr(&mut u, UARTRSR_ECR, 0);
        assert_eq!(rd(&mut u, UARTRSR_ECR), 0);
    }

    #[test]
    fn byte_after_an_overrun_carries_oe_in_dr() {
        let mut u = linux_started();
        for b in 0..FIFO_DEPTH as u8 {
            u.push_input(b);
        }
        u.push_input(0xee); // lost
        for _ in 0..FIFO_DEPTH {
            rd(&mut u, UARTDR);
        }
        u.push_input(b'z');
        assert_eq!(rd(&mut u, UARTDR), 0x800 | u64::from(b'z'));
        assert_eq!(rd(&mut u, UARTRSR_ECR), 0x8);
    }

    #[test]
    fn disabled_receiver_refuses_input_without_losing_state() {
        let mut u = Pl011::new();
        // Reset CR has RXE but not UARTEN.
        assert!(!u.can_accept_input());
        assert!(!u.push_input(b'a'));
        assert_eq!(rd(&mut u, UARTRSR_ECR), 0);
        assert_eq!(rd(&mut u, UARTRIS), 0);
    }

    #[test]
    fn control_and_baud_registers_read_back_within_their_widths() {
        let mut u = Pl011::new();
        for (reg, written, expected) in [
            (UARTIBRD, 0xffff_ffff, 0xffff),
            (UARTFBRD, 0xff, 0x3f),
            (UARTLCR_H, 0x1ff, 0xff),
            (UARTCR, 0xffff, 0xff87),
            (UARTIFLS, 0xff, 0x3f),
            (UARTIMSC, 0xffff, 0x7ff),
            (UARTDMACR, 0xff, 0x7),
            (UARTILPR, 0x1ff, 0xff),
        ] {
            wr(&mut u, reg, written);
            assert_eq!(rd(&mut u, reg), expected, "register {reg:#x}");
        }
    }

    #[test]
    fn read_only_registers_ignore_writes() {
        let mut u = Pl011::new();
        for reg in [UARTFR, UARTRIS, UARTMIS, UARTPERIPHID0] {
            let before = rd(&mut u, reg);
            wr(&mut u, reg, 0xffff);
            assert_eq!(rd(&mut u, reg), before, "register {reg:#x}");
        }
    }

    #[test]
    fn reserved_offsets_read_as_zero_and_ignore_writes() {
        let mut u = Pl011::new();
        wr(&mut u, 0x800, 0xffff);
        assert_eq!(rd(&mut u, 0x800), 0);
        assert_eq!(rd(&mut u, UARTICR), 0);
    }

    #[test]
    fn halfword_and_byte_accesses_are_allowed_at_register_offsets() {
        let mut u = Pl011::new();
        u.write(&mut (), UARTIBRD, AccessSize::HalfWord, 0x1234)
            .unwrap();
        assert_eq!(u.read(&mut (), UARTIBRD, AccessSize::HalfWord), Ok(0x1234));
        assert_eq!(u.read(&mut (), UARTIBRD, AccessSize::Byte), Ok(0x34));
    }

    #[test]
    fn misaligned_and_64_bit_accesses_are_rejected() {
        let mut u = Pl011::new();
        assert_eq!(
            u.read(&mut (), 0x2, AccessSize::Byte),
            Err(MmioError::BadAccess {
                offset: 2,
                size: AccessSize::Byte
            })
        );
        assert!(u.write(&mut (), UARTDR, AccessSize::DoubleWord, 0).is_err());
        assert!(u.take_output().is_empty());
    }

    #[test]
    fn no_transmit_interrupt_before_any_data_is_written() {
        // TRM 2.8.3 note: the TX interrupt is based on a transition through the level.
        let mut u = linux_started();
        wr(&mut u, UARTIMSC, u64::from(int::TX));
        assert_eq!(rd(&mut u, UARTRIS) as u32 & int::TX, 0);
        assert!(!u.irq_level());
    }

    #[test]
    fn linux_transmit_interrupt_flow() {
        let mut u = linux_started();
        // pl011_tx_chars writes while TXIM is masked: the raw status latches.
        wr(&mut u, UARTDR, u64::from(b'a'));
        assert_ne!(rd(&mut u, UARTRIS) as u32 & int::TX, 0);
        assert!(!u.irq_level());
        // pl011_start_tx_pio unmasks TXIM with more to send: the interrupt fires.
        wr(&mut u, UARTIMSC, u64::from(int::RX | int::RT | int::TX));
        assert!(u.irq_level());
        assert_eq!(rd(&mut u, UARTMIS) as u32, int::TX);
        // The handler writes more characters; the FIFO drains, TXIS stays asserted.
        wr(&mut u, UARTDR, u64::from(b'b'));
        assert!(u.irq_level());
        // Nothing left: pl011_stop_tx masks TXIM and the line drops.
        wr(&mut u, UARTIMSC, u64::from(int::RX | int::RT));
        assert!(!u.irq_level());
        assert_eq!(u.take_output(), b"ab");
    }

    #[test]
    fn icr_clears_the_transmit_interrupt() {
        let mut u = linux_started();
        wr(&mut u, UARTIMSC, u64::from(int::TX));
        wr(&mut u, UARTDR, 0x41);
        assert!(u.irq_level());
        wr(&mut u, UARTICR, u64::from(int::TX));
        assert!(!u.irq_level());
        assert_eq!(rd(&mut u, UARTRIS), 0);
    }

    #[test]
    fn single_received_byte_raises_the_timeout_interrupt() {
        let mut u = linux_started();
        u.push_input(b'q');
        assert!(u.irq_level());
        assert_eq!(rd(&mut u, UARTMIS) as u32, int::RT);
        // pl011_rx_chars drains the FIFO; the timeout interrupt clears with it.
        assert_eq!(rd(&mut u, UARTDR), u64::from(b'q'));
        assert!(!u.irq_level());
    }

    #[test]
    fn receive_interrupt_follows_the_fifo_trigger_level() {
        let mut u = linux_started();
        wr(&mut u, UARTIMSC, u64::from(int::RX));
        // IFLS reset: RXIFLSEL = 1/2, 8 of 16 entries.
        for b in 0..7 {
            u.push_input(b);
        }
        assert!(!u.irq_level());
        u.push_input(7);
        assert!(u.irq_level());
        rd(&mut u, UARTDR);
        assert!(!u.irq_level());
    }

    #[test]
    fn receive_interrupt_without_fifos_fires_on_one_byte() {
        let mut u = linux_started();
        wr(&mut u, UARTLCR_H, 0x60);
        wr(&mut u, UARTIMSC, u64::from(int::RX));
        u.push_input(1);
        assert!(u.irq_level());
    }

    #[test]
    fn icr_clears_receive_interrupts_with_data_still_queued() {
        let mut u = linux_started();
        u.push_input(1);
        wr(&mut u, UARTICR, u64::from(int::RT | int::RX));
        assert!(!u.irq_level());
        assert_eq!(rd(&mut u, UARTFR) as u32 & fr::RXFE, 0);
    }

    #[test]
    fn loopback_feeds_transmitted_bytes_to_the_receiver() {
        let mut u = linux_started();
        wr(&mut u, UARTCR, 0x381);
        wr(&mut u, UARTDR, 0x5a);
        assert!(u.take_output().is_empty());
        assert_eq!(rd(&mut u, UARTDR), 0x5a);
    }
}
