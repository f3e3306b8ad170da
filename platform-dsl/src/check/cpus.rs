//! Rules on CPUs: MPIDR affinity and uniqueness, the count and indices against `topology`.

use std::collections::HashMap;

use miette::SourceSpan;

use super::{CheckError, Checker};
use crate::decl::{BoardDecl, EnableMethodKind, Sp, MPIDR_AFFINITY_MASK};
use crate::text::{hex, index_range};

impl Checker {
    pub(super) fn check_cpus(&mut self, b: &BoardDecl) {
        let mut seen: HashMap<u64, SourceSpan> = HashMap::new();
        for c in b.cpu_list() {
            if c.mpidr.value & !MPIDR_AFFINITY_MASK != 0 {
                self.errors.push(CheckError::OutOfRange {
                    what: "MPIDR affinity".to_owned(),
                    text: c.mpidr.text.clone(),
                    reason: "only Aff3 (bits 39:32) and Aff2..Aff0 (bits 23:0) may be set"
                        .to_owned(),
                    span: c.mpidr.span,
                    help: format!(
                        "write the affinity fields only (mask {}), e.g. `cpu 0x100` for Aff1=1",
                        hex(MPIDR_AFFINITY_MASK)
                    ),
                });
            }
            if let Some(first) = seen.get(&c.mpidr.value) {
                self.errors.push(CheckError::Duplicate {
                    kind: "MPIDR".to_owned(),
                    name: c.mpidr.text.clone(),
                    span: c.mpidr.span,
                    first: *first,
                    help: "every CPU has its own MPIDR affinity: check the CPU list against the device tree `reg` of each cpu".to_owned(),
                });
            } else {
                seen.insert(c.mpidr.value, c.mpidr.span);
            }
        }
        self.check_enable_methods(b);
        let Some(t) = &b.topology else { return };
        let expected =
            u64::from(t.sockets.value) * u64::from(t.clusters.value) * u64::from(t.cores.value);
        if b.cpus.is_some() && b.cpu_list().len() as u64 != expected {
            self.errors.push(CheckError::Topology {
                problem: format!(
                    "board lists {} cpu(s) but its topology declares {} ({} socket(s) x {} cluster(s) x {} core(s))",
                    b.cpu_list().len(),
                    expected,
                    t.sockets.value,
                    t.clusters.value,
                    t.cores.value
                ),
                span: t.span,
                label: format!("{expected} CPUs"),
                help: "list one `cpu` per core in `cpus`, or fix `topology sockets= clusters= cores=`".to_owned(),
            });
        }
        for c in b.cpu_list() {
            for (what, v, limit, prop) in [
                ("socket", &c.socket, t.sockets.value, "sockets"),
                ("cluster", &c.cluster, t.clusters.value, "clusters"),
            ] {
                if v.value >= limit {
                    self.errors.push(CheckError::Topology {
                        problem: format!(
                            "cpu {} is in {what} {} but the topology has {limit} {prop}",
                            c.mpidr.text, v.value
                        ),
                        span: v.span,
                        label: format!("{what} index out of range"),
                        help: format!(
                            "write {}, or raise `{prop}=` in `topology`",
                            index_range(what, limit)
                        ),
                    });
                }
            }
        }
    }

    /// Spin-table CPUs: each has a release address, 8-byte aligned, inside RAM and outside
    /// the hypervisor's region; a PSCI CPU has none.
    fn check_enable_methods(&mut self, b: &BoardDecl) {
        for c in b.cpu_list() {
            match (c.enable_method.value, &c.release_addr) {
                (EnableMethodKind::SpinTable, None) => self.errors.push(CheckError::Missing {
                    node: format!("cpu {}", c.mpidr.text),
                    what: "property `release-addr`".to_owned(),
                    span: c.mpidr.span,
                    help: format!(
                        "cpu {} uses spin-table but has no release-addr=; write release-addr=0xd8 (the device tree's `cpu-release-addr` of this cpu)",
                        c.mpidr.text
                    ),
                }),
                (EnableMethodKind::Psci, Some(a)) => self.errors.push(CheckError::OutOfRange {
                    what: "release-addr".to_owned(),
                    text: a.text.clone(),
                    reason: format!("cpu {} is started by PSCI, not by a spin table", c.mpidr.text),
                    span: a.span,
                    help: "write enable-method=\"spin-table\" on `cpus` or on this `cpu`, or remove release-addr=".to_owned(),
                }),
                (EnableMethodKind::SpinTable, Some(a)) => self.check_release_addr(b, &c.mpidr.text, a),
                (EnableMethodKind::Psci, None) => {}
            }
        }
    }

    fn check_release_addr(&mut self, b: &BoardDecl, cpu: &str, a: &Sp<u64>) {
        if !a.value.is_multiple_of(8) {
            self.errors.push(CheckError::OutOfRange {
                what: "release-addr".to_owned(),
                text: a.text.clone(),
                reason: "a release address holds one 64-bit word and must be 8-byte aligned"
                    .to_owned(),
                span: a.span,
                help: format!(
                    "write an 8-byte-aligned address, e.g. release-addr={}",
                    hex(a.value & !7)
                ),
            });
            return;
        }
        if !b.memory_complete() || b.memory.is_empty() {
            return;
        }
        // Against a region whose size the firmware gives, only its base can be checked;
        // against one whose base it gives, nothing (the hypervisor keeps the word's page out
        // of its pool at boot either way).
        let in_ram = b.memory.iter().any(|m| match (&m.base, &m.size) {
            (Some(base), Some(size)) => {
                a.value >= base.value && a.value - base.value < size.value.saturating_sub(7)
            }
            (Some(base), None) => a.value >= base.value,
            (None, _) => true,
        });
        if !in_ram {
            let ram: Vec<String> = b
                .memory
                .iter()
                .map(super::regions::describe_memory)
                .collect();
            self.errors.push(CheckError::OutOfRange {
                what: "release-addr".to_owned(),
                text: a.text.clone(),
                reason: format!("the release address of cpu {cpu} is not in RAM"),
                span: a.span,
                help: format!(
                    "the firmware parks the CPU on a word in RAM: write an address inside one of: {}",
                    ram.join(", ")
                ),
            });
            return;
        }
        if let Some(h) = &b.hypervisor {
            if let Some(load) = h
                .load
                .as_ref()
                .filter(|l| a.value >= l.value && a.value - l.value < h.size.value)
            {
                self.errors.push(CheckError::OutOfRange {
                    what: "release-addr".to_owned(),
                    text: a.text.clone(),
                    reason: format!(
                        "the release address of cpu {cpu} is inside the hypervisor's region [{}, +{}]",
                        load.text, h.size.text
                    ),
                    span: a.span,
                    help: "the firmware's spin table lies outside the hypervisor image: check `release-addr=` against the firmware (e.g. armstub8: 0xd8..0xf0)".to_owned(),
                });
            }
        }
    }
}
