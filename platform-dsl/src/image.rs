//! Build-script helper for image crates: loads the selected board and VM file once, writes
//! `link.x` and the model the `board!()`/`vms!()` macros read.
//!
//! An image crate's `build.rs` is one call:
//!
//! ```no_run
//! // build.rs: fn main() { ... }
//! platform_dsl::image::configure(&platform_dsl::image::Defaults {
//!     board_file: "../boards.kdl",
//!     board: "qemu-virt",
//!     vms: "../examples/vms/test-guest.toml",
//! });
//! ```
//!
//! Environment variables override the defaults (relative paths are taken from the image
//! crate's directory): `HV_BOARD_FILE`, `HV_BOARD`, `HV_VMS`, `HV_ALLOW_EXPERIMENTAL=1`.
//!
//! The board file is parsed, checked and lowered here, once per build: every board of the
//! file, the VM file and its staging plan go into a [`Model`] written as JSON to
//! `OUT_DIR/hv-model.json`, whose path reaches the proc macros as `HV_MODEL`. The macros
//! read that file and never parse KDL or TOML. A broken board or VM file does not fail the
//! build script: the model carries the report, and `board!()`/`vms!()` turn it into a
//! `compile_error!` at the call.

use crate::model::Board;
use crate::vmconfig::{self, Plan, VmConfig};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Defaults of an image crate, used when the environment does not override them.
#[derive(Clone, Copy, Debug)]
pub struct Defaults<'a> {
    /// Board KDL file, relative to the image crate's `Cargo.toml`.
    pub board_file: &'a str,
    /// Board name in that file.
    pub board: &'a str,
    /// VM TOML file, relative to the image crate's `Cargo.toml`.
    pub vms: &'a str,
}

/// Environment variables read by [`configure`].
pub const INPUT_ENV: [&str; 4] = [
    "HV_BOARD",
    "HV_BOARD_FILE",
    "HV_VMS",
    "HV_ALLOW_EXPERIMENTAL",
];

/// What the build selected (the [`Model`] records it for the proc macros).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selection {
    /// Absolute path of the board KDL file.
    pub board_file: PathBuf,
    /// Board name.
    pub board: String,
    /// Absolute path of the VM TOML file.
    pub vms: PathBuf,
    /// Whether experimental boards may be built.
    pub allow_experimental: bool,
}

impl Selection {
    /// Resolves the selection from `env` (a variable lookup) and the crate's defaults;
    /// relative paths are joined to `base` (the image crate's directory).
    pub fn resolve(
        defaults: &Defaults<'_>,
        base: &Path,
        env: impl Fn(&str) -> Option<String>,
    ) -> Self {
        let nonempty = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        let path = |var: &str, default: &str| {
            let p = nonempty(var).unwrap_or_else(|| default.to_owned());
            normalize(&base.join(p))
        };
        Self {
            board_file: path("HV_BOARD_FILE", defaults.board_file),
            board: nonempty("HV_BOARD").unwrap_or_else(|| defaults.board.to_owned()),
            vms: path("HV_VMS", defaults.vms),
            allow_experimental: nonempty("HV_ALLOW_EXPERIMENTAL").is_some_and(|v| parse_flag(&v)),
        }
    }
}

/// `1`, `true`, `yes`, `on` (any case) are true; everything else is false.
pub fn parse_flag(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "1" | "true" | "yes" | "on"
    )
}

/// Loads, validates and lowers the board `name` from the KDL file at `path`.
///
/// The one place where images meet the platform-dsl front end; `macros` goes through it.
/// The error's `Display` is the full report: `file:line:col`, the KDL lines, what to write.
pub fn load_board(path: &Path, name: &str) -> Result<Board, crate::Error> {
    let boards = crate::load_file(path)?;
    crate::find_board(&boards, name).cloned()
}

/// `path` joined to `base` (when relative), with `.` and `a/..` removed lexically: how
/// the build script and the macros spell a selected file, so that they compare equal.
pub fn resolve_path(base: &Path, path: &Path) -> PathBuf {
    normalize(&base.join(path))
}

/// Removes `.` and `a/..` components lexically.
fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// The linker arguments that make an image position independent: a static PIE whose
/// `R_AARCH64_RELATIVE` relocations (kept in `.rela.dyn`, see [`linker_script`]) the image
/// applies to itself at entry (`hypervisor::arch::boot`). The code is compiled with the
/// target's static relocation model (PC-relative `adrp`/`add` addressing, so it runs
/// anywhere); only pointers stored in data need the relocations. Those include read-only
/// data (the precompiled `core` keeps vtables in `.rodata`), hence `-z notext`; they are
/// written with the MMU off, before anything maps `.rodata` read-only.
/// `--apply-dynamic-relocs` also writes the link-time values, so the ELF is complete as
/// loaded at its link address. `-z pack-relative-relocs` packs the relative relocations
/// into `.relr.dyn` (a word per run of relocated words plus a bitmap per 63 words, instead
/// of 24 bytes each: 60 KiB became 1.8 KiB); the few it cannot pack stay in `.rela.dyn`.
///
/// One argument is about size, not position independence: `--icf=all` folds functions
/// whose code is identical (monomorphised copies that differ only in their type, 21 KiB
/// of the qemu-virt image). Rust gives no guarantee that two functions have distinct
/// addresses, and lld folds only code this way (read-only data keeps its own addresses).
pub const PIE_LINK_ARGS: &[&str] = &[
    "--pie",
    "--no-dynamic-linker",
    "-znotext",
    "--apply-dynamic-relocs",
    "-zpack-relative-relocs",
    "--icf=all",
];

/// Bytes of the arm64 Image header at the start of every image (`code0`..`res5`).
pub const IMAGE_HEADER_SIZE: usize = 64;

/// The linker script for an image of `board`: linked at `hypervisor load=` (where QEMU
/// `-kernel` puts the ELF; a loader may put the flat Image anywhere, the image relocates
/// itself), the arm64 Image header first (`.text.boot`), one output section per `linkme`
/// distributed slice, the dynamic relocations kept in the image between `__rela_start` and
/// `__rela_end`, and an assertion that it fits its region. Every symbol the image reads is
/// relative to `__image_start` (so it moves with the image) except the two absolute ones
/// the boot code needs: `__hv_link_base` (the link address) and `__hv_image_size` (the
/// header's `image_size`, the whole region).
pub fn linker_script(board: &Board) -> String {
    // Without `load=` (RAM base from the firmware) the image is linked at 0: it is only
    // booted as the relocatable Image, which moves itself to wherever the loader put it.
    let load = board.hypervisor.load_address.unwrap_or(0);
    let size = board.hypervisor.size;
    let mut slices = String::new();
    for slice in ["DRIVERS", "QUIRKS", "PCI_DRIVERS", "USB_DRIVERS"] {
        for prefix in ["linkme", "linkm2"] {
            let _ = writeln!(
                slices,
                "    {prefix}_{slice} : ALIGN(8) {{ KEEP(*({prefix}_{slice})) }}"
            );
        }
    }
    format!(
        "\
/* Generated by platform_dsl::image for board `{name}`; do not edit. */
ENTRY(_start)

SECTIONS
{{
    . = {load:#x};

    .text : {{
        __image_start = .;
        KEEP(*(.text.boot))
        *(.text .text.*)
    }}

    .rodata : ALIGN(8) {{
        *(.rodata .rodata.*)
    }}

    /* One output section per linkme distributed slice, so that the linker defines
       __start_/__stop_ symbols for each (see hypervisor::plugin). */
{slices}
    .data : ALIGN(8) {{
        *(.data.rel.ro .data.rel.ro.*)
        *(.data .data.*)
        *(.got .got.*)
    }}

    /* The relocations the image applies to itself at entry (R_AARCH64_RELATIVE only),
       and the same packed (RELR). */
    .rela.dyn : ALIGN(8) {{
        __rela_start = .;
        *(.rela .rela.*)
        __rela_end = .;
    }}
    .relr.dyn : ALIGN(8) {{
        __relr_start = .;
        *(.relr.dyn)
        __relr_end = .;
    }}

    /* The per-CPU stacks, before .bss and outside [__bss_start, __bss_end): zero
       initialised in name only, never cleared by the boot code (a stack needs no zeroes;
       clearing 6 MiB cost every start about 2.2 M instructions). Listed before .bss so
       that its pattern, not .bss.*, takes the input section. */
    .hv_stacks (NOLOAD) : ALIGN(4096) {{
        *(.bss.hv_stacks)
    }}

    .bss (NOLOAD) : ALIGN(16) {{
        __bss_start = .;
        *(.bss .bss.*)
        *(COMMON)
        . = ALIGN(16);
        __bss_end = .;
    }}

    . = ALIGN(4096);
    __image_end = .;
    __hv_region_end = __image_start + {size:#x};
    __hv_link_base = ABSOLUTE({load:#x});
    __hv_image_size = ABSOLUTE({size:#x});

    /DISCARD/ : {{
        *(.comment)
        *(.note .note.*)
        *(.eh_frame .eh_frame_hdr)
        *(.interp .dynamic)
        *(.dynsym .dynstr .hash .gnu.hash)
    }}
}}

ASSERT(__image_end <= __hv_region_end,
    \"hypervisor image is larger than its region; raise `hypervisor size=` in the board KDL\")
ASSERT(__image_start == {load:#x}, \"the image header must be the first thing in the image\")
",
        name = board.name,
    )
}

/// The environment variable that hands the [`Model`]'s path to the proc macros.
pub const MODEL_ENV: &str = "HV_MODEL";

/// The file name of the [`Model`] in `OUT_DIR`.
pub const MODEL_FILE: &str = "hv-model.json";

/// What the build script hands to the `board!()`/`vms!()` macros: the selected board file
/// loaded and lowered once, and the VM file planned for the selected board.
///
/// A part that failed to load holds its report, ready for a `compile_error!`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Model {
    /// Absolute path of the board KDL file.
    pub board_file: PathBuf,
    /// The selected board's name.
    pub board: String,
    /// Whether experimental boards may be built.
    pub allow_experimental: bool,
    /// Every board of the file, lowered, or the report why the file does not load
    /// (`invalid board file FILE:LINE:COL` and the diagnostics).
    pub boards: Result<Vec<Board>, String>,
    /// Absolute path of the VM TOML file.
    pub vms_file: PathBuf,
    /// The VMs and where the boot loader stages their images, or the report why not.
    pub vms: Result<Vms, String>,
    /// The driver plugins the image crate depends on, as their build scripts announced them
    /// (`links` metadata: `cargo::metadata=driver|crate|compatible`); `None` when the model
    /// was not written by an image crate's build script (then nothing is checked).
    #[serde(default)]
    pub drivers: Option<Vec<LinkedDriver>>,
}

/// A driver plugin the image crate depends on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkedDriver {
    /// The driver's name (`uart-pl011`).
    pub name: String,
    /// Its crate's name in Rust (`plugin_uart_pl011`).
    pub krate: String,
    /// The compatibles it handles.
    pub compatible: Vec<String>,
}

/// For a driver plugin's build script: says once what the driver handles. Writes
/// `OUT_DIR/compatible.rs` (the list as a `&[&str]` expression, for the crate's
/// `DriverEntry`: `include!(concat!(env!("OUT_DIR"), "/compatible.rs"))`) and the `links`
/// metadata the image crate's build script reads back with [`drivers_from_env`]. The
/// plugin's `Cargo.toml` needs `links = "hv-driver-NAME"`.
pub fn announce_driver(driver: &str, compatible: &[&str]) {
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    std::fs::write(out.join("compatible.rs"), compatible_expr(compatible))
        .expect("OUT_DIR is writable");
    let krate = std::env::var("CARGO_PKG_NAME").expect("cargo sets CARGO_PKG_NAME");
    for line in driver_metadata(driver, &krate, compatible) {
        println!("{line}");
    }
    println!("cargo::rerun-if-changed=build.rs");
}

/// The `&[..]` expression of [`announce_driver`]'s `compatible.rs`.
fn compatible_expr(compatible: &[&str]) -> String {
    let list: Vec<String> = compatible.iter().map(|c| format!("{c:?}")).collect();
    format!("&[{}]", list.join(", "))
}

/// The `cargo::metadata` lines of [`announce_driver`] (read back by [`drivers_from_env`]).
fn driver_metadata(driver: &str, krate: &str, compatible: &[&str]) -> [String; 3] {
    [
        format!("cargo::metadata=driver={driver}"),
        format!("cargo::metadata=crate={}", krate.replace('-', "_")),
        format!("cargo::metadata=compatible={}", compatible.join(" ")),
    ]
}

/// The drivers among a build script's environment: every `DEP_<LINKS>_DRIVER` with its
/// `_CRATE` and `_COMPATIBLE` (space-separated) siblings, sorted by name.
pub fn drivers_from_env(vars: impl IntoIterator<Item = (String, String)>) -> Vec<LinkedDriver> {
    let vars: std::collections::BTreeMap<String, String> = vars
        .into_iter()
        .filter(|(k, _)| k.starts_with("DEP_"))
        .collect();
    let mut drivers: Vec<LinkedDriver> = vars
        .iter()
        .filter_map(|(k, name)| {
            let prefix = k.strip_suffix("_DRIVER")?;
            Some(LinkedDriver {
                name: name.clone(),
                krate: vars.get(&format!("{prefix}_CRATE"))?.clone(),
                compatible: vars
                    .get(&format!("{prefix}_COMPATIBLE"))?
                    .split_whitespace()
                    .map(str::to_owned)
                    .collect(),
            })
        })
        .collect();
    drivers.sort_by(|a, b| a.name.cmp(&b.name));
    drivers
}

/// Fails when `board`'s console or GIC has no driver among `drivers`, naming the device,
/// its compatibles and the drivers there are: such an image would boot in silence.
pub fn check_drivers(board: &Board, drivers: &[LinkedDriver]) -> Result<(), String> {
    let handles = |compatible: &[String]| {
        drivers
            .iter()
            .any(|d| d.compatible.iter().any(|c| compatible.contains(c)))
    };
    let console = board
        .console_device()
        .map(|d| (format!("console `{}`", d.name), d.compatible.clone()));
    let gic = Some((
        format!("GIC ({})", board.gic.compatible),
        vec![board.gic.compatible.clone()],
    ));
    let missing: Vec<String> = [console, gic]
        .into_iter()
        .flatten()
        .filter(|(_, compatible)| !handles(compatible))
        .map(|(what, compatible)| {
            let list: Vec<String> = compatible.iter().map(|c| format!("\"{c}\"")).collect();
            format!("the {what}, compatible {}", list.join(", "))
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let linked = if drivers.is_empty() {
        "none".to_owned()
    } else {
        drivers
            .iter()
            .map(|d| format!("{} ({})", d.name, d.compatible.join(", ")))
            .collect::<Vec<_>>()
            .join("; ")
    };
    Err(format!(
        "board `{}`: no driver linked into this image handles {}; the image would boot in \
         silence. Drivers the image crate depends on: {linked}. Add the plugin crate that \
         drives it to the image crate's [dependencies] (in-tree: plugins/; a new one: \
         examples/out-of-tree/README.md)",
        board.name,
        missing.join(", nor ")
    ))
}

/// A VM file and its staging plan for the selected board.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vms {
    /// The VMs.
    pub config: VmConfig,
    /// Where each guest image goes.
    pub plan: Plan,
}

impl Model {
    /// Loads the selection: every board of its file, then its VM file against its board.
    pub fn load(sel: &Selection) -> Self {
        let loaded = crate::load_file(&sel.board_file);
        let boards = match &loaded {
            Ok(boards) => Ok(boards.clone()),
            Err(e @ crate::Error::Invalid(_)) => {
                let at = match e.location() {
                    Some((line, col)) => format!("{}:{line}:{col}", sel.board_file.display()),
                    None => sel.board_file.display().to_string(),
                };
                Err(format!("invalid board file {at}\n{e}"))
            }
            Err(e) => Err(e.to_string()),
        };
        let vms = loaded
            .and_then(|boards| crate::find_board(&boards, &sel.board).cloned())
            .map_err(|e| e.to_string())
            .and_then(|board| {
                let in_file = |e: vmconfig::VmConfigError| match e.names_file() {
                    true => e.to_string(),
                    false => format!("{e}\n  in {}", sel.vms.display()),
                };
                let config = VmConfig::load(&sel.vms).map_err(in_file)?;
                let plan = vmconfig::plan(&board, &config).map_err(in_file)?;
                Ok(Vms { config, plan })
            });
        Model {
            board_file: sel.board_file.clone(),
            board: sel.board.clone(),
            allow_experimental: sel.allow_experimental,
            boards,
            vms_file: sel.vms.clone(),
            vms,
            drivers: None,
        }
    }

    /// The selected board, if the file loaded and has it.
    pub fn selected(&self) -> Option<&Board> {
        self.boards
            .as_ref()
            .ok()?
            .iter()
            .find(|b| b.name == self.board)
    }

    /// Writes the model as JSON.
    pub fn write(&self, path: &Path) -> Result<(), ModelError> {
        let json = serde_json::to_string(self).map_err(ModelError::Encode)?;
        std::fs::write(path, json).map_err(|source| ModelError::Io {
            path: path.to_owned(),
            source,
        })
    }

    /// Reads a model written by [`Model::write`].
    pub fn read(path: &Path) -> Result<Self, ModelError> {
        let text = std::fs::read_to_string(path).map_err(|source| ModelError::Io {
            path: path.to_owned(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| ModelError::Decode {
            path: path.to_owned(),
            source,
        })
    }
}

/// Why a [`Model`] could not be written or read.
#[derive(Debug, Error)]
pub enum ModelError {
    /// The file could not be written or read.
    #[error("cannot access the board model `{}`: {source} (it is written by platform_dsl::image::configure in the image crate's build.rs; rebuild)", path.display())]
    Io {
        /// Path.
        path: PathBuf,
        /// OS error.
        source: std::io::Error,
    },
    /// The model could not be encoded (a bug: every part is plain data).
    #[error("cannot encode the board model: {0}")]
    Encode(serde_json::Error),
    /// The file is not a model of this version of platform-dsl.
    #[error("`{}` is not a board model of this platform-dsl: {source} (rebuild the image crate so that its build.rs writes it again)", path.display())]
    Decode {
        /// Path.
        path: PathBuf,
        /// What did not parse.
        source: serde_json::Error,
    },
}

/// Errors of [`try_configure`].
#[derive(Debug, Error)]
pub enum ConfigureError {
    /// A cargo variable is missing: not run from a build script.
    #[error("environment variable {0} is not set; call platform_dsl::image::configure from an image crate's build.rs")]
    NotABuildScript(&'static str),
    /// The model could not be written.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// `link.x` could not be written.
    #[error("cannot write linker script `{path}`: {source}")]
    Write {
        /// Path.
        path: PathBuf,
        /// OS error.
        source: std::io::Error,
    },
}

/// Everything [`configure`] does, returning the `cargo:` lines instead of printing them.
///
/// A broken board or VM file is not an error here: the [`Model`] carries its report to
/// the macros. Without the selected board there is no `link.x` (the build stops at
/// `board!()` first).
pub fn try_configure(defaults: &Defaults<'_>) -> Result<Vec<String>, ConfigureError> {
    let var =
        |name: &'static str| std::env::var(name).map_err(|_| ConfigureError::NotABuildScript(name));
    let manifest_dir = PathBuf::from(var("CARGO_MANIFEST_DIR")?);
    let out_dir = PathBuf::from(var("OUT_DIR")?);
    let sel = Selection::resolve(defaults, &manifest_dir, |n| std::env::var(n).ok());

    let mut lines: Vec<String> = INPUT_ENV
        .iter()
        .map(|v| format!("cargo:rerun-if-env-changed={v}"))
        .collect();
    lines.push(format!(
        "cargo:rerun-if-changed={}",
        sel.board_file.display()
    ));
    lines.push(format!("cargo:rerun-if-changed={}", sel.vms.display()));

    let mut model = Model::load(&sel);
    model.drivers = Some(drivers_from_env(std::env::vars()));
    if let Ok(vms) = &model.vms {
        for vm in &vms.config.vms {
            for (_, image) in vm.images() {
                lines.push(format!("cargo:rerun-if-changed={}", image.path.display()));
            }
        }
    }
    if let Some(board) = model.selected() {
        let script = out_dir.join("link.x");
        std::fs::write(&script, linker_script(board)).map_err(|source| ConfigureError::Write {
            path: script.clone(),
            source,
        })?;
        lines.push(format!("cargo:rustc-link-arg=-T{}", script.display()));
        lines.extend(
            PIE_LINK_ARGS
                .iter()
                .map(|a| format!("cargo:rustc-link-arg={a}")),
        );
    }
    let path = out_dir.join(MODEL_FILE);
    model.write(&path)?;
    lines.push(format!("cargo:rustc-env={MODEL_ENV}={}", path.display()));
    Ok(lines)
}

/// For an image crate's `build.rs`: loads the selected board and VMs once, writes `link.x`
/// and the [`Model`], and tells cargo and the proc macros about them. A broken board or VM
/// file reaches the macros in the model; only a failure of the build script itself (not
/// run by cargo, a file it cannot write) prints the error and exits with status 1.
pub fn configure(defaults: &Defaults<'_>) {
    match try_configure(defaults) {
        Ok(lines) => {
            for line in lines {
                println!("{line}");
            }
        }
        Err(e) => {
            // Still ask to be rerun when the inputs change, so that fixing them helps.
            for v in INPUT_ENV {
                println!("cargo:rerun-if-env-changed={v}");
            }
            eprintln!("{e}");
            std::process::exit(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const DEFAULTS: Defaults<'static> = Defaults {
        board_file: "../boards.kdl",
        board: "qemu-virt",
        vms: "../examples/vms/test-guest.toml",
    };

    fn resolve(env: &[(&str, &str)]) -> Selection {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Selection::resolve(&DEFAULTS, Path::new("/w/image"), |n| env.get(n).cloned())
    }

    fn env_of(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn announced_metadata_reads_back_as_the_driver() {
        assert_eq!(
            compatible_expr(&["arm,pl011", "a\"b"]),
            "&[\"arm,pl011\", \"a\\\"b\"]"
        );
        // Cargo hands `cargo::metadata=KEY=VALUE` of a `links = "hv-driver-x-y"` crate to
        // its dependents as DEP_HV_DRIVER_X_Y_KEY.
        let vars = driver_metadata("x-y", "plugin-x-y", &["v,a", "v,b"]).map(|line| {
            let (key, value) = line
                .strip_prefix("cargo::metadata=")
                .and_then(|kv| kv.split_once('='))
                .unwrap();
            (
                format!("DEP_HV_DRIVER_X_Y_{}", key.to_uppercase()),
                value.to_owned(),
            )
        });
        assert_eq!(
            drivers_from_env(vars),
            vec![LinkedDriver {
                name: "x-y".into(),
                krate: "plugin_x_y".into(),
                compatible: vec!["v,a".into(), "v,b".into()],
            }]
        );
    }

    #[test]
    fn drivers_come_from_their_links_metadata() {
        let d = drivers_from_env(env_of(&[
            ("DEP_HV_DRIVER_UART_PL011_DRIVER", "uart-pl011"),
            ("DEP_HV_DRIVER_UART_PL011_CRATE", "plugin_uart_pl011"),
            ("DEP_HV_DRIVER_UART_PL011_COMPATIBLE", "arm,pl011"),
            ("DEP_HV_DRIVER_GIC_V2_DRIVER", "gic-v2"),
            ("DEP_HV_DRIVER_GIC_V2_CRATE", "plugin_gic_v2"),
            (
                "DEP_HV_DRIVER_GIC_V2_COMPATIBLE",
                "arm,gic-400 arm,cortex-a15-gic",
            ),
            // Half an announcement, and an unrelated variable: ignored.
            ("DEP_HV_DRIVER_BROKEN_DRIVER", "broken"),
            ("CARGO_PKG_NAME", "image"),
        ]));
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].name, "gic-v2");
        assert_eq!(d[0].compatible, ["arm,gic-400", "arm,cortex-a15-gic"]);
        assert_eq!(d[1].krate, "plugin_uart_pl011");
    }

    #[test]
    fn a_console_or_gic_without_a_driver_is_named_with_the_drivers_there_are() {
        let boards = crate::load_file(Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../boards.kdl"
        )))
        .unwrap();
        let virt = crate::find_board(&boards, "qemu-virt").unwrap();
        let driver = |name: &str, compatible: &[&str]| LinkedDriver {
            name: name.into(),
            krate: format!("plugin_{}", name.replace('-', "_")),
            compatible: compatible.iter().map(|c| c.to_string()).collect(),
        };
        let pl011 = driver("uart-pl011", &["arm,pl011"]);
        let gic = driver("gic-v3", &["arm,gic-v3"]);
        assert_eq!(check_drivers(virt, &[pl011.clone(), gic.clone()]), Ok(()));
        let err = check_drivers(virt, std::slice::from_ref(&gic)).unwrap_err();
        assert!(
            err.contains("the console `uart0`, compatible \"arm,pl011\""),
            "{err}"
        );
        assert!(err.contains("depends on: gic-v3 (arm,gic-v3)"), "{err}");
        let err = check_drivers(virt, &[pl011]).unwrap_err();
        assert!(err.contains("the GIC (arm,gic-v3)"), "{err}");
        let err = check_drivers(virt, &[]).unwrap_err();
        assert!(err.contains(", nor the GIC"), "{err}");
        assert!(err.contains("depends on: none"), "{err}");
    }

    #[test]
    fn defaults_are_relative_to_the_crate() {
        let s = resolve(&[]);
        assert_eq!(s.board_file, Path::new("/w/boards.kdl"));
        assert_eq!(s.board, "qemu-virt");
        assert_eq!(s.vms, Path::new("/w/examples/vms/test-guest.toml"));
        assert!(!s.allow_experimental);
    }

    #[test]
    fn environment_overrides_defaults() {
        let s = resolve(&[
            ("HV_BOARD_FILE", "/x/my.kdl"),
            ("HV_BOARD", "mcbin"),
            ("HV_VMS", "vms.toml"),
            ("HV_ALLOW_EXPERIMENTAL", "1"),
        ]);
        assert_eq!(s.board_file, Path::new("/x/my.kdl"));
        assert_eq!(s.board, "mcbin");
        assert_eq!(s.vms, Path::new("/w/image/vms.toml"));
        assert!(s.allow_experimental);
    }

    #[test]
    fn empty_environment_values_are_ignored() {
        let s = resolve(&[("HV_BOARD", " "), ("HV_ALLOW_EXPERIMENTAL", "")]);
        assert_eq!(s.board, "qemu-virt");
        assert!(!s.allow_experimental);
    }

    #[test]
    fn flag_spellings() {
        for t in ["1", "true", "TRUE", "yes", "on"] {
            assert!(parse_flag(t), "{t}");
        }
        for f in ["0", "false", "no", "off", "2"] {
            assert!(!parse_flag(f), "{f}");
        }
    }

    /// A scratch directory holding `tests/valid/minimal.kdl` (board `b`), a kernel and a
    /// VM file with `memory_mib` of RAM.
    fn scratch(tag: &str, memory_mib: u32) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("platform-dsl-image-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let minimal = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/valid/minimal.kdl");
        std::fs::copy(minimal, dir.join("board.kdl")).unwrap();
        std::fs::write(dir.join("kernel.bin"), [0u8; 4096]).unwrap();
        std::fs::write(
            dir.join("vms.toml"),
            format!("[[vm]]\nname = \"t\"\nvcpus = 1\nmemory_mib = {memory_mib}\nkernel = \"kernel.bin\"\ncmdline = \"\"\n"),
        )
        .unwrap();
        dir
    }

    fn selection(dir: &Path, board: &str) -> Selection {
        Selection {
            board_file: dir.join("board.kdl"),
            board: board.to_owned(),
            vms: dir.join("vms.toml"),
            allow_experimental: false,
        }
    }

    #[test]
    fn the_model_holds_every_board_and_the_planned_vms_and_round_trips() {
        let dir = scratch("ok", 64);
        let model = Model::load(&selection(&dir, "b"));
        assert_eq!(model.selected().map(|b| b.name.as_str()), Some("b"));
        let vms = model.vms.as_ref().expect("VM file plans");
        assert_eq!(vms.config.vms[0].name, "t");
        assert_eq!(vms.plan.staging_base, 0x4220_0000);
        model.write(&dir.join(MODEL_FILE)).unwrap();
        let back = Model::read(&dir.join(MODEL_FILE)).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(back, model);
    }

    #[test]
    fn a_broken_board_file_is_carried_as_its_report() {
        let dir = scratch("broken", 64);
        std::fs::write(
            dir.join("board.kdl"),
            "board \"x\" {\n    model \"Broken\n}\n",
        )
        .unwrap();
        let model = Model::load(&selection(&dir, "x"));
        let _ = std::fs::remove_dir_all(&dir);
        let report = model.boards.expect_err("syntax error");
        assert!(
            report.starts_with(&format!(
                "invalid board file {}:2:11\n",
                dir.join("board.kdl").display()
            )),
            "{report}"
        );
        assert!(model.vms.is_err());
    }

    #[test]
    fn a_vm_file_that_does_not_fit_names_the_file_after_the_message() {
        let dir = scratch("fit", 4096);
        let model = Model::load(&selection(&dir, "b"));
        let _ = std::fs::remove_dir_all(&dir);
        let report = model.vms.unwrap_err();
        assert!(report.contains("4096 MiB of guest RAM"), "{report}");
        assert!(
            report.ends_with(&format!("\n  in {}", dir.join("vms.toml").display())),
            "{report}"
        );
    }

    #[test]
    fn an_unknown_board_leaves_the_boards_and_fails_the_vms() {
        let dir = scratch("unknown", 64);
        let model = Model::load(&selection(&dir, "nope"));
        let _ = std::fs::remove_dir_all(&dir);
        assert!(model.selected().is_none());
        assert_eq!(model.boards.as_ref().map(Vec::len), Ok(1));
        assert!(model.vms.unwrap_err().starts_with("unknown board `nope`"));
    }

    #[test]
    fn an_invalid_vm_file_names_the_file() {
        let dir = scratch("vms", 63);
        let model = Model::load(&selection(&dir, "b"));
        let _ = std::fs::remove_dir_all(&dir);
        let report = model.vms.unwrap_err();
        assert!(report.contains("memory_mib = 63"), "{report}");
        // The message names the file (with the line and column of the key) once.
        let at = format!("`{}:4:14`", dir.join("vms.toml").display());
        assert!(report.contains(&at), "{report}");
        assert!(!report.contains("\n  in "), "{report}");
    }

    #[test]
    fn a_missing_model_says_who_writes_it() {
        let e = Model::read(Path::new("/nonexistent/hv-model.json")).unwrap_err();
        assert!(
            e.to_string().contains("platform_dsl::image::configure"),
            "{e}"
        );
    }

    #[test]
    fn linker_script_places_the_image_at_the_load_address() {
        let script = linker_script(&vmconfig::tests::board());
        assert!(script.contains(". = 0x40200000;"), "{script}");
        assert!(
            script.contains("__hv_region_end = __image_start + 0x1f00000;"),
            "{script}"
        );
        assert!(script.contains("__hv_link_base = ABSOLUTE(0x40200000);"));
        assert!(script.contains("ENTRY(_start)"));
    }

    #[test]
    fn linker_script_keeps_the_relocations_and_is_position_independent() {
        let script = linker_script(&vmconfig::tests::board());
        let rela = script.find(".rela.dyn : ALIGN(8) {").unwrap();
        let start = script.find("__rela_start = .;").unwrap();
        let end = script.find("__rela_end = .;").unwrap();
        let bss = script.find(".bss (NOLOAD)").unwrap();
        let relr = script.find(".relr.dyn : ALIGN(8) {").unwrap();
        let relr_start = script.find("__relr_start = .;").unwrap();
        let relr_end = script.find("__relr_end = .;").unwrap();
        // Inside the loaded image, before .bss (which the flat Image leaves out).
        assert!(rela < start && start < end && end < bss, "{script}");
        assert!(
            relr < relr_start && relr_start < relr_end && relr_end < bss,
            "{script}"
        );
        // The header's image_size is the whole region, an absolute value.
        assert!(
            script.contains("__hv_image_size = ABSOLUTE(0x1f00000);"),
            "{script}"
        );
        // __image_start moves with the image: defined inside .text, before the header.
        let text = script.find(".text : {").unwrap();
        let image_start = script.find("__image_start = .;").unwrap();
        let boot = script.find("KEEP(*(.text.boot))").unwrap();
        assert!(text < image_start && image_start < boot);
        for a in ["--pie", "-znotext", "-zpack-relative-relocs", "--icf=all"] {
            assert!(PIE_LINK_ARGS.contains(&a));
        }
    }

    #[test]
    fn linker_script_puts_text_boot_first() {
        let script = linker_script(&vmconfig::tests::board());
        let boot = script.find("KEEP(*(.text.boot))").unwrap();
        let text = script.find("*(.text .text.*)").unwrap();
        let rodata = script.find(".rodata :").unwrap();
        let data = script.find(".data :").unwrap();
        let bss = script.find(".bss (NOLOAD)").unwrap();
        assert!(boot < text && text < rodata && rodata < data && data < bss);
    }

    #[test]
    fn linker_script_has_a_section_per_slice() {
        let script = linker_script(&vmconfig::tests::board());
        for s in [
            "linkme_DRIVERS : ALIGN(8) { KEEP(*(linkme_DRIVERS)) }",
            "linkm2_DRIVERS : ALIGN(8) { KEEP(*(linkm2_DRIVERS)) }",
            "linkme_QUIRKS : ALIGN(8) { KEEP(*(linkme_QUIRKS)) }",
            "linkm2_QUIRKS : ALIGN(8) { KEEP(*(linkm2_QUIRKS)) }",
            "linkme_PCI_DRIVERS : ALIGN(8) { KEEP(*(linkme_PCI_DRIVERS)) }",
            "linkm2_PCI_DRIVERS : ALIGN(8) { KEEP(*(linkm2_PCI_DRIVERS)) }",
            "linkme_USB_DRIVERS : ALIGN(8) { KEEP(*(linkme_USB_DRIVERS)) }",
            "linkm2_USB_DRIVERS : ALIGN(8) { KEEP(*(linkm2_USB_DRIVERS)) }",
        ] {
            assert!(script.contains(s), "missing {s}");
        }
    }

    #[test]
    fn stacks_are_placed_outside_the_zeroed_bss() {
        let script = linker_script(&vmconfig::tests::board());
        let stacks = script
            .find(".hv_stacks (NOLOAD)")
            .expect("no .hv_stacks section");
        let takes = script.find("*(.bss.hv_stacks)").unwrap();
        let bss = script.find(".bss (NOLOAD)").unwrap();
        let bss_start = script.find("__bss_start = .;").unwrap();
        // The first matching rule takes an input section: the stacks' rule must come before
        // `.bss`'s `*(.bss .bss.*)`, which would put them back into what boot zeroes.
        assert!(stacks < takes && takes < bss && bss < bss_start, "{script}");
    }

    #[test]
    fn linker_script_defines_bss_and_image_symbols() {
        let script = linker_script(&vmconfig::tests::board());
        for s in [
            "__bss_start = .;",
            "__bss_end = .;",
            "__image_start = .;",
            "__image_end = .;",
            "ALIGN(16)",
        ] {
            assert!(script.contains(s), "missing {s}");
        }
    }
}
