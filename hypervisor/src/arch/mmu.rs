//! The hypervisor's own stage-1 translation at EL2: an identity map (built with
//! `aarch64-paging`) of the machine's RAM (the firmware's or the board KDL's) as Normal write-back memory and of every device
//! window the core or a driver touches as Device-nGnRE, execute-never.

use crate::platform::BoardDesc;
use aarch64_cpu::registers::{
    Readable, Writeable, ID_AA64MMFR0_EL1, MAIR_EL2, SCTLR_EL2, TCR_EL2, TTBR0_EL2,
};
use aarch64_paging::descriptor::El23Attributes;
use aarch64_paging::idmap::IdMap;
use aarch64_paging::paging::{El2, MemoryRegion};
// spin's lock, not the core's `sync` (which builds on `arch`): taken once per CPU at bring-up.
use spin::Mutex;
use spin::Once;

/// MAIR_EL2 index of Device-nGnRE.
const ATTR_DEVICE: El23Attributes = El23Attributes::ATTRIBUTE_INDEX_0;
/// MAIR_EL2 index of Normal, inner/outer write-back read/write-allocate.
const ATTR_NORMAL: El23Attributes = El23Attributes::ATTRIBUTE_INDEX_1;
/// TCR_EL2 RES1 bits 31 and 23 (non-VHE layout), which `aarch64-cpu` does not name.
const TCR_EL2_RES1: u64 = (1 << 31) | (1 << 23);
/// SCTLR_EL2 RES1 bits of the non-VHE layout (29:28, 23:22, 18, 16, 11, 5:4), which
/// `aarch64-cpu` does not name.
const SCTLR_EL2_RES1: u64 = 0x30c5_0830;
/// Root level 0: a 48-bit address space (T0SZ = 16), enough for every board's RAM.
const ROOT_LEVEL: usize = 0;

static IDMAP: Once<Mutex<IdMap<El2>>> = Once::new();
static TTBR: Once<u64> = Once::new();

/// Errors building the hypervisor's page tables.
#[derive(Debug, thiserror::Error)]
pub enum MmuError {
    /// A board region could not be mapped (overlap or size); fix the board KDL.
    #[error("cannot map {what} {start:#x}..{end:#x}: {err}; check the board's memory map")]
    Map {
        /// What the region is.
        what: &'static str,
        /// Start.
        start: u64,
        /// End.
        end: u64,
        /// The library's error.
        err: aarch64_paging::MapError,
    },
}

fn normal() -> El23Attributes {
    El23Attributes::VALID | ATTR_NORMAL | El23Attributes::INNER_SHAREABLE | El23Attributes::ACCESSED
}

fn device() -> El23Attributes {
    El23Attributes::VALID | ATTR_DEVICE | El23Attributes::ACCESSED | El23Attributes::XN
}

/// Builds the identity map of `ram` (the RAM chosen at boot: the firmware's or the board's)
/// and `board`'s devices (boot CPU, once, after the heap is up).
pub fn build(board: &BoardDesc, ram: &[crate::platform::MemoryDesc]) -> Result<(), MmuError> {
    let mut map = IdMap::new(ROOT_LEVEL, El2);
    let mut add = |what: &'static str, base: u64, size: u64, attrs: El23Attributes| {
        if size == 0 {
            return Ok(());
        }
        let start = base & !0xfff;
        let end = (base + size + 0xfff) & !0xfff;
        map.map_range(&MemoryRegion::new(start as usize, end as usize), attrs)
            .map_err(|err| MmuError::Map {
                what,
                start,
                end,
                err,
            })
    };
    for m in ram {
        add("memory", m.base, m.size, normal())?;
    }
    // Every enabled device's windows, the interrupt controller's included.
    for d in board.devices.iter().filter(|d| d.is_enabled()) {
        for r in d.regs {
            add("device", r.base, r.size, device())?;
        }
    }
    let root = map.root_address().0 as u64;
    TTBR.call_once(|| root);
    IDMAP.call_once(|| Mutex::new(map));
    Ok(())
}

/// Turns the MMU and caches on for this CPU with the tables from [`build`]. Does nothing if
/// they were not built.
pub fn enable_this_cpu() {
    let Some(&ttbr) = TTBR.get() else { return };
    let pa_range = ID_AA64MMFR0_EL1.read(ID_AA64MMFR0_EL1::PARange);
    // TCR_EL2 (Arm ARM D23.2.170, non-VHE): RES1 bits 31 and 23, PS = PARange (max 48-bit),
    // TG0 = 4 KiB, SH0 = inner shareable, ORGN0/IRGN0 = write-back write-allocate, T0SZ = 16.
    let tcr = TCR_EL2::PS.val(pa_range.min(5))
        + TCR_EL2::TG0::KiB_4
        + TCR_EL2::SH0::Inner
        + TCR_EL2::ORGN0::WriteBack_ReadAlloc_WriteAlloc_Cacheable
        + TCR_EL2::IRGN0::WriteBack_ReadAlloc_WriteAlloc_Cacheable
        + TCR_EL2::T0SZ.val(16);
    // MAIR_EL2: attr0 = Device-nGnRE (0x04), attr1 = Normal WB RWA (0xff).
    MAIR_EL2.write(
        MAIR_EL2::Attr0_Device::nonGathering_nonReordering_EarlyWriteAck
            + MAIR_EL2::Attr1_Normal_Outer::WriteBack_NonTransient_ReadWriteAlloc
            + MAIR_EL2::Attr1_Normal_Inner::WriteBack_NonTransient_ReadWriteAlloc,
    );
    TCR_EL2.set(TCR_EL2_RES1 | tcr.value);
    TTBR0_EL2.set(ttbr);
    // SAFETY: (1) the identity map covers the image, its stacks, heap and every device the
    // hypervisor touches (built from the board table), so no access changes meaning when
    // translation turns on; (2) no TLB entry for EL2 can exist before this point, but they
    // are invalidated anyway; (3) barriers order the register writes before SCTLR_EL2.M.
    unsafe {
        core::arch::asm!(
            "dsb ish",
            "tlbi alle2",
            "dsb ish",
            "isb",
            options(nostack, preserves_flags)
        );
    }
    // SCTLR_EL2: M (MMU), C (data cache), I (instruction cache), SA (stack alignment check),
    // plus the RES1 bits of the non-VHE layout (29:28, 23:22, 18, 16, 11, 5:4).
    let sctlr = SCTLR_EL2::M::Enable
        + SCTLR_EL2::C::Cacheable
        + SCTLR_EL2::SA::Enable
        + SCTLR_EL2::I::Cacheable;
    SCTLR_EL2.set(SCTLR_EL2_RES1 | sctlr.value);
    // SAFETY: ISB so that following instructions are fetched with translation on.
    unsafe { core::arch::asm!("isb", options(nostack, preserves_flags)) };
    if let Some(m) = IDMAP.get() {
        m.lock().mark_active();
    }
}
