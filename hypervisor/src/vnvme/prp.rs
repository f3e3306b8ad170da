//! Physical Region Page lists (NVMe 1.4 section 4.3): from a command's PRP1/PRP2 to the
//! guest-physical segments of its data buffer, and the copies to and from them.
//!
//! The memory page size is 4 KiB (CAP.MPSMIN = CAP.MPSMAX = 0). PRP1 may start anywhere
//! dword aligned; every later entry starts a page. A transfer that ends in the second page
//! has that page in PRP2; a longer one has a PRP list pointer in PRP2 (qword aligned,
//! possibly inside a page), and the last entry of a full list page points to the next list
//! page. Lists are walked only as far as the transfer needs, so a list that points to
//! itself still ends; a list page whose only entry would be the next list pointer is
//! refused, so every page read moves the walk forward.

use super::cmd::Status;
use crate::types::GuestPhysAddr;
use crate::vm::mem::GuestMemory;
use alloc::vec;
use alloc::vec::Vec;

/// The memory page size.
pub const PAGE: u64 = 4096;

/// One contiguous piece of a data buffer in guest memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Guest-physical start.
    pub addr: u64,
    /// Bytes.
    pub len: u64,
}

/// The segments of a `len`-byte transfer described by `prp1`/`prp2`. List pages are read
/// from `mem`; a list outside guest RAM is a Data Transfer Error, a misplaced entry a PRP
/// Offset Invalid.
pub fn segments(
    mem: &mut dyn GuestMemory,
    prp1: u64,
    prp2: u64,
    len: u64,
) -> Result<Vec<Segment>, Status> {
    if len == 0 {
        return Ok(Vec::new());
    }
    if prp1 & 3 != 0 {
        return Err(Status::PRP_OFFSET_INVALID);
    }
    let first = len.min(PAGE - prp1 % PAGE);
    let mut segs = Vec::with_capacity((len - first).div_ceil(PAGE) as usize + 1);
    segs.push(Segment {
        addr: prp1,
        len: first,
    });
    let mut rem = len - first;
    if rem == 0 {
        return Ok(segs);
    }
    if rem <= PAGE {
        if !prp2.is_multiple_of(PAGE) {
            return Err(Status::PRP_OFFSET_INVALID);
        }
        push_merged(&mut segs, prp2, rem);
        return Ok(segs);
    }
    let mut list = prp2;
    let mut needed = rem.div_ceil(PAGE);
    // One list page's entries at a time (on the heap: this runs on the exit path's stack).
    // As words: aligned loads, not eight byte loads per entry (strict-align target).
    let mut buf: Vec<u64> = Vec::new();
    while needed > 0 {
        if list & 7 != 0 {
            return Err(Status::PRP_OFFSET_INVALID);
        }
        let room = (PAGE - list % PAGE) / 8;
        let chained = needed > room;
        if chained && room < 2 {
            return Err(Status::PRP_OFFSET_INVALID);
        }
        let count = if chained { room } else { needed };
        buf.resize(count as usize, 0);
        mem.read(GuestPhysAddr(list), bytemuck::cast_slice_mut(&mut buf[..]))
            .map_err(|_| Status::DATA_TRANSFER_ERROR)?;
        let data_entries = if chained { count - 1 } else { count };
        let (data, next) = buf.split_at(data_entries as usize);
        for &e in data {
            let e = u64::from_le(e);
            if e % PAGE != 0 {
                return Err(Status::PRP_OFFSET_INVALID);
            }
            let l = rem.min(PAGE);
            push_merged(&mut segs, e, l);
            rem -= l;
        }
        needed -= data_entries;
        if chained {
            list = next.first().map_or(0, |&e| u64::from_le(e));
        }
    }
    Ok(segs)
}

/// Appends `[addr, addr + len)` to `segs`, as part of the last segment when it continues
/// it (guest pages that happen to be adjacent are one piece for the copies and the DMA
/// list alike).
fn push_merged(segs: &mut Vec<Segment>, addr: u64, len: u64) {
    match segs.last_mut() {
        Some(last) if last.addr.checked_add(last.len) == Some(addr) => last.len += len,
        _ => segs.push(Segment { addr, len }),
    }
}

/// Copies `data` into the segments, in order (they cover exactly `data.len()` bytes).
pub fn scatter(mem: &mut dyn GuestMemory, segs: &[Segment], data: &[u8]) -> Result<(), Status> {
    let mut off = 0usize;
    for s in segs {
        let end = off + s.len as usize;
        let chunk = data.get(off..end).ok_or(Status::INTERNAL_ERROR)?;
        mem.write(GuestPhysAddr(s.addr), chunk)
            .map_err(|_| Status::DATA_TRANSFER_ERROR)?;
        off = end;
    }
    Ok(())
}

/// Reads the segments, in order, into one buffer.
pub fn gather(mem: &mut dyn GuestMemory, segs: &[Segment]) -> Result<Vec<u8>, Status> {
    let total: u64 = segs.iter().map(|s| s.len).sum();
    let mut buf = vec![0u8; total as usize];
    let mut off = 0usize;
    for s in segs {
        let end = off + s.len as usize;
        mem.read(GuestPhysAddr(s.addr), &mut buf[off..end])
            .map_err(|_| Status::DATA_TRANSFER_ERROR)?;
        off = end;
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::mem::FakeGuestMemory;

    const BASE: u64 = 0x4000_0000;

    fn mem_with_list(at: u64, entries: &[u64]) -> FakeGuestMemory {
        let mut m = FakeGuestMemory::new(GuestPhysAddr(BASE), 1 << 20);
        let bytes: Vec<u8> = entries.iter().flat_map(|e| e.to_le_bytes()).collect();
        m.write(GuestPhysAddr(at), &bytes).unwrap();
        m
    }

    #[test]
    fn adjacent_pages_are_one_segment_and_the_rest_stay_in_order() {
        // PRP1 512 bytes into a page, then a list: two pages right after it, one elsewhere,
        // and the page after that one.
        let list = BASE + 0x8000;
        let mut m = mem_with_list(
            list,
            &[BASE + 0x1000, BASE + 0x2000, BASE + 0x6000, BASE + 0x7000],
        );
        let segs = segments(&mut m, BASE + 0x200, list, 0xe00 + 4 * PAGE).unwrap();
        assert_eq!(
            segs,
            vec![
                Segment {
                    addr: BASE + 0x200,
                    len: 0xe00 + 2 * PAGE
                },
                Segment {
                    addr: BASE + 0x6000,
                    len: 2 * PAGE
                },
            ]
        );
    }

    #[test]
    fn a_chained_list_is_followed_and_a_misaligned_entry_refused() {
        // The list starts 16 bytes before the end of its page: one data entry, then the
        // pointer to the next list page, which holds the last two entries.
        let first = BASE + 0x8ff0;
        let next = BASE + 0xa000;
        let mut m = mem_with_list(first, &[BASE + 0x3000, next]);
        m.write(
            GuestPhysAddr(next),
            &[
                (BASE + 0x5000u64).to_le_bytes(),
                (BASE + 0x1000u64).to_le_bytes(),
            ]
            .concat(),
        )
        .unwrap();
        let segs = segments(&mut m, BASE, first, 4 * PAGE).unwrap();
        let addrs: Vec<u64> = segs.iter().map(|s| s.addr - BASE).collect();
        assert_eq!(addrs, vec![0, 0x3000, 0x5000, 0x1000]);
        assert_eq!(segs.iter().map(|s| s.len).sum::<u64>(), 4 * PAGE);
        m.write(GuestPhysAddr(next), &(BASE + 0x5008u64).to_le_bytes())
            .unwrap();
        assert_eq!(
            segments(&mut m, BASE, first, 4 * PAGE),
            Err(Status::PRP_OFFSET_INVALID)
        );
    }
}
