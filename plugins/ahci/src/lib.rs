//! AHCI SATA host bus adapters on the machine's own PCIe (class 01:06:01, e.g. QEMU's
//! `ich9-ahci`, 8086:2922): the SATA disks the datastore cuts VM disks from.
//!
//! A PCI driver ([`hypervisor::plugin::pci`]): the host bridge assigns ABAR (BAR 5) and
//! enables the function; the probe puts the HBA in AHCI mode and resets it, then brings up
//! every implemented port with an ATA disk on its link (PxSSTS.DET = 3, PxSIG =
//! 0x00000101): its command list, received-FIS area and one command table in one DMA page,
//! FIS receive and the command engine started, IDENTIFY DEVICE. Each disk is registered
//! with the datastore as `ahciN` (a [`hypervisor::block::BlockDevice`] of 512-byte sectors
//! over the drive's logical sectors; partial 4 KiB sectors are read-modified-written).
//! Reads and writes are READ/WRITE DMA EXT through one bounce buffer with a PRDT, split at
//! the buffer's size; FLUSH CACHE EXT flushes. One command at a time, polled (no
//! interrupts); every wait has a timeout; a failed command is `BlockError::Device` with the
//! drive's task file (error << 8 | status) and the port is recovered for the next one.
//! Buffers come from the RAM pool (`arch::mem::alloc_dma`), cleaned and invalidated around
//! every transfer unless the host bridge is `dma-coherent` in the board's KDL.
//!
//! The board's quirk sets apply by bus ID ([`hypervisor::plugin::pci::quirks_for`]):
//! `force_512_sectors` addresses the drive in 512-byte sectors whatever it reports,
//! `no_write_cache` turns the drive's write cache off, `ready_delay_ms` waits after the HBA
//! reset (see [`spec::plan`]). Hardware-independent logic lives in [`spec`], host-tested;
//! [`port`] runs on the host against a fake HBA.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod port;
pub mod spec;

#[cfg(target_arch = "aarch64")]
mod driver {
    use super::port::Hba;
    use alloc::format;
    use alloc::sync::Arc;
    use core::sync::atomic::{AtomicU32, Ordering};
    use hypervisor::block::SharedDisk;
    use hypervisor::datastore::{self, DiskInfo};
    use hypervisor::dma::Machine;
    use hypervisor::hvprintln;
    use hypervisor::plugin::pci::{quirks_for, PciDriverEntry, PciMatch, PciProbe, PCI_DRIVERS};
    use hypervisor::plugin::{ProbeError, QUIRKS};
    use hypervisor::sync::Mutex;

    static NEXT: AtomicU32 = AtomicU32::new(0);

    fn probe(p: &PciProbe<'_>) -> Result<(), ProbeError> {
        // AHCI 1.3.1 section 2.1.11: ABAR is BAR 5, 1 KiB aligned.
        let (base, size) = p.function.mmio_bar(5, 1024)?;
        let quirks = quirks_for(&QUIRKS, p.board, p.host, p.function);
        let cfg = plugin_quirks_storage::configured(quirks.iter().map(|q| &q.data));
        // SAFETY: (1) the host bridge assigned BAR 5 at `base`, `size` bytes, inside its
        // `mem32` window (which the EL2 page tables map as device memory, being a window of
        // an enabled board device) and enabled memory space and bus mastering; (2) each
        // function is offered once and probed by one driver, and no VM is given the host
        // bridge's windows, so nothing else touches this BAR.
        let hba = unsafe {
            Hba::new(
                Machine,
                base,
                size,
                crate::spec::plan(&cfg),
                p.host.dma_coherent,
            )
        }
        .map_err(|e| ProbeError::Hardware(e.message()))?;
        let bdf = p.function.bdf;
        for port in hba.ports() {
            let disk = match hba.bring_up(port) {
                Ok(Some(disk)) => disk,
                Ok(None) => continue,
                Err(e) => {
                    hvprintln!("[hv] ahci {bdf} port {port}: {e}");
                    continue;
                }
            };
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let name = format!("ahci{n}");
            let info = DiskInfo {
                model: disk.id.model.clone(),
                block_size: 1 << disk.lba_shift(),
            };
            let disk: SharedDisk = Arc::new(Mutex::new(disk));
            if datastore::register(&name, info, disk).is_err() {
                hvprintln!(
                    "[hv] ahci {bdf} port {port}: a disk named {name} is registered already"
                );
            }
        }
        Ok(())
    }

    /// Registration: every AHCI 1.x HBA (class 01, subclass 06, interface 01).
    #[linkme::distributed_slice(PCI_DRIVERS)]
    static AHCI: PciDriverEntry = PciDriverEntry {
        name: "ahci",
        matches: &[PciMatch::class(0x01_06_01)],
        probe,
    };
}
