//! Stage 0: limits a board file must meet before the `kdl` parser sees it.
//!
//! The `kdl` crate parses by recursive descent. A `{ ... }` block costs it about 30 KiB of
//! stack in a debug build (build scripts and `cargo xtask` run unoptimized code) and a
//! nested `/* */` comment about 8 KiB; 10,000 nested blocks overflow any thread's stack
//! and abort the process, which no error handling can catch. So a cheap linear pass runs
//! first, refusing with a located error:
//!
//! - files larger than [`MAX_BYTES`];
//! - bytes that are not UTF-8 (the error names the byte offset, line and column);
//! - `{` nested deeper than [`MAX_DEPTH`], and a `}` that closes no `{`;
//! - `/* */` comments nested deeper than [`MAX_DEPTH`].
//!
//! The pass knows strings (`"..."`, `"""` multi-line, escapes), raw strings (`#"..."#`,
//! any number of `#`), `//` and nested `/* */` comments, so braces inside them do not
//! count; slashdashed blocks (`/- { ... }`) do count, because the parser still parses them.
//! [`PARSER_STACK`] is the stack the parser then runs on, enough for every input that
//! passes these limits.
//!
//! Flat input no longer needs a limit: the vendored `kdl` (`vendor/kdl/PATCHED.md`) loops
//! where 6.7.1 recursed once per token (per syntax error it resumed from at the top level,
//! per `*` or `/` inside a comment, per `/-` in a run of them).

use miette::{Diagnostic, SourceSpan};
use thiserror::Error;

/// Largest board file accepted, in bytes: 4 MiB, sixty times today's `boards.kdl`
/// (66 KB for ten boards). The `kdl` parser takes about 15 ms per KiB unoptimized, as a
/// build script runs it, so a file of this size already costs a minute of every build;
/// a bigger one is a mistake (a wrong path, a generated file), not a board list.
pub const MAX_BYTES: usize = 4 << 20;

/// Deepest nesting of `{ ... }` blocks (and of `/* */` comments) accepted. Boards need 3
/// (`board` > `cpus` > `cpu`, `soc` > `gic` > `distributor`); 64 leaves room for any
/// future structure and still fits [`PARSER_STACK`].
pub const MAX_DEPTH: usize = 64;

/// Stack of the thread the `kdl` parser runs on. At the limits above it needs about
/// 64 x 30 KiB (blocks) + 64 x 8 KiB (nested comments), under 3 MiB in a debug build;
/// the rest is a margin (the stack is reserved, not committed, until used).
pub const PARSER_STACK: usize = 32 << 20;

/// A limit the file broke, with where.
#[derive(Clone, Debug, Error, Diagnostic)]
pub enum LimitError {
    /// `{` nested deeper than [`MAX_DEPTH`].
    #[error("blocks nested more than {MAX_DEPTH} deep")]
    #[diagnostic(
        code(platform_dsl::too_deep),
        help(
            "boards need 3 levels (`board` > `cpus` > `cpu`); close the blocks above with `}}` \
             (a missing `}}` often looks like this), or split the structure"
        )
    )]
    TooDeep {
        /// The first `{` past the limit.
        #[label("block {} starts here", MAX_DEPTH + 1)]
        span: SourceSpan,
    },
    /// A `}` with no open block.
    #[error("`}}` closes no block")]
    #[diagnostic(
        code(platform_dsl::unmatched_brace),
        help("remove this `}}`, or add the `{{` it was meant to close")
    )]
    Unmatched {
        /// The `}`.
        #[label("nothing open here")]
        span: SourceSpan,
    },
    /// `/*` nested deeper than [`MAX_DEPTH`].
    #[error("`/* */` comments nested more than {MAX_DEPTH} deep")]
    #[diagnostic(
        code(platform_dsl::comment_too_deep),
        help("close the comments with `*/`, or use `//` comments")
    )]
    CommentTooDeep {
        /// The first `/*` past the limit.
        #[label("comment {} starts here", MAX_DEPTH + 1)]
        span: SourceSpan,
    },
}

/// The first byte of `bytes` that is not UTF-8: (offset, line, column), 1-based line
/// and column (column in characters of the valid text before it).
pub fn first_invalid_utf8(bytes: &[u8]) -> Option<(usize, usize, usize)> {
    let err = std::str::from_utf8(bytes).err()?;
    let offset = err.valid_up_to();
    // The prefix is valid by definition of `valid_up_to`.
    let before = std::str::from_utf8(&bytes[..offset]).unwrap_or("");
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    Some((offset, line, before[line_start..].chars().count() + 1))
}

/// The KDL v2 newlines other than `\n` (`\r` alone and `\r\n` end a line too).
fn is_newline(c: char) -> bool {
    matches!(
        c,
        '\n' | '\r' | '\u{0085}' | '\u{000B}' | '\u{000C}' | '\u{2028}' | '\u{2029}'
    )
}

/// Checks nesting and comment limits in one pass; the first problem found, if any.
pub fn check(text: &str) -> Result<(), LimitError> {
    let b = text.as_bytes();
    let at = |i: usize, len: usize| SourceSpan::from(i..(i + len).min(b.len()));
    let mut depth = 0usize;
    let mut i = 0usize;
    while i < b.len() {
        match b[i] {
            b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(LimitError::TooDeep { span: at(i, 1) });
                }
                i += 1;
            }
            b'}' => {
                if depth == 0 {
                    return Err(LimitError::Unmatched { span: at(i, 1) });
                }
                depth -= 1;
                i += 1;
            }
            b'/' if b.get(i + 1) == Some(&b'/') => {
                // To the end of the line.
                i = text[i..]
                    .char_indices()
                    .find(|&(_, c)| is_newline(c))
                    .map_or(b.len(), |(k, _)| i + k);
            }
            b'/' if b.get(i + 1) == Some(&b'*') => i = block_comment(b, i)?,
            b'"' => i = quoted_string(b, i),
            b'#' => {
                let hashes = b[i..].iter().take_while(|&&c| c == b'#').count();
                if b.get(i + hashes) == Some(&b'"') {
                    i = raw_string(b, i, hashes);
                } else {
                    // A keyword (`#true`) or a syntax error the parser reports.
                    i += hashes;
                }
            }
            _ => i += 1,
        }
    }
    Ok(())
}

/// Skips a `/* */` comment starting at `start`; returns the offset after it (or the end
/// of the text, for an unclosed one: the parser reports that). Only nesting is limited:
/// the parser recurses once per nested comment, and reads the rest in a loop.
fn block_comment(b: &[u8], start: usize) -> Result<usize, LimitError> {
    let mut depth = 0usize;
    let mut i = start;
    while i < b.len() {
        match (b[i], b.get(i + 1)) {
            (b'/', Some(b'*')) => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(LimitError::CommentTooDeep {
                        span: SourceSpan::from(i..i + 2),
                    });
                }
                i += 2;
            }
            (b'*', Some(b'/')) => {
                depth -= 1;
                if depth == 0 {
                    return Ok(i + 2);
                }
                i += 2;
            }
            _ => i += 1,
        }
    }
    Ok(b.len())
}

/// Skips a quoted string starting at `start` (`"` or `"""`); returns the offset after it.
/// A single-line string also ends at a newline (the parser reports the missing quote);
/// `\` escapes the next byte.
fn quoted_string(b: &[u8], start: usize) -> usize {
    let multi = b[start..].starts_with(b"\"\"\"");
    let mut i = start + if multi { 3 } else { 1 };
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' if !multi => return i + 1,
            b'"' if b[i..].starts_with(b"\"\"\"") => return i + 3,
            b'\n' | b'\r' if !multi => return i,
            _ => i += 1,
        }
    }
    b.len()
}

/// Skips a raw string starting at `start` with `hashes` `#`s; returns the offset after it.
/// No escapes: it ends at the first `"` followed by as many `#` (`"""` plus them for a
/// multi-line one; a lone `"` ends neither).
fn raw_string(b: &[u8], start: usize, hashes: usize) -> usize {
    let open = start + hashes;
    let multi = b[open..].starts_with(b"\"\"\"");
    let quotes = if multi { 3 } else { 1 };
    let mut i = open + quotes;
    while i < b.len() {
        if b[i..].starts_with(&b"\"\"\""[..quotes])
            && b.len() >= i + quotes + hashes
            && b[i + quotes..i + quotes + hashes]
                .iter()
                .all(|&c| c == b'#')
        {
            return i + quotes + hashes;
        }
        i += 1;
    }
    b.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(n: usize) -> String {
        format!("{}{}", "a {".repeat(n), "}".repeat(n))
    }

    #[test]
    fn nesting_up_to_the_limit_passes() {
        assert!(check(&nested(MAX_DEPTH)).is_ok());
    }

    #[test]
    fn nesting_past_the_limit_points_at_the_first_brace_too_many() {
        let text = nested(MAX_DEPTH + 1);
        match check(&text) {
            Err(LimitError::TooDeep { span }) => assert_eq!(span.offset(), 3 * MAX_DEPTH + 2),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn braces_in_strings_and_comments_do_not_count() {
        let deep = "{".repeat(MAX_DEPTH + 1);
        for text in [
            format!("a \"{deep}\""),
            format!("a \"\\\"{deep}\""),
            format!("a \"\"\"\n{deep}\n\"\"\""),
            format!("a #\"{deep}\"#"),
            format!("a ##\"\"#{deep}\"##"),
            format!("a ##\"\"\"\n\"\"\"#{deep}\n\"\"\"##"),
            format!("// {deep}\na"),
            format!("/* /* */ {deep} */ a"),
        ] {
            assert!(check(&text).is_ok(), "{text}");
        }
    }

    #[test]
    fn a_string_or_comment_does_not_hide_the_braces_after_it() {
        let deep = nested(MAX_DEPTH + 1);
        for before in ["a \"x\"\n", "a #\"x\"#\n", "// x\n", "/* x */\n", "a \"x\n"] {
            let text = format!("{before}{deep}");
            assert!(
                matches!(check(&text), Err(LimitError::TooDeep { .. })),
                "{text:?}"
            );
        }
    }

    #[test]
    fn slashdashed_blocks_count() {
        let text = format!(
            "a {}{}",
            "/-{".repeat(MAX_DEPTH + 1),
            "}".repeat(MAX_DEPTH + 1)
        );
        assert!(matches!(check(&text), Err(LimitError::TooDeep { .. })));
    }

    #[test]
    fn a_stray_closing_brace_is_located() {
        match check("a {}\n}") {
            Err(LimitError::Unmatched { span }) => assert_eq!(span.offset(), 5),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn deep_comments_are_refused_long_ones_are_not() {
        let n = MAX_DEPTH + 1;
        let deep = format!("{}{}", "/*".repeat(n), "*/".repeat(n));
        assert!(matches!(
            check(&deep),
            Err(LimitError::CommentTooDeep { .. })
        ));
        let at_limit = format!("{}{}", "/*".repeat(MAX_DEPTH), "*/".repeat(MAX_DEPTH));
        assert!(check(&at_limit).is_ok());
        // The parser reads a comment's `*`, `/` and sibling comments in a loop.
        for long in [
            format!("/*{}*/", "* / ".repeat(10_000)),
            format!("/*{}*/", " /**/".repeat(10_000)),
        ] {
            assert!(check(&long).is_ok());
        }
    }

    #[test]
    fn invalid_utf8_is_located() {
        assert_eq!(first_invalid_utf8(b"ab\ncd\xffe"), Some((5, 2, 3)));
        assert_eq!(first_invalid_utf8("é\n".as_bytes()), None);
        assert_eq!(first_invalid_utf8(b"\xc3"), Some((0, 1, 1)));
    }
}
