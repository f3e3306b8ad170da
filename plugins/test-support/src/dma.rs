//! A fake [`hypervisor::dma::Env`] for host tests of drivers that do DMA: buffers are host
//! memory at made-up bus addresses, and the fake device reaches them by bus address through
//! [`FakeEnv::device_read`] and [`FakeEnv::device_write`], which refuse (return `Err`) an
//! access that is not inside one buffer the driver allocated, as an IOMMU would. The clock
//! moves by [`FakeEnv::TICK`] each time the driver looks at it, so a driver's timeouts end.
//!
//! ```ignore
//! let env = FakeEnv::new();
//! let mut nic = Nic::new(env.clone(), FakeRegs::new(env.clone()))?;
//! env.device_write(rx_buffer_addr, &frame)?;   // the fake device DMAs a frame in
//! ```

use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use hypervisor::dma::{Dma, DmaError, Env};
use hypervisor::sync::Mutex;

/// The memory and clock behind a [`FakeEnv`].
#[derive(Default)]
struct Memory {
    /// Buffers by bus address.
    regions: BTreeMap<u64, Vec<u8>>,
    next_addr: u64,
    clock: u64,
    /// Allocations still allowed (`None`: unlimited).
    allocs_left: Option<usize>,
}

impl Memory {
    fn find(&mut self, addr: u64, len: usize) -> Result<&mut [u8], DmaError> {
        let (base, buf) = self
            .regions
            .range_mut(..=addr)
            .next_back()
            .ok_or(DmaError)?;
        let off = usize::try_from(addr - base).map_err(|_| DmaError)?;
        let end = off.checked_add(len).ok_or(DmaError)?;
        buf.get_mut(off..end).ok_or(DmaError)
    }
}

/// A fake DMA environment (cheap to clone: clones share the memory).
#[derive(Clone)]
pub struct FakeEnv(Arc<Mutex<Memory>>);

impl Default for FakeEnv {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeEnv {
    /// Ticks the clock advances per [`Env::now`] call.
    pub const TICK: u64 = 100;
    /// Ticks per millisecond.
    pub const TICKS_PER_MS: u64 = 1000;

    /// An empty environment; buffers start at bus address 0x8000_0000, a guard page apart.
    pub fn new() -> Self {
        Self(Arc::new(Mutex::new(Memory {
            next_addr: 0x8000_0000,
            ..Memory::default()
        })))
    }

    /// After `n` more allocations, every allocation fails (the RAM pool ran dry).
    pub fn fail_allocations_after(&self, n: usize) {
        self.0.lock().allocs_left = Some(n);
    }

    /// The device reads `buf.len()` bytes at bus address `addr`.
    pub fn device_read(&self, addr: u64, buf: &mut [u8]) -> Result<(), DmaError> {
        buf.copy_from_slice(self.0.lock().find(addr, buf.len())?);
        Ok(())
    }

    /// The device writes `data` at bus address `addr`.
    pub fn device_write(&self, addr: u64, data: &[u8]) -> Result<(), DmaError> {
        self.0.lock().find(addr, data.len())?.copy_from_slice(data);
        Ok(())
    }

    /// Bytes currently allocated.
    pub fn allocated(&self) -> usize {
        self.0.lock().regions.values().map(Vec::len).sum()
    }
}

/// A buffer of a [`FakeEnv`]; dropping it frees it.
pub struct FakeBuf {
    mem: Arc<Mutex<Memory>>,
    addr: u64,
    size: u64,
}

impl Drop for FakeBuf {
    fn drop(&mut self) {
        self.mem.lock().regions.remove(&self.addr);
    }
}

impl FakeBuf {
    fn range(&self, offset: u64, len: usize) -> Result<u64, DmaError> {
        let end = offset.checked_add(len as u64).ok_or(DmaError)?;
        if end > self.size {
            return Err(DmaError);
        }
        Ok(self.addr + offset)
    }
}

impl Dma for FakeBuf {
    fn bus_addr(&self) -> u64 {
        self.addr
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), DmaError> {
        let at = self.range(offset, data.len())?;
        self.mem.lock().find(at, data.len())?.copy_from_slice(data);
        Ok(())
    }

    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), DmaError> {
        let at = self.range(offset, buf.len())?;
        buf.copy_from_slice(self.mem.lock().find(at, buf.len())?);
        Ok(())
    }
}

impl Env for FakeEnv {
    type Buf = FakeBuf;

    fn alloc(&self, size: u64, _coherent: bool) -> Result<FakeBuf, DmaError> {
        let mut m = self.0.lock();
        if let Some(left) = m.allocs_left.as_mut() {
            if *left == 0 {
                return Err(DmaError);
            }
            *left -= 1;
        }
        let size = size.div_ceil(4096).max(1) * 4096;
        let addr = m.next_addr;
        m.next_addr += size + 4096;
        m.regions.insert(addr, vec![0; size as usize]);
        Ok(FakeBuf {
            mem: self.0.clone(),
            addr,
            size,
        })
    }

    fn now(&self) -> u64 {
        let mut m = self.0.lock();
        m.clock += Self::TICK;
        m.clock
    }

    fn sync_dma(&self, _list: &hypervisor::block::DmaList<'_>, _coherent: bool) {
        // The drivers tested against this fake move data through their buffers only.
    }

    fn ticks_per_ms(&self) -> u64 {
        Self::TICKS_PER_MS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_accesses_stay_inside_allocated_buffers() {
        let env = FakeEnv::new();
        let mut b = env.alloc(100, false).unwrap();
        let a = b.bus_addr();
        b.write(4090, &[1, 2, 3, 4, 5, 6]).unwrap();
        assert!(b.write(4095, &[0, 0]).is_err());
        let mut got = [0u8; 6];
        env.device_read(a + 4090, &mut got).unwrap();
        assert_eq!(got, [1, 2, 3, 4, 5, 6]);
        // Past the end, in the guard page, before the first buffer: refused.
        assert!(env.device_read(a + 4095, &mut got).is_err());
        assert!(env.device_write(a + 4096, &[1]).is_err());
        assert!(env.device_write(a - 1, &[1]).is_err());
        assert_eq!(env.allocated(), 4096);
        drop(b);
        assert_eq!(env.allocated(), 0);
        assert!(env.device_write(a, &[1]).is_err());
        env.fail_allocations_after(1);
        assert!(env.alloc(1, true).is_ok());
        assert!(env.alloc(1, true).is_err());
    }
}
