//! Admin commands (NVMe 1.4 section 5).

use super::cmd::{Command, CompQueue, Outcome, Status, SubQueue};
use super::{data, Features, VNvme, IOCQES, IOSQES, MAX_AERS, MAX_TRANSFER, MSIX_VECTORS};
use crate::vm::devices::IoCtx;

/// Admin opcodes.
mod op {
    pub const DELETE_IO_SQ: u8 = 0x00;
    pub const CREATE_IO_SQ: u8 = 0x01;
    pub const GET_LOG_PAGE: u8 = 0x02;
    pub const DELETE_IO_CQ: u8 = 0x04;
    pub const CREATE_IO_CQ: u8 = 0x05;
    pub const IDENTIFY: u8 = 0x06;
    pub const ABORT: u8 = 0x08;
    pub const SET_FEATURES: u8 = 0x09;
    pub const GET_FEATURES: u8 = 0x0a;
    pub const ASYNC_EVENT_REQUEST: u8 = 0x0c;
    pub const KEEP_ALIVE: u8 = 0x18;
}

/// Feature identifiers.
mod fid {
    pub const ARBITRATION: u8 = 0x01;
    pub const POWER_MANAGEMENT: u8 = 0x02;
    pub const VOLATILE_WRITE_CACHE: u8 = 0x06;
    pub const NUMBER_OF_QUEUES: u8 = 0x07;
    pub const INTERRUPT_COALESCING: u8 = 0x08;
    pub const ASYNC_EVENT_CONFIG: u8 = 0x0b;
}

/// The namespace ID meaning every namespace.
pub(super) const NSID_ALL: u32 = 0xffff_ffff;

impl VNvme {
    /// Runs one admin command.
    pub(super) fn admin(&mut self, ctx: &mut IoCtx<'_>, cmd: &Command) -> Outcome {
        match cmd.opcode() {
            op::DELETE_IO_SQ => self.delete_sq(cmd).into(),
            op::CREATE_IO_SQ => self.create_sq(cmd).into(),
            op::GET_LOG_PAGE => self.get_log_page(ctx, cmd).into(),
            op::DELETE_IO_CQ => self.delete_cq(cmd).into(),
            op::CREATE_IO_CQ => self.create_cq(cmd).into(),
            op::IDENTIFY => self.identify(ctx, cmd).into(),
            // Every command completes before its doorbell write returns, so there is
            // never one to abort: Dword 0 bit 0 set, "command not aborted".
            op::ABORT => Outcome::Done(Status::SUCCESS, 1),
            op::SET_FEATURES => self.set_features(cmd).into(),
            op::GET_FEATURES => self.get_features(cmd).into(),
            op::ASYNC_EVENT_REQUEST => {
                if self.aers.len() >= MAX_AERS {
                    return Status::AER_LIMIT_EXCEEDED.into();
                }
                self.aers.push(cmd.cid());
                Outcome::Held
            }
            // Identify KAS is 0: there is no keep-alive timer to restart.
            op::KEEP_ALIVE => Status::SUCCESS.into(),
            _ => Status::INVALID_OPCODE.into(),
        }
    }

    /// Queue ID (CDW10 bits 15:0) and size (bits 31:16, 0-based) of a Create command,
    /// checked: ID within the allocated I/O queues and free, 2..=MQES+1 entries,
    /// physically contiguous (CDW11 bit 0) at a page-aligned base.
    fn new_queue_params(
        &self,
        cmd: &Command,
        allocated: u16,
        is_sq: bool,
    ) -> Result<(usize, u32), Status> {
        let qid = cmd.cdw(10) & 0xffff;
        let size = (cmd.cdw(10) >> 16) + 1;
        let in_use = if is_sq {
            self.sqs.get(qid as usize).is_some_and(Option::is_some)
        } else {
            self.cqs.get(qid as usize).is_some_and(Option::is_some)
        };
        if qid == 0 || qid > u32::from(allocated) + 1 || in_use {
            return Err(Status::INVALID_QUEUE_ID);
        }
        if size < 2 || size > super::queue_entries(&self.quirks) {
            return Err(Status::INVALID_QUEUE_SIZE);
        }
        if cmd.cdw(11) & 1 == 0 {
            // CAP.CQR: queues must be physically contiguous.
            return Err(Status::INVALID_FIELD);
        }
        if !cmd.prp1().is_multiple_of(super::prp::PAGE) {
            return Err(Status::PRP_OFFSET_INVALID);
        }
        let es = if is_sq {
            (self.cc >> 16) & 0xf
        } else {
            (self.cc >> 20) & 0xf
        };
        if es != if is_sq { IOSQES } else { IOCQES } {
            // CC.IOSQES / CC.IOCQES name an entry size the controller does not have.
            return Err(Status::INVALID_FIELD);
        }
        Ok((qid as usize, size))
    }

    fn create_cq(&mut self, cmd: &Command) -> Result<u32, Status> {
        let (qid, size) = self.new_queue_params(cmd, self.features.cq_allocated, false)?;
        let iv = (cmd.cdw(11) >> 16) as u16;
        if iv >= MSIX_VECTORS {
            return Err(Status::INVALID_INTERRUPT_VECTOR);
        }
        self.cqs[qid] = Some(CompQueue {
            base: cmd.prp1(),
            size,
            head: 0,
            tail: 0,
            phase: true,
            ien: cmd.cdw(11) & 2 != 0,
            iv,
            notify: false,
        });
        Ok(0)
    }

    fn create_sq(&mut self, cmd: &Command) -> Result<u32, Status> {
        let (qid, size) = self.new_queue_params(cmd, self.features.sq_allocated, true)?;
        let cqid = (cmd.cdw(11) >> 16) as u16;
        if cqid == 0 || self.cqs.get(usize::from(cqid)).is_none_or(Option::is_none) {
            return Err(Status::INVALID_CQ);
        }
        self.sqs[qid] = Some(SubQueue {
            base: cmd.prp1(),
            size,
            head: 0,
            tail: 0,
            cqid,
        });
        Ok(0)
    }

    fn delete_sq(&mut self, cmd: &Command) -> Result<u32, Status> {
        let qid = (cmd.cdw(10) & 0xffff) as usize;
        match self.sqs.get_mut(qid) {
            Some(q @ Some(_)) if qid != 0 => {
                // Its commands all completed when they were submitted.
                *q = None;
                Ok(0)
            }
            _ => Err(Status::INVALID_QUEUE_ID),
        }
    }

    fn delete_cq(&mut self, cmd: &Command) -> Result<u32, Status> {
        let qid = (cmd.cdw(10) & 0xffff) as usize;
        if qid == 0 || self.cqs.get(qid).is_none_or(Option::is_none) {
            return Err(Status::INVALID_QUEUE_ID);
        }
        if self
            .sqs
            .iter()
            .flatten()
            .any(|sq| usize::from(sq.cqid) == qid)
        {
            return Err(Status::INVALID_QUEUE_DELETION);
        }
        self.cqs[qid] = None;
        Ok(0)
    }

    fn identify(&mut self, ctx: &mut IoCtx<'_>, cmd: &Command) -> Result<u32, Status> {
        let nsid = cmd.nsid();
        let page = match cmd.cdw(10) & 0xff {
            0x00 if nsid == 1 => data::identify_namespace(self),
            0x01 => data::identify_controller(self),
            0x02 if nsid < 0xffff_fffe => data::active_namespaces(nsid),
            0x03 if nsid == 1 => data::namespace_descriptors(self),
            0x00 | 0x02 | 0x03 => return Err(Status::INVALID_NAMESPACE),
            _ => return Err(Status::INVALID_FIELD),
        };
        self.to_host(ctx, cmd, &page)?;
        Ok(0)
    }

    fn get_log_page(&mut self, ctx: &mut IoCtx<'_>, cmd: &Command) -> Result<u32, Status> {
        let lid = cmd.cdw(10) & 0xff;
        let dwords = ((u64::from(cmd.cdw(11) & 0xffff) << 16) | u64::from(cmd.cdw(10) >> 16)) + 1;
        let offset = u64::from(cmd.cdw(12)) | (u64::from(cmd.cdw(13)) << 32);
        let log = match lid {
            0x01 => {
                // Reading it unmasks Error events, unless Retain Asynchronous Event.
                if cmd.cdw(10) & (1 << 15) == 0 {
                    self.error_event_reported = false;
                }
                data::error_log(self)
            }
            0x02 => {
                // Identify LPA bit 0 is clear: SMART is for the controller as a whole.
                if cmd.nsid() != 0 && cmd.nsid() != NSID_ALL {
                    return Err(Status::INVALID_FIELD);
                }
                data::smart_log(self)
            }
            0x03 => data::firmware_slot_log(self),
            _ => return Err(Status::INVALID_LOG_PAGE),
        };
        let len = dwords * 4;
        if len > MAX_TRANSFER || offset % 4 != 0 || offset >= log.len() as u64 {
            return Err(Status::INVALID_FIELD);
        }
        let start = offset as usize;
        let end = log.len().min(start + len as usize);
        self.to_host(ctx, cmd, &log[start..end])?;
        Ok(0)
    }

    fn set_features(&mut self, cmd: &Command) -> Result<u32, Status> {
        if cmd.cdw(10) & (1 << 31) != 0 {
            // Save: no feature is saveable (ONCS bit 4 clear).
            return Err(Status::FEATURE_NOT_SAVEABLE);
        }
        let v = cmd.cdw(11);
        let f = &mut self.features;
        match (cmd.cdw(10) & 0xff) as u8 {
            fid::ARBITRATION => f.arbitration = v,
            fid::POWER_MANAGEMENT => {
                // One power state (NPSS = 0).
                if v & 0x1f != 0 {
                    return Err(Status::INVALID_FIELD);
                }
                f.power_management = v & 0xff;
            }
            fid::VOLATILE_WRITE_CACHE if !self.quirks.no_write_cache => {
                f.write_cache = v & 1 != 0;
            }
            fid::NUMBER_OF_QUEUES => {
                let (nsqr, ncqr) = ((v & 0xffff) as u16, (v >> 16) as u16);
                if nsqr == 0xffff || ncqr == 0xffff {
                    return Err(Status::INVALID_FIELD);
                }
                let any_io = self.sqs.iter().skip(1).any(Option::is_some)
                    || self.cqs.iter().skip(1).any(Option::is_some);
                if any_io {
                    return Err(Status::COMMAND_SEQUENCE_ERROR);
                }
                let max = super::MAX_IO_QUEUES - 1;
                f.sq_allocated = nsqr.min(max);
                f.cq_allocated = ncqr.min(max);
                return Ok(u32::from(f.sq_allocated) | (u32::from(f.cq_allocated) << 16));
            }
            fid::INTERRUPT_COALESCING => f.interrupt_coalescing = v & 0xffff,
            fid::ASYNC_EVENT_CONFIG => f.async_event_config = v,
            _ => return Err(Status::INVALID_FIELD),
        }
        Ok(0)
    }

    fn get_features(&mut self, cmd: &Command) -> Result<u32, Status> {
        let id = (cmd.cdw(10) & 0xff) as u8;
        let sel = (cmd.cdw(10) >> 8) & 7;
        let defaults = Features::defaults(&self.quirks);
        // Current (0), or default (1) and saved (2, which is the default as nothing is
        // saveable); 3 reports the capabilities: changeable, not saveable, not per
        // namespace.
        let f = match sel {
            0 => self.features,
            1 | 2 => defaults,
            3 => {
                return match id {
                    fid::VOLATILE_WRITE_CACHE if self.quirks.no_write_cache => {
                        Err(Status::INVALID_FIELD)
                    }
                    fid::ARBITRATION
                    | fid::POWER_MANAGEMENT
                    | fid::VOLATILE_WRITE_CACHE
                    | fid::NUMBER_OF_QUEUES
                    | fid::INTERRUPT_COALESCING
                    | fid::ASYNC_EVENT_CONFIG => Ok(1 << 2),
                    _ => Err(Status::INVALID_FIELD),
                };
            }
            _ => return Err(Status::INVALID_FIELD),
        };
        Ok(match id {
            fid::ARBITRATION => f.arbitration,
            fid::POWER_MANAGEMENT => f.power_management,
            fid::VOLATILE_WRITE_CACHE if !self.quirks.no_write_cache => u32::from(f.write_cache),
            fid::NUMBER_OF_QUEUES => u32::from(f.sq_allocated) | (u32::from(f.cq_allocated) << 16),
            fid::INTERRUPT_COALESCING => f.interrupt_coalescing,
            fid::ASYNC_EVENT_CONFIG => f.async_event_config,
            _ => return Err(Status::INVALID_FIELD),
        })
    }
}
