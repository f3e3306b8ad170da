//! Interrupt handlers of host devices that drivers own (a NIC, a USB host controller).
//!
//! A driver's probe calls [`register`] with the interrupt its device raises (a PCI
//! function's INTx SPI from [`HostPciFunction::intx`](super::pci::HostPciFunction), or a
//! board device's `interrupts`). Once every driver is probed the runtime enables each
//! registered interrupt at the GIC, routed to the boot CPU, and calls the handlers when it
//! fires. Several handlers may share one interrupt (PCI INTx lines are shared): each is
//! called, and must check its own device's cause register and return quickly. A level
//! interrupt is ended (EOI) after the handlers ran, so a handler must have quietened its
//! device by then.
//!
//! ```ignore
//! use hypervisor::plugin::irq;
//! let nic = nic.clone();
//! irq::register(intx.intid, !intx.edge, "e1000e", alloc::boxed::Box::new(move || {
//!     let frames = nic.lock().service_interrupt();   // reads ICR, drains RX
//!     for f in frames { handle.receive(&f); }         // lock released
//! }));
//! ```
#![deny(unsafe_code)]

use crate::sync::Mutex;
use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec::Vec;

/// A device's interrupt handler.
pub type IrqHandler = Box<dyn Fn() + Send + Sync>;

struct Entry {
    intid: u32,
    level: bool,
    name: &'static str,
    handler: Arc<IrqHandler>,
}

static HANDLERS: Mutex<Vec<Entry>> = Mutex::new(Vec::new());

/// Calls `handler` whenever `intid` fires (an SPI, level-sensitive if `level`); `name`
/// names the driver in the runtime's messages.
pub fn register(intid: u32, level: bool, name: &'static str, handler: IrqHandler) {
    HANDLERS.lock().push(Entry {
        intid,
        level,
        name,
        handler: Arc::new(handler),
    });
}

/// The registered interrupts, each once: `(intid, level, first driver's name)`.
pub fn registered() -> Vec<(u32, bool, &'static str)> {
    let mut out: Vec<(u32, bool, &'static str)> = Vec::new();
    for e in HANDLERS.lock().iter() {
        if !out.iter().any(|(i, _, _)| *i == e.intid) {
            out.push((e.intid, e.level, e.name));
        }
    }
    out
}

/// Runs the handlers of `intid` (outside the registry's lock, so a handler may register
/// another); false if none is registered.
pub fn dispatch(intid: u32) -> bool {
    let handlers: Vec<Arc<IrqHandler>> = HANDLERS
        .lock()
        .iter()
        .filter(|e| e.intid == intid)
        .map(|e| e.handler.clone())
        .collect();
    for h in &handlers {
        h();
    }
    !handlers.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn shared_lines_call_every_handler() {
        static A: AtomicU32 = AtomicU32::new(0);
        static B: AtomicU32 = AtomicU32::new(0);
        register(
            1000,
            true,
            "a",
            Box::new(|| {
                A.fetch_add(1, Ordering::Relaxed);
            }),
        );
        register(
            1000,
            true,
            "b",
            Box::new(|| {
                B.fetch_add(1, Ordering::Relaxed);
            }),
        );
        assert!(dispatch(1000));
        assert!(!dispatch(1001));
        assert_eq!(
            (A.load(Ordering::Relaxed), B.load(Ordering::Relaxed)),
            (1, 1)
        );
        let r = registered();
        assert_eq!(r.iter().filter(|(i, _, _)| *i == 1000).count(), 1);
    }
}
