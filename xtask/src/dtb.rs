//! Upstream device trees as a source of board facts: `import-dtb` (DTB to KDL) and
//! `board-diff` (a board of boards.kdl against its DTB), with DTBs from Debian's arm64 kernel
//! (and those it lacks, Tegra194's, compiled from Debian's linux-source-6.1: `source.rs`).

mod diff;
mod extract;
mod kdl;
mod source;
mod tree;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Where the DTBs of Debian's arm64 kernel are cached (relative to the workspace root).
const DTB_CACHE: &str = "target/dtb-cache";
/// Explained differences: board name -> list of `{ path, reason }`.
const EXPLAINED: &str = "boards-diff-explained.toml";
/// Boards checked against a DTB other than their `verified-by` (board, DTB).
const EXTRA_CHECKS: &[(&str, &str)] = &[("xlnx-zcu102", "xilinx/zynqmp-zcu102-rev1.0.dtb")];
/// RAM given on the command line, `(base, size)`.
type Ram = (u64, u64);

/// DTBs of boards not in boards.kdl, imported by [`check_all_boards`] and built by
/// `cargo xtask test` to prove the generator: Quartz64 model A with its RAM given (4 GiB,
/// RK3566 DRAM at 0, below the 0xf000_0000 peripherals), and LS1046A-RDB as its DTB has it:
/// memory@80000000 of size 0 (`from="firmware"`, fsl-ls1046a.dtsi) and its console 16550 at
/// 0x21c_0500, inside a 4 KiB page it shares with the second UART at 0x21c_0600; and the
/// ThinkPad X13s, whose DT enables no UART (a board without a console).
const IMPORT_CHECKS: &[(&str, &str, Option<Ram>)] = &[
    (
        "pine64-quartz64-a",
        "rockchip/rk3566-quartz64-a.dtb",
        Some((0x0, 0xf000_0000)),
    ),
    ("nxp-ls1046a-rdb", "freescale/fsl-ls1046a-rdb.dtb", None),
    // Every UART of its DT is disabled: a board without a console (`console
    // unavailable=`), whose image builds with no console driver.
    (
        "lenovo-thinkpad-x13s",
        "qcom/sc8280xp-lenovo-thinkpad-x13s.dtb",
        None,
    ),
];

/// One explained difference.
#[derive(Debug, Deserialize)]
struct Explanation {
    path: String,
    reason: String,
}

fn dtb_cache() -> PathBuf {
    crate::build::workspace_root().join(DTB_CACHE)
}

/// The directory holding `<vendor>/*.dtb`, fetched on first use.
pub fn dtb_dir() -> Result<PathBuf, String> {
    let cache = dtb_cache();
    if let Some(d) = cached_dtb_dir(&cache) {
        return Ok(d);
    }
    crate::guest::fetch_dtbs(&cache).map_err(|e| e.to_string())
}

fn cached_dtb_dir(cache: &Path) -> Option<PathBuf> {
    let lib = cache.join("usr/lib");
    std::fs::read_dir(&lib)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.join("broadcom").is_dir())
}

/// A DTB given as a file path, or as `vendor/name.dtb` inside the cached Debian DTBs (or
/// one of those compiled from linux-source, [`source::FROM_SOURCE`]).
fn dtb_file(arg: &str) -> Result<PathBuf, String> {
    let p = Path::new(arg);
    if p.is_file() {
        return Ok(p.to_path_buf());
    }
    // Only `vendor/name.dtb` can name a DTB of Debian's package: anything else is a local
    // path that does not exist, and fetching the package would not help.
    let parts: Vec<_> = p.components().collect();
    let debian_form = parts.len() == 2
        && parts
            .iter()
            .all(|c| matches!(c, std::path::Component::Normal(_)))
        && p.extension().is_some_and(|e| e == "dtb");
    if !debian_form {
        return Err(format!(
            "no DTB file `{arg}` (a DTB of Debian's kernel package is named vendor/name.dtb, \
             e.g. marvell/armada-8040-mcbin.dtb)"
        ));
    }
    if source::is_from_source(arg) {
        return source::compiled(&dtb_cache(), arg);
    }
    let in_cache = dtb_dir()?.join(arg);
    if in_cache.is_file() {
        Ok(in_cache)
    } else {
        Err(format!(
            "no DTB `{arg}` (neither a file nor in {})",
            in_cache.display()
        ))
    }
}

fn load_dtb(path: &Path) -> Result<extract::DtBoard, String> {
    let bytes =
        std::fs::read(path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    let t = tree::Tree::parse(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    extract::extract(&t).map_err(|e| format!("{}: {e}", path.display()))
}

/// KDL for a DTB, validated with `platform_dsl::load_str`.
/// `memory` replaces the DT's memory when given (for DTBs whose firmware fills it in).
pub fn import(
    dtb: &[u8],
    name: &str,
    cite: &str,
    memory: Option<(u64, u64)>,
) -> Result<String, String> {
    let t = tree::Tree::parse(dtb)?;
    let mut d = extract::extract(&t)?;
    if let Some(m) = memory {
        d.memory = vec![m];
    }
    let text = kdl::generate(&d, name, cite)?;
    platform_dsl::load_str(&format!("{name}.kdl (generated)"), &text).map_err(|e| {
        format!("the generated KDL does not validate (a bug in xtask/src/dtb/kdl.rs):\n{e}\n--- generated text ---\n{text}")
    })?;
    Ok(text)
}

/// `cargo xtask import-dtb`.
///
/// RAM: the DT's `/memory` nodes; one of size 0 (the firmware fills it in at boot) becomes
/// `memory "dram0" BASE from="firmware"`, and a DT without any becomes `memory "dram0"
/// from="firmware"` with no `hypervisor load=`: the hypervisor then takes RAM from the device
/// tree or UEFI memory map its loader passes (docs/boards-kdl.md). Device windows are the
/// DT's own, page aligned or not; GIC windows are widened to whole 4 KiB pages. Each fact is
/// followed by a comment citing the DT node or value it came from.
#[derive(Debug, clap::Args)]
#[command(group = clap::ArgGroup::new("what").required(true).args(["file", "all"]))]
pub struct ImportArgs {
    /// A .dtb file, or vendor/name.dtb of Debian's kernel package (fetched on first use)
    #[arg(value_name = "FILE.dtb", requires = "name")]
    file: Option<String>,
    /// The new board's name
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// Write the KDL here instead of standard output
    #[arg(long, value_name = "F.kdl")]
    out: Option<PathBuf>,
    /// Memory as BASE,SIZE in hex, instead of the DT's (e.g. 0x0,0x8000_0000); without it a
    /// DTB whose firmware fills in RAM gets `from="firmware"`
    #[arg(long, value_name = "BASE,SIZE", value_parser = parse_memory)]
    memory: Option<(u64, u64)>,
    /// Import every DTB of Debian's kernel package and validate each as `boards check`
    /// does, as `cargo xtask test` does (DTBs without a GIC, or without a usable console
    /// UART, are counted as refused, with the reason)
    #[arg(long, conflicts_with_all = ["file", "name", "out", "memory"])]
    all: bool,
}

/// `cargo xtask import-dtb FILE.dtb --name NAME [--out F.kdl] [--memory BASE,SIZE] | --all`.
pub fn import_cmd(args: ImportArgs) -> Result<(), String> {
    let (Some(file), Some(name)) = (&args.file, &args.name) else {
        return import_every_dtb();
    };
    let path = dtb_file(file)?;
    let bytes =
        std::fs::read(&path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    // Cited relative to the DTB cache when it came from there; never fetched for a local file.
    let cite = cached_dtb_dir(&dtb_cache())
        .and_then(|dir| path.strip_prefix(dir).ok().map(|p| p.display().to_string()))
        .unwrap_or_else(|| file.clone());
    let text = import(&bytes, name, &cite, args.memory)?;
    match args.out {
        Some(o) => {
            std::fs::write(&o, text).map_err(|e| format!("cannot write `{}`: {e}", o.display()))
        }
        None => {
            print!("{text}");
            Ok(())
        }
    }
}

/// Why a DTB is rightly not imported: the board cannot host this hypervisor as the DT
/// describes it. Matched on the start of [`import`]'s error.
const REFUSALS: &[(&str, &str)] = &[
    ("no GIC in the device tree", "no GIC"),
    (
        "the DT's GIC lacks the GICH/GICV windows",
        "GICv2 without GICH/GICV (cannot run VMs)",
    ),
];

/// What importing every DTB gave.
#[derive(Debug, Default)]
pub struct ImportSurvey {
    /// DTBs looked at.
    pub total: usize,
    /// Imported and validated.
    pub ok: usize,
    /// Refused for a reason of [`REFUSALS`]: (its short reason, DTB, the importer's message).
    pub refused: Vec<(&'static str, String, String)>,
    /// Anything else: (DTB, error). Each is a bug of the importer or the board rules.
    pub failed: Vec<(String, String)>,
}

/// Imports the DTB files `files` (paths relative to `dir`), each validated by
/// `platform_dsl::load_str` inside [`import`] (what `cargo xtask boards check` runs on a
/// file), on two threads.
pub fn survey(dir: &Path, files: &[String]) -> ImportSurvey {
    let results: Vec<(String, Result<(), String>)> = std::thread::scope(|scope| {
        let halves: Vec<&[String]> = files.chunks(files.len().div_ceil(2).max(1)).collect();
        let handles: Vec<_> = halves
            .into_iter()
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|f| {
                            let r = std::fs::read(dir.join(f))
                                .map_err(|e| format!("cannot read: {e}"))
                                .and_then(|bytes| import(&bytes, "imported", f, None))
                                .map(|_| ());
                            (f.clone(), r)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    });
    let mut out = ImportSurvey {
        total: files.len(),
        ..ImportSurvey::default()
    };
    for (f, r) in results {
        match r {
            Ok(()) => out.ok += 1,
            Err(e) => match REFUSALS.iter().find(|(start, _)| e.starts_with(start)) {
                Some((_, why)) => out.refused.push((why, f, e)),
                None => out.failed.push((f, e)),
            },
        }
    }
    out
}

/// Every `vendor/name.dtb` under `dir`, sorted.
fn all_dtbs(dir: &Path) -> Result<Vec<String>, String> {
    let mut files = Vec::new();
    let vendors =
        std::fs::read_dir(dir).map_err(|e| format!("cannot read `{}`: {e}", dir.display()))?;
    for v in vendors.filter_map(Result::ok).filter(|v| v.path().is_dir()) {
        let vendor = v.file_name().to_string_lossy().to_string();
        for f in std::fs::read_dir(v.path())
            .map_err(|e| format!("cannot read `{}`: {e}", v.path().display()))?
            .filter_map(Result::ok)
        {
            let name = f.file_name().to_string_lossy().to_string();
            if name.ends_with(".dtb") {
                files.push(format!("{vendor}/{name}"));
            }
        }
    }
    files.sort();
    Ok(files)
}

/// For `cargo xtask test` (and `import-dtb --all`): every DTB of Debian's arm64 kernel
/// package (the DTBs the test fetches for `board-diff`) imports to a board that validates,
/// or is refused for a reason of [`REFUSALS`], which is printed.
pub fn import_every_dtb() -> Result<(), String> {
    let dir = dtb_dir()?;
    let files = all_dtbs(&dir)?;
    if files.is_empty() {
        return Err(format!("no DTBs under {}", dir.display()));
    }
    let s = survey(&dir, &files);
    let mut by_reason: BTreeMap<&str, usize> = BTreeMap::new();
    for (why, _, _) in &s.refused {
        *by_reason.entry(why).or_default() += 1;
    }
    let reasons: Vec<String> = by_reason
        .iter()
        .map(|(why, n)| format!("{n} refused: {why}"))
        .collect();
    println!(
        "import-dtb: {} of {} DTBs import and validate; {}{}",
        s.ok,
        s.total,
        reasons.join("; "),
        if s.failed.is_empty() {
            String::new()
        } else {
            format!("; {} FAIL", s.failed.len())
        }
    );
    // The few refused for a reason other than having no GIC, each with its reason.
    for (why, f, e) in s.refused.iter().filter(|r| r.0 != "no GIC") {
        println!("  refused ({why}) {f}: {e}");
    }
    if s.failed.is_empty() {
        Ok(())
    } else {
        // The first few in full (the validator's report), the rest by name.
        const IN_FULL: usize = 10;
        let mut list: Vec<String> = s
            .failed
            .iter()
            .take(IN_FULL)
            .map(|(f, e)| {
                format!(
                    "{f}: {}",
                    e.lines().take(12).collect::<Vec<_>>().join("\n    ")
                )
            })
            .collect();
        if s.failed.len() > IN_FULL {
            let rest: Vec<&str> = s.failed[IN_FULL..]
                .iter()
                .map(|(f, _)| f.as_str())
                .collect();
            list.push(format!("and {}: {}", rest.len(), rest.join(", ")));
        }
        Err(format!(
            "{} DTB(s) of Debian's kernel package do not import to a valid board (try `cargo xtask import-dtb vendor/name.dtb --name x`):\n  {}",
            s.failed.len(),
            list.join("\n  ")
        ))
    }
}

/// `BASE,SIZE` in hex (`0x0,0x8000_0000`).
fn parse_memory(s: &str) -> Result<(u64, u64), String> {
    let num = |v: &str| {
        let v = v.trim().replace('_', "");
        u64::from_str_radix(v.trim_start_matches("0x"), 16).map_err(|e| {
            format!("--memory `{s}`: {e}; write BASE,SIZE in hex, e.g. 0x0,0x8000_0000")
        })
    };
    let (b, z) = s
        .split_once(',')
        .ok_or_else(|| format!("--memory `{s}`: write BASE,SIZE in hex"))?;
    Ok((num(b)?, num(z)?))
}

fn explanations() -> Result<BTreeMap<String, Vec<Explanation>>, String> {
    let path = crate::build::workspace_root().join(EXPLAINED);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(_) => return Ok(BTreeMap::new()),
    };
    toml::from_str(&text).map_err(|e| {
        format!(
            "{}: {e}; write `\"board\" = [{{ path = \"memory\", reason = \"...\" }}]`",
            path.display()
        )
    })
}

/// Diffs one board against a DTB; prints every difference, `Ok(count of unexplained)`.
fn diff_board(board: &platform_dsl::model::Board, dtb: &Path) -> Result<usize, String> {
    let d = load_dtb(dtb)?;
    let explained = explanations()?;
    let mine = explained.get(&board.name).map(Vec::as_slice).unwrap_or(&[]);
    let diffs = diff::diff(board, &d);
    let mut unexplained = 0;
    println!(
        "board-diff {} vs {}: {} difference(s)",
        board.name,
        dtb.display(),
        diffs.len()
    );
    for x in &diffs {
        match mine.iter().find(|e| e.path == x.path) {
            Some(e) => println!(
                "  explained   {}: {}\n              because: {}",
                x.path, x.detail, e.reason
            ),
            None => {
                unexplained += 1;
                println!("  DIFFERENT   {}: {}", x.path, x.detail);
            }
        }
    }
    Ok(unexplained)
}

/// `cargo xtask board-diff NAME FILE.dtb`, or `board-diff --all` for [`check_all_boards`].
/// `cargo xtask board-diff`.
#[derive(Debug, clap::Args)]
#[command(group = clap::ArgGroup::new("what").required(true).args(["name", "all"]))]
pub struct DiffArgs {
    /// A board of boards.kdl
    #[arg(requires = "file")]
    name: Option<String>,
    /// A .dtb file, or vendor/name.dtb of Debian's kernel package
    #[arg(value_name = "FILE.dtb")]
    file: Option<String>,
    /// Every `verified-by "dtb"` board against its DTB, as `cargo xtask test` does
    #[arg(long, conflicts_with_all = ["name", "file"])]
    all: bool,
}

/// `cargo xtask board-diff NAME FILE.dtb | --all`.
pub fn diff_cmd(args: DiffArgs) -> Result<(), String> {
    let (Some(name), Some(file)) = (&args.name, &args.file) else {
        return check_all_boards();
    };
    let boards = platform_dsl::load_file(crate::build::workspace_root().join("boards.kdl"))
        .map_err(|e| e.to_string())?;
    let board = platform_dsl::find_board(&boards, name).map_err(|e| e.to_string())?;
    match diff_board(board, &dtb_file(file)?)? {
        0 => Ok(()),
        n => Err(format!("{n} unexplained difference(s): fix boards.kdl (citing the DTB) or explain them in {EXPLAINED}")),
    }
}

/// Where [`imported_boards_for_build`] writes the imported boards (under the DTB cache).
const IMPORTED_DIR: &str = "imported";

/// For `cargo xtask test`: imports each DTB of [`IMPORT_CHECKS`] and writes its KDL to
/// `target/dtb-cache/imported/NAME.kdl` (rewritten only when it changes, so image builds
/// stay incremental). Returns `(KDL file, board name)` pairs to build an image from, which
/// proves that an imported board builds as well as validates.
pub fn imported_boards_for_build() -> Result<Vec<(PathBuf, String)>, String> {
    let dir = dtb_dir()?;
    let out_dir = dtb_cache().join(IMPORTED_DIR);
    std::fs::create_dir_all(&out_dir)
        .map_err(|e| format!("cannot create `{}`: {e}", out_dir.display()))?;
    IMPORT_CHECKS
        .iter()
        .map(|(name, dtb, mem)| {
            let path = dir.join(dtb);
            let bytes = std::fs::read(&path)
                .map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
            let text =
                import(&bytes, name, dtb, *mem).map_err(|e| format!("import-dtb {dtb}: {e}"))?;
            let file = out_dir.join(format!("{name}.kdl"));
            if std::fs::read_to_string(&file).ok().as_deref() != Some(text.as_str()) {
                std::fs::write(&file, &text)
                    .map_err(|e| format!("cannot write `{}`: {e}", file.display()))?;
            }
            Ok((file, name.to_string()))
        })
        .collect()
}

/// For `cargo xtask test`: fetch the DTBs, diff every `verified-by "dtb"` board (and
/// xlnx-zcu102) against its DTB (compiling the Tegra194 ones from source), and import two
/// DTBs no board uses ([`imported_boards_for_build`]).
pub fn check_all_boards() -> Result<(), String> {
    let dir = dtb_dir()?;
    let boards = platform_dsl::load_file(crate::build::workspace_root().join("boards.kdl"))
        .map_err(|e| e.to_string())?;
    let mut pairs: Vec<(String, String)> = boards
        .iter()
        .filter_map(|b| match &b.verified_by {
            platform_dsl::model::Verification::DeviceTree { dtb } => {
                Some((b.name.clone(), dtb.clone()))
            }
            _ => None,
        })
        .collect();
    pairs.extend(
        EXTRA_CHECKS
            .iter()
            .map(|(b, d)| (b.to_string(), d.to_string())),
    );
    let mut failures = Vec::new();
    for (name, dtb) in &pairs {
        let path = if source::is_from_source(dtb) {
            match source::compiled(&dtb_cache(), dtb) {
                Ok(p) => p,
                Err(e) => {
                    failures.push(format!("{name}: {e}"));
                    continue;
                }
            }
        } else {
            dir.join(dtb)
        };
        if !path.is_file() {
            failures.push(format!("{name}: {dtb} is neither in Debian's linux-image-arm64 nor in FROM_SOURCE of xtask/src/dtb/source.rs; correct its `verified-by \"dtb\" path=` or add it there"));
            continue;
        }
        let board = platform_dsl::find_board(&boards, name).map_err(|e| e.to_string())?;
        match diff_board(board, &path) {
            Ok(0) => {}
            Ok(n) => failures.push(format!("{name}: {n} unexplained difference(s)")),
            Err(e) => failures.push(format!("{name}: {e}")),
        }
    }
    match imported_boards_for_build() {
        Ok(imported) => {
            for (file, name) in imported {
                println!("import-dtb {name}: validates, {}", file.display());
            }
        }
        Err(e) => failures.push(e),
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "device-tree checks failed:\n  {}",
            failures.join("\n  ")
        ))
    }
}
