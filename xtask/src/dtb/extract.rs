//! The board facts a device tree holds: CPUs, memory, GIC, timer, PMU, console and devices.

use super::tree::Tree;
use platform_dsl::model::{GicVersion, Trigger};

/// A GIC interrupt as a device tree writes it: SPI or PPI number and trigger.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DtIrq {
    /// `true` for a PPI (`<1 n f>`), `false` for an SPI (`<0 n f>`).
    pub ppi: bool,
    /// The SPI or PPI number.
    pub number: u32,
    /// Trigger from the flags cell.
    pub trigger: Trigger,
}

impl DtIrq {
    /// The GIC INTID.
    pub fn intid(&self) -> u32 {
        self.number + if self.ppi { 16 } else { 32 }
    }
}

/// A device with a `compatible` and translated `reg`s.
#[derive(Clone, Debug)]
pub struct DtDevice {
    /// Label from `__symbols__`, else the node name.
    pub label: String,
    /// Full node path.
    pub path: String,
    /// `compatible` strings.
    pub compatible: Vec<String>,
    /// CPU physical `(base, size)` windows.
    pub regs: Vec<(u64, u64)>,
    /// `reg-names`, if given.
    pub reg_names: Vec<String>,
    /// Interrupts whose parent is the GIC.
    pub irqs: Vec<DtIrq>,
    /// `status = "disabled"`.
    pub disabled: bool,
}

/// The GIC node.
#[derive(Clone, Debug)]
pub struct DtGic {
    /// Version from `compatible`.
    pub version: GicVersion,
    /// `compatible` strings.
    pub compatible: Vec<String>,
    /// Node path.
    pub path: String,
    /// GICD.
    pub distributor: (u64, u64),
    /// GICv3: GICR regions.
    pub redistributors: Vec<(u64, u64)>,
    /// GICv2 GICC/GICH/GICV (also optional on GICv3).
    pub cpu_interface: Option<(u64, u64)>,
    /// GICH.
    pub hyp_interface: Option<(u64, u64)>,
    /// GICV.
    pub virtual_cpu_interface: Option<(u64, u64)>,
    /// ITS children.
    pub its: Vec<(u64, u64)>,
    /// Maintenance interrupt.
    pub maintenance: Option<DtIrq>,
}

/// CPU PMU compatibles not spelled `arm,*-pmu`: other implementers' cores in Linux's
/// Documentation/devicetree/bindings/arm/pmu.yaml (e.g. Tegra194's Carmel, tegra194.dtsi `pmu`).
const CPU_PMU_OTHER: &[&str] = &[
    "apm,potenza-pmu",
    "brcm,vulcan-pmu",
    "cavium,thunder-pmu",
    "nvidia,denver-pmu",
    "nvidia,carmel-pmu",
    "qcom,krait-pmu",
    "qcom,scorpion-pmu",
];

/// PMU overflow interrupts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DtPmu {
    /// One PPI.
    Ppi(DtIrq),
    /// SPI per CPU MPIDR.
    PerCpu(Vec<(DtIrq, u64)>),
}

/// One CPU.
#[derive(Clone, Debug)]
pub struct DtCpu {
    /// MPIDR affinity (`reg`).
    pub mpidr: u64,
    /// First `compatible`.
    pub core: String,
    /// Cluster index from `cpu-map` (0 without one).
    pub cluster: u32,
}

/// Everything extracted.
#[derive(Clone, Debug)]
pub struct DtBoard {
    /// Root `model`.
    pub model: String,
    /// CPUs in node order.
    pub cpus: Vec<DtCpu>,
    /// Clusters (1 without `cpu-map` or when they are uneven).
    pub clusters: u32,
    /// Memory regions with non-zero size.
    pub memory: Vec<(u64, u64)>,
    /// Memory regions whose size is 0 in the DT (the firmware fills it in at boot): the
    /// memory node's path and the base it gives.
    pub memory_unsized: Vec<(String, u64)>,
    /// The GIC.
    pub gic: DtGic,
    /// Timer PPIs: secure-phys, phys, virt, hyp-phys.
    pub timer: Option<[DtIrq; 4]>,
    /// The timer node's fifth interrupt, the EL2 virtual timer, where the DT has one.
    pub timer_hyp_virt: Option<DtIrq>,
    /// PMU.
    pub pmu: Option<DtPmu>,
    /// Index into `devices` of the console UART.
    pub console: Option<usize>,
    /// Why there is no console, when there is none: the UART nodes the DT has and what is
    /// wrong with each (all disabled; enabled but without a CPU address).
    pub no_console: String,
    /// Devices (not cpus, memory, the GIC, timer or PMU).
    pub devices: Vec<DtDevice>,
}

const GIC_V2: &[&str] = &["arm,gic-400", "arm,cortex-a15-gic", "arm,cortex-a7-gic"];
const GIC_V3: &[&str] = &["arm,gic-v3"];
const TIMER: &[&str] = &["arm,armv8-timer", "arm,armv7-timer"];

/// Reads the facts of a device tree.
pub fn extract(t: &Tree) -> Result<DtBoard, String> {
    let gic_node = (0..t.nodes.len())
        .find(|&i| t.is_compatible(i, GIC_V2) || t.is_compatible(i, GIC_V3))
        .ok_or("no GIC in the device tree (compatible arm,gic-400, arm,cortex-a15-gic or arm,gic-v3); only GIC-based boards can be imported")?;
    let gic = gic(t, gic_node)?;
    let irqs_of = |i: usize| gic_irqs(t, i, gic_node);

    let cpus_node = t
        .by_path("/cpus")
        .ok_or("the device tree has no /cpus node")?;
    let mut cpus = Vec::new();
    let mut cpu_nodes = Vec::new();
    for &c in &t.nodes[cpus_node].children {
        if t.string(c, "device_type").as_deref() != Some("cpu") {
            continue;
        }
        let reg = t.cells(c, "reg").unwrap_or_default();
        let mpidr = reg.iter().fold(0u64, |a, c| (a << 32) | u64::from(*c));
        cpus.push(DtCpu {
            mpidr,
            core: t.string(c, "compatible").unwrap_or_default(),
            cluster: 0,
        });
        cpu_nodes.push(c);
    }
    if cpus.is_empty() {
        return Err("no cpu nodes (device_type = \"cpu\") under /cpus".into());
    }
    let clusters = cpu_map(t, cpus_node, &cpu_nodes, &mut cpus);

    let mut memory = Vec::new();
    let mut memory_unsized = Vec::new();
    for i in 0..t.nodes.len() {
        if t.string(i, "device_type").as_deref() == Some("memory") && !t.is_disabled(i) {
            for r in t.reg(i).unwrap_or_default() {
                if r.1 != 0 {
                    memory.push(r);
                } else {
                    memory_unsized.push((t.nodes[i].path.clone(), r.0));
                }
            }
        }
    }
    memory.sort();
    memory_unsized.sort_by_key(|m| m.1);
    memory_unsized.dedup_by_key(|m| m.1);

    let timer_irqs = (0..t.nodes.len())
        .find(|&i| t.is_compatible(i, TIMER))
        .map(irqs_of)
        .filter(|v| v.len() >= 4);
    let timer = timer_irqs.as_ref().map(|v| [v[0], v[1], v[2], v[3]]);
    let timer_hyp_virt = timer_irqs.as_ref().and_then(|v| v.get(4).copied());

    let pmu = (0..t.nodes.len())
        .find(|&i| {
            t.strings(i, "compatible").iter().any(|c| {
                (c.starts_with("arm,") && (c.ends_with("-pmu") || c.ends_with("pmuv3")))
                    || CPU_PMU_OTHER.contains(&c.as_str())
            })
        })
        .and_then(|i| {
            let irqs = irqs_of(i);
            if irqs.len() == 1 && irqs[0].ppi {
                return Some(DtPmu::Ppi(irqs[0]));
            }
            let mpidrs: Vec<u64> = match t.cells(i, "interrupt-affinity") {
                Some(a) => a
                    .iter()
                    .filter_map(|h| t.by_phandle(*h))
                    .filter_map(|n| cpu_nodes.iter().position(|c| *c == n))
                    .map(|k| cpus[k].mpidr)
                    .collect(),
                None => cpus.iter().map(|c| c.mpidr).collect(),
            };
            (!irqs.is_empty()).then(|| DtPmu::PerCpu(irqs.into_iter().zip(mpidrs).collect()))
        });

    let symbols = t.symbols();
    let mut devices = Vec::new();
    let mut index_of_node = Vec::new();
    for i in 0..t.nodes.len() {
        let compatible = t.strings(i, "compatible");
        if compatible.is_empty()
            || i == gic_node
            || t.nodes[i].parent == Some(gic_node)
            || t.nodes[i].path.starts_with("/cpus")
            || t.string(i, "device_type").as_deref() == Some("memory")
            || t.nodes[i].path.starts_with("/reserved-memory")
        {
            continue;
        }
        let Some(regs) = t.reg(i) else { continue };
        if regs.is_empty() {
            continue;
        }
        let path = t.nodes[i].path.clone();
        let label = symbols
            .iter()
            .find(|(_, p)| *p == path)
            .map(|(l, _)| l.clone())
            .unwrap_or_else(|| t.nodes[i].name.replace('@', "-"));
        index_of_node.push(i);
        devices.push(DtDevice {
            label,
            path,
            compatible,
            regs,
            reg_names: t.strings(i, "reg-names"),
            irqs: irqs_of(i),
            disabled: t.is_disabled(i) || ancestor_disabled(t, i),
        });
    }
    let console = console(t, &index_of_node, &devices);
    let no_console = if console.is_some() {
        String::new()
    } else {
        let uarts: Vec<usize> = (0..t.nodes.len())
            .filter(|&i| t.strings(i, "compatible").iter().any(|c| is_uart(c)))
            .collect();
        let unmapped: Vec<String> = uarts
            .iter()
            .filter(|&&i| !t.is_disabled(i) && !ancestor_disabled(t, i))
            .map(|&i| {
                format!(
                    "{} ({}) is enabled but its reg has no CPU address (it does not translate through its parents' `ranges`: e.g. an LPC bus's I/O space)",
                    t.nodes[i].path,
                    t.strings(i, "compatible").join(" ")
                )
            })
            .collect();
        if uarts.is_empty() {
            "the device tree has no UART node (serial/uart compatible)".into()
        } else if unmapped.is_empty() {
            format!(
                "every UART node of the device tree ({}) is status = \"disabled\"",
                uarts.len()
            )
        } else {
            format!("no memory-mapped UART: {}", unmapped.join("; "))
        }
    };
    Ok(DtBoard {
        model: t.string(0, "model").unwrap_or_default(),
        cpus,
        clusters,
        memory,
        memory_unsized,
        gic,
        timer,
        timer_hyp_virt,
        pmu,
        console,
        no_console,
        devices,
    })
}

/// A UART's compatible (`arm,pl011`, `ns16550a`, `qcom,geni-uart`, `amlogic,meson-uart`, ...).
fn is_uart(c: &str) -> bool {
    c.contains("uart") || c.contains("serial") || c.contains("pl011") || c.contains("16550")
}

fn ancestor_disabled(t: &Tree, i: usize) -> bool {
    let mut n = t.nodes[i].parent;
    while let Some(k) = n {
        if t.is_disabled(k) {
            return true;
        }
        n = t.nodes[k].parent;
    }
    false
}

/// Assigns clusters from `/cpus/cpu-map`; returns the cluster count, or 1 (and every CPU in
/// cluster 0) when there is no map or the clusters are of different sizes.
fn cpu_map(t: &Tree, cpus_node: usize, cpu_nodes: &[usize], cpus: &mut [DtCpu]) -> u32 {
    let Some(&map) = t.nodes[cpus_node]
        .children
        .iter()
        .find(|&&c| t.nodes[c].name == "cpu-map")
    else {
        return 1;
    };
    // Leaf clusters: nodes holding `coreN` children; their CPUs are the `cpu` phandles below.
    let mut clusters: Vec<Vec<usize>> = Vec::new();
    let mut stack = vec![map];
    while let Some(n) = stack.pop() {
        let kids = &t.nodes[n].children;
        if kids.iter().any(|&k| t.nodes[k].name.starts_with("core")) {
            let mut members = Vec::new();
            let mut sub = kids.clone();
            while let Some(k) = sub.pop() {
                if let Some(c) = t.u32(k, "cpu").and_then(|h| t.by_phandle(h)) {
                    if let Some(pos) = cpu_nodes.iter().position(|x| *x == c) {
                        members.push(pos);
                    }
                }
                sub.extend(t.nodes[k].children.iter().copied());
            }
            clusters.push(members);
        } else {
            stack.extend(kids.iter().rev().copied());
        }
    }
    clusters.sort();
    let total: usize = clusters.iter().map(Vec::len).sum();
    let even = clusters.iter().all(|c| c.len() == clusters[0].len());
    if clusters.is_empty() || total != cpus.len() || !even {
        return 1;
    }
    for (k, members) in clusters.iter().enumerate() {
        for &m in members {
            cpus[m].cluster = k as u32;
        }
    }
    clusters.len() as u32
}

/// The console: `/chosen` `stdout-path` (alias or path, options after `:` dropped), else the
/// first enabled UART.
fn console(t: &Tree, nodes: &[usize], devices: &[DtDevice]) -> Option<usize> {
    let chosen = t
        .by_path("/chosen")
        .and_then(|c| {
            t.string(c, "stdout-path")
                .or_else(|| t.string(c, "linux,stdout-path"))
        })
        .and_then(|s| t.resolve(s.split(':').next().unwrap_or("")));
    if let Some(n) = chosen {
        if let Some(k) = nodes.iter().position(|x| *x == n) {
            if !devices[k].disabled {
                return Some(k);
            }
        }
    }
    devices
        .iter()
        .position(|d| !d.disabled && d.compatible.iter().any(|c| is_uart(c)))
}

/// The interrupts of node `i` whose parent is the GIC (`interrupts` with the GIC as
/// interrupt parent, or the GIC entries of `interrupts-extended`).
fn gic_irqs(t: &Tree, i: usize, gic: usize) -> Vec<DtIrq> {
    let cells = t.u32(gic, "#interrupt-cells").unwrap_or(3) as usize;
    let mut raw: Vec<Vec<u32>> = Vec::new();
    if let Some(ext) = t.cells(i, "interrupts-extended") {
        let mut k = 0;
        while k < ext.len() {
            let Some(ctl) = t.by_phandle(ext[k]) else {
                break;
            };
            let n = t.u32(ctl, "#interrupt-cells").unwrap_or(1) as usize;
            if ctl == gic {
                raw.extend(ext.get(k + 1..k + 1 + n).map(<[u32]>::to_vec));
            }
            k += 1 + n;
        }
    } else if t.interrupt_parent(i) == Some(gic) {
        if let Some(c) = t.cells(i, "interrupts") {
            raw.extend(c.chunks_exact(cells.max(1)).map(<[u32]>::to_vec));
        }
    }
    raw.iter()
        .filter(|c| c.len() >= 3 && c[0] <= 1)
        .map(|c| DtIrq {
            ppi: c[0] == 1,
            number: c[1],
            trigger: if c[2] & 0x3 != 0 {
                Trigger::Edge
            } else {
                Trigger::Level
            },
        })
        .collect()
}

fn gic(t: &Tree, g: usize) -> Result<DtGic, String> {
    let regs = t
        .reg(g)
        .ok_or("the GIC's reg cannot be translated to CPU addresses")?;
    let path = t.nodes[g].path.clone();
    let dist = *regs
        .first()
        .ok_or_else(|| format!("GIC `{path}` has no reg"))?;
    let maintenance = gic_irqs(t, g, g).first().copied().or_else(|| {
        // A GIC that is its own interrupt parent is the usual case; else read the cells.
        t.cells(g, "interrupts")
            .filter(|c| c.len() >= 3)
            .map(|c| DtIrq {
                ppi: c[0] == 1,
                number: c[1],
                trigger: Trigger::Level,
            })
    });
    if t.is_compatible(g, GIC_V3) {
        let n = t.u32(g, "#redistributor-regions").unwrap_or(1) as usize;
        let redist: Vec<_> = regs.iter().skip(1).take(n).copied().collect();
        let rest: Vec<_> = regs.iter().skip(1 + n).copied().collect();
        let its = t.nodes[g]
            .children
            .iter()
            .filter(|&&c| t.is_compatible(c, &["arm,gic-v3-its"]))
            .filter_map(|&c| t.reg(c).and_then(|r| r.first().copied()))
            .collect();
        Ok(DtGic {
            version: GicVersion::V3,
            compatible: t.strings(g, "compatible"),
            path,
            distributor: dist,
            redistributors: redist,
            cpu_interface: rest.first().copied(),
            hyp_interface: rest.get(1).copied(),
            virtual_cpu_interface: rest.get(2).copied(),
            its,
            maintenance,
        })
    } else {
        Ok(DtGic {
            version: GicVersion::V2,
            compatible: t.strings(g, "compatible"),
            path,
            distributor: dist,
            redistributors: Vec::new(),
            cpu_interface: regs.get(1).copied(),
            hyp_interface: regs.get(2).copied(),
            virtual_cpu_interface: regs.get(3).copied(),
            its: Vec::new(),
            maintenance,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A GIC-400 board with two CPUs and a per-CPU-SPI PMU of compatible `pmu_compatible`,
    /// shaped like tegra194.dtsi's `pmu` node.
    fn board_with_pmu(pmu_compatible: &str) -> Vec<u8> {
        let mut w = vm_fdt::FdtWriter::new().expect("fdt writer");
        let root = w.begin_node("").expect("root");
        w.property_u32("#address-cells", 2).expect("prop");
        w.property_u32("#size-cells", 2).expect("prop");
        w.property_u32("interrupt-parent", 1).expect("prop");
        let cpus = w.begin_node("cpus").expect("cpus");
        w.property_u32("#address-cells", 1).expect("prop");
        w.property_u32("#size-cells", 0).expect("prop");
        for (k, mpidr) in [0x0u32, 0x100].into_iter().enumerate() {
            let c = w.begin_node(&format!("cpu@{mpidr:x}")).expect("cpu");
            w.property_string("device_type", "cpu").expect("prop");
            w.property_u32("reg", mpidr).expect("prop");
            w.property_u32("phandle", 10 + k as u32).expect("prop");
            w.end_node(c).expect("end");
        }
        w.end_node(cpus).expect("end");
        let gic = w.begin_node("interrupt-controller@3881000").expect("gic");
        w.property_string("compatible", "arm,gic-400")
            .expect("prop");
        w.property_null("interrupt-controller").expect("prop");
        w.property_u32("#interrupt-cells", 3).expect("prop");
        w.property_array_u64(
            "reg",
            &[
                0x0388_1000,
                0x1000,
                0x0388_2000,
                0x2000,
                0x0388_4000,
                0x2000,
                0x0388_6000,
                0x2000,
            ],
        )
        .expect("prop");
        w.property_array_u32("interrupts", &[1, 9, 0xf04])
            .expect("prop");
        w.property_u32("phandle", 1).expect("prop");
        w.end_node(gic).expect("end");
        let pmu = w.begin_node("pmu").expect("pmu");
        w.property_string("compatible", pmu_compatible)
            .expect("prop");
        w.property_array_u32("interrupts", &[0, 384, 4, 0, 385, 4])
            .expect("prop");
        w.property_array_u32("interrupt-affinity", &[10, 11])
            .expect("prop");
        w.end_node(pmu).expect("end");
        w.end_node(root).expect("end");
        w.finish().expect("finish")
    }

    #[test]
    fn carmel_pmu_is_a_cpu_pmu_with_per_cpu_spis() {
        let dtb = board_with_pmu("nvidia,carmel-pmu");
        let d = extract(&Tree::parse(&dtb).expect("parse")).expect("extract");
        let Some(DtPmu::PerCpu(v)) = d.pmu else {
            panic!("no per-CPU PMU: {:?}", d.pmu);
        };
        let got: Vec<(u32, u64)> = v.iter().map(|(i, m)| (i.intid(), *m)).collect();
        assert_eq!(got, [(416, 0x0), (417, 0x100)]);
    }

    #[test]
    fn a_non_cpu_pmu_compatible_is_not_taken_for_the_cpu_pmu() {
        let dtb = board_with_pmu("nvidia,tegra194-pmc");
        let d = extract(&Tree::parse(&dtb).expect("parse")).expect("extract");
        assert_eq!(d.pmu, None);
    }
}
