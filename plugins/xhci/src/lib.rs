//! xHCI USB host controllers on the machine's own PCIe (class 0c:03:30): the way to USB
//! NICs such as the RTL8153 on boards without a usable onboard NIC.
//!
//! A PCI driver ([`hypervisor::plugin::pci`]): the probe resets and starts the controller
//! (scratchpad buffers, DCBAA, command ring, one interrupter with its event ring; xHCI 1.2
//! section 4.2), powers the root ports and enumerates what is connected (port reset for
//! USB 2 ports, Enable Slot, Address Device, the descriptors, the configuration chosen by
//! [`hypervisor::plugin::usb::enumerate`] with the board's USB quirks), then hands each
//! device to the USB class driver that matches it ([`hypervisor::plugin::usb::USB_DRIVERS`]).
//! Class drivers open bulk and interrupt endpoints (Configure Endpoint) and queue
//! transfers on one-segment rings closed by a Link TRB.
//!
//! The event ring is served by the INTx interrupt ([`hypervisor::plugin::irq`]) and by
//! [`poll`]: transfer completions go to their class drivers, Port Status Change events
//! tear unplugged devices down (slot disabled, rings and buffers freed, queued transfers
//! completed with `Disconnected`) and enumerate plugged ones. A device's error (a stall,
//! a transaction error) fails that transfer and resets that endpoint; a controller that
//! stops answering commands is retired, never waited on forever.
//!
//! Hardware-independent parts (TRBs, contexts, rings) are in [`spec`], host-tested;
//! enumeration policy is in the core's `plugin::usb`, host-tested against the
//! descriptors of QEMU's `usb-net` and a real RTL8153.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

/// A console line: the hypervisor's console on the machine, nowhere in host tests.
macro_rules! log {
    ($($a:tt)*) => {{
        #[cfg(target_arch = "aarch64")]
        hypervisor::hvprintln!($($a)*);
        #[cfg(not(target_arch = "aarch64"))]
        {
            let _ = alloc::format!($($a)*);
        }
    }};
}

pub mod controller;
pub mod spec;

#[cfg(target_arch = "aarch64")]
mod driver {
    use super::controller::{self, Regs, Shared, Xhci};
    use alloc::boxed::Box;
    use alloc::format;
    use alloc::sync::Arc;
    use alloc::vec::Vec;
    use core::ptr::NonNull;
    use hypervisor::dma::Machine;
    use hypervisor::plugin::pci::{PciDriverEntry, PciMatch, PciProbe, PCI_DRIVERS};
    use hypervisor::plugin::{irq, ProbeError};
    use hypervisor::sync::Mutex;
    use safe_mmio::fields::ReadWrite;
    use safe_mmio::UniqueMmioPointer;

    struct Bar(UniqueMmioPointer<'static, [ReadWrite<u32>]>);

    impl Regs for Bar {
        fn read32(&mut self, off: usize) -> u32 {
            self.0.get(off / 4).map_or(u32::MAX, |mut r| r.read())
        }

        fn write32(&mut self, off: usize, value: u32) {
            if let Some(mut r) = self.0.get(off / 4) {
                r.write(value);
            }
        }
    }

    /// Every controller brought up, for [`super::poll`].
    pub(super) static CONTROLLERS: Mutex<Vec<Shared<Machine>>> = Mutex::new(Vec::new());

    fn probe(p: &PciProbe<'_>) -> Result<(), ProbeError> {
        // xHCI 1.2 section 5.2.1: the registers are in BAR 0 (64-bit, at least 64 KiB on
        // hardware; QEMU's is 16 KiB), page aligned.
        let (base, size) = p.function.mmio_bar::<ReadWrite<u32>>(0, 4096)?;
        let slice = NonNull::slice_from_raw_parts(base, size / 4);
        // SAFETY: (1) the host bridge assigned BAR 0 at `base`, `size` bytes, inside its
        // `mem32` window (which the EL2 page tables map as device memory, being a window
        // of an enabled board device) and enabled memory space and bus mastering; (2) each
        // function is offered once and probed by one driver, and no VM is given the host
        // bridge's windows, so nothing else touches this BAR.
        let regs = Bar(unsafe { UniqueMmioPointer::new(slice) });
        let name = format!("xhci {}", p.function.bdf);
        let mut x = Xhci::new(
            Machine,
            Box::new(regs),
            size,
            p.host.dma_coherent,
            name.clone(),
        )
        .map_err(|e| ProbeError::Hardware(e.message()))?;
        x.board = Some(p.board);
        let ports = x.ports();
        hypervisor::hvprintln!("[hv] usb {name}: controller running, {ports} root port(s)");
        let ctrl: Shared<Machine> = Arc::new(Mutex::new(x));
        controller::scan(&ctrl);
        if let Some(intx) = p.function.intx {
            let level = intx.trigger == hypervisor::platform::Trigger::Level;
            let c = ctrl.clone();
            irq::register(
                intx.intid,
                level,
                "xhci",
                Box::new(move || {
                    let pending = c.lock().acknowledge();
                    if pending {
                        controller::service(&c);
                    }
                }),
            );
        }
        CONTROLLERS.lock().push(ctrl);
        Ok(())
    }

    /// Registration: every xHCI controller (class 0c, subclass 03, interface 30).
    #[linkme::distributed_slice(PCI_DRIVERS)]
    static XHCI: PciDriverEntry = PciDriverEntry {
        name: "xhci",
        matches: &[PciMatch::class(0x0c_03_30)],
        probe,
    };
}

/// Serves every controller's event ring by polling (for callers that run before the
/// interrupts are enabled, or with them masked).
#[cfg(target_arch = "aarch64")]
pub fn poll() {
    let all: alloc::vec::Vec<_> = driver::CONTROLLERS.lock().clone();
    for c in &all {
        c.lock().acknowledge();
        controller::service(c);
    }
}
