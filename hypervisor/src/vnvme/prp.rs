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
    let mut segs = Vec::new();
    if len == 0 {
        return Ok(segs);
    }
    if prp1 & 3 != 0 {
        return Err(Status::PRP_OFFSET_INVALID);
    }
    let first = len.min(PAGE - prp1 % PAGE);
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
        segs.push(Segment {
            addr: prp2,
            len: rem,
        });
        return Ok(segs);
    }
    let mut list = prp2;
    let mut needed = rem.div_ceil(PAGE);
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
        let mut raw = vec![0u8; (count * 8) as usize];
        mem.read(GuestPhysAddr(list), &mut raw)
            .map_err(|_| Status::DATA_TRANSFER_ERROR)?;
        let mut entries = raw
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]));
        let data_entries = if chained { count - 1 } else { count };
        for e in entries.by_ref().take(data_entries as usize) {
            if e % PAGE != 0 {
                return Err(Status::PRP_OFFSET_INVALID);
            }
            let l = rem.min(PAGE);
            segs.push(Segment { addr: e, len: l });
            rem -= l;
        }
        needed -= data_entries;
        if chained {
            list = entries.next().unwrap_or(0);
        }
    }
    Ok(segs)
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
