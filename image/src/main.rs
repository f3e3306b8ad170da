//! The in-tree hypervisor image: the core, every in-tree plugin, and the generated tables.
//!
//! Built by `cargo xtask build --board NAME` (any board of `boards.kdl`); the board and
//! VM file are chosen by the build script (`HV_BOARD`, `HV_BOARD_FILE`, `HV_VMS`).
//! Plugins whose devices the board lacks are linked but never probed.
#![no_std]
#![no_main]

use plugin_ahci as _;
use plugin_e1000e as _;
use plugin_gic_v2 as _;
use plugin_gic_v3 as _;
use plugin_nvme as _;
use plugin_pci_ecam as _;
use plugin_quirks_rtl8153 as _;
use plugin_quirks_storage as _;
use plugin_rtc_pl031 as _;
use plugin_tegra_tcu as _;
use plugin_uart_16550 as _;
use plugin_uart_bcm2835_aux as _;
use plugin_uart_cadence as _;
use plugin_uart_pl011 as _;
use plugin_usb_cdc_ecm as _;
use plugin_virtio_net_host as _;
use plugin_xhci as _;

macros::board!();
macros::vms!();
