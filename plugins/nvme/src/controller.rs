//! One NVMe controller driven by polling: reset and enable, the admin queue pair, one I/O
//! queue pair, and namespace 1 as a [`BlockDevice`]. Every wait has a timeout; a device
//! error or timeout is a [`BlockError::Device`] (a timeout also retires the controller, whose
//! queues can no longer be trusted), never a panic.

use crate::spec::{self, covering, prps, reg, Cap, Command, Completion, Plan};
use alloc::vec;
use core::ptr::NonNull;
use hypervisor::arch::cpu;
use hypervisor::arch::mem::{alloc_dma, DmaBuffer, MemError};
use hypervisor::block::{self, BlockDevice, BlockError, SECTOR};
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

impl From<MemError> for InitError {
    fn from(_: MemError) -> Self {
        Self::Memory
    }
}

struct Queue {
    mem: DmaBuffer,
    entries: u32,
    /// Submission tail or completion head.
    index: u32,
    phase: bool,
}

/// A controller with its queues and namespace 1.
pub struct Controller {
    regs: UniqueMmioPointer<'static, [ReadWrite<u32>]>,
    stride: usize,
    admin_sq: Queue,
    admin_cq: Queue,
    io_sq: Queue,
    io_cq: Queue,
    bounce: DmaBuffer,
    prp_list: DmaBuffer,
    next_cid: u16,
    max_transfer: u64,
    nsid: u32,
    blocks: u64,
    lba_shift: u32,
    dead: bool,
    /// Identify Controller's data.
    pub id: spec::IdController,
    /// The plan it runs with.
    pub plan: Plan,
}

fn ms_to_ticks(ms: u64) -> u64 {
    cpu::counter_frequency() / 1000 * ms
}

fn delay_ms(ms: u32) {
    let end = cpu::counter() + ms_to_ticks(u64::from(ms));
    while cpu::counter() < end {
        core::hint::spin_loop();
    }
}

impl Queue {
    fn new(entries: u32, entry_size: u64, coherent: bool) -> Result<Self, MemError> {
        Ok(Self {
            mem: alloc_dma(u64::from(entries) * entry_size, coherent)?,
            entries,
            index: 0,
            phase: true,
        })
    }
}

impl Controller {
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
        let mut c = Self {
            regs,
            stride: cap.doorbell_stride,
            admin_sq: Queue::new(plan.admin_entries, 64, coherent)?,
            admin_cq: Queue::new(plan.admin_entries, 16, coherent)?,
            io_sq: Queue::new(plan.io_entries, 64, coherent)?,
            io_cq: Queue::new(plan.io_entries, 16, coherent)?,
            bounce: alloc_dma(BOUNCE, coherent)?,
            prp_list: alloc_dma(PAGE, coherent)?,
            next_cid: 0,
            max_transfer: 0,
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

    fn wait_csts(&mut self, rdy: bool, timeout_ms: u64) -> Result<(), InitError> {
        let end = cpu::counter() + ms_to_ticks(timeout_ms);
        loop {
            let csts = self.read32(reg::CSTS);
            if csts == u32::MAX || csts & spec::CSTS_CFS != 0 {
                return Err(InitError::Fatal);
            }
            if (csts & spec::CSTS_RDY != 0) == rdy {
                return Ok(());
            }
            if cpu::counter() > end {
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
            delay_ms(self.plan.ready_delay_ms);
        }
        self.wait_csts(true, timeout)
    }

    fn identify(&mut self) -> Result<(), InitError> {
        let mut data = vec![0u8; 4096];
        let page = self.bounce.bus_addr();
        self.admin(Command::identify(1, 0, page))?;
        self.bounce.read(0, &mut data)?;
        self.id = spec::IdController::decode(&data).ok_or(InitError::NoNamespace)?;
        if self.id.namespaces == 0 {
            return Err(InitError::NoNamespace);
        }
        self.admin(Command::identify(0, self.nsid, page))?;
        self.bounce.read(0, &mut data)?;
        let ns = spec::IdNamespace::decode(&data).ok_or(InitError::NoNamespace)?;
        self.blocks = ns.blocks;
        self.lba_shift = ns.lba_shift;
        self.max_transfer = spec::max_transfer(self.id.mdts, PAGE, BOUNCE);
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
        let end = cpu::counter() + ms_to_ticks(COMMAND_TIMEOUT_MS);
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
            if cpu::counter() > end {
                self.dead = true;
                return Err(BlockError::Device(TIMEOUT));
            }
            core::hint::spin_loop();
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

    fn bounce_err(_: MemError) -> BlockError {
        BlockError::Device(NO_MEMORY)
    }
}

impl BlockDevice for Controller {
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
}
