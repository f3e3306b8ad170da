//! Virtual PCI for guests: the interface every guest-facing PCI device model implements.
//!
//! A VM with PCI devices gets a generic ECAM host bridge on its bus (`pci-host-ecam-generic`
//! in its device tree). The bridge emulates each function's type-0 header (IDs, command
//! and status, BAR sizing and placement, interrupt pin) and hands the rest to the function
//! through [`PciFunction`]: its capabilities and device-specific config space from offset
//! `0x40`, and accesses to its BARs as `(bar, offset, data)`. A function raises interrupts
//! through [`PciIrq`]: legacy INTx (a level on the SPI the bridge's `interrupt-map` gives
//! its pin) or an MSI message, which the VM's MSI frame turns into an edge on an SPI.
//!
//! Device models (NVMe, AHCI, virtio) do DMA only through the
//! [`GuestMemory`](crate::vm::mem::GuestMemory) in
//! [`IoCtx::mem`](crate::vm::devices::IoCtx), and only while the guest has bus mastering on
//! ([`PciIrq::bus_master`]).
//!
//! The bridge itself is [`ecam`] (the ECAM window and the memory window BARs decode in),
//! the type-0 header it keeps for each function is [`config`], and MSI delivery (GICv3
//! MBI through `GICD_SETSPI_NSR`, or a GICv2m frame) is [`msi`]. A VM gets them with
//! [`VmDevices::add_pci`](crate::vm::devices::VmDevices::add_pci).
#![deny(unsafe_code)]

pub mod config;
pub mod ecam;
pub mod msi;
pub mod msix;

use crate::mmio::AccessSize;
use crate::vm::devices::IoCtx;

/// A function that cannot be put on a VM's PCI bus (a device model or VM configuration
/// mistake, reported when the VM is built).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PciError {
    /// A BAR the function declares is malformed.
    #[error("BAR {index}: {why}: fix the device model's `bars()`")]
    BadBar {
        /// Its BAR number.
        index: u8,
        /// What is wrong with it.
        why: &'static str,
    },
    /// Every device slot of bus 0 is taken.
    #[error("all {0} PCI device slots of the VM are taken: give the VM fewer PCI devices")]
    NoFreeSlot(usize),
}

/// Identity of a PCI function (its type-0 header fields).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PciIds {
    /// Vendor ID.
    pub vendor: u16,
    /// Device ID.
    pub device: u16,
    /// Class code, subclass and programming interface (`0x01_08_02` for NVMe).
    pub class: u32,
    /// Revision ID.
    pub revision: u8,
    /// Subsystem vendor ID.
    pub subsystem_vendor: u16,
    /// Subsystem ID.
    pub subsystem: u16,
}

/// One memory BAR a function decodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BarSpec {
    /// BAR number (0..=5; a 64-bit BAR also uses the next one).
    pub index: u8,
    /// Size in bytes: a power of two, at least 4 KiB (so BARs never share a page).
    pub size: u64,
    /// A 64-bit BAR.
    pub is_64bit: bool,
    /// Prefetchable.
    pub prefetchable: bool,
}

/// What a function sees of its own header, and how it raises its interrupts. Built by
/// the bridge for every call into the function.
pub trait PciIrq {
    /// The guest enabled bus mastering (Command bit 2): DMA is allowed.
    fn bus_master(&self) -> bool;
    /// Drives the function's INTx line (ignored while Command bit 10 disables INTx).
    fn set_intx(&mut self, ctx: &mut IoCtx<'_>, level: bool);
    /// Sends an MSI / MSI-X message: a 32-bit write of `data` to guest-physical `address`.
    /// A message to anything but the VM's MSI frame is dropped (as a stray DMA write
    /// would be by an IOMMU).
    fn msi(&mut self, ctx: &mut IoCtx<'_>, address: u64, data: u32);
}

/// A guest-facing PCI device model (one function).
pub trait PciFunction: Send {
    /// Its IDs.
    fn ids(&self) -> PciIds;
    /// Its BARs (memory BARs only).
    fn bars(&self) -> &[BarSpec];
    /// The offset of its first capability (>= 0x40), or 0 for none.
    fn capabilities_pointer(&self) -> u8 {
        0
    }
    /// A read of config space at `offset` (0x40..0x1000: capabilities and
    /// device-specific registers). Unimplemented registers read as 0.
    fn config_read(&mut self, offset: u16, size: AccessSize) -> u32;
    /// A write to config space at `offset` (0x40..0x1000); unimplemented ones are ignored.
    fn config_write(
        &mut self,
        ctx: &mut IoCtx<'_>,
        irq: &mut dyn PciIrq,
        offset: u16,
        size: AccessSize,
        value: u32,
    );
    /// A guest read of `size` bytes at `offset` in BAR `bar`.
    fn bar_read(
        &mut self,
        ctx: &mut IoCtx<'_>,
        irq: &mut dyn PciIrq,
        bar: u8,
        offset: u64,
        size: AccessSize,
    ) -> u64;
    /// A guest write of `size` bytes at `offset` in BAR `bar` (a doorbell may start DMA
    /// and complete requests before it returns).
    fn bar_write(
        &mut self,
        ctx: &mut IoCtx<'_>,
        irq: &mut dyn PciIrq,
        bar: u8,
        offset: u64,
        size: AccessSize,
        value: u64,
    );
    /// Work that arrived outside a guest access (a frame the virtual switch queued for a
    /// NIC): complete what can be completed and raise the interrupt. The runtime calls it
    /// on one of the VM's vCPUs, with the VM's device lock held, after something told it
    /// the function has work ([`VmDevices::poll_io`](crate::vm::devices::VmDevices::poll_io)).
    /// Functions whose work only comes from guest accesses keep the default, which does
    /// nothing.
    fn poll(&mut self, _ctx: &mut IoCtx<'_>, _irq: &mut dyn PciIrq) {}
    /// Back to power-on state (the VM was reset, or the guest reset the function). The
    /// disk behind it keeps its data.
    fn reset(&mut self);
}
