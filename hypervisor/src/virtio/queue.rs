//! The split virtqueue (virtio 1.x §2.7): descriptor table, available ring and used ring
//! in guest memory, reached only through [`GuestMemory`].
//!
//! The guest owns all three areas and can rewrite them at any moment, so everything read
//! from them is checked: a head or `next` index beyond the queue, a chain longer than the
//! queue (a loop), an indirect table inside an indirect table or of a bad length, readable
//! descriptors after writable ones, more than 4 GiB in one chain, an available index
//! claiming more chains than the queue holds, or any ring or table outside the VM's RAM
//! is a [`QueueError`], never a hang or a panic. A device model that sees one marks
//! itself as needing a reset (virtio §2.1.2), as QEMU does.
//!
//! Ordering: the guest runs on other CPUs while a device walks its rings, so reads of
//! the rings are ordered after the available index that announced them, and the used
//! element is written before the used index that publishes it (fences, as in a driver).
//!
//! Event-index notification suppression (`VIRTIO_F_RING_EVENT_IDX`) is not offered; the
//! driver's `VIRTQ_AVAIL_F_NO_INTERRUPT` is honoured.
#![deny(unsafe_code)]

use crate::types::GuestPhysAddr;
use crate::vm::mem::{GuestMemError, GuestMemory};
use alloc::vec::Vec;
use core::sync::atomic::{fence, Ordering};

/// Descriptor flag: the chain continues at `next`.
pub const VIRTQ_DESC_F_NEXT: u16 = 1;
/// Descriptor flag: the device writes this buffer (else it reads it).
pub const VIRTQ_DESC_F_WRITE: u16 = 2;
/// Descriptor flag: the buffer is a table of descriptors (an indirect chain).
pub const VIRTQ_DESC_F_INDIRECT: u16 = 4;
/// Available ring flag: the driver does not want an interrupt for used buffers.
pub const VIRTQ_AVAIL_F_NO_INTERRUPT: u16 = 1;
/// Largest queue size the split ring format allows.
pub const MAX_QUEUE_SIZE: u16 = 32768;
/// Most descriptors an indirect table may hold (QEMU's limit, `VIRTQUEUE_MAX_SIZE`).
pub const MAX_INDIRECT: u32 = 1024;
/// Bytes of one descriptor.
const DESC_SIZE: u64 = 16;

/// A guest's virtqueue that cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    /// A ring, table or descriptor lies outside the VM's RAM.
    #[error("virtqueue memory: {0}")]
    Memory(#[from] GuestMemError),
    /// The available index runs more than a queue's worth ahead of the device.
    #[error("available index {avail} is more than the queue size {size} past {seen}")]
    AvailIndex {
        /// The index the driver published.
        avail: u16,
        /// The next index the device expected.
        seen: u16,
        /// The queue size.
        size: u16,
    },
    /// A head or `next` index beyond the table.
    #[error("descriptor index {index} is beyond the table of {size}")]
    BadIndex {
        /// The index.
        index: u16,
        /// The table size.
        size: u32,
    },
    /// More descriptors than the table holds: a loop.
    #[error("descriptor chain longer than its table of {0} (a loop)")]
    Loop(u32),
    /// An indirect descriptor that is malformed (inside an indirect table, with
    /// `NEXT`, or of a length that is 0, not a multiple of 16 or too big).
    #[error("malformed indirect descriptor")]
    BadIndirect,
    /// A device-readable descriptor after a device-writable one.
    #[error("readable descriptor after a writable one")]
    ReadableAfterWritable,
    /// The buffers of one chain add up to more than 4 GiB.
    #[error("descriptor chain of more than 4 GiB")]
    TooLong,
    /// The queue is used with a size that is not a power of two of at most
    /// [`MAX_QUEUE_SIZE`] (it was never validated with [`SplitQueue::is_valid`]).
    #[error("queue size {0} is not a power of two up to {MAX_QUEUE_SIZE}")]
    BadSize(u16),
}

/// One buffer of a chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Descriptor {
    /// Guest-physical address.
    pub addr: u64,
    /// Length in bytes.
    pub len: u32,
    /// The device writes it (else reads it).
    pub writable: bool,
}

/// A descriptor chain the driver made available: device-readable buffers first, then
/// device-writable ones.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DescChain {
    /// Index of its head descriptor (what goes back in the used ring).
    pub head: u16,
    /// Its buffers, in order (indirect tables flattened).
    pub descriptors: Vec<Descriptor>,
    readable: usize,
}

impl DescChain {
    /// The device-readable buffers.
    pub fn readable(&self) -> &[Descriptor] {
        &self.descriptors[..self.readable]
    }

    /// The device-writable buffers.
    pub fn writable(&self) -> &[Descriptor] {
        &self.descriptors[self.readable..]
    }

    /// A cursor over the readable buffers.
    pub fn reader(&self) -> Cursor<'_> {
        Cursor::new(self.readable())
    }

    /// A cursor over the writable buffers.
    pub fn writer(&self) -> Cursor<'_> {
        Cursor::new(self.writable())
    }
}

/// A position in a list of buffers, read or written as one byte stream.
#[derive(Clone, Debug)]
pub struct Cursor<'c> {
    descs: &'c [Descriptor],
    index: usize,
    offset: u32,
    /// Bytes consumed.
    done: u64,
    /// Bytes this cursor may consume in all (`done` included).
    limit: u64,
}

impl<'c> Cursor<'c> {
    fn new(descs: &'c [Descriptor]) -> Self {
        Self {
            descs,
            index: 0,
            offset: 0,
            done: 0,
            limit: descs.iter().map(|d| u64::from(d.len)).sum(),
        }
    }

    /// Bytes left.
    pub fn remaining(&self) -> u64 {
        self.limit - self.done
    }

    /// Bytes consumed so far.
    pub fn consumed(&self) -> u64 {
        self.done
    }

    /// Moves through the buffers, calling `f(guest address, range of the caller's
    /// buffer)` for each piece of the next `len` bytes; stops at the first error. Returns
    /// the bytes done, which is less than `len` only when the cursor ran out.
    fn walk(
        &mut self,
        len: usize,
        mut f: impl FnMut(GuestPhysAddr, core::ops::Range<usize>) -> Result<(), GuestMemError>,
    ) -> Result<usize, GuestMemError> {
        let len = len.min(usize::try_from(self.remaining()).unwrap_or(usize::MAX));
        let mut pos = 0;
        while pos < len {
            let Some(d) = self.descs.get(self.index) else {
                break;
            };
            let left = (d.len - self.offset) as usize;
            if left == 0 {
                self.index += 1;
                self.offset = 0;
                continue;
            }
            let n = left.min(len - pos);
            let addr =
                d.addr
                    .checked_add(u64::from(self.offset))
                    .ok_or(GuestMemError::OutOfRange {
                        addr: GuestPhysAddr(d.addr),
                        len: u64::from(d.len),
                    })?;
            f(GuestPhysAddr(addr), pos..pos + n)?;
            pos += n;
            self.offset += n as u32;
            self.done += n as u64;
        }
        Ok(pos)
    }

    /// Fills `buf` from the buffers; returns the bytes read (short at the end).
    pub fn read(
        &mut self,
        mem: &mut dyn GuestMemory,
        buf: &mut [u8],
    ) -> Result<usize, GuestMemError> {
        let len = buf.len();
        self.walk(len, |addr, r| mem.read(addr, &mut buf[r]))
    }

    /// Writes `data` into the buffers; returns the bytes written (short at the end).
    pub fn write(
        &mut self,
        mem: &mut dyn GuestMemory,
        data: &[u8],
    ) -> Result<usize, GuestMemError> {
        self.walk(data.len(), |addr, r| mem.write(addr, &data[r]))
    }

    /// The guest ranges of the next `len` bytes (fewer if the buffers end first), without
    /// moving: what a device hands to a disk as a DMA list.
    pub fn ranges(&self, len: u64) -> Vec<(GuestPhysAddr, u64)> {
        let mut c = self.clone();
        let mut out = Vec::new();
        let n = usize::try_from(len).unwrap_or(usize::MAX);
        let _ = c.walk(n, |addr, r| {
            out.push((addr, r.len() as u64));
            Ok(())
        });
        out
    }

    /// Skips `len` bytes (at most what is left).
    pub fn skip(&mut self, len: u64) {
        let n = usize::try_from(len).unwrap_or(usize::MAX);
        let _ = self.walk(n, |_, _| Ok(()));
    }

    /// Splits off the last `len` bytes (fewer if there are fewer): this cursor, cut to
    /// stop before them, and a cursor over them. How a device finds a trailing status
    /// byte.
    pub fn split_tail(self, len: u64) -> (Cursor<'c>, Cursor<'c>) {
        let keep = self.remaining().saturating_sub(len);
        let mut tail = self.clone();
        tail.skip(keep);
        let head = Cursor {
            limit: self.done + keep,
            ..self
        };
        (head, tail)
    }
}

/// The state of one split virtqueue, as the driver configured it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SplitQueue {
    /// Largest size the device offers.
    pub max_size: u16,
    /// Size the driver chose (a power of two up to `max_size`).
    pub size: u16,
    /// The driver enabled the queue (`queue_enable`).
    pub ready: bool,
    /// Guest-physical address of the descriptor table.
    pub desc_table: u64,
    /// Guest-physical address of the available ring ("driver area").
    pub avail_ring: u64,
    /// Guest-physical address of the used ring ("device area").
    pub used_ring: u64,
    next_avail: u16,
    next_used: u16,
}

impl SplitQueue {
    /// A queue in its reset state offering `max_size` entries (a power of two).
    pub const fn new(max_size: u16) -> Self {
        Self {
            max_size,
            size: max_size,
            ready: false,
            desc_table: 0,
            avail_ring: 0,
            used_ring: 0,
            next_avail: 0,
            next_used: 0,
        }
    }

    /// The next available-ring index the device will read (device state to save).
    pub fn next_avail(&self) -> u16 {
        self.next_avail
    }

    /// The used-ring index the device last published (device state to save).
    pub fn next_used(&self) -> u16 {
        self.next_used
    }

    /// Back to the reset state.
    pub fn reset(&mut self) {
        *self = Self::new(self.max_size);
    }

    /// The configuration is usable: a power-of-two size within the maximum, and each
    /// area aligned as the split ring format requires (16, 2 and 4 bytes).
    pub fn is_valid(&self) -> bool {
        self.size.is_power_of_two()
            && self.size <= self.max_size
            && self.size <= MAX_QUEUE_SIZE
            && self.desc_table.is_multiple_of(16)
            && self.avail_ring.is_multiple_of(2)
            && self.used_ring.is_multiple_of(4)
    }

    fn at(base: u64, off: u64) -> Result<GuestPhysAddr, QueueError> {
        base.checked_add(off)
            .map(GuestPhysAddr)
            .ok_or(QueueError::Memory(GuestMemError::OutOfRange {
                addr: GuestPhysAddr(base),
                len: off,
            }))
    }

    /// The driver does not want interrupts for now (`VIRTQ_AVAIL_F_NO_INTERRUPT`).
    pub fn interrupts_suppressed(&self, mem: &mut dyn GuestMemory) -> Result<bool, QueueError> {
        // Order the read of the flags after the used index the device just wrote.
        fence(Ordering::SeqCst);
        let flags = mem.read_u16(Self::at(self.avail_ring, 0)?)?;
        Ok(flags & VIRTQ_AVAIL_F_NO_INTERRUPT != 0)
    }

    fn check_size(&self) -> Result<(), QueueError> {
        if self.size.is_power_of_two() && self.size <= MAX_QUEUE_SIZE {
            Ok(())
        } else {
            Err(QueueError::BadSize(self.size))
        }
    }

    /// The next chain the driver made available, if any.
    pub fn pop(&mut self, mem: &mut dyn GuestMemory) -> Result<Option<DescChain>, QueueError> {
        self.check_size()?;
        let avail = mem.read_u16(Self::at(self.avail_ring, 2)?)?;
        let waiting = avail.wrapping_sub(self.next_avail);
        if waiting == 0 {
            return Ok(None);
        }
        if waiting > self.size {
            return Err(QueueError::AvailIndex {
                avail,
                seen: self.next_avail,
                size: self.size,
            });
        }
        // The ring entry and the descriptors were written before the index.
        fence(Ordering::Acquire);
        let slot = u64::from(self.next_avail % self.size);
        let head = mem.read_u16(Self::at(self.avail_ring, 4 + 2 * slot)?)?;
        let chain = self.walk_chain(mem, head)?;
        self.next_avail = self.next_avail.wrapping_add(1);
        Ok(Some(chain))
    }

    /// A descriptor from its two little-endian words: address, then length, flags, next.
    fn decode_desc(w0: u64, w1: u64) -> (u64, u32, u16, u16) {
        let w1 = u64::from_le(w1);
        (
            u64::from_le(w0),
            w1 as u32,
            (w1 >> 32) as u16,
            (w1 >> 48) as u16,
        )
    }

    fn read_desc(
        mem: &mut dyn GuestMemory,
        table: u64,
        index: u16,
    ) -> Result<(u64, u32, u16, u16), QueueError> {
        let mut w = [0u64; 2];
        mem.read(
            Self::at(table, u64::from(index) * DESC_SIZE)?,
            bytemuck::cast_slice_mut(&mut w[..]),
        )?;
        Ok(Self::decode_desc(w[0], w[1]))
    }

    /// Follows the chain at `head` (and at most one level of indirect table).
    fn walk_chain(&self, mem: &mut dyn GuestMemory, head: u16) -> Result<DescChain, QueueError> {
        let mut descriptors = Vec::new();
        let mut readable = 0;
        let mut total: u64 = 0;
        let mut push = |d: Descriptor, descriptors: &mut Vec<Descriptor>| {
            if !d.writable && descriptors.len() > readable {
                return Err(QueueError::ReadableAfterWritable);
            }
            total += u64::from(d.len);
            if total > u64::from(u32::MAX) {
                return Err(QueueError::TooLong);
            }
            if !d.writable {
                readable += 1;
            }
            descriptors.push(d);
            Ok(())
        };
        let size = u32::from(self.size);
        let mut index = head;
        let mut steps = 0;
        loop {
            if u32::from(index) >= size {
                return Err(QueueError::BadIndex { index, size });
            }
            steps += 1;
            if steps > size {
                return Err(QueueError::Loop(size));
            }
            let (addr, len, flags, next) = Self::read_desc(mem, self.desc_table, index)?;
            if flags & VIRTQ_DESC_F_INDIRECT != 0 {
                if flags & VIRTQ_DESC_F_NEXT != 0
                    || len == 0
                    || len % DESC_SIZE as u32 != 0
                    || len / DESC_SIZE as u32 > MAX_INDIRECT
                {
                    return Err(QueueError::BadIndirect);
                }
                let count = len / DESC_SIZE as u32;
                // The whole table in one read, as words (two per descriptor: no byte-wise
                // decoding on the strict-align target, no guest-memory access per entry);
                // a table that cannot be read whole is read entry by entry as the chain
                // goes, so it faults only where the walk reaches.
                let mut words = alloc::vec![0u64; count as usize * 2];
                let whole = mem
                    .read(
                        GuestPhysAddr(addr),
                        bytemuck::cast_slice_mut(&mut words[..]),
                    )
                    .is_ok();
                let mut i: u16 = 0;
                let mut hops = 0;
                loop {
                    if u32::from(i) >= count {
                        return Err(QueueError::BadIndex {
                            index: i,
                            size: count,
                        });
                    }
                    hops += 1;
                    if hops > count {
                        return Err(QueueError::Loop(count));
                    }
                    let (a, l, f, n) = match words.get(usize::from(i) * 2..usize::from(i) * 2 + 2) {
                        Some(&[w0, w1]) if whole => Self::decode_desc(w0, w1),
                        _ => Self::read_desc(mem, addr, i)?,
                    };
                    if f & VIRTQ_DESC_F_INDIRECT != 0 {
                        return Err(QueueError::BadIndirect);
                    }
                    let d = Descriptor {
                        addr: a,
                        len: l,
                        writable: f & VIRTQ_DESC_F_WRITE != 0,
                    };
                    push(d, &mut descriptors)?;
                    if f & VIRTQ_DESC_F_NEXT == 0 {
                        break;
                    }
                    i = n;
                }
                break;
            }
            let d = Descriptor {
                addr,
                len,
                writable: flags & VIRTQ_DESC_F_WRITE != 0,
            };
            push(d, &mut descriptors)?;
            if flags & VIRTQ_DESC_F_NEXT == 0 {
                break;
            }
            index = next;
        }
        Ok(DescChain {
            head,
            descriptors,
            readable,
        })
    }

    /// Gives back the last `n` chains [`Self::pop`] returned that were not put in the used
    /// ring: the next pops return them again. For a device that took buffers it cannot
    /// fill yet (a received frame needing more buffers than the driver has posted); the
    /// driver cannot see the difference.
    pub fn unpop(&mut self, n: u16) {
        self.next_avail = self.next_avail.wrapping_sub(n);
    }

    /// Returns the chain at `head` to the driver with `len` bytes written into it.
    pub fn add_used(
        &mut self,
        mem: &mut dyn GuestMemory,
        head: u16,
        len: u32,
    ) -> Result<(), QueueError> {
        self.check_size()?;
        let slot = u64::from(self.next_used % self.size);
        let mut elem = [0u8; 8];
        elem[..4].copy_from_slice(&u32::from(head).to_le_bytes());
        elem[4..].copy_from_slice(&len.to_le_bytes());
        mem.write(Self::at(self.used_ring, 4 + 8 * slot)?, &elem)?;
        // The element before the index that publishes it.
        fence(Ordering::Release);
        self.next_used = self.next_used.wrapping_add(1);
        mem.write_u16(Self::at(self.used_ring, 2)?, self.next_used)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::mem::FakeGuestMemory;

    const BASE: u64 = 0x4000_0000;

    fn descs(lens: &[u32]) -> Vec<Descriptor> {
        let mut addr = BASE;
        lens.iter()
            .map(|&len| {
                let d = Descriptor {
                    addr,
                    len,
                    writable: true,
                };
                addr += 0x100;
                d
            })
            .collect()
    }

    #[test]
    fn cursor_streams_across_buffers_and_splits_a_tail() {
        let mut mem = FakeGuestMemory::new(GuestPhysAddr(BASE), 0x1000);
        let d = descs(&[3, 0, 2, 4]);
        let c = Cursor::new(&d);
        assert_eq!(c.remaining(), 9);
        let (mut head, mut tail) = c.split_tail(1);
        assert_eq!((head.remaining(), tail.remaining()), (8, 1));
        assert_eq!(head.write(&mut mem, &[1, 2, 3, 4, 5, 6, 7, 8, 9]), Ok(8));
        assert_eq!(tail.write(&mut mem, &[0xaa, 0xbb]), Ok(1));
        let b = mem.bytes();
        assert_eq!(&b[..3], [1, 2, 3]);
        assert_eq!(&b[0x200..0x202], [4, 5]);
        assert_eq!(&b[0x300..0x304], [6, 7, 8, 0xaa]);
        // A tail longer than everything takes everything.
        let (head, tail) = Cursor::new(&d).split_tail(100);
        assert_eq!((head.remaining(), tail.remaining()), (0, 9));
    }

    #[test]
    fn cursor_stops_at_the_first_buffer_outside_ram() {
        let mut mem = FakeGuestMemory::new(GuestPhysAddr(BASE), 0x1000);
        let mut d = descs(&[2, 2]);
        d[1].addr = u64::MAX;
        let mut c = Cursor::new(&d);
        assert!(c.write(&mut mem, &[1, 2, 3, 4]).is_err());
        assert_eq!(c.consumed(), 2);
    }

    /// 16 KiB of RAM and a ready queue of 8: descriptors at `BASE`, the available ring at
    /// `BASE + 0x1000`, the used ring at `BASE + 0x2000`.
    fn ring() -> (FakeGuestMemory, SplitQueue) {
        let mem = FakeGuestMemory::new(GuestPhysAddr(BASE), 0x4000);
        let mut q = SplitQueue::new(8);
        q.desc_table = BASE;
        q.avail_ring = BASE + 0x1000;
        q.used_ring = BASE + 0x2000;
        q.ready = true;
        (mem, q)
    }

    /// Writes a descriptor at `at`.
    fn put(mem: &mut FakeGuestMemory, at: u64, addr: u64, len: u32, flags: u16, next: u16) {
        mem.write_u64(GuestPhysAddr(at), addr).unwrap();
        mem.write_u32(GuestPhysAddr(at + 8), len).unwrap();
        mem.write_u16(GuestPhysAddr(at + 12), flags).unwrap();
        mem.write_u16(GuestPhysAddr(at + 14), next).unwrap();
    }

    #[test]
    fn pop_and_add_used_follow_the_rings() {
        let (mut mem, mut q) = ring();
        assert!(q.is_valid());
        assert_eq!(q.pop(&mut mem), Ok(None));
        // Descriptor 5: readable 16 bytes -> 6: writable 1 byte.
        put(
            &mut mem,
            BASE + 16 * 5,
            BASE + 0x3000,
            16,
            VIRTQ_DESC_F_NEXT,
            6,
        );
        put(
            &mut mem,
            BASE + 16 * 6,
            BASE + 0x3100,
            1,
            VIRTQ_DESC_F_WRITE,
            0,
        );
        mem.write_u16(GuestPhysAddr(BASE + 0x1004), 5).unwrap();
        mem.write_u16(GuestPhysAddr(BASE + 0x1002), 1).unwrap();
        let chain = q.pop(&mut mem).unwrap().unwrap();
        assert_eq!(chain.head, 5);
        assert_eq!(chain.readable().len(), 1);
        assert_eq!(
            chain.writable(),
            [Descriptor {
                addr: BASE + 0x3100,
                len: 1,
                writable: true
            }]
        );
        assert_eq!(q.pop(&mut mem), Ok(None));
        q.add_used(&mut mem, chain.head, 1).unwrap();
        assert_eq!(mem.read_u16(GuestPhysAddr(BASE + 0x2002)), Ok(1));
        assert_eq!(mem.read_u32(GuestPhysAddr(BASE + 0x2004)), Ok(5));
        assert_eq!(mem.read_u32(GuestPhysAddr(BASE + 0x2008)), Ok(1));
        // A head beyond the queue.
        mem.write_u16(GuestPhysAddr(BASE + 0x1006), 8).unwrap();
        mem.write_u16(GuestPhysAddr(BASE + 0x1002), 2).unwrap();
        assert_eq!(
            q.pop(&mut mem),
            Err(QueueError::BadIndex { index: 8, size: 8 })
        );
    }

    #[test]
    fn indirect_tables_decode_whole_and_may_end_past_ram_where_unused() {
        for (table, count) in [(BASE + 0x3000, 4u32), (BASE + 0x4000 - 48, 8)] {
            let (mut mem, mut q) = ring();
            // Descriptor 0: an indirect table of `count` entries whose chain is 0 -> 2 -> 1
            // (readable 0x10 at 0x100, readable 0x20 at 0x200, writable 0x30 at 0x300).
            // The second table's last five entries lie past the end of RAM: unused.
            put(&mut mem, BASE, table, count * 16, VIRTQ_DESC_F_INDIRECT, 0);
            put(&mut mem, table, BASE + 0x100, 0x10, VIRTQ_DESC_F_NEXT, 2);
            put(
                &mut mem,
                table + 32,
                BASE + 0x200,
                0x20,
                VIRTQ_DESC_F_NEXT,
                1,
            );
            put(
                &mut mem,
                table + 16,
                BASE + 0x300,
                0x30,
                VIRTQ_DESC_F_WRITE,
                0,
            );
            mem.write_u16(GuestPhysAddr(BASE + 0x1004), 0).unwrap();
            mem.write_u16(GuestPhysAddr(BASE + 0x1002), 1).unwrap();
            let chain = q.pop(&mut mem).unwrap().unwrap();
            let got: Vec<(u64, u32, bool)> = chain
                .descriptors
                .iter()
                .map(|d| (d.addr - BASE, d.len, d.writable))
                .collect();
            assert_eq!(
                got,
                [
                    (0x100, 0x10, false),
                    (0x200, 0x20, false),
                    (0x300, 0x30, true)
                ],
                "table at {table:#x}"
            );
        }
    }

    #[test]
    fn invalid_configurations_are_reported() {
        let mut q = SplitQueue::new(256);
        assert!(q.is_valid());
        q.size = 0;
        assert!(!q.is_valid());
        q.size = 512;
        assert!(!q.is_valid());
        q.size = 16;
        q.used_ring = 2;
        assert!(!q.is_valid());
        q.reset();
        assert_eq!(q, SplitQueue::new(256));
        // Used without validation, a bad size is an error, not a division by zero.
        let mut mem = FakeGuestMemory::new(GuestPhysAddr(BASE), 0x100);
        for size in [0, 3] {
            q.size = size;
            assert_eq!(q.pop(&mut mem), Err(QueueError::BadSize(size)));
            assert_eq!(q.add_used(&mut mem, 0, 0), Err(QueueError::BadSize(size)));
        }
    }
}
