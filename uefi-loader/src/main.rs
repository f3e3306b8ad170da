//! The hypervisor as a UEFI application (issue 16): started by the firmware at EL2, it reads
//! `\HV\VMS.TOML` and the images it names from the ESP it was loaded from, places the
//! embedded hypervisor Image at a 2 MiB-aligned address, gets the final memory map, exits
//! boot services, writes the handoff device tree (`uefi_loader::handoff`) and enters the
//! Image with the MMU and D-cache off, x0 = the device tree (`/work/notes/handoff.md`).
//!
//! Built for `aarch64-unknown-uefi` by `cargo xtask build --board NAME --uefi`; on any other
//! target the binary only says so.
#![cfg_attr(target_os = "uefi", no_std, no_main)]

#[cfg(target_os = "uefi")]
extern crate alloc;

#[cfg(target_os = "uefi")]
mod efi;

#[cfg(not(target_os = "uefi"))]
fn main() {
    eprintln!(
        "uefi-loader is a UEFI application: build it with \
         `cargo xtask build --board NAME --uefi` and start the .efi from UEFI firmware"
    );
    std::process::exit(2);
}
