//! Block devices: what a virtual disk controller reads and writes, whatever backs it.
//!
//! A guest-facing controller model (NVMe, AHCI, virtio-blk) holds a [`BlockDevice`]; at run
//! time that is a [`Partition`] of one of the machine's disks (driven by a driver plugin,
//! found in the datastore by partition label), in host tests a [`MemDisk`]. Sectors are
//! 512 bytes everywhere on this interface; a driver whose disk has bigger logical blocks
//! translates.
//!
//! ```
//! use hypervisor::block::{BlockDevice, MemDisk, Partition, SECTOR};
//! use hypervisor::sync::Mutex;
//! use alloc_crate::sync::Arc;
//! # extern crate alloc as alloc_crate;
//!
//! let disk = Arc::new(Mutex::new(MemDisk::new(64)));
//! let mut p = Partition::new(disk.clone(), 16, 8, false).unwrap();
//! p.write(0, &[7; SECTOR]).unwrap();
//! // Sector 0 of the partition is sector 16 of the disk; nothing past its end is reachable.
//! assert_eq!(disk.lock().sector(16)[0], 7);
//! assert!(p.write(8, &[0; SECTOR]).is_err());
//! ```
#![deny(unsafe_code)]

use crate::sync::Mutex;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::marker::PhantomData;

/// Bytes per sector on this interface.
pub const SECTOR: usize = 512;

/// Why a block request failed. A controller model reports it to the guest as an I/O error
/// status; it never stops the hypervisor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    /// The request reaches past the end of the device (or overflows).
    #[error("sectors {lba}..+{count} are outside the device's {sectors} sectors")]
    OutOfRange {
        /// First sector asked for.
        lba: u64,
        /// Sectors asked for.
        count: u64,
        /// Size of the device in sectors.
        sectors: u64,
    },
    /// A buffer that is not a whole number of sectors.
    #[error("buffer of {0} bytes is not a whole number of sectors")]
    Unaligned(usize),
    /// A write to a read-only device.
    #[error("the device is read-only")]
    ReadOnly,
    /// The physical device reported an error (or timed out).
    #[error("device error (status {0:#x})")]
    Device(u32),
}

/// One contiguous piece of a DMA transfer: a bus (host-physical) address and a length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DmaSeg {
    /// Bus address of the first byte (host-physical: no IOMMU sits between the machine's
    /// devices and RAM).
    pub addr: u64,
    /// Bytes.
    pub len: u64,
}

/// The data buffer of one request as a device may reach it by DMA: host-physical pieces of
/// one VM's RAM, in transfer order.
///
/// Only the VM's RAM makes one ([`GuestMemory::dma`](crate::vm::mem::GuestMemory::dma)),
/// after checking that every piece lies inside that RAM and giving the guest (zeroed) every
/// 2 MiB block the pieces touch; the list borrows the RAM for `'a`, so the RAM can be
/// neither freed nor taken back from the guest while a device works on it. A driver may
/// therefore hand these addresses to its device for the length of one request, and to
/// nothing else. Plugin crates cannot build one on the machine; on a host build,
/// [`Self::for_host_test`] makes one whose addresses the test's fake device resolves.
#[derive(Debug)]
pub struct DmaList<'a> {
    segs: Vec<DmaSeg>,
    len: u64,
    _ram: PhantomData<&'a mut ()>,
}

impl DmaList<'_> {
    /// Pieces the caller checked lie inside RAM it owns (see the type's contract).
    pub(crate) fn new(segs: Vec<DmaSeg>) -> Self {
        let len = segs.iter().map(|s| s.len).sum();
        Self {
            segs,
            len,
            _ram: PhantomData,
        }
    }

    /// A list over addresses a host test's fake device resolves itself. Not on the
    /// machine (`target_os = "none"`), where an address is real memory.
    #[cfg(not(target_os = "none"))]
    pub fn for_host_test(segs: Vec<DmaSeg>) -> Self {
        Self::new(segs)
    }

    /// The pieces, in transfer order.
    pub fn segs(&self) -> &[DmaSeg] {
        &self.segs
    }

    /// Total bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True if the list moves no byte.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// A disk, or a part of one, addressed in 512-byte sectors.
pub trait BlockDevice: Send {
    /// Size in sectors.
    fn sectors(&self) -> u64;
    /// True if writes are refused.
    fn read_only(&self) -> bool {
        false
    }
    /// Reads `buf.len() / 512` sectors from `lba`.
    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError>;
    /// Writes `data.len() / 512` sectors at `lba`. Returns once the device has the data
    /// (possibly in a volatile cache: see [`Self::flush`]).
    fn write(&mut self, lba: u64, data: &[u8]) -> Result<(), BlockError>;
    /// Returns once everything written before is on stable storage.
    fn flush(&mut self) -> Result<(), BlockError>;
    /// Reads `list.len() / 512` sectors from `lba` straight into `list`'s memory by DMA.
    /// `Ok(false)` when the device cannot take this list as it is (no DMA, or pieces its
    /// controller cannot describe): nothing was done, and the caller reads through a buffer
    /// with [`Self::read`] instead. The default cannot.
    fn read_dma(&mut self, lba: u64, list: &DmaList<'_>) -> Result<bool, BlockError> {
        let _ = (lba, list);
        Ok(false)
    }
    /// Writes `list.len() / 512` sectors at `lba` straight from `list`'s memory by DMA, as
    /// [`Self::write`] does from a buffer; `Ok(false)` as for [`Self::read_dma`].
    fn write_dma(&mut self, lba: u64, list: &DmaList<'_>) -> Result<bool, BlockError> {
        let _ = (lba, list);
        Ok(false)
    }
    /// Makes `count` sectors at `lba` read as zeroes.
    fn write_zeroes(&mut self, lba: u64, count: u64) -> Result<(), BlockError> {
        check(lba, count, self.sectors())?;
        let chunk = vec![0u8; SECTOR * 64];
        let mut done = 0;
        while done < count {
            let n = (count - done).min(64);
            self.write(lba + done, &chunk[..n as usize * SECTOR])?;
            done += n;
        }
        Ok(())
    }
}

/// Storage quirks that change what a guest's disk controller shows (from the board's
/// storage quirk sets, [`QuirkData::Storage`](crate::plugin::QuirkData::Storage)); the
/// default is no quirk. Each controller model says what the fields mean for it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GuestDiskQuirks {
    /// Deepest queue the guest may use (entries per NVMe I/O queue, NCQ depth for AHCI);
    /// 0 is the model's own limit.
    pub max_queue_depth: u32,
    /// Show no volatile write cache: every write is stable before it completes.
    pub no_write_cache: bool,
}

impl GuestDiskQuirks {
    /// Folds a storage quirk in; returns false (and changes nothing) for other kinds.
    /// Limits only tighten. Quirk fields about the machine's own controller (SUBNQN,
    /// ready delay, DMA alias) and `force_512_sectors` (guests always see 512-byte
    /// sectors) change nothing here.
    pub fn apply(&mut self, quirk: &crate::plugin::QuirkData) -> bool {
        let crate::plugin::QuirkData::Storage {
            max_queue_depth,
            no_write_cache,
            ..
        } = *quirk
        else {
            return false;
        };
        if max_queue_depth != 0 {
            self.max_queue_depth = match self.max_queue_depth {
                0 => max_queue_depth,
                n => n.min(max_queue_depth),
            };
        }
        self.no_write_cache |= no_write_cache;
        true
    }
}

/// Checks that `count` sectors at `lba` lie inside a device of `sectors` sectors.
pub fn check(lba: u64, count: u64, sectors: u64) -> Result<(), BlockError> {
    match lba.checked_add(count) {
        Some(end) if end <= sectors => Ok(()),
        _ => Err(BlockError::OutOfRange {
            lba,
            count,
            sectors,
        }),
    }
}

/// The number of whole sectors in a buffer of `len` bytes.
pub fn sectors_in(len: usize) -> Result<u64, BlockError> {
    if len.is_multiple_of(SECTOR) {
        Ok((len / SECTOR) as u64)
    } else {
        Err(BlockError::Unaligned(len))
    }
}

/// The number of whole sectors in `len` bytes (a DMA list's length).
pub fn sectors_in_u64(len: u64) -> Result<u64, BlockError> {
    if len.is_multiple_of(SECTOR as u64) {
        Ok(len / SECTOR as u64)
    } else {
        Err(BlockError::Unaligned(len as usize))
    }
}

/// A disk shared by the partitions cut from it.
pub type SharedDisk = Arc<Mutex<dyn BlockDevice>>;

/// A disk in host memory (host tests, fuzz targets). Counts flushes, and can be told to
/// fail, to test error paths.
#[derive(Clone, Debug)]
pub struct MemDisk {
    data: Vec<u8>,
    /// Flushes done so far.
    pub flushes: u64,
    /// When set, every request fails with this device status.
    pub fail_with: Option<u32>,
}

impl MemDisk {
    /// A zeroed disk of `sectors` sectors.
    pub fn new(sectors: u64) -> Self {
        Self {
            data: vec![0; sectors as usize * SECTOR],
            flushes: 0,
            fail_with: None,
        }
    }

    /// Sector `lba`'s bytes.
    pub fn sector(&self, lba: u64) -> &[u8] {
        &self.data[lba as usize * SECTOR..][..SECTOR]
    }

    fn fail(&self) -> Result<(), BlockError> {
        self.fail_with
            .map_or(Ok(()), |s| Err(BlockError::Device(s)))
    }
}

impl BlockDevice for MemDisk {
    fn sectors(&self) -> u64 {
        (self.data.len() / SECTOR) as u64
    }

    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        self.fail()?;
        check(lba, sectors_in(buf.len())?, self.sectors())?;
        buf.copy_from_slice(&self.data[lba as usize * SECTOR..][..buf.len()]);
        Ok(())
    }

    fn write(&mut self, lba: u64, data: &[u8]) -> Result<(), BlockError> {
        self.fail()?;
        check(lba, sectors_in(data.len())?, self.sectors())?;
        self.data[lba as usize * SECTOR..][..data.len()].copy_from_slice(data);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), BlockError> {
        self.fail()?;
        self.flushes += 1;
        Ok(())
    }
}

/// Sectors `[start, start + len)` of a shared disk, as a device of its own: every request
/// is checked against the partition's bounds before it reaches the disk, so a guest given
/// the partition can reach nothing else.
pub struct Partition {
    disk: SharedDisk,
    start: u64,
    len: u64,
    read_only: bool,
}

impl Partition {
    /// The `len` sectors at `start` of `disk`; `None` if they do not fit on the disk.
    pub fn new(disk: SharedDisk, start: u64, len: u64, read_only: bool) -> Option<Self> {
        let fits = check(start, len, disk.lock().sectors()).is_ok();
        fits.then_some(Self {
            disk,
            start,
            len,
            read_only,
        })
    }
}

impl Partition {
    /// The first `sectors` sectors of the partition, as a device of that size; `None` if
    /// the partition is smaller.
    pub fn truncated(mut self, sectors: u64) -> Option<Self> {
        (sectors <= self.len).then(|| {
            self.len = sectors;
            self
        })
    }
}

impl BlockDevice for Partition {
    fn sectors(&self) -> u64 {
        self.len
    }

    fn read_only(&self) -> bool {
        self.read_only
    }

    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        check(lba, sectors_in(buf.len())?, self.len)?;
        self.disk.lock().read(self.start + lba, buf)
    }

    fn write(&mut self, lba: u64, data: &[u8]) -> Result<(), BlockError> {
        if self.read_only {
            return Err(BlockError::ReadOnly);
        }
        check(lba, sectors_in(data.len())?, self.len)?;
        self.disk.lock().write(self.start + lba, data)
    }

    fn flush(&mut self) -> Result<(), BlockError> {
        self.disk.lock().flush()
    }

    fn read_dma(&mut self, lba: u64, list: &DmaList<'_>) -> Result<bool, BlockError> {
        check(lba, sectors_in_u64(list.len())?, self.len)?;
        self.disk.lock().read_dma(self.start + lba, list)
    }

    fn write_dma(&mut self, lba: u64, list: &DmaList<'_>) -> Result<bool, BlockError> {
        if self.read_only {
            return Err(BlockError::ReadOnly);
        }
        check(lba, sectors_in_u64(list.len())?, self.len)?;
        self.disk.lock().write_dma(self.start + lba, list)
    }

    fn write_zeroes(&mut self, lba: u64, count: u64) -> Result<(), BlockError> {
        if self.read_only {
            return Err(BlockError::ReadOnly);
        }
        check(lba, count, self.len)?;
        self.disk.lock().write_zeroes(self.start + lba, count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk(sectors: u64) -> Arc<Mutex<MemDisk>> {
        Arc::new(Mutex::new(MemDisk::new(sectors)))
    }

    #[test]
    fn a_partition_reaches_only_its_own_sectors() {
        let d = disk(32);
        let mut p = Partition::new(d.clone(), 8, 8, false).unwrap();
        assert!(p.read(7, &mut [0; 2 * SECTOR]).is_err());
        assert!(p.write(u64::MAX, &[1; SECTOR]).is_err());
        assert!(p.write_zeroes(4, 5).is_err());
        p.write(7, &[9; SECTOR]).unwrap();
        assert_eq!(d.lock().sector(15)[0], 9);
        assert_eq!(d.lock().sector(16)[0], 0);
        assert!(Partition::new(d.clone(), 30, 3, false).is_none());
        // Truncated to 2 sectors: the third is out of reach.
        let mut p = Partition::new(d, 8, 8, false)
            .unwrap()
            .truncated(2)
            .unwrap();
        assert_eq!(p.sectors(), 2);
        assert!(p.write(2, &[1; SECTOR]).is_err());
        assert!(p.truncated(3).is_none());
    }

    #[test]
    fn read_only_partitions_refuse_writes_and_partial_sectors_are_refused() {
        let d = disk(8);
        let mut p = Partition::new(d.clone(), 0, 8, true).unwrap();
        assert_eq!(p.write(0, &[1; SECTOR]), Err(BlockError::ReadOnly));
        assert_eq!(p.write_zeroes(0, 1), Err(BlockError::ReadOnly));
        assert_eq!(p.read(0, &mut [0; 100]), Err(BlockError::Unaligned(100)));
        p.flush().unwrap();
        assert_eq!(d.lock().flushes, 1);
    }

    /// A disk that takes every DMA list and records where it was asked to go.
    struct Recorder(Vec<(bool, u64, u64)>);

    impl BlockDevice for Recorder {
        fn sectors(&self) -> u64 {
            32
        }
        fn read(&mut self, _: u64, _: &mut [u8]) -> Result<(), BlockError> {
            Ok(())
        }
        fn write(&mut self, _: u64, _: &[u8]) -> Result<(), BlockError> {
            Ok(())
        }
        fn flush(&mut self) -> Result<(), BlockError> {
            Ok(())
        }
        fn read_dma(&mut self, lba: u64, list: &DmaList<'_>) -> Result<bool, BlockError> {
            self.0.push((false, lba, list.len()));
            Ok(true)
        }
        fn write_dma(&mut self, lba: u64, list: &DmaList<'_>) -> Result<bool, BlockError> {
            self.0.push((true, lba, list.len()));
            Ok(true)
        }
    }

    #[test]
    fn dma_lists_pass_a_partition_shifted_and_bounds_checked() {
        let list = |len| DmaList::for_host_test(vec![DmaSeg { addr: 0x1000, len }]);
        let rec = Arc::new(Mutex::new(Recorder(Vec::new())));
        let mut p = Partition::new(rec.clone(), 8, 8, false).unwrap();
        assert_eq!(p.read_dma(2, &list(1024)), Ok(true));
        assert_eq!(p.write_dma(7, &list(512)), Ok(true));
        assert!(p.read_dma(7, &list(1024)).is_err());
        assert!(p.write_dma(u64::MAX, &list(512)).is_err());
        assert_eq!(p.read_dma(0, &list(100)), Err(BlockError::Unaligned(100)));
        assert_eq!(rec.lock().0, vec![(false, 10, 1024), (true, 15, 512)]);
        let mut ro = Partition::new(rec.clone(), 8, 8, true).unwrap();
        assert_eq!(ro.write_dma(0, &list(512)), Err(BlockError::ReadOnly));
        assert_eq!(rec.lock().0.len(), 2);
        // A disk without DMA (the default) declines, and the caller copies.
        let mem = Arc::new(Mutex::new(MemDisk::new(16)));
        let mut p = Partition::new(mem, 0, 16, false).unwrap();
        assert_eq!(p.read_dma(0, &list(512)), Ok(false));
        assert_eq!(p.write_dma(0, &list(512)), Ok(false));
    }

    #[test]
    fn device_errors_pass_through() {
        let d = disk(8);
        d.lock().fail_with = Some(0x281);
        let mut p = Partition::new(d, 0, 8, false).unwrap();
        assert_eq!(p.read(0, &mut [0; SECTOR]), Err(BlockError::Device(0x281)));
    }
}
