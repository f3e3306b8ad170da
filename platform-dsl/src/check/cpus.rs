//! Rules on CPUs: MPIDR affinity and uniqueness, the count and indices against `topology`.

use std::collections::HashMap;

use miette::SourceSpan;

use super::{CheckError, Checker};
use crate::decl::{BoardDecl, MPIDR_AFFINITY_MASK};
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
}
