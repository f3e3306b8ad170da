//! Fuzz target: a guest's sequence of accesses to the virtual GIC and the virtual PL011
//! never panics the hypervisor. MMIO goes through a VM's device bus
//! (`VmDevices::mmio_read`/`mmio_write`), the path every trapped access takes.
//!
//! Input: a 3-byte header, then 16-byte records.
//!
//! ```text
//! header  [0] bit 7: GICv2 (VGic::new_v2) else GICv3
//!         [1] vCPUs - 1 (mod 128)       [2] SPIs / 32 (mod 31)
//! record  [0] op   [1] vcpu   [2] SAS (access size: 1 << (b & 3) bytes)   [3] flags
//!         [4..8] offset (u32 LE)        [8..16] value (u64 LE)
//! flags   bit 0: use `value` as a full 64-bit offset (MMIO: a full guest address)
//!         bit 3: raw INTID (else in range)   bit 4: MMIO ops 14/15 hit the GICR window
//!         bits 1-2: how `sync` mutates the flushed list registers
//! ```
//!
//! vCPU numbers for calls that come from a trapping vCPU (MMIO frames, `ICC_SGI*R_EL1`)
//! are always valid, as they are in the hypervisor; calls that return
//! `Result<_, VGicError>` also get one past the last vCPU.
#![no_main]

use hypervisor::mmio::AccessSize;
use hypervisor::platform::GicVersion;
use hypervisor::types::{GuestPhysAddr, IntId, VcpuId};
use hypervisor::vgic::Lr;
use hypervisor::vm::devices::VmDevices;
use hypervisor::vm::layout;
use libfuzzer_sys::fuzz_target;

const LRS: usize = 16;
const OPS: u8 = 24;

struct Record {
    op: u8,
    vcpu: u8,
    size: AccessSize,
    flags: u8,
    offset: u64,
    value: u64,
}

impl Record {
    fn parse(r: &[u8]) -> Self {
        let mut v = [0u8; 8];
        v.copy_from_slice(&r[8..16]);
        let value = u64::from_le_bytes(v);
        let offset = u64::from(u32::from_le_bytes([r[4], r[5], r[6], r[7]]));
        Self {
            op: r[0] % OPS,
            vcpu: r[1],
            size: AccessSize::from_sas(r[2]),
            flags: r[3],
            offset: if r[3] & 1 != 0 { value } else { offset },
            value,
        }
    }
}

struct State {
    dev: VmDevices,
    /// List registers of each vCPU as the last `flush` left them.
    lrs: Vec<[u64; LRS]>,
}

impl State {
    /// A vCPU the hypervisor could be running (the one that trapped).
    fn running(&self, b: u8) -> VcpuId {
        VcpuId(usize::from(b) % self.dev.vgic.vcpu_count())
    }

    /// A vCPU argument of a fallible call: valid or one past the last.
    fn any_vcpu(&self, b: u8) -> VcpuId {
        VcpuId(usize::from(b) % (self.dev.vgic.vcpu_count() + 1))
    }

    /// A guest-physical address: inside one of the VM's device windows (GICD, GICR,
    /// UART, chosen by the op), or anywhere when `flags` bit 0 gave a full offset.
    fn address(&self, r: &Record) -> GuestPhysAddr {
        if r.flags & 1 != 0 {
            return GuestPhysAddr(r.offset);
        }
        let (base, size) = match r.op {
            16 | 17 => (layout::UART_BASE, layout::UART_SIZE + 16),
            _ if r.flags & 0x10 != 0 => (layout::GICR_BASE, 3 * layout::GICR_STRIDE),
            _ => (layout::GICD_BASE, layout::GICD_SIZE + 16),
        };
        GuestPhysAddr(base + r.offset % size)
    }

    fn intid(&self, r: &Record) -> IntId {
        if r.flags & 8 != 0 {
            IntId(r.offset as u32)
        } else {
            IntId((r.offset % u64::from(32 + self.dev.vgic.spi_count() + 1)) as u32)
        }
    }

    fn apply(&mut self, r: &Record) {
        let bytes = r.size.bytes() as usize;
        match r.op {
            0 => {
                let _ = self.dev.vgic.gicd_read(r.offset, bytes);
            }
            1 => self.dev.vgic.gicd_write(r.offset, bytes, r.value),
            2 => {
                let _ = self.dev.vgic.gicr_read(r.offset, bytes);
            }
            3 => self.dev.vgic.gicr_write(r.offset, bytes, r.value),
            4 => {
                let sender = self.running(r.vcpu);
                let _ = self.dev.vgic.sgi1r_write(sender, r.value);
            }
            5 => {
                let sender = self.running(r.vcpu);
                let _ = self.dev.vgic.sgi0r_write(sender, r.value);
            }
            6 => {
                let vcpu = self.running(r.vcpu);
                let _ = self.dev.vgic.gicd_v2_read(vcpu, r.offset, bytes);
            }
            7 => {
                let vcpu = self.running(r.vcpu);
                let _ = self.dev.vgic.gicd_v2_write(vcpu, r.offset, bytes, r.value);
            }
            8 => self.flush(r),
            9 => self.sync(r),
            10 => {
                let (intid, vcpu) = (self.intid(r), self.any_vcpu(r.vcpu));
                let _ = self.dev.vgic.set_level(intid, vcpu, r.value & 1 != 0);
            }
            11 => {
                let _ = self
                    .dev
                    .vgic
                    .inject_edge(self.intid(r), self.any_vcpu(r.vcpu));
            }
            12 => {
                let (intid, vcpu) = (self.intid(r), self.any_vcpu(r.vcpu));
                let _ = self.dev.vgic.set_eoi_notify(intid, vcpu, r.value & 1 != 0);
                let pintid = (r.value & 2 != 0).then_some(IntId((r.value >> 32) as u32));
                let _ = self.dev.vgic.set_hw_mapping(intid, vcpu, pintid);
            }
            13 => {
                let vcpu = self.any_vcpu(r.vcpu);
                let _ = self.dev.vgic.take_eoi_notified(vcpu).map(Iterator::count);
                let _ = self.dev.vgic.has_pending(vcpu);
                let _ = self.dev.vgic.take_kicks();
            }
            14 | 16 => {
                let vcpu = self.running(r.vcpu);
                let _ = self.dev.mmio_read(vcpu, self.address(r), r.size);
            }
            15 | 17 => {
                let vcpu = self.running(r.vcpu);
                let _ = self.dev.mmio_write(vcpu, self.address(r), r.size, r.value);
            }
            20 => {
                let sender = self.running(r.vcpu);
                let _ = self.dev.vgic.asgi1r_write(sender, r.value);
            }
            21 => {
                let vcpu = self.any_vcpu(r.vcpu);
                let _ = self.dev.vgic.has_pending_unmasked(vcpu, r.value as u8);
            }
            22 => self
                .dev
                .vgic
                .set_group_enables(r.value & 1 != 0, r.value & 2 != 0),
            23 => {
                let vcpu = self.any_vcpu(r.vcpu);
                while self.dev.vgic.pop_eoi_notified(vcpu).is_some() {}
            }
            18 => {
                for b in r.value.to_le_bytes().iter().take(usize::from(r.flags & 7)) {
                    let _ = self.dev.console_input(*b);
                }
            }
            19 => {
                if let Some(out) = self.dev.console_output() {
                    out.flush_partial();
                }
            }
            _ => unreachable!("op is taken mod OPS"),
        }
    }

    fn flush(&mut self, r: &Record) {
        let vcpu = self.any_vcpu(r.vcpu);
        let num_lrs = (r.value % (LRS as u64 + 2)) as usize;
        let mut lrs = [Lr::EMPTY; LRS];
        if let Ok(f) = self.dev.vgic.flush(vcpu, &mut lrs, num_lrs) {
            assert!(
                f.used <= num_lrs.min(LRS),
                "flush filled more LRs than it had"
            );
            if let Some(saved) = self.lrs.get_mut(vcpu.0) {
                *saved = lrs;
            }
        }
    }

    /// Folds back the LRs of the last flush, changed the way a guest (or a stray
    /// hypervisor bug) could have changed them.
    fn sync(&mut self, r: &Record) {
        let vcpu = self.any_vcpu(r.vcpu);
        let mut lrs = self.lrs.get(vcpu.0).copied().unwrap_or([Lr::EMPTY; LRS]);
        for (i, lr) in lrs.iter_mut().enumerate() {
            let pick = (r.value >> (i * 4)) & 0xf;
            match (r.flags >> 1) & 3 {
                // The guest acknowledged or deactivated some: rewrite the State field.
                0 => *lr = (*lr & !(3 << 62)) | ((pick & 3) << 62),
                // The guest deactivated every one.
                1 => *lr = Lr::EMPTY,
                // Left as flushed.
                2 => {}
                // Garbage in the vINTID field.
                _ => *lr ^= pick << (i % 8 * 4),
            }
        }
        if self.dev.vgic.sync(vcpu, &lrs).is_ok() {
            if let Some(saved) = self.lrs.get_mut(vcpu.0) {
                *saved = [Lr::EMPTY; LRS];
            }
        }
    }
}

fn discard(_tag: &str, _line: &[u8]) {}

fuzz_target!(|data: &[u8]| {
    let Some((header, records)) = data.split_first_chunk::<3>() else {
        return;
    };
    let vcpus = usize::from(header[1]) % hypervisor::vgic::MAX_VGIC_VCPUS + 1;
    let spis = u32::from(header[2] % 31) * 32;
    let version = if header[0] & 0x80 != 0 {
        GicVersion::V2
    } else {
        GicVersion::V3
    };
    let Ok(mut dev) = VmDevices::new(version, vcpus, "fuzz", discard) else {
        return;
    };
    // The SPI count from the header, as a board with another GIC would give it.
    let Ok(gic) = (match version {
        GicVersion::V2 => hypervisor::vgic::VGic::new_v2(vcpus, spis),
        GicVersion::V3 => hypervisor::vgic::VGic::new(vcpus, spis),
    }) else {
        return;
    };
    dev.vgic = gic;
    let mut state = State {
        dev,
        lrs: vec![[Lr::EMPTY; LRS]; vcpus],
    };
    for r in records.chunks_exact(16) {
        state.apply(&Record::parse(r));
    }
});
