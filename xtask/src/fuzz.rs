//! `cargo xtask fuzz`: the libFuzzer targets in `fuzz/`, a short smoke run or a long run.
//!
//! The targets build with `cargo fuzz` on the stable toolchain: `cargo fuzz` passes
//! `-Zsanitizer=address` and other `-Z` flags, which stable `rustc` accepts with
//! `RUSTC_BOOTSTRAP=1`. By hand, from `fuzz/`:
//!
//! ```text
//! RUSTC_BOOTSTRAP=1 cargo fuzz run vgic_mmio /tmp/corpus corpus/vgic_mmio -- -max_total_time=60
//! ```
//!
//! The first directory receives the inputs libFuzzer finds; the checked-in seeds in
//! `fuzz/corpus/<target>/` and the crash inputs in `fuzz/regressions/<target>/` are only
//! read, so a run never rewrites them. A crash leaves its input in
//! `fuzz/artifacts/<target>/`: minimize it (`cargo fuzz tmin`), copy it to
//! `fuzz/regressions/<target>/` and add a unit test to the crate under test.

use crate::build::{self, target_dir, workspace_root};
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

/// The fuzz targets (`fuzz/fuzz_targets/<name>.rs`).
pub const TARGETS: [&str; 10] = [
    "kdl_front_end",
    "trap_decoder",
    "vgic_mmio",
    "nvme_commands",
    "pci_config",
    "virtqueue",
    "ahci_commands",
    "virtio_net",
    "http_request",
    "acpi_tables",
];

/// Seconds each target runs in [`smoke`].
const SMOKE_SECONDS: u64 = 3;

/// Builds every target (as [`spawn_build`] does, waiting for it) and runs each for
/// [`SMOKE_SECONDS`]; fails on a crash.
pub fn smoke() -> Result<(), String> {
    smoke_after(spawn_build())
}

/// Starts installing `cargo-fuzz` (if missing) and building the targets in the background,
/// at the lowest CPU priority, with the output in `target/fuzz-build.log`: `cargo xtask
/// test` runs it beside the QEMU scenarios, which keep one host core busy each and leave
/// the other mostly idle. [`smoke_after`] waits for it.
pub fn spawn_build() -> std::thread::JoinHandle<Result<(), String>> {
    std::thread::spawn(|| {
        let t = Instant::now();
        let log_path = target_dir().join("fuzz-build.log");
        let log = std::fs::File::create(&log_path)
            .map_err(|e| format!("cannot create {}: {e}", log_path.display()))?;
        let err = log
            .try_clone()
            .map_err(|e| format!("cannot write {}: {e}", log_path.display()))?;
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let have = fuzz_cargo()
            .args(["fuzz", "--version"])
            .output()
            .is_ok_and(|o| o.status.success());
        let script = if have {
            "exec nice -n 19 \"$0\" fuzz build"
        } else {
            "nice -n 19 \"$0\" install cargo-fuzz --locked && exec nice -n 19 \"$0\" fuzz build"
        };
        let status = fuzz_cargo_env(Command::new("sh"))
            .args(["-c", script, &cargo])
            .stdout(log)
            .stderr(err)
            .status()
            .map_err(|e| format!("cannot run sh: {e}"))?;
        if status.success() {
            Ok(t.elapsed().as_secs_f64())
        } else {
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            Err(format!(
                "building the fuzz targets failed ({status}); the end of {}:\n{}",
                log_path.display(),
                tail.join("\n")
            ))
        }
        .map(|secs| eprintln!("fuzz targets built in the background in {secs:.1} s"))
    })
}

/// Waits for [`spawn_build`], then runs every target for [`SMOKE_SECONDS`] as [`smoke`]
/// does (the build is then up to date and only checked).
pub fn smoke_after(build: std::thread::JoinHandle<Result<(), String>>) -> Result<(), String> {
    build
        .join()
        .map_err(|_| "the fuzz build thread panicked".to_owned())??;
    run_all(&TARGETS, SMOKE_SECONDS)
}

/// `cargo xtask fuzz [--minutes N] [TARGET...]`: every target (or the named ones) for N
/// minutes each (default 1); `--smoke`: every target for a few seconds.
#[derive(Debug, clap::Args)]
pub struct FuzzArgs {
    /// Minutes per target
    #[arg(long, value_name = "N", default_value_t = 1)]
    minutes: u64,
    /// Every target for 3 s (the checked-in corpus and regressions), as `cargo xtask test` does
    #[arg(long, conflicts_with_all = ["minutes", "targets"])]
    smoke: bool,
    /// Only these targets [default: all]
    #[arg(value_name = "TARGET", value_parser = TARGETS)]
    targets: Vec<String>,
}

/// `cargo xtask fuzz ...`.
pub fn cmd(args: FuzzArgs) -> Result<(), String> {
    if args.smoke {
        return smoke();
    }
    let mut targets: Vec<&str> = args.targets.iter().map(String::as_str).collect();
    if targets.is_empty() {
        targets.extend(TARGETS);
    }
    run_all(&targets, args.minutes.saturating_mul(60))
}

fn run_all(targets: &[&str], seconds: u64) -> Result<(), String> {
    ensure_cargo_fuzz()?;
    let t = Instant::now();
    build::run(fuzz_cargo().args(["fuzz", "build"]))
        .map_err(|e| format!("building the fuzz targets: {e}"))?;
    eprintln!("fuzz targets built in {:.1} s", t.elapsed().as_secs_f64());
    let mut crashed = Vec::new();
    for target in targets {
        let t = Instant::now();
        let r = run_one(target, seconds);
        eprintln!(
            "fuzz {target}: {} after {:.1} s",
            if r.is_ok() { "no crash" } else { "CRASH" },
            t.elapsed().as_secs_f64()
        );
        if let Err(e) = r {
            crashed.push(e);
        }
    }
    if crashed.is_empty() {
        Ok(())
    } else {
        Err(crashed.join("\n"))
    }
}

fn run_one(target: &str, seconds: u64) -> Result<(), String> {
    let fuzz = fuzz_dir();
    let scratch = target_dir().join("fuzz/corpus").join(target);
    std::fs::create_dir_all(&scratch)
        .map_err(|e| format!("cannot create {}: {e}", scratch.display()))?;
    let mut c = fuzz_cargo();
    c.args(["fuzz", "run", target]).arg(&scratch);
    for seeds in ["corpus", "regressions"] {
        let dir = fuzz.join(seeds).join(target);
        if dir.is_dir() {
            c.arg(dir);
        }
    }
    c.arg("--").args([
        format!("-max_total_time={seconds}"),
        // An input that takes this long is a hang; libFuzzer reports it as a crash.
        "-timeout=10".into(),
        "-print_final_stats=1".into(),
    ]);
    build::run(&mut c).map_err(|_| {
        format!(
            "fuzz target `{target}` crashed: its input is in {}; minimize it with \
             `cargo fuzz tmin {target} FILE` (from fuzz/, with RUSTC_BOOTSTRAP=1), copy it to \
             fuzz/regressions/{target}/ and add a unit test to the crate under test",
            fuzz.join("artifacts").join(target).display()
        )
    })
}

fn fuzz_dir() -> PathBuf {
    workspace_root().join("fuzz")
}

/// `cargo` in `fuzz/`, with its own target directory (the sanitizer flags would otherwise
/// invalidate the workspace's build) and `-Z` flags allowed on stable.
fn fuzz_cargo() -> Command {
    fuzz_cargo_env(Command::new(
        std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()),
    ))
}

/// `c` run in `fuzz/` with the environment of [`fuzz_cargo`].
fn fuzz_cargo_env(mut c: Command) -> Command {
    c.current_dir(fuzz_dir())
        .env("RUSTC_BOOTSTRAP", "1")
        .env("CARGO_TARGET_DIR", target_dir().join("fuzz"));
    c
}

/// Installs `cargo-fuzz` from crates.io if `cargo fuzz` is not available.
fn ensure_cargo_fuzz() -> Result<(), String> {
    let have = fuzz_cargo()
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if have {
        return Ok(());
    }
    eprintln!("cargo-fuzz not found: installing it from crates.io");
    let t = Instant::now();
    build::run(
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())).args([
            "install",
            "cargo-fuzz",
            "--locked",
        ]),
    )
    .map_err(|e| format!("installing cargo-fuzz: {e}; install it by hand with `cargo install cargo-fuzz --locked`"))?;
    eprintln!("cargo-fuzz installed in {:.1} s", t.elapsed().as_secs_f64());
    Ok(())
}
