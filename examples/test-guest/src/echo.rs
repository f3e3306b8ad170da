//! The `echo` mode (`echo` in `/chosen/bootargs`): after the checks, echoes console input line
//! by line, taken by the PL011 receive interrupt, until a line `off`.
//!
//! Output, for console-input tests of a hypervisor's UART model and its interrupt:
//!
//! ```text
//! [test-guest] echo: ready
//! [test-guest] echo: hello          (after the input "hello\r")
//! [test-guest] echo: bye            (after the input "off\r"; then PSCI SYSTEM_OFF)
//! ```
//!
//! The PL011's receive (`RXIM`) and receive-timeout (`RTIM`) interrupts are unmasked and its
//! SPI (first `interrupts` entry of the `arm,pl011` node) is routed to the boot CPU, which
//! sleeps in `WFI` between interrupts. The handler clears the interrupts (`UARTICR`) and then
//! drains the receive FIFO while `UARTFR.RXFE` is clear, into a ring that the boot CPU reads
//! with IRQs masked; `line.rs` turns the bytes into lines.

use crate::checks::{cpu_index, CPU_MPIDR};
use crate::console::{self, Pl011};
use crate::dt::Platform;
use crate::gic::{Gic, GicError};
use crate::line::{Escaped, LineEditor};
use crate::{println, sysreg};
use aarch64_cpu::asm::wfi;
use core::sync::atomic::{AtomicU32, AtomicU8, AtomicUsize, Ordering::SeqCst};

/// Bytes the receive ring holds (a power of two); more unread input than this is dropped.
const RX_RING: usize = 256;
/// The line that ends echo mode.
const OFF: &[u8] = b"off";

/// Received bytes: written only by the UART interrupt handler at `RX_HEAD`, read only by
/// `run` at `RX_TAIL`, both on the boot CPU (the SPI is routed there).
static RX: [AtomicU8; RX_RING] = [const { AtomicU8::new(0) }; RX_RING];
/// Bytes ever written to `RX` (wrapping).
static RX_HEAD: AtomicUsize = AtomicUsize::new(0);
/// Bytes ever read from `RX` (wrapping).
static RX_TAIL: AtomicUsize = AtomicUsize::new(0);
/// Bytes dropped because the ring was full, not yet reported.
static RX_DROPPED: AtomicU32 = AtomicU32::new(0);

/// Why echo mode could not start.
#[derive(Debug, thiserror::Error)]
pub enum EchoError {
    /// The PL011 node has no usable `interrupts`.
    #[error("the arm,pl011 node has no GIC interrupt specifier in `interrupts`: echo mode needs the UART's SPI")]
    NoUartInterrupt,
    /// The UART's SPI could not be set up or torn down.
    #[error("the PL011's SPI: {0}")]
    Spi(#[from] GicError),
}

/// Echoes console lines until a line `off`, then prints `echo: bye` and returns (the caller
/// powers off). Runs on the boot CPU after the checks.
pub fn run(platform: &Platform, gic: &Gic, uart: &Pl011) -> Result<(), EchoError> {
    let intid = platform.uart_intid.ok_or(EchoError::NoUartInterrupt)?;
    uart.unmask_rx(false);
    let cpu = cpu_index();
    gic.enable_spi(intid, platform.uart_edge, cpu, CPU_MPIDR[cpu].load(SeqCst))?;
    uart.unmask_rx(true);
    // Bytes that arrived before the interrupt was unmasked may sit in the FIFO with their
    // raw interrupt already cleared (QEMU raises `RXRIS` only as a byte arrives): take them
    // now, with IRQs masked so that the handler is still the only producer of the ring.
    sysreg::irq_disable();
    on_uart_irq();
    sysreg::irq_enable();
    println!("echo: ready");

    let mut editor = LineEditor::new();
    loop {
        let Some(byte) = next_byte() else { continue };
        let dropped = RX_DROPPED.swap(0, SeqCst);
        if dropped != 0 {
            println!("echo: {dropped} byte(s) of input dropped: the receive ring ({RX_RING} bytes) was full");
        }
        match editor.feed(byte) {
            Some(OFF) => break,
            Some(line) => println!("echo: {}", Escaped(line)),
            None => {}
        }
    }
    println!("echo: bye");
    uart.unmask_rx(false);
    gic.disable_spi(intid)?;
    Ok(())
}

/// The next received byte, sleeping in `WFI` until an interrupt if there is none; `None`
/// after a wake-up that brought no byte.
fn next_byte() -> Option<u8> {
    // Check-then-sleep with IRQs masked: WFI wakes on a pending IRQ even while PSTATE.I masks
    // it, so a byte that arrives between the check and the WFI is not missed.
    sysreg::irq_disable();
    let byte = pop();
    if byte.is_none() {
        wfi();
    }
    sysreg::irq_enable();
    byte
}

fn pop() -> Option<u8> {
    let tail = RX_TAIL.load(SeqCst);
    if tail == RX_HEAD.load(SeqCst) {
        return None;
    }
    let byte = RX[tail % RX_RING].load(SeqCst);
    RX_TAIL.store(tail.wrapping_add(1), SeqCst);
    Some(byte)
}

fn push(byte: u8) {
    let head = RX_HEAD.load(SeqCst);
    if head.wrapping_sub(RX_TAIL.load(SeqCst)) >= RX_RING {
        RX_DROPPED.fetch_add(1, SeqCst);
        return;
    }
    RX[head % RX_RING].store(byte, SeqCst);
    RX_HEAD.store(head.wrapping_add(1), SeqCst);
}

/// PL011 interrupt (from `checks::on_irq`, echo mode only): clears the receive interrupts
/// first, so that a byte arriving during the drain raises a new one, then moves every byte
/// in the receive FIFO to the ring. Draining even when the ring is full keeps a
/// level-sensitive line from staying high.
pub fn on_uart_irq() {
    let Some(uart) = console::get() else { return };
    uart.clear_rx();
    while let Some(byte) = uart.read_byte() {
        push(byte);
    }
}
