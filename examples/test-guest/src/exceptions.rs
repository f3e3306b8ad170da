//! EL1 exception handling: IRQ dispatch to the checks, expected data aborts, hostile-mode
//! skipping, fatal reports.

use crate::{checks, hostile_run, println};
use aarch64_cpu::registers::{Readable, ESR_EL1, FAR_EL1};

/// The interrupted context, as `exception_common` in `boot.rs` saves it.
#[repr(C)]
pub struct ExceptionFrame {
    /// x0..x30.
    pub x: [u64; 31],
    /// `ELR_EL1`: where `eret` resumes.
    pub elr: u64,
    /// `SPSR_EL1`.
    pub spsr: u64,
    /// `FPCR`.
    pub fpcr: u64,
    /// `FPSR`.
    pub fpsr: u64,
    _pad: u64,
    /// q0..q31.
    pub q: [u128; 32],
}

/// Vector index of "current EL with SP_ELx, synchronous".
const SYNC_SPX: u64 = 4;
/// Vector index of "current EL with SP_ELx, IRQ".
const IRQ_SPX: u64 = 5;

/// Called by `exception_common` with the vector index (0..15) and the saved context.
///
/// In `hostile` mode every exception but an IRQ is recorded by `hostile_run` and returned
/// from (a synchronous one after skipping its 4-byte instruction): that mode never panics.
pub extern "C" fn handle_exception(kind: u64, frame: &mut ExceptionFrame) {
    if kind != IRQ_SPX {
        if let Some(skip) = hostile_run::on_exception(kind % 4 == 0, ESR_EL1.get()) {
            if skip {
                frame.elr += 4;
            }
            return;
        }
    }
    match kind {
        IRQ_SPX => checks::on_irq(),
        SYNC_SPX => {
            let esr = ESR_EL1.get();
            let far = FAR_EL1.get();
            if checks::on_data_abort(esr, far) {
                // Skip the faulting (4-byte) load.
                frame.elr += 4;
            } else {
                panic!("unexpected synchronous exception: ESR_EL1={esr:#x} FAR_EL1={far:#x} ELR_EL1={:#x}", frame.elr);
            }
        }
        _ => {
            let esr = ESR_EL1.get();
            println!(
                "unexpected exception at vector {kind}, ESR_EL1={esr:#x} ELR_EL1={:#x}",
                frame.elr
            );
            panic!("unexpected exception");
        }
    }
}
