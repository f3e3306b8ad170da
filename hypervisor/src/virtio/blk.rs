//! virtio-blk (virtio 1.2 §5.2) over any [`BlockDevice`].
//!
//! One request queue of up to [`QUEUE_SIZE`] entries. Requests: `IN`, `OUT`, `FLUSH`,
//! `GET_ID` and `WRITE_ZEROES` (one segment of at most [`MAX_WRITE_ZEROES_SECTORS`]);
//! anything else is answered `UNSUPP`. A request is framed by its buffers' direction,
//! not by descriptor boundaries: the 16-byte header is the start of the device-readable
//! bytes, the status the last device-writable byte, the data what lies between. Data
//! moves through a bounce buffer of [`BOUNCE_SIZE`] bytes, so a request of any size
//! costs no allocation. A disk error, a read-only disk, a request past the end of the
//! disk or of other than whole sectors, and guest buffers outside RAM all end as
//! `VIRTIO_BLK_S_IOERR` in the request's status byte; the device never panics.
#![deny(unsafe_code)]

use super::queue::{Cursor, QueueError, SplitQueue};
use super::VirtioDevice;
use crate::block::{BlockDevice, SECTOR};
use crate::vm::mem::GuestMemory;
use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;

/// virtio device ID of a block device.
pub const VIRTIO_ID_BLOCK: u16 = 2;

/// Feature: `seg_max` is valid.
pub const VIRTIO_BLK_F_SEG_MAX: u64 = 1 << 2;
/// Feature: the device is read-only.
pub const VIRTIO_BLK_F_RO: u64 = 1 << 5;
/// Feature: `blk_size` is valid.
pub const VIRTIO_BLK_F_BLK_SIZE: u64 = 1 << 6;
/// Feature: the device has a volatile cache and takes `FLUSH`.
pub const VIRTIO_BLK_F_FLUSH: u64 = 1 << 9;
/// Feature: the device takes `WRITE_ZEROES`.
pub const VIRTIO_BLK_F_WRITE_ZEROES: u64 = 1 << 14;

/// Request: read.
pub const VIRTIO_BLK_T_IN: u32 = 0;
/// Request: write.
pub const VIRTIO_BLK_T_OUT: u32 = 1;
/// Request: flush the volatile cache.
pub const VIRTIO_BLK_T_FLUSH: u32 = 4;
/// Request: device ID string (20 bytes).
pub const VIRTIO_BLK_T_GET_ID: u32 = 8;
/// Request: write zeroes.
pub const VIRTIO_BLK_T_WRITE_ZEROES: u32 = 13;

/// Status: success.
pub const VIRTIO_BLK_S_OK: u8 = 0;
/// Status: I/O error.
pub const VIRTIO_BLK_S_IOERR: u8 = 1;
/// Status: request not supported.
pub const VIRTIO_BLK_S_UNSUPP: u8 = 2;

/// Size of the request queue.
pub const QUEUE_SIZE: u16 = 256;
/// Most data segments in a request (`seg_max`): the queue size less header and status,
/// so that a request fits even without indirect descriptors.
pub const SEG_MAX: u32 = QUEUE_SIZE as u32 - 2;
/// Largest `WRITE_ZEROES` request, in sectors (16 MiB: a request is served
/// synchronously).
pub const MAX_WRITE_ZEROES_SECTORS: u32 = 32768;
/// Bytes moved between disk and guest at a time.
pub const BOUNCE_SIZE: usize = 64 * 1024;
/// Length of the `GET_ID` string.
pub const ID_LEN: usize = 20;
/// Size of the configuration space (up to `write_zeroes_may_unmap` and its padding).
pub const CONFIG_LEN: usize = 0x3c;

/// A virtio block device.
pub struct VirtioBlk {
    disk: Box<dyn BlockDevice>,
    id: [u8; ID_LEN],
    features: u64,
    queue_sizes: [u16; 1],
    bounce: Vec<u8>,
}

impl VirtioBlk {
    /// A virtio-blk device over `disk`; `GET_ID` answers `serial` (at most 20 bytes
    /// kept).
    pub fn new(disk: Box<dyn BlockDevice>, serial: &str) -> Self {
        let mut id = [0u8; ID_LEN];
        let n = serial.len().min(ID_LEN);
        id[..n].copy_from_slice(&serial.as_bytes()[..n]);
        let mut features = VIRTIO_BLK_F_SEG_MAX | VIRTIO_BLK_F_BLK_SIZE | VIRTIO_BLK_F_FLUSH;
        if disk.read_only() {
            features |= VIRTIO_BLK_F_RO;
        } else {
            features |= VIRTIO_BLK_F_WRITE_ZEROES;
        }
        Self {
            disk,
            id,
            features,
            queue_sizes: [QUEUE_SIZE],
            bounce: vec![0; BOUNCE_SIZE],
        }
    }

    /// The configuration space.
    fn config(&self) -> [u8; CONFIG_LEN] {
        let mut c = [0u8; CONFIG_LEN];
        c[0x00..0x08].copy_from_slice(&self.disk.sectors().to_le_bytes()); // capacity
        c[0x0c..0x10].copy_from_slice(&SEG_MAX.to_le_bytes()); // seg_max
        c[0x14..0x18].copy_from_slice(&(SECTOR as u32).to_le_bytes()); // blk_size
        c[0x22..0x24].copy_from_slice(&1u16.to_le_bytes()); // num_queues
        c[0x30..0x34].copy_from_slice(&MAX_WRITE_ZEROES_SECTORS.to_le_bytes());
        c[0x34..0x38].copy_from_slice(&1u32.to_le_bytes()); // max_write_zeroes_seg
        c
    }

    /// Serves one request; returns the bytes written into the chain's writable buffers.
    fn request(
        &mut self,
        mem: &mut dyn GuestMemory,
        reader: Cursor<'_>,
        writer: Cursor<'_>,
    ) -> u32 {
        let (mut data_out, mut status) = writer.split_tail(1);
        if status.remaining() == 0 {
            // No byte to report a status in: nothing to do for a driver that sent it.
            return 0;
        }
        let mut reader = reader;
        let result = self.serve(mem, &mut reader, &mut data_out);
        let code = result.unwrap_or_else(|e| e);
        let mut written = data_out.consumed();
        if status.write(mem, &[code]) == Ok(1) {
            written += 1;
        }
        u32::try_from(written).unwrap_or(u32::MAX)
    }

    /// Moves the rest of `cursor`'s buffers (a request's data) straight between the guest's
    /// memory and the disk at `lba` by DMA, if both can: true if done (the cursor then
    /// moved past the data), false if nothing was done and the caller copies. A buffer
    /// outside the guest's RAM is an I/O error before the disk is asked.
    fn direct(
        &mut self,
        mem: &mut dyn GuestMemory,
        cursor: &mut Cursor<'_>,
        lba: u64,
        write: bool,
    ) -> Result<bool, u8> {
        let len = cursor.remaining();
        let ranges = cursor.ranges(len);
        if ranges.iter().map(|r| r.1).sum::<u64>() != len {
            // An address that overflows: the copy path reports it.
            return Ok(false);
        }
        let done = match mem.dma(&ranges) {
            Ok(Some(list)) if write => self.disk.write_dma(lba, &list),
            Ok(Some(list)) => self.disk.read_dma(lba, &list),
            Ok(None) => Ok(false),
            Err(_) => return Err(VIRTIO_BLK_S_IOERR),
        }
        .map_err(|_| VIRTIO_BLK_S_IOERR)?;
        if done {
            cursor.skip(len);
        }
        Ok(done)
    }

    /// The status of one request (`Err` carries the failure status).
    fn serve(
        &mut self,
        mem: &mut dyn GuestMemory,
        reader: &mut Cursor<'_>,
        data_out: &mut Cursor<'_>,
    ) -> Result<u8, u8> {
        let mut hdr = [0u8; 16];
        if reader.read(mem, &mut hdr) != Ok(16) {
            return Err(VIRTIO_BLK_S_IOERR);
        }
        let kind = u32::from_le_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]);
        let sector = u64::from_le_bytes([
            hdr[8], hdr[9], hdr[10], hdr[11], hdr[12], hdr[13], hdr[14], hdr[15],
        ]);
        let ioerr = |_| VIRTIO_BLK_S_IOERR;
        match kind {
            VIRTIO_BLK_T_IN => {
                let len = data_out.remaining();
                let count = whole_sectors(len)?;
                crate::block::check(sector, count, self.disk.sectors()).map_err(ioerr)?;
                let mut lba = sector;
                if self.direct(mem, data_out, sector, false)? {
                    return Ok(VIRTIO_BLK_S_OK);
                }
                while data_out.remaining() > 0 {
                    let n = chunk(data_out.remaining());
                    let buf = &mut self.bounce[..n];
                    self.disk.read(lba, buf).map_err(ioerr)?;
                    if data_out.write(mem, buf) != Ok(n) {
                        return Err(VIRTIO_BLK_S_IOERR);
                    }
                    lba += (n / SECTOR) as u64;
                }
            }
            VIRTIO_BLK_T_OUT => {
                if self.disk.read_only() {
                    return Err(VIRTIO_BLK_S_IOERR);
                }
                let count = whole_sectors(reader.remaining())?;
                crate::block::check(sector, count, self.disk.sectors()).map_err(ioerr)?;
                let mut lba = sector;
                if self.direct(mem, reader, sector, true)? {
                    return Ok(VIRTIO_BLK_S_OK);
                }
                while reader.remaining() > 0 {
                    let n = chunk(reader.remaining());
                    let buf = &mut self.bounce[..n];
                    if reader.read(mem, buf) != Ok(n) {
                        return Err(VIRTIO_BLK_S_IOERR);
                    }
                    self.disk.write(lba, buf).map_err(ioerr)?;
                    lba += (n / SECTOR) as u64;
                }
            }
            VIRTIO_BLK_T_FLUSH => self.disk.flush().map_err(ioerr)?,
            VIRTIO_BLK_T_GET_ID => {
                let n = ID_LEN.min(data_out.remaining() as usize);
                if data_out.write(mem, &self.id[..n]) != Ok(n) {
                    return Err(VIRTIO_BLK_S_IOERR);
                }
            }
            VIRTIO_BLK_T_WRITE_ZEROES if self.features & VIRTIO_BLK_F_WRITE_ZEROES != 0 => {
                // One segment: le64 sector, le32 num_sectors, le32 flags.
                let mut seg = [0u8; 16];
                if reader.remaining() != 16 || reader.read(mem, &mut seg) != Ok(16) {
                    return Err(VIRTIO_BLK_S_IOERR);
                }
                let lba = u64::from_le_bytes([
                    seg[0], seg[1], seg[2], seg[3], seg[4], seg[5], seg[6], seg[7],
                ]);
                let count = u32::from_le_bytes([seg[8], seg[9], seg[10], seg[11]]);
                let flags = u32::from_le_bytes([seg[12], seg[13], seg[14], seg[15]]);
                // Only the `unmap` flag exists; any other bit makes the request invalid.
                if count > MAX_WRITE_ZEROES_SECTORS || flags & !1 != 0 {
                    return Err(VIRTIO_BLK_S_UNSUPP);
                }
                self.disk
                    .write_zeroes(lba, u64::from(count))
                    .map_err(ioerr)?;
            }
            _ => return Err(VIRTIO_BLK_S_UNSUPP),
        }
        Ok(VIRTIO_BLK_S_OK)
    }
}

/// The sectors in `len` bytes of data, or `IOERR` if it is not a whole number.
fn whole_sectors(len: u64) -> Result<u64, u8> {
    if len.is_multiple_of(SECTOR as u64) {
        Ok(len / SECTOR as u64)
    } else {
        Err(VIRTIO_BLK_S_IOERR)
    }
}

/// The next transfer: at most the bounce buffer (a whole number of sectors).
fn chunk(remaining: u64) -> usize {
    remaining.min(BOUNCE_SIZE as u64) as usize
}

impl VirtioDevice for VirtioBlk {
    fn device_id(&self) -> u16 {
        VIRTIO_ID_BLOCK
    }

    fn pci_class(&self) -> u32 {
        // Mass storage, SCSI: what QEMU's virtio-blk-pci reports.
        0x01_00_00
    }

    fn features(&self) -> u64 {
        self.features
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &self.queue_sizes
    }

    fn config_len(&self) -> usize {
        CONFIG_LEN
    }

    fn config_read(&self, offset: u64, data: &mut [u8]) {
        let c = self.config();
        for (i, b) in data.iter_mut().enumerate() {
            *b = usize::try_from(offset)
                .ok()
                .and_then(|o| o.checked_add(i))
                .and_then(|o| c.get(o))
                .copied()
                .unwrap_or(0);
        }
    }

    fn config_write(&mut self, _offset: u64, _data: &[u8]) {
        // No writable field is offered (`VIRTIO_BLK_F_CONFIG_WCE` is not).
    }

    fn activate(&mut self, _features: u64) {}

    fn process_queue(
        &mut self,
        index: u16,
        queue: &mut SplitQueue,
        mem: &mut dyn GuestMemory,
    ) -> Result<bool, QueueError> {
        if index != 0 {
            return Ok(false);
        }
        let mut used = false;
        // At most a queue's worth per notify: a chain made available after this pass
        // comes with its own notify.
        for _ in 0..queue.size {
            let Some(chain) = queue.pop(mem)? else {
                break;
            };
            let written = self.request(mem, chain.reader(), chain.writer());
            queue.add_used(mem, chain.head, written)?;
            used = true;
        }
        Ok(used)
    }

    fn reset(&mut self) {}
}
