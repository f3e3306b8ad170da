//! QEMU: installing it, the command line for a board, interactive runs and scripted scenarios.

use crate::build::{self, Image};
use crate::Target;
use platform_dsl::model::Verification;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const QEMU: &str = "qemu-system-aarch64";

/// Installs QEMU from Debian's packages if it is missing.
pub fn ensure_qemu() -> Result<(), String> {
    if Command::new(QEMU)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return Ok(());
    }
    eprintln!("xtask: {QEMU} not found; installing Debian's qemu-system-arm");
    let apt = |args: &[&str]| {
        build::run(
            Command::new("apt-get")
                .args(args)
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )
    };
    apt(&["update", "-q"])
        .and_then(|_| apt(&["install", "-y", "-q", "--no-install-recommends", "qemu-system-arm"]))
        .map_err(|e| format!("{e}\n{QEMU} is missing and could not be installed; install Debian's `qemu-system-arm` package (as root: apt-get install qemu-system-arm)"))
}

/// The QEMU command line that boots `img` on its board's verified machine.
pub fn command(img: &Image, extra_smp: Option<u32>) -> Result<Command, String> {
    let Verification::Qemu {
        machine,
        cpu,
        smp,
        memory_mib,
        extra,
    } = &img.board.verified_by
    else {
        return Err(format!(
            "board `{}` has no QEMU machine line (`verified-by \"qemu\" ...` in its KDL), so it cannot be run here",
            img.board.name
        ));
    };
    let mut c = Command::new(QEMU);
    c.args(["-M", machine, "-cpu", cpu, "-m", &memory_mib.to_string()])
        .args(["-smp", &extra_smp.unwrap_or(*smp).to_string()])
        .args(["-nographic", "-no-reboot", "-net", "none"])
        .arg("-kernel")
        .arg(&img.elf)
        .args(extra)
        .args(img.plan.qemu_loader_args());
    Ok(c)
}

/// `cargo xtask run`: build, then boot with the console on this terminal.
pub fn run_interactive(t: &Target, timeout: Option<u64>) -> Result<(), String> {
    ensure_qemu()?;
    let img = build::image(t)?;
    let mut cmd = command(&img, None)?;
    eprintln!("xtask: {cmd:?}");
    eprintln!(
        "xtask: console input goes to VM 0; Ctrl-] then a digit switches VM; Ctrl-A x quits QEMU"
    );
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {QEMU}: {e}"))?;
    let status = match timeout {
        None => child.wait().map_err(|e| e.to_string())?,
        Some(secs) => {
            let deadline = Instant::now() + Duration::from_secs(secs);
            loop {
                if let Some(s) = child.try_wait().map_err(|e| e.to_string())? {
                    break s;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!("QEMU did not exit within {secs} s; killed"));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    };
    if status.success() {
        Ok(())
    } else {
        Err(format!("QEMU exited with {status}"))
    }
}

/// A scripted QEMU run: lines that must appear (in order), lines that must not, input.
pub struct Scenario {
    /// Name (log file name).
    pub name: String,
    /// Board, VM file.
    pub target: Target,
    /// Override `-smp`.
    pub smp: Option<u32>,
    /// Substrings that must appear in this order.
    pub expect: Vec<String>,
    /// Substrings that must also appear, in any order, before the scenario ends.
    pub expect_unordered: Vec<String>,
    /// Substrings that must never appear.
    pub forbid: Vec<String>,
    /// Must QEMU exit by itself (status 0) after the last expected line?
    pub expect_exit: bool,
    /// Overall time limit.
    pub timeout: Duration,
    /// Input steps, in order: once every trigger of a step has appeared (in any order)
    /// since the previous step's bytes were typed, type its bytes.
    pub input: Vec<(Vec<String>, String)>,
    /// Build the out-of-tree example workspace (`examples/out-of-tree`) instead of the
    /// in-tree image; `target` then names its board file, board and VM file.
    pub out_of_tree: bool,
}

impl Scenario {
    /// A scenario that expects `expect` in order and QEMU to exit by itself within two
    /// minutes, with the usual forbidden words (`FAIL`, `PANIC`, `FATAL`); adjust the
    /// other fields with struct update syntax.
    pub fn new(name: impl Into<String>, target: Target, expect: Vec<String>) -> Self {
        Self {
            name: name.into(),
            target,
            smp: None,
            expect,
            expect_unordered: Vec::new(),
            forbid: ["FAIL", "PANIC", "FATAL"].map(String::from).to_vec(),
            expect_exit: true,
            timeout: Duration::from_secs(120),
            input: Vec::new(),
            out_of_tree: false,
        }
    }
}

struct Killer(Child);
impl Drop for Killer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs one scenario; `Err` carries the reason and the log path.
pub fn run_scenario(s: &Scenario) -> Result<(), String> {
    let img = if s.out_of_tree {
        build::out_of_tree_image(&s.target)?
    } else {
        build::image(&s.target)?
    };
    let mut cmd = command(&img, s.smp)?;
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let log_dir = build::workspace_root().join("target/qemu-logs");
    let _ = std::fs::create_dir_all(&log_dir);
    let log_path: PathBuf = log_dir.join(format!("{}.log", s.name));
    let mut log = std::fs::File::create(&log_path)
        .map_err(|e| format!("cannot create {}: {e}", log_path.display()))?;
    let _ = writeln!(log, "$ {cmd:?}");
    let mut child = Killer(
        cmd.spawn()
            .map_err(|e| format!("cannot start {QEMU}: {e}"))?,
    );
    let stdout = child.0.stdout.take().ok_or("no stdout")?;
    let mut stderr = child.0.stderr.take().ok_or("no stderr")?;
    let mut stdin = child.0.stdin.take();
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).split(b'\n') {
            let Ok(line) = line else { break };
            if tx
                .send(
                    String::from_utf8_lossy(&line)
                        .trim_end_matches('\r')
                        .to_owned(),
                )
                .is_err()
            {
                break;
            }
        }
    });
    let start = Instant::now();
    let mut next = 0;
    let mut unseen: Vec<&String> = s.expect_unordered.iter().collect();
    let mut inputs = s.input.iter().peekable();
    let mut since_send: Vec<String> = Vec::new();
    let fail = |why: String, log_path: &PathBuf| {
        Err(format!(
            "scenario {}: {why} (log: {})",
            s.name,
            log_path.display()
        ))
    };
    loop {
        let left = s.timeout.saturating_sub(start.elapsed());
        if left.is_zero() {
            let want = s
                .expect
                .get(next)
                .cloned()
                .unwrap_or_else(|| "QEMU to exit".into());
            return fail(
                format!("timed out after {:?} waiting for `{want}`", s.timeout),
                &log_path,
            );
        }
        match rx.recv_timeout(left.min(Duration::from_millis(200))) {
            Ok(line) => {
                let _ = writeln!(log, "{line}");
                if let Some(bad) = s.forbid.iter().find(|f| line.contains(f.as_str())) {
                    return fail(
                        format!("forbidden output `{bad}` in line `{line}`"),
                        &log_path,
                    );
                }
                if next < s.expect.len() && line.contains(s.expect[next].as_str()) {
                    next += 1;
                }
                unseen.retain(|u| !line.contains(u.as_str()));
                since_send.push(line.clone());
                while let Some((triggers, text)) = inputs.peek() {
                    let ready = triggers
                        .iter()
                        .all(|t| since_send.iter().any(|l| l.contains(t.as_str())));
                    if !ready {
                        break;
                    }
                    if let Some(w) = stdin.as_mut() {
                        let _ = w.write_all(text.as_bytes());
                        let _ = w.flush();
                    }
                    since_send.clear();
                    inputs.next();
                }
                if next == s.expect.len() && unseen.is_empty() && !s.expect_exit {
                    return Ok(());
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                // QEMU closed its output: it exited.
                let status = child.0.wait().map_err(|e| e.to_string())?;
                let mut err = String::new();
                let _ = stderr.read_to_string(&mut err);
                let _ = writeln!(log, "--- stderr ---\n{err}\n--- exit: {status}");
                if next < s.expect.len() {
                    return fail(
                        format!(
                            "QEMU exited ({status}) before `{}` appeared",
                            s.expect[next]
                        ),
                        &log_path,
                    );
                }
                if s.expect_exit && !status.success() {
                    return fail(format!("QEMU exited with {status}"), &log_path);
                }
                return Ok(());
            }
        }
    }
}
