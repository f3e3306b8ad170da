//! Stage 2: spanned KDL nodes to typed declarations ([`crate::decl`]).
//!
//! Decoding checks the shape of every node: known node and property names (with "did you
//! mean"), no duplicates, required arguments and properties, value types and ranges that a
//! single value decides (`version=`, `spis=`, `trigger=`). Every error is collected, none
//! stops the others; a node that fails to decode is left out (or `None`), so later stages
//! see only what decoded. Rules across nodes are [`crate::check`]'s.

mod board;
mod hardware;

use std::collections::HashMap;

use miette::{Diagnostic, SourceSpan};
use thiserror::Error;

use crate::decl::{BoardDecl, SocDecl, Sp};
use crate::model::Trigger;
use crate::parse::{Node, Value, ValueKind};
use crate::text::{did_you_mean, quoted};

/// A decoding error: a node or value that does not fit the schema, at one place in the file.
#[derive(Clone, Debug, Error, Diagnostic)]
pub enum DecodeError {
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
    /// An interrupt node gives both `spi=` and `ppi=`.
    #[error("{problem}")]
    #[diagnostic(code(platform_dsl::gic))]
    ConflictingIrq {
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
    /// A `console` node's `unavailable=` form is wrong.
    #[error("{problem}")]
    #[diagnostic(code(platform_dsl::console))]
    ConsoleForm {
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
    /// A `memory` node mixes its two forms (`size=` and `from="firmware"`), or misses both.
    #[error("{problem}")]
    #[diagnostic(code(platform_dsl::memory))]
    MemoryForm {
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
    /// A `pmu` node mixes its two forms (`ppi=` and per-CPU `irq` children), or a per-CPU
    /// entry gives a PPI.
    #[error("{problem}")]
    #[diagnostic(code(platform_dsl::pmu))]
    PmuForm {
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
}

/// What a file decoded to: its SoCs and boards in file order, and every error found.
#[derive(Clone, Debug, Default)]
pub struct Decoded {
    /// `soc` nodes that decoded (a duplicate name is reported and kept).
    pub socs: Vec<SocDecl>,
    /// `board` nodes that decoded (a duplicate name is reported and kept).
    pub boards: Vec<BoardDecl>,
    /// Every decoding error, in file order.
    pub errors: Vec<DecodeError>,
}

/// Decodes the top-level `soc` and `board` nodes of a parsed file.
pub fn decode(nodes: &[Node]) -> Decoded {
    let mut cx = Cx::default();
    let mut socs = Vec::new();
    let mut boards = Vec::new();
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
                    socs.push(soc);
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
                    boards.push(board);
                }
            }
            _ => cx.unknown_node(node, "the top level", &["soc", "board"]),
        }
    }
    Decoded {
        socs,
        boards,
        errors: cx.errors,
    }
}

/// The names of a node's children, in order (what [`SocDecl::written`] records).
fn written(node: &Node) -> Vec<String> {
    node.children.iter().map(|c| c.name.clone()).collect()
}

/// Error collector with the decoding helpers.
#[derive(Default)]
struct Cx {
    /// Every error found so far, in file order.
    errors: Vec<DecodeError>,
}

/// What a node takes: property names and child node names.
pub(super) struct Shape<'a> {
    /// Property names.
    pub(super) props: &'a [&'a str],
    /// Child node names.
    pub(super) children: &'a [&'a str],
    /// How many positional arguments.
    pub(super) max_args: usize,
    /// What to say about an extra argument.
    pub(super) args_help: &'a str,
}

/// `device "uart0"`: the node name and its first string argument, as messages name it.
fn title(node: &Node) -> String {
    match node.args.first().map(|a| &a.kind) {
        Some(ValueKind::Str(s)) => format!("{} \"{s}\"", node.name),
        _ => node.name.clone(),
    }
}

impl Cx {
    pub(super) fn unknown_node(&mut self, node: &Node, parent: &str, known: &[&str]) {
        self.errors.push(DecodeError::UnknownNode {
            name: node.name.clone(),
            parent: parent.to_owned(),
            span: node.name_span,
            help: did_you_mean(&node.name, known, &format!("nodes allowed in {parent}")),
        });
    }

    /// Checks properties (unknown, duplicate), extra arguments and unknown children.
    pub(super) fn shape(&mut self, node: &Node, shape: &Shape<'_>) {
        let t = title(node);
        for (i, p) in node.props.iter().enumerate() {
            if !shape.props.contains(&p.name.as_str()) {
                self.errors.push(DecodeError::UnknownProperty {
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
                self.errors.push(DecodeError::DuplicateProperty {
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
            self.errors.push(DecodeError::ExtraArgument {
                node: t.clone(),
                span: extra.span,
                help: shape.args_help.to_owned(),
            });
        }
        let parent = format!("`{t}`");
        for c in &node.children {
            if !shape.children.contains(&c.name.as_str()) {
                if shape.children.is_empty() {
                    self.errors.push(DecodeError::UnknownNode {
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
    pub(super) fn single<'n>(&mut self, node: &'n Node, name: &str) -> Option<&'n Node> {
        let mut found = node.children.iter().filter(|c| c.name == name);
        let first = found.next()?;
        for again in found {
            self.errors.push(DecodeError::DuplicateNode {
                name: name.to_owned(),
                parent: format!("`{}`", title(node)),
                span: again.name_span,
                first: first.name_span,
                help: format!("keep a single `{name}` node"),
            });
        }
        Some(first)
    }

    pub(super) fn missing_node(&mut self, node: &Node, child: &str, example: &str) {
        self.errors.push(DecodeError::MissingNode {
            parent: format!("`{}`", title(node)),
            child: child.to_owned(),
            span: node.name_span,
            help: format!("add `{example}` inside `{}`", title(node)),
        });
    }

    pub(super) fn wrong_type(&mut self, what: String, expected: &str, v: &Value, example: String) {
        self.errors.push(DecodeError::WrongType {
            what,
            expected: expected.to_owned(),
            found: v.kind.describe().to_owned(),
            text: v.text.clone(),
            span: v.span,
            help: example,
        });
    }

    pub(super) fn string_value(
        &mut self,
        v: &Value,
        what: String,
        example: &str,
    ) -> Option<Sp<String>> {
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

    pub(super) fn int_value(
        &mut self,
        v: &Value,
        what: String,
        max: u64,
        example: &str,
    ) -> Option<Sp<u64>> {
        match v.kind {
            ValueKind::Int(i) if i >= 0 && i <= i128::from(max) => u64::try_from(i)
                .ok()
                .map(|n| Sp::new(n, v.span, v.text.clone())),
            ValueKind::Int(_) => {
                self.errors.push(DecodeError::OutOfRange {
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
    pub(super) fn arg_str(
        &mut self,
        node: &Node,
        idx: usize,
        what: &str,
        example: &str,
    ) -> Option<Sp<String>> {
        match node.args.get(idx) {
            Some(v) => self.string_value(v, format!("{what} of `{}`", node.name), example),
            None => {
                self.errors.push(DecodeError::Missing {
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
    pub(super) fn arg_int(
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
                self.errors.push(DecodeError::Missing {
                    node: title(node),
                    what: what.to_owned(),
                    span: node.name_span,
                    help: format!("write it as an argument, e.g. `{example}`"),
                });
                None
            }
        }
    }

    pub(super) fn prop_str(
        &mut self,
        node: &Node,
        name: &str,
        example: &str,
    ) -> Option<Sp<String>> {
        let p = node.prop(name)?;
        self.string_value(
            &p.value,
            format!("property `{name}` of `{}`", title(node)),
            example,
        )
    }

    pub(super) fn prop_int(
        &mut self,
        node: &Node,
        name: &str,
        max: u64,
        example: &str,
    ) -> Option<Sp<u64>> {
        let p = node.prop(name)?;
        self.int_value(
            &p.value,
            format!("property `{name}` of `{}`", title(node)),
            max,
            example,
        )
    }

    pub(super) fn prop_u32(&mut self, node: &Node, name: &str, example: &str) -> Option<Sp<u32>> {
        self.prop_int(node, name, u64::from(u32::MAX), example)
            .map(|s| Sp::new(u32::try_from(s.value).unwrap_or(u32::MAX), s.span, s.text))
    }

    pub(super) fn require<T>(
        &mut self,
        node: &Node,
        name: &str,
        v: Option<T>,
        example: &str,
    ) -> Option<T> {
        if v.is_none() && node.prop(name).is_none() {
            self.errors.push(DecodeError::Missing {
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
    pub(super) fn prop_trigger(&mut self, node: &Node) -> Trigger {
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
    pub(super) fn choice<T: Copy>(
        &mut self,
        v: Sp<String>,
        what: &str,
        options: &[(&str, T)],
    ) -> Option<Sp<T>> {
        match options.iter().find(|(k, _)| *k == v.value) {
            Some((_, t)) => Some(Sp::new(*t, v.span, v.text)),
            None => {
                let names: Vec<&str> = options.iter().map(|(k, _)| *k).collect();
                self.errors.push(DecodeError::OutOfRange {
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

    pub(super) fn unique(
        &mut self,
        seen: &mut HashMap<(String, String), SourceSpan>,
        kind: &str,
        name: &Sp<String>,
        help: &str,
    ) {
        let key = (kind.to_owned(), name.value.clone());
        if let Some(first) = seen.get(&key) {
            self.errors.push(DecodeError::Duplicate {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse;

    const MINIMAL: &str = include_str!("../../tests/valid/minimal.kdl");

    fn decoded(text: &str) -> Decoded {
        decode(&parse(text).unwrap_or_else(|e| panic!("{e:?}")))
    }

    #[test]
    fn a_valid_file_decodes_without_errors() {
        let d = decoded(MINIMAL);
        assert!(d.errors.is_empty(), "{:?}", d.errors);
        assert_eq!((d.socs.len(), d.boards.len()), (1, 1));
    }

    #[test]
    fn unknown_property_suggests_the_close_name() {
        let d = decoded(&MINIMAL.replace("spis=64", "spiz=64"));
        let help = d.errors.iter().find_map(|e| match e {
            DecodeError::UnknownProperty { name, help, .. } if name == "spiz" => Some(help),
            _ => None,
        });
        assert!(
            help.is_some_and(|h| h.starts_with("did you mean `spis`?")),
            "{:?}",
            d.errors
        );
    }

    #[test]
    fn a_broken_node_is_recorded_as_written() {
        let d = decoded(&MINIMAL.replace("pmu ppi=7", "pmu ppi=\"seven\""));
        assert!(d.socs[0].pmu.is_none());
        assert!(d.socs[0].written.iter().any(|w| w == "pmu"));
    }

    #[test]
    fn dma_coherent_is_a_bare_child_as_in_a_device_tree() {
        let with = |child: &str| {
            decoded(&MINIMAL.replace(
                "device \"uart0\" compatible=\"arm,pl011\" {",
                &format!("device \"uart0\" compatible=\"arm,pl011\" {{\n        {child}"),
            ))
        };
        let d = with("dma-coherent");
        assert!(d.errors.is_empty(), "{:?}", d.errors);
        assert_eq!(
            d.socs[0].devices[0].dma_coherent.as_ref().map(|c| c.value),
            Some(true)
        );
        assert!(decoded(MINIMAL).socs[0].devices[0].dma_coherent.is_none());
        assert!(!with("dma-coherent 1").errors.is_empty(), "no arguments");
    }
}
