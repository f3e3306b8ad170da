//! One 82574 brought up and run: reset, MAC address, the receive ring kept full of 2 KiB
//! buffers, the transmit ring with completions reclaimed, and the interrupt cause read that
//! tells the handler what happened. Register access is behind [`Regs`] and DMA behind
//! [`Env`], so all of it runs in host tests against a fake 82574.
//!
//! Receive uses legacy descriptors: RFCTL.EXSTEN is 0 after reset and stays 0, and RCTL.DTYP
//! is 00, which selects them (82574 datasheet 7.1.4 "Receive Descriptor Format" and 10.2.5.5;
//! QEMU's e1000e model follows the same rule, `e1000e_rx_use_legacy_descriptor`). Nothing
//! the device writes back is trusted: a length of zero or beyond the buffer, a frame that
//! spans descriptors (never, with 2 KiB buffers and long packets off) or one with an error
//! bit is dropped and counted in [`Counters`].

use crate::spec::{
    self, ctrl, eerd, int, rctl, reg, rx_status, status, tctl, tx, RxDesc, DESC_SIZE, RX_BUF,
};
use alloc::vec;
use alloc::vec::Vec;
use core::ptr::NonNull;
use hypervisor::dma::{Dma, DmaError, Env};
use hypervisor::net::uplink::{UplinkDevice, UplinkError};
use hypervisor::net::{MacAddr, MAX_FRAME};
use safe_mmio::fields::ReadWrite;
use safe_mmio::UniqueMmioPointer;

/// Receive descriptors (a multiple of 8: RDLEN must be a multiple of 128 bytes, 10.2.5.8).
pub const RX_RING: usize = 64;
/// Transmit descriptors (TDLEN likewise, 10.2.6.7).
pub const TX_RING: usize = 64;
/// Bytes of each transmit buffer.
const TX_BUF: usize = 2048;
/// How long CTRL.RST may take to clear (the datasheet asks for 1 ms after setting it
/// before any register access, 10.2.2.1; give it far more).
const RESET_TIMEOUT_MS: u64 = 100;
/// How long one EEPROM word read may take.
const EERD_TIMEOUT_MS: u64 = 10;

/// The 82574's registers, as 32-bit accesses by byte offset in BAR 0.
pub trait Regs: Send {
    /// Reads the register at `offset`.
    fn read(&mut self, offset: u32) -> u32;
    /// Writes the register at `offset`.
    fn write(&mut self, offset: u32, value: u32);
}

/// The real registers: BAR 0 through `safe-mmio`.
pub struct Mmio(UniqueMmioPointer<'static, [ReadWrite<u32>]>);

impl Mmio {
    /// The register block at `base`, `size` bytes.
    ///
    /// # Safety
    ///
    /// `[base, base + size)` must be the 82574's BAR 0, assigned and enabled by its host
    /// bridge, inside a window the EL2 page tables map as device memory for the rest of the
    /// program, and nothing else may access it while the returned value exists.
    pub unsafe fn new(base: NonNull<ReadWrite<u32>>, size: usize) -> Self {
        // SAFETY: the caller's contract is `UniqueMmioPointer::new`'s: valid, aligned,
        // device-mapped, unaliased.
        Self(unsafe { UniqueMmioPointer::new(NonNull::slice_from_raw_parts(base, size / 4)) })
    }
}

impl Regs for Mmio {
    fn read(&mut self, offset: u32) -> u32 {
        self.0
            .get(offset as usize / 4)
            .map_or(u32::MAX, |mut r| r.read())
    }

    fn write(&mut self, offset: u32, value: u32) {
        if let Some(mut r) = self.0.get(offset as usize / 4) {
            r.write(value);
        }
    }
}

/// Why bring-up failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitError {
    /// CTRL.RST did not clear.
    ResetTimeout,
    /// Neither RAL0/RAH0 nor the EEPROM holds a usable MAC address.
    NoMac,
    /// No DMA memory.
    Memory,
}

impl InitError {
    /// For the console.
    pub fn message(self) -> &'static str {
        match self {
            Self::ResetTimeout => "CTRL.RST did not clear within 100 ms",
            Self::NoMac => "no unicast MAC address in RAL0/RAH0 or the EEPROM",
            Self::Memory => "no DMA memory left in the RAM pool",
        }
    }
}

/// What the driver dropped or refused, for the console and the tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Frames received and handed on.
    pub rx_frames: u64,
    /// Descriptors whose length was zero or beyond the buffer.
    pub rx_bad_length: u64,
    /// Frames with an error bit, or spanning descriptors.
    pub rx_errors: u64,
    /// Frames queued for transmission.
    pub tx_frames: u64,
    /// Transmit descriptors the device completed.
    pub tx_completed: u64,
    /// DMA copies that failed (never, unless the pool's buffers are broken).
    pub dma_errors: u64,
}

/// What one interrupt brought.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Serviced {
    /// The interrupt was this NIC's (ICR was not zero).
    pub ours: bool,
    /// Frames received, to hand to the uplink with the NIC's lock released.
    pub frames: Vec<Vec<u8>>,
    /// The link state, if it changed (LSC).
    pub link: Option<bool>,
}

/// One 82574.
pub struct E1000e<E: Env, R: Regs> {
    regs: R,
    mac: MacAddr,
    rx_ring: E::Buf,
    rx_bufs: E::Buf,
    tx_ring: E::Buf,
    tx_bufs: E::Buf,
    /// Next receive descriptor the device fills.
    rx_next: usize,
    /// A frame spanning descriptors is being dropped up to its EOP.
    rx_discarding: bool,
    /// Next free transmit descriptor.
    tx_tail: usize,
    /// Oldest transmit descriptor not yet reclaimed.
    tx_clean: usize,
    link: bool,
    /// Counters.
    pub counters: Counters,
    _env: E,
}

use hypervisor::dma::wait_until as wait;

impl<E: Env, R: Regs> E1000e<E, R> {
    /// Resets the NIC and brings it up: interrupts masked during init, MAC read, rings set
    /// up, receiver promiscuous (the virtual switch forwards frames for the VMs' MACs),
    /// transmitter enabled; then RXT0, RXO, RXDMT0 and LSC unmasked (finished transmit
    /// descriptors are reclaimed by the next transmit, or any interrupt).
    pub fn new(env: E, mut regs: R, coherent: bool) -> Result<Self, InitError> {
        // 82574 datasheet 4.6.1 (initialization sequence) and 14.5 (software reset): mask
        // all interrupts, reset, mask again (the reset unmasks nothing, but a pending cause
        // would survive), read ICR to clear what is pending.
        regs.write(reg::IMC, u32::MAX);
        let c = regs.read(reg::CTRL);
        regs.write(reg::CTRL, c | ctrl::RST);
        if !wait(&env, RESET_TIMEOUT_MS, || {
            regs.read(reg::CTRL) & ctrl::RST == 0
        }) {
            return Err(InitError::ResetTimeout);
        }
        regs.write(reg::IMC, u32::MAX);
        let _ = regs.read(reg::ICR);
        // Link: set link up, auto-speed (4.6.7.1: with the internal PHY, SLU and ASDE).
        let c = regs.read(reg::CTRL);
        regs.write(reg::CTRL, c | ctrl::SLU | ctrl::ASDE | ctrl::FD);

        let mac = match spec::mac_from_ra(regs.read(reg::RAL0), regs.read(reg::RAH0)) {
            Some(m) => m,
            None => {
                let mut words = [0u16; 3];
                for (i, w) in words.iter_mut().enumerate() {
                    *w = eeprom_read(&env, &mut regs, i as u32).ok_or(InitError::NoMac)?;
                }
                let m = spec::mac_from_eeprom(words).ok_or(InitError::NoMac)?;
                // Program it, so that the receive filter (and a later reset) has it.
                regs.write(reg::RAL0, u32::from_le_bytes([m[0], m[1], m[2], m[3]]));
                regs.write(reg::RAH0, u32::from_le_bytes([m[4], m[5], 0, 0x80]));
                m
            }
        };

        let alloc = |size: usize| {
            env.alloc(size as u64, coherent)
                .map_err(|DmaError| InitError::Memory)
        };
        let mut rx_ring = alloc(RX_RING * DESC_SIZE)?;
        let rx_bufs = alloc(RX_RING * RX_BUF)?;
        let tx_ring = alloc(TX_RING * DESC_SIZE)?;
        let tx_bufs = alloc(TX_RING * TX_BUF)?;
        for i in 0..RX_RING {
            let d = RxDesc::fresh(rx_bufs.bus_addr() + (i * RX_BUF) as u64);
            rx_ring
                .write((i * DESC_SIZE) as u64, &d)
                .map_err(|DmaError| InitError::Memory)?;
        }

        // Multicast table cleared (multicast promiscuous makes it moot, but its reset value
        // is undefined, 10.2.5.15).
        for i in 0..128 {
            regs.write(reg::MTA + 4 * i, 0);
        }
        // Receive (4.6.5): ring, no delay timers (an interrupt per frame), then enable.
        let (lo, hi) = split(rx_ring.bus_addr());
        regs.write(reg::RDBAL, lo);
        regs.write(reg::RDBAH, hi);
        regs.write(reg::RDLEN, (RX_RING * DESC_SIZE) as u32);
        regs.write(reg::RDH, 0);
        // Every descriptor but one belongs to the device: head == tail means empty.
        regs.write(reg::RDT, (RX_RING - 1) as u32);
        regs.write(reg::RDTR, 0);
        regs.write(reg::RADV, 0);
        regs.write(reg::ITR, 0);
        regs.write(reg::RFCTL, 0); // EXSTEN off: legacy descriptors (module doc).
        regs.write(
            reg::RCTL,
            rctl::EN | rctl::UPE | rctl::MPE | rctl::BAM | rctl::SECRC | rctl::BSIZE_2048,
        );
        // Transmit (4.6.6).
        let (lo, hi) = split(tx_ring.bus_addr());
        regs.write(reg::TDBAL, lo);
        regs.write(reg::TDBAH, hi);
        regs.write(reg::TDLEN, (TX_RING * DESC_SIZE) as u32);
        regs.write(reg::TDH, 0);
        regs.write(reg::TDT, 0);
        regs.write(reg::TIPG, spec::TIPG_COPPER);
        regs.write(
            reg::TCTL,
            tctl::EN | tctl::PSP | tctl::CT_15 | tctl::COLD_FD,
        );
        let link = regs.read(reg::STATUS) & status::LU != 0;
        regs.write(reg::IMS, int::ENABLED);
        Ok(Self {
            regs,
            mac: MacAddr(mac),
            rx_ring,
            rx_bufs,
            tx_ring,
            tx_bufs,
            rx_next: 0,
            rx_discarding: false,
            tx_tail: 0,
            tx_clean: 0,
            link,
            counters: Counters::default(),
            _env: env,
        })
    }

    /// The NIC's MAC address.
    pub fn mac(&self) -> MacAddr {
        self.mac
    }

    /// STATUS.LU as last seen.
    pub fn link_up(&self) -> bool {
        self.link
    }

    /// The interrupt handler's work: reads ICR (which clears it and lowers the INTx line),
    /// and if the interrupt was this NIC's, takes the received frames, reclaims finished
    /// transmissions and looks at the link on LSC. A shared line's other device's interrupt
    /// reads ICR as zero and changes nothing.
    pub fn service(&mut self) -> Serviced {
        let icr = self.regs.read(reg::ICR);
        if icr == 0 || icr == u32::MAX {
            return Serviced::default();
        }
        let mut out = Serviced {
            ours: true,
            ..Serviced::default()
        };
        if icr & int::LSC != 0 {
            let up = self.regs.read(reg::STATUS) & status::LU != 0;
            if up != self.link {
                self.link = up;
                out.link = Some(up);
            }
        }
        self.reclaim_tx();
        out.frames = self.drain_rx();
        out
    }

    /// Takes every frame the device finished (at most one ring's worth), gives each
    /// descriptor back with a fresh buffer address and moves RDT behind them.
    pub fn drain_rx(&mut self) -> Vec<Vec<u8>> {
        let mut frames = Vec::new();
        let mut returned = None;
        for _ in 0..RX_RING {
            let i = self.rx_next;
            let mut raw = [0u8; DESC_SIZE];
            if self.rx_ring.read((i * DESC_SIZE) as u64, &mut raw).is_err() {
                self.counters.dma_errors += 1;
                break;
            }
            let d = RxDesc::decode(&raw);
            if d.status & rx_status::DD == 0 {
                break;
            }
            let len = usize::from(d.length);
            let eop = d.status & rx_status::EOP != 0;
            if !eop || self.rx_discarding {
                // Part of a frame longer than one buffer: drop it all, through its EOP.
                if !self.rx_discarding {
                    self.counters.rx_errors += 1;
                }
                self.rx_discarding = !eop;
            } else if len == 0 || len > MAX_FRAME.min(RX_BUF) {
                self.counters.rx_bad_length += 1;
            } else if d.errors != 0 {
                self.counters.rx_errors += 1;
            } else {
                let mut f = vec![0u8; len];
                if self.rx_bufs.read((i * RX_BUF) as u64, &mut f).is_ok() {
                    self.counters.rx_frames += 1;
                    frames.push(f);
                } else {
                    self.counters.dma_errors += 1;
                }
            }
            let fresh = RxDesc::fresh(self.rx_bufs.bus_addr() + (i * RX_BUF) as u64);
            if self.rx_ring.write((i * DESC_SIZE) as u64, &fresh).is_err() {
                self.counters.dma_errors += 1;
            }
            returned = Some(i);
            self.rx_next = (i + 1) % RX_RING;
        }
        if let Some(i) = returned {
            // The descriptor just processed is the new tail: the device may fill up to it.
            self.regs.write(reg::RDT, i as u32);
        }
        frames
    }

    /// Reclaims transmit descriptors the device wrote back (DD).
    fn reclaim_tx(&mut self) {
        while self.tx_clean != self.tx_tail {
            let mut raw = [0u8; DESC_SIZE];
            if self
                .tx_ring
                .read((self.tx_clean * DESC_SIZE) as u64, &mut raw)
                .is_err()
            {
                self.counters.dma_errors += 1;
                return;
            }
            if spec::tx_status(&raw) & tx::DD == 0 {
                return;
            }
            self.counters.tx_completed += 1;
            self.tx_clean = (self.tx_clean + 1) % TX_RING;
        }
    }

    /// Descriptors queued and not yet reclaimed.
    pub fn tx_in_flight(&self) -> usize {
        (self.tx_tail + TX_RING - self.tx_clean) % TX_RING
    }
}

impl<E: Env + Send, R: Regs> UplinkDevice for E1000e<E, R> {
    fn transmit(&mut self, frame: &[u8]) -> Result<(), UplinkError> {
        if frame.len() > MAX_FRAME {
            return Err(UplinkError::TooLong);
        }
        if frame.is_empty() {
            return Err(UplinkError::Hardware("empty frame"));
        }
        self.reclaim_tx();
        // One descriptor stays free: TDT == TDH means the ring is empty (7.2.10).
        if self.tx_in_flight() >= TX_RING - 1 {
            return Err(UplinkError::QueueFull);
        }
        let i = self.tx_tail;
        let addr = self.tx_bufs.bus_addr() + (i * TX_BUF) as u64;
        let ok = self.tx_bufs.write((i * TX_BUF) as u64, frame).is_ok()
            && self
                .tx_ring
                .write(
                    (i * DESC_SIZE) as u64,
                    &spec::tx_desc(addr, frame.len() as u16),
                )
                .is_ok();
        if !ok {
            self.counters.dma_errors += 1;
            return Err(UplinkError::Hardware("DMA copy failed"));
        }
        self.tx_tail = (i + 1) % TX_RING;
        self.counters.tx_frames += 1;
        self.regs.write(reg::TDT, self.tx_tail as u32);
        Ok(())
    }
}

fn split(a: u64) -> (u32, u32) {
    (a as u32, (a >> 32) as u32)
}

/// Reads EEPROM word `addr` through EERD (10.2.2.5).
fn eeprom_read<E: Env, R: Regs>(env: &E, regs: &mut R, addr: u32) -> Option<u16> {
    regs.write(reg::EERD, (addr << eerd::ADDR_SHIFT) | eerd::START);
    let mut v = 0;
    let done = wait(env, EERD_TIMEOUT_MS, || {
        v = regs.read(reg::EERD);
        v & eerd::DONE != 0
    });
    done.then_some((v >> eerd::DATA_SHIFT) as u16)
}

#[cfg(test)]
mod tests {
    use super::*;
    use plugin_test_support::dma::FakeEnv;
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    const QEMU_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];

    /// A fake 82574: the registers the driver uses, legacy RX/TX descriptor processing
    /// through the fake DMA environment, ICR clear-on-read, IMS/IMC, EERD, CTRL.RST.
    #[derive(Default)]
    struct Dev {
        regs: BTreeMap<u32, u32>,
        env: Option<FakeEnv>,
        ims: u32,
        icr: u32,
        /// MAC the reset puts in RAL0/RAH0 (QEMU does); `None`: RA stays zero.
        ra_mac: Option<[u8; 6]>,
        eeprom: [u16; 3],
        stuck_reset: bool,
        /// The device does not process TDT writes (a stalled transmitter).
        tx_stalled: bool,
        sent: Vec<Vec<u8>>,
        /// Every register write, in order.
        log: Vec<(u32, u32)>,
    }

    impl Dev {
        fn reg(&self, off: u32) -> u32 {
            self.regs.get(&off).copied().unwrap_or(0)
        }

        fn reset(&mut self) {
            self.regs.clear();
            self.icr = 0;
            self.ims = 0;
            self.regs.insert(reg::STATUS, status::LU);
            if let Some(m) = self.ra_mac {
                self.regs
                    .insert(reg::RAL0, u32::from_le_bytes([m[0], m[1], m[2], m[3]]));
                self.regs
                    .insert(reg::RAH0, u32::from_le_bytes([m[4], m[5], 0, 0x80]));
            }
            if self.stuck_reset {
                self.regs.insert(reg::CTRL, ctrl::RST);
            }
        }

        fn env(&self) -> &FakeEnv {
            self.env.as_ref().unwrap()
        }

        fn desc_addr(&self, base: u32, i: u32) -> u64 {
            let b = u64::from(self.reg(base)) | (u64::from(self.reg(base + 4)) << 32);
            b + u64::from(i) * DESC_SIZE as u64
        }

        fn run_tx(&mut self) {
            let n = self.reg(reg::TDLEN) / DESC_SIZE as u32;
            while !self.tx_stalled && self.reg(reg::TDH) != self.reg(reg::TDT) {
                let h = self.reg(reg::TDH);
                let at = self.desc_addr(reg::TDBAL, h);
                let mut d = [0u8; DESC_SIZE];
                self.env().device_read(at, &mut d).unwrap();
                let addr = u64::from_le_bytes(d[0..8].try_into().unwrap());
                let len = u16::from_le_bytes([d[8], d[9]]) as usize;
                assert_eq!(d[11], tx::EOP | tx::IFCS | tx::RS, "command bits");
                let mut f = vec![0u8; len];
                self.env().device_read(addr, &mut f).unwrap();
                self.sent.push(f);
                self.env().device_write(at + 12, &[tx::DD]).unwrap();
                self.regs.insert(reg::TDH, (h + 1) % n);
                self.icr |= int::TXDW;
            }
        }

        /// Writes a received descriptor: `data` into its buffer, `len`, `status`, `errors`.
        /// False when the ring has no descriptor for it (RDH == RDT: overrun).
        fn receive_raw(&mut self, data: &[u8], len: u16, status: u8, errors: u8) -> bool {
            if self.reg(reg::RCTL) & rctl::EN == 0 {
                return false;
            }
            let n = self.reg(reg::RDLEN) / DESC_SIZE as u32;
            let h = self.reg(reg::RDH);
            if h == self.reg(reg::RDT) {
                self.icr |= int::RXO;
                return false;
            }
            let at = self.desc_addr(reg::RDBAL, h);
            let mut d = [0u8; DESC_SIZE];
            self.env().device_read(at, &mut d).unwrap();
            let addr = u64::from_le_bytes(d[0..8].try_into().unwrap());
            assert_eq!(
                d[12], 0,
                "descriptor given to the device with its DD still set"
            );
            self.env().device_write(addr, data).unwrap();
            d[8..10].copy_from_slice(&len.to_le_bytes());
            d[12] = status;
            d[13] = errors;
            self.env().device_write(at, &d).unwrap();
            self.regs.insert(reg::RDH, (h + 1) % n);
            self.icr |= int::RXT0;
            true
        }

        fn receive(&mut self, frame: &[u8]) -> bool {
            self.receive_raw(frame, frame.len() as u16, rx_status::DD | rx_status::EOP, 0)
        }

        fn set_link(&mut self, up: bool) {
            let s = self.reg(reg::STATUS) & !status::LU;
            self.regs
                .insert(reg::STATUS, s | if up { status::LU } else { 0 });
            self.icr |= int::LSC;
        }

        /// The INTx line.
        fn irq(&self) -> bool {
            self.icr & self.ims != 0
        }
    }

    #[derive(Clone)]
    struct Fake(Arc<Mutex<Dev>>);

    impl Regs for Fake {
        fn read(&mut self, off: u32) -> u32 {
            let mut d = self.0.lock().unwrap();
            match off {
                reg::ICR => core::mem::take(&mut d.icr),
                reg::IMS => d.ims,
                _ => d.reg(off),
            }
        }

        fn write(&mut self, off: u32, v: u32) {
            let mut d = self.0.lock().unwrap();
            d.log.push((off, v));
            match off {
                reg::CTRL if v & ctrl::RST != 0 => d.reset(),
                reg::IMS => d.ims |= v,
                reg::IMC => d.ims &= !v,
                reg::EERD => {
                    let a = (v >> eerd::ADDR_SHIFT) as usize & 0x3fff;
                    let w = d.eeprom.get(a).copied().unwrap_or(0xffff);
                    d.regs.insert(
                        reg::EERD,
                        v | eerd::DONE | (u32::from(w) << eerd::DATA_SHIFT),
                    );
                }
                reg::TDT => {
                    d.regs.insert(off, v);
                    d.run_tx();
                }
                _ => {
                    d.regs.insert(off, v);
                }
            }
        }
    }

    fn setup_with(dev: Dev) -> (FakeEnv, Fake, Result<E1000e<FakeEnv, Fake>, InitError>) {
        let env = FakeEnv::new();
        let fake = Fake(Arc::new(Mutex::new(Dev {
            env: Some(env.clone()),
            ..dev
        })));
        let nic = E1000e::new(env.clone(), fake.clone(), false);
        (env, fake, nic)
    }

    fn setup() -> (Fake, E1000e<FakeEnv, Fake>) {
        let (_, fake, nic) = setup_with(Dev {
            ra_mac: Some(QEMU_MAC),
            ..Dev::default()
        });
        (fake, nic.unwrap())
    }

    fn frame(n: usize, len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + n * 13) as u8).collect()
    }

    #[test]
    fn bring_up_resets_with_interrupts_masked_and_programs_promiscuous_legacy_rings() {
        let (fake, nic) = setup();
        assert_eq!(nic.mac(), MacAddr(QEMU_MAC));
        assert!(nic.link_up());
        let d = fake.0.lock().unwrap();
        // Everything masked before the reset, nothing unmasked before the rings are set.
        let pos = |off: u32| d.log.iter().position(|(o, _)| *o == off).unwrap();
        assert_eq!(d.log[0], (reg::IMC, u32::MAX));
        assert!(pos(reg::IMC) < pos(reg::CTRL));
        assert_eq!(d.log.last(), Some(&(reg::IMS, int::ENABLED)));
        assert_eq!(d.ims, int::ENABLED);
        let rctl_v = d.reg(reg::RCTL);
        for bit in [rctl::EN, rctl::UPE, rctl::MPE, rctl::BAM, rctl::SECRC] {
            assert_ne!(rctl_v & bit, 0, "RCTL bit {bit:#x}");
        }
        assert_eq!(rctl_v & (3 << 10), 0, "RCTL.DTYP legacy");
        assert_eq!(rctl_v & (3 << 16 | 1 << 25), 0, "2048-byte buffers");
        assert_eq!(
            d.reg(reg::RFCTL),
            0,
            "RFCTL.EXSTEN off: legacy RX descriptors"
        );
        assert_eq!(d.reg(reg::RDLEN), (RX_RING * DESC_SIZE) as u32);
        assert_eq!(d.reg(reg::RDLEN) % 128, 0);
        assert_eq!(d.reg(reg::RDT), RX_RING as u32 - 1);
        assert_eq!(d.reg(reg::TDLEN), (TX_RING * DESC_SIZE) as u32);
        assert_ne!(d.reg(reg::TCTL) & tctl::EN, 0);
        assert_ne!(d.reg(reg::CTRL) & ctrl::SLU, 0);
    }

    #[test]
    fn the_mac_falls_back_to_the_eeprom_and_bring_up_failures_are_reported() {
        let (_, fake, nic) = setup_with(Dev {
            eeprom: [0x5452, 0x1200, 0x5634],
            ..Dev::default()
        });
        assert_eq!(nic.unwrap().mac(), MacAddr(QEMU_MAC));
        // Programmed into RAL0/RAH0 with Address Valid.
        let d = fake.0.lock().unwrap();
        assert_eq!(
            spec::mac_from_ra(d.reg(reg::RAL0), d.reg(reg::RAH0)),
            Some(QEMU_MAC)
        );
        drop(d);
        let (_, _, nic) = setup_with(Dev {
            eeprom: [0xffff; 3],
            ..Dev::default()
        });
        assert_eq!(nic.err(), Some(InitError::NoMac));
        let (_, _, nic) = setup_with(Dev {
            ra_mac: Some(QEMU_MAC),
            stuck_reset: true,
            ..Dev::default()
        });
        assert_eq!(nic.err(), Some(InitError::ResetTimeout));
        let env = FakeEnv::new();
        env.fail_allocations_after(2);
        let fake = Fake(Arc::new(Mutex::new(Dev {
            env: Some(env.clone()),
            ra_mac: Some(QEMU_MAC),
            ..Dev::default()
        })));
        assert_eq!(
            E1000e::new(env.clone(), fake, false).err(),
            Some(InitError::Memory)
        );
        assert_eq!(env.allocated(), 0, "partial allocations given back");
    }

    #[test]
    fn received_frames_come_out_in_order_across_ring_wraparound() {
        let (fake, mut nic) = setup();
        let mut n = 0;
        for round in 0..5 {
            // Batches of uneven size so that the ring index wraps at every position.
            let batch = 13 + round * 7;
            for _ in 0..batch {
                assert!(fake.0.lock().unwrap().receive(&frame(n, 60 + n % 1400)));
                n += 1;
            }
            assert!(fake.0.lock().unwrap().irq());
            let s = nic.service();
            assert!(s.ours);
            assert!(!fake.0.lock().unwrap().irq(), "ICR read lowers the line");
            assert_eq!(s.frames.len(), batch);
            for (k, f) in s.frames.iter().enumerate() {
                let m = n - batch + k;
                assert_eq!(f, &frame(m, 60 + m % 1400));
            }
            // RDT trails the next descriptor the driver will look at by one.
            let d = fake.0.lock().unwrap();
            assert_eq!(
                d.reg(reg::RDT) as usize,
                (nic.rx_next + RX_RING - 1) % RX_RING
            );
        }
        assert!(n > 2 * RX_RING);
        assert_eq!(nic.counters.rx_frames, n as u64);
    }

    #[test]
    fn a_full_ring_overruns_and_recovers_once_drained() {
        let (fake, mut nic) = setup();
        for i in 0..RX_RING - 1 {
            assert!(fake.0.lock().unwrap().receive(&frame(i, 100)));
        }
        assert!(
            !fake.0.lock().unwrap().receive(&frame(99, 100)),
            "ring full"
        );
        assert_eq!(nic.service().frames.len(), RX_RING - 1);
        assert!(fake.0.lock().unwrap().receive(&frame(100, 100)));
        assert_eq!(nic.service().frames, vec![frame(100, 100)]);
    }

    #[test]
    fn absurd_lengths_errors_and_chained_frames_are_dropped_and_counted() {
        let (fake, mut nic) = setup();
        let dd_eop = rx_status::DD | rx_status::EOP;
        {
            let mut d = fake.0.lock().unwrap();
            assert!(d.receive_raw(&[1; 64], 0xffff, dd_eop, 0)); // beyond the buffer
            assert!(d.receive_raw(&[1; 64], 0, dd_eop, 0)); // empty
            assert!(d.receive_raw(&[1; 64], 2048, dd_eop, 0)); // longer than a frame
            assert!(d.receive_raw(&[1; 64], 64, dd_eop, 0x01)); // CRC error
                                                                // A frame over three descriptors (no EOP on the first two): dropped whole.
            assert!(d.receive_raw(&[2; 64], 2048, rx_status::DD, 0));
            assert!(d.receive_raw(&[2; 64], 2048, rx_status::DD, 0));
            assert!(d.receive_raw(&[2; 64], 100, dd_eop, 0));
            assert!(d.receive(&frame(7, 1514)));
        }
        let s = nic.service();
        assert_eq!(s.frames, vec![frame(7, 1514)]);
        let c = nic.counters;
        assert_eq!((c.rx_bad_length, c.rx_errors, c.rx_frames), (3, 2, 1));
        // Every descriptor was given back: a whole ring's worth fits again.
        for i in 0..RX_RING - 1 {
            assert!(fake.0.lock().unwrap().receive(&frame(i, 60)));
        }
        assert_eq!(nic.service().frames.len(), RX_RING - 1);
    }

    #[test]
    fn transmit_queues_frames_reclaims_completions_and_reports_a_full_ring() {
        let (fake, mut nic) = setup();
        // Three rings' worth, completed as they go: wraps the ring.
        for i in 0..3 * TX_RING {
            nic.transmit(&frame(i, 60 + i)).unwrap();
            assert!(nic.tx_in_flight() <= 1);
        }
        assert_eq!(fake.0.lock().unwrap().sent.len(), 3 * TX_RING);
        assert_eq!(fake.0.lock().unwrap().sent[70], frame(70, 130));
        // The transmitter stalls: TX_RING - 1 frames fit, then the queue is full, at once.
        fake.0.lock().unwrap().tx_stalled = true;
        for i in 0..TX_RING - 1 {
            nic.transmit(&frame(i, 60)).unwrap();
        }
        assert_eq!(nic.transmit(&frame(0, 60)), Err(UplinkError::QueueFull));
        assert_eq!(nic.transmit(&[0; MAX_FRAME + 1]), Err(UplinkError::TooLong));
        // It resumes: TXDW is masked (no interrupt per frame sent), and the next transmit
        // reclaims everything the device finished.
        {
            let mut d = fake.0.lock().unwrap();
            d.tx_stalled = false;
            d.run_tx();
            assert!(!d.irq(), "no interrupt for finished transmissions");
        }
        nic.transmit(&frame(1, 60)).unwrap();
        assert_eq!(nic.counters.tx_completed, (4 * TX_RING - 1) as u64);
        assert!(nic.tx_in_flight() <= 1);
        assert_eq!(fake.0.lock().unwrap().sent.len(), 4 * TX_RING);
    }

    #[test]
    fn link_changes_are_reported_and_a_shared_line_is_left_alone() {
        let (fake, mut nic) = setup();
        assert_eq!(nic.service(), Serviced::default(), "ICR zero: not ours");
        fake.0.lock().unwrap().set_link(false);
        let s = nic.service();
        assert_eq!((s.ours, s.link), (true, Some(false)));
        assert!(!nic.link_up());
        fake.0.lock().unwrap().set_link(false); // LSC without a change
        assert_eq!(nic.service().link, None);
        fake.0.lock().unwrap().set_link(true);
        assert_eq!(nic.service().link, Some(true));
    }
}
