//! Minimal GICv3 / GICv2 driver: what the checks need (SGIs, one PPI, one SPI, acknowledge
//! and EOI).
//!
//! Everything is group 1 non-secure on GICv3 and group 0 on GICv2 (as Linux does on a GIC
//! without security extensions), priority 0xa0 under a mask of 0xf0.

use crate::dt::{GicInfo, Region, MAX_CPUS, MAX_GICR_REGIONS};
use crate::mmio::Mmio;
use crate::{spec, sysreg};
use aarch64_cpu::asm::barrier;
use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

// GICv3 (IHI 0069H chapter 12) and GICv2 (IHI 0048B chapter 4) register offsets.
const GICD_CTLR: usize = 0x0000;
const GICD_CTLR_RWP: u32 = 1 << 31;
const GICD_CTLR_ARE_NS: u32 = 1 << 4;
const GICD_CTLR_ENABLE_GRP1NS: u32 = 1 << 1;
const GICD_CTLR_V2_ENABLE: u32 = 1;
const GICD_TYPER: usize = 0x0004;
const GICD_TYPER_ITLINESNUMBER: u32 = 0x1f;
const GICD_IGROUPR: usize = 0x0080;
const GICD_ISENABLER: usize = 0x0100;
const GICD_ICENABLER: usize = 0x0180;
const GICD_ISPENDR: usize = 0x0200;
const GICD_ICPENDR: usize = 0x0280;
const GICD_IPRIORITYR: usize = 0x0400;
const GICD_ITARGETSR: usize = 0x0800;
const GICD_ICFGR: usize = 0x0c00;
const GICD_IROUTER: usize = 0x6000;
const GICD_SGIR: usize = 0x0f00;
const GICR_TYPER: usize = 0x0008;
const GICR_TYPER_VLPIS: u64 = 1 << 1;
const GICR_TYPER_LAST: u64 = 1 << 4;
const GICR_WAKER: usize = 0x0014;
const GICR_WAKER_PROCESSOR_SLEEP: u32 = 1 << 1;
const GICR_WAKER_CHILDREN_ASLEEP: u32 = 1 << 2;
const GICR_FRAME: usize = 0x1_0000;
const SGI_BASE: usize = 0x1_0000;
const GICR_IGROUPR0: usize = SGI_BASE + 0x0080;
const GICR_ISENABLER0: usize = SGI_BASE + 0x0100;
const GICR_ICENABLER0: usize = SGI_BASE + 0x0180;
const GICR_ISPENDR0: usize = SGI_BASE + 0x0200;
const GICR_ISACTIVER0: usize = SGI_BASE + 0x0300;
const GICD_ISACTIVER: usize = 0x0300;
const GICC_RPR: usize = 0x0014;
const GICC_DIR: usize = 0x1000;
/// `GICC_CTLR.EOImodeNS` (bit 9) and `ICC_CTLR_EL1.EOImode` (bit 1).
const GICC_CTLR_EOIMODE_NS: u32 = 1 << 9;
const ICC_CTLR_EOIMODE: u64 = 1 << 1;
const GICR_IPRIORITYR: usize = SGI_BASE + 0x0400;
const GICC_CTLR: usize = 0x0000;
const GICC_PMR: usize = 0x0004;
const GICC_BPR: usize = 0x0008;
const GICC_IAR: usize = 0x000c;
const GICC_EOIR: usize = 0x0010;
const ICC_SRE_SRE: u64 = 1;

/// Priority of every interrupt the guest uses.
const PRIORITY: u32 = 0xa0;
/// Priority mask (lets `PRIORITY` through).
const PMR: u32 = 0xf0;
/// First INTID that is not a real interrupt (1020..1023 are special).
const SPECIAL_INTID: u32 = 1020;
/// Bounded wait for the GIC's "write pending" and "children asleep" bits.
const POLL_LIMIT: u32 = 1_000_000;

/// What went wrong bringing up the GIC for a CPU.
#[derive(Clone, Copy, Debug, thiserror::Error)]
pub enum GicError {
    /// No redistributor frame's `GICR_TYPER` affinity matches this CPU.
    #[error("no GICR frame has affinity {affinity:#x}: the GICR regions in the DTB must cover every vCPU")]
    NoRedistributor {
        /// The CPU's GICv3 affinity value.
        affinity: u32,
    },
    /// `GICR_WAKER.ChildrenAsleep` stayed set after clearing `ProcessorSleep`.
    #[error("GICR_WAKER.ChildrenAsleep stays 1 for affinity {affinity:#x}: the redistributor never wakes")]
    RedistributorAsleep {
        /// The CPU's GICv3 affinity value.
        affinity: u32,
    },
    /// `ICC_SRE_EL1.SRE` reads 0 after being set.
    #[error("ICC_SRE_EL1.SRE reads 0: a higher EL disabled the GICv3 system register interface")]
    NoSystemRegisters,
    /// The SPI is beyond what the distributor implements.
    #[error("INTID {intid} is not an SPI the distributor implements (GICD_TYPER.ITLinesNumber allows 32..{limit}): the (v)GIC must implement the passed-through device's SPI")]
    SpiOutOfRange {
        /// The INTID asked for.
        intid: u32,
        /// One past the last implemented INTID.
        limit: u32,
    },
    /// `GICD_CTLR.RWP` never cleared.
    #[error("GICD_CTLR.RWP stays 1: the distributor never completes a control write")]
    DistributorBusy,
}

/// An acknowledged interrupt.
#[derive(Clone, Copy, Debug)]
pub struct Ack {
    /// The interrupt's INTID.
    pub intid: u32,
    raw: u32,
}

enum Kind {
    V2 {
        gicc: Mmio,
    },
    V3 {
        gicr: [Option<Mmio>; MAX_GICR_REGIONS],
    },
}

/// The interrupt controller, shared by all CPUs.
pub struct Gic {
    gicd: Mmio,
    kind: Kind,
    /// GICv3: this CPU's RD_base address; GICv2: unused.
    rd_base: [AtomicUsize; MAX_CPUS],
    /// GICv2: this CPU interface's bit in `GICD_ITARGETSR`/`GICD_SGIR`.
    target_mask: [AtomicU8; MAX_CPUS],
}

fn mmio(region: Region) -> Mmio {
    // SAFETY: (1) the region comes from the GIC node of the DTB, a device frame Rust never uses
    // as memory; (2) GIC register accesses do not change memory.
    unsafe { Mmio::new(region.base as usize, region.size as usize) }
}

impl Ack {
    /// GICv2: the CPU that sent an SGI (`GICC_IAR.CPUID`, bits 12:10); 0 otherwise.
    pub fn source(&self) -> u32 {
        (self.raw >> 10) & 0x7
    }
}

impl Gic {
    /// True on a GICv2.
    pub fn is_v2(&self) -> bool {
        matches!(self.kind, Kind::V2 { .. })
    }

    /// The distributor frame (for the register-level checks).
    pub fn distributor(&self) -> &Mmio {
        &self.gicd
    }

    /// GICv2: CPU `cpu`'s interface bit in `GICD_ITARGETSR`/`GICD_SGIR`.
    pub fn target_mask(&self, cpu: usize) -> u8 {
        self.target_mask[cpu].load(Ordering::Acquire)
    }

    /// GICv2: writes `GICD_SGIR`.
    pub fn write_sgir(&self, value: u32) {
        barrier::dsb(barrier::SY);
        self.gicd.write32(GICD_SGIR, value);
    }

    /// Makes SGI `sgi` of CPU `cpu` Group 0 (`group0`) or Group 1: GICv3
    /// `GICR_IGROUPR0`; GICv2 `GICD_IGROUPR0` is banked, so only for the calling CPU.
    pub fn set_sgi_group0(&self, cpu: usize, sgi: u32, group0: bool) {
        let bit = 1 << sgi;
        let (frame, offset) = match self.kind {
            Kind::V2 { .. } => (self.gicd.frame(0, 0x1000), GICD_IGROUPR),
            Kind::V3 { .. } => (self.redistributor(cpu), GICR_IGROUPR0),
        };
        let v = frame.read32(offset);
        frame.write32(offset, if group0 { v & !bit } else { v | bit });
    }

    /// GICv3: sets or clears `GICD_CTLR.EnableGrp0` (bit 0 with `DS` = 1).
    pub fn enable_group0(&self, on: bool) -> Result<(), GicError> {
        let v = self.gicd.read32(GICD_CTLR) & !GICD_CTLR_RWP;
        self.gicd
            .write32(GICD_CTLR, if on { v | 1 } else { v & !1 });
        self.wait_rwp_v3()
    }

    /// GICv3: acknowledges a pending Group 0 interrupt (`ICC_IAR0_EL1`), if any, and
    /// ends it (`ICC_EOIR0_EL1`); returns its INTID.
    pub fn take_group0(&self) -> Option<u32> {
        if self.is_v2() {
            return None;
        }
        let intid = (sysreg::read_icc_iar0_el1() & 0xff_ffff) as u32;
        if intid >= SPECIAL_INTID {
            return None;
        }
        sysreg::write_icc_eoir0_el1(intid.into());
        Some(intid)
    }

    /// Sets the pending state of SPI `intid` through `GICD_ISPENDR`.
    pub fn set_spi_pending(&self, intid: u32) -> Result<(), GicError> {
        let (n, bit) = self.check_spi(intid)?;
        self.gicd.write32(GICD_ISPENDR + 4 * (n / 32), bit);
        Ok(())
    }

    /// Describes the GIC of `info` (no register is touched yet).
    pub fn new(info: &GicInfo) -> Self {
        let (gicd, kind) = match *info {
            GicInfo::V2 { gicd, gicc } => (mmio(gicd), Kind::V2 { gicc: mmio(gicc) }),
            GicInfo::V3 {
                gicd,
                gicr,
                gicr_count,
            } => {
                let regions = core::array::from_fn(|i| (i < gicr_count).then(|| mmio(gicr[i])));
                (mmio(gicd), Kind::V3 { gicr: regions })
            }
        };
        Self {
            gicd,
            kind,
            rd_base: [const { AtomicUsize::new(0) }; MAX_CPUS],
            target_mask: [const { AtomicU8::new(0) }; MAX_CPUS],
        }
    }

    /// `"GICv2"` or `"GICv3"`.
    pub fn name(&self) -> &'static str {
        match self.kind {
            Kind::V2 { .. } => "GICv2",
            Kind::V3 { .. } => "GICv3",
        }
    }

    /// Enables the distributor (once, from the boot CPU).
    pub fn init_distributor(&self) -> Result<(), GicError> {
        match self.kind {
            Kind::V2 { .. } => self.gicd.write32(GICD_CTLR, GICD_CTLR_V2_ENABLE),
            Kind::V3 { .. } => {
                self.gicd.write32(GICD_CTLR, GICD_CTLR_ARE_NS);
                self.wait_rwp()?;
                self.gicd
                    .write32(GICD_CTLR, GICD_CTLR_ARE_NS | GICD_CTLR_ENABLE_GRP1NS);
                self.wait_rwp()?;
            }
        }
        Ok(())
    }

    fn wait_rwp(&self) -> Result<(), GicError> {
        (0..POLL_LIMIT)
            .find(|_| self.gicd.read32(GICD_CTLR) & GICD_CTLR_RWP == 0)
            .map(|_| ())
            .ok_or(GicError::DistributorBusy)
    }

    fn redistributor(&self, cpu: usize) -> Mmio {
        // SAFETY: `rd_base` only ever holds the base of a redistributor frame found inside a
        // DTB GICR region by `find_redistributor` (2 x 64 KiB: RD_base and SGI_base).
        unsafe { Mmio::new(self.rd_base[cpu].load(Ordering::Acquire), 2 * GICR_FRAME) }
    }

    fn find_redistributor(regions: &[Option<Mmio>], affinity: u32) -> Option<Mmio> {
        for region in regions.iter().flatten() {
            let mut offset = 0;
            loop {
                let typer = region.read64(offset + GICR_TYPER);
                if (typer >> 32) as u32 == affinity {
                    return Some(region.frame(offset, 2 * GICR_FRAME));
                }
                if typer & GICR_TYPER_LAST != 0 {
                    break;
                }
                offset += if typer & GICR_TYPER_VLPIS != 0 { 4 } else { 2 } * GICR_FRAME;
                // A region without a Last frame ends where the DTB says it does.
                if offset + 2 * GICR_FRAME > region.size() {
                    break;
                }
            }
        }
        None
    }

    /// Brings up the calling CPU's interface: SGIs 0-15 enabled, priority mask open.
    pub fn init_cpu(&self, cpu: usize, mpidr: u64) -> Result<(), GicError> {
        match &self.kind {
            Kind::V2 { gicc } => {
                // Banked per CPU: each CPU reads its own interface bit from ITARGETSR0.
                let mask = (self.gicd.read32(GICD_ITARGETSR) & 0xff) as u8;
                self.target_mask[cpu].store(mask, Ordering::Release);
                for i in 0..8 {
                    self.gicd
                        .write32(GICD_IPRIORITYR + 4 * i, PRIORITY * 0x0101_0101);
                }
                self.gicd.write32(GICD_ISENABLER, 0xffff);
                gicc.write32(GICC_PMR, PMR);
                gicc.write32(GICC_BPR, 0);
                gicc.write32(GICC_CTLR, 1);
            }
            Kind::V3 { gicr } => {
                let affinity = spec::gic_affinity(mpidr);
                let rd = Self::find_redistributor(gicr, affinity)
                    .ok_or(GicError::NoRedistributor { affinity })?;
                self.rd_base[cpu].store(rd.base(), Ordering::Release);
                let waker = rd.read32(GICR_WAKER);
                rd.write32(GICR_WAKER, waker & !GICR_WAKER_PROCESSOR_SLEEP);
                (0..POLL_LIMIT)
                    .find(|_| rd.read32(GICR_WAKER) & GICR_WAKER_CHILDREN_ASLEEP == 0)
                    .ok_or(GicError::RedistributorAsleep { affinity })?;
                rd.write32(GICR_IGROUPR0, 0xffff_ffff);
                for i in 0..8 {
                    rd.write32(GICR_IPRIORITYR + 4 * i, PRIORITY * 0x0101_0101);
                }
                rd.write32(GICR_ISENABLER0, 0xffff);
                sysreg::write_icc_sre_el1(sysreg::read_icc_sre_el1() | ICC_SRE_SRE);
                if sysreg::read_icc_sre_el1() & ICC_SRE_SRE == 0 {
                    return Err(GicError::NoSystemRegisters);
                }
                sysreg::write_icc_pmr_el1(PMR.into());
                sysreg::write_icc_bpr1_el1(0);
                sysreg::write_icc_igrpen1_el1(1);
                // Group 0 (FIQs, masked in PSTATE and polled: the `sgi-routing` check's
                // SGI0R SGIs) is signalled only once the distributor enables it.
                sysreg::write_icc_igrpen0_el1(1);
            }
        }
        Ok(())
    }

    /// Enables private interrupt `intid` (16..31) on the calling CPU `cpu`.
    pub fn enable_ppi(&self, cpu: usize, intid: u32) {
        let bit = 1 << (intid % 32);
        match self.kind {
            Kind::V2 { .. } => self.gicd.write32(GICD_ISENABLER, bit),
            Kind::V3 { .. } => self.redistributor(cpu).write32(GICR_ISENABLER0, bit),
        }
    }

    /// Disables private interrupt `intid` (16..31) on the calling CPU `cpu`.
    pub fn disable_ppi(&self, cpu: usize, intid: u32) {
        let bit = 1 << (intid % 32);
        match self.kind {
            Kind::V2 { .. } => self.gicd.write32(GICD_ICENABLER, bit),
            Kind::V3 { .. } => self.redistributor(cpu).write32(GICR_ICENABLER0, bit),
        }
    }

    /// The pending bit of private interrupt `intid` (16..31) of the calling CPU `cpu`
    /// (`GICD_ISPENDR0`, banked, or `GICR_ISPENDR0`).
    pub fn ppi_pending(&self, cpu: usize, intid: u32) -> bool {
        let word = match self.kind {
            Kind::V2 { .. } => self.gicd.read32(GICD_ISPENDR),
            Kind::V3 { .. } => self.redistributor(cpu).read32(GICR_ISPENDR0),
        };
        word & (1 << (intid % 32)) != 0
    }

    /// One past the last SPI INTID the distributor implements (`GICD_TYPER.ITLinesNumber`,
    /// capped at the special INTIDs).
    pub fn spi_limit(&self) -> u32 {
        let lines = self.gicd.read32(GICD_TYPER) & GICD_TYPER_ITLINESNUMBER;
        (32 * (lines + 1)).min(SPECIAL_INTID)
    }

    fn check_spi(&self, intid: u32) -> Result<(usize, u32), GicError> {
        let limit = self.spi_limit();
        if !(32..limit).contains(&intid) {
            return Err(GicError::SpiOutOfRange { intid, limit });
        }
        let n = intid as usize;
        Ok((n, 1 << (intid % 32)))
    }

    /// Makes shared interrupt `intid` an edge- or level-triggered interrupt of the guest's
    /// group at `PRIORITY`, routes it to CPU `cpu` (MPIDR `mpidr`; GICv3 `GICD_IROUTER`,
    /// GICv2 that CPU interface's `GICD_ITARGETSR` bit), clears a stale pending state and
    /// enables it.
    pub fn enable_spi(
        &self,
        intid: u32,
        edge: bool,
        cpu: usize,
        mpidr: u64,
    ) -> Result<(), GicError> {
        let (n, bit) = self.check_spi(intid)?;
        let word = 4 * (n / 32);
        let d = &self.gicd;
        // Disabled while it is being reconfigured (ICFGR is UNPREDICTABLE to change while enabled).
        d.write32(GICD_ICENABLER + word, bit);
        self.wait_rwp_v3()?;
        let byte_reg = |base: usize, value: u8| {
            let at = base + (n & !3);
            d.write32(at, spec::with_byte(d.read32(at), intid, value));
        };
        byte_reg(GICD_IPRIORITYR, PRIORITY as u8);
        let icfgr = GICD_ICFGR + 4 * (n / 16);
        d.write32(icfgr, spec::gicd_icfgr(d.read32(icfgr), intid, edge));
        match self.kind {
            Kind::V2 { .. } => {
                // Group 0 (the reset value) like every interrupt of this guest on GICv2.
                byte_reg(
                    GICD_ITARGETSR,
                    self.target_mask[cpu].load(Ordering::Acquire),
                );
            }
            Kind::V3 { .. } => {
                let group = GICD_IGROUPR + word;
                d.write32(group, d.read32(group) | bit);
                d.write64(GICD_IROUTER + 8 * n, spec::gicd_irouter(mpidr));
            }
        }
        d.write32(GICD_ICPENDR + word, bit);
        d.write32(GICD_ISENABLER + word, bit);
        Ok(())
    }

    /// Disables shared interrupt `intid` and waits until the distributor has done so.
    pub fn disable_spi(&self, intid: u32) -> Result<(), GicError> {
        let (n, bit) = self.check_spi(intid)?;
        self.gicd.write32(GICD_ICENABLER + 4 * (n / 32), bit);
        self.wait_rwp_v3()
    }

    /// GICv3: waits for `GICD_CTLR.RWP` (which also covers `GICD_ICENABLER` writes); GICv2
    /// has no such bit.
    fn wait_rwp_v3(&self) -> Result<(), GicError> {
        match self.kind {
            Kind::V2 { .. } => Ok(()),
            Kind::V3 { .. } => self.wait_rwp(),
        }
    }

    /// Acknowledges the highest-priority pending interrupt; `None` if it was spurious.
    pub fn ack(&self) -> Option<Ack> {
        let (raw, intid) = match &self.kind {
            Kind::V2 { gicc } => {
                let raw = gicc.read32(GICC_IAR);
                (raw, raw & 0x3ff)
            }
            Kind::V3 { .. } => {
                let raw = sysreg::read_icc_iar1_el1() as u32;
                (raw, raw & 0xff_ffff)
            }
        };
        (intid < SPECIAL_INTID).then_some(Ack { intid, raw })
    }

    /// Signals the end of (and deactivates) an acknowledged interrupt.
    pub fn eoi(&self, ack: Ack) {
        match &self.kind {
            Kind::V2 { gicc } => gicc.write32(GICC_EOIR, ack.raw),
            Kind::V3 { .. } => sysreg::write_icc_eoir1_el1(ack.raw.into()),
        }
    }

    /// Sets the CPU interface's EOI mode: `split` = EOImode 1, where an EOI only drops the
    /// running priority and a separate deactivate (`GICC_DIR`/`ICC_DIR_EL1`) ends the
    /// interrupt's active state.
    pub fn set_eoi_split(&self, split: bool) {
        match &self.kind {
            Kind::V2 { gicc } => {
                let ctlr = gicc.read32(GICC_CTLR) & !GICC_CTLR_EOIMODE_NS;
                let bit = if split { GICC_CTLR_EOIMODE_NS } else { 0 };
                gicc.write32(GICC_CTLR, ctlr | bit);
            }
            Kind::V3 { .. } => {
                let ctlr = sysreg::read_icc_ctlr_el1() & !ICC_CTLR_EOIMODE;
                let bit = if split { ICC_CTLR_EOIMODE } else { 0 };
                sysreg::write_icc_ctlr_el1(ctlr | bit);
            }
        }
    }

    /// Deactivates an acknowledged interrupt (EOImode 1).
    pub fn deactivate(&self, ack: Ack) {
        match &self.kind {
            Kind::V2 { gicc } => gicc.write32(GICC_DIR, ack.raw),
            Kind::V3 { .. } => sysreg::write_icc_dir_el1(ack.raw.into()),
        }
    }

    /// The CPU interface's running priority (`GICC_RPR`/`ICC_RPR_EL1`): 0xff when no
    /// interrupt is active at a priority.
    pub fn running_priority(&self) -> u32 {
        match &self.kind {
            Kind::V2 { gicc } => gicc.read32(GICC_RPR) & 0xff,
            Kind::V3 { .. } => (sysreg::read_icc_rpr_el1() & 0xff) as u32,
        }
    }

    /// The active bit of private interrupt `intid` (0..31) of the calling CPU `cpu`
    /// (`GICD_ISACTIVER0`, banked, or `GICR_ISACTIVER0`).
    pub fn private_active(&self, cpu: usize, intid: u32) -> bool {
        let word = match self.kind {
            Kind::V2 { .. } => self.gicd.read32(GICD_ISACTIVER),
            Kind::V3 { .. } => self.redistributor(cpu).read32(GICR_ISACTIVER0),
        };
        word & (1 << (intid % 32)) != 0
    }

    /// Sends SGI `intid` to CPU `cpu` (whose MPIDR is `mpidr`).
    pub fn send_sgi(&self, intid: u8, cpu: usize, mpidr: u64) {
        // Make this CPU's earlier writes visible before the target can observe the SGI.
        barrier::dsb(barrier::SY);
        match self.kind {
            Kind::V2 { .. } => {
                let targets = self.target_mask[cpu].load(Ordering::Acquire);
                self.gicd
                    .write32(GICD_SGIR, spec::gicd_sgir(intid, targets));
            }
            Kind::V3 { .. } => sysreg::write_icc_sgi1r_el1(spec::icc_sgi1r(intid, mpidr)),
        }
    }
}
