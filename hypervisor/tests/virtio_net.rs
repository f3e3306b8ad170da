//! virtio-net NICs of several VMs on one virtual switch, each driven through its VM's MMIO
//! bus as Linux's `virtio_pci` and `virtio_net` drive it (`tests/common`): frames between
//! VMs, flooding, VLANs, forged sources, full queues, the uplink, and what a hostile
//! driver can do to the device. Each VM has its own fake RAM and device lock; a frame
//! reaches the receiving VM only when that VM's devices are polled, as the runtime does
//! on the receiver's own vCPU after the switch port's `notify`.

mod common;

use common::{VirtioGuest, BUF, RAM, RAM_SIZE};
use hypervisor::mmio::AccessSize::{self, *};
use hypervisor::net::switch::{PortConfig, PortId, Switch, UplinkPolicy, PORT_QUEUE_LEN};
use hypervisor::net::uplink::{self, UplinkDevice, UplinkError, UplinkKind};
use hypervisor::net::{MacAddr, MAX_FRAME};
use hypervisor::sync::Mutex;
use hypervisor::virtio::net::*;
use hypervisor::virtio::pci::VirtioPci;
use hypervisor::virtio::queue::{VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE};
use hypervisor::virtio::*;
use std::collections::HashMap;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

const A: MacAddr = MacAddr([0x52, 0x54, 0, 0, 0, 0x0a]);
const B: MacAddr = MacAddr([0x52, 0x54, 0, 0, 0, 0x0b]);
const C: MacAddr = MacAddr([0x52, 0x54, 0, 0, 0, 0x0c]);
/// An address outside, behind the uplink.
const X: MacAddr = MacAddr([0x02, 0xee, 0, 0, 0, 0x01]);
const QS: u16 = 256;
/// Receive buffers: descriptor `i`'s at `RX_BASE + i * RX_STRIDE`.
const RX_BASE: u64 = BUF;
const RX_STRIDE: u64 = 0x800;
/// Transmit buffers: header at `TX_BASE + (i % 64) * 0x1000`, frame 0x100 above it.
const TX_BASE: u64 = RAM + 0xa_0000;
const FEATURES: u64 = VIRTIO_F_VERSION_1
    | VIRTIO_F_INDIRECT_DESC
    | VIRTIO_NET_F_MAC
    | VIRTIO_NET_F_STATUS
    | VIRTIO_NET_F_MTU;

fn frame(dst: MacAddr, src: MacAddr, len: usize, seed: u8) -> Vec<u8> {
    let mut f: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(7) ^ seed).collect();
    f[..6].copy_from_slice(&dst.0);
    f[6..12].copy_from_slice(&src.0);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    f
}

/// One VM with one virtio-net NIC on `sw`.
struct Nic {
    g: VirtioGuest,
    port: PortId,
    /// Set by the port's `notify` (the runtime's flag on the VM).
    flagged: Arc<AtomicBool>,
    /// The device's drop counters.
    counters: Arc<NetCounters>,
    /// Posted receive buffers by head: (address, length).
    rx: HashMap<u16, (u64, u32)>,
}

impl Deref for Nic {
    type Target = VirtioGuest;
    fn deref(&self) -> &VirtioGuest {
        &self.g
    }
}

impl DerefMut for Nic {
    fn deref_mut(&mut self) -> &mut VirtioGuest {
        &mut self.g
    }
}

impl Nic {
    /// A VM whose NIC has `mac` in port group `vlan`, probed with `features` but with
    /// no receive buffer posted yet.
    fn bare(sw: &Arc<Switch>, name: &str, mac: MacAddr, vlan: Option<u16>, features: u64) -> Self {
        let flagged = Arc::new(AtomicBool::new(false));
        let f = flagged.clone();
        let cfg = PortConfig {
            name: name.into(),
            mac,
            vlan,
        };
        let port = sw
            .add_vm_port(cfg, Arc::new(move || f.store(true, Ordering::SeqCst)))
            .unwrap();
        let net = VirtioNet::new(mac, sw.clone(), port);
        let counters = net.counters();
        let mut g = VirtioGuest::new(Box::new(VirtioPci::new(net)));
        g.enumerate(VIRTIO_ID_NET, 0x02);
        g.walk_capabilities();
        g.probe(features, QUEUE_SIZE, &[QS, QS]);
        Self {
            g,
            port,
            flagged,
            counters,
            rx: HashMap::new(),
        }
    }

    /// [`Self::bare`] with every receive buffer posted (1526 bytes: header and frame).
    fn up(sw: &Arc<Switch>, name: &str, mac: MacAddr, vlan: Option<u16>) -> Self {
        let mut n = Self::bare(sw, name, mac, vlan, FEATURES);
        n.post_rx(usize::from(QS), (HDR_LEN + 1514) as u32);
        n
    }

    // Forwarded by hand so that `n.read(n.regions.device, ..)` borrows as a method call.
    fn read(&mut self, addr: u64, size: AccessSize) -> u64 {
        self.g.read(addr, size)
    }

    /// `try_fill_recv`: posts `n` receive buffers of `len` bytes, then notifies.
    fn post_rx(&mut self, n: usize, len: u32) {
        for _ in 0..n {
            let i = self.queues[0].next_desc;
            let addr = RX_BASE + u64::from(i) * RX_STRIDE;
            let head = self.chain_on(0, &[(addr, len, true)]);
            self.rx.insert(head, (addr, len));
            self.make_available(0, head);
        }
        self.notify(0);
    }

    /// The runtime: if the port's `notify` flagged the VM, poll its devices.
    fn service(&mut self) {
        if self.flagged.swap(false, Ordering::SeqCst) {
            self.g.dev.poll_io();
        }
    }

    /// `virtnet_poll`: the frames the device put in the receive queue, each with its
    /// `num_buffers`.
    fn received(&mut self) -> Vec<(Vec<u8>, u16)> {
        self.service();
        let used = self.used_on(0);
        let mut out = Vec::new();
        let mut it = used.into_iter();
        while let Some((head, len)) = it.next() {
            let (addr, _) = self.rx.remove(&(head as u16)).expect("a posted buffer");
            let bytes = self.get(addr, len as usize);
            assert!(bytes.len() >= HDR_LEN, "used length {len} below the header");
            assert_eq!(&bytes[..10], &[0; 10], "no offload fields");
            let nb = u16::from_le_bytes([bytes[10], bytes[11]]);
            let mut f = bytes[HDR_LEN..].to_vec();
            for _ in 1..nb {
                let (head, len) = it.next().expect("num_buffers buffers");
                let (addr, _) = self.rx.remove(&(head as u16)).unwrap();
                f.extend(self.get(addr, len as usize));
            }
            out.push((f, nb));
        }
        out
    }

    /// The frames received, reposting as many buffers of the usual size.
    fn frames(&mut self) -> Vec<Vec<u8>> {
        let before = self.rx.len();
        let got: Vec<Vec<u8>> = self.received().into_iter().map(|(f, _)| f).collect();
        let n = before - self.rx.len();
        if n > 0 {
            self.post_rx(n, (HDR_LEN + 1514) as u32);
        }
        got
    }

    /// `start_xmit`: header and frame in two descriptors; returns the used elements of
    /// the transmit queue.
    fn send_raw(&mut self, hdr: [u8; HDR_LEN], data: &[u8]) -> Vec<(u32, u32)> {
        let at = TX_BASE + u64::from(self.queues[1].next_desc % 64) * 0x1000;
        self.put(at, &hdr);
        self.put(at + 0x100, data);
        let head = self.chain_on(
            1,
            &[
                (at, HDR_LEN as u32, false),
                (at + 0x100, data.len() as u32, false),
            ],
        );
        self.submit_on(1, head);
        self.used_on(1)
    }

    fn send(&mut self, data: &[u8]) {
        let used = self.send_raw([0; HDR_LEN], data);
        assert_eq!(used.len(), 1, "the transmit chain came back");
        assert_eq!(used[0].1, 0, "nothing written into a transmit chain");
    }
}

fn stats(sw: &Switch, port: PortId) -> hypervisor::net::switch::PortStats {
    sw.stats().into_iter().find(|s| s.id == port).unwrap()
}

#[test]
fn linux_style_bring_up_reads_mac_link_and_mtu() {
    let sw = Arc::new(Switch::new());
    let mut n = Nic::bare(&sw, "a", A, None, !0);
    let offered = n.device_features();
    for f in [
        VIRTIO_F_VERSION_1,
        VIRTIO_NET_F_MAC,
        VIRTIO_NET_F_STATUS,
        VIRTIO_NET_F_MTU,
        VIRTIO_NET_F_MRG_RXBUF,
    ] {
        assert_ne!(offered & f, 0, "feature {f:#x}");
    }
    // No checksum, segmentation offload or control queue.
    assert_eq!(offered & (1 << 0 | 1 << 1 | 1 << 11 | 1 << 17), 0);
    let dc = n.regions.device;
    let mac: Vec<u8> = (0..6).map(|i| n.read(dc + i, Byte) as u8).collect();
    assert_eq!(mac, A.0);
    assert_eq!(n.read(dc + 6, HalfWord), u64::from(VIRTIO_NET_S_LINK_UP));
    assert_eq!(n.read(dc + 10, HalfWord), 1500);
}

#[test]
fn two_vms_exchange_frames_with_an_interrupt_each_way() {
    let sw = Arc::new(Switch::new());
    let mut a = Nic::up(&sw, "`a` nic0", A, None);
    let mut b = Nic::up(&sw, "`b` nic0", B, None);
    let ab = frame(B, A, 98, 1);
    a.send(&ab);
    // Queued in the switch until B's own vCPU polls: nothing in B's ring yet.
    assert!(b.flagged.load(Ordering::SeqCst));
    assert!(b.used_on(0).is_empty() && !b.intx());
    assert_eq!(b.frames(), [ab]);
    assert!(b.intx(), "INTx after the frame landed");
    assert_eq!(b.isr(), 1);
    assert!(!b.intx());
    let ba = frame(A, B, 1514, 2);
    b.send(&ba);
    assert_eq!(a.frames(), [ba]);
    let sa = stats(&sw, a.port);
    assert_eq!((sa.counters.tx_frames, sa.counters.tx_bytes), (1, 98));
    assert_eq!((sa.counters.rx_frames, sa.counters.rx_bytes), (1, 1514));
}

#[test]
fn broadcast_floods_unknown_unicast_floods_known_unicast_does_not() {
    let sw = Arc::new(Switch::new());
    let mut a = Nic::up(&sw, "a", A, None);
    let mut b = Nic::up(&sw, "b", B, None);
    let mut c = Nic::up(&sw, "c", C, None);
    let bc = frame(MacAddr::BROADCAST, A, 60, 3);
    a.send(&bc);
    assert_eq!(b.frames(), std::slice::from_ref(&bc));
    assert_eq!(c.frames(), [bc]);
    assert!(a.frames().is_empty(), "never back out the ingress port");
    let unknown = frame(X, A, 60, 4);
    a.send(&unknown);
    assert_eq!(b.frames(), std::slice::from_ref(&unknown));
    assert_eq!(c.frames(), [unknown]);
    a.send(&frame(C, A, 60, 5));
    assert!(b.frames().is_empty());
    assert_eq!(c.frames().len(), 1);
    assert_eq!(stats(&sw, a.port).counters.flooded, 2);
}

#[test]
fn forged_sources_are_dropped_and_counted_while_own_traffic_flows() {
    let sw = Arc::new(Switch::new());
    let mut a = Nic::up(&sw, "`a` nic0", A, None);
    let mut b = Nic::up(&sw, "`b` nic0", B, None);
    for i in 0..5 {
        b.send(&frame(MacAddr::BROADCAST, A, 60, i));
        b.send(&frame(A, C, 60, i));
    }
    assert!(a.frames().is_empty());
    let own = frame(A, B, 60, 9);
    b.send(&own);
    assert_eq!(a.frames(), [own]);
    let s = stats(&sw, b.port);
    assert_eq!((s.counters.spoofed, s.counters.tx_frames), (10, 1));
    assert!(s.to_string().ends_with("dropped 0, spoofed 10"), "{s}");
    assert!(s.to_string().starts_with(&format!(
        "port {} `b` nic0 52:54:00:00:00:0b vlan -: ",
        b.port
    )));
}

#[test]
fn port_groups_keep_vlans_apart() {
    let sw = Arc::new(Switch::new());
    let mut a = Nic::up(&sw, "a", A, Some(10));
    let mut b = Nic::up(&sw, "b", B, Some(20));
    let mut c = Nic::up(&sw, "c", C, Some(10));
    let mut d = Nic::up(&sw, "d", MacAddr([2, 0, 0, 0, 0, 0xd]), None);
    a.send(&frame(MacAddr::BROADCAST, A, 60, 1));
    a.send(&frame(B, A, 60, 2));
    assert_eq!(c.frames().len(), 2, "B is not in VLAN 10: flooded there");
    assert!(b.frames().is_empty() && d.frames().is_empty());
    b.send(&frame(A, B, 60, 3));
    assert!(a.frames().is_empty() && c.frames().is_empty());
}

#[test]
fn frames_wait_for_buffers_and_a_full_port_queue_drops_counted() {
    let sw = Arc::new(Switch::new());
    let mut a = Nic::up(&sw, "a", A, None);
    let mut b = Nic::bare(&sw, "b", B, None, FEATURES);
    let sent: Vec<Vec<u8>> = (0..PORT_QUEUE_LEN + 20)
        .map(|i| frame(B, A, 60 + i % 100, i as u8))
        .collect();
    for f in &sent {
        a.send(f);
    }
    // No receive buffer: polling moves nothing, the switch keeps what it can hold.
    b.service();
    assert!(b.used_on(0).is_empty());
    assert_eq!(stats(&sw, b.port).counters.rx_dropped, 20);
    // Posting buffers (and the notify that goes with it) moves them, in order.
    b.post_rx(100, 1526);
    let first = b.received();
    assert_eq!(first.len(), 100);
    assert!(first
        .iter()
        .zip(&sent)
        .all(|((f, nb), s)| f == s && *nb == 1));
    assert!(b.intx());
    b.post_rx(usize::from(QS), 1526);
    let rest: Vec<Vec<u8>> = b.received().into_iter().map(|(f, _)| f).collect();
    assert_eq!(rest, sent[100..PORT_QUEUE_LEN]);
    let s = stats(&sw, b.port).counters;
    assert_eq!((s.rx_frames, s.rx_dropped), (PORT_QUEUE_LEN as u64, 20));
}

#[test]
fn mergeable_buffers_carry_a_frame_across_several() {
    let sw = Arc::new(Switch::new());
    let mut a = Nic::up(&sw, "a", A, None);
    let mut b = Nic::bare(&sw, "b", B, None, FEATURES | VIRTIO_NET_F_MRG_RXBUF);
    b.post_rx(16, 512);
    let big = frame(B, A, 1514, 7);
    let small = frame(B, A, 60, 8);
    a.send(&big);
    a.send(&small);
    b.service();
    let used = b.used_on(0);
    // 12 + 1514 bytes over three 512-byte buffers, then 72 bytes in one.
    assert_eq!(
        used.iter().map(|u| u.1).collect::<Vec<_>>(),
        [512, 512, 502, 72]
    );
    let mut got = b.get(b.rx[&(used[0].0 as u16)].0, 512);
    assert_eq!(u16::from_le_bytes([got[10], got[11]]), 3, "num_buffers");
    got.drain(..HDR_LEN);
    for &(head, len) in &used[1..3] {
        got.extend(b.get(b.rx[&(head as u16)].0, len as usize));
    }
    assert_eq!(got, big);
    // Not enough posted for a big frame: it waits (no partial frame), then goes.
    b.post_rx(0, 0);
    let mut c = Nic::bare(&sw, "c", C, None, FEATURES | VIRTIO_NET_F_MRG_RXBUF);
    c.post_rx(2, 512);
    a.send(&frame(C, A, 1514, 9));
    c.service();
    assert!(c.used_on(0).is_empty());
    c.post_rx(1, 512);
    let got = c.received();
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].0.clone(), got[0].1), (frame(C, A, 1514, 9), 3));
}

#[test]
fn buffers_too_small_or_unusable_drop_counted_without_blocking_the_rest() {
    let sw = Arc::new(Switch::new());
    let mut a = Nic::up(&sw, "a", A, None);
    // Unmerged, a 100-byte buffer cannot take a 1514-byte frame: the frame is dropped,
    // the buffer comes back empty, the next frame uses the next buffer.
    let mut b = Nic::bare(&sw, "b", B, None, FEATURES);
    b.post_rx(1, 100);
    b.post_rx(1, 1526);
    a.send(&frame(B, A, 1514, 1));
    a.send(&frame(B, A, 60, 2));
    b.service();
    let used = b.used_on(0);
    assert_eq!(used.iter().map(|u| u.1).collect::<Vec<_>>(), [0, 72]);
    assert_eq!(b.counters.get().rx_no_room, 1);
    // A buffer outside RAM, and a device-readable one (no room for a header): lost or
    // returned empty, counted; the device goes on.
    let head = b.chain_on(0, &[(RAM + RAM_SIZE as u64 - 16, 1526, true)]);
    b.make_available(0, head);
    let head = b.chain_on(0, &[(BUF, 1526, false)]);
    b.make_available(0, head);
    b.post_rx(1, 1526);
    a.send(&frame(B, A, 60, 3));
    a.send(&frame(B, A, 60, 4));
    b.service();
    assert_eq!(b.counters.get().rx_bad_buffer, 2);
    let used = b.used_on(0);
    assert_eq!(used.len(), 3);
    assert_eq!(used[1].1, 0);
    assert_eq!(used[2].1, 72);
    assert_eq!(b.status() & STATUS_DEVICE_NEEDS_RESET, 0);
}

#[test]
fn hostile_transmit_chains_never_panic_and_the_nic_still_works() {
    let sw = Arc::new(Switch::new());
    let mut a = Nic::up(&sw, "a", A, None);
    let mut b = Nic::up(&sw, "b", B, None);
    let ok = frame(B, A, 60, 1);
    // Frame buffer outside RAM, below it and wrapping.
    for addr in [0x1000, u64::MAX - 10] {
        let at = TX_BASE;
        a.put(at, &[0; HDR_LEN]);
        let head = a.chain_on(1, &[(at, HDR_LEN as u32, false), (addr, 60, false)]);
        a.submit_on(1, head);
        assert_eq!(a.used_on(1), [(u32::from(head), 0)]);
    }
    assert_eq!(a.counters.get().tx_bad_chain, 2);
    // A frame over MAX_FRAME.
    a.send(&frame(B, A, MAX_FRAME + 1, 2));
    assert_eq!(a.counters.get().tx_too_big, 1);
    // Header only: a runt, counted by the switch.
    a.send(&[]);
    assert_eq!(stats(&sw, a.port).counters.tx_dropped, 1);
    // Header cut short; device-writable only.
    let head = a.chain_on(1, &[(TX_BASE, 6, false)]);
    a.submit_on(1, head);
    let head = a.chain_on(1, &[(TX_BASE, 100, true)]);
    a.submit_on(1, head);
    assert_eq!(a.used_on(1).len(), 2);
    assert_eq!(a.counters.get().tx_bad_chain, 4);
    // Offloads that were not offered: checksum, TSO.
    let mut hdr = [0u8; HDR_LEN];
    hdr[0] = 1;
    a.send_raw(hdr, &ok);
    hdr = [0; HDR_LEN];
    hdr[1] = 1;
    a.send_raw(hdr, &ok);
    assert_eq!(a.counters.get().tx_bad_header, 2);
    assert!(b.frames().is_empty(), "nothing bad got through");
    assert_eq!(a.status() & STATUS_DEVICE_NEEDS_RESET, 0);
    a.send(&ok);
    assert_eq!(b.frames(), std::slice::from_ref(&ok));
    // A descriptor loop breaks the queue, not the hypervisor; a reset recovers it.
    let t = a.queues[1].desc;
    a.desc_at(t, 0, TX_BASE, 12, VIRTQ_DESC_F_NEXT, 1);
    a.desc_at(t, 1, TX_BASE, 60, VIRTQ_DESC_F_NEXT, 0);
    a.queues[1].next_desc = 2;
    a.isr(); // acknowledge the transmit interrupts so far
    a.submit_on(1, 0);
    assert_ne!(a.status() & STATUS_DEVICE_NEEDS_RESET, 0);
    assert_eq!(a.isr(), 2, "configuration interrupt");
    a.clear_queues();
    a.probe(FEATURES, QUEUE_SIZE, &[QS, QS]);
    a.rx.clear();
    a.post_rx(8, 1526);
    a.send(&ok);
    assert_eq!(b.frames(), [ok]);
    // A receive ring whose available index runs ahead breaks only the receiving NIC.
    b.put(
        b.queues[0].avail + 2,
        &(b.queues[0].avail_idx + QS + 1).to_le_bytes(),
    );
    a.send(&frame(B, A, 60, 3));
    b.service();
    assert_ne!(b.status() & STATUS_DEVICE_NEEDS_RESET, 0);
    let _ = VIRTQ_DESC_F_WRITE;
}

#[test]
fn reset_drops_queued_frames_and_dropping_the_device_removes_its_port() {
    let sw = Arc::new(Switch::new());
    let mut a = Nic::up(&sw, "a", A, None);
    let mut b = Nic::up(&sw, "b", B, None);
    a.send(&frame(B, A, 60, 1));
    a.send(&frame(B, A, 60, 2));
    assert!(sw.has_pending(b.port));
    b.set_status(0);
    assert!(!sw.has_pending(b.port));
    assert_eq!(stats(&sw, b.port).counters.rx_dropped, 2);
    // While the driver is down, frames for it are not queued.
    a.send(&frame(B, A, 60, 3));
    assert!(!sw.has_pending(b.port));
    b.clear_queues();
    b.probe(FEATURES, QUEUE_SIZE, &[QS, QS]);
    b.rx.clear();
    b.post_rx(4, 1526);
    let f = frame(B, A, 60, 4);
    a.send(&f);
    assert_eq!(b.frames(), [f]);
    // A VM reset resets the device too.
    a.send(&frame(B, A, 60, 5));
    b.g.dev.reset().unwrap();
    assert!(!sw.has_pending(b.port));
    let port = b.port;
    drop(b);
    assert!(
        sw.stats().iter().all(|s| s.id != port),
        "no port left behind"
    );
    assert_eq!(sw.stats().len(), 1);
}

/// Whether another CPU can take the switch's lock now (a thread tries for 5 s): what a
/// NIC driver calling `receive` while the switch transmits, or a `notify` callback
/// that looks at the switch, needs.
fn switch_lock_free(sw: &'static Switch) -> bool {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = sw.uplink_status();
        let _ = tx.send(());
    });
    rx.recv_timeout(std::time::Duration::from_secs(5)).is_ok()
}

/// A machine NIC: records what it is asked to send, and whether the switch's lock was
/// free each time.
struct FakeNic {
    sent: Vec<Vec<u8>>,
    switch: &'static Switch,
    lock_free: bool,
}

impl FakeNic {
    fn new(switch: &'static Switch) -> Arc<Mutex<Self>> {
        Arc::new(Mutex::new(Self {
            sent: Vec::new(),
            switch,
            lock_free: true,
        }))
    }
}

impl UplinkDevice for FakeNic {
    fn transmit(&mut self, frame: &[u8]) -> Result<(), UplinkError> {
        self.lock_free &= switch_lock_free(self.switch);
        self.sent.push(frame.to_vec());
        Ok(())
    }
}

fn tagged(f: &[u8], vlan: u16) -> Vec<u8> {
    let mut t = f[..12].to_vec();
    t.extend(0x8100u16.to_be_bytes());
    t.extend(vlan.to_be_bytes());
    t.extend(&f[12..]);
    t
}

fn sent(nic: &Mutex<FakeNic>) -> Vec<Vec<u8>> {
    std::mem::take(&mut nic.lock().sent)
}

static LOG: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

fn log(line: &str) {
    LOG.lock().unwrap().push(line.into());
}

// The uplink registry and its sink are global: one test walks the whole life of the
// uplink (and no other test of this binary enables one).
#[test]
fn the_uplink_carries_tagged_and_untagged_traffic_learns_and_comes_back_after_unplug() {
    let sw = Arc::new(Switch::new());
    let st: &'static Switch = Box::leak(Box::new(sw.clone()));
    sw.set_log(log);
    uplink::set_sink(st);
    let pci = FakeNic::new(st);
    let pci_h = uplink::register(
        "pci-nic",
        UplinkKind::Pci,
        MacAddr([2, 1, 1, 1, 1, 1]),
        pci.clone(),
    );
    assert_eq!(sw.uplink_status().bound, None, "a new switch has no uplink");
    let usb_only = UplinkPolicy {
        enabled: true,
        kind: Some(UplinkKind::Usb),
    };
    sw.set_uplink_policy(usb_only);
    assert_eq!(sw.uplink_status().bound, None, "no USB NIC yet");
    assert_eq!(
        sw.uplink_status().to_string(),
        "uplink none (waiting for a usb NIC): tx 0 (0 errors), rx 0 (0 dropped)"
    );
    let usb = FakeNic::new(st);
    let usb_mac = MacAddr([2, 2, 2, 2, 2, 2]);
    let usb_h = uplink::register("usb0", UplinkKind::Usb, usb_mac, usb.clone());
    assert_eq!(
        sw.uplink_status().bound,
        Some((usb_h.id(), "usb0".to_string()))
    );

    let mut a = Nic::up(&sw, "a", A, None);
    let mut b = Nic::up(&sw, "b", B, None);
    let mut c = Nic::up(&sw, "c", C, Some(10));

    // Out through the uplink: untagged from A, tagged with VLAN 10 from C.
    let fa = frame(MacAddr::BROADCAST, A, 60, 1);
    a.send(&fa);
    let fc = frame(MacAddr::BROADCAST, C, 60, 2);
    c.send(&fc);
    assert_eq!(sent(&usb), [fa.clone(), tagged(&fc, 10)]);
    assert!(sent(&pci).is_empty(), "only the bound uplink sends");
    assert_eq!(b.frames(), [fa]);
    assert!(c.frames().is_empty() && a.frames().is_empty());

    // Learning: X is unknown (flooded, uplink included) until it sends from outside.
    a.send(&frame(X, A, 60, 3));
    assert_eq!((b.frames().len(), sent(&usb).len()), (1, 1));
    let reply = frame(A, X, 60, 4);
    usb_h.receive(&reply);
    assert_eq!(a.frames(), [reply]);
    assert!(b.frames().is_empty());
    let to_x = frame(X, A, 60, 5);
    a.send(&to_x);
    assert_eq!(sent(&usb), [to_x]);
    assert!(b.frames().is_empty(), "known to be outside: not flooded");

    // From outside: tagged frames only to their VLAN (tag removed), untagged ones to
    // the untagged ports.
    let t = frame(MacAddr::BROADCAST, X, 60, 6);
    usb_h.receive(&tagged(&t, 10));
    assert_eq!(c.frames(), [t]);
    assert!(a.frames().is_empty() && b.frames().is_empty());
    let u = frame(MacAddr::BROADCAST, X, 60, 7);
    usb_h.receive(&u);
    assert_eq!((a.frames(), b.frames()), (vec![u.clone()], vec![u]));
    assert!(c.frames().is_empty());
    let rx_before = sw.uplink_status().rx_frames;
    // A VLAN without ports, a runt, a NIC that is not the bound uplink: dropped, counted.
    usb_h.receive(&tagged(&frame(MacAddr::BROADCAST, X, 60, 8), 99));
    usb_h.receive(&[0u8; 10]);
    pci_h.receive(&frame(MacAddr::BROADCAST, X, 60, 9));
    assert!(a.frames().is_empty() && b.frames().is_empty() && c.frames().is_empty());
    let s = sw.uplink_status();
    assert_eq!((s.rx_frames, s.rx_dropped), (rx_before, 3));

    // Outside claiming B's address does not take B's traffic.
    usb_h.receive(&frame(MacAddr::BROADCAST, B, 60, 10));
    assert_eq!(
        (a.frames().len(), b.frames().len()),
        (1, 1),
        "a broadcast all the same"
    );
    let ab = frame(B, A, 60, 11);
    a.send(&ab);
    assert_eq!(b.frames(), [ab]);
    assert!(sent(&usb).is_empty());

    // Unplugged: no uplink, frames for outside dropped and counted, VMs unaffected.
    let old_id = usb_h.id();
    drop(usb_h);
    assert_eq!(sw.uplink_status().bound, None);
    let errors = sw.uplink_status().tx_errors;
    a.send(&frame(X, A, 60, 12));
    assert_eq!(sw.uplink_status().tx_errors, errors + 1);
    let ab = frame(B, A, 60, 13);
    a.send(&ab);
    assert_eq!(b.frames(), [ab]);
    // Plugged in again: a new ID, bound again, and traffic to X resumes.
    let usb_h = uplink::register("usb0", UplinkKind::Usb, usb_mac, usb.clone());
    assert_ne!(usb_h.id(), old_id);
    assert_eq!(sw.uplink_status().bound.map(|b| b.0), Some(usb_h.id()));
    let to_x = frame(X, A, 60, 14);
    a.send(&to_x);
    assert_eq!(sent(&usb), [to_x]);
    let back = frame(A, X, 60, 15);
    usb_h.receive(&back);
    assert_eq!(a.frames(), [back]);

    // Any kind: the bound NIC stays while it is there, then the first other one.
    sw.set_uplink_policy(UplinkPolicy {
        enabled: true,
        kind: None,
    });
    assert_eq!(sw.uplink_status().bound.map(|b| b.0), Some(usb_h.id()));
    drop(usb_h);
    assert_eq!(sw.uplink_status().bound.map(|b| b.0), Some(pci_h.id()));
    a.send(&frame(MacAddr::BROADCAST, A, 60, 16));
    assert_eq!(sent(&pci).len(), 1);

    // Callbacks and the NIC's transmit ran with the switch's lock free.
    assert!(usb.lock().lock_free && pci.lock().lock_free);
    let ok = Arc::new(AtomicBool::new(true));
    let ok2 = ok.clone();
    let watcher = sw
        .add_vm_port(
            PortConfig {
                name: "watcher".into(),
                mac: MacAddr([2, 0, 0, 0, 0, 0x77]),
                vlan: None,
            },
            Arc::new(move || {
                if !switch_lock_free(st) {
                    ok2.store(false, Ordering::SeqCst);
                }
            }),
        )
        .unwrap();
    sw.set_port_enabled(watcher, true);
    a.send(&frame(MacAddr::BROADCAST, A, 60, 17));
    pci_h.receive(&frame(MacAddr([2, 0, 0, 0, 0, 0x77]), X, 60, 18));
    assert!(sw.has_pending(watcher));
    assert!(
        ok.load(Ordering::SeqCst),
        "notify ran under the switch's lock"
    );

    // The host port (the hypervisor's management address) talks to the uplink only.
    let host_mac = MacAddr([2, 0, 0, 0, 0, 0x99]);
    let _ = (sent(&pci), a.frames(), b.frames());
    while sw.pop_for_vm(watcher).is_some() {}
    let host_flag = Arc::new(AtomicBool::new(false));
    let hf = host_flag.clone();
    sw.set_host_port(host_mac, Arc::new(move || hf.store(true, Ordering::SeqCst)))
        .unwrap();
    assert!(
        sw.add_vm_port(
            PortConfig {
                name: "thief".into(),
                mac: host_mac,
                vlan: None
            },
            Arc::new(|| {})
        )
        .is_err(),
        "a VM port cannot take the host port's address"
    );
    let from_host = frame(MacAddr::BROADCAST, host_mac, 60, 19);
    sw.send_from_host(&from_host).unwrap();
    assert_eq!(sent(&pci), [from_host], "host broadcasts go out the uplink");
    assert!(
        a.frames().is_empty() && b.frames().is_empty() && !sw.has_pending(watcher),
        "and reach no VM port"
    );
    assert!(sw
        .send_from_host(&frame(MacAddr::BROADCAST, A, 60, 20))
        .is_err());
    // A VM sending to the host's address: never delivered to the host port.
    a.send(&frame(host_mac, A, 60, 21));
    assert_eq!(sw.pop_for_host(), None);
    assert!(!host_flag.load(Ordering::SeqCst));
    let _ = (b.frames(), sent(&pci));
    // From outside: unicast to the host goes to it alone; broadcasts to it and the VMs.
    let to_host = frame(host_mac, X, 60, 22);
    pci_h.receive(&to_host);
    assert!(host_flag.load(Ordering::SeqCst));
    assert_eq!(sw.pop_for_host(), Some(to_host));
    assert!(a.frames().is_empty() && b.frames().is_empty());
    let bc = frame(MacAddr::BROADCAST, X, 60, 23);
    pci_h.receive(&bc);
    assert_eq!(sw.pop_for_host(), Some(bc.clone()));
    assert_eq!(a.frames(), [bc]);
    let hc = sw.host_counters().unwrap();
    assert_eq!((hc.tx_frames, hc.rx_frames, hc.spoofed), (1, 2, 1));

    sw.set_uplink_policy(UplinkPolicy::default());
    assert_eq!(sw.uplink_status().bound, None);
    let lines = LOG.lock().unwrap().clone();
    let n = old_id.0;
    assert!(
        lines.contains(&format!("net: uplink usb0 (id {n}) bound")),
        "{lines:?}"
    );
    assert!(
        lines.contains(
            &"net: uplink usb0 gone; frames for outside are dropped until a NIC comes".to_string()
        ),
        "{lines:?}"
    );
    drop(pci_h);
}
