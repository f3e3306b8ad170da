//! EL1 exception handling: IRQ dispatch to the checks, expected data aborts, fatal reports.

use crate::{checks, println};
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
pub extern "C" fn handle_exception(kind: u64, frame: &mut ExceptionFrame) {
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
