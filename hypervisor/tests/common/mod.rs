//! A virtio-pci driver as Linux's `pci-host-generic` and `virtio_pci` (modern) are, for
//! the integration tests of virtio devices: one VM's devices and fake RAM, one virtio
//! function on its PCI bus, driven through the VM's MMIO bus only (enumerate, size and
//! place BAR 0, walk the capabilities, negotiate, set up the queues in guest memory,
//! notify, take INTx and the ISR). Each test binary adds what its device type needs.
#![allow(dead_code)] // each test binary uses a different part

use hypervisor::mmio::AccessSize::{self, *};
use hypervisor::pci::PciFunction;
use hypervisor::platform::GicVersion;
use hypervisor::sync::Mutex;
use hypervisor::types::{GuestPhysAddr, IntId, VcpuId};
use hypervisor::virtio::queue::{VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE};
use hypervisor::virtio::*;
use hypervisor::vm::devices::VmDevices;
use hypervisor::vm::layout;
use hypervisor::vm::mem::{FakeGuestMemory, GuestMemory};
use std::sync::Arc;

pub const RAM: u64 = layout::RAM_BASE;
pub const RAM_SIZE: usize = 0x10_0000;
/// Queue `q`'s descriptor table is at `RAM + QUEUE_STRIDE * q`, its available ring
/// 0x1000 and its used ring 0x2000 above it.
pub const QUEUE_STRIDE: u64 = 0x4000;
/// Where tests put their buffers (above every queue).
pub const BUF: u64 = RAM + 0x1_0000;
/// Where the guest places BAR 0.
pub const BAR0: u64 = layout::PCI_MMIO_BASE + 0x10_0000;

fn discard(_: &str, _: &[u8]) {}

/// Where the capabilities said the regions are.
#[derive(Default, Debug)]
pub struct Regions {
    pub common: u64,
    pub notify: u64,
    pub notify_mult: u64,
    pub isr: u64,
    pub device: u64,
}

/// The driver's side of one split virtqueue.
#[derive(Debug, Clone)]
pub struct DriverQueue {
    pub desc: u64,
    pub avail: u64,
    pub used: u64,
    pub size: u16,
    /// The next free descriptor (the tests allocate them round robin).
    pub next_desc: u16,
    pub avail_idx: u16,
    pub used_seen: u16,
}

impl DriverQueue {
    fn new(index: u16, size: u16) -> Self {
        let desc = RAM + QUEUE_STRIDE * u64::from(index);
        Self {
            desc,
            avail: desc + 0x1000,
            used: desc + 0x2000,
            size,
            next_desc: 0,
            avail_idx: 0,
            used_seen: 0,
        }
    }
}

/// One VM with one virtio function on its PCI bus, and its driver's state.
pub struct VirtioGuest {
    pub dev: VmDevices,
    pub mem: Arc<Mutex<FakeGuestMemory>>,
    pub slot: u8,
    pub regions: Regions,
    pub queues: Vec<DriverQueue>,
}

impl VirtioGuest {
    /// A VM (GICv3, 2 vCPUs, [`RAM_SIZE`] of fake RAM) with `function` on its PCI bus.
    pub fn new(function: Box<dyn PciFunction>) -> Self {
        let mem = Arc::new(Mutex::new(FakeGuestMemory::new(
            GuestPhysAddr(RAM),
            RAM_SIZE,
        )));
        Self::with_memory(function, mem.clone(), mem)
    }

    /// The same with `mem` as the RAM the test reads and writes and `seen` as what the
    /// devices see (a view of `mem`, e.g. one that hands out DMA lists).
    pub fn with_memory(
        function: Box<dyn PciFunction>,
        mem: Arc<Mutex<FakeGuestMemory>>,
        seen: Arc<Mutex<dyn GuestMemory>>,
    ) -> Self {
        let mut dev = VmDevices::new(GicVersion::V3, 2, "t", discard)
            .unwrap()
            .with_memory(seen);
        let slot = dev.add_pci("virtio0", function).unwrap().0;
        Self {
            dev,
            mem,
            slot,
            regions: Regions::default(),
            queues: Vec::new(),
        }
    }

    pub fn read(&mut self, addr: u64, size: AccessSize) -> u64 {
        self.dev
            .mmio_read(VcpuId(0), GuestPhysAddr(addr), size)
            .unwrap()
            .0
    }

    pub fn write(&mut self, addr: u64, size: AccessSize, v: u64) {
        self.dev
            .mmio_write(VcpuId(0), GuestPhysAddr(addr), size, v)
            .unwrap();
    }

    pub fn cfg(&self, reg: u64) -> u64 {
        layout::PCI_ECAM_BASE + (u64::from(self.slot) << 15) + reg
    }

    pub fn cfg_read(&mut self, reg: u64, size: AccessSize) -> u64 {
        self.read(self.cfg(reg), size)
    }

    pub fn cfg_write(&mut self, reg: u64, size: AccessSize, v: u64) {
        self.write(self.cfg(reg), size, v)
    }

    /// Enumeration and resource assignment as Linux's PCI core does it; the function
    /// must be the only one, a modern virtio device of `device_id` and base `class`.
    pub fn enumerate(&mut self, device_id: u16, class: u8) {
        // Bus scan: every slot's vendor ID; only ours answers.
        let mut found = Vec::new();
        for slot in 0..32u64 {
            let id = self.read(layout::PCI_ECAM_BASE + (slot << 15), Word);
            if id as u16 != 0xffff {
                found.push((slot, id));
            }
        }
        let id = u64::from(0x1040 + device_id) << 16 | 0x1af4;
        assert_eq!(found, [(u64::from(self.slot), id)]);
        assert_eq!(self.cfg_read(0x0e, Byte) & 0x7f, 0, "type 0 header");
        assert_eq!(self.cfg_read(0x08, Byte), 1, "modern-only revision");
        assert_eq!(self.cfg_read(0x0b, Byte), u64::from(class), "class");
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
    pub fn walk_capabilities(&mut self) {
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

    pub fn common(&self, off: u64) -> u64 {
        self.regions.common + off
    }

    pub fn status(&mut self) -> u8 {
        self.read(self.common(0x14), Byte) as u8
    }

    pub fn set_status(&mut self, s: u8) {
        self.write(self.common(0x14), Byte, u64::from(s));
    }

    pub fn device_features(&mut self) -> u64 {
        self.write(self.common(0x00), Word, 0);
        let lo = self.read(self.common(0x04), Word);
        self.write(self.common(0x00), Word, 1);
        let hi = self.read(self.common(0x04), Word);
        lo | hi << 32
    }

    pub fn set_driver_features(&mut self, f: u64) {
        self.write(self.common(0x08), Word, 0);
        self.write(self.common(0x0c), Word, f & 0xffff_ffff);
        self.write(self.common(0x08), Word, 1);
        self.write(self.common(0x0c), Word, f >> 32);
    }

    /// `virtio_dev_probe` + `vp_modern_find_vqs`: reset, negotiate what is offered of
    /// `wanted`, set up one queue of each size in `sizes` (the device must offer
    /// `max_size` for each), `DRIVER_OK`. Returns the negotiated features.
    pub fn probe(&mut self, wanted: u64, max_size: u16, sizes: &[u16]) -> u64 {
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
        assert_eq!(
            self.read(self.common(0x12), HalfWord),
            sizes.len() as u64,
            "num_queues"
        );
        self.queues.clear();
        for (q, &size) in sizes.iter().enumerate() {
            let q = q as u16;
            let dq = DriverQueue::new(q, size);
            // Size, notify offset, addresses as two 32-bit halves, enable.
            self.write(self.common(0x16), HalfWord, u64::from(q));
            assert_eq!(self.read(self.common(0x18), HalfWord), u64::from(max_size));
            assert_eq!(self.read(self.common(0x1c), HalfWord), 0, "not enabled yet");
            self.write(self.common(0x18), HalfWord, u64::from(size));
            assert_eq!(
                self.read(self.common(0x1e), HalfWord),
                u64::from(q),
                "queue_notify_off"
            );
            for (off, addr) in [(0x20, dq.desc), (0x28, dq.avail), (0x30, dq.used)] {
                self.write(self.common(off), Word, addr & 0xffff_ffff);
                self.write(self.common(off + 4), Word, addr >> 32);
            }
            // No MSI-X: the vector reads back NO_VECTOR, so Linux uses INTx.
            self.write(self.common(0x1a), HalfWord, 0);
            assert_eq!(self.read(self.common(0x1a), HalfWord), 0xffff);
            self.write(self.common(0x1c), HalfWord, 1);
            assert_eq!(self.read(self.common(0x1c), HalfWord), 1);
            self.queues.push(dq);
        }
        self.set_status(s | STATUS_DRIVER_OK);
        assert_eq!(self.status(), s | STATUS_DRIVER_OK);
        features
    }

    /// Forgets the driver's ring state and zeroes the rings (a new driver after a reset).
    pub fn clear_queues(&mut self) {
        let end = (QUEUE_STRIDE * self.queues.len().max(1) as u64) as usize;
        self.mem.lock().bytes_mut()[..end].fill(0);
        for q in &mut self.queues {
            q.next_desc = 0;
            q.avail_idx = 0;
            q.used_seen = 0;
        }
    }

    pub fn put(&self, addr: u64, data: &[u8]) {
        self.mem.lock().write(GuestPhysAddr(addr), data).unwrap();
    }

    pub fn get(&self, addr: u64, len: usize) -> Vec<u8> {
        let mut b = vec![0; len];
        self.mem.lock().read(GuestPhysAddr(addr), &mut b).unwrap();
        b
    }

    /// Writes descriptor `i` of the table at `table`.
    pub fn desc_at(&self, table: u64, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let mut d = [0u8; 16];
        d[..8].copy_from_slice(&addr.to_le_bytes());
        d[8..12].copy_from_slice(&len.to_le_bytes());
        d[12..14].copy_from_slice(&flags.to_le_bytes());
        d[14..].copy_from_slice(&next.to_le_bytes());
        self.put(table + 16 * u64::from(i), &d);
    }

    /// Puts a chain of `(addr, len, writable)` buffers in queue `q`'s descriptor table;
    /// returns its head.
    pub fn chain_on(&mut self, q: usize, bufs: &[(u64, u32, bool)]) -> u16 {
        let dq = &self.queues[q];
        let (table, size, head) = (dq.desc, dq.size, dq.next_desc);
        for (k, &(addr, len, w)) in bufs.iter().enumerate() {
            let i = (head + k as u16) % size;
            let last = k + 1 == bufs.len();
            let mut flags = if w { VIRTQ_DESC_F_WRITE } else { 0 };
            if !last {
                flags |= VIRTQ_DESC_F_NEXT;
            }
            self.desc_at(table, i, addr, len, flags, (i + 1) % size);
        }
        self.queues[q].next_desc = (head + bufs.len() as u16) % size;
        head
    }

    /// Makes `head` available on queue `q` without notifying.
    pub fn make_available(&mut self, q: usize, head: u16) {
        let dq = &self.queues[q];
        let slot = u64::from(dq.avail_idx % dq.size);
        let (avail, idx) = (dq.avail, dq.avail_idx.wrapping_add(1));
        self.put(avail + 4 + 2 * slot, &head.to_le_bytes());
        self.queues[q].avail_idx = idx;
        self.put(avail + 2, &idx.to_le_bytes());
    }

    /// `vp_notify` of queue `q`: a 16-bit write of its index at its notify address.
    pub fn notify(&mut self, q: usize) {
        let at = self.regions.notify + self.regions.notify_mult * q as u64;
        self.write(at, HalfWord, q as u64);
    }

    /// Makes `head` available on queue `q` and notifies it.
    pub fn submit_on(&mut self, q: usize, head: u16) {
        self.make_available(q, head);
        self.notify(q);
    }

    /// The used elements the device added to queue `q` since the last call.
    pub fn used_on(&mut self, q: usize) -> Vec<(u32, u32)> {
        let (used, size) = (self.queues[q].used, self.queues[q].size);
        let idx = u16::from_le_bytes(self.get(used + 2, 2).try_into().unwrap());
        let mut out = Vec::new();
        while self.queues[q].used_seen != idx {
            let seen = self.queues[q].used_seen;
            let e = self.get(used + 4 + 8 * u64::from(seen % size), 8);
            out.push((
                u32::from_le_bytes(e[..4].try_into().unwrap()),
                u32::from_le_bytes(e[4..].try_into().unwrap()),
            ));
            self.queues[q].used_seen = seen.wrapping_add(1);
        }
        out
    }

    /// [`Self::chain_on`] queue 0.
    pub fn chain(&mut self, bufs: &[(u64, u32, bool)]) -> u16 {
        self.chain_on(0, bufs)
    }

    /// [`Self::submit_on`] queue 0.
    pub fn submit(&mut self, head: u16) {
        self.submit_on(0, head)
    }

    /// [`Self::used_on`] queue 0.
    pub fn used(&mut self) -> Vec<(u32, u32)> {
        self.used_on(0)
    }

    pub fn intx(&self) -> bool {
        let intid = IntId(layout::PCI_INTX_INTIDS[usize::from(self.slot) % 4]);
        self.dev.vgic.irq(intid, VcpuId(0)).unwrap().line_level
    }

    /// `vp_interrupt`: read (and so acknowledge) the ISR.
    pub fn isr(&mut self) -> u8 {
        self.read(self.regions.isr, Byte) as u8
    }
}
