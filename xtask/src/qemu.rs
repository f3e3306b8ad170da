//! QEMU: installing it, the command line for a board, interactive runs and scripted scenarios.

use crate::build::{self, Image};
use crate::Target;
use platform_dsl::model::Verification;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const QEMU: &str = "qemu-system-aarch64";

/// Installs QEMU from Debian's packages if it is missing.
pub fn ensure_qemu() -> Result<(), String> {
    if Command::new(QEMU)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        return Ok(());
    }
    eprintln!("xtask: {QEMU} not found; installing Debian's qemu-system-arm");
    apt_install("qemu-system-arm").map_err(|e| format!("{e}\n{QEMU} is missing and could not be installed; install Debian's `qemu-system-arm` package (as root: apt-get install qemu-system-arm)"))
}

/// `apt-get update` and `apt-get install` of one Debian package, without questions or
/// recommended packages (QEMU, EDK2).
pub fn apt_install(package: &str) -> Result<(), String> {
    let apt = |args: &[&str]| {
        build::run(
            Command::new("apt-get")
                .args(args)
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )
    };
    apt(&["update", "-q"])
        .and_then(|_| apt(&["install", "-y", "-q", "--no-install-recommends", package]))
}

/// The QEMU command line that boots `img` on its board's verified machine: its ELF, or,
/// for a board whose KDL memory comes from the firmware (`from="firmware"`), the flat Image,
/// which QEMU starts with its device tree in x0 (started as an ELF, with no device tree,
/// such a board has no RAM and stops).
pub fn command(img: &Image, extra_smp: Option<u32>) -> Result<Command, String> {
    let firmware_ram = img.board.memory.iter().any(|m| m.known_size().is_none());
    let kernel = if firmware_ram { &img.bin } else { &img.elf };
    command_with_kernel(img, extra_smp, kernel)
}

/// [`command`] with `kernel` as QEMU's `-kernel`: the ELF (started at its entry point at
/// its link address, x0 = 0) or the flat Image `img.bin` (placed by QEMU per its header,
/// RAM base + 2 MiB for `text_offset` 0, and entered with x0 = the DTB QEMU generated).
pub fn command_with_kernel(
    img: &Image,
    extra_smp: Option<u32>,
    kernel: &std::path::Path,
) -> Result<Command, String> {
    command_with_boot(img, extra_smp, &["-kernel".into(), kernel.into()])
}

/// [`command`] booting through an EL3 firmware of our own: `firmware` as `-bios` (QEMU
/// virt's flash at 0x0, entered on every CPU at EL3 when the machine says `secure=on`) and
/// the flat Image placed at its link address (the KDL's `hypervisor load=`) by
/// `-device loader`, which the firmware enters at EL2 (`examples/spin-stub`).
pub fn command_with_firmware(
    img: &Image,
    extra_smp: Option<u32>,
    firmware: &std::path::Path,
) -> Result<Command, String> {
    let load = img.board.hypervisor.load_address.ok_or_else(|| {
        format!(
            "board `{}` writes no `hypervisor load=`: nowhere to place the Image for the firmware",
            img.board.name
        )
    })?;
    let loader = format!(
        "loader,file={},addr={load:#x},force-raw=on",
        img.bin.display(),
    );
    command_with_boot(
        img,
        extra_smp,
        &[
            "-bios".into(),
            firmware.into(),
            "-device".into(),
            loader.into(),
        ],
    )
}

fn command_with_boot(
    img: &Image,
    extra_smp: Option<u32>,
    boot: &[std::ffi::OsString],
) -> Result<Command, String> {
    let Verification::Qemu {
        machine,
        cpu,
        smp,
        memory_mib,
        extra,
    } = &img.board.verified_by
    else {
        return Err(format!(
            "board `{}` has no QEMU machine line (`verified-by \"qemu\" ...` in its KDL), so it cannot be run here",
            img.board.name
        ));
    };
    let mut c = Command::new(QEMU);
    c.args(["-M", machine, "-cpu", cpu, "-m", &memory_mib.to_string()]);
    match extra_smp.filter(|n| *n != *smp) {
        // Another CPU count than the board's: no sockets or nodes to match.
        Some(n) => c.args(["-smp", &n.to_string()]),
        None => c.args(["-smp", &smp_arg(&img.board, *smp)]),
    };
    if extra_smp.is_none_or(|n| n == *smp) {
        c.args(numa_args(
            &img.board,
            *memory_mib,
            &numa_ram_dir(&img.board.name),
        )?);
    }
    c.args(["-nographic", "-no-reboot", "-net", "none"])
        .args(boot)
        .args(extra)
        .args(img.plan.qemu_loader_args());
    Ok(c)
}

/// `-smp`: the CPU count, and on a multi-socket board its sockets, clusters and cores
/// (`4,sockets=2,cores=2`), so that the guest-visible topology is the board's.
fn smp_arg(board: &platform_dsl::model::Board, smp: u32) -> String {
    let t = &board.topology;
    if t.sockets <= 1 {
        return smp.to_string();
    }
    let clusters = match t.clusters_per_socket {
        1 => String::new(),
        c => format!(",clusters={c}"),
    };
    format!(
        "{smp},sockets={}{clusters},cores={}",
        t.sockets, t.cores_per_cluster
    )
}

/// Where a run of `board` keeps its NUMA nodes' RAM files (`node0.ram`, ...): a directory
/// of its own under the system's temporary directory, per xtask process.
pub fn numa_ram_dir(board: &str) -> PathBuf {
    std::env::temp_dir().join(format!("hv-numa-{board}-{}", std::process::id()))
}

/// The RAM file of NUMA node `node` in `dir` (see [`numa_args`]).
pub fn numa_ram_file(dir: &std::path::Path, node: u32) -> PathBuf {
    dir.join(format!("node{node}.ram"))
}

/// On a board with more than one NUMA node: one `memory-backend-file` per node (a fresh
/// file in `dir`, `share=on` so that the host sees what the guests write), `-numa node`
/// with the node's memory and its CPUs, and `-numa dist` for every pair of nodes. QEMU
/// lays the nodes' memory out one after the other from the machine's RAM base, node 0
/// first, so the board's regions must be that: sorted by base, contiguous, in node order.
/// Nothing on a board with one node.
pub fn numa_args(
    board: &platform_dsl::model::Board,
    memory_mib: u64,
    dir: &std::path::Path,
) -> Result<Vec<String>, String> {
    let nodes = board.numa_nodes.len() as u32;
    if nodes <= 1 {
        return Ok(Vec::new());
    }
    let bad = |why: String| {
        format!(
            "board `{}`: {why}; QEMU puts node 0's memory first, then node 1's, ... from the first region's base",
            board.name
        )
    };
    if let Some(m) = board.memory.iter().find(|m| m.known_size().is_none()) {
        return Err(bad(format!(
            "memory \"{}\" comes from the firmware, but QEMU's -numa needs each node's size",
            m.name
        )));
    }
    let mut sizes = vec![0u64; nodes as usize];
    let mut expect_base = board.memory.first().map(|m| m.base).unwrap_or(0);
    let mut last_node = 0;
    for m in &board.memory {
        if m.base != expect_base || m.numa_node < last_node {
            return Err(bad(format!(
                "memory \"{}\" (node {}) at {:#x} does not follow the previous region",
                m.name, m.numa_node, m.base
            )));
        }
        let size = sizes
            .get_mut(m.numa_node as usize)
            .ok_or_else(|| bad(format!("memory \"{}\" has no node", m.name)))?;
        *size += m.size;
        expect_base = m.base + m.size;
        last_node = m.numa_node;
    }
    let total: u64 = sizes.iter().sum();
    if total != memory_mib << 20 {
        return Err(bad(format!(
            "its memory regions add up to {} MiB, its `verified-by` line says memory-mib={memory_mib}",
            total >> 20
        )));
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let mut args = Vec::new();
    for (node, size) in sizes.iter().enumerate() {
        let node = node as u32;
        let file = numa_ram_file(dir, node);
        // A file left from an earlier run would hand its bytes to this one's guests.
        match std::fs::remove_file(&file) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(format!("cannot remove {}: {e}", file.display()))
            }
            _ => {}
        }
        let socket = board
            .numa_nodes
            .iter()
            .find(|n| n.id == node)
            .map(|n| n.socket);
        let cpus: Vec<String> = board
            .cpus
            .iter()
            .enumerate()
            .filter(|(_, c)| Some(c.socket) == socket)
            .map(|(i, _)| format!("cpus={i}"))
            .collect();
        if cpus.is_empty() {
            return Err(bad(format!("NUMA node {node} has no CPU")));
        }
        args.push("-object".to_owned());
        args.push(format!(
            "memory-backend-file,id=ram-node{node},size={}M,mem-path={},share=on",
            size >> 20,
            file.display()
        ));
        args.push("-numa".to_owned());
        args.push(format!(
            "node,nodeid={node},{},memdev=ram-node{node}",
            cpus.join(",")
        ));
    }
    for (src, row) in board.numa_distances.iter().enumerate() {
        for (dst, d) in row.iter().enumerate() {
            if src != dst {
                args.push("-numa".to_owned());
                args.push(format!("dist,src={src},dst={dst},val={d}"));
            }
        }
    }
    Ok(args)
}

/// `cargo xtask run`: build, then boot with the console on this terminal.
pub fn run_interactive(t: &Target, timeout: Option<u64>) -> Result<(), String> {
    ensure_qemu()?;
    let img = build::image(t)?;
    let mut cmd = command(&img, None)?;
    eprintln!("xtask: {cmd:?}");
    let key = platform_dsl::vmconfig::VmConfig::load(&t.vms)
        .ok()
        .and_then(|c| c.console_escape)
        .unwrap_or(vm_config::DEFAULT_ESCAPE);
    eprintln!(
        "xtask: console input goes to VM 0; {} then a digit switches VM; Ctrl-A x quits QEMU",
        vm_config::escape_key_name(key)
    );
    // The console passes through to the terminal; a copy is scanned so that a run in
    // which the hypervisor refused a VM or stopped ends with a failure status, not 0.
    cmd.stdout(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {QEMU}: {e}"))?;
    let console = child.stdout.take().map(|out| {
        std::thread::spawn(move || {
            let mut failures = ConsoleFailures::default();
            let mut out = out;
            let mut buf = [0u8; 4096];
            let mut term = std::io::stdout();
            loop {
                match out.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let _ = term.write_all(&buf[..n]);
                        let _ = term.flush();
                        failures.feed(&buf[..n]);
                    }
                }
            }
            failures.lines
        })
    });
    let status = match timeout {
        None => child.wait().map_err(|e| e.to_string())?,
        Some(secs) => {
            let deadline = Instant::now() + Duration::from_secs(secs);
            loop {
                if let Some(s) = child.try_wait().map_err(|e| e.to_string())? {
                    break s;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!("QEMU did not exit within {secs} s; killed"));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    };
    let _ = std::fs::remove_dir_all(numa_ram_dir(&img.board.name));
    let failures = console.and_then(|t| t.join().ok()).unwrap_or_default();
    if !status.success() {
        Err(format!("QEMU exited with {status}"))
    } else if !failures.is_empty() {
        Err(format!(
            "QEMU exited normally, but the hypervisor reported:\n  {}",
            failures.join("\n  ")
        ))
    } else {
        Ok(())
    }
}

/// The console lines of an interactive run that make it a failure: a VM the hypervisor
/// could not create, a fatal stop, a panic.
#[derive(Default)]
struct ConsoleFailures {
    partial: Vec<u8>,
    lines: Vec<String>,
}

impl ConsoleFailures {
    const MARKS: [&'static str; 3] = [" not created: ", "[hv] FATAL", "PANIC on CPU"];

    fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if b == b'\n' {
                let line = String::from_utf8_lossy(&self.partial).trim_end().to_owned();
                if Self::MARKS.iter().any(|m| line.contains(m)) {
                    self.lines.push(line);
                }
                self.partial.clear();
            } else if self.partial.len() < 4096 {
                self.partial.push(b);
            }
        }
    }
}

/// A scripted QEMU run: lines that must appear (in order), lines that must not, input.
pub struct Scenario {
    /// Name (log file name).
    pub name: String,
    /// Board, VM file.
    pub target: Target,
    /// Override `-smp`.
    pub smp: Option<u32>,
    /// Substrings that must appear in this order.
    pub expect: Vec<String>,
    /// Substrings that must also appear, in any order, before the scenario ends.
    pub expect_unordered: Vec<String>,
    /// Substrings that must never appear.
    pub forbid: Vec<String>,
    /// Must QEMU exit by itself (status 0) after the last expected line?
    pub expect_exit: bool,
    /// Overall time limit.
    pub timeout: Duration,
    /// Input steps, in order: once every trigger of a step has appeared (in any order)
    /// since the previous step's bytes were typed, type its bytes.
    pub input: Vec<(Vec<String>, String)>,
    /// Build the out-of-tree example workspace (`examples/out-of-tree`) instead of the
    /// in-tree image; `target` then names its board file, board and VM file.
    pub out_of_tree: bool,
    /// Back the machine's RAM with a file full of [`POISON_PATTERN`] words instead of
    /// QEMU's zeroed RAM, so that a guest that sees a byte nobody zeroed can tell.
    pub poisoned_ram: bool,
    /// Lines that must repeat with the same figures: see [`Steady`].
    pub steady: Option<Steady>,
    /// The machine gets a disk (NVMe, AHCI...) and the image extra cargo features: see
    /// [`HostDisk`].
    pub host_disk: Option<HostDisk>,
    /// Samples the machine's drive counters over QMP while the scenario runs.
    pub qmp: Option<QmpProbe>,
    /// The machine gets NICs on QEMU's user network: see [`HostNic`].
    pub host_nic: Option<HostNic>,
    /// Actions xtask takes on the running machine (an HTTP request through `hostfwd`, a
    /// QMP command), each once its triggers appeared: see [`LiveStep`].
    pub live: Vec<LiveStep>,
    /// Judges every console line (and every line a [`LiveStep`] returned) after the run,
    /// for what expected lines cannot say (two values printed by two VMs must be equal).
    pub check_lines: Option<LinesCheck>,
    /// More QEMU arguments, e.g. `-rtc base=2026-01-01T00:00:00` for the RTC's date.
    pub extra_args: Vec<String>,
    /// Boot the flat arm64 Image (`hypervisor-BOARD.bin`) as QEMU boots a Linux Image
    /// instead of the ELF: QEMU places it per its header and passes its DTB in x0.
    pub boot_image: bool,
    /// More QEMU arguments made once the image is built (files the machine loads, e.g. a
    /// device tree with boot modules, `crate::bootdt`).
    pub prepare: Option<Prepare>,
    /// Boot through UEFI instead of `-kernel`: see [`UefiBoot`].
    pub uefi: Option<UefiBoot>,
    /// Boot through U-Boot instead of `-kernel`: see [`UbootBoot`].
    pub uboot: Option<UbootBoot>,
    /// Boot through `examples/spin-stub` (`-bios`, EL3) with the flat Image placed at its
    /// link address: the stub starts the secondary CPUs by spin table
    /// ([`command_with_firmware`]).
    pub spin_stub: bool,
}

/// A scenario booted the way a U-Boot board boots: Debian's U-Boot for QEMU (`-bios`,
/// `u-boot-qemu`) finds the bundle `cargo xtask build` writes (`crate::uboot`) on a FAT
/// partition of a `virtio-blk` disk, runs its `boot.scr` by distro boot, and the script
/// loads every file at its address and starts the hypervisor with `booti`.
#[derive(Clone, Debug)]
pub struct UbootBoot {
    /// VMs the bundle passes as boot modules (`--boot-vms`).
    pub boot_vms: Option<PathBuf>,
    /// Serve the bundle over TFTP (QEMU's user network) instead of a disk.
    pub tftp: bool,
}

/// A scenario booted the way a UEFI server boots: EDK2 (`-bios`, Debian's
/// `qemu-efi-aarch64`) starts the hypervisor's `.efi` (built for the scenario's board and
/// VM file, usually without build-time VMs) from a FAT ESP image on a `virtio-blk` disk
/// that also holds `HV/VMS.TOML`, made from `vms`, and its images.
#[derive(Clone, Debug)]
pub struct UefiBoot {
    /// The VM file that becomes the ESP's `HV/VMS.TOML`.
    pub vms: PathBuf,
}

/// Makes a scenario's extra QEMU arguments once its image is built: see [`Scenario::prepare`].
pub type Prepare = fn(&Image) -> Result<Vec<String>, String>;

/// Judges a scenario's lines after the run: see [`Scenario::check_lines`].
pub type LinesCheck = fn(&[String]) -> Result<(), String>;

/// What a [`LiveStep`]'s action gets: the lines so far, the host port QEMU forwards to
/// the guest ([`HostNic::hostfwd_to`]) and the QMP connection (always open for a scenario
/// with live steps).
pub struct LiveCtx<'a> {
    /// Every line so far (console, and the lines earlier steps returned).
    pub lines: &'a [String],
    /// `127.0.0.1:PORT` on the host reaches [`HostNic::hostfwd_to`] in the guest.
    pub hostfwd_port: Option<u16>,
    /// The machine's QMP monitor.
    pub qmp: &'a mut crate::qmp::Qmp,
}

/// An action of a [`LiveStep`]: `Ok(line)` is logged and taken as a line of output (so
/// expected lines and input triggers can name it, e.g. `[xtask] usb NIC removed`); `Err`
/// fails the scenario at once.
pub type LiveAction = fn(&mut LiveCtx<'_>) -> Result<String, String>;

/// Once every one of `at` appeared (in any order) since the previous live step ran, run
/// `action`. Steps run in order, each once.
#[derive(Clone)]
pub struct LiveStep {
    /// Substrings that must all have appeared.
    pub at: Vec<String>,
    /// What to do then.
    pub action: LiveAction,
}

/// A scenario with NICs of the machine's own (a USB NIC on `qemu-xhci`, `e1000e`,
/// `virtio-net-pci`) on QEMU's user network `-netdev user,id=net0` (gateway and DHCP at
/// 10.0.2.2): the image is built with `features` too.
#[derive(Clone, Copy)]
pub struct HostNic {
    /// Cargo features of the `image` crate for this scenario's build.
    pub features: &'static [&'static str],
    /// `-device` values; the NIC names `netdev=net0`, e.g. `qemu-xhci,id=xhci` then
    /// `usb-net,bus=xhci.0,netdev=net0`.
    pub devices: &'static [&'static str],
    /// Extra `-netdev user` options, e.g. `,hostfwd=tcp:127.0.0.1:18080-10.0.2.15:80`.
    pub netdev_options: &'static str,
    /// A guest TCP address, e.g. `10.0.2.15:80`, that a free host port picked at run time
    /// forwards to (`hostfwd=tcp:127.0.0.1:PORT-10.0.2.15:80`); live steps get the port.
    pub hostfwd_to: Option<&'static str>,
}

/// A TCP port on 127.0.0.1 that nothing listens on now (the kernel's pick for port 0).
pub fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free TCP port on 127.0.0.1: {e}"))
}

/// Makes the `blkdebug` rules for a disk image (see [`HostDisk::blkdebug`]).
pub type BlkdebugRules = fn(&std::path::Path) -> Result<String, String>;

/// A scenario with a disk of the machine's own (`-device nvme`, `-device ide-hd` on an
/// `ich9-ahci`): the image is built with `features`, `make` writes the disk image before
/// QEMU starts, and once every expected line appeared and QEMU exited, `check` reads the
/// disk image with the console lines.
#[derive(Clone, Copy)]
pub struct HostDisk {
    /// Cargo features of the `image` crate for this scenario's build.
    pub features: &'static [&'static str],
    /// The `-drive` id the devices name, e.g. `nvm0`.
    pub drive: &'static str,
    /// `-device` values that put the disk (drive [`Self::drive`]) on the machine, e.g.
    /// `nvme,serial=hv-nvme0,drive=nvm0`.
    pub devices: &'static [&'static str],
    /// Extra `-drive` options, e.g. `,readonly=on`.
    pub drive_options: &'static str,
    /// With `Some`, the drive is the image behind QEMU's `blkdebug` error injector, whose
    /// rules this makes (given the disk image, once written).
    pub blkdebug: Option<BlkdebugRules>,
    /// Writes the disk image; returns its path.
    pub make: fn() -> Result<PathBuf, String>,
    /// Checks the disk image after QEMU exited, given the console lines.
    pub check: fn(&std::path::Path, &[String]) -> Result<(), String>,
}

/// The machine seen from outside the guest, sampled while a scenario runs: the drives'
/// counters (QMP `query-blockstats`) and how often a QEMU trace event fired so far (QEMU's
/// NVMe does not count flushes in its block statistics, its `pci_nvme_flush_ns` trace
/// event shows each one).
#[derive(Clone, Debug)]
pub struct MachineSample {
    /// Every drive's counters.
    pub drives: Vec<crate::qmp::DriveStats>,
    /// Lines of [`QmpProbe::trace`]'s event in QEMU's trace output so far.
    pub traced: usize,
}

/// Samples of the machine taken when each of `at` appears (in order; before any input
/// the same line triggers is typed), judged by `check`.
#[derive(Clone, Copy)]
pub struct QmpProbe {
    /// Lines at which to sample.
    pub at: &'static [&'static str],
    /// A QEMU trace event to count (`-trace enable=EVENT`), if any.
    pub trace: Option<&'static str>,
    /// Judges the samples, one per `at` line.
    pub check: fn(&[MachineSample]) -> Result<(), String>,
}

/// A figure that must not drift: every line containing `marker`, after the first `skip`,
/// carries the same value for each of `keys` (a `key=value` word, or the word after a word
/// `key`), and at least `min_lines` such
/// lines appear (e.g. the hypervisor's memory after each of 100 VM destructions).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Steady {
    /// Substring that selects the lines.
    pub marker: &'static str,
    /// `key=value` words whose values must be equal.
    pub keys: &'static [&'static str],
    /// Leading lines not compared (allocations made once, on first use).
    pub skip: usize,
    /// Fewest lines that must appear.
    pub min_lines: usize,
}

impl Steady {
    /// Checks `lines`; the error says which figure moved, where, and by how much.
    pub fn check(&self, lines: &[String]) -> Result<(), String> {
        let selected: Vec<&String> = lines.iter().filter(|l| l.contains(self.marker)).collect();
        if selected.len() < self.min_lines {
            return Err(format!(
                "`{}` appeared {} times, want at least {}",
                self.marker,
                selected.len(),
                self.min_lines
            ));
        }
        // `key=value`, or the word after a word `key` (`... RAM at host 0x4280_0000, ...`).
        let value = |line: &str, key: &str| {
            let words: Vec<&str> = line.split_whitespace().collect();
            words
                .iter()
                .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
                .or_else(|| {
                    let at = words.iter().position(|w| *w == key)?;
                    words.get(at + 1).copied()
                })
                .map(str::to_owned)
        };
        for key in self.keys {
            let mut first: Option<(usize, String)> = None;
            for (n, line) in selected.iter().enumerate().skip(self.skip) {
                let Some(v) = value(line, key) else {
                    return Err(format!("line `{line}` has no `{key}=`"));
                };
                match &first {
                    None => first = Some((n, v)),
                    Some((m, w)) if *w != v => {
                        return Err(format!(
                            "`{key}` moved from {w} (occurrence {}) to {v} (occurrence {}) of `{}`",
                            m + 1,
                            n + 1,
                            self.marker
                        ))
                    }
                    Some(_) => {}
                }
            }
        }
        Ok(())
    }
}

impl Scenario {
    /// A scenario that expects `expect` in order and QEMU to exit by itself within two
    /// minutes, with the usual forbidden words (`FAIL`, `PANIC`, `FATAL`); adjust the
    /// other fields with struct update syntax.
    pub fn new(name: impl Into<String>, target: Target, expect: Vec<String>) -> Self {
        Self {
            name: name.into(),
            target,
            smp: None,
            expect,
            expect_unordered: Vec::new(),
            forbid: ["FAIL", "PANIC", "FATAL"].map(String::from).to_vec(),
            expect_exit: true,
            timeout: Duration::from_secs(120),
            input: Vec::new(),
            out_of_tree: false,
            poisoned_ram: false,
            steady: None,
            host_disk: None,
            qmp: None,
            host_nic: None,
            live: Vec::new(),
            check_lines: None,
            extra_args: Vec::new(),
            uefi: None,
            uboot: None,
            boot_image: false,
            prepare: None,
            spin_stub: false,
        }
    }
}

/// A scenario's process, started in a process group of its own ([`spawn_group`]): dropping
/// it kills the group, so that QEMU started by a runner (`cargo run`) goes too.
struct Killer(Child);
impl Drop for Killer {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Where a scenario stands after the output seen so far.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Keep reading: something expected has not appeared yet, or QEMU must still exit.
    Continue,
    /// Every expectation holds.
    Pass,
    /// An expectation failed; the reason names the line or status.
    Fail(String),
}

/// A scenario's expectations checked against its output, line by line: ordered `expect`
/// lines, `expect_unordered` lines, `forbid` words and, with `expect_exit`, QEMU's exit
/// status. Pure (no QEMU), so that the rules are host-tested; `run_scenario` feeds it.
pub struct Progress<'a> {
    scenario: &'a Scenario,
    /// Index of the next ordered line to find.
    next: usize,
    /// Unordered lines not seen yet.
    unseen: Vec<&'a str>,
}

impl<'a> Progress<'a> {
    /// Nothing seen yet.
    pub fn new(scenario: &'a Scenario) -> Self {
        Self {
            scenario,
            next: 0,
            unseen: scenario
                .expect_unordered
                .iter()
                .map(String::as_str)
                .collect(),
        }
    }

    /// One line of console output. `Pass` only for a scenario that does not wait for QEMU
    /// to exit, once everything expected has appeared.
    pub fn line(&mut self, line: &str) -> Verdict {
        if let Some(bad) = self
            .scenario
            .forbid
            .iter()
            .find(|f| line.contains(f.as_str()))
        {
            return Verdict::Fail(format!("forbidden output `{bad}` in line `{line}`"));
        }
        if let Some(want) = self.scenario.expect.get(self.next) {
            if line.contains(want.as_str()) {
                self.next += 1;
            }
        }
        self.unseen.retain(|u| !line.contains(u));
        if self.missing().is_empty() && !self.scenario.expect_exit {
            Verdict::Pass
        } else {
            Verdict::Continue
        }
    }

    /// QEMU exited by itself (its output has ended): every expected line must have
    /// appeared, and with `expect_exit` the status must be success. `status` is only shown.
    pub fn exited(&self, success: bool, status: &str) -> Result<(), String> {
        let missing = self.missing();
        if !missing.is_empty() {
            return Err(format!(
                "QEMU exited ({status}) before every expected line appeared; missing: {}",
                missing.join(", ")
            ));
        }
        if self.scenario.expect_exit && !success {
            return Err(format!("QEMU exited with {status}"));
        }
        Ok(())
    }

    /// The time limit passed with QEMU still running: always a failure; the reason names
    /// what was still awaited.
    pub fn timed_out(&self) -> String {
        let missing = self.missing();
        let waiting = if missing.is_empty() {
            "QEMU to exit".to_string()
        } else {
            missing.join(", ")
        };
        format!(
            "timed out after {:?} waiting for {waiting}",
            self.scenario.timeout
        )
    }

    /// The expected lines not seen yet, each quoted: the next ordered line (and how many
    /// ordered lines follow it), then every unseen unordered line.
    pub fn missing(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(want) = self.scenario.expect.get(self.next) {
            let after = self.scenario.expect.len() - self.next - 1;
            out.push(if after == 0 {
                format!("`{want}`")
            } else {
                format!("`{want}` (and {after} ordered line(s) after it)")
            });
        }
        out.extend(self.unseen.iter().map(|u| format!("`{u}` (unordered)")));
        out
    }
}

/// The test guest's isolation secret (`examples/test-guest/src/isolation.rs` `PATTERN`): a
/// poisoned RAM word at machine address `a` is `POISON_PATTERN ^ a'`, with `a'` folded into
/// the 1 GiB window the guest's scanner recognises, so the scanner counts any such word as
/// a leak.
pub const POISON_PATTERN: u64 = 0x5EC2_E7C0_FFEE_D00D;
/// Where the scanner looks for secret addresses (`isolation.rs` `OTHER_VM_RAM`).
const POISON_WINDOW: (u64, u64) = (0x4000_0000, 1 << 30);

/// The poison word at byte offset `offset` of the machine's RAM.
pub fn poison_word(offset: u64) -> u64 {
    POISON_PATTERN ^ (POISON_WINDOW.0 + offset % POISON_WINDOW.1)
}

/// A file removed when the value is dropped.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// QEMU arguments that back the board's RAM with `target/scenarios/poison-<MiB>.bin`, and
/// the file's guard: it is written for the run and removed after it (2 GiB of disk that a
/// CI machine ran out of). `share=off`, so the guest's writes never reach the file.
fn poisoned_ram_args(img: &build::Image) -> Result<(Vec<String>, RemoveOnDrop), String> {
    let Verification::Qemu { memory_mib, .. } = &img.board.verified_by else {
        return Err(format!("board `{}` has no QEMU line", img.board.name));
    };
    let dir = build::workspace_root().join("target/scenarios");
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let path = dir.join(format!("poison-{memory_mib}.bin"));
    let size = *memory_mib << 20;
    write_poison(&path, size)?;
    let guard = RemoveOnDrop(path.clone());
    let args = vec![
        "-object".into(),
        format!(
            "memory-backend-file,id=poison,size={memory_mib}M,mem-path={},share=off",
            path.display()
        ),
        "-machine".into(),
        "memory-backend=poison".into(),
    ];
    Ok((args, guard))
}

/// Writes `size` bytes of poison words to `path` (through a temporary file, so that an
/// interrupted write is not taken for a finished one).
fn write_poison(path: &std::path::Path, size: u64) -> Result<(), String> {
    const CHUNK: u64 = 4 << 20;
    let tmp = path.with_extension("tmp");
    let err = |e: std::io::Error| format!("cannot write {}: {e}", tmp.display());
    let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp).map_err(err)?);
    let mut buf = Vec::with_capacity(CHUNK as usize);
    let mut offset = 0;
    while offset < size {
        buf.clear();
        let end = (offset + CHUNK).min(size);
        for o in (offset..end).step_by(8) {
            buf.extend_from_slice(&poison_word(o).to_le_bytes());
        }
        f.write_all(&buf).map_err(err)?;
        offset = end;
    }
    f.flush().map_err(err)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| format!("cannot rename {}: {e}", tmp.display()))
}

/// The `-drive` value for `disk` as `hd` wants it: the raw image, or the raw image behind
/// `blkdebug` with the rules written next to it.
fn drive_arg(disk: &std::path::Path, hd: &HostDisk) -> Result<String, String> {
    let file = match hd.blkdebug {
        None => format!("file={}", disk.display()),
        Some(rules) => {
            let config = disk.with_extension("blkdebug.conf");
            std::fs::write(&config, rules(disk)?)
                .map_err(|e| format!("{}: {e}", config.display()))?;
            format!(
                "file.driver=blkdebug,file.config={},file.image.filename={}",
                config.display(),
                disk.display()
            )
        }
    };
    Ok(format!(
        "{file},if=none,format=raw,id={}{}",
        hd.drive, hd.drive_options
    ))
}

/// Runs one scenario; `Err` carries the reason and the log path.
pub fn run_scenario(s: &Scenario) -> Result<(), String> {
    let mut features: Vec<&str> = s.host_disk.map_or(&[][..], |d| d.features).to_vec();
    features.extend(s.host_nic.map_or(&[][..], |n| n.features));
    let features = &features[..];
    let (img, mut cmd) = if let Some(u) = &s.uefi {
        let (img, efi) = crate::uefi::build_efi(&s.target, features)?;
        let dir = build::workspace_root().join("target/scenarios");
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let esp = dir.join(format!("{}-esp.img", s.name));
        crate::uefi::write_esp(&crate::uefi::EspSpec {
            out: esp.clone(),
            size: None,
            efi,
            vms: u.vms.clone(),
        })?;
        let cmd = crate::uefi::qemu_command(&img, &esp, s.smp)?;
        (img, cmd)
    } else if let Some(u) = &s.uboot {
        let img = build::image_with_features(&s.target, features)?;
        let dir = build::workspace_root().join("target/scenarios");
        let bundle = crate::uboot::write_bundle_to(
            &img,
            u.boot_vms.as_deref(),
            &dir.join(format!("{}-bundle", s.name)),
        )?;
        let disk = dir.join(format!("{}-disk.img", s.name));
        let medium = if u.tftp {
            crate::uboot::Medium::Tftp(&bundle.dir)
        } else {
            crate::uboot::write_disk(&bundle.dir, &disk)?;
            crate::uboot::Medium::Disk(&disk)
        };
        let cmd = crate::uboot::qemu_command(&img, medium, s.smp)?;
        (img, cmd)
    } else {
        let img = if s.out_of_tree {
            build::out_of_tree_image(&s.target)?
        } else {
            build::image_with_features(&s.target, features)?
        };
        let cmd = if s.out_of_tree {
            // As its README says: one command, `cargo run --release`, whose runner
            // (examples/out-of-tree/run-qemu, platform-dsl's hv-run) boots the image.
            build::out_of_tree_run()
        } else if s.spin_stub {
            command_with_firmware(&img, s.smp, &build::spin_stub()?)?
        } else {
            let kernel = if s.boot_image { &img.bin } else { &img.elf };
            command_with_kernel(&img, s.smp, kernel)?
        };
        (img, cmd)
    };
    let _poison = if s.poisoned_ram {
        let (args, guard) = poisoned_ram_args(&img)?;
        cmd.args(args);
        Some(guard)
    } else {
        None
    };
    cmd.args(&s.extra_args);
    if let Some(prepare) = s.prepare {
        cmd.args(prepare(&img)?);
    }
    let disk = s.host_disk.map(|d| (d.make)()).transpose()?;
    if let (Some(disk), Some(hd)) = (&disk, s.host_disk) {
        cmd.arg("-drive").arg(drive_arg(disk, &hd)?);
        for d in hd.devices {
            cmd.args(["-device", d]);
        }
    }
    let mut hostfwd_port = None;
    if let Some(nic) = s.host_nic {
        let mut netdev = format!("user,id=net0{}", nic.netdev_options);
        if let Some(to) = nic.hostfwd_to {
            let port = free_port()?;
            let (ip, guest_port) = to
                .split_once(':')
                .ok_or(format!("hostfwd_to `{to}` is not ADDR:PORT"))?;
            netdev += &format!(",hostfwd=tcp:127.0.0.1:{port}-{ip}:{guest_port}");
            hostfwd_port = Some(port);
        }
        // Replaces `-net none` of `command`: a later `-netdev` is what the NICs use.
        cmd.arg("-netdev").arg(netdev);
        for d in nic.devices {
            cmd.args(["-device", d]);
        }
    }
    let qmp_socket = build::workspace_root()
        .join("target/qemu-logs")
        .join(format!("{}.qmp", s.name));
    let trace_file = qmp_socket.with_extension("trace");
    let want_qmp = s.qmp.is_some() || !s.live.is_empty();
    if want_qmp {
        let _ = std::fs::remove_file(&qmp_socket);
        cmd.arg("-qmp")
            .arg(format!("unix:{},server=on,wait=off", qmp_socket.display()));
    }
    if let Some(probe) = s.qmp {
        if let Some(event) = probe.trace {
            let _ = std::fs::remove_file(&trace_file);
            cmd.arg("-trace")
                .arg(format!("enable={event},file={}", trace_file.display()));
        }
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let log_dir = build::workspace_root().join("target/qemu-logs");
    let _ = std::fs::create_dir_all(&log_dir);
    let log_path: PathBuf = log_dir.join(format!("{}.log", s.name));
    let mut log = std::fs::File::create(&log_path)
        .map_err(|e| format!("cannot create {}: {e}", log_path.display()))?;
    let _ = writeln!(log, "$ {cmd:?}");
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = Killer(
        cmd.spawn()
            .map_err(|e| format!("cannot start {QEMU}: {e}"))?,
    );
    let stdout = child.0.stdout.take().ok_or("no stdout")?;
    let mut stderr = child.0.stderr.take().ok_or("no stderr")?;
    let mut stdin = child.0.stdin.take();
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).split(b'\n') {
            let Ok(line) = line else { break };
            if tx
                .send(
                    String::from_utf8_lossy(&line)
                        .trim_end_matches('\r')
                        .to_owned(),
                )
                .is_err()
            {
                break;
            }
        }
    });
    let mut qmp = match want_qmp {
        true => Some(crate::qmp::Qmp::connect(
            &qmp_socket,
            Duration::from_secs(20),
        )?),
        false => None,
    };
    let mut live = s.live.iter().peekable();
    let mut since_live: Vec<String> = Vec::new();
    // Lines the live steps returned, fed to the checks after the console line that ran them.
    let mut injected: Vec<String> = Vec::new();
    let mut samples: Vec<MachineSample> = Vec::new();
    let start = Instant::now();
    let mut progress = Progress::new(s);
    let mut inputs = s.input.iter().peekable();
    let mut since_send: Vec<String> = Vec::new();
    let mut all_lines: Vec<String> = Vec::new();
    let verdict = loop {
        let left = s.timeout.saturating_sub(start.elapsed());
        if left.is_zero() {
            break Err(progress.timed_out());
        }
        let next = match injected.pop() {
            Some(line) => Ok(line),
            None => rx.recv_timeout(left.min(Duration::from_millis(200))),
        };
        match next {
            Ok(line) => {
                let _ = writeln!(log, "{line}");
                match progress.line(&line) {
                    Verdict::Continue => {}
                    Verdict::Pass => break Ok(()),
                    Verdict::Fail(why) => break Err(why),
                }
                if s.steady.is_some()
                    || s.host_disk.is_some()
                    || !s.live.is_empty()
                    || s.check_lines.is_some()
                {
                    all_lines.push(line.clone());
                }
                if !s.live.is_empty() {
                    since_live.push(line.clone());
                }
                if let (Some(step), Some(q)) = (live.peek(), qmp.as_mut()) {
                    let ready = step
                        .at
                        .iter()
                        .all(|t| since_live.iter().any(|l| l.contains(t.as_str())));
                    if ready {
                        let mut ctx = LiveCtx {
                            lines: &all_lines,
                            hostfwd_port,
                            qmp: q,
                        };
                        match (step.action)(&mut ctx) {
                            Ok(said) => injected.push(said),
                            Err(why) => break Err(format!("live step at {:?}: {why}", step.at)),
                        }
                        since_live.clear();
                        live.next();
                    }
                }
                if let (Some(probe), Some(q)) = (s.qmp, qmp.as_mut()) {
                    if probe
                        .at
                        .get(samples.len())
                        .is_some_and(|t| line.contains(t))
                    {
                        let drives = q.blockstats()?;
                        // QEMU flushes its trace output line by line.
                        let traced = probe.trace.map_or(0, |event| {
                            std::fs::read_to_string(&trace_file)
                                .map(|t| t.lines().filter(|l| l.contains(event)).count())
                                .unwrap_or(0)
                        });
                        samples.push(MachineSample { drives, traced });
                    }
                }
                since_send.push(line);
                while let Some((triggers, text)) = inputs.peek() {
                    let ready = triggers
                        .iter()
                        .all(|t| since_send.iter().any(|l| l.contains(t.as_str())));
                    if !ready {
                        break;
                    }
                    if let Some(w) = stdin.as_mut() {
                        let _ = w.write_all(text.as_bytes());
                        let _ = w.flush();
                    }
                    since_send.clear();
                    inputs.next();
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                // QEMU closed its output: it exited.
                let status = child.0.wait().map_err(|e| e.to_string())?;
                let mut err = String::new();
                let _ = stderr.read_to_string(&mut err);
                let _ = writeln!(log, "--- stderr ---\n{err}\n--- exit: {status}");
                break progress.exited(status.success(), &status.to_string());
            }
        }
    };
    let verdict = verdict.and_then(|()| match s.qmp {
        Some(probe) if samples.len() < probe.at.len() => Err(format!(
            "QMP: sampled the drives at {} of {} lines; `{}` never appeared",
            samples.len(),
            probe.at.len(),
            probe.at[samples.len()]
        )),
        Some(probe) => (probe.check)(&samples),
        None => Ok(()),
    });
    let verdict = verdict.and_then(|()| match &s.steady {
        Some(steady) => steady.check(&all_lines),
        None => Ok(()),
    });
    let verdict = verdict.and_then(|()| match s.check_lines {
        Some(check) => check(&all_lines),
        None => Ok(()),
    });
    // QEMU has exited (or been killed) here, so the disk image holds what it flushed.
    drop(child);
    let verdict = verdict.and_then(|()| match (s.host_disk, &disk) {
        (Some(d), Some(path)) => (d.check)(path, &all_lines),
        _ => Ok(()),
    });
    // The NUMA nodes' RAM files (a multi-node board) are read by the checks above.
    let _ = std::fs::remove_dir_all(numa_ram_dir(&img.board.name));
    verdict.map_err(|why| {
        let _ = writeln!(log, "--- scenario failed: {why}");
        format!("scenario {}: {why} (log: {})", s.name, log_path.display())
    })
}

#[cfg(test)]
mod console_tests {
    use super::ConsoleFailures;

    #[test]
    fn an_interactive_run_fails_on_a_refused_vm_a_fatal_stop_or_a_panic() {
        let mut f = ConsoleFailures::default();
        f.feed(b"[hv] VM 0 `test`: 1 vCPU(s)\n[hv] VM 1 (bad) not cre");
        f.feed(b"ated: kernel `x` has no arm64 Image header\r\n[hv] all VMs stopped\n");
        assert_eq!(
            f.lines,
            ["[hv] VM 1 (bad) not created: kernel `x` has no arm64 Image header"]
        );
        f.feed(b"[hv] FATAL: the firmware's RAM does not hold the hypervisor\n");
        f.feed(b"\n[hv] PANIC on CPU 2: oops\n");
        assert_eq!(f.lines.len(), 3);
        let mut quiet = ConsoleFailures::default();
        quiet.feed(b"[test] [test-guest] RESULT: 14 passed, 0 failed\n");
        assert!(quiet.lines.is_empty());
    }
}

#[cfg(test)]
mod tests {
    fn steady(skip: usize, min_lines: usize) -> Steady {
        Steady {
            marker: "destroyed;",
            keys: &["heap_used", "pool_free"],
            skip,
            min_lines,
        }
    }

    fn owned(lines: &[&str]) -> Vec<String> {
        lines.iter().map(|l| (*l).to_owned()).collect()
    }

    #[test]
    fn steady_figures_pass_after_the_skipped_lines() {
        let lines = owned(&[
            "x destroyed; heap_used=90 pool_free=5",
            "noise",
            "x destroyed; heap_used=100 pool_free=5",
            "x destroyed; heap_used=100 pool_free=5",
        ]);
        assert_eq!(steady(1, 3).check(&lines), Ok(()));
    }

    #[test]
    fn a_figure_that_moves_fails_and_says_where() {
        let lines = owned(&[
            "x destroyed; heap_used=100 pool_free=5",
            "x destroyed; heap_used=100 pool_free=5",
            "x destroyed; heap_used=164 pool_free=5",
        ]);
        let e = steady(0, 3).check(&lines).unwrap_err();
        assert!(
            e.contains("`heap_used` moved from 100 (occurrence 1) to 164 (occurrence 3)"),
            "{e}"
        );
    }

    #[test]
    fn a_value_may_follow_its_key_as_the_next_word() {
        let s = Steady {
            marker: "`poisoned`: 1 vCPU(s)",
            keys: &["host"],
            skip: 0,
            min_lines: 2,
        };
        let same = owned(&[
            "[hv] VM 1 `poisoned`: 1 vCPU(s) on pCPU(s) [1], 256 MiB RAM at host 0x42800000, x",
            "[hv] VM 1 `poisoned`: 1 vCPU(s) on pCPU(s) [1], 256 MiB RAM at host 0x42800000, y",
        ]);
        assert_eq!(s.check(&same), Ok(()));
        let moved = owned(&[
            "[hv] VM 1 `poisoned`: 1 vCPU(s) on pCPU(s) [1], 256 MiB RAM at host 0x42800000, x",
            "[hv] VM 1 `poisoned`: 1 vCPU(s) on pCPU(s) [1], 256 MiB RAM at host 0x52800000, y",
        ]);
        assert!(s.check(&moved).unwrap_err().contains("`host` moved"));
    }

    #[test]
    fn too_few_lines_fail() {
        let lines = owned(&["x destroyed; heap_used=1 pool_free=1"]);
        assert!(steady(0, 2)
            .check(&lines)
            .unwrap_err()
            .contains("appeared 1 times"));
    }

    #[test]
    fn poison_words_are_secret_words_of_the_scanners_window() {
        assert_eq!(poison_word(0), POISON_PATTERN ^ 0x4000_0000);
        assert_eq!(poison_word(8), POISON_PATTERN ^ 0x4000_0008);
        // Past 1 GiB the address folds back into the window the scanner checks.
        assert_eq!(poison_word(1 << 30), poison_word(0));
        assert_eq!(poison_word((1 << 31) + 16), POISON_PATTERN ^ 0x4000_0010);
    }

    use super::*;

    fn scenario(expect: &[&str], unordered: &[&str]) -> Scenario {
        let target = Target {
            board: "qemu-virt".into(),
            board_file: PathBuf::from("boards.kdl"),
            vms: PathBuf::from("vms.toml"),
            allow_experimental: false,
        };
        Scenario {
            expect_unordered: unordered.iter().map(|l| l.to_string()).collect(),
            ..Scenario::new(
                "self-test",
                target,
                expect.iter().map(|l| l.to_string()).collect(),
            )
        }
    }

    /// Feeds `output` and returns the last verdict.
    fn feed(p: &mut Progress, output: &[&str]) -> Verdict {
        let mut v = Verdict::Continue;
        for l in output {
            v = p.line(l);
            if v != Verdict::Continue {
                break;
            }
        }
        v
    }

    #[test]
    fn every_line_present_and_a_clean_exit_passes() {
        let s = scenario(&["[hv] board", "RESULT: 7 passed"], &["counting", "rising"]);
        let mut p = Progress::new(&s);
        let out = [
            "[hv] board: qemu-virt",
            "x: rising",
            "RESULT: 7 passed",
            "ipi: counting",
        ];
        assert_eq!(feed(&mut p, &out), Verdict::Continue);
        assert!(p.missing().is_empty());
        assert_eq!(p.exited(true, "exit status: 0"), Ok(()));
    }

    #[test]
    fn a_missing_unordered_line_fails_when_qemu_exits_by_itself() {
        let s = scenario(&["[hv] board"], &["counting", "rising"]);
        let mut p = Progress::new(&s);
        feed(&mut p, &["[hv] board: qemu-virt", "IPIs: counting"]);
        let e = p.exited(true, "exit status: 0").unwrap_err();
        assert!(e.contains("`rising` (unordered)"), "{e}");
        assert!(!e.contains("counting"), "{e}");
    }

    #[test]
    fn a_missing_ordered_line_fails_when_qemu_exits_by_itself() {
        let s = scenario(&["one", "two", "three"], &[]);
        let mut p = Progress::new(&s);
        feed(&mut p, &["one", "three"]);
        let e = p.exited(true, "exit status: 0").unwrap_err();
        assert!(e.contains("`two` (and 1 ordered line(s) after it)"), "{e}");
    }

    #[test]
    fn ordered_lines_out_of_order_do_not_count() {
        let s = scenario(&["one", "two"], &[]);
        let mut p = Progress::new(&s);
        feed(&mut p, &["two", "one"]);
        assert_eq!(p.missing(), vec!["`two`".to_string()]);
    }

    #[test]
    fn a_forbidden_line_fails_at_once() {
        let s = scenario(&["one"], &[]);
        let mut p = Progress::new(&s);
        let v = feed(&mut p, &["one", "[test-guest] FAIL timer"]);
        assert_eq!(
            v,
            Verdict::Fail("forbidden output `FAIL` in line `[test-guest] FAIL timer`".into())
        );
    }

    #[test]
    fn a_failing_exit_status_fails_when_the_scenario_expects_a_clean_exit() {
        let s = scenario(&["one"], &[]);
        let mut p = Progress::new(&s);
        feed(&mut p, &["one"]);
        assert_eq!(
            p.exited(false, "exit status: 1"),
            Err("QEMU exited with exit status: 1".into())
        );
    }

    #[test]
    fn without_expect_exit_the_scenario_passes_once_every_line_appeared() {
        let s = Scenario {
            expect_exit: false,
            ..scenario(&["one"], &["spinning"])
        };
        let mut p = Progress::new(&s);
        assert_eq!(p.line("one"), Verdict::Continue);
        assert_eq!(p.line("spinning for ever"), Verdict::Pass);
    }

    #[test]
    fn without_expect_exit_an_early_exit_with_a_line_missing_fails() {
        let s = Scenario {
            expect_exit: false,
            ..scenario(&["one"], &["spinning"])
        };
        let mut p = Progress::new(&s);
        feed(&mut p, &["one"]);
        let e = p.exited(true, "exit status: 0").unwrap_err();
        assert!(e.contains("`spinning` (unordered)"), "{e}");
    }

    #[test]
    fn a_timeout_fails_and_names_every_missing_line() {
        let s = scenario(&["one", "two"], &["a", "b"]);
        let mut p = Progress::new(&s);
        feed(&mut p, &["one", "b"]);
        let e = p.timed_out();
        assert!(e.contains("waiting for `two`, `a` (unordered)"), "{e}");
        let all = scenario(&["one"], &[]);
        let mut p = Progress::new(&all);
        feed(&mut p, &["one"]);
        assert!(p.timed_out().contains("waiting for QEMU to exit"));
    }

    #[test]
    fn drive_arg_names_the_drive_and_puts_blkdebug_under_the_raw_format() {
        fn no_disk() -> Result<PathBuf, String> {
            Err("unused".into())
        }
        fn no_check(_: &std::path::Path, _: &[String]) -> Result<(), String> {
            Ok(())
        }
        fn rules(_: &std::path::Path) -> Result<String, String> {
            Ok("[inject-error]\n".into())
        }
        let dir = std::env::temp_dir().join(format!("xtask-drive-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let img = dir.join("d.img");
        let mut hd = HostDisk {
            features: &[],
            drive: "hd0",
            devices: &[],
            drive_options: ",readonly=on",
            blkdebug: None,
            make: no_disk,
            check: no_check,
        };
        assert_eq!(
            drive_arg(&img, &hd).unwrap(),
            format!(
                "file={},if=none,format=raw,id=hd0,readonly=on",
                img.display()
            )
        );
        hd.blkdebug = Some(rules);
        let conf = dir.join("d.blkdebug.conf");
        assert_eq!(
            drive_arg(&img, &hd).unwrap(),
            format!(
                "file.driver=blkdebug,file.config={},file.image.filename={},if=none,format=raw,id=hd0,readonly=on",
                conf.display(),
                img.display()
            )
        );
        assert_eq!(std::fs::read_to_string(&conf).unwrap(), "[inject-error]\n");
        let _ = std::fs::remove_dir_all(dir);
    }
}
