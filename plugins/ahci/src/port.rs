//! One AHCI HBA driven by polling: AHCI mode and an HBA reset, then each implemented port
//! with an ATA disk as a [`BlockDevice`] ([`Disk`]), one command slot at a time. Every wait
//! has a timeout; a failed command is a [`BlockError::Device`] with the drive's task file,
//! after which the port is recovered (stopped and restarted, with a command list override
//! or a COMRESET when the drive stays busy) so that later commands work; a port that
//! cannot be recovered is retired. Nothing here panics on what the device does.

use crate::spec::{
    self, ata, covering, layout, port_reg, px, reg, Cap, Identify, Plan, CMD_CLO, CMD_CR, CMD_FR,
    CMD_FRE, CMD_POD, CMD_ST, CMD_SUD,
};
use alloc::sync::Arc;
use alloc::vec;
use core::ptr::NonNull;
use hypervisor::block::{self, BlockDevice, BlockError, SECTOR};
use hypervisor::sync::Mutex;
use safe_mmio::fields::ReadWrite;
use safe_mmio::UniqueMmioPointer;

/// `BlockError::Device` status of a command that did not complete in time (ATA task file
/// statuses are 16 bits, so this never collides with one).
pub const TIMEOUT: u32 = 0x1_0000;
/// `BlockError::Device` status of a port retired after a recovery failed.
pub const DEAD: u32 = 0x2_0000;
/// `BlockError::Device` status when DMA memory could not be had or copied.
pub const NO_MEMORY: u32 = 0x3_0000;
/// `BlockError::Device` status of a host-side (bus or interface) error without a task file
/// error; the low byte holds PxIS bits 31:24.
pub const HOST_ERROR: u32 = 0x4_0000;
/// How long one command may take.
const COMMAND_TIMEOUT_MS: u64 = 5000;
/// How long a port may take to stop (PxCMD.CR and FR clear: 500 ms, AHCI 10.1.2).
const STOP_TIMEOUT_MS: u64 = 500;
/// How long the HBA reset may take (GHC.HR clears within 1 s, AHCI 10.4.3).
const RESET_TIMEOUT_MS: u64 = 1000;
/// How long a drive may stay busy after its link came up (first D2H FIS, spin-up).
const READY_TIMEOUT_MS: u64 = 3000;
/// How long a port with nothing on it is looked at (DET = 0: no device detected).
const LINK_TIMEOUT_MS: u64 = 20;
/// How long a detected device (DET = 1) may take to establish communication, and the
/// link to come back after a COMRESET.
const LINK_SETTLE_MS: u64 = 1000;
/// Bytes of the bounce buffer every transfer goes through.
const BOUNCE: u64 = 128 << 10;
/// Bytes one PRDT entry describes (so that a full bounce buffer takes two).
const PRD_BYTES: u64 = 64 << 10;

/// Why the HBA could not be brought up (reported by the probe).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitError {
    /// ABAR is smaller than the registers of the implemented ports.
    SmallBar,
    /// GHC.HR did not clear in time.
    ResetTimeout,
}

impl InitError {
    /// For the console.
    pub fn message(self) -> &'static str {
        match self {
            Self::SmallBar => "ABAR (BAR 5) is smaller than the implemented ports' registers",
            Self::ResetTimeout => "HBA reset (GHC.HR) did not complete within 1 s",
        }
    }
}

/// Why a port with a device on its link was not brought up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortError {
    /// The device is not an ATA disk (PxSIG; e.g. 0xeb140101 for ATAPI).
    NotAta(u32),
    /// A device is detected but communication with it is not established (DET stays 1).
    NoLink,
    /// PxCMD.CR or FR did not clear.
    NotStopped,
    /// The drive stayed busy (PxTFD.BSY/DRQ) or sent no signature.
    NotReady,
    /// No DMA memory, or memory the HBA cannot address (above 4 GiB without S64A).
    Memory,
    /// IDENTIFY DEVICE failed (its status), or the drive lacks 48-bit addressing.
    Identify(u32),
}

impl core::fmt::Display for PortError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Self::NotAta(sig) => write!(f, "not an ATA disk (signature {sig:#010x})"),
            Self::NoLink => write!(f, "device detected but no link (PxSSTS.DET = 1)"),
            Self::NotStopped => write!(f, "port did not stop (PxCMD.CR/FR)"),
            Self::NotReady => write!(f, "drive stayed busy"),
            Self::Memory => write!(f, "no DMA memory the HBA can address"),
            Self::Identify(0) => write!(f, "IDENTIFY DEVICE: no 48-bit addressing"),
            Self::Identify(s) => write!(f, "IDENTIFY DEVICE failed (status {s:#x})"),
        }
    }
}

pub use hypervisor::dma::{Dma, DmaError, Env};

/// The HBA's registers (ABAR), shared by its ports' disks: each access holds the lock.
type Regs = Arc<Mutex<UniqueMmioPointer<'static, [ReadWrite<u32>]>>>;

fn read_reg(regs: &Regs, off: usize) -> u32 {
    regs.lock().get(off / 4).map_or(u32::MAX, |mut r| r.read())
}

fn write_reg(regs: &Regs, off: usize, v: u32) {
    if let Some(mut r) = regs.lock().get(off / 4) {
        r.write(v);
    }
}

use hypervisor::dma::wait_until as wait;

/// An HBA in AHCI mode after its reset, its ports not yet brought up.
pub struct Hba<E: Env> {
    env: E,
    regs: Regs,
    /// What CAP says.
    pub cap: Cap,
    /// Ports implemented (PI).
    pub implemented: u32,
    /// The plan its ports run with.
    pub plan: Plan,
    coherent: bool,
}

impl<E: Env> Hba<E> {
    /// Resets the HBA whose ABAR is `bar` (`size` bytes) and puts it in AHCI mode, polled
    /// (GHC.IE clear); its ports run with `plan`.
    ///
    /// # Safety
    ///
    /// The caller guarantees that:
    /// 1. `[bar, bar + size)` is this HBA's ABAR, assigned and enabled (memory space and
    ///    bus mastering) by its host bridge, inside a window the EL2 page tables map as
    ///    device memory for the rest of the program;
    /// 2. nothing else (another driver, a guest mapping) accesses that BAR while the
    ///    returned value or a [`Disk`] made from it exists.
    pub unsafe fn new(
        env: E,
        bar: NonNull<ReadWrite<u32>>,
        size: usize,
        plan: Plan,
        coherent: bool,
    ) -> Result<Self, InitError> {
        let slice = NonNull::slice_from_raw_parts(bar, size / 4);
        // SAFETY: (1) and (2) of this function's contract are those of
        // `UniqueMmioPointer::new`: valid, aligned, device-mapped, unaliased.
        let regs: Regs = Arc::new(Mutex::new(unsafe { UniqueMmioPointer::new(slice) }));
        // Some HBAs only take GHC.HR in AHCI mode (AHCI 10.4.3): AE first.
        write_reg(&regs, reg::GHC, read_reg(&regs, reg::GHC) | spec::GHC_AE);
        // CAP and PI are write-once on some HBAs, set by firmware and cleared by the
        // reset: put back what firmware wrote (writes are ignored where they are
        // read-only), as Linux's ahci_restore_initial_config does.
        let (fw_cap, fw_pi) = (read_reg(&regs, reg::CAP), read_reg(&regs, reg::PI));
        write_reg(&regs, reg::GHC, spec::GHC_AE | spec::GHC_HR);
        if !wait(&env, RESET_TIMEOUT_MS, || {
            read_reg(&regs, reg::GHC) & spec::GHC_HR == 0
        }) {
            return Err(InitError::ResetTimeout);
        }
        // AE again (the reset may clear it), interrupts off: the driver polls.
        write_reg(&regs, reg::GHC, spec::GHC_AE);
        write_reg(&regs, reg::CAP, fw_cap);
        write_reg(&regs, reg::PI, fw_pi);
        let cap = Cap::decode(read_reg(&regs, reg::CAP));
        let implemented = read_reg(&regs, reg::PI);
        let last = 31 - implemented.leading_zeros().min(31);
        if implemented != 0 && size < port_reg(last, 0x80) {
            return Err(InitError::SmallBar);
        }
        write_reg(&regs, reg::IS, u32::MAX);
        let hba = Self {
            env,
            regs,
            cap,
            implemented,
            plan,
            coherent,
        };
        if plan.link_delay_ms > 0 {
            let env = &hba.env;
            wait(env, u64::from(plan.link_delay_ms), || false);
        }
        Ok(hba)
    }

    /// The implemented ports, lowest first.
    pub fn ports(&self) -> impl Iterator<Item = u32> + '_ {
        (0..32).filter(move |p| self.implemented & (1 << p) != 0)
    }

    /// Brings up `port`: `Ok(None)` if no device is on its link, else its disk, started
    /// and identified.
    pub fn bring_up(&self, port: u32) -> Result<Option<Disk<E>>, PortError> {
        let r = |off| read_reg(&self.regs, port_reg(port, off));
        if self.cap.sss {
            // Staggered spin-up: the port's device spins up when software says so.
            write_reg(
                &self.regs,
                port_reg(port, px::CMD),
                r(px::CMD) | CMD_SUD | CMD_POD,
            );
        }
        let det = || r(px::SSTS) & 0xf;
        if !wait(&self.env, LINK_TIMEOUT_MS, || det() == spec::DET_PRESENT) {
            // Nothing on the link, or a device detected (DET = 1) still negotiating.
            if det() != spec::DET_DETECTED {
                return Ok(None);
            }
            if !wait(&self.env, LINK_SETTLE_MS, || det() == spec::DET_PRESENT) {
                return Err(PortError::NoLink);
            }
        }
        let mem = self
            .env
            .alloc(layout::SIZE, self.coherent)
            .map_err(|DmaError| PortError::Memory)?;
        let bounce = self
            .env
            .alloc(BOUNCE, self.coherent)
            .map_err(|DmaError| PortError::Memory)?;
        let top = (mem.bus_addr() + layout::SIZE).max(bounce.bus_addr() + BOUNCE);
        if !self.cap.s64a && top > 1 << 32 {
            return Err(PortError::Memory);
        }
        let mut disk = Disk {
            env: self.env.clone(),
            regs: self.regs.clone(),
            port,
            cap: self.cap,
            plan: self.plan,
            mem,
            bounce,
            blocks: 0,
            lba_shift: 9,
            dead: false,
            id: Identify {
                model: Default::default(),
                sectors: 0,
                logical_size: 512,
                write_cache: false,
                write_cache_on: false,
            },
        };
        match disk.start_up() {
            Ok(()) => Ok(Some(disk)),
            Err(e) => {
                // Its memory goes back to the pool when `disk` drops: first stop the port
                // from using it, as far as it listens.
                if disk.stop(true).is_err() {
                    // It did not stop: its command list and buffers must never be reused.
                    core::mem::forget(disk);
                }
                Err(e)
            }
        }
    }
}

/// An ATA disk on one port of an HBA.
pub struct Disk<E: Env> {
    env: E,
    regs: Regs,
    port: u32,
    cap: Cap,
    /// The plan it runs with.
    pub plan: Plan,
    /// Command list, received FIS and the command table of slot 0.
    mem: E::Buf,
    bounce: E::Buf,
    blocks: u64,
    lba_shift: u32,
    dead: bool,
    /// IDENTIFY DEVICE's data.
    pub id: Identify,
}

impl<E: Env> Disk<E> {
    /// The port it is on.
    pub fn port(&self) -> u32 {
        self.port
    }

    /// Log2 of the logical sector size it is addressed in.
    pub fn lba_shift(&self) -> u32 {
        self.lba_shift
    }

    fn read32(&self, off: usize) -> u32 {
        read_reg(&self.regs, port_reg(self.port, off))
    }

    fn write32(&self, off: usize, v: u32) {
        write_reg(&self.regs, port_reg(self.port, off), v);
    }

    fn wait(&self, ms: u64, mut done: impl FnMut(&Self) -> bool) -> bool {
        wait(&self.env, ms, || done(self))
    }

    /// Clears ST (and FRE with `fis`) and waits for CR (and FR) to clear (AHCI 10.1.2).
    fn stop(&self, fis: bool) -> Result<(), PortError> {
        let cmd = self.read32(px::CMD);
        self.write32(px::CMD, cmd & !CMD_ST);
        if !self.wait(STOP_TIMEOUT_MS, |d| d.read32(px::CMD) & CMD_CR == 0) {
            return Err(PortError::NotStopped);
        }
        if fis {
            let cmd = self.read32(px::CMD);
            self.write32(px::CMD, cmd & !CMD_FRE);
            if !self.wait(STOP_TIMEOUT_MS, |d| d.read32(px::CMD) & CMD_FR == 0) {
                return Err(PortError::NotStopped);
            }
        }
        Ok(())
    }

    fn busy(&self) -> bool {
        self.read32(px::TFD) & (spec::ATA_BSY | spec::ATA_DRQ) != 0
    }

    fn clear_errors(&self) {
        // Both are write-1-to-clear.
        self.write32(px::SERR, u32::MAX);
        self.write32(px::IS, u32::MAX);
    }

    /// Stops the port, points it at its command list and FIS area, enables FIS receive,
    /// waits for the drive's signature, starts the port and identifies the drive.
    fn start_up(&mut self) -> Result<(), PortError> {
        self.stop(true)?;
        let base = self.mem.bus_addr();
        let (clb, fb) = (base + layout::CLB, base + layout::FB);
        self.write32(px::CLB, clb as u32);
        self.write32(px::CLBU, (clb >> 32) as u32);
        self.write32(px::FB, fb as u32);
        self.write32(px::FBU, (fb >> 32) as u32);
        self.write32(px::IE, 0);
        self.clear_errors();
        let cmd = self.read32(px::CMD);
        self.write32(px::CMD, cmd | CMD_FRE);
        // The drive's first D2H FIS sets PxSIG and clears BSY.
        if !self.wait(READY_TIMEOUT_MS, |d| {
            !d.busy() && d.read32(px::SIG) != u32::MAX
        }) {
            return Err(PortError::NotReady);
        }
        let sig = self.read32(px::SIG);
        if sig != spec::SIG_ATA {
            return Err(PortError::NotAta(sig));
        }
        self.clear_errors();
        let cmd = self.read32(px::CMD);
        self.write32(px::CMD, cmd | CMD_ST);
        self.identify()
    }

    fn identify(&mut self) -> Result<(), PortError> {
        self.exec(spec::h2d_fis(ata::IDENTIFY, 0, 0, 0), false, 512)
            .map_err(|e| match e {
                BlockError::Device(s) => PortError::Identify(s),
                _ => PortError::Identify(NO_MEMORY),
            })?;
        let mut data = vec![0u8; 512];
        self.bounce
            .read(0, &mut data)
            .map_err(|DmaError| PortError::Memory)?;
        self.id = Identify::decode(&data).ok_or(PortError::Identify(0))?;
        self.lba_shift = if self.plan.force_512 {
            9
        } else {
            self.id.logical_size.trailing_zeros()
        };
        self.blocks = self.id.sectors;
        if self.plan.disable_write_cache && self.id.write_cache_on {
            let fis = spec::h2d_fis(
                ata::SET_FEATURES,
                0,
                0,
                u16::from(ata::FEATURE_DISABLE_WRITE_CACHE),
            );
            self.exec(fis, false, 0).map_err(|e| match e {
                BlockError::Device(s) => PortError::Identify(s),
                _ => PortError::Identify(NO_MEMORY),
            })?;
            self.id.write_cache_on = false;
        }
        Ok(())
    }

    /// Issues the command `fis` in slot 0 moving `bytes` through the bounce buffer
    /// (already holding the data for a write) and polls for its completion.
    fn exec(&mut self, fis: [u8; 20], write: bool, bytes: u64) -> Result<(), BlockError> {
        if self.dead {
            return Err(BlockError::Device(DEAD));
        }
        let prds = spec::prdt(self.bounce.bus_addr(), bytes, PRD_BYTES);
        if prds.len() as u64 > layout::MAX_PRDS {
            return Err(BlockError::Device(NO_MEMORY));
        }
        let table = spec::command_table(&fis, &prds);
        let ctba = self.mem.bus_addr() + layout::CTBA;
        let header = spec::command_header(5, write, prds.len() as u16, ctba);
        self.mem
            .write(layout::CTBA, &table)
            .and_then(|()| self.mem.write(layout::CLB, &header))
            .map_err(|DmaError| BlockError::Device(NO_MEMORY))?;
        self.write32(px::CI, 1);
        let mut failed = 0;
        let done = self.wait(COMMAND_TIMEOUT_MS, |d| {
            failed = d.read32(px::IS) & spec::IS_ERRORS;
            failed != 0 || d.read32(px::CI) & 1 == 0
        });
        if !done {
            self.recover(true);
            return Err(BlockError::Device(TIMEOUT));
        }
        let tfd = self.read32(px::TFD);
        if failed != 0 || tfd & spec::ATA_ERR != 0 {
            let status = if failed & !spec::IS_TFES != 0 && tfd & spec::ATA_ERR == 0 {
                HOST_ERROR | (failed >> 24)
            } else {
                spec::device_status(tfd)
            };
            self.recover(false);
            return Err(BlockError::Device(status));
        }
        self.write32(px::IS, u32::MAX);
        Ok(())
    }

    /// Non-queued error recovery (AHCI 6.2.2.2): stop the port, clear the errors, free
    /// a drive left busy with a command list override or, failing that (or with `reset`),
    /// a COMRESET, and start the port again. A port that does not come back is retired.
    fn recover(&mut self, reset: bool) {
        let mut reset = reset || self.stop(false).is_err();
        self.clear_errors();
        if !reset && self.busy() {
            if self.cap.sclo {
                let cmd = self.read32(px::CMD);
                self.write32(px::CMD, cmd | CMD_CLO);
                self.wait(STOP_TIMEOUT_MS, |d| d.read32(px::CMD) & CMD_CLO == 0);
            }
            reset = self.busy();
        }
        if reset && !self.comreset() {
            self.dead = true;
            return;
        }
        let cmd = self.read32(px::CMD);
        self.write32(px::CMD, cmd | CMD_FRE | CMD_ST);
    }

    /// COMRESET (AHCI 10.4.2): with the port stopped, SControl.DET = 1 for at least 1 ms,
    /// then 0; wait for the link and for the drive to become ready. False if it does not.
    fn comreset(&mut self) -> bool {
        if self.stop(false).is_err() {
            return false;
        }
        let sctl = self.read32(px::SCTL) & !0xf;
        self.write32(px::SCTL, sctl | 1);
        self.wait(2, |_| false);
        self.write32(px::SCTL, sctl);
        let up = self.wait(LINK_SETTLE_MS, |d| {
            d.read32(px::SSTS) & 0xf == spec::DET_PRESENT
        });
        self.clear_errors();
        up && self.wait(READY_TIMEOUT_MS, |d| !d.busy())
    }

    /// Reads or writes `blocks` logical blocks at `slba` through the bounce buffer.
    fn transfer(&mut self, write: bool, slba: u64, blocks: u64) -> Result<(), BlockError> {
        let op = if write {
            ata::WRITE_DMA_EXT
        } else {
            ata::READ_DMA_EXT
        };
        let fis = spec::h2d_fis(op, slba, blocks as u16, 0);
        self.exec(fis, write, blocks << self.lba_shift)
    }

    /// Sectors per request: as many as fit the bounce buffer (and one command's count)
    /// even when they start in the middle of a logical block.
    fn step(&self) -> u64 {
        let per = 1u64 << (self.lba_shift - 9);
        let blocks = (BOUNCE >> self.lba_shift).min(spec::MAX_SECTORS_PER_COMMAND);
        (blocks * per).saturating_sub(per - 1).max(1)
    }

    fn bounce_err(_: DmaError) -> BlockError {
        BlockError::Device(NO_MEMORY)
    }
}

impl<E: Env + Send> BlockDevice for Disk<E> {
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
            self.bounce.read(skip, out).map_err(Self::bounce_err)?;
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
                // Read-modify-write of the logical sectors the 512-byte ones only partly
                // cover.
                self.transfer(false, slba, blocks)?;
            }
            let src = &data[done as usize * SECTOR..][..n as usize * SECTOR];
            self.bounce.write(skip, src).map_err(Self::bounce_err)?;
            self.transfer(true, slba, blocks)?;
            done += n;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), BlockError> {
        self.exec(spec::h2d_fis(ata::FLUSH_CACHE_EXT, 0, 0, 0), false, 0)
    }
}

#[cfg(test)]
mod tests {
    //! The driver against a fake HBA: an AHCI model that runs whenever the driver looks at
    //! the time or at DMA memory (so it answers PxCI "concurrently"), with ATA disks in
    //! host memory.
    use super::*;
    use crate::spec::{tests::identify_data, CMD_CR, CMD_FR, IS_TFES};
    use plugin_quirks_storage::StorageConfig;
    use std::collections::BTreeMap;
    use std::sync::{Arc as StdArc, Mutex as StdMutex};

    const REG_DWORDS: usize = 0x1000 / 4;
    const TICKS_PER_MS: u64 = 1000;
    const ATAPI_SIG: u32 = 0xeb14_0101;

    #[derive(Default)]
    struct FakePort {
        /// `None`: no device on the link.
        disk: Option<Vec<u8>>,
        sig: u32,
        /// Log2 of the sector size IDENTIFY reports.
        reported_shift: u32,
        /// Log2 of the unit the drive's LBAs really count.
        addr_shift: u32,
        write_cache_on: bool,
        d2h_sent: bool,
        in_comreset: bool,
        /// IS and SERR as the device holds them (the registers are write-1-to-clear).
        is: u32,
        serr: u32,
        /// Commands with this opcode fail with this task file (error << 8 | status).
        fail: Option<(u8, u32)>,
        /// Commands with this opcode leave the drive busy until a COMRESET.
        hang: Option<u8>,
        /// The link never comes back after a COMRESET.
        dead_link: bool,
        /// After a reset, DET stays 1 (detected, no communication) this many ticks; with
        /// `u64::MAX`, for ever.
        link_after: u64,
        link_from: Option<u64>,
        /// (opcode, lba, count, PRDT entries) of every command, in order.
        log: Vec<(u8, u64, u16, usize)>,
        flushes: u32,
        starts: u32,
        comresets: u32,
    }

    #[derive(Default)]
    struct Device {
        regs: usize, // address of the leaked register block
        mem: BTreeMap<u64, Vec<u8>>,
        next_addr: u64,
        clock: u64,
        /// GHC.HR never clears.
        stuck_reset: bool,
        /// PI is write-once (set by firmware) and the reset clears it.
        write_once_pi: bool,
        ports: Vec<FakePort>,
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

        fn preg(&self, p: usize, off: usize) -> u32 {
            self.reg(port_reg(p as u32, off))
        }

        fn set_preg(&self, p: usize, off: usize, v: u32) {
            self.set_reg(port_reg(p as u32, off), v);
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

        fn raise(&mut self, p: usize, is: u32) {
            self.ports[p].is |= is;
            self.set_preg(p, px::IS, self.ports[p].is);
        }

        fn reset_port(&mut self, p: usize) {
            let present = self.ports[p].disk.is_some();
            let slow = present && self.ports[p].link_after > 0;
            self.set_preg(
                p,
                px::SSTS,
                if !present {
                    0
                } else if slow {
                    1
                } else {
                    0x113
                },
            );
            if slow {
                self.ports[p].link_from = Some(self.clock);
            }
            self.set_preg(p, px::SIG, u32::MAX);
            self.set_preg(p, px::TFD, 0x7f);
            self.ports[p].d2h_sent = false;
        }

        fn step(&mut self) {
            let ghc = self.reg(reg::GHC);
            if ghc & spec::GHC_HR != 0 {
                if self.stuck_reset {
                    return;
                }
                for p in 0..self.ports.len() {
                    for off in [px::CMD, px::IS, px::SERR, px::CI, px::SCTL] {
                        self.set_preg(p, off, 0);
                    }
                    self.ports[p].is = 0;
                    self.ports[p].serr = 0;
                    self.reset_port(p);
                }
                self.set_reg(reg::GHC, spec::GHC_AE);
                if self.write_once_pi {
                    // Firmware's value is gone until software writes it again.
                    self.set_reg(reg::PI, 0);
                }
            }
            for p in 0..self.ports.len() {
                self.step_port(p);
            }
        }

        fn step_port(&mut self, p: usize) {
            // Write-1-to-clear: a value the driver wrote differs from the device's.
            for (off, held) in [(px::IS, self.ports[p].is), (px::SERR, self.ports[p].serr)] {
                let seen = self.preg(p, off);
                if seen != held {
                    let left = held & !seen;
                    self.set_preg(p, off, left);
                    if off == px::IS {
                        self.ports[p].is = left;
                    } else {
                        self.ports[p].serr = left;
                    }
                }
            }
            if let Some(from) = self.ports[p].link_from {
                if self.clock >= from.saturating_add(self.ports[p].link_after) {
                    self.ports[p].link_from = None;
                    self.set_preg(p, px::SSTS, 0x113);
                }
            }
            let sctl = self.preg(p, px::SCTL) & 0xf;
            if sctl == 1 && !self.ports[p].in_comreset {
                self.ports[p].in_comreset = true;
                self.ports[p].comresets += 1;
                self.set_preg(p, px::SSTS, 0);
            } else if sctl == 0 && self.ports[p].in_comreset {
                self.ports[p].in_comreset = false;
                if !self.ports[p].dead_link {
                    self.reset_port(p);
                }
            }
            let mut cmd = self.preg(p, px::CMD);
            if cmd & CMD_FRE != 0 {
                cmd |= CMD_FR;
                let up = self.preg(p, px::SSTS) & 0xf == spec::DET_PRESENT;
                if up && !self.ports[p].d2h_sent {
                    self.ports[p].d2h_sent = true;
                    self.set_preg(p, px::SIG, self.ports[p].sig);
                    self.set_preg(p, px::TFD, 0x0150);
                }
            } else {
                cmd &= !CMD_FR;
            }
            if cmd & CMD_ST != 0 {
                if cmd & CMD_CR == 0 {
                    self.ports[p].starts += 1;
                }
                cmd |= CMD_CR;
            } else {
                cmd &= !CMD_CR;
            }
            if cmd & CMD_CLO != 0 {
                cmd &= !CMD_CLO;
                let tfd = self.preg(p, px::TFD);
                self.set_preg(p, px::TFD, tfd & !(spec::ATA_BSY | spec::ATA_DRQ));
            }
            self.set_preg(p, px::CMD, cmd);
            let busy = self.preg(p, px::TFD) & spec::ATA_BSY != 0;
            if cmd & CMD_CR != 0 && self.preg(p, px::CI) & 1 != 0 && !busy {
                self.execute(p);
            }
        }

        fn execute(&mut self, p: usize) {
            let lo_hi = |d: &Self, o| u64::from(d.preg(p, o)) | (u64::from(d.preg(p, o + 4)) << 32);
            let clb = lo_hi(self, px::CLB);
            let header: [u8; 32] = self.find(clb, 32).try_into().unwrap();
            let dw =
                |b: &[u8], i: usize| u32::from_le_bytes(b[i * 4..i * 4 + 4].try_into().unwrap());
            let (dw0, ctba) = (
                dw(&header, 0),
                u64::from(dw(&header, 2)) | (u64::from(dw(&header, 3)) << 32),
            );
            assert_eq!(dw0 & 0x1f, 5, "FIS length");
            assert_eq!(ctba % 128, 0, "command table alignment");
            let prdtl = (dw0 >> 16) as usize;
            let table = self.find(ctba, 0x80 + 16 * prdtl).to_vec();
            assert_eq!(
                (table[0], table[1]),
                (0x27, 0x80),
                "H2D register FIS, command"
            );
            let opcode = table[2];
            let lba = (0..6).fold(0u64, |a, i| {
                a | u64::from(table[[4, 5, 6, 8, 9, 10][i]]) << (8 * i)
            });
            let count = u16::from_le_bytes([table[12], table[13]]);
            let prds: Vec<(u64, usize)> = (0..prdtl)
                .map(|i| {
                    let e = &table[0x80 + 16 * i..0x90 + 16 * i];
                    let addr = u64::from(dw(e, 0)) | (u64::from(dw(e, 1)) << 32);
                    (addr, (dw(e, 3) & 0x3f_ffff) as usize + 1)
                })
                .collect();
            self.ports[p].log.push((opcode, lba, count, prdtl));
            if self.ports[p].hang == Some(opcode) {
                self.set_preg(p, px::TFD, 0x80); // BSY, forever (until COMRESET)
                return;
            }
            if let Some((op, tfd)) = self.ports[p].fail {
                if op == opcode {
                    self.set_preg(p, px::TFD, tfd);
                    self.set_preg(p, px::CI, 0);
                    self.raise(p, IS_TFES);
                    return;
                }
            }
            let write = dw0 & (1 << 6) != 0;
            let port = &self.ports[p];
            let (rep, unit) = (port.reported_shift, port.addr_shift);
            match opcode {
                ata::IDENTIFY => {
                    let disk_len = port.disk.as_ref().unwrap().len() as u64;
                    let data = identify_data(
                        "FAKE SATA DISK",
                        disk_len >> unit,
                        1 << rep,
                        port.write_cache_on,
                    );
                    self.scatter(&prds, &data);
                }
                ata::READ_DMA_EXT | ata::WRITE_DMA_EXT => {
                    assert_eq!(write, opcode == ata::WRITE_DMA_EXT, "header W bit");
                    let at = (lba << unit) as usize;
                    let len = usize::from(count) << unit;
                    if prds.iter().map(|e| e.1).sum::<usize>() < len {
                        // The PRDT is too short for the data: an overflow.
                        self.set_preg(p, px::CI, 0);
                        self.raise(p, 1 << 24);
                        return;
                    }
                    if opcode == ata::READ_DMA_EXT {
                        let src = self.ports[p].disk.as_ref().unwrap()[at..at + len].to_vec();
                        self.scatter(&prds, &src);
                    } else {
                        let mut src = Vec::new();
                        for &(a, n) in &prds {
                            src.extend_from_slice(self.find(a, n));
                        }
                        self.ports[p].disk.as_mut().unwrap()[at..at + len]
                            .copy_from_slice(&src[..len]);
                    }
                }
                ata::FLUSH_CACHE_EXT => self.ports[p].flushes += 1,
                ata::SET_FEATURES if table[3] == ata::FEATURE_DISABLE_WRITE_CACHE => {
                    self.ports[p].write_cache_on = false;
                }
                _ => {
                    self.set_preg(p, px::TFD, 0x0451); // ABRT
                    self.set_preg(p, px::CI, 0);
                    self.raise(p, IS_TFES);
                    return;
                }
            }
            self.set_preg(p, px::TFD, 0x0050);
            self.set_preg(p, px::CI, 0);
            self.raise(p, 1); // DHRS
        }

        fn scatter(&mut self, prds: &[(u64, usize)], data: &[u8]) {
            let mut at = 0;
            for &(a, n) in prds {
                let n = n.min(data.len() - at);
                self.find(a, n).copy_from_slice(&data[at..at + n]);
                at += n;
            }
        }
    }

    #[derive(Clone)]
    struct Fake(StdArc<StdMutex<Device>>);

    struct FakeBuf {
        dev: StdArc<StdMutex<Device>>,
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

        fn sync_dma(&self, _list: &hypervisor::block::DmaList<'_>, _coherent: bool) {
            // No DMA lists here: this driver (and its fake) move data through buffers only.
        }

        fn ticks_per_ms(&self) -> u64 {
            TICKS_PER_MS
        }
    }

    /// A disk of `mib` MiB that reports `2^reported`-byte sectors and counts its LBAs in
    /// `2^unit`-byte ones.
    fn disk(mib: usize, reported: u32, unit: u32) -> FakePort {
        FakePort {
            disk: Some(vec![0; mib << 20]),
            sig: spec::SIG_ATA,
            reported_shift: reported,
            addr_shift: unit,
            write_cache_on: true,
            ..FakePort::default()
        }
    }

    /// A fake HBA (6 ports, 32 slots, 64-bit, CLO) with `ports` (PI has one bit each),
    /// and the driver's HBA brought up on it with `cfg`'s quirks.
    fn setup(
        ports: Vec<FakePort>,
        cfg: StorageConfig,
        stuck: bool,
    ) -> (Fake, Result<Hba<Fake>, InitError>) {
        let regs: &'static mut [ReadWrite<u32>] = Box::leak(
            (0..REG_DWORDS)
                .map(|_| ReadWrite(0u32))
                .collect::<Vec<_>>()
                .into_boxed_slice(),
        );
        let base = NonNull::new(regs.as_mut_ptr()).unwrap();
        let n = ports.len() as u32;
        let dev = Device {
            regs: base.as_ptr() as usize,
            next_addr: 0x8000_0000,
            stuck_reset: stuck,
            ports,
            ..Device::default()
        };
        dev.set_reg(reg::CAP, 0xc114_1f05);
        dev.set_reg(reg::PI, (1 << n) - 1);
        let fake = Fake(StdArc::new(StdMutex::new(dev)));
        // SAFETY: `regs` is a leaked host block the driver and the fake device (volatile
        // accesses only) share, as the hardware's registers would be shared.
        let hba = unsafe {
            Hba::new(
                fake.clone(),
                base,
                REG_DWORDS * 4,
                crate::spec::plan(&cfg),
                false,
            )
        };
        (fake, hba)
    }

    fn port<R>(fake: &Fake, p: usize, f: impl FnOnce(&FakePort) -> R) -> R {
        f(&fake.0.lock().unwrap().ports[p])
    }

    fn quirked(force_512: bool, no_write_cache: bool) -> StorageConfig {
        let mut cfg = StorageConfig::default();
        let q = hypervisor::plugin::QuirkData::Storage {
            max_queue_depth: 0,
            no_write_cache,
            force_512_sectors: force_512,
            ignore_subnqn: false,
            ready_delay_ms: 0,
            dma_alias_function: None,
        };
        assert!(plugin_quirks_storage::apply(&q, &mut cfg));
        cfg
    }

    #[test]
    fn ports_are_found_identified_and_read_and_written_through_prdts() {
        let atapi = FakePort {
            sig: ATAPI_SIG,
            ..disk(1, 9, 9)
        };
        let ports = vec![disk(4, 9, 9), FakePort::default(), atapi];
        let (fake, hba) = setup(ports, StorageConfig::default(), false);
        let hba = hba.unwrap();
        assert_eq!(hba.ports().collect::<Vec<_>>(), [0, 1, 2]);
        assert!(matches!(hba.bring_up(1), Ok(None)), "empty link");
        assert_eq!(hba.bring_up(2).err(), Some(PortError::NotAta(ATAPI_SIG)));
        let mut d = hba.bring_up(0).unwrap().unwrap();
        assert_eq!(d.id.model, "FAKE SATA DISK");
        assert_eq!(d.sectors(), (4 << 20) / 512);
        // 300 KiB at sector 3: three commands (128 + 128 + 44 KiB), PRDTs of 2, 2 and 1.
        let data: Vec<u8> = (0..300 * 1024).map(|i| (i % 251) as u8).collect();
        d.write(3, &data).unwrap();
        d.flush().unwrap();
        let mut back = vec![0u8; data.len()];
        d.read(3, &mut back).unwrap();
        assert_eq!(back, data);
        port(&fake, 0, |p| {
            assert_eq!(
                &p.disk.as_ref().unwrap()[3 * 512..3 * 512 + data.len()],
                &data[..]
            );
            let writes: Vec<_> = p.log.iter().filter(|e| e.0 == ata::WRITE_DMA_EXT).collect();
            assert_eq!(
                writes,
                [
                    &(0x35, 3, 256, 2),
                    &(0x35, 259, 256, 2),
                    &(0x35, 515, 88, 1)
                ]
            );
            assert_eq!(p.flushes, 1);
            assert!(p.write_cache_on, "no quirk: the write cache stays on");
        });
        assert!(matches!(
            d.read(8192, &mut [0; 512]),
            Err(BlockError::OutOfRange { .. })
        ));
    }

    #[test]
    fn sectors_on_4k_drives_are_read_modified_written() {
        let (fake, hba) = setup(vec![disk(1, 12, 12)], StorageConfig::default(), false);
        let mut d = hba.unwrap().bring_up(0).unwrap().unwrap();
        assert_eq!(d.lba_shift(), 12);
        fake.0.lock().unwrap().ports[0].disk.as_mut().unwrap()[..8192].fill(0xee);
        d.write(3, &[1u8; 1024]).unwrap();
        port(&fake, 0, |p| {
            let disk = p.disk.as_ref().unwrap();
            assert!(
                disk[..3 * 512].iter().all(|&b| b == 0xee),
                "sectors before kept"
            );
            assert!(disk[3 * 512..5 * 512].iter().all(|&b| b == 1));
            assert!(
                disk[5 * 512..8192].iter().all(|&b| b == 0xee),
                "sectors after kept"
            );
            let ops: Vec<u8> = p.log.iter().map(|e| e.0).collect();
            assert_eq!(ops, [ata::IDENTIFY, ata::READ_DMA_EXT, ata::WRITE_DMA_EXT]);
        });
    }

    #[test]
    fn quirks_force_512_byte_sectors_and_turn_the_write_cache_off() {
        // A drive that reports 4 KiB logical sectors but counts its LBAs in 512 bytes.
        let (plain, hba) = setup(vec![disk(1, 12, 9)], StorageConfig::default(), false);
        let mut d = hba.unwrap().bring_up(0).unwrap().unwrap();
        d.write(8, &[7u8; 512]).unwrap();
        port(&plain, 0, |p| {
            // Believed: sector 8 is in 4 KiB block 1, which this drive puts at byte 512.
            assert_eq!(p.disk.as_ref().unwrap()[4096], 0);
            assert_eq!(p.disk.as_ref().unwrap()[512], 7);
            assert!(p.write_cache_on);
        });
        let (fixed, hba) = setup(vec![disk(1, 12, 9)], quirked(true, true), false);
        let mut d = hba.unwrap().bring_up(0).unwrap().unwrap();
        assert_eq!(d.lba_shift(), 9);
        assert!(!d.id.write_cache_on);
        d.write(8, &[7u8; 512]).unwrap();
        port(&fixed, 0, |p| {
            assert_eq!(p.disk.as_ref().unwrap()[4096], 7);
            assert_eq!(p.disk.as_ref().unwrap()[512], 0);
            assert!(!p.write_cache_on, "SET FEATURES 0x82 sent");
            let ops: Vec<u8> = p.log.iter().map(|e| e.0).collect();
            // No read-modify-write: one sector is one write.
            assert_eq!(ops, [ata::IDENTIFY, ata::SET_FEATURES, ata::WRITE_DMA_EXT]);
        });
    }

    #[test]
    fn a_failed_command_is_a_block_error_and_the_port_recovers() {
        let (fake, hba) = setup(vec![disk(1, 9, 9)], StorageConfig::default(), false);
        let mut d = hba.unwrap().bring_up(0).unwrap().unwrap();
        let starts = port(&fake, 0, |p| p.starts);
        // ABRT in the error register, DRDY|DSC|ERR in the status.
        fake.0.lock().unwrap().ports[0].fail = Some((ata::WRITE_DMA_EXT, 0x0451));
        assert_eq!(d.write(0, &[1; 512]), Err(BlockError::Device(0x0451)));
        d.read(0, &mut [0; 512])
            .expect("the port works after the error");
        assert_eq!(
            port(&fake, 0, |p| p.starts),
            starts + 1,
            "port stopped and started"
        );
        assert_eq!(
            port(&fake, 0, |p| p.comresets),
            0,
            "drive not busy: no COMRESET"
        );
        fake.0.lock().unwrap().ports[0].fail = None;
        d.write(0, &[1; 512]).unwrap();
        assert_eq!(port(&fake, 0, |p| p.disk.as_ref().unwrap()[0]), 1);
    }

    #[test]
    fn a_hung_drive_times_out_gets_a_comreset_and_works_again() {
        let (fake, hba) = setup(vec![disk(1, 9, 9)], StorageConfig::default(), false);
        let mut d = hba.unwrap().bring_up(0).unwrap().unwrap();
        fake.0.lock().unwrap().ports[0].hang = Some(ata::FLUSH_CACHE_EXT);
        assert_eq!(d.flush(), Err(BlockError::Device(TIMEOUT)));
        assert_eq!(port(&fake, 0, |p| p.comresets), 1);
        fake.0.lock().unwrap().ports[0].hang = None;
        d.flush().expect("the port works after the COMRESET");
        // A link that does not come back: the port is retired, requests fail fast.
        {
            let mut dev = fake.0.lock().unwrap();
            dev.ports[0].hang = Some(ata::READ_DMA_EXT);
            dev.ports[0].dead_link = true;
        }
        assert_eq!(d.read(0, &mut [0; 512]), Err(BlockError::Device(TIMEOUT)));
        let issued = port(&fake, 0, |p| p.log.len());
        assert_eq!(d.read(0, &mut [0; 512]), Err(BlockError::Device(DEAD)));
        assert_eq!(
            port(&fake, 0, |p| p.log.len()),
            issued,
            "nothing issued to a dead port"
        );
    }

    #[test]
    fn write_once_ports_implemented_survive_the_reset() {
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
            write_once_pi: true,
            ports: vec![disk(1, 9, 9)],
            ..Device::default()
        };
        dev.set_reg(reg::CAP, 0xc114_1f05);
        dev.set_reg(reg::PI, 1);
        let fake = Fake(StdArc::new(StdMutex::new(dev)));
        // SAFETY: a leaked host block shared with the fake device (volatile accesses).
        let hba = unsafe {
            Hba::new(
                fake,
                base,
                REG_DWORDS * 4,
                crate::spec::plan(&StorageConfig::default()),
                false,
            )
        }
        .unwrap();
        assert_eq!(hba.implemented, 1);
        assert!(hba.bring_up(0).unwrap().is_some());
    }

    #[test]
    fn a_slow_link_is_waited_for_and_one_that_never_comes_up_is_reported() {
        let slow = FakePort {
            link_after: 300 * TICKS_PER_MS,
            ..disk(1, 9, 9)
        };
        let never = FakePort {
            link_after: u64::MAX,
            ..disk(1, 9, 9)
        };
        let (_, hba) = setup(vec![slow, never], StorageConfig::default(), false);
        let hba = hba.unwrap();
        assert!(
            hba.bring_up(0).unwrap().is_some(),
            "DET 1 for 300 ms, then 3"
        );
        assert_eq!(hba.bring_up(1).err(), Some(PortError::NoLink));
    }

    #[test]
    fn an_hba_that_never_leaves_reset_fails_bring_up() {
        let (_, hba) = setup(vec![disk(1, 9, 9)], StorageConfig::default(), true);
        assert_eq!(hba.err(), Some(InitError::ResetTimeout));
    }
}
