//! Which board and VM file a macro call means: its arguments, else the build's `HV_SELECTED_*`.

use crate::args::{BoardArgs, VmsArgs};
use proc_macro2::Span;
use std::path::{Path, PathBuf};

/// The environment the macros read (set by `platform_dsl::image::configure` via `cargo:rustc-env`).
#[derive(Clone, Debug, Default)]
pub struct Env {
    /// `CARGO_MANIFEST_DIR` of the crate being compiled.
    pub manifest_dir: Option<String>,
    /// `HV_SELECTED_BOARD_FILE`.
    pub board_file: Option<String>,
    /// `HV_SELECTED_BOARD`.
    pub board: Option<String>,
    /// `HV_SELECTED_VMS`.
    pub vms: Option<String>,
    /// `HV_ALLOW_EXPERIMENTAL`.
    pub allow_experimental: Option<String>,
}

/// Variables read from the environment; generated code names them in `option_env!` so that
/// cargo rebuilds the crate when they change.
pub const TRACKED_ENV: [&str; 4] = [
    "HV_SELECTED_BOARD_FILE",
    "HV_SELECTED_BOARD",
    "HV_SELECTED_VMS",
    "HV_ALLOW_EXPERIMENTAL",
];

impl Env {
    /// Reads the process environment (rustc's, inside a proc macro).
    pub fn from_process() -> Self {
        let var = |n: &str| std::env::var(n).ok().filter(|v| !v.is_empty());
        Self {
            manifest_dir: var("CARGO_MANIFEST_DIR"),
            board_file: var("HV_SELECTED_BOARD_FILE"),
            board: var("HV_SELECTED_BOARD"),
            vms: var("HV_SELECTED_VMS"),
            allow_experimental: var("HV_ALLOW_EXPERIMENTAL"),
        }
    }

    fn relative_to_manifest(&self, file: &str) -> PathBuf {
        let base = self.manifest_dir.as_deref().unwrap_or(".");
        Path::new(base).join(file)
    }
}

/// The board a `board!` call means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BoardSelection {
    /// KDL file.
    pub file: PathBuf,
    /// Board name.
    pub name: String,
    /// Experimental boards allowed.
    pub allow_experimental: bool,
}

const NO_BOARD: &str = "no board selected: build the image with `cargo xtask build --board NAME` \
    (its build.rs calls platform_dsl::image::configure, which sets HV_SELECTED_BOARD_FILE and \
    HV_SELECTED_BOARD), or write board!(file = \"boards.kdl\", name = \"NAME\")";

/// Resolves `board!` arguments against the environment.
pub fn board(args: &BoardArgs, env: &Env) -> syn::Result<BoardSelection> {
    let file = match (&args.file, &env.board_file) {
        (Some(lit), _) => env.relative_to_manifest(&lit.value()),
        (None, Some(f)) => PathBuf::from(f),
        (None, None) => return Err(syn::Error::new(Span::call_site(), NO_BOARD)),
    };
    let name = match (&args.name, &env.board) {
        (Some(lit), _) => lit.value(),
        (None, Some(n)) => n.clone(),
        (None, None) => return Err(syn::Error::new(Span::call_site(), NO_BOARD)),
    };
    let allow_experimental = match &args.allow_experimental {
        Some(lit) => lit.value,
        None => env
            .allow_experimental
            .as_deref()
            .is_some_and(platform_dsl::image::parse_flag),
    };
    Ok(BoardSelection {
        file,
        name,
        allow_experimental,
    })
}

/// The VM file a `vms!` call means, and the board it is checked against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmsSelection {
    /// VM TOML file.
    pub file: PathBuf,
    /// Board KDL file.
    pub board_file: PathBuf,
    /// Board name.
    pub board: String,
}

/// Resolves `vms!` arguments against the environment.
pub fn vms(args: &VmsArgs, env: &Env) -> syn::Result<VmsSelection> {
    let file = match (&args.file, &env.vms) {
        (Some(lit), _) => env.relative_to_manifest(&lit.value()),
        (None, Some(f)) => PathBuf::from(f),
        (None, None) => {
            return Err(syn::Error::new(
                Span::call_site(),
                "no VM file selected: build the image with `cargo xtask build` (its build.rs \
                 sets HV_SELECTED_VMS), or write vms!(\"vms.toml\")",
            ))
        }
    };
    let (Some(board_file), Some(board)) = (&env.board_file, &env.board) else {
        return Err(syn::Error::new(
            Span::call_site(),
            "vms! checks the VMs against the selected board, but none is selected: call \
             platform_dsl::image::configure(...) in the image crate's build.rs (it sets \
             HV_SELECTED_BOARD_FILE and HV_SELECTED_BOARD)",
        ));
    };
    Ok(VmsSelection {
        file,
        board_file: PathBuf::from(board_file),
        board: board.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Env {
        Env {
            manifest_dir: Some("/crate".into()),
            board_file: Some("/w/boards.kdl".into()),
            board: Some("qemu-virt".into()),
            vms: Some("/w/vms.toml".into()),
            allow_experimental: Some("0".into()),
        }
    }

    #[test]
    fn board_defaults_to_the_build_selection() {
        let s = board(&BoardArgs::default(), &env()).unwrap();
        assert_eq!(s.file, Path::new("/w/boards.kdl"));
        assert_eq!(s.name, "qemu-virt");
        assert!(!s.allow_experimental);
    }

    #[test]
    fn board_arguments_override_and_file_is_relative_to_the_crate() {
        let args: BoardArgs =
            syn::parse_str(r#"file = "my.kdl", name = "acme", allow_experimental = true"#).unwrap();
        let s = board(&args, &env()).unwrap();
        assert_eq!(s.file, Path::new("/crate/my.kdl"));
        assert_eq!(s.name, "acme");
        assert!(s.allow_experimental);
    }

    #[test]
    fn allow_experimental_comes_from_the_environment() {
        let mut e = env();
        e.allow_experimental = Some("1".into());
        assert!(board(&BoardArgs::default(), &e).unwrap().allow_experimental);
    }

    #[test]
    fn no_selection_says_how_to_select() {
        let e = board(&BoardArgs::default(), &Env::default()).unwrap_err();
        assert!(
            e.to_string().contains("cargo xtask build --board NAME"),
            "{e}"
        );
    }

    #[test]
    fn vms_default_and_override() {
        let s = vms(&VmsArgs::default(), &env()).unwrap();
        assert_eq!(s.file, Path::new("/w/vms.toml"));
        assert_eq!(s.board, "qemu-virt");
        let args: VmsArgs = syn::parse_str(r#""v.toml""#).unwrap();
        assert_eq!(vms(&args, &env()).unwrap().file, Path::new("/crate/v.toml"));
    }

    #[test]
    fn vms_without_a_selected_board_is_an_error() {
        let mut e = env();
        e.board = None;
        let err = vms(&VmsArgs::default(), &e).unwrap_err();
        assert!(err.to_string().contains("configure"), "{err}");
    }
}
