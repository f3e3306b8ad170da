//! A virtio-blk disk on a VM's PCI bus, driven through the VM's MMIO bus exactly as
//! Linux's `pci-host-generic`, `virtio_pci` (modern) and `virtio_blk` drive it: enumerate
//! config space, size and place the BAR, walk the capabilities, negotiate features, set
//! up the queue in guest memory, notify, and take the interrupt. Then what a hostile
//! guest can do to the same device.

use hypervisor::block::{BlockDevice, MemDisk, Partition, SECTOR};
use hypervisor::mmio::AccessSize::{self, *};
use hypervisor::platform::GicVersion;
use hypervisor::sync::Mutex;
use hypervisor::types::{GuestPhysAddr, IntId, VcpuId};
use hypervisor::virtio::blk::*;
use hypervisor::virtio::pci::VirtioPci;
use hypervisor::virtio::queue::{VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE};
use hypervisor::virtio::*;
use hypervisor::vm::devices::VmDevices;
use hypervisor::vm::layout;
use hypervisor::vm::mem::{FakeGuestMemory, GuestMemory};
use std::sync::Arc;

const RAM: u64 = layout::RAM_BASE;
const RAM_SIZE: usize = 0x10_0000;
const DESC: u64 = RAM;
const AVAIL: u64 = RAM + 0x1000;
const USED: u64 = RAM + 0x2000;
const BUF: u64 = RAM + 0x1_0000;
const QSIZE: u16 = 64;
const DISK_SECTORS: u64 = 256;
/// Where the guest places BAR 0.
const BAR0: u64 = layout::PCI_MMIO_BASE + 0x10_0000;

fn discard(_: &str, _: &[u8]) {}

/// Where the capabilities said the regions are.
#[derive(Default, Debug)]
struct Regions {
    common: u64,
    notify: u64,
    notify_mult: u64,
    isr: u64,
    device: u64,
}

struct Guest {
    dev: VmDevices,
    mem: Arc<Mutex<FakeGuestMemory>>,
    disk: Arc<Mutex<MemDisk>>,
    slot: u8,
    regions: Regions,
    next_desc: u16,
    avail_idx: u16,
    used_seen: u16,
}

impl Guest {
    fn new(read_only: bool) -> Self {
        let mem = Arc::new(Mutex::new(FakeGuestMemory::new(
            GuestPhysAddr(RAM),
            RAM_SIZE,
        )));
        let mut dev = VmDevices::new(GicVersion::V3, 2, "t", discard)
            .unwrap()
            .with_memory(mem.clone());
        let disk = Arc::new(Mutex::new(MemDisk::new(DISK_SECTORS)));
        let part = Partition::new(disk.clone(), 0, DISK_SECTORS, read_only).unwrap();
        let blk = VirtioBlk::new(Box::new(part), "vpci-test-serial-0123456789");
        let slot = dev
            .add_pci("disk0", Box::new(VirtioPci::new(blk)))
            .unwrap()
            .0;
        Self {
            dev,
            mem,
            disk,
            slot,
            regions: Regions::default(),
            next_desc: 0,
            avail_idx: 0,
            used_seen: 0,
        }
    }

    fn read(&mut self, addr: u64, size: AccessSize) -> u64 {
        self.dev
            .mmio_read(VcpuId(0), GuestPhysAddr(addr), size)
            .unwrap()
            .0
    }

    fn write(&mut self, addr: u64, size: AccessSize, v: u64) {
        self.dev
            .mmio_write(VcpuId(0), GuestPhysAddr(addr), size, v)
            .unwrap();
    }

    fn cfg(&self, reg: u64) -> u64 {
        layout::PCI_ECAM_BASE + (u64::from(self.slot) << 15) + reg
    }

    fn cfg_read(&mut self, reg: u64, size: AccessSize) -> u64 {
        self.read(self.cfg(reg), size)
    }

    fn cfg_write(&mut self, reg: u64, size: AccessSize, v: u64) {
        self.write(self.cfg(reg), size, v)
    }

    /// Enumeration and resource assignment as Linux's PCI core does it.
    fn enumerate(&mut self) {
        // Bus scan: every slot's vendor ID; only ours answers.
        let mut found = Vec::new();
        for slot in 0..32u64 {
            let id = self.read(layout::PCI_ECAM_BASE + (slot << 15), Word);
            if id as u16 != 0xffff {
                found.push((slot, id));
            }
        }
        assert_eq!(found, [(u64::from(self.slot), 0x1042_1af4)]);
        assert_eq!(self.cfg_read(0x0e, Byte) & 0x7f, 0, "type 0 header");
        assert_eq!(self.cfg_read(0x08, Byte), 1, "modern-only revision");
        assert_eq!(self.cfg_read(0x0b, Byte), 0x01, "mass storage");
        assert_eq!(self.cfg_read(0x2e, HalfWord), 0x1100);
        assert_eq!(self.cfg_read(0x3d, Byte), 1, "INTA");
        // BAR sizing: save, all ones, read, restore, for all six.
        let mut sizes = [0u64; 6];
        for i in 0..6u64 {
            let reg = 0x10 + 4 * i;
            let orig = self.cfg_read(reg, Word);
            self.cfg_write(reg, Word, 0xffff_ffff);
            let mask = self.cfg_read(reg, Word);
            self.cfg_write(reg, Word, orig);
            if mask != 0 {
                assert_eq!(mask & 1, 0, "memory BAR");
                sizes[i as usize] = (!(mask & !0xf) + 1) & 0xffff_ffff;
            }
        }
        assert_eq!(sizes, [0x4000, 0, 0, 0, 0, 0]);
        self.cfg_write(0x10, Word, BAR0);
        assert_eq!(self.cfg_read(0x10, Word), BAR0);
        // pci_enable_device + pci_set_master.
        let cmd = self.cfg_read(0x04, HalfWord);
        self.cfg_write(0x04, HalfWord, cmd | 0x2 | 0x4);
    }

    /// `virtio_pci_find_capability` for every region type.
    fn walk_capabilities(&mut self) {
        assert_ne!(self.cfg_read(0x06, HalfWord) & 0x10, 0, "capability list");
        let mut pos = self.cfg_read(0x34, Byte) & !3;
        let mut seen = 0;
        while pos != 0 {
            seen += 1;
            assert!(seen < 48, "capability loop");
            let id = self.cfg_read(pos, Byte);
            let next = self.cfg_read(pos + 1, Byte);
            if id == 0x09 {
                let cfg_type = self.cfg_read(pos + 3, Byte);
                let bar = self.cfg_read(pos + 4, Byte);
                let offset = self.cfg_read(pos + 8, Word);
                let length = self.cfg_read(pos + 12, Word);
                assert_eq!(bar, 0);
                assert!(offset + length <= 0x4000);
                let at = BAR0 + offset;
                match cfg_type {
                    1 => {
                        assert!(length >= 0x38);
                        self.regions.common = at;
                    }
                    2 => {
                        self.regions.notify = at;
                        self.regions.notify_mult = self.cfg_read(pos + 16, Word);
                    }
                    3 => self.regions.isr = at,
                    4 => self.regions.device = at,
                    t => panic!("cfg_type {t}"),
                }
            }
            pos = next & !3;
        }
        assert!(self.regions.common != 0 && self.regions.notify != 0);
        assert!(self.regions.isr != 0 && self.regions.device != 0);
    }

    fn common(&self, off: u64) -> u64 {
        self.regions.common + off
    }

    fn status(&mut self) -> u8 {
        self.read(self.common(0x14), Byte) as u8
    }

    fn set_status(&mut self, s: u8) {
        self.write(self.common(0x14), Byte, u64::from(s));
    }

    fn device_features(&mut self) -> u64 {
        self.write(self.common(0x00), Word, 0);
        let lo = self.read(self.common(0x04), Word);
        self.write(self.common(0x00), Word, 1);
        let hi = self.read(self.common(0x04), Word);
        lo | hi << 32
    }

    fn set_driver_features(&mut self, f: u64) {
        self.write(self.common(0x08), Word, 0);
        self.write(self.common(0x0c), Word, f & 0xffff_ffff);
        self.write(self.common(0x08), Word, 1);
        self.write(self.common(0x0c), Word, f >> 32);
    }

    /// `virtio_dev_probe` + `virtblk_probe` + `vp_modern_find_vqs`; returns the
    /// negotiated features.
    fn probe(&mut self, wanted: u64) -> u64 {
        self.set_status(0);
        assert_eq!(self.status(), 0, "reset completes at once");
        self.set_status(STATUS_ACKNOWLEDGE);
        self.set_status(STATUS_ACKNOWLEDGE | STATUS_DRIVER);
        let offered = self.device_features();
        let features = offered & wanted;
        self.set_driver_features(features);
        let s = STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK;
        self.set_status(s);
        assert_eq!(self.status(), s, "FEATURES_OK accepted");
        // Queue 0: size, notify offset, addresses as two 32-bit halves, enable.
        assert_eq!(self.read(self.common(0x12), HalfWord), 1, "num_queues");
        self.write(self.common(0x16), HalfWord, 0);
        assert_eq!(
            self.read(self.common(0x18), HalfWord),
            u64::from(QUEUE_SIZE)
        );
        assert_eq!(self.read(self.common(0x1c), HalfWord), 0, "not enabled yet");
        self.write(self.common(0x18), HalfWord, u64::from(QSIZE));
        assert_eq!(
            self.read(self.common(0x1e), HalfWord),
            0,
            "queue_notify_off"
        );
        for (off, addr) in [(0x20, DESC), (0x28, AVAIL), (0x30, USED)] {
            self.write(self.common(off), Word, addr & 0xffff_ffff);
            self.write(self.common(off + 4), Word, addr >> 32);
        }
        // No MSI-X: the vector reads back NO_VECTOR, so Linux uses INTx.
        self.write(self.common(0x1a), HalfWord, 0);
        assert_eq!(self.read(self.common(0x1a), HalfWord), 0xffff);
        self.write(self.common(0x1c), HalfWord, 1);
        assert_eq!(self.read(self.common(0x1c), HalfWord), 1);
        self.set_status(s | STATUS_DRIVER_OK);
        assert_eq!(self.status(), s | STATUS_DRIVER_OK);
        features
    }

    fn bring_up(read_only: bool) -> Self {
        let mut g = Self::new(read_only);
        g.enumerate();
        g.walk_capabilities();
        let want = VIRTIO_F_VERSION_1
            | VIRTIO_F_INDIRECT_DESC
            | VIRTIO_BLK_F_FLUSH
            | VIRTIO_BLK_F_BLK_SIZE
            | VIRTIO_BLK_F_SEG_MAX
            | VIRTIO_BLK_F_RO
            | VIRTIO_BLK_F_WRITE_ZEROES;
        g.probe(want);
        g
    }

    fn put(&self, addr: u64, data: &[u8]) {
        self.mem.lock().write(GuestPhysAddr(addr), data).unwrap();
    }

    fn get(&self, addr: u64, len: usize) -> Vec<u8> {
        let mut b = vec![0; len];
        self.mem.lock().read(GuestPhysAddr(addr), &mut b).unwrap();
        b
    }

    /// Writes descriptor `i` of the table at `table`.
    fn desc_at(&self, table: u64, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let mut d = [0u8; 16];
        d[..8].copy_from_slice(&addr.to_le_bytes());
        d[8..12].copy_from_slice(&len.to_le_bytes());
        d[12..14].copy_from_slice(&flags.to_le_bytes());
        d[14..].copy_from_slice(&next.to_le_bytes());
        self.put(table + 16 * u64::from(i), &d);
    }

    /// Puts a chain of `(addr, len, writable)` buffers in the descriptor table; returns
    /// its head.
    fn chain(&mut self, bufs: &[(u64, u32, bool)]) -> u16 {
        let head = self.next_desc;
        for (k, &(addr, len, w)) in bufs.iter().enumerate() {
            let i = (head + k as u16) % QSIZE;
            let last = k + 1 == bufs.len();
            let mut flags = if w { VIRTQ_DESC_F_WRITE } else { 0 };
            if !last {
                flags |= VIRTQ_DESC_F_NEXT;
            }
            self.desc_at(DESC, i, addr, len, flags, (i + 1) % QSIZE);
        }
        self.next_desc = (head + bufs.len() as u16) % QSIZE;
        head
    }

    /// Makes `head` available and notifies queue 0 (`vp_notify`: a 16-bit write of the
    /// queue index).
    fn submit(&mut self, head: u16) {
        let slot = u64::from(self.avail_idx % QSIZE);
        self.put(AVAIL + 4 + 2 * slot, &head.to_le_bytes());
        self.avail_idx = self.avail_idx.wrapping_add(1);
        self.put(AVAIL + 2, &self.avail_idx.to_le_bytes());
        self.write(self.regions.notify, HalfWord, 0);
    }

    /// The used elements the device added since the last call.
    fn used(&mut self) -> Vec<(u32, u32)> {
        let idx = u16::from_le_bytes(self.get(USED + 2, 2).try_into().unwrap());
        let mut out = Vec::new();
        while self.used_seen != idx {
            let e = self.get(USED + 4 + 8 * u64::from(self.used_seen % QSIZE), 8);
            out.push((
                u32::from_le_bytes(e[..4].try_into().unwrap()),
                u32::from_le_bytes(e[4..].try_into().unwrap()),
            ));
            self.used_seen = self.used_seen.wrapping_add(1);
        }
        out
    }

    fn intx(&self) -> bool {
        let intid = IntId(layout::PCI_INTX_INTIDS[usize::from(self.slot) % 4]);
        self.dev.vgic.irq(intid, VcpuId(0)).unwrap().line_level
    }

    /// `vp_interrupt`: read (and so acknowledge) the ISR.
    fn isr(&mut self) -> u8 {
        self.read(self.regions.isr, Byte) as u8
    }

    fn header(&self, at: u64, kind: u32, sector: u64) {
        let mut h = [0u8; 16];
        h[..4].copy_from_slice(&kind.to_le_bytes());
        h[8..].copy_from_slice(&sector.to_le_bytes());
        self.put(at, &h);
    }

    /// A request with a header, data buffers and a status byte, served; returns the
    /// status and the used length.
    fn request(
        &mut self,
        kind: u32,
        sector: u64,
        data: &[(u64, u32)],
        device_writes: bool,
    ) -> (u8, u32) {
        let hdr = BUF;
        let status = BUF + 0x10;
        self.header(hdr, kind, sector);
        self.put(status, &[0xee]);
        let mut bufs = vec![(hdr, 16, false)];
        bufs.extend(data.iter().map(|&(a, l)| (a, l, device_writes)));
        bufs.push((status, 1, true));
        let head = self.chain(&bufs);
        self.submit(head);
        let used = self.used();
        assert_eq!(used.len(), 1, "one request completed");
        assert_eq!(used[0].0, u32::from(head));
        (self.get(status, 1)[0], used[0].1)
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[test]
fn linux_style_bring_up_negotiates_and_reads_the_config() {
    let mut g = Guest::new(false);
    g.enumerate();
    g.walk_capabilities();
    assert_eq!(g.regions.notify_mult, 4);
    let offered = g.device_features();
    for f in [
        VIRTIO_F_VERSION_1,
        VIRTIO_F_INDIRECT_DESC,
        VIRTIO_BLK_F_FLUSH,
        VIRTIO_BLK_F_BLK_SIZE,
        VIRTIO_BLK_F_SEG_MAX,
        VIRTIO_BLK_F_WRITE_ZEROES,
    ] {
        assert_ne!(offered & f, 0, "feature {f:#x}");
    }
    assert_eq!(offered & VIRTIO_BLK_F_RO, 0);
    // virtio_cread64 of capacity: two 32-bit reads.
    let dc = g.regions.device;
    let cap = g.read(dc, Word) | g.read(dc + 4, Word) << 32;
    assert_eq!(cap, DISK_SECTORS);
    assert_eq!(g.read(dc + 0x14, Word), 512, "blk_size");
    assert_eq!(g.read(dc + 0x0c, Word), u64::from(SEG_MAX));
    assert_eq!(g.read(dc + 0x30, Word), u64::from(MAX_WRITE_ZEROES_SECTORS));
    let f = g.probe(offered);
    assert_eq!(f, offered);
}

#[test]
fn write_then_read_back_through_the_queue_with_intx_and_isr() {
    let mut g = Guest::bring_up(false);
    let data = pattern(3 * SECTOR, 7);
    g.put(BUF + 0x1000, &data[..SECTOR]);
    g.put(BUF + 0x3000, &data[SECTOR..]);
    assert!(!g.intx());
    let (st, len) = g.request(
        VIRTIO_BLK_T_OUT,
        10,
        &[
            (BUF + 0x1000, SECTOR as u32),
            (BUF + 0x3000, 2 * SECTOR as u32),
        ],
        false,
    );
    assert_eq!((st, len), (VIRTIO_BLK_S_OK, 1));
    for k in 0..3 {
        assert_eq!(
            g.disk.lock().sector(10 + k),
            &data[k as usize * SECTOR..][..SECTOR]
        );
    }
    // The interrupt: INTx high until the driver reads the ISR.
    assert!(g.intx());
    assert_eq!(g.cfg_read(0x06, HalfWord) & 0x8, 0x8, "Status.Interrupt");
    assert_eq!(g.isr(), 1);
    assert!(!g.intx());
    assert_eq!(g.isr(), 0);

    // Read it back into a buffer split at an odd place.
    let (st, len) = g.request(
        VIRTIO_BLK_T_IN,
        10,
        &[(BUF + 0x8000, 100), (BUF + 0x9000, 3 * SECTOR as u32 - 100)],
        true,
    );
    assert_eq!((st, len), (VIRTIO_BLK_S_OK, 3 * SECTOR as u32 + 1));
    let mut back = g.get(BUF + 0x8000, 100);
    back.extend(g.get(BUF + 0x9000, 3 * SECTOR - 100));
    assert_eq!(back, data);
    assert_eq!(g.isr(), 1);

    // FLUSH and GET_ID.
    let flushes = g.disk.lock().flushes;
    assert_eq!(
        g.request(VIRTIO_BLK_T_FLUSH, 0, &[], false).0,
        VIRTIO_BLK_S_OK
    );
    assert_eq!(g.disk.lock().flushes, flushes + 1);
    let (st, len) = g.request(VIRTIO_BLK_T_GET_ID, 0, &[(BUF + 0x100, 20)], true);
    assert_eq!((st, len), (VIRTIO_BLK_S_OK, 21));
    assert_eq!(&g.get(BUF + 0x100, 20), b"vpci-test-serial-012");
}

#[test]
fn indirect_chains_and_write_zeroes_work() {
    let mut g = Guest::bring_up(false);
    let data = pattern(2 * SECTOR, 1);
    g.put(BUF + 0x1000, &data);
    // An indirect table of header, two data halves and status, behind one descriptor.
    let table = BUF + 0x4_0000;
    g.header(BUF, VIRTIO_BLK_T_OUT, 100);
    g.desc_at(table, 0, BUF, 16, VIRTQ_DESC_F_NEXT, 1);
    g.desc_at(table, 1, BUF + 0x1000, SECTOR as u32, VIRTQ_DESC_F_NEXT, 3);
    g.desc_at(table, 3, BUF + 0x1200, SECTOR as u32, VIRTQ_DESC_F_NEXT, 2);
    g.desc_at(table, 2, BUF + 0x10, 1, VIRTQ_DESC_F_WRITE, 0);
    let head = g.next_desc;
    g.desc_at(DESC, head, table, 4 * 16, VIRTQ_DESC_F_INDIRECT, 0);
    g.next_desc += 1;
    g.submit(head);
    assert_eq!(g.used(), [(u32::from(head), 1)]);
    assert_eq!(g.get(BUF + 0x10, 1)[0], VIRTIO_BLK_S_OK);
    assert_eq!(g.disk.lock().sector(101), &data[SECTOR..]);

    // WRITE_ZEROES over the first of them.
    let mut seg = [0u8; 16];
    seg[..8].copy_from_slice(&100u64.to_le_bytes());
    seg[8..12].copy_from_slice(&1u32.to_le_bytes());
    g.put(BUF + 0x2000, &seg);
    let (st, _) = g.request(VIRTIO_BLK_T_WRITE_ZEROES, 0, &[(BUF + 0x2000, 16)], false);
    assert_eq!(st, VIRTIO_BLK_S_OK);
    assert!(g.disk.lock().sector(100).iter().all(|&b| b == 0));
    assert_eq!(g.disk.lock().sector(101), &data[SECTOR..]);
}

#[test]
fn bad_requests_get_error_statuses_not_panics() {
    let mut g = Guest::bring_up(false);
    let s = SECTOR as u32;
    // Past the end of the disk, and straddling it.
    assert_eq!(
        g.request(VIRTIO_BLK_T_IN, DISK_SECTORS, &[(BUF + 0x1000, s)], true)
            .0,
        VIRTIO_BLK_S_IOERR
    );
    assert_eq!(
        g.request(
            VIRTIO_BLK_T_OUT,
            DISK_SECTORS - 1,
            &[(BUF + 0x1000, 2 * s)],
            false
        )
        .0,
        VIRTIO_BLK_S_IOERR
    );
    assert_eq!(
        g.request(VIRTIO_BLK_T_IN, u64::MAX, &[(BUF + 0x1000, s)], true)
            .0,
        VIRTIO_BLK_S_IOERR
    );
    // Not a whole number of sectors.
    assert_eq!(
        g.request(VIRTIO_BLK_T_IN, 0, &[(BUF + 0x1000, 100)], true)
            .0,
        VIRTIO_BLK_S_IOERR
    );
    // Data buffers outside the VM's RAM (below it, past it, wrapping).
    for addr in [0x1000, RAM + RAM_SIZE as u64 - 256, u64::MAX - 100] {
        assert_eq!(
            g.request(VIRTIO_BLK_T_IN, 0, &[(addr, s)], true).0,
            VIRTIO_BLK_S_IOERR,
            "{addr:#x}"
        );
        assert_eq!(
            g.request(VIRTIO_BLK_T_OUT, 0, &[(addr, s)], false).0,
            VIRTIO_BLK_S_IOERR,
            "{addr:#x}"
        );
    }
    // The disk fails.
    g.disk.lock().fail_with = Some(0x281);
    assert_eq!(
        g.request(VIRTIO_BLK_T_IN, 0, &[(BUF + 0x1000, s)], true).0,
        VIRTIO_BLK_S_IOERR
    );
    assert_eq!(
        g.request(VIRTIO_BLK_T_FLUSH, 0, &[], false).0,
        VIRTIO_BLK_S_IOERR
    );
    g.disk.lock().fail_with = None;
    // Unknown request types, and discard (not offered).
    assert_eq!(g.request(99, 0, &[], false).0, VIRTIO_BLK_S_UNSUPP);
    assert_eq!(
        g.request(11, 0, &[(BUF + 0x2000, 16)], false).0,
        VIRTIO_BLK_S_UNSUPP
    );
    // A header cut short.
    let head = g.chain(&[(BUF, 8, false), (BUF + 0x10, 1, true)]);
    g.submit(head);
    assert_eq!(g.used(), [(u32::from(head), 1)]);
    assert_eq!(g.get(BUF + 0x10, 1)[0], VIRTIO_BLK_S_IOERR);
    // No status byte at all: returned with nothing written.
    g.header(BUF, VIRTIO_BLK_T_FLUSH, 0);
    let head = g.chain(&[(BUF, 16, false)]);
    g.submit(head);
    assert_eq!(g.used(), [(u32::from(head), 0)]);
    // The device still works.
    assert_eq!(
        g.request(VIRTIO_BLK_T_FLUSH, 0, &[], false).0,
        VIRTIO_BLK_S_OK
    );
    assert_eq!(g.status() & STATUS_DEVICE_NEEDS_RESET, 0);
}

#[test]
fn read_only_disks_offer_ro_and_refuse_writes() {
    let mut g = Guest::bring_up(true);
    let offered = g.device_features();
    assert_ne!(offered & VIRTIO_BLK_F_RO, 0);
    assert_eq!(offered & VIRTIO_BLK_F_WRITE_ZEROES, 0);
    g.put(BUF + 0x1000, &[5; SECTOR]);
    let (st, _) = g.request(VIRTIO_BLK_T_OUT, 0, &[(BUF + 0x1000, SECTOR as u32)], false);
    assert_eq!(st, VIRTIO_BLK_S_IOERR);
    assert!(g.disk.lock().sector(0).iter().all(|&b| b == 0));
    let (st, _) = g.request(VIRTIO_BLK_T_IN, 0, &[(BUF + 0x1000, SECTOR as u32)], true);
    assert_eq!(st, VIRTIO_BLK_S_OK);
}

/// A broken queue: `DEVICE_NEEDS_RESET`, a configuration interrupt, nothing served until
/// the driver resets the device; then it works again.
fn assert_broken_then_recovers(g: &mut Guest) {
    assert_ne!(g.status() & STATUS_DEVICE_NEEDS_RESET, 0);
    assert!(g.intx());
    assert_eq!(g.isr(), 2, "configuration change");
    assert!(!g.intx());
    let before = g.get(USED, 4);
    g.write(g.regions.notify, HalfWord, 0);
    assert_eq!(g.get(USED, 4), before, "nothing served while broken");
    // Reset and bring up again from scratch (rings zeroed, as a new driver would).
    g.mem.lock().bytes_mut()[..0x3000].fill(0);
    g.next_desc = 0;
    g.avail_idx = 0;
    g.used_seen = 0;
    g.probe(!0);
    assert_eq!(g.status() & STATUS_DEVICE_NEEDS_RESET, 0);
    assert_eq!(
        g.request(VIRTIO_BLK_T_FLUSH, 0, &[], false).0,
        VIRTIO_BLK_S_OK
    );
}

#[test]
fn a_descriptor_loop_breaks_the_queue_not_the_hypervisor() {
    let mut g = Guest::bring_up(false);
    g.header(BUF, VIRTIO_BLK_T_IN, 0);
    // 0 -> 1 -> 2 -> 1 -> ...
    g.desc_at(DESC, 0, BUF, 16, VIRTQ_DESC_F_NEXT, 1);
    g.desc_at(
        DESC,
        1,
        BUF + 0x1000,
        512,
        VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE,
        2,
    );
    g.desc_at(
        DESC,
        2,
        BUF + 0x2000,
        512,
        VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE,
        1,
    );
    g.submit(0);
    assert!(g.used().is_empty());
    assert_broken_then_recovers(&mut g);
}

#[test]
fn hostile_chains_and_rings_break_the_queue() {
    type Setup = fn(&mut Guest);
    let cases: [(&str, Setup); 7] = [
        ("a chain longer than the queue", |g| {
            for i in 0..QSIZE {
                g.desc_at(DESC, i, BUF, 16, VIRTQ_DESC_F_NEXT, (i + 1) % QSIZE);
            }
            g.submit(0);
        }),
        ("a next index beyond the queue", |g| {
            g.desc_at(DESC, 0, BUF, 16, VIRTQ_DESC_F_NEXT, QSIZE);
            g.submit(0);
        }),
        ("an indirect table of 4 GiB", |g| {
            g.desc_at(DESC, 0, BUF, 0xffff_fff0, VIRTQ_DESC_F_INDIRECT, 0);
            g.submit(0);
        }),
        ("an indirect table inside an indirect table", |g| {
            let t = BUF + 0x4_0000;
            g.desc_at(t, 0, t, 32, VIRTQ_DESC_F_INDIRECT, 0);
            g.desc_at(DESC, 0, t, 32, VIRTQ_DESC_F_INDIRECT, 0);
            g.submit(0);
        }),
        ("an indirect table outside RAM", |g| {
            g.desc_at(DESC, 0, 0x10, 64, VIRTQ_DESC_F_INDIRECT, 0);
            g.submit(0);
        }),
        ("an available index far ahead", |g| {
            g.put(AVAIL + 2, &(QSIZE + 5).to_le_bytes());
            g.write(g.regions.notify, HalfWord, 0);
        }),
        ("a readable buffer after a writable one", |g| {
            g.desc_at(
                DESC,
                0,
                BUF + 0x10,
                1,
                VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT,
                1,
            );
            g.desc_at(DESC, 1, BUF, 16, 0, 0);
            g.submit(0);
        }),
    ];
    for (what, setup) in cases {
        let mut g = Guest::bring_up(false);
        setup(&mut g);
        assert_ne!(g.status() & STATUS_DEVICE_NEEDS_RESET, 0, "{what}");
        assert_broken_then_recovers(&mut g);
    }
}

#[test]
fn rings_outside_ram_or_misaligned_are_refused_or_break_the_queue() {
    let mut g = Guest::new(false);
    g.enumerate();
    g.walk_capabilities();
    g.set_status(STATUS_ACKNOWLEDGE | STATUS_DRIVER);
    g.set_driver_features(VIRTIO_F_VERSION_1);
    g.set_status(STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK);
    // A misaligned descriptor table or a size that is no power of two: enable refused.
    g.write(g.common(0x16), HalfWord, 0);
    g.write(g.common(0x18), HalfWord, 48);
    g.write(g.common(0x20), DoubleWord, DESC);
    g.write(g.common(0x28), DoubleWord, AVAIL);
    g.write(g.common(0x30), DoubleWord, USED);
    g.write(g.common(0x1c), HalfWord, 1);
    assert_eq!(g.read(g.common(0x1c), HalfWord), 0);
    g.write(g.common(0x18), HalfWord, 16);
    g.write(g.common(0x20), DoubleWord, DESC + 8);
    g.write(g.common(0x1c), HalfWord, 1);
    assert_eq!(g.read(g.common(0x1c), HalfWord), 0);
    // Rings far outside RAM: accepted (the device cannot know), broken on first use.
    g.write(g.common(0x20), DoubleWord, 0xffff_ffff_ffff_0000);
    g.write(g.common(0x28), DoubleWord, 0xffff_ffff_ffff_fffe);
    g.write(g.common(0x1c), HalfWord, 1);
    assert_eq!(g.read(g.common(0x1c), HalfWord), 1);
    g.set_status(STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK);
    g.write(g.regions.notify, HalfWord, 0);
    assert_ne!(g.status() & STATUS_DEVICE_NEEDS_RESET, 0);
}

#[test]
fn features_without_version_1_or_not_offered_are_refused() {
    let mut g = Guest::new(false);
    g.enumerate();
    g.walk_capabilities();
    let base = STATUS_ACKNOWLEDGE | STATUS_DRIVER;
    g.set_status(base);
    g.set_driver_features(VIRTIO_BLK_F_FLUSH);
    g.set_status(base | STATUS_FEATURES_OK);
    assert_eq!(g.status(), base, "legacy driver refused");
    g.set_driver_features(VIRTIO_F_VERSION_1 | 1 << 40);
    g.set_status(base | STATUS_FEATURES_OK);
    assert_eq!(g.status(), base, "feature not offered");
    // DRIVER_OK without FEATURES_OK does not start the device.
    g.set_status(base | STATUS_DRIVER_OK);
    assert_eq!(g.status() & STATUS_DRIVER_OK, 0);
    g.set_driver_features(VIRTIO_F_VERSION_1);
    g.set_status(base | STATUS_FEATURES_OK);
    assert_eq!(g.status(), base | STATUS_FEATURES_OK);
    // Features are frozen once accepted.
    g.set_driver_features(VIRTIO_F_VERSION_1 | VIRTIO_BLK_F_FLUSH);
    g.write(g.common(0x08), Word, 0);
    assert_eq!(g.read(g.common(0x0c), Word), 0);
}

#[test]
fn no_bus_mastering_no_dma_and_reset_clears_everything() {
    let mut g = Guest::bring_up(false);
    g.cfg_write(0x04, HalfWord, 0x2);
    g.put(BUF + 0x1000, &[9; SECTOR]);
    g.header(BUF, VIRTIO_BLK_T_OUT, 0);
    let head = g.chain(&[
        (BUF, 16, false),
        (BUF + 0x1000, SECTOR as u32, false),
        (BUF + 0x10, 1, true),
    ]);
    g.submit(head);
    assert!(g.used().is_empty());
    assert!(g.disk.lock().sector(0).iter().all(|&b| b == 0));
    // Bus mastering back on: the next notify serves the waiting request.
    g.cfg_write(0x04, HalfWord, 0x6);
    g.write(g.regions.notify, HalfWord, 0);
    assert_eq!(g.used().len(), 1);
    assert_eq!(g.disk.lock().sector(0)[0], 9);
    assert!(g.intx());
    // The driver's reset lowers INTx and forgets the queue.
    g.set_status(0);
    assert!(!g.intx());
    assert_eq!(g.read(g.common(0x1c), HalfWord), 0);
    assert_eq!(g.read(g.common(0x20), DoubleWord), 0);
    // A VM reset puts the BAR and command register back to their reset values.
    g.dev.reset().unwrap();
    assert_eq!(g.cfg_read(0x10, Word), 0);
    assert_eq!(g.cfg_read(0x04, HalfWord), 0);
}

#[test]
fn interrupt_suppression_is_honoured() {
    let mut g = Guest::bring_up(false);
    g.put(AVAIL, &1u16.to_le_bytes()); // VIRTQ_AVAIL_F_NO_INTERRUPT
    assert_eq!(
        g.request(VIRTIO_BLK_T_FLUSH, 0, &[], false).0,
        VIRTIO_BLK_S_OK
    );
    assert!(!g.intx());
    assert_eq!(g.isr(), 0);
    g.put(AVAIL, &0u16.to_le_bytes());
    assert_eq!(
        g.request(VIRTIO_BLK_T_FLUSH, 0, &[], false).0,
        VIRTIO_BLK_S_OK
    );
    assert!(g.intx());
}

#[test]
fn the_block_device_trait_object_is_what_virtio_blk_takes() {
    // Any BlockDevice works: a bare MemDisk too.
    let disk: Box<dyn BlockDevice> = Box::new(MemDisk::new(8));
    let blk = VirtioBlk::new(disk, "");
    let mut buf = [0u8; 8];
    hypervisor::virtio::VirtioDevice::config_read(&blk, 0, &mut buf);
    assert_eq!(u64::from_le_bytes(buf), 8);
}
