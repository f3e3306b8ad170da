//! The runtime's side of networking: the one virtual switch, the board's uplink policy,
//! each VM's virtio-net NICs on it, and how a frame queued for a VM reaches it.
//!
//! A frame for a VM is queued at its switch port (by another VM's vCPU, or by a NIC
//! driver's interrupt handler) and the VM is flagged in [`NET_PENDING`] and its vCPU 0 is
//! kicked; the VM's own vCPU then moves the frames into its receive ring
//! ([`VmDevices::poll_io`]) before it next enters the guest. So no CPU ever holds two VMs'
//! device locks at once.

use crate::arch::{self, cpu};
use crate::config::VmDesc;
use crate::hvprintln;
use crate::net::switch::{PortConfig, Switch, UplinkPolicy};
use crate::net::uplink::{self, UplinkKind};
use crate::net::MacAddr;
use crate::platform::{BoardDesc, UplinkChoice};
use crate::types::VmId;
use crate::virtio::net::NetCounters;
use crate::vm::devices::{DevicesError, VmDevices};
use alloc::format;
use alloc::string::String;
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};
use spin::Once;

/// VM `n` has frames waiting at one of its switch ports (indexed by VM slot).
static NET_PENDING: [AtomicBool; 256] = [const { AtomicBool::new(false) }; 256];

static SWITCH: Once<Arc<Switch>> = Once::new();

/// Every VM NIC's counters, with its VM and name (weak: a destroyed VM's NIC goes away).
static NICS: crate::sync::Mutex<Vec<(VmId, String, Weak<NetCounters>)>> =
    crate::sync::Mutex::new(Vec::new());

/// The virtual switch (created on first use).
pub fn switch() -> &'static Arc<Switch> {
    SWITCH.call_once(|| {
        let s = Arc::new(Switch::new());
        s.set_log(log_line);
        s
    })
}

fn log_line(line: &str) {
    hvprintln!("[hv] {line}");
}

struct Sink;

impl uplink::UplinkSink for Sink {
    fn receive(&self, id: uplink::UplinkId, frame: &[u8]) {
        uplink::UplinkSink::receive(&**switch(), id, frame);
    }
    fn changed(&self) {
        uplink::UplinkSink::changed(&**switch());
    }
}

static SINK: Sink = Sink;

/// Joins the machine's NICs to the switch as the board's `network` node says.
pub fn init(board: &BoardDesc) {
    let kind = match board.network.uplink {
        UplinkChoice::Auto => Some(None),
        UplinkChoice::Usb => Some(Some(UplinkKind::Usb)),
        UplinkChoice::Pci => Some(Some(UplinkKind::Pci)),
        UplinkChoice::None => None,
    };
    switch().set_uplink_policy(UplinkPolicy {
        enabled: kind.is_some(),
        kind: kind.flatten(),
    });
    uplink::set_sink(&SINK);
}

/// Gives VM `id` its `[[vm.nic]]`s: a virtio-net function on its PCIe bus each, on a
/// switch port in the NIC's port group.
pub fn attach_nics(
    id: VmId,
    desc: &'static VmDesc,
    devices: &mut VmDevices,
    kick_cpu: usize,
) -> Result<(), NicError> {
    let board = arch::board();
    for (i, n) in desc.nics.iter().enumerate() {
        let mac = n
            .mac
            .map(MacAddr)
            .unwrap_or_else(|| MacAddr::generated(desc.name, i));
        let group = board
            .network
            .group(n.port_group)
            .ok_or(NicError::NoPortGroup(i))?;
        let slot = id.0;
        let notify: Arc<dyn Fn() + Send + Sync> = Arc::new(move || notify(slot, kick_cpu));
        let port = switch()
            .add_vm_port(
                PortConfig {
                    name: format!("`{}` nic{i}", desc.name),
                    mac,
                    vlan: group.vlan,
                },
                notify,
            )
            .map_err(|e| NicError::Switch(i, e))?;
        let nic = crate::virtio::net::VirtioNet::new(mac, switch().clone(), port);
        {
            let mut nics = NICS.lock();
            nics.retain(|(_, _, c)| c.strong_count() > 0);
            nics.push((
                id,
                format!("`{}` nic{i}", desc.name),
                Arc::downgrade(&nic.counters()),
            ));
        }
        devices
            .add_pci(
                NIC_NAMES.get(i).copied().unwrap_or("nic"),
                alloc::boxed::Box::new(crate::virtio::pci::VirtioPci::new(nic)),
            )
            .map_err(NicError::Devices)?;
    }
    Ok(())
}

const NIC_NAMES: [&str; 8] = [
    "nic0", "nic1", "nic2", "nic3", "nic4", "nic5", "nic6", "nic7",
];

/// Why a VM's NICs could not be made.
#[derive(Debug, thiserror::Error)]
pub enum NicError {
    /// The port group is not the board's (the build checks this).
    #[error("NIC {0}: its port group is not one of the board's")]
    NoPortGroup(usize),
    /// The switch refused the port.
    #[error("NIC {0}: {1}")]
    Switch(usize, crate::net::switch::SwitchError),
    /// The PCI function could not be added.
    #[error("{0}")]
    Devices(DevicesError),
}

/// A frame waits for VM `slot`: flag it and wake the CPU of its vCPU 0.
fn notify(slot: usize, kick_cpu: usize) {
    if let Some(f) = NET_PENDING.get(slot) {
        f.store(true, Ordering::Release);
    }
    if kick_cpu != cpu::current_index() {
        if let Some(c) = arch::board().cpus.get(kick_cpu) {
            super::irqchip().send_sgi(super::KICK_SGI, c.mpidr);
        }
    }
}

/// True if frames wait for VM `id` (cheap: one load).
pub fn pending(id: VmId) -> bool {
    NET_PENDING
        .get(id.0)
        .is_some_and(|f| f.load(Ordering::Acquire))
}

/// Takes VM `id`'s flag: true if frames were waiting (the caller then polls its devices).
pub fn take_pending(id: VmId) -> bool {
    NET_PENDING
        .get(id.0)
        .is_some_and(|f| f.load(Ordering::Acquire) && f.swap(false, Ordering::AcqRel))
}

/// Whether frames wait for VM `id` (what [`take_pending`] would take), without taking them.
pub fn is_pending(id: VmId) -> bool {
    NET_PENDING
        .get(id.0)
        .is_some_and(|f| f.load(Ordering::Acquire))
}

/// Whether any VM was given a NIC.
pub fn has_nics() -> bool {
    !NICS.lock().is_empty()
}

/// Prints the device counters of VM `id`'s NICs (`None`: every VM's): exits and
/// interrupts per frame are what the networking figures of `docs/performance.md` weigh.
pub fn print_nic_counters(id: Option<VmId>) {
    let nics: Vec<(String, Arc<NetCounters>)> = NICS
        .lock()
        .iter()
        .filter(|(vm, _, _)| id.is_none_or(|id| *vm == id))
        .filter_map(|(_, name, c)| Some((name.clone(), c.upgrade()?)))
        .collect();
    for (name, c) in nics {
        hvprintln!("[hv] net: {name} virtio-net: {}", c.get());
    }
}

/// The console's `net` command: every switch port and uplink, with counters.
pub fn print_stats() {
    for p in switch().stats() {
        hvprintln!("[hv] net: {p}");
    }
    print_nic_counters(None);
    let st = switch().uplink_status();
    match &st.bound {
        Some((_, name)) => hvprintln!(
            "[hv] net: switch uplink {name}: to it {} frames ({} refused), from it {} frames ({} dropped)",
            st.tx_frames,
            st.tx_errors,
            st.rx_frames,
            st.rx_dropped
        ),
        None => hvprintln!(
            "[hv] net: switch uplink: none bound ({})",
            if st.policy.enabled { "waiting for a NIC" } else { "none by the board's network node" }
        ),
    }
    let ups = uplink::list();
    if ups.is_empty() {
        hvprintln!("[hv] net: no uplink (VMs reach only each other)");
    }
    for u in ups {
        hvprintln!(
            "[hv] net: uplink {} ({}) {} link {}: rx {}/{} B, tx {}/{} B, tx errors {}",
            u.name,
            u.kind.name(),
            u.mac,
            if u.link_up { "up" } else { "down" },
            u.rx_frames,
            u.rx_bytes,
            u.tx_frames,
            u.tx_bytes,
            u.tx_errors
        );
    }
}
