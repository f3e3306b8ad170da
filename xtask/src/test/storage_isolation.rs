//! `storage-isolation`: a hostile guest drives its three virtual disk controllers (NVMe,
//! AHCI, virtio-blk) with requests past its disks' ends and DMA outside its RAM while a
//! second VM uses a partition of the same machine drive; afterwards the disk image file
//! must show that nothing but the guests' own valid writes landed.
//!
//! The host drive (QEMU `-device nvme`) holds the hostile VM's three partitions with guard
//! partitions between and around them, and the neighbour's partition. xtask fills every
//! partition with a pattern of its own before the run; after QEMU exits, the guards must
//! hold exactly their pattern, each hostile disk its pattern except LBA 0, which must hold
//! the marker sector the guest printed, and the neighbour's partition the value it printed
//! (test guest modes `storage-hostile` and `storage-neighbour`,
//! `examples/test-guest/src/storage.rs`). The neighbour reads its value back until xtask
//! types a byte on its console, which it does once the hostile guest printed its summary,
//! so the two really run side by side however slow the machine is.

use super::{qemu_virt, workspace_root, write_vms};
use crate::disk::{self, PartSpec};
use crate::qemu::{HostDisk, Scenario};
use std::path::{Path, PathBuf};
use std::time::Duration;

const NAME: &str = "storage-isolation";
/// Size of the host drive.
const DISK_MIB: u64 = 16;
/// Each partition, in order on the drive, its size, and the controller of the hostile
/// disk on it (`None`: a guard, or the neighbour's partition).
const PARTS: [(&str, u64); 8] = [
    ("guard-a", 1),
    ("iso-nvme", 2),
    ("guard-b", 1),
    ("iso-ahci", 2),
    ("guard-c", 1),
    ("iso-virtio", 2),
    ("guard-d", 1),
    ("vm2-data", 2),
];
/// The guard partitions: nobody may write them.
const GUARDS: [&str; 4] = ["guard-a", "guard-b", "guard-c", "guard-d"];
/// The hostile VM's disks: partition, controller, the tag of its marker sector.
const HOSTILE_DISKS: [(&str, &str, &str); 3] = [
    ("iso-nvme", "nvme", "nvme"),
    ("iso-ahci", "ahci", "ahci"),
    ("iso-virtio", "virtio-blk", "virtio-blk"),
];
/// Probes the hostile guest makes (10 NVMe, 7 AHCI, 7 virtio-blk).
const PROBES: usize = 24;
/// The neighbour VM's partition.
const NEIGHBOUR_PART: &str = "vm2-data";

/// The bytes xtask fills partition `label` with: per 512-byte sector, the line
/// `<label> sector <n>` and then bytes that depend on the label, the sector and the offset.
pub fn pattern(label: &str, bytes: u64) -> Vec<u8> {
    let seed = label.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    let mut out = Vec::with_capacity(bytes as usize);
    for sector in 0..bytes / 512 {
        let head = format!("{label} sector {sector}\n");
        for i in 0..512_u32 {
            let b = match head.as_bytes().get(i as usize) {
                Some(&b) => b,
                None => {
                    (seed ^ (sector as u32).wrapping_mul(0x9e37_79b9) ^ i.wrapping_mul(0x85eb_ca6b))
                        .rotate_left(i % 29) as u8
                }
            };
            out.push(b);
        }
    }
    out
}

/// The sector a guest's valid write leaves at LBA 0 (`storage::marker_sector` of the test
/// guest): `STOISO <tag> <marker>\n`, zero-padded.
pub fn marker_sector(tag: &str, marker: &str) -> Vec<u8> {
    let mut s = format!("STOISO {tag} {marker}\n").into_bytes();
    s.resize(512, 0);
    s
}

fn dir() -> Result<PathBuf, String> {
    let d = workspace_root().join("target/scenarios").join(NAME);
    std::fs::create_dir_all(&d).map_err(|e| format!("{}: {e}", d.display()))?;
    Ok(d)
}

/// The host drive: every partition of [`PARTS`] filled with its [`pattern`].
fn make_disk() -> Result<PathBuf, String> {
    let d = dir()?;
    let mut parts = Vec::new();
    for (label, mib) in PARTS {
        let fill = d.join(format!("{label}.fill"));
        std::fs::write(&fill, pattern(label, mib << 20))
            .map_err(|e| format!("{}: {e}", fill.display()))?;
        parts.push(PartSpec {
            label: label.into(),
            bytes: mib << 20,
            fill: Some(fill),
        });
    }
    let img = d.join("nvme0.img");
    disk::create(&img, DISK_MIB << 20, &parts)?;
    Ok(img)
}

/// The 16 hex digits after `key` on the first console line containing `marker`.
fn printed_hex(lines: &[String], marker: &str, key: &str) -> Result<String, String> {
    let line = lines
        .iter()
        .find(|l| l.contains(marker) && l.contains(key))
        .ok_or(format!("no console line with `{marker}` and `{key}`"))?;
    let at = line.find(key).unwrap_or(0) + key.len();
    let v: String = line[at..]
        .chars()
        .take_while(char::is_ascii_hexdigit)
        .collect();
    if v.len() != 16 {
        return Err(format!(
            "`{key}` is not followed by 16 hex digits in `{line}`"
        ));
    }
    Ok(v)
}

/// The first difference between `got` and `want`, as "sector S byte B: X, want Y".
fn first_difference(got: &[u8], want: &[u8]) -> Option<String> {
    if got.len() != want.len() {
        return Some(format!("{} bytes, want {}", got.len(), want.len()));
    }
    got.iter().zip(want).position(|(a, b)| a != b).map(|i| {
        format!(
            "sector {} byte {}: {:#04x}, want {:#04x}",
            i / 512,
            i % 512,
            got[i],
            want[i]
        )
    })
}

/// Partition `label` of `img`: LBA 0 is `first` (or the pattern if `None`), the rest its
/// pattern.
fn partition_holds(img: &Path, label: &str, first: Option<&[u8]>) -> Result<(), String> {
    let (_, _, sectors) = disk::list(img)?
        .into_iter()
        .find(|(l, _, _)| l == label)
        .ok_or(format!("{}: no partition `{label}`", img.display()))?;
    let got = disk::read_sectors(img, label, 0, sectors)?;
    let mut want = pattern(label, sectors * 512);
    if let Some(first) = first {
        want[..512].copy_from_slice(first);
    }
    match first_difference(&got, &want) {
        None => Ok(()),
        Some(d) => Err(format!(
            "partition `{label}` of {} changed where it must not: {d}{}",
            img.display(),
            match first {
                Some(_) =>
                    " (LBA 0 must hold the marker the guest printed, the rest xtask's pattern)",
                None => " (a guard: only xtask's pattern may be there)",
            }
        )),
    }
}

/// After QEMU exited: the guards hold their pattern, each hostile disk the marker its
/// guest printed at LBA 0 and its pattern after it, the neighbour's partition its value.
fn check_disk(img: &Path, lines: &[String]) -> Result<(), String> {
    let mut errors = Vec::new();
    for guard in GUARDS {
        if let Err(e) = partition_holds(img, guard, None) {
            errors.push(e);
        }
    }
    for (label, _, tag) in HOSTILE_DISKS {
        let r = printed_hex(lines, &format!("storage-hostile: {tag} wrote "), "marker=")
            .and_then(|m| partition_holds(img, label, Some(&marker_sector(tag, &m))));
        if let Err(e) = r {
            errors.push(e);
        }
    }
    let r = printed_hex(lines, "storage-neighbour: wrote ", "value=")
        .and_then(|v| partition_holds(img, NEIGHBOUR_PART, Some(&marker_sector("neighbour", &v))));
    if let Err(e) = r {
        errors.push(e);
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("\n"))
    }
}

/// The VM file: `hostile` with a disk on each controller, `neighbour` with its own.
fn vms_text(guest: &Path) -> String {
    let mut t = format!(
        "[[vm]]\nname = \"hostile\"\nvcpus = 1\nmemory_mib = 64\nkernel = \"{}\"\ncmdline = \"storage-hostile\"\n",
        guest.display()
    );
    for (label, controller, _) in HOSTILE_DISKS {
        t += &format!("[[vm.disk]]\npartition = \"{label}\"\ncontroller = \"{controller}\"\n");
    }
    t += &format!(
        "\n[[vm]]\nname = \"neighbour\"\nvcpus = 1\nmemory_mib = 64\nkernel = \"{}\"\ncmdline = \"storage-neighbour\"\n\
         [[vm.disk]]\npartition = \"{NEIGHBOUR_PART}\"\ncontroller = \"nvme\"\n",
        guest.display()
    );
    t
}

/// What the hostile guest prints for each probe, in order (the statuses each model
/// documents: NVMe LBA Out of Range 0x080 and Data Transfer Error 0x004, AHCI task file
/// and host bus fatal errors, virtio-blk IOERR and NEEDS_RESET).
fn probe_lines() -> Vec<String> {
    let h = |s: &str| format!("[hostile] [test-guest] storage-hostile: {s}");
    let mut v = Vec::new();
    let nvme_range = "-> status 0x080 (LBA Out of Range)";
    let nvme_dma = "-> status 0x004 (Data Transfer Error)";
    v.push(h("nvme namespace 1 has 4096 blocks"));
    for (probe, answer) in [
        ("read past end", nvme_range),
        ("read with SLBA+NLB past 2^64", nvme_range),
        ("write across the end", nvme_range),
        ("read into PRP1 at RAM end", nvme_dma),
        ("read into PRP1 at 1 TiB", nvme_dma),
        ("read into PRP1 straddling RAM end", nvme_dma),
        ("write from PRP2 at RAM end", nvme_dma),
        ("write with its PRP list at RAM end", nvme_dma),
        ("write with a PRP list entry in MMIO", nvme_dma),
        ("read with a PRP list entry in MMIO", nvme_dma),
    ] {
        v.push(h(&format!("nvme {probe} {answer}")));
    }
    v.push(h("nvme wrote marker="));
    v.push(h("ahci IDENTIFY DEVICE: 4096 sectors"));
    for (probe, answer) in [
        ("READ DMA EXT past end", "task file error"),
        ("WRITE DMA EXT across the end", "task file error"),
        ("READ DMA EXT into a PRD at RAM end", "host bus fatal error"),
        ("WRITE DMA EXT from a PRD at 1 TiB", "host bus fatal error"),
        ("WRITE DMA EXT from a PRD in MMIO", "host bus fatal error"),
        ("command table at RAM end", "host bus fatal error"),
        ("command list at RAM end", "host bus fatal error"),
    ] {
        v.push(h(&format!("ahci {probe} -> {answer} (PxIS ")));
    }
    v.push(h("ahci wrote marker="));
    v.push(h("virtio-blk capacity 4096 sectors"));
    for (probe, answer) in [
        ("read past end", "IOERR"),
        ("write across the end", "IOERR"),
        ("read into a buffer at RAM end", "IOERR"),
        ("write from a buffer at 1 TiB", "IOERR"),
        ("read into a buffer in MMIO", "IOERR"),
        ("descriptor loop", "device status NEEDS_RESET"),
        ("descriptor table at RAM end", "device status NEEDS_RESET"),
    ] {
        v.push(h(&format!("virtio-blk {probe} -> {answer}")));
    }
    v.push(h("virtio-blk reset and set up again"));
    v.push(h("virtio-blk wrote marker="));
    v.push(h(&format!(
        "{PROBES} probes on 3 controller(s), all refused; 3 marker(s) written and read back"
    )));
    v
}

/// `storage-isolation` (see the module documentation).
pub fn scenario() -> Result<Scenario, String> {
    let guest = workspace_root().join("target/guests/test-guest.bin");
    let vms = write_vms(NAME, &vms_text(&guest))?;
    let mut expect = vec!["[hv] datastore: nvme0 (QEMU NVMe Ctrl, 16 MiB): partitions".to_string()];
    expect.extend(probe_lines());
    // The neighbour reads its value back all along, until xtask types a byte on its
    // console once the hostile guest is done.
    expect.push("[neighbour] [test-guest] storage-neighbour: read back equal ".into());
    let hostile_done = format!("[hostile] [test-guest] storage-hostile: {PROBES} probes on");
    expect.push("[hv] all VMs stopped; powering off".into());
    Ok(Scenario {
        input: vec![(vec![hostile_done], "\x1d1s".into())],
        expect_unordered: vec![
            "[neighbour] [test-guest] storage-neighbour: wrote value=".into(),
            "[hv] VM 0 `hostile` stopped: guest called PSCI SYSTEM_OFF".into(),
            "[hv] VM 1 `neighbour` stopped: guest called PSCI SYSTEM_OFF".into(),
        ],
        forbid: ["PANIC", "FATAL", "FAIL", "panic", "accepted"]
            .map(String::from)
            .to_vec(),
        timeout: Duration::from_secs(120),
        host_disk: Some(HostDisk {
            features: &[],
            drive: "nvm0",
            devices: &["nvme,serial=hv-nvme0,drive=nvm0"],
            drive_options: "",
            make: make_disk,
            check: check_disk,
            blkdebug: None,
        }),
        ..Scenario::new(NAME, qemu_virt(vms), expect)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A drive as `make_disk` makes it, in a directory of its own that is removed with the
    /// returned guard (each run left 125 MB of drives behind).
    fn drive(name: &str) -> (tempfile::TempDir, PathBuf) {
        let t = tempfile::Builder::new()
            .prefix(&format!("xtask-stoiso-{name}-"))
            .tempdir()
            .unwrap();
        let d = t.path();
        let parts: Vec<PartSpec> = PARTS
            .iter()
            .map(|&(label, mib)| {
                let fill = d.join(format!("{label}.fill"));
                std::fs::write(&fill, pattern(label, mib << 20)).unwrap();
                PartSpec {
                    label: label.into(),
                    bytes: mib << 20,
                    fill: Some(fill),
                }
            })
            .collect();
        let img = d.join("nvme0.img");
        disk::create(&img, DISK_MIB << 20, &parts).unwrap();
        (t, img)
    }

    /// Writes `data` at `sector` of partition `label` of `img`, as a guest would.
    fn write_at(img: &Path, label: &str, sector: u64, data: &[u8]) {
        use std::os::unix::fs::FileExt;
        let (_, start, _) = disk::list(img)
            .unwrap()
            .into_iter()
            .find(|(l, _, _)| l == label)
            .unwrap();
        let f = std::fs::OpenOptions::new().write(true).open(img).unwrap();
        f.write_all_at(data, (start + sector) * 512).unwrap();
    }

    const MARKERS: [(&str, &str); 3] = [
        ("nvme", "0123456789abcdef"),
        ("ahci", "fedcba9876543210"),
        ("virtio-blk", "00112233445566ff"),
    ];
    const VALUE: &str = "a5a5a5a5deadbeef";

    /// The console of a run whose guests wrote [`MARKERS`] and [`VALUE`].
    fn console() -> Vec<String> {
        let mut l: Vec<String> = MARKERS
            .iter()
            .map(|(tag, m)| {
                format!("[hostile] [test-guest] storage-hostile: {tag} wrote marker={m} to LBA 0, read back equal")
            })
            .collect();
        l.push(format!(
            "[neighbour] [test-guest] storage-neighbour: wrote value={VALUE} to LBA 0"
        ));
        l
    }

    /// The drive after the guests' valid writes, and nothing else.
    fn written_drive(name: &str) -> (tempfile::TempDir, PathBuf) {
        let (t, img) = drive(name);
        for ((label, _, _), (tag, m)) in HOSTILE_DISKS.iter().zip(MARKERS) {
            write_at(&img, label, 0, &marker_sector(tag, m));
        }
        write_at(&img, NEIGHBOUR_PART, 0, &marker_sector("neighbour", VALUE));
        (t, img)
    }

    #[test]
    fn a_drive_with_only_the_valid_writes_passes() {
        let (_t, img) = written_drive("ok");
        check_disk(&img, &console()).unwrap();
    }

    #[test]
    fn a_changed_guard_byte_fails_and_names_the_guard() {
        let (_t, img) = written_drive("guard");
        let mut s = pattern("guard-b", 512 * 3)[1024..].to_vec();
        s[17] ^= 1;
        write_at(&img, "guard-b", 2, &s);
        let err = check_disk(&img, &console()).unwrap_err();
        assert!(err.contains("partition `guard-b`"), "{err}");
        assert!(err.contains("sector 2 byte 17"), "{err}");
        assert!(err.contains("a guard"), "{err}");
    }

    #[test]
    fn a_write_past_a_disks_end_into_the_next_partition_fails() {
        // What a controller that let the hostile guest write across its end would leave.
        let (_t, img) = written_drive("overrun");
        let (_, start, sectors) = disk::list(&img)
            .unwrap()
            .into_iter()
            .find(|(l, _, _)| l == "iso-nvme")
            .unwrap();
        let (_, next, _) = disk::list(&img)
            .unwrap()
            .into_iter()
            .find(|(l, _, _)| l == "guard-b")
            .unwrap();
        assert_eq!(start + sectors, next, "guard-b follows iso-nvme directly");
        write_at(&img, "guard-b", 0, &[0xee; 512]);
        let err = check_disk(&img, &console()).unwrap_err();
        assert!(err.contains("partition `guard-b`"), "{err}");
    }

    #[test]
    fn a_marker_in_the_wrong_place_or_missing_fails() {
        let (_t, img) = drive("nomarker");
        // Only the AHCI marker, and at LBA 1 instead of 0.
        write_at(&img, "iso-ahci", 1, &marker_sector("ahci", MARKERS[1].1));
        let err = check_disk(&img, &console()).unwrap_err();
        assert!(err.contains("partition `iso-nvme`"), "{err}");
        assert!(err.contains("partition `iso-ahci`"), "{err}");
        assert!(err.contains("partition `iso-virtio`"), "{err}");
        assert!(err.contains("partition `vm2-data`"), "{err}");
        assert!(err.contains("sector 0 byte 0"), "{err}");
        // A marker the guest did not print.
        let (_t, img) = written_drive("othermarker");
        let mut lines = console();
        lines[0] = lines[0].replace(MARKERS[0].1, "0123456789abcdee");
        let err = check_disk(&img, &lines).unwrap_err();
        assert!(err.contains("partition `iso-nvme`"), "{err}");
        // No marker line at all.
        let err = check_disk(&img, &console()[1..]).unwrap_err();
        assert!(err.contains("storage-hostile: nvme wrote"), "{err}");
    }

    #[test]
    fn patterns_differ_per_partition_and_sector() {
        let a = pattern("guard-a", 1024);
        let b = pattern("guard-b", 1024);
        assert_ne!(a, b);
        assert_ne!(a[..512], a[512..]);
        assert!(a.starts_with(b"guard-a sector 0\n"));
        assert_eq!(marker_sector("nvme", "0123456789abcdef").len(), 512);
    }

    #[test]
    fn the_vm_file_gives_each_vm_its_disks() {
        let text = vms_text(Path::new("/g.bin"));
        assert_eq!(text.matches("[[vm]]").count(), 2);
        for (label, controller, _) in HOSTILE_DISKS {
            assert!(text.contains(&format!(
                "partition = \"{label}\"\ncontroller = \"{controller}\""
            )));
        }
        assert!(text.contains("cmdline = \"storage-neighbour\""));
        assert_eq!(
            probe_lines().len(),
            1 + 10 + 1 + 1 + 7 + 1 + 1 + 7 + 1 + 1 + 1
        );
    }
}
