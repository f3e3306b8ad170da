//! Host-test doubles for the DMA path of device models (not on the machine): guest RAM
//! that hands out DMA lists, and a disk that takes them, over one shared
//! [`FakeGuestMemory`].
//!
//! The model under test locks the context's memory ([`FakeDmaRam`]) for the whole request,
//! as at run time; [`FakeDmaDisk`] moves the bytes through its own handle on the fake RAM
//! behind it (bus addresses are guest-physical ones here), so nothing deadlocks.
#![deny(unsafe_code)]

use super::mem::{offset_in, FakeGuestMemory, GuestMemError, GuestMemory};
use crate::block::{BlockDevice, BlockError, DmaList, DmaSeg, MemDisk};
use crate::sync::Mutex;
use crate::types::GuestPhysAddr;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, Ordering};

/// Guest RAM `[base, base + size)` that devices may reach by DMA: the shared fake RAM,
/// with every range checked against it as the VM's RAM checks it.
pub struct FakeDmaRam {
    /// The RAM (also the test's and the disk's handle).
    pub ram: Arc<Mutex<FakeGuestMemory>>,
    base: GuestPhysAddr,
    size: u64,
}

impl FakeDmaRam {
    /// Over `ram`, which starts at `base` and is `size` bytes.
    pub fn new(ram: Arc<Mutex<FakeGuestMemory>>, base: GuestPhysAddr, size: u64) -> Self {
        Self { ram, base, size }
    }
}

impl GuestMemory for FakeDmaRam {
    fn read(&mut self, addr: GuestPhysAddr, buf: &mut [u8]) -> Result<(), GuestMemError> {
        self.ram.lock().read(addr, buf)
    }

    fn write(&mut self, addr: GuestPhysAddr, data: &[u8]) -> Result<(), GuestMemError> {
        self.ram.lock().write(addr, data)
    }

    fn dma(
        &mut self,
        ranges: &[(GuestPhysAddr, u64)],
    ) -> Result<Option<DmaList<'_>>, GuestMemError> {
        let mut segs = Vec::new();
        for &(addr, len) in ranges {
            offset_in(self.base, self.size, addr, len)
                .ok_or(GuestMemError::OutOfRange { addr, len })?;
            segs.push(DmaSeg { addr: addr.0, len });
        }
        Ok(Some(DmaList::for_host_test(segs)))
    }
}

/// A [`MemDisk`] that takes DMA lists when `take` (else declines them, as a driver does
/// for lists its controller cannot describe) and moves their bytes to and from the fake
/// RAM, counting the lists it took.
pub struct FakeDmaDisk {
    /// The disk's contents.
    pub disk: Arc<Mutex<MemDisk>>,
    /// The RAM the lists' addresses are in.
    pub ram: Arc<Mutex<FakeGuestMemory>>,
    /// Take lists, or decline them.
    pub take: bool,
    /// Lists taken so far.
    pub lists: Arc<AtomicU32>,
}

impl BlockDevice for FakeDmaDisk {
    fn sectors(&self) -> u64 {
        self.disk.lock().sectors()
    }

    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        self.disk.lock().read(lba, buf)
    }

    fn write(&mut self, lba: u64, data: &[u8]) -> Result<(), BlockError> {
        self.disk.lock().write(lba, data)
    }

    fn flush(&mut self) -> Result<(), BlockError> {
        self.disk.lock().flush()
    }

    fn read_dma(&mut self, lba: u64, list: &DmaList<'_>) -> Result<bool, BlockError> {
        if !self.take {
            return Ok(false);
        }
        self.lists.fetch_add(1, Ordering::SeqCst);
        let mut buf = vec![0; list.len() as usize];
        self.disk.lock().read(lba, &mut buf)?;
        let mut at = 0;
        for s in list.segs() {
            let piece = &buf[at..at + s.len as usize];
            self.ram
                .lock()
                .write(GuestPhysAddr(s.addr), piece)
                .map_err(|_| BlockError::Device(0xdead))?;
            at += s.len as usize;
        }
        Ok(true)
    }

    fn write_dma(&mut self, lba: u64, list: &DmaList<'_>) -> Result<bool, BlockError> {
        if !self.take {
            return Ok(false);
        }
        self.lists.fetch_add(1, Ordering::SeqCst);
        let mut buf = Vec::new();
        for s in list.segs() {
            let mut piece = vec![0; s.len as usize];
            self.ram
                .lock()
                .read(GuestPhysAddr(s.addr), &mut piece)
                .map_err(|_| BlockError::Device(0xdead))?;
            buf.extend_from_slice(&piece);
        }
        self.disk.lock().write(lba, &buf).map(|()| true)
    }
}
