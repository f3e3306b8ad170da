//! `cargo xtask bench [--smoke]`: repeatable guest-visible figures under QEMU `-icount`.
//!
//! Every run uses `-icount shift=0,sleep=off -rtc clock=vm` (one guest nanosecond per
//! instruction) and `-M virt,...,dtb-randomness=off` where QEMU has it, so the figures are
//! instruction counts that repeat from run to run. Measured, bare QEMU against the
//! hypervisor on the `qemu-virt` board, one QEMU at a time:
//!
//! - boot: the printk timestamp of `Run /init as init process` of Debian's 6.1 kernel;
//! - exits: the test guest's `BENCH` line (median null HVC and trapped MMIO read);
//! - steady state: a busybox shell loop and a `dd` memory copy timed with `date +%s%N`;
//! - footprint: the image's loadable bytes and the heap size the hypervisor reports;
//! - wall clock: host time from QEMU's start to the first line the Linux guest's `/init`
//!   prints, in interleaved runs (bare, hypervisor, bare, ...), median and min..max of each.
//! - storage: `examples/iobench` (O_DIRECT sequential 1 MiB and random 4 KiB I/O) in Linux
//!   guests on NVMe, virtio-blk and AHCI disks, against bare QEMU NVMe ([`storage`]; these
//!   runs use `sleep=on`, and `--storage` runs only them).
//! - network: TCP throughput to the host and ping round trips through each uplink (QEMU
//!   `usb-net`, `e1000e`) and between two VMs on the switch, against a bare-QEMU guest on
//!   the same QEMU NIC ([`net`]; `sleep=on` too, `--net` runs only them).
//!
//! A full run repeats every icount figure twice and says whether the two agree within 1 %,
//! and boots Linux [`WALL_RUNS`] times each way for the wall-clock figure. `--smoke` runs the
//! exit round trip once and the wall-clock boot [`WALL_RUNS_SMOKE`] times each way, and fails
//! only when output is missing. Figures are held against their targets in the table; a miss
//! is reported, never a failure.
//! The table goes to stdout, the figures to `target/bench/results.json`, each QEMU log to
//! `target/bench/<run>.log`.

mod net;
mod parts;
mod storage;

use crate::build::{self, workspace_root, Image};
use crate::{qemu, Target};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const QEMU: &str = "qemu-system-aarch64";
/// Guest time = instructions: 1 ns each, no sleeping while idle, RTC on the virtual clock.
const ICOUNT_ARGS: [&str; 4] = ["-icount", "shift=0,sleep=off", "-rtc", "clock=vm"];
/// The kernel series the Linux figures use.
const KERNEL_SERIES: &str = "6.1";
/// vCPUs of the Linux VM and CPUs of the bare run (compare figures only at the same `-smp`).
const LINUX_CPUS: u32 = 4;
/// Guest RAM of the Linux runs, bare and as a VM: the same, because the kernel's boot time
/// grows with RAM (struct page initialisation), and a VM cannot get all 2 GiB of the board.
const LINUX_MIB: u32 = 1024;
/// Kernel command line of both Linux runs.
const LINUX_CMDLINE: &str = "console=ttyAMA0 rdinit=/init";
/// The printk line whose timestamp is "boot to userspace".
const INIT_MARKER: &str = "Run /init as init process";
/// The first line the benchmark initramfs's `/init` prints (`workload_script`): the end of
/// the wall-clock boot figure.
const USERSPACE_MARKER: &str = "[initramfs] userspace up: ";
/// Wall-clock boots each way (bare, hypervisor) of a full run and of `--smoke`.
const WALL_RUNS: usize = 5;
const WALL_RUNS_SMOKE: usize = 2;
/// Iterations of the busybox shell loop.
const CPU_LOOP: u32 = 200_000;
/// MiB copied by `dd` from /dev/zero to /dev/null.
const MEM_MIB: u32 = 512;
/// Output that means the run is lost (QEMU would otherwise sit there until the timeout).
const ABORT_ON: [&str; 3] = ["Kernel panic", "[hv] FATAL", "[hv] PANIC"];
/// Targets from the issue.
const TARGET_BOOT_OVERHEAD_PCT: f64 = 5.0;
const TARGET_HVC_INSNS: f64 = 300.0;
const TARGET_MMIO_INSNS: f64 = 500.0;
/// Wall clock to the first userspace line under the hypervisor, over bare QEMU (medians).
const TARGET_BOOT_WALL_RATIO: f64 = 1.1;
/// Loadable bytes of the `qemu-virt` image (file bytes of its `PT_LOAD` segments): the
/// budget this wave keeps with storage, networking and management built in.
const TARGET_IMAGE_KIB: u64 = 480;
/// Two repetitions of an icount figure agree when they differ by at most this much.
const AGREEMENT_PCT: f64 = 1.0;
/// vCPUs of the larger VM of the footprint run.
const FOOTPRINT_VCPUS: u32 = 4;

/// What can go wrong in a benchmark run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// QEMU could not be started.
    #[error("cannot start {QEMU} for {run}: {source}; is qemu-system-arm installed?")]
    Spawn {
        /// Run name.
        run: String,
        /// Cause.
        source: std::io::Error,
    },
    /// QEMU did not finish in time.
    #[error("{run}: QEMU did not power off within {secs} s; killed it (log: {log})")]
    Timeout {
        /// Run name.
        run: String,
        /// Limit.
        secs: u64,
        /// Log path.
        log: String,
    },
    /// A line the figures come from never appeared.
    #[error(
        "{run}: no `{what}` in the output (log: {log}); check the guest or the hypervisor boots"
    )]
    Missing {
        /// Run name.
        run: String,
        /// The missing line or value.
        what: String,
        /// Log path.
        log: String,
    },
    /// A file could not be written or read.
    #[error("cannot access {path}: {source}")]
    Io {
        /// Path.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// Building or fetching failed (message from `build`/`guest`).
    #[error("{0}")]
    Build(String),
}

/// `cargo xtask bench [--smoke] [--storage | --net [--row usb-net|e1000e|vm2vm]...]`.
/// `cargo xtask bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// One run of each row instead of the full count (figures not comparable)
    #[arg(long)]
    smoke: bool,
    /// Only the storage rows (target/bench/storage.json)
    #[arg(long)]
    storage: bool,
    /// Only the network rows (target/bench/net.json)
    #[arg(long, conflicts_with = "storage")]
    net: bool,
    /// Only these network rows (repeatable; needs --net)
    #[arg(long = "row", value_name = "ROW", value_parser = net::ROWS, requires = "net")]
    rows: Vec<String>,
}

/// `cargo xtask bench ...`.
pub fn cmd(args: BenchArgs) -> Result<(), String> {
    let BenchArgs {
        smoke,
        storage: storage_only,
        net: net_only,
        rows,
    } = args;
    if storage_only {
        run_storage_only(smoke)
    } else if net_only {
        run_net_only(smoke, &rows)
    } else {
        run(smoke)
    }
    .map_err(|e| e.to_string())
}

/// `--net`: only the network rows (see [`net`]; `rows`: only those, all if empty),
/// printed and written to `target/bench/net.json`.
fn run_net_only(smoke: bool, rows: &[String]) -> Result<(), BenchError> {
    qemu::ensure_qemu().map_err(BenchError::Build)?;
    let out_dir = workspace_root().join("target/bench");
    mkdir(&out_dir)?;
    let mut walls = Vec::new();
    let results = net::run(&out_dir, &dtb_randomness_option(), smoke, rows, &mut walls)?;
    net::print(&results, smoke);
    let walls: Vec<String> = walls.iter().map(|(n, s)| format!("{n} {s:.1} s")).collect();
    println!("wall clock: {}", walls.join(", "));
    let path = out_dir.join("net.json");
    write_file(
        &path,
        &serde_json::to_string_pretty(&net::json(&results)).unwrap_or_default(),
    )?;
    println!("figures written to {}", path.display());
    Ok(())
}

/// `--storage`: only the storage rows (see [`storage`]), printed and written to
/// `target/bench/storage.json`.
fn run_storage_only(smoke: bool) -> Result<(), BenchError> {
    qemu::ensure_qemu().map_err(BenchError::Build)?;
    let out_dir = workspace_root().join("target/bench");
    mkdir(&out_dir)?;
    let mut walls = Vec::new();
    let results = storage::run(&out_dir, &dtb_randomness_option(), smoke, &mut walls)?;
    storage::print(&results, smoke);
    let walls: Vec<String> = walls.iter().map(|(n, s)| format!("{n} {s:.1} s")).collect();
    println!("wall clock: {}", walls.join(", "));
    let path = out_dir.join("storage.json");
    write_file(
        &path,
        &serde_json::to_string_pretty(&storage::json(&results)).unwrap_or_default(),
    )?;
    println!("figures written to {}", path.display());
    Ok(())
}

/// The reduced run for `cargo xtask test`: the exit round trip once and a few wall-clock
/// boots, no thresholds.
pub fn smoke() -> Result<(), String> {
    run(true).map_err(|e| e.to_string())
}

fn run(smoke: bool) -> Result<(), BenchError> {
    qemu::ensure_qemu().map_err(BenchError::Build)?;
    let out_dir = workspace_root().join("target/bench");
    mkdir(&out_dir)?;
    let machine_opt = dtb_randomness_option();
    let reps = if smoke { 1 } else { 2 };
    let mut rows: Vec<Row> = Vec::new();
    let mut walls: Vec<(String, f64)> = Vec::new();

    // Exit round trip: the test guest, bare and as a VM.
    let guest_bin = build::test_guest().map_err(BenchError::Build)?;
    let tg_vms = write_file(
        &out_dir.join("test-guest.toml"),
        &format!(
            "[[vm]]\nname = \"bench\"\nvcpus = 2\nmemory_mib = 64\nkernel = \"{}\"\ncmdline = \"bench\"\n",
            guest_bin.display()
        ),
    )?;
    let tg_img = image(&qemu_virt(tg_vms), &out_dir, "test-guest")?;
    let mut exits_hv = Vec::new();
    let mut exits_bare = Vec::new();
    for rep in 1..=reps {
        let mut bare = bare_command(&machine_opt, 2, 1024);
        bare.arg("-kernel")
            .arg(&guest_bin)
            .args(["-append", "bench"])
            .args(ICOUNT_ARGS);
        let r = run_qemu(bare, &format!("exits-bare-{rep}"), &out_dir, 120)?;
        exits_bare.push(r.require(parse_exit_bench(&r.lines), "[test-guest] BENCH")?);
        walls.push((r.name.clone(), r.wall_s));
        let hv = hv_command(&tg_img, &machine_opt)?;
        let r = run_qemu(hv, &format!("exits-hv-{rep}"), &out_dir, 180)?;
        exits_hv.push(r.require(parse_exit_bench(&r.lines), "[bench] [test-guest] BENCH")?);
        walls.push((r.name.clone(), r.wall_s));
    }
    let insns = |e: &[ExitBench], f: fn(&ExitBench) -> f64| e.iter().map(f).collect::<Vec<_>>();
    let exit_figures: [(&str, ExitFigure, Goal); 7] = [
        (
            "null HVC (SMCCC_VERSION, SMCCC fast path)",
            ExitBench::hvc_insns,
            Goal::None,
        ),
        (
            "null HVC (PSCI_VERSION, general path)",
            ExitBench::psci_insns,
            Goal::Overhead(TARGET_HVC_INSNS),
        ),
        (
            "trapped MMIO read (UARTFR, console fast path)",
            ExitBench::mmio_insns,
            Goal::None,
        ),
        (
            "trapped MMIO read (GICD_TYPER, general path)",
            ExitBench::mmio_gic_insns,
            Goal::Overhead(TARGET_MMIO_INSNS),
        ),
        (
            "vtimer expiry -> handler, vCPU idle (WFI)",
            ExitBench::vtimer_idle_insns,
            Goal::None,
        ),
        (
            "vtimer expiry -> handler, vCPU busy",
            ExitBench::vtimer_busy_insns,
            Goal::None,
        ),
        (
            "SGI vCPU 0 -> handler on idle vCPU 1",
            ExitBench::sgi_insns,
            Goal::None,
        ),
    ];
    for (name, figure, goal) in exit_figures {
        rows.push(Row::new(
            name,
            "insns",
            insns(&exits_bare, figure),
            insns(&exits_hv, figure),
            goal,
        ));
    }

    // Footprint of the image this run built.
    let footprint = loadable_bytes(&tg_img.elf)?;
    let heap_kib = walls_log_heap(&out_dir.join("exits-hv-1.log"));
    let vm_memory = vm_memory(&out_dir, &machine_opt, &guest_bin, &mut walls)?;

    let vm_start = vm_start(&out_dir, &machine_opt, &guest_bin, &mut walls)?;
    for &(mib, insns) in &vm_start.insns {
        rows.push(Row::new(
            &format!("VM start, {mib} MiB: hv entry -> guest's 1st insn"),
            "insns",
            vec![0.0],
            vec![insns],
            Goal::None,
        ));
    }

    let linux_setup = LinuxSetup::prepare(&out_dir)?;
    let wall_runs = if smoke { WALL_RUNS_SMOKE } else { WALL_RUNS };
    rows.push(boot_wall(
        &linux_setup,
        &out_dir,
        &machine_opt,
        wall_runs,
        &mut walls,
    )?);
    if !smoke {
        linux(
            &linux_setup,
            &out_dir,
            &machine_opt,
            reps,
            &mut rows,
            &mut walls,
        )?;
    }

    let storage = storage::run(&out_dir, &machine_opt, smoke, &mut walls)?;
    let network = net::run(&out_dir, &machine_opt, smoke, &[], &mut walls)?;

    print_table(&rows, &footprint, heap_kib, &vm_memory, &walls, smoke);
    println!("{}", vm_start.verdict());
    storage::print(&storage, smoke);
    net::print(&network, smoke);
    let mut json = results_json(&rows, &footprint, heap_kib, &vm_memory, &walls, smoke);
    json["storage"] = storage::json(&storage);
    json["net"] = net::json(&network);
    json["vm_start"] = serde_json::json!({
        "insns_by_mib": vm_start.insns,
        "difference_pct": vm_start.difference_pct(),
        "target_pct": TARGET_VM_START_DIFF_PCT,
        "met": vm_start.met(),
    });
    let path = out_dir.join("results.json");
    write_file(
        &path,
        &serde_json::to_string_pretty(&json).unwrap_or_default(),
    )?;
    println!("figures written to {}", path.display());
    Ok(())
}

/// VM sizes of the VM start figure: it must not grow with the RAM size.
const VM_START_MIB: [u32; 2] = [256, 2048];
/// Most the two VM start figures may differ, in percent of the smaller.
const TARGET_VM_START_DIFF_PCT: f64 = 10.0;

/// Hypervisor entry to the guest's first instruction, for each of [`VM_START_MIB`].
#[derive(Clone, Debug, PartialEq)]
struct VmStart {
    /// (VM RAM in MiB, instructions).
    insns: Vec<(u32, f64)>,
}

impl VmStart {
    /// How much the largest figure exceeds the smallest, in percent of the smallest.
    fn difference_pct(&self) -> Option<f64> {
        let v: Vec<f64> = self.insns.iter().map(|&(_, i)| i).collect();
        let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = v.iter().copied().fold(0.0, f64::max);
        (lo > 0.0 && lo.is_finite()).then(|| (hi - lo) / lo * 100.0)
    }

    fn met(&self) -> bool {
        self.difference_pct()
            .is_some_and(|d| d < TARGET_VM_START_DIFF_PCT)
    }

    fn verdict(&self) -> String {
        let sizes: Vec<String> = self
            .insns
            .iter()
            .map(|(mib, i)| format!("{mib} MiB {i:.0} insns"))
            .collect();
        match self.difference_pct() {
            Some(d) => format!(
                "VM start (hypervisor entry -> guest's first instruction): {}; differ by {d:.1} % (target < {TARGET_VM_START_DIFF_PCT} %): {}",
                sizes.join(", "),
                if self.met() { "met" } else { "missed" }
            ),
            None => format!("VM start: no figure ({})", sizes.join(", ")),
        }
    }
}

/// The qemu-virt board with 4 GiB of RAM (QEMU `-m 4096`), so that a 2 GiB VM fits beside
/// the hypervisor and the staging area: `boards.kdl`'s qemu-virt SoC and board with the
/// memory line and the QEMU line changed, written to `out_dir`.
fn board_4g(out_dir: &Path) -> Result<PathBuf, BenchError> {
    let path = workspace_root().join("boards.kdl");
    let text = std::fs::read_to_string(&path).map_err(|source| BenchError::Io {
        path: path.display().to_string(),
        source,
    })?;
    let block = |head: &str| -> Option<String> {
        let start = text.find(head)?;
        let len = text[start..].find("\n}\n")? + 3;
        Some(text[start..start + len].to_owned())
    };
    let missing = |what: &str| {
        BenchError::Build(format!(
            "boards.kdl has no `{what}` block ending in a `}}` line: the VM start bench derives its 4 GiB board from it"
        ))
    };
    let soc = block("soc \"qemu-virt\" {").ok_or_else(|| missing("soc \"qemu-virt\""))?;
    let board = block("board \"qemu-virt\" soc=\"qemu-virt\" {")
        .ok_or_else(|| missing("board \"qemu-virt\""))?;
    let changed = board
        .replace("board \"qemu-virt\"", "board \"qemu-virt-4g\"")
        .replace("memory-mib=2048", "memory-mib=4096")
        .replace("size=0x8000_0000", "size=0x1_0000_0000");
    if !changed.contains("memory-mib=4096") || !changed.contains("size=0x1_0000_0000") {
        return Err(BenchError::Build(
            "boards.kdl's qemu-virt board no longer says `memory-mib=2048` and `size=0x8000_0000`: update the VM start bench".into(),
        ));
    }
    write_file(
        &out_dir.join("qemu-virt-4g.kdl"),
        &format!("{soc}\n{changed}"),
    )
}

/// VM start: from the hypervisor's entry (its `entered_at=` counter) to the test guest's
/// first instruction (its `first_instruction_at=` counter; CNTVOFF_EL2 is 0, so both count
/// on one timeline), for a small and a large VM on the same 4 GiB board, under icount.
fn vm_start(
    out_dir: &Path,
    machine_opt: &Option<String>,
    guest_bin: &Path,
    walls: &mut Vec<(String, f64)>,
) -> Result<VmStart, BenchError> {
    let board_file = board_4g(out_dir)?;
    let mut insns = Vec::new();
    for mib in VM_START_MIB {
        let vms = write_file(
            &out_dir.join(format!("vm-start-{mib}.toml")),
            &format!(
                "[[vm]]\nname = \"start\"\nvcpus = 1\nmemory_mib = {mib}\nkernel = \"{}\"\ncmdline = \"\"\n",
                guest_bin.display()
            ),
        )?;
        let t = Target {
            board: "qemu-virt-4g".into(),
            board_file: board_file.clone(),
            vms,
            allow_experimental: false,
        };
        let name = format!("vm-start-{mib}");
        let img = image(&t, out_dir, &name)?;
        let r = run_qemu_until(
            hv_command(&img, machine_opt)?,
            &name,
            out_dir,
            180,
            "first_instruction_at=",
        )?;
        walls.push((r.name.clone(), r.wall_s));
        let value = |key: &str| r.lines.iter().find_map(|l| word_value(l, key));
        let entered = r.require(value("entered_at"), "[hv] hypervisor ... entered_at=")?;
        let freq = r.require(
            value("freq").filter(|&f| f > 0),
            "[hv] hypervisor ... freq=",
        )?;
        let first = r.require(
            value("first_instruction_at"),
            "[start] [test-guest] EL1 up: ... first_instruction_at=",
        )?;
        let ticks = first.saturating_sub(entered);
        insns.push((mib, ticks as f64 * 1e9 / freq as f64));
    }
    Ok(VmStart { insns })
}

/// Hypervisor memory of one VM and of one vCPU: a run with two VMs that differ only in
/// their vCPU count (1 and [`FOOTPRINT_VCPUS`]), each reported by the hypervisor as it
/// creates them (`hypervisor memory N B`: heap for the vGIC, stage-2 tables and devices,
/// plus the vCPUs' run state).
fn vm_memory(
    out_dir: &Path,
    machine_opt: &Option<String>,
    guest_bin: &Path,
    walls: &mut Vec<(String, f64)>,
) -> Result<VmMemory, BenchError> {
    let vm = |name: &str, vcpus: u32| {
        format!(
            "[[vm]]\nname = \"{name}\"\nvcpus = {vcpus}\nmemory_mib = 64\nkernel = \"{}\"\ncmdline = \"\"\n\n",
            guest_bin.display()
        )
    };
    let vms = write_file(
        &out_dir.join("footprint.toml"),
        &(vm("one", 1) + &vm("many", FOOTPRINT_VCPUS)),
    )?;
    let img = image(&qemu_virt(vms), out_dir, "footprint")?;
    let r = run_qemu(hv_command(&img, machine_opt)?, "footprint-hv", out_dir, 180)?;
    walls.push((r.name.clone(), r.wall_s));
    let one = r.require(
        vm_memory_bytes(&r.lines, "one"),
        "[hv] VM 0 `one`: ... hypervisor memory",
    )?;
    let many = r.require(
        vm_memory_bytes(&r.lines, "many"),
        "[hv] VM 1 `many`: ... hypervisor memory",
    )?;
    VmMemory::from_pair(one, many).ok_or_else(|| {
        BenchError::Build(format!(
            "footprint: the {FOOTPRINT_VCPUS}-vCPU VM reported {many} B, less than the 1-vCPU VM's {one} B"
        ))
    })
}

/// Per-VM and per-vCPU hypervisor memory.
#[derive(Clone, Copy, Debug, PartialEq)]
struct VmMemory {
    /// A 1-vCPU, 64 MiB VM.
    one_vcpu_bytes: u64,
    /// A [`FOOTPRINT_VCPUS`]-vCPU, 64 MiB VM.
    many_vcpus_bytes: u64,
}

impl VmMemory {
    fn from_pair(one: u64, many: u64) -> Option<Self> {
        (many >= one).then_some(Self {
            one_vcpu_bytes: one,
            many_vcpus_bytes: many,
        })
    }
    /// What one more vCPU costs.
    fn per_vcpu(&self) -> u64 {
        (self.many_vcpus_bytes - self.one_vcpu_bytes) / u64::from(FOOTPRINT_VCPUS - 1)
    }
    /// What a VM costs before its vCPUs.
    fn per_vm(&self) -> u64 {
        self.one_vcpu_bytes.saturating_sub(self.per_vcpu())
    }
}

/// `hypervisor memory N B` from the hypervisor's line about the VM named `name`.
fn vm_memory_bytes(lines: &[String], name: &str) -> Option<u64> {
    let tag = format!("`{name}`: ");
    let line = lines
        .iter()
        .find(|l| l.starts_with("[hv] VM ") && l.contains(&tag))?;
    let rest = &line[line.find("hypervisor memory ")? + "hypervisor memory ".len()..];
    rest.split_whitespace().next()?.parse().ok()
}

/// Debian's kernel, the benchmark initramfs and the image with them as a 4-vCPU VM: what
/// every Linux run boots.
struct LinuxSetup {
    kernel: PathBuf,
    initrd: PathBuf,
    img: Image,
}

impl LinuxSetup {
    fn prepare(out_dir: &Path) -> Result<Self, BenchError> {
        let images = crate::guest::ensure().map_err(BenchError::Build)?;
        let kernel = images
            .kernel(KERNEL_SERIES)
            .ok_or_else(|| {
                BenchError::Build(format!(
                    "no {KERNEL_SERIES} kernel in the guest cache; run `cargo xtask guest fetch`"
                ))
            })?
            .image
            .clone();
        let initrd = out_dir.join("bench-initramfs.cpio.gz");
        crate::guest::write_initramfs(
            &images,
            &crate::guest::init_script(&workload_script()),
            &initrd,
        )
        .map_err(BenchError::Build)?;
        let vms = write_file(
            &out_dir.join("linux.toml"),
            &format!(
                "[[vm]]\nname = \"linux\"\nvcpus = {LINUX_CPUS}\nmemory_mib = {LINUX_MIB}\nkernel = \"{}\"\ninitrd = \"{}\"\ncmdline = \"{LINUX_CMDLINE}\"\n",
                kernel.display(),
                initrd.display()
            ),
        )?;
        let img = image(&qemu_virt(vms), out_dir, "linux")?;
        Ok(Self {
            kernel,
            initrd,
            img,
        })
    }

    /// Bare QEMU booting the kernel and initramfs directly at EL1.
    fn bare_command(&self, machine_opt: &Option<String>) -> Command {
        let mut cmd = bare_command(machine_opt, LINUX_CPUS, LINUX_MIB);
        cmd.arg("-kernel")
            .arg(&self.kernel)
            .arg("-initrd")
            .arg(&self.initrd)
            .args(["-append", LINUX_CMDLINE])
            .args(ICOUNT_ARGS);
        cmd
    }
}

/// Wall clock from QEMU's start to the first line `/init` prints, bare and under the
/// hypervisor, `runs` times each in turn (bare, hypervisor, bare, ...) so that a change in the
/// host's load touches both sides alike. Each QEMU is stopped as soon as the line appears.
/// Same command lines as the Linux figures (`-icount` included): the difference is what
/// emulating EL2 and stage 2 costs the host, plus the hypervisor's own start-up (creating
/// the VM, copying the kernel and initramfs), which the printk figure leaves out.
fn boot_wall(
    setup: &LinuxSetup,
    out_dir: &Path,
    machine_opt: &Option<String>,
    runs: usize,
    walls: &mut Vec<(String, f64)>,
) -> Result<Row, BenchError> {
    let mut bare = Vec::new();
    let mut hv = Vec::new();
    for run in 1..=runs {
        let cmd = setup.bare_command(machine_opt);
        let r = run_qemu_until(
            cmd,
            &format!("wall-bare-{run}"),
            out_dir,
            300,
            USERSPACE_MARKER,
        )?;
        bare.push(r.require(r.first_line_s(USERSPACE_MARKER), USERSPACE_MARKER)?);
        walls.push((r.name.clone(), r.wall_s));
        let cmd = hv_command(&setup.img, machine_opt)?;
        let r = run_qemu_until(
            cmd,
            &format!("wall-hv-{run}"),
            out_dir,
            600,
            USERSPACE_MARKER,
        )?;
        hv.push(r.require(r.first_line_s(USERSPACE_MARKER), USERSPACE_MARKER)?);
        walls.push((r.name.clone(), r.wall_s));
    }
    Ok(Row::wall_clock(
        "wall: QEMU start -> first userspace line",
        bare,
        hv,
        Goal::RatioAtMost(TARGET_BOOT_WALL_RATIO),
    ))
}

/// Boot, CPU-bound and memory-bound figures of Debian's kernel, bare and as a 4-vCPU VM.
fn linux(
    setup: &LinuxSetup,
    out_dir: &Path,
    machine_opt: &Option<String>,
    reps: usize,
    rows: &mut Vec<Row>,
    walls: &mut Vec<(String, f64)>,
) -> Result<(), BenchError> {
    let mut bare = Vec::new();
    let mut hv = Vec::new();
    for rep in 1..=reps {
        let cmd = setup.bare_command(machine_opt);
        let r = run_qemu(cmd, &format!("linux-bare-{rep}"), out_dir, 300)?;
        bare.push(r.linux_figures()?);
        walls.push((r.name.clone(), r.wall_s));
        let r = run_qemu(
            hv_command(&setup.img, machine_opt)?,
            &format!("linux-hv-{rep}"),
            out_dir,
            600,
        )?;
        hv.push(r.linux_figures()?);
        walls.push((r.name.clone(), r.wall_s));
    }
    let pick = |v: &[LinuxFigures], f: fn(&LinuxFigures) -> f64| v.iter().map(f).collect();
    rows.push(Row::new(
        "boot to /init (printk)",
        "ms",
        pick(&bare, |f| f.boot_s * 1e3),
        pick(&hv, |f| f.boot_s * 1e3),
        Goal::OverheadPct(TARGET_BOOT_OVERHEAD_PCT),
    ));
    rows.push(Row::new(
        &format!("CPU: shell loop x{CPU_LOOP}"),
        "ms",
        pick(&bare, |f| f.cpu_ns as f64 / 1e6),
        pick(&hv, |f| f.cpu_ns as f64 / 1e6),
        Goal::None,
    ));
    rows.push(Row::new(
        &format!("memory: dd {MEM_MIB} MiB zero->null"),
        "ms",
        pick(&bare, |f| f.mem_ns as f64 / 1e6),
        pick(&hv, |f| f.mem_ns as f64 / 1e6),
        Goal::None,
    ));
    Ok(())
}

/// The body of the benchmark initramfs's `/init` (after the mounts of `guest::init_script`).
/// Busybox's `date` has no `%N`, so time stamps are the kernel's `now at N nsecs` from
/// `/proc/timer_list` (nanoseconds of guest time; reading it costs the same at both ends),
/// printed raw and subtracted on the host (ash arithmetic may be 32-bit).
fn workload_script() -> String {
    format!(
        "now() {{ grep -m1 'now at' /proc/timer_list | cut -d' ' -f3; }}\n\
         echo \"[initramfs] userspace up: $(uname -r)\"\n\
         echo \"[bench] uptime_s=$(cut -d' ' -f1 /proc/uptime)\"\n\
         t0=$(now); i=0; while [ $i -lt {CPU_LOOP} ]; do i=$((i+1)); done; t1=$(now)\n\
         echo \"[bench] cpu_t0=$t0 cpu_t1=$t1\"\n\
         t0=$(now); dd if=/dev/zero of=/dev/null bs=1M count={MEM_MIB} 2>/dev/null; t1=$(now)\n\
         echo \"[bench] mem_t0=$t0 mem_t1=$t1\"\n\
         echo \"[bench] done\""
    )
}

fn qemu_virt(vms: PathBuf) -> Target {
    Target {
        board: "qemu-virt".into(),
        board_file: workspace_root().join("boards.kdl"),
        vms,
        allow_experimental: false,
    }
}

/// Builds the image for `t` and keeps a private copy, so that a concurrent `cargo xtask test`
/// rebuilding `target/images/qemu-virt.elf` cannot swap it under this run.
fn image(t: &Target, out_dir: &Path, name: &str) -> Result<Image, BenchError> {
    let mut img = build::image(t).map_err(BenchError::Build)?;
    let copy = out_dir.join(format!("qemu-virt-{name}.elf"));
    std::fs::copy(&img.elf, &copy).map_err(|source| BenchError::Io {
        path: img.elf.display().to_string(),
        source,
    })?;
    img.elf = copy;
    Ok(img)
}

/// `-M virt` option that turns off the DTB's random seeds, if this QEMU has one.
fn dtb_randomness_option() -> Option<String> {
    let out = Command::new(QEMU).args(["-M", "virt,help"]).output().ok()?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    machine_option_from_help(&text).map(str::to_owned)
}

/// Picks the option from `-M virt,help` output: `dtb-randomness` (QEMU >= 7.2), else the
/// older `dtb-kaslr-seed`.
fn machine_option_from_help(help: &str) -> Option<&'static str> {
    let has = |name: &str| {
        help.lines()
            .any(|l| l.trim_start().starts_with(&format!("{name}=")))
    };
    if has("dtb-randomness") {
        Some("dtb-randomness=off")
    } else if has("dtb-kaslr-seed") {
        Some("dtb-kaslr-seed=off")
    } else {
        None
    }
}

fn with_machine_option(machine: &str, opt: &Option<String>) -> String {
    match opt {
        Some(o) => format!("{machine},{o}"),
        None => machine.to_owned(),
    }
}

/// Bare QEMU `virt` (GICv3, no EL2) with `cpus` CPUs and `mib` MiB.
fn bare_command(opt: &Option<String>, cpus: u32, mib: u32) -> Command {
    let mut c = Command::new(QEMU);
    c.args(["-M", &with_machine_option("virt,gic-version=3", opt)])
        .args(["-cpu", "cortex-a57", "-smp", &cpus.to_string()])
        .args(["-m", &mib.to_string()])
        .args(["-nographic", "-no-reboot", "-net", "none"]);
    c
}

/// The board's own QEMU line for `img` with the icount flags added.
fn hv_command(img: &Image, opt: &Option<String>) -> Result<Command, BenchError> {
    let base = qemu::command(img, None).map_err(BenchError::Build)?;
    let mut c = Command::new(base.get_program());
    let mut machine_next = false;
    for a in base.get_args() {
        let a = a.to_string_lossy();
        if machine_next {
            c.arg(with_machine_option(&a, opt));
        } else {
            c.arg(a.as_ref());
        }
        machine_next = a == "-M" || a == "-machine";
    }
    c.args(ICOUNT_ARGS);
    Ok(c)
}

/// The output of one QEMU run.
struct RunOutput {
    name: String,
    lines: Vec<String>,
    /// Host seconds from QEMU's start to each line's arrival, one per line.
    line_s: Vec<f64>,
    wall_s: f64,
    log: PathBuf,
}

impl RunOutput {
    /// Host seconds from QEMU's start to the first line containing `marker`.
    fn first_line_s(&self, marker: &str) -> Option<f64> {
        first_line_time(&self.lines, &self.line_s, marker)
    }

    fn require<T>(&self, v: Option<T>, what: &str) -> Result<T, BenchError> {
        v.ok_or_else(|| BenchError::Missing {
            run: self.name.clone(),
            what: what.into(),
            log: self.log.display().to_string(),
        })
    }

    fn linux_figures(&self) -> Result<LinuxFigures, BenchError> {
        Ok(LinuxFigures {
            boot_s: self.require(printk_time(&self.lines, INIT_MARKER), INIT_MARKER)?,
            cpu_ns: self.require(
                bench_interval(&self.lines, "cpu"),
                "[bench] cpu_t0=.. cpu_t1=..",
            )?,
            mem_ns: self.require(
                bench_interval(&self.lines, "mem"),
                "[bench] mem_t0=.. mem_t1=..",
            )?,
        })
    }
}

struct Killer(Child);
impl Drop for Killer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until no QEMU runs on this machine (a concurrent `cargo xtask test`): the figures
/// are instruction counts, but the wall-clock times and the host's two cores are shared.
fn wait_for_other_qemu() {
    let mut said = false;
    while Command::new("pgrep")
        .args(["-f", QEMU])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        if !said {
            eprintln!("bench: another {QEMU} is running; waiting for it to end");
            said = true;
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// Runs `cmd` until QEMU exits by itself (the guests power off), logging its output.
fn run_qemu(
    cmd: Command,
    name: &str,
    out_dir: &Path,
    timeout_s: u64,
) -> Result<RunOutput, BenchError> {
    run_qemu_inner(cmd, name, out_dir, timeout_s, None)
}

/// Runs `cmd` until a line containing `stop_at` appears, then stops QEMU.
fn run_qemu_until(
    cmd: Command,
    name: &str,
    out_dir: &Path,
    timeout_s: u64,
    stop_at: &str,
) -> Result<RunOutput, BenchError> {
    run_qemu_inner(cmd, name, out_dir, timeout_s, Some(stop_at))
}

fn run_qemu_inner(
    mut cmd: Command,
    name: &str,
    out_dir: &Path,
    timeout_s: u64,
    stop_at: Option<&str>,
) -> Result<RunOutput, BenchError> {
    wait_for_other_qemu();
    let log_path = out_dir.join(format!("{name}.log"));
    let mut log = std::fs::File::create(&log_path).map_err(|source| BenchError::Io {
        path: log_path.display().to_string(),
        source,
    })?;
    let _ = writeln!(log, "$ {cmd:?}");
    eprintln!("bench: {name}");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = Killer(cmd.spawn().map_err(|source| BenchError::Spawn {
        run: name.into(),
        source,
    })?);
    let stdout = child.0.stdout.take();
    let mut stderr = child.0.stderr.take();
    // Each line is stamped as it is read, not when this thread gets to it.
    let (tx, rx) = mpsc::channel::<(f64, String)>();
    std::thread::spawn(move || {
        let Some(stdout) = stdout else { return };
        for line in BufReader::new(stdout).split(b'\n') {
            let Ok(line) = line else { break };
            let at = start.elapsed().as_secs_f64();
            let line = String::from_utf8_lossy(&line)
                .trim_end_matches('\r')
                .to_owned();
            if tx.send((at, line)).is_err() {
                break;
            }
        }
    });
    let deadline = Duration::from_secs(timeout_s);
    let mut lines = Vec::new();
    let mut line_s = Vec::new();
    loop {
        let left = deadline.saturating_sub(start.elapsed());
        if left.is_zero() {
            return Err(BenchError::Timeout {
                run: name.into(),
                secs: timeout_s,
                log: log_path.display().to_string(),
            });
        }
        match rx.recv_timeout(left) {
            Ok((at, line)) => {
                let _ = writeln!(log, "{line}");
                if let Some(bad) = ABORT_ON.iter().find(|b| line.contains(*b)) {
                    return Err(BenchError::Missing {
                        run: name.into(),
                        what: format!("a clean run (saw `{bad}`)"),
                        log: log_path.display().to_string(),
                    });
                }
                let stop = stop_at.is_some_and(|m| line.contains(m));
                lines.push(line);
                line_s.push(at);
                if stop {
                    let _ = writeln!(log, "--- stopped at the first `{}`", stop_at.unwrap_or(""));
                    let _ = child.0.kill();
                    break;
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let status = child.0.wait().ok();
    let wall_s = start.elapsed().as_secs_f64();
    let mut err = String::new();
    if let Some(s) = stderr.as_mut() {
        let _ = s.read_to_string(&mut err);
    }
    let _ = writeln!(
        log,
        "--- stderr ---\n{err}\n--- exit: {status:?}, {wall_s:.2} s"
    );
    Ok(RunOutput {
        name: name.into(),
        lines,
        line_s,
        wall_s,
        log: log_path,
    })
}

/// One figure of the test guest's `BENCH` line, in instructions.
type ExitFigure = fn(&ExitBench) -> f64;

/// The test guest's `BENCH` line.
#[derive(Clone, Copy, Debug, PartialEq)]
struct ExitBench {
    hvc_ticks: u64,
    psci_ticks: u64,
    mmio_ticks: u64,
    mmio_gic_ticks: u64,
    vtimer_idle_ticks: u64,
    vtimer_busy_ticks: u64,
    sgi_ticks: u64,
    freq: u64,
}

impl ExitBench {
    /// Ticks to instructions: under `-icount shift=0` one instruction is one nanosecond.
    fn insns(&self, ticks: u64) -> f64 {
        ticks as f64 * 1e9 / self.freq as f64
    }
    fn hvc_insns(&self) -> f64 {
        self.insns(self.hvc_ticks)
    }
    fn psci_insns(&self) -> f64 {
        self.insns(self.psci_ticks)
    }
    fn mmio_insns(&self) -> f64 {
        self.insns(self.mmio_ticks)
    }
    fn mmio_gic_insns(&self) -> f64 {
        self.insns(self.mmio_gic_ticks)
    }
    fn vtimer_idle_insns(&self) -> f64 {
        self.insns(self.vtimer_idle_ticks)
    }
    fn vtimer_busy_insns(&self) -> f64 {
        self.insns(self.vtimer_busy_ticks)
    }
    fn sgi_insns(&self) -> f64 {
        self.insns(self.sgi_ticks)
    }
}

/// `key=value` (unsigned) from a line of space-separated words.
fn word_value(line: &str, key: &str) -> Option<u64> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
}

/// The first `[test-guest] BENCH hvc_ticks=.. psci_ticks=.. mmio_ticks=.. mmio_gic_ticks=.. vtimer_idle_ticks=..
/// vtimer_busy_ticks=.. sgi_ticks=.. freq=..` line (any VM prefix). A latency of `u64::MAX`
/// (an interrupt that never came) or a zero frequency rejects the line.
fn parse_exit_bench(lines: &[String]) -> Option<ExitBench> {
    let line = lines.iter().find(|l| l.contains("[test-guest] BENCH "))?;
    let b = ExitBench {
        hvc_ticks: word_value(line, "hvc_ticks")?,
        psci_ticks: word_value(line, "psci_ticks")?,
        mmio_ticks: word_value(line, "mmio_ticks")?,
        mmio_gic_ticks: word_value(line, "mmio_gic_ticks")?,
        vtimer_idle_ticks: word_value(line, "vtimer_idle_ticks")?,
        vtimer_busy_ticks: word_value(line, "vtimer_busy_ticks")?,
        sgi_ticks: word_value(line, "sgi_ticks")?,
        freq: word_value(line, "freq")?,
    };
    let latencies = [b.vtimer_idle_ticks, b.vtimer_busy_ticks, b.sgi_ticks];
    (b.freq > 0 && latencies.iter().all(|&t| t != u64::MAX)).then_some(b)
}

/// The printk timestamp (seconds) of the first line containing `marker`:
/// `[linux] [    0.889211] Run /init as init process` gives 0.889211.
fn printk_time(lines: &[String], marker: &str) -> Option<f64> {
    let line = lines.iter().find(|l| l.contains(marker))?;
    let before = &line[..line.find(marker)?];
    let open = before.rfind('[')?;
    let close = open + before[open..].find(']')?;
    before[open + 1..close].trim().parse().ok()
}

/// The arrival time (`times`, one per line) of the first line containing `marker`.
fn first_line_time(lines: &[String], times: &[f64], marker: &str) -> Option<f64> {
    let i = lines.iter().position(|l| l.contains(marker))?;
    times.get(i).copied()
}

/// A value the benchmark `/init` printed as `[bench] key=value`.
fn bench_value(lines: &[String], key: &str) -> Option<u64> {
    lines
        .iter()
        .filter(|l| l.contains("[bench] "))
        .find_map(|l| word_value(l, key))
}

/// `name_t1 - name_t0` from `[bench]` lines; `None` if either is missing or they go back.
fn bench_interval(lines: &[String], name: &str) -> Option<u64> {
    let t0 = bench_value(lines, &format!("{name}_t0"))?;
    let t1 = bench_value(lines, &format!("{name}_t1"))?;
    t1.checked_sub(t0)
}

/// The heap size in the hypervisor banner: `[hv] image 0x..0x.. (6248 KiB), heap 26520 KiB`.
fn banner_heap_kib(lines: &[String]) -> Option<u64> {
    let line = lines.iter().find(|l| l.starts_with("[hv] image "))?;
    let rest = &line[line.find("heap ")? + 5..];
    rest.split_whitespace().next()?.parse().ok()
}

fn walls_log_heap(log: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(log).ok()?;
    let lines: Vec<String> = text.lines().map(str::to_owned).collect();
    banner_heap_kib(&lines)
}

/// Figures of one Linux run.
#[derive(Clone, Copy, Debug)]
struct LinuxFigures {
    boot_s: f64,
    cpu_ns: u64,
    mem_ns: u64,
}

/// Bytes an ELF image occupies: in its file segments (what a raw binary holds) and in
/// memory from its lowest to its highest loaded address (with `.bss` and stacks).
#[derive(Clone, Debug, PartialEq)]
struct Footprint {
    file_bytes: u64,
    mem_bytes: u64,
    /// `file_bytes` by part, largest first ([`parts::image_parts`]), and the bytes in no
    /// symbol.
    parts: Vec<(parts::Part, u64)>,
    unattributed: u64,
}

fn loadable_bytes(elf: &Path) -> Result<Footprint, BenchError> {
    let data = std::fs::read(elf).map_err(|source| BenchError::Io {
        path: elf.display().to_string(),
        source,
    })?;
    let not_elf = || {
        BenchError::Build(format!(
            "{} is not an ELF file with loadable segments",
            elf.display()
        ))
    };
    let mut fp = footprint_of(&data).ok_or_else(not_elf)?;
    (fp.parts, fp.unattributed) = parts::image_parts(&data).ok_or_else(not_elf)?;
    let counted = fp.parts.iter().map(|p| p.1).sum::<u64>() + fp.unattributed;
    if counted != fp.file_bytes {
        return Err(BenchError::Build(format!(
            "{}: its parts add up to {counted} bytes, its loadable segments to {}",
            elf.display(),
            fp.file_bytes
        )));
    }
    Ok(fp)
}

fn footprint_of(data: &[u8]) -> Option<Footprint> {
    use object::{Object, ObjectSegment};
    let file = object::File::parse(data).ok()?;
    let segs: Vec<(u64, u64, u64)> = file
        .segments()
        .map(|s| (s.address(), s.file_range().1, s.size()))
        .filter(|s| s.2 > 0)
        .collect();
    let lo = segs.iter().map(|s| s.0).min()?;
    let hi = segs.iter().map(|s| s.0 + s.2).max()?;
    Some(Footprint {
        file_bytes: segs.iter().map(|s| s.1).sum(),
        mem_bytes: hi - lo,
        parts: Vec::new(),
        unattributed: 0,
    })
}

/// What a figure is held against.
#[derive(Clone, Copy, Debug)]
enum Goal {
    /// Hypervisor minus bare at most this many (instructions).
    Overhead(f64),
    /// Hypervisor over bare at most this many percent.
    OverheadPct(f64),
    /// Hypervisor's median at most this many times bare's median.
    RatioAtMost(f64),
    /// Reported only.
    None,
}

/// How a row's repetitions are summarised.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Measure {
    /// Guest-visible figures under `-icount`: repetitions must agree; the first is shown.
    Icount,
    /// Host wall-clock seconds: they vary, so medians and min..max of each side.
    WallClock,
}

/// One line of the table: a figure per repetition, bare and under the hypervisor.
struct Row {
    name: String,
    unit: &'static str,
    bare: Vec<f64>,
    hv: Vec<f64>,
    target: Goal,
    measure: Measure,
}

impl Row {
    fn new(name: &str, unit: &'static str, bare: Vec<f64>, hv: Vec<f64>, target: Goal) -> Self {
        Self {
            name: name.into(),
            unit,
            bare,
            hv,
            target,
            measure: Measure::Icount,
        }
    }

    /// A wall-clock row in seconds, from interleaved runs.
    fn wall_clock(name: &str, bare: Vec<f64>, hv: Vec<f64>, target: Goal) -> Self {
        Self {
            measure: Measure::WallClock,
            ..Self::new(name, "s", bare, hv, target)
        }
    }

    /// The figure compared: the first repetition under icount, the median of wall clock.
    fn summary(&self, v: &[f64]) -> f64 {
        match self.measure {
            Measure::Icount => v.first().copied(),
            Measure::WallClock => median(v),
        }
        .unwrap_or(0.0)
    }

    fn bare0(&self) -> f64 {
        self.summary(&self.bare)
    }

    fn hv0(&self) -> f64 {
        self.summary(&self.hv)
    }

    /// Hypervisor over bare in percent (first repetition, or medians).
    fn overhead_pct(&self) -> Option<f64> {
        self.ratio().map(|r| (r - 1.0) * 100.0)
    }

    /// Hypervisor over bare as a factor (first repetition, or medians).
    fn ratio(&self) -> Option<f64> {
        (self.bare0() > 0.0).then(|| self.hv0() / self.bare0())
    }

    /// Do all repetitions agree within 1 %? `None` with a single repetition, and for wall
    /// clock, which is not expected to repeat (its spread is shown instead).
    fn repeatable(&self) -> Option<bool> {
        (self.measure == Measure::Icount && self.bare.len() > 1)
            .then(|| agree(&self.bare) && agree(&self.hv))
    }

    /// One side's figures for the table: every repetition, or `median (min..max)`.
    fn show(&self, v: &[f64]) -> String {
        match (self.measure, spread(v)) {
            (Measure::WallClock, Some((lo, hi))) => {
                format!("{:.2} ({lo:.2}..{hi:.2})", self.summary(v))
            }
            _ => fmt_reps(v),
        }
    }

    /// The verdict against the target, with the miss when there is one.
    fn verdict(&self) -> String {
        match self.target {
            Goal::None => "-".into(),
            Goal::Overhead(max) => {
                let cost = self.hv0() - self.bare0();
                if cost <= max {
                    format!("met (<= {max:.0})")
                } else {
                    format!("missed by {:.0} ({:.1}x)", cost - max, cost / max)
                }
            }
            Goal::OverheadPct(max) => match self.overhead_pct() {
                Some(p) if p <= max => format!("met (<= {max:.0} %)"),
                Some(p) => format!("missed by {:.1} points", p - max),
                None => "no bare figure".into(),
            },
            Goal::RatioAtMost(max) => match self.ratio() {
                Some(r) if r <= max => format!("met (<= {max:.1}x)"),
                Some(r) => format!("missed: {r:.2}x > {max:.1}x"),
                None => "no bare figure".into(),
            },
        }
    }
}

/// The median (the mean of the middle two for an even count); `None` when empty.
fn median(values: &[f64]) -> Option<f64> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

/// The smallest and largest value; `None` when empty.
fn spread(values: &[f64]) -> Option<(f64, f64)> {
    let lo = values.iter().copied().min_by(f64::total_cmp)?;
    let hi = values.iter().copied().max_by(f64::total_cmp)?;
    Some((lo, hi))
}

/// The image-size line's verdict against [`TARGET_IMAGE_KIB`].
fn image_verdict(loadable_kib: u64) -> String {
    if loadable_kib <= TARGET_IMAGE_KIB {
        "met".into()
    } else {
        format!("missed by {} KiB", loadable_kib - TARGET_IMAGE_KIB)
    }
}

/// True when every value is within [`AGREEMENT_PCT`] of the first.
fn agree(values: &[f64]) -> bool {
    let Some(&first) = values.first() else {
        return true;
    };
    values.iter().all(|&v| {
        if first == 0.0 {
            v == 0.0
        } else {
            ((v - first) / first).abs() * 100.0 <= AGREEMENT_PCT
        }
    })
}

fn fmt_reps(v: &[f64]) -> String {
    v.iter()
        .map(|x| format!("{x:.1}"))
        .collect::<Vec<_>>()
        .join(" / ")
}

fn print_table(
    rows: &[Row],
    fp: &Footprint,
    heap_kib: Option<u64>,
    mem: &VmMemory,
    walls: &[(String, f64)],
    smoke: bool,
) {
    println!(
        "\nbench ({}; -icount shift=0: 1 insn = 1 ns of guest time)",
        if smoke { "smoke" } else { "full" }
    );
    println!(
        "{:<32} {:>6} {:>20} {:>20} {:>9} {:>11}  target",
        "figure", "unit", "bare", "hypervisor", "overhead", "repeatable"
    );
    for r in rows {
        let over = match (r.measure, r.unit, r.ratio()) {
            (Measure::WallClock, _, Some(x)) => format!("{x:.2}x"),
            (_, "insns", _) => format!("+{:.0}", r.hv0() - r.bare0()),
            (_, _, Some(x)) => format!("{:+.1} %", (x - 1.0) * 100.0),
            (_, _, None) => "-".into(),
        };
        let rep = match (r.measure, r.repeatable()) {
            (Measure::WallClock, _) => format!("{} runs", r.bare.len()),
            (_, Some(true)) => "yes (1 %)".into(),
            (_, Some(false)) => "NO".into(),
            (_, None) => "1 run".into(),
        };
        println!(
            "{:<32} {:>6} {:>20} {:>20} {:>9} {:>11}  {}",
            r.name,
            r.unit,
            r.show(&r.bare),
            r.show(&r.hv),
            over,
            rep,
            r.verdict()
        );
    }
    if rows.iter().any(|r| r.measure == Measure::WallClock) {
        println!("(wall rows: host seconds, median (min..max) of interleaved runs, hypervisor/bare of the medians)");
    }
    let kib = |b: u64| b.div_ceil(1024);
    println!(
        "image qemu-virt: {} KiB loadable (file bytes of the ELF's PT_LOAD segments; {} KiB in memory with .bss/stacks); budget with storage, networking and management built in <= {TARGET_IMAGE_KIB} KiB: {}",
        kib(fp.file_bytes),
        kib(fp.mem_bytes),
        image_verdict(kib(fp.file_bytes))
    );
    let parts: Vec<String> = fp
        .parts
        .iter()
        .map(|(p, b)| format!("{} {} KiB", p.name(), kib(*b)))
        .collect();
    println!(
        "image by part (symbol sizes; generic code counts for the crate that defines it): {}, in no symbol (constants, relocations) {} KiB",
        parts.join(", "),
        kib(fp.unattributed)
    );
    match heap_kib {
        Some(h) => println!("hypervisor heap: {h} KiB reserved"),
        None => println!("hypervisor heap: not reported by the banner"),
    }
    println!(
        "hypervisor memory: {} B per VM + {} B per vCPU (VMs of 1 and {FOOTPRINT_VCPUS} vCPUs, 64 MiB: {} / {} B)",
        mem.per_vm(),
        mem.per_vcpu(),
        mem.one_vcpu_bytes,
        mem.many_vcpus_bytes
    );
    let walls: Vec<String> = walls.iter().map(|(n, s)| format!("{n} {s:.1} s")).collect();
    println!("wall clock: {}", walls.join(", "));
}

fn results_json(
    rows: &[Row],
    fp: &Footprint,
    heap_kib: Option<u64>,
    mem: &VmMemory,
    walls: &[(String, f64)],
    smoke: bool,
) -> serde_json::Value {
    use serde_json::json;
    let figures: Vec<_> = rows
        .iter()
        .map(|r| {
            json!({
                "name": r.name,
                "unit": r.unit,
                "measure": match r.measure {
                    Measure::Icount => "icount",
                    Measure::WallClock => "wall_clock",
                },
                "bare": r.bare,
                "hypervisor": r.hv,
                "bare_median": median(&r.bare),
                "hypervisor_median": median(&r.hv),
                "bare_min_max": spread(&r.bare),
                "hypervisor_min_max": spread(&r.hv),
                "ratio": r.ratio(),
                "overhead_pct": r.overhead_pct(),
                "repeatable_within_1pct": r.repeatable(),
                "target": r.verdict(),
            })
        })
        .collect();
    json!({
        "mode": if smoke { "smoke" } else { "full" },
        "qemu_flags": ICOUNT_ARGS,
        "figures": figures,
        "image_qemu_virt": {
            "loadable_file_bytes": fp.file_bytes,
            "memory_bytes": fp.mem_bytes,
            "target_kib": TARGET_IMAGE_KIB,
            "target": image_verdict(fp.file_bytes.div_ceil(1024)),
            "parts_bytes": fp.parts.iter().map(|(p, b)| json!({"part": p.name(), "bytes": b})).collect::<Vec<_>>(),
            "unattributed_bytes": fp.unattributed,
        },
        "hypervisor_heap_kib": heap_kib,
        "hypervisor_memory": {
            "per_vm_bytes": mem.per_vm(),
            "per_vcpu_bytes": mem.per_vcpu(),
            "vm_1_vcpu_64mib_bytes": mem.one_vcpu_bytes,
            "vm_4_vcpus_64mib_bytes": mem.many_vcpus_bytes,
        },
        "wall_clock_s": walls.iter().map(|(n, s)| json!({"run": n, "seconds": s})).collect::<Vec<_>>(),
    })
}

fn mkdir(dir: &Path) -> Result<(), BenchError> {
    std::fs::create_dir_all(dir).map_err(|source| BenchError::Io {
        path: dir.display().to_string(),
        source,
    })
}

fn write_file(path: &Path, text: &str) -> Result<PathBuf, BenchError> {
    std::fs::write(path, text).map_err(|source| BenchError::Io {
        path: path.display().to_string(),
        source,
    })?;
    Ok(path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn exit_bench_line_is_parsed_with_a_vm_prefix() {
        let out = lines(&[
            "[bench] [test-guest] RESULT: 5 passed, 0 failed",
            "[bench] [test-guest] BENCH hvc_ticks=37 psci_ticks=41 mmio_ticks=52 mmio_gic_ticks=70 vtimer_idle_ticks=60 vtimer_busy_ticks=40 sgi_ticks=90 freq=62500000",
        ]);
        let b = parse_exit_bench(&out).unwrap();
        assert_eq!(
            b,
            ExitBench {
                hvc_ticks: 37,
                psci_ticks: 41,
                mmio_ticks: 52,
                mmio_gic_ticks: 70,
                vtimer_idle_ticks: 60,
                vtimer_busy_ticks: 40,
                sgi_ticks: 90,
                freq: 62_500_000
            }
        );
        assert_eq!(b.hvc_insns(), 592.0);
        assert_eq!(b.psci_insns(), 656.0);
        assert_eq!(b.mmio_insns(), 832.0);
        assert_eq!(b.mmio_gic_insns(), 1120.0);
        assert_eq!(b.vtimer_idle_insns(), 960.0);
        assert_eq!(b.vtimer_busy_insns(), 640.0);
        assert_eq!(b.sgi_insns(), 1440.0);
    }

    #[test]
    fn vm_memory_from_the_creation_lines() {
        let out = lines(&[
            "[hv] VM 0 `one`: 1 vCPU(s) on pCPU(s) [0], 64 MiB RAM at host 0x42400000, hypervisor memory 20000 B",
            "[hv] VM 1 `many`: 4 vCPU(s) on pCPU(s) [1, 2, 3, 0], 64 MiB RAM at host 0x46400000, hypervisor memory 23000 B",
        ]);
        let m = VmMemory::from_pair(
            vm_memory_bytes(&out, "one").unwrap(),
            vm_memory_bytes(&out, "many").unwrap(),
        )
        .unwrap();
        assert_eq!((m.per_vm(), m.per_vcpu()), (19000, 1000));
        assert_eq!(vm_memory_bytes(&out, "other"), None);
        assert_eq!(VmMemory::from_pair(5, 4), None);
    }

    #[test]
    fn exit_bench_line_missing_a_field_or_frequency_is_rejected() {
        assert!(parse_exit_bench(&lines(&["[test-guest] BENCH hvc_ticks=1 freq=10"])).is_none());
        assert!(parse_exit_bench(&lines(&[
            "[test-guest] BENCH hvc_ticks=1 mmio_ticks=2 freq=0"
        ]))
        .is_none());
        assert!(parse_exit_bench(&lines(&["[test-guest] PASS sgi"])).is_none());
        let never = format!(
            "[test-guest] BENCH hvc_ticks=1 psci_ticks=6 mmio_ticks=2 mmio_gic_ticks=5 vtimer_idle_ticks=3 vtimer_busy_ticks=4 sgi_ticks={} freq=10",
            u64::MAX
        );
        assert!(parse_exit_bench(&lines(&[&never])).is_none());
    }

    #[test]
    fn printk_timestamp_of_run_init_bare_and_prefixed() {
        let bare = lines(&["[    0.889211] Run /init as init process"]);
        assert_eq!(printk_time(&bare, INIT_MARKER), Some(0.889211));
        let hv = lines(&[
            "[linux] [    0.000000] Booting Linux",
            "[linux] [   12.500000] Run /init as init process",
        ]);
        assert_eq!(printk_time(&hv, INIT_MARKER), Some(12.5));
        assert_eq!(
            printk_time(&lines(&["Run /init as init process"]), INIT_MARKER),
            None
        );
    }

    #[test]
    fn bench_values_come_only_from_bench_lines() {
        let out = lines(&[
            "cpu_ns=1",
            "[linux] [bench] cpu_ns=123456789",
            "[bench] mem_ns=42",
        ]);
        assert_eq!(bench_value(&out, "cpu_ns"), Some(123_456_789));
        assert_eq!(bench_value(&out, "mem_ns"), Some(42));
        assert_eq!(bench_value(&out, "uptime_s"), None);
    }

    #[test]
    fn intervals_subtract_raw_timer_list_stamps() {
        let out = lines(&[
            "[linux] [bench] cpu_t0=866788688 cpu_t1=3866788690",
            "[bench] mem_t0=5 mem_t1=4",
        ]);
        assert_eq!(bench_interval(&out, "cpu"), Some(3_000_000_002));
        assert_eq!(bench_interval(&out, "mem"), None);
        assert_eq!(bench_interval(&out, "io"), None);
    }

    #[test]
    fn workload_prints_what_the_parsers_read() {
        let script = workload_script();
        assert!(script.contains("grep -m1 'now at' /proc/timer_list | cut -d' ' -f3"));
        assert!(script.contains("while [ $i -lt 200000 ]; do i=$((i+1)); done"));
        assert!(script.contains("echo \"[bench] cpu_t0=$t0 cpu_t1=$t1\"\n"));
        assert!(script.contains("dd if=/dev/zero of=/dev/null bs=1M count=512 2>/dev/null"));
        assert!(script.contains("echo \"[bench] mem_t0=$t0 mem_t1=$t1\"\n"));
    }

    #[test]
    fn heap_size_from_the_banner() {
        let out = lines(&["[hv] image 0x40200000..0x4081a000 (6248 KiB), heap 26520 KiB"]);
        assert_eq!(banner_heap_kib(&out), Some(26520));
        assert_eq!(banner_heap_kib(&lines(&["[hv] board: x"])), None);
    }

    #[test]
    fn machine_option_prefers_dtb_randomness() {
        let new = "virt-7.2 options:\n  dtb-kaslr-seed=<bool>  - Deprecated\n  dtb-randomness=<bool>  - Set off";
        assert_eq!(machine_option_from_help(new), Some("dtb-randomness=off"));
        let old = "  dtb-kaslr-seed=<bool>  - Set off";
        assert_eq!(machine_option_from_help(old), Some("dtb-kaslr-seed=off"));
        assert_eq!(machine_option_from_help("  gic-version=<string>"), None);
    }

    #[test]
    fn agreement_is_within_one_percent_of_the_first() {
        assert!(agree(&[100.0, 100.9]));
        assert!(!agree(&[100.0, 101.5]));
        assert!(agree(&[0.0, 0.0]));
        assert!(!agree(&[0.0, 1.0]));
    }

    #[test]
    fn verdicts_say_by_how_much_a_target_is_missed() {
        let r = Row::new("x", "insns", vec![10.0], vec![610.0], Goal::Overhead(300.0));
        assert_eq!(r.verdict(), "missed by 300 (2.0x)");
        let r = Row::new("x", "ms", vec![100.0], vec![104.0], Goal::OverheadPct(5.0));
        assert_eq!(r.verdict(), "met (<= 5 %)");
        let r = Row::new("x", "ms", vec![100.0], vec![110.0], Goal::OverheadPct(5.0));
        assert_eq!(r.verdict(), "missed by 5.0 points");
    }

    #[test]
    fn wall_clock_rows_compare_medians_against_the_ratio_target() {
        let r = Row::wall_clock(
            "x",
            vec![2.0, 9.0, 2.2, 1.8, 2.1],
            vec![2.2, 2.3, 1.0, 2.2, 30.0],
            Goal::RatioAtMost(1.1),
        );
        assert_eq!((r.bare0(), r.hv0()), (2.1, 2.2));
        assert_eq!(r.verdict(), "met (<= 1.1x)");
        assert_eq!(r.show(&r.bare), "2.10 (1.80..9.00)");
        assert_eq!(r.repeatable(), None);
        let slow = Row::wall_clock("x", vec![2.0, 2.0], vec![3.0, 5.0], Goal::RatioAtMost(1.1));
        assert_eq!(slow.verdict(), "missed: 2.00x > 1.1x");
    }

    #[test]
    fn median_of_an_even_count_is_the_mean_of_the_middle_two() {
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[5.0]), Some(5.0));
        assert_eq!(median(&[]), None);
        assert_eq!(spread(&[3.0, 1.0, 2.0]), Some((1.0, 3.0)));
    }

    #[test]
    fn first_userspace_line_time_is_that_of_its_first_appearance() {
        let out = lines(&[
            "[linux] [    0.90] Run /init as init process",
            "[linux] [initramfs] userspace up: 6.1.0-28-cloud-arm64",
            "[linux] [initramfs] userspace up: again",
        ]);
        assert_eq!(
            first_line_time(&out, &[3.0, 3.5, 9.0], USERSPACE_MARKER),
            Some(3.5)
        );
        assert_eq!(first_line_time(&out, &[3.0], USERSPACE_MARKER), None);
        assert_eq!(first_line_time(&out, &[1.0, 2.0, 3.0], "absent"), None);
    }

    #[test]
    fn the_benchmark_init_prints_the_userspace_marker_first() {
        let script = workload_script();
        let first_echo = script.lines().find(|l| l.starts_with("echo ")).unwrap();
        assert!(first_echo.contains(USERSPACE_MARKER), "{first_echo}");
    }

    #[test]
    fn image_budget_is_480_kib_of_loadable_bytes() {
        assert_eq!(image_verdict(480), "met");
        assert_eq!(image_verdict(481), "missed by 1 KiB");
    }

    #[test]
    fn footprint_of_an_elf_counts_its_loaded_segments() {
        let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let fp = footprint_of(&exe).unwrap();
        assert!(fp.file_bytes > 0);
        assert!(fp.file_bytes <= fp.mem_bytes);
        assert!(footprint_of(b"not an elf").is_none());
    }
}
