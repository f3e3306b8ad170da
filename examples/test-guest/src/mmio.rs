//! Volatile 32/64-bit access to a device register frame, by offset.

use core::ptr;

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
        // SAFETY: (1) `addr` is aligned and inside the frame that `new`'s caller vouched for;
        // (2) the access has no effect on memory Rust uses.
        unsafe { ptr::read_volatile(addr as *const u32) }
    }

    /// Writes the 32-bit register at `offset`.
    pub fn write32(&self, offset: usize, value: u32) {
        let addr = self.addr(offset, 4);
        // SAFETY: as in `read32`.
        unsafe { ptr::write_volatile(addr as *mut u32, value) }
    }

    /// Reads the 64-bit register at `offset`.
    pub fn read64(&self, offset: usize) -> u64 {
        let addr = self.addr(offset, 8);
        // SAFETY: as in `read32`.
        unsafe { ptr::read_volatile(addr as *const u64) }
    }

    /// Writes the 64-bit register at `offset`.
    pub fn write64(&self, offset: usize, value: u64) {
        let addr = self.addr(offset, 8);
        // SAFETY: as in `read32`.
        unsafe { ptr::write_volatile(addr as *mut u64, value) }
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
