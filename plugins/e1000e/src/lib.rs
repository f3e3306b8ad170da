//! Intel 82574L Gigabit Ethernet controllers (e1000e, PCI 8086:10d3; QEMU's `-device
//! e1000e`) on the machine's own PCIe: uplinks of the virtual switch.
//!
//! A PCI driver ([`hypervisor::plugin::pci`]): the host bridge assigns BAR 0 (the 128 KiB
//! register window, 82574 datasheet 9.3.6) and enables the function; the probe resets the
//! NIC and brings it up ([`nic::E1000e::new`]): MAC from RAL0/RAH0 (else the EEPROM through
//! EERD), 64 legacy receive descriptors with 2 KiB buffers, promiscuous reception (the
//! switch forwards frames for the VMs' own MACs), 64 legacy transmit descriptors. It
//! registers the NIC as a [`UplinkKind::Pci`](hypervisor::net::uplink::UplinkKind) uplink
//! named `e1000e BB:DD.F` and its INTx line with [`hypervisor::plugin::irq`]: the handler
//! reads ICR (clear on read, so the level line drops), and hands the frames received to
//! the uplink with the NIC's lock released. Buffers come from the RAM pool, cleaned and
//! invalidated around every access unless the host bridge is `dma-coherent`.
//!
//! Register access and DMA are behind traits ([`nic::Regs`], [`hypervisor::dma::Env`]), so
//! the driver's logic runs in host tests against a fake 82574.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod nic;
pub mod spec;

#[cfg(target_arch = "aarch64")]
mod driver {
    use super::nic::{E1000e, Mmio};
    use alloc::boxed::Box;
    use alloc::format;
    use alloc::sync::Arc;
    use hypervisor::dma::Machine;
    use hypervisor::hvprintln;
    use hypervisor::net::uplink::{self, UplinkDevice, UplinkKind};
    use hypervisor::plugin::irq;
    use hypervisor::plugin::pci::{PciDriverEntry, PciMatch, PciProbe, PCI_DRIVERS};
    use hypervisor::plugin::ProbeError;
    use hypervisor::sync::Mutex;

    fn probe(p: &PciProbe<'_>) -> Result<(), ProbeError> {
        // 82574 datasheet 9.3.6.1: BAR 0 is the 128 KiB memory-mapped register window.
        let (base, size) = p.function.mmio_bar(0, 4096)?;
        if size < 0x6000 {
            return Err(ProbeError::Hardware("BAR 0 is smaller than the registers"));
        }
        let intx = p.function.intx.ok_or(ProbeError::Hardware(
            "no INTx line routed (MSI-X is not used)",
        ))?;
        // SAFETY: (1) the host bridge assigned BAR 0 at `base`, `size` bytes, inside its
        // `mem32` window (which the EL2 page tables map as device memory, being a window of
        // an enabled board device) and enabled memory space and bus mastering; (2) each
        // function is offered once and probed by one driver, and no VM is given the host
        // bridge's windows, so nothing else touches this BAR.
        let regs = unsafe { Mmio::new(base, size) };
        let nic = E1000e::new(Machine, regs, p.host.dma_coherent)
            .map_err(|e| ProbeError::Hardware(e.message()))?;
        let mac = nic.mac();
        let link = nic.link_up();
        let name = format!("e1000e {}", p.function.bdf);
        let nic = Arc::new(Mutex::new(nic));
        let dev: Arc<Mutex<dyn UplinkDevice>> = nic.clone();
        let handle = uplink::register(&name, UplinkKind::Pci, mac, dev);
        handle.set_link(link);
        hvprintln!(
            "[hv] {name}: MAC {mac}, link {}, {} RX / {} TX descriptors, INTx {}",
            if link { "up" } else { "down" },
            super::nic::RX_RING,
            super::nic::TX_RING,
            intx.intid
        );
        irq::register(
            intx.intid,
            true, // PCI INTx is level-sensitive.
            "e1000e",
            Box::new(move || {
                let s = nic.lock().service();
                if let Some(up) = s.link {
                    handle.set_link(up);
                }
                for f in &s.frames {
                    handle.receive(f);
                }
            }),
        );
        Ok(())
    }

    /// Registration: the 82574L by ID.
    #[linkme::distributed_slice(PCI_DRIVERS)]
    static E1000E: PciDriverEntry = PciDriverEntry {
        name: "e1000e",
        matches: &[PciMatch::id(0x8086, 0x10d3)],
        probe,
    };
}
