//! `cargo xtask test`: format and lint checks, host tests, every board built, QEMU scenarios.

use crate::build::{self, workspace_root, GUEST_TRIPLE, IMAGE_TRIPLE};
use crate::qemu::{self, Scenario};
use crate::Target;
use platform_dsl::model::SupportLevel;
use std::process::Command;
use std::time::{Duration, Instant};

mod mgmt;
mod net;
mod net_hostile;
mod numa;
mod storage;
mod storage_isolation;
mod uplink;
mod uplink_pci;

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(workspace_root());
    c
}

fn step(name: &str, f: impl FnOnce() -> Result<(), String>) -> Result<(), String> {
    let t = Instant::now();
    eprintln!("==> {name}");
    let r = f();
    eprintln!(
        "<== {name}: {} in {:.1} s{}",
        if r.is_ok() { "ok" } else { "FAILED" },
        t.elapsed().as_secs_f64(),
        free_disk()
            .map(|gib| format!(", {gib:.1} GiB free"))
            .unwrap_or_default()
    );
    r.map_err(|e| format!("{name}: {e}"))
}

/// Free space on the disk of `target/`, in GiB (`df`'s figure), printed after every step: a
/// CI run once failed near its end with the disk full, and the log said nothing of how it
/// filled.
fn free_disk() -> Option<f64> {
    let out = Command::new("df")
        .args(["-Pk"])
        .arg(build::target_dir())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let kib: f64 = text
        .lines()
        .nth(1)?
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()?;
    Some(kib / (1024.0 * 1024.0))
}

/// On a CI machine (`CI` set), removes build output that later steps no longer need, to keep
/// the run within the machine's disk; a developer's tree keeps it for the next build.
fn tidy_for_ci(what: &[&str]) {
    if std::env::var_os("CI").is_none() {
        return;
    }
    for w in what {
        let p = build::target_dir().join(w);
        if p.exists() {
            match std::fs::remove_dir_all(&p) {
                Ok(()) => eprintln!(
                    "    CI: removed {} (not needed by later steps)",
                    p.display()
                ),
                Err(e) => eprintln!("    CI: could not remove {}: {e}", p.display()),
            }
        }
    }
}

/// Runs everything; stops at the first failing step.
pub fn all() -> Result<(), String> {
    build::ensure_rust_targets()?;
    qemu::ensure_qemu()?;
    step("cargo fmt --check", || {
        build::run(cargo().args(["fmt", "--all", "--check"]))
    })?;
    step("docs/boards.md matches boards.kdl", || {
        crate::boards::docs(true)
    })?;
    step("clippy (host)", || {
        build::run(cargo().args([
            "clippy",
            "--quiet",
            "--workspace",
            "--exclude",
            "image",
            "--exclude",
            "test-guest",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]))
    })?;
    // The image's build script checks the VM file, which names the test guest: build it
    // first (a fresh clone has none).
    step("build the test guest", || build::test_guest().map(|_| ()))?;
    step("clippy (aarch64 images, UEFI loader)", || {
        build::run(cargo().args([
            "clippy",
            "--quiet",
            "-p",
            "image",
            "--target",
            IMAGE_TRIPLE,
            "--",
            "-D",
            "warnings",
        ]))?;
        build::run(cargo().args([
            "clippy",
            "--quiet",
            "-p",
            "test-guest",
            "--target",
            GUEST_TRIPLE,
            "--",
            "-D",
            "warnings",
        ]))?;
        build::run(cargo().args([
            "clippy",
            "--quiet",
            "-p",
            "uefi-loader",
            "--target",
            crate::uefi::UEFI_TRIPLE,
            "--",
            "-D",
            "warnings",
        ]))
    })?;
    step("host tests", || {
        build::run(cargo().args([
            "test",
            "--workspace",
            "--exclude",
            "image",
            "--exclude",
            "test-guest",
        ]))
    })?;
    // trybuild's own target directory, and the incremental state of the host builds (the
    // scenarios' host tools are built without it or already built).
    tidy_for_ci(&["tests", "debug/incremental"]);
    step("build every board", build_every_board)?;
    step(
        "an image whose console has no driver fails to build",
        console_without_driver_fails,
    )?;
    step(
        "import-dtb: every DTB of Debian's arm64 kernel imports and validates (or is refused with its reason)",
        crate::dtb::import_every_dtb,
    )?;
    step("import-dtb output builds", || {
        for (file, name) in crate::dtb::imported_boards_for_build()? {
            let t = Target {
                board: name.clone(),
                board_file: file,
                vms: workspace_root().join("examples/vms/test-guest.toml"),
                allow_experimental: false,
            };
            build::image(&t)?;
            eprintln!("    built imported board {name}");
        }
        Ok(())
    })?;
    step("bench --smoke (figures not asserted)", crate::bench::smoke)?;
    step(
        "boards against upstream device trees (board-diff, import-dtb)",
        crate::dtb::check_all_boards,
    )?;
    // The fuzz targets build beside the scenarios: each scenario's QEMU keeps one host
    // core busy and leaves the other mostly idle, and the build runs at the lowest
    // priority (three to four minutes of a CI run saved).
    let fuzz_build = crate::fuzz::spawn_build();
    let scenarios = scenarios_matching("");
    let fuzz = step(
        "fuzz smoke (3 s per target, checked-in corpus and regressions; built beside the scenarios)",
        || crate::fuzz::smoke_after(fuzz_build),
    );
    tidy_for_ci(&["fuzz"]);
    scenarios.and(fuzz)
}

/// Runs the QEMU scenarios whose name contains `filter` (all for ""), one at a time.
pub fn scenarios_matching(filter: &str) -> Result<(), String> {
    let scenarios = select(filter)?;
    qemu::ensure_qemu()?;
    let total = scenarios.len();
    let mut failed = Vec::new();
    for (k, s) in scenarios.iter().enumerate() {
        let r = step(
            &format!("[{}/{total}] QEMU scenario {}", k + 1, s.name),
            || qemu::run_scenario(s),
        );
        if let Err(e) = r {
            eprintln!("{e}");
            failed.push(s.name.clone());
        }
    }
    println!(
        "qemu scenarios: {} passed, {} failed",
        total - failed.len(),
        failed.len()
    );
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!("QEMU scenarios failed: {}", failed.join(", ")))
    }
}

/// The scenarios whose name contains `filter` (all for ""), in run order; an error if none.
/// `on_quick` sees the scenarios that need no Debian guest first, before the Linux ones are
/// prepared (their guest images are fetched and built: seconds when cached, minutes the
/// first time).
fn select_with(
    filter: &str,
    mut on_quick: impl FnMut(&[Scenario], bool),
) -> Result<Vec<Scenario>, String> {
    let mut found: Vec<Scenario> = scenarios()
        .into_iter()
        .filter(|s| s.name.contains(filter))
        .collect();
    // Scenarios with Debian guests (Linux, Linux on virtual disks and networks) need the
    // guest cache.
    let guests = ["linux", "storage", "net", "mgmt", "uefi", "numa"];
    let linux = filter.is_empty()
        || guests
            .iter()
            .any(|g| g.contains(filter) || filter.contains(g));
    on_quick(&found, linux);
    if linux {
        found.extend(
            linux_scenarios()?
                .into_iter()
                .filter(|s| s.name.contains(filter)),
        );
    }
    if found.is_empty() {
        return Err(format!(
            "no QEMU scenario matches `{filter}`; `cargo xtask scenario --list` names them"
        ));
    }
    Ok(found)
}

fn select(filter: &str) -> Result<Vec<Scenario>, String> {
    select_with(filter, |_, _| {})
}

/// `cargo xtask scenario --list [NAME]`: the names [`scenarios_matching`] would run, in
/// order.
pub fn list_scenarios(filter: &str) -> Result<(), String> {
    let mut shown = 0;
    let all = select_with(filter, |quick, linux| {
        for s in quick {
            println!("{}", s.name);
        }
        shown = quick.len();
        if linux {
            eprintln!("xtask: preparing the Linux guests' images to name their scenarios");
        }
    })?;
    for s in &all[shown..] {
        println!("{}", s.name);
    }
    Ok(())
}

/// The board `examples/boards/qemu-virt-sbsa-console.kdl` describes its console only as
/// "arm,sbsa-uart", which no in-tree plugin drives: the in-tree image must fail to build
/// (not boot in silence), naming the console, its compatible and the drivers it has.
fn console_without_driver_fails() -> Result<(), String> {
    let out = cargo()
        .args([
            "build",
            "--release",
            "-p",
            "image",
            "--target",
            IMAGE_TRIPLE,
        ])
        .env("HV_BOARD", "qemu-virt-sbsa-console")
        .env(
            "HV_BOARD_FILE",
            workspace_root().join("examples/boards/qemu-virt-sbsa-console.kdl"),
        )
        .env(
            "HV_VMS",
            workspace_root().join("examples/vms/test-guest.toml"),
        )
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    console_build_refused(out.status.success(), &stderr)?;
    eprintln!(
        "    refused as it should be: {}",
        stderr
            .lines()
            .find(|l| l.contains("no driver linked"))
            .unwrap_or("")
    );
    Ok(())
}

/// What [`console_without_driver_fails`] wants of the build: a failure whose message names
/// the console, its compatible and the linked console driver.
fn console_build_refused(succeeded: bool, stderr: &str) -> Result<(), String> {
    if succeeded {
        return Err("the image for qemu-virt-sbsa-console built, though no linked driver handles its console".into());
    }
    for want in [
        "no driver linked into this image handles the console `uart0`, compatible \"arm,sbsa-uart\"",
        "uart-pl011 (arm,pl011)",
    ] {
        if !stderr.contains(want) {
            return Err(format!(
                "the build failed, but its message lacks `{want}`:\n{stderr}"
            ));
        }
    }
    Ok(())
}

fn build_every_board() -> Result<(), String> {
    let file = workspace_root().join("boards.kdl");
    let boards = platform_dsl::load_file(&file).map_err(|e| e.to_string())?;
    for b in &boards {
        let t = Target {
            board: b.name.clone(),
            board_file: file.clone(),
            vms: workspace_root().join("examples/vms/test-guest.toml"),
            allow_experimental: b.support == SupportLevel::Experimental,
        };
        let img = build::image(&t)?;
        let size = std::fs::metadata(&img.elf).map(|m| m.len()).unwrap_or(0);
        eprintln!("    built {} ({} KiB ELF)", b.name, size / 1024);
    }
    Ok(())
}

fn target(board: &str, vms: &str) -> Target {
    Target {
        board: board.into(),
        board_file: workspace_root().join("boards.kdl"),
        vms: workspace_root().join(vms),
        allow_experimental: false,
    }
}

/// The lines a test guest named `vm` prints when every check passes.
fn guest_passes(vm: &str) -> Vec<String> {
    guest_lines(vm, true)
}

/// The same on QEMU's `xlnx-zcu102`, whose CPUs' PMU interrupt goes nowhere
/// (`examples/vms/test-guest-zcu102.toml` says `no-pmu-irq`).
fn guest_passes_without_pmu_irq(vm: &str) -> Vec<String> {
    guest_lines(vm, false)
}

fn guest_lines(vm: &str, pmu_irq: bool) -> Vec<String> {
    let (irq_line, result) = if pmu_irq {
        ("PASS pmu-irq", "RESULT: 16 passed, 0 failed")
    } else {
        ("SKIP pmu-irq", "RESULT: 15 passed, 0 failed")
    };
    [
        "PASS console",
        "PASS timer",
        "PASS psci",
        "PASS sgi",
        "PASS sgi-routing",
        "PASS gic-dist",
        "spi-pending: INTID ",
        "PASS spi-pending",
        "PASS eoi-mode",
        "PASS stage2",
        "PASS ptimer",
        "PASS smccc",
        "PASS psci-suspend",
        "PASS pmu",
        "PASS pmu-overflow",
        "PASS pmu-idle",
        irq_line,
        result,
    ]
    .iter()
    .map(|l| format!("[{vm}] [test-guest] {l}"))
    .collect()
}

/// The lines a test guest `vm` with one vCPU prints when every check passes: the SGI checks
/// need a second vCPU and are skipped.
fn guest_passes_one_vcpu(vm: &str) -> Vec<String> {
    guest_lines(vm, true)
        .into_iter()
        .map(|l| match l.split_once("] [test-guest] ") {
            Some((_, "PASS sgi")) => format!("[{vm}] [test-guest] SKIP sgi"),
            Some((_, "PASS sgi-routing")) => format!("[{vm}] [test-guest] SKIP sgi-routing"),
            Some((_, r)) if r.starts_with("RESULT: ") => {
                // Two checks fewer pass: the two SGI checks are skipped.
                let passed: u32 = r
                    .trim_start_matches("RESULT: ")
                    .split(' ')
                    .next()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
                format!(
                    "[{vm}] [test-guest] RESULT: {} passed, 0 failed",
                    passed.saturating_sub(2)
                )
            }
            _ => l,
        })
        .collect()
}

/// `lines` of VM `vm`, which has a PCI NIC (`examples/vms/test-guest*.toml`): its vGIC has
/// 128 SPIs, and `spi-pending` must raise the last, INTID 159, above 64.
fn with_pci_spis(mut lines: Vec<String>, vm: &str) -> Vec<String> {
    let generic = format!("[{vm}] [test-guest] spi-pending: INTID ");
    for l in lines.iter_mut().filter(|l| **l == generic) {
        *l = format!("{generic}159 taken once (128 SPIs)");
    }
    lines
}

/// The test guest's VM file and passing lines for `board` under QEMU.
pub(crate) fn test_guest_for(board: &str) -> (&'static str, Vec<String>) {
    if board.contains("zcu102") {
        (
            "examples/vms/test-guest-zcu102.toml",
            with_pci_spis(guest_passes_without_pmu_irq("test"), "test"),
        )
    } else {
        (
            "examples/vms/test-guest.toml",
            with_pci_spis(guest_passes("test"), "test"),
        )
    }
}

/// The test guest on a GIC-400 board: vGICv2 (emulated GICD, the GICV frame mapped into
/// the guest, GICH list registers).
fn gic_v2_test_guest(board: &str) -> Scenario {
    let (mut vms, passes) = test_guest_for(board);
    // A real SoC's board keeps stage-2 blocks; QEMU's own machine asks for pages.
    let mapped = if board.starts_with("qemu-virt") {
        "[hv] stage 2: guest RAM mapped in 4 KiB pages"
    } else {
        "[hv] stage 2: guest RAM mapped in 2 MiB blocks"
    };
    let mut expect = vec![
        format!("[hv] board: {board} "),
        "GIC V2".into(),
        mapped.into(),
    ];
    expect.extend(passes);
    expect.push("[hv] all VMs stopped; powering off".into());
    // On QEMU's GICv2 board the vGICv2 is also checked with 1 and 4 vCPUs, beside `test`.
    let mut expect_unordered = Vec::new();
    if board == "qemu-virt-gicv2" {
        vms = "examples/vms/test-guest-gicv2.toml";
        expect_unordered.extend(guest_passes("four"));
        expect_unordered.extend(guest_passes_one_vcpu("one"));
    }
    Scenario {
        name: format!("{board}-test-guest"),
        target: target(board, vms),
        smp: None,
        expect,
        expect_unordered,
        forbid: vec!["FAIL".into(), "PANIC".into(), "FATAL".into()],
        expect_exit: true,
        timeout: Duration::from_secs(120),
        input: vec![],
        out_of_tree: false,
        poisoned_ram: false,
        steady: None,
        host_disk: None,
        qmp: None,
        host_nic: None,
        live: vec![],
        check_lines: None,
        extra_args: Vec::new(),
        uefi: None,
        uboot: None,
        boot_image: false,
        prepare: None,
        spin_stub: false,
    }
}

/// `poisoned-ram`: machine RAM starts out full of the scanner's pattern (a
/// memory-backend-file) instead of QEMU's zeroes. VM 1 `poisoned` reads all of its RAM at
/// start, fills its free RAM with the pattern itself, resets, reads it all again, fills it
/// again and powers off; the console then destroys it and creates it again, in the same RAM
/// (the creation lines name the same host address), and the new VM's scans find nothing
/// either. RAM reaches a guest only zeroed: from the firmware, after a reset, and after
/// another VM. VM 0 `keeper` keeps the machine up meanwhile.
fn poisoned_ram() -> Scenario {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let created = "[hv] VM 1 `poisoned`: 1 vCPU(s)";
    let destroyed = "[hv] VM 1 `poisoned` destroyed";
    let one_life = [
        created,
        "[poisoned] [test-guest] scan: words=",
        "[poisoned] [test-guest] scan: PASS",
        "[poisoned] [test-guest] secret: written",
        "[poisoned] [test-guest] scan: resetting itself",
        "[hv] VM 1 `poisoned` resetting",
        "[poisoned] [test-guest] scan: running again after reset 1",
        "[poisoned] [test-guest] scan: words=",
        "[poisoned] [test-guest] scan: PASS",
        "[poisoned] [test-guest] secret: written",
        "[hv] VM 1 `poisoned` stopped: guest called PSCI SYSTEM_OFF",
    ];
    let mut expect = s(&one_life);
    expect.push(destroyed.into());
    expect.extend(s(&one_life));
    expect.push("[hv] powering off".into());
    let stopped = "[hv] VM 1 `poisoned` stopped: guest called PSCI SYSTEM_OFF";
    Scenario {
        poisoned_ram: true,
        input: vec![
            (s(&[stopped]), "\x1d:destroy 1\r".to_owned()),
            (s(&[destroyed]), "\x1d:create poisoned\r".to_owned()),
            (s(&[stopped]), "\x1d:poweroff\r".to_owned()),
        ],
        steady: Some(crate::qemu::Steady {
            marker: created,
            keys: &["host"],
            skip: 0,
            min_lines: 2,
        }),
        ..Scenario::new(
            "poisoned-ram",
            target("qemu-virt", "examples/vms/poisoned-ram.toml"),
            expect,
        )
    }
}

/// VMs destroyed and created again while another runs.
const LIFECYCLE_ROUNDS: usize = 100;

/// `lifecycle`: VM `keeper` stays up (echo mode) while the console starts VM 1 `cycler`
/// again once it powered off, then destroys it each time it powers off and creates it
/// again, [`LIFECYCLE_ROUNDS`] times. Each round runs the
/// test guest's checks in a fresh VM (RAM, stage-2 tables, VMID and slot reused). After each
/// destruction the console's `mem` reports the hypervisor's heap and free RAM while nothing
/// else happens, and those figures never move.
fn lifecycle() -> Scenario {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let destroyed = "[hv] VM 1 `cycler` destroyed; host memory";
    let memory = "[hv] host memory heap_used=";
    let stopped = "[hv] VM 1 `cycler` stopped: guest called PSCI SYSTEM_OFF";
    // First the powered-off VM is started again in place (`start 1`), then the rounds.
    let mut expect = s(&[
        "[hv] VM 1 `cycler`: 1 vCPU(s)",
        "[cycler] [test-guest] RESULT: ",
        stopped,
        "[hv] VM 1 `cycler` starting",
    ]);
    let mut input = vec![(s(&[stopped]), "\x1d:start 1\r".to_owned())];
    for round in 0..LIFECYCLE_ROUNDS {
        expect.push("[cycler] [test-guest] RESULT: ".into());
        expect.push(destroyed.into());
        expect.push(memory.into());
        input.push((s(&[stopped]), "\x1d:destroy 1\r".to_owned()));
        input.push((s(&[destroyed]), "\x1d:mem\r".to_owned()));
        // After the last round, power the machine off instead of creating the VM again.
        let next = if round + 1 < LIFECYCLE_ROUNDS {
            "\x1d:create cycler\r"
        } else {
            "\x1d:poweroff\r"
        };
        input.push((s(&[memory]), next.to_owned()));
    }
    expect.push("[hv] powering off".into());
    Scenario {
        input,
        steady: Some(crate::qemu::Steady {
            marker: memory,
            keys: &["heap_used", "pool_free"],
            // The first round runs before every allocation made once has happened.
            skip: 1,
            min_lines: LIFECYCLE_ROUNDS,
        }),
        timeout: Duration::from_secs(600),
        ..Scenario::new(
            "lifecycle",
            target("qemu-virt", "examples/vms/lifecycle.toml"),
            expect,
        )
    }
}

/// Where `storage-host-nvme` keeps its disk image and what goes on it.
fn storage_dir() -> std::path::PathBuf {
    workspace_root().join("target/scenarios/storage-host-nvme")
}

/// The label of the partition the image's storage self-test writes.
const SELFTEST_LABEL: &str = "hv-selftest";

/// A 64 MiB disk: `vm0-root` (32 MiB, an ext4 file system made from a directory),
/// `vm0-data` (16 MiB) and the self-test's partition (1 MiB). Made afresh for each run,
/// so that only this boot's write can be found in it.
fn storage_disk() -> Result<std::path::PathBuf, String> {
    storage_disk_with_block_size(512)
}

/// [`storage_disk`] for a drive with 4 KiB logical blocks (its GPT in 4 KiB LBAs).
fn storage_disk_4k() -> Result<std::path::PathBuf, String> {
    storage_disk_with_block_size(4096)
}

fn storage_disk_with_block_size(block: u32) -> Result<std::path::PathBuf, String> {
    use crate::disk::{create_with_block_size, ext4_image, PartSpec};
    let dir = storage_dir();
    let root = dir.join("rootfs");
    std::fs::create_dir_all(&root).map_err(|e| format!("{}: {e}", root.display()))?;
    std::fs::write(
        root.join("hello.txt"),
        "written by cargo xtask for the storage scenario\n",
    )
    .map_err(|e| format!("{}: {e}", root.display()))?;
    let fs = dir.join("vm0-root.ext4");
    ext4_image(&root, &fs, 32 << 20)?;
    let img = dir.join("nvme0.img");
    let part = |label: &str, mib: u64, fill: Option<std::path::PathBuf>| PartSpec {
        label: label.into(),
        bytes: mib << 20,
        fill,
    };
    create_with_block_size(
        &img,
        64 << 20,
        block,
        &[
            part("vm0-root", 32, Some(fs)),
            part("vm0-data", 16, None),
            part(SELFTEST_LABEL, 1, None),
        ],
    )?;
    Ok(img)
}

/// After QEMU exited: the value the hypervisor printed is in sector 0 of the self-test
/// partition of the disk image, as the self-test wrote it.
fn storage_selftest_landed(disk: &std::path::Path, lines: &[String]) -> Result<(), String> {
    let marker = "[hv] storage self-test: wrote value=";
    let line = lines
        .iter()
        .find(|l| l.contains(marker))
        .ok_or(format!("no `{marker}` line on the console"))?;
    let value: String = line[line.find(marker).unwrap_or(0) + marker.len()..]
        .chars()
        .take_while(|c| c.is_ascii_hexdigit())
        .collect();
    if value.len() != 16 {
        return Err(format!("no 16-digit value in `{line}`"));
    }
    let sector = crate::disk::read_sector(disk, SELFTEST_LABEL, 0)?;
    let want = format!("HV-SELFTEST {value}\n");
    if sector.starts_with(want.as_bytes()) {
        big_pattern_landed(disk, lines, &value)
    } else {
        let end = sector.iter().position(|&b| b == 0).unwrap_or(40).min(40);
        Err(format!(
            "{}: sector 0 of `{SELFTEST_LABEL}` holds {:?}, not {want:?} as printed",
            disk.display(),
            String::from_utf8_lossy(&sector[..end])
        ))
    }
}

/// After QEMU exited with a read-only drive: the self-test's partition is as xtask made
/// it (zeroes), so the writes the controller refused left nothing.
fn storage_nothing_landed(disk: &std::path::Path, _lines: &[String]) -> Result<(), String> {
    let got = crate::disk::read_sectors(disk, SELFTEST_LABEL, 0, 410)?;
    match got.iter().position(|&b| b != 0) {
        None => Ok(()),
        Some(i) => Err(format!(
            "{}: byte {i} of `{SELFTEST_LABEL}` is {:#04x} although the drive was read-only",
            disk.display(),
            got[i]
        )),
    }
}

/// `storage-host-nvme-read-only`: the drive refuses writes (QEMU `readonly=on`): the
/// controller's error status reaches the self-test as a device error, the hypervisor goes
/// on (the test guest still passes) and the disk image is unchanged.
fn storage_host_nvme_read_only() -> Scenario {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let mut expect = s(&[
        "[hv] pci pcie 00:01.0 1b36:0010 class 010802: driver nvme",
        "[hv] datastore: nvme0 (QEMU NVMe Ctrl, 64 MiB): partitions",
        // NVMe status 0x280: media and data integrity errors, Write Fault.
        "[hv] storage self-test: FAIL: device error (status 0x280)",
        "[hv] storage self-test: FAIL: device error (status 0x280)",
        "[hv] storage self-test: FAIL: DMA lists: device error (status 0x280)",
    ]);
    expect.extend(guest_passes("test"));
    expect.push("[hv] all VMs stopped; powering off".into());
    Scenario {
        host_disk: Some(crate::qemu::HostDisk {
            features: &["storage-selftest"],
            drive: "nvm0",
            blkdebug: None,
            devices: &["nvme,serial=hv-nvme0,drive=nvm0"],
            drive_options: ",readonly=on",
            make: storage_disk,
            check: storage_nothing_landed,
        }),
        forbid: s(&["PANIC", "FATAL", "[test] [test-guest] FAIL"]),
        ..Scenario::new(
            "storage-host-nvme-read-only",
            target("qemu-virt", "examples/vms/test-guest.toml"),
            expect,
        )
    }
}

/// The self-test's big transfer (when it printed one): sectors 9..410 of the self-test
/// partition hold byte `i` = the `i % 8`th byte of the value (little-endian) plus `i / 512`.
fn big_pattern_landed(disk: &std::path::Path, lines: &[String], value: &str) -> Result<(), String> {
    let marker = "[hv] storage self-test: 401 sectors at sector 9";
    if !lines.iter().any(|l| l.contains(marker)) {
        return Err(format!("no `{marker}` line on the console"));
    }
    let v = u64::from_str_radix(value, 16).map_err(|e| format!("{value}: {e}"))?;
    let got = crate::disk::read_sectors(disk, SELFTEST_LABEL, 9, 401)?;
    let bad = got
        .iter()
        .enumerate()
        .find(|&(i, &b)| b != ((v >> ((i % 8) * 8)) as u8).wrapping_add((i / 512) as u8));
    match bad {
        None => Ok(()),
        Some((i, b)) => Err(format!(
            "{}: byte {i} of the 401-sector pattern at sector 9 of `{SELFTEST_LABEL}` is {b:#04x}, not what value={value} gives",
            disk.display()
        )),
    }
}

/// `storage-host-nvme`: the machine has an NVMe disk on its PCIe (QEMU `-device nvme`);
/// the hypervisor enumerates the bus, drives the controller, reads the disk's GPT and
/// lists its partitions, then (self-test built in with the image feature
/// `storage-selftest`) writes a value computed at run time into the self-test partition
/// and flushes; after QEMU exits the value must be in the disk image file. With
/// `root_port`, the NVMe sits behind a PCIe root port (bus 1), as on real machines; with
/// `four_k`, its namespace has 4 KiB logical blocks (512-byte sectors read-modify-written);
/// with `noncoherent`, on a KDL-only qemu-virt whose PCIe is not `dma-coherent` (every DMA
/// buffer cleaned and invalidated).
fn storage_host_nvme(root_port: bool, four_k: bool, noncoherent: bool) -> Scenario {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let mut expect = Vec::new();
    if noncoherent {
        expect.push("[hv] board: qemu-virt-noncoherent ".to_string());
    }
    expect.push("[hv] device pcie: driver pci-ecam".to_string());
    if root_port {
        expect.push("[hv] pci pcie 00:01.0 1b36:000c class 060400: bridge to bus 01".into());
        expect.push("[hv] pci pcie 01:00.0 1b36:0010 class 010802: driver nvme".into());
    } else {
        expect.push("[hv] pci pcie 00:01.0 1b36:0010 class 010802: driver nvme".into());
    }
    expect.extend(s(&[
        "[hv] datastore: nvme0 (QEMU NVMe Ctrl, 64 MiB): partitions \"vm0-root\" 32 MiB, \"vm0-data\" 16 MiB, \"hv-selftest\" 1 MiB",
        "[hv] storage self-test: wrote value=",
        "[hv] storage self-test: 401 sectors at sector 9 of \"hv-selftest\" written, flushed, read back equal",
        "[hv] storage self-test: 520 sectors at sector 1024 of \"hv-selftest\" written and read back by DMA lists, equal",
    ]));
    expect.extend(guest_passes("test"));
    expect.push("[hv] all VMs stopped; powering off".into());
    let (name, devices): (&str, &'static [&'static str]) = match (root_port, four_k) {
        (true, _) => (
            "storage-host-nvme-root-port",
            &[
                "pcie-root-port,id=rp0,chassis=1",
                "nvme,serial=hv-nvme0,drive=nvm0,bus=rp0",
            ],
        ),
        (false, true) => (
            "storage-host-nvme-4k",
            &["nvme,serial=hv-nvme0,drive=nvm0,logical_block_size=4096,physical_block_size=4096"],
        ),
        (false, false) if noncoherent => (
            "storage-host-nvme-noncoherent",
            &["nvme,serial=hv-nvme0,drive=nvm0"],
        ),
        (false, false) => ("storage-host-nvme", &["nvme,serial=hv-nvme0,drive=nvm0"]),
    };
    let target = storage_target(noncoherent);
    Scenario {
        host_disk: Some(crate::qemu::HostDisk {
            features: &["storage-selftest"],
            drive: "nvm0",
            blkdebug: None,
            devices,
            drive_options: "",
            make: if four_k {
                storage_disk_4k
            } else {
                storage_disk
            },
            check: storage_selftest_landed,
        }),
        ..Scenario::new(name, target, expect)
    }
}

/// `storage-host-ahci`: the machine has a SATA disk behind an AHCI HBA on its PCIe (QEMU
/// `-device ich9-ahci` + `-device ide-hd`); the hypervisor drives the HBA, registers the
/// disk as `ahci0`, lists its partitions and (image feature `storage-selftest`) writes a
/// value computed at run time into the self-test partition; after QEMU exits the value
/// must be in the disk image file. With `write_error`, QEMU's `blkdebug` fails every
/// write that reaches sector 0 of the self-test partition: the drive's error reaches the
/// self-test as a device error, the big transfer next to it still lands, the test guest
/// still passes and sector 0 keeps what xtask put there. With `noncoherent`, on the
/// KDL-only qemu-virt whose PCIe is not `dma-coherent` (the command list, FIS area,
/// command table and bounce buffer cleaned and invalidated around every command).
fn storage_host_ahci(write_error: bool, noncoherent: bool) -> Scenario {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let mut expect = Vec::new();
    if noncoherent {
        expect.push("[hv] board: qemu-virt-noncoherent ".to_string());
    }
    expect.extend(s(&[
        "[hv] device pcie: driver pci-ecam",
        "[hv] pci pcie 00:01.0 8086:2922 class 010601: driver ahci",
        "[hv] datastore: ahci0 (QEMU HARDDISK, 64 MiB): partitions \"vm0-root\" 32 MiB, \"vm0-data\" 16 MiB, \"hv-selftest\" 1 MiB",
    ]));
    if write_error {
        // ATA error ABRT (0x04), status DRDY|ERR (0x41): QEMU's answer to a failed write.
        expect.push("[hv] storage self-test: FAIL: device error (status 0x441)".into());
    } else {
        expect.push("[hv] storage self-test: wrote value=".into());
    }
    expect.push(
        "[hv] storage self-test: 401 sectors at sector 9 of \"hv-selftest\" written, flushed, read back equal"
            .into(),
    );
    expect.push("[hv] storage self-test: DMA lists declined: copies through buffers".into());
    expect.extend(guest_passes("test"));
    expect.push("[hv] all VMs stopped; powering off".into());
    let name = match (write_error, noncoherent) {
        (true, _) => "storage-host-ahci-write-error",
        (false, true) => "storage-host-ahci-noncoherent",
        (false, false) => "storage-host-ahci",
    };
    let target = storage_target(noncoherent);
    Scenario {
        host_disk: Some(crate::qemu::HostDisk {
            features: &["storage-selftest"],
            drive: "hd0",
            blkdebug: write_error.then_some(selftest_write_error as crate::qemu::BlkdebugRules),
            devices: &["ich9-ahci,id=ahci0", "ide-hd,drive=hd0,bus=ahci0.0"],
            drive_options: "",
            make: storage_disk,
            check: if write_error {
                storage_first_write_refused
            } else {
                storage_selftest_landed
            },
        }),
        forbid: s(&["PANIC", "FATAL", "[test] [test-guest] FAIL"]),
        ..Scenario::new(name, target, expect)
    }
}

/// `blkdebug` rules for `storage-host-ahci-write-error`: every write reaching sector 0 of
/// the self-test partition fails with EIO (rules become active at the first write).
fn selftest_write_error(disk: &std::path::Path) -> Result<String, String> {
    let (_, start, _) = crate::disk::list(disk)?
        .into_iter()
        .find(|(l, _, _)| l == SELFTEST_LABEL)
        .ok_or_else(|| format!("{}: no partition `{SELFTEST_LABEL}`", disk.display()))?;
    Ok(format!(
        "[inject-error]\nevent = \"write_aio\"\niotype = \"write\"\nerrno = \"5\"\nsector = \"{start}\"\n"
    ))
}

/// After QEMU exited with writes to sector 0 of the self-test partition failing: that
/// sector is as xtask made it (zeroes), and the 401-sector pattern next to it landed (its
/// value is the pattern's first eight bytes, which are the value's own).
fn storage_first_write_refused(disk: &std::path::Path, lines: &[String]) -> Result<(), String> {
    let sector = crate::disk::read_sector(disk, SELFTEST_LABEL, 0)?;
    if let Some(i) = sector.iter().position(|&b| b != 0) {
        return Err(format!(
            "{}: byte {i} of sector 0 of `{SELFTEST_LABEL}` is {:#04x} although its write failed",
            disk.display(),
            sector[i]
        ));
    }
    let first = crate::disk::read_sector(disk, SELFTEST_LABEL, 9)?;
    let value = u64::from_le_bytes(first[..8].try_into().map_err(|_| "short sector")?);
    big_pattern_landed(disk, lines, &format!("{value:016x}"))
}

/// The machine of the storage scenarios: qemu-virt with the test guest, or with
/// `noncoherent` the KDL-only qemu-virt whose PCIe is not `dma-coherent`.
fn storage_target(noncoherent: bool) -> Target {
    if noncoherent {
        Target {
            board: "qemu-virt-noncoherent".into(),
            board_file: workspace_root().join("examples/boards/qemu-virt-noncoherent.kdl"),
            vms: workspace_root().join("examples/vms/test-guest.toml"),
            allow_experimental: false,
        }
    } else {
        target("qemu-virt", "examples/vms/test-guest.toml")
    }
}

/// `image-boot-relocated-dt-ram`: the qemu-virt image booted as QEMU boots a Linux Image
/// (`-kernel hypervisor-qemu-virt.bin`, the same build as `qemu-virt-test-guest`). QEMU
/// places it per its header at RAM base + 2 MiB (0x4020_0000), 2 MiB below its link
/// address (`hypervisor load=0x4040_0000`), so the boot code relocates it; QEMU passes its
/// DTB in x0, whose 3 GiB of RAM (`-m 3072`) the hypervisor uses, warning that the KDL says
/// 2 GiB. Every CPU (PSCI CPU_ON at the relocated secondary entry), every plugin (linkme
/// slices hold pointers, relocated) and the test guest (in the staging area, which QEMU's
/// Image and DTB placement leave alone) work.
fn image_boot_scenario() -> Scenario {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let mut expect = s(&[
        "[hv] board: qemu-virt ",
        "[hv] loaded at 0x40200000, linked at 0x40400000: relocated by -0x200000",
        "[hv] device tree from the loader at 0x",
        "[hv] board KDL memory \"dram0\": 2 GiB (2 GiB at 0x4000_0000)",
        "[hv] RAM from the device tree: 3 GiB (3 GiB at 0x4000_0000)",
        "[hv] WARNING: board KDL memory \"dram0\": 2 GiB, the device tree says 3 GiB at \
         0x4000_0000; using the device tree",
        "[hv] memory memory@40000000: 0x40000000..0x100000000 (3072 MiB, node 0)",
        "[hv] image 0x40200000..",
        "[hv] device uart0: driver uart-pl011",
        "[hv] plugins: 9 driver(s), 5 PCI driver(s), 3 quirk set(s) registered",
        "[hv] EL2 page tables",
        "[hv] 4 of 4 CPUs online",
    ]);
    expect.extend(guest_passes("test"));
    expect.push("[hv] all VMs stopped; powering off".into());
    Scenario {
        boot_image: true,
        extra_args: s(&["-m", "3072"]),
        ..Scenario::new(
            "image-boot-relocated-dt-ram",
            target("qemu-virt", "examples/vms/test-guest.toml"),
            expect,
        )
    }
}

/// `spin-table`: a board whose secondary CPUs start by spin table, as a Raspberry Pi 4's
/// on its stock firmware (`examples/boards/qemu-virt-spin-table.kdl`). QEMU has no such
/// board, so `virt,secure=on` boots `examples/spin-stub` as its EL3 firmware: it enters the
/// hypervisor (flat Image at its link address) at EL2 on CPU 0 and parks CPUs 1..3 on their
/// release words; the hypervisor writes its spin-table entry there, every CPU comes online,
/// and the test guest (2 vCPUs, PSCI from the hypervisor as always) passes its checks. A
/// release address in the KDL that is not the stub's leaves those CPUs parked. The board
/// has no PSCI firmware (every CPU spins), so the hypervisor must make no SMC: the stub
/// prints `SMC!` and stops the CPU on any, which this scenario forbids; at the end the
/// hypervisor parks its CPUs instead of calling SYSTEM_OFF, and QEMU is stopped by the runner.
fn spin_table_scenario() -> Scenario {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let mut expect = s(&[
        "[hv] board: qemu-virt-spin-table ",
        "[hv] device tree from the loader at 0x4000_0000",
        "[hv] started by spin-table (release address written): CPU 1 at 0x403000e0, \
         CPU 2 at 0x403000e8, CPU 3 at 0x403000f0",
        "[hv] 4 of 4 CPUs online",
        "[hv] firmware SMCCC: no firmware (every CPU starts by spin table); no SMC is made",
    ]);
    expect.extend(guest_passes("test"));
    expect.push("[hv] all VMs stopped; powering off".into());
    expect.push("[hv] no PSCI firmware on this board (every CPU starts by spin table): no SYSTEM_OFF to call; CPUs parked".into());
    Scenario {
        spin_stub: true,
        expect_exit: false,
        forbid: s(&["FAIL", "PANIC", "FATAL", "SMC!"]),
        ..Scenario::new(
            "spin-table",
            Target {
                board: "qemu-virt-spin-table".into(),
                board_file: workspace_root().join("examples/boards/qemu-virt-spin-table.kdl"),
                vms: workspace_root().join("examples/vms/test-guest.toml"),
                allow_experimental: false,
            },
            expect,
        )
    }
}

/// `image-boot-modules`: the Image booted with a device tree that carries boot modules
/// (QEMU's own tree plus `/chosen/module@*`, given with `-dtb`; the module files placed with
/// `-device loader`): the VM file's VM `modvm` is defined at boot with its kernel taken in
/// place from the `hv,vm-image` module and, `autostart = true`, started; it passes the test
/// guest's checks next to the build-time VM.
fn boot_modules_scenario() -> Scenario {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let mut expect = s(&[
        "[hv] board: qemu-virt ",
        "[hv] loaded at 0x40200000, linked at 0x40400000",
        "[hv] module module@50000000: 0x50000000..0x50000068 hv,vm-config",
        "[hv] module module@50200000: 0x50200000..",
        "[hv] VM `modvm` defined from boot module module@50000000 (autostart)",
    ]);
    expect.extend(guest_passes("modvm"));
    Scenario {
        boot_image: true,
        expect_exit: false,
        expect_unordered: [
            guest_passes("test"),
            s(&[" hv,vm-image \"test-guest.bin\""]),
        ]
        .concat(),
        prepare: Some(crate::bootdt::modules_args),
        ..Scenario::new(
            "image-boot-modules",
            target("qemu-virt", "examples/vms/test-guest.toml"),
            expect,
        )
    }
}

/// `uboot-bundle`: Debian's U-Boot for QEMU (`u-boot-qemu`, `-bios`, at EL2 under
/// `virtualization=on`) finds the bundle `cargo xtask build --boot-vms ...` writes on a FAT
/// partition of a virtio-blk disk and runs its `boot.scr` by distro boot; the script loads
/// the Image at its link address and the build-time test guest at its staging address,
/// the boot modules (VM `modvm` and its kernel) after them, copies U-Boot's device tree and
/// adds the module nodes to it, and `booti` starts the hypervisor in place (no "Moving
/// Image"). Both the build-time VM and the boot-module VM pass the test guest.
/// `uboot-bundle-tftp` (`tftp`): the same bundle from QEMU's user-network TFTP server
/// instead of a disk: distro boot's `dhcp` target gets `boot.scr.uimg`, and the script
/// fetches every file with `tftpboot`.
fn uboot_bundle_scenario(tftp: bool) -> Scenario {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let found = if tftp {
        s(&["DHCP client bound to address", "## Executing script at"])
    } else {
        s(&["Found U-Boot script /boot.scr", "## Executing script at"])
    };
    let mut expect = s(&["U-Boot 2023.01"]);
    expect.extend(found);
    expect.extend(s(&[
        "hv-bundle: board qemu-virt",
        "hv-bundle: hypervisor-qemu-virt.bin at 0x40400000",
        "hv-bundle: vm0-kernel-test-guest.bin at 0x42400000",
        "hv-bundle: VMS.TOML at 0x",
        "hv-bundle: IMAGES/test-guest.bin at 0x",
        "hv-bundle: device tree at 0x",
        "hv-bundle: booti 0x40400000 - 0x",
        "Starting kernel ...",
        "[hv] board: qemu-virt ",
        "[hv] loaded at 0x40400000 (its link address)",
        "[hv] device tree from the loader at 0x",
        "[hv] VM `modvm` defined from boot module module@",
    ]));
    expect.extend(guest_passes("modvm"));
    let mut forbid = s(&[
        "FAIL",
        "PANIC",
        "FATAL",
        "hv-bundle: cannot",
        "SCRIPT FAILED",
        "Moving Image",
        "booti returned",
        // A VM whose kernel is not where the image or the module node says.
        "not created:",
    ]);
    forbid.dedup();
    Scenario {
        expect_exit: false,
        expect_unordered: guest_passes("test"),
        forbid,
        timeout: Duration::from_secs(180),
        check_lines: Some(uboot_modules_where_loaded),
        uboot: Some(qemu::UbootBoot {
            boot_vms: Some(workspace_root().join("examples/vms/boot-module-test-guest.toml")),
            tftp,
        }),
        ..Scenario::new(
            if tftp {
                "uboot-bundle-tftp"
            } else {
                "uboot-bundle"
            },
            target("qemu-virt", "examples/vms/test-guest.toml"),
            expect,
        )
    }
}

/// `uboot-bundle`: every module the script loaded (`N bytes read ...` or `Bytes transferred
/// = N (...)`, then `hv-bundle: NAME at ADDR`) is a module the hypervisor found at that address, N bytes long (the `reg` the
/// script set from `${filesize}`), with the `compatible` it should have; and the device tree
/// the hypervisor got is the copy in the bundle's slot (`booti` used it in place).
fn uboot_modules_where_loaded(lines: &[String]) -> Result<(), String> {
    let slot = hex_after(lines, "hv-bundle: device tree at ")?;
    let got = hex_after(lines, "[hv] device tree from the loader at ")?;
    if slot != got {
        return Err(format!(
            "the script copied the device tree to {slot:#x}, the hypervisor got {got:#x}"
        ));
    }
    for (name, compatible) in [
        ("VMS.TOML", "hv,vm-config"),
        ("IMAGES/test-guest.bin", "hv,vm-image"),
    ] {
        let said = format!("hv-bundle: {name} at ");
        let at = lines
            .iter()
            .position(|l| l.starts_with(&said))
            .ok_or_else(|| format!("no `{said}` line"))?;
        let addr = hex_after(lines, &said)?;
        let read: u64 = at
            .checked_sub(1)
            .map(|i| lines[i].trim())
            .and_then(|l| {
                l.strip_prefix("Bytes transferred = ")
                    .unwrap_or(l)
                    .split(' ')
                    .next()
            })
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| format!("no `N bytes read` line before `{}`", lines[at]))?;
        let want = format!("[hv] module module@{addr:x}: {addr:#x}..");
        let line = lines.iter().find(|l| l.starts_with(&want)).ok_or_else(|| {
            format!("U-Boot loaded {name} at {addr:#x}, but the hypervisor has no `{want}`")
        })?;
        let end = hex_after(lines, &want)?;
        if end.checked_sub(addr) != Some(read) {
            return Err(format!(
                "`{line}`: U-Boot read {read} bytes of {name}, the module node says {}",
                end.wrapping_sub(addr)
            ));
        }
        if !line.contains(compatible) {
            return Err(format!("`{line}`: want {compatible}"));
        }
    }
    Ok(())
}

/// Boards that only scenarios built from the guest images boot (`(board, scenario)`), for
/// `cargo xtask boards`: those scenarios cannot be listed without the images.
pub const GUEST_SCENARIO_BOARDS: &[(&str, &str)] = &[(numa::BOARD, numa::NAME)];

/// The QEMU scenarios, each a snapshot of serial output that must appear.
pub fn scenarios() -> Vec<Scenario> {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let mut one = s(&[
        "[hv] board: qemu-virt ",
        // The board's KDL asks for stage-2 pages (QEMU's TLB, docs/performance.md).
        "[hv] stage 2: guest RAM mapped in 4 KiB pages",
        // QEMU starts the ELF at its link address (the KDL's `hypervisor load=`), x0 = 0.
        "[hv] loaded at 0x40400000 (its link address)",
        "[hv] RAM from the board KDL: the loader passed no device tree (x0 = 0)",
        "[hv] memory dram0: 0x40000000..0xc0000000 (2048 MiB, node 0)",
        "[hv] device uart0: driver uart-pl011",
        "[hv] device rtc: driver rtc-pl031",
        "[hv] device gic: driver gic-v3",
        // Every in-tree plugin registered itself: no linkme slice is empty.
        "[hv] plugins: 9 driver(s), 5 PCI driver(s), 3 quirk set(s) registered",
        "[hv] EL2 page tables",
        "[hv] 4 of 4 CPUs online",
    ]);
    one.extend(with_pci_spis(guest_passes("test"), "test"));
    one.push("[hv] all VMs stopped; powering off".into());
    // Two VMs interleave: check each VM's own lines in order in two passes.
    let mut two_alpha = s(&["[hv] VM 0 `alpha`", "[hv] VM 1 `beta`"]);
    two_alpha.extend(guest_passes("alpha"));
    let mut two_beta = s(&["[hv] VM 1 `beta`"]);
    two_beta.extend(guest_passes("beta"));
    two_beta.push("[hv] all VMs stopped; powering off".into());
    let mut hostile = s(&["[hv] VM 2 `faulter`"]);
    hostile.extend(guest_passes("victim"));
    let mut all = vec![
        Scenario::new(
            "qemu-virt-test-guest",
            target("qemu-virt", "examples/vms/test-guest.toml"),
            one,
        ),
        image_boot_scenario(),
        spin_table_scenario(),
        boot_modules_scenario(),
        uboot_bundle_scenario(false),
        uboot_bundle_scenario(true),
        Scenario::new(
            "two-vms-alpha",
            target("qemu-virt", "examples/vms/two-guests.toml"),
            two_alpha,
        ),
        Scenario::new(
            "two-vms-beta",
            target("qemu-virt", "examples/vms/two-guests.toml"),
            two_beta,
        ),
        // A second board that exists only as a KDL file: a ZCU102 with its console on the
        // other UART (0xff01_0000), 2 CPUs and 1 GiB.
        Scenario::new(
            "kdl-only-board-zcu102-uart1",
            Target {
                board: "zcu102-uart1".into(),
                board_file: workspace_root().join("examples/boards/zcu102-uart1.kdl"),
                vms: workspace_root().join("examples/vms/test-guest-zcu102.toml"),
                allow_experimental: false,
            },
            {
                let mut e = s(&[
                    "[hv] board: zcu102-uart1 ",
                    "[hv] memory ddr: 0x0..0x40000000 (1024 MiB, node 0)",
                    "[hv] device uart1: driver uart-cadence",
                    "[hv] 2 of 2 CPUs online",
                ]);
                e.extend(guest_passes_without_pmu_irq("test"));
                e.push("[hv] all VMs stopped; powering off".into());
                e
            },
        ),
        // A board that knows only where its RAM starts (`memory ... from="firmware"`): the
        // Image booted with QEMU's device tree takes its size from there, quietly.
        Scenario {
            boot_image: true,
            forbid: s(&["FAIL", "PANIC", "FATAL", "[hv] WARNING: board KDL memory"]),
            ..Scenario::new(
                "kdl-only-board-firmware-memory",
                Target {
                    board: "qemu-virt-firmware-memory".into(),
                    board_file: workspace_root()
                        .join("examples/boards/qemu-virt-firmware-memory.kdl"),
                    vms: workspace_root().join("examples/vms/test-guest.toml"),
                    allow_experimental: false,
                },
                {
                    let mut e = s(&[
                        "[hv] board: qemu-virt-firmware-memory ",
                        "[hv] loaded at 0x40200000, linked at 0x40400000: relocated by -0x200000",
                        "[hv] board KDL memory \"dram0\": at 0x4000_0000, size from the firmware",
                        "[hv] RAM from the device tree: 3 GiB (3 GiB at 0x4000_0000)",
                        // Mapped although two of its devices share a page.
                        "[hv] EL2 page tables: identity map of RAM and devices, MMU and caches on",
                        "[hv] 4 of 4 CPUs online",
                    ]);
                    e.extend(guest_passes("test"));
                    e.push("[hv] all VMs stopped; powering off".into());
                    e
                },
            )
        },
        // The same board booted without a device tree (QEMU starting the ELF, x0 = 0): it
        // has no RAM to use and must stop, naming its memory node, rather than guess.
        Scenario {
            forbid: s(&["PANIC", "[test] [test-guest]", "EL2 page tables"]),
            expect_exit: false,
            timeout: Duration::from_secs(60),
            ..Scenario::new(
                "kdl-only-board-firmware-memory-no-dt",
                Target {
                    board: "qemu-virt-firmware-memory".into(),
                    board_file: workspace_root()
                        .join("examples/boards/qemu-virt-firmware-memory.kdl"),
                    vms: workspace_root().join("examples/vms/test-guest.toml"),
                    allow_experimental: false,
                },
                s(&[
                    "[hv] board: qemu-virt-firmware-memory ",
                    "[hv] FATAL: board KDL memory \"dram0\" comes from the firmware \
                     (`from=\"firmware\"`), but the loader passed no device tree (x0 = 0); no \
                     RAM to use",
                ]),
            )
        },
        Scenario {
            // A board without a console (`console unavailable=`): the image builds with no
            // console driver, the hypervisor prints nothing, and its VM (the test guest)
            // still runs to its power-off, after which the hypervisor powers the machine
            // off. A hypervisor that stopped (FATAL parks) would time out instead.
            forbid: s(&["[hv]", "[test]", "PANIC", "FATAL"]),
            ..Scenario::new(
                "headless-board",
                Target {
                    board: "qemu-virt-headless".into(),
                    board_file: workspace_root().join("examples/boards/qemu-virt-headless.kdl"),
                    vms: workspace_root().join("examples/vms/test-guest.toml"),
                    allow_experimental: false,
                },
                Vec::new(),
            )
        },
        Scenario {
            // What one VM writes is never visible to another, and addresses outside a VM's
            // RAM abort (the hypervisor's memory is not reachable).
            expect_unordered: s(&["[secret] [test-guest] secret: done"]),
            ..Scenario::new(
                "isolation",
                target("qemu-virt", "examples/vms/isolation.toml"),
                s(&[
                    "[secret] [test-guest] secret: written",
                    "[scan] [test-guest] scan: words=",
                    "[scan] [test-guest] scan: PASS",
                    "[hv] all VMs stopped; powering off",
                ]),
            )
        },
        poisoned_ram(),
        lifecycle(),
        storage_host_nvme(false, false, false),
        uplink::net_uplink_usb(false),
        uplink::net_uplink_usb(true),
        storage_host_nvme(true, false, false),
        storage_host_nvme(false, true, false),
        storage_host_nvme(false, false, true),
        storage_host_nvme_read_only(),
        storage_host_ahci(false, false),
        storage_host_ahci(false, true),
        storage_host_ahci(true, false),
        gic_v2_test_guest("qemu-virt-gicv2"),
        gic_v2_test_guest("xlnx-zcu102"),
        Scenario {
            // 4 vCPUs time-sliced on 2 physical CPUs (QEMU -smp 2 on the 4-CPU board: the
            // two missing CPUs fail CPU_ON and are left out).
            smp: Some(2),
            ..Scenario::new(
                "overcommit-4-vcpus-on-2-cpus",
                target("qemu-virt", "examples/vms/overcommit.toml"),
                {
                    let mut e = s(&[
                        "[hv] 2 of 4 CPUs online",
                        "[hv] VM 0 `wide`: 4 vCPU(s) on pCPU(s) [0, 1, 0, 1]",
                    ]);
                    e.extend(guest_passes("wide"));
                    e.push("[hv] all VMs stopped; powering off".into());
                    e
                },
            )
        },
        Scenario {
            // The victim's checks (timer ticks, SGIs, PSCI) still pass while one neighbour
            // spins with interrupts masked and another faults outside its RAM.
            name: "hostile-neighbours".into(),
            target: target("qemu-virt", "examples/vms/hostile-neighbours.toml"),
            // Two physical CPUs: the spinner and the faulter share them with the victim.
            smp: Some(2),
            expect: hostile,
            expect_unordered: s(&[
                "[spinner] [test-guest] hostile: spinning for ever",
                "[faulter] [test-guest] hostile: jumping outside RAM",
            ]),
            forbid: s(&["PANIC", "FATAL", "[victim] [test-guest] FAIL"]),
            expect_exit: false,
            timeout: Duration::from_secs(180),
            input: vec![],
            out_of_tree: false,
            poisoned_ram: false,
            steady: None,
            host_disk: None,
            qmp: None,
            host_nic: None,
            live: vec![],
            check_lines: None,
            extra_args: Vec::new(),
            uefi: None,
            uboot: None,
            boot_image: false,
            prepare: None,
            spin_stub: false,
        },
        Scenario {
            // Console multiplexing: input goes to VM 0, Ctrl-B 1 switches it to VM 1 (the VM
            // file sets `[console] escape = "ctrl-b"`; Ctrl-] is then the guest's); each guest
            // echoes what its virtual UART received (RX interrupt through the vGIC).
            forbid: s(&[
                "FAIL",
                "PANIC",
                "FATAL",
                "[beta] [test-guest] echo: hello",
                "[alpha] [test-guest] echo: world",
            ]),
            input: vec![
                (
                    vec!["[alpha] [test-guest] echo: ready".into()],
                    "hello\r".into(),
                ),
                (
                    // The default key is now an ordinary byte for the guest.
                    vec!["[alpha] [test-guest] echo: hello".into()],
                    "\u{1d}1x\r".into(),
                ),
                (
                    vec!["[alpha] [test-guest] echo: \\x1d1x".into()],
                    "\u{2}1".into(),
                ),
                (
                    vec!["[hv] console input now goes to VM 1".into()],
                    "world\r".into(),
                ),
                (
                    vec!["[beta] [test-guest] echo: world".into()],
                    "off\r".into(),
                ),
                (
                    // `?` lists the VMs, marking where input goes.
                    vec!["[beta] [test-guest] echo: bye".into()],
                    "\u{2}?".into(),
                ),
                (
                    // `n` from the last VM wraps to VM 0 (how VMs past 9 are reached).
                    vec!["[hv] keys: Ctrl-B then 0-9 picks a VM".into()],
                    "\u{2}n".into(),
                ),
                (
                    vec!["[hv] console input now goes to VM 0".into()],
                    "off\r".into(),
                ),
            ],
            ..Scenario::new(
                "console-switch",
                target("qemu-virt", "examples/vms/two-echo.toml"),
                s(&[
                    "[hv] console input goes to VM 0 `alpha`; keys: Ctrl-B then 0-9 picks a VM",
                    "[alpha] [test-guest] echo: hello",
                    "[alpha] [test-guest] echo: \\x1d1x",
                    "[hv] console input now goes to VM 1 `beta`",
                    "[beta] [test-guest] echo: world",
                    "[beta] [test-guest] echo: bye",
                    "[hv] VM 0 `alpha`: running, 1 vCPU(s)",
                    "MiB <- console input",
                    "[hv] keys: Ctrl-B then 0-9 picks a VM",
                    "[hv] console input now goes to VM 0 `alpha`",
                    "[alpha] [test-guest] echo: bye",
                    "[hv] all VMs stopped; powering off",
                ]),
            )
        },
        {
            // The PL031 RTC passed through: the guest reads it and takes its match
            // interrupt, routed from the physical GIC.
            Scenario::new(
                "passthrough-rtc",
                target("qemu-virt", "examples/vms/passthrough.toml"),
                s(&[
                    "[hv] VM 0 `owner`: device rtc passed through, INTID 34",
                    "[owner] [test-guest] PASS console",
                    "[owner] [test-guest] PASS passthrough",
                    "[owner] [test-guest] RESULT: 17 passed, 0 failed",
                    "[hv] all VMs stopped; powering off",
                ]),
            )
        },
        {
            // A board that exists only as a KDL file outside boards.kdl, built into the
            // in-tree image with `--board-file`: no Rust file names it.
            Scenario::new(
                "kdl-only-board",
                Target {
                    board: "acme-board".into(),
                    board_file: workspace_root().join("examples/out-of-tree/acme-board.kdl"),
                    vms: workspace_root().join("examples/vms/test-guest.toml"),
                    allow_experimental: false,
                },
                {
                    let mut e = s(&[
                        "[hv] board: acme-board ",
                        "[hv] device acme-uart0: driver uart-pl011",
                        "[hv] 2 of 2 CPUs online",
                    ]);
                    e.extend(guest_passes("test"));
                    e.push("[hv] all VMs stopped; powering off".into());
                    e
                },
            )
        },
        Scenario {
            // The out-of-tree example as a user builds it: its own workspace, a community
            // plugin crate that registers itself, one `cargo build`.
            out_of_tree: true,
            ..Scenario::new(
                "out-of-tree-image",
                Target {
                    board: "acme-board".into(),
                    board_file: workspace_root().join("examples/out-of-tree/acme-board.kdl"),
                    vms: workspace_root().join("examples/out-of-tree/acme-image/vms.toml"),
                    allow_experimental: false,
                },
                {
                    let mut e = s(&[
                        "[hv] board: acme-board ",
                        "[hv] device acme-uart0: driver acme-uart",
                    ]);
                    e.extend(guest_passes("test"));
                    e.push("[hv] all VMs stopped; powering off".into());
                    e
                },
            )
        },
    ];
    all.extend(uplink_pci::scenarios());
    all.extend(mgmt::evaluation_scenarios());
    all
}

/// Writes a VM file for the Linux scenarios under `target/scenarios/` (absolute paths).
fn write_vms(name: &str, text: &str) -> Result<std::path::PathBuf, String> {
    let dir = workspace_root().join("target/scenarios");
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(path)
}

fn linux_vm(
    name: &str,
    vcpus: u32,
    mib: u32,
    kernel: &std::path::Path,
    initrd: &std::path::Path,
    cmdline: &str,
) -> String {
    format!(
        "[[vm]]\nname = \"{name}\"\nvcpus = {vcpus}\nmemory_mib = {mib}\nkernel = \"{}\"\ninitrd = \"{}\"\ncmdline = \"{cmdline}\"\n\n",
        kernel.display(),
        initrd.display()
    )
}

fn qemu_virt(vms: std::path::PathBuf) -> Target {
    Target {
        board: "qemu-virt".into(),
        board_file: workspace_root().join("boards.kdl"),
        vms,
        allow_experimental: false,
    }
}

/// The `linux-perf-stat` guest's `/init` body: Debian's `perf stat` counts a fixed workload
/// (busybox `seq 1 20000`) at EL0 (`instructions:u`) and at EL0+EL1 with EL2 asked for too
/// (`instructions`: no `exclude_hv`, so Linux sets NSH), CSV lines prefixed `[perf] `.
const PERF_BODY: &str = "echo -1 > /proc/sys/kernel/perf_event_paranoid
perf stat -x, -e instructions:u,instructions /bin/busybox seq 1 20000 > /dev/null 2> /tmp/perf.txt
echo \"[perf] exit $?\"
sed 's/^/[perf] /' /tmp/perf.txt
";

/// The kernel and initramfs of `linux-perf-stat`, for [`perf_matches_bare`] to boot again on
/// bare QEMU.
static PERF_GUEST: std::sync::OnceLock<(std::path::PathBuf, std::path::PathBuf)> =
    std::sync::OnceLock::new();

/// `perf stat` in a Linux guest under `-icount` (QEMU counts instructions only there): the
/// counts must be there, and [`perf_matches_bare`] compares them with the same guest on bare
/// QEMU.
fn perf_stat_scenario(images: &crate::guest::GuestImages) -> Result<Scenario, String> {
    let (vms, kernel, initramfs) = perf_guest("linux-perf-stat", images)?;
    let _ = PERF_GUEST.set((kernel, initramfs));
    Ok(Scenario {
        check_lines: Some(perf_matches_bare),
        ..perf_scenario(
            "linux-perf-stat",
            qemu_virt(vms),
            vec![
                "[linux] [perf] exit 0".into(),
                ",instructions:u,".into(),
                ",instructions,".into(),
                "[hv] all VMs stopped; powering off".into(),
            ],
        )
    })
}

/// The Linux guest of the perf scenarios (Debian's 6.1 kernel, `perf stat` in its
/// initramfs, written once and shared): its VM file for `scenario`, the kernel and the
/// initramfs.
fn perf_guest(
    scenario: &str,
    images: &crate::guest::GuestImages,
) -> Result<(std::path::PathBuf, std::path::PathBuf, std::path::PathBuf), String> {
    let k = images
        .kernel("6.1")
        .ok_or("no 6.1 kernel in the guest cache")?;
    let initramfs = workspace_root().join("target/scenarios/perf-initramfs.cpio.gz");
    std::fs::create_dir_all(workspace_root().join("target/scenarios"))
        .map_err(|e| format!("cannot create target/scenarios: {e}"))?;
    // Written once per run, for both scenarios.
    static WRITTEN: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    WRITTEN
        .get_or_init(|| {
            crate::guest::perf::write_perf_initramfs(
                images,
                &crate::guest::init_script(PERF_BODY),
                &initramfs,
            )
        })
        .clone()?;
    let vms = write_vms(
        scenario,
        &linux_vm(
            "linux",
            1,
            512,
            &k.image,
            &initramfs,
            "console=ttyAMA0 rdinit=/init",
        ),
    )?;
    Ok((vms, k.image.clone(), initramfs))
}

/// A perf scenario: `perf stat` under `-icount` (QEMU counts instructions only there), no
/// counter reported unsupported or uncounted.
fn perf_scenario(name: &str, target: Target, expect: Vec<String>) -> Scenario {
    let mut forbid = linux_forbid();
    forbid.push("<not supported>".into());
    forbid.push("<not counted>".into());
    Scenario {
        forbid,
        extra_args: vec!["-icount".into(), "shift=0".into()],
        timeout: Duration::from_secs(300),
        ..Scenario::new(name, target, expect)
    }
}

/// `linux-perf-counting-only`: the `linux-perf-stat` guest on a board whose PMU overflow
/// interrupt is declared unavailable (`examples/boards/qemu-virt-pmu-counting.kdl`, `pmu
/// unavailable=`, as MACCHIATObin's): the hypervisor says so at boot, the guest's `/pmu` has
/// no `interrupts`, Linux's PMU driver says it cannot sample, and `perf stat` still counts.
fn perf_counting_only_scenario(images: &crate::guest::GuestImages) -> Result<Scenario, String> {
    let (vms, _, _) = perf_guest("linux-perf-counting-only", images)?;
    Ok(perf_scenario(
        "linux-perf-counting-only",
        Target {
            board: "qemu-virt-pmu-counting".into(),
            board_file: workspace_root().join("examples/boards/qemu-virt-pmu-counting.kdl"),
            vms,
            allow_experimental: false,
        },
        vec![
            "[hv] PMU: no overflow interrupt (declared unavailable to test a PMU without overflow interrupts)".into(),
            "no irqs for PMU, sampling events not supported".into(),
            "[linux] [perf] exit 0".into(),
            ",instructions:u,".into(),
            ",instructions,".into(),
            "[hv] all VMs stopped; powering off".into(),
        ],
    ))
}

/// The count of `event` in `perf stat -x,` lines prefixed `[perf] `.
fn perf_count(lines: &[String], event: &str) -> Option<u64> {
    lines.iter().find_map(|l| {
        let csv = &l[l.find("[perf] ")? + 7..];
        let mut f = csv.split(',');
        let value = f.next()?;
        (f.nth(1)? == event).then(|| value.trim().parse().ok())?
    })
}

/// `linux-perf-stat`'s judgement: the same kernel and initramfs on bare QEMU (EL1, no
/// hypervisor, same `-icount`) and the counts compared. The workload's own instructions
/// (`instructions:u`) must agree within 1 %; EL0+EL1 (`instructions`) within 2 %: the guest
/// kernel takes a few more timer ticks under a hypervisor, whose EL2 instructions advance
/// `-icount` time too (measured: +0.97 %). That no EL2 instruction is counted is the test
/// guest's `pmu-idle` check: in this short run the hypervisor's own instructions would add
/// only about 0.07 % (measured with NSH left set).
fn perf_matches_bare(lines: &[String]) -> Result<(), String> {
    let (kernel, initramfs) = PERF_GUEST
        .get()
        .ok_or("linux-perf-stat: its guest was never prepared")?;
    let out = Command::new("timeout")
        .arg("300")
        .arg(qemu::QEMU)
        .args(["-M", "virt", "-cpu", "cortex-a57", "-m", "512", "-smp", "1"])
        .args([
            "-nographic",
            "-no-reboot",
            "-net",
            "none",
            "-icount",
            "shift=0",
        ])
        .arg("-kernel")
        .arg(kernel)
        .arg("-initrd")
        .arg(initramfs)
        .args(["-append", "console=ttyAMA0 rdinit=/init"])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", qemu::QEMU))?;
    let bare: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    for (event, percent) in [("instructions:u", 1), ("instructions", 2)] {
        let hv = perf_count(lines, event)
            .ok_or_else(|| format!("no `{event}` count under the hypervisor"))?;
        let b = perf_count(&bare, event).ok_or_else(|| {
            format!(
                "no `{event}` count on bare QEMU (its output ends: {:?})",
                bare.iter().rev().take(5).collect::<Vec<_>>()
            )
        })?;
        eprintln!("    perf stat {event}: {hv} under the hypervisor, {b} on bare QEMU");
        if hv.abs_diff(b) * 100 > b * percent {
            return Err(format!(
                "perf stat counted {hv} {event} under the hypervisor, {b} on bare QEMU: more than {percent} % apart"
            ));
        }
    }
    Ok(())
}

/// What no Linux scenario may print.
fn linux_forbid() -> Vec<String> {
    [
        "Kernel panic",
        "PANIC",
        "FATAL",
        "STUCK",
        ": NONE",
        "Oops",
        "BUG:",
    ]
    .map(String::from)
    .to_vec()
}

/// Scenarios with Debian's kernels (fetched on first use by `guest::ensure`).
pub fn linux_scenarios() -> Result<Vec<Scenario>, String> {
    let mut images = crate::guest::ensure()?;
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let linux_forbid = linux_forbid();
    let mut out = vec![
        storage::nvme_root(&images)?,
        storage::virtio_blk(&images)?,
        storage::ahci(&images)?,
        storage::durability(&images)?,
        storage_isolation::scenario()?,
        net_hostile::scenario(),
    ];
    out.extend(net::scenarios(&images)?);
    out.push(numa::scenario(&images)?);
    out.push(perf_stat_scenario(&images)?);
    out.push(perf_counting_only_scenario(&images)?);
    // One scenario per kernel: userspace with 4 CPUs, timer and IPI counts rising, clean
    // power-off.
    for k in &images.kernels {
        let vms = write_vms(
            &format!("linux-{}", k.series),
            &linux_vm(
                "linux",
                4,
                512,
                &k.image,
                &images.initramfs,
                "console=ttyAMA0 rdinit=/init autotest",
            ),
        )?;
        out.push(Scenario {
            expect_unordered: s(&[": rising", ": counting"]),
            forbid: linux_forbid.clone(),
            timeout: Duration::from_secs(300),
            ..Scenario::new(
                format!("linux-{}", k.series),
                qemu_virt(vms),
                vec![
                    format!("[linux] [initramfs] userspace up: {}", k.release),
                    "[linux] [initramfs] cpus: nproc=4 cpuinfo=4".into(),
                    "[linux] [initramfs] autotest: timer interrupts".into(),
                    "[linux] [initramfs] autotest: IPIs".into(),
                    "[linux] [initramfs] autotest: done, powering off".into(),
                    "[hv] VM 0 `linux` stopped: guest called PSCI SYSTEM_OFF".into(),
                    "[hv] all VMs stopped; powering off".into(),
                ],
            )
        });
    }
    let k61 = images
        .kernel("6.1")
        .ok_or("no 6.1 kernel in the guest cache")?;
    // Linux on the GIC-400 boards (vGICv2).
    for board in ["qemu-virt-gicv2", "xlnx-zcu102"] {
        let vms = write_vms(
            &format!("linux-6.1-{board}"),
            &linux_vm(
                "linux",
                4,
                512,
                &k61.image,
                &images.initramfs,
                "console=ttyAMA0 rdinit=/init autotest",
            ),
        )?;
        out.push(Scenario {
            expect_unordered: s(&[": rising", ": counting", "GIC-0  27 Level     arch_timer"]),
            forbid: linux_forbid.clone(),
            timeout: Duration::from_secs(300),
            ..Scenario::new(
                format!("linux-6.1-{board}"),
                Target {
                    board: board.into(),
                    ..qemu_virt(vms)
                },
                vec![
                    format!("[hv] board: {board} "),
                    format!("[linux] [initramfs] userspace up: {}", k61.release),
                    "[linux] [initramfs] cpus: nproc=4 cpuinfo=4".into(),
                    "[linux] [initramfs] autotest: done, powering off".into(),
                    "[hv] all VMs stopped; powering off".into(),
                ],
            )
        });
    }
    // An initramfs built here whose /init prints values computed at run time.
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(12345);
    let (a, b) = (
        u64::from(seed % 9000) + 1000,
        u64::from(seed / 7 % 900) + 100,
    );
    let custom = workspace_root().join("target/scenarios/custom-initramfs.cpio.gz");
    let body = format!(
        "a={a}; b={b}\necho \"[custom] sum=$((a + b)) product=$((a * b)) cpus=$(nproc) kernel=$(uname -r)\""
    );
    crate::guest::write_initramfs(&images, &crate::guest::init_script(&body), &custom)?;
    let vms = write_vms(
        "linux-custom-init",
        &linux_vm(
            "custom",
            2,
            256,
            &k61.image,
            &custom,
            "console=ttyAMA0 rdinit=/init",
        ),
    )?;
    out.push(Scenario {
        forbid: linux_forbid.clone(),
        timeout: Duration::from_secs(300),
        ..Scenario::new(
            "linux-custom-init",
            qemu_virt(vms),
            vec![
                format!(
                    "[custom] [custom] sum={} product={} cpus=2 kernel={}",
                    a + b,
                    a * b,
                    k61.release
                ),
                "[hv] all VMs stopped; powering off".into(),
            ],
        )
    });
    // A hostile guest (random MMIO outside its RAM, random HVC/SMC, trapped and IMPDEF
    // system registers, syndrome-less MMIO, SGIs to absent vCPUs, bad CPU_ON) beside a Linux
    // VM whose workload result is checked.
    let test_guest_bin = workspace_root().join("target/guests/test-guest.bin");
    let workload = "s=$(seq 1 5000 | awk '{ t += $1 } END { print t }')\necho \"[worker] sum=$s\"";
    let worker_initrd = workspace_root().join("target/scenarios/worker-initramfs.cpio.gz");
    crate::guest::write_initramfs(
        &images,
        &crate::guest::init_script(workload),
        &worker_initrd,
    )?;
    let mut text = format!(
        "[[vm]]\nname = \"hostile\"\nvcpus = 2\nmemory_mib = 64\nkernel = \"{}\"\ncmdline = \"hostile seed=7 iters=2000000 reset\"\n\n",
        test_guest_bin.display()
    );
    text += &linux_vm(
        "worker",
        2,
        256,
        &k61.image,
        &worker_initrd,
        "console=ttyAMA0 rdinit=/init",
    );
    let vms = write_vms("hostile-beside-linux", &text)?;
    let kinds = ["mmio", "hvc", "smc", "sysreg", "noisv", "sgi", "cpu_on"];
    out.push(Scenario {
        expect_unordered: kinds
            .iter()
            .map(|k| format!("[hostile] [test-guest] hostile: {k} ops="))
            .chain(["[hv] VM 1 `worker` stopped: guest called PSCI SYSTEM_OFF".to_string()])
            .collect(),
        forbid: s(&[
            "PANIC",
            "FATAL",
            "Kernel panic",
            "Oops",
            "BUG:",
            "[hv] VM 1 `worker` stopped: abort",
        ]),
        timeout: Duration::from_secs(300),
        ..Scenario::new(
            "hostile-beside-linux",
            qemu_virt(vms),
            vec![
                // The worker finishes while the hostile guest is still at it.
                "[hostile] [test-guest] hostile: start seed=7 iters=2000000".into(),
                "[worker] [worker] sum=12502500".into(),
                "[hostile] [test-guest] hostile: done seed=7 iters=2000000".into(),
                // Then it resets itself (PSCI SYSTEM_RESET): the hypervisor reloads that VM
                // only, and the second run powers off.
                "[hostile] [test-guest] hostile: resetting itself".into(),
                "[hv] VM 0 `hostile` resetting".into(),
                "[hostile] [test-guest] hostile: running again after reset 1".into(),
                "[hostile] [test-guest] hostile: done seed=7 iters=2000000".into(),
                "[hv] all VMs stopped; powering off".into(),
            ],
        )
    });
    // Two interactive Linux VMs and the test guest at once: each shell answers on its own
    // console; `reboot` restarts one VM only; `poweroff` stops each; then the hypervisor.
    let test_guest = workspace_root().join("target/guests/test-guest.bin");
    let mut text = linux_vm(
        "linux-a",
        2,
        256,
        &k61.image,
        &images.initramfs,
        "console=ttyAMA0 rdinit=/init",
    );
    text += &linux_vm(
        "linux-b",
        2,
        256,
        &k61.image,
        &images.initramfs,
        "console=ttyAMA0 rdinit=/init",
    );
    text += &format!(
        "[[vm]]\nname = \"test\"\nvcpus = 2\nmemory_mib = 64\nkernel = \"{}\"\ncmdline = \"\"\n",
        test_guest.display()
    );
    let vms = write_vms("two-linux", &text)?;
    let shell = "[initramfs] starting a shell on the console";
    out.push(Scenario {
        expect_unordered: s(&[
            "[test] [test-guest] RESULT: 16 passed, 0 failed",
            "[hv] VM 2 `test` stopped",
        ]),
        forbid: {
            let mut f = linux_forbid;
            f.push("[test] [test-guest] FAIL".into());
            f
        },
        timeout: Duration::from_secs(400),
        input: vec![
            // Both shells must be up before typing (they boot in parallel, either first).
            (
                vec![format!("[linux-a] {shell}"), format!("[linux-b] {shell}")],
                "echo a-$((6*7))\r".into(),
            ),
            (vec!["[linux-a] a-42".into()], "\u{1d}1".into()),
            (
                vec!["[hv] console input now goes to VM 1".into()],
                "echo b-$((7*8))\r".into(),
            ),
            (vec!["[linux-b] b-56".into()], "reboot -f\r".into()),
            (
                vec![format!("[linux-b] {shell}")],
                "echo b-again-$((8*9))\r".into(),
            ),
            (vec!["[linux-b] b-again-72".into()], "poweroff -f\r".into()),
            (vec!["[hv] VM 1 `linux-b` stopped".into()], "\u{1d}0".into()),
            (
                vec!["[hv] console input now goes to VM 0".into()],
                "poweroff -f\r".into(),
            ),
        ],
        ..Scenario::new(
            "linux-two-vms-and-test-guest",
            qemu_virt(vms),
            vec![
                format!("[linux-a] {shell}"),
                "[linux-a] a-42".into(),
                "[hv] console input now goes to VM 1 `linux-b`".into(),
                "[linux-b] b-56".into(),
                "[hv] VM 1 `linux-b` resetting".into(),
                format!("[linux-b] {shell}"),
                "[linux-b] b-again-72".into(),
                "[hv] VM 1 `linux-b` stopped: guest called PSCI SYSTEM_OFF".into(),
                "[hv] console input now goes to VM 0 `linux-a`".into(),
                "[hv] VM 0 `linux-a` stopped: guest called PSCI SYSTEM_OFF".into(),
                "[hv] all VMs stopped; powering off".into(),
            ],
        )
    });
    // Also the guests' power button (shutdown through the API).
    out.push(mgmt::scenario(&mut images)?);
    out.push(uefi_boot(&images)?);
    out.push(uefi_acpi_mismatch()?);
    Ok(out)
}

/// `uefi-boot`: EDK2 (Debian's `qemu-efi-aarch64`) starts the hypervisor's `.efi` from a FAT
/// ESP on a virtio-blk disk; the loader reads `HV/VMS.TOML` (a Linux VM and the test
/// guest, both `autostart`) and their images from it, takes RAM from the UEFI memory map
/// and hands over; the hypervisor defines both VMs from the modules, says where its RAM
/// came from, and both run to their end; then the console powers the machine off.
fn uefi_boot(images: &crate::guest::GuestImages) -> Result<Scenario, String> {
    let k61 = images
        .kernel("6.1")
        .ok_or("no 6.1 kernel in the guest cache")?;
    let test_guest = build::test_guest()?;
    let mut text = linux_vm(
        "linux",
        2,
        256,
        &k61.image,
        &images.initramfs,
        "console=ttyAMA0 rdinit=/init autotest",
    );
    text = text.replace("\n\n", "\nautostart = true\n\n");
    text += &format!(
        "[[vm]]\nname = \"test\"\nvcpus = 2\nmemory_mib = 64\nkernel = \"{}\"\ncmdline = \"\"\nautostart = true\n",
        test_guest.display()
    );
    let vms = write_vms("uefi-boot", &text)?;
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let mut unordered = guest_passes("test");
    let (linux_off, test_off) = (
        "`linux` stopped: guest called PSCI SYSTEM_OFF",
        "`test` stopped: guest called PSCI SYSTEM_OFF",
    );
    unordered.extend(s(&[
        "[hv] VM `linux` defined from boot module module@",
        "[hv] VM `test` defined from boot module module@",
        "[linux] [initramfs] cpus: nproc=2 cpuinfo=2",
        "[linux] [initramfs] autotest: done, powering off",
        linux_off,
        test_off,
    ]));
    unordered.push(format!("[linux] [initramfs] userspace up: {}", k61.release));
    Ok(Scenario {
        expect_unordered: unordered,
        forbid: {
            let mut f = linux_forbid();
            f.push("[test] [test-guest] FAIL".into());
            f.push("[hv-uefi] error".into());
            f
        },
        timeout: Duration::from_secs(300),
        uefi: Some(qemu::UefiBoot { vms: vms.clone() }),
        check_lines: Some(uefi_handoff_consistent),
        // VMs defined at boot make a managed host, which stays up when they stop.
        input: vec![(s(&[linux_off, test_off]), "\x1d:poweroff\r".into())],
        ..Scenario::new(
            "uefi-boot",
            // No build-time VMs: both come from the ESP.
            target("qemu-virt", "examples/vms/none.toml"),
            vec![
                "[hv-uefi] running at EL2".into(),
                "[hv-uefi] \\HV\\VMS.TOML: ".into(),
                "[hv-uefi] read \\HV\\IMAGES\\Image: ".into(),
                "[hv-uefi] ACPI 2.0 RSDP at 0x".into(),
                "[hv-uefi] exiting boot services; the hypervisor starts at".into(),
                "[hv] board: qemu-virt ".into(),
                "[hv] loaded at 0x".into(),
                "[hv] RAM from the UEFI memory map: ".into(),
                "[hv] ACPI RSDP at 0x".into(),
                "hv,vm-config".into(),
                // CPUs and GIC from the MADT, the rest of the tables, and the check
                // against the board KDL.
                "[hv] ACPI XSDT (rev 2): MADT 4 CPUs enabled, GICv3 GICD 0x8000000, GICR 0x80a0000+0xf60000".into(),
                "[hv] ACPI agrees with the board KDL (boards.kdl)".into(),
                "[hv] powering off".into(),
            ],
        )
    })
}

/// `uefi-acpi-mismatch`: the same UEFI boot with a board KDL whose GIC distributor is not
/// where the firmware's MADT says (`examples/boards/qemu-virt-wrong-gicd.kdl`): the
/// hypervisor names the KDL line and the MADT's value and refuses to start, before it
/// initialises the GIC or any VM.
fn uefi_acpi_mismatch() -> Result<Scenario, String> {
    let file = workspace_root().join("examples/boards/qemu-virt-wrong-gicd.kdl");
    let text = std::fs::read_to_string(&file)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let line = text
        .lines()
        .position(|l| l.trim_start().starts_with("distributor "))
        .ok_or("no distributor line in qemu-virt-wrong-gicd.kdl")?
        + 1;
    let test_guest = build::test_guest()?;
    let vms = write_vms(
        "uefi-acpi-mismatch",
        &format!(
            "[[vm]]\nname = \"test\"\nvcpus = 1\nmemory_mib = 64\nkernel = \"{}\"\ncmdline = \"\"\nautostart = true\n",
            test_guest.display()
        ),
    )?;
    Ok(Scenario {
        forbid: vec![
            "[hv] VM ".into(),
            "[test-guest]".into(),
            "CPUs online".into(),
            "[hv-uefi] error".into(),
        ],
        // The host halts with its message on the console (a server's operator reads it
        // there): the scenario ends with the last line.
        expect_exit: false,
        timeout: Duration::from_secs(240),
        uefi: Some(qemu::UefiBoot { vms }),
        ..Scenario::new(
            "uefi-acpi-mismatch",
            Target {
                board: "qemu-virt-wrong-gicd".into(),
                board_file: file.clone(),
                vms: workspace_root().join("examples/vms/none.toml"),
                allow_experimental: false,
            },
            vec![
                "[hv-uefi] exiting boot services".into(),
                "[hv] board: qemu-virt-wrong-gicd ".into(),
                "[hv] ACPI XSDT (rev 2): MADT 4 CPUs enabled, GICv3 GICD 0x8000000".into(),
                format!(
                    "[hv] error: qemu-virt-wrong-gicd.kdl:{line} gic distributor 0x8010000, but the firmware's MADT says GICD at 0x8000000: refusing to start"
                ),
                "[hv] FATAL: the firmware's ACPI tables contradict the board KDL (above); not starting".into(),
            ],
        )
    })
}

/// The first word after `prefix` in the first line holding it, parsed as a hex number.
fn hex_after(lines: &[String], prefix: &str) -> Result<u64, String> {
    let line = lines
        .iter()
        .find(|l| l.contains(prefix))
        .ok_or_else(|| format!("no line with `{prefix}`"))?;
    let word = line[line.find(prefix).unwrap_or(0) + prefix.len()..]
        .split(|c: char| c.is_whitespace() || c == ',')
        .find(|w| !w.is_empty())
        .unwrap_or("");
    u64::from_str_radix(word.trim_start_matches("0x").replace('_', "").as_str(), 16)
        .map_err(|e| format!("`{word}` in `{line}` is not a hex number: {e}"))
}

/// `uefi-boot`: the hypervisor runs where the loader put it and got the RSDP the loader
/// found, and the RSDP (in ACPI memory, which is never RAM) lies in none of the RAM ranges
/// the hypervisor took from the UEFI memory map.
fn uefi_handoff_consistent(lines: &[String]) -> Result<(), String> {
    let placed = hex_after(
        lines,
        "[hv-uefi] exiting boot services; the hypervisor starts at ",
    )?;
    let loaded = hex_after(lines, "[hv] loaded at ")?;
    if placed != loaded {
        return Err(format!(
            "the loader placed the hypervisor at {placed:#x}, it says it runs at {loaded:#x}"
        ));
    }
    let found = hex_after(lines, "[hv-uefi] ACPI 2.0 RSDP at ")?;
    let got = hex_after(lines, "[hv] ACPI RSDP at ")?;
    if found != got {
        return Err(format!(
            "the loader found the RSDP at {found:#x}, the hypervisor got {got:#x}"
        ));
    }
    let mut ranges = 0;
    for l in lines.iter().filter(|l| l.starts_with("[hv] memory ")) {
        // `[hv] memory NAME: 0xSTART..0xEND (...)`
        let span = l
            .split_whitespace()
            .nth(3)
            .and_then(|w| w.split_once(".."))
            .ok_or_else(|| format!("cannot read the range in `{l}`"))?;
        let parse = |w: &str| u64::from_str_radix(w.trim_start_matches("0x"), 16);
        let (start, end) = (
            parse(span.0).map_err(|e| format!("`{l}`: {e}"))?,
            parse(span.1).map_err(|e| format!("`{l}`: {e}"))?,
        );
        if (start..end).contains(&got) {
            return Err(format!(
                "the ACPI RSDP at {got:#x} lies in RAM the hypervisor uses: `{l}`"
            ));
        }
        ranges += 1;
    }
    if ranges == 0 {
        return Err("the hypervisor printed no `[hv] memory` range".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_console_check_wants_a_failed_build_that_names_the_compatible() {
        let msg = "error: board `qemu-virt-sbsa-console`: no driver linked into this image handles the console `uart0`, compatible \"arm,sbsa-uart\"; ... Drivers the image crate depends on: uart-pl011 (arm,pl011).";
        assert_eq!(console_build_refused(false, msg), Ok(()));
        assert!(console_build_refused(true, "").is_err());
        // Failed for another reason.
        assert!(console_build_refused(false, "error: linking with `rust-lld` failed").is_err());
    }

    #[test]
    fn perf_counts_are_read_by_event_name() {
        let lines: Vec<String> = [
            "[linux] [perf] exit 0",
            "[linux] [perf] 48708404,,instructions:u,49665200,100.00,,",
            "[linux] [perf] 49586212,,instructions,49665200,100.00,,",
            "[linux] [perf] <not supported>,,cycles,0,100.00,,",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(perf_count(&lines, "instructions:u"), Some(48_708_404));
        assert_eq!(perf_count(&lines, "instructions"), Some(49_586_212));
        // Not counted, or not there: no figure to compare.
        assert_eq!(perf_count(&lines, "cycles"), None);
        assert_eq!(perf_count(&lines, "branches"), None);
    }
    use crate::disk::{create, PartSpec};

    #[test]
    fn uboot_modules_must_be_where_and_as_long_as_u_boot_loaded_them() {
        let lines = |toml_node: &str, image_node: &str| -> Vec<String> {
            [
                "274 bytes read in 1 ms (267.6 KiB/s)",
                "hv-bundle: VMS.TOML at 0x42600000",
                "192208 bytes read in 1 ms (183.3 MiB/s)",
                "hv-bundle: IMAGES/test-guest.bin at 0x42800000",
                "hv-bundle: device tree at 0x42a00000",
                "[hv] device tree from the loader at 0x42a0_0000 (8192 bytes)",
                toml_node,
                image_node,
            ]
            .map(String::from)
            .to_vec()
        };
        let toml = "[hv] module module@42600000: 0x42600000..0x42600112 hv,vm-config";
        let image = "[hv] module module@42800000: 0x42800000..0x4282eed0 hv,vm-image \"IMAGES/test-guest.bin\"";
        assert_eq!(uboot_modules_where_loaded(&lines(toml, image)), Ok(()));
        // What `tftpboot` says instead of `load`.
        let mut tftp = lines(toml, image);
        tftp[0] = "Bytes transferred = 274 (112 hex)".into();
        assert_eq!(uboot_modules_where_loaded(&tftp), Ok(()));
        tftp[0] = "Bytes transferred = 275 (113 hex)".into();
        let e = uboot_modules_where_loaded(&tftp).unwrap_err();
        assert!(e.contains("U-Boot read 275 bytes of VMS.TOML"), "{e}");
        // The node's size is not what U-Boot read.
        let e = uboot_modules_where_loaded(&lines(
            "[hv] module module@42600000: 0x42600000..0x42601000 hv,vm-config",
            image,
        ))
        .unwrap_err();
        assert!(e.contains("U-Boot read 274 bytes of VMS.TOML"), "{e}");
        // The node is somewhere else.
        let e = uboot_modules_where_loaded(&lines(
            toml,
            "[hv] module module@42a00000: 0x42a00000..0x42a2eed0 hv,vm-image",
        ))
        .unwrap_err();
        assert!(e.contains("has no `[hv] module module@42800000"), "{e}");
        // The wrong compatible.
        let e = uboot_modules_where_loaded(&lines(
            "[hv] module module@42600000: 0x42600000..0x42600112 hv,vm-image",
            image,
        ))
        .unwrap_err();
        assert!(e.contains("want hv,vm-config"), "{e}");
        // The tree was relocated elsewhere.
        let mut moved = lines(toml, image);
        moved[5] = "[hv] device tree from the loader at 0xbdba_b000 (8192 bytes)".into();
        let e = uboot_modules_where_loaded(&moved).unwrap_err();
        assert!(e.contains("the hypervisor got 0xbdbab000"), "{e}");
    }

    fn disk_holding(dir: &std::path::Path, sector0: &[u8]) -> std::path::PathBuf {
        std::fs::create_dir_all(dir).unwrap();
        let fill = dir.join("fill.bin");
        std::fs::write(&fill, sector0).unwrap();
        let img = dir.join("disk.img");
        let part = |label: &str, fill| PartSpec {
            label: label.into(),
            bytes: 1 << 20,
            fill,
        };
        create(
            &img,
            4 << 20,
            &[part("other", None), part(SELFTEST_LABEL, Some(fill))],
        )
        .unwrap();
        img
    }

    /// What the self-test leaves in its partition for `value`, with byte `broken` of the
    /// big pattern changed.
    fn selftest_fill(value: u64, broken: Option<usize>) -> Vec<u8> {
        let mut fill = vec![0u8; 410 * 512];
        let text = format!("HV-SELFTEST {value:016x}\n");
        fill[..text.len()].copy_from_slice(text.as_bytes());
        for i in 0..401 * 512 {
            fill[9 * 512 + i] = ((value >> ((i % 8) * 8)) as u8).wrapping_add((i / 512) as u8);
        }
        if let Some(i) = broken {
            fill[9 * 512 + i] ^= 1;
        }
        fill
    }

    #[test]
    fn the_uefi_handoff_check_wants_matching_addresses_and_the_rsdp_outside_ram() {
        let lines = |placed: &str, rsdp: &str, ram_end: &str| -> Vec<String> {
            [
                "[hv-uefi] ACPI 2.0 RSDP at 0xbc430018".to_string(),
                format!("[hv-uefi] exiting boot services; the hypervisor starts at {placed} with the device tree at 0xba503000"),
                "[hv] loaded at 0xb8400000, linked at 0x40400000: relocated by +0x78000000".into(),
                format!("[hv] ACPI RSDP at {rsdp} (from /chosen)"),
                format!("[hv] memory memory@40000000: 0x40000000..{ram_end} (1988 MiB, node 0)"),
                "[hv] memory memory@bc730000: 0xbc730000..0xbfc00000 (52 MiB, node 0)".into(),
            ]
            .to_vec()
        };
        assert_eq!(
            uefi_handoff_consistent(&lines("0xb8400000", "0xbc430018", "0xbc430000")),
            Ok(())
        );
        let e =
            uefi_handoff_consistent(&lines("0xb8600000", "0xbc430018", "0xbc430000")).unwrap_err();
        assert!(e.contains("placed the hypervisor at 0xb8600000"), "{e}");
        let e =
            uefi_handoff_consistent(&lines("0xb8400000", "0xbc430000", "0xbc430000")).unwrap_err();
        assert!(e.contains("the hypervisor got 0xbc430000"), "{e}");
        let e =
            uefi_handoff_consistent(&lines("0xb8400000", "0xbc430018", "0xbc730000")).unwrap_err();
        assert!(e.contains("lies in RAM"), "{e}");
        assert!(
            uefi_handoff_consistent(&lines("0xb8400000", "0xbc430018", "0xbc430000")[..4]).is_err()
        );
    }

    #[test]
    fn the_storage_check_finds_the_printed_value_and_nothing_else() {
        let dir = std::env::temp_dir().join(format!("xtask-selftest-{}", std::process::id()));
        let value = 0x0123_4567_89ab_cdef_u64;
        let img = disk_holding(&dir, &selftest_fill(value, None));
        let lines = |v: &str| {
            vec![
                format!(
                    "[hv] storage self-test: wrote value={v} to \"hv-selftest\" sector 0, flushed, read back equal"
                ),
                "[hv] storage self-test: 401 sectors at sector 9 of \"hv-selftest\" written, flushed, read back equal".to_string(),
            ]
        };
        assert_eq!(
            storage_selftest_landed(&img, &lines("0123456789abcdef")),
            Ok(())
        );
        let err = storage_selftest_landed(&img, &lines("0123456789abcdee")).unwrap_err();
        assert!(
            err.contains("holds \"HV-SELFTEST 0123456789abcdef\\n\""),
            "{err}"
        );
        assert!(
            storage_selftest_landed(&img, &[]).is_err(),
            "no line printed"
        );
        assert!(storage_selftest_landed(&img, &lines("0123456789abcdef")[..1]).is_err());
        let img = disk_holding(&dir, &selftest_fill(value, Some(70_000)));
        let err = storage_selftest_landed(&img, &lines("0123456789abcdef")).unwrap_err();
        assert!(
            err.contains("byte 70000 of the 401-sector pattern"),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn the_write_error_check_wants_sector_0_untouched_and_the_pattern_landed() {
        let dir = std::env::temp_dir().join(format!("xtask-write-error-{}", std::process::id()));
        let value = 0x0123_4567_89ab_cdef_u64;
        let lines = vec![
            "[hv] storage self-test: FAIL: device error (status 0x441)".to_string(),
            "[hv] storage self-test: 401 sectors at sector 9 of \"hv-selftest\" written, flushed, read back equal".to_string(),
        ];
        let mut fill = selftest_fill(value, None);
        fill[..512].fill(0);
        let img = disk_holding(&dir, &fill);
        assert_eq!(storage_first_write_refused(&img, &lines), Ok(()));
        // The blkdebug rule sits at the partition's first sector, for writes only.
        let start = crate::disk::list(&img).unwrap()[1].1;
        let rules = selftest_write_error(&img).unwrap();
        assert!(rules.contains(&format!("sector = \"{start}\"")), "{rules}");
        assert!(rules.contains("iotype = \"write\""), "{rules}");
        // The failed write landed after all.
        let img = disk_holding(&dir, &selftest_fill(value, None));
        let err = storage_first_write_refused(&img, &lines).unwrap_err();
        assert!(err.contains("although its write failed"), "{err}");
        // The big transfer is damaged, or was never reported.
        let mut fill = selftest_fill(value, Some(1234));
        fill[..512].fill(0);
        let img = disk_holding(&dir, &fill);
        let err = storage_first_write_refused(&img, &lines).unwrap_err();
        assert!(err.contains("byte 1234 of the 401-sector pattern"), "{err}");
        let mut fill = selftest_fill(value, None);
        fill[..512].fill(0);
        let img = disk_holding(&dir, &fill);
        assert!(storage_first_write_refused(&img, &lines[..1]).is_err());
        let _ = std::fs::remove_dir_all(dir);
    }
}
