//! virtio 1.x devices for guests (OASIS virtio v1.2): the split virtqueue ([`queue`]), the
//! virtio-pci modern transport ([`pci`]) and the device types: [`blk`] (a disk over any
//! `BlockDevice`) and [`net`] (a NIC on a port of the virtual switch,
//! [`crate::net::switch`]).
//!
//! A device type implements [`VirtioDevice`]: its ID, feature bits, configuration space,
//! what to do with a queue the driver notified, and (if work can arrive from elsewhere,
//! as received frames do) what to do when the runtime polls it. [`pci::VirtioPci`] wraps
//! it into a [`PciFunction`](crate::pci::PciFunction) for the VM's PCI bus: feature
//! negotiation, device status and reset, queue setup, notifications, polling, ISR and
//! INTx.
//!
//! ```
//! use hypervisor::block::MemDisk;
//! use hypervisor::platform::GicVersion;
//! use hypervisor::virtio::{blk::VirtioBlk, pci::VirtioPci};
//! use hypervisor::vm::devices::VmDevices;
//!
//! fn discard(_: &str, _: &[u8]) {}
//! let mut dev = VmDevices::new(GicVersion::V3, 1, "vm0", discard).unwrap();
//! let disk = VirtioBlk::new(Box::new(MemDisk::new(2048)), "disk0");
//! let slot = dev.add_pci("disk0", Box::new(VirtioPci::new(disk))).unwrap();
//! assert_eq!(slot.0, 0);
//! assert!(dev.has_pci()); // the VM's device tree now needs `fdt::PciHostDt`
//! ```
#![deny(unsafe_code)]

pub mod blk;
pub mod net;
pub mod pci;
pub mod queue;

use crate::vm::mem::GuestMemory;
use queue::{QueueError, SplitQueue};

/// Feature bit: the device follows virtio 1.x (required by this transport).
pub const VIRTIO_F_VERSION_1: u64 = 1 << 32;
/// Feature bit: indirect descriptor tables.
pub const VIRTIO_F_INDIRECT_DESC: u64 = 1 << 28;

/// Device status: the guest noticed the device.
pub const STATUS_ACKNOWLEDGE: u8 = 1;
/// Device status: the guest has a driver for it.
pub const STATUS_DRIVER: u8 = 2;
/// Device status: the driver is ready (queues may be notified).
pub const STATUS_DRIVER_OK: u8 = 4;
/// Device status: feature negotiation is complete.
pub const STATUS_FEATURES_OK: u8 = 8;
/// Device status: the device hit an error it cannot recover from without a reset.
pub const STATUS_DEVICE_NEEDS_RESET: u8 = 0x40;
/// Device status: the driver gave up on the device.
pub const STATUS_FAILED: u8 = 0x80;

/// A virtio device type (block, network...), whatever its transport.
pub trait VirtioDevice: Send {
    /// Its virtio device ID (2 = block).
    fn device_id(&self) -> u16;
    /// Its PCI class code (class, subclass, programming interface).
    fn pci_class(&self) -> u32;
    /// The device-specific feature bits it offers (the transport adds its own).
    fn features(&self) -> u64;
    /// The maximum size of each of its queues (powers of two); their number is the
    /// number of queues.
    fn queue_max_sizes(&self) -> &[u16];
    /// Size of its configuration space in bytes.
    fn config_len(&self) -> usize;
    /// Reads `data.len()` bytes of its configuration space at `offset` (bytes beyond it
    /// read 0).
    fn config_read(&self, offset: u64, data: &mut [u8]);
    /// Writes its configuration space at `offset` (read-only fields ignore it).
    fn config_write(&mut self, offset: u64, data: &[u8]);
    /// The driver set `DRIVER_OK` having accepted `features`.
    fn activate(&mut self, features: u64);
    /// Serves the chains the driver made available on queue `index`. Returns whether it
    /// put any chain in the used ring; a [`QueueError`] means the driver broke the queue.
    fn process_queue(
        &mut self,
        index: u16,
        queue: &mut SplitQueue,
        mem: &mut dyn GuestMemory,
    ) -> Result<bool, QueueError>;
    /// Work that arrived outside a guest access (a received frame): serves what it can
    /// of `queues` (every queue of the device, ready or not: the device must skip those
    /// that are not [`SplitQueue::ready`]). Returns a mask of the queues it put chains in
    /// the used ring of (bit `n`: queue `n`), for the transport's interrupt; a
    /// [`QueueError`] means the driver broke a queue. Called by the transport only while
    /// the driver runs the device (`DRIVER_OK`, bus mastering on). Most devices have
    /// nothing to do here.
    fn poll(
        &mut self,
        _queues: &mut [SplitQueue],
        _mem: &mut dyn GuestMemory,
    ) -> Result<u32, QueueError> {
        Ok(0)
    }
    /// The transport raised a queue interrupt for the device (for its counters).
    fn interrupt_raised(&self) {}
    /// Back to the reset state (the driver wrote status 0, or the VM was reset).
    fn reset(&mut self);
}
