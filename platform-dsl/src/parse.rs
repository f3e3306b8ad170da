//! Stage 1: KDL v2 text to spanned nodes, keeping each value's original spelling.
//!
//! Nothing here knows what a board is: it only turns the `kdl` crate's document into
//! [`Node`]s whose every name and value carries its byte span in the source, so later
//! stages can point at the exact entry, and whose numbers keep the text the user wrote
//! (`0x0900_0000`, not `150994944`) for messages.

use kdl::{KdlDocument, KdlEntry, KdlNode, KdlValue};
use miette::{Diagnostic, SourceSpan};
use thiserror::Error;

/// A KDL syntax error (one per problem the `kdl` parser reported).
#[derive(Clone, Debug, Error, Diagnostic)]
#[error("{message}")]
#[diagnostic(code(platform_dsl::syntax))]
pub struct ParseError {
    /// What the KDL parser said.
    pub message: String,
    /// Where.
    #[label("{label}")]
    pub span: SourceSpan,
    /// Label text.
    pub label: String,
    /// How to fix it.
    #[help]
    pub help: Option<String>,
}

/// A value as written: its decoded form, its original text and its span.
#[derive(Clone, Debug, PartialEq)]
pub struct Value {
    /// The decoded value.
    pub kind: ValueKind,
    /// The text exactly as written in the file (e.g. `0x4000_0000`, `"uart0"`).
    pub text: String,
    /// Span of the value (for a property, of `name=value`).
    pub span: SourceSpan,
}

/// Decoded KDL value.
#[derive(Clone, Debug, PartialEq)]
pub enum ValueKind {
    /// A string.
    Str(String),
    /// An integer (any base, `_` separators removed).
    Int(i128),
    /// A float.
    Float(f64),
    /// `#true` / `#false`.
    Bool(bool),
    /// `#null`.
    Null,
}

impl ValueKind {
    /// What the KDL type is called in messages ("a string", "an integer", ...).
    pub fn describe(&self) -> &'static str {
        match self {
            ValueKind::Str(_) => "a string",
            ValueKind::Int(_) => "an integer",
            ValueKind::Float(_) => "a float",
            ValueKind::Bool(_) => "a boolean",
            ValueKind::Null => "#null",
        }
    }
}

/// A `key=value` property.
#[derive(Clone, Debug, PartialEq)]
pub struct Prop {
    /// Property name.
    pub name: String,
    /// Span of the property name alone.
    pub name_span: SourceSpan,
    /// The value; its span covers `name=value`.
    pub value: Value,
}

/// A KDL node with spans.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// Node name (`board`, `device`, `reg`, ...).
    pub name: String,
    /// Span of the node name.
    pub name_span: SourceSpan,
    /// Positional arguments, in order.
    pub args: Vec<Value>,
    /// Properties, in order (duplicates kept, so `decode` can report them).
    pub props: Vec<Prop>,
    /// Child nodes.
    pub children: Vec<Node>,
}

impl Node {
    /// The first property called `name`, if any.
    pub fn prop(&self, name: &str) -> Option<&Prop> {
        self.props.iter().find(|p| p.name == name)
    }
}

/// Parses KDL v2 `text` into spanned nodes, or every syntax error the parser found.
///
/// The limits of [`crate::guard`] are checked first (a broken one is the only error), and
/// the `kdl` parser then runs on its own thread with [`crate::guard::PARSER_STACK`] of
/// stack, so the caller's stack size does not matter.
pub fn parse(text: &str) -> Result<Vec<Node>, Vec<ParseError>> {
    crate::guard::check(text).map_err(|e| vec![limit_error(&e)])?;
    let spawned = std::thread::scope(|s| {
        std::thread::Builder::new()
            .name("kdl-parse".to_owned())
            .stack_size(crate::guard::PARSER_STACK)
            .spawn_scoped(s, || parse_on_this_thread(text))
            .map(|handle| handle.join())
    });
    match spawned {
        Ok(Ok(result)) => result,
        Ok(Err(_panic)) => Err(vec![internal(
            "the KDL parser panicked on this file (a bug in the `kdl` crate)",
        )]),
        Err(e) => Err(vec![internal(&format!(
            "cannot start the KDL parser's thread: {e}"
        ))]),
    }
}

fn internal(message: &str) -> ParseError {
    ParseError {
        message: message.to_owned(),
        span: SourceSpan::from(0..0),
        label: "while parsing this file".to_owned(),
        help: Some("report it with the file; until then, simplify the file".to_owned()),
    }
}

/// A broken limit as a syntax error: its message, its last label and its help.
fn limit_error(e: &crate::guard::LimitError) -> ParseError {
    let label = e.labels().and_then(|l| l.last());
    ParseError {
        message: e.to_string(),
        span: label
            .as_ref()
            .map_or(SourceSpan::from(0..0), |l| *l.inner()),
        label: label
            .and_then(|l| l.label().map(str::to_owned))
            .unwrap_or_else(|| "here".to_owned()),
        help: e.help().map(|h| h.to_string()),
    }
}

fn parse_on_this_thread(text: &str) -> Result<Vec<Node>, Vec<ParseError>> {
    match KdlDocument::parse_v2(text) {
        Ok(doc) => Ok(doc.nodes().iter().map(|n| node(n, text)).collect()),
        Err(err) => {
            let mut errors: Vec<ParseError> = err
                .diagnostics
                .iter()
                .map(|d| {
                    ParseError {
                    message: d
                        .message
                        .clone()
                        .unwrap_or_else(|| "invalid KDL syntax".to_owned()),
                    span: clamp(d.span, text.len()),
                    label: d.label.clone().unwrap_or_else(|| "here".to_owned()),
                    help: Some(d.help.clone().or_else(|| v1_hint(text, d.span)).unwrap_or_else(|| {
                        "check the KDL v2 syntax: strings in quotes, `#true`/`#false`/`#null`, \
                         numbers like 0x0900_0000, `{ ... }` for children"
                            .to_owned()
                    })),
                }
                })
                .collect();
            if errors.is_empty() {
                errors.push(ParseError {
                    message: "invalid KDL document".to_owned(),
                    span: SourceSpan::from(0..0),
                    label: "here".to_owned(),
                    help: Some("check the file is KDL v2 (see docs/boards-kdl.md)".to_owned()),
                });
            }
            Err(errors)
        }
    }
}

/// KDL v1 habits that v2 rejects: bare `true`/`false`/`null` right after the error.
fn v1_hint(text: &str, span: SourceSpan) -> Option<String> {
    let rest = text.get(span.offset().min(text.len())..)?;
    let word: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect();
    matches!(word.as_str(), "true" | "false" | "null")
        .then(|| format!("KDL v2 spells keywords with `#`: write `#{word}` instead of `{word}`"))
}

/// Keeps a span inside the text (the parser may point one past the end).
fn clamp(span: SourceSpan, len: usize) -> SourceSpan {
    let start = span.offset().min(len);
    let end = (span.offset().saturating_add(span.len())).min(len);
    SourceSpan::from(start..end)
}

fn node(n: &KdlNode, text: &str) -> Node {
    let mut args = Vec::new();
    let mut props = Vec::new();
    for e in n.entries() {
        let value = value(e, text);
        match e.name() {
            Some(name) => props.push(Prop {
                name: name.value().to_owned(),
                name_span: clamp(name.span(), text.len()),
                value,
            }),
            None => args.push(value),
        }
    }
    Node {
        name: n.name().value().to_owned(),
        name_span: clamp(n.name().span(), text.len()),
        args,
        props,
        children: n
            .children()
            .map(|c| c.nodes().iter().map(|c| node(c, text)).collect())
            .unwrap_or_default(),
    }
}

fn value(e: &KdlEntry, text: &str) -> Value {
    let kind = match e.value() {
        KdlValue::String(s) => ValueKind::Str(s.clone()),
        KdlValue::Integer(i) => ValueKind::Int(*i),
        KdlValue::Float(f) => ValueKind::Float(*f),
        KdlValue::Bool(b) => ValueKind::Bool(*b),
        KdlValue::Null => ValueKind::Null,
    };
    let repr = e
        .format()
        .map(|f| f.value_repr.clone())
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| e.value().to_string());
    Value {
        kind,
        span: entry_span(e, &repr, text),
        text: repr,
    }
}

/// The span of the entry's own text (`name=value` or `value`), without the
/// whitespace and comments the `kdl` crate includes in an entry's span.
fn entry_span(e: &KdlEntry, repr: &str, text: &str) -> SourceSpan {
    let whole = clamp(e.span(), text.len());
    let start = match e.name() {
        Some(name) => name.span().offset(),
        None => {
            // The value is the last occurrence of its spelling inside the padded span
            // (leading comments could contain the same text, trailing ones are rare).
            let slice = text
                .get(whole.offset()..whole.offset() + whole.len())
                .unwrap_or("");
            match slice.find(repr) {
                Some(i) => whole.offset() + i,
                None => return whole,
            }
        }
    };
    // End: just after the value's spelling, searched from the start.
    let end = text
        .get(start..whole.offset() + whole.len())
        .and_then(|s| s.find(repr).map(|i| start + i + repr.len()))
        .unwrap_or(whole.offset() + whole.len());
    clamp(SourceSpan::from(start..end.max(start)), text.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slice(text: &str, span: SourceSpan) -> &str {
        &text[span.offset()..span.offset() + span.len()]
    }

    #[test]
    fn keeps_the_hex_spelling_of_numbers() {
        let nodes = parse("reg 0x0900_0000 size=0x1000\n").expect("valid KDL");
        assert_eq!(nodes[0].args[0].text, "0x0900_0000");
        assert_eq!(nodes[0].args[0].kind, ValueKind::Int(0x0900_0000));
    }

    #[test]
    fn argument_span_covers_exactly_the_value() {
        let text = "dev   \"uart0\"   size=0x1000 // c\n";
        let nodes = parse(text).expect("valid KDL");
        assert_eq!(slice(text, nodes[0].args[0].span), "\"uart0\"");
    }

    #[test]
    fn property_span_covers_name_and_value() {
        let text = "dev \"uart0\"  size=0x1000   // c\n";
        let nodes = parse(text).expect("valid KDL");
        assert_eq!(slice(text, nodes[0].props[0].value.span), "size=0x1000");
        assert_eq!(slice(text, nodes[0].props[0].name_span), "size");
    }

    #[test]
    fn node_name_span_points_at_the_name() {
        let text = "soc \"x\" {\n    gic version=3\n}\n";
        let nodes = parse(text).expect("valid KDL");
        assert_eq!(slice(text, nodes[0].children[0].name_span), "gic");
    }

    #[test]
    fn duplicate_properties_are_all_kept() {
        let nodes = parse("a x=1 x=2\n").expect("valid KDL");
        assert_eq!(nodes[0].props.len(), 2);
    }

    #[test]
    fn v1_booleans_are_a_syntax_error() {
        let errors = parse("a x=true\n").expect_err("bare true is not KDL v2");
        assert!(!errors.is_empty());
    }
}
