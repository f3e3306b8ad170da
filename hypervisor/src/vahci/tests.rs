//! Host tests: the HBA driven the way Linux's `ahci` driver drives it (probe, reset,
//! port start, COMRESET, IDENTIFY, I/O), and the way a hostile guest might.

use super::ata::{cmd, ERR_ABRT, ERR_IDNF, ERR_UNC};
use super::*;
use crate::block::BlockError;
use crate::block::{MemDisk, Partition, SECTOR};
use crate::plugin::QuirkData;
use crate::sync::Mutex;
use crate::types::{GuestPhysAddr, VcpuId};
use crate::vgic::{VGic, VcpuSet};
use crate::vm::fake_dma::{FakeDmaDisk, FakeDmaRam};
use crate::vm::mem::{FakeGuestMemory, GuestMemory};
use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, Ordering};

const RAM: u64 = 0x4000_0000;
const RAM_SIZE: usize = 0x40_0000;
const CLB: u64 = RAM + 0x1000;
const FB: u64 = RAM + 0x2000;
/// Command table of slot `n`: `CT + n * CT_STRIDE` (room for 248 PRDs).
const CT: u64 = RAM + 0x1_0000;
const CT_STRIDE: u64 = 0x1000;
const DATA: u64 = RAM + 0x10_0000;

// Linux's libahci.h names.
const PORT_IRQ_FREEZE: u32 = IS_HBFS | IS_IFS | IS_PCS | IS_PRCS | (1 << 4) | (1 << 23);
const PORT_IRQ_ERROR: u32 = PORT_IRQ_FREEZE | IS_TFES | (1 << 28);
const DEF_PORT_IRQ: u32 = PORT_IRQ_ERROR | IS_DPS | IS_SDBS | IS_DSS | IS_PSS | IS_DHRS;

#[derive(Default)]
struct FakeIrq {
    bus_master: bool,
    intx: bool,
    msis: Vec<(u64, u32)>,
}

impl PciIrq for FakeIrq {
    fn bus_master(&self) -> bool {
        self.bus_master
    }
    fn set_intx(&mut self, _ctx: &mut IoCtx<'_>, level: bool) {
        self.intx = level;
    }
    fn msi(&mut self, _ctx: &mut IoCtx<'_>, address: u64, data: u32) {
        self.msis.push((address, data));
    }
}

/// A guest with an AHCI controller, and the driver steps it takes.
struct Guest {
    hba: VAhci,
    mem: Arc<Mutex<FakeGuestMemory>>,
    /// The memory the HBA sees, when it is not `mem` itself.
    seen: Option<Arc<Mutex<dyn GuestMemory>>>,
    disk: Arc<Mutex<MemDisk>>,
    vgic: VGic,
    irq: FakeIrq,
}

/// One PRD: guest address, byte count, interrupt bit.
type Prd = (u64, u32, bool);

fn fis(command: u8, lba: u64, count: u16) -> [u8; 20] {
    let l = lba.to_le_bytes();
    let c = count.to_le_bytes();
    [
        FIS_H2D, 0x80, command, 0, l[0], l[1], l[2], 0x40, l[3], l[4], l[5], 0, c[0], c[1], 0, 0,
        0, 0, 0, 0,
    ]
}

/// A big disk that stores only the sectors written to it.
struct SparseDisk {
    sectors: u64,
    data: BTreeMap<u64, Vec<u8>>,
}

impl BlockDevice for SparseDisk {
    fn sectors(&self) -> u64 {
        self.sectors
    }
    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        crate::block::check(lba, (buf.len() / SECTOR) as u64, self.sectors)?;
        for (i, s) in buf.chunks_mut(SECTOR).enumerate() {
            match self.data.get(&(lba + i as u64)) {
                Some(d) => s.copy_from_slice(d),
                None => s.fill(0),
            }
        }
        Ok(())
    }
    fn write(&mut self, lba: u64, data: &[u8]) -> Result<(), BlockError> {
        crate::block::check(lba, (data.len() / SECTOR) as u64, self.sectors)?;
        for (i, s) in data.chunks(SECTOR).enumerate() {
            self.data.insert(lba + i as u64, s.to_vec());
        }
        Ok(())
    }
    fn flush(&mut self) -> Result<(), BlockError> {
        Ok(())
    }
}

impl Guest {
    /// A guest whose disk is a [`SparseDisk`] of `sectors` (`self.disk` is unused).
    fn sparse(sectors: u64) -> Self {
        let mut g = Self::new(1);
        g.hba = VAhci::new(
            Box::new(SparseDisk {
                sectors,
                data: BTreeMap::new(),
            }),
            "SN-0001",
            VAhciQuirks::default(),
        );
        g
    }

    fn new(sectors: u64) -> Self {
        Self::with(sectors, false, VAhciQuirks::default())
    }

    /// A guest whose RAM hands out DMA lists and whose disk (`self.disk`, behind a
    /// partition) takes them if `take`; the count of lists taken.
    fn with_dma(sectors: u64, take: bool) -> (Self, Arc<AtomicU32>) {
        let mut g = Self::new(sectors);
        let lists = Arc::new(AtomicU32::new(0));
        let dma: crate::block::SharedDisk = Arc::new(Mutex::new(FakeDmaDisk {
            disk: g.disk.clone(),
            ram: g.mem.clone(),
            take,
            lists: lists.clone(),
        }));
        let part = Partition::new(dma, 0, sectors, false).unwrap();
        g.hba = VAhci::new(Box::new(part), "SN-0001", VAhciQuirks::default());
        g.seen = Some(Arc::new(Mutex::new(FakeDmaRam::new(
            g.mem.clone(),
            GuestPhysAddr(RAM),
            RAM_SIZE as u64,
        ))));
        (g, lists)
    }

    fn with(sectors: u64, read_only: bool, quirks: VAhciQuirks) -> Self {
        let disk = Arc::new(Mutex::new(MemDisk::new(sectors)));
        let part = Partition::new(disk.clone(), 0, sectors, read_only).unwrap();
        Self {
            hba: VAhci::new(Box::new(part), "SN-0001", quirks),
            mem: Arc::new(Mutex::new(FakeGuestMemory::new(
                GuestPhysAddr(RAM),
                RAM_SIZE,
            ))),
            seen: None,
            disk,
            vgic: VGic::new(1, 32).unwrap(),
            irq: FakeIrq {
                bus_master: true,
                ..FakeIrq::default()
            },
        }
    }

    fn with_ctx<R>(&mut self, f: impl FnOnce(&mut VAhci, &mut IoCtx<'_>, &mut FakeIrq) -> R) -> R {
        let mem: &Mutex<dyn GuestMemory> = match &self.seen {
            Some(m) => &**m,
            None => &*self.mem,
        };
        let mut ctx = IoCtx {
            vcpu: VcpuId(0),
            vgic: &mut self.vgic,
            kicks: VcpuSet::EMPTY,
            mem,
        };
        f(&mut self.hba, &mut ctx, &mut self.irq)
    }

    fn rd(&mut self, off: u64) -> u32 {
        self.with_ctx(|h, c, i| h.bar_read(c, i, ABAR, off, AccessSize::Word)) as u32
    }

    fn wr(&mut self, off: u64, v: u32) {
        self.with_ctx(|h, c, i| h.bar_write(c, i, ABAR, off, AccessSize::Word, u64::from(v)));
    }

    fn prd(&mut self, reg: u64) -> u32 {
        self.rd(PORT0 + reg)
    }

    fn pwr(&mut self, reg: u64, v: u32) {
        self.wr(PORT0 + reg, v);
    }

    fn cfg_wr(&mut self, off: u16, size: AccessSize, v: u32) {
        self.with_ctx(|h, c, i| h.config_write(c, i, off, size, v));
    }

    fn mem_write(&self, addr: u64, data: &[u8]) {
        self.mem.lock().write(GuestPhysAddr(addr), data).unwrap();
    }

    fn mem_read(&self, addr: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        self.mem.lock().read(GuestPhysAddr(addr), &mut v).unwrap();
        v
    }

    /// Waits (as Linux's `ata_wait_register` does) for `reg & mask` to leave `val`.
    fn wait_not(&mut self, off: u64, mask: u32, val: u32) {
        for _ in 0..10 {
            if self.rd(off) & mask != val {
                return;
            }
        }
        panic!("register {off:#x} stuck at {val:#x} under mask {mask:#x}");
    }

    /// `ahci_stop_engine` + `ahci_stop_fis_rx`.
    fn deinit_port(&mut self) {
        let cmd = self.prd(P_CMD);
        if cmd & (CMD_ST | CMD_CR) != 0 {
            self.pwr(P_CMD, cmd & !CMD_ST);
            self.wait_not(PORT0 + P_CMD, CMD_CR, CMD_CR);
        }
        let cmd = self.prd(P_CMD);
        self.pwr(P_CMD, cmd & !CMD_FRE);
        self.wait_not(PORT0 + P_CMD, CMD_FR, CMD_FR);
    }

    fn start_engine(&mut self) {
        let cmd = self.prd(P_CMD);
        self.pwr(P_CMD, cmd | CMD_ST);
        self.prd(P_CMD);
    }

    /// Linux's probe: `ahci_save_initial_config`, `ahci_reset_controller`, Intel's PCS
    /// fix-up, `ahci_init_controller`, `ahci_port_start`, then EH's hardreset, thaw.
    /// Returns the signature the hardreset found.
    fn probe(&mut self) -> u32 {
        let cap = self.rd(CAP);
        let pi = self.rd(PI);
        let ghc = self.rd(GHC);
        if ghc & GHC_AE == 0 {
            self.wr(GHC, ghc | GHC_AE);
        }
        assert_eq!(self.rd(VS), VERSION);
        let cap2 = self.rd(CAP2);
        // ahci_reset_controller
        let ghc = self.rd(GHC);
        self.wr(GHC, ghc | GHC_HR);
        self.rd(GHC);
        self.wait_not(GHC, GHC_HR, GHC_HR);
        let ghc = self.rd(GHC);
        self.wr(GHC, ghc | GHC_AE);
        // ahci_restore_initial_config writes the saved values back.
        self.wr(CAP, cap);
        self.wr(CAP2, cap2);
        self.wr(PI, pi);
        assert_eq!((self.rd(CAP), self.rd(PI)), (cap, pi));
        // ahci_intel_pcs_quirk
        let pcs = self.hba.config_read(PCS, AccessSize::HalfWord);
        if pcs & pi != pi {
            self.cfg_wr(PCS, AccessSize::HalfWord, pcs | pi);
        }
        // ahci_port_init
        self.deinit_port();
        let serr = self.prd(P_SERR);
        self.pwr(P_SERR, serr);
        let is = self.prd(P_IS);
        if is != 0 {
            self.pwr(P_IS, is);
        }
        self.wr(IS, 1);
        let ghc = self.rd(GHC);
        self.wr(GHC, ghc | GHC_IE);
        // ahci_port_start -> ahci_port_resume: power up, FIS receive, engine.
        let cmd = self.prd(P_CMD) & !CMD_ICC_MASK;
        self.pwr(P_CMD, cmd | 1 << 28);
        self.pwr(P_CLBU, (CLB >> 32) as u32);
        self.pwr(P_CLB, CLB as u32);
        self.pwr(P_FBU, (FB >> 32) as u32);
        self.pwr(P_FB, FB as u32);
        let cmd = self.prd(P_CMD);
        self.pwr(P_CMD, cmd | CMD_FRE);
        self.prd(P_CMD);
        self.start_engine();
        // EH: freeze, ahci_hardreset.
        self.pwr(P_IE, 0);
        let sig = self.hardreset();
        // thaw
        let is = self.prd(P_IS);
        self.pwr(P_IS, is);
        self.wr(IS, 1);
        self.pwr(P_IE, DEF_PORT_IRQ);
        sig
    }

    /// `ahci_do_hardreset`: stop, mark the D2H area busy, COMRESET, debounce, clear
    /// SError, wait for !BSY, start, classify.
    fn hardreset(&mut self) -> u32 {
        let cmd = self.prd(P_CMD);
        self.pwr(P_CMD, cmd & !CMD_ST);
        self.wait_not(PORT0 + P_CMD, CMD_CR, CMD_CR);
        let mut busy = [0u8; 20];
        busy[0] = FIS_D2H;
        busy[2] = ATA_BSY;
        self.mem_write(FB + RFIS_RFIS, &busy);
        let sctl = self.prd(P_SCTL);
        self.pwr(P_SCTL, (sctl & 0x0f0) | 0x301);
        assert_eq!(
            self.prd(P_SSTS) & 0xf,
            0,
            "no link while COMRESET is asserted"
        );
        self.pwr(P_SCTL, (sctl & 0x0f0) | 0x300);
        assert_eq!(self.prd(P_SSTS) & 0xf, 3, "link up after COMRESET");
        let serr = self.prd(P_SERR);
        self.pwr(P_SERR, serr);
        self.wait_not(PORT0 + P_TFD, u32::from(ATA_BSY), u32::from(ATA_BSY));
        self.start_engine();
        self.prd(P_SIG)
    }

    /// Writes slot `slot`'s command header and table and sets its PxCI bit.
    fn issue(&mut self, slot: u32, f: [u8; 20], prds: &[Prd], write: bool) {
        let ct = CT + u64::from(slot) * CT_STRIDE;
        self.header(slot, 5, write, prds.len() as u16, ct);
        self.mem_write(ct, &f);
        for (i, &(addr, len, int)) in prds.iter().enumerate() {
            let mut e = [0u8; 16];
            e[..8].copy_from_slice(&addr.to_le_bytes());
            let dw3 = (len - 1) | if int { 1 << 31 } else { 0 };
            e[12..].copy_from_slice(&dw3.to_le_bytes());
            self.mem_write(ct + PRDT_OFFSET + i as u64 * PRD_SIZE, &e);
        }
        self.pwr(P_CI, 1 << slot);
    }

    fn header(&mut self, slot: u32, cfl: u32, write: bool, prdtl: u16, ct: u64) {
        let dw0 = cfl | if write { 1 << 6 } else { 0 } | u32::from(prdtl) << 16;
        let mut h = [0u8; 32];
        h[..4].copy_from_slice(&dw0.to_le_bytes());
        h[4..8].copy_from_slice(&0xdead_beefu32.to_le_bytes());
        h[8..16].copy_from_slice(&ct.to_le_bytes());
        self.mem_write(CLB + u64::from(slot) * HEADER_SIZE, &h);
    }

    fn prdbc(&self, slot: u32) -> u32 {
        let b = self.mem_read(CLB + u64::from(slot) * HEADER_SIZE + 4, 4);
        u32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }

    /// Linux's interrupt handler for one port: PxIS read and cleared, then IS.
    fn handle_irq(&mut self) -> u32 {
        let is = self.rd(IS);
        if is & 1 == 0 {
            return 0;
        }
        let pis = self.prd(P_IS);
        self.pwr(P_IS, pis);
        self.wr(IS, is);
        pis
    }

    /// A non-queued command in slot 0 that must succeed; its PxIS.
    fn ok(&mut self, f: [u8; 20], prds: &[Prd], write: bool) -> u32 {
        self.issue(0, f, prds, write);
        assert_eq!(self.prd(P_CI), 0, "command {:#x} completed", f[2]);
        assert!(self.irq.intx, "completion interrupt");
        let is = self.handle_irq();
        assert!(!self.irq.intx, "interrupt lowered once handled");
        assert_eq!(is & IS_TFES, 0, "no error: TFD {:#x}", self.prd(P_TFD));
        is
    }

    /// A command in slot 0 that must fail with a task file error; its ATA error.
    fn fails(&mut self, f: [u8; 20], prds: &[Prd], write: bool) -> u8 {
        self.issue(0, f, prds, write);
        let is = self.prd(P_IS);
        assert_ne!(is & IS_TFES, 0, "TFES for command {:#x}", f[2]);
        assert!(self.irq.intx);
        assert_eq!(self.prd(P_CI), 1, "the failed slot stays issued");
        let tfd = self.prd(P_TFD);
        assert_eq!(tfd & 0x01, 1, "ERR in PxTFD.STS");
        let d2h = self.mem_read(FB + RFIS_RFIS, 4);
        assert_eq!((d2h[0], d2h[2] & 1, d2h[3]), (FIS_D2H, 1, (tfd >> 8) as u8));
        self.recover();
        (tfd >> 8) as u8
    }

    /// Linux EH after an error: handle the interrupt, restart the engine.
    fn recover(&mut self) {
        self.handle_irq();
        let cmd = self.prd(P_CMD);
        self.pwr(P_CMD, cmd & !CMD_ST);
        self.wait_not(PORT0 + P_CMD, CMD_CR, CMD_CR);
        assert_eq!(self.prd(P_CI), 0, "clearing ST clears PxCI");
        let serr = self.prd(P_SERR);
        self.pwr(P_SERR, serr);
        self.start_engine();
        assert!(!self.irq.intx);
    }

    fn identify(&mut self) -> [u16; 256] {
        let is = self.ok(fis(cmd::IDENTIFY, 0, 0), &[(DATA, 512, false)], false);
        assert_ne!(is & IS_PSS, 0, "IDENTIFY ends with a PIO Setup FIS");
        let b = self.mem_read(DATA, 512);
        let mut w = [0u16; 256];
        for (i, x) in w.iter_mut().enumerate() {
            *x = u16::from_le_bytes([b[2 * i], b[2 * i + 1]]);
        }
        w
    }
}

fn ata_string(words: &[u16]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_be_bytes()).collect()
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[test]
fn linux_probe_finds_an_ata_disk() {
    let mut g = Guest::new(4096);
    let cap = g.rd(CAP);
    assert_eq!(cap & 0x1f, 0, "one port");
    assert_eq!((cap >> 8) & 0x1f, 31, "32 slots");
    assert_ne!(cap & CAP_S64A, 0);
    assert_ne!(cap & CAP_SAM, 0);
    assert_eq!((cap >> 20) & 0xf, 3, "Gen3");
    assert_eq!(g.hba.ids().class, 0x01_06_01);
    assert_eq!(g.probe(), SIG_ATA);
    assert_eq!(g.prd(P_TFD) & 0xff, 0x50);
    assert_eq!(g.prd(P_SSTS), 0x133, "DET 3, Gen3, IPM active");
    assert_eq!(g.rd(GHC), GHC_AE | GHC_IE);
    let cmd = g.prd(P_CMD);
    assert_eq!(
        cmd & (CMD_ST | CMD_CR | CMD_FRE | CMD_FR | CMD_SUD | CMD_POD | CMD_ICC_MASK),
        CMD_ST | CMD_CR | CMD_FRE | CMD_FR | CMD_SUD | CMD_POD
    );
    // The signature FIS replaced the busy one Linux put in the D2H area.
    let d2h = g.mem_read(FB + RFIS_RFIS, 20);
    assert_eq!(&d2h[..5], &[FIS_D2H, 0, 0x50, 0x01, 0x01]);
    assert_eq!(d2h[12], 1);
    assert_eq!(g.hba.config_read(PCS, AccessSize::HalfWord), 0x0101);
    assert!(!g.irq.intx);
}

#[test]
fn identify_is_honest() {
    let mut g = Guest::new(0x1_2345_6789 / 0x1000);
    g.probe();
    let w = g.identify();
    let sectors = 0x1_2345_6789u64 / 0x1000;
    assert_eq!(&ata_string(&w[27..47])[..20], b"HV Virtual SATA Disk");
    assert_eq!(&ata_string(&w[10..20]), b"SN-0001             ");
    assert_eq!(
        &ata_string(&w[23..27])[..5],
        env!("CARGO_PKG_VERSION").as_bytes()
    );
    let lba48 = (0..4).fold(0u64, |a, i| a | u64::from(w[100 + i]) << (16 * i));
    assert_eq!(lba48, sectors);
    assert_eq!(u64::from(w[60]) | u64::from(w[61]) << 16, sectors);
    assert_eq!(w[49] & 0x300, 0x300, "LBA and DMA");
    assert_eq!(w[53] & 6, 6);
    assert_ne!(w[83] & (1 << 10), 0, "LBA48");
    assert_ne!(w[86] & (1 << 10), 0, "LBA48 enabled");
    assert_ne!(w[83] & (1 << 13), 0, "FLUSH CACHE EXT");
    assert_ne!(w[82] & (1 << 5), 0, "write cache supported");
    assert_ne!(w[85] & (1 << 5), 0, "write cache enabled");
    assert_eq!(w[88], 0x407f, "UDMA 0-6, UDMA 6 selected");
    assert_eq!(w[106], 0x4000, "512-byte logical sectors");
    assert_eq!(w[76] & 0xe, 0xe);
    assert_eq!(w[255] & 0xff, 0xa5);
    let sum = w
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .fold(0u8, u8::wrapping_add);
    assert_eq!(sum, 0, "checksum");
    // The PIO Setup FIS: data to the host, ending status in E_Status, 512 bytes.
    let ps = g.mem_read(FB + RFIS_PSFIS, 20);
    assert_eq!(
        (ps[0], ps[1] & 0x20, ps[15], ps[16], ps[17]),
        (FIS_PIO_SETUP, 0x20, 0x50, 0, 2)
    );
    assert_eq!(g.prdbc(0), 512);
    // A big disk: LBA28 capacity saturates.
    let mut g = Guest::sparse(0x1000_0001);
    g.probe();
    let w = g.identify();
    assert_eq!(u32::from(w[60]) | u32::from(w[61]) << 16, 0x0fff_ffff);
    assert_eq!(w[100], 1);
    assert_eq!(w[101], 0x1000);
}

#[test]
fn reads_and_writes_through_one_and_several_prds() {
    let mut g = Guest::new(256);
    g.probe();
    let data = pattern(3 * SECTOR, 7);
    // Three PRDs of uneven sizes (the middle one with the I bit) carry three sectors.
    g.mem_write(DATA, &data[..100]);
    g.mem_write(DATA + 0x1000, &data[100..1100]);
    g.mem_write(DATA + 0x3000, &data[1100..]);
    let prds = [
        (DATA, 100, false),
        (DATA + 0x1000, 1000, true),
        (DATA + 0x3000, 436, false),
    ];
    let is = g.ok(fis(cmd::WRITE_DMA_EXT, 10, 3), &prds, true);
    assert_ne!(is & IS_DHRS, 0);
    assert_ne!(is & IS_DPS, 0, "PRD with the I bit");
    assert_eq!(g.prdbc(0), 3 * 512);
    for i in 0..3 {
        assert_eq!(
            g.disk.lock().sector(10 + i),
            &data[i as usize * SECTOR..][..SECTOR]
        );
    }
    // Read them back through one PRD, and through many small ones.
    let is = g.ok(
        fis(cmd::READ_DMA_EXT, 10, 3),
        &[(DATA + 0x8000, 1536, false)],
        false,
    );
    assert_eq!(is & IS_DPS, 0);
    assert_eq!(g.mem_read(DATA + 0x8000, 1536), data);
    let small: Vec<Prd> = (0..48)
        .map(|i| (DATA + 0x2_0000 + i * 64, 32, false))
        .collect();
    g.ok(fis(cmd::READ_DMA_EXT, 10, 3), &small, false);
    for i in 0..48 {
        assert_eq!(
            g.mem_read(DATA + 0x2_0000 + i * 64, 32),
            data[i as usize * 32..][..32]
        );
    }
    // The D2H FIS ended it cleanly.
    assert_eq!(g.mem_read(FB + RFIS_RFIS, 4), [FIS_D2H, 0x40, 0x50, 0]);
    assert_eq!(g.prd(P_TFD), 0x50);
}

#[test]
fn reads_and_writes_go_by_dma_lists_when_memory_and_disk_take_them() {
    for take in [true, false] {
        let (mut g, lists) = Guest::with_dma(256, take);
        g.probe();
        let data = pattern(3 * SECTOR, 9);
        g.mem_write(DATA, &data[..100]);
        g.mem_write(DATA + 0x1000, &data[100..1100]);
        g.mem_write(DATA + 0x3000, &data[1100..]);
        let prds = [
            (DATA, 100, false),
            (DATA + 0x1000, 1000, true),
            (DATA + 0x3000, 436, false),
        ];
        let is = g.ok(fis(cmd::WRITE_DMA_EXT, 10, 3), &prds, true);
        assert_ne!(is & IS_DPS, 0, "PRD with the I bit, take {take}");
        assert_eq!(g.prdbc(0), 3 * 512);
        for i in 0..3 {
            assert_eq!(
                g.disk.lock().sector(10 + i),
                &data[i as usize * SECTOR..][..SECTOR]
            );
        }
        let is = g.ok(
            fis(cmd::READ_DMA_EXT, 10, 3),
            &[(DATA + 0x8000, 1536, false)],
            false,
        );
        assert_eq!(is & IS_DPS, 0);
        assert_eq!(g.prdbc(0), 3 * 512);
        assert_eq!(g.mem_read(DATA + 0x8000, 1536), data);
        assert_eq!(lists.load(Ordering::SeqCst), if take { 2 } else { 0 });
        // PRDs shorter than the data: the copy path's overflow, no list.
        g.issue(
            0,
            fis(cmd::READ_DMA_EXT, 0, 2),
            &[(DATA, 512, false)],
            false,
        );
        assert_ne!(g.prd(P_IS) & IS_OFS, 0);
        assert_eq!(lists.load(Ordering::SeqCst), if take { 2 } else { 0 });
    }
}

#[test]
fn lba28_commands_take_lba_27_24_from_the_device_register() {
    let mut g = Guest::sparse(0x0100_0010);
    g.probe();
    let data = pattern(SECTOR, 3);
    g.mem_write(DATA, &data);
    let mut f = fis(cmd::WRITE_DMA, 0x00_0005, 1);
    f[7] = 0x41; // LBA mode, LBA 27:24 = 1
    f[8] = 0xff; // LBA 31:24 of a 48-bit command: ignored here
    g.ok(f, &[(DATA, 512, false)], true);
    g.ok(
        fis(cmd::READ_DMA_EXT, 0x0100_0005, 1),
        &[(DATA + 0x1000, 512, false)],
        false,
    );
    assert_eq!(g.mem_read(DATA + 0x1000, 512), data);
    // A count of 0 is 256 sectors: past the end from here.
    let mut f = fis(cmd::READ_DMA, 0x00_0005, 0);
    f[7] = 0x41;
    assert_eq!(
        g.fails(f, &[(DATA, 512, false)], false),
        ERR_IDNF | ERR_ABRT
    );
}

#[test]
fn write_sector_counts_with_a_short_prd_table_overflow() {
    let mut g = Guest::new(64);
    g.probe();
    g.issue(
        0,
        fis(cmd::READ_DMA_EXT, 0, 2),
        &[(DATA, 512, false)],
        false,
    );
    assert_ne!(g.prd(P_IS) & IS_OFS, 0, "PRDs shorter than the data");
    assert_eq!(g.prd(P_CI), 1);
    // Linux leaves OFS out of PxIE (and recovers by timeout); enabled, it interrupts.
    assert!(!g.irq.intx);
    g.pwr(P_IE, DEF_PORT_IRQ | IS_OFS);
    assert!(g.irq.intx);
    g.recover();
    g.ok(fis(cmd::READ_DMA_EXT, 0, 1), &[(DATA, 512, false)], false);
}

#[test]
fn flush_reaches_the_disk_before_completion() {
    let mut g = Guest::new(64);
    g.probe();
    for (n, c) in [cmd::FLUSH_CACHE, cmd::FLUSH_CACHE_EXT]
        .into_iter()
        .enumerate()
    {
        g.issue(0, fis(c, 0, 0), &[], false);
        // The command is complete (PxCI clear) only once the disk flushed.
        assert_eq!(g.prd(P_CI), 0);
        assert_eq!(g.disk.lock().flushes, n as u64 + 1);
        g.handle_irq();
    }
    // Writes with the write cache on do not flush; with it off, each one does.
    g.ok(fis(cmd::WRITE_DMA_EXT, 0, 1), &[(DATA, 512, false)], true);
    assert_eq!(g.disk.lock().flushes, 2);
    let mut off = fis(cmd::SET_FEATURES, 0, 0);
    off[3] = 0x82;
    g.ok(off, &[], false);
    assert_eq!(g.identify()[85] & (1 << 5), 0, "write cache disabled");
    g.ok(fis(cmd::WRITE_DMA_EXT, 0, 1), &[(DATA, 512, false)], true);
    assert_eq!(g.disk.lock().flushes, 3);
    // A disk that cannot flush fails FLUSH CACHE.
    g.disk.lock().fail_with = Some(0x2);
    assert_eq!(
        g.fails(fis(cmd::FLUSH_CACHE_EXT, 0, 0), &[], false),
        ERR_ABRT
    );
}

#[test]
fn lba_past_the_end_is_idnf_and_stops_the_port_until_restarted() {
    let mut g = Guest::new(64);
    g.probe();
    g.issue(
        0,
        fis(cmd::READ_DMA_EXT, 63, 2),
        &[(DATA, 1024, false)],
        false,
    );
    assert_ne!(g.prd(P_IS) & IS_TFES, 0);
    assert_eq!(g.prd(P_TFD), u32::from(ERR_IDNF | ERR_ABRT) << 8 | 0x51);
    assert_eq!(
        (g.prd(P_CMD) >> CMD_CCS_SHIFT) & 0x1f,
        0,
        "CCS names the failed slot"
    );
    // Nothing more runs until software restarts the port.
    g.issue(1, fis(cmd::FLUSH_CACHE, 0, 0), &[], false);
    assert_eq!(g.prd(P_CI), 0b11);
    assert_eq!(g.disk.lock().flushes, 0);
    g.recover();
    g.ok(fis(cmd::READ_DMA_EXT, 62, 2), &[(DATA, 1024, false)], false);
    // A write reaching past the end fails before any of it reaches the disk.
    let mut g = Guest::new(256);
    g.probe();
    g.mem_write(DATA, &[0x5a; 300 * SECTOR]);
    let f = fis(cmd::WRITE_DMA_EXT, 0, 300);
    assert_eq!(
        g.fails(f, &[(DATA, 300 * 512, false)], true),
        ERR_IDNF | ERR_ABRT
    );
    assert_eq!(g.disk.lock().sector(0), &[0; SECTOR][..]);
    assert_eq!(g.prdbc(0), 0);
    // Overflowing LBA + count.
    assert_eq!(
        g.fails(
            fis(cmd::WRITE_DMA_EXT, 0xffff_ffff_ffff, 0),
            &[(DATA, 512, false)],
            true
        ),
        ERR_IDNF | ERR_ABRT
    );
}

#[test]
fn backend_errors_are_unc_on_reads_and_abrt_on_writes() {
    let mut g = Guest::new(64);
    g.probe();
    g.disk.lock().fail_with = Some(0x281);
    assert_eq!(
        g.fails(fis(cmd::READ_DMA_EXT, 1, 1), &[(DATA, 512, false)], false),
        ERR_UNC
    );
    let lba = g.mem_read(FB + RFIS_RFIS + 4, 3);
    assert_eq!(lba, [1, 0, 0], "the failing LBA");
    assert_eq!(
        g.fails(fis(cmd::WRITE_DMA_EXT, 1, 1), &[(DATA, 512, false)], true),
        ERR_ABRT
    );
    assert_eq!(
        g.fails(fis(cmd::READ_VERIFY_EXT, 1, 1), &[], false),
        ERR_UNC
    );
    g.disk.lock().fail_with = None;
    g.ok(fis(cmd::READ_VERIFY_EXT, 1, 8), &[], false);
}

#[test]
fn a_read_only_disk_refuses_writes() {
    let mut g = Guest::with(64, true, VAhciQuirks::default());
    g.probe();
    g.mem_write(DATA, &[0xaa; 512]);
    assert_eq!(
        g.fails(fis(cmd::WRITE_DMA_EXT, 0, 1), &[(DATA, 512, false)], true),
        ERR_ABRT
    );
    assert_eq!(
        g.fails(fis(cmd::WRITE_DMA, 0, 1), &[(DATA, 512, false)], true),
        ERR_ABRT
    );
    assert_eq!(g.disk.lock().sector(0), &[0; 512][..]);
    g.ok(fis(cmd::READ_DMA_EXT, 0, 1), &[(DATA, 512, false)], false);
}

#[test]
fn unknown_commands_abort_and_settings_commands_are_checked() {
    let mut g = Guest::new(64);
    g.probe();
    // Unknown, or not implemented: DATA SET MANAGEMENT, PACKET, NOP, READ SECTORS.
    for c in [0x06, 0xa0, 0x00, 0xff, 0x20] {
        assert_eq!(
            g.fails(fis(c, 0, 1), &[(DATA, 512, false)], false),
            ERR_ABRT,
            "{c:#x}"
        );
    }
    // SET FEATURES: transfer modes that IDENTIFY lists are accepted, others not.
    let set = |sub: u8, count: u16| {
        let mut f = fis(cmd::SET_FEATURES, 0, count);
        f[3] = sub;
        f
    };
    g.ok(set(0x03, 0x45), &[], false);
    assert_eq!(g.identify()[88], 0x207f, "UDMA 5 selected");
    g.ok(set(0x03, 0x22), &[], false);
    let w = g.identify();
    assert_eq!((w[63], w[88]), (0x0407, 0x007f), "MWDMA 2 selected");
    assert_eq!(g.fails(set(0x03, 0x47), &[], false), ERR_ABRT);
    assert_eq!(g.fails(set(0x66, 0), &[], false), ERR_ABRT);
    // SET MULTIPLE: powers of two up to 16.
    g.ok(fis(cmd::SET_MULTIPLE, 0, 8), &[], false);
    assert_eq!(g.identify()[59], 0x0108);
    assert_eq!(g.fails(fis(cmd::SET_MULTIPLE, 0, 3), &[], false), ERR_ABRT);
    assert_eq!(g.fails(fis(cmd::SET_MULTIPLE, 0, 32), &[], false), ERR_ABRT);
    // Power modes, as CHECK POWER MODE reports them in the count register.
    let check = |g: &mut Guest| {
        g.ok(fis(cmd::CHECK_POWER_MODE, 0, 0), &[], false);
        g.mem_read(FB + RFIS_RFIS + 12, 1)[0]
    };
    assert_eq!(check(&mut g), 0xff);
    g.ok(fis(cmd::IDLE_IMMEDIATE, 0, 0), &[], false);
    assert_eq!(check(&mut g), 0x80);
    let flushes = g.disk.lock().flushes;
    g.ok(fis(cmd::STANDBY_IMMEDIATE, 0, 0), &[], false);
    assert_eq!(
        g.disk.lock().flushes,
        flushes + 1,
        "standby writes the cache back"
    );
    assert_eq!(check(&mut g), 0x00);
    g.ok(fis(cmd::READ_DMA_EXT, 0, 1), &[(DATA, 512, false)], false);
    assert_eq!(check(&mut g), 0xff, "media access wakes the disk");
    // EXECUTE DEVICE DIAGNOSTIC: passed (01h), signature in the registers, no ERR.
    g.ok(fis(cmd::EXECUTE_DIAGNOSTIC, 0, 0), &[], false);
    assert_eq!(g.prd(P_TFD), 0x0150);
    let d2h = g.mem_read(FB + RFIS_RFIS, 14);
    assert_eq!(
        (d2h[3], d2h[4], d2h[5], d2h[6], d2h[12]),
        (0x01, 1, 0, 0, 1)
    );
    // COMRESET brings the power-on settings back.
    g.hardreset();
    assert_eq!(g.identify()[59], 0);
}

#[test]
fn guest_addresses_outside_ram_are_host_bus_fatal() {
    let end = RAM + RAM_SIZE as u64;
    // A PRD past the end of RAM.
    let mut g = Guest::new(64);
    g.probe();
    g.issue(
        0,
        fis(cmd::READ_DMA_EXT, 0, 1),
        &[(end - 256, 512, false)],
        false,
    );
    assert_ne!(g.prd(P_IS) & IS_HBFS, 0);
    assert_ne!(g.prd(P_SERR) & SERR_INTERNAL, 0);
    assert_eq!(g.prd(P_CI), 1);
    assert!(g.irq.intx);
    g.recover();
    g.issue(
        0,
        fis(cmd::WRITE_DMA_EXT, 0, 1),
        &[(u64::MAX - 10, 512, false)],
        true,
    );
    assert_ne!(g.prd(P_IS) & IS_HBFS, 0);
    g.recover();
    // The command table (and its PRDT) outside RAM.
    g.header(0, 5, false, 1, end);
    g.pwr(P_CI, 1);
    assert_ne!(g.prd(P_IS) & IS_HBFS, 0);
    g.recover();
    g.header(0, 5, false, 0xffff, !0x7f);
    g.pwr(P_CI, 1);
    assert_ne!(g.prd(P_IS) & IS_HBFS, 0);
    g.recover();
    // The received-FIS area outside RAM: the command runs, its FIS cannot be posted.
    let cmd = g.prd(P_CMD);
    g.pwr(P_CMD, cmd & !CMD_ST);
    g.pwr(P_FB, 0xffff_ff00);
    g.pwr(P_FBU, 0xffff_ffff);
    g.start_engine();
    g.issue(0, fis(cmd::FLUSH_CACHE, 0, 0), &[], false);
    assert_ne!(g.prd(P_IS) & IS_HBFS, 0);
    // The command list outside RAM.
    let mut g = Guest::new(64);
    g.probe();
    let cmd = g.prd(P_CMD);
    g.pwr(P_CMD, cmd & !CMD_ST);
    g.pwr(P_CLB, end as u32);
    g.start_engine();
    g.pwr(P_CI, 1 << 31);
    assert_ne!(g.prd(P_IS) & IS_HBFS, 0);
    assert_eq!((g.prd(P_CMD) >> CMD_CCS_SHIFT) & 0x1f, 31);
    // Bus mastering off: no DMA at all.
    let mut g = Guest::new(64);
    g.probe();
    g.irq.bus_master = false;
    g.mem_write(DATA, &[0x77; 512]);
    g.issue(
        0,
        fis(cmd::WRITE_DMA_EXT, 0, 1),
        &[(DATA, 512, false)],
        true,
    );
    assert_ne!(g.prd(P_IS) & IS_HBFS, 0);
    assert_eq!(
        g.disk.lock().sector(0),
        &[0; SECTOR][..],
        "nothing read from the guest"
    );
}

#[test]
fn garbage_command_headers_stop_the_port_without_harm() {
    let mut g = Guest::new(64);
    g.probe();
    // CFL too short for a Register FIS.
    g.header(3, 1, false, 0, CT);
    g.mem_write(CT, &fis(cmd::FLUSH_CACHE, 0, 0));
    g.pwr(P_CI, 1 << 3);
    assert_ne!(g.prd(P_IS) & IS_IFS, 0);
    assert_eq!(g.disk.lock().flushes, 0);
    g.recover();
    // Not a Register H2D FIS.
    let mut f = fis(cmd::FLUSH_CACHE, 0, 0);
    f[0] = 0x46;
    g.issue(2, f, &[], false);
    assert_ne!(g.prd(P_IS) & IS_IFS, 0);
    g.recover();
    // Every slot full of noise.
    let mut noise = vec![0u8; 32 * 32];
    let mut x = 0x1234_5678u32;
    for b in noise.iter_mut() {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *b = x as u8;
    }
    g.mem_write(CLB, &noise);
    g.pwr(P_CI, u32::MAX);
    assert_ne!(g.prd(P_IS) & (IS_HBFS | IS_IFS | IS_TFES), 0);
    g.recover();
    g.ok(fis(cmd::FLUSH_CACHE, 0, 0), &[], false);
}

#[test]
fn huge_prd_tables_are_walked_only_as_far_as_the_data_needs() {
    let mut g = Guest::new(64);
    g.probe();
    // 65535 PRDs of 1 byte each, zeroed in RAM, for 32 MiB: the table runs out first.
    let ct = RAM + 0x20_0000;
    g.header(0, 5, false, 0xffff, ct);
    g.mem_write(ct, &fis(cmd::READ_DMA_EXT, 0, 0));
    g.pwr(P_CI, 1);
    // 65536 sectors do not fit the disk: IDNF before any data moves.
    assert_ne!(g.prd(P_IS) & IS_TFES, 0);
    assert_eq!(g.prdbc(0), 0, "no data moved");
    g.recover();
    // A disk big enough for it: the table (65535 bytes) overflows.
    let mut g = Guest::new(0x1_0000);
    g.probe();
    g.header(0, 5, false, 0xffff, ct);
    g.mem_write(ct, &fis(cmd::READ_DMA_EXT, 0, 0));
    let (dma_addr, dw3) = (DATA, 0u32);
    for i in 0..0xffffu64 {
        let mut e = [0u8; 16];
        e[..8].copy_from_slice(&dma_addr.to_le_bytes());
        e[12..].copy_from_slice(&dw3.to_le_bytes());
        g.mem_write(ct + PRDT_OFFSET + i * 16, &e);
    }
    g.pwr(P_CI, 1);
    assert_ne!(g.prd(P_IS) & IS_OFS, 0);
}

#[test]
fn commands_issued_while_stopped_are_ignored() {
    let mut g = Guest::new(64);
    g.probe();
    let cmd = g.prd(P_CMD);
    g.pwr(P_CMD, cmd & !CMD_ST);
    g.issue(0, fis(cmd::FLUSH_CACHE, 0, 0), &[], false);
    assert_eq!(g.prd(P_CI), 0);
    g.pwr(P_SACT, 1);
    assert_eq!(g.prd(P_SACT), 0);
    assert_eq!(g.disk.lock().flushes, 0);
    assert!(!g.irq.intx);
    g.start_engine();
    g.ok(fis(cmd::FLUSH_CACHE, 0, 0), &[], false);
    assert_eq!(g.disk.lock().flushes, 1);
    // While COMRESET holds the link down, an issued command waits for the link.
    g.pwr(P_SCTL, 0x301);
    g.issue(0, fis(cmd::FLUSH_CACHE, 0, 0), &[], false);
    assert_eq!((g.prd(P_CI), g.disk.lock().flushes), (1, 1));
    g.pwr(P_SCTL, 0x300);
    assert_eq!((g.prd(P_CI), g.disk.lock().flushes), (0, 2));
    // The link change shows in PxSERR (and PxIS.PCS/PRCS) until software clears it.
    assert_eq!(g.prd(P_IS) & (IS_PCS | IS_PRCS), IS_PCS | IS_PRCS);
    let serr = g.prd(P_SERR);
    g.pwr(P_SERR, serr);
    assert_eq!(g.prd(P_IS) & (IS_PCS | IS_PRCS), 0);
    g.handle_irq();
    g.disk.lock().flushes = 1;
    // With FIS receive off, commands still run but nothing is written to the FIS area.
    g.deinit_port();
    g.mem_write(FB, &[0xee; 256]);
    g.start_engine();
    g.ok(fis(cmd::FLUSH_CACHE_EXT, 0, 0), &[], false);
    assert_eq!(g.disk.lock().flushes, 2);
    assert_eq!(g.mem_read(FB, 256), [0xee; 256]);
    assert_eq!(g.prd(P_TFD), 0x50);
}

#[test]
fn interrupts_follow_ie_and_msi_replaces_intx() {
    let mut g = Guest::new(64);
    g.probe();
    // GHC.IE off: status is recorded, the line stays low.
    g.wr(GHC, GHC_AE);
    g.issue(0, fis(cmd::FLUSH_CACHE, 0, 0), &[], false);
    assert_ne!(g.prd(P_IS) & IS_DHRS, 0);
    assert!(!g.irq.intx);
    g.wr(GHC, GHC_AE | GHC_IE);
    assert!(g.irq.intx, "pending status raises the line once IE is set");
    g.handle_irq();
    assert!(!g.irq.intx);
    // PxIE without DHRS: no interrupt for a completion.
    g.pwr(P_IE, DEF_PORT_IRQ & !IS_DHRS);
    g.issue(0, fis(cmd::FLUSH_CACHE, 0, 0), &[], false);
    assert!(!g.irq.intx);
    assert_eq!(g.rd(IS), 0);
    g.pwr(P_IS, u32::MAX);
    g.pwr(P_IE, DEF_PORT_IRQ);
    // MSI: 64-bit address, data; INTx goes quiet.
    let cap = u16::from(g.hba.capabilities_pointer());
    assert_eq!(g.hba.config_read(cap, AccessSize::Word), 0x0080_0005);
    g.cfg_wr(cap + 4, AccessSize::Word, 0x0802_0040);
    g.cfg_wr(cap + 8, AccessSize::Word, 0x1);
    g.cfg_wr(cap + 12, AccessSize::HalfWord, 0x55);
    // A completion pending on INTx moves to MSI when MSI is turned on.
    g.issue(0, fis(cmd::FLUSH_CACHE, 0, 0), &[], false);
    assert!(g.irq.intx);
    g.cfg_wr(cap + 2, AccessSize::HalfWord, 0xffff);
    assert!(!g.irq.intx);
    assert_eq!(g.irq.msis, [(0x1_0802_0040, 0x55)]);
    g.handle_irq();
    g.irq.msis.clear();
    assert_eq!(
        g.hba.config_read(cap + 2, AccessSize::HalfWord),
        0x81,
        "one vector"
    );
    g.issue(0, fis(cmd::FLUSH_CACHE, 0, 0), &[], false);
    assert!(!g.irq.intx);
    assert_eq!(g.irq.msis, [(0x1_0802_0040, 0x55)]);
    // Cleared: no more messages; another completion, another message.
    g.handle_irq();
    assert_eq!(g.irq.msis.len(), 1);
    g.issue(0, fis(cmd::FLUSH_CACHE, 0, 0), &[], false);
    assert_eq!(g.irq.msis.len(), 2);
    // The guest clears IS but not PxIS: still pending, so it is told again.
    g.wr(IS, 1);
    assert_eq!(g.irq.msis.len(), 3);
}

#[test]
fn hba_reset_and_function_reset_return_to_power_on_state() {
    let mut g = Guest::new(64);
    g.probe();
    g.ok(fis(cmd::FLUSH_CACHE, 0, 0), &[], false);
    g.wr(GHC, GHC_HR);
    assert_eq!(g.rd(GHC), GHC_AE, "HR self-clears; IE off");
    assert_eq!(g.prd(P_CMD) & (CMD_ST | CMD_FRE), 0);
    assert_eq!(g.prd(P_IE), 0);
    assert_eq!(g.prd(P_CLB) as u64, CLB, "PxCLB survives HBA reset");
    assert_eq!(
        (g.prd(P_SIG), g.prd(P_TFD), g.prd(P_SSTS)),
        (SIG_ATA, 0x150, 0x133)
    );
    g.hba.reset();
    assert_eq!(g.prd(P_CLB), 0);
    assert_eq!((g.prd(P_SIG), g.prd(P_SSTS)), (SIG_ATA, 0x133));
    assert_eq!(g.probe(), SIG_ATA);
}

#[test]
fn software_reset_as_linux_does_it_yields_the_signature() {
    let mut g = Guest::new(64);
    g.probe();
    // ahci_softreset: a control FIS with SRST (header R and C bits), then one without.
    let mut srst = [0u8; 20];
    srst[0] = FIS_H2D;
    srst[15] = 0x04;
    g.issue(0, srst, &[], false);
    let dw0 = g.mem_read(CLB, 4);
    let _ = dw0;
    assert_eq!(g.prd(P_CI), 0);
    assert_eq!(g.prd(P_TFD) & 0x80, 0x80, "BSY while SRST without C");
    g.pwr(P_SIG, 0);
    srst[15] = 0;
    g.issue(0, srst, &[], false);
    assert_eq!((g.prd(P_TFD), g.prd(P_SIG)), (0x150, SIG_ATA));
    assert_eq!(g.mem_read(FB + RFIS_RFIS, 4), [FIS_D2H, 0, 0x50, 0x01]);
}

#[test]
fn narrow_and_wide_register_accesses() {
    let mut g = Guest::new(64);
    g.probe();
    // A byte write changes one byte of PxIE.
    g.with_ctx(|h, c, i| h.bar_write(c, i, ABAR, PORT0 + P_IE + 3, AccessSize::Byte, 0));
    assert_eq!(g.prd(P_IE), DEF_PORT_IRQ & 0x00ff_ffff);
    g.with_ctx(|h, c, i| h.bar_write(c, i, ABAR, PORT0 + P_IE, AccessSize::Byte, 0));
    assert_eq!(g.prd(P_IE), DEF_PORT_IRQ & 0x00ff_ff00);
    g.with_ctx(|h, c, i| {
        h.bar_write(
            c,
            i,
            ABAR,
            PORT0 + P_IE + 2,
            AccessSize::HalfWord,
            0xffff_ffff,
        )
    });
    assert_eq!(
        g.prd(P_IE),
        (DEF_PORT_IRQ & 0x0000_ff00) | (IS_MASK & 0xffff_0000)
    );
    // A 64-bit write sets PxCLB and PxCLBU.
    let cmd = g.prd(P_CMD);
    g.pwr(P_CMD, cmd & !CMD_ST);
    g.with_ctx(|h, c, i| {
        h.bar_write(
            c,
            i,
            ABAR,
            PORT0 + P_CLB,
            AccessSize::DoubleWord,
            0x1_2345_6c00,
        )
    });
    assert_eq!((g.prd(P_CLB), g.prd(P_CLBU)), (0x2345_6c00, 1));
    let v = g.with_ctx(|h, c, i| h.bar_read(c, i, ABAR, PORT0 + P_CLB, AccessSize::DoubleWord));
    assert_eq!(v, 0x1_2345_6c00);
    g.with_ctx(|h, c, i| h.bar_write(c, i, ABAR, PORT0 + P_CLB, AccessSize::DoubleWord, CLB));
    // Halfword read of VS's high half; misaligned and out-of-range accesses read 0.
    let v = g.with_ctx(|h, c, i| h.bar_read(c, i, ABAR, VS + 2, AccessSize::HalfWord));
    assert_eq!(v, 1);
    let v = g.with_ctx(|h, c, i| h.bar_read(c, i, ABAR, VS + 1, AccessSize::Word));
    assert_eq!(v, 0);
    let v = g.with_ctx(|h, c, i| h.bar_read(c, i, ABAR, ABAR_SIZE, AccessSize::Word));
    assert_eq!(v, 0);
    let v = g.with_ctx(|h, c, i| h.bar_read(c, i, 0, CAP, AccessSize::Word));
    assert_eq!(v, 0);
    // CLO clears BSY.
    g.pwr(P_SCTL, 0x301);
    g.pwr(P_SCTL, 0x300);
    let mut srst = [0u8; 20];
    srst[0] = FIS_H2D;
    srst[15] = 0x04;
    g.start_engine();
    g.issue(0, srst, &[], false);
    assert_eq!(g.prd(P_TFD) & 0x80, 0x80);
    let cmd = g.prd(P_CMD);
    g.pwr(P_CMD, cmd | CMD_CLO);
    assert_eq!(g.prd(P_TFD) & 0x88, 0);
    assert_eq!(g.prd(P_CMD) & CMD_CLO, 0);
}

#[test]
fn quirks_hide_the_write_cache_and_tighten_queue_depth() {
    let mut q = VAhciQuirks::default();
    let storage = QuirkData::Storage {
        max_queue_depth: 8,
        no_write_cache: true,
        force_512_sectors: true,
        ignore_subnqn: true,
        ready_delay_ms: 100,
        dma_alias_function: Some(1),
    };
    assert!(q.apply(&storage));
    assert_eq!(
        q,
        VAhciQuirks {
            max_queue_depth: 8,
            no_write_cache: true
        }
    );
    let looser = QuirkData::Storage {
        max_queue_depth: 16,
        no_write_cache: false,
        force_512_sectors: false,
        ignore_subnqn: false,
        ready_delay_ms: 0,
        dma_alias_function: None,
    };
    assert!(q.apply(&looser));
    assert_eq!(
        q,
        VAhciQuirks {
            max_queue_depth: 8,
            no_write_cache: true
        }
    );
    assert!(!q.apply(&QuirkData::Soc { cpu_on_delay_us: 5 }));
    let mut g = Guest::with(64, false, q);
    g.probe();
    let w = g.identify();
    assert_eq!(w[82] & (1 << 5), 0);
    assert_eq!(w[85] & (1 << 5), 0);
    let mut on = fis(cmd::SET_FEATURES, 0, 0);
    on[3] = 0x02;
    assert_eq!(g.fails(on, &[], false), ERR_ABRT);
    g.ok(fis(cmd::WRITE_DMA_EXT, 0, 1), &[(DATA, 512, false)], true);
    assert_eq!(
        g.disk.lock().flushes,
        1,
        "without a write cache, writes are stable at completion"
    );
}

/// A queued command's FIS as Linux builds it: count in features, tag in count 7:3.
fn ncq_fis(command: u8, lba: u64, count: u16, tag: u8, fua: bool) -> [u8; 20] {
    let mut f = fis(command, lba, u16::from(tag) << 3);
    let c = count.to_le_bytes();
    f[3] = c[0];
    f[11] = c[1];
    f[7] = 0x40 | if fua { 0x80 } else { 0 };
    f
}

#[test]
fn ncq_reads_and_writes_complete_with_set_device_bits() {
    let mut g = Guest::new(256);
    g.probe();
    assert_ne!(g.rd(CAP) & CAP_SNCQ, 0);
    let w = g.identify();
    assert_eq!((w[75], w[76] & (1 << 8)), (31, 1 << 8), "32 deep");
    // Three queued writes at once, as Linux issues them: PxSACT, then PxCI.
    let data = pattern(6 * SECTOR, 9);
    g.mem_write(DATA, &data);
    for tag in 0..3u8 {
        let t = u64::from(tag);
        let ct = CT + t * CT_STRIDE;
        g.header(u32::from(tag), 5, true, 1, ct);
        g.mem_write(ct, &ncq_fis(cmd::WRITE_FPDMA, 20 + 2 * t, 2, tag, tag == 2));
        let mut e = [0u8; 16];
        e[..8].copy_from_slice(&(DATA + t * 1024).to_le_bytes());
        e[12..].copy_from_slice(&1023u32.to_le_bytes());
        g.mem_write(ct + PRDT_OFFSET, &e);
    }
    g.pwr(P_SACT, 0b111);
    g.pwr(P_CI, 0b111);
    assert_eq!((g.prd(P_CI), g.prd(P_SACT)), (0, 0));
    assert!(g.irq.intx);
    let is = g.handle_irq();
    assert_eq!(is & (IS_SDBS | IS_TFES | IS_DHRS), IS_SDBS);
    // One SDB FIS per command; the last one names one of the three tags.
    let sdb = g.mem_read(FB + RFIS_SDBFIS, 8);
    assert_eq!(sdb[..4], [FIS_SDB, 0x40, 0x50, 0]);
    assert!([1, 2, 4].contains(&sdb[4]) && sdb[5..] == [0, 0, 0]);
    for i in 0..6 {
        assert_eq!(
            g.disk.lock().sector(20 + i),
            &data[i as usize * SECTOR..][..SECTOR]
        );
    }
    assert_eq!(g.disk.lock().flushes, 1, "the FUA write is made stable");
    // A queued read with tag 5 in slot 5.
    let ct = CT + 5 * CT_STRIDE;
    g.header(5, 5, false, 1, ct);
    g.mem_write(ct, &ncq_fis(cmd::READ_FPDMA, 20, 6, 5, false));
    let mut e = [0u8; 16];
    e[..8].copy_from_slice(&(DATA + 0x4000).to_le_bytes());
    e[12..].copy_from_slice(&(6 * 512 - 1u32).to_le_bytes());
    g.mem_write(ct + PRDT_OFFSET, &e);
    g.pwr(P_SACT, 1 << 5);
    g.pwr(P_CI, 1 << 5);
    assert_eq!((g.prd(P_CI), g.prd(P_SACT)), (0, 0));
    assert_eq!(g.mem_read(DATA + 0x4000, 6 * SECTOR), data);
    assert_eq!(g.mem_read(FB + RFIS_SDBFIS + 4, 4), [0x20, 0, 0, 0]);
}

#[test]
fn a_failed_queued_command_is_reported_in_log_10h() {
    let mut g = Guest::new(64);
    g.probe();
    let ct = CT + 7 * CT_STRIDE;
    g.header(7, 5, false, 1, ct);
    g.mem_write(ct, &ncq_fis(cmd::READ_FPDMA, 60, 8, 7, false));
    let mut e = [0u8; 16];
    e[..8].copy_from_slice(&DATA.to_le_bytes());
    e[12..].copy_from_slice(&4095u32.to_le_bytes());
    g.mem_write(ct + PRDT_OFFSET, &e);
    g.pwr(P_SACT, 1 << 7);
    g.pwr(P_CI, 1 << 7);
    let is = g.prd(P_IS);
    assert_eq!(is & (IS_SDBS | IS_TFES), IS_SDBS | IS_TFES);
    assert_eq!(g.prd(P_SACT), 1 << 7, "the failed tag stays active");
    assert_eq!(g.prd(P_TFD), u32::from(ERR_IDNF | ERR_ABRT) << 8 | 0x51);
    assert_eq!(
        g.mem_read(FB + RFIS_SDBFIS, 8),
        [FIS_SDB, 0x40, 0x51, 0x14, 0, 0, 0, 0]
    );
    // Linux's EH: restart the port, then READ LOG EXT of log 10h (PIO in).
    g.recover();
    assert_eq!(g.prd(P_SACT), 0);
    let read_log = |g: &mut Guest| {
        g.ok(
            fis(cmd::READ_LOG_EXT, 0x10, 1),
            &[(DATA + 0x1000, 512, false)],
            false,
        );
        g.mem_read(DATA + 0x1000, 512)
    };
    let log = read_log(&mut g);
    assert_eq!(&log[..5], &[7, 0, 0x51, 0x14, 60]);
    assert_eq!(
        log.iter().fold(0u8, |a, b| a.wrapping_add(*b)),
        0,
        "checksum"
    );
    let log = read_log(&mut g);
    assert_eq!(log[0], 0x80, "read once: no queued error left (NQ)");
    // The directory lists log 10h; other logs and pages are refused.
    g.ok(fis(cmd::READ_LOG_EXT, 0, 1), &[(DATA, 512, false)], false);
    assert_eq!(g.mem_read(DATA, 0x22)[..2], [1, 0]);
    assert_eq!(g.mem_read(DATA + 0x20, 2), [1, 0]);
    assert_eq!(
        g.fails(
            fis(cmd::READ_LOG_EXT, 0x30, 1),
            &[(DATA, 512, false)],
            false
        ),
        ERR_ABRT
    );
    assert_eq!(
        g.fails(
            fis(cmd::READ_LOG_EXT, 0x110, 1),
            &[(DATA, 512, false)],
            false
        ),
        ERR_ABRT
    );
    assert_eq!(
        g.fails(
            fis(cmd::READ_LOG_EXT, 0x10, 2),
            &[(DATA, 1024, false)],
            false
        ),
        ERR_ABRT
    );
    // A backend failure on a queued write: ABRT, logged with its tag.
    g.disk.lock().fail_with = Some(1);
    let ct = CT + 3 * CT_STRIDE;
    g.header(3, 5, true, 1, ct);
    g.mem_write(ct, &ncq_fis(cmd::WRITE_FPDMA, 1, 1, 3, false));
    g.mem_write(ct + PRDT_OFFSET, &e);
    g.pwr(P_SACT, 1 << 3);
    g.pwr(P_CI, 1 << 3);
    assert_ne!(g.prd(P_IS) & IS_TFES, 0);
    g.recover();
    g.disk.lock().fail_with = None;
    assert_eq!(&read_log(&mut g)[..4], &[3, 0, 0x51, ERR_ABRT]);
}

#[test]
fn prd_tables_are_read_in_batches_that_may_not_fault_where_the_walk_does_not() {
    let mut g = Guest::new(256);
    g.probe();
    let data = pattern(10 * SECTOR, 3);
    // 80 PRDs of 64 bytes: more than one batch of the table.
    g.mem_write(DATA, &data);
    let prds: Vec<Prd> = (0..80).map(|i| (DATA + i * 64, 64, false)).collect();
    g.ok(fis(cmd::WRITE_DMA_EXT, 20, 10), &prds, true);
    assert_eq!(g.prdbc(0), 10 * 512);
    for i in 0..10 {
        assert_eq!(
            g.disk.lock().sector(20 + i),
            &data[i as usize * SECTOR..][..SECTOR]
        );
    }
    // A command table (128-byte aligned) whose eight used PRDs are the last 128 bytes of
    // RAM, its PRDTL claiming 64: a batch would run past RAM, the walk itself does not.
    let end = RAM + RAM_SIZE as u64;
    let ct = end - PRDT_OFFSET - 8 * PRD_SIZE;
    g.header(0, 5, false, 64, ct);
    g.mem_write(ct, &fis(cmd::READ_DMA_EXT, 20, 1));
    for i in 0..8u64 {
        let mut e = [0u8; 16];
        e[..8].copy_from_slice(&(DATA + 0x8000 + i * 0x100).to_le_bytes());
        e[12..].copy_from_slice(&63u32.to_le_bytes());
        g.mem_write(ct + PRDT_OFFSET + i * PRD_SIZE, &e);
    }
    g.pwr(P_CI, 1);
    assert_eq!(g.prd(P_CI), 0, "completed");
    let is = g.handle_irq();
    assert_eq!(
        is & (IS_TFES | IS_HBFS | IS_OFS),
        0,
        "no fault: PxIS {is:#x}"
    );
    for i in 0..8u64 {
        let at = (i * 64) as usize;
        assert_eq!(g.mem_read(DATA + 0x8000 + i * 0x100, 64), data[at..at + 64]);
    }
}
