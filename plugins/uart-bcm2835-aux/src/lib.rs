//! The BCM2835/BCM2711 auxiliary mini UART ("UART1", `brcm,bcm2835-aux-uart`): the console of
//! the Raspberry Pi 4's stock firmware.
//!
//! On the Raspberry Pi 4 the firmware wires the PL011 to the Bluetooth chip and puts the mini
//! UART on the GPIO 14/15 header pins; the upstream device tree's `stdout-path` is
//! `serial1`, the mini UART. Its baud rate divides the VPU core clock, which this driver
//! cannot know: with `enable_uart=1` in `config.txt` the firmware fixes the core clock,
//! enables the mini UART (`AUX_ENABLES`) and programs 115200 8N1. The driver keeps all of
//! that, as a console handed over by the firmware: it never writes the baud divisor, the
//! line control or the enables. It only moves bytes and turns the receive interrupt on and
//! off. Link the crate to register the driver:
//!
//! ```ignore
//! use plugin_uart_bcm2835_aux as _;
//! ```
//!
//! The device's window is either the device tree's own (`serial@7e215040`, `reg
//! <0x7e215040 0x40>`: the mini UART's registers) or the 4 KiB page that holds it, which
//! is the whole AUX block (board files declare pages). With the page, the probe also checks
//! `AUX_ENABLES` and names the `config.txt` line when the firmware left the mini UART off.
#![cfg_attr(not(test), no_std)]

pub mod registers;

use core::mem::size_of;
use core::ptr::NonNull;
use hypervisor::platform::{BoardDesc, DeviceDesc};
use hypervisor::plugin::{
    probe_once, Console, DriverEntry, DriverKind, ProbeError, Probed, DRIVERS,
};
use hypervisor::sync::Mutex;
use registers::{enables, ier, lsr, AuxRegisters, MiniUartRegisters, MINI_UART_OFFSET};
use safe_mmio::{field, UniqueMmioPointer};

/// Where a device's `reg` window puts the registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Window {
    /// The window is the AUX block (a 4 KiB page): common registers at its base, the mini
    /// UART at +0x40.
    AuxBlock {
        /// The AUX block's base (`AUX_IRQ`).
        aux: u64,
    },
    /// The window is the mini UART's own registers (the device tree's `reg`).
    MiniUart {
        /// `AUX_MU_IO_REG`.
        uart: u64,
    },
}

impl Window {
    /// Classifies a `reg` window: a page-aligned base is the AUX block (it must reach past
    /// the mini UART's registers); a base 0x40 past a 256-byte boundary is the mini UART
    /// itself. Anything else is an error that says what to write.
    pub fn of(base: u64, size: u64) -> Result<Self, ProbeError> {
        let uart_size = size_of::<MiniUartRegisters>() as u64;
        if base == 0 {
            return Err(ProbeError::Hardware(
                "mini UART window at address 0; write the AUX block's address in `reg`",
            ));
        }
        if base.is_multiple_of(0x1000) {
            if size < MINI_UART_OFFSET as u64 + uart_size {
                return Err(ProbeError::Hardware(
                    "a page-aligned mini UART window is the AUX block and must reach past \
                     AUX + 0x6c; write size=0x1000",
                ));
            }
            Ok(Self::AuxBlock { aux: base })
        } else if base % 0x100 == MINI_UART_OFFSET as u64 {
            if size < uart_size {
                return Err(ProbeError::Hardware(
                    "the mini UART window is smaller than its registers; write the device \
                     tree's size 0x40",
                ));
            }
            Ok(Self::MiniUart { uart: base })
        } else {
            Err(ProbeError::Hardware(
                "the mini UART window is neither the AUX block (page-aligned) nor AUX + 0x40; \
                 fix the `reg` address",
            ))
        }
    }

    /// Address of `AUX_MU_IO_REG`.
    pub fn uart(self) -> u64 {
        match self {
            Self::AuxBlock { aux } => aux + MINI_UART_OFFSET as u64,
            Self::MiniUart { uart } => uart,
        }
    }
}

/// The mini UART on the firmware's setup. All methods are safe; the only obligation is at
/// [`MiniUart::new`].
pub struct MiniUart {
    regs: Mutex<UniqueMmioPointer<'static, MiniUartRegisters>>,
}

impl MiniUart {
    /// Takes ownership of the mini UART registers at `base` (`AUX_MU_IO_REG`).
    ///
    /// # Safety
    ///
    /// The caller guarantees that:
    /// 1. `base` is the address of the mini UART's registers (the AUX block + 0x40, at least
    ///    the 0x2c bytes of [`MiniUartRegisters`]), 4-byte aligned, mapped as device memory
    ///    for the rest of the program (at EL2 the core identity-maps device windows);
    /// 2. nothing else (another driver, a guest mapping) accesses those registers while this
    ///    value exists.
    pub unsafe fn new(base: NonNull<MiniUartRegisters>) -> Self {
        Self {
            // SAFETY: (1) and (2) of this function's contract are those of
            // `UniqueMmioPointer::new`: valid, aligned, device-mapped and unaliased.
            regs: Mutex::new(unsafe { UniqueMmioPointer::new(base) }),
        }
    }

    /// Takes over from the firmware: masks the mini UART's interrupts until the core asks
    /// for receive interrupts, and changes nothing else (baud divisor, line control, the
    /// receiver and transmitter enables are the firmware's).
    pub fn init(&self) {
        let mut regs = self.regs.lock();
        field!(regs, ier).write(0);
    }
}

impl Console for MiniUart {
    fn write_bytes(&self, bytes: &[u8]) {
        let mut regs = self.regs.lock();
        for &b in bytes {
            while field!(regs, lsr).read() & lsr::TX_EMPTY == 0 {
                core::hint::spin_loop();
            }
            field!(regs, io).write(u32::from(b));
        }
    }

    fn read_byte(&self) -> Option<u8> {
        let mut regs = self.regs.lock();
        if field!(regs, lsr).read() & lsr::DATA_READY == 0 {
            return None;
        }
        // Bits 7:0 are the byte (section 2.2.2, AUX_MU_IO_REG).
        Some((field!(regs, io).read() & 0xff) as u8)
    }

    fn set_rx_interrupt(&self, enabled: bool) {
        let mut regs = self.regs.lock();
        field!(regs, ier).modify(|v| {
            if enabled {
                v | ier::RX | ier::RX_GATE
            } else {
                v & !(ier::RX | ier::RX_GATE)
            }
        });
    }
}

static INSTANCE: spin::Once<MiniUart> = spin::Once::new();

fn probe(dev: &'static DeviceDesc, _board: &'static BoardDesc) -> Result<Probed, ProbeError> {
    let reg = dev.regs.first().ok_or(ProbeError::MissingReg)?;
    let window = Window::of(reg.base, reg.size)?;
    let to_ptr = |addr: u64| {
        usize::try_from(addr)
            .ok()
            .and_then(|a| NonNull::new(a as *mut u8))
            .ok_or(ProbeError::Hardware(
                "the mini UART window is outside the address space; fix the `reg` address",
            ))
    };
    if let Window::AuxBlock { aux } = window {
        let mut common = {
            // SAFETY: the window is the AUX block (page-aligned, at least 0x6c bytes, checked
            // by `Window::of`), identity-mapped as device memory by the core before probing;
            // `AUX_IRQ`/`AUX_ENABLES` (0x00..0x08) do not overlap the mini UART's registers
            // (0x40..), and this pointer lives only for the read below.
            unsafe { UniqueMmioPointer::new(to_ptr(aux)?.cast::<AuxRegisters>()) }
        };
        if field!(common, enables).read() & enables::MINI_UART == 0 {
            return Err(ProbeError::Hardware(
                "the firmware left the mini UART off (AUX_ENABLES bit 0 clear): put \
                 enable_uart=1 in config.txt",
            ));
        }
    }
    let uart_base = to_ptr(window.uart())?.cast::<MiniUartRegisters>();
    let uart = probe_once(&INSTANCE, || {
        // SAFETY: (1) the board's device table places the mini UART (or its AUX block) at
        // this window, `Window::of` checked that the registers lie inside it at a 4-byte
        // aligned address (page-aligned or 0x40 past a 256-byte boundary), and the core
        // identity-maps every device window as device memory before probing; (2)
        // `probe_once` makes this the only instance, and the board validator rejects
        // overlapping windows, so no other driver owns these registers.
        unsafe { MiniUart::new(uart_base) }
    })?;
    uart.init();
    Ok(Probed::Console(uart))
}

/// Registration: matches `compatible "brcm,bcm2835-aux-uart"`.
#[linkme::distributed_slice(DRIVERS)]
static BCM2835_AUX_UART_DRIVER: DriverEntry = DriverEntry {
    name: "uart-bcm2835-aux",
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

    /// Word index of an AUX block offset in the fake page.
    const fn w(offset: usize) -> usize {
        offset / 4
    }
    const ENABLES: usize = w(0x04);
    const IO: usize = w(0x40);
    const IER: usize = w(0x44);
    const IIR: usize = w(0x48);
    const LCR: usize = w(0x4c);
    const MCR: usize = w(0x50);
    const LSR: usize = w(0x54);
    const CNTL: usize = w(0x60);
    const BAUD: usize = w(0x68);

    /// A zeroed 4 KiB AUX page in host memory, leaked so the driver can hold it for
    /// `'static`; 4 KiB aligned like the real block.
    #[repr(C, align(4096))]
    struct Page([u32; 1024]);

    fn fake_page() -> *mut u32 {
        Box::into_raw(Box::new(Page([0; 1024]))).cast()
    }

    fn peek(page: *mut u32, word: usize) -> u32 {
        // SAFETY: `page` is a live, leaked 1024-word block and `word` < 1024.
        unsafe { page.add(word).read_volatile() }
    }

    fn poke(page: *mut u32, word: usize, v: u32) {
        // SAFETY: as for `peek`.
        unsafe { page.add(word).write_volatile(v) }
    }

    fn driver(page: *mut u32) -> MiniUart {
        // SAFETY: `page` is a leaked host block; the mini UART's registers are at +0x40 in
        // it, touched only by this driver and the test's volatile peeks.
        unsafe { MiniUart::new(NonNull::new(page.add(IO).cast()).unwrap()) }
    }

    /// What the firmware leaves with `enable_uart=1`: the mini UART enabled, 8-bit mode
    /// (LCR 0x3), RX and TX on (CNTL 0x3), divisor 541 (500 MHz core clock, 115200 baud).
    fn firmware_setup(page: *mut u32) {
        poke(page, ENABLES, enables::MINI_UART);
        poke(page, LCR, 0x3);
        poke(page, CNTL, 0x3);
        poke(page, BAUD, 541);
        poke(page, MCR, 0);
        poke(page, IER, ier::TX);
    }

    #[test]
    fn a_page_window_is_the_aux_block_and_a_0x40_window_the_uart() {
        assert_eq!(
            Window::of(0xfe21_5000, 0x1000),
            Ok(Window::AuxBlock { aux: 0xfe21_5000 })
        );
        assert_eq!(Window::of(0xfe21_5000, 0x1000).unwrap().uart(), 0xfe21_5040);
        assert_eq!(
            Window::of(0xfe21_5040, 0x40),
            Ok(Window::MiniUart { uart: 0xfe21_5040 })
        );
        for (base, size) in [
            (0xfe21_5080, 0x40), // SPI1, not the UART
            (0xfe21_5040, 0x10), // too small for the registers
            (0xfe21_5000, 0x40), // the AUX block cut off before the UART
            (0, 0x1000),         // no address
            (0xfe21_5044, 0x40), // misaligned
        ] {
            assert!(
                matches!(Window::of(base, size), Err(ProbeError::Hardware(_))),
                "{base:#x} size {size:#x}"
            );
        }
    }

    #[test]
    fn init_masks_interrupts_and_keeps_the_firmwares_line_setup() {
        let page = fake_page();
        firmware_setup(page);
        driver(page).init();
        assert_eq!(peek(page, IER), 0);
        // Baud divisor, line control, RX/TX enables and the AUX enable are untouched.
        assert_eq!(peek(page, BAUD), 541);
        assert_eq!(peek(page, LCR), 0x3);
        assert_eq!(peek(page, CNTL), 0x3);
        assert_eq!(peek(page, ENABLES), enables::MINI_UART);
        assert_eq!(peek(page, IIR), 0);
    }

    #[test]
    fn write_puts_each_byte_in_io_when_the_fifo_has_room() {
        let page = fake_page();
        poke(page, LSR, lsr::TX_EMPTY);
        driver(page).write_bytes(b"ok");
        // The fake keeps the last write.
        assert_eq!(peek(page, IO), u32::from(b'k'));
    }

    #[test]
    fn write_waits_while_the_transmit_fifo_is_full() {
        let page = fake_page();
        let addr = page as usize;
        let writer = std::thread::spawn(move || {
            driver(addr as *mut u32).write_bytes(b"x");
        });
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert_eq!(peek(page, IO), 0, "wrote while LSR said the FIFO was full");
        poke(page, LSR, lsr::TX_EMPTY);
        writer.join().unwrap();
        assert_eq!(peek(page, IO), u32::from(b'x'));
    }

    #[test]
    fn read_returns_none_without_data_ready() {
        let page = fake_page();
        poke(page, IO, u32::from(b'q'));
        poke(page, LSR, lsr::TX_EMPTY);
        assert_eq!(driver(page).read_byte(), None);
    }

    #[test]
    fn read_returns_the_low_byte_of_io_when_data_ready() {
        let page = fake_page();
        poke(page, IO, 0xa500 | u32::from(b'q'));
        poke(page, LSR, lsr::DATA_READY | lsr::TX_EMPTY);
        assert_eq!(driver(page).read_byte(), Some(b'q'));
    }

    #[test]
    fn rx_interrupt_sets_and_clears_the_receive_bits_only() {
        let page = fake_page();
        poke(page, IER, ier::TX);
        let uart = driver(page);
        uart.set_rx_interrupt(true);
        assert_eq!(peek(page, IER), ier::TX | ier::RX | 0b1100);
        uart.set_rx_interrupt(false);
        assert_eq!(peek(page, IER), ier::TX);
    }

    #[test]
    fn registered_for_the_aux_uart_only() {
        let dev = support::device(&["brcm,bcm2835-aux-uart"], 0, 0x1000, None);
        let entry = match_driver(&DRIVERS, dev).expect("mini UART registered in DRIVERS");
        assert_eq!(entry.name, "uart-bcm2835-aux");
        assert_eq!(entry.kind, DriverKind::Console);
        let pl011 = support::device(&["arm,pl011"], 0, 0x1000, None);
        assert!(match_driver(&DRIVERS, pl011).is_none());
    }

    #[test]
    fn probe_without_reg_is_missing_reg() {
        let board = support::board(support::gic_v2(0, 0), &[]);
        let dev = support::device_without_reg(&["brcm,bcm2835-aux-uart"]);
        assert_eq!(probe(dev, board).err(), Some(ProbeError::MissingReg));
    }

    // The one probe that succeeds (the instance is process-wide) also checks the refusals
    // before it, so that their order does not depend on the test runner.
    #[test]
    fn probe_refuses_a_disabled_mini_uart_then_takes_the_firmwares_one_once() {
        let board = support::board(support::gic_v2(0, 0), &[]);
        let page = fake_page();
        let dev = support::device(&["brcm,bcm2835-aux-uart"], page as u64, 0x1000, None);
        // enable_uart=0: AUX_ENABLES bit 0 clear.
        match probe(dev, board) {
            Err(ProbeError::Hardware(msg)) => assert!(msg.contains("enable_uart=1"), "{msg}"),
            other => panic!("expected the config.txt hint, got {:?}", other.err()),
        }
        firmware_setup(page);
        assert!(matches!(probe(dev, board), Ok(Probed::Console(_))));
        assert_eq!(peek(page, IER), 0, "probe masks the interrupts");
        assert_eq!(peek(page, BAUD), 541, "probe keeps the firmware's divisor");
        assert_eq!(probe(dev, board).err(), Some(ProbeError::AlreadyProbed));
    }
}
