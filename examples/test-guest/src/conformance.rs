//! GIC conformance checks: SGIs reach every CPU they name, with the sender in `GICC_IAR` on
//! GICv2 (`sgi-routing`); the distributor keeps what the architecture says and nothing
//! beyond (`gic-dist`); the last SPI `GICD_TYPER` reports is real (`spi-pending`).
//!
//! GICv2 (IHI 0048B): `GICD_SGIR` with each TargetListFilter, one SGI pending from two
//! sources at once (`GICD_SPENDSGIR` shows both, each is taken with its own CPUID),
//! `GICD_ITARGETSR` byte and word writes, `GICD_SPENDSGIR`/`CPENDSGIR`. GICv3 (IHI 0069):
//! `ICC_SGI1R_EL1` with IRM = 1, `ICC_SGI0R_EL1` (Group 0, polled through `ICC_IAR0_EL1`
//! with FIQs masked) to all-but-self and to a list, `GICD_IROUTER` of the last SPI.

use crate::checks::{cpu_index, wait_for, CheckFailure, CPU_MPIDR, WAIT_MS};
use crate::dt::{Platform, MAX_CPUS};
use crate::gic::{Ack, Gic};
use crate::{println, spec, sysreg};
use core::sync::atomic::{AtomicU32, AtomicU8, Ordering::SeqCst};

/// SGI a CPU sends to itself (GICv2 filter 2).
const SGI_SELF: u32 = 4;
/// SGI to a list of CPUs (GICv2 filter 0) / GICv3 Group 0 all-but-self (SGI0R, IRM = 1).
const SGI_LIST: u32 = 5;
/// SGI to every CPU but the sender (GICv2 filter 1 / GICv3 SGI1R IRM = 1).
const SGI_OTHERS: u32 = 6;
/// Asks CPU 1 to send an SGI itself ([`REQUEST`] says which).
const SGI_REQUEST: u32 = 7;
/// GICv3: Group 0 SGI to a target list (SGI0R).
const SGI_G0_LIST: u32 = 8;
/// GICv2: SGI pending from two sources at once.
const SGI_TWO_SOURCES: u32 = 9;
/// GICv2: SGI whose per-source pending state `gic-dist` sets and clears (kept disabled).
const SGI_PEND: u32 = 10;
/// The `eoi-mode` check's SGI (taken by polling, with IRQs masked).
const SGI_EOIMODE: u8 = 11;

/// What CPU 1 does on [`SGI_REQUEST`].
static REQUEST: AtomicU32 = AtomicU32::new(0);
const REQUEST_OTHERS: u32 = 1;
const REQUEST_TWO_SOURCES: u32 = 2;

/// Per CPU and SGI: how many times it was taken, and the set of source CPUs seen.
static TAKEN: [[AtomicU32; 16]; MAX_CPUS] = [const { [const { AtomicU32::new(0) }; 16] }; MAX_CPUS];
static SOURCES: [[AtomicU8; 16]; MAX_CPUS] = [const { [const { AtomicU8::new(0) }; 16] }; MAX_CPUS];
/// The SPI `spi-pending` raises, and how often it was taken.
static SPI: AtomicU32 = AtomicU32::new(0);
static SPI_TAKEN: AtomicU32 = AtomicU32::new(0);

fn reset_counts() {
    for cpu in 0..MAX_CPUS {
        for sgi in 0..16 {
            TAKEN[cpu][sgi].store(0, SeqCst);
            SOURCES[cpu][sgi].store(0, SeqCst);
        }
    }
}

fn record(cpu: usize, sgi: u32, source: u32) {
    TAKEN[cpu][sgi as usize].fetch_add(1, SeqCst);
    SOURCES[cpu][sgi as usize].fetch_or(1 << source, SeqCst);
}

/// IRQ hook: handles this module's interrupts; false if `ack` is not one of them.
pub fn on_irq(gic: &Gic, cpu: usize, ack: &Ack) -> bool {
    match ack.intid {
        SGI_SELF | SGI_LIST | SGI_OTHERS | SGI_G0_LIST | SGI_TWO_SOURCES | SGI_PEND => {
            record(cpu, ack.intid, ack.source())
        }
        SGI_REQUEST => {
            record(cpu, ack.intid, ack.source());
            match REQUEST.load(SeqCst) {
                REQUEST_OTHERS => gic.write_sgir((1 << 24) | SGI_OTHERS),
                REQUEST_TWO_SOURCES => {
                    let to = u32::from(gic.target_mask(0));
                    gic.write_sgir((to << 16) | SGI_TWO_SOURCES);
                }
                _ => {}
            }
        }
        intid if intid != 0 && intid == SPI.load(SeqCst) => {
            SPI_TAKEN.fetch_add(1, SeqCst);
        }
        _ => return false,
    }
    true
}

/// Secondary idle hook (after each wake-up): takes Group 0 SGIs, which arrive as FIQs
/// that the guest keeps masked.
pub fn poll_group0(gic: &Gic) {
    while let Some(intid) = gic.take_group0() {
        record(cpu_index(), intid, 0);
    }
}

/// `got` must be `want` on CPU `cpu`.
fn expect_on(what: &'static str, cpu: usize, got: u64, want: u64) -> Result<(), CheckFailure> {
    if got == want {
        Ok(())
    } else {
        Err(CheckFailure::GicMismatch {
            what,
            cpu,
            got,
            want,
        })
    }
}

/// `got` must be `want` on the calling CPU.
fn expect(what: &'static str, got: u64, want: u64) -> Result<(), CheckFailure> {
    expect_on(what, cpu_index(), got, want)
}

/// Waits until every CPU's count of `sgi` is `want(cpu)`, then compares counts and
/// sources (`sources(cpu)`, a bit per CPU).
fn expect_sgi(
    cpus: usize,
    sgi: u32,
    what: &'static str,
    want: impl Fn(usize) -> u32,
    sources: impl Fn(usize) -> u8,
) -> Result<(), CheckFailure> {
    wait_for(WAIT_MS, || {
        (0..cpus).all(|c| TAKEN[c][sgi as usize].load(SeqCst) >= want(c))
    });
    // A little longer, so that a duplicate would show up too.
    wait_for(5, || false);
    for c in 0..cpus {
        expect_on(
            what,
            c,
            u64::from(TAKEN[c][sgi as usize].load(SeqCst)),
            u64::from(want(c)),
        )?;
        if want(c) > 0 {
            expect_on(
                what,
                c,
                u64::from(SOURCES[c][sgi as usize].load(SeqCst)),
                u64::from(sources(c)),
            )?;
        }
    }
    Ok(())
}

/// The `sgi-routing` check (needs two CPUs online).
pub fn sgi_routing(platform: &Platform, gic: &Gic) -> Result<(), CheckFailure> {
    let cpus = platform.cpu_count;
    reset_counts();
    if gic.is_v2() {
        sgi_routing_v2(gic, cpus)
    } else {
        sgi_routing_v3(gic, cpus)
    }
}

fn sgi_routing_v2(gic: &Gic, cpus: usize) -> Result<(), CheckFailure> {
    let all: u32 = (0..cpus).map(|c| u32::from(gic.target_mask(c))).sum();
    // Filter 2: CPU 0 to itself, source 0.
    gic.write_sgir((2 << 24) | (all << 16) | SGI_SELF);
    expect_sgi(cpus, SGI_SELF, "SGIR self", |c| (c == 0) as u32, |_| 1)?;
    // Filter 0: CPU 0 to the list of every CPU (itself included).
    gic.write_sgir((all << 16) | SGI_LIST);
    expect_sgi(cpus, SGI_LIST, "SGIR target list", |_| 1, |_| 1)?;
    // Filter 1 from CPU 1: every CPU but 1 takes it with CPUID 1.
    REQUEST.store(REQUEST_OTHERS, SeqCst);
    gic.write_sgir((u32::from(gic.target_mask(1)) << 16) | SGI_REQUEST);
    expect_sgi(
        cpus,
        SGI_OTHERS,
        "SGIR all-but-self from CPU 1",
        |c| (c != 1) as u32,
        |_| 0b10,
    )?;
    // One SGI from CPU 0 and CPU 1 while CPU 0 masks IRQs: pending from both sources
    // (GICD_SPENDSGIR), then taken twice, once with each CPUID.
    REQUEST.store(REQUEST_TWO_SOURCES, SeqCst);
    sysreg::irq_disable();
    gic.write_sgir((2 << 24) | SGI_TWO_SOURCES);
    gic.write_sgir((u32::from(gic.target_mask(1)) << 16) | SGI_REQUEST);
    let spendsgir = 0xf20 + SGI_TWO_SOURCES as usize;
    let d = gic.distributor();
    wait_for(WAIT_MS, || d.read8(spendsgir) == 0b11);
    let seen = d.read8(spendsgir);
    sysreg::irq_enable();
    expect(
        "GICD_SPENDSGIR of an SGI from CPUs 0 and 1",
        seen.into(),
        0b11,
    )?;
    expect_sgi(
        cpus,
        SGI_TWO_SOURCES,
        "one SGI from two CPUs",
        |c| if c == 0 { 2 } else { 0 },
        |_| 0b11,
    )
}

fn sgi_routing_v3(gic: &Gic, cpus: usize) -> Result<(), CheckFailure> {
    // SGI1R, IRM = 1: every CPU but the sender.
    barrier();
    sysreg::write_icc_sgi1r_el1((1 << 40) | u64::from(SGI_OTHERS) << 24);
    expect_sgi(
        cpus,
        SGI_OTHERS,
        "SGI1R IRM=1 from CPU 0",
        |c| (c != 0) as u32,
        |_| 1,
    )?;
    // SGI0R: Group 0 SGIs, to all-but-self and to CPU 1 by its affinity.
    for c in 1..cpus {
        gic.set_sgi_group0(c, SGI_LIST, true);
        gic.set_sgi_group0(c, SGI_G0_LIST, true);
    }
    gic.enable_group0(true).map_err(CheckFailure::Gic)?;
    barrier();
    sysreg::write_icc_sgi0r_el1((1 << 40) | u64::from(SGI_LIST) << 24);
    let result = expect_sgi(
        cpus,
        SGI_LIST,
        "SGI0R IRM=1 from CPU 0",
        |c| (c != 0) as u32,
        |_| 1,
    )
    .and_then(|()| {
        let target = spec::icc_sgi1r(SGI_G0_LIST as u8, CPU_MPIDR[1].load(SeqCst));
        sysreg::write_icc_sgi0r_el1(target);
        expect_sgi(
            cpus,
            SGI_G0_LIST,
            "SGI0R to CPU 1",
            |c| (c == 1) as u32,
            |_| 1,
        )
    });
    gic.enable_group0(false).map_err(CheckFailure::Gic)?;
    for c in 1..cpus {
        gic.set_sgi_group0(c, SGI_LIST, false);
        gic.set_sgi_group0(c, SGI_G0_LIST, false);
    }
    result
}

fn barrier() {
    aarch64_cpu::asm::barrier::dsb(aarch64_cpu::asm::barrier::SY);
}

const GICD_ISENABLER: usize = 0x100;
const GICD_ICENABLER: usize = 0x180;
const GICD_ISPENDR: usize = 0x200;
const GICD_ITARGETSR: usize = 0x800;
const GICD_CPENDSGIR: usize = 0xf10;
const GICD_SPENDSGIR: usize = 0xf20;
const GICD_IROUTER: usize = 0x6000;

/// The `gic-dist` check: what the distributor keeps, and RAZ/WI past the last SPI.
pub fn gic_dist(platform: &Platform, gic: &Gic) -> Result<(), CheckFailure> {
    let d = gic.distributor();
    let limit = gic.spi_limit() as usize; // one past the last SPI
    let last = limit - 1;
    if gic.is_v2() {
        let all: u8 = (0..platform.cpu_count).map(|c| gic.target_mask(c)).sum();
        let mine = gic.target_mask(cpu_index());
        // Byte writes read back; bits of CPUs the GIC lacks do not stick.
        d.write8(GICD_ITARGETSR + last, all);
        expect(
            "ITARGETSR byte write of every CPU",
            d.read8(GICD_ITARGETSR + last).into(),
            all.into(),
        )?;
        d.write8(GICD_ITARGETSR + last, 0xff);
        expect(
            "ITARGETSR byte 0xff (unimplemented CPUs)",
            d.read8(GICD_ITARGETSR + last).into(),
            all.into(),
        )?;
        let word = GICD_ITARGETSR + (last & !3);
        d.write32(word, u32::from(mine) * 0x0101_0101);
        expect(
            "ITARGETSR word write",
            d.read32(word).into(),
            (u32::from(mine) * 0x0101_0101).into(),
        )?;
        // SGI/PPI bytes: read-only, the reading CPU's own bit.
        d.write8(GICD_ITARGETSR + SGI_PEND as usize, all);
        expect(
            "ITARGETSR of an SGI (RO)",
            d.read8(GICD_ITARGETSR + SGI_PEND as usize).into(),
            mine.into(),
        )?;
        // Per-source SGI pending state, on a disabled SGI.
        let sgi = SGI_PEND as usize;
        d.write32(GICD_ICENABLER, 1 << sgi);
        d.write8(GICD_SPENDSGIR + sgi, 0xff);
        expect(
            "SPENDSGIR sources",
            d.read8(GICD_SPENDSGIR + sgi).into(),
            all.into(),
        )?;
        expect(
            "ISPENDR0 of an SGI pending by SPENDSGIR",
            (d.read32(GICD_ISPENDR) >> sgi & 1).into(),
            1,
        )?;
        d.write8(GICD_CPENDSGIR + sgi, mine);
        expect(
            "CPENDSGIR of one source",
            d.read8(GICD_SPENDSGIR + sgi).into(),
            (all & !mine).into(),
        )?;
        d.write8(GICD_CPENDSGIR + sgi, 0xff);
        expect(
            "CPENDSGIR of every source",
            d.read8(GICD_CPENDSGIR + sgi).into(),
            0,
        )?;
        expect(
            "ISPENDR0 after CPENDSGIR",
            (d.read32(GICD_ISPENDR) >> sgi & 1).into(),
            0,
        )?;
        d.write32(GICD_ISENABLER, 1 << sgi);
        if limit < 1020 {
            d.write8(GICD_ITARGETSR + limit, all);
            expect(
                "ITARGETSR past the last SPI (RAZ/WI)",
                d.read8(GICD_ITARGETSR + limit).into(),
                0,
            )?;
        }
    } else {
        let route = |cpu: usize| spec::gicd_irouter(CPU_MPIDR[cpu].load(SeqCst));
        let other = platform.cpu_count.min(2) - 1;
        d.write64(GICD_IROUTER + 8 * last, route(other));
        expect(
            "IROUTER of the last SPI",
            d.read64(GICD_IROUTER + 8 * last),
            route(other),
        )?;
        d.write64(GICD_IROUTER + 8 * last, route(0));
        if limit < 1020 {
            d.write64(GICD_IROUTER + 8 * limit, route(other));
            expect(
                "IROUTER past the last SPI (RAZ/WI)",
                d.read64(GICD_IROUTER + 8 * limit),
                0,
            )?;
        }
    }
    if limit < 1020 {
        let (word, bit) = (4 * (limit / 32), 1u32 << (limit % 32));
        d.write32(GICD_ISENABLER + word, bit);
        expect(
            "ISENABLER past the last SPI (RAZ/WI)",
            (d.read32(GICD_ISENABLER + word) & bit).into(),
            0,
        )?;
    }
    Ok(())
}

/// The `spi-pending` check: the last SPI `GICD_TYPER` reports, made pending through
/// `GICD_ISPENDR`, is taken once by this CPU.
pub fn spi_pending(gic: &Gic) -> Result<(), CheckFailure> {
    let cpu = cpu_index();
    let intid = gic.spi_limit() - 1;
    SPI.store(intid, SeqCst);
    SPI_TAKEN.store(0, SeqCst);
    gic.enable_spi(intid, true, cpu, CPU_MPIDR[cpu].load(SeqCst))
        .map_err(CheckFailure::Gic)?;
    gic.set_spi_pending(intid).map_err(CheckFailure::Gic)?;
    wait_for(WAIT_MS, || SPI_TAKEN.load(SeqCst) >= 1);
    wait_for(5, || false);
    let taken = SPI_TAKEN.load(SeqCst);
    gic.disable_spi(intid).map_err(CheckFailure::Gic)?;
    SPI.store(0, SeqCst);
    if taken == 1 {
        println!(
            "spi-pending: INTID {intid} taken once ({} SPIs)",
            gic.spi_limit() - 32
        );
        Ok(())
    } else {
        Err(CheckFailure::SpiNotTaken { intid, taken })
    }
}

/// The `eoi-mode` check: with EOImode 1 an EOI drops the running priority but leaves the
/// interrupt active until the guest deactivates it, on the virtual CPU interface of both
/// GIC versions (Linux runs GICv3 guests in EOImode 1 under KVM-like setups, and uses it
/// for interrupts forwarded to its own guests).
pub fn eoi_mode(gic: &Gic) -> Result<(), CheckFailure> {
    let cpu = cpu_index();
    let mpidr = CPU_MPIDR[cpu].load(SeqCst);
    sysreg::irq_disable();
    gic.send_sgi(SGI_EOIMODE, cpu, mpidr);
    let mut acked = None;
    wait_for(WAIT_MS, || {
        match gic.ack() {
            Some(a) if a.intid == u32::from(SGI_EOIMODE) => acked = Some(a),
            // Something else (a timer): ended as usual, it is not this check's.
            Some(other) => gic.eoi(other),
            None => {}
        }
        acked.is_some()
    });
    let result = match acked {
        None => Err(CheckFailure::EoiMode {
            step: "the SGI sent to itself was never acknowledged",
            got: 0,
        }),
        Some(ack) => {
            gic.set_eoi_split(true);
            gic.eoi(ack);
            let active_after_eoi = gic.private_active(cpu, ack.intid);
            let rpr_after_eoi = gic.running_priority();
            gic.deactivate(ack);
            let active_after_dir = gic.private_active(cpu, ack.intid);
            gic.set_eoi_split(false);
            if !active_after_eoi {
                Err(CheckFailure::EoiMode {
                    step: "EOImode 1: the EOI deactivated the interrupt (active bit clear)",
                    got: 0,
                })
            } else if rpr_after_eoi != 0xff {
                Err(CheckFailure::EoiMode {
                    step: "EOImode 1: the EOI did not drop the running priority",
                    got: rpr_after_eoi.into(),
                })
            } else if active_after_dir {
                Err(CheckFailure::EoiMode {
                    step: "EOImode 1: still active after the deactivate (DIR)",
                    got: 1,
                })
            } else {
                Ok(())
            }
        }
    };
    sysreg::irq_enable();
    result
}
