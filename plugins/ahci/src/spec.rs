//! What AHCI 1.3.1 and ATA/ATAPI-8 (ACS) fix, as plain functions: register fields, the
//! command header, the H2D register FIS, PRDTs, IDENTIFY DEVICE data and how the board's
//! quirks change the driver's plan. No hardware access; host-tested.

use alloc::string::String;
use alloc::vec::Vec;
use plugin_quirks_storage::StorageConfig;

/// Generic host control registers (AHCI 3.1).
pub mod reg {
    /// Host capabilities.
    pub const CAP: usize = 0x00;
    /// Global host control.
    pub const GHC: usize = 0x04;
    /// Interrupt status (one bit a port).
    pub const IS: usize = 0x08;
    /// Ports implemented.
    pub const PI: usize = 0x0c;
    /// Version.
    pub const VS: usize = 0x10;
}

/// Port registers, offsets inside a port's 0x80-byte block (AHCI 3.3).
pub mod px {
    /// Command list base address, low dword (1 KiB aligned).
    pub const CLB: usize = 0x00;
    /// Command list base address, high dword.
    pub const CLBU: usize = 0x04;
    /// Received-FIS base address, low dword (256-byte aligned).
    pub const FB: usize = 0x08;
    /// Received-FIS base address, high dword.
    pub const FBU: usize = 0x0c;
    /// Interrupt status (write 1 to clear).
    pub const IS: usize = 0x10;
    /// Interrupt enable.
    pub const IE: usize = 0x14;
    /// Command and status.
    pub const CMD: usize = 0x18;
    /// Task file data: ATA status (7:0) and error (15:8).
    pub const TFD: usize = 0x20;
    /// Signature of the attached device.
    pub const SIG: usize = 0x24;
    /// SStatus (SCR0).
    pub const SSTS: usize = 0x28;
    /// SControl (SCR2).
    pub const SCTL: usize = 0x2c;
    /// SError (SCR1, write 1 to clear).
    pub const SERR: usize = 0x30;
    /// Commands issued.
    pub const CI: usize = 0x38;
}

/// Byte offset of port `port`'s register `off`.
pub const fn port_reg(port: u32, off: usize) -> usize {
    0x100 + 0x80 * port as usize + off
}

/// GHC.HR: HBA reset.
pub const GHC_HR: u32 = 1;
/// GHC.IE: interrupts enabled.
pub const GHC_IE: u32 = 1 << 1;
/// GHC.AE: AHCI enable.
pub const GHC_AE: u32 = 1 << 31;

/// PxCMD.ST: start processing the command list.
pub const CMD_ST: u32 = 1;
/// PxCMD.SUD: spin-up device.
pub const CMD_SUD: u32 = 1 << 1;
/// PxCMD.POD: power on device.
pub const CMD_POD: u32 = 1 << 2;
/// PxCMD.CLO: command list override.
pub const CMD_CLO: u32 = 1 << 3;
/// PxCMD.FRE: FIS receive enable.
pub const CMD_FRE: u32 = 1 << 4;
/// PxCMD.FR: FIS receive running.
pub const CMD_FR: u32 = 1 << 14;
/// PxCMD.CR: command list running.
pub const CMD_CR: u32 = 1 << 15;

/// PxIS bits that mean the command failed (Linux `PORT_IRQ_ERROR`): task file error,
/// host bus fatal, host bus data, interface fatal and non-fatal, overflow, unknown FIS.
pub const IS_ERRORS: u32 =
    (1 << 30) | (1 << 29) | (1 << 28) | (1 << 27) | (1 << 26) | (1 << 24) | (1 << 4);
/// PxIS.TFES: task file error status.
pub const IS_TFES: u32 = 1 << 30;

/// ATA status: error.
pub const ATA_ERR: u32 = 1;
/// ATA status: data request.
pub const ATA_DRQ: u32 = 1 << 3;
/// ATA status: busy.
pub const ATA_BSY: u32 = 1 << 7;

/// PxSSTS.DET: device detected, communication not established.
pub const DET_DETECTED: u32 = 1;
/// PxSSTS.DET: device present and communication established.
pub const DET_PRESENT: u32 = 3;
/// PxSIG of an ATA disk.
pub const SIG_ATA: u32 = 0x0000_0101;

/// ATA commands (ACS-3).
pub mod ata {
    /// IDENTIFY DEVICE.
    pub const IDENTIFY: u8 = 0xec;
    /// READ DMA EXT.
    pub const READ_DMA_EXT: u8 = 0x25;
    /// WRITE DMA EXT.
    pub const WRITE_DMA_EXT: u8 = 0x35;
    /// FLUSH CACHE EXT.
    pub const FLUSH_CACHE_EXT: u8 = 0xea;
    /// SET FEATURES.
    pub const SET_FEATURES: u8 = 0xef;
    /// SET FEATURES subcommand: disable the volatile write cache.
    pub const FEATURE_DISABLE_WRITE_CACHE: u8 = 0x82;
}

/// Most sectors one READ/WRITE DMA EXT moves (a count of 0 would mean 65536).
pub const MAX_SECTORS_PER_COMMAND: u64 = 0xffff;
/// Most bytes one PRDT entry describes (DBC is 22 bits, byte count - 1).
pub const PRD_MAX_BYTES: u64 = 4 << 20;

/// Where the port's structures sit in its one 4 KiB DMA page (4 KiB aligned): the
/// command list (1 KiB aligned, 32 headers), the received-FIS area (256-byte aligned)
/// and the command table of slot 0 (128-byte aligned).
pub mod layout {
    /// Command list.
    pub const CLB: u64 = 0x000;
    /// Received-FIS area.
    pub const FB: u64 = 0x400;
    /// Command table of slot 0.
    pub const CTBA: u64 = 0x800;
    /// Offset of the PRDT inside a command table.
    pub const PRDT: u64 = 0x80;
    /// PRDT entries that fit the page after the table's header.
    pub const MAX_PRDS: u64 = (0x1000 - CTBA - PRDT) / 16;
    /// Size of the page.
    pub const SIZE: u64 = 0x1000;
}

/// What CAP says (AHCI 3.1.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cap {
    /// Ports the HBA has (NP + 1).
    pub ports: u32,
    /// Command slots a port has (NCS + 1).
    pub slots: u32,
    /// 64-bit addressing (S64A).
    pub s64a: bool,
    /// Command list override supported (SCLO).
    pub sclo: bool,
    /// Staggered spin-up: software spins each port up (SSS).
    pub sss: bool,
}

impl Cap {
    /// Decodes CAP.
    pub fn decode(cap: u32) -> Self {
        Self {
            ports: (cap & 0x1f) + 1,
            slots: ((cap >> 8) & 0x1f) + 1,
            s64a: cap & (1 << 31) != 0,
            sclo: cap & (1 << 24) != 0,
            sss: cap & (1 << 27) != 0,
        }
    }
}

/// A 32-byte command header (AHCI 4.2.2) for a command whose FIS is `fis_dwords` long,
/// with `prdtl` PRDT entries and its table at `ctba`; `write` is host-to-device data.
pub fn command_header(fis_dwords: u32, write: bool, prdtl: u16, ctba: u64) -> [u8; 32] {
    let dw0 = (fis_dwords & 0x1f) | (u32::from(write) << 6) | (u32::from(prdtl) << 16);
    let mut h = [0u8; 32];
    h[0..4].copy_from_slice(&dw0.to_le_bytes());
    // DW1 (PRDBC) is zero: the HBA counts the bytes it moved into it.
    h[8..12].copy_from_slice(&(ctba as u32).to_le_bytes());
    h[12..16].copy_from_slice(&((ctba >> 32) as u32).to_le_bytes());
    h
}

/// A Register Host-to-Device FIS (SATA 3.x 10.5.6, type 0x27) issuing `command` with a
/// 48-bit `lba`, a sector `count` and `features`.
pub fn h2d_fis(command: u8, lba: u64, count: u16, features: u16) -> [u8; 20] {
    let l = lba.to_le_bytes();
    let [c0, c1] = count.to_le_bytes();
    let [f0, f1] = features.to_le_bytes();
    [
        0x27, 0x80, // C: this FIS carries a command
        command, f0, l[0], l[1], l[2], 0x40, // device: LBA mode
        l[3], l[4], l[5], f1, c0, c1, 0, // ICC
        0, // control
        0, 0, 0, 0,
    ]
}

/// PRDT entries covering `len` bytes from `addr`, each at most `max` bytes (even, at
/// most [`PRD_MAX_BYTES`]): `(data base, byte count)`.
pub fn prdt(addr: u64, len: u64, max: u64) -> Vec<(u64, u32)> {
    let max = (max.min(PRD_MAX_BYTES) & !1).max(2);
    let mut out = Vec::new();
    let mut at = 0;
    while at < len {
        let n = (len - at).min(max);
        out.push((addr + at, n as u32));
        at += n;
    }
    out
}

/// One 16-byte PRDT entry (AHCI 4.2.3.3): DBC holds the byte count minus one; no
/// interrupt on completion (the driver polls).
pub fn prd_entry(addr: u64, bytes: u32) -> [u8; 16] {
    let mut e = [0u8; 16];
    e[0..4].copy_from_slice(&(addr as u32).to_le_bytes());
    e[4..8].copy_from_slice(&((addr >> 32) as u32).to_le_bytes());
    e[12..16].copy_from_slice(&((bytes - 1) & 0x3f_ffff).to_le_bytes());
    e
}

/// A command table (AHCI 4.2.3): the FIS, then the PRDT at 0x80.
pub fn command_table(fis: &[u8; 20], prds: &[(u64, u32)]) -> Vec<u8> {
    let mut t = alloc::vec![0u8; layout::PRDT as usize + 16 * prds.len()];
    t[..20].copy_from_slice(fis);
    for (i, &(addr, n)) in prds.iter().enumerate() {
        let at = layout::PRDT as usize + 16 * i;
        t[at..at + 16].copy_from_slice(&prd_entry(addr, n));
    }
    t
}

/// What IDENTIFY DEVICE says about an ATA disk (ACS-3 7.12.7).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identify {
    /// Model number (words 27-46, each word's bytes swapped), trimmed.
    pub model: String,
    /// Addressable logical sectors (words 100-103 with 48-bit addressing, else 60-61).
    pub sectors: u64,
    /// Logical sector size in bytes (words 106, 117-118).
    pub logical_size: u32,
    /// The drive has a volatile write cache (word 82 bit 5).
    pub write_cache: bool,
    /// Its write cache is enabled (word 85 bit 5).
    pub write_cache_on: bool,
}

impl Identify {
    /// Decodes the 512 bytes of IDENTIFY DEVICE data; `None` if the drive lacks 48-bit
    /// addressing (READ/WRITE DMA EXT need it) or reports an unusable sector size.
    pub fn decode(data: &[u8]) -> Option<Self> {
        let w = |i: usize| -> u16 {
            data.get(2 * i..2 * i + 2)
                .map_or(0, |b| u16::from_le_bytes([b[0], b[1]]))
        };
        if data.len() < 512 || w(83) & (1 << 10) == 0 {
            return None;
        }
        let mut model = String::new();
        for i in 27..47 {
            let [hi, lo] = w(i).to_be_bytes();
            for b in [hi, lo] {
                model.push(if b.is_ascii_graphic() || b == b' ' {
                    b as char
                } else {
                    ' '
                });
            }
        }
        let model = String::from(model.trim());
        let lba48 = (0..4).fold(0u64, |acc, i| acc | (u64::from(w(100 + i)) << (16 * i)));
        let lba28 = u64::from(w(60)) | (u64::from(w(61)) << 16);
        let sectors = if lba48 != 0 { lba48 } else { lba28 };
        // Word 106 is valid when bit 14 is set and bit 15 clear; bit 12: the logical
        // sector is longer than 256 words, its length in words is in words 117-118.
        let w106 = w(106);
        let logical_size = if w106 & 0xc000 == 0x4000 && w106 & (1 << 12) != 0 {
            let words = u32::from(w(117)) | (u32::from(w(118)) << 16);
            words.checked_mul(2)?
        } else {
            512
        };
        if !logical_size.is_power_of_two() || !(512..=65536).contains(&logical_size) {
            return None;
        }
        Some(Self {
            model,
            sectors,
            logical_size,
            write_cache: w(82) & (1 << 5) != 0,
            write_cache_on: w(85) & (1 << 5) != 0,
        })
    }
}

/// How the driver runs a port, after the board's quirks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Treat the drive's logical sectors as 512 bytes whatever IDENTIFY says (quirk
    /// `force_512_sectors`: drives that misreport a 4 KiB logical sector).
    pub force_512: bool,
    /// Turn the drive's volatile write cache off at bring-up (quirk `no_write_cache`), so
    /// that a write is on the media when it completes.
    pub disable_write_cache: bool,
    /// Milliseconds to wait after the HBA reset before looking at the links (quirk
    /// `ready_delay_ms`).
    pub link_delay_ms: u32,
}

/// The plan under `cfg`. The queue-depth quirk has no field: the driver issues one
/// command at a time (slot 0), which every HBA has.
pub fn plan(cfg: &StorageConfig) -> Plan {
    Plan {
        force_512: cfg.logical_block_size == 512,
        disable_write_cache: !cfg.volatile_write_cache,
        link_delay_ms: cfg.ready_delay_ms,
    }
}

/// The logical blocks covering `count` 512-byte sectors from `lba` on a disk of
/// `2^shift`-byte blocks: `(first block, blocks, byte offset of lba in the first)`.
pub fn covering(lba: u64, count: u64, shift: u32) -> (u64, u64, u64) {
    let per = 1u64 << (shift - 9);
    let first = lba / per;
    let last = (lba + count).div_ceil(per);
    (first, last - first, (lba % per) * 512)
}

/// `BlockError::Device` status of a failed command: PxTFD's error (15:8) and status (7:0)
/// registers.
pub fn device_status(tfd: u32) -> u32 {
    tfd & 0xffff
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn cap_of_qemu_ich9() {
        // QEMU ich9-ahci: 6 ports, 32 slots, S64A, SNCQ, SSS clear, SAM, ISS gen 1.
        let cap = Cap::decode(0xc014_1f05);
        assert_eq!(cap.ports, 6);
        assert_eq!(cap.slots, 32);
        assert!(cap.s64a);
        assert!(!cap.sss);
    }

    #[test]
    fn header_has_fis_length_write_bit_prdtl_and_table() {
        let h = command_header(5, true, 3, 0x1_2345_6780);
        assert_eq!(
            u32::from_le_bytes(h[0..4].try_into().unwrap()),
            5 | 1 << 6 | 3 << 16
        );
        assert_eq!(u32::from_le_bytes(h[4..8].try_into().unwrap()), 0);
        assert_eq!(
            u32::from_le_bytes(h[8..12].try_into().unwrap()),
            0x2345_6780
        );
        assert_eq!(u32::from_le_bytes(h[12..16].try_into().unwrap()), 1);
        let r = command_header(5, false, 1, 0x800);
        assert_eq!(r[0] & (1 << 6), 0);
    }

    #[test]
    fn fis_carries_command_lba48_and_count() {
        let f = h2d_fis(ata::WRITE_DMA_EXT, 0x0000_a1b2_c3d4_e5f6, 0x0102, 0);
        assert_eq!(f[..4], [0x27, 0x80, 0x35, 0]);
        assert_eq!(f[4..7], [0xf6, 0xe5, 0xd4]);
        assert_eq!(f[7], 0x40);
        assert_eq!(f[8..11], [0xc3, 0xb2, 0xa1]);
        assert_eq!(f[12..14], [0x02, 0x01]);
        let sf = h2d_fis(ata::SET_FEATURES, 0, 0, 0x82);
        assert_eq!((sf[2], sf[3], sf[11]), (0xef, 0x82, 0));
    }

    #[test]
    fn prdt_splits_at_the_entry_limit() {
        assert_eq!(prdt(0x1000, 512, 64 << 10), [(0x1000, 512)]);
        let p = prdt(0x10_0000, 200 << 10, 64 << 10);
        assert_eq!(
            p,
            [
                (0x10_0000, 64 << 10),
                (0x11_0000, 64 << 10),
                (0x12_0000, 64 << 10),
                (0x13_0000, 8 << 10)
            ]
        );
        // Never more than 4 MiB an entry, whatever is asked for.
        assert_eq!(prdt(0, 5 << 20, u64::MAX).len(), 2);
        let e = prd_entry(0x1_0000_2000, 4096);
        assert_eq!(u32::from_le_bytes(e[12..16].try_into().unwrap()), 4095);
        assert_eq!(u32::from_le_bytes(e[4..8].try_into().unwrap()), 1);
        let t = command_table(&h2d_fis(ata::READ_DMA_EXT, 0, 1, 0), &p);
        assert_eq!(t.len(), 0x80 + 4 * 16);
        assert_eq!(t[0x80 + 16..0x80 + 20], 0x11_0000u32.to_le_bytes());
    }

    /// IDENTIFY data as a drive returns it: the model in byte-swapped words.
    pub(crate) fn identify_data(model: &str, sectors: u64, logical: u32, cache: bool) -> Vec<u8> {
        let mut d = alloc::vec![0u8; 512];
        let mut set = |i: usize, v: u16| d[2 * i..2 * i + 2].copy_from_slice(&v.to_le_bytes());
        let m: Vec<u8> = format!("{model:<40}").bytes().collect();
        for i in 0..20 {
            set(27 + i, u16::from_be_bytes([m[2 * i], m[2 * i + 1]]));
        }
        set(60, sectors.min(0x0fff_ffff) as u16);
        set(61, (sectors.min(0x0fff_ffff) >> 16) as u16);
        set(83, 1 << 10 | 1 << 14);
        for i in 0..4 {
            set(100 + i, (sectors >> (16 * i)) as u16);
        }
        if logical != 512 {
            set(106, 0x4000 | 1 << 12);
            let words = logical / 2;
            set(117, words as u16);
            set(118, (words >> 16) as u16);
        }
        if cache {
            set(82, 1 << 5);
            set(85, 1 << 5);
        }
        d
    }

    #[test]
    fn identify_reads_model_capacity_and_sector_size() {
        let id = Identify::decode(&identify_data("QEMU HARDDISK", 131072, 512, true)).unwrap();
        assert_eq!(id.model, "QEMU HARDDISK");
        assert_eq!(id.sectors, 131072);
        assert_eq!(id.logical_size, 512);
        assert!(id.write_cache && id.write_cache_on);
        let big = Identify::decode(&identify_data("X", 1 << 40, 4096, false)).unwrap();
        assert_eq!((big.sectors, big.logical_size), (1 << 40, 4096));
        assert!(!big.write_cache);
        let mut no48 = identify_data("X", 8, 512, false);
        no48[166] = 0;
        no48[167] = 0;
        assert_eq!(Identify::decode(&no48), None);
        let mut odd = identify_data("X", 8, 1000, false);
        odd[234] = 0xf4; // 500 words: 1000 bytes
        assert_eq!(Identify::decode(&odd), None);
    }

    #[test]
    fn quirks_change_the_plan() {
        let plain = plan(&StorageConfig::default());
        assert_eq!(
            plain,
            Plan {
                force_512: false,
                disable_write_cache: false,
                link_delay_ms: 0
            }
        );
        let cfg = StorageConfig {
            queue_depth: 0,
            volatile_write_cache: false,
            logical_block_size: 512,
            ready_delay_ms: 30,
            ..StorageConfig::default()
        };
        let q = plan(&cfg);
        assert!(q.force_512 && q.disable_write_cache);
        assert_eq!(q.link_delay_ms, 30);
    }

    #[test]
    fn covering_blocks() {
        assert_eq!(covering(3, 2, 9), (3, 2, 0));
        assert_eq!(covering(3, 2, 12), (0, 1, 1536));
        assert_eq!(covering(7, 2, 12), (0, 2, 3584));
    }
}
