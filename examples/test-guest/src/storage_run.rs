//! `storage-hostile` and `storage-neighbour` modes on the target: enumerate the VM's PCIe
//! bus, place the BARs, and drive each NVMe, AHCI and virtio-blk controller with requests
//! that must be refused, then with a valid write and read of a marker (the pure parts are
//! in `storage.rs`).
//!
//! Every controller of the hypervisor completes a request inside the guest's doorbell
//! write, so each request is submitted and its answer read right after, by polling.

use crate::dt::{Platform, Region};
use crate::mmio::Mmio;
use crate::pci_run::{
    self, cc, delay_ms, poll, Dma, Function, VirtioRegs, MAX_FUNCTIONS, PCI_COMMAND,
};
use crate::storage::{self, ata, nvme_op, virtio_status as vs, Kind, PciHost, Tally};
use crate::storage::{SECTOR, SECTOR_WORDS};
use crate::{checks, println};

/// DMA memory per controller (queues, tables, buffers).
const AREA: u64 = 0x1_0000;
/// Longest the neighbour keeps reading its value back while it waits for a byte on its
/// console (the scenario types one once the hostile VM is done).
const NEIGHBOUR_MAX_MS: u64 = 90_000;
/// How long the hostile VM waits before its first probe, so that the neighbour's first
/// write comes before it.
const HOSTILE_DELAY_MS: u64 = 300;
/// A guest-physical address far outside any VM's RAM (1 TiB).
const FAR_AWAY: u64 = 1 << 40;

// ---- NVMe ----

/// Entries of every queue the guest creates.
const NVME_Q: u16 = 8;
const NVME_ASQ: u64 = 0x0000;
const NVME_ACQ: u64 = 0x1000;
const NVME_IOSQ: u64 = 0x2000;
const NVME_IOCQ: u64 = 0x3000;
const NVME_IDENT: u64 = 0x4000;
/// Three data pages.
const NVME_DATA: u64 = 0x5000;
const NVME_PRP_LIST: u64 = 0x8000;

/// One queue pair's indices.
#[derive(Clone, Copy, Debug)]
struct QueuePair {
    qid: u16,
    sq: u64,
    cq: u64,
    tail: u16,
    head: u16,
    phase: bool,
}

struct Nvme {
    regs: Mmio,
    dma: Dma,
    dstrd: u32,
    admin: QueuePair,
    io: QueuePair,
    cid: u16,
    /// Namespace 1's size in blocks.
    nsze: u64,
}

impl Nvme {
    /// Resets and enables the controller with an admin queue, reads namespace 1's size and
    /// creates I/O queue pair 1.
    fn start(regs: Mmio, dma: Dma) -> Result<Self, &'static str> {
        dma.zero(0, NVME_DATA);
        let cap = regs.read64(0);
        let mut n = Nvme {
            regs,
            dma,
            dstrd: ((cap >> 32) & 0xf) as u32,
            admin: QueuePair {
                qid: 0,
                sq: NVME_ASQ,
                cq: NVME_ACQ,
                tail: 0,
                head: 0,
                phase: true,
            },
            io: QueuePair {
                qid: 1,
                sq: NVME_IOSQ,
                cq: NVME_IOCQ,
                tail: 0,
                head: 0,
                phase: true,
            },
            cid: 0,
            nsze: 0,
        };
        regs.write32(0x14, 0);
        if !poll(|| regs.read32(0x1c) & 1 == 0) {
            return Err("CSTS.RDY stays set after CC.EN = 0");
        }
        let q = u32::from(NVME_Q - 1);
        regs.write32(0x24, q << 16 | q);
        regs.write64(0x28, dma.base + NVME_ASQ);
        regs.write64(0x30, dma.base + NVME_ACQ);
        regs.write32(0x14, 1 | 6 << 16 | 4 << 20);
        if !poll(|| regs.read32(0x1c) & 3 != 0) || regs.read32(0x1c) & 2 != 0 {
            return Err("the controller did not become ready (CSTS.RDY clear or CFS set)");
        }
        let ident =
            storage::nvme_command(nvme_op::IDENTIFY, 0, 1, dma.base + NVME_IDENT, 0, [0; 6]);
        if n.submit(false, ident)? != 0 {
            return Err("Identify Namespace failed");
        }
        n.nsze = u64::from(dma.read32(NVME_IDENT)) | u64::from(dma.read32(NVME_IDENT + 4)) << 32;
        let size = u32::from(NVME_Q - 1) << 16;
        let cq = storage::nvme_command(
            nvme_op::CREATE_IO_CQ,
            0,
            0,
            dma.base + NVME_IOCQ,
            0,
            [size | 1, 1, 0, 0, 0, 0],
        );
        if n.submit(false, cq)? != 0 {
            return Err("Create I/O Completion Queue failed");
        }
        let sq = storage::nvme_command(
            nvme_op::CREATE_IO_SQ,
            0,
            0,
            dma.base + NVME_IOSQ,
            0,
            [size | 1, 1 << 16 | 1, 0, 0, 0, 0],
        );
        if n.submit(false, sq)? != 0 {
            return Err("Create I/O Submission Queue failed");
        }
        Ok(n)
    }

    /// Submits `cmd` (its CID replaced) on the I/O queue (`io`) or the admin queue and
    /// returns the completion's Status Field.
    fn submit(&mut self, io: bool, mut cmd: storage::NvmeCommand) -> Result<u16, &'static str> {
        self.cid = self.cid.wrapping_add(1);
        cmd[0] = (cmd[0] & 0xffff) | u32::from(self.cid) << 16;
        let q = if io { &mut self.io } else { &mut self.admin };
        self.dma.write_words(q.sq + 64 * u64::from(q.tail), &cmd);
        q.tail = (q.tail + 1) % NVME_Q;
        self.regs.write32(
            storage::nvme_doorbell(q.qid, false, self.dstrd),
            u32::from(q.tail),
        );
        let entry = q.cq + 16 * u64::from(q.head);
        let dma = self.dma;
        let phase = q.phase;
        if !poll(|| storage::nvme_phase(dma.read32(entry + 12)) == phase) {
            return Err(if self.regs.read32(0x1c) & 2 != 0 {
                "no completion: the controller set CSTS.CFS"
            } else {
                "no completion"
            });
        }
        let dw3 = dma.read32(entry + 12);
        q.head = (q.head + 1) % NVME_Q;
        if q.head == 0 {
            q.phase = !q.phase;
        }
        self.regs.write32(
            storage::nvme_doorbell(q.qid, true, self.dstrd),
            u32::from(q.head),
        );
        Ok(storage::nvme_status(dw3))
    }

    fn rw(
        &mut self,
        write: bool,
        slba: u64,
        blocks: u32,
        prp1: u64,
        prp2: u64,
    ) -> Result<u16, &'static str> {
        self.submit(true, storage::nvme_rw(write, 0, slba, blocks, prp1, prp2))
    }
}

/// Writes `words` (one sector) to LBA 0 and reads it back through `io(write)`, with the
/// sector at `buf` in the DMA area; true if both succeeded and it read back equal.
fn write_read_back(
    dma: Dma,
    buf: u64,
    words: &[u32; SECTOR_WORDS],
    mut io: impl FnMut(bool) -> bool,
) -> bool {
    dma.write_words(buf, words);
    if !io(true) {
        return false;
    }
    dma.write_words(buf, &storage::filler(0x5ec7));
    if !io(false) {
        return false;
    }
    let mut back = [0_u32; SECTOR_WORDS];
    dma.read_words(buf, &mut back);
    back == *words
}

/// Sends `cmd` on the I/O queue and records whether the controller refused it.
fn nvme_probe(n: &mut Nvme, tally: &mut Tally, name: &'static str, cmd: storage::NvmeCommand) {
    match n.submit(true, cmd) {
        Ok(status) => {
            let refused = storage::nvme_code(status) != 0;
            tally.probe(name, refused);
            println!(
                "storage-hostile: nvme {name} -> status {:#05x} ({}){}",
                storage::nvme_code(status),
                storage::nvme_status_text(status),
                if refused { "" } else { ": FAIL, accepted" }
            );
        }
        Err(e) => {
            tally.probe(name, false);
            println!("storage-hostile: nvme {name} -> FAIL {e}");
        }
    }
}

fn nvme_hostile(f: &Function<Kind>, dma: Dma, ram: Region, tally: &mut Tally) {
    let Some(regs) = f.bar(0) else {
        println!("storage-hostile: FAIL nvme has no BAR 0");
        tally.valid(false);
        return;
    };
    let mut n = match Nvme::start(regs, dma) {
        Ok(n) => n,
        Err(e) => {
            println!("storage-hostile: FAIL nvme start: {e}");
            tally.valid(false);
            return;
        }
    };
    println!("storage-hostile: nvme namespace 1 has {} blocks", n.nsze);
    let data = dma.base + NVME_DATA;
    let list = dma.base + NVME_PRP_LIST;
    let end = n.nsze;
    let rw = storage::nvme_rw;
    // A PRP list in RAM whose second entry is the controller's own registers.
    let mmio = f.bars[0];
    dma.write_words(
        NVME_PRP_LIST,
        &[
            (data + 0x1000) as u32,
            ((data + 0x1000) >> 32) as u32,
            mmio as u32,
            (mmio >> 32) as u32,
        ],
    );
    let probes: [(&'static str, storage::NvmeCommand); 10] = [
        ("read past end", rw(false, 0, end, 1, data, 0)),
        (
            "read with SLBA+NLB past 2^64",
            rw(false, 0, u64::MAX, 2, data, 0),
        ),
        ("write across the end", rw(true, 0, end - 1, 2, data, 0)),
        (
            "read into PRP1 at RAM end",
            rw(false, 0, 0, 1, ram.end(), 0),
        ),
        ("read into PRP1 at 1 TiB", rw(false, 0, 0, 1, FAR_AWAY, 0)),
        (
            "read into PRP1 straddling RAM end",
            rw(false, 0, 0, 1, ram.end() - 256, 0),
        ),
        (
            "write from PRP2 at RAM end",
            rw(true, 0, 1, 16, data, ram.end()),
        ),
        (
            "write with its PRP list at RAM end",
            rw(true, 0, 1, 24, data, ram.end()),
        ),
        (
            "write with a PRP list entry in MMIO",
            rw(true, 0, 1, 24, data, list),
        ),
        (
            "read with a PRP list entry in MMIO",
            rw(false, 0, 1, 24, data, list),
        ),
    ];
    for (name, cmd) in probes {
        nvme_probe(&mut n, tally, name, cmd);
    }

    let marker = storage::mix(checks::counter() ^ 0x6e76);
    let sector = storage::marker_sector("nvme", marker);
    let mut status = [Ok(1); 2];
    let ok = write_read_back(dma, NVME_DATA, &sector, |write| {
        let r = n.rw(write, 0, 1, data, 0);
        status[usize::from(!write)] = r;
        r == Ok(0)
    });
    tally.valid(ok);
    if ok {
        println!("storage-hostile: nvme wrote marker={marker:016x} to LBA 0, read back equal");
    } else {
        println!(
            "storage-hostile: FAIL nvme marker={marker:016x} at LBA 0: write {:?}, read {:?}, or read back different",
            status[0], status[1]
        );
    }
}

// ---- AHCI ----

const AHCI_CLB: u64 = 0x0000;
const AHCI_FB: u64 = 0x0400;
const AHCI_CTBA: u64 = 0x1000;
const AHCI_DATA: u64 = 0x2000;
const AHCI_IDENT: u64 = 0x3000;
/// Port 0's registers in the ABAR.
const PORT: usize = 0x100;
const P_CLB: usize = PORT;
const P_FB: usize = PORT + 0x08;
const P_IS: usize = PORT + 0x10;
const P_IE: usize = PORT + 0x14;
const P_CMD: usize = PORT + 0x18;
const P_TFD: usize = PORT + 0x20;
const P_SERR: usize = PORT + 0x30;
const P_CI: usize = PORT + 0x38;
const CMD_ST: u32 = 1;
const CMD_CLO: u32 = 1 << 3;
const CMD_FRE: u32 = 1 << 4;
const CMD_CR: u32 = 1 << 15;

/// What the port says after a command: PxCI, PxIS, PxTFD.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct AhciAnswer {
    ci: u32,
    is: u32,
    tfd: u32,
}

impl AhciAnswer {
    fn ok(&self) -> bool {
        !storage::ahci_refused(self.ci, self.is, self.tfd) && self.ci & 1 == 0
    }
}

struct Ahci {
    regs: Mmio,
    dma: Dma,
}

impl Ahci {
    /// AHCI mode on, port 0 stopped, its command list and FIS area in the DMA area,
    /// errors cleared, then started.
    fn start(regs: Mmio, dma: Dma) -> Result<Self, &'static str> {
        dma.zero(0, AHCI_DATA);
        regs.write32(0x04, 1 << 31);
        let a = Ahci { regs, dma };
        a.stop()?;
        a.set_clb(dma.base + AHCI_CLB);
        regs.write64(P_FB, dma.base + AHCI_FB);
        regs.write32(P_IE, 0);
        a.restart()?;
        Ok(a)
    }

    fn set_clb(&self, addr: u64) {
        self.regs.write32(P_CLB, addr as u32);
        self.regs.write32(P_CLB + 4, (addr >> 32) as u32);
    }

    fn stop(&self) -> Result<(), &'static str> {
        let cmd = self.regs.read32(P_CMD);
        self.regs.write32(P_CMD, cmd & !(CMD_ST | CMD_FRE));
        if poll(|| self.regs.read32(P_CMD) & CMD_CR == 0) {
            Ok(())
        } else {
            Err("PxCMD.CR stays set after ST was cleared")
        }
    }

    /// The recovery of AHCI 6.2.2: stop the port, clear its errors, start it again.
    fn restart(&self) -> Result<(), &'static str> {
        self.stop()?;
        self.regs.write32(P_SERR, 0xffff_ffff);
        self.regs.write32(P_IS, 0xffff_ffff);
        if self.regs.read32(P_TFD) & 0x88 != 0 {
            self.regs.write32(P_CMD, CMD_FRE | CMD_CLO);
        }
        self.regs.write32(P_CMD, CMD_FRE);
        self.regs.write32(P_CMD, CMD_FRE | CMD_ST);
        Ok(())
    }

    /// Issues `fis` in slot 0 with PRDs `prds` (address, bytes) in its table at `ctba`.
    fn issue_at(&self, ctba: u64, fis: [u32; 5], write: bool, prds: &[(u64, u32)]) -> AhciAnswer {
        let header = [
            storage::ahci_header_dw0(write, prds.len() as u16),
            0,
            ctba as u32,
            (ctba >> 32) as u32,
        ];
        self.dma.write_words(AHCI_CLB, &header);
        if ctba == self.dma.base + AHCI_CTBA {
            self.dma.write_words(AHCI_CTBA, &fis);
            for (i, &(addr, bytes)) in prds.iter().enumerate() {
                let prd = [
                    addr as u32,
                    (addr >> 32) as u32,
                    0,
                    storage::ahci_prd_dbc(bytes),
                ];
                self.dma.write_words(AHCI_CTBA + 0x80 + 16 * i as u64, &prd);
            }
        }
        self.regs.write32(P_IS, 0xffff_ffff);
        self.regs.write32(P_CI, 1);
        AhciAnswer {
            ci: self.regs.read32(P_CI),
            is: self.regs.read32(P_IS),
            tfd: self.regs.read32(P_TFD),
        }
    }

    fn issue(&self, fis: [u32; 5], write: bool, prds: &[(u64, u32)]) -> AhciAnswer {
        self.issue_at(self.dma.base + AHCI_CTBA, fis, write, prds)
    }
}

fn ahci_report(a: &Ahci, tally: &mut Tally, name: &'static str, answer: AhciAnswer) {
    let refused = storage::ahci_refused(answer.ci, answer.is, answer.tfd);
    tally.probe(name, refused);
    println!(
        "storage-hostile: ahci {name} -> {} (PxIS {:#010x}, PxTFD {:#06x}){}",
        storage::ahci_error_text(answer.is, answer.tfd),
        answer.is,
        answer.tfd,
        if refused { "" } else { ": FAIL, accepted" }
    );
    if let Err(e) = a.restart() {
        println!("storage-hostile: FAIL ahci port restart: {e}");
    }
}

fn ahci_hostile(f: &Function<Kind>, dma: Dma, ram: Region, tally: &mut Tally) {
    let Some(regs) = f.bar(5) else {
        println!("storage-hostile: FAIL ahci has no ABAR (BAR 5)");
        tally.valid(false);
        return;
    };
    let a = match Ahci::start(regs, dma) {
        Ok(a) => a,
        Err(e) => {
            println!("storage-hostile: FAIL ahci start: {e}");
            tally.valid(false);
            return;
        }
    };
    let ident = a.issue(
        storage::ahci_h2d_fis(ata::IDENTIFY, 0, 0),
        false,
        &[(dma.base + AHCI_IDENT, SECTOR as u32)],
    );
    if !ident.ok() {
        println!("storage-hostile: FAIL ahci IDENTIFY DEVICE: {ident:x?}");
        tally.valid(false);
        return;
    }
    let mut raw = [0_u32; SECTOR_WORDS];
    dma.read_words(AHCI_IDENT, &mut raw);
    let words: [u16; 256] = core::array::from_fn(|i| (raw[i / 2] >> (16 * (i % 2))) as u16);
    let sectors = storage::ata_sectors(&words);
    println!("storage-hostile: ahci IDENTIFY DEVICE: {sectors} sectors");

    let data = dma.base + AHCI_DATA;
    let read = |lba, count| storage::ahci_h2d_fis(ata::READ_DMA_EXT, lba, count);
    let write = |lba, count| storage::ahci_h2d_fis(ata::WRITE_DMA_EXT, lba, count);
    let s = SECTOR as u32;
    let answer = a.issue(read(sectors, 1), false, &[(data, s)]);
    ahci_report(&a, tally, "READ DMA EXT past end", answer);
    let answer = a.issue(write(sectors - 1, 2), true, &[(data, 2 * s)]);
    ahci_report(&a, tally, "WRITE DMA EXT across the end", answer);
    let answer = a.issue(read(0, 1), false, &[(ram.end(), s)]);
    ahci_report(&a, tally, "READ DMA EXT into a PRD at RAM end", answer);
    let answer = a.issue(write(1, 1), true, &[(FAR_AWAY, s)]);
    ahci_report(&a, tally, "WRITE DMA EXT from a PRD at 1 TiB", answer);
    let answer = a.issue(write(1, 2), true, &[(data, s), (f.bars[5], s)]);
    ahci_report(&a, tally, "WRITE DMA EXT from a PRD in MMIO", answer);
    let answer = a.issue_at(ram.end(), write(1, 1), true, &[(data, s)]);
    ahci_report(&a, tally, "command table at RAM end", answer);
    // The command list itself outside RAM: set while the port is stopped.
    let _ = a.stop();
    a.set_clb(ram.end());
    a.regs.write32(P_CMD, CMD_FRE | CMD_ST);
    a.regs.write32(P_IS, 0xffff_ffff);
    a.regs.write32(P_CI, 1);
    let answer = AhciAnswer {
        ci: a.regs.read32(P_CI),
        is: a.regs.read32(P_IS),
        tfd: a.regs.read32(P_TFD),
    };
    let _ = a.stop();
    a.set_clb(dma.base + AHCI_CLB);
    ahci_report(&a, tally, "command list at RAM end", answer);

    let marker = storage::mix(checks::counter() ^ 0x6168);
    let sector = storage::marker_sector("ahci", marker);
    let mut answers = [None; 2];
    let ok = write_read_back(dma, AHCI_DATA, &sector, |w| {
        let fis = if w { write(0, 1) } else { read(0, 1) };
        let r = a.issue(fis, w, &[(data, s)]);
        answers[usize::from(!w)] = Some(r);
        r.ok()
    });
    tally.valid(ok);
    if ok {
        println!("storage-hostile: ahci wrote marker={marker:016x} to LBA 0, read back equal");
    } else {
        println!(
            "storage-hostile: FAIL ahci marker={marker:016x} at LBA 0: write {:x?}, read {:x?}, or read back different",
            answers[0], answers[1]
        );
    }
}

// ---- virtio-blk ----

const VQ_SIZE: u16 = 8;
const VQ_DESC: u64 = 0x0000;
const VQ_AVAIL: u64 = 0x0100;
const VQ_USED: u64 = 0x0200;
const VQ_HEADER: u64 = 0x1000;
const VQ_STATUS: u64 = 0x1010;
const VQ_DATA: u64 = 0x2000;

/// How a virtio-blk request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct VirtioAnswer {
    /// The chain came back in the used ring.
    used: bool,
    /// Its status byte (0xff if the device did not write it).
    status: u8,
    /// The device status register afterwards.
    device_status: u8,
}

impl VirtioAnswer {
    fn refused(&self) -> bool {
        storage::virtio_refused(self.used, self.status, self.device_status)
    }

    fn ok(&self) -> bool {
        storage::virtio_ok(self.used, self.status, self.device_status)
    }
}

struct VirtioBlk {
    regs: VirtioRegs,
    common: Mmio,
    notify: Mmio,
    dma: Dma,
    avail_idx: u16,
    used_seen: u16,
    capacity: u64,
}

impl VirtioBlk {
    fn start(f: &Function<Kind>, dma: Dma) -> Result<Self, &'static str> {
        let regs = VirtioRegs::find(f, 8)?;
        let mut v = VirtioBlk {
            regs,
            common: regs.common,
            notify: regs.common,
            dma,
            avail_idx: 0,
            used_seen: 0,
            capacity: 0,
        };
        v.setup(dma.base + VQ_DESC)?;
        v.capacity = u64::from(regs.device.read32(0)) | u64::from(regs.device.read32(4)) << 32;
        Ok(v)
    }

    /// Resets the device, negotiates VERSION_1 only and sets queue 0 up with its
    /// descriptor table at `desc` (ring indices back to 0).
    fn setup(&mut self, desc: u64) -> Result<(), &'static str> {
        self.regs.reset()?;
        self.dma.zero(0, VQ_DATA);
        self.avail_idx = 0;
        self.used_seen = 0;
        self.regs.negotiate(pci_run::VIRTIO_F_VERSION_1)?;
        self.notify = self.regs.queue(
            0,
            VQ_SIZE,
            desc,
            self.dma.base + VQ_AVAIL,
            self.dma.base + VQ_USED,
        )?;
        self.regs.driver_ok();
        Ok(())
    }

    /// Makes the chain starting at descriptor 0 available, notifies, and reads the answer.
    fn kick(&mut self) -> VirtioAnswer {
        self.dma.write32(VQ_STATUS, 0xff);
        let slot = VQ_AVAIL + 4 + 2 * u64::from(self.avail_idx % VQ_SIZE);
        let word = self.dma.read32(slot & !3);
        let shift = 8 * (slot & 3) as u32;
        self.dma.write32(slot & !3, word & !(0xffff << shift));
        self.avail_idx = self.avail_idx.wrapping_add(1);
        self.dma.write32(VQ_AVAIL, u32::from(self.avail_idx) << 16);
        self.notify.write16(0, 0);
        let used_idx = (self.dma.read32(VQ_USED) >> 16) as u16;
        let used = used_idx != self.used_seen;
        self.used_seen = used_idx;
        VirtioAnswer {
            used,
            status: self.dma.read32(VQ_STATUS) as u8,
            device_status: self.common.read8(cc::DEVICE_STATUS),
        }
    }

    /// A read (`IN`) or write (`OUT`) of `bytes` at `sector` with its data at `data`.
    fn request(&mut self, write: bool, sector: u64, data: u64, bytes: u32) -> VirtioAnswer {
        let kind = if write {
            storage::VIRTIO_BLK_T_OUT
        } else {
            storage::VIRTIO_BLK_T_IN
        };
        let base = self.dma.base;
        self.dma
            .write_words(VQ_HEADER, &storage::virtio_blk_header(kind, sector));
        let data_flags = if write {
            0
        } else {
            storage::VIRTQ_DESC_F_WRITE
        };
        let next = storage::VIRTQ_DESC_F_NEXT;
        self.dma
            .write_words(VQ_DESC, &storage::virtq_desc(base + VQ_HEADER, 16, next, 1));
        self.dma.write_words(
            VQ_DESC + 16,
            &storage::virtq_desc(data, bytes, next | data_flags, 2),
        );
        self.dma.write_words(
            VQ_DESC + 32,
            &storage::virtq_desc(base + VQ_STATUS, 1, storage::VIRTQ_DESC_F_WRITE, 0),
        );
        self.kick()
    }
}

fn virtio_report(tally: &mut Tally, name: &'static str, answer: VirtioAnswer) {
    let refused = answer.refused();
    tally.probe(name, refused);
    let what = if answer.device_status & vs::NEEDS_RESET != 0 {
        "device status NEEDS_RESET"
    } else if answer.used {
        storage::virtio_blk_status_text(answer.status)
    } else {
        "no answer"
    };
    println!(
        "storage-hostile: virtio-blk {name} -> {what} (status byte {:#04x}, device status {:#04x}){}",
        answer.status,
        answer.device_status,
        if refused { "" } else { ": FAIL, accepted" }
    );
}

fn virtio_hostile(f: &Function<Kind>, dma: Dma, ram: Region, tally: &mut Tally) {
    let mut v = match VirtioBlk::start(f, dma) {
        Ok(v) => v,
        Err(e) => {
            println!("storage-hostile: FAIL virtio-blk start: {e}");
            tally.valid(false);
            return;
        }
    };
    println!(
        "storage-hostile: virtio-blk capacity {} sectors",
        v.capacity
    );
    let data = dma.base + VQ_DATA;
    let s = SECTOR as u32;
    let cap = v.capacity;
    let a = v.request(false, cap, data, s);
    virtio_report(tally, "read past end", a);
    let a = v.request(true, cap - 1, data, 2 * s);
    virtio_report(tally, "write across the end", a);
    let a = v.request(false, 0, ram.end(), s);
    virtio_report(tally, "read into a buffer at RAM end", a);
    let a = v.request(true, 1, FAR_AWAY, s);
    virtio_report(tally, "write from a buffer at 1 TiB", a);
    let a = v.request(false, 1, f.bars[0], s);
    virtio_report(tally, "read into a buffer in MMIO", a);
    // Two descriptors pointing at each other.
    let base = dma.base;
    let next = storage::VIRTQ_DESC_F_NEXT;
    dma.write_words(
        VQ_HEADER,
        &storage::virtio_blk_header(storage::VIRTIO_BLK_T_IN, 0),
    );
    dma.write_words(VQ_DESC, &storage::virtq_desc(base + VQ_HEADER, 16, next, 1));
    dma.write_words(
        VQ_DESC + 16,
        &storage::virtq_desc(data, s, next | storage::VIRTQ_DESC_F_WRITE, 0),
    );
    let a = v.kick();
    virtio_report(tally, "descriptor loop", a);
    // The descriptor table itself outside RAM.
    match v.setup(ram.end()) {
        Ok(_) => {
            let a = v.kick();
            virtio_report(tally, "descriptor table at RAM end", a);
        }
        Err(e) => {
            tally.probe("descriptor table at RAM end", false);
            println!("storage-hostile: virtio-blk FAIL descriptor table at RAM end: {e}");
        }
    }
    if let Err(e) = v.setup(dma.base + VQ_DESC) {
        println!("storage-hostile: FAIL virtio-blk reset after the probes: {e}");
        tally.valid(false);
        return;
    }
    println!("storage-hostile: virtio-blk reset and set up again");

    let marker = storage::mix(checks::counter() ^ 0x7669);
    let sector = storage::marker_sector("virtio-blk", marker);
    let mut answers = [None; 2];
    let ok = write_read_back(dma, VQ_DATA, &sector, |w| {
        let r = v.request(w, 0, data, s);
        answers[usize::from(!w)] = Some(r);
        r.ok()
    });
    tally.valid(ok);
    if ok {
        println!(
            "storage-hostile: virtio-blk wrote marker={marker:016x} to LBA 0, read back equal"
        );
    } else {
        println!(
            "storage-hostile: FAIL virtio-blk marker={marker:016x} at LBA 0: write {:x?}, read {:x?}, or read back different",
            answers[0], answers[1]
        );
    }
}

// ---- The modes ----

/// The DMA area, one [`AREA`] per controller, after a `FAIL` line if RAM has no room.
fn dma(platform: &Platform, mode: &str) -> Option<Dma> {
    pci_run::dma_area(platform, mode, AREA * MAX_FUNCTIONS as u64)
}

/// `storage-hostile`: every probe on every controller, a marker per disk, the summary.
pub fn hostile(platform: &Platform, pci: Result<PciHost, storage::PciDtError>) {
    let mode = "storage-hostile";
    let host = match pci {
        Ok(h) => h,
        Err(e) => {
            println!("{mode}: FAIL {e}");
            return;
        }
    };
    let Some(dma) = dma(platform, mode) else {
        return;
    };
    println!(
        "{mode}: ECAM {:#x}+{:#x}, BAR window {:#x}+{:#x}, RAM {:#x}+{:#x}",
        host.ecam.base,
        host.ecam.size,
        host.mem32.base,
        host.mem32.size,
        platform.ram.base,
        platform.ram.size
    );
    let (functions, count) = pci_run::enumerate(
        host,
        mode,
        "not a disk controller",
        storage::kind,
        Kind::name,
    );
    delay_ms(HOSTILE_DELAY_MS);
    let mut tally = Tally::default();
    for (i, f) in functions.iter().take(count).flatten().enumerate() {
        let area = dma.sub(AREA * i as u64, AREA);
        match f.kind {
            Kind::Nvme => nvme_hostile(f, area, platform.ram, &mut tally),
            Kind::Ahci => ahci_hostile(f, area, platform.ram, &mut tally),
            Kind::VirtioBlk => virtio_hostile(f, area, platform.ram, &mut tally),
        }
        let command = f.cfg.read32(PCI_COMMAND);
        println!(
            "{mode}: 00:{:02x}.0 {} done (PCI command {:#06x})",
            f.slot,
            f.kind.name(),
            command & 0xffff
        );
    }
    if count > 0 && tally.passed(1, count as u32) {
        println!(
            "{mode}: {} probes on {count} controller(s), all refused; {} marker(s) written and read back",
            tally.probes, tally.valid_ok
        );
    } else {
        println!(
            "{mode}: FAIL {} of {} probes accepted (first: {}), {} of {count} controller(s) wrote and read back their marker",
            tally.probes - tally.refused,
            tally.probes,
            tally.first_accepted.unwrap_or("none"),
            tally.valid_ok
        );
    }
}

/// `storage-neighbour`: a value to LBA 0 of the first NVMe disk, read back until a byte
/// arrives on the console (at most `NEIGHBOUR_MAX_MS`), so that it runs for as long as the
/// VM beside it, however slow the machine is.
pub fn neighbour(platform: &Platform, pci: Result<PciHost, storage::PciDtError>) {
    let mode = "storage-neighbour";
    let host = match pci {
        Ok(h) => h,
        Err(e) => {
            println!("{mode}: FAIL {e}");
            return;
        }
    };
    let Some(dma) = dma(platform, mode) else {
        return;
    };
    let (functions, count) = pci_run::enumerate(
        host,
        mode,
        "not a disk controller",
        storage::kind,
        Kind::name,
    );
    let Some(f) = functions
        .iter()
        .take(count)
        .flatten()
        .find(|f| f.kind == Kind::Nvme)
    else {
        println!("{mode}: FAIL no NVMe controller on the PCIe bus");
        return;
    };
    let Some(regs) = f.bar(0) else {
        println!("{mode}: FAIL nvme has no BAR 0");
        return;
    };
    let area = dma.sub(0, AREA);
    let mut n = match Nvme::start(regs, area) {
        Ok(n) => n,
        Err(e) => {
            println!("{mode}: FAIL nvme start: {e}");
            return;
        }
    };
    let value = storage::mix(checks::counter() ^ 0x6e62);
    let sector = storage::marker_sector("neighbour", value);
    let data = area.base + NVME_DATA;
    area.write_words(NVME_DATA, &sector);
    match n.rw(true, 0, 1, data, 0) {
        Ok(0) => println!("{mode}: wrote value={value:016x} to LBA 0"),
        other => {
            println!("{mode}: FAIL write of value={value:016x} to LBA 0: {other:?}");
            return;
        }
    }
    let Some(console) = crate::console::get() else {
        println!("{mode}: FAIL no console to wait on");
        return;
    };
    while console.read_byte().is_some() {}
    let start = checks::counter();
    let deadline = start + checks::ticks(NEIGHBOUR_MAX_MS);
    let mut rounds = 0_u64;
    loop {
        if console.read_byte().is_some() {
            break;
        }
        if checks::counter() >= deadline {
            println!("{mode}: FAIL no byte on the console in {NEIGHBOUR_MAX_MS} ms after {rounds} equal read(s): the scenario types one when the other VM is done");
            return;
        }
        area.write_words(NVME_DATA, &storage::filler(rounds));
        let status = n.rw(false, 0, 1, data, 0);
        let mut back = [0_u32; SECTOR_WORDS];
        area.read_words(NVME_DATA, &mut back);
        if status != Ok(0) || back != sector {
            println!(
                "{mode}: FAIL read {rounds} of LBA 0: status {status:?}, equal {}",
                back == sector
            );
            return;
        }
        rounds += 1;
    }
    let ms = (checks::counter() - start) / checks::ticks(1).max(1);
    println!("{mode}: read back equal {rounds} times in {ms} ms, until the console said stop");
}
