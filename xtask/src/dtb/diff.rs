//! Differences between a board of boards.kdl and the facts of its upstream device tree.

use super::extract::{DtBoard, DtIrq, DtPmu};
use super::kdl::page_window;
use platform_dsl::model::{Board, GicVersion, Irq, Pmu, Reg, Status};

/// One difference: a path naming the fact (`gic/distributor`, `device uart0/irqs`) and what differs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Difference {
    /// What fact, e.g. `memory` or `device uart0/regs`.
    pub path: String,
    /// Board value vs DT value.
    pub detail: String,
}

fn same_window(r: &Reg, dt: (u64, u64)) -> bool {
    (r.base, r.size) == dt || (r.base, r.size) == page_window(dt.0, dt.1)
}

fn show(r: Option<(u64, u64)>) -> String {
    r.map(|(b, s)| format!("{b:#x} size {s:#x}"))
        .unwrap_or_else(|| "none".into())
}

fn irq_key(i: &DtIrq) -> (u32, platform_dsl::model::Trigger) {
    (i.intid(), i.trigger)
}

fn model_irq(i: &Irq) -> (u32, platform_dsl::model::Trigger) {
    (i.intid, i.trigger)
}

/// Every difference between `b` and `d`.
pub fn diff(b: &Board, d: &DtBoard) -> Vec<Difference> {
    let mut out = Vec::new();
    let mut add = |path: &str, detail: String| {
        out.push(Difference {
            path: path.into(),
            detail,
        })
    };
    let mut bm: Vec<u64> = b.cpus.iter().map(|c| c.mpidr).collect();
    let mut dm: Vec<u64> = d.cpus.iter().map(|c| c.mpidr).collect();
    bm.sort();
    dm.sort();
    if bm != dm {
        add("cpus", format!("board MPIDRs {bm:x?}, DT {dm:x?}"));
    }
    // Sized regions against the DT's sized ones; a region the firmware sizes against the
    // bases of the DT's memory nodes of size 0 (one whose base the firmware gives, against
    // a DT without either).
    let mut mem: Vec<(u64, u64)> = b
        .memory
        .iter()
        .filter_map(|m| m.known_size().map(|s| (m.base, s)))
        .collect();
    mem.sort();
    let mut fw_bases: Vec<u64> = b
        .memory
        .iter()
        .filter(|m| m.known_size().is_none())
        .filter_map(|m| m.known_base())
        .collect();
    fw_bases.sort();
    let dt_bases: Vec<u64> = d.memory_unsized.iter().map(|m| m.1).collect();
    let fw_only = b.memory.iter().all(|m| m.known_base().is_none());
    let same = if fw_only {
        d.memory.is_empty() && d.memory_unsized.is_empty()
    } else {
        mem == d.memory && fw_bases == dt_bases
    };
    if !same {
        let board: Vec<String> = b
            .memory
            .iter()
            .map(|m| match (m.known_base(), m.known_size()) {
                (Some(base), Some(size)) => format!("{base:#x} size {size:#x}"),
                (Some(base), None) => format!("{base:#x} size from the firmware"),
                _ => "base and size from the firmware".into(),
            })
            .collect();
        add(
            "memory",
            format!(
                "board [{}], DT {:x?} (of size 0: {dt_bases:x?})",
                board.join(", "),
                d.memory
            ),
        );
    }
    let g = &b.gic;
    if g.version != d.gic.version {
        add(
            "gic/version",
            format!(
                "board {:?}, DT {:?} ({})",
                g.version,
                d.gic.version,
                d.gic.compatible.join(" ")
            ),
        );
    }
    if !d.gic.compatible.contains(&g.compatible) {
        add(
            "gic/compatible",
            format!("board {}, DT {}", g.compatible, d.gic.compatible.join(" ")),
        );
    }
    let mut win = |path: &str, r: Option<&Reg>, dt: Option<(u64, u64)>| match (r, dt) {
        (Some(r), Some(dt)) if same_window(r, dt) => {}
        (None, None) => {}
        (r, dt) => add(
            path,
            format!(
                "board {}, DT {}",
                show(r.map(|r| (r.base, r.size))),
                show(dt)
            ),
        ),
    };
    win(
        "gic/distributor",
        Some(&g.distributor),
        Some(d.gic.distributor),
    );
    if g.version == GicVersion::V2 {
        win(
            "gic/cpu-interface",
            g.cpu_interface.as_ref(),
            d.gic.cpu_interface,
        );
        win(
            "gic/hyp-interface",
            g.hyp_interface.as_ref(),
            d.gic.hyp_interface,
        );
        win(
            "gic/virtual-cpu-interface",
            g.virtual_cpu_interface.as_ref(),
            d.gic.virtual_cpu_interface,
        );
    } else {
        let n = g.redistributors.len().max(d.gic.redistributors.len());
        for k in 0..n {
            win(
                &format!("gic/redistributor{k}"),
                g.redistributors.get(k),
                d.gic.redistributors.get(k).copied(),
            );
        }
        let its = g
            .its
            .as_ref()
            .map(|r| d.gic.its.iter().any(|dt| same_window(r, *dt)));
        if its == Some(false) || (g.its.is_none() && !d.gic.its.is_empty()) {
            win("gic/its", g.its.as_ref(), d.gic.its.first().copied());
        }
    }
    let maint = d.gic.maintenance.map(|m| m.intid());
    if maint != Some(g.maintenance_irq.intid) {
        add(
            "gic/maintenance-irq",
            format!("board INTID {}, DT {maint:?}", g.maintenance_irq.intid),
        );
    }
    match &d.timer {
        Some(t) => {
            let bt = [
                b.timer.secure_phys.intid,
                b.timer.phys.intid,
                b.timer.virt.intid,
                b.timer.hyp_phys.intid,
            ];
            let dt = [t[0].intid(), t[1].intid(), t[2].intid(), t[3].intid()];
            if bt != dt {
                add("timer", format!("board INTIDs {bt:?}, DT {dt:?}"));
            }
            let board_hv = b.timer.hyp_virt.map(|i| i.intid);
            let dt_hv = d.timer_hyp_virt.map(|i| i.intid());
            if board_hv != dt_hv {
                add(
                    "timer/hyp-virt",
                    format!("board EL2 virtual timer {board_hv:?}, DT {dt_hv:?}"),
                );
            }
        }
        None => add(
            "timer",
            "no arm,armv8-timer node with GIC PPIs in the DT".into(),
        ),
    }
    let dt_pmu: Option<Vec<(u32, u64)>> = d.pmu.as_ref().map(|p| match p {
        DtPmu::Ppi(i) => vec![(i.intid(), u64::MAX)],
        DtPmu::PerCpu(v) => v.iter().map(|(i, m)| (i.intid(), *m)).collect(),
    });
    let b_pmu: Vec<(u32, u64)> = match &b.pmu {
        Pmu::Ppi(i) => vec![(i.intid, u64::MAX)],
        Pmu::PerCpuSpi(v) => v.iter().map(|s| (s.irq.intid, s.mpidr)).collect(),
        // No interrupt the hypervisor can take: differs from any DT that gives one (the
        // board's reason says why; boards-diff-explained.toml says it again for the diff).
        Pmu::Unavailable { .. } => Vec::new(),
    };
    if dt_pmu.as_ref() != Some(&b_pmu) {
        add(
            "pmu",
            format!("board (INTID, MPIDR) {b_pmu:x?}, DT {dt_pmu:x?}"),
        );
    }
    // Console.
    let b_console = b.console_device();
    let d_console = d.console.map(|k| &d.devices[k]);
    match (b_console, d_console) {
        (Some(bc), Some(dc)) => {
            let same = bc
                .regs
                .first()
                .is_some_and(|r| dc.regs.first().is_some_and(|w| same_window(r, *w)));
            if !same {
                add(
                    "console",
                    format!(
                        "board `{}` at {}, DT stdout {} at {}",
                        bc.name,
                        show(bc.regs.first().map(|r| (r.base, r.size))),
                        dc.path,
                        show(dc.regs.first().copied())
                    ),
                );
            }
        }
        // A board without a console says so (`console unavailable=`) as the DT does.
        (None, None) if b.console_unavailable.is_some() => {}
        (_, None) => add(
            "console",
            "the DT names no console and has no enabled UART".into(),
        ),
        (None, _) => {}
    }
    // Devices by compatible and address.
    for dev in &b.devices {
        if dev.regs.is_empty() {
            continue;
        }
        let by_compat: Vec<_> = d
            .devices
            .iter()
            .filter(|x| x.compatible.iter().any(|c| dev.compatible.contains(c)))
            .collect();
        let found = by_compat
            .iter()
            .find(|x| {
                x.regs.iter().any(|w| {
                    dev.regs
                        .iter()
                        .any(|r| same_window(r, *w) || (r.base <= w.0 && w.0 < r.base + r.size))
                })
            })
            .copied();
        let path = format!("device {}", dev.name);
        let Some(x) = found else {
            let near: Vec<String> = by_compat
                .iter()
                .map(|x| format!("{} at {}", x.path, show(x.regs.first().copied())))
                .collect();
            add(
                &path,
                format!(
                    "no DT node with compatible {:?} at {}{}",
                    dev.compatible,
                    show(dev.regs.first().map(|r| (r.base, r.size))),
                    if near.is_empty() {
                        String::new()
                    } else {
                        format!(" (same compatible: {})", near.join(", "))
                    }
                ),
            );
            continue;
        };
        let regs_ok = dev.regs.len() <= x.regs.len().max(1)
            && dev
                .regs
                .iter()
                .all(|r| x.regs.iter().any(|w| same_window(r, *w)));
        if !regs_ok {
            let br: Vec<String> = dev
                .regs
                .iter()
                .map(|r| show(Some((r.base, r.size))))
                .collect();
            let dr: Vec<String> = x.regs.iter().map(|r| show(Some(*r))).collect();
            add(
                &format!("{path}/regs"),
                format!(
                    "board [{}], DT {} [{}]",
                    br.join(", "),
                    x.path,
                    dr.join(", ")
                ),
            );
        }
        let mut bi: Vec<_> = dev.irqs.iter().map(model_irq).collect();
        let mut di: Vec<_> = x.irqs.iter().map(irq_key).collect();
        bi.sort_by_key(|k| k.0);
        bi.dedup();
        di.sort_by_key(|k| k.0);
        di.dedup();
        if bi != di {
            add(
                &format!("{path}/irqs"),
                format!("board (INTID, trigger) {bi:?}, DT {} {di:?}", x.path),
            );
        }
        if matches!(dev.status, Status::Okay) && x.disabled {
            add(
                &format!("{path}/status"),
                format!("board okay, DT {} disabled", x.path),
            );
        }
    }
    out
}
