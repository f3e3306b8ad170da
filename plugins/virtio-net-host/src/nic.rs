//! One virtio-net device driven through the modern virtio-pci transport: reset and feature
//! negotiation (virtio 1.2 3.1.1), the receive queue kept full of 2 KiB device-writable
//! buffers, the transmit queue with completions reclaimed, and the ISR read that tells the
//! interrupt handler what happened (4.1.4.5). Register access is behind [`Transport`] and
//! DMA behind [`Env`], so all of it runs in host tests against a fake device.
//!
//! Nothing the device writes into the used rings is trusted: an ID that is out of range or
//! not outstanding, a length shorter than the header plus an Ethernet header or longer than
//! the buffer, and a used index that runs more than a queue ahead are refused and counted
//! in [`Counters`]; the driver never indexes with a device value unchecked.

use crate::spec::{
    self, desc, feature, net_config, status, Layout, DESC_F_WRITE, NET_HDR, RX_QUEUE, TX_QUEUE,
};
use alloc::vec;
use alloc::vec::Vec;
use hypervisor::dma::{Dma, DmaError, Env};
use hypervisor::net::uplink::{UplinkDevice, UplinkError};
use hypervisor::net::{MacAddr, ETH_HEADER, MAX_FRAME};

/// Largest queue the driver uses (QEMU offers 256).
pub const MAX_QUEUE: u16 = 128;
/// Bytes of each buffer: a header and the longest frame fit (5.1.6.3.1 asks for at least
/// 1526 bytes per receive buffer without mergeable buffers or offloads).
pub const BUF: usize = 2048;
/// How long a reset may take to read back as 0.
const RESET_TIMEOUT_MS: u64 = 100;

/// What the driver touches of a virtio-pci function (4.1.4.3 common configuration, 4.1.4.4
/// notifications, 4.1.4.5 ISR status, 4.1.4.6 device configuration).
pub trait Transport: Send {
    /// `device_status`.
    fn status(&mut self) -> u8;
    /// Writes `device_status` (0 resets the device).
    fn set_status(&mut self, status: u8);
    /// The 64 feature bits the device offers (`device_feature_select` 0 then 1).
    fn device_features(&mut self) -> u64;
    /// Writes the 64 feature bits the driver accepts.
    fn set_driver_features(&mut self, features: u64);
    /// Selects queue `q` and returns its `queue_size` (the device's maximum; 0: absent).
    fn queue_max(&mut self, q: u16) -> u16;
    /// Selects queue `q`, writes its size and ring addresses, then `queue_enable` = 1.
    fn enable_queue(&mut self, q: u16, size: u16, desc: u64, driver: u64, device: u64);
    /// Notifies the device that queue `q` has new available buffers.
    fn notify(&mut self, q: u16);
    /// Reads (and so clears) the ISR status: bit 0 a queue, bit 1 a configuration change.
    fn isr(&mut self) -> u8;
    /// `config_generation`.
    fn config_generation(&mut self) -> u8;
    /// A byte of the device configuration.
    fn config8(&mut self, offset: usize) -> u8;
    /// A le16 of the device configuration.
    fn config16(&mut self, offset: usize) -> u16;
}

/// Why bring-up failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitError {
    /// `device_status` did not read 0 after the reset.
    ResetTimeout,
    /// The device does not offer VERSION_1.
    NotVersion1,
    /// The device did not keep FEATURES_OK.
    FeaturesRefused,
    /// Queue 0 or 1 is missing.
    NoQueue,
    /// No DMA memory.
    Memory,
}

impl InitError {
    /// For the console.
    pub fn message(self) -> &'static str {
        match self {
            Self::ResetTimeout => "device_status did not read 0 after reset",
            Self::NotVersion1 => "device does not offer VIRTIO_F_VERSION_1 (legacy only)",
            Self::FeaturesRefused => "device refused the features (FEATURES_OK cleared)",
            Self::NoQueue => "device lacks receiveq1 or transmitq1",
            Self::Memory => "no DMA memory left in the RAM pool",
        }
    }
}

/// What the driver dropped or refused, for the console and the tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Frames received and handed on.
    pub rx_frames: u64,
    /// Used entries with a length too short for a header and an Ethernet header, or longer
    /// than the buffer or a frame.
    pub rx_bad_length: u64,
    /// Used entries with an ID out of range or not outstanding (either queue).
    pub bad_id: u64,
    /// Used indices that ran more than a queue ahead (either queue).
    pub bad_used_idx: u64,
    /// Frames queued for transmission.
    pub tx_frames: u64,
    /// Transmit buffers the device returned.
    pub tx_completed: u64,
    /// DMA copies that failed.
    pub dma_errors: u64,
}

/// What one interrupt brought.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Serviced {
    /// The interrupt was this device's (ISR was not zero).
    pub ours: bool,
    /// Frames received, to hand to the uplink with the device's lock released.
    pub frames: Vec<Vec<u8>>,
    /// The link state, if it changed.
    pub link: Option<bool>,
}

/// One split virtqueue with one buffer of [`BUF`] bytes per descriptor.
struct Queue<B> {
    layout: Layout,
    ring: B,
    bufs: B,
    /// Next `avail.idx` to publish.
    avail_idx: u16,
    /// `used.idx` consumed so far.
    last_used: u16,
    /// Descriptor IDs the device owns.
    outstanding: Vec<bool>,
}

impl<B: Dma> Queue<B> {
    fn new<E: Env<Buf = B>>(env: &E, size: u16, coherent: bool) -> Result<Self, InitError> {
        let layout = Layout::new(size);
        let alloc = |n: usize| {
            env.alloc(n as u64, coherent)
                .map_err(|DmaError| InitError::Memory)
        };
        Ok(Self {
            layout,
            ring: alloc(layout.bytes)?,
            bufs: alloc(usize::from(size) * BUF)?,
            avail_idx: 0,
            last_used: 0,
            outstanding: vec![false; usize::from(size)],
        })
    }

    fn buf_addr(&self, id: u16) -> u64 {
        self.bufs.bus_addr() + u64::from(id) * BUF as u64
    }

    /// Puts descriptor `id` in the available ring (not yet published).
    fn offer(&mut self, id: u16) -> Result<(), DmaError> {
        self.ring.write(
            self.layout.avail_slot(self.avail_idx) as u64,
            &id.to_le_bytes(),
        )?;
        self.avail_idx = self.avail_idx.wrapping_add(1);
        if let Some(o) = self.outstanding.get_mut(usize::from(id)) {
            *o = true;
        }
        Ok(())
    }

    /// Publishes the offered entries (`avail.idx`), after they were written.
    fn publish(&mut self) -> Result<(), DmaError> {
        self.ring.write(
            self.layout.avail_idx() as u64,
            &self.avail_idx.to_le_bytes(),
        )
    }

    /// The device's `used.idx`, and how many new entries that makes (`None`: more than a
    /// queue's worth, which no correct device reports).
    fn used_pending(&self) -> Result<Option<u16>, DmaError> {
        let mut b = [0u8; 2];
        self.ring.read(self.layout.used_idx() as u64, &mut b)?;
        let n = u16::from_le_bytes(b).wrapping_sub(self.last_used);
        Ok((n <= self.layout.size).then_some(n))
    }

    /// The next used entry `(id, len)`, validated: `Ok(None)` for an ID that is out of
    /// range or not outstanding. Advances past it either way.
    fn pop_used(&mut self) -> Result<Option<(u16, u32)>, DmaError> {
        let mut e = [0u8; 8];
        self.ring
            .read(self.layout.used_slot(self.last_used) as u64, &mut e)?;
        self.last_used = self.last_used.wrapping_add(1);
        let id = u32::from_le_bytes([e[0], e[1], e[2], e[3]]);
        let len = u32::from_le_bytes([e[4], e[5], e[6], e[7]]);
        let slot = usize::try_from(id)
            .ok()
            .and_then(|i| self.outstanding.get_mut(i))
            .filter(|o| **o);
        Ok(slot.map(|o| {
            *o = false;
            (id as u16, len)
        }))
    }
}

/// One virtio-net device.
pub struct VirtioNet<E: Env, T: Transport> {
    transport: T,
    mac: MacAddr,
    features: u64,
    rx: Queue<E::Buf>,
    tx: Queue<E::Buf>,
    /// Transmit descriptor IDs not in use.
    tx_free: Vec<u16>,
    link: bool,
    /// Counters.
    pub counters: Counters,
    _env: E,
}

use hypervisor::dma::wait_until as wait;

impl<E: Env, T: Transport> VirtioNet<E, T> {
    /// Initializes the device (virtio 1.2 3.1.1): reset, ACKNOWLEDGE, DRIVER, features
    /// ([`feature::WANTED`] of what it offers; VERSION_1 required), FEATURES_OK checked,
    /// both queues set up and the receive queue filled, DRIVER_OK. `fallback_mac` is used
    /// when the device offers no MAC (5.1.5: the driver then picks one). On failure the
    /// device is left with FAILED set (3.1.1 step 8).
    pub fn new(
        env: E,
        mut transport: T,
        coherent: bool,
        fallback_mac: MacAddr,
    ) -> Result<Self, InitError> {
        let r = Self::init(&env, &mut transport, coherent, fallback_mac);
        match r {
            Ok((mac, features, rx, tx)) => {
                let mut nic = Self {
                    transport,
                    mac,
                    features,
                    tx_free: (0..tx.layout.size).rev().collect(),
                    rx,
                    tx,
                    link: true,
                    counters: Counters::default(),
                    _env: env,
                };
                nic.link = nic.read_link();
                Ok(nic)
            }
            Err(e) => {
                let s = transport.status();
                transport.set_status(s | status::FAILED);
                Err(e)
            }
        }
    }

    #[allow(clippy::type_complexity)]
    fn init(
        env: &E,
        t: &mut T,
        coherent: bool,
        fallback_mac: MacAddr,
    ) -> Result<(MacAddr, u64, Queue<E::Buf>, Queue<E::Buf>), InitError> {
        // 4.1.4.3.2: after writing 0 the driver waits for device_status to read 0.
        t.set_status(0);
        if !wait(env, RESET_TIMEOUT_MS, || t.status() == 0) {
            return Err(InitError::ResetTimeout);
        }
        t.set_status(status::ACKNOWLEDGE);
        t.set_status(status::ACKNOWLEDGE | status::DRIVER);
        let offered = t.device_features();
        if offered & feature::VERSION_1 == 0 {
            return Err(InitError::NotVersion1);
        }
        let features = offered & feature::WANTED;
        t.set_driver_features(features);
        let s = status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK;
        t.set_status(s);
        if t.status() & status::FEATURES_OK == 0 {
            return Err(InitError::FeaturesRefused);
        }
        let mac = if features & feature::NET_MAC != 0 {
            read_mac(t)
        } else {
            fallback_mac
        };
        let mut queue = |q: u16| -> Result<Queue<E::Buf>, InitError> {
            let size = spec::queue_size(t.queue_max(q), MAX_QUEUE);
            if size == 0 {
                return Err(InitError::NoQueue);
            }
            let queue = Queue::new(env, size, coherent)?;
            let base = queue.ring.bus_addr();
            let l = queue.layout;
            t.enable_queue(q, size, base, base + l.avail as u64, base + l.used as u64);
            Ok(queue)
        };
        let mut rx = queue(RX_QUEUE)?;
        let tx = queue(TX_QUEUE)?;
        // Every receive descriptor: a device-writable buffer, offered once.
        for id in 0..rx.layout.size {
            let d = desc(rx.buf_addr(id), BUF as u32, DESC_F_WRITE);
            rx.ring
                .write(u64::from(id) * 16, &d)
                .and_then(|()| rx.offer(id))
                .map_err(|DmaError| InitError::Memory)?;
        }
        rx.publish().map_err(|DmaError| InitError::Memory)?;
        t.set_status(s | status::DRIVER_OK);
        t.notify(RX_QUEUE);
        Ok((mac, features, rx, tx))
    }

    /// The device's MAC address.
    pub fn mac(&self) -> MacAddr {
        self.mac
    }

    /// The link as last seen (always up without VIRTIO_NET_F_STATUS, 5.1.4.2).
    pub fn link_up(&self) -> bool {
        self.link
    }

    /// The features in use.
    pub fn features(&self) -> u64 {
        self.features
    }

    fn read_link(&mut self) -> bool {
        self.features & feature::NET_STATUS == 0
            || self.transport.config16(net_config::STATUS) & net_config::LINK_UP != 0
    }

    /// The interrupt handler's work: reads ISR (which clears it and lowers the INTx line);
    /// if the interrupt was this device's, takes the received frames, reclaims transmit
    /// buffers and, on a configuration change, looks at the link.
    pub fn service(&mut self) -> Serviced {
        let isr = self.transport.isr();
        if isr == 0 {
            return Serviced::default();
        }
        let mut out = Serviced {
            ours: true,
            ..Serviced::default()
        };
        if isr & 2 != 0 {
            let up = self.read_link();
            if up != self.link {
                self.link = up;
                out.link = Some(up);
            }
        }
        self.reclaim_tx();
        out.frames = self.drain_rx();
        out
    }

    /// Takes every frame in the receive used ring and offers each buffer again.
    pub fn drain_rx(&mut self) -> Vec<Vec<u8>> {
        let mut frames = Vec::new();
        let n = match self.rx.used_pending() {
            Ok(Some(n)) => n,
            Ok(None) => {
                self.counters.bad_used_idx += 1;
                return frames;
            }
            Err(DmaError) => {
                self.counters.dma_errors += 1;
                return frames;
            }
        };
        for _ in 0..n {
            let (id, len) = match self.rx.pop_used() {
                Ok(Some(e)) => e,
                Ok(None) => {
                    self.counters.bad_id += 1;
                    continue;
                }
                Err(DmaError) => {
                    self.counters.dma_errors += 1;
                    break;
                }
            };
            let len = len as usize;
            if !(NET_HDR + ETH_HEADER..=BUF).contains(&len) || len - NET_HDR > MAX_FRAME {
                self.counters.rx_bad_length += 1;
            } else {
                let mut f = vec![0u8; len - NET_HDR];
                let at = u64::from(id) * BUF as u64 + NET_HDR as u64;
                if self.rx.bufs.read(at, &mut f).is_ok() {
                    self.counters.rx_frames += 1;
                    frames.push(f);
                } else {
                    self.counters.dma_errors += 1;
                }
            }
            // The descriptor still points at its buffer: offer it again.
            if self.rx.offer(id).is_err() {
                self.counters.dma_errors += 1;
            }
        }
        if n > 0 {
            if self.rx.publish().is_err() {
                self.counters.dma_errors += 1;
            }
            self.transport.notify(RX_QUEUE);
        }
        frames
    }

    fn reclaim_tx(&mut self) {
        let n = match self.tx.used_pending() {
            Ok(Some(n)) => n,
            Ok(None) => {
                self.counters.bad_used_idx += 1;
                return;
            }
            Err(DmaError) => {
                self.counters.dma_errors += 1;
                return;
            }
        };
        for _ in 0..n {
            match self.tx.pop_used() {
                Ok(Some((id, _))) => {
                    self.tx_free.push(id);
                    self.counters.tx_completed += 1;
                }
                Ok(None) => self.counters.bad_id += 1,
                Err(DmaError) => {
                    self.counters.dma_errors += 1;
                    return;
                }
            }
        }
    }

    /// Transmit buffers the device holds.
    pub fn tx_in_flight(&self) -> usize {
        usize::from(self.tx.layout.size) - self.tx_free.len()
    }
}

impl<E: Env + Send, T: Transport> UplinkDevice for VirtioNet<E, T> {
    fn transmit(&mut self, frame: &[u8]) -> Result<(), UplinkError> {
        if frame.len() > MAX_FRAME {
            return Err(UplinkError::TooLong);
        }
        if frame.is_empty() {
            return Err(UplinkError::Hardware("empty frame"));
        }
        if self.tx_free.is_empty() {
            self.reclaim_tx();
        }
        let id = self.tx_free.pop().ok_or(UplinkError::QueueFull)?;
        // A zero header (5.1.6: no checksum or segmentation offload asked), then the frame.
        let at = u64::from(id) * BUF as u64;
        let addr = self.tx.buf_addr(id);
        let ok = self.tx.bufs.write(at, &[0u8; NET_HDR]).is_ok()
            && self.tx.bufs.write(at + NET_HDR as u64, frame).is_ok()
            && self
                .tx
                .ring
                .write(
                    u64::from(id) * 16,
                    &desc(addr, (NET_HDR + frame.len()) as u32, 0),
                )
                .is_ok()
            && self.tx.offer(id).is_ok()
            && self.tx.publish().is_ok();
        if !ok {
            self.counters.dma_errors += 1;
            self.tx_free.push(id);
            return Err(UplinkError::Hardware("DMA copy failed"));
        }
        self.counters.tx_frames += 1;
        self.transport.notify(TX_QUEUE);
        Ok(())
    }
}

/// The MAC in the device configuration, read until `config_generation` is stable (4.1.4.3.1:
/// fields wider than 32 bits may tear otherwise).
fn read_mac<T: Transport>(t: &mut T) -> MacAddr {
    let mut mac = [0u8; 6];
    for _ in 0..16 {
        let g = t.config_generation();
        for (i, b) in mac.iter_mut().enumerate() {
            *b = t.config8(net_config::MAC + i);
        }
        if t.config_generation() == g {
            break;
        }
    }
    MacAddr(mac)
}
