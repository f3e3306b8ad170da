//! The type-0 configuration header the bridge emulates for each function (PCI Local Bus
//! 3.0 §6.2, PCIe Base §7.5.1): IDs, Command/Status, BARs with sizing, the capabilities
//! pointer and the interrupt pin. Everything from offset 0x40 belongs to the function.
//!
//! Only what a guest may legitimately change is writable: Command's memory-space,
//! bus-master, parity, SERR and INTx-disable bits, the cache line size, the interrupt
//! line and the address bits of each implemented BAR above its size. A BAR written with
//! all ones reads back its size mask (the sizing handshake every OS does), and an
//! unimplemented BAR, the expansion ROM BAR and every other register ignore writes.
#![deny(unsafe_code)]

use super::{BarSpec, PciError, PciIds};

/// Vendor ID / Device ID.
pub const VENDOR_ID: u16 = 0x00;
/// Command (low half) and Status (high half).
pub const COMMAND: u16 = 0x04;
/// Revision ID and class code.
pub const CLASS_REVISION: u16 = 0x08;
/// Cache line size, latency timer, header type, BIST.
pub const HEADER_TYPE_DWORD: u16 = 0x0c;
/// BAR 0 (BAR n is at `BAR0 + 4 n`).
pub const BAR0: u16 = 0x10;
/// Subsystem vendor ID / subsystem ID.
pub const SUBSYSTEM: u16 = 0x2c;
/// Expansion ROM base address (not implemented: reads 0).
pub const EXPANSION_ROM: u16 = 0x30;
/// Capabilities pointer (low byte).
pub const CAPABILITIES: u16 = 0x34;
/// Interrupt line, interrupt pin, min grant, max latency.
pub const INTERRUPT: u16 = 0x3c;
/// First offset that belongs to the function (capabilities, device registers).
pub const FUNCTION_SPACE: u16 = 0x40;

/// Command: memory space enable.
pub const CMD_MEMORY: u16 = 1 << 1;
/// Command: bus master enable (DMA and MSIs).
pub const CMD_BUS_MASTER: u16 = 1 << 2;
/// Command: parity error response.
pub const CMD_PARITY: u16 = 1 << 6;
/// Command: SERR# enable.
pub const CMD_SERR: u16 = 1 << 8;
/// Command: INTx emulation disable.
pub const CMD_INTX_DISABLE: u16 = 1 << 10;
/// The Command bits a guest can set.
pub const CMD_WRITABLE: u16 =
    CMD_MEMORY | CMD_BUS_MASTER | CMD_PARITY | CMD_SERR | CMD_INTX_DISABLE;

/// Status: INTx is asserted by the function.
pub const STATUS_INTERRUPT: u16 = 1 << 3;
/// Status: the capabilities list at [`CAPABILITIES`] is valid.
pub const STATUS_CAP_LIST: u16 = 1 << 4;

/// BAR flag: 64-bit memory BAR (type 0b10 in bits 2:1).
pub const BAR_64BIT: u32 = 0b10 << 1;
/// BAR flag: prefetchable.
pub const BAR_PREFETCHABLE: u32 = 1 << 3;

/// Interrupt pin value of INTA#.
pub const PIN_INTA: u8 = 1;

/// Smallest BAR the bridge accepts (so that BARs never share a page at stage 2).
pub const MIN_BAR_SIZE: u64 = 0x1000;

/// Checks a function's BARs and returns them by BAR number.
pub fn check_bars(bars: &[BarSpec]) -> Result<[Option<BarSpec>; 6], PciError> {
    let mut by_index = [None; 6];
    let mut used = [false; 6];
    for bar in bars {
        let bad = |why| PciError::BadBar {
            index: bar.index,
            why,
        };
        let regs = if bar.is_64bit { 2 } else { 1 };
        let index = usize::from(bar.index);
        if index + regs > 6 {
            return Err(bad("beyond BAR 5 (a 64-bit BAR takes two registers)"));
        }
        if !bar.size.is_power_of_two() || bar.size < MIN_BAR_SIZE {
            return Err(bad("size is not a power of two of at least 4 KiB"));
        }
        if !bar.is_64bit && bar.size > 1 << 31 {
            return Err(bad("a 32-bit BAR of more than 2 GiB"));
        }
        if used[index..index + regs].iter().any(|&u| u) {
            return Err(bad("shares a register with another BAR"));
        }
        used[index..index + regs].fill(true);
        by_index[index] = Some(*bar);
    }
    Ok(by_index)
}

/// The bridge's view of one function's header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    ids: PciIds,
    bars: [Option<BarSpec>; 6],
    /// Address programmed in each BAR (indexed by BAR number; size bits always 0).
    bar_addr: [u64; 6],
    capabilities: u8,
    command: u16,
    cache_line: u8,
    interrupt_line: u8,
    /// The function's INTx line as it last drove it (before INTx disable).
    pub intx_level: bool,
}

impl Header {
    /// The header of a function with these IDs, BARs and capabilities pointer, in its
    /// reset state.
    pub fn new(ids: PciIds, bars: &[BarSpec], capabilities: u8) -> Result<Self, PciError> {
        Ok(Self {
            ids,
            bars: check_bars(bars)?,
            bar_addr: [0; 6],
            // A pointer into the header itself would make the function's caps unreachable.
            capabilities: if capabilities >= 0x40 {
                capabilities & !3
            } else {
                0
            },
            command: 0,
            cache_line: 0,
            interrupt_line: 0,
            intx_level: false,
        })
    }

    /// Back to the reset state (BARs unassigned, decoding and bus mastering off).
    pub fn reset(&mut self) {
        self.bar_addr = [0; 6];
        self.command = 0;
        self.cache_line = 0;
        self.interrupt_line = 0;
        self.intx_level = false;
    }

    /// The Command register.
    pub fn command(&self) -> u16 {
        self.command
    }

    /// The function drives INTx onto its pin now (its line is high and INTx is enabled).
    pub fn intx_asserted(&self) -> bool {
        self.intx_level && self.command & CMD_INTX_DISABLE == 0
    }

    /// The BAR whose register is `index`, and whether `index` is its upper half.
    fn bar_at(&self, index: usize) -> Option<(BarSpec, bool)> {
        if let Some(Some(b)) = self.bars.get(index) {
            return Some((*b, false));
        }
        match index.checked_sub(1).and_then(|i| self.bars.get(i)) {
            Some(Some(b)) if b.is_64bit => Some((*b, true)),
            _ => None,
        }
    }

    /// Reads the dword at `offset` (a multiple of 4 below 0x40).
    pub fn read(&self, offset: u16) -> u32 {
        match offset {
            VENDOR_ID => u32::from(self.ids.vendor) | u32::from(self.ids.device) << 16,
            COMMAND => {
                let mut status = 0;
                if self.capabilities != 0 {
                    status |= STATUS_CAP_LIST;
                }
                if self.intx_level {
                    status |= STATUS_INTERRUPT;
                }
                u32::from(self.command) | u32::from(status) << 16
            }
            CLASS_REVISION => u32::from(self.ids.revision) | (self.ids.class & 0xff_ffff) << 8,
            // Header type 0, single function, no BIST; latency timer 0.
            HEADER_TYPE_DWORD => u32::from(self.cache_line),
            BAR0..SUBSYSTEM => self.read_bar(usize::from((offset - BAR0) / 4)),
            SUBSYSTEM => u32::from(self.ids.subsystem_vendor) | u32::from(self.ids.subsystem) << 16,
            CAPABILITIES => u32::from(self.capabilities),
            INTERRUPT => u32::from(self.interrupt_line) | u32::from(PIN_INTA) << 8,
            _ => 0,
        }
    }

    fn read_bar(&self, index: usize) -> u32 {
        match self.bar_at(index) {
            None => 0,
            Some((_, true)) => (self.bar_addr[index - 1] >> 32) as u32,
            Some((b, false)) => {
                let mut flags = 0;
                if b.is_64bit {
                    flags |= BAR_64BIT;
                }
                if b.prefetchable {
                    flags |= BAR_PREFETCHABLE;
                }
                self.bar_addr[index] as u32 | flags
            }
        }
    }

    /// Writes the bytes of `value` selected by `byte_mask` (bit n = byte n) to the dword at
    /// `offset` (a multiple of 4 below 0x40).
    pub fn write(&mut self, offset: u16, value: u32, byte_mask: u8) {
        let mut mask = 0u32;
        for i in 0..4 {
            if byte_mask & (1 << i) != 0 {
                mask |= 0xff << (8 * i);
            }
        }
        let merged = (self.read(offset) & !mask) | (value & mask);
        match offset {
            // Status bits are read-only or RW1C with nothing ever set: only Command.
            COMMAND if mask & 0xffff != 0 => self.command = merged as u16 & CMD_WRITABLE,
            HEADER_TYPE_DWORD => self.cache_line = merged as u8,
            BAR0..SUBSYSTEM => self.write_bar(usize::from((offset - BAR0) / 4), merged),
            INTERRUPT => self.interrupt_line = merged as u8,
            _ => {}
        }
    }

    fn write_bar(&mut self, index: usize, value: u32) {
        let Some((b, upper)) = self.bar_at(index) else {
            return;
        };
        let size_mask = !(b.size - 1);
        if upper {
            let low = self.bar_addr[index - 1] & 0xffff_ffff;
            self.bar_addr[index - 1] = ((u64::from(value) << 32) | low) & size_mask;
        } else {
            let high = if b.is_64bit {
                self.bar_addr[index] & !0xffff_ffff
            } else {
                0
            };
            self.bar_addr[index] = (high | u64::from(value)) & size_mask;
        }
    }

    /// The BAR and offset in it that decode `[addr, addr + len)`, when memory decoding is
    /// on and the whole access falls inside one assigned BAR.
    pub fn decode(&self, addr: u64, len: u64) -> Option<(u8, u64)> {
        if self.command & CMD_MEMORY == 0 {
            return None;
        }
        self.bars.iter().flatten().find_map(|b| {
            let base = self.bar_addr[usize::from(b.index)];
            let off = addr.checked_sub(base)?;
            (base != 0 && off.checked_add(len)? <= b.size).then_some((b.index, off))
        })
    }

    /// The address BAR `index` holds (0 when unassigned or not a BAR).
    pub fn bar_address(&self, index: u8) -> u64 {
        self.bar_addr.get(usize::from(index)).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDS: PciIds = PciIds {
        vendor: 0x1af4,
        device: 0x1042,
        class: 0x01_00_00,
        revision: 1,
        subsystem_vendor: 0x1af4,
        subsystem: 0x1100,
    };

    fn bar(index: u8, size: u64, is_64bit: bool, prefetchable: bool) -> BarSpec {
        BarSpec {
            index,
            size,
            is_64bit,
            prefetchable,
        }
    }

    #[test]
    fn ids_class_pin_and_cap_bit_read_from_the_header() {
        let h = Header::new(IDS, &[], 0x40).unwrap();
        assert_eq!(h.read(VENDOR_ID), 0x1042_1af4);
        assert_eq!(h.read(CLASS_REVISION), 0x0100_0001);
        assert_eq!(h.read(SUBSYSTEM), 0x1100_1af4);
        assert_eq!(h.read(CAPABILITIES), 0x40);
        assert_eq!(h.read(COMMAND) >> 16, u32::from(STATUS_CAP_LIST));
        assert_eq!(h.read(INTERRUPT), 0x100);
        let h = Header::new(IDS, &[], 0).unwrap();
        assert_eq!(h.read(COMMAND), 0);
        // A pointer into the header is no capability list.
        assert_eq!(Header::new(IDS, &[], 0x3c).unwrap().read(CAPABILITIES), 0);
    }

    #[test]
    fn bar_sizing_and_placement_32_and_64_bit() {
        let mut h = Header::new(
            IDS,
            &[
                bar(0, 0x4000, false, false),
                bar(2, 0x1_0000_0000, true, true),
            ],
            0,
        )
        .unwrap();
        h.write(BAR0, !0, 0xf);
        assert_eq!(h.read(BAR0), 0xffff_c000);
        h.write(BAR0 + 8, !0, 0xf);
        h.write(BAR0 + 12, !0, 0xf);
        assert_eq!(h.read(BAR0 + 8), BAR_64BIT | BAR_PREFETCHABLE);
        assert_eq!(h.read(BAR0 + 12), 0xffff_ffff);
        // Unimplemented BARs and the ROM BAR read 0 after all ones.
        for off in [BAR0 + 4, BAR0 + 16, BAR0 + 20, EXPANSION_ROM] {
            h.write(off, !0, 0xf);
            assert_eq!(h.read(off), 0, "{off:#x}");
        }
        h.write(BAR0, 0x1000_4abc, 0xf);
        assert_eq!(h.read(BAR0), 0x1000_4000);
        h.write(BAR0 + 8, 0x1234_5678, 0xf);
        h.write(BAR0 + 12, 0x80, 0xf);
        assert_eq!(h.bar_address(2), 0x80_0000_0000);
        // Nothing decodes before memory space is enabled.
        assert_eq!(h.decode(0x1000_4000, 4), None);
        h.write(COMMAND, u32::from(CMD_MEMORY), 0x3);
        assert_eq!(h.decode(0x1000_4ffc, 4), Some((0, 0xffc)));
        assert_eq!(h.decode(0x1000_7ffe, 4), None, "runs past the BAR");
        assert_eq!(h.decode(0x80_0000_0010, 8), Some((2, 0x10)));
        assert_eq!(h.decode(u64::MAX, 8), None);
    }

    #[test]
    fn command_keeps_only_writable_bits_and_status_is_read_only() {
        let mut h = Header::new(IDS, &[], 0).unwrap();
        h.write(COMMAND, 0xffff_ffff, 0xf);
        assert_eq!(h.command(), CMD_WRITABLE);
        assert_eq!(h.read(COMMAND) >> 16, 0);
        // A byte write to the upper byte of Status leaves Command alone.
        h.write(COMMAND, 0, 0x8);
        assert_eq!(h.command(), CMD_WRITABLE);
        h.intx_level = true;
        assert!(!h.intx_asserted(), "INTx disabled");
        assert_eq!(h.read(COMMAND) >> 16, u32::from(STATUS_INTERRUPT));
        h.write(COMMAND, 0, 0x3);
        assert!(h.intx_asserted());
        h.reset();
        assert_eq!((h.command(), h.intx_level), (0, false));
    }

    #[test]
    fn malformed_bars_are_refused() {
        let bad = |bars: &[BarSpec]| Header::new(IDS, bars, 0).is_err();
        assert!(bad(&[bar(6, 0x1000, false, false)]));
        assert!(bad(&[bar(5, 0x1000, true, false)]));
        assert!(bad(&[bar(0, 0x1800, false, false)]));
        assert!(bad(&[bar(0, 0x800, false, false)]));
        assert!(bad(&[bar(0, 1 << 32, false, false)]));
        assert!(bad(&[
            bar(0, 0x1000, true, false),
            bar(1, 0x1000, false, false)
        ]));
        assert!(!bad(&[
            bar(0, 0x1000, true, false),
            bar(2, 0x1000, false, false)
        ]));
    }
}
