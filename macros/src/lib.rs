//! Proc macros: the selected board's KDL and the VM TOML become static tables for the core.
//!
//! An image crate (see `image/` and `examples/out-of-tree/acme-image`) calls both once:
//!
//! ```ignore
//! #![no_std]
//! #![no_main]
//! use plugin_uart_pl011 as _;
//! hypervisor::board!();   // the board chosen by the build (HV_BOARD / --board)
//! hypervisor::vms!();     // the VMs chosen by the build (HV_VMS / --vms)
//! ```
//!
//! The selection comes from the `HV_SELECTED_*` variables that
//! `platform_dsl::image::configure` (the image's `build.rs`) sets; arguments override it.
//! Every problem (KDL syntax or validation, unknown board, experimental board without
//! opt-in, invalid VM file) becomes a `compile_error!` naming the file, line and fix.
//!
//! Modules, one per concern: [`args`] and [`select`] (what a call means), [`memory`],
//! [`interrupts`], [`devices`], [`quirks`] (one table each), [`gating`] (support level),
//! [`board`] and [`vms`] (assembly), [`track`] (rebuild on input change), [`lit`].

use proc_macro::TokenStream;
use syn::parse_macro_input;

mod args;
mod board;
mod devices;
#[cfg(test)]
mod fixture;
mod gating;
mod interrupts;
mod lit;
mod memory;
mod quirks;
mod select;
mod track;
mod vms;

/// Generates the board tables: `static BOARD_DESC: hypervisor::platform::BoardDesc` and
/// `#[no_mangle] pub static HV_BOARD: &BoardDesc`, the symbol the core reads.
///
/// ```ignore
/// hypervisor::board!();                                           // the build's selection
/// hypervisor::board!(file = "acme-board.kdl", name = "acme-board"); // file relative to Cargo.toml
/// hypervisor::board!(allow_experimental = true);                  // opt in to an experimental board
/// ```
///
/// An experimental board without opt-in, an unknown board name or an invalid KDL file is
/// a `compile_error!` whose text points at the KDL line and says what to write.
#[proc_macro]
pub fn board(input: TokenStream) -> TokenStream {
    let args = parse_macro_input!(input as args::BoardArgs);
    board::expand(&args, &select::Env::from_process()).into()
}

/// Generates the VM table: `#[no_mangle] pub static HV_VMS: &hypervisor::config::VmTable`,
/// with each guest image at the host address the boot loader puts it
/// (`platform_dsl::vmconfig::plan`), checked against the selected board.
///
/// ```ignore
/// hypervisor::vms!();              // HV_SELECTED_VMS, set by the image's build.rs
/// hypervisor::vms!("vms.toml");    // relative to the crate's Cargo.toml
/// ```
#[proc_macro]
pub fn vms(input: TokenStream) -> TokenStream {
    let args = parse_macro_input!(input as args::VmsArgs);
    vms::expand(&args, &select::Env::from_process()).into()
}
