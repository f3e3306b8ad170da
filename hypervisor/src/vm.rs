//! VMs: lifecycle and the guest-physical layout.
#![deny(unsafe_code)]

pub mod layout;
