//! Host tests: the controller driven the way Linux's nvme driver drives it at probe
//! (`nvme_pci_enable`, `nvme_pci_configure_admin_queue`, `nvme_init_identify`,
//! `nvme_set_queue_count`, `nvme_create_io_queues`, `nvme_setup_prps`), and by a hostile
//! guest.

use super::*;
use crate::block::{MemDisk, Partition, SharedDisk, SECTOR};
use crate::pci::msix::tests::{with_ctx, RecIrq};
use crate::plugin::QuirkData;
use crate::sync::Mutex;
use crate::vm::fake_dma::{FakeDmaDisk, FakeDmaRam};
use crate::vm::mem::{FakeGuestMemory, GuestMemory};
use alloc::sync::Arc;
use core::sync::atomic::{AtomicU32, Ordering};

const RAM: u64 = 0x4000_0000;
const RAM_SIZE: usize = 4 << 20;
const ASQ: u64 = RAM;
const ACQ: u64 = RAM + 0x1000;
const IOSQ: u64 = RAM + 0x10000;
const IOCQ: u64 = RAM + 0x20000;
const DATA: u64 = RAM + 0x100000;
const LISTS: u64 = RAM + 0x300000;
const ADMIN_DEPTH: u32 = 32;
const IO_DEPTH: u32 = 64;
const SECTORS: u64 = 8192;
const W: AccessSize = AccessSize::Word;
const Q: AccessSize = AccessSize::DoubleWord;

/// CC as Linux's `nvme_enable_ctrl` writes it: CSS NVM, 4 KiB pages, round robin,
/// 64-byte SQ and 16-byte CQ entries.
const CC_LINUX: u32 = (6 << 16) | (4 << 20);

/// A completion entry as the host reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Cqe {
    dw0: u32,
    sq_head: u16,
    sqid: u16,
    cid: u16,
    status: Status,
}

/// A guest: its RAM, its view of the function's interrupts, and the queues it set up.
struct Host {
    nvme: VNvme,
    mem: Arc<Mutex<FakeGuestMemory>>,
    /// The memory the model sees, when it is not `mem` itself.
    ctx_mem: Option<Arc<Mutex<dyn GuestMemory>>>,
    disk: Arc<Mutex<MemDisk>>,
    irq: RecIrq,
    /// Per queue ID: SQ base, SQ size, SQ tail, CQ base, CQ size, CQ head, phase.
    queues: Vec<Option<HostQueue>>,
    next_cid: u16,
}

#[derive(Clone, Copy)]
struct HostQueue {
    sq: u64,
    sq_size: u32,
    tail: u32,
    cq: u64,
    cq_size: u32,
    head: u32,
    phase: bool,
}

fn shared(disk: &Arc<Mutex<MemDisk>>) -> SharedDisk {
    disk.clone()
}

impl Host {
    fn with_disk(
        disk: Box<dyn BlockDevice>,
        mem_disk: Arc<Mutex<MemDisk>>,
        quirks: VNvmeQuirks,
    ) -> Self {
        let mem = Arc::new(Mutex::new(FakeGuestMemory::new(
            GuestPhysAddr(RAM),
            RAM_SIZE,
        )));
        Self::with_parts(disk, mem_disk, mem, quirks)
    }

    fn with_parts(
        disk: Box<dyn BlockDevice>,
        mem_disk: Arc<Mutex<MemDisk>>,
        mem: Arc<Mutex<FakeGuestMemory>>,
        quirks: VNvmeQuirks,
    ) -> Self {
        let uuid = Some(*b"0123456789abcdef");
        Self {
            nvme: VNvme::new(disk, "VM0-DISK0", uuid, quirks).unwrap(),
            mem,
            ctx_mem: None,
            disk: mem_disk,
            irq: RecIrq {
                bus_master: true,
                ..RecIrq::default()
            },
            queues: vec![None; 65],
            next_cid: 1,
        }
    }

    /// A controller over a whole `SECTORS`-sector disk, as the runtime builds it (a
    /// partition of a shared disk).
    fn new() -> Self {
        Self::with_quirks(VNvmeQuirks::default(), false)
    }

    fn with_quirks(quirks: VNvmeQuirks, read_only: bool) -> Self {
        let disk = Arc::new(Mutex::new(MemDisk::new(SECTORS)));
        let part = Partition::new(shared(&disk), 0, SECTORS, read_only).unwrap();
        Self::with_disk(Box::new(part), disk, quirks)
    }

    fn ctx<R>(&mut self, f: impl FnOnce(&mut VNvme, &mut IoCtx<'_>, &mut RecIrq) -> R) -> R {
        let mem: Arc<Mutex<dyn GuestMemory>> = match &self.ctx_mem {
            Some(m) => m.clone(),
            None => self.mem.clone(),
        };
        let (nvme, irq) = (&mut self.nvme, &mut self.irq);
        with_ctx(&mem, |ctx| f(nvme, ctx, irq))
    }

    fn read(&mut self, off: u64, size: AccessSize) -> u64 {
        self.ctx(|n, ctx, irq| n.bar_read(ctx, irq, 0, off, size))
    }

    fn write(&mut self, off: u64, size: AccessSize, v: u64) {
        self.ctx(|n, ctx, irq| n.bar_write(ctx, irq, 0, off, size, v));
    }

    fn csts(&mut self) -> u32 {
        self.read(reg::CSTS, W) as u32
    }

    fn cfg_write(&mut self, off: u16, v: u32) {
        self.ctx(|n, ctx, irq| n.config_write(ctx, irq, off, W, v));
    }

    fn mem_write(&self, addr: u64, data: &[u8]) {
        self.mem.lock().write(GuestPhysAddr(addr), data).unwrap();
    }

    fn mem_read(&self, addr: u64, len: usize) -> Vec<u8> {
        let mut b = vec![0; len];
        self.mem.lock().read(GuestPhysAddr(addr), &mut b).unwrap();
        b
    }

    /// `nvme_pci_configure_admin_queue` + `nvme_enable_ctrl`: disable and wait for
    /// RDY = 0, program AQA/ASQ/ACQ (64-bit as two 32-bit writes, `lo_hi_writeq`),
    /// write CC without EN and read it back, then set EN and wait for RDY.
    fn enable(&mut self) {
        let cap = self.read(reg::CAP, Q);
        assert_eq!((cap >> 37) & 1, 1, "CAP.CSS: NVM command set");
        self.write(reg::CC, W, 0);
        assert_eq!(self.csts() & 1, 0);
        let aqa = (ADMIN_DEPTH - 1) | ((ADMIN_DEPTH - 1) << 16);
        self.write(reg::AQA, W, u64::from(aqa));
        for (reg, v) in [(reg::ASQ, ASQ), (reg::ACQ, ACQ)] {
            self.write(reg, W, v & 0xffff_ffff);
            self.write(reg + 4, W, v >> 32);
        }
        self.write(reg::CC, W, u64::from(CC_LINUX));
        assert_eq!(self.read(reg::CC, W) as u32, CC_LINUX);
        self.write(reg::CC, W, u64::from(CC_LINUX | 1));
        assert_eq!(self.csts() & 3, 1, "RDY without CFS");
        self.queues[0] = Some(HostQueue {
            sq: ASQ,
            sq_size: ADMIN_DEPTH,
            tail: 0,
            cq: ACQ,
            cq_size: ADMIN_DEPTH,
            head: 0,
            phase: true,
        });
    }

    /// Puts `cmd` in queue `qid` (with a fresh command ID) and rings the tail doorbell.
    fn submit(&mut self, qid: u16, mut cmd: Command) -> u16 {
        let cid = self.next_cid;
        self.next_cid = self.next_cid.wrapping_add(1);
        cmd.0[0] = (cmd.0[0] & 0xffff) | (u32::from(cid) << 16);
        let q = self.queues[usize::from(qid)].as_mut().unwrap();
        let addr = q.sq + u64::from(q.tail) * 64;
        q.tail = (q.tail + 1) % q.sq_size;
        let tail = q.tail;
        self.mem_write(addr, &cmd.to_bytes());
        self.write(DOORBELLS + 8 * u64::from(qid), W, u64::from(tail));
        cid
    }

    /// The next completion of queue `qid`, if posted (phase tag matches); consumes it
    /// and rings the CQ head doorbell.
    fn reap(&mut self, qid: u16) -> Option<Cqe> {
        let q = self.queues[usize::from(qid)].as_mut().unwrap();
        let addr = q.cq + u64::from(q.head) * 16;
        let e = {
            let mut b = [0u8; 16];
            self.mem.lock().read(GuestPhysAddr(addr), &mut b).unwrap();
            b
        };
        let dw =
            |i: usize| u32::from_le_bytes([e[i * 4], e[i * 4 + 1], e[i * 4 + 2], e[i * 4 + 3]]);
        if (dw(3) >> 16) & 1 != u32::from(q.phase) {
            return None;
        }
        q.head = (q.head + 1) % q.cq_size;
        if q.head == 0 {
            q.phase = !q.phase;
        }
        let head = q.head;
        self.write(DOORBELLS + 8 * u64::from(qid) + 4, W, u64::from(head));
        Some(Cqe {
            dw0: dw(0),
            sq_head: dw(2) as u16,
            sqid: (dw(2) >> 16) as u16,
            cid: dw(3) as u16,
            status: Status((dw(3) >> 17) as u16),
        })
    }

    /// Submits and returns its completion (which must be there).
    fn run(&mut self, qid: u16, cmd: Command) -> Cqe {
        let cid = self.submit(qid, cmd);
        let c = self.reap(qid).expect("a completion");
        assert_eq!((c.cid, c.sqid), (cid, qid));
        c
    }

    fn admin(&mut self, cmd: Command) -> Cqe {
        self.run(0, cmd)
    }

    /// `nvme_set_queue_count` + `nvme_create_queue` for queue pair `qid` (CQ first, then
    /// the SQ bound to it) with MSI-X vector `qid`.
    fn create_io_queue(&mut self, qid: u16) {
        let (sq, cq) = (
            IOSQ + u64::from(qid) * 0x1000 * 2,
            IOCQ + u64::from(qid) * 0x1000 * 2,
        );
        let size = IO_DEPTH - 1;
        let c = self.admin(create_cq(qid, size, cq, qid));
        assert_eq!(c.status, Status::SUCCESS);
        let c = self.admin(create_sq(qid, size, sq, qid));
        assert_eq!(c.status, Status::SUCCESS);
        self.queues[usize::from(qid)] = Some(HostQueue {
            sq,
            sq_size: IO_DEPTH,
            tail: 0,
            cq,
            cq_size: IO_DEPTH,
            head: 0,
            phase: true,
        });
    }

    /// Programs MSI-X vector `v` with a message to the VM's MSI frame and enables MSI-X.
    fn enable_msix(&mut self, vectors: u16) {
        for v in 0..vectors {
            let e = u64::from(MSIX_TABLE) + u64::from(v) * 16;
            self.write(e, Q, 0x0802_0040);
            self.write(e + 8, W, u64::from(v) + 100);
            self.write(e + 12, W, 0);
        }
        self.cfg_write(MSIX_CAP, 1 << 31);
    }

    /// A probe as Linux does it, with MSI-X and one I/O queue pair.
    fn probed() -> Self {
        let mut h = Self::new();
        h.enable_msix(2);
        h.enable();
        h.identify_controller();
        assert_eq!(
            h.admin(set_features(0x07, 0x0000_0000)).status,
            Status::SUCCESS
        );
        h.create_io_queue(1);
        h
    }

    fn identify_controller(&mut self) -> Vec<u8> {
        self.identify(1, 0)
    }

    fn identify(&mut self, cns: u32, nsid: u32) -> Vec<u8> {
        let mut c = cmd(0x06, DATA, 0);
        c.0[1] = nsid;
        c.0[10] = cns;
        let r = self.admin(c);
        assert_eq!(r.status, Status::SUCCESS, "identify CNS {cns}");
        self.mem_read(DATA, 4096)
    }
}

/// A command with opcode `op` and data pointers `prp1`, `prp2`.
fn cmd(op: u8, prp1: u64, prp2: u64) -> Command {
    let mut c = Command([0; 16]);
    c.0[0] = u32::from(op);
    c.0[6] = prp1 as u32;
    c.0[7] = (prp1 >> 32) as u32;
    c.0[8] = prp2 as u32;
    c.0[9] = (prp2 >> 32) as u32;
    c
}

fn create_cq(qid: u16, size0: u32, base: u64, iv: u16) -> Command {
    let mut c = cmd(0x05, base, 0);
    c.0[10] = u32::from(qid) | (size0 << 16);
    c.0[11] = 1 | 2 | (u32::from(iv) << 16);
    c
}

fn create_sq(qid: u16, size0: u32, base: u64, cqid: u16) -> Command {
    let mut c = cmd(0x01, base, 0);
    c.0[10] = u32::from(qid) | (size0 << 16);
    c.0[11] = 1 | (u32::from(cqid) << 16);
    c
}

fn set_features(fid: u32, v: u32) -> Command {
    let mut c = cmd(0x09, 0, 0);
    c.0[10] = fid;
    c.0[11] = v;
    c
}

fn get_features(fid: u32) -> Command {
    let mut c = cmd(0x0a, 0, 0);
    c.0[10] = fid;
    c
}

/// A Read (0x02) or Write (0x01) of `nlb` blocks at `slba` on namespace 1.
fn rw(op: u8, slba: u64, nlb: u32, prp1: u64, prp2: u64) -> Command {
    let mut c = cmd(op, prp1, prp2);
    c.0[1] = 1;
    c.0[10] = slba as u32;
    c.0[11] = (slba >> 32) as u32;
    c.0[12] = nlb - 1;
    c
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn le32(d: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(d[off..off + 4].try_into().unwrap())
}

fn le64(d: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(d[off..off + 8].try_into().unwrap())
}

/// The disk's bytes of sectors `lba..lba + n`.
fn disk_bytes(h: &Host, lba: u64, n: u64) -> Vec<u8> {
    let d = h.disk.lock();
    (lba..lba + n).flat_map(|s| d.sector(s).to_vec()).collect()
}

#[test]
fn linux_probe_enables_identifies_creates_queues_and_signals_per_vector() {
    let mut h = Host::new();
    h.enable_msix(2);
    h.enable();
    let id = h.identify_controller();
    // Admin completions raise vector 0 (data 100).
    assert_eq!(h.irq.msis.last(), Some(&(0x0802_0040, 100)));
    assert_eq!(&id[4..13], b"VM0-DISK0");
    // Linux asks for as many queues as CPUs; 4 requested, 4 allocated (0-based 3).
    let r = h.admin(set_features(0x07, 0x0003_0003));
    assert_eq!((r.status, r.dw0), (Status::SUCCESS, 0x0003_0003));
    h.create_io_queue(1);
    let list = h.identify(2, 0);
    assert_eq!((le32(&list, 0), le32(&list, 4)), (1, 0));
    let ns = h.identify(0, 1);
    assert_eq!(le64(&ns, 0), SECTORS);
    // An I/O completion raises vector 1 (data 101); the SQ head and ID are reported.
    let msis = h.irq.msis.len();
    let c = h.run(1, rw(0x02, 0, 1, DATA, 0));
    assert_eq!(c.status, Status::SUCCESS);
    assert_eq!((c.sq_head, c.sqid), (1, 1));
    assert_eq!(h.irq.msis[msis..], [(0x0802_0040, 101)]);
    assert!(!h.irq.intx, "no INTx while MSI-X is on");
}

#[test]
fn identify_reports_the_controller_and_the_disk_honestly() {
    let mut h = Host::probed();
    let id = h.identify_controller();
    assert_eq!(u16::from_le_bytes([id[0], id[1]]), VENDOR_ID);
    assert_eq!(&id[4..24], b"VM0-DISK0           ");
    assert_eq!(&id[24..24 + data::MODEL.len()], data::MODEL.as_bytes());
    assert_eq!(
        &id[64..64 + data::FIRMWARE.len()],
        data::FIRMWARE.as_bytes()
    );
    assert_eq!(id[77], MDTS);
    assert_eq!(le32(&id, 80), 0x0001_0400);
    assert_eq!((id[512], id[513]), (0x66, 0x44));
    assert_eq!(le32(&id, 516), 1, "NN");
    assert_eq!(
        u16::from_le_bytes([id[520], id[521]]),
        1 << 3,
        "ONCS: Write Zeroes only"
    );
    assert_eq!(u16::from_le_bytes([id[256], id[257]]), 0, "OACS");
    assert_eq!(id[525], 0b111, "VWC present, broadcast flush");
    assert_eq!(le32(&id, 536), 0, "no SGLs");
    let nqn = &id[768..];
    assert!(nqn.starts_with(b"nqn.2014-08.org.nvmexpress:12341234VM0-DISK0 "));
    let ns = h.identify(0, 1);
    assert_eq!(
        (le64(&ns, 0), le64(&ns, 8), le64(&ns, 16)),
        (SECTORS, SECTORS, SECTORS)
    );
    assert_eq!(ns[25], 0, "one LBA format");
    assert_eq!((le32(&ns, 128) >> 16) & 0xff, 9, "512-byte blocks");
    assert_eq!(ns[99], 0, "not write protected");
    let descs = h.identify(3, 1);
    assert_eq!((descs[0], descs[1]), (3, 16));
    assert_eq!(&descs[4..20], b"0123456789abcdef");
    assert_eq!(descs[20], 0, "list ends");
    // Active namespaces above 1: none. Namespace 2 and the broadcast ID do not exist.
    assert_eq!(le32(&h.identify(2, 1), 0), 0);
    for nsid in [0, 2, 0xffff_ffff] {
        let mut c = cmd(0x06, DATA, 0);
        c.0[1] = nsid;
        assert_eq!(h.admin(c).status, Status::INVALID_NAMESPACE, "nsid {nsid}");
    }
    let mut c = cmd(0x06, DATA, 0);
    c.0[10] = 0x06; // I/O command set specific: not supported
    assert_eq!(h.admin(c).status, Status::INVALID_FIELD);
}

#[test]
fn reads_and_writes_of_one_page_two_pages_and_prp_lists_move_the_right_bytes() {
    let mut h = Host::probed();
    // One page at a page boundary.
    let data = pattern(4096, 1);
    h.mem_write(DATA, &data);
    assert_eq!(h.run(1, rw(0x01, 8, 8, DATA, 0)).status, Status::SUCCESS);
    assert_eq!(disk_bytes(&h, 8, 8), data);
    // Two pages: PRP1 with an offset, the rest in PRP2.
    let data = pattern(4096, 2);
    h.mem_write(DATA + 0x10200, &data[..0xe00]);
    h.mem_write(DATA + 0x30000, &data[0xe00..]);
    assert_eq!(
        h.run(1, rw(0x01, 100, 8, DATA + 0x10200, DATA + 0x30000))
            .status,
        Status::SUCCESS
    );
    assert_eq!(disk_bytes(&h, 100, 8), data);
    // Read them back into other pages the same way.
    assert_eq!(
        h.run(1, rw(0x02, 100, 8, DATA + 0x40600, DATA + 0x50000))
            .status,
        Status::SUCCESS
    );
    let mut back = h.mem_read(DATA + 0x40600, 0xa00);
    back.extend(h.mem_read(DATA + 0x50000, 0x600));
    assert_eq!(back, data);
    // 16 pages: PRP2 is a list (scattered pages, in reverse order).
    let data = pattern(16 * 4096, 3);
    let pages: Vec<u64> = (0..16).rev().map(|i| DATA + 0x80000 + i * 0x2000).collect();
    h.mem_write(pages[0], &data[..4096]);
    let mut list = Vec::new();
    for (i, p) in pages.iter().enumerate().skip(1) {
        h.mem_write(*p, &data[i * 4096..(i + 1) * 4096]);
        list.extend_from_slice(&p.to_le_bytes());
    }
    h.mem_write(LISTS, &list);
    assert_eq!(
        h.run(1, rw(0x01, 1000, 128, pages[0], LISTS)).status,
        Status::SUCCESS
    );
    assert_eq!(disk_bytes(&h, 1000, 128), data);
}

#[test]
fn the_largest_transfer_chains_prp_list_pages() {
    let mut h = Host::probed();
    // MDTS: 128 pages. PRP1 at an offset makes 129 pages; the list starts 8 entries
    // before the end of its page (as a 256-byte-pool list can), so the 8th entry
    // points to a second list page.
    let len = MAX_TRANSFER as usize;
    let data = pattern(len, 4);
    let first = DATA + 0x800;
    let pages: Vec<u64> = (1..=128).map(|i| DATA + i * 0x1000).collect();
    h.mem_write(first, &data[..0x800]);
    let mut off = 0x800;
    for p in &pages {
        let n = (len - off).min(4096);
        h.mem_write(*p, &data[off..off + n]);
        off += n;
    }
    assert_eq!(off, len);
    let list1 = LISTS + 0x1000 - 8 * 8;
    let list2 = LISTS + 0x5000;
    let mut l1: Vec<u8> = pages[..7].iter().flat_map(|p| p.to_le_bytes()).collect();
    l1.extend_from_slice(&list2.to_le_bytes());
    h.mem_write(list1, &l1);
    let l2: Vec<u8> = pages[7..].iter().flat_map(|p| p.to_le_bytes()).collect();
    h.mem_write(list2, &l2);
    let nlb = (len / SECTOR) as u32;
    assert_eq!(
        h.run(1, rw(0x01, 2048, nlb, first, list1)).status,
        Status::SUCCESS
    );
    assert_eq!(disk_bytes(&h, 2048, u64::from(nlb)), data);
    // One block more than MDTS allows.
    let c = h.run(1, rw(0x02, 0, nlb + 1, first, list1));
    assert_eq!(c.status, Status::INVALID_FIELD);
}

/// A disk that records, at each flush, the completion entry's Dword 3 of a slot of the
/// I/O completion queue: the flush must happen before the completion is posted.
struct FlushProbe {
    inner: Partition,
    mem: Arc<Mutex<FakeGuestMemory>>,
    slot: u64,
    seen: Arc<AtomicU32>,
}

impl BlockDevice for FlushProbe {
    fn sectors(&self) -> u64 {
        self.inner.sectors()
    }
    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        self.inner.read(lba, buf)
    }
    fn write(&mut self, lba: u64, data: &[u8]) -> Result<(), BlockError> {
        self.inner.write(lba, data)
    }
    fn flush(&mut self) -> Result<(), BlockError> {
        let dw3 = self
            .mem
            .lock()
            .read_u32(GuestPhysAddr(self.slot + 12))
            .unwrap();
        self.seen.store(dw3 | 0x8000_0000, Ordering::SeqCst);
        self.inner.flush()
    }
}

use crate::block::BlockError;

#[test]
fn flush_reaches_the_disk_before_its_completion_is_posted() {
    let disk = Arc::new(Mutex::new(MemDisk::new(SECTORS)));
    let mem = Arc::new(Mutex::new(FakeGuestMemory::new(
        GuestPhysAddr(RAM),
        RAM_SIZE,
    )));
    let seen = Arc::new(AtomicU32::new(0));
    let cq1 = IOCQ + 0x2000;
    let probe = FlushProbe {
        inner: Partition::new(shared(&disk), 0, SECTORS, false).unwrap(),
        mem: mem.clone(),
        slot: cq1,
        seen: seen.clone(),
    };
    let mut h = Host::with_parts(Box::new(probe), disk, mem, VNvmeQuirks::default());
    h.enable();
    h.create_io_queue(1);
    assert_eq!(h.queues[1].unwrap().cq, cq1);
    let mut f = cmd(0x00, 0, 0);
    f.0[1] = 1;
    let c = h.run(1, f);
    assert_eq!(c.status, Status::SUCCESS);
    assert_eq!(h.disk.lock().flushes, 1);
    let at_flush = seen.load(Ordering::SeqCst);
    assert_ne!(at_flush, 0, "flush reached the disk");
    assert_eq!(
        (at_flush >> 16) & 1,
        0,
        "no completion (phase 1) in the slot yet at flush time"
    );
    // The broadcast namespace ID flushes too; another one is refused.
    f.0[1] = 0xffff_ffff;
    assert_eq!(h.run(1, f).status, Status::SUCCESS);
    f.0[1] = 2;
    assert_eq!(h.run(1, f).status, Status::INVALID_NAMESPACE);
    assert_eq!(h.disk.lock().flushes, 2);
}

#[test]
fn fua_and_a_disabled_write_cache_flush_each_write() {
    let mut h = Host::probed();
    assert_eq!(h.run(1, rw(0x01, 0, 1, DATA, 0)).status, Status::SUCCESS);
    assert_eq!(h.disk.lock().flushes, 0, "write cache on: no flush");
    let mut fua = rw(0x01, 0, 1, DATA, 0);
    fua.0[12] |= 1 << 30;
    assert_eq!(h.run(1, fua).status, Status::SUCCESS);
    assert_eq!(h.disk.lock().flushes, 1);
    assert_eq!(h.admin(set_features(0x06, 0)).status, Status::SUCCESS);
    assert_eq!(h.admin(get_features(0x06)).dw0, 0);
    assert_eq!(h.run(1, rw(0x01, 0, 1, DATA, 0)).status, Status::SUCCESS);
    assert_eq!(h.disk.lock().flushes, 2);
}

#[test]
fn write_zeroes_clears_the_blocks() {
    let mut h = Host::probed();
    h.mem_write(DATA, &[0xaa; 4096]);
    assert_eq!(h.run(1, rw(0x01, 16, 8, DATA, 0)).status, Status::SUCCESS);
    let mut wz = rw(0x08, 18, 4, 0, 0);
    assert_eq!(h.run(1, wz).status, Status::SUCCESS);
    let d = disk_bytes(&h, 16, 8);
    assert!(d[..1024].iter().all(|&b| b == 0xaa));
    assert!(d[1024..3072].iter().all(|&b| b == 0));
    assert!(d[3072..].iter().all(|&b| b == 0xaa));
    wz.0[10] = (SECTORS - 2) as u32;
    assert_eq!(h.run(1, wz).status, Status::LBA_OUT_OF_RANGE);
}

#[test]
fn data_pointers_outside_ram_are_data_transfer_errors() {
    let mut h = Host::probed();
    let outside = RAM + RAM_SIZE as u64;
    for c in [
        rw(0x02, 0, 1, outside, 0),
        rw(0x01, 0, 1, outside, 0),
        rw(0x02, 0, 8, DATA + 0x800, outside),
        // A PRP list outside RAM.
        rw(0x02, 0, 32, DATA, outside),
        rw(0x02, 0, 1, 0xffff_ffff_ffff_f000, 0),
    ] {
        assert_eq!(h.run(1, c).status, Status::DATA_TRANSFER_ERROR);
    }
    // Identify into nowhere.
    let mut identify = cmd(0x06, 0x1000, 0);
    identify.0[10] = 1;
    assert_eq!(h.admin(identify).status, Status::DATA_TRANSFER_ERROR);
    // Misplaced entries: PRP1 not dword aligned, PRP2 data pointer with an offset, a
    // list entry with an offset.
    assert_eq!(
        h.run(1, rw(0x02, 0, 1, DATA + 2, 0)).status,
        Status::PRP_OFFSET_INVALID
    );
    assert_eq!(
        h.run(1, rw(0x02, 0, 8, DATA + 0x800, DATA + 0x2200)).status,
        Status::PRP_OFFSET_INVALID
    );
    h.mem_write(LISTS, &(DATA + 0x10).to_le_bytes());
    assert_eq!(
        h.run(1, rw(0x02, 0, 24, DATA, LISTS)).status,
        Status::PRP_OFFSET_INVALID
    );
    // The controller is still working.
    assert_eq!(h.run(1, rw(0x02, 0, 1, DATA, 0)).status, Status::SUCCESS);
    assert_eq!(h.csts() & 2, 0);
}

#[test]
fn a_prp_list_that_points_to_itself_ends() {
    let mut h = Host::probed();
    // A full list page whose last entry points back to the page itself: the walk
    // follows it only as far as the transfer needs.
    let mut page: Vec<u8> = (0..511)
        .flat_map(|i: u64| (DATA + (i % 64) * 0x1000).to_le_bytes())
        .collect();
    page.extend_from_slice(&LISTS.to_le_bytes());
    h.mem_write(LISTS, &page);
    let nlb = (MAX_TRANSFER / SECTOR as u64) as u32;
    assert_eq!(
        h.run(1, rw(0x02, 0, nlb, DATA, LISTS)).status,
        Status::SUCCESS
    );
    // A list starting at the last entry of a page can only point on: refused.
    h.mem_write(LISTS + 0xff8, &(LISTS + 0xff8).to_le_bytes());
    let c = h.run(1, rw(0x02, 0, 64, DATA, LISTS + 0xff8));
    assert_eq!(c.status, Status::PRP_OFFSET_INVALID);
}

/// A disk that reports fewer sectors than it stores: only the controller's own check
/// keeps the guest inside the namespace.
struct Shrunk(MemDisk);

impl BlockDevice for Shrunk {
    fn sectors(&self) -> u64 {
        self.0.sectors() - 8
    }
    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        self.0.read(lba, buf)
    }
    fn write(&mut self, lba: u64, data: &[u8]) -> Result<(), BlockError> {
        self.0.write(lba, data)
    }
    fn flush(&mut self) -> Result<(), BlockError> {
        self.0.flush()
    }
}

#[test]
fn the_namespace_ends_where_the_block_device_says() {
    let disk = Arc::new(Mutex::new(MemDisk::new(SECTORS)));
    let mut h = Host::with_disk(
        Box::new(Shrunk(MemDisk::new(SECTORS))),
        disk,
        VNvmeQuirks::default(),
    );
    h.enable();
    h.create_io_queue(1);
    assert_eq!(le64(&h.identify(0, 1), 0), SECTORS - 8);
    let end = SECTORS - 8;
    for op in [0x01, 0x02, 0x08] {
        assert_eq!(
            h.run(1, rw(op, end, 1, DATA, 0)).status,
            Status::LBA_OUT_OF_RANGE
        );
        assert_eq!(
            h.run(1, rw(op, end - 1, 1, DATA, 0)).status,
            Status::SUCCESS
        );
    }
}

#[test]
fn lbas_past_the_end_are_out_of_range() {
    let mut h = Host::probed();
    for (slba, nlb) in [
        (SECTORS, 1),
        (SECTORS - 1, 2),
        (u64::MAX, 1),
        (u64::MAX - 1, 0x10000),
    ] {
        assert_eq!(
            h.run(1, rw(0x02, slba, nlb, DATA, 0)).status,
            Status::LBA_OUT_OF_RANGE
        );
        assert_eq!(
            h.run(1, rw(0x01, slba, nlb, DATA, 0)).status,
            Status::LBA_OUT_OF_RANGE
        );
    }
    assert_eq!(
        h.run(1, rw(0x02, SECTORS - 1, 1, DATA, 0)).status,
        Status::SUCCESS
    );
}

#[test]
fn wrong_namespaces_opcodes_sgls_and_fused_commands_are_refused() {
    let mut h = Host::probed();
    let mut c = rw(0x02, 0, 1, DATA, 0);
    c.0[1] = 2;
    assert_eq!(h.run(1, c).status, Status::INVALID_NAMESPACE);
    assert_eq!(
        h.run(1, rw(0x09, 0, 1, DATA, 0)).status,
        Status::INVALID_OPCODE,
        "DSM not offered"
    );
    assert_eq!(
        h.admin(cmd(0x80, 0, 0)).status,
        Status::INVALID_OPCODE,
        "Format NVM"
    );
    let mut sgl = rw(0x02, 0, 1, DATA, 0);
    sgl.0[0] |= 1 << 14;
    assert_eq!(h.run(1, sgl).status, Status::INVALID_FIELD);
    let mut fused = rw(0x02, 0, 1, DATA, 0);
    fused.0[0] |= 1 << 8;
    assert_eq!(h.run(1, fused).status, Status::INVALID_FIELD);
    assert!(Status::INVALID_FIELD.dnr());
}

#[test]
fn queue_creation_and_deletion_check_ids_sizes_vectors_and_use() {
    let mut h = Host::new();
    h.enable();
    let r = h.admin(set_features(0x07, 0x0001_0001));
    assert_eq!(r.dw0, 0x0001_0001, "two queues of each kind allocated");
    let cq = IOCQ;
    for (c, want) in [
        (create_cq(0, 15, cq, 1), Status::INVALID_QUEUE_ID),
        (create_cq(3, 15, cq, 1), Status::INVALID_QUEUE_ID),
        (create_cq(0xffff, 15, cq, 1), Status::INVALID_QUEUE_ID),
        (create_cq(1, 0, cq, 1), Status::INVALID_QUEUE_SIZE),
        (create_cq(1, 1024, cq, 1), Status::INVALID_QUEUE_SIZE),
        (
            create_cq(1, 15, cq, MSIX_VECTORS),
            Status::INVALID_INTERRUPT_VECTOR,
        ),
        (create_cq(1, 15, cq + 0x80, 1), Status::PRP_OFFSET_INVALID),
        (create_sq(1, 15, IOSQ, 1), Status::INVALID_CQ),
        (create_sq(1, 15, IOSQ, 0), Status::INVALID_CQ),
    ] {
        assert_eq!(h.admin(c).status, want, "{c:x?}");
    }
    let mut not_contiguous = create_cq(1, 15, cq, 1);
    not_contiguous.0[11] &= !1;
    assert_eq!(h.admin(not_contiguous).status, Status::INVALID_FIELD);
    assert_eq!(
        h.admin(create_cq(1, 1023, cq, 1)).status,
        Status::SUCCESS,
        "MQES + 1 entries"
    );
    assert_eq!(
        h.admin(create_cq(1, 15, cq, 1)).status,
        Status::INVALID_QUEUE_ID,
        "in use"
    );
    assert_eq!(h.admin(create_sq(1, 15, IOSQ, 1)).status, Status::SUCCESS);
    // Number of Queues cannot change once queues exist.
    assert_eq!(
        h.admin(set_features(0x07, 0)).status,
        Status::COMMAND_SEQUENCE_ERROR
    );
    let mut del = cmd(0x04, 0, 0);
    del.0[10] = 1;
    assert_eq!(
        h.admin(del).status,
        Status::INVALID_QUEUE_DELETION,
        "SQ 1 still uses it"
    );
    let mut del_sq = cmd(0x00, 0, 0);
    del_sq.0[10] = 1;
    assert_eq!(h.admin(del_sq).status, Status::SUCCESS);
    assert_eq!(
        h.admin(del_sq).status,
        Status::INVALID_QUEUE_ID,
        "already gone"
    );
    assert_eq!(h.admin(del).status, Status::SUCCESS);
    for qid in [0, 2, 0xffff] {
        del.0[10] = qid;
        assert_eq!(h.admin(del).status, Status::INVALID_QUEUE_ID);
        del_sq.0[10] = qid;
        assert_eq!(h.admin(del_sq).status, Status::INVALID_QUEUE_ID);
    }
}

#[test]
fn a_doorbell_value_past_the_queue_end_is_controller_fatal_until_reset() {
    let mut h = Host::probed();
    // SQ 1 has 64 entries: tail 64 is past its end.
    h.write(DOORBELLS + 8, W, 64);
    assert_eq!(h.csts() & 3, 3, "RDY and CFS");
    // Nothing is processed any more.
    h.mem_write(IOSQ + 0x2000, &rw(0x02, 0, 1, DATA, 0).to_bytes());
    h.write(DOORBELLS + 8, W, 1);
    assert_eq!(h.reap(1), None);
    // Linux's reset: disable, re-enable, queues again.
    h.enable();
    h.queues[1] = None;
    h.create_io_queue(1);
    assert_eq!(h.run(1, rw(0x02, 0, 1, DATA, 0)).status, Status::SUCCESS);
    // A CQ head moved past the entries posted.
    h.write(DOORBELLS + 12, W, 5);
    assert_eq!(h.csts() & 2, 2);
    h.enable();
    // A huge value, and a 64-bit doorbell write: no panic, CFS.
    h.write(DOORBELLS, Q, u64::MAX);
    assert_eq!(h.csts() & 2, 2);
}

#[test]
fn admin_queue_in_memory_the_guest_does_not_have_is_fatal() {
    let mut h = Host::new();
    h.write(reg::AQA, W, 0x001f_001f);
    h.write(reg::ASQ, Q, 0x1000);
    h.write(reg::ACQ, Q, ACQ);
    h.write(reg::CC, W, u64::from(CC_LINUX | 1));
    assert_eq!(h.csts() & 3, 1);
    h.write(DOORBELLS, W, 1);
    assert_eq!(h.csts() & 2, 2, "the SQ entry could not be fetched");
    // A completion queue outside RAM.
    let mut h = Host::new();
    h.write(reg::AQA, W, 0x001f_001f);
    h.write(reg::ASQ, Q, ASQ);
    h.write(reg::ACQ, Q, !0xfff);
    h.write(reg::CC, W, u64::from(CC_LINUX | 1));
    h.mem_write(ASQ, &cmd(0x18, 0, 0).to_bytes());
    h.write(DOORBELLS, W, 1);
    assert_eq!(h.csts() & 2, 2, "the completion could not be posted");
}

#[test]
fn enabling_with_a_configuration_the_controller_cannot_run_sets_cfs() {
    for (aqa, cc) in [
        (0, CC_LINUX),
        (0x001f_001f, CC_LINUX | (1 << 7)),
        (0x001f_001f, CC_LINUX | (1 << 4)),
    ] {
        let mut h = Host::new();
        h.write(reg::AQA, W, aqa);
        h.write(reg::CC, W, u64::from(cc | 1));
        assert_eq!(h.csts() & 3, 2, "AQA {aqa:#x} CC {cc:#x}");
        // A reset clears it.
        h.write(reg::CC, W, 0);
        assert_eq!(h.csts(), 0);
    }
}

#[test]
fn a_full_completion_queue_holds_commands_until_the_host_frees_entries() {
    let mut h = Host::new();
    h.enable();
    let size0 = 3; // 4 entries: 3 usable
    assert_eq!(
        h.admin(create_cq(1, size0, IOCQ, 0)).status,
        Status::SUCCESS
    );
    assert_eq!(h.admin(create_sq(1, 15, IOSQ, 1)).status, Status::SUCCESS);
    h.queues[1] = Some(HostQueue {
        sq: IOSQ,
        sq_size: 16,
        tail: 0,
        cq: IOCQ,
        cq_size: 4,
        head: 0,
        phase: true,
    });
    // Five reads without reaping: three complete, two wait in the SQ.
    for _ in 0..5 {
        let q = h.queues[1].as_mut().unwrap();
        let addr = q.sq + u64::from(q.tail) * 64;
        q.tail += 1;
        h.mem_write(addr, &rw(0x02, 0, 1, DATA, 0).to_bytes());
    }
    h.write(DOORBELLS + 8, W, 5);
    assert_eq!(h.nvme.sqs[1].unwrap().head, 3);
    // Reaping frees entries: the rest complete, in order, with the right SQ heads.
    let heads: Vec<u16> = (0..5).map(|_| h.reap(1).unwrap().sq_head).collect();
    assert_eq!(heads, [1, 2, 3, 4, 5]);
    assert_eq!(h.reap(1), None);
}

#[test]
fn intx_follows_unconsumed_completions_and_intms() {
    let mut h = Host::new();
    h.enable();
    assert!(!h.irq.intx);
    h.submit(0, cmd(0x18, 0, 0));
    assert!(h.irq.intx, "a completion waits");
    h.write(reg::INTMS, W, 1);
    assert!(!h.irq.intx, "masked");
    assert_eq!(h.read(reg::INTMC, W), 1);
    h.write(reg::INTMC, W, 1);
    assert!(h.irq.intx, "unmasked, still waiting");
    // Linux's interrupt handler consumes it and writes the head doorbell.
    h.reap(0).unwrap();
    assert!(!h.irq.intx);
    // A CQ without interrupts enabled never raises the line.
    let mut c = create_cq(1, 15, IOCQ, 0);
    c.0[11] &= !2;
    assert_eq!(h.admin(c).status, Status::SUCCESS);
    assert_eq!(h.admin(create_sq(1, 15, IOSQ, 1)).status, Status::SUCCESS);
    h.queues[1] = Some(HostQueue {
        sq: IOSQ,
        sq_size: 16,
        tail: 0,
        cq: IOCQ,
        cq_size: 16,
        head: 0,
        phase: true,
    });
    h.submit(1, rw(0x02, 0, 1, DATA, 0));
    assert!(!h.irq.intx);
    // Enabling MSI-X drops INTx even with completions waiting.
    h.submit(0, cmd(0x18, 0, 0));
    assert!(h.irq.intx);
    h.cfg_write(MSIX_CAP, 1 << 31);
    assert!(!h.irq.intx);
}

#[test]
fn a_masked_msix_vector_is_sent_when_unmasked() {
    let mut h = Host::new();
    h.enable_msix(1);
    h.enable();
    h.write(u64::from(MSIX_TABLE) + 12, W, 1);
    let before = h.irq.msis.len();
    h.admin(cmd(0x18, 0, 0));
    assert_eq!(h.irq.msis.len(), before);
    assert_eq!(h.read(u64::from(MSIX_PBA), Q), 1);
    h.write(u64::from(MSIX_TABLE) + 12, W, 0);
    assert_eq!(h.irq.msis.len(), before + 1);
    assert_eq!(h.read(u64::from(MSIX_PBA), Q), 0);
}

#[test]
fn disabling_the_controller_drops_the_io_queues() {
    let mut h = Host::probed();
    h.write(reg::CC, W, u64::from(CC_LINUX));
    assert_eq!(h.csts() & 1, 0);
    assert!(h.nvme.sqs.iter().all(Option::is_none));
    assert!(h.nvme.cqs.iter().all(Option::is_none));
    // AQA/ASQ/ACQ survive: re-enabling needs only EN.
    h.write(reg::CC, W, u64::from(CC_LINUX | 1));
    assert_eq!(h.csts() & 3, 1);
    h.queues[0] = Some(HostQueue {
        tail: 0,
        head: 0,
        phase: true,
        ..h.queues[0].unwrap()
    });
    // Queue 1's doorbell now names no queue: an error event, not a fatal error.
    h.write(DOORBELLS + 8, W, 1);
    assert_eq!(h.csts() & 2, 0);
    h.queues[1] = None;
    h.create_io_queue(1);
    assert_eq!(h.run(1, rw(0x02, 0, 1, DATA, 0)).status, Status::SUCCESS);
}

#[test]
fn shutdown_flushes_the_disk_and_reports_completion() {
    let mut h = Host::probed();
    h.write(reg::CC, W, u64::from(CC_LINUX | 1 | (1 << 14)));
    assert_eq!((h.csts() >> 2) & 3, 2, "SHST: complete");
    assert_eq!(h.disk.lock().flushes, 1);
    // A reset after a clean shutdown is not an unsafe one.
    h.nvme.reset();
    assert_eq!(h.nvme.health.unsafe_shutdowns, 0);
    assert_eq!(h.csts(), 0);
    let mut h = Host::probed();
    h.nvme.reset();
    assert_eq!(h.nvme.health.unsafe_shutdowns, 1);
    assert_eq!(h.nvme.health.power_cycles, 2);
}

#[test]
fn read_only_disks_are_write_protected() {
    let mut h = Host::with_quirks(VNvmeQuirks::default(), true);
    h.enable();
    h.create_io_queue(1);
    assert_eq!(h.identify(0, 1)[99], 1, "NSATTR: write protected");
    // Refused before any DMA: a buffer outside RAM does not matter.
    let outside = RAM + RAM_SIZE as u64;
    assert_eq!(
        h.run(1, rw(0x01, 0, 1, outside, 0)).status,
        Status::NAMESPACE_WRITE_PROTECTED
    );
    assert_eq!(
        h.run(1, rw(0x01, 0, 1, DATA, 0)).status,
        Status::NAMESPACE_WRITE_PROTECTED
    );
    assert_eq!(
        h.run(1, rw(0x08, 0, 1, 0, 0)).status,
        Status::NAMESPACE_WRITE_PROTECTED
    );
    assert_eq!(h.run(1, rw(0x02, 0, 1, DATA, 0)).status, Status::SUCCESS);
}

#[test]
fn backend_errors_become_media_errors() {
    let mut h = Host::probed();
    h.disk.lock().fail_with = Some(0x281);
    let r = h.run(1, rw(0x02, 0, 1, DATA, 0));
    assert_eq!(r.status, Status::UNRECOVERED_READ_ERROR);
    assert!(!r.status.dnr(), "the host may retry");
    assert_eq!(
        h.run(1, rw(0x01, 0, 1, DATA, 0)).status,
        Status::WRITE_FAULT
    );
    let mut f = cmd(0x00, 0, 0);
    f.0[1] = 1;
    assert_eq!(h.run(1, f).status, Status::WRITE_FAULT);
    h.disk.lock().fail_with = None;
    let mut log = cmd(0x02, DATA, 0);
    log.0[1] = 0xffff_ffff;
    log.0[10] = 0x02 | (127 << 16);
    assert_eq!(h.admin(log).status, Status::SUCCESS);
    let smart = h.mem_read(DATA, 512);
    assert_eq!(le64(&smart, 160), 3, "media errors");
    assert_eq!(le64(&smart, 176), 3, "error log entries");
}

#[test]
fn log_pages_report_counters_errors_and_the_firmware_slot() {
    let mut h = Host::probed();
    for _ in 0..3 {
        h.run(1, rw(0x02, 0, 8, DATA, 0));
    }
    h.run(1, rw(0x01, 0, 2, DATA, 0));
    let bad = h.run(1, rw(0x02, SECTORS, 1, DATA, 0));
    let get = |h: &mut Host, lid: u32, dwords: u32, offset: u32| {
        let mut c = cmd(0x02, DATA, 0);
        c.0[1] = 0xffff_ffff;
        c.0[10] = lid | ((dwords - 1) << 16);
        c.0[12] = offset;
        h.mem_write(DATA, &[0xee; 512]);
        h.admin(c).status
    };
    assert_eq!(get(&mut h, 0x02, 128, 0), Status::SUCCESS);
    let smart = h.mem_read(DATA, 512);
    assert_eq!(
        le64(&smart, 32),
        1,
        "24 units read, in thousands rounded up"
    );
    assert_eq!(le64(&smart, 64), 3, "read commands");
    assert_eq!(le64(&smart, 80), 1, "write commands");
    assert_eq!(le64(&smart, 112), 1, "power cycles");
    assert_eq!(get(&mut h, 0x01, 16, 0), Status::SUCCESS);
    let err = h.mem_read(DATA, 64);
    assert_eq!(le64(&err, 0), 1, "error count");
    assert_eq!(u16::from_le_bytes([err[8], err[9]]), 1, "SQ ID");
    assert_eq!(u16::from_le_bytes([err[10], err[11]]), bad.cid);
    assert_eq!(
        u16::from_le_bytes([err[12], err[13]]) >> 1,
        Status::LBA_OUT_OF_RANGE.0
    );
    assert_eq!(le64(&err, 16), SECTORS, "LBA");
    assert_eq!(get(&mut h, 0x03, 128, 0), Status::SUCCESS);
    let fw = h.mem_read(DATA, 512);
    assert_eq!(fw[0], 1);
    assert_eq!(&fw[8..8 + data::FIRMWARE.len()], data::FIRMWARE.as_bytes());
    // Offsets and lengths: a partial read leaves the rest of the buffer alone.
    assert_eq!(get(&mut h, 0x03, 1, 8), Status::SUCCESS);
    let part = h.mem_read(DATA, 8);
    assert_eq!(&part[..4], &fw[8..12]);
    assert_eq!(&part[4..], &[0xee; 4]);
    assert_eq!(get(&mut h, 0x03, 1, 512), Status::INVALID_FIELD);
    assert_eq!(get(&mut h, 0x03, 1, 2), Status::INVALID_FIELD);
    assert_eq!(get(&mut h, 0xc0, 1, 0), Status::INVALID_LOG_PAGE);
}

#[test]
fn features_read_back_and_unsupported_ones_are_invalid() {
    let mut h = Host::probed();
    for (fid, v) in [
        (0x01, 0x0302_0103),
        (0x08, 0x0a05),
        (0x0b, 0x1ff),
        (0x02, 0x20),
    ] {
        assert_eq!(h.admin(set_features(fid, v)).status, Status::SUCCESS);
        assert_eq!(h.admin(get_features(fid)).dw0, v, "fid {fid:#x}");
    }
    assert_eq!(
        h.admin(get_features(0x07)).dw0,
        0,
        "one queue pair from the probe"
    );
    assert_eq!(
        h.admin(get_features(0x06)).dw0,
        1,
        "write cache on by default"
    );
    assert_eq!(
        h.admin(set_features(0x02, 1)).status,
        Status::INVALID_FIELD,
        "power state 1"
    );
    for fid in [0x03, 0x04, 0x05, 0x09, 0x0a, 0x0c, 0x80, 0xff] {
        assert_eq!(
            h.admin(set_features(fid, 0)).status,
            Status::INVALID_FIELD,
            "set {fid:#x}"
        );
        assert_eq!(
            h.admin(get_features(fid)).status,
            Status::INVALID_FIELD,
            "get {fid:#x}"
        );
    }
    let mut save = set_features(0x01, 0);
    save.0[10] |= 1 << 31;
    assert_eq!(h.admin(save).status, Status::FEATURE_NOT_SAVEABLE);
    let mut default = get_features(0x08);
    default.0[10] |= 1 << 8;
    assert_eq!(h.admin(default).dw0, 0, "default coalescing");
    let mut caps = get_features(0x08);
    caps.0[10] |= 3 << 8;
    assert_eq!(h.admin(caps).dw0, 1 << 2, "changeable");
    assert_eq!(
        h.admin(set_features(0x07, 0xffff)).status,
        Status::INVALID_FIELD
    );
}

#[test]
fn async_event_requests_wait_for_an_event_and_are_limited() {
    let mut h = Host::probed();
    let cids: Vec<u16> = (0..MAX_AERS)
        .map(|_| h.submit(0, cmd(0x0c, 0, 0)))
        .collect();
    assert_eq!(h.reap(0), None, "held");
    assert_eq!(h.admin(cmd(0x0c, 0, 0)).status, Status::AER_LIMIT_EXCEEDED);
    let mut abort = cmd(0x08, 0, 0);
    abort.0[10] = u32::from(cids[0]) << 16;
    let r = h.admin(abort);
    assert_eq!((r.status, r.dw0 & 1), (Status::SUCCESS, 1), "not aborted");
    // A doorbell of a queue that does not exist: error event, info 00h, log page 01h.
    h.write(DOORBELLS + 8 * 9, W, 1);
    let e = h.reap(0).unwrap();
    assert_eq!(
        (e.cid, e.status, e.dw0),
        (cids[0], Status::SUCCESS, 0x01_00_00)
    );
    assert_eq!(h.reap(0), None);
    assert_eq!(h.csts() & 2, 0);
    // Further Error events wait until the host reads the Error Information log; with
    // Retain Asynchronous Event set, reading it does not count.
    h.write(DOORBELLS + 8 * 10 + 4, W, 1);
    assert_eq!(h.reap(0), None, "masked");
    let mut log = cmd(0x02, DATA, 0);
    log.0[10] = 0x01 | (1 << 15) | (15 << 16);
    assert_eq!(h.admin(log).status, Status::SUCCESS);
    let entry = h.mem_read(DATA, 64);
    assert_eq!(
        le64(&entry, 0),
        3,
        "the refused AER and both doorbell errors"
    );
    assert_eq!(u16::from_le_bytes([entry[8], entry[9]]), 10, "queue ID");
    assert_eq!(
        u16::from_le_bytes([entry[10], entry[11]]),
        0xffff,
        "no command"
    );
    h.write(DOORBELLS + 8 * 10 + 4, W, 1);
    assert_eq!(h.reap(0), None, "still masked");
    log.0[10] &= !(1 << 15);
    assert_eq!(h.admin(log).status, Status::SUCCESS);
    h.write(DOORBELLS + 8 * 10 + 4, W, 1);
    let e = h.reap(0).unwrap();
    assert_eq!((e.cid, e.dw0), (cids[1], 0x01_00_00));
}

#[test]
fn commands_wait_for_bus_mastering() {
    let mut h = Host::new();
    h.enable();
    h.irq.bus_master = false;
    h.submit(0, cmd(0x18, 0, 0));
    assert_eq!(h.reap(0), None);
    h.irq.bus_master = true;
    h.submit(0, cmd(0x18, 0, 0));
    assert!(h.reap(0).is_some() && h.reap(0).is_some());
}

#[test]
fn registers_read_at_any_width() {
    let mut h = Host::new();
    let cap = h.read(reg::CAP, Q);
    assert_eq!(h.read(0, W) | (h.read(4, W) << 32), cap);
    assert_eq!(cap & 0xffff, 1023, "MQES");
    assert_eq!((cap >> 16) & 1, 1, "CQR");
    assert_eq!((cap >> 32) & 0xf, 0, "DSTRD");
    assert_eq!(h.read(reg::VS, W), 0x0001_0400);
    assert_eq!(h.read(reg::VS + 2, AccessSize::HalfWord), 1);
    h.write(reg::ASQ, Q, 0x1234_5678_9abc_dfff);
    assert_eq!(h.read(reg::ASQ, Q), 0x1234_5678_9abc_d000);
    // Byte writes are ignored; doorbells read as 0.
    h.write(reg::AQA, AccessSize::Byte, 0xff);
    assert_eq!(h.read(reg::AQA, W), 0);
    assert_eq!(h.read(DOORBELLS, W), 0);
    assert_eq!(h.nvme.config_read(0x40, W) & 0xff, 0x11, "MSI-X capability");
    assert_eq!(h.nvme.capabilities_pointer(), 0x40);
    let ids = h.nvme.ids();
    assert_eq!(ids.class, 0x01_08_02);
}

#[test]
fn quirks_limit_queue_depth_and_hide_the_write_cache() {
    let mut q = VNvmeQuirks::default();
    let quirk = QuirkData::Storage {
        max_queue_depth: 32,
        no_write_cache: true,
        force_512_sectors: true,
        ignore_subnqn: true,
        ready_delay_ms: 2300,
        dma_alias_function: Some(1),
    };
    assert!(q.apply(&quirk));
    assert!(!q.apply(&QuirkData::Soc { cpu_on_delay_us: 1 }));
    assert_eq!(
        q,
        VNvmeQuirks {
            max_queue_depth: 32,
            no_write_cache: true
        }
    );
    let mut h = Host::with_quirks(q, false);
    assert_eq!(h.read(reg::CAP, W) & 0xffff, 31);
    h.enable();
    assert_eq!(
        h.identify_controller()[525],
        0b110,
        "no volatile write cache"
    );
    assert_eq!(h.admin(get_features(0x06)).status, Status::INVALID_FIELD);
    assert_eq!(
        h.admin(create_cq(1, 32, IOCQ, 0)).status,
        Status::INVALID_QUEUE_SIZE
    );
    h.create_io_queue_sized(1, 31);
    assert_eq!(h.run(1, rw(0x01, 0, 1, DATA, 0)).status, Status::SUCCESS);
    assert_eq!(
        h.disk.lock().flushes,
        1,
        "no cache: the write is flushed before completion"
    );
}

impl Host {
    fn create_io_queue_sized(&mut self, qid: u16, size0: u32) {
        assert_eq!(
            self.admin(create_cq(qid, size0, IOCQ, 0)).status,
            Status::SUCCESS
        );
        assert_eq!(
            self.admin(create_sq(qid, size0, IOSQ, qid)).status,
            Status::SUCCESS
        );
        self.queues[usize::from(qid)] = Some(HostQueue {
            sq: IOSQ,
            sq_size: size0 + 1,
            tail: 0,
            cq: IOCQ,
            cq_size: size0 + 1,
            head: 0,
            phase: true,
        });
    }
}

#[test]
fn bad_serial_numbers_are_refused() {
    let disk = || Box::new(MemDisk::new(8)) as Box<dyn BlockDevice>;
    let q = VNvmeQuirks::default();
    assert_eq!(
        VNvme::new(disk(), "", None, q).err(),
        Some(VNvmeError::Serial)
    );
    assert_eq!(
        VNvme::new(disk(), "123456789012345678901", None, q).err(),
        Some(VNvmeError::Serial)
    );
    assert_eq!(
        VNvme::new(disk(), "tab\there", None, q).err(),
        Some(VNvmeError::Serial)
    );
    assert!(VNvme::new(disk(), "12345678901234567890", None, q).is_ok());
}

#[test]
fn io_queues_need_the_entry_sizes_in_cc() {
    let mut h = Host::new();
    h.write(reg::AQA, W, 0x001f_001f);
    h.write(reg::ASQ, Q, ASQ);
    h.write(reg::ACQ, Q, ACQ);
    // Enabled without IOSQES/IOCQES: the admin queue works, I/O queues cannot be made.
    h.write(reg::CC, W, 1);
    h.queues[0] = Some(HostQueue {
        sq: ASQ,
        sq_size: ADMIN_DEPTH,
        tail: 0,
        cq: ACQ,
        cq_size: ADMIN_DEPTH,
        head: 0,
        phase: true,
    });
    assert_eq!(
        h.admin(create_cq(1, 15, IOCQ, 0)).status,
        Status::INVALID_FIELD
    );
    // CC cannot change while enabled (only SHN may).
    h.write(reg::CC, W, u64::from(CC_LINUX | 1));
    assert_eq!(h.read(reg::CC, W), 1);
    assert_eq!(
        h.admin(create_cq(1, 15, IOCQ, 0)).status,
        Status::INVALID_FIELD
    );
    h.enable();
    assert_eq!(h.admin(create_cq(1, 15, IOCQ, 0)).status, Status::SUCCESS);
}

#[test]
fn namespace_ids_outside_the_identify_and_smart_rules_are_refused() {
    let mut h = Host::probed();
    for nsid in [0xffff_fffe, 0xffff_ffff] {
        let mut c = cmd(0x06, DATA, 0);
        c.0[1] = nsid;
        c.0[10] = 2;
        assert_eq!(h.admin(c).status, Status::INVALID_NAMESPACE);
    }
    let mut smart = cmd(0x02, DATA, 0);
    smart.0[10] = 0x02 | (127 << 16);
    for (nsid, want) in [(0, Status::SUCCESS), (1, Status::INVALID_FIELD)] {
        smart.0[1] = nsid;
        assert_eq!(h.admin(smart).status, want, "nsid {nsid}");
    }
}

#[test]
fn misaligned_doorbell_writes_are_ignored() {
    let mut h = Host::new();
    h.enable();
    h.mem_write(ASQ, &cmd(0x18, 0, 0).to_bytes());
    // Two bytes into SQ 0's doorbell: no doorbell at all.
    h.write(DOORBELLS + 2, W, 1);
    assert_eq!(h.reap(0), None);
    assert_eq!(h.csts() & 2, 0);
}

#[test]
fn polled_queues_raise_no_message() {
    let mut h = Host::new();
    h.enable_msix(2);
    h.enable();
    let mut c = create_cq(1, 15, IOCQ, 1);
    c.0[11] &= !2;
    assert_eq!(h.admin(c).status, Status::SUCCESS);
    assert_eq!(h.admin(create_sq(1, 15, IOSQ, 1)).status, Status::SUCCESS);
    h.queues[1] = Some(HostQueue {
        sq: IOSQ,
        sq_size: 16,
        tail: 0,
        cq: IOCQ,
        cq_size: 16,
        head: 0,
        phase: true,
    });
    let before = h.irq.msis.len();
    assert_eq!(h.run(1, rw(0x02, 0, 1, DATA, 0)).status, Status::SUCCESS);
    assert_eq!(h.irq.msis.len(), before, "interrupts disabled on CQ 1");
    assert_eq!(h.read(u64::from(MSIX_PBA), Q), 0, "nor pending");
}

/// A probed controller over sectors `[64, 64 + SECTORS)` of a bigger disk that takes DMA
/// lists if `take`, and the count of lists it took.
fn dma_host(take: bool) -> (Host, Arc<AtomicU32>) {
    let disk = Arc::new(Mutex::new(MemDisk::new(SECTORS + 128)));
    let ram = Arc::new(Mutex::new(FakeGuestMemory::new(
        GuestPhysAddr(RAM),
        RAM_SIZE,
    )));
    let lists = Arc::new(AtomicU32::new(0));
    let dma: SharedDisk = Arc::new(Mutex::new(FakeDmaDisk {
        disk: disk.clone(),
        ram: ram.clone(),
        take,
        lists: lists.clone(),
    }));
    let part = Partition::new(dma, 64, SECTORS, false).unwrap();
    let mut h = Host::with_parts(Box::new(part), disk, ram.clone(), VNvmeQuirks::default());
    h.ctx_mem = Some(Arc::new(Mutex::new(FakeDmaRam::new(
        ram,
        GuestPhysAddr(RAM),
        RAM_SIZE as u64,
    ))));
    h.enable_msix(2);
    h.enable();
    h.identify_controller();
    assert_eq!(h.admin(set_features(0x07, 0)).status, Status::SUCCESS);
    h.create_io_queue(1);
    (h, lists)
}

#[test]
fn reads_and_writes_go_straight_between_guest_pages_and_a_disk_that_takes_dma_lists() {
    for take in [true, false] {
        let (mut h, lists) = dma_host(take);
        // 16 scattered pages in reverse order through a PRP list, PRP1 512 bytes in.
        let data = pattern(16 * 4096, 7);
        let first = DATA + 0x200;
        let pages: Vec<u64> = (1..=16)
            .rev()
            .map(|i| DATA + 0x80000 + i * 0x2000)
            .collect();
        h.mem_write(first, &data[..0xe00]);
        let mut off = 0xe00;
        let mut list = Vec::new();
        for p in &pages {
            let n = (data.len() - off).min(4096);
            h.mem_write(*p, &data[off..off + n]);
            list.extend_from_slice(&p.to_le_bytes());
            off += n;
        }
        h.mem_write(LISTS, &list);
        let c = h.run(1, rw(0x01, 40, 128, first, LISTS));
        assert_eq!(c.status, Status::SUCCESS);
        // Partition sector 40 is disk sector 104.
        assert_eq!(disk_bytes(&h, 104, 128), data);
        // Back into one contiguous run of other pages.
        let back = DATA + 0x40000;
        let mut list = Vec::new();
        for i in 1..16u64 {
            list.extend_from_slice(&(back + i * 4096).to_le_bytes());
        }
        h.mem_write(LISTS + 0x1000, &list);
        let c = h.run(1, rw(0x02, 40, 128, back, LISTS + 0x1000));
        assert_eq!(c.status, Status::SUCCESS);
        assert_eq!(h.mem_read(back, data.len()), data);
        assert_eq!(
            lists.load(Ordering::SeqCst),
            if take { 2 } else { 0 },
            "take {take}"
        );
        // A data page outside RAM: refused before the disk sees anything.
        h.mem_write(LISTS, &(RAM + RAM_SIZE as u64).to_le_bytes());
        let c = h.run(1, rw(0x02, 40, 24, DATA, LISTS));
        assert_eq!(c.status, Status::DATA_TRANSFER_ERROR);
        let c = h.run(1, rw(0x01, 40, 24, DATA, LISTS));
        assert_eq!(c.status, Status::DATA_TRANSFER_ERROR);
        assert_eq!(lists.load(Ordering::SeqCst), if take { 2 } else { 0 });
    }
}

#[test]
fn dma_device_errors_reach_the_guest_and_fua_still_flushes() {
    let (mut h, lists) = dma_host(true);
    h.disk.lock().fail_with = Some(0x281);
    assert_eq!(
        h.run(1, rw(0x02, 0, 8, DATA, 0)).status,
        Status::UNRECOVERED_READ_ERROR
    );
    assert_eq!(
        h.run(1, rw(0x01, 0, 8, DATA, 0)).status,
        Status::WRITE_FAULT
    );
    h.disk.lock().fail_with = None;
    // A past-the-end request never reaches the disk.
    assert_eq!(
        h.run(1, rw(0x02, SECTORS - 4, 8, DATA, 0)).status,
        Status::LBA_OUT_OF_RANGE
    );
    let before = h.disk.lock().flushes;
    let mut fua = rw(0x01, 0, 8, DATA, 0);
    fua.0[12] |= 1 << 30;
    assert_eq!(h.run(1, fua).status, Status::SUCCESS);
    assert_eq!(h.disk.lock().flushes, before + 1);
    assert_eq!(lists.load(Ordering::SeqCst), 3);
}
