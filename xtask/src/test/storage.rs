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

/// After QEMU exited: the value printed after `marker` is in [`VALUE_FILE`] of the ext4
/// file system in partition `label` of the host's disk image file (read with debugfs, no
/// guest involved).
fn value_in_partition(
    img: &Path,
    lines: &[String],
    marker: &str,
    label: &str,
) -> Result<(), String> {
    let value = printed_value(lines, marker)?;
    let part = img.with_extension(format!("{label}.ext4"));
    extract_partition(img, label, &part)?;
    let tools = E2fsprogs::ensure().map_err(|e| e.to_string())?;
    let got = tools.cat(&part, VALUE_FILE)?;
    if got == format!("{value}\n").as_bytes() {
        Ok(())
    } else {
        Err(format!(
            "{VALUE_FILE} in partition `{label}` of {} holds {:?}, the guest wrote {value:?}",
            img.display(),
            String::from_utf8_lossy(&got)
        ))
    }
}

fn nvme_root_value_landed(img: &Path, lines: &[String]) -> Result<(), String> {
    value_in_partition(img, lines, "[rootfs] wrote value=", ROOT_LABEL)
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
            drive: "nvm0",
            devices: &["nvme,serial=hv-nvme0,drive=nvm0"],
            drive_options: "",
            make: nvme_root_disk,
            check: nvme_root_value_landed,
            blkdebug: None,
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

/// The partition a guest mounts in the data-disk scenarios.
const DATA_LABEL: &str = "vm-data";
/// Its size.
const DATA_MIB: u64 = 24;

/// A Linux guest (kernel `series`, an initramfs loading `modules`) that mounts its data disk
/// `guest_dev` on controller `controller`, shows the token xtask put there, and writes,
/// syncs and prints a value of its own.
struct DataDiskCase {
    name: &'static str,
    series: &'static str,
    modules: &'static [&'static str],
    controller: &'static str,
    guest_dev: &'static str,
    /// The `-drive` id of the machine's drive, and the devices that put it on the machine.
    host_drive: &'static str,
    host_devices: &'static [&'static str],
    make: fn() -> Result<PathBuf, String>,
}

/// The files of the data partition of scenario `name` (a token made when the scenario was
/// set up, so that only this run's disk can show it).
fn data_tree(name: &str) -> Result<PathBuf, String> {
    Ok(dir(name)?.join("data"))
}

/// The host drive of a data-disk scenario: a 64 MiB GPT disk with the ext4 data
/// partition (made from [`data_tree`]) between two others, so that a write outside it
/// would land in a neighbour.
fn data_disk(name: &str) -> Result<PathBuf, String> {
    let d = dir(name)?;
    let fs = d.join("data.ext4");
    disk::ext4_image(&data_tree(name)?, &fs, DATA_MIB << 20)?;
    let img = d.join("disk0.img");
    let part = |label: &str, mib: u64, fill: Option<PathBuf>| PartSpec {
        label: label.into(),
        bytes: mib << 20,
        fill,
    };
    disk::create(
        &img,
        64 << 20,
        &[
            part("before", 8, None),
            part(DATA_LABEL, DATA_MIB, Some(fs)),
            part("after", 8, None),
        ],
    )?;
    Ok(img)
}

fn virtio_blk_disk() -> Result<PathBuf, String> {
    data_disk("storage-virtio-blk")
}

fn ahci_disk() -> Result<PathBuf, String> {
    data_disk("storage-ahci")
}

fn data_value_landed(img: &Path, lines: &[String]) -> Result<(), String> {
    value_in_partition(img, lines, "[storage] wrote value=", DATA_LABEL)
}

fn data_disk_scenario(
    images: &crate::guest::GuestImages,
    c: &DataDiskCase,
) -> Result<Scenario, String> {
    let k = images
        .kernel(c.series)
        .ok_or(format!("no {} kernel in the guest cache", c.series))?;
    let token = format!(
        "tok-{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    );
    let tree = data_tree(c.name)?;
    std::fs::create_dir_all(&tree).map_err(|e| format!("{}: {e}", tree.display()))?;
    std::fs::write(tree.join("token.txt"), format!("{token}\n"))
        .map_err(|e| format!("{}: {e}", tree.display()))?;
    let dev = c.guest_dev;
    let body = format!(
        "echo \"[storage] {dev} sectors=$(cat /sys/block/{dev}/size)\"\n\
         mkdir -p /mnt && mount -t ext4 /dev/{dev} /mnt && echo \"[storage] mounted /dev/{dev} token=$(cat /mnt/token.txt)\"\n\
         v=$(cat /proc/sys/kernel/random/uuid)\n\
         echo \"$v\" > /mnt{VALUE_FILE} && sync && umount /mnt && echo \"[storage] wrote value=$v\""
    );
    let initrd = dir(c.name)?.join("initramfs.cpio.gz");
    crate::guest::write_initramfs_with_modules(
        images,
        c.series,
        c.modules,
        &crate::guest::init_script(&body),
        &initrd,
    )?;
    let vms = write_vms(
        c.name,
        &format!(
            "[[vm]]\nname = \"linux\"\nvcpus = 2\nmemory_mib = 256\nkernel = \"{}\"\n\
             initrd = \"{}\"\ncmdline = \"console=ttyAMA0 rdinit=/init\"\n\
             [[vm.disk]]\npartition = \"{DATA_LABEL}\"\ncontroller = \"{}\"\n",
            k.image.display(),
            initrd.display(),
            c.controller
        ),
    )?;
    let mods = crate::guest::kernel_modules(images, c.series, c.modules)?;
    let mut expect: Vec<String> = mods
        .load_lines("[initramfs]")
        .into_iter()
        .map(|l| format!("[linux] {l}"))
        .collect();
    expect.extend([
        format!("[linux] [storage] {dev} sectors={}", (DATA_MIB << 20) / 512),
        format!("[linux] [storage] mounted /dev/{dev} token={token}"),
        "[linux] [storage] wrote value=".into(),
        "[hv] all VMs stopped; powering off".into(),
    ]);
    Ok(Scenario {
        host_disk: Some(HostDisk {
            features: &[],
            drive: c.host_drive,
            devices: c.host_devices,
            drive_options: "",
            make: c.make,
            check: data_value_landed,
            blkdebug: None,
        }),
        forbid: linux_forbid(),
        timeout: Duration::from_secs(300),
        ..Scenario::new(c.name, qemu_virt(vms), expect)
    })
}

/// `storage-virtio-blk`: Linux 6.1 loads virtio-blk from its initramfs and mounts a
/// partition of the machine's NVMe drive through a virtio-blk disk.
pub fn virtio_blk(images: &crate::guest::GuestImages) -> Result<Scenario, String> {
    data_disk_scenario(
        images,
        &DataDiskCase {
            name: "storage-virtio-blk",
            series: "6.1",
            modules: &["virtio_blk", "virtio_pci"],
            controller: "virtio-blk",
            guest_dev: "vda",
            host_drive: "nvm0",
            host_devices: &["nvme,serial=hv-nvme0,drive=nvm0"],
            make: virtio_blk_disk,
        },
    )
}

/// `storage-ahci`: Linux 6.12 (the only Debian cloud kernel with AHCI, a module) loads
/// `ahci` from its initramfs and mounts a partition of the machine's SATA drive (behind the
/// machine's AHCI HBA) through a virtual AHCI controller.
pub fn ahci(images: &crate::guest::GuestImages) -> Result<Scenario, String> {
    data_disk_scenario(
        images,
        &DataDiskCase {
            name: "storage-ahci",
            series: "6.12",
            modules: &["ahci", "sd_mod"],
            controller: "ahci",
            guest_dev: "sda",
            host_drive: "hd0",
            host_devices: &["ich9-ahci,id=ahci0", "ide-hd,drive=hd0,bus=ahci0.0"],
            make: ahci_disk,
        },
    )
}

/// The raw partition whose sectors QEMU's blkdebug fails with EIO in `storage-durability`.
const EIO_LABEL: &str = "eio-zone";

/// The durability guest's `/init` body: mounts its data disk, waits (xtask samples the
/// drive's flush count), writes and syncs a value, waits again (xtask samples again),
/// then writes to its second disk, whose sectors fail on the machine's drive.
const DURABILITY_BODY: &str = r#"mkdir -p /mnt && mount -t ext4 /dev/nvme0n1 /mnt && echo "[durability] mounted"
echo "[durability] ready"
read go
v=$(cat /proc/sys/kernel/random/uuid)
echo "$v" > /mnt/value.txt && sync && echo "[durability] synced value=$v"
read go
if out=$(dd if=/dev/zero of=/dev/vda bs=4096 count=8 oflag=direct 2>&1); then
  echo "[durability] FAIL: the write to the failing zone succeeded"
else
  echo "[durability] write to the failing zone: $(echo "$out" | grep -o 'Input/output error' | head -1)"
fi
umount /mnt && echo "[durability] still running""#;

fn durability_disk() -> Result<PathBuf, String> {
    let d = dir("storage-durability")?;
    let tree = d.join("data");
    std::fs::create_dir_all(&tree).map_err(|e| format!("{}: {e}", tree.display()))?;
    let fs = d.join("data.ext4");
    disk::ext4_image(&tree, &fs, DATA_MIB << 20)?;
    let img = d.join("disk0.img");
    let part = |label: &str, mib: u64, fill: Option<PathBuf>| PartSpec {
        label: label.into(),
        bytes: mib << 20,
        fill,
    };
    disk::create(
        &img,
        64 << 20,
        &[
            part(DATA_LABEL, DATA_MIB, Some(fs)),
            part(EIO_LABEL, 4, None),
        ],
    )?;
    Ok(img)
}

/// blkdebug rules: every write touching the first sector of [`EIO_LABEL`] fails with EIO.
fn durability_blkdebug(img: &Path) -> Result<String, String> {
    let (_, start, _) = disk::list(img)?
        .into_iter()
        .find(|(l, _, _)| l == EIO_LABEL)
        .ok_or(format!("{}: no partition `{EIO_LABEL}`", img.display()))?;
    Ok(format!(
        "[inject-error]\nevent = \"write_aio\"\nerrno = \"5\"\nsector = \"{start}\"\n"
    ))
}

fn durability_value_landed(img: &Path, lines: &[String]) -> Result<(), String> {
    value_in_partition(img, lines, "[durability] synced value=", DATA_LABEL)
}

/// The machine's drive flushed between the guest's "ready" and the return of its sync (the
/// guest waits for input at both points, so nothing else runs in between): QEMU's NVMe
/// traced a flush, and its block statistics saw the writes before it.
fn flush_reached_the_drive(samples: &[crate::qemu::MachineSample]) -> Result<(), String> {
    let writes = |i: usize| {
        samples[i]
            .drives
            .iter()
            .find(|d| d.device == "nvm0")
            .map(|d| d.wr_operations)
            .ok_or(format!("QMP sample {i} has no drive nvm0"))
    };
    let (w0, w1) = (writes(0)?, writes(1)?);
    let (f0, f1) = (samples[0].traced, samples[1].traced);
    if w1 > w0 && f1 > f0 {
        Ok(())
    } else {
        Err(format!(
            "between the guest's `ready` and the return of its sync the machine's drive took \
             {} writes and {} flushes; want at least one of each (the guest's data and its \
             flush must reach the drive before sync returns)",
            w1.saturating_sub(w0),
            f1.saturating_sub(f0)
        ))
    }
}

/// `storage-durability`: a Linux guest writes a value made at run time and syncs; the
/// machine's NVMe drive takes the writes (QMP `query-blockstats`) and a flush (QEMU's
/// `pci_nvme_flush_ns` trace event; QEMU 7.2's NVMe leaves flushes out of its block
/// statistics) before the sync returns,
/// and the value is in the host's disk image file after power-off. A write to sectors the
/// drive fails (QEMU blkdebug, EIO) reaches the guest as an I/O error and the hypervisor
/// and the guest go on.
pub fn durability(images: &crate::guest::GuestImages) -> Result<Scenario, String> {
    let k = images
        .kernel("6.1")
        .ok_or("no 6.1 kernel in the guest cache")?;
    let initrd = dir("storage-durability")?.join("initramfs.cpio.gz");
    // The failing zone is a virtio-blk disk: its I/O errors reach Linux as EIO (an NVMe
    // disk passes the drive's media error through, which Linux reports as ENODATA).
    crate::guest::write_initramfs_with_modules(
        images,
        "6.1",
        &["virtio_blk", "virtio_pci"],
        &crate::guest::init_script(DURABILITY_BODY),
        &initrd,
    )?;
    let vms = write_vms(
        "storage-durability",
        &format!(
            "[[vm]]\nname = \"linux\"\nvcpus = 2\nmemory_mib = 256\nkernel = \"{}\"\n\
             initrd = \"{}\"\ncmdline = \"console=ttyAMA0 rdinit=/init\"\n\
             [[vm.disk]]\npartition = \"{DATA_LABEL}\"\ncontroller = \"nvme\"\n\
             [[vm.disk]]\npartition = \"{EIO_LABEL}\"\ncontroller = \"virtio-blk\"\n",
            k.image.display(),
            initrd.display(),
        ),
    )?;
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    Ok(Scenario {
        host_disk: Some(HostDisk {
            features: &[],
            drive: "nvm0",
            devices: &["nvme,serial=hv-nvme0,drive=nvm0"],
            drive_options: "",
            make: durability_disk,
            check: durability_value_landed,
            blkdebug: Some(durability_blkdebug),
        }),
        qmp: Some(crate::qemu::QmpProbe {
            at: &["[durability] ready", "[durability] synced value="],
            trace: Some("pci_nvme_flush_ns"),
            check: flush_reached_the_drive,
        }),
        input: vec![
            (s(&["[durability] ready"]), "go\n".into()),
            (s(&["[durability] synced value="]), "go\n".into()),
        ],
        forbid: linux_forbid(),
        timeout: Duration::from_secs(300),
        ..Scenario::new(
            "storage-durability",
            qemu_virt(vms),
            s(&[
                "[linux] [durability] mounted",
                "[linux] [durability] synced value=",
                "[linux] [durability] write to the failing zone: Input/output error",
                "[linux] [durability] still running",
                "[hv] all VMs stopped; powering off",
            ]),
        )
    })
}
