//! `cargo xtask`: build images, run them in QEMU, test and benchmark.
//!
//! ```text
//! cargo xtask boards                       table of the boards in boards.kdl
//! cargo xtask boards check FILE...         validate KDL files (non-zero exit on error)
//! cargo xtask build [--board NAME] [--board-file F] [--vm F.toml] [--allow-experimental]
//! cargo xtask build --board NAME --uefi       the hypervisor as a UEFI application
//! cargo xtask esp --board NAME --vm F.toml -o esp.img   a FAT ESP image for it
//! cargo xtask run   [--board NAME] [--board-file F] [--vm F.toml] [--timeout SECS]
//! cargo xtask test                         host tests, every board, every QEMU scenario
//! ```

mod bench;
mod boards;
mod bootdt;
mod browser;
mod build;
mod datastore;
mod disk;
mod dtb;
mod fuzz;
mod guest;
mod https;
mod qemu;
mod qmp;
mod test;
mod uefi;

use std::path::PathBuf;
use std::process::ExitCode;

/// Options shared by `build` and `run`.
#[derive(Clone, Debug)]
pub struct Target {
    /// Board name.
    pub board: String,
    /// Board KDL file.
    pub board_file: PathBuf,
    /// VM TOML file.
    pub vms: PathBuf,
    /// Build experimental boards.
    pub allow_experimental: bool,
}

impl Target {
    fn defaults() -> Self {
        let root = build::workspace_root();
        Self {
            board: "qemu-virt".into(),
            board_file: root.join("boards.kdl"),
            vms: root.join("examples/vms/test-guest.toml"),
            allow_experimental: false,
        }
    }
}

fn parse_target(args: &mut Vec<String>) -> Result<Target, String> {
    let mut t = Target::defaults();
    let mut rest = Vec::new();
    let mut it = std::mem::take(args).into_iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match a.as_str() {
            "--board" => t.board = value("--board")?,
            "--board-file" => t.board_file = abs(value("--board-file")?),
            "--vm" | "--vms" => t.vms = abs(value("--vm")?),
            "--allow-experimental" => t.allow_experimental = true,
            _ => rest.push(a),
        }
    }
    *args = rest;
    Ok(t)
}

fn abs(p: String) -> PathBuf {
    let p = PathBuf::from(p);
    if p.is_absolute() {
        p
    } else {
        std::env::current_dir().map(|d| d.join(&p)).unwrap_or(p)
    }
}

fn usage() -> ExitCode {
    eprintln!(
        "usage: cargo xtask <command>\n\n\
         commands:\n  \
         boards                      list the boards in boards.kdl\n  \
         boards check FILE...        validate board KDL files\n  \
         build [opts]                build the hypervisor image for a board\n  \
         build [opts] --uefi         the hypervisor as a UEFI application (hypervisor-NAME.efi)\n  \
         esp [opts] --vm F.toml -o OUT.img [--size S]  a FAT ESP image: the .efi as\n  \
                                     EFI/BOOT/BOOTAA64.EFI, HV/VMS.TOML and its images (docs/uefi.md)\n  \
         run [opts] [--timeout S]    build and boot it under QEMU (interactive console)\n  \
         test                        host tests, every board, every QEMU scenario\n  \
         scenario [NAME]             only the QEMU scenarios whose name contains NAME\n  \
         browser-selftest            drive a test page in headless Chromium over WebDriver\n  \
         guest fetch                 Debian kernels + busybox initramfs into target/guest-cache\n  \
         disk create OUT SIZE L:SIZE[:FILE]...  a raw disk image with a GPT (disk list IMG)\n  \
         datastore create OUT SIZE --password-file F [--vm F.toml]... [--image SRC=DEST]...\n  \
                                     [--host-config F] [--san NAME]... [--extra-partition L:SIZE[:FILE]]...\n  \
                                     a disk image with the hv-datastore FAT partition (docs/management.md)\n  \
         fuzz --minutes N | --smoke  cargo-fuzz targets (KDL front end, trap decoder, vGIC/UART MMIO, NVMe/AHCI commands, PCI config, virtqueues)\n  \
         bench [--smoke] [--storage] guest cost of the hypervisor under -icount (docs/performance.md;\n  \
                                     --storage: only the storage rows)\n  \
         import-dtb F.dtb --name N   a KDL board description from a device tree\n  \
         board-diff NAME F.dtb|--all compare boards.kdl with upstream device trees\n\n\
         opts: --board NAME (default qemu-virt), --board-file FILE.kdl,\n      \
         --vm FILE.toml (default examples/vms/test-guest.toml), --allow-experimental"
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() {
        return usage();
    }
    let cmd = args.remove(0);
    let result = match cmd.as_str() {
        "boards" => boards_cmd(args),
        "build" => {
            let uefi = take_flag(&mut args, "--uefi");
            let vms_given = args.iter().any(|a| a == "--vm" || a == "--vms");
            parse_target(&mut args).and_then(|t| {
                let features = take_opt(&mut args, "--features")?.unwrap_or_default();
                reject_extra(&args)?;
                let features: Vec<&str> = features.split(',').filter(|f| !f.is_empty()).collect();
                if uefi {
                    let (_, efi) = uefi::build_efi(&uefi::uefi_target(t, vms_given), &features)?;
                    println!("{}", efi.display());
                    return Ok(());
                }
                build::image_with_features(&t, &features).map(|img| {
                    println!("{}", img.elf.display());
                    println!("{}", img.bin.display());
                })
            })
        }
        "esp" => uefi::esp_cmd(args),
        "run" => {
            let vm_given = args.iter().any(|a| a == "--vm" || a == "--vms");
            parse_target(&mut args).and_then(|mut t| {
                // Without `--vm`, the board's own test-guest VM file (on QEMU's xlnx-zcu102,
                // the one that says the PMU interrupt is not wired), as its scenario uses.
                if !vm_given {
                    t.vms = build::workspace_root().join(test::test_guest_for(&t.board).0);
                }
                let timeout = take_opt(&mut args, "--timeout")?
                    .map(|s| s.parse::<u64>().map_err(|e| format!("--timeout: {e}")))
                    .transpose()?;
                reject_extra(&args)?;
                qemu::run_interactive(&t, timeout)
            })
        }
        "bench" => bench::cmd(args),
        "guest" => guest::cmd(args),
        "disk" => disk::cmd(args),
        "datastore" => datastore::cmd(args),
        "fuzz" => fuzz::cmd(args),
        "import-dtb" => dtb::import_cmd(args),
        "board-diff" => dtb::diff_cmd(args),
        "test" => reject_extra(&args).and_then(|_| test::all()),
        "browser-selftest" => reject_extra(&args).and_then(|_| browser::selftest()),
        "scenario" => test::scenarios_matching(args.first().map(String::as_str).unwrap_or("")),
        "-h" | "--help" | "help" => return usage(),
        other => Err(format!("unknown command `{other}`; run `cargo xtask help`")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn take_opt(args: &mut Vec<String>, name: &str) -> Result<Option<String>, String> {
    if let Some(i) = args.iter().position(|a| a == name) {
        if i + 1 >= args.len() {
            return Err(format!("{name} needs a value"));
        }
        let v = args.remove(i + 1);
        args.remove(i);
        return Ok(Some(v));
    }
    Ok(None)
}

fn take_flag(args: &mut Vec<String>, name: &str) -> bool {
    let before = args.len();
    args.retain(|a| a != name);
    args.len() != before
}

fn reject_extra(args: &[String]) -> Result<(), String> {
    match args.first() {
        Some(a) => Err(format!("unexpected argument `{a}`; run `cargo xtask help`")),
        None => Ok(()),
    }
}

fn boards_cmd(args: Vec<String>) -> Result<(), String> {
    match args.first().map(String::as_str) {
        Some("check") => {
            let files: Vec<PathBuf> = args[1..].iter().cloned().map(abs).collect();
            if files.is_empty() {
                return Err("boards check needs at least one KDL file".into());
            }
            boards::check(&files).map_err(|e| e.to_string())
        }
        None => {
            let file = build::workspace_root().join("boards.kdl");
            let boards = platform_dsl::load_file(&file).map_err(|e| e.to_string())?;
            print!("{}", boards::table(&boards));
            let unproven: Vec<String> = boards
                .iter()
                .filter_map(|b| boards::unproven_support(b, &file))
                .collect();
            if unproven.is_empty() {
                Ok(())
            } else {
                Err(unproven.join("\n"))
            }
        }
        Some(other) => Err(format!(
            "unknown `boards` subcommand `{other}`; use `boards` or `boards check FILE...`"
        )),
    }
}
