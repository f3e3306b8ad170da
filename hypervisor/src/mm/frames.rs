//! Physical frame allocator for guest RAM: first-fit over the board's RAM regions minus
//! reserved ranges, NUMA-aware, in a small fixed-capacity list (no heap).
//!
//! Guest RAM is handed out in contiguous, aligned chunks (2 MiB so that stage 2 can use
//! block mappings). A node hint prefers that node's memory and falls back to any node.

use super::PAGE_SIZE;
use crate::platform::MemoryDesc;
use crate::types::HostPhysAddr;

/// Most free ranges tracked at once.
pub const MAX_FREE_RANGES: usize = 64;
/// Most RAM regions (board `memory` entries) the allocator knows.
pub const MAX_RAM_REGIONS: usize = 16;

/// Errors from the frame allocator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Not enough contiguous free memory.
    #[error("no {size:#x}-byte block aligned to {align:#x} is free: give the VM less RAM or free memory")]
    OutOfMemory {
        /// Requested size.
        size: u64,
        /// Requested alignment.
        align: u64,
    },
    /// Size zero, not page-multiple, or alignment not a power of two >= 4 KiB.
    #[error("bad frame request: size {size:#x}, align {align:#x} (size must be a non-zero multiple of 4 KiB, align a power of two >= 4 KiB)")]
    BadRequest {
        /// Size.
        size: u64,
        /// Alignment.
        align: u64,
    },
    /// A RAM region overlaps another or wraps.
    #[error("RAM region {base}, size {size:#x} overlaps another region or wraps: fix the board's memory map")]
    BadRegion {
        /// Base.
        base: HostPhysAddr,
        /// Size.
        size: u64,
    },
    /// The fixed tables are full.
    #[error("frame allocator tables are full ({MAX_FREE_RANGES} free ranges, {MAX_RAM_REGIONS} RAM regions): memory is too fragmented")]
    TooFragmented,
    /// `free` of a range that is not allocated RAM.
    #[error(
        "free of {base}, size {size:#x}: not (wholly) allocated RAM, double free or wrong size"
    )]
    BadFree {
        /// Base.
        base: HostPhysAddr,
        /// Size.
        size: u64,
    },
}

/// A free range `[base, end)` on NUMA node `node`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Range {
    base: u64,
    end: u64,
    node: u32,
}

/// The allocator. Free ranges are kept sorted by address and coalesced.
#[derive(Clone, Debug)]
pub struct FrameAllocator {
    ram: [Range; MAX_RAM_REGIONS],
    ram_len: usize,
    free: [Range; MAX_FREE_RANGES],
    free_len: usize,
}

impl Default for FrameAllocator {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameAllocator {
    /// An allocator with no memory.
    pub const fn new() -> Self {
        Self {
            ram: [Range {
                base: 0,
                end: 0,
                node: 0,
            }; MAX_RAM_REGIONS],
            ram_len: 0,
            free: [Range {
                base: 0,
                end: 0,
                node: 0,
            }; MAX_FREE_RANGES],
            free_len: 0,
        }
    }

    /// An allocator over the board's `memory` regions minus `reserved` ranges (hypervisor
    /// image, staging area, ...). Reserved ranges are rounded out to whole pages.
    pub fn from_board(
        memory: &[MemoryDesc],
        reserved: &[(HostPhysAddr, u64)],
    ) -> Result<Self, FrameError> {
        let mut a = Self::new();
        for m in memory {
            a.add_region(HostPhysAddr(m.base), m.size, m.numa_node)?;
        }
        for &(base, size) in reserved {
            a.reserve(base, size)?;
        }
        Ok(a)
    }

    /// Adds RAM `base..base+size` on `node` (trimmed inwards to whole pages).
    pub fn add_region(
        &mut self,
        base: HostPhysAddr,
        size: u64,
        node: u32,
    ) -> Result<(), FrameError> {
        let bad = FrameError::BadRegion { base, size };
        let end = base.0.checked_add(size).ok_or(bad)?;
        let r = Range {
            base: align_up(base.0, PAGE_SIZE).ok_or(bad)?,
            end: end & !(PAGE_SIZE - 1),
            node,
        };
        if r.base >= r.end {
            return Ok(());
        }
        if self.ram[..self.ram_len]
            .iter()
            .any(|x| r.base < x.end && x.base < r.end)
        {
            return Err(bad);
        }
        if self.ram_len == MAX_RAM_REGIONS {
            return Err(FrameError::TooFragmented);
        }
        self.ram[self.ram_len] = r;
        self.ram_len += 1;
        self.insert_free(r)
    }

    /// Removes `base..base+size` from the free memory (rounded out to pages). Parts that
    /// are not free RAM are ignored.
    pub fn reserve(&mut self, base: HostPhysAddr, size: u64) -> Result<(), FrameError> {
        let start = base.0 & !(PAGE_SIZE - 1);
        let end = base
            .0
            .checked_add(size)
            .and_then(|e| align_up(e, PAGE_SIZE))
            .unwrap_or(!(PAGE_SIZE - 1));
        let mut i = 0;
        while i < self.free_len {
            let f = self.free[i];
            if end <= f.base || f.end <= start {
                i += 1;
                continue;
            }
            let left = Range { end: start, ..f };
            let right = Range { base: end, ..f };
            self.remove_free(i);
            if right.base < right.end {
                self.insert_free(right)?;
            }
            if left.base < left.end {
                self.insert_free(left)?;
                i += 1;
            }
        }
        Ok(())
    }

    /// Allocates `size` bytes aligned to `align`, preferring NUMA node `node_hint`
    /// (first fit on that node, then first fit anywhere).
    pub fn alloc(
        &mut self,
        size: u64,
        align: u64,
        node_hint: Option<u32>,
    ) -> Result<HostPhysAddr, FrameError> {
        if size == 0
            || !size.is_multiple_of(PAGE_SIZE)
            || !align.is_power_of_two()
            || align < PAGE_SIZE
        {
            return Err(FrameError::BadRequest { size, align });
        }
        let fits = |f: &Range| {
            align_up(f.base, align)
                .and_then(|b| b.checked_add(size))
                .is_some_and(|e| e <= f.end)
        };
        let pick = node_hint
            .and_then(|n| {
                (0..self.free_len).find(|&i| self.free[i].node == n && fits(&self.free[i]))
            })
            .or_else(|| (0..self.free_len).find(|&i| fits(&self.free[i])))
            .ok_or(FrameError::OutOfMemory { size, align })?;
        let f = self.free[pick];
        let base = align_up(f.base, align).ok_or(FrameError::OutOfMemory { size, align })?;
        // Splitting may need one more slot: check before touching the list.
        let pieces = usize::from(base > f.base) + usize::from(base + size < f.end);
        if pieces == 2 && self.free_len == MAX_FREE_RANGES {
            return Err(FrameError::TooFragmented);
        }
        self.reserve(HostPhysAddr(base), size)?;
        Ok(HostPhysAddr(base))
    }

    /// Returns `base..base+size` (as allocated) to the free list.
    pub fn free(&mut self, base: HostPhysAddr, size: u64) -> Result<(), FrameError> {
        let bad = FrameError::BadFree { base, size };
        if size == 0 || !(base.0 | size).is_multiple_of(PAGE_SIZE) {
            return Err(bad);
        }
        let end = base.0.checked_add(size).ok_or(bad)?;
        let ram = self.ram[..self.ram_len]
            .iter()
            .find(|r| r.base <= base.0 && end <= r.end)
            .copied()
            .ok_or(bad)?;
        if self.free[..self.free_len]
            .iter()
            .any(|f| base.0 < f.end && f.base < end)
        {
            return Err(bad);
        }
        self.insert_free(Range {
            base: base.0,
            end,
            node: ram.node,
        })
    }

    /// NUMA node of the RAM holding `pa`.
    pub fn node_of(&self, pa: HostPhysAddr) -> Option<u32> {
        self.ram[..self.ram_len]
            .iter()
            .find(|r| r.base <= pa.0 && pa.0 < r.end)
            .map(|r| r.node)
    }

    /// Free bytes, on one node or in total.
    pub fn free_bytes(&self, node: Option<u32>) -> u64 {
        self.free[..self.free_len]
            .iter()
            .filter(|f| node.is_none_or(|n| f.node == n))
            .map(|f| f.end - f.base)
            .sum()
    }

    fn remove_free(&mut self, i: usize) {
        self.free.copy_within(i + 1..self.free_len, i);
        self.free_len -= 1;
    }

    /// Inserts a free range in address order, merging with same-node neighbours.
    fn insert_free(&mut self, r: Range) -> Result<(), FrameError> {
        let i = self.free[..self.free_len]
            .iter()
            .position(|f| f.base > r.base)
            .unwrap_or(self.free_len);
        let merge_prev = i > 0 && self.free[i - 1].end == r.base && self.free[i - 1].node == r.node;
        let merge_next =
            i < self.free_len && self.free[i].base == r.end && self.free[i].node == r.node;
        match (merge_prev, merge_next) {
            (true, true) => {
                self.free[i - 1].end = self.free[i].end;
                self.remove_free(i);
            }
            (true, false) => self.free[i - 1].end = r.end,
            (false, true) => self.free[i].base = r.base,
            (false, false) => {
                if self.free_len == MAX_FREE_RANGES {
                    return Err(FrameError::TooFragmented);
                }
                self.free.copy_within(i..self.free_len, i + 1);
                self.free[i] = r;
                self.free_len += 1;
            }
        }
        Ok(())
    }
}

const fn align_up(v: u64, align: u64) -> Option<u64> {
    match v.checked_add(align - 1) {
        Some(x) => Some(x & !(align - 1)),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mm::BLOCK_2M;

    const MIB: u64 = 0x10_0000;
    const GIB: u64 = 0x4000_0000;

    fn mem(base: u64, size: u64, node: u32) -> MemoryDesc {
        MemoryDesc {
            name: "ram",
            base,
            size,
            numa_node: node,
            from_firmware: crate::platform::FromFirmware::Nothing,
        }
    }

    #[test]
    fn reserved_ranges_are_never_handed_out() {
        let hv = (HostPhysAddr(0x4000_0000), 4 * MIB);
        let mut a = FrameAllocator::from_board(&[mem(0x4000_0000, 16 * MIB, 0)], &[hv]).unwrap();
        assert_eq!(a.free_bytes(None), 12 * MIB);
        let p = a.alloc(2 * MIB, BLOCK_2M, None).unwrap();
        assert_eq!(p, HostPhysAddr(0x4040_0000));
    }

    #[test]
    fn allocations_are_aligned_and_disjoint() {
        let mut a = FrameAllocator::new();
        a.add_region(HostPhysAddr(0x4000_1000), 64 * MIB, 0)
            .unwrap();
        let x = a.alloc(4 * MIB, BLOCK_2M, None).unwrap();
        let y = a.alloc(2 * MIB, BLOCK_2M, None).unwrap();
        assert_eq!(x.0 % BLOCK_2M, 0);
        assert_eq!(y.0 % BLOCK_2M, 0);
        assert!(x.0 + 4 * MIB <= y.0 || y.0 + 2 * MIB <= x.0);
        assert!(x.0 >= 0x4000_1000);
    }

    #[test]
    fn node_hint_prefers_that_nodes_memory_and_falls_back() {
        let mut a = FrameAllocator::from_board(
            &[
                mem(0x8000_0000, 8 * MIB, 0),
                mem(0x80_0000_0000, 4 * MIB, 1),
            ],
            &[],
        )
        .unwrap();
        let p = a.alloc(2 * MIB, BLOCK_2M, Some(1)).unwrap();
        assert_eq!(a.node_of(p), Some(1));
        a.alloc(2 * MIB, BLOCK_2M, Some(1)).unwrap();
        let q = a.alloc(2 * MIB, BLOCK_2M, Some(1)).unwrap();
        assert_eq!(a.node_of(q), Some(0), "node 1 exhausted, falls back");
        assert_eq!(a.free_bytes(Some(1)), 0);
    }

    #[test]
    fn out_of_memory_is_an_error() {
        let mut a = FrameAllocator::from_board(&[mem(0x4000_0000, 4 * MIB, 0)], &[]).unwrap();
        assert_eq!(
            a.alloc(8 * MIB, BLOCK_2M, None),
            Err(FrameError::OutOfMemory {
                size: 8 * MIB,
                align: BLOCK_2M
            })
        );
    }

    #[test]
    fn bad_requests_are_refused() {
        let mut a = FrameAllocator::from_board(&[mem(0x4000_0000, GIB, 0)], &[]).unwrap();
        assert!(matches!(
            a.alloc(0, BLOCK_2M, None),
            Err(FrameError::BadRequest { .. })
        ));
        assert!(matches!(
            a.alloc(100, BLOCK_2M, None),
            Err(FrameError::BadRequest { .. })
        ));
        assert!(matches!(
            a.alloc(MIB, 3 * MIB, None),
            Err(FrameError::BadRequest { .. })
        ));
    }

    #[test]
    fn free_coalesces_so_a_large_block_fits_again() {
        let mut a = FrameAllocator::from_board(&[mem(0x4000_0000, 8 * MIB, 0)], &[]).unwrap();
        let blocks: [HostPhysAddr; 4] =
            core::array::from_fn(|_| a.alloc(2 * MIB, BLOCK_2M, None).unwrap());
        assert!(a.alloc(2 * MIB, BLOCK_2M, None).is_err());
        for b in [blocks[1], blocks[3], blocks[0], blocks[2]] {
            a.free(b, 2 * MIB).unwrap();
        }
        assert_eq!(
            a.alloc(8 * MIB, BLOCK_2M, None).unwrap(),
            HostPhysAddr(0x4000_0000)
        );
    }

    #[test]
    fn double_free_and_foreign_free_are_refused() {
        let mut a = FrameAllocator::from_board(&[mem(0x4000_0000, 8 * MIB, 0)], &[]).unwrap();
        let p = a.alloc(2 * MIB, BLOCK_2M, None).unwrap();
        a.free(p, 2 * MIB).unwrap();
        assert!(matches!(
            a.free(p, 2 * MIB),
            Err(FrameError::BadFree { .. })
        ));
        assert!(matches!(
            a.free(HostPhysAddr(0x1000_0000), 2 * MIB),
            Err(FrameError::BadFree { .. })
        ));
    }

    #[test]
    fn overlapping_ram_regions_are_refused() {
        let r =
            FrameAllocator::from_board(&[mem(0x4000_0000, GIB, 0), mem(0x6000_0000, GIB, 1)], &[]);
        assert!(matches!(r, Err(FrameError::BadRegion { .. })));
    }

    #[test]
    fn fragmentation_beyond_capacity_is_an_error_not_a_panic() {
        let mut a = FrameAllocator::from_board(&[mem(0, 1 << 40, 0)], &[]).unwrap();
        let mut last = Ok(());
        for i in 0..(MAX_FREE_RANGES as u64 + 2) {
            last = a.reserve(HostPhysAddr(i * 2 * MIB + MIB), 0x1000);
            if last.is_err() {
                break;
            }
        }
        assert_eq!(last, Err(FrameError::TooFragmented));
    }
}
