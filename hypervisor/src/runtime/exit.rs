//! Handling of synchronous guest exits: MMIO emulation, hypercalls (PSCI, SMCCC), system
//! register traps and WFI. Anything the guest is not allowed to do gets an abort or an
//! undefined-instruction exception injected; a guest that cannot take it is stopped.

use super::vms::{self, power, ExitNext as Next, Vm};
use crate::arch::cpu;
use crate::arch::exception::GuestRegs;
use crate::hvprintln;
use crate::mmio::{self, AccessSize, MmioAccess};
use crate::trap::{self, TrapCause};
use crate::types::{GuestPhysAddr, VcpuId};
use crate::vm::layout;
use core::sync::atomic::Ordering;

/// Handles one synchronous exit of `vcpu` of `vm`.
pub fn handle_sync(vm: &'static Vm, vcpu: VcpuId, regs: &mut GuestRegs) -> Next {
    let (esr, far, hpfar) = cpu::fault_registers();
    match trap::decode(esr) {
        TrapCause::Wfx { is_wfe, .. } => {
            regs.elr += trap::instr_len(esr);
            if is_wfe {
                Next::Yield
            } else if vm.devices.lock().vgic.has_pending(vcpu) {
                Next::Resume
            } else {
                Next::Block
            }
        }
        TrapCause::Hvc { .. } => hypercall(vm, vcpu, regs),
        TrapCause::Smc { .. } => {
            // SMC trapped by HCR_EL2.TSC: ELR points at the SMC itself.
            regs.elr += trap::instr_len(esr);
            hypercall(vm, vcpu, regs)
        }
        TrapCause::SysReg(acc) => {
            regs.elr += trap::instr_len(esr);
            let value = if acc.rt < 31 {
                regs.x[acc.rt as usize]
            } else {
                0
            };
            match acc.encoding() {
                trap::ICC_SGI1R_EL1 | trap::ICC_ASGI1R_EL1 if !acc.is_read => {
                    let targets = vm.devices.lock().vgic.sgi1r_write(vcpu, value);
                    let local = kick_all(vm, targets);
                    // A target sharing this physical CPU runs sooner if we yield now.
                    if local {
                        Next::Yield
                    } else {
                        Next::Resume
                    }
                }
                trap::ICC_SGI0R_EL1 if !acc.is_read => Next::Resume,
                // The physical timer belongs to the hypervisor: reads as zero, writes ignored.
                trap::CNTP_CTL_EL0 | trap::CNTP_CVAL_EL0 | trap::CNTP_TVAL_EL0 => {
                    if acc.is_read && acc.rt < 31 {
                        regs.x[acc.rt as usize] = 0;
                    }
                    Next::Resume
                }
                _ => {
                    regs.elr -= trap::instr_len(esr);
                    inject_undef(vm, regs)
                }
            }
        }
        TrapCause::DataAbort(da) => {
            let ipa = trap::fault_ipa(hpfar, far);
            match da.access {
                Some(acc) if !da.s1ptw => {
                    let ok = if acc.is_write {
                        let reg = acc.target_register().map_or(0, |r| regs.x[r as usize]);
                        mmio_write(vm, vcpu, ipa, acc.size, mmio::store_value(&acc, reg))
                    } else {
                        mmio_read(vm, vcpu, ipa, acc.size).map(|raw| {
                            write_reg(regs, &acc, raw);
                            false
                        })
                    };
                    match ok {
                        Some(woke_local) => {
                            regs.elr += trap::instr_len(esr);
                            if woke_local {
                                Next::Yield
                            } else {
                                Next::Resume
                            }
                        }
                        None => inject_abort(vm, regs, far, acc.is_write),
                    }
                }
                // No syndrome (ldp/stp, writeback) or a table walk outside RAM: abort.
                _ => inject_abort(vm, regs, far, da.wnr),
            }
        }
        TrapCause::InstrAbort { .. } => {
            if faulting_in_vectors(regs) {
                hvprintln!(
                    "[hv] VM `{}` vCPU {}: instruction abort at {:#x} (FAR {far:#x}) inside its exception vectors",
                    vm.desc.name,
                    vcpu.0,
                    regs.elr
                );
                vms::stop_vm(vm, "instruction abort inside its exception vectors");
                return Next::Off;
            }
            let (pc, pstate) = cpu::inject_instruction_abort(regs.elr, regs.spsr, far);
            regs.elr = pc;
            regs.spsr = pstate;
            Next::Resume
        }
        TrapCause::Other { ec, .. } => {
            hvprintln!(
                "[hv] VM `{}` vCPU {}: unhandled exception class {ec:#x} at {:#x}",
                vm.desc.name,
                vcpu.0,
                regs.elr
            );
            inject_undef(vm, regs)
        }
    }
}

fn write_reg(regs: &mut GuestRegs, acc: &MmioAccess, raw: u64) {
    if let Some(r) = acc.target_register() {
        regs.x[r as usize] = mmio::load_value(acc, raw);
    }
}

/// Injects an abort; a guest that faults inside its own vector table is stopped instead
/// (it would fault for ever).
fn inject_abort(vm: &'static Vm, regs: &mut GuestRegs, far: u64, is_write: bool) -> Next {
    if faulting_in_vectors(regs) {
        hvprintln!(
            "[hv] VM `{}`: abort at {:#x} (FAR {far:#x}) inside its exception vectors",
            vm.desc.name,
            regs.elr
        );
        vms::stop_vm(vm, "abort inside its exception vectors (no handler)");
        return Next::Off;
    }
    let (pc, pstate) = cpu::inject_data_abort(regs.elr, regs.spsr, far, is_write);
    regs.elr = pc;
    regs.spsr = pstate;
    Next::Resume
}

fn inject_undef(vm: &'static Vm, regs: &mut GuestRegs) -> Next {
    if faulting_in_vectors(regs) {
        vms::stop_vm(vm, "undefined instruction inside its exception vectors");
        return Next::Off;
    }
    let (pc, pstate) = cpu::inject_undefined(regs.elr, regs.spsr);
    regs.elr = pc;
    regs.spsr = pstate;
    Next::Resume
}

fn faulting_in_vectors(regs: &GuestRegs) -> bool {
    let vbar = cpu::vbar_el1();
    vbar == 0 || (regs.elr >= vbar && regs.elr < vbar + 0x800)
}

fn mmio_read(vm: &Vm, vcpu: VcpuId, ipa: GuestPhysAddr, size: AccessSize) -> Option<u64> {
    let a = ipa.0;
    let mut dev = vm.devices.lock();
    if (layout::GICD_BASE..layout::GICD_BASE + layout::GICD_SIZE).contains(&a) {
        let off = a - layout::GICD_BASE;
        let n = size.bytes() as usize;
        return Some(if vms::gic_v2() {
            dev.vgic.gicd_v2_read(vcpu, off, n)
        } else {
            dev.vgic.gicd_read(off, n)
        });
    }
    let gicr_end = layout::GICR_BASE + layout::GICR_STRIDE * vm.vcpus.len() as u64;
    if !vms::gic_v2() && (layout::GICR_BASE..gicr_end).contains(&a) {
        return Some(
            dev.vgic
                .gicr_read(a - layout::GICR_BASE, size.bytes() as usize),
        );
    }
    if (layout::UART_BASE..layout::UART_BASE + layout::UART_SIZE).contains(&a) {
        let v =
            crate::mmio::MmioDevice::read(&mut dev.uart, vcpu, a - layout::UART_BASE, size).ok();
        dev.feed_uart();
        return v;
    }
    None
}

/// Kicks the vCPUs in `kicks` on other physical CPUs; true if one shares this CPU (the
/// caller yields so that it runs soon).
fn kick_all(vm: &Vm, kicks: crate::vgic::VcpuSet) -> bool {
    let mut local = false;
    for t in kicks.iter() {
        if vm
            .vcpus
            .get(t.0)
            .is_some_and(|v| v.pcpu == cpu::current_index())
        {
            local = true;
        } else {
            vms::kick_vcpu(vm, t);
        }
    }
    local
}

/// Emulates a store; `Some(true)` if it woke a vCPU sharing this physical CPU.
fn mmio_write(
    vm: &Vm,
    vcpu: VcpuId,
    ipa: GuestPhysAddr,
    size: AccessSize,
    value: u64,
) -> Option<bool> {
    let a = ipa.0;
    let mut dev = vm.devices.lock();
    if (layout::GICD_BASE..layout::GICD_BASE + layout::GICD_SIZE).contains(&a) {
        let off = a - layout::GICD_BASE;
        let n = size.bytes() as usize;
        let kicks = if vms::gic_v2() {
            dev.vgic.gicd_v2_write(vcpu, off, n, value)
        } else {
            dev.vgic.gicd_write(off, n, value);
            dev.vgic.take_kicks()
        };
        drop(dev);
        return Some(kick_all(vm, kicks));
    }
    let gicr_end = layout::GICR_BASE + layout::GICR_STRIDE * vm.vcpus.len() as u64;
    if !vms::gic_v2() && (layout::GICR_BASE..gicr_end).contains(&a) {
        dev.vgic
            .gicr_write(a - layout::GICR_BASE, size.bytes() as usize, value);
        let kicks = dev.vgic.take_kicks();
        drop(dev);
        return Some(kick_all(vm, kicks));
    }
    if (layout::UART_BASE..layout::UART_BASE + layout::UART_SIZE).contains(&a) {
        let r =
            crate::mmio::MmioDevice::write(&mut dev.uart, vcpu, a - layout::UART_BASE, size, value)
                .ok();
        let d = &mut *dev;
        d.uart.drain_output(|bytes| d.output.push(bytes));
        let mut wake = crate::vgic::VcpuSet::EMPTY;
        // The UART interrupt (e.g. transmit) may be routed to another vCPU: kick it.
        if let Some(t) = d.feed_uart().filter(|&t| t != vcpu) {
            wake.insert(t);
        }
        drop(dev);
        return r.map(|()| kick_all(vm, wake));
    }
    None
}

/// PSCI and SMCCC calls (x0 = function id, x1..x3 = arguments).
fn hypercall(vm: &'static Vm, vcpu: VcpuId, regs: &mut GuestRegs) -> Next {
    let fid = regs.x[0] as u32;
    let mut backend = Backend { vm };
    let out = crate::psci::handle(fid, [regs.x[1], regs.x[2], regs.x[3]], &mut backend);
    regs.x[0] = out.x0;
    use crate::psci::PsciAction;
    match out.action {
        PsciAction::Continue => Next::Resume,
        PsciAction::Standby => Next::Block,
        PsciAction::CpuOff => Next::Off,
        PsciAction::SystemOff => {
            vms::stop_vm(vm, "guest called PSCI SYSTEM_OFF");
            Next::Off
        }
        PsciAction::SystemReset => {
            vms::reset_vm(vm);
            Next::Yield
        }
        PsciAction::WakeVcpu(v) => {
            let _ = vcpu;
            if vm
                .vcpus
                .get(v.0)
                .is_some_and(|t| t.pcpu == cpu::current_index())
            {
                // The new vCPU shares this physical CPU: let the scheduler start it.
                Next::Yield
            } else {
                vms::kick_vcpu(vm, v);
                Next::Resume
            }
        }
    }
}

struct Backend {
    vm: &'static Vm,
}

impl crate::psci::PsciBackend for Backend {
    fn vcpu_by_mpidr(&self, mpidr: u64) -> Option<VcpuId> {
        self.vm
            .vcpus
            .iter()
            .position(|v| v.mpidr == mpidr & 0xff_00ff_ffff)
            .map(VcpuId)
    }

    fn vcpu_state(&self, vcpu: VcpuId) -> crate::psci::VcpuPowerState {
        use crate::psci::VcpuPowerState as S;
        match self
            .vm
            .vcpus
            .get(vcpu.0)
            .map(|v| v.power.load(Ordering::Acquire))
        {
            Some(power::ON) => S::On,
            Some(power::ON_PENDING) => S::OnPending,
            _ => S::Off,
        }
    }

    fn request_cpu_on(
        &mut self,
        vcpu: VcpuId,
        entry: GuestPhysAddr,
        context_id: u64,
    ) -> Result<(), crate::psci::CpuOnError> {
        use crate::psci::CpuOnError;
        let v = self.vm.vcpus.get(vcpu.0).ok_or(CpuOnError::Internal)?;
        v.entry.store(entry.0, Ordering::Release);
        v.context.store(context_id, Ordering::Release);
        match v.power.compare_exchange(
            power::OFF,
            power::ON_PENDING,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => Ok(()),
            Err(power::ON_PENDING) => Err(CpuOnError::OnPending),
            Err(_) => Err(CpuOnError::AlreadyOn),
        }
    }

    fn entry_valid(&self, addr: GuestPhysAddr) -> bool {
        let a = addr.0;
        a >= layout::RAM_BASE
            && a < layout::RAM_BASE + self.vm.desc.memory_size
            && a.is_multiple_of(4)
    }
}
