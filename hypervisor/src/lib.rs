//! The shared hypervisor core: runs VMs at EL2 on 64-bit Arm.
//!
//! A board image is a tiny `no_std` binary that links the core, its plugins and two
//! generated tables:
//!
//! ```ignore
//! #![no_std]
//! #![no_main]
//! use plugin_uart_pl011 as _;   // drivers register themselves (linkme)
//! use plugin_gic_v3 as _;
//! hypervisor::board!();         // board tables from KDL (board chosen at build time)
//! hypervisor::vms!();           // VM table from TOML
//! ```
//!
//! Rooms: [`arch`] (the only place with `unsafe`), [`mm`], [`vcpu`], [`vm`], [`exit`], [`vgic`],
//! [`vtimer`], [`psci`], [`mmio`], [`trap`], [`vuart`], [`sched`], [`plugin`],
//! [`platform`], [`config`], [`fdt`], [`sync`]. See `docs/ARCHITECTURE.md`.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub use macros::{board, vms};

#[cfg(target_arch = "aarch64")]
pub mod arch;
pub mod config;
pub mod conmux;
pub mod exit;
pub mod fdt;
pub mod mm;
pub mod mmio;
pub mod platform;
pub mod plugin;
pub mod psci;
#[cfg(target_arch = "aarch64")]
pub mod runtime;
pub mod sched;
pub mod sync;
pub mod trap;
pub mod types;
pub mod vcpu;
pub mod vgic;
pub mod vm;
pub mod vtimer;
pub mod vuart;

/// Rust entry of every physical CPU, called by `arch::boot` once the CPU has a stack. The
/// crate root joins the two rooms so that neither imports the other: `arch` boots the CPU,
/// `runtime` runs it.
#[cfg(target_arch = "aarch64")]
extern "C" fn hv_cpu_entry(cpu_index: usize) -> ! {
    runtime::cpu_main(cpu_index)
}
