//! A virtio-blk disk on a VM's PCI bus, driven through the VM's MMIO bus exactly as
//! Linux's `pci-host-generic`, `virtio_pci` (modern) and `virtio_blk` drive it: enumerate
//! config space, size and place the BAR, walk the capabilities, negotiate features, set
//! up the queue in guest memory, notify, and take the interrupt. Then what a hostile
//! guest can do to the same device.

mod common;

use common::{VirtioGuest, BUF, RAM, RAM_SIZE};
use hypervisor::block::{BlockDevice, MemDisk, Partition, SECTOR};
use hypervisor::mmio::AccessSize::{self, *};
use hypervisor::sync::Mutex;
use hypervisor::virtio::blk::*;
use hypervisor::virtio::pci::VirtioPci;
use hypervisor::virtio::queue::{VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE};
use hypervisor::virtio::*;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

/// Queue 0's rings, where [`VirtioGuest::probe`] puts them.
const DESC: u64 = RAM;
const AVAIL: u64 = RAM + 0x1000;
const USED: u64 = RAM + 0x2000;
const QSIZE: u16 = 64;
const DISK_SECTORS: u64 = 256;

/// The virtio-pci driver of `common` plus `virtio_blk`.
struct Guest {
    g: VirtioGuest,
    disk: Arc<Mutex<MemDisk>>,
}

impl Deref for Guest {
    type Target = VirtioGuest;
    fn deref(&self) -> &VirtioGuest {
        &self.g
    }
}

impl DerefMut for Guest {
    fn deref_mut(&mut self) -> &mut VirtioGuest {
        &mut self.g
    }
}

impl Guest {
    fn new(read_only: bool) -> Self {
        let disk = Arc::new(Mutex::new(MemDisk::new(DISK_SECTORS)));
        let part = Partition::new(disk.clone(), 0, DISK_SECTORS, read_only).unwrap();
        let blk = VirtioBlk::new(Box::new(part), "vpci-test-serial-0123456789");
        Self {
            g: VirtioGuest::new(Box::new(VirtioPci::new(blk))),
            disk,
        }
    }

    // Forwarded by hand (not through `DerefMut`) so that `g.write(g.common(..), ..)`
    // borrows as an ordinary method call.
    fn read(&mut self, addr: u64, size: AccessSize) -> u64 {
        self.g.read(addr, size)
    }

    fn write(&mut self, addr: u64, size: AccessSize, v: u64) {
        self.g.write(addr, size, v)
    }

    /// Enumeration: the only function, a virtio block device (mass storage).
    fn enumerate(&mut self) {
        self.g.enumerate(VIRTIO_ID_BLOCK, 0x01);
    }

    /// `virtblk_probe`: one queue of [`QSIZE`].
    fn probe(&mut self, wanted: u64) -> u64 {
        self.g.probe(wanted, QUEUE_SIZE, &[QSIZE])
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
    let head = g.queues[0].next_desc;
    g.desc_at(DESC, head, table, 4 * 16, VIRTQ_DESC_F_INDIRECT, 0);
    g.queues[0].next_desc += 1;
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
    g.clear_queues();
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

#[test]
fn data_moves_by_dma_lists_when_memory_and_disk_take_them_and_by_copies_otherwise() {
    use hypervisor::types::GuestPhysAddr;
    use hypervisor::vm::fake_dma::{FakeDmaDisk, FakeDmaRam};
    use hypervisor::vm::mem::FakeGuestMemory;
    use std::sync::atomic::{AtomicU32, Ordering};
    for take in [true, false] {
        let disk = Arc::new(Mutex::new(MemDisk::new(DISK_SECTORS + 16)));
        let ram = Arc::new(Mutex::new(FakeGuestMemory::new(
            GuestPhysAddr(RAM),
            RAM_SIZE,
        )));
        let lists = Arc::new(AtomicU32::new(0));
        let dma: hypervisor::block::SharedDisk = Arc::new(Mutex::new(FakeDmaDisk {
            disk: disk.clone(),
            ram: ram.clone(),
            take,
            lists: lists.clone(),
        }));
        // The partition starts 16 sectors into the disk.
        let part = Partition::new(dma, 16, DISK_SECTORS, false).unwrap();
        let blk = VirtioBlk::new(Box::new(part), "dma");
        let seen = Arc::new(Mutex::new(FakeDmaRam::new(
            ram.clone(),
            GuestPhysAddr(RAM),
            RAM_SIZE as u64,
        )));
        let mut g = Guest {
            g: VirtioGuest::with_memory(Box::new(VirtioPci::new(blk)), ram, seen),
            disk: disk.clone(),
        };
        g.enumerate();
        g.walk_capabilities();
        g.probe(VIRTIO_F_VERSION_1 | VIRTIO_BLK_F_FLUSH);
        let data = pattern(3 * 4096, 9);
        g.put(BUF + 0x1000, &data[..4096]);
        g.put(BUF + 0x5000, &data[4096..]);
        let (st, len) = g.request(
            VIRTIO_BLK_T_OUT,
            10,
            &[(BUF + 0x1000, 4096), (BUF + 0x5000, 2 * 4096)],
            false,
        );
        assert_eq!((st, len), (VIRTIO_BLK_S_OK, 1));
        for k in 0..24 {
            assert_eq!(
                disk.lock().sector(26 + k),
                &data[k as usize * SECTOR..][..SECTOR]
            );
        }
        let (st, len) = g.request(VIRTIO_BLK_T_IN, 10, &[(BUF + 0x8000, 3 * 4096)], true);
        assert_eq!((st, len), (VIRTIO_BLK_S_OK, 3 * 4096 + 1));
        assert_eq!(g.get(BUF + 0x8000, 3 * 4096), data);
        assert_eq!(lists.load(Ordering::SeqCst), if take { 2 } else { 0 });
        // A data buffer outside RAM is an I/O error, with no disk access either way.
        let outside = RAM + RAM_SIZE as u64 - 512;
        let (st, _) = g.request(VIRTIO_BLK_T_IN, 0, &[(outside, 1024)], true);
        assert_eq!(st, VIRTIO_BLK_S_IOERR);
        assert_eq!(lists.load(Ordering::SeqCst), if take { 2 } else { 0 });
        // Device errors reach the guest on the DMA path too.
        disk.lock().fail_with = Some(0x281);
        let (st, _) = g.request(VIRTIO_BLK_T_IN, 0, &[(BUF + 0x8000, 512)], true);
        assert_eq!(st, VIRTIO_BLK_S_IOERR);
    }
}
