//! Arm GICv3 interrupt controller (`arm,gic-v3`) for the hypervisor, on Google's `arm-gic`.
//!
//! The distributor and each CPU's redistributor are driven through arm-gic's
//! `GicDistributor` and `GicRedistributor`; the CPU interface through its system-register
//! helpers. A board may have several redistributor regions (one per socket on a
//! dual-socket Ampere Mt. Jade): [`GicV3Chip::new`] walks every region frame by frame until
//! `GICR_TYPER.Last` and maps each redistributor to the board CPU whose MPIDR matches
//! `GICR_TYPER.Affinity_Value`. All interrupts are Non-secure Group 1; the priority mask
//! is 0xff; EOImode is 0 (a write to EOIR also deactivates).
//!
//! Link the crate to register the driver; bring-up then calls `init_global` once and
//! `init_cpu(i)` on every CPU:
//!
//! ```ignore
//! use plugin_gic_v3 as _;
//! ```
#![cfg_attr(not(test), no_std)]

mod cpuif;
pub mod registers;

use arm_gic::gicv3::{GicDistributor, GicError, GicRedistributor, Group};
use arm_gic::{IntId, Trigger, UniqueMmioPointer};
use core::ptr::NonNull;
use hypervisor::platform::{BoardDesc, DeviceDesc, GicVersion};
use hypervisor::plugin::{DriverEntry, DriverKind, IrqChip, ProbeError, Probed, DRIVERS};
use hypervisor::sync::Mutex;
use registers::{Gicd, GicrSgi, GICR_FRAMES_SIZE, GICR_V4_STRIDE};
use safe_mmio::field_shared;

/// Most CPUs a board may have (a dual-socket Altra Max has 256).
pub const MAX_CPUS: usize = 256;

/// Most redistributor regions a board may have.
pub const MAX_REDISTRIBUTOR_REGIONS: usize = 8;

/// MPIDR bits that hold affinity: Aff3 (39:32) and Aff2..Aff0 (23:0).
const MPIDR_AFFINITY_MASK: u64 = 0xff_00ff_ffff;

/// Errors of [`GicV3Chip::new`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GicV3Error {
    /// A redistributor region ended before a frame with `GICR_TYPER.Last` set.
    #[error(
        "redistributor region {region} ({size:#x} bytes) ends before a frame with \
         GICR_TYPER.Last; check the region's size in the board KDL"
    )]
    RegionOverrun {
        /// Index of the region in the board's list.
        region: usize,
        /// Its size in bytes.
        size: usize,
    },
    /// A frame's GICR_PIDR2.ArchRev is not GICv3 or GICv4.
    #[error(
        "redistributor region {region} offset {offset:#x} reports GIC architecture revision \
         {arch_rev} (expected 3 or 4); check that the region really is a GICR"
    )]
    UnsupportedArchRev {
        /// Region index.
        region: usize,
        /// Byte offset of the frame in the region.
        offset: usize,
        /// GICR_PIDR2.ArchRev.
        arch_rev: u8,
    },
    /// No redistributor reported a board CPU's MPIDR.
    #[error(
        "no redistributor reports MPIDR {mpidr:#x} (board CPU {cpu}); check the CPU list and \
         the redistributor regions in the board KDL"
    )]
    MissingRedistributor {
        /// Board CPU index.
        cpu: usize,
        /// Its MPIDR.
        mpidr: u64,
    },
    /// The board has more CPUs than [`MAX_CPUS`].
    #[error("board has {count} CPUs; this driver supports at most 256 (raise MAX_CPUS)")]
    TooManyCpus {
        /// Number of CPUs on the board.
        count: usize,
    },
}

impl GicV3Error {
    /// The message bring-up logs (ProbeError carries only a static string).
    const fn as_probe_error(self) -> ProbeError {
        ProbeError::Hardware(match self {
            Self::RegionOverrun { .. } => {
                "a GICR region ends before GICR_TYPER.Last; check the redistributor sizes"
            }
            Self::UnsupportedArchRev { .. } => {
                "a GICR frame is not GICv3/v4 (PIDR2.ArchRev); check the redistributor regions"
            }
            Self::MissingRedistributor { .. } => {
                "a board CPU has no redistributor with its MPIDR; check CPUs and GICR regions"
            }
            Self::TooManyCpus { .. } => "board has more than 256 CPUs",
        })
    }
}

/// ICC_SGI1R_EL1 value sending SGI `sgi` to the single CPU with affinity `target_mpidr`
/// (IHI 0069, ICC_SGI1R_EL1): Aff3 at 55:48, RS = Aff0 / 16 at 47:44, Aff2 at 39:32,
/// INTID at 27:24, Aff1 at 23:16, TargetList bit Aff0 % 16. `None` if `sgi` >= 16.
///
/// An Aff0 of 16 or more needs range-selector support (ICC_CTLR_EL1.RSS, GICD_TYPER.RSS).
pub fn sgi1r_value(sgi: u32, target_mpidr: u64) -> Option<u64> {
    if sgi >= 16 {
        return None;
    }
    let aff0 = target_mpidr & 0xff;
    let aff1 = (target_mpidr >> 8) & 0xff;
    let aff2 = (target_mpidr >> 16) & 0xff;
    let aff3 = (target_mpidr >> 32) & 0xff;
    Some(
        (aff3 << 48)
            | ((aff0 >> 4) << 44)
            | (aff2 << 32)
            | (u64::from(sgi) << 24)
            | (aff1 << 16)
            | (1 << (aff0 & 0xf)),
    )
}

/// The route of the CPU with MPIDR `target_mpidr` (`IrqChip::sgi_route`): its
/// [`sgi1r_value`] for SGI 0, the affinity fields and the target list.
pub fn sgi1r_route(target_mpidr: u64) -> u64 {
    // SGI 0 is always < 16: the `None` arm is not reached.
    sgi1r_value(0, target_mpidr).unwrap_or(0)
}

/// [`sgi1r_value`] of SGI `sgi` from `route` ([`sgi1r_route`]).
pub fn sgi1r_routed(sgi: u32, route: u64) -> Option<u64> {
    (sgi < 16).then(|| route | (u64::from(sgi) << 24))
}

/// Bytes from one redistributor to the next, from GICR_PIDR2.ArchRev and GICR_TYPER.VLPIS:
/// two 64 KiB frames, or four when virtual LPIs are supported (GICv4). `None` for a frame
/// that is not GICv3/v4.
pub fn redistributor_stride(arch_rev: u8, vlpis: bool) -> Option<usize> {
    match (arch_rev, vlpis) {
        (3 | 4, false) => Some(GICR_FRAMES_SIZE),
        (4, true) => Some(GICR_V4_STRIDE),
        _ => None,
    }
}

/// Debug-checks an arm-gic result whose error cases the caller has ruled out.
fn checked(result: Result<(), GicError>) {
    debug_assert!(
        result.is_ok(),
        "arm-gic rejected a validated INTID: {result:?}"
    );
}

/// A GICv3: distributor plus one redistributor per board CPU. Safe after [`GicV3Chip::new`].
pub struct GicV3Chip {
    gicd: Mutex<GicDistributor<'static>>,
    gicr: [Mutex<Option<GicRedistributor<'static>>>; MAX_CPUS],
    mpidrs: [u64; MAX_CPUS],
    cpu_count: usize,
}

impl GicV3Chip {
    /// Takes ownership of the distributor at `gicd` and the redistributor regions, and maps
    /// each of `cpu_mpidrs` (board CPU order) to its redistributor.
    ///
    /// # Safety
    ///
    /// The caller guarantees that:
    /// 1. `gicd` is the address of a GICv3 distributor (64 KiB), mapped as device memory
    ///    for the rest of the program (the core identity-maps device windows at EL2);
    /// 2. each `(base, size)` of `redistributor_regions` is a contiguous run of GICv3/v4
    ///    redistributor frames of `size` bytes, 64 KiB aligned, mapped likewise;
    /// 3. nothing else (another driver instance, a guest mapping) accesses these registers
    ///    while this value exists.
    pub unsafe fn new(
        gicd: NonNull<Gicd>,
        redistributor_regions: &[(NonNull<GicrSgi>, usize)],
        cpu_mpidrs: &[u64],
    ) -> Result<Self, GicV3Error> {
        let cpu_count = cpu_mpidrs.len();
        if cpu_count > MAX_CPUS {
            return Err(GicV3Error::TooManyCpus { count: cpu_count });
        }
        let mut mpidrs = [0; MAX_CPUS];
        for (slot, m) in mpidrs.iter_mut().zip(cpu_mpidrs) {
            *slot = m & MPIDR_AFFINITY_MASK;
        }
        let mut gicr = [const { Mutex::new(None) }; MAX_CPUS];
        for (region, &(base, size)) in redistributor_regions.iter().enumerate() {
            let mut offset = 0usize;
            loop {
                if offset
                    .checked_add(GICR_FRAMES_SIZE)
                    .is_none_or(|end| end > size)
                {
                    return Err(GicV3Error::RegionOverrun { region, size });
                }
                // SAFETY: offset + 128 KiB <= size, so the frame pair lies inside the region
                // of (2); the addition cannot wrap since the region is mapped memory.
                let frame_ptr = unsafe { base.byte_add(offset) };
                // SAFETY: (2) says this is a redistributor's RD_base + SGI_base pair, mapped
                // as device memory; (3) and the walk visiting each frame once make this the
                // only pointer to it.
                let frame = unsafe { UniqueMmioPointer::<'static, GicrSgi>::new(frame_ptr) };
                let (typer, arch_rev) = {
                    let rd = field_shared!(frame, gicr);
                    (
                        field_shared!(rd, typer).read(),
                        field_shared!(rd, pidr2).read().arch_rev(),
                    )
                };
                let stride = redistributor_stride(arch_rev, typer.virtual_lpis_supported()).ok_or(
                    GicV3Error::UnsupportedArchRev {
                        region,
                        offset,
                        arch_rev,
                    },
                )?;
                let mpidr = typer.core_mpidr();
                if let Some(cpu) = mpidrs[..cpu_count].iter().position(|&m| m == mpidr) {
                    *gicr[cpu].get_mut() = Some(GicRedistributor::new(frame));
                }
                if typer.last_redistributor() {
                    break;
                }
                offset += stride;
            }
        }
        // The boot CPU must have a redistributor. Other board CPUs without one are not
        // present in this machine (fused off, or a smaller QEMU `-smp`): bring-up finds
        // that out when PSCI CPU_ON fails, and their per-CPU calls do nothing.
        if cpu_count > 0 && gicr[0].get_mut().is_none() {
            return Err(GicV3Error::MissingRedistributor {
                cpu: 0,
                mpidr: mpidrs[0],
            });
        }
        // SAFETY: (1) and (3): a valid, device-mapped, unaliased distributor.
        let gicd = GicDistributor::new(unsafe { UniqueMmioPointer::new(gicd) });
        Ok(Self {
            gicd: Mutex::new(gicd),
            gicr,
            mpidrs,
            cpu_count,
        })
    }

    /// Board CPU index of the CPU with affinity `mpidr`.
    pub fn cpu_index(&self, mpidr: u64) -> Option<usize> {
        let mpidr = mpidr & MPIDR_AFFINITY_MASK;
        self.mpidrs[..self.cpu_count]
            .iter()
            .position(|&m| m == mpidr)
    }

    /// Runs `f` on the redistributor of board CPU `cpu`, if it has one.
    fn with_redistributor(&self, cpu: usize, f: impl FnOnce(&mut GicRedistributor<'static>)) {
        if let Some(slot) = self.gicr.get(cpu) {
            if let Some(r) = slot.lock().as_mut() {
                f(r);
            }
        }
    }
}

impl IrqChip for GicV3Chip {
    fn version(&self) -> GicVersion {
        GicVersion::V3
    }

    fn init_global(&self) {
        let mut d = self.gicd.lock();
        d.enable_group1_non_secure(false);
        d.enable_all_interrupts(false);
        // Sets GICD_CTLR bits 4 and 1: ARE_S/EnableGrp1NS in arm-gic's (Secure or
        // single-security) naming, which are ARE_NS/EnableGrp1A in the Non-secure view we
        // have at EL2 — the same two enables either way. Every SPI becomes Group 1,
        // priority 0x80, level-sensitive.
        d.configure_default_settings();
    }

    fn init_cpu(&self, cpu_index: usize) {
        self.with_redistributor(cpu_index, |r| {
            r.power_on();
            // AlreadyAwake only means firmware woke it already.
            let _ = r.mark_core_awake();
            r.configure_default_settings();
        });
        cpuif::init();
    }

    fn enable(&self, intid: u32, priority: u8, edge: bool, target_mpidr: u64) {
        let Ok(id) = IntId::try_from(intid) else {
            return;
        };
        let trigger = if edge { Trigger::Edge } else { Trigger::Level };
        if id.is_private() {
            let Some(cpu) = self.cpu_index(target_mpidr) else {
                return;
            };
            self.with_redistributor(cpu, |r| {
                checked(r.set_group(id, Group::Group1NS));
                checked(r.set_interrupt_priority(id, priority));
                // SGIs are always edge-triggered; their ICFGR bits are read-only.
                if !id.is_sgi() {
                    checked(r.set_trigger(id, trigger));
                }
                checked(r.enable_interrupt(id, true));
            });
        } else {
            let mut d = self.gicd.lock();
            checked(d.set_group(id, Group::Group1NS));
            checked(d.set_interrupt_priority(id, priority));
            checked(d.set_trigger(id, trigger));
            checked(d.set_routing(id, Some(target_mpidr)));
            checked(d.enable_interrupt(id, true));
        }
    }

    /// SGIs and PPIs are disabled on every CPU: the contract names no CPU for `disable`.
    fn disable(&self, intid: u32) {
        let Ok(id) = IntId::try_from(intid) else {
            return;
        };
        if id.is_private() {
            for cpu in 0..self.cpu_count {
                self.with_redistributor(cpu, |r| checked(r.enable_interrupt(id, false)));
            }
        } else {
            checked(self.gicd.lock().enable_interrupt(id, false));
        }
    }

    fn set_enabled(&self, intid: u32, enabled: bool, target_mpidr: u64) {
        let Ok(id) = IntId::try_from(intid) else {
            return;
        };
        if id.is_private() {
            if let Some(cpu) = self.cpu_index(target_mpidr) {
                self.with_redistributor(cpu, |r| checked(r.enable_interrupt(id, enabled)));
            }
        } else {
            checked(self.gicd.lock().enable_interrupt(id, enabled));
        }
    }

    fn acknowledge(&self) -> Option<u32> {
        cpuif::acknowledge()
    }

    fn end_of_interrupt(&self, intid: u32) {
        cpuif::end_of_interrupt(intid);
    }

    fn acknowledge_kick(&self, kick: u32) -> Result<Option<u32>, Option<u32>> {
        if kick >= 16 {
            // Not an SGI: the general sequence, with its checks.
            let first = self.acknowledge();
            if first != Some(kick) {
                return Err(first);
            }
            self.end_of_interrupt(kick);
            return Ok(self.acknowledge());
        }
        cpuif::acknowledge_kick(kick)
    }

    fn deactivate(&self, intid: u32) {
        cpuif::deactivate(intid);
    }

    fn send_sgi(&self, sgi: u32, target_mpidr: u64) {
        if let Some(value) = sgi1r_value(sgi, target_mpidr) {
            cpuif::send_sgi1r(value);
        }
    }

    fn sgi_route(&self, target_mpidr: u64) -> u64 {
        sgi1r_route(target_mpidr)
    }

    fn send_sgi_routed(&self, sgi: u32, route: u64) {
        if let Some(value) = sgi1r_routed(sgi, route) {
            cpuif::send_sgi1r(value);
        }
    }
}

static INSTANCE: spin::Once<GicV3Chip> = spin::Once::new();

/// Pointer to `base` if it is non-zero, fits the address space and is `align`-aligned.
fn mmio_ptr<T>(base: u64, align: usize) -> Option<NonNull<T>> {
    usize::try_from(base)
        .ok()
        .filter(|b| b % align == 0)
        .and_then(|b| NonNull::new(b as *mut T))
}

fn probe(_dev: &'static DeviceDesc, board: &'static BoardDesc) -> Result<Probed, ProbeError> {
    let gic = &board.gic;
    if gic.version != GicVersion::V3 {
        return Err(ProbeError::Hardware(
            "board `gic` is not version 3; fix the board KDL or use the gic-v2 driver",
        ));
    }
    if gic.distributor.size < core::mem::size_of::<Gicd>() as u64 {
        return Err(ProbeError::Hardware(
            "GICD window is smaller than 64 KiB; fix the distributor size in the board KDL",
        ));
    }
    let gicd = mmio_ptr::<Gicd>(gic.distributor.base, 0x1_0000).ok_or(ProbeError::Hardware(
        "GICD base is zero or not 64 KiB aligned; fix the distributor address",
    ))?;
    if gic.redistributors.is_empty() {
        return Err(ProbeError::MissingProperty("gic redistributor regions"));
    }
    if gic.redistributors.len() > MAX_REDISTRIBUTOR_REGIONS {
        return Err(ProbeError::Hardware(
            "more than 8 redistributor regions; raise MAX_REDISTRIBUTOR_REGIONS",
        ));
    }
    let mut regions = [(NonNull::<GicrSgi>::dangling(), 0usize); MAX_REDISTRIBUTOR_REGIONS];
    for (slot, r) in regions.iter_mut().zip(gic.redistributors) {
        let base = mmio_ptr(r.base, 0x1_0000).ok_or(ProbeError::Hardware(
            "a GICR region base is zero or not 64 KiB aligned; fix it in the board KDL",
        ))?;
        let size = usize::try_from(r.size)
            .map_err(|_| ProbeError::Hardware("a GICR region is larger than the address space"))?;
        *slot = (base, size);
    }
    let regions = &regions[..gic.redistributors.len()];
    if board.cpus.len() > MAX_CPUS {
        return Err(GicV3Error::TooManyCpus {
            count: board.cpus.len(),
        }
        .as_probe_error());
    }
    let mut mpidrs = [0u64; MAX_CPUS];
    for (slot, c) in mpidrs.iter_mut().zip(board.cpus) {
        *slot = c.mpidr;
    }
    let mpidrs = &mpidrs[..board.cpus.len()];
    let mut fresh = false;
    let chip = INSTANCE
        .try_call_once(|| {
            fresh = true;
            // SAFETY: (1), (2) the board's GIC description gives the distributor and the
            // redistributor regions (sizes and 64 KiB alignment checked above), and the core
            // identity-maps every device window as device memory before probing; (3) the
            // `Once` makes this the only instance, and the vGIC never maps the physical GICD
            // or GICR into a guest.
            unsafe { GicV3Chip::new(gicd, regions, mpidrs) }
        })
        .map_err(GicV3Error::as_probe_error)?;
    if !fresh {
        return Err(ProbeError::AlreadyProbed);
    }
    Ok(Probed::IrqChip(chip))
}

/// Registration: matches `compatible "arm,gic-v3"`; the probe reads the board's `gic`.
#[linkme::distributed_slice(DRIVERS)]
static GIC_V3_DRIVER: DriverEntry = DriverEntry {
    name: "gic-v3",
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

    const GICD_SIZE: usize = 0x1_0000;
    /// SGI_base frame offset within a redistributor.
    const SGI: usize = 0x1_0000;

    /// Zeroed, 64 KiB-aligned host memory standing in for MMIO; leaked.
    fn block(size: usize) -> *mut u8 {
        let layout = Layout::from_size_align(size, 0x1_0000).unwrap();
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

    fn r64(base: *mut u8, off: usize) -> u64 {
        // SAFETY: tests only pass offsets inside the block they allocated.
        unsafe { base.add(off).cast::<u64>().read_volatile() }
    }

    /// Writes a redistributor's GICR_TYPER and GICR_PIDR2 at `off` in a region.
    fn redist(region: *mut u8, off: usize, mpidr: u64, last: bool, vlpis: bool, arch_rev: u32) {
        let aff = ((mpidr >> 32) & 0xff) << 24 | (mpidr & 0xff_ffff);
        w32(
            region,
            off + 0x8,
            u32::from(last) << 4 | u32::from(vlpis) << 1,
        );
        w32(region, off + 0xc, aff as u32);
        w32(region, off + 0xffe8, arch_rev << 4);
    }

    struct Fake {
        gicd: *mut u8,
        regions: Vec<(*mut u8, usize)>,
    }

    impl Fake {
        /// GICD with 32 SPIs; region 0 holds CPUs 0.0.0.0 and 0.0.0.1, region 1 (the second
        /// socket) holds 1.0.0.0.
        fn two_sockets() -> Self {
            let gicd = block(GICD_SIZE);
            w32(gicd, 0x4, 1); // GICD_TYPER.ITLinesNumber = 1: 32 SPIs.
            let r0 = block(0x4_0000);
            redist(r0, 0, 0x0, false, false, 3);
            redist(r0, 0x2_0000, 0x1, true, false, 3);
            let r1 = block(0x2_0000);
            redist(r1, 0, 0x1_0000_0000, true, false, 3);
            Self {
                gicd,
                regions: vec![(r0, 0x4_0000), (r1, 0x2_0000)],
            }
        }

        fn chip(&self, cpus: &[u64]) -> Result<GicV3Chip, GicV3Error> {
            let regions: Vec<_> = self
                .regions
                .iter()
                .map(|&(p, s)| (NonNull::new(p.cast()).unwrap(), s))
                .collect();
            // SAFETY: leaked host blocks of the right sizes, touched only by this chip and
            // the test's volatile reads.
            unsafe { GicV3Chip::new(NonNull::new(self.gicd.cast()).unwrap(), &regions, cpus) }
        }
    }

    const SOCKET1_CPU: u64 = 0x1_0000_0000;

    #[test]
    fn sgi1r_targets_aff0_bit_and_copies_affinity() {
        assert_eq!(sgi1r_value(3, 0), Some(3 << 24 | 1));
        assert_eq!(
            sgi1r_value(1, 0x1_0002_0305),
            Some(1 << 48 | 2 << 32 | 1 << 24 | 3 << 16 | 1 << 5)
        );
    }

    #[test]
    fn sgi1r_uses_range_selector_for_aff0_above_15() {
        assert_eq!(sgi1r_value(0, 0x13), Some(1 << 44 | 1 << 3));
    }

    #[test]
    fn sgi1r_rejects_non_sgi() {
        assert_eq!(sgi1r_value(16, 0), None);
    }

    /// A kick sent through a CPU's route (worked out once) writes what `send_sgi` writes,
    /// for every SGI and a spread of MPIDRs (Aff0 above 15, Aff1..3 set).
    #[test]
    fn a_routed_sgi1r_is_the_sgi1r_of_the_mpidr() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for n in 0..2000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mpidr = if n < 8 { n * 0x11 } else { x & 0xff_00ff_ffff };
            for sgi in 0..17 {
                let route = sgi1r_route(mpidr);
                assert_eq!(
                    sgi1r_routed(sgi, route),
                    sgi1r_value(sgi, mpidr),
                    "SGI {sgi} to {mpidr:#x}"
                );
            }
        }
    }

    #[test]
    fn stride_is_two_frames_or_four_with_vlpis() {
        assert_eq!(redistributor_stride(3, false), Some(0x2_0000));
        assert_eq!(redistributor_stride(4, false), Some(0x2_0000));
        assert_eq!(redistributor_stride(4, true), Some(0x4_0000));
        assert_eq!(redistributor_stride(3, true), None);
        assert_eq!(redistributor_stride(2, false), None);
    }

    #[test]
    fn walk_maps_cpus_across_regions_by_mpidr() {
        let fake = Fake::two_sockets();
        // Board order differs from frame order on purpose.
        let chip = fake.chip(&[SOCKET1_CPU, 0x0, 0x1]).unwrap();
        assert_eq!(chip.cpu_index(SOCKET1_CPU), Some(0));
        assert_eq!(chip.cpu_index(0x1), Some(2));
        // PPI 30 on the second socket's CPU lands in region 1's SGI frame only.
        chip.enable(30, 0x90, false, SOCKET1_CPU);
        let (r0, _) = fake.regions[0];
        let (r1, _) = fake.regions[1];
        assert_eq!(r32(r1, SGI + 0x100), 1 << 30);
        assert_eq!(r32(r0, SGI + 0x100), 0);
        assert_eq!(r32(r0, 0x2_0000 + SGI + 0x100), 0);
        assert_eq!(r32(r1, SGI + 0x41c) >> 16 & 0xff, 0x90);
    }

    #[test]
    fn walk_steps_four_frames_when_vlpis() {
        let gicd = block(GICD_SIZE);
        let r = block(0x6_0000);
        redist(r, 0, 0x0, false, true, 4);
        redist(r, 0x4_0000, 0x1, true, true, 4);
        let fake = Fake {
            gicd,
            regions: vec![(r, 0x6_0000)],
        };
        let chip = fake.chip(&[0x0, 0x1]).unwrap();
        chip.enable(27, 0xa0, false, 0x1);
        assert_eq!(r32(r, 0x4_0000 + SGI + 0x100), 1 << 27);
    }

    #[test]
    fn walk_without_last_is_region_overrun() {
        let gicd = block(GICD_SIZE);
        let r = block(0x2_0000);
        redist(r, 0, 0x0, false, false, 3);
        let fake = Fake {
            gicd,
            regions: vec![(r, 0x2_0000)],
        };
        assert_eq!(
            fake.chip(&[0x0]).err(),
            Some(GicV3Error::RegionOverrun {
                region: 0,
                size: 0x2_0000
            })
        );
    }

    #[test]
    fn walk_rejects_non_gicv3_frame() {
        let gicd = block(GICD_SIZE);
        let r = block(0x2_0000);
        redist(r, 0, 0x0, true, false, 2);
        let fake = Fake {
            gicd,
            regions: vec![(r, 0x2_0000)],
        };
        assert!(matches!(
            fake.chip(&[0x0]),
            Err(GicV3Error::UnsupportedArchRev { arch_rev: 2, .. })
        ));
    }

    #[test]
    fn boot_cpu_without_redistributor_is_reported() {
        let fake = Fake::two_sockets();
        assert_eq!(
            fake.chip(&[0x5, 0x0]).err(),
            Some(GicV3Error::MissingRedistributor { cpu: 0, mpidr: 0x5 })
        );
    }

    #[test]
    fn absent_secondary_cpu_is_tolerated() {
        let fake = Fake::two_sockets();
        assert!(fake.chip(&[0x0, 0x5]).is_ok());
    }

    #[test]
    fn init_global_enables_are_and_group1_and_defaults_spis() {
        let fake = Fake::two_sockets();
        fake.chip(&[0x0]).unwrap().init_global();
        assert_eq!(r32(fake.gicd, 0x0), 1 << 4 | 1 << 1);
        assert_eq!(r32(fake.gicd, 0x84), 0xffff_ffff); // IGROUPR1: SPIs 32..63 Group 1.
        assert_eq!(r32(fake.gicd, 0x184), 0xffff_ffff); // ICENABLER1: all disabled.
        assert_eq!(r32(fake.gicd, 0x420), 0x8080_8080); // IPRIORITYR8.
    }

    #[test]
    fn init_cpu_makes_sgis_and_ppis_group1_and_disabled() {
        let fake = Fake::two_sockets();
        let chip = fake.chip(&[0x0, 0x1]).unwrap();
        chip.init_cpu(1);
        let (r0, _) = fake.regions[0];
        let cpu1 = 0x2_0000;
        assert_eq!(r32(r0, cpu1 + SGI + 0x80), 0xffff_ffff);
        assert_eq!(r32(r0, cpu1 + SGI + 0x180), 0xffff_ffff);
        assert_eq!(r32(r0, cpu1 + SGI + 0x400), 0x8080_8080);
        assert_eq!(r32(r0, SGI + 0x80), 0, "CPU 0's redistributor untouched");
    }

    #[test]
    fn enable_spi_sets_group_priority_trigger_route_and_enable() {
        let fake = Fake::two_sockets();
        let chip = fake.chip(&[0x0, SOCKET1_CPU]).unwrap();
        chip.enable(40, 0xa0, true, SOCKET1_CPU);
        let d = fake.gicd;
        assert_eq!(r32(d, 0x84) & 1 << 8, 1 << 8, "IGROUPR1 bit 8");
        assert_eq!(r32(d, 0x428), 0xa0, "IPRIORITYR byte 40");
        assert_eq!(r32(d, 0xc08), 1 << 17, "ICFGR2: INTID 40 edge");
        assert_eq!(r64(d, 0x6100 + 8 * 8), SOCKET1_CPU, "IROUTER40");
        assert_eq!(r32(d, 0x104), 1 << 8, "ISENABLER1 bit 8");
    }

    #[test]
    fn set_enabled_on_a_ppi_touches_only_the_target_cpu() {
        let fake = Fake::two_sockets();
        let chip = fake.chip(&[0x0, 0x1, SOCKET1_CPU]).unwrap();
        chip.set_enabled(23, false, 0x1);
        let (r0, _) = fake.regions[0];
        let (r1, _) = fake.regions[1];
        // GICR_ICENABLER0 of CPU 0.0.0.1 (second frame of region 0) only.
        for (region, off, want) in [(r0, 0, 0), (r0, 0x2_0000, 1 << 23), (r1, 0, 0)] {
            assert_eq!(r32(region, off + SGI + 0x180), want);
        }
        chip.set_enabled(23, true, 0x1);
        assert_eq!(r32(r0, 0x2_0000 + SGI + 0x100), 1 << 23, "GICR_ISENABLER0");
        assert_eq!(r32(r0, SGI + 0x100), 0);
    }

    #[test]
    fn disable_ppi_clears_it_on_every_cpu() {
        let fake = Fake::two_sockets();
        let chip = fake.chip(&[0x0, 0x1, SOCKET1_CPU]).unwrap();
        chip.disable(26);
        let (r0, _) = fake.regions[0];
        let (r1, _) = fake.regions[1];
        for (region, off) in [(r0, 0), (r0, 0x2_0000), (r1, 0)] {
            assert_eq!(r32(region, off + SGI + 0x180), 1 << 26);
        }
    }

    #[test]
    fn disable_spi_writes_icenabler() {
        let fake = Fake::two_sockets();
        fake.chip(&[0x0]).unwrap().disable(33);
        assert_eq!(r32(fake.gicd, 0x184), 1 << 1);
    }

    #[test]
    fn registered_for_arm_gic_v3() {
        let dev = support::device(&["arm,gic-v3"], 0, 0x1_0000, None);
        let entry = match_driver(&DRIVERS, dev).unwrap();
        assert_eq!((entry.name, entry.kind), ("gic-v3", DriverKind::IrqChip));
    }

    #[test]
    fn probe_rejects_gicv2_board() {
        let board = support::board(support::gic_v2(0x1_0000, 0x2_0000), &[]);
        let dev = support::device(&["arm,gic-v3"], 0, 0x1_0000, None);
        assert!(matches!(probe(dev, board), Err(ProbeError::Hardware(_))));
    }

    #[test]
    fn probe_without_redistributors_is_missing_property() {
        let board = support::board(support::gic_v3(0x1_0000, &[]), &[]);
        let dev = support::device(&["arm,gic-v3"], 0, 0x1_0000, None);
        assert_eq!(
            probe(dev, board).err(),
            Some(ProbeError::MissingProperty("gic redistributor regions"))
        );
    }

    #[test]
    fn probe_builds_chip_once_then_reports_already_probed() {
        let fake = Fake::two_sockets();
        let regions: Vec<_> = fake
            .regions
            .iter()
            .map(|&(p, s)| support::reg("gicr", p as u64, s as u64))
            .collect();
        let board = support::board(
            support::gic_v3(fake.gicd as u64, &regions),
            &[
                support::cpu(0x0),
                support::cpu(0x1),
                support::cpu(SOCKET1_CPU),
            ],
        );
        let dev = support::device(&["arm,gic-v3"], fake.gicd as u64, 0x1_0000, None);
        let Ok(Probed::IrqChip(chip)) = probe(dev, board) else {
            panic!("probe failed");
        };
        assert_eq!(chip.version(), GicVersion::V3);
        assert_eq!(probe(dev, board).err(), Some(ProbeError::AlreadyProbed));
    }
}
