//! Host disk images for the hypervisor's own disks (`-device nvme` and friends): a raw file
//! with a protective MBR, a GPT and named partitions, each optionally filled from a file
//! (such as an ext4 image made by [`ext4_image`]). No root, no loop devices: the GPT is
//! written by the same code the hypervisor's datastore reads it with
//! (`hypervisor::datastore::write_gpt`), through a file-backed block device.
//!
//! `cargo xtask disk create OUT.img SIZE LABEL:SIZE[:FILE]...` does it from the command
//! line (sizes in bytes or with a K/M/G suffix); `cargo xtask disk list IMG` prints the
//! partitions.

use hypervisor::block::{self, BlockDevice, BlockError, SECTOR};
use hypervisor::datastore::{read_gpt, write_gpt};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// One partition to make.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartSpec {
    /// GPT label.
    pub label: String,
    /// Size in bytes (rounded up to whole sectors).
    pub bytes: u64,
    /// File copied to the start of the partition (it must fit).
    pub fill: Option<PathBuf>,
}

/// A raw disk image file seen as 512-byte sectors.
struct FileDisk {
    file: File,
    sectors: u64,
}

impl FileDisk {
    fn open(path: &Path, writable: bool) -> Result<Self, String> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(writable)
            .open(path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        let len = file
            .metadata()
            .map_err(|e| format!("{}: {e}", path.display()))?
            .len();
        Ok(Self {
            file,
            sectors: len / SECTOR as u64,
        })
    }
}

impl BlockDevice for FileDisk {
    fn sectors(&self) -> u64 {
        self.sectors
    }

    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        block::check(lba, block::sectors_in(buf.len())?, self.sectors)?;
        self.file
            .read_exact_at(buf, lba * SECTOR as u64)
            .map_err(|e| BlockError::Device(e.raw_os_error().unwrap_or(0) as u32))
    }

    fn write(&mut self, lba: u64, data: &[u8]) -> Result<(), BlockError> {
        block::check(lba, block::sectors_in(data.len())?, self.sectors)?;
        self.file
            .write_all_at(data, lba * SECTOR as u64)
            .map_err(|e| BlockError::Device(e.raw_os_error().unwrap_or(0) as u32))
    }

    fn flush(&mut self) -> Result<(), BlockError> {
        self.file
            .sync_data()
            .map_err(|e| BlockError::Device(e.raw_os_error().unwrap_or(0) as u32))
    }
}

/// Creates `path` (`bytes` long, sparse) with a GPT holding `parts` in order, each filled
/// from its file. Returns each partition's first sector and length in 512-byte sectors.
pub fn create(path: &Path, bytes: u64, parts: &[PartSpec]) -> Result<Vec<(u64, u64)>, String> {
    create_with_block_size(path, bytes, SECTOR as u32, parts)
}

/// [`create`] for a disk whose logical blocks are `block` bytes (4096 for a 4Kn drive:
/// the GPT's LBAs are in that unit).
pub fn create_with_block_size(
    path: &Path,
    bytes: u64,
    block: u32,
    parts: &[PartSpec],
) -> Result<Vec<(u64, u64)>, String> {
    let f = File::create(path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    f.set_len(bytes)
        .map_err(|e| format!("cannot size {}: {e}", path.display()))?;
    drop(f);
    let mut disk = FileDisk::open(path, true)?;
    let table: Vec<(&str, u64)> = parts.iter().map(|p| (p.label.as_str(), p.bytes)).collect();
    let at = write_gpt(&mut disk, block, &table, bytes)
        .map_err(|e| format!("{}: cannot write the GPT: {e}", path.display()))?;
    for (p, (start, sectors)) in parts.iter().zip(&at) {
        let Some(src) = &p.fill else { continue };
        let data = std::fs::read(src).map_err(|e| format!("cannot read {}: {e}", src.display()))?;
        if data.len() as u64 > sectors * SECTOR as u64 {
            return Err(format!(
                "{} ({} bytes) does not fit partition `{}` ({} bytes)",
                src.display(),
                data.len(),
                p.label,
                sectors * SECTOR as u64
            ));
        }
        let mut padded = data;
        padded.resize(padded.len().div_ceil(SECTOR) * SECTOR, 0);
        disk.write(*start, &padded)
            .map_err(|e| format!("{}: cannot fill `{}`: {e}", path.display(), p.label))?;
    }
    disk.flush()
        .map_err(|e| format!("{}: flush: {e}", path.display()))?;
    Ok(at)
}

/// The partitions of the disk image at `path` (in 512-byte sectors): `(label, first
/// sector, sectors)`. The GPT is looked for with 512-byte and then 4096-byte LBAs.
pub fn list(path: &Path) -> Result<Vec<(String, u64, u64)>, String> {
    let mut disk = FileDisk::open(path, false)?;
    let parts = read_gpt(&mut disk, SECTOR as u32)
        .or_else(|e| read_gpt(&mut disk, 4096).map_err(|_| e))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(parts
        .into_iter()
        .map(|p| (p.label, p.start, p.sectors))
        .collect())
}

/// Sector `sector` of the partition labelled `label` in the disk image at `path`.
pub fn read_sector(path: &Path, label: &str, sector: u64) -> Result<Vec<u8>, String> {
    read_sectors(path, label, sector, 1)
}

/// `count` sectors from `sector` of the partition labelled `label` in the disk image.
pub fn read_sectors(path: &Path, label: &str, sector: u64, count: u64) -> Result<Vec<u8>, String> {
    let (_, start, sectors) = list(path)?
        .into_iter()
        .find(|(l, _, _)| l == label)
        .ok_or_else(|| format!("{}: no partition labelled `{label}`", path.display()))?;
    if sector.checked_add(count).is_none_or(|end| end > sectors) {
        return Err(format!("`{label}` has only {sectors} sectors"));
    }
    let mut disk = FileDisk::open(path, false)?;
    let mut buf = vec![0u8; count as usize * SECTOR];
    disk.read(start + sector, &mut buf)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(buf)
}

/// Makes `out`, an ext4 file system of `bytes` holding the files of `dir` (`mke2fs -d`, no
/// root needed).
pub fn ext4_image(dir: &Path, out: &Path, bytes: u64) -> Result<(), String> {
    let tools = crate::guest::rootfs::E2fsprogs::ensure().map_err(|e| e.to_string())?;
    let _ = std::fs::remove_file(out);
    crate::build::run(
        Command::new(&tools.mke2fs)
            .args(["-q", "-F", "-t", "ext4", "-d"])
            .arg(dir)
            .arg(out)
            .arg(format!("{}k", bytes / 1024)),
    )
}

/// Parses `64M`, `512K`, `1G` or a byte count.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let (num, mul) = match s.chars().last() {
        Some('K' | 'k') => (&s[..s.len() - 1], 1 << 10),
        Some('M' | 'm') => (&s[..s.len() - 1], 1 << 20),
        Some('G' | 'g') => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mul))
        .ok_or_else(|| format!("`{s}` is not a size (bytes, or a number with K, M or G)"))
}

/// `cargo xtask disk create OUT SIZE LABEL:SIZE[:FILE]...` / `cargo xtask disk list IMG`.
/// `cargo xtask disk ...`.
#[derive(Debug, clap::Subcommand)]
pub enum Cmd {
    /// A raw disk image with a GPT and the given partitions (then lists them)
    Create {
        /// The image to write
        #[arg(value_name = "OUT.img")]
        out: PathBuf,
        /// Its size (e.g. 64M, 1G)
        size: String,
        /// Partitions: label, size and an optional file to fill it with
        #[arg(value_name = "LABEL:SIZE[:FILE]")]
        parts: Vec<String>,
    },
    /// List the partitions of a disk image
    List {
        /// The image
        img: PathBuf,
    },
}

/// `cargo xtask disk ...`.
pub fn cmd(cmd: Cmd) -> Result<(), String> {
    match cmd {
        Cmd::Create { out, size, parts } => {
            let size = parse_size(&size)?;
            let parts = parts
                .iter()
                .map(|p| {
                    let mut it = p.splitn(3, ':');
                    let label = it.next().unwrap_or_default().to_owned();
                    let bytes =
                        parse_size(it.next().ok_or(format!("`{p}`: want LABEL:SIZE[:FILE]"))?)?;
                    Ok(PartSpec {
                        label,
                        bytes,
                        fill: it.next().map(PathBuf::from),
                    })
                })
                .collect::<Result<Vec<_>, String>>()?;
            for p in &parts {
                if let Some(f) = &p.fill {
                    crate::check::file(&format!("partition `{}`", p.label), f)?;
                }
            }
            create(&out, size, &parts)?;
            list_cmd(&out)
        }
        Cmd::List { img } => list_cmd(&img),
    }
}

fn list_cmd(path: &Path) -> Result<(), String> {
    for (label, start, sectors) in list(path)? {
        println!(
            "{label}: sectors {start}..{} ({} MiB)",
            start + sectors,
            sectors >> 11
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("xtask-disk-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_disk_made_here_has_its_partitions_and_filled_contents() {
        let d = tmp("fill");
        let payload = d.join("payload.bin");
        std::fs::write(&payload, b"hello from the host").unwrap();
        let img = d.join("disk.img");
        let parts = [
            PartSpec {
                label: "vm0-root".into(),
                bytes: 2 << 20,
                fill: Some(payload),
            },
            PartSpec {
                label: "vm0-data".into(),
                bytes: 1 << 20,
                fill: None,
            },
        ];
        let at = create(&img, 8 << 20, &parts).unwrap();
        let listed = list(&img).unwrap();
        assert_eq!(
            listed,
            [
                ("vm0-root".to_string(), at[0].0, 4096),
                ("vm0-data".to_string(), at[1].0, 2048)
            ]
        );
        assert_eq!(
            &read_sector(&img, "vm0-root", 0).unwrap()[..19],
            b"hello from the host"
        );
        assert!(read_sector(&img, "nope", 0).is_err());
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn a_fill_bigger_than_its_partition_is_refused() {
        let d = tmp("big");
        let payload = d.join("big.bin");
        std::fs::write(&payload, vec![1u8; 2 << 20]).unwrap();
        let parts = [PartSpec {
            label: "small".into(),
            bytes: 1 << 20,
            fill: Some(payload),
        }];
        assert!(create(&d.join("disk.img"), 8 << 20, &parts)
            .unwrap_err()
            .contains("does not fit"));
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn sizes_parse_with_suffixes() {
        assert_eq!(parse_size("64M"), Ok(64 << 20));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("1X").is_err());
    }
}
