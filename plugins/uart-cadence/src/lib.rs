//! Cadence UART (`xlnx,zynqmp-uart`, `cdns,uart-r1p12`, `xlnx,xuartps`, `cdns,uart-r1p8`):
//! the console of Xilinx Zynq UltraScale+ boards such as the ZCU102 (and QEMU `xlnx-zcu102`).
//!
//! Link the crate to register the driver:
//!
//! ```ignore
//! use plugin_uart_cadence as _;
//! ```
//!
//! Direct use:
//!
//! ```ignore
//! use plugin_uart_cadence::CadenceUart;
//! use hypervisor::plugin::Console;
//! // SAFETY: ZynqMP UART0, identity-mapped as device memory, unused elsewhere.
//! let uart = unsafe { CadenceUart::new(core::ptr::NonNull::new(0xff00_0000 as *mut _).unwrap()) };
//! uart.init(Some(100_000_000));
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
use registers::{cr, ixr, mr, sr, CadenceUartRegisters};
use safe_mmio::{field, field_shared, UniqueMmioPointer};

/// Baud rate programmed when the input clock is known.
pub const DEFAULT_BAUD: u32 = 115_200;

/// Receive timeout programmed at init (`RXTOUT`, in units of 4 bit times): fires the
/// timeout interrupt when fewer than `RXWM` characters sit idle in the FIFO.
const RX_TIMEOUT: u32 = 10;

/// Baud generator settings `(CD, BDIV)` for `clock_hz` and `baud`, with
/// `baud = clock / (CD * (BDIV + 1))` (UG1085, "UART Controller" chapter, baud rate
/// generator): `BDIV` in 4..=254, `CD` in 1..=65535, choosing the pair with the smallest error, as
/// Linux `cdns_uart_calc_baud_divs` does. `None` if no pair is within 3 %.
pub fn baud_divisors(clock_hz: u64, baud: u32) -> Option<(u32, u32)> {
    let baud = u64::from(baud);
    if baud == 0 {
        return None;
    }
    let mut best: Option<(u64, u32, u32)> = None;
    for bdiv in 4u64..=254 {
        let per = baud * (bdiv + 1);
        let cd = (clock_hz + per / 2) / per;
        if !(1..=65_535).contains(&cd) {
            continue;
        }
        let actual = clock_hz / (cd * (bdiv + 1));
        let err = actual.abs_diff(baud);
        if best.is_none_or(|(e, _, _)| err < e) {
            best = Some((err, cd as u32, bdiv as u32));
        }
    }
    best.filter(|&(err, _, _)| err * 100 <= baud * 3)
        .map(|(_, cd, bdiv)| (cd, bdiv))
}

/// A Cadence UART. All methods are safe; the only obligation is at [`CadenceUart::new`].
pub struct CadenceUart {
    regs: Mutex<UniqueMmioPointer<'static, CadenceUartRegisters>>,
}

impl CadenceUart {
    /// Takes ownership of the Cadence UART register block at `base`.
    ///
    /// # Safety
    ///
    /// The caller guarantees that:
    /// 1. `base` is the address of a Cadence UART register block (at least the 0x38 bytes
    ///    of [`CadenceUartRegisters`]), 4-byte aligned, mapped as device memory for the rest
    ///    of the program (at EL2 the core identity-maps device windows, so physical ==
    ///    virtual);
    /// 2. nothing else (another driver, a guest mapping) accesses that block while this
    ///    value exists.
    pub unsafe fn new(base: NonNull<CadenceUartRegisters>) -> Self {
        Self {
            // SAFETY: (1) and (2) are exactly `UniqueMmioPointer::new`'s requirements.
            regs: Mutex::new(unsafe { UniqueMmioPointer::new(base) }),
        }
    }

    /// Initialises the UART: 8N1, FIFOs reset, all interrupts disabled and cleared, RX
    /// trigger level 1, TX and RX enabled. With a known `clock_hz` the baud rate is set to
    /// [`DEFAULT_BAUD`]; otherwise the firmware's divisors are kept.
    pub fn init(&self, clock_hz: Option<u64>) {
        let mut regs = self.regs.lock();
        // UG1085 "UART Controller" programming model: disable TX/RX before changing the
        // baud rate.
        field!(regs, cr).write(cr::TX_DIS | cr::RX_DIS);
        if let Some((cd, bdiv)) = clock_hz.and_then(|hz| baud_divisors(hz, DEFAULT_BAUD)) {
            field!(regs, baudgen).write(cd);
            field!(regs, bauddiv).write(bdiv);
        }
        field!(regs, mr).write(mr::MODE_8N1);
        field!(regs, idr).write(ixr::ALL);
        field!(regs, isr).write(ixr::ALL);
        field!(regs, rxwm).write(1);
        field!(regs, rxtout).write(RX_TIMEOUT);
        field!(regs, cr).write(cr::TXRST | cr::RXRST);
        field!(regs, cr).write(cr::TX_EN | cr::RX_EN | cr::TORST | cr::STOPBRK);
    }
}

impl Console for CadenceUart {
    fn write_bytes(&self, bytes: &[u8]) {
        let mut regs = self.regs.lock();
        for &b in bytes {
            while field_shared!(regs, sr).read() & sr::TXFULL != 0 {
                core::hint::spin_loop();
            }
            field!(regs, fifo).write(u32::from(b));
        }
    }

    fn read_byte(&self) -> Option<u8> {
        let mut regs = self.regs.lock();
        if field_shared!(regs, sr).read() & sr::RXEMPTY != 0 {
            return None;
        }
        Some((field!(regs, fifo).read() & 0xff) as u8)
    }

    fn set_rx_interrupt(&self, enabled: bool) {
        let mut regs = self.regs.lock();
        if enabled {
            field!(regs, isr).write(ixr::RXTRIG | ixr::TOUT);
            field!(regs, ier).write(ixr::RXTRIG | ixr::TOUT);
        } else {
            field!(regs, idr).write(ixr::RXTRIG | ixr::TOUT);
        }
    }
}

static INSTANCE: spin::Once<CadenceUart> = spin::Once::new();

fn probe(dev: &'static DeviceDesc, _board: &'static BoardDesc) -> Result<Probed, ProbeError> {
    // The window holds a whole, aligned register block (the core's check).
    let base = register_block::<CadenceUartRegisters>(dev)?;
    let uart = probe_once(&INSTANCE, || {
        // SAFETY: (1) the board's device table places a Cadence UART at `base` with a window of at
        // least the register block's size, aligned for it (`register_block`), and the core
        // identity-maps every device window as device memory before probing; (2)
        // `probe_once` makes this the only instance, and the board validator rejects
        // overlapping windows, so no other driver owns these registers.
        unsafe { CadenceUart::new(base) }
    })?;
    uart.init(dev.clock_hz);
    Ok(Probed::Console(uart))
}

/// Registration: the Cadence UART compatibles used by ZynqMP and Zynq-7000 device trees
/// (upstream `zynqmp.dtsi` lists "xlnx,zynqmp-uart" first, then "cdns,uart-r1p12").
#[linkme::distributed_slice(DRIVERS)]
static CADENCE_UART_DRIVER: DriverEntry = DriverEntry {
    name: "uart-cadence",
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

    /// Reads field `$f` of the fake block `$r` (a leaked raw pointer).
    macro_rules! peek {
        ($r:expr, $f:ident) => {
            // SAFETY: `$r` points to a live, leaked fake block; the field wraps a `u32`.
            unsafe { core::ptr::addr_of!((*$r).$f.0).read_volatile() }
        };
    }

    /// Writes `$v` to field `$f` of the fake block `$r`, as the hardware would.
    macro_rules! poke {
        ($r:expr, $f:ident, $v:expr) => {
            // SAFETY: `$r` points to a live, leaked fake block; the field wraps a `u32`.
            unsafe { core::ptr::addr_of_mut!((*$r).$f.0).write_volatile($v) }
        };
    }

    fn fake() -> *mut CadenceUartRegisters {
        // SAFETY: every field wraps a `u32`; all-zero bytes are valid.
        Box::into_raw(Box::new(unsafe {
            core::mem::zeroed::<CadenceUartRegisters>()
        }))
    }

    fn driver(regs: *mut CadenceUartRegisters) -> CadenceUart {
        // SAFETY: `regs` is a leaked host block only this driver and the test's peeks touch.
        unsafe { CadenceUart::new(NonNull::new(regs).unwrap()) }
    }

    #[test]
    fn divisors_for_zcu102_100mhz_clock() {
        let (cd, bdiv) = baud_divisors(100_000_000, 115_200).unwrap();
        let actual = 100_000_000 / (u64::from(cd) * u64::from(bdiv + 1));
        assert!(
            actual.abs_diff(115_200) * 1000 <= 115_200,
            "{cd} {bdiv} -> {actual}"
        );
        assert!((4..=254).contains(&bdiv));
    }

    #[test]
    fn divisors_reject_clock_too_slow_for_baud() {
        assert_eq!(baud_divisors(100_000, 115_200), None);
    }

    #[test]
    fn init_programs_8n1_and_enables_tx_rx() {
        let regs = fake();
        driver(regs).init(Some(100_000_000));
        assert_eq!(peek!(regs, mr), mr::MODE_8N1);
        assert_eq!(
            peek!(regs, cr) & (cr::TX_EN | cr::RX_EN),
            cr::TX_EN | cr::RX_EN
        );
        assert_eq!(peek!(regs, cr) & (cr::TX_DIS | cr::RX_DIS), 0);
        assert_eq!(peek!(regs, idr), ixr::ALL);
        let (cd, bdiv) = baud_divisors(100_000_000, DEFAULT_BAUD).unwrap();
        assert_eq!((peek!(regs, baudgen), peek!(regs, bauddiv)), (cd, bdiv));
    }

    #[test]
    fn init_without_clock_keeps_divisors() {
        let regs = fake();
        poke!(regs, baudgen, 124);
        poke!(regs, bauddiv, 6);
        driver(regs).init(None);
        assert_eq!((peek!(regs, baudgen), peek!(regs, bauddiv)), (124, 6));
    }

    #[test]
    fn write_puts_byte_in_fifo() {
        let regs = fake();
        driver(regs).write_bytes(b"z");
        assert_eq!(peek!(regs, fifo), u32::from(b'z'));
    }

    #[test]
    fn read_returns_none_when_rx_empty() {
        let regs = fake();
        poke!(regs, sr, sr::RXEMPTY);
        poke!(regs, fifo, u32::from(b'k'));
        assert_eq!(driver(regs).read_byte(), None);
    }

    #[test]
    fn read_returns_fifo_byte() {
        let regs = fake();
        poke!(regs, fifo, u32::from(b'k'));
        assert_eq!(driver(regs).read_byte(), Some(b'k'));
    }

    #[test]
    fn rx_interrupt_uses_ier_and_idr() {
        let regs = fake();
        let uart = driver(regs);
        uart.set_rx_interrupt(true);
        assert_eq!(peek!(regs, ier), ixr::RXTRIG | ixr::TOUT);
        uart.set_rx_interrupt(false);
        assert_eq!(peek!(regs, idr), ixr::RXTRIG | ixr::TOUT);
    }

    #[test]
    fn registered_for_cadence_compatibles() {
        for c in [
            "xlnx,zynqmp-uart",
            "cdns,uart-r1p12",
            "xlnx,xuartps",
            "cdns,uart-r1p8",
        ] {
            let dev = support::device(Box::leak(Box::new([c])), 0, 0x1000, None);
            assert_eq!(
                match_driver(&DRIVERS, dev).map(|d| d.name),
                Some("uart-cadence")
            );
        }
    }

    #[test]
    fn probe_without_reg_is_missing_reg() {
        let board = support::board(support::gic_v2(0, 0), &[]);
        let dev = support::device_without_reg(&["cdns,uart-r1p12"]);
        assert_eq!(probe(dev, board).err(), Some(ProbeError::MissingReg));
    }

    #[test]
    fn probe_initialises_once_then_reports_already_probed() {
        let board = support::board(support::gic_v2(0, 0), &[]);
        let regs = fake();
        let dev = support::device(&["xlnx,xuartps"], regs as u64, 0x1000, Some(100_000_000));
        assert!(matches!(probe(dev, board), Ok(Probed::Console(_))));
        assert_eq!(peek!(regs, mr), mr::MODE_8N1);
        assert_eq!(probe(dev, board).err(), Some(ProbeError::AlreadyProbed));
    }
}
