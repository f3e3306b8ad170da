//! Which board and VM file a macro call means: the model the build script wrote, and the
//! call's arguments checked against it.

use crate::args::{BoardArgs, VmsArgs};
use platform_dsl::image::{resolve_path, Model, MODEL_ENV};
use proc_macro2::Span;
use std::path::{Path, PathBuf};

/// The environment the macros read (`HV_MODEL` is set by `platform_dsl::image::configure`
/// via `cargo:rustc-env`).
#[derive(Clone, Debug, Default)]
pub struct Env {
    /// `CARGO_MANIFEST_DIR` of the crate being compiled.
    pub manifest_dir: Option<String>,
    /// `HV_MODEL`: the model file the build script wrote.
    pub model: Option<String>,
}

/// Variables read from the environment; generated code names them in `option_env!` so that
/// cargo rebuilds the crate when they change.
pub const TRACKED_ENV: [&str; 1] = [MODEL_ENV];

impl Env {
    /// Reads the process environment (rustc's, inside a proc macro).
    pub fn from_process() -> Self {
        let var = |n: &str| std::env::var(n).ok().filter(|v| !v.is_empty());
        Self {
            manifest_dir: var("CARGO_MANIFEST_DIR"),
            model: var(MODEL_ENV),
        }
    }

    fn relative_to_manifest(&self, file: &str) -> PathBuf {
        let base = self.manifest_dir.as_deref().unwrap_or(".");
        resolve_path(Path::new(base), Path::new(file))
    }

    /// The model file's path, if the build script set it.
    pub fn model_path(&self) -> Option<&Path> {
        self.model.as_deref().map(Path::new)
    }
}

const NO_MODEL: &str = "no board selected: build the image with `cargo xtask build --board NAME` \
    (its build.rs calls platform_dsl::image::configure, which loads the board and VM files \
    and hands their model to the macros in HV_MODEL)";

/// Reads the model the build script wrote.
pub fn model(env: &Env) -> syn::Result<Model> {
    let path = env
        .model_path()
        .ok_or_else(|| syn::Error::new(Span::call_site(), NO_MODEL))?;
    Model::read(path).map_err(|e| syn::Error::new(Span::call_site(), e.to_string()))
}

/// The board a `board!` call means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BoardSelection {
    /// Board name.
    pub name: String,
    /// Experimental boards allowed.
    pub allow_experimental: bool,
}

/// Resolves `board!` arguments against the model: `name` picks another board of the
/// model's file, `file` must name that file.
pub fn board(args: &BoardArgs, env: &Env, model: &Model) -> syn::Result<BoardSelection> {
    if let Some(lit) = &args.file {
        same_file(env, lit, &model.board_file, "HV_BOARD_FILE")?;
    }
    Ok(BoardSelection {
        name: args
            .name
            .as_ref()
            .map_or_else(|| model.board.clone(), |lit| lit.value()),
        allow_experimental: args
            .allow_experimental
            .as_ref()
            .map_or(model.allow_experimental, |lit| lit.value),
    })
}

/// Checks `vms!` arguments against the model: a path must name the model's VM file.
pub fn vms(args: &VmsArgs, env: &Env, model: &Model) -> syn::Result<()> {
    match &args.file {
        Some(lit) => same_file(env, lit, &model.vms_file, "HV_VMS"),
        None => Ok(()),
    }
}

/// A file argument must name the file the build script loaded: the macros only read what
/// it wrote into the model.
fn same_file(env: &Env, lit: &syn::LitStr, loaded: &Path, var: &str) -> syn::Result<()> {
    let given = env.relative_to_manifest(&lit.value());
    let canonical = |p: &Path| std::fs::canonicalize(p).ok();
    if given == loaded || canonical(&given).is_some_and(|g| Some(g) == canonical(loaded)) {
        return Ok(());
    }
    Err(syn::Error::new(
        lit.span(),
        format!(
            "`{}` is not the file the build script loaded (`{}`); the macros read the model \
             it wrote: make the build.rs defaults (or {var}) name the same file, or drop the \
             argument",
            given.display(),
            loaded.display()
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture;

    fn env() -> Env {
        Env {
            manifest_dir: Some("/w/crate".into()),
            model: Some("/out/hv-model.json".into()),
        }
    }

    fn model() -> Model {
        fixture::model()
    }

    #[test]
    fn board_defaults_to_the_build_selection() {
        let s = board(&BoardArgs::default(), &env(), &model()).unwrap();
        assert_eq!(s.name, "test-2s");
        assert!(!s.allow_experimental);
    }

    #[test]
    fn board_arguments_override_and_file_is_relative_to_the_crate() {
        let args: BoardArgs =
            syn::parse_str(r#"file = "../boards.kdl", name = "acme", allow_experimental = true"#)
                .unwrap();
        let s = board(&args, &env(), &model()).unwrap();
        assert_eq!(s.name, "acme");
        assert!(s.allow_experimental);
    }

    #[test]
    fn allow_experimental_comes_from_the_model() {
        let mut m = model();
        m.allow_experimental = true;
        assert!(
            board(&BoardArgs::default(), &env(), &m)
                .unwrap()
                .allow_experimental
        );
    }

    #[test]
    fn a_file_argument_other_than_the_loaded_file_is_an_error() {
        let args: BoardArgs = syn::parse_str(r#"file = "my.kdl""#).unwrap();
        let e = board(&args, &env(), &model()).unwrap_err();
        assert!(
            e.to_string()
                .contains("`/w/crate/my.kdl` is not the file the build script loaded"),
            "{e}"
        );
    }

    #[test]
    fn no_model_says_how_to_select() {
        let e = model_of(&Env::default()).unwrap_err();
        assert!(
            e.to_string().contains("cargo xtask build --board NAME"),
            "{e}"
        );
    }

    fn model_of(env: &Env) -> syn::Result<Model> {
        super::model(env)
    }

    #[test]
    fn vms_path_must_be_the_loaded_vm_file() {
        assert!(vms(&VmsArgs::default(), &env(), &model()).is_ok());
        let same: VmsArgs = syn::parse_str(r#""../vms.toml""#).unwrap();
        assert!(vms(&same, &env(), &model()).is_ok());
        let other: VmsArgs = syn::parse_str(r#""v.toml""#).unwrap();
        assert!(vms(&other, &env(), &model()).is_err());
    }
}
