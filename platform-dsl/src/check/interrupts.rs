//! Rules on interrupts and the GIC: PPI/SPI ranges, windows per GIC version, per-CPU PMU SPIs.

use std::collections::HashMap;

use miette::SourceSpan;

use super::{CheckError, Checker};
use crate::decl::{
    BoardDecl, GicDecl, IrqDecl, IrqKind, PmuDecl, PmuIrqsDecl, RegDecl, GICV2_MAX_CPUS, PPI_COUNT,
};
use crate::model::GicVersion;
use crate::text::hex;

impl Checker {
    pub(super) fn check_irq(&mut self, irq: &IrqDecl, gic: &GicDecl) {
        let version = match gic.version.value {
            GicVersion::V2 => 2,
            GicVersion::V3 => 3,
        };
        let (kind, limit, reason, help) = match irq.kind {
            IrqKind::Ppi => (
                "PPI",
                PPI_COUNT,
                "there are 16 PPIs, 0..=15 (INTID 16..=31)".to_owned(),
                "write the PPI number, not the INTID: INTID 27 is `ppi=11`".to_owned(),
            ),
            IrqKind::Spi => (
                "SPI",
                gic.spis.value,
                format!("it implements spis={}", gic.spis.text),
                format!(
                    "write the SPI number, not the INTID (INTID 33 is `spi=1`), below {}; or raise the GIC's `spis=` if the hardware has more",
                    gic.spis.value
                ),
            ),
        };
        if irq.number.value >= limit {
            self.errors.push(CheckError::IrqOutOfRange {
                kind,
                number: irq.number.text.clone(),
                version,
                reason,
                span: irq.number.span,
                limit,
                help,
            });
        }
    }

    pub(super) fn check_gic(&mut self, gic: &GicDecl, b: &BoardDecl) {
        let windows: [(&str, &Option<RegDecl>); 3] = [
            ("cpu-interface", &gic.cpu_interface),
            ("hyp-interface", &gic.hyp_interface),
            ("virtual-cpu-interface", &gic.virtual_cpu_interface),
        ];
        match gic.version.value {
            GicVersion::V3 => {
                if gic.redistributors.is_empty() {
                    self.errors.push(CheckError::Gic {
                        problem: "a GICv3 needs at least one `redistributor`".to_owned(),
                        span: gic.span,
                        label: "no redistributor".to_owned(),
                        help: "add `redistributor 0x080a_0000 size=0xf6_0000` (GICR frames of every CPU) inside `gic`".to_owned(),
                    });
                }
                for (name, w) in windows {
                    if let Some(w) = w {
                        self.errors.push(CheckError::Gic {
                            problem: format!("`{name}` is a GICv2 window, but this GIC is version 3"),
                            span: w.span,
                            label: "GICv2 only".to_owned(),
                            help: format!("remove `{name}`, or write `version=2` if the GIC is a GICv2/GIC-400"),
                        });
                    }
                }
            }
            GicVersion::V2 => {
                for (name, w) in windows {
                    if w.is_none() {
                        self.errors.push(CheckError::Gic {
                            problem: format!("a GICv2 needs `{name}`"),
                            span: gic.span,
                            label: format!("no {name}"),
                            help: format!("add `{name} ADDR size=SIZE` inside `gic` (GICC, GICH and GICV are all needed to run VMs)"),
                        });
                    }
                }
                for r in gic.redistributors.iter().chain(&gic.its) {
                    self.errors.push(CheckError::Gic {
                        problem: format!(
                            "`{}` is a GICv3 window, but this GIC is version 2",
                            r.name
                        ),
                        span: r.span,
                        label: "GICv3 only".to_owned(),
                        help: "remove it, or write `version=3` if the GIC is a GICv3".to_owned(),
                    });
                }
                if b.cpu_list().len() > GICV2_MAX_CPUS {
                    self.errors.push(CheckError::Gic {
                        problem: format!("a GICv2 serves at most {GICV2_MAX_CPUS} CPUs, this board lists {}", b.cpu_list().len()),
                        span: gic.version.span,
                        label: "GICv2".to_owned(),
                        help: "a board with more than 8 CPUs needs a GICv3: write `version=3` with a `redistributor`".to_owned(),
                    });
                }
            }
        }
        if let Some(m) = &gic.maintenance {
            self.check_irq(m, gic);
        }
        if let Some(t) = &b.timer {
            for irq in [&t.secure_phys, &t.phys, &t.virt, &t.hyp_phys]
                .into_iter()
                .chain(t.hyp_virt.as_ref())
            {
                self.check_irq(irq, gic);
            }
        }
        if let Some(p) = &b.pmu {
            match &p.irqs {
                PmuIrqsDecl::Ppi(irq) => self.check_irq(irq, gic),
                PmuIrqsDecl::PerCpuSpi(spis) => {
                    for s in spis {
                        self.check_irq(&s.irq, gic);
                    }
                }
                PmuIrqsDecl::Unavailable(_) => {}
            }
        }
        for d in &b.devices {
            for irq in &d.irqs {
                self.check_irq(irq, gic);
            }
        }
    }

    /// Per-CPU PMU SPIs: each names a declared CPU, each CPU has exactly one, no SPI twice.
    /// (Their ranges are checked with the other interrupts.)
    pub(super) fn check_pmu(&mut self, b: &BoardDecl) {
        let Some(PmuDecl {
            span,
            irqs: PmuIrqsDecl::PerCpuSpi(spis),
        }) = &b.pmu
        else {
            return;
        };
        let declared: Vec<String> = b.cpu_list().iter().map(|c| hex(c.mpidr.value)).collect();
        let mut by_cpu: HashMap<u64, SourceSpan> = HashMap::new();
        let mut by_spi: HashMap<u32, SourceSpan> = HashMap::new();
        for s in spis {
            if let Some(first) = by_spi.get(&s.irq.number.value) {
                self.errors.push(CheckError::Duplicate {
                    kind: "PMU SPI".to_owned(),
                    name: s.irq.number.text.clone(),
                    span: s.irq.number.span,
                    first: *first,
                    help: "each CPU's PMU has its own overflow SPI: check the `interrupts` list of the device tree's `pmu` node".to_owned(),
                });
            } else {
                by_spi.insert(s.irq.number.value, s.irq.number.span);
            }
            if let Some(first) = by_cpu.get(&s.cpu.value) {
                self.errors.push(CheckError::Duplicate {
                    kind: "PMU cpu".to_owned(),
                    name: s.cpu.text.clone(),
                    span: s.cpu.span,
                    first: *first,
                    help: "a CPU has exactly one PMU overflow SPI: remove one entry, or correct its `cpu=` from the device tree's `interrupt-affinity`".to_owned(),
                });
                continue;
            }
            by_cpu.insert(s.cpu.value, s.cpu.span);
            if b.cpus.is_some() && !b.cpu_list().iter().any(|c| c.mpidr.value == s.cpu.value) {
                self.errors.push(CheckError::Pmu {
                    problem: format!(
                        "PMU interrupt for cpu {}, which is not in `cpus`",
                        s.cpu.text
                    ),
                    span: s.cpu.span,
                    label: "no such CPU".to_owned(),
                    help: format!(
                        "write the MPIDR of a declared CPU ({}), as listed in `cpus`",
                        declared.join(", ")
                    ),
                });
            }
        }
        let missing: Vec<&str> = b
            .cpu_list()
            .iter()
            .filter(|c| !by_cpu.contains_key(&c.mpidr.value))
            .map(|c| c.mpidr.text.as_str())
            .collect();
        if let Some(first) = missing.first() {
            self.errors.push(CheckError::Pmu {
                problem: format!(
                    "the PMU has no overflow SPI for cpu {}",
                    missing.join(", cpu ")
                ),
                span: *span,
                label: format!("{} of {} CPUs covered", b.cpu_list().len() - missing.len(), b.cpu_list().len()),
                help: format!(
                    "add `irq spi=N cpu={first}` inside `pmu` for each listed CPU (the device tree's `pmu` node pairs `interrupts` with `interrupt-affinity`); or write `pmu ppi=N` if the PMU uses one PPI"
                ),
            });
        }
    }
}
