//! Rules on address ranges: RAM, GIC and device windows, NUMA nodes, hypervisor placement.

use super::{CheckError, Checker};
use crate::decl::{BoardDecl, Sp, PAGE};
use crate::text::{hex, index_range};

impl Checker {
    pub(super) fn check_regions(&mut self, b: &BoardDecl) {
        struct Region<'a> {
            what: String,
            base: &'a Sp<u64>,
            size: &'a Sp<u64>,
        }
        let mut regions: Vec<Region<'_>> = Vec::new();
        for m in &b.memory {
            regions.push(Region {
                what: format!("memory \"{}\"", m.name.value),
                base: &m.base,
                size: &m.size,
            });
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
                });
            }
        }
        for d in &b.devices {
            for r in &d.regs {
                regions.push(Region {
                    what: format!("device \"{}\" window `{}`", d.name.value, r.name),
                    base: &r.base,
                    size: &r.size,
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
                    help: "give the region's real size in bytes, a multiple of 0x1000".to_owned(),
                });
                ok = false;
            }
            if r.base.value % PAGE != 0 {
                self.errors.push(CheckError::BadRegion {
                    what: r.what.clone(),
                    problem: format!("base {} is not 4 KiB aligned", r.base.text),
                    span: r.base.span,
                    help: format!(
                        "regions are mapped with 4 KiB pages: write the 4 KiB-aligned base {} and grow the size to cover the window",
                        hex(r.base.value & !(PAGE - 1))
                    ),
                });
                ok = false;
            }
            if r.size.value % PAGE != 0 {
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
                    help: "memory regions, GIC windows and device windows must not overlap (a device window inside RAM is an error): fix the base or size of one of them".to_owned(),
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
    }

    pub(super) fn check_hypervisor(&mut self, b: &BoardDecl, check_inside_ram: bool) {
        let Some(h) = &b.hypervisor else { return };
        if h.load.value % PAGE != 0 {
            self.errors.push(CheckError::BadRegion {
                what: "hypervisor load address".to_owned(),
                problem: format!("{} is not 4 KiB aligned", h.load.text),
                span: h.load.span,
                help: format!(
                    "write a 4 KiB-aligned address, e.g. load={}",
                    hex(h.load.value & !(PAGE - 1))
                ),
            });
        }
        if h.size.value == 0 || h.size.value % PAGE != 0 {
            self.errors.push(CheckError::BadRegion {
                what: "hypervisor size".to_owned(),
                problem: format!("{} is not a non-zero multiple of 4 KiB", h.size.text),
                span: h.size.span,
                help: "reserve image + stacks + heap, e.g. size=0x0200_0000 (32 MiB)".to_owned(),
            });
        }
        let end = h.load.value.checked_add(h.size.value);
        if !check_inside_ram {
            return;
        }
        let inside = b.memory.iter().any(|m| {
            let m_end = m.base.value.saturating_add(m.size.value);
            h.load.value >= m.base.value && end.is_some_and(|e| e <= m_end)
        });
        if !inside {
            let ram: Vec<String> = b
                .memory
                .iter()
                .map(|m| format!("{} [{}, +{}]", m.name.value, m.base.text, m.size.text))
                .collect();
            self.errors.push(CheckError::HypervisorOutsideRam {
                range: format!("[{}, +{}]", h.load.text, h.size.text),
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
