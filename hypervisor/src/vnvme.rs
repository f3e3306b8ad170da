//! The NVMe controller guests see: an NVMe 1.4 PCI function (class `01_08_02`) with one
//! namespace backed by a [`BlockDevice`].
//!
//! BAR 0 (64-bit, 16 KiB) holds the controller registers (CAP, VS, INTMS/INTMC, CC, CSTS,
//! AQA, ASQ, ACQ), the doorbells from `0x1000` (stride 4 bytes: SQ `y` tail at
//! `0x1000 + 8y`, CQ `y` head at `0x1000 + 8y + 4`), the MSI-X table at `0x2000` and its
//! PBA at `0x3000`; the MSI-X capability is the function's only capability, at `0x40`.
//!
//! Everything happens on the guest's register writes: a submission queue tail doorbell
//! fetches and executes the new commands and posts their completions before the write
//! returns (a full completion queue holds the rest until the guest frees entries with its
//! head doorbell). Each completion queue with interrupts enabled raises its MSI-X vector
//! when entries were posted; without MSI-X the function drives INTx while any such queue
//! holds entries the host has not consumed and INTMS does not mask it. Misuse that cannot
//! be reported in a completion (a doorbell value past the queue's end, a queue in memory
//! the guest does not have) sets CSTS.CFS and stops the controller until the guest resets
//! it. A doorbell of a queue that does not exist, or a bad doorbell value, is also an
//! Error Information log entry and an Error asynchronous event. Nothing is fetched while
//! the guest has bus mastering off (the commands wait for the next doorbell). Plain MSI
//! is not offered: MSI-X, else INTx. No guest input panics: every index and sum from the
//! guest is checked.
//!
//! Commands: Identify (controller, namespace, active namespace list, namespace
//! identification descriptors), Get/Set Features (Arbitration, Power Management, Number of
//! Queues, Volatile Write Cache, Interrupt Coalescing, Asynchronous Event Configuration),
//! Create/Delete I/O Submission and Completion Queue, Get Log Page (Error Information,
//! SMART / Health, Firmware Slot), Abort, Asynchronous Event Request, Keep Alive; on
//! namespace 1 Read, Write, Flush and Write Zeroes through PRPs (SGLs are not supported).
//! Dataset Management is not offered: [`BlockDevice`] has no discard, and a deallocate
//! that wrote zeroes would turn a guest's whole-disk discard at mkfs into a whole-disk
//! write.
//!
//! The state is plain data (register values, queue bases and indices, feature values,
//! counters): nothing points into guest memory between accesses.
//!
//! ```
//! use hypervisor::block::MemDisk;
//! use hypervisor::pci::PciFunction;
//! use hypervisor::vnvme::{VNvme, VNvmeQuirks, CLASS_NVME};
//!
//! // The runtime gives it a partition of a datastore disk; a disk in memory here.
//! let nvme = VNvme::new(Box::new(MemDisk::new(2048)), "vm0-disk0", None, VNvmeQuirks::default())
//!     .unwrap();
//! assert_eq!(nvme.ids().class, CLASS_NVME);
//! assert_eq!(nvme.bars()[0].size, 0x4000);
//! ```
#![deny(unsafe_code)]

mod admin;
pub mod cmd;
mod data;
mod io;
pub mod prp;
#[cfg(test)]
mod tests;

use crate::block::BlockDevice;
use crate::mmio::AccessSize;
use crate::pci::msix::{Msix, MsixLayout, MsixLayoutError};
use crate::pci::{BarSpec, PciFunction, PciIds, PciIrq};
use crate::types::GuestPhysAddr;
use crate::vm::devices::IoCtx;
use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::vec;
use alloc::vec::Vec;
use cmd::{completion_entry, Command, CompQueue, Outcome, Status, SubQueue, CQE_SIZE};

/// PCI vendor ID: 0x1234, the unassigned ID QEMU gives its own emulated devices. Linux's
/// nvme driver binds by class, and no entry of its `nvme_id_table` names this vendor, so
/// no host quirk applies to this controller.
pub const VENDOR_ID: u16 = 0x1234;
/// PCI device ID: "NV" in ASCII, clear of the IDs QEMU uses under 0x1234 (0x1111 VGA,
/// 0x11e8 edu).
pub const DEVICE_ID: u16 = 0x4e56;
/// PCI class: mass storage, non-volatile memory, NVM Express.
pub const CLASS_NVME: u32 = 0x01_08_02;

/// I/O queue pairs the controller can have (queue IDs 1..=64).
pub const MAX_IO_QUEUES: u16 = 64;
/// MSI-X vectors: one per I/O completion queue and one for the admin queue.
pub const MSIX_VECTORS: u16 = MAX_IO_QUEUES + 1;
/// Most entries of an I/O queue without a quirk limiting it (CAP.MQES + 1).
pub const DEFAULT_QUEUE_ENTRIES: u32 = 1024;
/// Maximum Data Transfer Size, as a power of two of memory pages (128 pages, 512 KiB).
pub const MDTS: u8 = 7;
/// Most bytes one Read or Write moves.
pub const MAX_TRANSFER: u64 = prp::PAGE << MDTS;
/// Outstanding Asynchronous Event Requests allowed (Identify AERL + 1).
pub const MAX_AERS: usize = 4;
/// Size of BAR 0.
pub const BAR0_SIZE: u64 = 0x4000;
/// Offset of the doorbells in BAR 0.
pub const DOORBELLS: u64 = 0x1000;
/// Offset of the MSI-X table in BAR 0.
pub const MSIX_TABLE: u32 = 0x2000;
/// Offset of the MSI-X PBA in BAR 0.
pub const MSIX_PBA: u32 = 0x3000;
/// Config-space offset of the MSI-X capability.
pub const MSIX_CAP: u16 = 0x40;

/// Controller registers (offsets in BAR 0).
pub mod reg {
    /// Controller Capabilities (64-bit).
    pub const CAP: u64 = 0x00;
    /// Version.
    pub const VS: u64 = 0x08;
    /// Interrupt Mask Set.
    pub const INTMS: u64 = 0x0c;
    /// Interrupt Mask Clear.
    pub const INTMC: u64 = 0x10;
    /// Controller Configuration.
    pub const CC: u64 = 0x14;
    /// Controller Status.
    pub const CSTS: u64 = 0x1c;
    /// Admin Queue Attributes.
    pub const AQA: u64 = 0x24;
    /// Admin Submission Queue Base Address (64-bit).
    pub const ASQ: u64 = 0x28;
    /// Admin Completion Queue Base Address (64-bit).
    pub const ACQ: u64 = 0x30;
}

/// CC.EN.
const CC_EN: u32 = 1;
/// CC.SHN (shutdown notification), bits 15:14.
const CC_SHN: u32 = 3 << 14;
/// The CC fields a host can write (EN, CSS, MPS, AMS, SHN, IOSQES, IOCQES).
const CC_WRITABLE: u32 = 0x00ff_fff1;
/// CSTS.RDY.
const CSTS_RDY: u32 = 1;
/// CSTS.CFS.
const CSTS_CFS: u32 = 2;
/// CSTS.SHST = shutdown processing complete.
const CSTS_SHST_COMPLETE: u32 = 2 << 2;
/// NVMe 1.4.0.
const VERSION: u32 = 0x0001_0400;
/// CC.IOSQES and CC.IOCQES the controller supports: 64-byte SQ and 16-byte CQ entries.
const IOSQES: u32 = 6;
const IOCQES: u32 = 4;

/// Storage quirks that change what an NVMe guest sees: `max_queue_depth` bounds the entries
/// per I/O queue (CAP.MQES + 1; 0 = [`DEFAULT_QUEUE_ENTRIES`]), `no_write_cache` presents no
/// volatile write cache (Identify VWC bit 0 clear: every write is flushed before it
/// completes).
pub type VNvmeQuirks = crate::block::GuestDiskQuirks;

/// Entries per I/O queue under `quirks`: their limit, at least 2, at most 1024.
fn queue_entries(quirks: &VNvmeQuirks) -> u32 {
    match quirks.max_queue_depth {
        0 => DEFAULT_QUEUE_ENTRIES,
        n => n.clamp(2, DEFAULT_QUEUE_ENTRIES),
    }
}

/// Why [`VNvme::new`] refused its arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VNvmeError {
    /// The serial number is empty, longer than 20 bytes or not printable ASCII.
    #[error("NVMe serial number must be 1 to 20 printable ASCII characters")]
    Serial,
    /// The MSI-X layout was refused (a bug in this module's constants).
    #[error("NVMe MSI-X layout: {0}")]
    Msix(#[from] MsixLayoutError),
}

/// Feature values (Get/Set Features).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Features {
    arbitration: u32,
    power_management: u32,
    /// Number of Queues allocated, 0-based (NSQA, NCQA).
    sq_allocated: u16,
    cq_allocated: u16,
    write_cache: bool,
    interrupt_coalescing: u32,
    async_event_config: u32,
}

impl Features {
    fn defaults(quirks: &VNvmeQuirks) -> Self {
        Self {
            arbitration: 0,
            power_management: 0,
            sq_allocated: MAX_IO_QUEUES - 1,
            cq_allocated: MAX_IO_QUEUES - 1,
            write_cache: !quirks.no_write_cache,
            interrupt_coalescing: 0,
            async_event_config: 0,
        }
    }
}

/// Health counters of the SMART / Health log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Health {
    /// 512-byte units read and written.
    units_read: u64,
    units_written: u64,
    read_commands: u64,
    write_commands: u64,
    /// Commands the backing device failed.
    media_errors: u64,
    /// Function resets (VM reset or guest reset) while enabled and not shut down.
    unsafe_shutdowns: u64,
    /// Power-on resets of the function (1 at creation, +1 per [`PciFunction::reset`]).
    power_cycles: u64,
}

/// Entries kept in the Error Information log (Identify ELPE + 1).
const ERROR_LOG_ENTRIES: usize = 4;

/// One Error Information log entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct ErrorEntry {
    count: u64,
    sqid: u16,
    cid: u16,
    status: u16,
    lba: u64,
    nsid: u32,
}

/// A guest-facing NVMe controller with one namespace (see the module documentation).
pub struct VNvme {
    disk: Box<dyn BlockDevice>,
    serial: [u8; 20],
    ns_uuid: Option<[u8; 16]>,
    quirks: VNvmeQuirks,
    msix: Msix,
    cc: u32,
    csts: u32,
    aqa: u32,
    asq: u64,
    acq: u64,
    intms: u32,
    /// Queues by ID (0 = admin).
    sqs: Vec<Option<SubQueue>>,
    cqs: Vec<Option<CompQueue>>,
    features: Features,
    /// Command IDs of outstanding Asynchronous Event Requests.
    aers: Vec<u16>,
    /// Events waiting for an Asynchronous Event Request (completion Dword 0).
    events: VecDeque<u32>,
    /// An Error event went to the host and it has not read the Error Information log
    /// since: further Error events wait.
    error_event_reported: bool,
    errors: Vec<ErrorEntry>,
    error_count: u64,
    health: Health,
    /// The INTx level last driven (None: unknown since reset, drive on next update).
    intx: Option<bool>,
}

const BARS: [BarSpec; 1] = [BarSpec {
    index: 0,
    size: BAR0_SIZE,
    is_64bit: true,
    prefetchable: false,
}];

fn msix_layout() -> MsixLayout {
    MsixLayout {
        cap_offset: MSIX_CAP,
        next: 0,
        vectors: MSIX_VECTORS,
        table_bar: 0,
        table_offset: MSIX_TABLE,
        pba_bar: 0,
        pba_offset: MSIX_PBA,
    }
}

impl VNvme {
    /// A controller in its power-on state whose namespace 1 is `disk` (its size and
    /// read-only flag come from the device), with serial number `serial` (1 to 20
    /// printable ASCII characters, unique per VM disk: it also makes the subsystem NQN),
    /// namespace UUID `ns_uuid` if the VM configuration has one, and `quirks`.
    pub fn new(
        disk: Box<dyn BlockDevice>,
        serial: &str,
        ns_uuid: Option<[u8; 16]>,
        quirks: VNvmeQuirks,
    ) -> Result<Self, VNvmeError> {
        let s = serial.as_bytes();
        if s.is_empty() || s.len() > 20 || !s.iter().all(|b| (0x20..0x7f).contains(b)) {
            return Err(VNvmeError::Serial);
        }
        let mut padded = [b' '; 20];
        padded[..s.len()].copy_from_slice(s);
        let msix = Msix::new(msix_layout()).map_err(VNvmeError::Msix)?;
        Ok(Self {
            disk,
            serial: padded,
            ns_uuid,
            quirks,
            msix,
            cc: 0,
            csts: 0,
            aqa: 0,
            asq: 0,
            acq: 0,
            intms: 0,
            sqs: vec![None; usize::from(MAX_IO_QUEUES) + 1],
            cqs: vec![None; usize::from(MAX_IO_QUEUES) + 1],
            features: Features::defaults(&quirks),
            aers: Vec::new(),
            events: VecDeque::new(),
            error_event_reported: false,
            errors: Vec::new(),
            error_count: 0,
            health: Health {
                power_cycles: 1,
                ..Health::default()
            },
            intx: None,
        })
    }

    /// CAP: MQES, CQR, TO (500 ms), DSTRD 0, CSS NVM, MPSMIN = MPSMAX = 4 KiB.
    fn cap(&self) -> u64 {
        let mqes = u64::from(queue_entries(&self.quirks) - 1);
        mqes | (1 << 16) | (1 << 24) | (1 << 37)
    }

    fn enabled(&self) -> bool {
        self.csts & CSTS_RDY != 0
    }

    fn fatal(&self) -> bool {
        self.csts & CSTS_CFS != 0
    }

    /// The value of the register dword at `off` (a multiple of 4 below 0x1000).
    fn reg_dword(&self, off: u64) -> u32 {
        match off {
            0x00 => self.cap() as u32,
            0x04 => (self.cap() >> 32) as u32,
            reg::VS => VERSION,
            reg::INTMS | reg::INTMC => self.intms,
            reg::CC => self.cc,
            reg::CSTS => self.csts,
            reg::AQA => self.aqa,
            0x28 => self.asq as u32,
            0x2c => (self.asq >> 32) as u32,
            0x30 => self.acq as u32,
            0x34 => (self.acq >> 32) as u32,
            _ => 0,
        }
    }

    fn write_reg(&mut self, off: u64, v: u32) {
        match off {
            reg::INTMS => self.intms |= v,
            reg::INTMC => self.intms &= !v,
            reg::CC => self.write_cc(v),
            reg::AQA => self.aqa = v & 0x0fff_0fff,
            0x28 => self.asq = (self.asq & !0xffff_ffff) | u64::from(v & !0xfff),
            0x2c => self.asq = (self.asq & 0xffff_ffff) | (u64::from(v) << 32),
            0x30 => self.acq = (self.acq & !0xffff_ffff) | u64::from(v & !0xfff),
            0x34 => self.acq = (self.acq & 0xffff_ffff) | (u64::from(v) << 32),
            _ => {}
        }
    }

    fn write_cc(&mut self, v: u32) {
        let old = self.cc;
        let new = if old & CC_EN != 0 && v & CC_EN != 0 {
            // While enabled only the shutdown notification may change.
            (old & !CC_SHN) | (v & CC_SHN)
        } else {
            v & CC_WRITABLE
        };
        self.cc = new;
        if old & CC_EN == 0 && new & CC_EN != 0 {
            self.enable();
        } else if old & CC_EN != 0 && new & CC_EN == 0 {
            self.controller_reset();
        }
        if new & CC_SHN != 0 && old & CC_SHN == 0 {
            // Shutdown: everything written so far goes to stable storage first.
            if self.disk.flush().is_err() {
                self.health.media_errors += 1;
            }
            self.csts |= CSTS_SHST_COMPLETE;
        } else if new & CC_SHN == 0 {
            self.csts &= !(3 << 2);
        }
    }

    /// CC.EN 0 -> 1: checks CC and the admin queue attributes and brings up the admin
    /// queues; a configuration the controller cannot run sets CFS instead of RDY.
    fn enable(&mut self) {
        let css = (self.cc >> 4) & 7;
        let mps = (self.cc >> 7) & 0xf;
        let ams = (self.cc >> 11) & 7;
        let sq_size = (self.aqa & 0xfff) + 1;
        let cq_size = ((self.aqa >> 16) & 0xfff) + 1;
        if css != 0 || mps != 0 || ams != 0 || sq_size < 2 || cq_size < 2 {
            self.csts |= CSTS_CFS;
            return;
        }
        self.sqs[0] = Some(SubQueue {
            base: self.asq,
            size: sq_size,
            head: 0,
            tail: 0,
            cqid: 0,
        });
        self.cqs[0] = Some(CompQueue {
            base: self.acq,
            size: cq_size,
            head: 0,
            tail: 0,
            phase: true,
            ien: true,
            iv: 0,
            notify: false,
        });
        self.csts |= CSTS_RDY;
    }

    /// CC.EN 1 -> 0: every queue, outstanding request, event and feature value goes;
    /// AQA, ASQ, ACQ and CC stay, and the MSI-X state (PCI, not NVMe) too.
    fn controller_reset(&mut self) {
        self.sqs.fill(None);
        self.cqs.fill(None);
        self.aers.clear();
        self.events.clear();
        self.error_event_reported = false;
        self.features = Features::defaults(&self.quirks);
        self.csts = 0;
        self.intms = 0;
    }

    /// A controller-fatal condition: CFS, and nothing more is processed until reset.
    fn set_fatal(&mut self) {
        self.csts |= CSTS_CFS;
    }

    fn write_doorbell(&mut self, ctx: &mut IoCtx<'_>, irq: &mut dyn PciIrq, index: u64, v: u32) {
        // After CFS nothing is fetched or posted (process_sq, complete_aers).
        if !self.enabled() {
            return;
        }
        let qid = (index / 2) as usize;
        if index.is_multiple_of(2) {
            let Some(sq) = self.sqs.get_mut(qid).and_then(Option::as_mut) else {
                return self.doorbell_error(ctx, irq, qid, 0x00, false);
            };
            if v >= sq.size {
                return self.doorbell_error(ctx, irq, qid, 0x01, true);
            }
            sq.tail = v;
            self.process_sq(ctx, irq, qid);
        } else {
            let Some(cq) = self.cqs.get_mut(qid).and_then(Option::as_mut) else {
                return self.doorbell_error(ctx, irq, qid, 0x00, false);
            };
            // The new head must lie within the entries posted: past the tail is misuse.
            if v >= cq.size || (v + cq.size - cq.head) % cq.size > cq.used() {
                return self.doorbell_error(ctx, irq, qid, 0x01, true);
            }
            cq.head = v;
            // Submission queues held back by this full completion queue go on.
            for sqid in 0..self.sqs.len() {
                if self.sqs[sqid].is_some_and(|sq| usize::from(sq.cqid) == qid) {
                    self.process_sq(ctx, irq, sqid);
                }
            }
            if qid == 0 {
                self.complete_aers(ctx);
            }
        }
        self.update_irq(ctx, irq);
    }

    /// A write to a doorbell of queue `qid` that does not exist (`info` 0) or a value the
    /// queue cannot take (`info` 1): an Error Information log entry (no command: CID
    /// FFFFh) and an Error asynchronous event for the host, and for a bad value the
    /// controller stops (CFS).
    fn doorbell_error(
        &mut self,
        ctx: &mut IoCtx<'_>,
        irq: &mut dyn PciIrq,
        qid: usize,
        info: u32,
        fatal: bool,
    ) {
        self.push_error(ErrorEntry {
            sqid: qid as u16,
            cid: 0xffff,
            ..ErrorEntry::default()
        });
        // Error status event, Error Information log page (01h).
        self.post_event(ctx, (info << 8) | (0x01 << 16));
        if fatal {
            self.set_fatal();
        }
        self.update_irq(ctx, irq);
    }

    /// Queues an asynchronous event and completes a waiting request with it. An event
    /// of a type already reported is held back until the host reads its log page
    /// (NVMe 1.4 section 5.2).
    fn post_event(&mut self, ctx: &mut IoCtx<'_>, event: u32) {
        if self.error_event_reported {
            return;
        }
        if self.events.len() < 16 && !self.events.contains(&event) {
            self.events.push_back(event);
        }
        self.complete_aers(ctx);
    }

    /// Completes outstanding Asynchronous Event Requests with queued events, while the
    /// admin completion queue has room.
    fn complete_aers(&mut self, ctx: &mut IoCtx<'_>) {
        while !self.aers.is_empty() && !self.events.is_empty() && !self.fatal() {
            if self.cqs[0].is_none_or(|cq| cq.is_full()) {
                return;
            }
            let (cid, event) = (self.aers.remove(0), self.events.pop_front().unwrap_or(0));
            // Every event this controller raises is of the Error type.
            self.error_event_reported = true;
            self.post(ctx, 0, cid, Status::SUCCESS, event);
        }
    }

    /// Fetches and runs the commands of submission queue `qid` between its head and the
    /// tail the host wrote, while its completion queue has room.
    fn process_sq(&mut self, ctx: &mut IoCtx<'_>, irq: &mut dyn PciIrq, qid: usize) {
        if !irq.bus_master() {
            // No DMA: the commands wait in the queue for a doorbell with bus mastering on.
            return;
        }
        loop {
            if self.fatal() || !self.enabled() {
                return;
            }
            let Some(sq) = self.sqs.get(qid).copied().flatten() else {
                return;
            };
            if sq.head == sq.tail {
                return;
            }
            if self
                .cqs
                .get(usize::from(sq.cqid))
                .copied()
                .flatten()
                .is_none_or(|cq| cq.is_full())
            {
                return;
            }
            let addr = u64::from(sq.head)
                .checked_mul(Command::SIZE as u64)
                .and_then(|o| sq.base.checked_add(o));
            let mut raw = [0u8; Command::SIZE];
            let fetched =
                addr.is_some_and(|a| ctx.mem.lock().read(GuestPhysAddr(a), &mut raw).is_ok());
            if !fetched {
                return self.set_fatal();
            }
            if let Some(Some(sq)) = self.sqs.get_mut(qid) {
                sq.head = (sq.head + 1) % sq.size;
            }
            let cmd = Command::from_bytes(&raw);
            let outcome = if cmd.psdt() != 0 || cmd.fuse() != 0 {
                // Neither SGLs (Identify SGLS = 0) nor fused operations (FUSES = 0).
                Outcome::from(Status::INVALID_FIELD)
            } else if qid == 0 {
                self.admin(ctx, &cmd)
            } else {
                self.io(ctx, &cmd)
            };
            if let Outcome::Done(status, dw0) = outcome {
                if !status.is_success() {
                    self.log_error(qid as u16, &cmd, status);
                }
                self.post(ctx, qid as u16, cmd.cid(), status, dw0);
            }
        }
    }

    /// Posts a completion for a command of `sqid` to that queue's completion queue.
    fn post(&mut self, ctx: &mut IoCtx<'_>, sqid: u16, cid: u16, status: Status, dw0: u32) {
        let Some(sq) = self.sqs.get(usize::from(sqid)).copied().flatten() else {
            return;
        };
        let Some(cq) = self
            .cqs
            .get_mut(usize::from(sq.cqid))
            .and_then(Option::as_mut)
        else {
            return;
        };
        let entry = completion_entry(dw0, sq.head, sqid, cid, cq.phase, status);
        let addr = cq.base.checked_add(u64::from(cq.tail) * CQE_SIZE);
        let ok = addr.is_some_and(|a| ctx.mem.lock().write(GuestPhysAddr(a), &entry).is_ok());
        if !ok {
            return self.set_fatal();
        }
        cq.tail = (cq.tail + 1) % cq.size;
        if cq.tail == 0 {
            cq.phase = !cq.phase;
        }
        cq.notify = true;
    }

    fn log_error(&mut self, sqid: u16, cmd: &Command, status: Status) {
        let is_io_rw = sqid != 0 && matches!(cmd.opcode(), 0x01 | 0x02 | 0x08);
        self.push_error(ErrorEntry {
            count: 0,
            sqid,
            cid: cmd.cid(),
            status: status.0,
            lba: if is_io_rw { cmd.cdw10_11() } else { 0 },
            nsid: cmd.nsid(),
        });
    }

    /// Adds an entry to the Error Information log, numbering it.
    fn push_error(&mut self, mut e: ErrorEntry) {
        self.error_count += 1;
        e.count = self.error_count;
        if self.errors.len() == ERROR_LOG_ENTRIES {
            self.errors.remove(0);
        }
        self.errors.push(e);
    }

    /// Raises the interrupts of completion queues with new entries (MSI-X), or drives
    /// INTx from every completion queue's unconsumed entries.
    fn update_irq(&mut self, ctx: &mut IoCtx<'_>, irq: &mut dyn PciIrq) {
        let level = if self.msix.enabled() {
            for i in 0..self.cqs.len() {
                let Some(cq) = self.cqs[i].as_mut() else {
                    continue;
                };
                if cq.notify && cq.ien {
                    let iv = cq.iv;
                    cq.notify = false;
                    self.msix.signal(iv, ctx, irq);
                }
            }
            false
        } else {
            let mut pending = false;
            for cq in self.cqs.iter_mut().flatten() {
                cq.notify = false;
                pending |= cq.ien && cq.used() != 0;
            }
            pending && self.intms & 1 == 0
        };
        if self.intx != Some(level) {
            self.intx = Some(level);
            irq.set_intx(ctx, level);
        }
    }

    /// Where a transfer of `len` bytes of `cmd` lies in guest memory.
    fn data_segments(
        &self,
        ctx: &mut IoCtx<'_>,
        cmd: &Command,
        len: u64,
    ) -> Result<Vec<prp::Segment>, Status> {
        prp::segments(&mut *ctx.mem.lock(), cmd.prp1(), cmd.prp2(), len)
    }

    /// Copies `data` to the host buffer of `cmd`.
    fn to_host(&self, ctx: &mut IoCtx<'_>, cmd: &Command, data: &[u8]) -> Result<(), Status> {
        let segs = self.data_segments(ctx, cmd, data.len() as u64)?;
        prp::scatter(&mut *ctx.mem.lock(), &segs, data)
    }
}

impl PciFunction for VNvme {
    fn ids(&self) -> PciIds {
        PciIds {
            vendor: VENDOR_ID,
            device: DEVICE_ID,
            class: CLASS_NVME,
            revision: 0,
            subsystem_vendor: VENDOR_ID,
            subsystem: DEVICE_ID,
        }
    }

    fn bars(&self) -> &[BarSpec] {
        &BARS
    }

    fn capabilities_pointer(&self) -> u8 {
        MSIX_CAP as u8
    }

    fn config_read(&mut self, offset: u16, size: AccessSize) -> u32 {
        self.msix.config_read(offset, size).unwrap_or(0)
    }

    fn config_write(
        &mut self,
        ctx: &mut IoCtx<'_>,
        irq: &mut dyn PciIrq,
        offset: u16,
        size: AccessSize,
        value: u32,
    ) {
        if self.msix.config_write(ctx, irq, offset, size, value) {
            // MSI-X on or off moves the interrupt between INTx and messages.
            self.update_irq(ctx, irq);
        }
    }

    fn bar_read(
        &mut self,
        _ctx: &mut IoCtx<'_>,
        _irq: &mut dyn PciIrq,
        bar: u8,
        offset: u64,
        size: AccessSize,
    ) -> u64 {
        if bar != 0 {
            return 0;
        }
        if let Some(v) = self.msix.bar_read(bar, offset, size) {
            return v;
        }
        if offset.saturating_add(size.bytes()) > DOORBELLS {
            // Doorbells are write-only; nothing else is decoded.
            return 0;
        }
        let mut v = 0u64;
        for i in 0..size.bytes() {
            let b = offset + i;
            let byte = (self.reg_dword(b & !3) >> ((b % 4) * 8)) & 0xff;
            v |= u64::from(byte) << (i * 8);
        }
        v
    }

    fn bar_write(
        &mut self,
        ctx: &mut IoCtx<'_>,
        irq: &mut dyn PciIrq,
        bar: u8,
        offset: u64,
        size: AccessSize,
        value: u64,
    ) {
        if bar != 0 || self.msix.bar_write(ctx, irq, bar, offset, size, value) {
            return;
        }
        // Registers and doorbells take aligned dword and qword writes (a qword as two
        // dwords, low first: ASQ, ACQ); narrower writes cover no dword and are ignored.
        if !offset.is_multiple_of(4) {
            return;
        }
        let dwords = size.bytes() / 4;
        for i in 0..dwords {
            let off = offset + i * 4;
            let v = (value >> (i * 32)) as u32;
            if off < DOORBELLS {
                let was_enabled = self.enabled();
                self.write_reg(off, v);
                if off == reg::INTMS || off == reg::INTMC || was_enabled != self.enabled() {
                    self.update_irq(ctx, irq);
                }
            } else if off < DOORBELLS + 8 * (u64::from(MAX_IO_QUEUES) + 1) {
                self.write_doorbell(ctx, irq, (off - DOORBELLS) / 4, v);
            }
        }
    }

    fn reset(&mut self) {
        if self.enabled() && self.csts & CSTS_SHST_COMPLETE == 0 {
            self.health.unsafe_shutdowns += 1;
        }
        self.health.power_cycles += 1;
        self.controller_reset();
        self.msix.reset();
        self.cc = 0;
        self.aqa = 0;
        self.asq = 0;
        self.acq = 0;
        self.intx = None;
    }
}
