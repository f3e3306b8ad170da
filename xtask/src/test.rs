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

/// The lines a test guest named `vm` prints when every check passes.
fn guest_passes(vm: &str) -> Vec<String> {
    [
        "PASS console",
        "PASS timer",
        "PASS psci",
        "PASS sgi",
        "PASS stage2",
        "RESULT: 5 passed, 0 failed",
    ]
    .iter()
    .map(|l| format!("[{vm}] [test-guest] {l}"))
    .collect()
}

/// The QEMU scenarios, each a snapshot of serial output that must appear.
pub fn scenarios() -> Vec<Scenario> {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let mut one = s(&[
        "[hv] board: qemu-virt ",
        "[hv] EL2 page tables",
        "[hv] 4 of 4 CPUs online",
    ]);
    one.extend(guest_passes("test"));
    one.push("[hv] all VMs stopped; powering off".into());
    // Two VMs interleave: check each VM's own lines in order in two passes.
    let mut two_alpha = s(&["[hv] VM 0 `alpha`", "[hv] VM 1 `beta`"]);
    two_alpha.extend(guest_passes("alpha"));
    let mut two_beta = s(&["[hv] VM 1 `beta`"]);
    two_beta.extend(guest_passes("beta"));
    two_beta.push("[hv] all VMs stopped; powering off".into());
    let mut hostile = s(&["[spinner] [test-guest] hostile: spinning for ever"]);
    hostile.push("[victim] [test-guest] RESULT: 5 passed, 0 failed".into());
    vec![
        Scenario {
            name: "qemu-virt-test-guest".into(),
            target: target("qemu-virt", "examples/vms/test-guest.toml"),
            smp: None,
            expect: one,
            forbid: s(&["FAIL", "PANIC", "FATAL"]),
            expect_exit: true,
            timeout: Duration::from_secs(120),
            input: vec![],
        },
        Scenario {
            name: "two-vms-alpha".into(),
            target: target("qemu-virt", "examples/vms/two-guests.toml"),
            smp: None,
            expect: two_alpha,
            forbid: s(&["FAIL", "PANIC", "FATAL"]),
            expect_exit: true,
            timeout: Duration::from_secs(120),
            input: vec![],
        },
        Scenario {
            name: "two-vms-beta".into(),
            target: target("qemu-virt", "examples/vms/two-guests.toml"),
            smp: None,
            expect: two_beta,
            forbid: s(&["FAIL", "PANIC", "FATAL"]),
            expect_exit: true,
            timeout: Duration::from_secs(120),
            input: vec![],
        },
        Scenario {
            // 4 vCPUs time-sliced on 2 physical CPUs (QEMU -smp 2 on the 4-CPU board: the
            // two missing CPUs fail CPU_ON and are left out).
            name: "overcommit-4-vcpus-on-2-cpus".into(),
            target: target("qemu-virt", "examples/vms/overcommit.toml"),
            smp: Some(2),
            expect: {
                let mut e = s(&[
                    "[hv] 2 of 4 CPUs online",
                    "[hv] VM 0 `wide`: 4 vCPU(s) on pCPU(s) [0, 1, 0, 1]",
                ]);
                e.extend(guest_passes("wide"));
                e.push("[hv] all VMs stopped; powering off".into());
                e
            },
            forbid: s(&["FAIL", "PANIC", "FATAL"]),
            expect_exit: true,
            timeout: Duration::from_secs(120),
            input: vec![],
        },
        Scenario {
            // The victim's checks (timer ticks, SGIs, PSCI) still pass while one neighbour
            // spins with interrupts masked and another faults outside its RAM.
            name: "hostile-neighbours".into(),
            target: target("qemu-virt", "examples/vms/hostile-neighbours.toml"),
            smp: None,
            expect: hostile,
            forbid: s(&["PANIC", "FATAL", "[victim] [test-guest] FAIL"]),
            expect_exit: false,
            timeout: Duration::from_secs(180),
            input: vec![],
        },
    ]
}
