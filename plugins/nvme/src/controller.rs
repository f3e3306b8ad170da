//! One NVMe controller driven by polling: reset and enable, the admin queue pair, one I/O
//! queue pair, and namespace 1 as a [`BlockDevice`]. Every wait has a timeout; a device
//! error or timeout is a [`BlockError::Device`] (a timeout also retires the controller, whose
//! queues can no longer be trusted), never a panic.

use crate::spec::{self, covering, prp_commands, prps, reg, Cap, Command, Completion, Plan};
use alloc::vec;
use alloc::vec::Vec;
use core::ptr::NonNull;
use hypervisor::block::{self, BlockDevice, BlockError, DmaList, SECTOR};
use safe_mmio::fields::ReadWrite;
use safe_mmio::UniqueMmioPointer;

/// `BlockError::Device` status of a command that did not complete in time (NVMe statuses
/// are 15 bits, so this never collides with one).
pub const TIMEOUT: u32 = 0x1_0000;
/// `BlockError::Device` status of a controller retired after a timeout or fatal status.
pub const DEAD: u32 = 0x2_0000;
/// `BlockError::Device` status when DMA memory could not be had.
pub const NO_MEMORY: u32 = 0x3_0000;
/// How long one I/O or admin command may take.
const COMMAND_TIMEOUT_MS: u64 = 5000;
/// Bytes of the bounce buffer every transfer goes through.
const BOUNCE: u64 = 128 << 10;
/// Memory page size programmed in CC.MPS (4 KiB).
const PAGE: u64 = 4096;
/// Most I/O commands of one request in flight at once (each with its own PRP list page).
const IN_FLIGHT: usize = 4;

/// Why bring-up failed (reported by the probe).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitError {
    /// BAR 0 is too small for the registers and two queue pairs' doorbells.
    SmallBar,
    /// The controller does not do the NVM command set or 4 KiB pages.
    Unsupported,
    /// CSTS.RDY did not follow CC.EN in time.
    NotReady,
    /// The controller reported a fatal status.
    Fatal,
    /// An admin command failed (its status) or timed out.
    Admin(u32),
    /// Namespace 1 is missing or unusable.
    NoNamespace,
    /// No DMA memory.
    Memory,
}

impl InitError {
    /// For the console.
    pub fn message(self) -> &'static str {
        match self {
            Self::SmallBar => "BAR 0 is smaller than the registers and doorbells",
            Self::Unsupported => "controller lacks the NVM command set or 4 KiB pages",
            Self::NotReady => "controller did not become ready within CAP.TO",
            Self::Fatal => "controller reported a fatal status (CSTS.CFS)",
            Self::Admin(_) => "an admin command failed or timed out",
            Self::NoNamespace => "namespace 1 is inactive or has an unusable block size",
            Self::Memory => "no DMA memory left in the RAM pool",
        }
    }
}

use hypervisor::dma::pause_after;
pub use hypervisor::dma::{Dma, DmaError, Env};

struct Queue<B> {
    mem: B,
    entries: u32,
    /// Submission tail or completion head.
    index: u32,
    phase: bool,
}

/// A controller with its queues and namespace 1.
pub struct Controller<E: Env> {
    env: E,
    regs: UniqueMmioPointer<'static, [ReadWrite<u32>]>,
    stride: usize,
    admin_sq: Queue<E::Buf>,
    admin_cq: Queue<E::Buf>,
    io_sq: Queue<E::Buf>,
    io_cq: Queue<E::Buf>,
    bounce: E::Buf,
    prp_list: E::Buf,
    next_cid: u16,
    max_transfer: u64,
    /// Bytes per command when the data moves straight to or from the caller's memory
    /// (MDTS, and one PRP list page): no bounce buffer bounds it.
    max_dma: u64,
    coherent: bool,
    nsid: u32,
    blocks: u64,
    lba_shift: u32,
    dead: bool,
    /// Identify Controller's data.
    pub id: spec::IdController,
    /// The plan it runs with.
    pub plan: Plan,
}

impl<B: Dma> Queue<B> {
    fn new<E: Env<Buf = B>>(
        env: &E,
        entries: u32,
        entry_size: u64,
        coherent: bool,
    ) -> Result<Self, InitError> {
        Ok(Self {
            mem: env
                .alloc(u64::from(entries) * entry_size, coherent)
                .map_err(|DmaError| InitError::Memory)?,
            entries,
            index: 0,
            phase: true,
        })
    }
}

impl<E: Env> Controller<E> {
    /// Brings up the controller whose BAR 0 is `bar` (`size` bytes) with `plan`.
    ///
    /// # Safety
    ///
    /// The caller guarantees that:
    /// 1. `[bar, bar + size)` is this NVMe controller's BAR 0, assigned and enabled (memory
    ///    space and bus mastering) by its host bridge, inside a window the EL2 page tables
    ///    map as device memory for the rest of the program;
    /// 2. nothing else (another driver, a guest mapping) accesses that BAR while the
    ///    returned value exists.
    pub unsafe fn new(
        env: E,
        bar: NonNull<ReadWrite<u32>>,
        size: usize,
        cap_plan: impl FnOnce(&Cap) -> Plan,
        coherent: bool,
    ) -> Result<Self, InitError> {
        let slice = NonNull::slice_from_raw_parts(bar, size / 4);
        // SAFETY: (1) and (2) of this function's contract are those of
        // `UniqueMmioPointer::new`: valid, aligned, device-mapped, unaliased.
        let mut regs = unsafe { UniqueMmioPointer::new(slice) };
        let read = |regs: &mut UniqueMmioPointer<'static, [ReadWrite<u32>]>, off: usize| {
            regs.get(off / 4).map_or(u32::MAX, |mut r| r.read())
        };
        let cap = u64::from(read(&mut regs, reg::CAP_LO))
            | (u64::from(read(&mut regs, reg::CAP_HI)) << 32);
        let cap = Cap::decode(cap);
        if size < spec::doorbell(1, true, cap.doorbell_stride) + 4 {
            return Err(InitError::SmallBar);
        }
        if !cap.nvm || cap.min_page > PAGE {
            return Err(InitError::Unsupported);
        }
        let plan = cap_plan(&cap);
        let buf = |size| {
            env.alloc(size, coherent)
                .map_err(|DmaError| InitError::Memory)
        };
        let (bounce, prp_list) = (buf(BOUNCE)?, buf(PAGE * IN_FLIGHT as u64)?);
        let mut c = Self {
            admin_sq: Queue::new(&env, plan.admin_entries, 64, coherent)?,
            admin_cq: Queue::new(&env, plan.admin_entries, 16, coherent)?,
            io_sq: Queue::new(&env, plan.io_entries, 64, coherent)?,
            io_cq: Queue::new(&env, plan.io_entries, 16, coherent)?,
            env,
            regs,
            stride: cap.doorbell_stride,
            bounce,
            prp_list,
            next_cid: 0,
            max_transfer: 0,
            max_dma: 0,
            coherent,
            nsid: 1,
            blocks: 0,
            lba_shift: 9,
            dead: false,
            id: spec::IdController {
                serial: Default::default(),
                model: Default::default(),
                mdts: 0,
                namespaces: 0,
                write_cache: false,
            },
            plan,
        };
        let up = c
            .enable(&cap)
            .and_then(|()| c.identify())
            .and_then(|()| c.create_io_queues());
        match up {
            Ok(()) => Ok(c),
            Err(e) => {
                // The queues go back to the pool when `c` drops: first stop the controller
                // from using them (CC.EN = 0 aborts its commands), as far as it listens.
                c.write32(reg::CC, 0);
                if c.wait_csts(false, cap.timeout_ms.max(500)).is_err() {
                    // It did not stop: its queues and buffers must never be reused.
                    core::mem::forget(c);
                }
                Err(e)
            }
        }
    }

    /// Log2 of the namespace's logical block size.
    pub fn lba_shift(&self) -> u32 {
        self.lba_shift
    }

    fn read32(&mut self, off: usize) -> u32 {
        self.regs.get(off / 4).map_or(u32::MAX, |mut r| r.read())
    }

    fn write32(&mut self, off: usize, v: u32) {
        if let Some(mut r) = self.regs.get(off / 4) {
            r.write(v);
        }
    }

    fn ticks(&self, ms: u64) -> u64 {
        self.env.ticks_per_ms().saturating_mul(ms)
    }

    fn delay_ms(&self, ms: u32) {
        let end = self.env.now() + self.ticks(u64::from(ms));
        while self.env.now() < end {
            core::hint::spin_loop();
        }
    }

    fn wait_csts(&mut self, rdy: bool, timeout_ms: u64) -> Result<(), InitError> {
        let end = self.env.now() + self.ticks(timeout_ms);
        loop {
            let csts = self.read32(reg::CSTS);
            if csts == u32::MAX || csts & spec::CSTS_CFS != 0 {
                return Err(InitError::Fatal);
            }
            if (csts & spec::CSTS_RDY != 0) == rdy {
                return Ok(());
            }
            if self.env.now() > end {
                return Err(InitError::NotReady);
            }
            core::hint::spin_loop();
        }
    }

    /// Controller reset (CC.EN = 0, wait !RDY), admin queues, CC.EN = 1, the quirk's
    /// delay, wait RDY (3.5.1).
    fn enable(&mut self, cap: &Cap) -> Result<(), InitError> {
        let timeout = self.plan.ready_timeout_ms;
        if self.read32(reg::CC) & 1 != 0 || self.read32(reg::CSTS) & spec::CSTS_RDY != 0 {
            self.write32(reg::CC, 0);
        }
        self.wait_csts(false, cap.timeout_ms.max(500))?;
        self.write32(reg::INTMS, u32::MAX); // polled: no interrupts
        let n = self.plan.admin_entries - 1;
        self.write32(reg::AQA, (n << 16) | n);
        let (sq, cq) = (self.admin_sq.mem.bus_addr(), self.admin_cq.mem.bus_addr());
        self.write32(reg::ASQ, sq as u32);
        self.write32(reg::ASQ + 4, (sq >> 32) as u32);
        self.write32(reg::ACQ, cq as u32);
        self.write32(reg::ACQ + 4, (cq >> 32) as u32);
        self.write32(reg::CC, spec::CC_ENABLE);
        if self.plan.ready_delay_ms > 0 {
            self.delay_ms(self.plan.ready_delay_ms);
        }
        self.wait_csts(true, timeout)
    }

    fn identify(&mut self) -> Result<(), InitError> {
        let mut data = vec![0u8; 4096];
        let page = self.bounce.bus_addr();
        self.admin(Command::identify(1, 0, page))?;
        self.bounce
            .read(0, &mut data)
            .map_err(|DmaError| InitError::Memory)?;
        self.id = spec::IdController::decode(&data).ok_or(InitError::NoNamespace)?;
        if self.id.namespaces == 0 {
            return Err(InitError::NoNamespace);
        }
        self.admin(Command::identify(0, self.nsid, page))?;
        self.bounce
            .read(0, &mut data)
            .map_err(|DmaError| InitError::Memory)?;
        let ns = spec::IdNamespace::decode(&data).ok_or(InitError::NoNamespace)?;
        self.blocks = ns.blocks;
        self.lba_shift = ns.lba_shift;
        self.max_transfer = spec::max_transfer(self.id.mdts, PAGE, BOUNCE);
        self.max_dma = spec::max_transfer(self.id.mdts, PAGE, u64::MAX);
        Ok(())
    }

    fn create_io_queues(&mut self) -> Result<(), InitError> {
        self.admin(Command::one_queue_pair())?;
        let entries = self.plan.io_entries;
        self.admin(Command::create_io_cq(1, entries, self.io_cq.mem.bus_addr()))?;
        self.admin(Command::create_io_sq(
            1,
            entries,
            self.io_sq.mem.bus_addr(),
            1,
        ))?;
        Ok(())
    }

    fn admin(&mut self, cmd: Command) -> Result<Completion, InitError> {
        self.submit(0, cmd).map_err(|e| match e {
            BlockError::Device(s) => InitError::Admin(s),
            _ => InitError::Admin(0),
        })
    }

    /// Submits `cmd` on queue `qid` (0 admin, 1 I/O) and polls for its completion.
    fn submit(&mut self, qid: u16, mut cmd: Command) -> Result<Completion, BlockError> {
        if self.dead {
            return Err(BlockError::Device(DEAD));
        }
        self.next_cid = self.next_cid.wrapping_add(1);
        cmd.cid = self.next_cid;
        let stride = self.stride;
        let (sq, cq) = if qid == 0 {
            (&mut self.admin_sq, &mut self.admin_cq)
        } else {
            (&mut self.io_sq, &mut self.io_cq)
        };
        let at = u64::from(sq.index) * 64;
        sq.mem
            .write(at, &cmd.to_bytes())
            .map_err(|_| BlockError::Device(NO_MEMORY))?;
        sq.index = (sq.index + 1) % sq.entries;
        let tail = sq.index;
        let (cq_at, phase) = (u64::from(cq.index) * 16, cq.phase);
        let start = self.env.now();
        let end = start + self.ticks(COMMAND_TIMEOUT_MS);
        if let Some(mut r) = self.regs.get(spec::doorbell(qid, false, stride) / 4) {
            r.write(tail);
        }
        let cq = if qid == 0 {
            &mut self.admin_cq
        } else {
            &mut self.io_cq
        };
        let mut raw = [0u8; 16];
        let done = loop {
            cq.mem
                .read(cq_at, &mut raw)
                .map_err(|_| BlockError::Device(NO_MEMORY))?;
            let c = Completion::decode(&raw);
            if c.phase == phase {
                break c;
            }
            let now = self.env.now();
            if now > end {
                self.dead = true;
                return Err(BlockError::Device(TIMEOUT));
            }
            pause_after(&self.env, now.wrapping_sub(start));
        };
        cq.index = (cq.index + 1) % cq.entries;
        if cq.index == 0 {
            cq.phase = !cq.phase;
        }
        let head = cq.index;
        if let Some(mut r) = self.regs.get(spec::doorbell(qid, true, stride) / 4) {
            r.write(head);
        }
        if done.cid != cmd.cid {
            self.dead = true;
            return Err(BlockError::Device(DEAD));
        }
        match done.status {
            0 => Ok(done),
            s => Err(BlockError::Device(u32::from(s))),
        }
    }

    /// Submits `cmds` on the I/O queue all at once (one doorbell write), then polls until
    /// every one has completed, matching completions to commands by command identifier
    /// whatever order the drive finishes them in. The first failing command's status (in
    /// submission order) is the result; the others still complete before this returns, so
    /// no command outlives the caller's memory. At most the queue's size less one.
    fn submit_all(&mut self, cmds: &mut [Command]) -> Result<(), BlockError> {
        if self.dead {
            return Err(BlockError::Device(DEAD));
        }
        debug_assert!(cmds.len() < self.io_sq.entries as usize);
        for cmd in cmds.iter_mut() {
            self.next_cid = self.next_cid.wrapping_add(1);
            cmd.cid = self.next_cid;
            let sq = &mut self.io_sq;
            sq.mem
                .write(u64::from(sq.index) * 64, &cmd.to_bytes())
                .map_err(|_| BlockError::Device(NO_MEMORY))?;
            sq.index = (sq.index + 1) % sq.entries;
        }
        let stride = self.stride;
        let start = self.env.now();
        let end = start + self.ticks(COMMAND_TIMEOUT_MS);
        if let Some(mut r) = self.regs.get(spec::doorbell(1, false, stride) / 4) {
            r.write(self.io_sq.index);
        }
        // Status of each command, by position; None while it runs.
        let mut status: Vec<Option<u16>> = vec![None; cmds.len()];
        let mut left = cmds.len();
        let mut raw = [0u8; 16];
        while left > 0 {
            let cq = &mut self.io_cq;
            cq.mem
                .read(u64::from(cq.index) * 16, &mut raw)
                .map_err(|_| BlockError::Device(NO_MEMORY))?;
            let c = Completion::decode(&raw);
            if c.phase != cq.phase {
                let now = self.env.now();
                if now > end {
                    self.dead = true;
                    return Err(BlockError::Device(TIMEOUT));
                }
                // Naps between looks: a microsecond at first, longer the longer it takes.
                pause_after(&self.env, now.wrapping_sub(start));
                continue;
            }
            cq.index = (cq.index + 1) % cq.entries;
            if cq.index == 0 {
                cq.phase = !cq.phase;
            }
            let head = cq.index;
            if let Some(mut r) = self.regs.get(spec::doorbell(1, true, stride) / 4) {
                r.write(head);
            }
            let slot = cmds.iter().position(|cmd| cmd.cid == c.cid);
            match slot.and_then(|i| status.get_mut(i)) {
                Some(st @ None) => *st = Some(c.status),
                // A completion for no command of ours, or a second one for the same.
                _ => {
                    self.dead = true;
                    return Err(BlockError::Device(DEAD));
                }
            }
            left -= 1;
        }
        match status.into_iter().flatten().find(|&s| s != 0) {
            None => Ok(()),
            Some(s) => Err(BlockError::Device(u32::from(s))),
        }
    }

    /// Commands [`Self::submit_all`] may have in flight: [`IN_FLIGHT`], fewer when the
    /// I/O queue is smaller (it holds its size less one).
    fn in_flight(&self) -> usize {
        (self.io_sq.entries as usize - 1).clamp(1, IN_FLIGHT)
    }

    /// Reads or writes `blocks` logical blocks at `slba` through the bounce buffer (the
    /// data is already in it for a write).
    fn transfer(&mut self, write: bool, slba: u64, blocks: u64) -> Result<(), BlockError> {
        let len = blocks << self.lba_shift;
        let (prp, list) = prps(self.bounce.bus_addr(), len, PAGE, self.prp_list.bus_addr());
        if !list.is_empty() {
            let bytes: alloc::vec::Vec<u8> = list.iter().flat_map(|a| a.to_le_bytes()).collect();
            self.prp_list
                .write(0, &bytes)
                .map_err(|_| BlockError::Device(NO_MEMORY))?;
        }
        self.submit(1, Command::rw(write, self.nsid, slba, blocks as u32, prp))
            .map(|_| ())
    }

    /// Sectors per request: as many as fit the transfer limit even when they start in
    /// the middle of a logical block (`max - (per block - 1)`).
    fn step(&self) -> u64 {
        let per = 1u64 << (self.lba_shift - 9);
        let max = (self.max_transfer >> self.lba_shift) * per;
        max.saturating_sub(per - 1).max(1)
    }

    /// Reads or writes the sectors at `lba` straight to or from `list`'s memory, one
    /// command per [`prp_commands`] share with PRPs built from the list's pages: no bounce
    /// buffer, no copy. `Ok(false)` (nothing done) when the list is not PRP-shaped or the
    /// sectors do not cover whole logical blocks; the caller then goes through the bounce
    /// buffer. The list's memory is made right for the device before the first command
    /// and, for a read, for the CPU after the last.
    fn dma(&mut self, write: bool, lba: u64, list: &DmaList<'_>) -> Result<bool, BlockError> {
        let count = block::sectors_in_u64(list.len())?;
        block::check(lba, count, self.blocks << (self.lba_shift - 9))?;
        if self.dead {
            return Err(BlockError::Device(DEAD));
        }
        let per = 1u64 << (self.lba_shift - 9);
        if self.lba_shift > 12 || !lba.is_multiple_of(per) || !count.is_multiple_of(per) {
            return Ok(false);
        }
        let Some(parts) = prp_commands(list.segs(), PAGE, self.max_dma) else {
            return Ok(false);
        };
        self.env.sync_dma(list, self.coherent);
        let mut slba = lba / per;
        let mut result = Ok(true);
        // Commands of at most MDTS (no bounce buffer bounds them), up to `in_flight` of
        // them submitted together: a request the drive's MDTS splits is in flight at once.
        // (Splitting further, below MDTS, gained nothing measurable under QEMU: see
        // docs/performance.md.)
        'groups: for group in parts.chunks(self.in_flight()) {
            let mut cmds = Vec::with_capacity(group.len());
            for (i, part) in group.iter().enumerate() {
                let blocks = part.bytes >> self.lba_shift;
                let at = i as u64 * PAGE;
                if part.more_pages() > 1 {
                    if let Err(e) = self.prp_list.write(at, part.list_bytes()) {
                        result = Err(Self::bounce_err(e));
                        break 'groups;
                    }
                }
                let prp = part.prp(self.prp_list.bus_addr() + at);
                cmds.push(Command::rw(write, self.nsid, slba, blocks as u32, prp));
                slba += blocks;
            }
            if let Err(e) = self.submit_all(&mut cmds) {
                result = Err(e);
                break;
            }
        }
        if !write {
            // Also after a failed read: lines fetched meanwhile must not hide what landed.
            self.env.sync_dma(list, self.coherent);
        }
        result
    }

    fn bounce_err(_: DmaError) -> BlockError {
        BlockError::Device(NO_MEMORY)
    }
}

impl<E: Env + Send> BlockDevice for Controller<E> {
    fn sectors(&self) -> u64 {
        self.blocks << (self.lba_shift - 9)
    }

    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        let count = block::sectors_in(buf.len())?;
        block::check(lba, count, self.sectors())?;
        let step = self.step();
        let mut done = 0u64;
        while done < count {
            let n = (count - done).min(step);
            let (slba, blocks, skip) = covering(lba + done, n, self.lba_shift);
            self.transfer(false, slba, blocks)?;
            let out = &mut buf[done as usize * SECTOR..][..n as usize * SECTOR];
            self.bounce
                .read(skip as u64, out)
                .map_err(Self::bounce_err)?;
            done += n;
        }
        Ok(())
    }

    fn write(&mut self, lba: u64, data: &[u8]) -> Result<(), BlockError> {
        let count = block::sectors_in(data.len())?;
        block::check(lba, count, self.sectors())?;
        let step = self.step();
        let per = 1u64 << (self.lba_shift - 9);
        let mut done = 0u64;
        while done < count {
            let n = (count - done).min(step);
            let (slba, blocks, skip) = covering(lba + done, n, self.lba_shift);
            if skip != 0 || !n.is_multiple_of(per) {
                // Read-modify-write of the logical blocks the sectors only partly cover.
                self.transfer(false, slba, blocks)?;
            }
            let src = &data[done as usize * SECTOR..][..n as usize * SECTOR];
            self.bounce
                .write(skip as u64, src)
                .map_err(Self::bounce_err)?;
            self.transfer(true, slba, blocks)?;
            done += n;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), BlockError> {
        self.submit(1, Command::flush(self.nsid)).map(|_| ())
    }

    fn read_dma(&mut self, lba: u64, list: &DmaList<'_>) -> Result<bool, BlockError> {
        self.dma(false, lba, list)
    }

    fn write_dma(&mut self, lba: u64, list: &DmaList<'_>) -> Result<bool, BlockError> {
        self.dma(true, lba, list)
    }
}

#[cfg(test)]
mod tests {
    //! The driver against a fake controller: an NVMe device model that runs whenever the
    //! driver looks at the time or at DMA memory (so it answers doorbells "concurrently").
    use super::*;
    use crate::spec::{op, plan};
    use plugin_quirks_storage::StorageConfig;
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    const REG_DWORDS: usize = 0x2000 / 4;
    const TICKS_PER_MS: u64 = 1000;

    #[derive(Default)]
    struct Queues {
        base: u64,
        entries: u32,
        head: u32,
        phase: bool,
    }

    #[derive(Default)]
    struct Device {
        regs: usize, // address of the leaked register block
        mem: BTreeMap<u64, Vec<u8>>,
        next_addr: u64,
        clock: u64,
        disk: Vec<u8>,
        lba_shift: u32,
        mdts: u8,
        /// Commands answer with this status when their opcode (on an I/O queue) matches.
        fail: Option<(u8, u16)>,
        /// Completions are never posted (a hung controller).
        mute: bool,
        enabled_at: Option<u64>,
        first_command_at: Option<u64>,
        sq: [Queues; 2],
        cq: [Queues; 2],
        /// (queue, opcode, cdw10, nlb-or-0) of every command, in order.
        log: Vec<(u16, u8, u32)>,
        flushes: u32,
        /// First address of every DMA list made right for the device or the CPU.
        synced: Vec<u64>,
        /// I/O commands found per look at the I/O submission queue (when any).
        batches: Vec<usize>,
        /// Post the I/O completions of one look in the reverse order.
        reverse: bool,
        /// An I/O command whose CDW10 (low starting LBA) is this fails with that status.
        fail_slba: Option<(u32, u16)>,
        /// Post the I/O completions with this added to their command identifiers.
        cid_skew: u16,
    }

    impl Device {
        fn reg(&self, off: usize) -> u32 {
            // SAFETY: `regs` is a leaked block of REG_DWORDS u32s; `off` is inside it.
            unsafe { ((self.regs as *const u32).add(off / 4)).read_volatile() }
        }

        fn set_reg(&self, off: usize, v: u32) {
            // SAFETY: as in `reg`.
            unsafe { ((self.regs as *mut u32).add(off / 4)).write_volatile(v) }
        }

        fn find(&mut self, addr: u64, len: usize) -> &mut [u8] {
            let (&base, buf) = self
                .mem
                .range_mut(..=addr)
                .next_back()
                .expect("DMA to unallocated memory");
            let off = (addr - base) as usize;
            &mut buf[off..off + len]
        }

        fn gather(&mut self, prp1: u64, prp2: u64, len: usize) -> Vec<(u64, usize)> {
            let page = 4096u64;
            let first = (page - prp1 % page).min(len as u64) as usize;
            let mut out = vec![(prp1, first)];
            let mut left = len - first;
            let pages = left.div_ceil(4096);
            let list: Vec<u64> = if pages <= 1 {
                vec![prp2]
            } else {
                self.find(prp2, pages * 8)
                    .chunks(8)
                    .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
                    .collect()
            };
            for a in list.into_iter().take(pages) {
                let n = left.min(4096);
                out.push((a, n));
                left -= n;
            }
            out
        }

        fn step(&mut self) {
            let cc = self.reg(reg::CC);
            let csts = self.reg(reg::CSTS);
            if cc & 1 == 1 && csts & 1 == 0 {
                let aqa = self.reg(reg::AQA);
                let lo_hi = |d: &Self, o| u64::from(d.reg(o)) | (u64::from(d.reg(o + 4)) << 32);
                self.sq[0] = Queues {
                    base: lo_hi(self, reg::ASQ),
                    entries: (aqa & 0xfff) + 1,
                    ..Queues::default()
                };
                self.cq[0] = Queues {
                    base: lo_hi(self, reg::ACQ),
                    entries: ((aqa >> 16) & 0xfff) + 1,
                    phase: true,
                    ..Queues::default()
                };
                self.enabled_at = Some(self.clock);
                self.set_reg(reg::CSTS, 1);
            } else if cc & 1 == 0 && csts & 1 == 1 {
                self.set_reg(reg::CSTS, 0);
            }
            if self.reg(reg::CSTS) & 1 == 0 {
                return;
            }
            for q in 0..2usize {
                if self.sq[q].entries == 0 {
                    continue;
                }
                let tail = self.reg(spec::doorbell(q as u16, false, 4));
                let mut done = Vec::new();
                while self.sq[q].head != tail % self.sq[q].entries {
                    let at = self.sq[q].base + u64::from(self.sq[q].head) * 64;
                    let mut sqe: [u8; 64] = self.find(at, 64).try_into().unwrap();
                    self.sq[q].head = (self.sq[q].head + 1) % self.sq[q].entries;
                    self.first_command_at.get_or_insert(self.clock);
                    let status = self.execute(q as u16, &sqe);
                    if q == 1 {
                        let cid = u16::from_le_bytes([sqe[2], sqe[3]]);
                        sqe[2..4].copy_from_slice(&cid.wrapping_add(self.cid_skew).to_le_bytes());
                    }
                    done.push((sqe, status));
                }
                if q == 1 && !done.is_empty() {
                    self.batches.push(done.len());
                    if self.reverse {
                        done.reverse();
                    }
                }
                for (sqe, status) in done {
                    if !self.mute {
                        self.complete(q, &sqe, status);
                    }
                }
            }
        }

        fn execute(&mut self, q: u16, sqe: &[u8; 64]) -> u16 {
            let d = |i: usize| u32::from_le_bytes(sqe[i * 4..i * 4 + 4].try_into().unwrap());
            let q64 = |i: usize| u64::from(d(i)) | (u64::from(d(i + 1)) << 32);
            let opcode = sqe[0];
            self.log.push((q, opcode, d(10)));
            if q == 1 {
                if let Some((o, s)) = self.fail {
                    if o == opcode {
                        return s;
                    }
                }
                if let Some((lba, s)) = self.fail_slba {
                    if lba == d(10) {
                        return s;
                    }
                }
            }
            let (prp1, prp2) = (q64(6), q64(8));
            match (q, opcode) {
                (0, op::IDENTIFY) => {
                    let mut data = vec![0u8; 4096];
                    if d(10) == 1 {
                        data[4..12].copy_from_slice(b"FAKE0001");
                        data[24..33].copy_from_slice(b"Fake NVMe");
                        data[77] = self.mdts;
                        data[516] = 1;
                    } else {
                        let blocks = (self.disk.len() >> self.lba_shift) as u64;
                        data[0..8].copy_from_slice(&blocks.to_le_bytes());
                        data[128 + 2] = self.lba_shift as u8;
                    }
                    self.find(prp1, 4096).copy_from_slice(&data);
                    0
                }
                (0, op::SET_FEATURES) => 0,
                (0, op::CREATE_IO_CQ) => {
                    self.cq[1] = Queues {
                        base: prp1,
                        entries: (d(10) >> 16) + 1,
                        phase: true,
                        ..Queues::default()
                    };
                    0
                }
                (0, op::CREATE_IO_SQ) => {
                    self.sq[1] = Queues {
                        base: prp1,
                        entries: (d(10) >> 16) + 1,
                        ..Queues::default()
                    };
                    0
                }
                (1, op::READ | op::WRITE) => {
                    let slba = q64(10) as usize;
                    let len = ((d(12) & 0xffff) as usize + 1) << self.lba_shift;
                    let max = 4096usize << self.mdts;
                    if self.mdts != 0 && len > max {
                        return 0x2; // invalid field: over MDTS
                    }
                    let mut at = slba << self.lba_shift;
                    for (addr, n) in self.gather(prp1, prp2, len) {
                        if opcode == op::READ {
                            let src = self.disk[at..at + n].to_vec();
                            self.find(addr, n).copy_from_slice(&src);
                        } else {
                            let src = self.find(addr, n).to_vec();
                            self.disk[at..at + n].copy_from_slice(&src);
                        }
                        at += n;
                    }
                    0
                }
                (1, op::FLUSH) => {
                    self.flushes += 1;
                    0
                }
                _ => 0x1, // invalid opcode
            }
        }

        fn complete(&mut self, q: usize, sqe: &[u8; 64], status: u16) {
            let cq = &self.cq[q];
            let at = cq.base + u64::from(cq.head) * 16;
            let cid = u32::from(u16::from_le_bytes([sqe[2], sqe[3]]));
            let dw3 = cid | (u32::from(cq.phase) << 16) | (u32::from(status) << 17);
            let mut cqe = [0u8; 16];
            cqe[8..12].copy_from_slice(&self.sq[q].head.to_le_bytes());
            cqe[12..16].copy_from_slice(&dw3.to_le_bytes());
            self.find(at, 16).copy_from_slice(&cqe);
            let cq = &mut self.cq[q];
            cq.head = (cq.head + 1) % cq.entries;
            if cq.head == 0 {
                cq.phase = !cq.phase;
            }
        }
    }

    #[derive(Clone)]
    struct Fake(Arc<Mutex<Device>>);

    struct FakeBuf {
        dev: Arc<Mutex<Device>>,
        addr: u64,
        size: u64,
    }

    impl Dma for FakeBuf {
        fn bus_addr(&self) -> u64 {
            self.addr
        }

        fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), DmaError> {
            if offset + data.len() as u64 > self.size {
                return Err(DmaError);
            }
            let mut d = self.dev.lock().unwrap();
            d.find(self.addr + offset, data.len()).copy_from_slice(data);
            Ok(())
        }

        fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), DmaError> {
            if offset + buf.len() as u64 > self.size {
                return Err(DmaError);
            }
            let mut d = self.dev.lock().unwrap();
            d.step();
            buf.copy_from_slice(d.find(self.addr + offset, buf.len()));
            Ok(())
        }
    }

    impl Env for Fake {
        type Buf = FakeBuf;

        fn alloc(&self, size: u64, _coherent: bool) -> Result<FakeBuf, DmaError> {
            let mut d = self.0.lock().unwrap();
            let size = size.div_ceil(4096) * 4096;
            let addr = d.next_addr;
            d.next_addr += size + 4096;
            d.mem.insert(addr, vec![0; size as usize]);
            Ok(FakeBuf {
                dev: self.0.clone(),
                addr,
                size,
            })
        }

        fn now(&self) -> u64 {
            let mut d = self.0.lock().unwrap();
            d.clock += 100; // 0.1 ms per look at the clock
            d.step();
            d.clock
        }

        fn ticks_per_ms(&self) -> u64 {
            TICKS_PER_MS
        }

        fn sync_dma(&self, list: &DmaList<'_>, _coherent: bool) {
            let mut d = self.0.lock().unwrap();
            d.synced.push(list.segs().first().map_or(0, |s| s.addr));
        }
    }

    /// A fake controller with a `mib` MiB namespace of `2^lba_shift`-byte blocks, and the
    /// driver brought up on it with `cfg`'s quirks.
    fn setup(
        lba_shift: u32,
        mdts: u8,
        cfg: StorageConfig,
    ) -> (Fake, Result<Controller<Fake>, InitError>) {
        let regs: &'static mut [ReadWrite<u32>] = Box::leak(
            (0..REG_DWORDS)
                .map(|_| ReadWrite(0u32))
                .collect::<Vec<_>>()
                .into_boxed_slice(),
        );
        let base = NonNull::new(regs.as_mut_ptr()).unwrap();
        let dev = Device {
            regs: base.as_ptr() as usize,
            next_addr: 0x8000_0000,
            disk: vec![0; 4 << 20],
            lba_shift,
            mdts,
            ..Device::default()
        };
        // CAP: MQES 2047, TO 2 (1 s), CSS NVM, DSTRD 0, MPSMIN 0.
        dev.set_reg(reg::CAP_LO, 0x0200_07ff);
        dev.set_reg(reg::CAP_HI, 0x0000_0020);
        let fake = Fake(Arc::new(Mutex::new(dev)));
        // SAFETY: `regs` is a leaked host block the driver and the fake device (volatile
        // accesses only) share, as the hardware's registers would be shared.
        let c = unsafe {
            Controller::new(
                fake.clone(),
                base,
                REG_DWORDS * 4,
                |cap| plan(cap, &cfg),
                false,
            )
        };
        (fake, c)
    }

    fn quirked(max_queue_depth: u32, ready_delay_ms: u32) -> StorageConfig {
        let mut cfg = StorageConfig::default();
        let q = hypervisor::plugin::QuirkData::Storage {
            max_queue_depth,
            no_write_cache: false,
            force_512_sectors: false,
            ignore_subnqn: false,
            ready_delay_ms,
            dma_alias_function: None,
        };
        assert!(plugin_quirks_storage::apply(&q, &mut cfg));
        cfg
    }

    #[test]
    fn bring_up_identifies_and_reads_and_writes_through_prp_lists() {
        let (fake, c) = setup(9, 5, StorageConfig::default());
        let mut c = c.unwrap();
        assert_eq!(c.id.model, "Fake NVMe");
        assert_eq!(c.sectors(), (4 << 20) / 512);
        // 300 KiB: three requests at MDTS 5 (128 KiB), each with a PRP list.
        let data: Vec<u8> = (0..300 * 1024).map(|i| (i % 251) as u8).collect();
        c.write(3, &data).unwrap();
        c.flush().unwrap();
        let mut back = vec![0u8; data.len()];
        c.read(3, &mut back).unwrap();
        assert_eq!(back, data);
        let d = fake.0.lock().unwrap();
        assert_eq!(&d.disk[3 * 512..3 * 512 + data.len()], &data[..]);
        let writes = d
            .log
            .iter()
            .filter(|e| e.0 == 1 && e.1 == op::WRITE)
            .count();
        assert_eq!(writes, 3);
        assert_eq!(d.flushes, 1);
    }

    /// "Guest RAM" of `pages` pages at `GUEST` in the fake's memory.
    const GUEST: u64 = 0x10_0000_0000;

    fn guest_ram(fake: &Fake, pages: u64) {
        let mut d = fake.0.lock().unwrap();
        d.mem.insert(GUEST, vec![0; (pages * 4096) as usize]);
    }

    /// Writes `data` into the fake's guest memory, spread over `segs` in order.
    fn put(fake: &Fake, segs: &[(u64, u64)], data: &[u8]) {
        let mut d = fake.0.lock().unwrap();
        let mut at = 0;
        for &(a, l) in segs {
            d.find(a, l as usize)
                .copy_from_slice(&data[at..at + l as usize]);
            at += l as usize;
        }
    }

    fn list(segs: &[(u64, u64)]) -> DmaList<'static> {
        DmaList::for_host_test(
            segs.iter()
                .map(|&(addr, len)| hypervisor::block::DmaSeg { addr, len })
                .collect(),
        )
    }

    fn commands(fake: &Fake, opcode: u8) -> usize {
        let d = fake.0.lock().unwrap();
        d.log.iter().filter(|e| e.0 == 1 && e.1 == opcode).count()
    }

    #[test]
    fn dma_lists_move_data_between_the_disk_and_scattered_pages_without_the_bounce_buffer() {
        let (fake, c) = setup(9, 5, StorageConfig::default());
        let mut c = c.unwrap();
        guest_ram(&fake, 256);
        // 300 KiB in 75 pages laid out backwards, the first starting 512 bytes into its
        // page (a guest's PRP1 offset): three commands at MDTS 5 (128 KiB), each with a
        // PRP list of the pages in the list's order.
        let mut segs = vec![(GUEST + 200 * 4096 + 512, 4096 - 512)];
        segs.extend((0..74).map(|i| (GUEST + (150 - i) * 4096, 4096)));
        segs.push((GUEST + 10 * 4096, 512));
        let w = list(&segs);
        assert_eq!(w.len(), 300 * 1024);
        let data: Vec<u8> = (0..300 * 1024).map(|i| (i % 253) as u8).collect();
        put(&fake, &segs, &data);
        assert_eq!(c.write_dma(7, &w), Ok(true));
        assert_eq!(commands(&fake, op::WRITE), 3);
        assert_eq!(
            &fake.0.lock().unwrap().disk[7 * 512..7 * 512 + data.len()],
            &data[..]
        );
        // Read it back into other pages (one contiguous 300 KiB run, split per page).
        let r = list(&[(GUEST + 4096, 300 * 1024)]);
        assert_eq!(c.read_dma(7, &r), Ok(true));
        assert_eq!(commands(&fake, op::READ), 3);
        let mut d = fake.0.lock().unwrap();
        assert_eq!(d.find(GUEST + 4096, 300 * 1024), &data[..]);
        // The bounce buffer never held the data; the lists were synced once before the
        // write, before and after the read.
        assert_eq!(
            d.synced,
            vec![GUEST + 200 * 4096 + 512, GUEST + 4096, GUEST + 4096]
        );
    }

    #[test]
    fn dma_lists_prps_cannot_describe_fall_back_and_errors_stay_errors() {
        let (fake, c) = setup(9, 7, StorageConfig::default());
        let mut c = c.unwrap();
        guest_ram(&fake, 16);
        // Not dword aligned; a later piece not starting a page; an earlier one not ending one.
        for segs in [
            vec![(GUEST + 2, 512)],
            vec![(GUEST, 4096), (GUEST + 8192 + 512, 512)],
            vec![(GUEST, 512), (GUEST + 4096, 512)],
        ] {
            assert_eq!(c.read_dma(0, &list(&segs)), Ok(false), "{segs:x?}");
            assert_eq!(c.write_dma(0, &list(&segs)), Ok(false), "{segs:x?}");
        }
        assert_eq!(commands(&fake, op::READ) + commands(&fake, op::WRITE), 0);
        assert!(fake.0.lock().unwrap().synced.is_empty());
        // Bounds and whole sectors are checked as for buffers.
        let sectors = c.sectors();
        assert!(matches!(
            c.read_dma(sectors, &list(&[(GUEST, 512)])),
            Err(BlockError::OutOfRange { .. })
        ));
        assert_eq!(
            c.read_dma(0, &list(&[(GUEST, 100)])),
            Err(BlockError::Unaligned(100))
        );
        // A device error reaches the caller.
        fake.0.lock().unwrap().fail = Some((op::READ, 0x281));
        assert_eq!(
            c.read_dma(0, &list(&[(GUEST, 4096)])),
            Err(BlockError::Device(0x281))
        );
    }

    #[test]
    fn dma_on_4k_blocks_takes_only_whole_blocks() {
        let (fake, c) = setup(12, 5, StorageConfig::default());
        let mut c = c.unwrap();
        guest_ram(&fake, 4);
        assert_eq!(c.write_dma(1, &list(&[(GUEST, 4096)])), Ok(false));
        assert_eq!(c.write_dma(0, &list(&[(GUEST, 1024)])), Ok(false));
        fake.0.lock().unwrap().find(GUEST, 8192).fill(5);
        assert_eq!(c.write_dma(8, &list(&[(GUEST, 8192)])), Ok(true));
        let d = fake.0.lock().unwrap();
        assert!(d.disk[4096..3 * 4096].iter().all(|&b| b == 5));
        assert!(d.disk[3 * 4096..4 * 4096].iter().all(|&b| b == 0));
    }

    #[test]
    fn sectors_on_4k_blocks_are_read_modified_written() {
        let (fake, c) = setup(12, 5, StorageConfig::default());
        let mut c = c.unwrap();
        fake.0.lock().unwrap().disk[..8192].fill(0xee);
        c.write(3, &[1u8; 1024]).unwrap();
        let d = fake.0.lock().unwrap();
        assert!(
            d.disk[..3 * 512].iter().all(|&b| b == 0xee),
            "sectors before kept"
        );
        assert!(d.disk[3 * 512..5 * 512].iter().all(|&b| b == 1));
        assert!(
            d.disk[5 * 512..8192].iter().all(|&b| b == 0xee),
            "sectors after kept"
        );
    }

    #[test]
    fn a_quirk_bounds_the_io_queue_and_delays_the_ready_poll() {
        let depth = |fake: &Fake| {
            let d = fake.0.lock().unwrap();
            let sq = d
                .log
                .iter()
                .find(|e| e.0 == 0 && e.1 == op::CREATE_IO_SQ)
                .unwrap();
            (sq.2 >> 16) + 1
        };
        let waited = |fake: &Fake| {
            let d = fake.0.lock().unwrap();
            (d.first_command_at.unwrap() - d.enabled_at.unwrap()) / TICKS_PER_MS
        };
        let (plain, c) = setup(9, 5, StorageConfig::default());
        assert!(c.is_ok());
        assert_eq!(depth(&plain), crate::spec::MAX_QUEUE_ENTRIES);
        assert!(waited(&plain) < 10, "{} ms", waited(&plain));
        let (slow, c) = setup(9, 5, quirked(8, 2300));
        assert!(c.is_ok());
        assert_eq!(depth(&slow), 8);
        assert!(waited(&slow) >= 2300, "{} ms", waited(&slow));
    }

    /// 512 KiB of guest pages (the first piece 512 bytes into its page) filled with a
    /// pattern, as a DMA list.
    fn patterned(fake: &Fake) -> (DmaList<'static>, Vec<u8>) {
        guest_ram(fake, 160);
        let mut segs = vec![(GUEST + 140 * 4096 + 512, 4096 - 512)];
        segs.extend((0..127).map(|i| (GUEST + (130 - i) * 4096, 4096)));
        segs.push((GUEST + 150 * 4096, 512));
        let data: Vec<u8> = (0..512 * 1024).map(|i| (i % 251) as u8).collect();
        put(fake, &segs, &data);
        (list(&segs), data)
    }

    #[test]
    fn a_request_goes_out_as_pieces_in_flight_together_completed_in_any_order() {
        let (fake, c) = setup(9, 5, StorageConfig::default());
        let mut c = c.unwrap();
        let (w, data) = patterned(&fake);
        fake.0.lock().unwrap().reverse = true;
        assert_eq!(c.write_dma(16, &w), Ok(true));
        // 512 KiB at MDTS 5: four 128 KiB pieces, all four found at one look, finished
        // last-first; every byte landed where its piece says.
        assert_eq!(fake.0.lock().unwrap().batches, vec![IN_FLIGHT]);
        assert_eq!(commands(&fake, op::WRITE), IN_FLIGHT);
        assert_eq!(
            &fake.0.lock().unwrap().disk[16 * 512..][..data.len()],
            &data[..]
        );
        let r = list(&[(GUEST, 512 * 1024)]);
        assert_eq!(c.read_dma(16, &r), Ok(true));
        assert_eq!(fake.0.lock().unwrap().find(GUEST, 512 * 1024), &data[..]);
        // 600 KiB: a group of four, then one more.
        fake.0.lock().unwrap().batches.clear();
        assert_eq!(c.read_dma(0, &list(&[(GUEST, 600 * 1024)])), Ok(true));
        assert_eq!(fake.0.lock().unwrap().batches, vec![IN_FLIGHT, 1]);
        // A queue quirked to 3 entries holds two at a time.
        let (fake, c) = setup(9, 5, quirked(3, 0));
        let mut c = c.unwrap();
        let (w, _) = patterned(&fake);
        assert_eq!(c.write_dma(0, &w), Ok(true));
        assert_eq!(fake.0.lock().unwrap().batches, vec![2, 2]);
    }

    #[test]
    fn an_error_mid_batch_fails_the_request_once_every_piece_is_back() {
        let (fake, c) = setup(9, 5, StorageConfig::default());
        let mut c = c.unwrap();
        let (w, data) = patterned(&fake);
        // The second piece (sectors 256.. of the request) fails; the drive finishes the
        // others, last-first.
        {
            let mut d = fake.0.lock().unwrap();
            d.reverse = true;
            d.fail_slba = Some((256, 0x280));
        }
        assert_eq!(c.write_dma(0, &w), Err(BlockError::Device(0x280)));
        assert_eq!(commands(&fake, op::WRITE), IN_FLIGHT);
        {
            let d = fake.0.lock().unwrap();
            assert_eq!(&d.disk[..128 * 1024], &data[..128 * 1024]);
            assert_eq!(&d.disk[384 * 1024..512 * 1024], &data[384 * 1024..]);
        }
        // Nothing of the failed batch is left on the queues: the next request works.
        fake.0.lock().unwrap().fail_slba = None;
        assert_eq!(c.write_dma(0, &w), Ok(true));
        assert_eq!(&fake.0.lock().unwrap().disk[..data.len()], &data[..]);
        // A completion naming no command in flight retires the controller.
        fake.0.lock().unwrap().cid_skew = 100;
        assert_eq!(c.write_dma(0, &w), Err(BlockError::Device(DEAD)));
        fake.0.lock().unwrap().cid_skew = 0;
        assert_eq!(c.read_dma(0, &w), Err(BlockError::Device(DEAD)));
    }

    #[test]
    fn a_flush_goes_out_after_every_piece_of_earlier_writes_completed() {
        let (fake, c) = setup(9, 5, StorageConfig::default());
        let mut c = c.unwrap();
        let (w, _) = patterned(&fake);
        fake.0.lock().unwrap().reverse = true;
        assert_eq!(c.write_dma(0, &w), Ok(true));
        assert_eq!(c.flush(), Ok(()));
        // The flush was found on its own look, after the writes' look: the drive had
        // completed all four when it saw it.
        let d = fake.0.lock().unwrap();
        assert_eq!(d.batches, vec![IN_FLIGHT, 1]);
        let io: Vec<u8> = d.log.iter().filter(|e| e.0 == 1).map(|e| e.1).collect();
        assert_eq!(io, [op::WRITE, op::WRITE, op::WRITE, op::WRITE, op::FLUSH]);
        assert_eq!(d.flushes, 1);
    }

    #[test]
    fn device_errors_and_timeouts_are_block_errors() {
        let (fake, c) = setup(9, 5, StorageConfig::default());
        let mut c = c.unwrap();
        fake.0.lock().unwrap().fail = Some((op::WRITE, 0x280));
        assert_eq!(c.write(0, &[0; 512]), Err(BlockError::Device(0x280)));
        assert!(
            c.read(0, &mut [0; 512]).is_ok(),
            "the controller is still usable"
        );
        fake.0.lock().unwrap().mute = true;
        assert_eq!(c.flush(), Err(BlockError::Device(TIMEOUT)));
        // After a timeout the queues cannot be trusted: the controller is retired.
        fake.0.lock().unwrap().mute = false;
        assert_eq!(c.read(0, &mut [0; 512]), Err(BlockError::Device(DEAD)));
        assert!(matches!(
            c.read(0, &mut [0; 100]),
            Err(BlockError::Unaligned(100))
        ));
    }

    #[test]
    fn a_controller_that_never_gets_ready_fails_bring_up() {
        let regs: &'static mut [ReadWrite<u32>] = Box::leak(
            (0..REG_DWORDS)
                .map(|_| ReadWrite(0u32))
                .collect::<Vec<_>>()
                .into_boxed_slice(),
        );
        let base = NonNull::new(regs.as_mut_ptr()).unwrap();
        let dev = Device {
            // No register block of its own: it never sees CC.EN, so never sets RDY.
            regs: Box::leak(Box::new([0u32; REG_DWORDS])).as_mut_ptr() as usize,
            next_addr: 0x8000_0000,
            ..Device::default()
        };
        let fake = Fake(Arc::new(Mutex::new(dev)));
        regs[0] = ReadWrite(0x0200_07ff);
        regs[1] = ReadWrite(0x0000_0020);
        // SAFETY: a leaked host block only this driver touches.
        let c = unsafe {
            Controller::new(
                fake,
                base,
                REG_DWORDS * 4,
                |cap| plan(cap, &StorageConfig::default()),
                false,
            )
        };
        assert_eq!(c.err(), Some(InitError::NotReady));
    }
}
