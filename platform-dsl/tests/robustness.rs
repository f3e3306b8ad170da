//! Many errors in one file are all reported, and no input makes the loader panic.
//!
//! The `kdl` parser takes ~15 ms per KiB in a debug build, so the default run cuts
//! `tests/valid/minimal.kdl` at every byte and the hand-written head of `boards.kdl` (up
//! to the hardware boards) at every line; the exhaustive runs over all of `boards.kdl` are
//! `#[ignore]`d: `cargo test --release -p platform-dsl --test robustness -- --ignored`.

use std::path::PathBuf;

fn boards_kdl() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../boards.kdl");
    std::fs::read_to_string(path).expect("read boards.kdl")
}

/// `boards.kdl` up to the hardware boards appended at its end.
fn boards_kdl_head() -> String {
    let text = boards_kdl();
    let end = text.find("// ---- Hardware boards").unwrap_or(text.len());
    text[..end].to_owned()
}

fn minimal() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/valid/minimal.kdl");
    std::fs::read_to_string(path).expect("read minimal.kdl")
}

#[test]
fn every_error_in_a_file_is_reported() {
    let text = minimal()
        .replace(
            "device \"uart0\" compatible=",
            "device \"uart0\" compatibel=",
        )
        .replace("irq spi=1", "irq spi=64")
        .replace("console \"uart0\"", "console \"uart9\"")
        .replace("        cpu 0x1\n", "        cpu 0x0\n")
        .replace("spis=64", "spis=64 colour=\"red\"");
    let err = platform_dsl::load_str("many.kdl", &text).expect_err("five mistakes");
    let report = err.to_string();
    for wanted in [
        "unknown property `compatibel`",
        "unknown property `colour`",
        "SPI 64 is out of range",
        "console `uart9` names no device",
        "duplicate MPIDR `0x0`",
    ] {
        assert!(report.contains(wanted), "missing {wanted:?} in:\n{report}");
    }
    let diagnostics = err.diagnostics().expect("validation errors");
    // The five above, plus the device now missing its (misspelled) compatible.
    assert_eq!(diagnostics.len(), 6, "{report}");
    assert!(report.contains("6 errors in many.kdl"), "{report}");
}

#[test]
fn every_syntax_error_is_reported_with_its_place() {
    let err = platform_dsl::load_str("syntax.kdl", "a x=true\nb {\n").expect_err("bad KDL");
    let report = err.to_string();
    assert!(report.contains("syntax.kdl:1:"), "{report}");
    assert_eq!(err.location().map(|(line, _)| line), Some(1), "{report}");
}

/// Loads every prefix of `text` that `cut` accepts; returns how many were rejected.
fn load_prefixes(text: &str, cut: impl Fn(usize) -> bool) -> usize {
    let mut rejected = 0;
    for end in (0..=text.len()).filter(|&i| text.is_char_boundary(i) && cut(i)) {
        if let Err(e) = platform_dsl::load_str("prefix.kdl", &text[..end]) {
            // Rendering and locating must not panic either.
            assert!(!e.to_string().is_empty());
            let _ = e.location();
            rejected += 1;
        }
    }
    rejected
}

#[test]
fn no_prefix_of_a_board_file_panics() {
    let text = minimal();
    let rejected = load_prefixes(&text, |_| true);
    // Prefixes that end between nodes (inside the header comment, after the soc) are
    // valid files; the others are not.
    assert!(
        rejected > text.len() / 2,
        "only {rejected} prefixes rejected"
    );
}

#[test]
fn no_line_prefix_of_boards_kdl_panics() {
    let text = boards_kdl_head();
    let bytes = text.as_bytes();
    let rejected = load_prefixes(&text, |i| i == 0 || bytes[i - 1] == b'\n');
    assert!(rejected > 0);
}

#[test]
#[ignore = "exhaustive: minutes even in release; run with --release -- --ignored"]
fn no_prefix_of_boards_kdl_panics() {
    let text = boards_kdl();
    let rejected = load_prefixes(&text, |_| true);
    assert!(
        rejected > text.len() / 2,
        "only {rejected} prefixes rejected"
    );
}

/// xorshift64*: deterministic, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const SNIPPETS: &[&str] = &[
    "0x",
    "=",
    "{",
    "}",
    "\"",
    "#true",
    "-1",
    " spi=9999",
    " size=0",
    "\n",
    ";",
    "/-",
    "/*",
    " 0xffff_ffff_ffff_ffff_ff",
    "é",
    "\u{0}",
    "cpu 0x0\n",
    "device \"uart0\"",
    "(u8)",
    "1.5",
    "r#\"",
    "soc=\"nope\"",
    " node=7",
    "ppi=16",
];

fn mutate(rng: &mut Rng, text: &str) -> String {
    let mut bytes = text.as_bytes().to_vec();
    for _ in 0..=rng.below(4) {
        let at = rng.below(bytes.len() + 1);
        match rng.below(5) {
            0 if !bytes.is_empty() => {
                let i = at.min(bytes.len() - 1);
                bytes[i] = (rng.next() & 0xff) as u8;
            }
            1 => {
                let end = (at + rng.below(40)).min(bytes.len());
                bytes.drain(at..end);
            }
            2 => {
                let s = SNIPPETS[rng.below(SNIPPETS.len())];
                bytes.splice(at..at, s.bytes());
            }
            3 => {
                let end = (at + rng.below(80)).min(bytes.len());
                let copy = bytes[at..end].to_vec();
                let to = rng.below(bytes.len() + 1);
                bytes.splice(to..to, copy);
            }
            _ => {
                let digit = b"0123456789abcdef"[rng.below(16)];
                bytes.insert(at, digit);
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Loads `count` seeded mutations of `text`; returns how many still loaded.
fn load_mutations(text: &str, seed: u64, count: usize) -> usize {
    let mut rng = Rng(seed);
    let mut loaded = 0;
    for _ in 0..count {
        let mutated = mutate(&mut rng, text);
        match platform_dsl::load_str("mutated.kdl", &mutated) {
            Ok(_) => loaded += 1,
            Err(e) => {
                let _ = e.location();
                assert!(!e.to_string().is_empty());
            }
        }
    }
    loaded
}

#[test]
fn thousands_of_mutations_never_panic() {
    let loaded = load_mutations(&minimal(), 0x5eed_0fb0_a2d5, 2000);
    // Some mutations land in comments and still load; most must not.
    assert!(loaded < 1500, "{loaded} of 2000 mutations loaded");
}

#[test]
fn mutations_of_boards_kdl_never_panic() {
    let loaded = load_mutations(&boards_kdl_head(), 0xb0a2_d50f_5eed, 100);
    assert!(loaded < 100, "every mutation loaded");
}

#[test]
#[ignore = "exhaustive: run with --release -- --ignored"]
fn thousands_of_mutations_of_boards_kdl_never_panic() {
    let loaded = load_mutations(&boards_kdl(), 0x0ddb_a11e, 3000);
    assert!(loaded < 3000, "every mutation loaded");
}
