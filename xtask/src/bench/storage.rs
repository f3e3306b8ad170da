//! Storage rows of `cargo xtask bench`: a Linux guest runs `examples/iobench` (O_DIRECT,
//! sequential 1 MiB and random 4 KiB reads and writes) on its disks, bare and as a VM.
//!
//! Under the hypervisor each disk is a partition of the machine's NVMe drive (QEMU
//! `-device nvme`, one GPT image file) behind the VM's virtual NVMe, virtio-blk or AHCI
//! controller. Bare, the same kernel and initramfs get raw files of the same size on
//! QEMU's own NVMe (the baseline of every row, as the issue sets it) and on QEMU's own
//! controller of the same kind (`virtio-blk-pci`, `ich9-ahci`), for comparison.
//!
//! The guests of a kernel series share one run each way: 6.1 (NVMe built in, virtio-blk
//! from modules) has an NVMe and a virtio-blk disk, 6.12 (the only Debian cloud kernel with
//! AHCI) an NVMe and an AHCI disk; `/init` runs iobench on each disk in turn. `--smoke`
//! runs the 6.1 pair with the NVMe disk only, with smaller sizes.
//!
//! Under `-icount shift=0` guest time counts the guest's (and the hypervisor's)
//! instructions, not the host disk's work: the figures say how many instructions an I/O
//! costs, not how fast a disk is. Except while every CPU waits: QEMU's disk work is done
//! by its I/O threads in host time, and a guest idling in `WFI` for the completion
//! interrupt sees no instructions. With the rest of the bench's `sleep=off`, QEMU would move
//! guest time on to the next timer deadline (up to a 4 ms tick of Debian's HZ=250 kernel)
//! at once, so bare runs, whose guest idles, came out 10-100x apart from run to run, while
//! under the hypervisor (which polls the machine's NVMe drive and never idles) they did not.
//! The storage runs therefore use [`STORAGE_ICOUNT`] (`sleep=on`): idle guest time passes at
//! host speed, so a wait costs what the host's I/O took, on both sides. That part follows
//! the host's load, so a full run boots each side [`IO_REPS`] times (interleaved) and
//! reports the median of each figure with its min..max.

use super::{
    bare_command, hv_command, image, mkdir, qemu_virt, run_qemu, write_file, BenchError, RunOutput,
    ICOUNT_ARGS,
};
use crate::disk::{self, PartSpec};
use std::path::{Path, PathBuf};
use std::process::Command;

/// `-icount` of the storage runs: `sleep=on` instead of the bench's `sleep=off` (see the
/// module doc).
const STORAGE_ICOUNT: &str = "shift=0,sleep=on";

/// `cmd` with its `-icount` value replaced by [`STORAGE_ICOUNT`].
pub(super) fn with_storage_icount(cmd: &Command) -> Command {
    let mut c = Command::new(cmd.get_program());
    let mut icount_next = false;
    for a in cmd.get_args() {
        if icount_next {
            c.arg(STORAGE_ICOUNT);
        } else {
            c.arg(a);
        }
        icount_next = a == "-icount";
    }
    c
}

/// vCPUs of the storage guests, bare (`-smp`) and as a VM.
const IO_CPUS: u32 = 2;
/// Their RAM, bare and as a VM.
const IO_MIB: u32 = 256;
/// Size of each benchmark disk (a partition under the hypervisor, a raw file bare).
const IO_DISK_MIB: u64 = 32;
/// MiB read and written sequentially, and random 4 KiB operations each way: full run.
const IO_SEQ_MIB: u64 = 16;
const IO_RAND_OPS: u32 = 256;
/// The same for `--smoke`.
const IO_SEQ_MIB_SMOKE: u64 = 4;
const IO_RAND_OPS_SMOKE: u32 = 64;
/// Runs each way (bare, hypervisor, interleaved) of a full run; each figure is the median.
/// Guest time includes idle warps (see the module doc), so one run can be an outlier.
const IO_REPS: usize = 3;
/// Goal of the issue: sequential NVMe read and write under the hypervisor at least this
/// many percent of bare QEMU NVMe.
const TARGET_SEQ_PCT: f64 = 70.0;
/// Console line iobench prints its figures on (`examples/iobench`).
const IOBENCH_LINE: &str = "[iobench] seq-read ";

/// A guest-facing disk controller of the benchmark.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Controller {
    /// Shown in the table.
    name: &'static str,
    /// `controller = ...` of `[[vm.disk]]`.
    vm: &'static str,
    /// The disk's device name in the guest.
    guest_dev: &'static str,
}

const NVME: Controller = Controller {
    name: "NVMe",
    vm: "nvme",
    guest_dev: "nvme0n1",
};
const VIRTIO_BLK: Controller = Controller {
    name: "virtio-blk",
    vm: "virtio-blk",
    guest_dev: "vda",
};
const AHCI: Controller = Controller {
    name: "AHCI",
    vm: "ahci",
    guest_dev: "sda",
};

impl Controller {
    /// The GPT label of this controller's partition on the hypervisor's drive.
    fn label(&self) -> String {
        format!("io-{}", self.vm)
    }

    /// QEMU `-device` values that attach drive `drive` to QEMU's own controller of this kind.
    fn bare_devices(&self, drive: &str) -> Vec<String> {
        match self.vm {
            "nvme" => vec![format!("nvme,serial=bare-{drive},drive={drive}")],
            "virtio-blk" => vec![format!("virtio-blk-pci,drive={drive}")],
            _ => vec![
                format!("ich9-ahci,id=ahci-{drive}"),
                format!("ide-hd,drive={drive},bus=ahci-{drive}.0"),
            ],
        }
    }
}

/// One kernel series and the disks its guest benchmarks (NVMe first: the baseline).
struct Group {
    series: &'static str,
    modules: &'static [&'static str],
    controllers: Vec<Controller>,
}

/// What one iobench run on one disk printed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct IoFigures {
    seq_read_mbps: f64,
    seq_write_mbps: f64,
    rand_read_iops: f64,
    rand_write_iops: f64,
}

/// One figure of an [`IoFigures`].
type Figure = fn(&IoFigures) -> f64;

/// The four figures, in table order: name, unit, value.
const FIGURES: [(&str, &str, Figure); 4] = [
    ("seq read 1 MiB", "MB/s", |f| f.seq_read_mbps),
    ("seq write 1 MiB", "MB/s", |f| f.seq_write_mbps),
    ("rand read 4 KiB", "IOPS", |f| f.rand_read_iops),
    ("rand write 4 KiB", "IOPS", |f| f.rand_write_iops),
];

/// The storage part of the table: one controller of one kernel series, one [`IoFigures`]
/// per run.
pub(super) struct StorageResult {
    series: &'static str,
    controller: Controller,
    /// Bare QEMU NVMe, same kernel and initramfs: the baseline.
    bare_nvme: Vec<IoFigures>,
    /// Bare QEMU's own controller of the same kind (none for NVMe: that is the baseline).
    bare_same: Option<Vec<IoFigures>>,
    hv: Vec<IoFigures>,
}

/// The median of one figure over runs (0 when there are none: `run` never returns that).
fn med(runs: &[IoFigures], f: Figure) -> f64 {
    super::median(&runs.iter().map(f).collect::<Vec<_>>()).unwrap_or(0.0)
}

/// Sizes of one run.
#[derive(Clone, Copy)]
struct Sizes {
    seq_mib: u64,
    rand_ops: u32,
}

/// Runs the storage benchmark (see the module doc) and returns its figures.
pub(super) fn run(
    out_dir: &Path,
    machine_opt: &Option<String>,
    smoke: bool,
    walls: &mut Vec<(String, f64)>,
) -> Result<Vec<StorageResult>, BenchError> {
    let sizes = if smoke {
        Sizes {
            seq_mib: IO_SEQ_MIB_SMOKE,
            rand_ops: IO_RAND_OPS_SMOKE,
        }
    } else {
        Sizes {
            seq_mib: IO_SEQ_MIB,
            rand_ops: IO_RAND_OPS,
        }
    };
    let groups = if smoke {
        vec![Group {
            series: "6.1",
            modules: &[],
            controllers: vec![NVME],
        }]
    } else {
        vec![
            Group {
                series: "6.1",
                modules: &["virtio_blk", "virtio_pci"],
                controllers: vec![NVME, VIRTIO_BLK],
            },
            Group {
                series: "6.12",
                modules: &["ahci", "sd_mod"],
                controllers: vec![NVME, AHCI],
            },
        ]
    };
    let reps = if smoke { 1 } else { IO_REPS };
    let iobench = crate::build::iobench().map_err(BenchError::Build)?;
    let images = crate::guest::ensure().map_err(BenchError::Build)?;
    let dir = out_dir.join("storage");
    mkdir(&dir)?;
    let mut results = Vec::new();
    for g in &groups {
        let kernel = images
            .kernel(g.series)
            .ok_or_else(|| {
                BenchError::Build(format!(
                    "no {} kernel in the guest cache; run `cargo xtask guest fetch`",
                    g.series
                ))
            })?
            .image
            .clone();
        let tag = format!("io-{}", g.series.replace('.', "_"));
        let initrd = dir.join(format!("{tag}-initramfs.cpio.gz"));
        crate::guest::write_initramfs_with_modules_and_files(
            &images,
            g.series,
            g.modules,
            &[("bin/iobench", &iobench, 0o755)],
            &crate::guest::init_script(&init_body(&g.controllers, sizes)),
            &initrd,
        )
        .map_err(BenchError::Build)?;

        // Bare: QEMU's NVMe, then QEMU's own controller of each other kind, each a raw file.
        let bare_cmd = || -> Result<Command, BenchError> {
            let mut bare = bare_command(machine_opt, IO_CPUS, IO_MIB);
            bare.arg("-kernel")
                .arg(&kernel)
                .arg("-initrd")
                .arg(&initrd)
                .args(["-append", super::LINUX_CMDLINE])
                .args(ICOUNT_ARGS);
            for (i, c) in g.controllers.iter().enumerate() {
                let file = dir.join(format!("{tag}-bare-{}.img", c.vm));
                raw_disk(&file, IO_DISK_MIB << 20)?;
                let drive = format!("d{i}");
                bare.arg("-drive").arg(format!(
                    "file={},if=none,format=raw,id={drive}",
                    file.display()
                ));
                for d in c.bare_devices(&drive) {
                    bare.args(["-device", &d]);
                }
            }
            Ok(with_storage_icount(&bare))
        };

        // Hypervisor: one VM, each disk a partition of the machine's NVMe drive.
        let mut vm = format!(
            "[[vm]]\nname = \"io\"\nvcpus = {IO_CPUS}\nmemory_mib = {IO_MIB}\nkernel = \"{}\"\ninitrd = \"{}\"\ncmdline = \"{}\"\n",
            kernel.display(),
            initrd.display(),
            super::LINUX_CMDLINE
        );
        for c in &g.controllers {
            vm += &format!(
                "[[vm.disk]]\npartition = \"{}\"\ncontroller = \"{}\"\n",
                c.label(),
                c.vm
            );
        }
        let vms = write_file(&dir.join(format!("{tag}.toml")), &vm)?;
        let img = image(&qemu_virt(vms), out_dir, &tag)?;
        let hv_cmd = || -> Result<Command, BenchError> {
            let drive = dir.join(format!("{tag}-hv-nvme0.img"));
            hv_drive(&drive, &g.controllers)?;
            let mut hv = hv_command(&img, machine_opt)?;
            hv.arg("-drive")
                .arg(format!(
                    "file={},if=none,format=raw,id=nvm0",
                    drive.display()
                ))
                .args(["-device", "nvme,serial=hv-nvme0,drive=nvm0"]);
            Ok(with_storage_icount(&hv))
        };

        // [run][controller]
        let mut bare_runs = Vec::new();
        let mut hv_runs = Vec::new();
        for rep in 1..=reps {
            let r = run_qemu(bare_cmd()?, &format!("{tag}-bare-{rep}"), out_dir, 300)?;
            walls.push((r.name.clone(), r.wall_s));
            bare_runs.push(device_figures(&r, &g.controllers)?);
            let r = run_qemu(hv_cmd()?, &format!("{tag}-hv-{rep}"), out_dir, 600)?;
            walls.push((r.name.clone(), r.wall_s));
            hv_runs.push(device_figures(&r, &g.controllers)?);
        }
        let column = |runs: &[Vec<IoFigures>], i: usize| -> Vec<IoFigures> {
            runs.iter().map(|r| r[i]).collect()
        };
        for (i, c) in g.controllers.iter().enumerate() {
            results.push(StorageResult {
                series: g.series,
                controller: *c,
                bare_nvme: column(&bare_runs, 0),
                bare_same: (i > 0).then(|| column(&bare_runs, i)),
                hv: column(&hv_runs, i),
            });
        }
    }
    Ok(results)
}

/// The benchmark `/init` body: for each disk, wait up to 10 s (guest time) for its device
/// node (modules probe asynchronously), then run iobench on it, or say it never came.
fn init_body(controllers: &[Controller], s: Sizes) -> String {
    let devs: Vec<&str> = controllers.iter().map(|c| c.guest_dev).collect();
    format!(
        "echo \"[initramfs] userspace up: $(uname -r)\"\n\
         for d in {}; do\n\
         n=0; while [ ! -b /dev/$d ] && [ $n -lt 100 ]; do sleep 0.1; n=$((n+1)); done\n\
         if [ -b /dev/$d ]; then /bin/iobench /dev/$d {} {}; else echo \"[iobench] error: no /dev/$d\"; fi\n\
         done",
        devs.join(" "),
        s.seq_mib,
        s.rand_ops
    )
}

/// A raw disk file of `bytes` zeros, made afresh and written out (not sparse), so that
/// every run starts from the same state and no guest write lands in a hole of the host's
/// file (allocating it makes that write slower in host time).
fn raw_disk(path: &Path, bytes: u64) -> Result<(), BenchError> {
    std::fs::write(path, vec![0u8; bytes as usize]).map_err(|source| BenchError::Io {
        path: path.display().to_string(),
        source,
    })
}

/// The hypervisor's NVMe drive: a GPT with one [`IO_DISK_MIB`] partition per controller,
/// each written with zeros like [`raw_disk`], between two spare ones (a write outside its
/// partition would land in a neighbour).
fn hv_drive(path: &Path, controllers: &[Controller]) -> Result<(), BenchError> {
    let zeros = path.with_extension("zeros");
    raw_disk(&zeros, IO_DISK_MIB << 20)?;
    let part = |label: String, mib: u64, fill: Option<PathBuf>| PartSpec {
        label,
        bytes: mib << 20,
        fill,
    };
    let mut parts = vec![part("before".into(), 4, None)];
    parts.extend(
        controllers
            .iter()
            .map(|c| part(c.label(), IO_DISK_MIB, Some(zeros.clone()))),
    );
    parts.push(part("after".into(), 4, None));
    let total = (4 + IO_DISK_MIB * controllers.len() as u64 + 4 + 4) << 20;
    disk::create(path, total, &parts).map_err(BenchError::Build)?;
    Ok(())
}

/// iobench's figures for each controller's disk, in order; an error naming the first disk
/// without them (with iobench's own error line when it printed one).
fn device_figures(r: &RunOutput, cs: &[Controller]) -> Result<Vec<IoFigures>, BenchError> {
    cs.iter()
        .map(|c| {
            let dev = format!("/dev/{}", c.guest_dev);
            let what = match iobench_error(&r.lines, c.guest_dev) {
                Some(e) => format!("{IOBENCH_LINE}... dev={dev} (iobench said `{e}`)"),
                None => format!("{IOBENCH_LINE}... dev={dev}"),
            };
            r.require(parse_iobench(&r.lines, &dev), &what)
        })
        .collect()
}

/// An `[iobench] error: ...` line about `dev` (or one that names no device).
fn iobench_error<'a>(lines: &'a [String], dev: &str) -> Option<&'a str> {
    lines
        .iter()
        .filter_map(|l| Some(l[l.find("[iobench] error: ")?..].trim_end()))
        .find(|l| l.contains(dev) || !l.contains("/dev/"))
}

/// `key=value` as a float from a line of space-separated words.
fn word_f64(line: &str, key: &str) -> Option<f64> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
        .filter(|v: &f64| v.is_finite() && *v > 0.0)
}

/// The figures of the first `[iobench] seq-read MBps=.. seq-write MBps=.. rand-read IOPS=..
/// rand-write IOPS=.. dev=DEV` line for `dev` (any VM prefix); zero or missing figures
/// reject the line.
fn parse_iobench(lines: &[String], dev: &str) -> Option<IoFigures> {
    let dev_word = format!("dev={dev}");
    let line = lines
        .iter()
        .filter(|l| l.contains(IOBENCH_LINE))
        .find(|l| l.split_whitespace().any(|w| w == dev_word))?;
    let line = &line[line.find(IOBENCH_LINE)?..];
    // Each figure is the value of the word after its name: `seq-read MBps=N`.
    let after = |name: &str, key: &str| {
        let rest = &line[line.find(&format!("{name} "))? + name.len()..];
        word_f64(rest.split_whitespace().next()?, key)
    };
    Some(IoFigures {
        seq_read_mbps: after("seq-read", "MBps")?,
        seq_write_mbps: after("seq-write", "MBps")?,
        rand_read_iops: after("rand-read", "IOPS")?,
        rand_write_iops: after("rand-write", "IOPS")?,
    })
}

/// `hv` in percent of `bare`.
fn pct(hv: f64, bare: f64) -> f64 {
    hv / bare * 100.0
}

/// Sequential NVMe read and write under the hypervisor at least [`TARGET_SEQ_PCT`] % of
/// bare QEMU NVMe, for every kernel series measured: the verdict line.
pub(super) fn goal_verdict(results: &[StorageResult]) -> (bool, String) {
    let nvme: Vec<&StorageResult> = results.iter().filter(|r| r.controller == NVME).collect();
    let mut met = !nvme.is_empty();
    let mut parts = Vec::new();
    for r in &nvme {
        let read = pct(
            med(&r.hv, |f| f.seq_read_mbps),
            med(&r.bare_nvme, |f| f.seq_read_mbps),
        );
        let write = pct(
            med(&r.hv, |f| f.seq_write_mbps),
            med(&r.bare_nvme, |f| f.seq_write_mbps),
        );
        met &= read >= TARGET_SEQ_PCT && write >= TARGET_SEQ_PCT;
        parts.push(format!(
            "{}: read {read:.0} %, write {write:.0} %",
            r.series
        ));
    }
    (
        met,
        format!(
            "goal: sequential NVMe read and write >= {TARGET_SEQ_PCT:.0} % of bare QEMU NVMe: {} ({})",
            if met { "met" } else { "missed" },
            parts.join("; ")
        ),
    )
}

/// `median (min..max)` of one figure over runs, or the single value.
fn show(runs: &[IoFigures], f: Figure) -> String {
    let v: Vec<f64> = runs.iter().map(f).collect();
    match super::spread(&v) {
        Some((lo, hi)) if v.len() > 1 => format!("{:.0} ({lo:.0}..{hi:.0})", med(runs, f)),
        _ => format!("{:.0}", med(runs, f)),
    }
}

/// Prints the storage table and the goal line.
pub(super) fn print(results: &[StorageResult], smoke: bool) {
    let (seq, ops, reps) = if smoke {
        (IO_SEQ_MIB_SMOKE, IO_RAND_OPS_SMOKE, 1)
    } else {
        (IO_SEQ_MIB, IO_RAND_OPS, IO_REPS)
    };
    println!(
        "\nstorage (iobench O_DIRECT on a {IO_DISK_MIB} MiB disk: {seq} MiB sequential, {ops} random 4 KiB ops each way; \
         -smp {IO_CPUS}, {IO_MIB} MiB; guest time under -icount {STORAGE_ICOUNT}; median (min..max) of {reps} run(s) each way)"
    );
    println!(
        "{:<34} {:>5} {:>20} {:>20} {:>20} {:>8}",
        "figure", "unit", "bare QEMU NVMe", "bare same ctrl", "hypervisor", "hv/bare"
    );
    for r in results {
        for (name, unit, f) in FIGURES {
            println!(
                "{:<34} {:>5} {:>20} {:>20} {:>20} {:>7.1}%",
                format!("{} {} ({})", r.controller.name, name, r.series),
                unit,
                show(&r.bare_nvme, f),
                r.bare_same.as_ref().map_or("-".into(), |b| show(b, f)),
                show(&r.hv, f),
                pct(med(&r.hv, f), med(&r.bare_nvme, f)),
            );
        }
    }
    println!("(hv/bare: hypervisor median in percent of the bare QEMU NVMe median, same kernel)");
    println!("{}", goal_verdict(results).1);
}

/// The storage figures for `results.json`: every run, the medians and the goal.
pub(super) fn json(results: &[StorageResult]) -> serde_json::Value {
    use serde_json::json;
    let runs = |v: &[IoFigures]| {
        let figure = |f: &IoFigures| {
            json!({
                "seq_read_mbps": f.seq_read_mbps,
                "seq_write_mbps": f.seq_write_mbps,
                "rand_read_iops": f.rand_read_iops,
                "rand_write_iops": f.rand_write_iops,
            })
        };
        v.iter().map(figure).collect::<Vec<_>>()
    };
    let (met, verdict) = goal_verdict(results);
    json!({
        "rows": results.iter().map(|r| json!({
            "kernel": r.series,
            "controller": r.controller.name,
            "bare_qemu_nvme_runs": runs(&r.bare_nvme),
            "bare_qemu_same_controller_runs": r.bare_same.as_deref().map(runs),
            "hypervisor_runs": runs(&r.hv),
            "medians": FIGURES.iter().map(|(n, unit, f)| json!({
                "figure": n,
                "unit": unit,
                "bare_qemu_nvme": med(&r.bare_nvme, *f),
                "bare_qemu_same_controller": r.bare_same.as_deref().map(|b| med(b, *f)),
                "hypervisor": med(&r.hv, *f),
                "hv_pct_of_bare_nvme": pct(med(&r.hv, *f), med(&r.bare_nvme, *f)),
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "goal_seq_nvme_pct": TARGET_SEQ_PCT,
        "goal_met": met,
        "goal": verdict,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    const NVME_LINE: &str = "[iobench] seq-read MBps=350.4 seq-write MBps=748.4 rand-read IOPS=3975 rand-write IOPS=285 dev=/dev/nvme0n1";

    #[test]
    fn iobench_line_is_parsed_per_device_with_a_vm_prefix() {
        let out = lines(&[
            "[io] [iobench] seq-read MBps=1.5 seq-write MBps=2 rand-read IOPS=3 rand-write IOPS=4 dev=/dev/vda",
            &format!("[io] {NVME_LINE}"),
        ]);
        assert_eq!(
            parse_iobench(&out, "/dev/nvme0n1"),
            Some(IoFigures {
                seq_read_mbps: 350.4,
                seq_write_mbps: 748.4,
                rand_read_iops: 3975.0,
                rand_write_iops: 285.0,
            })
        );
        assert_eq!(parse_iobench(&out, "/dev/vda").unwrap().seq_read_mbps, 1.5);
        assert_eq!(parse_iobench(&out, "/dev/sda"), None);
    }

    #[test]
    fn a_missing_line_or_figure_is_an_error_not_a_zero() {
        // No device on the line (an older iobench), a zero, a missing figure.
        let bad = [
            "[iobench] seq-read MBps=1 seq-write MBps=2 rand-read IOPS=3 rand-write IOPS=4",
            "[iobench] seq-read MBps=0.0 seq-write MBps=2 rand-read IOPS=3 rand-write IOPS=4 dev=/dev/vda",
            "[iobench] seq-read MBps=1 seq-write MBps=2 rand-read IOPS=3 dev=/dev/vda",
        ];
        for l in bad {
            assert_eq!(parse_iobench(&lines(&[l]), "/dev/vda"), None, "{l}");
        }
        let r = RunOutput {
            name: "io-bare".into(),
            lines: lines(&[
                "[iobench] error: open /dev/sda with O_DIRECT: No such device",
                NVME_LINE,
            ]),
            line_s: vec![1.0, 2.0],
            wall_s: 2.0,
            log: "x.log".into(),
        };
        assert!(device_figures(&r, &[NVME]).is_ok());
        let err = device_figures(&r, &[NVME, AHCI]).unwrap_err().to_string();
        assert!(err.contains("dev=/dev/sda"), "{err}");
        assert!(err.contains("No such device"), "{err}");
    }

    #[test]
    fn the_init_runs_iobench_on_each_disk_in_order() {
        let body = init_body(
            &[NVME, VIRTIO_BLK],
            Sizes {
                seq_mib: 16,
                rand_ops: 256,
            },
        );
        assert!(body.starts_with("echo \"[initramfs] userspace up: "));
        assert!(body.contains("for d in nvme0n1 vda; do"));
        assert!(body.contains("/bin/iobench /dev/$d 16 256;"));
    }

    #[test]
    fn storage_runs_let_idle_time_pass_at_host_speed() {
        let mut c = Command::new("qemu");
        c.args(["-M", "virt"]).args(ICOUNT_ARGS);
        let c = with_storage_icount(&c);
        let args: Vec<_> = c.get_args().map(|a| a.to_string_lossy()).collect();
        assert_eq!(
            args,
            [
                "-M",
                "virt",
                "-icount",
                "shift=0,sleep=on",
                "-rtc",
                "clock=vm"
            ]
        );
    }

    #[test]
    fn bare_controllers_are_qemus_own() {
        assert_eq!(NVME.bare_devices("d0"), ["nvme,serial=bare-d0,drive=d0"]);
        assert_eq!(VIRTIO_BLK.bare_devices("d1"), ["virtio-blk-pci,drive=d1"]);
        assert_eq!(
            AHCI.bare_devices("d1"),
            ["ich9-ahci,id=ahci-d1", "ide-hd,drive=d1,bus=ahci-d1.0"]
        );
    }

    fn figs(seq: f64) -> IoFigures {
        IoFigures {
            seq_read_mbps: seq,
            seq_write_mbps: seq,
            rand_read_iops: 1.0,
            rand_write_iops: 1.0,
        }
    }

    #[test]
    fn the_goal_uses_medians_of_every_nvme_row() {
        let row = |series, hv: f64| StorageResult {
            series,
            controller: NVME,
            bare_nvme: vec![figs(100.0), figs(100.0), figs(1.0)],
            bare_same: None,
            hv: vec![figs(hv), figs(hv), figs(1000.0)],
        };
        let (met, line) = goal_verdict(&[row("6.1", 70.0)]);
        assert!(met, "{line}");
        assert!(
            line.contains(": met (6.1: read 70 %, write 70 %)"),
            "{line}"
        );
        let (met, line) = goal_verdict(&[row("6.1", 80.0), row("6.12", 69.0)]);
        assert!(!met, "{line}");
        assert!(line.contains("missed"), "{line}");
        assert!(!goal_verdict(&[]).0);
    }
}
