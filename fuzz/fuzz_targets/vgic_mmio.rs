//! Fuzz target: a guest's sequence of accesses to the virtual GIC and the virtual PL011
//! never panics the hypervisor.
//!
//! Input: a 3-byte header, then 16-byte records.
//!
//! ```text
//! header  [0] bit 7: GICv2 (VGic::new_v2) else GICv3
//!         [1] vCPUs - 1 (mod 128)       [2] SPIs / 32 (mod 31)
//! record  [0] op   [1] vcpu   [2] SAS (access size: 1 << (b & 3) bytes)   [3] flags
//!         [4..8] offset (u32 LE)        [8..16] value (u64 LE)
//! flags   bit 0: use `value` as a full 64-bit offset   bit 3: raw INTID (else in range)
//!         bits 1-2: how `sync` mutates the flushed list registers
//! ```
//!
//! vCPU numbers for calls that come from a trapping vCPU (MMIO frames, `ICC_SGI*R_EL1`)
//! are always valid, as they are in the hypervisor; calls that return
//! `Result<_, VGicError>` also get one past the last vCPU.
#![no_main]

use hypervisor::mmio::{AccessSize, MmioDevice};
use hypervisor::types::{IntId, VcpuId};
use hypervisor::vgic::dist::GicdFrame;
use hypervisor::vgic::redist::GicrFrames;
use hypervisor::vgic::{Lr, VGic};
use hypervisor::vuart::Pl011;
use libfuzzer_sys::fuzz_target;

const LRS: usize = 16;
const OPS: u8 = 20;

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
    gic: VGic,
    uart: Pl011,
    /// List registers of each vCPU as the last `flush` left them.
    lrs: Vec<[u64; LRS]>,
}

impl State {
    /// A vCPU the hypervisor could be running (the one that trapped).
    fn running(&self, b: u8) -> VcpuId {
        VcpuId(usize::from(b) % self.gic.vcpu_count())
    }

    /// A vCPU argument of a fallible call: valid or one past the last.
    fn any_vcpu(&self, b: u8) -> VcpuId {
        VcpuId(usize::from(b) % (self.gic.vcpu_count() + 1))
    }

    fn intid(&self, r: &Record) -> IntId {
        if r.flags & 8 != 0 {
            IntId(r.offset as u32)
        } else {
            IntId((r.offset % u64::from(32 + self.gic.spi_count() + 1)) as u32)
        }
    }

    fn apply(&mut self, r: &Record) {
        let bytes = r.size.bytes() as usize;
        match r.op {
            0 => {
                let _ = self.gic.gicd_read(r.offset, bytes);
            }
            1 => self.gic.gicd_write(r.offset, bytes, r.value),
            2 => {
                let _ = self.gic.gicr_read(r.offset, bytes);
            }
            3 => self.gic.gicr_write(r.offset, bytes, r.value),
            4 => {
                let sender = self.running(r.vcpu);
                let _ = self.gic.sgi1r_write(sender, r.value);
            }
            5 => {
                let sender = self.running(r.vcpu);
                let _ = self.gic.sgi0r_write(sender, r.value);
            }
            6 => {
                let vcpu = self.running(r.vcpu);
                let _ = self.gic.gicd_v2_read(vcpu, r.offset, bytes);
            }
            7 => {
                let vcpu = self.running(r.vcpu);
                let _ = self.gic.gicd_v2_write(vcpu, r.offset, bytes, r.value);
            }
            8 => self.flush(r),
            9 => self.sync(r),
            10 => {
                let _ = self
                    .gic
                    .set_level(self.intid(r), self.any_vcpu(r.vcpu), r.value & 1 != 0);
            }
            11 => {
                let _ = self.gic.inject_edge(self.intid(r), self.any_vcpu(r.vcpu));
            }
            12 => {
                let (intid, vcpu) = (self.intid(r), self.any_vcpu(r.vcpu));
                let _ = self.gic.set_eoi_notify(intid, vcpu, r.value & 1 != 0);
                let pintid = (r.value & 2 != 0).then_some(IntId((r.value >> 32) as u32));
                let _ = self.gic.set_hw_mapping(intid, vcpu, pintid);
            }
            13 => {
                let vcpu = self.any_vcpu(r.vcpu);
                let _ = self.gic.take_eoi_notified(vcpu).map(Iterator::count);
                let _ = self.gic.has_pending(vcpu);
                let _ = self.gic.take_kicks();
            }
            14 => {
                let vcpu = self.running(r.vcpu);
                let _ = GicdFrame(&mut self.gic).read(vcpu, r.offset, r.size);
                let _ = GicrFrames(&mut self.gic).read(vcpu, r.offset, r.size);
            }
            15 => {
                let vcpu = self.running(r.vcpu);
                let _ = GicdFrame(&mut self.gic).write(vcpu, r.offset, r.size, r.value);
                let _ = GicrFrames(&mut self.gic).write(vcpu, r.offset, r.size, r.value);
            }
            16 => {
                let _ = self.uart.read(self.running(r.vcpu), r.offset, r.size);
            }
            17 => {
                let _ = self
                    .uart
                    .write(self.running(r.vcpu), r.offset, r.size, r.value);
            }
            18 => {
                for b in r.value.to_le_bytes().iter().take(usize::from(r.flags & 7)) {
                    if self.uart.can_accept_input() {
                        let _ = self.uart.push_input(*b);
                    }
                }
                let _ = self.uart.irq_level();
            }
            _ => {
                let _ = self.uart.take_output();
                let _ = self.uart.dropped_output();
            }
        }
    }

    fn flush(&mut self, r: &Record) {
        let vcpu = self.any_vcpu(r.vcpu);
        let num_lrs = (r.value % (LRS as u64 + 2)) as usize;
        let mut lrs = [Lr::EMPTY; LRS];
        if let Ok(f) = self.gic.flush(vcpu, &mut lrs, num_lrs) {
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
        if self.gic.sync(vcpu, &lrs).is_ok() {
            if let Some(saved) = self.lrs.get_mut(vcpu.0) {
                *saved = [Lr::EMPTY; LRS];
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((header, records)) = data.split_first_chunk::<3>() else {
        return;
    };
    let vcpus = usize::from(header[1]) % hypervisor::vgic::MAX_VGIC_VCPUS + 1;
    let spis = u32::from(header[2] % 31) * 32;
    let gic = if header[0] & 0x80 != 0 {
        VGic::new_v2(vcpus, spis)
    } else {
        VGic::new(vcpus, spis)
    };
    let Ok(gic) = gic else {
        return;
    };
    let mut state = State {
        gic,
        uart: Pl011::new(),
        lrs: vec![[Lr::EMPTY; LRS]; vcpus],
    };
    for r in records.chunks_exact(16) {
        state.apply(&Record::parse(r));
    }
});
