//! The ATA disk behind the port: its task-file registers, its settings (write cache,
//! transfer mode, power mode) and the commands it executes against a [`BlockDevice`].
//!
//! The HBA side (command list, PRDs, FISes) is not here: data moves through a
//! [`Transfer`], which the port implements over the command's PRD table.
#![deny(unsafe_code)]

use super::VAhciQuirks;
use crate::block::{BlockDevice, BlockError, SECTOR};
use alloc::vec;

/// ATA error register: command aborted.
pub const ERR_ABRT: u8 = 0x04;
/// ATA error register: address not found (LBA out of range).
pub const ERR_IDNF: u8 = 0x10;
/// ATA error register: uncorrectable data error.
pub const ERR_UNC: u8 = 0x40;
/// Status of a command that succeeded (DRDY, and bit 4 as disks set it).
pub const STATUS_OK: u8 = 0x50;
/// Status of a command that failed: [`STATUS_OK`] plus ERR.
pub const STATUS_ERR: u8 = 0x51;

/// Sectors moved per block-device call (bounds the bounce buffer: 64 KiB).
const CHUNK_SECTORS: u64 = 128;
/// The DRQ data block size SET MULTIPLE may choose at most (IDENTIFY word 47).
const MAX_MULTIPLE: u8 = 16;
/// Power-on transfer mode: UDMA 6 (SET FEATURES 03h sub-command value).
const DEFAULT_XFER_MODE: u8 = 0x46;

/// The ATA command set codes this disk knows.
pub mod cmd {
    /// READ DMA EXT.
    pub const READ_DMA_EXT: u8 = 0x25;
    /// READ LOG EXT.
    pub const READ_LOG_EXT: u8 = 0x2f;
    /// WRITE DMA EXT.
    pub const WRITE_DMA_EXT: u8 = 0x35;
    /// READ VERIFY SECTORS.
    pub const READ_VERIFY: u8 = 0x40;
    /// READ VERIFY SECTORS EXT.
    pub const READ_VERIFY_EXT: u8 = 0x42;
    /// READ FPDMA QUEUED (NCQ).
    pub const READ_FPDMA: u8 = 0x60;
    /// WRITE FPDMA QUEUED (NCQ).
    pub const WRITE_FPDMA: u8 = 0x61;
    /// EXECUTE DEVICE DIAGNOSTIC.
    pub const EXECUTE_DIAGNOSTIC: u8 = 0x90;
    /// SET MULTIPLE MODE.
    pub const SET_MULTIPLE: u8 = 0xc6;
    /// READ DMA (28-bit).
    pub const READ_DMA: u8 = 0xc8;
    /// WRITE DMA (28-bit).
    pub const WRITE_DMA: u8 = 0xca;
    /// STANDBY IMMEDIATE.
    pub const STANDBY_IMMEDIATE: u8 = 0xe0;
    /// IDLE IMMEDIATE.
    pub const IDLE_IMMEDIATE: u8 = 0xe1;
    /// STANDBY.
    pub const STANDBY: u8 = 0xe2;
    /// IDLE.
    pub const IDLE: u8 = 0xe3;
    /// CHECK POWER MODE.
    pub const CHECK_POWER_MODE: u8 = 0xe5;
    /// FLUSH CACHE.
    pub const FLUSH_CACHE: u8 = 0xe7;
    /// FLUSH CACHE EXT.
    pub const FLUSH_CACHE_EXT: u8 = 0xea;
    /// IDENTIFY DEVICE.
    pub const IDENTIFY: u8 = 0xec;
    /// SET FEATURES.
    pub const SET_FEATURES: u8 = 0xef;
}

/// The ATA registers a Register Host to Device FIS carries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TaskFile {
    /// Command code.
    pub command: u8,
    /// Features (15:8 from the FIS's features-exp byte).
    pub features: u16,
    /// LBA 47:0 as the FIS carries it.
    pub lba: u64,
    /// Device register.
    pub device: u8,
    /// Sector count (15:8 from the FIS's count-exp byte).
    pub count: u16,
}

impl TaskFile {
    /// Decodes the first 16 bytes of a Register H2D FIS.
    pub fn from_fis(f: &[u8; 20]) -> Self {
        let lba = u64::from(f[4])
            | u64::from(f[5]) << 8
            | u64::from(f[6]) << 16
            | u64::from(f[8]) << 24
            | u64::from(f[9]) << 32
            | u64::from(f[10]) << 40;
        Self {
            command: f[2],
            features: u16::from(f[3]) | u16::from(f[11]) << 8,
            lba,
            device: f[7],
            count: u16::from(f[12]) | u16::from(f[13]) << 8,
        }
    }

    /// LBA and sector count of a 48-bit command (a count of 0 means 65536).
    fn ext_range(&self) -> (u64, u64) {
        let n = if self.count == 0 {
            65536
        } else {
            u64::from(self.count)
        };
        (self.lba, n)
    }

    /// LBA and sector count of a 28-bit command (LBA 27:24 in the device register, a
    /// count of 0 means 256).
    fn lba28_range(&self) -> (u64, u64) {
        let lba = (self.lba & 0xff_ffff) | u64::from(self.device & 0x0f) << 24;
        let n = match self.count & 0xff {
            0 => 256,
            c => u64::from(c),
        };
        (lba, n)
    }
}

/// Where the disk's data goes to or comes from: the command's PRD table.
pub trait Transfer {
    /// Moves `data` to the guest, after what was moved before.
    fn write_to_guest(&mut self, data: &[u8]) -> Result<(), Fault>;
    /// Fills `buf` from the guest, after what was moved before.
    fn read_from_guest(&mut self, buf: &mut [u8]) -> Result<(), Fault>;
    /// Moves the next `len` bytes straight between the guest's buffers and `disk` at `lba`
    /// by DMA (`write`: from the guest to the disk), as far as the guest's memory and the
    /// disk can: `None` when either cannot, or the buffers do not hold `len` bytes of RAM
    /// (nothing was done: the caller copies, and meets the same fault the copy would);
    /// `Some` with the disk's answer otherwise (the transfer then moved past the bytes on
    /// success, and not at all on a disk error). The default cannot.
    fn direct(
        &mut self,
        disk: &mut dyn BlockDevice,
        lba: u64,
        len: u64,
        write: bool,
    ) -> Option<Result<(), BlockError>> {
        let _ = (disk, lba, len, write);
        None
    }
}

/// A failure of the HBA (not of the disk): the port stops until software restarts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Guest memory could not be read or written (PxIS.HBFS).
    HostBus,
    /// The PRD table is shorter than the data (PxIS.OFS).
    Overflow,
    /// The command FIS is not one the device accepts (PxIS.IFS).
    Interface,
}

/// The FIS a finished command ends with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndFis {
    /// A Device to Host Register FIS.
    D2h,
    /// A PIO Setup FIS with the ending status (PIO data-in: IDENTIFY).
    PioIn,
}

/// The registers a finished command leaves in the device (status, error, LBA, count).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Completion {
    /// ATA status.
    pub status: u8,
    /// ATA error.
    pub error: u8,
    /// LBA register (the failing sector on media errors).
    pub lba: u64,
    /// Count register.
    pub count: u16,
    /// Device register.
    pub device: u8,
    /// How the device reports it.
    pub fis: EndFis,
}

impl Completion {
    fn ok(fis: EndFis) -> Self {
        Self {
            status: STATUS_OK,
            error: 0,
            lba: 0,
            count: 0,
            device: 0,
            fis,
        }
    }

    fn err(error: u8, lba: u64) -> Self {
        Self {
            status: STATUS_ERR,
            error,
            lba,
            count: 0,
            device: 0x40,
            fis: EndFis::D2h,
        }
    }

    /// The command failed (ERR in the status).
    pub fn failed(&self) -> bool {
        self.status & super::regs::ATA_ERR != 0
    }
}

/// The power mode CHECK POWER MODE reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PowerMode {
    /// Active.
    Active,
    /// Idle (IDLE / IDLE IMMEDIATE).
    Idle,
    /// Standby (STANDBY / STANDBY IMMEDIATE) until the next media access.
    Standby,
}

/// The disk's identity and its settings. Plain data: no references.
#[derive(Clone, Debug)]
pub struct Drive {
    /// Serial number, ASCII, space-padded.
    pub serial: [u8; 20],
    /// What the guest is shown.
    pub quirks: VAhciQuirks,
    /// The volatile write cache is on (writes complete before they are stable).
    pub write_cache: bool,
    /// SET MULTIPLE's DRQ block size (0: not set).
    pub multiple: u8,
    /// SET FEATURES 03h transfer mode value.
    pub xfer_mode: u8,
    /// Power mode.
    pub power: PowerMode,
    /// The last failed queued command, until the guest reads log 10h.
    pub ncq_error: Option<NcqError>,
}

/// What the NCQ Command Error log (10h) reports of a failed queued command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NcqError {
    /// Its tag.
    pub tag: u8,
    /// Status and error registers, LBA, device, count.
    pub completion: Completion,
}

/// Model number shown in IDENTIFY (words 27-46).
pub const MODEL: &str = "HV Virtual SATA Disk";
/// Firmware revision shown in IDENTIFY (words 23-26).
pub const FIRMWARE: &str = env!("CARGO_PKG_VERSION");

impl Drive {
    /// A disk with these identity strings, in its power-on state.
    pub fn new(serial: &str, quirks: VAhciQuirks) -> Self {
        let mut s = [b' '; 20];
        for (d, c) in s.iter_mut().zip(serial.bytes()) {
            *d = if c.is_ascii_graphic() || c == b' ' {
                c
            } else {
                b'_'
            };
        }
        let mut d = Self {
            serial: s,
            quirks,
            write_cache: false,
            multiple: 0,
            xfer_mode: DEFAULT_XFER_MODE,
            power: PowerMode::Active,
            ncq_error: None,
        };
        d.reset();
        d
    }

    /// Back to the power-on settings (hardware reset: COMRESET, HBA reset).
    pub fn reset(&mut self) {
        self.write_cache = !self.quirks.no_write_cache;
        self.multiple = 0;
        self.xfer_mode = DEFAULT_XFER_MODE;
        self.power = PowerMode::Active;
        self.ncq_error = None;
    }

    /// NCQ queue depth shown to the guest (1..=32).
    pub fn queue_depth(&self) -> u32 {
        match self.quirks.max_queue_depth {
            0 => 32,
            n => n.min(32),
        }
    }

    /// The 256 words of IDENTIFY DEVICE for a disk of `sectors` sectors.
    pub fn identify(&self, sectors: u64, ncq: bool) -> [u16; 256] {
        let mut w = [0u16; 256];
        // General configuration: an ATA device, not removable.
        w[0] = 0x0040;
        // Obsolete CHS geometry, as disks still fill it: 16 heads, 63 sectors per track.
        w[1] = (sectors / (16 * 63)).min(16383) as u16;
        w[3] = 16;
        w[6] = 63;
        put_string(&mut w[10..20], &self.serial);
        put_string(&mut w[23..27], FIRMWARE.as_bytes());
        put_string(&mut w[27..47], MODEL.as_bytes());
        w[47] = 0x8000 | u16::from(MAX_MULTIPLE);
        // Capabilities: IORDY supported, LBA, DMA.
        w[49] = 1 << 11 | 1 << 9 | 1 << 8;
        w[50] = 0x4000;
        // Words 64-70 and 88 are valid.
        w[53] = 0x0006;
        if self.multiple != 0 {
            w[59] = 0x0100 | u16::from(self.multiple);
        }
        let lba28 = sectors.min(0x0fff_ffff) as u32;
        w[60] = lba28 as u16;
        w[61] = (lba28 >> 16) as u16;
        // Multiword DMA 0-2 supported; selected one (if any) in the high byte.
        w[63] = 0x0007 | mode_bit(self.xfer_mode, 0x20, 2);
        // PIO 3 and 4; minimum cycle times (ns) for MWDMA 2 and PIO 4.
        w[64] = 0x0003;
        w[65] = 120;
        w[66] = 120;
        w[67] = 120;
        w[68] = 120;
        if ncq {
            w[75] = (self.queue_depth() - 1) as u16;
        }
        // SATA capabilities: Gen1, Gen2, Gen3 signalling; NCQ.
        w[76] = 0x000e | if ncq { 1 << 8 } else { 0 };
        // Major version: ATA/ATAPI-4 to ATA8-ACS.
        w[80] = 0x01f0;
        // Command sets supported (82-84) and enabled (85-87): power management, write
        // cache (unless the quirk hides it), FLUSH CACHE, LBA48, FLUSH CACHE EXT.
        let wc_supported = !self.quirks.no_write_cache;
        w[82] = 1 << 3 | if wc_supported { 1 << 5 } else { 0 };
        w[83] = 0x4000 | 1 << 13 | 1 << 12 | 1 << 10;
        // General purpose logging (READ LOG EXT: the directory and, with NCQ, log 10h).
        w[84] = 0x4000 | 1 << 5;
        w[85] = 1 << 3 | if self.write_cache { 1 << 5 } else { 0 };
        w[86] = 1 << 13 | 1 << 12 | 1 << 10;
        w[87] = 0x4000 | 1 << 5;
        // Ultra DMA 0-6 supported; the selected mode in the high byte.
        w[88] = 0x007f | mode_bit(self.xfer_mode, 0x40, 6);
        w[100] = sectors as u16;
        w[101] = (sectors >> 16) as u16;
        w[102] = (sectors >> 32) as u16;
        w[103] = (sectors >> 48) as u16;
        // Word 106 valid; one 512-byte logical sector per physical sector.
        w[106] = 0x4000;
        // Integrity word: signature A5h, checksum so that all 512 bytes sum to 0.
        w[255] = 0x00a5;
        let sum = w
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .fold(0u8, u8::wrapping_add);
        w[255] |= u16::from(sum.wrapping_neg()) << 8;
        w
    }

    /// Executes a non-queued command. Data moves through `xfer`; a [`Fault`] is an HBA
    /// failure (guest memory, short PRD table), anything the disk reports is a
    /// [`Completion`] with ERR.
    pub fn execute(
        &mut self,
        disk: &mut dyn BlockDevice,
        tf: &TaskFile,
        ncq: bool,
        xfer: &mut dyn Transfer,
    ) -> Result<Completion, Fault> {
        match tf.command {
            cmd::IDENTIFY => {
                let words = self.identify(disk.sectors(), ncq);
                let mut buf = [0u8; SECTOR];
                for (b, w) in buf.chunks_exact_mut(2).zip(words) {
                    b.copy_from_slice(&w.to_le_bytes());
                }
                xfer.write_to_guest(&buf)?;
                Ok(Completion::ok(EndFis::PioIn))
            }
            cmd::READ_DMA_EXT => {
                let (lba, n) = tf.ext_range();
                self.read(disk, lba, n, Some(xfer))
            }
            cmd::READ_DMA => {
                let (lba, n) = tf.lba28_range();
                self.read(disk, lba, n, Some(xfer))
            }
            cmd::READ_VERIFY_EXT => {
                let (lba, n) = tf.ext_range();
                self.read(disk, lba, n, None)
            }
            cmd::READ_VERIFY => {
                let (lba, n) = tf.lba28_range();
                self.read(disk, lba, n, None)
            }
            cmd::WRITE_DMA_EXT => {
                let (lba, n) = tf.ext_range();
                self.write(disk, lba, n, xfer)
            }
            cmd::WRITE_DMA => {
                let (lba, n) = tf.lba28_range();
                self.write(disk, lba, n, xfer)
            }
            cmd::FLUSH_CACHE | cmd::FLUSH_CACHE_EXT => Ok(self.flush(disk)),
            cmd::READ_LOG_EXT => self.read_log(tf, ncq, xfer),
            cmd::SET_FEATURES => Ok(self.set_features(tf)),
            // The self-test passed (diagnostic code 01h in the error register, which is
            // not an error) and the signature is back in the LBA and count registers.
            cmd::EXECUTE_DIAGNOSTIC => Ok(Completion {
                error: 0x01,
                lba: 1,
                count: 1,
                ..Completion::ok(EndFis::D2h)
            }),
            cmd::SET_MULTIPLE => {
                let n = (tf.count & 0xff) as u8;
                if n <= MAX_MULTIPLE && (n == 0 || n.is_power_of_two()) {
                    self.multiple = n;
                    Ok(Completion::ok(EndFis::D2h))
                } else {
                    Ok(Completion::err(ERR_ABRT, 0))
                }
            }
            cmd::STANDBY_IMMEDIATE | cmd::STANDBY => {
                // Spinning down writes the cache back first, as disks do.
                let done = self.flush(disk);
                if !done.failed() {
                    self.power = PowerMode::Standby;
                }
                Ok(done)
            }
            cmd::IDLE_IMMEDIATE | cmd::IDLE => {
                self.power = PowerMode::Idle;
                Ok(Completion::ok(EndFis::D2h))
            }
            cmd::CHECK_POWER_MODE => {
                let mut c = Completion::ok(EndFis::D2h);
                c.count = match self.power {
                    PowerMode::Active => 0xff,
                    PowerMode::Idle => 0x80,
                    PowerMode::Standby => 0x00,
                };
                Ok(c)
            }
            _ => Ok(Completion::err(ERR_ABRT, 0)),
        }
    }

    /// Reads `n` sectors at `lba` to the guest (READ DMA), or only from the disk
    /// (READ VERIFY: `xfer` is `None`).
    pub fn read(
        &mut self,
        disk: &mut dyn BlockDevice,
        lba: u64,
        n: u64,
        mut xfer: Option<&mut dyn Transfer>,
    ) -> Result<Completion, Fault> {
        if crate::block::check(lba, n, disk.sectors()).is_err() {
            return Ok(Completion::err(ERR_IDNF | ERR_ABRT, lba));
        }
        self.power = PowerMode::Active;
        if let Some(x) = xfer.as_deref_mut() {
            match x.direct(disk, lba, n * SECTOR as u64, false) {
                Some(Ok(())) => return Ok(Completion::ok(EndFis::D2h)),
                Some(Err(e)) => return Ok(media_error(e, ERR_UNC, lba)),
                None => {}
            }
        }
        let mut buf = vec![0u8; (n.min(CHUNK_SECTORS) as usize) * SECTOR];
        let mut done = 0;
        while done < n {
            let k = (n - done).min(CHUNK_SECTORS);
            let chunk = &mut buf[..k as usize * SECTOR];
            let at = lba + done;
            if let Err(e) = disk.read(at, chunk) {
                return Ok(media_error(e, ERR_UNC, at));
            }
            if let Some(x) = xfer.as_deref_mut() {
                x.write_to_guest(chunk)?;
            }
            done += k;
        }
        Ok(Completion::ok(EndFis::D2h))
    }

    /// Writes `n` sectors at `lba` from the guest; with the write cache off, they are
    /// stable before the command completes.
    pub fn write(
        &mut self,
        disk: &mut dyn BlockDevice,
        lba: u64,
        n: u64,
        xfer: &mut dyn Transfer,
    ) -> Result<Completion, Fault> {
        if crate::block::check(lba, n, disk.sectors()).is_err() {
            return Ok(Completion::err(ERR_IDNF | ERR_ABRT, lba));
        }
        if disk.read_only() {
            return Ok(Completion::err(ERR_ABRT, lba));
        }
        self.power = PowerMode::Active;
        match xfer.direct(disk, lba, n * SECTOR as u64, true) {
            Some(Err(e)) => return Ok(media_error(e, ERR_ABRT, lba)),
            Some(Ok(())) => {
                if !self.write_cache {
                    if let Err(e) = disk.flush() {
                        return Ok(media_error(e, ERR_ABRT, lba));
                    }
                }
                return Ok(Completion::ok(EndFis::D2h));
            }
            None => {}
        }
        let mut buf = vec![0u8; (n.min(CHUNK_SECTORS) as usize) * SECTOR];
        let mut done = 0;
        while done < n {
            let k = (n - done).min(CHUNK_SECTORS);
            let chunk = &mut buf[..k as usize * SECTOR];
            xfer.read_from_guest(chunk)?;
            let at = lba + done;
            if let Err(e) = disk.write(at, chunk) {
                return Ok(media_error(e, ERR_ABRT, at));
            }
            done += k;
        }
        if !self.write_cache {
            if let Err(e) = disk.flush() {
                return Ok(media_error(e, ERR_ABRT, lba));
            }
        }
        Ok(Completion::ok(EndFis::D2h))
    }

    /// A queued (NCQ) read or write: `n` sectors at `lba`, with FUA (forced unit access)
    /// making a write stable before it completes. A failure is recorded for log 10h.
    #[allow(clippy::too_many_arguments)]
    pub fn queued(
        &mut self,
        disk: &mut dyn BlockDevice,
        tag: u8,
        write: bool,
        lba: u64,
        n: u64,
        fua: bool,
        xfer: &mut dyn Transfer,
    ) -> Result<Completion, Fault> {
        let mut done = if write {
            self.write(disk, lba, n, xfer)?
        } else {
            self.read(disk, lba, n, Some(xfer))?
        };
        if write && fua && self.write_cache && !done.failed() {
            if let Err(e) = disk.flush() {
                done = media_error(e, ERR_ABRT, lba);
            }
        }
        if done.failed() {
            self.ncq_error = Some(NcqError {
                tag,
                completion: done,
            });
        }
        Ok(done)
    }

    /// READ LOG EXT: the log directory (00h) and, with NCQ, the NCQ Command Error log
    /// (10h), one page each. Reading log 10h clears the error it reports.
    fn read_log(
        &mut self,
        tf: &TaskFile,
        ncq: bool,
        xfer: &mut dyn Transfer,
    ) -> Result<Completion, Fault> {
        let log = tf.lba as u8;
        let page = (tf.lba >> 8) & 0xffff;
        let pages = match log {
            0x00 => 1,
            0x10 if ncq => 1,
            _ => 0,
        };
        if page != 0 || tf.count == 0 || u64::from(tf.count) > pages {
            return Ok(Completion::err(ERR_ABRT, 0));
        }
        let mut buf = [0u8; SECTOR];
        match log {
            0x00 => {
                // General purpose log version 1, and the page count of each log.
                buf[0] = 1;
                if ncq {
                    buf[2 * 0x10] = 1;
                }
            }
            0x10 if ncq => {
                match self.ncq_error.take() {
                    Some(e) => {
                        let c = e.completion;
                        let l = c.lba.to_le_bytes();
                        buf[0] = e.tag & 0x1f;
                        buf[2] = c.status;
                        buf[3] = c.error;
                        buf[4..7].copy_from_slice(&l[..3]);
                        buf[7] = c.device;
                        buf[8..11].copy_from_slice(&l[3..6]);
                        buf[12..14].copy_from_slice(&c.count.to_le_bytes());
                    }
                    // No queued command failed: NQ set.
                    None => buf[0] = 0x80,
                }
                let sum = buf[..511].iter().fold(0u8, |a, b| a.wrapping_add(*b));
                buf[511] = sum.wrapping_neg();
            }
            _ => {}
        }
        xfer.write_to_guest(&buf)?;
        Ok(Completion::ok(EndFis::PioIn))
    }

    /// FLUSH CACHE: returns once the disk says everything written is stable.
    fn flush(&mut self, disk: &mut dyn BlockDevice) -> Completion {
        self.power = PowerMode::Active;
        match disk.flush() {
            Ok(()) => Completion::ok(EndFis::D2h),
            Err(e) => media_error(e, ERR_ABRT, 0),
        }
    }

    fn set_features(&mut self, tf: &TaskFile) -> Completion {
        let mode = (tf.count & 0xff) as u8;
        let ok = match tf.features & 0xff {
            // Set transfer mode: PIO default (00h, 01h), PIO 0-4 (08h-0Ch), MWDMA 0-2
            // (20h-22h), UDMA 0-6 (40h-46h): what IDENTIFY advertises.
            0x03 => {
                let valid = matches!(mode, 0x00 | 0x01 | 0x08..=0x0c | 0x20..=0x22 | 0x40..=0x46);
                if valid {
                    self.xfer_mode = mode;
                }
                valid
            }
            // Enable the volatile write cache (refused when it is hidden by a quirk).
            0x02 if !self.quirks.no_write_cache => {
                self.write_cache = true;
                true
            }
            0x82 => {
                self.write_cache = false;
                true
            }
            _ => false,
        };
        if ok {
            Completion::ok(EndFis::D2h)
        } else {
            Completion::err(ERR_ABRT, 0)
        }
    }
}

/// The status a block-device error becomes: past the end is IDNF, a refused write or a
/// failed write ABRT, a failed read `device_error` (UNC).
fn media_error(e: BlockError, device_error: u8, lba: u64) -> Completion {
    let error = match e {
        BlockError::OutOfRange { .. } => ERR_IDNF | ERR_ABRT,
        BlockError::ReadOnly | BlockError::Unaligned(_) => ERR_ABRT,
        BlockError::Device(_) => device_error,
    };
    Completion::err(error, lba)
}

/// The "selected" bit (high byte) of IDENTIFY word 63 or 88 for transfer mode `mode` if
/// it is of the family `base` (MWDMA 20h, UDMA 40h) with a number up to `max`.
fn mode_bit(mode: u8, base: u8, max: u8) -> u16 {
    match mode.checked_sub(base) {
        Some(n) if n <= max => 1 << (8 + n),
        _ => 0,
    }
}

/// ATA strings: two characters per word, the first in the high byte, space-padded.
fn put_string(words: &mut [u16], s: &[u8]) {
    for (i, w) in words.iter_mut().enumerate() {
        let hi = s.get(2 * i).copied().unwrap_or(b' ');
        let lo = s.get(2 * i + 1).copied().unwrap_or(b' ');
        *w = u16::from(hi) << 8 | u16::from(lo);
    }
}
