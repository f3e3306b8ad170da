//! Arm GICv2 / GIC-400 interrupt controller (`arm,gic-400`, `arm,cortex-a15-gic`): the GIC
//! of the Raspberry Pi 4, ZynqMP (QEMU `xlnx-zcu102`) and QEMU `virt,gic-version=2`.
//!
//! This driver uses its own safe-mmio register blocks rather than arm-gic 0.10's `GicV2`,
//! which (a) writes a whole 32-bit `GICD_IPRIORITYR` word when setting one priority,
//! zeroing (= highest priority) the three neighbouring INTIDs, (b) declares
//! `GICD_ITARGETSR` and `GICC_DIR` as plain `u32`s that cannot be accessed through
//! safe-mmio, so SPI targeting and deactivation are out of reach, and (c) enables the
//! distributor through the Secure view's `EnableGrp1` bit, which is reserved in the
//! Non-secure view that EL2 has on a GIC-400 with Security Extensions.
//!
//! On GICv2 an SGI or SPI target is a CPU-interface bit, not an MPIDR: `init_cpu` reads the
//! banked `GICD_ITARGETSR0` on each CPU to learn its bit and remembers it by MPIDR.
//! Interrupt groups are left as firmware configured them; the driver works in the
//! Non-secure view, where `GICD_CTLR`/`GICC_CTLR` bit 0 enable what `GICC_IAR` returns.
//! EOImode is 0 (a write to EOIR also deactivates).
//!
//! ```ignore
//! use plugin_gic_v2 as _;
//! ```
#![cfg_attr(not(test), no_std)]

pub mod registers;

use core::ptr::NonNull;
use core::sync::atomic::{AtomicU8, Ordering};
use hypervisor::platform::{BoardDesc, DeviceDesc, GicVersion};
use hypervisor::plugin::{DriverEntry, DriverKind, IrqChip, ProbeError, Probed, DRIVERS};
use hypervisor::sync::Mutex;
use registers::{gicc_ctlr, GiccRegisters, GicdRegisters};
use safe_mmio::{field, field_shared, UniqueMmioPointer};

/// GICv2 has at most eight CPU interfaces.
pub const MAX_CPUS: usize = 8;

/// Default priority of SPIs at `init_global` and of SGIs/PPIs at `init_cpu`.
const DEFAULT_PRIORITY: u8 = 0xa0;

/// MPIDR bits that hold affinity: Aff3 (39:32) and Aff2..Aff0 (23:0).
const MPIDR_AFFINITY_MASK: u64 = 0xff_00ff_ffff;

/// First INTID `GICC_IAR` uses for "no interrupt" (1020..=1023 are special).
const SPECIAL_INTID_START: u32 = 1020;

/// `GICD_SGIR` value sending SGI `sgi` to the CPU interfaces in `target_list`
/// (IHI 0048B 4.3.15): TargetListFilter 0b00 (use the list), CPUTargetList at 23:16,
/// SGIINTID at 3:0. `None` if `sgi` >= 16 or the list is empty.
pub fn sgir_value(sgi: u32, target_list: u8) -> Option<u32> {
    (sgi < 16 && target_list != 0).then(|| u32::from(target_list) << 16 | sgi)
}

/// Index of the single CPU interface named by a one-hot `GICD_ITARGETSR0` byte.
fn interface_number(mask: u8) -> Option<usize> {
    mask.is_power_of_two()
        .then(|| mask.trailing_zeros() as usize)
}

/// A GICv2: distributor plus the (banked) CPU interface. Safe after [`GicV2Chip::new`].
pub struct GicV2Chip {
    gicd: Mutex<UniqueMmioPointer<'static, GicdRegisters>>,
    /// Banked per CPU in hardware; the lock only serialises Rust's `&mut` access.
    gicc: Mutex<UniqueMmioPointer<'static, GiccRegisters>>,
    mpidrs: [u64; MAX_CPUS],
    cpu_count: usize,
    /// CPU-interface bit of each board CPU, learned in `init_cpu` (0 = not yet known).
    interface_bits: [AtomicU8; MAX_CPUS],
    /// Source CPU interface of each active SGI, by receiving interface: `GICC_EOIR` must
    /// be written with the source (CPUID, IAR bits 12:10) of SGIs.
    sgi_sources: [[AtomicU8; 16]; MAX_CPUS],
}

impl GicV2Chip {
    /// Takes ownership of the distributor at `gicd` and the CPU interface at `gicc`, for a
    /// board whose CPUs have the affinities `cpu_mpidrs` (at most [`MAX_CPUS`]; extra CPUs
    /// are ignored).
    ///
    /// # Safety
    ///
    /// The caller guarantees that:
    /// 1. `gicd` is the address of a GICv2 distributor (4 KiB) and `gicc` of a GICv2 CPU
    ///    interface (at least 0x1004 bytes), both 4-byte aligned and mapped as device memory
    ///    for the rest of the program (the core identity-maps device windows at EL2);
    /// 2. nothing else (another driver instance, a guest mapping) accesses these registers
    ///    while this value exists.
    pub unsafe fn new(
        gicd: NonNull<GicdRegisters>,
        gicc: NonNull<GiccRegisters>,
        cpu_mpidrs: &[u64],
    ) -> Self {
        let mut mpidrs = [0; MAX_CPUS];
        for (slot, m) in mpidrs.iter_mut().zip(cpu_mpidrs) {
            *slot = m & MPIDR_AFFINITY_MASK;
        }
        Self {
            // SAFETY: (1) valid, aligned, device-mapped distributor; (2) unaliased.
            gicd: Mutex::new(unsafe { UniqueMmioPointer::new(gicd) }),
            // SAFETY: (1) valid, aligned, device-mapped CPU interface; (2) unaliased.
            gicc: Mutex::new(unsafe { UniqueMmioPointer::new(gicc) }),
            mpidrs,
            cpu_count: cpu_mpidrs.len().min(MAX_CPUS),
            interface_bits: [const { AtomicU8::new(0) }; MAX_CPUS],
            sgi_sources: [const { [const { AtomicU8::new(0) }; 16] }; MAX_CPUS],
        }
    }

    /// Board CPU index of the CPU with affinity `mpidr`.
    pub fn cpu_index(&self, mpidr: u64) -> Option<usize> {
        let mpidr = mpidr & MPIDR_AFFINITY_MASK;
        self.mpidrs[..self.cpu_count]
            .iter()
            .position(|&m| m == mpidr)
    }

    /// CPU-interface bit of the CPU with affinity `mpidr`, once its `init_cpu` has run.
    pub fn interface_bit(&self, mpidr: u64) -> Option<u8> {
        let bit = self.interface_bits[self.cpu_index(mpidr)?].load(Ordering::Acquire);
        (bit != 0).then_some(bit)
    }

    /// The calling CPU's interface mask: `GICD_ITARGETSR0` is banked and reads as it.
    fn own_interface_mask(gicd: &mut UniqueMmioPointer<'static, GicdRegisters>) -> u8 {
        field_shared!(*gicd, itargetsr)
            .get(0)
            .map_or(0, |b| b.read())
    }

    /// Number of implemented INTIDs, from `GICD_TYPER.ITLinesNumber`.
    fn intid_count(gicd: &mut UniqueMmioPointer<'static, GicdRegisters>) -> u32 {
        let lines = field_shared!(*gicd, typer).read() & 0x1f;
        (32 * (lines + 1)).min(SPECIAL_INTID_START)
    }
}

/// Writes a one-bit "set" or "clear" register for `intid` (no read-modify-write).
fn write_bit(regs: UniqueMmioPointer<'_, [safe_mmio::fields::ReadPureWrite<u32>; 32]>, intid: u32) {
    let mut regs = regs;
    if let Some(mut reg) = regs.get(intid as usize / 32) {
        reg.write(1 << (intid % 32));
    }
}

impl IrqChip for GicV2Chip {
    fn version(&self) -> GicVersion {
        GicVersion::V2
    }

    fn init_global(&self) {
        let mut d = self.gicd.lock();
        field!(d, ctlr).write(0);
        let count = Self::intid_count(&mut d);
        // SPIs: disabled, level-sensitive, default priority (IHI 0048B 4.3).
        for reg in 1..(count / 32) as usize {
            if let Some(mut r) = field!(d, icenabler).get(reg) {
                r.write(0xffff_ffff);
            }
        }
        for reg in 2..(count / 16) as usize {
            if let Some(mut r) = field!(d, icfgr).get(reg) {
                r.write(0);
            }
        }
        for intid in 32..count as usize {
            if let Some(mut r) = field!(d, ipriorityr).get(intid) {
                r.write(DEFAULT_PRIORITY);
            }
        }
        field!(d, ctlr).write(1);
    }

    fn init_cpu(&self, cpu_index: usize) {
        {
            let mut d = self.gicd.lock();
            let mask = Self::own_interface_mask(&mut d);
            if let Some(slot) = self.interface_bits.get(cpu_index) {
                slot.store(mask, Ordering::Release);
            }
            // Banked SGIs/PPIs: PPIs disabled, SGIs enabled, default priority.
            if let Some(mut r) = field!(d, icenabler).get(0) {
                r.write(0xffff_0000);
            }
            if let Some(mut r) = field!(d, isenabler).get(0) {
                r.write(0x0000_ffff);
            }
            for intid in 0..32 {
                if let Some(mut r) = field!(d, ipriorityr).get(intid) {
                    r.write(DEFAULT_PRIORITY);
                }
            }
        }
        let mut c = self.gicc.lock();
        field!(c, pmr).write(0xff);
        // Enable, EOImodeNS = 0: EOIR drops priority and deactivates.
        field!(c, ctlr).write(gicc_ctlr::ENABLE);
    }

    /// SGIs and PPIs are banked: this configures them on the calling CPU, whatever
    /// `target_mpidr` says. SPIs go to `target_mpidr`'s interface, or to the boot CPU's if
    /// that CPU has not run `init_cpu` yet.
    fn enable(&self, intid: u32, priority: u8, edge: bool, target_mpidr: u64) {
        if intid >= SPECIAL_INTID_START {
            return;
        }
        let mut d = self.gicd.lock();
        if let Some(mut r) = field!(d, ipriorityr).get(intid as usize) {
            r.write(priority);
        }
        if intid >= 16 {
            let bit = 1 << ((intid % 16) * 2 + 1);
            if let Some(mut r) = field!(d, icfgr).get(intid as usize / 16) {
                r.modify(|v| if edge { v | bit } else { v & !bit });
            }
        }
        if intid >= 32 {
            let target = self
                .interface_bit(target_mpidr)
                .or_else(|| {
                    let boot = self.interface_bits[0].load(Ordering::Acquire);
                    (boot != 0).then_some(boot)
                })
                .unwrap_or(1);
            if let Some(mut r) = field!(d, itargetsr).get(intid as usize) {
                r.write(target);
            }
        }
        write_bit(field!(d, isenabler), intid);
    }

    fn disable(&self, intid: u32) {
        if intid < SPECIAL_INTID_START {
            let mut d = self.gicd.lock();
            write_bit(field!(d, icenabler), intid);
        }
    }

    fn set_enabled(&self, intid: u32, enabled: bool, _target_mpidr: u64) {
        // SGI/PPI enables (GICD_I[SC]ENABLER0) are banked: the calling CPU's own.
        if intid < SPECIAL_INTID_START {
            let mut d = self.gicd.lock();
            if enabled {
                write_bit(field!(d, isenabler), intid);
            } else {
                write_bit(field!(d, icenabler), intid);
            }
        }
    }

    fn acknowledge(&self) -> Option<u32> {
        let iar = {
            let mut c = self.gicc.lock();
            field!(c, iar).read()
        };
        let intid = iar & 0x3ff;
        if intid >= SPECIAL_INTID_START {
            return None;
        }
        if intid < 16 {
            let source = ((iar >> 10) & 0x7) as u8;
            let me = Self::own_interface_mask(&mut self.gicd.lock());
            if let Some(slots) = interface_number(me).and_then(|n| self.sgi_sources.get(n)) {
                slots[intid as usize].store(source, Ordering::Relaxed);
            }
        }
        Some(intid)
    }

    fn end_of_interrupt(&self, intid: u32) {
        let mut value = intid & 0x3ff;
        if intid < 16 {
            let me = Self::own_interface_mask(&mut self.gicd.lock());
            if let Some(slots) = interface_number(me).and_then(|n| self.sgi_sources.get(n)) {
                value |= u32::from(slots[intid as usize].load(Ordering::Relaxed)) << 10;
            }
        }
        let mut c = self.gicc.lock();
        field!(c, eoir).write(value);
    }

    /// Writes `GICC_DIR` only if EOImodeNS is set; with this driver's EOImode 0 the EOIR
    /// write already deactivated and a DIR write would be UNPREDICTABLE (IHI 0048B 4.4.15).
    fn deactivate(&self, intid: u32) {
        let mut c = self.gicc.lock();
        if field_shared!(c, ctlr).read() & gicc_ctlr::EOI_MODE_NS != 0 {
            field!(c, dir).write(intid & 0x3ff);
        }
    }

    /// Dropped if the target CPU has not run `init_cpu` yet (its interface bit is unknown).
    fn send_sgi(&self, sgi: u32, target_mpidr: u64) {
        let Some(bit) = self.interface_bit(target_mpidr) else {
            return;
        };
        if let Some(value) = sgir_value(sgi, bit) {
            let mut d = self.gicd.lock();
            field!(d, sgir).write(value);
        }
    }
}

static INSTANCE: spin::Once<GicV2Chip> = spin::Once::new();

/// Pointer to `base` if it is non-zero, fits the address space and is 4-byte aligned.
fn mmio_ptr<T>(base: u64) -> Option<NonNull<T>> {
    usize::try_from(base)
        .ok()
        .filter(|b| b % 4 == 0)
        .and_then(|b| NonNull::new(b as *mut T))
}

fn probe(_dev: &'static DeviceDesc, board: &'static BoardDesc) -> Result<Probed, ProbeError> {
    let gic = &board.gic;
    if gic.version != GicVersion::V2 {
        return Err(ProbeError::Hardware(
            "board `gic` is not version 2; fix the board KDL or use the gic-v3 driver",
        ));
    }
    let gicc = gic.cpu_interface.ok_or(ProbeError::MissingProperty(
        "gic cpu interface (GICC) region",
    ))?;
    if gic.distributor.size < core::mem::size_of::<GicdRegisters>() as u64
        || gicc.size < core::mem::size_of::<GiccRegisters>() as u64
    {
        return Err(ProbeError::Hardware(
            "GICD window < 4 KiB or GICC window < 0x1004 bytes; fix the GIC sizes in the board KDL",
        ));
    }
    let gicd_ptr = mmio_ptr(gic.distributor.base).ok_or(ProbeError::Hardware(
        "GICD base is zero or misaligned; fix the distributor address",
    ))?;
    let gicc_ptr = mmio_ptr(gicc.base).ok_or(ProbeError::Hardware(
        "GICC base is zero or misaligned; fix the CPU interface address",
    ))?;
    if board.cpus.len() > MAX_CPUS {
        return Err(ProbeError::Hardware(
            "GICv2 supports at most 8 CPUs; the board lists more",
        ));
    }
    let mut mpidrs = [0u64; MAX_CPUS];
    for (slot, c) in mpidrs.iter_mut().zip(board.cpus) {
        *slot = c.mpidr;
    }
    let mut fresh = false;
    let chip = INSTANCE.call_once(|| {
        fresh = true;
        // SAFETY: (1) the board's GIC description gives both windows (sizes and alignment
        // checked above) and the core identity-maps every device window as device memory
        // before probing; (2) the `Once` makes this the only instance, and the vGIC maps
        // GICV, never the physical GICD/GICC, into guests.
        unsafe { GicV2Chip::new(gicd_ptr, gicc_ptr, &mpidrs[..board.cpus.len()]) }
    });
    if !fresh {
        return Err(ProbeError::AlreadyProbed);
    }
    Ok(Probed::IrqChip(chip))
}

/// Registration: GIC-400 and the Cortex-A15 GIC binding QEMU `virt` uses for GICv2.
#[linkme::distributed_slice(DRIVERS)]
static GIC_V2_DRIVER: DriverEntry = DriverEntry {
    name: "gic-v2",
    // Said once, in build.rs, which also announces it to the image crate.
    compatible: include!(concat!(env!("OUT_DIR"), "/compatible.rs")),
    kind: DriverKind::IrqChip,
    probe,
};

#[cfg(test)]
mod tests {
    use super::*;
    use hypervisor::plugin::match_driver;
    use plugin_test_support as support;
    use std::alloc::{alloc_zeroed, Layout};

    const GICC_SIZE: usize = 0x2000;

    /// Zeroed, 4 KiB-aligned host memory standing in for MMIO; leaked.
    fn block(size: usize) -> *mut u8 {
        let layout = Layout::from_size_align(size, 0x1000).unwrap();
        // SAFETY: `layout` has a non-zero size.
        let p = unsafe { alloc_zeroed(layout) };
        assert!(!p.is_null());
        p
    }

    fn w32(base: *mut u8, off: usize, v: u32) {
        // SAFETY: tests only pass offsets inside the block they allocated.
        unsafe { base.add(off).cast::<u32>().write_volatile(v) }
    }

    fn r32(base: *mut u8, off: usize) -> u32 {
        // SAFETY: tests only pass offsets inside the block they allocated.
        unsafe { base.add(off).cast::<u32>().read_volatile() }
    }

    fn w8(base: *mut u8, off: usize, v: u8) {
        // SAFETY: tests only pass offsets inside the block they allocated.
        unsafe { base.add(off).write_volatile(v) }
    }

    fn r8(base: *mut u8, off: usize) -> u8 {
        // SAFETY: tests only pass offsets inside the block they allocated.
        unsafe { base.add(off).read_volatile() }
    }

    struct Fake {
        gicd: *mut u8,
        gicc: *mut u8,
    }

    impl Fake {
        /// GICD with ITLinesNumber 1 (64 INTIDs).
        fn new() -> Self {
            let gicd = block(0x1000);
            w32(gicd, 0x004, 1);
            Self {
                gicd,
                gicc: block(GICC_SIZE),
            }
        }

        fn chip(&self, cpus: &[u64]) -> GicV2Chip {
            // SAFETY: leaked host blocks of the right sizes, touched only by this chip and
            // the test's volatile accesses.
            unsafe {
                GicV2Chip::new(
                    NonNull::new(self.gicd.cast()).unwrap(),
                    NonNull::new(self.gicc.cast()).unwrap(),
                    cpus,
                )
            }
        }

        /// Runs `init_cpu(index)` as the CPU whose banked GICD_ITARGETSR0 reads `mask`.
        fn init_cpu_as(&self, chip: &GicV2Chip, index: usize, mask: u8) {
            w8(self.gicd, 0x800, mask);
            chip.init_cpu(index);
        }
    }

    #[test]
    fn sgir_targets_interface_list() {
        assert_eq!(sgir_value(3, 0b100), Some(0x0004_0003));
        assert_eq!(sgir_value(16, 1), None);
        assert_eq!(sgir_value(1, 0), None);
    }

    #[test]
    fn init_cpu_learns_interface_bit_and_sets_up_banked_interrupts() {
        let fake = Fake::new();
        let chip = fake.chip(&[0x0, 0x1]);
        fake.init_cpu_as(&chip, 1, 0x04);
        assert_eq!(chip.interface_bit(0x1), Some(0x04));
        assert_eq!(chip.interface_bit(0x0), None);
        assert_eq!(r32(fake.gicd, 0x180), 0xffff_0000, "PPIs disabled");
        assert_eq!(r32(fake.gicd, 0x100), 0x0000_ffff, "SGIs enabled");
        assert_eq!(r8(fake.gicd, 0x400 + 27), DEFAULT_PRIORITY);
        assert_eq!(r32(fake.gicc, 0x04), 0xff, "GICC_PMR");
        assert_eq!(r32(fake.gicc, 0x00), 1, "GICC_CTLR enable, EOImodeNS 0");
    }

    #[test]
    fn send_sgi_uses_learned_interface_bit() {
        let fake = Fake::new();
        let chip = fake.chip(&[0x0, 0x1]);
        fake.init_cpu_as(&chip, 1, 0x04);
        chip.send_sgi(5, 0x1);
        assert_eq!(r32(fake.gicd, 0xf00), 0x0004_0005);
    }

    #[test]
    fn send_sgi_to_uninitialised_cpu_is_dropped() {
        let fake = Fake::new();
        let chip = fake.chip(&[0x0, 0x1]);
        chip.send_sgi(5, 0x1);
        assert_eq!(r32(fake.gicd, 0xf00), 0);
    }

    #[test]
    fn init_global_disables_and_defaults_spis_then_enables() {
        let fake = Fake::new();
        fake.chip(&[0x0]).init_global();
        assert_eq!(r32(fake.gicd, 0x184), 0xffff_ffff, "ICENABLER1");
        assert_eq!(r32(fake.gicd, 0x180), 0, "banked ICENABLER0 untouched");
        assert_eq!(r8(fake.gicd, 0x400 + 32), DEFAULT_PRIORITY);
        assert_eq!(r8(fake.gicd, 0x400 + 63), DEFAULT_PRIORITY);
        assert_eq!(r32(fake.gicd, 0x000), 1, "GICD_CTLR enable");
    }

    #[test]
    fn enable_spi_sets_only_its_own_priority_and_target_bytes() {
        let fake = Fake::new();
        let chip = fake.chip(&[0x0, 0x1]);
        fake.init_cpu_as(&chip, 1, 0x02);
        w8(fake.gicd, 0x400 + 41, 0x55);
        w8(fake.gicd, 0x800 + 41, 0x01);
        chip.enable(40, 0x90, true, 0x1);
        assert_eq!(r8(fake.gicd, 0x400 + 40), 0x90);
        assert_eq!(r8(fake.gicd, 0x400 + 41), 0x55, "neighbour priority kept");
        assert_eq!(
            r8(fake.gicd, 0x800 + 40),
            0x02,
            "routed to CPU 1's interface"
        );
        assert_eq!(r8(fake.gicd, 0x800 + 41), 0x01, "neighbour target kept");
        assert_eq!(r32(fake.gicd, 0xc08), 1 << 17, "ICFGR2: INTID 40 edge");
        assert_eq!(r32(fake.gicd, 0x104), 1 << 8, "ISENABLER1");
    }

    #[test]
    fn enable_spi_for_unknown_target_falls_back_to_boot_cpu() {
        let fake = Fake::new();
        let chip = fake.chip(&[0x0, 0x1]);
        fake.init_cpu_as(&chip, 0, 0x08);
        chip.enable(33, 0x90, false, 0x1);
        assert_eq!(r8(fake.gicd, 0x800 + 33), 0x08);
    }

    #[test]
    fn disable_writes_icenabler_bit() {
        let fake = Fake::new();
        fake.chip(&[0x0]).disable(35);
        assert_eq!(r32(fake.gicd, 0x184), 1 << 3);
    }

    #[test]
    fn set_enabled_writes_the_banked_enable_bits() {
        let fake = Fake::new();
        let chip = fake.chip(&[0x0]);
        chip.set_enabled(23, false, 0x0);
        assert_eq!(r32(fake.gicd, 0x180), 1 << 23, "GICD_ICENABLER0");
        chip.set_enabled(23, true, 0x0);
        assert_eq!(r32(fake.gicd, 0x100), 1 << 23, "GICD_ISENABLER0");
    }

    #[test]
    fn sgi_eoi_carries_the_acknowledged_source_cpu() {
        let fake = Fake::new();
        let chip = fake.chip(&[0x0]);
        w8(fake.gicd, 0x800, 0x01);
        w32(fake.gicc, 0x0c, 2 << 10 | 3); // SGI 3 from CPU interface 2.
        assert_eq!(chip.acknowledge(), Some(3));
        chip.end_of_interrupt(3);
        assert_eq!(r32(fake.gicc, 0x10), 2 << 10 | 3);
    }

    #[test]
    fn spurious_iar_is_none() {
        let fake = Fake::new();
        w32(fake.gicc, 0x0c, 1023);
        assert_eq!(fake.chip(&[0x0]).acknowledge(), None);
    }

    #[test]
    fn deactivate_writes_dir_only_in_eoimode_1() {
        let fake = Fake::new();
        let chip = fake.chip(&[0x0]);
        chip.deactivate(42);
        assert_eq!(r32(fake.gicc, 0x1000), 0);
        w32(fake.gicc, 0x00, gicc_ctlr::ENABLE | gicc_ctlr::EOI_MODE_NS);
        chip.deactivate(42);
        assert_eq!(r32(fake.gicc, 0x1000), 42);
    }

    #[test]
    fn registered_for_gic400_and_a15_gic() {
        for c in ["arm,gic-400", "arm,cortex-a15-gic"] {
            let dev = support::device(Box::leak(Box::new([c])), 0, 0x1000, None);
            let entry = match_driver(&DRIVERS, dev).unwrap();
            assert_eq!((entry.name, entry.kind), ("gic-v2", DriverKind::IrqChip));
        }
    }

    #[test]
    fn probe_rejects_gicv3_board() {
        let board = support::board(support::gic_v3(0x1_0000, &[]), &[]);
        let dev = support::device(&["arm,gic-400"], 0, 0x1000, None);
        assert!(matches!(probe(dev, board), Err(ProbeError::Hardware(_))));
    }

    #[test]
    fn probe_without_gicc_is_missing_property() {
        let mut gic = support::gic_v2(0x1000, 0x2000);
        gic.cpu_interface = None;
        let board = support::board(gic, &[]);
        let dev = support::device(&["arm,gic-400"], 0, 0x1000, None);
        assert!(matches!(
            probe(dev, board),
            Err(ProbeError::MissingProperty(_))
        ));
    }

    #[test]
    fn probe_builds_chip_once_then_reports_already_probed() {
        let fake = Fake::new();
        let board = support::board(
            support::gic_v2(fake.gicd as u64, fake.gicc as u64),
            &[support::cpu(0x0), support::cpu(0x1)],
        );
        let dev = support::device(&["arm,gic-400"], fake.gicd as u64, 0x1000, None);
        let Ok(Probed::IrqChip(chip)) = probe(dev, board) else {
            panic!("probe failed");
        };
        assert_eq!(chip.version(), GicVersion::V2);
        assert_eq!(probe(dev, board).err(), Some(ProbeError::AlreadyProbed));
    }
}
