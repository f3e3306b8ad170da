//! Quirks of the Realtek RTL8153 USB 3.0 Gigabit Ethernet chip (`usb:0bda:8153`), the NIC
//! that boards without a supported onboard NIC rely on.
//!
//! Every value comes from Linux:
//! - `disable_lpm`: `drivers/usb/core/quirks.c`, `usb_quirk_list`, entry "Generic RTL8153
//!   based ethernet adapters": `{ USB_DEVICE(0x0bda, 0x8153), .driver_info =
//!   USB_QUIRK_NO_LPM }`. U1/U2 link power management drops the link on this chip; the
//!   r8152 driver itself also turns U1/U2 off around (re)initialisation
//!   (`rtl8153_up`: `r8153_u1u2en(tp, false)`).
//! - `max_rx_transfer`: `drivers/net/usb/r8152.c`, `rtl_ops_init`, RTL_VER_03..07
//!   (RTL8153): `rx_buf_sz` is 32 KiB on SuperSpeed and 16 KiB below
//!   (`if (tp->udev->speed < USB_SPEED_SUPER) tp->rx_buf_sz = 16 * 1024; else ... 32 * 1024`).
//! - `reset_after_tx_timeouts`: `drivers/net/usb/r8152.c`, `rtl8152_tx_timeout` calls
//!   `usb_queue_reset_device(tp->intf)` on the first netdev watchdog timeout
//!   (`RTL8152_TX_TIMEOUT` = 5 s).
//! - `configuration`: the RTL8153 offers a vendor configuration (1: one interface ff/ff/00,
//!   the r8152 register protocol, which needs the chip's firmware patches r8152 loads,
//!   `rtl8153a-4.fw` and friends) and a CDC Ethernet one (2: 02/06/00 + 0a/00/00, the
//!   MAC in `iMACAddress`). Linux's `r8152-cfgselector`
//!   (`rtl8152_cfgselector_choose_configuration`) switches the chip to the vendor
//!   configuration because r8152 is there to drive it; `cdc_ether.c` then refuses the
//!   CDC one for this ID (its `products[]` blacklist entry for `REALTEK_VENDOR_ID, 0x8153`
//!   under `IS_ENABLED(CONFIG_USB_RTL8152)`), and without r8152 Linux's generic
//!   `usb_choose_configuration` takes the CDC one. The hypervisor drives the chip through
//!   its class driver (`usb-cdc-ecm`): the quirk pins configuration 2 by its first
//!   interface's class (02/06), so a vendor driver a community crate registers for
//!   0bda:8153 does not move the board's uplink to a mode that needs firmware.
//!
//! The USB NIC driver reads the entry through [`hypervisor::plugin::match_quirks`] and
//! [`apply`]:
//!
//! ```ignore
//! use hypervisor::plugin::{match_quirks, QUIRKS};
//! let mut cfg = plugin_quirks_rtl8153::UsbNicConfig::default_for(UsbSpeed::Super);
//! for q in match_quirks(&QUIRKS, "usb:0bda:8153") {
//!     plugin_quirks_rtl8153::apply(&q.data, &mut cfg);
//! }
//! ```
#![cfg_attr(not(test), no_std)]

use hypervisor::plugin::{QuirkData, QuirkEntry, UsbConfigSelect, QUIRKS};

/// Bus id this quirk set matches.
pub const BUS_ID: &str = "usb:0bda:8153";

/// Bulk-in transfer size r8152 uses for RTL8153 on SuperSpeed links.
pub const SUPERSPEED_RX_TRANSFER: u32 = 32 * 1024;

/// Bulk-in transfer size r8152 uses for RTL8153 below SuperSpeed.
pub const HIGH_SPEED_RX_TRANSFER: u32 = 16 * 1024;

/// USB link speed of the attached device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UsbSpeed {
    /// USB 2.0 high speed (480 Mb/s).
    High,
    /// USB 3.x SuperSpeed (5 Gb/s or more).
    Super,
}

/// How a USB NIC driver runs one device; quirks adjust it before the device is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UsbNicConfig {
    /// Link speed the device enumerated at.
    pub speed: UsbSpeed,
    /// Allow U1/U2 link power management.
    pub lpm_u1u2: bool,
    /// Bulk-in transfer size in bytes.
    pub rx_transfer_size: u32,
    /// Reset the device after this many consecutive TX timeouts (0 = never reset).
    pub reset_after_tx_timeouts: u32,
}

impl UsbNicConfig {
    /// A driver's defaults before quirks: LPM on, 64 KiB transfers, no reset policy.
    pub const fn default_for(speed: UsbSpeed) -> Self {
        Self {
            speed,
            lpm_u1u2: true,
            rx_transfer_size: 64 * 1024,
            reset_after_tx_timeouts: 0,
        }
    }
}

/// Applies a USB NIC quirk to `cfg`; returns false (and changes nothing) for other quirk
/// kinds. The transfer size is capped to the quirk's maximum, and to
/// [`HIGH_SPEED_RX_TRANSFER`] below SuperSpeed as r8152 does.
pub fn apply(quirk: &QuirkData, cfg: &mut UsbNicConfig) -> bool {
    let QuirkData::UsbNic {
        disable_lpm,
        max_rx_transfer,
        reset_after_tx_timeouts,
        ..
    } = *quirk
    else {
        return false;
    };
    if disable_lpm {
        cfg.lpm_u1u2 = false;
    }
    let mut cap = max_rx_transfer;
    if cfg.speed == UsbSpeed::High {
        cap = cap.min(HIGH_SPEED_RX_TRANSFER);
    }
    if cap != 0 {
        cfg.rx_transfer_size = cfg.rx_transfer_size.min(cap);
    }
    if reset_after_tx_timeouts != 0 {
        cfg.reset_after_tx_timeouts = match cfg.reset_after_tx_timeouts {
            0 => reset_after_tx_timeouts,
            n => n.min(reset_after_tx_timeouts),
        };
    }
    true
}

/// Registration: the RTL8153 quirk set, matched by bus id.
#[linkme::distributed_slice(QUIRKS)]
static RTL8153_QUIRKS: QuirkEntry = QuirkEntry {
    name: "rtl8153-usb-nic",
    matches: &[BUS_ID],
    description: "RTL8153: CDC-ECM configuration, U1/U2 LPM off, 32 KiB bulk-in (16 KiB on USB 2), reset on TX timeout",
    data: QuirkData::UsbNic {
        disable_lpm: true,
        max_rx_transfer: SUPERSPEED_RX_TRANSFER,
        reset_after_tx_timeouts: 1,
        configuration: CDC_ETHERNET,
    },
};

/// The configuration the quirk selects: the one whose first interface is CDC Ethernet
/// (class 02 Communications, subclass 06 Ethernet Networking Control Model).
pub const CDC_ETHERNET: UsbConfigSelect = UsbConfigSelect::FirstInterface {
    class: 0x02,
    subclass: 0x06,
};

#[cfg(test)]
mod tests {
    use super::*;
    use hypervisor::plugin::match_quirks;

    fn configured(speed: UsbSpeed) -> UsbNicConfig {
        let mut cfg = UsbNicConfig::default_for(speed);
        let mut applied = 0;
        for q in match_quirks(&QUIRKS, BUS_ID) {
            assert!(apply(&q.data, &mut cfg));
            applied += 1;
        }
        assert_eq!(applied, 1, "exactly one quirk set registered for {BUS_ID}");
        cfg
    }

    #[test]
    fn registered_in_quirks_slice() {
        let q = match_quirks(&QUIRKS, BUS_ID).next().expect("registered");
        assert_eq!(q.name, "rtl8153-usb-nic");
    }

    #[test]
    fn superspeed_link_disables_lpm_and_uses_32k_transfers() {
        let cfg = configured(UsbSpeed::Super);
        assert!(!cfg.lpm_u1u2);
        assert_eq!(cfg.rx_transfer_size, 32 * 1024);
    }

    #[test]
    fn high_speed_link_uses_16k_transfers() {
        assert_eq!(configured(UsbSpeed::High).rx_transfer_size, 16 * 1024);
    }

    #[test]
    fn first_tx_timeout_resets_the_device() {
        assert_eq!(configured(UsbSpeed::Super).reset_after_tx_timeouts, 1);
    }

    #[test]
    fn apply_never_raises_a_smaller_transfer_size() {
        let mut cfg = UsbNicConfig::default_for(UsbSpeed::Super);
        cfg.rx_transfer_size = 4096;
        let q = match_quirks(&QUIRKS, BUS_ID).next().unwrap();
        apply(&q.data, &mut cfg);
        assert_eq!(cfg.rx_transfer_size, 4096);
    }

    #[test]
    fn other_devices_get_no_quirk() {
        assert_eq!(match_quirks(&QUIRKS, "usb:0bda:8152").count(), 0);
    }

    #[test]
    fn apply_ignores_non_usb_quirks() {
        let mut cfg = UsbNicConfig::default_for(UsbSpeed::Super);
        let soc = QuirkData::Soc { cpu_on_delay_us: 5 };
        assert!(!apply(&soc, &mut cfg));
        assert_eq!(cfg, UsbNicConfig::default_for(UsbSpeed::Super));
    }
}
