//! The driver against a fake virtio-net device: the device side of the split virtqueues
//! runs on the fake DMA environment, so what the driver puts in the rings is read back as a
//! device would read it.

use crate::nic::{InitError, Transport, VirtioNet, BUF, MAX_QUEUE};
use crate::spec::{feature, net_config, status, Layout, DESC_F_WRITE, NET_HDR};
use hypervisor::net::uplink::{UplinkDevice, UplinkError};
use hypervisor::net::{MacAddr, MAX_FRAME};
use plugin_test_support::dma::FakeEnv;
use std::sync::{Arc, Mutex};

const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
const FALLBACK: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 1]);
/// Offloads and extras QEMU offers that the driver must not accept: CSUM, GUEST_CSUM,
/// MRG_RXBUF, CTRL_VQ, EVENT_IDX.
const EXTRAS: u64 = 1 | 1 << 1 | 1 << 15 | 1 << 17 | 1 << 29;

#[derive(Clone, Copy, Default)]
struct FakeQueue {
    size: u16,
    desc: u64,
    driver: u64,
    device: u64,
    enabled: bool,
    last_avail: u16,
    used_idx: u16,
}

struct Dev {
    env: FakeEnv,
    status: u8,
    offered: u64,
    accepted: u64,
    queue_max: [u16; 2],
    queues: [FakeQueue; 2],
    isr: u8,
    link_status: u16,
    stuck_reset: bool,
    refuse_features: bool,
    tx_stalled: bool,
    sent: Vec<Vec<u8>>,
    notifies: [u32; 2],
}

impl Dev {
    fn new(env: FakeEnv) -> Self {
        Self {
            env,
            status: 0,
            offered: feature::WANTED | EXTRAS,
            accepted: 0,
            queue_max: [256, 256],
            queues: [FakeQueue::default(); 2],
            isr: 0,
            link_status: net_config::LINK_UP,
            stuck_reset: false,
            refuse_features: false,
            tx_stalled: false,
            sent: Vec::new(),
            notifies: [0; 2],
        }
    }

    fn read16(&self, addr: u64) -> u16 {
        let mut b = [0u8; 2];
        self.env.device_read(addr, &mut b).unwrap();
        u16::from_le_bytes(b)
    }

    /// The next available descriptor of queue `q`: `(id, addr, len, flags)`.
    fn next_avail(&mut self, q: usize) -> Option<(u16, u64, u32, u16)> {
        let fq = self.queues[q];
        assert!(fq.enabled && self.status & status::DRIVER_OK != 0);
        let l = Layout::new(fq.size);
        if self.read16(fq.driver + 2) == fq.last_avail {
            return None;
        }
        let id = self.read16(fq.driver + (l.avail_slot(fq.last_avail) - l.avail) as u64);
        self.queues[q].last_avail = fq.last_avail.wrapping_add(1);
        assert!(id < fq.size, "driver offered descriptor {id}");
        let mut d = [0u8; 16];
        self.env
            .device_read(fq.desc + 16 * u64::from(id), &mut d)
            .unwrap();
        let addr = u64::from_le_bytes(d[0..8].try_into().unwrap());
        let len = u32::from_le_bytes(d[8..12].try_into().unwrap());
        let flags = u16::from_le_bytes([d[12], d[13]]);
        Some((id, addr, len, flags))
    }

    /// Puts `(id, len)` in queue `q`'s used ring and raises the queue interrupt.
    fn push_used(&mut self, q: usize, id: u32, len: u32) {
        let fq = self.queues[q];
        let l = Layout::new(fq.size);
        let slot = fq.device + (l.used_slot(fq.used_idx) - l.used) as u64;
        let mut e = [0u8; 8];
        e[0..4].copy_from_slice(&id.to_le_bytes());
        e[4..8].copy_from_slice(&len.to_le_bytes());
        self.env.device_write(slot, &e).unwrap();
        let idx = fq.used_idx.wrapping_add(1);
        self.queues[q].used_idx = idx;
        self.env
            .device_write(fq.device + 2, &idx.to_le_bytes())
            .unwrap();
        self.isr |= 1;
    }

    fn run_tx(&mut self) {
        while !self.tx_stalled {
            let Some((id, addr, len, flags)) = self.next_avail(1) else {
                return;
            };
            assert_eq!(flags, 0, "transmit buffers are device-readable, unchained");
            let mut b = vec![0u8; len as usize];
            self.env.device_read(addr, &mut b).unwrap();
            assert_eq!(
                &b[..NET_HDR],
                &[0; NET_HDR],
                "zero header: no offload asked"
            );
            self.sent.push(b[NET_HDR..].to_vec());
            self.push_used(1, u32::from(id), 0);
        }
    }

    /// Receives `frame` into the next buffer; false if the driver offered none.
    fn receive(&mut self, frame: &[u8]) -> bool {
        let Some((id, addr, len, flags)) = self.next_avail(0) else {
            return false;
        };
        assert_eq!(flags, DESC_F_WRITE);
        assert!(len as usize >= NET_HDR + frame.len());
        let mut b = vec![0u8; NET_HDR];
        b.extend_from_slice(frame);
        self.env.device_write(addr, &b).unwrap();
        self.push_used(0, u32::from(id), b.len() as u32);
        true
    }

    /// Uses the next receive buffer but reports `len` (and `id` instead of its own, if
    /// given) in the used ring.
    fn receive_lying(&mut self, len: u32, id: Option<u32>) {
        let (own, ..) = self.next_avail(0).expect("a buffer");
        self.push_used(0, id.unwrap_or(u32::from(own)), len);
    }
}

#[derive(Clone)]
struct Fake(Arc<Mutex<Dev>>);

impl Transport for Fake {
    fn status(&mut self) -> u8 {
        let d = self.0.lock().unwrap();
        if d.stuck_reset {
            1
        } else {
            d.status
        }
    }

    fn set_status(&mut self, s: u8) {
        let mut d = self.0.lock().unwrap();
        if s == 0 {
            d.queues = [FakeQueue::default(); 2];
            d.accepted = 0;
            d.status = 0;
            return;
        }
        assert_eq!(s & d.status, d.status, "status bits are only added");
        d.status = if s & status::FEATURES_OK != 0 && d.refuse_features {
            s & !status::FEATURES_OK
        } else {
            s
        };
    }

    fn device_features(&mut self) -> u64 {
        self.0.lock().unwrap().offered
    }

    fn set_driver_features(&mut self, f: u64) {
        let mut d = self.0.lock().unwrap();
        assert_eq!(f & !d.offered, 0, "accepted a feature not offered");
        d.accepted = f;
    }

    fn queue_max(&mut self, q: u16) -> u16 {
        let d = self.0.lock().unwrap();
        d.queue_max.get(usize::from(q)).copied().unwrap_or(0)
    }

    fn enable_queue(&mut self, q: u16, size: u16, desc: u64, driver: u64, device: u64) {
        let mut d = self.0.lock().unwrap();
        assert!(size.is_power_of_two() && size <= d.queue_max[usize::from(q)]);
        assert_eq!(d.status & status::FEATURES_OK, status::FEATURES_OK);
        assert!(desc.is_multiple_of(16) && driver.is_multiple_of(2) && device.is_multiple_of(4));
        d.queues[usize::from(q)] = FakeQueue {
            size,
            desc,
            driver,
            device,
            enabled: true,
            ..FakeQueue::default()
        };
    }

    fn notify(&mut self, q: u16) {
        let mut d = self.0.lock().unwrap();
        d.notifies[usize::from(q)] += 1;
        if q == 1 {
            d.run_tx();
        }
    }

    fn isr(&mut self) -> u8 {
        core::mem::take(&mut self.0.lock().unwrap().isr)
    }

    fn config_generation(&mut self) -> u8 {
        7
    }

    fn config8(&mut self, offset: usize) -> u8 {
        MAC.get(offset).copied().unwrap_or(0xff)
    }

    fn config16(&mut self, offset: usize) -> u16 {
        assert_eq!(offset, net_config::STATUS);
        self.0.lock().unwrap().link_status
    }
}

fn setup_with(
    f: impl FnOnce(&mut Dev),
) -> (FakeEnv, Fake, Result<VirtioNet<FakeEnv, Fake>, InitError>) {
    let env = FakeEnv::new();
    let mut dev = Dev::new(env.clone());
    f(&mut dev);
    let fake = Fake(Arc::new(Mutex::new(dev)));
    let nic = VirtioNet::new(env.clone(), fake.clone(), false, FALLBACK);
    (env, fake, nic)
}

fn setup() -> (Fake, VirtioNet<FakeEnv, Fake>) {
    let (_, fake, nic) = setup_with(|_| {});
    (fake, nic.unwrap())
}

fn frame(n: usize, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 5 + n * 11) as u8).collect()
}

#[test]
fn bring_up_negotiates_only_version_1_mac_and_status_and_fills_the_receive_queue() {
    let (fake, nic) = setup();
    let d = fake.0.lock().unwrap();
    assert_eq!(
        d.accepted,
        feature::VERSION_1 | feature::NET_MAC | feature::NET_STATUS
    );
    assert_eq!(
        d.status,
        status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK | status::DRIVER_OK
    );
    assert_eq!(nic.mac(), MacAddr(MAC));
    assert!(nic.link_up());
    assert_eq!(d.queues[0].size, MAX_QUEUE);
    // Every receive buffer is offered, and the device was told.
    assert_eq!(d.read16(d.queues[0].driver + 2), MAX_QUEUE);
    assert_eq!(d.notifies[0], 1);
}

#[test]
fn bring_up_failures_are_reported_and_leave_the_device_failed() {
    let failed = |f: fn(&mut Dev), want: InitError| {
        let (env, fake, nic) = setup_with(f);
        assert_eq!(nic.err(), Some(want));
        let d = fake.0.lock().unwrap();
        if want != InitError::ResetTimeout {
            assert_ne!(d.status & status::FAILED, 0, "{want:?}: FAILED set");
        }
        drop(d);
        assert_eq!(env.allocated(), 0, "{want:?}: buffers given back");
    };
    failed(|d| d.offered &= !feature::VERSION_1, InitError::NotVersion1);
    failed(|d| d.refuse_features = true, InitError::FeaturesRefused);
    failed(|d| d.stuck_reset = true, InitError::ResetTimeout);
    failed(|d| d.queue_max[1] = 0, InitError::NoQueue);
    failed(|d| d.env.fail_allocations_after(3), InitError::Memory);
    // No MAC offered: the driver's own; no STATUS: the link counts as up.
    let (_, fake, nic) = setup_with(|d| {
        d.offered &= !(feature::NET_MAC | feature::NET_STATUS);
        d.link_status = 0;
    });
    let nic = nic.unwrap();
    assert_eq!((nic.mac(), nic.link_up()), (FALLBACK, true));
    assert_eq!(fake.0.lock().unwrap().accepted, feature::VERSION_1);
}

#[test]
fn received_frames_come_out_in_order_across_ring_wraparound() {
    let (fake, mut nic) = setup();
    let mut n = 0;
    for round in 0..6 {
        let batch = 29 + round * 17; // uneven, up to a whole queue
        for _ in 0..batch {
            assert!(fake.0.lock().unwrap().receive(&frame(n, 60 + n % 1450)));
            n += 1;
        }
        let s = nic.service();
        assert!(s.ours);
        assert_eq!(s.frames.len(), batch);
        for (k, f) in s.frames.iter().enumerate() {
            let m = n - batch + k;
            assert_eq!(f, &frame(m, 60 + m % 1450));
        }
    }
    assert!(n > 3 * usize::from(MAX_QUEUE));
    assert_eq!(nic.counters.rx_frames, n as u64);
    // The queue is full again: a whole queue's worth fits, then nothing.
    for i in 0..MAX_QUEUE {
        assert!(fake.0.lock().unwrap().receive(&frame(usize::from(i), 60)));
    }
    assert!(!fake.0.lock().unwrap().receive(&frame(0, 60)));
    assert_eq!(nic.service().frames.len(), usize::from(MAX_QUEUE));
}

#[test]
fn absurd_lengths_ids_and_used_indices_are_refused_and_counted() {
    let (fake, mut nic) = setup();
    {
        let mut d = fake.0.lock().unwrap();
        d.receive_lying(u32::MAX, None); // longer than anything
        d.receive_lying(0, None);
        d.receive_lying((NET_HDR + 13) as u32, None); // shorter than an Ethernet header
        d.receive_lying((BUF + 1) as u32, None); // past the buffer
        d.receive_lying((NET_HDR + MAX_FRAME + 1) as u32, None); // longer than a frame
        d.receive_lying(100, Some(9999)); // an ID out of range
        assert!(d.receive(&frame(3, 1518)));
    }
    let s = nic.service();
    assert_eq!(s.frames, vec![frame(3, 1518)]);
    let c = nic.counters;
    assert_eq!((c.rx_bad_length, c.bad_id, c.rx_frames), (5, 1, 1));
    // A transmit completion for a buffer the device does not hold: ignored, not freed twice.
    fake.0.lock().unwrap().push_used(1, 3, 0);
    assert!(nic.service().ours);
    assert_eq!(nic.counters.bad_id, 2);
    assert_eq!(nic.tx_in_flight(), 0);
    // A used index more than a queue ahead: nothing taken from the ring.
    {
        let mut d = fake.0.lock().unwrap();
        let q = d.queues[0];
        let bogus = q.used_idx.wrapping_add(1000);
        d.env
            .device_write(q.device + 2, &bogus.to_le_bytes())
            .unwrap();
        d.isr |= 1;
    }
    assert!(nic.service().frames.is_empty());
    assert_eq!(nic.counters.bad_used_idx, 1);
}

#[test]
fn transmit_queues_frames_reclaims_completions_and_reports_a_full_queue() {
    let (fake, mut nic) = setup();
    let size = usize::from(MAX_QUEUE);
    for i in 0..3 * size {
        nic.transmit(&frame(i, 42 + i % 1000)).unwrap();
    }
    {
        let d = fake.0.lock().unwrap();
        assert_eq!(d.sent.len(), 3 * size);
        assert_eq!(d.sent[200], frame(200, 242));
    }
    fake.0.lock().unwrap().tx_stalled = true;
    // The completions so far are reclaimed when the free list runs out.
    for i in 0..size {
        nic.transmit(&frame(i, 60)).unwrap();
    }
    assert_eq!(nic.transmit(&frame(0, 60)), Err(UplinkError::QueueFull));
    assert_eq!(nic.transmit(&[0; MAX_FRAME + 1]), Err(UplinkError::TooLong));
    assert_eq!(nic.tx_in_flight(), size);
    {
        let mut d = fake.0.lock().unwrap();
        d.tx_stalled = false;
        d.run_tx();
    }
    assert!(nic.service().ours);
    assert_eq!(nic.tx_in_flight(), 0);
    assert_eq!(fake.0.lock().unwrap().sent.len(), 4 * size);
    assert_eq!(nic.counters.tx_completed, 4 * size as u64);
}

#[test]
fn link_changes_come_with_configuration_interrupts_and_a_shared_line_is_left_alone() {
    let (fake, mut nic) = setup();
    assert_eq!(nic.service(), Default::default(), "ISR zero: not ours");
    {
        let mut d = fake.0.lock().unwrap();
        d.link_status = 0;
        d.isr |= 2;
    }
    let s = nic.service();
    assert_eq!((s.ours, s.link), (true, Some(false)));
    fake.0.lock().unwrap().isr |= 2;
    assert_eq!(nic.service().link, None, "no change");
    {
        let mut d = fake.0.lock().unwrap();
        d.link_status = net_config::LINK_UP;
        d.isr |= 2;
    }
    assert_eq!(nic.service().link, Some(true));
    assert!(nic.link_up());
}
