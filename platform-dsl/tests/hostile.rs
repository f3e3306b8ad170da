//! Hostile board files (nesting 10,000 deep, invalid UTF-8, oversized) get a located error
//! and never crash the loader.
//!
//! Every test runs on a thread with a 256 KiB stack: if the limits stopped being checked
//! before the recursive `kdl` parser runs, or the loader itself recursed over the input's
//! depth, the process would die of a stack overflow here instead of passing on the test
//! harness's bigger stack.

use platform_dsl::guard::{MAX_BYTES, MAX_COMMENT_MARKS, MAX_DEPTH};
use platform_dsl::Error;
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

    let stars = format!("/*{}*/\n", "* ".repeat(10_000));
    let (at, report) = load_err(stars);
    assert_eq!(at, (1, 3 + 2 * MAX_COMMENT_MARKS), "{report}");
    assert!(report.contains("write long text"), "{report}");
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
