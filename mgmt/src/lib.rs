//! Host management, in the manner of ESXi's host client: VM files on the datastore, the
//! hypervisor's own address on the uplink, an HTTPS API with sessions, the web client it
//! serves, and evaluation mode. See `docs/management.md`.
//!
//! The crate is `no_std` and knows nothing of the hypervisor: it talks to the machine
//! through small traits ([`host::Host`] for VMs and the host's facts, a block device for the
//! datastore, a frame port for the network), which `hypervisor::runtime::mgmt` implements
//! and the tests here fake.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod api;
pub mod auth;
pub mod console;
pub mod eval;
pub mod host;
pub mod http;
pub mod netif;
pub mod request;
pub mod rng;
pub mod store;
pub mod tls;
