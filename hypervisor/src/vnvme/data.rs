//! The data structures Identify and Get Log Page return (NVMe 1.4 sections 5.15 and 5.14),
//! built from the controller's state each time they are asked for.

use super::{VNvme, ERROR_LOG_ENTRIES, MAX_AERS, MDTS, VENDOR_ID, VERSION};
use crate::block::SECTOR;
use alloc::vec;
use alloc::vec::Vec;

/// Bytes of every Identify data structure.
pub const IDENTIFY_LEN: usize = 4096;
/// Model number (Identify MN), space padded to 40 bytes.
pub const MODEL: &str = "Arm hypervisor virtual NVMe";
/// Firmware revision (Identify FR): the hypervisor's version, space padded to 8 bytes.
pub const FIRMWARE: &str = env!("CARGO_PKG_VERSION");

/// Identify ONCS: Write Zeroes.
pub const ONCS_WRITE_ZEROES: u16 = 1 << 3;

fn put(buf: &mut [u8], off: usize, bytes: &[u8]) {
    buf[off..off + bytes.len()].copy_from_slice(bytes);
}

/// `s` space padded (or cut) to `n` bytes.
fn padded(s: &str, n: usize) -> Vec<u8> {
    let mut v = vec![b' '; n];
    let b = s.as_bytes();
    let l = b.len().min(n);
    v[..l].copy_from_slice(&b[..l]);
    v
}

/// The controller's subsystem NQN, in the form NVMe 1.4 section 7.9 gives for a subsystem
/// without a registered name: `nqn.2014-08.org.nvmexpress:`, the PCI vendor and subsystem
/// vendor IDs in hex, the serial number and the model number.
pub fn subnqn(n: &VNvme) -> Vec<u8> {
    let mut q = Vec::from(&b"nqn.2014-08.org.nvmexpress:"[..]);
    for id in [VENDOR_ID, VENDOR_ID] {
        for shift in [12, 8, 4, 0] {
            q.push(b"0123456789abcdef"[usize::from((id >> shift) & 0xf)]);
        }
    }
    q.extend_from_slice(&n.serial);
    q.extend_from_slice(&padded(MODEL, 40));
    q
}

/// Identify Controller (CNS 01h).
pub fn identify_controller(n: &VNvme) -> Vec<u8> {
    let mut d = vec![0u8; IDENTIFY_LEN];
    put(&mut d, 0, &VENDOR_ID.to_le_bytes()); // VID
    put(&mut d, 2, &VENDOR_ID.to_le_bytes()); // SSVID
    put(&mut d, 4, &n.serial); // SN
    put(&mut d, 24, &padded(MODEL, 40)); // MN
    put(&mut d, 64, &padded(FIRMWARE, 8)); // FR
    d[77] = MDTS;
    put(&mut d, 80, &VERSION.to_le_bytes()); // VER
    d[111] = 1; // CNTRLTYPE: I/O controller
                // OACS 0: no optional admin command (no Format, firmware download, namespace
                // management, ...).
    d[258] = 3; // ACL: 4 concurrent Aborts
    d[259] = (MAX_AERS - 1) as u8; // AERL
    d[260] = 0b011; // FRMW: one firmware slot, slot 1 read-only
    d[261] = 1 << 2; // LPA: Get Log Page offsets (extended data)
    d[262] = (ERROR_LOG_ENTRIES - 1) as u8; // ELPE
    d[512] = 0x66; // SQES: 64 bytes
    d[513] = 0x44; // CQES: 16 bytes
    put(&mut d, 516, &1u32.to_le_bytes()); // NN: one namespace
    put(&mut d, 520, &ONCS_WRITE_ZEROES.to_le_bytes()); // ONCS
                                                        // VWC: bits 2:1 = 11b, Flush with NSID FFFFFFFFh supported; bit 0 the cache.
    d[525] = 0b110 | u8::from(!n.quirks.no_write_cache);
    d[530] = 1; // NVSCC: vendor-specific commands (none) in the standard format
                // SGLS 0: SGLs not supported.
    let nqn = subnqn(n);
    put(&mut d, 768, &nqn);
    // Power state descriptor 0 all zero: maximum power not reported, no entry or exit
    // latency (it is the only state, NPSS = 0).
    d
}

/// Identify Namespace (CNS 00h) for namespace 1: its size from the disk, one LBA format of
/// 512 bytes without metadata, write protected if the disk is read-only.
pub fn identify_namespace(n: &VNvme) -> Vec<u8> {
    let mut d = vec![0u8; IDENTIFY_LEN];
    let blocks = n.disk.sectors();
    put(&mut d, 0, &blocks.to_le_bytes()); // NSZE
    put(&mut d, 8, &blocks.to_le_bytes()); // NCAP
    put(&mut d, 16, &blocks.to_le_bytes()); // NUSE: no thin provisioning
                                            // NLBAF 0 (one format), FLBAS 0 (format 0).
    let bytes = u128::from(blocks) * SECTOR as u128;
    put(&mut d, 48, &bytes.to_le_bytes()); // NVMCAP
    d[99] = u8::from(n.disk.read_only()); // NSATTR bit 0: write protected
                                          // LBAF0: MS 0, LBADS 9 (512 bytes), RP 0.
    put(&mut d, 128, &(9u32 << 16).to_le_bytes());
    d
}

/// Active Namespace ID list (CNS 02h): the active NSIDs above `after`.
pub fn active_namespaces(after: u32) -> Vec<u8> {
    let mut d = vec![0u8; IDENTIFY_LEN];
    if after < 1 {
        put(&mut d, 0, &1u32.to_le_bytes());
    }
    d
}

/// Namespace Identification Descriptor list (CNS 03h): the namespace UUID if the VM
/// configuration gave one, else empty.
pub fn namespace_descriptors(n: &VNvme) -> Vec<u8> {
    let mut d = vec![0u8; IDENTIFY_LEN];
    if let Some(uuid) = n.ns_uuid {
        d[0] = 3; // NIDT: UUID
        d[1] = 16; // NIDL
        put(&mut d, 4, &uuid);
    }
    d
}

/// Error Information log (01h): the last errors, newest first, 64 bytes each.
pub fn error_log(n: &VNvme) -> Vec<u8> {
    let mut d = vec![0u8; ERROR_LOG_ENTRIES * 64];
    for (i, e) in n.errors.iter().rev().enumerate() {
        let o = i * 64;
        put(&mut d, o, &e.count.to_le_bytes());
        put(&mut d, o + 8, &e.sqid.to_le_bytes());
        put(&mut d, o + 10, &e.cid.to_le_bytes());
        // Status Field as in the completion (bits 15:1), phase tag bit 0 clear.
        put(&mut d, o + 12, &(e.status << 1).to_le_bytes());
        put(&mut d, o + 14, &0xffffu16.to_le_bytes()); // no parameter error location
        put(&mut d, o + 16, &e.lba.to_le_bytes());
        put(&mut d, o + 24, &e.nsid.to_le_bytes());
    }
    d
}

/// SMART / Health Information log (02h). Counters are the controller's own since it was
/// created; the composite temperature is 0 (not reported: no sensor) and power-on hours
/// are 0 (the model keeps no clock).
pub fn smart_log(n: &VNvme) -> Vec<u8> {
    let mut d = vec![0u8; 512];
    let h = &n.health;
    d[3] = 100; // Available Spare: nothing wears out
    d[4] = 10; // Available Spare Threshold
               // Data units are thousands of 512-byte units, rounded up.
    let units = |u: u64| u128::from(u.div_ceil(1000));
    put(&mut d, 32, &units(h.units_read).to_le_bytes());
    put(&mut d, 48, &units(h.units_written).to_le_bytes());
    put(&mut d, 64, &u128::from(h.read_commands).to_le_bytes());
    put(&mut d, 80, &u128::from(h.write_commands).to_le_bytes());
    put(&mut d, 112, &u128::from(h.power_cycles).to_le_bytes());
    put(&mut d, 144, &u128::from(h.unsafe_shutdowns).to_le_bytes());
    put(&mut d, 160, &u128::from(h.media_errors).to_le_bytes());
    put(&mut d, 176, &u128::from(n.error_count).to_le_bytes());
    d
}

/// Firmware Slot Information log (03h): slot 1 active, holding this revision.
pub fn firmware_slot_log(_n: &VNvme) -> Vec<u8> {
    let mut d = vec![0u8; 512];
    d[0] = 1; // AFI: slot 1 active
    put(&mut d, 8, &padded(FIRMWARE, 8));
    d
}
