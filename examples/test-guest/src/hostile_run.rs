//! `hostile` mode on the target: runs the operations `hostile.rs` chooses, counts the
//! exceptions they raise (the exception handler records and skips them), and prints one
//! summary line per kind.

use crate::console::{UARTCR, UARTCR_ENABLE, UARTIMSC};
use crate::dt::{Conduit, Platform};
use crate::hostile::{
    self, Args, Counters, Distinct, Kind, NoIsvForm, Op, Rng, SysregOp, Targets,
    EC_DATA_ABORT_LOWER, EC_DATA_ABORT_SAME, EC_UNKNOWN,
};
use crate::mmio::Mmio;
use crate::{println, sysreg};
use aarch64_cpu::registers::{Readable, Writeable, CNTP_CTL_EL0, CNTP_CVAL_EL0, CNTP_TVAL_EL0};
use core::arch::asm;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::SeqCst};

/// Set while the operations run: the exception handler then records and skips.
static ACTIVE: AtomicBool = AtomicBool::new(false);
/// Data aborts taken while active.
static ABORTS: AtomicU32 = AtomicU32::new(0);
/// Undefined-instruction exceptions taken while active.
static UNDEFS: AtomicU32 = AtomicU32::new(0);
/// Other exceptions taken while active.
static OTHERS: AtomicU32 = AtomicU32::new(0);
/// `ESR_EL1` of the last "other" exception, for the summary.
static LAST_OTHER_ESR: AtomicU64 = AtomicU64::new(0);

/// `GICD_SGIR` (GICv2 IHI 0048B, 4.3.15).
const GICD_SGIR: u64 = 0xf00;
/// `UARTLCR_H` offset and the 8N1, FIFO-enabled value restored after the run (PL011 TRM
/// 3.3.7); `UARTCR` and `UARTIMSC` come from the console driver.
const UARTLCR_H: usize = 0x2c;
const UARTLCR_H_8N1_FIFO: u32 = 0b11 << 5 | 1 << 4;

/// Called for a synchronous exception, an SError, an IRQ or an FIQ (`vector` 0..15); returns
/// whether hostile mode handled it. A synchronous exception is recorded by class and skipped
/// (`ELR_EL1` += 4 by the caller when this returns `Some(true)`); an asynchronous one is only
/// counted (`Some(false)`).
pub fn on_exception(synchronous: bool, esr: u64) -> Option<bool> {
    if !ACTIVE.load(SeqCst) {
        return None;
    }
    if !synchronous {
        OTHERS.fetch_add(1, SeqCst);
        LAST_OTHER_ESR.store(esr, SeqCst);
        return Some(false);
    }
    match hostile::esr_ec(esr) {
        EC_DATA_ABORT_SAME | EC_DATA_ABORT_LOWER => ABORTS.fetch_add(1, SeqCst),
        EC_UNKNOWN => UNDEFS.fetch_add(1, SeqCst),
        _ => {
            LAST_OTHER_ESR.store(esr, SeqCst);
            OTHERS.fetch_add(1, SeqCst)
        }
    };
    Some(true)
}

fn snapshot() -> [u32; 3] {
    [
        ABORTS.load(SeqCst),
        UNDEFS.load(SeqCst),
        OTHERS.load(SeqCst),
    ]
}

/// Runs `args.iters` operations on the CPU with affinity `own_mpidr`, then prints the summary.
/// Interrupts stay masked throughout (nothing here waits for one).
pub fn run(platform: &Platform, args: Args, own_mpidr: u64) {
    let targets = Targets::new(platform, own_mpidr);
    println!("hostile: start seed={} iters={}", args.seed, args.iters);
    let mut rng = Rng::new(args.seed);
    let mut counters = [Counters::default(); Kind::ALL.len()];
    let mut hvc_returns = Distinct::<32>::default();
    let mut smc_returns = Distinct::<32>::default();
    let mut cpu_on_returns = Distinct::<8>::default();
    ACTIVE.store(true, SeqCst);
    for _ in 0..args.iters {
        let op = hostile::choose(&mut rng, &targets);
        let before = snapshot();
        let outcome = execute(&op, &targets);
        let after = snapshot();
        let c = &mut counters[op.kind().index()];
        c.ops += 1;
        c.aborts += after[0] - before[0];
        c.undef += after[1] - before[1];
        c.errors += after[2] - before[2];
        let trapped = after != before;
        match (outcome, op.kind()) {
            // A call that raised an exception returned nothing.
            (Outcome::Returned(_), _) if trapped => {}
            (Outcome::Returned(w0), kind) => {
                let code = w0 as u32 as i32;
                if code < 0 {
                    c.errors += 1;
                }
                match kind {
                    Kind::Hvc => hvc_returns.insert(code),
                    Kind::Smc => smc_returns.insert(code),
                    _ => cpu_on_returns.insert(code),
                }
            }
            (Outcome::Mismatch, _) => c.errors += 1,
            (Outcome::Done, _) => {}
        }
    }
    ACTIVE.store(false, SeqCst);
    restore(platform);
    for kind in Kind::ALL {
        let c = counters[kind.index()];
        println!(
            "hostile: {} ops={} aborts={} undef={} errors={}",
            kind.name(),
            c.ops,
            c.aborts,
            c.undef,
            c.errors
        );
    }
    print_returns("hvc", &hvc_returns);
    print_returns("smc", &smc_returns);
    print_returns("cpu_on", &cpu_on_returns);
    let others = OTHERS.load(SeqCst);
    if others > 0 {
        println!(
            "hostile: {others} exception(s) neither data abort nor undefined, last ESR_EL1={:#x}",
            LAST_OTHER_ESR.load(SeqCst)
        );
    }
    println!("hostile: done seed={} iters={}", args.seed, args.iters);
}

fn print_returns<const N: usize>(name: &str, returns: &Distinct<N>) {
    let sorted = returns.sorted();
    println!(
        "hostile: {name} distinct returns={}{} {:?}",
        returns.len(),
        if returns.overflow > 0 { "+" } else { "" },
        &sorted[..returns.len()]
    );
}

/// Puts the console back as `console.rs` set it (random writes may have disabled it) and
/// stops the EL1 physical timer.
fn restore(platform: &Platform) {
    // SAFETY: (1) the region is the PL011's `reg` from the DTB, device memory Rust never
    // uses; (2) PL011 register writes do not change memory.
    let uart = unsafe { Mmio::new(platform.uart.base as usize, platform.uart.size as usize) };
    uart.write32(UARTIMSC, 0);
    uart.write32(UARTLCR_H, UARTLCR_H_8N1_FIFO);
    uart.write32(UARTCR, UARTCR_ENABLE);
    CNTP_CTL_EL0.set(0);
}

/// What an operation left to count.
enum Outcome {
    /// Nothing to judge beyond the exceptions it raised.
    Done,
    /// An SMCCC call returned this x0.
    Returned(u64),
    /// A register read back differently from what was written.
    Mismatch,
}

fn execute(op: &Op, t: &Targets) -> Outcome {
    match *op {
        Op::Mmio { addr, width, value } => {
            mmio(addr, width, value);
            Outcome::Done
        }
        Op::Call { conduit, args } => Outcome::Returned(smccc_call(conduit, args)),
        Op::Sysreg(op) => sysreg_op(op),
        Op::NoIsv { form, addr, value } => {
            no_isv(form, addr, value);
            Outcome::Done
        }
        Op::SgiV3(value) => {
            sysreg::write_icc_sgi1r_el1(value);
            Outcome::Done
        }
        Op::SgiV2(value) => {
            mmio(t.gicd.base + GICD_SGIR, 4, Some(value.into()));
            Outcome::Done
        }
        Op::CpuOn {
            function,
            target,
            entry,
            context,
        } => Outcome::Returned(smccc_call(
            t.conduit,
            [function.into(), target, entry, context],
        )),
    }
}

/// One naturally aligned access at `addr`, which `hostile::choose` keeps outside RAM.
fn mmio(addr: u64, width: u8, value: Option<u64>) {
    let a = addr as usize;
    // SAFETY: (1) `addr` is outside guest RAM (`hostile::choose`, host-tested), so no Rust
    // object is read or written; (2) it is aligned to `width`; (3) if nothing answers there,
    // the data abort is recorded and skipped by the hostile-mode handler.
    unsafe {
        match (width, value) {
            (1, None) => drop(core::ptr::read_volatile(a as *const u8)),
            (2, None) => drop(core::ptr::read_volatile(a as *const u16)),
            (4, None) => drop(core::ptr::read_volatile(a as *const u32)),
            (_, None) => drop(core::ptr::read_volatile(a as *const u64)),
            (1, Some(v)) => core::ptr::write_volatile(a as *mut u8, v as u8),
            (2, Some(v)) => core::ptr::write_volatile(a as *mut u16, v as u16),
            (4, Some(v)) => core::ptr::write_volatile(a as *mut u32, v as u32),
            (_, Some(v)) => core::ptr::write_volatile(a as *mut u64, v),
        }
    }
}

/// `hvc #0` / `smc #0` with x0..x3 = `args`; returns x0.
fn smccc_call(conduit: Conduit, args: [u64; 4]) -> u64 {
    let [mut x0, mut x1, mut x2, mut x3] = args;
    // SAFETY: `hostile::choose` never passes a function that powers off, resets, suspends or
    // starts a CPU at a random address, and `CPU_ON` ops always carry an entry point outside
    // RAM or unaligned; an undefined call is skipped by the hostile-mode handler. The callee
    // may clobber the caller-saved registers (SMCCC DEN0028 2.6), hence `clobber_abi`.
    unsafe {
        match conduit {
            Conduit::Hvc => asm!("hvc #0", inout("x0") x0, inout("x1") x1, inout("x2") x2,
                inout("x3") x3, clobber_abi("C"), options(nostack)),
            Conduit::Smc => asm!("smc #0", inout("x0") x0, inout("x1") x1, inout("x2") x2,
                inout("x3") x3, clobber_abi("C"), options(nostack)),
        }
    }
    let _ = (x1, x2, x3);
    x0
}

fn sysreg_op(op: SysregOp) -> Outcome {
    let before = snapshot();
    let matches = match op {
        SysregOp::CntpCtl(v) => {
            // ENABLE (bit 0) and IMASK (bit 1) read back; ISTATUS is read-only.
            CNTP_CTL_EL0.set(v);
            CNTP_CTL_EL0.get() & 3 == v & 3
        }
        SysregOp::CntpCval(v) => {
            CNTP_CVAL_EL0.set(v);
            CNTP_CVAL_EL0.get() == v
        }
        SysregOp::CntpTval(v) => {
            CNTP_TVAL_EL0.set(v);
            let _ = CNTP_TVAL_EL0.get();
            true
        }
        SysregOp::Sgi1r(v) => {
            sysreg::write_icc_sgi1r_el1(v);
            true
        }
        SysregOp::Impdef(n) => {
            let _ = sysreg::read_impdef(n);
            true
        }
    };
    // A trapped access that was skipped reads back garbage: only judge completed ones.
    if matches || snapshot() != before {
        Outcome::Done
    } else {
        Outcome::Mismatch
    }
}

/// One access of `form` at `addr` (outside RAM, inside the PL011 or GICD frame).
fn no_isv(form: NoIsvForm, addr: u64, value: u64) {
    let (mut base, v) = (addr as usize, value);
    // SAFETY: (1) every byte accessed is outside guest RAM (`hostile::choose`, host-tested);
    // the pre-index forms start from `addr - 4` and access `addr`; (2) the registers the asm
    // writes are declared as outputs; (3) an abort is recorded and skipped by the handler,
    // leaving the outputs and the base register unchanged.
    unsafe {
        match form {
            NoIsvForm::LdpW => asm!("ldp {a:w}, {b:w}, [{p}]", p = in(reg) base,
                a = out(reg) _, b = out(reg) _, options(nostack)),
            NoIsvForm::LdpX => asm!("ldp {a}, {b}, [{p}]", p = in(reg) base,
                a = out(reg) _, b = out(reg) _, options(nostack)),
            NoIsvForm::StpW => asm!("stp {v:w}, {v:w}, [{p}]", p = in(reg) base,
                v = in(reg) v, options(nostack)),
            NoIsvForm::StpX => asm!("stp {v}, {v}, [{p}]", p = in(reg) base,
                v = in(reg) v, options(nostack)),
            NoIsvForm::LdrPost => asm!("ldr {a:w}, [{p}], #4", p = inout(reg) base,
                a = out(reg) _, options(nostack)),
            NoIsvForm::LdrPre => {
                base -= 4;
                asm!("ldr {a:w}, [{p}, #4]!", p = inout(reg) base, a = out(reg) _,
                    options(nostack))
            }
            NoIsvForm::StrPost => asm!("str {v:w}, [{p}], #4", p = inout(reg) base,
                v = in(reg) v, options(nostack)),
            NoIsvForm::StrPre => {
                base -= 4;
                asm!("str {v:w}, [{p}, #4]!", p = inout(reg) base, v = in(reg) v,
                    options(nostack))
            }
            NoIsvForm::LdrUnaligned => asm!("ldr {a:w}, [{p}]", p = in(reg) base,
                a = out(reg) _, options(nostack)),
            NoIsvForm::StrUnaligned => asm!("str {v:w}, [{p}]", p = in(reg) base,
                v = in(reg) v, options(nostack)),
        }
    }
    let _ = base;
}
