//! The U-Boot boot bundle (issue 17): what `cargo xtask build --board NAME` writes next to
//! the image for boards whose firmware is U-Boot, into `target/bundle/NAME/`:
//!
//! ```text
//! hypervisor-NAME.bin      the flat arm64 Image (loaded at the KDL's `hypervisor load=`)
//! vmN-KIND-FILE            each image of the build-time VM table, at its staging address
//! VMS.TOML, IMAGES/...     with --boot-vms F.toml: a VM file and its images, boot modules
//! boot.cmd, boot.scr       the U-Boot script (boot.scr: boot.cmd wrapped by `mkimage -T script`)
//! README.txt               what goes where (addresses and sizes)
//! ```
//!
//! The script reads every file from the partition U-Boot's distro boot found it on
//! (`${devtype} ${devnum}:${distro_bootpart}`, `${prefix}`), loads each at its address,
//! copies the device tree U-Boot runs with (`${fdtcontroladdr}`: QEMU's, the Raspberry Pi
//! firmware's, or U-Boot's own for the board) to a slot of the bundle with room to grow,
//! adds the `/chosen/module@*` nodes of the boot modules there with `fdt mknode` / `fdt set`
//! (each `reg` size from `${filesize}` of its `load`), and starts the hypervisor at EL2
//! with `booti`. Why `fdt` commands and not a DTB overlay: an overlay needs the base tree
//! built with symbols (`dtc -@`), which neither QEMU's tree nor most firmware trees are, and
//! the sizes would be fixed when the overlay is compiled; the commands work on any tree
//! and are in Debian's `u-boot-qemu` (CONFIG_CMD_FDT).
//!
//! The layout is one pure function ([`layout`]) so that host tests check it: the Image's
//! whole region (`image_size` of its header: image, `.bss`, stacks, heap), every staged
//! file and the DTB slot are 2 MiB aligned, inside one RAM region of the board, and never
//! overlap. See `docs/hardware.md`.

use crate::build::{self, workspace_root, Image};
use platform_dsl::model::{Board, Verification};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

const MIB: u64 = 1 << 20;
/// Alignment of everything the script loads (`booti` wants the Image 2 MiB aligned; the
/// staging plan and the modules use the same unit).
const BLOCK: u64 = 2 * MIB;
/// Room for the device tree copy: `fdt move` opens it into this many bytes, so that the
/// module nodes and U-Boot's own fixups at `booti` fit.
pub const DTB_ROOM: u64 = 2 * MIB;
/// What `fdt move` opens the copy into: [`DTB_ROOM`] less 64 KiB, which `booti` may add
/// (`CONFIG_SYS_FDT_PAD`, 12 KiB by default) when it uses the tree in place.
pub const DTB_OPEN: u64 = DTB_ROOM - 0x1_0000;
/// Debian's U-Boot for QEMU's `virt` (package `u-boot-qemu`), which runs at EL2 with
/// `virtualization=on`.
pub const UBOOT_BIN: &str = "/usr/lib/u-boot/qemu_arm64/u-boot.bin";
const UBOOT_PACKAGE: &str = "u-boot-qemu";
const MKIMAGE_PACKAGE: &str = "u-boot-tools";

/// What a staged file is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The hypervisor Image; its slot is the whole region it owns.
    Hypervisor,
    /// An image of the build-time VM table, at the address the image was built to find it.
    Staged,
    /// A boot module: `hv,vm-config`, or `hv,vm-image` with its `hv,path`.
    Module {
        compatible: &'static str,
        path: Option<String>,
    },
}

/// One file the script loads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slot {
    /// Its name in the bundle (relative, `/` separated).
    pub name: String,
    /// Where it comes from on the build machine.
    pub src: PathBuf,
    /// Physical address it is loaded at.
    pub addr: u64,
    /// Bytes of the file.
    pub file_size: u64,
    /// Bytes it owns from `addr` (the Image: `image_size`; others: the file).
    pub span: u64,
    pub kind: Kind,
}

/// Everything the script places, and where the device tree copy goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    pub slots: Vec<Slot>,
    /// Where the script copies the device tree to ([`DTB_ROOM`] bytes).
    pub dtb: u64,
}

/// A boot module to place: its bundle name, source, `compatible` and `hv,path`.
pub struct ModuleFile {
    pub name: String,
    pub src: PathBuf,
    pub size: u64,
    pub compatible: &'static str,
    pub path: Option<String>,
}

const fn align_up(v: u64, a: u64) -> Option<u64> {
    match v.checked_add(a - 1) {
        Some(x) => Some(x & !(a - 1)),
        None => None,
    }
}

/// Places the Image (`image_size` from its header, `bin_len` bytes of file) at the board's
/// `hypervisor load=`, the build-time images (`staged`: name, source, address, size, as the
/// image's staging plan has them), then `modules` and the DTB slot from the first 2 MiB
/// boundary after both. Refuses what would not boot: an unaligned Image, an `image_size`
/// that runs into the staging area, anything outside the board's RAM, any overlap.
pub fn layout(
    board: &Board,
    image_size: u64,
    bin_len: u64,
    bin: &Path,
    staged: &[(String, PathBuf, u64, u64)],
    modules: &[ModuleFile],
) -> Result<Layout, String> {
    let Some(load) = board.hypervisor.load_address else {
        return Err(no_load_address(board));
    };
    if !load.is_multiple_of(BLOCK) {
        return Err(format!(
            "board `{}`: hypervisor load={load:#x} is not 2 MiB aligned; U-Boot's booti would \
             move the Image to the next 2 MiB boundary",
            board.name
        ));
    }
    if image_size < bin_len {
        return Err(format!(
            "the Image's image_size {image_size:#x} is smaller than its file ({bin_len:#x} bytes)"
        ));
    }
    let mut slots = vec![Slot {
        name: file_name(bin)?,
        src: bin.to_path_buf(),
        addr: load,
        file_size: bin_len,
        span: image_size,
        kind: Kind::Hypervisor,
    }];
    let mut cursor = load.saturating_add(image_size);
    for (name, src, addr, size) in staged {
        slots.push(Slot {
            name: name.clone(),
            src: src.clone(),
            addr: *addr,
            file_size: *size,
            span: *size,
            kind: Kind::Staged,
        });
        cursor = cursor.max(addr.saturating_add(*size));
    }
    for m in modules {
        let addr = align_up(cursor, BLOCK).ok_or("the modules run past the address space")?;
        slots.push(Slot {
            name: m.name.clone(),
            src: m.src.clone(),
            addr,
            file_size: m.size,
            span: m.size.max(1),
            kind: Kind::Module {
                compatible: m.compatible,
                path: m.path.clone(),
            },
        });
        cursor = addr.saturating_add(m.size.max(1));
    }
    let dtb = align_up(cursor, BLOCK).ok_or("the DTB slot runs past the address space")?;
    let out = Layout { slots, dtb };
    check(board, &out)?;
    Ok(out)
}

/// Why a board whose KDL writes no `hypervisor load=` gets no bundle: `boot.scr` loads every
/// file at an address, and nothing is known of the board's RAM before boot.
pub fn no_load_address(board: &Board) -> String {
    format!(
        "board `{}` writes no `hypervisor load=` (its RAM base comes from the firmware), so \
         there is no address to load the Image and its files at: no U-Boot bundle; boot the \
         Image with U-Boot's own `booti` at `$kernel_addr_r`, or write the RAM base and \
         `hypervisor load=` in the board KDL",
        board.name
    )
}

/// Every range of `l` is 2 MiB aligned, inside one RAM region of `board` (for a region
/// whose size the firmware gives: at or above its base; the hypervisor refuses at boot a
/// firmware RAM that does not hold its region and staging area), and no two overlap.
pub fn check(board: &Board, l: &Layout) -> Result<(), String> {
    let mut ranges: Vec<(u64, u64, &str)> = l
        .slots
        .iter()
        .map(|s| (s.addr, s.addr.saturating_add(s.span), s.name.as_str()))
        .collect();
    ranges.push((l.dtb, l.dtb.saturating_add(DTB_ROOM), "device tree copy"));
    for &(start, end, name) in &ranges {
        if !start.is_multiple_of(BLOCK) {
            return Err(format!("{name} at {start:#x} is not 2 MiB aligned"));
        }
        if !board
            .memory
            .iter()
            .any(|r| match (r.known_base(), r.known_size()) {
                (Some(base), Some(size)) => base <= start && end <= base.saturating_add(size),
                (Some(base), None) => base <= start,
                (None, _) => false,
            })
        {
            return Err(format!(
                "{name} at {start:#x}..{end:#x} is not inside one RAM region of board `{}`",
                board.name
            ));
        }
    }
    ranges.sort();
    for w in ranges.windows(2) {
        if w[0].1 > w[1].0 {
            return Err(format!(
                "{} ({:#x}..{:#x}) overlaps {} ({:#x}..{:#x})",
                w[0].2, w[0].0, w[0].1, w[1].2, w[1].0, w[1].1
            ));
        }
    }
    Ok(())
}

fn file_name(p: &Path) -> Result<String, String> {
    p.file_name()
        .and_then(|n| n.to_str())
        .map(str::to_owned)
        .ok_or_else(|| format!("{}: no file name", p.display()))
}

/// The U-Boot script (`boot.cmd`) that loads `l` and starts the hypervisor with `booti`.
pub fn script(board: &str, l: &Layout) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# Boots the hypervisor for board `{board}` (written by `cargo xtask build`; see\n\
         # docs/hardware.md). Distro boot sets devtype, devnum, distro_bootpart and prefix\n\
         # (devtype=dhcp when it got this script over TFTP: the files then come from the\n\
         # same server). To run it by hand: setenv devtype mmc; setenv devnum 0;\n\
         # setenv distro_bootpart 1; setenv prefix /; load mmc 0:1 ${{scriptaddr}} boot.scr;\n\
         # source ${{scriptaddr}}"
    );
    let _ = writeln!(s, "echo \"hv-bundle: board {board}\"");
    let _ = writeln!(
        s,
        "if test \"${{devtype}}\" = \"dhcp\"; then setenv hv_get tftpboot; \
         setenv hv_from \"TFTP server ${{serverip}}\"; else \
         setenv hv_get \"load ${{devtype}} ${{devnum}}:${{distro_bootpart}}\"; \
         setenv hv_from \"${{devtype}} ${{devnum}}:${{distro_bootpart}}\"; fi"
    );
    for slot in &l.slots {
        let _ = writeln!(
            s,
            "if ${{hv_get}} {:#x} ${{prefix}}{}; then \
             echo \"hv-bundle: {} at {:#x}\"; else echo \"hv-bundle: cannot load {} from \
             ${{hv_from}}\"; exit; fi",
            slot.addr, slot.name, slot.name, slot.addr, slot.name
        );
        if matches!(slot.kind, Kind::Module { .. }) {
            let _ = writeln!(s, "setenv hv_size_{:x} 0x${{filesize}}", slot.addr);
        }
    }
    let _ = writeln!(
        s,
        "if fdt addr ${{fdtcontroladdr}} && fdt move ${{fdtcontroladdr}} {:#x} {DTB_OPEN:#x}; then echo \"hv-bundle: device tree \
         at {:#x}\"; else echo \"hv-bundle: cannot copy the device tree\"; exit; fi",
        l.dtb, l.dtb
    );
    // All ones: `booti` uses the tree where it is (in its slot, which the layout keeps
    // clear) instead of copying it to wherever U-Boot's allocator finds room, which
    // knows nothing of the staged files and modules.
    let _ = writeln!(s, "setenv fdt_high 0xffffffffffffffff");
    let modules: Vec<&Slot> = l
        .slots
        .iter()
        .filter(|s| matches!(s.kind, Kind::Module { .. }))
        .collect();
    if !modules.is_empty() {
        let _ = writeln!(s, "fdt set /chosen \"#address-cells\" <2>");
        let _ = writeln!(s, "fdt set /chosen \"#size-cells\" <2>");
        for m in modules {
            let Kind::Module { compatible, path } = &m.kind else {
                continue;
            };
            let node = format!("/chosen/module@{:x}", m.addr);
            let _ = writeln!(s, "fdt mknode /chosen module@{:x}", m.addr);
            let _ = writeln!(
                s,
                "fdt set {node} reg <{:#x} {:#x} 0x0 ${{hv_size_{:x}}}>",
                m.addr >> 32,
                m.addr & 0xffff_ffff,
                m.addr
            );
            let _ = writeln!(s, "fdt set {node} compatible \"{compatible}\"");
            if let Some(p) = path {
                let _ = writeln!(s, "fdt set {node} hv,path \"{p}\"");
            }
        }
    }
    let hv = &l.slots[0];
    let _ = writeln!(
        s,
        "echo \"hv-bundle: booti {:#x} - {:#x}\"\nbooti {:#x} - {:#x}\n\
         echo \"hv-bundle: booti returned\"",
        hv.addr, l.dtb, hv.addr, l.dtb
    );
    s
}

/// `README.txt` of the bundle: each file, its address and what it is.
pub fn readme(board: &Board, l: &Layout) -> String {
    let mut s = format!(
        "Boot bundle for board `{}` ({}), written by `cargo xtask build`.\n\
         Copy every file (keeping IMAGES/) to a FAT partition U-Boot can read; its distro\n\
         boot finds boot.scr there. See docs/hardware.md.\n\n\
         address             bytes       owns until          file\n",
        board.name, board.model
    );
    for slot in &l.slots {
        let what = match &slot.kind {
            Kind::Hypervisor => "hypervisor Image (region: image_size of its header)".into(),
            Kind::Staged => "build-time VM image".into(),
            Kind::Module { compatible, path } => match path {
                Some(p) => format!("boot module {compatible} \"{p}\""),
                None => format!("boot module {compatible}"),
            },
        };
        let _ = writeln!(
            s,
            "{:#018x}  {:>10}  {:#018x}  {}  ({what})",
            slot.addr,
            slot.file_size,
            slot.addr + slot.span,
            slot.name
        );
    }
    let _ = writeln!(
        s,
        "{:#018x}  {:>10}  {:#018x}  (the device tree U-Boot runs with, copied here)",
        l.dtb,
        DTB_ROOM,
        l.dtb + DTB_ROOM
    );
    for m in board.memory.iter().filter(|m| m.known_size().is_none()) {
        let _ = writeln!(
            s,
            "\nThe size of memory \"{}\" comes from the firmware: the machine's RAM must reach \
             {:#x} (the end of the device tree slot); the hypervisor stops at boot if the \
             firmware's RAM does not hold its region and staging area.",
            m.name,
            l.dtb + DTB_ROOM
        );
    }
    s
}

/// Installs Debian's `package` if `present` says it is missing; an error says what to
/// install when that fails.
fn ensure(present: bool, what: &str, package: &str) -> Result<(), String> {
    if present {
        return Ok(());
    }
    eprintln!("xtask: {what} not found; installing Debian's {package}");
    crate::qemu::apt_install(package).map_err(|e| {
        format!(
            "{e}\n{what} is missing and could not be installed; install Debian's `{package}` \
             package (as root: apt-get install {package})"
        )
    })
}

/// `mkimage` (Debian's `u-boot-tools`), installed if missing.
pub fn ensure_mkimage() -> Result<(), String> {
    let found = |()| {
        Command::new("mkimage")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    ensure(found(()), "mkimage", MKIMAGE_PACKAGE)?;
    if found(()) {
        Ok(())
    } else {
        Err(format!(
            "{MKIMAGE_PACKAGE} is installed but mkimage does not run"
        ))
    }
}

/// Debian's U-Boot for QEMU `virt` ([`UBOOT_BIN`]), installed if missing.
pub fn ensure_uboot() -> Result<PathBuf, String> {
    let bin = PathBuf::from(UBOOT_BIN);
    ensure(bin.is_file(), UBOOT_BIN, UBOOT_PACKAGE)?;
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(format!(
            "{UBOOT_PACKAGE} is installed but {UBOOT_BIN} is not there"
        ))
    }
}

/// A written bundle.
pub struct Bundle {
    /// `target/bundle/BOARD/`.
    pub dir: PathBuf,
    pub layout: Layout,
}

/// The boot modules of the VM file `vms`: the file (its image paths rewritten to
/// `IMAGES/NAME`) as `VMS.TOML`, `hv,vm-config`, then each image as `hv,vm-image` whose
/// `hv,path` is that rewritten path. The rewritten file goes to `dir`.
fn boot_modules(vms: &Path, dir: &Path) -> Result<Vec<ModuleFile>, String> {
    let mut images = crate::datastore::Images::default();
    let table = images.rewrite(vms)?;
    let body = toml::to_string(&table).map_err(|e| format!("{}: {e}", vms.display()))?;
    let text = format!(
        "# Written by `cargo xtask build --boot-vms {}`; image paths are the\n\
         # hv,path of the bundle's image modules.\n\n{body}",
        vms.display()
    );
    vm_config::parse_vms(&text).map_err(|e| format!("{}: {e}", vms.display()))?;
    let toml_path = dir.join("VMS.TOML");
    std::fs::write(&toml_path, &text)
        .map_err(|e| format!("cannot write {}: {e}", toml_path.display()))?;
    let mut out = vec![ModuleFile {
        name: "VMS.TOML".into(),
        src: toml_path,
        size: text.len() as u64,
        compatible: "hv,vm-config",
        path: None,
    }];
    let mut copies: Vec<(PathBuf, String)> = images.copies.into_values().collect();
    copies.sort_by(|a, b| a.1.cmp(&b.1));
    for (src, dest) in copies {
        let size = std::fs::metadata(&src)
            .map_err(|e| format!("{}: {e}", src.display()))?
            .len();
        out.push(ModuleFile {
            name: dest.clone(),
            src,
            size,
            compatible: "hv,vm-image",
            path: Some(dest),
        });
    }
    Ok(out)
}

/// Writes the bundle of `img` to `target/bundle/BOARD/` (emptied first): the files of
/// [`layout`], `boot.cmd`, `boot.scr` (`mkimage -T script`) and `README.txt`. `boot_vms`:
/// a VM file whose VMs the bundle passes as boot modules.
pub fn write_bundle(img: &Image, boot_vms: Option<&Path>) -> Result<Bundle, String> {
    let dir = workspace_root().join("target/bundle").join(&img.board.name);
    write_bundle_to(img, boot_vms, &dir)
}

/// [`write_bundle`] into `dir`.
pub fn write_bundle_to(img: &Image, boot_vms: Option<&Path>, dir: &Path) -> Result<Bundle, String> {
    ensure_mkimage()?;
    if let (Some(v), Ok(d)) = (boot_vms, dir.canonicalize()) {
        if v.canonicalize().is_ok_and(|v| v.starts_with(&d)) {
            return Err(format!(
                "--boot-vms {}: the file is inside the bundle directory {}, which the build \
                 empties first; copy it (and its images) elsewhere",
                v.display(),
                d.display()
            ));
        }
    }
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let bin = std::fs::read(&img.bin).map_err(|e| format!("{}: {e}", img.bin.display()))?;
    let header =
        build::check_image_header(&bin).map_err(|e| format!("{}: {e}", img.bin.display()))?;
    let staged: Vec<(String, PathBuf, u64, u64)> = img
        .plan
        .images
        .iter()
        .map(|i| {
            let base = i
                .path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("image");
            (
                format!("vm{}-{}-{base}", i.vm, i.kind),
                i.path.clone(),
                i.addr,
                i.size,
            )
        })
        .collect();
    let modules = match boot_vms {
        Some(v) => boot_modules(v, dir)?,
        None => Vec::new(),
    };
    let l = layout(
        &img.board,
        header.image_size,
        bin.len() as u64,
        &img.bin,
        &staged,
        &modules,
    )?;
    for slot in &l.slots {
        let to = dir.join(&slot.name);
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        if to != slot.src {
            std::fs::copy(&slot.src, &to).map_err(|e| {
                format!(
                    "cannot copy {} to {}: {e}",
                    slot.src.display(),
                    to.display()
                )
            })?;
        }
    }
    let cmd = dir.join("boot.cmd");
    std::fs::write(&cmd, script(&img.board.name, &l))
        .map_err(|e| format!("cannot write {}: {e}", cmd.display()))?;
    build::run(
        Command::new("mkimage")
            .args([
                "-q", "-A", "arm64", "-O", "linux", "-T", "script", "-C", "none",
            ])
            .args(["-n", &format!("hv {}", img.board.name)])
            .arg("-d")
            .arg(&cmd)
            .arg(dir.join("boot.scr"))
            // It prints the script image's header even with -q; stdout is for the paths.
            .stdout(std::process::Stdio::null()),
    )?;
    // The name distro boot asks the DHCP/TFTP server for (`boot_script_dhcp`).
    std::fs::copy(dir.join("boot.scr"), dir.join("boot.scr.uimg"))
        .map_err(|e| format!("cannot write boot.scr.uimg: {e}"))?;
    std::fs::write(dir.join("README.txt"), readme(&img.board, &l))
        .map_err(|e| format!("cannot write README.txt: {e}"))?;
    Ok(Bundle {
        dir: dir.to_path_buf(),
        layout: l,
    })
}

/// The files of `dir` (recursively), relative and `/` separated.
fn files_under(dir: &Path, rel: &str, out: &mut Vec<(String, PathBuf)>) -> Result<(), String> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(Result::ok)
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name().to_string_lossy().into_owned();
        let path = e.path();
        let r = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        if path.is_dir() {
            out.push((format!("{r}/"), path.clone()));
            files_under(&path, &r, out)?;
        } else {
            out.push((r, path));
        }
    }
    Ok(())
}

/// A disk image (`out`) whose one GPT partition `hv-boot` is a FAT file system holding the
/// bundle in `dir`: what an SD card or USB stick with the bundle looks like to U-Boot.
pub fn write_disk(dir: &Path, out: &Path) -> Result<(), String> {
    use std::io::Write;
    let mut files = Vec::new();
    files_under(dir, "", &mut files)?;
    let mut content = 0;
    for (_, p) in &files {
        content += std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    }
    let fat_size = (content + 16 * MIB).div_ceil(MIB).max(64) * MIB;
    let fat = out.with_extension("fat");
    let err = |e: std::io::Error| format!("{}: {e}", fat.display());
    {
        use crate::datastore::{Window, WindowBlocks};
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&fat)
            .map_err(err)?;
        file.set_len(fat_size).map_err(err)?;
        let window = || -> Result<Window, String> {
            Ok(Window::new(file.try_clone().map_err(err)?, 0, fat_size))
        };
        fatfs::format_volume(
            window()?,
            fatfs::FormatVolumeOptions::new().volume_label(*b"HV-BOOT    "),
        )
        .map_err(err)?;
        // Directories with the hypervisor's FAT code, as `datastore create` and the ESP do
        // (fatfs 0.3 writes `..` entries that fsck.fat flags).
        let mut store = mgmt::store::Store::open(WindowBlocks(window()?))
            .map_err(|e| format!("{}: {e}", fat.display()))?;
        for (name, _) in &files {
            if let Some(d) = name.strip_suffix('/') {
                store
                    .create_dir(d)
                    .map_err(|e| format!("bundle directory {d}: {e}"))?;
            }
        }
        store
            .close()
            .map_err(|e| format!("{}: {e}", fat.display()))?;
        let fs = fatfs::FileSystem::new(window()?, fatfs::FsOptions::new()).map_err(err)?;
        {
            let root = fs.root_dir();
            for (name, src) in files.iter().filter(|(n, _)| !n.ends_with('/')) {
                let mut f = root.create_file(name).map_err(|e| format!("{name}: {e}"))?;
                f.truncate().map_err(|e| format!("{name}: {e}"))?;
                let data = std::fs::read(src).map_err(|e| format!("{}: {e}", src.display()))?;
                f.write_all(&data).map_err(|e| format!("{name}: {e}"))?;
            }
        }
        fs.unmount().map_err(err)?;
    }
    let r = crate::disk::create(
        out,
        fat_size + 2 * MIB,
        &[crate::disk::PartSpec {
            label: "hv-boot".into(),
            bytes: fat_size,
            fill: Some(fat.clone()),
        }],
    );
    let _ = std::fs::remove_file(&fat);
    r.map(|_| ())
}

/// Where U-Boot finds the bundle.
pub enum Medium<'a> {
    /// A disk image ([`write_disk`]) on `virtio-blk`.
    Disk(&'a Path),
    /// The bundle's directory served by QEMU's user network TFTP server (`tftp=`, with
    /// `bootfile=boot.scr.uimg` in its DHCP offers) to a `virtio-net` NIC.
    Tftp(&'a Path),
}

/// The QEMU command line that boots the bundle on `medium` with Debian's U-Boot (`-bios`)
/// on the board's QEMU machine, where U-Boot's distro boot looks (`virtio0`, `dhcp`).
pub fn qemu_command(img: &Image, medium: Medium<'_>, smp: Option<u32>) -> Result<Command, String> {
    let uboot = ensure_uboot()?;
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
        .arg(uboot)
        .args(extra);
    match medium {
        Medium::Disk(disk) => c
            .arg("-drive")
            .arg(format!(
                "if=none,format=raw,file={},id=boot",
                disk.display()
            ))
            .args(["-device", "virtio-blk-pci,drive=boot"]),
        // `romfile=`: Debian's QEMU without the iPXE option ROMs needs none for U-Boot.
        Medium::Tftp(dir) => c
            .arg("-netdev")
            .arg(format!(
                "user,id=boot,tftp={},bootfile=boot.scr.uimg",
                dir.display()
            ))
            .args(["-device", "virtio-net-pci,netdev=boot,romfile="]),
    };
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn board() -> Board {
        let b = platform_dsl::load_file(workspace_root().join("boards.kdl")).unwrap();
        b.into_iter().find(|b| b.name == "qemu-virt").unwrap()
    }

    fn staged() -> Vec<(String, PathBuf, u64, u64)> {
        vec![
            ("vm0-kernel-a".into(), "a".into(), 0x4240_0000, 0x12345),
            ("vm1-kernel-b".into(), "b".into(), 0x4260_0000, 0x30_0000),
        ]
    }

    fn module(name: &str, size: u64, path: Option<&str>) -> ModuleFile {
        ModuleFile {
            name: name.into(),
            src: name.into(),
            size,
            compatible: if path.is_some() {
                "hv,vm-image"
            } else {
                "hv,vm-config"
            },
            path: path.map(str::to_owned),
        }
    }

    #[test]
    fn the_image_goes_to_its_load_address_and_modules_after_the_staging_area() {
        let b = board();
        let mods = [
            module("VMS.TOML", 0x68, None),
            module("IMAGES/g.bin", 0x20_0001, Some("IMAGES/g.bin")),
        ];
        let l = layout(
            &b,
            0x200_0000,
            0x4_0000,
            Path::new("hv.bin"),
            &staged(),
            &mods,
        )
        .unwrap();
        let at: Vec<(&str, u64)> = l.slots.iter().map(|s| (s.name.as_str(), s.addr)).collect();
        assert_eq!(
            at,
            [
                ("hv.bin", 0x4040_0000),
                ("vm0-kernel-a", 0x4240_0000),
                ("vm1-kernel-b", 0x4260_0000),
                // The staging area ends at 0x4290_0000: the next 2 MiB boundary.
                ("VMS.TOML", 0x42a0_0000),
                ("IMAGES/g.bin", 0x42c0_0000),
            ]
        );
        // g.bin is one byte over 2 MiB: the DTB slot starts 4 MiB after it.
        assert_eq!(l.dtb, 0x4300_0000);
        assert_eq!(l.slots[0].span, 0x200_0000);
    }

    #[test]
    fn firmware_memory_lays_out_above_its_base_and_no_base_means_no_bundle() {
        use platform_dsl::model::FromFirmware;
        let mut b = board();
        b.memory[0].size = 0;
        b.memory[0].from_firmware = FromFirmware::Size;
        let l = layout(
            &b,
            0x200_0000,
            0x4_0000,
            Path::new("hv.bin"),
            &staged(),
            &[],
        )
        .unwrap();
        assert_eq!(l.slots[0].addr, 0x4040_0000);
        let readme = readme(&b, &l);
        assert!(readme.contains("comes from the firmware"), "{readme}");
        // Below the known base is still outside RAM.
        let mut low = b.clone();
        low.hypervisor.load_address = Some(0x3fe0_0000);
        assert!(layout(&low, 0x200_0000, 0x4_0000, Path::new("hv.bin"), &[], &[]).is_err());
        // No base, no load address: no bundle, and the reason.
        b.memory[0].base = 0;
        b.memory[0].from_firmware = FromFirmware::BaseAndSize;
        b.hypervisor.load_address = None;
        let e = layout(&b, 0x200_0000, 0x4_0000, Path::new("hv.bin"), &[], &[]).unwrap_err();
        assert!(e.contains("no U-Boot bundle"), "{e}");
    }

    #[test]
    fn overlaps_misalignment_and_ram_are_refused() {
        let b = board();
        // image_size runs into the first staged image.
        let e = layout(
            &b,
            0x200_0001,
            0x4_0000,
            Path::new("hv.bin"),
            &staged(),
            &[],
        )
        .unwrap_err();
        assert!(
            e.contains("hv.bin") && e.contains("overlaps vm0-kernel-a"),
            "{e}"
        );
        // Two staged images on top of each other.
        let mut s = staged();
        s[1].2 = 0x4240_0000;
        let e = layout(&b, 0x200_0000, 0x4_0000, Path::new("hv.bin"), &s, &[]).unwrap_err();
        assert!(e.contains("overlaps"), "{e}");
        // Unaligned Image.
        let mut unaligned = b.clone();
        unaligned.hypervisor.load_address = Some(0x4040_1000);
        let e = layout(
            &unaligned,
            0x200_0000,
            0x4_0000,
            Path::new("hv.bin"),
            &[],
            &[],
        )
        .unwrap_err();
        assert!(e.contains("not 2 MiB aligned"), "{e}");
        // A module that runs past the end of RAM (2 GiB at 0x4000_0000).
        let big = [module("IMAGES/huge", 0x8000_0000, Some("IMAGES/huge"))];
        let e = layout(
            &b,
            0x200_0000,
            0x4_0000,
            Path::new("hv.bin"),
            &staged(),
            &big,
        )
        .unwrap_err();
        assert!(
            e.contains("IMAGES/huge") && e.contains("not inside one RAM region"),
            "{e}"
        );
        // A file larger than image_size.
        let e = layout(&b, 0x1000, 0x4_0000, Path::new("hv.bin"), &[], &[]).unwrap_err();
        assert!(e.contains("smaller than its file"), "{e}");
    }

    #[test]
    fn the_script_loads_every_file_at_its_address_and_boots_the_copied_tree() {
        let b = board();
        let mods = [
            module("VMS.TOML", 0x68, None),
            module("IMAGES/g.bin", 0x1000, Some("IMAGES/g.bin")),
        ];
        let l = layout(
            &b,
            0x200_0000,
            0x4_0000,
            Path::new("hv.bin"),
            &staged(),
            &mods,
        )
        .unwrap();
        let s = script("qemu-virt", &l);
        for (name, addr) in [
            ("hv.bin", "0x40400000"),
            ("vm0-kernel-a", "0x42400000"),
            ("vm1-kernel-b", "0x42600000"),
            ("VMS.TOML", "0x42a00000"),
            ("IMAGES/g.bin", "0x42c00000"),
        ] {
            let want = format!("if ${{hv_get}} {addr} ${{prefix}}{name}; then");
            assert!(s.contains(&want), "no `{want}` in\n{s}");
        }
        assert!(
            s.contains(
                "if fdt addr ${fdtcontroladdr} && fdt move ${fdtcontroladdr} 0x42e00000 0x1f0000; then"
            ),
            "{s}"
        );
        assert!(s.contains("setenv fdt_high 0xffffffffffffffff\n"), "{s}");
        assert!(s.contains("fdt mknode /chosen module@42a00000"), "{s}");
        assert!(
            s.contains(
                "fdt set /chosen/module@42a00000 reg <0x0 0x42a00000 0x0 ${hv_size_42a00000}>"
            ),
            "{s}"
        );
        assert!(
            s.contains("fdt set /chosen/module@42a00000 compatible \"hv,vm-config\""),
            "{s}"
        );
        assert!(
            s.contains("fdt set /chosen/module@42c00000 hv,path \"IMAGES/g.bin\""),
            "{s}"
        );
        assert!(s.contains("setenv hv_size_42c00000 0x${filesize}"), "{s}");
        // `#` starts a comment in U-Boot's shell: the cell properties are quoted.
        assert!(s.contains("fdt set /chosen \"#address-cells\" <2>"), "{s}");
        assert!(
            s.trim_end().contains("\nbooti 0x40400000 - 0x42e00000\n"),
            "{s}"
        );
        // Without modules there are no module nodes, and the tree is still copied.
        let l = layout(
            &b,
            0x200_0000,
            0x4_0000,
            Path::new("hv.bin"),
            &staged(),
            &[],
        )
        .unwrap();
        let s = script("qemu-virt", &l);
        assert!(
            !s.contains("mknode") && !s.contains("#address-cells"),
            "{s}"
        );
        assert!(s.contains("booti 0x40400000 - 0x42a00000"), "{s}");
    }

    #[test]
    fn every_board_in_boards_kdl_has_a_bundle_layout() {
        let boards = platform_dsl::load_file(workspace_root().join("boards.kdl")).unwrap();
        assert!(boards.len() >= 10);
        for b in &boards {
            let size = b.hypervisor.size;
            let mods = [module("VMS.TOML", 0x100, None)];
            let l = layout(b, size, 0x4_0000, Path::new("hv.bin"), &[], &mods)
                .unwrap_or_else(|e| panic!("board {}: {e}", b.name));
            assert_eq!(
                Some(l.slots[0].addr),
                b.hypervisor.load_address,
                "{}",
                b.name
            );
        }
    }

    #[test]
    fn the_readme_names_every_file_and_its_address() {
        let b = board();
        let l = layout(
            &b,
            0x200_0000,
            0x4_0000,
            Path::new("hv.bin"),
            &staged(),
            &[],
        )
        .unwrap();
        let r = readme(&b, &l);
        assert!(r.contains("0x0000000040400000"), "{r}");
        assert!(r.contains("vm1-kernel-b"), "{r}");
        assert!(r.contains("0x0000000042a00000     2097152"), "{r}");
    }
}
