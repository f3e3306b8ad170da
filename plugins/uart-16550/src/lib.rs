//! NS16550-compatible UART console (`ns16550a`, `ns16550`, `snps,dw-apb-uart`, Tegra UARTs).
//!
//! The register stride comes from the compatible: plain 16550s are byte-spaced
//! (reg-shift 0, 8-bit access); the Synopsys DesignWare APB UART found on Rockchip,
//! Marvell Armada and many other SoCs, and the NVIDIA Tegra UART (`nvidia,tegra194-uart`,
//! `nvidia,tegra20-uart`: Linux tegra194.dtsi gives `reg-shift = <2>`), are word-spaced
//! (reg-shift 2, 32-bit access).
//! Link the crate to register the driver:
//!
//! ```ignore
//! use plugin_uart_16550 as _;
//! ```
//!
//! Direct use:
//!
//! ```ignore
//! use plugin_uart_16550::{Layout, Uart16550};
//! use hypervisor::plugin::Console;
//! // SAFETY: a DesignWare UART at 0xfe66_0000, identity-mapped as device memory, unused elsewhere.
//! let base = core::ptr::NonNull::new(0xfe66_0000 as *mut u8).unwrap();
//! let uart = unsafe { Uart16550::new(base, Layout::Word) };
//! uart.init(Some(24_000_000));
//! uart.write_bytes(b"hello\n");
//! ```
//!
//! Not handled: the DesignWare "busy detect" interrupt (IIR = 0x7, LCR written while busy);
//! the driver writes LCR only in [`Uart16550::init`], before any traffic.
#![cfg_attr(not(test), no_std)]

pub mod registers;

use core::ptr::NonNull;
use hypervisor::platform::{BoardDesc, DeviceDesc};
use hypervisor::plugin::{Console, DriverEntry, DriverKind, ProbeError, Probed, DRIVERS};
use hypervisor::sync::Mutex;
use registers::{fcr, ier, lcr, lsr, mcr, DwApbUartRegisters, Ns16550Registers};
use safe_mmio::{field, UniqueMmioPointer};

/// Baud rate programmed when the input clock is known.
pub const DEFAULT_BAUD: u32 = 115_200;

/// Compatibles whose registers are word-spaced (reg-shift 2) with 32-bit access.
const WORD_SPACED: &[&str] = &[
    "snps,dw-apb-uart",
    "nvidia,tegra194-uart",
    "nvidia,tegra20-uart",
];

/// Register spacing and access width.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Register i at offset i, 8-bit access ([`Ns16550Registers`]).
    Byte,
    /// Register i at offset 4 * i, 32-bit access ([`DwApbUartRegisters`]).
    Word,
}

impl Layout {
    /// The layout a device's compatible list implies: word-spaced if any compatible is a
    /// DesignWare APB UART or a Tegra UART, byte-spaced otherwise.
    pub fn for_compatible(compatible: &[&str]) -> Self {
        if compatible.iter().any(|c| WORD_SPACED.contains(c)) {
            Self::Word
        } else {
            Self::Byte
        }
    }

    /// Size in bytes of the register block.
    pub const fn block_size(self) -> usize {
        match self {
            Self::Byte => core::mem::size_of::<Ns16550Registers>(),
            Self::Word => core::mem::size_of::<DwApbUartRegisters>(),
        }
    }

    /// Required alignment of the base address.
    pub const fn alignment(self) -> usize {
        match self {
            Self::Byte => 1,
            Self::Word => 4,
        }
    }
}

/// The 16-bit divisor latch value for `clock_hz` and `baud`: `clock / (16 * baud)`, rounded
/// to nearest. `None` if it is zero or does not fit in DLL:DLM.
pub fn divisor(clock_hz: u64, baud: u32) -> Option<u16> {
    let den = 16 * u64::from(baud);
    if den == 0 {
        return None;
    }
    let div = (clock_hz + den / 2) / den;
    u16::try_from(div).ok().filter(|&d| d != 0)
}

enum Block {
    Byte(UniqueMmioPointer<'static, Ns16550Registers>),
    Word(UniqueMmioPointer<'static, DwApbUartRegisters>),
}

/// Reads an 8-bit register of either layout.
macro_rules! rd {
    ($blk:expr, $f:ident) => {
        match $blk {
            Block::Byte(r) => field!(*r, $f).read(),
            // Only bits 7:0 are defined in the DesignWare UART's 16550 registers.
            Block::Word(r) => field!(*r, $f).read() as u8,
        }
    };
}

/// Writes an 8-bit register of either layout.
macro_rules! wr {
    ($blk:expr, $f:ident, $v:expr) => {
        match $blk {
            Block::Byte(r) => field!(*r, $f).write($v),
            Block::Word(r) => field!(*r, $f).write(u32::from($v)),
        }
    };
}

/// A 16550-compatible UART. All methods are safe; the only obligation is at
/// [`Uart16550::new`].
pub struct Uart16550 {
    regs: Mutex<Block>,
}

impl Uart16550 {
    /// Takes ownership of the 16550 register block at `base`, spaced as `layout` says.
    ///
    /// # Safety
    ///
    /// The caller guarantees that:
    /// 1. `base` is the address of a 16550-compatible register block of `layout`'s spacing
    ///    ([`Layout::block_size`] bytes), aligned to [`Layout::alignment`], mapped as device
    ///    memory for the rest of the program (at EL2 the core identity-maps device windows,
    ///    so physical == virtual);
    /// 2. nothing else (another driver, a guest mapping) accesses that block while this value
    ///    exists.
    pub unsafe fn new(base: NonNull<u8>, layout: Layout) -> Self {
        let block = match layout {
            // SAFETY: (1) valid, aligned, device-mapped block of this layout; (2) unaliased.
            Layout::Byte => Block::Byte(unsafe { UniqueMmioPointer::new(base.cast()) }),
            // SAFETY: as above; (1) includes 4-byte alignment for the word layout.
            Layout::Word => Block::Word(unsafe { UniqueMmioPointer::new(base.cast()) }),
        };
        Self {
            regs: Mutex::new(block),
        }
    }

    /// Initialises the UART: 8N1, FIFOs enabled and cleared, DTR/RTS/OUT2 set, interrupts
    /// off. With a known `clock_hz` the baud rate is set to [`DEFAULT_BAUD`]; otherwise the
    /// firmware's divisor is kept.
    pub fn init(&self, clock_hz: Option<u64>) {
        let mut regs = self.regs.lock();
        let regs = &mut *regs;
        wr!(regs, ier_dlm, 0u8);
        if let Some(div) = clock_hz.and_then(|hz| divisor(hz, DEFAULT_BAUD)) {
            let [lo, hi] = div.to_le_bytes();
            wr!(regs, lcr, lcr::DLAB);
            wr!(regs, rbr_thr_dll, lo);
            wr!(regs, ier_dlm, hi);
        }
        wr!(regs, lcr, lcr::WORD_8N1);
        wr!(
            regs,
            iir_fcr,
            fcr::FIFO_ENABLE | fcr::RX_RESET | fcr::TX_RESET
        );
        wr!(regs, mcr, mcr::DTR | mcr::RTS | mcr::OUT2);
    }
}

impl Console for Uart16550 {
    fn write_bytes(&self, bytes: &[u8]) {
        let mut regs = self.regs.lock();
        let regs = &mut *regs;
        for &b in bytes {
            while rd!(regs, lsr) & lsr::THRE == 0 {
                core::hint::spin_loop();
            }
            wr!(regs, rbr_thr_dll, b);
        }
    }

    fn read_byte(&self) -> Option<u8> {
        let mut regs = self.regs.lock();
        let regs = &mut *regs;
        if rd!(regs, lsr) & lsr::DR == 0 {
            return None;
        }
        Some(rd!(regs, rbr_thr_dll))
    }

    fn set_rx_interrupt(&self, enabled: bool) {
        let mut regs = self.regs.lock();
        let regs = &mut *regs;
        let cur = rd!(regs, ier_dlm);
        let new = if enabled {
            cur | ier::ERBFI
        } else {
            cur & !ier::ERBFI
        };
        wr!(regs, ier_dlm, new);
    }
}

static INSTANCE: spin::Once<Uart16550> = spin::Once::new();

fn probe(dev: &'static DeviceDesc, _board: &'static BoardDesc) -> Result<Probed, ProbeError> {
    let reg = dev.regs.first().ok_or(ProbeError::MissingReg)?;
    let layout = Layout::for_compatible(dev.compatible);
    if reg.size < layout.block_size() as u64 {
        return Err(ProbeError::Hardware(
            "16550 window is smaller than its register block (0x8, or 0x20 for \
             snps,dw-apb-uart and Tegra UARTs); fix the `reg` size",
        ));
    }
    let base = usize::try_from(reg.base)
        .ok()
        .filter(|b| b % layout.alignment() == 0)
        .and_then(|b| NonNull::new(b as *mut u8))
        .ok_or(ProbeError::Hardware(
            "16550 base is zero or not aligned for its access width; fix the `reg` address",
        ))?;
    let mut fresh = false;
    let uart = INSTANCE.call_once(|| {
        fresh = true;
        // SAFETY: (1) the board's device table places a 16550 of this compatible at `base`
        // with a window at least the block's size (checked above, as is alignment), and the
        // core identity-maps every device window as device memory before probing; (2) the
        // `Once` makes this the only instance, and the board validator rejects overlapping
        // windows, so no other driver owns these registers.
        unsafe { Uart16550::new(base, layout) }
    });
    if !fresh {
        return Err(ProbeError::AlreadyProbed);
    }
    uart.init(dev.clock_hz);
    Ok(Probed::Console(uart))
}

/// Registration: true 16550 compatibles only (the BCM2835 mini-UART is not one).
#[linkme::distributed_slice(DRIVERS)]
static UART_16550_DRIVER: DriverEntry = DriverEntry {
    name: "uart-16550",
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

    /// Reads register field `$f` of the fake block `$r` (a leaked raw pointer).
    macro_rules! peek {
        ($r:expr, $f:ident) => {
            // SAFETY: `$r` points to a live, leaked fake block; the field wraps an integer.
            unsafe { core::ptr::addr_of!((*$r).$f.0).read_volatile() }
        };
    }

    /// Writes `$v` to register field `$f` of the fake block `$r`, as the hardware would.
    macro_rules! poke {
        ($r:expr, $f:ident, $v:expr) => {
            // SAFETY: `$r` points to a live, leaked fake block; the field wraps an integer.
            unsafe { core::ptr::addr_of_mut!((*$r).$f.0).write_volatile($v) }
        };
    }

    fn fake_byte() -> *mut Ns16550Registers {
        // SAFETY: every field wraps a `u8`; all-zero bytes are valid.
        Box::into_raw(Box::new(unsafe { core::mem::zeroed::<Ns16550Registers>() }))
    }

    fn fake_word() -> *mut DwApbUartRegisters {
        // SAFETY: every field wraps a `u32`; all-zero bytes are valid.
        Box::into_raw(Box::new(unsafe {
            core::mem::zeroed::<DwApbUartRegisters>()
        }))
    }

    fn driver<T>(regs: *mut T, layout: Layout) -> Uart16550 {
        // SAFETY: `regs` is a leaked host block of `layout`'s type that only this driver and
        // the test's volatile peeks touch.
        unsafe { Uart16550::new(NonNull::new(regs.cast()).unwrap(), layout) }
    }

    #[test]
    fn divisor_for_pc_clock() {
        // 1.8432 MHz / (16 * 115200) = 1.
        assert_eq!(divisor(1_843_200, 115_200), Some(1));
    }

    #[test]
    fn divisor_for_24mhz_rounds_to_nearest() {
        // 24e6 / 1843200 = 13.02 -> 13.
        assert_eq!(divisor(24_000_000, 115_200), Some(13));
    }

    #[test]
    fn divisor_rejects_zero_and_overflow() {
        assert_eq!(divisor(1_000, 115_200), None);
        assert_eq!(divisor(u64::from(u32::MAX) * 64, 9_600), None);
    }

    #[test]
    fn layout_comes_from_compatible() {
        assert_eq!(Layout::for_compatible(&["ns16550a"]), Layout::Byte);
        assert_eq!(
            Layout::for_compatible(&["rockchip,rk3568-uart", "snps,dw-apb-uart"]),
            Layout::Word
        );
    }

    #[test]
    fn tegra_uarts_are_word_spaced() {
        for compatible in [
            &["nvidia,tegra194-uart", "nvidia,tegra20-uart"][..],
            &["nvidia,tegra194-uart"][..],
            &["nvidia,tegra20-uart"][..],
        ] {
            assert_eq!(
                Layout::for_compatible(compatible),
                Layout::Word,
                "{compatible:?}"
            );
        }
    }

    #[test]
    fn init_programs_divisor_8n1_and_fifos_byte_layout() {
        let regs = fake_byte();
        driver(regs, Layout::Byte).init(Some(24_000_000));
        assert_eq!(peek!(regs, rbr_thr_dll), 13);
        assert_eq!(peek!(regs, ier_dlm), 0);
        assert_eq!(peek!(regs, lcr), lcr::WORD_8N1);
        assert_eq!(peek!(regs, iir_fcr), 0b111);
        assert_eq!(peek!(regs, mcr), mcr::DTR | mcr::RTS | mcr::OUT2);
    }

    #[test]
    fn init_uses_word_registers_for_designware() {
        let regs = fake_word();
        driver(regs, Layout::Word).init(Some(24_000_000));
        assert_eq!(peek!(regs, rbr_thr_dll), 13);
        assert_eq!(peek!(regs, lcr), u32::from(lcr::WORD_8N1));
    }

    #[test]
    fn write_waits_for_thre_and_fills_thr() {
        let regs = fake_word();
        poke!(regs, lsr, u32::from(lsr::THRE));
        driver(regs, Layout::Word).write_bytes(b"Z");
        assert_eq!(peek!(regs, rbr_thr_dll), u32::from(b'Z'));
    }

    #[test]
    fn read_returns_none_without_data_ready() {
        let regs = fake_byte();
        poke!(regs, rbr_thr_dll, b'q');
        assert_eq!(driver(regs, Layout::Byte).read_byte(), None);
    }

    #[test]
    fn read_returns_rbr_when_data_ready() {
        let regs = fake_byte();
        poke!(regs, rbr_thr_dll, b'q');
        poke!(regs, lsr, lsr::DR | lsr::THRE);
        assert_eq!(driver(regs, Layout::Byte).read_byte(), Some(b'q'));
    }

    #[test]
    fn rx_interrupt_toggles_erbfi_only() {
        let regs = fake_byte();
        poke!(regs, ier_dlm, 0b10);
        let uart = driver(regs, Layout::Byte);
        uart.set_rx_interrupt(true);
        assert_eq!(peek!(regs, ier_dlm), 0b11);
        uart.set_rx_interrupt(false);
        assert_eq!(peek!(regs, ier_dlm), 0b10);
    }

    #[test]
    fn registered_for_16550_compatibles_only() {
        for c in [
            "ns16550a",
            "ns16550",
            "snps,dw-apb-uart",
            "nvidia,tegra194-uart",
            "nvidia,tegra20-uart",
        ] {
            let dev = support::device(Box::leak(Box::new([c])), 0, 0x100, None);
            assert_eq!(
                match_driver(&DRIVERS, dev).map(|d| d.name),
                Some("uart-16550")
            );
        }
        let aux = support::device(&["brcm,bcm2835-aux-uart"], 0, 0x100, None);
        assert!(match_driver(&DRIVERS, aux).is_none());
    }

    #[test]
    fn probe_rejects_misaligned_designware_base() {
        let board = support::board(support::gic_v2(0, 0), &[]);
        let dev = support::device(&["snps,dw-apb-uart"], 0x1002, 0x100, None);
        assert!(matches!(probe(dev, board), Err(ProbeError::Hardware(_))));
    }

    #[test]
    fn probe_without_reg_is_missing_reg() {
        let board = support::board(support::gic_v2(0, 0), &[]);
        let dev = support::device_without_reg(&["ns16550a"]);
        assert_eq!(probe(dev, board).err(), Some(ProbeError::MissingReg));
    }

    #[test]
    fn probe_initialises_once_then_reports_already_probed() {
        let board = support::board(support::gic_v2(0, 0), &[]);
        let regs = fake_word();
        let dev = support::device(&["snps,dw-apb-uart"], regs as u64, 0x100, Some(24_000_000));
        assert!(matches!(probe(dev, board), Ok(Probed::Console(_))));
        assert_eq!(peek!(regs, rbr_thr_dll), 13);
        assert_eq!(probe(dev, board).err(), Some(ProbeError::AlreadyProbed));
    }
}
