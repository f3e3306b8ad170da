//! ACME UART console driver: a community plugin crate that lives outside the hypervisor.
//!
//! It registers itself for `compatible "acme,uart"`; a board whose console lists that
//! compatible first gets this driver. Link it from the image:
//!
//! ```ignore
//! use plugin_acme_uart as _;
//! ```
#![cfg_attr(not(test), no_std)]

pub mod registers;

use core::ptr::NonNull;
use hypervisor::platform::{BoardDesc, DeviceDesc};
use hypervisor::plugin::{Console, DriverEntry, DriverKind, ProbeError, Probed, DRIVERS, probe_once, register_block};
use registers::{cr, fr, int, lcr_h, AcmeUartRegisters};
use safe_mmio::{field, field_shared, UniqueMmioPointer};
use spin::Mutex;

/// An ACME UART. Safe after [`AcmeUart::new`].
pub struct AcmeUart {
    regs: Mutex<UniqueMmioPointer<'static, AcmeUartRegisters>>,
}

impl AcmeUart {
    /// Takes ownership of the register block at `base`.
    ///
    /// # Safety
    ///
    /// The caller guarantees that:
    /// 1. `base` is an ACME UART register block (at least 0x48 bytes), 4-byte aligned and
    ///    mapped as device memory for the rest of the program;
    /// 2. nothing else accesses that block while this value exists.
    pub unsafe fn new(base: NonNull<AcmeUartRegisters>) -> Self {
        Self {
            // SAFETY: (1) and (2) above are `UniqueMmioPointer::new`'s requirements.
            regs: Mutex::new(unsafe { UniqueMmioPointer::new(base) }),
        }
    }

    /// 8N1, FIFOs on, TX and RX on, interrupts masked; the firmware's baud rate is kept.
    pub fn init(&self) {
        let mut regs = self.regs.lock();
        field!(regs, cr).write(0);
        while field_shared!(regs, fr).read() & fr::BUSY != 0 {
            core::hint::spin_loop();
        }
        field!(regs, lcr_h).write(lcr_h::WLEN_8 | lcr_h::FEN);
        field!(regs, imsc).write(0);
        field!(regs, icr).write(int::ALL);
        field!(regs, cr).write(cr::UARTEN | cr::TXE | cr::RXE);
    }
}

impl Console for AcmeUart {
    fn write_bytes(&self, bytes: &[u8]) {
        let mut regs = self.regs.lock();
        for &b in bytes {
            while field_shared!(regs, fr).read() & fr::TXFF != 0 {
                core::hint::spin_loop();
            }
            field!(regs, dr).write(u32::from(b));
        }
    }

    fn read_byte(&self) -> Option<u8> {
        let mut regs = self.regs.lock();
        if field_shared!(regs, fr).read() & fr::RXFE != 0 {
            return None;
        }
        Some((field!(regs, dr).read() & 0xff) as u8)
    }

    fn set_rx_interrupt(&self, enabled: bool) {
        let mut regs = self.regs.lock();
        field!(regs, imsc).modify(|m| {
            if enabled {
                m | int::RX | int::RT
            } else {
                m & !(int::RX | int::RT)
            }
        });
    }
}

static INSTANCE: spin::Once<AcmeUart> = spin::Once::new();

fn probe(dev: &'static DeviceDesc, _board: &'static BoardDesc) -> Result<Probed, ProbeError> {
    // The window holds a whole, aligned register block (the core's check).
    let base = register_block::<AcmeUartRegisters>(dev)?;
    let uart = probe_once(&INSTANCE, || {
        // SAFETY: (1) the board's device table places a ACME UART at `base` with a window of at
        // least the register block's size, aligned for it (`register_block`), and the core
        // identity-maps every device window as device memory before probing; (2)
        // `probe_once` makes this the only instance, and the board validator rejects
        // overlapping windows, so no other driver owns these registers.
        unsafe { AcmeUart::new(base) }
    })?;
    uart.init();
    Ok(Probed::Console(uart))
}

/// Registration: matches `compatible "acme,uart"`.
#[linkme::distributed_slice(DRIVERS)]
static ACME_UART_DRIVER: DriverEntry = DriverEntry {
    name: "acme-uart",
    // Said once, in build.rs, which also announces it to the image crate.
    compatible: include!(concat!(env!("OUT_DIR"), "/compatible.rs")),
    kind: DriverKind::Console,
    probe,
};
