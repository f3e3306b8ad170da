//! Which 2 MiB blocks of a VM's RAM have been handed to the guest: RAM is zeroed and mapped
//! at stage 2 one block at a time, on the guest's first touch, so that starting a VM costs
//! the same for any RAM size and no byte of a previous owner reaches it.

use super::BLOCK_2M;
use alloc::vec;
use alloc::vec::Vec;
use core::ops::Range;

/// A bitmap over the 2 MiB blocks of a RAM range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockMap {
    bits: Vec<u64>,
    blocks: usize,
    set: usize,
}

impl BlockMap {
    /// No block populated, for `size` bytes of RAM (rounded up to whole blocks).
    pub fn new(size: u64) -> Self {
        let blocks = size.div_ceil(BLOCK_2M) as usize;
        Self {
            bits: vec![0; blocks.div_ceil(64)],
            blocks,
            set: 0,
        }
    }

    /// Number of blocks.
    pub fn len(&self) -> usize {
        self.blocks
    }

    /// True for a map over no RAM.
    pub fn is_empty(&self) -> bool {
        self.blocks == 0
    }

    /// The block holding byte `offset`, if it is inside the RAM.
    pub fn block_of(&self, offset: u64) -> Option<usize> {
        usize::try_from(offset / BLOCK_2M)
            .ok()
            .filter(|&b| b < self.blocks)
    }

    /// The blocks `[offset, offset + len)` touches; `None` if any byte lies outside.
    pub fn covering(&self, offset: u64, len: u64) -> Option<Range<usize>> {
        if len == 0 {
            return Some(0..0);
        }
        let last = offset.checked_add(len - 1)?;
        Some(self.block_of(offset)?..self.block_of(last)? + 1)
    }

    /// Whether block `b` is populated.
    pub fn is_set(&self, b: usize) -> bool {
        b < self.blocks && self.bits[b / 64] & (1 << (b % 64)) != 0
    }

    /// Marks block `b` populated; false if it already was (or is out of range).
    pub fn set(&mut self, b: usize) -> bool {
        if b >= self.blocks || self.is_set(b) {
            return false;
        }
        self.bits[b / 64] |= 1 << (b % 64);
        self.set += 1;
        true
    }

    /// Number of populated blocks.
    pub fn count(&self) -> usize {
        self.set
    }

    /// The populated blocks, lowest first.
    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.blocks).filter(|&b| self.is_set(b))
    }

    /// Marks every block unpopulated.
    pub fn clear(&mut self) {
        self.bits.iter_mut().for_each(|w| *w = 0);
        self.set = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn size_rounds_up_to_whole_blocks() {
        assert_eq!(BlockMap::new(256 * MIB).len(), 128);
        assert_eq!(BlockMap::new(3 * MIB).len(), 2);
        assert!(BlockMap::new(0).is_empty());
    }

    #[test]
    fn offsets_outside_ram_have_no_block() {
        let m = BlockMap::new(4 * MIB);
        assert_eq!(m.block_of(0), Some(0));
        assert_eq!(m.block_of(4 * MIB - 1), Some(1));
        assert_eq!(m.block_of(4 * MIB), None);
        assert_eq!(m.block_of(u64::MAX), None);
    }

    #[test]
    fn covering_spans_every_touched_block_and_refuses_overruns() {
        let m = BlockMap::new(8 * MIB);
        assert_eq!(m.covering(MIB, 2 * MIB), Some(0..2));
        assert_eq!(m.covering(2 * MIB, 2 * MIB), Some(1..2));
        assert_eq!(m.covering(6 * MIB, 2 * MIB + 1), None);
        assert_eq!(m.covering(u64::MAX, 2), None);
        assert_eq!(m.covering(5, 0), Some(0..0));
    }

    #[test]
    fn set_is_once_and_counted_and_clear_forgets_all() {
        let mut m = BlockMap::new(200 * MIB);
        assert!(m.set(70));
        assert!(!m.set(70));
        assert!(!m.set(100), "out of range");
        assert!(m.set(3));
        assert_eq!((m.count(), m.iter().collect::<Vec<_>>()), (2, vec![3, 70]));
        m.clear();
        assert_eq!((m.count(), m.is_set(70)), (0, false));
    }
}
