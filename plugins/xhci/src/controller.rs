//! One xHCI controller: bring-up (section 4.2), commands, the event ring, root ports,
//! device slots and their endpoints' transfer rings.
//!
//! Everything the controller or a device does wrong ends as an error for that command,
//! transfer or device (a timeout retires the controller), never a panic. The controller
//! is shared (`Arc<Mutex<Xhci>>`) between its interrupt handler, the class drivers'
//! [`UsbBus`] handles and the hot-plug path; [`service`] runs class drivers and their
//! deferred work with the controller's lock released.

use crate::spec::{
    self, cap, cc, dci, dwords, ep_type, op, portsc, rt, trb_type, EventRing, ProducerRing, Trb,
    RING_TRBS,
};
use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use hypervisor::dma::{pause_after, Dma, DmaError, Env};
use hypervisor::plugin::usb::{
    self, Completed, Completion, EndpointKind, EnumBus, Setup, SharedFunction, Speed, TransferId,
    UsbBus, UsbError,
};
use hypervisor::sync::Mutex;

/// Register access to the controller's BAR 0 (32-bit accesses).
pub trait Regs: Send {
    /// Reads the dword at byte offset `off`.
    fn read32(&mut self, off: usize) -> u32;
    /// Writes the dword at byte offset `off`.
    fn write32(&mut self, off: usize, value: u32);
}

/// How long a command, a control transfer or a port reset may take.
const TIMEOUT_MS: u64 = 1000;
/// Most transfers an endpoint may have in flight (each takes at most two TRBs of a
/// 255-TRB segment, plus one No Op run before the Link TRB).
pub const MAX_QUEUE: usize = 64;
/// Slots this driver uses at most.
const MAX_SLOTS: u8 = 32;

/// Why bring-up failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitError {
    /// CNR or HCRST did not clear, or HCH did not follow Run/Stop.
    NotReady,
    /// The BAR is too small for the registers it announces.
    SmallBar,
    /// No DMA memory.
    Memory,
    /// The controller reported a host system or controller error.
    Fatal,
}

impl InitError {
    /// For the console.
    pub fn message(self) -> &'static str {
        match self {
            Self::NotReady => "controller did not become ready (CNR/HCRST/HCH)",
            Self::SmallBar => "BAR 0 is smaller than the registers the controller announces",
            Self::Memory => "no DMA memory left in the RAM pool",
            Self::Fatal => "controller reported a host system error",
        }
    }
}

struct InFlight {
    id: TransferId,
    /// Bus addresses of the TD's TRBs (an event names one of them).
    trbs: Vec<u64>,
    /// Buffer index.
    buffer: usize,
    /// Bytes asked for (IN) or sent (OUT).
    length: usize,
    inward: bool,
}

struct Endpoint<B> {
    address: u8,
    ring_mem: B,
    ring: ProducerRing,
    /// `queue` buffers of `stride` bytes each, each `stride`-aligned (a power of two up
    /// to 64 KiB, so that no buffer crosses a 64 KiB boundary, section 6.1).
    buffers: B,
    offset: u64,
    stride: u64,
    max_transfer: usize,
    free: Vec<usize>,
    in_flight: Vec<InFlight>,
}

struct Slot<B> {
    port: u8,
    speed: Speed,
    out_ctx: B,
    in_ctx: B,
    ep0_mem: B,
    ep0: ProducerRing,
    ep0_max: u16,
    /// Bounce buffer for control data stages.
    control_buf: B,
    endpoints: Vec<Endpoint<B>>,
    function: Option<SharedFunction>,
    /// Changes when the slot ID is reused for another device.
    generation: u32,
    /// Highest DCI configured.
    context_entries: u8,
}

/// An event noted while waiting for another one.
enum Noted {
    Transfer(Trb),
    Port(u8),
}

/// A controller.
pub struct Xhci<E: Env> {
    env: E,
    regs: Box<dyn Regs>,
    coherent: bool,
    op: usize,
    rt: usize,
    db: usize,
    ctx_size: usize,
    ports: u8,
    /// Per port (index port - 1): a USB 3 port (from the Supported Protocol capability).
    usb3: Vec<bool>,
    dcbaa: E::Buf,
    _scratch: Vec<E::Buf>,
    cmd_mem: E::Buf,
    cmd: ProducerRing,
    event_mem: E::Buf,
    _erst: E::Buf,
    events: EventRing,
    slots: Vec<Option<Slot<E::Buf>>>,
    noted: VecDeque<Noted>,
    /// Completions waiting for their function, `(slot, completion)`.
    done: VecDeque<(u8, Completion)>,
    next_id: u32,
    generation: u32,
    dead: bool,
    /// Board quirks (for enumeration).
    pub board: Option<&'static hypervisor::platform::BoardDesc>,
    /// Name for messages, e.g. `xhci 00:02.0`.
    pub name: String,
}

fn mem<T>(r: Result<T, DmaError>) -> Result<T, UsbError> {
    r.map_err(|DmaError| UsbError::NoMemory)
}

impl<E: Env> Xhci<E> {
    /// Resets and starts the controller whose BAR 0 `regs` reaches (`bar_size` bytes):
    /// section 4.2's sequence, with one interrupter and its event ring, and powers every
    /// root port.
    pub fn new(
        env: E,
        mut regs: Box<dyn Regs>,
        bar_size: usize,
        coherent: bool,
        name: String,
    ) -> Result<Self, InitError> {
        let caplen = (regs.read32(cap::CAPLENGTH) & 0xff) as usize;
        let hcs1 = regs.read32(cap::HCSPARAMS1);
        let hcs2 = regs.read32(cap::HCSPARAMS2);
        let hcc1 = regs.read32(cap::HCCPARAMS1);
        let db = (regs.read32(cap::DBOFF) & !3) as usize;
        let rto = (regs.read32(cap::RTSOFF) & !0x1f) as usize;
        let ports = (hcs1 >> 24) as u8;
        let max_slots = ((hcs1 & 0xff) as u8).min(MAX_SLOTS);
        if caplen < 0x20
            || caplen + op::portsc(ports.max(1)) + 16 > bar_size
            || db + 4 * (usize::from(max_slots) + 1) > bar_size
            || rto + rt::ERDP + 8 > bar_size
            || max_slots == 0
        {
            return Err(InitError::SmallBar);
        }
        let alloc = |size: u64| {
            env.alloc(size, coherent)
                .map_err(|DmaError| InitError::Memory)
        };
        let dcbaa = alloc(4096)?;
        let cmd_mem = alloc(4096)?;
        let event_mem = alloc(4096)?;
        let erst = alloc(4096)?;
        let env2 = env.clone();
        let alloc = |size: u64| {
            env2.alloc(size, coherent)
                .map_err(|DmaError| InitError::Memory)
        };
        let mut x = Self {
            regs,
            coherent,
            op: caplen,
            rt: rto,
            db,
            ctx_size: if hcc1 & (1 << 2) != 0 { 64 } else { 32 },
            ports,
            usb3: vec![false; usize::from(ports)],
            cmd: ProducerRing::new(cmd_mem.bus_addr()),
            events: EventRing::new(event_mem.bus_addr()),
            dcbaa,
            _scratch: Vec::new(),
            cmd_mem,
            event_mem,
            _erst: erst,
            slots: (0..=max_slots).map(|_| None).collect(),
            noted: VecDeque::new(),
            done: VecDeque::new(),
            next_id: 0,
            generation: 0,
            dead: false,
            board: None,
            name,
            env,
        };
        x.find_protocols(hcc1 >> 16, bar_size);
        // 4.2: wait for CNR, stop, reset.
        x.wait_op(op::USBSTS, op::STS_CNR, 0)?;
        let cmd = x.read_op(op::USBCMD);
        x.write_op(op::USBCMD, cmd & !op::CMD_RUN);
        x.wait_op(op::USBSTS, op::STS_HCH, op::STS_HCH)?;
        x.write_op(op::USBCMD, op::CMD_HCRST);
        x.wait_op(op::USBCMD, op::CMD_HCRST, 0)?;
        x.wait_op(op::USBSTS, op::STS_CNR, 0)?;
        x.write_op(op::CONFIG, u32::from(max_slots));
        // Scratchpad buffers (section 4.20): an array of page pointers in DCBAA[0].
        let scratch = (((hcs2 >> 21) & 0x1f) << 5) | (hcs2 >> 27);
        if scratch > 0 {
            let page = u64::from(x.read_op(op::PAGESIZE) & 0xffff).trailing_zeros();
            let page = 4096u64 << page;
            let mut array = alloc(u64::from(scratch) * 8)?;
            let mut bufs = Vec::new();
            for i in 0..u64::from(scratch) {
                let b = alloc(page)?;
                array
                    .write(i * 8, &b.bus_addr().to_le_bytes())
                    .map_err(|_| InitError::Memory)?;
                bufs.push(b);
            }
            x.dcbaa
                .write(0, &array.bus_addr().to_le_bytes())
                .map_err(|_| InitError::Memory)?;
            bufs.push(array);
            x._scratch = bufs;
        }
        let dcbaap = x.dcbaa.bus_addr();
        x.write_op64(op::DCBAAP, dcbaap);
        x.write_op64(op::CRCR, x.cmd.base | 1);
        // One Event Ring Segment Table entry (section 6.5): base, size.
        let mut entry = [0u8; 16];
        entry[0..8].copy_from_slice(&x.events.base.to_le_bytes());
        entry[8..12].copy_from_slice(&RING_TRBS.to_le_bytes());
        x._erst.write(0, &entry).map_err(|_| InitError::Memory)?;
        x.write_rt(rt::ERSTSZ, 1);
        let erdp = x.events.erdp();
        x.write_rt64(rt::ERDP, erdp);
        let erstba = x._erst.bus_addr();
        x.write_rt64(rt::ERSTBA, erstba);
        x.write_rt(rt::IMOD, 0);
        x.write_rt(rt::IMAN, rt::IMAN_IE | rt::IMAN_IP);
        x.write_op(op::USBCMD, op::CMD_RUN | op::CMD_INTE);
        x.wait_op(op::USBSTS, op::STS_HCH, 0)?;
        // Port power (section 4.19.1.1): PP is writable when HCCPARAMS1.PPC is set.
        let mut powered = false;
        for p in 1..=x.ports {
            let v = x.read_op(op::portsc(p));
            if v & portsc::PP == 0 {
                x.write_op(op::portsc(p), portsc::neutral(v, portsc::PP));
                powered = true;
            }
        }
        if powered {
            x.delay_ms(20);
        }
        Ok(x)
    }

    /// Reads the Supported Protocol capabilities (section 7.2) to learn which ports are
    /// USB 3 ones.
    fn find_protocols(&mut self, xecp: u32, bar_size: usize) {
        let mut at = (xecp as usize) * 4;
        let mut guard = 0;
        while at != 0 && at + 12 <= bar_size && guard < 64 {
            guard += 1;
            let head = self.regs.read32(at);
            if head & 0xff == 2 {
                let major = (head >> 24) as u8;
                let ports = self.regs.read32(at + 8);
                let (first, count) = ((ports & 0xff) as usize, ((ports >> 8) & 0xff) as usize);
                for p in first..first + count {
                    if let Some(u) = p.checked_sub(1).and_then(|i| self.usb3.get_mut(i)) {
                        *u = major >= 3;
                    }
                }
            }
            let next = ((head >> 8) & 0xff) as usize;
            at = if next == 0 { 0 } else { at + next * 4 };
        }
    }

    fn read_op(&mut self, off: usize) -> u32 {
        self.regs.read32(self.op + off)
    }

    fn write_op(&mut self, off: usize, v: u32) {
        self.regs.write32(self.op + off, v)
    }

    fn write_op64(&mut self, off: usize, v: u64) {
        self.write_op(off, v as u32);
        self.write_op(off + 4, (v >> 32) as u32);
    }

    fn write_rt(&mut self, off: usize, v: u32) {
        self.regs.write32(self.rt + off, v)
    }

    fn write_rt64(&mut self, off: usize, v: u64) {
        self.write_rt(off, v as u32);
        self.write_rt(off + 4, (v >> 32) as u32);
    }

    fn ring_doorbell(&mut self, slot: u8, target: u8) {
        self.regs
            .write32(self.db + 4 * usize::from(slot), u32::from(target));
    }

    fn deadline(&self, ms: u64) -> u64 {
        self.env.now() + self.env.ticks_per_ms().saturating_mul(ms)
    }

    fn delay_ms(&self, ms: u64) {
        let start = self.env.now();
        let end = self.deadline(ms);
        while self.env.now() < end {
            // Naps between looks, longer the longer it takes (`dma::pause_after`).
            pause_after(&self.env, self.env.now().wrapping_sub(start));
        }
    }

    fn wait_op(&mut self, off: usize, mask: u32, want: u32) -> Result<(), InitError> {
        let start = self.env.now();
        let end = self.deadline(TIMEOUT_MS);
        loop {
            let v = self.read_op(off);
            if v == u32::MAX {
                return Err(InitError::Fatal);
            }
            if v & mask == want {
                return Ok(());
            }
            if self.env.now() > end {
                return Err(InitError::NotReady);
            }
            // Naps between looks, longer the longer it takes (`dma::pause_after`).
            pause_after(&self.env, self.env.now().wrapping_sub(start));
        }
    }

    /// Number of root ports.
    pub fn ports(&self) -> u8 {
        self.ports
    }

    /// Whether the interrupter has something pending; clears IMAN.IP and USBSTS.EINT
    /// (the interrupt handler's acknowledgement; the events themselves stay on the ring
    /// until [`Self::drain`]).
    pub fn acknowledge(&mut self) -> bool {
        let sts = self.read_op(op::USBSTS);
        let iman = self.regs.read32(self.rt + rt::IMAN);
        if sts == u32::MAX {
            return false;
        }
        if sts & (op::STS_HSE | op::STS_HCE) != 0 && !self.dead {
            self.dead = true;
            log!(
                "[hv] usb {}: host controller error (USBSTS {sts:#x}); controller retired",
                self.name
            );
        }
        let pending = iman & rt::IMAN_IP != 0 || sts & op::STS_EINT != 0;
        if pending {
            self.write_rt(rt::IMAN, rt::IMAN_IE | rt::IMAN_IP);
            self.write_op(op::USBSTS, op::STS_EINT | op::STS_PCD);
        }
        pending
    }

    /// Reads the next event, if there is one.
    fn next_event(&mut self) -> Option<Trb> {
        let mut raw = [0u8; 16];
        self.event_mem
            .read(u64::from(self.events.dequeue) * 16, &mut raw)
            .ok()?;
        let t = Trb::from_bytes(&raw);
        if !self.events.is_new(&t) {
            return None;
        }
        self.events.advance();
        Some(t)
    }

    fn update_erdp(&mut self) {
        let erdp = self.events.erdp();
        self.write_rt64(rt::ERDP, erdp);
    }

    /// Takes every event off the ring: transfer completions go to their endpoints'
    /// queues, port changes are noted for [`Self::take_port_changes`].
    pub fn drain(&mut self) {
        let mut any = false;
        while let Some(t) = self.next_event() {
            any = true;
            match t.kind() {
                trb_type::TRANSFER_EVENT => self.noted.push_back(Noted::Transfer(t)),
                trb_type::PORT_STATUS_CHANGE => self.noted.push_back(Noted::Port(t.port())),
                // A command completion nobody waits for (its waiter timed out).
                _ => {}
            }
        }
        if any {
            self.update_erdp();
        }
        self.settle_transfers();
    }

    /// Turns noted transfer events into completions.
    fn settle_transfers(&mut self) {
        let mut keep = VecDeque::new();
        while let Some(n) = self.noted.pop_front() {
            match n {
                Noted::Transfer(t) => self.transfer_event(t),
                other => keep.push_back(other),
            }
        }
        self.noted = keep;
    }

    /// Port numbers whose status changed since the last call.
    pub fn take_port_changes(&mut self) -> Vec<u8> {
        let mut ports = Vec::new();
        self.noted.retain(|n| match n {
            Noted::Port(p) => {
                if !ports.contains(p) {
                    ports.push(*p);
                }
                false
            }
            Noted::Transfer(_) => true,
        });
        ports
    }

    /// Completions whose device has a function, with the function.
    pub fn take_completions(&mut self) -> Vec<(SharedFunction, Completion)> {
        let mut out = Vec::new();
        let mut keep = VecDeque::new();
        while let Some((slot, c)) = self.done.pop_front() {
            match self
                .slots
                .get(usize::from(slot))
                .and_then(|s| s.as_ref())
                .and_then(|s| s.function.clone())
            {
                Some(f) => out.push((f, c)),
                None if self
                    .slots
                    .get(usize::from(slot))
                    .is_some_and(|s| s.is_some()) =>
                {
                    keep.push_back((slot, c))
                }
                None => {} // the device is gone
            }
        }
        self.done = keep;
        out
    }

    /// Endpoint `dci` of the device in `slot_id`, if both exist.
    fn endpoint_mut(&mut self, slot_id: u8, dci: u8) -> Option<&mut Endpoint<E::Buf>> {
        self.slots
            .get_mut(usize::from(slot_id))
            .and_then(|s| s.as_mut())?
            .endpoints
            .iter_mut()
            .find(|e| spec::dci(e.address) == dci)
    }

    /// A transfer event for a bulk or interrupt endpoint: completes its transfer (an
    /// error halts the endpoint: it is reset and its queue skipped, every queued
    /// transfer completing with the error).
    fn transfer_event(&mut self, t: Trb) {
        let (slot_id, dci) = (t.slot(), t.endpoint_id());
        let code = t.completion_code();
        let Some(ep) = self.endpoint_mut(slot_id, dci) else {
            return;
        };
        let Some(pos) = ep
            .in_flight
            .iter()
            .position(|f| f.trbs.contains(&t.parameter))
        else {
            return;
        };
        let ok = code == cc::SUCCESS || code == cc::SHORT_PACKET;
        let is_last = ep.in_flight[pos].trbs.last() == Some(&t.parameter);
        if ok && !is_last {
            return; // the data TD of an OUT transfer with a zero-length packet
        }
        let f = ep.in_flight.remove(pos);
        let moved = f.length.saturating_sub(t.residual() as usize);
        let result = if ok {
            let mut data = Vec::new();
            if f.inward {
                data = vec![0u8; moved.min(ep.max_transfer)];
                let at = ep.offset + f.buffer as u64 * ep.stride;
                if ep.buffers.read(at, &mut data).is_err() {
                    data.clear();
                }
            }
            Ok(Completed {
                length: if f.inward { data.len() } else { f.length },
                data,
            })
        } else {
            Err(code_error(code))
        };
        ep.free.push(f.buffer);
        let address = ep.address;
        self.done.push_back((
            slot_id,
            Completion {
                endpoint: address,
                id: f.id,
                result,
            },
        ));
        if !ok {
            self.recover_endpoint(slot_id, dci, code);
        }
    }

    /// After an error the endpoint is Halted (section 4.10.2.1): Reset Endpoint, move its
    /// dequeue pointer past everything queued (Set TR Dequeue Pointer, section 4.6.10),
    /// complete what was queued with the error, and clear the device's halt after a
    /// stall (USB 2.0 9.4.5: resets its data toggle).
    fn recover_endpoint(&mut self, slot_id: u8, dci: u8, code: u8) {
        let _ = self.command(Trb::reset_endpoint(slot_id, dci));
        let Some(ep) = self.endpoint_mut(slot_id, dci) else {
            return;
        };
        let (deq, cycle, address) = (ep.ring.enqueue_addr(), ep.ring.cycle, ep.address);
        let skipped: Vec<InFlight> = ep.in_flight.drain(..).collect();
        for f in &skipped {
            ep.free.push(f.buffer);
        }
        for f in skipped {
            self.done.push_back((
                slot_id,
                Completion {
                    endpoint: address,
                    id: f.id,
                    result: Err(code_error(code)),
                },
            ));
        }
        let _ = self.command(Trb::set_tr_dequeue(slot_id, dci, deq, cycle));
        if code == cc::STALL {
            let clear = Setup {
                request_type: 0x02,
                request: usb::req::CLEAR_FEATURE,
                value: 0, // ENDPOINT_HALT
                index: u16::from(address),
                length: 0,
            };
            let _ = self.control(slot_id, clear, None);
        }
    }

    /// Runs a command and waits for its completion event (noting other events);
    /// returns the event's slot ID.
    fn command(&mut self, trb: Trb) -> Result<u8, UsbError> {
        if self.dead {
            return Err(UsbError::Disconnected);
        }
        let (writes, addrs) = self.cmd.push_td(&[trb]);
        for (i, t) in writes {
            write_trb(&mut self.cmd_mem, i, t)?;
        }
        self.ring_doorbell(0, 0);
        let start = self.env.now();
        let end = self.deadline(TIMEOUT_MS);
        loop {
            while let Some(t) = self.next_event() {
                match t.kind() {
                    trb_type::COMMAND_COMPLETION if t.parameter == addrs[0] => {
                        self.update_erdp();
                        return match t.completion_code() {
                            cc::SUCCESS => Ok(t.slot()),
                            code => Err(UsbError::Command(code)),
                        };
                    }
                    trb_type::TRANSFER_EVENT => self.noted.push_back(Noted::Transfer(t)),
                    trb_type::PORT_STATUS_CHANGE => self.noted.push_back(Noted::Port(t.port())),
                    _ => {}
                }
            }
            self.update_erdp();
            if self.env.now() > end {
                // The command ring can no longer be trusted.
                self.dead = true;
                log!(
                    "[hv] usb {}: command timed out; controller retired",
                    self.name
                );
                return Err(UsbError::Timeout);
            }
            // Naps between looks, longer the longer it takes (`dma::pause_after`).
            pause_after(&self.env, self.env.now().wrapping_sub(start));
        }
    }

    /// A control transfer on `slot`'s endpoint 0: Setup, optional Data, Status TRBs
    /// (section 4.11.2.2); waits for the Status stage. `data`: `Some((buf, in))`.
    fn control(
        &mut self,
        slot_id: u8,
        setup: Setup,
        data: Option<(&mut [u8], bool)>,
    ) -> Result<usize, UsbError> {
        if self.dead {
            return Err(UsbError::Disconnected);
        }
        let slot = self
            .slots
            .get_mut(usize::from(slot_id))
            .and_then(|s| s.as_mut())
            .ok_or(UsbError::Disconnected)?;
        let len = data.as_ref().map_or(0, |(b, _)| b.len());
        if len > 4096 || len != usize::from(setup.length) {
            return Err(UsbError::Invalid("control data length"));
        }
        let inward = setup.is_in();
        let mut trbs = Vec::new();
        let trt = match (len, inward) {
            (0, _) => 0,
            (_, false) => 2,
            (_, true) => 3,
        };
        trbs.push(Trb::setup(setup.to_bytes(), trt));
        if len > 0 {
            if !inward {
                if let Some((b, _)) = &data {
                    mem(slot.control_buf.write(0, b))?;
                }
            }
            trbs.push(Trb::data(slot.control_buf.bus_addr(), len as u32, inward));
        }
        trbs.push(Trb::status_stage(len == 0 || !inward));
        let (writes, addrs) = slot.ep0.push_td(&trbs);
        for (i, t) in writes {
            write_trb(&mut slot.ep0_mem, i, t)?;
        }
        self.ring_doorbell(slot_id, 1);
        let data_trb = if len > 0 { Some(addrs[1]) } else { None };
        let status_trb = *addrs.last().unwrap_or(&0);
        let mut moved = len;
        let start = self.env.now();
        let end = self.deadline(TIMEOUT_MS);
        let outcome = 'wait: loop {
            while let Some(t) = self.next_event() {
                match t.kind() {
                    trb_type::TRANSFER_EVENT if t.slot() == slot_id && t.endpoint_id() == 1 => {
                        let code = t.completion_code();
                        if Some(t.parameter) == data_trb {
                            if code == cc::SHORT_PACKET || code == cc::SUCCESS {
                                moved = len.saturating_sub(t.residual() as usize);
                                continue;
                            }
                            break 'wait Err(code);
                        }
                        if t.parameter == status_trb {
                            break 'wait if code == cc::SUCCESS {
                                Ok(())
                            } else {
                                Err(code)
                            };
                        }
                    }
                    trb_type::TRANSFER_EVENT => self.noted.push_back(Noted::Transfer(t)),
                    trb_type::PORT_STATUS_CHANGE => self.noted.push_back(Noted::Port(t.port())),
                    _ => {}
                }
            }
            self.update_erdp();
            if self.env.now() > end {
                break Err(0);
            }
            // Naps between looks, longer the longer it takes (`dma::pause_after`).
            pause_after(&self.env, self.env.now().wrapping_sub(start));
        };
        self.update_erdp();
        match outcome {
            Ok(()) => {
                if inward {
                    if let Some((b, _)) = data {
                        let slot = self.slots[usize::from(slot_id)]
                            .as_mut()
                            .ok_or(UsbError::Disconnected)?;
                        mem(slot.control_buf.read(0, &mut b[..moved]))?;
                    }
                }
                Ok(moved)
            }
            Err(code) => {
                // Endpoint 0 halts on an error too: reset it and skip the rest of the TD.
                let _ = self.command(Trb::reset_endpoint(slot_id, 1));
                if let Some(slot) = self.slots[usize::from(slot_id)].as_ref() {
                    let (deq, cycle) = (slot.ep0.enqueue_addr(), slot.ep0.cycle);
                    let _ = self.command(Trb::set_tr_dequeue(slot_id, 1, deq, cycle));
                }
                Err(if code == 0 {
                    UsbError::Timeout
                } else {
                    code_error(code)
                })
            }
        }
    }

    fn ctx_offset(&self, index: usize) -> u64 {
        (index * self.ctx_size) as u64
    }

    /// Writes the input context: Input Control Context (drop 0, `add` flags), then the
    /// slot context and endpoint contexts given by DCI.
    fn write_input(
        &mut self,
        slot_id: u8,
        add: u32,
        slot_ctx: [u32; 4],
        eps: &[(u8, [u32; 5])],
    ) -> Result<u64, UsbError> {
        let size = 33 * self.ctx_size;
        let offs: Vec<(u8, u64)> = eps
            .iter()
            .map(|(d, _)| (*d, self.ctx_offset(1 + usize::from(*d))))
            .collect();
        let slot_off = self.ctx_offset(1);
        let slot = self.slots[usize::from(slot_id)]
            .as_mut()
            .ok_or(UsbError::Disconnected)?;
        mem(slot.in_ctx.write(0, &vec![0u8; size]))?;
        mem(slot.in_ctx.write(0, &dwords(&[0, add])))?;
        mem(slot.in_ctx.write(slot_off, &dwords(&slot_ctx)))?;
        for ((_, ctx), (_, off)) in eps.iter().zip(offs) {
            mem(slot.in_ctx.write(off, &dwords(ctx)))?;
        }
        Ok(slot.in_ctx.bus_addr())
    }

    /// Port `port`'s PORTSC, with its change bits cleared.
    pub fn port_status(&mut self, port: u8) -> u32 {
        let v = self.read_op(op::portsc(port));
        if v & portsc::CHANGES != 0 {
            self.write_op(op::portsc(port), portsc::neutral(v, v & portsc::CHANGES));
        }
        v
    }

    /// The slot whose device sits on `port`.
    pub fn slot_on(&self, port: u8) -> Option<u8> {
        self.slots
            .iter()
            .position(|s| s.as_ref().is_some_and(|s| s.port == port))
            .map(|i| i as u8)
    }

    /// Resets `port` if it is not enabled yet (USB 2 ports need it; USB 3 ports enable
    /// themselves after link training, section 4.3.1), and returns the device's speed.
    fn reset_port(&mut self, port: u8) -> Result<Speed, String> {
        let mut v = self.read_op(op::portsc(port));
        if v & portsc::CCS == 0 {
            return Err("nothing connected".into());
        }
        if v & portsc::PED == 0 {
            self.write_op(op::portsc(port), portsc::neutral(v, portsc::PR));
            let start = self.env.now();
            let end = self.deadline(TIMEOUT_MS);
            loop {
                v = self.read_op(op::portsc(port));
                if v & portsc::PR == 0 && v & portsc::PED != 0 {
                    break;
                }
                if v & portsc::CCS == 0 {
                    return Err("device left during port reset".into());
                }
                if self.env.now() > end {
                    return Err(format!("port reset timed out (PORTSC {v:#x})"));
                }
                // Naps between looks, longer the longer it takes (`dma::pause_after`).
                pause_after(&self.env, self.env.now().wrapping_sub(start));
            }
            self.write_op(op::portsc(port), portsc::neutral(v, v & portsc::CHANGES));
            // USB 2.0 7.1.7.3: 10 ms reset recovery before the first request.
            self.delay_ms(10);
        }
        match portsc::speed(v) {
            1 => Ok(Speed::Full),
            2 => Ok(Speed::Low),
            3 => Ok(Speed::High),
            4 => Ok(Speed::Super),
            5 => Ok(Speed::SuperPlus),
            s => Err(format!("unknown port speed {s}")),
        }
    }

    /// Brings a newly connected device on `port` to the Addressed state: port reset,
    /// Enable Slot, Address Device (sections 4.3.2 to 4.3.4). Returns its slot.
    pub fn address(&mut self, port: u8) -> Result<(u8, Speed), String> {
        let speed = self.reset_port(port)?;
        let slot_id = self
            .command(Trb::enable_slot())
            .map_err(|e| format!("Enable Slot: {e}"))?;
        if slot_id == 0 || usize::from(slot_id) >= self.slots.len() {
            return Err(format!("Enable Slot gave slot {slot_id}"));
        }
        let alloc = |env: &E, c| {
            env.alloc(4096, c)
                .map_err(|_| String::from("no DMA memory"))
        };
        let slot = Slot {
            port,
            speed,
            out_ctx: alloc(&self.env, self.coherent)?,
            in_ctx: alloc(&self.env, self.coherent)?,
            ep0_mem: alloc(&self.env, self.coherent)?,
            ep0: ProducerRing::new(0),
            ep0_max: match speed {
                Speed::Low | Speed::Full => 8,
                Speed::High => 64,
                _ => 512,
            },
            control_buf: alloc(&self.env, self.coherent)?,
            endpoints: Vec::new(),
            function: None,
            generation: {
                self.generation = self.generation.wrapping_add(1);
                self.generation
            },
            context_entries: 1,
        };
        let (out, ring) = (slot.out_ctx.bus_addr(), slot.ep0_mem.bus_addr());
        let max0 = slot.ep0_max;
        self.slots[usize::from(slot_id)] = Some(Slot {
            ep0: ProducerRing::new(ring),
            ..slot
        });
        let dcbaa_at = u64::from(slot_id) * 8;
        if self.dcbaa.write(dcbaa_at, &out.to_le_bytes()).is_err() {
            return Err("DCBAA write failed".into());
        }
        let ep0 = spec::endpoint_context(4, max0, 0, 0, ring | 1, 8, 0);
        let sc = spec::slot_context(speed_id(speed), 1, port);
        let input = self
            .write_input(slot_id, 0b11, sc, &[(1, ep0)])
            .map_err(|e| format!("input context: {e}"))?;
        if let Err(e) = self.command(Trb::address_device(input, slot_id)) {
            self.release_slot(slot_id);
            return Err(format!("Address Device: {e}"));
        }
        Ok((slot_id, speed))
    }

    /// Disables `slot_id` and frees its rings and buffers (they go back to the pool once
    /// the controller has let go of them: if Disable Slot fails they are leaked, not
    /// reused). Every transfer still queued completes with [`UsbError::Disconnected`].
    /// Returns the function that was bound.
    pub fn release_slot(&mut self, slot_id: u8) -> Option<SharedFunction> {
        let disabled = self.command(Trb::disable_slot(slot_id)).is_ok();
        let _ = self.dcbaa.write(u64::from(slot_id) * 8, &[0u8; 8]);
        let slot = self.slots.get_mut(usize::from(slot_id))?.take()?;
        let function = slot.function.clone();
        let mut slot = slot;
        for ep in &mut slot.endpoints {
            for f in ep.in_flight.drain(..) {
                self.done.push_back((
                    slot_id,
                    Completion {
                        endpoint: ep.address,
                        id: f.id,
                        result: Err(UsbError::Disconnected),
                    },
                ));
            }
        }
        if !disabled {
            core::mem::forget(slot);
        }
        function
    }

    /// Binds `function` to `slot_id` if it still holds the device of `generation`.
    pub fn bind(&mut self, slot_id: u8, generation: u32, function: SharedFunction) -> bool {
        match self
            .slots
            .get_mut(usize::from(slot_id))
            .and_then(|s| s.as_mut())
        {
            Some(s) if s.generation == generation => {
                s.function = Some(function);
                true
            }
            _ => false,
        }
    }

    /// Completions of `slot_id` queued before its function was bound, and those of gone
    /// devices, handed over with their function (after [`Self::bind`]).
    pub fn generation(&self, slot_id: u8) -> Option<u32> {
        self.slots
            .get(usize::from(slot_id))
            .and_then(|s| s.as_ref())
            .map(|s| s.generation)
    }

    fn slot_mut(&mut self, slot_id: u8, generation: u32) -> Result<&mut Slot<E::Buf>, UsbError> {
        match self
            .slots
            .get_mut(usize::from(slot_id))
            .and_then(|s| s.as_mut())
        {
            Some(s) if s.generation == generation => Ok(s),
            _ => Err(UsbError::Disconnected),
        }
    }

    /// Evaluate Context with endpoint 0's new maximum packet size (section 4.6.7).
    fn set_ep0_max(&mut self, slot_id: u8, bytes: u16) -> Result<(), UsbError> {
        let slot = self.slots[usize::from(slot_id)]
            .as_mut()
            .ok_or(UsbError::Disconnected)?;
        if slot.ep0_max == bytes {
            return Ok(());
        }
        slot.ep0_max = bytes;
        let deq = slot.ep0.enqueue_addr() | u64::from(slot.ep0.cycle);
        let ep0 = spec::endpoint_context(4, bytes, 0, 0, deq, 8, 0);
        let (speed, port) = (slot.speed, slot.port);
        let sc = spec::slot_context(speed_id(speed), 1, port);
        let input = self.write_input(slot_id, 0b10, sc, &[(1, ep0)])?;
        self.command(Trb::evaluate_context(input, slot_id))
            .map(|_| ())
    }

    fn set_u1_u2(&mut self, slot_id: u8, u1: u8, u2: u8) -> Result<(), UsbError> {
        let port = self.slots[usize::from(slot_id)]
            .as_ref()
            .ok_or(UsbError::Disconnected)?
            .port;
        if !self
            .usb3
            .get(usize::from(port) - 1)
            .copied()
            .unwrap_or(false)
        {
            return Ok(());
        }
        // PORTPMSC of a USB 3 port (section 5.4.9.1): U1 Timeout 7:0, U2 Timeout 15:8.
        let at = op::portpmsc(port);
        let v = self.read_op(at);
        self.write_op(at, (v & !0xffff) | u32::from(u1) | (u32::from(u2) << 8));
        Ok(())
    }

    /// Configure Endpoint for one endpoint (section 4.6.6), with its transfer ring and
    /// `queue` buffers of `max_transfer` bytes.
    fn open(
        &mut self,
        slot_id: u8,
        generation: u32,
        e: &usb::Endpoint,
        queue: usize,
        max_transfer: usize,
    ) -> Result<(), UsbError> {
        if queue == 0 || queue > MAX_QUEUE || max_transfer == 0 || max_transfer > 64 << 10 {
            return Err(UsbError::Invalid(
                "endpoint queue or transfer size out of range",
            ));
        }
        if !matches!(e.kind(), EndpointKind::Bulk | EndpointKind::Interrupt) {
            return Err(UsbError::Invalid(
                "only bulk and interrupt endpoints are supported",
            ));
        }
        let d = dci(e.address);
        let stride = (max_transfer as u64).next_power_of_two().max(64);
        let ring_mem = mem(self.env.alloc(4096, self.coherent))?;
        // One extra stride so that an aligned run of `queue` buffers fits.
        let buffers = mem(self
            .env
            .alloc(stride * queue as u64 + stride, self.coherent))?;
        let offset = buffers.bus_addr().next_multiple_of(stride) - buffers.bus_addr();
        let ring = ProducerRing::new(ring_mem.bus_addr());
        let slot = self.slot_mut(slot_id, generation)?;
        if slot.endpoints.iter().any(|x| x.address == e.address) {
            return Err(UsbError::Invalid("endpoint already open"));
        }
        let speed = slot.speed;
        let entries = slot.context_entries.max(d);
        let interval = if e.kind() == EndpointKind::Interrupt {
            spec::interval(speed, e.interval)
        } else {
            0
        };
        let max_packet = e.max_packet;
        let esit = if e.kind() == EndpointKind::Interrupt {
            u32::from(max_packet) * (u32::from(e.max_burst) + 1)
        } else {
            0
        };
        let ctx = spec::endpoint_context(
            ep_type(e.kind(), e.is_in()),
            max_packet,
            e.max_burst,
            interval,
            ring.base | 1,
            if e.kind() == EndpointKind::Interrupt {
                max_packet
            } else {
                1024
            },
            esit,
        );
        let port = slot.port;
        let sc = spec::slot_context(speed_id(speed), u32::from(entries), port);
        let input = self.write_input(slot_id, 1 | (1 << d), sc, &[(d, ctx)])?;
        self.command(Trb::configure_endpoint(input, slot_id))?;
        let slot = self.slot_mut(slot_id, generation)?;
        slot.context_entries = entries;
        slot.endpoints.push(Endpoint {
            address: e.address,
            ring_mem,
            ring,
            buffers,
            offset,
            stride,
            max_transfer,
            free: (0..queue).rev().collect(),
            in_flight: Vec::new(),
        });
        Ok(())
    }

    fn submit(
        &mut self,
        slot_id: u8,
        generation: u32,
        endpoint: u8,
        out: Option<(&[u8], bool)>,
        length: usize,
    ) -> Result<TransferId, UsbError> {
        if self.dead {
            return Err(UsbError::Disconnected);
        }
        self.next_id = self.next_id.wrapping_add(1);
        let id = TransferId(self.next_id);
        let slot = self.slot_mut(slot_id, generation)?;
        let ep = slot
            .endpoints
            .iter_mut()
            .find(|e| e.address == endpoint)
            .ok_or(UsbError::Invalid("endpoint not open"))?;
        let inward = endpoint & 0x80 != 0;
        if inward == out.is_some() {
            return Err(UsbError::Invalid("direction does not match the endpoint"));
        }
        if length > ep.max_transfer {
            return Err(UsbError::TooLong);
        }
        let buffer = *ep.free.last().ok_or(UsbError::Busy)?;
        let at = ep.offset + buffer as u64 * ep.stride;
        let addr = ep.buffers.bus_addr() + at;
        let trbs = match out {
            Some((data, zlp)) => {
                mem(ep.buffers.write(at, data))?;
                if zlp {
                    vec![Trb::normal_quiet(addr, length as u32), Trb::normal(addr, 0)]
                } else {
                    vec![Trb::normal(addr, length as u32)]
                }
            }
            None => vec![Trb::normal(addr, length as u32)],
        };
        let (writes, addrs) = ep.ring.push_td(&trbs);
        for (i, t) in writes {
            write_trb(&mut ep.ring_mem, i, t)?;
        }
        ep.free.pop();
        ep.in_flight.push(InFlight {
            id,
            trbs: addrs,
            buffer,
            length,
            inward,
        });
        self.ring_doorbell(slot_id, dci(endpoint));
        Ok(id)
    }
}

/// The TRB's bytes into ring slot `index`: the first 12 bytes, then the control dword
/// with the cycle bit, so the controller never sees a new cycle bit over old fields.
fn write_trb<B: Dma>(ring: &mut B, index: u32, t: Trb) -> Result<(), UsbError> {
    let b = t.to_bytes();
    let at = u64::from(index) * 16;
    mem(ring.write(at, &b[..12]))?;
    mem(ring.write(at + 12, &b[12..]))
}

fn speed_id(s: Speed) -> u32 {
    match s {
        Speed::Full => 1,
        Speed::Low => 2,
        Speed::High => 3,
        Speed::Super => 4,
        Speed::SuperPlus => 5,
    }
}

fn code_error(code: u8) -> UsbError {
    match code {
        cc::STALL => UsbError::Stall,
        c => UsbError::Transfer(c),
    }
}

/// A controller shared by its interrupt handler, its devices' drivers and hot-plug.
pub type Shared<E> = Arc<Mutex<Xhci<E>>>;

/// One device's [`UsbBus`] (and [`EnumBus`] during enumeration).
pub struct DeviceBus<E: Env> {
    ctrl: Shared<E>,
    slot: u8,
    generation: u32,
}

impl<E: Env + Send + 'static> UsbBus for DeviceBus<E>
where
    E::Buf: Send,
{
    fn control_in(&mut self, setup: Setup, buf: &mut [u8]) -> Result<usize, UsbError> {
        let mut c = self.ctrl.lock();
        if c.generation(self.slot) != Some(self.generation) {
            return Err(UsbError::Disconnected);
        }
        c.control(self.slot, setup, Some((buf, true)))
    }

    fn control_out(&mut self, setup: Setup, data: &[u8]) -> Result<(), UsbError> {
        let mut c = self.ctrl.lock();
        if c.generation(self.slot) != Some(self.generation) {
            return Err(UsbError::Disconnected);
        }
        let mut copy = data.to_vec();
        let data = if copy.is_empty() {
            None
        } else {
            Some((&mut copy[..], false))
        };
        c.control(self.slot, setup, data).map(|_| ())
    }

    fn open(
        &mut self,
        endpoint: &usb::Endpoint,
        queue: usize,
        max_transfer: usize,
    ) -> Result<(), UsbError> {
        self.ctrl
            .lock()
            .open(self.slot, self.generation, endpoint, queue, max_transfer)
    }

    fn submit_in(&mut self, endpoint: u8, length: usize) -> Result<TransferId, UsbError> {
        self.ctrl
            .lock()
            .submit(self.slot, self.generation, endpoint, None, length)
    }

    fn submit_out(
        &mut self,
        endpoint: u8,
        data: &[u8],
        zero_packet: bool,
    ) -> Result<TransferId, UsbError> {
        self.ctrl.lock().submit(
            self.slot,
            self.generation,
            endpoint,
            Some((data, zero_packet)),
            data.len(),
        )
    }
}

/// [`EnumBus`] over a locked controller.
struct Enumerating<'a, E: Env> {
    ctrl: &'a mut Xhci<E>,
    slot: u8,
}

impl<E: Env> EnumBus for Enumerating<'_, E> {
    fn control_in(&mut self, setup: Setup, buf: &mut [u8]) -> Result<usize, UsbError> {
        self.ctrl.control(self.slot, setup, Some((buf, true)))
    }

    fn control_out(&mut self, setup: Setup, data: &[u8]) -> Result<(), UsbError> {
        let mut copy = data.to_vec();
        let data = if copy.is_empty() {
            None
        } else {
            Some((&mut copy[..], false))
        };
        self.ctrl.control(self.slot, setup, data).map(|_| ())
    }

    fn set_ep0_max_packet(&mut self, bytes: u16) -> Result<(), UsbError> {
        self.ctrl.set_ep0_max(self.slot, bytes)
    }

    fn set_u1_u2_timeouts(&mut self, u1: u8, u2: u8) -> Result<(), UsbError> {
        self.ctrl.set_u1_u2(self.slot, u1, u2)
    }
}

/// Takes the controller's events and runs what they call for, with the controller's lock
/// released whenever a class driver runs: completions to their functions, deferred work
/// (frames to the switch), port changes (disconnect: teardown; connect: enumeration and
/// probing). Called from the interrupt handler, and by anyone polling.
pub fn service<E: Env + Send + 'static>(ctrl: &Shared<E>)
where
    E::Buf: Send,
{
    for _ in 0..64 {
        let (completions, ports) = {
            let mut c = ctrl.lock();
            c.drain();
            (c.take_completions(), c.take_port_changes())
        };
        if completions.is_empty() && ports.is_empty() {
            return;
        }
        for (f, c) in completions {
            let mut later = Vec::new();
            f.lock().completed(c, &mut later);
            for job in later {
                job();
            }
        }
        for p in ports {
            port_changed(ctrl, p);
        }
    }
}

/// A port's status changed: tear down what was on it if it is gone (or was replaced),
/// enumerate what is on it now.
pub fn port_changed<E: Env + Send + 'static>(ctrl: &Shared<E>, port: u8)
where
    E::Buf: Send,
{
    let (status, old, name) = {
        let mut c = ctrl.lock();
        let v = c.port_status(port);
        (v, c.slot_on(port), c.name.clone())
    };
    let connected = status & portsc::CCS != 0;
    // A connect change with a device still bound means it was replaced.
    if let Some(slot) = old {
        if !connected || status & portsc::CSC != 0 {
            detach(ctrl, slot, port, &name);
        } else {
            return;
        }
    }
    if connected {
        attach(ctrl, port, &name);
    }
}

fn detach<E: Env + Send + 'static>(ctrl: &Shared<E>, slot: u8, port: u8, name: &str)
where
    E::Buf: Send,
{
    let (function, completions) = {
        let mut c = ctrl.lock();
        let f = c.release_slot(slot);
        // Completions of the gone device: to its function directly.
        let mut mine = Vec::new();
        c.done.retain(|(s, comp)| {
            if *s == slot {
                mine.push(comp.clone());
                false
            } else {
                true
            }
        });
        (f, mine)
    };
    log!("[hv] usb {name} port {port}: device disconnected, slot {slot} disabled");
    if let Some(f) = function {
        let mut later = Vec::new();
        {
            let mut f = f.lock();
            for c in completions {
                f.completed(c, &mut later);
            }
            f.disconnected(&mut later);
        }
        for job in later {
            job();
        }
    }
}

fn attach<E: Env + Send + 'static>(ctrl: &Shared<E>, port: u8, name: &str)
where
    E::Buf: Send,
{
    let drivers = &usb::USB_DRIVERS[..];
    let enumerated = {
        let mut c = ctrl.lock();
        match c.address(port) {
            Err(e) => Err(e),
            Ok((slot, speed)) => {
                let generation = c.generation(slot).unwrap_or(0);
                let board = c.board;
                let quirks_of = |v: u16, p: u16| match board {
                    Some(b) => usb::quirks_for(&hypervisor::plugin::QUIRKS, b, v, p),
                    None => Vec::new(),
                };
                let policy = |d: &usb::DeviceDescriptor| {
                    usb::UsbPolicy::from_quirks(
                        quirks_of(d.vendor, d.product).iter().map(|q| &q.data),
                    )
                };
                let mut bus = Enumerating { ctrl: &mut c, slot };
                match usb::enumerate(&mut bus, speed, port, &policy, drivers) {
                    Ok(info) => {
                        let quirks = quirks_of(info.device.vendor, info.device.product);
                        Ok((slot, generation, info, quirks))
                    }
                    Err(e) => {
                        c.release_slot(slot);
                        Err(format!("enumeration failed: {e}"))
                    }
                }
            }
        }
    };
    let (slot, generation, info, quirks) = match enumerated {
        Ok(x) => x,
        Err(e) => {
            log!("[hv] usb {name} port {port}: {e}");
            return;
        }
    };
    let d = &info.device;
    let cfg = info.configuration();
    let dev_name = format!("{:04x}:{:04x} port {port}", d.vendor, d.product);
    log!(
        "[hv] usb {name} port {port}: {:04x}:{:04x} {}, slot {slot}, configuration {} of {} ({} interface(s)){}{}",
        d.vendor,
        d.product,
        info.speed.name(),
        cfg.value,
        info.configurations.len(),
        cfg.num_interfaces,
        if quirks.is_empty() { String::new() } else {
            format!(", quirks {}", quirks.iter().map(|q| q.name).collect::<Vec<_>>().join(","))
        },
        if info.speed.is_super() { if info.lpm { ", U1/U2 on" } else { ", U1/U2 off" } } else { "" }
    );
    let Some((drv, interface)) = usb::match_usb_driver(drivers, &info) else {
        log!("[hv] usb {name} port {port}: no driver for {dev_name} (not used)");
        return;
    };
    let bus = Box::new(DeviceBus {
        ctrl: ctrl.clone(),
        slot,
        generation,
    });
    let probe = usb::UsbProbe {
        info: &info,
        interface,
        bus,
        quirks: &quirks,
        name: &dev_name,
    };
    match (drv.probe)(probe) {
        Ok(function) => {
            log!("[hv] usb {name} port {port}: driver {}", drv.name);
            if !ctrl.lock().bind(slot, generation, function.clone()) {
                // Unplugged while probing.
                let mut later = Vec::new();
                function.lock().disconnected(&mut later);
                for job in later {
                    job();
                }
            }
        }
        Err(e) => log!(
            "[hv] usb {name} port {port}: driver {} failed: {e}",
            drv.name
        ),
    }
}

/// Probes every connected root port (bring-up; later connections come as Port Status
/// Change events).
pub fn scan<E: Env + Send + 'static>(ctrl: &Shared<E>)
where
    E::Buf: Send,
{
    let ports = ctrl.lock().ports();
    let name = ctrl.lock().name.clone();
    for p in 1..=ports {
        let connected = ctrl.lock().port_status(p) & portsc::CCS != 0;
        if connected {
            attach(ctrl, p, &name);
        }
    }
    // Changes the scan itself caused (port resets) are consumed.
    let _ = ctrl.lock().take_port_changes();
    service(ctrl);
}
