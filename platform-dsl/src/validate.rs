//! Stage 2: spanned nodes to typed, checked SoC and board declarations.
//!
//! Decoding checks the shape of every node (known names, required and typed properties);
//! then each board is merged with its SoC (see [`crate::lower::merge`]) and the rules of
//! `docs/boards-kdl.md` are checked on the merged view: regions, IRQ ranges, CPU topology,
//! console, disabled devices, hypervisor placement. Every error is collected, none stops
//! the others, and each points at the offending entry with a help saying what to write.

use std::collections::HashMap;

use miette::{Diagnostic, SourceSpan};
use thiserror::Error;

use crate::lower::{merge, MergedBoard};
use crate::model::{GicVersion, SupportLevel, Trigger, Verification};
use crate::parse::{Node, Value, ValueKind};

/// Largest SPI count a GIC can implement (INTIDs 32..=1019).
pub const MAX_SPIS: u32 = 988;
/// Number of PPIs (INTIDs 16..=31).
pub const PPI_COUNT: u32 = 16;
/// GICv2 targets CPUs by an 8-bit mask.
pub const GICV2_MAX_CPUS: usize = 8;
/// Granule every region must be aligned to.
pub const PAGE: u64 = 0x1000;
/// MPIDR_EL1 bits that hold affinity (Aff3 39:32, Aff2..Aff0 23:0).
pub const MPIDR_AFFINITY_MASK: u64 = 0xff_00ff_ffff;

/// A validation error: one broken rule, at one place in the file.
#[derive(Clone, Debug, Error, Diagnostic)]
pub enum ValidateError {
    /// A node name that is not part of the schema at this place.
    #[error("unknown node `{name}` in {parent}")]
    #[diagnostic(code(platform_dsl::unknown_node))]
    UnknownNode {
        /// The name written.
        name: String,
        /// Where it appeared (`board "x"`, `the top level`, ...).
        parent: String,
        /// The node name.
        #[label("not a known node here")]
        span: SourceSpan,
        /// Did you mean / what is allowed.
        #[help]
        help: String,
    },
    /// A property that the node does not take.
    #[error("unknown property `{name}` on `{node}`")]
    #[diagnostic(code(platform_dsl::unknown_property))]
    UnknownProperty {
        /// The property name written.
        name: String,
        /// The node.
        node: String,
        /// The property.
        #[label("not a property of `{node}`")]
        span: SourceSpan,
        /// Did you mean / what is allowed.
        #[help]
        help: String,
    },
    /// A property given twice on one node.
    #[error("property `{name}` is given twice on `{node}`")]
    #[diagnostic(code(platform_dsl::duplicate_property))]
    DuplicateProperty {
        /// The property.
        name: String,
        /// The node.
        node: String,
        /// The second one.
        #[label("second `{name}`")]
        span: SourceSpan,
        /// What to do.
        #[help]
        help: String,
    },
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
    /// More positional arguments than the node takes.
    #[error("too many arguments to `{node}`")]
    #[diagnostic(code(platform_dsl::extra_argument))]
    ExtraArgument {
        /// The node.
        node: String,
        /// The extra argument.
        #[label("unexpected argument")]
        span: SourceSpan,
        /// What the node takes.
        #[help]
        help: String,
    },
    /// A node that may appear once appears again.
    #[error("`{name}` appears twice in {parent}")]
    #[diagnostic(code(platform_dsl::duplicate_node))]
    DuplicateNode {
        /// The node name.
        name: String,
        /// Where.
        parent: String,
        /// The second one.
        #[label(primary, "second `{name}`")]
        span: SourceSpan,
        /// The first one.
        #[label("first one here")]
        first: SourceSpan,
        /// What to do.
        #[help]
        help: String,
    },
    /// A value of the wrong KDL type.
    #[error("{what} must be {expected}, found {found} `{text}`")]
    #[diagnostic(code(platform_dsl::wrong_type))]
    WrongType {
        /// Which value (`property \`size\` of \`reg\``).
        what: String,
        /// Expected type.
        expected: String,
        /// Found type.
        found: String,
        /// Original text.
        text: String,
        /// The value.
        #[label("expected {expected}")]
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
    /// `soc=` names no `soc` node.
    #[error("unknown soc `{name}`")]
    #[diagnostic(code(platform_dsl::unknown_soc))]
    UnknownSoc {
        /// The name written.
        name: String,
        /// The property.
        #[label("no `soc \"{name}\"` in this file")]
        span: SourceSpan,
        /// Did you mean / known socs.
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

/// A value with its span and original spelling.
#[derive(Clone, Debug, PartialEq)]
pub struct Sp<T> {
    /// The decoded value.
    pub value: T,
    /// Where it was written (for defaults: the node that would hold it).
    pub span: SourceSpan,
    /// How it was written (empty for defaults).
    pub text: String,
}

impl<T> Sp<T> {
    fn new(value: T, span: SourceSpan, text: impl Into<String>) -> Self {
        Sp {
            value,
            span,
            text: text.into(),
        }
    }
}

/// An MMIO window (`reg`, `distributor`, ...).
#[derive(Clone, Debug, PartialEq)]
pub struct RegDecl {
    /// Window name.
    pub name: String,
    /// Base address.
    pub base: Sp<u64>,
    /// Size.
    pub size: Sp<u64>,
    /// The node name.
    pub span: SourceSpan,
}

/// PPI or SPI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IrqKind {
    /// Private peripheral interrupt (INTID 16 + n).
    Ppi,
    /// Shared peripheral interrupt (INTID 32 + n).
    Spi,
}

/// An interrupt as written (`irq spi=1 trigger="level"`, `ppi=9`, timer PPIs).
#[derive(Clone, Debug, PartialEq)]
pub struct IrqDecl {
    /// PPI or SPI.
    pub kind: IrqKind,
    /// The PPI/SPI number (not the INTID).
    pub number: Sp<u32>,
    /// Trigger.
    pub trigger: Trigger,
}

/// The `gic` node.
#[derive(Clone, Debug, PartialEq)]
pub struct GicDecl {
    /// The node name.
    pub span: SourceSpan,
    /// `version=`.
    pub version: Sp<GicVersion>,
    /// `compatible=`.
    pub compatible: Sp<String>,
    /// `spis=`.
    pub spis: Sp<u32>,
    /// `distributor`.
    pub distributor: Option<RegDecl>,
    /// `redistributor`s.
    pub redistributors: Vec<RegDecl>,
    /// `cpu-interface`.
    pub cpu_interface: Option<RegDecl>,
    /// `hyp-interface`.
    pub hyp_interface: Option<RegDecl>,
    /// `virtual-cpu-interface`.
    pub virtual_cpu_interface: Option<RegDecl>,
    /// `its`.
    pub its: Option<RegDecl>,
    /// `maintenance-irq`.
    pub maintenance: Option<IrqDecl>,
}

/// The `timer` node (PPI numbers).
#[derive(Clone, Debug, PartialEq)]
pub struct TimerDecl {
    /// The node name.
    pub span: SourceSpan,
    /// `secure-phys=`.
    pub secure_phys: IrqDecl,
    /// `phys=`.
    pub phys: IrqDecl,
    /// `virt=`.
    pub virt: IrqDecl,
    /// `hyp-phys=`.
    pub hyp_phys: IrqDecl,
}

/// The `pmu` node.
#[derive(Clone, Debug, PartialEq)]
pub struct PmuDecl {
    /// The node name.
    pub span: SourceSpan,
    /// `ppi=`, or one `irq spi= cpu=` child per CPU.
    pub irqs: PmuIrqsDecl,
}

/// How the PMU's overflow interrupts are wired.
#[derive(Clone, Debug, PartialEq)]
pub enum PmuIrqsDecl {
    /// `pmu ppi=N`: one PPI for every CPU.
    Ppi(IrqDecl),
    /// `pmu { irq spi=N cpu=MPIDR; ... }`: one SPI per CPU, in the order written.
    PerCpuSpi(Vec<PmuSpiDecl>),
}

/// One `irq spi=N cpu=MPIDR` inside `pmu`.
#[derive(Clone, Debug, PartialEq)]
pub struct PmuSpiDecl {
    /// The SPI.
    pub irq: IrqDecl,
    /// MPIDR affinity of the CPU it belongs to.
    pub cpu: Sp<u64>,
}

/// A `device` node; `None`/empty fields are not given (a board override keeps the SoC's).
#[derive(Clone, Debug, PartialEq)]
pub struct DeviceDecl {
    /// Device name.
    pub name: Sp<String>,
    /// `compatible=` and following string arguments.
    pub compatible: Option<Vec<Sp<String>>>,
    /// `status=`: `true` for okay.
    pub okay: Option<Sp<bool>>,
    /// `reason=`.
    pub reason: Option<Sp<String>>,
    /// `bus-id=`.
    pub bus_id: Option<Sp<String>>,
    /// `reg` children.
    pub regs: Vec<RegDecl>,
    /// `irq` children.
    pub irqs: Vec<IrqDecl>,
    /// `clock` child.
    pub clock: Option<Sp<u64>>,
}

/// A `soc` node.
#[derive(Clone, Debug, PartialEq)]
pub struct SocDecl {
    /// SoC name.
    pub name: Sp<String>,
    /// GIC.
    pub gic: Option<GicDecl>,
    /// Timer.
    pub timer: Option<TimerDecl>,
    /// PMU.
    pub pmu: Option<PmuDecl>,
    /// Devices.
    pub devices: Vec<DeviceDecl>,
}

/// `topology sockets= clusters= cores=`.
#[derive(Clone, Debug, PartialEq)]
pub struct TopologyDecl {
    /// The node name.
    pub span: SourceSpan,
    /// Sockets.
    pub sockets: Sp<u32>,
    /// Clusters per socket.
    pub clusters: Sp<u32>,
    /// Cores per cluster.
    pub cores: Sp<u32>,
}

/// One `cpu` in `cpus`.
#[derive(Clone, Debug, PartialEq)]
pub struct CpuDecl {
    /// MPIDR affinity.
    pub mpidr: Sp<u64>,
    /// Socket index.
    pub socket: Sp<u32>,
    /// Cluster index.
    pub cluster: Sp<u32>,
    /// Core compatible (from `cpus core=` or the cpu's own `core=`).
    pub core: Sp<String>,
}

/// `memory "NAME" BASE size= node=`.
#[derive(Clone, Debug, PartialEq)]
pub struct MemoryDecl {
    /// Region name.
    pub name: Sp<String>,
    /// Base.
    pub base: Sp<u64>,
    /// Size.
    pub size: Sp<u64>,
    /// NUMA node.
    pub node: Sp<u32>,
}

/// `hypervisor load= size=`.
#[derive(Clone, Debug, PartialEq)]
pub struct HypervisorDecl {
    /// The node name.
    pub span: SourceSpan,
    /// Load address.
    pub load: Sp<u64>,
    /// Reserved size.
    pub size: Sp<u64>,
}

/// `quirk "NAME" matches=`.
#[derive(Clone, Debug, PartialEq)]
pub struct QuirkDecl {
    /// Quirk name.
    pub name: Sp<String>,
    /// Compatible or bus ID.
    pub matches: Sp<String>,
}

/// A `board` node; required parts are `None` when missing (already reported).
#[derive(Clone, Debug, PartialEq)]
pub struct BoardDecl {
    /// Board name.
    pub name: Sp<String>,
    /// `soc=`.
    pub soc: Option<Sp<String>>,
    /// `model`.
    pub model: Option<Sp<String>>,
    /// `support`.
    pub support: Option<Sp<SupportLevel>>,
    /// `verified-by`.
    pub verified_by: Option<Sp<Verification>>,
    /// `topology`.
    pub topology: Option<TopologyDecl>,
    /// `cpus` (None if the node is missing).
    pub cpus: Option<Vec<CpuDecl>>,
    /// `memory` nodes.
    pub memory: Vec<MemoryDecl>,
    /// `hypervisor`.
    pub hypervisor: Option<HypervisorDecl>,
    /// `console`.
    pub console: Option<Sp<String>>,
    /// Board-level GIC (overrides the SoC's).
    pub gic: Option<GicDecl>,
    /// Board-level timer.
    pub timer: Option<TimerDecl>,
    /// Board-level PMU.
    pub pmu: Option<PmuDecl>,
    /// Devices (new or overriding the SoC's by name).
    pub devices: Vec<DeviceDecl>,
    /// Quirks.
    pub quirks: Vec<QuirkDecl>,
}

/// Validates a parsed file: every board merged with its SoC and checked.
///
/// Returns the merged boards in file order, or every error found.
pub fn validate(nodes: &[Node]) -> Result<Vec<MergedBoard>, Vec<ValidateError>> {
    let mut cx = Cx::default();
    let mut socs: Vec<(SocDecl, &Node)> = Vec::new();
    let mut boards: Vec<(BoardDecl, &Node)> = Vec::new();
    let mut seen: HashMap<(String, String), SourceSpan> = HashMap::new();
    for node in nodes {
        match node.name.as_str() {
            "soc" => {
                if let Some(soc) = cx.soc(node) {
                    cx.unique(
                        &mut seen,
                        "soc",
                        &soc.name,
                        "give each `soc` node its own name",
                    );
                    socs.push((soc, node));
                }
            }
            "board" => {
                if let Some(board) = cx.board(node) {
                    cx.unique(
                        &mut seen,
                        "board",
                        &board.name,
                        "give each `board` its own name",
                    );
                    boards.push((board, node));
                }
            }
            _ => cx.unknown_node(node, "the top level", &["soc", "board"]),
        }
    }
    let mut merged = Vec::new();
    for (board, board_node) in &boards {
        let soc = match &board.soc {
            Some(name) => match socs.iter().find(|(s, _)| s.name.value == name.value) {
                Some(soc) => Some(soc),
                None => {
                    let known: Vec<&str> =
                        socs.iter().map(|(s, _)| s.name.value.as_str()).collect();
                    cx.errors.push(ValidateError::UnknownSoc {
                        name: name.value.clone(),
                        span: name.span,
                        help: did_you_mean(&name.value, &known, "socs in this file"),
                    });
                    None
                }
            },
            None => None,
        };
        // Nodes written at all (even if broken, in which case that error is already reported).
        let declared: Vec<&str> = soc
            .map(|(_, n)| *n)
            .into_iter()
            .chain([*board_node])
            .flat_map(|n| n.children.iter().map(|c| c.name.as_str()))
            .collect();
        let soc_known = soc.is_some();
        // A memory node that failed to decode is already reported: don't judge the
        // hypervisor's placement against the rest.
        let memory_complete = board.memory.len()
            == board_node
                .children
                .iter()
                .filter(|c| c.name == "memory")
                .count();
        let board = merge(soc.map(|(s, _)| s), board);
        cx.check_board(&board, soc_known, memory_complete, &declared);
        merged.push(board);
    }
    if cx.errors.is_empty() {
        Ok(merged)
    } else {
        Err(cx.errors)
    }
}

/// Levenshtein distance between two short names.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// "did you mean `x`?" when a known name is close, then the list of known names.
pub fn did_you_mean(name: &str, known: &[&str], what: &str) -> String {
    let best = known
        .iter()
        .map(|k| (edit_distance(name, k), *k))
        .min_by_key(|(d, _)| *d);
    let list = if known.is_empty() {
        format!("there are no {what}")
    } else {
        format!("{what}: {}", known.join(", "))
    };
    match best {
        Some((d, k)) if d <= (name.chars().count() / 3).max(2) => {
            format!("did you mean `{k}`? ({list})")
        }
        _ => list,
    }
}

/// Error collector with the decoding helpers.
#[derive(Default)]
struct Cx {
    errors: Vec<ValidateError>,
}

/// What a node takes: property names and child node names.
struct Shape<'a> {
    props: &'a [&'a str],
    children: &'a [&'a str],
    max_args: usize,
    args_help: &'a str,
}

fn title(node: &Node) -> String {
    match node.args.first().map(|a| &a.kind) {
        Some(ValueKind::Str(s)) => format!("{} \"{s}\"", node.name),
        _ => node.name.clone(),
    }
}

impl Cx {
    fn unknown_node(&mut self, node: &Node, parent: &str, known: &[&str]) {
        self.errors.push(ValidateError::UnknownNode {
            name: node.name.clone(),
            parent: parent.to_owned(),
            span: node.name_span,
            help: did_you_mean(&node.name, known, &format!("nodes allowed in {parent}")),
        });
    }

    /// Checks properties (unknown, duplicate), extra arguments and unknown children.
    fn shape(&mut self, node: &Node, shape: &Shape<'_>) {
        let t = title(node);
        for (i, p) in node.props.iter().enumerate() {
            if !shape.props.contains(&p.name.as_str()) {
                self.errors.push(ValidateError::UnknownProperty {
                    name: p.name.clone(),
                    node: t.clone(),
                    span: p.value.span,
                    help: did_you_mean(
                        &p.name,
                        shape.props,
                        &format!("properties of `{}`", node.name),
                    ),
                });
            } else if node.props[..i].iter().any(|q| q.name == p.name) {
                self.errors.push(ValidateError::DuplicateProperty {
                    name: p.name.clone(),
                    node: t.clone(),
                    span: p.value.span,
                    help: format!(
                        "keep one `{}=`; KDL would silently use the last one",
                        p.name
                    ),
                });
            }
        }
        if let Some(extra) = node.args.get(shape.max_args) {
            self.errors.push(ValidateError::ExtraArgument {
                node: t.clone(),
                span: extra.span,
                help: shape.args_help.to_owned(),
            });
        }
        let parent = format!("`{t}`");
        for c in &node.children {
            if !shape.children.contains(&c.name.as_str()) {
                if shape.children.is_empty() {
                    self.errors.push(ValidateError::UnknownNode {
                        name: c.name.clone(),
                        parent: parent.clone(),
                        span: c.name_span,
                        help: format!(
                            "`{}` takes no child nodes; remove the `{{ ... }}` block",
                            node.name
                        ),
                    });
                } else {
                    self.unknown_node(c, &parent, shape.children);
                }
            }
        }
    }

    /// At most one child called `name`; reports the others.
    fn single<'n>(&mut self, node: &'n Node, name: &str) -> Option<&'n Node> {
        let mut found = node.children.iter().filter(|c| c.name == name);
        let first = found.next()?;
        for again in found {
            self.errors.push(ValidateError::DuplicateNode {
                name: name.to_owned(),
                parent: format!("`{}`", title(node)),
                span: again.name_span,
                first: first.name_span,
                help: format!("keep a single `{name}` node"),
            });
        }
        Some(first)
    }

    fn missing_node(&mut self, node: &Node, child: &str, example: &str) {
        self.errors.push(ValidateError::MissingNode {
            parent: format!("`{}`", title(node)),
            child: child.to_owned(),
            span: node.name_span,
            help: format!("add `{example}` inside `{}`", title(node)),
        });
    }

    fn wrong_type(&mut self, what: String, expected: &str, v: &Value, example: String) {
        self.errors.push(ValidateError::WrongType {
            what,
            expected: expected.to_owned(),
            found: v.kind.describe().to_owned(),
            text: v.text.clone(),
            span: v.span,
            help: example,
        });
    }

    fn string_value(&mut self, v: &Value, what: String, example: &str) -> Option<Sp<String>> {
        match &v.kind {
            ValueKind::Str(s) => Some(Sp::new(s.clone(), v.span, v.text.clone())),
            _ => {
                self.wrong_type(
                    what,
                    "a string",
                    v,
                    format!("write it in double quotes, e.g. {example}"),
                );
                None
            }
        }
    }

    fn int_value(&mut self, v: &Value, what: String, max: u64, example: &str) -> Option<Sp<u64>> {
        match v.kind {
            ValueKind::Int(i) if i >= 0 && i <= i128::from(max) => u64::try_from(i)
                .ok()
                .map(|n| Sp::new(n, v.span, v.text.clone())),
            ValueKind::Int(_) => {
                self.errors.push(ValidateError::OutOfRange {
                    what,
                    text: v.text.clone(),
                    reason: format!("must be between 0 and {max:#x}"),
                    span: v.span,
                    help: format!(
                        "write a non-negative integer no larger than {max:#x}, e.g. {example}"
                    ),
                });
                None
            }
            _ => {
                self.wrong_type(
                    what,
                    "an integer",
                    v,
                    format!("write a number without quotes, e.g. {example}"),
                );
                None
            }
        }
    }

    /// Required positional string argument `idx`.
    fn arg_str(
        &mut self,
        node: &Node,
        idx: usize,
        what: &str,
        example: &str,
    ) -> Option<Sp<String>> {
        match node.args.get(idx) {
            Some(v) => self.string_value(v, format!("{what} of `{}`", node.name), example),
            None => {
                self.errors.push(ValidateError::Missing {
                    node: node.name.clone(),
                    what: what.to_owned(),
                    span: node.name_span,
                    help: format!("write it after the node name, e.g. `{example}`"),
                });
                None
            }
        }
    }

    /// Required positional integer argument `idx`.
    fn arg_int(
        &mut self,
        node: &Node,
        idx: usize,
        what: &str,
        max: u64,
        example: &str,
    ) -> Option<Sp<u64>> {
        match node.args.get(idx) {
            Some(v) => self.int_value(v, format!("{what} of `{}`", title(node)), max, example),
            None => {
                self.errors.push(ValidateError::Missing {
                    node: title(node),
                    what: what.to_owned(),
                    span: node.name_span,
                    help: format!("write it as an argument, e.g. `{example}`"),
                });
                None
            }
        }
    }

    fn prop_str(&mut self, node: &Node, name: &str, example: &str) -> Option<Sp<String>> {
        let p = node.prop(name)?;
        self.string_value(
            &p.value,
            format!("property `{name}` of `{}`", title(node)),
            example,
        )
    }

    fn prop_int(&mut self, node: &Node, name: &str, max: u64, example: &str) -> Option<Sp<u64>> {
        let p = node.prop(name)?;
        self.int_value(
            &p.value,
            format!("property `{name}` of `{}`", title(node)),
            max,
            example,
        )
    }

    fn prop_u32(&mut self, node: &Node, name: &str, example: &str) -> Option<Sp<u32>> {
        self.prop_int(node, name, u64::from(u32::MAX), example)
            .map(|s| Sp::new(u32::try_from(s.value).unwrap_or(u32::MAX), s.span, s.text))
    }

    fn require<T>(&mut self, node: &Node, name: &str, v: Option<T>, example: &str) -> Option<T> {
        if v.is_none() && node.prop(name).is_none() {
            self.errors.push(ValidateError::Missing {
                node: title(node),
                what: format!("property `{name}`"),
                span: node.name_span,
                help: format!("add `{example}` to `{}`", title(node)),
            });
        }
        v
    }

    /// Optional `trigger="level"|"edge"` of an interrupt node (level when absent or wrong;
    /// a wrong value is reported).
    fn prop_trigger(&mut self, node: &Node) -> Trigger {
        self.prop_str(node, "trigger", "trigger=\"level\"")
            .and_then(|t| {
                self.choice(
                    t,
                    "trigger",
                    &[("level", Trigger::Level), ("edge", Trigger::Edge)],
                )
            })
            .map_or(Trigger::Level, |t| t.value)
    }

    /// One of a fixed set of string values.
    fn choice<T: Copy>(
        &mut self,
        v: Sp<String>,
        what: &str,
        options: &[(&str, T)],
    ) -> Option<Sp<T>> {
        match options.iter().find(|(k, _)| *k == v.value) {
            Some((_, t)) => Some(Sp::new(*t, v.span, v.text)),
            None => {
                let names: Vec<&str> = options.iter().map(|(k, _)| *k).collect();
                self.errors.push(ValidateError::OutOfRange {
                    what: what.to_owned(),
                    text: v.text.clone(),
                    reason: format!("must be one of {}", quoted(&names)),
                    span: v.span,
                    help: did_you_mean(&v.value, &names, "allowed values"),
                });
                None
            }
        }
    }

    fn unique(
        &mut self,
        seen: &mut HashMap<(String, String), SourceSpan>,
        kind: &str,
        name: &Sp<String>,
        help: &str,
    ) {
        let key = (kind.to_owned(), name.value.clone());
        if let Some(first) = seen.get(&key) {
            self.errors.push(ValidateError::Duplicate {
                kind: kind.to_owned(),
                name: name.value.clone(),
                span: name.span,
                first: *first,
                help: help.to_owned(),
            });
        } else {
            seen.insert(key, name.span);
        }
    }

    // ----- node decoders -------------------------------------------------------------

    fn soc(&mut self, node: &Node) -> Option<SocDecl> {
        self.shape(
            node,
            &Shape {
                props: &[],
                children: &["gic", "timer", "pmu", "device"],
                max_args: 1,
                args_help: "a soc takes only its name: `soc \"NAME\" { ... }`",
            },
        );
        let name = self.arg_str(node, 0, "the name", "soc \"my-soc\"")?;
        let gic = self.single(node, "gic").and_then(|n| self.gic(n));
        let timer = self.single(node, "timer").and_then(|n| self.timer(n));
        let pmu = self.single(node, "pmu").and_then(|n| self.pmu(n));
        let devices = self.devices(node);
        Some(SocDecl {
            name,
            gic,
            timer,
            pmu,
            devices,
        })
    }

    fn devices(&mut self, node: &Node) -> Vec<DeviceDecl> {
        let mut seen = HashMap::new();
        let mut out = Vec::new();
        for c in node.children.iter().filter(|c| c.name == "device") {
            if let Some(d) = self.device(c) {
                self.unique(
                    &mut seen,
                    "device name",
                    &d.name,
                    "device names must be unique; rename one (a board overrides a SoC device by reusing its name in the board)",
                );
                out.push(d);
            }
        }
        out
    }

    fn board(&mut self, node: &Node) -> Option<BoardDecl> {
        const CHILDREN: &[&str] = &[
            "model",
            "support",
            "verified-by",
            "topology",
            "cpus",
            "memory",
            "hypervisor",
            "console",
            "gic",
            "timer",
            "pmu",
            "device",
            "quirk",
        ];
        self.shape(
            node,
            &Shape {
                props: &["soc"],
                children: CHILDREN,
                max_args: 1,
                args_help:
                    "a board takes its name and `soc=`: `board \"NAME\" soc=\"SOC\" { ... }`",
            },
        );
        let name = self.arg_str(node, 0, "the name", "board \"my-board\" soc=\"my-soc\"")?;
        let soc = self.prop_str(node, "soc", "soc=\"my-soc\"");
        let model = self
            .single(node, "model")
            .and_then(|n| self.text_node(n, "model \"Vendor Board\""));
        let support = self
            .single(node, "support")
            .and_then(|n| self.text_node(n, "support \"supported\""))
            .and_then(|s| {
                self.choice(
                    s,
                    "support level",
                    &[
                        ("supported", SupportLevel::Supported),
                        ("experimental", SupportLevel::Experimental),
                        ("community", SupportLevel::Community),
                    ],
                )
            });
        let verified_by = self
            .single(node, "verified-by")
            .and_then(|n| self.verified_by(n));
        let topology = self.single(node, "topology").and_then(|n| self.topology(n));
        let cpus = self.single(node, "cpus").map(|n| self.cpus(n));
        let mut memory = Vec::new();
        let mut seen = HashMap::new();
        for c in node.children.iter().filter(|c| c.name == "memory") {
            if let Some(m) = self.memory(c) {
                self.unique(
                    &mut seen,
                    "memory region",
                    &m.name,
                    "give each memory region its own name",
                );
                memory.push(m);
            }
        }
        let hypervisor = self
            .single(node, "hypervisor")
            .and_then(|n| self.hypervisor(n));
        let console = self
            .single(node, "console")
            .and_then(|n| self.text_node(n, "console \"uart0\""));
        let gic = self.single(node, "gic").and_then(|n| self.gic(n));
        let timer = self.single(node, "timer").and_then(|n| self.timer(n));
        let pmu = self.single(node, "pmu").and_then(|n| self.pmu(n));
        let devices = self.devices(node);
        let quirks = node
            .children
            .iter()
            .filter(|c| c.name == "quirk")
            .filter_map(|c| self.quirk(c))
            .collect();
        for (child, example) in [
            ("model", "model \"Vendor Board\""),
            ("support", "support \"supported\""),
            ("verified-by", "verified-by \"none\""),
            ("topology", "topology sockets=1 clusters=1 cores=4"),
            ("cpus", "cpus core=\"arm,cortex-a53\" { cpu 0x0 }"),
            ("memory", "memory \"dram0\" 0x4000_0000 size=0x8000_0000"),
            ("hypervisor", "hypervisor load=0x4020_0000 size=0x0200_0000"),
            ("console", "console \"uart0\""),
        ] {
            if !node.children.iter().any(|c| c.name == child) {
                self.missing_node(node, child, example);
            }
        }
        if soc.is_none() && node.prop("soc").is_none() {
            self.errors.push(ValidateError::Missing {
                node: title(node),
                what: "property `soc`".to_owned(),
                span: node.name_span,
                help:
                    "name the SoC this board is built on, e.g. `board \"my-board\" soc=\"my-soc\"`"
                        .to_owned(),
            });
        }
        Some(BoardDecl {
            name,
            soc,
            model,
            support,
            verified_by,
            topology,
            cpus,
            memory,
            hypervisor,
            console,
            gic,
            timer,
            pmu,
            devices,
            quirks,
        })
    }

    /// A node whose only content is one string argument (`model "..."`).
    fn text_node(&mut self, node: &Node, example: &str) -> Option<Sp<String>> {
        self.shape(
            node,
            &Shape {
                props: &[],
                children: &[],
                max_args: 1,
                args_help: "this node takes a single string",
            },
        );
        self.arg_str(node, 0, "the value", example)
    }

    fn verified_by(&mut self, node: &Node) -> Option<Sp<Verification>> {
        let kind = self.arg_str(
            node,
            0,
            "a method (\"qemu\", \"dtb\" or \"none\")",
            "verified-by \"none\"",
        )?;
        let props: &[&str] = match kind.value.as_str() {
            "qemu" => &["machine", "cpu", "smp", "memory-mib", "extra"],
            "dtb" => &["path"],
            _ => &[],
        };
        self.shape(
            node,
            &Shape {
                props,
                children: &[],
                max_args: 1,
                args_help: "write `verified-by \"qemu\" machine=... cpu=... smp=N memory-mib=N`, `verified-by \"dtb\" path=\"...\"` or `verified-by \"none\"`",
            },
        );
        let v = match kind.value.as_str() {
            "qemu" => {
                let machine = self.prop_str(node, "machine", "machine=\"virt,virtualization=on\"");
                let machine = self.require(
                    node,
                    "machine",
                    machine,
                    "machine=\"virt,virtualization=on\"",
                );
                let cpu = self.prop_str(node, "cpu", "cpu=\"cortex-a57\"");
                let cpu = self.require(node, "cpu", cpu, "cpu=\"cortex-a57\"");
                let smp = self.prop_u32(node, "smp", "smp=4");
                let smp = self.require(node, "smp", smp, "smp=4");
                let mem = self.prop_int(node, "memory-mib", u64::MAX, "memory-mib=2048");
                let mem = self.require(node, "memory-mib", mem, "memory-mib=2048");
                let extra = self.prop_str(node, "extra", "extra=\"-audiodev none,id=snd0\"");
                Verification::Qemu {
                    machine: machine?.value,
                    cpu: cpu?.value,
                    smp: smp?.value,
                    memory_mib: mem?.value,
                    extra: extra
                        .map(|e| e.value.split_whitespace().map(str::to_owned).collect())
                        .unwrap_or_default(),
                }
            }
            "dtb" => {
                let path = self.prop_str(node, "path", "path=\"vendor/board.dtb\"");
                let path = self.require(node, "path", path, "path=\"vendor/board.dtb\"");
                Verification::DeviceTree { dtb: path?.value }
            }
            "none" => Verification::None,
            _ => {
                self.choice(
                    kind,
                    "verification method",
                    &[("qemu", ()), ("dtb", ()), ("none", ())],
                );
                return None;
            }
        };
        Some(Sp::new(v, kind.span, kind.text))
    }

    fn topology(&mut self, node: &Node) -> Option<TopologyDecl> {
        self.shape(
            node,
            &Shape {
                props: &["sockets", "clusters", "cores"],
                children: &[],
                max_args: 0,
                args_help: "write `topology sockets=1 clusters=1 cores=4`",
            },
        );
        let get = |cx: &mut Self, name: &str| {
            let example = format!("{name}=1");
            let v = cx.prop_u32(node, name, &example);
            let v = cx.require(node, name, v, &example)?;
            if v.value == 0 {
                cx.errors.push(ValidateError::OutOfRange {
                    what: format!("topology `{name}`"),
                    text: v.text.clone(),
                    reason: "must be at least 1".to_owned(),
                    span: v.span,
                    help: format!("write `{name}=1` or more"),
                });
                return None;
            }
            Some(v)
        };
        let sockets = get(self, "sockets");
        let clusters = get(self, "clusters");
        let cores = get(self, "cores");
        Some(TopologyDecl {
            span: node.name_span,
            sockets: sockets?,
            clusters: clusters?,
            cores: cores?,
        })
    }

    fn cpus(&mut self, node: &Node) -> Vec<CpuDecl> {
        self.shape(
            node,
            &Shape {
                props: &["core"],
                children: &["cpu"],
                max_args: 0,
                args_help: "write `cpus core=\"arm,cortex-a53\" { cpu 0x0 ... }`",
            },
        );
        let core = self.prop_str(node, "core", "core=\"arm,cortex-a53\"");
        let mut out = Vec::new();
        for c in node.children.iter().filter(|c| c.name == "cpu") {
            self.shape(
                c,
                &Shape {
                    props: &["socket", "cluster", "core"],
                    children: &[],
                    max_args: 1,
                    args_help: "write `cpu 0x100 socket=0 cluster=1`",
                },
            );
            let mpidr = self.arg_int(c, 0, "the MPIDR affinity", u64::MAX, "cpu 0x0");
            let default = |span| Sp::new(0u32, span, "");
            let socket = self
                .prop_u32(c, "socket", "socket=0")
                .unwrap_or(default(c.name_span));
            let cluster = self
                .prop_u32(c, "cluster", "cluster=0")
                .unwrap_or(default(c.name_span));
            let own_core = self.prop_str(c, "core", "core=\"arm,cortex-a53\"");
            let cpu_core = match (own_core, &core) {
                (Some(own), _) => Some(own),
                (None, Some(all)) => Some(all.clone()),
                (None, None) => {
                    if node.prop("core").is_none() && c.prop("core").is_none() {
                        self.errors.push(ValidateError::Missing {
                            node: "cpu".to_owned(),
                            what: "a core type".to_owned(),
                            span: c.name_span,
                            help: "add `core=\"arm,cortex-a53\"` to `cpus` (all CPUs) or to this `cpu`".to_owned(),
                        });
                    }
                    None
                }
            };
            if let (Some(mpidr), Some(core)) = (mpidr, cpu_core) {
                out.push(CpuDecl {
                    mpidr,
                    socket,
                    cluster,
                    core,
                });
            }
        }
        if node.children.iter().all(|c| c.name != "cpu") {
            self.missing_node(node, "cpu", "cpu 0x0");
        }
        out
    }

    fn memory(&mut self, node: &Node) -> Option<MemoryDecl> {
        self.shape(
            node,
            &Shape {
                props: &["size", "node"],
                children: &[],
                max_args: 2,
                args_help: "write `memory \"dram0\" 0x4000_0000 size=0x8000_0000 node=0`",
            },
        );
        let name = self.arg_str(
            node,
            0,
            "the name",
            "memory \"dram0\" 0x4000_0000 size=0x8000_0000",
        );
        let base = self.arg_int(
            node,
            1,
            "the base address",
            u64::MAX,
            "memory \"dram0\" 0x4000_0000 size=0x8000_0000",
        );
        let size = self.prop_int(node, "size", u64::MAX, "size=0x8000_0000");
        let size = self.require(node, "size", size, "size=0x8000_0000");
        let numa = self
            .prop_u32(node, "node", "node=0")
            .unwrap_or(Sp::new(0, node.name_span, ""));
        Some(MemoryDecl {
            name: name?,
            base: base?,
            size: size?,
            node: numa,
        })
    }

    fn hypervisor(&mut self, node: &Node) -> Option<HypervisorDecl> {
        self.shape(
            node,
            &Shape {
                props: &["load", "size"],
                children: &[],
                max_args: 0,
                args_help: "write `hypervisor load=0x4020_0000 size=0x0200_0000`",
            },
        );
        let load = self.prop_int(node, "load", u64::MAX, "load=0x4020_0000");
        let load = self.require(node, "load", load, "load=0x4020_0000");
        let size = self.prop_int(node, "size", u64::MAX, "size=0x0200_0000");
        let size = self.require(node, "size", size, "size=0x0200_0000");
        Some(HypervisorDecl {
            span: node.name_span,
            load: load?,
            size: size?,
        })
    }

    fn quirk(&mut self, node: &Node) -> Option<QuirkDecl> {
        self.shape(
            node,
            &Shape {
                props: &["matches"],
                children: &[],
                max_args: 1,
                args_help: "write `quirk \"NAME\" matches=\"compatible-or-bus-id\"`",
            },
        );
        let name = self.arg_str(
            node,
            0,
            "the name",
            "quirk \"rtl8153-usb-nic\" matches=\"usb:0bda:8153\"",
        );
        let matches = self.prop_str(node, "matches", "matches=\"usb:0bda:8153\"");
        let matches = self.require(node, "matches", matches, "matches=\"usb:0bda:8153\"");
        Some(QuirkDecl {
            name: name?,
            matches: matches?,
        })
    }

    /// `NAME ADDR size=SIZE` (also `reg ADDR size=SIZE name="..."`).
    fn reg(&mut self, node: &Node, name: String) -> Option<RegDecl> {
        self.shape(
            node,
            &Shape {
                props: &["size", "name"],
                children: &[],
                max_args: 1,
                args_help: "write `NAME 0x0900_0000 size=0x1000`",
            },
        );
        let example = format!("{} 0x0900_0000 size=0x1000", node.name);
        let base = self.arg_int(node, 0, "the base address", u64::MAX, &example);
        let size = self.prop_int(node, "size", u64::MAX, "size=0x1000");
        let size = self.require(node, "size", size, "size=0x1000");
        let name = self
            .prop_str(node, "name", "name=\"regs\"")
            .map(|s| s.value)
            .unwrap_or(name);
        Some(RegDecl {
            name,
            base: base?,
            size: size?,
            span: node.name_span,
        })
    }

    /// `irq spi=N trigger="level"` / `maintenance-irq ppi=N`.
    fn irq(&mut self, node: &Node) -> Option<IrqDecl> {
        self.shape(
            node,
            &Shape {
                props: &["spi", "ppi", "trigger"],
                children: &[],
                max_args: 0,
                args_help: "write `irq spi=1 trigger=\"level\"` (or `ppi=N`)",
            },
        );
        let spi = self.prop_u32(node, "spi", "spi=1");
        let ppi = self.prop_u32(node, "ppi", "ppi=9");
        let trigger = self.prop_trigger(node);
        match (spi, ppi) {
            (Some(n), None) => Some(IrqDecl {
                kind: IrqKind::Spi,
                number: n,
                trigger,
            }),
            (None, Some(n)) => Some(IrqDecl {
                kind: IrqKind::Ppi,
                number: n,
                trigger,
            }),
            (Some(_), Some(p)) => {
                self.errors.push(ValidateError::Gic {
                    problem: format!("`{}` gives both `spi=` and `ppi=`", node.name),
                    span: p.span,
                    label: "second interrupt number".to_owned(),
                    help: "an interrupt is either an SPI (`spi=N`) or a PPI (`ppi=N`); keep one"
                        .to_owned(),
                });
                None
            }
            (None, None) => {
                if node.prop("spi").is_none() && node.prop("ppi").is_none() {
                    self.errors.push(ValidateError::Missing {
                        node: node.name.clone(),
                        what: "an interrupt number".to_owned(),
                        span: node.name_span,
                        help: format!(
                            "write `{} spi=N` (INTID 32+N) or `{} ppi=N` (INTID 16+N)",
                            node.name, node.name
                        ),
                    });
                }
                None
            }
        }
    }

    fn gic(&mut self, node: &Node) -> Option<GicDecl> {
        const CHILDREN: &[&str] = &[
            "distributor",
            "redistributor",
            "cpu-interface",
            "hyp-interface",
            "virtual-cpu-interface",
            "its",
            "maintenance-irq",
        ];
        self.shape(
            node,
            &Shape {
                props: &["version", "compatible", "spis"],
                children: CHILDREN,
                max_args: 0,
                args_help: "write `gic version=3 compatible=\"arm,gic-v3\" spis=256 { ... }`",
            },
        );
        let version = self.prop_u32(node, "version", "version=3");
        let version = self.require(node, "version", version, "version=3").and_then(|v| match v.value {
            2 => Some(Sp::new(GicVersion::V2, v.span, v.text)),
            3 => Some(Sp::new(GicVersion::V3, v.span, v.text)),
            _ => {
                self.errors.push(ValidateError::OutOfRange {
                    what: "GIC version".to_owned(),
                    text: v.text.clone(),
                    reason: "only GICv2 and GICv3 are supported".to_owned(),
                    span: v.span,
                    help: "write `version=2` (GIC-400 and other GICv2) or `version=3` (GICv3, GICv4 in v3 mode)".to_owned(),
                });
                None
            }
        });
        let compatible = self.prop_str(node, "compatible", "compatible=\"arm,gic-v3\"");
        let compatible = self.require(node, "compatible", compatible, "compatible=\"arm,gic-v3\"");
        let spis = self.prop_u32(node, "spis", "spis=256");
        let spis = self.require(node, "spis", spis, "spis=256").and_then(|s| {
            if s.value == 0 || s.value > MAX_SPIS {
                self.errors.push(ValidateError::OutOfRange {
                    what: "`spis`".to_owned(),
                    text: s.text.clone(),
                    reason: format!("a GIC implements 1 to {MAX_SPIS} SPIs"),
                    span: s.span,
                    help: format!("write the number of SPIs the GIC implements (GICD_TYPER.ITLinesNumber), at most {MAX_SPIS}"),
                });
                return None;
            }
            Some(s)
        });
        let window = |cx: &mut Self, child: &str, name: &str| {
            cx.single(node, child)
                .and_then(|n| cx.reg(n, name.to_owned()))
        };
        let distributor = window(self, "distributor", "gicd");
        let cpu_interface = window(self, "cpu-interface", "gicc");
        let hyp_interface = window(self, "hyp-interface", "gich");
        let virtual_cpu_interface = window(self, "virtual-cpu-interface", "gicv");
        let its = window(self, "its", "its");
        let redistributors = node
            .children
            .iter()
            .filter(|c| c.name == "redistributor")
            .enumerate()
            .filter_map(|(i, c)| {
                self.reg(
                    c,
                    if i == 0 {
                        "gicr".to_owned()
                    } else {
                        format!("gicr{i}")
                    },
                )
            })
            .collect();
        let maintenance = self
            .single(node, "maintenance-irq")
            .and_then(|n| self.irq(n));
        if distributor.is_none() && !node.children.iter().any(|c| c.name == "distributor") {
            self.missing_node(node, "distributor", "distributor 0x0800_0000 size=0x1_0000");
        }
        if maintenance.is_none() && !node.children.iter().any(|c| c.name == "maintenance-irq") {
            self.missing_node(node, "maintenance-irq", "maintenance-irq ppi=9");
        }
        Some(GicDecl {
            span: node.name_span,
            version: version?,
            compatible: compatible?,
            spis: spis?,
            distributor,
            redistributors,
            cpu_interface,
            hyp_interface,
            virtual_cpu_interface,
            its,
            maintenance,
        })
    }

    fn timer(&mut self, node: &Node) -> Option<TimerDecl> {
        const PROPS: &[&str] = &["secure-phys", "phys", "virt", "hyp-phys"];
        self.shape(
            node,
            &Shape {
                props: PROPS,
                children: &[],
                max_args: 0,
                args_help: "write `timer secure-phys=13 phys=14 virt=11 hyp-phys=10` (PPI numbers)",
            },
        );
        let ppi = |cx: &mut Self, name: &str| {
            let example = format!("{name}=14");
            let v = cx.prop_u32(node, name, &example);
            cx.require(node, name, v, &example).map(|number| IrqDecl {
                kind: IrqKind::Ppi,
                number,
                trigger: Trigger::Level,
            })
        };
        let secure_phys = ppi(self, "secure-phys");
        let phys = ppi(self, "phys");
        let virt = ppi(self, "virt");
        let hyp_phys = ppi(self, "hyp-phys");
        Some(TimerDecl {
            span: node.name_span,
            secure_phys: secure_phys?,
            phys: phys?,
            virt: virt?,
            hyp_phys: hyp_phys?,
        })
    }

    fn pmu(&mut self, node: &Node) -> Option<PmuDecl> {
        const FORMS: &str =
            "write `pmu ppi=7` (one PPI for all CPUs) or `pmu { irq spi=16 cpu=0x0; irq spi=17 cpu=0x1; ... }` (one SPI per CPU)";
        self.shape(
            node,
            &Shape {
                props: &["ppi"],
                children: &["irq"],
                max_args: 0,
                args_help: FORMS,
            },
        );
        let ppi = self.prop_u32(node, "ppi", "ppi=7");
        let children: Vec<&Node> = node.children.iter().filter(|c| c.name == "irq").collect();
        let irqs = match (node.prop("ppi"), children.first()) {
            (Some(p), Some(first)) => {
                self.errors.push(ValidateError::Pmu {
                    problem: "`pmu` gives both `ppi=` and per-CPU `irq` children".to_owned(),
                    span: first.name_span,
                    label: "per-CPU SPI".to_owned(),
                    help: format!(
                        "keep one form: `ppi={}` if every CPU's overflow line is that PPI, or the `irq spi= cpu=` list if the device tree gives one SPI per CPU with `interrupt-affinity`",
                        p.value.text
                    ),
                });
                return None;
            }
            (Some(_), None) => PmuIrqsDecl::Ppi(IrqDecl {
                kind: IrqKind::Ppi,
                number: ppi?,
                trigger: Trigger::Level,
            }),
            (None, Some(_)) => {
                let spis: Vec<Option<PmuSpiDecl>> =
                    children.iter().map(|c| self.pmu_spi(c)).collect();
                // A broken entry is already reported.
                PmuIrqsDecl::PerCpuSpi(spis.into_iter().collect::<Option<Vec<_>>>()?)
            }
            (None, None) => {
                self.errors.push(ValidateError::Missing {
                    node: title(node),
                    what: "its interrupts".to_owned(),
                    span: node.name_span,
                    help: FORMS.to_owned(),
                });
                return None;
            }
        };
        Some(PmuDecl {
            span: node.name_span,
            irqs,
        })
    }

    /// `irq spi=N cpu=MPIDR [trigger=]` inside `pmu`.
    fn pmu_spi(&mut self, node: &Node) -> Option<PmuSpiDecl> {
        self.shape(
            node,
            &Shape {
                // `ppi` is reported below with a better help than "unknown property".
                props: &["spi", "cpu", "trigger", "ppi"],
                children: &[],
                max_args: 0,
                args_help: "write `irq spi=16 cpu=0x0` (the SPI number and the MPIDR of its CPU)",
            },
        );
        if let Some(p) = node.prop("ppi") {
            self.errors.push(ValidateError::Pmu {
                problem: "a per-CPU PMU interrupt is an SPI, not a PPI".to_owned(),
                span: p.value.span,
                label: "PPI".to_owned(),
                help: format!(
                    "if every CPU's overflow line is PPI {0}, write `pmu ppi={0}` without children; otherwise write `spi=N` here",
                    p.value.text
                ),
            });
            return None;
        }
        let spi = self.prop_u32(node, "spi", "spi=16");
        let spi = self.require(node, "spi", spi, "spi=16");
        let cpu = self.prop_int(node, "cpu", u64::MAX, "cpu=0x0");
        let cpu = self.require(node, "cpu", cpu, "cpu=0x0");
        let trigger = self.prop_trigger(node);
        Some(PmuSpiDecl {
            irq: IrqDecl {
                kind: IrqKind::Spi,
                number: spi?,
                trigger,
            },
            cpu: cpu?,
        })
    }

    fn device(&mut self, node: &Node) -> Option<DeviceDecl> {
        self.shape(
            node,
            &Shape {
                props: &["compatible", "status", "reason", "bus-id"],
                children: &["reg", "irq", "clock"],
                // Extra string arguments are compatibles; checked below.
                max_args: usize::MAX,
                args_help: "further compatible strings go right after `compatible=\"...\"`; other arguments are not allowed",
            },
        );
        let name = self.arg_str(
            node,
            0,
            "the name",
            "device \"uart0\" compatible=\"arm,pl011\"",
        )?;
        // `compatible="a" "b"`: the property, then further string arguments.
        let compatible = node.prop("compatible").map(|_| {
            let mut list: Vec<Sp<String>> = self
                .prop_str(node, "compatible", "compatible=\"arm,pl011\"")
                .into_iter()
                .collect();
            for extra in node.args.iter().skip(1) {
                if let Some(s) =
                    self.string_value(extra, "a compatible string".to_owned(), "\"arm,primecell\"")
                {
                    list.push(s);
                }
            }
            list
        });
        if node.prop("compatible").is_none() {
            if let Some(extra) = node.args.get(1) {
                self.errors.push(ValidateError::ExtraArgument {
                    node: title(node),
                    span: extra.span,
                    help: "compatible strings follow `compatible=`: `device \"x\" compatible=\"a\" \"b\"`".to_owned(),
                });
            }
        }
        let okay = self
            .prop_str(node, "status", "status=\"disabled\"")
            .and_then(|s| self.choice(s, "device status", &[("okay", true), ("disabled", false)]));
        let reason = self.prop_str(node, "reason", "reason=\"why it cannot be used\"");
        let bus_id = self.prop_str(node, "bus-id", "bus-id=\"usb:0bda:8153\"");
        let regs = node
            .children
            .iter()
            .filter(|c| c.name == "reg")
            .enumerate()
            .filter_map(|(i, c)| {
                self.reg(
                    c,
                    if i == 0 {
                        "regs".to_owned()
                    } else {
                        format!("regs{i}")
                    },
                )
            })
            .collect();
        let irqs = node
            .children
            .iter()
            .filter(|c| c.name == "irq")
            .filter_map(|c| self.irq(c))
            .collect();
        let clock = self.single(node, "clock").and_then(|c| {
            self.shape(
                c,
                &Shape {
                    props: &[],
                    children: &[],
                    max_args: 1,
                    args_help: "write `clock 24_000_000` (Hz)",
                },
            );
            self.arg_int(c, 0, "the frequency in Hz", u64::MAX, "clock 24_000_000")
        });
        Some(DeviceDecl {
            name,
            compatible,
            okay,
            reason,
            bus_id,
            regs,
            irqs,
            clock,
        })
    }

    // ----- rules on the merged board ---------------------------------------------------

    fn check_board(
        &mut self,
        b: &MergedBoard,
        soc_resolved: bool,
        memory_complete: bool,
        declared: &[&str],
    ) {
        let board = format!("board \"{}\"", b.name.value);
        if soc_resolved {
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
                if !present && !declared.contains(&child) {
                    self.errors.push(ValidateError::MissingNode {
                        parent: format!("`{board}`"),
                        child: child.to_owned(),
                        span: b.name.span,
                        help: format!("add `{example}` to the board or to its soc"),
                    });
                }
            }
        }
        self.check_regions(b);
        if let Some(gic) = &b.gic {
            self.check_gic(gic, b);
        }
        self.check_cpus(b);
        self.check_pmu(b);
        self.check_devices(b);
        self.check_hypervisor(b, memory_complete && !b.memory.is_empty());
        // Without its SoC the board's device list is incomplete.
        if soc_resolved {
            self.check_console(b);
        }
    }

    fn check_regions(&mut self, b: &MergedBoard) {
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
                self.errors.push(ValidateError::BadRegion {
                    what: r.what.clone(),
                    problem: "has size 0".to_owned(),
                    span: r.size.span,
                    help: "give the region's real size in bytes, a multiple of 0x1000".to_owned(),
                });
                ok = false;
            }
            if r.base.value % PAGE != 0 {
                self.errors.push(ValidateError::BadRegion {
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
                self.errors.push(ValidateError::BadRegion {
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
                self.errors.push(ValidateError::BadRegion {
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
                self.errors.push(ValidateError::Overlap {
                    what: format!("{} [{}, +{}]", r.what, r.base.text, r.size.text),
                    other: format!("{} [{}, +{}]", other.what, other.base.text, other.size.text),
                    span: r.base.span,
                    other_span: other.base.span,
                    help: "memory regions, GIC windows and device windows must not overlap (a device window inside RAM is an error): fix the base or size of one of them".to_owned(),
                });
            }
            good.push(r);
        }
        let nodes = numa_node_count(b);
        for m in &b.memory {
            if m.node.value >= nodes {
                self.errors.push(ValidateError::OutOfRange {
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

    fn check_irq(&mut self, irq: &IrqDecl, gic: &GicDecl) {
        let version = match gic.version.value {
            GicVersion::V2 => 2,
            GicVersion::V3 => 3,
        };
        let (kind, limit, reason, help) = match irq.kind {
            IrqKind::Ppi => (
                "PPI",
                PPI_COUNT,
                "there are 16 PPIs, 0..=15 (INTID 16..=31)".to_owned(),
                "write the PPI number, not the INTID: INTID 27 is `ppi=11`".to_owned(),
            ),
            IrqKind::Spi => (
                "SPI",
                gic.spis.value,
                format!("it implements spis={}", gic.spis.text),
                format!(
                    "write the SPI number, not the INTID (INTID 33 is `spi=1`), below {}; or raise the GIC's `spis=` if the hardware has more",
                    gic.spis.value
                ),
            ),
        };
        if irq.number.value >= limit {
            self.errors.push(ValidateError::IrqOutOfRange {
                kind,
                number: irq.number.text.clone(),
                version,
                reason,
                span: irq.number.span,
                limit,
                help,
            });
        }
    }

    fn check_gic(&mut self, gic: &GicDecl, b: &MergedBoard) {
        let windows: [(&str, &Option<RegDecl>); 3] = [
            ("cpu-interface", &gic.cpu_interface),
            ("hyp-interface", &gic.hyp_interface),
            ("virtual-cpu-interface", &gic.virtual_cpu_interface),
        ];
        match gic.version.value {
            GicVersion::V3 => {
                if gic.redistributors.is_empty() {
                    self.errors.push(ValidateError::Gic {
                        problem: "a GICv3 needs at least one `redistributor`".to_owned(),
                        span: gic.span,
                        label: "no redistributor".to_owned(),
                        help: "add `redistributor 0x080a_0000 size=0xf6_0000` (GICR frames of every CPU) inside `gic`".to_owned(),
                    });
                }
                for (name, w) in windows {
                    if let Some(w) = w {
                        self.errors.push(ValidateError::Gic {
                            problem: format!("`{name}` is a GICv2 window, but this GIC is version 3"),
                            span: w.span,
                            label: "GICv2 only".to_owned(),
                            help: format!("remove `{name}`, or write `version=2` if the GIC is a GICv2/GIC-400"),
                        });
                    }
                }
            }
            GicVersion::V2 => {
                for (name, w) in windows {
                    if w.is_none() {
                        self.errors.push(ValidateError::Gic {
                            problem: format!("a GICv2 needs `{name}`"),
                            span: gic.span,
                            label: format!("no {name}"),
                            help: format!("add `{name} ADDR size=SIZE` inside `gic` (GICC, GICH and GICV are all needed to run VMs)"),
                        });
                    }
                }
                for r in gic.redistributors.iter().chain(&gic.its) {
                    self.errors.push(ValidateError::Gic {
                        problem: format!(
                            "`{}` is a GICv3 window, but this GIC is version 2",
                            r.name
                        ),
                        span: r.span,
                        label: "GICv3 only".to_owned(),
                        help: "remove it, or write `version=3` if the GIC is a GICv3".to_owned(),
                    });
                }
                if b.cpus.len() > GICV2_MAX_CPUS {
                    self.errors.push(ValidateError::Gic {
                        problem: format!("a GICv2 serves at most {GICV2_MAX_CPUS} CPUs, this board lists {}", b.cpus.len()),
                        span: gic.version.span,
                        label: "GICv2".to_owned(),
                        help: "a board with more than 8 CPUs needs a GICv3: write `version=3` with a `redistributor`".to_owned(),
                    });
                }
            }
        }
        if let Some(m) = &gic.maintenance {
            self.check_irq(m, gic);
        }
        if let Some(t) = &b.timer {
            for irq in [&t.secure_phys, &t.phys, &t.virt, &t.hyp_phys] {
                self.check_irq(irq, gic);
            }
        }
        if let Some(p) = &b.pmu {
            match &p.irqs {
                PmuIrqsDecl::Ppi(irq) => self.check_irq(irq, gic),
                PmuIrqsDecl::PerCpuSpi(spis) => {
                    for s in spis {
                        self.check_irq(&s.irq, gic);
                    }
                }
            }
        }
        for d in &b.devices {
            for irq in &d.irqs {
                self.check_irq(irq, gic);
            }
        }
    }

    /// Per-CPU PMU SPIs: each names a declared CPU, each CPU has exactly one, no SPI twice.
    /// (Their ranges are checked with the other interrupts.)
    fn check_pmu(&mut self, b: &MergedBoard) {
        let Some(PmuDecl {
            span,
            irqs: PmuIrqsDecl::PerCpuSpi(spis),
        }) = &b.pmu
        else {
            return;
        };
        let declared: Vec<String> = b.cpus.iter().map(|c| hex(c.mpidr.value)).collect();
        let mut by_cpu: HashMap<u64, SourceSpan> = HashMap::new();
        let mut by_spi: HashMap<u32, SourceSpan> = HashMap::new();
        for s in spis {
            if let Some(first) = by_spi.get(&s.irq.number.value) {
                self.errors.push(ValidateError::Duplicate {
                    kind: "PMU SPI".to_owned(),
                    name: s.irq.number.text.clone(),
                    span: s.irq.number.span,
                    first: *first,
                    help: "each CPU's PMU has its own overflow SPI: check the `interrupts` list of the device tree's `pmu` node".to_owned(),
                });
            } else {
                by_spi.insert(s.irq.number.value, s.irq.number.span);
            }
            if let Some(first) = by_cpu.get(&s.cpu.value) {
                self.errors.push(ValidateError::Duplicate {
                    kind: "PMU cpu".to_owned(),
                    name: s.cpu.text.clone(),
                    span: s.cpu.span,
                    first: *first,
                    help: "a CPU has exactly one PMU overflow SPI: remove one entry, or correct its `cpu=` from the device tree's `interrupt-affinity`".to_owned(),
                });
                continue;
            }
            by_cpu.insert(s.cpu.value, s.cpu.span);
            if b.cpus_declared && !b.cpus.iter().any(|c| c.mpidr.value == s.cpu.value) {
                self.errors.push(ValidateError::Pmu {
                    problem: format!(
                        "PMU interrupt for cpu {}, which is not in `cpus`",
                        s.cpu.text
                    ),
                    span: s.cpu.span,
                    label: "no such CPU".to_owned(),
                    help: format!(
                        "write the MPIDR of a declared CPU ({}), as listed in `cpus`",
                        declared.join(", ")
                    ),
                });
            }
        }
        let missing: Vec<&str> = b
            .cpus
            .iter()
            .filter(|c| !by_cpu.contains_key(&c.mpidr.value))
            .map(|c| c.mpidr.text.as_str())
            .collect();
        if let Some(first) = missing.first() {
            self.errors.push(ValidateError::Pmu {
                problem: format!(
                    "the PMU has no overflow SPI for cpu {}",
                    missing.join(", cpu ")
                ),
                span: *span,
                label: format!("{} of {} CPUs covered", b.cpus.len() - missing.len(), b.cpus.len()),
                help: format!(
                    "add `irq spi=N cpu={first}` inside `pmu` for each listed CPU (the device tree's `pmu` node pairs `interrupts` with `interrupt-affinity`); or write `pmu ppi=N` if the PMU uses one PPI"
                ),
            });
        }
    }

    fn check_cpus(&mut self, b: &MergedBoard) {
        let mut seen: HashMap<u64, SourceSpan> = HashMap::new();
        for c in &b.cpus {
            if c.mpidr.value & !MPIDR_AFFINITY_MASK != 0 {
                self.errors.push(ValidateError::OutOfRange {
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
                self.errors.push(ValidateError::Duplicate {
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
        if b.cpus_declared && b.cpus.len() as u64 != expected {
            self.errors.push(ValidateError::Topology {
                problem: format!(
                    "board lists {} cpu(s) but its topology declares {} ({} socket(s) x {} cluster(s) x {} core(s))",
                    b.cpus.len(),
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
        for c in &b.cpus {
            for (what, v, limit, prop) in [
                ("socket", &c.socket, t.sockets.value, "sockets"),
                ("cluster", &c.cluster, t.clusters.value, "clusters"),
            ] {
                if v.value >= limit {
                    self.errors.push(ValidateError::Topology {
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

    fn check_devices(&mut self, b: &MergedBoard) {
        for d in &b.devices {
            let okay = d.okay.as_ref().is_none_or(|s| s.value);
            match (okay, &d.reason) {
                (false, None) => self.errors.push(ValidateError::DeviceStatus {
                    name: d.name.value.clone(),
                    problem: "is disabled without a reason".to_owned(),
                    span: d.okay.as_ref().map_or(d.name.span, |s| s.span),
                    help: "add `reason=\"...\"` saying why it cannot be used (it is shown in the boot banner)".to_owned(),
                }),
                (true, Some(r)) => self.errors.push(ValidateError::DeviceStatus {
                    name: d.name.value.clone(),
                    problem: "has a `reason=` but is not disabled".to_owned(),
                    span: r.span,
                    help: "add `status=\"disabled\"`, or remove `reason=`".to_owned(),
                }),
                _ => {}
            }
            if d.compatible.is_none() && d.bus_id.is_none() {
                self.errors.push(ValidateError::Missing {
                    node: format!("device \"{}\"", d.name.value),
                    what: "property `compatible` (or `bus-id`)".to_owned(),
                    span: d.name.span,
                    help: "add `compatible=\"vendor,device\"` so a driver can match it (or `bus-id=\"usb:VID:PID\"` for a bus device)".to_owned(),
                });
            }
        }
    }

    fn check_hypervisor(&mut self, b: &MergedBoard, check_inside_ram: bool) {
        let Some(h) = &b.hypervisor else { return };
        if h.load.value % PAGE != 0 {
            self.errors.push(ValidateError::BadRegion {
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
            self.errors.push(ValidateError::BadRegion {
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
            self.errors.push(ValidateError::HypervisorOutsideRam {
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

    fn check_console(&mut self, b: &MergedBoard) {
        let Some(c) = &b.console else { return };
        match b.devices.iter().find(|d| d.name.value == c.value) {
            None => {
                let names: Vec<&str> = b.devices.iter().map(|d| d.name.value.as_str()).collect();
                self.errors.push(ValidateError::Console {
                    name: c.value.clone(),
                    problem: "names no device".to_owned(),
                    span: c.span,
                    help: did_you_mean(&c.value, &names, "devices of this board and its soc"),
                });
            }
            Some(d) if d.okay.as_ref().is_some_and(|s| !s.value) => {
                self.errors.push(ValidateError::Console {
                    name: c.value.clone(),
                    problem: "is disabled".to_owned(),
                    span: c.span,
                    help: format!("pick an enabled UART as console, or enable `{}` (remove status=\"disabled\")", c.value),
                });
            }
            Some(_) => {}
        }
    }
}

/// One NUMA node per socket on multi-socket boards, a single node otherwise.
pub fn numa_node_count(b: &MergedBoard) -> u32 {
    b.topology.as_ref().map_or(1, |t| t.sockets.value.max(1))
}

/// `0x4020_0000`: hex with `_` every four digits, as boards.kdl writes addresses.
pub fn hex(v: u64) -> String {
    let digits = format!("{v:x}");
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 4 == 0 {
            out.push('_');
        }
        out.push(c);
    }
    format!("0x{out}")
}

/// "`cluster=0`" or "`cluster=` between 0 and 3".
fn index_range(prop: &str, count: u32) -> String {
    if count <= 1 {
        format!("`{prop}=0`")
    } else {
        format!("`{prop}=` between 0 and {}", count - 1)
    }
}

fn quoted(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_single_edits() {
        assert_eq!(edit_distance("size", "size"), 0);
        assert_eq!(edit_distance("szie", "size"), 2);
        assert_eq!(edit_distance("sise", "size"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
    }

    #[test]
    fn hex_groups_digits_by_four() {
        assert_eq!(hex(0x4020_0000), "0x4020_0000");
        assert_eq!(hex(0x1_0000), "0x1_0000");
        assert_eq!(hex(0x1000), "0x1000");
        assert_eq!(hex(0), "0x0");
    }

    #[test]
    fn suggests_a_close_name() {
        let h = did_you_mean("compatibel", &["compatible", "status"], "properties");
        assert!(h.starts_with("did you mean `compatible`?"), "{h}");
    }

    #[test]
    fn does_not_suggest_a_far_name() {
        let h = did_you_mean("frobnicate", &["size", "name"], "properties");
        assert!(!h.contains("did you mean"), "{h}");
        assert!(h.contains("size, name"), "{h}");
    }
}
