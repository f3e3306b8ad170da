//! A VM's RAM as the guest sees it: host RAM from the pool, handed to the guest 2 MiB at a
//! time. A block is zeroed and mapped at stage 2 on the guest's first touch (a stage-2
//! translation fault) or when the hypervisor loads an image into it, so creating a VM costs
//! the same for any RAM size and no byte of a previous owner (firmware, the hypervisor,
//! another VM, this VM before a reset) reaches the guest.

use crate::arch::cpu;
use crate::arch::mem::{HostRam, MemError, StagedImage};
use crate::mm::{BlockMap, Stage2, Stage2Error, BLOCK_2M};
use crate::types::{GuestPhysAddr, HostPhysAddr};
use crate::vm::layout;
use crate::vm::mem::{offset_in, GuestMemError, GuestMemory};

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

/// A VM's RAM, its stage-2 tables and which blocks the guest has.
pub struct GuestRam {
    ram: HostRam,
    s2: Stage2,
    populated: BlockMap,
}

impl GuestRam {
    /// RAM `ram` behind stage-2 tables `s2` (which map none of it yet).
    pub fn new(ram: HostRam, s2: Stage2) -> Self {
        let populated = BlockMap::new(ram.size());
        Self { ram, s2, populated }
    }

    /// Host base of the RAM.
    pub fn host_base(&self) -> HostPhysAddr {
        self.ram.base()
    }

    /// Maps block `b` (already zeroed or filled) and records that the guest has it.
    fn map_block(&mut self, b: usize) -> Result<(), RamError> {
        let off = b as u64 * BLOCK_2M;
        self.s2.map_ram(
            GuestPhysAddr(layout::RAM_BASE + off),
            HostPhysAddr(self.ram.base().0 + off),
            BLOCK_2M,
        )?;
        self.populated.set(b);
        Ok(())
    }

    /// Zeroes and maps block `b`, unless the guest has it already.
    fn populate(&mut self, b: usize) -> Result<(), RamError> {
        if self.populated.is_set(b) {
            return Ok(());
        }
        self.ram.zero(b as u64 * BLOCK_2M, BLOCK_2M)?;
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
        fill: impl FnOnce(&mut HostRam) -> Result<(), MemError>,
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
                self.ram.zero(start, offset.min(stop) - start)?;
            }
            if end < stop {
                let from = end.max(start);
                self.ram.zero(from, stop - from)?;
            }
        }
        fill(&mut self.ram)?;
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
        self.fill(offset, data.len() as u64, |ram| ram.write(offset, data))
    }

    /// Copies the first `len` bytes of a staged image to `offset`.
    pub fn copy_part(&mut self, offset: u64, src: &StagedImage, len: u64) -> Result<(), RamError> {
        self.fill(offset, len, |ram| ram.copy_part(offset, src, len))
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
        let off = self.dma_offset(addr, buf.len())?;
        self.ram
            .read(off, buf)
            .map_err(|_| GuestMemError::OutOfRange {
                addr,
                len: buf.len() as u64,
            })
    }

    fn write(&mut self, addr: GuestPhysAddr, data: &[u8]) -> Result<(), GuestMemError> {
        let len = data.len() as u64;
        let off = offset_in(GuestPhysAddr(layout::RAM_BASE), self.ram.size(), addr, len)
            .ok_or(GuestMemError::OutOfRange { addr, len })?;
        GuestRam::write(self, off, data).map_err(|_| GuestMemError::Populate(addr))
    }
}

impl GuestRam {
    /// The RAM offset of a device access to `[addr, addr + len)`, with the blocks it covers
    /// given to the guest first (zeroed if it never had them).
    fn dma_offset(&mut self, addr: GuestPhysAddr, len: usize) -> Result<u64, GuestMemError> {
        let len = len as u64;
        let off = offset_in(GuestPhysAddr(layout::RAM_BASE), self.ram.size(), addr, len)
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
