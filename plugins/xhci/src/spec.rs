//! xHCI 1.2 data structures as plain functions: register offsets and bits, TRBs, device
//! and input contexts, and the ring bookkeeping (a transfer or command ring with its Link
//! TRB, the event ring's consumer). Nothing here touches hardware; host-tested.

/// Capability registers (xHCI 1.2 section 5.3), offsets from BAR 0.
pub mod cap {
    /// CAPLENGTH (byte 0) and HCIVERSION (bytes 2..4).
    pub const CAPLENGTH: usize = 0x00;
    /// HCSPARAMS1: MaxSlots 7:0, MaxIntrs 18:8, MaxPorts 31:24.
    pub const HCSPARAMS1: usize = 0x04;
    /// HCSPARAMS2: Max Scratchpad Buffers Hi 25:21, Lo 31:27.
    pub const HCSPARAMS2: usize = 0x08;
    /// HCCPARAMS1: AC64 bit 0, PPC bit 3, CSZ bit 2, xECP 31:16 (dwords).
    pub const HCCPARAMS1: usize = 0x10;
    /// Doorbell array offset.
    pub const DBOFF: usize = 0x14;
    /// Runtime registers offset.
    pub const RTSOFF: usize = 0x18;
}

/// Operational registers (section 5.4), offsets from the operational base.
pub mod op {
    /// USBCMD.
    pub const USBCMD: usize = 0x00;
    /// USBSTS.
    pub const USBSTS: usize = 0x04;
    /// PAGESIZE.
    pub const PAGESIZE: usize = 0x08;
    /// CRCR (64-bit).
    pub const CRCR: usize = 0x18;
    /// DCBAAP (64-bit).
    pub const DCBAAP: usize = 0x30;
    /// CONFIG.
    pub const CONFIG: usize = 0x38;
    /// PORTSC of port `n` (1-based) (section 5.4.8).
    pub const fn portsc(n: u8) -> usize {
        0x400 + 0x10 * (n as usize - 1)
    }
    /// PORTPMSC of port `n` (section 5.4.9).
    pub const fn portpmsc(n: u8) -> usize {
        portsc(n) + 4
    }
    /// USBCMD Run/Stop.
    pub const CMD_RUN: u32 = 1 << 0;
    /// USBCMD Host Controller Reset.
    pub const CMD_HCRST: u32 = 1 << 1;
    /// USBCMD Interrupter Enable.
    pub const CMD_INTE: u32 = 1 << 2;
    /// USBSTS HCHalted.
    pub const STS_HCH: u32 = 1 << 0;
    /// USBSTS Host System Error.
    pub const STS_HSE: u32 = 1 << 2;
    /// USBSTS Event Interrupt (RW1C).
    pub const STS_EINT: u32 = 1 << 3;
    /// USBSTS Port Change Detect (RW1C).
    pub const STS_PCD: u32 = 1 << 4;
    /// USBSTS Controller Not Ready.
    pub const STS_CNR: u32 = 1 << 11;
    /// USBSTS Host Controller Error.
    pub const STS_HCE: u32 = 1 << 12;
}

/// PORTSC bits (section 5.4.8).
pub mod portsc {
    /// Current Connect Status.
    pub const CCS: u32 = 1 << 0;
    /// Port Enabled/Disabled (RW1C: writing 1 disables).
    pub const PED: u32 = 1 << 1;
    /// Port Reset.
    pub const PR: u32 = 1 << 4;
    /// Port Power.
    pub const PP: u32 = 1 << 9;
    /// Connect Status Change.
    pub const CSC: u32 = 1 << 17;
    /// Port Enabled/Disabled Change.
    pub const PEC: u32 = 1 << 18;
    /// Warm Port Reset Change.
    pub const WRC: u32 = 1 << 19;
    /// Over-current Change.
    pub const OCC: u32 = 1 << 20;
    /// Port Reset Change.
    pub const PRC: u32 = 1 << 21;
    /// Port Link State Change.
    pub const PLC: u32 = 1 << 22;
    /// Port Config Error Change.
    pub const CEC: u32 = 1 << 23;
    /// Every RW1C change bit.
    pub const CHANGES: u32 = CSC | PEC | WRC | OCC | PRC | PLC | CEC;
    /// Read-only and read-write-sticky bits a write must give back unchanged (Linux
    /// `xhci_port_state_to_neutral`: `XHCI_PORT_RO | XHCI_PORT_RWS`); PED and the change
    /// bits are left out so that a write does not disable the port or clear a change.
    pub const PRESERVE: u32 = 0x4e00_ffe9 & !PED & !PR;

    /// The value to write to change nothing but `set` (and to clear the change bits in
    /// `set`).
    pub const fn neutral(value: u32, set: u32) -> u32 {
        (value & PRESERVE) | set
    }

    /// The Port Speed field (13:10), the default Protocol Speed ID values of section
    /// 7.2.2.1.1: 1 full, 2 low, 3 high, 4 SuperSpeed, 5 SuperSpeedPlus.
    pub const fn speed(value: u32) -> u32 {
        (value >> 10) & 0xf
    }
}

/// Runtime registers of interrupter 0 (section 5.5.2), offsets from the runtime base.
pub mod rt {
    /// IMAN: IP bit 0 (RW1C), IE bit 1.
    pub const IMAN: usize = 0x20;
    /// IMOD.
    pub const IMOD: usize = 0x24;
    /// ERSTSZ.
    pub const ERSTSZ: usize = 0x28;
    /// ERSTBA (64-bit).
    pub const ERSTBA: usize = 0x30;
    /// ERDP (64-bit): EHB bit 3 (RW1C).
    pub const ERDP: usize = 0x38;
    /// IMAN Interrupt Pending.
    pub const IMAN_IP: u32 = 1 << 0;
    /// IMAN Interrupt Enable.
    pub const IMAN_IE: u32 = 1 << 1;
    /// ERDP Event Handler Busy.
    pub const ERDP_EHB: u64 = 1 << 3;
}

/// TRB types (section 6.4.6, table 6-91).
pub mod trb_type {
    /// Normal.
    pub const NORMAL: u32 = 1;
    /// Setup Stage.
    pub const SETUP: u32 = 2;
    /// Data Stage.
    pub const DATA: u32 = 3;
    /// Status Stage.
    pub const STATUS: u32 = 4;
    /// Link.
    pub const LINK: u32 = 6;
    /// No Op (transfer ring).
    pub const NOOP: u32 = 8;
    /// Enable Slot Command.
    pub const ENABLE_SLOT: u32 = 9;
    /// Disable Slot Command.
    pub const DISABLE_SLOT: u32 = 10;
    /// Address Device Command.
    pub const ADDRESS_DEVICE: u32 = 11;
    /// Configure Endpoint Command.
    pub const CONFIGURE_ENDPOINT: u32 = 12;
    /// Evaluate Context Command.
    pub const EVALUATE_CONTEXT: u32 = 13;
    /// Reset Endpoint Command.
    pub const RESET_ENDPOINT: u32 = 14;
    /// Stop Endpoint Command.
    pub const STOP_ENDPOINT: u32 = 15;
    /// Set TR Dequeue Pointer Command.
    pub const SET_TR_DEQUEUE: u32 = 16;
    /// Transfer Event.
    pub const TRANSFER_EVENT: u32 = 32;
    /// Command Completion Event.
    pub const COMMAND_COMPLETION: u32 = 33;
    /// Port Status Change Event.
    pub const PORT_STATUS_CHANGE: u32 = 34;
    /// Host Controller Event.
    pub const HOST_CONTROLLER: u32 = 37;
}

/// Completion codes (section 6.4.5, table 6-90).
pub mod cc {
    /// Success.
    pub const SUCCESS: u8 = 1;
    /// Data Buffer Error.
    pub const DATA_BUFFER: u8 = 2;
    /// Babble Detected.
    pub const BABBLE: u8 = 3;
    /// USB Transaction Error.
    pub const TRANSACTION: u8 = 4;
    /// TRB Error.
    pub const TRB: u8 = 5;
    /// Stall Error.
    pub const STALL: u8 = 6;
    /// Short Packet.
    pub const SHORT_PACKET: u8 = 13;
    /// Stopped.
    pub const STOPPED: u8 = 26;
    /// Stopped - Length Invalid.
    pub const STOPPED_LENGTH_INVALID: u8 = 27;
}

/// One 16-byte TRB (section 4.11.1): parameter, status, control (cycle bit 0, type 15:10).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Trb {
    /// Parameter (a pointer, or immediate data).
    pub parameter: u64,
    /// Status.
    pub status: u32,
    /// Control.
    pub control: u32,
}

/// Control bits shared by transfer TRBs (section 6.4.1).
pub mod flag {
    /// Cycle.
    pub const CYCLE: u32 = 1 << 0;
    /// Link TRB: Toggle Cycle.
    pub const TOGGLE: u32 = 1 << 1;
    /// Interrupt on Short Packet.
    pub const ISP: u32 = 1 << 2;
    /// Chain.
    pub const CHAIN: u32 = 1 << 4;
    /// Interrupt On Completion.
    pub const IOC: u32 = 1 << 5;
    /// Immediate Data.
    pub const IDT: u32 = 1 << 6;
    /// Data/Status Stage direction IN (bit 16).
    pub const DIR_IN: u32 = 1 << 16;
}

impl Trb {
    /// The 16 bytes in memory.
    pub fn to_bytes(self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[0..8].copy_from_slice(&self.parameter.to_le_bytes());
        b[8..12].copy_from_slice(&self.status.to_le_bytes());
        b[12..16].copy_from_slice(&self.control.to_le_bytes());
        b
    }

    /// Reads one from memory.
    pub fn from_bytes(b: &[u8; 16]) -> Self {
        let d = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        Self {
            parameter: u64::from(d(0)) | (u64::from(d(4)) << 32),
            status: d(8),
            control: d(12),
        }
    }

    /// Its type.
    pub fn kind(&self) -> u32 {
        (self.control >> 10) & 0x3f
    }

    /// Its cycle bit.
    pub fn cycle(&self) -> bool {
        self.control & flag::CYCLE != 0
    }

    /// An event's completion code (status 31:24).
    pub fn completion_code(&self) -> u8 {
        (self.status >> 24) as u8
    }

    /// A transfer event's residual length (status 23:0).
    pub fn residual(&self) -> u32 {
        self.status & 0xff_ffff
    }

    /// An event's slot ID (control 31:24).
    pub fn slot(&self) -> u8 {
        (self.control >> 24) as u8
    }

    /// A transfer event's endpoint ID (DCI, control 20:16).
    pub fn endpoint_id(&self) -> u8 {
        ((self.control >> 16) & 0x1f) as u8
    }

    /// A port status change event's port ID (parameter 31:24).
    pub fn port(&self) -> u8 {
        (self.parameter >> 24) as u8
    }

    fn typed(kind: u32, control: u32) -> Self {
        Self {
            control: control | (kind << 10),
            ..Self::default()
        }
    }

    /// Setup Stage TRB (section 6.4.1.2.1): the request as immediate data; `trt` 0 no
    /// data, 2 OUT, 3 IN.
    pub fn setup(setup: [u8; 8], trt: u32) -> Self {
        Self {
            parameter: u64::from_le_bytes(setup),
            status: 8,
            ..Self::typed(trb_type::SETUP, flag::IDT | (trt << 16))
        }
    }

    /// Data Stage TRB (section 6.4.1.2.2).
    pub fn data(buffer: u64, length: u32, inward: bool) -> Self {
        let dir = if inward { flag::DIR_IN | flag::ISP } else { 0 };
        Self {
            parameter: buffer,
            status: length & 0x1_ffff,
            ..Self::typed(trb_type::DATA, dir)
        }
    }

    /// Status Stage TRB (section 6.4.1.2.3): IN unless the data stage was IN (USB 2.0
    /// 8.5.3), with an event on completion.
    pub fn status_stage(inward: bool) -> Self {
        Self::typed(
            trb_type::STATUS,
            flag::IOC | if inward { flag::DIR_IN } else { 0 },
        )
    }

    /// Normal TRB (section 6.4.1.1) of `length` bytes at `buffer`, one TD, event on
    /// completion (and on a short packet).
    pub fn normal(buffer: u64, length: u32) -> Self {
        Self {
            parameter: buffer,
            status: length & 0x1_ffff,
            ..Self::typed(trb_type::NORMAL, flag::IOC | flag::ISP)
        }
    }

    /// A Normal TRB of `length` bytes with no event unless it fails (the first TD of an
    /// OUT transfer followed by a zero-length packet).
    pub fn normal_quiet(buffer: u64, length: u32) -> Self {
        Self {
            parameter: buffer,
            status: length & 0x1_ffff,
            ..Self::typed(trb_type::NORMAL, 0)
        }
    }

    /// Transfer-ring No Op (section 6.4.1.4): fills the end of a segment so a TD never
    /// spans the Link TRB.
    pub fn noop() -> Self {
        Self::typed(trb_type::NOOP, 0)
    }

    /// Link TRB (section 6.4.4.1) back to `segment`, toggling the cycle.
    pub fn link(segment: u64) -> Self {
        Self {
            parameter: segment,
            ..Self::typed(trb_type::LINK, flag::TOGGLE)
        }
    }

    /// Enable Slot Command (section 6.4.3.2), slot type 0.
    pub fn enable_slot() -> Self {
        Self::typed(trb_type::ENABLE_SLOT, 0)
    }

    /// Disable Slot Command (section 6.4.3.3).
    pub fn disable_slot(slot: u8) -> Self {
        Self::typed(trb_type::DISABLE_SLOT, u32::from(slot) << 24)
    }

    /// Address Device Command (section 6.4.3.4), BSR 0.
    pub fn address_device(input: u64, slot: u8) -> Self {
        Self {
            parameter: input,
            ..Self::typed(trb_type::ADDRESS_DEVICE, u32::from(slot) << 24)
        }
    }

    /// Configure Endpoint Command (section 6.4.3.5).
    pub fn configure_endpoint(input: u64, slot: u8) -> Self {
        Self {
            parameter: input,
            ..Self::typed(trb_type::CONFIGURE_ENDPOINT, u32::from(slot) << 24)
        }
    }

    /// Evaluate Context Command (section 6.4.3.6).
    pub fn evaluate_context(input: u64, slot: u8) -> Self {
        Self {
            parameter: input,
            ..Self::typed(trb_type::EVALUATE_CONTEXT, u32::from(slot) << 24)
        }
    }

    /// Reset Endpoint Command (section 6.4.3.7).
    pub fn reset_endpoint(slot: u8, dci: u8) -> Self {
        Self::typed(
            trb_type::RESET_ENDPOINT,
            (u32::from(slot) << 24) | (u32::from(dci) << 16),
        )
    }

    /// Set TR Dequeue Pointer Command (section 6.4.3.9): `dequeue` with its cycle state.
    pub fn set_tr_dequeue(slot: u8, dci: u8, dequeue: u64, cycle: bool) -> Self {
        Self {
            parameter: dequeue | u64::from(cycle),
            ..Self::typed(
                trb_type::SET_TR_DEQUEUE,
                (u32::from(slot) << 24) | (u32::from(dci) << 16),
            )
        }
    }
}

/// TRBs per ring segment: one 4 KiB page.
pub const RING_TRBS: u32 = 256;

/// A producer ring (command or transfer ring, section 4.9.2) of one segment whose last
/// TRB links back to the first: where the next TRB goes and with which cycle bit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProducerRing {
    /// Bus address of the segment.
    pub base: u64,
    /// Index of the next TRB.
    pub enqueue: u32,
    /// Producer cycle state.
    pub cycle: bool,
}

impl ProducerRing {
    /// A fresh ring at `base` (cycle state 1).
    pub fn new(base: u64) -> Self {
        Self {
            base,
            enqueue: 0,
            cycle: true,
        }
    }

    /// Bus address of the next TRB.
    pub fn enqueue_addr(&self) -> u64 {
        self.base + u64::from(self.enqueue) * 16
    }

    /// The TRBs to write (`(index, trb)` with the cycle bit set) for a TD of `trbs`,
    /// keeping the TD in one piece: if it does not fit before the Link TRB, the rest of
    /// the segment is filled with No Ops and the Link TRB is handed over, and the TD
    /// starts at index 0 with the toggled cycle. Returns the writes in order and the bus
    /// address of each TD TRB.
    pub fn push_td(&mut self, trbs: &[Trb]) -> (alloc::vec::Vec<(u32, Trb)>, alloc::vec::Vec<u64>) {
        let last = RING_TRBS - 1; // the Link TRB
        let mut writes = alloc::vec::Vec::new();
        if self.enqueue + trbs.len() as u32 > last {
            while self.enqueue < last {
                self.emit(&mut writes, Trb::noop());
            }
            self.emit(&mut writes, Trb::link(self.base));
            self.enqueue = 0;
            self.cycle = !self.cycle;
        }
        let mut addrs = alloc::vec::Vec::new();
        for t in trbs {
            addrs.push(self.enqueue_addr());
            self.emit(&mut writes, *t);
        }
        if self.enqueue == last {
            self.emit(&mut writes, Trb::link(self.base));
            self.enqueue = 0;
            self.cycle = !self.cycle;
        }
        (writes, addrs)
    }

    fn emit(&mut self, writes: &mut alloc::vec::Vec<(u32, Trb)>, mut t: Trb) {
        t.control = (t.control & !flag::CYCLE) | u32::from(self.cycle);
        writes.push((self.enqueue, t));
        self.enqueue += 1;
    }
}

/// The consumer side of the event ring (section 4.9.4): one segment of [`RING_TRBS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventRing {
    /// Bus address of the segment.
    pub base: u64,
    /// Index of the next event to look at.
    pub dequeue: u32,
    /// Consumer cycle state.
    pub cycle: bool,
}

impl EventRing {
    /// A fresh ring at `base`.
    pub fn new(base: u64) -> Self {
        Self {
            base,
            dequeue: 0,
            cycle: true,
        }
    }

    /// True if `t` (read at `dequeue`) is a new event (its cycle bit matches).
    pub fn is_new(&self, t: &Trb) -> bool {
        t.cycle() == self.cycle
    }

    /// Steps past the event just consumed.
    pub fn advance(&mut self) {
        self.dequeue += 1;
        if self.dequeue == RING_TRBS {
            self.dequeue = 0;
            self.cycle = !self.cycle;
        }
    }

    /// The ERDP value that hands the consumed events back (EHB written 1 to clear it).
    pub fn erdp(&self) -> u64 {
        (self.base + u64::from(self.dequeue) * 16) | rt::ERDP_EHB
    }
}

/// Device Context Index of endpoint address `address` (section 4.5.1): 1 for endpoint 0,
/// `2 * number + IN`.
pub fn dci(address: u8) -> u8 {
    let n = address & 0x0f;
    if n == 0 {
        1
    } else {
        n * 2 + u8::from(address & 0x80 != 0)
    }
}

/// Endpoint Type of an endpoint context (section 6.2.3, table 6-9).
pub fn ep_type(kind: hypervisor::plugin::usb::EndpointKind, inward: bool) -> u32 {
    use hypervisor::plugin::usb::EndpointKind::*;
    match (kind, inward) {
        (Control, _) => 4,
        (Isochronous, false) => 1,
        (Bulk, false) => 2,
        (Interrupt, false) => 3,
        (Isochronous, true) => 5,
        (Bulk, true) => 6,
        (Interrupt, true) => 7,
    }
}

/// The Interval field (2^n × 125 µs, section 6.2.3.6) of an interrupt endpoint with
/// `bInterval` at `speed`: frames (1 ms) below high speed, 2^(bInterval-1) microframes
/// at high speed and above (USB 2.0 9.6.6); what Linux `xhci_get_endpoint_interval`
/// computes.
pub fn interval(speed: hypervisor::plugin::usb::Speed, b_interval: u8) -> u32 {
    use hypervisor::plugin::usb::Speed::*;
    match speed {
        Low | Full => {
            let frames = u32::from(b_interval.max(1));
            // log2(frames × 8), clamped to 3..=10 (1 ms to 128 ms).
            (31 - (frames * 8).leading_zeros()).clamp(3, 10)
        }
        _ => u32::from(b_interval.clamp(1, 16)) - 1,
    }
}

/// A slot context (section 6.2.2): dwords 0..4.
pub fn slot_context(speed: u32, context_entries: u32, port: u8) -> [u32; 4] {
    [
        (speed << 20) | (context_entries << 27),
        u32::from(port) << 16,
        0,
        0,
    ]
}

/// An endpoint context (section 6.2.3): dwords 0..5. `dequeue` is the ring's bus
/// address with its cycle state in bit 0.
#[allow(clippy::too_many_arguments)]
pub fn endpoint_context(
    ep_type: u32,
    max_packet: u16,
    max_burst: u8,
    interval: u32,
    dequeue: u64,
    average_trb: u16,
    max_esit: u32,
) -> [u32; 5] {
    let cerr = if ep_type == 1 || ep_type == 5 { 0 } else { 3 };
    [
        (interval << 16) | ((max_esit >> 16) << 24),
        (cerr << 1) | (ep_type << 3) | (u32::from(max_burst) << 8) | (u32::from(max_packet) << 16),
        dequeue as u32,
        (dequeue >> 32) as u32,
        u32::from(average_trb) | ((max_esit & 0xffff) << 16),
    ]
}

/// Dwords as little-endian bytes.
pub fn dwords(d: &[u32]) -> alloc::vec::Vec<u8> {
    d.iter().flat_map(|v| v.to_le_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hypervisor::plugin::usb::{EndpointKind, Speed};

    #[test]
    fn trbs_encode_as_section_6_4_says() {
        let s = Trb::setup([0x80, 6, 0, 1, 0, 0, 18, 0], 3);
        assert_eq!(s.kind(), trb_type::SETUP);
        assert_eq!(s.status, 8);
        assert_eq!(s.control & flag::IDT, flag::IDT);
        assert_eq!((s.control >> 16) & 3, 3);
        assert_eq!(s.parameter, 0x0012_0000_0100_0680);
        let d = Trb::data(0x4000_1000, 18, true);
        assert_eq!(d.control & flag::DIR_IN, flag::DIR_IN);
        assert_eq!(Trb::status_stage(false).control & flag::DIR_IN, 0);
        let back = Trb::from_bytes(&d.to_bytes());
        assert_eq!(back, d);
        let ev = Trb {
            parameter: 0x4000_2010,
            status: (13 << 24) | 1400,
            control: (3 << 24) | (5 << 16) | (trb_type::TRANSFER_EVENT << 10) | 1,
        };
        assert_eq!(
            (
                ev.completion_code(),
                ev.residual(),
                ev.slot(),
                ev.endpoint_id()
            ),
            (cc::SHORT_PACKET, 1400, 3, 5)
        );
        assert_eq!(dci(0), 1);
        assert_eq!(dci(0x81), 3);
        assert_eq!(dci(0x02), 4);
        assert_eq!(ep_type(EndpointKind::Bulk, true), 6);
    }

    #[test]
    fn a_producer_ring_links_back_and_never_splits_a_td() {
        let mut r = ProducerRing::new(0x1000);
        // Fill up to index 253 with one-TRB TDs.
        for i in 0..253 {
            let (w, a) = r.push_td(&[Trb::normal(0, 1)]);
            assert_eq!((w.len(), a[0]), (1, 0x1000 + i * 16));
            assert!(w[0].1.cycle());
        }
        // A three-TRB control TD does not fit in 253..255: No Ops, the Link TRB (old
        // cycle), then the TD at 0 with the toggled cycle.
        let setup = Trb::setup([0; 8], 0);
        let (w, a) = r.push_td(&[setup, Trb::status_stage(true), Trb::noop()]);
        assert_eq!(
            w[0],
            (
                253,
                Trb {
                    control: Trb::noop().control | 1,
                    ..Trb::noop()
                }
            )
        );
        assert_eq!(w[2].0, 255);
        assert_eq!(w[2].1.kind(), trb_type::LINK);
        assert!(w[2].1.cycle() && w[2].1.control & flag::TOGGLE != 0);
        assert_eq!(w[3].0, 0);
        assert!(!w[3].1.cycle());
        assert_eq!(a, vec![0x1000, 0x1010, 0x1020]);
        assert!(!r.cycle);
        // A TD that ends exactly at the Link TRB hands it over at once.
        let mut r = ProducerRing::new(0);
        r.enqueue = 254;
        let (w, _) = r.push_td(&[Trb::normal(0, 1)]);
        assert_eq!(w.len(), 2);
        assert_eq!(w[1].1.kind(), trb_type::LINK);
        assert_eq!((r.enqueue, r.cycle), (0, false));
    }

    #[test]
    fn the_event_ring_toggles_its_cycle_at_the_end() {
        let mut e = EventRing::new(0x8000);
        let new = Trb {
            control: 1,
            ..Trb::default()
        };
        assert!(e.is_new(&new));
        for _ in 0..RING_TRBS {
            e.advance();
        }
        assert_eq!(e.dequeue, 0);
        assert!(!e.is_new(&new), "a stale event of the last lap");
        assert_eq!(e.erdp(), 0x8000 | rt::ERDP_EHB);
    }

    #[test]
    fn intervals_and_contexts() {
        assert_eq!(interval(Speed::Full, 32), 8); // 32 ms = 2^8 x 125 us
        assert_eq!(interval(Speed::Full, 1), 3);
        assert_eq!(interval(Speed::High, 8), 7);
        assert_eq!(interval(Speed::Super, 8), 7);
        let c = endpoint_context(6, 1024, 3, 0, 0x4000_0001, 1024, 0);
        assert_eq!(c[1], (3 << 1) | (6 << 3) | (3 << 8) | (1024 << 16));
        assert_eq!(c[2], 0x4000_0001);
        assert_eq!(slot_context(4, 1, 5)[0], (4 << 20) | (1 << 27));
        assert_eq!(slot_context(4, 1, 5)[1], 5 << 16);
        // Writing PORTSC back must not disable the port (PED) or clear changes.
        let v = portsc::CCS | portsc::PED | portsc::PP | portsc::CSC | (3 << 10);
        assert_eq!(portsc::neutral(v, 0), portsc::CCS | portsc::PP | (3 << 10));
        assert_eq!(portsc::speed(v), 3);
    }
}
