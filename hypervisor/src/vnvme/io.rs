//! NVM command set I/O commands on namespace 1 (NVMe 1.4 section 6).

use super::admin::NSID_ALL;
use super::cmd::{Command, Outcome, Status};
use super::{prp, VNvme, MAX_TRANSFER};
use crate::block::{BlockDevice, BlockError, DmaList, SECTOR};
use crate::types::GuestPhysAddr;
use crate::vm::devices::IoCtx;
use alloc::vec;
use alloc::vec::Vec;

/// I/O opcodes.
mod op {
    pub const FLUSH: u8 = 0x00;
    pub const WRITE: u8 = 0x01;
    pub const READ: u8 = 0x02;
    pub const WRITE_ZEROES: u8 = 0x08;
}

/// CDW12 bit 30: Force Unit Access.
const FUA: u32 = 1 << 30;

/// The status a failed backend request gives the guest; `write` for requests that store.
fn block_status(e: BlockError, write: bool) -> Status {
    match e {
        BlockError::Device(_) if write => Status::WRITE_FAULT,
        BlockError::Device(_) => Status::UNRECOVERED_READ_ERROR,
        BlockError::ReadOnly => Status::NAMESPACE_WRITE_PROTECTED,
        BlockError::OutOfRange { .. } => Status::LBA_OUT_OF_RANGE,
        BlockError::Unaligned(_) => Status::INTERNAL_ERROR,
    }
}

impl VNvme {
    /// Runs one I/O command.
    pub(super) fn io(&mut self, ctx: &mut IoCtx<'_>, cmd: &Command) -> Outcome {
        let nsid_ok = cmd.nsid() == 1 || (cmd.opcode() == op::FLUSH && cmd.nsid() == NSID_ALL);
        let r = match cmd.opcode() {
            op::FLUSH | op::WRITE | op::READ | op::WRITE_ZEROES if !nsid_ok => {
                Err(Status::INVALID_NAMESPACE)
            }
            op::FLUSH => self.flush(),
            op::READ => self.read(ctx, cmd),
            op::WRITE => self.write(ctx, cmd),
            op::WRITE_ZEROES => self.write_zeroes(cmd),
            _ => Err(Status::INVALID_OPCODE),
        };
        match r {
            Ok(()) => Status::SUCCESS.into(),
            Err(s) => {
                if s.sct() == 2 {
                    self.health.media_errors += 1;
                }
                s.into()
            }
        }
    }

    /// Starting LBA and block count of a Read, Write or Write Zeroes, checked against the
    /// namespace.
    fn lba_range(&self, cmd: &Command) -> Result<(u64, u64), Status> {
        let slba = cmd.cdw10_11();
        let nlb = u64::from(cmd.cdw(12) & 0xffff) + 1;
        match slba.checked_add(nlb) {
            Some(end) if end <= self.disk.sectors() => Ok((slba, nlb)),
            _ => Err(Status::LBA_OUT_OF_RANGE),
        }
    }

    fn flush(&mut self) -> Result<(), Status> {
        self.disk.flush().map_err(|e| block_status(e, true))
    }

    /// After a write: to stable storage now if the host asked (FUA) or the write cache is
    /// off or absent.
    fn settle(&mut self, cmd: &Command) -> Result<(), Status> {
        if cmd.cdw(12) & FUA != 0 || !self.features.write_cache {
            self.flush()?;
        }
        Ok(())
    }

    fn read(&mut self, ctx: &mut IoCtx<'_>, cmd: &Command) -> Result<(), Status> {
        let (slba, nlb) = self.lba_range(cmd)?;
        let len = nlb * SECTOR as u64;
        if len > MAX_TRANSFER {
            return Err(Status::INVALID_FIELD);
        }
        let segs = self.data_segments(ctx, cmd, len)?;
        if !self.direct(ctx, &segs, |disk, list| disk.read_dma(slba, list), false)? {
            let mut buf = vec![0u8; len as usize];
            self.disk
                .read(slba, &mut buf)
                .map_err(|e| block_status(e, false))?;
            prp::scatter(&mut *ctx.mem.lock(), &segs, &buf)?;
        }
        self.health.read_commands += 1;
        self.health.units_read += nlb;
        Ok(())
    }

    fn write(&mut self, ctx: &mut IoCtx<'_>, cmd: &Command) -> Result<(), Status> {
        let (slba, nlb) = self.lba_range(cmd)?;
        let len = nlb * SECTOR as u64;
        if len > MAX_TRANSFER {
            return Err(Status::INVALID_FIELD);
        }
        if self.disk.read_only() {
            return Err(Status::NAMESPACE_WRITE_PROTECTED);
        }
        let segs = self.data_segments(ctx, cmd, len)?;
        if !self.direct(ctx, &segs, |disk, list| disk.write_dma(slba, list), true)? {
            let buf = prp::gather(&mut *ctx.mem.lock(), &segs)?;
            self.disk
                .write(slba, &buf)
                .map_err(|e| block_status(e, true))?;
        }
        self.settle(cmd)?;
        self.health.write_commands += 1;
        self.health.units_written += nlb;
        Ok(())
    }

    /// Moves a Read's or Write's data straight between the guest's pages `segs` and the
    /// disk by DMA (`op` is the disk's `read_dma` or `write_dma`), if the guest's memory
    /// and the disk both can: `Ok(false)` when either cannot, and nothing was done. A
    /// segment outside the guest's RAM is a Data Transfer Error before the disk is asked.
    /// The guest's memory stays locked for the request, so it cannot be taken back while
    /// the device works on it.
    fn direct(
        &mut self,
        ctx: &mut IoCtx<'_>,
        segs: &[prp::Segment],
        op: impl FnOnce(&mut dyn BlockDevice, &DmaList<'_>) -> Result<bool, BlockError>,
        write: bool,
    ) -> Result<bool, Status> {
        let ranges: Vec<(GuestPhysAddr, u64)> = segs
            .iter()
            .map(|s| (GuestPhysAddr(s.addr), s.len))
            .collect();
        let mut mem = ctx.mem.lock();
        let Some(list) = mem.dma(&ranges).map_err(|_| Status::DATA_TRANSFER_ERROR)? else {
            return Ok(false);
        };
        op(&mut *self.disk, &list).map_err(|e| block_status(e, write))
    }

    fn write_zeroes(&mut self, cmd: &Command) -> Result<(), Status> {
        let (slba, nlb) = self.lba_range(cmd)?;
        if self.disk.read_only() {
            return Err(Status::NAMESPACE_WRITE_PROTECTED);
        }
        self.disk
            .write_zeroes(slba, nlb)
            .map_err(|e| block_status(e, true))?;
        self.settle(cmd)?;
        self.health.write_commands += 1;
        Ok(())
    }
}
