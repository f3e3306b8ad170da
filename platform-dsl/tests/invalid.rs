//! Every diagnostic has a fixture: `tests/invalid/<case>.kdl` must fail to load, and each
//! non-empty line of `<case>.expected` (lines starting with `#` are comments) must appear
//! in the rendered report: the message, `<case>.kdl:LINE:COL`, the label and the help.

use std::path::{Path, PathBuf};

fn tests_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests")
}

fn fixtures() -> Vec<PathBuf> {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(tests_dir().join("invalid"))
        .expect("tests/invalid exists")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "kdl"))
        .collect();
    cases.sort();
    cases
}

fn render(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path).expect("read fixture");
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .expect("utf-8 name");
    match platform_dsl::load_str(name, &text) {
        Ok(boards) => Err(format!("loaded {} board(s) without error", boards.len())),
        Err(e) => Ok(e.to_string()),
    }
}

#[test]
fn the_base_of_every_fixture_is_valid() {
    let path = tests_dir().join("valid/minimal.kdl");
    let text = std::fs::read_to_string(&path).expect("read minimal.kdl");
    let boards = platform_dsl::load_str("minimal.kdl", &text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(boards.len(), 1);
}

#[test]
fn every_invalid_fixture_reports_its_expected_diagnostic() {
    let cases = fixtures();
    assert!(cases.len() >= 30, "only {} fixtures", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let rendered = match render(case) {
            Ok(r) => r,
            Err(why) => {
                failures.push(format!("{}: {why}", case.display()));
                continue;
            }
        };
        let expected_path = case.with_extension("expected");
        let Ok(expected) = std::fs::read_to_string(&expected_path) else {
            failures.push(format!(
                "{} is missing; the report was:\n{rendered}",
                expected_path.display()
            ));
            continue;
        };
        let wanted: Vec<&str> = expected
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect();
        if wanted.is_empty() {
            failures.push(format!("{} expects nothing", expected_path.display()));
        }
        for line in wanted {
            if !rendered.contains(line) {
                failures.push(format!(
                    "{}: missing {line:?} in:\n{rendered}",
                    case.display()
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn every_error_points_at_a_line_and_column() {
    for case in fixtures() {
        let text = std::fs::read_to_string(&case).expect("read fixture");
        let err = platform_dsl::load_str("x.kdl", &text).expect_err("fixture is invalid");
        let (line, col) = err
            .location()
            .unwrap_or_else(|| panic!("{}: no location", case.display()));
        assert!(line >= 2 && col >= 1, "{}: {line}:{col}", case.display());
        let report = err.to_string();
        assert!(
            report.contains(&format!("x.kdl:{line}:{col}")),
            "{}: report does not show x.kdl:{line}:{col}:\n{report}",
            case.display()
        );
    }
}
