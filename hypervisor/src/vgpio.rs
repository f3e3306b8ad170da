//! An emulated Arm PrimeCell GPIO (PL061) for guests (ARM DDI 0190B, "PrimeCell General
//! Purpose Input/Output (PL061) Technical Reference Manual"), as Linux's `gpio-pl061`
//! driver uses it. Each VM has one, carrying the virtual power button on line
//! [`POWER_BUTTON_LINE`] (as QEMU's `virt` machine): the guest's `gpio-keys` driver turns a
//! press into `KEY_POWER`.
//!
//! Eight lines. A line's level is its output latch when `GPIODIR` makes it an output, else
//! the external input ([`Pl061::set_input`]). Registers (TRM 3.2):
//! - `GPIODATA` at 0x000-0x3FC: address bits 9:2 mask the access; a read returns the masked
//!   levels, a write changes the masked *output* lines only;
//! - `GPIODIR`, `GPIOIS` (1 = level-sensitive), `GPIOIBE` (both edges), `GPIOIEV`
//!   (1 = rising edge / high level), `GPIOIE` (mask), `GPIORIS`, `GPIOMIS`, `GPIOIC` (write
//!   1 to clear an edge), `GPIOAFSEL` (kept, no effect);
//! - the peripheral and PrimeCell IDs, which Linux's AMBA bus matches (`0x00041061`).
//!
//! An edge-sensitive line latches its `GPIORIS` bit on the chosen edge (either edge with
//! `GPIOIBE`) until `GPIOIC` clears it; a level-sensitive line's bit follows its level.
//! The interrupt output is [`Pl061::irq_level`] (`GPIOMIS != 0`), a level the caller
//! mirrors onto the vGIC.
#![deny(unsafe_code)]

use crate::mmio::{AccessSize, MmioDevice, MmioError};

/// The line of the virtual power button (QEMU `virt`'s `gpio-keys` uses line 3).
pub const POWER_BUTTON_LINE: u8 = 3;

/// Register offsets (TRM 3.2, "Summary of registers").
pub mod regs {
    /// Last byte of the `GPIODATA` window (0x000-0x3FC).
    pub const GPIODATA_END: u64 = 0x3fc;
    /// Data direction (1 = output).
    pub const GPIODIR: u64 = 0x400;
    /// Interrupt sense (1 = level).
    pub const GPIOIS: u64 = 0x404;
    /// Interrupt both edges.
    pub const GPIOIBE: u64 = 0x408;
    /// Interrupt event (1 = rising edge or high level).
    pub const GPIOIEV: u64 = 0x40c;
    /// Interrupt mask (1 = enabled).
    pub const GPIOIE: u64 = 0x410;
    /// Raw interrupt status.
    pub const GPIORIS: u64 = 0x414;
    /// Masked interrupt status.
    pub const GPIOMIS: u64 = 0x418;
    /// Interrupt clear (write only).
    pub const GPIOIC: u64 = 0x41c;
    /// Mode control (alternate function select).
    pub const GPIOAFSEL: u64 = 0x420;
    /// `GPIOPeriphID0`; ID1..3 follow at 4-byte steps.
    pub const GPIOPERIPHID0: u64 = 0xfe0;
    /// `GPIOPCellID0`; ID1..3 follow at 4-byte steps.
    pub const GPIOPCELLID0: u64 = 0xff0;
}

/// `GPIOPeriphID0..3` (part 0x061, designer 0x41 Arm, revision 1; TRM 3.3.11) and
/// `GPIOPCellID0..3` (TRM 3.3.12).
const ID: [u8; 8] = [0x61, 0x10, 0x04, 0x00, 0x0d, 0xf0, 0x05, 0xb1];

/// Size of the register window.
pub const PL061_SIZE: u64 = 0x1000;

/// The PL061's state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pl061 {
    /// Output latches (`GPIODATA` writes).
    out: u8,
    /// External input levels.
    input: u8,
    dir: u8,
    is: u8,
    ibe: u8,
    iev: u8,
    ie: u8,
    /// Latched edge interrupts (edge-sensitive lines).
    edges: u8,
    afsel: u8,
    /// The power button is up and must be released at the next read of its line.
    release_on_read: bool,
}

impl Pl061 {
    /// A PL061 in its reset state: every line an input, low, interrupts masked.
    pub fn new() -> Self {
        Self::default()
    }

    /// The lines' levels.
    pub fn levels(&self) -> u8 {
        (self.out & self.dir) | (self.input & !self.dir)
    }

    /// `GPIORIS`: latched edges of edge-sensitive lines, current levels of level-sensitive
    /// ones.
    pub fn raw_status(&self) -> u8 {
        let level_hit = self.is & !(self.levels() ^ self.iev);
        (self.edges & !self.is) | level_hit
    }

    /// `GPIOMIS`.
    pub fn masked_status(&self) -> u8 {
        self.raw_status() & self.ie
    }

    /// The interrupt output (level).
    pub fn irq_level(&self) -> bool {
        self.masked_status() != 0
    }

    /// Latches the edges of a change of the lines' levels from `old`.
    fn latch_edges(&mut self, old: u8) {
        let new = self.levels();
        let changed = (old ^ new) & !self.is;
        let both = changed & self.ibe;
        // A single edge counts if the new level is the one GPIOIEV selects.
        let single = changed & !self.ibe & !(new ^ self.iev);
        self.edges |= both | single;
    }

    /// Drives external input `line` (0-7; others are ignored) to `high`.
    pub fn set_input(&mut self, line: u8, high: bool) {
        let Some(bit) = 1u8.checked_shl(u32::from(line)) else {
            return;
        };
        let old = self.levels();
        if high {
            self.input |= bit;
        } else {
            self.input &= !bit;
        }
        self.latch_edges(old);
    }

    /// Presses the virtual power button: its line goes high (a rising edge) and falls again
    /// when the guest next reads the line's level, which is what `gpio-keys` does after the
    /// edge interrupt (so the guest sees a press, then a release). A press while the line is
    /// still up (the guest never read it) first drops it, so every press is a new edge.
    pub fn press_power_button(&mut self) {
        if self.release_on_read {
            self.set_input(POWER_BUTTON_LINE, false);
        }
        self.set_input(POWER_BUTTON_LINE, true);
        self.release_on_read = true;
    }

    fn read_reg(&mut self, offset: u64) -> u8 {
        match offset {
            0..=regs::GPIODATA_END => {
                let mask = (offset >> 2) as u8;
                let v = self.levels() & mask;
                if self.release_on_read && mask & (1 << POWER_BUTTON_LINE) != 0 {
                    self.release_on_read = false;
                    self.set_input(POWER_BUTTON_LINE, false);
                }
                v
            }
            regs::GPIODIR => self.dir,
            regs::GPIOIS => self.is,
            regs::GPIOIBE => self.ibe,
            regs::GPIOIEV => self.iev,
            regs::GPIOIE => self.ie,
            regs::GPIORIS => self.raw_status(),
            regs::GPIOMIS => self.masked_status(),
            regs::GPIOAFSEL => self.afsel,
            regs::GPIOPERIPHID0..=0xffc => ID[((offset - regs::GPIOPERIPHID0) / 4) as usize],
            _ => 0,
        }
    }

    fn write_reg(&mut self, offset: u64, v: u8) {
        let old = self.levels();
        match offset {
            0..=regs::GPIODATA_END => {
                let mask = (offset >> 2) as u8 & self.dir;
                self.out = (self.out & !mask) | (v & mask);
            }
            regs::GPIODIR => self.dir = v,
            regs::GPIOIS => self.is = v,
            regs::GPIOIBE => self.ibe = v,
            regs::GPIOIEV => self.iev = v,
            regs::GPIOIE => self.ie = v,
            regs::GPIOIC => self.edges &= !v,
            regs::GPIOAFSEL => self.afsel = v,
            // Read-only registers and reserved space: ignored.
            _ => {}
        }
        self.latch_edges(old);
    }
}

impl<C: ?Sized> MmioDevice<C> for Pl061 {
    /// Registers are 8 bits wide at word-aligned offsets (Linux uses byte accesses); a
    /// wider read returns the register zero-extended, an unaligned one reads 0.
    fn read(&mut self, _ctx: &mut C, offset: u64, _size: AccessSize) -> Result<u64, MmioError> {
        if !offset.is_multiple_of(4) || offset >= PL061_SIZE {
            return Ok(0);
        }
        Ok(u64::from(self.read_reg(offset)))
    }

    /// The low 8 bits of `value` are written; unaligned writes are ignored.
    fn write(
        &mut self,
        _ctx: &mut C,
        offset: u64,
        _size: AccessSize,
        value: u64,
    ) -> Result<(), MmioError> {
        if offset.is_multiple_of(4) && offset < PL061_SIZE {
            self.write_reg(offset, value as u8);
        }
        Ok(())
    }

    fn reset(&mut self) {
        *self = Self::new();
    }
}

#[cfg(test)]
mod tests {
    use super::regs::*;
    use super::*;

    const BIT3: u8 = 1 << POWER_BUTTON_LINE;
    /// The `GPIODATA` address of line 3 alone (`BIT(offset + 2)`, as `pl061_get_value`).
    const DATA3: u64 = (BIT3 as u64) << 2;

    fn rd(g: &mut Pl061, off: u64) -> u8 {
        g.read(&mut (), off, AccessSize::Byte).unwrap() as u8
    }

    fn wr(g: &mut Pl061, off: u64, v: u8) {
        g.write(&mut (), off, AccessSize::Byte, u64::from(v))
            .unwrap();
    }

    /// What Linux's `gpio-keys` makes `gpio-pl061` do for the button: line 3 an input
    /// (`pl061_direction_input`), an edge interrupt on both edges (`pl061_irq_type` with
    /// `IRQ_TYPE_EDGE_BOTH`: IS clear, IBE set), unmasked (`pl061_irq_unmask`).
    fn linux_gpio_keys_setup(g: &mut Pl061) {
        for (reg, set) in [
            (GPIODIR, false),
            (GPIOIS, false),
            (GPIOIBE, true),
            (GPIOIE, true),
        ] {
            let v = rd(g, reg);
            wr(g, reg, if set { v | BIT3 } else { v & !BIT3 });
        }
    }

    #[test]
    fn ids_are_a_pl061s() {
        let mut g = Pl061::new();
        let id: Vec<u8> = (0..8).map(|i| rd(&mut g, GPIOPERIPHID0 + 4 * i)).collect();
        assert_eq!(id, [0x61, 0x10, 0x04, 0x00, 0x0d, 0xf0, 0x05, 0xb1]);
    }

    #[test]
    fn data_is_masked_by_address_bits() {
        let mut g = Pl061::new();
        wr(&mut g, GPIODIR, 0x0f);
        // Write 0xff through a mask of lines 0 and 2: only those change.
        wr(&mut g, 0b101 << 2, 0xff);
        assert_eq!(rd(&mut g, 0xff << 2), 0b101);
        // Inputs (lines 4-7) are not written through GPIODATA.
        wr(&mut g, 0xf0 << 2, 0xff);
        assert_eq!(rd(&mut g, 0xff << 2), 0b101);
        // An input's level reads through its mask bit only.
        g.set_input(6, true);
        assert_eq!(rd(&mut g, 0x40 << 2), 0x40);
        assert_eq!(rd(&mut g, 0x0f << 2), 0b101);
    }

    #[test]
    fn rising_edge_only_with_iev() {
        let mut g = Pl061::new();
        wr(&mut g, GPIOIEV, 1 << 1);
        wr(&mut g, GPIOIE, 0xff);
        g.set_input(1, true);
        assert_eq!(rd(&mut g, GPIORIS), 1 << 1);
        wr(&mut g, GPIOIC, 1 << 1);
        g.set_input(1, false);
        assert_eq!(rd(&mut g, GPIORIS), 0, "a falling edge is not a rising one");
        // Falling edge selected on line 2 (IEV clear).
        g.set_input(2, true);
        assert_eq!(rd(&mut g, GPIORIS), 0);
        g.set_input(2, false);
        assert_eq!(rd(&mut g, GPIORIS), 1 << 2);
    }

    #[test]
    fn level_sensitive_follows_the_line() {
        let mut g = Pl061::new();
        wr(&mut g, GPIOIS, 1);
        wr(&mut g, GPIOIEV, 1);
        wr(&mut g, GPIOIE, 1);
        assert!(!g.irq_level());
        g.set_input(0, true);
        assert!(g.irq_level());
        // GPIOIC does not clear a level.
        wr(&mut g, GPIOIC, 1);
        assert!(g.irq_level());
        g.set_input(0, false);
        assert!(!g.irq_level());
    }

    #[test]
    fn power_button_press_as_linux_sees_it() {
        let mut g = Pl061::new();
        linux_gpio_keys_setup(&mut g);
        // gpio_keys_open reads the state: not pressed.
        assert_eq!(rd(&mut g, DATA3), 0);
        assert!(!g.irq_level());

        g.press_power_button();
        assert_eq!(rd(&mut g, GPIORIS), BIT3);
        assert_eq!(rd(&mut g, GPIOMIS), BIT3);
        assert!(g.irq_level());
        // pl061_irq_handler: MIS, then irq_ack writes GPIOIC.
        wr(&mut g, GPIOIC, BIT3);
        assert!(!g.irq_level());
        // The debounce work reads the level: pressed; the read lets go of the button,
        // and that falling edge interrupts again (both edges).
        assert_eq!(rd(&mut g, DATA3), BIT3);
        assert_eq!(rd(&mut g, GPIOMIS), BIT3);
        wr(&mut g, GPIOIC, BIT3);
        assert_eq!(rd(&mut g, DATA3), 0, "released");
        assert!(!g.irq_level());
    }

    #[test]
    fn masked_button_raises_ris_but_not_the_line() {
        let mut g = Pl061::new();
        wr(&mut g, GPIOIBE, BIT3);
        g.press_power_button();
        assert_eq!(rd(&mut g, GPIORIS), BIT3);
        assert_eq!(rd(&mut g, GPIOMIS), 0);
        assert!(!g.irq_level());
        // Unmasking delivers the latched edge.
        wr(&mut g, GPIOIE, BIT3);
        assert!(g.irq_level());
    }

    #[test]
    fn second_press_without_a_read_is_a_new_edge() {
        let mut g = Pl061::new();
        linux_gpio_keys_setup(&mut g);
        wr(&mut g, GPIOIBE, 0);
        wr(&mut g, GPIOIEV, BIT3); // rising only
        g.press_power_button();
        wr(&mut g, GPIOIC, BIT3);
        g.press_power_button();
        assert_eq!(rd(&mut g, GPIORIS), BIT3);
    }

    #[test]
    fn odd_accesses_read_zero_and_do_nothing() {
        let mut g = Pl061::new();
        wr(&mut g, GPIODIR + 1, 0xff);
        assert_eq!(rd(&mut g, GPIODIR), 0);
        assert_eq!(rd(&mut g, GPIODIR + 2), 0);
        assert_eq!(rd(&mut g, 0x800), 0);
        assert_eq!(g.read(&mut (), 0x1_0000, AccessSize::Word), Ok(0));
        wr(&mut g, GPIORIS, 0xff);
        assert_eq!(rd(&mut g, GPIORIS), 0);
        g.set_input(8, true);
        g.set_input(200, true);
        assert_eq!(g.levels(), 0);
    }

    #[test]
    fn reset_forgets_everything() {
        let mut g = Pl061::new();
        linux_gpio_keys_setup(&mut g);
        g.press_power_button();
        MmioDevice::<()>::reset(&mut g);
        assert_eq!(g, Pl061::new());
    }
}
