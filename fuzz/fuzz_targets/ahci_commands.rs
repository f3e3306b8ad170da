//! Fuzz target: whatever a guest writes to the virtual AHCI controller's registers, its
//! config space and the command lists, command tables, PRDs and FIS area in its RAM,
//! the model (`hypervisor::vahci::VAhci`, the production code) never panics and never
//! writes a read-only disk.
//!
//! Input: a 4-byte header, then 16-byte records.
//!
//! ```text
//! header  [0..2] disk sectors - 1 (u16 LE, mod 4096)
//!         [2] bit 0: read-only disk   bit 1: no_write_cache quirk   bit 2: skip the
//!             driver-like set-up (AE, CLB, FB, FRE, ST, IE) and start from power-on
//!         [3] max_queue_depth quirk
//! record  [0] op   [1] slot / index   [2] SAS (access size: 1 << (b & 3) bytes)   [3] flags
//!         [4..8] offset (u32 LE)        [8..16] value (u64 LE)
//! flags   bit 0: use `value` as a raw guest address where the op takes one
//! ```
//!
//! Command tables live at a fixed place per slot (`TABLES + slot * TABLE_STRIDE`) so
//! that short inputs reach command execution; op 4 writes anywhere in RAM, and raw
//! addresses (flag bit 0) reach outside it.
#![no_main]

use hypervisor::block::{MemDisk, Partition};
use hypervisor::mmio::AccessSize;
use hypervisor::pci::{PciFunction, PciIrq};
use hypervisor::sync::Mutex;
use hypervisor::types::{GuestPhysAddr, VcpuId};
use hypervisor::vahci::{VAhci, VAhciQuirks, ABAR};
use hypervisor::vgic::{VGic, VcpuSet};
use hypervisor::vm::devices::IoCtx;
use hypervisor::vm::mem::{FakeGuestMemory, GuestMemory};
use libfuzzer_sys::fuzz_target;
use std::sync::Arc;

const RAM: u64 = 0x4000_0000;
const RAM_SIZE: u64 = 0x4_0000;
const CLB: u64 = RAM;
const FB: u64 = RAM + 0x400;
const TABLES: u64 = RAM + 0x1000;
const TABLE_STRIDE: u64 = 0x400;
const OPS: u8 = 11;

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

struct State {
    hba: VAhci,
    mem: Arc<Mutex<FakeGuestMemory>>,
    disk: Arc<Mutex<MemDisk>>,
    vgic: VGic,
    irq: Irq,
}

impl State {
    fn call<R>(&mut self, f: impl FnOnce(&mut VAhci, &mut IoCtx<'_>, &mut Irq) -> R) -> R {
        let mem: &Mutex<dyn GuestMemory> = &*self.mem;
        let mut ctx = IoCtx {
            vcpu: VcpuId(0),
            vgic: &mut self.vgic,
            kicks: VcpuSet::EMPTY,
            mem,
        };
        f(&mut self.hba, &mut ctx, &mut self.irq)
    }

    fn reg(&mut self, offset: u64, value: u32) {
        self.call(|h, c, i| h.bar_write(c, i, ABAR, offset, AccessSize::Word, u64::from(value)));
    }

    fn poke(&mut self, addr: u64, data: &[u8]) {
        let _ = self.mem.lock().write(GuestPhysAddr(addr), data);
    }

    fn table(slot: u8) -> u64 {
        TABLES + u64::from(slot % 32) * TABLE_STRIDE
    }

    /// A guest address: in RAM, or raw.
    fn addr(flags: u8, value: u64) -> u64 {
        if flags & 1 != 0 {
            value
        } else {
            RAM + value % RAM_SIZE
        }
    }

    fn apply(&mut self, r: &[u8]) {
        let (op, idx, size, flags) = (r[0] % OPS, r[1], AccessSize::from_sas(r[2]), r[3]);
        let offset = u64::from(u32::from_le_bytes([r[4], r[5], r[6], r[7]]));
        let mut v = [0u8; 8];
        v.copy_from_slice(&r[8..16]);
        let value = u64::from_le_bytes(v);
        match op {
            0 => self.call(|h, c, i| h.bar_write(c, i, idx % 6, offset % 0x1100, size, value)),
            1 => {
                let _ = self.call(|h, c, i| h.bar_read(c, i, idx % 6, offset % 0x1100, size));
            }
            2 => self
                .call(|h, c, i| h.config_write(c, i, (offset % 0x1000) as u16, size, value as u32)),
            3 => {
                let _ = self.hba.config_read((offset % 0x1000) as u16, size);
            }
            // Any 8 bytes of RAM.
            4 => self.poke(RAM + offset % RAM_SIZE, &value.to_le_bytes()),
            // A command header: DW0 (CFL, W, R, C, PRDTL) and the slot's table.
            5 => {
                let ctba = if flags & 1 != 0 {
                    value
                } else {
                    Self::table(idx)
                };
                let mut h = [0u8; 16];
                h[..4].copy_from_slice(&(offset as u32).to_le_bytes());
                h[8..].copy_from_slice(&ctba.to_le_bytes());
                self.poke(CLB + u64::from(idx % 32) * 32, &h);
            }
            // A Register H2D FIS: command, features, LBA 47:0, count, device, control.
            6 => {
                let l = value.to_le_bytes();
                let o = offset.to_le_bytes();
                let fis = [
                    0x27,
                    flags & 0x80,
                    o[0],
                    o[1],
                    l[0],
                    l[1],
                    l[2],
                    o[2],
                    l[3],
                    l[4],
                    l[5],
                    o[3],
                    l[6],
                    l[7],
                    0,
                    r[2],
                    0,
                    0,
                    0,
                    0,
                ];
                self.poke(Self::table(idx), &fis);
            }
            // PRD entry `offset % 64` of slot `idx`: address, DBC and I bit.
            7 => {
                let mut e = [0u8; 16];
                e[..8].copy_from_slice(&Self::addr(flags, value).to_le_bytes());
                e[12..].copy_from_slice(&((value >> 32) as u32 ^ offset as u32).to_le_bytes());
                let at = Self::table(idx) + 0x80 + (offset % 56) * 16;
                self.poke(at, &e);
            }
            // Issue commands (SActive first when asked).
            8 => {
                if flags & 2 != 0 {
                    self.reg(0x134, value as u32);
                }
                self.reg(0x138, (value >> 32) as u32 | 1 << (idx % 32));
            }
            9 => {
                self.irq.bus_master = flags & 4 == 0;
                self.disk.lock().fail_with = (flags & 8 != 0).then_some(value as u32);
            }
            _ => self.hba.reset(),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((header, records)) = data.split_first_chunk::<4>() else {
        return;
    };
    let sectors = u64::from(u16::from_le_bytes([header[0], header[1]]) % 4096) + 1;
    let read_only = header[2] & 1 != 0;
    let quirks = VAhciQuirks {
        max_queue_depth: u32::from(header[3]),
        no_write_cache: header[2] & 2 != 0,
    };
    let disk = Arc::new(Mutex::new(MemDisk::new(sectors)));
    let Some(part) = Partition::new(disk.clone(), 0, sectors, read_only) else {
        return;
    };
    let Ok(vgic) = VGic::new(1, 32) else {
        return;
    };
    let mut s = State {
        hba: VAhci::new(Box::new(part), "FUZZ", quirks),
        mem: Arc::new(Mutex::new(FakeGuestMemory::new(
            GuestPhysAddr(RAM),
            RAM_SIZE as usize,
        ))),
        disk: disk.clone(),
        vgic,
        irq: Irq { bus_master: true },
    };
    if header[2] & 4 == 0 {
        // What a driver does before its first command: AHCI mode, interrupts, the port's
        // memory, FIS receive, start.
        s.reg(0x04, 0x8000_0002);
        s.reg(0x100, CLB as u32);
        s.reg(0x108, FB as u32);
        s.reg(0x114, u32::MAX);
        s.reg(0x118, 0x10);
        s.reg(0x118, 0x11);
    }
    for r in records.chunks_exact(16) {
        s.apply(r);
    }
    if read_only {
        let d = disk.lock();
        assert!(
            (0..sectors).all(|i| d.sector(i).iter().all(|&b| b == 0)),
            "a read-only disk was written"
        );
    }
});
