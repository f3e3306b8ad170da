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
//! cargo xtask scenario [NAME] [--list]     the QEMU scenarios whose name contains NAME
//! cargo xtask completions bash|zsh|fish    a shell completion script
//! ```
//!
//! `cargo xtask help` and `cargo xtask SUBCOMMAND --help` list every command and option (clap).
//! Inputs are checked ([`check`]) before anything is built, installed or downloaded.

mod bench;
mod boards;
mod bootdt;
mod browser;
mod build;
mod check;
mod datastore;
mod disk;
mod dtb;
mod fuzz;
mod guest;
mod https;
mod qemu;
mod qmp;
mod test;
mod uboot;
mod uefi;

use clap::{Args, CommandFactory, Parser, Subcommand};
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

/// `cargo xtask`: build hypervisor images, run them under QEMU, test and benchmark.
#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    version,
    about = "Build hypervisor images for a board, run them under QEMU, test and benchmark",
    propagate_version = true,
    arg_required_else_help = true,
    after_help = "Docs: README.md, docs/boards-kdl.md (boards), docs/uefi.md (esp), \
                  docs/management.md (datastore), docs/performance.md (bench)"
)]
pub struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

/// Board and VM file of `build` and `run`.
#[derive(Clone, Debug, Args)]
pub struct TargetArgs {
    #[command(flatten)]
    board: BoardArgs,
    /// VM TOML file [default: examples/vms/test-guest.toml]
    #[arg(long = "vm", visible_alias = "vms", value_name = "FILE.toml")]
    vm: Option<PathBuf>,
}

/// Which board, from which KDL file.
#[derive(Clone, Debug, Args)]
pub struct BoardArgs {
    /// Board name (`cargo xtask boards` lists them)
    #[arg(long, value_name = "NAME", default_value = "qemu-virt")]
    board: String,
    /// Board KDL file [default: boards.kdl]
    #[arg(long, value_name = "FILE.kdl")]
    board_file: Option<PathBuf>,
    /// Build a board whose support level is experimental
    #[arg(long)]
    allow_experimental: bool,
}

impl TargetArgs {
    fn target(&self) -> Target {
        let mut t = self.board.target();
        if let Some(v) = &self.vm {
            t.vms = abs(v);
        }
        t
    }
}

impl BoardArgs {
    fn target(&self) -> Target {
        let mut t = Target::defaults();
        t.board.clone_from(&self.board);
        if let Some(f) = &self.board_file {
            t.board_file = abs(f);
        }
        t.allow_experimental = self.allow_experimental;
        t
    }
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// List the boards in boards.kdl, or validate board KDL files
    Boards {
        #[command(subcommand)]
        action: Option<BoardsCmd>,
    },
    /// Build the hypervisor image for a board (prints the ELF and Image paths, writes the U-Boot bundle target/bundle/NAME/)
    Build {
        #[command(flatten)]
        target: TargetArgs,
        /// Build the hypervisor as a UEFI application (target/images/hypervisor-NAME.efi)
        #[arg(long)]
        uefi: bool,
        /// Extra cargo features of the `image` crate, comma-separated
        #[arg(long, value_name = "A,B", default_value = "")]
        features: String,
        /// VMs for the U-Boot bundle as boot modules (a VM file; docs/hardware.md)
        #[arg(long, value_name = "F.toml")]
        boot_vms: Option<PathBuf>,
    },
    /// A FAT ESP image: the .efi as EFI/BOOT/BOOTAA64.EFI, HV/VMS.TOML and its images (docs/uefi.md)
    Esp(uefi::EspArgs),
    /// Build the image and boot it under QEMU (interactive console)
    Run {
        #[command(flatten)]
        target: TargetArgs,
        /// Stop QEMU after this many seconds
        #[arg(long, value_name = "SECS")]
        timeout: Option<u64>,
    },
    /// Format and lint, host tests, every board built, every QEMU scenario (about 25 min)
    Test,
    /// Run only the QEMU scenarios whose name contains NAME (all without NAME)
    Scenario {
        /// Part of a scenario name (`--list` shows them)
        #[arg(value_name = "NAME")]
        filter: Option<String>,
        /// List the matching scenarios' names instead of running them
        #[arg(long)]
        list: bool,
    },
    /// Drive a test page in headless Chromium over WebDriver
    BrowserSelftest,
    /// Debian guest kernels, initramfs and root file systems (target/guest-cache)
    Guest {
        #[command(subcommand)]
        cmd: guest::Cmd,
    },
    /// Raw disk images with a GPT
    Disk {
        #[command(subcommand)]
        cmd: disk::Cmd,
    },
    /// A disk image with the hv-datastore FAT partition (docs/management.md)
    Datastore {
        #[command(subcommand)]
        cmd: datastore::Cmd,
    },
    /// cargo-fuzz targets (KDL front end, trap decoder, vGIC/UART MMIO, NVMe/AHCI commands, PCI config, virtqueues, ...)
    Fuzz(fuzz::FuzzArgs),
    /// Guest cost of the hypervisor under -icount (docs/performance.md)
    Bench(bench::BenchArgs),
    /// A KDL board description from a device tree
    ///
    /// Every fact carries a comment citing the DT node or value it came from. RAM the
    /// firmware fills in at boot (a memory node of size 0, or none) becomes
    /// `memory ... from="firmware"`; device windows are the DT's exact `reg`s (no page
    /// alignment needed); a bus node whose window holds its children's is left out for them.
    /// `--all` imports every DTB of Debian's kernel package and validates each, as
    /// `cargo xtask test` does.
    ImportDtb(dtb::ImportArgs),
    /// Compare boards.kdl with upstream device trees
    BoardDiff(dtb::DiffArgs),
    /// Print a shell completion script (e.g. `cargo xtask completions bash > ~/.local/share/bash-completion/completions/cargo-xtask`)
    Completions {
        /// The shell
        shell: clap_complete::Shell,
    },
}

/// The completion script for `shell`. Cargo's own bash completion forwards `cargo xtask ...`
/// to the completion of a command named `cargo-xtask`, so that is the name completed.
/// clap_complete's bash script is broken for a name with a hyphen (its state labels and its
/// dispatch spell the name differently: clap-rs/clap#6421, open in 4.6), so bash's script is
/// made for `cargo_xtask` and registered for `cargo-xtask`.
fn completions(shell: clap_complete::Shell, out: &mut dyn std::io::Write) {
    use clap_complete::Shell;
    let name = match shell {
        Shell::Bash => "cargo_xtask",
        _ => "cargo-xtask",
    };
    let mut cmd = Cli::command().name(name).bin_name(name);
    if shell != Shell::Bash {
        clap_complete::generate(shell, &mut cmd, name, out);
        return;
    }
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, name, &mut script);
    let script = String::from_utf8_lossy(&script);
    for line in script.lines() {
        // `complete -F _cargo_xtask ... cargo_xtask`: the function stays, the command is ours.
        let line = match line.trim_start().starts_with("complete -F") {
            true => line.replace(" cargo_xtask", " cargo-xtask"),
            false => line.to_string(),
        };
        let _ = writeln!(out, "{line}");
    }
}

#[derive(Debug, Subcommand)]
enum BoardsCmd {
    /// Validate board KDL files (non-zero exit on error)
    Check {
        /// KDL files
        #[arg(required = true, value_name = "FILE.kdl")]
        files: Vec<PathBuf>,
    },
    /// Write the support matrix docs/boards.md from boards.kdl (generated, never edited)
    Docs {
        /// Only check that docs/boards.md is current (non-zero exit when stale)
        #[arg(long)]
        check: bool,
    },
}

/// `p` made absolute against the current directory (cargo runs xtask from the workspace
/// root's point of view only for its own paths; the user's paths are relative to where
/// they typed the command).
pub fn abs(p: impl AsRef<std::path::Path>) -> PathBuf {
    let p = p.as_ref();
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(p))
            .unwrap_or_else(|_| p.to_path_buf())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli.cmd) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(cmd: Cmd) -> Result<(), String> {
    match cmd {
        Cmd::Boards { action } => boards_cmd(action),
        Cmd::Build {
            target,
            uefi,
            features,
            boot_vms,
        } => {
            let features: Vec<&str> = features.split(',').filter(|f| !f.is_empty()).collect();
            let boot_vms = boot_vms.map(abs);
            if uefi && boot_vms.is_some() {
                return Err(
                    "--boot-vms is for the U-Boot bundle, not --uefi (use `cargo xtask esp --vm`)"
                        .into(),
                );
            }
            if uefi {
                let t = uefi::uefi_target(target.target(), target.vm.is_some());
                check::target(&t)?;
                let (_, efi) = uefi::build_efi(&t, &features)?;
                println!("{}", efi.display());
                return Ok(());
            }
            let t = target.target();
            check::target(&t)?;
            let img = build::image_with_features(&t, &features)?;
            println!("{}", img.elf.display());
            println!("{}", img.bin.display());
            // The U-Boot boot bundle (docs/hardware.md); none for a board that cannot know
            // where its RAM is before boot (said, not an error: the Image is built).
            if img.board.hypervisor.load_address.is_none() {
                if boot_vms.is_some() {
                    return Err(format!(
                        "--boot-vms: {}",
                        uboot::no_load_address(&img.board)
                    ));
                }
                eprintln!("{}", uboot::no_load_address(&img.board));
                return Ok(());
            }
            let bundle = uboot::write_bundle(&img, boot_vms.as_deref())?;
            eprint!("{}", uboot::readme(&img.board, &bundle.layout));
            println!("{}/", bundle.dir.display());
            Ok(())
        }
        Cmd::Esp(args) => uefi::esp_cmd(args),
        Cmd::Run { target, timeout } => {
            let vm_given = target.vm.is_some();
            let mut t = target.target();
            // Without `--vm`, the board's own test-guest VM file (on QEMU's xlnx-zcu102, the
            // one that says the PMU interrupt is not wired), as its scenario uses.
            if !vm_given {
                t.vms = build::workspace_root().join(test::test_guest_for(&t.board).0);
            }
            check::target(&t)?;
            qemu::run_interactive(&t, timeout)
        }
        Cmd::Test => test::all(),
        Cmd::Scenario { filter, list } => {
            let filter = filter.unwrap_or_default();
            if list {
                test::list_scenarios(&filter)
            } else {
                test::scenarios_matching(&filter)
            }
        }
        Cmd::BrowserSelftest => browser::selftest(),
        Cmd::Guest { cmd } => guest::cmd(cmd),
        Cmd::Disk { cmd } => disk::cmd(cmd),
        Cmd::Datastore { cmd } => datastore::cmd(cmd),
        Cmd::Fuzz(args) => fuzz::cmd(args),
        Cmd::Bench(args) => bench::cmd(args),
        Cmd::ImportDtb(args) => dtb::import_cmd(args),
        Cmd::BoardDiff(args) => dtb::diff_cmd(args),
        Cmd::Completions { shell } => {
            completions(shell, &mut std::io::stdout());
            Ok(())
        }
    }
}

fn boards_cmd(action: Option<BoardsCmd>) -> Result<(), String> {
    match action {
        Some(BoardsCmd::Check { files }) => {
            let files: Vec<PathBuf> = files.iter().map(abs).collect();
            boards::check(&files).map_err(|e| e.to_string())
        }
        Some(BoardsCmd::Docs { check }) => boards::docs(check),
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every spelling README.md, docs/ and CI use (and the old parser took) still parses.
    #[test]
    fn the_documented_spellings_parse() {
        let spellings = [
            "boards",
            "boards check a.kdl b.kdl",
            "build",
            "build --board NAME",
            "build --board qemu-virt --uefi",
            "boards docs",
            "boards docs --check",
            "build --boot-vms examples/vms/boot-module-test-guest.toml",
            "build --vm examples/vms/none.toml",
            "build --vms examples/vms/none.toml",
            "build --features evaluation",
            "build --board-file examples/boards/zcu102-uart1.kdl --board x --allow-experimental",
            "esp --board qemu-virt --vm my-vms.toml -o esp.img",
            "esp --board qemu-virt --vms my-vms.toml --out esp.img --size 256M --efi F.efi",
            "run",
            "run --board qemu-virt-2s",
            "run --vm examples/vms/linux.toml --timeout 30",
            "test",
            "scenario",
            "scenario numa-two-sockets",
            "scenario --list",
            "scenario net --list",
            "browser-selftest",
            "bench",
            "bench --smoke",
            "bench --storage",
            "bench --storage --smoke",
            "bench --net",
            "bench --net --row usb-net --row e1000e --smoke",
            "guest fetch",
            "guest kernel 6.1",
            "guest initramfs SCRIPT OUT --kernel 6.1 --modules virtio_blk,virtio_pci",
            "guest initramfs SCRIPT OUT.cpio.gz",
            "guest rootfs SCRIPT OUT.ext4 --size 48 --kernel 6.12 --modules ahci",
            "guest modules 6.12 ahci sd_mod",
            "guest net",
            "guest net generic",
            "guest selftest-storage",
            "guest selftest-storage --break order",
            "disk create disk.img 64M linux-root:48M:root.ext4 spare:8M",
            "disk list IMG",
            "datastore create store.img 512M --password-file pw.txt --vm a.toml,b.toml \
             --vm c.toml --image a=IMAGES/a --host-config h.toml --san x --extra-partition l:8M",
            "fuzz",
            "fuzz --minutes 10",
            "fuzz --minutes 2 vgic_mmio trap_decoder",
            "fuzz --smoke",
            "import-dtb FILE.dtb --name NAME",
            "import-dtb marvell/armada-8040-mcbin.dtb --name x --out x.kdl --memory 0x0,0x8000_0000",
            "board-diff NAME FILE.dtb",
            "board-diff --all",
            "completions bash",
            "completions zsh",
            "completions fish",
        ];
        for s in spellings {
            let args = std::iter::once("xtask").chain(s.split_whitespace());
            if let Err(e) = Cli::try_parse_from(args) {
                panic!("`cargo xtask {s}` no longer parses:\n{e}");
            }
        }
    }

    /// Wrong input is refused by the parser, with the reason.
    #[test]
    fn bad_spellings_are_refused() {
        for (s, why) in [
            ("bench --row usb-net", "--net"),
            ("bench --net --row nosuch", "nosuch"),
            ("fuzz nosuch", "nosuch"),
            ("board-diff", "required"),
            ("board-diff NAME", "FILE.dtb"),
            ("boards check", "FILE.kdl"),
            ("esp --board qemu-virt", "--vm"),
            ("run --timeout soon", "soon"),
            ("guest net fancy", "fancy"),
            ("build --bord x", "--board"),
        ] {
            let args = std::iter::once("xtask").chain(s.split_whitespace());
            match Cli::try_parse_from(args) {
                Ok(_) => panic!("`cargo xtask {s}` parsed"),
                Err(e) => assert!(e.to_string().contains(why), "`{s}`: {e}"),
            }
        }
    }

    #[test]
    fn the_command_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
