//! NVMe controllers on the machine's own PCIe (class 01:08:02): the disks the datastore
//! cuts VM disks from.
//!
//! A PCI driver ([`hypervisor::plugin::pci`]): the host bridge assigns BAR 0 and enables
//! the function; the probe resets and enables the controller, sets up the admin queue
//! pair and one I/O queue pair (polled, no interrupts), identifies the controller and
//! namespace 1, and registers the namespace with the datastore as `nvmeN` (a
//! [`hypervisor::block::BlockDevice`] of 512-byte sectors over the namespace's logical
//! blocks; partial blocks are read-modified-written). Reads and writes go through one
//! bounce buffer with PRP lists, split at MDTS; every wait has a timeout that becomes
//! `BlockError::Device`. Queues and buffers come from the RAM pool
//! (`arch::mem::alloc_dma`), cleaned and invalidated around every transfer unless the
//! host bridge is `dma-coherent` in the board's KDL (as QEMU virt's is).
//!
//! The board's quirk sets apply by bus ID ([`hypervisor::plugin::pci::quirks_for`]): a
//! queue-depth limit bounds the I/O queue, a ready delay waits after CC.EN (see
//! [`spec::plan`]). Hardware-independent logic lives in [`spec`], host-tested.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod controller;
pub mod spec;

#[cfg(target_arch = "aarch64")]
mod driver {
    use super::controller::Controller;
    use alloc::format;
    use alloc::sync::Arc;
    use core::sync::atomic::{AtomicU32, Ordering};
    use hypervisor::block::SharedDisk;
    use hypervisor::datastore::{self, DiskInfo};
    use hypervisor::dma::Machine;
    use hypervisor::plugin::pci::{quirks_for, PciDriverEntry, PciMatch, PciProbe, PCI_DRIVERS};
    use hypervisor::plugin::{ProbeError, QUIRKS};
    use hypervisor::sync::Mutex;

    static NEXT: AtomicU32 = AtomicU32::new(0);

    fn probe(p: &PciProbe<'_>) -> Result<(), ProbeError> {
        // NVMe 1.4 section 2.1.10: the registers are in BAR 0, at least page aligned.
        let (base, size) = p.function.mmio_bar(0, 4096)?;
        let quirks = quirks_for(&QUIRKS, p.board, p.host, p.function);
        let cfg = plugin_quirks_storage::configured(quirks.iter().map(|q| &q.data));
        let coherent = p.host.dma_coherent;
        // SAFETY: (1) the host bridge assigned BAR 0 at `base`, `size` bytes, inside its
        // `mem32` window (which the EL2 page tables map as device memory, being a window of
        // an enabled board device) and enabled memory space and bus mastering; (2) each
        // function is offered once and probed by one driver, and no VM is given the host
        // bridge's windows, so nothing else touches this BAR.
        let ctrl = unsafe {
            Controller::new(
                Machine,
                base,
                size,
                |cap| crate::spec::plan(cap, &cfg),
                coherent,
            )
        }
        .map_err(|e| ProbeError::Hardware(e.message()))?;
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("nvme{n}");
        let info = DiskInfo {
            model: ctrl.id.model.clone(),
            block_size: 1 << ctrl_lba_shift(&ctrl),
        };
        let disk: SharedDisk = Arc::new(Mutex::new(ctrl));
        datastore::register(&name, info, disk)
            .map_err(|_| ProbeError::Hardware("a disk of this name is registered already"))
    }

    fn ctrl_lba_shift(c: &Controller<Machine>) -> u32 {
        c.lba_shift()
    }

    /// Registration: every NVMe controller (class 01, subclass 08, interface 02).
    #[linkme::distributed_slice(PCI_DRIVERS)]
    static NVME: PciDriverEntry = PciDriverEntry {
        name: "nvme",
        matches: &[PciMatch::class(0x01_08_02)],
        probe,
    };
}
