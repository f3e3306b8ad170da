//! The store against FAT images made here with the `fatfs` crate (another implementation),
//! read back with `fatfs` after the store changed them.

use super::*;
use std::io::{Cursor, Read, Write};

/// A partition in memory.
struct MemDisk(Vec<u8>);

impl Blocks for MemDisk {
    type Error = &'static str;
    fn blocks(&self) -> u64 {
        (self.0.len() / 512) as u64
    }
    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), Self::Error> {
        let at = lba as usize * 512;
        let src = self.0.get(at..at + buf.len()).ok_or("read past the end")?;
        buf.copy_from_slice(src);
        Ok(())
    }
    fn write(&mut self, lba: u64, data: &[u8]) -> Result<(), Self::Error> {
        let at = lba as usize * 512;
        let dst = self
            .0
            .get_mut(at..at + data.len())
            .ok_or("write past the end")?;
        dst.copy_from_slice(data);
        Ok(())
    }
}

/// A FAT image of `mib` MiB (FAT32 with 512-byte clusters if `fat32`, else FAT16), with
/// `VMS/web.toml` (a long name), `HV/HOST.TOM` and `IMAGES/kernel.img` (`kernel` bytes).
fn image(mib: usize, fat32: bool, kernel: &[u8]) -> Vec<u8> {
    let mut disk = vec![0u8; mib << 20];
    let opts = fatfs::FormatVolumeOptions::new().fat_type(if fat32 {
        fatfs::FatType::Fat32
    } else {
        fatfs::FatType::Fat16
    });
    fatfs::format_volume(Cursor::new(&mut disk[..]), opts).unwrap();
    {
        let fs =
            fatfs::FileSystem::new(Cursor::new(&mut disk[..]), fatfs::FsOptions::new()).unwrap();
        {
            let root = fs.root_dir();
            for d in ["VMS", "HV", "IMAGES"] {
                root.create_dir(d).unwrap();
            }
            let put = |path: &str, bytes: &[u8]| {
                let mut f = root.create_file(path).unwrap();
                f.truncate().unwrap();
                f.write_all(bytes).unwrap();
            };
            put("VMS/web.toml", b"[[vm]]\nname = \"web\"\n");
            put("HV/HOST.TOM", b"[mgmt]\naddress = \"dhcp\"\n");
            put("IMAGES/kernel.img", kernel);
        }
        fs.unmount().unwrap();
    }
    disk
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 511) as u8).collect()
}

fn fat_read(disk: &mut [u8], path: &str) -> std::io::Result<Vec<u8>> {
    let fs = fatfs::FileSystem::new(Cursor::new(disk), fatfs::FsOptions::new())?;
    let mut out = Vec::new();
    fs.root_dir().open_file(path)?.read_to_end(&mut out)?;
    Ok(out)
}

fn fat_names(disk: &mut [u8], dir: &str) -> Vec<String> {
    let fs = fatfs::FileSystem::new(Cursor::new(disk), fatfs::FsOptions::new()).unwrap();
    let d = fs.root_dir().open_dir(dir).unwrap();
    let mut names: Vec<String> = d
        .iter()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != "." && n != "..")
        .collect();
    names.sort();
    names
}

fn free_clusters(disk: &mut [u8]) -> u32 {
    let fs = fatfs::FileSystem::new(Cursor::new(disk), fatfs::FsOptions::new()).unwrap();
    fs.stats().unwrap().free_clusters()
}

#[test]
fn a_long_name_and_its_short_name_both_read_the_file_on_fat16_and_fat32() {
    for fat32 in [false, true] {
        let store = Store::open(MemDisk(image(if fat32 { 40 } else { 8 }, fat32, b"k"))).unwrap();
        assert_eq!(
            store.kind(),
            if fat32 {
                FatKind::Fat32
            } else {
                FatKind::Fat16
            }
        );
        let want = b"[[vm]]\nname = \"web\"\n".to_vec();
        assert_eq!(store.read("VMS/web.toml", 1024).unwrap(), want);
        assert_eq!(store.read("/vms/WEB.TOML", 1024).unwrap(), want);
        let short = store.list("VMS").unwrap()[0].short_name.clone();
        assert_eq!(short, "WEB~1.TOM");
        assert_eq!(store.read(&format!("vms/{short}"), 1024).unwrap(), want);
        assert_eq!(
            store.read("hv/host.tom", 1024).unwrap(),
            b"[mgmt]\naddress = \"dhcp\"\n"
        );
    }
}

#[test]
fn a_multi_cluster_file_streams_in_order_without_one_big_buffer() {
    // 300 KiB over 512-byte clusters: 600 clusters, 19 chunks of at most 16 KiB.
    let kernel = pattern(300 << 10);
    let store = Store::open(MemDisk(image(40, true, &kernel))).unwrap();
    assert_eq!(
        store.size("IMAGES/kernel.img").unwrap(),
        kernel.len() as u64
    );
    let mut got = Vec::new();
    let mut biggest = 0;
    let n = store
        .read_chunks("IMAGES/kernel.img", &mut |off, bytes| {
            assert_eq!(off, got.len() as u64);
            biggest = biggest.max(bytes.len());
            got.extend_from_slice(bytes);
            Ok(())
        })
        .unwrap();
    assert_eq!(n, kernel.len() as u64);
    assert!(got == kernel, "streamed bytes differ");
    assert!(biggest <= CHUNK);
    // The callback's error stops the read and comes back.
    let err = store
        .read_chunks("IMAGES/kernel.img", &mut |off, _| {
            if off > 0 {
                Err("enough".into())
            } else {
                Ok(())
            }
        })
        .unwrap_err();
    assert_eq!(err, StoreError::Callback("enough".into()));
}

#[test]
fn a_written_file_reads_back_here_and_in_fatfs_and_an_overwrite_can_shrink_it() {
    for fat32 in [false, true] {
        let mut store =
            Store::open(MemDisk(image(if fat32 { 40 } else { 8 }, fat32, b"k"))).unwrap();
        store.set_time(1_750_000_000);
        let big = pattern(70_000);
        store.write("VMS/DB.TOM", &big).unwrap();
        assert_eq!(store.read("vms/db.tom", 1 << 20).unwrap(), big);
        store.write("vms/db.tom", b"short").unwrap();
        assert_eq!(store.read("VMS/DB.TOM", 1 << 20).unwrap(), b"short");
        // Through the long name of an existing file: the file keeps its long name.
        store.write("VMS/web.toml", b"changed").unwrap();
        let mut disk = store.close().unwrap().0;
        assert_eq!(fat_read(&mut disk, "VMS/DB.TOM").unwrap(), b"short");
        assert_eq!(fat_read(&mut disk, "VMS/web.toml").unwrap(), b"changed");
        assert_eq!(fat_names(&mut disk, "VMS"), ["DB.TOM", "web.toml"]);
    }
}

#[test]
fn new_names_must_be_8_3_and_the_parent_must_exist() {
    let mut store = Store::open(MemDisk(image(8, false, b"k"))).unwrap();
    for bad in [
        "VMS/web2.toml",
        "VMS/averylongname.tom",
        "VMS/a b.tom",
        "VMS/.tom",
    ] {
        let err = store.write(bad, b"x").unwrap_err();
        assert!(
            matches!(&err, StoreError::BadName { .. }) && err.to_string().contains("8.3"),
            "{bad}: {err}"
        );
    }
    assert_eq!(
        store.write("NOPE/A.TOM", b"x"),
        Err(StoreError::NotFound("NOPE".into()))
    );
    assert_eq!(
        store.write("HV/HOST.TOM/X", b"x"),
        Err(StoreError::NotADirectory("HV/HOST.TOM".into()))
    );
    assert!(matches!(
        store.read("VMS/../HV/HOST.TOM", 100),
        Err(StoreError::BadName { .. })
    ));
    store.create_dir("NEW").unwrap();
    store.write("new/a.bin", b"abc").unwrap();
    assert_eq!(store.read("NEW/A.BIN", 10).unwrap(), b"abc");
    assert_eq!(
        store.write("VMS", b"x"),
        Err(StoreError::IsADirectory("VMS".into()))
    );
}

#[test]
fn remove_frees_the_clusters_and_the_long_name() {
    for fat32 in [false, true] {
        let kernel = pattern(200 << 10);
        let mut disk = image(if fat32 { 40 } else { 8 }, fat32, &kernel);
        let before = free_clusters(&mut disk);
        let mut store = Store::open(MemDisk(disk)).unwrap();
        store.remove("IMAGES/kernel.img").unwrap();
        store.remove("vms/web.toml").unwrap();
        assert_eq!(
            store.read("IMAGES/kernel.img", 1 << 20),
            Err(StoreError::NotFound("IMAGES/kernel.img".into()))
        );
        assert!(store.list("IMAGES").unwrap().is_empty());
        // Writing after a remove uses the freed space and the store's FAT state agrees.
        store.write("IMAGES/NEW.BIN", &kernel[..1000]).unwrap();
        let mut disk = store.close().unwrap().0;
        let after = free_clusters(&mut disk);
        let cluster = if fat32 { 512 } else { 1024 };
        let kernel_clusters = (kernel.len() / cluster) as u32;
        let web_clusters = 1;
        let new_clusters = 1000u32.div_ceil(cluster as u32);
        assert_eq!(
            after,
            before + kernel_clusters + web_clusters - new_clusters
        );
        assert!(fat_names(&mut disk, "VMS").is_empty());
        let live_lfn_of_web = disk.chunks_exact(32).any(|slot| {
            slot[11] == 0x0F && slot[0] != 0xE5 && slot[0] != 0 && &slot[1..7] == b"w\0e\0b\0"
        });
        assert!(
            !live_lfn_of_web,
            "an orphan long-name entry of web.toml is left"
        );
        assert_eq!(fat_names(&mut disk, "IMAGES"), ["NEW.BIN"]);
        assert!(fat_read(&mut disk, "IMAGES/kernel.img").is_err());
    }
}

#[test]
fn list_shows_long_names_short_names_sizes_and_directories() {
    let store = Store::open(MemDisk(image(8, false, &pattern(5000)))).unwrap();
    let mut root = store.list("/").unwrap();
    root.sort_by(|a, b| a.name.cmp(&b.name));
    let names: Vec<_> = root.iter().map(|e| (e.name.as_str(), e.is_dir)).collect();
    assert_eq!(names, [("HV", true), ("IMAGES", true), ("VMS", true)]);
    assert_eq!(
        store.list("images").unwrap(),
        [DirEntry {
            name: "kernel.img".into(),
            short_name: "KERNEL.IMG".into(),
            size: 5000,
            is_dir: false
        }]
    );
    assert_eq!(store.list("VMS").unwrap()[0].name, "web.toml");
    assert_eq!(
        store.list("HV/HOST.TOM"),
        Err(StoreError::NotADirectory("HV/HOST.TOM".into()))
    );
}

#[test]
fn a_partition_without_fat_is_refused_with_the_way_to_make_one() {
    for disk in [
        vec![0u8; 4 << 20],
        // An ext4-like superblock area, and a boot signature over garbage.
        {
            let mut d = vec![0xA5u8; 4 << 20];
            d[510] = 0x55;
            d[511] = 0xAA;
            d
        },
        Vec::new(),
    ] {
        let err = Store::open(MemDisk(disk))
            .err()
            .expect("opened a non-FAT partition");
        assert!(matches!(err, StoreError::NotFat(_)), "{err}");
        assert!(
            err.to_string()
                .contains("partition hv-datastore has no FAT file system")
                && err.to_string().contains("cargo xtask datastore create"),
            "{err}"
        );
    }
    // A FAT image cut short: its boot sector claims more than the partition has.
    let mut cut = image(8, false, b"k");
    cut.truncate(4 << 20);
    assert!(matches!(
        Store::open(MemDisk(cut)),
        Err(StoreError::NotFat(_))
    ));
}

#[test]
fn missing_paths_and_too_big_files_are_errors() {
    let store = Store::open(MemDisk(image(8, false, &pattern(5000)))).unwrap();
    assert_eq!(
        store.read("VMS/none.toml", 100),
        Err(StoreError::NotFound("VMS/none.toml".into()))
    );
    assert_eq!(
        store.size("NODIR/X"),
        Err(StoreError::NotFound("NODIR".into()))
    );
    assert_eq!(
        store.read("IMAGES/kernel.img", 4999),
        Err(StoreError::TooBig {
            path: "IMAGES/kernel.img".into(),
            size: 5000,
            cap: 4999
        })
    );
    assert_eq!(store.read("IMAGES/kernel.img", 5000).unwrap().len(), 5000);
    assert_eq!(
        store.read("VMS", 5000),
        Err(StoreError::IsADirectory("VMS".into()))
    );
    assert_eq!(
        store.list("NODIR"),
        Err(StoreError::NotFound("NODIR".into()))
    );
}

#[test]
fn unix_time_becomes_the_fat_calendar() {
    let t = unix_to_fat(1_750_000_000); // 2025-06-15 15:06:40 UTC
    assert_eq!(
        (t.year_since_1970, t.zero_indexed_month, t.zero_indexed_day),
        (55, 5, 14)
    );
    assert_eq!((t.hours, t.minutes, t.seconds), (15, 6, 40));
    assert_eq!(unix_to_fat(0).year_since_1970, 10);
}
