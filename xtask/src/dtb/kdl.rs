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

/// The GICv3 Distributor's register frame (Arm IHI 0069).
const GICD_V3_SIZE: u64 = 0x1_0000;

/// GICH and GICV of a GIC-400 whose DT gives only GICD (and GICC): the GIC-400 TRM (Arm DDI
/// 0471, "GIC-400 memory map") fixes them relative to the GIC's base, GICD at +0x1000, GICC
/// at +0x2000 (8 KiB), GICH at +0x4000 (8 KiB: this CPU's block and the per-CPU ones) and
/// GICV at +0x6000 (8 KiB). `None` unless it is a GIC-400 missing them whose GICD (and
/// GICC, when given) sit where that map puts them.
fn gic400_windows(g: &super::extract::DtGic) -> Option<((u64, u64), (u64, u64))> {
    if !g.compatible.iter().any(|c| c == "arm,gic-400")
        || (g.hyp_interface.is_some() && g.virtual_cpu_interface.is_some())
    {
        return None;
    }
    let base = g.distributor.0.checked_sub(0x1000)?;
    if base % 0x8000 != 0 || g.cpu_interface.is_some_and(|c| c.0 != base + 0x2000) {
        return None;
    }
    Some(((base + 0x4000, 0x2000), (base + 0x6000, 0x2000)))
}

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
    // Every window written so far, with what it is (for the comment on a skipped device).
    let mut taken: Vec<(u64, u64, String)> = Vec::new();
    let w = &mut s;
    let _ = writeln!(w, "// Imported by `cargo xtask import-dtb` from {dtb_path}");
    let _ = writeln!(
        w,
        "// (model {:?}). GIC windows are widened to the 4 KiB pages holding them",
        d.model
    );
    let _ = writeln!(
        w,
        "// (the device-tree value is in the comment); device windows are the DT's own."
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
    let win = |w: &mut String, taken: &mut Vec<(u64, u64, String)>, kw: &str, r: (u64, u64)| {
        let p = page_window(r.0, r.1);
        taken.push((p.0, p.1, format!("the GIC {kw} (in whole 4 KiB pages)")));
        let _ = writeln!(
            w,
            "        {kw} {} size={} // DT {} size {}",
            hex(p.0),
            hex(p.1),
            hex(r.0),
            hex(r.1)
        );
    };
    // GICv3: the Distributor's registers are one 64 KiB frame (Arm IHI 0069, "The GIC
    // Distributor register map": GICD_CTLR at 0x0000 .. the ID registers at 0xFFD0). A DT
    // whose `reg` gives it more, over its own ITS or redistributors (TI J721S2: 1 MiB over
    // the ITS at +0x2_0000), is given that frame.
    let distributor = match g.version {
        GicVersion::V3
            if g.distributor.1 > GICD_V3_SIZE
                && g.its
                    .iter()
                    .chain(&g.redistributors)
                    .any(|r| overlaps(*r, g.distributor)) =>
        {
            let _ = writeln!(
                w,
                "        // the DT's distributor size {} covers its ITS/redistributors: the GICv3 GICD frame is 64 KiB (Arm IHI 0069)",
                hex(g.distributor.1)
            );
            (g.distributor.0, GICD_V3_SIZE)
        }
        _ => g.distributor,
    };
    win(w, &mut taken, "distributor", distributor);
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
            let derived = gic400_windows(g);
            if derived.is_some() {
                let _ = writeln!(
                    w,
                    "        // the DT gives only GICD and GICC; a GIC-400's GICH and GICV are at fixed offsets from its base (Arm GIC-400 TRM, DDI 0471, \"GIC-400 memory map\": GICD +0x1000, GICC +0x2000, GICH +0x4000, GICV +0x6000)"
                );
            }
            let (hyp, vcpu) = match derived {
                Some((h, v)) => (Some(h), Some(v)),
                None => (g.hyp_interface, g.virtual_cpu_interface),
            };
            let missing = "the DT's GIC lacks the GICH/GICV windows (reg entries 3-4) and is not a GIC-400 whose map fixes them: without them the hypervisor cannot run VMs (no virtual CPU interface)";
            win(
                w,
                &mut taken,
                "cpu-interface",
                g.cpu_interface.ok_or(missing)?,
            );
            win(w, &mut taken, "hyp-interface", hyp.ok_or(missing)?);
            win(w, &mut taken, "virtual-cpu-interface", vcpu.ok_or(missing)?);
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
    // RAM: the DT's sized regions as they are; a memory node of size 0 (its base known,
    // the firmware fills in the size at boot) and a DT without any memory node (the
    // firmware adds it) become `from="firmware"`: the hypervisor takes RAM from the device
    // tree or UEFI memory map its loader passes, and refuses to start without one.
    let mut hv = None;
    for (k, m) in d.memory.iter().enumerate() {
        taken.push((m.0, m.1, "RAM".into()));
        let _ = writeln!(
            b,
            "    memory \"dram{k}\" {} size={} // DT device_type \"memory\" reg",
            hex(m.0),
            hex(m.1)
        );
        let load = m.0.div_ceil(HV_ALIGN) * HV_ALIGN + HV_SIZE;
        if hv.is_none() && load + HV_SIZE <= m.0 + m.1 {
            hv = Some((load, "32 MiB above the start of RAM, 2 MiB aligned"));
        }
    }
    let mut firmware_base = false;
    for (k, (path, base)) in d.memory_unsized.iter().enumerate() {
        let k = d.memory.len() + k;
        let _ = writeln!(
            b,
            "    memory \"dram{k}\" {} from=\"firmware\" // DT {path}: reg base {}, size 0 (the firmware fills it in at boot)",
            hex(*base),
            hex(*base)
        );
        if hv.is_none() {
            let load = base.div_ceil(HV_ALIGN) * HV_ALIGN + HV_SIZE;
            hv = Some((
                load,
                "32 MiB above the DT's RAM base, 2 MiB aligned; the firmware's RAM must reach its end, which the hypervisor checks at boot",
            ));
        }
    }
    if d.memory.is_empty() && d.memory_unsized.is_empty() {
        firmware_base = true;
        let _ = writeln!(
            b,
            "    memory \"dram0\" from=\"firmware\" // the DT has no memory node: the firmware adds it at boot"
        );
    }
    match hv {
        Some((load, why)) => {
            let _ = writeln!(
                b,
                "    hypervisor load={} size={} // {why}",
                hex(load),
                hex(HV_SIZE)
            );
        }
        None if firmware_base => {
            let _ = writeln!(
                b,
                "    hypervisor size={} // no load=: the RAM base is known only at boot; the Image relocates itself",
                hex(HV_SIZE)
            );
        }
        None => {
            return Err(
                "no memory region can hold the hypervisor (32 MiB, 2 MiB aligned, above the first 32 MiB)"
                    .into(),
            )
        }
    }
    // No UART the hypervisor could drive (a phone's DT disables every one): the board is
    // described headless, saying why (`console unavailable=`).
    let console = d.console;

    let mut names = HashSet::new();
    let mut console_name = None;
    let mut clash_of_console = None;
    // A bus node whose window holds windows of its own children (Amlogic's bus@c8100000,
    // i.MX's spba-bus) is described by those children. Enabled devices are taken first, so
    // that a disabled node at the same address as an enabled one (Qualcomm's GENI serial
    // engines: one i2c, spi and serial node each, one enabled) is the one left out.
    let is_bus = |k: usize| {
        let dev = &d.devices[k];
        let prefix = format!("{}/", dev.path);
        d.devices.iter().any(|c| {
            c.path.starts_with(&prefix)
                && c.regs
                    .iter()
                    .any(|r| dev.regs.iter().any(|p| overlaps(*p, *r)))
        })
    };
    // The console first of all: where its window overlaps another device's (Armada 37xx's
    // UART clock control register at serial@12000 + 0x10), the console is the one kept.
    let order: Vec<usize> = console
        .into_iter()
        .chain((0..d.devices.len()).filter(|&k| Some(k) != console && !d.devices[k].disabled))
        .chain((0..d.devices.len()).filter(|&k| Some(k) != console && d.devices[k].disabled))
        .collect();
    let mut texts = vec![String::new(); d.devices.len()];
    for k in order {
        let dev = &d.devices[k];
        let devs = &mut texts[k];
        if is_bus(k) {
            let _ = writeln!(
                devs,
                "    // left out {} ({}): its window holds its children's windows, which are described instead",
                dev.path,
                dev.compatible.join(" ")
            );
            continue;
        }
        // Exact windows (a device window need not be page aligned: the hypervisor maps the
        // pages that cover it; passing a device through checks that its pages are its own).
        // Windows of size 0 say nothing; a device's own windows that overlap are merged.
        let mut merged: Vec<(u64, u64, usize)> = Vec::new();
        for (j, r) in dev.regs.iter().enumerate() {
            if r.1 == 0 {
                continue;
            }
            if let Some(m) = merged.iter_mut().find(|m| overlaps((m.0, m.1), *r)) {
                let end = (m.0 + m.1).max(r.0.saturating_add(r.1));
                m.0 = m.0.min(r.0);
                m.1 = end - m.0;
            } else {
                merged.push((r.0, r.1, j));
            }
        }
        if merged.is_empty() {
            let _ = writeln!(
                devs,
                "    // skipped {} ({}): every reg entry has size 0",
                dev.path,
                dev.compatible.join(" ")
            );
            continue;
        }
        if let Some((clash, with)) = merged.iter().find_map(|m| {
            taken
                .iter()
                .find(|t| overlaps((m.0, m.1), (t.0, t.1)))
                .map(|t| (m, t))
        }) {
            let _ = writeln!(
                devs,
                "    // skipped {} ({}): its window {} size {} overlaps {} [{}, +{}]",
                dev.path,
                dev.compatible.join(" "),
                hex(clash.0),
                hex(clash.1),
                with.2,
                hex(with.0),
                hex(with.1)
            );
            if Some(k) == console {
                clash_of_console = Some(format!(
                    "the console UART {}'s window {} size {} overlaps {} [{}, +{}]",
                    dev.path,
                    hex(clash.0),
                    hex(clash.1),
                    with.2,
                    hex(with.0),
                    hex(with.1)
                ));
            }
            continue;
        }
        taken.extend(
            merged
                .iter()
                .map(|m| (m.0, m.1, format!("{} reg", dev.path))),
        );
        let mut nm = dev.label.clone();
        let mut n = 1;
        while !names.insert(nm.clone()) {
            nm = format!("{}-{n}", dev.label);
            n += 1;
        }
        if Some(k) == console {
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
    let devs = texts.concat();
    match console {
        Some(k) => {
            let console_name = console_name.ok_or_else(|| {
                clash_of_console.unwrap_or_else(|| {
                    format!(
                        "the console UART {} has no window of non-zero size",
                        d.devices[k].path
                    )
                })
            })?;
            let _ = writeln!(b, "    console {}", q(&console_name));
        }
        None => {
            let _ = writeln!(
                b,
                "    console unavailable={}",
                q(&format!("no console UART: {}", d.no_console))
            );
        }
    }
    b.push_str(&devs);
    let _ = writeln!(b, "}}");
    s.push_str(&board);
    Ok(s)
}

#[cfg(test)]
mod tests {
    /// A GIC-400 board as many vendor DTBs are: GICD and GICC only, RAM filled in by the
    /// firmware (`memory` of size 0 at 0x8000_0000, or no memory node at all), a bus whose
    /// window holds its children's, and two 16550s 0x100 apart in one 4 KiB page.
    fn board(memory: Option<u64>, uart_status: &str) -> Vec<u8> {
        let mut w = vm_fdt::FdtWriter::new().expect("fdt writer");
        let root = w.begin_node("").expect("root");
        w.property_string("model", "Test board").expect("prop");
        w.property_u32("#address-cells", 2).expect("prop");
        w.property_u32("#size-cells", 2).expect("prop");
        w.property_u32("interrupt-parent", 1).expect("prop");
        let cpus = w.begin_node("cpus").expect("cpus");
        w.property_u32("#address-cells", 1).expect("prop");
        w.property_u32("#size-cells", 0).expect("prop");
        for mpidr in [0x0u32, 0x1] {
            let c = w.begin_node(&format!("cpu@{mpidr:x}")).expect("cpu");
            w.property_string("device_type", "cpu").expect("prop");
            w.property_string("compatible", "arm,cortex-a53")
                .expect("prop");
            w.property_u32("reg", mpidr).expect("prop");
            w.end_node(c).expect("end");
        }
        w.end_node(cpus).expect("end");
        if let Some(base) = memory {
            let m = w.begin_node(&format!("memory@{base:x}")).expect("memory");
            w.property_string("device_type", "memory").expect("prop");
            w.property_array_u64("reg", &[base, 0]).expect("prop");
            w.end_node(m).expect("end");
        }
        let gic = w.begin_node("interrupt-controller@f1001000").expect("gic");
        w.property_string("compatible", "arm,gic-400")
            .expect("prop");
        w.property_null("interrupt-controller").expect("prop");
        w.property_u32("#interrupt-cells", 3).expect("prop");
        w.property_array_u64("reg", &[0xf100_1000, 0x1000, 0xf100_2000, 0x2000])
            .expect("prop");
        w.property_u32("phandle", 1).expect("prop");
        w.end_node(gic).expect("end");
        let bus = w.begin_node("bus@c8100000").expect("bus");
        w.property_string("compatible", "simple-bus").expect("prop");
        w.property_array_u64("reg", &[0xc810_0000, 0x10_0000])
            .expect("prop");
        w.property_u32("#address-cells", 2).expect("prop");
        w.property_u32("#size-cells", 2).expect("prop");
        w.property_null("ranges").expect("prop");
        for (k, at) in [0xc810_04c0u64, 0xc810_05c0].into_iter().enumerate() {
            let u = w.begin_node(&format!("serial@{at:x}")).expect("uart");
            w.property_string("compatible", "ns16550a").expect("prop");
            w.property_array_u64("reg", &[at, 0x18]).expect("prop");
            w.property_array_u32("interrupts", &[0, 26 + k as u32, 4])
                .expect("prop");
            w.property_string("status", uart_status).expect("prop");
            w.end_node(u).expect("end");
        }
        w.end_node(bus).expect("end");
        w.end_node(root).expect("end");
        w.finish().expect("finish")
    }

    #[test]
    fn firmware_ram_unaligned_uarts_and_a_gic400_without_gich_import_and_validate() {
        // `import` validates the text with platform_dsl::load_str, as `boards check` does.
        let text = super::super::import(&board(Some(0x8000_0000), "okay"), "t", "t.dtb", None)
            .unwrap_or_else(|e| panic!("{e}"));
        for want in [
            "memory \"dram0\" 0x8000_0000 from=\"firmware\" // DT /memory@80000000",
            "hypervisor load=0x8200_0000 size=0x200_0000",
            "hyp-interface 0xf100_4000 size=0x2000",
            "virtual-cpu-interface 0xf100_6000 size=0x2000",
            "GIC-400 TRM",
            "reg 0xc810_04c0 size=0x18",
            "reg 0xc810_05c0 size=0x18",
            "left out /bus@c8100000 (simple-bus): its window holds its children's",
        ] {
            assert!(text.contains(want), "missing {want:?} in:\n{text}");
        }
        let boards = platform_dsl::load_str("t.kdl", &text).expect("validates");
        let b = &boards[0];
        assert_eq!(
            b.memory[0].from_firmware,
            platform_dsl::model::FromFirmware::Size
        );
        // Sharing a page is fine to describe, never to pass through.
        use vm_config::BoardFacts;
        assert!(matches!(
            b.device("serial-c81005c0"),
            Some(vm_config::DeviceUse::SharesPage {
                page: 0xc810_0000,
                ..
            })
        ));
    }

    #[test]
    fn no_memory_node_means_base_and_size_from_the_firmware_and_no_load_address() {
        let text = super::super::import(&board(None, "okay"), "t", "t.dtb", None)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            text.contains("memory \"dram0\" from=\"firmware\""),
            "{text}"
        );
        assert!(
            text.contains("    hypervisor size=0x200_0000 // no load="),
            "{text}"
        );
        let boards = platform_dsl::load_str("t.kdl", &text).expect("validates");
        assert_eq!(boards[0].hypervisor.load_address, None);
    }

    #[test]
    fn a_dt_whose_uarts_are_all_disabled_gives_a_board_without_console_saying_why() {
        let text = super::super::import(&board(None, "disabled"), "t", "t.dtb", None)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            text.contains("    console unavailable=\"no console UART: every UART node of the device tree (2) is status = \\\"disabled\\\"\""),
            "{text}"
        );
        let boards = platform_dsl::load_str("t.kdl", &text).expect("validates");
        assert_eq!(boards[0].console, None);
        assert_eq!(
            boards[0].console_unavailable.as_deref(),
            Some(
                "no console UART: every UART node of the device tree (2) is status = \"disabled\""
            )
        );
        assert!(boards[0].console_device().is_none());
    }
}
