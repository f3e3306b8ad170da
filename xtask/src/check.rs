//! Checks of a command's inputs that run before anything is built, installed or downloaded:
//! a mistyped board name, a bad VM file or a missing file costs a second, not the minutes of a
//! build or a package download.

use crate::build::{target_dir, workspace_root};
use crate::Target;
use platform_dsl::model::SupportLevel;
use std::path::Path;

/// The board exists in its KDL file (else the error suggests the closest name), may be built
/// (experimental boards need `--allow-experimental`), and the VM file is valid TOML that
/// keeps the VM rules and names images that exist (images under `target/`, which the tool
/// builds or fetches itself, are checked after the build).
pub fn target(t: &Target) -> Result<(), String> {
    board(t)?;
    vm_file(&t.vms)
}

/// The board part of [`target`].
pub fn board(t: &Target) -> Result<(), String> {
    let board = platform_dsl::image::load_board(&t.board_file, &t.board).map_err(|e| {
        // The file's own errors name it; an unknown board does not.
        match e {
            platform_dsl::Error::UnknownBoard { .. } => {
                format!("{e} (in {})", t.board_file.display())
            }
            e => e.to_string(),
        }
    })?;
    if board.support == SupportLevel::Experimental && !t.allow_experimental {
        return Err(format!(
            "board `{}` is experimental (support \"experimental\" in {}); build it with \
             --allow-experimental",
            board.name,
            t.board_file.display()
        ));
    }
    Ok(())
}

/// The VM file part of [`target`].
pub fn vm_file(path: &Path) -> Result<(), String> {
    let targets = [workspace_root().join("target"), target_dir()];
    platform_dsl::vmconfig::check_file(path, |image| targets.iter().any(|t| image.starts_with(t)))
        .map_err(|e| e.to_string())
}

/// An input file exists (`what` says which option named it).
pub fn file(what: &str, path: &Path) -> Result<(), String> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => Ok(()),
        Ok(_) => Err(format!("{what} `{}` is not a file", path.display())),
        Err(e) => Err(format!("{what} `{}`: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn qemu_virt() -> Target {
        Target {
            board: "qemu-virt".into(),
            board_file: workspace_root().join("boards.kdl"),
            vms: workspace_root().join("examples/vms/test-guest.toml"),
            allow_experimental: false,
        }
    }

    #[test]
    fn the_default_target_passes() {
        target(&qemu_virt()).unwrap();
    }

    #[test]
    fn a_mistyped_board_gets_the_closest_name() {
        let mut t = qemu_virt();
        t.board = "qemu-virtt".into();
        let e = target(&t).unwrap_err();
        assert!(e.contains("did you mean `qemu-virt`"), "{e}");
    }

    #[test]
    fn a_vm_file_with_an_unknown_key_fails_with_line_column_and_a_guess() {
        let dir = tempfile::tempdir().unwrap();
        let vms = dir.path().join("vms.toml");
        std::fs::write(&vms, "[[vm]]\nname = \"a\"\nvcpus = 1\n  memory = 64\n").unwrap();
        let e = vm_file(&vms).unwrap_err();
        assert!(
            e.contains(&format!("{}:4:3", vms.display())),
            "no file:line:column in {e}"
        );
        assert!(e.contains("did you mean `memory_mib`?"), "{e}");
    }

    #[test]
    fn a_missing_image_outside_target_is_found_before_building() {
        let dir = tempfile::tempdir().unwrap();
        let vms = dir.path().join("vms.toml");
        std::fs::write(
            &vms,
            "[[vm]]\nname = \"a\"\nvcpus = 1\nmemory_mib = 64\nkernel = \"no-such-Image\"\ncmdline = \"\"\n",
        )
        .unwrap();
        let e = vm_file(&vms).unwrap_err();
        assert!(
            e.contains("no-such-Image") && e.contains("does not exist"),
            "{e}"
        );
        assert!(e.contains(&format!("{}:5:", vms.display())), "{e}");
    }

    #[test]
    fn an_experimental_board_needs_the_opt_in() {
        let file = workspace_root().join("boards.kdl");
        let boards = platform_dsl::load_file(&file).unwrap();
        let b = boards
            .iter()
            .find(|b| b.support == SupportLevel::Experimental)
            .expect("boards.kdl has an experimental board (the Jetson Xaviers)");
        let mut t = qemu_virt();
        t.board.clone_from(&b.name);
        let e = board(&t).unwrap_err();
        assert!(e.contains("--allow-experimental"), "{e}");
        t.allow_experimental = true;
        board(&t).unwrap();
    }
}
