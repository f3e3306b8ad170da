//! Rules on address ranges: RAM, GIC and device windows, NUMA nodes, hypervisor placement.

use super::{CheckError, Checker};
use crate::decl::{BoardDecl, Sp, PAGE};
use crate::text::{hex, index_range};

/// The distance of a NUMA node to itself (ACPI SLIT, Linux `LOCAL_DISTANCE`).
pub const LOCAL_DISTANCE: u64 = 10;
/// The distance between nodes a board that writes no `numa-distances` gets (Linux's
/// `REMOTE_DISTANCE`, QEMU's default).
pub const REMOTE_DISTANCE: u64 = 20;

impl Checker {
    pub(super) fn check_regions(&mut self, b: &BoardDecl) {
        struct Region<'a> {
            what: String,
            base: &'a Sp<u64>,
            size: &'a Sp<u64>,
            /// RAM and GIC windows are mapped (GICV into VMs, RAM into the pool) by whole
            /// 4 KiB pages, so they must be page aligned; a device window need not be: the
            /// hypervisor maps the pages that cover it for its drivers, which use its exact
            /// address, and only passing a device through needs its pages to itself (the
            /// VM rules check that).
            paged: bool,
        }
        let mut regions: Vec<Region<'_>> = Vec::new();
        for m in &b.memory {
            // A region whose size the firmware gives has no range to check here; its base
            // (when written) must still be page aligned. The hypervisor checks the
            // firmware's RAM at boot (docs/ARCHITECTURE.md, "Boot").
            match (&m.base, &m.size) {
                (Some(base), Some(size)) => regions.push(Region {
                    what: format!("memory \"{}\"", m.name.value),
                    base,
                    size,
                    paged: true,
                }),
                (Some(base), None) if base.value % PAGE != 0 => {
                    self.errors.push(CheckError::BadRegion {
                        what: format!("memory \"{}\"", m.name.value),
                        problem: format!("base {} is not 4 KiB aligned", base.text),
                        span: base.span,
                        help: format!(
                            "RAM is mapped with 4 KiB pages: write the base the device tree's /memory node gives, e.g. {}",
                            hex(base.value & !(PAGE - 1))
                        ),
                    });
                }
                _ => {}
            }
        }
        if let Some(gic) = &b.gic {
            for r in gic
                .distributor
                .iter()
                .chain(&gic.redistributors)
                .chain(&gic.cpu_interface)
                .chain(&gic.hyp_interface)
                .chain(&gic.virtual_cpu_interface)
                .chain(&gic.its)
            {
                regions.push(Region {
                    what: format!("GIC window `{}`", r.name),
                    base: &r.base,
                    size: &r.size,
                    paged: true,
                });
            }
        }
        for d in &b.devices {
            for r in &d.regs {
                regions.push(Region {
                    what: format!("device \"{}\" window `{}`", d.name.value, r.name),
                    base: &r.base,
                    size: &r.size,
                    paged: false,
                });
            }
        }
        let mut good: Vec<&Region<'_>> = Vec::new();
        for r in &regions {
            let mut ok = true;
            if r.size.value == 0 {
                self.errors.push(CheckError::BadRegion {
                    what: r.what.clone(),
                    problem: "has size 0".to_owned(),
                    span: r.size.span,
                    help: if r.paged {
                        "give the region's real size in bytes, a multiple of 0x1000".to_owned()
                    } else {
                        "give the window's real size in bytes, as the device tree's `reg` has it"
                            .to_owned()
                    },
                });
                ok = false;
            }
            if r.paged && r.base.value % PAGE != 0 {
                self.errors.push(CheckError::BadRegion {
                    what: r.what.clone(),
                    problem: format!("base {} is not 4 KiB aligned", r.base.text),
                    span: r.base.span,
                    help: format!(
                        "RAM and GIC windows are mapped with 4 KiB pages: write the 4 KiB-aligned base {} and grow the size to cover the window",
                        hex(r.base.value & !(PAGE - 1))
                    ),
                });
                ok = false;
            }
            if r.paged && r.size.value % PAGE != 0 {
                self.errors.push(CheckError::BadRegion {
                    what: r.what.clone(),
                    problem: format!("size {} is not a multiple of 4 KiB", r.size.text),
                    span: r.size.span,
                    help: format!(
                        "round the size up to a multiple of 0x1000, e.g. size={}",
                        hex(r.size.value.div_ceil(PAGE).saturating_mul(PAGE))
                    ),
                });
                ok = false;
            }
            if r.base.value.checked_add(r.size.value).is_none() {
                self.errors.push(CheckError::BadRegion {
                    what: r.what.clone(),
                    problem: "wraps past the end of the address space".to_owned(),
                    span: r.size.span,
                    help: "base + size must fit in 64 bits; check the size".to_owned(),
                });
                ok = false;
            }
            if !ok {
                continue;
            }
            if let Some(other) = good.iter().find(|o| {
                r.base.value < o.base.value.saturating_add(o.size.value)
                    && o.base.value < r.base.value.saturating_add(r.size.value)
            }) {
                self.errors.push(CheckError::Overlap {
                    what: format!("{} [{}, +{}]", r.what, r.base.text, r.size.text),
                    other: format!("{} [{}, +{}]", other.what, other.base.text, other.size.text),
                    span: r.base.span,
                    other_span: other.base.span,
                    help: "memory regions, GIC windows and device windows must not overlap (a device window inside RAM is an error; two devices may share a 4 KiB page, but not bytes): fix the base or size of one of them".to_owned(),
                });
            }
            good.push(r);
        }
        let nodes = b.numa_node_count();
        for m in &b.memory {
            if m.node.value >= nodes {
                self.errors.push(CheckError::OutOfRange {
                    what: format!("NUMA node of memory \"{}\"", m.name.value),
                    text: m.node.text.clone(),
                    reason: format!("this board has {nodes} NUMA node(s)"),
                    span: m.node.span,
                    help: format!(
                        "write {} (one NUMA node per socket)",
                        index_range("node", nodes)
                    ),
                });
            }
        }
        self.check_numa_distances(b);
    }

    /// `numa-distances`: one `from` row per NUMA node, each with a distance to every node;
    /// 10 to itself and 11..=255 to the others (the scale of ACPI's SLIT and Linux's
    /// `distance-map`, where 10 means local).
    fn check_numa_distances(&mut self, b: &BoardDecl) {
        let Some(d) = &b.numa_distances else { return };
        let nodes = b.numa_node_count();
        let mut seen: Vec<u32> = Vec::new();
        for row in &d.rows {
            let from = row.from.value;
            if from >= nodes {
                self.errors.push(CheckError::OutOfRange {
                    what: "NUMA node of `from`".to_owned(),
                    text: row.from.text.clone(),
                    reason: format!("this board has {nodes} NUMA node(s)"),
                    span: row.from.span,
                    help: format!(
                        "write one `from` row for each of {} (one NUMA node per socket)",
                        index_range("node", nodes)
                    ),
                });
                continue;
            }
            if seen.contains(&from) {
                self.errors.push(CheckError::OutOfRange {
                    what: "NUMA node of `from`".to_owned(),
                    text: row.from.text.clone(),
                    reason: "a row for this node is already written".to_owned(),
                    span: row.from.span,
                    help: "write one `from` row per node".to_owned(),
                });
                continue;
            }
            seen.push(from);
            if row.to.len() != nodes as usize {
                self.errors.push(CheckError::OutOfRange {
                    what: format!("distances from node {from}"),
                    text: format!("{} value(s)", row.to.len()),
                    reason: format!("this board has {nodes} NUMA node(s)"),
                    span: row.span,
                    help: format!(
                        "write `from {from}` followed by {nodes} distances: to node 0, 1, ... ({} to itself)",
                        LOCAL_DISTANCE
                    ),
                });
                continue;
            }
            for (to, v) in row.to.iter().enumerate() {
                let (ok, reason) = if to as u32 == from {
                    (
                        v.value == LOCAL_DISTANCE,
                        format!("the distance of a node to itself is {LOCAL_DISTANCE}"),
                    )
                } else {
                    (
                        v.value > LOCAL_DISTANCE && v.value <= 255,
                        format!(
                            "the distance to another node is {}..=255 ({LOCAL_DISTANCE} is local)",
                            LOCAL_DISTANCE + 1
                        ),
                    )
                };
                if !ok {
                    self.errors.push(CheckError::OutOfRange {
                        what: format!("distance from node {from} to node {to}"),
                        text: v.text.clone(),
                        reason,
                        span: v.span,
                        help: "write 10 for the node itself and e.g. 20 for a node on another socket (as ACPI's SLIT and QEMU's `-numa dist` do)".to_owned(),
                    });
                }
            }
        }
        if let Some(missing) = (0..nodes).find(|n| !seen.contains(n)) {
            self.errors.push(CheckError::Missing {
                node: "numa-distances".to_owned(),
                what: format!("the distances from node {missing}"),
                span: d.span,
                help: format!("add `from {missing} ...` with one distance per node"),
            });
        }
    }

    pub(super) fn check_hypervisor(&mut self, b: &BoardDecl, check_inside_ram: bool) {
        let Some(h) = &b.hypervisor else { return };
        if h.size.value == 0 || h.size.value % PAGE != 0 {
            self.errors.push(CheckError::BadRegion {
                what: "hypervisor size".to_owned(),
                problem: format!("{} is not a non-zero multiple of 4 KiB", h.size.text),
                span: h.size.span,
                help: "reserve image + stacks + heap, e.g. size=0x0200_0000 (32 MiB)".to_owned(),
            });
        }
        let Some(load) = &h.load else {
            // Without `load=` the image is linked at 0 and only booted as the relocatable
            // Image: that is only right when nobody can know where RAM is before boot.
            if check_inside_ram
                && !b
                    .memory
                    .iter()
                    .any(|m| m.from_firmware.is_some() && m.base.is_none())
            {
                self.errors.push(CheckError::MissingLoad {
                    span: h.span,
                    help: match b.memory.iter().find_map(|m| m.base.as_ref()) {
                        Some(base) => format!(
                            "add `load=` (the ELF's link address, where build-time VM images are staged after), e.g. load={}; it may be left out only when a `memory` region's base comes from the firmware (`memory \"dram0\" from=\"firmware\"`)",
                            hex(base.value.saturating_add(0x20_0000))
                        ),
                        None => "add `load=`, e.g. load=0x4020_0000".to_owned(),
                    },
                });
            }
            return;
        };
        if load.value % PAGE != 0 {
            self.errors.push(CheckError::BadRegion {
                what: "hypervisor load address".to_owned(),
                problem: format!("{} is not 4 KiB aligned", load.text),
                span: load.span,
                help: format!(
                    "write a 4 KiB-aligned address, e.g. load={}",
                    hex(load.value & !(PAGE - 1))
                ),
            });
        }
        let end = load.value.checked_add(h.size.value);
        if !check_inside_ram {
            return;
        }
        // A region whose size the firmware gives holds the hypervisor when it starts at or
        // below `load` (the hypervisor checks at boot that the firmware's RAM reaches its
        // end); one whose base the firmware gives may be anywhere.
        let inside = b.memory.iter().any(|m| match (&m.base, &m.size) {
            (Some(base), Some(size)) => {
                let m_end = base.value.saturating_add(size.value);
                load.value >= base.value && end.is_some_and(|e| e <= m_end)
            }
            (Some(base), None) => load.value >= base.value && end.is_some(),
            (None, _) => end.is_some(),
        });
        if !inside {
            let ram: Vec<String> = b.memory.iter().map(describe_memory).collect();
            self.errors.push(CheckError::HypervisorOutsideRam {
                range: format!("[{}, +{}]", load.text, h.size.text),
                span: h.span,
                help: if ram.is_empty() {
                    "declare a `memory` region that contains `load` .. `load + size`".to_owned()
                } else {
                    format!(
                        "choose `load=` and `size=` inside one of: {}",
                        ram.join(", ")
                    )
                },
            });
        }
    }
}

/// `dram0 [0x4000_0000, +0x8000_0000]`, `dram0 [0x8000_0000, + size from the firmware]` or
/// `dram0 [base and size from the firmware]`, for messages.
pub(super) fn describe_memory(m: &crate::decl::MemoryDecl) -> String {
    match (&m.base, &m.size) {
        (Some(b), Some(s)) => format!("{} [{}, +{}]", m.name.value, b.text, s.text),
        (Some(b), None) => format!("{} [{}, + size from the firmware]", m.name.value, b.text),
        _ => format!("{} [base and size from the firmware]", m.name.value),
    }
}
