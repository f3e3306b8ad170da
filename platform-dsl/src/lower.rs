//! Stage 5: a merged, checked board to the plain serde [`model::Board`].
//!
//! [`lower`] drops the spans and computes what the model spells out (INTIDs, NUMA nodes,
//! memory sorted by address, PMU SPIs in CPU boot order).

use miette::{Diagnostic, SourceSpan};
use thiserror::Error;

use crate::decl::{
    BoardDecl, DeviceDecl, EnableMethodKind, IrqDecl, IrqKind, PmuDecl, PmuIrqsDecl, RegDecl,
};
use crate::model::{
    self, Cpu, Device, EnableMethod, FromFirmware, Gic, HypervisorPlacement, Irq, MemoryRegion,
    NumaNode, Pmu, PmuSpi, QuirkRef, Reg, Status, Timer, Topology,
};

/// Lowering failed: the merged board lacks a part the model requires.
///
/// [`crate::decode`] and [`crate::check`] report each of these with a precise span first,
/// so this only happens when `lower` is called on a board that was not checked.
#[derive(Clone, Debug, Error, Diagnostic)]
#[error("board `{board}` has no {what}")]
#[diagnostic(
    code(platform_dsl::incomplete_board),
    help("add the missing node to the board (or, for gic/timer/pmu, to its soc); `cargo xtask boards check FILE.kdl` reports where")
)]
pub struct LowerError {
    /// Board name.
    pub board: String,
    /// The missing part (`gic`, `console`, ...).
    pub what: &'static str,
    /// The board's name in the file.
    #[label("incomplete board")]
    pub span: SourceSpan,
}

/// The PMU's interrupts; per-CPU SPIs in CPU boot order (`check` guarantees one per CPU).
/// The `network` node (or its absence) as the model's [`model::Network`]: an uplink of any
/// kind and one untagged group `default` unless the board says otherwise.
fn network_model(n: Option<&crate::decl::NetworkDecl>) -> model::Network {
    let mut net = model::Network::default();
    if let Some(n) = n {
        if let Some(u) = &n.uplink {
            net.uplink = u.value;
        }
        if !n.port_groups.is_empty() {
            net.port_groups = n
                .port_groups
                .iter()
                .map(|g| model::PortGroup {
                    name: g.name.value.clone(),
                    vlan: g.vlan.as_ref().and_then(|v| u16::try_from(v.value).ok()),
                })
                .collect();
        }
    }
    net
}

fn pmu_model(pmu: &PmuDecl, b: &BoardDecl) -> Pmu {
    match &pmu.irqs {
        PmuIrqsDecl::Ppi(i) => Pmu::Ppi(irq(i)),
        PmuIrqsDecl::PerCpuSpi(spis) => {
            let mut out: Vec<PmuSpi> = spis
                .iter()
                .map(|s| PmuSpi {
                    irq: irq(&s.irq),
                    mpidr: s.cpu.value,
                })
                .collect();
            out.sort_by_key(|s| {
                b.cpu_list()
                    .iter()
                    .position(|c| c.mpidr.value == s.mpidr)
                    .unwrap_or(usize::MAX)
            });
            Pmu::PerCpuSpi(out)
        }
        PmuIrqsDecl::Unavailable(reason) => Pmu::Unavailable {
            reason: reason.value.clone(),
        },
    }
}

/// The distance matrix of a checked board: its `numa-distances` rows, or 10 on the
/// diagonal and 20 elsewhere.
fn numa_distances(b: &BoardDecl) -> Vec<Vec<u8>> {
    use crate::check::{LOCAL_DISTANCE, REMOTE_DISTANCE};
    let n = b.numa_node_count();
    (0..n)
        .map(|from| {
            let row = b
                .numa_distances
                .as_ref()
                .and_then(|d| d.rows.iter().find(|r| r.from.value == from));
            (0..n)
                .map(|to| {
                    let default = if from == to {
                        LOCAL_DISTANCE
                    } else {
                        REMOTE_DISTANCE
                    };
                    let v = row
                        .and_then(|r| r.to.get(to as usize))
                        .map_or(default, |v| v.value);
                    u8::try_from(v).unwrap_or(u8::MAX)
                })
                .collect()
        })
        .collect()
}

/// Lowers a merged (and checked) board to the model.
pub fn lower(b: &BoardDecl) -> Result<model::Board, LowerError> {
    let missing = |what| LowerError {
        board: b.name.value.clone(),
        what,
        span: b.name.span,
    };
    let gic = b.gic.as_ref().ok_or_else(|| missing("gic"))?;
    let timer = b.timer.as_ref().ok_or_else(|| missing("timer"))?;
    let pmu = b.pmu.as_ref().ok_or_else(|| missing("pmu"))?;
    let topology = b.topology.as_ref().ok_or_else(|| missing("topology"))?;
    let hypervisor = b.hypervisor.as_ref().ok_or_else(|| missing("hypervisor"))?;
    let distributor = gic
        .distributor
        .as_ref()
        .ok_or_else(|| missing("GIC distributor"))?;
    let maintenance = gic
        .maintenance
        .as_ref()
        .ok_or_else(|| missing("GIC maintenance-irq"))?;
    if b.memory.is_empty() {
        return Err(missing("memory"));
    }
    if b.cpu_list().is_empty() {
        return Err(missing("cpus"));
    }
    let mut memory: Vec<MemoryRegion> = b
        .memory
        .iter()
        .map(|m| MemoryRegion {
            name: m.name.value.clone(),
            base: m.base.as_ref().map_or(0, |b| b.value),
            size: m.size.as_ref().map_or(0, |s| s.value),
            numa_node: m.node.value,
            from_firmware: match (&m.from_firmware, &m.base) {
                (None, _) => FromFirmware::Nothing,
                (Some(_), Some(_)) => FromFirmware::Size,
                (Some(_), None) => FromFirmware::BaseAndSize,
            },
        })
        .collect();
    memory.sort_by_key(|m| m.base);
    let numa_nodes = (0..b.numa_node_count())
        .map(|id| NumaNode { id, socket: id })
        .collect();
    let numa_distances = numa_distances(b);
    Ok(model::Board {
        name: b.name.value.clone(),
        model: b
            .model
            .as_ref()
            .ok_or_else(|| missing("model"))?
            .value
            .clone(),
        soc: b.soc.as_ref().ok_or_else(|| missing("soc"))?.value.clone(),
        support: b.support.as_ref().ok_or_else(|| missing("support"))?.value,
        verified_by: b
            .verified_by
            .as_ref()
            .ok_or_else(|| missing("verified-by"))?
            .value
            .clone(),
        topology: Topology {
            sockets: topology.sockets.value,
            clusters_per_socket: topology.clusters.value,
            cores_per_cluster: topology.cores.value,
        },
        cpus: b
            .cpu_list()
            .iter()
            .map(|c| Cpu {
                mpidr: c.mpidr.value,
                socket: c.socket.value,
                cluster: c.cluster.value,
                core: c.core.value.clone(),
                enable_method: match (c.enable_method.value, &c.release_addr) {
                    (EnableMethodKind::SpinTable, Some(a)) => EnableMethod::SpinTable {
                        release_addr: a.value,
                    },
                    // `check` refuses spin-table without a release address.
                    _ => EnableMethod::Psci,
                },
            })
            .collect(),
        numa_nodes,
        numa_distances,
        memory,
        hypervisor: HypervisorPlacement {
            load_address: hypervisor.load.as_ref().map(|l| l.value),
            size: hypervisor.size.value,
        },
        gic: Gic {
            version: gic.version.value,
            compatible: gic.compatible.value.clone(),
            distributor: reg(distributor),
            redistributors: gic.redistributors.iter().map(reg).collect(),
            cpu_interface: gic.cpu_interface.as_ref().map(reg),
            hyp_interface: gic.hyp_interface.as_ref().map(reg),
            virtual_cpu_interface: gic.virtual_cpu_interface.as_ref().map(reg),
            its: gic.its.as_ref().map(reg),
            maintenance_irq: irq(maintenance),
            spi_count: gic.spis.value,
        },
        timer: Timer {
            secure_phys: irq(&timer.secure_phys),
            phys: irq(&timer.phys),
            virt: irq(&timer.virt),
            hyp_phys: irq(&timer.hyp_phys),
            hyp_virt: timer.hyp_virt.as_ref().map(irq),
        },
        pmu: pmu_model(pmu, b),
        console: match (&b.console, &b.console_unavailable) {
            (Some(c), _) => Some(c.value.clone()),
            (None, Some(_)) => None,
            (None, None) => return Err(missing("console")),
        },
        console_unavailable: b.console_unavailable.as_ref().map(|r| r.value.clone()),
        devices: b.devices.iter().map(device).collect(),
        network: network_model(b.network.as_ref()),
        stage2_ram_mappings: b
            .stage2
            .as_ref()
            .map_or_else(Default::default, |s| s.ram_mappings.value),
        quirks: b
            .quirks
            .iter()
            .map(|q| QuirkRef {
                name: q.name.value.clone(),
                matches: q.matches.value.clone(),
            })
            .collect(),
        source: model::Source::default(),
    })
}

/// The file name and the line of each part of a merged board written in `text` (see
/// [`model::Source`] for the keys).
pub fn source_lines(b: &BoardDecl, file: &str, text: &str) -> model::Source {
    // Where each line ends, found once: a board with hundreds of parts (an imported DTB)
    // would otherwise count the file's newlines once per part.
    let newlines: Vec<usize> = text
        .bytes()
        .enumerate()
        .filter(|&(_, c)| c == b'\n')
        .map(|(i, _)| i)
        .collect();
    let line = |span: SourceSpan| -> u32 {
        let end = span.offset().min(text.len());
        let before = newlines.partition_point(|&i| i < end);
        u32::try_from(before).unwrap_or(u32::MAX - 1) + 1
    };
    let mut lines: Vec<(String, u32)> = Vec::new();
    let mut add = |key: String, span: SourceSpan| lines.push((key, line(span)));
    add("board".into(), b.name.span);
    if let Some(t) = &b.topology {
        add("topology".into(), t.span);
    }
    if let Some(d) = &b.numa_distances {
        add("numa-distances".into(), d.span);
    }
    if let Some(s) = b.cpus_span {
        add("cpus".into(), s);
    }
    for (i, c) in b.cpu_list().iter().enumerate() {
        add(format!("cpu.{i}"), c.mpidr.span);
    }
    for m in &b.memory {
        add(format!("memory.{}", m.name.value), m.name.span);
    }
    if let Some(h) = &b.hypervisor {
        add("hypervisor".into(), h.span);
    }
    if let Some(s) = &b.stage2 {
        add("stage2".into(), s.span);
    }
    if let Some(c) = b.console.as_ref().or(b.console_unavailable.as_ref()) {
        add("console".into(), c.span);
    }
    if let Some(g) = &b.gic {
        add("gic".into(), g.span);
        if let Some(r) = &g.distributor {
            add("gic.distributor".into(), r.span);
        }
        for (i, r) in g.redistributors.iter().enumerate() {
            add(format!("gic.redistributor.{i}"), r.span);
        }
        for (key, r) in [
            ("gic.its", &g.its),
            ("gic.cpu-interface", &g.cpu_interface),
            ("gic.hyp-interface", &g.hyp_interface),
            ("gic.virtual-cpu-interface", &g.virtual_cpu_interface),
        ] {
            if let Some(r) = r {
                add(key.into(), r.span);
            }
        }
        if let Some(m) = &g.maintenance {
            add("gic.maintenance-irq".into(), m.number.span);
        }
    }
    if let Some(t) = &b.timer {
        add("timer".into(), t.span);
    }
    if let Some(p) = &b.pmu {
        add("pmu".into(), p.span);
    }
    for d in &b.devices {
        add(format!("device.{}", d.name.value), d.name.span);
        for r in &d.regs {
            add(format!("device.{}.reg.{}", d.name.value, r.name), r.span);
        }
    }
    let file = std::path::Path::new(file)
        .file_name()
        .map_or_else(|| file.to_owned(), |f| f.to_string_lossy().into_owned());
    model::Source { file, lines }
}

fn reg(r: &RegDecl) -> Reg {
    Reg {
        name: r.name.clone(),
        base: r.base.value,
        size: r.size.value,
    }
}

/// PPI n is INTID 16 + n, SPI n is INTID 32 + n.
fn irq(i: &IrqDecl) -> Irq {
    let offset = match i.kind {
        IrqKind::Ppi => 16,
        IrqKind::Spi => 32,
    };
    Irq {
        intid: i.number.value.saturating_add(offset),
        trigger: i.trigger,
    }
}

fn device(d: &DeviceDecl) -> Device {
    let okay = d.okay.as_ref().is_none_or(|s| s.value);
    Device {
        name: d.name.value.clone(),
        compatible: d
            .compatible
            .iter()
            .flatten()
            .map(|c| c.value.clone())
            .collect(),
        regs: d.regs.iter().map(reg).collect(),
        irqs: d.irqs.iter().map(irq).collect(),
        status: if okay {
            Status::Okay
        } else {
            Status::Disabled {
                reason: d
                    .reason
                    .as_ref()
                    .map(|r| r.value.clone())
                    .unwrap_or_default(),
            }
        },
        bus_id: d.bus_id.as_ref().map(|b| b.value.clone()),
        clock_hz: d.clock.as_ref().map(|c| c.value),
        dma_coherent: d.dma_coherent.as_ref().is_some_and(|c| c.value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decl::fixtures::{dev, sp};
    use crate::model::Trigger;

    #[test]
    fn spi_and_ppi_numbers_become_intids() {
        let mut d = dev("x");
        assert_eq!(irq(&d.irqs[0]).intid, 33);
        d.irqs[0].kind = IrqKind::Ppi;
        assert_eq!(irq(&d.irqs[0]).intid, 17);
    }

    #[test]
    fn lowering_an_incomplete_board_names_what_is_missing() {
        let board = BoardDecl {
            name: sp("b".to_owned()),
            soc: None,
            model: None,
            support: None,
            verified_by: None,
            topology: None,
            cpus: None,
            cpus_span: None,
            memory: vec![],
            hypervisor: None,
            console: None,
            console_unavailable: None,
            gic: None,
            timer: None,
            pmu: None,
            devices: vec![],
            quirks: vec![],
            network: None,
            stage2: None,
            numa_distances: None,
            written: vec![],
        };
        let err = lower(&board).expect_err("board has nothing");
        assert_eq!(err.what, "gic");
    }

    const PMU_BOARD: &str = include_str!("../tests/valid/minimal.kdl");

    /// The minimal board with `soc` inserted in its SoC and `board` in the board.
    fn lower_with_stage2(soc: &str, board: &str) -> model::Board {
        let text = PMU_BOARD
            .replace("    pmu ppi=7\n", &format!("    pmu ppi=7\n{soc}"))
            .replace(
                "    console \"uart0\"\n",
                &format!("{board}    console \"uart0\"\n"),
            );
        let boards = crate::load_str("stage2.kdl", &text).unwrap_or_else(|e| panic!("{e}"));
        boards[0].clone()
    }

    #[test]
    fn stage2_ram_mappings_default_to_blocks() {
        let b = lower_with_stage2("", "");
        assert_eq!(b.stage2_ram_mappings, model::Stage2RamMappings::Blocks);
        assert_eq!(b.source.line("stage2"), None);
    }

    #[test]
    fn stage2_ram_mappings_come_from_the_board_or_else_its_soc() {
        let pages = "    stage2 ram-mappings=\"pages\"\n";
        let blocks = "    stage2 ram-mappings=\"blocks\"\n";
        let b = lower_with_stage2("", pages);
        assert_eq!(b.stage2_ram_mappings, model::Stage2RamMappings::Pages);
        // Line 27: the board's `stage2`, right before its `console`.
        assert_eq!(b.source.line("stage2"), Some(27));
        let b = lower_with_stage2(pages, "");
        assert_eq!(b.stage2_ram_mappings, model::Stage2RamMappings::Pages);
        assert_eq!(b.source.line("stage2"), Some(10), "the SoC's line");
        // A board's node replaces its SoC's.
        let b = lower_with_stage2(pages, blocks);
        assert_eq!(b.stage2_ram_mappings, model::Stage2RamMappings::Blocks);
        assert_eq!(b.source.line("stage2"), Some(28));
    }

    fn lower_with_pmu(pmu: &str) -> model::Pmu {
        let text = PMU_BOARD.replace("    pmu ppi=7\n", pmu);
        let boards = crate::load_str("pmu.kdl", &text).unwrap_or_else(|e| panic!("{e}"));
        boards[0].pmu.clone()
    }

    #[test]
    fn pmu_ppi_lowers_to_its_intid() {
        assert_eq!(
            lower_with_pmu("    pmu ppi=7\n"),
            model::Pmu::Ppi(Irq {
                intid: 23,
                trigger: Trigger::Level
            })
        );
    }

    #[test]
    fn pmu_per_cpu_spis_are_lowered_in_cpu_boot_order() {
        let pmu = lower_with_pmu(
            "    pmu {\n        irq spi=17 cpu=0x1 trigger=\"edge\"\n        irq spi=16 cpu=0x0\n    }\n",
        );
        assert_eq!(
            pmu,
            model::Pmu::PerCpuSpi(vec![
                PmuSpi {
                    irq: Irq {
                        intid: 48,
                        trigger: Trigger::Level
                    },
                    mpidr: 0x0
                },
                PmuSpi {
                    irq: Irq {
                        intid: 49,
                        trigger: Trigger::Edge
                    },
                    mpidr: 0x1
                },
            ])
        );
    }
}
