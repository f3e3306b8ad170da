//! trybuild tests: every diagnostic of board!/vms! and a passing expansion.
//!
//! The macros read the build's selection from `HV_SELECTED_*`; each group below sets it,
//! then compiles its cases (the variables reach rustc through trybuild's cargo).

use std::path::PathBuf;

fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
        .display()
        .to_string()
}

/// Runs one trybuild batch with `env` set (trybuild compiles when `TestCases` drops).
fn batch(env: &[(&str, String)], cases: impl FnOnce(&trybuild::TestCases)) {
    for var in [
        "HV_SELECTED_BOARD_FILE",
        "HV_SELECTED_BOARD",
        "HV_SELECTED_VMS",
        "HV_ALLOW_EXPERIMENTAL",
    ] {
        std::env::remove_var(var);
    }
    for (k, v) in env {
        std::env::set_var(k, v);
    }
    let t = trybuild::TestCases::new();
    cases(&t);
}

#[test]
fn ui() {
    let selected = |board: &str, vms: &str| {
        vec![
            ("HV_SELECTED_BOARD_FILE", fixture(board)),
            ("HV_SELECTED_BOARD", "test-virt".to_owned()),
            ("HV_SELECTED_VMS", fixture(vms)),
            ("HV_ALLOW_EXPERIMENTAL", "0".to_owned()),
        ]
    };
    batch(&selected("boards.kdl", "vms.toml"), |t| {
        t.pass("tests/ui/pass_selected_board.rs");
        t.pass("tests/ui/pass_experimental_opt_in.rs");
        t.compile_fail("tests/ui/experimental_without_opt_in.rs");
        t.compile_fail("tests/ui/unknown_board.rs");
        t.compile_fail("tests/ui/bad_argument.rs");
    });
    batch(&selected("syntax-error.kdl", "vms.toml"), |t| {
        t.compile_fail("tests/ui/kdl_syntax_error.rs");
    });
    batch(&selected("boards.kdl", "invalid-vms.toml"), |t| {
        t.compile_fail("tests/ui/invalid_vm_toml.rs");
    });
}
