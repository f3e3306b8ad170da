//! The command line, run as a user runs it: every subcommand's `--help`, suggestions for a
//! mistyped board before anything is built, and VM file errors with line and column.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn xtask() -> Command {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Every subcommand path, from `cargo xtask help`'s own list (so a new subcommand is
/// covered without editing this test), and the nested ones of each.
fn subcommands(prefix: &[String]) -> Vec<Vec<String>> {
    let mut args = prefix.to_vec();
    args.push("--help".into());
    let out = xtask().args(&args).output().unwrap();
    let help = text(&out.stdout);
    let Some(list) = help.split("Commands:\n").nth(1) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for line in list.lines() {
        // "  name   description"; the list ends at the first line not indented by two.
        let Some(rest) = line.strip_prefix("  ") else {
            break;
        };
        let name = rest.split_whitespace().next().unwrap_or_default();
        if name.is_empty() || name == "help" {
            continue;
        }
        let mut path = prefix.to_vec();
        path.push(name.to_string());
        found.push(path.clone());
        found.extend(subcommands(&path));
    }
    found
}

#[test]
fn help_of_every_subcommand_is_on_stdout_with_status_0() {
    let all = subcommands(&[]);
    // The top-level list and some nested ones were found (the parse above is not vacuous).
    for want in [
        "build",
        "scenario",
        "completions",
        "import-dtb",
        "board-diff",
    ] {
        assert!(all.iter().any(|p| p == &[want]), "no `{want}` in {all:?}");
    }
    assert!(all.iter().any(|p| p == &["guest", "rootfs"]), "{all:?}");
    assert!(all.iter().any(|p| p == &["boards", "check"]), "{all:?}");
    for path in &all {
        for help in ["--help", "-h"] {
            let out = xtask().args(path).arg(help).output().unwrap();
            let stdout = text(&out.stdout);
            assert!(
                out.status.success(),
                "`cargo xtask {} {help}` exited {}: {}",
                path.join(" "),
                out.status,
                text(&out.stderr)
            );
            assert!(
                stdout.contains("Usage: cargo xtask"),
                "`cargo xtask {} {help}` printed no usage on stdout: {stdout:?}",
                path.join(" ")
            );
        }
    }
    // `help SUBCOMMAND` too, and the version.
    let out = xtask().args(["help", "scenario"]).output().unwrap();
    assert!(out.status.success() && text(&out.stdout).contains("--list"));
    let out = xtask().arg("--version").output().unwrap();
    assert!(out.status.success());
    assert!(text(&out.stdout).starts_with("cargo xtask "));
}

#[test]
fn a_mistyped_command_gets_a_suggestion() {
    let out = xtask().arg("biuld").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("'build'"),
        "{}",
        text(&out.stderr)
    );
}

/// A `CARGO` that records that it was run: xtask spawns every build through `$CARGO`.
fn cargo_spy(dir: &Path) -> (PathBuf, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let marker = dir.join("cargo-was-run");
    let spy = dir.join("cargo-spy");
    std::fs::write(
        &spy,
        format!("#!/bin/sh\necho \"$@\" >> '{}'\nexit 1\n", marker.display()),
    )
    .unwrap();
    std::fs::set_permissions(&spy, std::fs::Permissions::from_mode(0o755)).unwrap();
    (spy, marker)
}

fn run_with_spy(args: &[&str]) -> (Output, Duration, Option<String>) {
    let dir = tempfile::tempdir().unwrap();
    let (spy, marker) = cargo_spy(dir.path());
    let t = Instant::now();
    let out = xtask().args(args).env("CARGO", &spy).output().unwrap();
    let spent = t.elapsed();
    (out, spent, std::fs::read_to_string(marker).ok())
}

#[test]
fn a_mistyped_board_gets_a_suggestion_before_anything_is_built() {
    for cmd in ["build", "run"] {
        let (out, spent, spawned) = run_with_spy(&[cmd, "--board", "qemu-virtt"]);
        let err = text(&out.stderr);
        assert!(!out.status.success());
        assert!(err.contains("did you mean `qemu-virt`"), "{cmd}: {err}");
        assert_eq!(
            spawned, None,
            "{cmd}: cargo was run before the board was checked"
        );
        assert!(spent < Duration::from_secs(10), "{cmd}: took {spent:?}");
    }
    // The spy does see builds: a good board gets as far as spawning cargo.
    let (_, _, spawned) = run_with_spy(&["build", "--board", "qemu-virt"]);
    assert!(
        spawned.is_some_and(|a| a.contains("build")),
        "the cargo spy saw no build of a valid board"
    );
}

#[test]
fn a_vm_file_with_an_unknown_key_gets_line_column_and_did_you_mean() {
    let dir = tempfile::tempdir().unwrap();
    let vms = dir.path().join("vms.toml");
    std::fs::write(
        &vms,
        "[[vm]]\nname = \"linux\"\nvcpus = 1\nmemory_mib = 64\nkernal = \"Image\"\ncmdline = \"\"\n",
    )
    .unwrap();
    let (out, _, spawned) = run_with_spy(&["build", "--vm", vms.to_str().unwrap()]);
    let err = text(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(&format!("{}:5:1", vms.display())),
        "no file:line:column in {err}"
    );
    assert!(err.contains("unknown field `kernal`"), "{err}");
    assert!(err.contains("did you mean `kernel`?"), "{err}");
    assert_eq!(
        spawned, None,
        "cargo was run before the VM file was checked"
    );
}

#[test]
fn a_missing_file_is_reported_before_anything_is_built_or_fetched() {
    let (out, _, spawned) = run_with_spy(&["build", "--vm", "/no/such/vms.toml"]);
    assert!(text(&out.stderr).contains("/no/such/vms.toml"));
    assert_eq!(spawned, None);
    let (out, _, spawned) = run_with_spy(&["build", "--board-file", "/no/such/boards.kdl"]);
    assert!(
        text(&out.stderr).contains("/no/such/boards.kdl"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(spawned, None);
    // A local DTB path that does not exist is an error, not a package download.
    let out = xtask()
        .args(["import-dtb", "./no-such.dtb", "--name", "x"])
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("no DTB file `./no-such.dtb`"), "{err}");
}

#[test]
fn completions_are_printed_for_each_shell() {
    for (shell, marker) in [
        ("bash", "complete"),
        ("zsh", "#compdef"),
        ("fish", "complete -c"),
    ] {
        let out = xtask().args(["completions", shell]).output().unwrap();
        assert!(out.status.success(), "{shell}");
        let script = text(&out.stdout);
        assert!(
            script.contains(marker) && script.contains("scenario"),
            "{shell}"
        );
    }
}

/// The bash script completes as cargo's own bash completion calls it for `cargo xtask`
/// (it renames the command word to `cargo-xtask`): commands, and a subcommand's options.
#[test]
fn bash_completion_completes_commands_and_options() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("cargo-xtask.bash");
    let out = xtask().args(["completions", "bash"]).output().unwrap();
    std::fs::write(&script, &out.stdout).unwrap();
    let complete = |words: &[&str]| -> String {
        let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
        let cword = words.len() - 1;
        let line = format!(
            "source '{}'; COMP_WORDS=({}); COMP_CWORD={cword}; \
             _cargo_xtask cargo-xtask '{}' '{}'; echo \"${{COMPREPLY[@]}}\"",
            script.display(),
            quoted.join(" "),
            words[cword],
            words[cword - 1],
        );
        let out = Command::new("bash").args(["-c", &line]).output().unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout).trim().to_string()
    };
    assert_eq!(complete(&["cargo-xtask", "scen"]), "scenario");
    assert_eq!(complete(&["cargo-xtask", "scenario", "--l"]), "--list");
    assert_eq!(
        complete(&["cargo-xtask", "build", "--allow-e"]),
        "--allow-experimental"
    );
    assert_eq!(
        complete(&["cargo-xtask", "guest", "sel"]),
        "selftest-storage"
    );
}
