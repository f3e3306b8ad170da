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
    scenarios_matching("")
}

/// Runs the QEMU scenarios whose name contains `filter` (all for ""), one at a time.
pub fn scenarios_matching(filter: &str) -> Result<(), String> {
    qemu::ensure_qemu()?;
    let scenarios: Vec<Scenario> = scenarios()
        .into_iter()
        .filter(|s| s.name.contains(filter))
        .collect();
    if scenarios.is_empty() {
        return Err(format!("no QEMU scenario matches `{filter}`"));
    }
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
    let mut hostile = s(&["[hv] VM 2 `faulter`"]);
    hostile.extend(guest_passes("victim"));
    vec![
        Scenario {
            name: "qemu-virt-test-guest".into(),
            target: target("qemu-virt", "examples/vms/test-guest.toml"),
            smp: None,
            expect: one,
            expect_unordered: vec![],
            forbid: s(&["FAIL", "PANIC", "FATAL"]),
            expect_exit: true,
            timeout: Duration::from_secs(120),
            input: vec![],
            out_of_tree: false,
        },
        Scenario {
            name: "two-vms-alpha".into(),
            target: target("qemu-virt", "examples/vms/two-guests.toml"),
            smp: None,
            expect: two_alpha,
            expect_unordered: vec![],
            forbid: s(&["FAIL", "PANIC", "FATAL"]),
            expect_exit: true,
            timeout: Duration::from_secs(120),
            input: vec![],
            out_of_tree: false,
        },
        Scenario {
            name: "two-vms-beta".into(),
            target: target("qemu-virt", "examples/vms/two-guests.toml"),
            smp: None,
            expect: two_beta,
            expect_unordered: vec![],
            forbid: s(&["FAIL", "PANIC", "FATAL"]),
            expect_exit: true,
            timeout: Duration::from_secs(120),
            input: vec![],
            out_of_tree: false,
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
            expect_unordered: vec![],
            forbid: s(&["FAIL", "PANIC", "FATAL"]),
            expect_exit: true,
            timeout: Duration::from_secs(120),
            input: vec![],
            out_of_tree: false,
        },
        Scenario {
            // The victim's checks (timer ticks, SGIs, PSCI) still pass while one neighbour
            // spins with interrupts masked and another faults outside its RAM.
            name: "hostile-neighbours".into(),
            target: target("qemu-virt", "examples/vms/hostile-neighbours.toml"),
            // Two physical CPUs: the spinner and the faulter share them with the victim.
            smp: Some(2),
            expect: hostile,
            expect_unordered: s(&[
                "[spinner] [test-guest] hostile: spinning for ever",
                "[faulter] [test-guest] hostile: jumping outside RAM",
            ]),
            forbid: s(&["PANIC", "FATAL", "[victim] [test-guest] FAIL"]),
            expect_exit: false,
            timeout: Duration::from_secs(180),
            input: vec![],
            out_of_tree: false,
        },
        Scenario {
            // Console multiplexing: input goes to VM 0, Ctrl-] 1 switches it to VM 1; each
            // guest echoes what its virtual UART received (RX interrupt through the vGIC).
            name: "console-switch".into(),
            target: target("qemu-virt", "examples/vms/two-echo.toml"),
            smp: None,
            expect: s(&[
                "[alpha] [test-guest] echo: hello",
                "[hv] console input now goes to VM 1 `beta`",
                "[beta] [test-guest] echo: world",
                "[beta] [test-guest] echo: bye",
                "[hv] console input now goes to VM 0 `alpha`",
                "[alpha] [test-guest] echo: bye",
                "[hv] all VMs stopped; powering off",
            ]),
            expect_unordered: vec![],
            forbid: s(&[
                "FAIL",
                "PANIC",
                "FATAL",
                "[beta] [test-guest] echo: hello",
                "[alpha] [test-guest] echo: world",
            ]),
            expect_exit: true,
            timeout: Duration::from_secs(120),
            input: vec![
                ("[alpha] [test-guest] echo: ready".into(), "hello\r".into()),
                ("[alpha] [test-guest] echo: hello".into(), "\u{1d}1".into()),
                (
                    "[hv] console input now goes to VM 1".into(),
                    "world\r".into(),
                ),
                ("[beta] [test-guest] echo: world".into(), "off\r".into()),
                ("[beta] [test-guest] echo: bye".into(), "\u{1d}0".into()),
                ("[hv] console input now goes to VM 0".into(), "off\r".into()),
            ],
            out_of_tree: false,
        },
        Scenario {
            // The PL031 RTC passed through: the guest reads it and takes its match
            // interrupt, routed from the physical GIC.
            name: "passthrough-rtc".into(),
            target: target("qemu-virt", "examples/vms/passthrough.toml"),
            smp: None,
            expect: s(&[
                "[hv] VM 0 `owner`: device rtc passed through, INTID 34",
                "[owner] [test-guest] PASS console",
                "[owner] [test-guest] PASS passthrough",
                "[owner] [test-guest] RESULT: 6 passed, 0 failed",
                "[hv] all VMs stopped; powering off",
            ]),
            expect_unordered: vec![],
            forbid: s(&["FAIL", "PANIC", "FATAL"]),
            expect_exit: true,
            timeout: Duration::from_secs(120),
            input: vec![],
            out_of_tree: false,
        },
        Scenario {
            // A board that exists only as a KDL file outside boards.kdl, built into the
            // in-tree image with `--board-file`: no Rust file names it.
            name: "kdl-only-board".into(),
            target: Target {
                board: "acme-board".into(),
                board_file: workspace_root().join("examples/out-of-tree/acme-board.kdl"),
                vms: workspace_root().join("examples/vms/test-guest.toml"),
                allow_experimental: false,
            },
            smp: None,
            expect: {
                let mut e = s(&[
                    "[hv] board: acme-board ",
                    "[hv] device acme-uart0: driver uart-pl011",
                    "[hv] 2 of 2 CPUs online",
                ]);
                e.extend(guest_passes("test"));
                e.push("[hv] all VMs stopped; powering off".into());
                e
            },
            expect_unordered: vec![],
            forbid: s(&["FAIL", "PANIC", "FATAL"]),
            expect_exit: true,
            timeout: Duration::from_secs(120),
            input: vec![],
            out_of_tree: false,
        },
        Scenario {
            // The out-of-tree example as a user builds it: its own workspace, a community
            // plugin crate that registers itself, one `cargo build`.
            name: "out-of-tree-image".into(),
            target: Target {
                board: "acme-board".into(),
                board_file: workspace_root().join("examples/out-of-tree/acme-board.kdl"),
                vms: workspace_root().join("examples/out-of-tree/acme-image/vms.toml"),
                allow_experimental: false,
            },
            smp: None,
            expect: {
                let mut e = s(&[
                    "[hv] board: acme-board ",
                    "[hv] device acme-uart0: driver acme-uart",
                ]);
                e.extend(guest_passes("test"));
                e.push("[hv] all VMs stopped; powering off".into());
                e
            },
            expect_unordered: vec![],
            forbid: s(&["FAIL", "PANIC", "FATAL"]),
            expect_exit: true,
            timeout: Duration::from_secs(120),
            input: vec![],
            out_of_tree: true,
        },
    ]
}
