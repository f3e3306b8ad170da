//! VMs: the VM type every physical CPU shares, its devices, and the guest-physical layout.
#![deny(unsafe_code)]

pub mod devices;
#[cfg(not(target_os = "none"))]
pub mod fake_dma;
pub mod layout;
pub mod mem;
pub mod numa;

use crate::config::VmDesc;
use crate::platform::GicVersion;
use crate::platform::{DeviceDesc, IrqDesc};
use crate::psci::FirmwareSmccc;
use crate::sync::{Mutex, MutexGuard};
use crate::types::{GuestPhysAddr, HostPhysAddr, VcpuId, VmId};
use crate::vcpu::{PowerState, VcpuShared};
use crate::vgic::{SgiMail, VcpuSet};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use devices::VmDevices;

/// One VM, as every physical CPU sees it.
pub struct Vm {
    /// Its index in the VM table.
    pub id: VmId,
    /// Its configuration.
    pub desc: &'static VmDesc,
    /// Host-physical base of its RAM (the runtime owns the RAM itself).
    pub ram_host: HostPhysAddr,
    /// VTTBR_EL2 value (its stage-2 tables and VMID).
    pub vttbr: u64,
    /// Emulated devices and the virtual GIC, behind one lock; taken through
    /// [`Vm::devices`], which folds [`Vm::sgi_mail`] in.
    devices: Mutex<VmDevices>,
    /// SGIs posted to the vCPUs without the `devices` lock (GICv3 VMs only), see
    /// [`SgiMail`].
    pub sgi_mail: Option<SgiMail>,
    /// Every vCPU of the VM, as a set.
    pub everyone: VcpuSet,
    /// Times [`Self::devices`] was taken: a vCPU that saw the same value under the lock
    /// knows that nothing behind it changed since (see the receiver fast path's direct
    /// delivery in the runtime).
    epoch: AtomicU64,
    /// vCPUs.
    pub vcpus: Vec<VcpuShared>,
    /// Set when the VM stopped (SYSTEM_OFF or a fatal fault).
    pub stopped: AtomicBool,
    /// Guest entry point and DTB address of vCPU 0.
    pub boot: (u64, u64),
    /// Board devices passed through to this VM.
    pub passthrough: Vec<&'static DeviceDesc>,
    /// Times the VM was reset (SYSTEM_RESET); told to the guest in its DTB.
    pub resets: AtomicU32,
    /// What the machine's firmware provides of SMCCC (the guest is told the same, and its
    /// workaround calls go there); [`FirmwareSmccc::NONE`] until the runtime sets it.
    pub firmware: FirmwareSmccc,
    /// Counter ticks its vCPUs spent in the guest (for the management API).
    pub guest_ticks: AtomicU64,
    /// Guest exits its vCPUs took.
    pub exits: AtomicU64,
}

impl Vm {
    /// A VM with vCPU `i` pinned to physical CPU `pcpus[i]`; vCPU 0 is asked to start at
    /// `boot` (entry point, DTB address), the others are off until PSCI CPU_ON.
    #[allow(clippy::too_many_arguments)] // One per part of the VM the caller built.
    pub fn new(
        id: VmId,
        desc: &'static VmDesc,
        ram_host: HostPhysAddr,
        vttbr: u64,
        devices: VmDevices,
        pcpus: &[usize],
        boot: (u64, u64),
        passthrough: Vec<&'static DeviceDesc>,
    ) -> Self {
        let vcpus: Vec<VcpuShared> = pcpus
            .iter()
            .enumerate()
            .map(|(i, &pcpu)| VcpuShared::new(i, pcpu, boot.0, boot.1))
            .collect();
        if let Some(v0) = vcpus.first() {
            v0.request_start(boot.0, boot.1);
        }
        Self {
            id,
            desc,
            ram_host,
            vttbr,
            sgi_mail: (devices.gic_version() == GicVersion::V3).then(|| SgiMail::new(pcpus.len())),
            everyone: VcpuSet::first(pcpus.len()),
            epoch: AtomicU64::new(0),
            devices: Mutex::new(devices),
            vcpus,
            stopped: AtomicBool::new(false),
            boot,
            passthrough,
            resets: AtomicU32::new(0),
            firmware: FirmwareSmccc::NONE,
            guest_ticks: AtomicU64::new(0),
            exits: AtomicU64::new(0),
        }
    }

    /// The VM's devices and virtual GIC, locked, with every SGI posted to
    /// [`Self::sgi_mail`] made pending in the vGIC first: every access to the vGIC's state
    /// goes through here, so none sees it without the posted SGIs.
    ///
    /// Counts in [`Self::epoch`]: whoever holds the lock may change anything behind it.
    #[inline]
    pub fn devices(&self) -> MutexGuard<'_, VmDevices> {
        let mut dev = self.devices.lock();
        self.bump_epoch();
        if let Some(mail) = &self.sgi_mail {
            if mail.waiting() {
                mail.fold_into(&mut dev.vgic);
            }
        }
        dev
    }

    /// [`Self::devices`] for a caller that reads and changes only `vcpu`'s own SGIs among
    /// all SGIs (the receiver fast path on a kick), and only `vcpu`'s own interrupts unless
    /// it calls [`Self::bump_epoch`]: the SGIs posted to `vcpu` are returned, not folded
    /// in (the caller makes them pending or delivers them), and the epoch is left alone.
    /// Posts to the others wait for the next [`Self::devices`]; they commute with whatever
    /// the caller does (a post only sets an SGI's pending latch, of another vCPU).
    #[inline]
    pub fn devices_for_own_sgis(&self, vcpu: VcpuId) -> (MutexGuard<'_, VmDevices>, u16) {
        let dev = self.devices.lock();
        let sgis = self.sgi_mail.as_ref().map_or(0, |m| m.take(vcpu));
        (dev, sgis)
    }

    /// [`Self::devices`]' count (read without the lock).
    #[inline]
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Marks a change behind the lock, which the caller holds (so a plain increment; the
    /// lock's release orders it before whatever the holder does next).
    #[inline]
    pub fn bump_epoch(&self) {
        self.epoch.store(
            self.epoch.load(Ordering::Relaxed).wrapping_add(1),
            Ordering::Relaxed,
        );
    }

    /// The passed-through device interrupt with this INTID, if the VM has one.
    pub fn passthrough_irq(&self, intid: u32) -> Option<&'static IrqDesc> {
        self.passthrough
            .iter()
            .flat_map(|d| d.irqs.iter())
            .find(|i| i.intid == intid)
    }

    /// The vCPU with guest-visible MPIDR `mpidr` (Aff3..Aff0; other bits ignored).
    pub fn vcpu_by_mpidr(&self, mpidr: u64) -> Option<VcpuId> {
        self.vcpus
            .iter()
            .position(|v| v.mpidr == mpidr & 0xff_00ff_ffff)
            .map(VcpuId)
    }

    /// True if `addr` is inside the VM's RAM.
    pub fn is_ram(&self, addr: GuestPhysAddr) -> bool {
        addr.0 >= layout::RAM_BASE && addr.0 - layout::RAM_BASE < self.desc.memory_size
    }

    /// True once the VM stopped for good.
    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    /// Marks a stopped VM running again (its vCPUs stay off until started); false if it
    /// was not stopped.
    pub fn mark_running(&self) -> bool {
        self.stopped
            .compare_exchange(true, false, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Marks the VM stopped and every vCPU off; false if it already was stopped.
    pub fn mark_stopped(&self) -> bool {
        if self.stopped.swap(true, Ordering::AcqRel) {
            return false;
        }
        for v in &self.vcpus {
            v.power.store(PowerState::Off);
        }
        true
    }
}

/// Guest runs of one vCPU counted on its own CPU without atomics, added to the VM's
/// [`Vm::guest_ticks`] and [`Vm::exits`] (and the CPU's time) in batches: at the vCPU's
/// next general entry, when it leaves the run loop, or after [`ExitTally::BATCH`] exits
/// on the fast paths (an SGI sent, a kick taken), so a reader lags at most that many
/// fast-path exits behind.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ExitTally {
    /// Counter ticks in the guest not yet added.
    pub ticks: u64,
    /// Exits not yet added.
    pub exits: u64,
}

impl ExitTally {
    /// Exits counted before the tally must be added, whatever path the vCPU takes.
    pub const BATCH: u64 = 32;

    /// Counts one guest run of `ran` ticks ending in an exit; true when the tally is due.
    #[inline]
    pub fn count(&mut self, ran: u64) -> bool {
        self.ticks = self.ticks.wrapping_add(ran);
        self.exits += 1;
        self.exits >= Self::BATCH
    }

    /// Adds the tally to `ticks` and `exits` and empties it; what it added, if anything.
    #[inline]
    pub fn flush_into(&mut self, ticks: &AtomicU64, exits: &AtomicU64) -> Option<ExitTally> {
        if self.exits == 0 {
            return None;
        }
        let t = core::mem::take(self);
        ticks.fetch_add(t.ticks, Ordering::Relaxed);
        exits.fetch_add(t.exits, Ordering::Relaxed);
        Some(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_tally_adds_every_run_once_and_is_due_every_batch() {
        let (ticks, exits) = (AtomicU64::new(7), AtomicU64::new(3));
        let mut tally = ExitTally::default();
        assert_eq!(tally.flush_into(&ticks, &exits), None);
        let (mut sum, mut n, mut flushed) = (0u64, 0u64, ExitTally::default());
        let mut seed = 0x1234_5678_9abc_def0u64;
        for run in 0..1000u64 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let ran = seed % 100_000;
            sum += ran;
            n += 1;
            let due = tally.count(ran);
            assert_eq!(due, tally.exits == ExitTally::BATCH, "run {run}");
            // Flushed when due, and now and then as a general entry would.
            if due || run % 97 == 0 {
                let t = tally.flush_into(&ticks, &exits).unwrap();
                flushed.ticks += t.ticks;
                flushed.exits += t.exits;
                assert_eq!(tally, ExitTally::default());
            }
            assert!(tally.exits < ExitTally::BATCH);
            assert_eq!(ticks.load(Ordering::Relaxed) + tally.ticks, 7 + sum);
            assert_eq!(exits.load(Ordering::Relaxed) + tally.exits, 3 + n);
        }
        let t = tally.flush_into(&ticks, &exits).unwrap_or_default();
        assert_eq!(flushed.ticks + t.ticks, sum);
        assert_eq!(flushed.exits + t.exits, 1000);
        assert_eq!(ticks.load(Ordering::Relaxed), 7 + sum);
        assert_eq!(exits.load(Ordering::Relaxed), 1003);
    }
}
