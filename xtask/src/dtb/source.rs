//! DTBs that Debian's arm64 kernel package does not ship (Tegra194), compiled from the
//! device-tree sources of Debian's `linux-source-6.1` with `cpp` and `dtc`.
//!
//! ```text
//! target/dtb-cache/
//!   linux-source/linux-source-6.1/    arch/arm64/boot/dts/nvidia/, include/dt-bindings/ only
//!   nvidia/tegra194-p2972-0000.dtb    compiled here (what `verified-by "dtb" path=` names)
//! ```

use std::path::{Path, PathBuf};
use std::process::Command;

/// The DTBs built from source: `vendor/name.dtb`, compiled from
/// `arch/arm64/boot/dts/vendor/name.dts`.
pub const FROM_SOURCE: &[&str] = &[
    // Jetson AGX Xavier Developer Kit
    "nvidia/tegra194-p2972-0000.dtb",
    // Jetson Xavier NX Developer Kit (SD-card module)
    "nvidia/tegra194-p3509-0000+p3668-0000.dtb",
];

/// What those sources need from the tree: the vendor's `.dts`/`.dtsi` files and the
/// `<dt-bindings/...>` headers they include (`cpp -I include`), plus the target of
/// `include/dt-bindings/input/linux-event-codes.h`, a symlink into `include/uapi`.
const SOURCE_MEMBERS: &[&str] = &[
    "arch/arm64/boot/dts/nvidia/*",
    "include/dt-bindings/*",
    "include/uapi/linux/input-event-codes.h",
];

/// Written after a complete extraction: the [`SOURCE_MEMBERS`] it holds, one per line, so
/// that a changed list (or an interrupted extraction) fetches again.
const MEMBERS_FILE: &str = "members";

/// Where the extracted part of the source tree lives, under the DTB cache.
const SOURCE_DIR: &str = "linux-source";

/// The device-tree compiler and the Debian package that has it.
const DTC: &str = "dtc";
const DTC_PACKAGE: &str = "device-tree-compiler";

/// Is `dtb` (`vendor/name.dtb`) one of [`FROM_SOURCE`]?
pub fn is_from_source(dtb: &str) -> bool {
    FROM_SOURCE.contains(&dtb)
}

/// The compiled `cache/dtb`, built (and the sources fetched) on first use.
pub fn compiled(cache: &Path, dtb: &str) -> Result<PathBuf, String> {
    let out = cache.join(dtb);
    if out.is_file() {
        return Ok(out);
    }
    let dts_rel = Path::new("arch/arm64/boot/dts")
        .join(dtb)
        .with_extension("dts");
    let source = cache.join(SOURCE_DIR);
    let mut root = source.join("linux-source-6.1");
    let marker = source.join(MEMBERS_FILE);
    let want = SOURCE_MEMBERS.join("\n");
    if std::fs::read_to_string(&marker).ok().as_deref() != Some(want.as_str()) {
        root =
            crate::guest::fetch_linux_source(&source, SOURCE_MEMBERS).map_err(|e| e.to_string())?;
        std::fs::write(&marker, &want)
            .map_err(|e| format!("cannot write `{}`: {e}", marker.display()))?;
    }
    if !root.join(&dts_rel).is_file() {
        return Err(format!(
            "linux-source-6.1 has no `{}`; the DTB was renamed upstream: update FROM_SOURCE in xtask/src/dtb/source.rs and the board's `verified-by \"dtb\" path=`",
            dts_rel.display()
        ));
    }
    ensure_tool("cpp", "cpp")?;
    ensure_tool(DTC, DTC_PACKAGE)?;
    let parent = out
        .parent()
        .ok_or_else(|| format!("`{dtb}` has no vendor directory"))?;
    std::fs::create_dir_all(parent)
        .map_err(|e| format!("cannot create `{}`: {e}", parent.display()))?;
    let preprocessed = out.with_extension("dts.pp");
    // The kernel's own recipe (scripts/Makefile.lib, cmd_dtc_cpp), relative to the tree.
    run(Command::new("cpp")
        .current_dir(&root)
        .args(["-nostdinc", "-I", "include", "-I", "arch", "-undef"])
        .args(["-D__DTS__", "-x", "assembler-with-cpp", "-o"])
        .arg(&preprocessed)
        .arg(&dts_rel))?;
    let partial = out.with_extension("dtb.partial");
    run(Command::new(DTC)
        .args(["-q", "-I", "dts", "-O", "dtb", "-o"])
        .arg(&partial)
        .arg(&preprocessed))?;
    std::fs::rename(&partial, &out)
        .map_err(|e| format!("cannot rename `{}`: {e}", partial.display()))?;
    std::fs::remove_file(&preprocessed)
        .map_err(|e| format!("cannot remove `{}`: {e}", preprocessed.display()))?;
    eprintln!("dtb: compiled {dtb} from linux-source-6.1");
    Ok(out)
}

/// Installs Debian's `package` if `tool` cannot be run (as `ensure_qemu` does for QEMU).
fn ensure_tool(tool: &str, package: &str) -> Result<(), String> {
    if Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return Ok(());
    }
    eprintln!("xtask: {tool} not found; installing Debian's {package}");
    let apt = |args: &[&str]| {
        crate::build::run(
            Command::new("apt-get")
                .args(args)
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )
    };
    apt(&["update", "-q"])
        .and_then(|_| apt(&["install", "-y", "-q", "--no-install-recommends", package]))
        .map_err(|e| format!("{e}\n`{tool}` is missing and could not be installed; install Debian's `{package}` package (as root: apt-get install {package})"))
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}
