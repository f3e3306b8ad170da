//! Scenarios where Linux guests use virtual disks backed by the machine's own drives.
//!
//! Each builds its host disk image afresh (a GPT with labelled partitions, filled with ext4
//! images made by `guest::rootfs`), so that only this boot's writes can be found in it; the
//! check after QEMU exits reads the image file directly, with no guest involved.

use super::{linux_forbid, qemu_virt, workspace_root, write_vms};
use crate::disk::{self, PartSpec};
use crate::guest::rootfs::{rootfs_init_script, write_ext4_rootfs, E2fsprogs};
use crate::qemu::{HostDisk, Scenario};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The partition Linux's root file system lives on in `storage-nvme-root`.
const ROOT_LABEL: &str = "linux-root";
/// Its size; the guest's `nvme0n1` must report exactly this many 512-byte sectors.
const ROOT_MIB: u64 = 48;
/// Where the root file system's `/init` writes the value it computed.
const VALUE_FILE: &str = "/value.txt";

fn dir(name: &str) -> Result<PathBuf, String> {
    let d = workspace_root().join("target/scenarios").join(name);
    std::fs::create_dir_all(&d).map_err(|e| format!("{}: {e}", d.display()))?;
    Ok(d)
}

/// `/init` of the root file system: says where it runs, writes a value made at run time
/// to [`VALUE_FILE`], syncs and prints it (then `rootfs_init_script` syncs and powers off).
const ROOT_INIT_BODY: &str = r#"echo "[rootfs] up on $(uname -r): $(grep ' / ' /proc/mounts)"
echo "[rootfs] nvme0n1 sectors=$(cat /sys/block/nvme0n1/size) model=$(cat /sys/block/nvme0n1/device/model | tr -d ' ')"
v=$(cat /proc/sys/kernel/random/uuid)
echo "$v" > /value.txt
sync
echo "[rootfs] wrote value=$v""#;

/// The host drive of `storage-nvme-root`: a 64 MiB GPT disk whose `linux-root` partition
/// holds an ext4 root file system (busybox, [`ROOT_INIT_BODY`] as `/init`).
fn nvme_root_disk() -> Result<PathBuf, String> {
    let images = crate::guest::ensure()?;
    let d = dir("storage-nvme-root")?;
    let fs = d.join("root.ext4");
    write_ext4_rootfs(
        &images,
        "6.1",
        &[],
        &rootfs_init_script(ROOT_INIT_BODY),
        ROOT_MIB,
        &fs,
    )?;
    let img = d.join("nvme0.img");
    disk::create(
        &img,
        64 << 20,
        &[
            PartSpec {
                label: ROOT_LABEL.into(),
                bytes: ROOT_MIB << 20,
                fill: Some(fs),
            },
            PartSpec {
                label: "spare".into(),
                bytes: 8 << 20,
                fill: None,
            },
        ],
    )?;
    Ok(img)
}

/// The partition `label` of the disk image, copied out to a file of its own.
fn extract_partition(img: &Path, label: &str, out: &Path) -> Result<(), String> {
    let (_, _, sectors) = disk::list(img)?
        .into_iter()
        .find(|(l, _, _)| l == label)
        .ok_or(format!("{}: no partition `{label}`", img.display()))?;
    let bytes = disk::read_sectors(img, label, 0, sectors)?;
    std::fs::write(out, bytes).map_err(|e| format!("{}: {e}", out.display()))
}

/// The value after `marker` on the first console line that has it (up to a space).
fn printed_value(lines: &[String], marker: &str) -> Result<String, String> {
    let line = lines
        .iter()
        .find(|l| l.contains(marker))
        .ok_or(format!("no `{marker}` line on the console"))?;
    let at = line.find(marker).unwrap_or(0) + marker.len();
    let v: String = line[at..]
        .chars()
        .take_while(|c| !c.is_whitespace())
        .collect();
    if v.is_empty() {
        return Err(format!("no value after `{marker}` in `{line}`"));
    }
    Ok(v)
}

/// After QEMU exited: the value the guest printed is in [`VALUE_FILE`] of the root file
/// system in the host's disk image file (read with debugfs, no guest involved).
fn nvme_root_value_landed(img: &Path, lines: &[String]) -> Result<(), String> {
    let value = printed_value(lines, "[rootfs] wrote value=")?;
    let part = img.with_extension("root.ext4");
    extract_partition(img, ROOT_LABEL, &part)?;
    let tools = E2fsprogs::ensure().map_err(|e| e.to_string())?;
    let got = tools.cat(&part, VALUE_FILE)?;
    if got == format!("{value}\n").as_bytes() {
        Ok(())
    } else {
        Err(format!(
            "{VALUE_FILE} in partition `{ROOT_LABEL}` of {} holds {:?}, the guest wrote {value:?}",
            img.display(),
            String::from_utf8_lossy(&got)
        ))
    }
}

/// `storage-nvme-root`: Linux (Debian 6.1 cloud kernel, no initramfs) boots with its root
/// file system on a virtual NVMe disk, a partition of the machine's NVMe drive. Its `/init`
/// writes a value computed at run time, syncs and powers off; the value must then be in
/// the host's disk image file.
pub fn nvme_root(images: &crate::guest::GuestImages) -> Result<Scenario, String> {
    let k = images
        .kernel("6.1")
        .ok_or("no 6.1 kernel in the guest cache")?;
    let vms = write_vms(
        "storage-nvme-root",
        &format!(
            "[[vm]]\nname = \"linux\"\nvcpus = 2\nmemory_mib = 256\nkernel = \"{}\"\n\
             cmdline = \"console=ttyAMA0 root=/dev/nvme0n1 rootfstype=ext4 rw rootwait init=/init\"\n\
             [[vm.disk]]\npartition = \"{ROOT_LABEL}\"\ncontroller = \"nvme\"\n",
            k.image.display()
        ),
    )?;
    let sectors = (ROOT_MIB << 20) / 512;
    Ok(Scenario {
        host_disk: Some(HostDisk {
            features: &[],
            devices: &["nvme,serial=hv-nvme0,drive=nvm0"],
            drive_options: "",
            make: nvme_root_disk,
            check: nvme_root_value_landed,
        }),
        forbid: linux_forbid(),
        timeout: Duration::from_secs(300),
        ..Scenario::new(
            "storage-nvme-root",
            qemu_virt(vms),
            vec![
                "[hv] datastore: nvme0 (QEMU NVMe Ctrl, 64 MiB): partitions \"linux-root\" 48 MiB"
                    .into(),
                format!("[linux] [rootfs] up on {}: /dev/root / ext4 rw", k.release),
                format!("[linux] [rootfs] nvme0n1 sectors={sectors} model="),
                "[linux] [rootfs] wrote value=".into(),
                "[hv] VM 0 `linux` stopped: guest called PSCI SYSTEM_OFF".into(),
                "[hv] all VMs stopped; powering off".into(),
            ],
        )
    })
}
