//! Decoders of the hardware nodes a SoC or a board declares: GIC, timer, PMU, devices,
//! and their MMIO windows and interrupts.

use std::collections::HashMap;

use super::{title, Cx, DecodeError, Shape};
use crate::decl::{
    DeviceDecl, GicDecl, IrqDecl, IrqKind, PmuDecl, PmuIrqsDecl, PmuSpiDecl, RegDecl, Sp,
    TimerDecl, MAX_SPIS,
};
use crate::model::{GicVersion, Trigger};
use crate::parse::Node;

impl Cx {
    pub(super) fn devices(&mut self, node: &Node) -> Vec<DeviceDecl> {
        let mut seen = HashMap::new();
        let mut out = Vec::new();
        for c in node.children.iter().filter(|c| c.name == "device") {
            if let Some(d) = self.device(c) {
                self.unique(
                    &mut seen,
                    "device name",
                    &d.name,
                    "device names must be unique; rename one (a board overrides a SoC device by reusing its name in the board)",
                );
                out.push(d);
            }
        }
        out
    }

    /// `NAME ADDR size=SIZE` (also `reg ADDR size=SIZE name="..."`).
    pub(super) fn reg(&mut self, node: &Node, name: String) -> Option<RegDecl> {
        self.shape(
            node,
            &Shape {
                props: &["size", "name"],
                children: &[],
                max_args: 1,
                args_help: "write `NAME 0x0900_0000 size=0x1000`",
            },
        );
        let example = format!("{} 0x0900_0000 size=0x1000", node.name);
        let base = self.arg_int(node, 0, "the base address", u64::MAX, &example);
        let size = self.prop_int(node, "size", u64::MAX, "size=0x1000");
        let size = self.require(node, "size", size, "size=0x1000");
        let name = self
            .prop_str(node, "name", "name=\"regs\"")
            .map(|s| s.value)
            .unwrap_or(name);
        Some(RegDecl {
            name,
            base: base?,
            size: size?,
            span: node.name_span,
        })
    }

    /// `irq spi=N trigger="level"` / `maintenance-irq ppi=N`.
    pub(super) fn irq(&mut self, node: &Node) -> Option<IrqDecl> {
        self.shape(
            node,
            &Shape {
                props: &["spi", "ppi", "trigger"],
                children: &[],
                max_args: 0,
                args_help: "write `irq spi=1 trigger=\"level\"` (or `ppi=N`)",
            },
        );
        let spi = self.prop_u32(node, "spi", "spi=1");
        let ppi = self.prop_u32(node, "ppi", "ppi=9");
        let trigger = self.prop_trigger(node);
        match (spi, ppi) {
            (Some(n), None) => Some(IrqDecl {
                kind: IrqKind::Spi,
                number: n,
                trigger,
            }),
            (None, Some(n)) => Some(IrqDecl {
                kind: IrqKind::Ppi,
                number: n,
                trigger,
            }),
            (Some(_), Some(p)) => {
                self.errors.push(DecodeError::ConflictingIrq {
                    problem: format!("`{}` gives both `spi=` and `ppi=`", node.name),
                    span: p.span,
                    label: "second interrupt number".to_owned(),
                    help: "an interrupt is either an SPI (`spi=N`) or a PPI (`ppi=N`); keep one"
                        .to_owned(),
                });
                None
            }
            (None, None) => {
                if node.prop("spi").is_none() && node.prop("ppi").is_none() {
                    self.errors.push(DecodeError::Missing {
                        node: node.name.clone(),
                        what: "an interrupt number".to_owned(),
                        span: node.name_span,
                        help: format!(
                            "write `{} spi=N` (INTID 32+N) or `{} ppi=N` (INTID 16+N)",
                            node.name, node.name
                        ),
                    });
                }
                None
            }
        }
    }

    pub(super) fn gic(&mut self, node: &Node) -> Option<GicDecl> {
        const CHILDREN: &[&str] = &[
            "distributor",
            "redistributor",
            "cpu-interface",
            "hyp-interface",
            "virtual-cpu-interface",
            "its",
            "maintenance-irq",
        ];
        self.shape(
            node,
            &Shape {
                props: &["version", "compatible", "spis"],
                children: CHILDREN,
                max_args: 0,
                args_help: "write `gic version=3 compatible=\"arm,gic-v3\" spis=256 { ... }`",
            },
        );
        let version = self.prop_u32(node, "version", "version=3");
        let version = self.require(node, "version", version, "version=3").and_then(|v| match v.value {
            2 => Some(Sp::new(GicVersion::V2, v.span, v.text)),
            3 => Some(Sp::new(GicVersion::V3, v.span, v.text)),
            _ => {
                self.errors.push(DecodeError::OutOfRange {
                    what: "GIC version".to_owned(),
                    text: v.text.clone(),
                    reason: "only GICv2 and GICv3 are supported".to_owned(),
                    span: v.span,
                    help: "write `version=2` (GIC-400 and other GICv2) or `version=3` (GICv3, GICv4 in v3 mode)".to_owned(),
                });
                None
            }
        });
        let compatible = self.prop_str(node, "compatible", "compatible=\"arm,gic-v3\"");
        let compatible = self.require(node, "compatible", compatible, "compatible=\"arm,gic-v3\"");
        let spis = self.prop_u32(node, "spis", "spis=256");
        let spis = self.require(node, "spis", spis, "spis=256").and_then(|s| {
            if s.value == 0 || s.value > MAX_SPIS {
                self.errors.push(DecodeError::OutOfRange {
                    what: "`spis`".to_owned(),
                    text: s.text.clone(),
                    reason: format!("a GIC implements 1 to {MAX_SPIS} SPIs"),
                    span: s.span,
                    help: format!("write the number of SPIs the GIC implements (GICD_TYPER.ITLinesNumber), at most {MAX_SPIS}"),
                });
                return None;
            }
            Some(s)
        });
        let window = |cx: &mut Self, child: &str, name: &str| {
            cx.single(node, child)
                .and_then(|n| cx.reg(n, name.to_owned()))
        };
        let distributor = window(self, "distributor", "gicd");
        let cpu_interface = window(self, "cpu-interface", "gicc");
        let hyp_interface = window(self, "hyp-interface", "gich");
        let virtual_cpu_interface = window(self, "virtual-cpu-interface", "gicv");
        let its = window(self, "its", "its");
        let redistributors = node
            .children
            .iter()
            .filter(|c| c.name == "redistributor")
            .enumerate()
            .filter_map(|(i, c)| {
                self.reg(
                    c,
                    if i == 0 {
                        "gicr".to_owned()
                    } else {
                        format!("gicr{i}")
                    },
                )
            })
            .collect();
        let maintenance = self
            .single(node, "maintenance-irq")
            .and_then(|n| self.irq(n));
        if distributor.is_none() && !node.children.iter().any(|c| c.name == "distributor") {
            self.missing_node(node, "distributor", "distributor 0x0800_0000 size=0x1_0000");
        }
        if maintenance.is_none() && !node.children.iter().any(|c| c.name == "maintenance-irq") {
            self.missing_node(node, "maintenance-irq", "maintenance-irq ppi=9");
        }
        Some(GicDecl {
            span: node.name_span,
            version: version?,
            compatible: compatible?,
            spis: spis?,
            distributor,
            redistributors,
            cpu_interface,
            hyp_interface,
            virtual_cpu_interface,
            its,
            maintenance,
        })
    }

    pub(super) fn timer(&mut self, node: &Node) -> Option<TimerDecl> {
        const PROPS: &[&str] = &["secure-phys", "phys", "virt", "hyp-phys", "hyp-virt"];
        self.shape(
            node,
            &Shape {
                props: PROPS,
                children: &[],
                max_args: 0,
                args_help:
                    "write `timer secure-phys=13 phys=14 virt=11 hyp-phys=10` (PPI numbers; \
                            `hyp-virt=12` too where the SoC wires the EL2 virtual timer)",
            },
        );
        let ppi = |cx: &mut Self, name: &str| {
            let example = format!("{name}=14");
            let v = cx.prop_u32(node, name, &example);
            cx.require(node, name, v, &example).map(|number| IrqDecl {
                kind: IrqKind::Ppi,
                number,
                trigger: Trigger::Level,
            })
        };
        let secure_phys = ppi(self, "secure-phys");
        let phys = ppi(self, "phys");
        let virt = ppi(self, "virt");
        let hyp_phys = ppi(self, "hyp-phys");
        let hyp_virt = self
            .prop_u32(node, "hyp-virt", "hyp-virt=12")
            .map(|number| IrqDecl {
                kind: IrqKind::Ppi,
                number,
                trigger: Trigger::Level,
            });
        Some(TimerDecl {
            span: node.name_span,
            secure_phys: secure_phys?,
            phys: phys?,
            virt: virt?,
            hyp_phys: hyp_phys?,
            hyp_virt,
        })
    }

    pub(super) fn pmu(&mut self, node: &Node) -> Option<PmuDecl> {
        const FORMS: &str =
            "write `pmu ppi=7` (one PPI for all CPUs), `pmu { irq spi=16 cpu=0x0; irq spi=17 cpu=0x1; ... }` (one SPI per CPU) or `pmu unavailable=\"REASON\"` (no overflow interrupt the hypervisor can take)";
        self.shape(
            node,
            &Shape {
                props: &["ppi", "unavailable"],
                children: &["irq"],
                max_args: 0,
                args_help: FORMS,
            },
        );
        let ppi = self.prop_u32(node, "ppi", "ppi=7");
        let children: Vec<&Node> = node.children.iter().filter(|c| c.name == "irq").collect();
        if let Some(u) = node.prop("unavailable") {
            if node.prop("ppi").is_some() || !children.is_empty() {
                self.errors.push(DecodeError::PmuForm {
                    problem: "`pmu` says its interrupt is unavailable and also gives one".to_owned(),
                    span: u.value.span,
                    label: "unavailable".to_owned(),
                    help: "keep `unavailable=\"REASON\"` only if no overflow interrupt reaches the GIC in a way the hypervisor can take; otherwise remove it".to_owned(),
                });
                return None;
            }
            let reason = self.prop_str(
                node,
                "unavailable",
                "unavailable=\"the overflow line goes through a controller no plugin drives\"",
            )?;
            if reason.value.trim().is_empty() {
                self.errors.push(DecodeError::PmuForm {
                    problem: "`pmu unavailable=` gives no reason".to_owned(),
                    span: reason.span,
                    label: "empty".to_owned(),
                    help: "say why no overflow interrupt can be used, e.g. `unavailable=\"through the AP806 PIC, which no plugin drives\"`".to_owned(),
                });
                return None;
            }
            return Some(PmuDecl {
                span: node.name_span,
                irqs: PmuIrqsDecl::Unavailable(reason),
            });
        }
        let irqs = match (node.prop("ppi"), children.first()) {
            (Some(p), Some(first)) => {
                self.errors.push(DecodeError::PmuForm {
                    problem: "`pmu` gives both `ppi=` and per-CPU `irq` children".to_owned(),
                    span: first.name_span,
                    label: "per-CPU SPI".to_owned(),
                    help: format!(
                        "keep one form: `ppi={}` if every CPU's overflow line is that PPI, or the `irq spi= cpu=` list if the device tree gives one SPI per CPU with `interrupt-affinity`",
                        p.value.text
                    ),
                });
                return None;
            }
            (Some(_), None) => PmuIrqsDecl::Ppi(IrqDecl {
                kind: IrqKind::Ppi,
                number: ppi?,
                trigger: Trigger::Level,
            }),
            (None, Some(_)) => {
                let spis: Vec<Option<PmuSpiDecl>> =
                    children.iter().map(|c| self.pmu_spi(c)).collect();
                // A broken entry is already reported.
                PmuIrqsDecl::PerCpuSpi(spis.into_iter().collect::<Option<Vec<_>>>()?)
            }
            (None, None) => {
                self.errors.push(DecodeError::Missing {
                    node: title(node),
                    what: "its interrupts".to_owned(),
                    span: node.name_span,
                    help: FORMS.to_owned(),
                });
                return None;
            }
        };
        Some(PmuDecl {
            span: node.name_span,
            irqs,
        })
    }

    /// `irq spi=N cpu=MPIDR [trigger=]` inside `pmu`.
    pub(super) fn pmu_spi(&mut self, node: &Node) -> Option<PmuSpiDecl> {
        self.shape(
            node,
            &Shape {
                // `ppi` is reported below with a better help than "unknown property".
                props: &["spi", "cpu", "trigger", "ppi"],
                children: &[],
                max_args: 0,
                args_help: "write `irq spi=16 cpu=0x0` (the SPI number and the MPIDR of its CPU)",
            },
        );
        if let Some(p) = node.prop("ppi") {
            self.errors.push(DecodeError::PmuForm {
                problem: "a per-CPU PMU interrupt is an SPI, not a PPI".to_owned(),
                span: p.value.span,
                label: "PPI".to_owned(),
                help: format!(
                    "if every CPU's overflow line is PPI {0}, write `pmu ppi={0}` without children; otherwise write `spi=N` here",
                    p.value.text
                ),
            });
            return None;
        }
        let spi = self.prop_u32(node, "spi", "spi=16");
        let spi = self.require(node, "spi", spi, "spi=16");
        let cpu = self.prop_int(node, "cpu", u64::MAX, "cpu=0x0");
        let cpu = self.require(node, "cpu", cpu, "cpu=0x0");
        let trigger = self.prop_trigger(node);
        Some(PmuSpiDecl {
            irq: IrqDecl {
                kind: IrqKind::Spi,
                number: spi?,
                trigger,
            },
            cpu: cpu?,
        })
    }

    pub(super) fn device(&mut self, node: &Node) -> Option<DeviceDecl> {
        self.shape(
            node,
            &Shape {
                props: &["compatible", "status", "reason", "bus-id"],
                children: &["reg", "irq", "clock", "dma-coherent"],
                // Extra string arguments are compatibles; checked below.
                max_args: usize::MAX,
                args_help: "further compatible strings go right after `compatible=\"...\"`; other arguments are not allowed",
            },
        );
        let name = self.arg_str(
            node,
            0,
            "the name",
            "device \"uart0\" compatible=\"arm,pl011\"",
        )?;
        // `compatible="a" "b"`: the property, then further string arguments.
        let compatible = node.prop("compatible").map(|_| {
            let mut list: Vec<Sp<String>> = self
                .prop_str(node, "compatible", "compatible=\"arm,pl011\"")
                .into_iter()
                .collect();
            for extra in node.args.iter().skip(1) {
                if let Some(s) =
                    self.string_value(extra, "a compatible string".to_owned(), "\"arm,primecell\"")
                {
                    list.push(s);
                }
            }
            list
        });
        if node.prop("compatible").is_none() {
            if let Some(extra) = node.args.get(1) {
                self.errors.push(DecodeError::ExtraArgument {
                    node: title(node),
                    span: extra.span,
                    help: "compatible strings follow `compatible=`: `device \"x\" compatible=\"a\" \"b\"`".to_owned(),
                });
            }
        }
        let okay = self
            .prop_str(node, "status", "status=\"disabled\"")
            .and_then(|s| self.choice(s, "device status", &[("okay", true), ("disabled", false)]));
        let reason = self.prop_str(node, "reason", "reason=\"why it cannot be used\"");
        let bus_id = self.prop_str(node, "bus-id", "bus-id=\"usb:0bda:8153\"");
        let regs = node
            .children
            .iter()
            .filter(|c| c.name == "reg")
            .enumerate()
            .filter_map(|(i, c)| {
                self.reg(
                    c,
                    if i == 0 {
                        "regs".to_owned()
                    } else {
                        format!("regs{i}")
                    },
                )
            })
            .collect();
        let irqs = node
            .children
            .iter()
            .filter(|c| c.name == "irq")
            .filter_map(|c| self.irq(c))
            .collect();
        let clock = self.single(node, "clock").and_then(|c| {
            self.shape(
                c,
                &Shape {
                    props: &[],
                    children: &[],
                    max_args: 1,
                    args_help: "write `clock 24_000_000` (Hz)",
                },
            );
            self.arg_int(c, 0, "the frequency in Hz", u64::MAX, "clock 24_000_000")
        });
        let dma_coherent = self.single(node, "dma-coherent").map(|c| {
            self.shape(
                c,
                &Shape {
                    props: &[],
                    children: &[],
                    max_args: 0,
                    args_help: "write `dma-coherent` alone, as in a device tree",
                },
            );
            Sp {
                value: true,
                span: c.name_span,
                text: "dma-coherent".to_owned(),
            }
        });
        Some(DeviceDecl {
            name,
            compatible,
            okay,
            reason,
            bus_id,
            regs,
            irqs,
            clock,
            dma_coherent,
        })
    }
}
