//! The datastore: the FAT16/FAT32 file system on the GPT partition `hv-datastore`, read
//! and written with `embedded-sdmmc` (see `docs/management.md`, "The datastore partition").
//!
//! The caller gives the partition as a [`Blocks`] device (512-byte blocks, block 0 is the
//! partition's first sector); `hypervisor::runtime` adapts its `Partition`. Paths are
//! `/`-separated and case-insensitive; each component may be a long name (`web.toml`) or
//! an 8.3 name (`WEB~1.TOM`, `HOST.TOM`). New files get 8.3 names only: `embedded-sdmmc`
//! does not write long names. Files are at most 4 GiB - 1 (FAT's limit).
//!
//! ```text
//! let mut store = Store::open(partition)?;
//! let host = store.read("HV/HOST.TOM", 64 << 10)?;
//! store.read_chunks("IMAGES/Image", &mut |offset, bytes| load(offset, bytes))?;
//! store.write("VMS/WEB.TOM", toml.as_bytes())?;
//! ```

mod fat;
#[cfg(test)]
mod tests;

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use core::fmt::Debug;
use embedded_sdmmc::{
    DirEntry as RawEntry, Error as FsError, LfnBuffer, Mode, RawDirectory, RawVolume,
    ShortFileName, TimeSource, Timestamp, VolumeIdx, VolumeManager,
};
use fat::{Geometry, MbrView};

pub use fat::FatKind;

/// The partition the datastore lives on, as 512-byte blocks numbered from the partition's
/// first sector. The runtime implements it over its `Partition`; tests over a `Vec<u8>`.
pub trait Blocks {
    /// What a failed access reports (shown in [`StoreError::Io`]).
    type Error: Debug;
    /// The partition's size in 512-byte blocks.
    fn blocks(&self) -> u64;
    /// Reads `buf.len() / 512` blocks from `lba` (`buf` is a whole number of blocks).
    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), Self::Error>;
    /// Writes `data.len() / 512` blocks at `lba`.
    fn write(&mut self, lba: u64, data: &[u8]) -> Result<(), Self::Error>;
    /// Returns once everything written is on stable storage.
    fn flush(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// Why a datastore operation failed. The `Display` text is meant for the user.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The partition holds no FAT16/FAT32 file system (the string says what is wrong).
    #[error(
        "partition hv-datastore has no FAT file system ({0}): create it with `cargo xtask datastore create`"
    )]
    NotFat(String),
    /// Nothing at this path.
    #[error("{0}: no such file or directory on the datastore")]
    NotFound(String),
    /// A file was wanted and this is a directory.
    #[error("{0} is a directory")]
    IsADirectory(String),
    /// A directory was wanted and this is a file.
    #[error("{0} is not a directory")]
    NotADirectory(String),
    /// The file is larger than the caller allows.
    #[error("{path} is {size} bytes, more than the {cap} allowed")]
    TooBig {
        /// The file.
        path: String,
        /// Its size.
        size: u64,
        /// The limit given.
        cap: u64,
    },
    /// A name that cannot be created (not 8.3, or not a valid path component).
    #[error("{name}: {why}")]
    BadName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// The file system has no free cluster left.
    #[error("the datastore is full")]
    Full,
    /// The file is marked read-only.
    #[error("{0} is read-only")]
    ReadOnly(String),
    /// The block device failed.
    #[error("datastore I/O error: {0}")]
    Io(String),
    /// The file system is damaged or uses something not supported.
    #[error("datastore file system error: {0}")]
    Fs(String),
    /// The `read_chunks` callback stopped the read.
    #[error("{0}")]
    Callback(String),
}

/// What [`Store::read_chunks`] hands each piece to: its offset in the file and its bytes;
/// an error stops the read.
pub type Chunks<'a> = dyn FnMut(u64, &[u8]) -> Result<(), String> + 'a;

/// One entry of a directory listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    /// The long name if the entry has one, else the 8.3 name.
    pub name: String,
    /// The 8.3 name (`WEB~1.TOM`).
    pub short_name: String,
    /// Size in bytes (0 for a directory).
    pub size: u64,
    /// A directory.
    pub is_dir: bool,
}

/// The clock files are stamped with: Unix seconds, set by [`Store::set_time`].
#[derive(Clone, Default)]
struct Clock(alloc::sync::Arc<core::sync::atomic::AtomicU64>);

impl TimeSource for Clock {
    fn get_timestamp(&self) -> Timestamp {
        unix_to_fat(self.0.load(core::sync::atomic::Ordering::Relaxed))
    }
}

/// The FAT date of Unix time `secs` (UTC), clamped to FAT's 1980..=2107.
fn unix_to_fat(secs: u64) -> Timestamp {
    // Howard Hinnant's civil_from_days.
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let year = yoe + era * 400 + i64::from(month <= 2);
    let stamp = if year < 1980 {
        Timestamp::from_calendar(1980, 1, 1, 0, 0, 0)
    } else if year > 2107 {
        Timestamp::from_calendar(2107, 12, 31, 23, 59, 58)
    } else {
        Timestamp::from_calendar(
            year as u16,
            month,
            day,
            (rem / 3600) as u8,
            (rem / 60 % 60) as u8,
            (rem % 60) as u8,
        )
    };
    stamp.unwrap_or(Timestamp {
        year_since_1970: 10,
        zero_indexed_month: 0,
        zero_indexed_day: 0,
        hours: 0,
        minutes: 0,
        seconds: 0,
    })
}

type Vm<D> = VolumeManager<MbrView<D>, Clock, 4, 2, 1>;

/// The datastore file system, open. Owns the block device until [`Store::close`].
pub struct Store<D: Blocks> {
    vm: Option<Vm<D>>,
    volume: Option<RawVolume>,
    geometry: Geometry,
    clock: Clock,
}

/// Bytes of a long name (255 UTF-16 units, up to 3 UTF-8 bytes each, plus a surrogate).
const LFN_BYTES: usize = 1024;
/// Bytes `read_chunks` hands the callback at a time (at most).
const CHUNK: usize = 16 << 10;

impl<D: Blocks> Store<D> {
    /// Opens the FAT file system on `dev`. A partition without one gets
    /// [`StoreError::NotFat`], whose message says how to make one.
    pub fn open(mut dev: D) -> Result<Self, StoreError> {
        let mut boot = [0u8; 512];
        if dev.blocks() == 0 {
            return Err(StoreError::NotFat("the partition is empty".into()));
        }
        dev.read(0, &mut boot)
            .map_err(|e| StoreError::Io(format!("{e:?}")))?;
        let geometry =
            Geometry::parse(&boot, dev.blocks()).map_err(|w| StoreError::NotFat(w.into()))?;
        let clock = Clock::default();
        let mut store = Self {
            vm: None,
            volume: None,
            geometry,
            clock,
        };
        store.mount(MbrView::new(dev))?;
        Ok(store)
    }

    /// FAT16 or FAT32.
    pub fn kind(&self) -> FatKind {
        self.geometry.kind
    }

    /// Sets the time new and written files are stamped with (Unix seconds, UTC).
    pub fn set_time(&self, unix_seconds: u64) {
        self.clock
            .0
            .store(unix_seconds, core::sync::atomic::Ordering::Relaxed);
    }

    /// Closes the file system and gives the device back (flushed).
    pub fn close(mut self) -> Result<D, StoreError> {
        let view = self.unmount()?;
        let mut dev = view.dev.into_inner();
        dev.flush().map_err(|e| StoreError::Io(format!("{e:?}")))?;
        Ok(dev)
    }

    fn mount(&mut self, view: MbrView<D>) -> Result<(), StoreError> {
        let vm: Vm<D> = VolumeManager::new_with_limits(view, self.clock.clone(), 1);
        let volume = vm.open_raw_volume(VolumeIdx(0)).map_err(|e| match e {
            FsError::FormatError(w) => StoreError::NotFat(w.into()),
            e => fs_err(e, ""),
        })?;
        self.vm = Some(vm);
        self.volume = Some(volume);
        Ok(())
    }

    fn unmount(&mut self) -> Result<MbrView<D>, StoreError> {
        let (Some(vm), Some(volume)) = (self.vm.take(), self.volume.take()) else {
            return Err(closed());
        };
        let closed = vm.close_volume(volume);
        let (view, _) = vm.free();
        closed.map_err(|e| fs_err(e, ""))?;
        Ok(view)
    }

    fn parts(&self) -> Result<(&Vm<D>, RawVolume), StoreError> {
        match (&self.vm, self.volume) {
            (Some(vm), Some(v)) => Ok((vm, v)),
            _ => Err(closed()),
        }
    }

    /// The size in bytes of the file at `path`.
    pub fn size(&self, path: &str) -> Result<u64, StoreError> {
        let (dirs, name) = split(path)?;
        let name = name.ok_or_else(|| StoreError::IsADirectory(path.into()))?;
        let (vm, _) = self.parts()?;
        let dir = self.open_dirs(&dirs, path)?;
        let found = lookup(vm, dir, name);
        let _ = vm.close_dir(dir);
        let entry = found?.ok_or_else(|| StoreError::NotFound(path.into()))?.0;
        if entry.attributes.is_directory() {
            return Err(StoreError::IsADirectory(path.into()));
        }
        Ok(u64::from(entry.size))
    }

    /// The whole file at `path`, refused if it is larger than `cap` bytes.
    pub fn read(&self, path: &str, cap: u64) -> Result<Vec<u8>, StoreError> {
        let size = self.size(path)?;
        if size > cap {
            return Err(StoreError::TooBig {
                path: path.into(),
                size,
                cap,
            });
        }
        let mut out = Vec::with_capacity(size as usize);
        self.read_chunks(path, &mut |_, bytes| {
            if (out.len() + bytes.len()) as u64 > cap {
                return Err(format!("{path} grew past {cap} bytes while read"));
            }
            out.extend_from_slice(bytes);
            Ok(())
        })?;
        Ok(out)
    }

    /// Streams the file at `path` to `f` in pieces of at most 16 KiB, each with its offset
    /// in the file, so a large image needs no buffer of its size. An error from `f` stops
    /// the read and is returned as [`StoreError::Callback`]. Returns the bytes read.
    pub fn read_chunks(&self, path: &str, f: &mut Chunks<'_>) -> Result<u64, StoreError> {
        let (dirs, name) = split(path)?;
        let name = name.ok_or_else(|| StoreError::IsADirectory(path.into()))?;
        let (vm, _) = self.parts()?;
        let dir = self.open_dirs(&dirs, path)?;
        let file = lookup(vm, dir, name).and_then(|found| {
            let entry = found.ok_or_else(|| StoreError::NotFound(path.into()))?.0;
            if entry.attributes.is_directory() {
                return Err(StoreError::IsADirectory(path.into()));
            }
            vm.open_file_in_dir(dir, &entry.name, Mode::ReadOnly)
                .map_err(|e| fs_err(e, path))
        });
        let _ = vm.close_dir(dir);
        let file = file?;
        let mut buf = vec![0u8; CHUNK];
        let mut offset = 0u64;
        let result = loop {
            match vm.read(file, &mut buf) {
                Ok(0) => break Ok(offset),
                Ok(n) => {
                    if let Err(e) = f(offset, &buf[..n]) {
                        break Err(StoreError::Callback(e));
                    }
                    offset += n as u64;
                }
                Err(e) => break Err(fs_err(e, path)),
            }
        };
        let _ = vm.close_file(file);
        result
    }

    /// Creates or replaces the file at `path` with `bytes`. The directories on the way must
    /// exist. An existing file is found by its long or 8.3 name; a new file needs an 8.3
    /// name (`WEB.TOM`, not `web.toml`).
    pub fn write(&mut self, path: &str, bytes: &[u8]) -> Result<(), StoreError> {
        let (dirs, name) = split(path)?;
        let name = name.ok_or_else(|| StoreError::IsADirectory(path.into()))?;
        if u32::try_from(bytes.len()).is_err() {
            return Err(StoreError::TooBig {
                path: path.into(),
                size: bytes.len() as u64,
                cap: u64::from(u32::MAX),
            });
        }
        let (vm, _) = self.parts()?;
        let dir = self.open_dirs(&dirs, path)?;
        let file = lookup(vm, dir, name).and_then(|found| {
            let short = match found {
                Some((e, _)) if e.attributes.is_directory() => {
                    return Err(StoreError::IsADirectory(path.into()))
                }
                Some((e, _)) => e.name,
                None => new_short_name(name)?,
            };
            vm.open_file_in_dir(dir, &short, Mode::ReadWriteCreateOrTruncate)
                .map_err(|e| fs_err(e, path))
        });
        let _ = vm.close_dir(dir);
        let file = file?;
        let written = vm.write(file, bytes).map_err(|e| fs_err(e, path));
        let closed = vm.close_file(file).map_err(|e| fs_err(e, path));
        written.and(closed)?;
        self.flush()
    }

    /// Creates the directory `path` (8.3 name); its parent must exist.
    pub fn create_dir(&mut self, path: &str) -> Result<(), StoreError> {
        let (dirs, name) = split(path)?;
        let name = name.ok_or_else(|| StoreError::BadName {
            name: path.into(),
            why: "the root directory exists already",
        })?;
        let (vm, _) = self.parts()?;
        let dir = self.open_dirs(&dirs, path)?;
        let made = lookup(vm, dir, name).and_then(|found| match found {
            Some((e, _)) if e.attributes.is_directory() => Ok(()),
            Some(_) => Err(StoreError::NotADirectory(path.into())),
            None => vm
                .make_dir_in_dir(dir, &new_short_name(name)?)
                .map_err(|e| fs_err(e, path)),
        });
        let _ = vm.close_dir(dir);
        made?;
        self.flush()
    }

    /// Removes the file at `path` (not a directory), its clusters and its long name.
    pub fn remove(&mut self, path: &str) -> Result<(), StoreError> {
        let (dirs, name) = split(path)?;
        let name = name.ok_or_else(|| StoreError::IsADirectory(path.into()))?;
        let (vm, _) = self.parts()?;
        let dir = self.open_dirs(&dirs, path)?;
        let removed = lookup(vm, dir, name).and_then(|found| {
            let (entry, _) = found.ok_or_else(|| StoreError::NotFound(path.into()))?;
            if entry.attributes.is_directory() {
                return Err(StoreError::IsADirectory(path.into()));
            }
            if entry.attributes.is_read_only() {
                return Err(StoreError::ReadOnly(path.into()));
            }
            vm.delete_file_in_dir(dir, &entry.name)
                .map_err(|e| fs_err(e, path))?;
            Ok(entry)
        });
        let _ = vm.close_dir(dir);
        let entry = removed?;
        // The crate only marks the short entry deleted: free the clusters and the long-name
        // entries here, with the volume closed so that its FAT state is read afresh after.
        let view = self.unmount()?;
        let fixed = {
            let mut dev = view.dev.borrow_mut();
            let g = self.geometry;
            match entry.entry_block.0.checked_sub(1) {
                Some(sector) => g
                    .entry_cluster(&mut *dev, sector, entry.entry_offset)
                    .and_then(|first| g.free_chain(&mut *dev, first))
                    .and_then(|_| {
                        g.delete_long_name(&mut *dev, sector, entry.entry_offset, entry.name.csum())
                    }),
                None => Ok(()),
            }
            .and_then(|_| dev.flush())
            .map_err(|e| StoreError::Io(format!("{e:?}")))
        };
        self.mount(view)?;
        fixed
    }

    /// The entries of the directory `path` (`""` or `/` for the root), without `.`, `..`
    /// and the volume label.
    pub fn list(&self, path: &str) -> Result<Vec<DirEntry>, StoreError> {
        let comps = components(path)?;
        let (vm, _) = self.parts()?;
        let dir = self.open_dirs(&comps, path)?;
        let mut storage = vec![0u8; LFN_BYTES];
        let mut lfn = LfnBuffer::new(&mut storage);
        let mut out = Vec::new();
        let listed = vm.iterate_dir_lfn(dir, &mut lfn, |e, long| {
            let short = e.name.to_string();
            if e.attributes.is_volume() || short == "." || short == ".." {
                return;
            }
            let is_dir = e.attributes.is_directory();
            out.push(DirEntry {
                name: long
                    .filter(|l| !l.is_empty())
                    .map_or_else(|| short.clone(), Into::into),
                short_name: short,
                size: if is_dir { 0 } else { u64::from(e.size) },
                is_dir,
            });
        });
        let _ = vm.close_dir(dir);
        listed.map_err(|e| fs_err(e, path))?;
        Ok(out)
    }

    fn flush(&mut self) -> Result<(), StoreError> {
        let (vm, _) = self.parts()?;
        let mut flushed = Ok(());
        // `VolumeManager::device` makes its closure return the time source type, so the
        // result goes out through `flushed`. The crate writes through (its cache is one
        // block, written back at once), so flushing the device is all that is left.
        vm.device(|view| {
            flushed = view
                .dev
                .get_mut()
                .flush()
                .map_err(|e| StoreError::Io(format!("{e:?}")));
            Clock::default()
        });
        flushed
    }

    /// Opens the directory reached by `comps` from the root (`path` is for messages).
    fn open_dirs(&self, comps: &[&str], path: &str) -> Result<RawDirectory, StoreError> {
        let (vm, volume) = self.parts()?;
        let mut dir = vm.open_root_dir(volume).map_err(|e| fs_err(e, path))?;
        for (i, comp) in comps.iter().enumerate() {
            let step = lookup(vm, dir, comp).and_then(|found| {
                let so_far = comps[..=i].join("/");
                match found {
                    None => Err(StoreError::NotFound(so_far)),
                    Some((e, _)) if !e.attributes.is_directory() => {
                        Err(StoreError::NotADirectory(so_far))
                    }
                    Some((e, _)) => vm.open_dir(dir, &e.name).map_err(|e| fs_err(e, path)),
                }
            });
            let _ = vm.close_dir(dir);
            dir = step?;
        }
        Ok(dir)
    }
}

fn closed() -> StoreError {
    StoreError::Io("the datastore could not be mounted again after a change".into())
}

/// The entry of `dir` whose long or 8.3 name is `name` (case-insensitive), with its long
/// name.
fn lookup<D: Blocks>(
    vm: &Vm<D>,
    dir: RawDirectory,
    name: &str,
) -> Result<Option<(RawEntry, Option<String>)>, StoreError> {
    let mut storage = vec![0u8; LFN_BYTES];
    let mut lfn = LfnBuffer::new(&mut storage);
    let mut found = None;
    vm.iterate_dir_lfn(dir, &mut lfn, |e, long| {
        if found.is_some() || e.attributes.is_volume() {
            return;
        }
        let long = long.filter(|l| !l.is_empty());
        let short = e.name.to_string();
        if same_name(&short, name) || long.is_some_and(|l| same_name(l, name)) {
            found = Some((e.clone(), long.map(String::from)));
        }
    })
    .map_err(|e| fs_err(e, name))?;
    Ok(found)
}

/// Case-insensitive name comparison (Unicode lower case, as FAT long names compare).
fn same_name(a: &str, b: &str) -> bool {
    a.chars()
        .flat_map(char::to_lowercase)
        .eq(b.chars().flat_map(char::to_lowercase))
}

/// The components of `path`, without empty ones; `.` and `..` are refused.
fn components(path: &str) -> Result<Vec<&str>, StoreError> {
    let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    if let Some(bad) = comps.iter().find(|c| **c == "." || **c == "..") {
        return Err(StoreError::BadName {
            name: path.into(),
            why: if *bad == "." {
                "`.` is not allowed in a datastore path"
            } else {
                "`..` is not allowed in a datastore path"
            },
        });
    }
    Ok(comps)
}

/// `path` as its directories and its last component (`None` for the root).
fn split(path: &str) -> Result<(Vec<&str>, Option<&str>), StoreError> {
    let mut comps = components(path)?;
    let last = comps.pop();
    Ok((comps, last))
}

/// The 8.3 name for a new file or directory `name`, or why it cannot be one.
fn new_short_name(name: &str) -> Result<ShortFileName, StoreError> {
    let bad = |why| StoreError::BadName {
        name: name.into(),
        why,
    };
    let (base, ext) = match name.split_once('.') {
        Some((b, e)) => (b, Some(e)),
        None => (name, None),
    };
    let legal = |s: &str| {
        s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"!#$%&'()-@^_`{}~".contains(&c))
    };
    if base.is_empty() || base.len() > 8 || ext.is_some_and(|e| e.is_empty() || e.len() > 3) {
        return Err(bad(
            "not an 8.3 name (up to 8 characters, a dot, up to 3): new datastore files need one",
        ));
    }
    if !legal(base) || !ext.is_none_or(legal) {
        return Err(bad(
            "not an 8.3 name (letters, digits and !#$%&'()-@^_`{}~ only): new datastore files need one",
        ));
    }
    ShortFileName::create_from_str(name).map_err(|_| bad("not an 8.3 name"))
}

fn fs_err<E: Debug>(e: FsError<E>, path: &str) -> StoreError {
    match e {
        FsError::NotFound => StoreError::NotFound(path.into()),
        FsError::DiskFull | FsError::NotEnoughSpace => StoreError::Full,
        FsError::ReadOnly => StoreError::ReadOnly(path.into()),
        FsError::OpenedDirAsFile | FsError::DeleteDirAsFile => {
            StoreError::IsADirectory(path.into())
        }
        FsError::OpenedFileAsDir => StoreError::NotADirectory(path.into()),
        FsError::FilenameError(_) => StoreError::BadName {
            name: path.into(),
            why: "not a valid FAT name",
        },
        FsError::DeviceError(e) => StoreError::Io(format!("{e:?}")),
        FsError::FormatError(w) => StoreError::Fs(w.into()),
        e => StoreError::Fs(format!("{e:?} ({path})")),
    }
}
