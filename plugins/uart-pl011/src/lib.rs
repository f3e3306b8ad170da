//! Arm PrimeCell PL011 UART: the hypervisor console on QEMU `virt`, Ampere and many SoCs.
//!
//! The board's KDL names a device with `compatible "arm,pl011"`; bring-up calls this
//! crate's [`DriverEntry`] probe, which initialises the UART (8N1, FIFOs on, 115200 baud when
//! the device's clock is known) and hands the core a [`Console`]. Link the crate to register it:
//!
//! ```ignore
//! use plugin_uart_pl011 as _;
//! ```
//!
//! Direct use, as in a test with a register block at a known address:
//!
//! ```ignore
//! use plugin_uart_pl011::Pl011;
//! use hypervisor::plugin::Console;
//! // SAFETY: 0x0900_0000 is QEMU virt's PL011, identity-mapped as device memory, unused elsewhere.
//! let uart = unsafe { Pl011::new(core::ptr::NonNull::new(0x0900_0000 as *mut _).unwrap()) };
//! uart.init(Some(24_000_000));
//! uart.write_bytes(b"hello\n");
//! ```
#![cfg_attr(not(test), no_std)]

pub mod registers;

use core::ptr::NonNull;
use hypervisor::platform::{BoardDesc, DeviceDesc};
use hypervisor::plugin::{
    probe_once, register_block, Console, DriverEntry, DriverKind, ProbeError, Probed, DRIVERS,
};
use hypervisor::sync::Mutex;
use registers::{cr, fr, int, lcr_h, Pl011Registers};
use safe_mmio::{field, field_shared, UniqueMmioPointer};

/// Baud rate programmed when the input clock is known.
pub const DEFAULT_BAUD: u32 = 115_200;

/// Integer and fractional baud rate divisors for `clock_hz` and `baud` (TRM 3.3.6):
/// `BAUDDIV = UARTCLK / (16 * baud)`, `FBRD = round(frac(BAUDDIV) * 64)`. Returns `None`
/// when the divisor does not fit `UARTIBRD` (16 bits) or is zero.
pub fn baud_divisors(clock_hz: u64, baud: u32) -> Option<(u32, u32)> {
    if baud == 0 {
        return None;
    }
    // 64 * UARTCLK / (16 * baud), rounded to nearest.
    let div64 = (clock_hz.checked_mul(4)? + u64::from(baud) / 2) / u64::from(baud);
    let ibrd = div64 >> 6;
    let fbrd = div64 & 0x3f;
    if ibrd == 0 || ibrd > 0xffff {
        return None;
    }
    Some((ibrd as u32, fbrd as u32))
}

/// A PL011 UART. All methods are safe; the only obligation is at [`Pl011::new`].
pub struct Pl011 {
    regs: Mutex<UniqueMmioPointer<'static, Pl011Registers>>,
}

impl Pl011 {
    /// Takes ownership of the PL011 register block at `base`.
    ///
    /// # Safety
    ///
    /// The caller guarantees that:
    /// 1. `base` is the address of a PL011 register block (at least the 0x4C bytes of
    ///    [`Pl011Registers`]), 4-byte aligned, mapped as device memory for the rest of the
    ///    program (at EL2 the core identity-maps device windows, so physical == virtual);
    /// 2. nothing else (another `Pl011`, another driver, a guest mapping) accesses that
    ///    block while this value exists.
    pub unsafe fn new(base: NonNull<Pl011Registers>) -> Self {
        Self {
            // SAFETY: (1) and (2) of this function's contract are those of
            // `UniqueMmioPointer::new`: valid, aligned, device-mapped and unaliased.
            regs: Mutex::new(unsafe { UniqueMmioPointer::new(base) }),
        }
    }

    /// Initialises the UART: 8 data bits, no parity, one stop bit, FIFOs enabled, TX and RX
    /// enabled, all interrupts masked and cleared. With a known `clock_hz` the baud rate is
    /// set to [`DEFAULT_BAUD`]; otherwise the firmware's divisors are kept.
    pub fn init(&self, clock_hz: Option<u64>) {
        let mut regs = self.regs.lock();
        // TRM 3.3.8: disable, wait for the current character, flush the FIFO (FEN = 0),
        // reprogram, enable.
        field!(regs, cr).write(0);
        while field_shared!(regs, fr).read() & fr::BUSY != 0 {
            core::hint::spin_loop();
        }
        field!(regs, lcr_h).write(0);
        if let Some((ibrd, fbrd)) = clock_hz.and_then(|hz| baud_divisors(hz, DEFAULT_BAUD)) {
            field!(regs, ibrd).write(ibrd);
            field!(regs, fbrd).write(fbrd);
        }
        // A write to LCR_H latches IBRD and FBRD (TRM 3.3.6).
        field!(regs, lcr_h).write(lcr_h::WLEN_8 | lcr_h::FEN);
        field!(regs, imsc).write(0);
        field!(regs, icr).write(int::ALL);
        field!(regs, cr).write(cr::UARTEN | cr::TXE | cr::RXE);
    }
}

impl Console for Pl011 {
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
        // Bits 11:8 are the error flags of this character; the byte is bits 7:0.
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

static INSTANCE: spin::Once<Pl011> = spin::Once::new();

fn probe(dev: &'static DeviceDesc, _board: &'static BoardDesc) -> Result<Probed, ProbeError> {
    // The window holds a whole, aligned register block (the core's check).
    let base = register_block::<Pl011Registers>(dev)?;
    let uart = probe_once(&INSTANCE, || {
        // SAFETY: (1) the board's device table places a PL011 at `base` with a window of at
        // least the register block's size, aligned for it (`register_block`), and the core
        // identity-maps every device window as device memory before probing; (2)
        // `probe_once` makes this the only instance, and the board validator rejects
        // overlapping windows, so no other driver owns these registers.
        unsafe { Pl011::new(base) }
    })?;
    uart.init(dev.clock_hz);
    Ok(Probed::Console(uart))
}

/// Registration: matches `compatible "arm,pl011"`.
#[linkme::distributed_slice(DRIVERS)]
static PL011_DRIVER: DriverEntry = DriverEntry {
    name: "uart-pl011",
    // Said once, in build.rs, which also announces it to the image crate.
    compatible: include!(concat!(env!("OUT_DIR"), "/compatible.rs")),
    kind: DriverKind::Console,
    probe,
};

#[cfg(test)]
mod tests {
    use super::*;
    use hypervisor::plugin::match_driver;
    use plugin_test_support as support;

    /// Reads field `$f` of the fake block `$r` (a leaked `*mut Pl011Registers`).
    macro_rules! peek {
        ($r:expr, $f:ident) => {
            // SAFETY: `$r` points to a live, leaked fake block; the field is a `u32` wrapper.
            unsafe { core::ptr::addr_of!((*$r).$f.0).read_volatile() }
        };
    }

    /// Writes `$v` to field `$f` of the fake block `$r`, as the hardware would.
    macro_rules! poke {
        ($r:expr, $f:ident, $v:expr) => {
            // SAFETY: `$r` points to a live, leaked fake block; the field is a `u32` wrapper.
            unsafe { core::ptr::addr_of_mut!((*$r).$f.0).write_volatile($v) }
        };
    }

    /// A zeroed register block in host memory, leaked so the driver can hold it for `'static`.
    fn fake() -> *mut Pl011Registers {
        // SAFETY: every field is a `u32` wrapper, for which all-zero bytes are valid.
        Box::into_raw(Box::new(unsafe { core::mem::zeroed::<Pl011Registers>() }))
    }

    fn driver(regs: *mut Pl011Registers) -> Pl011 {
        // SAFETY: `regs` is a leaked host block that only this driver and the test's
        // volatile peeks touch.
        unsafe { Pl011::new(NonNull::new(regs).unwrap()) }
    }

    #[test]
    fn divisors_match_trm_example() {
        // TRM 3.3.6: UARTCLK 4 MHz, 230400 baud -> IBRD 1, FBRD 5.
        assert_eq!(baud_divisors(4_000_000, 230_400), Some((1, 5)));
    }

    #[test]
    fn divisors_for_24mhz_at_115200() {
        // 24e6 / (16 * 115200) = 13.0208 -> IBRD 13, FBRD round(0.0208 * 64) = 1.
        assert_eq!(baud_divisors(24_000_000, 115_200), Some((13, 1)));
    }

    #[test]
    fn divisors_reject_too_slow_clock() {
        assert_eq!(baud_divisors(1_000, 115_200), None);
    }

    #[test]
    fn init_sets_8n1_fifos_and_enables_tx_rx() {
        let regs = fake();
        driver(regs).init(Some(24_000_000));
        assert_eq!(peek!(regs, lcr_h), lcr_h::WLEN_8 | lcr_h::FEN);
        assert_eq!(peek!(regs, cr), cr::UARTEN | cr::TXE | cr::RXE);
        assert_eq!((peek!(regs, ibrd), peek!(regs, fbrd)), (13, 1));
        assert_eq!(peek!(regs, imsc), 0);
        assert_eq!(peek!(regs, icr), int::ALL);
    }

    #[test]
    fn init_without_clock_keeps_divisors() {
        let regs = fake();
        poke!(regs, ibrd, 26);
        driver(regs).init(None);
        assert_eq!(peek!(regs, ibrd), 26);
    }

    #[test]
    fn write_puts_byte_in_dr() {
        let regs = fake();
        driver(regs).write_bytes(b"A");
        assert_eq!(peek!(regs, dr), u32::from(b'A'));
    }

    #[test]
    fn read_returns_none_when_rx_fifo_empty() {
        let regs = fake();
        poke!(regs, fr, fr::RXFE);
        poke!(regs, dr, u32::from(b'x'));
        assert_eq!(driver(regs).read_byte(), None);
    }

    #[test]
    fn read_returns_byte_without_error_flags() {
        let regs = fake();
        // Overrun error flag (bit 11) set alongside the character.
        poke!(regs, dr, (1 << 11) | u32::from(b'x'));
        assert_eq!(driver(regs).read_byte(), Some(b'x'));
    }

    #[test]
    fn rx_interrupt_sets_and_clears_rxim_rtim_only() {
        let regs = fake();
        poke!(regs, imsc, 1 << 5);
        let uart = driver(regs);
        uart.set_rx_interrupt(true);
        assert_eq!(peek!(regs, imsc), (1 << 5) | int::RX | int::RT);
        uart.set_rx_interrupt(false);
        assert_eq!(peek!(regs, imsc), 1 << 5);
    }

    #[test]
    fn registered_for_arm_pl011() {
        let dev = support::device(&["arm,pl011", "arm,primecell"], 0, 0x1000, None);
        let entry = match_driver(&DRIVERS, dev).expect("PL011 registered in DRIVERS");
        assert_eq!(entry.name, "uart-pl011");
        assert_eq!(entry.kind, DriverKind::Console);
    }

    #[test]
    fn probe_without_reg_is_missing_reg() {
        let board = support::board(support::gic_v3(0, &[]), &[]);
        let dev = support::device_without_reg(&["arm,pl011"]);
        assert_eq!(probe(dev, board).err(), Some(ProbeError::MissingReg));
    }

    #[test]
    fn probe_rejects_short_window() {
        let board = support::board(support::gic_v3(0, &[]), &[]);
        let dev = support::device(&["arm,pl011"], 0x1000, 0x10, None);
        assert!(matches!(probe(dev, board), Err(ProbeError::Hardware(_))));
    }

    #[test]
    fn probe_initialises_once_then_reports_already_probed() {
        let board = support::board(support::gic_v3(0, &[]), &[]);
        let regs = fake();
        let dev = support::device(&["arm,pl011"], regs as u64, 0x1000, Some(24_000_000));
        assert!(matches!(probe(dev, board), Ok(Probed::Console(_))));
        assert_eq!(peek!(regs, ibrd), 13);
        assert_eq!(probe(dev, board).err(), Some(ProbeError::AlreadyProbed));
    }
}
