//! Boot-time uplink self-test (image feature `net-selftest`, used by the uplink driver
//! scenarios; never in normal images): every uplink asks QEMU's user-network gateway
//! (10.0.2.2) for its MAC address by ARP and must hear the answer, which proves the NIC's
//! transmit, receive and interrupt paths. An uplink that registers later (a USB NIC
//! plugged in again) is asked the same when it appears, and its answer is reported when
//! it arrives: that proves frames flow again after a hot-plug.

use crate::arch::cpu;
use crate::hvprintln;
use crate::net::uplink::{self, UplinkId, UplinkSink};
use crate::net::MacAddr;
use crate::sync::Mutex;
use alloc::vec::Vec;

struct Collect;

static FRAMES: Mutex<Vec<(UplinkId, Vec<u8>)>> = Mutex::new(Vec::new());

/// After the boot-time run: uplinks seen so far, and those still waiting for an answer.
static LATE: Mutex<Option<(Vec<UplinkId>, Vec<UplinkId>)>> = Mutex::new(None);

impl UplinkSink for Collect {
    fn receive(&self, id: UplinkId, frame: &[u8]) {
        let waiting = LATE
            .lock()
            .as_mut()
            .and_then(|(_, w)| w.iter().position(|x| *x == id).map(|i| w.remove(i)));
        if waiting.is_some() {
            match arp_reply_from_gateway(frame) {
                Some(gw) => {
                    let name = uplink::list().into_iter().find(|u| u.id == id);
                    if let Some(u) = name {
                        hvprintln!(
                            "[hv] net selftest {} ({}), registered after boot: ARP reply from 10.0.2.2 at {gw}",
                            u.name,
                            u.kind.name()
                        );
                    }
                }
                None => {
                    if let Some((_, w)) = LATE.lock().as_mut() {
                        w.push(id);
                    }
                }
            }
            return;
        }
        let mut f = FRAMES.lock();
        if f.len() < 64 {
            f.push((id, frame.to_vec()));
        }
    }

    fn changed(&self) {
        // Runs without the registry's lock (and, from a NIC driver, without its own).
        let fresh: Vec<_> = {
            let mut late = LATE.lock();
            let Some((seen, waiting)) = late.as_mut() else {
                return;
            };
            let now = uplink::list();
            let fresh: Vec<_> = now
                .iter()
                .filter(|u| !seen.contains(&u.id))
                .cloned()
                .collect();
            for u in &fresh {
                seen.push(u.id);
                waiting.push(u.id);
            }
            fresh
        };
        for u in fresh {
            if let Err(e) = uplink::transmit(u.id, &arp_request(u.mac)) {
                hvprintln!(
                    "[hv] net selftest {} ({}): transmit failed: {e}",
                    u.name,
                    u.kind.name()
                );
            }
        }
    }
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
        uplink::set_sink(&COLLECT);
        *LATE.lock() = Some((Vec::new(), Vec::new()));
        return;
    }
    uplink::set_sink(&COLLECT);
    let gic = super::irqchip();
    let booted: Vec<UplinkId> = uplinks.iter().map(|u| u.id).collect();
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
    *LATE.lock() = Some((booted, Vec::new()));
}
