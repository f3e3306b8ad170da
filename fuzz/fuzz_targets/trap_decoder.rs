//! Fuzz target: any `ESR_EL2`, `HPFAR_EL2`, `FAR_EL2` and register value decode without a
//! panic, and a decoded MMIO access turns into load and store values within its width.
#![no_main]

use hypervisor::mmio::{load_value, store_value};
use hypervisor::trap::{decode, emulated_pc_advance, fault_ipa, instr_len, TrapCause};
use libfuzzer_sys::fuzz_target;

fn word(data: &[u8], i: usize) -> u64 {
    let mut b = [0u8; 8];
    if let Some(chunk) = data.get(i * 8..) {
        let n = chunk.len().min(8);
        b[..n].copy_from_slice(&chunk[..n]);
    }
    u64::from_le_bytes(b)
}

fuzz_target!(|data: &[u8]| {
    let (esr, hpfar, far, reg) = (word(data, 0), word(data, 1), word(data, 2), word(data, 3));
    let _ = fault_ipa(hpfar, far);
    assert!(
        matches!(instr_len(esr), 2 | 4),
        "an instruction is 2 or 4 bytes"
    );
    let _ = emulated_pc_advance(esr);
    match decode(esr) {
        TrapCause::DataAbort(abort) => {
            let _ = abort.fault_status();
            if let Some(access) = abort.access {
                let _ = access.target_register();
                let loaded = load_value(&access, reg);
                if !access.sf {
                    assert_eq!(
                        loaded >> 32,
                        0,
                        "a W-register load leaves the top half zero"
                    );
                }
                let stored = store_value(&access, reg);
                assert_eq!(
                    stored & !access.size.mask(),
                    0,
                    "a store is within its width"
                );
            }
        }
        TrapCause::SysReg(sysreg) => {
            let _ = sysreg.encoding();
        }
        _ => {}
    }
});
