//! The machine's real-time clock: wall-clock time for the host (evaluation mode's day
//! count, certificate validity).
//!
//! An RTC driver is an ordinary board-device driver in [`DRIVERS`](super::DRIVERS),
//! matched by `compatible` like a console or a GIC driver; its probe returns
//! [`Probed::Rtc`](super::Probed::Rtc) and bring-up [`install`]s the first one. The
//! hypervisor only *reads* an RTC, so a device it reads may still be given to a VM by
//! passthrough (the VM may then set the clock; evaluation mode counts from the highest
//! time it has seen, so setting it back gives nothing back).
//!
//! ```ignore
//! use hypervisor::plugin::{rtc::Rtc, DriverEntry, DriverKind, Probed, DRIVERS};
//! struct MyRtc;
//! impl Rtc for MyRtc {
//!     fn seconds(&self) -> u64 { /* read the counter */ 0 }
//! }
//! static MY_RTC: MyRtc = MyRtc;
//! #[linkme::distributed_slice(DRIVERS)]
//! static MY_RTC_DRIVER: DriverEntry = DriverEntry {
//!     name: "my-rtc",
//!     compatible: &["acme,rtc"],
//!     kind: DriverKind::Rtc,
//!     probe: |_, _| Ok(Probed::Rtc(&MY_RTC)),
//! };
//! ```
#![deny(unsafe_code)]

/// A real-time clock.
pub trait Rtc: Sync {
    /// Seconds since 1970-01-01 00:00:00 UTC, as the clock counts them.
    fn seconds(&self) -> u64;
}

static RTC: spin::Once<&'static dyn Rtc> = spin::Once::new();

/// Makes `rtc` the host's clock if none is installed yet; false if one already was (the
/// first probed RTC is used).
pub fn install(rtc: &'static dyn Rtc) -> bool {
    let mut fresh = false;
    RTC.call_once(|| {
        fresh = true;
        rtc
    });
    fresh
}

/// The time of the host's RTC, in seconds since the Unix epoch; `None` when the board has
/// no RTC with a driver.
pub fn now() -> Option<u64> {
    RTC.get().map(|r| r.seconds())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(u64);
    impl Rtc for Fixed {
        fn seconds(&self) -> u64 {
            self.0
        }
    }

    static FIRST: Fixed = Fixed(1_700_000_000);
    static SECOND: Fixed = Fixed(42);

    #[test]
    fn the_first_installed_rtc_tells_the_time() {
        assert!(install(&FIRST));
        assert!(!install(&SECOND));
        assert_eq!(now(), Some(1_700_000_000));
    }
}
