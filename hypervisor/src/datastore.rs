//! The datastore: the machine's own disks, the GPT partitions on them, and who uses which.
//!
//! Disk drivers [`register`] each disk they bring up (an NVMe namespace, an AHCI port);
//! the datastore reads its GUID partition table (both header CRCs and the entry array's
//! CRC checked, the backup header tried when the primary is damaged). A VM's disk is then
//! opened by partition label: [`open`] gives a [`Partition`] (bounds-checked, read-only if
//! asked) and records the holder; a second read-write open of a partition, or any open of a
//! partition someone writes, is refused with the label and the holder; [`release`] ends a
//! hold. The runtime calls the free functions (one datastore for the machine); host tests
//! use a [`Datastore`] of their own.
//!
//! ```
//! use hypervisor::block::{MemDisk, SharedDisk};
//! use hypervisor::datastore::{write_gpt, Datastore, DatastoreError, DiskInfo};
//! use hypervisor::sync::Mutex;
//! use alloc_crate::sync::Arc;
//! # extern crate alloc as alloc_crate;
//!
//! let mut mem = MemDisk::new(16384); // 8 MiB
//! write_gpt(&mut mem, 512, &[("vm0-root", 2 << 20), ("vm0-data", 1 << 20)], 1).unwrap();
//! let disk: SharedDisk = Arc::new(Mutex::new(mem));
//! let mut store = Datastore::new();
//! store.register("nvme0", DiskInfo { model: "test".into(), block_size: 512 }, disk).unwrap();
//! let root = store.open("vm0-root", false, "vm0").unwrap();
//! assert!(matches!(store.open("vm0-root", false, "vm1"), Err(DatastoreError::Busy { .. })));
//! store.release("vm0-root", "vm0");
//! ```
#![deny(unsafe_code)]

use crate::block::{BlockDevice, BlockError, Partition, SharedDisk, SECTOR};
use crate::sync::Mutex;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use gpt_disk_io::gpt_disk_types::{
    guid, BlockSize, GptHeader, GptPartitionEntry, GptPartitionEntryArray, GptPartitionName, Guid,
    Lba, LbaLe, U32Le,
};
use gpt_disk_io::{BlockIo, Disk, DiskError};

/// GPT type of the partitions [`write_gpt`] makes: "Linux filesystem data".
pub const LINUX_DATA: Guid = guid!("0fc63daf-8483-4772-8e79-3d69d8477de4");

/// Most partition-entry bytes read (128 entries of 128 bytes is the usual 16 KiB).
const MAX_ENTRY_BYTES: u64 = 1 << 20;

/// Why a datastore request failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DatastoreError {
    /// No disk has a partition with this label.
    #[error("no partition labelled \"{0}\" on any disk")]
    NotFound(String),
    /// Two partitions carry the label.
    #[error("partition label \"{label}\" is on both {first} and {second}; rename one")]
    Ambiguous {
        /// The label.
        label: String,
        /// One disk.
        first: String,
        /// The other.
        second: String,
    },
    /// The partition is in use in a way that excludes this open.
    #[error("partition \"{label}\" is already open {mode} by {holder}")]
    Busy {
        /// The label.
        label: String,
        /// Who holds it.
        holder: String,
        /// `read-write` or `read-only`.
        mode: &'static str,
    },
    /// A disk of this name is registered already.
    #[error("a disk named {0} is registered already")]
    Duplicate(String),
    /// The disk's partition table cannot be used.
    #[error("{disk}: {why}")]
    Table {
        /// The disk.
        disk: String,
        /// What is wrong.
        why: GptError,
    },
}

/// What is wrong with a disk's GUID partition table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GptError {
    /// Neither header has the `EFI PART` signature.
    #[error("no GPT (no `EFI PART` signature at LBA 1 or at the last LBA)")]
    NoTable,
    /// A header's CRC32 does not match.
    #[error("GPT header at LBA {0} fails its CRC32")]
    HeaderCrc(u64),
    /// The entry array's CRC32 does not match its header.
    #[error("GPT partition entries at LBA {0} fail their CRC32")]
    EntriesCrc(u64),
    /// Header fields that make no sense (entry size, count, LBAs outside the disk).
    #[error("GPT header at LBA {0} is malformed")]
    Malformed(u64),
    /// A partition reaches outside the disk's usable area.
    #[error("GPT partition {0} lies outside the disk's usable blocks")]
    OutOfRange(u32),
    /// The disk failed a read.
    #[error("reading the GPT: {0}")]
    Io(BlockError),
    /// The disk's block size is not a multiple of 512 bytes.
    #[error("block size {0} is not a multiple of 512 bytes")]
    BlockSize(u32),
}

/// A partition found in a disk's GPT.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GptPartition {
    /// Its label (GPT partition name).
    pub label: String,
    /// First 512-byte sector on the disk.
    pub start: u64,
    /// Length in 512-byte sectors.
    pub sectors: u64,
    /// Partition type GUID.
    pub type_guid: Guid,
    /// Unique partition GUID.
    pub guid: Guid,
}

/// What a driver tells the datastore about a disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskInfo {
    /// Model, e.g. the NVMe controller's model number.
    pub model: String,
    /// Logical block size in bytes (the GPT's LBA size).
    pub block_size: u32,
}

/// A registered disk.
pub struct DiskEntry {
    /// Name, e.g. `nvme0`.
    pub name: String,
    /// Model and block size.
    pub info: DiskInfo,
    /// Size in 512-byte sectors.
    pub sectors: u64,
    /// Its partitions, or why they could not be read.
    pub table: Result<Vec<GptPartition>, GptError>,
    disk: SharedDisk,
}

struct Hold {
    disk: usize,
    start: u64,
    label: String,
    holder: String,
    read_only: bool,
}

/// The disks and the partitions in use.
#[derive(Default)]
pub struct Datastore {
    disks: Vec<DiskEntry>,
    holds: Vec<Hold>,
}

/// `BlockIo` over a 512-byte-sector block device, in the disk's own block size.
struct Io<'a> {
    dev: &'a mut dyn BlockDevice,
    block: u32,
}

impl BlockIo for Io<'_> {
    type Error = BlockError;

    fn block_size(&self) -> BlockSize {
        BlockSize::new(self.block).unwrap_or(BlockSize::BS_512)
    }

    fn num_blocks(&mut self) -> Result<u64, BlockError> {
        Ok(self.dev.sectors() / u64::from(self.block / SECTOR as u32))
    }

    fn read_blocks(&mut self, start: Lba, dst: &mut [u8]) -> Result<(), BlockError> {
        let per = u64::from(self.block) / SECTOR as u64;
        self.dev.read(start.0.saturating_mul(per), dst)
    }

    fn write_blocks(&mut self, start: Lba, src: &[u8]) -> Result<(), BlockError> {
        let per = u64::from(self.block) / SECTOR as u64;
        self.dev.write(start.0.saturating_mul(per), src)
    }

    fn flush(&mut self) -> Result<(), BlockError> {
        self.dev.flush()
    }
}

fn io_err(e: DiskError<BlockError>) -> GptError {
    match e {
        DiskError::Io(e) => GptError::Io(e),
        _ => GptError::Malformed(0),
    }
}

/// Reads and checks the GPT of `dev` (logical blocks of `block` bytes): the primary header
/// and its entries, or the backup ones when the primary is damaged.
pub fn read_gpt(dev: &mut dyn BlockDevice, block: u32) -> Result<Vec<GptPartition>, GptError> {
    if block == 0 || !block.is_multiple_of(SECTOR as u32) {
        return Err(GptError::BlockSize(block));
    }
    let blocks = dev.sectors() / u64::from(block / SECTOR as u32);
    if blocks < 3 {
        return Err(GptError::NoTable);
    }
    let mut disk = Disk::new(Io { dev, block }).map_err(io_err)?;
    let mut buf = vec![0u8; block as usize];
    let primary = disk.read_primary_gpt_header(&mut buf).map_err(io_err)?;
    match checked_table(&mut disk, &primary, 1, block, blocks) {
        Ok(parts) => Ok(parts),
        Err(first) => {
            let backup = disk.read_secondary_gpt_header(&mut buf).map_err(io_err)?;
            if !backup.is_signature_valid() {
                return Err(first);
            }
            checked_table(&mut disk, &backup, blocks - 1, block, blocks).map_err(|e| {
                if first == GptError::NoTable {
                    e
                } else {
                    first
                }
            })
        }
    }
}

fn checked_table(
    disk: &mut Disk<Io<'_>>,
    h: &GptHeader,
    at: u64,
    block: u32,
    blocks: u64,
) -> Result<Vec<GptPartition>, GptError> {
    if !h.is_signature_valid() {
        return Err(GptError::NoTable);
    }
    if h.header_size.to_u32() < 92 || h.header_size.to_u32() > block {
        return Err(GptError::Malformed(at));
    }
    if h.calculate_header_crc32() != h.header_crc32 {
        return Err(GptError::HeaderCrc(at));
    }
    let (first, last) = (h.first_usable_lba.to_u64(), h.last_usable_lba.to_u64());
    let entries = u64::from(h.number_of_partition_entries.to_u32())
        * u64::from(h.size_of_partition_entry.to_u32());
    if h.my_lba.to_u64() != at || first > last || last >= blocks || entries > MAX_ENTRY_BYTES {
        return Err(GptError::Malformed(at));
    }
    let layout = h
        .get_partition_entry_array_layout()
        .map_err(|_| GptError::Malformed(at))?;
    let bs = BlockSize::new(block).ok_or(GptError::BlockSize(block))?;
    let len = layout
        .num_bytes_rounded_to_block_as_usize(bs)
        .ok_or(GptError::Malformed(at))?;
    let mut storage = vec![0u8; len];
    let array = disk
        .read_gpt_partition_entry_array(layout, &mut storage)
        .map_err(io_err)?;
    if array.calculate_crc32() != h.partition_entry_array_crc32 {
        return Err(GptError::EntriesCrc(layout.start_lba.to_u64()));
    }
    let per = u64::from(block) / SECTOR as u64;
    let mut parts = Vec::new();
    for i in 0..layout.num_entries {
        let Some(e) = array.get_partition_entry(i) else {
            continue;
        };
        if !e.is_used() {
            continue;
        }
        let range = e.lba_range().ok_or(GptError::OutOfRange(i))?;
        let (s, end) = (range.start().to_u64(), range.end().to_u64());
        if s < first || end > last {
            return Err(GptError::OutOfRange(i));
        }
        parts.push(GptPartition {
            label: e.name.to_string(),
            start: s * per,
            sectors: (end - s + 1) * per,
            type_guid: e.partition_type_guid.0,
            guid: e.unique_partition_guid,
        });
    }
    Ok(parts)
}

/// Writes a protective MBR and a GPT (primary and backup) to `dev` (logical blocks of
/// `block` bytes) with one partition per `(label, bytes)`, in order, 1 MiB aligned, of
/// type [`LINUX_DATA`]. GUIDs are derived from `seed` (the same seed gives the same disk).
/// Returns each partition's first 512-byte sector and length.
pub fn write_gpt(
    dev: &mut dyn BlockDevice,
    block: u32,
    parts: &[(&str, u64)],
    seed: u64,
) -> Result<Vec<(u64, u64)>, GptError> {
    let bs = BlockSize::new(block)
        .filter(|_| block.is_multiple_of(SECTOR as u32))
        .ok_or(GptError::BlockSize(block))?;
    let per = u64::from(block) / SECTOR as u64;
    let blocks = dev.sectors() / per;
    let entry_blocks = (128 * 128u64).div_ceil(u64::from(block));
    let first_usable = 2 + entry_blocks;
    let last_usable = blocks
        .checked_sub(2 + entry_blocks)
        .ok_or(GptError::Malformed(0))?;
    let align = (1u64 << 20) / u64::from(block);
    let guid_of = |n: u64| {
        let mut b = [0u8; 16];
        let x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15).wrapping_add(n);
        b[..8].copy_from_slice(&x.to_le_bytes());
        b[8..].copy_from_slice(&(x ^ 0x5bd1_e995).rotate_left(17).to_le_bytes());
        Guid::from_random_bytes(b)
    };
    let mut header = GptHeader {
        my_lba: LbaLe::from_u64(1),
        alternate_lba: LbaLe::from_u64(blocks - 1),
        first_usable_lba: LbaLe::from_u64(first_usable),
        last_usable_lba: LbaLe::from_u64(last_usable),
        disk_guid: guid_of(0),
        partition_entry_lba: LbaLe::from_u64(2),
        number_of_partition_entries: U32Le::from_u32(128),
        ..GptHeader::default()
    };
    let layout = header
        .get_partition_entry_array_layout()
        .map_err(|_| GptError::Malformed(1))?;
    let mut storage = vec![0u8; layout.num_bytes_rounded_to_block_as_usize(bs).unwrap_or(0)];
    let mut array = GptPartitionEntryArray::new(layout, bs, &mut storage)
        .map_err(|_| GptError::Malformed(1))?;
    let mut next = first_usable.div_ceil(align) * align;
    let mut out = Vec::new();
    for (i, (label, bytes)) in parts.iter().enumerate() {
        let n = bytes.div_ceil(u64::from(block));
        let end = next + n - 1;
        if n == 0 || end > last_usable {
            return Err(GptError::OutOfRange(i as u32));
        }
        let mut name = GptPartitionName::default();
        for (j, c) in label.chars().take(35).enumerate() {
            name.set_char(j, c).map_err(|_| GptError::Malformed(1))?;
        }
        let entry = array
            .get_partition_entry_mut(i as u32)
            .ok_or(GptError::OutOfRange(i as u32))?;
        *entry = GptPartitionEntry {
            partition_type_guid: gpt_disk_io::gpt_disk_types::GptPartitionType(LINUX_DATA),
            unique_partition_guid: guid_of(i as u64 + 1),
            starting_lba: LbaLe::from_u64(next),
            ending_lba: LbaLe::from_u64(end),
            name,
            ..GptPartitionEntry::default()
        };
        out.push((next * per, n * per));
        next = (end + 1).div_ceil(align) * align;
    }
    header.partition_entry_array_crc32 = array.calculate_crc32();
    header.update_header_crc32();
    let mut backup = header;
    backup.my_lba = header.alternate_lba;
    backup.alternate_lba = header.my_lba;
    backup.partition_entry_lba = LbaLe::from_u64(blocks - 1 - entry_blocks);
    backup.update_header_crc32();
    let mut disk = Disk::new(Io { dev, block }).map_err(io_err)?;
    let mut buf = vec![0u8; block as usize];
    disk.write_protective_mbr(&mut buf).map_err(io_err)?;
    disk.write_primary_gpt_header(&header, &mut buf)
        .map_err(io_err)?;
    disk.write_gpt_partition_entry_array(&array)
        .map_err(io_err)?;
    array.set_start_lba(backup.partition_entry_lba.into());
    disk.write_gpt_partition_entry_array(&array)
        .map_err(io_err)?;
    disk.write_secondary_gpt_header(&backup, &mut buf)
        .map_err(io_err)?;
    disk.flush().map_err(io_err)?;
    Ok(out)
}

impl Datastore {
    /// No disks.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a disk a driver brought up and reads its partition table. A disk whose table
    /// is unusable is kept (listed with the reason) but has no partitions to open.
    pub fn register(
        &mut self,
        name: &str,
        info: DiskInfo,
        disk: SharedDisk,
    ) -> Result<&DiskEntry, DatastoreError> {
        if self.disks.iter().any(|d| d.name == name) {
            return Err(DatastoreError::Duplicate(name.into()));
        }
        let (sectors, table) = {
            let mut d = disk.lock();
            (d.sectors(), read_gpt(&mut *d, info.block_size))
        };
        self.disks.push(DiskEntry {
            name: name.into(),
            info,
            sectors,
            table,
            disk,
        });
        Ok(&self.disks[self.disks.len() - 1])
    }

    /// The registered disks.
    pub fn disks(&self) -> &[DiskEntry] {
        &self.disks
    }

    /// Opens the partition labelled `label` for `holder` (a VM's name, say). Any number of
    /// read-only holds may coexist; a read-write hold excludes every other hold.
    pub fn open(
        &mut self,
        label: &str,
        read_only: bool,
        holder: &str,
    ) -> Result<Partition, DatastoreError> {
        let mut found: Option<(usize, &GptPartition)> = None;
        for (i, d) in self.disks.iter().enumerate() {
            let Ok(parts) = &d.table else { continue };
            for p in parts.iter().filter(|p| p.label == label) {
                if let Some((j, _)) = found {
                    return Err(DatastoreError::Ambiguous {
                        label: label.into(),
                        first: self.disks[j].name.clone(),
                        second: d.name.clone(),
                    });
                }
                found = Some((i, p));
            }
        }
        let (disk, part) = found.ok_or_else(|| DatastoreError::NotFound(label.into()))?;
        let (start, sectors) = (part.start, part.sectors);
        if let Some(h) = self
            .holds
            .iter()
            .find(|h| h.disk == disk && h.start == start && (!read_only || !h.read_only))
        {
            return Err(DatastoreError::Busy {
                label: label.into(),
                holder: h.holder.clone(),
                mode: if h.read_only {
                    "read-only"
                } else {
                    "read-write"
                },
            });
        }
        let p = Partition::new(self.disks[disk].disk.clone(), start, sectors, read_only).ok_or(
            DatastoreError::Table {
                disk: self.disks[disk].name.clone(),
                why: GptError::OutOfRange(0),
            },
        )?;
        self.holds.push(Hold {
            disk,
            start,
            label: label.into(),
            holder: holder.into(),
            read_only,
        });
        Ok(p)
    }

    /// Ends `holder`'s hold on `label` (its [`Partition`] should be dropped with it).
    /// Returns false if it held none.
    pub fn release(&mut self, label: &str, holder: &str) -> bool {
        let before = self.holds.len();
        if let Some(i) = self
            .holds
            .iter()
            .position(|h| h.label == label && h.holder == holder)
        {
            self.holds.remove(i);
        }
        self.holds.len() != before
    }
}

static STORE: Mutex<Datastore> = Mutex::new(Datastore {
    disks: Vec::new(),
    holds: Vec::new(),
});

/// Registers a disk with the machine's datastore (called by disk drivers as they probe).
pub fn register(name: &str, info: DiskInfo, disk: SharedDisk) -> Result<(), DatastoreError> {
    STORE.lock().register(name, info, disk).map(|_| ())
}

/// Opens a partition of the machine's datastore by label: see [`Datastore::open`].
pub fn open(label: &str, read_only: bool, holder: &str) -> Result<Partition, DatastoreError> {
    STORE.lock().open(label, read_only, holder)
}

/// Ends a hold on a partition of the machine's datastore: see [`Datastore::release`].
pub fn release(label: &str, holder: &str) -> bool {
    STORE.lock().release(label, holder)
}

/// Calls `f` with the machine's datastore (listing disks for the console).
pub fn with<R>(f: impl FnOnce(&Datastore) -> R) -> R {
    f(&STORE.lock())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::MemDisk;
    use alloc::sync::Arc;

    const MIB: u64 = 1 << 20;

    fn info(block_size: u32) -> DiskInfo {
        DiskInfo {
            model: "mem".into(),
            block_size,
        }
    }

    fn formatted(block: u32) -> (MemDisk, Vec<(u64, u64)>) {
        let mut d = MemDisk::new(64 * MIB / 512);
        let at = write_gpt(
            &mut d,
            block,
            &[("vm0-root", 32 * MIB), ("vm0-data", 16 * MIB)],
            7,
        )
        .unwrap();
        (d, at)
    }

    fn shared(d: MemDisk) -> Arc<Mutex<MemDisk>> {
        Arc::new(Mutex::new(d))
    }

    #[test]
    fn the_table_written_is_read_back_with_labels_and_sizes() {
        for block in [512, 4096] {
            let (mut d, at) = formatted(block);
            let parts = read_gpt(&mut d, block).unwrap();
            let got: Vec<_> = parts
                .iter()
                .map(|p| (p.label.as_str(), p.start, p.sectors))
                .collect();
            assert_eq!(
                got,
                [
                    ("vm0-root", at[0].0, 32 * MIB / 512),
                    ("vm0-data", at[1].0, 16 * MIB / 512)
                ]
            );
            assert_eq!(at[0].0, MIB / 512, "1 MiB aligned");
            assert!(parts.iter().all(|p| p.type_guid == LINUX_DATA));
        }
    }

    #[test]
    fn a_damaged_primary_header_falls_back_to_the_backup() {
        let (mut d, _) = formatted(512);
        let mut s = d.sector(1).to_vec();
        s[40] ^= 1; // first usable LBA: the CRC no longer matches
        d.write(1, &s).unwrap();
        assert_eq!(read_gpt(&mut d, 512).unwrap().len(), 2);
        // Both headers damaged: the primary's fault is reported.
        let last = d.sectors() - 1;
        let mut s = d.sector(last).to_vec();
        s[40] ^= 1;
        d.write(last, &s).unwrap();
        assert_eq!(read_gpt(&mut d, 512), Err(GptError::HeaderCrc(1)));
    }

    #[test]
    fn a_damaged_entry_array_is_refused() {
        let (mut d, _) = formatted(512);
        let mut s = d.sector(2).to_vec();
        s[56] ^= 0x20; // a letter of the first label
        d.write(2, &s).unwrap();
        let last = d.sectors() - 1;
        d.write(last, &[0; 512]).unwrap(); // and no backup
        assert_eq!(read_gpt(&mut d, 512), Err(GptError::EntriesCrc(2)));
        assert_eq!(read_gpt(&mut MemDisk::new(64), 512), Err(GptError::NoTable));
    }

    #[test]
    fn open_by_label_reaches_only_that_partition() {
        let (d, at) = formatted(512);
        let d = shared(d);
        let mut store = Datastore::new();
        let e = store.register("nvme0", info(512), d.clone()).unwrap();
        assert_eq!(e.sectors, 64 * MIB / 512);
        let mut p = store.open("vm0-data", false, "vm0").unwrap();
        assert_eq!(p.sectors(), 16 * MIB / 512);
        p.write(0, &[0xab; 512]).unwrap();
        assert_eq!(d.lock().sector(at[1].0)[0], 0xab);
        assert!(p.write(16 * MIB / 512, &[0; 512]).is_err());
        assert_eq!(
            store.open("nope", true, "vm0").err(),
            Some(DatastoreError::NotFound("nope".into()))
        );
    }

    #[test]
    fn a_second_read_write_open_is_refused_naming_the_holder_until_released() {
        let (d, _) = formatted(512);
        let mut store = Datastore::new();
        store.register("nvme0", info(512), shared(d)).unwrap();
        let _p = store.open("vm0-root", false, "vm0").unwrap();
        let err = store.open("vm0-root", false, "vm1").err().unwrap();
        assert_eq!(
            err.to_string(),
            "partition \"vm0-root\" is already open read-write by vm0"
        );
        assert!(store.open("vm0-root", true, "vm1").is_err());
        assert!(
            store.open("vm0-data", false, "vm1").is_ok(),
            "another partition"
        );
        assert!(!store.release("vm0-root", "vm1"));
        assert!(store.release("vm0-root", "vm0"));
        assert!(store.open("vm0-root", true, "vm1").is_ok());
        assert!(store.open("vm0-root", true, "vm2").is_ok(), "readers share");
        assert!(matches!(
            store.open("vm0-root", false, "vm3"),
            Err(DatastoreError::Busy {
                mode: "read-only",
                ..
            })
        ));
        let ro = store.open("vm0-root", true, "vm4");
        assert_eq!(
            ro.map(|mut p| p.write(0, &[0; 512])).ok(),
            Some(Err(BlockError::ReadOnly))
        );
    }

    #[test]
    fn the_same_label_on_two_disks_is_ambiguous_and_names_are_unique() {
        let mut store = Datastore::new();
        store
            .register("nvme0", info(512), shared(formatted(512).0))
            .unwrap();
        store
            .register("nvme1", info(4096), shared(formatted(4096).0))
            .unwrap();
        assert!(matches!(
            store.open("vm0-root", true, "x"),
            Err(DatastoreError::Ambiguous { .. })
        ));
        assert!(matches!(
            store.register("nvme0", info(512), shared(MemDisk::new(8))),
            Err(DatastoreError::Duplicate(_))
        ));
        let e = store
            .register("blank", info(512), shared(MemDisk::new(64)))
            .unwrap();
        assert_eq!(e.table, Err(GptError::NoTable));
    }
}
