//! KDL board descriptions to a validated, typed board model.
//!
//! A board file (`boards.kdl`, syntax in `docs/boards-kdl.md`) runs one way through five
//! stages, each its own module with its own error type; none calls back into an earlier one:
//!
//! 1. [`parse`]: KDL v2 text to spanned nodes ([`parse::ParseError`]), after the size,
//!    UTF-8 and nesting limits of [`guard`];
//! 2. [`decode`]: nodes to the typed declarations of [`decl`], with "did you mean" for
//!    unknown names ([`decode::DecodeError`]);
//! 3. [`merge`]: each board with its SoC folded in ([`merge::MergeError`]);
//! 4. [`check`]: every board rule on the merged board: overlaps, alignment, IRQ ranges,
//!    topology, console ([`check::CheckError`]);
//! 5. [`lower`]: to the plain serde [`model::Board`] ([`lower::LowerError`]).
//!
//! A syntax error stops at [`parse`]; otherwise the errors of decode, merge and check are
//! all collected and reported together. Callers (the `macros` crate, `xtask`) only need the
//! functions below:
//!
//! - [`load_file`] / [`load_bytes`] / [`load_str`]: every board of a file, or an [`Error`];
//! - [`find_board`]: one board by name (the error lists the known names);
//! - [`Error`]: its `Display` is the full miette report (source lines, labels, help),
//!   ready for a build script's or proc macro's output; [`Error::location`] gives the
//!   line and column of the first problem.
//!
//! ```
//! let kdl = r#"
//! soc "s" {
//!     gic version=3 compatible="arm,gic-v3" spis=64 {
//!         distributor 0x0800_0000 size=0x1_0000
//!         redistributor 0x080a_0000 size=0x2_0000
//!         maintenance-irq ppi=9
//!     }
//!     timer secure-phys=13 phys=14 virt=11 hyp-phys=10
//!     pmu ppi=7
//!     device "uart0" compatible="arm,pl011" {
//!         reg 0x0900_0000 size=0x1000
//!         irq spi=1
//!     }
//! }
//! board "b" soc="s" {
//!     model "Example"
//!     support "described"
//!     verified-by "none"
//!     topology sockets=1 clusters=1 cores=1
//!     cpus core="arm,cortex-a57" { cpu 0x0; }
//!     memory "dram0" 0x4000_0000 size=0x4000_0000
//!     hypervisor load=0x4020_0000 size=0x0200_0000
//!     console "uart0"
//! }
//! "#;
//! let boards = platform_dsl::load_str("example.kdl", kdl)?;
//! let board = platform_dsl::find_board(&boards, "b")?;
//! assert_eq!(board.devices[0].irqs[0].intid, 33);
//!
//! let err = platform_dsl::load_str("bad.kdl", "bord \"x\"\n").unwrap_err();
//! assert_eq!(err.location(), Some((1, 1)));
//! assert!(err.to_string().contains("did you mean `board`?"));
//! # Ok::<(), platform_dsl::Error>(())
//! ```

pub mod check;
pub mod decl;
pub mod decode;
pub mod guard;
pub mod image;
pub mod lower;
pub mod merge;
pub mod model;
pub mod parse;
pub mod text;
pub mod vmconfig;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use miette::{Diagnostic, GraphicalReportHandler, GraphicalTheme, NamedSource, SourceCode};
use thiserror::Error;

use model::Board;

/// Why a board file could not be loaded, or a board not found.
#[derive(Debug, Error)]
pub enum Error {
    /// The file could not be read.
    #[error("cannot read board file `{}`: {source} (check the path; relative paths start at the current directory)", path.display())]
    Io {
        /// The path given.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is larger than [`guard::MAX_BYTES`]; it was not read.
    #[error("board file `{name}` is {len} bytes, more than the limit of {} (4 MiB); a board file this large is a wrong path or a generated file (docs/boards-kdl.md, \"Limits\")", guard::MAX_BYTES)]
    TooLarge {
        /// The file's name.
        name: String,
        /// Its size in bytes (for a file being read, the bytes read before stopping).
        len: u64,
    },
    /// The file is not UTF-8.
    #[error("{name}:{line}:{column}: byte 0x{byte:02x} at offset {offset} is not UTF-8; KDL files are UTF-8 text (re-save the file as UTF-8)")]
    NotUtf8 {
        /// The file's name.
        name: String,
        /// Offset of the first bad byte.
        offset: usize,
        /// Its line (1-based).
        line: usize,
        /// Its column (1-based, in characters).
        column: usize,
        /// The byte.
        byte: u8,
    },
    /// The file has syntax or validation errors; `Display` renders them all.
    #[error("{}", .0.render())]
    Invalid(Diagnostics),
    /// No board of that name.
    #[error("unknown board `{name}`{}; known boards: {}", suggestion(name, known), known.join(", "))]
    UnknownBoard {
        /// The name asked for.
        name: String,
        /// Names of the boards that exist.
        known: Vec<String>,
    },
}

fn suggestion(name: &str, known: &[String]) -> String {
    let refs: Vec<&str> = known.iter().map(String::as_str).collect();
    let h = text::did_you_mean(name, &refs, "boards");
    match h.strip_prefix("did you mean ") {
        Some(rest) => format!(" (did you mean {})", rest.split('?').next().unwrap_or(rest)),
        None => String::new(),
    }
}

impl Error {
    /// Line and column (1-based) of the first problem, if it has a place in a file.
    pub fn location(&self) -> Option<(usize, usize)> {
        match self {
            Error::Invalid(d) => d.location(),
            Error::NotUtf8 { line, column, .. } => Some((*line, *column)),
            _ => None,
        }
    }

    /// The diagnostics, for callers that render them with their own miette handler.
    pub fn diagnostics(&self) -> Option<&Diagnostics> {
        match self {
            Error::Invalid(d) => Some(d),
            _ => None,
        }
    }
}

/// Most errors a report shows (see [`Diagnostics`]); the rest are counted in one line.
pub const MAX_SHOWN_ERRORS: usize = 100;

/// Every error found in one file, with the file's name and text (a miette [`Diagnostic`]
/// whose `related()` are the individual errors: the first [`MAX_SHOWN_ERRORS`], then one
/// that counts the others, so that a file of 30,000 stray characters is a readable report
/// rather than gigabytes of them).
pub struct Diagnostics {
    source: NamedSource<Arc<String>>,
    text: Arc<String>,
    errors: Vec<Box<dyn Diagnostic + Send + Sync>>,
    not_shown: Option<NotShown>,
}

/// The errors past [`MAX_SHOWN_ERRORS`], as a count.
#[derive(Debug, Error, Diagnostic)]
#[error("{0} more errors not shown")]
#[diagnostic(
    code(platform_dsl::more_errors),
    help("fix the errors above and check again: one mistake, such as a stray character or an unclosed string, often causes many")
)]
struct NotShown(usize);

impl Diagnostics {
    fn new(name: &str, text: &Arc<String>, errors: Vec<Box<dyn Diagnostic + Send + Sync>>) -> Self {
        Diagnostics {
            source: NamedSource::new(name, Arc::clone(text)),
            text: Arc::clone(text),
            not_shown: (errors.len() > MAX_SHOWN_ERRORS)
                .then(|| NotShown(errors.len() - MAX_SHOWN_ERRORS)),
            errors,
        }
    }

    /// Number of errors.
    pub fn len(&self) -> usize {
        self.errors.len()
    }

    /// Always false: a `Diagnostics` holds at least one error.
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// The individual errors, all of them.
    pub fn errors(&self) -> impl Iterator<Item = &(dyn Diagnostic + Send + Sync)> {
        self.errors.iter().map(|e| e.as_ref())
    }

    /// Line and column (1-based, column in characters) of the first error's primary label
    /// (or its first label).
    pub fn location(&self) -> Option<(usize, usize)> {
        let labels: Vec<_> = self.errors.first()?.labels()?.collect();
        let span = labels.iter().find(|l| l.primary()).or(labels.first())?;
        let offset = span.offset().min(self.text.len());
        let before = self.text.get(..offset)?;
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Some((line, before[line_start..].chars().count() + 1))
    }

    /// The full report as text (no colours), as printed by [`Error`]'s `Display`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let handler = GraphicalReportHandler::new_themed(GraphicalTheme::unicode_nocolor());
        if handler.render_report(&mut out, self).is_err() {
            out = format!("{self} (the report could not be rendered)");
        }
        out
    }
}

impl fmt::Debug for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Diagnostics")
            .field("source", &self.source.name())
            .field("errors", &self.errors)
            .finish()
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.errors.len();
        write!(
            f,
            "{n} error{} in {}",
            if n == 1 { "" } else { "s" },
            self.source.name()
        )
    }
}

impl std::error::Error for Diagnostics {}

impl Diagnostic for Diagnostics {
    fn source_code(&self) -> Option<&dyn SourceCode> {
        Some(&self.source)
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(
            "the syntax and the rules are in docs/boards-kdl.md",
        ))
    }

    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn Diagnostic> + 'a>> {
        Some(Box::new(
            self.errors
                .iter()
                .take(MAX_SHOWN_ERRORS)
                .map(|e| e.as_ref() as &dyn Diagnostic)
                .chain(self.not_shown.iter().map(|n| n as &dyn Diagnostic)),
        ))
    }
}

/// Loads every board of a KDL file (see [`load_bytes`]). A file larger than
/// [`guard::MAX_BYTES`] is refused from its metadata, before it is read (and reading stops
/// past the limit, for files whose metadata says nothing, such as pipes).
pub fn load_file(path: impl AsRef<Path>) -> Result<Vec<Board>, Error> {
    use std::io::Read as _;
    let path = path.as_ref();
    let name = path.display().to_string();
    let io = |source| Error::Io {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    let too_large = |len| Error::TooLarge {
        name: name.clone(),
        len,
    };
    if len > guard::MAX_BYTES as u64 {
        return Err(too_large(len));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(guard::MAX_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() > guard::MAX_BYTES {
        return Err(too_large(bytes.len() as u64));
    }
    load_bytes(&name, &bytes)
}

/// Loads every board of a KDL file's bytes (see [`load_str`]): more than
/// [`guard::MAX_BYTES`] is [`Error::TooLarge`], bytes that are not UTF-8 are
/// [`Error::NotUtf8`] with the offset, line and column of the first bad byte.
pub fn load_bytes(name: &str, bytes: &[u8]) -> Result<Vec<Board>, Error> {
    if bytes.len() > guard::MAX_BYTES {
        return Err(Error::TooLarge {
            name: name.to_owned(),
            len: bytes.len() as u64,
        });
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => load_str(name, text),
        Err(_) => {
            let (offset, line, column) = guard::first_invalid_utf8(bytes).unwrap_or((0, 1, 1));
            Err(Error::NotUtf8 {
                name: name.to_owned(),
                offset,
                line,
                column,
                byte: bytes.get(offset).copied().unwrap_or(0),
            })
        }
    }
}

/// Parses, decodes, merges, checks and lowers every board in `text`; `name` is the file
/// name shown in messages. Returns every error found (a syntax error stops at parsing).
///
/// Text larger than [`guard::MAX_BYTES`] is [`Error::TooLarge`]; nesting deeper than
/// [`guard::MAX_DEPTH`] (and the other limits of [`guard`]) is a located syntax error.
pub fn load_str(name: &str, text: &str) -> Result<Vec<Board>, Error> {
    if text.len() > guard::MAX_BYTES {
        return Err(Error::TooLarge {
            name: name.to_owned(),
            len: text.len() as u64,
        });
    }
    let shared = Arc::new(text.to_owned());
    let fail = |errors: Vec<Box<dyn Diagnostic + Send + Sync>>| {
        Error::Invalid(Diagnostics::new(name, &shared, errors))
    };
    let nodes = parse::parse(text).map_err(|e| fail(boxed(e)))?;
    let decoded = decode::decode(&nodes);
    let mut errors = boxed(decoded.errors);
    let mut merged = Vec::with_capacity(decoded.boards.len());
    for board in &decoded.boards {
        let (m, error) = merge::merge(&decoded.socs, board);
        errors.extend(boxed(error.into_iter().collect()));
        errors.extend(boxed(check::check(&m)));
        merged.push(m.board);
    }
    if !errors.is_empty() {
        return Err(fail(errors));
    }
    let mut boards = Vec::with_capacity(merged.len());
    for b in &merged {
        match lower::lower(b) {
            Ok(mut board) => {
                board.source = lower::source_lines(b, name, text);
                boards.push(board)
            }
            Err(e) => errors.push(Box::new(e)),
        }
    }
    if errors.is_empty() {
        Ok(boards)
    } else {
        Err(fail(errors))
    }
}

fn boxed<E: Diagnostic + Send + Sync + 'static>(
    errors: Vec<E>,
) -> Vec<Box<dyn Diagnostic + Send + Sync>> {
    errors
        .into_iter()
        .map(|e| Box::new(e) as Box<dyn Diagnostic + Send + Sync>)
        .collect()
}

/// The board called `name`, or [`Error::UnknownBoard`] listing the known names.
pub fn find_board<'a>(boards: &'a [Board], name: &str) -> Result<&'a Board, Error> {
    boards
        .iter()
        .find(|b| b.name == name)
        .ok_or_else(|| Error::UnknownBoard {
            name: name.to_owned(),
            known: boards.iter().map(|b| b.name.clone()).collect(),
        })
}
