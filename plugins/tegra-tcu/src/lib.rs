//! The NVIDIA Tegra Combined UART (TCU, `nvidia,tegra194-tcu`): the console of the Jetson AGX
//! Xavier and Xavier NX as upstream Linux uses it (`stdout-path = "serial0:115200n8"`,
//! `serial0 = &tcu`).
//!
//! The TCU is not a UART the CPU drives: firmware on the SPE (the always-on cluster's
//! processor) owns the physical debug UART and multiplexes the consoles of every processor
//! onto it. The CPU side is two HSP shared mailboxes, named by the device tree's `mboxes`:
//! `tx`, mailbox 1 of the always-on HSP (`hsp_aon`), and `rx`, mailbox 0 of `hsp_top0`. A
//! message is one 32-bit word: bit 31 "full", bits 25:24 a count, up to three bytes in bits
//! 23:0 ([`registers::msg`]). Sending waits until the SPE emptied the mailbox, then writes the
//! word, as Linux `tegra-tcu.c` does through `tegra-hsp.c`; the last message of each write
//! also sets bit 26, "flush to port", as Trusted Firmware-A's SPE console does on every
//! message, so that a message ends up on the UART without waiting for more. Receiving takes
//! the word from the rx mailbox and writes 0 back, which hands the mailbox to the SPE again
//! (tegra-hsp.c: "some producers, such as TCU, depend on fields in the register getting
//! cleared by the consumer").
//!
//! Input raises the rx HSP's shared interrupt 0 (`hsp_top0` "shared0") while the rx mailbox
//! is full, once the mailbox's FULL event is enabled in that interrupt's `HSP_INT_IE(0)`
//! and in the mailbox's own `FULL_INT_IE` (Tegra194). The device's windows, by name:
//! `tx` and `rx` (each the 4 KiB page at its mailbox), and `rx-hsp`, the rx HSP block's
//! first page (its common registers), needed when the device has an interrupt.
//!
//! If the SPE firmware stops taking messages, a write gives up after [`TX_TIMEOUT_MS`] (the
//! 1000 ms Linux's `mbox_flush` allows) and later writes drop their bytes at once while the
//! mailbox stays full, instead of stopping the hypervisor; output resumes when the mailbox
//! is seen empty again. The hypervisor's console writes "\r\n" itself, so unlike Linux's
//! driver this one adds no '\r'.
//!
//! Link the crate to register the driver:
//!
//! ```ignore
//! use plugin_tegra_tcu as _;
//! ```
#![cfg_attr(not(test), no_std)]

pub mod registers;

use core::mem::{align_of, size_of};
use core::ptr::NonNull;
use hypervisor::platform::{BoardDesc, DeviceDesc};
use hypervisor::plugin::{
    probe_once, Console, DriverEntry, DriverKind, ProbeError, Probed, DRIVERS,
};
use hypervisor::sync::Mutex;
use registers::{int_ie_full, msg, HspCommon, SharedMailbox, SM_BASE, SM_MAX, SM_STRIDE};
use safe_mmio::{field, UniqueMmioPointer};

/// How long a message may wait for the SPE to empty the tx mailbox (Linux `tegra-tcu.c`:
/// `mbox_flush(tcu->tx, 1000)`).
pub const TX_TIMEOUT_MS: u64 = 1000;

/// The shared interrupt of the rx HSP that the device's `irq` is: 0, the one Linux takes
/// first (`tegra_hsp_request_shared_irq`; `hsp_top0` "shared0", `<GIC_SPI 120>`).
pub const RX_SHARED_IRQ: usize = 0;

/// Empty messages (count 0) taken in one [`Console::read_byte`] before it gives up.
const MAX_EMPTY_MESSAGES: usize = 8;

/// A monotonic time source for the tx timeout.
#[derive(Clone, Copy)]
pub struct Clock {
    /// The current tick count.
    pub now: fn() -> u64,
    /// Ticks per millisecond.
    pub ticks_per_ms: fn() -> u64,
}

/// The generic timer's physical counter.
#[cfg(target_arch = "aarch64")]
pub const MACHINE_CLOCK: Clock = Clock {
    now: hypervisor::arch::cpu::counter,
    ticks_per_ms: || (hypervisor::arch::cpu::counter_frequency() / 1000).max(1),
};

/// Host builds (tests) have no generic timer: one tick per reading, one tick per "ms".
#[cfg(not(target_arch = "aarch64"))]
pub const MACHINE_CLOCK: Clock = Clock {
    now: || {
        static TICKS: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);
        TICKS.fetch_add(1, core::sync::atomic::Ordering::Relaxed)
    },
    ticks_per_ms: || 1,
};

/// What receive interrupts need: the rx HSP's common registers and the rx mailbox's index
/// in that HSP.
struct RxIrq {
    hsp: UniqueMmioPointer<'static, HspCommon>,
    mailbox: u32,
}

struct Inner {
    tx: UniqueMmioPointer<'static, SharedMailbox>,
    rx: UniqueMmioPointer<'static, SharedMailbox>,
    rx_irq: Option<RxIrq>,
    /// Bytes of the last received message not yet returned.
    pending: [u8; msg::MAX_BYTES],
    pending_len: usize,
    pending_pos: usize,
    /// The SPE did not empty the tx mailbox within [`TX_TIMEOUT_MS`].
    stalled: bool,
}

/// The TCU's two mailboxes. All methods are safe; the only obligation is at [`Tcu::new`].
pub struct Tcu {
    inner: Mutex<Inner>,
    clock: Clock,
}

impl Tcu {
    /// Takes ownership of the tx and rx shared mailboxes, and of the rx HSP's common
    /// registers with the rx mailbox's index there (for receive interrupts) when given.
    ///
    /// # Safety
    ///
    /// The caller guarantees that:
    /// 1. `tx` and `rx` are the addresses of HSP shared mailboxes (at least the 12 bytes of
    ///    [`SharedMailbox`]), and `rx_irq`'s pointer that of an HSP block's common registers
    ///    (at least the 0x120 bytes of [`HspCommon`]) whose mailbox `index` is `rx`; all
    ///    4-byte aligned and mapped as device memory for the rest of the program (at EL2 the
    ///    core identity-maps device windows);
    /// 2. nothing else (another driver, a guest mapping) accesses those registers while this
    ///    value exists.
    pub unsafe fn new(
        tx: NonNull<SharedMailbox>,
        rx: NonNull<SharedMailbox>,
        rx_irq: Option<(NonNull<HspCommon>, u32)>,
        clock: Clock,
    ) -> Self {
        let inner = Inner {
            // SAFETY: (1) and (2) are `UniqueMmioPointer::new`'s contract for each block.
            tx: unsafe { UniqueMmioPointer::new(tx) },
            // SAFETY: as above.
            rx: unsafe { UniqueMmioPointer::new(rx) },
            rx_irq: rx_irq.map(|(hsp, mailbox)| RxIrq {
                // SAFETY: as above.
                hsp: unsafe { UniqueMmioPointer::new(hsp) },
                mailbox,
            }),
            pending: [0; msg::MAX_BYTES],
            pending_len: 0,
            pending_pos: 0,
            stalled: false,
        };
        Self {
            inner: Mutex::new(inner),
            clock,
        }
    }

    /// Takes the console over: receive interrupts off until the core asks for them (as
    /// Linux's HSP driver clears the shared interrupt's enables at probe), and the tx
    /// mailbox must drain within [`TX_TIMEOUT_MS`] (Trusted Firmware-A refuses to register
    /// its SPE console otherwise). The rx mailbox is left alone: a message already there is
    /// input.
    pub fn init(&self) -> Result<(), ProbeError> {
        self.set_rx_interrupt(false);
        let mut s = self.inner.lock();
        if self.wait_tx_free(&mut s) {
            Ok(())
        } else {
            Err(ProbeError::Hardware(
                "the TCU tx mailbox stays full: the SPE firmware does not take messages",
            ))
        }
    }

    /// Waits until the tx mailbox is empty; false if it is not, after [`TX_TIMEOUT_MS`]
    /// (then the console counts as stalled), or at once while it is stalled.
    fn wait_tx_free(&self, s: &mut Inner) -> bool {
        let free = |s: &mut Inner| field!(s.tx, mbox).read() & msg::FULL == 0;
        if s.stalled {
            s.stalled = !free(s);
            return !s.stalled;
        }
        let t0 = (self.clock.now)();
        let limit = TX_TIMEOUT_MS.saturating_mul((self.clock.ticks_per_ms)());
        loop {
            if free(s) {
                return true;
            }
            if (self.clock.now)().wrapping_sub(t0) > limit {
                s.stalled = !free(s);
                return !s.stalled;
            }
            core::hint::spin_loop();
        }
    }
}

impl Console for Tcu {
    fn write_bytes(&self, bytes: &[u8]) {
        let mut s = self.inner.lock();
        let messages = bytes.len().div_ceil(msg::MAX_BYTES);
        for (i, chunk) in bytes.chunks(msg::MAX_BYTES).enumerate() {
            if !self.wait_tx_free(&mut s) {
                // Stalled: the rest is dropped (see the crate documentation).
                return;
            }
            field!(s.tx, mbox).write(msg::pack(chunk, i + 1 == messages));
        }
    }

    fn read_byte(&self) -> Option<u8> {
        let mut s = self.inner.lock();
        if s.pending_pos < s.pending_len {
            let b = s.pending[s.pending_pos];
            s.pending_pos += 1;
            return Some(b);
        }
        for _ in 0..MAX_EMPTY_MESSAGES {
            let word = field!(s.rx, mbox).read();
            if word & msg::FULL == 0 {
                return None;
            }
            // Taken: clear the whole word, which hands the mailbox back to the SPE and
            // drops the FULL event (the interrupt is level-triggered).
            field!(s.rx, mbox).write(0);
            let (bytes, n) = msg::unpack(word);
            if n > 0 {
                s.pending = bytes;
                s.pending_len = n;
                s.pending_pos = 1;
                return Some(bytes[0]);
            }
        }
        None
    }

    fn set_rx_interrupt(&self, enabled: bool) {
        let mut s = self.inner.lock();
        let s = &mut *s;
        let Some(irq) = s.rx_irq.as_mut() else {
            return;
        };
        let bit = int_ie_full(irq.mailbox);
        let mut ie = field!(irq.hsp, int_ie);
        let Some(mut shared) = ie.get(RX_SHARED_IRQ) else {
            return; // Not reached: `HspCommon` has 8 `HSP_INT_IE` registers.
        };
        if enabled {
            field!(s.rx, full_int_ie).write(1);
            shared.modify(|v| v | bit);
        } else {
            shared.modify(|v| v & !bit);
            field!(s.rx, full_int_ie).write(0);
        }
    }
}

/// The window named `name` of `dev` as a `T`: `Ok(None)` when the device has no such
/// window; an error when it is too small for `T` or its base is zero or misaligned.
fn window<T>(dev: &DeviceDesc, name: &str) -> Result<Option<(u64, NonNull<T>)>, ProbeError> {
    let Some(reg) = dev.regs.iter().find(|r| r.name == name) else {
        return Ok(None);
    };
    if reg.size < size_of::<T>() as u64 {
        return Err(ProbeError::Hardware(
            "a TCU window is smaller than its registers; declare each as its 4 KiB page",
        ));
    }
    let ptr = usize::try_from(reg.base)
        .ok()
        .filter(|b| b % align_of::<T>() == 0)
        .and_then(|b| NonNull::new(b as *mut T))
        .ok_or(ProbeError::Hardware(
            "a TCU window's address is zero or not 4-byte aligned; fix its `reg`",
        ))?;
    Ok(Some((reg.base, ptr)))
}

/// The index of the shared mailbox at `mailbox` in the HSP block at `hsp`, if it is one of
/// the [`SM_MAX`] whose FULL event a shared interrupt can take.
pub fn mailbox_index(hsp: u64, mailbox: u64) -> Option<u32> {
    let off = mailbox.checked_sub(hsp)?.checked_sub(SM_BASE)?;
    (off.is_multiple_of(SM_STRIDE) && off / SM_STRIDE < SM_MAX).then_some((off / SM_STRIDE) as u32)
}

static INSTANCE: spin::Once<Tcu> = spin::Once::new();

fn probe(dev: &'static DeviceDesc, _board: &'static BoardDesc) -> Result<Probed, ProbeError> {
    let (_, tx) = window::<SharedMailbox>(dev, "tx")?.ok_or(ProbeError::MissingProperty(
        "reg name=\"tx\" (the tx mailbox)",
    ))?;
    let (rx_base, rx) = window::<SharedMailbox>(dev, "rx")?.ok_or(ProbeError::MissingProperty(
        "reg name=\"rx\" (the rx mailbox)",
    ))?;
    let rx_irq = match window::<HspCommon>(dev, "rx-hsp")? {
        Some((hsp_base, hsp)) => {
            let index = mailbox_index(hsp_base, rx_base).ok_or(ProbeError::Hardware(
                "the rx mailbox is not one of the first 8 shared mailboxes of the `rx-hsp` \
                 block (its base + 0x10000 + n * 0x8000); fix the `reg`s",
            ))?;
            Some((hsp, index))
        }
        None if !dev.irqs.is_empty() => {
            return Err(ProbeError::MissingProperty(
                "reg name=\"rx-hsp\" (the rx HSP's common registers, for its interrupt)",
            ))
        }
        None => None,
    };
    let tcu = probe_once(&INSTANCE, || {
        // SAFETY: (1) the board's device table gives these windows to the TCU, `window`
        // checked that each holds its register block at a non-zero 4-byte aligned address,
        // `mailbox_index` that `rx` is that mailbox of the `rx-hsp` block, and the core
        // identity-maps every device window as device memory before probing; (2)
        // `probe_once` makes this the only instance, and the board validator rejects
        // overlapping windows, so no other driver owns these registers.
        unsafe { Tcu::new(tx, rx, rx_irq, MACHINE_CLOCK) }
    })?;
    tcu.init()?;
    Ok(Probed::Console(tcu))
}

/// Registration: matches `compatible "nvidia,tegra194-tcu"`.
#[linkme::distributed_slice(DRIVERS)]
static TEGRA_TCU_DRIVER: DriverEntry = DriverEntry {
    name: "tegra-tcu",
    // Said once, in build.rs, which also announces it to the image crate.
    compatible: include!(concat!(env!("OUT_DIR"), "/compatible.rs")),
    kind: DriverKind::Console,
    probe,
};

#[cfg(test)]
mod tests {
    use super::*;
    use hypervisor::platform::{DeviceStatus, IrqDesc, RegDesc, Trigger};
    use hypervisor::plugin::match_driver;
    use plugin_test_support as support;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    /// Word indices in a fake HSP block: mailbox n at 0x10000 + n * 0x8000.
    const fn sm(n: usize) -> usize {
        (0x1_0000 + n * 0x8000) / 4
    }
    const MBOX: usize = 0;
    const FULL_IE: usize = 1;
    const INT_IE0: usize = 0x100 / 4;

    /// A zeroed fake HSP block (common registers and mailboxes 0..=2), leaked for `'static`.
    fn fake_hsp() -> *mut u32 {
        Box::leak(vec![0u32; sm(3)].into_boxed_slice()).as_mut_ptr()
    }

    fn peek(block: *mut u32, word: usize) -> u32 {
        // SAFETY: `block` is a live, leaked fake HSP block and `word` lies inside it.
        unsafe { block.add(word).read_volatile() }
    }

    fn poke(block: *mut u32, word: usize, v: u32) {
        // SAFETY: as for `peek`.
        unsafe { block.add(word).write_volatile(v) }
    }

    std::thread_local! {
        static TICKS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    }

    /// A clock of this thread that advances by one tick per reading, 10 ticks a "ms": a
    /// timeout passes after 10,000 readings, whatever the machine's speed.
    const COUNTING: Clock = Clock {
        now: || TICKS.with(|t| t.replace(t.get() + 1)),
        ticks_per_ms: || 10,
    };

    fn readings() -> u64 {
        TICKS.with(std::cell::Cell::get)
    }

    /// Wall-clock time, in ns: for tests where another thread (the fake SPE) must get its
    /// turn before the timeout.
    const WALL: Clock = Clock {
        now: || {
            static T0: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
            T0.get_or_init(std::time::Instant::now).elapsed().as_nanos() as u64
        },
        ticks_per_ms: || 1_000_000,
    };

    /// A TCU on fake blocks: tx = `aon` mailbox 1, rx = `top0` mailbox 0, with interrupts.
    fn tcu(aon: *mut u32, top0: *mut u32, clock: Clock) -> Tcu {
        let mb = |b: *mut u32, n: usize| {
            // SAFETY: mailbox n's words lie inside the fake block.
            NonNull::new(unsafe { b.add(sm(n)) }.cast::<SharedMailbox>()).unwrap()
        };
        // SAFETY: leaked host blocks that only this driver and the test's volatile accesses
        // (the fake SPE) touch; mailbox 0 of `top0` is at index 0.
        unsafe {
            Tcu::new(
                mb(aon, 1),
                mb(top0, 0),
                Some((NonNull::new(top0.cast()).unwrap(), 0)),
                clock,
            )
        }
    }

    /// A fake SPE: takes every message from `aon` mailbox 1 (records it, clears the word)
    /// until told to stop.
    fn spe(aon: *mut u32) -> (Arc<AtomicBool>, std::thread::JoinHandle<Vec<u32>>) {
        let stop = Arc::new(AtomicBool::new(false));
        let addr = aon as usize;
        let s = stop.clone();
        let h = std::thread::spawn(move || {
            let aon = addr as *mut u32;
            let mut got = Vec::new();
            while !s.load(Ordering::SeqCst) || peek(aon, sm(1)) & msg::FULL != 0 {
                let w = peek(aon, sm(1));
                if w & msg::FULL != 0 {
                    got.push(w);
                    poke(aon, sm(1), 0);
                }
                std::thread::yield_now();
            }
            got
        });
        (stop, h)
    }

    #[test]
    fn writes_go_out_three_bytes_a_message_the_last_one_flushed() {
        let (aon, top0) = (fake_hsp(), fake_hsp());
        let (stop, spe) = spe(aon);
        let t = tcu(aon, top0, WALL);
        t.write_bytes(b"hello\r\n");
        stop.store(true, Ordering::SeqCst);
        let got = spe.join().unwrap();
        assert_eq!(
            got,
            vec![
                msg::FULL | (3 << 24) | u32::from_le_bytes([b'h', b'e', b'l', 0]),
                msg::FULL | (3 << 24) | u32::from_le_bytes([b'l', b'o', b'\r', 0]),
                msg::FULL | msg::FLUSH | (1 << 24) | u32::from(b'\n'),
            ]
        );
    }

    #[test]
    fn a_write_waits_until_the_spe_emptied_the_mailbox() {
        let (aon, top0) = (fake_hsp(), fake_hsp());
        poke(aon, sm(1), msg::pack(b"old", true));
        let t = tcu(aon, top0, WALL);
        let addr = aon as usize;
        let spe = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            poke(addr as *mut u32, sm(1), 0);
        });
        t.write_bytes(b"x");
        spe.join().unwrap();
        assert_eq!(peek(aon, sm(1)), msg::pack(b"x", true));
    }

    #[test]
    fn a_stuck_spe_stalls_the_console_instead_of_the_hypervisor_until_it_drains() {
        let (aon, top0) = (fake_hsp(), fake_hsp());
        let stuck = msg::pack(b"old", true);
        poke(aon, sm(1), stuck);
        let t = tcu(aon, top0, COUNTING);
        // Times out (1000 "ms" of the fake clock), drops the bytes.
        t.write_bytes(b"abc");
        assert_eq!(peek(aon, sm(1)), stuck);
        // Stalled: the next write looks once and drops at once.
        let before = readings();
        t.write_bytes(b"def");
        assert_eq!(peek(aon, sm(1)), stuck);
        assert_eq!(readings(), before, "waited while stalled");
        // The SPE drains: output resumes.
        poke(aon, sm(1), 0);
        t.write_bytes(b"g");
        assert_eq!(peek(aon, sm(1)), msg::pack(b"g", true));
    }

    #[test]
    fn init_fails_when_the_tx_mailbox_never_drains() {
        let (aon, top0) = (fake_hsp(), fake_hsp());
        poke(aon, sm(1), msg::pack(b"old", false));
        assert!(matches!(
            tcu(aon, top0, COUNTING).init(),
            Err(ProbeError::Hardware(_))
        ));
        poke(aon, sm(1), 0);
        assert_eq!(tcu(aon, top0, COUNTING).init(), Ok(()));
    }

    #[test]
    fn reads_return_each_byte_of_a_message_and_hand_the_mailbox_back() {
        let (aon, top0) = (fake_hsp(), fake_hsp());
        let t = tcu(aon, top0, COUNTING);
        assert_eq!(t.read_byte(), None);
        poke(top0, sm(0) + MBOX, msg::FULL | (2 << 24) | 0x69_68);
        assert_eq!(t.read_byte(), Some(b'h'));
        assert_eq!(
            peek(top0, sm(0) + MBOX),
            0,
            "the mailbox is handed back at once"
        );
        poke(top0, sm(0) + MBOX, msg::FULL | (1 << 24) | u32::from(b'!'));
        assert_eq!(
            t.read_byte(),
            Some(b'i'),
            "the rest of the first message comes first"
        );
        assert_eq!(t.read_byte(), Some(b'!'));
        assert_eq!(t.read_byte(), None);
    }

    #[test]
    fn an_empty_message_is_taken_and_yields_nothing() {
        let (aon, top0) = (fake_hsp(), fake_hsp());
        poke(top0, sm(0) + MBOX, msg::FULL | 0x41);
        assert_eq!(tcu(aon, top0, COUNTING).read_byte(), None);
        assert_eq!(peek(top0, sm(0) + MBOX), 0);
    }

    #[test]
    fn rx_interrupt_enables_the_full_event_of_the_rx_mailbox_only() {
        let (aon, top0) = (fake_hsp(), fake_hsp());
        poke(top0, INT_IE0, 1 << 3); // another mailbox's EMPTY event, not ours
        let t = tcu(aon, top0, COUNTING);
        t.set_rx_interrupt(true);
        assert_eq!(peek(top0, INT_IE0), (1 << 3) | (1 << 8));
        assert_eq!(peek(top0, sm(0) + FULL_IE), 1);
        t.set_rx_interrupt(false);
        assert_eq!(peek(top0, INT_IE0), 1 << 3);
        assert_eq!(peek(top0, sm(0) + FULL_IE), 0);
        assert_eq!(
            peek(aon, sm(1) + FULL_IE),
            0,
            "the tx mailbox is not touched"
        );
    }

    #[test]
    fn mailbox_index_follows_the_hsp_layout() {
        assert_eq!(mailbox_index(0x03c0_0000, 0x03c1_0000), Some(0));
        assert_eq!(mailbox_index(0x0c15_0000, 0x0c16_8000), Some(1));
        assert_eq!(mailbox_index(0x03c0_0000, 0x03c0_0000), None); // the common page
        assert_eq!(mailbox_index(0x03c0_0000, 0x03c1_1000), None); // between mailboxes
        assert_eq!(mailbox_index(0x03c0_0000, 0x03c5_0000), None); // mailbox 8
        assert_eq!(mailbox_index(0x03c0_0000, 0x0300_0000), None); // below the block
    }

    fn device(regs: Vec<RegDesc>, irqs: &'static [IrqDesc]) -> &'static DeviceDesc {
        Box::leak(Box::new(DeviceDesc {
            name: "tcu",
            compatible: &["nvidia,tegra194-tcu"],
            regs: Box::leak(regs.into_boxed_slice()),
            irqs,
            status: DeviceStatus::Okay,
            bus_id: None,
            clock_hz: None,
            dma_coherent: false,
        }))
    }

    const SHARED0: &[IrqDesc] = &[IrqDesc {
        intid: 32 + 120,
        trigger: Trigger::Level,
    }];

    #[test]
    fn registered_for_the_tcu() {
        let dev = support::device_without_reg(&["nvidia,tegra194-tcu"]);
        let entry = match_driver(&DRIVERS, dev).expect("TCU registered in DRIVERS");
        assert_eq!((entry.name, entry.kind), ("tegra-tcu", DriverKind::Console));
    }

    #[test]
    fn probe_names_what_the_kdl_lacks_or_gets_wrong() {
        let board = support::board(support::gic_v2(0, 0), &[]);
        let (aon, top0) = (fake_hsp(), fake_hsp());
        let at = |b: *mut u32, word: usize| b as u64 + 4 * word as u64;
        let tx = support::reg("tx", at(aon, sm(1)), 0x1000);
        let rx = support::reg("rx", at(top0, sm(0)), 0x1000);
        let hsp = support::reg("rx-hsp", top0 as u64, 0x1000);
        let missing = |d| match probe(d, board) {
            Err(ProbeError::MissingProperty(p)) => p,
            other => panic!("expected a missing window, got {:?}", other.err()),
        };
        assert!(missing(device(vec![rx], SHARED0)).contains("\"tx\""));
        assert!(missing(device(vec![tx], SHARED0)).contains("\"rx\""));
        assert!(missing(device(vec![tx, rx], SHARED0)).contains("\"rx-hsp\""));
        // rx-hsp that is not the rx mailbox's block.
        let wrong = support::reg("rx-hsp", aon as u64, 0x1000);
        assert!(matches!(
            probe(device(vec![tx, rx, wrong], SHARED0), board),
            Err(ProbeError::Hardware(_))
        ));
        // A window too small for its registers.
        let short = support::reg("tx", at(aon, sm(1)), 0x8);
        assert!(matches!(
            probe(device(vec![short, rx, hsp], SHARED0), board),
            Err(ProbeError::Hardware(_))
        ));
    }

    #[test]
    fn probe_takes_the_tcu_once() {
        let board = support::board(support::gic_v2(0, 0), &[]);
        let (aon, top0) = (fake_hsp(), fake_hsp());
        let at = |b: *mut u32, word: usize| b as u64 + 4 * word as u64;
        poke(top0, INT_IE0, 1 << 8); // left on by earlier firmware
        let dev = device(
            vec![
                support::reg("tx", at(aon, sm(1)), 0x1000),
                support::reg("rx", at(top0, sm(0)), 0x1000),
                support::reg("rx-hsp", top0 as u64, 0x1000),
            ],
            SHARED0,
        );
        let Ok(Probed::Console(c)) = probe(dev, board) else {
            panic!("probe failed");
        };
        assert_eq!(peek(top0, INT_IE0), 0, "interrupts off until the core asks");
        c.write_bytes(b"A");
        assert_eq!(peek(aon, sm(1)), msg::pack(b"A", true));
        assert_eq!(probe(dev, board).err(), Some(ProbeError::AlreadyProbed));
    }
}
