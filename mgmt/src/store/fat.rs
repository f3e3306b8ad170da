//! What the store checks and fixes below `embedded-sdmmc`: the boot sector is validated
//! before the crate sees it (the crate divides and subtracts with fields it trusts, so a
//! garbage sector could panic it), the partition is shown to the crate behind a one-entry
//! MBR (it only opens MBR volumes), and a removed file's first cluster and long-name entries
//! are freed (the crate marks only the short entry deleted).

use super::Blocks;
use core::cell::RefCell;
use embedded_sdmmc::{Block, BlockCount, BlockIdx};

/// The partition seen by `embedded-sdmmc`: block 0 is a made-up MBR with one FAT32 (LBA)
/// partition starting at block 1, and block `n + 1` is the partition's block `n`.
pub(super) struct MbrView<D> {
    pub(super) dev: RefCell<D>,
    /// Partition blocks shown (at most `u32::MAX - 1`: the MBR's fields are 32-bit).
    pub(super) blocks: u32,
}

/// A block-device failure or an access outside the partition.
#[derive(Debug)]
pub(super) enum ViewError<E> {
    /// The caller's device failed.
    Device(E),
    /// A block past the end of the partition was asked for (the field is read through
    /// `Debug`, in the error message).
    #[allow(dead_code)]
    OutOfRange(u32),
}

impl<D: Blocks> MbrView<D> {
    pub(super) fn new(dev: D) -> Self {
        let blocks = dev.blocks().min(u64::from(u32::MAX - 1)) as u32;
        Self {
            dev: RefCell::new(dev),
            blocks,
        }
    }

    fn mbr() -> Block {
        let mut b = Block::new();
        // One partition entry at 446: status 0, type 0x0C (FAT32 LBA), first LBA 1.
        b[446 + 4] = 0x0C;
        b[446 + 8..446 + 12].copy_from_slice(&1u32.to_le_bytes());
        b[510] = 0x55;
        b[511] = 0xAA;
        b
    }
}

impl<D: Blocks> embedded_sdmmc::BlockDevice for MbrView<D> {
    type Error = ViewError<D::Error>;

    fn read(&self, blocks: &mut [Block], start: BlockIdx) -> Result<(), Self::Error> {
        let mut dev = self.dev.borrow_mut();
        for (i, block) in blocks.iter_mut().enumerate() {
            let idx = u64::from(start.0) + i as u64;
            if idx == 0 {
                let mbr = Self::mbr();
                block.contents = mbr.contents;
                continue;
            }
            if idx > u64::from(self.blocks) {
                return Err(ViewError::OutOfRange(idx as u32));
            }
            dev.read(idx - 1, &mut block.contents)
                .map_err(ViewError::Device)?;
        }
        Ok(())
    }

    fn write(&self, blocks: &[Block], start: BlockIdx) -> Result<(), Self::Error> {
        let mut dev = self.dev.borrow_mut();
        for (i, block) in blocks.iter().enumerate() {
            let idx = u64::from(start.0) + i as u64;
            if idx == 0 || idx > u64::from(self.blocks) {
                return Err(ViewError::OutOfRange(idx as u32));
            }
            dev.write(idx - 1, &block.contents)
                .map_err(ViewError::Device)?;
        }
        Ok(())
    }

    fn num_blocks(&self) -> Result<BlockCount, Self::Error> {
        Ok(BlockCount(self.blocks + 1))
    }
}

/// FAT16 or FAT32.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FatKind {
    /// 4085 to 65524 clusters, 16-bit FAT entries, a fixed root directory.
    Fat16,
    /// 65525 clusters or more, 28-bit FAT entries.
    Fat32,
}

/// The layout of a FAT volume, from its boot sector (sectors relative to the partition).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Geometry {
    pub(super) kind: FatKind,
    pub(super) sectors_per_cluster: u32,
    pub(super) reserved: u32,
    pub(super) fats: u32,
    pub(super) fat_sectors: u32,
    /// First sector of the FAT16 root directory (0 on FAT32).
    pub(super) root_start: u32,
    /// First sector of cluster 2.
    pub(super) data_start: u32,
    pub(super) clusters: u32,
    /// The FAT32 FSInfo sector (0 on FAT16).
    pub(super) fs_info: u32,
}

fn u16_at(b: &[u8; 512], at: usize) -> u32 {
    u32::from(u16::from_le_bytes([b[at], b[at + 1]]))
}

fn u32_at(b: &[u8; 512], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl Geometry {
    /// Checks the boot sector of a partition of `blocks` sectors. The error says what is
    /// wrong, for the "no FAT file system" message.
    pub(super) fn parse(b: &[u8; 512], blocks: u64) -> Result<Self, &'static str> {
        if b[510] != 0x55 || b[511] != 0xAA {
            return Err("no boot sector signature");
        }
        if u16_at(b, 11) != 512 {
            return Err("sectors are not 512 bytes");
        }
        let spc = u32::from(b[13]);
        if spc == 0 || !spc.is_power_of_two() {
            return Err("bad sectors per cluster");
        }
        let reserved = u16_at(b, 14);
        let fats = u32::from(b[16]);
        if reserved == 0 || !(1..=2).contains(&fats) {
            return Err("bad reserved sectors or FAT count");
        }
        let root_entries = u16_at(b, 17);
        let total = match u16_at(b, 19) {
            0 => u32_at(b, 32),
            n => n,
        };
        if total == 0 || u64::from(total) > blocks {
            return Err("file system size does not fit the partition");
        }
        let fat_sectors = match u16_at(b, 22) {
            0 => u32_at(b, 36),
            n => n,
        };
        if fat_sectors == 0 {
            return Err("FAT size is 0");
        }
        let root_sectors = (root_entries * 32).div_ceil(512);
        let root_start = u64::from(reserved) + u64::from(fats) * u64::from(fat_sectors);
        let data_start = root_start + u64::from(root_sectors);
        if data_start >= u64::from(total) {
            return Err("no room for data");
        }
        let data_start = data_start as u32;
        let clusters = (total - data_start) / spc;
        let kind = if clusters < 4085 {
            return Err("FAT12 (a volume under about 4 MiB) is not supported");
        } else if clusters < 65525 {
            FatKind::Fat16
        } else {
            FatKind::Fat32
        };
        let entry_bytes = match kind {
            FatKind::Fat16 => 2,
            FatKind::Fat32 => 4,
        };
        if u64::from(fat_sectors) * 512 < (u64::from(clusters) + 2) * entry_bytes {
            return Err("the FAT is too small for the volume");
        }
        let mut fs_info = 0;
        if kind == FatKind::Fat32 {
            let root_cluster = u32_at(b, 44);
            fs_info = u16_at(b, 48);
            if u16_at(b, 42) != 0 || root_entries != 0 {
                return Err("unsupported FAT32 version");
            }
            if root_cluster < 2 || root_cluster - 2 >= clusters {
                return Err("bad root directory cluster");
            }
            if fs_info == 0 || fs_info >= reserved {
                return Err("bad FSInfo sector");
            }
        } else if root_entries == 0 {
            return Err("FAT16 without a root directory");
        }
        Ok(Self {
            kind,
            sectors_per_cluster: spc,
            reserved,
            fats,
            fat_sectors,
            root_start: if kind == FatKind::Fat16 {
                root_start as u32
            } else {
                0
            },
            data_start,
            clusters,
            fs_info,
        })
    }

    /// The first cluster named by the directory entry at `offset` of partition sector
    /// `sector` (deleted or not).
    pub(super) fn entry_cluster<D: Blocks>(
        &self,
        dev: &mut D,
        sector: u32,
        offset: u32,
    ) -> Result<u32, D::Error> {
        let mut buf = [0u8; 512];
        dev.read(u64::from(sector), &mut buf)?;
        let e = (offset as usize % 512) & !31;
        let lo = u16_at(&buf, e + 26);
        let hi = match self.kind {
            FatKind::Fat16 => 0,
            FatKind::Fat32 => u16_at(&buf, e + 20),
        };
        Ok(hi << 16 | lo)
    }

    /// Frees the cluster chain that starts at `first` in every FAT copy and adds the
    /// clusters freed to the FSInfo free count. Stops at the end mark, at a cluster outside
    /// the volume or a free one, and after as many steps as the volume has clusters (a
    /// looped chain). Returns the clusters freed.
    pub(super) fn free_chain<D: Blocks>(&self, dev: &mut D, first: u32) -> Result<u32, D::Error> {
        let entry_bytes = match self.kind {
            FatKind::Fat16 => 2u32,
            FatKind::Fat32 => 4,
        };
        // One FAT sector cached (`at` is its index within the FAT), written to every copy
        // when the walk leaves it.
        let mut buf = [0u8; 512];
        let mut at: Option<u32> = None;
        let mut dirty = false;
        let mut freed = 0u32;
        let mut cluster = first;
        while cluster >= 2 && cluster - 2 < self.clusters && freed < self.clusters {
            let off = cluster * entry_bytes;
            let sector = off / 512;
            if at != Some(sector) {
                if let (Some(old), true) = (at, dirty) {
                    self.write_fat_sector(dev, old, &buf)?;
                }
                dev.read(u64::from(self.reserved + sector), &mut buf)?;
                at = Some(sector);
                dirty = false;
            }
            let i = (off % 512) as usize;
            let next = if entry_bytes == 2 {
                let next = u16_at(&buf, i);
                buf[i..i + 2].copy_from_slice(&[0, 0]);
                next
            } else {
                let old = u32_at(&buf, i);
                buf[i..i + 4].copy_from_slice(&(old & 0xF000_0000).to_le_bytes());
                old & 0x0FFF_FFFF
            };
            if next == 0 {
                // Already free: the chain was broken; nothing more is ours.
                break;
            }
            dirty = true;
            freed += 1;
            cluster = next;
        }
        if let (Some(old), true) = (at, dirty) {
            self.write_fat_sector(dev, old, &buf)?;
        }
        if self.kind == FatKind::Fat32 && freed > 0 {
            let lba = u64::from(self.fs_info);
            dev.read(lba, &mut buf)?;
            let signed = u32_at(&buf, 0) == 0x4161_5252 && u32_at(&buf, 484) == 0x6141_7272;
            let free = u32_at(&buf, 488);
            if signed && free <= self.clusters {
                let free = (free + freed).min(self.clusters);
                buf[488..492].copy_from_slice(&free.to_le_bytes());
                dev.write(lba, &buf)?;
            }
        }
        Ok(freed)
    }

    fn write_fat_sector<D: Blocks>(
        &self,
        dev: &mut D,
        sector: u32,
        buf: &[u8; 512],
    ) -> Result<(), D::Error> {
        for copy in 0..self.fats {
            dev.write(
                u64::from(self.reserved + copy * self.fat_sectors + sector),
                buf,
            )?;
        }
        Ok(())
    }

    /// Marks deleted the long-name entries that belong to the short entry at `offset` of
    /// partition sector `sector` (its checksum `csum`): the slots right before it, in the
    /// same sector or the one before when that is in the same cluster (or the FAT16 root).
    pub(super) fn delete_long_name<D: Blocks>(
        &self,
        dev: &mut D,
        sector: u32,
        offset: u32,
        csum: u8,
    ) -> Result<(), D::Error> {
        let mut buf = [0u8; 512];
        let mut sector = sector;
        let mut slot = offset / 32;
        dev.read(u64::from(sector), &mut buf)?;
        loop {
            if slot == 0 {
                let first_of_run = if self.root_start != 0 && sector < self.data_start {
                    sector <= self.root_start
                } else {
                    sector < self.data_start
                        || (sector - self.data_start).is_multiple_of(self.sectors_per_cluster)
                };
                if first_of_run {
                    return Ok(());
                }
                sector -= 1;
                slot = 16;
                dev.read(u64::from(sector), &mut buf)?;
            }
            slot -= 1;
            let e = (slot * 32) as usize;
            let is_lfn = buf[e + 11] & 0x3F == 0x0F;
            if !is_lfn || buf[e] == 0xE5 || buf[e] == 0 || buf[e + 13] != csum {
                return Ok(());
            }
            let last = buf[e] & 0x40 != 0;
            buf[e] = 0xE5;
            dev.write(u64::from(sector), &buf)?;
            if last {
                return Ok(());
            }
        }
    }
}
