//! Boot-time uplink self-test (image feature `net-selftest`, used by the uplink driver
//! scenarios; never in normal images): every uplink asks QEMU's user-network gateway
//! (10.0.2.2) for its MAC address by ARP and must hear the answer, which proves the NIC's
//! transmit, receive and interrupt paths.

use crate::arch::cpu;
use crate::hvprintln;
use crate::net::uplink::{self, UplinkId, UplinkSink};
use crate::net::MacAddr;
use crate::sync::Mutex;
use alloc::vec::Vec;

struct Collect;

static FRAMES: Mutex<Vec<(UplinkId, Vec<u8>)>> = Mutex::new(Vec::new());

impl UplinkSink for Collect {
    fn receive(&self, id: UplinkId, frame: &[u8]) {
        let mut f = FRAMES.lock();
        if f.len() < 64 {
            f.push((id, frame.to_vec()));
        }
    }
    fn changed(&self) {}
}

static COLLECT: Collect = Collect;

const GUEST_IP: [u8; 4] = [10, 0, 2, 15];
const GATEWAY_IP: [u8; 4] = [10, 0, 2, 2];

fn arp_request(mac: MacAddr) -> [u8; 60] {
    let mut f = [0u8; 60];
    f[0..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&mac.0);
    f[12..14].copy_from_slice(&[0x08, 0x06]);
    f[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    f[22..28].copy_from_slice(&mac.0);
    f[28..32].copy_from_slice(&GUEST_IP);
    f[38..42].copy_from_slice(&GATEWAY_IP);
    f
}

/// The gateway's MAC address if `frame` is its ARP reply.
fn arp_reply_from_gateway(frame: &[u8]) -> Option<MacAddr> {
    if frame.len() < 42 || frame[12..14] != [0x08, 0x06] || frame[20..22] != [0, 2] {
        return None;
    }
    if frame[28..32] != GATEWAY_IP {
        return None;
    }
    Some({
        let mut m = [0u8; 6];
        m.copy_from_slice(&frame[22..28]);
        MacAddr(m)
    })
}

/// Runs the test on every registered uplink; interrupts are taken by polling the GIC.
pub fn run() {
    let uplinks = uplink::list();
    if uplinks.is_empty() {
        hvprintln!("[hv] net selftest: no uplink registered");
        return;
    }
    uplink::set_sink(&COLLECT);
    let gic = super::irqchip();
    for u in uplinks {
        let sent = uplink::transmit(u.id, &arp_request(u.mac));
        if let Err(e) = sent {
            hvprintln!(
                "[hv] net selftest {} ({}): transmit failed: {e}",
                u.name,
                u.kind.name()
            );
            continue;
        }
        let t0 = cpu::counter();
        let timeout = cpu::counter_frequency() * 3;
        let mut answer = None;
        while answer.is_none() && cpu::counter() - t0 < timeout {
            while let Some(intid) = gic.acknowledge() {
                crate::plugin::irq::dispatch(intid);
                gic.end_of_interrupt(intid);
            }
            answer = FRAMES
                .lock()
                .iter()
                .filter(|(id, _)| *id == u.id)
                .find_map(|(_, f)| arp_reply_from_gateway(f));
            cpu::yield_now();
        }
        match answer {
            Some(gw) => hvprintln!(
                "[hv] net selftest {} ({}): ARP reply from 10.0.2.2 at {gw}",
                u.name,
                u.kind.name()
            ),
            None => hvprintln!(
                "[hv] net selftest {} ({}): no ARP reply within 3 s ({} frames received)",
                u.name,
                u.kind.name(),
                FRAMES.lock().len()
            ),
        }
    }
}
