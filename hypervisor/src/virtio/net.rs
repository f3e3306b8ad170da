//! virtio-net (virtio 1.2 §5.1): a guest's NIC, one port of the [virtual
//! switch](crate::net::switch).
//!
//! Offered: `VIRTIO_NET_F_MAC` (the port's address), `VIRTIO_NET_F_STATUS` (link up),
//! `VIRTIO_NET_F_MTU` (1500) and `VIRTIO_NET_F_MRG_RXBUF` (a received frame may span
//! several receive buffers, so Linux posts page-sized ones). No checksum or segmentation
//! offload and no control queue: every frame is a plain Ethernet frame of at most
//! [`MAX_FRAME`] bytes. Queues: 0 is `receiveq`, 1 is `transmitq`. Every buffer starts
//! with the 12-byte `virtio_net_hdr` of virtio 1.x.
//!
//! Transmit runs on the guest's notify: each chain is the header (flags and GSO type 0,
//! since no offload was offered) and the frame, which goes to the switch; the chain
//! returns to the guest either way. A chain the device cannot use (no room for the
//! header, buffers outside RAM, a frame over [`MAX_FRAME`], a header asking for offload)
//! is dropped and counted in [`NetCounters`]; what the switch refuses (a forged source
//! address, a runt) it counts itself. A broken queue (loop, bad index, rings outside RAM)
//! is `DEVICE_NEEDS_RESET` through the transport. Nothing a guest writes panics.
//!
//! Receive is deferred: the switch queues frames for the port and calls its `notify`;
//! the runtime then polls the VM's devices ([`VirtioDevice::poll`]) on one of its vCPUs,
//! which moves frames into the posted receive buffers and raises the interrupt. Frames
//! wait in the switch (bounded) while the guest has no buffer; a notify on `receiveq`
//! (the guest posted some) moves them too. A frame too big for every buffer the guest
//! could post is dropped and counted rather than blocking the ones behind it.
//!
//! The port belongs to the device: dropping the device removes it from the switch (a
//! destroyed VM leaves no port behind); a device reset keeps it, drops the frames
//! waiting for it and stops the switch queuing more until the driver runs it again.
#![deny(unsafe_code)]

use super::queue::{DescChain, QueueError, SplitQueue};
use super::VirtioDevice;
use crate::net::switch::{PortId, Switch, PORT_QUEUE_LEN};
use crate::net::{MacAddr, MAX_FRAME};
use crate::vm::mem::GuestMemory;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

/// virtio device ID of a network card.
pub const VIRTIO_ID_NET: u16 = 1;

/// Feature: `mtu` in the configuration is valid.
pub const VIRTIO_NET_F_MTU: u64 = 1 << 3;
/// Feature: `mac` in the configuration is valid.
pub const VIRTIO_NET_F_MAC: u64 = 1 << 5;
/// Feature: a received frame may use several receive buffers (`num_buffers`).
pub const VIRTIO_NET_F_MRG_RXBUF: u64 = 1 << 15;
/// Feature: `status` in the configuration is valid.
pub const VIRTIO_NET_F_STATUS: u64 = 1 << 16;

/// `status`: the link is up.
pub const VIRTIO_NET_S_LINK_UP: u16 = 1;

/// Bytes of `virtio_net_hdr` with `VIRTIO_F_VERSION_1` (`num_buffers` included).
pub const HDR_LEN: usize = 12;
/// The MTU the device reports.
pub const MTU: u16 = 1500;
/// Size of each queue.
pub const QUEUE_SIZE: u16 = 256;
/// Index of `receiveq`.
pub const RX_QUEUE: u16 = 0;
/// Index of `transmitq`.
pub const TX_QUEUE: u16 = 1;
/// Size of the configuration space: `mac`, `status`, `max_virtqueue_pairs`, `mtu`.
pub const CONFIG_LEN: usize = 12;

/// What the device dropped, by cause (what the switch drops, it counts per port).
/// Shared: whoever created the device can keep [`VirtioNet::counters`] to report them
/// while the device sits on the VM's bus.
#[derive(Debug, Default)]
pub struct NetCounters {
    /// Transmit chains without room for the header, or with buffers outside RAM.
    pub tx_bad_chain: AtomicU64,
    /// Transmit headers asking for an offload that was not offered.
    pub tx_bad_header: AtomicU64,
    /// Transmitted frames over [`MAX_FRAME`].
    pub tx_too_big: AtomicU64,
    /// Received frames dropped because no buffer the guest posted could hold them.
    pub rx_no_room: AtomicU64,
    /// Receive buffers that were unusable (outside RAM, or without room for the
    /// header): the frame in them was lost, or they went back empty.
    pub rx_bad_buffer: AtomicU64,
    /// Notifies of `transmitq` (each one a guest exit).
    pub tx_notifies: AtomicU64,
    /// Notifies of `receiveq` (each one a guest exit).
    pub rx_notifies: AtomicU64,
    /// Frames handed to the switch.
    pub tx_frames: AtomicU64,
    /// Frames written into `receiveq`.
    pub rx_frames: AtomicU64,
    /// Runtime polls that found the device running (frames flagged for the VM).
    pub polls: AtomicU64,
    /// Queue interrupts the transport raised for the device.
    pub interrupts: AtomicU64,
    /// The feature bits the driver accepted (at its last `DRIVER_OK`).
    pub features: AtomicU64,
}

impl NetCounters {
    /// The counters at this moment.
    pub fn get(&self) -> NetCounts {
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        NetCounts {
            tx_bad_chain: l(&self.tx_bad_chain),
            tx_bad_header: l(&self.tx_bad_header),
            tx_too_big: l(&self.tx_too_big),
            rx_no_room: l(&self.rx_no_room),
            rx_bad_buffer: l(&self.rx_bad_buffer),
            tx_notifies: l(&self.tx_notifies),
            rx_notifies: l(&self.rx_notifies),
            tx_frames: l(&self.tx_frames),
            rx_frames: l(&self.rx_frames),
            polls: l(&self.polls),
            interrupts: l(&self.interrupts),
            features: l(&self.features),
        }
    }
}

/// A copy of [`NetCounters`] (same fields).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct NetCounts {
    pub tx_bad_chain: u64,
    pub tx_bad_header: u64,
    pub tx_too_big: u64,
    pub rx_no_room: u64,
    pub rx_bad_buffer: u64,
    pub tx_notifies: u64,
    pub rx_notifies: u64,
    pub tx_frames: u64,
    pub rx_frames: u64,
    pub polls: u64,
    pub interrupts: u64,
    pub features: u64,
}

impl core::fmt::Display for NetCounts {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "tx {} frames in {} notifies, rx {} frames in {} polls + {} rx notifies, {} interrupts; \
             dropped: tx bad chain {}, bad header {}, too big {}, rx no room {}, bad buffer {}; \
             features {:#x}",
            self.tx_frames,
            self.tx_notifies,
            self.rx_frames,
            self.polls,
            self.rx_notifies,
            self.interrupts,
            self.tx_bad_chain,
            self.tx_bad_header,
            self.tx_too_big,
            self.rx_no_room,
            self.rx_bad_buffer,
            self.features
        )
    }
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// A virtio network device on a switch port.
pub struct VirtioNet {
    mac: MacAddr,
    switch: Arc<Switch>,
    port: PortId,
    features: u64,
    active: bool,
    queue_sizes: [u16; 2],
    /// One frame, copied out of the switch or the guest.
    frame: Vec<u8>,
    /// The receive chains one frame uses.
    chains: Vec<DescChain>,
    counters: Arc<NetCounters>,
}

impl VirtioNet {
    /// A NIC with address `mac` on `port` of `switch` (the port's own address; the
    /// device owns the port from now on and removes it when dropped).
    pub fn new(mac: MacAddr, switch: Arc<Switch>, port: PortId) -> Self {
        switch.set_port_enabled(port, false);
        Self {
            mac,
            switch,
            port,
            features: 0,
            active: false,
            queue_sizes: [QUEUE_SIZE; 2],
            frame: vec![0; MAX_FRAME],
            chains: Vec::new(),
            counters: Arc::default(),
        }
    }

    /// Its switch port.
    pub fn port(&self) -> PortId {
        self.port
    }

    /// What it dropped (shared: keep it to read the counters later).
    pub fn counters(&self) -> Arc<NetCounters> {
        self.counters.clone()
    }

    fn config(&self) -> [u8; CONFIG_LEN] {
        let mut c = [0u8; CONFIG_LEN];
        c[0..6].copy_from_slice(&self.mac.0);
        c[6..8].copy_from_slice(&VIRTIO_NET_S_LINK_UP.to_le_bytes());
        c[8..10].copy_from_slice(&1u16.to_le_bytes()); // max_virtqueue_pairs
        c[10..12].copy_from_slice(&MTU.to_le_bytes());
        c
    }

    /// Sends the frame of one transmit chain to the switch (or drops it, counted).
    fn transmit(&mut self, mem: &mut dyn GuestMemory, chain: &DescChain) {
        let mut reader = chain.reader();
        let mut hdr = [0u8; HDR_LEN];
        if reader.read(mem, &mut hdr) != Ok(HDR_LEN) {
            bump(&self.counters.tx_bad_chain);
            return;
        }
        // flags (NEEDS_CSUM, ...) and gso_type need offloads that were not offered.
        if hdr[0] != 0 || hdr[1] != 0 {
            bump(&self.counters.tx_bad_header);
            return;
        }
        let len = reader.remaining();
        if len > MAX_FRAME as u64 {
            bump(&self.counters.tx_too_big);
            return;
        }
        let buf = &mut self.frame[..len as usize];
        if reader.read(mem, buf) != Ok(buf.len()) {
            bump(&self.counters.tx_bad_chain);
            return;
        }
        // The switch counts what it refuses (runt, forged source) on the port.
        bump(&self.counters.tx_frames);
        let _ = self.switch.send_from_vm(self.port, buf);
    }

    fn transmit_queue(
        &mut self,
        queue: &mut SplitQueue,
        mem: &mut dyn GuestMemory,
    ) -> Result<bool, QueueError> {
        let mut used = false;
        // At most a queue's worth per notify: chains made available later come with
        // their own notify.
        for _ in 0..queue.size {
            let Some(chain) = queue.pop(mem)? else {
                break;
            };
            self.transmit(mem, &chain);
            queue.add_used(mem, chain.head, 0)?;
            used = true;
        }
        Ok(used)
    }

    /// Moves the frames waiting in the switch into `receiveq`, at most a queue's worth of
    /// chains per call; returns whether it used any.
    fn receive(
        &mut self,
        queue: &mut SplitQueue,
        mem: &mut dyn GuestMemory,
    ) -> Result<bool, QueueError> {
        if !self.active || !queue.ready {
            return Ok(false);
        }
        let merge = self.features & VIRTIO_NET_F_MRG_RXBUF != 0;
        let size = usize::from(queue.size);
        let mut budget = size;
        let mut used = false;
        // Each pass uses a chain, drops a frame, or stops; a frame that changed under us
        // (a reset on another CPU) costs a pass too, so this always ends, and within it
        // every frame the switch can hold can be dropped (nobody polls again for those
        // already waiting).
        for _ in 0..PORT_QUEUE_LEN + 2 * size {
            let Some(len) = self.switch.next_frame_len(self.port) else {
                break;
            };
            let need = (HDR_LEN + len) as u64;
            self.chains.clear();
            let mut room = 0u64;
            let mut out_of_chains = false;
            while room < need && (merge || self.chains.is_empty()) {
                if self.chains.len() >= budget {
                    out_of_chains = true;
                    break;
                }
                match queue.pop(mem) {
                    Ok(Some(c)) => {
                        room += c.writer().remaining();
                        self.chains.push(c);
                    }
                    Ok(None) => {
                        out_of_chains = true;
                        break;
                    }
                    Err(e) => {
                        queue.unpop(self.chains.len() as u16);
                        return Err(e);
                    }
                }
            }
            // The header must fit in the first buffer (virtio 1.2 §5.1.6.3.1: every
            // receive buffer holds at least a header). One that does not goes back empty,
            // counted; the frame waits for the next.
            if let Some(first) = self.chains.first() {
                if first.writer().remaining() < HDR_LEN as u64 {
                    let head = first.head;
                    queue.unpop(self.chains.len() as u16 - 1);
                    queue.add_used(mem, head, 0)?;
                    bump(&self.counters.rx_bad_buffer);
                    budget -= 1;
                    used = true;
                    continue;
                }
            }
            if room < need {
                let whole_ring = self.chains.len() >= size;
                if self.chains.is_empty() || (merge && out_of_chains && !whole_ring) {
                    // No buffers (yet): the frame waits for the guest to post some.
                    queue.unpop(self.chains.len() as u16);
                    break;
                }
                // No buffer the guest posts can hold it: drop it rather than block the
                // frames behind it. Unmerged, the too-small buffer goes back empty.
                self.switch.with_next_frame(self.port, |_| true);
                bump(&self.counters.rx_no_room);
                if merge {
                    queue.unpop(self.chains.len() as u16);
                } else {
                    let c = &self.chains[0];
                    queue.add_used(mem, c.head, 0)?;
                    budget -= 1;
                    used = true;
                }
                continue;
            }
            let frame = &mut self.frame;
            let took = self.switch.with_next_frame(self.port, |f| {
                if f.len() != len {
                    return false;
                }
                frame[..len].copy_from_slice(f);
                true
            });
            if took != Some(true) {
                queue.unpop(self.chains.len() as u16);
                if took.is_none() {
                    break;
                }
                continue;
            }
            self.deliver(mem, len, queue)?;
            budget -= self.chains.len();
            used = true;
            if budget == 0 {
                break;
            }
        }
        Ok(used)
    }

    /// Writes the header and the frame in `self.frame[..len]` into `self.chains` and
    /// puts them in the used ring.
    fn deliver(
        &mut self,
        mem: &mut dyn GuestMemory,
        len: usize,
        queue: &mut SplitQueue,
    ) -> Result<(), QueueError> {
        let mut hdr = [0u8; HDR_LEN];
        hdr[10..12].copy_from_slice(&(self.chains.len() as u16).to_le_bytes());
        let mut data: [&[u8]; 2] = [&hdr, &self.frame[..len]];
        let mut failed = false;
        for c in &self.chains {
            let mut w = c.writer();
            for part in data.iter_mut() {
                if part.is_empty() || w.remaining() == 0 || failed {
                    continue;
                }
                match w.write(mem, part) {
                    Ok(n) => *part = &part[n..],
                    Err(_) => failed = true,
                }
            }
            let written = u32::try_from(w.consumed()).unwrap_or(u32::MAX);
            queue.add_used(mem, c.head, written)?;
        }
        if failed {
            bump(&self.counters.rx_bad_buffer);
        } else {
            bump(&self.counters.rx_frames);
        }
        Ok(())
    }
}

impl Drop for VirtioNet {
    fn drop(&mut self) {
        self.switch.remove_port(self.port);
    }
}

impl VirtioDevice for VirtioNet {
    fn device_id(&self) -> u16 {
        VIRTIO_ID_NET
    }

    fn pci_class(&self) -> u32 {
        // Network controller, Ethernet.
        0x02_00_00
    }

    fn features(&self) -> u64 {
        VIRTIO_NET_F_MAC | VIRTIO_NET_F_STATUS | VIRTIO_NET_F_MTU | VIRTIO_NET_F_MRG_RXBUF
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &self.queue_sizes
    }

    fn config_len(&self) -> usize {
        CONFIG_LEN
    }

    fn config_read(&self, offset: u64, data: &mut [u8]) {
        let c = self.config();
        for (i, b) in data.iter_mut().enumerate() {
            *b = usize::try_from(offset)
                .ok()
                .and_then(|o| o.checked_add(i))
                .and_then(|o| c.get(o))
                .copied()
                .unwrap_or(0);
        }
    }

    fn config_write(&mut self, _offset: u64, _data: &[u8]) {
        // `mac` is writable only with VIRTIO_NET_F_CTRL_MAC_ADDR-less legacy drivers;
        // a modern device's configuration is read-only here.
    }

    fn activate(&mut self, features: u64) {
        self.features = features;
        self.counters.features.store(features, Ordering::Relaxed);
        self.active = true;
        self.switch.set_port_enabled(self.port, true);
    }

    fn process_queue(
        &mut self,
        index: u16,
        queue: &mut SplitQueue,
        mem: &mut dyn GuestMemory,
    ) -> Result<bool, QueueError> {
        match index {
            RX_QUEUE => {
                bump(&self.counters.rx_notifies);
                self.receive(queue, mem)
            }
            TX_QUEUE => {
                bump(&self.counters.tx_notifies);
                self.transmit_queue(queue, mem)
            }
            _ => Ok(false),
        }
    }

    fn poll(
        &mut self,
        queues: &mut [SplitQueue],
        mem: &mut dyn GuestMemory,
    ) -> Result<u32, QueueError> {
        bump(&self.counters.polls);
        match queues.get_mut(usize::from(RX_QUEUE)) {
            Some(q) => Ok(u32::from(self.receive(q, mem)?) << RX_QUEUE),
            None => Ok(0),
        }
    }

    fn interrupt_raised(&self) {
        bump(&self.counters.interrupts);
    }

    fn reset(&mut self) {
        self.features = 0;
        self.active = false;
        self.switch.set_port_enabled(self.port, false);
        self.switch.flush_port(self.port);
    }
}
