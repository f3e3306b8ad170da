//! Hostile board files (nesting 10,000 deep, invalid UTF-8, oversized) get a located error
//! and never crash the loader.
//!
//! Every test runs on a thread with a 256 KiB stack: if the limits stopped being checked
//! before the recursive `kdl` parser runs, or the loader itself recursed over the input's
//! depth, the process would die of a stack overflow here instead of passing on the test
//! harness's bigger stack.

use platform_dsl::guard::{MAX_BYTES, MAX_DEPTH};
use platform_dsl::{Error, MAX_SHOWN_ERRORS};
use std::path::PathBuf;

const SMALL_STACK: usize = 256 << 10;

fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(SMALL_STACK)
        .spawn(f)
        .expect("spawn")
        .join()
        .expect("no panic")
}

/// `a {` `n` times on one line, then `}` `n` times.
fn nested(n: usize) -> String {
    format!("{}{}\n", "a {".repeat(n), "}".repeat(n))
}

/// Loads `text`; the error's (line, column) and its report.
fn load_err(text: String) -> ((usize, usize), String) {
    on_small_stack(move || {
        let e = platform_dsl::load_str("hostile.kdl", &text).expect_err("must be refused");
        let report = e.to_string();
        // The head of the report is enough in a failure message (the rest echoes the
        // hostile line).
        let head: String = report.chars().take(400).collect();
        (e.location().expect(&head), report)
    })
}

fn temp_file(tag: &str, bytes: &[u8]) -> PathBuf {
    let path = std::env::temp_dir().join(format!(
        "platform-dsl-hostile-{}-{tag}.kdl",
        std::process::id()
    ));
    std::fs::write(&path, bytes).expect("write temp file");
    path
}

#[test]
fn ten_thousand_nested_blocks_are_refused_at_the_first_brace_too_many() {
    let (at, report) = load_err(nested(10_000));
    // `a {` is three characters: brace number 65 is at column 3 * 64 + 3.
    assert_eq!(at, (1, 3 * MAX_DEPTH + 3), "{report}");
    assert!(
        report.contains("blocks nested more than 64 deep"),
        "{report}"
    );
    assert!(report.contains("close the blocks above"), "{report}");
}

#[test]
fn nesting_one_block_per_line_is_located_by_line() {
    let text: String = (0..10_000).map(|_| "a {\n").collect();
    let (at, report) = load_err(text);
    assert_eq!(at, (MAX_DEPTH + 1, 3), "{report}");
}

#[test]
fn nesting_at_the_limit_reaches_the_parser_and_one_more_does_not() {
    // 64 deep parses (the error is the unknown node `a`, from decode); 65 is refused.
    let (at, report) = load_err(nested(MAX_DEPTH));
    assert_eq!(at, (1, 1), "{report}");
    assert!(report.contains("unknown node `a`"), "{report}");
    let (at, report) = load_err(nested(MAX_DEPTH + 1));
    assert_eq!(at, (1, 3 * MAX_DEPTH + 3), "{report}");
    assert!(report.contains("nested more than"), "{report}");
}

#[test]
fn slashdashed_and_commented_nesting_is_refused_too() {
    let slashdash = format!("a {}{}", "/-{".repeat(10_000), "}".repeat(10_000));
    let (at, report) = load_err(slashdash);
    // `a ` then 64 `/-{`, then `/-`: the brace is at column 2 + 3 * 64 + 3.
    assert_eq!(at, (1, 2 + 3 * MAX_DEPTH + 3), "{report}");

    let comments = format!("{}{}", "/*".repeat(10_000), "*/".repeat(10_000));
    let (at, report) = load_err(comments);
    assert_eq!(at, (1, 2 * MAX_DEPTH + 1), "{report}");
    assert!(
        report.contains("comments nested more than 64 deep"),
        "{report}"
    );
}

#[test]
fn closing_braces_without_blocks_are_refused() {
    let (at, report) = load_err(format!("a\n{}", "}".repeat(10_000)));
    assert_eq!(at, (2, 1), "{report}");
    assert!(report.contains("`}` closes no block"), "{report}");
}

#[test]
fn braces_in_strings_and_comments_are_not_nesting() {
    let deep = "{".repeat(10_000);
    let text = format!("// {deep}\n/* {deep} */\nbord \"{deep}\" #\"{deep}\"#\n");
    let (at, report) = load_err(text);
    // Parsed and decoded: the only error is the misspelled node.
    assert_eq!(at, (3, 1), "{report}");
    assert!(report.contains("did you mean `board`?"), "{report}");
}

#[test]
fn invalid_utf8_names_its_offset_line_and_column() {
    let mut bytes = b"board \"x\" {\n    model \"caf".to_vec();
    let offset = bytes.len();
    bytes.extend_from_slice(b"\xe9\"\n}\n");
    let e = on_small_stack(move || platform_dsl::load_bytes("latin1.kdl", &bytes).unwrap_err());
    assert!(
        matches!(e, Error::NotUtf8 { offset: o, line: 2, column: 15, byte: 0xe9, .. } if o == offset),
        "{e:?}"
    );
    assert_eq!(e.location(), Some((2, 15)));
    let msg = e.to_string();
    assert!(
        msg.starts_with(&format!(
            "latin1.kdl:2:15: byte 0xe9 at offset {offset} is not UTF-8"
        )),
        "{msg}"
    );
}

#[test]
fn an_invalid_utf8_file_is_located_not_an_io_error() {
    let path = temp_file("latin1", b"// ok\n\xff\n");
    let e = on_small_stack({
        let path = path.clone();
        move || platform_dsl::load_file(path).unwrap_err()
    });
    let _ = std::fs::remove_file(&path);
    assert!(
        matches!(
            e,
            Error::NotUtf8 {
                offset: 6,
                line: 2,
                column: 1,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn an_oversized_file_is_refused_before_it_is_read() {
    // 100 MB by its metadata, without writing them: a sparse file.
    let path = temp_file("huge", b"");
    std::fs::File::options()
        .write(true)
        .open(&path)
        .and_then(|f| f.set_len(100_000_000))
        .expect("grow the file");
    let t = std::time::Instant::now();
    let e = on_small_stack({
        let path = path.clone();
        move || platform_dsl::load_file(path).unwrap_err()
    });
    let _ = std::fs::remove_file(&path);
    assert!(
        matches!(
            e,
            Error::TooLarge {
                len: 100_000_000,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(
        e.to_string()
            .contains("more than the limit of 4194304 (4 MiB)"),
        "{e}"
    );
    // Refused from the metadata: reading and parsing 100 MB would take far longer.
    assert!(t.elapsed().as_secs() < 5, "{:?}", t.elapsed());
}

#[test]
fn oversized_text_is_refused_at_one_byte_over() {
    let e = on_small_stack(|| {
        let text = " ".repeat(MAX_BYTES + 1);
        platform_dsl::load_str("big.kdl", &text).unwrap_err()
    });
    assert!(
        matches!(e, Error::TooLarge { len, .. } if len == MAX_BYTES as u64 + 1),
        "{e:?}"
    );
}

#[test]
fn the_build_script_path_reports_hostile_files_with_their_place() {
    use platform_dsl::image::{Model, Selection};
    let deep = temp_file("deep-model", nested(10_000).as_bytes());
    let latin1 = temp_file("latin1-model", b"board \"\xe9\"\n");
    let load = |path: &PathBuf| {
        let sel = Selection {
            board_file: path.clone(),
            board: "b".to_owned(),
            vms: PathBuf::from("/nonexistent/vms.toml"),
            allow_experimental: false,
        };
        on_small_stack(move || Model::load(&sel))
    };
    let (deep_model, latin1_model) = (load(&deep), load(&latin1));
    let _ = std::fs::remove_file(&deep);
    let _ = std::fs::remove_file(&latin1);
    let report = deep_model.boards.unwrap_err();
    assert!(
        report.starts_with(&format!(
            "invalid board file {}:1:{}\n",
            deep.display(),
            3 * MAX_DEPTH + 3
        )),
        "{report}"
    );
    let report = latin1_model.boards.unwrap_err();
    assert!(
        report.starts_with(&format!("{}:1:8: byte 0xe9 at offset 7", latin1.display())),
        "{report}"
    );
}

/// What [`load_syntax_errs`] found.
struct SyntaxErrs {
    /// (line, column) of the first error.
    at: (usize, usize),
    /// How many errors.
    count: usize,
    /// The first error's message.
    first: String,
    /// The largest offset any error points at: how far the parser got.
    last_offset: usize,
}

/// Loads `text`, which must fail with syntax errors. The full report is not rendered:
/// with thousands of errors on a 30,000-character line it would be huge.
fn load_syntax_errs(text: String) -> SyntaxErrs {
    on_small_stack(move || {
        let e = platform_dsl::load_str("hostile.kdl", &text).expect_err("must be refused");
        let d = e.diagnostics().expect("located diagnostics");
        let first = d.errors().next().expect("one error").to_string();
        let last_offset = d
            .errors()
            .filter_map(|e| e.labels())
            .flatten()
            .map(|l| l.offset())
            .max()
            .expect("labels");
        SyntaxErrs {
            at: e.location().expect(&first),
            count: d.len(),
            first,
            last_offset,
        }
    })
}

/// The `kdl` parser used to call itself once per place it resumed after a syntax error
/// at the top level (about 1.5 KiB of stack each in a debug build): 30,000 `)` or `=`
/// overflowed even the parser's 32 MiB thread and aborted the process.
#[test]
fn thirty_thousand_closing_parens_are_located_errors() {
    let e = load_syntax_errs(format!("{}\n", ")".repeat(30_000)));
    assert_eq!(e.at, (1, 1), "{}", e.first);
    // One error per `)` (alternately a bad node name and a bad end of document), the
    // last at the last one.
    assert_eq!(e.count, 30_000);
    assert_eq!(e.last_offset, 29_999);
}

/// Rendered, 30,000 errors on a 30,000-character line were 1.8 GB of report: it shows the
/// first [`MAX_SHOWN_ERRORS`] and counts the rest.
#[test]
fn a_report_of_thirty_thousand_errors_shows_the_first_hundred() {
    let report = on_small_stack(|| {
        platform_dsl::load_str("hostile.kdl", &")".repeat(30_000))
            .unwrap_err()
            .to_string()
    });
    assert!(
        report.starts_with("  × 30000 errors in hostile.kdl"),
        "{}",
        &report[..200]
    );
    let shown = report.matches("hostile.kdl:1:").count();
    assert_eq!(shown, MAX_SHOWN_ERRORS, "{}", &report[..200]);
    let tail = &report[report.len().saturating_sub(400)..];
    assert!(tail.contains("29900 more errors not shown"), "{tail}");
    assert!(report.len() < 8 << 20, "{} bytes", report.len());
}

#[test]
fn thirty_thousand_equals_signs_are_located_errors() {
    let e = load_syntax_errs(format!("{}\n", "=".repeat(30_000)));
    assert_eq!(e.at, (1, 1), "{}", e.first);
    assert!(e.count >= 30_000, "{} errors", e.count);
    assert_eq!(e.last_offset, 29_999);
}

#[test]
fn thirty_thousand_junk_tokens_are_located_errors() {
    // Junk that cannot start a node, in an order that repeats only every few hundred
    // tokens, separated by nothing, spaces or newlines. (Some junk makes the parser give
    // up for good, as `]` or `#` alone do: after it the rest of the file is not parsed,
    // which would make this test too easy.)
    let tokens = [")", "=", ")]", "=)", "])", "]=", "[)", ";)", "0x)", "1.="];
    let seps = ["", "", "", "\n", " "];
    let mut text = String::from("board \"ok\"\n");
    for i in 0..30_000usize {
        text.push_str(tokens[(i * 7 + i / 13) % tokens.len()]);
        text.push_str(seps[(i * 3 + i / 11) % seps.len()]);
    }
    let len = text.len();
    let e = load_syntax_errs(text);
    assert_eq!(e.at.0, 2, "{}", e.first);
    assert!(e.count >= 20_000, "{} errors", e.count);
    // The parser went through to the end of the file.
    assert!(e.last_offset + 10 >= len, "{} of {len}", e.last_offset);
}

/// `kdl` also recursed once per `*` or `/` inside a `/* */` comment (about 6 KiB each);
/// a cap of 256 such characters per comment kept it off the stack's end. Now the
/// parser loops and the comment is read through.
#[test]
fn a_comment_of_ten_thousand_stars_is_parsed_through() {
    // The comment is read to its end: the error is the misspelled node after it.
    let text = format!("/*{}*/\nbord \"x\"\n", "* ".repeat(10_000));
    let (at, report) = load_err(text);
    assert_eq!(at, (2, 1), "{report}");
    assert!(report.contains("did you mean `board`?"), "{report}");
    // Unclosed: a located syntax error, not a crash.
    let e = load_syntax_errs(format!("bord /*{}\n", "*/*".repeat(10_000)));
    assert_eq!(e.at.0, 1, "{}", e.first);
}

/// `kdl` parsed the entry after a `/-` as an entry that may itself start with `/-`:
/// 3,000 `/-` in a row overflowed the parser's thread (and 1,000 took 90 s).
#[test]
fn thirty_thousand_slashdashes_in_a_row_are_located_errors() {
    let e = load_syntax_errs(format!("board \"x\"{} 1\n", " /-".repeat(30_000)));
    // At the second `/-`: a slashdash comments out one entry, not another slashdash.
    assert_eq!(e.at, (1, 14), "{}", e.first);
    let e = load_syntax_errs(format!("{}board \"x\"\n", "/- ".repeat(30_000)));
    assert_eq!(e.at.0, 1, "{}", e.first);
}
