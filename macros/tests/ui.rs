//! trybuild tests: every diagnostic of board!/vms! and a passing expansion.
//!
//! The macros read the model the image's build script writes (`HV_MODEL`); each group
//! below writes one with the same loader from the fixtures, points `HV_MODEL` at it, then
//! compiles its cases (the variable reaches rustc through trybuild's cargo).

use platform_dsl::image::{Model, Selection, MODEL_ENV};
use std::path::PathBuf;

fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
        .display()
        .to_string()
}

/// Loads `board_file` (board `test-virt`) and `vms` as a build script would and writes
/// the model; returns its path.
fn model(tag: &str, board_file: &str, vms: &str) -> String {
    let sel = Selection {
        board_file: fixture(board_file).into(),
        board: "test-virt".to_owned(),
        vms: fixture(vms).into(),
        allow_experimental: false,
    };
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("ui-model-{tag}.json"));
    Model::load(&sel)
        .write(&path)
        .unwrap_or_else(|e| panic!("{e}"));
    path.display().to_string()
}

/// Runs one trybuild batch with `HV_MODEL` set (trybuild compiles when `TestCases` drops).
fn batch(model: String, cases: impl FnOnce(&trybuild::TestCases)) {
    std::env::set_var(MODEL_ENV, model);
    let t = trybuild::TestCases::new();
    cases(&t);
}

#[test]
fn ui() {
    batch(model("selected", "boards.kdl", "vms.toml"), |t| {
        t.pass("tests/ui/pass_selected_board.rs");
        t.pass("tests/ui/pass_experimental_opt_in.rs");
        t.compile_fail("tests/ui/experimental_without_opt_in.rs");
        t.compile_fail("tests/ui/unknown_board.rs");
        t.compile_fail("tests/ui/bad_argument.rs");
    });
    batch(model("syntax", "syntax-error.kdl", "vms.toml"), |t| {
        t.compile_fail("tests/ui/kdl_syntax_error.rs");
    });
    batch(
        model("invalid-vms", "boards.kdl", "invalid-vms.toml"),
        |t| {
            t.compile_fail("tests/ui/invalid_vm_toml.rs");
        },
    );
}
