//! Fuzz target: whatever a guest puts in NVMe submission queues and writes to the
//! controller's registers, doorbells, MSI-X table and config space never panics or hangs
//! the hypervisor. Drives the production model (`hypervisor::vnvme::VNvme`, through its
//! `PciFunction` interface) over `FakeGuestMemory` and a `MemDisk` partition.
//!
//! Input: a 2-byte header, then records of an op byte and its arguments.
//!
//! ```text
//! header  [0] bit 0: start enabled (admin queues of 32 entries at RAM + 0 / RAM + 0x1000)
//!             bit 1: read-only disk     bit 2: MSI-X enabled, vectors 0..3 programmed
//!             bit 3: bus mastering off
//!         [1] disk size: (b + 1) * 64 sectors
//! op 0    submit      [qid] [slot u16] [flags] [64-byte entry]: the entry goes in slot
//!                     `slot` of queue `qid`'s ring (I/O SQ `q` at RAM + 0x10000 + q * 0x4000)
//!                     and the tail doorbell gets `slot + 1`. flags bit 0: PRP1/PRP2 moved
//!                     into RAM (mod its size); bit 1: a Create command's base set to the
//!                     ring the harness uses for that queue ID.
//! op 1    BAR write   [size (1 << b & 3)] [offset u16 (mod 0x4100)] [value u64]
//! op 2    BAR read    [size] [offset u16]
//! op 3    config      [offset u16] [value u32] (write; then a read at the same offset)
//! op 4    CQ head     [qid] [value u16]: the head doorbell of CQ `qid`
//! op 5    RAM write   [offset u32 (mod RAM size)] [8 bytes]: PRP lists and such
//! op 6    bus master  [on]
//! op 7    reset
//! op 8    disk errors [on] (MemDisk::fail_with)
//! ```
#![no_main]

use hypervisor::block::{MemDisk, Partition, SharedDisk};
use hypervisor::mmio::AccessSize;
use hypervisor::pci::{PciFunction, PciIrq};
use hypervisor::sync::Mutex;
use hypervisor::types::{GuestPhysAddr, VcpuId};
use hypervisor::vgic::{VGic, VcpuSet};
use hypervisor::vm::devices::IoCtx;
use hypervisor::vm::mem::{FakeGuestMemory, GuestMemory};
use hypervisor::vnvme::{VNvme, VNvmeQuirks, DOORBELLS, MSIX_CAP, MSIX_TABLE};
use libfuzzer_sys::fuzz_target;
use std::sync::Arc;

const RAM: u64 = 0x4000_0000;
const RAM_SIZE: u64 = 2 << 20;
const IO_RINGS: u64 = RAM + 0x10000;

struct Irq {
    bus_master: bool,
}

impl PciIrq for Irq {
    fn bus_master(&self) -> bool {
        self.bus_master
    }
    fn set_intx(&mut self, _ctx: &mut IoCtx<'_>, _level: bool) {}
    fn msi(&mut self, _ctx: &mut IoCtx<'_>, _address: u64, _data: u32) {}
}

struct Harness {
    nvme: VNvme,
    mem: Arc<Mutex<FakeGuestMemory>>,
    disk: Arc<Mutex<MemDisk>>,
    vgic: VGic,
    irq: Irq,
}

impl Harness {
    fn with<R>(&mut self, f: impl FnOnce(&mut VNvme, &mut IoCtx<'_>, &mut Irq) -> R) -> R {
        let mem: Arc<Mutex<dyn GuestMemory>> = self.mem.clone();
        let mut ctx = IoCtx {
            vcpu: VcpuId(0),
            vgic: &mut self.vgic,
            kicks: VcpuSet::EMPTY,
            mem: &mem,
        };
        f(&mut self.nvme, &mut ctx, &mut self.irq)
    }

    fn write(&mut self, off: u64, size: AccessSize, v: u64) {
        self.with(|n, ctx, irq| n.bar_write(ctx, irq, 0, off, size, v));
    }

    fn ram(&self, off: u64, data: &[u8]) {
        let _ = self.mem.lock().write(GuestPhysAddr(RAM + off), data);
    }
}

/// Where the harness keeps queue `qid`'s submission ring.
fn ring(qid: u16) -> u64 {
    if qid == 0 {
        RAM
    } else {
        IO_RINGS + u64::from(qid) * 0x4000
    }
}

struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take::<1>().map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take().map(u16::from_le_bytes)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.take().map(u64::from_le_bytes)
    }
}

fn submit(h: &mut Harness, input: &mut Input<'_>) -> Option<()> {
    let qid = u16::from(input.u8()? % 66);
    let slot = input.u16()?;
    let flags = input.u8()?;
    let mut e = input.take::<64>()?;
    let dw = |e: &[u8; 64], i: usize| {
        u32::from_le_bytes([e[i * 4], e[i * 4 + 1], e[i * 4 + 2], e[i * 4 + 3]])
    };
    if flags & 1 != 0 {
        for at in [24, 32] {
            let mut p = [0u8; 8];
            p.copy_from_slice(&e[at..at + 8]);
            let v = RAM + u64::from_le_bytes(p) % RAM_SIZE;
            e[at..at + 8].copy_from_slice(&v.to_le_bytes());
        }
    }
    if flags & 2 != 0 && qid == 0 && matches!(e[0], 0x01 | 0x05) {
        let q = (dw(&e, 10) & 0xffff) as u16;
        // I/O CQ rings sit 0x2000 above their SQ ring.
        let base = ring(q % 65) + if e[0] == 0x05 { 0x2000 } else { 0 };
        e[24..32].copy_from_slice(&base.to_le_bytes());
    }
    let addr = ring(qid) + u64::from(slot) * 64;
    if addr + 64 <= RAM + RAM_SIZE {
        h.ram(addr - RAM, &e);
    }
    let db = DOORBELLS + 8 * u64::from(qid);
    h.write(db, AccessSize::Word, u64::from(slot) + 1);
    Some(())
}

fn step(h: &mut Harness, input: &mut Input<'_>) -> Option<()> {
    match input.u8()? % 9 {
        0 => submit(h, input)?,
        1 => {
            let size = AccessSize::from_sas(input.u8()?);
            let off = u64::from(input.u16()?) % 0x4100;
            let v = input.u64()?;
            h.write(off, size, v);
        }
        2 => {
            let size = AccessSize::from_sas(input.u8()?);
            let off = u64::from(input.u16()?) % 0x4100;
            h.with(|n, ctx, irq| n.bar_read(ctx, irq, 0, off, size));
        }
        3 => {
            let off = input.u16()? % 0x1000;
            let v = input.u32()?;
            h.with(|n, ctx, irq| n.config_write(ctx, irq, off, AccessSize::Word, v));
            let _ = h.nvme.config_read(off, AccessSize::Word);
        }
        4 => {
            let qid = u64::from(input.u8()? % 66);
            let v = input.u16()?;
            h.write(DOORBELLS + 8 * qid + 4, AccessSize::Word, u64::from(v));
        }
        5 => {
            let off = u64::from(input.u32()?) % (RAM_SIZE - 8);
            let b = input.take::<8>()?;
            h.ram(off, &b);
        }
        6 => h.irq.bus_master = input.u8()? & 1 != 0,
        7 => h.nvme.reset(),
        _ => h.disk.lock().fail_with = (input.u8()? & 1 != 0).then_some(0x281),
    }
    Some(())
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let (Some(flags), Some(size)) = (input.u8(), input.u8()) else {
        return;
    };
    let sectors = (u64::from(size) + 1) * 64;
    let disk = Arc::new(Mutex::new(MemDisk::new(sectors)));
    let shared: SharedDisk = disk.clone();
    let Some(part) = Partition::new(shared, 0, sectors, flags & 2 != 0) else {
        return;
    };
    let Ok(nvme) = VNvme::new(Box::new(part), "fuzz", None, VNvmeQuirks::default()) else {
        return;
    };
    let Ok(vgic) = VGic::new(1, 64) else {
        return;
    };
    let mut h = Harness {
        nvme,
        mem: Arc::new(Mutex::new(FakeGuestMemory::new(
            GuestPhysAddr(RAM),
            RAM_SIZE as usize,
        ))),
        disk,
        vgic,
        irq: Irq {
            bus_master: flags & 8 == 0,
        },
    };
    if flags & 4 != 0 {
        for v in 0..4u64 {
            let e = u64::from(MSIX_TABLE) + v * 16;
            h.write(e, AccessSize::DoubleWord, 0x0802_0040);
            h.write(e + 8, AccessSize::Word, v);
            h.write(e + 12, AccessSize::Word, 0);
        }
        h.with(|n, ctx, irq| n.config_write(ctx, irq, MSIX_CAP, AccessSize::Word, 1 << 31));
    }
    if flags & 1 != 0 {
        // As Linux leaves it after nvme_pci_configure_admin_queue.
        h.write(0x24, AccessSize::Word, 0x001f_001f);
        h.write(0x28, AccessSize::DoubleWord, RAM);
        h.write(0x30, AccessSize::DoubleWord, RAM + 0x1000);
        h.write(0x14, AccessSize::Word, (6 << 16) | (4 << 20) | 1);
    }
    while step(&mut h, &mut input).is_some() {}
});
