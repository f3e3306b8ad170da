//! `cargo xtask boards`: the table of known boards and the check of board files.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use platform_dsl::model::{Board, GicVersion, Status, SupportLevel, Verification};

/// The scenarios of `cargo xtask test` that boot each board of `boards.kdl` (board name to
/// scenario names): what backs a QEMU board's "supported".
pub fn booted_by() -> BTreeMap<String, Vec<String>> {
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for s in crate::test::scenarios() {
        map.entry(s.target.board.clone()).or_default().push(s.name);
    }
    // Scenarios made only once the guest images are there (they need no board of their own
    // but this one).
    for (board, name) in crate::test::GUEST_SCENARIO_BOARDS {
        map.entry((*board).to_owned())
            .or_default()
            .push((*name).to_owned());
    }
    map
}

/// One text table of `boards`: name, SoC, CPUs, GIC, support level, how it is verified
/// (for a QEMU board, how many scenarios of `cargo xtask test` boot it).
pub fn table(boards: &[Board]) -> String {
    let booted = booted_by();
    const HEADER: [&str; 6] = ["NAME", "SOC", "CPUS", "GIC", "SUPPORT", "VERIFIED BY"];
    let rows: Vec<[String; 6]> = boards
        .iter()
        .map(|b| {
            [
                b.name.clone(),
                b.soc.clone(),
                cpus(b),
                gic(b),
                support(b.support).to_owned(),
                verified_by(&b.verified_by, booted.get(&b.name).map_or(&[][..], |v| v)),
            ]
        })
        .collect();
    let mut widths = HEADER.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: [&str; 6]| {
        let mut text = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<w$}  "));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(HEADER);
    for row in &rows {
        line(row.each_ref().map(String::as_str));
    }
    out
}

/// Where the generated support matrix lives.
pub const DOCS_PATH: &str = "docs/boards.md";

/// `docs/boards.md`: the support matrix of `boards` (board, SoC, CPUs, GIC, console, support
/// level, how verified), then per board its disabled devices with their reasons, its quirks
/// and the scenarios that boot it. Generated, never edited: `cargo xtask boards docs`
/// writes it and `cargo xtask test` fails while it is stale.
pub fn markdown(boards: &[Board]) -> String {
    let booted = booted_by();
    let cell = |t: &str| t.replace('|', "\\|");
    let mut out = String::from(
        "# Boards: the support matrix\n\n\
         <!-- Generated from boards.kdl by `cargo xtask boards docs`; do not edit. \
         `cargo xtask test` fails while this file is stale. -->\n\n\
         What each board of `boards.kdl` is and how far it is proven. Support levels:\n\n\
         - **supported**: a scenario of `cargo xtask test` boots it in QEMU, or a recorded \
         hardware run boots it (`verified-by \"hardware\" log=`);\n\
         - **described**: written from upstream device trees (compared with `cargo xtask \
         board-diff`) or vendor sources cited in the KDL, never booted;\n\
         - **experimental**: described, with known gaps; built only with \
         `--allow-experimental`;\n\
         - **community**: maintained outside this repository.\n\n\
         How to add a board: [boards-kdl.md](boards-kdl.md). How to boot one: \
         [hardware.md](hardware.md).\n\n\
         | Board | Model | SoC | CPUs | GIC | Console | Support | How verified |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    for b in boards {
        let scenarios = booted.get(&b.name).map_or(&[][..], |v| v);
        out += &format!(
            "| `{}` | {} | {} | {} | {} | {} | {} | {} |\n",
            b.name,
            cell(&b.model),
            cell(&b.soc),
            cell(&cpus(b)),
            cell(&gic(b)),
            cell(&console(b)),
            support(b.support),
            cell(&verified_by(&b.verified_by, scenarios)),
        );
    }
    for b in boards {
        out += &format!("\n## `{}`\n\n{}\n\n", b.name, b.model);
        let scenarios = booted.get(&b.name).map_or(&[][..], |v| v);
        if !scenarios.is_empty() {
            out += &format!(
                "Booted by: {}.\n\n",
                scenarios
                    .iter()
                    .map(|s| format!("`{s}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        let disabled: Vec<String> = b
            .devices
            .iter()
            .filter_map(|d| match &d.status {
                Status::Disabled { reason } => Some(format!(
                    "- `{}` ({}): {}",
                    d.name,
                    d.compatible.first().map_or("no compatible", String::as_str),
                    reason
                )),
                Status::Okay => None,
            })
            .collect();
        if disabled.is_empty() {
            out += "Disabled devices: none.\n";
        } else {
            out += &format!("Disabled devices:\n\n{}\n", disabled.join("\n"));
        }
        if !b.quirks.is_empty() {
            out += &format!(
                "\nQuirks: {}.\n",
                b.quirks
                    .iter()
                    .map(|q| format!("`{}` for `{}`", q.name, q.matches))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    out
}

/// Writes [`DOCS_PATH`] (`check` false) or fails naming the command that fixes it when the
/// file differs from what `boards.kdl` gives (`check` true).
pub fn docs(check: bool) -> Result<(), String> {
    let root = crate::build::workspace_root();
    let boards = platform_dsl::load_file(root.join("boards.kdl")).map_err(|e| e.to_string())?;
    let want = markdown(&boards);
    let path = root.join(DOCS_PATH);
    if check {
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        if have != want {
            return Err(format!(
                "{DOCS_PATH} is stale (boards.kdl or the scenarios changed): run `cargo xtask boards docs` and commit it"
            ));
        }
        return Ok(());
    }
    std::fs::write(&path, want).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    println!("{}", path.display());
    Ok(())
}

/// "uart0 (arm,pl011)".
fn console(b: &Board) -> String {
    match (b.console_device(), &b.console) {
        (Some(d), _) => match d.compatible.first() {
            Some(c) => format!("{} ({c})", d.name),
            None => d.name.clone(),
        },
        (None, Some(name)) => name.clone(),
        (None, None) => "none".to_owned(),
    }
}

/// "4x cortex-a57", "160x neoverse-n1, 2 sockets", "2x cortex-a72 + 4x cortex-a53".
fn cpus(b: &Board) -> String {
    let mut kinds: Vec<(String, usize)> = Vec::new();
    for cpu in &b.cpus {
        let core = cpu
            .core
            .strip_prefix("arm,")
            .unwrap_or(&cpu.core)
            .to_owned();
        match kinds.iter_mut().find(|(k, _)| *k == core) {
            Some((_, n)) => *n += 1,
            None => kinds.push((core, 1)),
        }
    }
    let mut text = kinds
        .iter()
        .map(|(core, n)| format!("{n}x {core}"))
        .collect::<Vec<_>>()
        .join(" + ");
    if b.topology.sockets > 1 {
        text.push_str(&format!(", {} sockets", b.topology.sockets));
    }
    text
}

fn gic(b: &Board) -> String {
    let version = match b.gic.version {
        GicVersion::V2 => "GICv2",
        GicVersion::V3 => "GICv3",
    };
    format!("{version} ({})", b.gic.compatible)
}

fn support(level: SupportLevel) -> &'static str {
    match level {
        SupportLevel::Supported => "supported",
        SupportLevel::Described => "described",
        SupportLevel::Experimental => "experimental",
        SupportLevel::Community => "community",
    }
}

fn verified_by(v: &Verification, scenarios: &[String]) -> String {
    match v {
        Verification::Qemu { machine, smp, .. } => match scenarios {
            [] => format!("qemu -M {machine} -smp {smp}: no scenario boots it"),
            [one] => format!("qemu -M {machine} -smp {smp}: booted by scenario {one}"),
            [first, rest @ ..] => format!(
                "qemu -M {machine} -smp {smp}: booted by {} scenarios ({first}, ...)",
                rest.len() + 1
            ),
        },
        Verification::Hardware { log } => format!("hardware run, console log {log}"),
        Verification::DeviceTree { dtb } => format!("compared with the upstream DTB {dtb}"),
        Verification::None => "vendor sources cited in the KDL".to_owned(),
    }
}

/// Why a board of `boards.kdl` may not be called "supported", if it may not: a QEMU board
/// that no scenario boots, or a hardware run whose log is missing or shows no boot.
pub fn unproven_support(b: &Board, board_file: &std::path::Path) -> Option<String> {
    if b.support != SupportLevel::Supported {
        return None;
    }
    match &b.verified_by {
        Verification::Qemu { .. } => (!booted_by().contains_key(&b.name)).then(|| {
            format!(
                "board `{}` is supported and verified-by \"qemu\", but no scenario of `cargo \
                 xtask test` boots it: add one, or write `support \"described\"`",
                b.name
            )
        }),
        Verification::Hardware { log } => {
            let path = board_file
                .parent()
                .unwrap_or(std::path::Path::new("."))
                .join(log);
            let banner = format!("[hv] board: {} ", b.name);
            match std::fs::read_to_string(&path) {
                Ok(text) if text.contains(&banner) => None,
                Ok(_) => Some(format!(
                    "board `{}`: the hardware log {} does not show `{banner}`",
                    b.name,
                    path.display()
                )),
                Err(e) => Some(format!(
                    "board `{}`: hardware log {}: {e}",
                    b.name,
                    path.display()
                )),
            }
        }
        // Refused by the board rules already (`platform_dsl::check`).
        Verification::DeviceTree { .. } | Verification::None => Some(format!(
            "board `{}` is supported but was never booted: write `support \"described\"`",
            b.name
        )),
    }
}

/// Some board files did not validate; their diagnostics have been printed.
#[derive(Debug)]
pub struct CheckError {
    /// Files with errors, each with its number of errors (0 when it could not be read).
    pub failed: Vec<(PathBuf, usize)>,
}

impl fmt::Display for CheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list: Vec<String> = self
            .failed
            .iter()
            .map(|(path, n)| match n {
                0 => format!("{} (unreadable)", path.display()),
                n => format!(
                    "{} ({n} error{})",
                    path.display(),
                    if *n == 1 { "" } else { "s" }
                ),
            })
            .collect();
        write!(
            f,
            "board files with errors: {}; fix the diagnostics printed above",
            list.join(", ")
        )
    }
}

impl std::error::Error for CheckError {}

/// Validates every file, printing each one's diagnostics (or a one-line summary when it is
/// fine) to stderr; fails if any file has errors.
pub fn check(files: &[PathBuf]) -> Result<(), CheckError> {
    let mut failed = Vec::new();
    for path in files {
        match platform_dsl::load_file(path) {
            Ok(boards) => {
                let names: Vec<&str> = boards.iter().map(|b| b.name.as_str()).collect();
                eprintln!(
                    "{}: ok, {} board(s): {}",
                    path.display(),
                    boards.len(),
                    names.join(", ")
                );
            }
            Err(e) => {
                eprintln!("{e}");
                failed.push((path.clone(), e.diagnostics().map_or(0, |d| d.len())));
            }
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(CheckError { failed })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO_SOCKETS: &str = r#"
soc "s" {
    gic version=3 compatible="arm,gic-v3" spis=64 {
        distributor 0x0800_0000 size=0x1_0000
        redistributor 0x080a_0000 size=0x2_0000
        maintenance-irq ppi=9
    }
    timer secure-phys=13 phys=14 virt=11 hyp-phys=10
    pmu ppi=7
    device "uart0" compatible="arm,pl011" { reg 0x0900_0000 size=0x1000; }
}
board "big" soc="s" {
    model "Two sockets"
    support "experimental"
    verified-by "dtb" path="vendor/big.dtb"
    topology sockets=2 clusters=1 cores=2
    cpus core="arm,neoverse-n1" {
        cpu 0x0
        cpu 0x1
        cpu 0x1_0000_0000 socket=1
        cpu 0x1_0000_0001 socket=1
    }
    memory "dram0" 0x8000_0000 size=0x8000_0000
    memory "dram1" 0x1_0000_0000 size=0x8000_0000 node=1
    hypervisor load=0x8020_0000 size=0x0200_0000
    console "uart0"
}
"#;

    fn repo_boards() -> Vec<Board> {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../boards.kdl");
        platform_dsl::load_file(path).unwrap_or_else(|e| panic!("{e}"))
    }

    fn temp_file(name: &str, text: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!("xtask-boards-{}-{name}", std::process::id()));
        std::fs::write(&path, text).expect("write temp file");
        path
    }

    #[test]
    fn table_has_a_header_and_one_row_per_board() {
        let boards = repo_boards();
        let t = table(&boards);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), boards.len() + 1, "{t}");
        assert!(lines[0].starts_with("NAME"), "{t}");
        assert!(lines[0].contains("VERIFIED BY"), "{t}");
    }

    #[test]
    fn table_row_shows_soc_cpus_gic_support_and_verification() {
        let t = table(&repo_boards());
        let row = t
            .lines()
            .find(|l| l.starts_with("qemu-virt "))
            .expect("qemu-virt row");
        for cell in [
            "qemu-virt",
            "4x cortex-a57",
            "GICv3 (arm,gic-v3)",
            "supported",
            "qemu -M virt,virtualization=on,gic-version=3 -smp 4",
        ] {
            assert!(row.contains(cell), "{cell:?} not in {row:?}");
        }
    }

    #[test]
    fn table_shows_sockets_only_when_more_than_one() {
        let boards =
            platform_dsl::load_str("two.kdl", TWO_SOCKETS).unwrap_or_else(|e| panic!("{e}"));
        let t = table(&boards);
        assert!(t.contains("4x neoverse-n1, 2 sockets"), "{t}");
        assert!(t.contains("experimental"), "{t}");
        assert!(
            t.contains("compared with the upstream DTB vendor/big.dtb"),
            "{t}"
        );
        let single = table(&repo_boards());
        let row = single
            .lines()
            .find(|l| l.starts_with("qemu-virt "))
            .expect("qemu-virt row");
        assert!(!row.contains("sockets"), "{row}");
    }

    /// `cargo xtask boards` calls a board of `boards.kdl` supported only when a scenario of
    /// `cargo xtask test` (or a recorded hardware run) boots it.
    #[test]
    fn the_docs_matrix_has_a_row_per_board_and_every_disabled_device_with_its_reason() {
        let boards = repo_boards();
        let md = markdown(&boards);
        for b in &boards {
            assert!(md.contains(&format!("| `{}` |", b.name)), "{}", b.name);
            for d in &b.devices {
                if let Status::Disabled { reason } = &d.status {
                    assert!(md.contains(&format!("- `{}` (", d.name)), "{}", d.name);
                    assert!(md.contains(reason.as_str()), "{reason}");
                }
            }
        }
        assert!(md.contains("| `qemu-virt` | "));
        assert!(md.contains("uart0 (arm,pl011)"), "the console column");
    }

    #[test]
    fn the_committed_docs_matrix_is_current() {
        // What `cargo xtask test` checks; run `cargo xtask boards docs` when it fails.
        docs(true).unwrap();
    }

    #[test]
    fn every_supported_board_is_booted() {
        let file = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../boards.kdl");
        let boards = repo_boards();
        let unproven: Vec<String> = boards
            .iter()
            .filter_map(|b| unproven_support(b, &file))
            .collect();
        assert!(unproven.is_empty(), "{unproven:#?}");
        let supported = boards
            .iter()
            .filter(|b| b.support == SupportLevel::Supported)
            .count();
        assert!(supported >= 3, "only {supported} supported boards");
    }

    #[test]
    fn a_qemu_board_without_a_scenario_or_a_missing_log_is_not_supported() {
        let file = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../boards.kdl");
        let mut b = repo_boards().remove(0);
        b.name = "nobody-boots-this".into();
        let why = unproven_support(&b, &file).expect("refused");
        assert!(why.contains("no scenario"), "{why}");
        b.verified_by = Verification::Hardware {
            log: "docs/hardware-runs/none.log".into(),
        };
        let why = unproven_support(&b, &file).expect("refused");
        assert!(why.contains("none.log"), "{why}");
        b.support = SupportLevel::Described;
        assert_eq!(unproven_support(&b, &file), None);
    }

    #[test]
    fn check_accepts_valid_files() {
        let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../boards.kdl");
        let two = temp_file("two.kdl", TWO_SOCKETS);
        let result = check(&[repo, two.clone()]);
        let _ = std::fs::remove_file(&two);
        assert!(result.is_ok(), "{result:?}");
    }

    /// `check` (what `cargo xtask boards check` runs) on a 256 KiB thread: 10,000 nested
    /// blocks and a non-UTF-8 file are both bad files with their place, and nothing
    /// overflows.
    #[test]
    fn check_survives_hostile_files() {
        let deep = temp_file(
            "deep.kdl",
            &format!("{}{}", "a {".repeat(10_000), "}".repeat(10_000)),
        );
        let latin1 = temp_file("latin1.kdl", "");
        std::fs::write(&latin1, b"board \"caf\xe9\"\n").expect("write temp file");
        let (files, paths) = (
            vec![deep.clone(), latin1.clone()],
            (deep.clone(), latin1.clone()),
        );
        let (err, deep_err, latin1_err) = std::thread::Builder::new()
            .stack_size(256 << 10)
            .spawn(move || {
                let err = check(&files).expect_err("two bad files");
                let deep_err = platform_dsl::load_file(&paths.0).expect_err("too deep");
                let latin1_err = platform_dsl::load_file(&paths.1).expect_err("not UTF-8");
                (err, deep_err, latin1_err)
            })
            .expect("spawn")
            .join()
            .expect("no panic");
        let _ = std::fs::remove_file(&deep);
        let _ = std::fs::remove_file(&latin1);
        // One diagnostic for the deep file; the UTF-8 error has no diagnostics list.
        assert_eq!(err.failed, vec![(deep.clone(), 1), (latin1.clone(), 0)]);
        // `a {` is three characters: the 65th `{` is at column 3 * 64 + 3.
        assert_eq!(deep_err.location(), Some((1, 195)));
        assert!(deep_err
            .to_string()
            .contains("blocks nested more than 64 deep"));
        assert_eq!(latin1_err.location(), Some((1, 11)), "{latin1_err}");
        let msg = latin1_err.to_string();
        assert!(
            msg.contains(":1:11: byte 0xe9 at offset 10 is not UTF-8"),
            "{msg}"
        );
    }

    #[test]
    fn check_fails_and_names_every_bad_file() {
        let bad = temp_file("bad.kdl", &TWO_SOCKETS.replace("spis=64", "spis=\"64\""));
        let missing = std::env::temp_dir().join("xtask-boards-does-not-exist.kdl");
        let err = check(&[bad.clone(), missing.clone()]).expect_err("two bad files");
        let _ = std::fs::remove_file(&bad);
        assert_eq!(err.failed, vec![(bad.clone(), 1), (missing.clone(), 0)]);
        let msg = err.to_string();
        assert!(
            msg.contains("(1 error)") && msg.contains("(unreadable)"),
            "{msg}"
        );
    }
}
