//! Stage 4: every board rule of `docs/boards-kdl.md`, checked on a merged board.
//!
//! Regions (alignment, size, overlaps, NUMA nodes, hypervisor placement), interrupts (PPI
//! and SPI ranges against the GIC, per-CPU PMU SPIs), the GIC's windows against its
//! version, CPU topology and MPIDRs, device status and console. Every error is collected,
//! none stops the others, and each points at the offending entry with a help saying what
//! to write.

mod cpus;
mod devices;
mod interrupts;
mod regions;

pub use regions::{LOCAL_DISTANCE, REMOTE_DISTANCE};

use miette::{Diagnostic, SourceSpan};
use thiserror::Error;

use crate::merge::Merged;

/// A check error: one broken board rule, at one place in the file.
#[derive(Clone, Debug, Error, Diagnostic)]
pub enum CheckError {
    /// A required property (or positional argument) is missing.
    #[error("`{node}` is missing {what}")]
    #[diagnostic(code(platform_dsl::missing_property))]
    Missing {
        /// The node.
        node: String,
        /// What is missing (`property \`size\``, `its name`, ...).
        what: String,
        /// The node name.
        #[label("needs {what}")]
        span: SourceSpan,
        /// What to write.
        #[help]
        help: String,
    },
    /// A required child node is missing.
    #[error("{parent} has no `{child}`")]
    #[diagnostic(code(platform_dsl::missing_node))]
    MissingNode {
        /// The parent (`board "x"`).
        parent: String,
        /// The missing child node name.
        child: String,
        /// The parent's name.
        #[label("needs a `{child}` node")]
        span: SourceSpan,
        /// What to write.
        #[help]
        help: String,
    },
    /// A value outside its allowed range or set.
    #[error("{what} `{text}` is out of range: {reason}")]
    #[diagnostic(code(platform_dsl::out_of_range))]
    OutOfRange {
        /// Which value.
        what: String,
        /// Original text.
        text: String,
        /// Why it is out of range.
        reason: String,
        /// The value.
        #[label("{reason}")]
        span: SourceSpan,
        /// What to write.
        #[help]
        help: String,
    },
    /// An interrupt number that the GIC cannot deliver.
    #[error("{kind} {number} is out of range for this GICv{version} ({reason})")]
    #[diagnostic(code(platform_dsl::irq_out_of_range))]
    IrqOutOfRange {
        /// `SPI` or `PPI`.
        kind: &'static str,
        /// The number as written.
        number: String,
        /// 2 or 3.
        version: u8,
        /// Limit that is broken.
        reason: String,
        /// The value.
        #[label("{kind} must be < {limit}")]
        span: SourceSpan,
        /// The limit.
        limit: u32,
        /// What to write.
        #[help]
        help: String,
    },
    /// A region that is not 4 KiB aligned, is empty, or wraps around.
    #[error("{what} {problem}")]
    #[diagnostic(code(platform_dsl::bad_region))]
    BadRegion {
        /// The region (`memory "dram0"`).
        what: String,
        /// The problem.
        problem: String,
        /// The value.
        #[label("{problem}")]
        span: SourceSpan,
        /// What to write.
        #[help]
        help: String,
    },
    /// Two regions that overlap.
    #[error("{what} overlaps {other}")]
    #[diagnostic(code(platform_dsl::overlap))]
    Overlap {
        /// The later region.
        what: String,
        /// The earlier region.
        other: String,
        /// The later region's entry.
        #[label(primary, "{what}")]
        span: SourceSpan,
        /// The earlier region's entry.
        #[label("{other}")]
        other_span: SourceSpan,
        /// What to do.
        #[help]
        help: String,
    },
    /// Two things that must have distinct names or values share one.
    #[error("duplicate {kind} `{name}`")]
    #[diagnostic(code(platform_dsl::duplicate))]
    Duplicate {
        /// What kind (`device name`, `MPIDR`, `board`).
        kind: String,
        /// The shared name or value.
        name: String,
        /// The second one.
        #[label(primary, "second {kind} `{name}`")]
        span: SourceSpan,
        /// The first one.
        #[label("first one here")]
        first: SourceSpan,
        /// What to do.
        #[help]
        help: String,
    },
    /// The CPUs listed do not match the declared topology.
    #[error("{problem}")]
    #[diagnostic(code(platform_dsl::topology))]
    Topology {
        /// What contradicts what.
        problem: String,
        /// The offending entry.
        #[label("{label}")]
        span: SourceSpan,
        /// Label text.
        label: String,
        /// What to write.
        #[help]
        help: String,
    },
    /// The GIC description is inconsistent with its version.
    #[error("{problem}")]
    #[diagnostic(code(platform_dsl::gic))]
    Gic {
        /// What is wrong.
        problem: String,
        /// The offending entry.
        #[label("{label}")]
        span: SourceSpan,
        /// Label text.
        label: String,
        /// What to write.
        #[help]
        help: String,
    },
    /// `console` does not name an enabled device.
    #[error("console `{name}` {problem}")]
    #[diagnostic(code(platform_dsl::console))]
    Console {
        /// The device name written.
        name: String,
        /// `names no device` / `is disabled`.
        problem: String,
        /// The console entry.
        #[label("{problem}")]
        span: SourceSpan,
        /// What to write.
        #[help]
        help: String,
    },
    /// A disabled device without `reason=`, or a reason on an enabled one.
    #[error("device `{name}` {problem}")]
    #[diagnostic(code(platform_dsl::device_status))]
    DeviceStatus {
        /// Device name.
        name: String,
        /// The problem.
        problem: String,
        /// The device.
        #[label("{problem}")]
        span: SourceSpan,
        /// What to write.
        #[help]
        help: String,
    },
    /// The PMU's interrupts do not fit the CPUs: a CPU without its SPI, an SPI for no CPU,
    /// or both forms at once.
    #[error("{problem}")]
    #[diagnostic(code(platform_dsl::pmu))]
    Pmu {
        /// What is wrong.
        problem: String,
        /// The offending entry.
        #[label("{label}")]
        span: SourceSpan,
        /// Label text.
        label: String,
        /// What to write.
        #[help]
        help: String,
    },
    /// A board is called "supported" although nothing boots it.
    #[error("board \"{board}\" is \"supported\" but {how} boots nothing")]
    #[diagnostic(code(platform_dsl::unproven_support))]
    UnprovenSupport {
        /// The board's name.
        board: String,
        /// Its `verified-by`, as written.
        how: String,
        /// The `support` value.
        #[label("only a QEMU scenario or a recorded hardware run makes a board supported")]
        span: SourceSpan,
        /// What to write.
        #[help]
        help: String,
    },
    /// `hypervisor` has no `load=` although the board's RAM base is known.
    #[error("`hypervisor` has no `load=` (the link address)")]
    #[diagnostic(code(platform_dsl::hypervisor_placement))]
    MissingLoad {
        /// The `hypervisor` node.
        #[label("no `load=`")]
        span: SourceSpan,
        /// What to write.
        #[help]
        help: String,
    },
    /// The hypervisor's placement is not inside one RAM region.
    #[error("hypervisor placement {range} is not inside one memory region")]
    #[diagnostic(code(platform_dsl::hypervisor_placement))]
    HypervisorOutsideRam {
        /// The range as written.
        range: String,
        /// The `hypervisor` node.
        #[label("outside RAM")]
        span: SourceSpan,
        /// What to write.
        #[help]
        help: String,
    },
}

/// Checks one merged board; returns every broken rule (empty when the board is sound).
///
/// Rules that need a part the board lacks are skipped (its absence is reported once): no
/// GIC, no interrupt ranges; no SoC, no console check (the device list is incomplete).
pub fn check(m: &Merged) -> Vec<CheckError> {
    let mut cx = Checker::default();
    cx.board(m);
    cx.errors
}

/// Error collector of the checks.
#[derive(Default)]
struct Checker {
    /// Every error found so far.
    errors: Vec<CheckError>,
}

impl Checker {
    fn board(&mut self, m: &Merged) {
        let b = &m.board;
        let board = format!("board \"{}\"", b.name.value);
        if m.soc_resolved {
            for (present, child, example) in [
                (
                    b.gic.is_some(),
                    "gic",
                    "gic version=3 compatible=\"arm,gic-v3\" spis=256 { ... }",
                ),
                (
                    b.timer.is_some(),
                    "timer",
                    "timer secure-phys=13 phys=14 virt=11 hyp-phys=10",
                ),
                (b.pmu.is_some(), "pmu", "pmu ppi=7"),
            ] {
                // Only report when neither declares the node at all (a broken one is already reported).
                if !present && !m.written.iter().any(|w| w == child) {
                    self.errors.push(CheckError::MissingNode {
                        parent: format!("`{board}`"),
                        child: child.to_owned(),
                        span: b.name.span,
                        help: format!("add `{example}` to the board or to its soc"),
                    });
                }
            }
        }
        self.check_support(b);
        self.check_regions(b);
        if let Some(gic) = &b.gic {
            self.check_gic(gic, b);
        }
        self.check_cpus(b);
        self.check_pmu(b);
        self.check_devices(b);
        self.check_hypervisor(b, b.memory_complete() && !b.memory.is_empty());
        // Without its SoC the board's device list is incomplete.
        if m.soc_resolved {
            self.check_console(b);
        }
    }
}

impl Checker {
    /// `support "supported"` is a promise that the board boots: only a QEMU machine line
    /// (which `cargo xtask test` boots) or a recorded hardware run backs it.
    fn check_support(&mut self, b: &crate::decl::BoardDecl) {
        use crate::model::{SupportLevel, Verification};
        let (Some(support), Some(verified)) = (&b.support, &b.verified_by) else {
            return;
        };
        if support.value != SupportLevel::Supported {
            return;
        }
        let how = match &verified.value {
            Verification::Qemu { .. } | Verification::Hardware { .. } => return,
            Verification::DeviceTree { dtb } => format!("verified-by \"dtb\" path=\"{dtb}\""),
            Verification::None => "verified-by \"none\"".to_owned(),
        };
        self.errors.push(CheckError::UnprovenSupport {
            board: b.name.value.clone(),
            how,
            span: support.span,
            help: "write `support \"described\"` until a QEMU scenario or a recorded hardware \
                   run (`verified-by \"hardware\" log=...`) boots it"
                .to_owned(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::decode;
    use crate::merge::merge;
    use crate::parse::parse;

    const MINIMAL: &str = include_str!("../../tests/valid/minimal.kdl");

    fn checked(text: &str) -> Vec<CheckError> {
        let d = decode(&parse(text).unwrap_or_else(|e| panic!("{e:?}")));
        assert!(d.errors.is_empty(), "{:?}", d.errors);
        let (m, error) = merge(&d.socs, &d.boards[0]);
        assert!(error.is_none());
        check(&m)
    }

    #[test]
    fn a_sound_board_passes() {
        assert!(checked(MINIMAL).is_empty());
    }

    #[test]
    fn an_spi_beyond_the_gic_is_out_of_range() {
        let errors = checked(&MINIMAL.replace("irq spi=1", "irq spi=64"));
        assert!(
            matches!(
                errors.as_slice(),
                [CheckError::IrqOutOfRange { limit: 64, .. }]
            ),
            "{errors:?}"
        );
    }

    #[test]
    fn a_disabled_console_is_reported() {
        let errors = checked(&MINIMAL.replace(
            "device \"uart0\" compatible=\"arm,pl011\"",
            "device \"uart0\" compatible=\"arm,pl011\" status=\"disabled\" reason=\"firmware\"",
        ));
        assert!(
            errors.iter().any(
                |e| matches!(e, CheckError::Console { problem, .. } if problem == "is disabled")
            ),
            "{errors:?}"
        );
    }
}
