//! Arm PrimeCell PL031 real-time clock: the host's wall-clock time on QEMU `virt` (and on
//! SoCs that carry the cell).
//!
//! The board's KDL names a device with `compatible "arm,pl031"`; bring-up calls this crate's
//! probe, which checks the cell's identification registers, starts the counter if firmware
//! left it stopped, and hands the core a [`hypervisor::plugin::rtc::Rtc`]. The hypervisor
//! only reads `RTCDR` afterwards, so the device can still be passed through to a VM. Link
//! the crate to register it:
//!
//! ```ignore
//! use plugin_rtc_pl031 as _;
//! ```
#![cfg_attr(not(test), no_std)]

pub mod registers;

use core::ptr::NonNull;
use hypervisor::platform::{BoardDesc, DeviceDesc};
use hypervisor::plugin::rtc::Rtc;
use hypervisor::plugin::{DriverEntry, DriverKind, ProbeError, Probed, DRIVERS};
use hypervisor::sync::Mutex;
use registers::{cr, Pl031Registers, PERIPH_ID};
use safe_mmio::{field, field_shared, UniqueMmioPointer};

/// A PL031 RTC. All methods are safe; the only obligation is at [`Pl031::new`].
pub struct Pl031 {
    regs: Mutex<UniqueMmioPointer<'static, Pl031Registers>>,
}

impl Pl031 {
    /// Takes the PL031 register block at `base`.
    ///
    /// # Safety
    ///
    /// The caller guarantees that:
    /// 1. `base` is the address of a PL031 register block (the 4 KiB of
    ///    [`Pl031Registers`]), 4-byte aligned, mapped as device memory for the rest of the
    ///    program (at EL2 the core identity-maps device windows, so physical == virtual);
    /// 2. no other driver accesses that block while this value exists (a guest the device
    ///    is passed through to may: this driver writes only `RTCCR`, and only in
    ///    [`Pl031::init`], before any VM runs).
    pub unsafe fn new(base: NonNull<Pl031Registers>) -> Self {
        Self {
            // SAFETY: (1) and (2) of this function's contract are those of
            // `UniqueMmioPointer::new`: valid, aligned, device-mapped and not aliased by
            // another driver.
            regs: Mutex::new(unsafe { UniqueMmioPointer::new(base) }),
        }
    }

    /// The peripheral ID (`RTCPeriphID0..3`, 8 bits each), e.g. `0x0004_1031`.
    pub fn periph_id(&self) -> u32 {
        let regs = self.regs.lock();
        let id = field_shared!(regs, periph_id);
        (0..4).fold(0u32, |acc, i| {
            let byte = id.get(i).map_or(0, |r| r.read() & 0xff);
            acc | byte << (8 * i)
        })
    }

    /// Checks that the block is a PL031 (part number 0x031, designer Arm) and starts the
    /// counter if it is stopped (`RTCCR.RTCStart`; a stopped PL031 reads 0 forever).
    pub fn init(&self) -> Result<(), ProbeError> {
        if self.periph_id() & 0x000f_ffff != PERIPH_ID & 0x000f_ffff {
            return Err(ProbeError::Hardware(
                "no PL031 identification (RTCPeriphID) at this address; fix the `reg` or the `compatible`",
            ));
        }
        let mut regs = self.regs.lock();
        if field_shared!(regs, cr).read() & cr::START == 0 {
            field!(regs, cr).write(cr::START);
        }
        Ok(())
    }
}

impl Rtc for Pl031 {
    fn seconds(&self) -> u64 {
        // RTCDR counts seconds in 32 bits: QEMU and Linux read it as seconds since the Unix
        // epoch (it wraps in 2106).
        u64::from(field_shared!(self.regs.lock(), dr).read())
    }
}

static INSTANCE: spin::Once<Pl031> = spin::Once::new();

fn probe(dev: &'static DeviceDesc, _board: &'static BoardDesc) -> Result<Probed, ProbeError> {
    let reg = dev.regs.first().ok_or(ProbeError::MissingReg)?;
    if reg.size < core::mem::size_of::<Pl031Registers>() as u64 {
        return Err(ProbeError::Hardware(
            "PL031 window is smaller than its 4 KiB register block; fix the `reg` size",
        ));
    }
    let base = usize::try_from(reg.base)
        .ok()
        .filter(|b| b % 4 == 0)
        .and_then(|b| NonNull::new(b as *mut Pl031Registers))
        .ok_or(ProbeError::Hardware(
            "PL031 base is zero or not 4-byte aligned; fix the `reg` address",
        ))?;
    let mut fresh = false;
    let rtc = INSTANCE.call_once(|| {
        fresh = true;
        // SAFETY: (1) the board's device table places a PL031 at `base` with a window of at
        // least the register block's size (checked above, as is alignment), and the core
        // identity-maps every device window as device memory before probing; (2) the `Once`
        // makes this the only `Pl031`, and the board validator rejects overlapping windows,
        // so no other driver owns these registers.
        unsafe { Pl031::new(base) }
    });
    if !fresh {
        return Err(ProbeError::AlreadyProbed);
    }
    rtc.init()?;
    Ok(Probed::Rtc(rtc))
}

/// Registration: matches `compatible "arm,pl031"`.
#[linkme::distributed_slice(DRIVERS)]
static PL031_DRIVER: DriverEntry = DriverEntry {
    name: "rtc-pl031",
    // Said once, in build.rs, which also announces it to the image crate.
    compatible: include!(concat!(env!("OUT_DIR"), "/compatible.rs")),
    kind: DriverKind::Rtc,
    probe,
};

#[cfg(test)]
mod tests {
    use super::*;
    use hypervisor::plugin::match_driver;
    use plugin_test_support as support;

    /// A register block in host memory holding a PL031's ID and `RTCDR = now`, leaked so
    /// the driver can hold it for `'static`.
    fn fake(now: u32, id: u32) -> *mut Pl031Registers {
        // SAFETY: every field is a `u32` wrapper (or padding array of u32), for which
        // all-zero bytes are valid.
        let regs = Box::into_raw(Box::new(unsafe { core::mem::zeroed::<Pl031Registers>() }));
        // SAFETY: `regs` is live and leaked; the fields are `u32` wrappers.
        unsafe {
            core::ptr::addr_of_mut!((*regs).dr.0).write_volatile(now);
            for i in 0..4 {
                core::ptr::addr_of_mut!((*regs).periph_id[i].0)
                    .write_volatile((id >> (8 * i)) & 0xff);
            }
        }
        regs
    }

    fn cr_of(regs: *mut Pl031Registers) -> u32 {
        // SAFETY: `regs` points to a live, leaked fake block.
        unsafe { core::ptr::addr_of!((*regs).cr.0).read_volatile() }
    }

    fn driver(regs: *mut Pl031Registers) -> Pl031 {
        // SAFETY: `regs` is a leaked host block that only this driver and the test touch.
        unsafe { Pl031::new(NonNull::new(regs).unwrap()) }
    }

    #[test]
    fn reads_seconds_and_starts_a_stopped_counter() {
        let regs = fake(1_700_000_000, PERIPH_ID);
        let rtc = driver(regs);
        assert_eq!(rtc.periph_id(), PERIPH_ID);
        rtc.init().unwrap();
        assert_eq!(cr_of(regs), cr::START);
        assert_eq!(rtc.seconds(), 1_700_000_000);
    }

    #[test]
    fn refuses_a_block_without_the_pl031_id() {
        // A PL011's ID (part 0x011) where a PL031 is declared.
        let regs = fake(5, 0x0014_1011);
        assert!(matches!(driver(regs).init(), Err(ProbeError::Hardware(_))));
        assert_eq!(cr_of(regs), 0);
    }

    #[test]
    fn registered_for_arm_pl031() {
        let dev = support::device(&["arm,pl031", "arm,primecell"], 0, 0x1000, None);
        let entry = match_driver(&DRIVERS, dev).expect("PL031 registered in DRIVERS");
        assert_eq!((entry.name, entry.kind), ("rtc-pl031", DriverKind::Rtc));
    }

    #[test]
    fn probe_checks_the_window() {
        let board = support::board(support::gic_v3(0, &[]), &[]);
        let dev = support::device_without_reg(&["arm,pl031"]);
        assert_eq!(probe(dev, board).err(), Some(ProbeError::MissingReg));
        let dev = support::device(&["arm,pl031"], 0x1000, 0x20, None);
        assert!(matches!(probe(dev, board), Err(ProbeError::Hardware(_))));
    }

    #[test]
    fn probe_hands_the_core_an_rtc_once() {
        let board = support::board(support::gic_v3(0, &[]), &[]);
        let regs = fake(86_400, PERIPH_ID);
        let dev = support::device(&["arm,pl031"], regs as u64, 0x1000, None);
        let Ok(Probed::Rtc(rtc)) = probe(dev, board) else {
            panic!("probe did not hand over an RTC");
        };
        assert_eq!(rtc.seconds(), 86_400);
        assert_eq!(probe(dev, board).err(), Some(ProbeError::AlreadyProbed));
    }
}
