//! A VM's RAM as the guest sees it: host RAM from the pool (one range, or one per NUMA node
//! for a VM that spans nodes, laid one after the other in guest-physical space), handed to
//! the guest 2 MiB at a time. A block is zeroed and mapped at stage 2 on the guest's first touch (a stage-2
//! translation fault) or when the hypervisor loads an image into it, so creating a VM costs
//! the same for any RAM size and no byte of a previous owner (firmware, the hypervisor,
//! another VM, this VM before a reset) reaches the guest.

use crate::arch::cpu;
use crate::arch::mem::{HostRam, MemError, StagedImage};
use crate::block::{DmaList, DmaSeg};
use crate::mm::{BlockMap, Stage2, Stage2Error, BLOCK_2M};
use crate::types::{GuestPhysAddr, HostPhysAddr};
use crate::vm::layout;
use crate::vm::mem::{offset_in, GuestMemError, GuestMemory};
use alloc::vec::Vec;

/// Errors handing RAM to a guest.
#[derive(Debug, thiserror::Error)]
pub enum RamError {
    /// The address is not in the VM's RAM.
    #[error("{0} is not in the VM's RAM")]
    NotRam(GuestPhysAddr),
    /// Copying or zeroing failed.
    #[error("{0}")]
    Memory(#[from] MemError),
    /// The stage-2 tables refused the mapping.
    #[error("stage 2: {0}")]
    Stage2(#[from] Stage2Error),
}

/// One host range of a VM's RAM: guest RAM offsets `[offset, offset + ram.size())`.
struct Part {
    offset: u64,
    ram: HostRam,
}

/// A VM's RAM, its stage-2 tables and which blocks the guest has.
pub struct GuestRam {
    /// In guest order, contiguous from offset 0, each a whole number of 2 MiB blocks.
    parts: Vec<Part>,
    size: u64,
    s2: Stage2,
    populated: BlockMap,
    /// Set once a block was mapped as a block though the tables want pages (the heap ran
    /// low), so that it is said once.
    blocks_after_all: bool,
}

/// Heap a board that maps RAM in pages keeps free for everything else: below it, a block
/// is mapped as one 2 MiB block (no new table) rather than as 512 pages (a 4 KiB table
/// each), so that guests touching all their RAM cannot exhaust the hypervisor's heap.
const PAGES_HEAP_RESERVE: u64 = 2 << 20;

impl GuestRam {
    /// RAM made of `parts` behind stage-2 tables `s2` (which map none of it yet), laid one after the other from guest RAM offset 0 (a VM spanning
    /// NUMA nodes: one part per node); each part's size must be a multiple of 2 MiB (the
    /// pool hands out 2 MiB-aligned blocks), so that no block straddles two parts.
    pub fn from_parts(parts: Vec<HostRam>, s2: Stage2) -> Self {
        let mut offset = 0;
        let parts: Vec<Part> = parts
            .into_iter()
            .map(|ram| {
                let p = Part { offset, ram };
                offset += p.ram.size();
                p
            })
            .collect();
        let populated = BlockMap::new(offset);
        Self {
            parts,
            size: offset,
            s2,
            populated,
            blocks_after_all: false,
        }
    }

    /// Host base of the RAM (of its first part).
    pub fn host_base(&self) -> HostPhysAddr {
        self.parts.first().map_or(HostPhysAddr(0), |p| p.ram.base())
    }

    /// The host ranges behind the guest's RAM: guest RAM offset, host base, size.
    pub fn host_ranges(&self) -> impl Iterator<Item = (u64, HostPhysAddr, u64)> + '_ {
        self.parts
            .iter()
            .map(|p| (p.offset, p.ram.base(), p.ram.size()))
    }

    /// Calls `f(part, offset in part, offset in the request, length)` for each piece of
    /// `[offset, offset + len)` that lies in one part, in order; an error if the range is
    /// not all RAM.
    fn each_piece(
        &mut self,
        offset: u64,
        len: u64,
        mut f: impl FnMut(&mut HostRam, u64, u64, u64) -> Result<(), MemError>,
    ) -> Result<(), MemError> {
        let end =
            offset
                .checked_add(len)
                .filter(|&e| e <= self.size)
                .ok_or(MemError::OutOfRange {
                    offset,
                    len,
                    size: self.size,
                })?;
        for p in &mut self.parts {
            let (start, stop) = (p.offset, p.offset + p.ram.size());
            let (from, to) = (offset.max(start), end.min(stop));
            if from < to {
                f(&mut p.ram, from - start, from - offset, to - from)?;
            }
        }
        Ok(())
    }

    fn zero(&mut self, offset: u64, len: u64) -> Result<(), MemError> {
        self.each_piece(offset, len, |ram, at, _, n| ram.zero(at, n))
    }

    /// The host address of guest RAM offset `off`.
    fn host_addr(&self, off: u64) -> Option<HostPhysAddr> {
        self.parts
            .iter()
            .find(|p| off >= p.offset && off - p.offset < p.ram.size())
            .map(|p| HostPhysAddr(p.ram.base().0 + (off - p.offset)))
    }

    /// Maps block `b` (already zeroed or filled) and records that the guest has it.
    fn map_block(&mut self, b: usize) -> Result<(), RamError> {
        let off = b as u64 * BLOCK_2M;
        let ipa = GuestPhysAddr(layout::RAM_BASE + off);
        let host = self.host_addr(off).ok_or(RamError::NotRam(ipa))?;
        let heap_short = self
            .s2
            .pages_only()
            .then(crate::arch::heap::heap_free)
            .filter(|&free| free < PAGES_HEAP_RESERVE);
        if let Some(free) = heap_short {
            // Pages would take a 4 KiB table from a heap running low: a block needs none.
            if !self.blocks_after_all {
                self.blocks_after_all = true;
                crate::hvprintln!(
                    "[hv] stage 2: the heap is short ({} KiB free): this VM's RAM is mapped \
                     in 2 MiB blocks from here on",
                    free / 1024
                );
            }
            self.s2.map_ram_in_blocks(ipa, host, BLOCK_2M)?;
        } else {
            self.s2.map_ram(ipa, host, BLOCK_2M)?;
        }
        self.populated.set(b);
        Ok(())
    }

    /// Zeroes and maps block `b`, unless the guest has it already.
    fn populate(&mut self, b: usize) -> Result<(), RamError> {
        if self.populated.is_set(b) {
            return Ok(());
        }
        self.zero(b as u64 * BLOCK_2M, BLOCK_2M)?;
        self.map_block(b)?;
        // The new descriptor must be visible to other CPUs' table walks before any vCPU
        // retries the access.
        cpu::publish_table_update();
        Ok(())
    }

    /// The guest touched `ipa` (a stage-2 fault in its RAM): gives it the block.
    pub fn touch(&mut self, ipa: GuestPhysAddr) -> Result<(), RamError> {
        let b = ipa
            .0
            .checked_sub(layout::RAM_BASE)
            .and_then(|off| self.populated.block_of(off))
            .ok_or(RamError::NotRam(ipa))?;
        self.populate(b)
    }

    /// Writes `[offset, offset + len)` with `fill` and gives the guest every block it
    /// covers. A block the guest does not have yet is zeroed only outside the range (`fill`
    /// writes the rest) and mapped only once `fill` is done, so no vCPU ever sees a byte
    /// of its previous owner, and an image is not zeroed before it is copied.
    fn fill(
        &mut self,
        offset: u64,
        len: u64,
        fill: impl FnMut(&mut HostRam, u64, u64, u64) -> Result<(), MemError>,
    ) -> Result<(), RamError> {
        let blocks = self
            .populated
            .covering(offset, len)
            .ok_or(RamError::NotRam(GuestPhysAddr(
                layout::RAM_BASE.saturating_add(offset),
            )))?;
        let end = offset + len;
        for b in blocks.clone() {
            if self.populated.is_set(b) {
                continue;
            }
            let (start, stop) = (b as u64 * BLOCK_2M, (b as u64 + 1) * BLOCK_2M);
            if offset > start {
                self.zero(start, offset.min(stop) - start)?;
            }
            if end < stop {
                let from = end.max(start);
                self.zero(from, stop - from)?;
            }
        }
        self.each_piece(offset, len, fill)?;
        let mut mapped = false;
        for b in blocks {
            if !self.populated.is_set(b) {
                self.map_block(b)?;
                mapped = true;
            }
        }
        if mapped {
            cpu::publish_table_update();
        }
        Ok(())
    }

    /// Writes `data` at `offset` into the guest's RAM.
    pub fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), RamError> {
        self.fill(offset, data.len() as u64, |ram, at, from, n| {
            let piece =
                data.get(from as usize..(from + n) as usize)
                    .ok_or(MemError::OutOfRange {
                        offset: from,
                        len: n,
                        size: data.len() as u64,
                    })?;
            ram.write(at, piece)
        })
    }

    /// Copies the first `len` bytes of a staged image to `offset`.
    pub fn copy_part(&mut self, offset: u64, src: &StagedImage, len: u64) -> Result<(), RamError> {
        self.fill(offset, len, |ram, at, from, n| {
            ram.copy_part(at, &src.slice(from, n)?, n)
        })
    }

    /// Takes every block back from the guest (a reset): unmapped, so the next touch zeroes
    /// it again. No vCPU of the VM may run meanwhile.
    pub fn reclaim_all(&mut self) -> Result<(), RamError> {
        for b in self.populated.iter().collect::<alloc::vec::Vec<_>>() {
            self.s2
                .unmap(GuestPhysAddr(layout::RAM_BASE + b as u64 * BLOCK_2M))?;
        }
        self.populated.clear();
        // Translations of the old blocks may be cached, combined with stage 1.
        cpu::flush_guest_tlbs();
        Ok(())
    }
}

impl GuestMemory for GuestRam {
    fn read(&mut self, addr: GuestPhysAddr, buf: &mut [u8]) -> Result<(), GuestMemError> {
        let len = buf.len() as u64;
        let off = self.dma_offset(addr, buf.len())?;
        self.each_piece(off, len, |ram, at, from, n| {
            let piece =
                buf.get_mut(from as usize..(from + n) as usize)
                    .ok_or(MemError::OutOfRange {
                        offset: from,
                        len: n,
                        size: len,
                    })?;
            ram.read(at, piece)
        })
        .map_err(|_| GuestMemError::OutOfRange { addr, len })
    }

    fn write(&mut self, addr: GuestPhysAddr, data: &[u8]) -> Result<(), GuestMemError> {
        let len = data.len() as u64;
        let off = offset_in(GuestPhysAddr(layout::RAM_BASE), self.size, addr, len)
            .ok_or(GuestMemError::OutOfRange { addr, len })?;
        GuestRam::write(self, off, data).map_err(|_| GuestMemError::Populate(addr))
    }

    fn dma(
        &mut self,
        ranges: &[(GuestPhysAddr, u64)],
    ) -> Result<Option<DmaList<'_>>, GuestMemError> {
        // Every range checked before any block is populated: a refused list changes nothing.
        let base = GuestPhysAddr(layout::RAM_BASE);
        for &(addr, len) in ranges {
            offset_in(base, self.size, addr, len).ok_or(GuestMemError::OutOfRange { addr, len })?;
        }
        let mut segs: Vec<DmaSeg> = Vec::with_capacity(ranges.len());
        for &(addr, len) in ranges {
            // Blocks the guest does not have are zeroed and mapped before the device
            // writes into them (the `fill` rule for a copy, made whole-block here: a DMA
            // that fails half way must not leave old bytes in a block it then hands over).
            let off = self.dma_offset(addr, len as usize)?;
            let end = off + len;
            for p in &self.parts {
                let (start, stop) = (p.offset, p.offset + p.ram.size());
                let (from, to) = (off.max(start), end.min(stop));
                if from >= to {
                    continue;
                }
                let host = p.ram.base().0 + (from - start);
                // Pieces adjacent in host memory are one (fewer entries for the driver).
                match segs.last_mut() {
                    Some(last) if last.addr + last.len == host => last.len += to - from,
                    _ => segs.push(DmaSeg {
                        addr: host,
                        len: to - from,
                    }),
                }
            }
        }
        Ok(Some(DmaList::new(segs)))
    }
}

impl GuestRam {
    /// The RAM offset of a device access to `[addr, addr + len)`, with the blocks it covers
    /// given to the guest first (zeroed if it never had them).
    fn dma_offset(&mut self, addr: GuestPhysAddr, len: usize) -> Result<u64, GuestMemError> {
        let len = len as u64;
        let off = offset_in(GuestPhysAddr(layout::RAM_BASE), self.size, addr, len)
            .ok_or(GuestMemError::OutOfRange { addr, len })?;
        let blocks = self
            .populated
            .covering(off, len)
            .ok_or(GuestMemError::OutOfRange { addr, len })?;
        for b in blocks {
            self.populate(b)
                .map_err(|_| GuestMemError::Populate(addr))?;
        }
        Ok(off)
    }
}
