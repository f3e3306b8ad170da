//! Golden models: `boards.kdl` lowered, compared with `tests/golden/<board>.json`.
//!
//! `UPDATE_GOLDEN=1 cargo test -p platform-dsl --test golden` rewrites them.

use std::path::PathBuf;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn boards_kdl() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../boards.kdl")
}

#[test]
fn boards_kdl_matches_the_golden_models() {
    let boards = platform_dsl::load_file(boards_kdl()).unwrap_or_else(|e| panic!("{e}"));
    assert!(!boards.is_empty(), "boards.kdl has no board");
    let update = std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1");
    let mut mismatches = Vec::new();
    for board in &boards {
        let path = dir().join(format!("{}.json", board.name));
        // Line numbers are not part of the golden models (a comment added to boards.kdl
        // would change them all); `source_lines_point_at_the_parts_written` checks them.
        let board = platform_dsl::model::Board {
            source: Default::default(),
            ..board.clone()
        };
        let json = serde_json::to_string_pretty(&board).expect("a board serializes") + "\n";
        if update {
            std::fs::write(&path, &json).expect("write golden file");
            continue;
        }
        match std::fs::read_to_string(&path) {
            Ok(expected) if expected == json => {}
            Ok(_) => mismatches.push(format!("{} differs", path.display())),
            Err(e) => mismatches.push(format!("{}: {e}", path.display())),
        }
    }
    // A golden file whose board disappeared is stale.
    for entry in std::fs::read_dir(dir()).expect("golden dir exists") {
        let path = entry.expect("dir entry").path();
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_owned();
        if path.extension().is_some_and(|e| e == "json") && !boards.iter().any(|b| b.name == stem) {
            if update {
                std::fs::remove_file(&path).expect("remove stale golden file");
            } else {
                mismatches.push(format!("{} has no board in boards.kdl", path.display()));
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "golden models out of date (run with UPDATE_GOLDEN=1 and review the diff):\n{}",
        mismatches.join("\n")
    );
}

#[test]
fn golden_models_round_trip_through_serde() {
    for entry in std::fs::read_dir(dir()).expect("golden dir exists") {
        let path = entry.expect("dir entry").path();
        if path.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(&path).expect("read golden");
            let board: platform_dsl::model::Board =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_eq!(
                serde_json::to_string_pretty(&board).expect("serialize") + "\n",
                text
            );
        }
    }
}

/// The line in boards.kdl of the first line containing all of `needles`, at or after
/// the line starting with `after`.
fn line_of(text: &str, after: &str, needles: &[&str]) -> u32 {
    let start = text
        .lines()
        .position(|l| l.starts_with(after))
        .unwrap_or_else(|| panic!("no line starts with {after:?}"));
    let i = text
        .lines()
        .enumerate()
        .skip(start)
        .find(|(_, l)| needles.iter().all(|n| l.contains(n)))
        .unwrap_or_else(|| panic!("no line with {needles:?} after {after:?}"))
        .0;
    u32::try_from(i + 1).expect("small file")
}

#[test]
fn source_lines_point_at_the_parts_written() {
    let text = std::fs::read_to_string(boards_kdl()).expect("read boards.kdl");
    let boards = platform_dsl::load_file(boards_kdl()).unwrap_or_else(|e| panic!("{e}"));
    let virt = platform_dsl::find_board(&boards, "qemu-virt").expect("board exists");
    assert_eq!(virt.source.file, "boards.kdl");
    let soc = "soc \"qemu-virt\"";
    let board = "board \"qemu-virt\"";
    for (key, after, needles) in [
        ("gic.distributor", soc, &["distributor 0x0800_0000"][..]),
        ("gic.redistributor.0", soc, &["redistributor 0x080a_0000"]),
        ("timer", soc, &["timer secure-phys"]),
        ("device.uart0", soc, &["device \"uart0\""]),
        ("device.pcie.reg.ecam", soc, &["name=\"ecam\""]),
        ("cpus", board, &["cpus core="]),
        ("cpu.3", board, &["cpu 0x3"]),
        ("memory.dram0", board, &["memory \"dram0\""]),
        ("console", board, &["console \"uart0\""]),
    ] {
        assert_eq!(
            virt.source.line(key),
            Some(line_of(&text, after, needles)),
            "{key}"
        );
    }
    // Mt. Jade: one redistributor region per socket, each with its own line.
    let jade = platform_dsl::find_board(&boards, "ampere-mt-jade").expect("board exists");
    let (r0, r1) = (
        jade.source.line("gic.redistributor.0"),
        jade.source.line("gic.redistributor.1"),
    );
    assert_eq!(
        r0,
        Some(line_of(
            &text,
            "board \"ampere-mt-jade\"",
            &["redistributor 0x1001_0014_0000"]
        ))
    );
    assert_eq!(
        r1,
        Some(line_of(
            &text,
            "board \"ampere-mt-jade\"",
            &["redistributor 0x5001_0014_0000"]
        ))
    );
}

#[test]
fn first_board_is_the_default_qemu_virt() {
    let boards = platform_dsl::load_file(boards_kdl()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(boards[0].name, "qemu-virt");
}

#[test]
fn gicv2_board_overrides_the_socs_gicv3() {
    let boards = platform_dsl::load_file(boards_kdl()).unwrap_or_else(|e| panic!("{e}"));
    let v2 = platform_dsl::find_board(&boards, "qemu-virt-gicv2").expect("board exists");
    assert_eq!(v2.gic.version, platform_dsl::model::GicVersion::V2);
    assert!(v2.gic.redistributors.is_empty());
    assert_eq!(
        v2.gic.hyp_interface.as_ref().map(|r| r.base),
        Some(0x0803_0000)
    );
    // ... and keeps the SoC's UART.
    assert_eq!(v2.devices[0].regs[0].base, 0x0900_0000);
}

#[test]
fn unknown_board_lists_known_names() {
    let boards = platform_dsl::load_file(boards_kdl()).unwrap_or_else(|e| panic!("{e}"));
    let err = platform_dsl::find_board(&boards, "qemu-vrit").expect_err("no such board");
    let msg = err.to_string();
    assert!(msg.contains("did you mean `qemu-virt`"), "{msg}");
    assert!(msg.contains("xlnx-zcu102"), "{msg}");
}
