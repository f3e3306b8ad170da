//! The acme-board image: the shared core, a community plugin, and tables from acme-board.kdl.
#![no_std]
#![no_main]

use plugin_acme_uart as _; // community plugin: linked, registers itself
use plugin_gic_v3 as _; // in-tree interrupt controller driver

macros::board!(file = "../acme-board.kdl", name = "acme-board"); // generated tables + gating
macros::vms!("vms.toml"); // VM table checked at build time
