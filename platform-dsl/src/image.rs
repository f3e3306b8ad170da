//! Build-script helper for image crates: selects the board and VM file, writes `link.x`.
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
//! The selection is passed on to the `board!()`/`vms!()` proc macros as
//! `HV_SELECTED_BOARD_FILE`, `HV_SELECTED_BOARD`, `HV_SELECTED_VMS` (absolute paths) and
//! `HV_ALLOW_EXPERIMENTAL` (`0`/`1`).

use crate::model::Board;
use crate::vmconfig::{self, VmConfig, VmConfigError};
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

/// What the build selected; the proc macros read it back from the `HV_SELECTED_*` variables.
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

    /// The `cargo:rustc-env=` pairs that hand the selection to the proc macros.
    pub fn rustc_env(&self) -> [(&'static str, String); 4] {
        [
            (
                "HV_SELECTED_BOARD_FILE",
                self.board_file.display().to_string(),
            ),
            ("HV_SELECTED_BOARD", self.board.clone()),
            ("HV_SELECTED_VMS", self.vms.display().to_string()),
            (
                "HV_ALLOW_EXPERIMENTAL",
                if self.allow_experimental { "1" } else { "0" }.to_owned(),
            ),
        ]
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

/// The linker script for an image of `board`: linked at `hypervisor load=`, one output
/// section per `linkme` distributed slice, and an assertion that it fits its region.
pub fn linker_script(board: &Board) -> String {
    let load = board.hypervisor.load_address;
    let end = load.saturating_add(board.hypervisor.size);
    let mut slices = String::new();
    for slice in ["DRIVERS", "QUIRKS"] {
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
    __image_start = .;

    .text : {{
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
        *(.data .data.*)
        *(.got .got.*)
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
    __hv_region_end = {end:#x};

    /DISCARD/ : {{
        *(.comment)
        *(.note .note.*)
        *(.eh_frame .eh_frame_hdr)
    }}
}}

ASSERT(__image_end <= __hv_region_end,
    \"hypervisor image is larger than its region; raise `hypervisor size=` in the board KDL\")
",
        name = board.name,
    )
}

/// Errors of [`try_configure`].
#[derive(Debug, Error)]
pub enum ConfigureError {
    /// A cargo variable is missing: not run from a build script.
    #[error("environment variable {0} is not set; call platform_dsl::image::configure from an image crate's build.rs")]
    NotABuildScript(&'static str),
    /// The board could not be loaded.
    #[error(transparent)]
    Board(#[from] crate::Error),
    /// The VM file is invalid or does not fit the board.
    #[error(transparent)]
    Vms(#[from] VmConfigError),
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

    let board = load_board(&sel.board_file, &sel.board)?;
    let vms = VmConfig::load(&sel.vms)?;
    for vm in &vms.vms {
        for (_, image) in vm.images() {
            lines.push(format!("cargo:rerun-if-changed={}", image.path.display()));
        }
    }
    vmconfig::plan(&board, &vms)?;

    let script = out_dir.join("link.x");
    std::fs::write(&script, linker_script(&board)).map_err(|source| ConfigureError::Write {
        path: script.clone(),
        source,
    })?;
    lines.push(format!("cargo:rustc-link-arg=-T{}", script.display()));
    for (k, v) in sel.rustc_env() {
        lines.push(format!("cargo:rustc-env={k}={v}"));
    }
    Ok(lines)
}

/// For an image crate's `build.rs`: selects board and VMs, validates them, writes `link.x`
/// and tells cargo and the proc macros about it. On error, prints the diagnostic (pointing
/// at the KDL or TOML line) and exits with status 1.
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

    #[test]
    fn rustc_env_hands_over_absolute_paths_and_a_0_1_flag() {
        let s = resolve(&[("HV_ALLOW_EXPERIMENTAL", "yes")]);
        let env = s.rustc_env();
        assert_eq!(
            env[0],
            ("HV_SELECTED_BOARD_FILE", "/w/boards.kdl".to_owned())
        );
        assert_eq!(env[1], ("HV_SELECTED_BOARD", "qemu-virt".to_owned()));
        assert_eq!(env[2].0, "HV_SELECTED_VMS");
        assert_eq!(env[3], ("HV_ALLOW_EXPERIMENTAL", "1".to_owned()));
    }

    #[test]
    fn linker_script_places_the_image_at_the_load_address() {
        let script = linker_script(&vmconfig::tests::board());
        assert!(script.contains(". = 0x40200000;"), "{script}");
        assert!(script.contains("__hv_region_end = 0x42100000;"), "{script}");
        assert!(script.contains("ENTRY(_start)"));
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
        ] {
            assert!(script.contains(s), "missing {s}");
        }
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
