//! Fuzz target: a guest's sequence of accesses to the PCIe host bridge (ECAM window and
//! memory window), the MSI doorbells and its RAM, with two virtio-blk disks on the bus,
//! never panics the hypervisor. Every access goes through the VM's device bus
//! (`VmDevices::mmio_read`/`mmio_write`), the path a trapped guest access takes, so BAR
//! sizing, placement, decoding, capabilities, virtio feature negotiation, queue setup
//! and notifies all run on guest-chosen values.
//!
//! Input: a 1-byte header, then 16-byte records.
//!
//! ```text
//! header  bit 0: GICv2 (v2m frame) else GICv3 (MBI)   bit 1: second disk read-only
//! record  [0] op   [1] SAS (access size: 1 << (b & 3) bytes)   [2..4] unused
//!         [4..8] offset (u32 LE)        [8..16] value (u64 LE)
//! ops     0/1 ECAM read/write (offset mod 16 MiB + 16: past the end too)
//!         2/3 memory window read/write (offset mod 256 KiB from its base)
//!         4   the guest writes `value` into its RAM at `offset` (mod RAM size)
//!         5   a CPU write to the MSI doorbell (GICD_SETSPI_NSR or the v2m frame)
//!         6   VM reset        7 read anywhere (`value` is a full guest address)
//! ```
#![no_main]

use hypervisor::block::{MemDisk, Partition};
use hypervisor::mmio::AccessSize;
use hypervisor::platform::GicVersion;
use hypervisor::sync::Mutex;
use hypervisor::types::{GuestPhysAddr, VcpuId};
use hypervisor::virtio::blk::VirtioBlk;
use hypervisor::virtio::pci::VirtioPci;
use hypervisor::vm::devices::VmDevices;
use hypervisor::vm::layout;
use hypervisor::vm::mem::{FakeGuestMemory, GuestMemory};
use libfuzzer_sys::fuzz_target;
use std::sync::Arc;

const RAM_SIZE: u64 = 0x1_0000;

fn discard(_tag: &str, _line: &[u8]) {}

fuzz_target!(|data: &[u8]| {
    let Some((&header, records)) = data.split_first() else {
        return;
    };
    let gic = if header & 1 != 0 {
        GicVersion::V2
    } else {
        GicVersion::V3
    };
    let mem = Arc::new(Mutex::new(FakeGuestMemory::new(
        GuestPhysAddr(layout::RAM_BASE),
        RAM_SIZE as usize,
    )));
    let Ok(dev) = VmDevices::new(gic, 2, "fuzz", discard) else {
        return;
    };
    let mut dev = dev.with_memory(mem.clone());
    for (i, ro) in [false, header & 2 != 0].into_iter().enumerate() {
        let disk = Arc::new(Mutex::new(MemDisk::new(64)));
        let part = Partition::new(disk, 0, 64, ro).expect("a partition of the whole disk");
        let blk = VirtioBlk::new(Box::new(part), "fuzz");
        dev.add_pci(["d0", "d1"][i], Box::new(VirtioPci::new(blk)))
            .expect("two PCI functions fit");
    }
    let doorbell = match gic {
        GicVersion::V3 => layout::GICD_BASE + 0x40,
        GicVersion::V2 => layout::GICV2M_BASE + 0x40,
    };
    for r in records.chunks_exact(16) {
        let size = AccessSize::from_sas(r[1]);
        let offset = u64::from(u32::from_le_bytes([r[4], r[5], r[6], r[7]]));
        let mut v = [0u8; 8];
        v.copy_from_slice(&r[8..16]);
        let value = u64::from_le_bytes(v);
        let vcpu = VcpuId(usize::from(r[2] & 1));
        let ecam = GuestPhysAddr(layout::PCI_ECAM_BASE + offset % (layout::PCI_ECAM_SIZE + 16));
        let window = GuestPhysAddr(layout::PCI_MMIO_BASE + offset % 0x4_0000);
        match r[0] % 8 {
            0 => {
                let _ = dev.mmio_read(vcpu, ecam, size);
            }
            1 => {
                let _ = dev.mmio_write(vcpu, ecam, size, value);
            }
            2 => {
                let _ = dev.mmio_read(vcpu, window, size);
            }
            3 => {
                let _ = dev.mmio_write(vcpu, window, size, value);
            }
            4 => {
                let at = GuestPhysAddr(layout::RAM_BASE + offset % RAM_SIZE);
                let n = size.bytes() as usize;
                let _ = mem.lock().write(at, &value.to_le_bytes()[..n]);
            }
            5 => {
                let _ = dev.mmio_write(vcpu, GuestPhysAddr(doorbell), size, value);
            }
            6 => {
                let _ = dev.reset();
            }
            _ => {
                let _ = dev.mmio_read(vcpu, GuestPhysAddr(value), size);
            }
        }
    }
});
