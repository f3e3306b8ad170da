//! 32/64-bit access to a device register frame, by offset.
//!
//! Every access is one `ldr`/`str` with a plain base register, written in assembly as Linux's
//! `__raw_readl`/`__raw_writel` are: a trapped access must carry a valid syndrome
//! (`ESR_EL2.ISV`), and `read_volatile`/`write_volatile` leave the compiler free to pick a
//! post-indexed or pair form that has none (it does at `opt-level = 3`).

use core::arch::asm;

/// A device register frame at a fixed physical address (the MMU is off: VA = PA).
#[derive(Clone, Copy, Debug)]
pub struct Mmio {
    base: usize,
    size: usize,
}

impl Mmio {
    /// Wraps the frame `base..base + size`.
    ///
    /// # Safety
    /// 1. `base..base + size` is a device register frame (or an address range whose accesses
    ///    the test deliberately makes), never memory that Rust code uses.
    /// 2. Naturally aligned 32-bit and 64-bit accesses to it have no effect on guest memory.
    pub const unsafe fn new(base: usize, size: usize) -> Self {
        Self { base, size }
    }

    fn addr(&self, offset: usize, width: usize) -> usize {
        assert!(
            offset % width == 0 && offset + width <= self.size,
            "register offset {offset:#x} outside its frame"
        );
        self.base + offset
    }

    /// Reads the 32-bit register at `offset`.
    pub fn read32(&self, offset: usize) -> u32 {
        let addr = self.addr(offset, 4);
        let v: u32;
        // SAFETY: (1) `addr` is aligned and inside the frame that `new`'s caller vouched for;
        // (2) the access has no effect on memory Rust uses.
        unsafe {
            asm!("ldr {v:w}, [{a}]", a = in(reg) addr, v = out(reg) v, options(nostack, readonly))
        };
        v
    }

    /// Writes the 32-bit register at `offset`.
    pub fn write32(&self, offset: usize, value: u32) {
        let addr = self.addr(offset, 4);
        // SAFETY: as in `read32`.
        unsafe { asm!("str {v:w}, [{a}]", a = in(reg) addr, v = in(reg) value, options(nostack)) }
    }

    /// Reads the 8-bit register at `offset`.
    pub fn read8(&self, offset: usize) -> u8 {
        let addr = self.addr(offset, 1);
        let v: u32;
        // SAFETY: as in `read32`.
        unsafe {
            asm!("ldrb {v:w}, [{a}]", a = in(reg) addr, v = out(reg) v, options(nostack, readonly))
        };
        v as u8
    }

    /// Writes the 8-bit register at `offset`.
    pub fn write8(&self, offset: usize, value: u8) {
        let addr = self.addr(offset, 1);
        // SAFETY: as in `read32`.
        unsafe {
            asm!("strb {v:w}, [{a}]", a = in(reg) addr, v = in(reg) u32::from(value), options(nostack))
        }
    }

    /// Reads the 16-bit register at `offset`.
    pub fn read16(&self, offset: usize) -> u16 {
        let addr = self.addr(offset, 2);
        let v: u32;
        // SAFETY: as in `read32`.
        unsafe {
            asm!("ldrh {v:w}, [{a}]", a = in(reg) addr, v = out(reg) v, options(nostack, readonly))
        };
        v as u16
    }

    /// Writes the 16-bit register at `offset`.
    pub fn write16(&self, offset: usize, value: u16) {
        let addr = self.addr(offset, 2);
        // SAFETY: as in `read32`.
        unsafe {
            asm!("strh {v:w}, [{a}]", a = in(reg) addr, v = in(reg) u32::from(value), options(nostack))
        }
    }

    /// Reads the 64-bit register at `offset`.
    pub fn read64(&self, offset: usize) -> u64 {
        let addr = self.addr(offset, 8);
        let v: u64;
        // SAFETY: as in `read32`.
        unsafe {
            asm!("ldr {v}, [{a}]", a = in(reg) addr, v = out(reg) v, options(nostack, readonly))
        };
        v
    }

    /// Writes the 64-bit register at `offset`.
    pub fn write64(&self, offset: usize, value: u64) {
        let addr = self.addr(offset, 8);
        // SAFETY: as in `read32`.
        unsafe { asm!("str {v}, [{a}]", a = in(reg) addr, v = in(reg) value, options(nostack)) }
    }

    /// Physical address of the first register.
    pub fn base(&self) -> usize {
        self.base
    }

    /// Length of the frame in bytes.
    pub fn size(&self) -> usize {
        self.size
    }

    /// A sub-frame starting at `offset`.
    pub fn frame(&self, offset: usize, size: usize) -> Mmio {
        assert!(
            offset + size <= self.size,
            "sub-frame {offset:#x}+{size:#x} outside its frame"
        );
        Mmio {
            base: self.base + offset,
            size,
        }
    }
}
