//! The hardware side of the virtual CPU interface: GICv3 ICH_* system registers, or the
//! GICv2 GICH frame (IHI 0048B, "GIC virtual interface control registers"), behind one API
//! that speaks the GICv3 list-register format (the GICv2 conversion is `vgic::v2`).

use super::cpu;
use crate::vgic::v2::{lr_v2_to_v3, lr_v3_to_v2};
use core::sync::atomic::{AtomicU64, Ordering};

/// GICH base on a GICv2 board; 0 on GICv3.
static GICH: AtomicU64 = AtomicU64::new(0);

const GICH_HCR: u64 = 0x000;
const GICH_VTR: u64 = 0x004;
const GICH_VMCR: u64 = 0x008;
const GICH_APR: u64 = 0x0f0;
const GICH_LR0: u64 = 0x100;

/// Selects GICv2 (GICH at `gich_base`) or, with `None`, GICv3. Called once at boot.
pub fn init(gich_base: Option<u64>) {
    GICH.store(gich_base.unwrap_or(0), Ordering::Release);
}

fn gich() -> Option<u64> {
    match GICH.load(Ordering::Acquire) {
        0 => None,
        b => Some(b),
    }
}

fn read(base: u64, off: u64) -> u32 {
    // SAFETY: (1) `base` is the board's GICH frame, identity-mapped as device memory by
    // `mmu::build` (every GIC window of the board is); (2) `off` is one of the register
    // offsets above, inside the 4 KiB frame and 4-byte aligned; (3) a volatile 32-bit read
    // of a GICH register has no side effect on memory Rust knows about.
    unsafe { core::ptr::read_volatile((base + off) as *const u32) }
}

fn write(base: u64, off: u64, v: u32) {
    // SAFETY: as in `read`; the write changes only this CPU's virtual interface state.
    unsafe { core::ptr::write_volatile((base + off) as *mut u32, v) }
}

/// Number of list registers.
pub fn num_lrs() -> usize {
    match gich() {
        Some(b) => (read(b, GICH_VTR) & 0x3f) as usize + 1,
        None => cpu::num_list_registers(),
    }
}

/// Writes list register `n` (GICv3 format).
pub fn write_lr(n: usize, v: u64) {
    match gich() {
        Some(b) => write(b, GICH_LR0 + 4 * n as u64, lr_v3_to_v2(v)),
        None => cpu::write_lr(n, v),
    }
}

/// Reads list register `n` (GICv3 format).
pub fn read_lr(n: usize) -> u64 {
    match gich() {
        Some(b) => lr_v2_to_v3(read(b, GICH_LR0 + 4 * n as u64)),
        None => cpu::read_lr(n),
    }
}

/// Writes the virtual interface control register (`En` bit 0, `UIE` bit 1 in both).
pub fn set_hcr(v: u64) {
    match gich() {
        Some(b) => write(b, GICH_HCR, v as u32),
        None => cpu::set_ich_hcr(v),
    }
}

/// The guest's virtual CPU interface state: (VMCR, Group 0 active priorities, Group 1
/// active priorities). GICv2's one `GICH_APR` covers both groups and comes back as the
/// Group 1 value, with 0 for Group 0.
pub fn save_vmcr() -> (u64, u64, u64) {
    match gich() {
        Some(b) => (
            u64::from(read(b, GICH_VMCR)),
            0,
            u64::from(read(b, GICH_APR)),
        ),
        None => (cpu::ich_vmcr(), cpu::ich_ap0r0(), cpu::ich_ap1r0()),
    }
}

/// The loaded vCPU's virtual machine control register.
fn vmcr() -> u64 {
    match gich() {
        Some(b) => u64::from(read(b, GICH_VMCR)),
        None => cpu::ich_vmcr(),
    }
}

/// The loaded vCPU's priority mask (from `ICH_VMCR_EL2` or `GICH_VMCR`).
pub fn priority_mask() -> u8 {
    crate::vgic::vmcr_priority_mask(vmcr(), gich().is_some())
}

/// Restores what [`save_vmcr`] returned.
pub fn restore_vmcr(vmcr: u64, ap0r: u64, ap1r: u64) {
    match gich() {
        Some(b) => {
            write(b, GICH_VMCR, vmcr as u32);
            write(b, GICH_APR, ap1r as u32);
        }
        None => {
            cpu::set_ich_vmcr(vmcr);
            cpu::set_ich_ap0r0(ap0r);
            cpu::set_ich_ap1r0(ap1r);
        }
    }
}
