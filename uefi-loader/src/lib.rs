//! The pure parts of the UEFI loader (`uefi-loader`), host-tested: the arm64 Image header of
//! the embedded hypervisor ([`header`]), usable RAM from the UEFI memory map ([`ram`]), the
//! image paths of `\HV\VMS.TOML` ([`vms`]) and the device tree handed to the hypervisor
//! ([`handoff`], the contract of issue 16). The UEFI application itself is `main.rs`.
#![no_std]
#![deny(unsafe_code)]

extern crate alloc;

pub mod handoff;
pub mod header;
pub mod ram;
pub mod vms;
