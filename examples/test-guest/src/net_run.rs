//! `net-hostile` and `net-neighbour` modes on the target: find the VM's virtio-net function,
//! bring it up (VERSION_1 and MAC only: no offload, no merged receive buffers), and
//! exchange the frames of `net.rs` with the VM beside it; the hostile VM makes a probe of
//! every kind of broken queue and frame between its pings.
//!
//! Transmit is served inside the guest's notify write, so a transmit chain's fate is in
//! the used ring and the device status right after the notify. Receive is not: frames
//! reach the receive ring when the hypervisor polls the device (before it next enters
//! the guest), so the modes poll the used ring with a deadline.

use crate::dt::{Platform, Region};
use crate::mmio::Mmio;
use crate::net::{self, Kind, Mac, Msg, Outcome};
use crate::pci_run::{self, Dma, Function, VirtioRegs};
use crate::storage::{self, PciHost, VIRTQ_DESC_F_NEXT as NEXT, VIRTQ_DESC_F_WRITE as WRITE};
use crate::{checks, println};

/// Descriptor flag: the buffer is a table of descriptors.
const INDIRECT: u16 = 4;
/// DMA memory of the NIC (rings, tables, buffers).
const AREA: u64 = 0x1_0000;
/// Entries of each queue.
const Q: u16 = 16;
const RX_DESC: u64 = 0x0000;
const RX_AVAIL: u64 = 0x0100;
const RX_USED: u64 = 0x0200;
const TX_DESC: u64 = 0x0400;
const TX_AVAIL: u64 = 0x0500;
const TX_USED: u64 = 0x0600;
/// Two indirect tables of 16 descriptors.
const IND_A: u64 = 0x0800;
const IND_B: u64 = 0x0900;
/// The transmit header.
const TX_HDR: u64 = 0x1000;
/// The transmit frame (up to 24 KiB).
const TX_BUF: u64 = 0x2000;
const TX_BUF_LEN: usize = 0x6000;
/// Receive buffer `i` is at `RX_BUF + i * RX_BUF_LEN`.
const RX_BUF: u64 = 0x8000;
const RX_BUF_LEN: u32 = 0x800;
/// Bytes of a frame the modes look at (every message fits; the stacks are 16 KiB, so no
/// whole frame is ever held).
const HEAD: usize = 64;
/// A guest-physical address far outside any VM's RAM (1 TiB).
const FAR_AWAY: u64 = 1 << 40;
/// How long a ping waits for its pong, and a receive probe for its frames.
const ANSWER_MS: u64 = 3_000;
/// How long the hostile VM waits for the neighbour's first tick.
const FIRST_TICK_MS: u64 = 20_000;
/// How long the hostile VM waits for a byte on its console after its flood (the scenario
/// types one once it has read the switch's counters).
const CONSOLE_WAIT_MS: u64 = 60_000;
/// The neighbour's tick period.
const TICK_MS: u64 = 5;
/// Longest the neighbour runs without the hostile VM's `Bye`.
const NEIGHBOUR_MAX_MS: u64 = 120_000;
/// Frames of the forged flood.
const FORGED: u16 = 16;

/// A receive buffer or transmit buffer as the driver describes it.
type Desc = (u64, u32, u16);

/// A virtio-net function driven by polling.
struct Nic {
    regs: VirtioRegs,
    dma: Dma,
    mac: Mac,
    rx_notify: Mmio,
    tx_notify: Mmio,
    rx_avail: u16,
    rx_seen: u16,
    tx_avail: u16,
    tx_seen: u16,
}

fn put16(dma: Dma, off: u64, v: u16) {
    let word = dma.read32(off & !3);
    let shift = 8 * (off & 3) as u32;
    dma.write32(
        off & !3,
        (word & !(0xffff << shift)) | u32::from(v) << shift,
    );
}

fn get16(dma: Dma, off: u64) -> u16 {
    (dma.read32(off & !3) >> (8 * (off & 3))) as u16
}

fn deadline(ms: u64) -> u64 {
    checks::counter() + checks::ticks(ms)
}

fn before(deadline: u64) -> bool {
    checks::counter() < deadline
}

impl Nic {
    /// Finds the regions of `f` and brings the device up with receive buffers in RAM.
    fn start(f: &Function<()>, dma: Dma) -> Result<Self, &'static str> {
        let regs = VirtioRegs::find(f, 8)?;
        let mut n = Nic {
            regs,
            dma,
            mac: Mac::default(),
            rx_notify: regs.common,
            tx_notify: regs.common,
            rx_avail: 0,
            rx_seen: 0,
            tx_avail: 0,
            tx_seen: 0,
        };
        n.up()?;
        let mut mac = [0_u8; 6];
        for (i, b) in mac.iter_mut().enumerate() {
            *b = regs.device.read8(i);
        }
        n.mac = Mac(mac);
        Ok(n)
    }

    /// The normal receive buffers: all of the queue, 2 KiB each in the DMA area.
    fn rx_buffers(&self) -> [Desc; Q as usize] {
        core::array::from_fn(|i| {
            (
                self.dma.base + RX_BUF + i as u64 * u64::from(RX_BUF_LEN),
                RX_BUF_LEN,
                WRITE,
            )
        })
    }

    /// Reset and up again with the normal receive buffers.
    fn up(&mut self) -> Result<(), &'static str> {
        self.up_with(&self.rx_buffers(), self.dma.base + TX_DESC)
    }

    /// Resets the device, negotiates VERSION_1 and MAC, sets up both queues (the transmit
    /// descriptor table at `tx_desc`), posts `rx` (one descriptor per chain) and sets
    /// DRIVER_OK.
    fn up_with(&mut self, rx: &[Desc], tx_desc: u64) -> Result<(), &'static str> {
        self.regs.reset()?;
        self.dma.zero(0, TX_BUF);
        self.rx_avail = 0;
        self.rx_seen = 0;
        self.tx_avail = 0;
        self.tx_seen = 0;
        self.regs
            .negotiate(pci_run::VIRTIO_F_VERSION_1 | net::VIRTIO_NET_F_MAC)?;
        let b = self.dma.base;
        self.rx_notify = self
            .regs
            .queue(0, Q, b + RX_DESC, b + RX_AVAIL, b + RX_USED)?;
        self.tx_notify = self.regs.queue(1, Q, tx_desc, b + TX_AVAIL, b + TX_USED)?;
        for (i, &(addr, len, flags)) in rx.iter().take(usize::from(Q)).enumerate() {
            self.dma.write_words(
                RX_DESC + 16 * i as u64,
                &storage::virtq_desc(addr, len, flags, 0),
            );
            self.post_rx(i as u16);
        }
        self.regs.driver_ok();
        self.rx_notify.write16(0, 0);
        Ok(())
    }

    fn post_rx(&mut self, id: u16) {
        put16(
            self.dma,
            RX_AVAIL + 4 + 2 * u64::from(self.rx_avail % Q),
            id,
        );
        self.rx_avail = self.rx_avail.wrapping_add(1);
        put16(self.dma, RX_AVAIL + 2, self.rx_avail);
    }

    fn needs_reset(&self) -> bool {
        self.regs.status() & storage::virtio_status::NEEDS_RESET != 0
    }

    fn rx_used_idx(&self) -> u16 {
        get16(self.dma, RX_USED + 2)
    }

    /// The next used receive chain: its descriptor id and length.
    fn rx_next(&mut self) -> Option<(u32, u32)> {
        if self.rx_used_idx() == self.rx_seen {
            return None;
        }
        let at = RX_USED + 4 + 8 * u64::from(self.rx_seen % Q);
        self.rx_seen = self.rx_seen.wrapping_add(1);
        Some((self.dma.read32(at), self.dma.read32(at + 4)))
    }

    /// The next received frame: its first [`HEAD`] bytes (what [`Msg::decode`] needs) and
    /// its length; its buffer is posted again. Chains the device gave back malformed (id
    /// out of range, length beyond the buffer) are reported and not posted again.
    fn recv(&mut self) -> Option<([u8; HEAD], usize)> {
        loop {
            let (id, len) = self.rx_next()?;
            if id >= u32::from(Q) || !(net::NET_HDR as u32..=RX_BUF_LEN).contains(&len) {
                println!("net: FAIL the device returned receive chain {id} with {len} bytes");
                continue;
            }
            let base = RX_BUF + u64::from(id) * u64::from(RX_BUF_LEN);
            let mut words = [0_u32; (net::NET_HDR + HEAD) / 4];
            self.dma.read_words(base, &mut words);
            let mut head = [0_u8; HEAD];
            for (i, b) in head.iter_mut().enumerate() {
                let j = net::NET_HDR + i;
                *b = (words[j / 4] >> (8 * (j % 4))) as u8;
            }
            self.post_rx(id as u16);
            self.rx_notify.write16(0, 0);
            return Some((head, len as usize - net::NET_HDR));
        }
    }

    /// The next received message (frames of other kinds counted in `other`).
    fn recv_msg(&mut self, other: &mut u32) -> Option<Msg> {
        let (head, len) = self.recv()?;
        let m = Msg::decode(&head[..len.min(HEAD)]);
        if m.is_none() {
            *other += 1;
        }
        m
    }

    /// Writes `descs` as transmit descriptors 0.., makes `heads` available, notifies, and
    /// returns what the device did with them.
    fn tx_chains(&mut self, descs: &[[u32; 4]], heads: &[u16]) -> Outcome {
        for (i, d) in descs.iter().enumerate() {
            self.dma.write_words(TX_DESC + 16 * i as u64, d);
        }
        for &h in heads {
            put16(self.dma, TX_AVAIL + 4 + 2 * u64::from(self.tx_avail % Q), h);
            self.tx_avail = self.tx_avail.wrapping_add(1);
        }
        put16(self.dma, TX_AVAIL + 2, self.tx_avail);
        self.tx_kick(heads.len() as u16)
    }

    /// Notifies the transmit queue and reads what became of `asked` chains.
    fn tx_kick(&mut self, asked: u16) -> Outcome {
        self.tx_notify.write16(0, 1);
        let used_idx = get16(self.dma, TX_USED + 2);
        let used = used_idx.wrapping_sub(self.tx_seen);
        self.tx_seen = used_idx;
        net::outcome(self.regs.status(), asked, used)
    }

    /// Writes the header words and a frame of `len` bytes starting with `head` (the rest
    /// `Msg::encode`'s padding) into the transmit buffers.
    fn stage(&self, hdr: [u32; 3], head: &[u8], len: usize) {
        self.dma.write_words(TX_HDR, &hdr);
        for i in 0..len.min(TX_BUF_LEN).div_ceil(4) {
            self.dma
                .write32(TX_BUF + 4 * i as u64, net::frame_word(head, len, i));
        }
    }

    /// Sends `msg` as a frame of `len` bytes (at least 60; a plain header; header and
    /// frame in two descriptors).
    fn send(&mut self, msg: &Msg, len: usize) -> Outcome {
        let mut head = [0_u8; HEAD];
        let h = msg.encode(&mut head, len);
        let len = len.max(h);
        self.stage(net::net_hdr(0, 0), &head[..h], len);
        let b = self.dma.base;
        self.tx_chains(
            &[
                storage::virtq_desc(b + TX_HDR, net::NET_HDR as u32, NEXT, 1),
                storage::virtq_desc(b + TX_BUF, len as u32, 0, 0),
            ],
            &[0],
        )
    }
}

/// The first virtio-net function of the bus, with its BARs placed.
fn find_nic(host: PciHost, mode: &str) -> Option<Function<()>> {
    let (functions, count) = pci_run::enumerate(
        host,
        mode,
        "not a virtio-net function",
        |vendor, device, _| {
            (vendor == storage::VIRTIO_VENDOR && device == net::VIRTIO_NET_DEVICE).then_some(())
        },
        |()| "virtio-net",
    );
    let f = functions.iter().take(count).flatten().next().copied();
    if f.is_none() {
        println!("{mode}: FAIL no virtio-net function (1af4:1041) on the PCIe bus: give the VM a [[vm.nic]]");
    }
    f
}

/// The NIC of a mode, up, after a line saying so (or a `FAIL` line).
fn bring_up(
    platform: &Platform,
    pci: Result<PciHost, storage::PciDtError>,
    mode: &str,
) -> Option<(Nic, u64)> {
    let host = match pci {
        Ok(h) => h,
        Err(e) => {
            println!("{mode}: FAIL {e}");
            return None;
        }
    };
    let dma = pci_run::dma_area(platform, mode, AREA)?;
    let f = find_nic(host, mode)?;
    match Nic::start(&f, dma) {
        Ok(n) => {
            println!("{mode}: virtio-net up (VERSION_1, MAC), MAC {}", n.mac);
            Some((n, f.bars[0]))
        }
        Err(e) => {
            println!("{mode}: FAIL virtio-net start: {e}");
            None
        }
    }
}

// ---- net-hostile ----

/// The hostile VM: its NIC, what it knows of the neighbour, what it sent.
struct Hostile {
    nic: Nic,
    ram: Region,
    bar0: u64,
    peer: Mac,
    seq: u32,
    /// Valid frames sent (pings and the bye): what the switch must count on its port.
    valid: u32,
    probes: u32,
    failed: u32,
}

impl Hostile {
    /// Waits for the neighbour's first tick; its source address is the neighbour's.
    fn find_peer(&mut self) -> bool {
        let end = deadline(FIRST_TICK_MS);
        let mut other = 0;
        while before(end) {
            if let Some(m) = self.nic.recv_msg(&mut other) {
                if m.kind == Kind::Tick {
                    self.peer = m.src;
                    return true;
                }
            }
        }
        false
    }

    /// Sends a ping with `marker` and waits for its pong, after taking every frame that
    /// waits (ticks pile up in the switch while it probes; a full port queue would drop
    /// the pong).
    fn ping(&mut self, marker: u64) -> Result<Msg, &'static str> {
        let mut other = 0;
        while self.nic.recv_msg(&mut other).is_some() || other != 0 {
            other = 0;
        }
        self.seq += 1;
        let seq = self.seq;
        let msg = Msg::new(self.peer, self.nic.mac, Kind::Ping, seq, marker);
        match self.nic.send(&msg, 0) {
            Outcome::Used { used: 1, .. } => self.valid += 1,
            Outcome::Used { .. } => return Err("the ping's chain did not come back"),
            Outcome::NeedsReset => return Err("the ping set NEEDS_RESET"),
        }
        let end = deadline(ANSWER_MS);
        let mut other = 0;
        while before(end) {
            if let Some(m) = self.nic.recv_msg(&mut other) {
                if m.kind == Kind::Pong && m.seq == seq {
                    return if m.marker == marker && m.src == self.peer {
                        Ok(m)
                    } else {
                        Err("the pong does not repeat the ping's marker")
                    };
                }
            }
        }
        Err("no pong")
    }

    /// Stages a probe frame of `len` bytes from this VM to the neighbour behind a header
    /// of `flags` and `gso_type`.
    fn stage_probe(&self, flags: u8, gso: u8, len: usize) {
        let mut head = [0_u8; HEAD];
        let h = Msg::new(self.peer, self.nic.mac, Kind::Probe, 0, 0).encode(&mut head, len);
        self.nic
            .stage(net::net_hdr(flags, gso), &head[..h], len.max(h));
    }

    /// Records a probe, puts the device back to work if it needs a reset, pings the
    /// neighbour and prints the line: `net-hostile: NAME -> OUTCOME; neighbour saw ...`.
    fn report(&mut self, name: &str, outcome: Outcome, detail: &str) {
        self.probes += 1;
        let mut what = heapless_line();
        match outcome {
            Outcome::NeedsReset => match self.nic.up() {
                Ok(()) => what.push("NEEDS_RESET, reset and up again"),
                Err(e) => {
                    self.failed += 1;
                    what.push("NEEDS_RESET, FAIL reset: ");
                    what.push(e);
                }
            },
            Outcome::Used { asked, used } => {
                if asked == 1 && used == 1 {
                    what.push("used");
                } else {
                    what.fmt(format_args!("{used} of {asked} used"));
                }
                what.push(detail);
                what.push(", device ok");
            }
        }
        let marker = storage::mix(checks::counter() ^ u64::from(self.probes));
        match self.ping(marker) {
            Ok(p) => println!(
                "net-hostile: {name} -> {}; neighbour saw {} probe frames, {} from its own address",
                what.as_str(),
                p.probes,
                p.forged
            ),
            Err(e) => {
                self.failed += 1;
                println!(
                    "net-hostile: {name} -> {}; FAIL ping after it: {e}",
                    what.as_str()
                );
            }
        }
    }

    /// A transmit probe: header and frame in two descriptors, the frame's at `addr`.
    fn tx_frame_at(&mut self, name: &str, addr: u64, len: u32) {
        let b = self.nic.dma.base;
        self.nic.stage(net::net_hdr(0, 0), &[], 0);
        let o = self.nic.tx_chains(
            &[
                storage::virtq_desc(b + TX_HDR, net::NET_HDR as u32, NEXT, 1),
                storage::virtq_desc(addr, len, 0, 0),
            ],
            &[0],
        );
        self.report(name, o, "");
    }

    /// A transmit probe: the frame behind a header of `flags` and `gso_type`, `len`
    /// bytes, as header + frame descriptors.
    fn tx_frame(&mut self, name: &str, flags: u8, gso: u8, len: usize) {
        self.stage_probe(flags, gso, len);
        let n = len.max(net::MIN_FRAME);
        let b = self.nic.dma.base;
        let o = self.nic.tx_chains(
            &[
                storage::virtq_desc(b + TX_HDR, net::NET_HDR as u32, NEXT, 1),
                storage::virtq_desc(b + TX_BUF, n as u32, 0, 0),
            ],
            &[0],
        );
        self.report(name, o, "");
    }

    /// A transmit probe of raw descriptors 0.. with head 0, after the header and a probe
    /// frame were staged.
    fn tx_raw(&mut self, name: &str, descs: &[[u32; 4]]) {
        self.stage_probe(0, 0, net::MIN_FRAME);
        let o = self.nic.tx_chains(descs, &[0]);
        self.report(name, o, "");
    }

    /// A receive probe: the device up with only `rx` as receive buffers, while the
    /// neighbour's ticks arrive; waits until every one came back (or the device broke),
    /// then puts the normal buffers back.
    fn rx_probe(&mut self, name: &str, rx: &[Desc]) {
        if let Err(e) = self.nic.up_with(rx, self.nic.dma.base + TX_DESC) {
            self.failed += 1;
            println!("net-hostile: {name} -> FAIL set-up: {e}");
            return;
        }
        let asked = rx.len() as u16;
        let end = deadline(ANSWER_MS);
        while before(end)
            && !self.nic.needs_reset()
            && self.nic.rx_used_idx().wrapping_sub(self.nic.rx_seen) < asked
        {
            core::hint::spin_loop();
        }
        let mut lens = heapless_line();
        let mut used = 0;
        while let Some((_, len)) = self.nic.rx_next() {
            lens.push(if used == 0 { " with " } else { "/" });
            lens.fmt(format_args!("{len}"));
            used += 1;
        }
        if used > 0 {
            lens.push(" bytes");
        }
        let o = net::outcome(self.nic.regs.status(), asked, used);
        // The normal buffers back (a receive probe never needs the reset itself; one
        // that did shows as NEEDS_RESET).
        if o != Outcome::NeedsReset {
            if let Err(e) = self.nic.up() {
                self.failed += 1;
                println!("net-hostile: {name} -> FAIL reset after it: {e}");
                return;
            }
        }
        self.report(name, o, lens.as_str());
    }
}

/// A short line built without allocation.
struct Line {
    buf: [u8; 160],
    len: usize,
}

fn heapless_line() -> Line {
    Line {
        buf: [0; 160],
        len: 0,
    }
}

impl Line {
    fn push(&mut self, s: &str) {
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
    }

    fn fmt(&mut self, args: core::fmt::Arguments<'_>) {
        let _ = core::fmt::Write::write_fmt(self, args);
    }

    fn as_str(&self) -> &str {
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("?")
    }
}

impl core::fmt::Write for Line {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.push(s);
        Ok(())
    }
}

/// `net-hostile`: every probe, each followed by a ping; the forged flood; a wait for the
/// scenario to read the switch's counters; the final echo and the bye.
pub fn hostile(platform: &Platform, pci: Result<PciHost, storage::PciDtError>) {
    let mode = "net-hostile";
    let Some((nic, bar0)) = bring_up(platform, pci, mode) else {
        return;
    };
    let mut h = Hostile {
        nic,
        ram: platform.ram,
        bar0,
        peer: Mac::default(),
        seq: 0,
        valid: 0,
        probes: 0,
        failed: 0,
    };
    if !h.find_peer() {
        println!("{mode}: FAIL no tick from a neighbour in {FIRST_TICK_MS} ms");
        return;
    }
    match h.ping(1) {
        Ok(_) => println!("{mode}: neighbour {} ticks and answers pings", h.peer),
        Err(e) => {
            println!("{mode}: FAIL neighbour {} does not answer: {e}", h.peer);
            return;
        }
    }
    let end = h.ram.end();
    let b = h.nic.dma.base;
    let hdr = b + TX_HDR;
    let frame = b + TX_BUF;
    let hl = net::NET_HDR as u32;
    let d = storage::virtq_desc;

    // Transmit chains the device must drop, giving them back (a frame it cannot read or
    // must not send is not a broken queue).
    h.tx_frame_at("tx frame at RAM end", end, 60);
    h.tx_frame_at("tx frame straddling RAM end", end - 32, 64);
    h.tx_frame_at("tx frame at 1 TiB", FAR_AWAY, 60);
    h.tx_frame_at("tx frame in its own MMIO", h.bar0 + 0x3000, 60);
    h.tx_raw("tx header at RAM end", &[d(end, hl + 60, 0, 0)]);
    h.tx_frame("tx oversized frame (1519 bytes)", 0, 0, net::MAX_FRAME + 1);
    h.tx_frame("tx jumbo frame (9000 bytes)", 0, 0, 9000);
    h.tx_raw("tx header-only chain", &[d(hdr, hl, 0, 0)]);
    h.tx_raw("tx short header (6 bytes)", &[d(hdr, 6, 0, 0)]);
    h.tx_frame("tx header with NEEDS_CSUM", net::HDR_F_NEEDS_CSUM, 0, 60);
    h.tx_frame("tx header with GSO TCPv4", 0, net::GSO_TCPV4, 60);

    // Broken queues: DEVICE_NEEDS_RESET.
    h.tx_raw(
        "tx descriptor loop",
        &[d(hdr, hl, NEXT, 1), d(frame, 60, NEXT, 0)],
    );
    h.nic.dma.write_words(IND_A, &d(b + IND_B, 16, INDIRECT, 0));
    h.nic.dma.write_words(IND_B, &d(frame, 60, 0, 0));
    h.tx_raw(
        "tx indirect table inside an indirect table",
        &[d(b + IND_A, 16, INDIRECT, 0)],
    );
    h.tx_raw(
        "tx next index beyond the table",
        &[d(hdr, hl, NEXT, 200), d(frame, 60, 0, 0)],
    );
    h.tx_raw(
        "tx readable descriptor after a writable one",
        &[d(hdr, hl, NEXT | WRITE, 1), d(frame, 60, 0, 0)],
    );
    h.tx_raw(
        "tx chain of more than 4 GiB",
        &[
            d(hdr, hl, NEXT, 1),
            d(frame, 0xffff_fff0, NEXT, 2),
            d(frame, 0x100, 0, 0),
        ],
    );
    // The available index a queue and one past what the device has seen.
    let ahead = h.nic.tx_avail.wrapping_add(Q + 1);
    put16(h.nic.dma, TX_AVAIL + 2, ahead);
    let o = h.nic.tx_kick(Q + 1);
    h.report("tx available index more than a queue ahead", o, "");
    // The transmit descriptor table outside RAM.
    match h.nic.up_with(&h.nic.rx_buffers(), end) {
        Ok(()) => h.tx_frame("tx descriptor table at RAM end", 0, 0, 60),
        Err(e) => {
            h.failed += 1;
            println!("{mode}: tx descriptor table at RAM end -> FAIL set-up: {e}");
        }
    }

    // Receive buffers the device cannot use while the neighbour's ticks arrive: each
    // comes back, the frame in it lost.
    h.rx_probe(
        "rx buffers outside RAM (at its end, straddling it, 1 TiB, its MMIO)",
        &[
            (end, RX_BUF_LEN, WRITE),
            (end - 16, RX_BUF_LEN, WRITE),
            (FAR_AWAY, RX_BUF_LEN, WRITE),
            (h.bar0, RX_BUF_LEN, WRITE),
        ],
    );
    h.rx_probe(
        "rx buffer the device may not write",
        &[(b + RX_BUF, RX_BUF_LEN, 0)],
    );
    h.rx_probe(
        "rx buffer smaller than a frame (32 bytes)",
        &[(b + RX_BUF, 32, WRITE)],
    );

    // Frames with the neighbour's address as source: the switch drops and counts them.
    let mut head = [0_u8; HEAD];
    let n = Msg::new(h.peer, h.peer, Kind::Probe, 0, 0).encode(&mut head, net::MIN_FRAME);
    h.nic.stage(net::net_hdr(0, 0), &head[..n], n);
    let descs: [[u32; 4]; 2] = [d(hdr, hl, NEXT, 1), d(frame, n as u32, 0, 0)];
    let mut used = 0;
    let mut status = Outcome::Used { asked: 0, used: 0 };
    for _ in 0..FORGED {
        status = h.nic.tx_chains(&descs, &[0]);
        if let Outcome::Used { used: u, .. } = status {
            used += u;
        } else {
            break;
        }
    }
    if status != Outcome::NeedsReset {
        status = Outcome::Used {
            asked: FORGED,
            used,
        };
    }
    h.report("frames with the neighbour's source address", status, "");
    println!(
        "{mode}: flood done: {FORGED} frames from {}, {} valid frames sent",
        h.peer, h.valid
    );

    // The scenario reads the switch's counters now, then types a byte.
    match crate::console::get() {
        Some(console) => {
            let end = deadline(CONSOLE_WAIT_MS);
            while console.read_byte().is_none() {
                if !before(end) {
                    println!("{mode}: FAIL no byte on the console in {CONSOLE_WAIT_MS} ms");
                    break;
                }
            }
        }
        None => println!("{mode}: FAIL no console to wait on"),
    }

    let marker = storage::mix(checks::counter() ^ 0x6e68);
    match h.ping(marker) {
        Ok(p) if p.probes == 0 && p.forged == 0 && h.failed == 0 => println!(
            "{mode}: after {} probes, device works: echo from neighbour {} (marker={marker:016x})",
            h.probes, h.peer
        ),
        Ok(p) => println!(
            "{mode}: FAIL after {} probes ({} failed), the neighbour saw {} probe frames and {} from its own address",
            h.probes, h.failed, p.probes, p.forged
        ),
        Err(e) => println!("{mode}: FAIL after {} probes, no echo: {e}", h.probes),
    }
    let bye = Msg::new(h.peer, h.nic.mac, Kind::Bye, h.seq + 1, 0);
    if h.nic.send(&bye, 0) == (Outcome::Used { asked: 1, used: 1 }) {
        h.valid += 1;
    }
    println!("{mode}: done, {} valid frames sent", h.valid);
}

// ---- net-neighbour ----

/// `net-neighbour`: ticks to everyone, answers pings, counts what must never arrive,
/// until the hostile VM says bye.
pub fn neighbour(platform: &Platform, pci: Result<PciHost, storage::PciDtError>) {
    let mode = "net-neighbour";
    let Some((mut nic, _)) = bring_up(platform, pci, mode) else {
        return;
    };
    let me = nic.mac;
    let (mut pings, mut ticks, mut probes, mut forged, mut other) = (0_u32, 0_u32, 0, 0, 0);
    let mut hostile = None;
    let start = checks::counter();
    let stop = deadline(NEIGHBOUR_MAX_MS);
    let mut next_tick = start;
    let mut bye = false;
    while !bye {
        let now = checks::counter();
        if now >= stop {
            println!("{mode}: FAIL no bye in {NEIGHBOUR_MAX_MS} ms ({pings} pings answered)");
            return;
        }
        if now >= next_tick {
            ticks += 1;
            let t = Msg::new(Mac::BROADCAST, me, Kind::Tick, ticks, 0);
            if nic.send(&t, 0) == Outcome::NeedsReset {
                println!("{mode}: FAIL its own tick set NEEDS_RESET");
                return;
            }
            next_tick = now + checks::ticks(TICK_MS);
        }
        while let Some(m) = nic.recv_msg(&mut other) {
            if m.src == me {
                forged += 1;
                continue;
            }
            match m.kind {
                Kind::Ping => {
                    pings += 1;
                    hostile = Some(m.src);
                    let mut pong = Msg::new(m.src, me, Kind::Pong, m.seq, m.marker);
                    pong.probes = probes;
                    pong.forged = forged;
                    nic.send(&pong, 0);
                }
                Kind::Probe => probes += 1,
                Kind::Bye => bye = true,
                Kind::Pong | Kind::Tick => other += 1,
            }
        }
    }
    let ms = (checks::counter() - start) / checks::ticks(1).max(1);
    let fail = if probes + forged + other != 0 {
        "FAIL "
    } else {
        ""
    };
    println!(
        "{mode}: {fail}bye from {} after {pings} pings in {ms} ms ({ticks} ticks sent); saw {probes} probe frames, {forged} from its own address, {other} unexpected",
        hostile.unwrap_or_default()
    );
}
