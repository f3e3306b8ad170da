//! PL011 console: polled transmit, interrupt-driven receive, identification registers, and
//! the `println!` of the guest.

use crate::mmio::Mmio;
use core::fmt::{self, Write};
use spin::{Mutex, Once};

/// `UARTDR`, data register (PL011 TRM DDI 0183G, 3.3.1).
const UARTDR: usize = 0x000;
/// `UARTFR`, flag register (3.3.3).
pub const UARTFR: usize = 0x018;
/// `UARTFR.RXFE`: receive FIFO empty.
const UARTFR_RXFE: u32 = 1 << 4;
/// `UARTFR.TXFF`: transmit FIFO full.
const UARTFR_TXFF: u32 = 1 << 5;
/// `UARTDR.DATA`, the received character (bits 11:8 are its error flags).
const UARTDR_DATA: u32 = 0xff;
/// `UARTCR`, control register (3.3.8).
pub(crate) const UARTCR: usize = 0x030;
/// `UARTCR.UARTEN | TXE | RXE`.
pub(crate) const UARTCR_ENABLE: u32 = 1 | 1 << 8 | 1 << 9;
/// `UARTIMSC`, interrupt mask set/clear (3.3.10).
pub(crate) const UARTIMSC: usize = 0x038;
/// `UARTICR`, interrupt clear (3.3.13).
const UARTICR: usize = 0x044;
/// Receive (`RXIM`/`RXIC`, bit 4) and receive timeout (`RTIM`/`RTIC`, bit 6) interrupts, the
/// same bits in `UARTIMSC` and `UARTICR`.
const UART_RX_INTERRUPTS: u32 = 1 << 4 | 1 << 6;
/// `UARTPeriphID0` (3.3.15); ID1..3 follow at 4-byte steps.
const UARTPERIPHID0: usize = 0xfe0;
/// `UARTPCellID0` (3.3.16); ID1..3 follow at 4-byte steps.
const UARTPCELLID0: usize = 0xff0;

/// A PL011 UART.
pub struct Pl011 {
    regs: Mmio,
}

impl Pl011 {
    /// Takes over the PL011 whose registers are `regs` and enables its transmitter.
    pub fn new(regs: Mmio) -> Self {
        regs.write32(UARTCR, UARTCR_ENABLE);
        Self { regs }
    }

    fn put(&self, byte: u8) {
        while self.regs.read32(UARTFR) & UARTFR_TXFF != 0 {
            core::hint::spin_loop();
        }
        self.regs.write32(UARTDR, u32::from(byte));
    }

    /// `UARTPeriphID0..3` and `UARTPCellID0..3` as read.
    pub fn ids(&self) -> ([u32; 4], [u32; 4]) {
        let read = |base: usize| core::array::from_fn(|i| self.regs.read32(base + 4 * i));
        (read(UARTPERIPHID0), read(UARTPCELLID0))
    }

    /// Unmasks (`UARTIMSC.RXIM | RTIM`) or masks the receive and receive-timeout interrupts,
    /// leaving the others as they are.
    pub fn unmask_rx(&self, on: bool) {
        let imsc = self.regs.read32(UARTIMSC);
        let imsc = if on {
            imsc | UART_RX_INTERRUPTS
        } else {
            imsc & !UART_RX_INTERRUPTS
        };
        self.regs.write32(UARTIMSC, imsc);
    }

    /// Clears the receive and receive-timeout interrupts (`UARTICR`).
    pub fn clear_rx(&self) {
        self.regs.write32(UARTICR, UART_RX_INTERRUPTS);
    }

    /// The next received byte, or `None` when the receive FIFO is empty (`UARTFR.RXFE`).
    /// Error flags (framing, parity, break, overrun) are dropped with the byte kept.
    pub fn read_byte(&self) -> Option<u8> {
        (self.regs.read32(UARTFR) & UARTFR_RXFE == 0)
            .then(|| (self.regs.read32(UARTDR) & UARTDR_DATA) as u8)
    }

    /// Reads `UARTFR` (a cheap register the benchmark uses as "one trapped MMIO read").
    pub fn flags(&self) -> u32 {
        self.regs.read32(UARTFR)
    }
}

impl Write for &Pl011 {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for byte in s.bytes() {
            if byte == b'\n' {
                self.put(b'\r');
            }
            self.put(byte);
        }
        Ok(())
    }
}

static CONSOLE: Once<Pl011> = Once::new();
static LOCK: Mutex<()> = Mutex::new(());

/// The installed console, if any.
pub fn get() -> Option<&'static Pl011> {
    CONSOLE.get()
}

/// Installs the console (first call wins).
pub fn init(uart: Pl011) -> &'static Pl011 {
    CONSOLE.call_once(|| uart)
}

/// Prints `args` if the console is up; lines from different CPUs do not interleave.
pub fn print(args: fmt::Arguments<'_>) {
    if let Some(mut uart) = CONSOLE.get() {
        let _guard = LOCK.lock();
        // Writing to the PL011 cannot fail.
        let _ = uart.write_fmt(args);
    }
}

/// Prints even while another CPU holds the console lock (panic path).
pub fn print_force(args: fmt::Arguments<'_>) {
    if let Some(mut uart) = CONSOLE.get() {
        let _ = uart.write_fmt(args);
    }
}

/// Prints one line prefixed with `[test-guest] `.
#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => {
        $crate::console::print(format_args!("[test-guest] {}\n", format_args!($($arg)*)))
    };
}
