//! The hypervisor as a UEFI application (issue 16): the `.efi` (`uefi-loader` with the
//! board's hypervisor Image embedded), the FAT ESP image it boots from, and EDK2 for QEMU.
//!
//! ```text
//! cargo xtask build --board NAME --uefi          target/images/hypervisor-NAME.efi
//! cargo xtask esp --board NAME --vm FILE.toml -o esp.img [--size SIZE]
//! ```
//!
//! The ESP image is a FAT file system without a partition table (what firmware takes from
//! a USB stick or a `virtio-blk` disk): `EFI/BOOT/BOOTAA64.EFI` (the `.efi`; UEFI starts it
//! from removable media without a boot entry), `HV/VMS.TOML` (the VM file, its image paths
//! rewritten to `IMAGES/...`, relative to `HV/`) and `HV/IMAGES/` (the images). See
//! `docs/uefi.md`.

use crate::build::{self, workspace_root};
use crate::datastore::{Window, WindowBlocks};
use crate::Target;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Rust target of the UEFI application.
pub const UEFI_TRIPLE: &str = "aarch64-unknown-uefi";
/// Debian's EDK2 for QEMU's `virt` (package `qemu-efi-aarch64`).
pub const EDK2_FD: &str = "/usr/share/qemu-efi-aarch64/QEMU_EFI.fd";
/// Debian's package that ships [`EDK2_FD`].
pub const EDK2_PACKAGE: &str = "qemu-efi-aarch64";
/// Where UEFI looks on removable media for an AArch64 boot application.
pub const BOOT_PATH: &str = "EFI/BOOT/BOOTAA64.EFI";

const MIB: u64 = 1 << 20;

/// Installs Debian's EDK2 for QEMU (`qemu-efi-aarch64`) if [`EDK2_FD`] is missing, the way
/// [`crate::qemu::ensure_qemu`] installs QEMU. Returns the firmware's path.
pub fn ensure_edk2() -> Result<PathBuf, String> {
    let fd = PathBuf::from(EDK2_FD);
    if fd.is_file() {
        return Ok(fd);
    }
    eprintln!("xtask: {EDK2_FD} not found; installing Debian's {EDK2_PACKAGE}");
    crate::qemu::apt_install(EDK2_PACKAGE).map_err(|e| {
        format!(
            "{e}\n{EDK2_FD} is missing and could not be installed; install Debian's \
                 `{EDK2_PACKAGE}` package (as root: apt-get install {EDK2_PACKAGE})"
        )
    })?;
    if fd.is_file() {
        Ok(fd)
    } else {
        Err(format!(
            "{EDK2_PACKAGE} is installed but {EDK2_FD} is not there"
        ))
    }
}

/// `cargo xtask build --board NAME --uefi`: the board's hypervisor Image, then
/// `uefi-loader` with it embedded; returns the image and `target/images/hypervisor-NAME.efi`.
pub fn build_efi(t: &Target, features: &[&str]) -> Result<(build::Image, PathBuf), String> {
    build::ensure_rust_targets()?;
    let img = build::image_with_features(t, features)?;
    // The flat, relocatable arm64 Image `build` wrote next to the ELF (header checked).
    let bin = &img.bin;
    build::run(
        build::cargo()
            .args([
                "build",
                "--release",
                "-p",
                "uefi-loader",
                "--target",
                UEFI_TRIPLE,
            ])
            .args(build::quiet())
            .env("HV_UEFI_IMAGE", bin),
    )?;
    let built = build::target_dir()
        .join(UEFI_TRIPLE)
        .join("release/uefi-loader.efi");
    let efi = workspace_root()
        .join("target/images")
        .join(format!("hypervisor-{}.efi", t.board));
    std::fs::copy(&built, &efi)
        .map_err(|e| format!("cannot copy {} to {}: {e}", built.display(), efi.display()))?;
    Ok((img, efi))
}

/// What goes on an ESP image.
#[derive(Clone, Debug)]
pub struct EspSpec {
    /// The image file to write.
    pub out: PathBuf,
    /// Its size in bytes; `None`: the files plus 16 MiB, at least 64 MiB.
    pub size: Option<u64>,
    /// The `.efi` to boot.
    pub efi: PathBuf,
    /// The VM file (one or more `[[vm]]`) to put at `HV/VMS.TOML` with its images.
    pub vms: PathBuf,
}

/// The VM file rewritten for the ESP: each image (`kernel`, `initrd`, `dtb`, relative to
/// the file) copied once to `HV/IMAGES/NAME`, the path in the file `IMAGES/NAME`.
struct EspVms {
    text: String,
    /// Source file and its path under `HV/`.
    copies: Vec<(PathBuf, String)>,
}

fn esp_vms(path: &Path) -> Result<EspVms, String> {
    let mut images = crate::datastore::Images::default();
    let table = images.rewrite(path)?;
    let vms = table
        .get("vm")
        .and_then(toml::Value::as_array)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| format!("{}: no [[vm]] table", path.display()))?;
    // The copies in the order the file names them.
    let mut by_dest: BTreeMap<String, PathBuf> = images
        .copies
        .into_values()
        .map(|(src, dest)| (dest, src))
        .collect();
    let mut copies = Vec::new();
    for vm in vms.iter().filter_map(toml::Value::as_table) {
        for key in ["kernel", "initrd", "dtb"] {
            let Some(dest) = vm.get(key).and_then(toml::Value::as_str) else {
                continue;
            };
            if let Some(src) = by_dest.remove(dest) {
                copies.push((src, dest.to_owned()));
            }
        }
    }
    let body = toml::to_string(&table).map_err(|e| format!("{}: {e}", path.display()))?;
    let text = format!(
        "# Written by `cargo xtask esp` from {}; image paths are relative to \\HV\\.\n\n{body}",
        path.display()
    );
    // The loader refuses what vm-config refuses: say so here, with the line, instead.
    vm_config::parse_vms(&text).map_err(|e| {
        format!(
            "{}: {e}{}",
            path.display(),
            e.line_col()
                .map(|(l, c)| format!(" (line {l}, column {c} of the rewritten file)"))
                .unwrap_or_default()
        )
    })?;
    Ok(EspVms { text, copies })
}

/// Writes the ESP image `spec` describes; returns the files written (ESP paths).
pub fn write_esp(spec: &EspSpec) -> Result<Vec<String>, String> {
    let vms = esp_vms(&spec.vms)?;
    let mut files: Vec<(String, Source)> = vec![
        (BOOT_PATH.into(), Source::File(spec.efi.clone())),
        ("HV/VMS.TOML".into(), Source::Bytes(vms.text.into_bytes())),
    ];
    for (src, dest) in vms.copies {
        files.push((format!("HV/{dest}"), Source::File(src)));
    }
    let mut content = 0;
    for (_, s) in &files {
        content += s.len()?;
    }
    let size = match spec.size {
        Some(s) => s,
        None => (content + 16 * MIB).div_ceil(MIB).max(64) * MIB,
    };
    if size < content + MIB {
        return Err(format!(
            "an ESP of {size} bytes cannot hold {content} bytes of files; give a larger --size"
        ));
    }
    let err = |what: &str, e: io::Error| format!("{}: {what}: {e}", spec.out.display());
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&spec.out)
        .map_err(|e| format!("cannot create {}: {e}", spec.out.display()))?;
    file.set_len(size).map_err(|e| err("size", e))?;
    let window = |f: &std::fs::File| -> Result<Window, String> {
        Ok(Window::new(
            f.try_clone().map_err(|e| err("open", e))?,
            0,
            size,
        ))
    };
    fatfs::format_volume(
        window(&file)?,
        fatfs::FormatVolumeOptions::new().volume_label(*b"HV-ESP     "),
    )
    .map_err(|e| err("format", e))?;
    // Directories with the hypervisor's FAT code, as `datastore create` does (fatfs 0.3
    // writes `..` entries that fsck.fat flags).
    let mut dirs = BTreeSet::new();
    for (path, _) in &files {
        let comps: Vec<&str> = path.split('/').collect();
        for n in 1..comps.len() {
            dirs.insert(comps[..n].join("/"));
        }
    }
    let mut store = mgmt::store::Store::open(WindowBlocks(window(&file)?))
        .map_err(|e| format!("{}: {e}", spec.out.display()))?;
    for d in &dirs {
        store
            .create_dir(d)
            .map_err(|e| format!("ESP directory {d}: {e}"))?;
    }
    store
        .close()
        .map_err(|e| format!("{}: {e}", spec.out.display()))?;
    let fs = fatfs::FileSystem::new(window(&file)?, fatfs::FsOptions::new())
        .map_err(|e| err("mount", e))?;
    {
        let root = fs.root_dir();
        for (path, src) in &files {
            let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
            let d = if dir.is_empty() {
                root.clone()
            } else {
                root.open_dir(dir).map_err(|e| format!("{dir}: {e}"))?
            };
            let mut f = d.create_file(name).map_err(|e| format!("{path}: {e}"))?;
            f.truncate().map_err(|e| format!("{path}: {e}"))?;
            match src {
                Source::Bytes(b) => f.write_all(b).map_err(|e| format!("{path}: {e}"))?,
                Source::File(p) => {
                    let mut from = std::fs::File::open(p)
                        .map_err(|e| format!("cannot read {}: {e}", p.display()))?;
                    io::copy(&mut from, &mut f)
                        .map_err(|e| format!("{} -> {path}: {e}", p.display()))?;
                }
            }
        }
    }
    fs.unmount().map_err(|e| err("write", e))?;
    Ok(files.into_iter().map(|(p, _)| p).collect())
}

enum Source {
    File(PathBuf),
    Bytes(Vec<u8>),
}

impl Source {
    fn len(&self) -> Result<u64, String> {
        match self {
            Source::Bytes(b) => Ok(b.len() as u64),
            Source::File(p) => std::fs::metadata(p)
                .map(|m| m.len())
                .map_err(|e| format!("cannot read {}: {e}", p.display())),
        }
    }
}

/// The VM file an image for UEFI is built with: no build-time VMs (nothing can stage
/// their images without QEMU's loader); the VMs come from the ESP's `HV/VMS.TOML`.
pub fn uefi_target(mut t: Target, vms_given: bool) -> Target {
    if !vms_given {
        t.vms = workspace_root().join("examples/vms/none.toml");
    }
    t
}

/// `cargo xtask esp`.
#[derive(Debug, clap::Args)]
pub struct EspArgs {
    #[command(flatten)]
    board: crate::BoardArgs,
    /// The ESP's VM file (HV/VMS.TOML; the image itself has no build-time VMs)
    #[arg(long = "vm", visible_alias = "vms", value_name = "FILE.toml")]
    vm: PathBuf,
    /// The ESP image to write
    #[arg(short = 'o', long = "out", value_name = "OUT.img")]
    out: PathBuf,
    /// Image size (e.g. 256M) [default: what the files need]
    #[arg(long, value_name = "SIZE", value_parser = crate::disk::parse_size)]
    size: Option<u64>,
    /// A built .efi to put on the ESP instead of building one
    #[arg(long, value_name = "FILE.efi")]
    efi: Option<PathBuf>,
}

/// `cargo xtask esp ...`: builds the `.efi` for the board and writes the ESP image.
pub fn esp_cmd(args: EspArgs) -> Result<(), String> {
    let t = uefi_target(args.board.target(), false);
    let vms = crate::abs(&args.vm);
    crate::check::board(&t)?;
    crate::check::vm_file(&vms)?;
    let prebuilt = args.efi.map(crate::abs);
    if let Some(p) = &prebuilt {
        crate::check::file("--efi", p)?;
    }
    let efi = match prebuilt {
        Some(p) => p,
        None => build_efi(&t, &[])?.1,
    };
    let spec = EspSpec {
        out: crate::abs(&args.out),
        size: args.size,
        efi,
        vms,
    };
    let files = write_esp(&spec)?;
    for f in &files {
        eprintln!("    {f}");
    }
    println!("{}", spec.out.display());
    Ok(())
}

/// The QEMU command line that boots `esp` with EDK2 on the board's QEMU machine.
pub fn qemu_command(img: &build::Image, esp: &Path, smp: Option<u32>) -> Result<Command, String> {
    use platform_dsl::model::Verification;
    let fd = ensure_edk2()?;
    let Verification::Qemu {
        machine,
        cpu,
        smp: board_smp,
        memory_mib,
        extra,
    } = &img.board.verified_by
    else {
        return Err(format!(
            "board `{}` has no QEMU machine line, so it cannot be run here",
            img.board.name
        ));
    };
    let mut c = Command::new("qemu-system-aarch64");
    c.args(["-M", machine, "-cpu", cpu, "-m", &memory_mib.to_string()])
        .args(["-smp", &smp.unwrap_or(*board_smp).to_string()])
        .args(["-nographic", "-no-reboot", "-net", "none"])
        .arg("-bios")
        .arg(fd)
        .arg("-drive")
        .arg(format!("if=none,format=raw,file={},id=esp", esp.display()))
        .args(["-device", "virtio-blk-pci,drive=esp"])
        .args(extra);
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory of its own, removed when the test ends.
    fn tmp(name: &str) -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix(&format!("xtask-esp-{name}-"))
            .tempdir()
            .unwrap()
    }

    #[test]
    fn the_esp_holds_the_efi_the_vm_file_and_its_images() {
        let t = tmp("ok");
        let d = t.path();
        std::fs::write(d.join("app.efi"), b"MZ efi").unwrap();
        std::fs::create_dir_all(d.join("k")).unwrap();
        std::fs::write(d.join("k/Image"), vec![7u8; 300_000]).unwrap();
        std::fs::write(d.join("initrd.gz"), b"initrd").unwrap();
        std::fs::write(
            d.join("vms.toml"),
            "[[vm]]\nname = \"a\"\nvcpus = 1\nmemory_mib = 64\nkernel = \"k/Image\"\n\
             initrd = \"initrd.gz\"\ncmdline = \"\"\n\n[[vm]]\nname = \"b\"\nvcpus = 1\n\
             memory_mib = 64\nkernel = \"k/Image\"\ncmdline = \"x\"\n",
        )
        .unwrap();
        let spec = EspSpec {
            out: d.join("esp.img"),
            size: None,
            efi: d.join("app.efi"),
            vms: d.join("vms.toml"),
        };
        let files = write_esp(&spec).unwrap();
        assert_eq!(
            files,
            [
                "EFI/BOOT/BOOTAA64.EFI",
                "HV/VMS.TOML",
                "HV/IMAGES/Image",
                "HV/IMAGES/initrd.gz"
            ]
        );
        let f = std::fs::File::open(&spec.out).unwrap();
        let len = f.metadata().unwrap().len();
        assert_eq!(len, 64 * MIB);
        let fs = fatfs::FileSystem::new(Window::new(f, 0, len), fatfs::FsOptions::new()).unwrap();
        let read = |p: &str| {
            let mut v = Vec::new();
            io::Read::read_to_end(&mut fs.root_dir().open_file(p).unwrap(), &mut v).unwrap();
            v
        };
        assert_eq!(read("EFI/BOOT/BOOTAA64.EFI"), b"MZ efi");
        assert_eq!(read("HV/IMAGES/Image"), vec![7u8; 300_000]);
        let text = String::from_utf8(read("HV/VMS.TOML")).unwrap();
        let vms = vm_config::parse_vms(&text).unwrap();
        assert_eq!(vms[0].kernel, "IMAGES/Image");
        assert_eq!(vms[0].initrd.as_deref(), Some("IMAGES/initrd.gz"));
        assert_eq!(vms[1].kernel, "IMAGES/Image");
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn a_missing_image_or_a_bad_vm_file_is_refused() {
        let t = tmp("bad");
        let d = t.path();
        std::fs::write(d.join("app.efi"), b"MZ").unwrap();
        let spec = |vms: &str| {
            std::fs::write(d.join("vms.toml"), vms).unwrap();
            EspSpec {
                out: d.join("esp.img"),
                size: None,
                efi: d.join("app.efi"),
                vms: d.join("vms.toml"),
            }
        };
        let err = write_esp(&spec(
            "[[vm]]\nname = \"a\"\nvcpus = 1\nmemory_mib = 64\nkernel = \"nope\"\ncmdline = \"\"\n",
        ))
        .unwrap_err();
        assert!(err.contains("image") && err.contains("nope"), "{err}");
        std::fs::write(d.join("k"), b"k").unwrap();
        let err = write_esp(&spec(
            "[[vm]]\nname = \"a\"\nvcpus = 0\nmemory_mib = 64\nkernel = \"k\"\ncmdline = \"\"\n",
        ))
        .unwrap_err();
        assert!(err.contains("line"), "{err}");
        let _ = std::fs::remove_dir_all(d);
    }
}
