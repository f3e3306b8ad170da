//! The firmware's tables against the board's KDL: each disagreement is a [`Finding`] naming
//! the KDL file and line and the ACPI value.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use super::{AcpiInfo, Gicc};
use crate::platform::{BoardDesc, DeviceDesc, FromFirmware, GicVersion, RegDesc, Trigger};

/// MPIDR affinity bits (Aff3 39:32, Aff2..Aff0 23:0).
const MPIDR_AFFINITY: u64 = 0xff_00ff_ffff;

/// How bad a difference is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Going on is safe; the difference is reported.
    Warn,
    /// Going on would drive hardware at the wrong address: the boot must stop.
    Refuse,
}

/// One difference between the board's KDL and the firmware's tables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// Refuse or warn.
    pub severity: Severity,
    /// The KDL part it is about (a [`crate::platform::SourceDesc`] key, e.g.
    /// `gic.distributor`).
    pub key: String,
    /// The whole message: `FILE:LINE what the KDL says, but what the firmware says: what
    /// happens`.
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tag = match self.severity {
            Severity::Warn => "warning",
            Severity::Refuse => "error",
        };
        write!(f, "{tag}: {}", self.message)
    }
}

/// What refusing or warning does, at the end of each message.
const REFUSING: &str = "refusing to start; fix the board KDL or pick the right board";

struct Out<'b> {
    board: &'b BoardDesc,
    findings: Vec<Finding>,
}

impl Out<'_> {
    fn push(&mut self, severity: Severity, key: &str, what: fmt::Arguments<'_>) {
        let at = self.board.source.locate(key);
        let message = match severity {
            Severity::Refuse => format!("{at} {what}: {REFUSING}"),
            Severity::Warn => format!("{at} {what}"),
        };
        self.findings.push(Finding {
            severity,
            key: key.into(),
            message,
        });
    }
    fn refuse(&mut self, key: &str, what: fmt::Arguments<'_>) {
        self.push(Severity::Refuse, key, what);
    }
    fn warn(&mut self, key: &str, what: fmt::Arguments<'_>) {
        self.push(Severity::Warn, key, what);
    }
}

/// Compares the firmware's tables with the board: a [`Severity::Refuse`] finding for each
/// difference that makes going on unsafe (GIC distributor base or version, a redistributor
/// region one side lacks, GICv2 CPU/hypervisor interface bases, the console's base), a
/// [`Severity::Warn`] for the rest (CPUs, timer and PMU interrupts, the maintenance
/// interrupt, ITS, PCIe ECAM, NUMA, topology). Tables the firmware does not have are not
/// compared (a warning says so).
pub fn check(board: &BoardDesc, info: &AcpiInfo) -> Vec<Finding> {
    let mut out = Out {
        board,
        findings: Vec::new(),
    };
    gic(&mut out, info);
    cpus(&mut out, info);
    timer(&mut out, info);
    console(&mut out, info);
    ecam(&mut out, info);
    numa(&mut out, info);
    topology(&mut out, info);
    out.findings
}

fn overlaps(a_base: u64, a_len: u64, b_base: u64, b_len: u64) -> bool {
    a_base < b_base.saturating_add(b_len) && b_base < a_base.saturating_add(a_len)
}

fn contains(outer: &RegDesc, base: u64, len: u64) -> bool {
    base >= outer.base && base.saturating_add(len) <= outer.base.saturating_add(outer.size)
}

fn gic(out: &mut Out<'_>, info: &AcpiInfo) {
    let g = out.board.gic;
    let madt = &info.madt;
    let Some(gicd) = madt.gicd else {
        out.refuse(
            "gic.distributor",
            format_args!(
                "gic distributor {:#x}, but the firmware's MADT has no GICD",
                g.distributor.base
            ),
        );
        return;
    };
    if madt.gicd_count > 1 {
        out.refuse(
            "gic.distributor",
            format_args!(
                "gic distributor {:#x}, but the firmware's MADT has {} GICD structures (one is allowed)",
                g.distributor.base, madt.gicd_count
            ),
        );
    }
    if gicd.base != g.distributor.base {
        out.refuse(
            "gic.distributor",
            format_args!(
                "gic distributor {:#x}, but the firmware's MADT says GICD at {:#x}",
                g.distributor.base, gicd.base
            ),
        );
    }
    let kdl_version = match g.version {
        GicVersion::V2 => 2,
        GicVersion::V3 => 3,
    };
    let compatible = match (g.version, gicd.version) {
        (_, 0) => {
            out.warn(
                "gic",
                format_args!(
                    "gic version={kdl_version}, but the firmware's MADT GICD does not give a \
                     version: not checked"
                ),
            );
            true
        }
        (GicVersion::V2, 2) | (GicVersion::V3, 3 | 4) => true,
        _ => false,
    };
    if !compatible {
        out.refuse(
            "gic",
            format_args!(
                "gic version={kdl_version}, but the firmware's MADT says GICv{}",
                gicd.version
            ),
        );
    }
    match g.version {
        GicVersion::V3 => redistributors(out, info),
        GicVersion::V2 => gicv2_interfaces(out, info),
    }
    // The maintenance interrupt and the ITS are only warned about: a wrong maintenance
    // PPI stalls guests' interrupts, it does not touch the wrong hardware.
    let maint = g.maintenance_irq.intid;
    if let Some(c) = madt
        .cpus
        .iter()
        .find(|c| c.present() && c.maintenance_gsiv != 0 && c.maintenance_gsiv != maint)
    {
        out.warn(
            "gic.maintenance-irq",
            format_args!(
                "gic maintenance interrupt INTID {maint}, but the firmware's MADT gives CPU \
                 {:#x} VGIC maintenance GSIV {}",
                c.mpidr, c.maintenance_gsiv
            ),
        );
    }
    if let Some(its) = g.its {
        if !madt.its.is_empty() && !madt.its.iter().any(|i| i.base == its.base) {
            out.warn(
                "gic.its",
                format_args!(
                    "gic its {:#x}, but the firmware's MADT lists ITSes at {}",
                    its.base,
                    list(madt.its.iter().map(|i| i.base))
                ),
            );
        }
    }
}

/// `0x1, 0x2` for a list of addresses.
fn list(values: impl Iterator<Item = u64>) -> String {
    let mut s = String::new();
    for (i, v) in values.enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        s.push_str(&format!("{v:#x}"));
    }
    s
}

/// GICv3: every MADT redistributor range (or each CPU's GICR base when the MADT has no
/// GICR structures) must lie in a KDL region, and every KDL region must hold one: the
/// host driver walks each KDL region frame by frame, so a region the firmware lacks would
/// be read where there is no redistributor, and one the KDL lacks leaves CPUs without one.
fn redistributors(out: &mut Out<'_>, info: &AcpiInfo) {
    let regions = out.board.gic.redistributors;
    let madt = &info.madt;
    // (base, length, what) of each firmware range.
    let mut ranges: Vec<(u64, u64, String)> = madt
        .gicr
        .iter()
        .map(|r| {
            (
                r.base,
                u64::from(r.length),
                format!("GICR range {:#x}+{:#x}", r.base, r.length),
            )
        })
        .collect();
    if ranges.is_empty() {
        // Per-CPU GICR bases: one redistributor, two 64 KiB frames.
        ranges = madt
            .cpus
            .iter()
            .filter(|c| c.present() && c.gicr_base != 0)
            .map(|c| {
                (
                    c.gicr_base,
                    0x2_0000,
                    format!("GICR {:#x} of CPU {:#x}", c.gicr_base, c.mpidr),
                )
            })
            .collect();
    }
    if ranges.is_empty() {
        out.refuse(
            "gic",
            format_args!(
                "gic version=3 with {} redistributor region(s), but the firmware's MADT \
                 describes no redistributors",
                regions.len()
            ),
        );
        return;
    }
    for (base, len, what) in &ranges {
        if !regions.iter().any(|r| contains(r, *base, *len)) {
            let key = if regions.is_empty() {
                String::from("gic")
            } else {
                format!("gic.redistributor.{}", regions.len() - 1)
            };
            out.refuse(
                &key,
                format_args!(
                    "gic has redistributor region(s) {}, but the firmware's MADT has {what}, \
                     which the KDL does not have",
                    list(regions.iter().map(|r| r.base))
                ),
            );
        }
    }
    for (i, r) in regions.iter().enumerate() {
        let key = format!("gic.redistributor.{i}");
        match ranges
            .iter()
            .find(|(b, l, _)| overlaps(r.base, r.size, *b, *l))
        {
            None => out.refuse(
                &key,
                format_args!(
                    "gic redistributor {:#x} size={:#x}, but the firmware's MADT has no \
                     redistributor there (its ranges: {})",
                    r.base,
                    r.size,
                    list(ranges.iter().map(|(b, _, _)| *b))
                ),
            ),
            Some((b, l, what)) if !madt.gicr.is_empty() && (*b != r.base || *l != r.size) => out
                .warn(
                    &key,
                    format_args!(
                        "gic redistributor {:#x} size={:#x}, but the firmware's MADT has {what}",
                        r.base, r.size
                    ),
                ),
            Some(_) => {}
        }
    }
}

/// GICv2: the hypervisor drives GICC, GICH and GICV directly.
fn gicv2_interfaces(out: &mut Out<'_>, info: &AcpiInfo) {
    let g = out.board.gic;
    let pick = |f: fn(&Gicc) -> u64| {
        info.madt
            .cpus
            .iter()
            .filter(|c| c.present())
            .map(f)
            .find(|&b| b != 0)
    };
    for (key, name, kdl, acpi) in [
        (
            "gic.cpu-interface",
            "cpu-interface",
            g.cpu_interface,
            pick(|c| c.gicc_base),
        ),
        (
            "gic.hyp-interface",
            "hyp-interface",
            g.hyp_interface,
            pick(|c| c.gich_base),
        ),
        (
            "gic.virtual-cpu-interface",
            "virtual-cpu-interface",
            g.virtual_cpu_interface,
            pick(|c| c.gicv_base),
        ),
    ] {
        if let (Some(k), Some(a)) = (kdl, acpi) {
            if k.base != a {
                out.refuse(
                    key,
                    format_args!(
                        "gic {name} {:#x}, but the firmware's MADT GICC says {a:#x}",
                        k.base
                    ),
                );
            }
        }
    }
}

fn cpus(out: &mut Out<'_>, info: &AcpiInfo) {
    let board = out.board;
    let madt = &info.madt;
    let find = |mpidr: u64| {
        madt.cpus
            .iter()
            .find(|c| c.mpidr & MPIDR_AFFINITY == mpidr & MPIDR_AFFINITY)
    };
    let mut absent: Vec<u64> = Vec::new();
    let mut later: Vec<u64> = Vec::new();
    for c in board.cpus {
        match find(c.mpidr) {
            Some(g) if g.enabled => {}
            Some(g) if g.online_capable => later.push(c.mpidr),
            _ => absent.push(c.mpidr),
        }
    }
    let enabled = board.cpus.len() - absent.len() - later.len();
    if !absent.is_empty() || !later.is_empty() {
        let mut what = format!(
            "cpus: {} CPUs, but the firmware's MADT enables {enabled} of them",
            board.cpus.len()
        );
        if !absent.is_empty() {
            what.push_str(&format!(
                "; MPIDR {} absent or disabled, not started",
                list(absent.iter().copied())
            ));
        }
        if !later.is_empty() {
            what.push_str(&format!(
                "; MPIDR {} only online-capable, not started",
                list(later.iter().copied())
            ));
        }
        out.warn("cpus", format_args!("{what}"));
    }
    let extra: Vec<u64> = madt
        .cpus
        .iter()
        .filter(|g| g.present())
        .filter(|g| {
            !board
                .cpus
                .iter()
                .any(|c| c.mpidr & MPIDR_AFFINITY == g.mpidr & MPIDR_AFFINITY)
        })
        .map(|g| g.mpidr)
        .collect();
    if !extra.is_empty() {
        out.warn(
            "cpus",
            format_args!(
                "cpus: {} CPUs, but the firmware's MADT also has MPIDR {}, which the KDL \
                 lacks: not used",
                board.cpus.len(),
                list(extra.iter().copied())
            ),
        );
    }
    // PMU overflow interrupts, where both sides give one.
    for (i, c) in board.cpus.iter().enumerate() {
        let (Some(g), Some(irq)) = (find(c.mpidr), board.pmu.irq_for(c.mpidr)) else {
            continue;
        };
        if g.pmu_gsiv != 0 && g.pmu_gsiv != irq.intid {
            out.warn(
                "pmu",
                format_args!(
                    "pmu INTID {} for CPU {i} (MPIDR {:#x}), but the firmware's MADT GICC \
                     gives performance interrupt GSIV {}",
                    irq.intid, c.mpidr, g.pmu_gsiv
                ),
            );
            break;
        }
    }
}

fn timer(out: &mut Out<'_>, info: &AcpiInfo) {
    let Some(gtdt) = info.gtdt else {
        out.warn(
            "timer",
            format_args!("timer: the firmware has no GTDT: timer interrupts not checked"),
        );
        return;
    };
    let t = out.board.timer;
    for (name, kdl, acpi) in [
        ("secure-phys", t.secure_phys, gtdt.secure_el1),
        ("phys", t.phys, gtdt.nonsecure_el1),
        ("virt", t.virt, gtdt.virtual_el1),
        ("hyp-phys", t.hyp_phys, gtdt.el2),
    ] {
        // Firmware may leave the secure timer out (GSIV 0).
        if acpi.gsiv == 0 {
            continue;
        }
        let kdl_edge = kdl.trigger == Trigger::Edge;
        if acpi.gsiv != kdl.intid || acpi.edge != kdl_edge {
            out.warn(
                "timer",
                format_args!(
                    "timer {name} INTID {} ({}), but the firmware's GTDT says GSIV {} ({})",
                    kdl.intid,
                    if kdl_edge { "edge" } else { "level" },
                    acpi.gsiv,
                    if acpi.edge { "edge" } else { "level" }
                ),
            );
        }
    }
}

/// The device's register window `name`, else its first.
fn reg_named<'d>(dev: &'d DeviceDesc, name: &str) -> Option<&'d RegDesc> {
    dev.regs
        .iter()
        .find(|r| r.name == name)
        .or_else(|| dev.regs.first())
}

fn console(out: &mut Out<'_>, info: &AcpiInfo) {
    let Some(dev) = out.board.console_device() else {
        return;
    };
    let Some(spcr) = info.spcr else {
        out.warn(
            "console",
            format_args!(
                "console \"{}\": the firmware has no SPCR: console not checked",
                dev.name
            ),
        );
        return;
    };
    let Some(reg) = dev.regs.first() else {
        return;
    };
    let key = format!("device.{}.reg.{}", dev.name, reg.name);
    if spcr.address_space != 0 {
        out.refuse(
            &key,
            format_args!(
                "console \"{}\" is MMIO at {:#x}, but the firmware's SPCR console is in \
                 address space {} (not memory)",
                dev.name, reg.base, spcr.address_space
            ),
        );
    } else if spcr.base != reg.base {
        out.refuse(
            &key,
            format_args!(
                "console \"{}\" at {:#x}, but the firmware's SPCR says the console ({}) is \
                 at {:#x}",
                dev.name,
                reg.base,
                spcr.interface_name(),
                spcr.base
            ),
        );
    }
    let pl011 = dev
        .compatible
        .iter()
        .any(|c| *c == "arm,pl011" || *c == "arm,sbsa-uart");
    let ns16550 = dev.compatible.iter().any(|c| c.contains("16550"));
    let acpi_pl011 = matches!(spcr.interface_type, 0x03 | 0x0d | 0x0e);
    let acpi_16550 = matches!(spcr.interface_type, 0x00 | 0x12);
    if (pl011 && acpi_16550) || (ns16550 && acpi_pl011) {
        out.warn(
            &format!("device.{}", dev.name),
            format_args!(
                "console \"{}\" is {}, but the firmware's SPCR says {}",
                dev.name,
                dev.compatible.first().copied().unwrap_or("?"),
                spcr.interface_name()
            ),
        );
    }
    if let (Some(gsiv), Some(irq)) = (spcr.gsiv, dev.irqs.first()) {
        if gsiv != 0 && gsiv != irq.intid {
            out.warn(
                &format!("device.{}", dev.name),
                format_args!(
                    "console \"{}\" interrupt INTID {}, but the firmware's SPCR says GSIV {gsiv}",
                    dev.name, irq.intid
                ),
            );
        }
    }
}

fn ecam(out: &mut Out<'_>, info: &AcpiInfo) {
    let board = out.board;
    let hosts = board.devices.iter().filter(|d| {
        d.is_enabled()
            && (d.compatible.contains(&"pci-host-ecam-generic")
                || d.regs.iter().any(|r| r.name == "ecam"))
    });
    let mut matched = Vec::new();
    for dev in hosts {
        let Some(reg) = reg_named(dev, "ecam") else {
            continue;
        };
        let key = format!("device.{}.reg.{}", dev.name, reg.name);
        match info.mcfg.iter().position(|e| e.base == reg.base) {
            Some(i) => {
                matched.push(i);
                let e = info.mcfg[i];
                if e.size() != reg.size {
                    out.warn(
                        &key,
                        format_args!(
                            "device \"{}\" ECAM {:#x} size={:#x}, but the firmware's MCFG \
                             gives buses {}-{} ({:#x} bytes)",
                            dev.name,
                            reg.base,
                            reg.size,
                            e.bus_start,
                            e.bus_end,
                            e.size()
                        ),
                    );
                }
            }
            None if info.mcfg.is_empty() => out.warn(
                &key,
                format_args!(
                    "device \"{}\" ECAM {:#x}, but the firmware has no MCFG",
                    dev.name, reg.base
                ),
            ),
            None => out.warn(
                &key,
                format_args!(
                    "device \"{}\" ECAM {:#x}, but the firmware's MCFG says ECAM at {}",
                    dev.name,
                    reg.base,
                    list(info.mcfg.iter().map(|e| e.base))
                ),
            ),
        }
    }
    for (i, e) in info.mcfg.iter().enumerate() {
        if !matched.contains(&i) {
            out.warn(
                "board",
                format_args!(
                    "board has no PCIe host at {:#x}, but the firmware's MCFG lists segment \
                     {} ECAM there (buses {}-{}): not used",
                    e.base, e.segment, e.bus_start, e.bus_end
                ),
            );
        }
    }
}

fn numa(out: &mut Out<'_>, info: &AcpiInfo) {
    let board = out.board;
    let mut kdl_nodes: Vec<u32> = board
        .memory
        .iter()
        .map(|m| m.numa_node)
        .chain(board.cpus.iter().map(|c| c.numa_node))
        .collect();
    kdl_nodes.sort_unstable();
    kdl_nodes.dedup();
    let Some(srat) = &info.srat else {
        if kdl_nodes.len() > 1 {
            out.warn(
                "topology",
                format_args!(
                    "board has {} NUMA nodes, but the firmware has no SRAT: NUMA not checked",
                    kdl_nodes.len()
                ),
            );
        }
        return;
    };
    let domains = srat.domains();
    if domains.len() != kdl_nodes.len() {
        out.warn(
            "topology",
            format_args!(
                "board has {} NUMA node(s), but the firmware's SRAT has {} proximity domain(s)",
                kdl_nodes.len(),
                domains.len()
            ),
        );
    }
    for m in board.memory {
        let key = format!("memory.{}", m.name);
        // A region whose size the firmware gives is compared by its base; one whose base it
        // gives has nothing to compare (its node is the SRAT's).
        let len = match m.from_firmware {
            FromFirmware::Nothing => m.size,
            FromFirmware::Size => 1,
            FromFirmware::BaseAndSize => continue,
        };
        let covering: Vec<_> = srat
            .memory
            .iter()
            .filter(|a| a.enabled && overlaps(a.base, a.length, m.base, len))
            .collect();
        if covering.is_empty() {
            out.warn(
                &key,
                format_args!(
                    "memory \"{}\" {:#x} size={}, but the firmware's SRAT has no memory \
                     range there",
                    m.name,
                    m.base,
                    match m.from_firmware {
                        FromFirmware::Nothing => format!("{:#x}", m.size),
                        _ => "from the firmware".into(),
                    }
                ),
            );
        } else if let Some(a) = covering.iter().find(|a| a.domain != m.numa_node) {
            out.warn(
                &key,
                format_args!(
                    "memory \"{}\" {:#x} on node {}, but the firmware's SRAT puts {:#x}+{:#x} \
                     in proximity domain {}",
                    m.name, m.base, m.numa_node, a.base, a.length, a.domain
                ),
            );
        }
    }
    for (i, c) in board.cpus.iter().enumerate() {
        let Some(g) = info
            .madt
            .cpus
            .iter()
            .find(|g| g.mpidr & MPIDR_AFFINITY == c.mpidr & MPIDR_AFFINITY)
        else {
            continue;
        };
        if let Some(d) = srat.cpu_domain(g.uid) {
            if d != c.numa_node {
                out.warn(
                    &format!("cpu.{i}"),
                    format_args!(
                        "cpu {:#x} on node {}, but the firmware's SRAT puts it (UID {}) in \
                         proximity domain {d}",
                        c.mpidr, c.numa_node, g.uid
                    ),
                );
            }
        }
    }
    if let Some(slit) = &info.slit {
        if slit.localities != domains.len() {
            out.warn(
                "topology",
                format_args!(
                    "board has {} NUMA node(s), but the firmware's SLIT has {} localities",
                    kdl_nodes.len(),
                    slit.localities
                ),
            );
        }
        // The distances between the nodes both describe (the KDL's `numa-distances`, or
        // its 10/20 default): a guest's virtual topology shows the KDL's.
        for &a in &kdl_nodes {
            for &b in &kdl_nodes {
                let kdl = board.numa_distance(a, b);
                match slit.distance(a as usize, b as usize) {
                    Some(fw) if fw != kdl => {
                        let key = if board.numa_distances.is_empty() {
                            "topology"
                        } else {
                            "numa-distances"
                        };
                        out.warn(
                            key,
                            format_args!(
                                "distance from node {a} to node {b} is {kdl}, but the \
                                 firmware's SLIT says {fw}"
                            ),
                        );
                    }
                    _ => {}
                }
            }
        }
    }
}

fn topology(out: &mut Out<'_>, info: &AcpiInfo) {
    let Some(places) = &info.pptt else {
        return;
    };
    let cpus = out.board.cpus;
    // Each KDL CPU's PPTT place, where the MADT and PPTT have it.
    let place: Vec<_> = cpus
        .iter()
        .map(|c| {
            let g = info
                .madt
                .cpus
                .iter()
                .find(|g| g.mpidr & MPIDR_AFFINITY == c.mpidr & MPIDR_AFFINITY)?;
            places.iter().find(|p| p.uid == g.uid)
        })
        .collect();
    // Sockets are numbered alike (packages in table order); clusters are compared as
    // groupings, since the KDL numbers them as the hardware does (Altra: 2, 4, ... 38).
    for (i, c) in cpus.iter().enumerate() {
        let Some(p) = place[i] else { continue };
        if p.package != c.socket {
            out.warn(
                &format!("cpu.{i}"),
                format_args!(
                    "cpu {:#x} in socket {}, but the firmware's PPTT puts it in package {}",
                    c.mpidr, c.socket, p.package
                ),
            );
            return;
        }
        for (j, d) in cpus.iter().enumerate().skip(i + 1) {
            let Some(q) = place[j] else { continue };
            let kdl_same = (c.socket, c.cluster) == (d.socket, d.cluster);
            let acpi_same = (p.package, p.cluster) == (q.package, q.cluster);
            if kdl_same != acpi_same {
                out.warn(
                    &format!("cpu.{j}"),
                    format_args!(
                        "cpu {:#x} is {} cluster as cpu {:#x}, but the firmware's PPTT puts \
                         them in {} cluster",
                        d.mpidr,
                        if kdl_same {
                            "in the same"
                        } else {
                            "not in the same"
                        },
                        c.mpidr,
                        if acpi_same {
                            "the same"
                        } else {
                            "different ones"
                        }
                    ),
                );
                return;
            }
        }
    }
}
