//! Fuzz target: any `ESR_EL2`, `HPFAR_EL2`, `FAR_EL2` and register value decode without a
//! panic, a decoded MMIO access turns into load and store values within its width, and
//! the production exit handler (`exit::handle_sync`, the run loop's path) takes the same
//! syndrome on a 2-vCPU VM without a panic.
#![no_main]

use hypervisor::config::{ImageDesc, VmDesc};
use hypervisor::exit::{handle_sync, GuestSysRegs, Syndrome};
use hypervisor::mmio::{load_value, store_value};
use hypervisor::platform::GicVersion;
use hypervisor::trap::{decode, emulated_pc_advance, fault_ipa, instr_len, TrapCause};
use hypervisor::types::{HostPhysAddr, VcpuId, VmId};
use hypervisor::vcpu::GuestRegs;
use hypervisor::vm::devices::VmDevices;
use hypervisor::vm::{layout, Vm};
use libfuzzer_sys::fuzz_target;

static DESC: VmDesc = VmDesc {
    name: "fuzz",
    vcpus: 2,
    memory_size: 0x1000_0000,
    kernel: ImageDesc {
        path: "none",
        staging_base: 0,
        size: 0,
    },
    initrd: None,
    dtb: None,
    cmdline: "",
    devices: &[],
    disks: &[],
    nics: &[],
    numa: hypervisor::config::VmNuma::Local,
};

/// EL1 registers as a CPU holds them.
struct Regs {
    vbar: u64,
    /// The physical count, and the virtual timer's CTL and CVAL, from the input.
    now: u64,
    cntv: (u64, u64),
    vtimer: hypervisor::vtimer::VtimerState,
    /// The last PMU register value written (every PMU register reads it back but
    /// `PMCR_EL0`, which reads as a Cortex-A57's: 6 event counters).
    pmu: u64,
}

impl GuestSysRegs for Regs {
    fn vbar_el1(&self) -> u64 {
        self.vbar
    }
    fn set_el1_exception(&mut self, _: u64, _: Option<u64>, _: u64, _: u64) {}
    fn priority_mask(&self) -> u8 {
        0xff
    }
    fn counter(&self) -> u64 {
        self.now
    }
    fn sample_vtimer(&mut self) -> bool {
        let (ctl, line) = self.vtimer.sample(self.cntv.0, self.cntv.1, self.now);
        self.cntv.0 = ctl;
        line
    }
    fn power_down_el1(&mut self) {}
    fn pmu_read(&mut self, reg: hypervisor::vpmu::PmuReg) -> u64 {
        match reg {
            hypervisor::vpmu::PmuReg::Pmcr => 0x4101_3000,
            _ => self.pmu,
        }
    }
    fn pmu_write(&mut self, _reg: hypervisor::vpmu::PmuReg, value: u64) {
        self.pmu = value;
    }
}

fn discard(_tag: &str, _line: &[u8]) {}

/// A fresh 2-vCPU VM for each input, so that a crash reproduces from its input alone.
fn vm(v2: bool) -> Vm {
    let gic = if v2 { GicVersion::V2 } else { GicVersion::V3 };
    let dev = VmDevices::new(gic, 2, "fuzz", discard).expect("a 2-vCPU VM's devices");
    Vm::new(
        VmId(0),
        &DESC,
        HostPhysAddr(0),
        0,
        dev,
        &[0, 1],
        (layout::RAM_BASE, 0),
        Vec::new(),
    )
}

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
    let mut regs = GuestRegs {
        x: [reg; 31],
        elr: word(data, 4),
        spsr: word(data, 5),
    };
    let syn = Syndrome { esr, far, hpfar };
    let vcpu = VcpuId((reg & 1) as usize);
    let mut sys = Regs {
        vbar: word(data, 6),
        now: word(data, 7),
        cntv: (word(data, 8), word(data, 9)),
        vtimer: Default::default(),
        pmu: word(data, 10),
    };
    let _ = handle_sync(&vm(reg & 2 != 0), vcpu, syn, &mut regs, &mut sys);
});
