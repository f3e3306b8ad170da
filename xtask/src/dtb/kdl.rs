//! KDL board text from the facts of a device tree (docs/boards-kdl.md syntax).

use std::collections::HashSet;
use std::fmt::Write;

use super::extract::{DtBoard, DtIrq, DtPmu};
use platform_dsl::model::{GicVersion, Trigger};

/// 4 KiB: the granule every window is rounded to.
const PAGE: u64 = 0x1000;
/// Size of the hypervisor's placement.
const HV_SIZE: u64 = 0x200_0000;
/// Alignment of the hypervisor's placement.
const HV_ALIGN: u64 = 0x20_0000;

/// `(base, size)` widened to whole 4 KiB pages.
pub fn page_window(base: u64, size: u64) -> (u64, u64) {
    let b = base & !(PAGE - 1);
    let end = base.saturating_add(size.max(1)).saturating_add(PAGE - 1) & !(PAGE - 1);
    (b, end - b)
}

fn hex(v: u64) -> String {
    let digits = format!("{v:x}");
    let mut out = String::new();
    for (k, ch) in digits.chars().enumerate() {
        if k > 0 && (digits.len() - k) % 4 == 0 {
            out.push('_');
        }
        out.push(ch);
    }
    format!("0x{out}")
}

fn q(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn trig(t: Trigger) -> &'static str {
    match t {
        Trigger::Level => "level",
        Trigger::Edge => "edge",
    }
}

fn irq_line(i: &DtIrq) -> String {
    let kind = if i.ppi { "ppi" } else { "spi" };
    format!("irq {kind}={} trigger={}", i.number, q(trig(i.trigger)))
}

fn overlaps(a: (u64, u64), b: (u64, u64)) -> bool {
    a.0 < b.0.saturating_add(b.1) && b.0 < a.0.saturating_add(a.1)
}

/// The KDL text: a `soc "NAME-soc"` and a `board "NAME"`; `dtb_path` is cited as the source.
pub fn generate(d: &DtBoard, name: &str, dtb_path: &str) -> Result<String, String> {
    let mut s = String::new();
    let mut taken: Vec<(u64, u64)> = Vec::new();
    let w = &mut s;
    let _ = writeln!(w, "// Imported by `cargo xtask import-dtb` from {dtb_path}");
    let _ = writeln!(
        w,
        "// (model {:?}). Windows smaller than 4 KiB are widened to the",
        d.model
    );
    let _ = writeln!(
        w,
        "// 4 KiB page holding them; the device-tree value is in the comment."
    );
    let _ = writeln!(w, "soc {} {{", q(&format!("{name}-soc")));
    let g = &d.gic;
    let max_spi = d
        .devices
        .iter()
        .flat_map(|x| x.irqs.iter())
        .chain(match &d.pmu {
            Some(DtPmu::PerCpu(v)) => v.iter().map(|(i, _)| i).collect::<Vec<_>>(),
            _ => Vec::new(),
        })
        .filter(|i| !i.ppi && i.number < 988)
        .map(|i| i.number + 1)
        .max()
        .unwrap_or(0);
    let spis = max_spi.div_ceil(32).max(1) * 32;
    let spis = spis.min(988);
    let _ = writeln!(w, "    // {} {}; spis: the highest SPI the DT uses, rounded up to 32 (not read from hardware)", g.path, g.compatible.join(" "));
    let (ver, compat) = match g.version {
        GicVersion::V2 => (2, g.compatible.first().cloned().unwrap_or_default()),
        GicVersion::V3 => (3, "arm,gic-v3".to_string()),
    };
    let _ = writeln!(
        w,
        "    gic version={ver} compatible={} spis={spis} {{",
        q(&compat)
    );
    let win = |w: &mut String, taken: &mut Vec<(u64, u64)>, kw: &str, r: (u64, u64)| {
        let p = page_window(r.0, r.1);
        taken.push(p);
        let _ = writeln!(
            w,
            "        {kw} {} size={} // DT {} size {}",
            hex(p.0),
            hex(p.1),
            hex(r.0),
            hex(r.1)
        );
    };
    win(w, &mut taken, "distributor", g.distributor);
    match g.version {
        GicVersion::V3 => {
            for r in &g.redistributors {
                win(w, &mut taken, "redistributor", *r);
            }
            if let Some(its) = g.its.first() {
                win(w, &mut taken, "its", *its);
            }
            for extra in g.its.iter().skip(1) {
                let _ = writeln!(
                    w,
                    "        // another ITS at {} size {} (the model holds one)",
                    hex(extra.0),
                    hex(extra.1)
                );
            }
            for (what, r) in [
                ("GICC", g.cpu_interface),
                ("GICH", g.hyp_interface),
                ("GICV", g.virtual_cpu_interface),
            ] {
                if let Some(r) = r {
                    let _ = writeln!(
                        w,
                        "        // {what} (GICv2 compatibility) at {} size {}",
                        hex(r.0),
                        hex(r.1)
                    );
                }
            }
        }
        GicVersion::V2 => {
            let missing = "the DT's GIC lacks the GICC/GICH/GICV windows (reg entries 2-4) the hypervisor needs";
            win(
                w,
                &mut taken,
                "cpu-interface",
                g.cpu_interface.ok_or(missing)?,
            );
            win(
                w,
                &mut taken,
                "hyp-interface",
                g.hyp_interface.ok_or(missing)?,
            );
            win(
                w,
                &mut taken,
                "virtual-cpu-interface",
                g.virtual_cpu_interface.ok_or(missing)?,
            );
        }
    }
    match g.maintenance {
        Some(m) if m.ppi => {
            let _ = writeln!(w, "        maintenance-irq ppi={}", m.number);
        }
        _ => {
            let _ = writeln!(
                w,
                "        maintenance-irq ppi=9 // not in the DT: PPI 9 (INTID 25) assumed"
            );
        }
    }
    let _ = writeln!(w, "    }}");
    match &d.timer {
        Some(t) if t.iter().all(|i| i.ppi) => {
            let hyp_virt = d
                .timer_hyp_virt
                .filter(|i| i.ppi)
                .map_or(String::new(), |i| format!(" hyp-virt={}", i.number));
            let _ = writeln!(
                w,
                "    timer secure-phys={} phys={} virt={} hyp-phys={}{hyp_virt}",
                t[0].number, t[1].number, t[2].number, t[3].number
            );
        }
        _ => {
            let _ = writeln!(w, "    timer secure-phys=13 phys=14 virt=11 hyp-phys=10 // no GIC PPIs in the DT's timer node: the usual PPIs assumed");
        }
    }
    match &d.pmu {
        Some(DtPmu::Ppi(i)) => {
            let _ = writeln!(w, "    pmu ppi={}", i.number);
        }
        Some(DtPmu::PerCpu(v)) if v.len() == d.cpus.len() && v.iter().all(|(i, _)| !i.ppi) => {
            let _ = writeln!(w, "    pmu {{");
            for (i, mpidr) in v {
                let _ = writeln!(
                    w,
                    "        irq spi={} cpu={} trigger={}",
                    i.number,
                    hex(*mpidr),
                    q(trig(i.trigger))
                );
            }
            let _ = writeln!(w, "    }}");
        }
        _ => {
            let _ = writeln!(
                w,
                "    pmu ppi=7 // no usable PMU node in the DT: PPI 7 (INTID 23) assumed"
            );
        }
    }
    let _ = writeln!(w, "}}\n");

    // Memory first, so that device windows inside RAM are caught.
    let mut board = String::new();
    let b = &mut board;
    let _ = writeln!(b, "board {} soc={} {{", q(name), q(&format!("{name}-soc")));
    let _ = writeln!(
        b,
        "    model {}",
        q(if d.model.is_empty() { name } else { &d.model })
    );
    let _ = writeln!(b, "    support \"community\"");
    let _ = writeln!(b, "    verified-by \"dtb\" path={}", q(dtb_path));
    let per_cluster = d.cpus.len() as u32 / d.clusters.max(1);
    let _ = writeln!(
        b,
        "    topology sockets=1 clusters={} cores={per_cluster}",
        d.clusters
    );
    let core0 = d.cpus[0].core.clone();
    let _ = writeln!(b, "    cpus core={} {{", q(&core0));
    for c in &d.cpus {
        let own = if c.core != core0 {
            format!(" core={}", q(&c.core))
        } else {
            String::new()
        };
        let _ = writeln!(b, "        cpu {} cluster={}{own}", hex(c.mpidr), c.cluster);
    }
    let _ = writeln!(b, "    }}");
    if d.memory.is_empty() {
        return Err("the device tree has no memory node with a non-zero size (firmware fills it in at boot); give it with `--memory BASE,SIZE`".into());
    }
    let mut hv = None;
    for (k, m) in d.memory.iter().enumerate() {
        taken.push(*m);
        let _ = writeln!(b, "    memory \"dram{k}\" {} size={}", hex(m.0), hex(m.1));
        let load = m.0.div_ceil(HV_ALIGN) * HV_ALIGN + HV_SIZE;
        if hv.is_none() && load + HV_SIZE <= m.0 + m.1 {
            hv = Some(load);
        }
    }
    let hv = hv.ok_or(
        "no memory region can hold the hypervisor (32 MiB, 2 MiB aligned, above the first 32 MiB)",
    )?;
    let _ = writeln!(
        b,
        "    hypervisor load={} size={} // 32 MiB above the start of RAM, 2 MiB aligned",
        hex(hv),
        hex(HV_SIZE)
    );
    let console = d
        .console
        .ok_or("no enabled UART in the device tree (stdout-path or a serial/uart compatible)")?;

    let mut names = HashSet::new();
    let mut console_name = None;
    let mut devs = String::new();
    for (k, dev) in d.devices.iter().enumerate() {
        let pages: Vec<(u64, u64)> = dev.regs.iter().map(|r| page_window(r.0, r.1)).collect();
        // A device's own windows may share a page: merge those.
        let mut merged: Vec<(u64, u64, usize)> = Vec::new();
        for (j, p) in pages.iter().enumerate() {
            if let Some(m) = merged.iter_mut().find(|m| overlaps((m.0, m.1), *p)) {
                let end = (m.0 + m.1).max(p.0 + p.1);
                m.0 = m.0.min(p.0);
                m.1 = end - m.0;
            } else {
                merged.push((p.0, p.1, j));
            }
        }
        if let Some(clash) = merged
            .iter()
            .find(|m| taken.iter().any(|t| overlaps((m.0, m.1), *t)))
        {
            let _ = writeln!(
                devs,
                "    // skipped {} ({}): its window {} shares a 4 KiB page with an earlier window",
                dev.path,
                dev.compatible.join(" "),
                hex(clash.0)
            );
            continue;
        }
        taken.extend(merged.iter().map(|m| (m.0, m.1)));
        let mut nm = dev.label.clone();
        let mut n = 1;
        while !names.insert(nm.clone()) {
            nm = format!("{}-{n}", dev.label);
            n += 1;
        }
        if k == console {
            console_name = Some(nm.clone());
        }
        let compat: Vec<String> = dev.compatible.iter().map(|c| q(c)).collect();
        let status = if dev.disabled {
            " status=\"disabled\" reason=\"disabled in the upstream device tree\""
        } else {
            ""
        };
        let _ = writeln!(
            devs,
            "    device {} compatible={}{status} {{ // {}",
            q(&nm),
            compat.join(" "),
            dev.path
        );
        let mut used_names = HashSet::new();
        for (base, size, j) in &merged {
            let rn = dev
                .reg_names
                .get(*j)
                .filter(|r| used_names.insert(r.to_string()) && !r.is_empty());
            let named = rn.map(|r| format!(" name={}", q(r))).unwrap_or_default();
            let (db, ds) = dev.regs[*j];
            let _ = writeln!(
                devs,
                "        reg {} size={}{named} // DT {} size {}",
                hex(*base),
                hex(*size),
                hex(db),
                hex(ds)
            );
        }
        for i in &dev.irqs {
            if (i.ppi && i.number < 16) || (!i.ppi && i.number < spis) {
                let _ = writeln!(devs, "        {}", irq_line(i));
            }
        }
        let _ = writeln!(devs, "    }}");
    }
    let console_name = console_name.ok_or_else(|| {
        format!(
            "the console UART {} shares a page with another window and was skipped",
            d.devices[console].path
        )
    })?;
    let _ = writeln!(b, "    console {}", q(&console_name));
    b.push_str(&devs);
    let _ = writeln!(b, "}}");
    s.push_str(&board);
    Ok(s)
}
