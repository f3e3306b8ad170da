//! `storage-hostile` and `storage-neighbour` modes' pure parts (host-tested): the PCIe host
//! bridge from the device tree, BAR sizing and placement, the NVMe, AHCI and virtio-blk
//! structures the guest builds in its RAM, how each controller's answer is read, and the
//! marker sector a valid write leaves on the disk (`storage_run.rs` drives the devices).
//!
//! The guest owns BAR placement: the hypervisor's ECAM bridge starts every BAR unassigned,
//! as QEMU's `virt` does, and no firmware runs before the guest.

use crate::dt::Region;
use fdt::Fdt;

/// Bytes of one sector (every controller here has 512-byte logical blocks).
pub const SECTOR: usize = 512;
/// 32-bit words of one sector.
pub const SECTOR_WORDS: usize = SECTOR / 4;
/// Bytes of ECAM configuration space per function.
pub const ECAM_FUNCTION: u64 = 0x1000;
/// Device slots on a bus.
pub const SLOTS: u8 = 32;

/// Class code (class, subclass, programming interface) of an NVMe controller.
pub const CLASS_NVME: u32 = 0x01_08_02;
/// Class code of an AHCI 1.0 SATA controller.
pub const CLASS_AHCI: u32 = 0x01_06_01;
/// Vendor ID of virtio devices.
pub const VIRTIO_VENDOR: u16 = 0x1af4;
/// Device ID of a modern (virtio 1.x) block device (0x1040 + device ID 2).
pub const VIRTIO_BLK_DEVICE: u16 = 0x1042;

/// The controllers the storage modes drive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// NVMe (class 01:08:02).
    Nvme,
    /// AHCI (class 01:06:01).
    Ahci,
    /// virtio-blk over modern virtio-pci (1af4:1042).
    VirtioBlk,
}

impl Kind {
    /// What the guest calls it on the console and in its marker sectors.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Nvme => "nvme",
            Kind::Ahci => "ahci",
            Kind::VirtioBlk => "virtio-blk",
        }
    }
}

/// Which controller a function is, from its IDs and class code (`class` is config
/// dword 2 shifted right by 8).
pub fn kind(vendor: u16, device: u16, class: u32) -> Option<Kind> {
    match (vendor, device, class) {
        (VIRTIO_VENDOR, VIRTIO_BLK_DEVICE, _) => Some(Kind::VirtioBlk),
        (_, _, CLASS_NVME) => Some(Kind::Nvme),
        (_, _, CLASS_AHCI) => Some(Kind::Ahci),
        _ => None,
    }
}

/// A generic ECAM PCIe host bridge: its configuration window and the 32-bit memory window
/// BARs go in (CPU addresses).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PciHost {
    /// ECAM (1 MiB per bus, from bus 0).
    pub ecam: Region,
    /// 32-bit memory window.
    pub mem32: Region,
}

/// Why the device tree gives the storage modes no usable PCIe host bridge.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PciDtError {
    /// No `pci-host-ecam-generic` node.
    #[error("no pci-host-ecam-generic node in the DTB: give the VM a [[vm.disk]] or a [[vm.nic]] so that it gets a PCIe bus")]
    NoHost,
    /// The node has no `reg`.
    #[error("the pci-host-ecam-generic node has no reg (its ECAM window)")]
    NoReg,
    /// No 32-bit memory range in `ranges`.
    #[error("the pci-host-ecam-generic node's ranges has no 32-bit memory range (phys.hi space code 0b10)")]
    NoMem32,
}

/// `phys.hi` space code (bits 25:24) of 32-bit memory.
const SPACE_MEM32: u32 = 0b10;

/// The first 32-bit memory range of a PCI `ranges` property (`child` PCI address cells,
/// normally 3; `parent` CPU address cells; `size` size cells), as a CPU address range.
pub fn mem32_window(ranges: &[u8], child: usize, parent: usize, size: usize) -> Option<Region> {
    let entry = (child + parent + size) * 4;
    if child == 0 || entry == 0 {
        return None;
    }
    let cells = |bytes: &[u8]| {
        bytes
            .chunks_exact(4)
            .fold(0_u64, |acc, c| acc << 32 | u64::from(be32(c)))
    };
    ranges.chunks_exact(entry).find_map(|e| {
        let space = (be32(&e[..4]) >> 24) & 3;
        let cpu = cells(&e[child * 4..(child + parent) * 4]);
        let len = cells(&e[(child + parent) * 4..]);
        (space == SPACE_MEM32 && len > 0).then_some(Region {
            base: cpu,
            size: len,
        })
    })
}

/// The first enabled `pci-host-ecam-generic` node's ECAM and 32-bit memory windows.
pub fn pci_host(fdt: &Fdt<'_>) -> Result<PciHost, PciDtError> {
    let node = fdt
        .find_compatible(&["pci-host-ecam-generic"])
        .ok_or(PciDtError::NoHost)?;
    let reg = node
        .reg()
        .and_then(|mut r| r.next())
        .ok_or(PciDtError::NoReg)?;
    let ecam = Region {
        base: reg.starting_address as u64,
        size: reg.size.ok_or(PciDtError::NoReg)? as u64,
    };
    let cells = |n: &fdt::node::FdtNode<'_, '_>, name: &str, default: usize| {
        n.property(name)
            .and_then(|p| p.as_usize())
            .unwrap_or(default)
    };
    let child = cells(&node, "#address-cells", 3);
    let size = cells(&node, "#size-cells", 2);
    let parent = fdt
        .find_node("/")
        .map_or(2, |root| cells(&root, "#address-cells", 2));
    let ranges = node.property("ranges").ok_or(PciDtError::NoMem32)?.value;
    let mem32 = mem32_window(ranges, child, parent, size).ok_or(PciDtError::NoMem32)?;
    Ok(PciHost { ecam, mem32 })
}

/// Offset of function `slot`.0 on bus 0 in the ECAM window.
pub fn ecam_offset(slot: u8) -> u64 {
    u64::from(slot) << 15
}

/// A memory BAR as sized: all ones written, this read back (both halves for a 64-bit BAR).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BarProbe {
    /// The BAR's index (0..=5).
    pub index: u8,
    /// Bytes it decodes (a power of two), 0 if unimplemented.
    pub size: u64,
    /// It takes two BAR slots (type 0b10).
    pub is_64bit: bool,
}

/// Decodes what a memory BAR reads back after all ones were written: `low` the BAR, `high`
/// the next one for a 64-bit BAR (ignored otherwise). I/O BARs (bit 0) are not sized here.
pub fn bar_probe(index: u8, low: u32, high: u32) -> BarProbe {
    if low & 1 != 0 || low == 0 {
        return BarProbe {
            index,
            size: 0,
            is_64bit: false,
        };
    }
    let is_64bit = (low >> 1) & 3 == 0b10;
    let mask = if is_64bit {
        u64::from(high) << 32 | u64::from(low & !0xf)
    } else {
        u64::from(low & !0xf) | 0xffff_ffff_0000_0000
    };
    BarProbe {
        index,
        size: (!mask).wrapping_add(1),
        is_64bit,
    }
}

/// Places BARs in a window, each naturally aligned, in the order asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BarAllocator {
    next: u64,
    end: u64,
}

impl BarAllocator {
    /// Allocation from the start of `window`.
    pub fn new(window: Region) -> Self {
        Self {
            next: window.base,
            end: window.end(),
        }
    }

    /// An address for a BAR of `size` bytes (a power of two), or `None` if it does not fit.
    pub fn place(&mut self, size: u64) -> Option<u64> {
        if size == 0 || !size.is_power_of_two() {
            return None;
        }
        let at = self.next.checked_next_multiple_of(size)?;
        let end = at.checked_add(size)?;
        if end > self.end {
            return None;
        }
        self.next = end;
        Some(at)
    }
}

/// Where the storage modes keep their queues, tables and buffers: `bytes` from the image end
/// rounded up to 64 KiB, below the DTB's last 2 MiB of RAM.
pub fn dma_area(ram: Region, image_end: u64, bytes: u64) -> Option<Region> {
    let base = image_end.checked_next_multiple_of(0x1_0000)?;
    let end = base.checked_add(bytes)?;
    (base >= ram.base && end <= ram.end().checked_sub(crate::isolation::DTB_RESERVE)?)
        .then_some(Region { base, size: bytes })
}

// ---- NVMe (NVM Express 1.4) ----

/// NVMe opcodes the guest sends.
pub mod nvme_op {
    /// Admin: Create I/O Submission Queue.
    pub const CREATE_IO_SQ: u8 = 0x01;
    /// Admin: Create I/O Completion Queue.
    pub const CREATE_IO_CQ: u8 = 0x05;
    /// Admin: Identify.
    pub const IDENTIFY: u8 = 0x06;
    /// I/O: Write.
    pub const WRITE: u8 = 0x01;
    /// I/O: Read.
    pub const READ: u8 = 0x02;
}

/// A 64-byte submission queue entry as 16 little-endian dwords.
pub type NvmeCommand = [u32; 16];

/// A command: `opcode`, command ID `cid`, namespace `nsid`, PRP1/PRP2 and CDW10..15.
pub fn nvme_command(
    opcode: u8,
    cid: u16,
    nsid: u32,
    prp1: u64,
    prp2: u64,
    cdw10_15: [u32; 6],
) -> NvmeCommand {
    let mut c = [0_u32; 16];
    c[0] = u32::from(opcode) | u32::from(cid) << 16;
    c[1] = nsid;
    c[6] = prp1 as u32;
    c[7] = (prp1 >> 32) as u32;
    c[8] = prp2 as u32;
    c[9] = (prp2 >> 32) as u32;
    c[10..16].copy_from_slice(&cdw10_15);
    c
}

/// A Read or Write of `blocks` (>= 1) logical blocks from `slba` on namespace 1.
pub fn nvme_rw(write: bool, cid: u16, slba: u64, blocks: u32, prp1: u64, prp2: u64) -> NvmeCommand {
    let op = if write { nvme_op::WRITE } else { nvme_op::READ };
    let nlb = blocks.saturating_sub(1) & 0xffff;
    nvme_command(
        op,
        cid,
        1,
        prp1,
        prp2,
        [slba as u32, (slba >> 32) as u32, nlb, 0, 0, 0],
    )
}

/// A completion entry's Status Field without the phase tag: SC bits 7:0, SCT 10:8, More
/// bit 13, DNR bit 14 (from its dword 3).
pub fn nvme_status(dw3: u32) -> u16 {
    (dw3 >> 17) as u16
}

/// A completion entry's phase tag.
pub fn nvme_phase(dw3: u32) -> bool {
    dw3 & (1 << 16) != 0
}

/// Status Code Type and Status Code of a Status Field, as one number (`sct << 8 | sc`).
pub fn nvme_code(status: u16) -> u16 {
    status & 0x7ff
}

/// What an NVMe status code means (the ones this model answers).
pub fn nvme_status_text(status: u16) -> &'static str {
    match nvme_code(status) {
        0x000 => "Successful Completion",
        0x001 => "Invalid Command Opcode",
        0x002 => "Invalid Field in Command",
        0x004 => "Data Transfer Error",
        0x006 => "Internal Error",
        0x00b => "Invalid Namespace or Format",
        0x013 => "PRP Offset Invalid",
        0x020 => "Namespace is Write Protected",
        0x080 => "LBA Out of Range",
        0x280 => "Write Fault",
        0x281 => "Unrecovered Read Error",
        _ => "other error",
    }
}

/// Doorbell offset in BAR 0 of submission queue `qid`'s tail (`cq` false) or completion
/// queue `qid`'s head, for CAP.DSTRD `dstrd`.
pub fn nvme_doorbell(qid: u16, cq: bool, dstrd: u32) -> usize {
    0x1000 + (2 * usize::from(qid) + usize::from(cq)) * (4 << dstrd)
}

// ---- AHCI 1.3.1 / ATA ----

/// ATA commands the guest sends.
pub mod ata {
    /// IDENTIFY DEVICE (PIO data in, 512 bytes).
    pub const IDENTIFY: u8 = 0xec;
    /// READ DMA EXT (48-bit LBA).
    pub const READ_DMA_EXT: u8 = 0x25;
    /// WRITE DMA EXT (48-bit LBA).
    pub const WRITE_DMA_EXT: u8 = 0x35;
}

/// A Register Host-to-Device FIS with the C bit set (5 dwords): `command`, 48-bit `lba`,
/// sector `count` (0 means 65536), LBA mode.
pub fn ahci_h2d_fis(command: u8, lba: u64, count: u16) -> [u32; 5] {
    let b = |n: u32| ((lba >> n) & 0xff) as u32;
    [
        0x27 | 0x80 << 8 | u32::from(command) << 16,
        b(0) | b(8) << 8 | b(16) << 16 | 0x40 << 24,
        b(24) | b(32) << 8 | b(40) << 16,
        u32::from(count),
        0,
    ]
}

/// Command header dword 0: a 5-dword command FIS, `write` (W bit), `prds` PRD entries.
pub fn ahci_header_dw0(write: bool, prds: u16) -> u32 {
    5 | u32::from(write) << 6 | u32::from(prds) << 16
}

/// PRD entry dword 3: `bytes` (even, 2..=4 MiB) to move, no interrupt.
pub fn ahci_prd_dbc(bytes: u32) -> u32 {
    bytes.saturating_sub(1) & 0x3f_ffff
}

/// PxIS: task file error status.
pub const AHCI_IS_TFES: u32 = 1 << 30;
/// PxIS: host bus fatal error.
pub const AHCI_IS_HBFS: u32 = 1 << 29;
/// PxIS: interface fatal error.
pub const AHCI_IS_IFS: u32 = 1 << 27;
/// PxIS: overflow.
pub const AHCI_IS_OFS: u32 = 1 << 24;
/// PxIS errors after which the port stops until PxCMD.ST is cleared.
pub const AHCI_IS_ERRORS: u32 = AHCI_IS_TFES | AHCI_IS_HBFS | AHCI_IS_IFS | AHCI_IS_OFS;

/// What an AHCI port's PxIS and PxTFD say about the command that just ended.
pub fn ahci_error_text(is: u32, tfd: u32) -> &'static str {
    if is & AHCI_IS_HBFS != 0 {
        "host bus fatal error"
    } else if is & AHCI_IS_IFS != 0 {
        "interface fatal error"
    } else if is & AHCI_IS_OFS != 0 {
        "overflow"
    } else if is & AHCI_IS_TFES != 0 || tfd & 1 != 0 {
        "task file error"
    } else {
        "no error"
    }
}

/// Whether the command in slot 0 was refused: PxCI bit 0 still set with an error in PxIS,
/// or ERR in PxTFD.
pub fn ahci_refused(ci: u32, is: u32, tfd: u32) -> bool {
    (ci & 1 != 0 && is & AHCI_IS_ERRORS != 0) || tfd & 1 != 0
}

/// The user-addressable sectors of an ATA disk, from IDENTIFY DEVICE words 100..=103
/// (48-bit), else 60..=61 (28-bit); `words` the 256 data words.
pub fn ata_sectors(words: &[u16; 256]) -> u64 {
    let lba48 = (100..104)
        .rev()
        .fold(0_u64, |acc, w| acc << 16 | u64::from(words[w]));
    if lba48 != 0 {
        lba48
    } else {
        u64::from(words[61]) << 16 | u64::from(words[60])
    }
}

// ---- virtio (OASIS virtio 1.2) ----

/// Device status bits.
pub mod virtio_status {
    /// The guest noticed the device.
    pub const ACKNOWLEDGE: u8 = 1;
    /// The guest has a driver for it.
    pub const DRIVER: u8 = 2;
    /// The driver is ready.
    pub const DRIVER_OK: u8 = 4;
    /// Feature negotiation is complete.
    pub const FEATURES_OK: u8 = 8;
    /// The device hit an error that needs a reset.
    pub const NEEDS_RESET: u8 = 0x40;
}

/// Where the virtio-pci structures are: (BAR index, offset) of the common configuration,
/// notification area, ISR and device configuration, and the notify offset multiplier.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VirtioCaps {
    /// Common configuration.
    pub common: Option<(u8, u32)>,
    /// Notification area.
    pub notify: Option<(u8, u32)>,
    /// `notify_off_multiplier` of the notification capability.
    pub notify_multiplier: u32,
    /// ISR status.
    pub isr: Option<(u8, u32)>,
    /// Device-specific configuration.
    pub device: Option<(u8, u32)>,
}

/// Walks the capability list of a function's first 256 config bytes and collects the
/// virtio vendor capabilities (ID 0x09; virtio 1.2 §4.1.4). A list that loops ends after
/// 48 entries.
pub fn virtio_caps(config: &[u8; 256]) -> VirtioCaps {
    let mut caps = VirtioCaps::default();
    if config[6] & 0x10 == 0 {
        return caps;
    }
    let mut at = usize::from(config[0x34] & !3);
    for _ in 0..48 {
        if at < 0x40 || at + 20 > 256 {
            break;
        }
        if config[at] == 0x09 {
            let bar = config[at + 4];
            let offset = u32::from_le_bytes([
                config[at + 8],
                config[at + 9],
                config[at + 10],
                config[at + 11],
            ]);
            let place = Some((bar, offset));
            match config[at + 3] {
                1 => caps.common = place,
                2 => {
                    caps.notify = place;
                    caps.notify_multiplier = u32::from_le_bytes([
                        config[at + 16],
                        config[at + 17],
                        config[at + 18],
                        config[at + 19],
                    ]);
                }
                3 => caps.isr = place,
                4 => caps.device = place,
                _ => {}
            }
        }
        at = usize::from(config[at + 1] & !3);
    }
    caps
}

/// virtio-blk request type: read.
pub const VIRTIO_BLK_T_IN: u32 = 0;
/// virtio-blk request type: write.
pub const VIRTIO_BLK_T_OUT: u32 = 1;
/// Descriptor flag: the chain continues.
pub const VIRTQ_DESC_F_NEXT: u16 = 1;
/// Descriptor flag: the device writes the buffer.
pub const VIRTQ_DESC_F_WRITE: u16 = 2;

/// A split-queue descriptor as 4 little-endian dwords: address, length, flags, next.
pub fn virtq_desc(addr: u64, len: u32, flags: u16, next: u16) -> [u32; 4] {
    [
        addr as u32,
        (addr >> 32) as u32,
        len,
        u32::from(flags) | u32::from(next) << 16,
    ]
}

/// A virtio-blk request header (type, reserved, sector) as 4 little-endian dwords.
pub fn virtio_blk_header(kind: u32, sector: u64) -> [u32; 4] {
    [kind, 0, sector as u32, (sector >> 32) as u32]
}

/// Whether a virtio-blk request was refused: it came back with a status other than OK
/// (the guest sets the byte to 0xff before, so 0xff means the device never wrote it), or
/// the device marked itself as needing a reset.
pub fn virtio_refused(used: bool, status: u8, device_status: u8) -> bool {
    (used && status != 0 && status != 0xff) || device_status & virtio_status::NEEDS_RESET != 0
}

/// Whether a virtio-blk request succeeded: back in the used ring with status OK, and the
/// device still working.
pub fn virtio_ok(used: bool, status: u8, device_status: u8) -> bool {
    used && status == 0 && device_status & virtio_status::NEEDS_RESET == 0
}

/// What a virtio-blk status byte means.
pub fn virtio_blk_status_text(status: u8) -> &'static str {
    match status {
        0 => "OK",
        1 => "IOERR",
        2 => "UNSUPP",
        _ => "not written",
    }
}

// ---- Markers and the verdict ----

/// A 64-bit mix of `x` (splitmix64's finaliser), for markers made from the counter.
pub fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The sector a valid write leaves at LBA 0: the ASCII line `STOISO <tag> <marker as 16
/// hex digits>\n`, zero-padded to 512 bytes, as little-endian dwords (xtask rebuilds the
/// same bytes from the marker the guest printed).
pub fn marker_sector(tag: &str, marker: u64) -> [u32; SECTOR_WORDS] {
    let mut words = [0_u32; SECTOR_WORDS];
    let hex = |i: u32| b"0123456789abcdef"[((marker >> (60 - 4 * i)) & 0xf) as usize];
    let text = b"STOISO "
        .iter()
        .copied()
        .chain(tag.bytes().take(SECTOR - 32))
        .chain(core::iter::once(b' '))
        .chain((0..16).map(hex))
        .chain(core::iter::once(b'\n'));
    for (i, byte) in text.enumerate() {
        words[i / 4] |= u32::from(byte) << (8 * (i % 4));
    }
    words
}

/// Sector data that is not the marker: `seed` mixed per word (what the guest writes into
/// its buffers before a probe, so that a buffer the device never touched is recognisable).
pub fn filler(seed: u64) -> [u32; SECTOR_WORDS] {
    core::array::from_fn(|i| mix(seed ^ i as u64) as u32)
}

/// Probes made and refused, and the first accepted one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Probes made.
    pub probes: u32,
    /// Probes the controller refused.
    pub refused: u32,
    /// Name of the first probe the controller accepted.
    pub first_accepted: Option<&'static str>,
    /// Valid writes read back equal.
    pub valid_ok: u32,
    /// Valid writes that failed or read back different.
    pub valid_failed: u32,
}

impl Tally {
    /// Records a probe (`refused` is the controller's answer).
    pub fn probe(&mut self, name: &'static str, refused: bool) {
        self.probes += 1;
        if refused {
            self.refused += 1;
        } else {
            self.first_accepted.get_or_insert(name);
        }
    }

    /// Records a valid write and read-back.
    pub fn valid(&mut self, ok: bool) {
        if ok {
            self.valid_ok += 1;
        } else {
            self.valid_failed += 1;
        }
    }

    /// Every probe refused, at least `want_probes` made, `want_valid` valid writes read
    /// back equal and none failed.
    pub fn passed(&self, want_probes: u32, want_valid: u32) -> bool {
        self.probes >= want_probes
            && self.refused == self.probes
            && self.valid_ok == want_valid
            && self.valid_failed == 0
    }
}

fn be32(bytes: &[u8]) -> u32 {
    u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_virt_dtb_bridge_has_its_ecam_and_mem32_window() {
        let blob: &[u8] = include_bytes!("../fixtures/qemu-virt-gicv3.dtb");
        let fdt = Fdt::new(blob).expect("DTB");
        let host = pci_host(&fdt).expect("QEMU virt has a generic ECAM bridge");
        // QEMU virt: high ECAM (256 buses), and the 32-bit window below the I/O window;
        // the I/O and 64-bit ranges around it are skipped.
        assert_eq!(host.ecam.size, 0x1000_0000);
        assert_eq!(
            host.mem32,
            Region {
                base: 0x1000_0000,
                size: 0x2eff_0000
            }
        );
    }

    #[test]
    fn the_hypervisors_ranges_give_its_window() {
        // `hypervisor/src/fdt.rs` pci_host_node: one identity-mapped 32-bit range.
        let cells: [u32; 7] = [0x0200_0000, 0, 0x1000_0000, 0, 0x1000_0000, 0, 0x2eff_0000];
        let bytes: Vec<u8> = cells.iter().flat_map(|c| c.to_be_bytes()).collect();
        assert_eq!(
            mem32_window(&bytes, 3, 2, 2),
            Some(Region {
                base: 0x1000_0000,
                size: 0x2eff_0000
            })
        );
        // Only I/O and 64-bit memory: none.
        let cells: [u32; 14] = [
            0x0100_0000,
            0,
            0,
            0,
            0x3eff_0000,
            0,
            0x1_0000,
            0x0300_0000,
            0x80,
            0,
            0x80,
            0,
            0x80,
            0,
        ];
        let bytes: Vec<u8> = cells.iter().flat_map(|c| c.to_be_bytes()).collect();
        assert_eq!(mem32_window(&bytes, 3, 2, 2), None);
        assert_eq!(mem32_window(&bytes, 0, 2, 2), None);
    }

    #[test]
    fn a_dtb_without_a_bridge_is_an_error() {
        let blob: &[u8] = include_bytes!("../fixtures/qemu-virt-gicv2.dtb");
        let fdt = Fdt::new(blob).expect("DTB");
        // The fixture is QEMU's own DTB, which always has its PCIe node: only the missing
        // node case is tested through the error's wording.
        assert!(pci_host(&fdt).is_ok());
        assert!(PciDtError::NoHost.to_string().contains("[[vm.disk]]"));
    }

    #[test]
    fn bars_are_sized_from_what_reads_back() {
        // 64-bit, 16 KiB (the NVMe BAR 0).
        let p = bar_probe(0, 0xffff_c004, 0xffff_ffff);
        assert_eq!((p.size, p.is_64bit), (0x4000, true));
        // 32-bit, 4 KiB (the AHCI ABAR).
        let p = bar_probe(5, 0xffff_f000, 0);
        assert_eq!((p.size, p.is_64bit), (0x1000, false));
        // Unimplemented and I/O BARs are skipped.
        assert_eq!(bar_probe(1, 0, 0).size, 0);
        assert_eq!(bar_probe(1, 0xffff_ff01, 0).size, 0);
    }

    #[test]
    fn bars_are_placed_aligned_inside_the_window() {
        let mut a = BarAllocator::new(Region {
            base: 0x1000_0000,
            size: 0x1_0000,
        });
        assert_eq!(a.place(0x1000), Some(0x1000_0000));
        assert_eq!(a.place(0x4000), Some(0x1000_4000));
        assert_eq!(a.place(0x1000), Some(0x1000_8000));
        assert_eq!(a.place(0x1_0000), None, "past the window's end");
        assert_eq!(a.place(0x3000), None, "not a power of two");
        assert_eq!(a.place(0), None);
    }

    #[test]
    fn functions_are_told_apart_by_ids_and_class() {
        assert_eq!(kind(0x1234, 0x4e56, CLASS_NVME), Some(Kind::Nvme));
        assert_eq!(kind(0x8086, 0x2922, CLASS_AHCI), Some(Kind::Ahci));
        assert_eq!(kind(0x1af4, 0x1042, 0x01_80_00), Some(Kind::VirtioBlk));
        assert_eq!(kind(0x1af4, 0x1041, 0x02_00_00), None, "virtio-net");
    }

    #[test]
    fn dma_area_sits_between_image_and_dtb() {
        let ram = Region {
            base: 0x4000_0000,
            size: 64 << 20,
        };
        assert_eq!(
            dma_area(ram, 0x4009_1234, 0x3_0000),
            Some(Region {
                base: 0x400a_0000,
                size: 0x3_0000
            })
        );
        assert_eq!(dma_area(ram, 0x4009_1234, 62 << 20), None);
    }

    #[test]
    fn nvme_commands_and_completions() {
        let c = nvme_rw(true, 7, 0x1_2345_6789, 3, 0x4000_1000, 0x4000_2000);
        assert_eq!(c[0], 0x0007_0001);
        assert_eq!(c[1], 1);
        assert_eq!((c[6], c[7], c[8], c[9]), (0x4000_1000, 0, 0x4000_2000, 0));
        assert_eq!((c[10], c[11], c[12]), (0x2345_6789, 1, 2));
        // Status 0x4080 (DNR, LBA Out of Range), phase 1, CID 7.
        let dw3 = 0x4080 << 17 | 1 << 16 | 7;
        assert_eq!(nvme_status(dw3), 0x4080);
        assert!(nvme_phase(dw3));
        assert_eq!(nvme_code(0x4080), 0x080);
        assert_eq!(nvme_status_text(0x4080), "LBA Out of Range");
        assert_eq!(nvme_status_text(0x4004), "Data Transfer Error");
        assert_eq!(nvme_doorbell(0, false, 0), 0x1000);
        assert_eq!(nvme_doorbell(1, true, 0), 0x100c);
        assert_eq!(nvme_doorbell(1, true, 1), 0x1018);
    }

    #[test]
    fn ahci_fis_header_and_answers() {
        let f = ahci_h2d_fis(ata::WRITE_DMA_EXT, 0x0605_0403_0201, 2);
        assert_eq!(f[0], 0x0035_8027);
        assert_eq!(f[1], 0x4003_0201);
        assert_eq!(f[2], 0x0006_0504);
        assert_eq!(f[3], 2);
        assert_eq!(ahci_header_dw0(true, 1), 0x0001_0045);
        assert_eq!(ahci_prd_dbc(512), 511);
        assert!(ahci_refused(1, AHCI_IS_HBFS, 0x50));
        assert!(ahci_refused(1, AHCI_IS_TFES, 0x451));
        assert!(!ahci_refused(0, 0x1, 0x50));
        assert_eq!(ahci_error_text(AHCI_IS_HBFS, 0x50), "host bus fatal error");
        assert_eq!(ahci_error_text(AHCI_IS_TFES, 0x451), "task file error");
        let mut words = [0_u16; 256];
        words[100] = 0x1000;
        words[101] = 0x2;
        assert_eq!(ata_sectors(&words), 0x2_1000);
        words[100] = 0;
        words[101] = 0;
        words[60] = 0x100;
        assert_eq!(ata_sectors(&words), 0x100);
    }

    #[test]
    fn virtio_capabilities_are_found_in_config_space() {
        let mut cfg = [0_u8; 256];
        cfg[6] = 0x10;
        cfg[0x34] = 0x40;
        // (at, cfg_type, next, bar, offset)
        for (at, ty, next, offset) in [
            (0x40, 1, 0x50, 0x0000_u32),
            (0x50, 2, 0x64, 0x3000),
            (0x64, 3, 0x74, 0x1000),
            (0x74, 4, 0x00, 0x2000),
        ] {
            cfg[at] = 0x09;
            cfg[at + 1] = next;
            cfg[at + 3] = ty;
            cfg[at + 8..at + 12].copy_from_slice(&offset.to_le_bytes());
        }
        cfg[0x50 + 16..0x50 + 20].copy_from_slice(&4_u32.to_le_bytes());
        let caps = virtio_caps(&cfg);
        assert_eq!(caps.common, Some((0, 0)));
        assert_eq!(caps.notify, Some((0, 0x3000)));
        assert_eq!(caps.notify_multiplier, 4);
        assert_eq!(caps.isr, Some((0, 0x1000)));
        assert_eq!(caps.device, Some((0, 0x2000)));
        // A list pointing to itself ends.
        cfg[0x74 + 1] = 0x74;
        assert_eq!(virtio_caps(&cfg).device, Some((0, 0x2000)));
        // No capability list bit: nothing.
        cfg[6] = 0;
        assert_eq!(virtio_caps(&cfg), VirtioCaps::default());
    }

    #[test]
    fn virtqueue_descriptors_and_headers() {
        assert_eq!(
            virtq_desc(
                0x1_4000_0010,
                512,
                VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE,
                2
            ),
            [0x4000_0010, 1, 512, 0x0002_0003]
        );
        assert_eq!(
            virtio_blk_header(VIRTIO_BLK_T_OUT, 0x1_0000_0002),
            [1, 0, 2, 1]
        );
        assert_eq!(virtio_blk_status_text(1), "IOERR");
        // IOERR, and NEEDS_RESET with the chain never used, are refusals.
        assert!(virtio_refused(true, 1, 0x0f));
        assert!(virtio_refused(false, 0xff, 0x4f));
        // OK is not, nor a chain that simply never came back.
        assert!(!virtio_refused(true, 0, 0x0f));
        assert!(!virtio_refused(false, 0xff, 0x0f));
        assert!(virtio_ok(true, 0, 0x0f));
        assert!(!virtio_ok(true, 0, 0x4f));
        assert!(!virtio_ok(false, 0, 0x0f));
    }

    #[test]
    fn marker_sector_is_an_ascii_line_then_zeros() {
        let words = marker_sector("nvme", 0x0123_4567_89ab_cdef);
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        let line = b"STOISO nvme 0123456789abcdef\n";
        assert_eq!(&bytes[..line.len()], line);
        assert!(bytes[line.len()..].iter().all(|&b| b == 0));
        assert_ne!(
            marker_sector("nvme", 1),
            marker_sector("ahci", 1),
            "the tag is part of the sector"
        );
        assert_ne!(filler(1), filler(2));
    }

    #[test]
    fn tally_passes_only_when_every_probe_was_refused() {
        let mut t = Tally::default();
        t.probe("a", true);
        t.probe("b", true);
        t.valid(true);
        assert!(t.passed(2, 1));
        assert!(!t.passed(3, 1), "too few probes");
        assert!(!t.passed(2, 2), "a valid write missing");
        t.probe("c", false);
        assert_eq!(t.first_accepted, Some("c"));
        assert!(!t.passed(2, 1));
        let mut t = Tally::default();
        t.probe("a", true);
        t.valid(false);
        assert!(!t.passed(1, 0));
    }
}
