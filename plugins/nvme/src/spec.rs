//! What the NVMe base specification (2.0) fixes, as plain functions: register fields,
//! submission entries, completions, PRPs, sizes and how the board's quirks change the
//! driver's plan. No hardware access; host-tested.

use alloc::vec::Vec;
use hypervisor::block::DmaSeg;
use plugin_quirks_storage::StorageConfig;

/// Controller register offsets (3.1.3).
pub mod reg {
    /// Capabilities, low and high dwords.
    pub const CAP_LO: usize = 0x00;
    /// Capabilities, high dword.
    pub const CAP_HI: usize = 0x04;
    /// Version.
    pub const VS: usize = 0x08;
    /// Interrupt mask set.
    pub const INTMS: usize = 0x0c;
    /// Controller configuration.
    pub const CC: usize = 0x14;
    /// Controller status.
    pub const CSTS: usize = 0x1c;
    /// Admin queue attributes.
    pub const AQA: usize = 0x24;
    /// Admin submission queue base, low dword.
    pub const ASQ: usize = 0x28;
    /// Admin completion queue base, low dword.
    pub const ACQ: usize = 0x30;
    /// First doorbell.
    pub const DOORBELLS: usize = 0x1000;
}

/// CSTS.RDY.
pub const CSTS_RDY: u32 = 1;
/// CSTS.CFS (controller fatal status).
pub const CSTS_CFS: u32 = 1 << 1;

/// Admin and I/O command opcodes.
pub mod op {
    /// Admin: create I/O submission queue.
    pub const CREATE_IO_SQ: u8 = 0x01;
    /// Admin: create I/O completion queue.
    pub const CREATE_IO_CQ: u8 = 0x05;
    /// Admin: identify.
    pub const IDENTIFY: u8 = 0x06;
    /// Admin: set features.
    pub const SET_FEATURES: u8 = 0x09;
    /// NVM: flush.
    pub const FLUSH: u8 = 0x00;
    /// NVM: write.
    pub const WRITE: u8 = 0x01;
    /// NVM: read.
    pub const READ: u8 = 0x02;
}

/// The fields of CAP the driver uses (3.1.3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cap {
    /// Maximum queue entries supported (1-based here; the register holds it 0-based).
    pub max_queue_entries: u32,
    /// Doorbell stride in bytes (`4 << DSTRD`).
    pub doorbell_stride: usize,
    /// Worst-case time to become ready (or not ready), in milliseconds (`TO * 500`).
    pub timeout_ms: u64,
    /// Smallest memory page size, in bytes (`4 KiB << MPSMIN`).
    pub min_page: u64,
    /// The NVM command set is supported (CSS bit 0).
    pub nvm: bool,
}

impl Cap {
    /// Decodes the 64-bit CAP register.
    pub fn decode(cap: u64) -> Self {
        Self {
            max_queue_entries: (cap & 0xffff) as u32 + 1,
            doorbell_stride: 4 << ((cap >> 32) & 0xf),
            timeout_ms: ((cap >> 24) & 0xff) * 500,
            min_page: 0x1000 << ((cap >> 48) & 0xf),
            nvm: (cap >> 37) & 1 == 1,
        }
    }
}

/// Offset in BAR 0 of queue `qid`'s submission tail (`completion == false`) or completion
/// head doorbell.
pub fn doorbell(qid: u16, completion: bool, stride: usize) -> usize {
    reg::DOORBELLS + (2 * usize::from(qid) + usize::from(completion)) * stride
}

/// CC to enable the controller: NVM command set, 4 KiB pages, round robin, 64-byte
/// submission and 16-byte completion entries (3.1.3.5).
pub const CC_ENABLE: u32 = 1 | (6 << 16) | (4 << 20);

/// How the driver runs one controller, after the board's quirks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Entries of the admin queues.
    pub admin_entries: u32,
    /// Entries of the I/O queue pair.
    pub io_entries: u32,
    /// Wait after CC.EN = 1 before polling CSTS.RDY, in milliseconds.
    pub ready_delay_ms: u32,
    /// Give up waiting for CSTS.RDY after this long, in milliseconds.
    pub ready_timeout_ms: u64,
}

/// The driver's own ceiling on queue entries (one page of 64-byte entries).
pub const MAX_QUEUE_ENTRIES: u32 = 64;

/// The plan for a controller with capabilities `cap` under quirks `cfg`: queues as deep
/// as the controller, the driver and the quirk's depth limit all allow; the quirk's ready
/// delay; CAP.TO (plus the delay) as the ready timeout.
pub fn plan(cap: &Cap, cfg: &StorageConfig) -> Plan {
    let io = cap
        .max_queue_entries
        .min(MAX_QUEUE_ENTRIES)
        .min(cfg.queue_depth)
        .max(2);
    Plan {
        admin_entries: cap.max_queue_entries.clamp(2, 16),
        io_entries: io,
        ready_delay_ms: cfg.ready_delay_ms,
        ready_timeout_ms: cap.timeout_ms.max(500) + u64::from(cfg.ready_delay_ms),
    }
}

/// A submission queue entry (4.2), the fields this driver fills.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Command {
    /// Opcode.
    pub opcode: u8,
    /// Command identifier.
    pub cid: u16,
    /// Namespace.
    pub nsid: u32,
    /// PRP entry 1.
    pub prp1: u64,
    /// PRP entry 2 (or the PRP list's address).
    pub prp2: u64,
    /// Command dwords 10..=15.
    pub cdw: [u32; 6],
}

impl Command {
    /// The 64 bytes the controller reads.
    pub fn to_bytes(&self) -> [u8; 64] {
        let mut b = [0u8; 64];
        let cdw0 = u32::from(self.opcode) | (u32::from(self.cid) << 16);
        b[0..4].copy_from_slice(&cdw0.to_le_bytes());
        b[4..8].copy_from_slice(&self.nsid.to_le_bytes());
        b[24..32].copy_from_slice(&self.prp1.to_le_bytes());
        b[32..40].copy_from_slice(&self.prp2.to_le_bytes());
        for (i, d) in self.cdw.iter().enumerate() {
            b[40 + 4 * i..44 + 4 * i].copy_from_slice(&d.to_le_bytes());
        }
        b
    }

    /// Identify (5.17): `cns` 1 = controller, 0 = namespace `nsid`; data to `prp1`.
    pub fn identify(cns: u8, nsid: u32, prp1: u64) -> Self {
        let mut cdw = [0; 6];
        cdw[0] = u32::from(cns);
        Self {
            opcode: op::IDENTIFY,
            nsid,
            prp1,
            cdw,
            ..Self::default()
        }
    }

    /// Set Features, Number of Queues (5.27.1.5): one I/O submission and one completion
    /// queue (0-based counts).
    pub fn one_queue_pair() -> Self {
        Self {
            opcode: op::SET_FEATURES,
            cdw: [0x07, 0, 0, 0, 0, 0],
            ..Self::default()
        }
    }

    /// Create I/O Completion Queue `qid` of `entries` at `base`, physically contiguous,
    /// interrupts off (polled).
    pub fn create_io_cq(qid: u16, entries: u32, base: u64) -> Self {
        Self {
            opcode: op::CREATE_IO_CQ,
            prp1: base,
            cdw: [((entries - 1) << 16) | u32::from(qid), 1, 0, 0, 0, 0],
            ..Self::default()
        }
    }

    /// Create I/O Submission Queue `qid` of `entries` at `base`, completing to `cqid`.
    pub fn create_io_sq(qid: u16, entries: u32, base: u64, cqid: u16) -> Self {
        Self {
            opcode: op::CREATE_IO_SQ,
            prp1: base,
            cdw: [
                ((entries - 1) << 16) | u32::from(qid),
                (u32::from(cqid) << 16) | 1,
                0,
                0,
                0,
                0,
            ],
            ..Self::default()
        }
    }

    /// Read (`write == false`) or Write of `blocks` logical blocks at `slba` of `nsid`.
    pub fn rw(write: bool, nsid: u32, slba: u64, blocks: u32, prp: Prp) -> Self {
        Self {
            opcode: if write { op::WRITE } else { op::READ },
            nsid,
            prp1: prp.prp1,
            prp2: prp.prp2,
            cdw: [slba as u32, (slba >> 32) as u32, blocks - 1, 0, 0, 0],
            ..Self::default()
        }
    }

    /// Flush the volatile write cache of `nsid`.
    pub fn flush(nsid: u32) -> Self {
        Self {
            opcode: op::FLUSH,
            nsid,
            ..Self::default()
        }
    }
}

/// A completion queue entry (4.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Completion {
    /// Command-specific result (dword 0).
    pub result: u32,
    /// Submission queue head the controller reached.
    pub sq_head: u16,
    /// The command it completes.
    pub cid: u16,
    /// Phase tag.
    pub phase: bool,
    /// Status (type and code, 15 bits); 0 = success.
    pub status: u16,
}

impl Completion {
    /// Decodes 16 bytes of a completion queue.
    pub fn decode(b: &[u8; 16]) -> Self {
        let dw =
            |i: usize| u32::from_le_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]]);
        let dw3 = dw(3);
        Self {
            result: dw(0),
            sq_head: dw(2) as u16,
            cid: dw3 as u16,
            phase: (dw3 >> 16) & 1 == 1,
            status: ((dw3 >> 17) & 0x7fff) as u16,
        }
    }
}

/// The two PRP fields of a command.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Prp {
    /// First data page (may start inside it).
    pub prp1: u64,
    /// Second page, the PRP list's address, or 0.
    pub prp2: u64,
}

/// PRPs for `len` bytes at bus address `data` with `page`-byte memory pages (4.1.1): one
/// page needs PRP1 only, two pages PRP2 as the second page, more a PRP list at `list`
/// (returned, to be written there; it must fit one page, so at most `page / 8` entries,
/// which the caller ensures by bounding each transfer with [`max_transfer`]).
pub fn prps(data: u64, len: u64, page: u64, list: u64) -> (Prp, Vec<u64>) {
    let first_end = (data / page + 1) * page;
    let mut pages = Vec::new();
    let mut at = first_end;
    while at < data + len {
        pages.push(at);
        at += page;
    }
    match pages.len() {
        0 => (
            Prp {
                prp1: data,
                prp2: 0,
            },
            Vec::new(),
        ),
        1 => (
            Prp {
                prp1: data,
                prp2: pages[0],
            },
            Vec::new(),
        ),
        _ => (
            Prp {
                prp1: data,
                prp2: list,
            },
            pages,
        ),
    }
}

/// One command's share of a DMA list ([`prp_commands`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PrpCommand {
    /// Bytes it moves.
    pub bytes: u64,
    /// Its first piece (PRP1: may start inside a page).
    pub prp1: u64,
    /// The pages after the first, in order, as PRP entries in little-endian byte order (as
    /// they go to the device: see [`Self::list_bytes`]): the second page (PRP2) when there
    /// is one, the PRP list's contents when there are more.
    pub entries: Vec<u64>,
}

impl PrpCommand {
    /// Pages after the first.
    pub fn more_pages(&self) -> usize {
        self.entries.len()
    }

    /// The PRP list as the device reads it.
    pub fn list_bytes(&self) -> &[u8] {
        bytemuck::cast_slice(&self.entries)
    }

    /// PRP1/PRP2, the PRP list (when there is one) being at `list`.
    pub fn prp(&self, list: u64) -> Prp {
        let prp2 = match self.more_pages() {
            0 => 0,
            1 => self.entries.first().map_or(0, |&e| u64::from_le(e)),
            _ => list,
        };
        Prp {
            prp1: self.prp1,
            prp2,
        }
    }

    fn add(&mut self, at: u64, len: u64) {
        if self.bytes == 0 {
            self.prp1 = at;
        } else {
            self.entries.push(at.to_le());
        }
        self.bytes += len;
    }
}

/// A DMA list as commands of at most `max` bytes each, if PRPs can describe it (4.3): cut
/// into pieces that each lie in one `page`-byte memory page, the first piece starts dword
/// aligned, every later piece starts a page and every piece but the last ends one; `None`
/// otherwise (the driver then goes through its bounce buffer). A guest's own PRPs,
/// translated page by page, always pass; a buffer that is contiguous in host memory passes
/// whatever its length. A piece is split where a command ends, so with `max` a multiple
/// of the page no bigger than [`max_transfer`]'s bound each command's pieces again satisfy
/// the PRP rules and need at most one PRP list page. One pass, no list per piece: it runs
/// for every guest request on the DMA path.
pub fn prp_commands(segs: &[DmaSeg], page: u64, max: u64) -> Option<Vec<PrpCommand>> {
    let total: u64 = segs.iter().map(|s| s.len).sum();
    let mut out = Vec::with_capacity(total.div_ceil(max.max(1)) as usize);
    let per_command = (max / page + 2) as usize;
    let mut cur = PrpCommand {
        entries: Vec::with_capacity(per_command.min(total.div_ceil(page) as usize + 1)),
        ..PrpCommand::default()
    };
    if max == 0 || !page.is_power_of_two() {
        return None;
    }
    let mask = page - 1;
    let mut room = max;
    // Where the previous segment ended (None before the first).
    let mut prev_end: Option<u64> = None;
    for s in segs.iter().filter(|s| s.len > 0) {
        let end = s.addr.checked_add(s.len)?;
        // Inside a segment every piece but the first starts a page and every piece but
        // the last ends one, so only a segment's start needs checking: the first piece
        // dword aligned, later ones starting a page right after a piece that ended one.
        let start_ok = match prev_end {
            None => s.addr & 3 == 0,
            Some(e) => s.addr & mask == 0 && e & mask == 0,
        };
        if !start_ok {
            return None;
        }
        let mut at = s.addr;
        while at < end {
            let stop = end.min((at | mask) + 1);
            let n = (stop - at).min(room);
            cur.add(at, n);
            at += n;
            room -= n;
            if room == 0 {
                let next = PrpCommand {
                    entries: Vec::with_capacity(per_command),
                    ..PrpCommand::default()
                };
                out.push(core::mem::replace(&mut cur, next));
                room = max;
            }
        }
        prev_end = Some(end);
    }
    prev_end?;
    if cur.bytes > 0 {
        out.push(cur);
    }
    Some(out)
}

/// The largest transfer in bytes: the controller's MDTS (`2^mdts` minimum pages, 0 = no
/// limit), the driver's bounce buffer, and one page of PRP list.
pub fn max_transfer(mdts: u8, min_page: u64, buffer: u64) -> u64 {
    let by_mdts = if mdts == 0 || mdts >= 32 {
        u64::MAX
    } else {
        min_page << mdts
    };
    by_mdts.min(buffer).min(min_page / 8 * min_page)
}

/// What Identify Controller says that the driver uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdController {
    /// Serial number.
    pub serial: alloc::string::String,
    /// Model number.
    pub model: alloc::string::String,
    /// MDTS.
    pub mdts: u8,
    /// Number of namespaces.
    pub namespaces: u32,
    /// A volatile write cache is present.
    pub write_cache: bool,
}

fn text(b: &[u8]) -> alloc::string::String {
    alloc::string::String::from_utf8_lossy(b)
        .trim_end_matches([' ', '\0'])
        .trim()
        .into()
}

impl IdController {
    /// Decodes the 4 KiB Identify Controller data structure (5.17.2.1).
    pub fn decode(d: &[u8]) -> Option<Self> {
        let d = d.get(..4096)?;
        Some(Self {
            serial: text(&d[4..24]),
            model: text(&d[24..64]),
            mdts: d[77],
            namespaces: u32::from_le_bytes(d[516..520].try_into().ok()?),
            write_cache: d[525] & 1 == 1,
        })
    }
}

/// What Identify Namespace says that the driver uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdNamespace {
    /// Size in logical blocks.
    pub blocks: u64,
    /// Logical block size, log2 bytes.
    pub lba_shift: u32,
}

impl IdNamespace {
    /// Decodes the 4 KiB Identify Namespace data structure (NVM command set spec 4.1.5.1);
    /// `None` for an inactive namespace or a block size below 512 bytes.
    pub fn decode(d: &[u8]) -> Option<Self> {
        let d = d.get(..4096)?;
        let blocks = u64::from_le_bytes(d[0..8].try_into().ok()?);
        let format = usize::from(d[26] & 0xf);
        let lba_shift = u32::from(d[128 + 4 * format + 2]);
        (blocks > 0 && (9..=16).contains(&lba_shift)).then_some(Self { blocks, lba_shift })
    }
}

/// The logical blocks covering 512-byte sectors `[lba, lba + count)` on a namespace with
/// `2^lba_shift`-byte blocks: `(first block, blocks, byte offset of the first sector in
/// the first block)`.
pub fn covering(lba: u64, count: u64, lba_shift: u32) -> (u64, u64, usize) {
    let per = 1u64 << (lba_shift - 9);
    let first = lba / per;
    let end = (lba + count).div_ceil(per);
    (first, end - first, ((lba % per) << 9) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hypervisor::plugin::QuirkData;

    // A CAP like QEMU 7.2's NVMe: MQES 2047, CQR, TO 15 (7.5 s), CSS NVM, MPSMIN 0, MPSMAX 4.
    const QEMU_CAP: u64 = 0x0040_0020_0f01_07ff;

    #[test]
    fn cap_fields() {
        let c = Cap::decode(QEMU_CAP);
        assert_eq!(c.max_queue_entries, 2048);
        assert_eq!(c.doorbell_stride, 4);
        assert_eq!(c.timeout_ms, 7500);
        assert_eq!(c.min_page, 4096);
        assert!(c.nvm);
        assert_eq!(doorbell(1, true, 4), 0x100c);
        assert_eq!(doorbell(0, false, 16), 0x1000);
        assert_eq!(doorbell(1, false, 16), 0x1020);
    }

    #[test]
    fn quirks_change_the_plan_queue_depth_and_ready_delay() {
        let cap = Cap::decode(QEMU_CAP);
        let plain = plan(&cap, &StorageConfig::default());
        assert_eq!(plain.io_entries, MAX_QUEUE_ENTRIES);
        assert_eq!(plain.ready_delay_ms, 0);
        assert_eq!(plain.ready_timeout_ms, 7500);
        // A quirk entry as a board's quirk set would carry it (Linux's
        // NVME_QUIRK_DELAY_BEFORE_CHK_RDY and a shallow-queue drive).
        let quirk = QuirkData::Storage {
            max_queue_depth: 8,
            no_write_cache: false,
            force_512_sectors: false,
            ignore_subnqn: false,
            ready_delay_ms: 2300,
            dma_alias_function: None,
        };
        let mut cfg = StorageConfig::default();
        assert!(plugin_quirks_storage::apply(&quirk, &mut cfg));
        let quirked = plan(&cap, &cfg);
        assert_eq!(quirked.io_entries, 8);
        assert_eq!(quirked.ready_delay_ms, 2300);
        assert_eq!(quirked.ready_timeout_ms, 7500 + 2300);
        assert_eq!(quirked.admin_entries, plain.admin_entries);
    }

    #[test]
    fn commands_are_laid_out_as_the_spec_says() {
        let prp = Prp {
            prp1: 0x4000_1000,
            prp2: 0x4000_2000,
        };
        let b = Command {
            cid: 7,
            ..Command::rw(true, 1, 0x1_0000_0002, 16, prp)
        }
        .to_bytes();
        assert_eq!(&b[0..4], &[0x01, 0, 7, 0]);
        assert_eq!(&b[4..8], &[1, 0, 0, 0]);
        assert_eq!(
            u64::from_le_bytes(b[24..32].try_into().unwrap()),
            0x4000_1000
        );
        assert_eq!(
            u64::from_le_bytes(b[32..40].try_into().unwrap()),
            0x4000_2000
        );
        assert_eq!(u32::from_le_bytes(b[40..44].try_into().unwrap()), 2);
        assert_eq!(u32::from_le_bytes(b[44..48].try_into().unwrap()), 1);
        assert_eq!(
            u32::from_le_bytes(b[48..52].try_into().unwrap()),
            15,
            "0-based count"
        );
        let sq = Command::create_io_sq(1, 64, 0x8000, 1).to_bytes();
        assert_eq!(
            u32::from_le_bytes(sq[40..44].try_into().unwrap()),
            (63 << 16) | 1
        );
        assert_eq!(
            u32::from_le_bytes(sq[44..48].try_into().unwrap()),
            (1 << 16) | 1
        );
    }

    #[test]
    fn completions_decode_phase_status_and_cid() {
        let mut b = [0u8; 16];
        b[8] = 3; // SQ head
        let dw3: u32 = 0x0042 | (1 << 16) | (0x281 << 17);
        b[12..16].copy_from_slice(&dw3.to_le_bytes());
        let c = Completion::decode(&b);
        assert_eq!(
            (c.cid, c.phase, c.status, c.sq_head),
            (0x42, true, 0x281, 3)
        );
    }

    #[test]
    fn dma_lists_become_commands_within_one_prp_list_page() {
        let seg = |addr, len| DmaSeg { addr, len };
        let entries = |c: &PrpCommand| -> Vec<u64> {
            c.list_bytes()
                .chunks_exact(8)
                .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
                .collect()
        };
        // A contiguous run starting 512 bytes into a page: a piece per page.
        let c = prp_commands(&[seg(0x1_0200, 3 * 4096)], 4096, 1 << 20).unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!((c[0].prp1, c[0].bytes), (0x1_0200, 3 * 4096));
        assert_eq!(entries(&c[0]), vec![0x1_1000, 0x1_2000, 0x1_3000]);
        assert_eq!(
            c[0].prp(0x9000),
            Prp {
                prp1: 0x1_0200,
                prp2: 0x9000
            }
        );
        // Pages in any order, each its own segment.
        let c = prp_commands(
            &[seg(0x8000, 4096), seg(0x3000, 4096), seg(0x5000, 100)],
            4096,
            1 << 20,
        )
        .unwrap();
        assert_eq!(entries(&c[0]), vec![0x3000, 0x5000]);
        assert_eq!(prp_commands(&[], 4096, 4096), None);
        assert_eq!(prp_commands(&[seg(0x1001, 8)], 4096, 4096), None);
        assert_eq!(
            prp_commands(&[seg(0x1000, 8), seg(0x3000, 8)], 4096, 4096),
            None
        );
        assert_eq!(
            prp_commands(&[seg(0x1000, 4096), seg(0x3008, 8)], 4096, 4096),
            None
        );
        assert_eq!(prp_commands(&[seg(u64::MAX - 8, 16)], 4096, 4096), None);
        // The largest transfer with an offset: 1025 pieces in two commands, each one PRP1
        // and at most 512 list entries.
        let max = max_transfer(0, 4096, u64::MAX);
        assert_eq!(max, 2 << 20);
        let c = prp_commands(&[seg(0x20_0200, 4 << 20)], 4096, max).unwrap();
        assert_eq!(c.len(), 2);
        for cmd in &c {
            assert_eq!(cmd.bytes, 2 << 20);
            assert_eq!(cmd.prp(0x9000).prp2, 0x9000);
            assert!(cmd.more_pages() <= 512);
            assert!(entries(cmd).iter().all(|a| a % 4096 == 0));
        }
        // The second command starts where the first stopped, inside a page.
        assert_eq!(c[1].prp1, 0x20_0200 + (2 << 20));
        // One and two pages need no list.
        let one = prp_commands(&[seg(0x5000, 4096)], 4096, max).unwrap();
        assert_eq!(
            one[0].prp(0x9000),
            Prp {
                prp1: 0x5000,
                prp2: 0
            }
        );
        let two = prp_commands(&[seg(0x5800, 2048), seg(0x7000, 4096)], 4096, max).unwrap();
        assert_eq!(
            two[0].prp(0x9000),
            Prp {
                prp1: 0x5800,
                prp2: 0x7000
            }
        );
        assert_eq!(two[0].more_pages(), 1);
    }

    #[test]
    fn prps_for_one_two_and_many_pages() {
        let page = 4096;
        assert_eq!(prps(0x10_0000, 4096, page, 0x9000).0.prp2, 0);
        assert_eq!(prps(0x10_0000, 8192, page, 0x9000).0.prp2, 0x10_1000);
        // Starting inside a page, 4 KiB spans two pages.
        assert_eq!(prps(0x10_0200, 4096, page, 0x9000).0.prp2, 0x10_1000);
        let (p, list) = prps(0x10_0000, 5 * 4096, page, 0x9000);
        assert_eq!(
            p,
            Prp {
                prp1: 0x10_0000,
                prp2: 0x9000
            }
        );
        assert_eq!(list, [0x10_1000, 0x10_2000, 0x10_3000, 0x10_4000]);
    }

    #[test]
    fn transfers_are_bounded_by_mdts_buffer_and_one_list_page() {
        assert_eq!(max_transfer(5, 4096, 128 << 10), 128 << 10);
        assert_eq!(max_transfer(2, 4096, 128 << 10), 16 << 10);
        assert_eq!(max_transfer(0, 4096, 8 << 20), 2 << 20);
    }

    #[test]
    fn sectors_map_onto_bigger_logical_blocks() {
        assert_eq!(covering(5, 3, 9), (5, 3, 0));
        assert_eq!(covering(9, 1, 12), (1, 1, 512));
        assert_eq!(covering(7, 2, 12), (0, 2, 3584));
        assert_eq!(covering(8, 8, 12), (1, 1, 0));
    }

    #[test]
    fn identify_data_decodes() {
        let mut c = alloc::vec![0u8; 4096];
        c[4..12].copy_from_slice(b"hv-nvme0");
        c[24..39].copy_from_slice(b"QEMU NVMe Ctrl ");
        c[77] = 7;
        c[516] = 1;
        c[525] = 1;
        let id = IdController::decode(&c).unwrap();
        assert_eq!(
            (id.serial.as_str(), id.model.as_str()),
            ("hv-nvme0", "QEMU NVMe Ctrl")
        );
        assert_eq!((id.mdts, id.namespaces, id.write_cache), (7, 1, true));
        let mut n = alloc::vec![0u8; 4096];
        n[0..8].copy_from_slice(&131072u64.to_le_bytes());
        n[26] = 1;
        n[128 + 4 + 2] = 12;
        assert_eq!(
            IdNamespace::decode(&n),
            Some(IdNamespace {
                blocks: 131072,
                lba_shift: 12
            })
        );
        n[0..8].copy_from_slice(&0u64.to_le_bytes());
        assert_eq!(IdNamespace::decode(&n), None);
    }
}
