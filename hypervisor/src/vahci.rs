//! The AHCI (SATA) controller a guest sees: an AHCI 1.3.1 HBA with one port and an ATA
//! disk on it, as a [`PciFunction`].
//!
//! It shows itself as Intel's ICH9 AHCI controller (8086:2922, class 01_06_01, the
//! device QEMU's `ich9-ahci` models), so that Linux's `ahci` driver (and any other AHCI
//! driver) binds to it by ID or by class. Its registers are in BAR 5 (ABAR, 4 KiB,
//! 32-bit memory): generic host control at 0x00, port 0 at 0x100.
//!
//! Commands run when the guest writes PxCI (while PxCMD.ST is set): the port reads the
//! command header and command table from guest memory, the disk executes the ATA command
//! against its [`BlockDevice`], data moves through the PRD table in order, and the ending
//! FIS lands in the received-FIS area (when PxCMD.FRE is set) before the PxCI bit clears
//! and the interrupt is raised (INTx, or the MSI of the function's MSI capability).
//! Everything completes inside the guest's PxCI write. Commands: IDENTIFY DEVICE, READ /
//! WRITE DMA (28-bit and EXT), READ / WRITE FPDMA QUEUED (NCQ, 32 tags, completed with a
//! Set Device Bits FIS), READ VERIFY, FLUSH CACHE (EXT), READ LOG EXT (directory, NCQ
//! error log), SET FEATURES (transfer mode, write cache), SET MULTIPLE, the power
//! commands, EXECUTE DEVICE DIAGNOSTIC; anything else ends with ABRT.
//!
//! A command moves at most what ATA can ask for (65536 sectors, 32 MiB), in 64 KiB steps
//! through one bounce buffer, and walks its PRD table only as far as its data reaches. The
//! data direction comes from the ATA command, not from the header's W bit. PRD byte
//! counts are taken as written (DBC + 1), odd or even, as QEMU does.
//!
//! Failures are the guest's, never the hypervisor's: a command list, FIS area or PRD
//! outside the VM's RAM is a host bus fatal error (PxIS.HBFS, PxSERR.ERR.E), a PRD table
//! too short for the data an overflow (PxIS.OFS), a command FIS that is not a Register
//! H2D FIS an interface fatal error (PxIS.IFS); ATA errors (bad LBA, failed media, an
//! unknown command) end the command with ERR in the status and PxIS.TFES. After any of
//! these the port stops processing commands, with the failed slot's PxCI bit still set
//! and PxCMD.CCS naming it, until software clears PxCMD.ST (AHCI 6.2.2).
//!
//! A read-only disk: ATA has no write-protect indication for a fixed (non-removable)
//! disk, so IDENTIFY cannot say so; every write, queued or not, ends with ABRT before any
//! data is fetched from the guest.
//!
//! State is plain data (no references into guest memory), so it can be saved.
//!
//! ```
//! use hypervisor::block::MemDisk;
//! use hypervisor::pci::PciFunction;
//! use hypervisor::vahci::{VAhci, VAhciQuirks};
//! use alloc_crate::boxed::Box;
//! # extern crate alloc as alloc_crate;
//!
//! let ahci = VAhci::new(Box::new(MemDisk::new(2048)), "VM0-DISK0", VAhciQuirks::default());
//! assert_eq!((ahci.ids().vendor, ahci.ids().device, ahci.ids().class), (0x8086, 0x2922, 0x01_06_01));
//! assert_eq!(ahci.bars()[0].index, 5);
//! ```
#![deny(unsafe_code)]

mod ata;
mod dma;
mod regs;
#[cfg(test)]
mod tests;

use crate::block::BlockDevice;
use crate::mmio::AccessSize;
use crate::pci::{BarSpec, PciFunction, PciIds, PciIrq};
use crate::vm::devices::IoCtx;
use alloc::boxed::Box;
use ata::{cmd, Completion, Drive, EndFis, Fault, TaskFile};
use dma::{CommandHeader, Dma, Prdt};
use regs::*;

/// Storage quirks that change what an AHCI guest sees: `max_queue_depth` is the largest
/// NCQ queue depth shown (0: no limit; at most 32 anyway), `no_write_cache` shows no
/// volatile write cache (IDENTIFY does not list the feature, SET FEATURES cannot enable it,
/// and every write is stable before it completes). Sectors are always 512 bytes here, so
/// `force_512_sectors` needs nothing.
pub type VAhciQuirks = crate::block::GuestDiskQuirks;

/// Intel's vendor ID.
pub const VENDOR_INTEL: u16 = 0x8086;
/// ICH9 AHCI controller (6 ports on hardware; one here).
pub const DEVICE_ICH9_AHCI: u16 = 0x2922;
/// Mass storage, SATA, AHCI 1.0 interface.
pub const CLASS_AHCI: u32 = 0x01_06_01;
/// ABAR: BAR 5.
pub const ABAR: u8 = 5;
/// ABAR size: generic host control and port 0 fit in one page.
pub const ABAR_SIZE: u64 = 0x1000;

const BARS: [BarSpec; 1] = [BarSpec {
    index: ABAR,
    size: ABAR_SIZE,
    is_64bit: false,
    prefetchable: false,
}];

/// Native command queuing is offered (CAP.SNCQ, IDENTIFY words 75-76).
const NCQ: bool = true;

/// Start of the config space the function owns.
const CFG_BASE: u16 = 0x40;
/// Config bytes kept (0x40..0x100).
const CFG_LEN: usize = 0xc0;
/// The MSI capability (ICH9 has it at 0x80 too).
const MSI_CAP: u16 = 0x80;
/// ICH9's Port Control and Status register (PCS), which Linux's `ahci` sets port
/// enable bits in for Intel controllers.
const PCS: u16 = 0x92;

/// Port 0's registers and what the port is doing.
#[derive(Clone, Debug, Default)]
struct Port {
    clb: u64,
    fb: u64,
    is: u32,
    ie: u32,
    /// PxCMD bits kept as written: ST, FRE and [`CMD_RW`].
    cmd: u32,
    ccs: u32,
    tfd: u32,
    sig: u32,
    sctl: u32,
    serr: u32,
    sact: u32,
    ci: u32,
    /// Communication with the device is established (PxSSTS.DET = 3).
    link_up: bool,
    /// The slot to look at first for the next command.
    next_slot: u32,
    /// A fatal or task file error stopped command processing.
    halted: bool,
    /// A software reset (SRST in a control FIS) is asserted.
    srst: bool,
}

/// The virtual AHCI HBA with one SATA disk.
pub struct VAhci {
    disk: Box<dyn BlockDevice>,
    drive: Drive,
    ghc_ie: bool,
    port: Port,
    cfg: [u8; CFG_LEN],
    /// The INTx level last driven.
    intx: bool,
}

impl VAhci {
    /// The HBA with `disk` on port 0, in its power-on state. `serial` is the disk's
    /// serial number as IDENTIFY DEVICE reports it (20 ASCII characters are kept; make
    /// it unique per disk, as guests name disks by it); `quirks` what a board's storage
    /// quirks change.
    pub fn new(disk: Box<dyn BlockDevice>, serial: &str, quirks: VAhciQuirks) -> Self {
        let mut s = Self {
            disk,
            drive: Drive::new(serial, quirks),
            ghc_ie: false,
            port: Port::default(),
            cfg: [0; CFG_LEN],
            intx: false,
        };
        s.power_on();
        s
    }

    fn power_on(&mut self) {
        self.ghc_ie = false;
        self.port = Port::default();
        self.cfg = [0; CFG_LEN];
        let msi = usize::from(MSI_CAP - CFG_BASE);
        self.cfg[msi] = 0x05;
        // Message control: 64-bit addresses, one vector.
        self.cfg[msi + 2] = 0x80;
        // PCS: port 0 present (bit 8, read-only).
        self.cfg[usize::from(PCS - CFG_BASE) + 1] = 0x01;
        self.intx = false;
        self.comreset();
        self.link_up(None);
    }

    /// The port's interrupt status, with PCS and PRCS mirroring PxSERR.
    fn port_is(&self) -> u32 {
        let mut is = self.port.is;
        if self.port.serr & SERR_DIAG_X != 0 {
            is |= IS_PCS;
        }
        if self.port.serr & SERR_DIAG_N != 0 {
            is |= IS_PRCS;
        }
        is
    }

    /// IS: port 0 has an enabled interrupt pending.
    fn host_is(&self) -> u32 {
        u32::from(self.port_is() & self.port.ie != 0)
    }

    fn cap(&self) -> u32 {
        let ncq = if NCQ { CAP_SNCQ } else { 0 };
        ncq | CAP_S64A | CAP_SCLO | CAP_ISS_GEN3 | CAP_SAM | (SLOTS - 1) << CAP_NCS_SHIFT
    }

    fn ssts(&self) -> u32 {
        if self.port.link_up {
            let spd = match (self.port.sctl >> 4) & 0xf {
                0 => 3,
                n => n.min(3),
            };
            // DET 3 (present, communicating), the speed, IPM 1 (active).
            3 | spd << 4 | 1 << 8
        } else if self.port.sctl & 0xf == 4 {
            4
        } else {
            0
        }
    }

    fn read_reg(&self, off: u64) -> u32 {
        let p = &self.port;
        match off {
            CAP => self.cap(),
            GHC => GHC_AE | if self.ghc_ie { GHC_IE } else { 0 },
            IS => self.host_is(),
            PI => 1,
            VS => VERSION,
            o if (PORT0..PORT0 + PORT_SIZE).contains(&o) => match o - PORT0 {
                P_CLB => p.clb as u32,
                P_CLBU => (p.clb >> 32) as u32,
                P_FB => p.fb as u32,
                P_FBU => (p.fb >> 32) as u32,
                P_IS => self.port_is(),
                P_IE => p.ie,
                P_CMD => {
                    let mut v = p.cmd | CMD_SUD | CMD_POD | p.ccs << CMD_CCS_SHIFT;
                    if p.cmd & CMD_ST != 0 {
                        v |= CMD_CR;
                    }
                    if p.cmd & CMD_FRE != 0 {
                        v |= CMD_FR;
                    }
                    v
                }
                P_TFD => p.tfd,
                P_SIG => p.sig,
                P_SSTS => self.ssts(),
                P_SCTL => p.sctl,
                P_SERR => p.serr,
                P_SACT => p.sact,
                P_CI => p.ci,
                _ => 0,
            },
            // CAP2 (no extended capabilities), BOHC, CCC, EM: zero.
            _ => 0,
        }
    }

    /// A write of the bytes of `val` selected by `mask` to the register at `off`.
    /// Returns the PxIS bits it raised.
    fn write_reg(&mut self, dma: &Dma<'_>, off: u64, val: u32, mask: u32) -> u32 {
        let merge = |old: u32| (old & !mask) | (val & mask);
        let set = val & mask;
        match off {
            GHC => {
                if set & GHC_HR != 0 {
                    self.hba_reset();
                } else if mask & 0xff != 0 {
                    self.ghc_ie = val & GHC_IE != 0;
                }
                0
            }
            o if (PORT0..PORT0 + PORT_SIZE).contains(&o) => {
                self.write_port(dma, o - PORT0, set, merge)
            }
            // IS is computed from the port (clearing PxIS clears it); CAP, PI, VS, CAP2
            // are read-only.
            _ => 0,
        }
    }

    fn write_port(&mut self, dma: &Dma<'_>, reg: u64, set: u32, merge: impl Fn(u32) -> u32) -> u32 {
        let p = &mut self.port;
        match reg {
            P_CLB => p.clb = (p.clb & !0xffff_ffff) | u64::from(merge(p.clb as u32) & !0x3ff),
            P_CLBU => p.clb = u64::from(merge((p.clb >> 32) as u32)) << 32 | (p.clb & 0xffff_ffff),
            P_FB => p.fb = (p.fb & !0xffff_ffff) | u64::from(merge(p.fb as u32) & !0xff),
            P_FBU => p.fb = u64::from(merge((p.fb >> 32) as u32)) << 32 | (p.fb & 0xffff_ffff),
            P_IS => p.is &= !(set & IS_W1C),
            P_IE => p.ie = merge(p.ie) & IS_MASK,
            P_CMD => self.write_cmd(merge(self.read_reg(PORT0 + P_CMD))),
            P_SCTL => {
                let v = merge(p.sctl) & 0xfff;
                return self.write_sctl(dma, v);
            }
            P_SERR => p.serr &= !set,
            P_SACT if p.cmd & CMD_ST != 0 => p.sact |= set,
            // A command issued while ST is clear is ignored (AHCI 3.3.14).
            P_CI if p.cmd & CMD_ST != 0 => {
                p.ci |= set;
                return self.run_commands(dma);
            }
            _ => {}
        }
        0
    }

    fn write_cmd(&mut self, v: u32) {
        let p = &mut self.port;
        let was_started = p.cmd & CMD_ST != 0;
        p.cmd = v & (CMD_ST | CMD_FRE | CMD_RW);
        if v & CMD_CLO != 0 {
            p.tfd &= !u32::from(ATA_BSY | ATA_DRQ);
        }
        match (was_started, p.cmd & CMD_ST != 0) {
            (false, true) => {
                p.next_slot = 0;
                p.halted = false;
            }
            (true, false) => {
                p.ci = 0;
                p.sact = 0;
                p.ccs = 0;
                p.halted = false;
            }
            _ => {}
        }
    }

    fn write_sctl(&mut self, dma: &Dma<'_>, v: u32) -> u32 {
        self.port.sctl = v;
        match v & 0xf {
            1 | 4 => {
                self.comreset();
                0
            }
            // Commands issued while the link was down go out once it is up.
            0 if !self.port.link_up => self.link_up(Some(dma)) | self.run_commands(dma),
            _ => 0,
        }
    }

    /// The link goes down (COMRESET asserted, or the PHY offline).
    fn comreset(&mut self) {
        let p = &mut self.port;
        p.link_up = false;
        p.tfd = 0x7f;
        p.sig = 0xffff_ffff;
        p.srst = false;
    }

    /// The link comes up: the device resets and sends its signature in a D2H Register
    /// FIS (posted when FIS receive is on and `dma` is given). Returns PxIS bits raised.
    fn link_up(&mut self, dma: Option<&Dma<'_>>) -> u32 {
        self.port.link_up = true;
        self.port.serr |= SERR_DIAG_X | SERR_DIAG_N;
        self.drive.reset();
        let raised = match dma {
            Some(dma) => self.signature(dma).unwrap_or_else(|f| self.fault(f)),
            None => {
                self.port.tfd = 0x0150;
                self.port.sig = SIG_ATA;
                0
            }
        };
        raised | IS_PCS | IS_PRCS
    }

    /// The device's signature FIS after a reset (no interrupt: the I bit is clear).
    fn signature(&mut self, dma: &Dma<'_>) -> Result<u32, Fault> {
        self.port.sig = SIG_ATA;
        let c = Completion {
            status: 0x50,
            error: 0x01,
            lba: 1,
            count: 1,
            device: 0,
            fis: EndFis::D2h,
        };
        self.post(dma, &c, false)
    }

    fn hba_reset(&mut self) {
        let (clb, fb) = (self.port.clb, self.port.fb);
        self.ghc_ie = false;
        self.port = Port {
            clb,
            fb,
            ..Port::default()
        };
        self.comreset();
        self.link_up(None);
    }

    /// Runs the issued commands; returns the PxIS bits raised.
    fn run_commands(&mut self, dma: &Dma<'_>) -> u32 {
        let mut raised = 0;
        while !self.port.halted
            && self.port.link_up
            && self.port.cmd & CMD_ST != 0
            && self.port.ci != 0
        {
            let first = self.port.next_slot;
            let Some(slot) = (0..SLOTS)
                .map(|i| (first + i) % SLOTS)
                .find(|s| self.port.ci & (1 << s) != 0)
            else {
                break;
            };
            self.port.ccs = slot;
            self.port.next_slot = (slot + 1) % SLOTS;
            match self.run_slot(dma, slot) {
                Ok(bits) => {
                    raised |= bits;
                    if bits & IS_TFES != 0 {
                        self.port.halted = true;
                    } else {
                        self.port.ci &= !(1 << slot);
                    }
                }
                Err(f) => raised |= self.fault(f),
            }
        }
        raised
    }

    /// Records an HBA fault: the port stops. Returns the PxIS bits raised.
    fn fault(&mut self, f: Fault) -> u32 {
        let (is, serr) = match f {
            Fault::HostBus => (IS_HBFS, SERR_INTERNAL),
            Fault::Overflow => (IS_OFS, 0),
            Fault::Interface => (IS_IFS, SERR_PROTOCOL),
        };
        self.port.is |= is;
        self.port.serr |= serr;
        self.port.halted = true;
        is
    }

    /// Executes the command in `slot`; the PxIS bits its completion raised.
    fn run_slot(&mut self, dma: &Dma<'_>, slot: u32) -> Result<u32, Fault> {
        let clb = self.port.clb;
        let hdr = CommandHeader::read(dma, clb, slot)?;
        // A Register H2D FIS is 5 DWORDs; the command table holds at most 16.
        if !(5..=16).contains(&hdr.cfl) {
            return Err(Fault::Interface);
        }
        let mut fis = [0u8; 20];
        dma.read(hdr.ctba, &mut fis)?;
        if fis[0] != FIS_H2D {
            return Err(Fault::Interface);
        }
        if fis[1] & 0x80 == 0 {
            return self.control(dma, &fis, &hdr);
        }
        let tf = TaskFile::from_fis(&fis);
        if matches!(tf.command, cmd::READ_FPDMA | cmd::WRITE_FPDMA) {
            return self.run_queued(dma, slot, &hdr, &tf);
        }
        let mut prdt = Prdt::new(dma, hdr.ctba, hdr.prdtl);
        let done = self.drive.execute(&mut *self.disk, &tf, NCQ, &mut prdt);
        let (bytes, dps) = (prdt.bytes, prdt.descriptor_interrupt);
        let done = done?;
        // At most 65536 sectors (32 MiB) move per command: PRDBC always fits.
        CommandHeader::write_prdbc(dma, clb, slot, bytes as u32)?;
        let mut raised = self.post(dma, &done, true)?;
        if dps {
            self.port.is |= IS_DPS;
            raised |= IS_DPS;
        }
        Ok(raised)
    }

    /// A queued command (READ/WRITE FPDMA QUEUED): the device accepts it (PxCI clears),
    /// moves its data, and completes it with a Set Device Bits FIS that clears its tag
    /// in PxSACT; on error the FIS carries ERR and no tag, and log 10h tells which.
    fn run_queued(
        &mut self,
        dma: &Dma<'_>,
        slot: u32,
        hdr: &CommandHeader,
        tf: &TaskFile,
    ) -> Result<u32, Fault> {
        // Tag in count 7:3, sector count in features (0: 65536), FUA in device bit 7.
        let tag = ((tf.count >> 3) & 0x1f) as u8;
        let n = match tf.features {
            0 => 65536,
            f => u64::from(f),
        };
        let fua = tf.device & 0x80 != 0;
        let write = tf.command == cmd::WRITE_FPDMA;
        let mut prdt = Prdt::new(dma, hdr.ctba, hdr.prdtl);
        let done = self
            .drive
            .queued(&mut *self.disk, tag, write, tf.lba, n, fua, &mut prdt);
        let (bytes, dps) = (prdt.bytes, prdt.descriptor_interrupt);
        let done = done?;
        CommandHeader::write_prdbc(dma, self.port.clb, slot, bytes as u32)?;
        self.port.ci &= !(1 << slot);
        let completed = if done.failed() { 0 } else { 1u32 << tag };
        let mut raised = self.post_sdb(dma, done.status, done.error, completed)?;
        if dps {
            raised |= IS_DPS;
        }
        self.port.is |= raised;
        Ok(raised)
    }

    /// Posts a Set Device Bits FIS (interrupt bit set): status bits 6:4 and 2:0 and the
    /// error go to PxTFD, `sactive`'s bits leave PxSACT. Returns the PxIS bits.
    fn post_sdb(
        &mut self,
        dma: &Dma<'_>,
        status: u8,
        error: u8,
        sactive: u32,
    ) -> Result<u32, Fault> {
        let status = status & 0x77;
        self.port.tfd = u32::from(error) << 8 | (self.port.tfd & 0x88) | u32::from(status);
        let s = sactive.to_le_bytes();
        let fis = [FIS_SDB, 0x40, status, error, s[0], s[1], s[2], s[3]];
        if self.port.cmd & CMD_FRE != 0 {
            let at = self
                .port
                .fb
                .checked_add(RFIS_SDBFIS)
                .ok_or(Fault::HostBus)?;
            dma.write(at, &fis)?;
        }
        self.port.sact &= !sactive;
        Ok(IS_SDBS | if status & ATA_ERR != 0 { IS_TFES } else { 0 })
    }

    /// A control FIS (C bit clear): software reset. SRST set holds the device in reset
    /// (BSY, unless the header asks to clear it on delivery); SRST cleared ends it with
    /// the signature FIS.
    fn control(
        &mut self,
        dma: &Dma<'_>,
        fis: &[u8; 20],
        hdr: &CommandHeader,
    ) -> Result<u32, Fault> {
        if fis[15] & 0x04 != 0 {
            self.port.srst = true;
            self.port.tfd = if hdr.clear_busy {
                0
            } else {
                u32::from(ATA_BSY)
            };
        } else if self.port.srst {
            self.port.srst = false;
            self.drive.reset();
            return self.signature(dma);
        }
        Ok(0)
    }

    /// Ends a command (or a reset) with its FIS: PxTFD takes its status and error, the
    /// FIS goes to the received-FIS area if FIS receive is on. Returns the PxIS bits.
    fn post(&mut self, dma: &Dma<'_>, c: &Completion, interrupt: bool) -> Result<u32, Fault> {
        self.port.tfd = u32::from(c.error) << 8 | u32::from(c.status);
        let l = c.lba.to_le_bytes();
        let [count_lo, count_hi] = c.count.to_le_bytes();
        let i = if interrupt { 0x40 } else { 0 };
        let (offset, fis, mut bits): (u64, [u8; 20], u32) = match c.fis {
            EndFis::D2h => (
                RFIS_RFIS,
                [
                    FIS_D2H, i, c.status, c.error, l[0], l[1], l[2], c.device, l[3], l[4], l[5], 0,
                    count_lo, count_hi, 0, 0, 0, 0, 0, 0,
                ],
                IS_DHRS,
            ),
            // PIO data-in: the status at the start of the data (DRQ) and at its end
            // (E_Status), and the 512 bytes of the one DRQ block.
            EndFis::PioIn => (
                RFIS_PSFIS,
                [
                    FIS_PIO_SETUP,
                    0x20 | i,
                    c.status | ATA_DRQ,
                    c.error,
                    l[0],
                    l[1],
                    l[2],
                    c.device,
                    l[3],
                    l[4],
                    l[5],
                    0,
                    count_lo,
                    count_hi,
                    0,
                    c.status,
                    0x00,
                    0x02,
                    0,
                    0,
                ],
                IS_PSS,
            ),
        };
        if !interrupt {
            bits = 0;
        }
        if c.failed() {
            bits |= IS_TFES;
        }
        if self.port.cmd & CMD_FRE != 0 {
            let at = self.port.fb.checked_add(offset).ok_or(Fault::HostBus)?;
            dma.write(at, &fis)?;
        }
        self.port.is |= bits;
        Ok(bits)
    }

    fn msi_enabled(&self) -> bool {
        self.cfg[usize::from(MSI_CAP - CFG_BASE) + 2] & 1 != 0
    }

    fn cfg_u32(&self, off: u16) -> u32 {
        let o = usize::from(off - CFG_BASE);
        u32::from_le_bytes([
            self.cfg[o],
            self.cfg[o + 1],
            self.cfg[o + 2],
            self.cfg[o + 3],
        ])
    }

    /// Drives the interrupt: INTx follows GHC.IE && IS != 0; with MSI on, a message goes
    /// out when that holds and `edge` says something may need the guest's attention
    /// (a new event, or the guest cleared status and more is pending).
    fn update_irq(&mut self, ctx: &mut IoCtx<'_>, irq: &mut dyn PciIrq, edge: bool) {
        let level = self.ghc_ie && self.host_is() != 0;
        if self.msi_enabled() {
            if self.intx {
                irq.set_intx(ctx, false);
                self.intx = false;
            }
            if level && edge {
                let m = usize::from(MSI_CAP - CFG_BASE);
                let addr = u64::from(self.cfg_u32(MSI_CAP + 4))
                    | u64::from(self.cfg_u32(MSI_CAP + 8)) << 32;
                let data = u32::from(u16::from_le_bytes([self.cfg[m + 12], self.cfg[m + 13]]));
                irq.msi(ctx, addr, data);
            }
        } else if level != self.intx {
            irq.set_intx(ctx, level);
            self.intx = level;
        }
    }
}

/// The bits of config byte `off` the guest may write.
fn cfg_write_mask(off: u16) -> u8 {
    match off {
        // MSI enable (one vector: MME stays 0).
        o if o == MSI_CAP + 2 => 0x01,
        // Message address (DWORD aligned), upper address, data.
        o if o == MSI_CAP + 4 => 0xfc,
        o if (MSI_CAP + 5..MSI_CAP + 14).contains(&o) => 0xff,
        // PCS: port 0 enable.
        PCS => 0x01,
        _ => 0,
    }
}

impl PciFunction for VAhci {
    fn ids(&self) -> PciIds {
        PciIds {
            vendor: VENDOR_INTEL,
            device: DEVICE_ICH9_AHCI,
            class: CLASS_AHCI,
            revision: 2,
            subsystem_vendor: VENDOR_INTEL,
            subsystem: DEVICE_ICH9_AHCI,
        }
    }

    fn bars(&self) -> &[BarSpec] {
        &BARS
    }

    fn capabilities_pointer(&self) -> u8 {
        MSI_CAP as u8
    }

    fn config_read(&mut self, offset: u16, size: AccessSize) -> u32 {
        let mut v = 0u32;
        for i in 0..size.bytes().min(4) as u16 {
            let Some(o) = offset.checked_add(i) else {
                break;
            };
            if (CFG_BASE..CFG_BASE + CFG_LEN as u16).contains(&o) {
                v |= u32::from(self.cfg[usize::from(o - CFG_BASE)]) << (8 * i);
            }
        }
        v
    }

    fn config_write(
        &mut self,
        ctx: &mut IoCtx<'_>,
        irq: &mut dyn PciIrq,
        offset: u16,
        size: AccessSize,
        value: u32,
    ) {
        for i in 0..size.bytes().min(4) as u16 {
            let Some(o) = offset.checked_add(i) else {
                break;
            };
            if (CFG_BASE..CFG_BASE + CFG_LEN as u16).contains(&o) {
                let m = cfg_write_mask(o);
                let b = &mut self.cfg[usize::from(o - CFG_BASE)];
                *b = (*b & !m) | ((value >> (8 * i)) as u8 & m);
            }
        }
        // MSI turned on or off: move the pending interrupt to the other mechanism.
        self.update_irq(ctx, irq, true);
    }

    fn bar_read(
        &mut self,
        _ctx: &mut IoCtx<'_>,
        _irq: &mut dyn PciIrq,
        bar: u8,
        offset: u64,
        size: AccessSize,
    ) -> u64 {
        let n = size.bytes();
        if bar != ABAR
            || !offset.is_multiple_of(n)
            || offset.checked_add(n).is_none_or(|e| e > ABAR_SIZE)
        {
            return 0;
        }
        let mut v = 0u64;
        for i in 0..n {
            let at = offset + i;
            let byte = self.read_reg(at & !3) >> (8 * (at & 3)) & 0xff;
            v |= u64::from(byte) << (8 * i);
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
        let n = size.bytes();
        if bar != ABAR
            || !offset.is_multiple_of(n)
            || offset.checked_add(n).is_none_or(|e| e > ABAR_SIZE)
        {
            return;
        }
        let dma = Dma {
            mem: ctx.mem,
            enabled: irq.bus_master(),
        };
        let mut raised = 0;
        // One register (4 bytes) at a time, low address first; narrower writes change
        // only the bytes written.
        let mut at = offset;
        while at < offset + n {
            let reg = at & !3;
            let first = at - reg;
            let len = (4 - first).min(offset + n - at);
            let shift = 8 * (at - offset);
            let bytes = (value >> shift) as u32;
            let mask = (u64::MAX >> (64 - 8 * len)) as u32;
            raised |= self.write_reg(&dma, reg, bytes << (8 * first), mask << (8 * first));
            at += len;
        }
        let touches_irq = matches!(offset & !3, GHC | IS)
            || matches!(offset & !3, o if o == PORT0 + P_IS || o == PORT0 + P_IE || o == PORT0 + P_SERR);
        self.update_irq(ctx, irq, raised & self.port.ie != 0 || touches_irq);
    }

    fn reset(&mut self) {
        self.power_on();
    }
}
