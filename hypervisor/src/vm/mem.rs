//! Guest memory as device models see it: reads and writes by guest-physical address.
//!
//! A device that does DMA (a virtqueue, an NVMe queue, an AHCI command list) reaches the
//! guest's RAM only through [`GuestMemory`], which checks every access against the VM's
//! RAM: an address outside it is an error the device turns into an error status for the
//! guest, never a hypervisor fault. At run time the VM's RAM implements it (blocks the
//! guest never touched are zeroed first, as on a stage-2 fault); host tests and fuzz
//! targets use [`FakeGuestMemory`].
//!
//! ```
//! use hypervisor::types::GuestPhysAddr;
//! use hypervisor::vm::mem::{FakeGuestMemory, GuestMemory};
//!
//! let mut mem = FakeGuestMemory::new(GuestPhysAddr(0x4000_0000), 0x1000);
//! mem.write_u32(GuestPhysAddr(0x4000_0010), 0xdead_beef).unwrap();
//! assert_eq!(mem.read_u32(GuestPhysAddr(0x4000_0010)), Ok(0xdead_beef));
//! // One byte past the end is refused, the whole access with it.
//! assert!(mem.write(GuestPhysAddr(0x4000_0fff), &[0, 0]).is_err());
//! ```
#![deny(unsafe_code)]

use crate::block::DmaList;
use crate::types::GuestPhysAddr;
use alloc::vec;
use alloc::vec::Vec;

/// A device access to guest memory that cannot be done.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GuestMemError {
    /// `[addr, addr + len)` is not entirely inside the VM's RAM.
    #[error("guest range {addr} + {len:#x} is outside the VM's RAM")]
    OutOfRange {
        /// First byte asked for.
        addr: GuestPhysAddr,
        /// Length asked for.
        len: u64,
    },
    /// The RAM could not be given to the guest (zeroing or stage-2 mapping failed).
    #[error("guest RAM at {0} could not be populated")]
    Populate(GuestPhysAddr),
}

/// A VM's RAM, by guest-physical address. Every access is all or nothing.
pub trait GuestMemory: Send {
    /// Fills `buf` from guest memory at `addr`.
    fn read(&mut self, addr: GuestPhysAddr, buf: &mut [u8]) -> Result<(), GuestMemError>;
    /// Writes `data` to guest memory at `addr`.
    fn write(&mut self, addr: GuestPhysAddr, data: &[u8]) -> Result<(), GuestMemError>;

    /// The guest ranges `ranges` (guest-physical start, bytes; in transfer order) as host
    /// memory a device may read or write by DMA for one request, borrowing this memory
    /// until the request is done. Every range must lie entirely inside the VM's RAM (else
    /// `OutOfRange`, and nothing changed); a 2 MiB block the guest does not have yet is
    /// zeroed and given to it first, as on a guest's first touch, so whatever the device
    /// does (or fails to do) the guest never sees a previous owner's byte. `Ok(None)` if
    /// this memory cannot be reached by DMA: the caller copies with [`Self::read`] and
    /// [`Self::write`]. The default cannot.
    fn dma(
        &mut self,
        ranges: &[(GuestPhysAddr, u64)],
    ) -> Result<Option<DmaList<'_>>, GuestMemError> {
        let _ = ranges;
        Ok(None)
    }

    /// A little-endian `u16` at `addr`.
    fn read_u16(&mut self, addr: GuestPhysAddr) -> Result<u16, GuestMemError> {
        let mut b = [0; 2];
        self.read(addr, &mut b)?;
        Ok(u16::from_le_bytes(b))
    }
    /// A little-endian `u32` at `addr`.
    fn read_u32(&mut self, addr: GuestPhysAddr) -> Result<u32, GuestMemError> {
        let mut b = [0; 4];
        self.read(addr, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    /// A little-endian `u64` at `addr`.
    fn read_u64(&mut self, addr: GuestPhysAddr) -> Result<u64, GuestMemError> {
        let mut b = [0; 8];
        self.read(addr, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }
    /// Writes a little-endian `u16` at `addr`.
    fn write_u16(&mut self, addr: GuestPhysAddr, v: u16) -> Result<(), GuestMemError> {
        self.write(addr, &v.to_le_bytes())
    }
    /// Writes a little-endian `u32` at `addr`.
    fn write_u32(&mut self, addr: GuestPhysAddr, v: u32) -> Result<(), GuestMemError> {
        self.write(addr, &v.to_le_bytes())
    }
    /// Writes a little-endian `u64` at `addr`.
    fn write_u64(&mut self, addr: GuestPhysAddr, v: u64) -> Result<(), GuestMemError> {
        self.write(addr, &v.to_le_bytes())
    }
}

/// The offset of `[addr, addr + len)` inside `[base, base + size)`, if it is inside.
pub fn offset_in(base: GuestPhysAddr, size: u64, addr: GuestPhysAddr, len: u64) -> Option<u64> {
    let off = addr.0.checked_sub(base.0)?;
    (off.checked_add(len)? <= size).then_some(off)
}

/// Guest RAM in a host `Vec`, for host tests and fuzz targets of device models.
#[derive(Clone, Debug)]
pub struct FakeGuestMemory {
    base: GuestPhysAddr,
    bytes: Vec<u8>,
}

impl FakeGuestMemory {
    /// `size` zeroed bytes at guest-physical `base`.
    pub fn new(base: GuestPhysAddr, size: usize) -> Self {
        Self {
            base,
            bytes: vec![0; size],
        }
    }

    /// The whole memory, from `base`.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The whole memory, writable.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.bytes
    }

    fn range(
        &self,
        addr: GuestPhysAddr,
        len: usize,
    ) -> Result<core::ops::Range<usize>, GuestMemError> {
        let off = offset_in(self.base, self.bytes.len() as u64, addr, len as u64).ok_or(
            GuestMemError::OutOfRange {
                addr,
                len: len as u64,
            },
        )? as usize;
        Ok(off..off + len)
    }
}

impl GuestMemory for FakeGuestMemory {
    fn read(&mut self, addr: GuestPhysAddr, buf: &mut [u8]) -> Result<(), GuestMemError> {
        let r = self.range(addr, buf.len())?;
        buf.copy_from_slice(&self.bytes[r]);
        Ok(())
    }

    fn write(&mut self, addr: GuestPhysAddr, data: &[u8]) -> Result<(), GuestMemError> {
        let r = self.range(addr, data.len())?;
        self.bytes[r].copy_from_slice(data);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accesses_straddling_either_end_are_refused_whole() {
        let base = GuestPhysAddr(0x4000_0000);
        let mut m = FakeGuestMemory::new(base, 16);
        assert!(m.write(GuestPhysAddr(base.0 - 1), &[1, 2]).is_err());
        assert!(m.write(GuestPhysAddr(base.0 + 15), &[1, 2]).is_err());
        assert!(m.bytes().iter().all(|&b| b == 0));
        assert!(m.read_u64(GuestPhysAddr(u64::MAX - 3)).is_err());
        m.write_u64(GuestPhysAddr(base.0 + 8), u64::MAX).unwrap();
        assert_eq!(m.read_u64(GuestPhysAddr(base.0 + 8)), Ok(u64::MAX));
    }
}
