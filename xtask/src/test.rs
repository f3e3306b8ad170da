//! `cargo xtask test`: format and lint checks, host tests, every board built, QEMU scenarios.

use crate::build::{self, workspace_root, GUEST_TRIPLE, IMAGE_TRIPLE};
use crate::qemu::{self, Scenario};
use crate::Target;
use platform_dsl::model::SupportLevel;
use std::process::Command;
use std::time::{Duration, Instant};

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(workspace_root());
    c
}

fn step(name: &str, f: impl FnOnce() -> Result<(), String>) -> Result<(), String> {
    let t = Instant::now();
    eprintln!("==> {name}");
    let r = f();
    eprintln!(
        "<== {name}: {} in {:.1} s",
        if r.is_ok() { "ok" } else { "FAILED" },
        t.elapsed().as_secs_f64()
    );
    r.map_err(|e| format!("{name}: {e}"))
}

/// Runs everything; stops at the first failing step.
pub fn all() -> Result<(), String> {
    build::ensure_rust_targets()?;
    qemu::ensure_qemu()?;
    step("cargo fmt --check", || {
        build::run(cargo().args(["fmt", "--all", "--check"]))
    })?;
    step("clippy (host)", || {
        build::run(cargo().args([
            "clippy",
            "--quiet",
            "--workspace",
            "--exclude",
            "image",
            "--exclude",
            "test-guest",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]))
    })?;
    step("clippy (aarch64 images)", || {
        build::run(cargo().args([
            "clippy",
            "--quiet",
            "-p",
            "image",
            "--target",
            IMAGE_TRIPLE,
            "--",
            "-D",
            "warnings",
        ]))?;
        build::run(cargo().args([
            "clippy",
            "--quiet",
            "-p",
            "test-guest",
            "--target",
            GUEST_TRIPLE,
            "--",
            "-D",
            "warnings",
        ]))
    })?;
    step("host tests", || {
        build::run(cargo().args([
            "test",
            "--workspace",
            "--exclude",
            "image",
            "--exclude",
            "test-guest",
        ]))
    })?;
    step("build every board", build_every_board)?;
    let scenarios = scenarios();
    let total = scenarios.len();
    let mut failed = Vec::new();
    for s in &scenarios {
        let r = step(&format!("QEMU scenario {}", s.name), || {
            qemu::run_scenario(s)
        });
        if let Err(e) = r {
            eprintln!("{e}");
            failed.push(s.name.clone());
        }
    }
    println!(
        "qemu scenarios: {} passed, {} failed",
        total - failed.len(),
        failed.len()
    );
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("QEMU scenarios failed: {}", failed.join(", ")))
    }
}

fn build_every_board() -> Result<(), String> {
    let file = workspace_root().join("boards.kdl");
    let boards = platform_dsl::load_file(&file).map_err(|e| e.to_string())?;
    for b in &boards {
        let t = Target {
            board: b.name.clone(),
            board_file: file.clone(),
            vms: workspace_root().join("examples/vms/test-guest.toml"),
            allow_experimental: b.support == SupportLevel::Experimental,
        };
        let img = build::image(&t)?;
        let size = std::fs::metadata(&img.elf).map(|m| m.len()).unwrap_or(0);
        eprintln!("    built {} ({} KiB ELF)", b.name, size / 1024);
    }
    Ok(())
}

fn target(board: &str, vms: &str) -> Target {
    Target {
        board: board.into(),
        board_file: workspace_root().join("boards.kdl"),
        vms: workspace_root().join(vms),
        allow_experimental: false,
    }
}

/// The QEMU scenarios, each a snapshot of serial output that must appear.
pub fn scenarios() -> Vec<Scenario> {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    vec![Scenario {
        name: "qemu-virt-test-guest".into(),
        target: target("qemu-virt", "examples/vms/test-guest.toml"),
        smp: None,
        expect: s(&[
            "[hv] board: qemu-virt",
            "[test] [test-guest] PASS console",
            "[test] [test-guest] PASS timer",
            "[test] [test-guest] PASS sgi",
            "[test] [test-guest] PASS psci",
            "[test] [test-guest] PASS stage2",
            "[test] [test-guest] RESULT: 5 passed, 0 failed",
            "[hv] all VMs stopped; powering off",
        ]),
        forbid: s(&["FAIL", "PANIC", "FATAL"]),
        expect_exit: true,
        timeout: Duration::from_secs(120),
        input: vec![],
    }]
}
