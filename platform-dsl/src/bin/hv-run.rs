//! `hv-run IMAGE [QEMU ARGS...]`: boots a hypervisor image under QEMU the way its board's
//! `verified-by "qemu"` line says, with every VM image loaded where the build staged it.
//! Meant as the Cargo runner of an image crate (`cargo run --release`): it finds the model
//! the image's build script wrote (`hv-model.json` under the image's `build/*/out/`), so
//! nobody works out a guest address by hand.

use platform_dsl::image::Model;
use platform_dsl::model::Verification;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

const QEMU: &str = "qemu-system-aarch64";

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let Some(image) = args.next().map(PathBuf::from) else {
        eprintln!("usage: hv-run IMAGE [QEMU ARGS...] (as an image crate's Cargo runner)");
        return ExitCode::from(2);
    };
    let extra: Vec<_> = args.collect();
    match command(&image) {
        Ok(mut cmd) => {
            cmd.args(extra);
            eprintln!("hv-run: {cmd:?}");
            match cmd.status() {
                Ok(s) if s.success() => ExitCode::SUCCESS,
                Ok(s) => {
                    eprintln!("hv-run: QEMU exited with {s}");
                    ExitCode::FAILURE
                }
                Err(e) => {
                    eprintln!(
                        "hv-run: cannot start {QEMU}: {e} (Debian: apt install qemu-system-arm)"
                    );
                    ExitCode::FAILURE
                }
            }
        }
        Err(e) => {
            eprintln!("hv-run: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The QEMU command for `image`, from the newest model beside it.
fn command(image: &Path) -> Result<Command, String> {
    let model_path = newest_model(image)?;
    let model = Model::read(&model_path).map_err(|e| e.to_string())?;
    let board = model.selected().ok_or(format!(
        "{}: board `{}` did not load; rebuild the image to see why",
        model_path.display(),
        model.board
    ))?;
    let vms = model.vms.as_ref().map_err(|e| e.clone())?;
    qemu_args(board, image, &vms.plan.qemu_loader_args()).map(|args| {
        let mut c = Command::new(QEMU);
        c.args(args);
        c
    })
}

/// QEMU's arguments for `board` booting `image` with `loaders` (the staged VM images).
fn qemu_args(
    board: &platform_dsl::model::Board,
    image: &Path,
    loaders: &[String],
) -> Result<Vec<String>, String> {
    let Verification::Qemu {
        machine,
        cpu,
        smp,
        memory_mib,
        extra,
    } = &board.verified_by
    else {
        return Err(format!(
            "board `{}` has no `verified-by \"qemu\"` line: it runs on its hardware only (docs/hardware.md)",
            board.name
        ));
    };
    // Cargo hands the runner the ELF, which QEMU starts with no device tree: a board whose
    // RAM comes from the firmware would have none and stop.
    if let Some(m) = board.memory.iter().find(|m| m.known_size().is_none()) {
        return Err(format!(
            "board `{}`: memory \"{}\" comes from the firmware, and QEMU passes no device tree \
             to an ELF, so the hypervisor would stop; boot the flat Image instead \
             (`qemu-system-aarch64 -kernel IMAGE.bin`, as `cargo xtask run` does)",
            board.name, m.name
        ));
    }
    let mut a: Vec<String> = [
        "-M",
        machine,
        "-cpu",
        cpu,
        "-smp",
        &smp.to_string(),
        "-m",
        &memory_mib.to_string(),
        "-nographic",
        "-no-reboot",
        "-net",
        "none",
        "-kernel",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.push(image.display().to_string());
    a.extend(loaders.iter().cloned());
    a.extend(extra.iter().cloned());
    Ok(a)
}

/// The most recently written `build/*/out/hv-model.json` of the profile directory that
/// holds `image` (`target/TRIPLE/PROFILE/NAME`).
fn newest_model(image: &Path) -> Result<PathBuf, String> {
    let profile_dir = image
        .parent()
        .ok_or(format!("{} has no directory", image.display()))?;
    let build = profile_dir.join("build");
    let entries = std::fs::read_dir(&build).map_err(|e| {
        format!(
            "cannot read {}: {e}; is {} an image crate's build output?",
            build.display(),
            image.display()
        )
    })?;
    entries
        .flatten()
        .map(|e| e.path().join("out").join(platform_dsl::image::MODEL_FILE))
        .filter_map(|p| Some((std::fs::metadata(&p).ok()?.modified().ok()?, p)))
        .max()
        .map(|(_, p)| p)
        .ok_or(format!(
            "no {} under {}: build the image crate first",
            platform_dsl::image::MODEL_FILE,
            build.display()
        ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_qemu_board_boots_with_its_line_and_a_hardware_board_is_refused() {
        let boards =
            platform_dsl::load_file(concat!(env!("CARGO_MANIFEST_DIR"), "/../boards.kdl")).unwrap();
        let virt = platform_dsl::find_board(&boards, "qemu-virt").unwrap();
        let loaders = vec![
            "-device".to_owned(),
            "loader,file=g.bin,addr=0x42200000,force-raw=on".to_owned(),
        ];
        let a = qemu_args(virt, Path::new("/t/image"), &loaders).unwrap();
        let text = a.join(" ");
        assert!(
            text.starts_with(
                "-M virt,virtualization=on,gic-version=3 -cpu cortex-a57 -smp 4 -m 2048"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "-kernel /t/image -device loader,file=g.bin,addr=0x42200000,force-raw=on"
            ),
            "{text}"
        );
        let rpi = platform_dsl::find_board(&boards, "raspberrypi-4b").unwrap();
        let err = qemu_args(rpi, Path::new("/t/image"), &loaders).unwrap_err();
        assert!(err.contains("runs on its hardware only"), "{err}");
    }

    #[test]
    fn no_model_beside_the_image_says_to_build_first() {
        let dir = std::env::temp_dir().join(format!("hv-run-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("build/x/out")).unwrap();
        let err = newest_model(&dir.join("image")).unwrap_err();
        assert!(err.contains("build the image crate first"), "{err}");
        std::fs::write(
            dir.join("build/x/out")
                .join(platform_dsl::image::MODEL_FILE),
            "{}",
        )
        .unwrap();
        assert!(newest_model(&dir.join("image")).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
