//! Proc macros: the selected board and the VM file become static tables for the core.
//!
//! An image crate (see `image/` and `examples/out-of-tree/acme-image`) depends on
//! `hypervisor` and on this crate, and calls both once:
//!
//! ```ignore
//! #![no_std]
//! #![no_main]
//! use plugin_uart_pl011 as _;
//! macros::board!();   // the board chosen by the build (HV_BOARD / --board)
//! macros::vms!();     // the VMs chosen by the build (HV_VMS / --vms)
//! ```
//!
//! The macros parse no KDL or TOML: the image's `build.rs` (`platform_dsl::image::configure`)
//! loads and lowers the board file and plans the VM file once, writes the result as a
//! `platform_dsl::image::Model` (JSON in `OUT_DIR`) and hands its path over in `HV_MODEL`.
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
/// macros::board!();                                           // the build's selection
/// macros::board!(file = "acme-board.kdl", name = "acme-board"); // file relative to Cargo.toml
/// macros::board!(allow_experimental = true);                  // opt in to an experimental board
/// ```
///
/// `name` picks another board of the file the build script loaded; `file`, if given, must
/// be that file (the build.rs defaults, or `HV_BOARD_FILE`). An experimental board without
/// opt-in, an unknown board name or an invalid KDL file is a `compile_error!` whose text
/// points at the KDL line and says what to write.
#[proc_macro]
pub fn board(input: TokenStream) -> TokenStream {
    let args = parse_macro_input!(input as args::BoardArgs);
    board::expand(&args, &select::Env::from_process()).into()
}

/// Generates the VM table: `#[no_mangle] pub static HV_VMS: &hypervisor::config::VmTable`,
/// with each guest image at the host address the boot loader puts it
/// (`platform_dsl::vmconfig::plan`, run by the build script against the selected board).
///
/// ```ignore
/// macros::vms!();              // the VM file of the image's build.rs (HV_VMS)
/// macros::vms!("vms.toml");    // the same file, spelled relative to the crate's Cargo.toml
/// ```
#[proc_macro]
pub fn vms(input: TokenStream) -> TokenStream {
    let args = parse_macro_input!(input as args::VmsArgs);
    vms::expand(&args, &select::Env::from_process()).into()
}
