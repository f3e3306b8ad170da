//! The virtual switch: a learning L2 switch between the VMs' virtual NICs and one uplink.
//!
//! Ports:
//! - *VM ports*, one per virtual NIC ([`Switch::add_vm_port`]). Each has its own MAC
//!   address and an optional VLAN: ports forward only to ports of the same VLAN (`None`
//!   is the untagged group). A frame whose source address is not the port's own is
//!   dropped and counted as spoofed (and reported once per port through the log hook),
//!   so a VM cannot pose as another VM or poison the address table.
//! - *The uplink*, one of the machine's NICs from [`super::uplink`], chosen by
//!   [`UplinkPolicy`]: the first registered NIC of the wanted kind. The switch is the
//!   registry's [`UplinkSink`]; when the set of NICs changes (a USB NIC unplugged and
//!   plugged in again registers with a new [`UplinkId`]) it binds again, so traffic
//!   resumes without anyone touching the VMs. Frames of a VM port with a VLAN leave the
//!   uplink with an 802.1Q tag of that VLAN; tagged frames arriving on it go only to the
//!   ports of their VLAN (tag removed), untagged ones to the untagged ports.
//!
//! - *The host port* ([`Switch::set_host_port`]), at most one: the hypervisor's own
//!   management address. It is bound to the uplink only, untagged: its frames go to the
//!   uplink and nowhere else, and it receives only frames from the uplink (unicast to its
//!   address, broadcast and multicast), never a VM's. So the hypervisor's own traffic
//!   never reaches a VM port and no VM reaches the management stack through the switch.
//!
//! Forwarding: broadcast, multicast and unicast to an unknown address are flooded to
//! every port of the VLAN but the one the frame came in on; unicast to a known address
//! goes to that port only. The address table is keyed by (VLAN, MAC). A VM port's own
//! address is in it from the moment the port exists (a fixed entry: a frame from the
//! uplink claiming a VM's address never moves it); addresses seen behind the uplink are
//! learned as the uplink's, at most [`MAX_LEARNED`] of them.
//!
//! Delivery to a VM is deferred: the frame is copied into the destination port's
//! inbound queue (at most [`PORT_QUEUE_LEN`] frames; more are dropped and counted) and
//! the port's `notify` callback runs when the queue stops being empty. The runtime then
//! flags the VM and kicks one of its vCPUs, and that vCPU moves the frames into its
//! receive ring ([`Switch::with_next_frame`]) under its own device lock. So the device
//! lock of the sending VM and that of the receiving VM are never held together.
//!
//! Locks: the switch's state is behind one [`Mutex`]. Nothing is called with it held:
//! `notify` callbacks, the log hook and [`uplink::transmit`] (which takes the NIC's lock)
//! all run after it is released, because a NIC driver may call [`UplinkSink::receive`]
//! (which takes the switch's lock) on another CPU. Its place in the lock order: after a
//! VM's device lock and RAM (a virtual NIC sends while holding both), before the uplink
//! registry's (the switch lists uplinks while holding its own).
//!
//! The runtime keeps one switch in an `Arc` (the NICs' devices hold clones) and gives
//! the uplink registry a `&'static` view of it at bring-up:
//! `let sink: &'static Switch = Box::leak(Box::new(switch.clone())); uplink::set_sink(sink);`
//!
//! ```
//! use hypervisor::net::switch::{PortConfig, Switch};
//! use hypervisor::net::MacAddr;
//! use std::sync::Arc;
//!
//! let sw = Switch::new();
//! let port = |n: u8| PortConfig {
//!     name: format!("`vm{n}` nic0"),
//!     mac: MacAddr([2, 0, 0, 0, 0, n]),
//!     vlan: None,
//! };
//! let a = sw.add_vm_port(port(1), Arc::new(|| {})).unwrap();
//! let b = sw.add_vm_port(port(2), Arc::new(|| { /* flag VM 2, kick a vCPU */ })).unwrap();
//! // The NIC's device enables its port when its driver runs (virtio `DRIVER_OK`).
//! sw.set_port_enabled(b, true);
//! let mut frame = [0u8; 60];
//! frame[..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
//! frame[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
//! sw.send_from_vm(a, &frame).unwrap();
//! assert_eq!(sw.pop_for_vm(b).as_deref(), Some(&frame[..]));
//! ```
#![deny(unsafe_code)]

use super::uplink::{self, UplinkId, UplinkKind, UplinkSink};
use super::{MacAddr, ETH_HEADER, MAX_FRAME};
use crate::sync::Mutex;
use alloc::collections::{BTreeMap, VecDeque};
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};

/// Frames a VM port's inbound queue holds; more are dropped (`rx_dropped`).
pub const PORT_QUEUE_LEN: usize = 256;
/// Addresses learned behind the uplink that the table keeps; beyond it, new ones are
/// not learned (their frames are flooded), so a flood of forged sources from outside
/// cannot grow the table without bound.
pub const MAX_LEARNED: usize = 4096;
/// Spare frame buffers a port keeps for reuse, so that steady traffic allocates nothing.
const SPARE_BUFFERS: usize = 32;
/// EtherType of an 802.1Q tag.
const ETH_P_8021Q: u16 = 0x8100;
/// Bytes of an 802.1Q tag.
const VLAN_TAG: usize = 4;

/// A VM port (never reused while the hypervisor runs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortId(pub u32);

impl fmt::Display for PortId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What a VM port is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortConfig {
    /// How the console names it: the VM and its NIC, such as "`web` nic0".
    pub name: String,
    /// The NIC's own address: the only source address its frames may have.
    pub mac: MacAddr,
    /// Its port group: an 802.1Q VLAN ID (1..=4094), or `None` for the untagged group.
    pub vlan: Option<u16>,
}

/// A VM port that cannot be added.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SwitchError {
    /// Another VM port already has this address.
    #[error("MAC address {mac} of {name} is already used by port {holder}: give one of the NICs another `mac`")]
    DuplicateMac {
        /// The address.
        mac: MacAddr,
        /// The port being added.
        name: String,
        /// The port that has it.
        holder: String,
    },
    /// A group address cannot be a NIC's own.
    #[error("MAC address {mac} of {name} is a multicast address: a NIC's address must be unicast")]
    MulticastMac {
        /// The address.
        mac: MacAddr,
        /// The port being added.
        name: String,
    },
    /// A VLAN ID outside 1..=4094.
    #[error("VLAN {vlan} of {name} is not a VLAN ID: use 1 to 4094")]
    BadVlan {
        /// The ID.
        vlan: u16,
        /// The port being added.
        name: String,
    },
}

/// Why the switch did not take a frame from a VM.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DropReason {
    /// Its source address is not the port's own.
    #[error("source address is not the port's own")]
    Spoofed,
    /// Shorter than an Ethernet header.
    #[error("shorter than an Ethernet header")]
    Runt,
    /// Longer than [`MAX_FRAME`] (or than that once tagged for the uplink).
    #[error("longer than {MAX_FRAME} bytes")]
    TooBig,
    /// No such port (it was removed).
    #[error("no such port")]
    NoPort,
}

/// Which uplink the switch uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct UplinkPolicy {
    /// Use an uplink at all (a new switch has none: it joins only its VMs).
    pub enabled: bool,
    /// The kind of NIC to take (`None`: any).
    pub kind: Option<UplinkKind>,
}

/// Counters of a VM port, from the VM's point of view.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortCounters {
    /// Frames the VM took from its inbound queue.
    pub rx_frames: u64,
    /// Their bytes.
    pub rx_bytes: u64,
    /// Frames the VM sent that the switch forwarded.
    pub tx_frames: u64,
    /// Their bytes.
    pub tx_bytes: u64,
    /// Frames for the VM dropped: its queue was full, its NIC was not running, or they
    /// were still queued when it reset.
    pub rx_dropped: u64,
    /// Frames from the VM dropped as malformed: shorter than a header or too long.
    pub tx_dropped: u64,
    /// Frames from the VM dropped because their source address was not its own.
    pub spoofed: u64,
    /// Frames from the VM flooded (broadcast, multicast, unknown destination).
    pub flooded: u64,
}

/// One VM port as [`Switch::stats`] reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortStats {
    /// The port.
    pub id: PortId,
    /// Its name.
    pub name: String,
    /// Its NIC's address.
    pub mac: MacAddr,
    /// Its VLAN.
    pub vlan: Option<u16>,
    /// Its counters.
    pub counters: PortCounters,
}

impl fmt::Display for PortStats {
    /// `port 1 `b` nic0 52:54:00:00:00:0b vlan -: rx 12/1234 B, tx 10/999 B, dropped 0,
    /// spoofed 3` (one console line; `dropped` counts both directions).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.counters;
        write!(f, "port {} {} {} vlan ", self.id, self.name, self.mac)?;
        match self.vlan {
            Some(v) => write!(f, "{v}")?,
            None => f.write_str("-")?,
        }
        write!(
            f,
            ": rx {}/{} B, tx {}/{} B, dropped {}, spoofed {}",
            c.rx_frames,
            c.rx_bytes,
            c.tx_frames,
            c.tx_bytes,
            c.rx_dropped + c.tx_dropped,
            c.spoofed
        )
    }
}

/// The uplink as [`Switch::uplink_status`] reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UplinkStatus {
    /// The policy in force.
    pub policy: UplinkPolicy,
    /// The bound uplink: its ID and name.
    pub bound: Option<(UplinkId, String)>,
    /// Frames handed to the uplink.
    pub tx_frames: u64,
    /// Frames the uplink refused (link down, queue full, gone).
    pub tx_errors: u64,
    /// Frames from the uplink forwarded to VM ports.
    pub rx_frames: u64,
    /// Frames from the uplink dropped (malformed, from an uplink not bound, or no port
    /// of their VLAN).
    pub rx_dropped: u64,
}

impl fmt::Display for UplinkStatus {
    /// `uplink usb0 (id 3): tx 5 (0 errors), rx 7 (1 dropped)`, or `uplink none (...)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.bound, self.policy.enabled) {
            (Some((id, name)), _) => write!(f, "uplink {name} (id {})", id.0)?,
            (None, false) => f.write_str("uplink none (disabled)")?,
            (None, true) => write!(
                f,
                "uplink none (waiting for a {} NIC)",
                self.policy.kind.map_or("any", UplinkKind::name)
            )?,
        }
        write!(
            f,
            ": tx {} ({} errors), rx {} ({} dropped)",
            self.tx_frames, self.tx_errors, self.rx_frames, self.rx_dropped
        )
    }
}

/// Where a frame goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dest {
    Vm(PortId),
    Uplink,
}

/// An address table entry.
#[derive(Clone, Copy, Debug)]
struct Entry {
    dest: Dest,
    /// A VM port's own address: never relearned elsewhere.
    fixed: bool,
}

struct VmPort {
    id: PortId,
    name: String,
    mac: MacAddr,
    vlan: Option<u16>,
    /// The NIC is running (its driver is up): frames are queued for it.
    enabled: bool,
    notify: Arc<dyn Fn() + Send + Sync>,
    queue: VecDeque<Vec<u8>>,
    spare: Vec<Vec<u8>>,
    counters: PortCounters,
    spoof_reported: bool,
}

impl VmPort {
    /// Queues a copy of `frame`; returns whether the queue was empty before (the port's
    /// `notify` is due).
    fn enqueue(&mut self, frame: &[u8]) -> bool {
        if !self.enabled || self.queue.len() >= PORT_QUEUE_LEN {
            self.counters.rx_dropped += 1;
            return false;
        }
        let mut buf = self.spare.pop().unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(frame);
        let was_empty = self.queue.is_empty();
        self.queue.push_back(buf);
        was_empty
    }

    fn recycle(&mut self, buf: Vec<u8>) {
        if self.spare.len() < SPARE_BUFFERS {
            self.spare.push(buf);
        }
    }

    fn flush(&mut self) {
        while let Some(buf) = self.queue.pop_front() {
            self.counters.rx_dropped += 1;
            self.recycle(buf);
        }
    }
}

struct Bound {
    id: UplinkId,
    name: String,
}

/// Frames the host port's inbound queue holds.
pub const HOST_QUEUE_LEN: usize = 128;

struct HostPort {
    mac: MacAddr,
    notify: Arc<dyn Fn() + Send + Sync>,
    queue: VecDeque<Vec<u8>>,
    counters: PortCounters,
}

struct State {
    next_id: u32,
    ports: Vec<VmPort>,
    table: BTreeMap<(Option<u16>, MacAddr), Entry>,
    learned: usize,
    policy: UplinkPolicy,
    bound: Option<Bound>,
    log: Option<fn(&str)>,
    host: Option<HostPort>,
}

impl State {
    fn port(&self, id: PortId) -> Option<&VmPort> {
        self.ports.iter().find(|p| p.id == id)
    }

    fn port_mut(&mut self, id: PortId) -> Option<&mut VmPort> {
        self.ports.iter_mut().find(|p| p.id == id)
    }

    /// Learns `mac` on `vlan` as behind the uplink, unless it is a VM's own address or
    /// the table is full.
    fn learn_uplink(&mut self, vlan: Option<u16>, mac: MacAddr) {
        if mac.is_multicast() {
            return;
        }
        match self.table.get_mut(&(vlan, mac)) {
            Some(e) if e.fixed => {}
            Some(e) => e.dest = Dest::Uplink,
            None if self.learned < MAX_LEARNED => {
                self.table.insert(
                    (vlan, mac),
                    Entry {
                        dest: Dest::Uplink,
                        fixed: false,
                    },
                );
                self.learned += 1;
            }
            None => {}
        }
    }

    /// Copies `frame` into the queue of every VM port of `vlan` but `except` (flooding),
    /// or of `only`; collects the callbacks due.
    fn deliver(
        &mut self,
        vlan: Option<u16>,
        except: Option<PortId>,
        only: Option<PortId>,
        frame: &[u8],
        notifies: &mut Vec<Arc<dyn Fn() + Send + Sync>>,
    ) {
        for p in self.ports.iter_mut() {
            if p.vlan != vlan || Some(p.id) == except || only.is_some_and(|o| o != p.id) {
                continue;
            }
            if p.enqueue(frame) {
                notifies.push(p.notify.clone());
            }
        }
    }

    fn rebind(&mut self) -> Option<String> {
        let policy = self.policy;
        let wanted =
            |u: &uplink::UplinkInfo| policy.enabled && policy.kind.is_none_or(|k| k == u.kind);
        let list = uplink::list();
        if let Some(b) = &self.bound {
            if list.iter().any(|u| u.id == b.id && wanted(u)) {
                return None;
            }
        }
        let old = self.bound.take();
        self.bound = list.iter().find(|u| wanted(u)).map(|u| Bound {
            id: u.id,
            name: u.name.clone(),
        });
        match (&old, &self.bound) {
            (_, Some(b)) => Some(format!("net: uplink {} (id {}) bound", b.name, b.id.0)),
            (Some(o), None) => Some(format!(
                "net: uplink {} gone; frames for outside are dropped until a NIC comes",
                o.name
            )),
            (None, None) => None,
        }
    }
}

/// The 802.1Q VLAN of a frame from the uplink (`None`: untagged or priority-tagged) and
/// the frame as VM ports get it (tag removed). `None` if the frame is malformed.
fn untag(frame: &[u8], buf: &mut [u8; MAX_FRAME]) -> Option<(Option<u16>, usize)> {
    if frame.len() < ETH_HEADER || frame.len() > MAX_FRAME {
        return None;
    }
    if u16::from_be_bytes([frame[12], frame[13]]) != ETH_P_8021Q {
        buf[..frame.len()].copy_from_slice(frame);
        return Some((None, frame.len()));
    }
    if frame.len() < ETH_HEADER + VLAN_TAG {
        return None;
    }
    let vid = u16::from_be_bytes([frame[14], frame[15]]) & 0xfff;
    let len = frame.len() - VLAN_TAG;
    buf[..12].copy_from_slice(&frame[..12]);
    buf[12..len].copy_from_slice(&frame[16..]);
    // VID 0 is a priority tag on an untagged frame; 4095 is reserved.
    match vid {
        0 => Some((None, len)),
        4095 => None,
        v => Some((Some(v), len)),
    }
}

/// `frame` with an 802.1Q tag of `vlan` (priority 0) after its addresses, in `buf`;
/// returns its length, or `None` if it would be too long.
fn tag(frame: &[u8], vlan: u16, buf: &mut [u8; MAX_FRAME]) -> Option<usize> {
    let len = frame.len() + VLAN_TAG;
    if frame.len() < ETH_HEADER || len > MAX_FRAME {
        return None;
    }
    buf[..12].copy_from_slice(&frame[..12]);
    buf[12..14].copy_from_slice(&ETH_P_8021Q.to_be_bytes());
    buf[14..16].copy_from_slice(&(vlan & 0xfff).to_be_bytes());
    buf[16..len].copy_from_slice(&frame[12..]);
    Some(len)
}

/// The virtual switch (see the module doc). Usable as a `static` (the runtime's, which
/// is also the uplink registry's sink) or in an `Arc`.
pub struct Switch {
    state: Mutex<State>,
    uplink_tx: AtomicU64,
    uplink_tx_errors: AtomicU64,
    uplink_rx: AtomicU64,
    uplink_rx_dropped: AtomicU64,
}

impl Default for Switch {
    fn default() -> Self {
        Self::new()
    }
}

impl Switch {
    /// A switch without ports, without an uplink and without a log hook.
    pub const fn new() -> Self {
        Self {
            state: Mutex::new(State {
                next_id: 1,
                ports: Vec::new(),
                table: BTreeMap::new(),
                learned: 0,
                policy: UplinkPolicy {
                    enabled: false,
                    kind: None,
                },
                bound: None,
                log: None,
                host: None,
            }),
            uplink_tx: AtomicU64::new(0),
            uplink_tx_errors: AtomicU64::new(0),
            uplink_rx: AtomicU64::new(0),
            uplink_rx_dropped: AtomicU64::new(0),
        }
    }

    /// Where the switch reports what an operator should know (a VM sending from an
    /// address not its own, once per port; the uplink bound or lost). Called with the
    /// switch's lock released.
    pub fn set_log(&self, log: fn(&str)) {
        self.state.lock().log = Some(log);
    }

    fn log(&self, log: Option<fn(&str)>, line: Option<String>) {
        if let (Some(f), Some(line)) = (log, line) {
            f(&line);
        }
    }

    /// Adds a port for a VM's NIC. `notify` runs (without the switch's lock) when frames
    /// start waiting in its inbound queue. It runs on whatever CPU sent the frame, which
    /// may hold another VM's device lock, or this VM's own (a second NIC of the same VM):
    /// it must only flag the VM and kick one of its vCPUs, never take a device lock. The port takes frames only once
    /// [`Self::set_port_enabled`] says its NIC runs. Refused: an address another VM port
    /// has, a multicast address, a VLAN ID outside 1..=4094.
    pub fn add_vm_port(
        &self,
        cfg: PortConfig,
        notify: Arc<dyn Fn() + Send + Sync>,
    ) -> Result<PortId, SwitchError> {
        if cfg.mac.is_multicast() {
            return Err(SwitchError::MulticastMac {
                mac: cfg.mac,
                name: cfg.name,
            });
        }
        if let Some(v) = cfg.vlan.filter(|v| !(1..=4094).contains(v)) {
            return Err(SwitchError::BadVlan {
                vlan: v,
                name: cfg.name,
            });
        }
        let mut s = self.state.lock();
        if let Some(holder) = s.ports.iter().find(|p| p.mac == cfg.mac) {
            return Err(SwitchError::DuplicateMac {
                mac: cfg.mac,
                name: cfg.name,
                holder: holder.name.clone(),
            });
        }
        if s.host.as_ref().is_some_and(|h| h.mac == cfg.mac) {
            return Err(SwitchError::DuplicateMac {
                mac: cfg.mac,
                name: cfg.name,
                holder: String::from("the hypervisor's management port"),
            });
        }
        let id = PortId(s.next_id);
        s.next_id = s.next_id.wrapping_add(1);
        // The address may have been learned behind the uplink: it is this VM's now.
        if let Some(old) = s.table.insert(
            (cfg.vlan, cfg.mac),
            Entry {
                dest: Dest::Vm(id),
                fixed: true,
            },
        ) {
            if !old.fixed {
                s.learned -= 1;
            }
        }
        s.ports.push(VmPort {
            id,
            name: cfg.name,
            mac: cfg.mac,
            vlan: cfg.vlan,
            enabled: false,
            notify,
            queue: VecDeque::new(),
            spare: Vec::new(),
            counters: PortCounters::default(),
            spoof_reported: false,
        });
        Ok(id)
    }

    /// Removes a port, its queued frames and every address table entry that points at
    /// it. Unknown ports are ignored.
    pub fn remove_port(&self, port: PortId) {
        let mut s = self.state.lock();
        s.ports.retain(|p| p.id != port);
        s.table.retain(|_, e| e.dest != Dest::Vm(port));
    }

    /// Whether the port's NIC runs (its driver set it up): while it does not, frames
    /// for it are dropped (`rx_dropped`) instead of queued.
    pub fn set_port_enabled(&self, port: PortId, enabled: bool) {
        if let Some(p) = self.state.lock().port_mut(port) {
            p.enabled = enabled;
        }
    }

    /// Drops the frames waiting for `port` (its NIC was reset), counted as `rx_dropped`.
    pub fn flush_port(&self, port: PortId) {
        if let Some(p) = self.state.lock().port_mut(port) {
            p.flush();
        }
    }

    /// A frame the VM of `port` sent (see the module doc for where it goes). The
    /// callbacks of the ports it was queued for and the uplink's transmit run after the
    /// switch's lock is released, before this returns.
    pub fn send_from_vm(&self, port: PortId, frame: &[u8]) -> Result<(), DropReason> {
        let mut notifies = Vec::new();
        let (to_uplink, log, line) = {
            let mut s = self.state.lock();
            let log = s.log;
            let uplink = s.bound.as_ref().map(|b| b.id);
            let Some(p) = s.port_mut(port) else {
                return Err(DropReason::NoPort);
            };
            if frame.len() < ETH_HEADER {
                p.counters.tx_dropped += 1;
                return Err(DropReason::Runt);
            }
            if frame.len() > MAX_FRAME {
                p.counters.tx_dropped += 1;
                return Err(DropReason::TooBig);
            }
            let (dst, src) = match (MacAddr::destination(frame), MacAddr::source(frame)) {
                (Some(d), Some(s)) => (d, s),
                _ => return Err(DropReason::Runt),
            };
            if src != p.mac {
                p.counters.spoofed += 1;
                let line = (!p.spoof_reported).then(|| {
                    p.spoof_reported = true;
                    format!(
                        "net: port {} sent from {src}, not its own {}: dropped (counted)",
                        p.name, p.mac
                    )
                });
                drop(s);
                self.log(log, line);
                return Err(DropReason::Spoofed);
            }
            let vlan = p.vlan;
            let known = if dst.is_multicast() {
                None
            } else {
                s.table.get(&(vlan, dst)).map(|e| e.dest)
            };
            // A VLAN port's frame must still fit once tagged for the uplink: one only
            // the uplink would take is dropped; a flooded one reaches the VM ports only.
            let fits_uplink = vlan.is_none() || frame.len() + VLAN_TAG <= MAX_FRAME;
            let uplink = uplink.filter(|_| fits_uplink);
            let Some(p) = s.port_mut(port) else {
                return Err(DropReason::NoPort);
            };
            if known == Some(Dest::Uplink) && !fits_uplink {
                p.counters.tx_dropped += 1;
                return Err(DropReason::TooBig);
            }
            p.counters.tx_frames += 1;
            p.counters.tx_bytes += frame.len() as u64;
            let to_uplink = match known {
                Some(Dest::Vm(to)) if to == port => None,
                Some(Dest::Vm(to)) => {
                    s.deliver(vlan, None, Some(to), frame, &mut notifies);
                    None
                }
                Some(Dest::Uplink) => {
                    if uplink.is_none() {
                        // Its destination is outside and there is no uplink now.
                        self.uplink_tx_errors.fetch_add(1, Ordering::Relaxed);
                    }
                    uplink
                }
                None => {
                    p.counters.flooded += 1;
                    s.deliver(vlan, Some(port), None, frame, &mut notifies);
                    uplink
                }
            };
            (to_uplink.map(|id| (id, vlan)), log, None)
        };
        self.log(log, line);
        for n in notifies {
            n();
        }
        if let Some((id, vlan)) = to_uplink {
            let mut buf = [0u8; MAX_FRAME];
            let out = match vlan {
                // Checked above: the tagged frame fits.
                Some(v) => tag(frame, v, &mut buf).map(|len| &buf[..len]),
                None => Some(frame),
            };
            match out.map(|out| uplink::transmit(id, out)) {
                Some(Ok(())) => self.uplink_tx.fetch_add(1, Ordering::Relaxed),
                _ => self.uplink_tx_errors.fetch_add(1, Ordering::Relaxed),
            };
        }
        Ok(())
    }

    /// Makes the host port (the hypervisor's management address `mac`), replacing any
    /// earlier one. `notify` runs (without the switch's lock) when frames start waiting
    /// for it. Refused: a multicast address or one a VM port has.
    pub fn set_host_port(
        &self,
        mac: MacAddr,
        notify: Arc<dyn Fn() + Send + Sync>,
    ) -> Result<(), SwitchError> {
        let name = String::from("host");
        if mac.is_multicast() {
            return Err(SwitchError::MulticastMac { mac, name });
        }
        let mut s = self.state.lock();
        if let Some(holder) = s.ports.iter().find(|p| p.mac == mac) {
            return Err(SwitchError::DuplicateMac {
                mac,
                name,
                holder: holder.name.clone(),
            });
        }
        s.host = Some(HostPort {
            mac,
            notify,
            queue: VecDeque::new(),
            counters: PortCounters::default(),
        });
        Ok(())
    }

    /// A frame the hypervisor sends from its host port: to the uplink, untagged, and to
    /// no VM port. Its source must be the host port's address.
    pub fn send_from_host(&self, frame: &[u8]) -> Result<(), DropReason> {
        let uplink = {
            let mut s = self.state.lock();
            let uplink = s.bound.as_ref().map(|b| b.id);
            let Some(h) = s.host.as_mut() else {
                return Err(DropReason::NoPort);
            };
            if frame.len() < ETH_HEADER {
                h.counters.tx_dropped += 1;
                return Err(DropReason::Runt);
            }
            if frame.len() > MAX_FRAME {
                h.counters.tx_dropped += 1;
                return Err(DropReason::TooBig);
            }
            if MacAddr::source(frame) != Some(h.mac) {
                h.counters.spoofed += 1;
                return Err(DropReason::Spoofed);
            }
            h.counters.tx_frames += 1;
            h.counters.tx_bytes += frame.len() as u64;
            uplink
        };
        match uplink.map(|id| uplink::transmit(id, frame)) {
            Some(Ok(())) => self.uplink_tx.fetch_add(1, Ordering::Relaxed),
            _ => self.uplink_tx_errors.fetch_add(1, Ordering::Relaxed),
        };
        Ok(())
    }

    /// The next frame from the uplink for the host port.
    pub fn pop_for_host(&self) -> Option<Vec<u8>> {
        self.state.lock().host.as_mut()?.queue.pop_front()
    }

    /// The host port's counters, if it exists.
    pub fn host_counters(&self) -> Option<PortCounters> {
        self.state.lock().host.as_ref().map(|h| h.counters)
    }

    /// Whether frames wait in `port`'s inbound queue.
    pub fn has_pending(&self, port: PortId) -> bool {
        self.state
            .lock()
            .port(port)
            .is_some_and(|p| !p.queue.is_empty())
    }

    /// The length of the next frame waiting for `port`.
    pub fn next_frame_len(&self, port: PortId) -> Option<usize> {
        self.state
            .lock()
            .port(port)
            .and_then(|p| p.queue.front().map(Vec::len))
    }

    /// Shows the next frame waiting for `port` to `take`, which copies it out and returns
    /// `true` to consume it (counted as received), or `false` to leave it queued (no room
    /// for it yet). `None` if nothing waits. Runs under the switch's lock: `take` must
    /// only copy (no guest memory access, no other lock). Allocates nothing.
    pub fn with_next_frame(&self, port: PortId, take: impl FnOnce(&[u8]) -> bool) -> Option<bool> {
        let mut s = self.state.lock();
        let p = s.port_mut(port)?;
        let frame = p.queue.front()?;
        if !take(frame) {
            return Some(false);
        }
        let buf = p.queue.pop_front()?;
        p.counters.rx_frames += 1;
        p.counters.rx_bytes += buf.len() as u64;
        p.recycle(buf);
        Some(true)
    }

    /// Takes the next frame waiting for `port` (counted as received).
    pub fn pop_for_vm(&self, port: PortId) -> Option<Vec<u8>> {
        let mut out = None;
        self.with_next_frame(port, |f| {
            out = Some(f.to_vec());
            true
        });
        out
    }

    /// Chooses the uplink by `policy` (binding at once to the first registered NIC that
    /// fits, or unbinding).
    pub fn set_uplink_policy(&self, policy: UplinkPolicy) {
        let (log, line) = {
            let mut s = self.state.lock();
            s.policy = policy;
            let line = s.rebind();
            (s.log, line)
        };
        self.log(log, line);
    }

    /// Every VM port with its counters, in the order they were added.
    pub fn stats(&self) -> Vec<PortStats> {
        self.state
            .lock()
            .ports
            .iter()
            .map(|p| PortStats {
                id: p.id,
                name: p.name.clone(),
                mac: p.mac,
                vlan: p.vlan,
                counters: p.counters,
            })
            .collect()
    }

    /// The uplink's binding and counters.
    pub fn uplink_status(&self) -> UplinkStatus {
        let s = self.state.lock();
        UplinkStatus {
            policy: s.policy,
            bound: s.bound.as_ref().map(|b| (b.id, b.name.clone())),
            tx_frames: self.uplink_tx.load(Ordering::Relaxed),
            tx_errors: self.uplink_tx_errors.load(Ordering::Relaxed),
            rx_frames: self.uplink_rx.load(Ordering::Relaxed),
            rx_dropped: self.uplink_rx_dropped.load(Ordering::Relaxed),
        }
    }
}

impl UplinkSink for Switch {
    /// A frame from uplink `id`: forwarded to the VM ports of its VLAN (see the module
    /// doc); dropped if `id` is not the bound uplink or the frame is malformed.
    fn receive(&self, id: UplinkId, frame: &[u8]) {
        let mut buf = [0u8; MAX_FRAME];
        let mut notifies = Vec::new();
        let delivered = {
            let mut s = self.state.lock();
            match (&s.bound, untag(frame, &mut buf)) {
                (Some(b), Some((vlan, len))) if b.id == id => {
                    let frame = &buf[..len];
                    let (dst, src) = match (MacAddr::destination(frame), MacAddr::source(frame)) {
                        (Some(d), Some(s)) => (d, s),
                        _ => (MacAddr::BROADCAST, MacAddr::BROADCAST),
                    };
                    s.learn_uplink(vlan, src);
                    let mut for_host = false;
                    if let Some(h) = s.host.as_mut().filter(|_| vlan.is_none()) {
                        if dst == h.mac || dst.is_multicast() {
                            if h.queue.len() < HOST_QUEUE_LEN {
                                if h.queue.is_empty() {
                                    notifies.push(h.notify.clone());
                                }
                                h.queue.push_back(frame.to_vec());
                                h.counters.rx_frames += 1;
                                h.counters.rx_bytes += frame.len() as u64;
                            } else {
                                h.counters.rx_dropped += 1;
                            }
                            for_host = dst == h.mac;
                        }
                    }
                    let known = if dst.is_multicast() {
                        None
                    } else {
                        s.table.get(&(vlan, dst)).map(|e| e.dest)
                    };
                    match known {
                        // The hypervisor's own: no VM sees it.
                        _ if for_host => true,
                        // Back where it came from: nothing to do.
                        Some(Dest::Uplink) => false,
                        Some(Dest::Vm(to)) => {
                            s.deliver(vlan, None, Some(to), frame, &mut notifies);
                            true
                        }
                        None => {
                            let any = s.ports.iter().any(|p| p.vlan == vlan);
                            s.deliver(vlan, None, None, frame, &mut notifies);
                            any
                        }
                    }
                }
                _ => false,
            }
        };
        if delivered {
            self.uplink_rx.fetch_add(1, Ordering::Relaxed);
        } else {
            self.uplink_rx_dropped.fetch_add(1, Ordering::Relaxed);
        }
        for n in notifies {
            n();
        }
    }

    /// The set of NICs changed: keeps the bound uplink if it is still registered, else
    /// binds the first one the policy accepts.
    fn changed(&self) {
        let (log, line) = {
            let mut s = self.state.lock();
            let line = s.rebind();
            (s.log, line)
        };
        self.log(log, line);
    }
}

#[cfg(test)]
mod tests {
    //! Rules that need no uplink. The uplink path uses the global registry and lives in
    //! `tests/net_uplink.rs`, a process of its own.
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Mutex as StdMutex;

    const A: MacAddr = MacAddr([0x52, 0x54, 0, 0, 0, 0x0a]);
    const B: MacAddr = MacAddr([0x52, 0x54, 0, 0, 0, 0x0b]);
    const C: MacAddr = MacAddr([0x52, 0x54, 0, 0, 0, 0x0c]);

    fn frame(dst: MacAddr, src: MacAddr, len: usize) -> Vec<u8> {
        let mut f = vec![0x5au8; len];
        f[..6].copy_from_slice(&dst.0);
        f[6..12].copy_from_slice(&src.0);
        f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        f
    }

    struct Port {
        id: PortId,
        notified: Arc<AtomicUsize>,
    }

    fn port(sw: &Switch, name: &str, mac: MacAddr, vlan: Option<u16>) -> Port {
        let notified = Arc::new(AtomicUsize::new(0));
        let n = notified.clone();
        let cfg = PortConfig {
            name: name.into(),
            mac,
            vlan,
        };
        let id = sw
            .add_vm_port(
                cfg,
                Arc::new(move || {
                    n.fetch_add(1, Ordering::SeqCst);
                }),
            )
            .unwrap();
        sw.set_port_enabled(id, true);
        Port { id, notified }
    }

    fn drain(sw: &Switch, p: &Port) -> Vec<Vec<u8>> {
        core::iter::from_fn(|| sw.pop_for_vm(p.id)).collect()
    }

    fn counters(sw: &Switch, p: &Port) -> PortCounters {
        sw.stats()
            .into_iter()
            .find(|s| s.id == p.id)
            .unwrap()
            .counters
    }

    #[test]
    fn unicast_goes_to_its_port_only_and_broadcast_floods_but_never_back() {
        let sw = Switch::new();
        let (a, b, c) = (
            port(&sw, "a", A, None),
            port(&sw, "b", B, None),
            port(&sw, "c", C, None),
        );
        let f = frame(B, A, 60);
        sw.send_from_vm(a.id, &f).unwrap();
        assert_eq!(drain(&sw, &b), std::slice::from_ref(&f));
        assert!(drain(&sw, &c).is_empty() && drain(&sw, &a).is_empty());
        let bc = frame(MacAddr::BROADCAST, A, 42);
        sw.send_from_vm(a.id, &bc).unwrap();
        let mc = frame(MacAddr([0x01, 0, 0x5e, 0, 0, 1]), A, 42);
        sw.send_from_vm(a.id, &mc).unwrap();
        assert_eq!(drain(&sw, &b), [bc.clone(), mc.clone()]);
        assert_eq!(drain(&sw, &c), [bc, mc]);
        assert!(!sw.has_pending(a.id), "never back out the ingress port");
        let ca = counters(&sw, &a);
        assert_eq!((ca.tx_frames, ca.tx_bytes, ca.flooded), (3, 144, 2));
        assert_eq!(counters(&sw, &b).rx_frames, 3);
        assert_eq!(counters(&sw, &c).rx_bytes, 84);
    }

    #[test]
    fn unknown_unicast_is_flooded_and_counted() {
        let sw = Switch::new();
        let (a, b) = (port(&sw, "a", A, None), port(&sw, "b", B, None));
        let f = frame(MacAddr([2, 9, 9, 9, 9, 9]), A, 60);
        sw.send_from_vm(a.id, &f).unwrap();
        assert_eq!(drain(&sw, &b), [f]);
        assert_eq!(counters(&sw, &a).flooded, 1);
    }

    #[test]
    fn spoofed_sources_are_dropped_counted_and_reported_once() {
        static LOG: StdMutex<Vec<String>> = StdMutex::new(Vec::new());
        fn log(s: &str) {
            LOG.lock().unwrap().push(s.into());
        }
        let sw = Switch::new();
        sw.set_log(log);
        let (a, b) = (port(&sw, "`b` nic0", B, None), port(&sw, "a", A, None));
        for _ in 0..3 {
            assert_eq!(
                sw.send_from_vm(a.id, &frame(MacAddr::BROADCAST, A, 60)),
                Err(DropReason::Spoofed)
            );
        }
        // Its own traffic still flows.
        sw.send_from_vm(a.id, &frame(A, B, 60)).unwrap();
        assert_eq!(drain(&sw, &b).len(), 1);
        let c = counters(&sw, &a);
        assert_eq!((c.spoofed, c.tx_frames), (3, 1));
        let lines: Vec<String> = LOG
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains("`b` nic0"))
            .cloned()
            .collect();
        assert_eq!(
            lines,
            ["net: port `b` nic0 sent from 52:54:00:00:00:0a, not its own 52:54:00:00:00:0b: dropped (counted)"]
        );
        let line = sw
            .stats()
            .into_iter()
            .find(|s| s.id == a.id)
            .unwrap()
            .to_string();
        assert_eq!(
            line,
            format!("port {} `b` nic0 52:54:00:00:00:0b vlan -: rx 0/0 B, tx 1/60 B, dropped 0, spoofed 3", a.id)
        );
    }

    #[test]
    fn runts_and_oversized_frames_are_dropped_and_counted() {
        let sw = Switch::new();
        let (a, b) = (port(&sw, "a", A, None), port(&sw, "b", B, None));
        assert_eq!(sw.send_from_vm(a.id, &[0u8; 13]), Err(DropReason::Runt));
        assert_eq!(sw.send_from_vm(a.id, &[]), Err(DropReason::Runt));
        assert_eq!(
            sw.send_from_vm(a.id, &frame(B, A, MAX_FRAME + 1)),
            Err(DropReason::TooBig)
        );
        sw.send_from_vm(a.id, &frame(B, A, MAX_FRAME)).unwrap();
        sw.send_from_vm(a.id, &frame(B, A, ETH_HEADER)).unwrap();
        assert_eq!(drain(&sw, &b).len(), 2);
        assert_eq!(counters(&sw, &a).tx_dropped, 3);
        assert_eq!(
            sw.send_from_vm(PortId(999), &frame(B, A, 60)),
            Err(DropReason::NoPort)
        );
    }

    #[test]
    fn vlans_separate_port_groups() {
        let sw = Switch::new();
        let a = port(&sw, "a", A, Some(10));
        let b = port(&sw, "b", B, Some(20));
        let c = port(&sw, "c", C, Some(10));
        let d = port(&sw, "d", MacAddr([2, 0, 0, 0, 0, 0xd]), None);
        sw.send_from_vm(a.id, &frame(MacAddr::BROADCAST, A, 60))
            .unwrap();
        assert_eq!(drain(&sw, &c).len(), 1);
        assert!(drain(&sw, &b).is_empty() && drain(&sw, &d).is_empty());
        // B's address is known, but not in VLAN 10: flooded in VLAN 10, never to B.
        sw.send_from_vm(a.id, &frame(B, A, 60)).unwrap();
        assert!(drain(&sw, &b).is_empty());
        assert_eq!(drain(&sw, &c).len(), 1);
        sw.send_from_vm(d.id, &frame(MacAddr::BROADCAST, d_mac(), 60))
            .unwrap();
        assert!(drain(&sw, &a).is_empty() && drain(&sw, &b).is_empty());
        assert!(drain(&sw, &c).is_empty());
    }

    fn d_mac() -> MacAddr {
        MacAddr([2, 0, 0, 0, 0, 0xd])
    }

    #[test]
    fn a_full_queue_drops_and_counts_and_notifies_once_per_batch() {
        let sw = Switch::new();
        let (a, b) = (port(&sw, "a", A, None), port(&sw, "b", B, None));
        for i in 0..PORT_QUEUE_LEN + 10 {
            let mut f = frame(B, A, 60);
            f[20] = i as u8;
            sw.send_from_vm(a.id, &f).unwrap();
        }
        assert_eq!(b.notified.load(Ordering::SeqCst), 1);
        let c = counters(&sw, &b);
        assert_eq!(c.rx_dropped, 10);
        let got = drain(&sw, &b);
        assert_eq!(got.len(), PORT_QUEUE_LEN);
        assert_eq!(got[5][20], 5, "in order");
        sw.send_from_vm(a.id, &frame(B, A, 60)).unwrap();
        assert_eq!(
            b.notified.load(Ordering::SeqCst),
            2,
            "empty again: notified"
        );
        // A consumer that has no room leaves the frame queued.
        assert_eq!(sw.with_next_frame(b.id, |_| false), Some(false));
        assert_eq!(sw.next_frame_len(b.id), Some(60));
        assert_eq!(sw.with_next_frame(b.id, |_| true), Some(true));
        assert_eq!(sw.with_next_frame(b.id, |_| true), None);
    }

    #[test]
    fn disabled_ports_and_flushes_drop_counted() {
        let sw = Switch::new();
        let (a, b) = (port(&sw, "a", A, None), port(&sw, "b", B, None));
        sw.send_from_vm(a.id, &frame(B, A, 60)).unwrap();
        sw.flush_port(b.id);
        assert!(!sw.has_pending(b.id));
        sw.set_port_enabled(b.id, false);
        sw.send_from_vm(a.id, &frame(B, A, 60)).unwrap();
        assert!(!sw.has_pending(b.id));
        assert_eq!(counters(&sw, &b).rx_dropped, 2);
    }

    #[test]
    fn duplicate_and_bad_addresses_are_refused_and_removal_frees_them() {
        let sw = Switch::new();
        let a = port(&sw, "`a` nic0", A, None);
        let cfg = |mac, vlan| PortConfig {
            name: "`b` nic0".into(),
            mac,
            vlan,
        };
        let e = sw
            .add_vm_port(cfg(A, Some(5)), Arc::new(|| {}))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "MAC address 52:54:00:00:00:0a of `b` nic0 is already used by port `a` nic0: give one of the NICs another `mac`"
        );
        assert!(matches!(
            sw.add_vm_port(cfg(MacAddr::BROADCAST, None), Arc::new(|| {})),
            Err(SwitchError::MulticastMac { .. })
        ));
        for v in [0, 4095, 5000] {
            assert!(matches!(
                sw.add_vm_port(cfg(B, Some(v)), Arc::new(|| {})),
                Err(SwitchError::BadVlan { .. })
            ));
        }
        let b = port(&sw, "b", B, None);
        sw.remove_port(a.id);
        assert!(sw.stats().iter().all(|s| s.id != a.id));
        // A's address is forgotten: a frame to it is flooded, not sent to a dead port.
        sw.send_from_vm(b.id, &frame(A, B, 60)).unwrap();
        assert_eq!(counters(&sw, &b).flooded, 1);
        let a2 = port(&sw, "a again", A, None);
        assert_ne!(a2.id, a.id, "port IDs are not reused");
    }

    #[test]
    fn tags_are_added_and_removed_at_the_uplink_boundary() {
        let mut buf = [0u8; MAX_FRAME];
        let f = frame(B, A, 60);
        let n = tag(&f, 10, &mut buf).unwrap();
        assert_eq!(n, 64);
        assert_eq!(&buf[12..16], [0x81, 0x00, 0x00, 0x0a]);
        let tagged = buf[..n].to_vec();
        let mut out = [0u8; MAX_FRAME];
        assert_eq!(untag(&tagged, &mut out), Some((Some(10), 60)));
        assert_eq!(&out[..60], &f[..]);
        assert_eq!(untag(&f, &mut out), Some((None, 60)));
        assert_eq!(tag(&frame(B, A, MAX_FRAME - 3), 10, &mut buf), None);
        // Priority tag, reserved VID, a tag cut short.
        let mut p = tagged.clone();
        p[14..16].copy_from_slice(&0x6000u16.to_be_bytes());
        assert_eq!(untag(&p, &mut out), Some((None, 60)));
        p[14..16].copy_from_slice(&0x0fffu16.to_be_bytes());
        assert_eq!(untag(&p, &mut out), None);
        assert_eq!(untag(&tagged[..15], &mut out), None);
    }
}
