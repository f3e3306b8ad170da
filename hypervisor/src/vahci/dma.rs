//! What the port reads and writes in guest memory: command headers, command FISes, the
//! PRD table (as a [`Transfer`]) and the received-FIS area. Every access goes through
//! [`GuestMemory`] and fails as [`Fault::HostBus`] outside RAM or without bus mastering.
#![deny(unsafe_code)]

use super::ata::{Fault, Transfer};
use super::regs::{HEADER_SIZE, PRDT_OFFSET, PRD_SIZE};
use crate::block::{BlockDevice, BlockError};
use crate::sync::Mutex;
use crate::types::GuestPhysAddr;
use crate::vm::mem::GuestMemory;
use alloc::vec::Vec;

/// Guest memory as the HBA's bus master sees it.
pub struct Dma<'a> {
    /// The VM's RAM.
    pub mem: &'a Mutex<dyn GuestMemory>,
    /// PCI bus mastering is on.
    pub enabled: bool,
}

impl Dma<'_> {
    /// Reads `buf.len()` bytes at `addr`.
    pub fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), Fault> {
        if !self.enabled {
            return Err(Fault::HostBus);
        }
        self.mem
            .lock()
            .read(GuestPhysAddr(addr), buf)
            .map_err(|_| Fault::HostBus)
    }

    /// Writes `data` at `addr`.
    pub fn write(&self, addr: u64, data: &[u8]) -> Result<(), Fault> {
        if !self.enabled {
            return Err(Fault::HostBus);
        }
        self.mem
            .lock()
            .write(GuestPhysAddr(addr), data)
            .map_err(|_| Fault::HostBus)
    }
}

/// A command header of the command list (AHCI 4.2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommandHeader {
    /// Command FIS length in DWORDs (2..=16 is valid).
    pub cfl: u32,
    /// Write: data flows host to device.
    pub write: bool,
    /// Reset (part of a software reset sequence).
    pub reset: bool,
    /// Clear busy upon R_OK.
    pub clear_busy: bool,
    /// Entries in the PRD table.
    pub prdtl: u32,
    /// Command table base (128-byte aligned).
    pub ctba: u64,
}

impl CommandHeader {
    /// Reads slot `slot`'s header from the command list at `clb`.
    pub fn read(dma: &Dma<'_>, clb: u64, slot: u32) -> Result<Self, Fault> {
        let addr = u64::from(slot)
            .checked_mul(HEADER_SIZE)
            .and_then(|o| clb.checked_add(o))
            .ok_or(Fault::HostBus)?;
        let mut b = [0u8; 16];
        dma.read(addr, &mut b)?;
        let dw =
            |i: usize| u32::from_le_bytes([b[i * 4], b[i * 4 + 1], b[i * 4 + 2], b[i * 4 + 3]]);
        let dw0 = dw(0);
        Ok(Self {
            cfl: dw0 & 0x1f,
            write: dw0 & (1 << 6) != 0,
            reset: dw0 & (1 << 8) != 0,
            clear_busy: dw0 & (1 << 10) != 0,
            prdtl: dw0 >> 16,
            ctba: (u64::from(dw(3)) << 32 | u64::from(dw(2))) & !0x7f,
        })
    }

    /// Writes PRDBC (bytes transferred) back into slot `slot`'s header.
    pub fn write_prdbc(dma: &Dma<'_>, clb: u64, slot: u32, bytes: u32) -> Result<(), Fault> {
        let addr = u64::from(slot)
            .checked_mul(HEADER_SIZE)
            .and_then(|o| clb.checked_add(o + 4))
            .ok_or(Fault::HostBus)?;
        dma.write(addr, &bytes.to_le_bytes())
    }
}

/// PRDs read from guest memory at a time: one access for up to 1 KiB of table instead of
/// one per 16-byte entry (a 1 MiB transfer of 4 KiB pages has 256).
const PRD_BATCH: u32 = 64;

/// The data of one command, walked through its PRD table in order.
#[derive(Clone)]
pub struct Prdt<'d, 'm> {
    dma: &'d Dma<'m>,
    table: u64,
    entries: u32,
    /// PRDs `cached_from..cached_from + cache.len() / 4` as little-endian words, four per
    /// entry (read as words: the image's target is strict-align, so decoding bytes would
    /// cost a load per byte).
    cache: Vec<u32>,
    cached_from: u32,
    next: u32,
    addr: u64,
    left: u64,
    interrupt: bool,
    /// Bytes moved so far (PRDBC).
    pub bytes: u64,
    /// A PRD with the I bit was finished (PxIS.DPS).
    pub descriptor_interrupt: bool,
}

impl<'d, 'm> Prdt<'d, 'm> {
    /// The PRD table of the command table at `ctba`, with `entries` entries.
    pub fn new(dma: &'d Dma<'m>, ctba: u64, entries: u32) -> Self {
        Self {
            dma,
            table: ctba,
            entries,
            cache: Vec::new(),
            cached_from: 0,
            next: 0,
            addr: 0,
            left: 0,
            interrupt: false,
            bytes: 0,
            descriptor_interrupt: false,
        }
    }

    /// The current segment (loading the next PRD when the current one is used up).
    fn segment(&mut self) -> Result<(u64, u64), Fault> {
        while self.left == 0 {
            if self.next >= self.entries {
                return Err(Fault::Overflow);
            }
            let e = self.prd(self.next)?;
            let (lo, hi, dw3) = (u32::from_le(e[0]), u32::from_le(e[1]), u32::from_le(e[3]));
            // DBA bit 0 is reserved (word alignment); DBC is the byte count - 1.
            self.addr = (u64::from(hi) << 32 | u64::from(lo)) & !1;
            self.left = u64::from(dw3 & 0x3f_ffff) + 1;
            self.interrupt = dw3 & (1 << 31) != 0;
            self.next += 1;
        }
        Ok((self.addr, self.left))
    }

    /// PRD `index` as its four words, from the cache, refilled with up to [`PRD_BATCH`]
    /// entries from `index` on when it does not hold it. If the batch cannot be read (the
    /// table runs out of RAM further on) the entry is read alone, so a table is faulted
    /// only where the walk itself reaches memory it may not read.
    fn prd(&mut self, index: u32) -> Result<[u32; 4], Fault> {
        let cached = self.cache.len() as u32 / 4;
        if !(self.cached_from..self.cached_from + cached).contains(&index) {
            let at = u64::from(index)
                .checked_mul(PRD_SIZE)
                .and_then(|o| o.checked_add(PRDT_OFFSET))
                .and_then(|o| self.table.checked_add(o))
                .ok_or(Fault::HostBus)?;
            let batch = (self.entries - index).min(PRD_BATCH);
            self.cache.clear();
            self.cache.resize(batch as usize * 4, 0);
            if self
                .dma
                .read(at, bytemuck::cast_slice_mut(&mut self.cache[..]))
                .is_err()
            {
                self.cache.truncate(4);
                let r = self
                    .dma
                    .read(at, bytemuck::cast_slice_mut(&mut self.cache[..]));
                if r.is_err() {
                    self.cache.clear();
                }
                r?;
            }
            self.cached_from = index;
        }
        let i = (index - self.cached_from) as usize * 4;
        match self.cache.get(i..i + 4) {
            Some(&[a, b, c, d]) => Ok([a, b, c, d]),
            _ => Err(Fault::HostBus),
        }
    }

    fn advance(&mut self, n: u64) {
        self.addr = self.addr.wrapping_add(n);
        self.left -= n;
        self.bytes += n;
        if self.left == 0 && self.interrupt {
            self.descriptor_interrupt = true;
        }
    }
}

impl Transfer for Prdt<'_, '_> {
    fn direct(
        &mut self,
        disk: &mut dyn BlockDevice,
        lba: u64,
        len: u64,
        write: bool,
    ) -> Option<Result<(), BlockError>> {
        if !self.dma.enabled {
            return None;
        }
        // Walk a copy: the PRDs as far as `len`, without moving this transfer yet.
        let mut walk = self.clone();
        let mut ranges = Vec::new();
        let mut want = len;
        while want > 0 {
            let (addr, left) = walk.segment().ok()?;
            let n = left.min(want);
            ranges.push((GuestPhysAddr(addr), n));
            walk.advance(n);
            want -= n;
        }
        let mut mem = self.dma.mem.lock();
        let list = mem.dma(&ranges).ok()??;
        let r = if write {
            disk.write_dma(lba, &list)
        } else {
            disk.read_dma(lba, &list)
        };
        match r {
            Ok(false) => None,
            Ok(true) => {
                drop(list);
                drop(mem);
                *self = walk;
                Some(Ok(()))
            }
            Err(e) => Some(Err(e)),
        }
    }

    fn write_to_guest(&mut self, mut data: &[u8]) -> Result<(), Fault> {
        while !data.is_empty() {
            let (addr, left) = self.segment()?;
            let n = left.min(data.len() as u64) as usize;
            self.dma.write(addr, &data[..n])?;
            self.advance(n as u64);
            data = &data[n..];
        }
        Ok(())
    }

    fn read_from_guest(&mut self, mut buf: &mut [u8]) -> Result<(), Fault> {
        while !buf.is_empty() {
            let (addr, left) = self.segment()?;
            let n = left.min(buf.len() as u64) as usize;
            let (now, rest) = buf.split_at_mut(n);
            self.dma.read(addr, now)?;
            self.advance(n as u64);
            buf = rest;
        }
        Ok(())
    }
}
