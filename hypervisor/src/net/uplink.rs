//! Uplinks: the machine's own NICs, as the virtual switch sees them.
//!
//! A NIC driver plugin (matched by PCI or USB ID like any driver) registers each NIC it
//! brings up with [`register`], giving an [`UplinkDevice`] that transmits. It keeps the
//! returned [`UplinkHandle`] and passes every frame the NIC receives to
//! [`UplinkHandle::receive`]; it reports link changes with [`UplinkHandle::set_link`].
//! Dropping the handle (the NIC was unplugged, or the driver gave up on it) unregisters
//! the uplink: the switch then drops what it would have sent there, counted, and takes the
//! next NIC of the same kind that registers (the same USB NIC plugged in again).
//!
//! ```ignore
//! use hypervisor::net::{uplink, MacAddr};
//! let nic = Arc::new(Mutex::new(MyNic::new(bar0)));
//! let handle = uplink::register("e1000e 00:02.0", uplink::UplinkKind::Pci, mac, nic.clone());
//! // In the NIC's interrupt handler: take the frames out under the NIC's lock, then
//! // hand them over with the lock released.
//! for frame in nic.lock().drain_rx() { handle.receive(&frame); }
//! ```
//!
//! Locking: [`UplinkHandle::receive`] must be called without the NIC's own lock held: the
//! switch may transmit on another CPU at the same time, and it takes the NIC's lock to do
//! so (the switch never holds its own lock while transmitting).
#![deny(unsafe_code)]

use super::MacAddr;
use crate::sync::Mutex;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// How the NIC is attached to the machine; a board's KDL picks its uplink by kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UplinkKind {
    /// A USB NIC (CDC-ECM, or a vendor driver such as one for the RTL8153).
    Usb,
    /// A PCI or PCIe NIC (virtio-net when the host is itself a VM, e1000e, server NICs).
    Pci,
}

impl UplinkKind {
    /// The name the board KDL and the console use: `usb` or `pci`.
    pub const fn name(self) -> &'static str {
        match self {
            UplinkKind::Usb => "usb",
            UplinkKind::Pci => "pci",
        }
    }
}

/// Why a NIC did not take a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UplinkError {
    /// The link is down or the device is gone.
    #[error("link down")]
    LinkDown,
    /// Every transmit buffer is in use.
    #[error("transmit queue full")]
    QueueFull,
    /// The frame is longer than the NIC sends.
    #[error("frame too long")]
    TooLong,
    /// The NIC reported an error.
    #[error("NIC error: {0}")]
    Hardware(&'static str),
}

/// A NIC's transmit side, as its driver implements it.
pub trait UplinkDevice: Send {
    /// Queues one Ethernet frame (no FCS; the NIC pads short frames) for transmission.
    /// Must not wait for the wire: a full queue is [`UplinkError::QueueFull`].
    fn transmit(&mut self, frame: &[u8]) -> Result<(), UplinkError>;
}

/// Identifies a registered uplink (never reused while the hypervisor runs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UplinkId(pub u32);

/// Where received frames go: the virtual switch (set once at bring-up).
pub trait UplinkSink: Send + Sync {
    /// Uplink `id` received `frame`.
    fn receive(&self, id: UplinkId, frame: &[u8]);
    /// The set of uplinks or a link state changed (look again with [`list`]).
    fn changed(&self);
}

/// Counters of one uplink.
#[derive(Default)]
struct Counters {
    rx_frames: AtomicU64,
    rx_bytes: AtomicU64,
    tx_frames: AtomicU64,
    tx_bytes: AtomicU64,
    tx_errors: AtomicU64,
    rx_dropped: AtomicU64,
}

struct Entry {
    id: UplinkId,
    name: String,
    kind: UplinkKind,
    mac: MacAddr,
    link: Arc<AtomicBool>,
    counters: Arc<Counters>,
    device: Arc<Mutex<dyn UplinkDevice>>,
}

struct Registry {
    next_id: u32,
    entries: Vec<Entry>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    next_id: 0,
    entries: Vec::new(),
});
static SINK: Mutex<Option<&'static dyn UplinkSink>> = Mutex::new(None);

/// Sets where received frames go: the switch (or a boot-time self-test before it).
pub fn set_sink(sink: &'static dyn UplinkSink) {
    *SINK.lock() = Some(sink);
}

fn sink() -> Option<&'static dyn UplinkSink> {
    *SINK.lock()
}

/// What [`list`] tells about an uplink.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UplinkInfo {
    /// Its ID.
    pub id: UplinkId,
    /// Its name (driver and bus position, as the driver gave it).
    pub name: String,
    /// How it is attached.
    pub kind: UplinkKind,
    /// Its own address.
    pub mac: MacAddr,
    /// Link up.
    pub link_up: bool,
    /// Frames and bytes received.
    pub rx_frames: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Frames sent.
    pub tx_frames: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Frames the NIC refused to send.
    pub tx_errors: u64,
    /// Received frames nobody took (no switch yet).
    pub rx_dropped: u64,
}

/// Registers a NIC; keep the handle as long as the NIC is usable.
pub fn register(
    name: &str,
    kind: UplinkKind,
    mac: MacAddr,
    device: Arc<Mutex<dyn UplinkDevice>>,
) -> UplinkHandle {
    let link = Arc::new(AtomicBool::new(true));
    let counters = Arc::new(Counters::default());
    let id = {
        let mut r = REGISTRY.lock();
        let id = UplinkId(r.next_id);
        r.next_id = r.next_id.wrapping_add(1);
        r.entries.push(Entry {
            id,
            name: String::from(name),
            kind,
            mac,
            link: link.clone(),
            counters: counters.clone(),
            device,
        });
        id
    };
    if let Some(s) = sink() {
        s.changed();
    }
    UplinkHandle { id, link, counters }
}

/// The registered uplinks, in registration order.
pub fn list() -> Vec<UplinkInfo> {
    REGISTRY
        .lock()
        .entries
        .iter()
        .map(|e| {
            let c = &e.counters;
            UplinkInfo {
                id: e.id,
                name: e.name.clone(),
                kind: e.kind,
                mac: e.mac,
                link_up: e.link.load(Ordering::Acquire),
                rx_frames: c.rx_frames.load(Ordering::Relaxed),
                rx_bytes: c.rx_bytes.load(Ordering::Relaxed),
                tx_frames: c.tx_frames.load(Ordering::Relaxed),
                tx_bytes: c.tx_bytes.load(Ordering::Relaxed),
                tx_errors: c.tx_errors.load(Ordering::Relaxed),
                rx_dropped: c.rx_dropped.load(Ordering::Relaxed),
            }
        })
        .collect()
}

/// Sends `frame` through uplink `id`. The registry's lock is released before the NIC's
/// is taken. An unregistered uplink or a link that is down is [`UplinkError::LinkDown`].
pub fn transmit(id: UplinkId, frame: &[u8]) -> Result<(), UplinkError> {
    let (device, link, counters) = {
        let r = REGISTRY.lock();
        let e = r
            .entries
            .iter()
            .find(|e| e.id == id)
            .ok_or(UplinkError::LinkDown)?;
        (e.device.clone(), e.link.clone(), e.counters.clone())
    };
    if !link.load(Ordering::Acquire) {
        counters.tx_errors.fetch_add(1, Ordering::Relaxed);
        return Err(UplinkError::LinkDown);
    }
    let r = device.lock().transmit(frame);
    match r {
        Ok(()) => {
            counters.tx_frames.fetch_add(1, Ordering::Relaxed);
            counters
                .tx_bytes
                .fetch_add(frame.len() as u64, Ordering::Relaxed);
        }
        Err(_) => {
            counters.tx_errors.fetch_add(1, Ordering::Relaxed);
        }
    }
    r
}

/// A driver's hold on a registered uplink; dropping it unregisters the uplink.
pub struct UplinkHandle {
    id: UplinkId,
    link: Arc<AtomicBool>,
    counters: Arc<Counters>,
}

impl UplinkHandle {
    /// The uplink's ID.
    pub fn id(&self) -> UplinkId {
        self.id
    }

    /// The NIC received `frame` (call it without the NIC's own lock held).
    pub fn receive(&self, frame: &[u8]) {
        self.counters.rx_frames.fetch_add(1, Ordering::Relaxed);
        self.counters
            .rx_bytes
            .fetch_add(frame.len() as u64, Ordering::Relaxed);
        match sink() {
            Some(s) => s.receive(self.id, frame),
            None => {
                self.counters.rx_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The NIC's link went up or down.
    pub fn set_link(&self, up: bool) {
        if self.link.swap(up, Ordering::AcqRel) != up {
            if let Some(s) = sink() {
                s.changed();
            }
        }
    }
}

impl Drop for UplinkHandle {
    fn drop(&mut self) {
        REGISTRY.lock().entries.retain(|e| e.id != self.id);
        if let Some(s) = sink() {
            s.changed();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Loop(Vec<Vec<u8>>, bool);
    impl UplinkDevice for Loop {
        fn transmit(&mut self, frame: &[u8]) -> Result<(), UplinkError> {
            if self.1 {
                return Err(UplinkError::QueueFull);
            }
            self.0.push(frame.to_vec());
            Ok(())
        }
    }

    // The registry is global: one test walks the whole life of an uplink.
    #[test]
    fn register_transmit_count_and_unregister() {
        let nic = Arc::new(Mutex::new(Loop(Vec::new(), false)));
        let mac = MacAddr([2, 0, 0, 0, 0, 9]);
        let h = register("test-nic", UplinkKind::Usb, mac, nic.clone());
        let id = h.id();
        assert!(list()
            .iter()
            .any(|u| u.id == id && u.mac == mac && u.link_up));
        transmit(id, &[1u8; 60]).unwrap();
        assert_eq!(nic.lock().0.len(), 1);
        nic.lock().1 = true;
        assert_eq!(transmit(id, &[1u8; 60]), Err(UplinkError::QueueFull));
        h.set_link(false);
        assert_eq!(transmit(id, &[1u8; 60]), Err(UplinkError::LinkDown));
        h.receive(&[0u8; 60]); // no sink in this test: dropped, counted
        let info = list().into_iter().find(|u| u.id == id).unwrap();
        assert_eq!((info.tx_frames, info.tx_bytes, info.tx_errors), (1, 60, 2));
        assert_eq!(
            (info.rx_frames, info.rx_dropped, info.link_up),
            (1, 1, false)
        );
        drop(h);
        assert!(list().iter().all(|u| u.id != id));
        assert_eq!(transmit(id, &[1u8; 60]), Err(UplinkError::LinkDown));
    }
}
