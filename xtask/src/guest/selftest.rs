//! `cargo xtask guest selftest-storage`: the guest side of the storage scenarios, checked on
//! bare QEMU (no hypervisor, so before its virtual controllers exist).
//!
//! One ext4 image is built with [`super::write_ext4_rootfs_with`]: busybox, an init, a token
//! file holding a value made up for this run, and 6.1's `virtio_blk` module. Then:
//!
//! - `initramfs-6.1-virtio-blk`: Debian's 6.1 kernel, an initramfs from
//!   [`super::write_initramfs_with_modules`] loading `virtio_blk` and `virtio_pci` (modules on
//!   6.1) and a QEMU `virtio-blk-pci` disk holding the image: the init mounts `/dev/vda` and
//!   prints the token.
//! - `initramfs-6.12-ahci-virtio-blk`: the 6.12 kernel (compressed `.ko.xz` modules, built-in
//!   virtio-pci), loading `ahci`, `sd_mod`, `virtio_blk` and `virtio_pci` with the image on an
//!   `ich9-ahci` disk and a `virtio-blk-pci` disk: both are mounted and give the token.
//! - `root-nvme-6.1`: no initramfs: the 6.1 kernel mounts the image as its root file system
//!   from QEMU's NVMe controller (built into the cloud kernels), `root=/dev/nvme0n1 rw`; the
//!   image's init reports the root mount, the token, a write, and `modprobe virtio_blk` from the
//!   image's `/lib/modules` with its `modules.dep`.
//!
//! `--break module|file|order` makes it fail on purpose: a module name that does not exist,
//! a file the image does not hold, or the modules loaded in reverse order.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::rootfs::{rootfs_init_script, write_ext4_rootfs_with, RootfsSpec};
use super::{
    add_modules, init_script, initramfs_with, kernel_modules, read, with_module_prelude,
    write_if_changed, GuestImages,
};
use crate::qemu::{Progress, Scenario, Verdict};

const USAGE: &str = "usage: cargo xtask guest selftest-storage [--break module|file|order]";

/// The token file in the image.
const TOKEN_FILE: &str = "etc/selftest-token";

/// What to break on purpose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Break {
    /// Ask for a module the kernel does not have (`virtio_blkk`).
    Module,
    /// Read a file the image does not hold.
    File,
    /// Load the modules in reverse order (dependents before their dependencies).
    Order,
}

/// One bare-QEMU boot.
struct Case {
    name: String,
    series: &'static str,
    initrd: Option<PathBuf>,
    append: String,
    devices: Vec<String>,
    expect: Vec<String>,
}

/// `cargo xtask guest selftest-storage [--break WHAT]`.
pub fn cmd(args: &[&str]) -> Result<(), String> {
    let sabotage = match args {
        [] => None,
        ["--break", "module"] => Some(Break::Module),
        ["--break", "file"] => Some(Break::File),
        ["--break", "order"] => Some(Break::Order),
        _ => return Err(USAGE.into()),
    };
    crate::qemu::ensure_qemu()?;
    let images = super::ensure()?;
    let dir = crate::build::workspace_root().join("target/selftest-storage");
    fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let token = token();
    let file = match sabotage {
        Some(Break::File) => "etc/no-such-file",
        _ => TOKEN_FILE,
    };

    let rootfs = dir.join("rootfs-6.1.ext4");
    let root_body = format!(
        "echo \"[rootfs] init on $(grep ' / ' /proc/mounts)\"\n\
         echo \"[rootfs] token: $(cat /{file} || echo FAILED to read /{file})\"\n\
         if modprobe virtio_blk; then echo \"[rootfs] modprobe virtio_blk: $(grep -o '^virtio_blk ' /proc/modules)\"; \
         else echo \"[rootfs] FAILED: modprobe virtio_blk\"; fi\n\
         echo written > /tmp/w && echo \"[rootfs] wrote /tmp/w: $(cat /tmp/w)\""
    );
    let spec = RootfsSpec {
        series: "6.1",
        modules: &["virtio_blk"],
        init: &rootfs_init_script(&root_body),
        files: vec![(TOKEN_FILE.into(), 0o644, format!("{token}\n").into_bytes())],
        size_mib: 32,
    };
    write_ext4_rootfs_with(&images, &spec, &rootfs)?;
    println!("selftest-storage: {} (token {token})", rootfs.display());

    let virtio_blk = |id: &str| {
        vec![
            "-drive".into(),
            format!(
                "file={},if=none,id={id},format=raw,readonly=on",
                rootfs.display()
            ),
            "-device".into(),
            format!("virtio-blk-pci,drive={id}"),
        ]
    };
    let mut cases = Vec::new();

    let names_61: &[&str] = match sabotage {
        Some(Break::Module) => &["virtio_blkk", "virtio_pci"],
        _ => &["virtio_blk", "virtio_pci"],
    };
    let initrd = dir.join("initramfs-6.1.cpio.gz");
    let loaded = module_initramfs(
        &images,
        "6.1",
        names_61,
        &mount_body(&["/dev/vda"], file),
        sabotage,
        &initrd,
    )?;
    cases.push(Case {
        name: "initramfs-6.1-virtio-blk".into(),
        series: "6.1",
        initrd: Some(initrd),
        append: "console=ttyAMA0 panic=-1".into(),
        devices: virtio_blk("d0"),
        expect: [loaded, mounted(&["/dev/vda"], &token)].concat(),
    });

    let initrd = dir.join("initramfs-6.12.cpio.gz");
    let names_612 = ["ahci", "sd_mod", "virtio_blk", "virtio_pci"];
    let body = mount_body(&["/dev/sda", "/dev/vda"], file);
    let loaded = module_initramfs(&images, "6.12", &names_612, &body, sabotage, &initrd)?;
    // QEMU's ide-hd refuses a read-only drive: the AHCI disk is a copy.
    let ahci_copy = dir.join("ahci-6.12.ext4");
    fs::copy(&rootfs, &ahci_copy).map_err(|e| format!("cannot copy {}: {e}", rootfs.display()))?;
    let mut devices = vec![
        "-device".into(),
        "ich9-ahci,id=ahci".into(),
        "-drive".into(),
        format!("file={},if=none,id=d1,format=raw", ahci_copy.display()),
        "-device".into(),
        "ide-hd,drive=d1,bus=ahci.0".into(),
    ];
    devices.extend(virtio_blk("d2"));
    cases.push(Case {
        name: "initramfs-6.12-ahci-virtio-blk".into(),
        series: "6.12",
        initrd: Some(initrd),
        append: "console=ttyAMA0 panic=-1".into(),
        devices,
        expect: [loaded, mounted(&["/dev/sda", "/dev/vda"], &token)].concat(),
    });

    // The root case writes to its disk: it gets a copy.
    let root_copy = dir.join("root-nvme-6.1.ext4");
    fs::copy(&rootfs, &root_copy).map_err(|e| format!("cannot copy {}: {e}", rootfs.display()))?;
    cases.push(Case {
        name: "root-nvme-6.1".into(),
        series: "6.1",
        initrd: None,
        append: "console=ttyAMA0 panic=-1 root=/dev/nvme0n1 rootfstype=ext4 rw init=/init".into(),
        devices: vec![
            "-drive".into(),
            format!("file={},if=none,id=d3,format=raw", root_copy.display()),
            "-device".into(),
            "nvme,drive=d3,serial=selftest".into(),
        ],
        expect: vec![
            "[rootfs] init on /dev/root / ext4 rw".into(),
            format!("[rootfs] token: {token}"),
            "[rootfs] modprobe virtio_blk: virtio_blk".into(),
            "[rootfs] wrote /tmp/w: written".into(),
        ],
    });

    let mut failed = Vec::new();
    for case in &cases {
        match boot(&images, case) {
            Ok(secs) => {
                println!("selftest-storage: {}: ok ({secs:.1} s)", case.name);
                for e in &case.expect {
                    println!("    {e}");
                }
            }
            Err(why) => {
                println!("selftest-storage: {}: FAILED: {why}", case.name);
                failed.push(case.name.clone());
            }
        }
    }
    if failed.is_empty() {
        println!("selftest-storage: all {} cases passed", cases.len());
        Ok(())
    } else {
        Err(format!("selftest-storage: failed: {}", failed.join(", ")))
    }
}

/// A value made up for this run, so that a line printed from a stale image cannot pass.
fn token() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("tok-{:x}", nanos ^ (u128::from(std::process::id()) << 64))
}

/// The body of an initramfs init: waits up to 10 s for each block device (SCSI scans run in
/// the background), mounts it read-only and prints the file `file` of it.
fn mount_body(devs: &[&str], file: &str) -> String {
    let mut s = String::new();
    for (n, dev) in devs.iter().enumerate() {
        let mnt = format!("/mnt/{n}");
        s.push_str(&format!(
            "mkdir -p {mnt}\n\
             i=0; while [ ! -b {dev} ] && [ $i -lt 10 ]; do sleep 1; i=$((i+1)); done\n\
             if mount -t ext4 -o ro {dev} {mnt}; then\n\
             \techo \"[selftest] mounted {dev}\"\n\
             \tif t=$(cat {mnt}/{file}); then echo \"[selftest] {dev} token: $t\"; \
             else echo \"[selftest] FAILED to read {mnt}/{file}\"; fi\n\
             else\n\
             \techo \"[selftest] FAILED to mount {dev} (block devices: $(ls /sys/class/block))\"\n\
             fi\n"
        ));
    }
    s
}

/// The lines [`mount_body`] prints when all goes well.
fn mounted(devs: &[&str], token: &str) -> Vec<String> {
    devs.iter()
        .flat_map(|dev| {
            [
                format!("[selftest] mounted {dev}"),
                format!("[selftest] {dev} token: {token}"),
            ]
        })
        .collect()
}

/// Writes the module initramfs (as [`super::write_initramfs_with_modules`] does; with
/// [`Break::Order`] the load order is reversed); returns the module lines its init prints.
fn module_initramfs(
    images: &GuestImages,
    series: &str,
    names: &[&str],
    body: &str,
    sabotage: Option<Break>,
    out: &Path,
) -> Result<Vec<String>, String> {
    let init = init_script(body);
    if sabotage != Some(Break::Order) {
        super::write_initramfs_with_modules(images, series, names, &init, out)?;
    }
    let mut mods = kernel_modules(images, series, names)?;
    let lines = mods.load_lines("[initramfs]");
    if sabotage == Some(Break::Order) {
        mods.modules.reverse();
        let busybox = read(&images.busybox).map_err(|e| e.to_string())?;
        let init = with_module_prelude(&init, &mods.load_script("[initramfs]"))?;
        let bytes = initramfs_with(&busybox, &init, |c| add_modules(c, &mods))
            .map_err(|e| e.to_string())?;
        write_if_changed(out, &bytes).map_err(|e| e.to_string())?;
    }
    Ok(lines)
}

/// Boots one case on bare QEMU; its console goes to `target/qemu-logs/selftest-storage-NAME.log`.
fn boot(images: &GuestImages, case: &Case) -> Result<f64, String> {
    let kernel = images
        .kernel(case.series)
        .ok_or_else(|| format!("no {} kernel", case.series))?;
    let mut cmd = Command::new("qemu-system-aarch64");
    cmd.args(["-M", "virt", "-cpu", "cortex-a57", "-m", "512", "-smp", "1"])
        .args(["-nographic", "-no-reboot", "-net", "none"])
        .arg("-kernel")
        .arg(&kernel.image);
    if let Some(initrd) = &case.initrd {
        cmd.arg("-initrd").arg(initrd);
    }
    cmd.arg("-append").arg(&case.append).args(&case.devices);
    // The expectation rules of the hypervisor's scenarios (ordered lines, forbidden words,
    // clean exit); the target is not used, as this QEMU boots the kernel itself.
    let scenario = Scenario {
        forbid: [
            "FAIL",
            "PANIC",
            "FATAL",
            "Kernel panic",
            "Unable to mount root",
        ]
        .map(String::from)
        .to_vec(),
        timeout: Duration::from_secs(240),
        ..Scenario::new(
            format!("selftest-storage-{}", case.name),
            crate::Target {
                board: "bare-qemu-virt".into(),
                board_file: PathBuf::new(),
                vms: PathBuf::new(),
                allow_experimental: false,
            },
            case.expect.clone(),
        )
    };
    let log_dir = crate::build::workspace_root().join("target/qemu-logs");
    let _ = fs::create_dir_all(&log_dir);
    let log_path = log_dir.join(format!("{}.log", scenario.name));
    let mut log = format!("$ {cmd:?}\n");
    let start = Instant::now();
    let verdict = run(&mut cmd, &scenario, &mut log);
    let _ = fs::write(&log_path, &log);
    verdict
        .map(|()| start.elapsed().as_secs_f64())
        .map_err(|why| format!("{why} (log: {})", log_path.display()))
}

/// Runs QEMU, feeding its console lines to the scenario's rules.
fn run(cmd: &mut Command, scenario: &Scenario, log: &mut String) -> Result<(), String> {
    use std::io::{BufRead, BufReader, Read};
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start qemu-system-aarch64: {e}"))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).split(b'\n') {
            let Ok(line) = line else { break };
            let line = String::from_utf8_lossy(&line)
                .trim_end_matches('\r')
                .to_owned();
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let start = Instant::now();
    let mut progress = Progress::new(scenario);
    let verdict = loop {
        let left = scenario.timeout.saturating_sub(start.elapsed());
        if left.is_zero() {
            break Err(progress.timed_out());
        }
        match rx.recv_timeout(left.min(Duration::from_millis(200))) {
            Ok(line) => {
                log.push_str(&line);
                log.push('\n');
                match progress.line(&line) {
                    Verdict::Continue => {}
                    Verdict::Pass => break Ok(()),
                    Verdict::Fail(why) => break Err(why),
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                let status = child.wait().map_err(|e| e.to_string())?;
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                log.push_str(&format!("--- stderr ---\n{err}\n--- exit: {status}\n"));
                let tail: String = err.lines().take(3).collect::<Vec<_>>().join("; ");
                break progress
                    .exited(status.success(), &status.to_string())
                    .map_err(|e| {
                        if tail.is_empty() {
                            e
                        } else {
                            format!("{e}; qemu: {tail}")
                        }
                    });
            }
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    if let Err(why) = &verdict {
        log.push_str(&format!("--- failed: {why}\n"));
    }
    verdict
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_body_waits_mounts_and_reports_each_device() {
        let b = mount_body(&["/dev/sda", "/dev/vda"], TOKEN_FILE);
        assert!(b.contains("while [ ! -b /dev/sda ]"));
        assert!(b.contains("mount -t ext4 -o ro /dev/vda /mnt/1"));
        assert!(b.contains("cat /mnt/1/etc/selftest-token"));
        assert!(b.contains("echo \"[selftest] FAILED to read /mnt/0/etc/selftest-token\""));
        assert_eq!(
            mounted(&["/dev/vda"], "tok-1"),
            [
                "[selftest] mounted /dev/vda",
                "[selftest] /dev/vda token: tok-1"
            ]
        );
    }

    #[test]
    fn tokens_differ_between_runs() {
        let a = token();
        std::thread::sleep(Duration::from_millis(2));
        assert_ne!(a, token());
    }
}
