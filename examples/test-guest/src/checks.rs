//! The checks (console, timer, psci, sgi, gic-dist, spi-pending, eoi-mode, stage2, ptimer, smccc,
//! psci-suspend, pmu, and passthrough when the DTB has a PL031),
//! the optional benchmark, and the interrupt and abort hooks they rely on. Cross-CPU state is
//! atomics only.

use crate::console::Pl011;
use crate::dt::{AfterChecks, Platform, Rtc, RtcNodeError, MAX_CPUS};
use crate::gic::{Gic, GicError};
use crate::rtc::Pl031;
use crate::spec::{MatchObservation, MatchProblem, Pl031Status};
use crate::{boot, conformance, echo, println, spec, sysreg};
use aarch64_cpu::asm::{barrier, wfi};
use aarch64_cpu::registers::{
    Readable, Writeable, CNTFRQ_EL0, CNTPCT_EL0, CNTP_CTL_EL0, CNTP_CVAL_EL0, CNTP_TVAL_EL0,
    CNTVCT_EL0, CNTV_CTL_EL0, CNTV_CVAL_EL0, TPIDR_EL1,
};
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::SeqCst};
use smccc::psci::{self, AffinityState, LowestAffinityLevel};
use smccc::Call;
use spin::Once;

/// SGI that the boot CPU sends to each secondary.
const SGI_PING: u8 = 1;
/// SGI that a secondary sends back to the boot CPU.
const SGI_PONG: u8 = 2;
/// SGI of the interrupt-latency benchmark: the boot CPU sends it to CPU 1, which notes the
/// time in its handler and answers with [`SGI_PONG`].
const SGI_BENCH: u8 = 3;
/// Benchmark iterations of each interrupt-latency figure.
const LATENCY_ITERATIONS: usize = 200;
/// How far ahead the latency benchmark sets the virtual timer, in counter ticks.
const TIMER_LEAD_TICKS: u64 = 64;
/// Timer ticks the timer check waits for.
const TICKS_WANTED: u32 = 5;
/// Benchmark iterations per figure.
const BENCH_ITERATIONS: usize = 1000;
/// An address in a hole of the guest-physical map (hypervisor `vm/layout.rs` and QEMU `virt`
/// both leave 0x0900_1000..0x0a00_0000 / 0x0a00_4000..0x0c00_0000 unassigned).
const UNASSIGNED_GAP: u64 = 0x0b00_0000;
/// How long a check waits for another CPU or for interrupts before it fails (generous: a
/// passing run takes a few milliseconds).
pub(crate) const WAIT_MS: u64 = 500;
/// Distance past the end of RAM of the other probed address.
const PAST_RAM: u64 = 64 << 20;
/// Longest the passthrough check takes, in counter time: the PL031 match comes at most 1 s
/// after `RTCMR` is programmed.
const PASSTHROUGH_LIMIT_MS: u64 = 2500;
/// How long the passthrough check keeps watching after the match interrupt for a repeat
/// (a level interrupt whose clear did not reach the RTC comes back right after EOI).
const REPEAT_WATCH_MS: u64 = 20;
/// Attempts at programming `RTCMR` without `RTCDR` ticking in between.
const MATCH_ATTEMPTS: u32 = 3;

/// The machine, parsed once by the boot CPU before any secondary starts.
pub static PLATFORM: Once<Platform> = Once::new();
/// The interrupt controller, set up by the boot CPU before any secondary starts.
pub static GIC: Once<Gic> = Once::new();
/// MPIDR affinity (as in the DTB) of each CPU index; index 0 is the boot CPU.
pub static CPU_MPIDR: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// A secondary found its planted PMU values changed: the cycle counter it read (0: intact).
static PMU_CLOBBERED: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
/// PMU overflow interrupts taken, and the overflow flags the last one found.
static PMU_IRQS: AtomicU32 = AtomicU32::new(0);
static PMU_OVERFLOWS: AtomicU64 = AtomicU64::new(0);
/// A secondary checked its planted PMU values (when pinged).
static PMU_CHECKED: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];

static ONLINE: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
static SECONDARY_GIC_FAILED: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
static PINGS: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(0) }; MAX_CPUS];
static PONGS: AtomicU32 = AtomicU32::new(0);
static OTHER_IRQS: AtomicU32 = AtomicU32::new(0);
static LAST_OTHER_IRQ: AtomicU32 = AtomicU32::new(0);

/// Counter value the latency benchmark's handler saw (0: not yet).
static BENCH_IRQ_AT: AtomicU64 = AtomicU64::new(0);
/// The virtual timer interrupt belongs to the latency benchmark.
static BENCH_TIMER: AtomicBool = AtomicBool::new(false);

static TICKS: AtomicU32 = AtomicU32::new(0);
static TICK_INTERVAL: AtomicU64 = AtomicU64::new(0);
static LAST_TICK: AtomicU64 = AtomicU64::new(0);
/// (counter, deadline) of a tick taken before its deadline, or (0, 0).
static EARLY_TICK: [AtomicU64; 2] = [const { AtomicU64::new(0) }; 2];
/// (previous, current) counter of a tick that did not advance time, or (0, 0).
static STALLED_TICK: [AtomicU64; 2] = [const { AtomicU64::new(0) }; 2];

/// Set while `sleep_until` uses the virtual timer as its wake-up alarm (its interrupt then
/// only silences the timer, it is not one of the timer check's ticks).
pub(crate) static ALARM: AtomicBool = AtomicBool::new(false);

/// PL031 interrupts taken.
static RTC_IRQS: AtomicU32 = AtomicU32::new(0);
/// `RTCDR`, `RTCRIS`, `RTCMIS` as the first PL031 interrupt found them (valid once
/// `RTC_IRQS` > 0).
static RTC_AT_IRQ: [AtomicU32; 3] = [const { AtomicU32::new(0) }; 3];

/// Physical timer interrupts taken by the ptimer check's handler.
static PTIMER_IRQS: AtomicU32 = AtomicU32::new(0);
/// `CNTP_CTL_EL0` as the handler first read it.
static PTIMER_CTL_AT_IRQ: AtomicU64 = AtomicU64::new(0);
/// `[CNTPCT_EL0, CNTP_CVAL_EL0]` when the handler ran before the deadline.
static PTIMER_EARLY: [AtomicU64; 2] = [const { AtomicU64::new(0) }; 2];
/// Physical counter ticks from the compare value to the handler, first interrupt.
static PTIMER_LATENCY: AtomicU64 = AtomicU64::new(0);

static ABORT_ARMED: AtomicBool = AtomicBool::new(false);
static ABORT_SEEN: AtomicBool = AtomicBool::new(false);
static ABORT_ESR: AtomicU64 = AtomicU64::new(0);
static ABORT_FAR: AtomicU64 = AtomicU64::new(0);

/// Why a check failed; printed after `FAIL <check>:`.
#[derive(Debug, thiserror::Error)]
pub enum CheckFailure {
    /// `ID_AA64DFR0_EL1.PMUVer` says there is no PMUv3.
    #[error("ID_AA64DFR0_EL1.PMUVer reports no PMUv3: the CPU model must have a PMU")]
    NoPmu,
    /// A CPU's stopped PMU counters changed.
    #[error("CPU {cpu}'s stopped cycle counter reads {got:#x}, it wrote {want:#x} (or event counter 0 changed): the PMU must be switched with the vCPU")]
    PmuClobbered {
        /// The CPU.
        cpu: usize,
        /// Cycle counter read.
        got: u64,
        /// What the CPU wrote.
        want: u64,
    },
    /// A secondary never checked its PMU values (it was not pinged).
    #[error("CPU {cpu} never checked its PMU counters (no SGI ping reached it)")]
    PmuNotChecked {
        /// The CPU.
        cpu: usize,
    },
    /// The DTB has no PMU interrupt (or no GIC set up).
    #[error("no `arm,armv8-pmuv3` node with an interrupt in the DTB: the hypervisor must describe the PMU")]
    NoPmuInterrupt,
    /// The cycle counter's overflow did not raise its interrupt exactly once.
    #[error("cycle counter overflow raised INTID {intid} {irqs} times (want 1), overflow flags {flags:#x} (want bit 31): PMU interrupts must reach the vCPU whose counter overflowed")]
    PmuOverflowIrq {
        /// PMU INTID from the DTB.
        intid: u32,
        /// Interrupts taken.
        irqs: u32,
        /// `PMOVSCLR_EL0` in the handler.
        flags: u64,
    },
    /// The cycle counter's overflow flag did not behave as the architecture says.
    #[error("cycle counter overflow: {what} (PMOVSSET_EL0 reads {flags:#x}, PMCCNTR_EL0 {cycles:#x}): the overflow flags are the vCPU's architectural state, wired interrupt or not")]
    PmuOverflowFlag {
        /// What went wrong.
        what: &'static str,
        /// `PMOVSSET_EL0` read.
        flags: u64,
        /// `PMCCNTR_EL0` read.
        cycles: u64,
    },
    /// A counter counted while the vCPU slept in `WFI`, at close to its busy rate.
    #[error("{counter} counted {idle} while this vCPU slept {idle_ticks} ticks in a PSCI standby, against {busy} in {busy_ticks} busy ticks (want under a tenth of the busy rate), with NSH set in its filter as Linux sets it: a guest's counters must not count the hypervisor's work or time it is not running")]
    PmuCountedIdle {
        /// `PMCCNTR_EL0` or event counter 0.
        counter: &'static str,
        /// Counted while asleep.
        idle: u64,
        /// Counter ticks asleep.
        idle_ticks: u64,
        /// Counted while busy.
        busy: u64,
        /// Counter ticks busy.
        busy_ticks: u64,
    },
    /// `CPU_SUSPEND` to a standby state failed.
    #[error("PSCI CPU_SUSPEND to a standby state (power_state 0) returned {0:?}")]
    PmuStandby(smccc::psci::Error),
    /// The enabled cycle counter did not move.
    #[error("PMCCNTR_EL0 did not count while enabled (PMCR_EL0.E and PMCNTENSET_EL0.C set)")]
    PmuNotCounting,
    /// The console's ID registers are not a PL011's.
    #[error("UARTPeriphID0-3 {periph:#x?} / UARTPCellID0-3 {cell:#x?} do not identify a PL011 \
             (want 0x11 0x10 0x?4 0x00 / 0x0d 0xf0 0x05 0xb1): the console model must emulate the ID registers")]
    NotPl011 {
        /// `UARTPeriphID0..3`.
        periph: [u32; 4],
        /// `UARTPCellID0..3`.
        cell: [u32; 4],
    },
    /// `CNTFRQ_EL0` is 0.
    #[error("CNTFRQ_EL0 reads 0: the counter frequency must be programmed before the guest runs")]
    NoCounterFrequency,
    /// Fewer timer interrupts than wanted arrived in time.
    #[error("only {got} of {TICKS_WANTED} virtual timer interrupts (INTID {intid}) arrived within {ms} ms")]
    TooFewTicks {
        /// Ticks seen.
        got: u32,
        /// The timer PPI.
        intid: u32,
        /// How long the check waited.
        ms: u64,
    },
    /// A tick was delivered before CNTVCT reached CNTV_CVAL.
    #[error("timer interrupt taken at CNTVCT={now:#x}, before its deadline CNTV_CVAL={cval:#x}")]
    EarlyTick {
        /// Counter at the interrupt.
        now: u64,
        /// Programmed deadline.
        cval: u64,
    },
    /// The counter did not advance between two ticks.
    #[error("CNTVCT went from {prev:#x} to {now:#x} between two timer interrupts: virtual time is not monotonic")]
    TimeNotMonotonic {
        /// Counter at the earlier tick.
        prev: u64,
        /// Counter at the later tick.
        now: u64,
    },
    /// A PSCI call failed.
    #[error("PSCI {call} failed: {error}")]
    Psci {
        /// The PSCI function.
        call: &'static str,
        /// What it returned.
        error: psci::Error,
    },
    /// PSCI is older than 1.0.
    #[error("PSCI_VERSION is {major}.{minor}, want >= 1.0")]
    OldPsci {
        /// Major version.
        major: u16,
        /// Minor version.
        minor: u16,
    },
    /// A secondary CPU never reported online.
    #[error("CPU {cpu} (MPIDR {mpidr:#x}) did not come online within {WAIT_MS} ms of CPU_ON")]
    NotOnline {
        /// CPU index.
        cpu: usize,
        /// Its MPIDR.
        mpidr: u64,
    },
    /// A secondary CPU could not set up its GIC interface.
    #[error("CPU {cpu} came up but its GIC CPU interface setup failed (see the line above)")]
    SecondaryGic {
        /// CPU index.
        cpu: usize,
    },
    /// EOImode 1 did not split priority drop and deactivation.
    #[error("{step} (read {got:#x})")]
    EoiMode {
        /// What went wrong.
        step: &'static str,
        /// The value read.
        got: u64,
    },
    /// AFFINITY_INFO above level 0 did not report the boot CPU's instance as on.
    #[error("AFFINITY_INFO(boot CPU, lowest level {level}) returned {got:?}, want Ok(On)")]
    AffinityLevel {
        /// The lowest affinity level asked for.
        level: u32,
        /// What PSCI said.
        got: Result<AffinityState, psci::Error>,
    },
    /// AFFINITY_INFO of a cluster with no CPU did not refuse.
    #[error("AFFINITY_INFO(MPIDR {mpidr:#x}, level 1) of a cluster with no CPU returned {got:?}, want Err(InvalidParameters)")]
    AffinityNoCluster {
        /// The target.
        mpidr: u64,
        /// What PSCI said.
        got: Result<AffinityState, psci::Error>,
    },
    /// CPU_SUSPEND to a power-down state returned instead of resuming at the entry point.
    #[error("CPU_SUSPEND(power down) returned {status} instead of resuming at the entry point with the context lost")]
    SuspendReturned {
        /// The PSCI status it returned.
        status: i64,
    },
    /// The entry point got another context id.
    #[error("CPU_SUSPEND(power down) resumed with x0 = {got:#x}, want the context id {want:#x}")]
    SuspendContext {
        /// x0 at the entry point.
        got: u64,
        /// The context id passed.
        want: u64,
    },
    /// The MMU or caches were on at the entry point.
    #[error(
        "CPU_SUSPEND(power down) resumed with SCTLR_EL1 = {sctlr:#x}: M, C and I must be clear"
    )]
    SuspendSctlr {
        /// SCTLR_EL1 at the entry point.
        sctlr: u64,
    },
    /// It resumed before its wake-up event.
    #[error("CPU_SUSPEND(power down) resumed after {us} us, before the 2 ms timer that wakes it")]
    SuspendWokeEarly {
        /// Microseconds asleep.
        us: u64,
    },
    /// AFFINITY_INFO did not report ON for a started CPU.
    #[error("AFFINITY_INFO(MPIDR {mpidr:#x}) returned {got:?}, want Ok(On)")]
    AffinityNotOn {
        /// The CPU's MPIDR.
        mpidr: u64,
        /// What PSCI said.
        got: Result<AffinityState, psci::Error>,
    },
    /// CPU_ON returned something other than the expected error.
    #[error("CPU_ON of {what} (MPIDR {mpidr:#x}) returned {got:?}, want Err({want:?})")]
    CpuOnResult {
        /// Which case.
        what: &'static str,
        /// Target MPIDR.
        mpidr: u64,
        /// What PSCI said.
        got: Result<(), psci::Error>,
        /// What it should have said.
        want: psci::Error,
    },
    /// The check needs a secondary CPU that is not online.
    #[error("CPU {cpu} is not online (the psci check failed), so it cannot take SGIs")]
    SecondaryOffline {
        /// CPU index.
        cpu: usize,
    },
    /// A secondary never took its SGI.
    #[error("CPU {cpu} took {got} SGI {SGI_PING} interrupts within {WAIT_MS} ms, want 1")]
    SgiNotReceived {
        /// CPU index.
        cpu: usize,
        /// SGIs it recorded.
        got: u32,
    },
    /// The boot CPU did not get the replies.
    #[error("CPU 0 took {got} SGI {SGI_PONG} replies within {WAIT_MS} ms, want {want}")]
    SgiReplies {
        /// Replies seen.
        got: u32,
        /// Replies expected.
        want: u32,
    },
    /// A GIC register or interrupt did not behave as the GIC architecture says.
    #[error("{what}: CPU {cpu} saw {got:#x}, want {want:#x}")]
    GicMismatch {
        /// What was looked at.
        what: &'static str,
        /// The CPU that looked.
        cpu: usize,
        /// What it saw.
        got: u64,
        /// What the architecture says.
        want: u64,
    },
    /// A GIC set-up step failed.
    #[error("{0}")]
    Gic(GicError),
    /// The SPI set pending through GICD_ISPENDR was not taken exactly once.
    #[error("INTID {intid} (the last SPI GICD_TYPER.ITLinesNumber reports), set pending through GICD_ISPENDR, was taken {taken} times, want 1")]
    SpiNotTaken {
        /// The SPI.
        intid: u32,
        /// Times taken.
        taken: u32,
    },
    /// The DT's timer node lists no EL1 physical timer interrupt.
    #[error("the arm,armv8-timer node has no second (non-secure physical timer) interrupt")]
    NoPtimerIrq,
    /// The physical timer's pending bit, read with its PPI disabled, is not its line's level.
    #[error("physical timer PPI {intid} disabled, {state}: pending bit reads {got} (CNTP_CTL_EL0={ctl:#x})")]
    PtimerPending {
        /// The PPI.
        intid: u32,
        /// The timer's state.
        state: &'static str,
        /// The bit read.
        got: bool,
        /// `CNTP_CTL_EL0` read just before.
        ctl: u64,
    },
    /// `CNTP_CTL_EL0.ISTATUS` is clear although the timer is enabled and due.
    #[error(
        "CNTP_CTL_EL0={ctl:#x} for a timer enabled with a deadline in the past: ISTATUS is clear"
    )]
    PtimerNoIstatus {
        /// `CNTP_CTL_EL0`.
        ctl: u64,
    },
    /// The physical timer's interrupt did not arrive.
    #[error("no physical timer interrupt (INTID {intid}) within {ms} ms of its deadline")]
    PtimerNoIrq {
        /// The PPI.
        intid: u32,
        /// How long the check waited.
        ms: u64,
    },
    /// The handler saw `CNTP_CTL_EL0` without `ISTATUS`.
    #[error("physical timer interrupt taken with CNTP_CTL_EL0={ctl:#x}: ISTATUS clear")]
    PtimerIrqWithoutIstatus {
        /// `CNTP_CTL_EL0` in the handler.
        ctl: u64,
    },
    /// The interrupt came before the compare value.
    #[error("physical timer interrupt taken at CNTPCT={now:#x}, before CNTP_CVAL={cval:#x}")]
    PtimerEarly {
        /// `CNTPCT_EL0` in the handler.
        now: u64,
        /// `CNTP_CVAL_EL0`.
        cval: u64,
    },
    /// The interrupt came, but long after its deadline (only once something else woke the
    /// vCPU).
    #[error("physical timer interrupt taken {ms} ms after its deadline (limit {limit} ms): nothing woke the vCPU at the deadline")]
    PtimerLate {
        /// Milliseconds from CNTP_CVAL to the handler.
        ms: u64,
        /// The limit.
        limit: u64,
    },
    /// The interrupt kept coming after the handler disabled the timer.
    #[error("{count} physical timer interrupts for one deadline: the line did not drop when the handler disabled the timer")]
    PtimerRepeated {
        /// Interrupts taken.
        count: u32,
    },
    /// An SMCCC workaround call disagrees with `SMCCC_ARCH_FEATURES`.
    #[error("SMCCC_ARCH_FEATURES({id:#x}) = {features} but the call returned {ret}")]
    Workaround {
        /// The workaround's function ID.
        id: u32,
        /// `SMCCC_ARCH_FEATURES`'s answer.
        features: i32,
        /// The call's `W0`.
        ret: i32,
    },
    /// `SMCCC_VERSION` is not discoverable, yet `SMCCC_ARCH_FEATURES` answers.
    #[error("PSCI_FEATURES(SMCCC_VERSION) says SMCCC 1.0, yet SMCCC_ARCH_FEATURES({id:#x}) = {features}")]
    ArchFeaturesWithoutVersion {
        /// The workaround queried.
        id: u32,
        /// The answer.
        features: i32,
    },
    /// An interrupt nobody asked for arrived.
    #[error("{count} unexpected interrupt(s), last INTID {intid}")]
    UnexpectedIrq {
        /// How many.
        count: u32,
        /// Last one's INTID.
        intid: u32,
    },
    /// The DTB's `arm,pl031` node is unusable.
    #[error("{0}")]
    RtcNode(#[from] RtcNodeError),
    /// The passed-through frame's ID registers are not a PL031's.
    #[error("RTCPeriphID0-3 {periph:#x?} / RTCPCellID0-3 {cell:#x?} do not identify a PL031 \
             (want 0x31 0x10 0x?4 0x00 / 0x0d 0xf0 0x05 0xb1): the hypervisor must map the RTC's frame at the DTB's reg address")]
    NotPl031 {
        /// `RTCPeriphID0..3`.
        periph: [u32; 4],
        /// `RTCPCellID0..3`.
        cell: [u32; 4],
    },
    /// `RTCDR` reads 0.
    #[error("RTCDR reads 0: a running PL031 holds the time in seconds (QEMU's starts at host time); is the frame mapped to the device?")]
    RtcStopped,
    /// `RTCDR` kept changing while `RTCMR` was programmed.
    #[error("RTCDR changed within each of {MATCH_ATTEMPTS} RTCMR writes (last {from:#x} -> {to:#x}): the RTC must count seconds")]
    RtcUnstable {
        /// `RTCDR` before the last write.
        from: u32,
        /// `RTCDR` after it.
        to: u32,
    },
    /// The PL031's SPI could not be set up.
    #[error("enabling the PL031's SPI: {0}")]
    RtcSpi(GicError),
    /// The match interrupt went wrong.
    #[error("{problem} (watched {ms} ms)")]
    RtcMatch {
        /// What was wrong.
        problem: MatchProblem,
        /// How long after arming the check looked.
        ms: u64,
    },
    /// A read that should abort completed.
    #[error("read at {addr:#x} returned {value:#x} without a data abort: the address must not be mapped at stage 2")]
    NoAbort {
        /// Probed address.
        addr: u64,
        /// What it returned.
        value: u32,
    },
    /// The abort had the wrong class.
    #[error("read at {addr:#x} raised ESR_EL1={esr:#x} (EC {ec:#x}), want EC 0x25 (data abort, same EL)")]
    WrongAbortClass {
        /// Probed address.
        addr: u64,
        /// ESR_EL1.
        esr: u64,
        /// Its EC.
        ec: u64,
    },
    /// The abort reported the wrong address.
    #[error("read at {addr:#x} aborted with FAR_EL1={far:#x} (ESR_EL1={esr:#x}): the injected abort must carry the faulting address")]
    WrongFar {
        /// Probed address.
        addr: u64,
        /// FAR_EL1.
        far: u64,
        /// ESR_EL1.
        esr: u64,
    },
}

/// Pass/fail counts and the one-line-per-check output.
#[derive(Default)]
pub struct Report {
    /// Checks that passed.
    pub passed: u32,
    /// Checks that failed.
    pub failed: u32,
}

impl Report {
    fn record(&mut self, name: &str, result: Result<(), CheckFailure>) {
        match result {
            Ok(()) => {
                self.passed += 1;
                println!("PASS {name}");
            }
            Err(failure) => {
                self.failed += 1;
                println!("FAIL {name}: {failure}");
            }
        }
    }
}

pub fn counter() -> u64 {
    barrier::isb(barrier::SY);
    CNTVCT_EL0.get()
}

fn frequency() -> u64 {
    CNTFRQ_EL0.get()
}

/// `ms` milliseconds in counter ticks.
pub fn ticks(ms: u64) -> u64 {
    frequency() * ms / 1000
}

/// Waits (polling) until `done` or `ms` milliseconds passed; returns `done()`'s last value.
pub(crate) fn wait_for(ms: u64, mut done: impl FnMut() -> bool) -> bool {
    let deadline = counter() + ticks(ms);
    loop {
        if done() {
            return true;
        }
        if counter() > deadline {
            return done();
        }
        // YIELD rather than `spin_loop` (an ISB): QEMU's round-robin TCG (used with
        // `-icount`) switches to another vCPU on YIELD, so the awaited CPU gets to run.
        // SAFETY: YIELD is a hint with no architectural effect.
        unsafe { core::arch::asm!("yield", options(nomem, nostack, preserves_flags)) };
    }
}

/// Sleeps in `WFI` until `done` or the counter reaches `deadline`, with the virtual timer
/// (`vtimer_intid`) as the alarm that bounds the sleep; returns `done()`'s last value.
///
/// Sleeping rather than polling lets a hypervisor run other vCPUs, and lets QEMU with
/// `-icount ...,sleep=off` skip idle time straight to the next device or timer event.
pub fn sleep_until(
    gic: &Gic,
    vtimer_intid: u32,
    deadline: u64,
    mut done: impl FnMut() -> bool,
) -> bool {
    ALARM.store(true, SeqCst);
    gic.enable_ppi(cpu_index(), vtimer_intid);
    CNTV_CVAL_EL0.set(deadline);
    CNTV_CTL_EL0.write(CNTV_CTL_EL0::ENABLE::SET + CNTV_CTL_EL0::IMASK::CLEAR);
    // Check-then-sleep with IRQs masked: WFI wakes on a pending IRQ even while PSTATE.I
    // masks it, so an interrupt between the check and the WFI is not missed.
    let result = loop {
        sysreg::irq_disable();
        if done() {
            break true;
        }
        if counter() >= deadline {
            break done();
        }
        wfi();
        sysreg::irq_enable();
    };
    sysreg::irq_enable();
    CNTV_CTL_EL0.write(CNTV_CTL_EL0::ENABLE::CLEAR + CNTV_CTL_EL0::IMASK::SET);
    ALARM.store(false, SeqCst);
    result
}

/// The calling CPU's index (set in `TPIDR_EL1` at bring-up).
pub fn cpu_index() -> usize {
    TPIDR_EL1.get() as usize
}

/// Runs every check on the boot CPU, prints the summary, and returns the counts.
pub fn run<C: Call>(platform: &Platform, gic: &Gic, uart: &Pl011) -> Report {
    let mut report = Report::default();
    // Before any secondary starts (and so before another vCPU can share this CPU).
    pmu::plant(0);
    report.record("console", console(uart));
    report.record("timer", timer(platform, gic));
    report.record("psci", psci_cpu_on::<C>(platform));
    if platform.cpu_count > 1 {
        report.record("sgi", sgi(platform, gic));
        report.record("sgi-routing", conformance::sgi_routing(platform, gic));
    } else {
        println!("SKIP sgi: the DTB lists one CPU, SGIs need two");
        println!("SKIP sgi-routing: the DTB lists one CPU, SGIs need two");
    }
    report.record("gic-dist", conformance::gic_dist(platform, gic));
    report.record("spi-pending", conformance::spi_pending(gic));
    report.record("eoi-mode", conformance::eoi_mode(gic));
    report.record("stage2", stage2(platform));
    report.record("ptimer", ptimer(platform, gic));
    report.record("smccc", smccc_workarounds::<C>());
    report.record(
        "psci-suspend",
        crate::suspend::psci_suspend::<C>(platform, gic),
    );
    report.record("pmu", pmu::check(platform));
    report.record("pmu-overflow", pmu::overflow_flag());
    report.record("pmu-idle", pmu::idle::<C>(platform, gic));
    if platform.pmu_irq_wired {
        report.record("pmu-irq", pmu::overflow_interrupt(platform));
    } else {
        println!("SKIP pmu-irq: bootargs say this machine does not wire the PMU interrupt");
    }
    // Only a DTB with a passed-through PL031 gets this check (and its line).
    if let Some(rtc) = platform.rtc {
        report.record("passthrough", passthrough(rtc, platform, gic));
    }
    let others = OTHER_IRQS.load(SeqCst);
    if others != 0 {
        report.record(
            "irqs",
            Err(CheckFailure::UnexpectedIrq {
                count: others,
                intid: LAST_OTHER_IRQ.load(SeqCst),
            }),
        );
    }
    report
}

fn console(uart: &Pl011) -> Result<(), CheckFailure> {
    let (periph, cell) = uart.ids();
    if spec::is_pl011(periph, cell) {
        Ok(())
    } else {
        Err(CheckFailure::NotPl011 { periph, cell })
    }
}

fn timer(platform: &Platform, gic: &Gic) -> Result<(), CheckFailure> {
    let freq = frequency();
    if freq == 0 {
        return Err(CheckFailure::NoCounterFrequency);
    }
    let intid = platform.vtimer_intid;
    TICK_INTERVAL.store(freq / 1000, SeqCst);
    TICKS.store(0, SeqCst);
    gic.enable_ppi(cpu_index(), intid);
    let start = counter();
    LAST_TICK.store(start, SeqCst);
    CNTV_CVAL_EL0.set(start + freq / 1000);
    CNTV_CTL_EL0.write(CNTV_CTL_EL0::ENABLE::SET + CNTV_CTL_EL0::IMASK::CLEAR);
    const LIMIT_MS: u64 = WAIT_MS;
    let deadline = start + freq * LIMIT_MS / 1000;
    // Check-then-sleep with IRQs masked so that a tick between the two cannot be missed:
    // WFI wakes on a pending IRQ even while PSTATE.I masks it.
    loop {
        sysreg::irq_disable();
        if TICKS.load(SeqCst) >= TICKS_WANTED || counter() > deadline {
            break;
        }
        wfi();
        sysreg::irq_enable();
    }
    sysreg::irq_enable();
    CNTV_CTL_EL0.write(CNTV_CTL_EL0::ENABLE::CLEAR + CNTV_CTL_EL0::IMASK::SET);

    let [now, cval] = EARLY_TICK.each_ref().map(|a| a.load(SeqCst));
    if now != 0 {
        return Err(CheckFailure::EarlyTick { now, cval });
    }
    let [prev, now] = STALLED_TICK.each_ref().map(|a| a.load(SeqCst));
    if now != 0 {
        return Err(CheckFailure::TimeNotMonotonic { prev, now });
    }
    let got = TICKS.load(SeqCst);
    if got < TICKS_WANTED {
        return Err(CheckFailure::TooFewTicks {
            got,
            intid,
            ms: LIMIT_MS,
        });
    }
    Ok(())
}

fn timer_tick() {
    let now = counter();
    let cval = CNTV_CVAL_EL0.get();
    if now < cval {
        EARLY_TICK[1].store(cval, SeqCst);
        EARLY_TICK[0].store(now, SeqCst);
    }
    let prev = LAST_TICK.swap(now, SeqCst);
    if now <= prev {
        STALLED_TICK[0].store(prev, SeqCst);
        STALLED_TICK[1].store(now, SeqCst);
    }
    if TICKS.fetch_add(1, SeqCst) + 1 < TICKS_WANTED {
        // Re-arming moves the deadline past now, which drops the level-sensitive PPI.
        CNTV_CVAL_EL0.set(now + TICK_INTERVAL.load(SeqCst));
    } else {
        CNTV_CTL_EL0.write(CNTV_CTL_EL0::ENABLE::CLEAR + CNTV_CTL_EL0::IMASK::SET);
    }
}

/// Physical count, ordered after earlier instructions.
fn physical_counter() -> u64 {
    barrier::isb(barrier::SY);
    CNTPCT_EL0.get()
}

/// `CNTP_CTL_EL0` bits.
const CNTP_ENABLE: u64 = 1;
const CNTP_IMASK: u64 = 2;
const CNTP_ISTATUS: u64 = 4;

/// The EL1 physical timer: with its PPI disabled at the GIC, its pending bit is the line's
/// level (1 only when enabled, due and unmasked, ISTATUS set whatever IMASK says); with the
/// PPI enabled, one `CNTP_TVAL_EL0` deadline gives exactly one interrupt, taken in `WFI`,
/// not before the compare value, with ISTATUS set, and none after the handler disables the
/// timer.
fn ptimer(platform: &Platform, gic: &Gic) -> Result<(), CheckFailure> {
    let intid = platform.ptimer_intid.ok_or(CheckFailure::NoPtimerIrq)?;
    let cpu = cpu_index();
    gic.disable_ppi(cpu, intid);
    let pending = |state: &'static str, want: bool| {
        let ctl = CNTP_CTL_EL0.get();
        let got = gic.ppi_pending(cpu, intid);
        if got == want {
            Ok(())
        } else {
            Err(CheckFailure::PtimerPending {
                intid,
                state,
                got,
                ctl,
            })
        }
    };
    // Due at once, masked: ISTATUS set, not pending.
    CNTP_CTL_EL0.set(CNTP_ENABLE | CNTP_IMASK);
    CNTP_TVAL_EL0.set(0);
    let ctl = CNTP_CTL_EL0.get();
    if ctl & CNTP_ISTATUS == 0 {
        CNTP_CTL_EL0.set(0);
        return Err(CheckFailure::PtimerNoIstatus { ctl });
    }
    let result = pending("enabled, due, IMASK set", false)
        .and_then(|()| {
            CNTP_CTL_EL0.set(CNTP_ENABLE);
            pending("enabled, due, IMASK clear", true)
        })
        .and_then(|()| {
            CNTP_CTL_EL0.set(0);
            pending("disabled", false)
        })
        .and_then(|()| {
            CNTP_TVAL_EL0.set(ticks(1000));
            CNTP_CTL_EL0.set(CNTP_ENABLE);
            pending("enabled, due in 1 s", false)
        });
    CNTP_CTL_EL0.set(0);
    result?;

    // The interrupt itself.
    PTIMER_IRQS.store(0, SeqCst);
    PTIMER_CTL_AT_IRQ.store(0, SeqCst);
    PTIMER_EARLY[0].store(0, SeqCst);
    PTIMER_LATENCY.store(0, SeqCst);
    gic.enable_ppi(cpu, intid);
    CNTP_TVAL_EL0.set(ticks(1));
    CNTP_CTL_EL0.set(CNTP_ENABLE);
    // The virtual timer bounds the sleep (twice the latency allowed): a physical timer that
    // never fires, or only once something else wakes the vCPU, is a FAIL, not a guest
    // asleep for ever.
    let deadline = counter() + ticks(2 * WAIT_MS);
    sleep_until(gic, platform.vtimer_intid, deadline, || {
        PTIMER_IRQS.load(SeqCst) > 0
    });
    // Watch a little longer: a line that does not drop brings the interrupt back at once.
    if PTIMER_IRQS.load(SeqCst) > 0 {
        let until = counter() + ticks(5);
        sleep_until(gic, platform.vtimer_intid, until, || {
            PTIMER_IRQS.load(SeqCst) > 1
        });
    }
    CNTP_CTL_EL0.set(0);
    gic.disable_ppi(cpu, intid);

    let count = PTIMER_IRQS.load(SeqCst);
    if count == 0 {
        return Err(CheckFailure::PtimerNoIrq { intid, ms: WAIT_MS });
    }
    let [now, cval] = PTIMER_EARLY.each_ref().map(|a| a.load(SeqCst));
    if now != 0 {
        return Err(CheckFailure::PtimerEarly { now, cval });
    }
    let ctl = PTIMER_CTL_AT_IRQ.load(SeqCst);
    if ctl & CNTP_ISTATUS == 0 {
        return Err(CheckFailure::PtimerIrqWithoutIstatus { ctl });
    }
    if count > 1 {
        return Err(CheckFailure::PtimerRepeated { count });
    }
    let late = PTIMER_LATENCY.load(SeqCst);
    if late > ticks(WAIT_MS) {
        return Err(CheckFailure::PtimerLate {
            ms: late * 1000 / frequency(),
            limit: WAIT_MS,
        });
    }
    Ok(())
}

/// The ptimer check's interrupt: records what it saw and disables the timer (which drops
/// the level-sensitive line).
fn ptimer_irq() {
    let now = physical_counter();
    let ctl = CNTP_CTL_EL0.get();
    let cval = CNTP_CVAL_EL0.get();
    if PTIMER_IRQS.fetch_add(1, SeqCst) == 0 {
        PTIMER_CTL_AT_IRQ.store(ctl, SeqCst);
        if now < cval {
            PTIMER_EARLY[1].store(cval, SeqCst);
            PTIMER_EARLY[0].store(now, SeqCst);
        }
        PTIMER_LATENCY.store(now.saturating_sub(cval), SeqCst);
    }
    CNTP_CTL_EL0.set(0);
}

/// `SMCCC_ARCH_WORKAROUND_1/2/3` each do what `SMCCC_ARCH_FEATURES` says: a call succeeds
/// (returns 0) exactly when the workaround is reported as implemented and required (0), and
/// is `NOT_SUPPORTED` otherwise. With SMCCC 1.0 (no `SMCCC_VERSION` by `PSCI_FEATURES`, as
/// DEN0028 asks to discover it) `SMCCC_ARCH_FEATURES` itself must be `NOT_SUPPORTED`.
fn smccc_workarounds<C: Call>() -> Result<(), CheckFailure> {
    use smccc::arch::{
        SMCCC_ARCH_FEATURES, SMCCC_ARCH_WORKAROUND_1, SMCCC_ARCH_WORKAROUND_2,
        SMCCC_ARCH_WORKAROUND_3, SMCCC_VERSION,
    };
    const NOT_SUPPORTED: i32 = -1;
    let call = |id: u32, arg: u32| C::call32(id, [arg, 0, 0, 0, 0, 0, 0])[0] as i32;
    let smccc_1_1 =
        psci::psci_features::<C>(SMCCC_VERSION).is_ok() && call(SMCCC_VERSION, 0) >= 0x1_0001;
    for id in [
        SMCCC_ARCH_WORKAROUND_1,
        SMCCC_ARCH_WORKAROUND_2,
        SMCCC_ARCH_WORKAROUND_3,
    ] {
        let features = call(SMCCC_ARCH_FEATURES, id);
        if !smccc_1_1 && features != NOT_SUPPORTED {
            return Err(CheckFailure::ArchFeaturesWithoutVersion { id, features });
        }
        // Workaround 2's argument 1 asks for the mitigation on (never turns it off).
        let ret = call(id, 1);
        let want = if features == 0 { 0 } else { NOT_SUPPORTED };
        if ret != want {
            return Err(CheckFailure::Workaround { id, features, ret });
        }
    }
    Ok(())
}

fn psci_cpu_on<C: Call>(platform: &Platform) -> Result<(), CheckFailure> {
    let psci_err = |call| move |error| CheckFailure::Psci { call, error };
    let version = psci::version::<C>().map_err(psci_err("PSCI_VERSION"))?;
    if version.major < 1 {
        return Err(CheckFailure::OldPsci {
            major: version.major,
            minor: version.minor,
        });
    }
    psci::psci_features::<C>(psci::PSCI_CPU_ON_64).map_err(psci_err("PSCI_FEATURES(CPU_ON)"))?;

    let entry = boot::secondary_entry as *const () as usize as u64;
    for cpu in 1..platform.cpu_count {
        let mpidr = CPU_MPIDR[cpu].load(SeqCst);
        psci::cpu_on::<C>(mpidr, entry, cpu as u64).map_err(psci_err("CPU_ON"))?;
        if !wait_for(WAIT_MS, || ONLINE[cpu].load(SeqCst)) {
            return Err(CheckFailure::NotOnline { cpu, mpidr });
        }
        if SECONDARY_GIC_FAILED[cpu].load(SeqCst) {
            return Err(CheckFailure::SecondaryGic { cpu });
        }
        let got = psci::affinity_info::<C>(mpidr, LowestAffinityLevel::All);
        if got != Ok(AffinityState::On) {
            return Err(CheckFailure::AffinityNotOn { mpidr, got });
        }
    }

    let expect = |what, mpidr, want| {
        let got = psci::cpu_on::<C>(mpidr, entry, 0);
        if got == Err(want) {
            Ok(())
        } else {
            Err(CheckFailure::CpuOnResult {
                what,
                mpidr,
                got,
                want,
            })
        }
    };
    expect(
        "the calling CPU",
        CPU_MPIDR[0].load(SeqCst),
        psci::Error::AlreadyOn,
    )?;
    if platform.cpu_count > 1 {
        expect(
            "a started secondary",
            CPU_MPIDR[1].load(SeqCst),
            psci::Error::AlreadyOn,
        )?;
    }
    let listed = &platform.mpidrs[..platform.cpu_count];
    let bogus = (0xf0..=0xfe_u64)
        .map(|aff| aff << 8 | aff)
        .find(|m| !listed.contains(m))
        .unwrap_or(0xfefe);
    expect(
        "a CPU not in the DTB",
        bogus,
        psci::Error::InvalidParameters,
    )
}

fn sgi(platform: &Platform, gic: &Gic) -> Result<(), CheckFailure> {
    let secondaries = 1..platform.cpu_count;
    if let Some(cpu) = secondaries.clone().find(|&cpu| !ONLINE[cpu].load(SeqCst)) {
        return Err(CheckFailure::SecondaryOffline { cpu });
    }
    // One secondary at a time: on GICv3 an SGI with the same INTID from two senders that
    // arrives before the first is taken is one pending interrupt (there is no per-source
    // state), so concurrent replies could legitimately merge.
    for (n, cpu) in secondaries.clone().enumerate() {
        gic.send_sgi(SGI_PING, cpu, CPU_MPIDR[cpu].load(SeqCst));
        let want = n as u32 + 1;
        wait_for(WAIT_MS, || {
            PONGS.load(SeqCst) >= want && PINGS[cpu].load(SeqCst) >= 1
        });
    }
    let want = (platform.cpu_count - 1) as u32;
    if let Some(cpu) = secondaries.clone().find(|&c| PINGS[c].load(SeqCst) != 1) {
        return Err(CheckFailure::SgiNotReceived {
            cpu,
            got: PINGS[cpu].load(SeqCst),
        });
    }
    let got = PONGS.load(SeqCst);
    if got != want {
        return Err(CheckFailure::SgiReplies { got, want });
    }
    Ok(())
}

/// Loads a word from `addr` with exactly one 4-byte `ldr`, so that the abort handler can skip
/// it; returns 0xdead_beef if the load aborted.
fn probe_read(addr: u64) -> u32 {
    let mut value: u32 = 0xdead_beef;
    // SAFETY: the address is outside guest RAM and every device the guest uses, so the load
    // touches no Rust-visible memory; if it aborts, `on_data_abort` accepts the abort (it was
    // armed) and the handler resumes after this single instruction, leaving `value` unchanged.
    unsafe {
        core::arch::asm!("ldr {v:w}, [{a}]", a = in(reg) addr, v = inout(reg) value, options(nostack, readonly));
    }
    value
}

/// What one armed probing load did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Probe {
    /// The load completed with this value.
    Read(u32),
    /// The load raised a synchronous exception (skipped by the handler).
    Exception {
        /// `ESR_EL1` of the exception.
        esr: u64,
        /// `FAR_EL1` of the exception.
        far: u64,
    },
}

/// Loads a word from `addr` (outside RAM and the guest's devices) with the abort hook armed,
/// as the `stage2` check does, and says whether it completed or raised an exception.
pub fn probe(addr: u64) -> Probe {
    ABORT_SEEN.store(false, SeqCst);
    ABORT_ARMED.store(true, SeqCst);
    let value = probe_read(addr);
    ABORT_ARMED.store(false, SeqCst);
    if ABORT_SEEN.load(SeqCst) {
        Probe::Exception {
            esr: ABORT_ESR.load(SeqCst),
            far: ABORT_FAR.load(SeqCst),
        }
    } else {
        Probe::Read(value)
    }
}

fn stage2(platform: &Platform) -> Result<(), CheckFailure> {
    for addr in [platform.ram.end() + PAST_RAM, UNASSIGNED_GAP] {
        ABORT_SEEN.store(false, SeqCst);
        ABORT_ARMED.store(true, SeqCst);
        let value = probe_read(addr);
        ABORT_ARMED.store(false, SeqCst);
        if !ABORT_SEEN.load(SeqCst) {
            return Err(CheckFailure::NoAbort { addr, value });
        }
        let esr = ABORT_ESR.load(SeqCst);
        let far = ABORT_FAR.load(SeqCst);
        let ec = spec::esr_ec(esr);
        if ec != spec::EC_DATA_ABORT_SAME_EL {
            return Err(CheckFailure::WrongAbortClass { addr, esr, ec });
        }
        if spec::esr_far_not_valid(esr) || far != addr {
            return Err(CheckFailure::WrongFar { addr, far, esr });
        }
    }
    Ok(())
}

/// The passed-through PL031: identification, a running clock, and exactly one match interrupt
/// on its SPI, all within `PASSTHROUGH_LIMIT_MS`.
fn passthrough(
    rtc: Result<Rtc, RtcNodeError>,
    platform: &Platform,
    gic: &Gic,
) -> Result<(), CheckFailure> {
    let rtc = rtc?;
    let deadline = counter() + ticks(PASSTHROUGH_LIMIT_MS);
    let dev = Pl031::new(&rtc);
    let (periph, cell) = dev.ids();
    if !spec::is_pl031(periph, cell) {
        return Err(CheckFailure::NotPl031 { periph, cell });
    }
    dev.start();
    if dev.now() == 0 {
        return Err(CheckFailure::RtcStopped);
    }
    dev.unmask(false);
    dev.clear();
    RTC_IRQS.store(0, SeqCst);
    let cpu = cpu_index();
    let result = gic
        .enable_spi(rtc.intid, rtc.edge, cpu, CPU_MPIDR[cpu].load(SeqCst))
        .map_err(CheckFailure::RtcSpi)
        .and_then(|()| await_match(&dev, gic, platform.vtimer_intid, deadline));
    dev.unmask(false);
    dev.clear();
    let disabled = gic.disable_spi(rtc.intid).map_err(CheckFailure::RtcSpi);
    result.and(disabled)
}

/// Programs `RTCMR` one second ahead, unmasks the match interrupt, waits for it until
/// `deadline` (sleeping, with the virtual timer `vtimer_intid` as alarm) and judges what
/// arrived.
fn await_match(
    dev: &Pl031,
    gic: &Gic,
    vtimer_intid: u32,
    deadline: u64,
) -> Result<(), CheckFailure> {
    // RTCDR must not tick between its read and the RTCMR write, or the match is either
    // immediate or a counter wrap away; each attempt clears what a missed match raised.
    let mut mr = None;
    let (mut from, mut to) = (0, 0);
    for _ in 0..MATCH_ATTEMPTS {
        dev.clear();
        from = dev.now();
        dev.set_match(from.wrapping_add(1));
        to = dev.now();
        if to == from {
            mr = Some(from.wrapping_add(1));
            break;
        }
    }
    let mr = mr.ok_or(CheckFailure::RtcUnstable { from, to })?;
    let armed = counter();
    dev.unmask(true);
    let watch = ticks(REPEAT_WATCH_MS);
    let sleep =
        |until, want| sleep_until(gic, vtimer_intid, until, || RTC_IRQS.load(SeqCst) >= want);
    if sleep(deadline.saturating_sub(watch), 1) {
        sleep(counter() + watch, 2);
    }
    let irqs = RTC_IRQS.load(SeqCst);
    let [dr, ris, mis] = RTC_AT_IRQ.each_ref().map(|a| a.load(SeqCst));
    let seen = MatchObservation {
        mr,
        irqs,
        at_irq: (irqs > 0).then_some(Pl031Status { dr, ris, mis }),
        after: dev.status(),
    };
    let ms = (counter() - armed) * 1000 / frequency().max(1);
    spec::judge_match(&seen).map_err(|problem| CheckFailure::RtcMatch { problem, ms })
}

/// PL031 interrupt: records the status registers the first time, then clears the match
/// (which lowers the level-sensitive line before the EOI). A repeat means the clear did not
/// work: the RTC is masked and the SPI disabled, so that a line stuck high cannot keep the
/// CPU in this handler for ever, and the check reports it.
fn rtc_irq(rtc: &Rtc, gic: &Gic) {
    let dev = Pl031::new(rtc);
    if RTC_IRQS.load(SeqCst) == 0 {
        let status = dev.status();
        for (slot, value) in RTC_AT_IRQ.iter().zip([status.dr, status.ris, status.mis]) {
            slot.store(value, SeqCst);
        }
    }
    dev.clear();
    if RTC_IRQS.fetch_add(1, SeqCst) > 0 {
        dev.unmask(false);
        // The check disables the SPI again, and reports an error there if this one failed.
        let _ = gic.disable_spi(rtc.intid);
    }
}

/// Sync exception hook: if the stage-2 check armed it, records the exception (the check
/// judges its class and address) and asks the handler to skip the faulting load.
pub fn on_data_abort(esr: u64, far: u64) -> bool {
    if !ABORT_ARMED.swap(false, SeqCst) {
        return false;
    }
    ABORT_ESR.store(esr, SeqCst);
    ABORT_FAR.store(far, SeqCst);
    ABORT_SEEN.store(true, SeqCst);
    true
}

/// IRQ hook: acknowledges one interrupt, handles it, ends it.
pub fn on_irq() {
    let Some(gic) = GIC.get() else { return };
    let Some(ack) = gic.ack() else { return };
    let cpu = cpu_index();
    if conformance::on_irq(gic, cpu, &ack) {
        gic.eoi(ack);
        return;
    }
    let vtimer = PLATFORM.get().map(|p| p.vtimer_intid);
    let pmu_intid = PLATFORM.get().and_then(|p| p.pmu_intid);
    let rtc = PLATFORM.get().and_then(|p| p.rtc).and_then(Result::ok);
    // In echo mode the PL011's SPI is expected (and never counted as unexpected).
    let echo_uart = PLATFORM
        .get()
        .filter(|p| p.after == AfterChecks::Echo)
        .and_then(|p| p.uart_intid);
    match ack.intid {
        intid if Some(intid) == vtimer && BENCH_TIMER.load(SeqCst) => {
            BENCH_IRQ_AT.store(counter(), SeqCst);
            CNTV_CTL_EL0.write(CNTV_CTL_EL0::ENABLE::CLEAR + CNTV_CTL_EL0::IMASK::SET);
        }
        intid if intid == u32::from(SGI_BENCH) && cpu != 0 => {
            BENCH_IRQ_AT.store(counter(), SeqCst);
            gic.send_sgi(SGI_PONG, 0, CPU_MPIDR[0].load(SeqCst));
        }
        intid if Some(intid) == vtimer && ALARM.load(SeqCst) => {
            CNTV_CTL_EL0.write(CNTV_CTL_EL0::ENABLE::CLEAR + CNTV_CTL_EL0::IMASK::SET);
        }
        intid if Some(intid) == vtimer => timer_tick(),
        intid if PLATFORM.get().and_then(|p| p.ptimer_intid) == Some(intid) => ptimer_irq(),
        intid if Some(intid) == pmu_intid => pmu::on_overflow(),
        intid if rtc.is_some_and(|r| r.intid == intid) => {
            if let Some(rtc) = rtc {
                rtc_irq(&rtc, gic);
            }
        }
        intid if Some(intid) == echo_uart => echo::on_uart_irq(),
        intid if intid == u32::from(SGI_PING) && cpu != 0 => {
            if let Err(got) = pmu::intact(cpu) {
                PMU_CLOBBERED[cpu].store(got.max(1), SeqCst);
            }
            PMU_CHECKED[cpu].store(true, SeqCst);
            PINGS[cpu].fetch_add(1, SeqCst);
            gic.send_sgi(SGI_PONG, 0, CPU_MPIDR[0].load(SeqCst));
        }
        intid if intid == u32::from(SGI_PONG) && cpu == 0 => {
            PONGS.fetch_add(1, SeqCst);
        }
        intid => {
            OTHER_IRQS.fetch_add(1, SeqCst);
            LAST_OTHER_IRQ.store(intid, SeqCst);
        }
    }
    gic.eoi(ack);
}

/// Secondary CPU bring-up after the stack and vector table are set (from `secondary_main`).
pub fn secondary(cpu: usize, mpidr: u64) -> ! {
    if let Some(gic) = GIC.get() {
        if let Err(e) = gic.init_cpu(cpu, mpidr) {
            println!("CPU {cpu}: {e}");
            SECONDARY_GIC_FAILED[cpu].store(true, SeqCst);
        }
    }
    pmu::plant(cpu);
    ONLINE[cpu].store(true, SeqCst);
    sysreg::irq_enable();
    loop {
        wfi();
        if let Some(gic) = GIC.get() {
            conformance::poll_group0(gic);
        }
    }
}

/// The `pmu` check: the PMU is each CPU's own. Every CPU plants a value of its own in its
/// (stopped) cycle counter and event counter 0 as it starts; the boot CPU checks its values
/// after the secondaries have started and been pinged, each secondary checks its own when
/// pinged. Under a hypervisor that runs several vCPUs on one physical CPU without switching
/// the PMU, the later vCPU's values overwrite the earlier one's. Then the cycle counter must
/// count when enabled.
mod pmu {
    use super::{
        counter, ticks, CheckFailure, Platform, GIC, PMU_CHECKED, PMU_CLOBBERED, PMU_IRQS,
        PMU_OVERFLOWS, WAIT_MS,
    };
    use crate::sysreg::pmu::*;
    use aarch64_cpu::registers::{Writeable, CNTV_CTL_EL0, CNTV_CVAL_EL0};
    use core::sync::atomic::Ordering::SeqCst;

    /// `PMCR_EL0.E`.
    const PMCR_E: u64 = 1;
    /// `PMCR_EL0.LC`: the cycle counter overflows at 64 bits.
    const PMCR_LC: u64 = 1 << 6;
    /// `PMCR_EL0.DP`: the cycle counter stops where event counting is prohibited.
    const PMCR_DP: u64 = 1 << 5;
    /// Cycles before the planted cycle count overflows.
    const CYCLES_TO_OVERFLOW: u64 = 2000;
    /// The cycle counter's bit in `PMCNTENSET_EL0`/`PMCNTENCLR_EL0`.
    const CYCLES: u64 = 1 << 31;

    fn present() -> bool {
        let ver = (read_id_aa64dfr0_el1() >> 8) & 0xf;
        ver != 0 && ver != 0xf
    }

    /// The value CPU `cpu` plants (the event counter gets its low 32 bits).
    pub fn tag(cpu: usize) -> u64 {
        0x5eed_0000_1234 | (cpu as u64) << 20
    }

    /// Stops every counter and writes this CPU's tag into the cycle counter and event
    /// counter 0.
    pub fn plant(cpu: usize) {
        if !present() {
            return;
        }
        write_pmcntenclr_el0(0xffff_ffff);
        write_pmccntr_el0(tag(cpu));
        write_pmselr_el0(0);
        write_pmxevcntr_el0(tag(cpu) & 0xffff_ffff);
    }

    /// `Ok` if both counters still hold this CPU's tag, else the cycle counter read.
    pub fn intact(cpu: usize) -> Result<(), u64> {
        if !present() {
            return Ok(());
        }
        let cycles = read_pmccntr_el0();
        write_pmselr_el0(0);
        let event = read_pmxevcntr_el0();
        if cycles == tag(cpu) && event == tag(cpu) & 0xffff_ffff {
            Ok(())
        } else {
            Err(cycles)
        }
    }

    pub fn check(platform: &Platform) -> Result<(), CheckFailure> {
        if !present() {
            return Err(CheckFailure::NoPmu);
        }
        if let Err(got) = intact(0) {
            return Err(CheckFailure::PmuClobbered {
                cpu: 0,
                got,
                want: tag(0),
            });
        }
        for cpu in 1..platform.cpu_count {
            let got = PMU_CLOBBERED[cpu].load(SeqCst);
            if !PMU_CHECKED[cpu].load(SeqCst) {
                return Err(CheckFailure::PmuNotChecked { cpu });
            }
            if got != 0 {
                return Err(CheckFailure::PmuClobbered {
                    cpu,
                    got,
                    want: tag(cpu),
                });
            }
        }
        // Count cycles at EL1 and EL0 for a while.
        write_pmccfiltr_el0(0);
        write_pmccntr_el0(0);
        write_pmcr_el0(read_pmcr_el0() | PMCR_E);
        write_pmcntenset_el0(CYCLES);
        let mut x = 0u64;
        for i in 0..10_000u64 {
            x = core::hint::black_box(x.wrapping_add(i));
        }
        let counted = read_pmccntr_el0();
        write_pmcntenclr_el0(CYCLES);
        write_pmcr_el0(read_pmcr_el0() & !PMCR_E);
        if counted == 0 {
            return Err(CheckFailure::PmuNotCounting);
        }
        Ok(())
    }

    /// The `pmu-overflow` check, on every board (the flags are architectural state, whether
    /// or not the machine wires the PMU interrupt): the cycle counter, a few cycles short of
    /// its 64-bit overflow and with its interrupt disabled, must wrap and set bit 31 of
    /// `PMOVSSET_EL0`; `PMOVSCLR_EL0` clears that flag and `PMOVSSET_EL0` sets it again.
    pub fn overflow_flag() -> Result<(), CheckFailure> {
        if !present() {
            return Err(CheckFailure::NoPmu);
        }
        let fail = |what| {
            let failure = CheckFailure::PmuOverflowFlag {
                what,
                flags: read_pmovsset_el0(),
                cycles: read_pmccntr_el0(),
            };
            write_pmcntenclr_el0(CYCLES);
            write_pmovsclr_el0(0xffff_ffff);
            write_pmcr_el0(read_pmcr_el0() & !(PMCR_E | PMCR_LC));
            Err(failure)
        };
        write_pmintenclr_el1(0xffff_ffff);
        write_pmovsclr_el0(0xffff_ffff);
        if read_pmovsset_el0() & CYCLES != 0 {
            return fail("PMOVSCLR_EL0 did not clear the flag");
        }
        write_pmccfiltr_el0(0);
        write_pmcr_el0(read_pmcr_el0() | PMCR_E | PMCR_LC);
        write_pmccntr_el0(u64::MAX - CYCLES_TO_OVERFLOW);
        write_pmcntenset_el0(CYCLES);
        let deadline = counter() + ticks(WAIT_MS);
        while read_pmovsset_el0() & CYCLES == 0 && counter() < deadline {
            core::hint::black_box(read_pmccntr_el0());
        }
        write_pmcntenclr_el0(CYCLES);
        if read_pmovsset_el0() & CYCLES == 0 {
            return fail(
                "the counter was started 2000 cycles short of overflow, the flag never set",
            );
        }
        // Wrapped: it counts up from 0 again (far below where it started).
        if read_pmccntr_el0() >= u64::MAX - CYCLES_TO_OVERFLOW {
            return fail("the flag is set but the counter did not wrap");
        }
        write_pmovsclr_el0(CYCLES);
        if read_pmovsset_el0() & CYCLES != 0 {
            return fail("PMOVSCLR_EL0 did not clear the flag");
        }
        write_pmovsset_el0(CYCLES);
        if read_pmovsset_el0() & CYCLES == 0 {
            return fail("a write of PMOVSSET_EL0 did not set the flag");
        }
        write_pmovsclr_el0(0xffff_ffff);
        write_pmcr_el0(read_pmcr_el0() & !(PMCR_E | PMCR_LC));
        Ok(())
    }

    /// The `pmu-idle` check: the cycle counter and event counter 0 (CPU_CYCLES) count EL0 and
    /// EL1 with NSH (count at EL2) set, as Linux sets it in a guest for an event without
    /// `exclude_hv`. Busy for 5 ms they count; in a PSCI standby for 250 ms (the vCPU blocked
    /// in the hypervisor: descheduled, or its CPU idle at EL2) they must count less than a
    /// tenth of that rate. (Under TCG the counters follow the host's clock: a QEMU thread
    /// that the host deschedules for a few ms while the vCPU runs its suspend loop counts
    /// them. With 50 ms of standby one such stall on a loaded 2-core machine broke the
    /// bound; 250 ms leaves room for ~25 ms of stalls.)
    /// Without the hypervisor clearing NSH (or `MDCR_EL2.HPMD`/`HCCD`), the time its CPU
    /// spends at EL2 waiting for the vCPU's interrupt would be counted.
    pub fn idle<C: smccc::Call>(platform: &Platform, gic: &super::Gic) -> Result<(), CheckFailure> {
        if !present() {
            return Err(CheckFailure::NoPmu);
        }
        /// `PMEVTYPER<n>_EL0.NSH` / `PMCCFILTR_EL0.NSH`.
        const NSH: u64 = 1 << 27;
        /// CPU_CYCLES.
        const CPU_CYCLES: u64 = 0x11;
        write_pmcntenclr_el0(0xffff_ffff);
        write_pmintenclr_el1(0xffff_ffff);
        write_pmccfiltr_el0(NSH);
        write_pmevtyper0_el0(NSH | CPU_CYCLES);
        write_pmccntr_el0(0);
        write_pmevcntr0_el0(0);
        write_pmcr_el0((read_pmcr_el0() | PMCR_E | PMCR_LC) & !PMCR_DP);
        write_pmcntenset_el0(CYCLES | 1);
        let sample = || (counter(), read_pmccntr_el0(), read_pmevcntr0_el0());
        let t0 = sample();
        let busy_until = t0.0 + ticks(5);
        while counter() < busy_until {
            core::hint::spin_loop();
        }
        let t1 = sample();
        // PSCI CPU_SUSPEND to a standby state: the vCPU waits at the hypervisor's (not in
        // its own WFI, which a hypervisor may let it run natively and which a CPU may count
        // in), for its virtual timer 250 ms from now.
        let deadline = t1.0 + ticks(250);
        super::ALARM.store(true, SeqCst);
        gic.enable_ppi(super::cpu_index(), platform.vtimer_intid);
        crate::sysreg::irq_disable();
        CNTV_CVAL_EL0.set(deadline);
        CNTV_CTL_EL0.write(CNTV_CTL_EL0::ENABLE::SET + CNTV_CTL_EL0::IMASK::CLEAR);
        let mut suspended = Ok(());
        while counter() < deadline && suspended.is_ok() {
            suspended = smccc::psci::cpu_suspend::<C>(0, 0, 0);
        }
        let t2 = sample();
        CNTV_CTL_EL0.write(CNTV_CTL_EL0::ENABLE::CLEAR + CNTV_CTL_EL0::IMASK::SET);
        crate::sysreg::irq_enable();
        super::wait_for(1, || false);
        super::ALARM.store(false, SeqCst);
        write_pmcntenclr_el0(CYCLES | 1);
        write_pmcr_el0(read_pmcr_el0() & !(PMCR_E | PMCR_LC));
        write_pmccfiltr_el0(0);
        write_pmevtyper0_el0(0);
        if let Err(e) = suspended {
            return Err(CheckFailure::PmuStandby(e));
        }
        let (busy_ticks, idle_ticks) = (t1.0 - t0.0, t2.0 - t1.0);
        let checks = [
            ("PMCCNTR_EL0", t1.1 - t0.1, t2.1.wrapping_sub(t1.1)),
            (
                "event counter 0 (CPU_CYCLES)",
                t1.2 - t0.2,
                t2.2.wrapping_sub(t1.2) & 0xffff_ffff,
            ),
        ];
        for (name, busy, idle) in checks {
            if busy == 0 {
                return Err(CheckFailure::PmuNotCounting);
            }
            // idle / idle_ticks < busy / busy_ticks / 10, in integers.
            if u128::from(idle) * u128::from(busy_ticks) * 10
                >= u128::from(busy) * u128::from(idle_ticks)
            {
                return Err(CheckFailure::PmuCountedIdle {
                    counter: name,
                    idle,
                    idle_ticks,
                    busy,
                    busy_ticks,
                });
            }
        }
        Ok(())
    }

    /// The `pmu-irq` check: the cycle counter, a few cycles short of its 64-bit overflow,
    /// must raise the PMU interrupt of the DTB's `arm,armv8-pmuv3` node exactly once (the
    /// handler clears the overflow flag and the interrupt enable).
    pub fn overflow_interrupt(platform: &Platform) -> Result<(), CheckFailure> {
        let (Some(intid), Some(gic)) = (platform.pmu_intid, GIC.get()) else {
            return Err(CheckFailure::NoPmuInterrupt);
        };
        gic.enable_ppi(super::cpu_index(), intid);
        PMU_IRQS.store(0, SeqCst);
        write_pmovsclr_el0(0xffff_ffff);
        write_pmcr_el0(read_pmcr_el0() | PMCR_E | PMCR_LC);
        write_pmccntr_el0(u64::MAX - CYCLES_TO_OVERFLOW);
        write_pmintenset_el1(CYCLES);
        write_pmcntenset_el0(CYCLES);
        crate::sysreg::irq_enable();
        let deadline = counter() + ticks(WAIT_MS);
        while PMU_IRQS.load(SeqCst) == 0 && counter() < deadline {
            core::hint::spin_loop();
        }
        // A second interrupt would mean the overflow did not stay handled.
        let settle = counter() + ticks(20);
        while counter() < settle {
            core::hint::spin_loop();
        }
        write_pmcntenclr_el0(CYCLES);
        write_pmintenclr_el1(CYCLES);
        write_pmcr_el0(read_pmcr_el0() & !(PMCR_E | PMCR_LC));
        let irqs = PMU_IRQS.load(SeqCst);
        let flags = PMU_OVERFLOWS.load(SeqCst);
        if irqs != 1 || flags & CYCLES == 0 {
            return Err(CheckFailure::PmuOverflowIrq { intid, irqs, flags });
        }
        Ok(())
    }

    /// The PMU interrupt handler: notes and clears the overflow, stops further interrupts.
    pub fn on_overflow() {
        let flags = read_pmovsclr_el0();
        write_pmovsclr_el0(flags);
        write_pmintenclr_el1(CYCLES);
        PMU_OVERFLOWS.store(flags, SeqCst);
        PMU_IRQS.fetch_add(1, SeqCst);
    }
}

/// Prints the median cost, in counter ticks, of two null HVC/SMC calls (`SMCCC_VERSION`,
/// `PSCI_VERSION`) and of two trapped MMIO
/// reads (the console UART's `UARTFR`, the GIC distributor's `GICD_TYPER`),
/// and the median latency of interrupt delivery: virtual timer expiry to the guest's
/// handler (the CPU idle in `WFI`, and busy), and an SGI from CPU 0 to CPU 1 (idle in `WFI`)
/// to CPU 1's handler. Latencies are taken after the interrupt is acknowledged, as a
/// driver's handler would see them.
pub fn bench<C: Call>(platform: &Platform, gic: &Gic, uart: &Pl011) {
    let mut samples = [0_u64; BENCH_ITERATIONS];
    let mut measure = |op: &mut dyn FnMut()| {
        for sample in samples.iter_mut() {
            let t0 = counter();
            op();
            *sample = counter() - t0;
        }
        spec::median(&mut samples).unwrap_or(0)
    };
    let hvc = measure(&mut || {
        let _ = smccc::arch::version::<C>();
    });
    // PSCI_VERSION: a PSCI call, which a hypervisor may handle on another path than the
    // SMCCC architecture calls above.
    let psci = measure(&mut || {
        let _ = smccc::psci::version::<C>();
    });
    let mmio = measure(&mut || {
        core::hint::black_box(uart.flags());
    });
    // GICD_TYPER (offset 4): a device the hypervisor emulates on its general exit path
    // (the console UART above has a fast path of its own).
    let mmio_gic = measure(&mut || {
        core::hint::black_box(gic.distributor().read32(4));
    });
    let vtimer_idle = timer_latency(platform, gic, true);
    let vtimer_busy = timer_latency(platform, gic, false);
    let sgi = if platform.cpu_count > 1 && ONLINE[1].load(SeqCst) {
        sgi_latency(gic)
    } else {
        0
    };
    println!(
        "BENCH hvc_ticks={hvc} psci_ticks={psci} mmio_ticks={mmio} mmio_gic_ticks={mmio_gic} vtimer_idle_ticks={vtimer_idle} vtimer_busy_ticks={vtimer_busy} sgi_ticks={sgi} freq={}",
        frequency()
    );
}

/// Median ticks from the virtual timer's compare value to its handler, waiting in `WFI`
/// (`idle`) or in a loop with interrupts unmasked.
fn timer_latency(platform: &Platform, gic: &Gic, idle: bool) -> u64 {
    let mut samples = [0_u64; LATENCY_ITERATIONS];
    gic.enable_ppi(cpu_index(), platform.vtimer_intid);
    BENCH_TIMER.store(true, SeqCst);
    for sample in samples.iter_mut() {
        BENCH_IRQ_AT.store(0, SeqCst);
        let cval = counter() + TIMER_LEAD_TICKS;
        CNTV_CVAL_EL0.set(cval);
        CNTV_CTL_EL0.write(CNTV_CTL_EL0::ENABLE::SET + CNTV_CTL_EL0::IMASK::CLEAR);
        let deadline = cval + ticks(WAIT_MS);
        let at = if idle {
            wait_in_wfi(deadline)
        } else {
            sysreg::irq_enable();
            while BENCH_IRQ_AT.load(SeqCst) == 0 && counter() < deadline {}
            BENCH_IRQ_AT.load(SeqCst)
        };
        // An interrupt that never came shows as an impossible figure, not as zero.
        *sample = if at == 0 {
            u64::MAX
        } else {
            at.saturating_sub(cval)
        };
    }
    BENCH_TIMER.store(false, SeqCst);
    CNTV_CTL_EL0.write(CNTV_CTL_EL0::ENABLE::CLEAR + CNTV_CTL_EL0::IMASK::SET);
    spec::median(&mut samples).unwrap_or(0)
}

/// Median ticks from just before CPU 0 writes the SGI to CPU 1's handler; CPU 0 waits in
/// `WFI` for the answer, so that CPU 1 gets the (round-robin) host CPU at once.
fn sgi_latency(gic: &Gic) -> u64 {
    let mut samples = [0_u64; LATENCY_ITERATIONS];
    let target = CPU_MPIDR[1].load(SeqCst);
    for sample in samples.iter_mut() {
        BENCH_IRQ_AT.store(0, SeqCst);
        let pongs = PONGS.load(SeqCst);
        let t0 = counter();
        gic.send_sgi(SGI_BENCH, 1, target);
        let deadline = t0 + ticks(WAIT_MS);
        loop {
            sysreg::irq_disable();
            if PONGS.load(SeqCst) > pongs || counter() > deadline {
                break;
            }
            wfi();
            sysreg::irq_enable();
        }
        sysreg::irq_enable();
        *sample = match BENCH_IRQ_AT.load(SeqCst) {
            0 => u64::MAX,
            at => at.saturating_sub(t0),
        };
    }
    spec::median(&mut samples).unwrap_or(0)
}

/// Sleeps in `WFI` until the benchmark's handler ran or `deadline`; returns its time stamp.
fn wait_in_wfi(deadline: u64) -> u64 {
    loop {
        sysreg::irq_disable();
        let at = BENCH_IRQ_AT.load(SeqCst);
        if at != 0 || counter() > deadline {
            sysreg::irq_enable();
            return at;
        }
        wfi();
        sysreg::irq_enable();
    }
}
