//! PL031 real-time clock: the registers the passthrough check reads and programs.
//!
//! Register offsets from the PrimeCell RTC (PL031) Technical Reference Manual, Arm DDI 0224C,
//! 3.2 "Summary of RTC registers". The guest never writes `RTCLR`: on a passed-through RTC
//! that would set the host's wall-clock time.

use crate::dt::Rtc;
use crate::mmio::Mmio;
use crate::spec::Pl031Status;

/// `RTCDR`, data register: the current count, seconds (3.3.1).
const RTCDR: usize = 0x000;
/// `RTCMR`, match register (3.3.2).
const RTCMR: usize = 0x004;
/// `RTCCR`, control register; bit 0 starts the counter (3.3.4).
const RTCCR: usize = 0x00c;
/// `RTCCR.RTCStart`.
const RTCCR_START: u32 = 1;
/// `RTCIMSC`, interrupt mask set/clear; bit 0 enables the match interrupt (3.3.5).
const RTCIMSC: usize = 0x010;
/// `RTCRIS`, raw interrupt status (3.3.6).
const RTCRIS: usize = 0x014;
/// `RTCMIS`, masked interrupt status (3.3.7).
const RTCMIS: usize = 0x018;
/// `RTCICR`, interrupt clear; writing bit 0 clears the match interrupt (3.3.8).
const RTCICR: usize = 0x01c;
/// The match interrupt's bit in `RTCIMSC`, `RTCRIS`, `RTCMIS` and `RTCICR`.
const RTCINTR: u32 = 1;
/// `RTCPeriphID0` (3.3.10); ID1..3 follow at 4-byte steps.
const RTCPERIPHID0: usize = 0xfe0;
/// `RTCPCellID0` (3.3.11); ID1..3 follow at 4-byte steps.
const RTCPCELLID0: usize = 0xff0;

/// A PL031 RTC.
#[derive(Clone, Copy, Debug)]
pub struct Pl031 {
    regs: Mmio,
}

impl Pl031 {
    /// The PL031 of the DTB node `rtc` (no register is touched).
    pub fn new(rtc: &Rtc) -> Self {
        // SAFETY: (1) the frame is the `reg` of the DTB's `arm,pl031` node, at least 4 KiB
        // (checked by `dt::rtc`), device memory Rust never uses; (2) PL031 register accesses
        // do not change memory.
        let regs = unsafe { Mmio::new(rtc.regs.base as usize, rtc.regs.size as usize) };
        Self { regs }
    }

    /// `RTCPeriphID0..3` and `RTCPCellID0..3` as read.
    pub fn ids(&self) -> ([u32; 4], [u32; 4]) {
        let read = |base: usize| core::array::from_fn(|i| self.regs.read32(base + 4 * i));
        (read(RTCPERIPHID0), read(RTCPCELLID0))
    }

    /// Sets `RTCCR.RTCStart` if it is clear (it cannot be cleared again; QEMU reads it as 1).
    pub fn start(&self) {
        if self.regs.read32(RTCCR) & RTCCR_START == 0 {
            self.regs.write32(RTCCR, RTCCR_START);
        }
    }

    /// `RTCDR`, the current time in seconds.
    pub fn now(&self) -> u32 {
        self.regs.read32(RTCDR)
    }

    /// Programs `RTCMR`.
    pub fn set_match(&self, seconds: u32) {
        self.regs.write32(RTCMR, seconds);
    }

    /// Unmasks (`RTCIMSC` = 1) or masks (0) the match interrupt.
    pub fn unmask(&self, on: bool) {
        self.regs.write32(RTCIMSC, if on { RTCINTR } else { 0 });
    }

    /// Clears the match interrupt (`RTCICR` = 1), lowering the interrupt line.
    pub fn clear(&self) {
        self.regs.write32(RTCICR, RTCINTR);
    }

    /// `RTCDR`, `RTCRIS` and `RTCMIS` as read now.
    pub fn status(&self) -> Pl031Status {
        Pl031Status {
            dr: self.now(),
            ris: self.regs.read32(RTCRIS),
            mis: self.regs.read32(RTCMIS),
        }
    }
}
