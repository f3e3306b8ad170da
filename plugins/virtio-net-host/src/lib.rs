//! virtio-net devices on the machine's own PCIe (`virtio-net-pci`; 1af4:1041, and
//! transitional 1af4:1000 through its modern interface): the uplink of a host that is itself
//! a VM.
//!
//! A PCI driver ([`hypervisor::plugin::pci`]): the probe finds the virtio structures through
//! the function's vendor-specific capabilities (virtio 1.2 4.1.4, [`spec::parse_caps`]),
//! maps them inside the BARs the host bridge assigned ([`pci::PciTransport`]), and brings
//! the device up ([`nic::VirtioNet::new`]): VERSION_1, MAC and STATUS negotiated and nothing
//! else (no offloads, no mergeable buffers, no control queue), a receive queue kept full of
//! 2 KiB buffers, a transmit queue whose buffers are reclaimed from the used ring. A device
//! without the modern capabilities (legacy only) is refused with a message saying so.
//! The device is registered as a [`UplinkKind::Pci`](hypervisor::net::uplink::UplinkKind)
//! uplink named `virtio-net BB:DD.F`; its INTx line is registered with
//! [`hypervisor::plugin::irq`]: the handler reads the ISR (clear on read, so the level line
//! drops, 4.1.4.5) and hands the received frames to the uplink with the device's lock
//! released. MSI-X stays off, so the device interrupts through INTx (4.1.5.3).
//!
//! Register access and DMA are behind traits ([`nic::Transport`],
//! [`hypervisor::dma::Env`]), so the driver's logic runs in host tests against a fake device.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod nic;
pub mod pci;
pub mod spec;

#[cfg(test)]
mod tests;

#[cfg(target_arch = "aarch64")]
mod driver {
    use super::nic::VirtioNet;
    use super::pci::PciTransport;
    use super::spec;
    use alloc::boxed::Box;
    use alloc::format;
    use alloc::sync::Arc;
    use hypervisor::dma::Machine;
    use hypervisor::hvprintln;
    use hypervisor::net::uplink::{self, UplinkDevice, UplinkKind};
    use hypervisor::net::MacAddr;
    use hypervisor::plugin::irq;
    use hypervisor::plugin::pci::{PciDriverEntry, PciMatch, PciProbe, PCI_DRIVERS};
    use hypervisor::plugin::ProbeError;
    use hypervisor::sync::Mutex;

    fn probe(p: &PciProbe<'_>) -> Result<(), ProbeError> {
        let f = p.function;
        let caps = spec::parse_caps(|off| p.config.read32(f.bdf, off)).map_err(|e| match e {
            spec::CapError::Missing => ProbeError::Hardware(
                "no virtio 1.x capabilities: a legacy-only virtio-net is not supported (QEMU: disable-legacy=on or a modern device)",
            ),
            spec::CapError::Malformed => {
                ProbeError::Hardware("malformed virtio capabilities")
            }
        })?;
        let intx = f.intx.ok_or(ProbeError::Hardware(
            "no INTx line routed (MSI-X is not used)",
        ))?;
        // SAFETY: (1) the host bridge assigned `f.bars` inside its `mem32` window (which
        // the EL2 page tables map as device memory, being a window of an enabled board
        // device) and enabled memory space and bus mastering; (2) each function is offered
        // once and probed by one driver, and no VM is given the host bridge's windows, so
        // nothing else touches these BARs.
        let transport =
            unsafe { PciTransport::new(&f.bars, &caps) }.map_err(ProbeError::Hardware)?;
        let fallback = MacAddr::generated("virtio-net", usize::from(f.bdf.device));
        let nic = VirtioNet::new(Machine, transport, p.host.dma_coherent, fallback)
            .map_err(|e| ProbeError::Hardware(e.message()))?;
        let mac = nic.mac();
        let link = nic.link_up();
        let name = format!("virtio-net {}", f.bdf);
        let nic = Arc::new(Mutex::new(nic));
        let dev: Arc<Mutex<dyn UplinkDevice>> = nic.clone();
        let handle = uplink::register(&name, UplinkKind::Pci, mac, dev);
        handle.set_link(link);
        hvprintln!(
            "[hv] {name}: MAC {mac}, link {}, features {:#x}, INTx {}",
            if link { "up" } else { "down" },
            nic.lock().features(),
            intx.intid
        );
        irq::register(
            intx.intid,
            true, // PCI INTx is level-sensitive.
            "virtio-net",
            Box::new(move || {
                let s = nic.lock().service();
                if let Some(up) = s.link {
                    handle.set_link(up);
                }
                for fr in &s.frames {
                    handle.receive(fr);
                }
            }),
        );
        Ok(())
    }

    /// Registration: virtio-net, modern (1af4:1041) and transitional (1af4:1000) IDs
    /// (virtio 1.2 4.1.2.1).
    #[linkme::distributed_slice(PCI_DRIVERS)]
    static VIRTIO_NET: PciDriverEntry = PciDriverEntry {
        name: "virtio-net",
        matches: &[PciMatch::id(0x1af4, 0x1041), PciMatch::id(0x1af4, 0x1000)],
        probe,
    };
}
